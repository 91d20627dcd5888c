/*
 * Layer implementations.  Convolution lowers the whole batch to one matrix
 * (im2col) so that each pass is a single large cblas_sgemm; every other layer
 * is a streaming loop over NCHW memory.
 */
#define _POSIX_C_SOURCE 200809L
#include "layers.h"
#include "pool.h"
#include "rng.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Rounds byte counts up so that every carved sub-buffer stays aligned. */
static size_t al(size_t bytes)
{
	return (bytes + 63) & ~(size_t)63;
}

/* Sum of a plane in float lanes; planes are at most a few thousand values,
 * and the caller adds the plane sums in double. */
static inline float plane_sum(const float *restrict x, size_t n)
{
	float s = 0;

#pragma omp simd reduction(+ : s)
	for (size_t i = 0; i < n; i++)
		s += x[i];
	return s;
}

static struct pipar_layer *layer_new(const struct pipar_layer_ops *ops,
				     struct pipar_shape in, int nparams,
				     size_t priv_size, char *err)
{
	struct pipar_layer *l = calloc(1, sizeof(*l));

	if (!l) {
		pipar_errf(err, "out of memory");
		return NULL;
	}
	l->ops = ops;
	l->in = in;
	l->out = in;
	l->owns_params = 1;
	if (nparams) {
		l->params = calloc((size_t)nparams, sizeof(*l->params));
		l->nparams = nparams;
	}
	if (priv_size)
		l->priv = calloc(1, priv_size);
	if ((nparams && !l->params) || (priv_size && !l->priv)) {
		pipar_layer_free(l);
		pipar_errf(err, "out of memory");
		return NULL;
	}
	return l;
}

static void param_set(struct pipar_param *p, const char *role, int trainable,
		      enum pipar_init init, int ndim, const int *dims)
{
	snprintf(p->role, sizeof(p->role), "%s", role);
	p->trainable = trainable;
	p->init = init;
	p->ndim = ndim;
	p->count = 1;
	for (int i = 0; i < ndim; i++) {
		p->dims[i] = dims[i];
		p->count *= (size_t)dims[i];
	}
}

void pipar_layer_free(struct pipar_layer *l)
{
	if (!l)
		return;
	if (l->ops && l->ops->free_priv)
		l->ops->free_priv(l);
	if (l->owns_params)
		free(l->params);
	free(l->priv);
	free(l);
}

/* Runs range(l, p, begin, end, tid) on each pool thread over its static
 * share of count items. */
typedef void (*range_fn)(const struct pipar_layer *l, const struct pipar_pass *p,
			 int begin, int end, int tid);

struct range_job {
	const struct pipar_layer *l;
	const struct pipar_pass *p;
	range_fn fn;
	int count;
};

static void range_run(void *arg, int tid, int nthreads)
{
	const struct range_job *j = arg;
	int b, e;

	pipar_split(j->count, tid, nthreads, &b, &e);
	if (b < e)
		j->fn(j->l, j->p, b, e, tid);
}

static void parallel_range(const struct pipar_layer *l, const struct pipar_pass *p,
			   int count, range_fn fn)
{
	struct range_job j = {l, p, fn, count};

	if (count <= 1 || pipar_threads() == 1) {
		if (count > 0)
			fn(l, p, 0, count, 0);
		return;
	}
	pipar_parallel(range_run, &j);
}

static size_t no_bytes(const struct pipar_layer *l, int n)
{
	return 0;
}

static int valid_shape(struct pipar_shape s)
{
	return s.c > 0 && s.h > 0 && s.w > 0;
}

/* ---------------------------------------------------------------- conv */

/*
 * Convolution works on groups of G samples at a time: the group is lowered
 * (im2col) into a matrix small enough to stay in the core's cache, one gemm
 * computes the group, and the result is scattered into NCHW.  Backward
 * lowers the group again rather than keeping the lowered matrix from
 * forward: recomputing in cache is cheaper than streaming a matrix K times
 * larger than the input through memory, and the layer keeps no state.
 */
struct conv {
	struct pipar_conv_cfg cfg;
	int k;          /* rows of the lowered matrix: C * kernel * kernel */
	int group;      /* samples per gemm */
};

#define CONV_GROUP_BYTES (768u << 10)

static int conv_group(const struct pipar_layer *l, int n)
{
	const struct conv *c = l->priv;
	size_t per = sizeof(float) * (size_t)c->k * l->out.h * l->out.w;
	int g = (int)(CONV_GROUP_BYTES / (per ? per : 1));

	if (g < 1)
		g = 1;
	return g < n ? g : n;
}

static size_t conv_scratch(const struct pipar_layer *l, int n)
{
	const struct conv *c = l->priv;
	size_t cols = (size_t)conv_group(l, n) * l->out.h * l->out.w;

	/* Per thread: the lowered group, the lowered input gradient, the
	 * gemm result (or the transposed output gradient), and a private
	 * weight and bias gradient. */
	return 2 * al(sizeof(float) * (size_t)c->k * cols) +
	       al(sizeof(float) * (size_t)l->out.c * cols) +
	       al(sizeof(float) * (size_t)l->out.c * (c->k + 1));
}

/* The output columns [*ox0, *ox1) and rows [*oy0, *oy1) whose input
 * position for kernel offset (ky, kx) lies inside the image. */
static void conv_valid(const struct pipar_layer *l, int ky, int kx, int *oy0,
		       int *oy1, int *ox0, int *ox1)
{
	const struct conv *cv = l->priv;
	int S = cv->cfg.stride, P = cv->cfg.padding;

	*ox0 = 0;
	*ox1 = l->out.w;
	while (*ox0 < l->out.w && *ox0 * S - P + kx < 0)
		(*ox0)++;
	while (*ox1 > *ox0 && (*ox1 - 1) * S - P + kx >= l->in.w)
		(*ox1)--;
	*oy0 = 0;
	*oy1 = l->out.h;
	while (*oy0 < l->out.h && *oy0 * S - P + ky < 0)
		(*oy0)++;
	while (*oy1 > *oy0 && (*oy1 - 1) * S - P + ky >= l->in.h)
		(*oy1)--;
}

/* Stride 1 with the output as wide as the input ("same" padding, the
 * common case): the part of a lowered row that comes from one input plane
 * is that plane shifted, so it is copied as one block and the columns that
 * wrapped around are zeroed after. */
static int conv_same(const struct pipar_layer *l)
{
	const struct conv *cv = l->priv;

	return cv->cfg.stride == 1 && l->out.w == l->in.w;
}

