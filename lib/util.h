/*
 * util: the small pieces every module shares.
 *
 * Errors: library functions that can fail on bad input take a caller-owned
 * buffer `char err[PIPAR_ERRLEN]` and fill it with one lower-case line that
 * names what was wrong; they return 0 on success and -1 on failure.  Broken
 * invariants (bugs, not input) stop the program through PIPAR_ASSERT.
 *
 * Memory: pipar_alloc() returns 64-byte aligned memory (free with free()).
 *
 * Random numbers: a small, seedable generator (xoshiro128-style state mixed
 * with splitmix64) so that every run with the same seed draws the same
 * numbers on every machine, independent of libc.
 */
#ifndef PIPAR_UTIL_H
#define PIPAR_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PIPAR_ERRLEN 256

#define PIPAR_ASSERT(x)                                                      \
	do {                                                                 \
		if (!(x))                                                    \
			pipar_assert_fail(__FILE__, __LINE__, #x);           \
	} while (0)

void pipar_assert_fail(const char *file, int line, const char *expr);

/* Formats a message into err (which may be NULL); always returns -1. */
int pipar_errf(char *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* 64-byte aligned allocation of n bytes (n may be 0); NULL when out of
 * memory.  Release with free(). */
void *pipar_alloc(size_t n);
/* As pipar_alloc, zero-filled. */
void *pipar_calloc(size_t n);

/* Seeded generator.  The state is a plain value: copy it to fork a stream. */
struct pipar_rng {
	uint64_t s[2];
};

void pipar_rng_seed(struct pipar_rng *r, uint64_t seed, uint64_t stream);
uint64_t pipar_rng_next(struct pipar_rng *r);
/* Uniform in [0, 1). */
double pipar_rng_uniform(struct pipar_rng *r);
/* Standard normal (Box-Muller). */
double pipar_rng_normal(struct pipar_rng *r);
/* Uniform integer in [0, n). */
uint32_t pipar_rng_below(struct pipar_rng *r, uint32_t n);
/* Gamma(shape, 1) by Marsaglia and Tsang's method. */
double pipar_rng_gamma(struct pipar_rng *r, double shape);
/* Fisher-Yates shuffle of an int array. */
void pipar_rng_shuffle(struct pipar_rng *r, int *a, size_t n);

/* Reads the whole file at path ("-": standard input) into a NUL-terminated
 * malloc'd string of *len bytes (len may be NULL).  NULL with err naming
 * the path when it cannot be read or holds more than max bytes. */
char *pipar_read_file(const char *path, size_t max, size_t *len, char *err);

/* A file written atomically: pipar_out_open creates a temporary file
 * beside path (PATH.PID.tmp, so that rename is atomic) or, for path "-",
 * takes standard output (a path that exists and is not a regular file,
 * such as /dev/null or a FIFO, is written in place); write to o->f;
 * pipar_out_close flushes, syncs and
 * renames it over path, or removes it when failed is set or anything went
 * wrong, so that path holds either its old contents or all of the new.
 * Both return -1 with err naming path. */
struct pipar_out {
	FILE *f;
	char *tmp;              /* NULL for standard output or direct */
	const char *path;
	int direct;             /* path is not a regular file (a device, a
				 * pipe): written in place, not renamed over */
};
int pipar_out_open(struct pipar_out *o, const char *path, char *err);
int pipar_out_close(struct pipar_out *o, int failed, char *err);
/* Checks, before any work is done, that path can be written the way
 * pipar_out_open writes it: "-" can; otherwise path must not be a
 * directory and the temporary file beside it is created and removed.
 * -1 with err naming the path and why. */
int pipar_out_check(const char *path, char *err);

/* Writes s to f as a JSON string literal, quotes included. */
void pipar_json_put_string(FILE *f, const char *s);

/* v rounded to the given number of decimals, for JSON outputs that should
 * say 0.000002 or 0, not 1.887e-15 (non-finite v is returned as it is).
 * Times are written to the microsecond (6), byte counts as integers (0). */
double pipar_round(double v, int decimals);

/* Monotonic clock in seconds. */
double pipar_now(void);

#endif
