/*
 * peer: a hostile peer for the tests, speaking just enough of the
 * protocol to reach the place it attacks.  It prints what the server sent
 * it, one line per frame ("received PLAN (812 bytes)", "received ERROR:
 * ..."), so that a test asserts on what a peer learnt.
 *
 *   peer HOST:PORT nan [ID]       HELLO, then a micro-batch of NaN
 *   peer HOST:PORT huge [ID]      HELLO, then PARAMS_UP of 1e30 values
 *   peer HOST:PORT hello JSON     a HELLO of that text
 *   peer HOST:PORT idle N SECS    N connections that say nothing for SECS
 *   peer HOST:PORT slow SECS      a HELLO sent one byte a second
 *
 * Options before HOST:PORT: --from ADDR binds the peer's address (a
 * second loopback address plays another host); --key-file FILE and
 * --ca FILE make it speak TLS with those credentials (nan, huge, hello).
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "chan.h"
#include "model.h"
#include "proto.h"
#include "util.h"
#include "wire.h"

static struct sockaddr_in to, from;
static int bind_from;
static struct pipar_tls_cfg tcfg;
static struct pipar_tls *tls;

static int dial_fd(void)
{
	for (int tries = 0; tries < 100; tries++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		if (fd >= 0 && (!bind_from || bind(fd, (struct sockaddr *)&from, sizeof(from)) == 0) &&
		    connect(fd, (struct sockaddr *)&to, sizeof(to)) == 0)
			return fd;
		if (fd >= 0)
			close(fd);
		nanosleep(&(struct timespec){0, 50000000}, NULL);
	}
	fprintf(stderr, "peer: cannot connect\n");
	exit(1);
}

/* A channel to the server, TLS when credentials were given; on a failed
 * handshake, says so and ends. */
static struct pipar_chan *dial(void)
{
	char err[PIPAR_ERRLEN];
	int fd = dial_fd();
	struct pipar_chan *ch = pipar_chan_new(fd, tls, "127.0.0.1", err);

	PIPAR_ASSERT(ch);
	pipar_chan_set_timeout(ch, 30);
	if (pipar_chan_handshake(ch, err) < 0) {
		printf("end: %s\n", err);
		pipar_chan_free(ch);
		exit(0);
	}
	return ch;
}

/* Reads frames until the stream ends or want frames came, printing each;
 * the last one's payload stays in *buf. */
static int show(struct pipar_chan *fd, uint32_t *seq, int want, struct pipar_frame_header *h, uint8_t **buf,
		size_t *cap)
{
	char err[PIPAR_ERRLEN], text[300];
	int n = 0;

	while (n < want) {
		int r = pipar_wire_recv(fd, 256u << 20, *seq, h, buf, cap, err);

		if (r <= 0) {
			printf("end: %s\n", r ? err : "closed");
			return n;
		}
		(*seq)++;
		n++;
		if (h->type == PIPAR_FRAME_ERROR) {
			pipar_text_escape(text, sizeof(text), (const char *)*buf, h->length);
			printf("received ERROR: %s\n", text);
			return n;
		}
		printf("received %s (%u bytes)\n", pipar_frame_type_name(h->type), h->length);
	}
	return n;
}

/* HELLO as a device with id and 200 samples of 1 channel; PLAN and MODEL
 * back, READY up and START back.  0 with the plan decoded, -1 when the
 * server refused. */
static int join(struct pipar_chan *fd, const char *id, struct pipar_plan_file **pl, struct pipar_settings *st,
		uint32_t *seq_in)
{
	struct pipar_hello h = {.samples = 200, .norm = {1, {0.3f}, {0.35f}}, .device = -1};
	struct pipar_frame_header fh;
	uint8_t *buf = NULL;
	size_t cap = 0;
	char err[PIPAR_ERRLEN], *text;
	int r = -1;

	snprintf(h.id, sizeof(h.id), "%s", id);
	text = pipar_hello_encode(&h);
	PIPAR_ASSERT(text && pipar_wire_send(fd, PIPAR_FRAME_HELLO, 0, text, strlen(text), err) == 0);
	free(text);
	if (show(fd, seq_in, 1, &fh, &buf, &cap) == 1 && fh.type == PIPAR_FRAME_PLAN &&
	    pipar_plan_msg_decode(buf, fh.length, pl, st, err) == 0 &&
	    show(fd, seq_in, 1, &fh, &buf, &cap) == 1 && fh.type == PIPAR_FRAME_MODEL &&
	    pipar_wire_send(fd, PIPAR_FRAME_READY, 1, NULL, 0, err) == 0 &&
	    show(fd, seq_in, 1, &fh, &buf, &cap) == 1 && fh.type == PIPAR_FRAME_START)
		r = 0;
	free(buf);
	return r;
}

/* The rest of what the server says, then the end. */
static void drain(struct pipar_chan *fd, uint32_t *seq)
{
	struct pipar_frame_header h;
	uint8_t *buf = NULL;
	size_t cap = 0;

	show(fd, seq, 1 << 30, &h, &buf, &cap);
	free(buf);
}

