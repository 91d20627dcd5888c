/*
 * The planner: exact simulation of one iteration per mode, and the search
 * over split points and parallel batches.
 */
#define _POSIX_C_SOURCE 200809L
#include "plan.h"

#include <cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json.h"
#include "link.h"
#include "model.h"
#include "util.h"
#include "wire.h"
#include "proto.h"

static const struct pipar_mode_ops modes[] = {
	[PIPAR_MODE_PIPAR] = {"pipar", 1, 1, 0, 1},
	[PIPAR_MODE_SFL] = {"sfl", 1, 0, 0, 1},
	[PIPAR_MODE_SL] = {"sl", 1, 0, 1, 0},
	[PIPAR_MODE_FL] = {"fl", 0, 0, 0, 1},
};

const struct pipar_mode_ops *pipar_mode_ops(enum pipar_mode m)
{
	PIPAR_ASSERT((unsigned)m < sizeof(modes) / sizeof(modes[0]));
	return &modes[m];
}

const char *pipar_mode_name(enum pipar_mode m)
{
	return pipar_mode_ops(m)->name;
}

int pipar_mode_parse(const char *s, enum pipar_mode *m)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(s, modes[i].name) == 0) {
			*m = (enum pipar_mode)i;
			return 0;
		}
	return -1;
}

int pipar_plan_check(const struct pipar_plan_env *env, const char *const *dev_names,
		     const char *srv_name, char *err)
{
	const struct pipar_profile *s = env->srv;

	if (strcmp(s->role, "server") != 0)
		return pipar_errf(err, "'%s': field 'role' is \"%s\", a server profile is needed (pipar-profile --role server)",
				  srv_name, s->role);
	for (int k = 0; k < env->K; k++) {
		const struct pipar_profile *d = env->dev[k];
		const char *n = dev_names[k];

		if (strcmp(d->role, "device") != 0)
			return pipar_errf(err, "'%s': field 'role' is \"%s\", a device profile is needed",
					  n, d->role);
		if (strcmp(d->spec, s->spec) != 0)
			return pipar_errf(err, "'%s': field 'model' differs from the server profile '%s' (different models)",
					  n, srv_name);
		if (d->nunits != s->nunits)
			return pipar_errf(err, "'%s': field 'units' has %d units, '%s' has %d",
					  n, d->nunits, srv_name, s->nunits);
		if (!pipar_shape_eq(d->in, s->in) || d->classes != s->classes)
			return pipar_errf(err, "'%s': fields 'input'/'classes' differ from '%s'",
					  n, srv_name);
		if (d->sizes[d->nsizes - 1] < env->batch / 2)
			return pipar_errf(err, "'%s': field 'sizes' stops at %d, far below the batch %d",
					  n, d->sizes[d->nsizes - 1], env->batch);
	}
	if (s->nunits < 2)
		return pipar_errf(err, "'%s': field 'units': a model of one unit cannot be split",
				  srv_name);
	return 0;
}

/* Micro-batch i of N for a batch of B: near-equal, the first B % N one
 * larger. */
static int micro(int B, int N, int i)
{
	return B / N + (i < B % N);
}

/* Seconds a frame of n bytes (payload) takes on a link of bps bits per
 * second, its header and the segments' headers included, as the link
 * carries it (link.h). */
static double carry(double n, double bps)
{
	return pipar_link_wire_bytes(PIPAR_WIRE_HEADER + n) * 8 / bps;
}

/* A device part of pb bytes up (PARAMS_UP) and down (PARAMS_DOWN). */
static double exchange(const struct pipar_plan_env *env, double pb)
{
	return carry(PIPAR_UP_HEAD + pb, env->up_bps) + carry(pb, env->down_bps) + 2 * env->latency;
}

static double param_bytes(const struct pipar_profile *p, int u0, int u1)
{
	double b = 0;

	for (int u = u0; u < u1; u++)
		b += p->units[u].param_bytes;
	return b;
}

static double steps(const struct pipar_profile *p, int u0, int u1)
{
	double t = 0;

	for (int u = u0; u < u1; u++)
		t += p->units[u].step;
	return t;
}

/* Device memory for units 1..P with N micro-batches in flight: each keeps
 * its own workspace; parameters, gradients and momentum once. */
static double memory(const struct pipar_profile *p, int P, int N, int B)
{
	double m = 0;

	for (int u = 0; u < P; u++) {
		const struct pipar_unit_profile *up = &p->units[u];
		double params = 3 * up->param_bytes;
		double fixed = up->mem_fixed > params ? up->mem_fixed - params : 0;

		m += N * fixed + params + up->mem_per_sample * B;
	}
	return m;
}

struct stage_times {
	double f, b, up, down, s;
};

/* Stage times for every device, split point and micro-batch size, so that
 * a simulation looks them up instead of summing units each time. */
struct pipar_plan_tables {
	int B, L, K;
	double *f, *b;                          /* [k][P][n] */
	double *s;                              /* [P][n]: server forward + backward */
};

