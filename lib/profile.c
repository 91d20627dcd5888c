/*
 * Profiling: timing each split unit alone at several micro-batch sizes,
 * and the pipar-profile/1 JSON form.
 */
#define _POSIX_C_SOURCE 200809L
#include "profile.h"

#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "exec.h"
#include "model.h"
#include "pool.h"

void pipar_profile_default_sizes(struct pipar_profile_cfg *cfg)
{
	int n = 0, B = cfg->batch;
	int cand[PIPAR_PROFILE_MAXSIZES];

	if (cfg->nsizes)
		return;
	/* Powers of two below B, B/4, B/2 and B itself: the small sizes where
	 * fixed costs show and the large ones that training uses. */
	for (int s = 1; s < B && n < 20; s *= 2)
		cand[n++] = s;
	cand[n++] = B / 4 > 0 ? B / 4 : 1;
	cand[n++] = B / 2 > 0 ? B / 2 : 1;
	cand[n++] = B;
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			if (cand[j] < cand[i]) {
				int t = cand[i];

				cand[i] = cand[j];
				cand[j] = t;
			}
	for (int i = 0; i < n; i++)
		if (cfg->nsizes == 0 || cfg->sizes[cfg->nsizes - 1] != cand[i])
			cfg->sizes[cfg->nsizes++] = cand[i];
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static struct pipar_time summarise(double *t, int r, double scale)
{
	struct pipar_time s;

	qsort(t, (size_t)r, sizeof(double), cmp_double);
	s.median = (r % 2 ? t[r / 2] : 0.5 * (t[r / 2 - 1] + t[r / 2])) * scale;
	s.min = t[0] * scale;
	s.max = t[r - 1] * scale;
	return s;
}

/* The time at size n on the curve through the medians t[] at the k
 * ascending sizes: exact at every profiled size, a straight line between
 * two of them, the nearest segment extended beyond them (through zero
 * when there is one size), never below zero.  A curve and not one line
 * a + b n: a unit's cost per sample grows with the batch once its data
 * no longer stay in the caches, which no one line follows. */
static double curve(const int *sizes, const struct pipar_time *t, int k, int n)
{
	double v;
	int i = 1;

	if (k == 1)
		v = t[0].median * n / sizes[0];
	else {
		while (i < k - 1 && sizes[i] < n)
			i++;
		v = t[i - 1].median + (t[i].median - t[i - 1].median) * (n - sizes[i - 1]) /
					      (sizes[i] - sizes[i - 1]);
	}
	return v > 0 ? v : 0;
}

double pipar_profile_time(const struct pipar_profile *p, int u0, int u1, int n,
			  int backward)
{
	double t = 0;

	for (int u = u0; u < u1; u++)
		t += curve(p->sizes, backward ? p->units[u].bwd : p->units[u].fwd, p->nsizes, n);
	return t;
}

double pipar_profile_device_time(const struct pipar_profile *p, int P, int n, int backward)
{
	if (P <= 0)
		return 0;
	if (!p->stages)
		return pipar_profile_time(p, 0, P, n, backward);
	return curve(p->sizes, backward ? p->units[P - 1].sbwd : p->units[P - 1].sfwd, p->nsizes, n);
}

double pipar_profile_server_time(const struct pipar_profile *p, int P, int n)
{
	if (P >= p->nunits)
		return 0;
	if (!p->stages)
		return pipar_profile_time(p, P, p->nunits, n, 0) +
		       pipar_profile_time(p, P, p->nunits, n, 1);
	return curve(p->sizes, p->units[P].sfwd, p->nsizes, n) +
	       curve(p->sizes, p->units[P].sbwd, p->nsizes, n);
}

void pipar_profile_free(struct pipar_profile *p)
{
	if (!p)
		return;
	free(p->spec);
	free(p->units);
	free(p);
}

static void host_facts(struct pipar_profile *p)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[512];

	long n = sysconf(_SC_NPROCESSORS_ONLN);

	p->cores = n > 0 ? (int)n : 1;
	snprintf(p->cpu, sizeof(p->cpu), "unknown");
	while (f && fgets(line, sizeof(line), f)) {
		char *c = strchr(line, ':');

		if (strncmp(line, "model name", 10) == 0 && c) {
			c++;
			while (*c == ' ')
				c++;
			c[strcspn(c, "\n")] = '\0';
			snprintf(p->cpu, sizeof(p->cpu), "%s", c);
			break;
		}
	}
	if (f)
		fclose(f);
}

