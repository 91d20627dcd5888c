/*
 * server: the server side of pipelined training over TCP (pipar-serve).
 *
 * A device connects and says HELLO (its id, shard size and input
 * normalisation).  The server answers with PLAN (the plan and the
 * training settings) and MODEL (the device part's parameters and
 * buffers); proto.h holds these payloads.  Each iteration the device cuts
 * its mini-batch into the plan's micro-batches, runs their forward passes
 * back to back and sends each as ACTIVATIONS; the server runs its
 * replica's forward, loss and backward for each (one device's work at a
 * time: the server is one resource) and answers GRADIENTS; the device runs
 * the backward passes as they arrive and takes one optimizer step for the
 * whole mini-batch, as the server does for the replica.  At the end of
 * each epoch every device sends PARAMS_UP, the server averages device
 * parts and replicas weighted by samples (FedAvg), evaluates the global
 * model and sends PARAMS_DOWN.  BYE ends the run.  What differs between
 * the modes is a row of pipar_mode_ops (plan.h).
 *
 * Batch-norm runs per micro-batch: each micro-batch is normalised by its
 * own statistics, as on a device that only ever sees that micro-batch.
 *
 * Who owns what: the caller owns everything the cfg points to, for the
 * whole call; pipar_server_run owns the sockets it accepts, the models and
 * the threads (one per device), and releases all of them before it
 * returns.  The files are server.c (setting up, admitting devices, the
 * end of the run), session.c (one device's conversation), aggregate.c
 * (FedAvg, evaluation, the epoch records), resume.c (the state a
 * checkpoint needs to resume, written and read); server_int.h is theirs
 * alone.
 *
 * Resuming: with checkpoint_every each device sends its momentum up with
 * its part at every epoch's end, and the server keeps a snapshot of every
 * device's momentum (its part's and its replica's) there; a checkpoint
 * then holds, beside the global model, the run to resume (pipar-run/1 in
 * its manifest's "run": the roster, the epochs' records) and those
 * momenta.  A resumed run starts after the epochs the checkpoint holds:
 * each device that trained in the last of them gets its slot back (by
 * number, or by its id), with the global part and its own momentum in
 * MODEL.  Dropout draws are seeded per epoch, data order is per epoch,
 * so a resumed run computes what the uninterrupted one did.
 */
#ifndef PIPAR_SERVER_H
#define PIPAR_SERVER_H

#include <stdint.h>
#include <stdio.h>

#include "chan.h"
#include "data.h"
#include "model.h"
#include "plan.h"
#include "progress.h"
#include "checkpoint.h"
#include "util.h"

/* How the devices' models are combined at aggregation (--aggregate):
 *   mean        FedAvg: weighted by the samples each device trained on
 *               since the last aggregation (the default)
 *   median      the coordinate-wise median, unweighted
 *   trimmed:F   the coordinate-wise mean of what is left when the
 *               fraction F (0 <= F < 0.5) of values is cut at each end
 *   clip:NORM   FedAvg of the updates (a model less the global one), each
 *               scaled down to an L2 norm of at most NORM
 * Whatever the rule, a device whose model is not finite, or whose
 * update's norm is over PIPAR_AGG_FAR times the lower median of the
 * devices' norms, is expelled by name before anything is combined. */
enum pipar_agg_kind { PIPAR_AGG_MEAN, PIPAR_AGG_MEDIAN, PIPAR_AGG_TRIMMED, PIPAR_AGG_CLIP };

struct pipar_agg_rule {
	enum pipar_agg_kind kind;
	double param;                   /* F of trimmed, NORM of clip */
};

#define PIPAR_AGG_FAR 100.0

