#define _POSIX_C_SOURCE 200809L
#include "summary.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "svg.h"
#include "file.h"
#include "util.h"

#define SUMMARY_MAX (64u << 20)

/* ---------------------------------------------------------------- reading */

static const cJSON *field(const cJSON *o, const char *name)
{
	return cJSON_GetObjectItemCaseSensitive(o, name);
}

/* A finite number >= 0 from o[name] into *v; -1 with err otherwise, the
 * place named by epoch ("epoch 3:") and the fault worded by json.h. */
static int num(const cJSON *o, const char *name, const char *path, const char *where,
	       double *v, char *err)
{
	char why[96];

	if (pipar_json_value(field(o, name), 0, INFINITY, 0, v, why, sizeof(why)) < 0)
		return pipar_errf(err, "'%s': %s%s\"%s\": %s", path, where, *where ? " " : "",
				  name, why);
	return 0;
}

/* A whole number in [lo, 10^6]. */
static int count(const cJSON *o, const char *name, const char *path, int lo, int *v, char *err)
{
	char why[96];
	double d = 0;

	if (pipar_json_value(field(o, name), lo, 1e6, 1, &d, why, sizeof(why)) < 0)
		return pipar_errf(err, "'%s': \"%s\": %s", path, name, why);
	*v = (int)d;
	return 0;
}

static int read_epoch(const cJSON *e, int i, const char *path, struct pipar_summary_epoch *ep,
		      char *err)
{
	char where[32];
	const cJSON *res, *acc;
	double ne = 0;

	snprintf(where, sizeof(where), "epoch %d:", i + 1);
	if (!cJSON_IsObject(e))
		return pipar_errf(err, "'%s': %s not an object", path, where);
	if (num(e, "epoch", path, where, &ne, err) < 0)
		return -1;
	if (ne != i + 1)
		return pipar_errf(err, "'%s': %s numbered %g (epochs must count 1, 2, ...)",
				  path, where, ne);
	if (num(e, "seconds", path, where, &ep->seconds, err) < 0 ||
	    num(e, "loss", path, where, &ep->loss, err) < 0 ||
	    num(e, "train_accuracy", path, where, &ep->train_accuracy, err) < 0 ||
	    num(e, "server_busy_seconds", path, where, &ep->server_busy, err) < 0 ||
	    num(e, "server_idle_seconds", path, where, &ep->server_idle, err) < 0 ||
	    num(e, "bytes_up", path, where, &ep->bytes_up, err) < 0 ||
	    num(e, "bytes_down", path, where, &ep->bytes_down, err) < 0)
		return -1;
	ep->test_accuracy = -1;
	acc = field(e, "test_accuracy");
	if (acc) {
		if (num(e, "test_accuracy", path, where, &ep->test_accuracy, err) < 0)
			return -1;
		if (ep->test_accuracy > 1)
			return pipar_errf(err, "'%s': %s \"test_accuracy\": %g is above 1", path, where,
					  ep->test_accuracy);
	}
	if (ep->train_accuracy > 1)
		return pipar_errf(err, "'%s': %s \"train_accuracy\": %g is above 1", path, where,
				  ep->train_accuracy);
	res = field(e, "device_resources");
	if (!cJSON_IsArray(res))
		return pipar_errf(err, "'%s': %s \"device_resources\": %s", path, where,
				  res ? "not an array" : "missing");
	int nd = 0;

	ep->device_idle = 0;
	for (const cJSON *d = res->child; d; d = d->next, nd++) {
		double idle = 0;

		if (!cJSON_IsObject(d) ||
		    num(d, "compute_idle_seconds", path, where, &idle, err) < 0)
			return cJSON_IsObject(d) ? -1 :
			       pipar_errf(err, "'%s': %s a device resource is not an object",
					  path, where);
		ep->device_idle += idle;
	}
	if (nd)
		ep->device_idle /= nd;
	return 0;
}

