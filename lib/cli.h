/*
 * cli: the values of command-line options, read one way and refused in
 * one wording by every program.
 *
 * Each parser takes the option as the user wrote it ("--lr"), the text
 * and what is allowed.  A bad value returns -1 with err holding
 *
 *     bad value 'abc' for --lr: expected a number in [0, 1000000]
 *
 * which the program prints after its name, follows with its usage text,
 * and exits 2.  Nothing here exits, and only pipar_cli_common and
 * pipar_cli_operands print: the end of every program's option loop.
 *
 * Who owns what: values are written into the caller's variables; a host
 * is copied into the caller's buffer; nothing is allocated.
 */
#ifndef PIPAR_CLI_H
#define PIPAR_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* Fills err with "bad value 'S' for OPT: expected WHAT"; returns -1. */
int pipar_cli_bad(char *err, const char *opt, const char *s, const char *what);

/* A decimal integer in [lo, hi]. */
int pipar_cli_int(const char *opt, const char *s, long lo, long hi, int *out, char *err);
int pipar_cli_long(const char *opt, const char *s, long lo, long hi, long *out, char *err);

/* A seed: a decimal integer in [0, 2^64 - 1]. */
int pipar_cli_u64(const char *opt, const char *s, uint64_t *out, char *err);

/* A finite number in [lo, hi]. */
int pipar_cli_double(const char *opt, const char *s, double lo, double hi, double *out,
		     char *err);
/* As pipar_cli_double, for a float setting (the range must fit a float). */
int pipar_cli_float(const char *opt, const char *s, double lo, double hi, float *out,
		    char *err);
/* A finite number in (0, hi]: a timeout, a time. */
int pipar_cli_positive(const char *opt, const char *s, double hi, double *out, char *err);

/* Parses "10mbit", "1.5gbit", "500kbit", "12MB/s", "800KB/s" into bits per
 * second; -1 if malformed or not positive. */
int pipar_cli_rate_parse(const char *s, double *bps);
/* A link rate (pipar_cli_rate_parse): 10mbit, 1gbit, 500kbit, 2MB/s. */
int pipar_cli_rate(const char *opt, const char *s, double *bps, char *err);

/* One of the NULL-terminated names; *out is its index. */
int pipar_cli_choice(const char *opt, const char *s, const char *const *names, int *out,
		     char *err);

/* "HOST:PORT" (an IPv4 address or a name, then a decimal port): the host
 * is copied to host (hostlen bytes at most, NUL included) and the port to
 * *port.  The port must be in [1, 65535], or [0, 65535] with allow_zero
 * (a listening socket, where 0 lets the kernel choose). */
int pipar_cli_hostport(const char *opt, const char *s, int allow_zero, char *host,
		       size_t hostlen, int *port, char *err);

/* The message for an error getopt_long reported as c (':' a missing
 * value, '?' an unknown option; the option string must start with ':'
 * and opterr be 0), from argv and optind, optopt as getopt left them. */
int pipar_cli_getopt_error(int c, char *const *argv, char *err);

/* The cases every program's getopt loop shares, for a c its own switch
 * did not take: 'h' prints usage on standard output, 'V' (when version
 * is not NULL) prints "PROG VERSION"; each gives the exit status 0, or 1
 * when standard output cannot be written.  Any other c is a usage error:
 * "PROG: MESSAGE" (pipar_cli_getopt_error) and the usage on standard
 * error, status 2. */
int pipar_cli_common(int c, char *const *argv, const char *prog, const char *version,
		     const char *usage);

/* After the loop: an operand left (argv[optind]) is a usage error as
 * above, status 2; -1 when there is none. */
int pipar_cli_operands(int argc, char *const *argv, const char *prog, const char *usage);

/* Outputs that share standard output: n option names and their values
 * (NULL when not given).  -1 with err when more than one is "-". */
int pipar_cli_one_stdout(const char *const *opts, const char *const *vals, int n, char *err);

/* The transport a program is asked for: TLS when tcfg names any
 * credential (*tls set, the caller frees it with pipar_tls_free), else
 * plain TCP (*tls NULL), which is refused unless every address host
 * resolves to is a loopback one or insecure is set.  Returns 0; 2 with
 * err for a usage error (plain TCP refused); 1 with err when the
 * credentials cannot be loaded. */
struct pipar_tls_cfg;
struct pipar_tls;
int pipar_cli_transport(int server, const struct pipar_tls_cfg *tcfg, const char *host,
			int insecure, struct pipar_tls **tls, char *err);

#endif
