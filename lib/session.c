/*
 * One device's session on the server, after the handshake: ACTIVATIONS
 * answered with GRADIENTS, PARAMS_UP at each aggregation, the barrier
 * where the devices meet, PARAMS_DOWN, and BYE at the end.
 */
#define _POSIX_C_SOURCE 200809L
#include "server_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "runtime.h"
#include "wire.h"
#include "exec.h"

struct session {
	struct conn *c;
	struct server *s;
	struct pipar_shape cut;         /* the replica's input */
	int classes;
	uint32_t bound;                 /* the largest frame taken */
	uint8_t *buf, *gbuf;            /* the frame received, GRADIENTS sent */
	size_t cap, gcap;
	float *x, *dl;
	int *labels;
	uint32_t it, micro_i, got;      /* where the device is in its epoch */
	double bloss;                   /* loss of the mini-batch so far */
	char why[PIPAR_ERRLEN + 32];    /* why the session ended */
};

/* Ends the session with a message, sent to the device as ERROR when
 * tell is set.  Always -1. */
static int fail(struct session *ss, int tell, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct session *ss, int tell, const char *fmt, ...)
{
	char err[PIPAR_ERRLEN];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ss->why, sizeof(ss->why), fmt, ap);
	va_end(ap);
	if (tell)
		pipar_wire_send(ss->c->ch, PIPAR_FRAME_ERROR, ss->c->seq_out++, ss->why,
				strlen(ss->why), err);
	return -1;
}

/* Whether a signal stopped the run: read after every frame, so without
 * taking s->mu (which an aggregation holds); the signal watch sets it
 * once, under s->mu, with an atomic store. */
static int stopping(struct server *s)
{
	return __atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE);
}

/* Sends device c its part of the global model. */
static int send_down(struct session *ss)
{
	struct conn *c = ss->c;
	char err[PIPAR_ERRLEN];

	if (pipar_wire_send(c->ch, PIPAR_FRAME_PARAMS_DOWN, c->seq_out++, ss->s->G,
			    sizeof(float) * c->dn, err) < 0)
		return fail(ss, 0, "%s", err);
	c->bytes_down += PIPAR_WIRE_HEADER + sizeof(float) * c->dn;
	return 0;
}

/* The replica's forward, loss and backward for one micro-batch m (and
 * its step after the mini-batch's last), on the server's one processor;
 * the GRADIENTS payload into ss->gbuf.  Returns its size, 0 when out of
 * memory. */
static size_t compute(struct session *ss, const struct pipar_tensor_msg *m, double *loss,
		      int *correct)
{
	struct server *s = ss->s;
	struct conn *c = ss->c;
	struct pipar_shape cut = ss->cut;
	size_t gsize = pipar_tensor_msg_size(PIPAR_FRAME_GRADIENTS, m->n, (uint32_t)cut.c,
					     (uint32_t)cut.h, (uint32_t)cut.w);

	if (gsize > ss->gcap) {
		uint8_t *nb = realloc(ss->gbuf, gsize);

		if (!nb)
			return 0;
		ss->gbuf = nb;
		ss->gcap = gsize;
	}
	memcpy(ss->x, m->data, sizeof(float) * pipar_shape_size(cut) * m->n);
	memcpy(ss->labels, m->labels, sizeof(int) * m->n);
	pthread_mutex_lock(&s->compute);
	double tc = pipar_now();

	if (ss->micro_i == 0)
		pipar_model_zero_grad(c->replica);
	const float *z = pipar_exec_forward(c->exec, ss->x, (int)m->n, 1);

	*loss = pipar_softmax_xent(z, ss->labels, (int)m->n, ss->classes, 1.0f / (float)m->batch,
				   ss->dl, correct);
	const float *dx = pipar_exec_backward(c->exec, ss->dl, 1);
	struct pipar_tensor_msg g = *m;

	g.loss = (float)*loss;
	g.batch = 0;
	pipar_tensor_msg_head(PIPAR_FRAME_GRADIENTS, &g, ss->gbuf);
	memcpy(ss->gbuf + PIPAR_TENSOR_HEAD, dx, sizeof(float) * pipar_shape_size(cut) * m->n);
	if (ss->got + m->n == m->batch)
		pipar_model_sgd_step(c->replica, &s->cfg->sgd);
	s->busy += pipar_now() - tc;
	pipar_trace_event_for(s->trace, "server", PIPAR_RES_COMPUTE, tc, pipar_now() - tc,
			      (int)m->iteration, (int)m->micro, c->k);
	pthread_mutex_unlock(&s->compute);
	return gsize;
}

