/*
 * pipar-serve: the server of a pipelined training run.  Waits for the
 * devices a plan names, runs the server part of the model for each,
 * aggregates, evaluates, and writes the global model and a run summary.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "data.h"
#include "plan.h"
#include "pool.h"
#include "cli.h"
#include "progress.h"
#include "json.h"
#include "server.h"
#include "file.h"
#include "runtime.h"

#define PROG "pipar-serve"
#define VERSION "0.1.0"

static const char usage_text[] =
	"usage: pipar-serve --plan FILE|- [--listen ADDR:PORT] [--epochs E] [--data SPEC]\n"
	"                   [--lr LR] [--momentum M] [--weight-decay WD] [--seed S]\n"
	"                   [--checkpoint FILE|-] [--summary FILE|-] [--records FILE|-]\n"
	"                   [--trace FILE|-] [--timeout SECS] [--aggregate-every ITERS|epoch]\n"
	"                   [--aggregate RULE] [--checkpoint-every E]\n"
	"                   [--threads T] [--progress auto|always|never] [--key-file FILE]\n"
	"                   [--cert FILE] [--cert-key FILE] [--ca FILE] [--hello-timeout SECS]\n"
	"                   [--insecure] [--resume FILE]\n"
	"       pipar-serve --resume FILE [option ...]\n";

static int usage_error(const char *msg)
{
	fprintf(stderr, PROG ": %s\n%s", msg, usage_text);
	return 2;
}

/* Listens on host:port (IPv4 or a name); port 0 picks one, which is
 * reported on stderr. */
static int listen_on(const char *host, int port, char *err)
{
	char ports[8];
	struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE}, *res;
	int fd, one = 1, rc;

	snprintf(ports, sizeof(ports), "%d", port);
	rc = getaddrinfo(host, ports, &hints, &res);
	if (rc)
		return pipar_errf(err, "cannot resolve '%s': %s", host, gai_strerror(rc));
	fd = socket(res->ai_family, SOCK_STREAM, 0);
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 64) < 0) {
		pipar_errf(err, "cannot listen on '%s:%d': %s", host, port, strerror(errno));
		freeaddrinfo(res);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	freeaddrinfo(res);
	{
		struct sockaddr_in a;
		socklen_t al = sizeof(a);

		if (getsockname(fd, (struct sockaddr *)&a, &al) == 0 && a.sin_family == AF_INET)
			fprintf(stderr, PROG ": listening on %s:%d\n", inet_ntoa(a.sin_addr),
				ntohs(a.sin_port));
	}
	return fd;
}

/* The options, and what main makes of them. */
struct args {
	struct pipar_serve_cfg cfg;
	struct pipar_tls_cfg tcfg;
	int insecure;
	const char *plan_path, *listen_spec, *data, *records_path, *resume_path;
	char host[256];
	int port, threads, when;
	unsigned given;                 /* the settings given (1u << GIVEN_*) */
};

/* The settings a resumed run takes from its checkpoint unless given. */
enum { GIVEN_EPOCHS, GIVEN_LR, GIVEN_MOMENTUM, GIVEN_WD, GIVEN_SEED, GIVEN_AGG_EVERY, GIVEN_RULE,
       GIVEN_CKPT_EVERY };

/* The options into a.  Returns -1 to go on, or the exit status (help, a
 * usage error). */
