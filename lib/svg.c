/* svg: what the programs that draw pictures share. */
#include "svg.h"

#include <math.h>

/* The length of the UTF-8 sequence at p that XML allows, 0 if it is not
 * one. */
int pipar_svg_utf8_len(const unsigned char *p)
{
	unsigned c = p[0], cp;
	int len;

	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	for (int i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe || cp == 0xffff)
		return 0;
	return len;
}

/* Writes s as XML text or attribute value: markup escaped; control
 * characters and bytes that are not UTF-8, which XML cannot hold, as '?'. */
void pipar_svg_text(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		int len = *p >= 0x80 ? pipar_svg_utf8_len(p) : 1;

		if (*p == '&')
			fputs("&amp;", f);
		else if (*p == '<')
			fputs("&lt;", f);
		else if (*p == '>')
			fputs("&gt;", f);
		else if (*p == '"')
			fputs("&quot;", f);
		else if (*p < 0x20 || *p == 0x7f || !len)
			fputc('?', f);
		else
			fwrite(p, 1, (size_t)len, f);
		p += len ? len : 1;
	}
}

double pipar_svg_tick(double span, int most)
{
	double raw, p, m;

	if (!(span > 0) || most < 1)
		return 1;
	raw = span / most;
	p = pow(10, floor(log10(raw)));
	m = raw / p;
	return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}