int pipar_summary_read(const char *path, struct pipar_summary *s, char *err)
{
	char *text;
	cJSON *root;
	const cJSON *mode, *eps, *failed;
	int r = -1;

	memset(s, 0, sizeof(*s));
	snprintf(s->path, sizeof(s->path), "%s", path);
	text = pipar_read_file(path, SUMMARY_MAX, NULL, err);
	if (!text)
		return -1;
	root = pipar_json_parse(text, path, NULL, "pipar-summary/1", 0, err);
	free(text);
	if (!root)
		return -1;
	path = pipar_json_name(path);
	mode = field(root, "mode");
	if (!cJSON_IsString(mode) ||
	    (strcmp(mode->valuestring, "pipar") && strcmp(mode->valuestring, "sfl") &&
	     strcmp(mode->valuestring, "sl") && strcmp(mode->valuestring, "fl"))) {
		pipar_errf(err, "'%s': \"mode\": not one of pipar, sfl, sl, fl", path);
		goto out;
	}
	snprintf(s->mode, sizeof(s->mode), "%s", mode->valuestring);
	if (count(root, "devices", path, 1, &s->devices, err) < 0 ||
	    count(root, "split_point", path, 1, &s->split_point, err) < 0 ||
	    count(root, "parallel_batches", path, 1, &s->parallel_batches, err) < 0)
		goto out;
	failed = field(root, "failed_devices");
	if (!cJSON_IsArray(failed)) {
		pipar_errf(err, "'%s': \"failed_devices\": %s", path,
			   failed ? "not an array" : "missing");
		goto out;
	}
	s->failed = cJSON_GetArraySize(failed);
	eps = field(root, "epochs");
	if (!cJSON_IsArray(eps) || !eps->child) {
		pipar_errf(err, "'%s': %s", path, cJSON_IsArray(eps) ? "no epochs" :
			   "\"epochs\": missing or not an array");
		goto out;
	}
	s->nepochs = cJSON_GetArraySize(eps);
	s->epochs = calloc((size_t)s->nepochs, sizeof(*s->epochs));
	if (!s->epochs) {
		pipar_errf(err, "'%s': out of memory", path);
		goto out;
	}
	int i = 0;

	for (const cJSON *e = eps->child; e; e = e->next, i++)
		if (read_epoch(e, i, path, &s->epochs[i], err) < 0)
			goto out;
	r = 0;
out:
	cJSON_Delete(root);
	if (r < 0)
		pipar_summary_free(s);
	return r;
}

void pipar_summary_free(struct pipar_summary *s)
{
	free(s->epochs);
	s->epochs = NULL;
	s->nepochs = 0;
}

void pipar_summary_label(struct pipar_summary *s, int n)
{
	for (int i = 0; i < n; i++) {
		int shared = 0;

		for (int j = 0; j < n; j++)
			shared |= j != i && strcmp(s[i].mode, s[j].mode) == 0;
		if (!shared) {
			snprintf(s[i].label, sizeof(s[i].label), "%s", s[i].mode);
			continue;
		}
		const char *b = strrchr(s[i].path, '/');

		b = b ? b + 1 : s[i].path;
		size_t len = strlen(b);
		const char *dot = strrchr(b, '.');

		if (dot && dot != b)
			len = (size_t)(dot - b);
		if (len >= sizeof(s[i].label))
			len = sizeof(s[i].label) - 1;
		memcpy(s[i].label, b, len);
		s[i].label[len] = 0;
	}
}

/* ------------------------------------------------------------- comparing */

struct totals {
	double seconds, epoch_mean, server_idle, server_busy, device_idle;
	double bytes_up, bytes_down, final_acc, to_target;   /* < 0: none */
};

static void total(const struct pipar_summary *s, double target, struct totals *t)
{
	memset(t, 0, sizeof(*t));
	t->to_target = -1;
	for (int i = 0; i < s->nepochs; i++) {
		const struct pipar_summary_epoch *e = &s->epochs[i];

		t->seconds += e->seconds;
		t->server_idle += e->server_idle;
		t->server_busy += e->server_busy;
		t->device_idle += e->device_idle;
		t->bytes_up += e->bytes_up;
		t->bytes_down += e->bytes_down;
		if (target > 0 && t->to_target < 0 && e->test_accuracy >= target)
			t->to_target = t->seconds;
	}
	t->epoch_mean = t->seconds / s->nepochs;
	t->final_acc = s->epochs[s->nepochs - 1].test_accuracy;
}

