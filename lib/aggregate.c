/*
 * The server's aggregation: FedAvg of the device parts and the replicas,
 * the global model's evaluation, the epoch's record, and the bookkeeping
 * of devices lost on the way.
 */
#define _POSIX_C_SOURCE 200809L
#include "server_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "runtime.h"
#include "summary.h"
#include "train.h"
#include "exec.h"
#include "wire.h"

int pipar_agg_rule_parse(const char *text, struct pipar_agg_rule *r, char *err)
{
	const char *colon = strchr(text, ':');
	char *end;
	double v = 0;

	if (colon) {
		errno = 0;
		v = strtod(colon + 1, &end);
		if (errno || end == colon + 1 || *end || !isfinite(v))
			colon = NULL, v = -1;
	}
	if (!strcmp(text, "mean"))
		*r = (struct pipar_agg_rule){PIPAR_AGG_MEAN, 0};
	else if (!strcmp(text, "median"))
		*r = (struct pipar_agg_rule){PIPAR_AGG_MEDIAN, 0};
	else if (colon && !strncmp(text, "trimmed:", 8) && v >= 0 && v < 0.5)
		*r = (struct pipar_agg_rule){PIPAR_AGG_TRIMMED, v};
	else if (colon && !strncmp(text, "clip:", 5) && v > 0)
		*r = (struct pipar_agg_rule){PIPAR_AGG_CLIP, v};
	else
		return pipar_errf(err, "'%s' is not a rule: mean, median, trimmed:F (0 <= F < 0.5) or clip:NORM (NORM > 0)",
				  text);
	return 0;
}

const char *pipar_agg_rule_name(const struct pipar_agg_rule *r, char *buf, size_t len)
{
	static const char *const names[] = {"mean", "median", "trimmed", "clip"};

	if (r->kind == PIPAR_AGG_TRIMMED || r->kind == PIPAR_AGG_CLIP)
		snprintf(buf, len, "%s:%g", names[r->kind], r->param);
	else
		snprintf(buf, len, "%s", names[r->kind]);
	return buf;
}

void pipar_server_progress_show(struct server *s, int force)
{
	struct pipar_progress p = {.unit = "mini-batches"};

	for (int k = 0; k < s->K; k++)
		if (s->c[k].alive) {
			p.done += s->c[k].it_done;
			p.total += (s->c[k].samples + s->B - 1) / s->B;
		}
	if (!s->ops->split)
		p.total = 0;            /* the devices train alone until they report */
	p.epoch = s->epoch_done < s->cfg->epochs ? s->epoch_done + 1 : s->cfg->epochs;
	p.epochs = s->cfg->epochs;
	p.loss = s->prog_seen ? s->prog_loss / (double)s->prog_seen : NAN;
	pipar_meter_update(s->cfg->meter, &p, force);
}

void pipar_server_progress(struct server *s, struct conn *c, double loss, long seen)
{
	if (!s->cfg->meter || !s->cfg->meter->on)
		return;
	pthread_mutex_lock(&s->mu);
	c->it_done++;
	s->prog_loss += loss;
	s->prog_seen += seen;
	pipar_server_progress_show(s, 0);
	pthread_mutex_unlock(&s->mu);
}

int pipar_server_next_alive(const struct server *s, int k)
{
	for (int j = k + 1; j < s->K; j++)
		if (s->c[j].alive)
			return j;
	return -1;
}

/* The epoch's record: its entry e as one JSON line on cfg->records (the
 * summary's entry with its format first), and a line a person reads in
 * the log, from r. */
static void epoch_record(struct server *s, const cJSON *e, const struct pipar_summary_record *r)
{
	char tail[64] = "";

	if (s->cfg->records) {
		char *line = pipar_summary_epoch_line(e);

		if (!line || fprintf(s->cfg->records, "%s\n", line) < 0 ||
		    fflush(s->cfg->records) != 0)
			SLOG(s, "cannot write the record of epoch %d: %s", s->epoch_done,
			     line ? strerror(errno) : "out of memory");
		free(line);
	}
	if (r->tested)
		snprintf(tail, sizeof(tail), ", test accuracy %.4f", pipar_json_round(r->test_accuracy, 6));
	SLOG(s, "epoch %d/%d: loss %.4f%s, %d device(s), %.1f s", s->epoch_done, s->cfg->epochs,
	     pipar_json_round(r->loss, 6), tail, s->live, pipar_json_round(r->seconds, 6));
	pipar_server_progress_show(s, 1);
}

/* Device c's whole model into one: its part sent up, then its
 * replica's units (device k holds the units before its split point and
 * its replica the rest, so every unit has one value from every device,
 * whatever the split points). */
