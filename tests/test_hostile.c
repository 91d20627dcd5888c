/*
 * Hostile peers against a real pipar-serve: before the handshake, garbage
 * and a frame header claiming 1 GiB; after it, a peer that sends a tensor
 * of the wrong shape and one that disconnects in the middle of a frame.
 * The server refuses or drops each, naming the fault, and the two honest
 * devices finish the run.  Then silent peers against a short --timeout: a
 * server's peer that says nothing before or after the handshake, and a
 * device's server that says nothing, are given up with "timed out after
 * 1 s", not the text of EAGAIN.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"
#include "util.h"
#include "chan.h"
#include "wire.h"

static int port;

static int dial(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int tries = 0; tries < 100; tries++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			return fd;
		close(fd);
		nanosleep(&(struct timespec){0, 50000000}, NULL);
	}
	return -1;
}

/* A connection as a channel, for the frames. */
static struct pipar_chan *dial_ch(void)
{
	char err[PIPAR_ERRLEN];
	int fd = dial();
	struct pipar_chan *ch = fd >= 0 ? pipar_chan_new(fd, NULL, NULL, err) : NULL;

	PIPAR_ASSERT(ch);
	return ch;
}

static void hello(struct pipar_chan *fd)
{
	const char *h = "{\"id\":\"hostile\",\"samples\":100,\"norm\":{\"mean\":[0.3],\"std\":[0.35]}}";
	char err[PIPAR_ERRLEN];

	pipar_wire_send(fd, PIPAR_FRAME_HELLO, 0, h, strlen(h), err);
}

/* Reads count frames numbered from seq on, each of at most max bytes,
 * stopping at the first that does not come. */
static void recv_frames(struct pipar_chan *fd, uint32_t seq, uint32_t count, uint32_t max)
{
	struct pipar_frame_header h;
	uint8_t *buf = NULL;
	size_t cap = 0;
	char err[PIPAR_ERRLEN];

	for (uint32_t i = 0; i < count; i++)
		if (pipar_wire_recv(fd, max, seq + i, &h, &buf, &cap, err) != 1)
			break;
	free(buf);
}

/* Reads until the server's PLAN and MODEL have arrived, then says READY
 * (START comes when every device is admitted: await_start). */
static void drain_handshake(struct pipar_chan *fd)
{
	char err[PIPAR_ERRLEN];

	recv_frames(fd, 0, 2, 64u << 20);
	pipar_wire_send(fd, PIPAR_FRAME_READY, 1, NULL, 0, err);
}

/* Reads the server's START, once every device is admitted. */
static void await_start(struct pipar_chan *fd)
{
	recv_frames(fd, 2, 1, 0);
}

/* pipar-serve on plan (a file in dir) at the current port for one epoch,
 * its messages into log; its process id. */
