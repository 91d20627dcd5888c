/*
 * Channels: a non-blocking socket, waits bounded by poll, and TLS 1.3
 * through OpenSSL with certificates or an external pre-shared key.
 */
#define _POSIX_C_SOURCE 200809L
#include "chan.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "file.h"
#include "util.h"

#define PSK_MIN 32
#define PSK_MAX 48
/* The identity both ends name the shared key by. */
#define PSK_ID "pipar"

struct pipar_tls {
	SSL_CTX *ctx;
	int server;
	int has_ca, has_psk;
	unsigned char psk[PSK_MAX];
	size_t psk_len;
};

struct pipar_chan {
	int fd;
	SSL *ssl;
	struct pipar_tls *tls;
	pthread_mutex_t mu;             /* around every call into ssl */
	double timeout;                 /* seconds of silence, 0: forever */
	double deadline, span;          /* 0: none */
	int deadline_hit;
	int tls_failed;                 /* a TLS error ended a call */
	char tls_why[128];              /* its reason */
	char peer[64];
};

int pipar_tls_wanted(const struct pipar_tls_cfg *c)
{
	return c->cert || c->cert_key || c->ca || c->key_file;
}

/* The first OpenSSL error of this thread as text (the queue emptied). */
static const char *ssl_why(char *buf, size_t len)
{
	unsigned long e = ERR_get_error(), more;

	while ((more = ERR_get_error()) != 0)
		;
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	if (!e)
		snprintf(buf, len, "%s", errno ? strerror(errno) : "the peer closed the connection");
	else if (r)
		snprintf(buf, len, "%s", r);
	else
		ERR_error_string_n(e, buf, len);
	return buf;
}

/* The key in path: one line of 64 to 96 hex digits (32 to 48 bytes). */
static int load_psk(struct pipar_tls *t, const char *path, char *err)
{
	char *text = pipar_read_file(path, 4096, NULL, err);
	size_t n = 0;

	if (!text)
		return -1;
	for (const char *p = text; *p && *p != '\n' && *p != '\r'; p += 2) {
		unsigned v;

		if (n == PSK_MAX || sscanf(p, "%2x", &v) != 1 || !isxdigit((unsigned char)p[0]) ||
		    !isxdigit((unsigned char)p[1])) {
			free(text);
			return pipar_errf(err, "'%s': not a key: one line of 64 to 96 hex digits expected (make one with 'openssl rand -hex 32')",
					  path);
		}
		t->psk[n++] = (unsigned char)v;
	}
	free(text);
	if (n < PSK_MIN)
		return pipar_errf(err, "'%s': a key of %zu bytes is too short (at least %d; make one with 'openssl rand -hex 32')",
				  path, n, PSK_MIN);
	t->psk_len = n;
	return 0;
}

/* The session that carries the shared key, for the digest of the suite
 * TLS_AES_128_GCM_SHA256 (the one both ends offer it for). */
static SSL_SESSION *psk_session(SSL *ssl, const struct pipar_tls *t)
{
	static const unsigned char aes128gcm[] = {0x13, 0x01};
	const SSL_CIPHER *c = SSL_CIPHER_find(ssl, aes128gcm);
	SSL_SESSION *s = c ? SSL_SESSION_new() : NULL;

	if (s && (!SSL_SESSION_set1_master_key(s, t->psk, t->psk_len) ||
		  !SSL_SESSION_set_cipher(s, c) ||
		  !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION))) {
		SSL_SESSION_free(s);
		s = NULL;
	}
	return s;
}

static int psk_use(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
		   SSL_SESSION **sess)
{
	const struct pipar_tls *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	SSL_SESSION *s = psk_session(ssl, t);

	*sess = NULL;
	if (!s)
		return 0;
	if (md && md != SSL_CIPHER_get_handshake_digest(SSL_SESSION_get0_cipher(s))) {
		SSL_SESSION_free(s);
		return 1;       /* the server chose another suite: no key for it */
	}
	*sess = s;
	*id = (const unsigned char *)PSK_ID;
	*idlen = strlen(PSK_ID);
	return 1;
}

