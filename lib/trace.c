#define _POSIX_C_SOURCE 200809L
#include "trace.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "svg.h"
#include "file.h"
#include "util.h"

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

/* A short copy of s fit for a one-line message: control characters and
 * bytes that are not UTF-8 as '?'. */
static const char *clean(const char *s, char *buf, size_t size)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (*p) {
		int len = *p >= 0x80 ? pipar_svg_utf8_len(p) : 1;

		if (i + (size_t)(len ? len : 1) >= size)
			break;
		if (*p < 0x20 || *p == 0x7f || !len) {
			buf[i++] = '?';
			p++;
		} else {
			memcpy(buf + i, p, (size_t)len);
			i += (size_t)len;
			p += len;
		}
	}
	buf[i] = 0;
	return buf;
}

/* x as an integer in [lo, hi] in *out; -1 if it is not one. */
static int int_in(const cJSON *x, double lo, double hi, int *out)
{
	char why[96];
	double v;

	if (pipar_json_value(x, lo, hi, 1, &v, why, sizeof(why)) < 0)
		return -1;
	*out = (int)v;
	return 0;
}

/* Records that file names party pid, with a copy of its name if any. */
static int add_party(struct pipar_trace_set *s, int pid, int file, const char *name, char *err)
{
	char *copy = NULL;

	if (name && !(copy = strdup(name)))
		return pipar_errf(err, "out of memory");
	if (s->nparty == s->capparty) {
		size_t nc = s->capparty ? 2 * s->capparty : 64;
		struct pipar_trace_party *np = realloc(s->party, sizeof(*np) * nc);

		if (!np) {
			free(copy);
			return pipar_errf(err, "out of memory");
		}
		s->party = np;
		s->capparty = nc;
	}
	s->party[s->nparty++] = (struct pipar_trace_party){pid, file, copy};
	return 0;
}

/* Reads one complete event, k-th of file f at path; -1 with err if it is
 * not valid. */
static int read_event(struct pipar_trace_set *s, const char *path, int f, size_t k,
		      const cJSON *e, int pid, const char *name, char *err)
{
	const cJSON *tid = cJSON_GetObjectItemCaseSensitive(e, "tid");
	const cJSON *ts = cJSON_GetObjectItemCaseSensitive(e, "ts");
	const cJSON *du = cJSON_GetObjectItemCaseSensitive(e, "dur");
	const cJSON *args = cJSON_GetObjectItemCaseSensitive(e, "args");
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(args, "iteration");
	const cJSON *mi = cJSON_GetObjectItemCaseSensitive(args, "micro");
	const cJSON *dv = cJSON_GetObjectItemCaseSensitive(args, "device");
	const cJSON *by = cJSON_GetObjectItemCaseSensitive(args, "bytes");
	const char *missing = !tid ? "tid" : !ts ? "ts" : !du ? "dur" : NULL;
	struct pipar_trace_ev ev = {NULL, pid, 0, f, -1, -1, -1, 0, 0, -1};
	char nm[48];

	clean(name, nm, sizeof(nm));
	if (missing)
		return pipar_errf(err, "'%s': event %zu ('%s') has no %s", path, k, nm, missing);
	if (int_in(tid, 0, 1 << 20, &ev.tid) < 0)
		return pipar_errf(err, "'%s': event %zu ('%s') has a tid that is not a resource "
				  "number", path, k, nm);
	if (!cJSON_IsNumber(ts) || !isfinite(ts->valuedouble))
		return pipar_errf(err, "'%s': event %zu ('%s') has a ts that is not a finite number",
				  path, k, nm);
	if (!cJSON_IsNumber(du) || !isfinite(du->valuedouble))
		return pipar_errf(err, "'%s': event %zu ('%s') has a dur that is not a finite number",
				  path, k, nm);
	if (du->valuedouble < 0)
		return pipar_errf(err, "'%s': event %zu ('%s') has a negative dur", path, k, nm);
	if (it && int_in(it, -1, INT_MAX, &ev.iteration) < 0)
		return pipar_errf(err, "'%s': event %zu ('%s') has an iteration that is not an "
				  "integer from -1", path, k, nm);
	if (mi && int_in(mi, -1, INT_MAX, &ev.micro) < 0)
		return pipar_errf(err, "'%s': event %zu ('%s') has a micro that is not an integer "
				  "from -1", path, k, nm);
	if (dv && int_in(dv, 0, INT_MAX, &ev.device) < 0)
		return pipar_errf(err, "'%s': event %zu ('%s') has a device that is not a party "
				  "number", path, k, nm);
	if (by && !(cJSON_IsNumber(by) && by->valuedouble >= 0 &&
		    by->valuedouble <= 9.007199254740992e15))
		return pipar_errf(err, "'%s': event %zu ('%s') has bytes that are not a count",
				  path, k, nm);
	if (by)
		ev.bytes = by->valuedouble;
	ev.start = ts->valuedouble * 1e-6;
	ev.dur = du->valuedouble * 1e-6;
	if (s->nev == s->capev) {
		size_t nc = s->capev ? 2 * s->capev : 4096;
		struct pipar_trace_ev *ne = realloc(s->ev, sizeof(*ne) * nc);

		if (!ne)
			return pipar_errf(err, "out of memory");
		s->ev = ne;
		s->capev = nc;
	}
	if (!(ev.stage = strdup(name)))
		return pipar_errf(err, "out of memory");
	s->ev[s->nev++] = ev;
	return add_party(s, pid, f, NULL, err);
}