static size_t tix(const struct pipar_plan_tables *t, int k, int P, int n)
{
	return ((size_t)k * (size_t)(t->L + 1) + (size_t)P) * (size_t)(t->B + 1) + (size_t)n;
}

static struct pipar_plan_tables *tables_new(const struct pipar_plan_env *env)
{
	struct pipar_plan_tables *t = calloc(1, sizeof(*t));
	int L = env->srv->nunits, B = env->batch, K = env->K;
	size_t cells = (size_t)K * (size_t)(L + 1) * (size_t)(B + 1);

	if (!t)
		return NULL;
	t->B = B;
	t->L = L;
	t->K = K;
	t->f = malloc(sizeof(double) * cells);
	t->b = malloc(sizeof(double) * cells);
	t->s = malloc(sizeof(double) * (size_t)(L + 1) * (size_t)(B + 1));
	if (!t->f || !t->b || !t->s) {
		free(t->f);
		free(t->b);
		free(t->s);
		free(t);
		return NULL;
	}
	for (int k = 0; k < K; k++) {
		/* Devices sharing a profile share the numbers. */
		int same = -1;

		for (int j = 0; j < k && same < 0; j++)
			if (env->dev[j] == env->dev[k])
				same = j;
		for (int P = 0; P <= L; P++)
			for (int n = 0; n <= B; n++) {
				if (same >= 0) {
					t->f[tix(t, k, P, n)] = t->f[tix(t, same, P, n)];
					t->b[tix(t, k, P, n)] = t->b[tix(t, same, P, n)];
					continue;
				}
				t->f[tix(t, k, P, n)] = pipar_profile_device_time(env->dev[k], P, n, 0);
				t->b[tix(t, k, P, n)] = pipar_profile_device_time(env->dev[k], P, n, 1);
			}
	}
	for (int P = 0; P <= L; P++)
		for (int n = 0; n <= B; n++)
			t->s[(size_t)P * (size_t)(B + 1) + (size_t)n] =
				pipar_profile_server_time(env->srv, P, n);
	return t;
}

static void tables_free(struct pipar_plan_tables *t)
{
	if (!t)
		return;
	free(t->f);
	free(t->b);
	free(t->s);
	free(t);
}

int pipar_plan_tables_build(struct pipar_plan_env *env)
{
	env->tables = tables_new(env);
	return env->tables ? 0 : -1;
}

void pipar_plan_tables_free(struct pipar_plan_env *env)
{
	tables_free(env->tables);
	env->tables = NULL;
}

static struct stage_times stages(const struct pipar_plan_env *env, int k, int P, int n)
{
	const struct pipar_profile *d = env->dev[k], *s = env->srv;
	const struct pipar_plan_tables *tab = env->tables;
	double act = n * d->units[P - 1].out_bytes;
	struct stage_times t;

	if (tab && n <= tab->B) {
		t.f = tab->f[tix(tab, k, P, n)];
		t.b = tab->b[tix(tab, k, P, n)];
		t.s = tab->s[(size_t)P * (size_t)(tab->B + 1) + (size_t)n];
	} else {
		t.f = pipar_profile_device_time(d, P, n, 0);
		t.b = pipar_profile_device_time(d, P, n, 1);
		t.s = pipar_profile_server_time(s, P, n);
	}
	/* Activations and the labels up, activation gradients down, each a
	 * tensor message. */
	t.up = carry(PIPAR_TENSOR_HEAD + act + 4.0 * n, env->up_bps);
	t.down = carry(PIPAR_TENSOR_HEAD + act, env->down_bps);
	return t;
}

#define MAXN 4096

/* One iteration of pipar or sfl: device k starts it at t0[k], the
 * server is free from *server on and takes the ready job that arrived
 * first.  Writes the time device k can start its next iteration to
 * next[k] (its own step done) and the time its iteration is done on both
 * sides to done[k] (its replica's step too), and leaves *server at the end
 * of the server's last job.  Adds each resource's busy time to o when
 * busy is set.  uend and send hold Sum N_k doubles each. */
