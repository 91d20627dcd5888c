/*
 * pool: the engine's own worker threads.
 *
 * Layers split their work statically among T threads (sample groups for
 * convolution and dense layers, channels for batch-norm, planes for
 * pooling), so results do not depend on timing: a run with the same seed
 * and the same thread count computes the same numbers.  While the pool
 * has more than one thread, BLAS runs single-threaded inside each of them;
 * two layers of threads would only compete for the same cores.
 */
#ifndef PIPAR_POOL_H
#define PIPAR_POOL_H

/* The most threads the pool will run. */
#define PIPAR_MAX_THREADS 64

/* Sets the number of threads (1..PIPAR_MAX_THREADS, clamped), starting or
 * stopping workers to match, and makes BLAS single-threaded.  Not
 * thread-safe: call it from the main thread before making workspaces
 * (they size their per-thread scratch by it).  Returns the number in
 * force, which may be lower when threads cannot be created. */
int pipar_threads_set(int t);
int pipar_threads(void);

/* Runs fn(arg, tid, T) once on each of the T threads (tid 0 is the
 * caller) and returns when all have finished. */
void pipar_parallel(void (*fn)(void *arg, int tid, int nthreads), void *arg);

/* The part [*begin, *end) of n items that thread tid of T owns. */
static inline void pipar_split(int n, int tid, int nthreads, int *begin,
			       int *end)
{
	*begin = (int)((long long)n * tid / nthreads);
	*end = (int)((long long)n * (tid + 1) / nthreads);
}

#endif