/* Reads trace file f: its complete events and the parties it names. */
static int read_file(struct pipar_trace_set *s, const char *file, int f, char *err)
{
	const char *path = pipar_json_name(file);
	size_t k = 0;
	int rc = 0;
	char *text = pipar_read_file(file, 1u << 30, NULL, err);
	const cJSON *evs;
	cJSON *root;

	if (!text)
		return -1;
	root = pipar_json_parse(text, file, NULL, PIPAR_TRACE_FORMAT, PIPAR_JSON_FORMAT_OPTIONAL,
				err);
	free(text);
	if (!root)
		return -1;
	evs = cJSON_GetObjectItemCaseSensitive(root, "traceEvents");
	if (!cJSON_IsArray(evs)) {
		cJSON_Delete(root);
		return pipar_errf(err, "'%s': not a trace (no traceEvents array)", path);
	}
	for (const cJSON *e = evs->child; e && rc == 0; e = e->next) {
		const cJSON *ph = cJSON_GetObjectItemCaseSensitive(e, "ph");
		const cJSON *pid = cJSON_GetObjectItemCaseSensitive(e, "pid");
		const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
		const char *missing = !ph ? "ph" : !nm ? "name" : !pid ? "pid" : NULL;
		int p;

		k++;
		if (!cJSON_IsObject(e))
			rc = pipar_errf(err, "'%s': event %zu is not an object", path, k);
		else if (missing)
			rc = pipar_errf(err, "'%s': event %zu has no %s", path, k, missing);
		else if (!cJSON_IsString(ph) || !cJSON_IsString(nm))
			rc = pipar_errf(err, "'%s': event %zu has a %s that is not a string", path, k,
					cJSON_IsString(ph) ? "name" : "ph");
		else if (int_in(pid, 0, 1 << 20, &p) < 0)
			rc = pipar_errf(err, "'%s': event %zu has a pid that is not a party number",
					path, k);
		else if (strcmp(ph->valuestring, "M") == 0) {
			const cJSON *an = cJSON_GetObjectItemCaseSensitive(
				cJSON_GetObjectItemCaseSensitive(e, "args"), "name");
			int named = strcmp(nm->valuestring, "process_name") == 0 && cJSON_IsString(an);

			rc = add_party(s, p, f, named ? an->valuestring : NULL, err);
		} else if (strcmp(ph->valuestring, "X") == 0) {
			rc = read_event(s, path, f, k, e, p, nm->valuestring, err);
		}
	}
	cJSON_Delete(root);
	return rc;
}