static void parallel_pass(const struct pipar_plan_env *env, const struct pipar_choice *ch,
			  const double *t0, double *server, double *next_start, double *done,
			  double *const *uend, double *const *send, int busy, struct pipar_sim *o)
{
	int K = env->K, B = env->batch, L = env->srv->nunits;
	int next[PIPAR_PLAN_MAXDEV], step_pending[PIPAR_PLAN_MAXDEV];
	double fend[PIPAR_PLAN_MAXDEV], step_ready[PIPAR_PLAN_MAXDEV];

	for (int k = 0; k < K; k++) {
		int P = ch[k].P, N = ch[k].N;
		double f = t0[k], u = t0[k];

		for (int i = 0; i < N; i++) {
			struct stage_times t = stages(env, k, P, micro(B, N, i));

			f += t.f;
			u = (u > f ? u : f) + t.up;
			uend[k][i] = u + env->latency;  /* at the server */
			if (busy) {
				o->dev_busy[k] += t.f + t.b;
				o->up_busy[k] += t.up;
				o->down_busy[k] += t.down;
			}
		}
		fend[k] = f;
		next[k] = 0;
		step_pending[k] = 0;
		done[k] = t0[k];
	}
	for (;;) {
		int best = -1, best_step = 0;
		double ready = INFINITY;

		for (int k = 0; k < K; k++) {
			if (next[k] < ch[k].N && uend[k][next[k]] < ready) {
				ready = uend[k][next[k]];
				best = k;
				best_step = 0;
			}
		}
		for (int k = 0; k < K; k++)
			if (step_pending[k] && step_ready[k] < ready) {
				ready = step_ready[k];
				best = k;
				best_step = 1;
			}
		if (best < 0)
			break;
		double start = *server > ready ? *server : ready, dur;

		if (best_step) {
			dur = steps(env->srv, ch[best].P, L);
			step_pending[best] = 0;
			done[best] = start + dur;
		} else {
			int i = next[best]++;

			dur = stages(env, best, ch[best].P, micro(B, ch[best].N, i)).s;
			send[best][i] = start + dur;
			if (next[best] == ch[best].N) {
				step_pending[best] = 1;
				step_ready[best] = start + dur;
			}
		}
		*server = start + dur;
		if (busy)
			o->srv_busy += dur;
	}
	for (int k = 0; k < K; k++) {
		int P = ch[k].P, N = ch[k].N;
		double w = 0, b = fend[k];

		for (int i = 0; i < N; i++) {
			struct stage_times t = stages(env, k, P, micro(B, N, i));

			w = (w > send[k][i] ? w : send[k][i]) + t.down;
			/* The gradients reach the device the delay after its
			 * downlink carried them; the link is free again at w. */
			b = (b > w + env->latency ? b : w + env->latency) + t.b;
		}
		b += steps(env->dev[k], 0, P);
		if (busy)
			o->dev_busy[k] += steps(env->dev[k], 0, P);
		next_start[k] = b;
		if (b > done[k])
			done[k] = b;
	}
}

/* pipar and sfl: all devices start the first iteration together; each
 * starts its next one when it has stepped, so after the first the
 * devices keep the stagger the server's queue gave them and stop
 * queueing where the server has room.  The second iteration, simulated
 * from those starts, gives each device's period, and the epoch is
 * extrapolated from it. */
static void sim_parallel(const struct pipar_plan_env *env, const struct pipar_choice *ch,
			 long iterations, struct pipar_sim *o)
{
	int K = env->K;
	double *uend[PIPAR_PLAN_MAXDEV], *send[PIPAR_PLAN_MAXDEV], *scratch;
	double t0[PIPAR_PLAN_MAXDEV], start2[PIPAR_PLAN_MAXDEV], done1[PIPAR_PLAN_MAXDEV];
	double start3[PIPAR_PLAN_MAXDEV], done2[PIPAR_PLAN_MAXDEV];
	double server = 0, span = 0;
	size_t total = 0;

	for (int k = 0; k < K; k++)
		total += (size_t)ch[k].N;
	scratch = malloc(sizeof(double) * 2 * (total ? total : 1));
	if (!scratch) {
		/* Out of memory: a choice never taken. */
		o->first = o->iteration = o->aggregation = INFINITY;
		return;
	}
	for (int k = 0, off = 0; k < K; off += ch[k].N, k++) {
		uend[k] = scratch + off;
		send[k] = scratch + total + off;
		t0[k] = 0;
		o->dev_busy[k] = o->up_busy[k] = o->down_busy[k] = 0;
		o->dev_memory[k] = memory(env->dev[k], ch[k].P, ch[k].N, env->batch);
	}
	o->srv_busy = 0;
	parallel_pass(env, ch, t0, &server, start2, done1, uend, send, 1, o);
	o->first = 0;
	for (int k = 0; k < K; k++)
		o->first = done1[k] > o->first ? done1[k] : o->first;
	span = o->first;
	if (iterations > 1) {
		parallel_pass(env, ch, start2, &server, start3, done2, uend, send, 0, o);
		span = 0;
		for (int k = 0; k < K; k++) {
			double e = done1[k] + (double)(iterations - 1) * (done2[k] - done1[k]);

			span = e > span ? e : span;
		}
	}
	free(scratch);
	o->iteration = span / (double)(iterations > 1 ? iterations : 1);
	o->aggregation = 0;
	for (int k = 0; k < K; k++) {
		double pb = param_bytes(env->dev[k], 0, ch[k].P);
		double a = exchange(env, pb);

		if (a > o->aggregation)
			o->aggregation = a;
	}
}

/* sl: one device after another, each a plain chain of its five stages. */
static void sim_sequential(const struct pipar_plan_env *env, const struct pipar_choice *ch,
			   struct pipar_sim *o)
{
	int B = env->batch, L = env->srv->nunits;