/* One ACTIVATIONS frame of length len in ss->buf: checked, computed and
 * answered. */
static int on_activations(struct session *ss, uint32_t len)
{
	struct server *s = ss->s;
	struct conn *c = ss->c;
	struct pipar_shape cut = ss->cut;
	uint32_t max_n = (uint32_t)c->max_n;
	struct pipar_tensor_msg m;
	char err[PIPAR_ERRLEN];
	double loss = 0;
	int correct = 0;
	size_t gsize;

	if (pipar_tensor_msg_parse(PIPAR_FRAME_ACTIVATIONS, ss->buf, len, (uint32_t)cut.c,
				   (uint32_t)cut.h, (uint32_t)cut.w,
				   max_n > (uint32_t)s->B ? max_n : (uint32_t)s->B, ss->classes, &m,
				   err) < 0)
		return fail(ss, 1, "%s", err);
	if (m.n > max_n)
		return fail(ss, 1, "micro-batch larger than the plan's");
	if (m.iteration != ss->it || m.micro != ss->micro_i || (int)m.batch > s->B)
		return fail(ss, 1, "ACTIVATIONS out of order (iteration %u micro %u, expected %u %u)",
			    m.iteration, m.micro, ss->it, ss->micro_i);
	if (!(gsize = compute(ss, &m, &loss, &correct)))
		return fail(ss, 0, "out of memory");
	/* Finite values can still overflow the replica: the device whose
	 * activations did it is the one refused, before anything is sent. */
	if (!isfinite(loss) ||
	    pipar_floats_nonfinite(ss->gbuf + PIPAR_TENSOR_HEAD,
				   pipar_shape_size(cut) * m.n) != SIZE_MAX)
		return fail(ss, 1, "ACTIVATIONS of iteration %u, micro-batch %u drive the server part to a non-finite %s",
			    m.iteration, m.micro, isfinite(loss) ? "gradient" : "loss");
	ss->got += m.n;
	c->round_seen += m.n;
	c->loss += loss;
	c->seen += m.n;
	c->correct += correct;
	ss->bloss += loss;
	if (pipar_wire_send(c->ch, PIPAR_FRAME_GRADIENTS, c->seq_out++, ss->gbuf, gsize, err) < 0)
		return fail(ss, 0, "%s", err);
	c->bytes_down += PIPAR_WIRE_HEADER + gsize;
	if (ss->got == m.batch) {
		pipar_server_progress(s, c, ss->bloss, (long)m.batch);
		ss->bloss = 0;
		ss->it++;
		ss->micro_i = 0;
		ss->got = 0;
	} else {
		ss->micro_i++;
	}
	return 0;
}

/* One PARAMS_UP frame of length len in ss->buf: checked and taken in.
 * *mid is set when the aggregation is within the epoch. */
