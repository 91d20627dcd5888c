/*
 * The device: HELLO, the plan and its part of the model from the server,
 * then every epoch's mini-batches (micro-batches forward and up, their
 * gradients down and backward, one step), its part up at each
 * aggregation and the global part down, until BYE.
 */
#define _POSIX_C_SOURCE 200809L
#include "device.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <string.h>
#include <time.h>

#include "link.h"
#include "exec.h"
#include "model.h"
#include "plan.h"
#include "pool.h"
#include "chan.h"
#include "proto.h"
#include "runtime.h"
#include "trace.h"
#include "train.h"
#include "util.h"
#include "wire.h"

/* The largest frame a device accepts before it knows the plan: the
 * largest device part a spec may have (2^26 values, model.c), since the
 * receiver may take MODEL before the plan's own bound is set. */
#define CONTROL_MAX ((uint32_t)(sizeof(float) << 26) + 65536u)

struct dev {
	const struct pipar_device_cfg *cfg;
	struct pipar_chan *ch;          /* under sig_mu */
	pthread_mutex_t sig_mu;
	int stopped, sig_done;          /* under sig_mu */
	struct pipar_link *link;
	int fatal;                      /* the server refused: no retry */
	struct pipar_plan_file *pl;
	const struct pipar_mode_ops *ops;
	struct pipar_settings st;
	int k, N, B, max_n;
	const int *micro;               /* the plan's sizes of a full mini-batch */
	struct pipar_model *m;
	size_t dn;                      /* floats of the device part */
	size_t dm;                      /* its trainable floats (momentum) */
	struct pipar_shape cut;         /* the device part's output */
	size_t cutn, inn;
	struct pipar_exec **ex;         /* one per micro-batch in flight */
	float **xs, *dy, *dl;
	int **ys, *order;
	uint8_t *buf, *out;             /* the frame received, the one sent */
	size_t cap;
	struct pipar_trace *trace;
	/* Counted by a device that computes its own loss, reported at the
	 * next aggregation. */
	uint32_t seen, correct;
	double lsum;
	/* The least processor time each kind of stage has taken, at each
	 * size (pipar_pace): PACE_KINDS x (B + 1). */
	double *best;
};

enum { PACE_FORWARD, PACE_BACKWARD, PACE_STEP, PACE_TRAIN, PACE_KINDS };

#define DLOG(d, ...) pipar_runtime_log((d)->cfg->log, (d)->cfg->meter, (d)->cfg->prog, __VA_ARGS__)

static int recv_expect(struct dev *d, int type, struct pipar_frame_header *h, char *err)
{
	int r = pipar_link_recv(d->link, h, &d->buf, &d->cap, err);

	if (r == 0)
		return pipar_errf(err, "the server closed the connection");
	if (r < 0)
		return -1;
	if (h->type == PIPAR_FRAME_BYE && type != PIPAR_FRAME_BYE) {
		d->fatal = 1;
		return pipar_errf(err, "the server ended the run early (BYE while waiting for %s)",
				  pipar_frame_type_name(type));
	}
	if (h->type == PIPAR_FRAME_ERROR) {
		char why[200];

		pipar_text_escape(why, sizeof(why), (const char *)d->buf, h->length);
		d->fatal = 1;
		return pipar_errf(err, "the server refused: %s", why);
	}
	if (h->type != type)
		return pipar_errf(err, "expected %s from the server, got %s",
				  pipar_frame_type_name(type), pipar_frame_type_name(h->type));
	return 0;
}

/* Sends a frame; when the link fails, what the server said before it
 * closed (BYE, ERROR), if it said anything, is the reason. */
static int send_frame(struct dev *d, int type, const void *payload, size_t len, char *err)
{
	char why[200];
	int last;

	if (pipar_link_send(d->link, type, payload, len, err) == 0)
		return 0;
	if (!(last = pipar_link_last_word(d->link, 1, why, sizeof(why))))
		return -1;
	d->fatal = 1;
	if (last == PIPAR_FRAME_BYE)
		return pipar_errf(err, "the server ended the run early (BYE while sending %s)",
				  pipar_frame_type_name(type));
	return pipar_errf(err, "the server refused: %s", why);
}