/* The run a baseline names: a mode (one run of it) or a file. */
static int find_baseline(const struct pipar_summary *s, int n, const char *name, char *err)
{
	int found = -1, hits = 0;

	for (int i = 0; i < n; i++)
		if (strcmp(s[i].path, name) == 0)
			return i;
	for (int i = 0; i < n; i++)
		if (strcmp(s[i].mode, name) == 0) {
			found = i;
			hits++;
		}
	if (hits == 1)
		return found;
	if (hits > 1)
		return pipar_errf(err, "--baseline '%s': %d runs have that mode; name the file",
				  name, hits);
	return pipar_errf(err, "--baseline '%s': no run has that mode or file name", name);
}

static double ratio(double a, double b)
{
	return b > 0 ? a / b : NAN;
}

static void put_ratio(FILE *out, double v)
{
	if (isfinite(v))
		fprintf(out, " %.2fx |", v);
	else
		fputs(" - |", out);
}

/* v to 6 decimals (seconds to the microsecond, accuracies, ratios), or
 * null when there is none (v < 0 or not finite). */
static void json_num_or_null(cJSON *o, const char *name, double v)
{
	if (isfinite(v) && v >= 0)
		pipar_json_add_fixed(o, name, v, 6);
	else
		cJSON_AddNullToObject(o, name);
}

int pipar_summary_compare(struct pipar_summary *s, int n,
			  const struct pipar_compare_opts *o, FILE *out, char *err)
{
	struct totals *t;
	int base[4];

	for (int i = 1; i < n; i++)
		if (s[i].devices != s[0].devices)
			return pipar_errf(err, "'%s': %d devices, but '%s' has %d (runs of one "
					  "comparison must have the same number)", s[i].path,
					  s[i].devices, s[0].path, s[0].devices);
	for (int b = 0; b < o->nbaselines; b++)
		if ((base[b] = find_baseline(s, n, o->baseline[b], err)) < 0)
			return -1;
	t = calloc((size_t)n, sizeof(*t));
	if (!t)
		return pipar_errf(err, "out of memory");
	for (int i = 0; i < n; i++)
		total(&s[i], o->target, &t[i]);
	if (o->json) {
		cJSON *root = cJSON_CreateObject(), *runs;
		char *text;

		cJSON_AddStringToObject(root, "format", "pipar-compare/1");
		json_num_or_null(root, "target", o->target > 0 ? o->target : -1);
		runs = cJSON_AddArrayToObject(root, "runs");
		for (int i = 0; i < n; i++) {
			cJSON *r = cJSON_CreateObject();

			cJSON_AddStringToObject(r, "file", s[i].path);
			cJSON_AddStringToObject(r, "label", s[i].label);
			cJSON_AddStringToObject(r, "mode", s[i].mode);
			cJSON_AddNumberToObject(r, "devices", s[i].devices);
			cJSON_AddNumberToObject(r, "failed_devices", s[i].failed);
			cJSON_AddNumberToObject(r, "split_point", s[i].split_point);
			cJSON_AddNumberToObject(r, "parallel_batches", s[i].parallel_batches);
			cJSON_AddNumberToObject(r, "epochs", s[i].nepochs);
			pipar_json_add_fixed(r, "seconds", t[i].seconds, 6);
			pipar_json_add_fixed(r, "epoch_seconds", t[i].epoch_mean, 6);
			json_num_or_null(r, "time_to_target_seconds", t[i].to_target);
			json_num_or_null(r, "final_test_accuracy", t[i].final_acc);
			pipar_json_add_fixed(r, "server_busy_seconds", t[i].server_busy, 6);
			pipar_json_add_fixed(r, "server_idle_seconds", t[i].server_idle, 6);
			pipar_json_add_fixed(r, "device_idle_seconds", t[i].device_idle, 6);
			pipar_json_add_fixed(r, "bytes_up", t[i].bytes_up, 0);
			pipar_json_add_fixed(r, "bytes_down", t[i].bytes_down, 0);
			cJSON *vs = cJSON_AddObjectToObject(r, "versus");

			for (int b = 0; b < o->nbaselines; b++) {
				const struct totals *bt = &t[base[b]];
				cJSON *v = cJSON_AddObjectToObject(vs, s[base[b]].label);

				json_num_or_null(v, "speedup", ratio(bt->epoch_mean, t[i].epoch_mean));
				json_num_or_null(v, "server_idle_reduction",
						 ratio(bt->server_idle, t[i].server_idle));
				json_num_or_null(v, "time_to_target_speedup",
						 bt->to_target > 0 && t[i].to_target > 0 ?
						 bt->to_target / t[i].to_target : -1);
			}
			cJSON_AddItemToArray(runs, r);
		}
		text = cJSON_Print(root);
		cJSON_Delete(root);
		if (!text) {
			free(t);
			return pipar_errf(err, "out of memory");
		}
		fprintf(out, "%s\n", text);
		free(text);
	} else {
		fputs("| run | P | N | epochs | epoch s |", out);
		if (o->target > 0)
			fprintf(out, " to %g%% s |", o->target * 100);
		fputs(" final acc | server idle s | device idle s |", out);
		for (int b = 0; b < o->nbaselines; b++)
			fprintf(out, " speedup vs %s | server idle cut vs %s |", s[base[b]].label,
				s[base[b]].label);
		fputs("\n|---|--:|--:|--:|--:|", out);
		if (o->target > 0)
			fputs("--:|", out);
		fputs("--:|--:|--:|", out);
		for (int b = 0; b < o->nbaselines; b++)
			fputs("--:|--:|", out);
		fputc('\n', out);
		for (int i = 0; i < n; i++) {
			fprintf(out, "| %s | %d | %d | %d | %.2f |", s[i].label, s[i].split_point,
				s[i].parallel_batches, s[i].nepochs, t[i].epoch_mean);
			if (o->target > 0) {
				if (t[i].to_target >= 0)
					fprintf(out, " %.1f |", t[i].to_target);
				else
					fputs(" not reached |", out);
			}
			if (t[i].final_acc >= 0)
				fprintf(out, " %.4f |", t[i].final_acc);
			else
				fputs(" - |", out);
			fprintf(out, " %.1f | %.1f |", t[i].server_idle, t[i].device_idle);
			for (int b = 0; b < o->nbaselines; b++) {
				put_ratio(out, ratio(t[base[b]].epoch_mean, t[i].epoch_mean));
				put_ratio(out, ratio(t[base[b]].server_idle, t[i].server_idle));
			}
			fputc('\n', out);
		}
	}
	free(t);
	if (fflush(out) != 0 || ferror(out))
		return pipar_errf(err, "cannot write the comparison: %s", strerror(errno));
	return 0;
}

