/*
 * pipar-device: one device of a pipelined training run.  Trains its part
 * of the model on its shard; its samples never leave the process.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <getopt.h>
#include <limits.h>
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
#include "cli.h"
#include "progress.h"
#include "device.h"
#include "file.h"
#include "runtime.h"
#include "proto.h"

#define PROG "pipar-device"
#define VERSION "0.1.0"

static const char usage_text[] =
	"usage: pipar-device --connect HOST:PORT --data SPEC --shard I/K\n"
	"                    [--partition iid|dirichlet:ALPHA] [--seed S] [--id NAME]\n"
	"                    [--train-limit N] [--uplink RATE] [--downlink RATE]\n"
	"                    [--slowdown F] [--trace FILE|-] [--timeout SECS] [--threads T]\n"
	"                    [--progress auto|always|never] [--key-file FILE]\n"
	"                    [--cert FILE] [--cert-key FILE] [--ca FILE] [--server-name NAME]\n"
	"                    [--insecure] [--device-index I] [--reconnect] [--latency MS]\n";

static int usage_error(const char *msg)
{
	fprintf(stderr, PROG ": %s\n%s", msg, usage_text);
	return 2;
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
		{"progress", required_argument, NULL, 'P'},
		{"key-file", required_argument, NULL, 'K'},
		{"cert", required_argument, NULL, 'C'},
		{"cert-key", required_argument, NULL, 'Y'},
		{"ca", required_argument, NULL, 'A'},
		{"server-name", required_argument, NULL, 'N'},
		{"insecure", no_argument, NULL, 'I'},
		{"device-index", required_argument, NULL, 'D'},
		{"reconnect", no_argument, NULL, 'J'},
		{"latency", required_argument, NULL, 'L'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *server = NULL, *data = NULL, *shard_arg = NULL, *part = NULL;
	char idbuf[64], err[PIPAR_ERRLEN], host[256], why[96];
	struct pipar_device_cfg cfg = {.prog = PROG, .timeout = 120, .log = stderr, .slowdown = 1,
				       .index = -1};
	struct pipar_shard_spec shard = {0, 1, PIPAR_PARTITION_IID, 0, 1};
	struct pipar_data *d = NULL;
	struct pipar_norm norm;
	struct pipar_meter meter;
	struct pipar_tls_cfg tcfg = {0};
	int c, threads = 1, status = 1, *idx = NULL, nidx = 0, port, when = PIPAR_PROGRESS_AUTO;
	int insecure = 0;
	long limit = 0;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case 'c': server = optarg; break;
		case 'd': data = optarg; break;
		case 'k': shard_arg = optarg; break;
		case 'p': part = optarg; break;
		case 's': bad = pipar_cli_u64("--seed", optarg, &shard.seed, err); break;
		case 'i': cfg.id = optarg; break;
		case 'n': bad = pipar_cli_long("--train-limit", optarg, 1, INT_MAX, &limit, err); break;
		case 'T': bad = pipar_cli_positive("--timeout", optarg, 1e6, &cfg.timeout, err); break;
		case 'u': bad = pipar_cli_rate("--uplink", optarg, &cfg.up_bps, err); break;
		case 'w': bad = pipar_cli_rate("--downlink", optarg, &cfg.down_bps, err); break;
		case 'f': bad = pipar_cli_double("--slowdown", optarg, 1, 1e6, &cfg.slowdown, err); break;
		case 't': bad = pipar_cli_int("--threads", optarg, 1, 1024, &threads, err); break;
		case 'X': cfg.trace = optarg; break;
		case 'P':
			bad = pipar_cli_choice("--progress", optarg, pipar_progress_names, &when, err);
			break;
		case 'K': tcfg.key_file = optarg; break;
		case 'C': tcfg.cert = optarg; break;
		case 'Y': tcfg.cert_key = optarg; break;
		case 'A': tcfg.ca = optarg; break;
		case 'N': cfg.server_name = optarg; break;
		case 'I': insecure = 1; break;
		case 'D': bad = pipar_cli_int("--device-index", optarg, 0, 65535, &cfg.index, err); break;
		case 'J': cfg.reconnect = 1; break;
		case 'L':
			bad = pipar_cli_double("--latency", optarg, 0, 60000, &cfg.latency, err);
			cfg.latency /= 1000;    /* milliseconds given */
			break;
		default: return pipar_cli_common(c, argv, PROG, VERSION, usage_text);
		}
		if (bad)
			return usage_error(err);
	}
	if ((c = pipar_cli_operands(argc, argv, PROG, usage_text)) >= 0)
		return c;
	if (!server)
		return usage_error("missing --connect");
	if (!data)
		return usage_error("missing --data");
	if (!shard_arg)
		return usage_error("missing --shard");
	if (pipar_cli_hostport("--connect", server, 0, host, sizeof(host), &port, err) < 0 ||
	    pipar_shard_parse(shard_arg, &shard, err) < 0 ||
	    (part && pipar_partition_parse(part, &shard, err) < 0))
		return usage_error(err);
	if (cfg.index < 0)
		cfg.index = shard.index;        /* the shard names the device */
	if (!cfg.id) {
		snprintf(idbuf, sizeof(idbuf), "device-%d", shard.index);
		cfg.id = idbuf;
	} else if (pipar_hello_id_check(cfg.id, why, sizeof(why)) < 0) {
		char shown[PIPAR_ERRLEN];

		snprintf(err, sizeof(err), "--id '%.100s': %s", cfg.id, why);
		return usage_error(pipar_text_escape(shown, sizeof(shown), err, sizeof(err)));
	}
	if ((c = pipar_cli_transport(0, &tcfg, host, insecure, &cfg.tls, err)) == 2)
		return usage_error(err);
	if (c) {
		fprintf(stderr, PROG ": %s\n", err);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	pipar_runtime_signals(PROG);
	pipar_threads_set(threads);
	if (cfg.trace && pipar_out_check(cfg.trace, err) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
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
	cfg.signals = 1;
	cfg.host = host;
	cfg.port = port;
	pipar_meter_init(&meter, stderr, PROG, (enum pipar_progress_when)when);
	cfg.meter = &meter;
	cfg.data = d;
	cfg.norm = &norm;
	cfg.idx = idx;
	cfg.nidx = nidx;
	status = pipar_device_run(&cfg, err) < 0;
	pipar_meter_end(&meter);
	if (status)
		fprintf(stderr, PROG ": %s: %s\n", cfg.id, err);
out:
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, PROG ": cannot write to standard output: %s\n", strerror(errno));
		status = 1;
	}
	free(idx);
	pipar_data_free(d);
	pipar_tls_free(cfg.tls);
	return status;
}