/* A compute stage named what, of the kind and size given (for its pace),
 * started at t0 (processor time c0), slowed and traced. */
static void stage_done(struct dev *d, const char *what, int kind, int n, double t0, double c0,
		       uint32_t it, int micro)
{
	PIPAR_ASSERT(n >= 0 && n <= d->B);
	pipar_pace(d->cfg->slowdown, t0, c0, &d->best[kind * (d->B + 1) + n]);
	pipar_trace_event(d->trace, what, PIPAR_RES_COMPUTE, t0, pipar_now() - t0, (int)it, micro);
}

/* The device part up, with the counts since the last time, the busy
 * seconds and whether this aggregation is within the epoch; at an
 * epoch's end, when the server asks for it, its momentum after it. */
static int send_up(struct dev *d, uint32_t mid, char *err)
{
	uint32_t state = !mid && d->st.state_up;
	struct pipar_up_head h = {d->seen, d->correct, (float)d->lsum, {0, 0, 0}, mid, state};

	h.busy[0] = (float)pipar_trace_busy(d->trace, PIPAR_RES_COMPUTE, 1);
	h.busy[1] = (float)pipar_trace_busy(d->trace, PIPAR_RES_UPLINK, 1);
	h.busy[2] = (float)pipar_trace_busy(d->trace, PIPAR_RES_DOWNLINK, 1);
	pipar_up_head_encode(&h, d->out);
	pipar_runtime_get_state(d->m, (float *)(void *)(d->out + PIPAR_UP_HEAD));
	if (state)
		pipar_runtime_get_momentum(d->m, (float *)(void *)(d->out + PIPAR_UP_HEAD +
								   sizeof(float) * d->dn));
	d->seen = d->correct = 0;
	d->lsum = 0;
	return send_frame(d, PIPAR_FRAME_PARAMS_UP, d->out,
			       PIPAR_UP_HEAD + sizeof(float) * (d->dn + (state ? d->dm : 0)), err);
}

/* The global device part down, into the model; MODEL at the start, with
 * the part's momentum after it when the server resumed a run. */
static int recv_part(struct dev *d, int type, char *err)
{
	struct pipar_frame_header h;
	size_t n = d->dn + (type == PIPAR_FRAME_MODEL && d->st.state_down ? d->dm : 0), bad;

	if (recv_expect(d, type, &h, err) < 0)
		return -1;
	d->fatal = 1;           /* the server answered: what is wrong is its */
	if (h.length != sizeof(float) * n)
		return pipar_errf(err, "%s of %u bytes, %s %zu", pipar_frame_type_name(type), h.length,
				  type == PIPAR_FRAME_MODEL ? "the device part needs" : "expected",
				  sizeof(float) * n);
	if ((bad = pipar_floats_nonfinite(d->buf, n)) != SIZE_MAX)
		return pipar_errf(err, "%s: value %zu is not finite", pipar_frame_type_name(type), bad);
	d->fatal = 0;
	pipar_runtime_set_state(d->m, (const float *)(const void *)d->buf);
	if (n > d->dn)
		pipar_runtime_set_momentum(d->m, (const float *)(const void *)d->buf + d->dn);
	return 0;
}

/* HELLO up, PLAN down: which device this is and the run's settings. */
static int handshake(struct dev *d, char *err)
{
	const struct pipar_device_cfg *cfg = d->cfg;
	struct pipar_hello hello = {.samples = cfg->nidx, .norm = *cfg->norm, .device = cfg->index};
	struct pipar_frame_header h;
	char *text;

	snprintf(hello.id, sizeof(hello.id), "%s", cfg->id);
	text = pipar_hello_encode(&hello);
	if (!text || send_frame(d, PIPAR_FRAME_HELLO, text, strlen(text), err) < 0) {
		if (!text)
			pipar_errf(err, "out of memory");
		free(text);
		return -1;
	}
	free(text);
	if (recv_expect(d, PIPAR_FRAME_PLAN, &h, err) < 0)
		return -1;
	double t_plan = pipar_now();

	d->fatal = 1;           /* from here on the server answered */
	if (pipar_plan_msg_decode(d->buf, h.length, &d->pl, &d->st, err) < 0)
		return -1;
	if (!pipar_shape_eq(d->pl->in, cfg->data->shape) || d->pl->classes != cfg->data->classes)
		return pipar_errf(err, "the plan's model takes other data than '%s'", cfg->data->name);
	d->ops = pipar_mode_ops(d->pl->mode);
	d->k = d->st.device;
	d->N = d->pl->dev[d->k].N;
	d->B = d->pl->batch;
	d->micro = d->pl->micro[d->k];
	d->max_n = pipar_plan_max_micro(d->pl, d->k);
	/* Always recorded: the busy seconds reported at each aggregation
	 * come from the events; written out only with --trace. */
	char name[96];

	snprintf(name, sizeof(name), "device %d (%s)", d->k + 1, cfg->id);
	if (!d->trace)          /* one for the whole run, joined again or not */
		d->trace = pipar_trace_new(d->k + 1, name);
	pipar_trace_set_offset(d->trace, d->st.server_time - t_plan);
	if (d->trace)
		pipar_link_set_trace(d->link, d->trace);
	return 0;
}