	o->iteration = o->srv_busy = o->aggregation = 0;
	for (int k = 0; k < env->K; k++) {
		int P = ch[k].P;
		struct stage_times t = stages(env, k, P, B);
		double ds = steps(env->dev[k], 0, P), ss = steps(env->srv, P, L);
		double pb = param_bytes(env->dev[k], 0, P);

		o->iteration += t.f + t.up + t.s + t.down + t.b + ds + ss + 2 * env->latency;
		o->dev_busy[k] = t.f + t.b + ds;
		o->up_busy[k] = t.up;
		o->down_busy[k] = t.down;
		o->srv_busy += t.s + ss;
		o->dev_memory[k] = memory(env->dev[k], P, 1, B);
		/* The device part moves on to the next device once an epoch. */
		o->aggregation += exchange(env, pb);
	}
}

/* fl: the whole model on every device; whole models move at aggregation. */
static void sim_federated(const struct pipar_plan_env *env, struct pipar_sim *o)
{
	int B = env->batch, L = env->srv->nunits;

	o->iteration = o->srv_busy = o->aggregation = 0;
	for (int k = 0; k < env->K; k++) {
		const struct pipar_profile *d = env->dev[k];
		double t = pipar_profile_device_time(d, L, B, 0) + pipar_profile_device_time(d, L, B, 1) +
			   steps(d, 0, L);
		double pb = param_bytes(d, 0, L);
		double a = exchange(env, pb);

		o->dev_busy[k] = t;
		o->up_busy[k] = o->down_busy[k] = 0;
		o->dev_memory[k] = memory(d, L, 1, B);
		if (t > o->iteration)
			o->iteration = t;
		if (a > o->aggregation)
			o->aggregation = a;
	}
}

void pipar_plan_simulate(const struct pipar_plan_env *env, enum pipar_mode mode,
			 const struct pipar_choice *ch, struct pipar_sim *out)
{
	PIPAR_ASSERT(env->K >= 1 && env->K <= PIPAR_PLAN_MAXDEV);
	out->iterations = (env->samples + env->batch - 1) / env->batch;
	if (out->iterations < 1)
		out->iterations = 1;
	switch (mode) {
	case PIPAR_MODE_PIPAR:
	case PIPAR_MODE_SFL:
		sim_parallel(env, ch, out->iterations, out);
		break;
	case PIPAR_MODE_SL:
		sim_sequential(env, ch, out);
		out->first = out->iteration;
		break;
	case PIPAR_MODE_FL:
		sim_federated(env, out);
		out->first = out->iteration;
		break;
	}
	out->epoch = out->iterations * out->iteration + out->aggregation;
	out->feasible = 1;
	for (int k = 0; env->memory > 0 && k < env->K; k++)
		if (out->dev_memory[k] > env->memory)
			out->feasible = 0;
}

/* Keeps top[] sorted by epoch time, at most ntop entries. */
static void top_insert(struct pipar_candidate *top, int *n, int ntop,
		       struct pipar_candidate c)
{
	int i;

	if (ntop <= 0 || (*n == ntop && c.epoch >= top[ntop - 1].epoch))
		return;
	i = *n < ntop ? (*n)++ : ntop - 1;
	while (i > 0 && top[i - 1].epoch > c.epoch) {
		top[i] = top[i - 1];
		i--;
	}
	top[i] = c;
}

static int same_profiles(const struct pipar_plan_env *env)
{
	for (int k = 1; k < env->K; k++)
		if (env->dev[k] != env->dev[0])
			return 0;
	return 1;
}

static int search(const struct pipar_plan_env *env, enum pipar_mode mode,
		  struct pipar_choice *best, struct pipar_sim *sim,
		  struct pipar_candidate *top, int ntop);

int pipar_plan_search(const struct pipar_plan_env *env, enum pipar_mode mode,
		      struct pipar_choice *best, struct pipar_sim *sim,
		      struct pipar_candidate *top, int ntop)
{
	struct pipar_plan_env e = *env;
	int r;

	if (!e.tables)
		e.tables = tables_new(env);     /* NULL: slower, same numbers */
	r = search(&e, mode, best, sim, top, ntop);
	if (!env->tables)
		tables_free(e.tables);
	return r;
}

int pipar_plan_max_n(const struct pipar_plan_env *env, enum pipar_mode mode)
{
	int n = env->batch < MAXN ? env->batch : MAXN;

	if (mode != PIPAR_MODE_PIPAR)
		return 1;
	/* The smallest micro-batch of N is B / N (rounded down). */
	if (env->min_micro > 1)
		n = env->batch / env->min_micro;
	return n < 1 ? 1 : n > MAXN ? MAXN : n;
}

