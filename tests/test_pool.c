/*
 * The thread pool: every thread runs every job exactly once, jobs posted
 * right after the pool grows are not lost, and the static split covers
 * each item once.  The pace of an emulated slow machine: a stage lasts F
 * times its least processor time, and time it spends not computing is
 * not multiplied.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pool.h"
#include "tap.h"
#include "util.h"

static atomic_int calls;
static atomic_int seen[PIPAR_MAX_THREADS];

static void count(void *arg, int tid, int nthreads)
{
	(void)arg;
	atomic_fetch_add(&calls, 1);
	atomic_fetch_add(&seen[tid], 1);
	PIPAR_ASSERT(nthreads == pipar_threads());
}

struct cover {
	int n;
	atomic_int hits[1000];
};

static void cover_run(void *arg, int tid, int nthreads)
{
	struct cover *c = arg;
	int b, e;

	pipar_split(c->n, tid, nthreads, &b, &e);
	for (int i = b; i < e; i++)
		atomic_fetch_add(&c->hits[i], 1);
}

/* Computes until the thread has used secs of processor time. */
static void spin(double secs)
{
	double c0 = pipar_cpu_seconds();
	volatile double x = 0;

	while (pipar_cpu_seconds() - c0 < secs)
		for (int i = 0; i < 1000; i++)
			x += i;
}

/* One paced stage: wait seconds asleep, then work seconds computing,
 * paced at factor f; its wall time. */
static double stage(double f, double wait, double work, double *best)
{
	double t0 = pipar_now(), c0 = pipar_cpu_seconds();

	if (wait > 0)
		nanosleep(&(struct timespec){0, (long)(wait * 1e9)}, NULL);
	spin(work);
	pipar_pace(f, t0, c0, best);
	return pipar_now() - t0;
}

static void pace(void)
{
	double best = 0, w;

	w = stage(10, 0, 0.02, &best);
	ok(best >= 0.02 && best < 0.05 && w >= 9.9 * best && w < 10 * best + 0.1,
	   "a stage of %.3f s of processor time at F=10 lasts 10 times it (%.3f s)", best, w);
	double b1 = best;

	w = stage(10, 0, 0.04, &best);
	ok(best == b1 && w >= 9.9 * b1 && w < 10 * b1 + 0.1,
	   "a slower run of the same stage lasts 10 times its best, not its own (%.3f s)", w);
	w = stage(10, 0.3, 0.02, &best);
	ok(w < 0.42, "a stage that waited 0.3 s is not made to wait 9 times its work again (%.3f s)",
	   w);
	best = 0;
	w = stage(1, 0, 0.01, &best);
	ok(w < 0.1 && best == 0, "F=1 does not pace (%.3f s)", w);
}

int main(void)
{
	int rounds = 300, bad = 0;

	/* A lost wake-up would hang: end the test as a failure instead. */
	alarm(60);

	ok(pipar_threads_set(1) == 1, "one thread");
	ok(pipar_threads_set(0) == 1 && pipar_threads_set(1000) == PIPAR_MAX_THREADS,
	   "thread counts are clamped to 1..%d", PIPAR_MAX_THREADS);
	/* Grow and post at once, many times: a lost wake-up hangs here. */
	for (int r = 0; r < rounds; r++) {
		int t = 2 + r % 3;

		atomic_store(&calls, 0);
		pipar_threads_set(1);
		pipar_threads_set(t);
		for (int j = 0; j < 5; j++)
			pipar_parallel(count, NULL);
		if (atomic_load(&calls) != 5 * t)
			bad++;
	}
	ok(bad == 0, "%d rounds of growing the pool and posting at once: every job ran on every thread",
	   rounds);
	pipar_threads_set(3);
	memset(seen, 0, sizeof(seen));
	for (int j = 0; j < 100; j++)
		pipar_parallel(count, NULL);
	ok(atomic_load(&seen[0]) == 100 && atomic_load(&seen[1]) == 100 &&
		   atomic_load(&seen[2]) == 100,
	   "each of 3 threads ran each of 100 jobs once");
	{
		static struct cover c;
		int once = 1;

		for (int n = 0; n <= 1000; n += 37) {
			memset(&c, 0, sizeof(c));
			c.n = n;
			pipar_parallel(cover_run, &c);
			for (int i = 0; i < n; i++)
				if (atomic_load(&c.hits[i]) != 1)
					once = 0;
		}
		ok(once, "the static split covers every item exactly once");
	}
	pipar_threads_set(1);
	pace();
	return tap_done();
}
