/*
 * The planner against schedules computed by hand, against the reference's
 * longest-path estimate where their assumptions coincide, and against
 * brute force; and the profile reader's refusals.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "link.h"
#include "model.h"
#include "plan.h"
#include "rng.h"
#include "util.h"
#include "tap.h"

/* A profile of L units whose medians are set directly: forward of unit u
 * takes fb[u] n, backward bb[u] n. */
static struct pipar_profile *fake(const char *role, int L, const double *fb,
				  const double *bb, const double *out_bytes,
				  double step)
{
	struct pipar_profile *p = calloc(1, sizeof(*p));

	snprintf(p->role, sizeof(p->role), "%s", role);
	p->spec = strdup("{\"format\":\"pipar-model/1\",\"name\":\"fake\"}");
	p->in = (struct pipar_shape){1, 4, 4};
	p->classes = 10;
	p->batch = 64;
	p->nsizes = 2;
	p->sizes[0] = 1;
	p->sizes[1] = 64;
	p->nunits = L;
	p->units = calloc((size_t)L, sizeof(*p->units));
	for (int u = 0; u < L; u++) {
		for (int s = 0; s < 2; s++) {
			p->units[u].fwd[s].median = fb[u] * p->sizes[s];
			p->units[u].bwd[s].median = bb[u] * p->sizes[s];
		}
		p->units[u].out_bytes = out_bytes[u];
		p->units[u].param_bytes = 1000;
		p->units[u].step = step;
	}
	return p;
}

static double rnd(struct pipar_rng *r, double lo, double hi)
{
	return lo + (hi - lo) * pipar_rng_uniform(r);
}