static void device_model(const struct server *s, const struct conn *c, float *one)
{
	memcpy(one, c->up, sizeof(float) * c->dn);
	if (c->replica && c->dn < s->total_n)
		pipar_runtime_get_state(c->replica, one + c->dn);
}

/* Marks c dead with why (s->mu held): logged, kept for the summary. */
static void mark_lost(struct server *s, struct conn *c, const char *why)
{
	c->alive = 0;
	s->live--;
	snprintf(c->fault, sizeof(c->fault), "%s", why);
	SLOG(s, "device %d (%s): %s; continuing with %d device(s)", c->k + 1, c->id, why, s->live);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;

	return (x > y) - (x < y);
}

/* Before any model is averaged, each live device's update (its model
 * less the global one) is measured into norm[k]; a device whose model is
 * not finite, or whose update is over PIPAR_AGG_FAR times the lower
 * median of the devices' norms, is expelled by name.  one is scratch. */
static void screen(struct server *s, float *one, double *norm)
{
	double *v = malloc(sizeof(double) * (size_t)s->K);
	char why[PIPAR_ERRLEN];
	int m = 0;

	for (int k = 0; k < s->K; k++) {
		struct conn *c = &s->c[k];
		size_t bad;
		double q = 0;

		if (!c->alive)
			continue;
		device_model(s, c, one);
		/* Its part was checked as it came (PARAMS_UP); its replica,
		 * trained here, is checked now. */
		if ((bad = pipar_floats_nonfinite(one + c->dn, s->total_n - c->dn)) != SIZE_MAX) {
			snprintf(why, sizeof(why), "refused at aggregation: its model holds a non-finite value (%zu of %zu)",
				 c->dn + bad, s->total_n);
			mark_lost(s, c, why);
			continue;
		}
		for (size_t i = 0; i < s->total_n; i++) {
			double d = (double)one[i] - (double)s->G[i];

			q += d * d;
		}
		norm[k] = sqrt(q);
		if (v)
			v[m++] = norm[k];
	}
	if (!v || m < 2) {
		free(v);
		return;
	}
	qsort(v, (size_t)m, sizeof(double), cmp_double);
	double med = v[(m - 1) / 2];

	free(v);
	for (int k = 0; k < s->K && med > 0; k++)
		if (s->c[k].alive && norm[k] > PIPAR_AGG_FAR * med) {
			snprintf(why, sizeof(why), "refused at aggregation: its update's norm %.3g is over %g times the devices' median %.3g",
				 norm[k], PIPAR_AGG_FAR, med);
			mark_lost(s, &s->c[k], why);
		}
}

/* Each live device's FedAvg weight: the samples it trained on since the
 * last aggregation (counted by the server where it sees them), never
 * more than the shard it declared; into w, summing to 1. */
static void weights(const struct server *s, double *w)
{
	double total = 0, declared = 0;

	for (int k = 0; k < s->K; k++) {
		const struct conn *c = &s->c[k];

		w[k] = c->alive ? (double)(c->round_seen < c->samples ? c->round_seen : c->samples) : 0;
		total += w[k];
		declared += c->alive ? (double)c->samples : 0;
	}
	/* Nothing counted (devices that report nothing): the shards. */
	for (int k = 0; k < s->K; k++)
		w[k] = total > 0 ? w[k] / total
			: s->c[k].alive && declared > 0 ? (double)s->c[k].samples / declared : 0;
}

void pipar_agg_by_rank(const struct pipar_agg_rule *rule, const float *mat, int m, size_t n,
		       float *out, float *col)
{
	/* The median, or floor(F m) values cut at each end. */
	int cut = rule->kind == PIPAR_AGG_MEDIAN ? -1 : (int)floor(rule->param * m);

	for (size_t i = 0; i < n; i++) {
		double sum = 0;

		for (int j = 0; j < m; j++)
			col[j] = mat[(size_t)j * n + i];
		qsort(col, (size_t)m, sizeof(float), cmp_float);
		if (cut < 0) {
			out[i] = m % 2 ? col[m / 2] : (float)(((double)col[m / 2 - 1] + col[m / 2]) / 2);
			continue;
		}
		for (int j = cut; j < m - cut; j++)
			sum += col[j];
		out[i] = (float)(sum / (m - 2 * cut));
	}
}

/* The live devices' models combined by the rule (pipar_agg_rule): the
 * sample-weighted mean (FedAvg), the mean of updates clipped to a norm,
 * the coordinate-wise median or trimmed mean; into sum. */
