/*
 * The training runtime: pipar_serve (one thread per device, the server's
 * compute serialised, aggregation at a barrier) and pipar_device.
 */
#define _POSIX_C_SOURCE 200809L
#include "runtime.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "json.h"
#include "link.h"
#include "trace.h"
#include "train.h"
#include "wire.h"

/* The largest frame a device accepts before it knows the plan: the
 * largest device part a spec may have (2^26 values, model.c), since the
 * receiver may take MODEL before the plan's own bound is set. */
#define CONTROL_MAX ((uint32_t)(sizeof(float) << 26) + 65536u)

static void set_timeout(int fd, double seconds)
{
	struct timeval tv = {(time_t)seconds, (suseconds_t)((seconds - floor(seconds)) * 1e6)};

	if (seconds > 0) {
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
}

static void logf_(FILE *log, struct pipar_meter *m, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* One log line, clearing a progress line drawn on the same stream. */
static void logf_(FILE *log, struct pipar_meter *m, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pipar_meter_vlog(m, log, fmt, ap);
	va_end(ap);
}

/* Micro-batch i of N for a mini-batch of b samples. */
static int micro(int b, int N, int i)
{
	return b / N + (i < b % N);
}

static size_t part_state(const struct pipar_model *m)
{
	return pipar_model_nstate(m);
}

static void get_state(const struct pipar_model *m, float *dst)
{
	for (int u = 0; u < m->nunits; u++) {
		pipar_model_get_state(m, u, dst);
		dst += m->units[u].nstate;
	}
}

static void set_state(struct pipar_model *m, const float *src)
{
	for (int u = 0; u < m->nunits; u++) {
		pipar_model_set_state(m, u, src);
		src += m->units[u].nstate;
	}
}

/* ---------------------------------------------------------------- server */

struct server;

struct conn {
	struct server *s;
	int k;                          /* device index */
	int fd;
	char id[64];
	long samples;
	struct pipar_norm norm;
	int alive, finished;
	pthread_t th;
	uint32_t seq_in, seq_out;
	struct pipar_model *replica;    /* server part */
	struct pipar_exec *exec;
	float *up;                      /* device part sent up at the epoch end */
	int P;                          /* its split point */
	size_t dn;                      /* floats of its device part */
	double loss;
	long seen, correct;
	double bytes_up, bytes_down;
	double busy[3];                 /* the device's compute, uplink, downlink */
	long it_done;                   /* mini-batches this epoch, under s->mu */
	char fault[PIPAR_ERRLEN];
};

struct server {
	const struct pipar_serve_cfg *cfg;
	int K, P, L, B;
	struct conn *c;
	pthread_mutex_t compute;        /* the server's one processor */
	pthread_mutex_t mu;             /* aggregation state below */
	pthread_cond_t cv;
	int arrived, live, generation, epoch_done;
	struct pipar_model *whole;      /* the global model */
	float *G;                       /* its state: device k holds G[0, dn_k) */
	size_t total_n;
	double t_epoch;
	double busy;                    /* server compute this epoch, under compute */
	cJSON *epochs;
	enum pipar_mode mode;
	struct pipar_trace *trace;
	struct pipar_model *shared;     /* sl: the one server model */
	int turn;                       /* sl: the device whose turn it is */
	int round_mid;                  /* this aggregation is within an epoch */
	double prog_loss;               /* loss summed this epoch, under mu */
	long prog_seen;                 /* samples it sums */
};

/* Shows the server's progress; called with s->mu held. */
static void progress_show(struct server *s, int force)
{
	struct pipar_progress p = {.unit = "mini-batches"};

	for (int k = 0; k < s->K; k++)
		if (s->c[k].alive) {
			p.done += s->c[k].it_done;
			p.total += (s->c[k].samples + s->B - 1) / s->B;
		}
	if (s->mode == PIPAR_MODE_FL)
		p.total = 0;            /* the devices train alone until they report */
	p.epoch = s->epoch_done < s->cfg->epochs ? s->epoch_done + 1 : s->cfg->epochs;
	p.epochs = s->cfg->epochs;
	p.loss = s->prog_seen ? s->prog_loss / (double)s->prog_seen : NAN;
	pipar_meter_update(s->cfg->meter, &p, force);
}

/* Device c finished a mini-batch of seen samples, their loss summed to
 * loss. */
static void server_progress(struct server *s, struct conn *c, double loss, long seen)
{
	if (!s->cfg->meter || !s->cfg->meter->on)
		return;
	pthread_mutex_lock(&s->mu);
	c->it_done++;
	s->prog_loss += loss;
	s->prog_seen += seen;
	progress_show(s, 0);
	pthread_mutex_unlock(&s->mu);
}

#define UP_HEAD 32

static int next_alive(const struct server *s, int k)
{
	for (int j = k + 1; j < s->K; j++)
		if (s->c[j].alive)
			return j;
	return -1;
}

/* The epoch's record e: one JSON line on cfg->records (the summary's
 * epoch entry with its format first), and a line a person reads in the
 * log. */
/* The number under key in o, written as a number or as fixed text
 * (pipar_json_add_fixed); NAN when absent. */
static double field(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (cJSON_IsNumber(v))
		return v->valuedouble;
	if (cJSON_IsRaw(v) && v->valuestring)
		return strtod(v->valuestring, NULL);
	return NAN;
}

static void epoch_record(struct server *s, const cJSON *e)
{
	double acc = field(e, "test_accuracy");
	char tail[64] = "";

	if (s->cfg->records) {
		cJSON *r = cJSON_CreateObject();
		char *line;

		cJSON_AddStringToObject(r, "format", "pipar-epoch/1");
		for (const cJSON *it = e->child; it; it = it->next)
			cJSON_AddItemToObject(r, it->string, cJSON_Duplicate(it, 1));
		line = cJSON_PrintUnformatted(r);
		cJSON_Delete(r);
		if (!line || fprintf(s->cfg->records, "%s\n", line) < 0 ||
		    fflush(s->cfg->records) != 0)
			logf_(s->cfg->log, s->cfg->meter,
			      "pipar-serve: cannot write the record of epoch %d: %s", s->epoch_done,
			      line ? strerror(errno) : "out of memory");
		free(line);
	}
	if (!isnan(acc))
		snprintf(tail, sizeof(tail), ", test accuracy %.4f", acc);
	logf_(s->cfg->log, s->cfg->meter,
	      "pipar-serve: epoch %d/%d: loss %.4f%s, %d device(s), %.1f s", s->epoch_done,
	      s->cfg->epochs, field(e, "loss"), tail, s->live, field(e, "seconds"));
	progress_show(s, 1);
}

/* FedAvg of the device parts sent up and of the replicas, weighted by
 * samples; then the global model is evaluated.  Called with s->mu held by
 * the last device to arrive; every other live thread is waiting. */
static void aggregate(struct server *s)
{
	double total = 0, loss = 0, up = 0, down = 0;
	long seen = 0, correct = 0;
	char err[PIPAR_ERRLEN];
	int mid = s->round_mid;
	cJSON *e;

	float *sum = s->mode != PIPAR_MODE_SL ? calloc(s->total_n, sizeof(float)) : NULL;
	float *one = s->mode != PIPAR_MODE_SL ? malloc(sizeof(float) * s->total_n) : NULL;

	for (int k = 0; k < s->K; k++)
		if (s->c[k].alive)
			total += (double)s->c[k].samples;
	if (s->mode == PIPAR_MODE_SL) {
		/* Split learning has one model, passed from device to device:
		 * the device part handed on last, the server model. */
		if (s->shared)
			get_state(s->shared, s->G + s->c[0].dn);
	} else if (!sum || !one) {
		logf_(s->cfg->log, s->cfg->meter, "pipar-serve: out of memory aggregating; the model stays as it was");
	}
	for (int k = 0; k < s->K; k++) {
		struct conn *c = &s->c[k];

		if (!c->alive)
			continue;
		/* Unit by unit: device k holds the units before its split point
		 * and its replica the rest, so every unit has one value from
		 * every device, whatever the split points. */
		if (sum && one) {
			float w = (float)((double)c->samples / total);

			memcpy(one, c->up, sizeof(float) * c->dn);
			if (c->replica && c->dn < s->total_n)
				get_state(c->replica, one + c->dn);
			for (size_t i = 0; i < s->total_n; i++)
				sum[i] += w * one[i];
		}
		if (mid)
			continue;       /* the epoch's counts go on */
		loss += c->loss;
		seen += c->seen;
		correct += c->correct;
		up += c->bytes_up;
		down += c->bytes_down;
		c->loss = 0;
		c->seen = c->correct = 0;
		c->bytes_up = c->bytes_down = 0;
		c->it_done = 0;
	}
	if (sum && one)
		memcpy(s->G, sum, sizeof(float) * s->total_n);
	free(sum);
	free(one);
	for (int k = 0; k < s->K && s->mode != PIPAR_MODE_SL; k++)
		if (s->c[k].alive && s->c[k].replica)
			set_state(s->c[k].replica, s->G + s->c[k].dn);
	set_state(s->whole, s->G);
	if (mid) {
		/* Within an epoch: averaged, nothing to record. */
		logf_(s->cfg->log, s->cfg->meter, "pipar-serve: aggregated %d device(s) within epoch %d", s->live,
		      s->epoch_done + 1);
		return;
	}
	e = cJSON_CreateObject();
	s->epoch_done++;
	s->prog_loss = 0;
	s->prog_seen = 0;
	double t_agg = pipar_now();

	/* Seconds to the microsecond, bytes whole, loss and accuracy to 6
	 * decimals. */
	cJSON_AddNumberToObject(e, "epoch", s->epoch_done);
	pipar_json_add_fixed(e, "seconds", pipar_now() - s->t_epoch, 6);
	pipar_json_add_fixed(e, "loss", seen ? loss / (double)seen : 0, 6);
	pipar_json_add_fixed(e, "train_accuracy", seen ? (double)correct / (double)seen : 0, 6);
	cJSON_AddNumberToObject(e, "devices", s->live);
	pipar_json_add_fixed(e, "bytes_up", up, 0);
	pipar_json_add_fixed(e, "bytes_down", down, 0);
	{
		double wall = pipar_now() - s->t_epoch;
		cJSON *res = cJSON_AddArrayToObject(e, "device_resources");
		static const char *const names[3][2] = {
			{"compute_busy_seconds", "compute_idle_seconds"},
			{"uplink_busy_seconds", "uplink_idle_seconds"},
			{"downlink_busy_seconds", "downlink_idle_seconds"},
		};

		for (int k = 0; k < s->K; k++) {
			cJSON *d;

			if (!s->c[k].alive)
				continue;
			d = cJSON_CreateObject();
			cJSON_AddNumberToObject(d, "device", k + 1);
			for (int r = 0; r < 3; r++) {
				pipar_json_add_fixed(d, names[r][0], s->c[k].busy[r], 6);
				pipar_json_add_fixed(d, names[r][1],
						     wall > s->c[k].busy[r] ? wall - s->c[k].busy[r] : 0, 6);
				s->c[k].busy[r] = 0;
			}
			cJSON_AddItemToArray(res, d);
		}
		pthread_mutex_lock(&s->compute);
		pipar_json_add_fixed(e, "server_busy_seconds", s->busy, 6);
		pipar_json_add_fixed(e, "server_idle_seconds", wall > s->busy ? wall - s->busy : 0, 6);
		s->busy = 0;
		pthread_mutex_unlock(&s->compute);
	}
	if (s->cfg->test) {
		struct pipar_exec *ex = pipar_exec_new(s->whole, 100, 0, err);
		struct pipar_epoch_stats st;
		int first = -1;

		for (int k = 0; k < s->K && first < 0; k++)
			if (s->c[k].alive)
				first = k;
		if (ex && first >= 0 &&
		    pipar_evaluate(s->whole, ex, s->cfg->test, &s->c[first].norm, 0, &st, NULL, err) == 0) {
			pipar_json_add_fixed(e, "test_accuracy", st.accuracy, 6);
			pipar_json_add_fixed(e, "test_loss", st.loss, 6);
		} else {
			logf_(s->cfg->log, s->cfg->meter, "pipar-serve: evaluation failed: %s", err);
		}
		pipar_exec_free(ex);
	}
	pipar_trace_event(s->trace, "aggregate", PIPAR_RES_COMPUTE, t_agg, pipar_now() - t_agg,
			  s->epoch_done, -1);
	cJSON_AddItemToArray(s->epochs, e);
	epoch_record(s, e);
	s->t_epoch = pipar_now();
}

/* Marks c dead (once) and lets an aggregation waiting for it go on. */
static void conn_lost(struct conn *c, const char *why)
{
	struct server *s = c->s;

	pthread_mutex_lock(&s->mu);
	if (c->alive) {
		c->alive = 0;
		s->live--;
		snprintf(c->fault, sizeof(c->fault), "%s", why);
		logf_(s->cfg->log, s->cfg->meter, "pipar-serve: device %d (%s): %s; continuing with %d device(s)",
		      c->k + 1, c->id, why, s->live);
		if (s->mode == PIPAR_MODE_SL) {
			/* Pass the turn on, closing the epoch if it was last. */
			if (s->turn == c->k) {
				int nx = next_alive(s, c->k);

				if (nx < 0 && s->live > 0) {
					aggregate(s);
					nx = next_alive(s, -1);
				}
				s->turn = nx;
			}
			pthread_cond_broadcast(&s->cv);
		} else if (s->live > 0 && s->arrived == s->live) {
			aggregate(s);
			s->arrived = 0;
			s->generation++;
			pthread_cond_broadcast(&s->cv);
		}
	}
	pthread_mutex_unlock(&s->mu);
}

/* Sends device c its part of the global model. */
static int send_down(struct conn *c, char *err)
{
	if (pipar_wire_send(c->fd, PIPAR_FRAME_PARAMS_DOWN, c->seq_out++, c->s->G,
			    sizeof(float) * c->dn, err) < 0)
		return -1;
	c->bytes_down += PIPAR_WIRE_HEADER + sizeof(float) * c->dn;
	return 0;
}

static int send_error(struct conn *c, const char *msg)
{
	char err[PIPAR_ERRLEN];

	return pipar_wire_send(c->fd, PIPAR_FRAME_ERROR, c->seq_out++, msg, strlen(msg), err);
}

static void *serve_device(void *arg)
{
	struct conn *c = arg;
	struct server *s = c->s;
	const struct pipar_plan_file *pl = s->cfg->plan;
	struct pipar_shape cut = c->replica ? c->replica->units[0].in : pl->in;
	int N = pl->dev[c->k].N, classes = pl->classes;
	uint32_t max_n = (uint32_t)(s->B / N + (s->B % N != 0));
	uint32_t bound = (uint32_t)pipar_tensor_msg_size(PIPAR_FRAME_ACTIVATIONS, max_n,
							 (uint32_t)cut.c, (uint32_t)cut.h,
							 (uint32_t)cut.w);
	size_t cap = 0, gcap = 0;
	uint8_t *buf = NULL, *gbuf = NULL;
	float *x = NULL, *dl = NULL;
	char err[PIPAR_ERRLEN], why[PIPAR_ERRLEN + 32];
	int *labels = NULL;
	uint32_t it = 0;
	double bloss = 0;

	if (bound < (uint32_t)(UP_HEAD + sizeof(float) * c->dn))
		bound = (uint32_t)(UP_HEAD + sizeof(float) * c->dn);
	x = pipar_alloc(sizeof(float) * pipar_shape_size(cut) * max_n);
	dl = pipar_alloc(sizeof(float) * (size_t)classes * max_n);
	labels = malloc(sizeof(int) * max_n);
	if (!x || !dl || !labels) {
		snprintf(why, sizeof(why), "out of memory");
		goto dead;
	}
	for (int epoch = 1; epoch <= s->cfg->epochs; epoch++) {
		uint32_t micro_i = 0, got = 0;

		it = 0;     /* iterations count from 0 in every epoch */
		struct pipar_frame_header h;

		if (s->mode == PIPAR_MODE_SL) {
			/* Wait for this device's turn, then hand it the model. */
			pthread_mutex_lock(&s->mu);
			while (s->turn != c->k)
				pthread_cond_wait(&s->cv, &s->mu);
			pthread_mutex_unlock(&s->mu);
			if (send_down(c, err) < 0) {
				snprintf(why, sizeof(why), "%s", err);
				goto dead;
			}
		}
again:
		for (;;) {
			struct pipar_tensor_msg m;
			int r = pipar_wire_recv(c->fd, bound, c->seq_in, &h, &buf, &cap, err);

			if (r <= 0) {
				snprintf(why, sizeof(why), "%s", r == 0 ? "disconnected" : err);
				if (r < 0)
					send_error(c, err);
				goto dead;
			}
			c->seq_in++;
			c->bytes_up += PIPAR_WIRE_HEADER + h.length;
			if (h.type == PIPAR_FRAME_PARAMS_UP)
				break;
			if (h.type != PIPAR_FRAME_ACTIVATIONS || !c->replica) {
				snprintf(why, sizeof(why), "unexpected %s frame", pipar_frame_type_name(h.type));
				send_error(c, why);
				goto dead;
			}
			if (pipar_tensor_msg_parse(PIPAR_FRAME_ACTIVATIONS, buf, h.length, (uint32_t)cut.c,
						   (uint32_t)cut.h, (uint32_t)cut.w, max_n > (uint32_t)s->B ? max_n : (uint32_t)s->B,
						   classes, &m, err) < 0 ||
			    m.n > max_n) {
				snprintf(why, sizeof(why), "%s", m.n > max_n ? "micro-batch larger than the plan's" : err);
				send_error(c, why);
				goto dead;
			}
			if (m.iteration != it || m.micro != micro_i || (int)m.batch > s->B) {
				snprintf(why, sizeof(why), "ACTIVATIONS out of order (iteration %u micro %u, expected %u %u)",
					 m.iteration, m.micro, it, micro_i);
				send_error(c, why);
				goto dead;
			}
			memcpy(x, m.data, sizeof(float) * pipar_shape_size(cut) * m.n);
			memcpy(labels, m.labels, sizeof(int) * m.n);
			/* The server's one processor: forward, loss, backward. */
			pthread_mutex_lock(&s->compute);
			double tc = pipar_now();

			if (micro_i == 0)
				pipar_model_zero_grad(c->replica);
			const float *z = pipar_exec_forward(c->exec, x, (int)m.n, 1);
			int correct = 0;
			double loss = pipar_softmax_xent(z, labels, (int)m.n, classes,
							 1.0f / (float)m.batch, dl, &correct);
			const float *dx = pipar_exec_backward(c->exec, dl, 1);
			size_t gsize = pipar_tensor_msg_size(PIPAR_FRAME_GRADIENTS, m.n, (uint32_t)cut.c,
							     (uint32_t)cut.h, (uint32_t)cut.w);

			if (gsize > gcap) {
				uint8_t *nb = realloc(gbuf, gsize);

				if (!nb) {
					pthread_mutex_unlock(&s->compute);
					snprintf(why, sizeof(why), "out of memory");
					goto dead;
				}
				gbuf = nb;
				gcap = gsize;
			}
			struct pipar_tensor_msg g = m;

			g.loss = (float)loss;
			g.batch = 0;
			pipar_tensor_msg_head(PIPAR_FRAME_GRADIENTS, &g, gbuf);
			memcpy(gbuf + PIPAR_TENSOR_HEAD, dx, sizeof(float) * pipar_shape_size(cut) * m.n);
			got += m.n;
			if (got == m.batch)
				pipar_model_sgd_step(c->replica, &s->cfg->sgd);
			s->busy += pipar_now() - tc;
			pipar_trace_event_for(s->trace, "server", PIPAR_RES_COMPUTE, tc, pipar_now() - tc,
					      (int)m.iteration, (int)m.micro, c->k);
			pthread_mutex_unlock(&s->compute);
			c->loss += loss;
			c->seen += m.n;
			c->correct += correct;
			bloss += loss;
			if (pipar_wire_send(c->fd, PIPAR_FRAME_GRADIENTS, c->seq_out++, gbuf, gsize, err) < 0) {
				snprintf(why, sizeof(why), "%s", err);
				goto dead;
			}
			c->bytes_down += PIPAR_WIRE_HEADER + gsize;
			if (got == m.batch) {
				server_progress(s, c, bloss, (long)m.batch);
				bloss = 0;
				it++;
				micro_i = 0;
				got = 0;
			} else {
				micro_i++;
			}
		}
		/* PARAMS_UP: a 32-byte head -- samples seen, correct, loss sum
		 * (counted by a device that computes its own loss, zero
		 * otherwise), the device's busy seconds on compute, uplink and
		 * downlink this epoch, 8 zero bytes -- then the device part;
		 * only between mini-batches. */
		uint32_t seen32, corr32, zero32[2];
		float lsum, busy[3];

		memcpy(&seen32, buf, 4);
		memcpy(&corr32, buf + 4, 4);
		memcpy(&lsum, buf + 8, 4);
		memcpy(busy, buf + 12, 12);
		memcpy(zero32, buf + 24, 8);
		int busy_ok = 1;
		uint32_t mid = zero32[0];       /* 1: an aggregation within the epoch */

		for (int r = 0; r < 3; r++)
			busy_ok &= busy[r] >= 0 && busy[r] < 1e9f;
		if (h.length != UP_HEAD + sizeof(float) * c->dn || micro_i != 0 || mid > 1 ||
		    (mid && (!s->cfg->aggregate_every || s->mode == PIPAR_MODE_SL)) ||
		    zero32[1] || !busy_ok ||
		    corr32 > seen32 || !isfinite(lsum) || (c->replica && (seen32 || corr32 || lsum != 0))) {
			snprintf(why, sizeof(why), "malformed PARAMS_UP (%u bytes, expected %zu)",
				 h.length, UP_HEAD + sizeof(float) * c->dn);
			send_error(c, why);
			goto dead;
		}
		c->seen += seen32;
		c->correct += corr32;
		c->loss += lsum;
		for (int r = 0; r < 3; r++)
			c->busy[r] += busy[r];
		memcpy(c->up, buf + UP_HEAD, sizeof(float) * c->dn);
		for (size_t i = 0; i < c->dn; i++)
			if (!isfinite(c->up[i])) {
				snprintf(why, sizeof(why), "PARAMS_UP holds a non-finite value");
				send_error(c, why);
				goto dead;
			}
		if (s->mode == PIPAR_MODE_SL) {
			/* The device part goes on to the next device. */
			pthread_mutex_lock(&s->mu);
			memcpy(s->G, c->up, sizeof(float) * c->dn);
			int nx = next_alive(s, c->k);

			if (nx < 0) {
				aggregate(s);
				nx = next_alive(s, -1);
			}
			s->turn = nx;
			pthread_cond_broadcast(&s->cv);
			pthread_mutex_unlock(&s->mu);
			continue;
		}
		pthread_mutex_lock(&s->mu);
		int gen = s->generation;

		s->arrived++;
		s->round_mid = (int)mid;        /* every device agrees: one schedule */
		if (s->arrived == s->live) {
			aggregate(s);
			s->arrived = 0;
			s->generation++;
			pthread_cond_broadcast(&s->cv);
		} else {
			while (s->generation == gen)
				pthread_cond_wait(&s->cv, &s->mu);
		}
		pthread_mutex_unlock(&s->mu);
		if (send_down(c, err) < 0) {
			snprintf(why, sizeof(why), "%s", err);
			goto dead;
		}
		if (mid)
			goto again;
	}
	pipar_wire_send(c->fd, PIPAR_FRAME_BYE, c->seq_out++, NULL, 0, err);
	c->finished = 1;
	goto out;
dead:
	conn_lost(c, why);
out:
	free(buf);
	free(gbuf);
	free(x);
	free(dl);
	free(labels);
	return NULL;
}

/* Reads HELLO: {"id": string, "samples": n, "norm": {"mean": [..], "std": [..]}}. */
static int read_hello(struct conn *c, int channels, char *err)
{
	struct pipar_frame_header h;
	uint8_t *buf = NULL;
	size_t cap = 0;
	int r = pipar_wire_recv(c->fd, 65536, c->seq_in, &h, &buf, &cap, err);
	cJSON *o = NULL;
	const cJSON *id, *n, *norm, *mean, *sd;

	if (r <= 0) {
		if (r == 0)
			pipar_errf(err, "disconnected before HELLO");
		free(buf);
		return -1;
	}
	c->seq_in++;
	if (h.type != PIPAR_FRAME_HELLO) {
		free(buf);
		return pipar_errf(err, "expected HELLO, got %s", pipar_frame_type_name(h.type));
	}
	o = cJSON_ParseWithLength((const char *)buf, h.length);
	free(buf);
	id = cJSON_GetObjectItemCaseSensitive(o, "id");
	n = cJSON_GetObjectItemCaseSensitive(o, "samples");
	norm = cJSON_GetObjectItemCaseSensitive(o, "norm");
	mean = cJSON_GetObjectItemCaseSensitive(norm, "mean");
	sd = cJSON_GetObjectItemCaseSensitive(norm, "std");
	if (!cJSON_IsObject(o) || !cJSON_IsString(id) || !cJSON_IsNumber(n) ||
	    n->valuedouble < 1 || n->valuedouble > 1e12 || !cJSON_IsArray(mean) ||
	    !cJSON_IsArray(sd) || cJSON_GetArraySize(mean) != channels ||
	    cJSON_GetArraySize(sd) != channels) {
		cJSON_Delete(o);
		return pipar_errf(err, "malformed HELLO");
	}
	snprintf(c->id, sizeof(c->id), "%s", id->valuestring);
	c->samples = (long)n->valuedouble;
	c->norm.channels = channels;
	for (int i = 0; i < channels; i++) {
		const cJSON *a = cJSON_GetArrayItem(mean, i), *b = cJSON_GetArrayItem(sd, i);

		if (!cJSON_IsNumber(a) || !cJSON_IsNumber(b) || !(b->valuedouble > 0) ||
		    !isfinite(a->valuedouble) || !isfinite(b->valuedouble)) {
			cJSON_Delete(o);
			return pipar_errf(err, "malformed HELLO normalisation");
		}
		c->norm.mean[i] = (float)a->valuedouble;
		c->norm.std[i] = (float)b->valuedouble;
	}
	cJSON_Delete(o);
	return 0;
}

static char *plan_message(const struct pipar_serve_cfg *cfg, int k)
{
	cJSON *o = cJSON_CreateObject(), *p = cJSON_Parse(cfg->plan_text);
	char seed[32], *t;

	snprintf(seed, sizeof(seed), "%llu", (unsigned long long)cfg->seed);
	cJSON_AddItemToObject(o, "plan", p ? p : cJSON_CreateNull());
	cJSON_AddNumberToObject(o, "device", k);
	cJSON_AddNumberToObject(o, "epochs", cfg->epochs);
	cJSON_AddNumberToObject(o, "lr", cfg->sgd.lr);
	cJSON_AddNumberToObject(o, "momentum", cfg->sgd.momentum);
	cJSON_AddNumberToObject(o, "weight_decay", cfg->sgd.weight_decay);
	cJSON_AddRawToObject(o, "seed", seed);
	cJSON_AddNumberToObject(o, "aggregate_every", cfg->aggregate_every);
	/* The server's clock, so that device traces line up with its own. */
	cJSON_AddNumberToObject(o, "server_time", pipar_now());
	t = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return t;
}

int pipar_serve(const struct pipar_serve_cfg *cfg, char *err)
{
	const struct pipar_plan_file *pl = cfg->plan;
	struct server s = {.cfg = cfg, .K = pl->K, .B = pl->batch, .L = pl->units};
	int r = -1, finished = 0;

	/* Split learning hands one device part from device to device. */
	for (int k = 1; k < pl->K && pl->mode == PIPAR_MODE_SL; k++)
		if (pl->dev[k].P != pl->dev[0].P)
			return pipar_errf(err, "sl needs one split point for all devices");
	s.P = pl->dev[0].P;
	s.mode = pl->mode;
	pthread_mutex_init(&s.compute, NULL);
	pthread_mutex_init(&s.mu, NULL);
	pthread_cond_init(&s.cv, NULL);
	s.epochs = cJSON_CreateArray();
	if (cfg->trace)
		s.trace = pipar_trace_new(0, "server");
	s.c = calloc((size_t)s.K, sizeof(*s.c));
	if (!s.c)
		goto oom;
	/* The global model, seeded: its device part goes to every device. */
	if (pipar_model_new(pl->spec, pl->in, pl->classes, 0, -1, cfg->seed, &s.whole, err) < 0 ||
	    (s.mode == PIPAR_MODE_SL &&
	     pipar_model_new(pl->spec, pl->in, pl->classes, s.P, -1, cfg->seed, &s.shared, err) < 0))
		goto out;
	/* The global model's state; a unit starts with the same values
	 * whichever part holds it. */
	s.total_n = part_state(s.whole);
	s.G = malloc(sizeof(float) * s.total_n);
	if (!s.G)
		goto oom;
	get_state(s.whole, s.G);
	for (int k = 0; k < s.K; k++) {
		struct conn *c = &s.c[k];
		int N = pl->dev[k].N;
		int max_n = s.B / N + (s.B % N != 0);

		c->s = &s;
		c->k = k;
		c->fd = -1;
		c->P = pl->dev[k].P;
		c->dn = 0;
		for (int u = 0; u < c->P; u++)
			c->dn += s.whole->units[u].nstate;
		if (!(c->up = malloc(sizeof(float) * (c->dn ? c->dn : 1))))
			goto oom;
		if (s.mode == PIPAR_MODE_FL)
			continue;       /* the devices hold the whole model */
		if (s.mode == PIPAR_MODE_SL)
			c->replica = s.shared;
		else if (pipar_model_new(pl->spec, pl->in, pl->classes, c->P, -1, cfg->seed,
					 &c->replica, err) < 0)
			goto out;
		if (!(c->exec = pipar_exec_new(c->replica, max_n, (uint64_t)k, err)))
			goto out;
	}
	logf_(cfg->log, cfg->meter, "pipar-serve: waiting for %d device(s)", s.K);
	int connected = 0;

	for (int k = 0; k < s.K; k++) {
		struct conn *c = &s.c[k];
		char *msg;
		struct pollfd pfd = {cfg->listen_fd, POLLIN, 0};
		int pr;

		/* Nobody waits forever: after --timeout without a new device
		 * the run starts with those that came, if any did. */
		do
			pr = poll(&pfd, 1, cfg->timeout > 0 ? (int)(cfg->timeout * 1000) : -1);
		while (pr < 0 && errno == EINTR);
		if (pr == 0) {
			if (!connected) {
				pipar_errf(err, "no device connected within %g s", cfg->timeout);
				goto out;
			}
			logf_(cfg->log, cfg->meter, "pipar-serve: %d of %d device(s) connected within %g s; starting with them",
			      connected, s.K, cfg->timeout);
			for (int j = k; j < s.K; j++)
				snprintf(s.c[j].fault, sizeof(s.c[j].fault), "never connected");
			break;
		}
		int fd = accept(cfg->listen_fd, NULL, NULL);

		if (fd < 0) {
			pipar_errf(err, "accept: %s", strerror(errno));
			goto out;
		}
		set_timeout(fd, cfg->timeout);
		c->fd = fd;
		if (read_hello(c, pl->in.c, err) < 0) {
			char e2[PIPAR_ERRLEN];

			logf_(cfg->log, cfg->meter, "pipar-serve: refused a connection: %s", err);
			pipar_wire_send(fd, PIPAR_FRAME_ERROR, c->seq_out, err, strlen(err), e2);
			close(fd);
			c->fd = -1;
			c->seq_in = c->seq_out = 0;
			k--;
			continue;
		}
		if (cfg->aggregate_every && connected > 0 && c->samples != s.c[0].samples) {
			char e2[PIPAR_ERRLEN];

			snprintf(err, PIPAR_ERRLEN, "--aggregate-every needs shards of equal size: %ld samples, the first device has %ld",
				 c->samples, s.c[0].samples);
			logf_(cfg->log, cfg->meter, "pipar-serve: refused device '%s': %s", c->id, err);
			pipar_wire_send(fd, PIPAR_FRAME_ERROR, c->seq_out, err, strlen(err), e2);
			close(fd);
			c->fd = -1;
			c->seq_in = c->seq_out = 0;
			k--;
			continue;
		}
		msg = plan_message(cfg, k);
		if (!msg || pipar_wire_send(fd, PIPAR_FRAME_PLAN, c->seq_out++, msg, strlen(msg), err) < 0 ||
		    pipar_wire_send(fd, PIPAR_FRAME_MODEL, c->seq_out++, s.G, sizeof(float) * c->dn, err) < 0) {
			free(msg);
			logf_(cfg->log, cfg->meter, "pipar-serve: device %s lost during the handshake: %s", c->id, err);
			close(fd);
			c->fd = -1;
			c->seq_in = c->seq_out = 0;
			k--;
			continue;
		}
		free(msg);
		c->alive = 1;
		connected++;
		logf_(cfg->log, cfg->meter, "pipar-serve: device %d is '%s' (%ld samples)", k + 1, c->id, c->samples);
	}
	s.live = connected;
	s.turn = 0;
	s.t_epoch = pipar_now();
	for (int k = 0; k < s.K; k++) {
		if (!s.c[k].alive)
			continue;
		if (pthread_create(&s.c[k].th, NULL, serve_device, &s.c[k]) != 0) {
			conn_lost(&s.c[k], "cannot start a thread");
			continue;
		}
	}
	for (int k = 0; k < s.K; k++)
		if (s.c[k].th)
			pthread_join(s.c[k].th, NULL);
	for (int k = 0; k < s.K; k++)
		finished += s.c[k].finished;
	if (pipar_trace_write(s.trace, cfg->trace, err) < 0)
		goto out;
	if (!finished) {
		pipar_errf(err, "no device finished training");
		goto out;
	}
	if (cfg->checkpoint) {
		struct pipar_ckpt_info info = {.epoch = s.epoch_done};
		char *settings = plan_message(cfg, -1);

		for (int k = 0; k < s.K; k++)
			if (s.c[k].finished) {
				info.norm = s.c[k].norm;
				break;
			}
		info.training = settings;
		if (pipar_checkpoint_save(cfg->checkpoint, s.whole, &info, 0, err) < 0) {
			free(settings);
			goto out;
		}
		free(settings);
	}
	if (cfg->summary) {
		cJSON *sum = cJSON_CreateObject(), *failed;
		char *text;

		cJSON_AddStringToObject(sum, "format", "pipar-summary/1");
		cJSON_AddStringToObject(sum, "mode", pipar_mode_name(pl->mode));
		cJSON_AddNumberToObject(sum, "devices", s.K);
		cJSON_AddNumberToObject(sum, "split_point", s.P);
		cJSON_AddNumberToObject(sum, "parallel_batches", pl->dev[0].N);
		cJSON_AddItemToObject(sum, "epochs", s.epochs);
		s.epochs = NULL;
		failed = cJSON_AddArrayToObject(sum, "failed_devices");
		for (int k = 0; k < s.K; k++)
			if (!s.c[k].finished) {
				cJSON *f = cJSON_CreateObject();

				cJSON_AddNumberToObject(f, "device", k + 1);
				cJSON_AddStringToObject(f, "id", s.c[k].id);
				cJSON_AddStringToObject(f, "fault", s.c[k].fault);
				cJSON_AddItemToArray(failed, f);
			}
		/* On standard output it follows the epoch records as one line. */
		int one_line = strcmp(cfg->summary, "-") == 0;
		struct pipar_out o;

		text = one_line ? cJSON_PrintUnformatted(sum) : cJSON_Print(sum);
		cJSON_Delete(sum);
		if (!text) {
			pipar_errf(err, "cannot write the summary: out of memory");
			goto out;
		}
		if (pipar_out_open(&o, cfg->summary, err) < 0) {
			free(text);
			goto out;
		}
		int bad = fprintf(o.f, "%s\n", text) < 0, e = errno;

		free(text);
		if (pipar_out_close(&o, bad, err) < 0) {
			if (bad)
				pipar_errf(err, "cannot write '%s': %s", cfg->summary, strerror(e));
			goto out;
		}
	}
	r = 0;
	goto out;
oom:
	pipar_errf(err, "out of memory");
out:
	for (int k = 0; s.c && k < s.K; k++) {
		if (s.c[k].fd >= 0)
			close(s.c[k].fd);
		pipar_exec_free(s.c[k].exec);
		if (s.c[k].replica != s.shared)
			pipar_model_free(s.c[k].replica);
		free(s.c[k].up);
	}
	free(s.c);
	free(s.G);
	pipar_model_free(s.whole);
	pipar_model_free(s.shared);
	pipar_trace_free(s.trace);
	cJSON_Delete(s.epochs);
	pthread_mutex_destroy(&s.compute);
	pthread_mutex_destroy(&s.mu);
	pthread_cond_destroy(&s.cv);
	return r;
}

/* ---------------------------------------------------------------- device */

static int recv_expect(struct pipar_link *l, int type, struct pipar_frame_header *h,
		       uint8_t **buf, size_t *cap, char *err)
{
	int r = pipar_link_recv(l, h, buf, cap, err);

	if (r == 0)
		return pipar_errf(err, "the server closed the connection");
	if (r < 0)
		return -1;
	if (h->type == PIPAR_FRAME_ERROR) {
		int n = h->length > 200 ? 200 : (int)h->length;

		return pipar_errf(err, "the server refused: %.*s", n, (const char *)*buf);
	}
	if (h->type != type)
		return pipar_errf(err, "expected %s from the server, got %s",
				  pipar_frame_type_name(type), pipar_frame_type_name(h->type));
	return 0;
}

/* Makes the last compute stage, started at t0, take slowdown times as long. */
static void slow(double slowdown, double t0)
{
	double d = (slowdown - 1) * (pipar_now() - t0);

	if (d > 0) {
		struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};

		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
}

/* Sends the device part up with the 32-byte head: the counts of a device
 * that computes its own loss, the busy seconds since the last time, and
 * whether this aggregation is within the epoch. */
static int send_up(struct pipar_link *link, const struct pipar_model *m, uint8_t *out,
		   size_t dn, struct pipar_trace *trace, uint32_t seen, uint32_t correct,
		   double lsum, uint32_t mid, char *err)
{
	float lf = (float)lsum, busy[3];
	uint32_t tail[2] = {mid, 0};

	busy[0] = (float)pipar_trace_busy(trace, PIPAR_RES_COMPUTE, 1);
	busy[1] = (float)pipar_trace_busy(trace, PIPAR_RES_UPLINK, 1);
	busy[2] = (float)pipar_trace_busy(trace, PIPAR_RES_DOWNLINK, 1);
	memcpy(out, &seen, 4);
	memcpy(out + 4, &correct, 4);
	memcpy(out + 8, &lf, 4);
	memcpy(out + 12, busy, 12);
	memcpy(out + 24, tail, 8);
	get_state(m, (float *)(void *)(out + 32));
	return pipar_link_send(link, PIPAR_FRAME_PARAMS_UP, out, 32 + sizeof(float) * dn, err);
}

/* Receives the global device part and loads it into m. */
static int recv_down(struct pipar_link *link, struct pipar_model *m, size_t dn,
		     uint8_t **buf, size_t *cap, char *err)
{
	struct pipar_frame_header h;

	if (recv_expect(link, PIPAR_FRAME_PARAMS_DOWN, &h, buf, cap, err) < 0)
		return -1;
	if (h.length != sizeof(float) * dn)
		return pipar_errf(err, "PARAMS_DOWN of %u bytes, expected %zu", h.length,
				  sizeof(float) * dn);
	set_state(m, (const float *)(const void *)*buf);
	return 0;
}

static double json_num(const cJSON *o, const char *k, double def)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsNumber(v) ? v->valuedouble : def;
}

int pipar_device(const struct pipar_device_cfg *cfg, char *err)
{
	struct pipar_link *link;
	struct pipar_frame_header h;
	uint8_t *buf = NULL, *out = NULL;
	size_t cap = 0;
	cJSON *hello = cJSON_CreateObject(), *msg = NULL, *a;
	struct pipar_plan_file *pl = NULL;
	struct pipar_model *m = NULL;
	struct pipar_exec **ex = NULL;
	float **xs = NULL;
	int **ys = NULL, *order = NULL;
	char *text, perr[PIPAR_ERRLEN];
	int r = -1, k, N = 0, P, B, epochs;
	struct pipar_sgd sgd;
	uint64_t seed;
	struct pipar_trace *trace = NULL;
	int every;

	set_timeout(cfg->fd, cfg->timeout);
	link = pipar_link_new(cfg->fd, cfg->up_bps, cfg->down_bps, CONTROL_MAX, err);
	if (!link) {
		cJSON_Delete(hello);
		return -1;
	}
	cJSON_AddStringToObject(hello, "id", cfg->id);
	cJSON_AddNumberToObject(hello, "samples", cfg->nidx);
	a = cJSON_AddObjectToObject(hello, "norm");
	{
		cJSON *mean = cJSON_AddArrayToObject(a, "mean"), *sd = cJSON_AddArrayToObject(a, "std");

		for (int c = 0; c < cfg->norm->channels; c++) {
			cJSON_AddItemToArray(mean, cJSON_CreateNumber(cfg->norm->mean[c]));
			cJSON_AddItemToArray(sd, cJSON_CreateNumber(cfg->norm->std[c]));
		}
	}
	text = cJSON_PrintUnformatted(hello);
	cJSON_Delete(hello);
	if (!text || pipar_link_send(link, PIPAR_FRAME_HELLO, text, strlen(text), err) < 0) {
		if (!text)
			pipar_errf(err, "out of memory");
		free(text);
		pipar_link_close(link, perr);
		return -1;
	}
	free(text);
	if (recv_expect(link, PIPAR_FRAME_PLAN, &h, &buf, &cap, err) < 0)
		goto out;
	double t_plan = pipar_now();

	msg = cJSON_ParseWithLength((const char *)buf, h.length);
	a = cJSON_GetObjectItemCaseSensitive(msg, "plan");
	text = a ? cJSON_PrintUnformatted(a) : NULL;
	if (!text || pipar_plan_parse(text, "PLAN", &pl, perr) < 0) {
		pipar_errf(err, "the server's plan is malformed: %s", text ? perr : "no plan");
		free(text);
		goto out;
	}
	free(text);
	k = (int)json_num(msg, "device", -1);
	epochs = (int)json_num(msg, "epochs", 0);
	sgd.lr = (float)json_num(msg, "lr", -1);
	sgd.momentum = (float)json_num(msg, "momentum", -1);
	sgd.weight_decay = (float)json_num(msg, "weight_decay", -1);
	seed = (uint64_t)json_num(msg, "seed", 0);
	every = (int)json_num(msg, "aggregate_every", 0);
	if (k < 0 || k >= pl->K || epochs < 0 || !(sgd.lr >= 0) || !(sgd.momentum >= 0) ||
	    !(sgd.weight_decay >= 0)) {
		pipar_errf(err, "the server's training settings are malformed");
		goto out;
	}
	if (!pipar_shape_eq(pl->in, cfg->data->shape) || pl->classes != cfg->data->classes) {
		pipar_errf(err, "the plan's model takes other data than '%s'", cfg->data->name);
		goto out;
	}
	P = pl->dev[k].P;
	N = pl->dev[k].N;
	B = pl->batch;
	/* Always recorded: the busy seconds reported at each epoch's end
	 * come from the events; written out only with --trace. */
	{
		char name[96];

		snprintf(name, sizeof(name), "device %d (%s)", k + 1, cfg->id);
		trace = pipar_trace_new(k + 1, name);
		pipar_trace_set_offset(trace, json_num(msg, "server_time", t_plan) - t_plan);
		if (trace)
			pipar_link_set_trace(link, trace);
	}
	if (pipar_model_new(pl->spec, pl->in, pl->classes, 0, P - 1, seed, &m, err) < 0)
		goto out;
	size_t dn = part_state(m);
	struct pipar_shape cut = pipar_model_out(m);
	size_t cutn = pipar_shape_size(cut), inn = pipar_shape_size(pl->in);
	int max_n = B / N + (B % N != 0);
	uint32_t gbound = (uint32_t)pipar_tensor_msg_size(PIPAR_FRAME_GRADIENTS, (uint32_t)max_n,
							  (uint32_t)cut.c, (uint32_t)cut.h, (uint32_t)cut.w);

	if (gbound < sizeof(float) * dn)
		gbound = (uint32_t)(sizeof(float) * dn);
	pipar_link_set_max(link, gbound);
	if (recv_expect(link, PIPAR_FRAME_MODEL, &h, &buf, &cap, err) < 0)
		goto out;
	if (h.length != sizeof(float) * dn) {
		pipar_errf(err, "MODEL of %u bytes, the device part needs %zu", h.length, sizeof(float) * dn);
		goto out;
	}
	set_state(m, (const float *)(const void *)buf);
	ex = calloc((size_t)N, sizeof(*ex));
	xs = calloc((size_t)N, sizeof(*xs));
	ys = calloc((size_t)N, sizeof(*ys));
	order = malloc(sizeof(int) * (size_t)(cfg->nidx ? cfg->nidx : 1));
	out = malloc(pipar_tensor_msg_size(PIPAR_FRAME_ACTIVATIONS, (uint32_t)max_n, (uint32_t)cut.c,
					   (uint32_t)cut.h, (uint32_t)cut.w) + 32 + sizeof(float) * dn);
	if (!ex || !xs || !ys || !order || !out) {
		pipar_errf(err, "out of memory");
		goto out;
	}
	/* One workspace per micro-batch in flight. */
	for (int i = 0; i < N; i++) {
		xs[i] = pipar_alloc(sizeof(float) * inn * (size_t)max_n);
		ys[i] = malloc(sizeof(int) * (size_t)max_n);
		if (!xs[i] || !ys[i] || !(ex[i] = pipar_exec_new(m, max_n, (uint64_t)(k * 1000 + i), err)))
			goto out;
	}
	float *dy = pipar_alloc(sizeof(float) * cutn * (size_t)max_n);

	if (!dy) {
		pipar_errf(err, "out of memory");
		goto out;
	}
	logf_(cfg->log, cfg->meter, "pipar-device: %s is device %d of %d: units 1..%d, %d parallel batch(es) of up to %d",
	      cfg->id, k + 1, pl->K, P, N, max_n);
	float *dl = pipar_alloc(sizeof(float) * (size_t)pl->classes * (size_t)max_n);

	if (!dl) {
		free(dy);
		pipar_errf(err, "out of memory");
		goto out;
	}
	for (int epoch = 1; epoch <= epochs; epoch++) {
		uint32_t it = 0, seen = 0, correct = 0;
		double lsum = 0, ploss = 0;
		long pseen = 0;
		struct pipar_progress prog = {epoch, epochs, 0, (cfg->nidx + B - 1) / B,
					      "mini-batch", NAN};

		/* In split learning the devices take turns: wait for the model. */
		if (pl->mode == PIPAR_MODE_SL && recv_down(link, m, dn, &buf, &cap, err) < 0)
			goto out_dy;

		pipar_train_order(cfg->idx, cfg->nidx, seed, epoch, k, order);
		for (int s0 = 0; s0 < cfg->nidx; s0 += B, it++) {
			int b = s0 + B <= cfg->nidx ? B : cfg->nidx - s0, nm = b < N ? b : N, off = 0;

			/* An aggregation within the epoch, every E iterations. */
			if (every > 0 && it > 0 && it % (uint32_t)every == 0 && pl->mode != PIPAR_MODE_SL) {
				if (send_up(link, m, out, dn, trace, seen, correct, lsum, 1, err) < 0 ||
				    recv_down(link, m, dn, &buf, &cap, err) < 0)
					goto out_dy;
				seen = correct = 0;
				lsum = 0;
			}

			if (pl->mode == PIPAR_MODE_FL) {
				/* The whole model here: forward, loss, backward, step. */
				int corr = 0;
				double t0 = pipar_now();
				const float *z;

				pipar_data_batch(cfg->data, cfg->norm, order + s0, b, xs[0], ys[0]);
				z = pipar_exec_forward(ex[0], xs[0], b, 1);
				lsum += pipar_softmax_xent(z, ys[0], b, pl->classes, 1.0f / (float)b, dl, &corr);
				pipar_model_zero_grad(m);
				pipar_exec_backward(ex[0], dl, 0);
				pipar_model_sgd_step(m, &sgd);
				slow(cfg->slowdown, t0);
				pipar_trace_event(trace, "train", PIPAR_RES_COMPUTE, t0, pipar_now() - t0,
						  (int)it, -1);
				seen += (uint32_t)b;
				correct += (uint32_t)corr;
				prog.done = it + 1;
				prog.loss = lsum / seen;
				pipar_meter_update(cfg->meter, &prog, 0);
				continue;
			}

			/* N forward passes back to back, each sent as it is done. */
			for (int i = 0; i < nm; i++) {
				int n = micro(b, nm, i);
				struct pipar_tensor_msg am = {it, (uint32_t)i, (uint32_t)n, (uint32_t)cut.c,
							      (uint32_t)cut.h, (uint32_t)cut.w, (uint32_t)b, 0,
							      NULL, NULL};
				const float *act;
				size_t sz = pipar_tensor_msg_size(PIPAR_FRAME_ACTIVATIONS, (uint32_t)n,
								  (uint32_t)cut.c, (uint32_t)cut.h,
								  (uint32_t)cut.w);

				pipar_data_batch(cfg->data, cfg->norm, order + s0 + off, n, xs[i], ys[i]);
				off += n;
				double t0 = pipar_now();

				act = pipar_exec_forward(ex[i], xs[i], n, 1);
				slow(cfg->slowdown, t0);
				pipar_trace_event(trace, "forward", PIPAR_RES_COMPUTE, t0, pipar_now() - t0,
						  (int)it, i);
				pipar_tensor_msg_head(PIPAR_FRAME_ACTIVATIONS, &am, out);
				memcpy(out + PIPAR_TENSOR_HEAD, act, sizeof(float) * cutn * (size_t)n);
				for (int j = 0; j < n; j++) {
					int32_t l = ys[i][j];

					memcpy(out + PIPAR_TENSOR_HEAD + sizeof(float) * cutn * (size_t)n + 4 * (size_t)j,
					       &l, 4);
				}
				if (pipar_link_send(link, PIPAR_FRAME_ACTIVATIONS, out, sz, err) < 0)
					goto out_dy;
			}
			/* Backward passes as the gradients come back, then one step. */
			pipar_model_zero_grad(m);
			for (int i = 0; i < nm; i++) {
				struct pipar_tensor_msg gm;
				int n = micro(b, nm, i);

				if (recv_expect(link, PIPAR_FRAME_GRADIENTS, &h, &buf, &cap, err) < 0 ||
				    pipar_tensor_msg_parse(PIPAR_FRAME_GRADIENTS, buf, h.length, (uint32_t)cut.c,
							   (uint32_t)cut.h, (uint32_t)cut.w, (uint32_t)max_n,
							   pl->classes, &gm, err) < 0)
					goto out_dy;
				if (gm.iteration != it || gm.micro != (uint32_t)i || gm.n != (uint32_t)n) {
					pipar_errf(err, "GRADIENTS out of order (iteration %u micro %u)",
						   gm.iteration, gm.micro);
					goto out_dy;
				}
				memcpy(dy, gm.data, sizeof(float) * cutn * (size_t)n);
				ploss += gm.loss;
				pseen += n;
				double t0 = pipar_now();

				pipar_exec_backward(ex[i], dy, 0);
				slow(cfg->slowdown, t0);
				pipar_trace_event(trace, "backward", PIPAR_RES_COMPUTE, t0, pipar_now() - t0,
						  (int)it, i);
			}
			double t0 = pipar_now();

			pipar_model_sgd_step(m, &sgd);
			slow(cfg->slowdown, t0);
			pipar_trace_event(trace, "step", PIPAR_RES_COMPUTE, t0, pipar_now() - t0, (int)it, -1);
			prog.done = it + 1;
			prog.loss = ploss / (double)pseen;
			pipar_meter_update(cfg->meter, &prog, 0);
		}
		/* The epoch's end: the device part up (with the loss a device
		 * computing its own counts), the global part down. */
		if (send_up(link, m, out, dn, trace, seen, correct, lsum, 0, err) < 0)
			goto out_dy;
		if (pl->mode == PIPAR_MODE_SL) {
			logf_(cfg->log, cfg->meter, "pipar-device: %s: epoch %d done", cfg->id, epoch);
			continue;
		}
		if (recv_down(link, m, dn, &buf, &cap, err) < 0)
			goto out_dy;
		logf_(cfg->log, cfg->meter, "pipar-device: %s: epoch %d done", cfg->id, epoch);
	}
	if (recv_expect(link, PIPAR_FRAME_BYE, &h, &buf, &cap, err) < 0)
		goto out_dy;
	r = 0;
out_dy:
	free(dy);
	free(dl);
out:
	for (int i = 0; i < N && ex; i++) {
		pipar_exec_free(ex[i]);
		free(xs ? xs[i] : NULL);
		free(ys ? ys[i] : NULL);
	}
	free(ex);
	free(xs);
	free(ys);
	free(order);
	free(out);
	free(buf);
	cJSON_Delete(msg);
	pipar_plan_file_free(pl);
	pipar_model_free(m);
	if (pipar_link_close(link, perr) < 0 && r == 0) {
		pipar_errf(err, "%s", perr);
		r = -1;
	}
	if (cfg->trace && pipar_trace_write(trace, cfg->trace, perr) < 0 && r == 0) {
		pipar_errf(err, "%s", perr);
		r = -1;
	}
	pipar_trace_free(trace);
	return r;
}
