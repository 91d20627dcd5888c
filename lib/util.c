#define _POSIX_C_SOURCE 200809L
#include "util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <time.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

void pipar_assert_fail(const char *file, int line, const char *expr)
{
	fprintf(stderr, "pipar: internal error at %s:%d: assertion '%s' failed\n",
		file, line, expr);
	abort();
}

int pipar_errf(char *err, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return -1;
	va_start(ap, fmt);
	vsnprintf(err, PIPAR_ERRLEN, fmt, ap);
	va_end(ap);
	return -1;
}

void *pipar_alloc(size_t n)
{
	void *p = NULL;

	/* Round up so that the size is a multiple of the alignment, as
	 * aligned_alloc requires. */
	n = (n + 63) & ~(size_t)63;
	if (n == 0)
		n = 64;
	if (posix_memalign(&p, 64, n) != 0)
		return NULL;
	return p;
}

void *pipar_calloc(size_t n)
{
	void *p = pipar_alloc(n);

	if (p)
		memset(p, 0, n);
	return p;
}

char *pipar_text_escape(char *dst, size_t cap, const char *src, size_t n)
{
	size_t o = 0;

	if (!cap)
		return dst;
	for (size_t i = 0; i < n && src[i]; i++) {
		unsigned char ch = (unsigned char)src[i];

		if (ch < 0x20 || ch == 0x7f || ch == '\\') {
			if (o + 4 >= cap)
				break;
			snprintf(dst + o, 5, "\\x%02x", ch);
			o += 4;
		} else {
			if (o + 1 >= cap)
				break;
			dst[o++] = (char)ch;
		}
	}
	dst[o] = 0;
	return dst;
}

double pipar_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

