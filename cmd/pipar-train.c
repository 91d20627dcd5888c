/*
 * pipar-train: centralised training of a whole model on one data set, the
 * accuracy reference for the distributed modes.  One JSON object per epoch
 * on stdout; progress on stderr when it is a terminal.
 */
#define _POSIX_C_SOURCE 200809L
#include <cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "data.h"
#include "exec.h"
#include "model.h"
#include "pool.h"
#include "cli.h"
#include "progress.h"
#include "train.h"
#include "file.h"

#define PROG "pipar-train"
#define VERSION "0.1.0"

static const char usage_text[] =
	"usage: pipar-train --model NAME|FILE.json|- --data SPEC [--test-data SPEC]\n"
	"                   [--epochs E] [--batch B] [--lr LR] [--momentum M]\n"
	"                   [--weight-decay WD] [--seed S] [--threads T]\n"
	"                   [--train-limit N] [--test-limit N] [--shard I/K]\n"
	"                   [--partition iid|dirichlet:ALPHA] [--checkpoint FILE|-]\n"
	"                   [--checkpoint-every E] [--resume FILE|-]\n"
	"                   [--progress auto|always|never]\n";

static int usage_error(const char *msg)
{
	fprintf(stderr, PROG ": %s\n%s", msg, usage_text);
	return 2;
}

struct progress {
	struct pipar_meter *meter;
	int epoch, epochs;
};

/* The settings that produced a checkpoint, as a JSON object (malloc'd). */
static char *settings_json(const char *data, int epochs, const struct pipar_train_cfg *cfg,
			   int threads, long train_limit, const struct pipar_shard_spec *sh)
{
	cJSON *o = cJSON_CreateObject();
	char shard[32], seed[32];
	char *text;

	snprintf(shard, sizeof(shard), "%d/%d", sh->index, sh->count);
	snprintf(seed, sizeof(seed), "%llu", (unsigned long long)cfg->seed);
	cJSON_AddStringToObject(o, "data", data);
	cJSON_AddNumberToObject(o, "epochs", epochs);
	cJSON_AddNumberToObject(o, "batch", cfg->batch);
	/* Floats printed at their own precision: 0.01, not 0.0099999998. */
	const char *names[3] = {"lr", "momentum", "weight_decay"};
	float vals[3] = {cfg->sgd.lr, cfg->sgd.momentum, cfg->sgd.weight_decay};
	for (int i = 0; i < 3; i++) {
		char num[32];

		snprintf(num, sizeof(num), "%.7g", (double)vals[i]);
		cJSON_AddRawToObject(o, names[i], num);
	}
	cJSON_AddRawToObject(o, "seed", seed);
	cJSON_AddNumberToObject(o, "threads", threads);
	cJSON_AddNumberToObject(o, "train_limit", (double)train_limit);
	cJSON_AddStringToObject(o, "shard", shard);
	if (sh->partition == PIPAR_PARTITION_IID) {
		cJSON_AddStringToObject(o, "partition", "iid");
	} else {
		char part[64];

		snprintf(part, sizeof(part), "dirichlet:%.9g", sh->alpha);
		cJSON_AddStringToObject(o, "partition", part);
	}
	text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return text;
}

/* Writes the checkpoint of the model after epoch ep. */
static int save(const char *path, const struct pipar_model *m, const struct pipar_exec *e,
		const struct pipar_norm *norm, int ep, char *settings)
{
	struct pipar_ckpt_info info = {.epoch = ep, .norm = *norm, .training = settings};
	char err[PIPAR_ERRLEN];

	info.rng[0] = e->rng.s[0];
	info.rng[1] = e->rng.s[1];
	if (pipar_checkpoint_save(path, m, &info, 1, err) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		return -1;
	}
	return 0;
}

static void show_progress(void *arg, int done, int total)
{
	const struct progress *p = arg;
	struct pipar_progress pr = {p->epoch, p->epochs, done, total, "mini-batch", NAN};

	pipar_meter_update(p->meter, &pr, done == total);
}

/* One invocation: the options, and the data, model and state they make. */
struct run {
	const char *model_name, *data_spec, *test_spec;
	const char *shard_arg, *partition_arg;
	const char *ckpt_path, *resume_path;
	int ckpt_every, first_epoch, epochs, batch, threads, when;
	long train_limit, test_limit;
	struct pipar_train_cfg cfg;
	struct pipar_shard_spec shard;
	char test_buf[4096];
	struct pipar_ckpt_info resume;
	char *settings, *spec;
	struct pipar_data *train, *test;
	struct pipar_model *m;
	struct pipar_exec *e;
	struct pipar_norm norm;
	int *idx, nidx;
	struct pipar_meter meter;
	FILE *records;
};

