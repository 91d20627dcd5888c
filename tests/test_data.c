/*
 * test_data: data set loading (IDX, CIFAR-10, synthetic), refusal of bad
 * files and specs, normalisation, batches and shards.
 *
 * Needs the Fashion-MNIST files under /usr/share/datasets/fashion-mnist
 * (dataset-fashion-mnist, in deps.debian); without them that check fails
 * and the shard checks run on a synthetic set.  Small CIFAR-10 archives are written here.  Scratch files
 * go to a mkdtemp directory under /tmp, removed at the end.
 */
#define _XOPEN_SOURCE 700
#include "data.h"
#include "tensor.h"
#include "util.h"
#include "tap.h"

#include <archive.h>
#include <archive_entry.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FMNIST "/usr/share/datasets/fashion-mnist"

static char tmp[64];

/* ---- helpers ---------------------------------------------------------- */

static uint8_t *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long size;

	*n = 0;
	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 &&
	    fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)size + 1);
		if (buf && fread(buf, 1, (size_t)size, f) == (size_t)size)
			*n = (size_t)size;
	}
	fclose(f);
	return buf;
}

static int spew(const char *path, const void *a, size_t na, const void *b,
		size_t nb)
{
	FILE *f = fopen(path, "wb");
	int rc = 0;

	if (!f)
		return -1;
	if (na && fwrite(a, 1, na, f) != na)
		rc = -1;
	if (nb && fwrite(b, 1, nb, f) != nb)
		rc = -1;
	if (fclose(f) != 0)
		rc = -1;
	return rc;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Writes an IDX file: magic, dims, then n data bytes and extra junk. */
static int write_idx(const char *path, uint32_t magic, const uint32_t *dims,
		     int ndims, const uint8_t *data, size_t n, size_t extra)
{
	uint8_t hdr[16];
	size_t hlen = 4 + 4 * (size_t)ndims;
	uint8_t *body = calloc(n + extra + 1, 1);
	int rc;

	if (!body)
		return -1;
	put_be32(hdr, magic);
	for (int i = 0; i < ndims; i++)
		put_be32(hdr + 4 + 4 * i, dims[i]);
	if (n)
		memcpy(body, data, n);
	for (size_t i = 0; i < extra; i++)
		body[n + i] = 0xa5;
	rc = spew(path, hdr, hlen, body, n + extra);
	free(body);
	return rc;
}

static char *path_in(char *buf, size_t len, const char *dir,
		     const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
	return buf;
}

static void mkcase(char *dir, size_t len, const char *name)
{
	snprintf(dir, len, "%s/%s", tmp, name);
	mkdir(dir, 0700);
}

/* Opens spec expecting failure with err containing want1 and want2. */
static void refuse(const char *spec, const char *want1, const char *want2,
		   const char *what)
{
	static struct pipar_data poison;
	char err[PIPAR_ERRLEN] = "";
	struct pipar_data *d = &poison;
	int rc = pipar_data_open(spec, &d, err);
	int good = rc == -1 && d == NULL && strchr(err, '\n') == NULL &&
		   (!want1 || strstr(err, want1)) &&
		   (!want2 || strstr(err, want2));

	ok(good, "refused: %s", what);
	diag("  %s", err);
	if (rc == 0)
		pipar_data_free(d);
}

static struct pipar_data *load(const char *spec)
{
	char err[PIPAR_ERRLEN] = "";
	struct pipar_data *d = NULL;

	if (pipar_data_open(spec, &d, err)) {
		diag("cannot load '%s': %s", spec, err);
		return NULL;
	}
	return d;
}

static int same_data(const struct pipar_data *a, const struct pipar_data *b)
{
	return a && b && a->count == b->count &&
	       pipar_shape_eq(a->shape, b->shape) && a->classes == b->classes &&
	       memcmp(a->labels, b->labels, (size_t)a->count) == 0 &&
	       memcmp(a->pixels, b->pixels,
		      (size_t)a->count * pipar_shape_size(a->shape)) == 0;
}

static int rm_one(const char *p, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

/* ---- shapes ----------------------------------------------------------- */

static void test_shapes(void)
{
	static const char *bad[] = {
		"", "x", "28", "0x28x28", "3x0x4", "3x32x32x1", "3x-1x2",
		"3x32x32 ", " 3x3x3", "+3x3x3", "65537x1", "3xx3", "3x3x",
		"3X3", "1x99999999999999999999", "1.5x2",
	};
	struct pipar_shape s = { 0, 0, 0 };
	char buf[32];
	int all = 1;

	ok(pipar_shape_parse("3x32x32", &s) == 0 && s.c == 3 && s.h == 32 &&
	   s.w == 32, "shape 3x32x32");
	ok(pipar_shape_parse("28x14", &s) == 0 && s.c == 1 && s.h == 28 &&
	   s.w == 14, "shape HxW means 1xHxW");
	ok(pipar_shape_parse("1x65536x1", &s) == 0 && s.h == 65536,
	   "shape side 65536 accepted");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (pipar_shape_parse(bad[i], &s) == 0) {
			diag("accepted bad shape '%s'", bad[i]);
			all = 0;
		}
	}
	ok(all, "malformed shapes refused");
	pipar_shape_str((struct pipar_shape){ 3, 32, 16 }, buf, sizeof(buf));
	ok(strcmp(buf, "3x32x16") == 0, "shape_str: %s", buf);
	pipar_shape_str((struct pipar_shape){ 3, 32, 16 }, buf, 4);
	ok(strcmp(buf, "3x3") == 0, "shape_str truncates to the buffer");
}

/* ---- specs ------------------------------------------------------------ */

static void test_specs(void)
{
	char buf[64];

	ok(pipar_data_spec_split("fashion-mnist", "test", buf,
				 sizeof(buf)) == 0 &&
	   strcmp(buf, "fashion-mnist:test") == 0, "spec_split: %s", buf);
	ok(pipar_data_spec_split("fashion-mnist:test", "train", buf,
				 sizeof(buf)) == 0 &&
	   strcmp(buf, "fashion-mnist:train") == 0, "spec_split: %s", buf);
	ok(pipar_data_spec_split("synthetic:10:3x8x8:4:train", "test", buf,
				 sizeof(buf)) == 0 &&
	   strcmp(buf, "synthetic:10:3x8x8:4:test") == 0,
	   "spec_split: %s", buf);
	ok(pipar_data_spec_split("fashion-mnist", "test", buf, 18) == -1,
	   "spec_split refuses a short buffer");
	ok(pipar_data_spec_split("fashion-mnist", "test", buf, 19) == 0,
	   "spec_split fits exactly");
	ok(pipar_data_spec_split("fashion-mnist", "valid", buf,
				 sizeof(buf)) == -1,
	   "spec_split refuses an unknown split");

	refuse("", "empty", NULL, "empty spec");
	refuse("imagenet:/x", "unknown data source",
	       "fashion-mnist, mnist, cifar10, synthetic", "unknown source");
	refuse("fashion", "'fashion'", "unknown", "prefix of a source name");
	refuse("mnist", "needs a directory", NULL, "mnist without DIR");
	refuse("mnist:test", "needs a directory", NULL,
	       "mnist:test without DIR");
	refuse("fashion-mnist:", "empty directory", NULL,
	       "fashion-mnist with empty DIR");
	refuse("cifar10", "needs an archive", NULL, "cifar10 without FILE");
	refuse("cifar10:test", "needs an archive", NULL,
	       "cifar10:test without FILE");
	ok(pipar_data_spec_split("fashion-mnist@8000", "test", buf,
				 sizeof(buf)) == 0 &&
	   strcmp(buf, "fashion-mnist:test") == 0,
	   "spec_split of a first-N set names the other split whole: %s", buf);
	ok(pipar_data_spec_split("fashion-mnist:train@8000", "test", buf,
				 sizeof(buf)) == 0 &&
	   strcmp(buf, "fashion-mnist:test") == 0, "spec_split: %s", buf);

	/* "@N": the first N samples of the split, exactly. */
	{
		struct pipar_data *all = load("synthetic:50:1x4x4:3:test");
		struct pipar_data *head = load("synthetic:50:1x4x4:3:test@20");
		size_t px = all ? pipar_shape_size(all->shape) : 0;

		ok(all && head && head->count == 20 && all->count == 50 &&
		   strcmp(head->split, "test") == 0 &&
		   memcmp(head->labels, all->labels, 20) == 0 &&
		   memcmp(head->pixels, all->pixels, 20 * px) == 0,
		   "@20 keeps exactly the first 20 samples of the split");
		pipar_data_free(all);
		pipar_data_free(head);
		head = load("synthetic:50@50");
		ok(head && head->count == 50, "@N equal to the set's size is the whole set");
		pipar_data_free(head);
	}
	refuse("synthetic:50@51", "first 51 samples", "the set has 50",
	       "@N larger than the set");
	refuse("synthetic:50@0", "bad sample count '0'", NULL, "@0");
	refuse("synthetic:50@x", "bad sample count 'x'", NULL, "@ not a number");
	refuse("synthetic:50@", "bad sample count ''", NULL, "@ with nothing after");
	refuse("synthetic:50@-3", "bad sample count '-3'", NULL, "@ negative");
	refuse("synthetic:50@99999999999", "bad sample count", NULL, "@ past INT_MAX");
	pipar_data_free(NULL);
	ok(1, "pipar_data_free(NULL) is a no-op");
}

/* ---- Fashion-MNIST ---------------------------------------------------- */

static int have_fmnist(void)
{
	return access(FMNIST "/train-images-idx3-ubyte.gz", R_OK) == 0 &&
	       access(FMNIST "/train-labels-idx1-ubyte.gz", R_OK) == 0 &&
	       access(FMNIST "/t10k-images-idx3-ubyte.gz", R_OK) == 0 &&
	       access(FMNIST "/t10k-labels-idx1-ubyte.gz", R_OK) == 0;
}

static void test_fmnist_train(void)
{
	struct pipar_data *d = load("fashion-mnist");
	struct pipar_norm norm;
	int hist[10] = { 0 }, flat = 1;
	unsigned long sum = 0;

	if (!ok(d != NULL, "fashion-mnist train loads"))
		return;
	ok(d->count == 60000 && d->shape.c == 1 && d->shape.h == 28 &&
	   d->shape.w == 28 && d->classes == 10,
	   "train: 60000 of 1x28x28, 10 classes");
	ok(strcmp(d->name, "fashion-mnist") == 0 &&
	   strcmp(d->split, "train") == 0, "train: name and split");
	ok(d->labels[0] == 9 && d->labels[1] == 0 && d->labels[3] == 3,
	   "train: first labels 9 0 0 3");
	for (int i = 0; i < d->count; i++)
		hist[d->labels[i]]++;
	for (int k = 0; k < 10; k++)
		flat &= hist[k] == 6000;
	ok(flat, "train: 6000 samples per class");
	for (int j = 0; j < 784; j++)
		sum += d->pixels[j];
	ok(sum == 76247, "train: first image sums to 76247 (%lu)", sum);

	pipar_data_norm(d, &norm);
	ok(norm.channels == 1 && fabsf(norm.mean[0] - 0.2860f) < 0.001f &&
	   fabsf(norm.std[0] - 0.3530f) < 0.001f,
	   "train norm: mean %.4f std %.4f", norm.mean[0], norm.std[0]);
	pipar_data_free(d);
}

static void test_fmnist_test(struct pipar_data **keep)
{
	struct pipar_data *d = load("fashion-mnist:test");
	struct pipar_norm norm;
	int hist[10] = { 0 }, flat = 1, idx[3] = { 0, 5, 9999 }, y[3];
	float *x;
	int good = 1;

	*keep = d;
	if (!ok(d != NULL, "fashion-mnist:test loads"))
		return;
	ok(d->count == 10000 && d->shape.c == 1 && d->shape.h == 28 &&
	   d->shape.w == 28 && d->classes == 10 &&
	   strcmp(d->split, "test") == 0,
	   "test: 10000 of 1x28x28, 10 classes, split test");
	for (int i = 0; i < d->count; i++)
		hist[d->labels[i]]++;
	for (int k = 0; k < 10; k++)
		flat &= hist[k] == 1000;
	ok(flat, "test: 1000 samples per class");
	ok(d->labels[0] == 9 && d->labels[1] == 2 && d->labels[2] == 1 &&
	   d->labels[3] == 1 && d->labels[4] == 6,
	   "test: first labels 9 2 1 1 6");

	pipar_data_norm(d, &norm);
	x = malloc(3 * 784 * sizeof(*x));
	pipar_data_batch(d, &norm, idx, 3, x, y);
	for (int k = 0; k < 3; k++) {
		if (y[k] != d->labels[idx[k]])
			good = 0;
		for (int j = 0; j < 784; j++) {
			uint8_t v = d->pixels[(size_t)idx[k] * 784 + j];
			float want = ((float)v / 255.0f - norm.mean[0]) /
				     norm.std[0];

			if (fabsf(x[k * 784 + j] - want) > 1e-5f)
				good = 0;
		}
	}
	ok(good, "batch: normalised pixels and labels of samples 0, 5, 9999");
	pipar_data_batch(d, NULL, idx, 1, x, NULL);
	ok(x[300] == (float)d->pixels[300] / 255.0f,
	   "batch without norm is x/255");
	free(x);
}

/* Writes the test split back out as plain IDX files in dir. */
static int write_plain(const struct pipar_data *d, const char *dir)
{
	uint32_t idim[3] = { (uint32_t)d->count, 28, 28 };
	uint32_t ldim[1] = { (uint32_t)d->count };
	char p[256];

	if (write_idx(path_in(p, sizeof(p), dir, "t10k-images-idx3-ubyte"),
		      0x803, idim, 3, d->pixels, (size_t)d->count * 784, 0))
		return -1;
	return write_idx(path_in(p, sizeof(p), dir, "t10k-labels-idx1-ubyte"),
			 0x801, ldim, 1, d->labels, (size_t)d->count, 0);
}

static void test_plain_idx(const struct pipar_data *ref)
{
	char dir[128], spec[256], p[256];
	struct pipar_data *d;

	mkcase(dir, sizeof(dir), "plain");
	if (!ok(write_plain(ref, dir) == 0, "wrote uncompressed IDX copies"))
		return;
	snprintf(spec, sizeof(spec), "fashion-mnist:%s:test", dir);
	d = load(spec);
	ok(same_data(d, ref), "uncompressed IDX loads identically");
	pipar_data_free(d);

	snprintf(spec, sizeof(spec), "mnist:%s/:test", dir);
	d = load(spec);
	ok(d && same_data(d, ref) && strcmp(d->name, "mnist") == 0,
	   "mnist:DIR/:test reads the same files, name mnist");
	pipar_data_free(d);

	/* .gz is preferred when both exist. */
	symlink(FMNIST "/t10k-labels-idx1-ubyte.gz",
		path_in(p, sizeof(p), dir, "t10k-labels-idx1-ubyte.gz"));
	d = load(spec);
	ok(same_data(d, ref), "mixed gzip labels and plain images load");
	pipar_data_free(d);

	snprintf(spec, sizeof(spec), "fashion-mnist:%s", dir);
	refuse(spec, "cannot open", "train-labels-idx1-ubyte[.gz]': No such "
	       "file or directory", "train split missing from DIR");
}

/* ---- broken IDX files ------------------------------------------------- */

static void test_idx_truncated(const struct pipar_data *ref)
{
	static const char *gz_labels = FMNIST "/t10k-labels-idx1-ubyte.gz";
	static const char *gz_images = FMNIST "/t10k-images-idx3-ubyte.gz";
	char dir[128], spec[256], lp[256], ip[256], what[96];
	size_t nl, ni, cuts[40], ncut = 0;
	uint8_t *lab = slurp(gz_labels, &nl), *img = slurp(gz_images, &ni);

	if (!ok(lab && img && nl > 5000, "read the gzip files"))
		goto out;
	mkcase(dir, sizeof(dir), "cut");
	snprintf(spec, sizeof(spec), "fashion-mnist:%s:test", dir);
	path_in(lp, sizeof(lp), dir, "t10k-labels-idx1-ubyte.gz");
	path_in(ip, sizeof(ip), dir, "t10k-images-idx3-ubyte.gz");

	/* Labels: in the gzip header, through the deflate data, in the
	 * trailer. */
	symlink(gz_images, ip);
	{
		static const size_t at[] = { 1, 2, 3, 5, 9, 10, 11, 12, 16,
					     20, 40, 100, 333, 1000, 2000,
					     3000, 4096, 5000 };

		for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++)
			cuts[ncut++] = at[i];
		for (size_t back = 1; back <= 16; back *= 2)
			cuts[ncut++] = nl - back;
		cuts[ncut++] = nl - 9;
		cuts[ncut++] = nl - 7;
		cuts[ncut++] = nl - 5;
	}
	for (size_t i = 0; i < ncut; i++) {
		spew(lp, lab, cuts[i], NULL, 0);
		snprintf(what, sizeof(what), "labels .gz cut at %zu of %zu",
			 cuts[i], nl);
		refuse(spec, lp, NULL, what);
	}
	spew(lp, lab, 3000, NULL, 0);
	refuse(spec, "truncated", NULL, "mid-stream cut says truncated");
	spew(lp, lab, 0, NULL, 0);
	refuse(spec, "empty file", NULL, "empty labels file");

	/* Images: a few cuts, labels intact. */
	remove(lp);
	remove(ip);
	symlink(gz_labels, lp);
	{
		size_t at[] = { 4, 15, 1000, 100000, ni / 2, ni - 100, ni - 8,
				ni - 3 };

		for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
			spew(ip, img, at[i], NULL, 0);
			snprintf(what, sizeof(what),
				 "images .gz cut at %zu of %zu", at[i], ni);
			refuse(spec, ip, NULL, what);
		}
	}
	remove(ip);

	/* Plain IDX cut: the byte counts are reported. */
	{
		uint32_t dims[3] = { 10000, 28, 28 };

		path_in(ip, sizeof(ip), dir, "t10k-images-idx3-ubyte");
		write_idx(ip, 0x803, dims, 3, ref->pixels, 1000 - 16, 0);
		refuse(spec, ip, "truncated: 7840016 bytes expected, 1000 read",
		       "plain images cut at 1000 bytes");
		write_idx(ip, 0x803, dims, 3, NULL, 0, 0);
		refuse(spec, "truncated: 7840016 bytes expected, 16 read", NULL,
		       "plain images with a header only");
		spew(ip, "\0\0\x08\x03\0\0", 6, NULL, 0);
		refuse(spec, "truncated: 16 bytes expected, 6 read", NULL,
		       "plain images cut inside the header");
		remove(ip);
	}