static pid_t serve(const char *bin, const char *dir, const char *plan, const char *log,
		   const char *timeout)
{
	pid_t pid = fork();

	if (pid == 0) {
		char path[512], listen[64], cmd[4096];

		snprintf(path, sizeof(path), "%s/%s", dir, plan);
		snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
		PIPAR_ASSERT(freopen(log, "w", stderr));
		PIPAR_ASSERT(freopen("/dev/null", "w", stdout));
		snprintf(cmd, sizeof(cmd), "%s/pipar-serve", bin);
		execl(cmd, cmd, "--plan", path, "--listen", listen, "--epochs", "1", "--timeout",
		      timeout, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Silent peers, each side given --timeout 1. */
static void silent(const char *bin, const char *dir)
{
	char cmd[4096], log[512];
	pid_t server, device;
	int st;

	port++;
	snprintf(cmd, sizeof(cmd),
		 "%s/pipar-plan --device %s/d.json --server %s/s.json --devices 1 --uplink 1gbit "
		 "--downlink 1gbit --batch 20 > %s/one.json",
		 bin, dir, dir, dir);
	ok(system(cmd) == 0, "a plan for 1 device");
	snprintf(log, sizeof(log), "%s/silent.log", dir);
	server = serve(bin, dir, "one.json", log, "1");
	{
		/* One that never says HELLO, then one that goes silent after
		 * the handshake (it waits in the queue meanwhile). */
		int a = dial();
		struct pipar_chan *b = dial_ch();

		PIPAR_ASSERT(a >= 0);
		hello(b);
		drain_handshake(b);
		waitpid(server, &st, 0);
		close(a);
		pipar_chan_free(b);
	}
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 1,
	   "a server whose only device goes silent fails (status %d)",
	   WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	snprintf(cmd, sizeof(cmd),
		 "grep -q 'refused a connection from [0-9.:]*: timed out after 1 s waiting for a frame' %s", log);
	ok(system(cmd) == 0, "a peer that says nothing before HELLO is refused after the timeout");
	snprintf(cmd, sizeof(cmd),
		 "grep -q 'device 1 (hostile): timed out after 1 s waiting for a frame' %s", log);
	ok(system(cmd) == 0, "a device that goes silent is dropped after the timeout, named");
	snprintf(cmd, sizeof(cmd), "! grep -q 'temporarily unavailable' %s", log);
	ok(system(cmd) == 0, "and no message is the text of EAGAIN");
	snprintf(cmd, sizeof(cmd), "sed 's/^/# /' %s", log);
	if (system(cmd) != 0)
		diag("cannot show the log");

	/* One that takes PLAN and MODEL and never says READY: not admitted,
	 * so the server, with no device, fails after the timeout. */
	port++;
	snprintf(log, sizeof(log), "%s/unready.log", dir);
	server = serve(bin, dir, "one.json", log, "1");
	{
		struct pipar_chan *c = dial_ch();

		hello(c);
		recv_frames(c, 0, 2, 64u << 20);        /* PLAN and MODEL, no READY */
		waitpid(server, &st, 0);
		pipar_chan_free(c);
	}
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 1,
	   "a server whose only device never says READY fails (status %d)",
	   WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	snprintf(cmd, sizeof(cmd),
		 "grep -q 'device hostile lost during the handshake: waiting for READY: timed out after 1 s' %s",
		 log);
	ok(system(cmd) == 0, "a device that never says READY is not admitted, the timeout named");
	snprintf(cmd, sizeof(cmd), "grep -q 'no device connected within 1 s' %s", log);
	ok(system(cmd) == 0, "and the run does not start without it");
	snprintf(cmd, sizeof(cmd), "sed 's/^/# /' %s", log);
	if (system(cmd) != 0)
		diag("cannot show the log");

	/* A server that accepts and says nothing. */
	{
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)++port)};
		int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1, fd;

		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		PIPAR_ASSERT(bind(ls, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(ls, 4) == 0);
		snprintf(log, sizeof(log), "%s/device.log", dir);
		device = fork();
		if (device == 0) {
			char conn[64];

			snprintf(conn, sizeof(conn), "127.0.0.1:%d", port);
			PIPAR_ASSERT(freopen(log, "w", stderr));
			snprintf(cmd, sizeof(cmd), "%s/pipar-device", bin);
			execl(cmd, cmd, "--connect", conn, "--data", "synthetic:400", "--shard", "0/2",
			      "--timeout", "1", (char *)NULL);
			_exit(127);
		}
		fd = accept(ls, NULL, NULL);
		waitpid(device, &st, 0);
		close(fd);
		close(ls);
	}
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 1, "a device whose server says nothing fails (status %d)",
	   WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	snprintf(cmd, sizeof(cmd), "grep -q '^pipar-device: .*timed out after 1 s' %s", log);
	ok(system(cmd) == 0, "naming the timeout");
	snprintf(cmd, sizeof(cmd), "sed 's/^/# /' %s", log);
	if (system(cmd) != 0)
		diag("cannot show the log");
}

int main(void)
{
	const char *bin = getenv("PIPAR_BIN") ? getenv("PIPAR_BIN") : "bin";
	char dir[] = "/tmp/pipar-hostile-XXXXXX", cmd[4096], log[512];
	pid_t server;
	int st;

	PIPAR_ASSERT(mkdtemp(dir));
	port = 20000 + getpid() % 20000;
	snprintf(cmd, sizeof(cmd),
		 "%s/pipar-profile --model vgg5 --data synthetic:400 --batch 20 --repeat 1 --sizes 1,20 "
		 "--role server > %s/s.json && "
		 "%s/pipar-profile --model vgg5 --data synthetic:400 --batch 20 --repeat 1 --sizes 1,20 "
		 "> %s/d.json && "
		 "%s/pipar-plan --device %s/d.json --server %s/s.json --devices 4 --uplink 1gbit "
		 "--downlink 1gbit --batch 20 > %s/plan.json",
		 bin, dir, bin, dir, bin, dir, dir, dir);
	ok(system(cmd) == 0, "a plan for 4 devices");
	snprintf(log, sizeof(log), "%s/serve.log", dir);
	server = serve(bin, dir, "plan.json", log, "30");
	/* Before the handshake: garbage, and a well-sealed header that
	 * claims a 1 GiB HELLO. */
	{
		int fd = dial();
		uint8_t head[PIPAR_WIRE_HEADER];
		struct pipar_frame_header h = {PIPAR_FRAME_HELLO, 0, 1u << 30, 0, 0};

		PIPAR_ASSERT(fd >= 0);
		PIPAR_ASSERT(write(fd, "\x16\x03\x01\x02\x00garbage-garbage-garbage", 28) == 28);
		close(fd);
		fd = dial();
		pipar_wire_header_encode(&h, head);
		PIPAR_ASSERT(write(fd, head, sizeof(head)) == (ssize_t)sizeof(head));
		close(fd);
	}
	/* Two honest devices. */
	for (int i = 0; i < 2; i++) {
		if (fork() == 0) {
			char shard[16], conn[64];

			snprintf(shard, sizeof(shard), "%d/2", i);
			snprintf(conn, sizeof(conn), "127.0.0.1:%d", port);
			PIPAR_ASSERT(freopen("/dev/null", "w", stderr));
			snprintf(cmd, sizeof(cmd), "%s/pipar-device", bin);
			execl(cmd, cmd, "--connect", conn, "--data", "synthetic:400", "--shard", shard,
			      "--timeout", "30", (char *)NULL);
			_exit(127);
		}
	}
	/* Two peers that pass the handshake, then misbehave. */
	{
		struct pipar_chan *a = dial_ch(), *b = dial_ch();
		uint8_t frame[PIPAR_WIRE_HEADER + 64];
		struct pipar_tensor_msg m = {0, 0, 1, 5, 5, 5, 1, 0, NULL, NULL};
		uint8_t payload[PIPAR_TENSOR_HEAD + 5 * 5 * 5 * 4 + 4];
		char err[PIPAR_ERRLEN];

		hello(a);
		hello(b);
		drain_handshake(a);
		drain_handshake(b);
		/* With START read, closing sends no reset for unread data. */
		await_start(a);
		await_start(b);
		memset(payload, 0, sizeof(payload));
		pipar_tensor_msg_head(PIPAR_FRAME_ACTIVATIONS, &m, payload);
		pipar_wire_send(a, PIPAR_FRAME_ACTIVATIONS, 2, payload, sizeof(payload), err);
		/* Half a frame, then gone. */
		struct pipar_frame_header h = {PIPAR_FRAME_ACTIVATIONS, 0, 4000, 2, 0};

		pipar_wire_header_encode(&h, frame);
		memset(frame + PIPAR_WIRE_HEADER, 0, 64);
		PIPAR_ASSERT(write(pipar_chan_fd(b), frame, sizeof(frame)) == (ssize_t)sizeof(frame));
		nanosleep(&(struct timespec){0, 300000000}, NULL);
		pipar_chan_free(a);
		pipar_chan_free(b);
	}
	waitpid(server, &st, 0);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the server finishes the run (status %d)",
	   WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	while (wait(NULL) > 0)
		;
	snprintf(cmd, sizeof(cmd), "grep -q 'refused a connection from [0-9.:]*: bad magic' %s", log);
	ok(system(cmd) == 0, "garbage is refused as such");
	snprintf(cmd, sizeof(cmd), "grep -q 'over the bound' %s", log);
	ok(system(cmd) == 0, "a 1 GiB length is refused before anything is allocated for it");
	snprintf(cmd, sizeof(cmd), "grep -q 'shape 5x5x5, expected' %s", log);
	ok(system(cmd) == 0, "a tensor of the wrong shape drops that device, named");
	snprintf(cmd, sizeof(cmd), "grep -q 'inside a ACTIVATIONS frame' %s", log);
	ok(system(cmd) == 0, "a disconnect in the middle of a frame drops that device, named");
	snprintf(cmd, sizeof(cmd), "grep -q 'epoch 1/1: .*, 2 device(s)' %s", log);
	ok(system(cmd) == 0, "the two honest devices finish the epoch");
	snprintf(cmd, sizeof(cmd), "cat %s | sed 's/^/# /'", log);
	if (system(cmd) != 0)
		diag("cannot show the log");
	silent(bin, dir);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		diag("cleanup failed");
	return tap_done();
}
