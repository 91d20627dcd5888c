/*
 * Checkpoints: .npz (zip of .npy) plus a JSON manifest, through libarchive.
 */
#define _POSIX_C_SOURCE 200809L
#include "checkpoint.h"

#include <archive.h>
#include <archive_entry.h>
#include <cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "file.h"

#define MANIFEST "pipar.json"
#define MANIFEST_MAX (16u << 20)
/* Zip has no dates before 1980: a fixed time keeps files reproducible. */
#define FIXED_MTIME 315532800

enum kind { KIND_PARAM, KIND_BUFFER, KIND_MOMENTUM, KIND_RUN };

/* One array of the checkpoint: where its floats live in the model. */
struct array {
	char name[96];
	enum kind kind;
	const struct pipar_param *p;
	float *data;                    /* into the unit's data or momentum;
					 * a run array's own */
	struct pipar_ckpt_array *run;   /* KIND_RUN: the info's array */
};

/* Whether name may name a run array. */
static int run_name_ok(const char *name)
{
	size_t n = strlen(name);

	return n >= 1 && n < sizeof(((struct pipar_ckpt_array *)0)->name) &&
	       strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

#define RUN_COUNT_MAX ((size_t)1 << 28)

/* The run's arrays of info appended to *arr (*narr of them), each
 * described by a one-dimensional parameter in *params (malloc'd, the
 * caller frees). */
static int add_run_arrays(const struct pipar_ckpt_info *info, struct array **arr, int *narr,
			  struct pipar_param **params, char *err)
{
	struct array *a;
	struct pipar_param *p;

	*params = NULL;
	if (!info->nrun)
		return 0;
	a = realloc(*arr, sizeof(**arr) * (size_t)(*narr + info->nrun));
	if (a)
		*arr = a;
	p = calloc((size_t)info->nrun, sizeof(*p));
	if (!a || !p) {
		free(p);
		return pipar_errf(err, "out of memory");
	}
	for (int i = 0; i < info->nrun; i++) {
		struct pipar_ckpt_array *ra = &info->arrays[i];
		struct array *x = &a[(*narr)++];

		p[i].ndim = 1;
		p[i].dims[0] = (int)ra->count;
		p[i].count = ra->count;
		memset(x, 0, sizeof(*x));
		snprintf(x->name, sizeof(x->name), "run/%s", ra->name);
		x->kind = KIND_RUN;
		x->p = &p[i];
		x->data = ra->data;
		x->run = ra;
	}
	*params = p;
	return 0;
}

/* Lists the arrays of m in file order: per unit, the parameters and
 * buffers in layer order, then (with momentum) the momentum of each
 * trainable one.  *out is malloc'd. */
static int list_arrays(const struct pipar_model *m, int with_momentum,
		       struct array **out, int *count, char *err)
{
	int n = 0, cap = 0;
	struct array *a = NULL;

	for (int u = 0; u < m->nunits; u++) {
		const struct pipar_unit *un = &m->units[u];
		int start = n;

		for (int i = 0; i < un->nlayers; i++) {
			const struct pipar_layer *l = m->layers[un->first_layer + i];

			for (int j = 0; j < l->nparams; j++) {
				const struct pipar_param *p = &l->params[j];
				int dup = 0;

				/* A role seen twice in the unit gets the layer. */
				for (int i2 = 0; i2 < un->nlayers; i2++) {
					const struct pipar_layer *l2 = m->layers[un->first_layer + i2];

					for (int j2 = 0; j2 < l2->nparams; j2++)
						if ((i2 != i || j2 != j) &&
						    strcmp(l2->params[j2].role, p->role) == 0)
							dup = 1;
				}
				for (int k = 0; k < 1 + (with_momentum && p->trainable); k++) {
					struct array *x;

					if (n == cap) {
						int nc = cap ? 2 * cap : 64;
						struct array *na = realloc(a, sizeof(*a) * (size_t)nc);

						if (!na) {
							free(a);
							return pipar_errf(err, "out of memory");
						}
						a = na;
						cap = nc;
					}
					x = &a[n++];
					x->p = p;
					x->kind = k ? KIND_MOMENTUM : p->trainable ? KIND_PARAM : KIND_BUFFER;
					x->data = k ? un->mom + (p->data - un->data) : p->data;
					if (dup)
						snprintf(x->name, sizeof(x->name), "u%02d.l%02d.%s%s",
							 m->first_unit + u + 1, i + 1, p->role,
							 k ? ".momentum" : "");
					else
						snprintf(x->name, sizeof(x->name), "u%02d.%s%s",
							 m->first_unit + u + 1, p->role,
							 k ? ".momentum" : "");
				}
			}
		}
		/* Momentum after the unit's own arrays, as the header says.  A
		 * unit without parameters (a pool alone) has nothing to
		 * order, and a may still be NULL. */
		if (with_momentum && n > start) {
			struct array *tmp = malloc(sizeof(*a) * (size_t)(n - start));
			int w = start;

			if (!tmp) {
				free(a);
				return pipar_errf(err, "out of memory");
			}
			memcpy(tmp, a + start, sizeof(*a) * (size_t)(n - start));
			for (int pass = 0; pass < 2; pass++)
				for (int i = 0; i < n - start; i++)
					if ((tmp[i].kind == KIND_MOMENTUM) == pass)
						a[w++] = tmp[i];
			free(tmp);
		}
	}
	*out = a;
	*count = n;
	return 0;
}

/* ---------------------------------------------------------------- npy */

/* Writes the .npy header for p's shape into buf (at least 256 bytes);
 * returns its length, a multiple of 64. */
static size_t npy_header(const struct pipar_param *p, char *buf)
{
	char dict[200], shape[96];
	int o = 0;
	size_t len;

	o += snprintf(shape + o, sizeof(shape) - (size_t)o, "(");
	for (int i = 0; i < p->ndim; i++)
		o += snprintf(shape + o, sizeof(shape) - (size_t)o, "%d%s", p->dims[i],
			      p->ndim == 1 ? "," : i + 1 < p->ndim ? ", " : "");
	snprintf(shape + o, sizeof(shape) - (size_t)o, ")");
	snprintf(dict, sizeof(dict),
		 "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }", shape);
	len = 10 + strlen(dict) + 1;
	len = (len + 63) & ~(size_t)63;
	memcpy(buf, "\x93NUMPY\x01\x00", 8);
	buf[8] = (char)((len - 10) & 0xff);
	buf[9] = (char)((len - 10) >> 8);
	memset(buf + 10, ' ', len - 10);
	memcpy(buf + 10, dict, strlen(dict));
	buf[len - 1] = '\n';
	return len;
}

static const char *skip_ws(const char *s, const char *end)
{
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	return s;
}

/* Parses a .npy v1.0 header at buf (size bytes): it must describe a
 * little-endian float32 C-order array of the given shape.  Returns the
 * offset of the data, or 0 with err describing the fault. */
static size_t npy_parse(const unsigned char *buf, size_t size,
			const struct pipar_param *p, const char *what, char *err)
{
	size_t hlen;
	const char *s, *end;
	int seen_descr = 0, seen_order = 0, seen_shape = 0;

	if (size < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
		return pipar_errf(err, "%s: not a .npy array", what), 0;
	if (buf[6] != 1 || buf[7] != 0)
		return pipar_errf(err, "%s: .npy version %d.%d (expected 1.0)", what,
				  buf[6], buf[7]), 0;
	hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
	if (10 + hlen > size)
		return pipar_errf(err, "%s: truncated .npy header", what), 0;
	s = (const char *)buf + 10;
	end = s + hlen;
	while (end > s && (end[-1] == '\n' || end[-1] == ' '))
		end--;
	s = skip_ws(s, end);
	if (s >= end || *s++ != '{')
		return pipar_errf(err, "%s: bad .npy header", what), 0;
	for (;;) {
		char key[16];
		size_t k = 0;

		s = skip_ws(s, end);
		if (s < end && *s == '}')
			break;
		if (s >= end || *s++ != '\'')
			return pipar_errf(err, "%s: bad .npy header", what), 0;
		while (s < end && *s != '\'' && k + 1 < sizeof(key))
			key[k++] = *s++;
		key[k] = '\0';
		if (s >= end || *s++ != '\'')
			return pipar_errf(err, "%s: bad .npy header", what), 0;
		s = skip_ws(s, end);
		if (s >= end || *s++ != ':')
			return pipar_errf(err, "%s: bad .npy header", what), 0;
		s = skip_ws(s, end);
		if (strcmp(key, "descr") == 0 && !seen_descr) {
			if ((size_t)(end - s) < 5 || memcmp(s, "'<f4'", 5) != 0)
				return pipar_errf(err, "%s: dtype is not little-endian float32 ('<f4')",
						  what), 0;
			s += 5;
			seen_descr = 1;
		} else if (strcmp(key, "fortran_order") == 0 && !seen_order) {
			if ((size_t)(end - s) < 5 || memcmp(s, "False", 5) != 0)
				return pipar_errf(err, "%s: not in C order", what), 0;
			s += 5;
			seen_order = 1;
		} else if (strcmp(key, "shape") == 0 && !seen_shape) {
			long dims[8];
			int nd = 0;

			if (s >= end || *s++ != '(')
				return pipar_errf(err, "%s: bad shape in .npy header", what), 0;
			for (;;) {
				s = skip_ws(s, end);
				if (s < end && *s == ')') {
					s++;
					break;
				}
				if (s >= end || *s < '0' || *s > '9' || nd == 8)
					return pipar_errf(err, "%s: bad shape in .npy header", what), 0;
				long v = 0;
				while (s < end && *s >= '0' && *s <= '9' && v < (1L << 40))
					v = v * 10 + (*s++ - '0');
				dims[nd++] = v;
				s = skip_ws(s, end);
				if (s < end && *s == ',')
					s++;
			}
			int same = nd == p->ndim;
			for (int i = 0; same && i < nd; i++)
				same = dims[i] == p->dims[i];
			if (!same) {
				char want[96], got[96];
				int o = 0, g = 0;

				for (int i = 0; i < p->ndim; i++)
					o += snprintf(want + o, sizeof(want) - (size_t)o, "%s%d",
						      i ? "x" : "", p->dims[i]);
				for (int i = 0; i < nd && g < 80; i++)
					g += snprintf(got + g, sizeof(got) - (size_t)g, "%s%ld",
						      i ? "x" : "", dims[i]);
				if (!nd)
					snprintf(got, sizeof(got), "scalar");
				return pipar_errf(err, "%s: shape %s, the model needs %s", what,
						  got, want), 0;
			}
			seen_shape = 1;
		} else {
			return pipar_errf(err, "%s: unexpected key '%s' in .npy header", what,
					  key), 0;
		}
		s = skip_ws(s, end);
		if (s < end && *s == ',')
			s++;
	}
	if (!seen_descr || !seen_order || !seen_shape)
		return pipar_errf(err, "%s: .npy header lacks %s", what,
				  !seen_descr ? "'descr'" : !seen_order ? "'fortran_order'" : "'shape'"), 0;
	return 10 + hlen;
}

static void to_le(float *dst, const float *src, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	for (size_t i = 0; i < n; i++) {
		uint32_t v;

		memcpy(&v, &src[i], 4);
		v = __builtin_bswap32(v);
		memcpy(&dst[i], &v, 4);
	}
#else
	memcpy(dst, src, sizeof(float) * n);
#endif
}

/* ---------------------------------------------------------------- manifest */

static cJSON *manifest_new(const struct pipar_model *m,
			   const struct pipar_ckpt_info *info,
			   const struct array *arr, int narr, char *err)
{
	cJSON *root = cJSON_CreateObject(), *spec, *o, *list;
	char rng[40];

	if (!root)
		return NULL;
	spec = cJSON_Parse(m->spec);
	cJSON_AddStringToObject(root, "format", "pipar-checkpoint/1");
	cJSON_AddItemToObject(root, "model", spec ? spec : cJSON_CreateNull());
	o = cJSON_AddArrayToObject(root, "input");
	cJSON_AddItemToArray(o, cJSON_CreateNumber(m->in.c));
	cJSON_AddItemToArray(o, cJSON_CreateNumber(m->in.h));
	cJSON_AddItemToArray(o, cJSON_CreateNumber(m->in.w));
	cJSON_AddNumberToObject(root, "classes", m->classes);
	o = cJSON_AddArrayToObject(root, "units");
	cJSON_AddItemToArray(o, cJSON_CreateNumber(m->first_unit + 1));
	cJSON_AddItemToArray(o, cJSON_CreateNumber(m->first_unit + m->nunits));
	o = cJSON_AddObjectToObject(root, "normalisation");
	{
		cJSON *mean = cJSON_AddArrayToObject(o, "mean");
		cJSON *sd = cJSON_AddArrayToObject(o, "std");

		for (int c = 0; c < info->norm.channels; c++) {
			cJSON_AddItemToArray(mean, cJSON_CreateNumber(info->norm.mean[c]));
			cJSON_AddItemToArray(sd, cJSON_CreateNumber(info->norm.std[c]));
		}
	}
	cJSON_AddNumberToObject(root, "epoch", info->epoch);
	if (info->training) {
		cJSON *t = cJSON_Parse(info->training);

		cJSON_AddItemToObject(root, "training", t ? t : cJSON_CreateNull());
	} else {
		cJSON_AddNullToObject(root, "training");
	}
	snprintf(rng, sizeof(rng), "%016" PRIx64 "%016" PRIx64, info->rng[0], info->rng[1]);
	cJSON_AddStringToObject(root, "rng", rng);
	list = cJSON_AddArrayToObject(root, "arrays");
	for (int i = 0; i < narr && arr[i].kind != KIND_RUN; i++) {
		cJSON *a = cJSON_CreateObject(), *shape;

		cJSON_AddStringToObject(a, "name", arr[i].name);
		cJSON_AddStringToObject(a, "kind", arr[i].kind == KIND_PARAM ? "parameter" :
						   arr[i].kind == KIND_BUFFER ? "buffer" : "momentum");
		shape = cJSON_AddArrayToObject(a, "shape");
		for (int d = 0; d < arr[i].p->ndim; d++)
			cJSON_AddItemToArray(shape, cJSON_CreateNumber(arr[i].p->dims[d]));
		cJSON_AddItemToArray(list, a);
	}
	if (info->run) {
		cJSON *run = cJSON_Parse(info->run);

		if (!cJSON_IsObject(run)) {
			cJSON_Delete(run);
			cJSON_Delete(root);
			pipar_errf(err, "the run to resume is not a JSON object");
			return NULL;
		}
		cJSON_AddItemToObject(root, "run", run);
		list = cJSON_AddArrayToObject(root, "run_arrays");
		for (int i = 0; i < info->nrun; i++) {
			cJSON *a = cJSON_CreateObject();

			cJSON_AddStringToObject(a, "name", info->arrays[i].name);
			cJSON_AddItemToArray(cJSON_AddArrayToObject(a, "shape"),
					     cJSON_CreateNumber((double)info->arrays[i].count));
			cJSON_AddItemToArray(list, a);
		}
	}
	if (!spec)
		pipar_errf(err, "model spec is not valid JSON");
	return root;
}

/* ---------------------------------------------------------------- save */

static int write_entry(struct archive *a, const char *name, const void *head,
		       size_t hlen, const void *body, size_t blen, char *err,
		       const char *path)
{
	struct archive_entry *e = archive_entry_new();
	int r = 0;

	if (!e)
		return pipar_errf(err, "out of memory");
	archive_entry_set_pathname(e, name);
	archive_entry_set_size(e, (la_int64_t)(hlen + blen));
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_mtime(e, FIXED_MTIME, 0);
	if (archive_write_header(a, e) != ARCHIVE_OK)
		r = -1;
	for (int part = 0; r == 0 && part < 2; part++) {
		const char *p = part ? body : head;
		size_t left = part ? blen : hlen;

		while (left > 0) {
			size_t chunk = left > (64u << 20) ? (64u << 20) : left;
			la_ssize_t w = archive_write_data(a, p, chunk);

			if (w <= 0) {
				r = -1;
				break;
			}
			p += w;
			left -= (size_t)w;
		}
	}
	archive_entry_free(e);
	if (r < 0)
		pipar_errf(err, "cannot write '%s': %s", path,
			   archive_error_string(a) ? archive_error_string(a) : strerror(errno));
	return r;
}

/* Where a checkpoint goes: standard output as it is; a device or a pipe
 * in place (renaming a file over /dev/null would replace it); otherwise a
 * temporary file beside path, named in tmp, so that rename is atomic.
 * Returns the descriptor, -1 with err. */
static int open_target(const char *path, int to_stdout, char *tmp, int *in_place, char *err)
{
	const char *slash = strrchr(path, '/');
	int dl = slash ? (int)(slash - path + 1) : 0, fd;
	struct stat st;
	mode_t mask;

	*in_place = 0;
	if (to_stdout)
		return STDOUT_FILENO;
	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
		if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0)
			return pipar_errf(err, "cannot write '%s': %s", path, strerror(errno));
		*in_place = 1;
		return fd;
	}
	sprintf(tmp, "%.*s.%s.tmp.XXXXXX", dl, path, slash ? slash + 1 : path);
	if (dl)
		memcpy(tmp, path, (size_t)dl);
	if ((fd = mkstemp(tmp)) < 0)
		return pipar_errf(err, "cannot create a temporary file beside '%s': %s", path,
				  strerror(errno));
	/* mkstemp makes the file private; give it the usual mode. */
	mask = umask(0);
	umask(mask);
	fchmod(fd, 0666 & ~mask);
	return fd;
}

