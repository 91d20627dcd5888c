/*
 * The server: the global model and the replicas set up, devices admitted
 * (HELLO answered with PLAN and MODEL), one session thread per device,
 * and at the end the checkpoint and the run summary.
 */
#define _POSIX_C_SOURCE 200809L
#include "server_int.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "checkpoint.h"
#include "proto.h"
#include "runtime.h"
#include "summary.h"
#include "wire.h"
#include "exec.h"

/* The run's settings for device k (-1: for the checkpoint). */
static char *plan_message(const struct pipar_serve_cfg *cfg, int k)
{
	struct pipar_settings st = {
		.device = k, .epochs = cfg->epochs, .sgd = cfg->sgd, .seed = cfg->seed,
		.aggregate_every = cfg->aggregate_every,
		/* The server's clock, so that device traces line up with its own. */
		.server_time = pipar_now(),
	};

	return pipar_plan_msg_encode(cfg->plan, &st);
}

/* The models: the global one, seeded (its device part goes to every
 * device; a unit starts with the same values whichever part holds it),
 * and a replica of the server part per device (one shared in turns, none
 * when the devices train the whole model). */
static int setup(struct server *s, char *err)
{
	const struct pipar_serve_cfg *cfg = s->cfg;
	const struct pipar_plan_file *pl = cfg->plan;

	if (pipar_model_new(pl->spec, pl->in, pl->classes, 0, -1, cfg->seed, &s->whole, err) < 0 ||
	    (s->ops->turns &&
	     pipar_model_new(pl->spec, pl->in, pl->classes, pl->dev[0].P, -1, cfg->seed, &s->shared,
			     err) < 0))
		return -1;
	s->total_n = pipar_model_nstate(s->whole);
	if (!(s->G = malloc(sizeof(float) * s->total_n)))
		return pipar_errf(err, "out of memory");
	pipar_runtime_get_state(s->whole, s->G);
	for (int k = 0; k < s->K; k++) {
		struct conn *c = &s->c[k];

		c->s = s;
		c->k = k;
		c->fd = -1;
		c->P = pl->dev[k].P;
		c->max_n = pipar_plan_max_micro(pl, k);
		c->dn = 0;
		for (int u = 0; u < c->P; u++)
			c->dn += s->whole->units[u].nstate;
		if (!(c->up = malloc(sizeof(float) * (c->dn ? c->dn : 1))))
			return pipar_errf(err, "out of memory");
		if (!s->ops->split)
			continue;       /* the devices hold the whole model */
		if (s->ops->turns)
			c->replica = s->shared;
		else if (pipar_model_new(pl->spec, pl->in, pl->classes, c->P, -1, cfg->seed,
					 &c->replica, err) < 0)
			return -1;
		if (!(c->exec = pipar_exec_new(c->replica, c->max_n, (uint64_t)k, err)))
			return -1;
	}
	return 0;
}

/* Drops the connection of c, first telling the peer err as ERROR when
 * err is not NULL, and makes c ready for the next. */
static void drop(struct conn *c, const char *err)
{
	char e2[PIPAR_ERRLEN];

	if (err)
		pipar_wire_send(c->fd, PIPAR_FRAME_ERROR, c->seq_out, err, strlen(err), e2);
	close(c->fd);
	c->fd = -1;
	c->seq_in = c->seq_out = 0;
}

/* Reads and checks c's HELLO. */
static int read_hello(struct conn *c, const struct pipar_plan_file *pl, char *err)
{
	struct pipar_frame_header h;
	struct pipar_hello hello;
	uint8_t *buf = NULL;
	size_t cap = 0;
	int r = pipar_wire_recv(c->fd, 65536, c->seq_in, &h, &buf, &cap, err);

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
	r = pipar_hello_decode(buf, h.length, pl->in.c, pl->samples * pl->K, &hello, err);
	free(buf);
	if (r < 0)
		return -1;
	memcpy(c->id, hello.id, sizeof(c->id));
	c->samples = hello.samples;
	c->norm = hello.norm;
	return 0;
}

/* One connection on fd for slot c: HELLO, checked against the devices
 * admitted before, answered with PLAN and MODEL.  0 when c is admitted;
 * -1 when the connection was refused or lost (logged, c free again). */
static int admit(struct server *s, struct conn *c, int fd, int connected)
{
	const struct pipar_serve_cfg *cfg = s->cfg;
	char err[PIPAR_ERRLEN], *msg;

	pipar_runtime_timeout(fd, cfg->timeout);
	c->fd = fd;
	if (read_hello(c, cfg->plan, err) < 0) {
		SLOG(s, "refused a connection: %s", err);
		drop(c, err);
		return -1;
	}
	if (cfg->aggregate_every && connected > 0 && c->samples != s->c[0].samples) {
		snprintf(err, PIPAR_ERRLEN, "--aggregate-every needs shards of equal size: %ld samples, the first device has %ld",
			 c->samples, s->c[0].samples);
		SLOG(s, "refused device '%s': %s", c->id, err);
		drop(c, err);
		return -1;
	}
	msg = plan_message(cfg, c->k);
	if (!msg || pipar_wire_send(fd, PIPAR_FRAME_PLAN, c->seq_out++, msg, strlen(msg), err) < 0 ||
	    pipar_wire_send(fd, PIPAR_FRAME_MODEL, c->seq_out++, s->G, sizeof(float) * c->dn, err) < 0) {
		if (!msg)
			pipar_errf(err, "out of memory");
		free(msg);
		SLOG(s, "device %s lost during the handshake: %s", c->id, err);
		drop(c, NULL);
		return -1;
	}
	free(msg);
	c->alive = 1;
	SLOG(s, "device %d is '%s' (%ld samples)", c->k + 1, c->id, c->samples);
	return 0;
}

