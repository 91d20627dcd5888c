/*
 * test_fuzz_regress: replays the fuzz corpora through the readers of
 * hostile input, with the normal build (and so under SANITIZE=1 too).
 *
 * Every file under tests/fuzz/TARGET/ (the seeds) and
 * tests/fuzz/crashes/TARGET/ (inputs that once crashed the fuzzer, since
 * fixed) goes through TARGET's entry point framed as fuzz/fuzz_TARGET.c
 * frames it, and must come back cleanly: a success, or a refusal with a
 * message and nothing allocated.  The paths are relative to the top of the
 * tree, where make check runs; a missing or empty corpus is a failure, not
 * a pass over nothing.
 */
#define _POSIX_C_SOURCE 200809L
#include "checkpoint.h"
#include "data.h"
#include "model.h"
#include "proto.h"
#include "tap.h"
#include "util.h"
#include "chan.h"
#include "wire.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define CORPUS "tests/fuzz"
#define SPEC_MAX 65536 /* as fuzz/fuzz_spec.c */

static uint8_t *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0, r;

	*n = 0;
	if (!f)
		return NULL;
	do {
		if (len == cap) {
			uint8_t *nb;

			cap = cap ? 2 * cap : 4096;
			nb = realloc(buf, cap + 1);
			if (!nb) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
		}
		r = fread(buf + len, 1, cap - len, f);
		len += r;
	} while (r > 0);
	if (ferror(f)) {
		free(buf);
		fclose(f);
		return NULL;
	}
	fclose(f);
	buf[len] = '\0';
	*n = len;
	return buf;
}

/* A clean return: 0 with a result, or -1 with a message and no result. */
static int clean(int rc, const void *out, const char *err, const char *path)
{
	if (rc == 0 && out)
		return 1;
	if (rc == -1 && !out && err[0])
		return 1;
	diag("%s: returned %d, result %s, message '%s'", path, rc,
	     out ? "set" : "NULL", err);
	return 0;
}

/* Sane contents for a set a reader accepted. */
static int data_sane(const struct pipar_data *d)
{
	if (d->count < 1 || !d->pixels || !d->labels || d->classes < 1)
		return 0;
	for (int i = 0; i < d->count; i++)
		if (d->labels[i] >= d->classes)
			return 0;
	return 1;
}

/* fuzz_idx: 4-byte little-endian split point, then images and labels. */
static int run_idx(const uint8_t *buf, size_t size, const char *path,
		   char *err, int *loaded)
{
	struct pipar_data *d = NULL;
	size_t n, k;
	int rc, good;

	*loaded = 0;
	if (size < 4)
		return 1;
	k = (size_t)buf[0] | (size_t)buf[1] << 8 | (size_t)buf[2] << 16 |
	    (size_t)buf[3] << 24;
	n = size - 4;
	k %= n + 1;
	rc = pipar_data_idx_mem(buf + 4, k, buf + 4 + k, n - k, path, &d, err);
	good = clean(rc, d, err, path) && (!d || data_sane(d));
	*loaded = d != NULL;
	pipar_data_free(d);
	return good;
}

/* fuzz_cifar: one byte, odd for the test split, then the archive. */
static int run_cifar(const uint8_t *buf, size_t size, const char *path,
		     char *err, int *loaded)
{
	struct pipar_data *d = NULL;
	int rc, good;

	*loaded = 0;
	if (size < 1)
		return 1;
	rc = pipar_data_cifar_mem(buf + 1, size - 1, path,
				  (buf[0] & 1) ? "test" : "train", &d, err);
	good = clean(rc, d, err, path) && (!d || data_sane(d));
	*loaded = d != NULL;
	pipar_data_free(d);
	return good;
}

/* fuzz_spec: the text, for a 1x8x8 input and 10 classes. */
static int run_spec(const uint8_t *buf, size_t size, const char *path,
		    char *err, int *loaded)
{
	struct pipar_shape in = { 1, 8, 8 }, out;
	struct pipar_model *m = NULL;
	int rc, good;

	*loaded = 0;
	if (size > SPEC_MAX)
		return 1;
	/* slurp leaves a NUL after the data. */
	rc = pipar_model_new((const char *)buf, in, 10, 0, -1, 1, &m, err);
	good = clean(rc, m, err, path);
	*loaded = m != NULL;
	if (m) {
		out = pipar_model_out(m);
		good = good && out.c == 10 && out.h == 1 && out.w == 1;
	}
	pipar_model_free(m);
	return good;
}

/* fuzz_npz: the file as it is. */
static int run_npz(const uint8_t *buf, size_t size, const char *path,
		   char *err, int *loaded)
{
	struct pipar_model *m = NULL;
	struct pipar_ckpt_info info;
	int rc, good;

	memset(&info, 0, sizeof(info));
	rc = pipar_checkpoint_load_mem(buf, size, path, &m, &info, err);
	good = clean(rc, m, err, path) && (m || !info.training);
	*loaded = m != NULL;
	if (m) {
		pipar_model_free(m);
		pipar_checkpoint_info_free(&info);
	}
	return good;
}

