#define _POSIX_C_SOURCE 200809L
#include "timeline.h"

#include <cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "svg.h"
#include "trace.h"
#include "util.h"

/* Geometry of the picture, in pixels. */
enum {
	WIDTH = 1200,
	LEFT = 230,             /* lane labels to the left of this */
	RIGHT = 20,
	TOP = 40,               /* the heading above */
	LANE_H = 22,
	LANE_PITCH = 28,
	LEGEND_COLS = 4,
	LEGEND_COL_W = 235,
	LEGEND_ROW_H = 20,
};

#define PLOT_W ((double)(WIDTH - LEFT - RIGHT))

/* Colours by stage: the device's compute stages in blues and greens, the
 * links in reds and browns, the server in orange. */
static const struct stage_style {
	const char *stage, *label, *colour;
} styles[] = {
	{"forward", "device forward", "#4e79a7"},
	{"backward", "device backward", "#a0cbe8"},
	{"step", "device optimiser step", "#59a14f"},
	{"train", "device training (whole model)", "#8cd17d"},
	{"upload", "upload (activations)", "#e15759"},
	{"download", "download (gradients)", "#ff9d9a"},
	{"server", "server forward and backward", "#f28e2b"},
	{"aggregate", "aggregate", "#b07aa1"},
	{"parameters up", "parameters up", "#9c755f"},
	{"parameters down", "parameters down", "#d7b5a6"},
	{"control up", "control up", "#79706e"},
	{"control down", "control down", "#bab0ac"},
	{NULL, "other stages", "#d4a6c8"},      /* OTHER: anything else */
};

#define NSTYLES ((int)(sizeof(styles) / sizeof(styles[0])))
#define OTHER (NSTYLES - 1)

/* The trees of the files are freed as soon as they are read: a known
 * stage points into the table, any other name is the event's own copy. */
struct tl_event {
	const char *stage;      /* malloc'd when style is OTHER */
	int pid, tid, file, style, iteration, micro, device, epoch;
	double start, dur, bytes;       /* seconds; bytes < 0: none recorded */
};

/* A party named in a file: by a metadata event (name: its process_name,
 * or NULL) or by one of its events. */
struct tl_claim {
	int pid, file;
	char *name;             /* malloc'd */
};

struct tl_run {
	const char *const *paths;
	int n;
	struct tl_event *ev;
	size_t nev, capev;
	struct tl_claim *cl;
	size_t ncl, capcl;
};

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

/* Records that file names party pid, with a copy of its name if any. */
static int add_claim(struct tl_run *r, int pid, int file, const char *name, char *err)
{
	char *copy = NULL;

	if (name && !(copy = strdup(name)))
		return pipar_errf(err, "out of memory");
	if (r->ncl == r->capcl) {
		size_t nc = r->capcl ? 2 * r->capcl : 64;
		struct tl_claim *ncl = realloc(r->cl, sizeof(*ncl) * nc);

		if (!ncl) {
			free(copy);
			return pipar_errf(err, "out of memory");
		}
		r->cl = ncl;
		r->capcl = nc;
	}
	r->cl[r->ncl++] = (struct tl_claim){pid, file, copy};
	return 0;
}

/* x as an integer in [lo, hi] in *out; -1 if it is not one. */
static int int_in(const cJSON *x, double lo, double hi, int *out)
{
	double v;

	if (!cJSON_IsNumber(x))
		return -1;
	v = x->valuedouble;
	if (!(v >= lo && v <= hi) || v != floor(v))
		return -1;
	*out = (int)v;
	return 0;
}

static int style_of(const char *stage)
{
	int i = 0;

	for (; styles[i].stage; i++)
		if (strcmp(styles[i].stage, stage) == 0)
			break;
	return i;
}

/* Reads one complete event, k-th of file f; -1 with err if it is not
 * valid. */
