/*
 * Shaped links: a sender thread and a receiver thread per connection,
 * each keeping the time its emulated link becomes free.
 */
#define _POSIX_C_SOURCE 200809L
#include "link.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "chan.h"
#include "trace.h"
#include "util.h"

struct item {
	struct item *next;
	int type;
	size_t len;
	struct pipar_frame_header h;    /* received frames */
	double ready;                   /* received: when the link delivers it */
	double queued;                  /* sent: when the caller handed it over */
	uint8_t data[];
};

struct pipar_link {
	struct pipar_chan *ch;
	double up_bps, down_bps;
	double latency;                 /* one-way delay, seconds */
	uint32_t max_len;
	pthread_t sender, receiver;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct item *out_head, *out_tail, *in_head, *in_tail;
	int closing, send_failed, recv_done;    /* recv_done: 1 end, -1 error */
	char send_err[PIPAR_ERRLEN], recv_err[PIPAR_ERRLEN];
	uint32_t seq_out, seq_in;
	double bytes_up, bytes_down;
	struct pipar_trace *trace;
};

/* The stage name and (iteration, micro-batch) of a frame for the trace. */
static const char *stage_of(int type, const uint8_t *p, size_t len, int up, int *it, int *mi)
{
	*it = *mi = -1;
	if ((type == PIPAR_FRAME_ACTIVATIONS || type == PIPAR_FRAME_GRADIENTS) && len >= 8) {
		uint32_t a, b;

		memcpy(&a, p, 4);
		memcpy(&b, p + 4, 4);
		*it = (int)a;
		*mi = (int)b;
		return up ? "upload" : "download";
	}
	if (type == PIPAR_FRAME_PARAMS_UP || type == PIPAR_FRAME_PARAMS_DOWN)
		return up ? "parameters up" : "parameters down";
	return up ? "control up" : "control down";
}

void pipar_link_set_trace(struct pipar_link *l, struct pipar_trace *t)
{
	pthread_mutex_lock(&l->mu);
	l->trace = t;
	pthread_mutex_unlock(&l->mu);
}

static void sleep_until(double t)
{
	double d = t - pipar_now();

	if (d > 0) {
		struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};

		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
}

double pipar_link_wire_bytes(double n)
{
	return n > 0 ? n + ceil(n / PIPAR_LINK_MSS) * PIPAR_LINK_SEGMENT_OVERHEAD : 0;
}

