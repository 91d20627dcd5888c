/*
 * The payloads of HELLO, PLAN and PARAMS_UP, encoded and checked.
 */
#include "proto.h"

#include <cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "util.h"

/* ---------------------------------------------------------------- HELLO */

char *pipar_hello_encode(const struct pipar_hello *h)
{
	cJSON *o = cJSON_CreateObject(), *norm, *mean, *sd;
	char *text = NULL;

	if (o && cJSON_AddStringToObject(o, "id", h->id) &&
	    cJSON_AddNumberToObject(o, "samples", (double)h->samples) &&
	    (h->device < 0 || cJSON_AddNumberToObject(o, "device", h->device)) &&
	    (norm = cJSON_AddObjectToObject(o, "norm")) &&
	    (mean = cJSON_AddArrayToObject(norm, "mean")) &&
	    (sd = cJSON_AddArrayToObject(norm, "std"))) {
		int ok = 1;

		for (int c = 0; ok && c < h->norm.channels; c++)
			ok = cJSON_AddItemToArray(mean, cJSON_CreateNumber(h->norm.mean[c])) &&
			     cJSON_AddItemToArray(sd, cJSON_CreateNumber(h->norm.std[c]));
		if (ok)
			text = cJSON_PrintUnformatted(o);
	}
	cJSON_Delete(o);
	return text;
}

int pipar_hello_id_check(const char *id, char *why, size_t len)
{
	size_t n = strlen(id);

	if (n < 1 || n > PIPAR_HELLO_ID_MAX) {
		snprintf(why, len, "%zu bytes, not 1 to %d", n, PIPAR_HELLO_ID_MAX);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)id[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      strchr("._:@+/-", ch))) {
			snprintf(why, len, "byte %zu (0x%02x) is not a letter, digit or one of ._:@+/-",
				 i + 1, ch);
			return -1;
		}
	}
	return 0;
}

int pipar_hello_decode(const uint8_t *p, size_t len, int channels, long max_samples,
		       struct pipar_hello *h, char *err)
{
	cJSON *o = cJSON_ParseWithLength((const char *)p, len);
	const struct pipar_json_ctx c = {NULL, err, "malformed HELLO"};
	const cJSON *id, *norm, *mean, *sd;
	char why[96];
	double x;
	int r = -1;

	memset(h, 0, sizeof(*h));
	if (!cJSON_IsObject(o)) {
		pipar_errf(err, "malformed HELLO: not a JSON object");
		goto out;
	}
	id = cJSON_GetObjectItemCaseSensitive(o, "id");
	norm = cJSON_GetObjectItemCaseSensitive(o, "norm");
	mean = cJSON_GetObjectItemCaseSensitive(norm, "mean");
	sd = cJSON_GetObjectItemCaseSensitive(norm, "std");
	if (!cJSON_IsString(id)) {
		pipar_json_bad(&c, "id", "missing or not a string");
		goto out;
	}
	/* The id is printed in logs and written in summaries: a safe set of
	 * characters, so that no peer can forge a line. */
	if (pipar_hello_id_check(id->valuestring, why, sizeof(why)) < 0) {
		pipar_json_bad(&c, "id", why);
		goto out;
	}
	/* The shard's size is its FedAvg weight: no device claims more than
	 * the samples of every device the plan was made for. */
	if (pipar_json_num(o, "samples", "samples", 1, (double)max_samples, &x, &c) < 0)
		goto out;
	if (x != floor(x)) {
		pipar_json_bad(&c, "samples", "not an integer");
		goto out;
	}
	if (!cJSON_IsArray(mean) || !cJSON_IsArray(sd) || cJSON_GetArraySize(mean) != channels ||
	    cJSON_GetArraySize(sd) != channels) {
		snprintf(why, sizeof(why), "needs 'mean' and 'std' of %d number(s)", channels);
		pipar_json_bad(&c, "norm", why);
		goto out;
	}
	snprintf(h->id, sizeof(h->id), "%s", id->valuestring);
	h->samples = (long)x;
	h->device = -1;
	if (cJSON_GetObjectItemCaseSensitive(o, "device")) {
		long dv;

		if (pipar_json_int(o, "device", "device", 0, 65535, &dv, &c) < 0)
			goto out;
		h->device = (int)dv;
	}
	h->norm.channels = channels;
	for (int i = 0; i < channels; i++) {
		char path[32];
		double m, s;

		/* As the checkpoint keeps them: floats, the deviation a
		 * divisor. */
		snprintf(path, sizeof(path), "norm.mean[%d]", i);
		if (pipar_json_item(cJSON_GetArrayItem(mean, i), path, -PIPAR_NORM_MAX, PIPAR_NORM_MAX,
				    0, &m, &c) < 0)
			goto out;
		snprintf(path, sizeof(path), "norm.std[%d]", i);
		if (pipar_json_item(cJSON_GetArrayItem(sd, i), path, PIPAR_NORM_MIN, PIPAR_NORM_MAX, 0,
				    &s, &c) < 0)
			goto out;
		h->norm.mean[i] = (float)m;
		h->norm.std[i] = (float)s;
	}
	r = 0;
out:
	cJSON_Delete(o);
	return r;
}

