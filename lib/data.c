/*
 * data: loading labelled image sets (IDX, CIFAR-10 binary, synthetic),
 * normalising batches and cutting shards.
 *
 * Every file is read through the archive library into memory, and so is a
 * caller's buffer (pipar_data_idx_mem, pipar_data_cifar_mem): the two take
 * the same path from there, through the same checks.  The library's gzip
 * reader checks neither the CRC nor the length in the gzip trailer, so
 * the decompressed bytes are checked against it here: otherwise a flipped
 * bit that still decodes as valid deflate would load silently wrong
 * pixels.
 */
#define _POSIX_C_SOURCE 200809L
#include "data.h"
#include "rng.h"
#include "util.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DATA_MAX_COUNT 10000000u
#define DATA_SPEC_MAX 4096
#define READ_BLOCK 65536

#define IDX_IMAGES_MAGIC 0x00000803u
#define IDX_LABELS_MAGIC 0x00000801u
#define IDX_MAX_SIDE 1024u
/* Decompressed bytes of one IDX file: 4 GiB, far above any data set of
 * this format (Fashion-MNIST's training images are 47 MB). */
#define IDX_MAX_BYTES ((size_t)4 << 30)
#define IDX_CLASSES 10
#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

#define CIFAR_SIDE 32
#define CIFAR_PIXELS (3 * CIFAR_SIDE * CIFAR_SIDE)
#define CIFAR_RECORD (1 + CIFAR_PIXELS)
#define CIFAR_BATCHES 5
#define CIFAR_CLASSES 10

#define SYNTH_MAX_SIDE 256
#define SYNTH_MAX_CLASSES 255
#define SYNTH_SEED 0x7069706172736e74ULL
#define SYNTH_STREAM_PROTO 0
#define SYNTH_STREAM_TRAIN 1
#define SYNTH_STREAM_TEST 2
#define SYNTH_NOISE 70.0  /* half-width of the pixel noise, grey levels */
#define SYNTH_SHARED 0.5f /* weight of the pattern all classes share */

#define SHARD_MAX 65536
#define SHARD_STREAM_IID 0x696964ULL
#define SHARD_STREAM_DIRICHLET 0x646972ULL

#define PI_D 3.14159265358979323846

/* ---- gzip trailer check ------------------------------------------------ */

/* CRC-32 (the gzip polynomial), eight bytes at a time. */
struct crc32 {
	uint32_t t[8][256];
	uint32_t v;
};

static void crc32_init(struct crc32 *c)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t v = i;

		for (int k = 0; k < 8; k++)
			v = (v & 1) ? (v >> 1) ^ 0xedb88320u : v >> 1;
		c->t[0][i] = v;
	}
	for (int i = 0; i < 256; i++)
		for (int s = 1; s < 8; s++)
			c->t[s][i] = (c->t[s - 1][i] >> 8) ^
				     c->t[0][c->t[s - 1][i] & 0xff];
	c->v = 0xffffffffu;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void crc32_update(struct crc32 *c, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	uint32_t v = c->v;

	while (n >= 8) {
		uint32_t lo = v ^ le32(p), hi = le32(p + 4);

		v = c->t[7][lo & 0xff] ^ c->t[6][(lo >> 8) & 0xff] ^
		    c->t[5][(lo >> 16) & 0xff] ^ c->t[4][lo >> 24] ^
		    c->t[3][hi & 0xff] ^ c->t[2][(hi >> 8) & 0xff] ^
		    c->t[1][(hi >> 16) & 0xff] ^ c->t[0][hi >> 24];
		p += 8;
		n -= 8;
	}
	while (n--)
		v = (v >> 8) ^ c->t[0][(v ^ *p++) & 0xff];
	c->v = v;
}

/* The last eight bytes of a file: CRC-32 and length mod 2^32 of the data
 * if it is a single gzip member. */
struct gz_trailer {
	int have;
	uint32_t crc, isize;
};

/*
 * The trailer only describes the whole stream when the file is one gzip
 * member; a concatenation of members (valid, but never seen for these
 * sets) has a trailer for its last member only.  So the CRC is enforced
 * when the length matches, which is the single-member case; a cut-off
 * trailer is already a read error in the reader.
 */
static int gz_check(const char *path, const struct gz_trailer *tr,
		    struct crc32 *c, uint64_t total, char *err)
{
	if (!tr->have || tr->isize != (uint32_t)total)
		return 0;
	if ((c->v ^ 0xffffffffu) != tr->crc)
		return pipar_errf(err, "'%s': corrupt data (gzip crc mismatch)",
				  path);
	return 0;
}

/* ---- reading through the archive library ----------------------------- */

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Where a stream's bytes come from: the file at name, or, when mem is
 * set, size bytes at mem (name then only appears in messages).  Files and
 * buffers take the same path through the readers below. */
struct source {
	const char *name;
	const void *mem;
	size_t size;
};

/* Opens path once with stdio to give the usual "cannot open" message, to
 * refuse empty files (which the reader only calls unrecognised) and to
 * fetch the gzip trailer. */
static int probe_file(const char *path, struct gz_trailer *tr, char *err)
{
	struct stat st;
	uint8_t b[8];
	FILE *f;

	memset(tr, 0, sizeof(*tr));
	f = fopen(path, "rb");
	if (!f)
		return pipar_errf(err, "cannot open '%s': %s", path,
				  strerror(errno));
	if (fstat(fileno(f), &st) != 0) {
		int e = errno;

		fclose(f);
		return pipar_errf(err, "cannot stat '%s': %s", path,
				  strerror(e));
	}
	if (!S_ISREG(st.st_mode)) {
		fclose(f);
		return pipar_errf(err, "'%s': not a regular file", path);
	}
	if (st.st_size == 0) {
		fclose(f);
		return pipar_errf(err, "'%s': empty file", path);
	}
	if (st.st_size >= 18 && fseek(f, -8, SEEK_END) == 0 &&
	    fread(b, 1, 8, f) == 8) {
		tr->have = 1;
		tr->crc = le32(b);
		tr->isize = le32(b + 4);
	}
	fclose(f);
	return 0;
}

/* probe_file for either kind of source. */
static int probe(const struct source *src, struct gz_trailer *tr, char *err)
{
	const uint8_t *b = src->mem;

	if (!src->mem)
		return probe_file(src->name, tr, err);
	memset(tr, 0, sizeof(*tr));
	if (src->size == 0)
		return pipar_errf(err, "'%s': empty file", src->name);
	if (src->size >= 18) {
		tr->have = 1;
		tr->crc = le32(b + src->size - 8);
		tr->isize = le32(b + src->size - 4);
	}
	return 0;
}

