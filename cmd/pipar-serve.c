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
#include "runtime.h"

#define PROG "pipar-serve"
#define VERSION "0.1.0"

static const char usage_text[] =
	"usage: pipar-serve --plan FILE|- --listen ADDR:PORT --epochs E [--data SPEC]\n"
	"                   [--lr LR] [--momentum M] [--weight-decay WD] [--seed S]\n"
	"                   [--checkpoint FILE] [--summary FILE] [--timeout SECS]\n"
	"                   [--trace FILE] [--aggregate-every ITERS|epoch] [--threads T]\n";

static int usage(const char *fmt, const char *arg)
{
	fprintf(stderr, PROG ": ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n%s", usage_text);
	return 2;
}


/* Listens on "ADDR:PORT" (IPv4 or a name); port 0 picks one, which is
 * reported on stderr. */
static int listen_on(const char *spec, char *err)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE}, *res;
	int fd, one = 1, rc;

	if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof(host))
		return pipar_errf(err, "bad --listen '%s': expected ADDR:PORT", spec);
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc)
		return pipar_errf(err, "cannot resolve '%s': %s", spec, gai_strerror(rc));
	fd = socket(res->ai_family, SOCK_STREAM, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 64) < 0) {
		pipar_errf(err, "cannot listen on '%s': %s", spec, strerror(errno));
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
		{"timeout", required_argument, NULL, 'T'},
		{"threads", required_argument, NULL, 't'},
		{"trace", required_argument, NULL, 'X'},
		{"aggregate-every", required_argument, NULL, 'A'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct pipar_serve_cfg cfg = {.epochs = 1, .sgd = {0.01f, 0.9f, 0}, .seed = 1,
				      .timeout = 120, .summary = stdout, .log = stderr};
	const char *plan_path = NULL, *listen_spec = "127.0.0.1:7070", *data = NULL;
	const char *summary_path = NULL;
	char err[PIPAR_ERRLEN], *text = NULL, *end;
	struct pipar_plan_file *pl = NULL;
	struct pipar_data *test = NULL;
	int c, threads = 1, status = 1;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'p': plan_path = optarg; break;
		case 'l': listen_spec = optarg; break;
		case 'e':
			cfg.epochs = (int)strtol(optarg, &end, 10);
			if (*end || cfg.epochs < 1 || cfg.epochs > 100000)
				return usage("bad --epochs '%s'", optarg);
			break;
		case 'd': data = optarg; break;
		case 'r':
			cfg.sgd.lr = strtof(optarg, &end);
			if (*end || !(cfg.sgd.lr >= 0))
				return usage("bad --lr '%s'", optarg);
			break;
		case 'M':
			cfg.sgd.momentum = strtof(optarg, &end);
			if (*end || !(cfg.sgd.momentum >= 0 && cfg.sgd.momentum <= 1))
				return usage("bad --momentum '%s'", optarg);
			break;
		case 'w':
			cfg.sgd.weight_decay = strtof(optarg, &end);
			if (*end || !(cfg.sgd.weight_decay >= 0))
				return usage("bad --weight-decay '%s'", optarg);
			break;
		case 's': cfg.seed = strtoull(optarg, &end, 10); if (*end) return usage("bad --seed '%s'", optarg); break;
		case 'c': cfg.checkpoint = optarg; break;
		case 'S': summary_path = optarg; break;
		case 'T':
			cfg.timeout = strtod(optarg, &end);
			if (*end || !(cfg.timeout > 0))
				return usage("bad --timeout '%s'", optarg);
			break;
		case 't':
			threads = (int)strtol(optarg, &end, 10);
			if (*end || threads < 1 || threads > 1024)
				return usage("bad --threads '%s'", optarg);
			break;
		case 'X': cfg.trace = optarg; break;
		case 'A':
			if (strcmp(optarg, "epoch") == 0) {
				cfg.aggregate_every = 0;
				break;
			}
			cfg.aggregate_every = (int)strtol(optarg, &end, 10);
			if (end == optarg || *end || cfg.aggregate_every < 1 || cfg.aggregate_every > 1000000)
				return usage("bad --aggregate-every '%s': expected a number of iterations or 'epoch'", optarg);
			break;
		case 'h': fputs(usage_text, stdout); return 0;
		case 'V': puts(PROG " " VERSION); return 0;
		default: fputs(usage_text, stderr); return 2;
		}
	}
	if (optind < argc)
		return usage("unexpected argument '%s'", argv[optind]);
	if (!plan_path)
		return usage("%s", "missing --plan");
	signal(SIGPIPE, SIG_IGN);
	pipar_threads_set(threads);
	text = pipar_read_file(plan_path, 64u << 20, NULL, err);
	if (!text || pipar_plan_parse(text, strcmp(plan_path, "-") ? plan_path : "<stdin>", &pl, err) < 0 ||
	    (data && pipar_data_open(data, &test, err) < 0)) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	if (summary_path && !(cfg.summary = fopen(summary_path, "w"))) {
		fprintf(stderr, PROG ": cannot open '%s': %s\n", summary_path, strerror(errno));
		goto out;
	}
	cfg.listen_fd = listen_on(listen_spec, err);
	if (cfg.listen_fd < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	cfg.plan = pl;
	cfg.plan_text = text;
	cfg.test = test;
	if (pipar_serve(&cfg, err) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	status = 0;
out:
	if (cfg.summary && cfg.summary != stdout && fclose(cfg.summary) != 0)
		status = 1;
	free(text);
	pipar_plan_file_free(pl);
	pipar_data_free(test);
	return status;
}