/* What a profiling run holds: each unit alone as a split model holds it,
 * with its workspace for the batch and an output gradient, and the times
 * of every repeat. */
struct bench {
	int L, B, R;
	struct pipar_model **um;
	struct pipar_exec **ue;
	float **dy;
	double *tf, *tb;                /* R x L forward and backward times */
	/* A server's stages: a second replica of every unit, and each
	 * unit's output for B samples (the next unit's input). */
	struct pipar_model **um2;
	struct pipar_exec **ue2;
	float **in2;
	size_t *osize;
};

/* Unit u alone: built, its workspace made, its sizes and costs noted. */
static int unit_setup(struct pipar_profile *p, struct bench *b, const char *spec,
		      const struct pipar_model *whole, int u, char *err)
{
	struct pipar_unit_profile *up = &p->units[u];
	size_t ob = pipar_shape_size(whole->units[u].out);
	struct pipar_exec *e1;
	int B = b->B;

	if (pipar_model_new(spec, p->in, p->classes, u, u, 1, &b->um[u], err) < 0 ||
	    !(b->ue[u] = pipar_exec_new(b->um[u], B, (uint64_t)u, err)) ||
	    !(e1 = pipar_exec_new(b->um[u], 1, 0, err)))
		return -1;
	if (!(b->dy[u] = pipar_alloc(sizeof(float) * ob * (size_t)B))) {
		pipar_exec_free(e1);
		return pipar_errf(err, "out of memory");
	}
	for (size_t i = 0; i < ob * (size_t)B; i++)
		b->dy[u][i] = (float)((i * 2654435761u) % 1000) * 2e-6f - 1e-3f;
	up->out_bytes = sizeof(float) * (double)ob;
	up->param_bytes = sizeof(float) * (double)b->um[u]->units[0].nstate;
	up->mem_per_sample = B > 1 ? ((double)b->ue[u]->bytes - (double)e1->bytes) / (B - 1) : 0;
	up->mem_fixed = (double)e1->bytes - up->mem_per_sample +
			sizeof(float) * (double)(b->um[u]->units[0].nstate + 2 * b->um[u]->units[0].ntrain);
	up->flops_fwd = pipar_model_unit_flops(b->um[u], 0, 0);
	up->flops_bwd = pipar_model_unit_flops(b->um[u], 0, 1);
	pipar_exec_free(e1);
	return 0;
}

/* Size s: forward through every unit, the loss, backward, R times after
 * one untimed round (caches, pages and the pool warm up). */
static void time_size(struct pipar_profile *p, struct bench *b, int s, const float *x,
		      const int *labels)
{
	int n = p->sizes[s], L = b->L, R = b->R;

	for (int rep = -1; rep < R; rep++) {
		const float *a = x;

		for (int u = 0; u < L; u++) {
			double t0 = pipar_now();

			a = pipar_exec_forward(b->ue[u], a, n, 1);
			/* The loss belongs to the last unit's forward. */
			if (u == L - 1)
				pipar_softmax_xent(a, labels, n, p->classes, 1.0f / n, b->dy[u], NULL);
			if (rep >= 0)
				b->tf[rep * L + u] = pipar_now() - t0;
		}
		for (int u = L - 1; u >= 0; u--) {
			double t0 = pipar_now();

			pipar_exec_backward(b->ue[u], b->dy[u], u > 0);
			if (rep >= 0)
				b->tb[rep * L + u] = pipar_now() - t0;
		}
	}
	for (int u = 0; u < L; u++) {
		double vf[R], vb[R];

		for (int rep = 0; rep < R; rep++) {
			vf[rep] = b->tf[rep * L + u];
			vb[rep] = b->tb[rep * L + u];
		}
		p->units[u].fwd[s] = summarise(vf, R, p->slowdown);
		p->units[u].bwd[s] = summarise(vb, R, p->slowdown);
	}
}