static void im2col_same(const struct pipar_layer *l, const float *x, float *col,
			int n)
{
	const struct conv *cv = l->priv;
	int C = l->in.c, H = l->in.h, W = l->in.w;
	int OH = l->out.h, K = cv->cfg.kernel, P = cv->cfg.padding;
	size_t plane = (size_t)OH * W, cols = plane * (size_t)n;

	for (int c = 0; c < C; c++)
		for (int ky = 0; ky < K; ky++)
			for (int kx = 0; kx < K; kx++) {
				float *row = col + ((size_t)(c * K + ky) * K + kx) * cols;
				int oy0, oy1, ox0, ox1;

				conv_valid(l, ky, kx, &oy0, &oy1, &ox0, &ox1);
				for (int b = 0; b < n; b++) {
					const float *xp = x + ((size_t)b * C + c) * H * W;
					float *restrict r = row + (size_t)b * plane;

					if (oy0 >= oy1 || ox0 >= ox1) {
						memset(r, 0, sizeof(float) * plane);
						continue;
					}
					size_t first = (size_t)oy0 * W + ox0;
					size_t last = (size_t)(oy1 - 1) * W + ox1;
					const float *restrict src = xp + (ptrdiff_t)((oy0 - P + ky) * W + ox0 - P + kx) - (ptrdiff_t)first;

					memset(r, 0, sizeof(float) * first);
					memcpy(r + first, src + first, sizeof(float) * (last - first));
					memset(r + last, 0, sizeof(float) * (plane - last));
					for (int oy = oy0; oy < oy1; oy++) {
						float *rr = r + (size_t)oy * W;

						for (int ox = 0; ox < ox0; ox++)
							rr[ox] = 0;
						for (int ox = ox1; ox < W; ox++)
							rr[ox] = 0;
					}
				}
			}
}

/* Lowers x (n x C x H x W) to col (C*K*K rows, n*OH*OW columns). */
static void im2col(const struct pipar_layer *l, const float *x, float *col,
		   int n)
{
	const struct conv *cv = l->priv;
	int C = l->in.c, H = l->in.h, W = l->in.w;
	int OH = l->out.h, OW = l->out.w, K = cv->cfg.kernel;
	int S = cv->cfg.stride, P = cv->cfg.padding;
	size_t plane = (size_t)OH * OW, cols = plane * (size_t)n;

	if (conv_same(l)) {
		im2col_same(l, x, col, n);
		return;
	}
	for (int c = 0; c < C; c++)
		for (int ky = 0; ky < K; ky++)
			for (int kx = 0; kx < K; kx++) {
				float *row = col + ((size_t)(c * K + ky) * K + kx) * cols;
				/* Output columns ox whose input column is inside. */
				int ox0 = 0, ox1 = OW;

				while (ox0 < OW && ox0 * S - P + kx < 0)
					ox0++;
				while (ox1 > ox0 && (ox1 - 1) * S - P + kx >= W)
					ox1--;
				for (int b = 0; b < n; b++) {
					const float *xp = x + ((size_t)b * C + c) * H * W;
					float *rp = row + (size_t)b * plane;

					for (int oy = 0; oy < OH; oy++) {
						int iy = oy * S - P + ky;
						float *restrict r = rp + (size_t)oy * OW;

						if (iy < 0 || iy >= H) {
							for (int ox = 0; ox < OW; ox++)
								r[ox] = 0;
							continue;
						}
						const float *restrict xr = xp + (size_t)iy * W - P + kx;
						for (int ox = 0; ox < ox0; ox++)
							r[ox] = 0;
						if (S == 1)
							for (int ox = ox0; ox < ox1; ox++)
								r[ox] = xr[ox];
						else
							for (int ox = ox0; ox < ox1; ox++)
								r[ox] = xr[ox * S];
						for (int ox = ox1; ox < OW; ox++)
							r[ox] = 0;
					}
				}
			}
}

/* col2im for conv_same(): the wrapped columns of the lowered gradient are
 * zeroed in place (col is scratch), then each block is added at once. */
static void col2im_same(const struct pipar_layer *l, float *col, float *dx, int n)
{
	const struct conv *cv = l->priv;
	int C = l->in.c, H = l->in.h, W = l->in.w;
	int OH = l->out.h, K = cv->cfg.kernel, P = cv->cfg.padding;
	size_t plane = (size_t)OH * W, cols = plane * (size_t)n;

	memset(dx, 0, sizeof(float) * (size_t)n * C * H * W);
	for (int c = 0; c < C; c++)
		for (int ky = 0; ky < K; ky++)
			for (int kx = 0; kx < K; kx++) {
				float *row = col + ((size_t)(c * K + ky) * K + kx) * cols;
				int oy0, oy1, ox0, ox1;

				conv_valid(l, ky, kx, &oy0, &oy1, &ox0, &ox1);
				if (oy0 >= oy1 || ox0 >= ox1)
					continue;
				for (int b = 0; b < n; b++) {
					float *xp = dx + ((size_t)b * C + c) * H * W;
					float *restrict r = row + (size_t)b * plane;
					size_t first = (size_t)oy0 * W + ox0;
					size_t last = (size_t)(oy1 - 1) * W + ox1;
					float *restrict dst = xp + (ptrdiff_t)((oy0 - P + ky) * W + ox0 - P + kx) - (ptrdiff_t)first;

					for (int oy = oy0; oy < oy1; oy++) {
						float *rr = r + (size_t)oy * W;

						for (int ox = 0; ox < ox0; ox++)
							rr[ox] = 0;
						for (int ox = ox1; ox < W; ox++)
							rr[ox] = 0;
					}
#pragma omp simd
					for (size_t i = first; i < last; i++)
						dst[i] += r[i];
				}
			}
}

/* Adds col (the lowered gradient) back into dx, which it zeroes first.
 * col is scratch and may be changed. */
static void col2im(const struct pipar_layer *l, float *col, float *dx,
		   int n)
{
	const struct conv *cv = l->priv;
	int C = l->in.c, H = l->in.h, W = l->in.w;
	int OH = l->out.h, OW = l->out.w, K = cv->cfg.kernel;
	int S = cv->cfg.stride, P = cv->cfg.padding;
	size_t plane = (size_t)OH * OW, cols = plane * (size_t)n;

	if (conv_same(l)) {
		col2im_same(l, col, dx, n);
		return;
	}
	memset(dx, 0, sizeof(float) * (size_t)n * C * H * W);
	for (int c = 0; c < C; c++)
		for (int ky = 0; ky < K; ky++)
			for (int kx = 0; kx < K; kx++) {
				const float *row = col + ((size_t)(c * K + ky) * K + kx) * cols;
				int ox0 = 0, ox1 = OW;

				while (ox0 < OW && ox0 * S - P + kx < 0)
					ox0++;
				while (ox1 > ox0 && (ox1 - 1) * S - P + kx >= W)
					ox1--;
				for (int b = 0; b < n; b++) {
					float *xp = dx + ((size_t)b * C + c) * H * W;
					const float *rp = row + (size_t)b * plane;

					for (int oy = 0; oy < OH; oy++) {
						int iy = oy * S - P + ky;

						if (iy < 0 || iy >= H)
							continue;
						const float *restrict r = rp + (size_t)oy * OW;
						float *restrict xr = xp + (size_t)iy * W - P + kx;
						if (S == 1)
							for (int ox = ox0; ox < ox1; ox++)
								xr[ox] += r[ox];
						else
							for (int ox = ox0; ox < ox1; ox++)
								xr[ox * S] += r[ox];
					}
				}
			}
}

static void *thread_scratch(const struct pipar_layer *l, const struct pipar_pass *p,
			    int tid)
{
	return (char *)p->scratch + (size_t)tid * al(l->ops->scratch_bytes(l, p->n));
}

