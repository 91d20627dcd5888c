/*
 * model: a network as a list of split units, built from a JSON spec.
 *
 * A split unit is the granularity at which PiPar may cut: a few layers that
 * belong together (conv + batch-norm + ReLU + pool, a residual block, a
 * dense layer with its activation).  A model holds units first..last of its
 * spec (0-based, inclusive), so the device part of a cut at P is units
 * 0..P-1 and the server part P..L-1, and the two compose to the whole.
 *
 * Parameters live in one contiguous buffer per unit: the trainable values
 * first (in layer order), then the buffers (batch-norm running statistics).
 * That buffer is what aggregation and the wire move.  Initial values are
 * drawn from a generator seeded by (seed, unit index), so a unit starts with
 * the same values whichever part it is built in.
 *
 * Spec (JSON, "format": "pipar-model/1"):
 *   {"format": "pipar-model/1", "name": "vgg5", "units": [
 *      {"layers": [{"type": "conv", "out": 32, "kernel": 3, "padding": 1},
 *                  {"type": "batchnorm"}, {"type": "relu"},
 *                  {"type": "maxpool", "kernel": 2}]},
 *      ...
 *      {"layers": [{"type": "dense", "out": "classes"}]}]}
 * Layer types and fields: conv (out, kernel, stride 1, padding 0, bias
 * true), maxpool and avgpool (kernel, stride = kernel, or global true),
 * relu, dense (out: a number or "classes", bias true), dropout (rate),
 * batchnorm (momentum 0.1, eps 1e-5), flatten, basicblock (out, stride 1).
 * Unknown types and fields are refused by name.  A spec is also refused
 * when the model would hold more than 2^26 parameters and buffers (256 MiB
 * of float32, 768 MiB with gradients and momentum) or when the input or
 * any layer's output exceeds 2^26 values per sample.
 *
 * Running a model is exec.h: a struct pipar_exec holds all memory for
 * passes up to a batch size, allocated once and reused; one model may have
 * several execs (PiPar's micro-batches in flight).
 */
#ifndef PIPAR_MODEL_H
#define PIPAR_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "layers.h"
#include "tensor.h"

struct pipar_unit {
	int first_layer, nlayers;       /* range in model->layers */
	struct pipar_shape in, out;
	size_t nstate;                  /* floats: parameters + buffers */
	size_t ntrain;                  /* floats: trainable ones, first */
	float *data;                    /* nstate floats, owned */
	float *grad;                    /* ntrain floats, owned */
	float *mom;                     /* ntrain floats, owned (SGD momentum) */
};

struct pipar_model {
	char name[64];
	char *spec;                     /* the spec as JSON text, owned */
	struct pipar_shape in;          /* input of the whole model */
	int classes;
	int total_units;                /* L: units in the spec */
	int first_unit, nunits;         /* the units held here */
	struct pipar_unit *units;
	struct pipar_layer **layers;
	int nlayers;
	uint64_t seed;
};

/* Writes the JSON spec of a built-in model into *json (malloc'd, caller
 * frees).  Names: vgg5, vgg8, vgg11, vgg16, resnet18.  -1 with err for an
 * unknown name (listing the known ones). */
int pipar_model_zoo_spec(const char *name, char **json, char *err);

/* Reads "NAME" (a zoo model), "FILE.json" (a spec file) or "-" (a spec on
 * standard input) into *json (malloc'd, caller frees).  -1 with err for an
 * unknown name, a file that cannot be read, or one that is not a
 * pipar-model/1 document (naming its kind when it is another pipar file). */
int pipar_model_load_spec(const char *name_or_file, char **json, char *err);

/* Builds units first..last (inclusive; last -1 means the final unit) of the
 * spec for inputs of shape in and the given class count.  *out owns the
 * model (pipar_model_free).  -1 with err naming the unit, layer and field
 * when the spec is invalid or does not fit the shape. */
int pipar_model_new(const char *spec_json, struct pipar_shape in, int classes,
		    int first, int last, uint64_t seed,
		    struct pipar_model **out, char *err);

void pipar_model_free(struct pipar_model *m);

/* The shape of the model's input and output (per sample). */
struct pipar_shape pipar_model_in(const struct pipar_model *m);
struct pipar_shape pipar_model_out(const struct pipar_model *m);

/* Counts over the units held: parameters + buffers, trainable only. */
size_t pipar_model_nstate(const struct pipar_model *m);
size_t pipar_model_ntrain(const struct pipar_model *m);

/* Copies the state of unit u (index among the units held) out of or into a
 * caller buffer of units[u].nstate floats. */
void pipar_model_get_state(const struct pipar_model *m, int u, float *dst);
void pipar_model_set_state(struct pipar_model *m, int u, const float *src);

/* Floating-point operations per sample of a forward (backward 0) or a
 * backward (1) pass over unit u. */
double pipar_model_unit_flops(const struct pipar_model *m, int u, int backward);

struct pipar_sgd {
	float lr, momentum, weight_decay;
};

void pipar_model_zero_grad(struct pipar_model *m);
/* One SGD step with momentum and weight decay on the accumulated gradients
 * (PyTorch's formulation: v = mu v + (g + wd w); w -= lr v). */
void pipar_model_sgd_step(struct pipar_model *m, const struct pipar_sgd *opt);

#endif