/* The forward passes of units [u0, u1) on x (n samples), with the loss
 * when u1 is the last unit; the last output. */
static const float *forward_part(struct pipar_exec **ue, float **dy, int u0, int u1, int L,
				 const float *x, int n, const int *labels, int classes)
{
	for (int u = u0; u < u1; u++) {
		x = pipar_exec_forward(ue[u], x, n, 1);
		if (u == L - 1)
			pipar_softmax_xent(x, labels, n, classes, 1.0f / n, dy[u], NULL);
	}
	return x;
}

/* Their backward passes, from u1 - 1 down to u0, with the gradient of the
 * input for every unit but the model's first. */
static void backward_part(struct pipar_exec **ue, float **dy, int u0, int u1)
{
	for (int u = u1 - 1; u >= u0; u--)
		pipar_exec_backward(ue[u], dy[u], u > 0);
}

/* Size s on a device: the device part through unit P, for every P,
 * timed as pipar-device computes it.  A stage is the forward passes of
 * units 1..P back to back (with the loss when P is the whole model), or
 * their backward passes; it is paced as the device paces it
 * (pipar_pace), lasting slowdown times the least processor time it has
 * taken, so that each stage starts after a pause, as in a run.  Its time
 * is wall time, sleep included: what the device's stage takes. */
static void time_stages(struct pipar_profile *p, struct bench *b, int s, const float *x,
			const int *labels)
{
	int n = p->sizes[s], L = b->L, R = b->R;

	for (int P = 1; P <= L; P++) {
		/* The least processor time of each stage so far, as the
		 * device paces its stages by it. */
		double bestf = 0, bestb = 0;

		/* No untimed round: the units' rounds at this size warmed
		 * what a round warms, and a stage is to start cold. */
		for (int rep = 0; rep < R; rep++) {
			double t0 = pipar_now(), c0 = pipar_cpu_seconds(), tf;

			forward_part(b->ue, b->dy, 0, P, L, x, n, labels, p->classes);
			pipar_pace(p->slowdown, t0, c0, &bestf);
			tf = pipar_now() - t0;
			t0 = pipar_now();
			c0 = pipar_cpu_seconds();
			backward_part(b->ue, b->dy, 0, P);
			pipar_pace(p->slowdown, t0, c0, &bestb);
			b->tf[rep] = tf;
			b->tb[rep] = pipar_now() - t0;
		}
		p->units[P - 1].sfwd[s] = summarise(b->tf, R, 1);
		p->units[P - 1].sbwd[s] = summarise(b->tb, R, 1);
	}
}

/* The server part from unit P on (P = 1..L-1; 0, the whole model, only so
 * that every unit has stages): its forward passes and the loss, then its
 * backward passes down to the gradient of its input. */
static void server_job(struct pipar_exec **ue, float **dy, int P, int L, const float *x, int n,
		       const int *labels, int classes, double *tf, double *tb)
{
	double t0 = pipar_now();

	forward_part(ue, dy, P, L, L, x, n, labels, classes);
	*tf = pipar_now() - t0;
	t0 = pipar_now();
	backward_part(ue, dy, P, L);
	*tb = pipar_now() - t0;
}

/* Size s on the server: the server part from every unit P on, timed as
 * pipar-serve computes it for a device, each time just after the same job
 * for another device (the second replica b->um2), since the server serves
 * the devices in turn, one replica each, and a device's job finds the
 * caches holding another's.  The input of unit P is the output the units
 * before it make of x. */
