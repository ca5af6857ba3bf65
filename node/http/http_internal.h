/* What node/http/http.c (HTTP/1.1, routing, the exchange API) and
 * node/http/h2.c (HTTP/2) share. Not for handlers: they use http.h. */
#ifndef FLOE_NODE_HTTP_INTERNAL_H
#define FLOE_NODE_HTTP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "node/http/http.h"

struct config;
struct runtime;
struct h1_session;
struct h2_session;
struct h2_stream;

#define HTTP_HOST_MAX 255
#define HTTP_MAX_VHOSTS 32

/* One [service X] vhost.NAME.* rule set (docs/CONFIG.md); strings point into the
 * configuration the session holds a reference to. */
struct http_vhost {
    const char *name;
    const char *hosts;  /* comma/blank separated host patterns */
    const char *routes; /* NULL: all routes; else path prefixes served by the route table */
    const char *root;   /* NULL: none; else a document root for what no route serves */
};

/* The per-connection view of the service's HTTP settings. */
struct http_site {
    const char *service;
    const char *root; /* document root for hosts no vhost claims; NULL: none */
    bool diagnostics; /* the /_floe/ routes answer (diag.c) */
    size_t nvhosts;
    struct http_vhost vhosts[HTTP_MAX_VHOSTS];
};

enum http_proto { HTTP_PROTO_1 = 1, HTTP_PROTO_2 = 2 };

struct http_exchange {
    struct conn *conn;
    struct http_request *req;
    const struct http_site *site;
    enum http_proto proto;
    struct h1_session *h1; /* HTTP/1.1: the session */
    struct h2_stream *h2;  /* HTTP/2: the stream */
    uint64_t started_ns;
    char host[HTTP_HOST_MAX + 1];

    /* the route */
    http_handler handler;
    unsigned route_flags;
    size_t max_body;
    const char *root; /* serve from this document root when handler is NULL */

    /* the answer */
    int status;
    long long length;        /* announced body length, -1 unknown */
    unsigned long long sent; /* body bytes accepted */
    bool active;             /* dispatched, not yet ended */
    bool deferred;           /* http_defer() */
    bool started;            /* status line / HEADERS sent */
    bool no_body;            /* HEAD, 1xx, 204, 304 */
    bool chunked;            /* HTTP/1.1 chunked transfer coding */
    bool keep;               /* HTTP/1.1: keep the connection after this answer */
    bool gone;               /* the client has gone */
    bool drain_wanted;
    http_drain_fn drain_fn;
    void *drain_arg;

    /* the request body in pieces */
    bool body_stream;  /* the route streams its body */
    bool body_reading; /* http_body_read() ran */
    bool body_paused;
    bool body_done; /* all of it arrived, or on_end ran */
    bool continue_sent;
    http_body_fn body_fn;
    http_body_end_fn body_end_fn;
    void *body_arg;
};

/* ---- http.c, for h2.c ---- */

/* Normalises a Host / :authority value into out (lower case, no port, no final dot);
 * "" when it is not a plausible host. */
void http_host_normalise(const char *value, char out[HTTP_HOST_MAX + 1]);
/* Picks the route (or document root) of a request whose headers are in: sets
 * handler, route_flags, max_body, root. */
void http_x_route(struct http_exchange *x);
/* Runs the handler (or serves the static file, or answers 404). */
void http_x_run(struct http_exchange *x);
/* Access log and metrics of an exchange that ends now. */
void http_x_log(struct http_exchange *x);
/* Runs the body end callback once (error as in http_body_end_fn). */
void http_x_body_end(struct http_exchange *x, int error);
/* Runs the drain callback when one is wanted. */
void http_x_drained(struct http_exchange *x);
/* "Date: ..." value for now (cached per second, per thread). */
const char *http_date_now(void);
/* Reads service's site settings from cfg (validated by http_configure); the strings
 * point into cfg. */
void http_site_load(struct http_site *site, const struct config *cfg, const char *service);
/* The session's site settings. */
const struct http_site *http_site_of(struct conn *c);
/* The idle timeout of the connection's service, in seconds. */
unsigned http_idle_timeout(struct conn *c);
/* Counts an exchange in (x->active, a hold on the connection) ... */
void http_x_begin(struct http_exchange *x);
/* ... and out, after the exchange's memory may be gone; may free the session's
 * resources and the connection. */
void http_exchange_done(struct conn *c);

/* ---- h2.c ---- */

/* HTTP/2 on c (ALPN "h2", or the prior-knowledge preface on a plain listener).
 * NULL when out of memory. */
struct h2_session *h2_session_new(struct conn *c, const struct http_site *site);
void h2_session_data(struct h2_session *s, const char *data, size_t len);
void h2_session_drained(struct h2_session *s);
void h2_session_shutdown(struct h2_session *s);
void h2_session_timeout(struct h2_session *s);
/* The connection has closed: every exchange is gone (their handlers hear of it). */
void h2_session_gone(struct h2_session *s);
/* Frees the session (no exchange is active any more); NULLs *s. */
void h2_session_free(struct h2_session **s);

int h2_x_start(struct http_exchange *x, int status, const char *content_type, long long length,
               const char *extra_headers, const char *body, size_t body_len);
int h2_x_write(struct http_exchange *x, const void *data, size_t len);
void h2_x_end(struct http_exchange *x);
void h2_x_body_flow(struct http_exchange *x); /* reading / paused changed */

/* ---- static.c ---- */

/* Serves GET/HEAD of x's path from the document root. */
void http_static_serve(struct http_exchange *x, const char *root);

/* ---- diag.c ---- */

/* The diagnostic routes (/_floe/...) of service, answered only when the service
 * has diagnostics = yes. */
void http_diag_init(const char *service);

#endif