/* The zip archive on fd: the manifest text, then every array as .npy. */
static int write_archive(int fd, const char *path, const char *text, const struct array *arr,
			 int narr, char *err)
{
	struct archive *a = archive_write_new();
	float *buf = NULL;
	size_t bufn = 0;
	int r = -1;

	if (!a || archive_write_set_format_zip(a) != ARCHIVE_OK ||
	    archive_write_set_options(a, "zip:compression=store") != ARCHIVE_OK ||
	    archive_write_open_fd(a, fd) != ARCHIVE_OK) {
		pipar_errf(err, "cannot write '%s': %s", path,
			   a && archive_error_string(a) ? archive_error_string(a) : "out of memory");
		goto out;
	}
	if (write_entry(a, MANIFEST, text, strlen(text), "", 0, err, path) < 0)
		goto out;
	for (int i = 0; i < narr; i++) {
		char head[256], entry[sizeof(arr[i].name) + 4];
		size_t hl = npy_header(arr[i].p, head), n = arr[i].p->count;

		if (n > bufn) {
			free(buf);
			buf = malloc(sizeof(float) * n);
			bufn = buf ? n : 0;
			if (!buf) {
				pipar_errf(err, "out of memory");
				goto out;
			}
		}
		to_le(buf, arr[i].data, n);
		snprintf(entry, sizeof(entry), "%s.npy", arr[i].name);
		if (write_entry(a, entry, head, hl, buf, sizeof(float) * n, err, path) < 0)
			goto out;
	}
	if (archive_write_close(a) != ARCHIVE_OK) {
		pipar_errf(err, "cannot write '%s': %s", path, archive_error_string(a));
		goto out;
	}
	r = 0;
out:
	if (a)
		archive_write_free(a);
	free(buf);
	return r;
}