static void time_server_stages(struct pipar_profile *p, struct bench *b, int s, const float *x,
			       const int *labels)
{
	int n = p->sizes[s], L = b->L, R = b->R;
	const float *in = x;

	for (int P = 0; P < L; P++) {
		for (int rep = 0; rep < R; rep++) {
			double f2, b2;

			server_job(b->ue2, b->dy, P, L, in, n, labels, p->classes, &f2, &b2);
			server_job(b->ue, b->dy, P, L, in, n, labels, p->classes, &b->tf[rep],
				   &b->tb[rep]);
		}
		p->units[P].sfwd[s] = summarise(b->tf, R, p->slowdown);
		p->units[P].sbwd[s] = summarise(b->tb, R, p->slowdown);
		/* The next part's input: this unit's output, in its own buffer
		 * (the exec's own is overwritten by the next job). */
		in = pipar_exec_forward(b->ue2[P], in, n, 1);
		memcpy(b->in2[P], in, sizeof(float) * b->osize[P] * (size_t)n);
		in = b->in2[P];
	}
}

/* Each unit's optimizer step, R times. */
static void time_steps(struct pipar_profile *p, struct bench *b)
{
	struct pipar_sgd sgd = {0.01f, 0.9f, 0};

	for (int u = 0; u < b->L; u++) {
		double t[b->R];

		for (int rep = 0; rep < b->R; rep++) {
			double t0 = pipar_now();

			pipar_model_sgd_step(b->um[u], &sgd);
			t[rep] = pipar_now() - t0;
		}
		p->units[u].step = summarise(t, b->R, p->slowdown).median;
	}
}

int pipar_profile_run(const char *spec, struct pipar_shape in, int classes,
		      const float *x, const int *labels,
		      const struct pipar_profile_cfg *cfg,
		      struct pipar_profile **out, char *err)
{
	struct pipar_profile *p = calloc(1, sizeof(*p));
	struct pipar_model *whole = NULL;
	struct bench b = {.B = cfg->batch, .R = cfg->repeat};
	int L = 0, r = -1, server;

	*out = NULL;
	if (!p)
		return pipar_errf(err, "out of memory");
	if (pipar_model_new(spec, in, classes, 0, -1, 1, &whole, err) < 0)
		goto out;
	b.L = L = whole->nunits;
	snprintf(p->role, sizeof(p->role), "%s", cfg->role);
	snprintf(p->model_name, sizeof(p->model_name), "%s", whole->name);
	p->spec = strdup(whole->spec);
	p->in = in;
	p->classes = classes;
	p->batch = b.B;
	p->nsizes = cfg->nsizes;
	memcpy(p->sizes, cfg->sizes, sizeof(p->sizes));
	p->nunits = L;
	p->repeat = b.R;
	p->threads = pipar_threads();
	p->slowdown = cfg->slowdown;
	p->units = calloc((size_t)L, sizeof(*p->units));
	b.um = calloc((size_t)L, sizeof(*b.um));
	b.ue = calloc((size_t)L, sizeof(*b.ue));
	b.dy = calloc((size_t)L, sizeof(*b.dy));
	b.tf = malloc(sizeof(double) * (size_t)b.R * (size_t)L);
	b.tb = malloc(sizeof(double) * (size_t)b.R * (size_t)L);
	if (!p->spec || !p->units || !b.um || !b.ue || !b.dy || !b.tf || !b.tb) {
		pipar_errf(err, "out of memory");
		goto out;
	}
	host_facts(p);
	for (int u = 0; u < L; u++)
		if (unit_setup(p, &b, spec, whole, u, err) < 0)
			goto out;
	p->stages = cfg->stages;
	server = strcmp(cfg->role, "server") == 0;
	if (p->stages && server) {
		b.um2 = calloc((size_t)L, sizeof(*b.um2));
		b.ue2 = calloc((size_t)L, sizeof(*b.ue2));
		b.in2 = calloc((size_t)L, sizeof(*b.in2));
		b.osize = calloc((size_t)L, sizeof(*b.osize));
		if (!b.um2 || !b.ue2 || !b.in2 || !b.osize) {
			pipar_errf(err, "out of memory");
			goto out;
		}
		for (int u = 0; u < L; u++) {
			b.osize[u] = pipar_shape_size(whole->units[u].out);
			if (pipar_model_new(spec, in, classes, u, u, 2, &b.um2[u], err) < 0 ||
			    !(b.ue2[u] = pipar_exec_new(b.um2[u], b.B, (uint64_t)(L + u), err)))
				goto out;
			if (!(b.in2[u] = pipar_alloc(sizeof(float) * b.osize[u] * (size_t)b.B))) {
				pipar_errf(err, "out of memory");
				goto out;
			}
		}
	}
	for (int s = 0; s < p->nsizes; s++) {
		time_size(p, &b, s, x, labels);
		if (p->stages && server)
			time_server_stages(p, &b, s, x, labels);
		else if (p->stages)
			time_stages(p, &b, s, x, labels);
	}
	time_steps(p, &b);
	r = 0;
out:
	for (int u = 0; whole && u < whole->nunits; u++) {
		if (b.ue)
			pipar_exec_free(b.ue[u]);
		if (b.um)
			pipar_model_free(b.um[u]);
		if (b.dy)
			free(b.dy[u]);
	}
	for (int u = 0; b.um2 && u < L; u++) {
		pipar_exec_free(b.ue2[u]);
		pipar_model_free(b.um2[u]);
		free(b.in2[u]);
	}
	free(b.um2);
	free(b.ue2);
	free(b.in2);
	free(b.osize);
	free(b.um);
	free(b.ue);
	free(b.dy);
	free(b.tf);
	free(b.tb);
	pipar_model_free(whole);
	if (r < 0)
		pipar_profile_free(p);
	else
		*out = p;
	return r;
}

