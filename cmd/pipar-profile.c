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
#include "profile.h"

#define PROG "pipar-profile"
#define VERSION "0.1.0"

static const char usage_text[] =
	"usage: pipar-profile --model NAME|FILE.json --data SPEC --batch B\n"
	"                     [--role device|server] [--threads T] [--sizes N1,N2,...]\n"
	"                     [--repeat R] [--slowdown F]\n";

static int usage(const char *fmt, const char *arg)
{
	fprintf(stderr, PROG ": ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n%s", usage_text);
	return 2;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;

	errno = 0;
	*out = strtol(s, &end, 10);
	return errno || end == s || *end || *out < lo || *out > hi ? -1 : 0;
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
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct pipar_profile_cfg cfg = {.role = "device", .repeat = 5, .slowdown = 1};
	const char *model_name = NULL, *data_spec = NULL;
	long v, threads = 1;
	int c, status = 1;
	char err[PIPAR_ERRLEN], *spec = NULL, *end;
	struct pipar_data *d = NULL;
	struct pipar_norm norm;
	struct pipar_profile *p = NULL;
	float *x = NULL;
	int *y = NULL, *idx = NULL;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'm': model_name = optarg; break;
		case 'd': data_spec = optarg; break;
		case 'b':
			if (parse_long(optarg, 1, 1 << 16, &v) < 0)
				return usage("bad --batch '%s': expected an integer in [1, 65536]", optarg);
			cfg.batch = (int)v;
			break;
		case 'r':
			if (strcmp(optarg, "device") && strcmp(optarg, "server"))
				return usage("bad --role '%s': expected device or server", optarg);
			cfg.role = optarg;
			break;
		case 't':
			if (parse_long(optarg, 1, 1024, &threads) < 0)
				return usage("bad --threads '%s': expected an integer in [1, 1024]", optarg);
			break;
		case 's': {
			const char *q = optarg;

			cfg.nsizes = 0;
			while (*q) {
				errno = 0;
				v = strtol(q, &end, 10);
				if (errno || end == q || v < 1 || v > (1 << 16) ||
				    cfg.nsizes == PIPAR_PROFILE_MAXSIZES ||
				    (cfg.nsizes && v <= cfg.sizes[cfg.nsizes - 1]) ||
				    (*end && *end != ','))
					return usage("bad --sizes '%s': expected ascending positive integers, comma-separated, at most 32", optarg);
				cfg.sizes[cfg.nsizes++] = (int)v;
				q = *end ? end + 1 : end;
			}
			if (!cfg.nsizes)
				return usage("bad --sizes '%s'", optarg);
			break;
		}
		case 'R':
			if (parse_long(optarg, 1, 1000, &v) < 0)
				return usage("bad --repeat '%s': expected an integer in [1, 1000]", optarg);
			cfg.repeat = (int)v;
			break;
		case 'f':
			cfg.slowdown = strtod(optarg, &end);
			if (end == optarg || *end || !(cfg.slowdown >= 1 && cfg.slowdown <= 1e6))
				return usage("bad --slowdown '%s': expected a number in [1, 1e6]", optarg);
			break;
		case 'h': fputs(usage_text, stdout); return 0;
		case 'V': puts(PROG " " VERSION); return 0;
		default: fputs(usage_text, stderr); return 2;
		}
	}
	if (optind < argc)
		return usage("unexpected argument '%s'", argv[optind]);
	if (!model_name)
		return usage("%s", "missing --model");
	if (!data_spec)
		return usage("%s", "missing --data");
	if (!cfg.batch)
		return usage("%s", "missing --batch");
	if (cfg.nsizes && cfg.sizes[cfg.nsizes - 1] > cfg.batch)
		return usage("%s", "--sizes may not exceed --batch");
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