/* The device part, its buffers and one workspace per micro-batch in
 * flight; then MODEL, its initial state. */
static int setup(struct dev *d, char *err)
{
	const struct pipar_plan_file *pl = d->pl;
	int P = pl->dev[d->k].P, n = d->max_n;

	if (pipar_model_new(pl->spec, pl->in, pl->classes, 0, P - 1, d->st.seed, &d->m, err) < 0)
		return -1;
	d->dn = pipar_model_nstate(d->m);
	d->dm = pipar_model_ntrain(d->m);
	d->seen = d->correct = 0;
	d->lsum = 0;
	d->cut = pipar_model_out(d->m);
	d->cutn = pipar_shape_size(d->cut);
	d->inn = pipar_shape_size(pl->in);
	uint32_t gbound = (uint32_t)pipar_tensor_msg_size(PIPAR_FRAME_GRADIENTS, (uint32_t)n,
							  (uint32_t)d->cut.c, (uint32_t)d->cut.h,
							  (uint32_t)d->cut.w);

	if (gbound < sizeof(float) * (d->dn + d->dm))
		gbound = (uint32_t)(sizeof(float) * (d->dn + d->dm));
	pipar_link_set_max(d->link, gbound);
	if (recv_part(d, PIPAR_FRAME_MODEL, err) < 0)
		return -1;
	d->ex = calloc((size_t)d->N, sizeof(*d->ex));
	d->xs = calloc((size_t)d->N, sizeof(*d->xs));
	d->ys = calloc((size_t)d->N, sizeof(*d->ys));
	d->order = malloc(sizeof(int) * (size_t)(d->cfg->nidx ? d->cfg->nidx : 1));
	d->out = malloc(pipar_tensor_msg_size(PIPAR_FRAME_ACTIVATIONS, (uint32_t)n, (uint32_t)d->cut.c,
					      (uint32_t)d->cut.h, (uint32_t)d->cut.w) +
			PIPAR_UP_HEAD + sizeof(float) * (d->dn + d->dm));
	d->dy = pipar_alloc(sizeof(float) * d->cutn * (size_t)n);
	d->dl = pipar_alloc(sizeof(float) * (size_t)pl->classes * (size_t)n);
	d->best = calloc((size_t)PACE_KINDS * (size_t)(d->B + 1), sizeof(*d->best));
	if (!d->ex || !d->xs || !d->ys || !d->order || !d->out || !d->dy || !d->dl || !d->best)
		return pipar_errf(err, "out of memory");
	for (int i = 0; i < d->N; i++) {
		d->xs[i] = pipar_alloc(sizeof(float) * d->inn * (size_t)n);
		d->ys[i] = malloc(sizeof(int) * (size_t)n);
		if (!d->xs[i] || !d->ys[i])
			return pipar_errf(err, "out of memory");
		if (!(d->ex[i] = pipar_exec_new(d->m, n, (uint64_t)(d->k * 1000 + i), err)))
			return -1;
	}
	DLOG(d, "%s is device %d of %d: units 1..%d, %d parallel batch(es) of up to %d", d->cfg->id,
	     d->k + 1, pl->K, P, d->N, n);
	return 0;
}

