/*
 * Running a model: the workspace of its passes, forward and backward.
 */
#include "exec.h"

#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "pool.h"
#include "util.h"

/* bytes rounded up to the 64-byte alignment of every buffer. */
static size_t al(size_t bytes)
{
	return (bytes + 63) & ~(size_t)63;
}

struct pipar_exec *pipar_exec_new(const struct pipar_model *m, int max_n,
				  uint64_t rng_stream, char *err)
{
	struct pipar_exec *e;
	size_t total = 0, scratch = 0, gmax = 0;
	char *p;

	if (max_n < 1)
		return pipar_errf(err, "batch size %d must be positive", max_n), NULL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return pipar_errf(err, "out of memory"), NULL;
	e->m = m;
	e->max_n = max_n;
	e->act = calloc((size_t)m->nlayers, sizeof(*e->act));
	e->state = calloc((size_t)m->nlayers, sizeof(*e->state));
	if (!e->act || !e->state)
		goto oom;
	for (int i = 0; i < m->nlayers; i++) {
		const struct pipar_layer *l = m->layers[i];
		size_t s = l->ops->scratch_bytes(l, max_n);
		size_t gi = al(sizeof(float) * (size_t)max_n * pipar_shape_size(l->in));

		total += al(sizeof(float) * (size_t)max_n * pipar_shape_size(l->out));
		total += al(l->ops->state_bytes(l, max_n));
		if (s > scratch)
			scratch = s;
		if (gi > gmax)
			gmax = gi;
	}
	/* Scratch is per thread of the pool. */
	e->nthreads = pipar_threads();
	scratch = al(scratch) * (size_t)e->nthreads;
	total += scratch + 2 * gmax;
	/* One block, touched now: first-touch page faults are paid here
	 * rather than in the first training steps. */
	e->block = pipar_calloc(total);
	if (!e->block)
		goto oom;
	e->bytes = total;
	p = e->block;
	for (int i = 0; i < m->nlayers; i++) {
		const struct pipar_layer *l = m->layers[i];

		e->act[i] = (float *)p;
		p += al(sizeof(float) * (size_t)max_n * pipar_shape_size(l->out));
		e->state[i] = p;
		p += al(l->ops->state_bytes(l, max_n));
	}
	e->scratch = p;
	p += al(scratch);
	e->grad[0] = (float *)p;
	e->grad[1] = (float *)(p + gmax);
	pipar_rng_seed(&e->rng, m->seed, 0x64726f70ULL ^ (rng_stream << 8));
	return e;
oom:
	pipar_exec_free(e);
	pipar_errf(err, "out of memory for a batch of %d", max_n);
	return NULL;
}

void pipar_exec_free(struct pipar_exec *e)
{
	if (!e)
		return;
	free(e->block);
	free(e->act);
	free(e->state);
	free(e);
}

/* The state and scratch layouts depend on n; passes of fewer samples than
 * max_n reuse the same memory with the layout for their own n. */
const float *pipar_exec_forward(struct pipar_exec *e, const float *x, int n,
				int train)
{
	const struct pipar_model *m = e->m;
	const float *in = x;

	PIPAR_ASSERT(n >= 1 && n <= e->max_n);
	PIPAR_ASSERT(pipar_threads() <= e->nthreads);
	e->x = x;
	e->n = n;
	e->train = train;
	for (int i = 0; i < m->nlayers; i++) {
		const struct pipar_layer *l = m->layers[i];
		struct pipar_pass p = {
			.n = n, .train = train, .x = in, .y = e->act[i],
			.state = e->state[i], .scratch = e->scratch, .rng = &e->rng,
		};

		l->ops->forward(l, &p);
		in = e->act[i];
	}
	return in;
}

const float *pipar_exec_backward(struct pipar_exec *e, const float *dy,
				 int want_dx)
{
	const struct pipar_model *m = e->m;
	const float *g = dy;
	int k = 0;

	PIPAR_ASSERT(e->n >= 1);
	PIPAR_ASSERT(pipar_threads() <= e->nthreads);
	for (int i = m->nlayers - 1; i >= 0; i--) {
		const struct pipar_layer *l = m->layers[i];
		float *dx = (i > 0 || want_dx) ? e->grad[k] : NULL;
		struct pipar_pass p = {
			.n = e->n, .train = e->train,
			.x = i > 0 ? e->act[i - 1] : e->x, .y = e->act[i],
			.state = e->state[i], .scratch = e->scratch,
			.dy = g, .dx = dx, .rng = &e->rng,
		};

		l->ops->backward(l, &p);
		g = dx;
		k ^= 1;
	}
	return want_dx ? g : NULL;
}
