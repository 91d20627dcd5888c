/*
 * Frames: CRC-32C against its check value, headers and tensor payloads
 * round-trip, and every malformed field, checksum, bound and truncation
 * is refused by name.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tap.h"
#include "util.h"
#include "chan.h"
#include "wire.h"

static int decode_fails(uint8_t *head, uint32_t max, uint32_t seq, const char *needle)
{
	struct pipar_frame_header h;
	char err[PIPAR_ERRLEN] = "";
	int r = pipar_wire_header_decode(head, max, seq, &h, err);

	return ok(r < 0 && strstr(err, needle) != NULL, "header refused: %s", err);
}

/* Re-seals a header after a field was changed, so only that field is bad. */
static void reseal(uint8_t *head)
{
	uint32_t c = pipar_crc32c(0, head, 20);

	head[20] = (uint8_t)c;
	head[21] = (uint8_t)(c >> 8);
	head[22] = (uint8_t)(c >> 16);
	head[23] = (uint8_t)(c >> 24);
}

/* The first calls of the table form come from several threads at once:
 * each must see the whole table. */
static void *crc_first(void *arg)
{
	static const char nine[] = "123456789";
	uint8_t big[4096];

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 131 + 5);
	*(int *)arg = pipar_crc32c_table(0, nine, 9) == 0xe3069283u &&
		      pipar_crc32c_table(0, big, sizeof(big)) == pipar_crc32c(0, big, sizeof(big));
	return NULL;
}

