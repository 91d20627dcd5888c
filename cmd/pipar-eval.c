/*
 * pipar-eval: judging what training produced.  Sub-commands:
 *   accuracy   a checkpoint on a data set: accuracy, loss, per-class
 *              accuracy and the confusion matrix, as one JSON object
 *   trace      the traces of one run: busy, idle and utilisation per party
 *              and resource, iteration times, bytes moved, the bottleneck
 *   timeline   the traces of one run drawn as an SVG picture
 *   compare    run summaries side by side (Markdown or JSON)
 *   plot       test accuracy against wall-clock time of runs, as SVG
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "cli.h"
#include "data.h"
#include "exec.h"
#include "model.h"
#include "pool.h"
#include "summary.h"
#include "timeline.h"
#include "trace.h"
#include "train.h"
#include "json.h"

#define PROG "pipar-eval"
#define VERSION "0.1.0"

/* Each sub-command's usage, continuation lines indented as in the whole
 * usage text. */
static const char accuracy_usage[] =
	"pipar-eval accuracy --model FILE.npz|- --data SPEC [--limit N]\n"
	"                  [--batch B] [--threads T]\n";
static const char trace_usage[] = "pipar-eval trace FILE ...\n";
static const char timeline_usage[] =
	"pipar-eval timeline FILE ... --svg OUT.svg|- [--iterations A:B]\n";
static const char compare_usage[] =
	"pipar-eval compare SUMMARY ... [--json] [--target ACC]\n"
	"                  [--baseline MODE|FILE]...\n";
static const char plot_usage[] =
	"pipar-eval plot SUMMARY ... --svg OUT.svg|- [--title TEXT] [--target ACC]\n";

static const char *const usages[] = {accuracy_usage, trace_usage, timeline_usage,
				      compare_usage, plot_usage};

/* The whole usage text, or one sub-command's (sub not NULL). */
static void put_usage(FILE *f, const char *sub)
{
	int first = 1;

	for (size_t i = 0; i < sizeof(usages) / sizeof(usages[0]); i++) {
		if (sub && usages[i] != sub)
			continue;
		fputs(first ? "usage: " : "       ", f);
		fputs(usages[i], f);
		first = 0;
	}
}

/* Prints msg and the usage of sub (NULL: every sub-command); returns 2. */
static int usage_error(const char *sub, const char *msg)
{
	fprintf(stderr, PROG ": %s\n", msg);
	put_usage(stderr, sub);
	return 2;
}

static int help(const char *sub)
{
	put_usage(stdout, sub);
	return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
}

/* The batch size training used, from the checkpoint's settings: the same
 * size gives the same arithmetic, so the same predictions. */
static int training_batch(const struct pipar_ckpt_info *info)
{
	const char *p = info->training ? strstr(info->training, "\"batch\":") : NULL;
	long b = p ? strtol(p + 8, NULL, 10) : 0;

	return b >= 1 && b <= (1 << 20) ? (int)b : 100;
}

/* The pipar-accuracy/1 line: the scores and the confusion matrix conf of
 * classes x classes counts (row: the true label). */
static void put_accuracy(const char *model_path, const char *data_spec, int epoch,
			 const struct pipar_epoch_stats *st, const long *conf, int classes)
{
	printf("{\"format\":\"pipar-accuracy/1\",\"model\":");
	pipar_json_put_string(stdout, model_path);
	printf(",\"data\":");
	pipar_json_put_string(stdout, data_spec);
	printf(",\"epoch\":%d,\"samples\":%d,\"accuracy\":%.6f,\"loss\":%.6f,"
	       "\"per_class_accuracy\":[",
	       epoch, st->samples, st->accuracy, st->loss);
	for (int i = 0; i < classes; i++) {
		long row = 0;

		for (int j = 0; j < classes; j++)
			row += conf[(size_t)i * classes + j];
		if (row)
			printf("%s%.6f", i ? "," : "",
			       (double)conf[(size_t)i * classes + i] / (double)row);
		else
			printf("%snull", i ? "," : "");
	}
	printf("],\"confusion\":[");
	for (int i = 0; i < classes; i++) {
		printf("%s[", i ? "," : "");
		for (int j = 0; j < classes; j++)
			printf("%s%ld", j ? "," : "", conf[(size_t)i * classes + j]);
		printf("]");
	}
	printf("]}\n");
}