/* Forward over sample groups [g0, g1). */
static void conv_forward_range(const struct pipar_layer *l, const struct pipar_pass *p,
			       int g0, int g1, int tid)
{
	const struct conv *cv = l->priv;
	int OC = l->out.c, n = p->n, G = conv_group(l, n);
	size_t plane = (size_t)l->out.h * l->out.w, insz = pipar_shape_size(l->in);
	float *col = thread_scratch(l, p, tid);
	float *tmp = (float *)((char *)col +
			       2 * al(sizeof(float) * (size_t)cv->k * G * plane));
	const float *w = l->params[0].data;
	const float *bias = cv->cfg.bias ? l->params[1].data : NULL;

	for (int grp = g0; grp < g1; grp++) {
		int b0 = grp * G, g = b0 + G <= n ? G : n - b0;
		size_t cols = (size_t)g * plane;

		im2col(l, p->x + (size_t)b0 * insz, col, g);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OC,
			    (int)cols, cv->k, 1.0f, w, cv->k, col, (int)cols, 0.0f,
			    tmp, (int)cols);
		/* tmp is OC x (g x plane); y is n x OC x plane. */
		for (int b = 0; b < g; b++)
			for (int o = 0; o < OC; o++) {
				const float *restrict s = tmp + (size_t)o * cols + (size_t)b * plane;
				float *restrict d = p->y + ((size_t)(b0 + b) * OC + o) * plane;
				float bo = bias ? bias[o] : 0.0f;

#pragma omp simd
				for (size_t i = 0; i < plane; i++)
					d[i] = s[i] + bo;
			}
	}
}

static void conv_forward(const struct pipar_layer *l, const struct pipar_pass *p)
{
	int G = conv_group(l, p->n);

	parallel_range(l, p, (p->n + G - 1) / G, conv_forward_range);
}

/* Backward over sample groups [g0, g1).  With several threads each adds
 * its weight and bias gradients into a private buffer, summed afterwards
 * in thread order, so the result does not depend on timing. */
static void conv_backward_range(const struct pipar_layer *l, const struct pipar_pass *p,
				int g0, int g1, int tid)
{
	const struct conv *cv = l->priv;
	int OC = l->out.c, n = p->n, G = conv_group(l, n);
	size_t plane = (size_t)l->out.h * l->out.w, insz = pipar_shape_size(l->in);
	size_t colbytes = al(sizeof(float) * (size_t)cv->k * G * plane);
	float *col = thread_scratch(l, p, tid);
	float *dcol = (float *)((char *)col + colbytes);
	float *dyt = (float *)((char *)col + 2 * colbytes);
	float *priv = (float *)((char *)dyt + al(sizeof(float) * (size_t)OC * G * plane));
	int shared = pipar_threads() == 1 || (n + G - 1) / G <= 1;
	float *dw = shared ? l->params[0].grad : priv;
	float *db = !cv->cfg.bias ? NULL : shared ? l->params[1].grad : priv + (size_t)OC * cv->k;

	if (!shared)
		memset(priv, 0, sizeof(float) * (size_t)OC * (cv->k + 1));
	for (int grp = g0; grp < g1; grp++) {
		int b0 = grp * G, g = b0 + G <= n ? G : n - b0;
		size_t cols = (size_t)g * plane;

		for (int o = 0; o < OC; o++) {
			float *restrict d = dyt + (size_t)o * cols;
			double sum = 0;

			for (int b = 0; b < g; b++) {
				const float *restrict s = p->dy + ((size_t)(b0 + b) * OC + o) * plane;
				float *restrict t = d + (size_t)b * plane;

#pragma omp simd
				for (size_t i = 0; i < plane; i++)
					t[i] = s[i];
				if (db)
					sum += plane_sum(s, plane);
			}
			if (db)
				db[o] += (float)sum;
		}
		im2col(l, p->x + (size_t)b0 * insz, col, g);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OC, cv->k,
			    (int)cols, 1.0f, dyt, (int)cols, col, (int)cols, 1.0f,
			    dw, cv->k);
		if (!p->dx)
			continue;
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cv->k,
			    (int)cols, OC, 1.0f, l->params[0].data, cv->k, dyt,
			    (int)cols, 0.0f, dcol, (int)cols);
		col2im(l, dcol, p->dx + (size_t)b0 * insz, g);
	}
}

static void conv_backward(const struct pipar_layer *l, const struct pipar_pass *p)
{
	const struct conv *cv = l->priv;
	int G = conv_group(l, p->n), ng = (p->n + G - 1) / G, T = pipar_threads();

	parallel_range(l, p, ng, conv_backward_range);
	if (T == 1 || ng <= 1)
		return;
	/* Threads that had no group left their private buffer untouched. */
	size_t cnt = (size_t)l->out.c * (cv->k + 1), nw = (size_t)l->out.c * cv->k;
	for (int t = 0; t < T; t++) {
		int b, e;

		pipar_split(ng, t, T, &b, &e);
		if (b >= e)
			continue;
		const float *priv = (const float *)((char *)thread_scratch(l, p, t) +
			2 * al(sizeof(float) * (size_t)cv->k * G * l->out.h * l->out.w) +
			al(sizeof(float) * (size_t)l->out.c * G * l->out.h * l->out.w));
		float *dw = l->params[0].grad;

		for (size_t i = 0; i < nw; i++)
			dw[i] += priv[i];
		if (cv->cfg.bias)
			for (size_t i = nw; i < cnt; i++)
				l->params[1].grad[i - nw] += priv[i];
	}
}

static double conv_flops(const struct pipar_layer *l, int backward)
{
	const struct conv *cv = l->priv;
	double f = 2.0 * cv->k * l->out.c * l->out.h * l->out.w;

	return backward ? 2.0 * f : f;
}

static const struct pipar_layer_ops conv_ops = {
	.type = "conv",
	.state_bytes = no_bytes,
	.scratch_bytes = conv_scratch,
	.forward = conv_forward,
	.backward = conv_backward,
	.flops = conv_flops,
};

struct pipar_layer *pipar_layer_conv_new(struct pipar_shape in,
					 const struct pipar_conv_cfg *cfg,
					 char *err)
{
	struct pipar_layer *l;
	struct conv *cv;
	int K = cfg->kernel, S = cfg->stride, P = cfg->padding;

	if (!valid_shape(in) || cfg->out_channels <= 0 || K <= 0 || S <= 0 ||
	    P < 0 || cfg->out_channels > 65536 || K > 64 || P > 64)
		return pipar_errf(err, "conv: bad configuration (out %d, kernel %d, stride %d, padding %d)",
				  cfg->out_channels, K, S, P), NULL;
	if (in.h + 2 * P < K || in.w + 2 * P < K)
		return pipar_errf(err, "conv: kernel %d larger than the padded %dx%d input",
				  K, in.h + 2 * P, in.w + 2 * P), NULL;
	/* The weights of one output channel are counted in an int. */
	if (in.c > INT32_MAX / (K * K))
		return pipar_errf(err, "conv: %d input channels too many for a %dx%d kernel",
				  in.c, K, K), NULL;
	l = layer_new(&conv_ops, in, cfg->bias ? 2 : 1, sizeof(struct conv), err);
	if (!l)
		return NULL;
	cv = l->priv;
	cv->cfg = *cfg;
	cv->k = in.c * K * K;
	l->out.c = cfg->out_channels;
	l->out.h = (in.h + 2 * P - K) / S + 1;
	l->out.w = (in.w + 2 * P - K) / S + 1;
	param_set(&l->params[0], "conv.weight", 1, PIPAR_INIT_HE, 4,
		  (int[]){cfg->out_channels, in.c, K, K});
	l->params[0].fan_in = cv->k;
	l->params[0].fan_out = cfg->out_channels * K * K;
	if (cfg->bias)
		param_set(&l->params[1], "conv.bias", 1, PIPAR_INIT_ZERO, 1,
			  (int[]){cfg->out_channels});
	return l;
}

