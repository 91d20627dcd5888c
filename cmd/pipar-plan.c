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

#include "plan.h"
#include "profile.h"

#define PROG "pipar-plan"
#define VERSION "0.1.0"
#define MAXFILES 256

static const char usage_text[] =
	"usage: pipar-plan --device FILE [--device FILE ...] --server FILE --devices K\n"
	"                  --uplink RATE --downlink RATE --batch B [--mode pipar|fl|sl|sfl]\n"
	"                  [--memory BYTES] [--samples N] [--min-micro M] [--top T]\n"
	"                  [--explain]\n"
	"       pipar-plan --check FILE\n";

static int usage(const char *fmt, const char *arg)
{
	fprintf(stderr, PROG ": ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n%s", usage_text);
	return 2;
}


static int parse_bytes(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);
	double mul = 1;

	if (end == s || !(v > 0))
		return -1;
	if (*end) {
		if (strcasecmp(end, "k") == 0 || strcasecmp(end, "kib") == 0)
			mul = 1024.0;
		else if (strcasecmp(end, "m") == 0 || strcasecmp(end, "mib") == 0)
			mul = 1024.0 * 1024;
		else if (strcasecmp(end, "g") == 0 || strcasecmp(end, "gib") == 0)
			mul = 1024.0 * 1024 * 1024;
		else
			return -1;
	}
	*out = v * mul;
	return 0;
}

static cJSON *busy_json(const struct pipar_plan_env *env, const struct pipar_sim *s)
{
	cJSON *o = cJSON_CreateObject(), *devs, *srv;

	srv = cJSON_AddObjectToObject(o, "server");
	cJSON_AddNumberToObject(srv, "busy_seconds", s->srv_busy);
	cJSON_AddNumberToObject(srv, "idle_seconds", fmax(0, s->iteration - s->srv_busy));
	devs = cJSON_AddArrayToObject(o, "devices");
	for (int k = 0; k < env->K; k++) {
		cJSON *d = cJSON_CreateObject();

		cJSON_AddNumberToObject(d, "device", k + 1);
		cJSON_AddNumberToObject(d, "compute_busy_seconds", s->dev_busy[k]);
		cJSON_AddNumberToObject(d, "compute_idle_seconds", fmax(0, s->iteration - s->dev_busy[k]));
		cJSON_AddNumberToObject(d, "uplink_busy_seconds", s->up_busy[k]);
		cJSON_AddNumberToObject(d, "uplink_idle_seconds", fmax(0, s->iteration - s->up_busy[k]));
		cJSON_AddNumberToObject(d, "downlink_busy_seconds", s->down_busy[k]);
		cJSON_AddNumberToObject(d, "downlink_idle_seconds", fmax(0, s->iteration - s->down_busy[k]));
		cJSON_AddNumberToObject(d, "memory_bytes", s->dev_memory[k]);
		cJSON_AddItemToArray(devs, d);
	}
	return o;
}

