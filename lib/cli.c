#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "chan.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>


int pipar_cli_bad(char *err, const char *opt, const char *s, const char *what)
{
	return pipar_errf(err, "bad value '%s' for %s: expected %s", s, opt, what);
}

int pipar_cli_long(const char *opt, const char *s, long lo, long hi, long *out, char *err)
{
	char what[96], *end;
	long v = 0;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi) {
		snprintf(what, sizeof(what), "an integer in [%ld, %ld]", lo, hi);
		return pipar_cli_bad(err, opt, s, what);
	}
	*out = v;
	return 0;
}

int pipar_cli_int(const char *opt, const char *s, long lo, long hi, int *out, char *err)
{
	long v = 0;

	PIPAR_ASSERT(lo >= -2147483647L - 1 && hi <= 2147483647L);
	if (pipar_cli_long(opt, s, lo, hi, &v, err) < 0)
		return -1;
	*out = (int)v;
	return 0;
}

int pipar_cli_u64(const char *opt, const char *s, uint64_t *out, char *err)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] < '0' || s[0] > '9')
		return pipar_cli_bad(err, opt, s, "an integer in [0, 18446744073709551615]");
	*out = (uint64_t)v;
	return 0;
}

int pipar_cli_double(const char *opt, const char *s, double lo, double hi, double *out,
		     char *err)
{
	char what[96], *end;
	double v = 0;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || !(v >= lo && v <= hi)) {
		snprintf(what, sizeof(what), "a number in [%.15g, %.15g]", lo, hi);
		return pipar_cli_bad(err, opt, s, what);
	}
	*out = v;
	return 0;
}

int pipar_cli_float(const char *opt, const char *s, double lo, double hi, float *out,
		    char *err)
{
	double v = 0;

	PIPAR_ASSERT(lo >= -3.4e38 && hi <= 3.4e38);
	if (pipar_cli_double(opt, s, lo, hi, &v, err) < 0)
		return -1;
	*out = (float)v;
	return 0;
}

int pipar_cli_positive(const char *opt, const char *s, double hi, double *out, char *err)
{
	char what[96], *end;
	double v = 0;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || !(v > 0 && v <= hi)) {
		snprintf(what, sizeof(what), "a number greater than 0, at most %.15g", hi);
		return pipar_cli_bad(err, opt, s, what);
	}
	*out = v;
	return 0;
}

int pipar_cli_rate_parse(const char *s, double *bps)
{
	static const struct {
		const char *unit;
		double bits;
	} units[] = {
		{"kbit", 1e3}, {"mbit", 1e6}, {"gbit", 1e9},
		{"kb/s", 8e3}, {"mb/s", 8e6}, {"gb/s", 8e9},
	};
	char *end;
	double v;

	v = strtod(s, &end);
	if (end == s || !(v > 0) || !isfinite(v))
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcasecmp(end, units[i].unit) == 0) {
			*bps = v * units[i].bits;
			return 0;
		}
	return -1;
}

int pipar_cli_rate(const char *opt, const char *s, double *bps, char *err)
{
	if (pipar_cli_rate_parse(s, bps) < 0)
		return pipar_cli_bad(err, opt, s, "a rate such as 10mbit, 1gbit, 500kbit or 2MB/s");
	return 0;
}

int pipar_cli_choice(const char *opt, const char *s, const char *const *names, int *out,
		     char *err)
{
	char what[PIPAR_ERRLEN];
	size_t len = 0;
	int n = 0;

	for (; names[n]; n++)
		if (strcmp(s, names[n]) == 0) {
			*out = n;
			return 0;
		}
	len += (size_t)snprintf(what, sizeof(what), n > 1 ? "one of " : "");
	for (int i = 0; i < n && len < sizeof(what); i++)
		len += (size_t)snprintf(what + len, sizeof(what) - len, "%s%s", names[i],
					i + 2 < n ? ", " : i + 2 == n ? " or " : "");
	return pipar_cli_bad(err, opt, s, what);
}

