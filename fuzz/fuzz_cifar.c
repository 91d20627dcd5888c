/*
 * fuzz_cifar: the CIFAR-10 archive reader (.tar.gz of binary batches) on
 * hostile bytes, through pipar_data_cifar_mem, the path files take too.
 *
 * Input: one byte choosing the split (odd: test, even: train), then the
 * archive.  Every return must be a clean success or a refusal with a
 * message; the sanitizers catch the rest.
 *
 * Raw mutations of a gzip stream mostly end as a deflate or CRC error
 * before the tar or the batches are read, so the custom mutator below
 * usually decompresses the archive, mutates the tar inside, makes its
 * header checksums right again and compresses it back.
 */
#include "data.h"
#include "util.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define TAR_MAX (1 << 20) /* decompressed bytes the mutator works on */

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size);
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size,
			       unsigned int seed);

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size)
{
	struct pipar_data *d = NULL;
	char err[PIPAR_ERRLEN] = "";
	const char *split;

	if (size < 1)
		return 0;
	split = (buf[0] & 1) ? "test" : "train";
	if (pipar_data_cifar_mem(buf + 1, size - 1, "fuzz", split, &d,
				 err) == 0) {
		if (!d || d->count < 1 || !d->pixels || !d->labels)
			abort();
		for (int i = 0; i < d->count; i++)
			if (d->labels[i] >= d->classes)
				abort();
		pipar_data_free(d);
	} else if (d || !err[0]) {
		abort();
	}
	return 0;
}

/* ---- the gzip-aware mutator ------------------------------------------ */

/* Decompresses the gzip stream at in into out (at most cap bytes); the
 * size, or 0 if it is not one whole gzip stream that fits. */
static size_t gunzip(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
	z_stream z;
	size_t got;
	int r;

	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
		return 0;
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)n;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	r = inflate(&z, Z_FINISH);
	got = cap - z.avail_out;
	inflateEnd(&z);
	return r == Z_STREAM_END ? got : 0;
}

/* Compresses n bytes at in as gzip into out; the size, or 0 if it does
 * not fit in cap. */
static size_t gzip(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
	z_stream z;
	size_t got;
	int r;

	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, 1, Z_DEFLATED, 16 + MAX_WBITS, 8,
			 Z_DEFAULT_STRATEGY) != Z_OK)
		return 0;
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)n;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	r = deflate(&z, Z_FINISH);
	got = cap - z.avail_out;
	deflateEnd(&z);
	return r == Z_STREAM_END ? got : 0;
}

/* Rewrites the checksum of every tar header that the sizes lead to. */
static void tar_fix(uint8_t *t, size_t n)
{
	size_t off = 0;

	while (off + 512 <= n) {
		uint8_t *h = t + off;
		unsigned long size = 0, sum = 0;
		int zero = 1;

		for (int i = 0; i < 512; i++)
			zero &= h[i] == 0;
		if (zero)
			return;
		for (int i = 124; i < 136 && h[i] >= '0' && h[i] <= '7'; i++)
			size = size * 8 + (unsigned long)(h[i] - '0');
		memset(h + 148, ' ', 8);
		for (int i = 0; i < 512; i++)
			sum += h[i];
		snprintf((char *)h + 148, 8, "%06lo", sum & 0777777);
		h[155] = ' ';
		if (size > n)
			return;
		off += 512 + (size + 511) / 512 * 512;
	}
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size,
			       unsigned int seed)
{
	uint8_t *tar, *out = NULL;
	size_t n, zn = 0;

	if (size < 2 || seed % 4 == 0)
		return LLVMFuzzerMutate(data, size, max_size);
	tar = malloc(TAR_MAX);
	if (!tar || !(n = gunzip(data + 1, size - 1, tar, TAR_MAX)))
		goto plain;
	n = LLVMFuzzerMutate(tar, n, TAR_MAX);
	tar_fix(tar, n);
	out = malloc(max_size);
	if (out && max_size > 1)
		zn = gzip(tar, n, out, max_size - 1);
	if (zn) {
		memcpy(data + 1, out, zn);
		zn++;
	}
plain:
	free(tar);
	free(out);
	return zn ? zn : LLVMFuzzerMutate(data, size, max_size);
}
