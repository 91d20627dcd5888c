#define _POSIX_C_SOURCE 200809L
#include "trace.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "util.h"
#include <math.h>

struct event {
	const char *stage;              /* a string literal */
	int res, iteration, micro, device;
	double start, dur, bytes;       /* bytes < 0: none */
};

struct pipar_trace {
	pthread_mutex_t mu;
	int pid;
	char name[64];
	double offset;
	struct event *ev;
	size_t n, cap;
	double busy[4];
};

static void pipar_trace_event_full(struct pipar_trace *t, const char *stage,
				   enum pipar_resource res, double start, double dur,
				   int iteration, int micro, int device, double bytes);

struct pipar_trace *pipar_trace_new(int pid, const char *name)
{
	struct pipar_trace *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	pthread_mutex_init(&t->mu, NULL);
	t->pid = pid;
	snprintf(t->name, sizeof(t->name), "%s", name);
	return t;
}

void pipar_trace_set_offset(struct pipar_trace *t, double offset)
{
	if (t)
		t->offset = offset;
}

void pipar_trace_event(struct pipar_trace *t, const char *stage,
		       enum pipar_resource res, double start, double dur,
		       int iteration, int micro)
{
	pipar_trace_event_full(t, stage, res, start, dur, iteration, micro, -1, -1);
}

void pipar_trace_event_for(struct pipar_trace *t, const char *stage,
			   enum pipar_resource res, double start, double dur,
			   int iteration, int micro, int device)
{
	pipar_trace_event_full(t, stage, res, start, dur, iteration, micro, device, -1);
}

void pipar_trace_event_bytes(struct pipar_trace *t, const char *stage,
			     enum pipar_resource res, double start, double dur,
			     int iteration, int micro, double bytes)
{
	pipar_trace_event_full(t, stage, res, start, dur, iteration, micro, -1, bytes);
}

static void pipar_trace_event_full(struct pipar_trace *t, const char *stage,
				   enum pipar_resource res, double start, double dur,
				   int iteration, int micro, int device, double bytes)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->mu);
	t->busy[res] += dur;
	if (t->n == t->cap) {
		size_t nc = t->cap ? 2 * t->cap : 4096;
		struct event *ne = realloc(t->ev, sizeof(*ne) * nc);

		if (!ne) {
			pthread_mutex_unlock(&t->mu);
			return;         /* a trace missing events beats no run */
		}
		t->ev = ne;
		t->cap = nc;
	}
	t->ev[t->n++] = (struct event){stage, (int)res, iteration, micro, device, start, dur, bytes};
	pthread_mutex_unlock(&t->mu);
}

double pipar_trace_busy(struct pipar_trace *t, enum pipar_resource res, int reset)
{
	double b;

	if (!t)
		return 0;
	pthread_mutex_lock(&t->mu);
	b = t->busy[res];
	if (reset)
		t->busy[res] = 0;
	pthread_mutex_unlock(&t->mu);
	return b;
}

int pipar_trace_write(struct pipar_trace *t, const char *path, char *err)
{
	static const char *const res_names[] = {"", "compute", "uplink", "downlink"};
	struct pipar_out o;
	FILE *f;

	if (!t || !path)
		return 0;
	if (pipar_out_open(&o, path, err) < 0)
		return -1;
	f = o.f;
	pthread_mutex_lock(&t->mu);
	fprintf(f, "{\"format\":\"" PIPAR_TRACE_FORMAT "\",\"displayTimeUnit\":\"ms\","
		"\"traceEvents\":[\n");
	fprintf(f, "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"args\":{\"name\":", t->pid);
	pipar_json_put_string(f, t->name);
	fprintf(f, "}}");
	for (int r2 = 1; r2 <= 3; r2++)
		fprintf(f, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":\"%s\"}}",
			t->pid, r2, res_names[r2]);
	for (size_t i = 0; i < t->n; i++) {
		const struct event *e = &t->ev[i];

		fprintf(f, ",\n{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"X\",\"pid\":%d,\"tid\":%d,"
			"\"ts\":%.3f,\"dur\":%.3f,\"args\":{\"iteration\":%d,\"micro\":%d",
			e->stage, res_names[e->res], t->pid, e->res, (e->start + t->offset) * 1e6,
			e->dur * 1e6, e->iteration, e->micro);
		if (e->device >= 0)
			fprintf(f, ",\"device\":%d", e->device + 1);
		if (e->bytes >= 0)
			fprintf(f, ",\"bytes\":%.0f", e->bytes);
		fprintf(f, "}}");
	}
	fprintf(f, "\n]}\n");
	pthread_mutex_unlock(&t->mu);
	return pipar_out_close(&o, 0, err);
}