/* Parses a rule as written above.  -1 with err saying what is accepted. */
int pipar_agg_rule_parse(const char *text, struct pipar_agg_rule *r, char *err);
/* The rule as written above, into buf (len bytes); returns buf. */
const char *pipar_agg_rule_name(const struct pipar_agg_rule *r, char *buf, size_t len);
/* The rank rules (median, trimmed) on m models, the rows of mat (n
 * floats each), coordinate by coordinate into out: the median (the mean
 * of the middle two when m is even), or the mean of the values left when
 * floor(F m) are cut at each end; col is scratch of m floats. */
void pipar_agg_by_rank(const struct pipar_agg_rule *rule, const float *mat, int m, size_t n,
		       float *out, float *col);

/* A run to resume, read from a checkpoint that --checkpoint-every wrote. */
struct pipar_resume_device {
	char id[64];                    /* "": the slot never had a device */
	long samples;
	struct pipar_norm norm;
	const float *mom;               /* the momentum of its whole model (its
					 * part's, then its replica's) when it
					 * trained in the last epoch done; NULL
					 * otherwise */
	char fault[PIPAR_ERRLEN];       /* why it left, "" */
};

struct pipar_resume {
	int epoch;                      /* epochs done */
	int epochs;                     /* the epochs the run was given */
	struct pipar_plan_file *plan;
	struct pipar_sgd sgd;
	uint64_t seed;
	int aggregate_every, checkpoint_every;
	struct pipar_agg_rule rule;
	struct pipar_model *model;      /* the global model */
	char *records;                  /* JSON text: the summary's epochs */
	int K;
	struct pipar_resume_device *dev;
	struct pipar_ckpt_info info;    /* owns the momenta */
};

/* Reads the checkpoint at path and the run it holds into *out (free with
 * pipar_resume_free).  -1 with err naming the file and what is wrong
 * (a checkpoint with no run: one not written with --checkpoint-every). */
int pipar_resume_load(const char *path, struct pipar_resume **out, char *err);
void pipar_resume_free(struct pipar_resume *r);

struct pipar_serve_cfg {
	const char *prog;               /* starts every log line */
	const struct pipar_plan_file *plan;
	int listen_fd;                  /* a listening socket */
	int epochs;
	struct pipar_sgd sgd;
	uint64_t seed;
	const struct pipar_data *test;  /* evaluated after each epoch; may be NULL */
	const char *checkpoint;         /* the final global model; may be NULL */
	double timeout;                 /* seconds a peer may stay silent */
	const char *summary;            /* the run summary JSON, written at the
					 * end ("-": standard output); may be NULL */
	FILE *records;                  /* one JSON line per epoch; may be NULL */
	FILE *log;                      /* one line per event; may be NULL */
	struct pipar_meter *meter;      /* progress; may be NULL */
	const char *trace;              /* trace-event JSON; may be NULL */
	int aggregate_every;            /* also aggregate every this many
					 * iterations within an epoch; 0: at the
					 * epoch's end only */
	struct pipar_agg_rule rule;     /* zero: mean */
	int checkpoint_every;           /* also write the checkpoint after every
					 * this many epochs; 0: at the end only */
	struct pipar_tls *tls;          /* credentials; NULL: plain TCP */
	int signals;                    /* the signals pipar_runtime_signals
					 * catches stop the run, its finished
					 * epochs kept */
	double hello_timeout;           /* seconds from a connection to its
					 * whole HELLO (TLS included) */
	const struct pipar_resume *resume; /* the run goes on from this one's
					 * last epoch (its plan and settings
					 * are the cfg's); NULL: a new run */
};

/* Handshakes served at once, in all and from one address: a connection
 * over either is closed at once (a device retries), so that idle or
 * slow peers cannot fill the backlog or hold the honest ones out. */
#define PIPAR_SERVE_HANDSHAKES 64
#define PIPAR_SERVE_HANDSHAKES_PER_ADDR 8

/* Runs the server until the epochs are done or no device is left.
 * Returns 0 when at least one device finished, -1 with err otherwise. */
int pipar_server_run(const struct pipar_serve_cfg *cfg, char *err);

#endif
