/*
 * fuzz_tls: the server's TLS-wrapped path on hostile bytes: the input is
 * what a peer sends on a new connection to a server that requires TLS
 * with a shared key, read through pipar_chan_handshake (the check for a
 * plain pipar peer, the TLS handshake, the shared-key lookup and the
 * check that the peer proved a credential) and, should a handshake ever
 * pass, the frames after it through pipar_wire_recv.
 *
 * A peer without the key cannot complete the handshake, so every input
 * must end in a refusal with a message and nothing trusted; the
 * sanitizers catch the rest.
 */
#include "chan.h"
#include "util.h"
#include "wire.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size);

static struct pipar_tls *server;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[] = "/tmp/pipar-fuzz-tls-XXXXXX", err[PIPAR_ERRLEN];
	int fd = mkstemp(path);
	const char *key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
	struct pipar_tls_cfg cfg = {.key_file = path};

	if (fd < 0 || write(fd, key, strlen(key)) != (ssize_t)strlen(key))
		abort();
	close(fd);
	server = pipar_tls_new(1, &cfg, err);
	unlink(path);
	if (!server) {
		fprintf(stderr, "fuzz_tls: %s\n", err);
		abort();
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size)
{
	char err[PIPAR_ERRLEN] = "";
	struct pipar_chan *ch;
	int sv[2];

	/* A socket pair holds this much without a reader. */
	if (size > 60000 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		return 0;
	if (size && write(sv[1], buf, size) != (ssize_t)size)
		abort();
	shutdown(sv[1], SHUT_WR);
	if (!(ch = pipar_chan_new(sv[0], server, NULL, err)))
		abort();
	pipar_chan_set_timeout(ch, 1);
	pipar_chan_set_deadline(ch, pipar_now() + 2, 2);
	if (pipar_chan_handshake(ch, err) == 0) {
		/* No input holds the key: a handshake that passes is a hole. */
		abort();
	}
	if (!err[0])
		abort();
	pipar_chan_free(ch);
	close(sv[1]);
	return 0;
}
