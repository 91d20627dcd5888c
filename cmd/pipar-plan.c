/*
 * pipar-plan: choose the split point P and the number of parallel batches
 * N from device and server profiles, bandwidths and the number of devices;
 * predict the iteration and epoch times of every mode.  Plan JSON on
 * stdout; --explain prints the candidates to stderr.
 */
#define _POSIX_C_SOURCE 200809L
#include <cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "json.h"
#include "plan.h"
#include "profile.h"
#include "file.h"

#define PROG "pipar-plan"
#define VERSION "0.1.0"
#define MAXFILES 256

static const char usage_text[] =
	"usage: pipar-plan --device FILE|- [--device FILE ...] --server FILE|- --devices K\n"
	"                  --uplink RATE --downlink RATE --batch B [--mode pipar|fl|sl|sfl]\n"
	"                  [--split P[,P...]] [--parallel N[,N...]] [--memory BYTES]\n"
	"                  [--samples N] [--min-micro M] [--top T] [--explain] [--latency MS]\n"
	"       pipar-plan --check FILE|-\n";

/* Micro-batches of fewer samples than this are not searched unless
 * --min-micro says otherwise: each micro-batch is normalised by its own
 * statistics on the device, and batch-norm over 1 or 2 samples trains
 * badly, while over 5 VGG5 trained as well as over 10 (see
 * pipar-plan(1)). */
#define DEFAULT_MIN_MICRO 5

static int usage_error(const char *msg)
{
	fprintf(stderr, PROG ": %s\n%s", msg, usage_text);
	return 2;
}

static int parse_bytes(const char *s, double *out, char *err)
{
	char *end;
	double v = strtod(s, &end);
	double mul = 1;

	if (end == s || !(v > 0) || !isfinite(v))
		goto bad;
	if (*end) {
		if (strcasecmp(end, "k") == 0 || strcasecmp(end, "kib") == 0)
			mul = 1024.0;
		else if (strcasecmp(end, "m") == 0 || strcasecmp(end, "mib") == 0)
			mul = 1024.0 * 1024;
		else if (strcasecmp(end, "g") == 0 || strcasecmp(end, "gib") == 0)
			mul = 1024.0 * 1024 * 1024;
		else
			goto bad;
	}
	*out = v * mul;
	return 0;
bad:
	return pipar_cli_bad(err, "--memory", s, "a number of bytes, optionally with K, M or G");
}

/* "V" or "V,V,..." with each V in [1, 4096]: n values into out[]. */
static int parse_list(const char *opt, const char *s, int *out, int max, int *n, char *err)
{
	const char *q = s;
	char *end;

	*n = 0;
	while (*q) {
		long v;

		errno = 0;
		v = strtol(q, &end, 10);
		if (errno || end == q || v < 1 || v > 4096 || *n == max || (*end && *end != ','))
			return pipar_cli_bad(err, opt, s, "an integer in [1, 4096], or one per device, comma-separated");
		out[(*n)++] = (int)v;
		q = *end ? end + 1 : end;
	}
	if (!*n)
		return pipar_cli_bad(err, opt, s, "an integer in [1, 4096], or one per device, comma-separated");
	return 0;
}

static cJSON *busy_json(const struct pipar_plan_env *env, const struct pipar_sim *s)
{
	cJSON *o = cJSON_CreateObject(), *devs, *srv;

	srv = cJSON_AddObjectToObject(o, "server");
	pipar_json_add_fixed(srv, "busy_seconds", s->srv_busy, 6);
	pipar_json_add_fixed(srv, "idle_seconds", fmax(0, s->iteration - s->srv_busy), 6);
	devs = cJSON_AddArrayToObject(o, "devices");
	for (int k = 0; k < env->K; k++) {
		cJSON *d = cJSON_CreateObject();

		cJSON_AddNumberToObject(d, "device", k + 1);
		pipar_json_add_fixed(d, "compute_busy_seconds", s->dev_busy[k], 6);
		pipar_json_add_fixed(d, "compute_idle_seconds", fmax(0, s->iteration - s->dev_busy[k]), 6);
		pipar_json_add_fixed(d, "uplink_busy_seconds", s->up_busy[k], 6);
		pipar_json_add_fixed(d, "uplink_idle_seconds", fmax(0, s->iteration - s->up_busy[k]), 6);
		pipar_json_add_fixed(d, "downlink_busy_seconds", s->down_busy[k], 6);
		pipar_json_add_fixed(d, "downlink_idle_seconds", fmax(0, s->iteration - s->down_busy[k]), 6);
		pipar_json_add_fixed(d, "memory_bytes", ceil(s->dev_memory[k]), 0);
		cJSON_AddItemToArray(devs, d);
	}
	return o;
}