static int cmp_party(const void *a, const void *b)
{
	const struct pipar_trace_party *x = a, *y = b;

	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	return x->file < y->file ? -1 : x->file > y->file;
}

int pipar_trace_read(const char *const *paths, int n, struct pipar_trace_set *s, char *err)
{
	memset(s, 0, sizeof(*s));
	for (int f = 0; f < n; f++)
		if (read_file(s, paths[f], f, err) < 0)
			goto fail;
	/* One run has one file per party: a party in two files means traces
	 * of different runs (or one file given twice). */
	if (s->nparty)
		qsort(s->party, s->nparty, sizeof(*s->party), cmp_party);
	for (size_t i = 1; i < s->nparty; i++)
		if (s->party[i].pid == s->party[i - 1].pid && s->party[i].file != s->party[i - 1].file) {
			pipar_errf(err, "'%s': party %d is also in '%s': not the traces of one run",
				   pipar_json_name(paths[s->party[i].file]), s->party[i].pid,
				   pipar_json_name(paths[s->party[i - 1].file]));
			goto fail;
		}
	return 0;
fail:
	pipar_trace_set_free(s);
	return -1;
}

void pipar_trace_set_free(struct pipar_trace_set *s)
{
	for (size_t i = 0; i < s->nev; i++)
		free(s->ev[i].stage);
	for (size_t i = 0; i < s->nparty; i++)
		free(s->party[i].name);
	free(s->ev);
	free(s->party);
	memset(s, 0, sizeof(*s));
}

static int cmp_party_pid(const void *a, const void *b)
{
	const struct pipar_trace_party *x = a, *y = b;

	return x->pid < y->pid ? -1 : x->pid > y->pid;
}

const char *pipar_trace_party_name(const struct pipar_trace_set *s, int pid, char *buf,
				   size_t size)
{
	struct pipar_trace_party key = {pid, 0, NULL};
	const struct pipar_trace_party *c =
		s->nparty ? bsearch(&key, s->party, s->nparty, sizeof(*c), cmp_party_pid) : NULL;

	snprintf(buf, size, pid == 0 ? "server" : "device %d", pid);
	/* bsearch finds some entry of pid; its name, if any, is in the group */
	if (c) {
		while (c > s->party && c[-1].pid == pid)
			c--;
		for (; c < s->party + s->nparty && c->pid == pid; c++)
			if (c->name) {
				snprintf(buf, size, "%s", c->name);
				break;
			}
	}
	return buf;
}

/* ---------------------------------------------------------------- summary */

struct span {
	int pid, tid;
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

/* Per party and resource, the busy time (the union of its events) and
 * the bytes carried, from spans sorted by lane; returns the lanes made. */
static int make_lanes(const struct pipar_trace_set *set, const struct span *sp, size_t nsp,
		      struct lane *lanes)
{
	int nl = 0;

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
		pipar_trace_party_name(set, l->pid, l->party, sizeof(l->party));
		snprintf(l->resource, sizeof(l->resource), "%s",
			 l->tid == PIPAR_RES_COMPUTE ? "compute" : l->tid == PIPAR_RES_UPLINK ? "uplink" :
			 l->tid == PIPAR_RES_DOWNLINK ? "downlink" : "other");
	}
	return nl;
}

/* The iteration times: between consecutive "step" or "train" events of
 * each device (steps sorted by lane, nst of them), into o. */
