#define _POSIX_C_SOURCE 200809L
#include "pool.h"
#include "util.h"

#include <cblas.h>
#include <errno.h>
#include <pthread.h>
#include <time.h>

static struct {
	int n;                          /* threads, the caller included */
	pthread_t th[PIPAR_MAX_THREADS];
	pthread_mutex_t mu;
	pthread_cond_t go, done;
	void (*fn)(void *, int, int);
	void *arg;
	unsigned gen;                   /* bumped for every job */
	unsigned base;                  /* gen when the workers were started */
	int pending, quit;
} pool = {
	.n = 1,
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.go = PTHREAD_COND_INITIALIZER,
	.done = PTHREAD_COND_INITIALIZER,
};

static void *worker(void *p)
{
	int tid = (int)(long)p;
	unsigned seen;

	/* Not pool.gen: a job may have been posted before this thread got
	 * to run, and it must not be mistaken for one already done. */
	pthread_mutex_lock(&pool.mu);
	seen = pool.base;
	for (;;) {
		while (pool.gen == seen && !pool.quit)
			pthread_cond_wait(&pool.go, &pool.mu);
		if (pool.quit)
			break;
		seen = pool.gen;
		void (*fn)(void *, int, int) = pool.fn;
		void *arg = pool.arg;
		int n = pool.n;

		pthread_mutex_unlock(&pool.mu);
		fn(arg, tid, n);
		pthread_mutex_lock(&pool.mu);
		if (--pool.pending == 0)
			pthread_cond_signal(&pool.done);
	}
	pthread_mutex_unlock(&pool.mu);
	return NULL;
}

static void stop_workers(void)
{
	pthread_mutex_lock(&pool.mu);
	pool.quit = 1;
	pthread_cond_broadcast(&pool.go);
	pthread_mutex_unlock(&pool.mu);
	for (int i = 1; i < pool.n; i++)
		pthread_join(pool.th[i], NULL);
	pool.quit = 0;
	pool.n = 1;
}

int pipar_threads_set(int t)
{
	if (t < 1)
		t = 1;
	if (t > PIPAR_MAX_THREADS)
		t = PIPAR_MAX_THREADS;
	if (t != pool.n) {
		stop_workers();
		pool.base = pool.gen;
		for (int i = 1; i < t; i++) {
			if (pthread_create(&pool.th[i], NULL, worker, (void *)(long)i) != 0)
				break;
			pool.n = i + 1;
		}
	}
	/* BLAS threads only where ours are not running. */
	openblas_set_num_threads(1);
	return pool.n;
}

int pipar_threads(void)
{
	return pool.n;
}

double pipar_cpu_seconds(void)
{
	struct timespec ts;
	int t = pool.n;

	clock_gettime(t > 1 ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_THREAD_CPUTIME_ID, &ts);
	return ((double)ts.tv_sec + (double)ts.tv_nsec * 1e-9) / (t > 1 ? t : 1);
}

void pipar_pace(double factor, double t0, double c0, double *best)
{
	double c = pipar_cpu_seconds() - c0;

	if (factor <= 1)
		return;
	if (*best <= 0 || c < *best)
		*best = c;
	double d = factor * *best - (pipar_now() - t0);

	if (d > 0) {
		struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};

		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
}

void pipar_parallel(void (*fn)(void *arg, int tid, int nthreads), void *arg)
{
	if (pool.n == 1) {
		fn(arg, 0, 1);
		return;
	}
	pthread_mutex_lock(&pool.mu);
	pool.fn = fn;
	pool.arg = arg;
	pool.pending = pool.n - 1;
	pool.gen++;
	pthread_cond_broadcast(&pool.go);
	pthread_mutex_unlock(&pool.mu);
	fn(arg, 0, pool.n);
	pthread_mutex_lock(&pool.mu);
	while (pool.pending > 0)
		pthread_cond_wait(&pool.done, &pool.mu);
	pthread_mutex_unlock(&pool.mu);
}
