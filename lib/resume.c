/*
 * Resuming a run: the snapshot the server keeps at every epoch's end,
 * the run state a checkpoint carries for it (pipar-run/1 in the
 * manifest's "run", and each device's momentum as run/dNNN.npy), and
 * reading that back into a server that goes on after its epochs.
 */
#define _POSIX_C_SOURCE 200809L
#include "server_int.h"

#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "proto.h"
#include "runtime.h"

#define RUN_FORMAT "pipar-run/1"

void pipar_server_snapshot(struct server *s)
{
	s->snap_epoch = s->epoch_done;
	for (int k = 0; k < s->K; k++) {
		struct conn *c = &s->c[k];
		float *m = s->snap_mom + (size_t)k * s->total_train;

		s->snap_alive[k] = (char)c->alive;
		if (!c->alive)
			continue;
		memcpy(m, c->mom_up, sizeof(float) * c->dm);
		if (c->replica)
			pipar_runtime_get_momentum(c->replica, m + c->dm);
	}
}

/* The roster entry of device k: its HELLO as it came (id, shard,
 * normalisation), whether it trained in the snapshot's epoch, and why it
 * left. */
static cJSON *roster_entry(const struct conn *c, int training)
{
	cJSON *e = cJSON_CreateObject(), *hello = NULL;

	if (!e)
		return NULL;
	cJSON_AddNumberToObject(e, "device", c->k + 1);
	if (c->id[0]) {
		struct pipar_hello h = {.samples = c->samples, .norm = c->norm, .device = c->k};
		char *text;

		snprintf(h.id, sizeof(h.id), "%s", c->id);
		if ((text = pipar_hello_encode(&h)))
			hello = cJSON_Parse(text);
		free(text);
		if (!hello) {
			cJSON_Delete(e);
			return NULL;
		}
	}
	cJSON_AddItemToObject(e, "hello", hello ? hello : cJSON_CreateNull());
	cJSON_AddBoolToObject(e, "training", training);
	cJSON_AddStringToObject(e, "fault", training ? "" : c->fault);
	return e;
}

int pipar_server_run_state(struct server *s, struct pipar_ckpt_info *info)
{
	cJSON *run, *devs, *rec;
	char rule[48];
	int n = 0;

	info->run = NULL;
	info->nrun = 0;
	info->arrays = NULL;
	/* A snapshot is of this epoch only when checkpoints resume (else
	 * snap_epoch stays -1), and a model that trains nothing has none. */
	if (s->snap_epoch != s->epoch_done || !s->total_train)
		return 0;
	if (!(run = cJSON_CreateObject()) ||
	    !(info->arrays = calloc((size_t)s->K, sizeof(*info->arrays))))
		goto fail;
	cJSON_AddStringToObject(run, "format", RUN_FORMAT);
	cJSON_AddStringToObject(run, "aggregate", pipar_agg_rule_name(&s->cfg->rule, rule, sizeof(rule)));
	cJSON_AddNumberToObject(run, "checkpoint_every", s->cfg->checkpoint_every);
	devs = cJSON_AddArrayToObject(run, "devices");
	for (int k = 0; k < s->K; k++) {
		cJSON *e = roster_entry(&s->c[k], s->snap_alive[k]);

		if (!e)
			goto fail;
		cJSON_AddItemToArray(devs, e);
		if (!s->snap_alive[k])
			continue;
		struct pipar_ckpt_array *a = &info->arrays[n++];

		snprintf(a->name, sizeof(a->name), "d%03d.momentum", k + 1);
		a->count = s->total_train;
		a->data = s->snap_mom + (size_t)k * s->total_train;
	}
	if (!(rec = cJSON_Duplicate(s->epochs, 1)) || !cJSON_AddItemToObject(run, "records", rec) ||
	    !(info->run = cJSON_PrintUnformatted(run)))
		goto fail;
	info->nrun = n;
	cJSON_Delete(run);
	return 0;
fail:
	cJSON_Delete(run);
	free(info->arrays);
	info->arrays = NULL;
	return -1;
}

void pipar_resume_free(struct pipar_resume *r)
{
	if (!r)
		return;
	pipar_plan_file_free(r->plan);
	pipar_model_free(r->model);
	free(r->records);
	free(r->dev);
	pipar_checkpoint_info_free(&r->info);
	free(r);
}

/* The settings the checkpoint's "training" holds, as a device would be
 * sent them (PLAN, for device 1): the plan, SGD, seed, epochs. */