static int cmd_accuracy(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"model", required_argument, NULL, 'm'},
		{"data", required_argument, NULL, 'd'},
		{"limit", required_argument, NULL, 'n'},
		{"batch", required_argument, NULL, 'b'},
		{"threads", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *model_path = NULL, *data_spec = NULL;
	int limit = 0, batch = 0, threads = 0, c, status = 1;
	char err[PIPAR_ERRLEN];
	struct pipar_model *m = NULL;
	struct pipar_ckpt_info info = {0};
	struct pipar_data *d = NULL;
	struct pipar_exec *e = NULL;
	struct pipar_epoch_stats st;
	long *conf = NULL;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case 'm': model_path = optarg; break;
		case 'd': data_spec = optarg; break;
		case 'n': bad = pipar_cli_int("--limit", optarg, 1, INT_MAX, &limit, err); break;
		case 'b': bad = pipar_cli_int("--batch", optarg, 1, 1 << 20, &batch, err); break;
		case 't': bad = pipar_cli_int("--threads", optarg, 1, 1024, &threads, err); break;
		case 'h': return help(accuracy_usage);
		default:
			pipar_cli_getopt_error(c, argv, err);
			bad = -1;
		}
		if (bad)
			return usage_error(accuracy_usage, err);
	}
	if (optind < argc) {
		snprintf(err, sizeof(err), "accuracy: unexpected argument '%s'", argv[optind]);
		return usage_error(accuracy_usage, err);
	}
	if (!model_path)
		return usage_error(accuracy_usage, "accuracy: missing --model");
	if (!data_spec)
		return usage_error(accuracy_usage, "accuracy: missing --data");
	if (threads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		threads = n > 0 ? (int)n : 1;
	}
	pipar_threads_set(threads);
	if (pipar_checkpoint_load(model_path, &m, &info, err) < 0 ||
	    pipar_data_open(data_spec, &d, err) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	if (m->first_unit != 0 || m->nunits != m->total_units) {
		fprintf(stderr, PROG ": '%s' holds units %d..%d of %d, not a whole model\n",
			model_path, m->first_unit + 1, m->first_unit + m->nunits, m->total_units);
		goto out;
	}
	if (!pipar_shape_eq(d->shape, m->in) || d->classes != m->classes) {
		char a[48], b[48];

		pipar_shape_str(d->shape, a, sizeof(a));
		pipar_shape_str(m->in, b, sizeof(b));
		fprintf(stderr, PROG ": data '%s' is %s with %d classes; the model in '%s' takes %s with %d\n",
			data_spec, a, d->classes, model_path, b, m->classes);
		goto out;
	}
	if (!batch)
		batch = training_batch(&info);
	e = pipar_exec_new(m, batch, 0, err);
	conf = calloc((size_t)m->classes * (size_t)m->classes, sizeof(long));
	if (!e || !conf) {
		fprintf(stderr, PROG ": %s\n", e ? "out of memory" : err);
		goto out;
	}
	if (pipar_train_evaluate(m, e, d, &info.norm, limit, &st, conf, err) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	put_accuracy(model_path, data_spec, info.epoch, &st, conf, m->classes);
	status = 0;
out:
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, PROG ": cannot write to standard output: %s\n", strerror(errno));
		status = 1;
	}
	free(conf);
	pipar_exec_free(e);
	pipar_data_free(d);
	pipar_model_free(m);
	pipar_checkpoint_info_free(&info);
	return status;
}

