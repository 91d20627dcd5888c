/*
 * The seeded generator: splitmix64 to seed, xoshiro128-style steps.
 */
#include "rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void pipar_rng_seed(struct pipar_rng *r, uint64_t seed, uint64_t stream)
{
	uint64_t x = seed ^ (stream * 0xd1b54a32d192ed03ULL);

	r->s[0] = splitmix64(&x);
	r->s[1] = splitmix64(&x);
	if (!r->s[0] && !r->s[1])
		r->s[0] = 1;
}

/* xoroshiro128+ */
uint64_t pipar_rng_next(struct pipar_rng *r)
{
	uint64_t s0 = r->s[0], s1 = r->s[1], res = s0 + s1;

	s1 ^= s0;
	r->s[0] = ((s0 << 24) | (s0 >> 40)) ^ s1 ^ (s1 << 16);
	r->s[1] = (s1 << 37) | (s1 >> 27);
	return res;
}

double pipar_rng_uniform(struct pipar_rng *r)
{
	return (double)(pipar_rng_next(r) >> 11) * 0x1.0p-53;
}

double pipar_rng_normal(struct pipar_rng *r)
{
	double u1, u2;

	do
		u1 = pipar_rng_uniform(r);
	while (u1 <= 0.0);
	u2 = pipar_rng_uniform(r);
	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint32_t pipar_rng_below(struct pipar_rng *r, uint32_t n)
{
	/* Lemire's multiply-shift; the tiny bias is irrelevant here. */
	return (uint32_t)(((pipar_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

double pipar_rng_gamma(struct pipar_rng *r, double shape)
{
	double d, c, x, v, u;

	if (shape < 1.0) {
		/* Boost: G(a) = G(a+1) * U^(1/a). */
		double g = pipar_rng_gamma(r, shape + 1.0);

		do
			u = pipar_rng_uniform(r);
		while (u <= 0.0);
		return g * pow(u, 1.0 / shape);
	}
	d = shape - 1.0 / 3.0;
	c = 1.0 / sqrt(9.0 * d);
	for (;;) {
		do {
			x = pipar_rng_normal(r);
			v = 1.0 + c * x;
		} while (v <= 0.0);
		v = v * v * v;
		u = pipar_rng_uniform(r);
		if (u < 1.0 - 0.0331 * x * x * x * x)
			return d * v;
		if (u > 0.0 && log(u) < 0.5 * x * x + d * (1.0 - v + log(v)))
			return d * v;
	}
}

void pipar_rng_shuffle(struct pipar_rng *r, int *a, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = pipar_rng_below(r, (uint32_t)i);
		int t = a[i - 1];

		a[i - 1] = a[j];
		a[j] = t;
	}
}

