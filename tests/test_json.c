/*
 * The shared preamble of the JSON readers (lib/json.h), and every reader
 * given a file of another kind: each names both kinds, and the file as
 * it was given, before it looks at any other field.  Then a trace written
 * and summarised: the reader takes what the writer writes, and the
 * summary carries its format and numbers of sensible precision.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "json.h"
#include "model.h"
#include "plan.h"
#include "profile.h"
#include "summary.h"
#include "tap.h"
#include "timeline.h"
#include "trace.h"

static char dir[] = "/tmp/pipar-json-XXXXXX";

/* One document of each kind, each with fields only its own reader knows
 * (so that a reader that looked at them before the format would refuse
 * the field, not the kind). */
static const struct doc {
	const char *kind, *file, *text;
} docs[] = {
	{"pipar-profile/1", "dev.json",
	 "{\"format\":\"pipar-profile/1\",\"role\":\"device\",\"slowdown\":1,\"units\":[]}"},
	{"pipar-plan/1", "plan.json",
	 "{\"format\":\"pipar-plan/1\",\"mode\":\"pipar\",\"split_point\":1,\"per_device\":[]}"},
	{"pipar-model/1", "spec.json", "{\"format\":\"pipar-model/1\",\"name\":\"m\",\"units\":[]}"},
	{"pipar-summary/1", "run.json",
	 "{\"format\":\"pipar-summary/1\",\"mode\":\"pipar\",\"epochs\":[],\"failed_devices\":[]}"},
	{"pipar-trace/1", "trace.json",
	 "{\"format\":\"pipar-trace/1\",\"displayTimeUnit\":\"ms\",\"traceEvents\":[]}"},
	{"pipar-trace-summary/1", "ts.json",
	 "{\"format\":\"pipar-trace-summary/1\",\"span_seconds\":1,\"resources\":[]}"},
	{"pipar-checkpoint/1", "pipar.json",
	 "{\"format\":\"pipar-checkpoint/1\",\"epoch\":1,\"rng\":\"0\",\"arrays\":[]}"},
	{"pipar-compare/1", "cmp.json", "{\"format\":\"pipar-compare/1\",\"runs\":[]}"},
};
#define NDOCS (sizeof(docs) / sizeof(docs[0]))

static void put(const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	PIPAR_ASSERT(f && fputs(text, f) >= 0 && fclose(f) == 0);
}

/* The readers: each reads the document d (from its file or its text) and
 * returns its result, err filled on failure. */
static int read_profile(const struct doc *d, char *err)
{
	struct pipar_profile *p = NULL;
	int r = pipar_profile_parse(d->text, d->file, &p, err);

	pipar_profile_free(p);
	return r;
}

static int read_plan(const struct doc *d, char *err)
{
	struct pipar_plan_file *p = NULL;
	int r = pipar_plan_parse(d->text, d->file, &p, err);

	pipar_plan_file_free(p);
	return r;
}

static int read_spec_file(const struct doc *d, char *err)
{
	char *json = NULL;
	int r;

	if (chdir(dir) < 0)
		return -1;
	r = pipar_model_load_spec(d->file, &json, err);
	free(json);
	return r;
}

static int read_spec(const struct doc *d, char *err)
{
	struct pipar_model *m = NULL;
	int r = pipar_model_new(d->text, (struct pipar_shape){1, 4, 4}, 10, 0, -1, 1, &m, err);

	pipar_model_free(m);
	return r;
}

static int read_summary(const struct doc *d, char *err)
{
	struct pipar_summary s;
	int r;

	if (chdir(dir) < 0)
		return -1;
	r = pipar_summary_read(d->file, &s, err);
	if (r == 0)
		pipar_summary_free(&s);
	return r;
}

static int read_trace(const struct doc *d, char *err)
{
	char *out = NULL;
	int r;

	if (chdir(dir) < 0)
		return -1;
	r = pipar_trace_summarise(&d->file, 1, &out, err);
	free(out);
	return r;
}