/* -------------------------------------------------------------- plotting */

static const char *const palette[] = {
	"#1f5fa8", "#d1495b", "#2e933c", "#edae49", "#6a4c93", "#00798c", "#8c564b", "#444444",
};

static void draw_plot(FILE *f, const struct pipar_summary *s, int n, const char *title,
		      double target)
{
	const double W = 860, H = 500, L = 70, R = 170, T = 40, B = 55;
	const double pw = W - L - R, ph = H - T - B;
	double xmax = 0, ymin = 1, ymax = 0, xs, ys;

	for (int i = 0; i < n; i++) {
		double t = 0;

		for (int e = 0; e < s[i].nepochs; e++) {
			t += s[i].epochs[e].seconds;
			if (s[i].epochs[e].test_accuracy < ymin)
				ymin = s[i].epochs[e].test_accuracy;
			if (s[i].epochs[e].test_accuracy > ymax)
				ymax = s[i].epochs[e].test_accuracy;
		}
		if (t > xmax)
			xmax = t;
	}
	if (target > 0 && target < ymin)
		ymin = target;
	if (target > ymax)
		ymax = target;
	ymin = floor(ymin * 20) / 20;
	ymax = ceil((ymax + 0.01) * 20) / 20;      /* room above the best point */
	if (ymax > 1)
		ymax = 1;
	if (ymax - ymin < 0.05)
		ymax = ymin + 0.05;
	xs = pipar_svg_tick(xmax, 8);
	xmax = ceil(xmax / xs) * xs;
	if (!(xmax > 0))
		xmax = 1;
	ys = pipar_svg_tick(ymax - ymin, 8);
#define PX(x) (L + (x) / xmax * pw)
#define PY(y) (T + ph - ((y) - ymin) / (ymax - ymin) * ph)
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
		"viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n"
		"<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"white\"/>\n",
		W, H, W, H, W, H);
	fprintf(f, "<text x=\"%.1f\" y=\"24\" font-size=\"15\" text-anchor=\"middle\">", L + pw / 2);
	pipar_svg_text(f, title && *title ? title : "Test accuracy against training time");
	fputs("</text>\n<g class=\"grid\" stroke=\"#dddddd\">\n", f);
	for (double x = 0; x <= xmax + xs * 1e-9; x += xs)
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", PX(x), T,
			PX(x), T + ph);
	for (double y = ceil(ymin / ys - 1e-9) * ys; y <= ymax + ys * 1e-9; y += ys)
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", L, PY(y),
			L + pw, PY(y));
	fputs("</g>\n<g class=\"axes\" fill=\"#333333\">\n", f);
	fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
		"stroke=\"#333333\"/>\n", L, T, pw, ph);
	for (double x = 0; x <= xmax + xs * 1e-9; x += xs)
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", PX(x),
			T + ph + 18, x);
	for (double y = ceil(ymin / ys - 1e-9) * ys; y <= ymax + ys * 1e-9; y += ys)
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.0f%%</text>\n", L - 6,
			PY(y) + 4, y * 100);
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">training time (s)</text>\n",
		L + pw / 2, H - 14);
	fprintf(f, "<text transform=\"translate(18 %.1f) rotate(-90)\" text-anchor=\"middle\">"
		"test accuracy</text>\n</g>\n", T + ph / 2);
	if (target > 0) {
		fprintf(f, "<g class=\"target\"><line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
			"stroke=\"#888888\" stroke-dasharray=\"6 4\"/>", L, PY(target), L + pw,
			PY(target));
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#666666\" text-anchor=\"end\">"
			"target %g%%</text></g>\n", L + pw - 4, PY(target) - 4, target * 100);
	}
	for (int i = 0; i < n; i++) {
		const char *c = palette[i % (sizeof(palette) / sizeof(palette[0]))];
		double t = 0;

		/* The same colour for a mode in every picture, when modes are unique. */
		if (strcmp(s[i].label, s[i].mode) == 0)
			c = palette[strcmp(s[i].mode, "fl") == 0 ? 0 : strcmp(s[i].mode, "sl") == 0 ? 1 :
				    strcmp(s[i].mode, "sfl") == 0 ? 2 : 3];

		fprintf(f, "<g class=\"run\" data-label=\"");
		pipar_svg_text(f, s[i].label);
		fprintf(f, "\" stroke=\"%s\" fill=\"%s\">\n<polyline fill=\"none\" "
			"stroke-width=\"2\" points=\"", c, c);
		for (int e = 0; e < s[i].nepochs; e++) {
			t += s[i].epochs[e].seconds;
			fprintf(f, "%s%.1f,%.1f", e ? " " : "", PX(t), PY(s[i].epochs[e].test_accuracy));
		}
		fputs("\"/>\n", f);
		t = 0;
		for (int e = 0; e < s[i].nepochs; e++) {
			t += s[i].epochs[e].seconds;
			fprintf(f, "<circle class=\"pt\" cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\"><title>",
				PX(t), PY(s[i].epochs[e].test_accuracy));
			pipar_svg_text(f, s[i].label);
			fprintf(f, ", epoch %d: %.2f%% at %.1f s</title></circle>\n", e + 1,
				s[i].epochs[e].test_accuracy * 100, t);
		}
		fputs("</g>\n", f);
		fprintf(f, "<g class=\"legend\"><line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
			"stroke=\"%s\" stroke-width=\"3\"/><text x=\"%.1f\" y=\"%.1f\">",
			L + pw + 16, T + 10 + 20.0 * i, L + pw + 40, T + 10 + 20.0 * i, c,
			L + pw + 46, T + 14 + 20.0 * i);
		pipar_svg_text(f, s[i].label);
		fputs("</text></g>\n", f);
	}
	fputs("</svg>\n", f);
