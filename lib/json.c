#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

const char *pipar_json_name(const char *path)
{
	return path && strcmp(path, "-") == 0 ? "<stdin>" : path;
}

const char *pipar_json_format(const cJSON *root)
{
	const cJSON *f = cJSON_IsObject(root) ?
			 cJSON_GetObjectItemCaseSensitive(root, "format") : NULL;
	const char *s;
	size_t n;

	if (!cJSON_IsString(f) || strncmp(f->valuestring, "pipar-", 6) != 0)
		return NULL;
	s = f->valuestring;
	n = strlen(s);
	/* Only a name fit to be quoted in a one-line message. */
	if (n > 40 || strspn(s + 6, "abcdefghijklmnopqrstuvwxyz0123456789-/") != n - 6 ||
	    n == 6)
		return NULL;
	return s;
}

int pipar_json_kind_error(char *err, const char *name, const char *found,
			  const char *expected)
{
	return pipar_errf(err, "'%s' is a %s file, expected %s", pipar_json_name(name),
			  found, expected);
}

/* The subject of a message: 'name', 'name': part, or part. */
static void subject(char *buf, size_t size, const char *name, const char *part)
{
	if (name && part)
		snprintf(buf, size, "'%s': %s", pipar_json_name(name), part);
	else if (name)
		snprintf(buf, size, "'%s'", pipar_json_name(name));
	else
		snprintf(buf, size, "%s", part ? part : "document");
}

cJSON *pipar_json_parse(const char *text, const char *name, const char *part,
			const char *kind, unsigned flags, char *err)
{
	const char *end = NULL, *found;
	cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
	const cJSON *f;
	char who[PIPAR_ERRLEN / 2];

	subject(who, sizeof(who), name, part);
	if (!root) {
		pipar_errf(err, "%s: not valid JSON (near byte %ld)", who,
			   end ? (long)(end - text) : 0L);
		return NULL;
	}
	if (!cJSON_IsObject(root)) {
		pipar_errf(err, "%s is not a %s file (not a JSON object)", who, kind);
		goto fail;
	}
	f = cJSON_GetObjectItemCaseSensitive(root, "format");
	found = pipar_json_format(root);
	if (found && strcmp(found, kind) == 0)
		return root;
	if (found)
		pipar_errf(err, "%s is a %s file, expected %s", who, found, kind);
	else if (!f && (flags & PIPAR_JSON_FORMAT_OPTIONAL))
		return root;
	else if (!f)
		pipar_errf(err, "%s is not a %s file (no \"format\" field)", who, kind);
	else
		pipar_errf(err, "%s is not a %s file (\"format\" is not a pipar format)", who,
			   kind);
fail:
	cJSON_Delete(root);
	return NULL;
}

const char *pipar_json_unknown_field(const cJSON *o, const char *const *known)
{
	for (const cJSON *f = o ? o->child : NULL; f; f = f->next) {
		const char *const *k = known;

		while (*k && (!f->string || strcmp(*k, f->string)))
			k++;
		if (!*k)
			return f->string ? f->string : "";
	}
	return NULL;
}

cJSON *pipar_json_fixed(double v, int decimals)
{
	char buf[400];
	size_t n;

	if (!isfinite(v))
		return cJSON_CreateNull();
	if (decimals < 0)
		decimals = 0;
	if (decimals > 9)
		decimals = 9;
	/* %f of a finite double needs at most 309 digits before the point. */
	n = (size_t)snprintf(buf, sizeof(buf), "%.*f", decimals, v);
	if (decimals > 0) {
		while (buf[n - 1] == '0')
			buf[--n] = 0;
		if (buf[n - 1] == '.')
			buf[--n] = 0;
	}
	if (strcmp(buf, "-0") == 0)
		strcpy(buf, "0");
	return cJSON_CreateRaw(buf);
}

cJSON *pipar_json_add_fixed(cJSON *o, const char *name, double v, int decimals)
{
	cJSON *x = pipar_json_fixed(v, decimals);

	if (x && !cJSON_AddItemToObject(o, name, x)) {
		cJSON_Delete(x);
		return NULL;
	}
	return x;
}

