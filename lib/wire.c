/*
 * Frames over a channel (chan.h): header encoding with its own checksum,
 * CRC-32C, sending header and payload in one write and receiving with
 * every field checked before use.
 */
#define _POSIX_C_SOURCE 200809L
#include "wire.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chan.h"
#include "util.h"

#if defined(__SSE4_2__)
#include <nmmintrin.h>
#endif

static const char *const type_names[] = {
	"?", "HELLO", "PLAN", "MODEL", "ACTIVATIONS", "GRADIENTS", "PARAMS_UP",
	"PARAMS_DOWN", "EVAL", "ERROR", "BYE", "READY", "START",
};
_Static_assert(sizeof(type_names) / sizeof(type_names[0]) == PIPAR_FRAME_MAX_TYPE + 1,
	       "a name for every frame type");

const char *pipar_frame_type_name(int type)
{
	return type >= 1 && type <= PIPAR_FRAME_MAX_TYPE ? type_names[type] : "?";
}

/* ---------------------------------------------------------------- CRC-32C */

/* The table-driven form (slicing by 8), for machines without the CRC
 * instruction; built once, before any caller can read it. */
static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_table[0][i] = c;
	}
	for (int t = 1; t < 8; t++)
		for (int i = 0; i < 256; i++)
			crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^
					  crc_table[0][crc_table[t - 1][i] & 0xff];
}

uint32_t pipar_crc32c_table(uint32_t crc, const void *data, size_t n)
{
	const uint8_t *p = data;

	pthread_once(&crc_once, crc_init);
	crc = ~crc;
	while (n >= 8) {
		uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 |
				     (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);

		crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
		      crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
		      crc_table[3][p[4]] ^ crc_table[2][p[5]] ^ crc_table[1][p[6]] ^
		      crc_table[0][p[7]];
		p += 8;
		n -= 8;
	}
	while (n--)
		crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
	return ~crc;
}

uint32_t pipar_crc32c(uint32_t crc, const void *data, size_t n)
{
#if defined(__SSE4_2__)
	/* The instruction computes exactly this polynomial, 8 bytes a step. */
	const uint8_t *p = data;
	uint64_t c = (uint32_t)~crc;

	while (n >= 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		c = _mm_crc32_u64(c, v);
		p += 8;
		n -= 8;
	}
	crc = (uint32_t)c;
	while (n--)
		crc = _mm_crc32_u8(crc, *p++);
	return ~crc;
#else
	return pipar_crc32c_table(crc, data, n);
#endif
}

/* ---------------------------------------------------------------- header */

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

void pipar_wire_header_encode(const struct pipar_frame_header *h,
			      uint8_t out[PIPAR_WIRE_HEADER])
{
	memcpy(out, PIPAR_WIRE_MAGIC, 4);
	out[4] = PIPAR_WIRE_VERSION;
	out[5] = (uint8_t)h->type;
	out[6] = (uint8_t)h->flags;
	out[7] = (uint8_t)(h->flags >> 8);
	put32(out + 8, h->length);
	put32(out + 12, h->seq);
	put32(out + 16, h->crc);
	put32(out + 20, pipar_crc32c(0, out, 20));
}

int pipar_wire_header_decode(const uint8_t in[PIPAR_WIRE_HEADER],
			     uint32_t max_len, uint32_t expect_seq,
			     struct pipar_frame_header *h, char *err)
{
	if (memcmp(in, PIPAR_WIRE_MAGIC, 4) != 0)
		return pipar_errf(err, "bad magic 0x%02x%02x%02x%02x (not a pipar frame)",
				  in[0], in[1], in[2], in[3]);
	if (in[4] != PIPAR_WIRE_VERSION)
		return pipar_errf(err, "protocol version %d (expected %d)", in[4],
				  PIPAR_WIRE_VERSION);
	if (get32(in + 20) != pipar_crc32c(0, in, 20))
		return pipar_errf(err, "header checksum mismatch");
	h->type = in[5];
	h->flags = (uint16_t)(in[6] | in[7] << 8);
	h->length = get32(in + 8);
	h->seq = get32(in + 12);
	h->crc = get32(in + 16);
	if (h->type < 1 || h->type > PIPAR_FRAME_MAX_TYPE)
		return pipar_errf(err, "unknown frame type %d", h->type);
	if (h->flags)
		return pipar_errf(err, "%s frame with unknown flags 0x%04x",
				  pipar_frame_type_name(h->type), h->flags);
	if (h->length > max_len)
		return pipar_errf(err, "%s frame of %u bytes, over the bound of %u",
				  pipar_frame_type_name(h->type), h->length, max_len);
	if (h->seq != expect_seq)
		return pipar_errf(err, "%s frame out of order (sequence %u, expected %u)",
				  pipar_frame_type_name(h->type), h->seq, expect_seq);
	return 0;
}