static void predicted(cJSON *o, const struct pipar_sim *s)
{
	pipar_json_add_fixed(o, "iteration_seconds", s->iteration, 6);
	cJSON_AddNumberToObject(o, "iterations_per_epoch", (double)s->iterations);
	pipar_json_add_fixed(o, "aggregation_seconds", s->aggregation, 6);
	pipar_json_add_fixed(o, "epoch_seconds", s->epoch, 6);
}

/* Writes text and a newline to standard output; -1 with the reason
 * printed when that fails (a full disk, a closed pipe). */
static int put_out(const char *text)
{
	if (!text || fputs(text, stdout) < 0 || putchar('\n') < 0 || fflush(stdout) != 0 ||
	    ferror(stdout)) {
		fprintf(stderr, PROG ": cannot write to standard output: %s\n",
			text ? strerror(errno) : "out of memory");
		return -1;
	}
	return 0;
}

/* The --check of a plan file. */
static int check_plan(const char *path)
{
	char err[PIPAR_ERRLEN], line[512];
	char *text = pipar_read_file(path, 64u << 20, NULL, err);
	struct pipar_plan_file *pf = NULL;
	const char *name = strcmp(path, "-") ? path : "<stdin>";
	int r;

	if (!text || pipar_plan_parse(text, name, &pf, err) < 0) {
		free(text);
		fprintf(stderr, PROG ": %s\n", err);
		return 1;
	}
	snprintf(line, sizeof(line),
		 "%s: valid pipar-plan/1: mode %s, %d device(s), P %d, N %d, predicted %.6g s per iteration",
		 name, pipar_mode_name(pf->mode), pf->K, pf->dev[0].P, pf->dev[0].N, pf->iteration);
	r = put_out(line) < 0 ? 1 : 0;
	free(text);
	pipar_plan_file_free(pf);
	return r;
}

/* One row of --explain's table: candidates i..j (of the same P, within 1%
 * of each other) shown as one. */
static void explain_row(const struct pipar_plan_env *env, enum pipar_mode mode,
			const struct pipar_candidate *top, int i, int j)
{
	struct pipar_choice ch[PIPAR_PLAN_MAXDEV] = {{0, 0}};
	struct pipar_sim s;
	char rank[32], nn[32];
	int lo = top[i].choice.N, hi = lo;

	for (int r = i; r <= j; r++) {
		lo = top[r].choice.N < lo ? top[r].choice.N : lo;
		hi = top[r].choice.N > hi ? top[r].choice.N : hi;
	}
	for (int k = 0; k < env->K; k++)
		ch[k] = top[i].choice;
	pipar_plan_simulate(env, mode, ch, &s);
	snprintf(rank, sizeof(rank), i == j ? "%d" : "%d-%d", i + 1, j + 1);
	snprintf(nn, sizeof(nn), lo == hi ? "%d" : "%d-%d", lo, hi);
	fprintf(stderr, "%7s %4d %7s %11.4f %9.2f %13.4f %14.4f\n", rank, top[i].choice.P, nn,
		s.iteration, s.epoch, fmax(0, s.iteration - s.srv_busy),
		fmax(0, s.iteration - s.dev_busy[0]));
}