/* ---------------------------------------------------------------- JSON */

/* Times are written to the nanosecond, not the microsecond of the other
 * outputs: a small unit at one sample takes well under a microsecond, and
 * the planner adds up many of them. */
#define TIME_DECIMALS 9

static cJSON *time_obj(const struct pipar_time *t)
{
	cJSON *o = cJSON_CreateObject();

	pipar_json_add_fixed(o, "median", t->median, TIME_DECIMALS);
	pipar_json_add_fixed(o, "min", t->min, TIME_DECIMALS);
	pipar_json_add_fixed(o, "max", t->max, TIME_DECIMALS);
	return o;
}

/* o[key]: one time object per size. */
static void times_array(cJSON *o, const char *key, const struct pipar_time *t, int n)
{
	cJSON *a = cJSON_AddArrayToObject(o, key);

	for (int s = 0; s < n; s++)
		cJSON_AddItemToArray(a, time_obj(&t[s]));
}

int pipar_profile_write(FILE *f, const struct pipar_profile *p)
{
	cJSON *root = cJSON_CreateObject(), *o, *units;
	char *text;
	int r;

	cJSON_AddStringToObject(root, "format", "pipar-profile/1");
	cJSON_AddStringToObject(root, "role", p->role);
	o = cJSON_AddObjectToObject(root, "host");
	cJSON_AddStringToObject(o, "cpu", p->cpu);
	cJSON_AddNumberToObject(o, "cores", p->cores);
	cJSON_AddNumberToObject(o, "threads", p->threads);
	cJSON_AddNumberToObject(root, "slowdown", p->slowdown);
	cJSON_AddNumberToObject(root, "repeat", p->repeat);
	cJSON_AddStringToObject(root, "model_name", p->model_name);
	cJSON_AddItemToObject(root, "model", cJSON_Parse(p->spec));
	o = cJSON_AddArrayToObject(root, "input");
	cJSON_AddItemToArray(o, cJSON_CreateNumber(p->in.c));
	cJSON_AddItemToArray(o, cJSON_CreateNumber(p->in.h));
	cJSON_AddItemToArray(o, cJSON_CreateNumber(p->in.w));
	cJSON_AddNumberToObject(root, "classes", p->classes);
	cJSON_AddStringToObject(root, "data", p->data);
	cJSON_AddNumberToObject(root, "data_samples", (double)p->data_samples);
	cJSON_AddNumberToObject(root, "batch", p->batch);
	o = cJSON_AddArrayToObject(root, "sizes");
	for (int s = 0; s < p->nsizes; s++)
		cJSON_AddItemToArray(o, cJSON_CreateNumber(p->sizes[s]));
	units = cJSON_AddArrayToObject(root, "units");
	for (int u = 0; u < p->nunits; u++) {
		const struct pipar_unit_profile *up = &p->units[u];
		cJSON *uo = cJSON_CreateObject();

		cJSON_AddNumberToObject(uo, "unit", u + 1);
		times_array(uo, "forward", up->fwd, p->nsizes);
		times_array(uo, "backward", up->bwd, p->nsizes);
		if (p->stages) {
			times_array(uo, "stage_forward", up->sfwd, p->nsizes);
			times_array(uo, "stage_backward", up->sbwd, p->nsizes);
		}
		pipar_json_add_fixed(uo, "step_seconds", up->step, TIME_DECIMALS);
		pipar_json_add_fixed(uo, "output_bytes_per_sample", up->out_bytes, 0);
		pipar_json_add_fixed(uo, "parameter_bytes", up->param_bytes, 0);
		/* Whole bytes, rounded up: memory is a limit the plan must keep. */
		pipar_json_add_fixed(uo, "memory_fixed_bytes", ceil(up->mem_fixed), 0);
		pipar_json_add_fixed(uo, "memory_bytes_per_sample", ceil(up->mem_per_sample), 0);
		pipar_json_add_fixed(uo, "flops_forward_per_sample", up->flops_fwd, 0);
		pipar_json_add_fixed(uo, "flops_backward_per_sample", up->flops_bwd, 0);
		cJSON_AddItemToArray(units, uo);
	}
	text = cJSON_Print(root);
	cJSON_Delete(root);
	if (!text)
		return -1;
	r = fputs(text, f) < 0 || fputc('\n', f) == EOF ? -1 : 0;
	free(text);
	return r;
}