/* The options into r.  Returns -1 to go on, or the exit status (help, a
 * usage error). */
static int parse_args(struct run *r, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"model", required_argument, NULL, 'm'},
		{"data", required_argument, NULL, 'd'},
		{"test-data", required_argument, NULL, 'D'},
		{"epochs", required_argument, NULL, 'e'},
		{"batch", required_argument, NULL, 'b'},
		{"lr", required_argument, NULL, 'l'},
		{"momentum", required_argument, NULL, 'M'},
		{"weight-decay", required_argument, NULL, 'w'},
		{"seed", required_argument, NULL, 's'},
		{"threads", required_argument, NULL, 't'},
		{"train-limit", required_argument, NULL, 'n'},
		{"test-limit", required_argument, NULL, 'N'},
		{"shard", required_argument, NULL, 'k'},
		{"partition", required_argument, NULL, 'p'},
		{"checkpoint", required_argument, NULL, 'c'},
		{"checkpoint-every", required_argument, NULL, 'E'},
		{"resume", required_argument, NULL, 'r'},
		{"progress", required_argument, NULL, 'P'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct pipar_train_cfg *cfg = &r->cfg;
	char err[PIPAR_ERRLEN];
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case 'm': r->model_name = optarg; break;
		case 'd': r->data_spec = optarg; break;
		case 'D': r->test_spec = optarg; break;
		case 'e': bad = pipar_cli_int("--epochs", optarg, 0, 1000000, &r->epochs, err); break;
		case 'b': bad = pipar_cli_int("--batch", optarg, 1, 1 << 20, &r->batch, err); break;
		case 'l': bad = pipar_cli_float("--lr", optarg, 0, 1e6, &cfg->sgd.lr, err); break;
		case 'M': bad = pipar_cli_float("--momentum", optarg, 0, 1, &cfg->sgd.momentum, err); break;
		case 'w':
			bad = pipar_cli_float("--weight-decay", optarg, 0, 1e6, &cfg->sgd.weight_decay, err);
			break;
		case 's': bad = pipar_cli_u64("--seed", optarg, &cfg->seed, err); break;
		case 't': bad = pipar_cli_int("--threads", optarg, 1, 1024, &r->threads, err); break;
		case 'n': bad = pipar_cli_long("--train-limit", optarg, 1, INT_MAX, &r->train_limit, err); break;
		case 'N': bad = pipar_cli_long("--test-limit", optarg, 1, INT_MAX, &r->test_limit, err); break;
		case 'k': r->shard_arg = optarg; break;
		case 'p': r->partition_arg = optarg; break;
		case 'c': r->ckpt_path = optarg; break;
		case 'E':
			bad = pipar_cli_int("--checkpoint-every", optarg, 1, 1000000, &r->ckpt_every, err);
			break;
		case 'r': r->resume_path = optarg; break;
		case 'P':
			bad = pipar_cli_choice("--progress", optarg, pipar_progress_names, &r->when, err);
			break;
		default: return pipar_cli_common(c, argv, PROG, VERSION, usage_text);
		}
		if (bad)
			return usage_error(err);
	}
	if ((c = pipar_cli_operands(argc, argv, PROG, usage_text)) >= 0)
		return c;
	return -1;
}

/* What the options need of each other, and the checkpoint's path checked
 * before any work.  -1 when all is well, or the exit status. */
static int check_args(struct run *r)
{
	char err[PIPAR_ERRLEN];

	if (!r->model_name && !r->resume_path)
		return usage_error("missing --model");
	if (r->ckpt_every && !r->ckpt_path)
		return usage_error("--checkpoint-every needs --checkpoint");
	if (r->ckpt_path && strcmp(r->ckpt_path, "-") == 0) {
		/* The checkpoint takes standard output; the epoch records go
		 * to standard error. */
		if (r->ckpt_every)
			return usage_error("--checkpoint - writes one checkpoint, at the end: "
					   "--checkpoint-every needs a file");
		r->records = stderr;
	}
	if (r->model_name && r->resume_path && !strcmp(r->model_name, "-") &&
	    !strcmp(r->resume_path, "-"))
		return usage_error("--model and --resume cannot both be '-': standard input holds one of them");
	if (!r->data_spec)
		return usage_error("missing --data");
	if ((r->shard_arg && pipar_shard_parse(r->shard_arg, &r->shard, err) < 0) ||
	    (r->partition_arg && pipar_partition_parse(r->partition_arg, &r->shard, err) < 0))
		return usage_error(err);
	if (r->partition_arg && !r->shard_arg)
		return usage_error("--partition needs --shard");
	r->shard.seed = r->cfg.seed;
	if (!r->test_spec) {
		if (pipar_data_spec_split(r->data_spec, "test", r->test_buf, sizeof(r->test_buf)) < 0)
			return usage_error("the data spec given to --data is too long");
		r->test_spec = r->test_buf;
	}
	if (r->ckpt_path && pipar_out_check(r->ckpt_path, err) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		return 1;
	}
	return -1;
}

