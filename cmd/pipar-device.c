/*
 * pipar-device: one device of a pipelined training run.  Trains its part
 * of the model on its shard; its samples never leave the process.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "data.h"
#include "pool.h"
#include "runtime.h"

#define PROG "pipar-device"
#define VERSION "0.1.0"

static const char usage_text[] =
	"usage: pipar-device --connect HOST:PORT --data SPEC --shard I/K\n"
	"                    [--partition iid|dirichlet:ALPHA] [--seed S] [--id NAME]\n"
	"                    [--train-limit N] [--uplink RATE] [--downlink RATE]\n"
	"                    [--slowdown F] [--trace FILE] [--timeout SECS] [--threads T]\n";

static int usage(const char *fmt, const char *arg)
{
	fprintf(stderr, PROG ": ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n%s", usage_text);
	return 2;
}

static int connect_to(const char *spec, double timeout, char *err)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *a;
	int fd = -1, rc;
	double t0 = pipar_now();

	if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof(host))
		return pipar_errf(err, "bad --connect '%s': expected HOST:PORT", spec);
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc)
		return pipar_errf(err, "cannot resolve '%s': %s", spec, gai_strerror(rc));
	/* The server may still be starting: retry until the timeout. */
	for (;;) {
		for (a = res; a; a = a->ai_next) {
			fd = socket(a->ai_family, SOCK_STREAM, 0);
			if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) == 0)
				break;
			rc = errno;
			if (fd >= 0)
				close(fd);
			fd = -1;
		}
		if (fd >= 0 || pipar_now() - t0 > timeout)
			break;
		nanosleep(&(struct timespec){0, 100000000}, NULL);
	}
	freeaddrinfo(res);
	if (fd < 0)
		return pipar_errf(err, "cannot connect to '%s': %s", spec, strerror(rc));
	return fd;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"connect", required_argument, NULL, 'c'},
		{"data", required_argument, NULL, 'd'},
		{"shard", required_argument, NULL, 'k'},
		{"partition", required_argument, NULL, 'p'},
		{"seed", required_argument, NULL, 's'},
		{"id", required_argument, NULL, 'i'},
		{"train-limit", required_argument, NULL, 'n'},
		{"timeout", required_argument, NULL, 'T'},
		{"uplink", required_argument, NULL, 'u'},
		{"downlink", required_argument, NULL, 'w'},
		{"slowdown", required_argument, NULL, 'f'},
		{"threads", required_argument, NULL, 't'},
		{"trace", required_argument, NULL, 'X'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *server = NULL, *data = NULL, *shard_arg = NULL, *part = NULL;
	char idbuf[64], err[PIPAR_ERRLEN], *end;
	struct pipar_device_cfg cfg = {.timeout = 120, .log = stderr, .slowdown = 1};
	struct pipar_shard_spec shard = {0, 1, PIPAR_PARTITION_IID, 0, 1};
	struct pipar_data *d = NULL;
	struct pipar_norm norm;
	int c, threads = 1, status = 1, *idx = NULL, nidx = 0;
	long limit = 0;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': server = optarg; break;
		case 'd': data = optarg; break;
		case 'k': shard_arg = optarg; break;
		case 'p': part = optarg; break;
		case 's': shard.seed = strtoull(optarg, &end, 10); if (*end) return usage("bad --seed '%s'", optarg); break;
		case 'i': cfg.id = optarg; break;
		case 'n':
			limit = strtol(optarg, &end, 10);
			if (*end || limit < 1)
				return usage("bad --train-limit '%s'", optarg);
			break;
		case 'T':
			cfg.timeout = strtod(optarg, &end);
			if (*end || !(cfg.timeout > 0))
				return usage("bad --timeout '%s'", optarg);
			break;
		case 'u':
			if (pipar_rate_parse(optarg, &cfg.up_bps) < 0)
				return usage("bad --uplink '%s': expected a rate such as 50mbit", optarg);
			break;
		case 'w':
			if (pipar_rate_parse(optarg, &cfg.down_bps) < 0)
				return usage("bad --downlink '%s': expected a rate such as 50mbit", optarg);
			break;
		case 'f':
			cfg.slowdown = strtod(optarg, &end);
			if (*end || !(cfg.slowdown >= 1 && cfg.slowdown <= 1e6))
				return usage("bad --slowdown '%s': expected a number in [1, 1e6]", optarg);
			break;
		case 't':
			threads = (int)strtol(optarg, &end, 10);
			if (*end || threads < 1 || threads > 1024)
				return usage("bad --threads '%s'", optarg);
			break;
		case 'X': cfg.trace = optarg; break;
		case 'h': fputs(usage_text, stdout); return 0;
		case 'V': puts(PROG " " VERSION); return 0;
		default: fputs(usage_text, stderr); return 2;
		}
	}
	if (optind < argc)
		return usage("unexpected argument '%s'", argv[optind]);
	if (!server)
		return usage("%s", "missing --connect");
	if (!data)
		return usage("%s", "missing --data");
	if (!shard_arg)
		return usage("%s", "missing --shard");
	if (pipar_shard_parse(shard_arg, &shard, err) < 0 ||
	    (part && pipar_partition_parse(part, &shard, err) < 0))
		return usage("%s", err);
	if (!cfg.id) {
		snprintf(idbuf, sizeof(idbuf), "device-%d", shard.index);
		cfg.id = idbuf;
	}
	signal(SIGPIPE, SIG_IGN);
	pipar_threads_set(threads);
	if (pipar_data_open(data, &d, err) < 0 || pipar_data_shard(d, &shard, &idx, &nidx, err) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	if (limit && limit < nidx)
		nidx = (int)limit;
	if (nidx == 0) {
		fprintf(stderr, PROG ": shard %s of '%s' is empty\n", shard_arg, data);
		goto out;
	}
	pipar_data_norm(d, &norm);
	cfg.fd = connect_to(server, cfg.timeout, err);
	if (cfg.fd < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	cfg.data = d;
	cfg.norm = &norm;
	cfg.idx = idx;
	cfg.nidx = nidx;
	if (pipar_device(&cfg, err) < 0) {
		fprintf(stderr, PROG ": %s: %s\n", cfg.id, err);
		close(cfg.fd);
		goto out;
	}
	close(cfg.fd);
	status = 0;
out:
	free(idx);
	pipar_data_free(d);
	return status;
}