void pipar_trace_free(struct pipar_trace *t)
{
	if (!t)
		return;
	free(t->ev);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

/* ---------------------------------------------------------------- reading */

struct span {
	int pid, tid, file;
	double start, end, bytes;       /* bytes < 0: none recorded */
};

struct lane {
	int pid, tid;
	char party[96], resource[32];
	double busy, bytes;
	int has_bytes;
};

static int cmp_span(const void *a, const void *b)
{
	const struct span *x = a, *y = b;

	if (x->pid != y->pid)
		return x->pid - y->pid;
	if (x->tid != y->tid)
		return x->tid - y->tid;
	return x->start < y->start ? -1 : x->start > y->start;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int pipar_trace_summarise(const char *const *paths, int n, char **out, char *err)
{
	struct span *sp = NULL, *steps = NULL;
	struct lane *lanes = NULL;
	size_t nsp = 0, capsp = 0, nst = 0, capst = 0;
	int nl = 0, r = -1;
	double t0 = 1e300, t1 = -1e300;
	char names[256][96];
	int name_pid[256], nnames = 0;
	cJSON *o = NULL;

	*out = NULL;
	for (int f = 0; f < n; f++) {
		char *text = pipar_read_file(paths[f], 1u << 30, NULL, err);
		cJSON *root, *evs;

		if (!text)
			goto done;
		root = pipar_json_parse(text, paths[f], NULL, PIPAR_TRACE_FORMAT,
					PIPAR_JSON_FORMAT_OPTIONAL, err);
		free(text);
		if (!root)
			goto done;
		evs = cJSON_GetObjectItemCaseSensitive(root, "traceEvents");
		if (!cJSON_IsArray(evs)) {
			pipar_errf(err, "'%s': not a trace (no traceEvents array)",
				   pipar_json_name(paths[f]));
			cJSON_Delete(root);
			goto done;
		}
		for (const cJSON *e = evs->child; e; e = e->next) {
			const cJSON *ph = cJSON_GetObjectItemCaseSensitive(e, "ph");
			const cJSON *pid = cJSON_GetObjectItemCaseSensitive(e, "pid");
			const cJSON *tid = cJSON_GetObjectItemCaseSensitive(e, "tid");
			const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");

			if (!cJSON_IsString(ph) || !cJSON_IsNumber(pid) || !cJSON_IsString(nm)) {
				pipar_errf(err, "'%s': an event without ph, pid or name",
					   pipar_json_name(paths[f]));
				cJSON_Delete(root);
				goto done;
			}
			if (strcmp(ph->valuestring, "M") == 0) {
				const cJSON *a = cJSON_GetObjectItemCaseSensitive(e, "args");
				const cJSON *an = cJSON_GetObjectItemCaseSensitive(a, "name");

				if (!cJSON_IsString(an))
					continue;
				if (strcmp(nm->valuestring, "process_name") == 0 && nnames < 256) {
					name_pid[nnames] = (int)pid->valuedouble;
					snprintf(names[nnames++], sizeof(names[0]), "%s", an->valuestring);
				}
				continue;
			}
			if (strcmp(ph->valuestring, "X") != 0)
				continue;
			const cJSON *ts = cJSON_GetObjectItemCaseSensitive(e, "ts");
			const cJSON *du = cJSON_GetObjectItemCaseSensitive(e, "dur");

			if (!cJSON_IsNumber(tid) || !cJSON_IsNumber(ts) || !cJSON_IsNumber(du) ||
			    !(du->valuedouble >= 0) || !isfinite(ts->valuedouble)) {
				pipar_errf(err, "'%s': an event '%.40s' without a valid tid, ts or dur",
					   pipar_json_name(paths[f]), nm->valuestring);
				cJSON_Delete(root);
				goto done;
			}
			if (nsp == capsp) {
				size_t nc = capsp ? 2 * capsp : 4096;
				struct span *ns = realloc(sp, sizeof(*sp) * nc);

				if (!ns) {
					pipar_errf(err, "out of memory");
					cJSON_Delete(root);
					goto done;
				}
				sp = ns;
				capsp = nc;
			}
			const cJSON *by = cJSON_GetObjectItemCaseSensitive(
				cJSON_GetObjectItemCaseSensitive(e, "args"), "bytes");
			struct span s = {(int)pid->valuedouble, (int)tid->valuedouble, f,
					 ts->valuedouble * 1e-6,
					 (ts->valuedouble + du->valuedouble) * 1e-6, -1};

			if (by && !(cJSON_IsNumber(by) && by->valuedouble >= 0 &&
				    by->valuedouble <= 9.007199254740992e15)) {
				pipar_errf(err, "'%s': an event '%.40s' whose bytes are not a "
					   "count", pipar_json_name(paths[f]), nm->valuestring);
				cJSON_Delete(root);
				goto done;
			}
			if (by)
				s.bytes = by->valuedouble;

			sp[nsp++] = s;
			if (s.start < t0)
				t0 = s.start;
			if (s.end > t1)
				t1 = s.end;
			if (strcmp(nm->valuestring, "step") == 0 || strcmp(nm->valuestring, "train") == 0) {
				if (nst == capst) {
					size_t nc = capst ? 2 * capst : 1024;
					struct span *ns = realloc(steps, sizeof(*steps) * nc);

					if (!ns) {
						pipar_errf(err, "out of memory");
						cJSON_Delete(root);
						goto done;
					}
					steps = ns;
					capst = nc;
				}
				steps[nst++] = s;
			}
		}
		cJSON_Delete(root);
	}
	if (!nsp) {
		pipar_errf(err, "no events in the trace%s", n > 1 ? "s" : "");
		goto done;
	}
	/* Busy time per lane: the union of its events. */
	qsort(sp, nsp, sizeof(*sp), cmp_span);
	/* One run has one file per party. */
	for (size_t i = 1; i < nsp; i++)
		if (sp[i].pid == sp[i - 1].pid && sp[i].file != sp[i - 1].file) {
			int a = sp[i].file < sp[i - 1].file ? sp[i].file : sp[i - 1].file;
			int b = sp[i].file ^ sp[i - 1].file ^ a;

			pipar_errf(err, "'%s': party %d is also in '%s': not the traces of one run",
				   pipar_json_name(paths[b]), sp[i].pid, pipar_json_name(paths[a]));
			goto done;
		}
	lanes = calloc(nsp, sizeof(*lanes));
	if (!lanes) {
		pipar_errf(err, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < nsp;) {
		struct lane *l = &lanes[nl++];
		double cs = sp[i].start, ce = sp[i].end;
		size_t j = i;

		l->pid = sp[i].pid;
		l->tid = sp[i].tid;
		for (; j < nsp && sp[j].pid == l->pid && sp[j].tid == l->tid; j++) {
			if (sp[j].bytes >= 0) {
				l->bytes += sp[j].bytes;
				l->has_bytes = 1;
			}
			if (sp[j].start > ce) {
				l->busy += ce - cs;
				cs = sp[j].start;
				ce = sp[j].end;
			} else if (sp[j].end > ce) {
				ce = sp[j].end;
			}
		}
		l->busy += ce - cs;
		i = j;
		snprintf(l->party, sizeof(l->party), l->pid == 0 ? "server" : "device %d", l->pid);
		for (int q = 0; q < nnames; q++)
			if (name_pid[q] == l->pid)
				snprintf(l->party, sizeof(l->party), "%.95s", names[q]);
		snprintf(l->resource, sizeof(l->resource), "%s",
			 l->tid == PIPAR_RES_COMPUTE ? "compute" : l->tid == PIPAR_RES_UPLINK ? "uplink" :
			 l->tid == PIPAR_RES_DOWNLINK ? "downlink" : "other");
	}
	double spanv = t1 - t0;
	/* Seconds to the microsecond, bytes whole, shares to 6 decimals. */
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "format", PIPAR_TRACE_SUMMARY_FORMAT);
	pipar_json_add_fixed(o, "span_seconds", spanv, 6);
	cJSON *parties = cJSON_AddArrayToObject(o, "resources");
	int best = 0;
	double moved[4] = {0, 0, 0, 0};
	int any_bytes = 0;

	for (int i = 0; i < nl; i++) {
		cJSON *x = cJSON_CreateObject();

		cJSON_AddStringToObject(x, "party", lanes[i].party);
		cJSON_AddNumberToObject(x, "pid", lanes[i].pid);
		cJSON_AddStringToObject(x, "resource", lanes[i].resource);
		pipar_json_add_fixed(x, "busy_seconds", lanes[i].busy, 6);
		pipar_json_add_fixed(x, "idle_seconds", spanv - lanes[i].busy, 6);
		pipar_json_add_fixed(x, "utilisation", spanv > 0 ? lanes[i].busy / spanv : 0, 6);
		if (lanes[i].has_bytes) {
			pipar_json_add_fixed(x, "bytes", lanes[i].bytes, 0);
			if (lanes[i].tid >= 1 && lanes[i].tid <= 3)
				moved[lanes[i].tid] += lanes[i].bytes;
			any_bytes = 1;
		}
		cJSON_AddItemToArray(parties, x);
		if (lanes[i].busy > lanes[best].busy)
			best = i;
	}
	/* Iterations: the time between consecutive steps of each device. */
	{
		double *it = malloc(sizeof(double) * (nst ? nst : 1));
		size_t ni = 0;
		cJSON *iters = cJSON_AddObjectToObject(o, "iterations");

		if (!it) {
			pipar_errf(err, "out of memory");
			goto done;
		}
		qsort(steps, nst, sizeof(*steps), cmp_span);
		for (size_t i = 1; i < nst; i++)
			if (steps[i].pid == steps[i - 1].pid)
				it[ni++] = steps[i].end - steps[i - 1].end;
		qsort(it, ni, sizeof(double), cmp_dbl);
		double sum = 0;

		for (size_t i = 0; i < ni; i++)
			sum += it[i];
		cJSON_AddNumberToObject(iters, "count", (double)ni);
		if (ni) {
			pipar_json_add_fixed(iters, "mean_seconds", sum / (double)ni, 6);
			pipar_json_add_fixed(iters, "median_seconds",
					     ni % 2 ? it[ni / 2] : 0.5 * (it[ni / 2 - 1] + it[ni / 2]), 6);
			pipar_json_add_fixed(iters, "p95_seconds",
					     it[(size_t)(0.95 * (double)(ni - 1) + 0.5)], 6);
		}
		free(it);
	}
	if (any_bytes) {
		cJSON *m = cJSON_AddObjectToObject(o, "bytes_moved");

		pipar_json_add_fixed(m, "uplink", moved[PIPAR_RES_UPLINK], 0);
		pipar_json_add_fixed(m, "downlink", moved[PIPAR_RES_DOWNLINK], 0);
	}
	cJSON *b = cJSON_AddObjectToObject(o, "bottleneck");

	cJSON_AddStringToObject(b, "party", lanes[best].party);
	cJSON_AddStringToObject(b, "resource", lanes[best].resource);
	pipar_json_add_fixed(b, "share", spanv > 0 ? lanes[best].busy / spanv : 0, 6);
	*out = cJSON_Print(o);
	r = *out ? 0 : pipar_errf(err, "out of memory");
done:
	cJSON_Delete(o);
	free(sp);
	free(steps);
	free(lanes);
	return r;
}