out:
	free(lab);
	free(img);
}

static void test_idx_corrupt(const struct pipar_data *ref)
{
	static const char *gz_labels = FMNIST "/t10k-labels-idx1-ubyte.gz";
	static const char *gz_images = FMNIST "/t10k-images-idx3-ubyte.gz";
	char dir[128], spec[256], lp[256], ip[256], what[96];
	size_t nl, ni;
	uint8_t *lab = slurp(gz_labels, &nl), *img = slurp(gz_images, &ni);
	uint32_t ldim[1] = { 10000 }, idim[3] = { 10000, 28, 28 };
	uint8_t *bad = NULL;

	if (!lab || !img)
		goto out;
	mkcase(dir, sizeof(dir), "corrupt");
	snprintf(spec, sizeof(spec), "fashion-mnist:%s:test", dir);
	path_in(lp, sizeof(lp), dir, "t10k-labels-idx1-ubyte.gz");
	path_in(ip, sizeof(ip), dir, "t10k-images-idx3-ubyte.gz");
	symlink(gz_images, ip);

	/* Overwritten bytes in the deflate data, and single flipped bits
	 * that may still decode (caught by the gzip CRC). */
	{
		static const size_t at[] = { 30, 1500, 2500, 4000 };

		for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
			uint8_t save[8];

			memcpy(save, lab + at[i], 8);
			memset(lab + at[i], 0xff, 8);
			spew(lp, lab, nl, NULL, 0);
			memcpy(lab + at[i], save, 8);
			snprintf(what, sizeof(what),
				 "labels .gz with 8 bytes of 0xff at %zu",
				 at[i]);
			refuse(spec, lp, NULL, what);
		}
		for (size_t i = 0; i < 6; i++) {
			size_t pos = 20 + i * (nl - 40) / 5;

			lab[pos] ^= 0x10;
			spew(lp, lab, nl, NULL, 0);
			lab[pos] ^= 0x10;
			snprintf(what, sizeof(what),
				 "labels .gz with a bit flipped at %zu", pos);
			refuse(spec, lp, NULL, what);
		}
		lab[nl - 6] ^= 0x01; /* the stored CRC */
		spew(lp, lab, nl, NULL, 0);
		lab[nl - 6] ^= 0x01;
		refuse(spec, "crc", NULL, "labels .gz with a wrong stored CRC");
	}
	remove(ip);
	remove(lp);
	symlink(gz_labels, lp);
	{
		uint8_t save[16];

		memcpy(save, img + ni / 3, 16);
		memset(img + ni / 3, 0x55, 16);
		spew(ip, img, ni, NULL, 0);
		memcpy(img + ni / 3, save, 16);
		refuse(spec, ip, NULL, "images .gz with corrupt bytes");
	}
	remove(ip);
	remove(lp);

	/* Plain files: magic, trailing bytes, labels, counts, dims. */
	path_in(lp, sizeof(lp), dir, "t10k-labels-idx1-ubyte");
	path_in(ip, sizeof(ip), dir, "t10k-images-idx3-ubyte");
	write_idx(ip, 0x803, idim, 3, ref->pixels, 7840000, 0);

	write_idx(lp, 0x12345678, ldim, 1, ref->labels, 10000, 0);
	refuse(spec, "bad magic 0x12345678 (expected 0x00000801, IDX labels)",
	       lp, "labels with wrong magic");
	write_idx(lp, 0x801, ldim, 1, ref->labels, 10000, 0);
	write_idx(ip, 0x801, idim, 1, ref->pixels, 10000, 0);
	refuse(spec, "bad magic 0x00000801 (expected 0x00000803, IDX images)",
	       ip, "labels file in place of images");
	write_idx(ip, 0x803, idim, 3, ref->pixels, 7840000, 0);

	write_idx(lp, 0x801, ldim, 1, ref->labels, 10000, 3);
	refuse(spec, "trailing data: 10008 bytes expected, 10011 read", lp,
	       "labels with trailing bytes");
	write_idx(lp, 0x801, ldim, 1, ref->labels, 10000, 0);
	write_idx(ip, 0x803, idim, 3, ref->pixels, 7840000, 1);
	refuse(spec, "trailing data", ip, "images with a trailing byte");
	write_idx(ip, 0x803, idim, 3, ref->pixels, 7840000, 0);

	bad = malloc(10000);
	memcpy(bad, ref->labels, 10000);
	bad[7] = 10;
	write_idx(lp, 0x801, ldim, 1, bad, 10000, 0);
	refuse(spec, "label 10 at index 7 out of range", lp,
	       "label value 10");
	bad[7] = 255;
	write_idx(lp, 0x801, ldim, 1, bad, 10000, 0);
	refuse(spec, "label 255", NULL, "label value 255");

	ldim[0] = 9999;
	write_idx(lp, 0x801, ldim, 1, ref->labels, 9999, 0);
	refuse(spec, "10000 images", "9999 labels", "image/label count "
	       "mismatch");
	ldim[0] = 10000;
	write_idx(lp, 0x801, ldim, 1, ref->labels, 10000, 0);
	ldim[0] = 0;
	write_idx(lp, 0x801, ldim, 1, NULL, 0, 0);
	refuse(spec, "bad label count 0", NULL, "zero labels");
	ldim[0] = 10000;
	write_idx(lp, 0x801, ldim, 1, ref->labels, 10000, 0);

	{
		uint32_t d0[3] = { 10000, 0, 28 }, d1[3] = { 1, 2000, 2000 },
			 d2[3] = { 20000000, 1, 1 };

		write_idx(ip, 0x803, d0, 3, NULL, 0, 0);
		refuse(spec, "bad dimensions 10000x0x28", NULL,
		       "images with a zero side");
		write_idx(ip, 0x803, d1, 3, NULL, 0, 0);
		refuse(spec, "bad dimensions 1x2000x2000", NULL,
		       "images over 1024x1024");
		write_idx(ip, 0x803, d2, 3, NULL, 0, 0);
		refuse(spec, "bad dimensions 20000000x1x1", NULL,
		       "more than 10 million images");
	}
	write_idx(ip, 0x803, idim, 3, ref->pixels, 7840000, 0);
	{
		struct pipar_data *d = load(spec);

		ok(same_data(d, ref), "the repaired plain files load again");
		pipar_data_free(d);
	}

	remove(ip);
	refuse(spec, "cannot open", "t10k-images-idx3-ubyte[.gz]': No such "
	       "file or directory", "missing images file");
	remove(lp);
	refuse(spec, "cannot open", "No such file or directory",
	       "empty directory");
	snprintf(spec, sizeof(spec), "fashion-mnist:%s/nonexistent:test", tmp);
	refuse(spec, "cannot open", "nonexistent/t10k-", "missing directory");