/* fuzz_frame: the bytes as a peer's stream of frames (through a pipe, as
 * the fuzzer feeds them), and as a bare tensor payload.  It "loads" when
 * the stream reads cleanly to its end or the bytes are a valid payload. */
static int run_frame(const uint8_t *buf, size_t size, const char *path,
		     char *err, int *loaded)
{
	int fds[2], good = 1, stream_ok = 0, frames = 0;
	uint8_t *frame = NULL;
	size_t cap = 0;
	struct pipar_tensor_msg m;

	*loaded = 0;
	if (size > 60000 || pipe(fds) != 0)
		return ok(0, "%s: too large for the replay pipe", path), 0;
	if (size && write(fds[1], buf, size) != (ssize_t)size)
		return ok(0, "%s: cannot fill the pipe", path), 0;
	close(fds[1]);
	struct pipar_chan *ch = pipar_chan_new(fds[0], NULL, NULL, err);

	PIPAR_ASSERT(ch);
	for (;;) {
		struct pipar_frame_header h;
		int r;

		err[0] = 0;
		r = pipar_wire_recv(ch, 1 << 16, (uint32_t)frames, &h, &frame, &cap, err);
		if (r == 0) {
			stream_ok = frames > 0;
			break;
		}
		if (r < 0) {
			good = err[0] != 0;
			break;
		}
		frames++;
		if ((h.type == PIPAR_FRAME_ACTIVATIONS || h.type == PIPAR_FRAME_GRADIENTS) &&
		    pipar_tensor_msg_parse(h.type, frame, h.length, 2, 3, 3, 8, 10, &m, err) < 0 &&
		    !err[0])
			good = 0;
	}
	pipar_chan_free(ch);
	free(frame);
	for (int type = PIPAR_FRAME_ACTIVATIONS; type <= PIPAR_FRAME_GRADIENTS; type++) {
		char e2[PIPAR_ERRLEN] = "";

		if (pipar_tensor_msg_parse(type, buf, size, 2, 3, 3, 8, 10, &m, e2) == 0)
			*loaded = 1;
		else if (!e2[0])
			good = 0;
	}
	if (stream_ok)
		*loaded = 1;
	return good;
}

/* fuzz_proto: byte 0 picks the decoder (0 HELLO, 1 PLAN, 2 the PARAMS_UP
 * head), byte 1 its context (channels, device part floats), then the
 * payload. */
static int run_proto(const uint8_t *buf, size_t size, const char *path,
		     char *err, int *loaded)
{
	int rc, good;

	*loaded = 0;
	if (size < 2)
		return 1;
	switch (buf[0] % 3) {
	case 0: {
		struct pipar_hello h;

		rc = pipar_hello_decode(buf + 2, size - 2, 1 + buf[1] % 4, 1000000, &h, err);
		good = clean(rc, rc == 0 ? &h : NULL, err, path);
		break;
	}
	case 1: {
		struct pipar_plan_file *pl = NULL;
		struct pipar_settings st;

		rc = pipar_plan_msg_decode(buf + 2, size - 2, &pl, &st, err);
		good = clean(rc, pl, err, path) &&
		       (!pl || (st.device >= 0 && st.device < pl->K));
		pipar_plan_file_free(pl);
		break;
	}
	default: {
		struct pipar_up_head h;

		rc = pipar_up_head_decode(buf + 2, size - 2, buf[1], buf[1] / 2, &h, err);
		good = clean(rc, rc == 0 ? &h : NULL, err, path);
		break;
	}
	}
	*loaded = rc == 0;
	return good;
}

/* As fuzz/fuzz_tls.c: a connection's first bytes to a server that
 * requires TLS with a shared key; no input may pass the handshake. */
