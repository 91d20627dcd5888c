/*
 * chan: a connection to a peer, over plain TCP or over TLS 1.3 (OpenSSL),
 * under the frames of wire.h.
 *
 * TLS authenticates both ends, by one of two means (pipar-wire(5), the
 * security model):
 *   certificates  the server shows a certificate its devices check
 *                 against a CA they are given (and its name or address);
 *                 the server asks each device for a certificate signed
 *                 by the CA it is given;
 *   a shared key  a file of 32 to 48 random bytes in hex that the server
 *                 and its devices hold (TLS 1.3 external PSK, with an
 *                 ephemeral key exchange): each end proves it holds the
 *                 key, no certificate is needed.
 * A side given both accepts either.  A handshake in which the peer proved
 * neither fails, so a peer without credentials learns nothing and sends
 * nothing that is trusted.
 *
 * Waits: every wait for the peer is bounded by the channel's timeout (the
 * peer's longest silence) and, when one is set, by a deadline for the
 * whole exchange (a handshake).  The socket is non-blocking underneath;
 * one reader and one writer may use a channel at once from two threads
 * (the TLS state is locked around each call into OpenSSL).
 *
 * Who owns what: a pipar_tls is its maker's, freed after every channel
 * made with it; a channel owns its socket once pipar_chan_new succeeds
 * and closes it in pipar_chan_free.
 */
#ifndef PIPAR_CHAN_H
#define PIPAR_CHAN_H

#include <stddef.h>

struct pipar_tls_cfg {
	const char *cert;               /* this side's certificate chain (PEM) */
	const char *cert_key;           /* its private key (PEM); NULL: in cert */
	const char *ca;                 /* the CA that signs the peer's certificate */
	const char *key_file;           /* the pre-shared key */
};

struct pipar_tls;
struct pipar_chan;

/* Whether cfg asks for TLS at all (any credential given). */
int pipar_tls_wanted(const struct pipar_tls_cfg *cfg);

/* The credentials of one side, loaded and checked: a server needs a way
 * to prove itself (cert, or key_file) and one to check its devices (ca,
 * or key_file); a device needs a way to check the server (ca, or
 * key_file).  NULL with err naming the file and what is wrong with it. */
struct pipar_tls *pipar_tls_new(int server, const struct pipar_tls_cfg *cfg, char *err);
void pipar_tls_free(struct pipar_tls *t);

/* A channel over connected socket fd, plain when tls is NULL.  name: on
 * a device, the server's host name or address its certificate must be
 * for (NULL: not checked, as with a shared key).  NULL with err when out
 * of memory (fd then stays the caller's). */
struct pipar_chan *pipar_chan_new(int fd, struct pipar_tls *tls, const char *name, char *err);

/* Seconds the peer may stay silent in any one wait (0: forever). */
void pipar_chan_set_timeout(struct pipar_chan *ch, double seconds);
/* A deadline (pipar_now's clock; 0: none) on every wait from now on, of
 * span seconds from its start (for the messages). */
void pipar_chan_set_deadline(struct pipar_chan *ch, double at, double span);

/* The TLS handshake and the peer's credentials checked (nothing for a
 * plain channel).  -1 with err ("TLS handshake failed: ...") and errno:
 * EACCES when the credentials failed (a certificate refused, an alert,
 * none proved), ETIMEDOUT, or another (ECONNRESET for a connection that
 * ended) when the connection failed. */
int pipar_chan_handshake(struct pipar_chan *ch, char *err);

/* Writes a then b, whole.  Reads exactly n bytes.  Both return 0 (read:
 * n) when done, and -1 with errno set otherwise: ETIMEDOUT when the
 * timeout or the deadline ran out, EPROTO for a TLS failure; a read that
 * meets the end of the stream returns 0 when nothing was read and -1 with
 * errno 0 part-way.  *got is the bytes read. */
int pipar_chan_write(struct pipar_chan *ch, const void *a, size_t na, const void *b, size_t nb);
long pipar_chan_read(struct pipar_chan *ch, void *buf, size_t n, size_t *got);

/* What ran out when a call failed with ETIMEDOUT: "timed out after N s"
 * (N the timeout, or the deadline's span), into buf; returns buf. */
const char *pipar_chan_timed_out(const struct pipar_chan *ch, char *buf, size_t len);

/* Ends the sending side and reads (and drops) what the peer still sends,
 * for at most half a second: so that a peer told why it is refused reads
 * it before the connection closes. */
void pipar_chan_linger(struct pipar_chan *ch);

/* Wakes any thread waiting on ch (its waits then fail); safe from any
 * thread, at any time before pipar_chan_free. */
void pipar_chan_shutdown(struct pipar_chan *ch);
/* Closes the connection (a TLS close first) and frees ch; NULL is
 * ignored. */
void pipar_chan_free(struct pipar_chan *ch);

/* The peer's address as "ADDR:PORT" (for the log). */
const char *pipar_chan_peer(const struct pipar_chan *ch);
/* The reason a TLS error (an alert from the peer, a record that does not
 * authenticate) ended a read or a write, as "TLS: ..." in buf; NULL when
 * none did. */
const char *pipar_chan_tls_error(struct pipar_chan *ch, char *buf, size_t len);
/* The socket, for the tests. */
int pipar_chan_fd(const struct pipar_chan *ch);

#endif
