/*
 * The server: the global model and the replicas set up, devices admitted
 * (HELLO answered with PLAN and MODEL), one session thread per device,
 * and at the end the checkpoint and the run summary.
 */
#define _POSIX_C_SOURCE 200809L
#include "server_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "chan.h"
#include "checkpoint.h"
#include "proto.h"
#include "runtime.h"
#include "summary.h"
#include "wire.h"
#include "exec.h"

/* The run's settings for device k (-1: for the checkpoint), which starts
 * in first_epoch, its momentum in MODEL when state_down. */
static char *plan_message(const struct pipar_serve_cfg *cfg, int k, int first_epoch,
			  int state_down)
{
	struct pipar_settings st = {
		.device = k, .epochs = cfg->epochs, .sgd = cfg->sgd, .seed = cfg->seed,
		.aggregate_every = cfg->aggregate_every, .first_epoch = first_epoch,
		.state_up = k >= 0 && cfg->checkpoint_every > 0, .state_down = state_down,
		/* The server's clock, so that device traces line up with its own
		 * (not in a checkpoint, which the same run writes the same). */
		.server_time = k >= 0 ? pipar_now() : 0,
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
	s->total_train = pipar_model_ntrain(s->whole);
	s->first_epoch = 1;
	s->snap_epoch = -1;
	if (!(s->G = malloc(sizeof(float) * s->total_n)))
		return pipar_errf(err, "out of memory");
	/* Each device's momentum, kept at every epoch's end for a
	 * checkpoint to resume from. */
	if (cfg->checkpoint_every &&
	    (!(s->snap_mom = calloc((size_t)s->K * (s->total_train ? s->total_train : 1), sizeof(float))) ||
	     !(s->snap_alive = calloc((size_t)s->K, 1))))
		return pipar_errf(err, "out of memory for the checkpoints' snapshot of %d device(s)", s->K);
	pipar_runtime_get_state(s->whole, s->G);
	for (int k = 0; k < s->K; k++) {
		struct conn *c = &s->c[k];

		c->s = s;
		c->k = k;
		c->P = pl->dev[k].P;
		c->max_n = pipar_plan_max_micro(pl, k);
		c->dn = c->dm = 0;
		for (int u = 0; u < c->P; u++) {
			c->dn += s->whole->units[u].nstate;
			c->dm += s->whole->units[u].ntrain;
		}
		if (!(c->up = malloc(sizeof(float) * (c->dn ? c->dn : 1))) ||
		    (cfg->checkpoint_every && !(c->mom_up = calloc(c->dm ? c->dm : 1, sizeof(float)))))
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

/* A connection in its handshake, until it is admitted or refused. */
struct pending {
	struct pending *next;
	struct server *s;
	int fd;                         /* until ch owns it */
	struct pipar_chan *ch;
	uint32_t addr;                  /* the peer's IPv4 address */
};

/* Tells the peer why, as ERROR, within a second. */
static void tell(struct pipar_chan *ch, uint32_t seq, const char *why)
{
	char e2[PIPAR_ERRLEN];

	pipar_chan_set_deadline(ch, pipar_now() + 1, 1);
	if (pipar_wire_send(ch, PIPAR_FRAME_ERROR, seq, why, strlen(why), e2) == 0)
		pipar_chan_linger(ch);
}

/* Reads and checks the HELLO on ch into *hello. */
static int read_hello(struct pipar_chan *ch, const struct pipar_plan_file *pl,
		      struct pipar_hello *hello, char *err)
{
	struct pipar_frame_header h;
	uint8_t *buf = NULL;
	size_t cap = 0;
	int r = pipar_wire_recv(ch, 65536, 0, &h, &buf, &cap, err);

	if (r <= 0) {
		if (r == 0)
			pipar_errf(err, "disconnected before HELLO");
		free(buf);
		return -1;
	}
	if (h.type != PIPAR_FRAME_HELLO) {
		free(buf);
		return pipar_errf(err, "expected HELLO, got %s", pipar_frame_type_name(h.type));
	}
	r = pipar_hello_decode(buf, h.length, pl->in.c, pl->samples * pl->K, hello, err);
	free(buf);
	return r;
}

/* The slot the device of HELLO h asks for, or the highest free one when
 * it asks for none, reserved with h's id, shard and normalisation (s->mu
 * held); -1 with why when there is none or the device does not fit. */
static int reserve(struct server *s, const struct pipar_hello *h, char *why)
{
	const struct conn *first = NULL;
	long samples = h->samples;
	int late = !s->admitting;

	/* After the start a device joins at the next epoch's aggregation,
	 * but not in turns (one model goes round) nor once the run ends. */
	if (late && s->ops->turns)
		return pipar_errf(why, "the run has started; in %s devices join only before it",
				  pipar_mode_name(s->cfg->plan->mode));
	if (late && !s->running)
		return pipar_errf(why, "the run is starting; try again in a moment");
	if (late && (s->stopping || s->epoch_done >= s->cfg->epochs || s->live == 0))
		return pipar_errf(why, "the run is ending; no device joins it now");
	for (int k = 0; k < s->K; k++)
		if (s->c[k].slot == SLOT_ADMITTED) {
			first = &s->c[k];
			break;
		}
	if (s->cfg->aggregate_every && first && samples != first->samples)
		return pipar_errf(why, "--aggregate-every needs shards of equal size: %ld samples, the first device has %ld",
				  samples, first->samples);
	/* A device's number is the one it asks for (its shard's), so that
	 * the same command trains the same shards on the same replicas
	 * whatever the order of connection; a peer that asks for none takes
	 * the highest free one, out of the way of those that do. */
	int want = h->device;

	if (want >= s->K)
		return pipar_errf(why, "device number %d is outside the plan's %d device(s)", want, s->K);
	/* In a resumed run a slot whose device trained before is that
	 * device's alone, found by its number or its id. */
	for (int k = 0; k < s->K && want < 0; k++)
		if (s->c[k].mom_down && s->c[k].slot == SLOT_FREE && !strcmp(s->c[k].id, h->id))
			want = k;
	/* Taken, or being taken (its HELLO is in, the id with it). */
	if (want >= 0 && s->c[want].slot != SLOT_FREE)
		return pipar_errf(why, "device number %d is taken by '%s'", want, s->c[want].id);
	if (want >= 0 && s->c[want].mom_down && strcmp(s->c[want].id, h->id) != 0)
		return pipar_errf(why, "device number %d was '%s' in the run resumed; '%s' cannot take it",
				  want, s->c[want].id, h->id);
	if (want >= 0 && s->c[want].mom_down && h->samples != s->c[want].samples)
		return pipar_errf(why, "device number %d trained on %ld samples in the run resumed, not %ld",
				  want, s->c[want].samples, h->samples);
	for (int k = s->K - 1; k >= 0; k--)
		if (s->c[k].slot == SLOT_FREE && (want < 0 ? !s->c[k].mom_down : k == want)) {
			struct conn *c = &s->c[k];

			c->slot = late ? SLOT_WAITING : SLOT_RESERVED;
			memcpy(c->id, h->id, sizeof(c->id));
			c->samples = h->samples;
			c->norm = h->norm;
			return k;
		}
	return pipar_errf(why, "the run has its %d device(s)", s->K);
}

static int wait_to_join(struct server *s, struct conn *c, char *why);

/* READY from a device that has taken PLAN and MODEL and made its buffers,
 * within cfg->timeout however it spaces its bytes. */
static int read_ready(struct server *s, struct pipar_chan *ch, char *err)
{
	struct pipar_frame_header h;
	uint8_t *buf = NULL;
	size_t cap = 0;
	char why[PIPAR_ERRLEN];
	int r;

	pipar_chan_set_deadline(ch, pipar_now() + s->cfg->timeout, s->cfg->timeout);
	r = pipar_wire_recv(ch, 65536, 1, &h, &buf, &cap, why);
	pipar_chan_set_deadline(ch, 0, 0);
	free(buf);
	if (r == 0)
		return pipar_errf(err, "disconnected before READY");
	if (r < 0)
		return pipar_errf(err, "waiting for READY: %s", why);
	if (h.type != PIPAR_FRAME_READY)
		return pipar_errf(err, "%s frame where READY was due", pipar_frame_type_name(h.type));
	if (h.length)
		return pipar_errf(err, "READY of %u bytes, expected none", h.length);
	return 0;
}

/* The handshake of one connection, on its own thread: TLS, HELLO within
 * cfg->hello_timeout, a slot, then PLAN and MODEL, and READY back within
 * cfg->timeout; the device is admitted only then, and its session begins
 * with START.  A peer that is refused is told why (except when it proved
 * no credentials). */
static void *handshake_run(void *arg)
{
	struct pending *p = arg;
	struct server *s = p->s;
	const struct pipar_serve_cfg *cfg = s->cfg;
	struct pipar_hello hello;
	char err[PIPAR_ERRLEN], *msg = NULL;
	float *model = NULL;
	int k = -1, kept = 0;

	if (!(p->ch = pipar_chan_new(p->fd, cfg->tls, NULL, err))) {
		SLOG(s, "refused a connection: %s", err);
		goto done;
	}
	pipar_chan_set_timeout(p->ch, cfg->timeout);
	/* One deadline for everything up to the HELLO, however the peer
	 * spaces its bytes. */
	pipar_chan_set_deadline(p->ch, pipar_now() + cfg->hello_timeout, cfg->hello_timeout);
	if (pipar_chan_handshake(p->ch, err) < 0) {
		SLOG(s, "refused a connection from %s: %s", pipar_chan_peer(p->ch), err);
		if (strstr(err, "requires TLS"))
			tell(p->ch, 0, err);
		goto done;
	}
	if (read_hello(p->ch, cfg->plan, &hello, err) < 0) {
		SLOG(s, "refused a connection from %s: %s", pipar_chan_peer(p->ch), err);
		tell(p->ch, 0, err);
		goto done;
	}
	pipar_chan_set_deadline(p->ch, 0, 0);
	pthread_mutex_lock(&s->mu);
	k = reserve(s, &hello, err);
	pthread_mutex_unlock(&s->mu);
	if (k < 0) {
		SLOG(s, "refused device '%s' from %s: %s", hello.id, pipar_chan_peer(p->ch), err);
		tell(p->ch, 0, err);
		goto done;
	}
	struct conn *c = &s->c[k];
	int late = 0;

	pthread_mutex_lock(&s->mu);
	if (c->slot == SLOT_WAITING) {
		late = 1;
		if (wait_to_join(s, c, err) < 0) {
			pthread_mutex_unlock(&s->mu);
			SLOG(s, "refused device '%s' from %s: %s", hello.id, pipar_chan_peer(p->ch), err);
			tell(p->ch, 0, err);
			goto done;
		}
	}
	/* A device taking its slot back in a resumed run gets its own
	 * momentum after the global part. */
	const float *mom = late ? NULL : c->mom_down;
	size_t mn = c->dn + (mom ? c->dm : 0);

	pthread_mutex_unlock(&s->mu);
	msg = plan_message(cfg, k, late ? c->first_epoch : s->first_epoch, mom != NULL);
	if (mom && (model = malloc(sizeof(float) * mn))) {
		memcpy(model, s->G, sizeof(float) * c->dn);
		memcpy(model + c->dn, mom, sizeof(float) * c->dm);
	}
	if (!msg || (mom && !model) ||
	    pipar_wire_send(p->ch, PIPAR_FRAME_PLAN, 0, msg, strlen(msg), err) < 0 ||
	    pipar_wire_send(p->ch, PIPAR_FRAME_MODEL, 1, mom ? model : s->G, sizeof(float) * mn,
			    err) < 0 ||
	    read_ready(s, p->ch, err) < 0) {
		if (!msg || (mom && !model))
			pipar_errf(err, "out of memory");
		SLOG(s, "device %s lost during the handshake: %s", hello.id, err);
		if (late)
			pipar_server_conn_lost(c, "lost while joining");
		pthread_mutex_lock(&s->mu);
		c->slot = SLOT_FREE;
		if (!late)
			c->id[0] = 0;   /* never admitted: no name in the summary */
		s->joining -= late;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
		goto done;
	}
	if (late && c->has_th) {
		/* The slot's last session ended before it was freed. */
		pthread_join(c->th, NULL);
		c->has_th = 0;
	}
	pthread_mutex_lock(&s->mu);
	c->ch = p->ch;
	kept = 1;
	c->seq_in = 2;
	c->seq_out = 2;
	c->slot = SLOT_ADMITTED;
	if (late) {
		/* Alive since the epoch's end admitted it; its session now. */
		s->joining--;
		if (pipar_server_start_session(s, c) < 0) {
			pthread_mutex_unlock(&s->mu);
			pipar_server_conn_lost(c, "cannot start a thread");
			pthread_mutex_lock(&s->mu);
		}
	} else {
		c->alive = 1;
		s->admitted++;
		s->last_admit = pipar_now();
		SLOG(s, "device %d is '%s' (%ld samples)", k + 1, c->id, c->samples);
	}
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
done:
	free(msg);
	free(model);
	pthread_mutex_lock(&s->mu);
	for (struct pending **q = &s->pending; *q; q = &(*q)->next)
		if (*q == p) {
			*q = p->next;
			break;
		}
	s->handshaking--;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	/* Closed only once off the list, where no one can shut it down. */
	if (!kept && p->ch)
		pipar_chan_free(p->ch);
	else if (!kept)
		close(p->fd);
	free(p);
	return NULL;
}

/* With s->mu held: c waits for the next epoch's end
 * (pipar_server_admit_waiting makes it SLOT_JOINING), for at most
 * --timeout.  -1 with why when the run ends first or nothing came; the
 * slot is then free again. */
static int wait_to_join(struct server *s, struct conn *c, char *why)
{
	double until = pipar_now() + s->cfg->timeout;

	s->joining++;
	SLOG(s, "device %d ('%s') waits to join at the end of epoch %d", c->k + 1, c->id,
	     s->epoch_done + 1);
	while (c->slot == SLOT_WAITING && !s->stopping && s->epoch_done < s->cfg->epochs &&
	       s->live > 0 && pipar_now() < until) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&s->cv, &s->mu, &ts);
	}
	if (c->slot == SLOT_JOINING)
		return 0;
	c->slot = SLOT_FREE;
	s->joining--;
	pthread_cond_broadcast(&s->cv);
	if (s->stopping || s->epoch_done >= s->cfg->epochs || s->live == 0)
		return pipar_errf(why, "the run ended before the device could join");
	return pipar_errf(why, "no epoch ended within %g s to join at", s->cfg->timeout);
}

int pipar_server_start_session(struct server *s, struct conn *c)
{
	if (pthread_create(&c->th, NULL, pipar_session_run, c) != 0)
		return -1;
	c->has_th = 1;
	s->sessions++;
	return 0;
}

/* Takes in one connection: closed at once when too many are in their
 * handshake (in all, or from its address), else handed to a handshake
 * thread.  Never blocks. */
static void take(struct server *s)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int fd = accept(s->cfg->listen_fd, (struct sockaddr *)&sa, &sl), same = 0;
	uint32_t addr = sl >= sizeof(sa) && sa.sin_family == AF_INET ? sa.sin_addr.s_addr : 0;
	struct pending *p;
	pthread_attr_t at;
	pthread_t th;

	if (fd < 0) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOMEM)
			nanosleep(&(struct timespec){0, 10000000}, NULL);
		return;
	}
	pthread_mutex_lock(&s->mu);
	for (p = s->pending; p; p = p->next)
		same += p->addr == addr;
	if (s->stop || s->handshaking >= PIPAR_SERVE_HANDSHAKES ||
	    same >= PIPAR_SERVE_HANDSHAKES_PER_ADDR || !(p = calloc(1, sizeof(*p)))) {
		int quiet = s->refused_busy++ % 100 != 0;

		pthread_mutex_unlock(&s->mu);
		close(fd);
		if (!quiet)
			SLOG(s, "refused a connection: %d handshake(s) in progress, %d from its address (%d refused so far)",
			     s->handshaking, same, s->refused_busy);
		return;
	}
	*p = (struct pending){s->pending, s, fd, NULL, addr};
	s->pending = p;
	s->handshaking++;
	pthread_mutex_unlock(&s->mu);
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 256 << 10);
	if (pthread_create(&th, &at, handshake_run, p) != 0) {
		pthread_mutex_lock(&s->mu);
		s->pending = p->next;   /* still first: nothing ran since */
		s->handshaking--;
		pthread_mutex_unlock(&s->mu);
		close(fd);
		free(p);
	}
	pthread_attr_destroy(&at);
}

