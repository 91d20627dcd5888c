/*
 * Every layer's backward against central finite differences, and
 * convolution against a naive direct convolution.
 *
 * The check: loss = sum(y * r) for a fixed random r, so dL/dy = r.  The
 * analytic gradients (backward with dy = r) are compared with
 * (L(v + h) - L(v - h)) / 2h for every input and parameter value v.  Layers
 * run in float32; the loss is summed in double.  Conv, dense, pools and
 * flatten are linear in each variable, so central differences are exact up
 * to rounding; batch-norm is smooth, with O(h^2) truncation error.  With
 * h = 1e-2 the rounding error of a difference is about
 * 6e-8 * sum|y r| / 2h, under 1e-4 of the gradient's scale for these sizes,
 * so the relative error bound 2e-3 (over the whole gradient vector) leaves a
 * wide margin while any wrong index, sign or missing term fails by far
 * more.  ReLU and max-pool have kinks: their inputs are spaced so that no
 * perturbation crosses one.  Where ReLUs sit inside a layer (the residual
 * block, batch-norm with a fused ReLU) the inputs cannot be spaced from
 * outside: there h = 1e-3, and a value whose one-sided differences disagree
 * by a kink-sized jump is left out, at most a tenth of them.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "tap.h"
#include "rng.h"
#include "util.h"

struct harness {
	struct pipar_layer *l;
	int n;
	float *x, *y, *r, *dx, *pdata, *pgrad;
	void *state, *scratch;
	struct pipar_rng rng0;  /* copied before every forward: same masks */
	int train;
	size_t nx, ny, np;
};

static float *fbuf(size_t n)
{
	float *p = pipar_calloc(sizeof(float) * (n ? n : 1));

	PIPAR_ASSERT(p);
	return p;
}

static void fill(struct pipar_rng *r, float *v, size_t n, float scale)
{
	for (size_t i = 0; i < n; i++)
		v[i] = (float)(scale * (2 * pipar_rng_uniform(r) - 1));
}

static void harness_init(struct harness *h, struct pipar_layer *l, int n,
			 int train, struct pipar_rng *r)
{
	memset(h, 0, sizeof(*h));
	h->l = l;
	h->n = n;
	h->train = train;
	h->nx = (size_t)n * pipar_shape_size(l->in);
	h->ny = (size_t)n * pipar_shape_size(l->out);
	for (int j = 0; j < l->nparams; j++)
		h->np += l->params[j].count;
	h->x = fbuf(h->nx);
	h->y = fbuf(h->ny);
	h->r = fbuf(h->ny);
	h->dx = fbuf(h->nx);
	h->pdata = fbuf(h->np);
	h->pgrad = fbuf(h->np);
	h->state = pipar_calloc(l->ops->state_bytes(l, n) + 64);
	h->scratch = pipar_calloc(l->ops->scratch_bytes(l, n) + 64);
	size_t off = 0;
	for (int j = 0; j < l->nparams; j++) {
		struct pipar_param *p = &l->params[j];

		p->data = h->pdata + off;
		p->grad = p->trainable ? h->pgrad + off : NULL;
		if (strstr(p->role, "running_var"))
			for (size_t i = 0; i < p->count; i++)
				p->data[i] = (float)(0.5 + pipar_rng_uniform(r));
		else
			fill(r, p->data, p->count, 0.5f);
		off += p->count;
	}
	fill(r, h->r, h->ny, 1.0f);
	pipar_rng_seed(&h->rng0, 7, 7);
}

static void harness_free(struct harness *h)
{
	free(h->x);
	free(h->y);
	free(h->r);
	free(h->dx);
	free(h->pdata);
	free(h->pgrad);
	free(h->state);
	free(h->scratch);
	pipar_layer_free(h->l);
}

static double loss(struct harness *h)
{
	struct pipar_rng rng = h->rng0;
	struct pipar_pass p = {
		.n = h->n, .train = h->train, .x = h->x, .y = h->y,
		.state = h->state, .scratch = h->scratch, .rng = &rng,
	};
	double s = 0;

	/* Running statistics must not drift during the check. */
	float saved[4096];
	size_t nb = 0;
	for (int j = 0; j < h->l->nparams; j++) {
		const struct pipar_param *q = &h->l->params[j];

		if (q->trainable)
			continue;
		PIPAR_ASSERT(nb + q->count <= sizeof(saved) / sizeof(saved[0]));
		memcpy(saved + nb, q->data, sizeof(float) * q->count);
		nb += q->count;
	}
	h->l->ops->forward(h->l, &p);
	nb = 0;
	for (int j = 0; j < h->l->nparams; j++) {
		const struct pipar_param *q = &h->l->params[j];

		if (q->trainable)
			continue;
		memcpy(q->data, saved + nb, sizeof(float) * q->count);
		nb += q->count;
	}
	for (size_t i = 0; i < h->ny; i++)
		s += (double)h->y[i] * h->r[i];
	return s;
}