/* Reports the reader's error on a as one lower-case line naming path. */
static int archive_fail(struct archive *a, const char *path, char *err)
{
	const char *msg = archive_error_string(a);
	char first[2] = "";

	if (!msg || !*msg)
		return pipar_errf(err, "'%s': read error (truncated or corrupt "
				  "data)", path);
	/* "Truncated tar archive" -> "truncated ..."; leave acronyms. */
	if (msg[0] >= 'A' && msg[0] <= 'Z' && msg[1] >= 'a' && msg[1] <= 'z') {
		first[0] = (char)(msg[0] - 'A' + 'a');
		msg++;
	}
	pipar_errf(err, "'%s': %s%s", path, first, msg);
	if (err)
		for (char *p = err; *p; p++)
			if (*p == '\n' || *p == '\r')
				*p = ' ';
	return -1;
}

/* A stream opened through the archive library, with the byte count and
 * CRC of everything read from it. */
struct stream {
	const char *path;
	const void *mem; /* NULL: read the file at path */
	size_t size;
	struct archive *a;
	int gzip;
	int check; /* keep the CRC (raw format only) */
	uint64_t total;
	struct crc32 crc;
};

enum stream_kind {
	STREAM_RAW_ANY,  /* raw format, every filter: IDX */
	STREAM_RAW_GZIP, /* raw format, gzip: checking a .tar.gz */
	STREAM_TAR_GZIP, /* tar format, gzip: reading a .tar.gz */
};

/* Opens s->path and, for the raw format, its single entry.  On failure
 * the archive is released. */
static int stream_open(struct stream *s, enum stream_kind kind, char *err)
{
	struct archive_entry *e;
	int r;

	s->total = 0;
	s->gzip = 0;
	s->check = kind != STREAM_TAR_GZIP;
	if (s->check)
		crc32_init(&s->crc);
	s->a = archive_read_new();
	if (!s->a)
		return pipar_errf(err, "'%s': out of memory", s->path);
	if (kind == STREAM_RAW_ANY)
		r = archive_read_support_filter_all(s->a);
	else
		r = archive_read_support_filter_gzip(s->a);
	/* Without built-in gzip support the filter still works, with a
	 * warning. */
	if (r < ARCHIVE_WARN)
		goto fail;
	if (kind == STREAM_TAR_GZIP)
		r = archive_read_support_format_tar(s->a);
	else
		r = archive_read_support_format_raw(s->a);
	if (r < 0)
		goto fail;
	if (s->mem)
		r = archive_read_open_memory(s->a, s->mem, s->size);
	else
		r = archive_read_open_filename(s->a, s->path, READ_BLOCK);
	if (r < 0)
		goto fail;
	if (kind != STREAM_TAR_GZIP) {
		r = archive_read_next_header(s->a, &e);
		if (r == ARCHIVE_EOF) {
			archive_read_free(s->a);
			s->a = NULL;
			return pipar_errf(err, "'%s': no data", s->path);
		}
		if (r < 0)
			goto fail;
	}
	s->gzip = archive_filter_code(s->a, 0) == ARCHIVE_FILTER_GZIP;
	return 0;
fail:
	archive_fail(s->a, s->path, err);
	archive_read_free(s->a);
	s->a = NULL;
	return -1;
}

static void stream_set(struct stream *s, const struct source *src)
{
	s->path = src->name;
	s->mem = src->mem;
	s->size = src->size;
}

static void stream_close(struct stream *s)
{
	if (s->a)
		archive_read_free(s->a);
	s->a = NULL;
}

/* Reads up to n bytes, fewer only at the end of the data (or entry);
 * *got says how many. */
static int stream_read(struct stream *s, void *buf, size_t n, size_t *got,
		       char *err)
{
	uint8_t *p = buf;
	size_t done = 0;

	*got = 0;
	while (done < n) {
		size_t want = n - done;
		la_ssize_t r;

		if (want > (size_t)1 << 30)
			want = (size_t)1 << 30;
		r = archive_read_data(s->a, p + done, want);
		if (r < 0)
			return archive_fail(s->a, s->path, err);
		if (r == 0)
			break;
		done += (size_t)r;
	}
	if (s->check)
		crc32_update(&s->crc, p, done);
	s->total += done;
	*got = done;
	return 0;
}

/* ---- IDX -------------------------------------------------------------- */

struct idx {
	uint32_t dims[3];
	uint8_t *data; /* the bytes after the header, malloc'd */
	size_t size;
};

/* Loads one IDX file whose magic must be magic (0x801 labels, 0x803
 * images), refusing anything short, long or out of bounds. */
/* The IDX header on s: the magic and the dimensions, each within the
 * limits, into out. */
static int idx_header(struct stream *s, const char *path, uint32_t magic, struct idx *out,
		      size_t *hlen, char *err)
{
	const char *what = magic == IDX_IMAGES_MAGIC ? "images" : "labels";
	int ndims = (int)(magic & 0xff);
	uint8_t hdr[16];
	size_t got = 0;

	*hlen = 4 + 4 * (size_t)ndims;
	if (stream_read(s, hdr, *hlen, &got, err))
		return -1;
	if (got < 4 || be32(hdr) != magic) {
		if (ends_with(path, ".gz") && archive_filter_code(s->a, 0) == ARCHIVE_FILTER_NONE)
			return pipar_errf(err, "'%s': not gzip data (truncated or corrupt file)", path);
		if (got < 4)
			return pipar_errf(err, "'%s': truncated: %zu bytes expected, %zu read", path,
					  *hlen, got);
		return pipar_errf(err, "'%s': bad magic 0x%08x (expected 0x%08x, IDX %s)", path,
				  be32(hdr), magic, what);
	}
	if (got < *hlen)
		return pipar_errf(err, "'%s': truncated: %zu bytes expected, %zu read", path, *hlen,
				  got);
	out->size = 1;
	for (int i = 0; i < ndims; i++) {
		out->dims[i] = be32(hdr + 4 + 4 * i);
		out->size *= out->dims[i];
	}
	if (ndims == 3 && (out->dims[0] == 0 || out->dims[0] > DATA_MAX_COUNT ||
			   out->dims[1] == 0 || out->dims[1] > IDX_MAX_SIDE ||
			   out->dims[2] == 0 || out->dims[2] > IDX_MAX_SIDE))
		return pipar_errf(err, "'%s': bad dimensions %ux%ux%u (expected 1 to "
				  "%u images of at most %ux%u)", path, out->dims[0],
				  out->dims[1], out->dims[2], DATA_MAX_COUNT,
				  IDX_MAX_SIDE, IDX_MAX_SIDE);
	if (ndims == 1 && (out->dims[0] == 0 || out->dims[0] > DATA_MAX_COUNT))
		return pipar_errf(err, "'%s': bad label count %u (expected 1 to %u)", path,
				  out->dims[0], DATA_MAX_COUNT);
	/* Each dimension may be plausible while their product is not: a
	 * small compressed file could then decompress to terabytes. */
	if (out->size > IDX_MAX_BYTES)
		return pipar_errf(err, "'%s': %ux%ux%u images are %zu bytes, more than the limit of %zu",
				  path, out->dims[0], ndims == 3 ? out->dims[1] : 1,
				  ndims == 3 ? out->dims[2] : 1, out->size, (size_t)IDX_MAX_BYTES);
	return 0;
}