/* The listening socket, served for the whole run: during admission and
 * after (a newcomer waits to join at an epoch's end, or is refused with
 * an ERROR, never left in the backlog). */
static void *acceptor(void *arg)
{
	struct server *s = arg;

	for (;;) {
		struct pollfd pfd = {s->cfg->listen_fd, POLLIN, 0};
		int pr = poll(&pfd, 1, 100), stop;

		pthread_mutex_lock(&s->mu);
		stop = s->stop;
		pthread_mutex_unlock(&s->mu);
		if (stop)
			return NULL;
		if (pr > 0)
			take(s);
	}
}

/* Waits until K devices are admitted, or --timeout passes without a new
 * one.  Returns how many came, -1 with err when none did. */
static int admission(struct server *s, char *err)
{
	const struct pipar_serve_cfg *cfg = s->cfg;
	int n;

	pthread_mutex_lock(&s->mu);
	for (;;) {
		int reserved = 0, owners = 0;

		/* A resumed run waits for the devices that trained in its
		 * last epoch; a new one for all. */
		for (int k = 0; k < s->K; k++) {
			reserved += s->c[k].slot == SLOT_RESERVED;
			owners += s->c[k].mom_down && s->c[k].slot != SLOT_ADMITTED;
		}
		if (s->admitted == s->K || s->stopping || (s->owners && !owners))
			break;
		/* Nobody waits forever: after --timeout without a new device
		 * the run starts with those that came, if any did. */
		double until = s->last_admit + cfg->timeout;

		if (!reserved && pipar_now() >= until)
			break;
		struct timespec ts;
		double t = until - pipar_now() + 0.05;

		clock_gettime(CLOCK_REALTIME, &ts);
		t = t < 0.05 ? 0.05 : t;
		ts.tv_sec += (time_t)t;
		ts.tv_nsec += (long)((t - (double)(time_t)t) * 1e9);
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&s->cv, &s->mu, &ts);
	}
	s->admitting = 0;
	n = s->admitted;
	pthread_mutex_unlock(&s->mu);
	if (s->stopping)
		return n;
	if (!n)
		return pipar_errf(err, "no device connected within %g s", cfg->timeout);
	if (n < s->K) {
		SLOG(s, "%d of %d device(s) connected within %g s; starting with them", n, s->K,
		     cfg->timeout);
		for (int k = 0; k < s->K; k++)
			if (s->c[k].slot != SLOT_ADMITTED && (s->c[k].mom_down || !s->c[k].fault[0]))
				snprintf(s->c[k].fault, sizeof(s->c[k].fault), "%s",
					 s->c[k].mom_down ? "did not come back when the run was resumed"
							  : "never connected");
	}
	/* A slot its device did not take back is open to any. */
	pthread_mutex_lock(&s->mu);
	for (int k = 0; k < s->K; k++)
		if (s->c[k].slot != SLOT_ADMITTED)
			s->c[k].mom_down = NULL;
	pthread_mutex_unlock(&s->mu);
	return n;
}