/* A temporary file written whole made durable and renamed over path,
 * then the rename itself made durable; on failure it is removed. */
static int commit_tmp(int fd, const char *tmp, const char *path, char *dircopy, char *err)
{
	int dfd;

	if (fsync(fd) < 0) {
		pipar_errf(err, "cannot write '%s': fsync: %s", path, strerror(errno));
		close(fd);
		unlink(tmp);
		return -1;
	}
	if (close(fd) < 0) {
		pipar_errf(err, "cannot write '%s': %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	if (rename(tmp, path) < 0) {
		pipar_errf(err, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	if ((dfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY)) >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

int pipar_checkpoint_save(const char *path, const struct pipar_model *m,
			  const struct pipar_ckpt_info *info, int with_momentum,
			  char *err)
{
	struct array *arr = NULL;
	int narr = 0, fd = -1, r = -1, in_place = 0;
	int to_stdout = strcmp(path, "-") == 0;
	cJSON *man = NULL;
	char *text = NULL, *tmp = NULL, *dircopy = NULL;
	struct pipar_param *rp = NULL;

	for (int i = 0; info->run && i < info->nrun; i++)
		if (!run_name_ok(info->arrays[i].name) || !info->arrays[i].count ||
		    info->arrays[i].count > RUN_COUNT_MAX || info->nrun > PIPAR_CKPT_RUN_ARRAYS)
			return pipar_errf(err, "cannot write '%s': run array %d is malformed", path, i + 1);
	if (list_arrays(m, with_momentum, &arr, &narr, err) < 0)
		return -1;
	if (info->run && add_run_arrays(info, &arr, &narr, &rp, err) < 0) {
		free(arr);
		return -1;
	}
	if (to_stdout)
		path = "standard output";
	man = manifest_new(m, info, arr, narr, err);
	text = man ? cJSON_Print(man) : NULL;
	tmp = malloc(strlen(path) + 32);
	dircopy = strdup(path);
	if (!text || !tmp || !dircopy) {
		if (man)
			pipar_errf(err, "out of memory");
		goto out;
	}
	if ((fd = open_target(path, to_stdout, tmp, &in_place, err)) < 0)
		goto out;
	if (write_archive(fd, path, text, arr, narr, err) < 0) {
		if (!to_stdout)
			close(fd);
		if (!to_stdout && !in_place)
			unlink(tmp);
		goto out;
	}
	if (to_stdout)
		r = 0;
	else if (in_place)
		r = close(fd) == 0 ? 0 : pipar_errf(err, "cannot write '%s': %s", path, strerror(errno));
	else
		r = commit_tmp(fd, tmp, path, dircopy, err);
out:
	free(arr);
	free(rp);
	free(text);
	free(tmp);
	free(dircopy);
	cJSON_Delete(man);
	return r;
}

/* ---------------------------------------------------------------- load */

void pipar_checkpoint_info_free(struct pipar_ckpt_info *info)
{
	if (!info)
		return;
	free(info->training);
	info->training = NULL;
	free(info->run);
	info->run = NULL;
	for (int i = 0; i < info->nrun && info->arrays; i++)
		free(info->arrays[i].data);
	free(info->arrays);
	info->arrays = NULL;
	info->nrun = 0;
}

/* Reads the current entry fully, refusing more than max bytes. */
static int read_entry(struct archive *a, unsigned char **out, size_t *len,
		      size_t max, const char *what, const char *name, char *err)
{
	size_t cap = 0, n = 0;
	unsigned char *buf = NULL;

	for (;;) {
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 4096;
			unsigned char *nb;

			if (nc > max + 1)
				nc = max + 1;
			if (nc <= cap) {
				free(buf);
				return pipar_errf(err, "'%s': %s is larger than expected",
						  name, what);
			}
			nb = realloc(buf, nc);
			if (!nb) {
				free(buf);
				return pipar_errf(err, "out of memory");
			}
			buf = nb;
			cap = nc;
		}
		la_ssize_t r = archive_read_data(a, buf + n, cap - n);

		if (r < 0) {
			free(buf);
			return pipar_errf(err, "'%s': %s: %s", name, what,
					  archive_error_string(a) ? archive_error_string(a) : "read error");
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* The integers of array field key in root: exactly n of them, each in
 * [lo, hi]. */
static int manifest_ints(const cJSON *root, const char *key, int n, long lo, long hi,
			 long *out, const struct pipar_json_ctx *c)
{
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, key);
	char path[32], why[40];
	double d;

	if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n) {
		snprintf(why, sizeof(why), "%s an array of %d integers",
			 a ? "not" : "missing:", n);
		return pipar_json_bad(c, key, why);
	}
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s[%d]", key, i);
		if (pipar_json_item(cJSON_GetArrayItem(a, i), path, lo, hi, 1, &d, c) < 0)
			return -1;
		out[i] = (long)d;
	}
	return 0;
}

/* The normalisation: a mean and a std per input channel, as floats
 * (std positive). */
static int manifest_norm(const cJSON *root, int channels, struct pipar_norm *norm,
			 const struct pipar_json_ctx *c)
{
	const cJSON *nj = cJSON_GetObjectItemCaseSensitive(root, "normalisation");
	const cJSON *mean = cJSON_GetObjectItemCaseSensitive(nj, "mean");
	const cJSON *sd = cJSON_GetObjectItemCaseSensitive(nj, "std");
	char path[48];
	double a, b;

	if (!cJSON_IsObject(nj) || cJSON_GetArraySize(nj) != 2 || !cJSON_IsArray(mean) ||
	    !cJSON_IsArray(sd) || cJSON_GetArraySize(mean) != channels ||
	    cJSON_GetArraySize(sd) != channels || channels > PIPAR_DATA_MAXCH)
		return pipar_json_bad(c, "normalisation",
				      "not {\"mean\": [...], \"std\": [...]} with a number per input channel");
	memset(norm, 0, sizeof(*norm));
	norm->channels = channels;
	for (int i = 0; i < channels; i++) {
		snprintf(path, sizeof(path), "normalisation.mean[%d]", i);
		if (pipar_json_item(cJSON_GetArrayItem(mean, i), path, -PIPAR_NORM_MAX, PIPAR_NORM_MAX,
				    0, &a, c) < 0)
			return -1;
		snprintf(path, sizeof(path), "normalisation.std[%d]", i);
		if (pipar_json_item(cJSON_GetArrayItem(sd, i), path, PIPAR_NORM_MIN, PIPAR_NORM_MAX,
				    0, &b, c) < 0)
			return -1;
		norm->mean[i] = (float)a;
		norm->std[i] = (float)b;
	}
	return 0;
}

/* The rng state: 32 lower-case hex digits, two 64-bit words. */
static int manifest_rng(const cJSON *root, uint64_t rng[2], const struct pipar_json_ctx *c)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "rng");
	char hi[17], lo[17];

	if (!cJSON_IsString(v) || strlen(v->valuestring) != 32 ||
	    strspn(v->valuestring, "0123456789abcdef") != 32)
		return pipar_json_bad(c, "rng", v ? "not 32 lower-case hex digits" : "missing");
	memcpy(hi, v->valuestring, 16);
	hi[16] = 0;
	memcpy(lo, v->valuestring + 16, 16);
	lo[16] = 0;
	rng[0] = strtoull(hi, NULL, 16);
	rng[1] = strtoull(lo, NULL, 16);
	return 0;
}

/* The run to resume, when the manifest has one, into info: the object as
 * text and its arrays (names and sizes; their data comes with the
 * entries). */
static int manifest_run(const cJSON *root, struct pipar_ckpt_info *info,
			const struct pipar_json_ctx *c)
{
	const cJSON *run = cJSON_GetObjectItemCaseSensitive(root, "run");
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "run_arrays");
	int n = cJSON_GetArraySize(list), i = 0;

	if (!run && !list)
		return 0;
	if (!cJSON_IsObject(run))
		return pipar_json_bad(c, "run", run ? "not an object" : "missing beside run_arrays");
	if (!cJSON_IsArray(list) || n > PIPAR_CKPT_RUN_ARRAYS)
		return pipar_json_bad(c, "run_arrays", list ? "not an array of at most 4096 entries"
							    : "missing beside run");
	if (!(info->run = cJSON_PrintUnformatted(run)) ||
	    (n && !(info->arrays = calloc((size_t)n, sizeof(*info->arrays)))))
		return pipar_json_bad(c, "run", "out of memory");
	for (const cJSON *x = list->child; x; x = x->next, i++) {
		const cJSON *nm = cJSON_GetObjectItemCaseSensitive(x, "name");
		const cJSON *shape = cJSON_GetObjectItemCaseSensitive(x, "shape");
		char path[40];
		double d;

		snprintf(path, sizeof(path), "run_arrays[%d]", i);
		if (!cJSON_IsObject(x) || cJSON_GetArraySize(x) != 2 || !cJSON_IsString(nm) ||
		    !run_name_ok(nm->valuestring) || !cJSON_IsArray(shape) ||
		    cJSON_GetArraySize(shape) != 1)
			return pipar_json_bad(c, path, "not {\"name\": NAME ([a-z0-9._-]), \"shape\": [COUNT]}");
		for (int j = 0; j < i; j++)
			if (!strcmp(info->arrays[j].name, nm->valuestring))
				return pipar_json_bad(c, path, "a name listed twice");
		snprintf(path, sizeof(path), "run_arrays[%d].shape[0]", i);
		if (pipar_json_item(shape->child, path, 1, (double)RUN_COUNT_MAX, 1, &d, c) < 0)
			return -1;
		snprintf(info->arrays[i].name, sizeof(info->arrays[i].name), "%s", nm->valuestring);
		info->arrays[i].count = (size_t)d;
		info->nrun = i + 1;
	}
	return 0;
}