static int parse_args(struct args *a, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"plan", required_argument, NULL, 'p'},
		{"listen", required_argument, NULL, 'l'},
		{"epochs", required_argument, NULL, 'e'},
		{"data", required_argument, NULL, 'd'},
		{"lr", required_argument, NULL, 'r'},
		{"momentum", required_argument, NULL, 'M'},
		{"weight-decay", required_argument, NULL, 'w'},
		{"seed", required_argument, NULL, 's'},
		{"checkpoint", required_argument, NULL, 'c'},
		{"summary", required_argument, NULL, 'S'},
		{"records", required_argument, NULL, 'R'},
		{"timeout", required_argument, NULL, 'T'},
		{"threads", required_argument, NULL, 't'},
		{"trace", required_argument, NULL, 'X'},
		{"aggregate-every", required_argument, NULL, 'A'},
		{"aggregate", required_argument, NULL, 'G'},
		{"checkpoint-every", required_argument, NULL, 'E'},
		{"progress", required_argument, NULL, 'P'},
		{"key-file", required_argument, NULL, 'K'},
		{"cert", required_argument, NULL, 'C'},
		{"cert-key", required_argument, NULL, 'Y'},
		{"ca", required_argument, NULL, 'a'},
		{"hello-timeout", required_argument, NULL, 'H'},
		{"insecure", no_argument, NULL, 'I'},
		{"resume", required_argument, NULL, 'u'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct pipar_serve_cfg *cfg = &a->cfg;
	char err[PIPAR_ERRLEN];
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case 'p': a->plan_path = optarg; break;
		case 'l': a->listen_spec = optarg; break;
		case 'e': bad = pipar_cli_int("--epochs", optarg, 1, 100000, &cfg->epochs, err); break;
		case 'd': a->data = optarg; break;
		case 'r': bad = pipar_cli_float("--lr", optarg, 0, 1e6, &cfg->sgd.lr, err); break;
		case 'M': bad = pipar_cli_float("--momentum", optarg, 0, 1, &cfg->sgd.momentum, err); break;
		case 'w':
			bad = pipar_cli_float("--weight-decay", optarg, 0, 1e6, &cfg->sgd.weight_decay, err);
			break;
		case 's': bad = pipar_cli_u64("--seed", optarg, &cfg->seed, err); break;
		case 'c': cfg->checkpoint = optarg; break;
		case 'S': cfg->summary = optarg; break;
		case 'R': a->records_path = optarg; break;
		case 'T': bad = pipar_cli_positive("--timeout", optarg, 1e6, &cfg->timeout, err); break;
		case 't': bad = pipar_cli_int("--threads", optarg, 1, 1024, &a->threads, err); break;
		case 'X': cfg->trace = optarg; break;
		case 'A':
			if (strcmp(optarg, "epoch") == 0)
				cfg->aggregate_every = 0;
			else if (pipar_cli_int("--aggregate-every", optarg, 1, 1000000,
					       &cfg->aggregate_every, err) < 0)
				bad = pipar_cli_bad(err, "--aggregate-every", optarg,
						    "a number of iterations in [1, 1000000] or 'epoch'");
			break;
		case 'G':
			if (pipar_agg_rule_parse(optarg, &cfg->rule, err) < 0) {
				char why[PIPAR_ERRLEN + 16];

				snprintf(why, sizeof(why), "--aggregate: %s", err);
				return usage_error(why);
			}
			break;
		case 'P':
			bad = pipar_cli_choice("--progress", optarg, pipar_progress_names, &a->when, err);
			break;
		case 'E':
			bad = pipar_cli_int("--checkpoint-every", optarg, 1, 100000, &cfg->checkpoint_every,
					    err);
			break;
		case 'K': a->tcfg.key_file = optarg; break;
		case 'C': a->tcfg.cert = optarg; break;
		case 'Y': a->tcfg.cert_key = optarg; break;
		case 'a': a->tcfg.ca = optarg; break;
		case 'H':
			bad = pipar_cli_positive("--hello-timeout", optarg, 1e6, &cfg->hello_timeout, err);
			break;
		case 'I': a->insecure = 1; break;
		case 'u': a->resume_path = optarg; break;
		default: return pipar_cli_common(c, argv, PROG, VERSION, usage_text);
		}
		switch (c) {
		case 'e': a->given |= 1u << GIVEN_EPOCHS; break;
		case 'r': a->given |= 1u << GIVEN_LR; break;
		case 'M': a->given |= 1u << GIVEN_MOMENTUM; break;
		case 'w': a->given |= 1u << GIVEN_WD; break;
		case 's': a->given |= 1u << GIVEN_SEED; break;
		case 'A': a->given |= 1u << GIVEN_AGG_EVERY; break;
		case 'G': a->given |= 1u << GIVEN_RULE; break;
		case 'E': a->given |= 1u << GIVEN_CKPT_EVERY; break;
		}
		if (bad)
			return usage_error(err);
	}
	if ((c = pipar_cli_operands(argc, argv, PROG, usage_text)) >= 0)
		return c;
	if (!a->plan_path && !a->resume_path)
		return usage_error("missing --plan (or --resume FILE)");
	if (pipar_cli_hostport("--listen", a->listen_spec, 1, a->host, sizeof(a->host), &a->port,
			       err) < 0)
		return usage_error(err);
	if (cfg->checkpoint_every && (!cfg->checkpoint || !strcmp(cfg->checkpoint, "-")))
		return usage_error("--checkpoint-every needs --checkpoint FILE (a file, not '-')");
	/* The HELLO's deadline: at most --timeout, 10 s unless given. */
	if (!cfg->hello_timeout)
		cfg->hello_timeout = cfg->timeout < 10 ? cfg->timeout : 10;
	if ((c = pipar_cli_transport(1, &a->tcfg, a->host, a->insecure, &cfg->tls, err)) == 2)
		return usage_error(err);
	if (c) {
		fprintf(stderr, PROG ": %s\n", err);
		return 1;
	}
	return -1;
}