static int read_timeline(const struct doc *d, char *err)
{
	if (chdir(dir) < 0)
		return -1;
	return pipar_timeline_svg(&d->file, 1, -1, -1, "out.svg", err);
}

static int read_checkpoint(const struct doc *d, char *err)
{
	struct pipar_model *m = NULL;
	struct pipar_ckpt_info info;
	int r;

	if (chdir(dir) < 0)
		return -1;
	r = pipar_checkpoint_load(d->file, &m, &info, err);
	if (r == 0) {
		pipar_model_free(m);
		pipar_checkpoint_info_free(&info);
	}
	return r;
}

static int read_checkpoint_mem(const struct doc *d, char *err)
{
	struct pipar_model *m = NULL;
	struct pipar_ckpt_info info;
	int r = pipar_checkpoint_load_mem(d->text, strlen(d->text), d->file, &m, &info, err);

	if (r == 0) {
		pipar_model_free(m);
		pipar_checkpoint_info_free(&info);
	}
	return r;
}

static const struct reader {
	const char *what, *kind, *expected;
	int (*read)(const struct doc *, char *);
} readers[] = {
	{"the profile reader", "pipar-profile/1", "pipar-profile/1", read_profile},
	{"the plan reader", "pipar-plan/1", "pipar-plan/1", read_plan},
	{"a model spec file", "pipar-model/1", "pipar-model/1", read_spec_file},
	{"the run summary reader", "pipar-summary/1", "pipar-summary/1", read_summary},
	{"the trace summary", "pipar-trace/1", "pipar-trace/1", read_trace},
	{"the timeline", "pipar-trace/1", "pipar-trace/1", read_timeline},
	{"the checkpoint reader", NULL, "a pipar checkpoint (.npz)", read_checkpoint},
	{"the checkpoint reader in memory", NULL, "a pipar checkpoint (.npz)", read_checkpoint_mem},
};