static int psk_find(SSL *ssl, const unsigned char *id, size_t idlen, SSL_SESSION **sess)
{
	const struct pipar_tls *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));

	*sess = NULL;
	if (idlen != strlen(PSK_ID) || memcmp(id, PSK_ID, idlen) != 0)
		return 1;       /* not ours: no key, the handshake goes on without */
	*sess = psk_session(ssl, t);
	return *sess ? 1 : 0;
}

struct pipar_tls *pipar_tls_new(int server, const struct pipar_tls_cfg *cfg, char *err)
{
	struct pipar_tls *t = calloc(1, sizeof(*t));
	char why[256];

	if (!t)
		return pipar_errf(err, "out of memory"), NULL;
	t->server = server;
	ERR_clear_error();
	if (!(t->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()))) {
		pipar_errf(err, "cannot set up TLS: %s", ssl_why(why, sizeof(why)));
		goto fail;
	}
	SSL_CTX_set_app_data(t->ctx, t);
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(t->ctx, TLS1_3_VERSION);
	SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_options(t->ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
	if (server)
		SSL_CTX_set_num_tickets(t->ctx, 0);
	if (cfg->cert_key && !cfg->cert) {
		pipar_errf(err, "a certificate's key needs its certificate (--cert)");
		goto fail;
	}
	if (cfg->cert) {
		const char *key = cfg->cert_key ? cfg->cert_key : cfg->cert;

		if (SSL_CTX_use_certificate_chain_file(t->ctx, cfg->cert) != 1) {
			pipar_errf(err, "'%s': not a certificate in PEM: %s", cfg->cert, ssl_why(why, sizeof(why)));
			goto fail;
		}
		if (SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM) != 1) {
			pipar_errf(err, "'%s': not a private key in PEM: %s", key, ssl_why(why, sizeof(why)));
			goto fail;
		}
		if (SSL_CTX_check_private_key(t->ctx) != 1) {
			pipar_errf(err, "'%s' is not the key of the certificate '%s'", key, cfg->cert);
			goto fail;
		}
	}
	if (cfg->ca) {
		if (SSL_CTX_load_verify_locations(t->ctx, cfg->ca, NULL) != 1) {
			pipar_errf(err, "'%s': not a CA certificate in PEM: %s", cfg->ca, ssl_why(why, sizeof(why)));
			goto fail;
		}
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
				   NULL);
		t->has_ca = 1;
	}
	if (cfg->key_file) {
		if (load_psk(t, cfg->key_file, err) < 0)
			goto fail;
		/* The key is bound to the SHA-256 suites: only they are
		 * offered, so that a handshake never picks one it cannot use. */
		SSL_CTX_set_ciphersuites(t->ctx, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256");
		if (server)
			SSL_CTX_set_psk_find_session_callback(t->ctx, psk_find);
		else
			SSL_CTX_set_psk_use_session_callback(t->ctx, psk_use);
		t->has_psk = 1;
	}
	if (server && !cfg->cert && !t->has_psk) {
		pipar_errf(err, "TLS needs the server's certificate (--cert) or a shared key (--key-file)");
		goto fail;
	}
	if (!t->has_ca && !t->has_psk) {
		pipar_errf(err, server ? "TLS needs a way to check the devices: the CA that signs their certificates (--ca) or a shared key (--key-file)"
				       : "TLS needs a way to check the server: the CA that signs its certificate (--ca) or a shared key (--key-file)");
		goto fail;
	}
	return t;
fail:
	pipar_tls_free(t);
	return NULL;
}

void pipar_tls_free(struct pipar_tls *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	OPENSSL_cleanse(t->psk, sizeof(t->psk));
	free(t);
}