/* ---------------------------------------------------------------- pools */

struct pool {
	struct pipar_pool_cfg cfg;
	int k, s;       /* effective kernel and stride */
};

static int pool_setup(struct pipar_layer *l, struct pipar_shape in,
		      const struct pipar_pool_cfg *cfg, const char *what,
		      char *err)
{
	struct pool *pl = l->priv;

	pl->cfg = *cfg;
	if (cfg->global) {
		if (in.h != in.w)
			return pipar_errf(err, "%s: global pooling needs a square input, not %dx%d",
					  what, in.h, in.w);
		pl->k = in.h;
		pl->s = in.h;
	} else {
		pl->k = cfg->kernel;
		pl->s = cfg->stride ? cfg->stride : cfg->kernel;
	}
	if (pl->k <= 0 || pl->s <= 0 || pl->k > 1024)
		return pipar_errf(err, "%s: bad kernel %d or stride %d", what,
				  pl->k, pl->s);
	if (pl->k > in.h || pl->k > in.w)
		return pipar_errf(err, "%s: kernel %d larger than the %dx%d input",
				  what, pl->k, in.h, in.w);
	l->out.c = in.c;
	l->out.h = (in.h - pl->k) / pl->s + 1;
	l->out.w = (in.w - pl->k) / pl->s + 1;
	return 0;
}

static size_t maxpool_state(const struct pipar_layer *l, int n)
{
	return al(sizeof(int32_t) * (size_t)n * pipar_shape_size(l->out));
}

static void maxpool_forward_range(const struct pipar_layer *l,
				  const struct pipar_pass *p, int c0, int c1, int tid)
{
	const struct pool *pl = l->priv;
	int H = l->in.h, W = l->in.w, OH = l->out.h, OW = l->out.w;
	int K = pl->k, S = pl->s;
	int32_t *arg = p->state;

	for (size_t c = (size_t)c0; c < (size_t)c1; c++) {
		const float *x = p->x + c * H * W;
		float *y = p->y + c * OH * OW;
		int32_t *a = arg + c * OH * OW;

		if (K == 2 && S == 2) {
			for (int oy = 0; oy < OH; oy++) {
				const float *r0 = x + (size_t)(2 * oy) * W;
				const float *r1 = r0 + W;

				for (int ox = 0; ox < OW; ox++) {
					int i = 2 * ox, bi = 2 * oy * W + i;
					float m = r0[i];

					if (r0[i + 1] > m)
						m = r0[i + 1], bi = 2 * oy * W + i + 1;
					if (r1[i] > m)
						m = r1[i], bi = (2 * oy + 1) * W + i;
					if (r1[i + 1] > m)
						m = r1[i + 1], bi = (2 * oy + 1) * W + i + 1;
					y[oy * OW + ox] = m;
					a[oy * OW + ox] = bi;
				}
			}
			continue;
		}
		for (int oy = 0; oy < OH; oy++)
			for (int ox = 0; ox < OW; ox++) {
				int bi = oy * S * W + ox * S;
				float m = x[bi];

				for (int ky = 0; ky < K; ky++)
					for (int kx = 0; kx < K; kx++) {
						int i = (oy * S + ky) * W + ox * S + kx;

						if (x[i] > m)
							m = x[i], bi = i;
					}
				y[oy * OW + ox] = m;
				a[oy * OW + ox] = bi;
			}
	}
}

static void maxpool_forward(const struct pipar_layer *l, const struct pipar_pass *p)
{
	parallel_range(l, p, p->n * l->in.c, maxpool_forward_range);
}

static void maxpool_backward_range(const struct pipar_layer *l,
				   const struct pipar_pass *p, int c0, int c1, int tid)
{
	size_t inplane = (size_t)l->in.h * l->in.w;
	size_t outplane = (size_t)l->out.h * l->out.w;
	const int32_t *arg = p->state;

	/* Plane by plane, so the zeroed plane is still in cache for the
	 * scatter. */
	for (size_t c = (size_t)c0; c < (size_t)c1; c++) {
		float *dx = p->dx + c * inplane;
		const float *dy = p->dy + c * outplane;
		const int32_t *a = arg + c * outplane;

		memset(dx, 0, sizeof(float) * inplane);
		for (size_t i = 0; i < outplane; i++)
			dx[a[i]] += dy[i];
	}
}

static void maxpool_backward(const struct pipar_layer *l, const struct pipar_pass *p)
{
	if (p->dx)
		parallel_range(l, p, p->n * l->in.c, maxpool_backward_range);
}

static double pool_flops(const struct pipar_layer *l, int backward)
{
	const struct pool *pl = l->priv;

	return (double)pipar_shape_size(l->out) * pl->k * pl->k;
}

static const struct pipar_layer_ops maxpool_ops = {
	.type = "maxpool",
	.state_bytes = maxpool_state,
	.scratch_bytes = no_bytes,
	.forward = maxpool_forward,
	.backward = maxpool_backward,
	.flops = pool_flops,
};

struct pipar_layer *pipar_layer_maxpool_new(struct pipar_shape in,
					    const struct pipar_pool_cfg *cfg,
					    char *err)
{
	struct pipar_layer *l;

	if (!valid_shape(in))
		return pipar_errf(err, "maxpool: bad input shape"), NULL;
	l = layer_new(&maxpool_ops, in, 0, sizeof(struct pool), err);
	if (l && pool_setup(l, in, cfg, "maxpool", err) < 0) {
		pipar_layer_free(l);
		return NULL;
	}
	return l;
}

static void avgpool_forward(const struct pipar_layer *l, const struct pipar_pass *p)
{
	const struct pool *pl = l->priv;
	int H = l->in.h, W = l->in.w, OH = l->out.h, OW = l->out.w;
	int K = pl->k, S = pl->s;
	size_t planes = (size_t)p->n * l->in.c;
	float inv = 1.0f / (float)(K * K);

	for (size_t c = 0; c < planes; c++) {
		const float *x = p->x + c * H * W;
		float *y = p->y + c * OH * OW;

		for (int oy = 0; oy < OH; oy++)
			for (int ox = 0; ox < OW; ox++) {
				float s = 0;

				for (int ky = 0; ky < K; ky++)
					for (int kx = 0; kx < K; kx++)
						s += x[(oy * S + ky) * W + ox * S + kx];
				y[oy * OW + ox] = s * inv;
			}
	}
}

static void avgpool_backward(const struct pipar_layer *l, const struct pipar_pass *p)
{
	const struct pool *pl = l->priv;
	int H = l->in.h, W = l->in.w, OH = l->out.h, OW = l->out.w;
	int K = pl->k, S = pl->s;
	size_t planes = (size_t)p->n * l->in.c;
	float inv = 1.0f / (float)(K * K);

	if (!p->dx)
		return;
	memset(p->dx, 0, sizeof(float) * planes * H * W);
	for (size_t c = 0; c < planes; c++) {
		float *dx = p->dx + c * H * W;
		const float *dy = p->dy + c * OH * OW;

		for (int oy = 0; oy < OH; oy++)
			for (int ox = 0; ox < OW; ox++) {
				float g = dy[oy * OW + ox] * inv;

				for (int ky = 0; ky < K; ky++)
					for (int kx = 0; kx < K; kx++)
						dx[(oy * S + ky) * W + ox * S + kx] += g;
			}
	}
}