out:
	free(bad);
	free(lab);
	free(img);
}

/* ---- CIFAR-10 --------------------------------------------------------- */

static const int cifar_n[6] = { 3, 2, 4, 1, 2, 3 }; /* batches 1-5, test */

static uint8_t cifar_label(int b, int r)
{
	return (uint8_t)((b * 7 + r * 3) % 10);
}

static uint8_t cifar_pixel(int b, int r, int j)
{
	return (uint8_t)(b * 31 + r * 17 + j * 13 + j / 1024);
}

/* Batch b (0..4 data, 5 test) as records; bad_size adds a byte, bad_label
 * puts 11 in the last record. */
static uint8_t *cifar_batch(int b, int bad_size, int bad_label, size_t *n)
{
	uint8_t *buf;

	*n = (size_t)cifar_n[b] * 3073 + (bad_size ? 1 : 0);
	buf = calloc(*n, 1);
	if (!buf)
		return NULL;
	for (int r = 0; r < cifar_n[b]; r++) {
		uint8_t *rec = buf + (size_t)r * 3073;

		rec[0] = cifar_label(b, r);
		for (int j = 0; j < 3072; j++)
			rec[1 + j] = cifar_pixel(b, r, j);
	}
	if (bad_label)
		buf[(size_t)(cifar_n[b] - 1) * 3073] = 11;
	return buf;
}

