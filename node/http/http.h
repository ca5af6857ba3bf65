/* HTTP sessions on the listener framework, with a routing table by host and
 * path prefix. A service that speaks HTTP (admin, web, and later DAV and
 * ActiveSync) uses http_session_ops as its service_ops and registers routes for
 * its name; the same handlers serve HTTP/1.1 (node/http/http.c, on
 * proto/http/request.c) and HTTP/2 (node/http/h2.c, on nghttp2, chosen by ALPN
 * on TLS listeners).
 *
 * One request and its answer are a struct http_exchange. A handler answers at
 * once with http_respond(), or later (after work on a worker, http_defer()), or
 * in pieces: http_respond_start(), http_write() as often as needed (watching
 * its return value for backpressure), http_end(). Until the answer is ended the
 * exchange stays valid even when the client goes away (writes then fail, and
 * http_gone() says so); ending it is always required.
 *
 * Request bodies are buffered into req->body (up to the route's max_body) before
 * the handler runs. A route registered with HTTP_ROUTE_STREAM_BODY runs its
 * handler as soon as the headers are in; the handler then takes the body in
 * pieces with http_body_read() and may pause it (flow control towards the
 * client: TCP for HTTP/1.1, the stream window for HTTP/2).
 *
 * On HTTP/1.1 one request is handled at a time per connection: input is not
 * read while a request is being answered, which also keeps pipelined requests
 * in order. On HTTP/2 streams run concurrently up to HTTP_H2_MAX_STREAMS.
 *
 * Virtual hosts: a route may be limited to a host pattern, and the web service's
 * configuration may restrict hosts to some route prefixes or serve them from a
 * document root (docs/CONFIG.md, "Virtual hosts"). */
#ifndef FLOE_NODE_HTTP_H
#define FLOE_NODE_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "node/conn.h"
#include "proto/http/request.h"

#define HTTP_MAX_BODY_DEFAULT (1024 * 1024)
#define HTTP_H2_MAX_STREAMS 100 /* SETTINGS_MAX_CONCURRENT_STREAMS */

struct http_exchange; /* one request and its answer */
struct service_config;

typedef void (*http_handler)(struct http_exchange *x);

/* ---- routes ---- */

#define HTTP_ROUTE_STREAM_BODY                                                                     \
    1u                       /* run the handler at the end of the headers; body via                \
                                http_body_read() */
#define HTTP_ROUTE_NOCASE 2u /* compare the prefix case-insensitively */

struct http_route_opts {
    const char *host; /* NULL or "*": any host; else a pattern (see http_host_match) */
    unsigned flags;   /* HTTP_ROUTE_* */
    size_t max_body;  /* 0: HTTP_MAX_BODY_DEFAULT; with STREAM_BODY the total allowed */
};

/* Registers handler for requests of service whose path equals prefix or starts
 * with prefix followed by '/' (prefix "/" matches everything, a prefix ending in
 * '/' matches everything below it). Among the routes whose host pattern matches
 * the request's host, the longest prefix wins; with equal prefixes a route for a
 * host pattern wins over one for any host. Call at start-up only. 0 ok, -1 when
 * the table is full or an argument is too long. */
int http_route(const char *service, const char *prefix, http_handler handler);
int http_route_ex(const char *service, const char *prefix, http_handler handler,
                  const struct http_route_opts *opts);

/* Host patterns (case-insensitive; a port and a final dot in the request's host
 * are ignored): "mail.example.com" exactly; "*.example.com" any name below
 * example.com (one or more labels); "autoconfig.*" any name whose first label is
 * autoconfig; "*" anything. */
bool http_host_match(const char *pattern, const char *host);

/* ---- the request ---- */

const struct http_request *http_request(const struct http_exchange *x);
struct conn *http_conn(const struct http_exchange *x);
/* A request header (case-insensitive name), NULL when absent. */
const char *http_header(const struct http_exchange *x, const char *name);
/* The host the request is for (Host or :authority), lower-cased, without port
 * and final dot; "" when the client sent none. */