/* The size bytes after the header, into *buf, then nothing more.  The
 * buffer grows with the data rather than trusting the header for one
 * big allocation: a corrupt header must not reserve gigabytes. */
static int idx_body(struct stream *s, const char *path, size_t hlen, size_t size, uint8_t **buf,
		    char *err)
{
	size_t cap = size < ((size_t)64 << 20) ? size : (size_t)64 << 20, done = 0, got;
	uint64_t extra = 0;

	if (!(*buf = malloc(cap)))
		return pipar_errf(err, "'%s': out of memory", path);
	for (;;) {
		uint8_t *nbuf;

		if (stream_read(s, *buf + done, cap - done, &got, err))
			return -1;
		done += got;
		if (done < cap)
			return pipar_errf(err, "'%s': truncated: %zu bytes expected, %zu read", path,
					  hlen + size, hlen + done);
		if (cap == size)
			break;
		cap = cap * 2 < size ? cap * 2 : size;
		if (!(nbuf = realloc(*buf, cap)))
			return pipar_errf(err, "'%s': out of memory", path);
		*buf = nbuf;
	}
	for (;;) {
		uint8_t scratch[4096];

		if (stream_read(s, scratch, sizeof(scratch), &got, err))
			return -1;
		if (got == 0)
			break;
		extra += got;
	}
	if (extra)
		return pipar_errf(err, "'%s': trailing data: %zu bytes expected, %llu read", path,
				  hlen + size, (unsigned long long)(hlen + size + extra));
	return 0;
}

static int idx_load(const struct source *src, uint32_t magic,
		    struct idx *out, char *err)
{
	const char *path = src->name;
	struct gz_trailer tr;
	struct stream *s;
	uint8_t *buf = NULL;
	size_t hlen;

	memset(out, 0, sizeof(*out));
	if (probe(src, &tr, err))
		return -1;
	if (!(s = malloc(sizeof(*s))))
		return pipar_errf(err, "'%s': out of memory", path);
	stream_set(s, src);
	if (stream_open(s, STREAM_RAW_ANY, err) || idx_header(s, path, magic, out, &hlen, err) ||
	    idx_body(s, path, hlen, out->size, &buf, err) ||
	    (s->gzip && gz_check(path, &tr, &s->crc, s->total, err)))
		goto fail;
	stream_close(s);
	free(s);
	out->data = buf;
	return 0;
fail:
	stream_close(s);
	free(s);
	free(buf);
	memset(out, 0, sizeof(*out));
	return -1;
}

/* Finds DIR/NAME.gz, else DIR/NAME. */
static int idx_path(const char *dir, const char *name, char *path,
		    size_t len, char *err)
{
	struct stat st;
	int n;

	n = snprintf(path, len, "%s/%s.gz", dir, name);
	if (n < 0 || (size_t)n >= len)
		return pipar_errf(err, "'%s': path too long", dir);
	if (stat(path, &st) == 0 || errno != ENOENT)
		return 0;
	path[n - 3] = '\0';
	if (stat(path, &st) == 0 || errno != ENOENT)
		return 0;
	return pipar_errf(err, "cannot open '%s/%s[.gz]': %s", dir, name,
			  strerror(ENOENT));
}

/* Loads an images and labels pair into d, from files or buffers alike. */
static int load_idx_pair(struct pipar_data *d, const struct source *isrc,
			 const struct source *lsrc, char *err)
{
	const char *ipath = isrc->name, *lpath = lsrc->name;
	struct idx im, lb;

	/* Labels first: small, so most faults show before the big read. */
	if (idx_load(lsrc, IDX_LABELS_MAGIC, &lb, err))
		return -1;
	for (size_t i = 0; i < lb.size; i++) {
		if (lb.data[i] >= IDX_CLASSES) {
			pipar_errf(err, "'%s': label %u at index %zu out of "
				   "range (0..%d)", lpath, lb.data[i], i,
				   IDX_CLASSES - 1);
			free(lb.data);
			return -1;
		}
	}
	if (idx_load(isrc, IDX_IMAGES_MAGIC, &im, err)) {
		free(lb.data);
		return -1;
	}
	if (im.dims[0] != lb.dims[0]) {
		pipar_errf(err, "'%s' has %u images but '%s' has %u labels",
			   ipath, im.dims[0], lpath, lb.dims[0]);
		free(im.data);
		free(lb.data);
		return -1;
	}
	d->count = (int)im.dims[0];
	d->shape.c = 1;
	d->shape.h = (int)im.dims[1];
	d->shape.w = (int)im.dims[2];
	d->classes = IDX_CLASSES;
	d->pixels = im.data;
	d->labels = lb.data;
	return 0;
}

static int load_idx(struct pipar_data *d, const char *dir, int test,
		    char *err)
{
	const char *prefix = test ? "t10k" : "train";
	char name[64], ipath[DATA_SPEC_MAX + 64], lpath[DATA_SPEC_MAX + 64];
	struct source isrc = { ipath, NULL, 0 }, lsrc = { lpath, NULL, 0 };

	snprintf(name, sizeof(name), "%s-labels-idx1-ubyte", prefix);
	if (idx_path(dir, name, lpath, sizeof(lpath), err))
		return -1;
	snprintf(name, sizeof(name), "%s-images-idx3-ubyte", prefix);
	if (idx_path(dir, name, ipath, sizeof(ipath), err))
		return -1;
	return load_idx_pair(d, &isrc, &lsrc, err);
}

/* ---- CIFAR-10 --------------------------------------------------------- */

/* Decompresses the whole file once, checking it against its gzip trailer,
 * so that a corrupt archive is refused before the tar is read. */
static int cifar_check_stream(const struct source *src,
			      const struct gz_trailer *tr, char *err)
{
	const char *path = src->name;
	struct stream *s = malloc(sizeof(*s));
	int r;

	if (!s)
		return pipar_errf(err, "'%s': out of memory", path);
	stream_set(s, src);
	if (stream_open(s, STREAM_RAW_GZIP, err)) {
		free(s);
		return -1;
	}
	for (;;) {
		const void *buf;
		size_t size;
		la_int64_t off;

		r = archive_read_data_block(s->a, &buf, &size, &off);
		if (r == ARCHIVE_EOF)
			break;
		if (r < 0) {
			archive_fail(s->a, path, err);
			goto fail;
		}
		crc32_update(&s->crc, buf, size);
		s->total += size;
	}
	if (s->gzip && gz_check(path, tr, &s->crc, s->total, err))
		goto fail;
	stream_close(s);
	free(s);
	return 0;
fail:
	stream_close(s);
	free(s);
	return -1;
}

/* Which batch an entry's base name is: 0..4 for data_batch_1..5.bin, 0 for
 * test_batch.bin in the test split, -1 for anything else. */