static int combine(struct server *s, const double *norm, float *sum, float *one)
{
	const struct pipar_agg_rule *rule = &s->cfg->rule;
	double *w;
	int m = 0;

	if (rule->kind == PIPAR_AGG_MEDIAN || rule->kind == PIPAR_AGG_TRIMMED) {
		float *mat = malloc(sizeof(float) * s->total_n * (size_t)s->live);
		float *col = malloc(sizeof(float) * (size_t)s->live);

		for (int k = 0; mat && col && k < s->K; k++)
			if (s->c[k].alive)
				device_model(s, &s->c[k], mat + (size_t)m++ * s->total_n);
		if (mat && col)
			pipar_agg_by_rank(rule, mat, m, s->total_n, sum, col);
		free(col);
		free(mat);
		return mat && col ? 0 : -1;
	}
	/* The weighted rules. */
	if (!(w = malloc(sizeof(double) * (size_t)s->K)))
		return -1;
	weights(s, w);
	for (size_t i = 0; i < s->total_n && rule->kind == PIPAR_AGG_CLIP; i++)
		sum[i] = s->G[i];
	for (int k = 0; k < s->K; k++) {
		float wk = (float)w[k];

		if (!s->c[k].alive)
			continue;
		device_model(s, &s->c[k], one);
		if (rule->kind == PIPAR_AGG_CLIP) {
			/* G plus the weighted updates, each at most the norm. */
			double f = norm[k] > rule->param ? rule->param / norm[k] : 1;

			for (size_t i = 0; i < s->total_n; i++)
				sum[i] += (float)(w[k] * f * ((double)one[i] - (double)s->G[i]));
		} else {
			for (size_t i = 0; i < s->total_n; i++)
				sum[i] += wk * one[i];
		}
	}
	free(w);
	return 0;
}

/* The live devices' models combined into G (see combine), then G loaded
 * into the replicas and the global model. */
static void fedavg(struct server *s)
{
	float *sum = NULL, *one = NULL;
	double *norm = NULL;

	if (s->ops->turns) {
		/* One model, passed from device to device: the device part
		 * handed on last, the server model. */
		if (s->shared)
			pipar_runtime_get_state(s->shared, s->G + s->c[0].dn);
		pipar_runtime_set_state(s->whole, s->G);
		return;
	}
	sum = calloc(s->total_n, sizeof(float));
	one = malloc(sizeof(float) * s->total_n);
	norm = calloc((size_t)s->K, sizeof(double));
	if (sum && one && norm)
		screen(s, one, norm);
	if (!sum || !one || !norm || (s->live > 0 && combine(s, norm, sum, one) < 0))
		SLOG(s, "out of memory aggregating; the model stays as it was");
	else if (s->live > 0)
		memcpy(s->G, sum, sizeof(float) * s->total_n);
	free(sum);
	free(one);
	free(norm);
	for (int k = 0; k < s->K; k++) {
		s->c[k].round_seen = 0;
		if (s->c[k].alive && s->c[k].replica)
			pipar_runtime_set_state(s->c[k].replica, s->G + s->c[k].dn);
	}
	/* The global model is the one of the last epoch's end: evaluated,
	 * and what a checkpoint holds whenever it is written. */
	if (!s->round_mid)
		pipar_runtime_set_state(s->whole, s->G);
}

/* The busy and idle seconds of every live device's resources (into dev,
 * one per live device) and of the server over wall seconds, into r; the
 * counts start again. */
static void resources(struct server *s, struct pipar_summary_record *r,
		      struct pipar_summary_device *dev, double wall)
{
	r->dev = dev;
	r->ndev = 0;
	for (int k = 0; k < s->K; k++) {
		struct pipar_summary_device *d = &dev[r->ndev];

		if (!s->c[k].alive)
			continue;
		d->device = k + 1;
		for (int j = 0; j < 3; j++) {
			d->busy[j] = s->c[k].busy[j];
			d->idle[j] = wall > s->c[k].busy[j] ? wall - s->c[k].busy[j] : 0;
			s->c[k].busy[j] = 0;
		}
		r->ndev++;
	}
	pthread_mutex_lock(&s->compute);
	r->server_busy = s->busy;
	r->server_idle = wall > s->busy ? wall - s->busy : 0;
	s->busy = 0;
	pthread_mutex_unlock(&s->compute);
}

/* The global model's test accuracy and loss into r, normalised as the
 * first live device normalises its input. */
static void evaluate(struct server *s, struct pipar_summary_record *r)
{
	char err[PIPAR_ERRLEN] = "no device left";
	struct pipar_exec *ex = pipar_exec_new(s->whole, 100, 0, err);
	struct pipar_epoch_stats st;
	int first = pipar_server_next_alive(s, -1);

	if (ex && first >= 0 &&
	    pipar_train_evaluate(s->whole, ex, s->cfg->test, &s->c[first].norm, 0, &st, NULL, err) == 0) {
		r->tested = 1;
		r->test_accuracy = st.accuracy;
		r->test_loss = st.loss;
	} else {
		SLOG(s, "evaluation failed: %s", err);
	}
	pipar_exec_free(ex);
}