const char *http_host(const struct http_exchange *x);
/* 1 for HTTP/1.x, 2 for HTTP/2. */
int http_version(const struct http_exchange *x);
/* True once the client has gone (connection closed, stream reset). */
bool http_gone(const struct http_exchange *x);

/* ---- answering at once ---- */

/* Answers the request. extra_headers: NULL or "Name: value\r\n..." lines.
 * Adds Date, Content-Length, Connection, Server. After this x is gone. */
void http_respond(struct http_exchange *x, int status, const char *content_type, const char *body,
                  size_t len, const char *extra_headers);
/* An answer with a short text body naming the status ("404 Not Found\n"). */
void http_respond_status(struct http_exchange *x, int status);
/* 301/302/307/308 to location (a path or an absolute URL). */
void http_redirect(struct http_exchange *x, int status, const char *location);
const char *http_status_text(int status);

/* For handlers that answer later: keeps the connection alive until http_respond()
 * or http_end(). */
void http_defer(struct http_exchange *x);

/* ---- answering in pieces ---- */

typedef void (*http_drain_fn)(struct http_exchange *x, void *arg);

/* Sends the status line and headers. length: the body's size when known, or -1
 * (HTTP/1.1: chunked transfer coding; HTTP/1.0: the end of the connection ends
 * the body; HTTP/2: DATA frames until http_end). 0 ok, -1 when the client has
 * gone or the answer was started already. */
int http_respond_start(struct http_exchange *x, int status, const char *content_type,
                       long long length, const char *extra_headers);
/* Queues len bytes of body. Returns 0 when more is welcome, 1 when the output is
 * over its high-water mark (stop writing until the drain callback runs), -1 when
 * the client has gone (end the exchange). Writing more than a known length is an
 * error (-1). For HEAD the bytes are dropped. */
int http_write(struct http_exchange *x, const void *data, size_t len);
/* Registers fn to run once after http_write() returned 1, when the output has
 * fallen below its low-water mark (or the client has gone: check http_gone). */
void http_on_drain(struct http_exchange *x, http_drain_fn fn, void *arg);
/* Ends the answer. After this x is gone. A body shorter than the announced
 * length closes the connection (HTTP/1.1) or resets the stream (HTTP/2). */
void http_end(struct http_exchange *x);

/* ---- request bodies in pieces (HTTP_ROUTE_STREAM_BODY) ---- */

/* A piece of the body; data is valid during the call only. */
typedef void (*http_body_fn)(struct http_exchange *x, const char *data, size_t len, void *arg);
/* The body is over: error 0 when all of it arrived; 400 (malformed), 413 (over
 * the route's max_body) when it was refused; -1 when the client went away. The
 * handler answers (or ends) x afterwards as usual. */
typedef void (*http_body_end_fn)(struct http_exchange *x, int error, void *arg);

/* Starts delivering the body (answering "100 Continue" to a client that waits
 * for it). on_end runs exactly once, at once when there is no body. A handler
 * that answers without reading the body makes the HTTP/1.1 connection close
 * after the answer (the unread body cannot be told apart from the next request)
 * and resets the HTTP/2 stream after the answer (RFC 9113 §8.1). */
void http_body_read(struct http_exchange *x, http_body_fn on_data, http_body_end_fn on_end,
                    void *arg);
/* Stops / resumes delivery (backpressure towards the client). */
void http_body_pause(struct http_exchange *x);
void http_body_resume(struct http_exchange *x);

/* ---- configuration ---- */

/* Validates the HTTP keys of an HTTP service's section (virtual hosts, document
 * root, /.well-known redirects; docs/CONFIG.md). For the service's configure
 * hook. 0 ok, -1 with a message. */
int http_configure(struct service_config *sc, char *err, size_t errlen);

extern const struct service_ops http_session_ops;

#endif
