/*
 * Models: the zoo, the JSON spec reader, parameter storage, SGD and the
 * execution workspace.
 */
#define _POSIX_C_SOURCE 200809L
#include "model.h"
#include "json.h"
#include "pool.h"
#include "file.h"
#include "rng.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Bounds on what a spec may ask for, so that a hostile or mistyped spec is
 * refused with a message instead of exhausting memory or time: the
 * parameters and buffers of the whole spec (2^26 floats, 256 MiB; each
 * trainable value also gets a gradient and a momentum, so up to 768 MiB),
 * and the input or output of any one layer per sample (2^26 floats).  The
 * largest zoo model, vgg16 on 3x32x32, has about 2^25 parameters.
 */
#define MODEL_MAX_STATE ((size_t)1 << 26)
#define MODEL_MAX_ACTIVATION ((size_t)1 << 26)

/* ---------------------------------------------------------------- zoo */

static cJSON *layer_obj(cJSON *layers, const char *type)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "type", type);
	cJSON_AddItemToArray(layers, o);
	return o;
}

static cJSON *unit_layers(cJSON *units)
{
	cJSON *u = cJSON_CreateObject();
	cJSON *layers = cJSON_AddArrayToObject(u, "layers");

	cJSON_AddItemToArray(units, u);
	return layers;
}

static void add_conv(cJSON *layers, int out, int kernel, int padding)
{
	cJSON *c = layer_obj(layers, "conv");

	cJSON_AddNumberToObject(c, "out", out);
	cJSON_AddNumberToObject(c, "kernel", kernel);
	cJSON_AddNumberToObject(c, "padding", padding);
}

static void add_maxpool(cJSON *layers, int optional)
{
	cJSON *p = layer_obj(layers, "maxpool");

	cJSON_AddNumberToObject(p, "kernel", 2);
	if (optional)
		cJSON_AddTrueToObject(p, "optional");
}

static void add_dense(cJSON *layers, int out)
{
	cJSON *d = layer_obj(layers, "dense");

	if (out > 0)
		cJSON_AddNumberToObject(d, "out", out);
	else
		cJSON_AddStringToObject(d, "out", "classes");
}

/* A CIFAR-style VGG: cfg lists conv widths, 0 for a 2x2 max-pool.  Each
 * conv (with its batch-norm, ReLU and any pool after it) is one unit. */
static void vgg(cJSON *units, const int *cfg, int ncfg, int dense, float drop)
{
	cJSON *layers = NULL;

	for (int i = 0; i < ncfg; i++) {
		if (cfg[i] == 0) {
			add_maxpool(layers, dense > 0);
			continue;
		}
		layers = unit_layers(units);
		add_conv(layers, cfg[i], 3, 1);
		layer_obj(layers, "batchnorm");
		layer_obj(layers, "relu");
	}
	for (int i = 0; i < 2; i++) {
		layers = unit_layers(units);
		if (i == 0)
			layer_obj(layers, "flatten");
		add_dense(layers, dense);
		layer_obj(layers, "relu");
		if (drop > 0)
			cJSON_AddNumberToObject(layer_obj(layers, "dropout"), "rate", drop);
	}
	add_dense(unit_layers(units), 0);
}

static void resnet18(cJSON *units)
{
	static const int widths[4] = {64, 128, 256, 512};
	cJSON *layers = unit_layers(units), *o;

	add_conv(layers, 64, 3, 1);
	cJSON_AddFalseToObject(cJSON_GetArrayItem(layers, 0), "bias");
	layer_obj(layers, "batchnorm");
	layer_obj(layers, "relu");
	for (int s = 0; s < 4; s++)
		for (int b = 0; b < 2; b++) {
			o = layer_obj(unit_layers(units), "basicblock");
			cJSON_AddNumberToObject(o, "out", widths[s]);
			cJSON_AddNumberToObject(o, "stride", (s > 0 && b == 0) ? 2 : 1);
		}
	layers = unit_layers(units);
	cJSON_AddTrueToObject(layer_obj(layers, "avgpool"), "global");
	layer_obj(layers, "flatten");
	add_dense(layers, 0);
}