int pipar_plan_fixed_check(const struct pipar_plan_env *env, enum pipar_mode mode,
			   char *err)
{
	int L = env->srv->nunits, maxN = pipar_plan_max_n(env, mode);

	for (int k = 0; env->fixed && k < env->K; k++) {
		const struct pipar_choice *c = &env->fixed[k];

		if (mode == PIPAR_MODE_FL && c->P && c->P != L)
			return pipar_errf(err, "--split %d for device %d: fl trains the whole model "
					  "(%d units) on the device", c->P, k + 1, L);
		if (mode != PIPAR_MODE_FL && c->P && (c->P < 1 || c->P >= L))
			return pipar_errf(err, "--split %d for device %d: expected a split point in "
					  "[1, %d] (the model has %d units)", c->P, k + 1, L - 1, L);
		if (c->N && c->N > maxN) {
			if (mode != PIPAR_MODE_PIPAR)
				return pipar_errf(err, "--parallel %d for device %d: %s runs one "
						  "batch at a time (N 1)", c->N, k + 1,
						  pipar_mode_name(mode));
			return pipar_errf(err, "--parallel %d for device %d: expected N in [1, %d] "
					  "(batch %d, micro-batches of at least %d)", c->N, k + 1,
					  maxN, env->batch, env->min_micro > 1 ? env->min_micro : 1);
		}
	}
	return 0;
}

/* Device k's choice: c, with what env->fixed gives in place. */
static struct pipar_choice fixed(const struct pipar_plan_env *env, int k, struct pipar_choice c)
{
	if (env->fixed && env->fixed[k].P)
		c.P = env->fixed[k].P;
	if (env->fixed && env->fixed[k].N)
		c.N = env->fixed[k].N;
	return c;
}

static int search(const struct pipar_plan_env *env, enum pipar_mode mode,
		  struct pipar_choice *best, struct pipar_sim *sim,
		  struct pipar_candidate *top, int ntop)
{
	int L = env->srv->nunits, K = env->K, ntopn = 0;
	int maxN = pipar_plan_max_n(env, mode), P0 = 1, P1 = L - 1, N1 = maxN;
	const struct pipar_choice *fx = env->fixed;
	int allP = fx != NULL, allN = fx != NULL;

	/* A dimension every device fixes is not searched. */
	for (int k = 0; fx && k < K; k++) {
		allP &= fx[k].P > 0;
		allN &= fx[k].N > 0;
	}
	if (allP)
		P0 = P1 = 1;
	if (allN)
		N1 = 1;
	struct pipar_choice ch[PIPAR_PLAN_MAXDEV];
	struct pipar_sim s;
	/* A longer internal list seeds the per-device refinement. */
	struct pipar_candidate pool[32];
	int npool = 0, found = 0;
	double best_epoch = INFINITY;

	if (mode == PIPAR_MODE_FL) {
		for (int k = 0; k < K; k++)
			best[k] = (struct pipar_choice){L, 1};
		pipar_plan_simulate(env, mode, best, sim);
		if (!sim->feasible)
			return -1;
		if (ntop > 0)
			top[0] = (struct pipar_candidate){best[0], sim->iteration, sim->epoch};
		return ntop > 0 ? 1 : 0;
	}
	for (int P = P0; P <= P1; P++)
		for (int N = 1; N <= N1; N++) {
			struct pipar_candidate c;

			for (int k = 0; k < K; k++)
				ch[k] = fixed(env, k, (struct pipar_choice){P, N});
			pipar_plan_simulate(env, mode, ch, &s);
			if (!s.feasible)
				continue;
			c = (struct pipar_candidate){ch[0], s.iteration, s.epoch};
			top_insert(top, &ntopn, ntop, c);
			top_insert(pool, &npool, 32, c);
			if (s.epoch < best_epoch) {
				best_epoch = s.epoch;
				for (int k = 0; k < K; k++)
					best[k] = ch[k];
				*sim = s;
				found = 1;
			}
		}
	if (!found)
		return -1;
	/* Devices that differ: each in turn takes the candidate that makes
	 * the whole iteration fastest, the others held, until nothing
	 * improves (a few rounds at most). */
	if (!same_profiles(env)) {
		for (int round = 0; round < 4; round++) {
			int improved = 0;

			for (int k = 0; k < K; k++) {
				struct pipar_choice keep = best[k];

				for (int k2 = 0; k2 < K; k2++)
					ch[k2] = best[k2];
				for (int c = 0; c < npool; c++) {
					ch[k] = fixed(env, k, pool[c].choice);
					if (ch[k].P == keep.P && ch[k].N == keep.N)
						continue;
					pipar_plan_simulate(env, mode, ch, &s);
					if (s.feasible && s.epoch < best_epoch * (1 - 1e-9)) {
						best_epoch = s.epoch;
						best[k] = ch[k];
						*sim = s;
						improved = 1;
					}
				}
				ch[k] = best[k];
			}
			if (!improved)
				break;
		}
	}
	return ntopn;
}

/* The longest path through one device's graph, recursively over stages
 * with memo: the shape of the reference's estimate. */
struct ref {
	int N;
	double lat;                     /* one-way delay between the parties */
	double f[MAXN], u[MAXN], s[MAXN], w[MAXN], b[MAXN];
	double memo[5][MAXN];
};

