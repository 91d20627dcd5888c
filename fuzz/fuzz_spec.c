/*
 * fuzz_spec: the model spec reader (JSON) on hostile text, building the
 * whole model for a small fixed input (1x8x8, 10 classes).
 *
 * Input: the spec text, at most 64 KiB (longer inputs are ignored: the
 * reader's cost grows with the text, not its faults), copied with a
 * terminating NUL.  Every return must be a clean success or a refusal
 * with a message; the sanitizers catch the rest.  Specs asking for huge
 * layers must be refused by the reader's own bounds, not by this file.
 */
#include "model.h"
#include "util.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_SPEC 65536

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size)
{
	struct pipar_shape in = { 1, 8, 8 };
	struct pipar_model *m = NULL;
	char err[PIPAR_ERRLEN] = "";
	char *spec;

	if (size > FUZZ_MAX_SPEC)
		return 0;
	spec = malloc(size + 1);
	if (!spec)
		return 0;
	memcpy(spec, buf, size);
	spec[size] = '\0';
	if (pipar_model_new(spec, in, 10, 0, -1, 1, &m, err) == 0) {
		struct pipar_shape out;

		if (!m)
			abort();
		out = pipar_model_out(m);
		if (out.c != 10 || out.h != 1 || out.w != 1)
			abort();
		pipar_model_free(m);
	} else if (m || !err[0]) {
		abort();
	}
	free(spec);
	return 0;
}
