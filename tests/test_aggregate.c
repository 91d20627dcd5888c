/*
 * test_aggregate: the rules that combine the devices' models
 * (--aggregate, server.h): parsed and named as written, and the rank
 * rules' arithmetic on models whose answer is known, outliers included.
 */
#define _POSIX_C_SOURCE 200809L
#include "server.h"
#include "tap.h"
#include "util.h"

#include <string.h>

/* The rule written as text on m models of n floats (mat), into out. */
static void by_rank(const char *text, const float *mat, int m, size_t n, float *out)
{
	struct pipar_agg_rule r;
	char err[PIPAR_ERRLEN];
	float col[16];

	PIPAR_ASSERT(pipar_agg_rule_parse(text, &r, err) == 0 && m <= 16);
	pipar_agg_by_rank(&r, mat, m, n, out, col);
}

int main(void)
{
	struct pipar_agg_rule r;
	char err[PIPAR_ERRLEN] = "", name[48];
	float out[2];

	ok(pipar_agg_rule_parse("trimmed:0.2", &r, err) == 0 && r.kind == PIPAR_AGG_TRIMMED &&
		   r.param == 0.2 && !strcmp(pipar_agg_rule_name(&r, name, sizeof(name)), "trimmed:0.2"),
	   "trimmed:0.2 is parsed and named as written");
	ok(pipar_agg_rule_parse("clip:2.5", &r, err) == 0 && r.kind == PIPAR_AGG_CLIP &&
		   !strcmp(pipar_agg_rule_name(&r, name, sizeof(name)), "clip:2.5"),
	   "clip:2.5 is parsed and named as written");
	ok(pipar_agg_rule_parse("trimmed:0.5", &r, err) < 0 && strstr(err, "0 <= F < 0.5"),
	   "trimmed:0.5 is refused, saying what is accepted: %s", err);
	ok(pipar_agg_rule_parse("clip:0", &r, err) < 0 && pipar_agg_rule_parse("clip:", &r, err) < 0 &&
		   pipar_agg_rule_parse("clip:nan", &r, err) < 0 && pipar_agg_rule_parse("mean:1", &r, err) < 0,
	   "clip:0, clip:, clip:nan and mean:1 are refused");

	/* Two coordinates of each model, in rows. */
	{
		const float odd[] = {1, -4, 100, 7, 2, 0};
		by_rank("median", odd, 3, 2, out);
		ok(out[0] == 2 && out[1] == 0, "the median of 1, 100, 2 is 2 and of -4, 7, 0 is 0 (%g, %g)",
		   out[0], out[1]);
	}
	{
		const float even[] = {1, 5, 4, 5, 3, 5, 1e30f, -1e30f};
		by_rank("median", even, 4, 2, out);
		ok(out[0] == 3.5f && out[1] == 5, "the median of four is the mean of the middle two (%g, %g)",
		   out[0], out[1]);
	}
	{
		/* Five devices, one far out at each end. */
		const float five[] = {-50, 1, 1, 2, 2, 3, 3, 4, 90, 1000};
		by_rank("trimmed:0.2", five, 5, 2, out);
		ok(out[0] == 2 && out[1] == 3, "trimmed:0.2 of five cuts one at each end: 2 and 3 (%g, %g)",
		   out[0], out[1]);
		by_rank("trimmed:0.19", five, 5, 2, out);
		ok(out[0] == (float)((-50 + 1 + 2 + 3 + 90) / 5.0) && out[1] == (float)(1010 / 5.0),
		   "trimmed:0.19 of five cuts floor(0.95) = 0: the mean (%g, %g)", out[0], out[1]);
		by_rank("trimmed:0.4", five, 5, 2, out);
		ok(out[0] == 2 && out[1] == 3, "trimmed:0.4 of five cuts two at each end: the median (%g, %g)",
		   out[0], out[1]);
	}
	return tap_done();
}