static double ref_end(struct ref *r, int stage, int i)
{
	double t = 0, v;

	if (i < 0)
		return 0;
	if (r->memo[stage][i] >= 0)
		return r->memo[stage][i];
	switch (stage) {
	case 0:
		t = ref_end(r, 0, i - 1) + r->f[i];
		break;
	case 1:
		t = fmax(ref_end(r, 0, i), ref_end(r, 1, i - 1)) + r->u[i];
		break;
	case 2:
		t = fmax(ref_end(r, 1, i) + r->lat, ref_end(r, 2, i - 1)) + r->s[i];
		break;
	case 3:
		t = fmax(ref_end(r, 2, i), ref_end(r, 3, i - 1)) + r->w[i];
		break;
	default:
		v = fmax(ref_end(r, 3, i) + r->lat, ref_end(r, 4, i - 1));
		t = fmax(v, ref_end(r, 0, r->N - 1)) + r->b[i];
		break;
	}
	r->memo[stage][i] = t;
	return t;
}

double pipar_plan_reference(const struct pipar_plan_env *env, int k,
			    struct pipar_choice ch)
{
	struct ref *r = malloc(sizeof(*r));
	int L = env->srv->nunits;
	double t;

	if (!r)
		return NAN;

	r->N = ch.N;
	r->lat = env->latency;
	for (int i = 0; i < ch.N; i++) {
		struct stage_times st = stages(env, k, ch.P, micro(env->batch, ch.N, i));

		r->f[i] = st.f;
		r->u[i] = st.up;
		r->s[i] = st.s;
		r->w[i] = st.down;
		r->b[i] = st.b;
		for (int j = 0; j < 5; j++)
			r->memo[j][i] = -1;
	}
	/* Each micro-batch's server work ends before the replica's step. */
	t = fmax(ref_end(r, 4, ch.N - 1) + steps(env->dev[k], 0, ch.P),
		 ref_end(r, 2, ch.N - 1) + steps(env->srv, ch.P, L));
	free(r);
	return t;
}

/* ---------------------------------------------------------------- plan files */

void pipar_plan_file_free(struct pipar_plan_file *p)
{
	if (!p)
		return;
	for (int k = 0; k < PIPAR_PLAN_MAXDEV; k++)
		free(p->micro[k]);
	free(p->spec);
	free(p);
}

int pipar_plan_micro_size(int b, int N, int i)
{
	return micro(b, N, i);
}

int pipar_plan_max_micro(const struct pipar_plan_file *p, int k)
{
	int m = 1;

	for (int i = 0; i < p->dev[k].N; i++)
		if (p->micro[k][i] > m)
			m = p->micro[k][i];
	return m;
}

cJSON *pipar_plan_file_json(const struct pipar_plan_file *p)
{
	cJSON *root = cJSON_CreateObject(), *o, *arr;
	int ok = root != NULL;

	ok = ok && cJSON_AddStringToObject(root, "format", "pipar-plan/1");
	ok = ok && cJSON_AddStringToObject(root, "mode", pipar_mode_name(p->mode));
	ok = ok && cJSON_AddStringToObject(root, "model_name", p->model_name);
	ok = ok && (o = cJSON_Parse(p->spec)) && cJSON_AddItemToObject(root, "model", o);
	ok = ok && (o = cJSON_AddArrayToObject(root, "input"));
	ok = ok && cJSON_AddItemToArray(o, cJSON_CreateNumber(p->in.c)) &&
	     cJSON_AddItemToArray(o, cJSON_CreateNumber(p->in.h)) &&
	     cJSON_AddItemToArray(o, cJSON_CreateNumber(p->in.w));
	ok = ok && cJSON_AddNumberToObject(root, "classes", p->classes);
	ok = ok && cJSON_AddNumberToObject(root, "units", p->units);
	ok = ok && cJSON_AddNumberToObject(root, "devices", p->K);
	ok = ok && cJSON_AddNumberToObject(root, "batch", p->batch);
	ok = ok && cJSON_AddNumberToObject(root, "samples_per_device", (double)p->samples);
	ok = ok && pipar_json_add_fixed(root, "uplink_bps", p->up_bps, 0);
	ok = ok && pipar_json_add_fixed(root, "downlink_bps", p->down_bps, 0);
	/* Written only when there is one: plans of before read the same. */
	ok = ok && (p->latency <= 0 || pipar_json_add_fixed(root, "latency_seconds", p->latency, 6));
	ok = ok && cJSON_AddNumberToObject(root, "split_point", p->dev[0].P);
	ok = ok && cJSON_AddNumberToObject(root, "parallel_batches", p->dev[0].N);
	ok = ok && (arr = cJSON_AddArrayToObject(root, "per_device"));
	for (int k = 0; ok && k < p->K; k++) {
		cJSON *d = cJSON_CreateObject(), *mb;

		ok = d && cJSON_AddItemToArray(arr, d);
		ok = ok && cJSON_AddNumberToObject(d, "device", k + 1);
		ok = ok && cJSON_AddNumberToObject(d, "split_point", p->dev[k].P);
		ok = ok && cJSON_AddNumberToObject(d, "parallel_batches", p->dev[k].N);
		ok = ok && (mb = cJSON_AddArrayToObject(d, "micro_batches"));
		for (int i = 0; ok && i < p->dev[k].N; i++)
			ok = cJSON_AddItemToArray(mb, cJSON_CreateNumber(p->micro[k][i]));
	}
	ok = ok && (o = cJSON_AddObjectToObject(root, "predicted"));
	ok = ok && pipar_json_add_fixed(o, "iteration_seconds", p->iteration, 6);
	ok = ok && pipar_json_add_fixed(o, "epoch_seconds", p->epoch, 6);
	if (!ok) {
		cJSON_Delete(root);
		return NULL;
	}
	return root;
}