struct pipar_chan *pipar_chan_new(int fd, struct pipar_tls *tls, const char *name, char *err)
{
	struct pipar_chan *ch = calloc(1, sizeof(*ch));
	struct sockaddr_storage sa;
	socklen_t sl = sizeof(sa);

	if (!ch)
		return pipar_errf(err, "out of memory"), NULL;
	ch->fd = fd;
	ch->tls = tls;
	pthread_mutex_init(&ch->mu, NULL);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	snprintf(ch->peer, sizeof(ch->peer), "?");
	if (getpeername(fd, (struct sockaddr *)&sa, &sl) == 0 && sa.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&sa;
		char ip[INET_ADDRSTRLEN];

		if (inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip)))
			snprintf(ch->peer, sizeof(ch->peer), "%s:%d", ip, ntohs(a->sin_port));
	}
	if (!tls)
		return ch;
	if (!(ch->ssl = SSL_new(tls->ctx)) || SSL_set_fd(ch->ssl, fd) != 1) {
		ch->fd = -1;
		pipar_chan_free(ch);
		return pipar_errf(err, "out of memory"), NULL;
	}
	if (!tls->server && name && tls->has_ca) {
		struct in_addr ip;
		int is_ip = inet_pton(AF_INET, name, &ip) == 1;
		int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ch->ssl), name)
			       : SSL_set1_host(ch->ssl, name);

		if (ok == 1 && !is_ip)
			SSL_set_tlsext_host_name(ch->ssl, name);
		if (ok != 1) {
			ch->fd = -1;
			pipar_chan_free(ch);
			return pipar_errf(err, "cannot check the server's name '%s'", name), NULL;
		}
	}
	return ch;
}

void pipar_chan_set_timeout(struct pipar_chan *ch, double seconds)
{
	ch->timeout = seconds;
}

void pipar_chan_set_deadline(struct pipar_chan *ch, double at, double span)
{
	ch->deadline = at;
	ch->span = span;
	ch->deadline_hit = 0;
}

/* Waits until fd is ready for events, or the timeout or deadline runs
 * out (-1, ETIMEDOUT). */
static int wait_for(struct pipar_chan *ch, short events)
{
	for (;;) {
		double limit = ch->timeout > 0 ? ch->timeout : -1;
		int hit_deadline = 0;

		if (ch->deadline > 0) {
			double left = ch->deadline - pipar_now();

			if (left <= 0) {
				ch->deadline_hit = 1;
				errno = ETIMEDOUT;
				return -1;
			}
			if (limit < 0 || left < limit) {
				limit = left;
				hit_deadline = 1;
			}
		}
		struct pollfd p = {ch->fd, events, 0};
		int ms = limit < 0 ? -1 : (int)(limit * 1000) + 1;
		int r = poll(&p, 1, ms);

		if (r > 0)
			return 0;       /* ready, or an error the call will meet */
		if (r == 0) {
			ch->deadline_hit = hit_deadline;
			errno = ETIMEDOUT;
			return -1;
		}
		if (errno != EINTR)
			return -1;
	}
}

/* One call into OpenSSL, retried while it waits for the socket: op 0
 * handshake, 1 read, 2 write.  The result of the call, or -1 with errno
 * (EPROTO for a TLS failure, 0 for a clean end while reading). */
static int ssl_call(struct pipar_chan *ch, int op, void *buf, int n)
{
	for (;;) {
		int r, e;

		pthread_mutex_lock(&ch->mu);
		ERR_clear_error();
		r = op == 0 ? (ch->tls->server ? SSL_accept(ch->ssl) : SSL_connect(ch->ssl))
		    : op == 1 ? SSL_read(ch->ssl, buf, n) : SSL_write(ch->ssl, buf, n);
		e = r > 0 ? SSL_ERROR_NONE : SSL_get_error(ch->ssl, r);
		int saved = errno;

		pthread_mutex_unlock(&ch->mu);
		if (e == SSL_ERROR_NONE)
			return r;
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			if (wait_for(ch, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT) < 0)
				return -1;
			continue;
		}
		if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && saved == 0)) {
			errno = 0;
			return -1;
		}
		if (e != SSL_ERROR_SYSCALL && op != 0) {
			char why[128];

			pthread_mutex_lock(&ch->mu);
			snprintf(ch->tls_why, sizeof(ch->tls_why), "%s", ssl_why(why, sizeof(why)));
			ch->tls_failed = 1;
			pthread_mutex_unlock(&ch->mu);
		}
		errno = e == SSL_ERROR_SYSCALL ? saved : EPROTO;
		return -1;
	}
}