/* The whole model here: forward, loss, backward and step on b samples. */
static void train_whole(struct dev *d, const int *samples, int b, uint32_t it)
{
	int corr = 0;
	const float *z;

	pipar_data_batch(d->cfg->data, d->cfg->norm, samples, b, d->xs[0], d->ys[0]);
	/* The computation alone is slowed, as in the split modes. */
	double t0 = pipar_now(), c0 = pipar_cpu_seconds();

	z = pipar_exec_forward(d->ex[0], d->xs[0], b, 1);
	d->lsum += pipar_softmax_xent(z, d->ys[0], b, d->pl->classes, 1.0f / (float)b, d->dl, &corr);
	pipar_model_zero_grad(d->m);
	pipar_exec_backward(d->ex[0], d->dl, 0);
	pipar_model_sgd_step(d->m, &d->st.sgd);
	stage_done(d, "train", PACE_TRAIN, b, t0, c0, it, -1);
	d->seen += (uint32_t)b;
	d->correct += (uint32_t)corr;
}

/* The size of micro-batch i of nm for a mini-batch of b samples: the
 * plan's sizes for a full one, near-equal parts of a short last one. */
static int micro_size(const struct dev *d, int b, int nm, int i)
{
	return b == d->B && nm == d->N ? d->micro[i] : pipar_plan_micro_size(b, nm, i);
}

/* Forward of micro-batch i (n samples from samples) and its ACTIVATIONS
 * up. */
static int forward(struct dev *d, const int *samples, int n, int b, uint32_t it, int i, char *err)
{
	struct pipar_shape cut = d->cut;
	struct pipar_tensor_msg am = {it, (uint32_t)i, (uint32_t)n, (uint32_t)cut.c, (uint32_t)cut.h,
				      (uint32_t)cut.w, (uint32_t)b, 0, NULL, NULL};
	size_t sz = pipar_tensor_msg_size(PIPAR_FRAME_ACTIVATIONS, (uint32_t)n, (uint32_t)cut.c,
					  (uint32_t)cut.h, (uint32_t)cut.w);
	uint8_t *labels = d->out + PIPAR_TENSOR_HEAD + sizeof(float) * d->cutn * (size_t)n;
	const float *act;

	pipar_data_batch(d->cfg->data, d->cfg->norm, samples, n, d->xs[i], d->ys[i]);
	double t0 = pipar_now(), c0 = pipar_cpu_seconds();

	act = pipar_exec_forward(d->ex[i], d->xs[i], n, 1);
	stage_done(d, "forward", PACE_FORWARD, n, t0, c0, it, i);
	pipar_tensor_msg_head(PIPAR_FRAME_ACTIVATIONS, &am, d->out);
	memcpy(d->out + PIPAR_TENSOR_HEAD, act, sizeof(float) * d->cutn * (size_t)n);
	for (int j = 0; j < n; j++) {
		int32_t l = d->ys[i][j];

		memcpy(labels + 4 * (size_t)j, &l, 4);
	}
	return send_frame(d, PIPAR_FRAME_ACTIVATIONS, d->out, sz, err);
}

/* GRADIENTS of micro-batch i (n samples) down and its backward; the
 * loss the server computed added to *loss. */
static int backward(struct dev *d, int n, uint32_t it, int i, double *loss, char *err)
{
	struct pipar_frame_header h;
	struct pipar_tensor_msg gm;

	if (recv_expect(d, PIPAR_FRAME_GRADIENTS, &h, err) < 0 ||
	    pipar_tensor_msg_parse(PIPAR_FRAME_GRADIENTS, d->buf, h.length, (uint32_t)d->cut.c,
				   (uint32_t)d->cut.h, (uint32_t)d->cut.w, (uint32_t)d->max_n,
				   d->pl->classes, &gm, err) < 0)
		return -1;
	if (gm.iteration != it || gm.micro != (uint32_t)i || gm.n != (uint32_t)n) {
		d->fatal = 1;
		return pipar_errf(err, "GRADIENTS out of order (iteration %u micro %u)", gm.iteration,
				  gm.micro);
	}
	memcpy(d->dy, gm.data, sizeof(float) * d->cutn * (size_t)n);
	*loss += gm.loss;
	double t0 = pipar_now(), c0 = pipar_cpu_seconds();

	pipar_exec_backward(d->ex[i], d->dy, 0);
	stage_done(d, "backward", PACE_BACKWARD, n, t0, c0, it, i);
	return 0;
}

