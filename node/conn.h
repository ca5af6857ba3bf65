/* Client connections: the listener framework every service runs on.
 *
 * A connection goes through these phases before its service sees a byte:
 *   1. PROXY header (v1/v2) when the listener expects one and the peer is a
 *      configured load balancer: the real client address replaces the peer's;
 *   2. access lists (global, then the service's) and connection limits, checked
 *      with the real client address;
 *   3. TLS handshake on implicit-TLS listeners (SNI picks the certificate).
 * Then the service's on_open runs, and on_data receives plaintext as it arrives.
 * A service may later call conn_starttls() to upgrade a plain connection.
 *
 * Output is queued; past a high-water mark the connection stops reading until the
 * client has taken the queued bytes (backpressure), then on_drained runs.
 * All functions must be called on the connection's own I/O thread. */
#ifndef FLOE_NODE_CONN_H
#define FLOE_NODE_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "node/log.h"

struct conn;
struct io_loop;
struct metrics_service;

#define CONN_HIGH_WATER (256 * 1024)
#define CONN_LOW_WATER (64 * 1024)

struct service_ops {
    size_t session_size; /* per-connection state, zeroed, returned by conn_session() */
    /* The session starts: greet the client. */
    void (*on_open)(struct conn *c);
    /* Plaintext input. After calling conn_starttls() the service must discard the
     * rest of its buffered input (RFC 3207 §4.2: no pipelined plaintext survives). */
    void (*on_data)(struct conn *c, const char *data, size_t len);
    /* Optional: the output queue fell below CONN_LOW_WATER. */
    void (*on_drained)(struct conn *c);
    /* Optional: the node is stopping; say the protocol's goodbye and close.
     * Default: conn_close(). */
    void (*on_shutdown)(struct conn *c);
    /* Optional: no input for the idle timeout. Default: log and close. */
    void (*on_timeout)(struct conn *c);
    /* Optional: refused by a connection limit; may write a protocol reply
     * ("421 ..."), the connection closes after it. */
    void (*on_refuse)(struct conn *c, const char *why);
    /* Optional: the connection is going away; release session resources. */
    void (*on_close)(struct conn *c);
};

void *conn_session(struct conn *c);
const char *conn_service(const struct conn *c);
const char *conn_id(const struct conn *c);   /* session id, unique on this node */
const char *conn_peer(const struct conn *c); /* real client address as text */
const struct sockaddr *conn_peer_addr(const struct conn *c);
const struct sockaddr *conn_local_addr(const struct conn *c);
bool conn_is_tls(const struct conn *c);
const char *conn_tls_sni(const struct conn *c); /* NULL when none */
/* The protocol TLS negotiated by ALPN (RFC 7301), e.g. "h2": *proto_r and *len_r;
 * length 0 when none (plain connection, or the client offered nothing we accept). */
void conn_tls_alpn(const struct conn *c, const unsigned char **proto_r, unsigned *len_r);
struct io_loop *conn_loop(const struct conn *c);
struct metrics_service *conn_metrics(const struct conn *c);
bool conn_closing(const struct conn *c);
size_t conn_output_pending(const struct conn *c);

/* Queues output. 0 ok, -1 when the connection is closing or out of memory. */
int conn_write(struct conn *c, const void *data, size_t len);
int conn_printf(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Starts TLS on a plain connection after the service has queued its "go ahead" reply.
 * -1 when already TLS or no certificate store. */
int conn_starttls(struct conn *c);
/* Closes after queued output has been sent (bounded by a timeout). */
void conn_close(struct conn *c);
/* Closes now, dropping queued output. */
void conn_abort(struct conn *c);
/* Stops / resumes delivering input (e.g. while a command waits on a worker). */
void conn_pause(struct conn *c);
void conn_resume(struct conn *c);
/* Keeps the connection's memory alive across asynchronous work (see workers.h);
 * each hold is matched by one release on the connection's thread. */
void conn_hold(struct conn *c);
void conn_release(struct conn *c);
/* The service's request timeout ([service X] request_timeout), in seconds. */
unsigned conn_request_timeout(const struct conn *c);
/* Overrides the idle timeout of this session (seconds; e.g. IMAP IDLE). */
void conn_set_idle_timeout(struct conn *c, unsigned seconds);

/* Logs with the session's service, id and client address. */
void conn_log(struct conn *c, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
