/*
 * fuzz_proto: the decoders of the control payloads (proto.h) on hostile
 * bytes.  The first byte chooses the decoder and the second its context:
 *   0  HELLO for 1 + (byte 1 % 4) input channels
 *   1  PLAN (the plan and the run's settings)
 *   2  the PARAMS_UP head for a device part of byte 1 floats, byte 1 / 2
 *      of them trainable (the momentum that may follow)
 * and the rest is the payload.  Every call must end in a decoded value or
 * a refusal with a message; the sanitizers catch the rest.
 */
#include "proto.h"
#include "util.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size)
{
	char err[PIPAR_ERRLEN] = "";

	if (size < 2)
		return 0;
	const uint8_t *p = buf + 2;
	size_t n = size - 2;

	switch (buf[0] % 3) {
	case 0: {
		struct pipar_hello h;
		int ch = 1 + buf[1] % 4;

		char why[96];

		if (pipar_hello_decode(p, n, ch, 1000000, &h, err) == 0) {
			if (h.samples < 1 || h.samples > 1000000 || h.norm.channels != ch ||
			    pipar_hello_id_check(h.id, why, sizeof(why)) < 0)
				abort();
			for (int c = 0; c < ch; c++)
				if (!(h.norm.std[c] > 0) || !isfinite(h.norm.mean[c]) ||
				    !isfinite(h.norm.std[c]))
					abort();
		} else if (!err[0]) {
			abort();
		}
		break;
	}
	case 1: {
		struct pipar_plan_file *pl = NULL;
		struct pipar_settings st;

		if (pipar_plan_msg_decode(p, n, &pl, &st, err) == 0) {
			if (!pl || st.device < 0 || st.device >= pl->K ||
			    pipar_plan_max_micro(pl, st.device) > pl->batch)
				abort();
			pipar_plan_file_free(pl);
		} else if (!err[0] || pl) {
			abort();
		}
		break;
	}
	default: {
		struct pipar_up_head h;

		if (pipar_up_head_decode(p, n, buf[1], buf[1] / 2, &h, err) == 0) {
			if (h.correct > h.seen || h.mid > 1 || h.state > 1 || !isfinite(h.loss) ||
			    n != PIPAR_UP_HEAD + sizeof(float) * (buf[1] + (h.state ? buf[1] / 2 : 0)))
				abort();
		} else if (!err[0]) {
			abort();
		}
		break;
	}
	}
	return 0;
}
