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

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void pipar_rng_seed(struct pipar_rng *r, uint64_t seed, uint64_t stream)
{
	uint64_t x = seed ^ (stream * 0xd1b54a32d192ed03ULL);

	r->s[0] = splitmix64(&x);
	r->s[1] = splitmix64(&x);
	if (!r->s[0] && !r->s[1])
		r->s[0] = 1;
}

/* xoroshiro128+ */
uint64_t pipar_rng_next(struct pipar_rng *r)
{
	uint64_t s0 = r->s[0], s1 = r->s[1], res = s0 + s1;

	s1 ^= s0;
	r->s[0] = ((s0 << 24) | (s0 >> 40)) ^ s1 ^ (s1 << 16);
	r->s[1] = (s1 << 37) | (s1 >> 27);
	return res;
}

double pipar_rng_uniform(struct pipar_rng *r)
{
	return (double)(pipar_rng_next(r) >> 11) * 0x1.0p-53;
}

double pipar_rng_normal(struct pipar_rng *r)
{
	double u1, u2;

	do
		u1 = pipar_rng_uniform(r);
	while (u1 <= 0.0);
	u2 = pipar_rng_uniform(r);
	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint32_t pipar_rng_below(struct pipar_rng *r, uint32_t n)
{
	/* Lemire's multiply-shift; the tiny bias is irrelevant here. */
	return (uint32_t)(((pipar_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

double pipar_rng_gamma(struct pipar_rng *r, double shape)
{
	double d, c, x, v, u;

	if (shape < 1.0) {
		/* Boost: G(a) = G(a+1) * U^(1/a). */
		double g = pipar_rng_gamma(r, shape + 1.0);

		do
			u = pipar_rng_uniform(r);
		while (u <= 0.0);
		return g * pow(u, 1.0 / shape);
	}
	d = shape - 1.0 / 3.0;
	c = 1.0 / sqrt(9.0 * d);
	for (;;) {
		do {
			x = pipar_rng_normal(r);
			v = 1.0 + c * x;
		} while (v <= 0.0);
		v = v * v * v;
		u = pipar_rng_uniform(r);
		if (u < 1.0 - 0.0331 * x * x * x * x)
			return d * v;
		if (u > 0.0 && log(u) < 0.5 * x * x + d * (1.0 - v + log(v)))
			return d * v;
	}
}

void pipar_rng_shuffle(struct pipar_rng *r, int *a, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = pipar_rng_below(r, (uint32_t)i);
		int t = a[i - 1];

		a[i - 1] = a[j];
		a[j] = t;
	}
}

double pipar_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void pipar_json_put_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

int pipar_out_open(struct pipar_out *o, const char *path, char *err)
{
	int fd;

	struct stat st;

	o->path = path;
	o->tmp = NULL;
	o->f = NULL;
	o->direct = 0;
	if (strcmp(path, "-") == 0) {
		o->f = stdout;
		return 0;
	}
	/* A device or a pipe (/dev/null, /dev/stdout, a FIFO) is written as
	 * it is: a temporary file renamed over it would replace it. */
	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
		o->f = fopen(path, "w");
		if (!o->f)
			return pipar_errf(err, "cannot write '%s': %s", path, strerror(errno));
		o->direct = 1;
		return 0;
	}
	o->tmp = malloc(strlen(path) + 32);
	if (!o->tmp)
		return pipar_errf(err, "cannot write '%s': out of memory", path);
	sprintf(o->tmp, "%s.%ld.tmp", path, (long)getpid());
	fd = open(o->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	o->f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!o->f) {
		pipar_errf(err, "cannot write '%s': %s", o->tmp, strerror(errno));
		if (fd >= 0) {
			close(fd);
			unlink(o->tmp);
		}
		free(o->tmp);
		o->tmp = NULL;
		return -1;
	}
	return 0;
}

int pipar_out_close(struct pipar_out *o, int failed, char *err)
{
	int bad = failed;

	if (!o->f)
		return failed ? -1 : 0;
	if (o->direct) {
		if (fflush(o->f) != 0 || ferror(o->f))
			bad = 1;
		if (fclose(o->f) != 0)
			bad = 1;
		o->f = NULL;
		if (bad && !failed)
			return pipar_errf(err, "cannot write '%s': %s", o->path, strerror(errno));
		return bad ? -1 : 0;
	}
	if (!o->tmp) {                  /* standard output: flushed, not closed */
		if (fflush(o->f) != 0 || ferror(o->f))
			bad = 1;
		o->f = NULL;
		if (bad && !failed)
			return pipar_errf(err, "cannot write to standard output: %s",
					  strerror(errno));
		return bad ? -1 : 0;
	}
	if (fflush(o->f) != 0 || ferror(o->f) || fsync(fileno(o->f)) != 0)
		bad = 1;
	if (fclose(o->f) != 0)
		bad = 1;
	o->f = NULL;
	if (!bad && rename(o->tmp, o->path) != 0)
		bad = 1;
	if (bad) {
		if (!failed)
			pipar_errf(err, "cannot write '%s': %s", o->path, strerror(errno));
		unlink(o->tmp);
	}
	free(o->tmp);
	o->tmp = NULL;
	return bad ? -1 : 0;
}

int pipar_out_check(const char *path, char *err)
{
	struct stat st;
	char *tmp;
	int fd, e;

	if (strcmp(path, "-") == 0)
		return 0;
	if (!path[0])
		return pipar_errf(err, "cannot write '': empty file name");
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return pipar_errf(err, "cannot write '%s': it is a directory", path);
	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
		return access(path, W_OK) == 0 ? 0 : pipar_errf(err, "cannot write '%s': %s", path,
								  strerror(errno));
	tmp = malloc(strlen(path) + 32);
	if (!tmp)
		return pipar_errf(err, "cannot write '%s': out of memory", path);
	sprintf(tmp, "%s.%ld.tmp", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
	e = errno;
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	}
	free(tmp);
	if (fd < 0 && e != EEXIST)
		return pipar_errf(err, "cannot write '%s': %s", path, strerror(e));
	return 0;
}

double pipar_round(double v, int decimals)
{
	double q = pow(10, decimals), r;

	if (!isfinite(v) || fabs(v) >= 1e15)
		return v;
	r = nearbyint(v * q) / q;
	return r == 0 ? 0 : r;          /* no -0 */
}

char *pipar_read_file(const char *path, size_t max, size_t *len, char *err)
{
	int is_stdin = strcmp(path, "-") == 0;
	FILE *f = is_stdin ? stdin : fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, cap = 0;

	if (!f) {
		pipar_errf(err, "cannot open '%s': %s", path, strerror(errno));
		return NULL;
	}
	for (;;) {
		if (n + 1 >= cap) {
			size_t nc = cap ? 2 * cap : 65536;
			char *nb;

			if (cap > max + 1) {
				pipar_errf(err, "'%s': larger than %zu bytes", is_stdin ? "<stdin>" : path, max);
				goto fail;
			}
			nb = realloc(buf, nc);
			if (!nb) {
				pipar_errf(err, "out of memory reading '%s'", path);
				goto fail;
			}
			buf = nb;
			cap = nc;
		}
		size_t r = fread(buf + n, 1, cap - n - 1, f);

		n += r;
		if (r == 0)
			break;
	}
	if (ferror(f)) {
		pipar_errf(err, "cannot read '%s': %s", path, strerror(errno));
		goto fail;
	}
	if (n > max) {
		pipar_errf(err, "'%s': larger than %zu bytes", is_stdin ? "<stdin>" : path, max);
		goto fail;
	}
	if (!is_stdin)
		fclose(f);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
fail:
	if (!is_stdin)
		fclose(f);
	free(buf);
	return NULL;
}