static const char *const zoo_names[] = {"vgg5", "vgg8", "vgg11", "vgg16", "resnet18"};

int pipar_model_zoo_spec(const char *name, char **json, char *err)
{
	static const int c8[] = {64, 0, 128, 0, 256, 0, 512, 0, 512, 0};
	static const int c11[] = {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0};
	static const int c16[] = {64, 64, 0, 128, 128, 0, 256, 256, 256, 0,
				  512, 512, 512, 0, 512, 512, 512, 0};
	cJSON *root, *units;
	size_t i;

	for (i = 0; i < sizeof(zoo_names) / sizeof(zoo_names[0]); i++)
		if (strcmp(name, zoo_names[i]) == 0)
			break;
	if (i == sizeof(zoo_names) / sizeof(zoo_names[0]))
		return pipar_errf(err, "unknown model '%s' (known: vgg5, vgg8, vgg11, vgg16, resnet18, or a FILE.json spec)",
				  name);
	root = cJSON_CreateObject();
	cJSON_AddStringToObject(root, "format", "pipar-model/1");
	cJSON_AddStringToObject(root, "name", name);
	units = cJSON_AddArrayToObject(root, "units");
	if (strcmp(name, "vgg5") == 0) {
		/* The reference configuration: three convs, two dense. */
		cJSON *l = unit_layers(units);

		add_conv(l, 32, 3, 1);
		layer_obj(l, "batchnorm");
		layer_obj(l, "relu");
		add_maxpool(l, 0);
		l = unit_layers(units);
		add_conv(l, 64, 3, 1);
		layer_obj(l, "batchnorm");
		layer_obj(l, "relu");
		add_maxpool(l, 0);
		l = unit_layers(units);
		add_conv(l, 64, 3, 1);
		layer_obj(l, "batchnorm");
		layer_obj(l, "relu");
		l = unit_layers(units);
		layer_obj(l, "flatten");
		add_dense(l, 128);
		layer_obj(l, "relu");
		add_dense(unit_layers(units), 0);
	} else if (strcmp(name, "vgg8") == 0) {
		vgg(units, c8, sizeof(c8) / sizeof(c8[0]), 4096, 0.5f);
	} else if (strcmp(name, "vgg11") == 0) {
		vgg(units, c11, sizeof(c11) / sizeof(c11[0]), 4096, 0.5f);
	} else if (strcmp(name, "vgg16") == 0) {
		vgg(units, c16, sizeof(c16) / sizeof(c16[0]), 4096, 0.5f);
	} else {
		resnet18(units);
	}
	*json = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	if (!*json)
		return pipar_errf(err, "out of memory");
	return 0;
}

int pipar_model_load_spec(const char *name_or_file, char **json, char *err)
{
	const char *dot = strrchr(name_or_file, '.');

	if (strcmp(name_or_file, "-") != 0 && (!dot || strcmp(dot, ".json") != 0))
		return pipar_model_zoo_spec(name_or_file, json, err);
	*json = pipar_read_file(name_or_file, 16u << 20, NULL, err);
	if (!*json)
		return -1;
	/* The kind of file is checked here, where its name is known; the
	 * rest of the spec when it is built. */
	cJSON *root = pipar_json_parse(*json, pipar_json_name(name_or_file), NULL, "pipar-model/1", 0, err);

	if (!root) {
		free(*json);
		*json = NULL;
		return -1;
	}
	cJSON_Delete(root);
	return 0;
}

/* ---------------------------------------------------------------- spec */

struct where {
	int unit, layer;
	const char *type;
};

