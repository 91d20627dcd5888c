/*
 * One training step (forward, loss, backward, SGD) of a zoo model on random
 * data, timed; and the peak of cblas_sgemm on this machine for reference.
 * Prints one JSON object.
 *
 *   step MODEL CxHxW CLASSES BATCH THREADS WARMUP STEPS
 */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec.h"
#include "model.h"
#include "pool.h"
#include "rng.h"

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Large square sgemm on every pool thread at once (BLAS single-threaded
 * in each, as pipar runs it): the best the machine does for this thread
 * count. */
struct peak_job {
	int n;
	float *buf[PIPAR_MAX_THREADS];
};

static void peak_run(void *arg, int tid, int nthreads)
{
	struct peak_job *j = arg;
	int n = j->n;
	float *a = j->buf[tid], *b = a + (size_t)n * n, *c = b + (size_t)n * n;

	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n,
		    b, n, 0, c, n);
}

static double sgemm_peak(void)
{
	struct peak_job j = {.n = 1536};
	int T = pipar_threads();
	double best = 1e30;

	for (int t = 0; t < T; t++) {
		j.buf[t] = pipar_calloc(sizeof(float) * 3 * (size_t)j.n * j.n);
		for (size_t i = 0; i < 2 * (size_t)j.n * j.n; i++)
			j.buf[t][i] = (float)(i % 7) * 0.1f;
	}
	for (int r = 0; r < 5; r++) {
		double t0 = pipar_now();

		pipar_parallel(peak_run, &j);
		t0 = pipar_now() - t0;
		if (t0 < best)
			best = t0;
	}
	for (int t = 0; t < T; t++)
		free(j.buf[t]);
	return 2.0 * j.n * j.n * j.n * T / best / 1e9;
}

int main(int argc, char **argv)
{
	char err[PIPAR_ERRLEN], *spec;
	struct pipar_shape in;
	struct pipar_model *m;
	struct pipar_exec *e;
	struct pipar_sgd opt = {0.01f, 0.9f, 0};
	int classes, B, T, W, S;
	double *t, flops = 0;
	float *x, *dl;
	int *y;

	if (argc != 8 || pipar_shape_parse(argv[2], &in) < 0) {
		fprintf(stderr, "usage: step MODEL CxHxW CLASSES BATCH THREADS WARMUP STEPS\n");
		return 2;
	}
	classes = atoi(argv[3]);
	B = atoi(argv[4]);
	T = atoi(argv[5]);
	W = atoi(argv[6]);
	S = atoi(argv[7]);
	T = pipar_threads_set(T);
	if (pipar_model_zoo_spec(argv[1], &spec, err) < 0 ||
	    pipar_model_new(spec, in, classes, 0, -1, 1, &m, err) < 0 ||
	    !(e = pipar_exec_new(m, B, 0, err))) {
		fprintf(stderr, "step: %s\n", err);
		return 1;
	}
	x = pipar_alloc(sizeof(float) * B * pipar_shape_size(in));
	dl = pipar_alloc(sizeof(float) * B * classes);
	y = malloc(sizeof(int) * B);
	t = malloc(sizeof(double) * S);
	struct pipar_rng r;
	pipar_rng_seed(&r, 1, 1);
	for (size_t i = 0; i < B * pipar_shape_size(in); i++)
		x[i] = (float)pipar_rng_normal(&r);
	for (int i = 0; i < B; i++)
		y[i] = (int)pipar_rng_below(&r, (uint32_t)classes);
	for (int i = 0; i < W + S; i++) {
		double t0 = pipar_now();
		const float *z = pipar_exec_forward(e, x, B, 1);

		pipar_softmax_xent(z, y, B, classes, 1.0f / B, dl, NULL);
		pipar_model_zero_grad(m);
		pipar_exec_backward(e, dl, 0);
		pipar_model_sgd_step(m, &opt);
		if (i >= W)
			t[i - W] = pipar_now() - t0;
	}
	qsort(t, S, sizeof(double), cmp);
	/* The same count as the peer benchmark: forward + backward of every
	 * conv and dense layer, the first layer without its input gradient. */
	for (int u = 0; u < m->nunits; u++)
		for (int i = 0; i < m->units[u].nlayers; i++) {
			const struct pipar_layer *l = m->layers[m->units[u].first_layer + i];

			if (strcmp(l->ops->type, "conv") && strcmp(l->ops->type, "dense"))
				continue;
			double f = l->ops->flops(l, 0);

			flops += (u == 0 && i == 0) ? 2 * f : 3 * f;
		}
	flops *= B;
	printf("{\"impl\":\"pipar\",\"model\":\"%s\",\"threads\":%d,\"batch\":%d,\"steps\":%d,"
	       "\"median_s\":%.6f,\"min_s\":%.6f,\"p90_s\":%.6f,\"gflop_per_step\":%.4f,"
	       "\"gflops\":%.2f,\"sgemm_peak_gflops\":%.2f,\"openblas_core\":\"%s\"}\n",
	       argv[1], T, B, S, t[S / 2], t[0], t[(int)(S * 0.9)], flops / 1e9,
	       flops / 1e9 / t[S / 2], sgemm_peak(), openblas_get_corename());
	free(x);
	free(dl);
	free(y);
	free(t);
	free(spec);
	pipar_exec_free(e);
	pipar_model_free(m);
	return 0;
}
