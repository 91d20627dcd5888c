/*
 * tensor: shapes and aligned float buffers.
 *
 * Activations are float32 in NCHW order: a batch of n samples, each of
 * c channels of h rows of w columns.  A flat vector of k features is the
 * shape k x 1 x 1.  Buffers are 64-byte aligned (pipar_alloc).
 *
 * Who owns what: a shape is a plain value; a buffer from pipar_alloc is
 * the caller's, released with free().
 */
#ifndef PIPAR_TENSOR_H
#define PIPAR_TENSOR_H

#include <stddef.h>

struct pipar_shape {
	int c, h, w;
};

static inline size_t pipar_shape_size(struct pipar_shape s)
{
	return (size_t)s.c * (size_t)s.h * (size_t)s.w;
}

static inline int pipar_shape_eq(struct pipar_shape a, struct pipar_shape b)
{
	return a.c == b.c && a.h == b.h && a.w == b.w;
}

/* A batch of activations: data holds n * pipar_shape_size(shape) floats. */
struct pipar_tensor {
	int n;
	struct pipar_shape shape;
	float *data;
};

/* Writes "CxHxW" into buf. */
void pipar_shape_str(struct pipar_shape s, char *buf, size_t len);

/* Parses "CxHxW" (or "HxW" meaning 1xHxW); -1 if malformed or not positive. */
int pipar_shape_parse(const char *s, struct pipar_shape *out);

#endif
