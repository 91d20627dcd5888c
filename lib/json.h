/*
 * json: the first steps of reading a pipar JSON document, shared by every
 * reader (profile, plan, model spec, run summary, trace, checkpoint
 * manifest) so that each says the same thing about the same fault.
 *
 * Every pipar document is one JSON object whose "format" names its kind
 * and version ("pipar-profile/1").  pipar_json_parse() parses the text and
 * checks that format before any other field is looked at, so that a file
 * of the wrong kind is named as such instead of being refused for its
 * first unfamiliar field.  Its messages, one line each, name the file as
 * the user gave it:
 *
 *   'dev.json': not valid JSON (near byte 29)
 *   'plan.json' is a pipar-plan/1 file, expected pipar-profile/1
 *   'x.json' is not a pipar-profile/1 file (no "format" field)
 *   'x.json' is not a pipar-profile/1 file ("format" is not a pipar format)
 *   'x.json' is not a pipar-profile/1 file (not a JSON object)
 *
 * Writers add their numbers with pipar_json_add_fixed(), in fixed notation
 * to the precision the quantity has: seconds to the microsecond (6
 * decimals), byte counts and rates whole (0), losses and accuracies to 6
 * decimals; so that outputs say 0.000002 or 0, not 2e-06, 1.887e-15 or
 * 7.605530407000515.
 *
 * Who owns what: a parsed document is the caller's (cJSON_Delete); a
 * returned name or format points into the caller's strings or document
 * and lives as long as they do; an item added to an object belongs to
 * the object.
 */
#ifndef PIPAR_JSON_H
#define PIPAR_JSON_H

#include <cJSON.h>
#include <stddef.h>
#include <stdio.h>

/* The name messages give the file at path: "<stdin>" for "-", else path
 * itself (not copied). */
const char *pipar_json_name(const char *path);

/* Flags of pipar_json_parse. */
enum {
	/* A document without "format" is accepted (traces: trace-event JSON
	 * written by other programs has none); one that names another
	 * format is still refused. */
	PIPAR_JSON_FORMAT_OPTIONAL = 1,
};

/* Parses text (NUL-terminated) as one JSON value with nothing but white
 * space after it, and checks that it is an object whose "format" is kind
 * (e.g. "pipar-profile/1").  name is the file as the user gave it ("-"
 * is shown as '<stdin>'); part, when not NULL, is what is read inside that
 * file ("pipar.json" in a checkpoint: "'m.npz': pipar.json ..."); with
 * name NULL, part alone is the subject, unquoted ("model spec ...").
 * Returns the document, which the caller frees with cJSON_Delete, or NULL
 * with err (one of the messages above; running out of memory while
 * parsing is reported as text that is not valid JSON). */
cJSON *pipar_json_parse(const char *text, const char *name, const char *part,
			const char *kind, unsigned flags, char *err);

/* The pipar format a parsed document declares ("pipar-plan/1": a string
 * "pipar-" then lower-case letters, digits, '-' and '/'), pointing into
 * root; NULL when root is not an object or its "format" is missing or of
 * no pipar kind. */
const char *pipar_json_format(const cJSON *root);

/* Fills err with "'NAME' is a FOUND file, expected EXPECTED" (name as
 * pipar_json_name shows it) and returns -1: the one wording for a file of
 * one kind given where another is expected, for readers of formats that
 * are not JSON (a checkpoint given a plan). */
int pipar_json_kind_error(char *err, const char *name, const char *found,
			  const char *expected);

/* Reading a document's fields, one wording for every reader: each
 * refusal names the file and the field's path,
 *   'dev.json': field 'units[0].forward[0].median': -1 outside [0, 1e+09] (negative)
 * and returns -1 with c->err filled.  The value read goes to *out only
 * when it is accepted. */
struct pipar_json_ctx {
	const char *name;               /* the file as the user gave it, or NULL */
	char *err;
	const char *part;               /* what is read inside it, or NULL (as
					 * in pipar_json_parse) */
};

/* Whether v (NULL when the field is absent) is an acceptable number: a
 * finite number (or fixed text) in [lo, hi], and whole when whole is set.
 * 0 with *out set, or -1 with why (len bytes) saying what is wrong, in
 * the words every reader uses: "missing", "not a number", "-1 outside
 * [0, 1e+09] (negative)", "-1 is below 0" (hi infinite), "1.5 is not an
 * integer".  Readers whose messages name the place their own way (the
 * model spec by unit and layer, the run summary by epoch) put why in
 * them. */
int pipar_json_value(const cJSON *v, double lo, double hi, int whole, double *out,
		     char *why, size_t len);

/* "SUBJECT: field 'PATH': WHY", the subject as pipar_json_parse words
 * it; always -1. */
int pipar_json_bad(const struct pipar_json_ctx *c, const char *path, const char *why);
/* Item v (an array element, or NULL when absent) as pipar_json_value
 * accepts it, refused with pipar_json_bad naming path. */
int pipar_json_item(const cJSON *v, const char *path, double lo, double hi, int whole,
		    double *out, const struct pipar_json_ctx *c);
/* The number under key in o (written as a number or as fixed text), in
 * [lo, hi]; path names it in messages. */
int pipar_json_num(const cJSON *o, const char *key, const char *path, double lo, double hi,
		   double *out, const struct pipar_json_ctx *c);
/* The same, and an integer. */
int pipar_json_int(const cJSON *o, const char *key, const char *path, long lo, long hi,
		   long *out, const struct pipar_json_ctx *c);
/* The boolean under key. */
int pipar_json_bool(const cJSON *o, const char *key, const char *path, int *out,
		    const struct pipar_json_ctx *c);
/* The string under key, copied into buf of len bytes. */
int pipar_json_str(const cJSON *o, const char *key, const char *path, char *buf, size_t len,
		   const struct pipar_json_ctx *c);

/* The name of the first member of object o that is not in the
 * NULL-terminated list known, or NULL when all are known (each reader
 * words its own refusal, naming the field). */
const char *pipar_json_unknown_field(const cJSON *o, const char *const *known);

/* A number item for v with at most decimals (0..9) decimals, in fixed
 * notation with trailing zeros dropped (0.5, 12, 0.000002; -0 as 0), or
 * null for a non-finite v.  The caller owns the item (until it is added
 * to an object or array); NULL when out of memory. */
cJSON *pipar_json_fixed(double v, int decimals);

/* Adds pipar_json_fixed(v, decimals) to object o as name (o owns it);
 * returns the item, NULL when out of memory. */
cJSON *pipar_json_add_fixed(cJSON *o, const char *name, double v, int decimals);

/* The value of a number item, whether parsed (a number) or made by
 * pipar_json_fixed (fixed text); 0 when v is neither. */
int pipar_json_number(const cJSON *v, double *out);

/* Adds item to object o as name, placed right after the member named
 * after (at the end when o has none); o owns item.  Writers that extend
 * another module's object keep the order a reader expects.  0, or -1 when
 * out of memory (item is then freed). */
int pipar_json_insert_after(cJSON *o, const char *after, const char *name, cJSON *item);

/* Writes s to f as a JSON string literal, quotes included. */
void pipar_json_put_string(FILE *f, const char *s);

/* v rounded to the given number of decimals, for JSON outputs that should
 * say 0.000002 or 0, not 1.887e-15 (non-finite v is returned as it is).
 * Times are written to the microsecond (6), byte counts as integers (0). */
double pipar_json_round(double v, int decimals);

#endif