static const struct pipar_layer_ops avgpool_ops = {
	.type = "avgpool",
	.state_bytes = no_bytes,
	.scratch_bytes = no_bytes,
	.forward = avgpool_forward,
	.backward = avgpool_backward,
	.flops = pool_flops,
};

struct pipar_layer *pipar_layer_avgpool_new(struct pipar_shape in,
					    const struct pipar_pool_cfg *cfg,
					    char *err)
{
	struct pipar_layer *l;

	if (!valid_shape(in))
		return pipar_errf(err, "avgpool: bad input shape"), NULL;
	l = layer_new(&avgpool_ops, in, 0, sizeof(struct pool), err);
	if (l && pool_setup(l, in, cfg, "avgpool", err) < 0) {
		pipar_layer_free(l);
		return NULL;
	}
	return l;
}

/* ---------------------------------------------------------------- relu */

static void relu_forward_range(const struct pipar_layer *l, const struct pipar_pass *p,
			       int s0, int s1, int tid)
{
	size_t per = pipar_shape_size(l->in), m = (size_t)(s1 - s0) * per;
	const float *restrict x = p->x + (size_t)s0 * per;
	float *restrict y = p->y + (size_t)s0 * per;

#pragma omp simd
	for (size_t i = 0; i < m; i++)
		y[i] = x[i] > 0 ? x[i] : 0;
}

static void relu_forward(const struct pipar_layer *l, const struct pipar_pass *p)
{
	parallel_range(l, p, p->n, relu_forward_range);
}

/* Uses the output, not the input: y > 0 exactly where x > 0. */
static void relu_backward_range(const struct pipar_layer *l, const struct pipar_pass *p,
				int s0, int s1, int tid)
{
	size_t per = pipar_shape_size(l->in), m = (size_t)(s1 - s0) * per;
	const float *restrict y = p->y + (size_t)s0 * per, *restrict dy = p->dy + (size_t)s0 * per;
	float *restrict dx = p->dx + (size_t)s0 * per;

#pragma omp simd
	for (size_t i = 0; i < m; i++)
		dx[i] = y[i] > 0 ? dy[i] : 0;
}

static void relu_backward(const struct pipar_layer *l, const struct pipar_pass *p)
{
	if (p->dx)
		parallel_range(l, p, p->n, relu_backward_range);
}

static double elem_flops(const struct pipar_layer *l, int backward)
{
	return (double)pipar_shape_size(l->in);
}

static const struct pipar_layer_ops relu_ops = {
	.type = "relu",
	.state_bytes = no_bytes,
	.scratch_bytes = no_bytes,
	.forward = relu_forward,
	.backward = relu_backward,
	.flops = elem_flops,
};

struct pipar_layer *pipar_layer_relu_new(struct pipar_shape in, char *err)
{
	if (!valid_shape(in))
		return pipar_errf(err, "relu: bad input shape"), NULL;
	return layer_new(&relu_ops, in, 0, 0, err);
}

/* ---------------------------------------------------------------- flatten */

static void copy_forward(const struct pipar_layer *l, const struct pipar_pass *p)
{
	memcpy(p->y, p->x, sizeof(float) * (size_t)p->n * pipar_shape_size(l->in));
}

static void copy_backward(const struct pipar_layer *l, const struct pipar_pass *p)
{
	if (p->dx)
		memcpy(p->dx, p->dy,
		       sizeof(float) * (size_t)p->n * pipar_shape_size(l->in));
}

static double zero_flops(const struct pipar_layer *l, int backward)
{
	return 0;
}

static const struct pipar_layer_ops flatten_ops = {
	.type = "flatten",
	.state_bytes = no_bytes,
	.scratch_bytes = no_bytes,
	.forward = copy_forward,
	.backward = copy_backward,
	.flops = zero_flops,
};

struct pipar_layer *pipar_layer_flatten_new(struct pipar_shape in, char *err)
{
	struct pipar_layer *l;

	if (!valid_shape(in))
		return pipar_errf(err, "flatten: bad input shape"), NULL;
	if (pipar_shape_size(in) > INT32_MAX)
		return pipar_errf(err, "flatten: %zu values do not fit one channel count",
				  pipar_shape_size(in)), NULL;
	l = layer_new(&flatten_ops, in, 0, 0, err);
	if (l)
		l->out = (struct pipar_shape){(int)pipar_shape_size(in), 1, 1};
	return l;
}

/* ---------------------------------------------------------------- dense */

/* Samples [s0, s1): y = x W^T + b. */
static void dense_forward_range(const struct pipar_layer *l, const struct pipar_pass *p,
				int s0, int s1, int tid)
{
	int in = (int)pipar_shape_size(l->in), out = l->out.c;
	float *y = p->y + (size_t)s0 * out;

	if (l->nparams > 1)
		for (int b = s0; b < s1; b++)
			memcpy(p->y + (size_t)b * out, l->params[1].data,
			       sizeof(float) * out);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s1 - s0, out, in, 1.0f,
		    p->x + (size_t)s0 * in, in, l->params[0].data, in,
		    l->nparams > 1 ? 1.0f : 0.0f, y, out);
}

static void dense_forward(const struct pipar_layer *l, const struct pipar_pass *p)
{
	parallel_range(l, p, p->n, dense_forward_range);
}

/* Output rows [o0, o1) of the weight and bias gradients. */
static void dense_wgrad_range(const struct pipar_layer *l, const struct pipar_pass *p,
			      int o0, int o1, int tid)
{
	int in = (int)pipar_shape_size(l->in), out = l->out.c;

	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, o1 - o0, in, p->n, 1.0f,
		    p->dy + o0, out, p->x, in, 1.0f,
		    l->params[0].grad + (size_t)o0 * in, in);
	if (l->nparams > 1) {
		float *db = l->params[1].grad;

		for (int b = 0; b < p->n; b++)
			for (int o = o0; o < o1; o++)
				db[o] += p->dy[(size_t)b * out + o];
	}
}

/* Samples [s0, s1) of the input gradient: dx = dy W. */
static void dense_dgrad_range(const struct pipar_layer *l, const struct pipar_pass *p,
			      int s0, int s1, int tid)
{
	int in = (int)pipar_shape_size(l->in), out = l->out.c;

	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s1 - s0, in, out,
		    1.0f, p->dy + (size_t)s0 * out, out, l->params[0].data, in, 0.0f,
		    p->dx + (size_t)s0 * in, in);
}

static void dense_backward(const struct pipar_layer *l, const struct pipar_pass *p)
{
	parallel_range(l, p, l->out.c, dense_wgrad_range);
	if (p->dx)
		parallel_range(l, p, p->n, dense_dgrad_range);
}

static double dense_flops(const struct pipar_layer *l, int backward)
{
	double f = 2.0 * (double)pipar_shape_size(l->in) * l->out.c;

	return backward ? 2.0 * f : f;
}

static const struct pipar_layer_ops dense_ops = {
	.type = "dense",
	.state_bytes = no_bytes,
	.scratch_bytes = no_bytes,
	.forward = dense_forward,
	.backward = dense_backward,
	.flops = dense_flops,
};