static int load_event(struct tl_run *r, int f, size_t k, const cJSON *e, int pid, const char *name,
		      char *err)
{
	const char *path = pipar_json_name(r->paths[f]);
	const cJSON *tid = cJSON_GetObjectItemCaseSensitive(e, "tid");
	const cJSON *ts = cJSON_GetObjectItemCaseSensitive(e, "ts");
	const cJSON *du = cJSON_GetObjectItemCaseSensitive(e, "dur");
	const cJSON *args = cJSON_GetObjectItemCaseSensitive(e, "args");
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(args, "iteration");
	const cJSON *mi = cJSON_GetObjectItemCaseSensitive(args, "micro");
	const cJSON *dv = cJSON_GetObjectItemCaseSensitive(args, "device");
	const cJSON *by = cJSON_GetObjectItemCaseSensitive(args, "bytes");
	const char *missing = !tid ? "tid" : !ts ? "ts" : !du ? "dur" : NULL;
	struct tl_event ev = {name, pid, 0, f, 0, -1, -1, -1, -1, 0, 0, -1};
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
	ev.style = style_of(name);
	ev.stage = ev.style == OTHER ? strdup(name) : styles[ev.style].stage;
	if (!ev.stage)
		return pipar_errf(err, "out of memory");
	/* The server records the epoch an aggregation closes where other
	 * events have their iteration: it belongs to no iteration. */
	if (strcmp(name, "aggregate") == 0) {
		ev.epoch = ev.iteration;
		ev.iteration = -1;
	}
	if (r->nev == r->capev) {
		size_t nc = r->capev ? 2 * r->capev : 4096;
		struct tl_event *ne = realloc(r->ev, sizeof(*ne) * nc);

		if (!ne) {
			if (ev.style == OTHER)
				free((char *)ev.stage);
			return pipar_errf(err, "out of memory");
		}
		r->ev = ne;
		r->capev = nc;
	}
	r->ev[r->nev++] = ev;
	return add_claim(r, pid, f, NULL, err);
}

/* Reads trace file f: its complete events and the parties it names. */
static int load_file(struct tl_run *r, int f, char *err)
{
	const char *path = pipar_json_name(r->paths[f]);
	size_t k = 0;
	int rc = 0;
	char *text = pipar_read_file(r->paths[f], 1u << 30, NULL, err);
	const cJSON *evs;
	cJSON *root;

	if (!text)
		return -1;
	root = pipar_json_parse(text, r->paths[f], NULL, PIPAR_TRACE_FORMAT,
				PIPAR_JSON_FORMAT_OPTIONAL, err);
	free(text);
	if (!root)
		return -1;
	evs = cJSON_GetObjectItemCaseSensitive(root, "traceEvents");
	if (!cJSON_IsArray(evs)) {
		cJSON_Delete(root);
		return pipar_errf(err, "'%s': not a trace (no traceEvents array)", path);
	}
	for (const cJSON *e = evs->child; e; e = e->next) {
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

			rc = add_claim(r, p, f, named ? an->valuestring : NULL, err);
		} else if (strcmp(ph->valuestring, "X") == 0) {
			rc = load_event(r, f, k, e, p, nm->valuestring, err);
		}
		if (rc < 0)
			break;
	}
	cJSON_Delete(root);
	return rc;
}

static int cmp_claim(const void *a, const void *b)
{
	const struct tl_claim *x = a, *y = b;

	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	return x->file < y->file ? -1 : x->file > y->file;
}

static int cmp_event(const void *a, const void *b)
{
	const struct tl_event *x = a, *y = b;

	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	if (x->tid != y->tid)
		return x->tid < y->tid ? -1 : 1;
	return x->start < y->start ? -1 : x->start > y->start;
}

/* The files as "'a', 'b' and 'c'" (the last ones as "and N other files"
 * if that is too long), for messages about all of them. */
static const char *files_str(const struct tl_run *r, char *buf, size_t size)
{
	size_t len = 0;
	int i = 0;

	buf[0] = 0;
	for (; i < r->n && len < size / 2; i++) {
		len += (size_t)snprintf(buf + len, size - len, "%s'%.*s'",
					i == 0 ? "" : i == r->n - 1 ? " and " : ", ",
					r->n == 1 ? 200 : 60, pipar_json_name(r->paths[i]));
		if (len >= size)
			return buf;
	}
	if (i < r->n)
		snprintf(buf + len, size - len, " and %d other file%s", r->n - i,
			 r->n - i > 1 ? "s" : "");
	return buf;
}