static int cifar_slot(const char *pathname, int test)
{
	const char *base = strrchr(pathname, '/');

	base = base ? base + 1 : pathname;
	if (test)
		return strcmp(base, "test_batch.bin") == 0 ? 0 : -1;
	if (strncmp(base, "data_batch_", 11) == 0 && base[11] >= '1' &&
	    base[11] <= '0' + CIFAR_BATCHES && strcmp(base + 12, ".bin") == 0)
		return base[11] - '1';
	return -1;
}

static void cifar_batch_name(int slot, int test, char *buf, size_t len)
{
	if (test)
		snprintf(buf, len, "test_batch.bin");
	else
		snprintf(buf, len, "data_batch_%d.bin", slot + 1);
}

/* The records of one CIFAR-10 batch, the entry e now at s: a regular
 * file, a whole number of records, every label in range. */
static int cifar_entry(struct stream *s, struct archive_entry *e, const char *path,
		       const char *name, size_t total, uint8_t **raw, size_t *records, char *err)
{
	la_int64_t size = archive_entry_size(e);
	size_t got = 0;

	if (archive_entry_filetype(e) != AE_IFREG)
		return pipar_errf(err, "'%s': entry '%s' is not a regular file", path, name);
	if (*raw)
		return pipar_errf(err, "'%s': duplicate entry '%s'", path, name);
	if (!archive_entry_size_is_set(e) || size <= 0 || size % CIFAR_RECORD != 0)
		return pipar_errf(err, "'%s': entry '%s' has %lld bytes, not a positive multiple of %d",
				  path, name, (long long)size, CIFAR_RECORD);
	if ((uint64_t)size / CIFAR_RECORD > DATA_MAX_COUNT - total)
		return pipar_errf(err, "'%s': more than %u records", path, DATA_MAX_COUNT);
	*records = (size_t)size / CIFAR_RECORD;
	if (!(*raw = malloc((size_t)size)))
		return pipar_errf(err, "'%s': out of memory", path);
	if (stream_read(s, *raw, (size_t)size, &got, err))
		return -1;
	if (got != (size_t)size)
		return pipar_errf(err, "'%s': entry '%s' truncated: %lld bytes expected, %zu read",
				  path, name, (long long)size, got);
	for (size_t k = 0; k < *records; k++) {
		uint8_t label = (*raw)[k * CIFAR_RECORD];

		if (label >= CIFAR_CLASSES)
			return pipar_errf(err, "'%s': entry '%s': label %u of record %zu out of range (0..%d)",
					  path, name, label, k, CIFAR_CLASSES - 1);
	}
	return 0;
}

/* The batches' records into d, in batch order. */
static int cifar_fill(struct pipar_data *d, const char *path, uint8_t *const *raw,
		      const size_t *records, int nslots, size_t total, char *err)
{
	size_t k = 0;

	d->pixels = pipar_alloc(total * CIFAR_PIXELS);
	d->labels = malloc(total);
	if (!d->pixels || !d->labels)
		return pipar_errf(err, "'%s': out of memory", path);
	for (int i = 0; i < nslots; i++)
		for (size_t j = 0; j < records[i]; j++, k++) {
			const uint8_t *rec = raw[i] + j * CIFAR_RECORD;

			d->labels[k] = rec[0];
			memcpy(d->pixels + k * CIFAR_PIXELS, rec + 1, CIFAR_PIXELS);
		}
	d->count = (int)total;
	d->shape.c = 3;
	d->shape.h = CIFAR_SIDE;
	d->shape.w = CIFAR_SIDE;
	d->classes = CIFAR_CLASSES;
	return 0;
}

static int load_cifar(struct pipar_data *d, const struct source *src,
		      int test, char *err)
{
	const char *path = src->name;
	uint8_t *raw[CIFAR_BATCHES] = { NULL };
	size_t records[CIFAR_BATCHES] = { 0 }, total = 0;
	int nslots = test ? 1 : CIFAR_BATCHES, rc = -1, r;
	struct archive_entry *e;
	struct gz_trailer tr;
	struct stream *s;
	char missing[160] = "", bname[32];

	if (probe(src, &tr, err))
		return -1;
	if (cifar_check_stream(src, &tr, err))
		return -1;
	s = malloc(sizeof(*s));
	if (!s)
		return pipar_errf(err, "'%s': out of memory", path);
	stream_set(s, src);
	if (stream_open(s, STREAM_TAR_GZIP, err)) {
		free(s);
		return -1;
	}
	while ((r = archive_read_next_header(s->a, &e)) == ARCHIVE_OK) {
		const char *name = archive_entry_pathname(e);
		int slot;

		if (!name || (slot = cifar_slot(name, test)) < 0)
			continue;
		if (cifar_entry(s, e, path, name, total, &raw[slot], &records[slot], err) < 0)
			goto out;
		total += records[slot];
	}
	if (r != ARCHIVE_EOF) {
		archive_fail(s->a, path, err);
		goto out;
	}
	for (int i = 0; i < nslots; i++) {
		if (raw[i])
			continue;
		cifar_batch_name(i, test, bname, sizeof(bname));
		if (*missing)
			strcat(missing, ", ");
		strcat(missing, bname);
	}
	if (*missing) {
		pipar_errf(err, "'%s': no %s in the archive", path, missing);
		goto out;
	}
	rc = cifar_fill(d, path, raw, records, nslots, total, err);
out:
	stream_close(s);
	free(s);
	for (int i = 0; i < CIFAR_BATCHES; i++)
		free(raw[i]);
	return rc;
}

/* ---- synthetic -------------------------------------------------------- */

/* A strict decimal parse of s[0..end): digits only, value <= max. */
static int parse_uint(const char *s, const char **end, unsigned long max,
		      unsigned long *out)
{
	unsigned long v = 0;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (unsigned long)(*p - '0');
		if (v > max)
			return -1;
	}
	*end = p;
	*out = v;
	return 0;
}

/* One class's prototype channel: a few smooth blobs over a faint stripe
 * pattern, in [0, 1].  Distinct enough between classes for a small
 * network, smooth enough that shifts and noise leave it recognisable. */
