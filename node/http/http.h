/* HTTP/1.1 sessions on the listener framework, with a routing table by path
 * prefix. A service that speaks HTTP (admin, and later web/DAV/ActiveSync) uses
 * http_session_ops as its service_ops and registers routes for its name.
 *
 * Requests are read by proto/http/request.c (http-parser with bounded header
 * count/size and body size). One request is handled at a time per connection:
 * a handler answers at once with http_respond(), or later (after work on a
 * worker) — input is paused until the answer is queued, which also keeps
 * pipelined requests in order. */
#ifndef FLOE_NODE_HTTP_H
#define FLOE_NODE_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "node/conn.h"
#include "proto/http/request.h"

#define HTTP_MAX_BODY_DEFAULT (1024 * 1024)

struct http_exchange; /* one request and its answer */

typedef void (*http_handler)(struct http_exchange *x);

/* Registers handler for requests of service whose path equals prefix or starts
 * with prefix followed by '/' (prefix "/" matches everything). The longest match
 * wins. Call at start-up only. 0 ok, -1 when the table is full. */
int http_route(const char *service, const char *prefix, http_handler handler);

const struct http_request *http_request(const struct http_exchange *x);
struct conn *http_conn(const struct http_exchange *x);
/* A request header (case-insensitive name), NULL when absent. */
const char *http_header(const struct http_exchange *x, const char *name);

/* Answers the request. extra_headers: NULL or "Name: value\r\n..." lines.
 * Adds Date, Content-Length, Connection, Server. After this x is gone. */
void http_respond(struct http_exchange *x, int status, const char *content_type,
                  const char *body, size_t len, const char *extra_headers);
/* An answer with a short text body naming the status ("404 Not Found\n"). */
void http_respond_status(struct http_exchange *x, int status);
const char *http_status_text(int status);

/* For handlers that answer later: keeps the connection alive until http_respond(). */
void http_defer(struct http_exchange *x);

extern const struct service_ops http_session_ops;

#endif
