/*
 * svg: what the programs that draw pictures share: XML-safe text and tick
 * intervals for axes.
 *
 * Who owns what: nothing is allocated here; the caller owns the stream
 * written to and every string passed in.
 */
#ifndef PIPAR_SVG_H
#define PIPAR_SVG_H

#include <stdio.h>

/* The length of the UTF-8 sequence at p that XML allows, 0 if it is not
 * one. */
int pipar_svg_utf8_len(const unsigned char *p);

/* Writes s as XML text or attribute value: markup escaped; control
 * characters and bytes that are not UTF-8, which XML cannot hold, as '?'. */
void pipar_svg_text(FILE *f, const char *s);

/* A tick interval of 1, 2 or 5 times a power of ten giving at most about
 * most ticks over span; 1 for an empty span. */
double pipar_svg_tick(double span, int most);

#endif