static void synth_prototype(struct pipar_rng *r, float *p, int h, int w)
{
	int nblob = 2 + (int)pipar_rng_below(r, 2);
	double m = h < w ? h : w;
	double theta, freq, phase, ky, kx;

	for (int j = 0; j < h * w; j++)
		p[j] = 0.05f;
	for (int b = 0; b < nblob; b++) {
		double cy = (0.15 + 0.7 * pipar_rng_uniform(r)) * (h - 1);
		double cx = (0.15 + 0.7 * pipar_rng_uniform(r)) * (w - 1);
		double sig = (0.08 + 0.17 * pipar_rng_uniform(r)) * m;
		double amp = 0.45 + 0.45 * pipar_rng_uniform(r);

		if (sig < 0.5)
			sig = 0.5;
		for (int y = 0; y < h; y++)
			for (int x = 0; x < w; x++) {
				double dy = y - cy, dx = x - cx;

				p[y * w + x] += (float)(amp *
					exp(-(dy * dy + dx * dx) /
					    (2 * sig * sig)));
			}
	}
	theta = PI_D * pipar_rng_uniform(r);
	freq = (1.0 + 2.5 * pipar_rng_uniform(r)) * 2 * PI_D / m;
	phase = 2 * PI_D * pipar_rng_uniform(r);
	ky = sin(theta) * freq;
	kx = cos(theta) * freq;
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			float *q = &p[y * w + x];

			*q += (float)(0.3 * (0.5 + 0.5 * cos(ky * y + kx * x +
							      phase)));
			if (*q > 1.0f)
				*q = 1.0f;
		}
}

static uint64_t synth_seed(struct pipar_shape s, int classes)
{
	uint64_t h = SYNTH_SEED;
	uint64_t v[4] = { (uint64_t)s.c, (uint64_t)s.h, (uint64_t)s.w,
			  (uint64_t)classes };

	for (int i = 0; i < 4; i++)
		h = (h ^ v[i]) * 0x100000001b3ULL;
	return h;
}

/* Pixel noise: triangular on [-SYNTH_NOISE, SYNTH_NOISE] from two 16-bit
 * draws, cheap and bounded; a 64-bit draw serves two pixels. */
struct synth_noise {
	struct pipar_rng *r;
	uint64_t bits;
	int left;
};

static float synth_noise_next(struct synth_noise *n)
{
	uint32_t a, b;

	if (n->left == 0) {
		n->bits = pipar_rng_next(n->r);
		n->left = 2;
	}
	a = (uint32_t)(n->bits & 0xffff);
	b = (uint32_t)((n->bits >> 16) & 0xffff);
	n->bits >>= 32;
	n->left--;
	return (float)(((double)a + (double)b - 65535.0) *
		       (SYNTH_NOISE / 65535.0));
}

/* One sample: its class prototype shifted by (dy, dx) with the edges
 * repeated, scaled by a random gain, plus noise. */
static void synth_sample(struct pipar_rng *r, const float *proto,
			 struct pipar_shape s, int smax, uint8_t *out)
{
	int dy = (int)pipar_rng_below(r, 2 * (uint32_t)smax + 1) - smax;
	int dx = (int)pipar_rng_below(r, 2 * (uint32_t)smax + 1) - smax;
	float gain = (float)(255.0 * (0.8 + 0.4 * pipar_rng_uniform(r)));
	struct synth_noise noise = { r, 0, 0 };

	for (int ch = 0; ch < s.c; ch++) {
		const float *p = proto + (size_t)ch * s.h * s.w;

		for (int y = 0; y < s.h; y++) {
			int sy = y - dy;

			sy = sy < 0 ? 0 : sy >= s.h ? s.h - 1 : sy;
			for (int x = 0; x < s.w; x++) {
				int sx = x - dx;
				float v;

				sx = sx < 0 ? 0 : sx >= s.w ? s.w - 1 : sx;
				v = gain * p[sy * s.w + sx] +
				    synth_noise_next(&noise);
				v = v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v;
				*out++ = (uint8_t)(v + 0.5f);
			}
		}
	}
}

static void synth_fill(struct pipar_data *d, const float *proto, int test)
{
	size_t size = pipar_shape_size(d->shape);
	int smax = (d->shape.h < d->shape.w ? d->shape.h : d->shape.w) / 7;
	struct pipar_rng r;

	if (smax < 1)
		smax = 1;
	/* The same prototypes for both splits, different draws: the test set
	 * is new samples of the same distribution. */
	pipar_rng_seed(&r, synth_seed(d->shape, d->classes),
		       test ? SYNTH_STREAM_TEST : SYNTH_STREAM_TRAIN);
	for (int i = 0; i < d->count; i++) {
		int label = i % d->classes;

		d->labels[i] = (uint8_t)label;
		synth_sample(&r, proto + (size_t)label * size, d->shape, smax,
			     d->pixels + (size_t)i * size);
	}
}

static int load_synthetic(struct pipar_data *d, const char *spec,
			  const char *args, int test, char *err)
{
	char buf[DATA_SPEC_MAX];
	char *field[3] = { NULL }, *p;
	unsigned long n, classes = 10;
	struct pipar_shape shape = { 1, 28, 28 };
	struct pipar_rng r;
	const char *end;
	size_t size, plane;
	float *proto, *common;
	int nf = 0;

	snprintf(buf, sizeof(buf), "%s", args);
	for (p = buf;;) {
		char *colon = strchr(p, ':');

		if (nf == 3)
			return pipar_errf(err, "'%s': too many fields "
					  "(expected synthetic:N[:CxHxW"
					  "[:CLASSES]][:train|:test])", spec);
		field[nf++] = p;
		if (!colon)
			break;
		*colon = '\0';
		p = colon + 1;
	}
	if (parse_uint(field[0], &end, DATA_MAX_COUNT, &n) || *end || n == 0)
		return pipar_errf(err, "'%s': sample count must be a number "
				  "from 1 to %u", spec, DATA_MAX_COUNT);
	if (field[1] && (pipar_shape_parse(field[1], &shape) ||
			 shape.c > PIPAR_DATA_MAXCH ||
			 shape.h > SYNTH_MAX_SIDE ||
			 shape.w > SYNTH_MAX_SIDE))
		return pipar_errf(err, "'%s': bad shape '%s' (expected CxHxW "
				  "or HxW, at most %dx%dx%d)", spec, field[1],
				  PIPAR_DATA_MAXCH, SYNTH_MAX_SIDE,
				  SYNTH_MAX_SIDE);
	if (field[2] && (parse_uint(field[2], &end, SYNTH_MAX_CLASSES,
				    &classes) || *end || classes < 2))
		return pipar_errf(err, "'%s': class count must be a number "
				  "from 2 to %d", spec, SYNTH_MAX_CLASSES);

	d->count = (int)n;
	d->shape = shape;
	d->classes = (int)classes;
	size = pipar_shape_size(shape);
	plane = (size_t)shape.h * shape.w;
	d->pixels = pipar_alloc((size_t)n * size);
	d->labels = malloc(n);
	proto = malloc(classes * size * sizeof(float));
	if (!d->pixels || !d->labels || !proto) {
		free(proto);
		return pipar_errf(err, "'%s': out of memory", spec);
	}
	pipar_rng_seed(&r, synth_seed(shape, (int)classes),
		       SYNTH_STREAM_PROTO);
	/* Each class is half a shared pattern, half its own, so that the
	 * classes overlap and the task is not solved by one template. */
	common = malloc(size * sizeof(float));
	if (!common) {
		free(proto);
		return pipar_errf(err, "'%s': out of memory", spec);
	}
	for (int ch = 0; ch < shape.c; ch++)
		synth_prototype(&r, common + ch * plane, shape.h, shape.w);
	for (size_t k = 0; k < classes * (size_t)shape.c; k++) {
		float *pk = proto + k * plane;
		const float *q = common + (k % (size_t)shape.c) * plane;

		synth_prototype(&r, pk, shape.h, shape.w);
		for (size_t j = 0; j < plane; j++)
			pk[j] = SYNTH_SHARED * q[j] +
				(1 - SYNTH_SHARED) * pk[j];
	}
	free(common);
	synth_fill(d, proto, test);
	free(proto);
	return 0;
}