static int spec_errf(char *err, const struct where *w, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int spec_errf(char *err, const struct where *w, const char *fmt, ...)
{
	char msg[PIPAR_ERRLEN];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (w->type)
		return pipar_errf(err, "model spec: unit %d, layer %d (%s): %s",
				  w->unit + 1, w->layer + 1, w->type, msg);
	return pipar_errf(err, "model spec: unit %d, layer %d: %s", w->unit + 1,
			  w->layer + 1, msg);
}

/* Reads an integer field; absent gives def (INT32_MIN: required).  The
 * value must be a whole number in [lo, hi]; json.h words the refusal. */
static int get_int(const cJSON *o, const char *name, int def, int lo, int hi,
		   int *out, const struct where *w, char *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	char why[96];
	double d;

	if (!v && def != INT32_MIN) {
		*out = def;
		return 0;
	}
	if (pipar_json_value(v, lo, hi, 1, &d, why, sizeof(why)) < 0)
		return spec_errf(err, w, "field '%s': %s", name, why);
	*out = (int)d;
	return 0;
}

static int get_bool(const cJSON *o, const char *name, int def, int *out,
		    const struct where *w, char *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	if (!v) {
		*out = def;
		return 0;
	}
	if (!cJSON_IsBool(v))
		return spec_errf(err, w, "field '%s': not true or false", name);
	*out = cJSON_IsTrue(v);
	return 0;
}

static int get_float(const cJSON *o, const char *name, double def, double lo,
		     double hi, float *out, const struct where *w, char *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	char why[96];
	double d;

	if (!v) {
		*out = (float)def;
		return 0;
	}
	if (pipar_json_value(v, lo, hi, 0, &d, why, sizeof(why)) < 0)
		return spec_errf(err, w, "field '%s': %s", name, why);
	*out = (float)d;
	return 0;
}

/* Refuses any field not in the NULL-terminated list. */
static int check_fields(const cJSON *o, const char *const *allowed,
			const struct where *w, char *err)
{
	const char *unknown = pipar_json_unknown_field(o, allowed);

	return unknown ? spec_errf(err, w, "unknown field '%s'", unknown) : 0;
}

#define FIELDS(...) ((const char *const[]){"type", __VA_ARGS__, NULL})

/* Builds one layer from its JSON object.  *skip is set for an optional
 * pool that does not fit the input (then *out is NULL). */
static int build_layer(const cJSON *o, struct pipar_shape in, int classes,
		       struct pipar_layer **out, int *skip,
		       const struct where *w0, char *err)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
	struct where w = *w0;
	char lerr[PIPAR_ERRLEN];
	const char *type;

	*out = NULL;
	*skip = 0;
	if (!cJSON_IsObject(o))
		return spec_errf(err, &w, "not an object");
	if (!cJSON_IsString(t))
		return spec_errf(err, &w, "field 'type': missing or not a string");
	type = t->valuestring;
	w.type = type;
	if (strcmp(type, "conv") == 0) {
		struct pipar_conv_cfg c;

		if (check_fields(o, FIELDS("out", "kernel", "stride", "padding", "bias"), &w, err) ||
		    get_int(o, "out", INT32_MIN, 1, 65536, &c.out_channels, &w, err) ||
		    get_int(o, "kernel", INT32_MIN, 1, 64, &c.kernel, &w, err) ||
		    get_int(o, "stride", 1, 1, 64, &c.stride, &w, err) ||
		    get_int(o, "padding", 0, 0, 64, &c.padding, &w, err) ||
		    get_bool(o, "bias", 1, &c.bias, &w, err))
			return -1;
		*out = pipar_layer_conv_new(in, &c, lerr);
	} else if (strcmp(type, "maxpool") == 0 || strcmp(type, "avgpool") == 0) {
		struct pipar_pool_cfg c = {0};
		int optional = 0;

		if (check_fields(o, FIELDS("kernel", "stride", "global", "optional"), &w, err) ||
		    get_bool(o, "global", 0, &c.global, &w, err) ||
		    get_int(o, "kernel", c.global ? 0 : INT32_MIN, c.global ? 0 : 1,
			    1024, &c.kernel, &w, err) ||
		    get_int(o, "stride", 0, 0, 1024, &c.stride, &w, err) ||
		    get_bool(o, "optional", 0, &optional, &w, err))
			return -1;
		if (optional && !c.global && (in.h < c.kernel || in.w < c.kernel)) {
			*skip = 1;
			return 0;
		}
		*out = type[0] == 'm' ? pipar_layer_maxpool_new(in, &c, lerr) :
					pipar_layer_avgpool_new(in, &c, lerr);
	} else if (strcmp(type, "relu") == 0 || strcmp(type, "flatten") == 0) {
		if (check_fields(o, FIELDS(NULL), &w, err))
			return -1;
		*out = type[0] == 'r' ? pipar_layer_relu_new(in, lerr) :
					pipar_layer_flatten_new(in, lerr);
	} else if (strcmp(type, "dense") == 0) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "out");
		int n = 0, bias = 1;

		if (check_fields(o, FIELDS("out", "bias"), &w, err) ||
		    get_bool(o, "bias", 1, &bias, &w, err))
			return -1;
		if (cJSON_IsString(v) && strcmp(v->valuestring, "classes") == 0)
			n = classes;
		else if (get_int(o, "out", INT32_MIN, 1, 1 << 24, &n, &w, err))
			return -1;
		*out = pipar_layer_dense_new(in, n, bias, lerr);
	} else if (strcmp(type, "dropout") == 0) {
		float rate = 0.5f;

		if (check_fields(o, FIELDS("rate"), &w, err) ||
		    get_float(o, "rate", 0.5, 0.0, 0.999, &rate, &w, err))
			return -1;
		*out = pipar_layer_dropout_new(in, rate, lerr);
	} else if (strcmp(type, "batchnorm") == 0) {
		float mom = 0.1f, eps = 1e-5f;

		if (check_fields(o, FIELDS("momentum", "eps"), &w, err) ||
		    get_float(o, "momentum", 0.1, 0.0, 1.0, &mom, &w, err) ||
		    get_float(o, "eps", 1e-5, 1e-12, 1.0, &eps, &w, err))
			return -1;
		*out = pipar_layer_batchnorm_new(in, mom, eps, lerr);
	} else if (strcmp(type, "basicblock") == 0) {
		int n = 0, stride = 1;

		if (check_fields(o, FIELDS("out", "stride"), &w, err) ||
		    get_int(o, "out", INT32_MIN, 1, 65536, &n, &w, err) ||
		    get_int(o, "stride", 1, 1, 16, &stride, &w, err))
			return -1;
		*out = pipar_layer_basicblock_new(in, n, stride, lerr);
	} else {
		return spec_errf(err, &w, "unknown type (known: conv, maxpool, avgpool, relu, dense, dropout, batchnorm, flatten, basicblock)");
	}
	if (!*out)
		return spec_errf(err, &w, "%s", lerr);
	return 0;
}

