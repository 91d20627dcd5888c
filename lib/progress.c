#define _POSIX_C_SOURCE 200809L
#include "progress.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

const char *const pipar_progress_names[] = {"auto", "always", "never", NULL};

void pipar_meter_init(struct pipar_meter *m, FILE *f, const char *prog,
		      enum pipar_progress_when when)
{
	memset(m, 0, sizeof(*m));
	m->f = f;
	m->prog = prog;
	m->tty = f && isatty(fileno(f));
	m->on = f && (when == PIPAR_PROGRESS_ALWAYS || (when == PIPAR_PROGRESS_AUTO && m->tty));
	m->t0 = pipar_now();
	m->last = -1e9;
	pthread_mutex_init(&m->mu, NULL);
}

void pipar_format_duration(double s, char *buf, size_t n)
{
	long t = s > 0 && s < 1e9 ? lround(s) : 0;

	if (t >= 3600)
		snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
	else
		snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

/* Ends a drawn line, so that what follows starts at the left margin. */
static void clear_line(struct pipar_meter *m)
{
	if (m->drawn) {
		fputs("\r\033[K", m->f);
		m->drawn = 0;
	}
}

/* Writes text as the meter's current line; called with the lock held. */
static void show(struct pipar_meter *m, const char *text)
{
	if (m->tty) {
		fprintf(m->f, "\r%s\033[K", text);
		m->drawn = 1;
	} else {
		fprintf(m->f, "%s\n", text);
	}
	fflush(m->f);
}

void pipar_meter_update(struct pipar_meter *m, const struct pipar_progress *p, int force)
{
	char line[256], el[32], left[32];
	double now, t;
	size_t len;

	if (!m || !m->on)
		return;
	now = pipar_now();
	t = now - m->t0;
	pthread_mutex_lock(&m->mu);
	if (!force && now - m->last < (m->tty ? 0.2 : 2.0)) {
		pthread_mutex_unlock(&m->mu);
		return;
	}
	m->last = now;
	pipar_format_duration(t, el, sizeof(el));
	len = (size_t)snprintf(line, sizeof(line), "%s: epoch %d/%d", m->prog, p->epoch, p->epochs);
	if (p->total > 0 && len < sizeof(line))
		len += (size_t)snprintf(line + len, sizeof(line) - len, ", %s %ld/%ld", p->unit,
					p->done, p->total);
	if (!isnan(p->loss) && len < sizeof(line))
		len += (size_t)snprintf(line + len, sizeof(line) - len, ", loss %.4f", p->loss);
	if (len < sizeof(line))
		len += (size_t)snprintf(line + len, sizeof(line) - len, ", %s elapsed", el);
	/* Time left from the rate so far, over all epochs. */
	double whole = p->total > 0 ? (double)p->total * p->epochs : p->epochs;
	double done = p->total > 0 ? (double)p->total * (p->epoch - 1) + (double)p->done
				   : p->epoch - 1;
	if (done > 0 && whole > done && len < sizeof(line)) {
		pipar_format_duration(t * (whole - done) / done, left, sizeof(left));
		snprintf(line + len, sizeof(line) - len, ", about %s left", left);
	}
	show(m, line);
	pthread_mutex_unlock(&m->mu);
}

void pipar_meter_status(struct pipar_meter *m, const char *fmt, ...)
{
	char line[256];
	size_t len;
	va_list ap;

	if (!m || !m->on)
		return;
	len = (size_t)snprintf(line, sizeof(line), "%s: ", m->prog);
	va_start(ap, fmt);
	if (len < sizeof(line))
		vsnprintf(line + len, sizeof(line) - len, fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&m->mu);
	show(m, line);
	m->last = pipar_now();
	pthread_mutex_unlock(&m->mu);
}

void pipar_meter_vlog(struct pipar_meter *m, FILE *f, const char *fmt, va_list ap)
{
	if (!f)
		return;
	if (m)
		pthread_mutex_lock(&m->mu);
	if (m && f == m->f)
		clear_line(m);
	vfprintf(f, fmt, ap);
	fputc('\n', f);
	fflush(f);
	if (m)
		pthread_mutex_unlock(&m->mu);
}

void pipar_meter_log(struct pipar_meter *m, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pipar_meter_vlog(m, m && m->f ? m->f : stderr, fmt, ap);
	va_end(ap);
}

void pipar_meter_end(struct pipar_meter *m)
{
	if (!m || !m->f)
		return;
	pthread_mutex_lock(&m->mu);
	clear_line(m);
	fflush(m->f);
	pthread_mutex_unlock(&m->mu);
	pthread_mutex_destroy(&m->mu);
	m->f = NULL;
}