/* Checks the manifest and builds the model it names. */
static int manifest_read(const char *text, const char *name,
			 struct pipar_model **out, struct pipar_ckpt_info *info,
			 cJSON **arrays, char *err)
{
	static const char *const known[] = {
		"format", "model", "input", "classes", "units", "normalisation",
		"epoch", "training", "rng", "arrays", "run", "run_arrays", NULL,
	};
	const struct pipar_json_ctx c = {name, err, MANIFEST};
	cJSON *root = pipar_json_parse(text, name, MANIFEST, "pipar-checkpoint/1", 0, err);
	const cJSON *f;
	const char *unknown;
	char lerr[PIPAR_ERRLEN], *spec = NULL;
	long in[3], classes, units[2], epoch;
	int r = -1;

	if (!root)
		return -1;
	if ((unknown = pipar_json_unknown_field(root, known))) {
		pipar_errf(err, "'%s': " MANIFEST ": unknown field '%s'", name, unknown);
		goto out;
	}
	if (manifest_ints(root, "input", 3, 1, 65536, in, &c) ||
	    pipar_json_int(root, "classes", "classes", 1, 1 << 20, &classes, &c) ||
	    manifest_ints(root, "units", 2, 1, 4096, units, &c) ||
	    (units[1] < units[0] && pipar_json_bad(&c, "units", "the last unit is before the first")) ||
	    pipar_json_int(root, "epoch", "epoch", 0, 1L << 30, &epoch, &c) ||
	    manifest_norm(root, (int)in[0], &info->norm, &c) || manifest_rng(root, info->rng, &c))
		goto out;
	f = cJSON_GetObjectItemCaseSensitive(root, "training");
	if (!f || (!cJSON_IsNull(f) && !cJSON_IsObject(f))) {
		pipar_json_bad(&c, "training", f ? "not an object or null" : "missing");
		goto out;
	}
	info->training = cJSON_IsObject(f) ? cJSON_PrintUnformatted(f) : NULL;
	if (manifest_run(root, info, &c) < 0)
		goto out;
	*arrays = cJSON_DetachItemFromObjectCaseSensitive(root, "arrays");
	if (!cJSON_IsArray(*arrays)) {
		pipar_json_bad(&c, "arrays", *arrays ? "not an array" : "missing");
		goto out;
	}
	f = cJSON_GetObjectItemCaseSensitive(root, "model");
	if (!cJSON_IsObject(f) || !(spec = cJSON_PrintUnformatted(f))) {
		pipar_json_bad(&c, "model", f ? "not an object" : "missing");
		goto out;
	}
	info->epoch = (int)epoch;
	if (pipar_model_new(spec, (struct pipar_shape){(int)in[0], (int)in[1], (int)in[2]},
			    (int)classes, (int)units[0] - 1, (int)units[1] - 1, 0, out, lerr) < 0) {
		pipar_errf(err, "'%s': %s", name, lerr);
		goto out;
	}
	r = 0;
out:
	if (r < 0) {
		pipar_checkpoint_info_free(info);
		cJSON_Delete(*arrays);
		*arrays = NULL;
	}
	free(spec);
	cJSON_Delete(root);
	return r;
}

