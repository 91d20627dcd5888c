/*
 * proto: the payloads of the control frames pipar-serve and pipar-device
 * exchange (pipar-wire(5)), each encoded and decoded here, beside the
 * frames of wire.h (which also holds the ACTIVATIONS and GRADIENTS
 * payloads):
 *
 *   HELLO      device -> server  JSON: the device's id, shard size and
 *                                input normalisation
 *   PLAN       server -> device  JSON: the plan and the run's settings
 *   PARAMS_UP  device -> server  a 32-byte head, then the device part
 *
 * Encoders return malloc'd text (the caller frees it) or fill a caller's
 * buffer.  Decoders take the payload as received, check every field
 * against what the receiver expects, and return -1 with err naming the
 * frame and the field; none keeps a pointer into the payload.  Each
 * decoder has a fuzz target (fuzz/fuzz_proto.c).
 *
 * Who owns what: an encoder's text is the caller's to free; a decoded
 * plan is the caller's (pipar_plan_file_free); the payload given to a
 * decoder stays the caller's.
 */
#ifndef PIPAR_PROTO_H
#define PIPAR_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "data.h"
#include "model.h"
#include "plan.h"

/* HELLO. */
#define PIPAR_HELLO_ID_MAX 63

struct pipar_hello {
	char id[PIPAR_HELLO_ID_MAX + 1];
	long samples;                   /* the shard, its FedAvg weight */
	struct pipar_norm norm;
	int device;                     /* the device number asked for,
					 * 0-based; -1: any */
};

/* Whether id is a device id: 1 to 63 bytes of letters, digits and
 * ._:@+/- (an id is printed in logs; no peer may put a line break or an
 * escape in them).  0, or -1 with why (len bytes). */
int pipar_hello_id_check(const char *id, char *why, size_t len);

char *pipar_hello_encode(const struct pipar_hello *h);
/* Requires an object with a string "id" that pipar_hello_id_check
 * accepts, an integer "samples" from 1 to max_samples and "norm"
 * {"mean": [..], "std": [..]} of channels numbers each, within
 * PIPAR_NORM_MAX of 0 and the deviations at least PIPAR_NORM_MIN (as
 * the checkpoint keeps them), and optionally an integer "device" from 0
 * to 65535 (h->device, -1 when absent); other keys are ignored.  Refusals read
 * "malformed HELLO: field 'norm.std[0]': 0 outside [1e-30, 1e+30]". */
int pipar_hello_decode(const uint8_t *p, size_t len, int channels, long max_samples,
		       struct pipar_hello *h, char *err);

/* PLAN: the plan and the settings of the run for one device. */
struct pipar_settings {
	int device;                     /* 0 .. K-1; -1 in a checkpoint */
	int epochs;
	struct pipar_sgd sgd;
	uint64_t seed;
	int aggregate_every;            /* 0: at the epoch's end only */
	double server_time;             /* the server's clock when sent */
	int first_epoch;                /* the epoch the device starts in: 1,
					 * or later for one that joins a run
					 * under way (0 is taken as 1) */
	int state_up;                   /* the device sends its optimizer state
					 * (momentum) up with its part at each
					 * epoch's end, for a checkpoint to
					 * resume from */
	int state_down;                 /* MODEL carries the device part's
					 * momentum after its state (a resumed
					 * run) */
};

char *pipar_plan_msg_encode(const struct pipar_plan_file *plan,
			    const struct pipar_settings *s);
/* Requires "plan" to be a valid plan (pipar_plan_from_json), "device" in
 * [0, K), "epochs" >= 0, "first_epoch" (optional, 1 when absent) in
 * [1, epochs], "lr", "momentum", "weight_decay" finite numbers
 * >= 0, "aggregate_every" >= 0, and "state_up" and "state_down"
 * (optional, false when absent) booleans.  *plan is the caller's to
 * free. */
int pipar_plan_msg_decode(const uint8_t *p, size_t len, struct pipar_plan_file **plan,
			  struct pipar_settings *s, char *err);

/* PARAMS_UP: the head before the device part's floats.
 *   offset 0  samples seen (u32)     } counted by a device that
 *          4  samples correct (u32)  } computes its own loss (fl);
 *          8  loss summed (f32)      } zero otherwise
 *         12  busy seconds of the device's compute, uplink and downlink
 *             since the last PARAMS_UP (3 x f32)
 *         24  1: an aggregation within the epoch, 0: at its end (u32)
 *         28  1: the part's momentum follows its state, 0: it does not
 *             (u32) */
#define PIPAR_UP_HEAD 32

struct pipar_up_head {
	uint32_t seen, correct;
	float loss;
	float busy[3];
	uint32_t mid;
	uint32_t state;                 /* momentum follows */
};

void pipar_up_head_encode(const struct pipar_up_head *h, uint8_t out[PIPAR_UP_HEAD]);
/* Requires mid and state 0 or 1, len == 32 + 4 dn (state 0) or
 * 32 + 4 (dn + dm) (state 1: dm floats of momentum after the dn of
 * state), busy times in [0, 10^9), correct <= seen and a finite loss; the
 * floats after the head are the caller's to check. */
int pipar_up_head_decode(const uint8_t *p, size_t len, size_t dn, size_t dm,
			 struct pipar_up_head *h, char *err);

#endif