int pipar_cli_hostport(const char *opt, const char *s, int allow_zero, char *host,
		       size_t hostlen, int *port, char *err)
{
	const char *colon = strrchr(s, ':');
	const char *what = allow_zero ? "ADDR:PORT with PORT in [0, 65535] (0: any free port)"
				      : "HOST:PORT with PORT in [1, 65535]";
	char *end;
	long p;

	if (!colon || colon == s || (size_t)(colon - s) >= hostlen || !colon[1] ||
	    colon[1] < '0' || colon[1] > '9')
		return pipar_cli_bad(err, opt, s, what);
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (errno || *end || p < (allow_zero ? 0 : 1) || p > 65535)
		return pipar_cli_bad(err, opt, s, what);
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	*port = (int)p;
	return 0;
}

int pipar_cli_one_stdout(const char *const *opts, const char *const *vals, int n, char *err)
{
	int first = -1;

	for (int i = 0; i < n; i++) {
		if (!vals[i] || strcmp(vals[i], "-"))
			continue;
		if (first >= 0)
			return pipar_errf(err, "%s and %s cannot both be '-': standard output "
					  "takes one of them; name a file for the other",
					  opts[first], opts[i]);
		first = i;
	}
	return 0;
}

int pipar_cli_getopt_error(int c, char *const *argv, char *err)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "";
	const char *eq = strchr(arg, '=');

	if (c == ':')
		return pipar_errf(err, "option '%s' needs a value", arg);
	if (arg[0] == '-' && arg[1] == '-' && eq)
		return pipar_errf(err, "unknown option '%.*s', or it takes no value",
				  (int)(eq - arg), arg);
	if (arg[0] == '-' && arg[1] == '-')
		return pipar_errf(err, "unknown option '%s'", arg);
	return pipar_errf(err, "unknown option '-%c'", optopt ? optopt : '?');
}

int pipar_cli_common(int c, char *const *argv, const char *prog, const char *version,
		     const char *usage)
{
	char err[PIPAR_ERRLEN];

	if (c == 'h' || (c == 'V' && version)) {
		if (c == 'h')
			fputs(usage, stdout);
		else
			printf("%s %s\n", prog, version);
		return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
	}
	pipar_cli_getopt_error(c, argv, err);
	fprintf(stderr, "%s: %s\n%s", prog, err, usage);
	return 2;
}

int pipar_cli_operands(int argc, char *const *argv, const char *prog, const char *usage)
{
	if (optind >= argc)
		return -1;
	fprintf(stderr, "%s: unexpected argument '%s'\n%s", prog, argv[optind], usage);
	return 2;
}

/* Whether every address host resolves to is a loopback one. */
static int loopback_only(const char *host)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *a;
	int all = 1;

	if (getaddrinfo(host, NULL, &hints, &res) != 0)
		return 0;
	for (a = res; a; a = a->ai_next) {
		if (a->ai_family == AF_INET) {
			const struct sockaddr_in *v4 = (const struct sockaddr_in *)(const void *)a->ai_addr;

			all &= (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
		} else if (a->ai_family == AF_INET6) {
			const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)(const void *)a->ai_addr;

			all &= IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
		} else {
			all = 0;
		}
	}
	freeaddrinfo(res);
	return all;
}

int pipar_cli_transport(int server, const struct pipar_tls_cfg *tcfg, const char *host,
			int insecure, struct pipar_tls **tls, char *err)
{
	*tls = NULL;
	if (pipar_tls_wanted(tcfg))
		return (*tls = pipar_tls_new(server, tcfg, err)) ? 0 : 1;
	if (insecure || loopback_only(host))
		return 0;
	pipar_errf(err, "plain TCP %s '%s' is refused: it is not a loopback address; give credentials for TLS (--key-file, or --cert and --ca) or --insecure",
		   server ? "on" : "to", host);
	return 2;
}