void pipar_aggregate(struct server *s)
{
	double loss = 0, up = 0, down = 0;
	long seen = 0, correct = 0;
	int mid = s->round_mid;
	cJSON *e;

	fedavg(s);
	if (mid) {
		/* Within an epoch: averaged, the epoch's counts go on. */
		SLOG(s, "aggregated %d device(s) within epoch %d", s->live, s->epoch_done + 1);
		return;
	}
	for (int k = 0; k < s->K; k++) {
		struct conn *c = &s->c[k];

		if (!c->alive)
			continue;
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
	struct pipar_summary_record rec = {.devices = s->live, .loss = seen ? loss / (double)seen : 0,
					   .train_accuracy = seen ? (double)correct / (double)seen : 0,
					   .bytes_up = up, .bytes_down = down};
	struct pipar_summary_device *dev = calloc((size_t)s->K, sizeof(*dev));

	s->epoch_done++;
	if (s->cfg->checkpoint_every)
		pipar_server_snapshot(s);
	s->prog_loss = 0;
	s->prog_seen = 0;
	double t_agg = pipar_now();

	rec.epoch = s->epoch_done;
	rec.seconds = pipar_now() - s->t_epoch;
	if (dev)
		resources(s, &rec, dev, pipar_now() - s->t_epoch);
	if (s->cfg->test)
		evaluate(s, &rec);
	e = pipar_summary_epoch_json(&rec);
	free(dev);
	pipar_trace_event(s->trace, "aggregate", PIPAR_RES_COMPUTE, t_agg, pipar_now() - t_agg,
			  s->epoch_done, -1);
	if (e) {
		char err[PIPAR_ERRLEN];

		cJSON_AddItemToArray(s->epochs, e);
		epoch_record(s, e, &rec);
		pipar_server_admit_waiting(s);
		if (s->cfg->checkpoint_every && s->epoch_done % s->cfg->checkpoint_every == 0 &&
		    s->epoch_done < s->cfg->epochs && pipar_server_checkpoint(s, err) < 0)
			SLOG(s, "%s", err);
		/* On disk after every epoch, so that a crash keeps them;
		 * standard output takes the summary once, at the end. */
		if (s->cfg->summary && strcmp(s->cfg->summary, "-") != 0 &&
		    pipar_server_summary(s, 0, err) < 0)
			SLOG(s, "%s", err);
	} else {
		SLOG(s, "out of memory recording epoch %d", s->epoch_done);
	}
	s->t_epoch = pipar_now();
}

void pipar_server_admit_waiting(struct server *s)
{
	if (s->stopping || s->epoch_done >= s->cfg->epochs)
		return;
	for (int k = 0; k < s->K; k++) {
		struct conn *c = &s->c[k];

		if (c->slot != SLOT_WAITING)
			continue;
		/* From the global model, with nothing counted yet. */
		c->slot = SLOT_JOINING;
		c->alive = 1;
		c->finished = 0;
		c->fault[0] = 0;
		c->first_epoch = s->epoch_done + 1;
		c->loss = 0;
		c->seen = c->correct = c->it_done = c->round_seen = 0;
		c->bytes_up = c->bytes_down = 0;
		memset(c->busy, 0, sizeof(c->busy));
		if (c->replica)
			pipar_runtime_set_state(c->replica, s->G + c->dn);
		s->live++;
		SLOG(s, "device %d ('%s') joins in epoch %d; %d device(s)", k + 1, c->id, c->first_epoch,
		     s->live);
	}
	pthread_cond_broadcast(&s->cv);
}

void pipar_server_conn_lost(struct conn *c, const char *why)
{
	struct server *s = c->s;

	pthread_mutex_lock(&s->mu);
	if (c->alive) {
		mark_lost(s, c, why);
		if (s->ops->turns) {
			/* Pass the turn on, closing the epoch if it was last. */
			if (s->turn == c->k) {
				int nx = pipar_server_next_alive(s, c->k);

				if (nx < 0 && s->live > 0 && !s->stopping) {
					pipar_aggregate(s);
					nx = pipar_server_next_alive(s, -1);
				}
				s->turn = nx;
			}
			pthread_cond_broadcast(&s->cv);
		} else if (s->live > 0 && s->arrived == s->live && !s->stopping) {
			pipar_aggregate(s);
			s->arrived = 0;
			s->generation++;
			pthread_cond_broadcast(&s->cv);
		}
	}
	pthread_mutex_unlock(&s->mu);
}
