/*
 * data: labelled image data sets held in memory as bytes.
 *
 * Sources, named by a spec string:
 *   fashion-mnist[:DIR][:train|:test]   IDX files (gzipped or not), default
 *                                       DIR /usr/share/datasets/fashion-mnist
 *   mnist:DIR[:train|:test]             the same format, MNIST file names
 *   cifar10:FILE.tar.gz[:train|:test]   the CIFAR-10 "binary version"
 *                                       archive, read without unpacking
 *   synthetic:N[:CxHxW[:CLASSES]][:train|:test]
 *                                       N deterministic, learnable samples
 *                                       (default 1x28x28, 10 classes)
 * The split defaults to train.  A trailing "@N" keeps only the first N
 * samples of the split in file order ("fashion-mnist@8000",
 * "fashion-mnist:test@2000"); more than the split holds is an error.
 * Files are read through libarchive (the raw
 * format with every filter for IDX, tar with gzip for CIFAR-10); a
 * truncated, corrupt or wrong-magic file is refused with one line naming the
 * file and the fault, never read in part.
 *
 * Pixels stay as bytes (0..255, NCHW per sample); pipar_data_batch()
 * converts to float32 and applies a per-channel normalisation
 * ((x/255 - mean[c]) / std[c]), usually the training set's, so that train
 * and test see the same transform.
 *
 * Shards: pipar_data_shard() picks the sample indices of shard i of K, IID
 * (a seeded permutation cut into K near-equal parts) or non-IID (per class,
 * proportions drawn from Dirichlet(alpha)), reproducible from the seed.
 *
 * Who owns what: a data set is the caller's from pipar_data_open to
 * pipar_data_free and holds its pixels and labels itself; the shard's
 * index array is the caller's to free; batches are written into the
 * caller's buffers.
 */
#ifndef PIPAR_DATA_H
#define PIPAR_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

#define PIPAR_DATA_MAXCH 4

struct pipar_data {
	char name[64];            /* "fashion-mnist", "cifar10", ... */
	char split[8];            /* "train" or "test" */
	int count;                /* number of samples */
	struct pipar_shape shape; /* per sample, c x h x w */
	int classes;
	uint8_t *pixels;          /* count * c*h*w bytes, owned */
	uint8_t *labels;          /* count bytes, each < classes, owned */
};

struct pipar_norm {
	int channels;
	float mean[PIPAR_DATA_MAXCH]; /* of x/255 */
	float std[PIPAR_DATA_MAXCH];
};

/* The bounds every reader of a normalisation holds it to (a checkpoint,
 * a device's HELLO): means within PIPAR_NORM_MAX of 0, deviations in
 * [PIPAR_NORM_MIN, PIPAR_NORM_MAX]; floats, and a divisor that is not
 * zero, whatever the text said. */
#define PIPAR_NORM_MAX 1e30
#define PIPAR_NORM_MIN 1e-30

/* Loads the data set named by spec.  On success *out owns a new data set
 * (release with pipar_data_free) and 0 is returned; on failure -1 with err
 * naming the spec or file and the fault. */
int pipar_data_open(const char *spec, struct pipar_data **out, char *err);

/* As pipar_data_open for an IDX pair held in memory (images and labels,
 * each plain or compressed as its file would be), checked the same way.
 * The buffers stay the caller's; name stands in for the paths in messages
 * ("NAME images", "NAME labels").  The set's split is "train". */
int pipar_data_idx_mem(const void *images, size_t isize, const void *labels,
		       size_t lsize, const char *name, struct pipar_data **out,
		       char *err);

/* As pipar_data_open for the split ("train" or "test") of a CIFAR-10
 * .tar.gz held in memory; name stands in for the path in messages. */
int pipar_data_cifar_mem(const void *data, size_t size, const char *name,
			 const char *split, struct pipar_data **out, char *err);

/* The spec of the other split of the same source ("fashion-mnist" ->
 * "fashion-mnist:test"), whole ("fashion-mnist@8000" -> "fashion-mnist:test"),
 * written into buf; -1 if it does not fit. */
int pipar_data_spec_split(const char *spec, const char *split, char *buf,
			  size_t len);

void pipar_data_free(struct pipar_data *d);

/* Per-channel mean and standard deviation of the whole set. */
void pipar_data_norm(const struct pipar_data *d, struct pipar_norm *norm);

/* Writes samples idx[0..n) as normalised float32 NCHW into x (n*c*h*w
 * floats) and their labels into y. */
void pipar_data_batch(const struct pipar_data *d, const struct pipar_norm *norm,
		      const int *idx, int n, float *x, int *y);

enum pipar_partition {
	PIPAR_PARTITION_IID,
	PIPAR_PARTITION_DIRICHLET,
};

struct pipar_shard_spec {
	int index, count;            /* shard i of K, 0 <= i < K */
	enum pipar_partition partition;
	double alpha;                /* Dirichlet concentration, > 0 */
	uint64_t seed;
};

/* Parses "i/K" into spec->index and spec->count; -1 with err if malformed. */
int pipar_shard_parse(const char *s, struct pipar_shard_spec *spec, char *err);
/* Parses "iid" or "dirichlet:ALPHA". */
int pipar_partition_parse(const char *s, struct pipar_shard_spec *spec,
			  char *err);

/* Fills *idx (malloc'd, caller frees) with the indices of the shard's
 * samples in ascending order and *n with their number.  The K shards of one
 * seed are disjoint and cover the set.  -1 with err on bad arguments or
 * when out of memory. */
int pipar_data_shard(const struct pipar_data *d,
		     const struct pipar_shard_spec *spec, int **idx, int *n,
		     char *err);

#endif