static void explain(const struct pipar_plan_env *env, enum pipar_mode mode, int L,
		    const struct pipar_choice *best, const struct pipar_sim *sim,
		    const struct pipar_candidate *top, int ntop, const struct pipar_sim *base,
		    const struct pipar_choice *base_ch, const int *base_ok, double seconds)
{
	int same = 1;

	fprintf(stderr, "%s for %d device(s): batch %d, uplink %.3g Mbit/s, downlink %.3g Mbit/s, "
		"%ld samples per device\n", pipar_mode_name(mode), env->K, env->batch,
		env->up_bps / 1e6, env->down_bps / 1e6, env->samples);
	fprintf(stderr, "P: units 1..P of the model's %d run on each device, the rest on the server\n", L);
	fprintf(stderr, "N: the micro-batches each mini-batch of %d is cut into (of at least %d sample%s)\n",
		env->batch, env->min_micro > 1 ? env->min_micro : 1, env->min_micro > 1 ? "s" : "");
	for (int k = 1; k < env->K; k++)
		same &= best[k].P == best[0].P && best[k].N == best[0].N;
	if (same)
		fprintf(stderr, "chosen: P %d, N %d on every device: %.4f s per iteration, %.2f s per epoch\n",
			best[0].P, best[0].N, sim->iteration, sim->epoch);
	else {
		fprintf(stderr, "chosen: %.4f s per iteration, %.2f s per epoch\n", sim->iteration,
			sim->epoch);
		for (int k = 0; k < env->K; k++)
			fprintf(stderr, "  device %d: P %d, N %d\n", k + 1, best[k].P, best[k].N);
	}
	if (ntop > 0) {
		fprintf(stderr, "%7s %4s %7s %11s %9s %13s %14s\n", "rank", "P", "N", "iteration s",
			"epoch s", "server idle s", "device 1 idle s");
		for (int i = 0; i < ntop;) {
			int j = i;

			int lo = top[i].choice.N, hi = lo;

			/* Near-equal rows of one P and a run of N are one row. */
			while (j + 1 < ntop && top[j + 1].choice.P == top[i].choice.P &&
			       top[j + 1].iteration <= top[i].iteration * 1.01 &&
			       (top[j + 1].choice.N == lo - 1 || top[j + 1].choice.N == hi + 1)) {
				j++;
				lo = top[j].choice.N < lo ? top[j].choice.N : lo;
				hi = top[j].choice.N > hi ? top[j].choice.N : hi;
			}
			explain_row(env, mode, top, i, j);
			i = j + 1;
		}
	}
	fprintf(stderr, "the other modes, each at its best P:\n");
	for (int m = 0; m < 4; m++) {
		if ((enum pipar_mode)m == mode)
			continue;
		if (!base_ok[m]) {
			fprintf(stderr, "  %-5s does not fit the memory limit\n",
				pipar_mode_name((enum pipar_mode)m));
			continue;
		}
		fprintf(stderr, "  %-5s P %d, N %d: %.4f s per iteration, %.2f s per epoch, "
			"server idle %.4f s (%.2fx the chosen epoch)\n",
			pipar_mode_name((enum pipar_mode)m), base_ch[m].P, base_ch[m].N,
			base[m].iteration, base[m].epoch, fmax(0, base[m].iteration - base[m].srv_busy),
			sim->epoch > 0 ? base[m].epoch / sim->epoch : 0);
	}
	fprintf(stderr, "searched in %.4f s\n", seconds);
}

/* Everything one invocation holds: the options, the profiles read, and
 * what the searches found. */
struct run {
	const char *dev_files[MAXFILES], *srv_file, *check_file;
	int ndev, K, top_n, explain_on, min_micro_given, latency_given;
	int planning;                           /* an option other than --check */
	int splits[PIPAR_PLAN_MAXDEV], nsplit, pars[PIPAR_PLAN_MAXDEV], npar;
	long samples;
	enum pipar_mode mode;
	struct pipar_plan_env env;
	const char *dev_names[PIPAR_PLAN_MAXDEV];
	struct pipar_profile *dev[MAXFILES], *srv;
	const struct pipar_profile *per[PIPAR_PLAN_MAXDEV];
	struct pipar_choice best[PIPAR_PLAN_MAXDEV], bch[4][PIPAR_PLAN_MAXDEV],
		fixed[PIPAR_PLAN_MAXDEV];
	struct pipar_sim sim, bsim[4];
	struct pipar_candidate top[64];
	int ntop, bok[4];
	double search_seconds;
};

/* The options into r.  Returns -1 to go on, or the exit status (help,
 * a usage error, --check done). */