/* Field access with messages that name the path (json.h). */
static int get_str(const cJSON *o, const char *key, char *buf, size_t len,
		   const struct pipar_json_ctx *c)
{
	return pipar_json_str(o, key, key, buf, len, c);
}

static int get_time(const cJSON *arr, int s, const char *what, int u,
		    struct pipar_time *t, const struct pipar_json_ctx *c)
{
	const cJSON *o = cJSON_GetArrayItem(arr, s);
	char path[96];

	snprintf(path, sizeof(path), "units[%d].%s[%d].median", u, what, s);
	if (!cJSON_IsObject(o))
		return pipar_json_bad(c, path, "missing");
	if (pipar_json_num(o, "median", path, 0, 1e9, &t->median, c))
		return -1;
	snprintf(path, sizeof(path), "units[%d].%s[%d].min", u, what, s);
	if (pipar_json_num(o, "min", path, 0, 1e9, &t->min, c))
		return -1;
	snprintf(path, sizeof(path), "units[%d].%s[%d].max", u, what, s);
	if (pipar_json_num(o, "max", path, 0, 1e9, &t->max, c))
		return -1;
	if (t->min > t->median || t->median > t->max) {
		snprintf(path, sizeof(path), "units[%d].%s[%d]", u, what, s);
		return pipar_json_bad(c, path, "min <= median <= max does not hold");
	}
	return 0;
}

/* Unit u's arrays fkey and bkey: one time object per size each, into
 * f and b. */
static int get_times(const cJSON *uo, const char *fkey, const char *bkey, int u, int nsizes,
		     struct pipar_time *f, struct pipar_time *b, const struct pipar_json_ctx *c)
{
	const cJSON *fw = cJSON_GetObjectItemCaseSensitive(uo, fkey);
	const cJSON *bw = cJSON_GetObjectItemCaseSensitive(uo, bkey);

	if (!cJSON_IsArray(fw) || cJSON_GetArraySize(fw) != nsizes || !cJSON_IsArray(bw) ||
	    cJSON_GetArraySize(bw) != nsizes) {
		char path[96];

		snprintf(path, sizeof(path), "units[%d].%s", u, fkey);
		return pipar_json_bad(c, path, "needs one time per size, forward and backward");
	}
	for (int s = 0; s < nsizes; s++)
		if (get_time(fw, s, fkey, u, &f[s], c) || get_time(bw, s, bkey, u, &b[s], c))
			return -1;
	return 0;
}

