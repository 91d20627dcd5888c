#define _POSIX_C_SOURCE 200809L
#include "trace.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

struct event {
	const char *stage;              /* a string literal */
	int res, iteration, micro, device;
	double start, dur;
};

struct pipar_trace {
	pthread_mutex_t mu;
	int pid;
	char name[64];
	double offset;
	struct event *ev;
	size_t n, cap;
	double busy[4];
};

struct pipar_trace *pipar_trace_new(int pid, const char *name)
{
	struct pipar_trace *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	pthread_mutex_init(&t->mu, NULL);
	t->pid = pid;
	snprintf(t->name, sizeof(t->name), "%s", name);
	return t;
}

void pipar_trace_set_offset(struct pipar_trace *t, double offset)
{
	if (t)
		t->offset = offset;
}

void pipar_trace_event(struct pipar_trace *t, const char *stage,
		       enum pipar_resource res, double start, double dur,
		       int iteration, int micro)
{
	pipar_trace_event_for(t, stage, res, start, dur, iteration, micro, -1);
}

void pipar_trace_event_for(struct pipar_trace *t, const char *stage,
			   enum pipar_resource res, double start, double dur,
			   int iteration, int micro, int device)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->mu);
	t->busy[res] += dur;
	if (t->n == t->cap) {
		size_t nc = t->cap ? 2 * t->cap : 4096;
		struct event *ne = realloc(t->ev, sizeof(*ne) * nc);

		if (!ne) {
			pthread_mutex_unlock(&t->mu);
			return;         /* a trace missing events beats no run */
		}
		t->ev = ne;
		t->cap = nc;
	}
	t->ev[t->n++] = (struct event){stage, (int)res, iteration, micro, device, start, dur};
	pthread_mutex_unlock(&t->mu);
}

double pipar_trace_busy(struct pipar_trace *t, enum pipar_resource res, int reset)
{
	double b;

	if (!t)
		return 0;
	pthread_mutex_lock(&t->mu);
	b = t->busy[res];
	if (reset)
		t->busy[res] = 0;
	pthread_mutex_unlock(&t->mu);
	return b;
}

int pipar_trace_write(struct pipar_trace *t, const char *path, char *err)
{
	static const char *const res_names[] = {"", "compute", "uplink", "downlink"};
	char *tmp;
	FILE *f;
	int r = 0;

	if (!t || !path)
		return 0;
	tmp = malloc(strlen(path) + 16);
	if (!tmp)
		return pipar_errf(err, "out of memory");
	sprintf(tmp, "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f) {
		pipar_errf(err, "cannot write '%s': %s", tmp, strerror(errno));
		free(tmp);
		return -1;
	}
	pthread_mutex_lock(&t->mu);
	fprintf(f, "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n");
	fprintf(f, "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"args\":{\"name\":", t->pid);
	pipar_json_put_string(f, t->name);
	fprintf(f, "}}");
	for (int r2 = 1; r2 <= 3; r2++)
		fprintf(f, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":\"%s\"}}",
			t->pid, r2, res_names[r2]);
	for (size_t i = 0; i < t->n; i++) {
		const struct event *e = &t->ev[i];

		fprintf(f, ",\n{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"X\",\"pid\":%d,\"tid\":%d,"
			"\"ts\":%.3f,\"dur\":%.3f,\"args\":{\"iteration\":%d,\"micro\":%d",
			e->stage, res_names[e->res], t->pid, e->res, (e->start + t->offset) * 1e6,
			e->dur * 1e6, e->iteration, e->micro);
		if (e->device >= 0)
			fprintf(f, ",\"device\":%d", e->device + 1);
		fprintf(f, "}}");
	}
	fprintf(f, "\n]}\n");
	pthread_mutex_unlock(&t->mu);
	if (fflush(f) != 0 || ferror(f))
		r = -1;
	if (fclose(f) != 0)
		r = -1;
	if (r == 0 && rename(tmp, path) != 0)
		r = -1;
	if (r < 0) {
		pipar_errf(err, "cannot write '%s': %s", path, strerror(errno));
		unlink(tmp);
	}
	free(tmp);
	return r;
}

void pipar_trace_free(struct pipar_trace *t)
{
	if (!t)
		return;
	free(t->ev);
	pthread_mutex_destroy(&t->mu);
	free(t);
}
