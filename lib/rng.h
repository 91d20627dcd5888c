/*
 * rng: a small, seedable generator (xoshiro128-style state mixed with
 * splitmix64), so that every run with the same seed draws the same
 * numbers on every machine, independent of libc.
 *
 * Who owns what: the state is a plain value the caller holds; copy it to
 * fork a stream.
 */
#ifndef PIPAR_RNG_H
#define PIPAR_RNG_H

#include <stddef.h>
#include <stdint.h>

/* Seeded generator.  The state is a plain value: copy it to fork a stream. */
struct pipar_rng {
	uint64_t s[2];
};

void pipar_rng_seed(struct pipar_rng *r, uint64_t seed, uint64_t stream);
uint64_t pipar_rng_next(struct pipar_rng *r);
/* Uniform in [0, 1). */
double pipar_rng_uniform(struct pipar_rng *r);
/* Standard normal (Box-Muller). */
double pipar_rng_normal(struct pipar_rng *r);
/* Uniform integer in [0, n). */
uint32_t pipar_rng_below(struct pipar_rng *r, uint32_t n);
/* Gamma(shape, 1) by Marsaglia and Tsang's method. */
double pipar_rng_gamma(struct pipar_rng *r, double shape);
/* Fisher-Yates shuffle of an int array. */
void pipar_rng_shuffle(struct pipar_rng *r, int *a, size_t n);

#endif
