/*
 * runtime: the server and device sides of pipelined training over TCP.
 *
 * A device connects and says HELLO (its id, shard size and input
 * normalisation, as JSON).  The server answers with PLAN (the plan and the
 * training settings, as JSON) and MODEL (the device part's parameters and
 * buffers).  Each iteration the device cuts its mini-batch into the plan's
 * N micro-batches, runs their forward passes back to back and sends each
 * as ACTIVATIONS; the server runs its replica's forward, loss and backward
 * for each (one device's work at a time: the server is one resource) and
 * answers GRADIENTS; the device runs the backward passes as they arrive
 * and takes one optimizer step for the whole mini-batch, as the server
 * does for the replica.  At the end of each epoch every device sends
 * PARAMS_UP, the server averages device parts and replicas weighted by
 * samples (FedAvg), evaluates the global model and sends PARAMS_DOWN.  BYE
 * ends the run.
 *
 * Batch-norm runs per micro-batch: each micro-batch is normalised by its
 * own statistics, as on a device that only ever sees that micro-batch.
 *
 * Emulation: a device's links are shaped by a token bucket per direction
 * (link.h), and --slowdown F makes its compute F times slower by sleeping
 * (F - 1) times each measured forward and backward pass.
 *
 * This version runs the pipar and sfl modes.
 */
#ifndef PIPAR_RUNTIME_H
#define PIPAR_RUNTIME_H

#include <stdio.h>

#include "data.h"
#include "model.h"
#include "plan.h"
#include "progress.h"

struct pipar_serve_cfg {
	const struct pipar_plan_file *plan;
	const char *plan_text;          /* the plan JSON, forwarded to devices */
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
};

/* Runs the server until the epochs are done or no device is left.
 * Returns 0 when at least one device finished, -1 with err otherwise. */
int pipar_serve(const struct pipar_serve_cfg *cfg, char *err);

struct pipar_device_cfg {
	int fd;                         /* connected to the server */
	const char *id;
	const struct pipar_data *data;
	const struct pipar_norm *norm;
	const int *idx;                 /* the shard's samples */
	int nidx;
	double timeout;
	double up_bps, down_bps;        /* emulated link, 0: unshaped */
	double slowdown;                /* compute F times slower (>= 1) */
	FILE *log;                      /* may be NULL */
	struct pipar_meter *meter;      /* progress; may be NULL */
	const char *trace;              /* trace-event JSON; may be NULL */
};

/* Trains the device's part until the server says BYE.  -1 with err. */
int pipar_device(const struct pipar_device_cfg *cfg, char *err);

#endif