static void predicted(cJSON *o, const struct pipar_sim *s)
{
	cJSON_AddNumberToObject(o, "iteration_seconds", s->iteration);
	cJSON_AddNumberToObject(o, "iterations_per_epoch", (double)s->iterations);
	cJSON_AddNumberToObject(o, "aggregation_seconds", s->aggregation);
	cJSON_AddNumberToObject(o, "epoch_seconds", s->epoch);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"device", required_argument, NULL, 'd'},
		{"server", required_argument, NULL, 's'},
		{"devices", required_argument, NULL, 'K'},
		{"uplink", required_argument, NULL, 'u'},
		{"downlink", required_argument, NULL, 'w'},
		{"batch", required_argument, NULL, 'b'},
		{"mode", required_argument, NULL, 'm'},
		{"memory", required_argument, NULL, 'M'},
		{"samples", required_argument, NULL, 'n'},
		{"top", required_argument, NULL, 't'},
		{"explain", no_argument, NULL, 'x'},
		{"check", required_argument, NULL, 'c'},
		{"min-micro", required_argument, NULL, 'u' + 256},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *dev_files[MAXFILES], *srv_file = NULL;
	const char *dev_names[PIPAR_PLAN_MAXDEV];
	struct pipar_profile *dev[MAXFILES] = {0}, *srv = NULL;
	const struct pipar_profile *per[PIPAR_PLAN_MAXDEV];
	int ndev = 0, K = 0, top_n = 5, explain = 0, c, status = 1, stdin_used = 0;
	long samples = 0;
	enum pipar_mode mode = PIPAR_MODE_PIPAR;
	struct pipar_plan_env env = {0};
	char err[PIPAR_ERRLEN], *end;
	static struct pipar_choice best[PIPAR_PLAN_MAXDEV], bch[PIPAR_PLAN_MAXDEV];
	static struct pipar_sim sim, bsim;
	struct pipar_candidate top[64];
	int ntop;
	double t0;
	const char *check_file = NULL;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			if (ndev == MAXFILES)
				return usage("%s", "too many --device profiles");
			dev_files[ndev++] = optarg;
			break;
		case 's': srv_file = optarg; break;
		case 'K':
			K = (int)strtol(optarg, &end, 10);
			if (end == optarg || *end || K < 1 || K > PIPAR_PLAN_MAXDEV)
				return usage("bad --devices '%s': expected an integer in [1, 256]", optarg);
			break;
		case 'u':
			if (pipar_rate_parse(optarg, &env.up_bps) < 0)
				return usage("bad --uplink '%s': expected a rate such as 10mbit, 1gbit, 500kbit, 2MB/s", optarg);
			break;
		case 'w':
			if (pipar_rate_parse(optarg, &env.down_bps) < 0)
				return usage("bad --downlink '%s': expected a rate such as 25mbit, 1gbit, 500kbit, 2MB/s", optarg);
			break;
		case 'b':
			env.batch = (int)strtol(optarg, &end, 10);
			if (end == optarg || *end || env.batch < 1 || env.batch > 4096)
				return usage("bad --batch '%s': expected an integer in [1, 4096]", optarg);
			break;
		case 'm':
			if (pipar_mode_parse(optarg, &mode) < 0)
				return usage("bad --mode '%s': expected pipar, fl, sl or sfl", optarg);
			break;
		case 'M':
			if (parse_bytes(optarg, &env.memory) < 0)
				return usage("bad --memory '%s': expected bytes, optionally with K, M or G", optarg);
			break;
		case 'n':
			samples = strtol(optarg, &end, 10);
			if (end == optarg || *end || samples < 1)
				return usage("bad --samples '%s': expected a positive integer", optarg);
			break;
		case 't':
			top_n = (int)strtol(optarg, &end, 10);
			if (end == optarg || *end || top_n < 0 || top_n > 64)
				return usage("bad --top '%s': expected an integer in [0, 64]", optarg);
			break;
		case 'x': explain = 1; break;
		case 'u' + 256:
			env.min_micro = (int)strtol(optarg, &end, 10);
			if (end == optarg || *end || env.min_micro < 1 || env.min_micro > 4096)
				return usage("bad --min-micro '%s': expected an integer in [1, 4096]", optarg);
			break;
		case 'c': check_file = optarg; break;
		case 'h': fputs(usage_text, stdout); return 0;
		case 'V': puts(PROG " " VERSION); return 0;
		default: fputs(usage_text, stderr); return 2;
		}
	}
	if (optind < argc)
		return usage("unexpected argument '%s'", argv[optind]);
	if (check_file) {
		/* Validate a plan as the programs that follow it will read it. */
		char *text = pipar_read_file(check_file, 64u << 20, NULL, err);
		struct pipar_plan_file *pf = NULL;
		const char *name = strcmp(check_file, "-") ? check_file : "<stdin>";

		if (argc != optind || ndev || srv_file || K || env.up_bps || env.down_bps ||
		    env.batch || env.memory || samples || explain || top_n != 5 || env.min_micro)
			return usage("%s", "--check takes no other options");
		if (!text || pipar_plan_parse(text, name, &pf, err) < 0) {
			free(text);
			fprintf(stderr, PROG ": %s\n", err);
			return 1;
		}
		printf("%s: valid pipar-plan/1: mode %s, %d device(s), P %d, N %d, predicted %.6g s per iteration\n",
		       name, pipar_mode_name(pf->mode), pf->K, pf->dev[0].P, pf->dev[0].N, pf->iteration);
		free(text);
		pipar_plan_file_free(pf);
		return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
	}
	if (!ndev)
		return usage("%s", "missing --device");
	if (!srv_file)
		return usage("%s", "missing --server");
	if (!K)
		return usage("%s", "missing --devices");
	if (!env.up_bps || !env.down_bps)
		return usage("%s", "missing --uplink or --downlink");
	if (!env.batch)
		return usage("%s", "missing --batch");
	if (ndev != 1 && ndev != K)
		return usage("%s", "give one --device profile for all devices, or one per device (--devices of them)");
	for (int i = 0; i < ndev; i++)
		stdin_used += strcmp(dev_files[i], "-") == 0;
	if (stdin_used + (strcmp(srv_file, "-") == 0) > 1)
		return usage("%s", "standard input ('-') can be read once only");

	for (int i = 0; i <= ndev; i++) {
		const char *path = i < ndev ? dev_files[i] : srv_file;
		const char *name = strcmp(path, "-") ? path : "<stdin>";
		char *text = pipar_read_file(path, 64u << 20, NULL, err);
		struct pipar_profile **slot = i < ndev ? &dev[i] : &srv;

		if (!text || pipar_profile_parse(text, name, slot, err) < 0) {
			free(text);
			fprintf(stderr, PROG ": %s\n", err);
			goto out;
		}
		free(text);
	}
	for (int k = 0; k < K; k++) {
		per[k] = dev[ndev == 1 ? 0 : k];
		dev_names[k] = strcmp(dev_files[ndev == 1 ? 0 : k], "-") ? dev_files[ndev == 1 ? 0 : k] : "<stdin>";
	}
	env.K = K;
	env.dev = per;
	env.srv = srv;
	/* Each device's share of the data set, unless given. */
	env.samples = samples ? samples : (per[0]->data_samples + K - 1) / K;
	if (pipar_plan_check(&env, dev_names, strcmp(srv_file, "-") ? srv_file : "<stdin>", err) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}

	t0 = pipar_now();
	pipar_plan_tables_build(&env);
	ntop = pipar_plan_search(&env, mode, best, &sim, top, top_n > 0 ? top_n : 1);
	if (ntop < 0) {
		fprintf(stderr, PROG ": no split point and batch count fits --memory %.0f bytes\n",
			env.memory);
		goto out;
	}
	double search_seconds = pipar_now() - t0;

	cJSON *root = cJSON_CreateObject(), *o, *arr;
	int L = srv->nunits;

	cJSON_AddStringToObject(root, "format", "pipar-plan/1");
	cJSON_AddStringToObject(root, "mode", pipar_mode_name(mode));
	cJSON_AddStringToObject(root, "model_name", srv->model_name);
	cJSON_AddItemToObject(root, "model", cJSON_Parse(srv->spec));
	o = cJSON_AddArrayToObject(root, "input");
	cJSON_AddItemToArray(o, cJSON_CreateNumber(srv->in.c));
	cJSON_AddItemToArray(o, cJSON_CreateNumber(srv->in.h));
	cJSON_AddItemToArray(o, cJSON_CreateNumber(srv->in.w));
	cJSON_AddNumberToObject(root, "classes", srv->classes);
	cJSON_AddNumberToObject(root, "units", L);
	cJSON_AddNumberToObject(root, "devices", K);
	cJSON_AddNumberToObject(root, "batch", env.batch);
	cJSON_AddNumberToObject(root, "samples_per_device", (double)env.samples);
	cJSON_AddNumberToObject(root, "uplink_bps", env.up_bps);
	cJSON_AddNumberToObject(root, "downlink_bps", env.down_bps);
	if (env.min_micro > 1)
		cJSON_AddNumberToObject(root, "min_micro_batch", env.min_micro);
	if (env.memory > 0)
		cJSON_AddNumberToObject(root, "memory_bytes", env.memory);
	else
		cJSON_AddNullToObject(root, "memory_bytes");
	cJSON_AddNumberToObject(root, "split_point", best[0].P);
	cJSON_AddNumberToObject(root, "parallel_batches", best[0].N);
	arr = cJSON_AddArrayToObject(root, "per_device");
	for (int k = 0; k < K; k++) {
		cJSON *d = cJSON_CreateObject(), *mb;

		cJSON_AddNumberToObject(d, "device", k + 1);
		cJSON_AddStringToObject(d, "profile", dev_names[k]);
		cJSON_AddNumberToObject(d, "split_point", best[k].P);
		cJSON_AddNumberToObject(d, "parallel_batches", best[k].N);
		mb = cJSON_AddArrayToObject(d, "micro_batches");
		for (int i = 0; i < best[k].N; i++)
			cJSON_AddItemToArray(mb, cJSON_CreateNumber(env.batch / best[k].N +
								   (i < env.batch % best[k].N)));
		cJSON_AddItemToArray(arr, d);
	}
	o = cJSON_AddObjectToObject(root, "predicted");
	predicted(o, &sim);
	cJSON_AddItemToObject(o, "resources", busy_json(&env, &sim));
	arr = cJSON_AddArrayToObject(root, "alternatives");
	for (int i = 0; i < ntop && i < top_n; i++) {
		cJSON *a = cJSON_CreateObject();

		cJSON_AddNumberToObject(a, "split_point", top[i].choice.P);
		cJSON_AddNumberToObject(a, "parallel_batches", top[i].choice.N);
		cJSON_AddNumberToObject(a, "iteration_seconds", top[i].iteration);
		cJSON_AddNumberToObject(a, "epoch_seconds", top[i].epoch);
		cJSON_AddItemToArray(arr, a);
	}
	o = cJSON_AddObjectToObject(root, "baselines");
	for (int m = 0; m < 4; m++) {
		cJSON *b = cJSON_AddObjectToObject(o, pipar_mode_name((enum pipar_mode)m));
		struct pipar_candidate bt[1];

		if ((enum pipar_mode)m == mode) {
			memcpy(bch, best, sizeof(best));
			bsim = sim;
		} else if (pipar_plan_search(&env, (enum pipar_mode)m, bch, &bsim, bt, 1) < 0) {
			cJSON_AddBoolToObject(b, "feasible", 0);
			continue;
		}
		cJSON_AddNumberToObject(b, "split_point", bch[0].P);
		cJSON_AddNumberToObject(b, "parallel_batches", bch[0].N);
		predicted(b, &bsim);
		cJSON_AddNumberToObject(b, "server_idle_seconds", fmax(0, bsim.iteration - bsim.srv_busy));
	}
	cJSON_AddNumberToObject(root, "search_seconds", search_seconds);
	{
		char *text = cJSON_Print(root);

		cJSON_Delete(root);
		if (!text || puts(text) < 0 || fflush(stdout) != 0 || ferror(stdout)) {
			free(text);
			fprintf(stderr, PROG ": cannot write to standard output: %s\n", strerror(errno));
			goto out;
		}
		free(text);
	}
	if (explain) {
		fprintf(stderr, "%s for %d device(s), batch %d, up %.3g Mbit/s, down %.3g Mbit/s, %ld samples/device\n",
			pipar_mode_name(mode), K, env.batch, env.up_bps / 1e6, env.down_bps / 1e6,
			env.samples);
		fprintf(stderr, "%4s %4s %4s %12s %12s %12s %12s\n", "rank", "P", "N", "iteration s",
			"epoch s", "server idle", "dev0 idle");
		for (int i = 0; i < ntop && i < top_n; i++) {
			struct pipar_choice ch[PIPAR_PLAN_MAXDEV];
			struct pipar_sim s;

			for (int k = 0; k < K; k++)
				ch[k] = top[i].choice;
			pipar_plan_simulate(&env, mode, ch, &s);
			fprintf(stderr, "%4d %4d %4d %12.4f %12.2f %12.4f %12.4f\n", i + 1,
				top[i].choice.P, top[i].choice.N, s.iteration, s.epoch,
				fmax(0, s.iteration - s.srv_busy), fmax(0, s.iteration - s.dev_busy[0]));
		}
		fprintf(stderr, "searched in %.4f s\n", search_seconds);
	}
	status = 0;
out:
	pipar_plan_tables_free(&env);
	for (int i = 0; i < ndev; i++)
		pipar_profile_free(dev[i]);
	pipar_profile_free(srv);
	return status;
}
