/*
 * train: the centralised training loop and evaluation, over a model, its
 * execution workspace and a data set.  pipar-train drives it; the same
 * functions evaluate checkpoints and global models.
 *
 * Who owns what: every function borrows the model, the workspace (which
 * must have been made for that model) and the data for the call; the
 * statistics and the confusion counts go into the caller's structs and
 * arrays.
 */
#ifndef PIPAR_TRAIN_H
#define PIPAR_TRAIN_H

#include <stdint.h>

#include "data.h"
#include "exec.h"
#include "model.h"

struct pipar_train_cfg {
	int batch;                      /* mini-batch size B */
	struct pipar_sgd sgd;
	uint64_t seed;                  /* sample order of every epoch */
};

struct pipar_epoch_stats {
	double loss;                    /* mean cross-entropy per sample */
	double accuracy;                /* fraction classified correctly */
	int samples;
	double seconds;
};

/* Called after each mini-batch with the number done and the total. */
typedef void (*pipar_progress_fn)(void *arg, int done, int total);

/* The sample order of an epoch: idx[0..n) copied to order and shuffled
 * by a stream drawn from (seed, epoch, device).  Device 0's order is
 * pipar-train's, so that one device reproduces centralised training; the
 * others draw their own. */
void pipar_train_order(const int *idx, int n, uint64_t seed, int epoch, int device,
		       int *order);

/* One epoch of mini-batch SGD over samples idx[0..n) of d, in an order
 * drawn from (cfg->seed, epoch).  e must have been made for m with
 * max_n >= cfg->batch.  The last mini-batch may be smaller.  Fills *st;
 * -1 with err when out of memory. */
int pipar_train_epoch(struct pipar_model *m, struct pipar_exec *e,
		      const struct pipar_data *d, const struct pipar_norm *norm,
		      const int *idx, int n, int epoch,
		      const struct pipar_train_cfg *cfg,
		      struct pipar_epoch_stats *st, pipar_progress_fn progress,
		      void *progress_arg, char *err);

/* Evaluates m in inference mode on the first n samples of d (all when n is
 * 0 or more than d->count), in batches of e->max_n.  When confusion is not
 * NULL it receives classes x classes counts, row = true label, column =
 * prediction.  -1 with err when out of memory or the data's shape or class
 * count does not fit the model. */
int pipar_train_evaluate(const struct pipar_model *m, struct pipar_exec *e,
		   const struct pipar_data *d, const struct pipar_norm *norm,
		   int n, struct pipar_epoch_stats *st, long *confusion,
		   char *err);

#endif