/* Standard output carries the epoch records and then the summary, unless
 * an output named '-' takes it; every output is checked before any
 * training, so that a typo does not cost a run.  -1 when all is well, or
 * the exit status. */
static int outputs(struct args *a)
{
	struct pipar_serve_cfg *cfg = &a->cfg;
	int sum_out = cfg->summary && !strcmp(cfg->summary, "-");
	int rec_out = a->records_path && !strcmp(a->records_path, "-");
	const char *opts[] = {"--checkpoint", "--trace", sum_out ? "--summary" : "--records"};
	const char *vals[] = {cfg->checkpoint, cfg->trace, sum_out || rec_out ? "-" : NULL};
	char err[PIPAR_ERRLEN];

	if (pipar_cli_one_stdout(opts, vals, 3, err) < 0)
		return usage_error(err);
	if (!(vals[0] && !strcmp(vals[0], "-")) && !(vals[1] && !strcmp(vals[1], "-"))) {
		if (!cfg->summary)
			cfg->summary = "-";
		if (!a->records_path)
			a->records_path = "-";
	}
	const char *outs[] = {cfg->checkpoint, cfg->trace, cfg->summary, a->records_path};

	for (int i = 0; i < 4; i++)
		if (outs[i] && pipar_out_check(outs[i], err) < 0) {
			fprintf(stderr, PROG ": %s\n", err);
			return 1;
		}
	return -1;
}

/* A resumed run's settings: those of the run in r, each one given on
 * the command line checked against it (--epochs may go further, and
 * --checkpoint-every change).  -1 with err naming what differs. */
static int resume_settings(struct args *a, const struct pipar_resume *r,
			   const struct pipar_plan_file *pl, char *err)
{
	struct pipar_serve_cfg *cfg = &a->cfg;
	const char *path = a->resume_path;
	char r1[48], r2[48];

	if (pl) {
		cJSON *x = pipar_plan_file_json(pl), *y = pipar_plan_file_json(r->plan);
		int same = x && y && cJSON_Compare(x, y, 1);

		cJSON_Delete(x);
		cJSON_Delete(y);
		if (!same)
			return pipar_errf(err, "--plan '%s' is not the plan of the run in '%s'", a->plan_path,
					  path);
	}
#define SAME(bit, opt, cond, fmt, mine, theirs)                                                   \
	if ((a->given & (1u << (bit))) && !(cond))                                                 \
		return pipar_errf(err, opt " " fmt " differs from the run's " fmt " in '%s'", mine,     \
				  theirs, path)
	SAME(GIVEN_LR, "--lr", cfg->sgd.lr == r->sgd.lr, "%g", cfg->sgd.lr, r->sgd.lr);
	SAME(GIVEN_MOMENTUM, "--momentum", cfg->sgd.momentum == r->sgd.momentum, "%g",
	     cfg->sgd.momentum, r->sgd.momentum);
	SAME(GIVEN_WD, "--weight-decay", cfg->sgd.weight_decay == r->sgd.weight_decay, "%g",
	     cfg->sgd.weight_decay, r->sgd.weight_decay);
	SAME(GIVEN_SEED, "--seed", cfg->seed == r->seed, "%llu", (unsigned long long)cfg->seed,
	     (unsigned long long)r->seed);
	SAME(GIVEN_AGG_EVERY, "--aggregate-every", cfg->aggregate_every == r->aggregate_every, "%d",
	     cfg->aggregate_every, r->aggregate_every);
	SAME(GIVEN_RULE, "--aggregate",
	     cfg->rule.kind == r->rule.kind && cfg->rule.param == r->rule.param, "%s",
	     pipar_agg_rule_name(&cfg->rule, r1, sizeof(r1)), pipar_agg_rule_name(&r->rule, r2, sizeof(r2)));
#undef SAME
	cfg->sgd = r->sgd;
	cfg->seed = r->seed;
	cfg->aggregate_every = r->aggregate_every;
	cfg->rule = r->rule;
	if (!(a->given & (1u << GIVEN_CKPT_EVERY)))
		cfg->checkpoint_every = cfg->checkpoint && strcmp(cfg->checkpoint, "-") ? r->checkpoint_every : 0;
	if (!(a->given & (1u << GIVEN_EPOCHS)))
		cfg->epochs = r->epochs;
	if (cfg->epochs <= r->epoch)
		return pipar_errf(err, "the run in '%s' has done %d epoch(s); %s", path, r->epoch,
				  a->given & (1u << GIVEN_EPOCHS) ? "--epochs must be more to train on"
								  : "give --epochs more than that to train on");
	return 0;
}