/* The first entry, the manifest: read, checked and the model built from
 * it (*m), with the arrays it lists (*listed). */
static int load_manifest(struct archive *a, const char *name, struct pipar_model **m,
			 struct pipar_ckpt_info *info, cJSON **listed, char *err)
{
	struct archive_entry *e;
	unsigned char *text;
	size_t len;
	char *z;
	int r = archive_read_next_header(a, &e);

	if (r != ARCHIVE_OK)
		return pipar_errf(err, "'%s': %s", name,
				  r == ARCHIVE_EOF ? "empty archive" :
				  archive_error_string(a) ? archive_error_string(a) : "not a checkpoint");
	if (strcmp(archive_entry_pathname(e) ? archive_entry_pathname(e) : "", MANIFEST) != 0)
		return pipar_errf(err, "'%s': the first entry is not " MANIFEST
				  " (not a pipar checkpoint)", name);
	if (read_entry(a, &text, &len, MANIFEST_MAX, MANIFEST, name, err) < 0)
		return -1;
	if (!(z = realloc(text, len + 1))) {
		free(text);
		return pipar_errf(err, "out of memory");
	}
	z[len] = '\0';
	if (strlen(z) != len) {
		free(z);
		return pipar_errf(err, "'%s': " MANIFEST " contains a NUL byte", name);
	}
	r = manifest_read(z, name, m, info, listed, err);
	free(z);
	return r;
}