static int read_settings(struct pipar_resume *r, const char *path, char *err)
{
	cJSON *t = r->info.training ? cJSON_Parse(r->info.training) : NULL;
	struct pipar_settings st;
	char *text = NULL, perr[PIPAR_ERRLEN];
	int rc = -1;

	if (!t || !cJSON_ReplaceItemInObjectCaseSensitive(t, "device", cJSON_CreateNumber(0)) ||
	    !(text = cJSON_PrintUnformatted(t)))
		pipar_errf(err, "'%s': its training settings are missing", path);
	else if (pipar_plan_msg_decode((const uint8_t *)text, strlen(text), &r->plan, &st, perr) < 0)
		pipar_errf(err, "'%s': %s", path, perr);
	else
		rc = 0;
	if (rc == 0) {
		r->sgd = st.sgd;
		r->seed = st.seed;
		r->epochs = st.epochs;
		r->aggregate_every = st.aggregate_every;
		r->K = r->plan->K;
	}
	cJSON_Delete(t);
	free(text);
	return rc;
}

/* Device k's entry of the roster, e, into r->dev[k]. */
static int read_device(struct pipar_resume *r, int k, const cJSON *e, const char *path, char *err)
{
	struct pipar_resume_device *d = &r->dev[k];
	const cJSON *num = cJSON_GetObjectItemCaseSensitive(e, "device");
	const cJSON *hello = cJSON_GetObjectItemCaseSensitive(e, "hello");
	const cJSON *tr = cJSON_GetObjectItemCaseSensitive(e, "training");
	const cJSON *fault = cJSON_GetObjectItemCaseSensitive(e, "fault");
	char name[32], perr[PIPAR_ERRLEN];

	if (!cJSON_IsObject(e) || !cJSON_IsNumber(num) || num->valuedouble != k + 1 ||
	    !(cJSON_IsNull(hello) || cJSON_IsObject(hello)) || !cJSON_IsBool(tr) ||
	    !cJSON_IsString(fault) || (cJSON_IsTrue(tr) && !cJSON_IsObject(hello)))
		return pipar_errf(err, "'%s': run: devices[%d] is malformed", path, k);
	snprintf(d->fault, sizeof(d->fault), "%s", fault->valuestring);
	if (cJSON_IsObject(hello)) {
		struct pipar_hello h;
		char *text = cJSON_PrintUnformatted(hello);
		int rc = text ? pipar_hello_decode((const uint8_t *)text, strlen(text), r->plan->in.c,
						   r->plan->samples * r->plan->K, &h, perr)
			      : pipar_errf(perr, "out of memory");

		free(text);
		if (rc < 0)
			return pipar_errf(err, "'%s': run: devices[%d]: %s", path, k, perr);
		snprintf(d->id, sizeof(d->id), "%s", h.id);
		d->samples = h.samples;
		d->norm = h.norm;
	}
	if (!cJSON_IsTrue(tr))
		return 0;
	snprintf(name, sizeof(name), "d%03d.momentum", k + 1);
	for (int i = 0; i < r->info.nrun; i++)
		if (!strcmp(r->info.arrays[i].name, name)) {
			if (r->info.arrays[i].count != pipar_model_ntrain(r->model))
				return pipar_errf(err, "'%s': run/%s holds %zu floats, the model trains %zu",
						  path, name, r->info.arrays[i].count,
						  pipar_model_ntrain(r->model));
			d->mom = r->info.arrays[i].data;
			return 0;
		}
	return pipar_errf(err, "'%s': run: device %d trained, but run/%s is missing", path, k + 1, name);
}

