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
#include "server.h"

#define PROG "pipar-serve"
#define VERSION "0.1.0"

static const char usage_text[] =
	"usage: pipar-serve --plan FILE|- [--listen ADDR:PORT] [--epochs E] [--data SPEC]\n"
	"                   [--lr LR] [--momentum M] [--weight-decay WD] [--seed S]\n"
	"                   [--checkpoint FILE|-] [--summary FILE|-] [--records FILE|-]\n"
	"                   [--trace FILE|-] [--timeout SECS] [--aggregate-every ITERS|epoch]\n"
	"                   [--threads T] [--progress auto|always|never]\n";

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

int main(int argc, char **argv)
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
		{"progress", required_argument, NULL, 'P'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct pipar_serve_cfg cfg = {.prog = PROG, .epochs = 1, .sgd = {0.01f, 0.9f, 0}, .seed = 1,
				      .timeout = 120, .log = stderr};
	const char *plan_path = NULL, *listen_spec = "127.0.0.1:7070", *data = NULL;
	const char *records_path = NULL;
	char err[PIPAR_ERRLEN], host[256], *text = NULL;
	struct pipar_plan_file *pl = NULL;
	struct pipar_data *test = NULL;
	struct pipar_meter meter;
	int c, threads = 1, status = 1, port, when = PIPAR_PROGRESS_AUTO;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case 'p': plan_path = optarg; break;
		case 'l': listen_spec = optarg; break;
		case 'e': bad = pipar_cli_int("--epochs", optarg, 1, 100000, &cfg.epochs, err); break;
		case 'd': data = optarg; break;
		case 'r': bad = pipar_cli_float("--lr", optarg, 0, 1e6, &cfg.sgd.lr, err); break;
		case 'M': bad = pipar_cli_float("--momentum", optarg, 0, 1, &cfg.sgd.momentum, err); break;
		case 'w':
			bad = pipar_cli_float("--weight-decay", optarg, 0, 1e6, &cfg.sgd.weight_decay, err);
			break;
		case 's': bad = pipar_cli_u64("--seed", optarg, &cfg.seed, err); break;
		case 'c': cfg.checkpoint = optarg; break;
		case 'S': cfg.summary = optarg; break;
		case 'R': records_path = optarg; break;
		case 'T': bad = pipar_cli_positive("--timeout", optarg, 1e6, &cfg.timeout, err); break;
		case 't': bad = pipar_cli_int("--threads", optarg, 1, 1024, &threads, err); break;
		case 'X': cfg.trace = optarg; break;
		case 'A':
			if (strcmp(optarg, "epoch") == 0)
				cfg.aggregate_every = 0;
			else if (pipar_cli_int("--aggregate-every", optarg, 1, 1000000,
					       &cfg.aggregate_every, err) < 0)
				bad = pipar_cli_bad(err, "--aggregate-every", optarg,
						    "a number of iterations in [1, 1000000] or 'epoch'");
			break;
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
	if (!plan_path)
		return usage_error("missing --plan");
	if (pipar_cli_hostport("--listen", listen_spec, 1, host, sizeof(host), &port, err) < 0)
		return usage_error(err);
	/* Standard output carries the epoch records and then the summary,
	 * unless an output named '-' takes it. */
	{
		int sum_out = cfg.summary && !strcmp(cfg.summary, "-");
		int rec_out = records_path && !strcmp(records_path, "-");
		const char *opts[] = {"--checkpoint", "--trace", sum_out ? "--summary" : "--records"};
		const char *vals[] = {cfg.checkpoint, cfg.trace, sum_out || rec_out ? "-" : NULL};

		if (pipar_cli_one_stdout(opts, vals, 3, err) < 0)
			return usage_error(err);
		if (!(vals[0] && !strcmp(vals[0], "-")) && !(vals[1] && !strcmp(vals[1], "-"))) {
			if (!cfg.summary)
				cfg.summary = "-";
			if (!records_path)
				records_path = "-";
		}
	}
	signal(SIGPIPE, SIG_IGN);
	pipar_threads_set(threads);
	/* Every output is checked before any training: a typo must not
	 * cost a run. */
	{
		const char *outs[] = {cfg.checkpoint, cfg.trace, cfg.summary, records_path};

		for (int i = 0; i < 4; i++)
			if (outs[i] && pipar_out_check(outs[i], err) < 0) {
				fprintf(stderr, PROG ": %s\n", err);
				return 1;
			}
	}
	text = pipar_read_file(plan_path, 64u << 20, NULL, err);
	if (!text || pipar_plan_parse(text, strcmp(plan_path, "-") ? plan_path : "<stdin>", &pl, err) < 0 ||
	    (data && pipar_data_open(data, &test, err) < 0)) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	free(text);     /* parsed once: the struct is what runs and is sent */
	text = NULL;
	if (records_path && strcmp(records_path, "-") == 0) {
		cfg.records = stdout;
	} else if (records_path && !(cfg.records = fopen(records_path, "w"))) {
		fprintf(stderr, PROG ": cannot write '%s': %s\n", records_path, strerror(errno));
		goto out;
	}
	cfg.listen_fd = listen_on(host, port, err);
	if (cfg.listen_fd < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	pipar_meter_init(&meter, stderr, PROG, (enum pipar_progress_when)when);
	cfg.meter = &meter;
	cfg.plan = pl;
	cfg.test = test;
	if (pipar_server_run(&cfg, err) < 0) {
		pipar_meter_end(&meter);
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	pipar_meter_end(&meter);
	status = 0;
out:
	if (cfg.records && cfg.records != stdout && fclose(cfg.records) != 0) {
		fprintf(stderr, PROG ": cannot write '%s': %s\n", records_path, strerror(errno));
		status = 1;
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, PROG ": cannot write to standard output: %s\n", strerror(errno));
		status = 1;
	}
	free(text);
	pipar_plan_file_free(pl);
	pipar_data_free(test);
	return status;
}