/* ---------------------------------------------------------------- I/O */

/* Why a read or write on ch failed with error e, into buf. */
static const char *io_error(struct pipar_chan *ch, int e, char *buf, size_t len)
{
	if (e == ETIMEDOUT)
		return pipar_chan_timed_out(ch, buf, len);
	if (e == EPROTO && pipar_chan_tls_error(ch, buf, len))
		return buf;
	snprintf(buf, len, "%s", strerror(e));
	return buf;
}

int pipar_wire_send(struct pipar_chan *ch, int type, uint32_t seq, const void *payload,
		    size_t len, char *err)
{
	struct pipar_frame_header h = {type, 0, (uint32_t)len, seq,
				       pipar_crc32c(0, payload, len)};
	uint8_t head[PIPAR_WIRE_HEADER];
	char why[160];

	if (len > UINT32_MAX)
		return pipar_errf(err, "payload of %zu bytes is too large for a frame", len);
	pipar_wire_header_encode(&h, head);
	if (pipar_chan_write(ch, head, sizeof(head), payload, len) < 0)
		return pipar_errf(err, "cannot send %s frame: %s", pipar_frame_type_name(type),
				  io_error(ch, errno, why, sizeof(why)));
	return 0;
}

int pipar_wire_recv(struct pipar_chan *ch, uint32_t max_len, uint32_t expect_seq,
		    struct pipar_frame_header *h, uint8_t **buf, size_t *cap,
		    char *err)
{
	uint8_t head[PIPAR_WIRE_HEADER];
	size_t got;
	long r = pipar_chan_read(ch, head, sizeof(head), &got);
	char why[160];

	if (r == 0)
		return 0;
	if (r < 0 && errno == ETIMEDOUT && got == 0)
		return pipar_errf(err, "%s waiting for a frame", io_error(ch, errno, why, sizeof(why)));
	if (r < 0 && errno == ETIMEDOUT)
		return pipar_errf(err, "%s inside a frame header (%zu of %d bytes)",
				  io_error(ch, errno, why, sizeof(why)), got, PIPAR_WIRE_HEADER);
	if (r < 0)
		return errno ? pipar_errf(err, "receive failed: %s", io_error(ch, errno, why, sizeof(why))) :
			       pipar_errf(err, "connection closed inside a frame header (%zu of %d bytes)",
					  got, PIPAR_WIRE_HEADER);
	if (pipar_wire_header_decode(head, max_len, expect_seq, h, err) < 0)
		return -1;
	if (h->length > *cap) {
		uint8_t *nb = realloc(*buf, h->length);

		if (!nb)
			return pipar_errf(err, "out of memory for a %u-byte frame", h->length);
		*buf = nb;
		*cap = h->length;
	}
	if (h->length) {
		r = pipar_chan_read(ch, *buf, h->length, &got);
		if (r < 0 && errno == ETIMEDOUT)
			return pipar_errf(err, "%s inside a %s frame (%zu of %u bytes)",
					  io_error(ch, errno, why, sizeof(why)),
					  pipar_frame_type_name(h->type), got, h->length);
		if (r <= 0)
			return r < 0 && errno ?
				       pipar_errf(err, "receive failed: %s", io_error(ch, errno, why, sizeof(why))) :
				       pipar_errf(err, "connection closed inside a %s frame (%zu of %u bytes)",
						  pipar_frame_type_name(h->type), got, h->length);
	}
	if (pipar_crc32c(0, *buf, h->length) != h->crc)
		return pipar_errf(err, "%s frame payload checksum mismatch",
				  pipar_frame_type_name(h->type));
	return 1;
}

/* ---------------------------------------------------------------- tensors */

size_t pipar_tensor_msg_size(int type, uint32_t n, uint32_t c, uint32_t h,
			     uint32_t w)
{
	size_t vals = (size_t)n * c * h * w;

	return PIPAR_TENSOR_HEAD + sizeof(float) * vals +
	       (type == PIPAR_FRAME_ACTIVATIONS ? sizeof(int32_t) * (size_t)n : 0);
}

void pipar_tensor_msg_head(int type, const struct pipar_tensor_msg *m,
			   uint8_t out[PIPAR_TENSOR_HEAD])
{
	uint32_t loss = m->batch;

	put32(out, m->iteration);
	put32(out + 4, m->micro);
	put32(out + 8, m->n);
	put32(out + 12, m->c);
	put32(out + 16, m->h);
	put32(out + 20, m->w);
	if (type == PIPAR_FRAME_GRADIENTS)
		memcpy(&loss, &m->loss, 4);
	put32(out + 24, loss);
	put32(out + 28, 0);
}

