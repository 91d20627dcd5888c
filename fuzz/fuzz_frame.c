/*
 * fuzz_frame: the frame decoder on hostile bytes: the input is the byte
 * stream a peer sends, read through pipar_wire_recv from a pipe, frame
 * after frame, with every tensor payload parsed against a fixed expected
 * shape (2x3x3, at most 8 samples, 10 classes).
 *
 * Checksums guard every frame, so mutations rarely reach a payload
 * through the stream; the input is therefore also parsed directly as an
 * ACTIVATIONS and as a GRADIENTS payload.
 *
 * Every call must end in a frame, a clean end or a refusal with a message;
 * the sanitizers catch the rest.
 */
#include "util.h"
#include "chan.h"
#include "wire.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size);

static void tensor(int type, const uint8_t *p, size_t len)
{
	struct pipar_tensor_msg m;
	char err[PIPAR_ERRLEN] = "";

	if (pipar_tensor_msg_parse(type, p, len, 2, 3, 3, 8, 10, &m, err) == 0) {
		/* Touch what was accepted: all of it must be there. */
		volatile float s = 0;

		for (uint32_t i = 0; i < m.n * 18; i++) {
			float v;

			memcpy(&v, (const uint8_t *)m.data + 4 * (size_t)i, 4);
			s += v;
		}
		for (uint32_t i = 0; m.labels && i < m.n; i++) {
			int32_t l;

			memcpy(&l, (const uint8_t *)m.labels + 4 * (size_t)i, 4);
			if (l < 0 || l >= 10)
				abort();
		}
		(void)s;
	} else if (!err[0]) {
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size)
{
	int fds[2];
	uint8_t *frame = NULL;
	size_t cap = 0;
	char err[PIPAR_ERRLEN];
	uint32_t seq = 0;

	/* A pipe holds 64 KiB: enough for the frames that matter here. */
	if (size > 60000 || pipe(fds) != 0)
		return 0;
	if (size && write(fds[1], buf, size) != (ssize_t)size)
		abort();
	close(fds[1]);
	struct pipar_chan *ch = pipar_chan_new(fds[0], NULL, NULL, err);

	if (!ch)
		abort();
	for (;;) {
		struct pipar_frame_header h;
		int r;

		err[0] = 0;
		r = pipar_wire_recv(ch, 1 << 16, seq, &h, &frame, &cap, err);
		if (r == 0)
			break;
		if (r < 0) {
			if (!err[0])
				abort();
			break;
		}
		seq++;
		if (h.type == PIPAR_FRAME_ACTIVATIONS || h.type == PIPAR_FRAME_GRADIENTS)
			tensor(h.type, frame, h.length);
	}
	pipar_chan_free(ch);
	free(frame);
	tensor(PIPAR_FRAME_ACTIVATIONS, buf, size);
	tensor(PIPAR_FRAME_GRADIENTS, buf, size);
	return 0;
}