/* The arrays the manifest lists are the model's, in its order. */
static int check_listed(const cJSON *listed, const struct array *arr, int narr, const char *name,
			char *err)
{
	if (cJSON_GetArraySize(listed) != narr)
		return pipar_errf(err, "'%s': " MANIFEST " lists %d arrays, the model has %d", name,
				  cJSON_GetArraySize(listed), narr);
	for (int i = 0; i < narr; i++) {
		const cJSON *x = cJSON_GetArrayItem(listed, i);
		const cJSON *nm = cJSON_GetObjectItemCaseSensitive(x, "name");

		if (!cJSON_IsString(nm) || strcmp(nm->valuestring, arr[i].name) != 0)
			return pipar_errf(err, "'%s': " MANIFEST " array %d is '%.60s', the model expects '%s'",
					  name, i + 1, cJSON_IsString(nm) ? nm->valuestring : "?",
					  arr[i].name);
	}
	return 0;
}

/* The entry named p, array i of arr: its .npy header checked against the
 * array's shape, its values loaded, each a usable number. */
static int load_array(struct archive *a, const char *p, struct array *ar, const char *name,
		      char *err)
{
	size_t len, off, want = sizeof(float) * ar->p->count;
	char what[PIPAR_ERRLEN];
	unsigned char *buf;

	if (read_entry(a, &buf, &len, want + 65536 + 10, p, name, err) < 0)
		return -1;
	snprintf(what, sizeof(what), "'%s': array '%s'", name, ar->name);
	off = npy_parse(buf, len, ar->p, what, err);
	if (off && ar->kind == KIND_RUN && len - off == want) {
		/* A run's array is the info's, made as its entry comes. */
		if (!(ar->run->data = malloc(want))) {
			free(buf);
			return pipar_errf(err, "out of memory");
		}
		ar->data = ar->run->data;
	}
	if (off == 0) {
		free(buf);
		return -1;
	}
	if (len - off != want) {
		free(buf);
		return pipar_errf(err, "'%s': array '%s' holds %zu bytes of data, its shape needs %zu",
				  name, ar->name, len - off, want);
	}
	to_le(ar->data, (const float *)(const void *)(buf + off), ar->p->count);
	free(buf);
	for (size_t k = 0; k < ar->p->count; k++)
		if (!(ar->data[k] == ar->data[k]) || ar->data[k] > 3.4e38f || ar->data[k] < -3.4e38f)
			return pipar_errf(err, "'%s': array '%s' holds a non-finite value at %zu", name,
					  ar->name, k);
	return 0;
}