/* Stops the acceptor and ends every handshake still in progress. */
static void stop_accepting(struct server *s)
{
	pthread_mutex_lock(&s->mu);
	s->stop = 1;
	for (;;) {
		for (struct pending *p = s->pending; p; p = p->next)
			shutdown(p->fd, SHUT_RDWR);
		if (!s->handshaking)
			break;
		pthread_cond_wait(&s->cv, &s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	if (s->accepting)
		pthread_join(s->acceptor_th, NULL);
	s->accepting = 0;
}

int pipar_server_summary(struct server *s, int final, char *err)
{
	const struct pipar_serve_cfg *cfg = s->cfg;
	cJSON *ep = cJSON_Duplicate(s->epochs, 1);
	cJSON *sum = ep ? pipar_summary_doc(pipar_mode_name(cfg->plan->mode), s->K, cfg->plan->dev[0].P,
					    cfg->plan->dev[0].N, ep) : NULL;
	int r;

	if (!sum) {
		cJSON_Delete(ep);
		return pipar_errf(err, "out of memory writing the summary");
	}
	/* At the end, every device that did not finish; before, those
	 * that have failed so far. */
	for (int k = 0; k < s->K; k++)
		if (final ? !s->c[k].finished : (!s->c[k].alive && s->c[k].fault[0]))
			pipar_summary_add_failed(sum, k + 1, s->c[k].id, s->c[k].fault);
	r = pipar_summary_save(sum, cfg->summary, err);
	cJSON_Delete(sum);
	return r;
}

/* The global model to cfg->checkpoint, with the run's settings and the
 * normalisation of the first device that finished (of the first admitted
 * when the run was stopped). */
int pipar_server_checkpoint(struct server *s, char *err)
{
	struct pipar_ckpt_info info = {.epoch = s->epoch_done};
	char *settings = plan_message(s->cfg, -1, 1, 0);
	int r;

	if (!settings || pipar_server_run_state(s, &info) < 0) {
		free(settings);
		return pipar_errf(err, "out of memory writing the checkpoint");
	}
	const struct conn *from = NULL;

	for (int k = 0; k < s->K && !from; k++)
		if (s->c[k].finished)
			from = &s->c[k];
	for (int k = 0; k < s->K && !from; k++)
		if (s->c[k].slot == SLOT_ADMITTED || (s->c[k].id[0] && s->c[k].norm.channels))
			from = &s->c[k];
	if (from)
		info.norm = from->norm;
	info.training = settings;
	r = pipar_checkpoint_save(s->cfg->checkpoint, s->whole, &info, 0, err);
	free(settings);
	free(info.run);
	free(info.arrays);
	return r;
}

/* The signal watch, on its own thread while the run goes on: the first
 * SIGINT or SIGTERM (pipar_runtime_signals) stops the run at the next
 * frame each session reads; a session that hears nothing for 2 s more is
 * cut off. */
static void *signals(void *arg)
{
	struct server *s = arg;

	for (;;) {
		int sig, done;

		nanosleep(&(struct timespec){0, 100000000}, NULL);
		sig = pipar_runtime_signalled();
		pthread_mutex_lock(&s->mu);
		done = s->sig_done;
		if (sig > 0 && !s->stopping) {
			__atomic_store_n(&s->stopping, sig, __ATOMIC_RELEASE);
			SLOG(s, "%s: stopping; the finished epochs are kept (a second signal ends it at once)",
			     sig == SIGINT ? "SIGINT" : "SIGTERM");
			s->stop_at = pipar_now();
			s->admitting = 0;
			pthread_cond_broadcast(&s->cv);
		}
		/* Sessions blocked on a silent device are cut off. */
		if (s->stopping && !s->cut && pipar_now() - s->stop_at > 2) {
			s->cut = 1;
			for (int k = 0; k < s->K; k++)
				if (s->c[k].alive && s->c[k].ch)
					pipar_chan_shutdown(s->c[k].ch);
		}
		pthread_mutex_unlock(&s->mu);
		if (done)
			return NULL;
	}
}

static void release(struct server *s)
{
	for (int k = 0; s->c && k < s->K; k++) {
		pipar_chan_free(s->c[k].ch);
		pipar_exec_free(s->c[k].exec);
		if (s->c[k].replica != s->shared)
			pipar_model_free(s->c[k].replica);
		free(s->c[k].up);
		free(s->c[k].mom_up);
	}
	free(s->snap_mom);
	free(s->snap_alive);
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
	int r = -1, finished = 0, sig_started = 0;

	/* In turns one device part goes from device to device. */
	for (int k = 1; k < pl->K && s.ops->turns; k++)
		if (pl->dev[k].P != pl->dev[0].P)
			return pipar_errf(err, "%s needs one split point for all devices",
					  pipar_mode_name(pl->mode));
	pthread_mutex_init(&s.compute, NULL);
	pthread_mutex_init(&s.mu, NULL);
	pthread_cond_init(&s.cv, NULL);
	if (cfg->signals)
		sig_started = pthread_create(&s.sig_th, NULL, signals, &s) == 0;
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
	if (setup(&s, err) < 0 || (cfg->resume && pipar_server_resume(&s, err) < 0))
		goto out;
	if (cfg->resume)
		SLOG(&s, "resuming after epoch %d of %d", s.epoch_done, cfg->epochs);
	SLOG(&s, "connections: %s", cfg->tls ? "TLS 1.3, every peer authenticated"
					     : "plain TCP, neither authenticated nor encrypted");
	/* Open before the first connection is taken. */
	if (s.owners)
		SLOG(&s, "waiting for the %d device(s) that trained in epoch %d", s.owners, s.epoch_done);
	else
		SLOG(&s, "waiting for %d device(s)", s.K);
	s.admitting = 1;
	s.last_admit = pipar_now();
	if (pthread_create(&s.acceptor_th, NULL, acceptor, &s) != 0) {
		pipar_errf(err, "cannot start a thread");
		goto out;
	}
	s.accepting = 1;
	if ((s.live = admission(&s, err)) < 0)
		goto out;
	if (s.stopping) {
		pipar_errf(err, "stopped by %s before training", s.stopping == SIGINT ? "SIGINT" : "SIGTERM");
		goto out;
	}
	s.turn = pipar_server_next_alive(&s, -1);
	s.t_epoch = pipar_now();
	pthread_mutex_lock(&s.mu);
	s.running = 1;
	for (int k = 0; k < s.K; k++) {
		s.c[k].first_epoch = s.first_epoch;
		if (s.c[k].alive && pipar_server_start_session(&s, &s.c[k]) < 0) {
			pthread_mutex_unlock(&s.mu);
			pipar_server_conn_lost(&s.c[k], "cannot start a thread");
			pthread_mutex_lock(&s.mu);
		}
	}
	/* Until every session, and every device joining, is done. */
	while (s.sessions > 0 || s.joining > 0)
		pthread_cond_wait(&s.cv, &s.mu);
	s.running = 0;
	pthread_mutex_unlock(&s.mu);
	for (int k = 0; k < s.K; k++)
		if (s.c[k].has_th)
			pthread_join(s.c[k].th, NULL);
	for (int k = 0; k < s.K; k++)
		finished += s.c[k].finished;
	if (pipar_trace_write(s.trace, cfg->trace, err) < 0)
		goto out;
	if (!finished && !s.stopping) {
		pipar_errf(err, "no device finished training");
		goto out;
	}
	/* Stopped: the global model of the epochs that finished, and what
	 * was done, are written as at the end. */
	if ((cfg->checkpoint && pipar_server_checkpoint(&s, err) < 0) ||
	    (cfg->summary && pipar_server_summary(&s, 1, err) < 0))
		goto out;
	if (s.stopping) {
		pipar_errf(err, "stopped by %s after %d of %d epoch(s)%s",
			   s.stopping == SIGINT ? "SIGINT" : "SIGTERM", s.epoch_done, cfg->epochs,
			   cfg->checkpoint || cfg->summary ? "; the checkpoint and summary hold them" : "");
		goto out;
	}
	r = 0;
out:
	if (sig_started) {
		pthread_mutex_lock(&s.mu);
		s.sig_done = 1;
		pthread_mutex_unlock(&s.mu);
		pthread_join(s.sig_th, NULL);
	}
	stop_accepting(&s);
	release(&s);
	return r;
}