/* ---------------------------------------------------------------- model */

static void init_param(struct pipar_param *p, struct pipar_rng *r)
{
	switch (p->init) {
	case PIPAR_INIT_ZERO:
		memset(p->data, 0, sizeof(float) * p->count);
		break;
	case PIPAR_INIT_ONE:
		for (size_t i = 0; i < p->count; i++)
			p->data[i] = 1.0f;
		break;
	case PIPAR_INIT_HE: {
		double sd = sqrt(2.0 / p->fan_in);

		for (size_t i = 0; i < p->count; i++)
			p->data[i] = (float)(sd * pipar_rng_normal(r));
		break;
	}
	case PIPAR_INIT_XAVIER: {
		double b = sqrt(6.0 / (p->fan_in + p->fan_out));

		for (size_t i = 0; i < p->count; i++)
			p->data[i] = (float)(b * (2.0 * pipar_rng_uniform(r) - 1.0));
		break;
	}
	}
}

/* Allocates the unit's storage, points its layers' parameters into it and
 * draws their initial values. */
static int bind_unit(struct pipar_model *m, struct pipar_unit *u, int index,
		     char *err)
{
	struct pipar_rng r;
	size_t t = 0, b;

	u->ntrain = u->nstate = 0;
	for (int i = 0; i < u->nlayers; i++) {
		struct pipar_layer *l = m->layers[u->first_layer + i];

		for (int j = 0; j < l->nparams; j++) {
			u->nstate += l->params[j].count;
			if (l->params[j].trainable)
				u->ntrain += l->params[j].count;
		}
	}
	u->data = pipar_calloc(sizeof(float) * u->nstate);
	u->grad = pipar_calloc(sizeof(float) * u->ntrain);
	u->mom = pipar_calloc(sizeof(float) * u->ntrain);
	if (!u->data || !u->grad || !u->mom)
		return pipar_errf(err, "out of memory for unit %d parameters", index + 1);
	b = u->ntrain;
	pipar_rng_seed(&r, m->seed, 0x756e6974ULL + (uint64_t)index);
	for (int i = 0; i < u->nlayers; i++) {
		struct pipar_layer *l = m->layers[u->first_layer + i];

		for (int j = 0; j < l->nparams; j++) {
			struct pipar_param *p = &l->params[j];

			if (p->trainable) {
				p->data = u->data + t;
				p->grad = u->grad + t;
				t += p->count;
			} else {
				p->data = u->data + b;
				p->grad = NULL;
				b += p->count;
			}
			init_param(p, &r);
		}
	}
	return 0;
}

