/*
 * Models: the zoo builds with the expected sizes; a model cut at any split
 * point P computes exactly what the whole model computes, forward and
 * backward; unit state round-trips; SGD follows its formula; bad specs are
 * refused with a message naming what is wrong.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "exec.h"
#include "model.h"
#include "pool.h"
#include "tap.h"
#include "rng.h"

static float *fbuf(size_t n)
{
	float *p = pipar_calloc(sizeof(float) * (n ? n : 1));

	PIPAR_ASSERT(p);
	return p;
}

static void fill(uint64_t seed, float *v, size_t n)
{
	struct pipar_rng r;

	pipar_rng_seed(&r, seed, 5);
	for (size_t i = 0; i < n; i++)
		v[i] = (float)(2 * pipar_rng_uniform(&r) - 1);
}

static double maxdiff(const float *a, const float *b, size_t n)
{
	double m = 0;

	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - b[i]);

		if (!(d <= m))
			m = d;
	}
	return m;
}

static struct pipar_model *build(const char *name, struct pipar_shape in,
				 int classes, int first, int last)
{
	char err[PIPAR_ERRLEN], *spec;
	struct pipar_model *m = NULL;

	if (pipar_model_zoo_spec(name, &spec, err) < 0)
		return NULL;
	if (pipar_model_new(spec, in, classes, first, last, 42, &m, err) < 0)
		diag("%s: %s", name, err);
	free(spec);
	return m;
}

/* Cuts the model at every P and checks both parts against the whole. */
static void cut_check(const char *name, struct pipar_shape in, int n, int train)
{
	struct pipar_model *whole = build(name, in, 10, 0, -1);
	struct pipar_exec *ew;
	size_t nin = (size_t)n * pipar_shape_size(in), nout = (size_t)n * 10;
	float *x = fbuf(nin), *dy = fbuf(nout), *out_w, *dx_w;
	char err[PIPAR_ERRLEN];
	int L, worst_p = 0;
	double worst = 0;
	int params_same = 1;

	if (!ok(whole != NULL, "%s: builds for %dx%dx%d", name, in.c, in.h, in.w))
		return;
	L = whole->nunits;
	fill(1, x, nin);
	fill(2, dy, nout);
	/* The initial state, before training-mode passes move the running
	 * statistics. */
	float **init = calloc((size_t)L, sizeof(float *));
	for (int u = 0; u < L; u++) {
		init[u] = fbuf(whole->units[u].nstate);
		pipar_model_get_state(whole, u, init[u]);
	}
	ew = pipar_exec_new(whole, n, 0, err);
	out_w = fbuf(nout);
	dx_w = fbuf(nin);
	memcpy(out_w, pipar_exec_forward(ew, x, n, train), sizeof(float) * nout);
	pipar_model_zero_grad(whole);
	memcpy(dx_w, pipar_exec_backward(ew, dy, 1), sizeof(float) * nin);

	for (int P = 1; P < L; P++) {
		struct pipar_model *dev = build(name, in, 10, 0, P - 1);
		struct pipar_model *srv = build(name, in, 10, P, -1);
		struct pipar_exec *ed, *es;
		const float *a, *out, *da, *dx;
		double d;

		PIPAR_ASSERT(dev && srv);
		for (int u = 0; u < L; u++) {
			const struct pipar_unit *pu = u < P ? &dev->units[u] : &srv->units[u - P];

			if (pu->nstate != whole->units[u].nstate ||
			    memcmp(pu->data, init[u], sizeof(float) * pu->nstate))
				params_same = 0;
		}
		ed = pipar_exec_new(dev, n, 0, err);
		es = pipar_exec_new(srv, n, 0, err);
		a = pipar_exec_forward(ed, x, n, train);
		out = pipar_exec_forward(es, a, n, train);
		d = maxdiff(out, out_w, nout);
		pipar_model_zero_grad(dev);
		pipar_model_zero_grad(srv);
		da = pipar_exec_backward(es, dy, 1);
		dx = pipar_exec_backward(ed, da, 1);
		if (maxdiff(dx, dx_w, nin) > d)
			d = maxdiff(dx, dx_w, nin);
		for (int u = 0; u < L; u++) {
			const struct pipar_unit *pu = u < P ? &dev->units[u] : &srv->units[u - P];
			double g = maxdiff(pu->grad, whole->units[u].grad, pu->ntrain);

			if (g > d)
				d = g;
		}
		if (!(d <= worst))
			worst = d, worst_p = P;
		pipar_exec_free(ed);
		pipar_exec_free(es);
		pipar_model_free(dev);
		pipar_model_free(srv);
	}
	ok(params_same, "%s: both parts start from the whole model's parameters at every P", name);
	ok(worst <= 1e-5, "%s: device part + server part equal the whole at P = 1..%d, forward and backward (%s mode; max diff %.2e at P=%d)",
	   name, L - 1, train ? "train" : "eval", worst, worst_p);
	free(x);
	free(dy);
	free(out_w);
	free(dx_w);
	for (int u = 0; u < L; u++)
		free(init[u]);
	free(init);
	pipar_exec_free(ew);
	pipar_model_free(whole);
}

