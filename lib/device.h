/*
 * device: the device side of pipelined training over TCP (pipar-device);
 * server.h describes the conversation.
 *
 * Emulation: a device's links are shaped by a token bucket per direction
 * (link.h), and a slowdown F makes its compute F times slower by sleeping
 * (F - 1) times each measured forward and backward pass.
 *
 * Who owns what: the caller owns the connected socket (and closes it)
 * and everything the cfg points to; pipar_device_run owns the link over
 * the socket, its threads and the model part, and frees all it made
 * before it returns.
 */
#ifndef PIPAR_DEVICE_H
#define PIPAR_DEVICE_H

#include <stdio.h>

#include "data.h"
#include "progress.h"

struct pipar_device_cfg {
	const char *prog;               /* starts every log line */
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
int pipar_device_run(const struct pipar_device_cfg *cfg, char *err);

#endif