/* ---------------------------------------------------------------- PLAN */

char *pipar_plan_msg_encode(const struct pipar_plan_file *plan,
			    const struct pipar_settings *s)
{
	cJSON *o = cJSON_CreateObject(), *p = pipar_plan_file_json(plan);
	char seed[32], *text = NULL;

	snprintf(seed, sizeof(seed), "%llu", (unsigned long long)s->seed);
	if (o && p && cJSON_AddItemToObject(o, "plan", p) && (p = NULL, 1) &&
	    cJSON_AddNumberToObject(o, "device", s->device) &&
	    cJSON_AddNumberToObject(o, "epochs", s->epochs) &&
	    (s->first_epoch <= 1 || cJSON_AddNumberToObject(o, "first_epoch", s->first_epoch)) &&
	    cJSON_AddNumberToObject(o, "lr", s->sgd.lr) &&
	    cJSON_AddNumberToObject(o, "momentum", s->sgd.momentum) &&
	    cJSON_AddNumberToObject(o, "weight_decay", s->sgd.weight_decay) &&
	    cJSON_AddRawToObject(o, "seed", seed) &&
	    cJSON_AddNumberToObject(o, "aggregate_every", s->aggregate_every) &&
	    cJSON_AddNumberToObject(o, "server_time", s->server_time) &&
	    (!s->state_up || cJSON_AddTrueToObject(o, "state_up")) &&
	    (!s->state_down || cJSON_AddTrueToObject(o, "state_down")))
		text = cJSON_PrintUnformatted(o);
	cJSON_Delete(p);
	cJSON_Delete(o);
	return text;
}

/* The number under key in o within [lo, hi]; -1 with err naming it. */
static int setting(const cJSON *o, const char *key, double lo, double hi, double *out,
		   char *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < lo ||
	    v->valuedouble > hi)
		return pipar_errf(err, "the server's training settings are malformed: field '%s'", key);
	*out = v->valuedouble;
	return 0;
}

/* The optional boolean under key in o (false when absent); -1 with err
 * naming it when it is not a boolean. */
static int flag(const cJSON *o, const char *key, int *out, char *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (v && !cJSON_IsBool(v))
		return pipar_errf(err, "the server's training settings are malformed: field '%s'", key);
	*out = cJSON_IsTrue(v);
	return 0;
}

int pipar_plan_msg_decode(const uint8_t *p, size_t len, struct pipar_plan_file **plan,
			  struct pipar_settings *s, char *err)
{
	cJSON *o = cJSON_ParseWithLength((const char *)p, len);
	const cJSON *pj = cJSON_GetObjectItemCaseSensitive(o, "plan");
	double d[8] = {0};
	char perr[PIPAR_ERRLEN];
	int r = -1;