static int parse_args(struct run *r, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"device", required_argument, NULL, 'd'},
		{"server", required_argument, NULL, 's'},
		{"devices", required_argument, NULL, 'K'},
		{"uplink", required_argument, NULL, 'u'},
		{"downlink", required_argument, NULL, 'w'},
		{"batch", required_argument, NULL, 'b'},
		{"mode", required_argument, NULL, 'm'},
		{"split", required_argument, NULL, 'P'},
		{"parallel", required_argument, NULL, 'N'},
		{"memory", required_argument, NULL, 'M'},
		{"samples", required_argument, NULL, 'n'},
		{"top", required_argument, NULL, 't'},
		{"explain", no_argument, NULL, 'x'},
		{"check", required_argument, NULL, 'c'},
		{"min-micro", required_argument, NULL, 'f'},
		{"latency", required_argument, NULL, 'L'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	static const char *const modes[] = {"pipar", "sfl", "sl", "fl", NULL};
	struct pipar_plan_env *env = &r->env;
	char err[PIPAR_ERRLEN];
	int c, mi = 0;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case 'd':
			if (r->ndev == MAXFILES)
				return usage_error("too many --device profiles");
			r->dev_files[r->ndev++] = optarg;
			break;
		case 's': r->srv_file = optarg; break;
		case 'K': bad = pipar_cli_int("--devices", optarg, 1, PIPAR_PLAN_MAXDEV, &r->K, err); break;
		case 'u': bad = pipar_cli_rate("--uplink", optarg, &env->up_bps, err); break;
		case 'w': bad = pipar_cli_rate("--downlink", optarg, &env->down_bps, err); break;
		case 'b': bad = pipar_cli_int("--batch", optarg, 1, 4096, &env->batch, err); break;
		case 'm':
			bad = pipar_cli_choice("--mode", optarg, modes, &mi, err);
			if (!bad)
				pipar_mode_parse(optarg, &r->mode);
			break;
		case 'P': bad = parse_list("--split", optarg, r->splits, PIPAR_PLAN_MAXDEV, &r->nsplit, err); break;
		case 'N': bad = parse_list("--parallel", optarg, r->pars, PIPAR_PLAN_MAXDEV, &r->npar, err); break;
		case 'M': bad = parse_bytes(optarg, &env->memory, err); break;
		case 'n': bad = pipar_cli_long("--samples", optarg, 1, 1L << 40, &r->samples, err); break;
		case 't': bad = pipar_cli_int("--top", optarg, 0, 64, &r->top_n, err); break;
		case 'x': r->explain_on = 1; break;
		case 'L':
			bad = pipar_cli_double("--latency", optarg, 0, 60000, &env->latency, err);
			env->latency /= 1000;   /* milliseconds given */
			r->latency_given = 1;
			break;
		case 'f':
			bad = pipar_cli_int("--min-micro", optarg, 1, 4096, &env->min_micro, err);
			r->min_micro_given = 1;
			break;
		case 'c': r->check_file = optarg; break;
		default: return pipar_cli_common(c, argv, PROG, VERSION, usage_text);
		}
		if (c != 'c')
			r->planning = 1;
		if (bad)
			return usage_error(err);
	}
	if ((c = pipar_cli_operands(argc, argv, PROG, usage_text)) >= 0)
		return c;
	if (r->check_file) {
		if (r->planning)
			return usage_error("--check takes no other options");
		return check_plan(r->check_file);
	}
	return -1;
}

/* What the options need of each other.  -1 when they fit, else the exit
 * status of the usage error. */
static int check_args(struct run *r)
{
	char err[PIPAR_ERRLEN];
	int stdin_used = 0, K = r->K;

	if (!r->ndev)
		return usage_error("missing --device");
	if (!r->srv_file)
		return usage_error("missing --server");
	if (!K)
		return usage_error("missing --devices");
	if (!r->env.up_bps || !r->env.down_bps)
		return usage_error("missing --uplink or --downlink");
	if (!r->env.batch)
		return usage_error("missing --batch");
	if (r->ndev != 1 && r->ndev != K)
		return usage_error("give one --device profile for all devices, or one per device (--devices of them)");
	if ((r->nsplit > 1 && r->nsplit != K) || (r->npar > 1 && r->npar != K)) {
		int split = r->nsplit > 1 && r->nsplit != K;

		snprintf(err, sizeof(err), "--%s has %d values for %d device(s): give one for all, or one per device",
			 split ? "split" : "parallel", split ? r->nsplit : r->npar, K);
		return usage_error(err);
	}
	for (int i = 0; i < r->ndev; i++)
		stdin_used += strcmp(r->dev_files[i], "-") == 0;
	if (stdin_used + (strcmp(r->srv_file, "-") == 0) > 1)
		return usage_error("standard input ('-') can be read once only");
	if (!r->min_micro_given)
		r->env.min_micro = DEFAULT_MIN_MICRO < r->env.batch ? DEFAULT_MIN_MICRO : r->env.batch;
	return -1;
}

/* The profiles read and checked, the environment of the search set up.
 * 0, or the exit status (1 for a bad profile, 2 for a --split/--parallel
 * the model or the batch does not allow). */
