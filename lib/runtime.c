/*
 * The pieces the server and the device share.
 */
#define _POSIX_C_SOURCE 200809L
#include "runtime.h"
#include "exec.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Process-wide, as signals are: what the handler may touch. */
static volatile sig_atomic_t first_signal, signals_seen;
static char second_msg[96];
static size_t second_len;

static void on_signal(int sig)
{
	if (signals_seen++ > 0) {
		if (write(2, second_msg, second_len) < 0)
			_exit(1);
		_exit(1);
	}
	first_signal = sig;
}

void pipar_runtime_signals(const char *prog)
{
	struct sigaction sa;

	snprintf(second_msg, sizeof(second_msg), "%s: a second signal: ending at once\n", prog);
	second_len = strlen(second_msg);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

int pipar_runtime_signalled(void)
{
	return first_signal;
}

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

void pipar_runtime_get_momentum(const struct pipar_model *m, float *dst)
{
	for (int u = 0; u < m->nunits; u++) {
		memcpy(dst, m->units[u].mom, sizeof(float) * m->units[u].ntrain);
		dst += m->units[u].ntrain;
	}
}

void pipar_runtime_set_momentum(struct pipar_model *m, const float *src)
{
	for (int u = 0; u < m->nunits; u++) {
		memcpy(m->units[u].mom, src, sizeof(float) * m->units[u].ntrain);
		src += m->units[u].ntrain;
	}
}

void pipar_runtime_reseed(struct pipar_exec *e, uint64_t stream, int epoch)
{
	pipar_rng_seed(&e->rng, e->m->seed, 0x64726f70ULL ^ (stream << 8) ^ ((uint64_t)epoch << 40));
}
