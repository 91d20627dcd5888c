/*
 * link: a device's connection to the server with each direction shaped to
 * a bandwidth, as an edge link would carry it (DESIGN.md section 4).
 *
 * Sending hands a copy of the frame to a sender thread, which waits until
 * the emulated link would have finished transmitting it (a token bucket:
 * each frame occupies the link for its bytes * 8 / rate seconds, one after
 * another) and then writes it; so the caller computes on while its
 * uploads are in flight, as PiPar needs.  A receiver thread reads frames
 * as they come and releases each to the caller only when the emulated
 * downlink would have delivered it.  A rate of 0 means unshaped.  A
 * one-way delay, when given, holds each frame that long after its link
 * carried it, in both directions.
 *
 * A rate is the link's own, for every byte it carries: a frame takes on
 * it the time of its bytes and of the headers that TCP over IPv4 over
 * Ethernet adds to each segment of them (pipar_link_wire_bytes), as a
 * shaper in the kernel counts them, so that 50 Mbit/s carries a frame's
 * bytes at about 47.8 Mbit/s, as a real link of 50 Mbit/s does.
 */
#ifndef PIPAR_LINK_H
#define PIPAR_LINK_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

struct pipar_link;

/* The segment of TCP over a 1500-byte Ethernet MTU with timestamps (1500 -
 * 20 for IPv4 - 32 for TCP), and the bytes each adds on the link: 14 of
 * Ethernet, 20 of IPv4, 32 of TCP. */
#define PIPAR_LINK_MSS 1448
#define PIPAR_LINK_SEGMENT_OVERHEAD 66

/* The bytes a link carries for n bytes of frames sent back to back: n and
 * the headers of the ceil(n / PIPAR_LINK_MSS) segments they take.  The
 * acknowledgements going the other way, and TLS's 22 bytes in each record
 * of up to 16 KB (0.13%), are not counted. */
double pipar_link_wire_bytes(double n);

struct pipar_chan;

/* Starts the two threads for ch.  latency is a one-way delay in seconds
 * (0: none) added to every frame in each direction after the link has
 * carried it: frames in flight overlap their delays, as on a real path
 * with a round-trip time of twice it.  max_len bounds received frames.
 * NULL with err when threads or memory are not to be had. */
struct pipar_link *pipar_link_new(struct pipar_chan *ch, double up_bps, double down_bps,
				  double latency, uint32_t max_len, char *err);

/* Queues a frame (the payload is copied).  -1 with err when the sender
 * has failed (the connection is gone). */
int pipar_link_send(struct pipar_link *l, int type, const void *payload,
		    size_t len, char *err);

/* The next frame, when the emulated downlink delivers it: 1 with *h and
 * the payload in *buf (grown as needed, *cap its size), 0 at a clean end
 * of stream, -1 with err. */
int pipar_link_recv(struct pipar_link *l, struct pipar_frame_header *h,
		    uint8_t **buf, size_t *cap, char *err);

struct pipar_trace;

/* Records every transfer in t from now on (uploads on the uplink, downloads
 * on the downlink, as the emulated links carry them). */
void pipar_link_set_trace(struct pipar_link *l, struct pipar_trace *t);

/* Raises the bound on received frames (after the plan is known). */
void pipar_link_set_max(struct pipar_link *l, uint32_t max_len);

/* Whether the server's last word came: the type of a BYE or ERROR among
 * the frames received and not yet taken (ERROR's text, made printable,
 * into text), waiting up to wait seconds for one or for the end of the
 * stream; 0 when none came.  For a send that failed: the server may have
 * said why before it closed. */
int pipar_link_last_word(struct pipar_link *l, double wait, char *text, size_t len);
/* Waits until every queued frame is sent, stops the threads and frees l
 * (not ch).  Returns -1 with err if a send had failed. */
int pipar_link_close(struct pipar_link *l, char *err);

/* Bytes sent and received so far, frame headers included. */
double pipar_link_bytes_up(const struct pipar_link *l);
double pipar_link_bytes_down(const struct pipar_link *l);

#endif