/* The index of the array whose entry is p (NAME.npy), narr when none. */
static int entry_index(const char *p, const struct array *arr, int narr)
{
	size_t pl = strlen(p);
	int i;

	for (i = 0; i < narr; i++)
		if (pl == strlen(arr[i].name) + 4 && strncmp(arr[i].name, p, pl - 4) == 0 &&
		    strcmp(p + pl - 4, ".npy") == 0)
			break;
	return i;
}

static int load_archive(struct archive *a, const char *name,
			struct pipar_model **out, struct pipar_ckpt_info *info,
			char *err)
{
	struct archive_entry *e;
	struct pipar_model *m = NULL;
	struct array *arr = NULL;
	cJSON *listed = NULL;
	char *seen = NULL;
	struct pipar_param *rp = NULL;
	int narr = 0, found = 0, momentum = 0, r;

	memset(info, 0, sizeof(*info));
	if (load_manifest(a, name, &m, info, &listed, err) < 0)
		return -1;
	/* Momentum is present when the manifest lists it. */
	for (const cJSON *x = listed->child; x; x = x->next) {
		const cJSON *k = cJSON_GetObjectItemCaseSensitive(x, "kind");

		if (cJSON_IsString(k) && strcmp(k->valuestring, "momentum") == 0)
			momentum = 1;
	}
	if (list_arrays(m, momentum, &arr, &narr, err) < 0 ||
	    check_listed(listed, arr, narr, name, err) < 0 ||
	    add_run_arrays(info, &arr, &narr, &rp, err) < 0)
		goto fail;
	if (!(seen = calloc((size_t)narr + 1, 1))) {
		pipar_errf(err, "out of memory");
		goto fail;
	}
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		const char *p = archive_entry_pathname(e) ? archive_entry_pathname(e) : "";
		int i = entry_index(p, arr, narr);

		/* Entries are NAME.npy; the manifest and messages use NAME. */
		if (i == narr) {
			pipar_errf(err, "'%s': unexpected entry '%.80s'", name, p);
			goto fail;
		}
		if (seen[i]) {
			pipar_errf(err, "'%s': array '%s' appears twice", name, p);
			goto fail;
		}
		seen[i] = 1;
		if (load_array(a, p, &arr[i], name, err) < 0)
			goto fail;
		found++;
	}
	if (r != ARCHIVE_EOF) {
		pipar_errf(err, "'%s': %s", name,
			   archive_error_string(a) ? archive_error_string(a) : "corrupt archive");
		goto fail;
	}
	for (int i = 0; found != narr && i < narr; i++)
		if (!seen[i]) {
			pipar_errf(err, "'%s': array '%s' is missing", name, arr[i].name);
			goto fail;
		}
	info->has_momentum = momentum;
	free(arr);
	free(rp);
	free(seen);
	cJSON_Delete(listed);
	*out = m;
	return 0;
