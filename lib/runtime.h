/*
 * runtime: what the server's files (server.c, session.c, aggregate.c) and
 * the device's (device.c) share: log lines, and moving a
 * model part's state or momentum in and out of one flat array of floats.
 *
 * The library never names a program: every log line starts with the
 * prefix the program gives (its own name).
 */
#ifndef PIPAR_RUNTIME_H
#define PIPAR_RUNTIME_H

#include <stdint.h>
#include <stdio.h>

#include "model.h"
#include "progress.h"

/* SIGINT and SIGTERM caught for the whole process: the first is recorded
 * (pipar_runtime_signalled returns it) for the runtime to stop cleanly,
 * the second ends the process at once with "PROG: a second signal:
 * ending at once".  Called once, early in main. */
void pipar_runtime_signals(const char *prog);
/* The first signal caught, 0 when none was. */
int pipar_runtime_signalled(void);

/* One log line "PREFIX: MESSAGE" on log (nothing when log is NULL),
 * clearing a progress line meter draws on the same stream. */
void pipar_runtime_log(FILE *log, struct pipar_meter *meter, const char *prefix,
		       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The state of every unit m holds, concatenated (pipar_model_nstate
 * floats), copied out of or into m. */
void pipar_runtime_get_state(const struct pipar_model *m, float *dst);
void pipar_runtime_set_state(struct pipar_model *m, const float *src);
/* The SGD momentum of every trainable float m holds, concatenated
 * (pipar_model_ntrain floats, in the order of the units' parameters),
 * copied out of or into m. */
void pipar_runtime_get_momentum(const struct pipar_model *m, float *dst);
void pipar_runtime_set_momentum(struct pipar_model *m, const float *src);

struct pipar_exec;
/* Seeds e's dropout generator for one epoch of one stream (a device's
 * micro-batch slot, a replica), from the model's seed: the draws of an
 * epoch do not depend on those before, so a resumed run draws what the
 * uninterrupted one did. */
void pipar_runtime_reseed(struct pipar_exec *e, uint64_t stream, int epoch);

#endif
