/*
 * checkpoint: a trained model as a .npz file.
 *
 * The file is a zip archive (written and read with libarchive, entries
 * stored uncompressed) holding one .npy array per parameter and buffer --
 * format version 1.0, little-endian float32 ('<f4'), C order -- named by
 * unit and role ("u03.conv.weight", "u01.bn.running_mean"; a role that
 * occurs twice in a unit gets the layer number too, "u02.l03.conv.weight"),
 * optionally the SGD momentum of every trainable array ("....momentum"),
 * and pipar.json: "format": "pipar-checkpoint/1", the model spec, the
 * input shape, the classes, the normalisation, the epoch, the training
 * settings and the list of arrays.  numpy.load opens it as it is.
 *
 * A checkpoint may also carry a run to resume (pipar-serve): "run", an
 * object this module keeps as it is (the server reads it), and
 * "run_arrays", the flat float arrays that go with it, each an entry
 * run/NAME.npy of one dimension.
 *
 * Writing is atomic: a temporary file in the same directory, fsync,
 * rename, fsync of the directory; a failure at any point leaves an
 * existing checkpoint as it was and removes the temporary file.
 *
 * Reading checks everything before it is used: the archive, the manifest
 * (format, fields, spec), every array's header, dtype and shape against
 * the model the spec builds, and that no array is missing or extra.  A
 * fault is refused with one line naming the file and the array or field.
 *
 * Who owns what: a model loaded is the caller's (pipar_model_free), and
 * so are the strings in the info it fills (pipar_checkpoint_info_free);
 * saving borrows the model and the info for the call only.
 */
#ifndef PIPAR_CHECKPOINT_H
#define PIPAR_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "data.h"
#include "model.h"

/* A flat array of a run to resume. */
struct pipar_ckpt_array {
	char name[32];                  /* 1 to 31 of [a-z0-9._-] */
	size_t count;                   /* floats, 1 .. 2^28 */
	float *data;                    /* owned when loaded */
};

#define PIPAR_CKPT_RUN_ARRAYS 4096

struct pipar_ckpt_info {
	int epoch;                      /* epochs completed */
	struct pipar_norm norm;         /* input normalisation */
	char *training;                 /* JSON object text of the settings
					 * that produced it; owned, may be NULL */
	int has_momentum;               /* momentum arrays present */
	uint64_t rng[2];                /* dropout generator state, for resume */
	char *run;                      /* JSON object text of a run to resume;
					 * NULL: none.  Owned when loaded */
	int nrun;                       /* its arrays, at most
					 * PIPAR_CKPT_RUN_ARRAYS */
	struct pipar_ckpt_array *arrays;
};

/* Writes m (whole model or a part; its units are numbered as in the full
 * spec) to path ("-": standard output, written as it goes, not atomically).
 * With with_momentum the SGD momentum arrays are written too; with
 * info->run the run and its arrays.  -1 with err
 * naming the path and the failing step. */
int pipar_checkpoint_save(const char *path, const struct pipar_model *m,
			  const struct pipar_ckpt_info *info, int with_momentum,
			  char *err);

/* Reads a checkpoint (path "-": standard input, read whole first): builds
 * the whole model its manifest names and
 * loads every array into it (and the momentum, when present).  On success
 * *out owns the model and *info is filled (release with
 * pipar_checkpoint_info_free).  -1 with err on any fault (a file that is not a
 * zip archive is "not a pipar checkpoint (.npz)", or, when it is a pipar
 * JSON document, named by its kind); nothing is allocated then. */
int pipar_checkpoint_load(const char *path, struct pipar_model **out,
			  struct pipar_ckpt_info *info, char *err);

/* As pipar_checkpoint_load, from size bytes at data; name appears in
 * messages in place of the path. */
int pipar_checkpoint_load_mem(const void *data, size_t size, const char *name,
			      struct pipar_model **out,
			      struct pipar_ckpt_info *info, char *err);

void pipar_checkpoint_info_free(struct pipar_ckpt_info *info);

#endif