size_t pipar_floats_nonfinite(const void *vp, size_t n)
{
	const uint8_t *p = vp;
	const size_t step = 1024;

	for (size_t i = 0; i < n; i += step) {
		size_t e = i + step < n ? i + step : n;
		uint32_t all = 0;

		/* An exponent of all ones is NaN or infinity; a block at a
		 * time, without branches, then the block searched. */
		for (size_t j = i; j < e; j++) {
			uint32_t v;

			memcpy(&v, p + 4 * j, 4);
			all |= (uint32_t)((v & 0x7f800000u) == 0x7f800000u);
		}
		if (all)
			for (size_t j = i; j < e; j++) {
				uint32_t v;

				memcpy(&v, p + 4 * j, 4);
				if ((v & 0x7f800000u) == 0x7f800000u)
					return j;
			}
	}
	return SIZE_MAX;
}

int pipar_tensor_msg_parse(int type, const uint8_t *p, size_t len,
			   uint32_t c, uint32_t h, uint32_t w, uint32_t max_n,
			   int classes, struct pipar_tensor_msg *m, char *err)
{
	const char *what = pipar_frame_type_name(type);
	uint32_t loss;

	if (type != PIPAR_FRAME_ACTIVATIONS && type != PIPAR_FRAME_GRADIENTS)
		return pipar_errf(err, "%s frame is not a tensor message", what);
	if (len < PIPAR_TENSOR_HEAD)
		return pipar_errf(err, "%s frame of %zu bytes is shorter than its head", what, len);
	m->iteration = get32(p);
	m->micro = get32(p + 4);
	m->n = get32(p + 8);
	m->c = get32(p + 12);
	m->h = get32(p + 16);
	m->w = get32(p + 20);
	loss = get32(p + 24);
	m->batch = type == PIPAR_FRAME_ACTIVATIONS ? loss : 0;
	if (type == PIPAR_FRAME_GRADIENTS)
		memcpy(&m->loss, &loss, 4);
	else
		m->loss = 0;
	if (m->c != c || m->h != h || m->w != w)
		return pipar_errf(err, "%s frame of shape %ux%ux%u, expected %ux%ux%u", what,
				  m->c, m->h, m->w, c, h, w);
	if (m->n < 1 || m->n > max_n)
		return pipar_errf(err, "%s frame of %u samples, expected 1 to %u", what, m->n,
				  max_n);
	if (get32(p + 28) != 0)
		return pipar_errf(err, "%s frame with non-zero reserved bytes", what);
	if (type == PIPAR_FRAME_ACTIVATIONS && (m->batch < m->n || m->batch > max_n))
		return pipar_errf(err, "%s frame: mini-batch of %u samples for a micro-batch of %u (at most %u)",
				  what, m->batch, m->n, max_n);
	if (len != pipar_tensor_msg_size(type, m->n, c, h, w))
		return pipar_errf(err, "%s frame of %zu bytes, its shape needs %zu", what, len,
				  pipar_tensor_msg_size(type, m->n, c, h, w));
	if (type == PIPAR_FRAME_GRADIENTS && !(m->loss == m->loss && m->loss > -3.4e38f &&
					       m->loss < 3.4e38f))
		return pipar_errf(err, "%s frame with a non-finite loss", what);
	/* A value that is not finite would poison every model it reaches;
	 * the sender is the one to blame, so it is refused here. */
	size_t bad = pipar_floats_nonfinite(p + PIPAR_TENSOR_HEAD, (size_t)m->n * c * h * w);

	if (bad != SIZE_MAX)
		return pipar_errf(err, "%s frame: value %zu of sample %zu is not finite", what,
				  bad % ((size_t)c * h * w), bad / ((size_t)c * h * w));
	m->data = (const float *)(const void *)(p + PIPAR_TENSOR_HEAD);
	m->labels = NULL;
	if (type == PIPAR_FRAME_ACTIVATIONS) {
		const uint8_t *lp = p + PIPAR_TENSOR_HEAD + sizeof(float) * (size_t)m->n * c * h * w;

		for (uint32_t i = 0; i < m->n; i++) {
			uint32_t v = get32(lp + 4 * (size_t)i);

			if (v >= (uint32_t)classes)
				return pipar_errf(err, "%s frame: label %u of sample %u outside [0, %d)",
						  what, v, i, classes);
		}
		m->labels = (const int32_t *)(const void *)lp;
	}
	return 0;
}