fail:
	free(arr);
	free(rp);
	free(seen);
	cJSON_Delete(listed);
	pipar_model_free(m);
	pipar_checkpoint_info_free(info);
	return -1;
}

static struct archive *reader(void)
{
	struct archive *a = archive_read_new();

	/* The seekable reader starts from the central directory at the end,
	 * so a file cut anywhere is refused, even where every entry before
	 * the cut is whole. */
	if (a)
		archive_read_support_format_zip_seekable(a);
	return a;
}

/* The pipar format of a JSON document in data[0..size), or NULL. */
static const char *json_kind(const void *data, size_t size, char *buf, size_t len)
{
	const char *end = NULL;
	cJSON *root = cJSON_ParseWithLengthOpts(data, size, &end, 0);
	const char *k = pipar_json_format(root);

	if (k)
		snprintf(buf, len, "%s", k);
	cJSON_Delete(root);
	return k ? buf : NULL;
}

/* A failure to open: a system error (no such file, no permission); a zip
 * archive cut short or damaged, which the format error says; a pipar file
 * of another kind, named; or anything else.  data is the checkpoint in
 * memory, or NULL to look at the file name. */
static void open_error(struct archive *a, const void *data, size_t size, const char *name,
		       char *err)
{
	int e = archive_errno(a);
	const char *msg = archive_error_string(a);
	unsigned char head[4] = {0};
	char *text = NULL, kind[48];
	size_t n = 0;

	if (e == ENOENT || e == EACCES || e == EISDIR || e == ENOTDIR || e == EIO ||
	    e == ENOMEM || e == ELOOP || e == ENAMETOOLONG) {
		pipar_errf(err, "cannot open '%s': %s", name, strerror(e));
		return;
	}
	if (data) {
		n = size < sizeof(head) ? size : sizeof(head);
		memcpy(head, data, n);
	} else {
		FILE *f = fopen(name, "rb");

		if (f) {
			n = fread(head, 1, sizeof(head), f);
			fclose(f);
		}
	}
	/* Every zip archive starts with a local file header or, empty, with
	 * the end of the central directory. */
	if (n == 4 && head[0] == 'P' && head[1] == 'K' &&
	    ((head[2] == 3 && head[3] == 4) || (head[2] == 5 && head[3] == 6))) {
		char low[160];

		snprintf(low, sizeof(low), "%s", msg ? msg : "unrecognised format");
		low[0] = (char)tolower((unsigned char)low[0]);
		pipar_errf(err, "'%s': not a whole checkpoint (zip archive): %s", name, low);
		return;
	}
	if (!data) {
		char lerr[PIPAR_ERRLEN];

		text = pipar_read_file(name, 64u << 20, &size, lerr);
		data = text;
	}
	if (data && json_kind(data, size, kind, sizeof(kind)))
		pipar_json_kind_error(err, name, kind, "a pipar checkpoint (.npz)");
	else
		pipar_errf(err, "'%s' is not a pipar checkpoint (.npz)", name);
	free(text);
}

int pipar_checkpoint_load(const char *path, struct pipar_model **out,
			  struct pipar_ckpt_info *info, char *err)
{
	struct archive *a = reader();
	int r;

	*out = NULL;
	if (strcmp(path, "-") == 0) {
		/* Standard input cannot be sought in: read it whole. */
		size_t len;
		char *data = pipar_read_file(path, (size_t)4 << 30, &len, err);

		if (a)
			archive_read_free(a);
		if (!data)
			return -1;
		r = pipar_checkpoint_load_mem(data, len, "<stdin>", out, info, err);
		free(data);
		return r;
	}
	if (!a)
		return pipar_errf(err, "out of memory");
	if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
		open_error(a, NULL, 0, path, err);
		archive_read_free(a);
		return -1;
	}
	r = load_archive(a, path, out, info, err);
	archive_read_free(a);
	return r;
}

int pipar_checkpoint_load_mem(const void *data, size_t size, const char *name,
			      struct pipar_model **out,
			      struct pipar_ckpt_info *info, char *err)
{
	struct archive *a = reader();
	int r;

	*out = NULL;
	if (!a)
		return pipar_errf(err, "out of memory");
	if (archive_read_open_memory(a, data, size) != ARCHIVE_OK) {
		open_error(a, data, size, name, err);
		archive_read_free(a);
		return -1;
	}
	r = load_archive(a, name, out, info, err);
	archive_read_free(a);
	return r;
}