static int run_tls(const uint8_t *buf, size_t size, const char *path, char *err,
		   int *loaded)
{
	static struct pipar_tls *server;
	struct pipar_chan *ch;
	int sv[2], rc;

	*loaded = 0;
	if (!server) {
		char key[] = "/tmp/pipar-regress-tls-XXXXXX";
		int fd = mkstemp(key);
		const char *hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
		struct pipar_tls_cfg cfg = {.key_file = key};

		PIPAR_ASSERT(fd >= 0 && write(fd, hex, strlen(hex)) == (ssize_t)strlen(hex));
		close(fd);
		server = pipar_tls_new(1, &cfg, err);
		unlink(key);
		if (!server)
			return ok(0, "%s: %s", path, err), 0;
	}
	if (size > 60000 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		return ok(0, "%s: too large for the replay socket", path), 0;
	if (size && write(sv[1], buf, size) != (ssize_t)size)
		return ok(0, "%s: cannot fill the socket", path), 0;
	shutdown(sv[1], SHUT_WR);
	PIPAR_ASSERT((ch = pipar_chan_new(sv[0], server, NULL, err)) != NULL);
	pipar_chan_set_timeout(ch, 1);
	pipar_chan_set_deadline(ch, pipar_now() + 2, 2);
	rc = pipar_chan_handshake(ch, err);
	pipar_chan_free(ch);
	close(sv[1]);
	*loaded = rc == 0;
	if (rc == 0)
		return ok(0, "%s: passes a TLS handshake without the key", path), 0;
	return err[0] ? 1 : (ok(0, "%s: refused without a message", path), 0);
}

/* The entry point of each target, as the fuzzer frames its input. */
struct target {
	const char *name;
	int (*run)(const uint8_t *buf, size_t size, const char *path,
		   char *err, int *loaded);
};

static const struct target targets[] = {
	{ "idx", run_idx },
	{ "cifar", run_cifar },
	{ "spec", run_spec },
	{ "npz", run_npz },
	{ "frame", run_frame },
	{ "proto", run_proto },
	{ "tls", run_tls },
};

#define NTARGETS (sizeof(targets) / sizeof(targets[0]))

static int not_hidden(const struct dirent *e)
{
	return e->d_name[0] != '.';
}

/* Replays every regular file in dir through t; returns the number of
 * files, or -1 if dir cannot be read.  With seeds, a file named "bad-*"
 * must be refused and any other must load, so that a change of format
 * that leaves the seeds behind shows here rather than as a fuzzer that
 * quietly explores nothing but refusals. */
static int replay(const char *dir, const struct target *t, int seeds)
{
	struct dirent **list;
	int n, files = 0;

	n = scandir(dir, &list, not_hidden, alphasort);
	if (n < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		char path[512], err[PIPAR_ERRLEN] = "";
		int bad = strncmp(list[i]->d_name, "bad-", 4) == 0, loaded;
		struct stat st;
		uint8_t *buf;
		size_t size;
		int good;

		snprintf(path, sizeof(path), "%s/%s", dir, list[i]->d_name);
		free(list[i]);
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		files++;
		buf = slurp(path, &size);
		if (!buf) {
			ok(0, "%s: cannot read: %s", path, strerror(errno));
			continue;
		}
		good = t->run(buf, size, path, err, &loaded);
		if (seeds && good && loaded == bad)
			ok(0, "%s %s%s%s", path,
			   bad ? "loads, but its name says it is bad" :
				 "is refused, though a valid seed",
			   err[0] ? ": " : "", err);
		else
			ok(good, "%s %s%s%s", path, loaded ? "loads" :
			   "is refused", err[0] ? ": " : "", err);
		free(buf);
	}
	free(list);
	return files;
}

int main(void)
{
	struct dirent **list;
	struct stat st;
	int n;

	if (!ok(stat(CORPUS, &st) == 0 && S_ISDIR(st.st_mode),
		"corpus directory %s (run from the top of the tree)", CORPUS))
		return tap_done();
	/* A corpus with no replay here is named as a skip, so that a new
	 * fuzz target without one does not pass unnoticed. */
	n = scandir(CORPUS, &list, not_hidden, alphasort);
	for (int i = 0; i < n; i++) {
		int known = strcmp(list[i]->d_name, "crashes") == 0;
		char why[320];

		for (size_t t = 0; t < NTARGETS; t++)
			known |= strcmp(list[i]->d_name, targets[t].name) == 0;
		if (!known) {
			snprintf(why, sizeof(why), "%s/%s: no replay for this "
				 "target here", CORPUS, list[i]->d_name);
			skip(why);
		}
		free(list[i]);
	}
	if (n >= 0)
		free(list);
	n = scandir(CORPUS "/crashes", &list, not_hidden, alphasort);
	for (int i = 0; i < n; i++) {
		int known = 0;

		char why[320];

		for (size_t t = 0; t < NTARGETS; t++)
			known |= strcmp(list[i]->d_name, targets[t].name) == 0;
		if (!known) {
			snprintf(why, sizeof(why), "%s/crashes/%s: no replay "
				 "for this target here", CORPUS,
				 list[i]->d_name);
			skip(why);
		}
		free(list[i]);
	}
	if (n >= 0)
		free(list);

	for (size_t t = 0; t < NTARGETS; t++) {
		char dir[256];
		int files;

		snprintf(dir, sizeof(dir), "%s/%s", CORPUS, targets[t].name);
		files = replay(dir, &targets[t], 1);
		ok(files > 0, "%s: %d seed inputs", dir, files);
		snprintf(dir, sizeof(dir), "%s/crashes/%s", CORPUS,
			 targets[t].name);
		if (stat(dir, &st) == 0)
			ok(replay(dir, &targets[t], 0) >= 0, "%s replayed",
			   dir);
	}
	return tap_done();
}
