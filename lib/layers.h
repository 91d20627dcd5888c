/*
 * layers: the building blocks of a model, each with forward and backward.
 *
 * A layer is an operations table (struct pipar_layer_ops) plus its own
 * configuration and a list of parameters.  A layer holds no activations:
 * everything a pass needs (its output, what backward must remember, and
 * temporary space) lives in memory the caller provides through struct
 * pipar_pass, sized by the ops' state_bytes and scratch_bytes.  That lets one
 * model run several passes in flight (PiPar's parallel batches), each with
 * its own memory allocated once and reused.
 *
 * Layout: activations are NCHW float32 (see tensor.h).  Backward adds
 * parameter gradients into pipar_param.grad (so micro-batches accumulate;
 * clear them with the model's zero_grad) and writes the input gradient into
 * dx, unless dx is NULL (the first layer of a model needs none).
 *
 * Constructors check their configuration against the input shape and
 * return NULL with err filled when it does not fit (a kernel larger than
 * the padded input, a zero channel count, ...).  Parameter memory is bound
 * later by the model (pipar_param.data and .grad).
 */
#ifndef PIPAR_LAYERS_H
#define PIPAR_LAYERS_H

#include <stddef.h>

#include "tensor.h"
#include "rng.h"
#include "util.h"

enum pipar_init {
	PIPAR_INIT_ZERO,
	PIPAR_INIT_ONE,
	PIPAR_INIT_HE,     /* normal, std sqrt(2 / fan_in): before ReLU */
	PIPAR_INIT_XAVIER, /* uniform, bound sqrt(6 / (fan_in + fan_out)) */
};

/* One parameter tensor or buffer of a layer. */
struct pipar_param {
	char role[32];          /* "conv.weight", "bn.running_mean", ... */
	int ndim, dims[4];
	size_t count;           /* product of dims */
	int trainable;          /* 0: a buffer (batch-norm running stats) */
	enum pipar_init init;
	int fan_in, fan_out;
	float *data;            /* bound by the model */
	float *grad;            /* bound by the model; NULL for buffers */
};

/* Everything one forward or backward call works on. */
struct pipar_pass {
	int n;                  /* samples in the batch */
	int train;              /* training mode (batch-norm, dropout) */
	const float *x;         /* input, n * in floats */
	float *y;               /* output, n * out floats */
	void *state;            /* state_bytes(n), kept from forward to backward */
	void *scratch;          /* scratch_bytes(n), valid within one call */
	const float *dy;        /* backward: gradient of the output */
	float *dx;              /* backward: gradient of the input, or NULL */
	struct pipar_rng *rng;  /* dropout masks */
};

struct pipar_layer;

struct pipar_layer_ops {
	const char *type;
	size_t (*state_bytes)(const struct pipar_layer *l, int n);
	size_t (*scratch_bytes)(const struct pipar_layer *l, int n);
	void (*forward)(const struct pipar_layer *l, const struct pipar_pass *p);
	void (*backward)(const struct pipar_layer *l, const struct pipar_pass *p);
	/* Floating-point operations of one forward and one backward pass per
	 * sample (multiply-add counts two); for profiles and benchmarks. */
	double (*flops)(const struct pipar_layer *l, int backward);
	void (*free_priv)(struct pipar_layer *l);
};

struct pipar_layer {
	const struct pipar_layer_ops *ops;
	struct pipar_shape in, out;
	struct pipar_param *params;
	int nparams;
	int owns_params;        /* 0 inside a composite layer */
	void *priv;             /* the type's configuration */
};

struct pipar_conv_cfg {
	int out_channels, kernel, stride, padding;
	int bias;               /* 1: with a bias per output channel */
};

struct pipar_pool_cfg {
	int kernel, stride;     /* kernel 0 with global: whole plane */
	int global;
};

/* Constructors: NULL with err on a configuration that does not fit in. */
struct pipar_layer *pipar_layer_conv_new(struct pipar_shape in,
					 const struct pipar_conv_cfg *cfg,
					 char *err);
struct pipar_layer *pipar_layer_maxpool_new(struct pipar_shape in,
					    const struct pipar_pool_cfg *cfg,
					    char *err);
struct pipar_layer *pipar_layer_avgpool_new(struct pipar_shape in,
					    const struct pipar_pool_cfg *cfg,
					    char *err);
struct pipar_layer *pipar_layer_relu_new(struct pipar_shape in, char *err);
struct pipar_layer *pipar_layer_dense_new(struct pipar_shape in, int out,
					  int bias, char *err);
struct pipar_layer *pipar_layer_dropout_new(struct pipar_shape in, float p,
					    char *err);
/* momentum: weight of the new batch statistics in the running ones (0.1);
 * eps: added to the variance (1e-5). */
struct pipar_layer *pipar_layer_batchnorm_new(struct pipar_shape in,
					      float momentum, float eps,
					      char *err);
/* Folds a ReLU that follows into a batch-norm layer (one pass over the
 * data instead of two); -1 if l is not a plain batch-norm layer. */
int pipar_layer_fuse_relu(struct pipar_layer *l);
struct pipar_layer *pipar_layer_flatten_new(struct pipar_shape in, char *err);
/* The residual basic block: conv3x3(stride)-BN-ReLU-conv3x3-BN, plus the
 * input (or a 1x1 conv + BN when the shape changes), then ReLU. */
struct pipar_layer *pipar_layer_basicblock_new(struct pipar_shape in,
					       int out_channels, int stride,
					       char *err);

/* Frees the layer and what it owns; accepts NULL. */
void pipar_layer_free(struct pipar_layer *l);

/* Mean softmax cross-entropy pieces: returns the summed loss of the n rows
 * of logits (n x k); writes (softmax - onehot) * grad_scale into dlogits
 * when it is not NULL; adds the number of rows whose arg-max equals the
 * label to *correct when it is not NULL.  Labels must be in [0, k). */
double pipar_softmax_xent(const float *logits, const int *labels, int n,
			  int k, float grad_scale, float *dlogits,
			  int *correct);

#endif
