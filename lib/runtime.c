/*
 * The pieces the server and the device share.
 */
#define _POSIX_C_SOURCE 200809L
#include "runtime.h"

#include <math.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

static void put_line(struct pipar_meter *meter, FILE *log, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pipar_meter_vlog(meter, log, fmt, ap);
	va_end(ap);
}

void pipar_runtime_log(FILE *log, struct pipar_meter *meter, const char *prefix,
		       const char *fmt, ...)
{
	char line[1024], safe[1024];
	va_list ap;

	if (!log)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One event, one line, whatever a peer put in the text. */
	pipar_text_escape(safe, sizeof(safe), line, sizeof(line));
	put_line(meter, log, "%s: %s", prefix ? prefix : "pipar", safe);
}

void pipar_runtime_get_state(const struct pipar_model *m, float *dst)
{
	for (int u = 0; u < m->nunits; u++) {
		pipar_model_get_state(m, u, dst);
		dst += m->units[u].nstate;
	}
}

void pipar_runtime_set_state(struct pipar_model *m, const float *src)
{
	for (int u = 0; u < m->nunits; u++) {
		pipar_model_set_state(m, u, src);
		src += m->units[u].nstate;
	}
}
