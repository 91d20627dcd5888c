/*
 * util: what every module shares: errors, assertions, aligned memory
 * and the clock.
 *
 * Errors: library functions that can fail on bad input take a caller-owned
 * buffer `char err[PIPAR_ERRLEN]` and fill it with one lower-case line that
 * names what was wrong; they return 0 on success and -1 on failure.  Broken
 * invariants (bugs, not input) stop the program through PIPAR_ASSERT.
 *
 * Memory: pipar_alloc() returns 64-byte aligned memory (free with free()).
 *
 * The seeded generator is rng.h; reading whole files and writing outputs
 * atomically are file.h; JSON text helpers are json.h.
 *
 * Who owns what: memory from pipar_alloc and pipar_calloc is the
 * caller's (free()); err is always the caller's buffer.
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

/* n bytes of src as one line of text in dst (cap bytes, always
 * terminated, cut where it would overflow): control bytes, DEL and
 * backslash escaped as \xNN, so that text a peer supplied cannot break or
 * forge a log line.  Returns dst. */
char *pipar_text_escape(char *dst, size_t cap, const char *src, size_t n);

/* Monotonic clock in seconds. */
double pipar_now(void);

#endif
