/*
 * fuzz_npz: the checkpoint reader (.npz: a zip of .npy arrays and a JSON
 * manifest) on hostile bytes, through pipar_checkpoint_load_mem, the path
 * files take too.
 *
 * Input: the file's bytes.  Every return must be a clean success (a model
 * and its info, both released here) or a refusal with a message; the
 * sanitizers catch the rest.
 *
 * Every zip entry carries a CRC-32 that the archive reader checks, so a
 * mutation of a manifest or an array header is almost always refused as a
 * bad CRC before the checkpoint code sees it.  The custom mutator below
 * therefore mostly mutates the content of one stored entry and writes the
 * archive again with correct CRCs and sizes; the rest of the time it
 * mutates the raw bytes, which keeps the archive layer itself in play.
 */
#include "checkpoint.h"
#include "model.h"
#include "util.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ZIP_MAX_ENTRIES 256

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size);
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size,
			       unsigned int seed);

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size)
{
	struct pipar_model *m = NULL;
	struct pipar_ckpt_info info;
	char err[PIPAR_ERRLEN] = "";

	memset(&info, 0, sizeof(info));
	if (pipar_checkpoint_load_mem(buf, size, "fuzz.npz", &m, &info,
				      err) == 0) {
		if (!m)
			abort();
		pipar_model_free(m);
		pipar_checkpoint_info_free(&info);
	} else if (m || !err[0] || info.training) {
		abort();
	}
	return 0;
}

/* ---- the structure-aware mutator ------------------------------------- */

struct zentry {
	const uint8_t *name, *data;
	size_t nlen, len;
};

static uint32_t rd16(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t rd32(const uint8_t *p)
{
	return rd16(p) | rd16(p + 2) << 16;
}

static uint8_t *wr16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	return p + 2;
}

static uint8_t *wr32(uint8_t *p, uint32_t v)
{
	return wr16(wr16(p, v & 0xffff), v >> 16);
}

static uint32_t crc32(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;

	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0xedb88320u : c >> 1;
	}
	return c ^ 0xffffffffu;
}

/* The stored entries of a zip archive, through its central directory;
 * -1 if buf is not such an archive. */
static int zip_parse(const uint8_t *buf, size_t size, struct zentry *e,
		     int *n)
{
	size_t eocd, q;
	uint32_t count;

	if (size < 22)
		return -1;
	for (eocd = size - 22;; eocd--) {
		if (rd32(buf + eocd) == 0x06054b50u)
			break;
		if (eocd == 0 || size - eocd > 22 + 65535)
			return -1;
	}
	count = rd16(buf + eocd + 10);
	q = rd32(buf + eocd + 16);
	if (count == 0 || count > ZIP_MAX_ENTRIES || q > eocd)
		return -1;
	for (uint32_t i = 0; i < count; i++) {
		size_t nlen, lho, data, len;

		if (q + 46 > eocd || rd32(buf + q) != 0x02014b50u ||
		    rd16(buf + q + 10) != 0)
			return -1;
		len = rd32(buf + q + 20);
		nlen = rd16(buf + q + 28);
		lho = rd32(buf + q + 42);
		if (q + 46 + nlen > eocd || lho + 30 > size ||
		    rd32(buf + lho) != 0x04034b50u)
			return -1;
		data = lho + 30 + rd16(buf + lho + 26) + rd16(buf + lho + 28);
		if (data > size || len > size - data)
			return -1;
		e[i].name = buf + q + 46;
		e[i].nlen = nlen;
		e[i].data = buf + data;
		e[i].len = len;
		q += 46 + nlen + rd16(buf + q + 30) + rd16(buf + q + 32);
	}
	*n = (int)count;
	return 0;
}

/* Writes the entries as a zip archive of stored entries into out; the
 * size written, or 0 if it does not fit in max. */
static size_t zip_write(const struct zentry *e, int n, uint8_t *out,
			size_t max)
{
	size_t need = 22, off = 0, cd;
	uint32_t crc[ZIP_MAX_ENTRIES];
	uint8_t *p = out;

	for (int i = 0; i < n; i++)
		need += 30 + 46 + 2 * e[i].nlen + e[i].len;
	if (need > max)
		return 0;
	for (int i = 0; i < n; i++) {
		crc[i] = crc32(e[i].data, e[i].len);
		p = wr32(p, 0x04034b50u);
		p = wr16(p, 20);
		p = wr16(p, 0);
		p = wr16(p, 0);
		p = wr32(p, 0x00210000u); /* 1980-01-01 00:00 */
		p = wr32(p, crc[i]);
		p = wr32(p, (uint32_t)e[i].len);
		p = wr32(p, (uint32_t)e[i].len);
		p = wr16(p, (uint32_t)e[i].nlen);
		p = wr16(p, 0);
		memcpy(p, e[i].name, e[i].nlen);
		p += e[i].nlen;
		memcpy(p, e[i].data, e[i].len);
		p += e[i].len;
	}
	cd = (size_t)(p - out);
	for (int i = 0; i < n; i++) {
		p = wr32(p, 0x02014b50u);
		p = wr16(p, 20);
		p = wr16(p, 20);
		p = wr16(p, 0);
		p = wr16(p, 0);
		p = wr32(p, 0x00210000u);
		p = wr32(p, crc[i]);
		p = wr32(p, (uint32_t)e[i].len);
		p = wr32(p, (uint32_t)e[i].len);
		p = wr16(p, (uint32_t)e[i].nlen);
		p = wr32(p, 0); /* extra and comment lengths */
		p = wr32(p, 0); /* disk, internal attributes */
		p = wr32(p, 0); /* external attributes */
		p = wr32(p, (uint32_t)off);
		memcpy(p, e[i].name, e[i].nlen);
		p += e[i].nlen;
		off += 30 + e[i].nlen + e[i].len;
	}
	p = wr32(p, 0x06054b50u);
	p = wr32(p, 0);
	p = wr16(p, (uint32_t)n);
	p = wr16(p, (uint32_t)n);
	p = wr32(p, (uint32_t)((size_t)(p - out) - 12 - cd));
	p = wr32(p, (uint32_t)cd);
	p = wr16(p, 0);
	return (size_t)(p - out);
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size,
			       unsigned int seed)
{
	struct zentry e[ZIP_MAX_ENTRIES];
	uint8_t *copy, *body, *out;
	size_t cap, len, n_out = 0;
	int n, k;

	if (seed % 4 == 0 || zip_parse(data, size, e, &n) != 0)
		return LLVMFuzzerMutate(data, size, max_size);
	/* The entries point into data, which is rewritten: work on a copy. */
	copy = malloc(size);
	out = malloc(max_size);
	k = (int)((seed / 4) % (unsigned)n);
	cap = e[k].len + 256;
	body = malloc(cap);
	if (!copy || !out || !body)
		goto plain;
	memcpy(copy, data, size);
	zip_parse(copy, size, e, &n);
	memcpy(body, e[k].data, e[k].len);
	len = LLVMFuzzerMutate(body, e[k].len, cap);
	e[k].data = body;
	e[k].len = len;
	/* Now and then drop the entry instead: a missing array. */
	if ((seed / 4) % 16 == 15 && n > 1) {
		e[k] = e[n - 1];
		n--;
	}
	n_out = zip_write(e, n, out, max_size);
	if (n_out)
		memcpy(data, out, n_out);
plain:
	free(copy);
	free(out);
	free(body);
	return n_out ? n_out : LLVMFuzzerMutate(data, size, max_size);
}