static int on_params_up(struct session *ss, uint32_t len, int *mid)
{
	struct server *s = ss->s;
	struct conn *c = ss->c;
	struct pipar_up_head h;
	char err[PIPAR_ERRLEN];

	/* Only between mini-batches; within an epoch only when asked for;
	 * counts only from a device that computes its own loss; momentum
	 * at an epoch's end exactly when checkpoints resume. */
	int state = 0;

	if (pipar_up_head_decode(ss->buf, len, c->dn, c->dm, &h, err) < 0 || ss->micro_i != 0 ||
	    (h.mid && (!s->cfg->aggregate_every || !s->ops->mid_aggregation)) ||
	    (c->replica && (h.seen || h.correct || h.loss != 0)) ||
	    (int)h.state != (state = !h.mid && s->cfg->checkpoint_every > 0))
		return fail(ss, 1, "malformed PARAMS_UP (%u bytes, expected %zu)", len,
			    PIPAR_UP_HEAD + sizeof(float) * (c->dn + (state ? c->dm : 0)));
	if ((long)h.seen > c->samples)
		return fail(ss, 1, "PARAMS_UP: %u samples seen, but the shard has %ld", h.seen,
			    c->samples);
	c->seen += h.seen;
	c->round_seen += h.seen;
	c->correct += h.correct;
	c->loss += h.loss;
	for (int r = 0; r < 3; r++)
		c->busy[r] += h.busy[r];
	size_t bad = pipar_floats_nonfinite(ss->buf + PIPAR_UP_HEAD, c->dn + (state ? c->dm : 0));

	if (bad != SIZE_MAX)
		return fail(ss, 1, "PARAMS_UP: value %zu of the device part%s is not finite",
			    bad < c->dn ? bad : bad - c->dn, bad < c->dn ? "" : "'s momentum");
	memcpy(c->up, ss->buf + PIPAR_UP_HEAD, sizeof(float) * c->dn);
	if (state)
		memcpy(c->mom_up, ss->buf + PIPAR_UP_HEAD + sizeof(float) * c->dn,
		       sizeof(float) * c->dm);
	*mid = (int)h.mid;
	return 0;
}

/* The device's part is in: in turns, hand it on to the next device;
 * otherwise wait for every live device, the last to arrive aggregating,
 * and send the global part down. */
static int meet(struct session *ss, int mid)
{
	struct server *s = ss->s;
	struct conn *c = ss->c;

	pthread_mutex_lock(&s->mu);
	if (s->ops->turns) {
		memcpy(s->G, c->up, sizeof(float) * c->dn);
		int nx = pipar_server_next_alive(s, c->k);

		if (nx < 0) {
			pipar_aggregate(s);
			nx = pipar_server_next_alive(s, -1);
		}
		s->turn = nx;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
		return 0;
	}
	int gen = s->generation;

	s->arrived++;
	s->round_mid = mid;     /* every device agrees: one schedule */
	if (s->arrived == s->live) {
		pipar_aggregate(s);
		s->arrived = 0;
		s->generation++;
		pthread_cond_broadcast(&s->cv);
	} else {
		while (s->generation == gen && !s->stopping)
			pthread_cond_wait(&s->cv, &s->mu);
	}
	/* The aggregation may have refused this device's model. */
	int refused = !c->alive, stop = s->generation == gen && s->stopping;

	pthread_mutex_unlock(&s->mu);
	if (refused)
		return fail(ss, 1, "%s", c->fault);
	if (stop)
		return -2;
	return send_down(ss);
}

/* One epoch: in turns, wait for this device's turn and hand it the
 * model; then frames until the PARAMS_UP that closes the epoch. */
static int epoch(struct session *ss, int e)
{
	struct server *s = ss->s;
	struct conn *c = ss->c;
	struct pipar_frame_header h;
	char err[PIPAR_ERRLEN];
	int mid = 0;

	ss->it = ss->micro_i = ss->got = 0;     /* iterations count from 0 in every epoch */
	if (c->exec)
		pipar_runtime_reseed(c->exec, (uint64_t)c->k, e);
	if (s->ops->turns) {
		pthread_mutex_lock(&s->mu);
		while (s->turn != c->k && !s->stopping)
			pthread_cond_wait(&s->cv, &s->mu);
		int stop = s->stopping;

		pthread_mutex_unlock(&s->mu);
		if (stop)
			return -2;
		if (send_down(ss) < 0)
			return -1;
	}
	do {
		int r = pipar_wire_recv(c->ch, ss->bound, c->seq_in, &h, &ss->buf, &ss->cap, err);

		if (r <= 0 && stopping(s))
			return -2;
		if (r <= 0)
			return fail(ss, r < 0, "%s", r == 0 ? "disconnected" : err);
		if (stopping(s))
			return -2;      /* the partial epoch is abandoned */
		c->seq_in++;
		c->bytes_up += PIPAR_WIRE_HEADER + h.length;
		if (h.type == PIPAR_FRAME_ACTIVATIONS && c->replica) {
			if (on_activations(ss, h.length) < 0)
				return -1;
			continue;
		}
		if (h.type != PIPAR_FRAME_PARAMS_UP)
			return fail(ss, 1, "unexpected %s frame", pipar_frame_type_name(h.type));
		int m = 0;

		if (on_params_up(ss, h.length, &mid) < 0 || (m = meet(ss, mid)) < 0)
			return m == -2 ? -2 : -1;
		if (s->ops->turns)
			break;
	} while (h.type != PIPAR_FRAME_PARAMS_UP || mid);
	return 0;
}