#undef PX
#undef PY
}

int pipar_summary_plot(struct pipar_summary *s, int n, const char *title,
		       double target, const char *path, char *err)
{
	struct pipar_out o;

	for (int i = 0; i < n; i++)
		for (int e = 0; e < s[i].nepochs; e++)
			if (s[i].epochs[e].test_accuracy < 0)
				return pipar_errf(err, "'%s': epoch %d has no test accuracy (give "
						  "pipar-serve --data)", s[i].path, e + 1);
	if (pipar_out_open(&o, path, err) < 0)
		return -1;
	draw_plot(o.f, s, n, title, target);
	return pipar_out_close(&o, 0, err);
}

/* ---------------------------------------------------------------- writing */

cJSON *pipar_summary_epoch_json(const struct pipar_summary_record *r)
{
	static const char *const names[3][2] = {
		{"compute_busy_seconds", "compute_idle_seconds"},
		{"uplink_busy_seconds", "uplink_idle_seconds"},
		{"downlink_busy_seconds", "downlink_idle_seconds"},
	};
	cJSON *e = cJSON_CreateObject(), *res;

	if (!e)
		return NULL;
	cJSON_AddNumberToObject(e, "epoch", r->epoch);
	pipar_json_add_fixed(e, "seconds", r->seconds, 6);
	pipar_json_add_fixed(e, "loss", r->loss, 6);
	pipar_json_add_fixed(e, "train_accuracy", r->train_accuracy, 6);
	cJSON_AddNumberToObject(e, "devices", r->devices);
	pipar_json_add_fixed(e, "bytes_up", r->bytes_up, 0);
	pipar_json_add_fixed(e, "bytes_down", r->bytes_down, 0);
	res = cJSON_AddArrayToObject(e, "device_resources");
	for (int k = 0; k < r->ndev; k++) {
		cJSON *d = cJSON_CreateObject();

		cJSON_AddNumberToObject(d, "device", r->dev[k].device);
		for (int j = 0; j < 3; j++) {
			pipar_json_add_fixed(d, names[j][0], r->dev[k].busy[j], 6);
			pipar_json_add_fixed(d, names[j][1], r->dev[k].idle[j], 6);
		}
		cJSON_AddItemToArray(res, d);
	}
	pipar_json_add_fixed(e, "server_busy_seconds", r->server_busy, 6);
	pipar_json_add_fixed(e, "server_idle_seconds", r->server_idle, 6);
	if (r->tested) {
		pipar_json_add_fixed(e, "test_accuracy", r->test_accuracy, 6);
		pipar_json_add_fixed(e, "test_loss", r->test_loss, 6);
	}
	return e;
}