/* A micro-batch of NaN activations, or PARAMS_UP of 1e30 values. */
static int attack(const char *kind, const char *id)
{
	struct pipar_plan_file *pl = NULL;
	struct pipar_settings st;
	struct pipar_model *m = NULL;
	char err[PIPAR_ERRLEN];
	uint32_t seq_in = 0;
	struct pipar_chan *fd = dial();

	if (join(fd, id, &pl, &st, &seq_in) < 0) {
		drain(fd, &seq_in);
		pipar_plan_file_free(pl);
		pipar_chan_free(fd);
		return 0;
	}
	int k = st.device, P = pl->dev[k].P;
	int split = pipar_mode_ops(pl->mode)->split;

	PIPAR_ASSERT(pipar_model_new(pl->spec, pl->in, pl->classes, 0, split ? P - 1 : -1, st.seed,
				     &m, err) == 0);
	if (!strcmp(kind, "nan")) {
		struct pipar_shape cut = pipar_model_out(m);
		uint32_t n = (uint32_t)pl->micro[k][0];
		struct pipar_tensor_msg t = {0, 0, n, (uint32_t)cut.c, (uint32_t)cut.h,
					     (uint32_t)cut.w, (uint32_t)pl->batch, 0, NULL, NULL};
		size_t vals = (size_t)n * pipar_shape_size(cut);
		size_t sz = pipar_tensor_msg_size(PIPAR_FRAME_ACTIVATIONS, n, t.c, t.h, t.w);
		uint8_t *p = calloc(1, sz);
		float nan = strtof("nan", NULL);

		pipar_tensor_msg_head(PIPAR_FRAME_ACTIVATIONS, &t, p);
		for (size_t i = 0; i < vals; i++)
			memcpy(p + PIPAR_TENSOR_HEAD + 4 * i, &nan, 4);
		pipar_wire_send(fd, PIPAR_FRAME_ACTIVATIONS, 2, p, sz, err);
		free(p);
	} else {
		size_t dn = pipar_model_nstate(m);
		uint8_t *p = malloc(PIPAR_UP_HEAD + 4 * dn);
		struct pipar_up_head h = {split ? 0 : 200, 0, split ? 0 : 460, {0, 0, 0}, 0, 0};
		float big = 1e30f;

		pipar_up_head_encode(&h, p);
		for (size_t i = 0; i < dn; i++)
			memcpy(p + PIPAR_UP_HEAD + 4 * i, &big, 4);
		pipar_wire_send(fd, PIPAR_FRAME_PARAMS_UP, 2, p, PIPAR_UP_HEAD + 4 * dn, err);
		free(p);
	}
	drain(fd, &seq_in);
	pipar_model_free(m);
	pipar_plan_file_free(pl);
	pipar_chan_free(fd);
	return 0;
}

int main(int argc, char **argv)
{
	char host[64];
	int port;

	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	while (argc > 2 && argv[1][0] == '-') {
		if (!strcmp(argv[1], "--from")) {
			from.sin_family = AF_INET;
			PIPAR_ASSERT(inet_pton(AF_INET, argv[2], &from.sin_addr) == 1);
			bind_from = 1;
		} else if (!strcmp(argv[1], "--key-file")) {
			tcfg.key_file = argv[2];
		} else if (!strcmp(argv[1], "--ca")) {
			tcfg.ca = argv[2];
		} else {
			break;
		}
		argv += 2;
		argc -= 2;
	}
	if (pipar_tls_wanted(&tcfg)) {
		char err[PIPAR_ERRLEN];

		if (!(tls = pipar_tls_new(0, &tcfg, err))) {
			fprintf(stderr, "peer: %s\n", err);
			return 1;
		}
	}
	if (argc < 3 || sscanf(argv[1], "%63[^:]:%d", host, &port) != 2) {
		fprintf(stderr, "usage: peer [--from ADDR] HOST:PORT nan|huge|hello|idle|slow ...\n");
		return 2;
	}
	to.sin_family = AF_INET;
	to.sin_port = htons((uint16_t)port);
	PIPAR_ASSERT(inet_pton(AF_INET, host, &to.sin_addr) == 1);
	if (!strcmp(argv[2], "nan") || !strcmp(argv[2], "huge")) {
		int r = attack(argv[2], argc > 3 ? argv[3] : "attacker");

		pipar_tls_free(tls);
		return r;
	}
	if (!strcmp(argv[2], "hello") && argc > 3) {
		char err[PIPAR_ERRLEN];
		uint32_t seq = 0;
		struct pipar_chan *fd = dial();

		pipar_wire_send(fd, PIPAR_FRAME_HELLO, 0, argv[3], strlen(argv[3]), err);
		drain(fd, &seq);
		pipar_chan_free(fd);
		pipar_tls_free(tls);
		return 0;
	}
	if (!strcmp(argv[2], "idle") && argc > 4) {
		int n = atoi(argv[3]), *fds = calloc((size_t)n, sizeof(int)), open_ = 0;

		for (int i = 0; i < n; i++)
			if ((fds[i] = dial_fd()) >= 0)
				open_++;
		printf("opened %d connections\n", open_);
		sleep((unsigned)atoi(argv[4]));
		for (int i = 0; i < n; i++)
			close(fds[i]);
		free(fds);
		return 0;
	}
	if (!strcmp(argv[2], "slow") && argc > 3) {
		const char *h = "{\"id\":\"slow\",\"samples\":100,\"norm\":{\"mean\":[0.3],\"std\":[0.35]}}";
		uint8_t frame[PIPAR_WIRE_HEADER + 128];
		struct pipar_frame_header fh = {PIPAR_FRAME_HELLO, 0, (uint32_t)strlen(h), 0,
						pipar_crc32c(0, h, strlen(h))};
		int fd = dial_fd(), secs = atoi(argv[3]), sent = 0;

		pipar_wire_header_encode(&fh, frame);
		memcpy(frame + PIPAR_WIRE_HEADER, h, strlen(h));
		for (int i = 0; i < secs && i < (int)(PIPAR_WIRE_HEADER + strlen(h)); i++) {
			if (write(fd, frame + i, 1) != 1)
				break;
			sent++;
			sleep(1);
		}
		printf("sent %d bytes\n", sent);
		close(fd);
		return 0;
	}
	fprintf(stderr, "peer: unknown attack '%s'\n", argv[2]);
	return 2;
}