static void analytic(struct harness *h)
{
	struct pipar_rng rng = h->rng0;
	struct pipar_pass p = {
		.n = h->n, .train = h->train, .x = h->x, .y = h->y,
		.state = h->state, .scratch = h->scratch, .rng = &rng,
		.dy = h->r, .dx = h->dx,
	};

	loss(h);
	memset(h->pgrad, 0, sizeof(float) * h->np);
	h->l->ops->backward(h->l, &p);
}

/* Relative error of the gradient of loss against v[0..n) by central
 * differences.  With kinks set (a composite layer with ReLUs inside, whose
 * pre-activations cannot be spaced from outside), an entry whose one-sided
 * differences disagree by more than a kink-sized jump is left out and
 * counted in *skipped; the caller bounds that count. */
static double check_vec(struct harness *h, float *v, const float *g, size_t n,
			double step, int kinks, double *scale, size_t *skipped)
{
	double num2 = 0, den2 = 0, l0 = kinks ? loss(h) : 0;

	for (size_t i = 0; i < n; i++) {
		float save = v[i];
		double lp, lm, fd;

		v[i] = (float)(save + step);
		lp = loss(h);
		v[i] = (float)(save - step);
		lm = loss(h);
		v[i] = save;
		fd = (lp - lm) / (2 * step);
		if (kinks && fabs((lp - l0) - (l0 - lm)) / step > 0.05) {
			(*skipped)++;
			continue;
		}
		num2 += (fd - g[i]) * (fd - g[i]);
		den2 += fd * fd + (double)g[i] * g[i];
	}
	*scale = sqrt(den2);
	return den2 > 0 ? sqrt(num2) / sqrt(den2) : sqrt(num2);
}

static void gradcheck_kinks(const char *name, struct pipar_layer *l, int n,
			    int train, double step, int spaced_input, int kinks,
			    uint64_t seed);

static void gradcheck(const char *name, struct pipar_layer *l, int n, int train,
		      double step, int spaced_input, uint64_t seed)
{
	gradcheck_kinks(name, l, n, train, step, spaced_input, 0, seed);
}

static void gradcheck_kinks(const char *name, struct pipar_layer *l, int n,
			    int train, double step, int spaced_input, int kinks,
			    uint64_t seed)
{
	struct harness h;
	struct pipar_rng r;
	double e, scale;
	size_t skipped = 0, total = 0;
	float *g;

	if (!ok(l != NULL, "%s: built", name))
		return;
	pipar_rng_seed(&r, seed, 1);
	harness_init(&h, l, n, train, &r);
	if (spaced_input) {
		/* Distinct values 0.05 apart, shuffled, none near zero: no
		 * perturbation of 1e-3 crosses a kink or reorders a window. */
		int *perm = malloc(sizeof(int) * h.nx);

		for (size_t i = 0; i < h.nx; i++)
			perm[i] = (int)i;
		pipar_rng_shuffle(&r, perm, h.nx);
		for (size_t i = 0; i < h.nx; i++)
			h.x[i] = (float)(0.05 * (perm[i] - (double)h.nx / 2) + 0.025);
		free(perm);
	} else {
		fill(&r, h.x, h.nx, 1.0f);
	}
	analytic(&h);
	g = fbuf(h.np > h.nx ? h.np : h.nx);
	memcpy(g, h.dx, sizeof(float) * h.nx);
	e = check_vec(&h, h.x, g, h.nx, step, kinks, &scale, &skipped);
	total += h.nx;
	ok(e < 2e-3 && scale > 0, "%s: input gradient (rel err %.2e, |g| %.3g)",
	   name, e, scale);
	for (int j = 0; j < l->nparams; j++) {
		struct pipar_param *p = &l->params[j];

		if (!p->trainable)
			continue;
		memcpy(g, p->grad, sizeof(float) * p->count);
		e = check_vec(&h, p->data, g, p->count, step, kinks, &scale, &skipped);
		total += p->count;
		ok(e < 2e-3 && scale > 0, "%s: %s gradient (rel err %.2e, |g| %.3g)",
		   name, p->role, e, scale);
	}
	if (kinks)
		ok(skipped * 10 <= total, "%s: %zu of %zu values left out at kinks",
		   name, skipped, total);
	free(g);
	harness_free(&h);
}