static int load(struct run *r)
{
	struct pipar_plan_env *env = &r->env;
	char err[PIPAR_ERRLEN];
	int K = r->K, one = r->ndev == 1;

	for (int i = 0; i <= r->ndev; i++) {
		const char *path = i < r->ndev ? r->dev_files[i] : r->srv_file;
		char *text = pipar_read_file(path, 64u << 20, NULL, err);
		struct pipar_profile **slot = i < r->ndev ? &r->dev[i] : &r->srv;

		if (!text || pipar_profile_parse(text, pipar_json_name(path), slot, err) < 0) {
			free(text);
			fprintf(stderr, PROG ": %s\n", err);
			return 1;
		}
		free(text);
	}
	for (int k = 0; k < K; k++) {
		r->per[k] = r->dev[one ? 0 : k];
		r->dev_names[k] = pipar_json_name(r->dev_files[one ? 0 : k]);
	}
	env->K = K;
	env->dev = r->per;
	env->srv = r->srv;
	/* Each device's share of the data set, unless given. */
	env->samples = r->samples ? r->samples : (r->per[0]->data_samples + K - 1) / K;
	if (pipar_plan_check(env, r->dev_names, pipar_json_name(r->srv_file), err) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		return 1;
	}
	if (r->nsplit || r->npar) {
		for (int k = 0; k < K; k++) {
			r->fixed[k].P = r->nsplit ? r->splits[r->nsplit == 1 ? 0 : k] : 0;
			r->fixed[k].N = r->npar ? r->pars[r->npar == 1 ? 0 : k] : 0;
		}
		env->fixed = r->fixed;
		if (pipar_plan_fixed_check(env, r->mode, err) < 0)
			return usage_error(err);
	}
	return 0;
}

/* The search for the mode asked for, then every mode searched freely for
 * comparison.  -1 when nothing fits the memory limit. */
static int search(struct run *r)
{
	struct pipar_plan_env *env = &r->env;
	const struct pipar_choice *keep = env->fixed;
	struct pipar_candidate bt[1];
	double t0 = pipar_now();

	pipar_plan_tables_build(env);
	r->ntop = pipar_plan_search(env, r->mode, r->best, &r->sim, r->top, r->top_n > 0 ? r->top_n : 1);
	if (r->ntop < 0) {
		if (env->fixed)
			fprintf(stderr, PROG ": the given --split/--parallel does not fit --memory %.0f bytes\n",
				env->memory);
		else
			fprintf(stderr, PROG ": no split point and batch count fits --memory %.0f bytes\n",
				env->memory);
		return -1;
	}
	r->search_seconds = pipar_now() - t0;
	env->fixed = NULL;
	for (int m = 0; m < 4; m++) {
		if ((enum pipar_mode)m == r->mode) {
			memcpy(r->bch[m], r->best, sizeof(r->best));
			r->bsim[m] = r->sim;
			r->bok[m] = 1;
		} else {
			r->bok[m] = pipar_plan_search(env, (enum pipar_mode)m, r->bch[m], &r->bsim[m], bt, 1) >= 0;
		}
	}
	env->fixed = keep;
	return 0;
}

/* The plan's own fields as its module writes them, for the choice found. */
static cJSON *plan_fields(const struct run *r)
{
	const struct pipar_profile *srv = r->srv;
	struct pipar_plan_file *pf = calloc(1, sizeof(*pf));
	cJSON *root = NULL;
	int K = r->K, made = 1;

	if (!pf)
		return NULL;
	pf->mode = r->mode;
	snprintf(pf->model_name, sizeof(pf->model_name), "%s", srv->model_name);
	pf->spec = srv->spec;   /* borrowed for the writer */
	pf->in = srv->in;
	pf->classes = srv->classes;
	pf->units = srv->nunits;
	pf->K = K;
	pf->batch = r->env.batch;
	pf->samples = r->env.samples;
	pf->up_bps = r->env.up_bps;
	pf->down_bps = r->env.down_bps;
	pf->latency = r->env.latency;
	pf->iteration = r->sim.iteration;
	pf->epoch = r->sim.epoch;
	for (int k = 0; made && k < K; k++) {
		int N = r->best[k].N;

		pf->dev[k] = r->best[k];
		if (!(made = (pf->micro[k] = malloc(sizeof(int) * (size_t)N)) != NULL))
			break;
		for (int i = 0; i < N; i++)
			pf->micro[k][i] = pipar_plan_micro_size(r->env.batch, N, i);
	}
	if (made)
		root = pipar_plan_file_json(pf);
	pf->spec = NULL;
	pipar_plan_file_free(pf);
	return root;
}

