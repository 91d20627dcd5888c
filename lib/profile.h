/*
 * profile: what each split unit of a model costs on this machine.
 *
 * pipar_profile_run() times real forward and backward passes of every
 * unit, each built alone as it would run in a split model (the input
 * gradient is computed for every unit but the first, which never needs
 * it), at several micro-batch sizes, R times each, and records the
 * median with the minimum and maximum; plus the SGD step of each unit,
 * the output bytes per sample (what crosses the network at a cut after
 * the unit), the parameter bytes and the working memory.  A slowdown
 * factor scales every time, as an emulated slow device would see them.
 *
 * With stages (cfg->stages), a device profile also times the device
 * part through each unit as a device computes it in a run: a stage (the forward passes of units 1..P
 * back to back, or their backward passes) that starts after a pause and
 * is slowed as pipar-device slows it, sleeping after it.  On a machine
 * whose processor slows down while it waits, a stage after a pause runs
 * slower than the same passes repeated back to back, and the planner
 * takes a device's stages from these times (pipar_profile_device_time).
 * A server profile with stages times instead the server's job for one
 * micro-batch from every unit on (the forward passes and the loss, then
 * the backward passes), each just after the same job on a second replica,
 * as pipar-serve serves the devices' replicas in turn
 * (pipar_profile_server_time).
 *
 * The JSON form ("format": "pipar-profile/1") is documented in
 * pipar-profile(5); pipar_profile_parse() refuses a malformed one with one
 * line naming the field.
 */
#ifndef PIPAR_PROFILE_H
#define PIPAR_PROFILE_H

#include <stdio.h>

#include "tensor.h"

#define PIPAR_PROFILE_MAXSIZES 32

struct pipar_time {
	double median, min, max;        /* seconds */
};

struct pipar_unit_profile {
	struct pipar_time fwd[PIPAR_PROFILE_MAXSIZES];
	struct pipar_time bwd[PIPAR_PROFILE_MAXSIZES];
	double step;                    /* SGD step of the unit's parameters */
	double out_bytes;               /* output per sample (float32) */
	double param_bytes;             /* parameters and buffers */
	double mem_fixed;               /* working memory: fixed part ... */
	double mem_per_sample;          /* ... and per sample in the batch */
	double flops_fwd, flops_bwd;    /* per sample */
	/* Stages, forward and backward, each timed as the program computes
	 * it in a run: in a device profile the device part through this
	 * unit (pipar_profile_device_time), in a server profile the server
	 * part from this unit on (pipar_profile_server_time). */
	struct pipar_time sfwd[PIPAR_PROFILE_MAXSIZES];
	struct pipar_time sbwd[PIPAR_PROFILE_MAXSIZES];
};

struct pipar_profile {
	char role[16];                  /* "device" or "server" */
	char model_name[64];
	char *spec;                     /* model spec JSON, owned */
	struct pipar_shape in;
	int classes;
	int batch;
	int nsizes;
	int sizes[PIPAR_PROFILE_MAXSIZES];  /* ascending */
	int nunits;
	struct pipar_unit_profile *units;   /* owned */
	int repeat, threads, cores;
	int stages;                     /* units[].sfwd and .sbwd are there */
	double slowdown;
	char cpu[128];
	char data[256];                 /* the data spec profiled with */
	long data_samples;              /* samples in that data set */
};

struct pipar_profile_cfg {
	const char *role;
	int batch, repeat, threads;
	int nsizes;
	int sizes[PIPAR_PROFILE_MAXSIZES];  /* 0 sizes: a spread from 1 to batch */
	double slowdown;
	int stages;                     /* the role's stages too */
};

/* Fills cfg->sizes with the default spread when cfg->nsizes is 0. */
void pipar_profile_default_sizes(struct pipar_profile_cfg *cfg);

/* Profiles the model built from spec for inputs x (batch samples of the
 * data set, normalised) and writes a new profile to *out.  -1 with err. */
int pipar_profile_run(const char *spec, struct pipar_shape in, int classes,
		      const float *x, const int *labels,
		      const struct pipar_profile_cfg *cfg,
		      struct pipar_profile **out, char *err);

/* Writes p as JSON to f; -1 when f fails. */
int pipar_profile_write(FILE *f, const struct pipar_profile *p);

/* Parses profile JSON; name is used in messages.  -1 with err naming the
 * field at fault. */
int pipar_profile_parse(const char *text, const char *name,
			struct pipar_profile **out, char *err);

void pipar_profile_free(struct pipar_profile *p);

/* Stage time of units [u0, u1) at micro-batch size n: the sum of each
 * unit's time at n on the curve through its profiled medians (forward,
 * or backward when backward is set): exact at the profiled sizes,
 * straight between them, extended along the nearest segment beyond
 * them, never below zero. */
double pipar_profile_time(const struct pipar_profile *p, int u0, int u1, int n,
			  int backward);

/* The time of the device stage through units [0, P) at micro-batch
 * size n (forward, or backward when backward is set): on the stage's own
 * curve when the profile has stages, the sum of the units' otherwise. */
double pipar_profile_device_time(const struct pipar_profile *p, int P, int n, int backward);

/* The time of the server's job for a micro-batch of n samples with the
 * server part from unit P (0-based) on: its forward passes, the loss and
 * its backward passes, on the job's own curves when the profile has
 * stages, the sum of the units' otherwise.  0 when P is past the last
 * unit. */
double pipar_profile_server_time(const struct pipar_profile *p, int P, int n);

#endif