/* The layers of every unit of a spec, built in order. */
struct built {
	struct pipar_layer **all;
	int nall, cap;
	int *unit_start, *unit_len;     /* per unit: its range in all */
	struct pipar_layer *last_param_layer;
	size_t nstate;
	struct pipar_shape shape;       /* the output so far */
};

static void built_free(struct built *b)
{
	for (int i = 0; i < b->nall; i++)
		pipar_layer_free(b->all[i]);
	free(b->all);
	free(b->unit_start);
	free(b->unit_len);
}

/* Appends layer l (layer i of unit u) after the limits are checked, so
 * that the next layer never sees an oversized input.  l is b's, or freed. */
static int add_layer(struct built *b, struct pipar_layer *l, int u, int i, char *err)
{
	for (int j = 0; j < l->nparams; j++)
		b->nstate += l->params[j].count;
	if (b->nstate > MODEL_MAX_STATE || pipar_shape_size(l->out) > MODEL_MAX_ACTIVATION) {
		if (b->nstate > MODEL_MAX_STATE)
			pipar_errf(err, "model spec: unit %d, layer %d (%s): more than %zu parameters and buffers in the model (%zu MiB)",
				   u + 1, i + 1, l->ops->type, MODEL_MAX_STATE,
				   MODEL_MAX_STATE * sizeof(float) >> 20);
		else
			pipar_errf(err, "model spec: unit %d, layer %d (%s): output of %zu values per sample, more than the limit of %zu",
				   u + 1, i + 1, l->ops->type, pipar_shape_size(l->out),
				   MODEL_MAX_ACTIVATION);
		pipar_layer_free(l);
		return -1;
	}
	if (b->nall == b->cap) {
		int ncap = b->cap ? 2 * b->cap : 64;
		struct pipar_layer **na = realloc(b->all, sizeof(*b->all) * (size_t)ncap);

		if (!na) {
			pipar_layer_free(l);
			return pipar_errf(err, "out of memory");
		}
		b->all = na;
		b->cap = ncap;
	}
	b->all[b->nall++] = l;
	b->shape = l->out;
	if (l->nparams)
		b->last_param_layer = l;
	return 0;
}

/* Unit u of the spec, its layers built for the shape so far. */
static int build_unit(struct built *b, const cJSON *uo, int u, int classes, char *err)
{
	const cJSON *layers = cJSON_GetObjectItemCaseSensitive(uo, "layers");
	struct where w = {u, 0, NULL};
	const char *unknown;

	if (!cJSON_IsObject(uo) || !cJSON_IsArray(layers) || cJSON_GetArraySize(layers) < 1)
		return pipar_errf(err, "model spec: unit %d: field 'layers': missing or not a non-empty array", u + 1);
	if ((unknown = pipar_json_unknown_field(uo, (const char *const[]){"layers", NULL})))
		return pipar_errf(err, "model spec: unit %d: unknown field '%s'", u + 1, unknown);
	b->unit_start[u] = b->nall;
	for (int i = 0; i < cJSON_GetArraySize(layers); i++) {
		struct pipar_layer *l;
		int skip;

		w.layer = i;
		if (build_layer(cJSON_GetArrayItem(layers, i), b->shape, classes, &l, &skip, &w, err) < 0)
			return -1;
		if (skip)
			continue;
		/* batch-norm then ReLU run as one layer. */
		if (strcmp(l->ops->type, "relu") == 0 && b->nall > b->unit_start[u] &&
		    pipar_layer_fuse_relu(b->all[b->nall - 1]) == 0) {
			pipar_layer_free(l);
			continue;
		}
		if (add_layer(b, l, u, i, err) < 0)
			return -1;
	}
	b->unit_len[u] = b->nall - b->unit_start[u];
	if (b->unit_len[u] == 0)
		return pipar_errf(err, "model spec: unit %d: no layer fits the input", u + 1);
	return 0;
}

