/*
 * test_link: a device's emulated link (link.h) over a socket pair: a
 * one-way delay holds each frame at least that long in each direction,
 * frames in flight overlap their delays, the rate and the delay add, and
 * the server's last word (BYE, ERROR) is found after the connection went.
 * Only lower bounds are timings here, and one generous upper bound (a
 * tenth of a second's work against a whole second).
 */
#define _POSIX_C_SOURCE 200809L
#include "chan.h"
#include "link.h"
#include "tap.h"
#include "util.h"
#include "wire.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct pair {
	struct pipar_chan *a, *b;       /* a: the link's side; b: the peer's */
	struct pipar_link *l;
	uint32_t seq_b_in, seq_b_out;
};

static void pair_open(struct pair *p, double up_bps, double latency)
{
	int sv[2];
	char err[PIPAR_ERRLEN];

	PIPAR_ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	PIPAR_ASSERT((p->a = pipar_chan_new(sv[0], NULL, NULL, err)));
	PIPAR_ASSERT((p->b = pipar_chan_new(sv[1], NULL, NULL, err)));
	pipar_chan_set_timeout(p->a, 10);
	pipar_chan_set_timeout(p->b, 10);
	PIPAR_ASSERT((p->l = pipar_link_new(p->a, up_bps, 0, latency, 1 << 20, err)));
	p->seq_b_in = p->seq_b_out = 0;
}

static void pair_close(struct pair *p)
{
	char err[PIPAR_ERRLEN];

	pipar_chan_shutdown(p->b);
	pipar_link_close(p->l, err);
	pipar_chan_free(p->a);
	pipar_chan_free(p->b);
}

/* The peer's next frame, the time it came. */
static double peer_recv(struct pair *p, int *type)
{
	struct pipar_frame_header h;
	uint8_t *buf = NULL;
	size_t cap = 0;
	char err[PIPAR_ERRLEN];
	int r = pipar_wire_recv(p->b, 1 << 20, p->seq_b_in++, &h, &buf, &cap, err);

	free(buf);
	if (r <= 0)
		diag("peer: %s", r ? err : "closed");
	*type = r > 0 ? h.type : -1;
	return pipar_now();
}

int main(void)
{
	struct pair p;
	char payload[1000] = {0}, err[PIPAR_ERRLEN];
	int type;

	/* Up: one frame, then ten at once. */
	pair_open(&p, 0, 0.1);
	double t0 = pipar_now();

	PIPAR_ASSERT(pipar_link_send(p.l, PIPAR_FRAME_ACTIVATIONS, payload, sizeof(payload), err) == 0);
	double t1 = peer_recv(&p, &type);

	ok(type == PIPAR_FRAME_ACTIVATIONS && t1 - t0 >= 0.1,
	   "a frame up with a 100 ms delay arrives no sooner (after %.3f s)", t1 - t0);
	t0 = pipar_now();
	for (int i = 0; i < 10; i++)
		PIPAR_ASSERT(pipar_link_send(p.l, PIPAR_FRAME_ACTIVATIONS, payload, sizeof(payload), err) ==
			     0);
	for (int i = 0; i < 10; i++)
		t1 = peer_recv(&p, &type);
	ok(t1 - t0 >= 0.1 && t1 - t0 < 0.5,
	   "ten frames in flight overlap their delays: the last after %.3f s, not 1 s", t1 - t0);

	/* Down: the peer's frame is delivered the delay after it came. */
	t0 = pipar_now();
	PIPAR_ASSERT(pipar_wire_send(p.b, PIPAR_FRAME_GRADIENTS, p.seq_b_out++, payload, 100, err) == 0);
	{
		struct pipar_frame_header h;
		uint8_t *buf = NULL;
		size_t cap = 0;
		int r = pipar_link_recv(p.l, &h, &buf, &cap, err);

		t1 = pipar_now();
		free(buf);
		ok(r == 1 && h.type == PIPAR_FRAME_GRADIENTS && t1 - t0 >= 0.1,
		   "a frame down with a 100 ms delay is delivered no sooner (after %.3f s)", t1 - t0);
	}
	pair_close(&p);

	/* Rate and delay add: 100,000 bytes at 8 Mbit/s take 0.1 s on the
	 * link, then the delay. */
	{
		char *big = calloc(1, 100000);

		pair_open(&p, 8e6, 0.1);
		t0 = pipar_now();
		PIPAR_ASSERT(pipar_link_send(p.l, PIPAR_FRAME_ACTIVATIONS, big, 100000, err) == 0);
		t1 = peer_recv(&p, &type);
		ok(t1 - t0 >= 0.2, "100 kB at 8 Mbit/s with a 100 ms delay arrive after %.3f s (>= 0.2)",
		   t1 - t0);
		pair_close(&p);
		free(big);
	}

	/* The last word: a BYE, or an ERROR's text, found after the peer
	 * closed; nothing when it said nothing. */
	pair_open(&p, 0, 0);
	PIPAR_ASSERT(pipar_wire_send(p.b, PIPAR_FRAME_ERROR, p.seq_b_out++, "no\nroom", 7, err) == 0);
	pipar_chan_shutdown(p.b);
	{
		char why[64] = "";
		int last = pipar_link_last_word(p.l, 2, why, sizeof(why));

		ok(last == PIPAR_FRAME_ERROR && strstr(why, "no") && !strchr(why, '\n'),
		   "an ERROR before the end is the last word, made printable ('%s')", why);
	}
	pair_close(&p);
	pair_open(&p, 0, 0);
	pipar_chan_shutdown(p.b);
	{
		char why[64] = "";

		ok(pipar_link_last_word(p.l, 2, why, sizeof(why)) == 0,
		   "a peer that closed without a word has none");
	}
	pair_close(&p);
	return tap_done();
}
