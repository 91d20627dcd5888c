/*
 * fuzz_idx: the IDX reader (images and labels, plain or compressed) on
 * hostile bytes, through pipar_data_idx_mem, the path files take too.
 *
 * Input: a 4-byte little-endian split point k, then the data; the first
 * k mod (n + 1) bytes of the n data bytes are the images file, the rest the
 * labels file.  Every return must be a clean success or a refusal with a
 * message; the sanitizers catch the rest.
 */
#include "data.h"
#include "util.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size)
{
	struct pipar_data *d = NULL;
	char err[PIPAR_ERRLEN] = "";
	size_t n, k;

	if (size < 4)
		return 0;
	k = (size_t)buf[0] | (size_t)buf[1] << 8 | (size_t)buf[2] << 16 |
	    (size_t)buf[3] << 24;
	buf += 4;
	n = size - 4;
	k %= n + 1;
	if (pipar_data_idx_mem(buf, k, buf + k, n - k, "fuzz", &d, err) == 0) {
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
