/*
 * progress: a line a person can follow while a program trains.
 *
 * A meter writes to a stream (stderr): on a terminal one line redrawn in
 * place at most five times a second; when asked for on a stream that is
 * not a terminal (PIPAR_PROGRESS_ALWAYS), a whole line at most every two
 * seconds; otherwise nothing.  A line reads
 *
 *   pipar-device: epoch 2/5, mini-batch 7/15, loss 0.6123, 0:12 elapsed, about 0:31 left
 *
 * Several threads may update one meter.  Messages that must not be mixed
 * into the redrawn line (log lines) go through pipar_meter_log, which
 * clears the line first.  The meter owns nothing but its lock.
 */
#ifndef PIPAR_PROGRESS_H
#define PIPAR_PROGRESS_H

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

enum pipar_progress_when {
	PIPAR_PROGRESS_AUTO,            /* when the stream is a terminal */
	PIPAR_PROGRESS_ALWAYS,
	PIPAR_PROGRESS_NEVER,
};

/* The names of the values above, NULL-terminated, for pipar_cli_choice. */
extern const char *const pipar_progress_names[];

/* Where training is.  done and total count the steps of one epoch (for
 * the server, mini-batches summed over its devices); total 0 when
 * unknown. */
struct pipar_progress {
	int epoch, epochs;              /* the epoch under way, 1-based */
	long done, total;
	const char *unit;               /* "mini-batch", "mini-batches" */
	double loss;                    /* mean loss so far; NAN: none yet */
};

struct pipar_meter {
	FILE *f;
	const char *prog;               /* the line's prefix */
	int on, tty, drawn;
	double t0, last;
	pthread_mutex_t mu;
};

/* Starts a meter on f for program prog; the elapsed time counts from now. */
void pipar_meter_init(struct pipar_meter *m, FILE *f, const char *prog,
		      enum pipar_progress_when when);

/* Shows p if the meter is on and the last line is old enough (or force). */
void pipar_meter_update(struct pipar_meter *m, const struct pipar_progress *p, int force);

/* Says what the program is doing now ("testing on 10000 samples"), in
 * place of the progress line; shown only when the meter is on. */
void pipar_meter_status(struct pipar_meter *m, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Writes one whole log line (prefix included by the caller) to the
 * meter's stream whether or not it is on, clearing a drawn line first.
 * A NULL meter writes to stderr. */
void pipar_meter_log(struct pipar_meter *m, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* As pipar_meter_log, to stream f (which may be NULL: nothing is
 * written); the line is cleared first when f is the meter's stream. */
void pipar_meter_vlog(struct pipar_meter *m, FILE *f, const char *fmt, va_list ap);

/* Clears a drawn line and releases the lock. */
void pipar_meter_end(struct pipar_meter *m);

/* Formats s seconds as M:SS or H:MM:SS. */
void pipar_format_duration(double s, char *buf, size_t n);

#endif