/* Keeps the events to draw, in lane order; -1 (-2: too many) with err. */
static int select_events(struct tl_run *r, int it_from, int it_to, char *err)
{
	char fs[240];
	size_t m = 0;

	if (it_from >= 0) {
		double w0 = INFINITY, w1 = -INFINITY;

		for (size_t i = 0; i < r->nev; i++) {
			const struct tl_event *e = &r->ev[i];

			if (e->iteration >= it_from && e->iteration <= it_to) {
				w0 = fmin(w0, e->start);
				w1 = fmax(w1, e->start + e->dur);
			}
		}
		if (!(w0 <= w1))
			return pipar_errf(err, "%s: no events of iterations %d to %d",
					  files_str(r, fs, sizeof(fs)), it_from, it_to);
		for (size_t i = 0; i < r->nev; i++) {
			const struct tl_event *e = &r->ev[i];

			if ((e->iteration >= it_from && e->iteration <= it_to) ||
			    (e->iteration < 0 && e->start >= w0 && e->start + e->dur <= w1))
				r->ev[m++] = *e;
			else if (e->style == OTHER)
				free((char *)e->stage);
		}
		r->nev = m;
	}
	if (!r->nev)
		return pipar_errf(err, "%s: no events", files_str(r, fs, sizeof(fs)));
	if (r->nev > PIPAR_TIMELINE_MAX_EVENTS) {
		pipar_errf(err, "%s: %zu events to draw, more than %d", files_str(r, fs, sizeof(fs)),
			   r->nev, PIPAR_TIMELINE_MAX_EVENTS);
		return -2;
	}
	qsort(r->ev, r->nev, sizeof(*r->ev), cmp_event);
	return 0;
}

static int cmp_claim_pid(const void *a, const void *b)
{
	const struct tl_claim *x = a, *y = b;

	return x->pid < y->pid ? -1 : x->pid > y->pid;
}

/* The name of party pid: its process_name, or "server" or "device N". */
static const char *party_name(const struct tl_run *r, int pid, char *buf, size_t size)
{
	struct tl_claim key = {pid, 0, NULL};
	const struct tl_claim *c = bsearch(&key, r->cl, r->ncl, sizeof(*c), cmp_claim_pid);

	snprintf(buf, size, pid == 0 ? "server" : "device %d", pid);
	/* bsearch finds some claim of pid; its name, if any, is in the group */
	if (c) {
		while (c > r->cl && c[-1].pid == pid)
			c--;
		for (; c < r->cl + r->ncl && c->pid == pid; c++)
			if (c->name) {
				snprintf(buf, size, "%s", c->name);
				break;
			}
	}
	return buf;
}