static void spec_refused(const char *json, const char *needle)
{
	char err[PIPAR_ERRLEN] = "";
	struct pipar_model *m = NULL;
	int r = pipar_model_new(json, (struct pipar_shape){1, 8, 8}, 10, 0, -1, 1, &m, err);

	ok(r < 0 && m == NULL && strstr(err, needle) != NULL,
	   "spec refused, naming '%s': %s", needle, err);
}

/* The same passes on one thread and on two: the work is split, the
 * numbers agree (summation order differs only in weight gradients). */
static void threads_check(const char *name, struct pipar_shape in, int n)
{
	struct pipar_model *a = build(name, in, 10, 0, -1), *b = build(name, in, 10, 0, -1);
	size_t nin = (size_t)n * pipar_shape_size(in), nout = (size_t)n * 10;
	float *x = fbuf(nin), *dy = fbuf(nout), *o1 = fbuf(nout), *d1 = fbuf(nin);
	char err[PIPAR_ERRLEN];
	struct pipar_exec *ea, *eb;
	double d, g = 0, scale = 0;

	fill(11, x, nin);
	fill(12, dy, nout);
	pipar_threads_set(1);
	ea = pipar_exec_new(a, n, 0, err);
	memcpy(o1, pipar_exec_forward(ea, x, n, 1), sizeof(float) * nout);
	pipar_model_zero_grad(a);
	memcpy(d1, pipar_exec_backward(ea, dy, 1), sizeof(float) * nin);
	ok(pipar_threads_set(2) == 2, "the pool runs two threads");
	eb = pipar_exec_new(b, n, 0, err);
	d = maxdiff(o1, pipar_exec_forward(eb, x, n, 1), nout);
	pipar_model_zero_grad(b);
	const float *d2 = pipar_exec_backward(eb, dy, 1);
	if (maxdiff(d1, d2, nin) > d)
		d = maxdiff(d1, d2, nin);
	for (int u = 0; u < a->nunits; u++) {
		double m = maxdiff(a->units[u].grad, b->units[u].grad, a->units[u].ntrain);

		if (m > g)
			g = m;
		for (size_t i = 0; i < a->units[u].ntrain; i++)
			if (fabs(a->units[u].grad[i]) > scale)
				scale = fabs(a->units[u].grad[i]);
	}
	ok(d <= 1e-5 && g <= 1e-5 * (scale > 1 ? scale : 1),
	   "%s: two threads compute what one does (output/input-gradient diff %.2e, weight-gradient diff %.2e of max %.3g)",
	   name, d, g, scale);
	pipar_exec_free(ea);
	pipar_exec_free(eb);
	pipar_threads_set(1);
	pipar_model_free(a);
	pipar_model_free(b);
	free(x);
	free(dy);
	free(o1);
	free(d1);
}

