/* HTTP/1.1 sessions (see http.h).
 *
 * proto/http/request.c turns input into requests; this file routes each one to
 * its handler and writes the answer. Feeding stops after each request, so a
 * request answered later (deferred) holds back the ones pipelined behind it;
 * their bytes wait in `pending` while input is paused. */
#include "node/http/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

#include "node/metrics.h"
#include "node/server.h"

#define MAX_ROUTES 128

struct route {
    char service[32];
    char prefix[128];
    size_t prefix_len;
    http_handler handler;
};
static struct route routes[MAX_ROUTES];
static size_t nroutes;

struct http_exchange {
    struct conn *conn;
    struct http_request *req; /* owned by the session's parser */
    bool active, deferred;
    uint64_t started_ns;
};

struct http_session {
    struct http_req_parser *parser;
    struct http_exchange x;
    char *pending; /* input not yet fed while a request is being answered */
    size_t pending_len;
    uint64_t request_began_ns; /* first byte of the request being read; 0 between requests */
    bool closed; /* on_close ran while a request was deferred */
};

int http_route(const char *service, const char *prefix, http_handler handler)
{
    if (nroutes >= MAX_ROUTES || strlen(prefix) >= sizeof(routes[0].prefix))
        return -1;
    struct route *r = &routes[nroutes++];
    snprintf(r->service, sizeof(r->service), "%s", service);
    snprintf(r->prefix, sizeof(r->prefix), "%s", prefix);
    r->prefix_len = strlen(prefix);
    r->handler = handler;
    return 0;
}

static http_handler find_route(const char *service, const char *path)
{
    const struct route *best = NULL;
    for (size_t i = 0; i < nroutes; i++) {
        const struct route *r = &routes[i];
        if (strcmp(r->service, service))
            continue;
        bool match = !strcmp(r->prefix, "/") ||
                     (!strncmp(path, r->prefix, r->prefix_len) &&
                      (path[r->prefix_len] == '\0' || path[r->prefix_len] == '/' ||
                       r->prefix[r->prefix_len - 1] == '/'));
        if (match && (!best || r->prefix_len > best->prefix_len))
            best = r;
    }
    return best ? best->handler : NULL;
}

const struct http_request *http_request(const struct http_exchange *x)
{
    return x->req;
}

struct conn *http_conn(const struct http_exchange *x)
{
    return x->conn;
}

const char *http_header(const struct http_exchange *x, const char *name)
{
    return http_request_header(x->req, name);
}

const char *http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

/* ---- responses ---- */

static void feed(struct conn *c, const char *data, size_t len);

/* Writes the status line and headers (and the body unless HEAD). */
static void write_response(struct conn *c, const struct http_request *req, bool keep, int status,
                           const char *content_type, const char *body, size_t len,
                           const char *extra_headers)
{
    char date[64];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    const char *conn_hdr = !keep                                   ? "Connection: close\r\n"
                           : req && req->version_minor == 0        ? "Connection: keep-alive\r\n"
                                                                   : "";
    conn_printf(c,
                "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: Floe\r\nContent-Length: %zu\r\n"
                "%s%s%s%s%s\r\n",
                status, http_status_text(status), date, len, content_type ? "Content-Type: " : "",
                content_type ? content_type : "", content_type ? "\r\n" : "", conn_hdr,
                extra_headers ? extra_headers : "");
    bool head = req && req->method && !strcmp(req->method, "HEAD");
    if (body && len && !head)
        conn_write(c, body, len);
}

void http_respond(struct http_exchange *x, int status, const char *content_type,
                  const char *body, size_t len, const char *extra_headers)
{
    struct conn *c = x->conn;
    struct http_session *s = conn_session(c);
    const struct http_request *req = x->req;
    bool keep = req->keep_alive && !conn_closing(c) && !server_stopping();
    conn_log(c, LOG_SUMMARY, "%s %s %d %zu", req->method ? req->method : "-",
             req->url ? req->url : "-", status, len);
    metrics_command(conn_metrics(c), (now_ns() - x->started_ns) / 1000, status >= 400);
    write_response(c, req, keep, status, content_type, body, len, extra_headers);
    bool deferred = x->deferred;
    x->active = x->deferred = false;
    /* A failed write closes the session, and a closed session has freed its parser. */
    if (s->parser)
        http_req_parser_next(s->parser);
    if (!keep)
        conn_close(c);
    if (deferred) {
        conn_resume(c);
        if (s->pending && !conn_closing(c)) {
            char *p = s->pending;
            size_t n = s->pending_len;
            s->pending = NULL;
            s->pending_len = 0;
            feed(c, p, n);
            free(p);
        }
        if (s->closed)
            http_req_parser_free(&s->parser);
        conn_release(c);
    }
}

