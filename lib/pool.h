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

/* The processor time the engine's computation has used, in seconds: the
 * calling thread's when the pool has one thread; with several, the
 * process's shared among them (an estimate: other threads of the process
 * count too).  Time spent stopped or waiting for a processor is not in
 * it. */
double pipar_cpu_seconds(void);

/* An emulated machine factor times slower than this one, pacing a
 * computation (a stage) that started at wall time t0 (pipar_now) and
 * processor time c0 (pipar_cpu_seconds).  *best is the least processor
 * time the same computation (the same stage at the same size) has taken
 * so far, 0 before the first; it is updated, and the call sleeps until
 * factor times it has passed since t0.  So a stage lasts factor times
 * what it costs this machine at its best, whatever else shares the
 * machine: a wait for a processor that others hold, caches another
 * process took, a stop, or the kernel's work charged to the thread add to
 * the stage's own time once and are not multiplied; when they make it
 * longer than that, it does not sleep.  Does nothing for factor <= 1. */
void pipar_pace(double factor, double t0, double c0, double *best);

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
