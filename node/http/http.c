/* HTTP/1.1 sessions (see http.h).
 *
 * http-parser calls back with pieces of the request; they are collected into the
 * session's one exchange, bounded by HTTP_MAX_HEADER_BYTES and the body limit.
 * When a message is complete the parser is paused, the handler runs, and parsing
 * continues from the saved rest of the input once the answer is queued. */
#include "node/http/http.h"

#include <ctype.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

#include "node/metrics.h"

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
    struct http_request req;
    bool in_use, deferred, header_value_open;
    size_t header_bytes;
    uint64_t started_ns;
};

struct http_session {
    http_parser parser;
    struct http_exchange x;
    char *pending; /* input not yet parsed while a request is being answered */
    size_t pending_len;
    size_t max_body;
    bool closing;
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
    return &x->req;
}

struct conn *http_conn(const struct http_exchange *x)
{
    return x->conn;
}

const char *http_header(const struct http_exchange *x, const char *name)
{
    for (size_t i = 0; i < x->req.nheaders; i++)
        if (!strcasecmp(x->req.headers[i].name, name))
            return x->req.headers[i].value;
    return NULL;
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

static void request_reset(struct http_exchange *x)
{
    free(x->req.url);
    free(x->req.path);
    free(x->req.query);
    for (size_t i = 0; i < x->req.nheaders; i++) {
        free(x->req.headers[i].name);
        free(x->req.headers[i].value);
    }
    free(x->req.body);
    struct conn *c = x->conn;
    memset(x, 0, sizeof(*x));
    x->conn = c;
}

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

/* ---- parser callbacks ---- */

static struct http_session *sess_of(http_parser *p)
{
    return p->data;
}

static int grow(char **s, size_t *len, const char *at, size_t n)
{
    char *t = realloc(*s, *len + n + 1);
    if (!t)
        return -1;
    memcpy(t + *len, at, n);
    *len += n;
    t[*len] = '\0';
    *s = t;
    return 0;
}

static int count_header_bytes(struct http_session *s, size_t n)
{
    s->x.header_bytes += n;
    return s->x.header_bytes > HTTP_MAX_HEADER_BYTES ? -1 : 0;
}

static int on_message_begin(http_parser *p)
{
    struct http_session *s = sess_of(p);
    request_reset(&s->x);
    s->x.in_use = true;
    s->x.started_ns = now_ns();
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    struct http_session *s = sess_of(p);
    size_t len = s->x.req.url ? strlen(s->x.req.url) : 0;
    if (count_header_bytes(s, n) < 0 || grow(&s->x.req.url, &len, at, n) < 0)
        return -1;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct http_session *s = sess_of(p);
    struct http_request *r = &s->x.req;
    if (count_header_bytes(s, n) < 0)
        return -1;
    if (s->x.header_value_open || r->nheaders == 0 || !r->headers[r->nheaders - 1].name) {
        if (r->nheaders >= HTTP_MAX_HEADERS)
            return -1;
        r->nheaders++;
        s->x.header_value_open = false;
    }
    struct http_header *h = &r->headers[r->nheaders - 1];
    size_t len = h->name ? strlen(h->name) : 0;
    return grow(&h->name, &len, at, n);
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct http_session *s = sess_of(p);
    struct http_request *r = &s->x.req;
    if (count_header_bytes(s, n) < 0 || r->nheaders == 0)
        return -1;
    struct http_header *h = &r->headers[r->nheaders - 1];
    size_t len = h->value ? strlen(h->value) : 0;
    s->x.header_value_open = true;
    return grow(&h->value, &len, at, n);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Splits and percent-decodes the path; refuses NUL, encoded '/' tricks and "..". */
static int split_url(struct http_request *r)
{
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (!r->url || http_parser_parse_url(r->url, strlen(r->url), 0, &u) != 0 ||
        !(u.field_set & (1 << UF_PATH)))
        return -1;
    const char *p = r->url + u.field_data[UF_PATH].off;
    size_t n = u.field_data[UF_PATH].len;
    r->path = malloc(n + 1);
    if (!r->path)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '%') {
            r->path[o++] = p[i];
            continue;
        }
        int hi = i + 1 < n ? hexval((unsigned char)p[i + 1]) : -1;
        int lo = i + 2 < n ? hexval((unsigned char)p[i + 2]) : -1;
        if (hi < 0 || lo < 0 || hi * 16 + lo == 0)
            return -1; /* malformed escape or an encoded NUL */
        r->path[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    r->path[o] = '\0';
    if (r->path[0] != '/' || strstr(r->path, "/../") ||
        (o >= 3 && !strcmp(r->path + o - 3, "/..")))
        return -1;
    if (u.field_set & (1 << UF_QUERY)) {
        r->query = strndup(r->url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
        if (!r->query)
            return -1;
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct http_session *s = sess_of(p);
    struct http_request *r = &s->x.req;
    for (size_t i = 0; i < r->nheaders; i++)
        if (!r->headers[i].value && !(r->headers[i].value = strdup("")))
            return -1;
    r->method = http_method_str((enum http_method)p->method);
    r->version_minor = p->http_minor;
    if (p->content_length != ULLONG_MAX && p->content_length > s->max_body) {
        p->http_errno = HPE_CB_headers_complete;
        return -1;
    }
    /* RFC 9110 §10.1.1: answer 100-continue before the client sends the body. */
    const char *expect = http_header(&s->x, "Expect");
    if (expect && !strcasecmp(expect, "100-continue") && p->http_major == 1 && p->http_minor >= 1)
        conn_write(s->x.conn, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct http_session *s = sess_of(p);
    if (s->x.req.body_len + n > s->max_body)
        return -1;
    return grow(&s->x.req.body, &s->x.req.body_len, at, n);
}

static int on_message_complete(http_parser *p)
{
    struct http_session *s = sess_of(p);
    s->x.req.keep_alive = http_should_keep_alive(p);
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- responses ---- */

static void parse_pending(struct conn *c);

void http_respond(struct http_exchange *x, int status, const char *content_type,
                  const char *body, size_t len, const char *extra_headers)
{
    struct conn *c = x->conn;
    struct http_session *s = conn_session(c);
    bool keep = x->req.keep_alive && !s->closing && !conn_closing(c);
    char date[64];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    bool head = x->req.method && !strcmp(x->req.method, "HEAD");
    /* Logged first: a write that fails closes the session, which resets x. */
    conn_log(c, LOG_SUMMARY, "%s %s %d %zu", x->req.method ? x->req.method : "-",
             x->req.url ? x->req.url : "-", status, len);
    metrics_command(conn_metrics(c), (now_ns() - x->started_ns) / 1000, status >= 400);
    conn_printf(c,
                "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: Floe\r\nContent-Length: %zu\r\n"
                "%s%s%s%s%s\r\n",
                status, http_status_text(status), date, len, content_type ? "Content-Type: " : "",
                content_type ? content_type : "", content_type ? "\r\n" : "",
                keep ? (x->req.version_minor == 0 ? "Connection: keep-alive\r\n" : "")
                     : "Connection: close\r\n",
                extra_headers ? extra_headers : "");
    if (body && len && !head)
        conn_write(c, body, len);
    bool deferred = x->deferred;
    request_reset(x);
    if (!keep)
        conn_close(c);
    if (deferred) {
        conn_resume(c);
        parse_pending(c);
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
    http_parser_init(&s->parser, HTTP_REQUEST);
    s->parser.data = s;
    s->x.conn = c;
    s->max_body = HTTP_MAX_BODY_DEFAULT;
}

static void bad_request(struct http_session *s, int status)
{
    struct conn *c = s->x.conn;
    s->closing = true;
    if (!s->x.in_use) {
        request_reset(&s->x);
        s->x.in_use = true;
        s->x.started_ns = now_ns();
    }
    s->x.req.keep_alive = false;
    http_respond_status(&s->x, status);
    free(s->pending);
    s->pending = NULL;
    s->pending_len = 0;
    conn_close(c);
}

static void parse(struct conn *c, const char *data, size_t len);

static void dispatch(struct http_session *s)
{
    struct http_exchange *x = &s->x;
    if (split_url(&x->req) < 0) {
        bad_request(s, 400);
        return;
    }
    http_handler h = find_route(conn_service(x->conn), x->req.path);
    if (!h) {
        http_respond_status(x, 404);
        return;
    }
    h(x);
}

static void parse(struct conn *c, const char *data, size_t len)
{
    struct http_session *s = conn_session(c);
    while (len > 0 && !conn_closing(c) && !s->x.deferred) {
        size_t n = http_parser_execute(&s->parser, &settings, data, len);
        enum http_errno e = HTTP_PARSER_ERRNO(&s->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&s->parser, 0);
            data += n;
            len -= n;
            dispatch(s);
            continue;
        }
        if (e != HPE_OK) {
            int status = 400;
            if (e == HPE_CB_headers_complete)
                status = 413;
            else if (e == HPE_CB_header_field || e == HPE_CB_header_value || e == HPE_CB_url ||
                     e == HPE_HEADER_OVERFLOW)
                status = s->x.header_bytes > HTTP_MAX_HEADER_BYTES ||
                                 s->x.req.nheaders >= HTTP_MAX_HEADERS
                             ? 431
                             : 400;
            else if (e == HPE_CB_body)
                status = 413;
            else if (e == HPE_INVALID_VERSION)
                status = 505;
            conn_log(c, LOG_DEBUG, "bad request: %s", http_errno_description(e));
            bad_request(s, status);
            return;
        }
        data += n;
        len -= n;
        if (n == 0)
            break;
    }
    if (len > 0 && !conn_closing(c)) {
        /* Pipelined input behind a request still being answered. */
        char *t = malloc(len);
        if (!t) {
            conn_abort(c);
            return;
        }
        memcpy(t, data, len);
        free(s->pending);
        s->pending = t;
        s->pending_len = len;
    }
}

static void session_data(struct conn *c, const char *data, size_t len)
{
    struct http_session *s = conn_session(c);
    if (s->pending) {
        /* Only while deferred; the loop read is paused then, so this does not grow. */
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
    parse(c, data, len);
}

/* Input that arrived while a deferred request was being answered. */
static void parse_pending(struct conn *c)
{
    struct http_session *s = conn_session(c);
    if (s->pending && !s->x.deferred && !conn_closing(c)) {
        char *p = s->pending;
        size_t n = s->pending_len;
        s->pending = NULL;
        s->pending_len = 0;
        parse(c, p, n);
        free(p);
    }
}

static void session_close(struct conn *c)
{
    struct http_session *s = conn_session(c);
    free(s->pending);
    s->pending = NULL;
    if (!s->x.deferred)
        request_reset(&s->x);
}

const struct service_ops http_session_ops = {
    .session_size = sizeof(struct http_session),
    .on_open = session_open,
    .on_data = session_data,
    .on_close = session_close,
};