/* The profile's fields other than its units. */
static int profile_fields(const cJSON *root, struct pipar_profile *p, const struct pipar_json_ctx *cc)
{
	const struct pipar_json_ctx c = *cc;
	const cJSON *v, *arr;
	double d;

	if (get_str(root, "role", p->role, sizeof(p->role), &c))
		return -1;
	if (strcmp(p->role, "device") && strcmp(p->role, "server")) {
		pipar_json_bad(&c, "role", "not \"device\" or \"server\"");
		return -1;
	}
	v = cJSON_GetObjectItemCaseSensitive(root, "host");
	if (!cJSON_IsObject(v)) {
		pipar_json_bad(&c, "host", "missing or not an object");
		return -1;
	}
	if (get_str(v, "cpu", p->cpu, sizeof(p->cpu), &c) ||
	    pipar_json_num(v, "cores", "host.cores", 0, 1e6, &d, &c))
		return -1;
	p->cores = (int)d;
	if (pipar_json_num(v, "threads", "host.threads", 1, 1e6, &d, &c))
		return -1;
	p->threads = (int)d;
	if (pipar_json_num(root, "slowdown", "slowdown", 1e-6, 1e6, &p->slowdown, &c) ||
	    pipar_json_num(root, "repeat", "repeat", 1, 1e6, &d, &c))
		return -1;
	p->repeat = (int)d;
	if (get_str(root, "model_name", p->model_name, sizeof(p->model_name), &c) ||
	    get_str(root, "data", p->data, sizeof(p->data), &c))
		return -1;
	v = cJSON_GetObjectItemCaseSensitive(root, "model");
	if (!cJSON_IsObject(v)) {
		pipar_json_bad(&c, "model", "missing or not an object");
		return -1;
	}
	p->spec = cJSON_PrintUnformatted(v);
	if (!p->spec)
		return pipar_errf(c.err, "out of memory");
	v = cJSON_GetObjectItemCaseSensitive(root, "input");
	if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 3) {
		pipar_json_bad(&c, "input", "not [C, H, W]");
		return -1;
	}
	{
		int dims[3];

		for (int i = 0; i < 3; i++) {
			char path[32];
			double x;

			snprintf(path, sizeof(path), "input[%d]", i);
			if (pipar_json_item(cJSON_GetArrayItem(v, i), path, 1, 65536, 1, &x, &c) < 0)
				return -1;
			dims[i] = (int)x;
		}
		p->in = (struct pipar_shape){dims[0], dims[1], dims[2]};
	}
	if (pipar_json_num(root, "classes", "classes", 1, 1 << 20, &d, &c))
		return -1;
	p->classes = (int)d;
	if (pipar_json_num(root, "data_samples", "data_samples", 0, 1e12, &d, &c))
		return -1;
	p->data_samples = (long)d;
	if (pipar_json_num(root, "batch", "batch", 1, 1 << 20, &d, &c))
		return -1;
	p->batch = (int)d;
	arr = cJSON_GetObjectItemCaseSensitive(root, "sizes");
	if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) < 1 ||
	    cJSON_GetArraySize(arr) > PIPAR_PROFILE_MAXSIZES) {
		pipar_json_bad(&c, "sizes", "not an array of 1 to 32 sizes");
		return -1;
	}
	p->nsizes = cJSON_GetArraySize(arr);
	for (int s = 0; s < p->nsizes; s++) {
		char path[32];
		double x;

		snprintf(path, sizeof(path), "sizes[%d]", s);
		if (pipar_json_item(cJSON_GetArrayItem(arr, s), path, s ? p->sizes[s - 1] + 1 : 1,
				    1 << 20, 1, &x, &c) < 0)
			return -1;
		p->sizes[s] = (int)x;
	}
	return 0;
}

/* The profile's units: times per size, forward and backward, and the
 * unit's sizes and costs. */