static void helper(void)
{
	char err[PIPAR_ERRLEN];
	cJSON *j;
	static const char *const known[] = {"format", "a", NULL};

	j = pipar_json_parse("{\"format\":\"pipar-plan/1\",\"x\":1}", "p.json", NULL,
			     "pipar-plan/1", 0, err);
	ok(j != NULL, "a document of the kind expected parses");
	ok(j && strcmp(pipar_json_unknown_field(j, known), "x") == 0,
	   "and its unknown field is found");
	cJSON_Delete(j);
#define REFUSED(text, name, part, kind, flags, want)                                     \
	do {                                                                             \
		err[0] = 0;                                                              \
		j = pipar_json_parse(text, name, part, kind, flags, err);                 \
		ok(!j && strcmp(err, want) == 0, "%s -> %s", text, err);                  \
		cJSON_Delete(j);                                                         \
	} while (0)
	REFUSED("{\"mode\":\"pipar\",\"format\":\"pipar-plan/1\"}", "plan.json", NULL,
		"pipar-profile/1", 0, "'plan.json' is a pipar-plan/1 file, expected pipar-profile/1");
	REFUSED("{\"format\":\"pipar-plan/1\"}", "-", NULL, "pipar-profile/1", 0,
		"'<stdin>' is a pipar-plan/1 file, expected pipar-profile/1");
	REFUSED("{\"role\":\"device\"}", "x.json", NULL, "pipar-profile/1", 0,
		"'x.json' is not a pipar-profile/1 file (no \"format\" field)");
	REFUSED("{\"format\":\"other/1\"}", "x.json", NULL, "pipar-profile/1", 0,
		"'x.json' is not a pipar-profile/1 file (\"format\" is not a pipar format)");
	REFUSED("{\"format\":\"pipar-plan/1\\nrm -rf\"}", "x.json", NULL, "pipar-profile/1", 0,
		"'x.json' is not a pipar-profile/1 file (\"format\" is not a pipar format)");
	REFUSED("{\"format\":7}", "x.json", NULL, "pipar-profile/1", 0,
		"'x.json' is not a pipar-profile/1 file (\"format\" is not a pipar format)");
	REFUSED("[1, 2]", "x.json", NULL, "pipar-profile/1", 0,
		"'x.json' is not a pipar-profile/1 file (not a JSON object)");
	REFUSED("{\"format\": ", "x.json", NULL, "pipar-profile/1", 0,
		"'x.json': not valid JSON (near byte 11)");
	REFUSED("{\"format\":\"pipar-profile/1\"} {}", "x.json", NULL, "pipar-profile/1", 0,
		"'x.json': not valid JSON (near byte 29)");
	REFUSED("", "x.json", NULL, "pipar-profile/1", 0, "'x.json': not valid JSON (near byte 0)");
	REFUSED("{\"format\":\"pipar-checkpoint/9\"}", "m.npz", "pipar.json", "pipar-checkpoint/1", 0,
		"'m.npz': pipar.json is a pipar-checkpoint/9 file, expected pipar-checkpoint/1");
	REFUSED("{\"format\":\"pipar-plan/1\"}", NULL, "model spec", "pipar-model/1", 0,
		"model spec is a pipar-plan/1 file, expected pipar-model/1");
	REFUSED("{\"format\":\"pipar-summary/1\",\"traceEvents\":[]}", "run.json", NULL,
		"pipar-trace/1", PIPAR_JSON_FORMAT_OPTIONAL,
		"'run.json' is a pipar-summary/1 file, expected pipar-trace/1");
#undef REFUSED
	j = pipar_json_parse("{\"traceEvents\":[]}", "t.json", NULL, "pipar-trace/1",
			     PIPAR_JSON_FORMAT_OPTIONAL, err);
	ok(j != NULL, "with PIPAR_JSON_FORMAT_OPTIONAL a document without \"format\" is taken");
	cJSON_Delete(j);
	ok(pipar_json_kind_error(err, "-", "pipar-plan/1", "a pipar checkpoint (.npz)") == -1 &&
		   strcmp(err, "'<stdin>' is a pipar-plan/1 file, expected a pipar checkpoint (.npz)") == 0,
	   "pipar_json_kind_error: %s", err);
}

/* Field values: one judgement and one wording for every reader. */
static void fields(void)
{
	char err[PIPAR_ERRLEN], why[96];
	cJSON *o = cJSON_Parse("{\"a\":-1,\"b\":1.5,\"c\":\"x\",\"d\":true,\"e\":1e39,\"f\":4}");
	const struct pipar_json_ctx in_file = {"p.json", err, NULL};
	const struct pipar_json_ctx in_part = {"m.npz", err, "pipar.json"};
	const struct pipar_json_ctx alone = {NULL, err, "model spec"};
	double d = 7;
	long l = 7;
	int b = 0;

#define WHY(key, lo, hi, whole, want)                                                    \
	do {                                                                             \
		why[0] = 0;                                                              \
		ok(pipar_json_value(cJSON_GetObjectItem(o, key), lo, hi, whole, &d, why,  \
				    sizeof(why)) < 0 && strcmp(why, want) == 0 && d == 7, \
		   "%s in [%g, %g]: %s", key, (double)lo, (double)hi, why);               \
	} while (0)
	WHY("a", 0, 10, 0, "-1 outside [0, 10] (negative)");
	WHY("a", 0, INFINITY, 0, "-1 is below 0");
	WHY("b", 0, 10, 1, "1.5 is not an integer");
	WHY("c", 0, 10, 0, "not a number");
	WHY("d", 0, 10, 0, "not a number");
	WHY("nothere", 0, 10, 0, "missing");
	WHY("e", -1e30, 1e30, 0, "1e+39 outside [-1e+30, 1e+30]");
#undef WHY
	ok(pipar_json_value(cJSON_GetObjectItem(o, "f"), 4, 4, 1, &d, why, sizeof(why)) == 0 &&
		   d == 4,
	   "a value at both bounds is taken");
	ok(pipar_json_int(o, "b", "x.b", 0, 10, &l, &in_file) < 0 && l == 7 &&
		   strcmp(err, "'p.json': field 'x.b': 1.5 is not an integer") == 0,
	   "pipar_json_int names the file and path: %s", err);
	ok(pipar_json_item(cJSON_GetObjectItem(o, "a"), "units[1]", 1, 4096, 1, &d, &in_part) < 0 &&
		   strcmp(err, "'m.npz': pipar.json: field 'units[1]': -1 outside [1, 4096] (negative)") == 0,
	   "inside a file, the part read is named: %s", err);
	ok(pipar_json_num(o, "nothere", "n", 0, 1, &d, &alone) < 0 &&
		   strcmp(err, "model spec: field 'n': missing") == 0,
	   "without a file, the part alone is the subject: %s", err);
	ok(pipar_json_bool(o, "d", "d", &b, &in_file) == 0 && b == 1, "a boolean is read");
	ok(pipar_json_bool(o, "f", "f", &b, &in_file) < 0 &&
		   strcmp(err, "'p.json': field 'f': not true or false") == 0,
	   "a number is not a boolean: %s", err);
	cJSON_Delete(o);
}