struct pipar_layer *pipar_layer_dense_new(struct pipar_shape in, int out,
					  int bias, char *err)
{
	struct pipar_layer *l;
	int fan_in = (int)pipar_shape_size(in);

	if (!valid_shape(in) || out <= 0 || out > (1 << 24) ||
	    pipar_shape_size(in) > (1u << 30))
		return pipar_errf(err, "dense: bad configuration (out %d)", out), NULL;
	l = layer_new(&dense_ops, in, bias ? 2 : 1, 0, err);
	if (!l)
		return NULL;
	l->out = (struct pipar_shape){out, 1, 1};
	param_set(&l->params[0], "dense.weight", 1, PIPAR_INIT_HE, 2,
		  (int[]){out, fan_in});
	l->params[0].fan_in = fan_in;
	l->params[0].fan_out = out;
	if (bias)
		param_set(&l->params[1], "dense.bias", 1, PIPAR_INIT_ZERO, 1,
			  (int[]){out});
	return l;
}

/* ---------------------------------------------------------------- dropout */

struct dropout {
	float p;
};

static size_t dropout_state(const struct pipar_layer *l, int n)
{
	return al(sizeof(float) * (size_t)n * pipar_shape_size(l->in));
}

static void dropout_forward(const struct pipar_layer *l, const struct pipar_pass *p)
{
	const struct dropout *d = l->priv;
	size_t m = (size_t)p->n * pipar_shape_size(l->in);
	float *mask = p->state, keep = 1.0f / (1.0f - d->p);

	if (!p->train || d->p == 0) {
		memcpy(p->y, p->x, sizeof(float) * m);
		for (size_t i = 0; i < m; i++)
			mask[i] = 1.0f;
		return;
	}
	for (size_t i = 0; i < m; i++) {
		mask[i] = pipar_rng_uniform(p->rng) < d->p ? 0.0f : keep;
		p->y[i] = p->x[i] * mask[i];
	}
}

static void dropout_backward(const struct pipar_layer *l, const struct pipar_pass *p)
{
	size_t m = (size_t)p->n * pipar_shape_size(l->in);
	const float *mask = p->state;

	if (!p->dx)
		return;
	for (size_t i = 0; i < m; i++)
		p->dx[i] = p->dy[i] * mask[i];
}

static const struct pipar_layer_ops dropout_ops = {
	.type = "dropout",
	.state_bytes = dropout_state,
	.scratch_bytes = no_bytes,
	.forward = dropout_forward,
	.backward = dropout_backward,
	.flops = elem_flops,
};

struct pipar_layer *pipar_layer_dropout_new(struct pipar_shape in, float p,
					    char *err)
{
	struct pipar_layer *l;

	if (!valid_shape(in) || !(p >= 0.0f && p < 1.0f))
		return pipar_errf(err, "dropout: rate %g outside [0, 1)", (double)p), NULL;
	l = layer_new(&dropout_ops, in, 0, sizeof(struct dropout), err);
	if (l)
		((struct dropout *)l->priv)->p = p;
	return l;
}

/* ---------------------------------------------------------------- batch-norm */

struct bn {
	float momentum, eps;
	int relu;       /* a ReLU fused in: y = max(0, bn(x)) */
};

/* State: the mean and 1/std of each channel; backward recomputes the
 * normalised input from x rather than keeping a copy as large as x. */
static size_t bn_state(const struct pipar_layer *l, int n)
{
	return al(sizeof(float) * 2 * (size_t)l->in.c);
}

static void bn_forward_range(const struct pipar_layer *l, const struct pipar_pass *p,
			     int c0, int c1, int tid)
{
	const struct bn *bn = l->priv;
	int C = l->in.c, n = p->n;
	size_t plane = (size_t)l->in.h * l->in.w, m = plane * (size_t)n;
	float *stat = p->state;
	const float *gamma = l->params[0].data, *beta = l->params[1].data;
	float *rmean = l->params[2].data, *rvar = l->params[3].data;

	for (int c = c0; c < c1; c++) {
		double mean, var;

		if (p->train) {
			/* One pass of shifted sums: subtracting the first
			 * plane's mean keeps E[(x-k)^2] - E[x-k]^2 free of
			 * cancellation when the mean is large against the
			 * spread.  Planes sum in float lanes, channels in
			 * double. */
			float k = plane_sum(p->x + (size_t)c * plane, plane) / (float)plane;
			double s = 0, ss = 0;

			for (int b = 0; b < n; b++) {
				const float *restrict x = p->x + ((size_t)b * C + c) * plane;
				float s1 = 0, s2 = 0;

#pragma omp simd reduction(+ : s1, s2)
				for (size_t i = 0; i < plane; i++) {
					float d = x[i] - k;

					s1 += d;
					s2 += d * d;
				}
				s += s1;
				ss += s2;
			}
			double dm = s / (double)m;

			mean = k + dm;
			var = ss / (double)m - dm * dm;
			if (var < 0)
				var = 0;
			rmean[c] = (1 - bn->momentum) * rmean[c] +
				   bn->momentum * (float)mean;
			rvar[c] = (1 - bn->momentum) * rvar[c] +
				  bn->momentum *
					  (float)(m > 1 ? var * (double)m / (double)(m - 1) : var);
		} else {
			mean = rmean[c];
			var = rvar[c];
		}
		float is = (float)(1.0 / sqrt(var + bn->eps));
		float mu = (float)mean, g = gamma[c] * is, bt = beta[c] - mu * g;

		stat[c] = mu;
		stat[C + c] = is;
		for (int b = 0; b < n; b++) {
			size_t off = ((size_t)b * C + c) * plane;
			const float *restrict x = p->x + off;
			float *restrict y = p->y + off;

			if (bn->relu) {
#pragma omp simd
				for (size_t i = 0; i < plane; i++) {
					float o = x[i] * g + bt;

					y[i] = o > 0 ? o : 0;
				}
				continue;
			}
#pragma omp simd
			for (size_t i = 0; i < plane; i++)
				y[i] = x[i] * g + bt;
		}
	}
}

static void bn_forward(const struct pipar_layer *l, const struct pipar_pass *p)
{
	parallel_range(l, p, l->in.c, bn_forward_range);
}

/* With a fused ReLU the gradient reaching batch-norm is dy where y > 0. */
static void bn_backward_range(const struct pipar_layer *l, const struct pipar_pass *p,
			      int c0, int c1, int tid)
{
	const struct bn *bn = l->priv;
	int C = l->in.c, n = p->n;
	size_t plane = (size_t)l->in.h * l->in.w, m = plane * (size_t)n;
	const float *stat = p->state;
	const float *gamma = l->params[0].data;
	float *dgamma = l->params[0].grad, *dbeta = l->params[1].grad;
	float lim = bn->relu ? 0.0f : -INFINITY;

	for (int c = c0; c < c1; c++) {
		double sdy = 0, sdyx = 0;
		float mu = stat[c], is = stat[C + c];

		for (int b = 0; b < n; b++) {
			size_t off = ((size_t)b * C + c) * plane;
			const float *restrict dy = p->dy + off, *restrict x = p->x + off;
			const float *restrict y = p->y + off;
			float s1 = 0, s2 = 0;

#pragma omp simd reduction(+ : s1, s2)
			for (size_t i = 0; i < plane; i++) {
				float d = y[i] > lim ? dy[i] : 0;

				s1 += d;
				s2 += d * (x[i] - mu);
			}
			sdy += s1;
			sdyx += s2;
		}
		sdyx *= is;
		dgamma[c] += (float)sdyx;
		dbeta[c] += (float)sdy;
		if (!p->dx)
			continue;
		float k = gamma[c] * is;
		/* In training mode the batch statistics depend on x too:
		 * dx = k (d - mean(d) - xhat mean(d xhat)). */
		float a = p->train ? (float)(sdy / (double)m) : 0.0f;
		float bb = p->train ? (float)(sdyx / (double)m) * is : 0.0f;

		for (int b = 0; b < n; b++) {
			size_t off = ((size_t)b * C + c) * plane;
			const float *restrict dy = p->dy + off, *restrict x = p->x + off;
			const float *restrict y = p->y + off;
			float *restrict dx = p->dx + off;

#pragma omp simd
			for (size_t i = 0; i < plane; i++) {
				float d = y[i] > lim ? dy[i] : 0;

				dx[i] = k * (d - a - (x[i] - mu) * bb);
			}
		}
	}
}