static int profile_units(const cJSON *root, struct pipar_profile *p, const struct pipar_json_ctx *cc)
{
	const struct pipar_json_ctx c = *cc;
	const cJSON *arr;

	arr = cJSON_GetObjectItemCaseSensitive(root, "units");
	if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) < 1 || cJSON_GetArraySize(arr) > 4096) {
		pipar_json_bad(&c, "units", "not a non-empty array");
		return -1;
	}
	p->nunits = cJSON_GetArraySize(arr);
	p->units = calloc((size_t)p->nunits, sizeof(*p->units));
	if (!p->units)
		return pipar_errf(c.err, "out of memory");
	for (int u = 0; u < p->nunits; u++) {
		const cJSON *uo = cJSON_GetArrayItem(arr, u), *fw, *bw;
		struct pipar_unit_profile *up = &p->units[u];
		char path[96];

		snprintf(path, sizeof(path), "units[%d]", u);
		if (!cJSON_IsObject(uo)) {
			pipar_json_bad(&c, path, "not an object");
			return -1;
		}
		if (get_times(uo, "forward", "backward", u, p->nsizes, up->fwd, up->bwd, &c) < 0)
			return -1;
		/* Stages: in every unit of a profile or in none. */
		fw = cJSON_GetObjectItemCaseSensitive(uo, "stage_forward");
		bw = cJSON_GetObjectItemCaseSensitive(uo, "stage_backward");
		if (u == 0)
			p->stages = fw || bw;
		if (!fw != !p->stages || !bw != !p->stages) {
			const char *odd = !fw != !p->stages ? "stage_forward" : "stage_backward";

			snprintf(path, sizeof(path), "units[%d].%s", u, odd);
			pipar_json_bad(&c, path, p->stages ? "missing (stages are in every unit or in none)"
							   : "unexpected (stages are in every unit or in none)");
			return -1;
		}
		if (p->stages && get_times(uo, "stage_forward", "stage_backward", u, p->nsizes, up->sfwd,
					   up->sbwd, &c) < 0)
			return -1;
#define UNUM(key, field, hi)                                                   \
	do {                                                                   \
		snprintf(path, sizeof(path), "units[%d]." key, u);             \
		if (pipar_json_num(uo, key, path, 0, hi, &up->field, &c))             \
			return -1;                                             \
	} while (0)
		UNUM("step_seconds", step, 1e9);
		UNUM("output_bytes_per_sample", out_bytes, 1e15);
		UNUM("parameter_bytes", param_bytes, 1e15);
		UNUM("memory_fixed_bytes", mem_fixed, 1e15);
		UNUM("memory_bytes_per_sample", mem_per_sample, 1e15);
		UNUM("flops_forward_per_sample", flops_fwd, 1e18);
		UNUM("flops_backward_per_sample", flops_bwd, 1e18);
#undef UNUM
	}
	return 0;
}

int pipar_profile_parse(const char *text, const char *name,
			struct pipar_profile **out, char *err)
{
	static const char *const known[] = {
		"format", "role", "host", "slowdown", "repeat", "model_name", "model",
		"input", "classes", "data", "data_samples", "batch", "sizes", "units", NULL,
	};
	struct pipar_json_ctx c = {name, err, NULL};
	cJSON *root = pipar_json_parse(text, name, NULL, "pipar-profile/1", 0, err);
	struct pipar_profile *p = NULL;
	const char *unknown;

	*out = NULL;
	if (!root)
		return -1;
	p = calloc(1, sizeof(*p));
	if (!p) {
		pipar_errf(err, "out of memory");
		goto fail;
	}
	if ((unknown = pipar_json_unknown_field(root, known))) {
		pipar_json_bad(&c, unknown, "unknown field");
		goto fail;
	}
	if (profile_fields(root, p, &c) < 0 || profile_units(root, p, &c) < 0)
		goto fail;
	cJSON_Delete(root);
	*out = p;
	return 0;
fail:
	cJSON_Delete(root);
	pipar_profile_free(p);
	return -1;
}