/* Adds one regular file to an archive being written. */
static int add_entry(struct archive *a, const char *name, const void *data,
		     size_t n)
{
	struct archive_entry *e = archive_entry_new();
	int rc = -1;

	if (!e)
		return -1;
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, (la_int64_t)n);
	if (archive_write_header(a, e) == ARCHIVE_OK &&
	    (n == 0 || archive_write_data(a, data, n) == (la_ssize_t)n))
		rc = 0;
	archive_entry_free(e);
	return rc;
}

/* Writes tmp/NAME.tar.gz holding the batches in mask (bit b for batch b,
 * 5 the test batch), out of order and with an unrelated file between. */
static int cifar_archive(const char *name, unsigned mask, int bad_size,
			 int bad_label, char *out, size_t len)
{
	static const int order[] = { 2, -1, 5, 4, 0, 1, 3 };
	struct archive *a = archive_write_new();
	int rc = 0;

	snprintf(out, len, "%s/%s.tar.gz", tmp, name);
	if (!a || archive_write_add_filter_gzip(a) != ARCHIVE_OK ||
	    archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
	    archive_write_open_filename(a, out) != ARCHIVE_OK) {
		archive_write_free(a);
		return -1;
	}
	for (size_t i = 0; rc == 0 && i < sizeof(order) / sizeof(order[0]);
	     i++) {
		int b = order[i];
		char path[64];
		uint8_t *buf;
		size_t n;

		if (b < 0) {
			rc = add_entry(a, "cifar-10-batches-bin/"
				       "batches.meta.txt", "airplane\n", 9);
			continue;
		}
		if (!(mask & (1u << b)))
			continue;
		if (b == 5)
			snprintf(path, sizeof(path),
				 "cifar-10-batches-bin/test_batch.bin");
		else
			snprintf(path, sizeof(path), "cifar-10-batches-bin/"
				 "data_batch_%d.bin", b + 1);
		buf = cifar_batch(b, b == bad_size, b == bad_label, &n);
		rc = buf ? add_entry(a, path, buf, n) : -1;
		free(buf);
	}
	if (archive_write_close(a) != ARCHIVE_OK)
		rc = -1;
	archive_write_free(a);
	return rc;
}