int pipar_json_insert_after(cJSON *o, const char *after, const char *name, cJSON *item)
{
	if (!item || !cJSON_AddItemToObject(o, name, item)) {
		cJSON_Delete(item);
		return -1;
	}
	for (cJSON *c = o->child; c; c = c->next)
		if (c->string && strcmp(c->string, after) == 0) {
			if (c->next == item)
				break;  /* already there */
			/* Relinked by the fields cJSON documents: the child list is
			 * doubly linked, its head's prev the last member (which
			 * stays the last). */
			cJSON_DetachItemViaPointer(o, item);
			item->prev = c;
			item->next = c->next;
			c->next->prev = item;
			c->next = item;
			break;
		}
	return 0;
}

int pipar_json_number(const cJSON *v, double *out)
{
	char *end;

	if (cJSON_IsNumber(v)) {
		*out = v->valuedouble;
		return 1;
	}
	if (cJSON_IsRaw(v) && v->valuestring) {
		*out = strtod(v->valuestring, &end);
		return end != v->valuestring && *end == '\0';
	}
	return 0;
}

void pipar_json_put_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

double pipar_json_round(double v, int decimals)
{
	double q = pow(10, decimals), r;

	if (!isfinite(v) || fabs(v) >= 1e15)
		return v;
	r = nearbyint(v * q) / q;
	return r == 0 ? 0 : r;          /* no -0 */
}

int pipar_json_bad(const struct pipar_json_ctx *c, const char *path, const char *why)
{
	char who[PIPAR_ERRLEN / 2];

	subject(who, sizeof(who), c->name, c->part);
	return pipar_errf(c->err, "%s: field '%s': %s", who, path, why);
}

int pipar_json_value(const cJSON *v, double lo, double hi, int whole, double *out,
		     char *why, size_t len)
{
	double d;

	if (!v) {
		snprintf(why, len, "missing");
		return -1;
	}
	if (!pipar_json_number(v, &d) || !isfinite(d)) {
		snprintf(why, len, "not a number");
		return -1;
	}
	if (d < lo || d > hi) {
		if (isinf(hi))
			snprintf(why, len, "%g is below %g", d, lo);
		else
			snprintf(why, len, "%g outside [%g, %g]%s", d, lo, hi,
				 d < 0 && lo >= 0 ? " (negative)" : "");
		return -1;
	}
	if (whole && d != floor(d)) {
		snprintf(why, len, "%g is not an integer", d);
		return -1;
	}
	*out = d;
	return 0;
}

int pipar_json_item(const cJSON *v, const char *path, double lo, double hi, int whole,
		    double *out, const struct pipar_json_ctx *c)
{
	char why[96];

	if (pipar_json_value(v, lo, hi, whole, out, why, sizeof(why)) < 0)
		return pipar_json_bad(c, path, why);
	return 0;
}

int pipar_json_num(const cJSON *o, const char *key, const char *path, double lo, double hi,
		   double *out, const struct pipar_json_ctx *c)
{
	return pipar_json_item(cJSON_GetObjectItemCaseSensitive(o, key), path, lo, hi, 0, out, c);
}

int pipar_json_int(const cJSON *o, const char *key, const char *path, long lo, long hi,
		   long *out, const struct pipar_json_ctx *c)
{
	double d = 0;

	if (pipar_json_item(cJSON_GetObjectItemCaseSensitive(o, key), path, (double)lo,
			    (double)hi, 1, &d, c) < 0)
		return -1;
	*out = (long)d;
	return 0;
}

int pipar_json_bool(const cJSON *o, const char *key, const char *path, int *out,
		    const struct pipar_json_ctx *c)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!cJSON_IsBool(v))
		return pipar_json_bad(c, path, v ? "not true or false" : "missing");
	*out = cJSON_IsTrue(v);
	return 0;
}

int pipar_json_str(const cJSON *o, const char *key, const char *path, char *buf, size_t len,
		   const struct pipar_json_ctx *c)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!cJSON_IsString(v))
		return pipar_json_bad(c, path, "missing or not a string");
	if (strlen(v->valuestring) >= len)
		return pipar_json_bad(c, path, "too long");
	strcpy(buf, v->valuestring);
	return 0;
}