char *pipar_summary_epoch_line(const cJSON *entry)
{
	cJSON *r = cJSON_CreateObject();
	char *line;

	cJSON_AddStringToObject(r, "format", "pipar-epoch/1");
	for (const cJSON *it = entry->child; it; it = it->next)
		cJSON_AddItemToObject(r, it->string, cJSON_Duplicate(it, 1));
	line = cJSON_PrintUnformatted(r);
	cJSON_Delete(r);
	return line;
}

cJSON *pipar_summary_doc(const char *mode, int devices, int split_point, int parallel_batches,
			 cJSON *epochs)
{
	cJSON *sum = cJSON_CreateObject();

	cJSON_AddStringToObject(sum, "format", "pipar-summary/1");
	cJSON_AddStringToObject(sum, "mode", mode);
	cJSON_AddNumberToObject(sum, "devices", devices);
	cJSON_AddNumberToObject(sum, "split_point", split_point);
	cJSON_AddNumberToObject(sum, "parallel_batches", parallel_batches);
	cJSON_AddItemToObject(sum, "epochs", epochs);
	cJSON_AddArrayToObject(sum, "failed_devices");
	return sum;
}

void pipar_summary_add_failed(cJSON *doc, int device, const char *id, const char *fault)
{
	cJSON *f = cJSON_CreateObject();

	cJSON_AddNumberToObject(f, "device", device);
	cJSON_AddStringToObject(f, "id", id);
	cJSON_AddStringToObject(f, "fault", fault);
	cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(doc, "failed_devices"), f);
}

int pipar_summary_save(const cJSON *doc, const char *path, char *err)
{
	/* On standard output it follows the epoch records as one line. */
	char *text = strcmp(path, "-") == 0 ? cJSON_PrintUnformatted(doc) : cJSON_Print(doc);
	struct pipar_out o;
	int bad, e;

	if (!text)
		return pipar_errf(err, "cannot write the summary: out of memory");
	if (pipar_out_open(&o, path, err) < 0) {
		free(text);
		return -1;
	}
	bad = fprintf(o.f, "%s\n", text) < 0;
	e = errno;
	free(text);
	if (pipar_out_close(&o, bad, err) < 0) {
		if (bad)
			pipar_errf(err, "cannot write '%s': %s", path, strerror(e));
		return -1;
	}
	return 0;
}
