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
#include "model.h"
#include "pool.h"
#include "cli.h"
#include "progress.h"
#include "train.h"

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

int main(int argc, char **argv)
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
	const char *model_name = NULL, *data_spec = NULL, *test_spec = NULL;
	const char *shard_arg = NULL, *partition_arg = NULL;
	const char *ckpt_path = NULL, *resume_path = NULL;
	int ckpt_every = 0, first_epoch = 1;
	struct pipar_ckpt_info resume = {0};
	char *settings = NULL;
	int epochs = 1, batch = 100, threads = 0, c;
	long train_limit = 0, test_limit = 0;
	struct pipar_train_cfg cfg = {.sgd = {0.01f, 0.9f, 0.0f}, .seed = 1};
	struct pipar_shard_spec shard = {0, 1, PIPAR_PARTITION_IID, 0, 1};
	char err[PIPAR_ERRLEN], test_buf[4096];
	struct pipar_data *train = NULL, *test = NULL;
	struct pipar_model *m = NULL;
	struct pipar_exec *e = NULL;
	struct pipar_norm norm;
	char *spec = NULL;
	int *idx = NULL, nidx = 0, status = 1;
	int when = PIPAR_PROGRESS_AUTO;
	struct pipar_meter meter;
	FILE *records = stdout;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case 'm': model_name = optarg; break;
		case 'd': data_spec = optarg; break;
		case 'D': test_spec = optarg; break;
		case 'e': bad = pipar_cli_int("--epochs", optarg, 0, 1000000, &epochs, err); break;
		case 'b': bad = pipar_cli_int("--batch", optarg, 1, 1 << 20, &batch, err); break;
		case 'l': bad = pipar_cli_float("--lr", optarg, 0, 1e6, &cfg.sgd.lr, err); break;
		case 'M': bad = pipar_cli_float("--momentum", optarg, 0, 1, &cfg.sgd.momentum, err); break;
		case 'w':
			bad = pipar_cli_float("--weight-decay", optarg, 0, 1e6, &cfg.sgd.weight_decay, err);
			break;
		case 's': bad = pipar_cli_u64("--seed", optarg, &cfg.seed, err); break;
		case 't': bad = pipar_cli_int("--threads", optarg, 1, 1024, &threads, err); break;
		case 'n': bad = pipar_cli_long("--train-limit", optarg, 1, INT_MAX, &train_limit, err); break;
		case 'N': bad = pipar_cli_long("--test-limit", optarg, 1, INT_MAX, &test_limit, err); break;
		case 'k': shard_arg = optarg; break;
		case 'p': partition_arg = optarg; break;
		case 'c': ckpt_path = optarg; break;
		case 'E':
			bad = pipar_cli_int("--checkpoint-every", optarg, 1, 1000000, &ckpt_every, err);
			break;
		case 'r': resume_path = optarg; break;
		case 'P':
			bad = pipar_cli_choice("--progress", optarg, pipar_progress_names, &when, err);
			break;
		case 'h': fputs(usage_text, stdout); return fflush(stdout) == 0 ? 0 : 1;
		case 'V': puts(PROG " " VERSION); return fflush(stdout) == 0 ? 0 : 1;
		default:
			pipar_cli_getopt_error(c, argv, err);
			bad = -1;
		}
		if (bad)
			return usage_error(err);
	}
	if (optind < argc) {
		snprintf(err, sizeof(err), "unexpected argument '%s'", argv[optind]);
		return usage_error(err);
	}
	if (!model_name && !resume_path)
		return usage_error("missing --model");
	if (ckpt_every && !ckpt_path)
		return usage_error("--checkpoint-every needs --checkpoint");
	if (ckpt_path && strcmp(ckpt_path, "-") == 0) {
		/* The checkpoint takes standard output; the epoch records go
		 * to standard error. */
		if (ckpt_every)
			return usage_error("--checkpoint - writes one checkpoint, at the end: "
					   "--checkpoint-every needs a file");
		records = stderr;
	}
	if (model_name && resume_path && !strcmp(model_name, "-") && !strcmp(resume_path, "-"))
		return usage_error("--model and --resume cannot both be '-': standard input holds one of them");
	if (!data_spec)
		return usage_error("missing --data");
	if ((shard_arg && pipar_shard_parse(shard_arg, &shard, err) < 0) ||
	    (partition_arg && pipar_partition_parse(partition_arg, &shard, err) < 0))
		return usage_error(err);
	if (partition_arg && !shard_arg)
		return usage_error("--partition needs --shard");
	shard.seed = cfg.seed;
	if (!test_spec) {
		if (pipar_data_spec_split(data_spec, "test", test_buf, sizeof(test_buf)) < 0)
			return usage_error("the data spec given to --data is too long");
		test_spec = test_buf;
	}
	if (ckpt_path && pipar_out_check(ckpt_path, err) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		return 1;
	}
	pipar_meter_init(&meter, stderr, PROG, (enum pipar_progress_when)when);
	if (threads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		threads = n > 0 ? (int)n : 1;
	}
	threads = pipar_threads_set(threads);

	if (pipar_data_open(data_spec, &train, err) < 0 ||
	    pipar_data_open(test_spec, &test, err) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	if (!pipar_shape_eq(train->shape, test->shape) || train->classes != test->classes) {
		fprintf(stderr, PROG ": test data '%s' does not match the shape or classes of '%s'\n",
			test_spec, data_spec);
		goto out;
	}
	pipar_meter_status(&meter, "computing the input normalisation over %d samples of '%s'",
			   train->count, data_spec);
	pipar_data_norm(train, &norm);
	if (resume_path) {
		/* The model, its momentum, the epoch, the normalisation and the
		 * dropout generator come from the checkpoint; the settings come
		 * from the command line. */
		if (pipar_checkpoint_load(resume_path, &m, &resume, err) < 0) {
			fprintf(stderr, PROG ": %s\n", err);
			goto out;
		}
		if (!pipar_shape_eq(m->in, train->shape) || m->classes != train->classes ||
		    m->first_unit != 0 || m->nunits != m->total_units) {
			fprintf(stderr, PROG ": checkpoint '%s' does not fit data '%s' (shape or classes differ)\n",
				resume_path, data_spec);
			goto out;
		}
		if (model_name) {
			struct pipar_model *given = NULL;

			if (pipar_model_load_spec(model_name, &spec, err) < 0 ||
			    pipar_model_new(spec, train->shape, train->classes, 0, -1, cfg.seed,
					    &given, err) < 0) {
				fprintf(stderr, PROG ": %s\n", err);
				goto out;
			}
			int same = strcmp(given->spec, m->spec) == 0;

			pipar_model_free(given);
			if (!same) {
				fprintf(stderr, PROG ": --model '%s' is not the model in '%s'\n",
					model_name, resume_path);
				goto out;
			}
		}
		norm = resume.norm;
		first_epoch = resume.epoch + 1;
	} else if (pipar_model_load_spec(model_name, &spec, err) < 0 ||
		   pipar_model_new(spec, train->shape, train->classes, 0, -1, cfg.seed, &m, err) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	if (pipar_data_shard(train, &shard, &idx, &nidx, err) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	if (train_limit && train_limit < nidx)
		nidx = (int)train_limit;
	if (nidx == 0) {
		fprintf(stderr, PROG ": no training samples in shard %d/%d of '%s'\n",
			shard.index, shard.count, data_spec);
		goto out;
	}
	cfg.batch = batch;
	e = pipar_exec_new(m, batch, 0, err);
	if (!e) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	if (resume_path) {
		e->rng.s[0] = resume.rng[0];
		e->rng.s[1] = resume.rng[1];
	}
	settings = settings_json(data_spec, epochs, &cfg, threads, train_limit, &shard);
	if (!settings) {
		fprintf(stderr, PROG ": out of memory\n");
		goto out;
	}
	if (meter.on) {
		char s[48];

		pipar_shape_str(train->shape, s, sizeof(s));
		pipar_meter_log(&meter, PROG ": %s on %s (%d samples, %s, %d classes), %zu parameters, %d threads",
				m->name, data_spec, nidx, s, train->classes,
				pipar_model_ntrain(m), threads);
	}
	for (int ep = first_epoch; ep <= epochs; ep++) {
		struct pipar_epoch_stats tr, te;
		struct progress pr = {&meter, ep, epochs};
		char line[512], el[32];
		int tests = test_limit && test_limit < test->count ? (int)test_limit : test->count;

		if (pipar_train_epoch(m, e, train, &norm, idx, nidx, ep, &cfg, &tr,
				      meter.on ? show_progress : NULL, &pr, err) < 0) {
			pipar_meter_end(&meter);
			fprintf(stderr, PROG ": %s\n", err);
			goto out;
		}
		pipar_meter_status(&meter, "epoch %d/%d: testing on %d samples of '%s'", ep, epochs,
				   tests, test_spec);
		if (pipar_train_evaluate(m, e, test, &norm, (int)test_limit, &te, NULL, err) < 0) {
			pipar_meter_end(&meter);
			fprintf(stderr, PROG ": %s\n", err);
			goto out;
		}
		pipar_format_duration(pipar_now() - meter.t0, el, sizeof(el));
		if (meter.on)
			pipar_meter_log(&meter, PROG ": epoch %d/%d: loss %.4f, test accuracy %.4f, %s elapsed",
					ep, epochs, tr.loss, te.accuracy, el);
		if (!isfinite(tr.loss)) {
			pipar_meter_end(&meter);
			fprintf(stderr, PROG ": training diverged (loss is %f); try a smaller --lr\n",
				tr.loss);
			goto out;
		}
		snprintf(line, sizeof(line),
			 "{\"format\":\"pipar-train-epoch/1\",\"epoch\":%d,\"loss\":%.6f,"
			 "\"train_accuracy\":%.6f,\"test_loss\":%.6f,\"test_accuracy\":%.6f,"
			 "\"train_samples\":%d,\"test_samples\":%d,\"seconds\":%.3f}",
			 ep, tr.loss, tr.accuracy, te.loss, te.accuracy, tr.samples, te.samples,
			 tr.seconds);
		if (records == stderr) {
			pipar_meter_log(&meter, "%s", line);
		} else if (printf("%s\n", line) < 0 || fflush(stdout) != 0) {
			pipar_meter_end(&meter);
			fprintf(stderr, PROG ": cannot write to standard output: %s\n",
				strerror(errno));
			goto out;
		}
		if (ckpt_path && ((ckpt_every && ep % ckpt_every == 0) || ep == epochs) &&
		    save(ckpt_path, m, e, &norm, ep, settings) < 0)
			goto out;
	}
	/* Nothing left to train (resuming a finished run, or --epochs 0):
	 * the checkpoint still reflects the model as it is. */
	if (ckpt_path && first_epoch > epochs &&
	    save(ckpt_path, m, e, &norm, first_epoch - 1, settings) < 0)
		goto out;
	status = 0;
out:
	pipar_meter_end(&meter);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, PROG ": cannot write to standard output: %s\n", strerror(errno));
		status = 1;
	}
	free(idx);
	free(spec);
	free(settings);
	pipar_checkpoint_info_free(&resume);
	pipar_exec_free(e);
	pipar_model_free(m);
	pipar_data_free(train);
	pipar_data_free(test);
	return status;
}