/* Every unit (the shapes of the earlier ones give the input of the first
 * one held), ending in the classes. */
static int build_units(struct built *b, const cJSON *units, int L, int classes, char *err)
{
	if (!(b->unit_start = calloc((size_t)L, sizeof(int))) ||
	    !(b->unit_len = calloc((size_t)L, sizeof(int))))
		return pipar_errf(err, "out of memory");
	for (int u = 0; u < L; u++)
		if (build_unit(b, cJSON_GetArrayItem(units, u), u, classes, err) < 0)
			return -1;
	if (b->shape.c != classes || b->shape.h != 1 || b->shape.w != 1) {
		char s[48];

		pipar_shape_str(b->shape, s, sizeof(s));
		return pipar_errf(err, "model spec: the output is %s, not %d classes", s, classes);
	}
	/* The classifier is not followed by a ReLU: Xavier fits it better. */
	if (b->last_param_layer && strcmp(b->last_param_layer->ops->type, "dense") == 0)
		b->last_param_layer->params[0].init = PIPAR_INIT_XAVIER;
	return 0;
}

/* The model of units first..last of what b built, its layers taken from
 * b and its parameters made. */
static int assemble(struct built *b, struct pipar_model *m, int first, int last, char *err)
{
	m->first_unit = first;
	m->nunits = last - first + 1;
	m->nlayers = b->unit_start[last] + b->unit_len[last] - b->unit_start[first];
	m->layers = calloc((size_t)m->nlayers, sizeof(*m->layers));
	m->units = calloc((size_t)m->nunits, sizeof(*m->units));
	if (!m->spec || !m->layers || !m->units)
		return pipar_errf(err, "out of memory");
	for (int i = 0; i < b->nall; i++) {
		int k = i - b->unit_start[first];

		if (k >= 0 && k < m->nlayers) {
			m->layers[k] = b->all[i];
			b->all[i] = NULL;
		}
	}
	for (int u = 0; u < m->nunits; u++) {
		struct pipar_unit *un = &m->units[u];

		un->first_layer = b->unit_start[first + u] - b->unit_start[first];
		un->nlayers = b->unit_len[first + u];
		un->in = m->layers[un->first_layer]->in;
		un->out = m->layers[un->first_layer + un->nlayers - 1]->out;
		if (bind_unit(m, un, first + u, err) < 0)
			return -1;
	}
	return 0;
}

int pipar_model_new(const char *spec_json, struct pipar_shape in, int classes,
		    int first, int last, uint64_t seed,
		    struct pipar_model **out, char *err)
{
	static const char *const known[] = {"format", "name", "units", NULL};
	cJSON *root = pipar_json_parse(spec_json, NULL, "model spec", "pipar-model/1", 0, err);
	const cJSON *units, *name;
	const char *unknown;
	struct pipar_model *m = NULL;
	struct built b = {.shape = in};
	int L;