/* Whether the peer proved the credentials asked of it. */
static int peer_proved(struct pipar_chan *ch)
{
	const struct pipar_tls *t = ch->tls;

	if (t->has_psk && SSL_session_reused(ch->ssl))
		return 1;       /* the shared key: both ends proved it */
	if (!t->has_ca)
		return 0;
	X509 *cert = SSL_get1_peer_certificate(ch->ssl);
	int ok = cert && SSL_get_verify_result(ch->ssl) == X509_V_OK;

	X509_free(cert);
	return ok;
}

int pipar_chan_handshake(struct pipar_chan *ch, char *err)
{
	char why[256], t[64];
	unsigned char first[4];

	if (!ch->ssl)
		return 0;
	if (ch->tls->server) {
		/* A plain pipar peer is told in its own frames, not TLS's. */
		if (wait_for(ch, POLLIN) < 0)
			return pipar_errf(err, "TLS handshake failed: %s",
					  errno == ETIMEDOUT ? pipar_chan_timed_out(ch, t, sizeof(t))
							     : strerror(errno));
		if (recv(ch->fd, first, 4, MSG_PEEK) == 4 && memcmp(first, "PIPR", 4) == 0) {
			/* The channel stays plain, to answer in the peer's
			 * terms. */
			SSL_free(ch->ssl);
			ch->ssl = NULL;
			errno = EACCES;
			return pipar_errf(err, "a plain connection; this server requires TLS");
		}
	}
	if (ssl_call(ch, 0, NULL, 0) < 0) {
		int e = errno;
		long v = SSL_get_verify_result(ch->ssl);

		if (e == ETIMEDOUT) {
			pipar_errf(err, "TLS handshake failed: %s", pipar_chan_timed_out(ch, t, sizeof(t)));
		} else if (v != X509_V_OK) {
			pipar_errf(err, "TLS handshake failed: the %s's certificate: %s",
				   ch->tls->server ? "device" : "server", X509_verify_cert_error_string(v));
			e = EACCES;
		} else if (e == EPROTO) {
			/* An alert: the credentials did not match. */
			pipar_errf(err, "TLS handshake failed: %s", ssl_why(why, sizeof(why)));
			e = EACCES;
		} else {
			pipar_errf(err, "TLS handshake failed: %s",
				   e ? strerror(e) : "the peer closed the connection");
			ERR_clear_error();
			e = e ? e : ECONNRESET;
		}
		errno = e;
		return -1;
	}
	if (!peer_proved(ch)) {
		errno = EACCES;
		return pipar_errf(err, "TLS handshake failed: the %s proved no credentials",
				  ch->tls->server ? "device" : "server");
	}
	return 0;
}

