/*
 * tensor: shape formatting and parsing.
 */
#include "tensor.h"

#include <stdio.h>

/* Largest side accepted by pipar_shape_parse(). */
#define SHAPE_MAX_SIDE 65536

/*
 * Writes the shape as "CxHxW" into buf (len bytes, always terminated when
 * len > 0, truncated if too short).
 */
void pipar_shape_str(struct pipar_shape s, char *buf, size_t len)
{
	if (!buf || len == 0)
		return;
	snprintf(buf, len, "%dx%dx%d", s.c, s.h, s.w);
}

/*
 * Parses "CxHxW", or "HxW" meaning 1xHxW, into *out.  Every side is a
 * decimal number from 1 to 65536 with no sign or spaces; anything after the
 * last number is an error.  Returns 0, or -1 (leaving *out untouched) if s
 * is malformed.
 */
int pipar_shape_parse(const char *s, struct pipar_shape *out)
{
	int v[3], n = 0;
	const char *p = s;

	if (!s || !out)
		return -1;
	for (;;) {
		long x = 0;

		if (*p < '0' || *p > '9')
			return -1;
		while (*p >= '0' && *p <= '9') {
			x = x * 10 + (*p - '0');
			if (x > SHAPE_MAX_SIDE)
				return -1;
			p++;
		}
		if (x == 0 || n == 3)
			return -1;
		v[n++] = (int)x;
		if (*p == '\0')
			break;
		if (*p != 'x')
			return -1;
		p++;
	}
	if (n == 2) {
		out->c = 1;
		out->h = v[0];
		out->w = v[1];
	} else if (n == 3) {
		out->c = v[0];
		out->h = v[1];
		out->w = v[2];
	} else {
		return -1;
	}
	return 0;
}