/* Writes data as a gzip stream with no archive inside. */
static int write_gzip(const char *path, const void *data, size_t n)
{
	struct archive *a = archive_write_new();
	int rc = -1;

	if (a && archive_write_add_filter_gzip(a) == ARCHIVE_OK &&
	    archive_write_set_format_raw(a) == ARCHIVE_OK &&
	    archive_write_open_filename(a, path) == ARCHIVE_OK &&
	    add_entry(a, "data", data, n) == 0 &&
	    archive_write_close(a) == ARCHIVE_OK)
		rc = 0;
	archive_write_free(a);
	return rc;
}

static void test_cifar(void)
{
	char tgz[256], spec[320], what[96];
	struct pipar_data *d;
	size_t n;
	uint8_t *gz;
	int good = 1, k = 0;

	if (!ok(cifar_archive("cifar", 0x3f, -1, -1, tgz, sizeof(tgz)) == 0,
		"built a CIFAR-10 tar.gz"))
		return;
	snprintf(spec, sizeof(spec), "cifar10:%s", tgz);
	d = load(spec);
	if (ok(d != NULL, "cifar10 train loads")) {
		ok(d->count == 12 && d->shape.c == 3 && d->shape.h == 32 &&
		   d->shape.w == 32 && d->classes == 10 &&
		   strcmp(d->name, "cifar10") == 0 &&
		   strcmp(d->split, "train") == 0,
		   "cifar10 train: 12 of 3x32x32, 10 classes");
		for (int b = 0; b < 5; b++)
			for (int r = 0; r < cifar_n[b]; r++, k++) {
				if (k >= d->count ||
				    d->labels[k] != cifar_label(b, r)) {
					good = 0;
					continue;
				}
				for (int j = 0; j < 3072; j++)
					if (d->pixels[(size_t)k * 3072 + j] !=
					    cifar_pixel(b, r, j))
						good = 0;
			}
		ok(good, "cifar10 train: batches 1-5 in order, labels and "
		   "pixels exact");
		pipar_data_free(d);
	}
	snprintf(spec, sizeof(spec), "cifar10:%s:test", tgz);
	d = load(spec);
	good = d && d->count == 3 && strcmp(d->split, "test") == 0;
	for (int r = 0; good && r < 3; r++)
		good = d->labels[r] == cifar_label(5, r) &&
		       d->pixels[(size_t)r * 3072 + 2000] ==
			       cifar_pixel(5, r, 2000);
	ok(good, "cifar10 test: test_batch.bin");
	pipar_data_free(d);

	/* Truncated and corrupt copies of the archive. */
	gz = slurp(tgz, &n);
	if (ok(gz && n > 100, "read the archive back (%zu bytes)", n)) {
		size_t at[] = { 1, 5, 9, 10, 15, 40, 200, n / 3, n / 2,
				n - 40, n - 9, n - 8, n - 4, n - 1 };
		char cut[256];

		snprintf(cut, sizeof(cut), "%s/cut.tar.gz", tmp);
		snprintf(spec, sizeof(spec), "cifar10:%s", cut);
		for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
			spew(cut, gz, at[i], NULL, 0);
			snprintf(what, sizeof(what),
				 "cifar tar.gz cut at %zu of %zu", at[i], n);
			refuse(spec, cut, NULL, what);
		}
		for (size_t i = 0; i < 4; i++) {
			size_t pos = 30 + i * (n - 60) / 3;

			gz[pos] ^= 0x04;
			spew(cut, gz, n, NULL, 0);
			gz[pos] ^= 0x04;
			snprintf(what, sizeof(what),
				 "cifar tar.gz with a bit flipped at %zu", pos);
			refuse(spec, cut, NULL, what);
		}
		remove(cut);
	}
	free(gz);

	cifar_archive("nob4", 0x37, -1, -1, tgz, sizeof(tgz));
	snprintf(spec, sizeof(spec), "cifar10:%s", tgz);
	refuse(spec, "no data_batch_4.bin in the archive", tgz,
	       "archive without data_batch_4.bin");
	snprintf(spec, sizeof(spec), "cifar10:%s:test", tgz);
	d = load(spec);
	ok(d && d->count == 3, "its test split still loads");
	pipar_data_free(d);

	cifar_archive("notest", 0x05, -1, -1, tgz, sizeof(tgz));
	snprintf(spec, sizeof(spec), "cifar10:%s:test", tgz);
	refuse(spec, "no test_batch.bin", NULL, "archive without test batch");
	snprintf(spec, sizeof(spec), "cifar10:%s", tgz);
	refuse(spec, "no data_batch_2.bin, data_batch_4.bin, data_batch_5.bin",
	       NULL, "missing batches are all named");

	cifar_archive("badsize", 0x3f, 1, -1, tgz, sizeof(tgz));
	snprintf(spec, sizeof(spec), "cifar10:%s", tgz);
	refuse(spec, "data_batch_2.bin' has 6147 bytes, not a positive "
	       "multiple of 3073", NULL, "batch size not a multiple of 3073");

	cifar_archive("badlabel", 0x3f, -1, 4, tgz, sizeof(tgz));
	snprintf(spec, sizeof(spec), "cifar10:%s", tgz);
	refuse(spec, "label 11 of record 1 out of range", "data_batch_5.bin",
	       "record with label 11");

	snprintf(tgz, sizeof(tgz), "%s/text.gz", tmp);
	if (ok(write_gzip(tgz, "not an archive\n", 15) == 0,
	       "built a gzip file holding text")) {
		snprintf(spec, sizeof(spec), "cifar10:%s", tgz);
		refuse(spec, tgz, NULL, "gzip file that is not a tar");
	}
	snprintf(spec, sizeof(spec), "cifar10:%s/none.tar.gz", tmp);
	refuse(spec, "cannot open", "none.tar.gz': No such file or directory",
	       "missing archive");
}

