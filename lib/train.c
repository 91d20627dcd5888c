#define _POSIX_C_SOURCE 200809L
#include "train.h"
#include "rng.h"
#include "exec.h"

#include <stdlib.h>
#include <string.h>

void pipar_train_order(const int *idx, int n, uint64_t seed, int epoch, int device,
		       int *order)
{
	struct pipar_rng rng;

	memcpy(order, idx, sizeof(int) * (size_t)n);
	pipar_rng_seed(&rng, seed, 0x6f72646572ULL + (uint64_t)epoch + (uint64_t)device * 1000003u);
	pipar_rng_shuffle(&rng, order, (size_t)n);
}

int pipar_train_epoch(struct pipar_model *m, struct pipar_exec *e,
		      const struct pipar_data *d, const struct pipar_norm *norm,
		      const int *idx, int n, int epoch,
		      const struct pipar_train_cfg *cfg,
		      struct pipar_epoch_stats *st, pipar_progress_fn progress,
		      void *progress_arg, char *err)
{
	int B = cfg->batch, k = m->classes, correct = 0, nb = (n + B - 1) / B;
	size_t xs = pipar_shape_size(d->shape);
	float *x = NULL, *dl = NULL;
	int *y = NULL, *order = NULL;
	double loss = 0, t0 = pipar_now();

	PIPAR_ASSERT(B >= 1 && B <= e->max_n && e->m == m);
	if (!pipar_shape_eq(d->shape, m->in) || d->classes != m->classes)
		return pipar_errf(err, "data set '%s' does not fit the model's input or classes",
				  d->name);
	x = pipar_alloc(sizeof(float) * xs * (size_t)B);
	dl = pipar_alloc(sizeof(float) * (size_t)k * (size_t)B);
	y = malloc(sizeof(int) * (size_t)B);
	order = malloc(sizeof(int) * (size_t)(n ? n : 1));
	if (!x || !dl || !y || !order) {
		free(x);
		free(dl);
		free(y);
		free(order);
		return pipar_errf(err, "out of memory");
	}
	pipar_train_order(idx, n, cfg->seed, epoch, 0, order);
	for (int b = 0; b < nb; b++) {
		int cnt = (b + 1) * B <= n ? B : n - b * B;
		const float *logits;

		pipar_data_batch(d, norm, order + (size_t)b * B, cnt, x, y);
		logits = pipar_exec_forward(e, x, cnt, 1);
		loss += pipar_softmax_xent(logits, y, cnt, k, 1.0f / (float)cnt,
					   dl, &correct);
		pipar_model_zero_grad(m);
		pipar_exec_backward(e, dl, 0);
		pipar_model_sgd_step(m, &cfg->sgd);
		if (progress)
			progress(progress_arg, b + 1, nb);
	}
	st->loss = n ? loss / n : 0;
	st->accuracy = n ? (double)correct / n : 0;
	st->samples = n;
	st->seconds = pipar_now() - t0;
	free(x);
	free(dl);
	free(y);
	free(order);
	return 0;
}

int pipar_train_evaluate(const struct pipar_model *m, struct pipar_exec *e,
		   const struct pipar_data *d, const struct pipar_norm *norm,
		   int n, struct pipar_epoch_stats *st, long *confusion,
		   char *err)
{
	int B = e->max_n, k = m->classes, correct = 0;
	size_t xs = pipar_shape_size(d->shape);
	float *x;
	int *y, *idx;
	double loss = 0, t0 = pipar_now();

	if (!pipar_shape_eq(d->shape, m->in) || d->classes != m->classes)
		return pipar_errf(err, "data set '%s' does not fit the model's input or classes",
				  d->name);
	if (n <= 0 || n > d->count)
		n = d->count;
	x = pipar_alloc(sizeof(float) * xs * (size_t)B);
	y = malloc(sizeof(int) * (size_t)B);
	idx = malloc(sizeof(int) * (size_t)B);
	if (!x || !y || !idx) {
		free(x);
		free(y);
		free(idx);
		return pipar_errf(err, "out of memory");
	}
	if (confusion)
		memset(confusion, 0, sizeof(long) * (size_t)k * (size_t)k);
	for (int s = 0; s < n; s += B) {
		int cnt = s + B <= n ? B : n - s;
		const float *logits;

		for (int i = 0; i < cnt; i++)
			idx[i] = s + i;
		pipar_data_batch(d, norm, idx, cnt, x, y);
		logits = pipar_exec_forward(e, x, cnt, 0);
		loss += pipar_softmax_xent(logits, y, cnt, k, 0, NULL, &correct);
		if (confusion)
			for (int i = 0; i < cnt; i++) {
				const float *z = logits + (size_t)i * k;
				int arg = 0;

				for (int j = 1; j < k; j++)
					if (z[j] > z[arg])
						arg = j;
				confusion[(size_t)y[i] * k + arg]++;
			}
	}
	st->loss = loss / n;
	st->accuracy = (double)correct / n;
	st->samples = n;
	st->seconds = pipar_now() - t0;
	free(x);
	free(y);
	free(idx);
	return 0;
}