/* trace: the merged traces of one run, summarised as JSON. */
static int cmd_trace(int argc, char **argv)
{
	char err[PIPAR_ERRLEN], *text = NULL;

	int stdin_used = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return help(trace_usage);
		if (argv[i][0] == '-' && argv[i][1]) {
			snprintf(err, sizeof(err), "trace: unknown option '%s'", argv[i]);
			return usage_error(trace_usage, err);
		}
		if (!strcmp(argv[i], "-") && stdin_used++)
			return usage_error(trace_usage, "trace: standard input ('-') can be read once only");
	}
	if (argc < 2)
		return usage_error(trace_usage, "trace: give the trace files of one run");
	if (pipar_trace_summarise((const char *const *)argv + 1, argc - 1, &text, err) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		return 1;
	}
	if (puts(text) < 0 || fflush(stdout) != 0 || ferror(stdout)) {
		free(text);
		fprintf(stderr, PROG ": cannot write to standard output: %s\n", strerror(errno));
		return 1;
	}
	free(text);
	return 0;
}

/* Operands that are files: '-' (standard input) at most once.  Returns
 * how many are '-', or -1 with err when more than one is. */
static int operands_stdin(char **files, int n, char *err)
{
	int k = 0;

	for (int i = 0; i < n; i++)
		k += strcmp(files[i], "-") == 0;
	if (k > 1)
		return pipar_errf(err, "standard input ('-') can be read once only");
	return k;
}

/* ------------------------------------------------------------ timeline */
/* "A:B" with 0 <= A <= B, the iterations to draw. */
static int parse_iterations(const char *s, int *from, int *to, char *err)
{
	char *end;
	long a, b = -1;

	errno = 0;
	a = strtol(s, &end, 10);
	if (!errno && s[0] >= '0' && s[0] <= '9' && *end == ':' && end[1] >= '0' &&
	    end[1] <= '9')
		b = strtol(end + 1, &end, 10);
	if (errno || *end || a < 0 || b < a || b > INT_MAX)
		return pipar_cli_bad(err, "--iterations", s, "A:B, integers with 0 <= A <= B");
	*from = (int)a;
	*to = (int)b;
	return 0;
}

/* timeline: the traces of one run drawn as SVG. */
static int cmd_timeline(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"svg", required_argument, NULL, 's'},
		{"iterations", required_argument, NULL, 'i'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *svg = NULL;
	int from = -1, to = -1, c, rc;
	char err[PIPAR_ERRLEN];

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case 's': svg = optarg; break;
		case 'i': bad = parse_iterations(optarg, &from, &to, err); break;
		case 'h': return help(timeline_usage);
		default:
			pipar_cli_getopt_error(c, argv, err);
			bad = -1;
		}
		if (bad)
			return usage_error(timeline_usage, err);
	}
	if (optind >= argc)
		return usage_error(timeline_usage, "timeline: give the trace files of one run");
	if (!svg)
		return usage_error(timeline_usage, "timeline: missing --svg");
	if (operands_stdin(argv + optind, argc - optind, err) < 0)
		return usage_error(timeline_usage, err);
	rc = pipar_timeline_svg((const char *const *)argv + optind, argc - optind, from, to, svg,
				err);
	if (rc == -2)
		fprintf(stderr, PROG ": %s: choose fewer with --iterations A:B\n", err);
	else if (rc < 0)
		fprintf(stderr, PROG ": %s\n", err);
	return rc < 0 ? 1 : 0;
}
/* -------------------------------------------------------- end timeline */

/* ------------------------------------------------------- compare, plot */
/* An accuracy in (0, 1], given as 0.85 or 85%. */
static int parse_acc(const char *s, const char *opt, double *out, char *err)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (!errno && end != s && *end == '%' && !end[1]) {
		v /= 100;
		end++;
	}
	if (errno || end == s || *end || !(v > 0 && v <= 1))
		return pipar_cli_bad(err, opt, s, "an accuracy in (0, 1] such as 0.85 or 85%");
	*out = v;
	return 0;
}