	*out = NULL;
	if (!root)
		return -1;
	if (in.c <= 0 || in.h <= 0 || in.w <= 0 || classes < 1) {
		pipar_errf(err, "model spec: bad input shape or class count");
		goto fail;
	}
	if (pipar_shape_size(in) > MODEL_MAX_ACTIVATION) {
		pipar_errf(err, "model spec: input of %zu values per sample, more than the limit of %zu",
			   pipar_shape_size(in), MODEL_MAX_ACTIVATION);
		goto fail;
	}
	name = cJSON_GetObjectItemCaseSensitive(root, "name");
	units = cJSON_GetObjectItemCaseSensitive(root, "units");
	if ((unknown = pipar_json_unknown_field(root, known))) {
		pipar_errf(err, "model spec: unknown field '%s'", unknown);
		goto fail;
	}
	if (name && (!cJSON_IsString(name) || strlen(name->valuestring) >= 64)) {
		pipar_errf(err, "model spec: field 'name': not a string of under 64 bytes");
		goto fail;
	}
	if (!cJSON_IsArray(units) || cJSON_GetArraySize(units) < 1 ||
	    cJSON_GetArraySize(units) > 4096) {
		pipar_errf(err, "model spec: field 'units': missing or not a non-empty array");
		goto fail;
	}
	L = cJSON_GetArraySize(units);
	if (last < 0)
		last = L - 1;
	if (first < 0 || first > last || last >= L) {
		pipar_errf(err, "model spec: units %d..%d outside 1..%d", first + 1, last + 1, L);
		goto fail;
	}
	if (build_units(&b, units, L, classes, err) < 0)
		goto fail;
	if (!(m = calloc(1, sizeof(*m)))) {
		pipar_errf(err, "out of memory");
		goto fail;
	}
	snprintf(m->name, sizeof(m->name), "%s", cJSON_IsString(name) ? name->valuestring : "custom");
	m->spec = cJSON_PrintUnformatted(root);
	m->in = in;
	m->classes = classes;
	m->total_units = L;
	m->seed = seed;
	if (assemble(&b, m, first, last, err) < 0)
		goto fail;
	built_free(&b);
	cJSON_Delete(root);
	*out = m;
	return 0;
fail:
	built_free(&b);
	cJSON_Delete(root);
	pipar_model_free(m);
	return -1;
}

void pipar_model_free(struct pipar_model *m)
{
	if (!m)
		return;
	for (int i = 0; m->layers && i < m->nlayers; i++)
		pipar_layer_free(m->layers[i]);
	for (int u = 0; m->units && u < m->nunits; u++) {
		free(m->units[u].data);
		free(m->units[u].grad);
		free(m->units[u].mom);
	}
	free(m->layers);
	free(m->units);
	free(m->spec);
	free(m);
}

struct pipar_shape pipar_model_in(const struct pipar_model *m)
{
	return m->units[0].in;
}

struct pipar_shape pipar_model_out(const struct pipar_model *m)
{
	return m->units[m->nunits - 1].out;
}

size_t pipar_model_nstate(const struct pipar_model *m)
{
	size_t t = 0;

	for (int u = 0; u < m->nunits; u++)
		t += m->units[u].nstate;
	return t;
}

size_t pipar_model_ntrain(const struct pipar_model *m)
{
	size_t t = 0;

	for (int u = 0; u < m->nunits; u++)
		t += m->units[u].ntrain;
	return t;
}

void pipar_model_get_state(const struct pipar_model *m, int u, float *dst)
{
	PIPAR_ASSERT(u >= 0 && u < m->nunits);
	memcpy(dst, m->units[u].data, sizeof(float) * m->units[u].nstate);
}

void pipar_model_set_state(struct pipar_model *m, int u, const float *src)
{
	PIPAR_ASSERT(u >= 0 && u < m->nunits);
	memcpy(m->units[u].data, src, sizeof(float) * m->units[u].nstate);
}

double pipar_model_unit_flops(const struct pipar_model *m, int u, int backward)
{
	const struct pipar_unit *un = &m->units[u];
	double f = 0;

	for (int i = 0; i < un->nlayers; i++) {
		const struct pipar_layer *l = m->layers[un->first_layer + i];

		f += l->ops->flops(l, backward);
	}
	return f;
}

void pipar_model_zero_grad(struct pipar_model *m)
{
	for (int u = 0; u < m->nunits; u++)
		memset(m->units[u].grad, 0, sizeof(float) * m->units[u].ntrain);
}

void pipar_model_sgd_step(struct pipar_model *m, const struct pipar_sgd *opt)
{
	float lr = opt->lr, mu = opt->momentum, wd = opt->weight_decay;

	for (int u = 0; u < m->nunits; u++) {
		struct pipar_unit *un = &m->units[u];
		float *w = un->data, *g = un->grad, *v = un->mom;

		for (size_t i = 0; i < un->ntrain; i++) {
			float d = g[i] + wd * w[i];

			v[i] = mu * v[i] + d;
			w[i] -= lr * v[i];
		}
	}
}