/* Naive direct convolution, accumulated in double. */
static void conv_naive(const float *x, const float *w, const float *b, float *y,
		       int n, struct pipar_shape in, struct pipar_shape out,
		       int K, int S, int P)
{
	for (int s = 0; s < n; s++)
		for (int o = 0; o < out.c; o++)
			for (int oy = 0; oy < out.h; oy++)
				for (int ox = 0; ox < out.w; ox++) {
					double acc = b ? b[o] : 0;

					for (int c = 0; c < in.c; c++)
						for (int ky = 0; ky < K; ky++)
							for (int kx = 0; kx < K; kx++) {
								int iy = oy * S - P + ky, ix = ox * S - P + kx;

								if (iy < 0 || ix < 0 || iy >= in.h || ix >= in.w)
									continue;
								acc += (double)x[((size_t)(s * in.c + c) * in.h + iy) * in.w + ix] *
								       w[((size_t)(o * in.c + c) * K + ky) * K + kx];
							}
					y[((size_t)(s * out.c + o) * out.h + oy) * out.w + ox] = (float)acc;
				}
}

static void conv_vs_naive(struct pipar_shape in, int oc, int K, int S, int P,
			  int bias, int n)
{
	struct pipar_conv_cfg cfg = {oc, K, S, P, bias};
	char err[PIPAR_ERRLEN];
	struct pipar_layer *l = pipar_layer_conv_new(in, &cfg, err);
	struct harness h;
	struct pipar_rng r;
	float *ref;
	double maxd = 0;

	if (!ok(l != NULL, "conv %dx%dx%d k%d s%d p%d: built", in.c, in.h, in.w, K, S, P))
		return;
	pipar_rng_seed(&r, 99, (uint64_t)(K * 100 + S * 10 + P));
	harness_init(&h, l, n, 1, &r);
	fill(&r, h.x, h.nx, 1.0f);
	loss(&h);
	ref = fbuf(h.ny);
	conv_naive(h.x, l->params[0].data, bias ? l->params[1].data : NULL, ref,
		   n, in, l->out, K, S, P);
	for (size_t i = 0; i < h.ny; i++) {
		double d = fabs(ref[i] - h.y[i]);

		if (d > maxd)
			maxd = d;
	}
	ok(maxd < 1e-4, "conv %dx%dx%d -> %d k%d s%d p%d: matches direct convolution (max diff %.2e)",
	   in.c, in.h, in.w, oc, K, S, P, maxd);
	free(ref);
	harness_free(&h);
}