/* ---- synthetic -------------------------------------------------------- */

/* Accuracy on test of the nearest class mean of train: a crude check that
 * the classes are separable. */
static double centroid_accuracy(const struct pipar_data *tr,
				const struct pipar_data *te)
{
	size_t size = pipar_shape_size(tr->shape);
	double *mean = calloc((size_t)tr->classes * size, sizeof(*mean));
	int *cnt = calloc((size_t)tr->classes, sizeof(*cnt)), good = 0;

	if (!mean || !cnt) {
		free(mean);
		free(cnt);
		return 0;
	}
	for (int i = 0; i < tr->count; i++) {
		cnt[tr->labels[i]]++;
		for (size_t j = 0; j < size; j++)
			mean[tr->labels[i] * size + j] +=
				tr->pixels[(size_t)i * size + j];
	}
	for (int k = 0; k < tr->classes; k++)
		for (size_t j = 0; j < size; j++)
			mean[k * size + j] /= cnt[k] ? cnt[k] : 1;
	for (int i = 0; i < te->count; i++) {
		double best = INFINITY;
		int arg = -1;

		for (int k = 0; k < tr->classes; k++) {
			double dist = 0;

			for (size_t j = 0; j < size; j++) {
				double t = te->pixels[(size_t)i * size + j] -
					   mean[k * size + j];

				dist += t * t;
			}
			if (dist < best) {
				best = dist;
				arg = k;
			}
		}
		good += arg == te->labels[i];
	}
	free(mean);
	free(cnt);
	return (double)good / te->count;
}