/* The number (or integer) under key, through json.h, for the file name. */
static int plan_num(const cJSON *o, const char *key, const char *path, double lo,
		    double hi, double *out, const char *name, char *err)
{
	const struct pipar_json_ctx c = {name, err, NULL};

	return pipar_json_num(o, key, path, lo, hi, out, &c);
}

static int plan_int(const cJSON *o, const char *key, const char *path, long lo,
		    long hi, long *out, const char *name, char *err)
{
	const struct pipar_json_ctx c = {name, err, NULL};

	return pipar_json_int(o, key, path, lo, hi, out, &c);
}

int pipar_plan_parse(const char *text, const char *name,
		     struct pipar_plan_file **out, char *err)
{
	cJSON *root = pipar_json_parse(text, name, NULL, "pipar-plan/1", 0, err);
	int r;

	*out = NULL;
	if (!root)
		return -1;
	r = pipar_plan_from_json(root, name, out, err);
	cJSON_Delete(root);
	return r;
}

/* The model of plan p: name, spec, input, classes and units, checked
 * against what the spec builds (its first unit only: the spec is walked
 * whole, the parameters of one unit made). */
static int plan_model(const cJSON *root, const char *name, struct pipar_plan_file *p, char *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "model_name");
	struct pipar_model *m = NULL;
	char lerr[PIPAR_ERRLEN];
	long d[3] = {0, 0, 0}, x;

	if (!cJSON_IsString(v) || strlen(v->valuestring) >= sizeof(p->model_name))
		return pipar_errf(err, "'%s': field 'model_name': missing or too long", name);
	strcpy(p->model_name, v->valuestring);
	v = cJSON_GetObjectItemCaseSensitive(root, "model");
	if (!cJSON_IsObject(v) || !(p->spec = cJSON_PrintUnformatted(v)))
		return pipar_errf(err, "'%s': field 'model': missing or not an object", name);
	v = cJSON_GetObjectItemCaseSensitive(root, "input");
	if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 3)
		return pipar_errf(err, "'%s': field 'input': not [C, H, W]", name);
	for (int i = 0; i < 3; i++) {
		cJSON *wrap = cJSON_CreateObject();
		char path[32];
		int r;

		snprintf(path, sizeof(path), "input[%d]", i);
		cJSON_AddItemReferenceToObject(wrap, "v", cJSON_GetArrayItem(v, i));
		r = plan_int(wrap, "v", path, 1, 65536, &d[i], name, err);
		cJSON_Delete(wrap);
		if (r < 0)
			return -1;
	}
	p->in = (struct pipar_shape){(int)d[0], (int)d[1], (int)d[2]};
	if (plan_int(root, "classes", "classes", 1, 1 << 20, &x, name, err) < 0)
		return -1;
	p->classes = (int)x;
	if (plan_int(root, "units", "units", 2, 4096, &x, name, err) < 0)
		return -1;
	p->units = (int)x;
	if (pipar_model_new(p->spec, p->in, p->classes, 0, 0, 0, &m, lerr) < 0)
		return pipar_errf(err, "'%s': field 'model': %s", name, lerr);
	x = m->total_units;
	pipar_model_free(m);
	if (x != p->units)
		return pipar_errf(err, "'%s': field 'units': %d, the model has %ld", name, p->units, x);
	return 0;
}

/* per_device[k]: its split point, its number of micro-batches and their
 * sizes, which sum to the batch. */
static int plan_device(const cJSON *d, int k, const char *name, struct pipar_plan_file *p,
		       char *err)
{
	const struct pipar_mode_ops *ops = pipar_mode_ops(p->mode);
	int maxP = ops->split ? p->units - 1 : p->units, minP = ops->split ? 1 : p->units, i = 0;
	const cJSON *mb;
	char path[64];
	long P, N, sum = 0;

	snprintf(path, sizeof(path), "per_device[%d].split_point", k);
	if (plan_int(d, "split_point", path, minP, maxP, &P, name, err) < 0)
		return -1;
	snprintf(path, sizeof(path), "per_device[%d].parallel_batches", k);
	if (plan_int(d, "parallel_batches", path, 1, ops->pipelined ? p->batch : 1, &N, name, err) < 0)
		return -1;
	mb = cJSON_GetObjectItemCaseSensitive(d, "micro_batches");
	if (!cJSON_IsArray(mb) || cJSON_GetArraySize(mb) != N)
		return pipar_errf(err, "'%s': field 'per_device[%d].micro_batches': needs %ld sizes",
				  name, k, N);
	if (!(p->micro[k] = malloc(sizeof(int) * (size_t)N)))
		return pipar_errf(err, "out of memory");
	for (const cJSON *s = mb->child; s; s = s->next, i++) {
		const struct pipar_json_ctx c = {name, err, NULL};
		double n;

		snprintf(path, sizeof(path), "per_device[%d].micro_batches[%d]", k, i);
		if (pipar_json_item(s, path, 1, p->batch, 1, &n, &c) < 0)
			return -1;
		p->micro[k][i] = (int)n;
		sum += (long)n;
	}
	if (sum != p->batch)
		return pipar_errf(err, "'%s': field 'per_device[%d].micro_batches': sum %ld, not the batch %d",
				  name, k, sum, p->batch);
	p->dev[k] = (struct pipar_choice){(int)P, (int)N};
	return 0;
}