/* ---- specs ------------------------------------------------------------ */

/* Splits a trailing ":train" or ":test" off spec (in place); returns 1 for
 * test, 0 for train or none. */
static int strip_split(char *spec)
{
	size_t n = strlen(spec);

	if (n > 6 && strcmp(spec + n - 6, ":train") == 0) {
		spec[n - 6] = '\0';
		return 0;
	}
	if (n > 5 && strcmp(spec + n - 5, ":test") == 0) {
		spec[n - 5] = '\0';
		return 1;
	}
	return 0;
}

/* The text after "name:" in spec, or NULL if spec is not name[:...];
 * *bare is set when spec is exactly name. */
static char *source_arg(char *spec, const char *name, int *bare)
{
	size_t n = strlen(name);

	*bare = 0;
	if (strncmp(spec, name, n) != 0)
		return NULL;
	if (spec[n] == '\0') {
		*bare = 1;
		return spec + n;
	}
	return spec[n] == ':' ? spec + n + 1 : NULL;
}

static void strip_slashes(char *dir)
{
	size_t n = strlen(dir);

	while (n > 1 && dir[n - 1] == '/')
		dir[--n] = '\0';
}

/*
 * Loads the set named by spec (see data.h for the forms).  A trailing
 * ":train" or ":test" is always the split, so a directory or file whose
 * name is exactly "train" or "test" must be written "./test".  On success
 * *out is a new set owned by the caller (pipar_data_free); on failure *out
 * is NULL and err names the spec or the file and the fault.
 */
int pipar_data_open(const char *spec, struct pipar_data **out, char *err)
{
	char buf[DATA_SPEC_MAX];
	struct pipar_data *d;
	char *arg, *at;
	int test, bare, rc;
	long first = 0;

	*out = NULL;
	if (!spec || !*spec)
		return pipar_errf(err, "empty data spec");
	if (strlen(spec) >= sizeof(buf))
		return pipar_errf(err, "data spec too long (%zu bytes)",
				  strlen(spec));
	strcpy(buf, spec);
	if ((at = strrchr(buf, '@')) && !strpbrk(at, "/:")) {
		char *end;

		errno = 0;
		first = strtol(at + 1, &end, 10);
		if (at[1] < '0' || at[1] > '9' || *end || errno || first < 1 || first > INT_MAX)
			return pipar_errf(err, "'%s': bad sample count '%s' after '@' "
					  "(expected a positive integer)", spec, at + 1);
		*at = 0;
	}
	test = strip_split(buf);
	d = calloc(1, sizeof(*d));
	if (!d)
		return pipar_errf(err, "'%s': out of memory", spec);
	snprintf(d->split, sizeof(d->split), "%s", test ? "test" : "train");

	if ((arg = source_arg(buf, "fashion-mnist", &bare))) {
		snprintf(d->name, sizeof(d->name), "fashion-mnist");
		if (bare) {
			rc = load_idx(d, FASHION_MNIST_DIR, test, err);
		} else if (!*arg) {
			rc = pipar_errf(err, "'%s': empty directory", spec);
		} else {
			strip_slashes(arg);
			rc = load_idx(d, arg, test, err);
		}
	} else if ((arg = source_arg(buf, "mnist", &bare))) {
		snprintf(d->name, sizeof(d->name), "mnist");
		if (!*arg) {
			rc = pipar_errf(err, "'%s': mnist needs a directory "
					"(mnist:DIR[:train|:test])", spec);
		} else {
			strip_slashes(arg);
			rc = load_idx(d, arg, test, err);
		}
	} else if ((arg = source_arg(buf, "cifar10", &bare))) {
		snprintf(d->name, sizeof(d->name), "cifar10");
		if (!*arg)
			rc = pipar_errf(err, "'%s': cifar10 needs an archive "
					"(cifar10:FILE.tar.gz[:train|:test])",
					spec);
		else
			rc = load_cifar(d, &(struct source){ arg, NULL, 0 },
					test, err);
	} else if ((arg = source_arg(buf, "synthetic", &bare))) {
		snprintf(d->name, sizeof(d->name), "synthetic");
		if (!*arg)
			rc = pipar_errf(err, "'%s': synthetic needs a sample "
					"count (synthetic:N[:CxHxW[:CLASSES]]"
					"[:train|:test])", spec);
		else
			rc = load_synthetic(d, spec, arg, test, err);
	} else {
		rc = pipar_errf(err, "'%s': unknown data source (known: "
				"fashion-mnist, mnist, cifar10, synthetic)",
				spec);
	}
	if (!rc && first > d->count)
		rc = pipar_errf(err, "'%s': asks for the first %ld samples, the set has %d",
				spec, first, d->count);
	if (rc) {
		pipar_data_free(d);
		return -1;
	}
	if (first)
		d->count = (int)first;
	*out = d;
	return 0;
}

/*
 * Loads an IDX pair from memory: isize bytes of images at images and lsize
 * bytes of labels at labels, each plain or compressed as a file would be,
 * through the same checks as pipar_data_open.  The buffers stay the
 * caller's and are not kept.  Messages name "NAME images" and "NAME
 * labels"; the set is named name (cut to fit) and split "train".  On
 * success *out is a new set owned by the caller (pipar_data_free); on
 * failure *out is NULL and -1 is returned with err.
 */
int pipar_data_idx_mem(const void *images, size_t isize, const void *labels,
		       size_t lsize, const char *name, struct pipar_data **out,
		       char *err)
{
	char iname[80], lname[80];
	struct source isrc = { iname, images, isize };
	struct source lsrc = { lname, labels, lsize };
	struct pipar_data *d;

	*out = NULL;
	if (!name)
		name = "idx";
	snprintf(iname, sizeof(iname), "%s images", name);
	snprintf(lname, sizeof(lname), "%s labels", name);
	/* A zero-length buffer may come with a NULL pointer; it is refused as
	 * empty, never read. */
	if ((!images && isize) || (!labels && lsize))
		return pipar_errf(err, "'%s': no buffer", name);
	if (!images)
		isrc.mem = "";
	if (!labels)
		lsrc.mem = "";
	d = calloc(1, sizeof(*d));
	if (!d)
		return pipar_errf(err, "'%s': out of memory", name);
	snprintf(d->name, sizeof(d->name), "%s", name);
	snprintf(d->split, sizeof(d->split), "train");
	if (load_idx_pair(d, &isrc, &lsrc, err)) {
		pipar_data_free(d);
		return -1;
	}
	*out = d;
	return 0;
}