/* The model: from --resume (its momentum, epoch, normalisation and
 * dropout generator with it; the settings come from the command line),
 * or new from --model.  -1 with err. */
static int load_model(struct run *r, char *err)
{
	const struct pipar_data *train = r->train;

	if (!r->resume_path)
		return pipar_model_load_spec(r->model_name, &r->spec, err) < 0 ||
		       pipar_model_new(r->spec, train->shape, train->classes, 0, -1, r->cfg.seed,
				       &r->m, err) < 0 ? -1 : 0;
	if (pipar_checkpoint_load(r->resume_path, &r->m, &r->resume, err) < 0)
		return -1;
	if (!pipar_shape_eq(r->m->in, train->shape) || r->m->classes != train->classes ||
	    r->m->first_unit != 0 || r->m->nunits != r->m->total_units)
		return pipar_errf(err, "checkpoint '%s' does not fit data '%s' (shape or classes differ)",
				  r->resume_path, r->data_spec);
	if (r->model_name) {
		struct pipar_model *given = NULL;
		int same;

		if (pipar_model_load_spec(r->model_name, &r->spec, err) < 0 ||
		    pipar_model_new(r->spec, train->shape, train->classes, 0, -1, r->cfg.seed, &given,
				    err) < 0)
			return -1;
		same = strcmp(given->spec, r->m->spec) == 0;
		pipar_model_free(given);
		if (!same)
			return pipar_errf(err, "--model '%s' is not the model in '%s'", r->model_name,
					  r->resume_path);
	}
	r->norm = r->resume.norm;
	r->first_epoch = r->resume.epoch + 1;
	return 0;
}

/* The data, the normalisation, the model, the shard and the workspace.
 * -1 with err. */
static int prepare(struct run *r, char *err)
{
	if (pipar_data_open(r->data_spec, &r->train, err) < 0 ||
	    pipar_data_open(r->test_spec, &r->test, err) < 0)
		return -1;
	if (!pipar_shape_eq(r->train->shape, r->test->shape) || r->train->classes != r->test->classes)
		return pipar_errf(err, "test data '%s' does not match the shape or classes of '%s'",
				  r->test_spec, r->data_spec);
	pipar_meter_status(&r->meter, "computing the input normalisation over %d samples of '%s'",
			   r->train->count, r->data_spec);
	pipar_data_norm(r->train, &r->norm);
	if (load_model(r, err) < 0 || pipar_data_shard(r->train, &r->shard, &r->idx, &r->nidx, err) < 0)
		return -1;
	if (r->train_limit && r->train_limit < r->nidx)
		r->nidx = (int)r->train_limit;
	if (r->nidx == 0)
		return pipar_errf(err, "no training samples in shard %d/%d of '%s'", r->shard.index,
				  r->shard.count, r->data_spec);
	r->cfg.batch = r->batch;
	if (!(r->e = pipar_exec_new(r->m, r->batch, 0, err)))
		return -1;
	if (r->resume_path) {
		r->e->rng.s[0] = r->resume.rng[0];
		r->e->rng.s[1] = r->resume.rng[1];
	}
	r->settings = settings_json(r->data_spec, r->epochs, &r->cfg, r->threads, r->train_limit,
				    &r->shard);
	return r->settings ? 0 : pipar_errf(err, "out of memory");
}

/* Epoch ep: training, testing, its record, and the checkpoint when due.
 * -1 with the reason printed. */