int main(void)
{
	struct pipar_shape mn = {1, 28, 28}, cf = {3, 32, 32};
	struct pipar_model *m;
	char err[PIPAR_ERRLEN], *spec;

	/* Sizes computed by hand from the architectures. */
	m = build("vgg5", mn, 10, 0, -1);
	ok(m && m->nunits == 5 && pipar_model_ntrain(m) == 458890 &&
		   pipar_model_nstate(m) == 458890 + 2 * (32 + 64 + 64),
	   "vgg5: 5 units, 458890 trainable parameters, running stats as buffers");
	pipar_model_free(m);
	m = build("resnet18", cf, 10, 0, -1);
	ok(m && m->nunits == 10 && pipar_model_ntrain(m) == 11173962,
	   "resnet18 (CIFAR): 10 units, 11173962 trainable parameters (got %zu)",
	   m ? pipar_model_ntrain(m) : 0);
	pipar_model_free(m);
	m = build("vgg16", mn, 10, 0, -1);
	ok(m && m->nunits == 16, "vgg16 builds for 1x28x28 (pools that do not fit are skipped)");
	pipar_model_free(m);
	m = build("vgg16", cf, 10, 0, -1);
	ok(m && m->nunits == 16 && pipar_model_out(m).c == 10, "vgg16 builds for 3x32x32");
	pipar_model_free(m);
	m = build("vgg8", cf, 100, 0, -1);
	ok(m && m->nunits == 8 && pipar_model_out(m).c == 100, "vgg8 builds with 100 classes");
	pipar_model_free(m);
	m = build("vgg11", mn, 10, 0, -1);
	ok(m && m->nunits == 11, "vgg11 builds for 1x28x28");
	pipar_model_free(m);
	ok(pipar_model_zoo_spec("vgg99", &spec, err) < 0 && strstr(err, "vgg99"),
	   "unknown zoo name refused: %s", err);

	cut_check("vgg5", mn, 4, 1);
	cut_check("vgg5", mn, 3, 0);
	cut_check("resnet18", (struct pipar_shape){3, 16, 16}, 2, 1);
	cut_check("vgg11", (struct pipar_shape){3, 32, 32}, 2, 0);
	threads_check("vgg5", mn, 64);
	threads_check("resnet18", (struct pipar_shape){3, 16, 16}, 8);

	/* Unit state round-trips and fully determines the output. */
	{
		struct pipar_model *a = build("vgg5", mn, 10, 0, -1);
		struct pipar_model *b;
		struct pipar_exec *ea, *eb;
		float *x = fbuf(2 * 784), *ya = fbuf(20);
		int same = 1;

		PIPAR_ASSERT(a);
		pipar_model_zoo_spec("vgg5", &spec, err);
		pipar_model_new(spec, mn, 10, 0, -1, 777, &b, err);
		free(spec);
		fill(3, x, 2 * 784);
		ea = pipar_exec_new(a, 2, 0, err);
		eb = pipar_exec_new(b, 2, 0, err);
		memcpy(ya, pipar_exec_forward(ea, x, 2, 0), sizeof(float) * 20);
		ok(maxdiff(ya, pipar_exec_forward(eb, x, 2, 0), 20) > 1e-3,
		   "another seed gives another model");
		for (int u = 0; u < a->nunits; u++) {
			float *buf = fbuf(a->units[u].nstate);

			pipar_model_get_state(a, u, buf);
			pipar_model_set_state(b, u, buf);
			if (memcmp(b->units[u].data, a->units[u].data, sizeof(float) * a->units[u].nstate))
				same = 0;
			free(buf);
		}
		ok(same && maxdiff(ya, pipar_exec_forward(eb, x, 2, 0), 20) == 0,
		   "copying every unit's state makes the models compute the same");
		pipar_exec_free(ea);
		pipar_exec_free(eb);
		pipar_model_free(a);
		pipar_model_free(b);
		free(x);
		free(ya);
	}

	/* SGD with momentum and weight decay, two steps by hand. */
	{
		const char *tiny = "{\"format\":\"pipar-model/1\",\"units\":[{\"layers\":"
				   "[{\"type\":\"flatten\"},{\"type\":\"dense\",\"out\":\"classes\"}]}]}";
		struct pipar_sgd opt = {0.1f, 0.9f, 0.01f};
		float w0, v, w;

		ok(pipar_model_new(tiny, (struct pipar_shape){1, 2, 2}, 3, 0, -1, 1, &m, err) == 0,
		   "a spec with one dense layer builds");
		w0 = m->units[0].data[0];
		m->units[0].grad[0] = 0.5f;
		pipar_model_sgd_step(m, &opt);
		v = 0.5f + 0.01f * w0;
		w = w0 - 0.1f * v;
		m->units[0].grad[0] = -0.25f;
		pipar_model_sgd_step(m, &opt);
		v = 0.9f * v + (-0.25f + 0.01f * w);
		w = w - 0.1f * v;
		ok(fabsf(m->units[0].data[0] - w) < 1e-6f,
		   "two SGD steps follow v = mu v + g + wd w, w -= lr v (%g vs %g)",
		   (double)m->units[0].data[0], (double)w);
		pipar_model_zero_grad(m);
		ok(m->units[0].grad[0] == 0, "zero_grad clears the gradients");
		pipar_model_free(m);
	}

	spec_refused("{\"format\":\"pipar-model/1\",\"units\":[{\"layers\":[{\"type\":\"flatten\"},"
		     "{\"type\":\"dense\",\"out\":\"classes\",\"colour\":1}]}]}", "colour");
	spec_refused("{\"format\":\"pipar-model/1\",\"units\":[{\"layers\":[{\"type\":\"convolution\"}]}]}",
		     "unknown type");
	spec_refused("{\"format\":\"pipar-model/1\",\"units\":[{\"layers\":[{\"type\":\"conv\",\"kernel\":3}]}]}",
		     "'out'");
	spec_refused("{\"format\":\"pipar-model/2\",\"units\":[]}",
		     "model spec is a pipar-model/2 file, expected pipar-model/1");
	spec_refused("{\"format\":\"pipar-model/1\",\"units\":[{\"layers\":[", "not valid JSON (near byte");
	spec_refused("{\"format\":\"pipar-model/1\",\"units\":[{\"layers\":[{\"type\":\"flatten\"},"
		     "{\"type\":\"dense\",\"out\":7}]}]}", "not 10 classes");
	spec_refused("{\"format\":\"pipar-model/1\",\"units\":[{\"layers\":[{\"type\":\"conv\",\"out\":4,"
		     "\"kernel\":11}]}]}", "larger");
	spec_refused("{\"format\":\"pipar-model/1\",\"units\":[{\"layers\":[{\"type\":\"conv\",\"out\":4,"
		     "\"kernel\":3,\"stride\":1.5}]}]}", "stride");
	spec_refused("{\"format\":\"pipar-model/1\",\"extra\":1,\"units\":[]}", "extra");
	spec_refused("{\"format\":\"pipar-model/1\",\"units\":[{\"layers\":[{\"type\":\"conv\",\"out\":4,"
		     "\"kernel\":0}]}]}",
		     "model spec: unit 1, layer 1 (conv): field 'kernel': 0 outside [1, 64]");
	spec_refused("{\"format\":\"pipar-model/1\",\"units\":[{\"layers\":[{\"type\":\"conv\",\"out\":4,"
		     "\"kernel\":3,\"bias\":1}]}]}",
		     "model spec: unit 1, layer 1 (conv): field 'bias': not true or false");
	spec_refused("{\"format\":\"pipar-model/1\",\"units\":[{\"layers\":[{\"type\":\"dropout\",\"rate\":2}]}]}",
		     "field 'rate': 2 outside");
	return tap_done();
}