/*
 * Loads the split ("train" or "test") of a CIFAR-10 archive held in memory
 * (size bytes at data, a .tar.gz as a file would be), through the same
 * checks as pipar_data_open.  The buffer stays the caller's.  Messages name
 * name in place of a path; the set is named name (cut to fit).  On success
 * *out is a new set owned by the caller (pipar_data_free); on failure *out
 * is NULL and -1 is returned with err.
 */
int pipar_data_cifar_mem(const void *data, size_t size, const char *name,
			 const char *split, struct pipar_data **out, char *err)
{
	struct source src = { name, data, size };
	struct pipar_data *d;
	int test;

	*out = NULL;
	if (!name)
		src.name = name = "cifar10";
	if (!split || (strcmp(split, "train") != 0 &&
		       strcmp(split, "test") != 0))
		return pipar_errf(err, "'%s': bad split '%s' (expected train "
				  "or test)", name, split ? split : "");
	if (!data && size)
		return pipar_errf(err, "'%s': no buffer", name);
	if (!data)
		src.mem = "";
	test = strcmp(split, "test") == 0;
	d = calloc(1, sizeof(*d));
	if (!d)
		return pipar_errf(err, "'%s': out of memory", name);
	snprintf(d->name, sizeof(d->name), "%s", name);
	snprintf(d->split, sizeof(d->split), "%s", split);
	if (load_cifar(d, &src, test, err)) {
		pipar_data_free(d);
		return -1;
	}
	*out = d;
	return 0;
}

/*
 * Writes spec with its split replaced by split ("train" or "test"): any
 * trailing ":train" or ":test" is removed and ":split" appended.  Returns
 * 0, or -1 if split is neither or the result does not fit in len bytes.
 */
int pipar_data_spec_split(const char *spec, const char *split, char *buf,
			  size_t len)
{
	size_t n;

	if (!spec || !split || !buf ||
	    (strcmp(split, "train") != 0 && strcmp(split, "test") != 0))
		return -1;
	n = strlen(spec);
	{
		const char *at = strrchr(spec, '@');

		if (at && !strpbrk(at, "/:"))
			n = (size_t)(at - spec);  /* the other split whole */
	}
	if (n > 6 && strncmp(spec + n - 6, ":train", 6) == 0)
		n -= 6;
	else if (n > 5 && strncmp(spec + n - 5, ":test", 5) == 0)
		n -= 5;
	if (n + 1 + strlen(split) + 1 > len)
		return -1;
	memcpy(buf, spec, n);
	buf[n] = ':';
	strcpy(buf + n + 1, split);
	return 0;
}

/*
 * Releases d and everything it owns; NULL is a no-op.
 */
void pipar_data_free(struct pipar_data *d)
{
	if (!d)
		return;
	free(d->pixels);
	free(d->labels);
	free(d);
}

/* ---- normalisation and batches ---------------------------------------- */

/*
 * Computes the mean and (population) standard deviation of x/255 for each
 * channel over every sample of d.  A constant channel gets std 1 so that
 * normalising never divides by zero; unused slots are mean 0, std 1.
 */
void pipar_data_norm(const struct pipar_data *d, struct pipar_norm *norm)
{
	int c = d->shape.c;
	size_t plane = (size_t)d->shape.h * d->shape.w;
	uint64_t hist[PIPAR_DATA_MAXCH][256];

	PIPAR_ASSERT(c >= 1 && c <= PIPAR_DATA_MAXCH);
	norm->channels = c;
	for (int ch = 0; ch < PIPAR_DATA_MAXCH; ch++) {
		norm->mean[ch] = 0.0f;
		norm->std[ch] = 1.0f;
	}
	/* A histogram per channel keeps the pass cheap and the sums exact;
	 * the moments are then taken in double. */
	memset(hist, 0, sizeof(hist));
	for (int i = 0; i < d->count; i++)
		for (int ch = 0; ch < c; ch++) {
			const uint8_t *p = d->pixels +
					   ((size_t)i * c + ch) * plane;

			for (size_t j = 0; j < plane; j++)
				hist[ch][p[j]]++;
		}
	for (int ch = 0; ch < c; ch++) {
		double n = 0, s1 = 0, s2 = 0, mean, var;

		for (int v = 0; v < 256; v++) {
			double h = (double)hist[ch][v], x = v / 255.0;

			n += h;
			s1 += h * x;
			s2 += h * x * x;
		}
		mean = s1 / n;
		var = s2 / n - mean * mean;
		norm->mean[ch] = (float)mean;
		norm->std[ch] = var > 1e-12 ? (float)sqrt(var) : 1.0f;
	}
}

/*
 * Writes samples idx[0..n) of d as float32 NCHW into x, each pixel
 * (p/255 - mean[c]) / std[c], and their labels into y.  norm may be NULL
 * for plain p/255, y NULL to skip the labels.  Indices out of range are a
 * bug and abort.
 */
void pipar_data_batch(const struct pipar_data *d, const struct pipar_norm *norm,
		      const int *idx, int n, float *x, int *y)
{
	int c = d->shape.c;
	size_t size = pipar_shape_size(d->shape);
	size_t plane = (size_t)d->shape.h * d->shape.w;
	float lut[PIPAR_DATA_MAXCH][256];

	PIPAR_ASSERT(c >= 1 && c <= PIPAR_DATA_MAXCH);
	PIPAR_ASSERT(!norm || norm->channels == c);
	for (int ch = 0; ch < c; ch++)
		for (int v = 0; v < 256; v++) {
			float f = (float)v / 255.0f;

			lut[ch][v] = norm ? (f - norm->mean[ch]) / norm->std[ch]
					  : f;
		}
	for (int k = 0; k < n; k++) {
		const uint8_t *p;
		float *o = x + (size_t)k * size;

		PIPAR_ASSERT(idx[k] >= 0 && idx[k] < d->count);
		p = d->pixels + (size_t)idx[k] * size;
		for (int ch = 0; ch < c; ch++)
			for (size_t j = 0; j < plane; j++)
				o[ch * plane + j] = lut[ch][p[ch * plane + j]];
		if (y)
			y[k] = d->labels[idx[k]];
	}
}

/* ---- shards ----------------------------------------------------------- */

/*
 * Parses "i/K" (decimal, 0 <= i < K, 1 <= K <= 65536) into spec->index
 * and spec->count, leaving the other fields alone.  Returns 0, or -1 with
 * err.
 */
int pipar_shard_parse(const char *s, struct pipar_shard_spec *spec, char *err)
{
	unsigned long i, k;
	const char *end;

	if (!s || parse_uint(s, &end, SHARD_MAX, &i) || *end != '/' ||
	    parse_uint(end + 1, &end, SHARD_MAX, &k) || *end || k < 1 ||
	    i >= k)
		return pipar_errf(err, "bad value '%s' for --shard: expected I/K "
				  "with 0 <= I < K <= %d", s ? s : "", SHARD_MAX);
	spec->index = (int)i;
	spec->count = (int)k;
	return 0;
}

