/*
 * Unshaped loopback transfer of activation-sized frames through the wire
 * module: a child process sends COUNT frames of SIZE bytes over TCP on
 * 127.0.0.1, the parent receives and checks each (header, bounds, CRC-32C).
 * Prints one JSON object with the payload rate.
 *
 *   wire [SIZE [COUNT]]     defaults 1254400 bytes (VGG5 unit 1 output for
 *                           25 samples) and 2000 frames
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
		for (int i = 0; i < count; i++)
			if (pipar_wire_send(s, PIPAR_FRAME_ACTIVATIONS, (uint32_t)i, p, size, err) < 0)
				_exit(2);
		close(s);
		_exit(0);
	}
	fd = accept(ls, NULL, NULL);
	t0 = pipar_now();
	for (int i = 0; i < count; i++) {
		struct pipar_frame_header h;

		if (pipar_wire_recv(fd, (uint32_t)size, (uint32_t)i, &h, &buf, &cap, err) != 1) {
			fprintf(stderr, "wire: %s\n", err);
			return 1;
		}
	}
	t = pipar_now() - t0;
	waitpid(pid, NULL, 0);
	printf("{\"benchmark\":\"loopback frames\",\"frame_bytes\":%zu,\"frames\":%d,"
	       "\"seconds\":%.4f,\"payload_gbytes_per_s\":%.3f}\n",
	       size, count, t, (double)size * count / t / 1e9);
	free(buf);
	return 0;
}
