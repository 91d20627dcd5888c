/*
 * cli and the output helpers: option values are read exactly and refused
 * in one wording that names the option, the value and what is expected;
 * ports are range-checked; an output path is checked before any work;
 * JSON numbers are rounded without -0 or exponents of tiny noise.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "tap.h"
#include "file.h"
#include "json.h"
#include "util.h"

static char err[PIPAR_ERRLEN];

static int said(const char *want)
{
	if (strcmp(err, want) == 0)
		return 1;
	diag("got: %s", err);
	return 0;
}

int main(void)
{
	int i = 0, port = -1;
	long l;
	double d;
	float f;
	uint64_t u;
	char host[16], dir[] = "/tmp/pipar-cli-XXXXXX", path[64];
	static const char *const roles[] = {"device", "server", NULL};
	static const char *const modes[] = {"pipar", "fl", "sl", NULL};

	ok(pipar_cli_int("--epochs", "12", 1, 100, &i, err) == 0 && i == 12, "an integer in range");
	ok(pipar_cli_int("--epochs", "0", 1, 100, &i, err) < 0 &&
	   said("bad value '0' for --epochs: expected an integer in [1, 100]"),
	   "below the range is refused by name");
	ok(pipar_cli_int("--epochs", "3x", 1, 100, &i, err) < 0, "trailing text is refused");
	ok(pipar_cli_int("--epochs", "", 1, 100, &i, err) < 0, "an empty value is refused");
	ok(pipar_cli_long("--n", "99999999999999999999", 0, 10, &l, err) < 0,
	   "an overflowing integer is refused");
	ok(pipar_cli_u64("--seed", "18446744073709551615", &u, err) == 0 && u == UINT64_MAX,
	   "the largest seed");
	ok(pipar_cli_u64("--seed", "-1", &u, err) < 0 &&
	   said("bad value '-1' for --seed: expected an integer in [0, 18446744073709551615]"),
	   "a negative seed is refused, not wrapped");
	ok(pipar_cli_float("--lr", "0.01", 0, 1e6, &f, err) == 0 && f == 0.01f, "a float");
	ok(pipar_cli_float("--lr", "abc", 0, 1e6, &f, err) < 0 &&
	   said("bad value 'abc' for --lr: expected a number in [0, 1000000]"),
	   "--lr 'abc' says what is expected");
	ok(pipar_cli_double("--x", "nan", 0, 1, &d, err) < 0 &&
	   pipar_cli_double("--x", "inf", -INFINITY, INFINITY, &d, err) < 0,
	   "nan and inf are refused");
	ok(pipar_cli_positive("--timeout", "0", 1e6, &d, err) < 0 &&
	   said("bad value '0' for --timeout: expected a number greater than 0, at most 1000000"),
	   "a timeout of 0 is refused");
	ok(pipar_cli_positive("--timeout", "0.5", 1e6, &d, err) == 0 && d == 0.5, "a timeout");
	ok(pipar_cli_rate("--uplink", "50mbit", &d, err) == 0 && d == 50e6, "a rate");
	ok(pipar_cli_rate("--uplink", "50", &d, err) < 0 &&
	   said("bad value '50' for --uplink: expected a rate such as 10mbit, 1gbit, 500kbit or 2MB/s"),
	   "a rate without a unit is refused");
	ok(pipar_cli_choice("--role", "server", roles, &i, err) == 0 && i == 1, "a choice");
	ok(pipar_cli_choice("--role", "x", roles, &i, err) < 0 &&
	   said("bad value 'x' for --role: expected one of device or server"), "two choices");
	ok(pipar_cli_choice("--mode", "x", modes, &i, err) < 0 &&
	   said("bad value 'x' for --mode: expected one of pipar, fl or sl"), "three choices");

	ok(pipar_cli_hostport("--listen", "127.0.0.1:7070", 1, host, sizeof(host), &port, err) == 0 &&
	   strcmp(host, "127.0.0.1") == 0 && port == 7070, "ADDR:PORT");
	ok(pipar_cli_hostport("--listen", "127.0.0.1:0", 1, host, sizeof(host), &port, err) == 0 &&
	   port == 0, "port 0 to listen on");
	ok(pipar_cli_hostport("--connect", "127.0.0.1:0", 0, host, sizeof(host), &port, err) < 0,
	   "port 0 to connect to is refused");
	ok(pipar_cli_hostport("--listen", "127.0.0.1:99999", 1, host, sizeof(host), &port, err) < 0 &&
	   said("bad value '127.0.0.1:99999' for --listen: expected ADDR:PORT with PORT in [0, 65535] (0: any free port)"),
	   "port 99999 is refused");
	ok(pipar_cli_hostport("--listen", "127.0.0.1:-1", 1, host, sizeof(host), &port, err) < 0 &&
	   pipar_cli_hostport("--listen", "127.0.0.1:", 1, host, sizeof(host), &port, err) < 0 &&
	   pipar_cli_hostport("--listen", ":80", 1, host, sizeof(host), &port, err) < 0 &&
	   pipar_cli_hostport("--listen", "localhost", 1, host, sizeof(host), &port, err) < 0 &&
	   pipar_cli_hostport("--listen", "a-very-long-host-name:1", 1, host, sizeof(host), &port, err) < 0,
	   "negative, empty and missing ports, an empty host, a host too long");

	{
		const char *opts[3] = {"--checkpoint", "--trace", "--summary"};
		const char *one[3] = {"-", "t.json", NULL}, *two[3] = {"-", NULL, "-"};

		ok(pipar_cli_one_stdout(opts, one, 3, err) == 0, "one output on standard output");
		ok(pipar_cli_one_stdout(opts, two, 3, err) < 0 &&
		   said("--checkpoint and --summary cannot both be '-': standard output takes one of them; name a file for the other"),
		   "two outputs on standard output are refused");
	}

	ok(mkdtemp(dir) != NULL, "a scratch directory");
	snprintf(path, sizeof(path), "%s/out.json", dir);
	ok(pipar_out_check(path, err) == 0, "a new file in a writable directory can be written");
	ok(access(path, F_OK) != 0 && rmdir(dir) == 0, "and the check leaves nothing behind");
	ok(pipar_out_check(path, err) < 0 && strstr(err, "No such file or directory") &&
	   strstr(err, path), "a missing directory is named with the reason");
	ok(pipar_out_check("/tmp", err) < 0 && said("cannot write '/tmp': it is a directory"),
	   "a directory is not a file");
	ok(pipar_out_check("-", err) == 0, "'-' is standard output");

	ok(pipar_json_round(1.887e-15, 6) == 0 && !signbit(pipar_json_round(-1e-9, 6)),
	   "noise rounds to 0, not -0");
	ok(pipar_json_round(7.605530407000515, 6) == 7.60553, "seconds to the microsecond");
	ok(pipar_json_round(150592992.4, 0) == 150592992, "bytes to an integer");
	ok(isnan(pipar_json_round(NAN, 6)) && pipar_json_round(1e300, 6) == 1e300, "non-finite and huge kept");
	{
		double bps;

		ok(pipar_cli_rate_parse("10mbit", &bps) == 0 && bps == 1e7, "10mbit is 1e7 bit/s");
		ok(pipar_cli_rate_parse("2.5Gbit", &bps) == 0 && bps == 2.5e9, "2.5Gbit is 2.5e9 bit/s");
		ok(pipar_cli_rate_parse("500kbit", &bps) == 0 && bps == 5e5, "500kbit");
		ok(pipar_cli_rate_parse("12MB/s", &bps) == 0 && bps == 9.6e7, "12MB/s is 9.6e7 bit/s");
		ok(pipar_cli_rate_parse("800KB/s", &bps) == 0 && bps == 6.4e6, "800KB/s is 6.4e6 bit/s");
		ok(pipar_cli_rate_parse("10", &bps) < 0 && pipar_cli_rate_parse("-1mbit", &bps) < 0 &&
			   pipar_cli_rate_parse("mbit", &bps) < 0 && pipar_cli_rate_parse("10 parsecs", &bps) < 0,
		   "rates without a unit, negative or malformed are refused");
	}
	return tap_done();
}