static void test_synthetic(void)
{
	static const char *bad[] = {
		"synthetic", "synthetic:", "synthetic:test", "synthetic:0",
		"synthetic:-5", "synthetic:10x", "synthetic:10000001",
		"synthetic:1e3", "synthetic:10:5x8x8", "synthetic:10:0x8",
		"synthetic:10:8", "synthetic:10:1x8x8:1",
		"synthetic:10:1x8x8:256", "synthetic:10:1x8x8:3:extra",
		"synthetic:10:1x8x8:3:extra:test", "synthetic:10::3",
		"synthetic:10:1x8x8:", "synthetic:10:1x300x300",
	};
	struct pipar_data *a = load("synthetic:300");
	struct pipar_data *b = load("synthetic:300");
	struct pipar_data *t = load("synthetic:300:test"), *c;
	struct pipar_norm norm;
	char what[96];
	int good = 1, seen[5] = { 0 };

	if (!ok(a && b && t, "synthetic:300 and :test load"))
		goto out;
	ok(a->count == 300 && a->shape.c == 1 && a->shape.h == 28 &&
	   a->shape.w == 28 && a->classes == 10 &&
	   strcmp(a->name, "synthetic") == 0 &&
	   strcmp(a->split, "train") == 0 && strcmp(t->split, "test") == 0,
	   "synthetic defaults: 1x28x28, 10 classes");
	ok(same_data(a, b), "synthetic: same spec, same bytes");
	ok(memcmp(a->pixels, t->pixels, 300 * 784) != 0,
	   "synthetic: train and test samples differ");
	ok(memcmp(a->pixels, a->pixels + 10 * 784, 784) != 0 &&
	   a->labels[0] == a->labels[10],
	   "synthetic: two samples of one class differ");
	for (int i = 0; i < a->count; i++)
		good &= a->labels[i] < 10;
	ok(good, "synthetic: labels below 10");

	c = load("synthetic:2000");
	if (c) {
		struct pipar_data *ct = load("synthetic:500:test");
		double acc = ct ? centroid_accuracy(c, ct) : 0;

		ok(acc > 0.4, "synthetic: nearest class mean gets %.3f on test "
		   "(chance 0.1)", acc);
		ok(memcmp(c->pixels, a->pixels, 300 * 784) == 0,
		   "synthetic: a shorter set is a prefix of a longer one");
		pipar_data_free(ct);
		pipar_data_free(c);
	}

	c = load("synthetic:50:3x16x12:5:test");
	good = c && c->count == 50 && c->shape.c == 3 && c->shape.h == 16 &&
	       c->shape.w == 12 && c->classes == 5 &&
	       strcmp(c->split, "test") == 0;
	for (int i = 0; good && i < c->count; i++) {
		good = c->labels[i] < 5;
		if (good)
			seen[c->labels[i]] = 1;
	}
	ok(good && seen[0] && seen[1] && seen[2] && seen[3] && seen[4],
	   "synthetic:50:3x16x12:5:test: shape, classes, labels");
	if (c) {
		pipar_data_norm(c, &norm);
		ok(norm.channels == 3 && norm.std[0] > 0.05f &&
		   norm.std[2] > 0.05f && norm.mean[1] > 0.05f &&
		   norm.mean[1] < 0.95f && norm.std[3] == 1.0f,
		   "synthetic 3-channel norm: %.3f/%.3f %.3f/%.3f %.3f/%.3f",
		   norm.mean[0], norm.std[0], norm.mean[1], norm.std[1],
		   norm.mean[2], norm.std[2]);
	}
	pipar_data_free(c);

	c = load("synthetic:20:8x12");
	ok(c && c->shape.c == 1 && c->shape.h == 8 && c->shape.w == 12 &&
	   c->classes == 10, "synthetic:20:8x12 is 1x8x12, 10 classes");
	pipar_data_free(c);
	c = load("synthetic:4:4x2x2:255");
	ok(c && c->shape.c == 4 && c->classes == 255,
	   "synthetic: 4 channels and 255 classes allowed");
	pipar_data_free(c);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(what, sizeof(what), "bad spec '%s'", bad[i]);
		refuse(bad[i], bad[i], NULL, what);
	}
out:
	pipar_data_free(a);
	pipar_data_free(b);
	pipar_data_free(t);
}

/* ---- shards ----------------------------------------------------------- */

static void test_shard_parse(void)
{
	static const char *bad_shard[] = {
		"", "1", "1/", "/4", "4/4", "5/4", "-1/4", "1/0", "a/b",
		"1/4x", " 1/4", "1/ 4", "0/65537", "1/4/2",
	};
	static const char *bad_part[] = {
		"", "IID", "iid ", "dirichlet", "dirichlet:", "dirichlet:0",
		"dirichlet:-1", "dirichlet:nan", "dirichlet:inf",
		"dirichlet:0.5x", "dirichlet: 0.5", "dirichlet:1e999",
		"uniform",
	};
	struct pipar_shard_spec s = { 0, 0, PIPAR_PARTITION_IID, 0, 0 };
	char err[PIPAR_ERRLEN];
	int all = 1;

	ok(pipar_shard_parse("2/5", &s, err) == 0 && s.index == 2 &&
	   s.count == 5, "shard 2/5");
	ok(pipar_shard_parse("0/1", &s, err) == 0 && s.index == 0 &&
	   s.count == 1, "shard 0/1");
	for (size_t i = 0; i < sizeof(bad_shard) / sizeof(bad_shard[0]);
	     i++) {
		err[0] = '\0';
		if (pipar_shard_parse(bad_shard[i], &s, err) == 0 ||
		    !strstr(err, "for --shard: expected I/K")) {
			diag("shard '%s' not refused properly: %s",
			     bad_shard[i], err);
			all = 0;
		}
	}
	ok(all, "malformed shards refused");
	ok(pipar_partition_parse("dirichlet:0.25", &s, err) == 0 &&
	   s.partition == PIPAR_PARTITION_DIRICHLET && s.alpha == 0.25,
	   "partition dirichlet:0.25");
	ok(pipar_partition_parse("iid", &s, err) == 0 &&
	   s.partition == PIPAR_PARTITION_IID, "partition iid");
	all = 1;
	for (size_t i = 0; i < sizeof(bad_part) / sizeof(bad_part[0]); i++) {
		err[0] = '\0';
		if (pipar_partition_parse(bad_part[i], &s, err) == 0 ||
		    !strstr(err, "for --partition: expected iid")) {
			diag("partition '%s' not refused properly: %s",
			     bad_part[i], err);
			all = 0;
		}
	}
	ok(all, "malformed partitions refused");
}

struct shards {
	int *idx[4];
	int n[4];
};

static int make_shards(const struct pipar_data *d, enum pipar_partition p,
		       double alpha, uint64_t seed, int k, struct shards *s)
{
	struct pipar_shard_spec spec = { 0, k, p, alpha, seed };
	char err[PIPAR_ERRLEN];

	memset(s, 0, sizeof(*s));
	for (int i = 0; i < k; i++) {
		spec.index = i;
		if (pipar_data_shard(d, &spec, &s->idx[i], &s->n[i], err)) {
			diag("shard %d/%d: %s", i, k, err);
			return -1;
		}
	}
	return 0;
}

static void free_shards(struct shards *s)
{
	for (int i = 0; i < 4; i++)
		free(s->idx[i]);
	memset(s, 0, sizeof(*s));
}

/* Every sample in exactly one shard, each shard ascending. */
static int partition_ok(const struct pipar_data *d, const struct shards *s,
			int k)
{
	uint8_t *seen = calloc((size_t)d->count, 1);
	int good = seen != NULL, total = 0;

	for (int i = 0; good && i < k; i++) {
		total += s->n[i];
		for (int j = 0; j < s->n[i]; j++) {
			int v = s->idx[i][j];

			if (v < 0 || v >= d->count || seen[v] ||
			    (j && s->idx[i][j - 1] >= v)) {
				good = 0;
				break;
			}
			seen[v] = 1;
		}
	}
	free(seen);
	return good && total == d->count;
}