/* Numbers written in fixed notation. */
static void fixed(void)
{
	static const struct {
		double v;
		int decimals;
		const char *want;
	} cases[] = {
		{1.887e-15, 6, "0"},  {-1e-9, 6, "0"},         {7.605530407000515, 6, "7.60553"},
		{0.000002, 6, "0.000002"}, {7.21e-7, 9, "0.000000721"}, {747439.157894737, 0, "747439"},
		{125000, 0, "125000"}, {0.1 + 0.2, 6, "0.3"}, {-2.5e-3, 6, "-0.0025"}, {1e300, 0, NULL},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *o = cJSON_CreateObject();
		char *text, want[400];

		pipar_json_add_fixed(o, "x", cases[i].v, cases[i].decimals);
		text = cJSON_PrintUnformatted(o);
		snprintf(want, sizeof(want), "{\"x\":%s}", cases[i].want ? cases[i].want : "");
		if (cases[i].want)
			ok(text && strcmp(text, want) == 0, "%.17g to %d decimals: %s", cases[i].v,
			   cases[i].decimals, text ? text : "(none)");
		else
			ok(text && strlen(text) == 6 + 301 && !strchr(text, 'e'),
			   "1e300 is written out in full (301 digits)");
		free(text);
		cJSON_Delete(o);
	}
	{
		cJSON *o = cJSON_CreateObject();
		char *text;

		pipar_json_add_fixed(o, "x", NAN, 6);
		text = cJSON_PrintUnformatted(o);
		ok(text && strcmp(text, "{\"x\":null}") == 0, "NaN is written as null");
		free(text);
		cJSON_Delete(o);
	}
}