/* Everything but the model, in the order pipar-plan(5) lists it. */
static int plan_fields(const cJSON *root, const char *name, struct pipar_plan_file *p, char *err)
{
	const cJSON *v, *arr;
	long x;

	if (plan_int(root, "devices", "devices", 1, PIPAR_PLAN_MAXDEV, &x, name, err) < 0)
		return -1;
	p->K = (int)x;
	if (plan_int(root, "batch", "batch", 1, 4096, &x, name, err) < 0)
		return -1;
	p->batch = (int)x;
	if (plan_int(root, "samples_per_device", "samples_per_device", 1, 1L << 40, &p->samples,
		     name, err) < 0 ||
	    plan_num(root, "uplink_bps", "uplink_bps", 1, 1e15, &p->up_bps, name, err) < 0 ||
	    plan_num(root, "downlink_bps", "downlink_bps", 1, 1e15, &p->down_bps, name, err) < 0 ||
	    (cJSON_GetObjectItemCaseSensitive(root, "latency_seconds") &&
	     plan_num(root, "latency_seconds", "latency_seconds", 0, 60, &p->latency, name, err) < 0))
		return -1;
	arr = cJSON_GetObjectItemCaseSensitive(root, "per_device");
	if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != p->K)
		return pipar_errf(err, "'%s': field 'per_device': needs one entry per device (%d)", name,
				  p->K);
	for (int k = 0; k < p->K; k++)
		if (plan_device(cJSON_GetArrayItem(arr, k), k, name, p, err) < 0)
			return -1;
	if (plan_int(root, "split_point", "split_point", 1, p->units, &x, name, err) < 0)
		return -1;
	if (x != p->dev[0].P)
		return pipar_errf(err, "'%s': field 'split_point': differs from per_device[0]", name);
	if (plan_int(root, "parallel_batches", "parallel_batches", 1, p->batch, &x, name, err) < 0)
		return -1;
	if (x != p->dev[0].N)
		return pipar_errf(err, "'%s': field 'parallel_batches': differs from per_device[0]", name);
	v = cJSON_GetObjectItemCaseSensitive(root, "predicted");
	if (!cJSON_IsObject(v))
		return pipar_errf(err, "'%s': field 'predicted': missing", name);
	if (plan_num(v, "iteration_seconds", "predicted.iteration_seconds", 0, 1e12, &p->iteration,
		     name, err) < 0 ||
	    plan_num(v, "epoch_seconds", "predicted.epoch_seconds", 0, 1e15, &p->epoch, name, err) < 0)
		return -1;
	return 0;
}

int pipar_plan_from_json(const cJSON *root, const char *name,
			 struct pipar_plan_file **out, char *err)
{
	static const char *const known[] = {
		"format", "mode", "model_name", "model", "input", "classes", "units",
		"devices", "batch", "samples_per_device", "uplink_bps", "downlink_bps",
		"latency_seconds", "memory_bytes", "min_micro_batch", "chosen_by", "split_point", "parallel_batches", "per_device",
		"predicted", "alternatives", "baselines", "search_seconds", NULL,
	};
	const char *unknown, *fmt = pipar_json_format(root);
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "mode");
	struct pipar_plan_file *p;

	*out = NULL;
	if (!fmt || strcmp(fmt, "pipar-plan/1") != 0)
		return fmt ? pipar_json_kind_error(err, name, fmt, "pipar-plan/1")
			   : pipar_errf(err, "'%s' is not a pipar-plan/1 file", name);
	if ((unknown = pipar_json_unknown_field(root, known)))
		return pipar_errf(err, "'%s': field '%s': unknown field", name, unknown);
	if (!(p = calloc(1, sizeof(*p))))
		return pipar_errf(err, "out of memory");
	if (!cJSON_IsString(v) || pipar_mode_parse(v->valuestring, &p->mode) < 0) {
		pipar_errf(err, "'%s': field 'mode': not pipar, sfl, sl or fl", name);
		goto fail;
	}
	if (plan_model(root, name, p, err) < 0 || plan_fields(root, name, p, err) < 0)
		goto fail;
	*out = p;
	return 0;
fail:
	pipar_plan_file_free(p);
	return -1;
}
