/*
 * Whole files read, outputs written atomically.
 */
#define _POSIX_C_SOURCE 200809L
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

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
