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
#include "file.h"
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

/* An event to draw: one of the run's (pipar_trace_read), with its style. */
struct tl_event {
	const char *stage;      /* the style's, or the set's string */
	int pid, tid, file, style, iteration, micro, device, epoch;
	double start, dur, bytes;       /* seconds; bytes < 0: none recorded */
};

struct tl_run {
	const char *const *paths;
	int n;
	struct pipar_trace_set set;     /* the files as read */
	struct tl_event *ev;
	size_t nev;
};

static int style_of(const char *stage)
{
	int i = 0;

	for (; styles[i].stage; i++)
		if (strcmp(styles[i].stage, stage) == 0)
			break;
	return i;
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

/* What the picture's parts share: its time span and geometry. */
struct frame {
	double t0, t1, span, x_scale;
	int nl, nparties, nkeys, height, y_axis, y_leg;
	int present[NSTYLES];
};

/* Lanes: background and label, one per party and resource. */
static void draw_lanes(FILE *f, const struct tl_run *r)
{
	static const char *const res_names[] = {"", "compute", "uplink", "downlink"};
	char name[128];

	fprintf(f, "<g class=\"lanes\">\n");
	for (size_t i = 0, l = 0; i < r->nev; i++) {
		const struct tl_event *e = &r->ev[i];
		int y = TOP + (int)l * LANE_PITCH;

		if (i > 0 && e->pid == e[-1].pid && e->tid == e[-1].tid)
			continue;
		pipar_trace_party_name(&r->set, e->pid, name, sizeof(name));
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

}

/* The time axis, with grid lines across the lanes. */
static void draw_axis(FILE *f, const struct frame *fr)
{
	double step = pipar_svg_tick(fr->span, 10), span = fr->span, x_scale = fr->x_scale;
	int y_axis = fr->y_axis;

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

}

/* One box per event, its details as a tooltip. */
static void draw_events(FILE *f, const struct tl_run *r, const struct frame *fr)
{
	double t0 = fr->t0, x_scale = fr->x_scale;

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

}

/* The legend: the stages drawn, in the order of the table. */
static void draw_legend(FILE *f, const struct frame *fr)
{
	const int *present = fr->present;
	int y_leg = fr->y_leg;

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
}

static void write_svg(FILE *f, const struct tl_run *r, int it_from, int it_to)
{
	struct frame fr = {.t0 = INFINITY, .t1 = -INFINITY};

	for (size_t i = 0; i < r->nev; i++) {
		const struct tl_event *e = &r->ev[i];

		fr.t0 = fmin(fr.t0, e->start);
		fr.t1 = fmax(fr.t1, e->start + e->dur);
		fr.present[e->style] = 1;
		if (i == 0 || e->pid != e[-1].pid || e->tid != e[-1].tid)
			fr.nl++;
		if (i == 0 || e->pid != e[-1].pid)
			fr.nparties++;
	}
	for (int s = 0; s < NSTYLES; s++)
		fr.nkeys += fr.present[s];
	fr.span = fmax(fr.t1 - fr.t0, 1e-9);
	fr.x_scale = PLOT_W / fr.span;
	fr.y_axis = TOP + fr.nl * LANE_PITCH;
	fr.y_leg = fr.y_axis + 48;
	fr.height = fr.y_leg + (fr.nkeys + LEGEND_COLS - 1) / LEGEND_COLS * LEGEND_ROW_H + 10;

	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
		"viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
		"<title>pipar timeline</title>\n"
		"<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n",
		WIDTH, fr.height, WIDTH, fr.height, WIDTH, fr.height);
	fprintf(f, "<text class=\"heading\" x=\"%d\" y=\"24\" font-size=\"14\">%d part%s, "
		"%d lane%s, %zu event%s over %.3f s",
		LEFT, fr.nparties, fr.nparties == 1 ? "y" : "ies", fr.nl, fr.nl == 1 ? "" : "s", r->nev,
		r->nev == 1 ? "" : "s", fr.t1 - fr.t0);
	if (it_from >= 0 && it_from == it_to)
		fprintf(f, ", iteration %d", it_from);
	else if (it_from >= 0)
		fprintf(f, ", iterations %d to %d", it_from, it_to);
	fprintf(f, "</text>\n");
	draw_lanes(f, r);
	draw_axis(f, &fr);
	draw_events(f, r, &fr);
	draw_legend(f, &fr);
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

/* The events of the set with their styles; the server records the epoch
 * an aggregation closes where other events have their iteration: it
 * belongs to no iteration. */
static int styled(struct tl_run *r, char *err)
{
	if (!(r->ev = malloc(sizeof(*r->ev) * (r->set.nev ? r->set.nev : 1))))
		return pipar_errf(err, "out of memory");
	for (size_t i = 0; i < r->set.nev; i++) {
		const struct pipar_trace_ev *e = &r->set.ev[i];
		int style = style_of(e->stage);
		struct tl_event t = {style == OTHER ? e->stage : styles[style].stage, e->pid, e->tid,
				     e->file, style, e->iteration, e->micro, e->device, -1,
				     e->start, e->dur, e->bytes};

		if (strcmp(e->stage, "aggregate") == 0) {
			t.epoch = t.iteration;
			t.iteration = -1;
		}
		r->ev[i] = t;
	}
	r->nev = r->set.nev;
	return 0;
}

int pipar_timeline_svg(const char *const *paths, int n, int it_from, int it_to,
		       const char *out_path, char *err)
{
	struct tl_run r = {.paths = paths, .n = n};
	int rc = -1;

	if (n < 1)
		return pipar_errf(err, "no trace files");
	if (it_from >= 0 && it_to < it_from)
		return pipar_errf(err, "iterations %d to %d: an empty range", it_from, it_to);
	if (pipar_trace_read(paths, n, &r.set, err) < 0)
		return -1;
	if (styled(&r, err) == 0 && (rc = select_events(&r, it_from, it_to, err)) == 0)
		rc = write_out(&r, it_from, it_to, out_path, err);
	free(r.ev);
	pipar_trace_set_free(&r.set);
	return rc;
}