static int run_epoch(struct run *r, int ep)
{
	struct pipar_meter *meter = &r->meter;
	struct pipar_epoch_stats tr, te;
	struct progress pr = {meter, ep, r->epochs};
	char line[512], el[32], err[PIPAR_ERRLEN];
	int tests = r->test_limit && r->test_limit < r->test->count ? (int)r->test_limit : r->test->count;

	if (pipar_train_epoch(r->m, r->e, r->train, &r->norm, r->idx, r->nidx, ep, &r->cfg, &tr,
			      meter->on ? show_progress : NULL, &pr, err) < 0)
		goto fail;
	pipar_meter_status(meter, "epoch %d/%d: testing on %d samples of '%s'", ep, r->epochs, tests,
			   r->test_spec);
	if (pipar_train_evaluate(r->m, r->e, r->test, &r->norm, (int)r->test_limit, &te, NULL, err) < 0)
		goto fail;
	pipar_format_duration(pipar_now() - meter->t0, el, sizeof(el));
	if (meter->on)
		pipar_meter_log(meter, PROG ": epoch %d/%d: loss %.4f, test accuracy %.4f, %s elapsed",
				ep, r->epochs, tr.loss, te.accuracy, el);
	if (!isfinite(tr.loss)) {
		snprintf(err, sizeof(err), "training diverged (loss is %f); try a smaller --lr", tr.loss);
		goto fail;
	}
	snprintf(line, sizeof(line),
		 "{\"format\":\"pipar-train-epoch/1\",\"epoch\":%d,\"loss\":%.6f,"
		 "\"train_accuracy\":%.6f,\"test_loss\":%.6f,\"test_accuracy\":%.6f,"
		 "\"train_samples\":%d,\"test_samples\":%d,\"seconds\":%.3f}",
		 ep, tr.loss, tr.accuracy, te.loss, te.accuracy, tr.samples, te.samples, tr.seconds);
	if (r->records == stderr) {
		pipar_meter_log(meter, "%s", line);
	} else if (printf("%s\n", line) < 0 || fflush(stdout) != 0) {
		snprintf(err, sizeof(err), "cannot write to standard output: %s", strerror(errno));
		goto fail;
	}
	if (r->ckpt_path && ((r->ckpt_every && ep % r->ckpt_every == 0) || ep == r->epochs))
		return save(r->ckpt_path, r->m, r->e, &r->norm, ep, r->settings);
	return 0;
fail:
	pipar_meter_end(meter);
	fprintf(stderr, PROG ": %s\n", err);
	return -1;
}

int main(int argc, char **argv)
{
	struct run *r = calloc(1, sizeof(*r));
	char err[PIPAR_ERRLEN], s[48];
	int status;

	if (!r) {
		fprintf(stderr, PROG ": out of memory\n");
		return 1;
	}
	r->first_epoch = 1;
	r->epochs = 1;
	r->batch = 100;
	r->when = PIPAR_PROGRESS_AUTO;
	r->records = stdout;
	r->cfg = (struct pipar_train_cfg){.sgd = {0.01f, 0.9f, 0.0f}, .seed = 1};
	r->shard = (struct pipar_shard_spec){0, 1, PIPAR_PARTITION_IID, 0, 1};
	if ((status = parse_args(r, argc, argv)) >= 0 || (status = check_args(r)) >= 0) {
		free(r);
		return status;
	}
	status = 1;
	pipar_meter_init(&r->meter, stderr, PROG, (enum pipar_progress_when)r->when);
	if (r->threads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		r->threads = n > 0 ? (int)n : 1;
	}
	r->threads = pipar_threads_set(r->threads);
	if (prepare(r, err) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	if (r->meter.on) {
		pipar_shape_str(r->train->shape, s, sizeof(s));
		pipar_meter_log(&r->meter, PROG ": %s on %s (%d samples, %s, %d classes), %zu parameters, %d threads",
				r->m->name, r->data_spec, r->nidx, s, r->train->classes,
				pipar_model_ntrain(r->m), r->threads);
	}
	for (int ep = r->first_epoch; ep <= r->epochs; ep++)
		if (run_epoch(r, ep) < 0)
			goto out;
	/* Nothing left to train (resuming a finished run, or --epochs 0):
	 * the checkpoint still reflects the model as it is. */
	if (r->ckpt_path && r->first_epoch > r->epochs &&
	    save(r->ckpt_path, r->m, r->e, &r->norm, r->first_epoch - 1, r->settings) < 0)
		goto out;
	status = 0;
out:
	pipar_meter_end(&r->meter);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, PROG ": cannot write to standard output: %s\n", strerror(errno));
		status = 1;
	}
	free(r->idx);
	free(r->spec);
	free(r->settings);
	pipar_checkpoint_info_free(&r->resume);
	pipar_exec_free(r->e);
	pipar_model_free(r->m);
	pipar_data_free(r->train);
	pipar_data_free(r->test);
	free(r);
	return status;
}
