/*
 * pipar-profile: measure what each split unit of a model costs on this
 * machine, for pipar-plan.  Profile JSON on stdout.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data.h"
#include "model.h"
#include "pool.h"
#include "cli.h"
#include "profile.h"

#define PROG "pipar-profile"
#define VERSION "0.1.0"

static const char usage_text[] =
	"usage: pipar-profile --model NAME|FILE.json|- --data SPEC --batch B\n"
	"                     [--role device|server] [--threads T] [--sizes N1,N2,...]\n"
	"                     [--repeat R] [--slowdown F] [--stages]\n";

static int usage_error(const char *msg)
{
	fprintf(stderr, PROG ": %s\n%s", msg, usage_text);
	return 2;
}

/* --sizes: ascending integers in [1, 65536], comma-separated, at most
 * PIPAR_PROFILE_MAXSIZES of them, into cfg. */
static int parse_sizes(const char *arg, struct pipar_profile_cfg *cfg, char *err)
{
	const char *q = arg;
	char *end;
	long v;

	cfg->nsizes = 0;
	while (*q) {
		errno = 0;
		v = strtol(q, &end, 10);
		if (errno || end == q || v < 1 || v > (1 << 16) ||
		    cfg->nsizes == PIPAR_PROFILE_MAXSIZES ||
		    (cfg->nsizes && v <= cfg->sizes[cfg->nsizes - 1]) || (*end && *end != ','))
			return pipar_cli_bad(err, "--sizes", arg,
					     "ascending integers in [1, 65536], comma-separated, at most 32");
		cfg->sizes[cfg->nsizes++] = (int)v;
		q = *end ? end + 1 : end;
	}
	if (!cfg->nsizes)
		return pipar_cli_bad(err, "--sizes", arg,
				     "ascending integers in [1, 65536], comma-separated, at most 32");
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"model", required_argument, NULL, 'm'},
		{"data", required_argument, NULL, 'd'},
		{"batch", required_argument, NULL, 'b'},
		{"role", required_argument, NULL, 'r'},
		{"threads", required_argument, NULL, 't'},
		{"sizes", required_argument, NULL, 's'},
		{"repeat", required_argument, NULL, 'R'},
		{"slowdown", required_argument, NULL, 'f'},
		{"stages", no_argument, NULL, 'S'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct pipar_profile_cfg cfg = {.role = "device", .repeat = 5, .slowdown = 1};
	const char *model_name = NULL, *data_spec = NULL;
	long threads = 1;
	int c, status = 1;
	char err[PIPAR_ERRLEN], *spec = NULL;
	struct pipar_data *d = NULL;
	struct pipar_norm norm;
	struct pipar_profile *p = NULL;
	float *x = NULL;
	int *y = NULL, *idx = NULL;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case 'm': model_name = optarg; break;
		case 'd': data_spec = optarg; break;
		case 'b': bad = pipar_cli_int("--batch", optarg, 1, 1 << 16, &cfg.batch, err); break;
		case 'r': {
			static const char *const roles[] = {"device", "server", NULL};
			int r;

			bad = pipar_cli_choice("--role", optarg, roles, &r, err);
			cfg.role = roles[bad ? 0 : r];
			break;
		}
		case 't': bad = pipar_cli_long("--threads", optarg, 1, 1024, &threads, err); break;
		case 's': bad = parse_sizes(optarg, &cfg, err); break;
		case 'R': bad = pipar_cli_int("--repeat", optarg, 1, 1000, &cfg.repeat, err); break;
		case 'f': bad = pipar_cli_double("--slowdown", optarg, 1, 1e6, &cfg.slowdown, err); break;
		case 'S': cfg.stages = 1; break;
		default: return pipar_cli_common(c, argv, PROG, VERSION, usage_text);
		}
		if (bad)
			return usage_error(err);
	}
	if ((c = pipar_cli_operands(argc, argv, PROG, usage_text)) >= 0)
		return c;
	if (!model_name)
		return usage_error("missing --model");
	if (!data_spec)
		return usage_error("missing --data");
	if (!cfg.batch)
		return usage_error("missing --batch");
	if (cfg.nsizes && cfg.sizes[cfg.nsizes - 1] > cfg.batch)
		return usage_error("--sizes may not exceed --batch");
	pipar_profile_default_sizes(&cfg);
	cfg.threads = pipar_threads_set((int)threads);
	if (pipar_data_open(data_spec, &d, err) < 0 ||
	    pipar_model_load_spec(model_name, &spec, err) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	pipar_data_norm(d, &norm);
	x = pipar_alloc(sizeof(float) * pipar_shape_size(d->shape) * (size_t)cfg.batch);
	y = malloc(sizeof(int) * (size_t)cfg.batch);
	idx = malloc(sizeof(int) * (size_t)cfg.batch);
	if (!x || !y || !idx) {
		fprintf(stderr, PROG ": out of memory\n");
		goto out;
	}
	for (int i = 0; i < cfg.batch; i++)
		idx[i] = i % d->count;
	pipar_data_batch(d, &norm, idx, cfg.batch, x, y);
	if (isatty(STDERR_FILENO))
		fprintf(stderr, PROG ": timing %s, %d sizes x %d repeats...\n", model_name,
			cfg.nsizes, cfg.repeat);
	if (pipar_profile_run(spec, d->shape, d->classes, x, y, &cfg, &p, err) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	snprintf(p->data, sizeof(p->data), "%s", data_spec);
	p->data_samples = d->count;
	if (pipar_profile_write(stdout, p) < 0 || fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, PROG ": cannot write to standard output: %s\n", strerror(errno));
		goto out;
	}
	status = 0;
out:
	free(x);
	free(y);
	free(idx);
	free(spec);
	pipar_profile_free(p);
	pipar_data_free(d);
	return status;
}