int main(void)
{
	char err[PIPAR_ERRLEN] = "";
	uint8_t head[PIPAR_WIRE_HEADER], bad[PIPAR_WIRE_HEADER];
	struct pipar_frame_header h = {PIPAR_FRAME_GRADIENTS, 0, 1000, 7, 0xdeadbeef}, g;

	ok(pipar_crc32c(0, "123456789", 9) == 0xe3069283u, "CRC-32C check value of \"123456789\"");
	{
		/* Pieces give the same as the whole, at every split. */
		uint8_t data[257];
		int same = 1;

		for (int i = 0; i < 257; i++)
			data[i] = (uint8_t)(i * 31 + 7);
		uint32_t whole = pipar_crc32c(0, data, sizeof(data));
		for (size_t cut = 0; cut <= sizeof(data); cut++)
			if (pipar_crc32c(pipar_crc32c(0, data, cut), data + cut, sizeof(data) - cut) != whole)
				same = 0;
		ok(same, "CRC-32C continues across pieces at every split");
	}
	{
		pthread_t th[4];
		int good[4] = {0}, all = 1;

		for (int i = 0; i < 4; i++)
			if (pthread_create(&th[i], NULL, crc_first, &good[i]) != 0)
				good[i] = 0, th[i] = 0;
		for (int i = 0; i < 4; i++) {
			if (th[i])
				pthread_join(th[i], NULL);
			all &= good[i];
		}
		ok(all, "the table form, first called from 4 threads at once, gives the check value in each");
	}
	{
		/* The table and the instruction (where there is one) agree at
		 * every length and offset. */
		uint8_t data[300];
		int same = 1;

		for (int i = 0; i < 300; i++)
			data[i] = (uint8_t)(i * 57 + 3);
		for (size_t off = 0; off < 8; off++)
			for (size_t n = 0; off + n <= sizeof(data); n++)
				if (pipar_crc32c_table(0x1234u, data + off, n) != pipar_crc32c(0x1234u, data + off, n))
					same = 0;
		ok(same, "the table form equals pipar_crc32c at every length and offset");
	}
	pipar_wire_header_encode(&h, head);
	ok(pipar_wire_header_decode(head, 1000, 7, &g, err) == 0 && g.type == h.type &&
		   g.length == 1000 && g.seq == 7 && g.crc == 0xdeadbeef,
	   "a header round-trips");
	memcpy(bad, head, sizeof(bad));
	bad[0] = 'X';
	decode_fails(bad, 1000, 7, "bad magic");
	memcpy(bad, head, sizeof(bad));
	bad[4] = 1;
	reseal(bad);
	decode_fails(bad, 1000, 7, "protocol version 1 (expected 2)");
	memcpy(bad, head, sizeof(bad));
	bad[4] = 3;
	reseal(bad);
	decode_fails(bad, 1000, 7, "protocol version 3");
	memcpy(bad, head, sizeof(bad));
	bad[9] ^= 1;
	decode_fails(bad, 1 << 30, 7, "header checksum");
	memcpy(bad, head, sizeof(bad));
	bad[5] = 99;
	reseal(bad);
	decode_fails(bad, 1000, 7, "unknown frame type 99");
	memcpy(bad, head, sizeof(bad));
	bad[6] = 1;
	reseal(bad);
	decode_fails(bad, 1000, 7, "flags");
	decode_fails(head, 999, 7, "over the bound of 999");
	decode_fails(head, 1000, 8, "out of order (sequence 7, expected 8)");

	/* Tensor payloads. */
	{
		uint32_t n = 3, c = 2, hh = 2, w = 2;
		size_t sz = pipar_tensor_msg_size(PIPAR_FRAME_ACTIVATIONS, n, c, hh, w);
		uint8_t *p = calloc(1, sz);
		struct pipar_tensor_msg m = {5, 1, n, c, hh, w, 6, 0, NULL, NULL}, q;
		float *vals = (float *)(void *)(p + PIPAR_TENSOR_HEAD);
		int32_t lab[3] = {0, 9, 4};

		pipar_tensor_msg_head(PIPAR_FRAME_ACTIVATIONS, &m, p);
		for (int i = 0; i < 24; i++)
			vals[i] = (float)i * 0.5f;
		memcpy(p + PIPAR_TENSOR_HEAD + 24 * 4, lab, sizeof(lab));
		ok(sz == 32 + 96 + 12 && pipar_tensor_msg_parse(PIPAR_FRAME_ACTIVATIONS, p, sz, 2, 2, 2, 8,
								  10, &q, err) == 0 &&
			   q.iteration == 5 && q.micro == 1 && q.n == 3 && q.batch == 6 && q.data[23] == 11.5f &&
			   q.labels[1] == 9,
		   "an activations payload round-trips");
		ok(pipar_tensor_msg_parse(PIPAR_FRAME_ACTIVATIONS, p, sz, 2, 2, 3, 8, 10, &q, err) < 0 &&
			   strstr(err, "shape 2x2x2, expected 2x2x3"),
		   "a wrong shape is refused: %s", err);
		ok(pipar_tensor_msg_parse(PIPAR_FRAME_ACTIVATIONS, p, sz, 2, 2, 2, 2, 10, &q, err) < 0 &&
			   strstr(err, "3 samples, expected 1 to 2"),
		   "more samples than the plan allows are refused: %s", err);
		ok(pipar_tensor_msg_parse(PIPAR_FRAME_ACTIVATIONS, p, sz, 2, 2, 2, 5, 10, &q, err) < 0 &&
			   strstr(err, "mini-batch of 6"),
		   "more samples than the plan allows are refused: %s", err);
		ok(pipar_tensor_msg_parse(PIPAR_FRAME_ACTIVATIONS, p, sz - 1, 2, 2, 2, 8, 10, &q, err) < 0 &&
			   strstr(err, "its shape needs"),
		   "a length that does not match the shape is refused: %s", err);
		ok(pipar_tensor_msg_parse(PIPAR_FRAME_ACTIVATIONS, p, sz, 2, 2, 2, 8, 9, &q, err) < 0 &&
			   strstr(err, "label 9"),
		   "a label outside the classes is refused: %s", err);
		ok(pipar_tensor_msg_parse(PIPAR_FRAME_ACTIVATIONS, p, 10, 2, 2, 2, 8, 10, &q, err) < 0,
		   "a payload shorter than its head is refused: %s", err);
		p[29] = 1;
		/* (the word before it is the mini-batch) */
		ok(pipar_tensor_msg_parse(PIPAR_FRAME_ACTIVATIONS, p, sz, 2, 2, 2, 8, 10, &q, err) < 0 &&
			   strstr(err, "reserved"),
		   "non-zero reserved bytes are refused: %s", err);
		free(p);
	}

	/* Over a socket: a large frame arrives whole; a clean close is the end;
	 * a close inside a frame, a corrupt payload and garbage are errors. */
	{
		int sv[2];
		size_t len = 8u << 20, cap = 0;
		uint8_t *buf = NULL, *big = malloc(len);
		pid_t pid;
		int st;

		for (size_t i = 0; i < len; i++)
			big[i] = (uint8_t)(i * 2654435761u >> 24);
		PIPAR_ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
		pid = fork();
		if (pid == 0) {
			struct pipar_chan *out = pipar_chan_new(sv[1], NULL, NULL, err);

			close(sv[0]);
			if (!out || pipar_wire_send(out, PIPAR_FRAME_MODEL, 0, big, len, err) < 0 ||
			    pipar_wire_send(out, PIPAR_FRAME_BYE, 1, NULL, 0, err) < 0)
				_exit(1);
			_exit(0);
		}
		close(sv[1]);
		struct pipar_chan *in = pipar_chan_new(sv[0], NULL, NULL, err);
		int r1 = pipar_wire_recv(in, 16u << 20, 0, &g, &buf, &cap, err);
		ok(r1 == 1 && g.type == PIPAR_FRAME_MODEL && g.length == len && memcmp(buf, big, len) == 0,
		   "an 8 MiB frame arrives whole and intact");
		ok(pipar_wire_recv(in, 16u << 20, 1, &g, &buf, &cap, err) == 1 && g.type == PIPAR_FRAME_BYE,
		   "an empty frame follows");
		ok(pipar_wire_recv(in, 16u << 20, 2, &g, &buf, &cap, err) == 0,
		   "a close between frames is a clean end");
		waitpid(pid, &st, 0);
		pipar_chan_free(in);

		/* Raw bytes: a corrupt payload, a close inside a payload, and
		 * a close inside a header. */
		const struct {
			const char *what, *needle;
			int mode;
		} cases[] = {
			{"a flipped payload bit", "payload checksum mismatch", 0},
			{"a close inside a payload", "inside a MODEL frame", 1},
			{"a close inside a header", "inside a frame header", 2},
			{"garbage", "bad magic", 3},
		};
		for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
			struct pipar_frame_header fh = {PIPAR_FRAME_MODEL, 0, 1000, 0, 0};
			uint8_t frame[PIPAR_WIRE_HEADER + 1000];

			fh.crc = pipar_crc32c(0, big, 1000);
			pipar_wire_header_encode(&fh, frame);
			memcpy(frame + PIPAR_WIRE_HEADER, big, 1000);
			size_t n = sizeof(frame);

			if (cases[c].mode == 0)
				frame[PIPAR_WIRE_HEADER + 500] ^= 4;
			else if (cases[c].mode == 1)
				n = PIPAR_WIRE_HEADER + 300;
			else if (cases[c].mode == 2)
				n = 10;
			else
				memcpy(frame, "GET / HTTP/1.1\r\n\r\n\0\0\0\0\0\0", PIPAR_WIRE_HEADER);
			PIPAR_ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
			PIPAR_ASSERT(write(sv[1], frame, n) == (ssize_t)n);
			close(sv[1]);
			err[0] = 0;
			struct pipar_chan *rc = pipar_chan_new(sv[0], NULL, NULL, err);
			int r = pipar_wire_recv(rc, 1 << 20, 0, &g, &buf, &cap, err);
			ok(r < 0 && strstr(err, cases[c].needle), "%s is refused: %s", cases[c].what, err);
			pipar_chan_free(rc);
		}
		free(buf);
		free(big);
	}
	return tap_done();
}