/* Admits devices one connection at a time until K have come or none came
 * within the timeout.  Returns how many came, -1 with err when none did or
 * accept failed. */
static int admission(struct server *s, char *err)
{
	const struct pipar_serve_cfg *cfg = s->cfg;
	int connected = 0;

	SLOG(s, "waiting for %d device(s)", s->K);
	for (int k = 0; k < s->K;) {
		struct pollfd pfd = {cfg->listen_fd, POLLIN, 0};
		int pr, fd;

		/* Nobody waits forever: after --timeout without a new device
		 * the run starts with those that came, if any did. */
		do
			pr = poll(&pfd, 1, cfg->timeout > 0 ? (int)(cfg->timeout * 1000) : -1);
		while (pr < 0 && errno == EINTR);
		if (pr == 0) {
			if (!connected)
				return pipar_errf(err, "no device connected within %g s", cfg->timeout);
			SLOG(s, "%d of %d device(s) connected within %g s; starting with them", connected,
			     s->K, cfg->timeout);
			for (int j = k; j < s->K; j++)
				snprintf(s->c[j].fault, sizeof(s->c[j].fault), "never connected");
			break;
		}
		if ((fd = accept(cfg->listen_fd, NULL, NULL)) < 0)
			return pipar_errf(err, "accept: %s", strerror(errno));
		if (admit(s, &s->c[k], fd, connected) == 0) {
			connected++;
			k++;
		}
	}
	return connected;
}

/* The run summary (pipar-summary(5)) to cfg->summary, atomically. */
static int write_summary(struct server *s, char *err)
{
	const struct pipar_serve_cfg *cfg = s->cfg;
	cJSON *sum = pipar_summary_doc(pipar_mode_name(cfg->plan->mode), s->K, cfg->plan->dev[0].P,
				       cfg->plan->dev[0].N, s->epochs);
	int r;

	s->epochs = NULL;
	for (int k = 0; k < s->K; k++)
		if (!s->c[k].finished)
			pipar_summary_add_failed(sum, k + 1, s->c[k].id, s->c[k].fault);
	r = pipar_summary_save(sum, cfg->summary, err);
	cJSON_Delete(sum);
	return r;
}

/* The global model to cfg->checkpoint, with the run's settings and the
 * normalisation of the first device that finished. */
static int write_checkpoint(struct server *s, char *err)
{
	struct pipar_ckpt_info info = {.epoch = s->epoch_done};
	char *settings = plan_message(s->cfg, -1);
	int r;

	if (!settings)
		return pipar_errf(err, "out of memory");
	for (int k = 0; k < s->K; k++)
		if (s->c[k].finished) {
			info.norm = s->c[k].norm;
			break;
		}
	info.training = settings;
	r = pipar_checkpoint_save(s->cfg->checkpoint, s->whole, &info, 0, err);
	free(settings);
	return r;
}

static void release(struct server *s)
{
	for (int k = 0; s->c && k < s->K; k++) {
		if (s->c[k].fd >= 0)
			close(s->c[k].fd);
		pipar_exec_free(s->c[k].exec);
		if (s->c[k].replica != s->shared)
			pipar_model_free(s->c[k].replica);
		free(s->c[k].up);
	}
	free(s->c);
	free(s->G);
	pipar_model_free(s->whole);
	pipar_model_free(s->shared);
	pipar_trace_free(s->trace);
	cJSON_Delete(s->epochs);
	pthread_mutex_destroy(&s->compute);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
}

int pipar_server_run(const struct pipar_serve_cfg *cfg, char *err)
{
	const struct pipar_plan_file *pl = cfg->plan;
	struct server s = {.cfg = cfg, .ops = pipar_mode_ops(pl->mode), .K = pl->K,
			   .B = pl->batch, .L = pl->units};
	int r = -1, finished = 0;

	/* In turns one device part goes from device to device. */
	for (int k = 1; k < pl->K && s.ops->turns; k++)
		if (pl->dev[k].P != pl->dev[0].P)
			return pipar_errf(err, "%s needs one split point for all devices",
					  pipar_mode_name(pl->mode));
	pthread_mutex_init(&s.compute, NULL);
	pthread_mutex_init(&s.mu, NULL);
	pthread_cond_init(&s.cv, NULL);
	s.epochs = cJSON_CreateArray();
	if (cfg->trace)
		s.trace = pipar_trace_new(0, "server");
	if (!(s.c = calloc((size_t)s.K, sizeof(*s.c)))) {
		pipar_errf(err, "out of memory");
		goto out;
	}
	if (cfg->rule.kind != PIPAR_AGG_MEAN) {
		char rule[48];

		pipar_agg_rule_name(&cfg->rule, rule, sizeof(rule));
		if (s.ops->turns) {
			pipar_errf(err, "--aggregate %s: %s passes one model from device to device and averages none",
				   rule, pipar_mode_name(pl->mode));
			goto out;
		}
		SLOG(&s, "combining the devices' models by %s", rule);
	}
	if (setup(&s, err) < 0 || (s.live = admission(&s, err)) < 0)
		goto out;
	s.turn = 0;
	s.t_epoch = pipar_now();
	for (int k = 0; k < s.K; k++)
		if (s.c[k].alive && pthread_create(&s.c[k].th, NULL, pipar_session_run, &s.c[k]) != 0)
			pipar_server_conn_lost(&s.c[k], "cannot start a thread");
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
	if ((cfg->checkpoint && write_checkpoint(&s, err) < 0) ||
	    (cfg->summary && write_summary(&s, err) < 0))
		goto out;
	r = 0;
out:
	release(&s);
	return r;
}