int main(void)
{
	char err[PIPAR_ERRLEN];
	struct pipar_shape s3 = {3, 7, 6}, s2 = {2, 6, 6};
	struct pipar_conv_cfg c1 = {4, 3, 1, 1, 1}, c2 = {3, 3, 2, 0, 1};
	struct pipar_conv_cfg c3 = {2, 5, 2, 2, 0}, c4 = {5, 1, 1, 0, 1};
	struct pipar_pool_cfg p22 = {2, 2, 0}, p32 = {3, 2, 0}, pg = {0, 0, 1};

	conv_vs_naive((struct pipar_shape){1, 28, 28}, 32, 3, 1, 1, 1, 3);
	conv_vs_naive((struct pipar_shape){3, 9, 11}, 5, 3, 2, 1, 1, 2);
	conv_vs_naive((struct pipar_shape){2, 8, 7}, 4, 5, 2, 2, 0, 2);
	conv_vs_naive((struct pipar_shape){4, 5, 5}, 3, 1, 1, 0, 1, 2);
	conv_vs_naive((struct pipar_shape){3, 6, 6}, 2, 4, 3, 3, 1, 1);

	gradcheck("conv k3 s1 p1", pipar_layer_conv_new(s3, &c1, err), 2, 1, 1e-2, 0, 1);
	gradcheck("conv k3 s2 p0", pipar_layer_conv_new(s3, &c2, err), 2, 1, 1e-2, 0, 2);
	gradcheck("conv k5 s2 p2 nobias", pipar_layer_conv_new(s2, &c3, err), 2, 1, 1e-2, 0, 3);
	gradcheck("conv k1", pipar_layer_conv_new(s2, &c4, err), 2, 1, 1e-2, 0, 4);
	gradcheck("maxpool k2 s2", pipar_layer_maxpool_new(s2, &p22, err), 2, 1, 1e-3, 1, 5);
	gradcheck("maxpool k3 s2", pipar_layer_maxpool_new((struct pipar_shape){2, 7, 7}, &p32, err),
		  2, 1, 1e-3, 1, 6);
	gradcheck("avgpool k2 s2", pipar_layer_avgpool_new(s3, &p22, err), 2, 1, 1e-2, 0, 7);
	gradcheck("avgpool global", pipar_layer_avgpool_new(s2, &pg, err), 3, 1, 1e-2, 0, 8);
	gradcheck("relu", pipar_layer_relu_new(s3, err), 2, 1, 1e-3, 1, 9);
	gradcheck("dense", pipar_layer_dense_new(s2, 7, 1, err), 3, 1, 1e-2, 0, 10);
	gradcheck("dense nobias", pipar_layer_dense_new((struct pipar_shape){9, 1, 1}, 4, 0, err),
		  3, 1, 1e-2, 0, 11);
	gradcheck("dropout train", pipar_layer_dropout_new(s3, 0.5f, err), 2, 1, 1e-2, 0, 12);
	gradcheck("dropout eval", pipar_layer_dropout_new(s3, 0.5f, err), 2, 0, 1e-2, 0, 13);
	gradcheck("batchnorm train", pipar_layer_batchnorm_new(s2, 0.1f, 1e-5f, err), 4, 1, 1e-2, 0, 14);
	gradcheck("batchnorm eval", pipar_layer_batchnorm_new(s2, 0.1f, 1e-5f, err), 4, 0, 1e-2, 0, 15);
	{
		struct pipar_layer *bnr = pipar_layer_batchnorm_new(s2, 0.1f, 1e-5f, err);

		ok(bnr && pipar_layer_fuse_relu(bnr) == 0 && pipar_layer_fuse_relu(bnr) < 0,
		   "batch-norm takes a ReLU in once");
		gradcheck_kinks("batchnorm+relu train", bnr, 4, 1, 1e-3, 0, 1, 19);
	}
	gradcheck("flatten", pipar_layer_flatten_new(s3, err), 2, 1, 1e-2, 0, 16);
	gradcheck_kinks("basicblock identity",
			pipar_layer_basicblock_new((struct pipar_shape){3, 5, 5}, 3, 1, err),
			3, 1, 1e-3, 0, 1, 17);
	gradcheck_kinks("basicblock projection",
			pipar_layer_basicblock_new((struct pipar_shape){2, 6, 6}, 4, 2, err),
			3, 1, 1e-3, 0, 1, 18);

	/* Softmax cross-entropy against differences of its own loss. */
	{
		float z[3 * 5], dz[3 * 5];
		int lab[3] = {0, 4, 2}, correct = 0;
		struct pipar_rng r;
		double num2 = 0, den2 = 0;

		pipar_rng_seed(&r, 3, 3);
		fill(&r, z, 15, 2.0f);
		pipar_softmax_xent(z, lab, 3, 5, 1.0f / 3, dz, &correct);
		for (int i = 0; i < 15; i++) {
			float save = z[i];
			double lp, lm, fd;

			z[i] = save + 1e-2f;
			lp = pipar_softmax_xent(z, lab, 3, 5, 0, NULL, NULL) / 3;
			z[i] = save - 1e-2f;
			lm = pipar_softmax_xent(z, lab, 3, 5, 0, NULL, NULL) / 3;
			z[i] = save;
			fd = (lp - lm) / 2e-2;
			num2 += (fd - dz[i]) * (fd - dz[i]);
			den2 += fd * fd;
		}
		ok(sqrt(num2 / den2) < 2e-3, "softmax cross-entropy gradient (rel err %.2e)",
		   sqrt(num2 / den2));
		/* A known value: uniform logits give log(k). */
		float u[4] = {0, 0, 0, 0};
		int l0 = 1;
		ok(fabs(pipar_softmax_xent(u, &l0, 1, 4, 1, NULL, NULL) - log(4.0)) < 1e-9,
		   "softmax cross-entropy of uniform logits is log(k)");
	}

	/* Configurations that do not fit are refused with a message. */
	{
		struct pipar_conv_cfg big = {4, 9, 1, 0, 1};

		err[0] = 0;
		ok(pipar_layer_conv_new((struct pipar_shape){1, 5, 5}, &big, err) == NULL &&
			   strstr(err, "larger") != NULL,
		   "conv kernel larger than the input is refused: %s", err);
		ok(pipar_layer_maxpool_new((struct pipar_shape){1, 1, 1}, &p22, err) == NULL,
		   "max-pool on a 1x1 input is refused: %s", err);
		ok(pipar_layer_dropout_new(s3, 1.0f, err) == NULL, "dropout rate 1 is refused: %s", err);
	}
	return tap_done();
}