	*plan = NULL;
	memset(s, 0, sizeof(*s));
	if (!cJSON_IsObject(pj)) {
		pipar_errf(err, "the server's plan is malformed: no plan");
		goto out;
	}
	if (pipar_plan_from_json(pj, "PLAN", plan, perr) < 0) {
		pipar_errf(err, "the server's plan is malformed: %s", perr);
		goto out;
	}
	if (setting(o, "device", 0, (*plan)->K - 1, &d[0], err) < 0 ||
	    setting(o, "epochs", 0, 1e9, &d[1], err) < 0 ||
	    setting(o, "lr", 0, FLT_MAX, &d[2], err) < 0 ||
	    setting(o, "momentum", 0, FLT_MAX, &d[3], err) < 0 ||
	    setting(o, "weight_decay", 0, FLT_MAX, &d[4], err) < 0 ||
	    setting(o, "seed", 0, 18446744073709551615.0, &d[5], err) < 0 ||
	    setting(o, "aggregate_every", 0, 1e9, &d[6], err) < 0 ||
	    setting(o, "server_time", -1e15, 1e15, &d[7], err) < 0 ||
	    ((d[0] != floor(d[0]) || d[1] != floor(d[1]) || d[6] != floor(d[6])) &&
	     pipar_errf(err, "the server's training settings are malformed: not an integer"))) {
		pipar_plan_file_free(*plan);
		*plan = NULL;
		goto out;
	}
	s->device = (int)d[0];
	s->epochs = (int)d[1];
	s->sgd.lr = (float)d[2];
	s->sgd.momentum = (float)d[3];
	s->sgd.weight_decay = (float)d[4];
	s->seed = d[5] >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)d[5];
	s->aggregate_every = (int)d[6];
	s->server_time = d[7];
	s->first_epoch = 1;
	if (cJSON_GetObjectItemCaseSensitive(o, "first_epoch")) {
		double fe = 1;

		if (setting(o, "first_epoch", 1, s->epochs, &fe, err) < 0 ||
		    (fe != floor(fe) &&
		     pipar_errf(err, "the server's training settings are malformed: not an integer"))) {
			pipar_plan_file_free(*plan);
			*plan = NULL;
			goto out;
		}
		s->first_epoch = (int)fe;
	}
	if (flag(o, "state_up", &s->state_up, err) < 0 || flag(o, "state_down", &s->state_down, err) < 0) {
		pipar_plan_file_free(*plan);
		*plan = NULL;
		goto out;
	}
	r = 0;
out:
	cJSON_Delete(o);
	return r;
}

/* ---------------------------------------------------------------- PARAMS_UP */

void pipar_up_head_encode(const struct pipar_up_head *h, uint8_t out[PIPAR_UP_HEAD])
{
	uint32_t tail[2] = {h->mid, h->state};

	memcpy(out, &h->seen, 4);
	memcpy(out + 4, &h->correct, 4);
	memcpy(out + 8, &h->loss, 4);
	memcpy(out + 12, h->busy, 12);
	memcpy(out + 24, tail, 8);
}

int pipar_up_head_decode(const uint8_t *p, size_t len, size_t dn, size_t dm,
			 struct pipar_up_head *h, char *err)
{
	size_t want = PIPAR_UP_HEAD + sizeof(float) * dn;
	int busy_ok = 1;

	memset(h, 0, sizeof(*h));
	if (len < PIPAR_UP_HEAD)
		return pipar_errf(err, "malformed PARAMS_UP (%zu bytes, expected %zu)", len, want);
	memcpy(&h->seen, p, 4);
	memcpy(&h->correct, p + 4, 4);
	memcpy(&h->loss, p + 8, 4);
	memcpy(h->busy, p + 12, 12);
	memcpy(&h->mid, p + 24, 4);
	memcpy(&h->state, p + 28, 4);
	if (h->state == 1)
		want += sizeof(float) * dm;
	for (int r = 0; r < 3; r++)
		busy_ok &= h->busy[r] >= 0 && h->busy[r] < 1e9f;
	if (len != want || h->mid > 1 || h->state > 1 || !busy_ok || h->correct > h->seen ||
	    !isfinite(h->loss)) {
		memset(h, 0, sizeof(*h));
		return pipar_errf(err, "malformed PARAMS_UP (%zu bytes, expected %zu)", len, want);
	}
	return 0;
}