void http_respond_status(struct http_exchange *x, int status)
{
    char body[128];
    int n = snprintf(body, sizeof(body), "%d %s\n", status, http_status_text(status));
    http_respond(x, status, "text/plain; charset=utf-8", body, (size_t)n, NULL);
}

void http_defer(struct http_exchange *x)
{
    if (x->deferred)
        return;
    x->deferred = true;
    conn_hold(x->conn);
    conn_pause(x->conn);
}

/* ---- session ---- */

static void session_open(struct conn *c)
{
    struct http_session *s = conn_session(c);
    s->x.conn = c;
    s->parser = http_req_parser_new(HTTP_MAX_BODY_DEFAULT);
    if (!s->parser)
        conn_abort(c);
}

static void dispatch(struct http_session *s)
{
    struct http_exchange *x = &s->x;
    s->request_began_ns = 0;
    x->req = http_req_parser_request(s->parser);
    x->active = true;
    x->started_ns = now_ns();
    http_handler h = find_route(conn_service(x->conn), x->req->path);
    if (!h) {
        http_respond_status(x, 404);
        return;
    }
    h(x);
}

static void feed(struct conn *c, const char *data, size_t len)
{
    struct http_session *s = conn_session(c);
    while (len > 0 && !conn_closing(c) && !s->x.deferred) {
        size_t used;
        int status;
        enum http_req_event ev = http_req_parser_feed(s->parser, data, len, &used, &status);
        data += used;
        len -= used;
        if (ev == HTTP_REQ_MORE)
            break;
        if (ev == HTTP_REQ_HEADERS) {
            conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            continue;
        }
        if (ev == HTTP_REQ_ERROR) {
            conn_log(c, LOG_SUMMARY, "bad request: answering %d", status);
            metrics_command(conn_metrics(c), 0, true);
            write_response(c, NULL, false, status, "text/plain; charset=utf-8",
                           http_status_text(status), strlen(http_status_text(status)), NULL);
            conn_close(c);
            return;
        }
        dispatch(s);
    }
    if (len > 0 && !conn_closing(c)) {
        /* Pipelined input behind a deferred request: kept until it is answered. */
        char *t = realloc(s->pending, s->pending_len + len);
        if (!t) {
            conn_abort(c);
            return;
        }
        memcpy(t + s->pending_len, data, len);
        s->pending = t;
        s->pending_len += len;
    }
}

static void session_data(struct conn *c, const char *data, size_t len)
{
    struct http_session *s = conn_session(c);
    /* A client that trickles a request a byte at a time never trips the idle timeout;
     * the whole request must arrive within request_timeout. */
    uint64_t now = now_ns();
    if (!s->request_began_ns && !s->x.active)
        s->request_began_ns = now;
    else if (s->request_began_ns &&
             now - s->request_began_ns > (uint64_t)conn_request_timeout(c) * 1000000000ull) {
        conn_log(c, LOG_SUMMARY, "request not complete after %u s: answering 408",
                 conn_request_timeout(c));
        metrics_command(conn_metrics(c), 0, true);
        write_response(c, NULL, false, 408, "text/plain; charset=utf-8", "Request Timeout", 15,
                       NULL);
        conn_close(c);
        return;
    }
    if (s->pending) {
        /* Input is paused while a request is deferred; this was already in flight. */
        char *t = realloc(s->pending, s->pending_len + len);
        if (!t) {
            conn_abort(c);
            return;
        }
        memcpy(t + s->pending_len, data, len);
        s->pending = t;
        s->pending_len += len;
        return;
    }
    feed(c, data, len);
}

static void session_close(struct conn *c)
{
    struct http_session *s = conn_session(c);
    free(s->pending);
    s->pending = NULL;
    s->pending_len = 0;
    /* A deferred exchange still points into the parser: its handler answers into
     * a closing connection, then releases it; the parser goes with the session. */
    if (!s->x.deferred)
        http_req_parser_free(&s->parser);
    else
        s->closed = true;
}

const struct service_ops http_session_ops = {
    .session_size = sizeof(struct http_session),
    .on_open = session_open,
    .on_data = session_data,
    .on_close = session_close,
};
