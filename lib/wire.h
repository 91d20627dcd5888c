/*
 * wire: the frames pipar-serve and pipar-device exchange over a channel
 * (chan.h: TCP, or TLS over TCP)
 * (DESIGN.md section 4; the format is written down in pipar-wire(5)).
 *
 * Every frame is a 24-byte header followed by the payload:
 *   offset  size  field
 *        0     4  magic "PIPR"
 *        4     1  version (1)
 *        5     1  type (enum pipar_frame_type)
 *        6     2  flags (0; reserved)
 *        8     4  payload length in bytes
 *       12     4  sequence number (per connection and direction, from 0)
 *       16     4  CRC-32C of the payload
 *       20     4  CRC-32C of bytes 0..19 of the header
 * All integers and floats are little-endian; floats are IEEE-754 binary32.
 * The header has its own checksum so that a corrupt length is caught
 * before anything is allocated for it; the receiver also refuses a length
 * over the bound the caller derives from the plan.  No payload ever holds
 * code or serialised objects: only numbers, and UTF-8 text in HELLO and
 * ERROR.
 */
#ifndef PIPAR_WIRE_H
#define PIPAR_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define PIPAR_WIRE_MAGIC "PIPR"
#define PIPAR_WIRE_VERSION 2
#define PIPAR_WIRE_HEADER 24

enum pipar_frame_type {
	PIPAR_FRAME_HELLO = 1,
	PIPAR_FRAME_PLAN,
	PIPAR_FRAME_MODEL,
	PIPAR_FRAME_ACTIVATIONS,
	PIPAR_FRAME_GRADIENTS,
	PIPAR_FRAME_PARAMS_UP,
	PIPAR_FRAME_PARAMS_DOWN,
	PIPAR_FRAME_EVAL,
	PIPAR_FRAME_ERROR,
	PIPAR_FRAME_BYE,
	PIPAR_FRAME_READY,
	PIPAR_FRAME_START,
	PIPAR_FRAME_MAX_TYPE = PIPAR_FRAME_START,
};

const char *pipar_frame_type_name(int type);

struct pipar_frame_header {
	int type;
	uint16_t flags;
	uint32_t length;
	uint32_t seq;
	uint32_t crc;                   /* of the payload */
};

/* CRC-32C (Castagnoli), continuing from crc (0 to start). */
uint32_t pipar_crc32c(uint32_t crc, const void *data, size_t n);
/* The same by table, whatever the machine has (pipar_crc32c uses it where
 * the CRC instruction is missing); safe to call from any thread. */
uint32_t pipar_crc32c_table(uint32_t crc, const void *data, size_t n);

/* Writes the 24 header bytes for h (its crc field is the payload's). */
void pipar_wire_header_encode(const struct pipar_frame_header *h,
			      uint8_t out[PIPAR_WIRE_HEADER]);

/* Decodes and checks a header: magic, version, header checksum, a known
 * type, zero flags, length <= max_len, and seq equal to expect_seq.  -1
 * with err saying which. */
int pipar_wire_header_decode(const uint8_t in[PIPAR_WIRE_HEADER],
			     uint32_t max_len, uint32_t expect_seq,
			     struct pipar_frame_header *h, char *err);

struct pipar_chan;

/* Sends one frame on ch (header and payload, retried on short writes).
 * -1 with err on a connection error; when the channel's timeout runs
 * out, err says "timed out after N s". */
int pipar_wire_send(struct pipar_chan *ch, int type, uint32_t seq, const void *payload,
		    size_t len, char *err);

/* Receives one frame: the header is checked as pipar_wire_header_decode
 * does, then the payload is read into *buf (grown with realloc as
 * needed; *cap is its size) and its CRC checked.  Returns 1 for a frame,
 * 0 for a clean end of stream before a header, -1 with err otherwise (a
 * stream that ends inside a frame is an error).  When the channel's
 * timeout (or deadline) runs out, err says "timed out after N s waiting
 * for a frame" (or inside which frame). */
int pipar_wire_recv(struct pipar_chan *ch, uint32_t max_len, uint32_t expect_seq,
		    struct pipar_frame_header *h, uint8_t **buf, size_t *cap,
		    char *err);

/* The index of the first of n floats at p (any alignment) that is NaN
 * or infinite; SIZE_MAX when every one is finite.  Every tensor a peer
 * sends is checked with it before use. */
size_t pipar_floats_nonfinite(const void *p, size_t n);

/* ACTIVATIONS and GRADIENTS payloads: a fixed 32-byte head then data.
 *   ACTIVATIONS: iteration, micro, n, c, h, w (u32 each), batch (u32: the
 *                samples of the whole mini-batch the micro-batch belongs
 *                to), 4 zero bytes, n*c*h*w floats, then n labels (i32)
 *   GRADIENTS:   iteration, micro, n, c, h, w (u32 each), loss (f32: the
 *                summed loss of the n samples), 4 zero bytes, n*c*h*w
 *                floats */
struct pipar_tensor_msg {
	uint32_t iteration, micro, n, c, h, w;
	uint32_t batch;                 /* ACTIVATIONS only */
	float loss;                     /* GRADIENTS only */
	const float *data;              /* into the payload; may be unaligned */
	const int32_t *labels;          /* ACTIVATIONS only; may be unaligned */
};

#define PIPAR_TENSOR_HEAD 32

/* Bytes of the payload for n samples of shape c x h x w. */
size_t pipar_tensor_msg_size(int type, uint32_t n, uint32_t c, uint32_t h,
			     uint32_t w);

/* Writes the head of a tensor message into out[0..32). */
void pipar_tensor_msg_head(int type, const struct pipar_tensor_msg *m,
			   uint8_t out[PIPAR_TENSOR_HEAD]);

/* Parses a tensor payload and checks it against what is expected: the
 * shape c x h x w exactly, 1 <= n <= max_n (and n <= batch <= max_n for
 * ACTIVATIONS), the length matching, every value finite, labels in
 * [0, classes).  -1 with err naming the field. */
int pipar_tensor_msg_parse(int type, const uint8_t *p, size_t len,
			   uint32_t c, uint32_t h, uint32_t w, uint32_t max_n,
			   int classes, struct pipar_tensor_msg *m, char *err);

#endif