/*
 * Parses "iid" or "dirichlet:ALPHA" (ALPHA a finite number > 0) into
 * spec->partition and spec->alpha (left alone for iid).  Returns 0, or -1
 * with err.
 */
int pipar_partition_parse(const char *s, struct pipar_shard_spec *spec,
			  char *err)
{
	if (s && strcmp(s, "iid") == 0) {
		spec->partition = PIPAR_PARTITION_IID;
		return 0;
	}
	if (s && strncmp(s, "dirichlet:", 10) == 0) {
		const char *a = s + 10;
		char *end;
		double alpha;

		if ((*a >= '0' && *a <= '9') || *a == '.') {
			errno = 0;
			alpha = strtod(a, &end);
			if (!*end && errno == 0 && isfinite(alpha) &&
			    alpha > 0) {
				spec->partition = PIPAR_PARTITION_DIRICHLET;
				spec->alpha = alpha;
				return 0;
			}
		}
	}
	return pipar_errf(err, "bad value '%s' for --partition: expected "
			  "iid or dirichlet:ALPHA with ALPHA > 0", s ? s : "");
}

/* Marks in mine[] the samples of shard spec->index when each class is
 * split among the shards in Dirichlet(alpha) proportions. */
static int shard_dirichlet(const struct pipar_data *d,
			   const struct pipar_shard_spec *spec, uint8_t *mine,
			   char *err)
{
	int nc = d->classes, k = spec->count, n = d->count;
	size_t *start = calloc((size_t)nc + 1, sizeof(*start));
	int *order = malloc((size_t)n * sizeof(*order));
	double *g = malloc((size_t)k * sizeof(*g));
	struct pipar_rng r;

	if (!start || !order || !g) {
		free(start);
		free(order);
		free(g);
		return pipar_errf(err, "out of memory");
	}
	/* Group the indices by class, ascending within each class. */
	for (int i = 0; i < n; i++) {
		PIPAR_ASSERT(d->labels[i] < nc);
		start[d->labels[i] + 1]++;
	}
	for (int c = 0; c < nc; c++)
		start[c + 1] += start[c];
	{
		size_t *fill = malloc((size_t)nc * sizeof(*fill));

		if (!fill) {
			free(start);
			free(order);
			free(g);
			return pipar_errf(err, "out of memory");
		}
		memcpy(fill, start, (size_t)nc * sizeof(*fill));
		for (int i = 0; i < n; i++)
			order[fill[d->labels[i]]++] = i;
		free(fill);
	}
	pipar_rng_seed(&r, spec->seed, SHARD_STREAM_DIRICHLET);
	for (int c = 0; c < nc; c++) {
		int *list = order + start[c];
		size_t m = start[c + 1] - start[c], lo, hi;
		double sum = 0, before = 0;

		pipar_rng_shuffle(&r, list, m);
		for (int s = 0; s < k; s++) {
			g[s] = pipar_rng_gamma(&r, spec->alpha);
			sum += g[s];
		}
		if (!(sum > 0) || !isfinite(sum)) {
			/* Every draw underflowed (tiny alpha): the limit of
			 * Dirichlet is one shard taking it all. */
			int s = (int)pipar_rng_below(&r, (uint32_t)k);

			for (int t = 0; t < k; t++)
				g[t] = t == s;
			sum = 1;
		}
		for (int s = 0; s < spec->index; s++)
			before += g[s];
		lo = (size_t)floor((double)m * (before / sum));
		hi = spec->index == k - 1 ? m :
		     (size_t)floor((double)m * ((before + g[spec->index]) /
						sum));
		if (lo > m)
			lo = m;
		if (hi > m)
			hi = m;
		for (size_t j = lo; j < hi; j++)
			mine[list[j]] = 1;
	}
	free(start);
	free(order);
	free(g);
	return 0;
}

/*
 * Picks the samples of shard spec->index of spec->count.  On success *idx
 * is a new malloc'd array (the caller frees it) of the *n indices in
 * ascending order; it is allocated even when *n is 0, which only a
 * Dirichlet partition produces (IID refuses more shards than samples).
 * Returns -1 with err on a bad spec or when out of memory, leaving *idx
 * NULL and *n 0.
 */
int pipar_data_shard(const struct pipar_data *d,
		     const struct pipar_shard_spec *spec, int **idx, int *n,
		     char *err)
{
	int count = d->count, k = spec->count, m = 0;
	uint8_t *mine;
	int *out;

	*idx = NULL;
	*n = 0;
	if (count < 1)
		return pipar_errf(err, "no samples to shard");
	if (k < 1 || k > SHARD_MAX || spec->index < 0 || spec->index >= k)
		return pipar_errf(err, "bad shard %d/%d", spec->index, k);
	if (spec->partition == PIPAR_PARTITION_IID) {
		if (k > count)
			return pipar_errf(err, "%d iid shards of %d samples "
					  "would leave some empty", k, count);
	} else if (spec->partition == PIPAR_PARTITION_DIRICHLET) {
		if (!(spec->alpha > 0) || !isfinite(spec->alpha))
			return pipar_errf(err, "bad dirichlet alpha %g",
					  spec->alpha);
	} else {
		return pipar_errf(err, "unknown partition %d",
				  (int)spec->partition);
	}
	mine = calloc((size_t)count, 1);
	if (!mine)
		return pipar_errf(err, "out of memory");
	if (spec->partition == PIPAR_PARTITION_IID) {
		int *perm = malloc((size_t)count * sizeof(*perm));
		struct pipar_rng r;
		size_t lo, hi;

		if (!perm) {
			free(mine);
			return pipar_errf(err, "out of memory");
		}
		for (int i = 0; i < count; i++)
			perm[i] = i;
		pipar_rng_seed(&r, spec->seed, SHARD_STREAM_IID);
		pipar_rng_shuffle(&r, perm, (size_t)count);
		lo = (size_t)count * (size_t)spec->index / (size_t)k;
		hi = (size_t)count * ((size_t)spec->index + 1) / (size_t)k;
		for (size_t j = lo; j < hi; j++)
			mine[perm[j]] = 1;
		free(perm);
	} else if (shard_dirichlet(d, spec, mine, err)) {
		free(mine);
		return -1;
	}
	for (int i = 0; i < count; i++)
		m += mine[i];
	out = malloc((size_t)(m ? m : 1) * sizeof(*out));
	if (!out) {
		free(mine);
		return pipar_errf(err, "out of memory");
	}
	m = 0;
	for (int i = 0; i < count; i++)
		if (mine[i])
			out[m++] = i;
	free(mine);
	*idx = out;
	*n = m;
	return 0;
}