static void bn_backward(const struct pipar_layer *l, const struct pipar_pass *p)
{
	parallel_range(l, p, l->in.c, bn_backward_range);
}

static double bn_flops(const struct pipar_layer *l, int backward)
{
	return (backward ? 6.0 : 5.0) * (double)pipar_shape_size(l->in);
}

static const struct pipar_layer_ops bn_relu_ops = {
	.type = "batchnorm+relu",
	.state_bytes = bn_state,
	.scratch_bytes = no_bytes,
	.forward = bn_forward,
	.backward = bn_backward,
	.flops = bn_flops,
};

static const struct pipar_layer_ops bn_ops = {
	.type = "batchnorm",
	.state_bytes = bn_state,
	.scratch_bytes = no_bytes,
	.forward = bn_forward,
	.backward = bn_backward,
	.flops = bn_flops,
};

struct pipar_layer *pipar_layer_batchnorm_new(struct pipar_shape in,
					      float momentum, float eps,
					      char *err)
{
	struct pipar_layer *l;
	struct bn *bn;

	if (!valid_shape(in))
		return pipar_errf(err, "batchnorm: bad input shape"), NULL;
	if (!(momentum >= 0 && momentum <= 1) || !(eps > 0))
		return pipar_errf(err, "batchnorm: bad momentum %g or eps %g",
				  (double)momentum, (double)eps), NULL;
	l = layer_new(&bn_ops, in, 4, sizeof(struct bn), err);
	if (!l)
		return NULL;
	bn = l->priv;
	bn->momentum = momentum;
	bn->eps = eps;
	param_set(&l->params[0], "bn.weight", 1, PIPAR_INIT_ONE, 1, &in.c);
	param_set(&l->params[1], "bn.bias", 1, PIPAR_INIT_ZERO, 1, &in.c);
	param_set(&l->params[2], "bn.running_mean", 0, PIPAR_INIT_ZERO, 1, &in.c);
	param_set(&l->params[3], "bn.running_var", 0, PIPAR_INIT_ONE, 1, &in.c);
	return l;
}

int pipar_layer_fuse_relu(struct pipar_layer *l)
{
	if (l->ops != &bn_ops)
		return -1;
	((struct bn *)l->priv)->relu = 1;
	l->ops = &bn_relu_ops;
	return 0;
}

/* ---------------------------------------------------------------- basic block */

enum { BB_CONV1, BB_BN1, BB_RELU, BB_CONV2, BB_BN2, BB_SCCONV, BB_SCBN, BB_MAX };

struct block {
	struct pipar_layer *sub[BB_MAX];
	int nsub;               /* 5 without a projection shortcut, 7 with */
	size_t act;             /* floats of the largest sub-layer output per sample */
};

/* The block's state holds, per sub-layer, its output and its own state,
 * followed by two gradient buffers. */
static size_t block_sub_bytes(const struct pipar_layer *s, int n)
{
	return al(sizeof(float) * (size_t)n * pipar_shape_size(s->out)) +
	       s->ops->state_bytes(s, n);
}

static size_t block_state(const struct pipar_layer *l, int n)
{
	const struct block *bk = l->priv;
	size_t t = 0;

	for (int i = 0; i < bk->nsub; i++)
		t += block_sub_bytes(bk->sub[i], n);
	return t + 2 * al(sizeof(float) * (size_t)n * bk->act);
}

static size_t block_scratch(const struct pipar_layer *l, int n)
{
	const struct block *bk = l->priv;
	size_t t = 0;

	for (int i = 0; i < bk->nsub; i++) {
		size_t s = bk->sub[i]->ops->scratch_bytes(bk->sub[i], n);

		if (s > t)
			t = s;
	}
	return t;
}

/* Carves the block's state into per-sub-layer outputs and states. */
static void block_carve(const struct pipar_layer *l, int n, void *state,
			float **out, void **st, float **g0, float **g1)
{
	const struct block *bk = l->priv;
	char *p = state;

	for (int i = 0; i < bk->nsub; i++) {
		const struct pipar_layer *s = bk->sub[i];

		out[i] = (float *)p;
		p += al(sizeof(float) * (size_t)n * pipar_shape_size(s->out));
		st[i] = p;
		p += s->ops->state_bytes(s, n);
	}
	*g0 = (float *)p;
	p += al(sizeof(float) * (size_t)n * bk->act);
	*g1 = (float *)p;
}

static void sub_forward(const struct pipar_layer *s, const struct pipar_pass *p,
			const float *x, float *y, void *st)
{
	struct pipar_pass q = *p;

	q.x = x;
	q.y = y;
	q.state = st;
	s->ops->forward(s, &q);
}

static void sub_backward(const struct pipar_layer *s, const struct pipar_pass *p,
			 const float *x, const float *y, void *st,
			 const float *dy, float *dx)
{
	struct pipar_pass q = *p;

	q.x = x;
	q.y = (float *)y;
	q.state = st;
	q.dy = dy;
	q.dx = dx;
	s->ops->backward(s, &q);
}

static void block_forward(const struct pipar_layer *l, const struct pipar_pass *p)
{
	const struct block *bk = l->priv;
	float *out[BB_MAX], *g0, *g1;
	void *st[BB_MAX];
	size_t m = (size_t)p->n * pipar_shape_size(l->out);
	const float *sc = p->x;

	block_carve(l, p->n, p->state, out, st, &g0, &g1);
	sub_forward(bk->sub[BB_CONV1], p, p->x, out[BB_CONV1], st[BB_CONV1]);
	sub_forward(bk->sub[BB_BN1], p, out[BB_CONV1], out[BB_BN1], st[BB_BN1]);
	sub_forward(bk->sub[BB_RELU], p, out[BB_BN1], out[BB_RELU], st[BB_RELU]);
	sub_forward(bk->sub[BB_CONV2], p, out[BB_RELU], out[BB_CONV2], st[BB_CONV2]);
	sub_forward(bk->sub[BB_BN2], p, out[BB_CONV2], out[BB_BN2], st[BB_BN2]);
	if (bk->nsub == BB_MAX) {
		sub_forward(bk->sub[BB_SCCONV], p, p->x, out[BB_SCCONV], st[BB_SCCONV]);
		sub_forward(bk->sub[BB_SCBN], p, out[BB_SCCONV], out[BB_SCBN], st[BB_SCBN]);
		sc = out[BB_SCBN];
	}
	for (size_t i = 0; i < m; i++) {
		float v = out[BB_BN2][i] + sc[i];

		p->y[i] = v > 0 ? v : 0;
	}
}