/* A trace written, then summarised. */
static void trace_round_trip(void)
{
	struct pipar_trace *t = pipar_trace_new(1, "device 1");
	char path[256], err[PIPAR_ERRLEN], *out = NULL;
	const char *paths[1] = {path};
	cJSON *j;

	snprintf(path, sizeof(path), "%s/rt.trace", dir);
	/* Times that are not exact in binary, to show the rounding. */
	pipar_trace_event(t, "forward", PIPAR_RES_COMPUTE, 0.1, 0.2, 0, 0);
	pipar_trace_event(t, "step", PIPAR_RES_COMPUTE, 0.3, 0.0000004, 0, -1);
	pipar_trace_event(t, "forward", PIPAR_RES_COMPUTE, 0.7, 0.2, 1, 0);
	pipar_trace_event(t, "step", PIPAR_RES_COMPUTE, 0.9, 0.1, 1, -1);
	pipar_trace_event_bytes(t, "upload", PIPAR_RES_UPLINK, 0.3, 0.3, 0, 0, 1000);
	pipar_trace_event_bytes(t, "download", PIPAR_RES_DOWNLINK, 0.5, 0.000012, 0, 0, 10);
	ok(pipar_trace_write(t, path, err) == 0, "a trace is written");
	pipar_trace_free(t);
	ok(pipar_trace_summarise(paths, 1, &out, err) == 0, "and summarised%s%s",
	   out ? "" : ": ", out ? "" : err);
	j = out ? cJSON_Parse(out) : NULL;
	ok(j && pipar_json_format(j) &&
		   strcmp(pipar_json_format(j), PIPAR_TRACE_SUMMARY_FORMAT) == 0,
	   "its summary is a " PIPAR_TRACE_SUMMARY_FORMAT " document");
	{
		int noisy = 0;

		/* At most 6 decimals (times to the microsecond), no exponent. */
		for (const char *p = out; p && *p; p++)
			if (*p >= '0' && *p <= '9' && (p == out || !strchr("0123456789.", p[-1]))) {
				size_t n = strspn(p, "0123456789");

				if (p[n] == '.')
					noisy |= strspn(p + n + 1, "0123456789") > 6;
				n += p[n] == '.' ? 1 + strspn(p + n + 1, "0123456789") : 0;
				noisy |= p[n] == 'e' || p[n] == 'E';
			}
		ok(out && !noisy, "its numbers have at most 6 decimals and no exponent");
	}
	/* (busy 0.5000004 s and an iteration of 0.6999996 s, to the
	 * microsecond) */
	ok(out && strstr(out, "\"span_seconds\":\t0.9,") &&
		   strstr(out, "\"busy_seconds\":\t0.5,\n\t\t\t\"idle_seconds\":\t0.4,") &&
		   strstr(out, "\"mean_seconds\":\t0.7,"),
	   "span 0.9 s, compute busy 0.5 s and idle 0.4 s, one iteration of 0.7 s");
	ok(out && strstr(out, "\"busy_seconds\":\t0.000012,"),
	   "12 us of downlink are 0.000012 s (fixed notation, not 1.2e-05)");
	if (out && !strstr(out, "\"mean_seconds\":\t0.7,"))
		diag("%s", out);
	cJSON_Delete(j);
	free(out);
}

int main(void)
{
	char err[PIPAR_ERRLEN], cwd[4096];

	PIPAR_ASSERT(mkdtemp(dir));
	PIPAR_ASSERT(getcwd(cwd, sizeof(cwd)));
	helper();
	fields();
	fixed();
	for (size_t i = 0; i < NDOCS; i++)
		put(docs[i].file, docs[i].text);
	for (size_t r = 0; r < sizeof(readers) / sizeof(readers[0]); r++)
		for (size_t i = 0; i < NDOCS; i++) {
			const struct reader *rd = &readers[r];
			char want[PIPAR_ERRLEN];

			if (rd->kind && strcmp(rd->kind, docs[i].kind) == 0)
				continue;
			snprintf(want, sizeof(want), "'%s' is a %s file, expected %s", docs[i].file,
				 docs[i].kind, rd->expected);
			err[0] = 0;
			ok(rd->read(&docs[i], err) < 0 && strcmp(err, want) == 0,
			   "%s given %s: %s", rd->what, docs[i].kind, err);
		}
	/* A model spec inside another document has no file name of its own. */
	err[0] = 0;
	ok(read_spec(&docs[1], err) < 0 &&
		   strcmp(err, "model spec is a pipar-plan/1 file, expected pipar-model/1") == 0,
	   "a model spec given a plan's text: %s", err);
	trace_round_trip();
	PIPAR_ASSERT(chdir(cwd) == 0);
	{
		char cmd[512];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			diag("could not remove %s", dir);
	}
	return tap_done();
}