/* One mini-batch of b samples cut at the split point: the forward
 * passes back to back, each sent as it is done; the backward passes as
 * the gradients come back; then one step. */
static int train_split(struct dev *d, const int *samples, int b, uint32_t it, double *loss,
		       char *err)
{
	int nm = b < d->N ? b : d->N, off = 0;

	for (int i = 0; i < nm; i++) {
		int n = micro_size(d, b, nm, i);

		if (forward(d, samples + off, n, b, it, i, err) < 0)
			return -1;
		off += n;
	}
	pipar_model_zero_grad(d->m);
	for (int i = 0; i < nm; i++)
		if (backward(d, micro_size(d, b, nm, i), it, i, loss, err) < 0)
			return -1;
	double t0 = pipar_now(), c0 = pipar_cpu_seconds();

	pipar_model_sgd_step(d->m, &d->st.sgd);
	stage_done(d, "step", PACE_STEP, 0, t0, c0, it, -1);
	return 0;
}

static int run_epoch(struct dev *d, int epoch, char *err)
{
	const struct pipar_device_cfg *cfg = d->cfg;
	int B = d->B, every = d->st.aggregate_every;
	double ploss = 0;
	long pseen = 0;
	uint32_t it = 0;
	struct pipar_progress prog = {epoch, d->st.epochs, 0, (cfg->nidx + B - 1) / B, "mini-batch",
				      NAN};

	/* Dropout draws of this epoch, whatever came before. */
	for (int i = 0; i < d->N; i++)
		pipar_runtime_reseed(d->ex[i], (uint64_t)(d->k * 1000 + i), epoch);
	/* In turns the devices wait for the model. */
	if (d->ops->turns && recv_part(d, PIPAR_FRAME_PARAMS_DOWN, err) < 0)
		return -1;
	pipar_train_order(cfg->idx, cfg->nidx, d->st.seed, epoch, d->k, d->order);
	for (int s0 = 0; s0 < cfg->nidx; s0 += B, it++) {
		int b = s0 + B <= cfg->nidx ? B : cfg->nidx - s0;

		/* An aggregation within the epoch, every E iterations. */
		if (every > 0 && it > 0 && it % (uint32_t)every == 0 && d->ops->mid_aggregation &&
		    (send_up(d, 1, err) < 0 || recv_part(d, PIPAR_FRAME_PARAMS_DOWN, err) < 0))
			return -1;
		if (!d->ops->split) {
			train_whole(d, d->order + s0, b, it);
			prog.loss = d->lsum / d->seen;
		} else {
			if (train_split(d, d->order + s0, b, it, &ploss, err) < 0)
				return -1;
			pseen += b;
			prog.loss = ploss / (double)pseen;
		}
		prog.done = it + 1;
		pipar_meter_update(cfg->meter, &prog, 0);
	}
	/* The epoch's end: the device part up (with the loss a device
	 * computing its own counts), the global part down. */
	if (send_up(d, 0, err) < 0 ||
	    (!d->ops->turns && recv_part(d, PIPAR_FRAME_PARAMS_DOWN, err) < 0))
		return -1;
	DLOG(d, "%s: epoch %d done", cfg->id, epoch);
	return 0;
}

/* Frees what a session set up, ready for another. */
static void release(struct dev *d)
{
	for (int i = 0; i < d->N && d->ex; i++) {
		pipar_exec_free(d->ex[i]);
		free(d->xs ? d->xs[i] : NULL);
		free(d->ys ? d->ys[i] : NULL);
	}
	free(d->ex);
	free(d->xs);
	free(d->ys);
	free(d->dy);
	free(d->dl);
	free(d->order);
	free(d->out);
	free(d->buf);
	free(d->best);
	d->best = NULL;
	pipar_plan_file_free(d->pl);
	pipar_model_free(d->m);
	d->ex = NULL;
	d->xs = NULL;
	d->ys = NULL;
	d->dy = d->dl = NULL;
	d->order = NULL;
	d->out = d->buf = NULL;
	d->cap = 0;
	d->pl = NULL;
	d->m = NULL;
	d->N = 0;
}