int pipar_chan_write(struct pipar_chan *ch, const void *a, size_t na, const void *b, size_t nb)
{
	struct iovec iov[2] = {{(void *)a, na}, {(void *)b, nb}};
	struct iovec *v = iov;
	int n = 2;

	while (n > 0 && v->iov_len == 0) {
		v++;
		n--;
	}
	while (n > 0) {
		ssize_t w;

		if (ch->ssl) {
			/* SSL_write takes an int; OpenSSL cuts it into records. */
			size_t len = v->iov_len > (1u << 30) ? (1u << 30) : v->iov_len;

			w = ssl_call(ch, 2, v->iov_base, (int)len);
			if (w < 0 && errno == 0)
				errno = EPIPE;
		} else {
			w = writev(ch->fd, v, n);
			if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				if (wait_for(ch, POLLOUT) < 0)
					return -1;
				continue;
			}
			if (w < 0 && errno == EINTR)
				continue;
		}
		if (w < 0)
			return -1;
		while (n > 0 && (size_t)w >= v->iov_len) {
			w -= (ssize_t)v->iov_len;
			v++;
			n--;
		}
		if (n > 0) {
			v->iov_base = (char *)v->iov_base + w;
			v->iov_len -= (size_t)w;
		}
	}
	return 0;
}

long pipar_chan_read(struct pipar_chan *ch, void *buf, size_t n, size_t *got)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r;

		if (ch->ssl) {
			size_t len = n - done > (1u << 30) ? (1u << 30) : n - done;

			r = ssl_call(ch, 1, (char *)buf + done, (int)len);
			if (r < 0 && errno == 0)
				r = 0;
		} else {
			r = read(ch->fd, (char *)buf + done, n - done);
			if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				if (wait_for(ch, POLLIN) < 0) {
					*got = done;
					return -1;
				}
				continue;
			}
			if (r < 0 && errno == EINTR)
				continue;
		}
		if (r < 0) {
			*got = done;
			return -1;
		}
		if (r == 0) {
			*got = done;
			if (done == 0)
				return 0;
			errno = 0;
			return -1;
		}
		done += (size_t)r;
	}
	*got = done;
	return (long)n;
}

const char *pipar_chan_timed_out(const struct pipar_chan *ch, char *buf, size_t len)
{
	snprintf(buf, len, "timed out after %g s", ch->deadline_hit ? ch->span : ch->timeout);
	return buf;
}

void pipar_chan_linger(struct pipar_chan *ch)
{
	char sink[4096];
	double end = pipar_now() + 0.5;
	size_t left = 1 << 20;

	/* Closing with unread bytes would reset the connection, and the
	 * peer could lose what it was last sent: end the sending side, then
	 * read what comes, a little while. */
	shutdown(ch->fd, SHUT_WR);
	while (left > 0 && pipar_now() < end) {
		struct pollfd p = {ch->fd, POLLIN, 0};

		if (poll(&p, 1, (int)((end - pipar_now()) * 1000) + 1) <= 0)
			break;
		ssize_t r = read(ch->fd, sink, sizeof(sink));

		if (r <= 0 && !(r < 0 && (errno == EAGAIN || errno == EINTR)))
			break;
		left -= r > 0 ? ((size_t)r < left ? (size_t)r : left) : 0;
	}
}

void pipar_chan_shutdown(struct pipar_chan *ch)
{
	shutdown(ch->fd, SHUT_RDWR);
}

void pipar_chan_free(struct pipar_chan *ch)
{
	if (!ch)
		return;
	if (ch->ssl) {
		if (SSL_is_init_finished(ch->ssl))
			SSL_shutdown(ch->ssl);  /* non-blocking: a close_notify, no wait */
		SSL_free(ch->ssl);
		ERR_clear_error();
	}
	if (ch->fd >= 0)
		close(ch->fd);
	pthread_mutex_destroy(&ch->mu);
	free(ch);
}

const char *pipar_chan_peer(const struct pipar_chan *ch)
{
	return ch->peer;
}

const char *pipar_chan_tls_error(struct pipar_chan *ch, char *buf, size_t len)
{
	int failed;

	pthread_mutex_lock(&ch->mu);
	failed = ch->tls_failed;
	snprintf(buf, len, "TLS: %s", ch->tls_why);
	pthread_mutex_unlock(&ch->mu);
	return failed ? buf : NULL;
}

int pipar_chan_fd(const struct pipar_chan *ch)
{
	return ch->fd;
}