/* Reads the summaries named by the n operands; 1 with the message printed. */
static int read_summaries(char **paths, int n, struct pipar_summary **out)
{
	char err[PIPAR_ERRLEN];
	struct pipar_summary *s = calloc((size_t)n, sizeof(*s));

	*out = s;
	if (!s) {
		fprintf(stderr, PROG ": out of memory\n");
		return 1;
	}
	for (int i = 0; i < n; i++) {
		if (pipar_summary_read(paths[i], &s[i], err) < 0) {
			fprintf(stderr, PROG ": %s\n", err);
			return 1;
		}
	}
	pipar_summary_label(s, n);
	return 0;
}

static void free_summaries(struct pipar_summary *s, int n)
{
	for (int i = 0; s && i < n; i++)
		pipar_summary_free(&s[i]);
	free(s);
}

/* compare: runs side by side. */
static int cmd_compare(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'},
		{"target", required_argument, NULL, 'g'},
		{"baseline", required_argument, NULL, 'b'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct pipar_compare_opts o = {0};
	struct pipar_summary *s = NULL;
	char err[PIPAR_ERRLEN];
	int c, n, status;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case 'j': o.json = 1; break;
		case 'g': bad = parse_acc(optarg, "--target", &o.target, err); break;
		case 'b':
			if (o.nbaselines == 4)
				bad = pipar_errf(err, "compare: at most 4 --baseline options");
			else
				o.baseline[o.nbaselines++] = optarg;
			break;
		case 'h': return help(compare_usage);
		default:
			pipar_cli_getopt_error(c, argv, err);
			bad = -1;
		}
		if (bad)
			return usage_error(compare_usage, err);
	}
	n = argc - optind;
	if (n < 1)
		return usage_error(compare_usage, "compare: give one or more run summaries");
	if (operands_stdin(argv + optind, n, err) < 0)
		return usage_error(compare_usage, err);
	status = read_summaries(argv + optind, n, &s);
	if (!status && pipar_summary_compare(s, n, &o, stdout, err) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		status = 1;
	}
	free_summaries(s, n);
	return status;
}

/* plot: test accuracy against training time. */
static int cmd_plot(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"svg", required_argument, NULL, 's'},
		{"title", required_argument, NULL, 't'},
		{"target", required_argument, NULL, 'g'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *svg = NULL, *title = NULL;
	struct pipar_summary *s = NULL;
	char err[PIPAR_ERRLEN];
	double target = 0;
	int c, n, status;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case 's': svg = optarg; break;
		case 't': title = optarg; break;
		case 'g': bad = parse_acc(optarg, "--target", &target, err); break;
		case 'h': return help(plot_usage);
		default:
			pipar_cli_getopt_error(c, argv, err);
			bad = -1;
		}
		if (bad)
			return usage_error(plot_usage, err);
	}
	n = argc - optind;
	if (!svg)
		return usage_error(plot_usage, "plot: missing --svg");
	if (n < 1)
		return usage_error(plot_usage, "plot: give one or more run summaries");
	if (operands_stdin(argv + optind, n, err) < 0)
		return usage_error(plot_usage, err);
	status = read_summaries(argv + optind, n, &s);
	if (!status && pipar_summary_plot(s, n, title, target, svg, err) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		status = 1;
	}
	free_summaries(s, n);
	return status;
}
/* --------------------------------------------------- end compare, plot */

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} commands[] = {
	{"accuracy", cmd_accuracy},
	{"trace", cmd_trace},
	{"timeline", cmd_timeline},
	{"compare", cmd_compare},
	{"plot", cmd_plot},
};

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage_error(NULL, "missing sub-command");
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
		return help(NULL);
	if (strcmp(argv[1], "--version") == 0) {
		puts(PROG " " VERSION);
		return fflush(stdout) == 0 ? 0 : 1;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].fn(argc - 1, argv + 1);
	{
		char err[PIPAR_ERRLEN];

		if (argv[1][0] == '-')
			snprintf(err, sizeof(err), "unknown option '%s' (give a sub-command first)",
				 argv[1]);
		else
			snprintf(err, sizeof(err), "unknown sub-command '%s' (known: accuracy, "
				 "trace, timeline, compare, plot)", argv[1]);
		return usage_error(NULL, err);
	}
}
