/*
 * device: the device side of pipelined training over TCP (pipar-device);
 * server.h describes the conversation.
 *
 * Emulation: a device's links are shaped by a token bucket per direction
 * (link.h), and a slowdown F makes its compute F times slower by sleeping
 * (F - 1) times each measured forward and backward pass.
 *
 * Joining: the device connects (retrying while the server is not yet
 * listening), shakes hands (TLS when cfg->tls is set) and says HELLO;
 * a connection the server closes or resets before it answers is tried
 * again with a growing pause, until cfg->timeout from the start, since a
 * busy server closes what it cannot admit yet.  An ERROR from the server,
 * or credentials that do not match, end the run at once.
 *
 * Reconnecting (cfg->reconnect): a device whose server vanishes in the
 * run joins again the same way, for up to cfg->timeout from the loss, and
 * starts from what the new PLAN and MODEL say: the epoch to start in, the
 * global part and, from a resumed server, its own momentum.  Nothing of
 * the device's own is kept but its trace.
 *
 * Who owns what: the caller owns everything the cfg points to;
 * pipar_device_run owns the connection, the link over it, its threads
 * and the model part, and frees all it made before it returns.
 */
#ifndef PIPAR_DEVICE_H
#define PIPAR_DEVICE_H

#include <stdio.h>

#include "chan.h"
#include "data.h"
#include "progress.h"

struct pipar_device_cfg {
	const char *prog;               /* starts every log line */
	const char *host;               /* the server */
	int port;
	struct pipar_tls *tls;          /* NULL: plain TCP */
	const char *server_name;        /* its certificate's name; NULL: host */
	const char *id;
	int index;                      /* the device number asked for, 0-based;
					 * -1: any */
	const struct pipar_data *data;
	const struct pipar_norm *norm;
	const int *idx;                 /* the shard's samples */
	int nidx;
	double timeout;
	double up_bps, down_bps;        /* emulated link, 0: unshaped */
	double latency;                 /* its one-way delay, seconds, 0: none */
	double slowdown;                /* compute F times slower (>= 1) */
	FILE *log;                      /* may be NULL */
	struct pipar_meter *meter;      /* progress; may be NULL */
	const char *trace;              /* trace-event JSON; may be NULL */
	int signals;                    /* the signals pipar_runtime_signals
					 * catches end the run: the connection
					 * is closed, the trace kept */
	int reconnect;                  /* a server lost in the run (closed,
					 * reset or silent, not BYE or ERROR)
					 * is dialled again for up to timeout
					 * seconds, and the run goes on where
					 * its PLAN says */
};

/* Trains the device's part until the server says BYE.  -1 with err. */
int pipar_device_run(const struct pipar_device_cfg *cfg, char *err);

#endif