int pipar_resume_load(const char *path, struct pipar_resume **out, char *err)
{
	struct pipar_resume *r = calloc(1, sizeof(*r));
	const struct pipar_json_ctx c = {path, err, "run"};
	cJSON *run = NULL, *spec = NULL, *mspec = NULL;
	const cJSON *f, *devs, *rec;
	char perr[PIPAR_ERRLEN];
	double every;
	int k = 0;

	*out = NULL;
	if (!r)
		return pipar_errf(err, "out of memory");
	if (pipar_checkpoint_load(path, &r->model, &r->info, err) < 0)
		goto fail;
	r->epoch = r->info.epoch;
	if (!r->info.run) {
		pipar_errf(err, "'%s' holds no run to resume (pipar-serve writes one with --checkpoint-every)",
			   path);
		goto fail;
	}
	if (read_settings(r, path, err) < 0 || !(run = cJSON_Parse(r->info.run)))
		goto fail;
	/* The plan's model is the checkpoint's. */
	spec = cJSON_Parse(r->plan->spec);
	mspec = cJSON_Parse(r->model->spec);
	if (!spec || !mspec || !cJSON_Compare(spec, mspec, 1) ||
	    !pipar_shape_eq(r->plan->in, r->model->in) || r->plan->classes != r->model->classes) {
		pipar_errf(err, "'%s': its plan is for another model than the one it holds", path);
		goto fail;
	}
	f = cJSON_GetObjectItemCaseSensitive(run, "format");
	if (!cJSON_IsString(f) || strcmp(f->valuestring, RUN_FORMAT) != 0) {
		pipar_json_bad(&c, "format", "not " RUN_FORMAT);
		goto fail;
	}
	f = cJSON_GetObjectItemCaseSensitive(run, "aggregate");
	if (!cJSON_IsString(f) || pipar_agg_rule_parse(f->valuestring, &r->rule, perr) < 0) {
		pipar_json_bad(&c, "aggregate", "not a rule");
		goto fail;
	}
	if (pipar_json_item(cJSON_GetObjectItemCaseSensitive(run, "checkpoint_every"), "checkpoint_every",
			    1, 100000, 1, &every, &c) < 0)
		goto fail;
	r->checkpoint_every = (int)every;
	if (r->epoch < 1 || r->epoch > r->epochs) {
		pipar_errf(err, "'%s': epoch %d is outside the run's 1..%d", path, r->epoch, r->epochs);
		goto fail;
	}
	devs = cJSON_GetObjectItemCaseSensitive(run, "devices");
	if (!cJSON_IsArray(devs) || cJSON_GetArraySize(devs) != r->K) {
		pipar_json_bad(&c, "devices", "not an array of one entry per device of the plan");
		goto fail;
	}
	if (!(r->dev = calloc((size_t)r->K, sizeof(*r->dev)))) {
		pipar_errf(err, "out of memory");
		goto fail;
	}
	for (const cJSON *e = devs->child; e; e = e->next, k++)
		if (read_device(r, k, e, path, err) < 0)
			goto fail;
	rec = cJSON_GetObjectItemCaseSensitive(run, "records");
	if (!cJSON_IsArray(rec) || cJSON_GetArraySize(rec) != r->epoch) {
		pipar_json_bad(&c, "records", "not an array of one record per epoch done");
		goto fail;
	}
	for (const cJSON *e = rec->child; e; e = e->next)
		if (!cJSON_IsObject(e)) {
			pipar_json_bad(&c, "records", "holds a record that is not an object");
			goto fail;
		}
	if (!(r->records = cJSON_PrintUnformatted(rec))) {
		pipar_errf(err, "out of memory");
		goto fail;
	}
	cJSON_Delete(run);
	cJSON_Delete(spec);
	cJSON_Delete(mspec);
	*out = r;
	return 0;
fail:
	cJSON_Delete(run);
	cJSON_Delete(spec);
	cJSON_Delete(mspec);
	pipar_resume_free(r);
	return -1;
}

int pipar_server_resume(struct server *s, char *err)
{
	const struct pipar_resume *r = s->cfg->resume;
	int shared_set = 0;
	cJSON *rec;

	if (pipar_model_nstate(r->model) != s->total_n || r->K != s->K)
		return pipar_errf(err, "the checkpoint's model or devices differ from the plan's");
	if (!(rec = cJSON_Parse(r->records)))
		return pipar_errf(err, "out of memory");
	cJSON_Delete(s->epochs);
	s->epochs = rec;
	pipar_runtime_get_state(r->model, s->G);
	pipar_runtime_set_state(s->whole, s->G);
	s->epoch_done = r->epoch;
	s->first_epoch = r->epoch + 1;
	/* The snapshot is the checkpoint's until the next epoch's end (when
	 * this run keeps one: it may write no checkpoints). */
	s->snap_epoch = s->snap_mom ? r->epoch : -1;
	for (int k = 0; k < s->K; k++) {
		struct conn *c = &s->c[k];
		const struct pipar_resume_device *d = &r->dev[k];

		snprintf(c->id, sizeof(c->id), "%s", d->id);
		snprintf(c->fault, sizeof(c->fault), "%s", d->fault);
		c->samples = d->samples;
		c->norm = d->norm;
		c->mom_down = d->mom;
		if (s->snap_mom) {
			s->snap_alive[k] = d->mom != NULL;
			if (d->mom)
				memcpy(s->snap_mom + (size_t)k * s->total_train, d->mom,
				       sizeof(float) * s->total_train);
		}
		if (!d->mom)
			continue;
		s->owners++;
		if (!c->replica)
			continue;
		pipar_runtime_set_state(c->replica, s->G + c->dn);
		/* In turns one server model: its momentum is the same in
		 * every device's. */
		if (c->replica != s->shared || !shared_set)
			pipar_runtime_set_momentum(c->replica, d->mom + c->dm);
		shared_set |= c->replica == s->shared;
	}
	return 0;
}