/* Sets the channel the signal thread may shut down. */
static void set_chan(struct dev *d, struct pipar_chan *ch)
{
	pthread_mutex_lock(&d->sig_mu);
	d->ch = ch;
	pthread_mutex_unlock(&d->sig_mu);
}

static int stopped(struct dev *d)
{
	int st;

	pthread_mutex_lock(&d->sig_mu);
	st = d->stopped;
	pthread_mutex_unlock(&d->sig_mu);
	return st;
}

/* A TCP connection to the server, retried until the deadline while the
 * server may still be starting.  The socket, or -1 with err. */
static int dial(const struct pipar_device_cfg *cfg, double deadline, char *err)
{
	char ports[8];
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *a;
	int fd = -1, rc, e = 0;

	snprintf(ports, sizeof(ports), "%d", cfg->port);
	rc = getaddrinfo(cfg->host, ports, &hints, &res);
	if (rc)
		return pipar_errf(err, "cannot resolve '%s': %s", cfg->host, gai_strerror(rc));
	for (;;) {
		for (a = res; a; a = a->ai_next) {
			fd = socket(a->ai_family, SOCK_STREAM, 0);
			if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) == 0)
				break;
			e = errno;
			if (fd >= 0)
				close(fd);
			fd = -1;
		}
		if (fd >= 0 || pipar_now() > deadline)
			break;
		nanosleep(&(struct timespec){0, 100000000}, NULL);
	}
	freeaddrinfo(res);
	if (fd < 0)
		return pipar_errf(err, "cannot connect to '%s:%d' within %g s: %s", cfg->host, cfg->port,
				  cfg->timeout, strerror(e));
	return fd;
}

/* One try at joining: a connection, the TLS handshake, the link, HELLO
 * and PLAN.  -1 with err, and d->fatal set when the server refused (a
 * try that met a closed or reset connection may be made again: a busy
 * server closes what it cannot admit yet). */
static int join(struct dev *d, double deadline, char *err)
{
	const struct pipar_device_cfg *cfg = d->cfg;
	int fd = dial(cfg, deadline, err);

	if (fd < 0) {
		d->fatal = 1;
		return -1;
	}
	struct pipar_chan *ch = pipar_chan_new(fd, cfg->tls,
					       cfg->server_name ? cfg->server_name : cfg->host, err);

	if (!ch) {
		close(fd);
		d->fatal = 1;
		return -1;
	}
	set_chan(d, ch);
	pipar_chan_set_timeout(d->ch, cfg->timeout);
	if (pipar_chan_handshake(d->ch, err) < 0) {
		d->fatal = errno == EACCES;
		return -1;
	}
	if (!(d->link = pipar_link_new(d->ch, cfg->up_bps, cfg->down_bps, cfg->latency, CONTROL_MAX, err))) {
		d->fatal = 1;
		return -1;
	}
	char why[160];

	if (handshake(d, err) == 0)
		return 0;
	/* In TLS 1.3 a server that refuses the device's certificate says so
	 * after the handshake: an alert is a refusal, not a busy server. */
	if (pipar_chan_tls_error(d->ch, why, sizeof(why)))
		d->fatal = 1;
	return -1;
}

/* Closes what a failed try made. */
static void unjoin(struct dev *d)
{
	char e[PIPAR_ERRLEN];

	if (d->link)
		pipar_link_close(d->link, e);
	d->link = NULL;
	struct pipar_chan *ch = d->ch;

	set_chan(d, NULL);
	pipar_chan_free(ch);
}

/* Joins, retrying with a growing pause while the server may be busy or
 * not yet listening, until deadline.  -1 with err. */
static int join_retrying(struct dev *d, double deadline, char *err)
{
	double pause = 0.1;

	while (join(d, deadline, err) < 0) {
		unjoin(d);
		release(d);     /* a PLAN that came and was refused */
		if (d->fatal || stopped(d) || pipar_now() + pause > deadline)
			return -1;
		nanosleep(&(struct timespec){(time_t)pause, (long)((pause - (double)(time_t)pause) * 1e9)},
			  NULL);
		pause = pause * 2 > 2 ? 2 : pause * 2;
	}
	d->fatal = 0;           /* from here, only what the server says is final */
	return 0;
}