/* The whole plan: its own fields, then what only the planner knows, each
 * where a reader expects it. */
static cJSON *plan_json(const struct run *r)
{
	const struct pipar_plan_env *env = &r->env;
	cJSON *root = plan_fields(r), *o, *arr;

	if (!root)
		return NULL;
	pipar_json_insert_after(root, "downlink_bps", "min_micro_batch",
				cJSON_CreateNumber(env->min_micro > 1 ? env->min_micro : 1));
	pipar_json_insert_after(root, "min_micro_batch", "memory_bytes",
				env->memory > 0 ? pipar_json_fixed(env->memory, 0) : cJSON_CreateNull());
	pipar_json_insert_after(root, "memory_bytes", "chosen_by",
				cJSON_CreateString(env->fixed ? "given" : "search"));
	arr = cJSON_GetObjectItemCaseSensitive(root, "per_device");
	for (int k = 0; k < r->K; k++)
		pipar_json_insert_after(cJSON_GetArrayItem(arr, k), "device", "profile",
					cJSON_CreateString(r->dev_names[k]));
	o = cJSON_GetObjectItemCaseSensitive(root, "predicted");
	cJSON_DeleteItemFromObjectCaseSensitive(o, "iteration_seconds");
	cJSON_DeleteItemFromObjectCaseSensitive(o, "epoch_seconds");
	predicted(o, &r->sim);
	cJSON_AddItemToObject(o, "resources", busy_json(env, &r->sim));
	arr = cJSON_AddArrayToObject(root, "alternatives");
	for (int i = 0; i < r->ntop && i < r->top_n; i++) {
		cJSON *a = cJSON_CreateObject();

		cJSON_AddNumberToObject(a, "split_point", r->top[i].choice.P);
		cJSON_AddNumberToObject(a, "parallel_batches", r->top[i].choice.N);
		pipar_json_add_fixed(a, "iteration_seconds", r->top[i].iteration, 6);
		pipar_json_add_fixed(a, "epoch_seconds", r->top[i].epoch, 6);
		cJSON_AddItemToArray(arr, a);
	}
	o = cJSON_AddObjectToObject(root, "baselines");
	for (int m = 0; m < 4; m++) {
		cJSON *b = cJSON_AddObjectToObject(o, pipar_mode_name((enum pipar_mode)m));
		const struct pipar_sim *bs = &r->bsim[m];

		if (!r->bok[m]) {
			cJSON_AddBoolToObject(b, "feasible", 0);
			continue;
		}
		cJSON_AddNumberToObject(b, "split_point", r->bch[m][0].P);
		cJSON_AddNumberToObject(b, "parallel_batches", r->bch[m][0].N);
		predicted(b, bs);
		pipar_json_add_fixed(b, "server_idle_seconds", fmax(0, bs->iteration - bs->srv_busy), 6);
	}
	pipar_json_add_fixed(root, "search_seconds", r->search_seconds, 6);
	return root;
}

int main(int argc, char **argv)
{
	struct run *r = calloc(1, sizeof(*r));
	int status;
	char *text;
	cJSON *root;

	if (!r) {
		fprintf(stderr, PROG ": out of memory\n");
		return 1;
	}
	r->top_n = 5;
	r->mode = PIPAR_MODE_PIPAR;
	if ((status = parse_args(r, argc, argv)) >= 0 || (status = check_args(r)) >= 0 ||
	    (status = load(r)) != 0)
		goto out;
	if (search(r) < 0) {
		status = 1;
		goto out;
	}
	root = plan_json(r);
	text = root ? cJSON_Print(root) : NULL;
	cJSON_Delete(root);
	status = put_out(text) < 0 ? 1 : 0;
	free(text);
	if (status == 0 && r->explain_on) {
		struct pipar_choice b0[4];

		for (int m = 0; m < 4; m++)
			b0[m] = r->bch[m][0];
		explain(&r->env, r->mode, r->srv->nunits, r->best, &r->sim, r->top,
			r->ntop < r->top_n ? r->ntop : r->top_n, r->bsim, b0, r->bok, r->search_seconds);
	}
out:
	pipar_plan_tables_free(&r->env);
	for (int i = 0; i < r->ndev; i++)
		pipar_profile_free(r->dev[i]);
	pipar_profile_free(r->srv);
	free(r);
	return status;
}