static void write_svg(FILE *f, const struct tl_run *r, int it_from, int it_to)
{
	static const char *const res_names[] = {"", "compute", "uplink", "downlink"};
	double t0 = INFINITY, t1 = -INFINITY, span, step, x_scale;
	int nl = 0, nparties = 0, present[NSTYLES] = {0}, nkeys = 0, height, y_axis, y_leg;
	char name[128];

	for (size_t i = 0; i < r->nev; i++) {
		const struct tl_event *e = &r->ev[i];

		t0 = fmin(t0, e->start);
		t1 = fmax(t1, e->start + e->dur);
		present[e->style] = 1;
		if (i == 0 || e->pid != e[-1].pid || e->tid != e[-1].tid)
			nl++;
		if (i == 0 || e->pid != e[-1].pid)
			nparties++;
	}
	for (int s = 0; s < NSTYLES; s++)
		nkeys += present[s];
	span = fmax(t1 - t0, 1e-9);
	x_scale = PLOT_W / span;
	step = pipar_svg_tick(span, 10);
	y_axis = TOP + nl * LANE_PITCH;
	y_leg = y_axis + 48;
	height = y_leg + (nkeys + LEGEND_COLS - 1) / LEGEND_COLS * LEGEND_ROW_H + 10;

	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
		"viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
		"<title>pipar timeline</title>\n"
		"<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n",
		WIDTH, height, WIDTH, height, WIDTH, height);
	fprintf(f, "<text class=\"heading\" x=\"%d\" y=\"24\" font-size=\"14\">%d part%s, "
		"%d lane%s, %zu event%s over %.3f s",
		LEFT, nparties, nparties == 1 ? "y" : "ies", nl, nl == 1 ? "" : "s", r->nev,
		r->nev == 1 ? "" : "s", t1 - t0);
	if (it_from >= 0 && it_from == it_to)
		fprintf(f, ", iteration %d", it_from);
	else if (it_from >= 0)
		fprintf(f, ", iterations %d to %d", it_from, it_to);
	fprintf(f, "</text>\n");

	/* Lanes: background and label. */
	fprintf(f, "<g class=\"lanes\">\n");
	for (size_t i = 0, l = 0; i < r->nev; i++) {
		const struct tl_event *e = &r->ev[i];
		int y = TOP + (int)l * LANE_PITCH;

		if (i > 0 && e->pid == e[-1].pid && e->tid == e[-1].tid)
			continue;
		party_name(r, e->pid, name, sizeof(name));
		fprintf(f, "<g class=\"lane\" data-pid=\"%d\" data-tid=\"%d\">"
			"<rect class=\"lane-bg\" x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%d\" "
			"fill=\"#f2f2f2\"/><text class=\"lane-label\" x=\"%d\" y=\"%d\" "
			"text-anchor=\"end\">",
			e->pid, e->tid, LEFT, y, PLOT_W, LANE_H, LEFT - 8, y + LANE_H / 2 + 4);
		pipar_svg_text(f, name);
		if (e->tid >= PIPAR_RES_COMPUTE && e->tid <= PIPAR_RES_DOWNLINK)
			fprintf(f, " %s</text></g>\n", res_names[e->tid]);
		else
			fprintf(f, " thread %d</text></g>\n", e->tid);
		l++;
	}
	fprintf(f, "</g>\n");

	/* The time axis, with grid lines across the lanes. */
	fprintf(f, "<g class=\"axis\" stroke=\"#999999\">\n<line x1=\"%d\" y1=\"%d\" x2=\"%.0f\" "
		"y2=\"%d\"/>\n", LEFT, y_axis, LEFT + PLOT_W, y_axis);
	for (int i = 0; i * step <= span * (1 + 1e-9); i++) {
		double x = LEFT + i * step * x_scale;
		int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);

		fprintf(f, "<line class=\"grid\" x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\" "
			"stroke=\"#dddddd\"/><line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\"/>"
			"<text class=\"tick\" x=\"%.2f\" y=\"%d\" text-anchor=\"middle\" "
			"stroke=\"none\" fill=\"#333333\">",
			x, TOP - 4, x, y_axis, x, y_axis, x, y_axis + 5, x, y_axis + 18);
		if (step < 1e6)
			fprintf(f, "%.*f</text>\n", decimals, i * step);
		else
			fprintf(f, "%g</text>\n", i * step);
	}
	fprintf(f, "<text x=\"%.0f\" y=\"%d\" text-anchor=\"middle\" stroke=\"none\" "
		"fill=\"#333333\">seconds from the first event drawn</text>\n</g>\n",
		LEFT + PLOT_W / 2, y_axis + 34);

	/* One box per event, its details as a tooltip. */
	fprintf(f, "<g class=\"events\">\n");
	for (size_t i = 0, l = 0; i < r->nev; i++) {
		const struct tl_event *e = &r->ev[i];
		double x = LEFT + (e->start - t0) * x_scale, w = fmax(e->dur * x_scale, 1);

		if (i > 0 && (e->pid != e[-1].pid || e->tid != e[-1].tid))
			l++;
		fprintf(f, "<rect class=\"ev\" data-stage=\"");
		pipar_svg_text(f, e->stage);
		fprintf(f, "\" data-iteration=\"%d\" data-micro=\"%d\" x=\"%.2f\" y=\"%d\" "
			"width=\"%.2f\" height=\"%d\" fill=\"%s\"%s><title>",
			e->iteration, e->micro, x, TOP + (int)l * LANE_PITCH, w, LANE_H,
			styles[e->style].colour, w >= 3 ? " stroke=\"#ffffff\" stroke-width=\"0.5\"" : "");
		pipar_svg_text(f, e->stage);
		if (e->device >= 0)
			fprintf(f, " for device %d", e->device);
		if (e->epoch >= 0)
			fprintf(f, " closing epoch %d", e->epoch);
		fprintf(f, ", iteration %d, micro-batch %d, start ", e->iteration, e->micro);
		/* (%f of an absurd time in a hostile trace would run to 300 digits) */
		fprintf(f, e->start - t0 < 1e9 ? "%.6f s" : "%g s", e->start - t0);
		fprintf(f, e->dur < 1e6 ? ", duration %.3f ms" : ", duration %g ms", e->dur * 1e3);
		if (e->bytes >= 0)
			fprintf(f, ", %.0f bytes", e->bytes);
		fprintf(f, "</title></rect>\n");
	}
	fprintf(f, "</g>\n");

	/* The legend: the stages drawn, in the order of the table. */
	fprintf(f, "<g class=\"legend\">\n");
	for (int s = 0, k = 0; s < NSTYLES; s++) {
		int x = LEFT + k % LEGEND_COLS * LEGEND_COL_W;
		int y = y_leg + k / LEGEND_COLS * LEGEND_ROW_H;

		if (!present[s])
			continue;
		fprintf(f, "<g class=\"key\" data-stage=\"%s\"><rect class=\"swatch\" x=\"%d\" "
			"y=\"%d\" width=\"14\" height=\"14\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">"
			"%s</text></g>\n",
			styles[s].stage ? styles[s].stage : "other", x, y, styles[s].colour, x + 20,
			y + 11, styles[s].label);
		k++;
	}
	fprintf(f, "</g>\n</svg>\n");
}