static int same_shards(const struct shards *a, const struct shards *b, int k)
{
	for (int i = 0; i < k; i++)
		if (a->n[i] != b->n[i] ||
		    memcmp(a->idx[i], b->idx[i],
			   (size_t)a->n[i] * sizeof(int)) != 0)
			return 0;
	return 1;
}

/* The largest share one class takes of any non-empty shard. */
static double max_class_share(const struct pipar_data *d,
			      const struct shards *s, int k)
{
	double worst = 0;

	for (int i = 0; i < k; i++) {
		int hist[256] = { 0 }, top = 0;

		if (s->n[i] < 20)
			continue;
		for (int j = 0; j < s->n[i]; j++)
			hist[d->labels[s->idx[i][j]]]++;
		for (int c = 0; c < d->classes; c++)
			if (hist[c] > top)
				top = hist[c];
		if ((double)top / s->n[i] > worst)
			worst = (double)top / s->n[i];
	}
	return worst;
}

static void test_shards(const struct pipar_data *d)
{
	struct shards a, b, c;
	struct pipar_data *small;
	char err[PIPAR_ERRLEN];
	int *idx = NULL, n = -1;

	if (make_shards(d, PIPAR_PARTITION_IID, 0, 1, 4, &a) == 0 &&
	    make_shards(d, PIPAR_PARTITION_IID, 0, 1, 4, &b) == 0 &&
	    make_shards(d, PIPAR_PARTITION_IID, 0, 2, 4, &c) == 0) {
		ok(partition_ok(d, &a, 4), "iid 4 shards: disjoint, cover, "
		   "ascending");
		ok(a.n[0] == 2500 && a.n[1] == 2500 && a.n[2] == 2500 &&
		   a.n[3] == 2500, "iid 4 shards of 10000: 2500 each");
		ok(same_shards(&a, &b, 4), "iid: same seed, same shards");
		ok(!same_shards(&a, &c, 4), "iid: another seed, other shards");
		ok(max_class_share(d, &a, 4) < 0.15,
		   "iid: class shares near uniform (max %.3f)",
		   max_class_share(d, &a, 4));
	} else {
		ok(0, "iid shards");
	}
	free_shards(&a);
	free_shards(&b);
	free_shards(&c);

	if (make_shards(d, PIPAR_PARTITION_DIRICHLET, 0.5, 1, 4, &a) == 0 &&
	    make_shards(d, PIPAR_PARTITION_DIRICHLET, 0.5, 1, 4, &b) == 0 &&
	    make_shards(d, PIPAR_PARTITION_DIRICHLET, 0.5, 2, 4, &c) == 0) {
		ok(partition_ok(d, &a, 4), "dirichlet:0.5 4 shards: disjoint, "
		   "cover, ascending (%d %d %d %d)", a.n[0], a.n[1], a.n[2],
		   a.n[3]);
		ok(same_shards(&a, &b, 4),
		   "dirichlet: same seed, same shards");
		ok(!same_shards(&a, &c, 4),
		   "dirichlet: another seed, other shards");
	} else {
		ok(0, "dirichlet shards");
	}
	free_shards(&a);
	free_shards(&b);
	free_shards(&c);

	if (make_shards(d, PIPAR_PARTITION_DIRICHLET, 0.05, 3, 4, &a) == 0) {
		double share = max_class_share(d, &a, 4);

		ok(partition_ok(d, &a, 4), "dirichlet:0.05: disjoint, cover");
		ok(share > 0.5, "dirichlet:0.05 is skewed: one class is %.2f "
		   "of a shard", share);
	} else {
		ok(0, "dirichlet:0.05 shards");
	}
	free_shards(&a);
	if (make_shards(d, PIPAR_PARTITION_DIRICHLET, 1e-4, 3, 4, &a) == 0)
		ok(partition_ok(d, &a, 4), "dirichlet:1e-4: disjoint, cover");
	else
		ok(0, "dirichlet:1e-4 shards");
	free_shards(&a);

	small = load("synthetic:3");
	if (small) {
		struct pipar_shard_spec spec = { 3, 4, PIPAR_PARTITION_IID, 0,
						 1 };
		int total = 0, empty = 0;

		ok(pipar_data_shard(small, &spec, &idx, &n, err) == -1 &&
		   idx == NULL && n == 0,
		   "iid refuses more shards than samples: %s", err);
		spec.partition = PIPAR_PARTITION_DIRICHLET;
		spec.alpha = 0.5;
		spec.count = 8;
		for (int i = 0; i < 8; i++) {
			spec.index = i;
			if (pipar_data_shard(small, &spec, &idx, &n, err)) {
				total = -100;
				break;
			}
			total += n;
			empty += n == 0 && idx != NULL;
			free(idx);
		}
		ok(total == 3 && empty >= 5,
		   "dirichlet 8 shards of 3 samples: empty shards allocated");
		spec.index = 8;
		ok(pipar_data_shard(small, &spec, &idx, &n, err) == -1,
		   "shard index out of range refused: %s", err);
		spec.index = 0;
		spec.alpha = 0;
		ok(pipar_data_shard(small, &spec, &idx, &n, err) == -1,
		   "dirichlet alpha 0 refused: %s", err);
		pipar_data_free(small);
	}
}

int main(void)
{
	struct pipar_data *ftest = NULL, *syn;

	snprintf(tmp, sizeof(tmp), "/tmp/pipar-test-data-XXXXXX");
	if (!mkdtemp(tmp)) {
		perror("mkdtemp");
		return 1;
	}
	test_shapes();
	test_specs();
	if (have_fmnist()) {
		if (!getenv("PIPAR_TEST_QUICK"))
			test_fmnist_train();
		test_fmnist_test(&ftest);
	} else {
		ok(0, "Fashion-MNIST is in " FMNIST " (dataset-fashion-mnist, listed in deps.debian)");
	}
	if (ftest) {
		test_plain_idx(ftest);
		test_idx_truncated(ftest);
		test_idx_corrupt(ftest);
	}
	test_cifar();
	test_synthetic();
	test_shard_parse();
	syn = ftest ? NULL : load("synthetic:10000");
	test_shards(ftest ? ftest : syn);
	pipar_data_free(syn);
	pipar_data_free(ftest);
	nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return tap_done();
}
