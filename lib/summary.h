/*
 * summary: the run summaries pipar-serve writes (pipar-summary/1) and its
 * epoch records (pipar-epoch/1), written and read here; and several runs
 * side by side: a comparison table (Markdown or JSON) and a picture of
 * test accuracy against wall-clock time (SVG).
 *
 * Wall-clock time here is training time: the sum of the epochs' "seconds"
 * (from the start of an epoch to its aggregation, evaluation excluded).
 * A run reaches a target accuracy at the end of the first epoch whose test
 * accuracy is at least the target; evaluation happens only at epoch ends,
 * so that is the time to report.
 */
#ifndef PIPAR_SUMMARY_H
#define PIPAR_SUMMARY_H

#include <cJSON.h>
#include <stdio.h>

struct pipar_summary_epoch {
	double seconds, loss, train_accuracy;
	double test_accuracy;           /* < 0: not evaluated */
	double server_busy, server_idle;
	double device_idle;             /* mean over the devices of compute idle */
	double bytes_up, bytes_down;
};

struct pipar_summary {
	char path[512], label[128], mode[16];
	int devices, split_point, parallel_batches, failed;
	int nepochs;
	struct pipar_summary_epoch *epochs;
};

/* ---- writing, as a run goes ---- */

/* One device's resources over an epoch: compute, uplink, downlink. */
struct pipar_summary_device {
	int device;                     /* from 1 */
	double busy[3], idle[3];        /* seconds */
};

/* What an epoch's entry records. */
struct pipar_summary_record {
	int epoch, devices;
	double seconds, loss, train_accuracy, bytes_up, bytes_down;
	const struct pipar_summary_device *dev;
	int ndev;
	double server_busy, server_idle;
	int tested;                     /* test_accuracy and test_loss are set */
	double test_accuracy, test_loss;
};

/* The epoch's entry of the summary: seconds to the microsecond, bytes
 * whole, loss and accuracy to 6 decimals.  NULL when out of memory. */
cJSON *pipar_summary_epoch_json(const struct pipar_summary_record *r);

/* The entry as a pipar-epoch/1 record: one line of JSON, malloc'd. */
char *pipar_summary_epoch_line(const cJSON *entry);

/* The summary document of a run: its mode, devices and first device's
 * choice, the epochs' entries (taken over), and the devices that did not
 * finish, added with pipar_summary_add_failed. */
cJSON *pipar_summary_doc(const char *mode, int devices, int split_point, int parallel_batches,
			 cJSON *epochs);
void pipar_summary_add_failed(cJSON *doc, int device, const char *id, const char *fault);

/* Writes doc to path atomically, or to standard output ("-") as one line
 * after the epoch records.  -1 with err. */
int pipar_summary_save(const cJSON *doc, const char *path, char *err);

/* ---- reading ---- */

/* Reads a pipar-summary/1 file into *s (free with pipar_summary_free);
 * -1 with err naming the file and the field at fault. */
int pipar_summary_read(const char *path, struct pipar_summary *s, char *err);

void pipar_summary_free(struct pipar_summary *s);

/* Labels runs by mode, or by file name when two runs share a mode. */
void pipar_summary_label(struct pipar_summary *s, int n);

struct pipar_compare_opts {
	double target;                  /* accuracy to reach; <= 0: none */
	const char *baseline[4];        /* modes or file names */
	int nbaselines;
	int json;
};

/* Writes the comparison of n runs to out.  Runs must have the same number
 * of devices; each baseline must name exactly one run.  -1 with err. */
int pipar_summary_compare(struct pipar_summary *s, int n,
			  const struct pipar_compare_opts *o, FILE *out, char *err);

/* Writes test accuracy against training time of n runs as SVG to path
 * ("-": standard output), atomically; target > 0 draws it as a line.
 * Every run needs a test accuracy in every epoch.  -1 with err. */
int pipar_summary_plot(struct pipar_summary *s, int n, const char *title,
		       double target, const char *path, char *err);

#endif