int main(void)
{
	struct pipar_plan_env env = {0};
	const struct pipar_profile *per[PIPAR_PLAN_MAXDEV];
	struct pipar_choice ch[PIPAR_PLAN_MAXDEV], best[PIPAR_PLAN_MAXDEV];
	struct pipar_sim s;
	struct pipar_candidate top[8];


	/* What a link carries: the bytes and 66 for every 1448-byte segment. */
	ok(pipar_link_wire_bytes(1448) == 1514 && pipar_link_wire_bytes(1449) == 1449 + 132 &&
		   pipar_link_wire_bytes(1) == 67 && pipar_link_wire_bytes(0) == 0,
	   "a link carries 66 bytes of headers for every TCP segment of 1448");

	/* Equal stage times t, no backward and no steps: a linear pipeline of
	 * four stages over N items takes (4 + N - 1) t. */
	{
		/* 2 units on the device, 2 on the server; B = 64. */
		double t = 0.01;
		int B = 64, worst_N = 0;
		double worst = 0;

		for (int N = 1; N <= 64; N *= 2) {
			int n = B / N;
			/* f = 2 units * c * n = t  =>  c = t / (2n); likewise. */
			double fb[4] = {t / (2.0 * n), t / (2.0 * n), t / (2.0 * n), t / (2.0 * n)};
			double zero[4] = {0, 0, 0, 0};
			double ob[4] = {100, 100, 100, 100};
			/* the server does forward only (backward 0): 2 units */
			struct pipar_profile *d = fake("device", 4, fb, zero, ob, 0);
			struct pipar_profile *sv = fake("server", 4, fb, zero, ob, 0);

			env.K = 1;
			per[0] = d;
			env.dev = per;
			env.srv = sv;
			env.batch = B;
			env.samples = B;
			/* an upload of 100 n + 4 n bytes (a frame of 56 bytes more,
			 * as the link carries it) in t; a download of 100 n in t */
			env.up_bps = pipar_link_wire_bytes(56 + 104.0 * n) * 8 / t;
			env.down_bps = pipar_link_wire_bytes(56 + 100.0 * n) * 8 / t;
			ch[0] = (struct pipar_choice){2, N};
			pipar_plan_simulate(&env, PIPAR_MODE_PIPAR, ch, &s);
			double want = (4 + N - 1) * t;

			if (fabs(s.iteration - want) > worst)
				worst = fabs(s.iteration - want), worst_N = N;
			pipar_profile_free(d);
			pipar_profile_free(sv);
		}
		ok(worst < 1e-12, "equal stage times: (stages + N - 1) t for N = 1..64 (worst error %.2e at N=%d)",
		   worst, worst_N);
	}

	/* Communication-bound: a slow uplink dominates; the iteration is the
	 * first forward, N uploads back to back, then the tail of the last
	 * micro-batch. */
	{
		double fb[3] = {1e-4, 1e-4, 1e-4}, bb[3] = {2e-4, 2e-4, 2e-4};
		double ob[3] = {4000, 4000, 40};
		struct pipar_profile *d = fake("device", 3, fb, bb, ob, 0);
		struct pipar_profile *sv = fake("server", 3, fb, bb, ob, 0);
		int B = 60, N = 6, n = 10;

		env.K = 1;
		per[0] = d;
		env.dev = per;
		env.srv = sv;
		env.batch = B;
		env.samples = B;
		env.up_bps = 1e6;
		env.down_bps = 1e9;
		ch[0] = (struct pipar_choice){1, N};
		pipar_plan_simulate(&env, PIPAR_MODE_PIPAR, ch, &s);
		/* Frames of a 24-byte header, a 32-byte head and the values, and
		 * 66 bytes more for every 1448-byte segment. */
		double f = 1e-4 * n, u = pipar_link_wire_bytes(56 + 4000.0 * n + 4 * n) * 8 / 1e6;
		double sv_t = 2 * (1e-4 + 2e-4) * n, w = pipar_link_wire_bytes(56 + 4000.0 * n) * 8 / 1e9;
		double b = 2e-4 * n;
		/* the last backward of the chain: N backwards on the device, each
		 * after its download; here the last download gates the last. */
		double want = f + N * u + sv_t + w + b;

		ok(fabs(s.iteration - want) < 1e-12 && s.iteration >= s.up_busy[0],
		   "a slow uplink bounds the iteration: %.6f s = first forward + %d uploads + tail (%.6f)",
		   s.iteration, N, want);
		ok(fabs(s.up_busy[0] - N * u) < 1e-12, "uplink busy %.6f s is N uploads", s.up_busy[0]);
		pipar_profile_free(d);
		pipar_profile_free(sv);
	}

	/* The shared server: K identical devices whose work is all on the
	 * server take K times one device's server time. */
	{
		double fb[2] = {1e-9, 1e-3}, bb[2] = {1e-9, 1e-3}, ob[2] = {4, 4};
		struct pipar_profile *d = fake("device", 2, fb, bb, ob, 0);
		struct pipar_profile *sv = fake("server", 2, fb, bb, ob, 0);
		int B = 32;

		env.batch = B;
		env.samples = B;
		env.up_bps = env.down_bps = 1e15;
		env.dev = per;
		env.srv = sv;
		for (int K = 1; K <= 8; K *= 2) {
			env.K = K;
			for (int k = 0; k < K; k++) {
				per[k] = d;
				ch[k] = (struct pipar_choice){1, 4};
			}
			pipar_plan_simulate(&env, PIPAR_MODE_SFL, ch, &s);
			ok(fabs(s.srv_busy - K * 2e-3 * B) < 1e-9 && s.iteration >= K * 2e-3 * B,
			   "K = %d devices share one server: busy %.4f s, iteration %.4f s", K,
			   s.srv_busy, s.iteration);
		}
		pipar_profile_free(d);
		pipar_profile_free(sv);
	}

	/* After the first iteration, the devices of a shared server keep the
	 * stagger its queue gave them.  sfl, K = 4 identical devices, free
	 * links, F the device's forward (and its backward), S the server's
	 * job.  The first iteration ends at 2F + K S for the last device; when
	 * 2F >= (K - 1) S the server has room for the staggered jobs and every
	 * device's later iterations take 2F + S; when not, the server is the
	 * bottleneck and every device waits a turn of K S. */
	{
		const double cases[2][3] = {
			/* F, S, the later iterations' period */
			{0.1, 0.02, 0.2 + 0.02},
			{0.01, 0.05, 4 * 0.05},
		};
		int B = 32, K = 4, I = 5;

		for (int c = 0; c < 2; c++) {
			double F = cases[c][0], S = cases[c][1];
			double fd[2] = {F / B, 0}, fs[2] = {0, S / (2.0 * B)}, ob[2] = {4, 4};
			struct pipar_profile *d = fake("device", 2, fd, fd, ob, 0);
			struct pipar_profile *sv = fake("server", 2, fs, fs, ob, 0);
			double first = 2 * F + K * S, want = first + (I - 1) * cases[c][2];

			env.K = K;
			env.batch = B;
			env.samples = (long)I * B;
			env.up_bps = env.down_bps = 1e15;
			env.dev = per;
			env.srv = sv;
			for (int k = 0; k < K; k++) {
				per[k] = d;
				ch[k] = (struct pipar_choice){1, 1};
			}
			pipar_plan_simulate(&env, PIPAR_MODE_SFL, ch, &s);
			ok(fabs(s.first - first) < 1e-9 && fabs(s.epoch - s.aggregation - want) < 1e-9 &&
				   fabs(s.iteration * I - want) < 1e-9,
			   "sfl, F %.2f s, S %.2f s: first iteration %.4f s (want %.4f), %d iterations "
			   "%.4f s (want %.4f, all starting together %.4f)",
			   F, S, s.first, first, I, s.epoch - s.aggregation, want, I * first);
			pipar_profile_free(d);
			pipar_profile_free(sv);
		}
		env.samples = 0;
	}

	/* One device: the event simulation and the reference's longest path
	 * over the same stage graph agree, on random profiles and choices. */
	{
		struct pipar_rng r;
		double worst = 0;

		pipar_rng_seed(&r, 5, 5);
		for (int trial = 0; trial < 200; trial++) {
			int L = 2 + (int)pipar_rng_below(&r, 6);
			double fb[8], bb[8], ob[8], sfb[8], sbb[8];

			for (int u = 0; u < L; u++) {
				fb[u] = rnd(&r, 1e-5, 1e-3);
				bb[u] = rnd(&r, 1e-5, 2e-3);
				ob[u] = rnd(&r, 10, 1e5);
				sfb[u] = fb[u] / rnd(&r, 1, 50);
				sbb[u] = bb[u] / rnd(&r, 1, 50);
			}
			struct pipar_profile *d = fake("device", L, fb, bb, ob, rnd(&r, 0, 1e-2));
			struct pipar_profile *sv = fake("server", L, sfb, sbb, ob, rnd(&r, 0, 1e-2));

			env.K = 1;
			per[0] = d;
			env.dev = per;
			env.srv = sv;
			env.batch = 1 + (int)pipar_rng_below(&r, 128);
			env.samples = env.batch;
			env.up_bps = rnd(&r, 1e6, 1e9);
			env.down_bps = rnd(&r, 1e6, 1e9);
			env.latency = trial % 2 ? rnd(&r, 0, 2e-2) : 0;
			ch[0].P = 1 + (int)pipar_rng_below(&r, (uint32_t)(L - 1));
			ch[0].N = 1 + (int)pipar_rng_below(&r, (uint32_t)env.batch);
			pipar_plan_simulate(&env, PIPAR_MODE_PIPAR, ch, &s);
			double ref = pipar_plan_reference(&env, 0, ch[0]);
			double e = fabs(ref - s.iteration) / ref;

			if (e > worst)
				worst = e;
			pipar_profile_free(d);
			pipar_profile_free(sv);
		}
		ok(worst < 1e-12, "200 random cases, one device, half with a delay: simulation = longest path (worst relative error %.2e)",
		   worst);
		env.latency = 0;
	}

	/* A one-way delay d: each mini-batch's chain of sl crosses it twice,
	 * as does every aggregation; a pipeline pays it at least once each
	 * way, and less than once per micro-batch, its frames in flight
	 * overlapping their delays. */
	{
		double fb[3] = {2e-4, 1e-4, 3e-4}, bb[3] = {4e-4, 2e-4, 5e-4}, ob[3] = {20000, 5000, 40};
		struct pipar_profile *d = fake("device", 3, fb, bb, ob, 1e-3);
		struct pipar_profile *sv = fake("server", 3, fb, bb, ob, 1e-4);
		struct pipar_sim a, b;
		const double lat = 0.01;
		int sl_ok = 1, agg_ok = 1;

		env.K = 3;
		for (int k = 0; k < 3; k++) {
			per[k] = d;
			ch[k] = (struct pipar_choice){1, 8};
		}
		env.dev = per;
		env.srv = sv;
		env.batch = 64;
		env.samples = 640;
		env.up_bps = env.down_bps = 1e8;
		for (int m = 0; m < 4; m++) {
			enum pipar_mode mode = (enum pipar_mode[]){PIPAR_MODE_PIPAR, PIPAR_MODE_SFL, PIPAR_MODE_SL,
								 PIPAR_MODE_FL}[m];

			env.latency = 0;
			pipar_plan_simulate(&env, mode, ch, &a);
			env.latency = lat;
			pipar_plan_simulate(&env, mode, ch, &b);
			if (mode == PIPAR_MODE_SL)
				sl_ok = fabs(b.iteration - a.iteration - 2 * lat * env.K) < 1e-12;
			if (mode == PIPAR_MODE_FL)
				ok(fabs(b.iteration - a.iteration) < 1e-15,
				   "fl: the delay leaves an iteration as it was (%.6f s)", b.iteration);
			if (mode == PIPAR_MODE_PIPAR)
				ok(b.iteration - a.iteration >= 2 * lat - 1e-12 &&
					   b.iteration - a.iteration < 2 * lat * ch[0].N,
				   "pipar, N = 8: a 10 ms delay adds %.4f s to an iteration, in [0.02, 0.16)",
				   b.iteration - a.iteration);
			if (mode != PIPAR_MODE_SL)
				agg_ok &= fabs(b.aggregation - a.aggregation - 2 * lat) < 1e-12;
			else
				agg_ok &= fabs(b.aggregation - a.aggregation - 2 * lat * env.K) < 1e-12;
		}
		ok(sl_ok, "sl: a delay d adds 2 d per device to an iteration");
		ok(agg_ok, "an aggregation crosses the delay up and down (each device in turn in sl)");
		env.latency = 0;
		pipar_profile_free(d);
		pipar_profile_free(sv);
	}

	/* The search is optimal: homogeneous against every (P, N); two
	 * different devices against every pair of choices. */
	{
		double fb[4] = {2e-4, 1e-4, 3e-4, 1e-4}, bb[4] = {4e-4, 2e-4, 5e-4, 2e-4};
		double ob[4] = {20000, 5000, 8000, 40};
		double fb2[4] = {2e-3, 1e-3, 3e-3, 1e-3}, bb2[4] = {4e-3, 2e-3, 5e-3, 2e-3};
		double sfb[4] = {1e-5, 1e-5, 2e-5, 1e-5}, sbb[4] = {2e-5, 2e-5, 3e-5, 2e-5};
		struct pipar_profile *d = fake("device", 4, fb, bb, ob, 1e-3);
		struct pipar_profile *slow = fake("device", 4, fb2, bb2, ob, 1e-2);
		struct pipar_profile *sv = fake("server", 4, sfb, sbb, ob, 1e-4);
		double brute = INFINITY;
		int B = 24;

		env.K = 3;
		per[0] = per[1] = per[2] = d;
		env.dev = per;
		env.srv = sv;
		env.batch = B;
		env.samples = 10 * B;
		env.up_bps = 5e7;
		env.down_bps = 5e7;
		env.memory = 0;
		for (int P = 1; P < 4; P++)
			for (int N = 1; N <= B; N++) {
				for (int k = 0; k < 3; k++)
					ch[k] = (struct pipar_choice){P, N};
				pipar_plan_simulate(&env, PIPAR_MODE_PIPAR, ch, &s);
				if (s.epoch < brute)
					brute = s.epoch;
			}
		int nt = pipar_plan_search(&env, PIPAR_MODE_PIPAR, best, &s, top, 8);
		ok(nt == 8 && fabs(s.epoch - brute) < 1e-12 && fabs(top[0].epoch - brute) < 1e-12,
		   "homogeneous search finds the brute-force optimum (%.6f s, P=%d N=%d)", s.epoch,
		   best[0].P, best[0].N);
		int sorted = 1;
		for (int i = 1; i < nt; i++)
			if (top[i].epoch < top[i - 1].epoch)
				sorted = 0;
		ok(sorted, "the alternatives are ranked best first");

		/* Two devices, one 10x slower: brute force over all pairs. */
		env.K = 2;
		per[0] = d;
		per[1] = slow;
		brute = INFINITY;
		for (int P0 = 1; P0 < 4; P0++)
			for (int N0 = 1; N0 <= B; N0++)
				for (int P1 = 1; P1 < 4; P1++)
					for (int N1 = 1; N1 <= B; N1++) {
						ch[0] = (struct pipar_choice){P0, N0};
						ch[1] = (struct pipar_choice){P1, N1};
						pipar_plan_simulate(&env, PIPAR_MODE_PIPAR, ch, &s);
						if (s.epoch < brute)
							brute = s.epoch;
					}
		pipar_plan_search(&env, PIPAR_MODE_PIPAR, best, &s, top, 8);
		ok(s.epoch <= brute * (1 + 1e-9),
		   "heterogeneous devices: the search matches brute force over all %d pairs (%.6f vs %.6f s; P=%d,%d N=%d,%d)",
		   (3 * B) * (3 * B), s.epoch, brute, best[0].P, best[1].P, best[0].N, best[1].N);

		/* A smallest micro-batch bounds N by B / min. */
		env.min_micro = 5;
		pipar_plan_search(&env, PIPAR_MODE_PIPAR, best, &s, top, 8);
		int within = 1;
		for (int k = 0; k < env.K; k++)
			if (B / best[k].N < 5)
				within = 0;
		for (int i = 0; i < 8; i++)
			if (B / top[i].choice.N < 5)
				within = 0;
		ok(within, "a smallest micro-batch of 5 keeps every N at most %d (chose N=%d,%d)", B / 5,
		   best[0].N, best[1].N);
		env.min_micro = 0;

		/* A memory limit rules out what does not fit. */
		env.K = 1;
		per[0] = d;
		env.memory = 1;
		ok(pipar_plan_search(&env, PIPAR_MODE_PIPAR, best, &s, top, 8) < 0,
		   "nothing fits in 1 byte of memory");
		env.memory = 0;
		pipar_profile_free(d);
		pipar_profile_free(slow);
		pipar_profile_free(sv);
	}

	/* The profile reader names what is wrong. */
	{
		const char *good_head =
			"{\"format\":\"pipar-profile/1\",\"role\":\"device\",\"host\":{\"cpu\":\"x\",\"cores\":2,\"threads\":1},"
			"\"slowdown\":1,\"repeat\":1,\"model_name\":\"m\",\"model\":{\"format\":\"pipar-model/1\"},"
			"\"input\":[1,4,4],\"classes\":10,\"data\":\"d\",\"data_samples\":100,\"batch\":4,\"sizes\":[1,4],"
			"\"units\":[{\"unit\":1,\"forward\":[{\"median\":1,\"min\":1,\"max\":1},{\"median\":2,\"min\":2,\"max\":2}],"
			"\"backward\":[{\"median\":1,\"min\":1,\"max\":1},{\"median\":";
		const char *good_tail =
			",\"min\":0,\"max\":9}],\"step_seconds\":0,\"output_bytes_per_sample\":4,\"parameter_bytes\":4,"
			"\"memory_fixed_bytes\":4,\"memory_bytes_per_sample\":4,\"flops_forward_per_sample\":1,"
			"\"flops_backward_per_sample\":1}]}";
		char text[4096], err[PIPAR_ERRLEN];
		struct pipar_profile *p;

		snprintf(text, sizeof(text), "%s2%s", good_head, good_tail);
		ok(pipar_profile_parse(text, "p.json", &p, err) == 0, "a well-formed profile parses");
		ok(p && fabs(pipar_profile_time(p, 0, 1, 4, 0) - 2) < 1e-12 &&
			   fabs(pipar_profile_time(p, 0, 1, 1, 0) - 1) < 1e-12,
		   "its curve goes through the medians");
		ok(p && !p->stages && fabs(pipar_profile_device_time(p, 1, 4, 0) - 2) < 1e-12,
		   "without stages a device stage is the sum of its units");
		pipar_profile_free(p);
		/* Stages: the device part through each unit, timed as a device
		 * computes it; the planner takes a device's stage from them. */
		{
			char st[4096];
			const char *stages = "\"stage_forward\":[{\"median\":3,\"min\":3,\"max\":3},"
					     "{\"median\":6,\"min\":6,\"max\":6}],"
					     "\"stage_backward\":[{\"median\":5,\"min\":5,\"max\":5},"
					     "{\"median\":8,\"min\":8,\"max\":8}],";

			snprintf(text, sizeof(text), "%s2%s", good_head, good_tail);
			char *at = strstr(text, "\"step_seconds\"");

			snprintf(st, sizeof(st), "%.*s%s%s", (int)(at - text), text, stages, at);
			ok(pipar_profile_parse(st, "p.json", &p, err) == 0 && p->stages,
			   "a profile with stages parses: %s", err);
			ok(p && fabs(pipar_profile_device_time(p, 1, 4, 0) - 6) < 1e-12 &&
				   fabs(pipar_profile_device_time(p, 1, 1, 1) - 5) < 1e-12 &&
				   fabs(pipar_profile_device_time(p, 1, 2, 0) - 4) < 1e-12 &&
				   pipar_profile_device_time(p, 0, 4, 0) == 0,
			   "a device stage is read off its own curve, not the units'");
			ok(p && fabs(pipar_profile_time(p, 0, 1, 4, 0) - 2) < 1e-12,
			   "the units' own times stay as profiled");
			/* In a server profile the same arrays are the server's
			 * job from the unit on, forward and backward together. */
			ok(p && fabs(pipar_profile_server_time(p, 0, 4) - 14) < 1e-12 &&
				   fabs(pipar_profile_server_time(p, 0, 1) - 8) < 1e-12 &&
				   pipar_profile_server_time(p, 1, 4) == 0,
			   "a server's job is read off its stage curves, and is 0 past the last unit");
			p->stages = 0;
			ok(p && fabs(pipar_profile_server_time(p, 0, 4) - 2 - 2) < 1e-12,
			   "without stages a server's job is the sum of its units' forward and backward");
			pipar_profile_free(p);
			/* A stage array without its pair is refused by name. */
			snprintf(st, sizeof(st), "%.*s%.*s%s", (int)(at - text), text,
				 (int)(strstr(stages, "\"stage_backward\"") - stages), stages, at);
			ok(pipar_profile_parse(st, "p.json", &p, err) < 0 &&
				   strstr(err, "units[0].stage_backward"),
			   "stage_forward without stage_backward is refused: %s", err);
		}
		/* The curve between and beyond the profiled sizes. */
		{
			const double fb[1] = {0}, ob[1] = {4};
			struct pipar_profile *c = fake("device", 1, fb, fb, ob, 0);

			c->nsizes = 3;
			c->sizes[0] = 2;
			c->sizes[1] = 4;
			c->sizes[2] = 8;
			c->units[0].fwd[0].median = 1;  /* 0.5 a sample ... */
			c->units[0].fwd[1].median = 2;
			c->units[0].fwd[2].median = 6;  /* ... then 1 a sample */
			ok(fabs(pipar_profile_time(c, 0, 1, 3, 0) - 1.5) < 1e-12 &&
				   fabs(pipar_profile_time(c, 0, 1, 6, 0) - 4) < 1e-12,
			   "between two sizes the curve is straight");
			ok(fabs(pipar_profile_time(c, 0, 1, 16, 0) - 14) < 1e-12 &&
				   fabs(pipar_profile_time(c, 0, 1, 1, 0) - 0.5) < 1e-12,
			   "beyond them the nearest segment goes on");
			c->units[0].fwd[1].median = 3;  /* 1 at 2, 3 at 4: -1 at 0 */
			ok(pipar_profile_time(c, 0, 1, 0, 0) == 0 &&
				   fabs(pipar_profile_time(c, 0, 1, 1, 0)) < 1e-12,
			   "and never goes below zero");
			c->nsizes = 1;
			c->units[0].fwd[0].median = 3;
			ok(fabs(pipar_profile_time(c, 0, 1, 4, 0) - 6) < 1e-12,
			   "one size: through zero and it");
			pipar_profile_free(c);
		}
		snprintf(text, sizeof(text), "%s-2%s", good_head, good_tail);
		ok(pipar_profile_parse(text, "p.json", &p, err) < 0 &&
			   strstr(err, "units[0].backward[1].median") && strstr(err, "negative"),
		   "a negative time is refused naming it: %s", err);
		snprintf(text, sizeof(text), "%s2%s", good_head, good_tail);
		memcpy(strstr(text, "profile/1"), "profile/2", 9);
		ok(pipar_profile_parse(text, "p.json", &p, err) < 0 &&
			   strstr(err, "'p.json' is a pipar-profile/2 file, expected pipar-profile/1"),
		   "another format is refused: %s", err);
		snprintf(text, sizeof(text), "%s2%s", good_head, good_tail);
		memcpy(strstr(text, "\"repeat\""), "\"repaet\"", 8);
		ok(pipar_profile_parse(text, "p.json", &p, err) < 0 && strstr(err, "repaet"),
		   "an unknown field is refused naming it: %s", err);
		snprintf(text, sizeof(text), "%s2%s", good_head, good_tail);
		*strstr(text, "{\"median\":2,") = '\0';
		ok(pipar_profile_parse(text, "p.json", &p, err) < 0 && strstr(err, "p.json"),
		   "truncated JSON is refused: %s", err);
	}
	return tap_done();
}