static void *send_loop(void *arg)
{
	struct pipar_link *l = arg;
	double free_at = 0;

	pthread_mutex_lock(&l->mu);
	for (;;) {
		while (!l->out_head && !l->closing)
			pthread_cond_wait(&l->cv, &l->mu);
		if (!l->out_head)
			break;
		struct item *it = l->out_head;

		l->out_head = it->next;
		if (!l->out_head)
			l->out_tail = NULL;
		int failed = l->send_failed;

		pthread_mutex_unlock(&l->mu);
		if (!failed) {
			double bytes = (double)(PIPAR_WIRE_HEADER + it->len);

			/* The frame leaves when the emulated link has carried it
			 * and the delay has passed; the link is busy only while
			 * it carries the frame, so frames in flight overlap
			 * their delays (the next one starts when it was queued,
			 * not when this one left). */
			double start = free_at > it->queued ? free_at : it->queued;
			int it_no, mi;
			const char *st = stage_of(it->type, it->data, it->len, 1, &it_no, &mi);

			free_at = l->up_bps > 0 ? start + pipar_link_wire_bytes(bytes) * 8 / l->up_bps
						: start;
			sleep_until(free_at + l->latency);
			char e[PIPAR_ERRLEN];
			int bad = pipar_wire_send(l->ch, it->type, l->seq_out++, it->data, it->len, e) < 0;

			pthread_mutex_lock(&l->mu);
			if (bad) {
				l->send_failed = 1;
				snprintf(l->send_err, sizeof(l->send_err), "%s", e);
			} else {
				l->bytes_up += bytes;
				/* Busy while carrying it (the write's own time
			 * when unshaped), not while it is delayed. */
			double end = pipar_now() - l->latency;

			pipar_trace_event_bytes(l->trace, st, PIPAR_RES_UPLINK, start,
						(end > free_at ? end : free_at) - start, it_no, mi,
						bytes);
			}
			pthread_mutex_unlock(&l->mu);
		}
		free(it);
		pthread_mutex_lock(&l->mu);
		pthread_cond_broadcast(&l->cv);
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

static void *recv_loop(void *arg)
{
	struct pipar_link *l = arg;
	double free_at = 0;
	uint8_t *buf = NULL;
	size_t cap = 0;

	for (;;) {
		struct pipar_frame_header h;
		char err[PIPAR_ERRLEN];
		uint32_t max;
		struct item *it;

		pthread_mutex_lock(&l->mu);
		max = l->max_len;
		pthread_mutex_unlock(&l->mu);
		int r = pipar_wire_recv(l->ch, max, l->seq_in, &h, &buf, &cap, err);

		pthread_mutex_lock(&l->mu);
		if (r <= 0 || l->closing) {
			if (r < 0)
				snprintf(l->recv_err, sizeof(l->recv_err), "%s", err);
			l->recv_done = r < 0 ? -1 : 1;
			pthread_cond_broadcast(&l->cv);
			pthread_mutex_unlock(&l->mu);
			break;
		}
		pthread_mutex_unlock(&l->mu);
		l->seq_in++;
		it = malloc(sizeof(*it) + h.length);
		if (!it) {
			pthread_mutex_lock(&l->mu);
			snprintf(l->recv_err, sizeof(l->recv_err), "out of memory");
			l->recv_done = -1;
			pthread_cond_broadcast(&l->cv);
			pthread_mutex_unlock(&l->mu);
			break;
		}
		double bytes = (double)(PIPAR_WIRE_HEADER + h.length), now = pipar_now();

		it->next = NULL;
		it->h = h;
		it->len = h.length;
		memcpy(it->data, buf, h.length);
		/* The emulated link carries it from when it came (or when
		 * the frame before is done), and delivers it the delay after
		 * it is carried. */
		double start = free_at > now ? free_at : now;

		free_at = l->down_bps > 0 ? start + pipar_link_wire_bytes(bytes) * 8 / l->down_bps
					  : start;
		it->ready = free_at + l->latency;
		pthread_mutex_lock(&l->mu);
		l->bytes_down += bytes;
		{
			int it_no, mi;
			const char *st = stage_of(h.type, buf, h.length, 0, &it_no, &mi);

			pipar_trace_event_bytes(l->trace, st, PIPAR_RES_DOWNLINK, start,
						free_at - start, it_no, mi, bytes);
		}
		if (l->in_tail)
			l->in_tail->next = it;
		else
			l->in_head = it;
		l->in_tail = it;
		pthread_cond_broadcast(&l->cv);
		pthread_mutex_unlock(&l->mu);
	}
	free(buf);
	return NULL;
}

struct pipar_link *pipar_link_new(struct pipar_chan *ch, double up_bps, double down_bps,
				  double latency, uint32_t max_len, char *err)
{
	struct pipar_link *l = calloc(1, sizeof(*l));

	if (!l)
		return pipar_errf(err, "out of memory"), NULL;
	l->ch = ch;
	l->up_bps = up_bps;
	l->down_bps = down_bps;
	l->latency = latency > 0 ? latency : 0;
	l->max_len = max_len;
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->cv, NULL);
	if (pthread_create(&l->sender, NULL, send_loop, l) != 0) {
		free(l);
		return pipar_errf(err, "cannot start the sender thread"), NULL;
	}
	if (pthread_create(&l->receiver, NULL, recv_loop, l) != 0) {
		pthread_mutex_lock(&l->mu);
		l->closing = 1;
		pthread_cond_broadcast(&l->cv);
		pthread_mutex_unlock(&l->mu);
		pthread_join(l->sender, NULL);
		free(l);
		return pipar_errf(err, "cannot start the receiver thread"), NULL;
	}
	return l;
}

void pipar_link_set_max(struct pipar_link *l, uint32_t max_len)
{
	pthread_mutex_lock(&l->mu);
	l->max_len = max_len;
	pthread_mutex_unlock(&l->mu);
}

int pipar_link_send(struct pipar_link *l, int type, const void *payload,
		    size_t len, char *err)
{
	struct item *it;

	pthread_mutex_lock(&l->mu);
	if (l->send_failed) {
		pipar_errf(err, "%s", l->send_err);
		pthread_mutex_unlock(&l->mu);
		return -1;
	}
	pthread_mutex_unlock(&l->mu);
	it = malloc(sizeof(*it) + len);
	if (!it)
		return pipar_errf(err, "out of memory");
	it->next = NULL;
	it->type = type;
	it->len = len;
	it->queued = pipar_now();
	if (len)
		memcpy(it->data, payload, len);
	pthread_mutex_lock(&l->mu);
	if (l->out_tail)
		l->out_tail->next = it;
	else
		l->out_head = it;
	l->out_tail = it;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	return 0;
}

int pipar_link_recv(struct pipar_link *l, struct pipar_frame_header *h,
		    uint8_t **buf, size_t *cap, char *err)
{
	struct item *it;

	pthread_mutex_lock(&l->mu);
	while (!l->in_head && !l->recv_done)
		pthread_cond_wait(&l->cv, &l->mu);
	if (!l->in_head) {
		int d = l->recv_done;

		if (d < 0)
			pipar_errf(err, "%s", l->recv_err);
		pthread_mutex_unlock(&l->mu);
		return d < 0 ? -1 : 0;
	}
	it = l->in_head;
	l->in_head = it->next;
	if (!l->in_head)
		l->in_tail = NULL;
	pthread_mutex_unlock(&l->mu);
	sleep_until(it->ready);
	if (it->len > *cap) {
		uint8_t *nb = realloc(*buf, it->len);

		if (!nb) {
			free(it);
			return pipar_errf(err, "out of memory");
		}
		*buf = nb;
		*cap = it->len;
	}
	memcpy(*buf, it->data, it->len);
	*h = it->h;
	free(it);
	return 1;
}

int pipar_link_last_word(struct pipar_link *l, double wait, char *text, size_t len)
{
	double until = pipar_now() + wait;
	struct item *it;
	int type = 0;

	pthread_mutex_lock(&l->mu);
	for (;;) {
		for (it = l->in_head; it; it = it->next)
			if (it->h.type == PIPAR_FRAME_BYE || it->h.type == PIPAR_FRAME_ERROR)
				break;
		if (it || l->recv_done || pipar_now() >= until)
			break;
		struct timespec ts;
		double t = until - pipar_now();

		clock_gettime(CLOCK_REALTIME, &ts);
		t = t > 0.01 ? (t < 0.05 ? t : 0.05) : 0.01;
		ts.tv_nsec += (long)(t * 1e9);
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&l->cv, &l->mu, &ts);
	}
	if (it) {
		type = it->h.type;
		pipar_text_escape(text, len, (const char *)it->data, it->len);
	}
	pthread_mutex_unlock(&l->mu);
	return type;
}

int pipar_link_close(struct pipar_link *l, char *err)
{
	int r;

	pthread_mutex_lock(&l->mu);
	while (l->out_head && !l->send_failed)
		pthread_cond_wait(&l->cv, &l->mu);
	l->closing = 1;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	pthread_join(l->sender, NULL);
	/* The receiver may be blocked in read: end the stream for it. */
	pipar_chan_shutdown(l->ch);
	pthread_join(l->receiver, NULL);
	r = l->send_failed ? pipar_errf(err, "%s", l->send_err) : 0;
	while (l->in_head) {
		struct item *it = l->in_head;

		l->in_head = it->next;
		free(it);
	}
	while (l->out_head) {
		struct item *it = l->out_head;

		l->out_head = it->next;
		free(it);
	}
	pthread_mutex_destroy(&l->mu);
	pthread_cond_destroy(&l->cv);
	free(l);
	return r;
}

double pipar_link_bytes_up(const struct pipar_link *l)
{
	return l->bytes_up;
}

double pipar_link_bytes_down(const struct pipar_link *l)
{
	return l->bytes_down;
}