static void block_backward(const struct pipar_layer *l, const struct pipar_pass *p)
{
	const struct block *bk = l->priv;
	float *out[BB_MAX], *g0, *g1, *ds;
	void *st[BB_MAX];
	size_t m = (size_t)p->n * pipar_shape_size(l->out);
	size_t min = (size_t)p->n * pipar_shape_size(l->in);

	block_carve(l, p->n, p->state, out, st, &g0, &g1);
	/* g0 holds the gradient at the sum; it feeds both branches. */
	ds = g0;
	for (size_t i = 0; i < m; i++)
		ds[i] = p->y[i] > 0 ? p->dy[i] : 0;
	if (bk->nsub == BB_MAX) {
		float *dsc = g1;

		sub_backward(bk->sub[BB_SCBN], p, out[BB_SCCONV], out[BB_SCBN],
			     st[BB_SCBN], ds, dsc);
		/* The projection's input gradient goes to dx first; the main
		 * branch adds to it below. */
		sub_backward(bk->sub[BB_SCCONV], p, p->x, out[BB_SCCONV],
			     st[BB_SCCONV], dsc, p->dx);
	} else if (p->dx) {
		memcpy(p->dx, ds, sizeof(float) * min);
	}
	/* Main branch, ping-ponging between g1 and the tail of the chain. */
	float *t = g1;
	sub_backward(bk->sub[BB_BN2], p, out[BB_CONV2], out[BB_BN2], st[BB_BN2], ds, t);
	sub_backward(bk->sub[BB_CONV2], p, out[BB_RELU], out[BB_CONV2], st[BB_CONV2], t, g0);
	sub_backward(bk->sub[BB_RELU], p, out[BB_BN1], out[BB_RELU], st[BB_RELU], g0, g0);
	sub_backward(bk->sub[BB_BN1], p, out[BB_CONV1], out[BB_BN1], st[BB_BN1], g0, t);
	if (p->dx) {
		/* conv1 overwrites its dx, so land it in g0 and add. */
		sub_backward(bk->sub[BB_CONV1], p, p->x, out[BB_CONV1], st[BB_CONV1], t, g0);
		for (size_t i = 0; i < min; i++)
			p->dx[i] += g0[i];
	} else {
		sub_backward(bk->sub[BB_CONV1], p, p->x, out[BB_CONV1], st[BB_CONV1], t, NULL);
	}
}

static double block_flops(const struct pipar_layer *l, int backward)
{
	const struct block *bk = l->priv;
	double f = (double)pipar_shape_size(l->out) * 2;

	for (int i = 0; i < bk->nsub; i++)
		f += bk->sub[i]->ops->flops(bk->sub[i], backward);
	return f;
}

static void block_free(struct pipar_layer *l)
{
	struct block *bk = l->priv;

	if (!bk)
		return;
	for (int i = 0; i < bk->nsub; i++)
		pipar_layer_free(bk->sub[i]);
}

static const struct pipar_layer_ops block_ops = {
	.type = "basicblock",
	.state_bytes = block_state,
	.scratch_bytes = block_scratch,
	.forward = block_forward,
	.backward = block_backward,
	.flops = block_flops,
	.free_priv = block_free,
};

struct pipar_layer *pipar_layer_basicblock_new(struct pipar_shape in,
					       int out_channels, int stride,
					       char *err)
{
	static const char *const prefix[BB_MAX] = {
		"conv1", "bn1", "relu", "conv2", "bn2", "shortcut.conv", "shortcut.bn",
	};
	struct pipar_layer *l;
	struct block *bk;
	struct pipar_conv_cfg c1 = {out_channels, 3, stride, 1, 0};
	struct pipar_conv_cfg c2 = {out_channels, 3, 1, 1, 0};
	struct pipar_conv_cfg sc = {out_channels, 1, stride, 0, 0};
	int np = 0;

	if (!valid_shape(in) || out_channels <= 0 || stride <= 0 || stride > 16)
		return pipar_errf(err, "basicblock: bad configuration (out %d, stride %d)",
				  out_channels, stride), NULL;
	l = layer_new(&block_ops, in, 0, sizeof(struct block), err);
	if (!l)
		return NULL;
	bk = l->priv;
	bk->nsub = (stride != 1 || in.c != out_channels) ? BB_MAX : BB_SCCONV;
	bk->sub[BB_CONV1] = pipar_layer_conv_new(in, &c1, err);
	if (!bk->sub[BB_CONV1])
		goto fail;
	struct pipar_shape mid = bk->sub[BB_CONV1]->out;
	if (!(bk->sub[BB_BN1] = pipar_layer_batchnorm_new(mid, 0.1f, 1e-5f, err)) ||
	    !(bk->sub[BB_RELU] = pipar_layer_relu_new(mid, err)) ||
	    !(bk->sub[BB_CONV2] = pipar_layer_conv_new(mid, &c2, err)) ||
	    !(bk->sub[BB_BN2] = pipar_layer_batchnorm_new(mid, 0.1f, 1e-5f, err)))
		goto fail;
	if (bk->nsub == BB_MAX &&
	    (!(bk->sub[BB_SCCONV] = pipar_layer_conv_new(in, &sc, err)) ||
	     !(bk->sub[BB_SCBN] = pipar_layer_batchnorm_new(bk->sub[BB_SCCONV]->out,
							    0.1f, 1e-5f, err))))
		goto fail;
	l->out = mid;
	bk->act = pipar_shape_size(in) > pipar_shape_size(mid) ?
			  pipar_shape_size(in) : pipar_shape_size(mid);
	/* One parameter list for the block; the sub-layers point into it. */
	for (int i = 0; i < bk->nsub; i++)
		np += bk->sub[i]->nparams;
	l->params = calloc((size_t)np, sizeof(*l->params));
	if (!l->params) {
		pipar_errf(err, "out of memory");
		goto fail;
	}
	l->nparams = np;
	np = 0;
	for (int i = 0; i < bk->nsub; i++) {
		struct pipar_layer *s = bk->sub[i];

		for (int j = 0; j < s->nparams; j++) {
			struct pipar_param *d = &l->params[np + j];
			const char *dot = strchr(s->params[j].role, '.');

			*d = s->params[j];
			snprintf(d->role, sizeof(d->role), "%s%s", prefix[i], dot);
		}
		free(s->params);
		s->params = s->nparams ? &l->params[np] : NULL;
		s->owns_params = 0;
		np += s->nparams;
	}
	return l;
fail:
	pipar_layer_free(l);
	return NULL;
}

/* ---------------------------------------------------------------- loss */

double pipar_softmax_xent(const float *logits, const int *labels, int n,
			  int k, float grad_scale, float *dlogits,
			  int *correct)
{
	double total = 0;

	for (int b = 0; b < n; b++) {
		const float *z = logits + (size_t)b * k;
		float mx = z[0];
		int arg = 0;
		double s = 0;

		for (int j = 1; j < k; j++)
			if (z[j] > mx)
				mx = z[j], arg = j;
		for (int j = 0; j < k; j++)
			s += exp((double)(z[j] - mx));
		total += log(s) - (double)(z[labels[b]] - mx);
		if (correct && arg == labels[b])
			(*correct)++;
		if (dlogits) {
			float *d = dlogits + (size_t)b * k;

			for (int j = 0; j < k; j++)
				d[j] = (float)(exp((double)(z[j] - mx)) / s) * grad_scale;
			d[labels[b]] -= grad_scale;
		}
	}
	return total;
}
