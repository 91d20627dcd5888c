/*
 * Unshaped loopback transfer of activation-sized frames through the wire
 * module: a child process sends COUNT frames of SIZE bytes over TCP on
 * 127.0.0.1, the parent receives and checks each (header, bounds, CRC-32C).
 * Prints one JSON object with the payload rate.
 *
 *   wire [SIZE [COUNT [KEYFILE]]]  defaults 1254400 bytes (VGG5 unit 1
 *                                  output for 25 samples) and 2000 frames;
 *                                  with KEYFILE, over TLS 1.3 with that
 *                                  shared key (chan.h)
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chan.h"
#include "util.h"
#include "wire.h"

int main(int argc, char **argv)
{
	size_t size = argc > 1 ? (size_t)atol(argv[1]) : 1254400;
	int count = argc > 2 ? atoi(argv[2]) : 2000, one = 1;
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t al = sizeof(a);
	char err[PIPAR_ERRLEN];
	int ls = socket(AF_INET, SOCK_STREAM, 0), fd;
	uint8_t *buf = NULL;
	size_t cap = 0;
	pid_t pid;
	double t0, t;
	const char *key = argc > 3 ? argv[3] : NULL;
	struct pipar_tls_cfg tc = {.key_file = key};
	struct pipar_tls *srv = NULL, *cli = NULL;
	struct pipar_chan *in;

	if (key && (!(srv = pipar_tls_new(1, &tc, err)) || !(cli = pipar_tls_new(0, &tc, err)))) {
		fprintf(stderr, "wire: %s\n", err);
		return 1;
	}

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 1) < 0 ||
	    getsockname(ls, (struct sockaddr *)&a, &al) < 0) {
		perror("wire: listen");
		return 1;
	}
	pid = fork();
	if (pid == 0) {
		uint8_t *p = malloc(size);
		int s = socket(AF_INET, SOCK_STREAM, 0);

		for (size_t i = 0; i < size; i++)
			p[i] = (uint8_t)(i * 131);
		setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0)
			_exit(1);
		struct pipar_chan *out = pipar_chan_new(s, cli, NULL, err);

		if (!out || pipar_chan_handshake(out, err) < 0) {
			fprintf(stderr, "wire: %s\n", err);
			_exit(1);
		}
		for (int i = 0; i < count; i++)
			if (pipar_wire_send(out, PIPAR_FRAME_ACTIVATIONS, (uint32_t)i, p, size, err) < 0)
				_exit(2);
		pipar_chan_free(out);
		_exit(0);
	}
	fd = accept(ls, NULL, NULL);
	in = fd >= 0 ? pipar_chan_new(fd, srv, NULL, err) : NULL;
	if (!in || pipar_chan_handshake(in, err) < 0) {
		fprintf(stderr, "wire: %s\n", err);
		return 1;
	}
	t0 = pipar_now();
	for (int i = 0; i < count; i++) {
		struct pipar_frame_header h;

		if (pipar_wire_recv(in, (uint32_t)size, (uint32_t)i, &h, &buf, &cap, err) != 1) {
			fprintf(stderr, "wire: %s\n", err);
			return 1;
		}
	}
	t = pipar_now() - t0;
	waitpid(pid, NULL, 0);
	printf("{\"benchmark\":\"loopback frames\",\"transport\":\"%s\",\"frame_bytes\":%zu,"
	       "\"frames\":%d,\"seconds\":%.4f,\"payload_gbytes_per_s\":%.3f}\n",
	       key ? "tls1.3" : "tcp", size, count, t, (double)size * count / t / 1e9);
	free(buf);
	pipar_chan_free(in);
	pipar_tls_free(srv);
	pipar_tls_free(cli);
	return 0;
}