/* Writes the picture to path, or standard output for "-". */
static int write_out(const struct tl_run *r, int it_from, int it_to, const char *path, char *err)
{
	struct pipar_out o;

	if (pipar_out_open(&o, path, err) < 0)
		return -1;
	write_svg(o.f, r, it_from, it_to);
	return pipar_out_close(&o, 0, err);
}

int pipar_timeline_svg(const char *const *paths, int n, int it_from, int it_to,
		       const char *out_path, char *err)
{
	struct tl_run r = {paths, n, NULL, 0, 0, NULL, 0, 0};
	int rc = -1;

	if (n < 1)
		return pipar_errf(err, "no trace files");
	if (it_from >= 0 && it_to < it_from)
		return pipar_errf(err, "iterations %d to %d: an empty range", it_from, it_to);
	for (int f = 0; f < n; f++)
		if (load_file(&r, f, err) < 0)
			goto done;
	/* One run has one file per party: a party in two files means traces
	 * of different runs (or one file given twice). */
	if (r.ncl)
		qsort(r.cl, r.ncl, sizeof(*r.cl), cmp_claim);
	for (size_t i = 1; i < r.ncl; i++)
		if (r.cl[i].pid == r.cl[i - 1].pid && r.cl[i].file != r.cl[i - 1].file) {
			pipar_errf(err, "'%s': party %d is also in '%s': not the traces of one run",
				   pipar_json_name(paths[r.cl[i].file]), r.cl[i].pid,
				   pipar_json_name(paths[r.cl[i - 1].file]));
			goto done;
		}
	rc = select_events(&r, it_from, it_to, err);
	if (rc == 0)
		rc = write_out(&r, it_from, it_to, out_path, err);
done:
	for (size_t i = 0; i < r.nev; i++)
		if (r.ev[i].style == OTHER)
			free((char *)r.ev[i].stage);
	for (size_t i = 0; i < r.ncl; i++)
		free(r.cl[i].name);
	free(r.ev);
	free(r.cl);
	return rc;
}
