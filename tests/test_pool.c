/*
 * The thread pool: every thread runs every job exactly once, jobs posted
 * right after the pool grows are not lost, and the static split covers
 * each item once.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
#include <string.h>
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
	return tap_done();
}
