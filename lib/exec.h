/*
 * exec: running a model -- the workspace of its passes (activations, what
 * each backward needs, scratch, the input gradients) in one allocation,
 * and the forward and backward passes over every unit the model holds.
 *
 * Who owns what: an exec is the caller's from pipar_exec_new to
 * pipar_exec_free; it refers to the model, which must outlive it, and to
 * the input of the last forward, which must stay valid until the
 * matching backward; the outputs returned are the exec's.
 */
#ifndef PIPAR_EXEC_H
#define PIPAR_EXEC_H

#include <stdint.h>

#include "model.h"
#include "rng.h"

struct pipar_exec {
	const struct pipar_model *m;
	int max_n, n, train;
	int nthreads;                   /* pool threads the scratch is sized for */
	const float *x;                 /* input of the last forward, not owned */
	float **act;                    /* per layer: its output */
	void **state;                   /* per layer: what backward needs */
	void *scratch;
	float *grad[2];                 /* ping-pong input gradients */
	struct pipar_rng rng;
	void *block;                    /* the single allocation behind it all */
	size_t bytes;
};

/* Allocates the memory for passes of up to max_n samples, with scratch for
 * the pool's current thread count (pipar_threads_set first; the pool must
 * not grow while the exec is in use).  The exec refers to m, which must
 * outlive it.  rng_stream seeds dropout masks.  NULL with
 * err when out of memory. */
struct pipar_exec *pipar_exec_new(const struct pipar_model *m, int max_n,
				  uint64_t rng_stream, char *err);
void pipar_exec_free(struct pipar_exec *e);

/* Forward over all units held: x is n samples (n <= max_n) and must stay
 * valid until the matching backward.  Returns the output (owned by e, valid
 * until the next forward on e). */
const float *pipar_exec_forward(struct pipar_exec *e, const float *x, int n,
				int train);

/* Backward for the last forward: dy is the gradient of the output.
 * Parameter gradients are added to the units' grad buffers.  Returns the
 * gradient of the input (owned by e) when want_dx, else NULL. */
const float *pipar_exec_backward(struct pipar_exec *e, const float *dy,
				 int want_dx);

#endif