/* One session with the server: set up from its PLAN and MODEL, READY
 * up and START down (so that the devices start training together, and
 * the server's clock with them, once every one has made its buffers), the
 * epochs from the one it names, BYE.  -1 with err (d->fatal when the
 * server ended it or broke the protocol). */
static int session(struct dev *d, char *err)
{
	struct pipar_frame_header h;

	if (setup(d, err) < 0 || send_frame(d, PIPAR_FRAME_READY, NULL, 0, err) < 0 ||
	    recv_expect(d, PIPAR_FRAME_START, &h, err) < 0)
		return -1;
	if (h.length != 0) {
		d->fatal = 1;
		return pipar_errf(err, "START of %u bytes, expected none", h.length);
	}
	/* A device that joins a run under way starts where the run is. */
	if (d->st.first_epoch > 1)
		DLOG(d, "%s joins the run in epoch %d of %d", d->cfg->id, d->st.first_epoch,
		     d->st.epochs);
	for (int epoch = d->st.first_epoch > 1 ? d->st.first_epoch : 1; epoch <= d->st.epochs; epoch++)
		if (run_epoch(d, epoch, err) < 0)
			return -1;
	return recv_expect(d, PIPAR_FRAME_BYE, &h, err);
}

/* Joining, the sessions (another after a server lost, with
 * cfg->reconnect), and at the end the trace. */
static int run(struct dev *d, char *err)
{
	const struct pipar_device_cfg *cfg = d->cfg;
	char perr[PIPAR_ERRLEN];
	int r = -1;

	if (join_retrying(d, pipar_now() + cfg->timeout, err) < 0)
		goto out;
	for (;;) {
		r = session(d, err);
		release(d);
		if (d->link && pipar_link_close(d->link, perr) < 0 && r == 0) {
			pipar_errf(err, "%s", perr);
			r = -1;
		}
		d->link = NULL;
		if (r == 0 || !cfg->reconnect || d->fatal || stopped(d))
			break;
		DLOG(d, "%s: lost the server (%s); joining again for up to %g s", cfg->id, err,
		     cfg->timeout);
		unjoin(d);
		if (join_retrying(d, pipar_now() + cfg->timeout, err) < 0)
			break;
	}
out:
	if (cfg->trace && d->trace && pipar_trace_write(d->trace, cfg->trace, perr) < 0 && r == 0) {
		pipar_errf(err, "%s", perr);
		r = -1;
	}
	pipar_trace_free(d->trace);
	d->trace = NULL;
	unjoin(d);
	release(d);
	return r;
}

/* The device's signal watch: the first SIGINT or SIGTERM
 * (pipar_runtime_signals) closes the connection; the server goes on
 * without this device. */
static void *signals(void *arg)
{
	struct dev *d = arg;

	for (;;) {
		int sig, done;

		nanosleep(&(struct timespec){0, 100000000}, NULL);
		sig = pipar_runtime_signalled();
		pthread_mutex_lock(&d->sig_mu);
		done = d->sig_done;
		if (sig > 0 && !d->stopped) {
			d->stopped = sig;
			if (d->ch)
				pipar_chan_shutdown(d->ch);
		}
		pthread_mutex_unlock(&d->sig_mu);
		if (done)
			return NULL;
	}
}

int pipar_device_run(const struct pipar_device_cfg *cfg, char *err)
{
	struct dev d = {.cfg = cfg};
	int r;
	pthread_t sig_th;
	int sig_started = 0;

	pthread_mutex_init(&d.sig_mu, NULL);
	if (cfg->signals)
		sig_started = pthread_create(&sig_th, NULL, signals, &d) == 0;
	r = run(&d, err);
	if (d.stopped) {
		pipar_errf(err, "stopped by %s", d.stopped == SIGINT ? "SIGINT" : "SIGTERM");
		r = -1;
	}
	if (sig_started) {
		pthread_mutex_lock(&d.sig_mu);
		d.sig_done = 1;
		pthread_mutex_unlock(&d.sig_mu);
		pthread_join(sig_th, NULL);
	}
	pthread_mutex_destroy(&d.sig_mu);
	return r;
}