int main(int argc, char **argv)
{
	struct args a = {
		.cfg = {.prog = PROG, .epochs = 1, .sgd = {0.01f, 0.9f, 0}, .seed = 1, .timeout = 120,
			.log = stderr},
		.listen_spec = "127.0.0.1:7070", .threads = 1, .when = PIPAR_PROGRESS_AUTO,
	};
	struct pipar_serve_cfg *cfg = &a.cfg;
	char err[PIPAR_ERRLEN], *text = NULL;
	struct pipar_plan_file *pl = NULL;
	struct pipar_data *test = NULL;
	struct pipar_resume *res = NULL;
	struct pipar_meter meter;
	int status;

	if ((status = parse_args(&a, argc, argv)) >= 0)
		return status;
	if ((status = outputs(&a)) >= 0) {
		pipar_tls_free(cfg->tls);
		return status;
	}
	status = 1;
	signal(SIGPIPE, SIG_IGN);
	pipar_runtime_signals(PROG);
	pipar_threads_set(a.threads);
	if (a.plan_path && (!(text = pipar_read_file(a.plan_path, 64u << 20, NULL, err)) ||
			    pipar_plan_parse(text, pipar_json_name(a.plan_path), &pl, err) < 0)) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	if ((a.resume_path && (pipar_resume_load(a.resume_path, &res, err) < 0 ||
			       resume_settings(&a, res, pl, err) < 0)) ||
	    (a.data && pipar_data_open(a.data, &test, err) < 0)) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	free(text);     /* parsed once: the struct is what runs and is sent */
	text = NULL;
	if (a.records_path && strcmp(a.records_path, "-") == 0) {
		cfg->records = stdout;
	} else if (a.records_path && !(cfg->records = fopen(a.records_path, "w"))) {
		fprintf(stderr, PROG ": cannot write '%s': %s\n", a.records_path, strerror(errno));
		goto out;
	}
	if ((cfg->listen_fd = listen_on(a.host, a.port, err)) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	pipar_meter_init(&meter, stderr, PROG, (enum pipar_progress_when)a.when);
	cfg->meter = &meter;
	cfg->signals = 1;
	cfg->plan = res ? res->plan : pl;
	cfg->resume = res;
	cfg->test = test;
	status = pipar_server_run(cfg, err) < 0;
	pipar_meter_end(&meter);
	if (status)
		fprintf(stderr, PROG ": %s\n", err);
out:
	if (cfg->records && cfg->records != stdout && fclose(cfg->records) != 0) {
		fprintf(stderr, PROG ": cannot write '%s': %s\n", a.records_path, strerror(errno));
		status = 1;
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, PROG ": cannot write to standard output: %s\n", strerror(errno));
		status = 1;
	}
	free(text);
	pipar_plan_file_free(pl);
	pipar_resume_free(res);
	pipar_data_free(test);
	pipar_tls_free(cfg->tls);
	return status;
}