void *pipar_session_run(void *arg)
{
	struct conn *c = arg;
	struct server *s = c->s;
	const struct pipar_plan_file *pl = s->cfg->plan;
	struct session ss = {.c = c, .s = s, .classes = pl->classes};
	char err[PIPAR_ERRLEN];
	uint32_t max_n = (uint32_t)c->max_n;
	int lost = 0;

	ss.cut = c->replica ? c->replica->units[0].in : pl->in;
	ss.bound = (uint32_t)pipar_tensor_msg_size(PIPAR_FRAME_ACTIVATIONS, max_n, (uint32_t)ss.cut.c,
						   (uint32_t)ss.cut.h, (uint32_t)ss.cut.w);
	if (ss.bound < (uint32_t)(PIPAR_UP_HEAD + sizeof(float) * (c->dn + c->dm)))
		ss.bound = (uint32_t)(PIPAR_UP_HEAD + sizeof(float) * (c->dn + c->dm));
	ss.x = pipar_alloc(sizeof(float) * pipar_shape_size(ss.cut) * max_n);
	ss.dl = pipar_alloc(sizeof(float) * (size_t)ss.classes * max_n);
	ss.labels = malloc(sizeof(int) * max_n);
	if (!ss.x || !ss.dl || !ss.labels) {
		fail(&ss, 0, "out of memory");
		goto dead;
	}
	/* The device has made its buffers (READY): training starts. */
	if (pipar_wire_send(c->ch, PIPAR_FRAME_START, c->seq_out++, NULL, 0, err) < 0) {
		fail(&ss, 0, "%s", err);
		goto dead;
	}
	for (int e = c->first_epoch > 1 ? c->first_epoch : 1; e <= s->cfg->epochs; e++) {
		int r = epoch(&ss, e);

		if (r == -2) {
			/* Stopped: the device is told the run is over. */
			pipar_wire_send(c->ch, PIPAR_FRAME_BYE, c->seq_out++, NULL, 0, err);
			pthread_mutex_lock(&s->mu);
			if (c->alive) {
				c->alive = 0;
				s->live--;
				snprintf(c->fault, sizeof(c->fault), "the run was stopped in epoch %d", e);
			}
			pthread_mutex_unlock(&s->mu);
			goto out;
		}
		if (r < 0)
			goto dead;
	}
	pipar_wire_send(c->ch, PIPAR_FRAME_BYE, c->seq_out++, NULL, 0, err);
	c->finished = 1;
	goto out;
dead:
	pipar_server_conn_lost(c, ss.why);
	lost = 1;
out:
	/* The session owns its connection to the end; a lost device's slot
	 * is free for it to join again. */
	pthread_mutex_lock(&s->mu);
	struct pipar_chan *ch = c->ch;

	c->ch = NULL;
	if (lost)
		c->slot = SLOT_FREE;
	s->sessions--;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pipar_chan_free(ch);
	free(ss.buf);
	free(ss.gbuf);
	free(ss.x);
	free(ss.dl);
	free(ss.labels);
	return NULL;
}