static int iterations(cJSON *o, const struct span *steps, size_t nst, char *err)
{
	double *it = malloc(sizeof(double) * (nst ? nst : 1)), sum = 0;
	size_t ni = 0;
	cJSON *iters = cJSON_AddObjectToObject(o, "iterations");

	if (!it)
		return pipar_errf(err, "out of memory");
	for (size_t i = 1; i < nst; i++)
		if (steps[i].pid == steps[i - 1].pid)
			it[ni++] = steps[i].end - steps[i - 1].end;
	qsort(it, ni, sizeof(double), cmp_dbl);
	for (size_t i = 0; i < ni; i++)
		sum += it[i];
	cJSON_AddNumberToObject(iters, "count", (double)ni);
	if (ni) {
		pipar_json_add_fixed(iters, "mean_seconds", sum / (double)ni, 6);
		pipar_json_add_fixed(iters, "median_seconds",
				     ni % 2 ? it[ni / 2] : 0.5 * (it[ni / 2 - 1] + it[ni / 2]), 6);
		pipar_json_add_fixed(iters, "p95_seconds", it[(size_t)(0.95 * (double)(ni - 1) + 0.5)],
				     6);
	}
	free(it);
	return 0;
}

/* The summary document of nl lanes over span seconds. */
static cJSON *summary_json(const struct lane *lanes, int nl, double spanv, const struct span *steps,
			   size_t nst, char *err)
{
	cJSON *o = cJSON_CreateObject(), *parties, *b;
	double moved[4] = {0, 0, 0, 0};
	int best = 0, any_bytes = 0;

	/* Seconds to the microsecond, bytes whole, shares to 6 decimals. */
	cJSON_AddStringToObject(o, "format", PIPAR_TRACE_SUMMARY_FORMAT);
	pipar_json_add_fixed(o, "span_seconds", spanv, 6);
	parties = cJSON_AddArrayToObject(o, "resources");
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
	if (iterations(o, steps, nst, err) < 0) {
		cJSON_Delete(o);
		return NULL;
	}
	if (any_bytes) {
		cJSON *m = cJSON_AddObjectToObject(o, "bytes_moved");

		pipar_json_add_fixed(m, "uplink", moved[PIPAR_RES_UPLINK], 0);
		pipar_json_add_fixed(m, "downlink", moved[PIPAR_RES_DOWNLINK], 0);
	}
	b = cJSON_AddObjectToObject(o, "bottleneck");
	cJSON_AddStringToObject(b, "party", lanes[best].party);
	cJSON_AddStringToObject(b, "resource", lanes[best].resource);
	pipar_json_add_fixed(b, "share", spanv > 0 ? lanes[best].busy / spanv : 0, 6);
	return o;
}

int pipar_trace_summarise(const char *const *paths, int n, char **out, char *err)
{
	struct pipar_trace_set set;
	struct span *sp = NULL, *steps = NULL;
	struct lane *lanes = NULL;
	size_t nst = 0;
	double t0 = 1e300, t1 = -1e300;
	cJSON *o = NULL;
	int nl, r = -1;

	*out = NULL;
	if (pipar_trace_read(paths, n, &set, err) < 0)
		return -1;
	if (!set.nev) {
		pipar_errf(err, "no events in the trace%s", n > 1 ? "s" : "");
		goto done;
	}
	sp = malloc(sizeof(*sp) * set.nev);
	steps = malloc(sizeof(*steps) * set.nev);
	lanes = calloc(set.nev, sizeof(*lanes));
	if (!sp || !steps || !lanes) {
		pipar_errf(err, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < set.nev; i++) {
		const struct pipar_trace_ev *e = &set.ev[i];

		sp[i] = (struct span){e->pid, e->tid, e->start, e->start + e->dur, e->bytes};
		t0 = fmin(t0, sp[i].start);
		t1 = fmax(t1, sp[i].end);
		if (strcmp(e->stage, "step") == 0 || strcmp(e->stage, "train") == 0)
			steps[nst++] = sp[i];
	}
	qsort(sp, set.nev, sizeof(*sp), cmp_span);
	qsort(steps, nst, sizeof(*steps), cmp_span);
	nl = make_lanes(&set, sp, set.nev, lanes);
	if ((o = summary_json(lanes, nl, t1 - t0, steps, nst, err)))
		r = (*out = cJSON_Print(o)) ? 0 : pipar_errf(err, "out of memory");
done:
	cJSON_Delete(o);
	free(sp);
	free(steps);
	free(lanes);
	pipar_trace_set_free(&set);
	return r;
}
