/* HTTP sessions (see http.h): the route table, virtual hosts, the exchange API
 * shared by HTTP/1.1 and HTTP/2, and the HTTP/1.1 session itself.
 *
 * A connection starts as HTTP/1.1, or as HTTP/2 when TLS negotiated "h2" by
 * ALPN (RFC 9113 §3.2) or a plain connection opens with the HTTP/2 connection
 * preface ("prior knowledge", RFC 9113 §3.3); h2.c does the rest of HTTP/2.
 *
 * HTTP/1.1: proto/http/request.c turns input into events. The reader stops at
 * the end of every request's headers; the request is routed there. A buffered
 * route gets its handler run once the whole request is in; a streaming route
 * (HTTP_ROUTE_STREAM_BODY) right away, and the body then flows to the handler
 * while it reads. Feeding stops whenever the exchange cannot take input (it is
 * being answered, or its body is paused); the bytes not fed wait in `pending`
 * and the connection stops reading, so a client cannot make us buffer more than
 * one read's worth. Ending an exchange feeds what waits, which keeps pipelined
 * requests in order.
 *
 * Lifetime: every exchange holds the connection (conn_hold) from dispatch to its
 * end, so the session memory (which lives inside the connection) stays valid for
 * a handler that answers after the client has gone; the parser, the HTTP/2
 * session and the configuration snapshot go when the connection has closed and
 * the last exchange has ended. */
#include "node/http/http.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

#include "node/config.h"
#include "node/http/http_internal.h"
#include "node/loop.h"
#include "node/metrics.h"
#include "node/server.h"

#define MAX_ROUTES 128
#define H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN 24

struct route {
    char service[32];
    char host[128]; /* "" = any host */
    char prefix[128];
    size_t prefix_len;
    unsigned flags;
    size_t max_body;
    http_handler handler;
};
static struct route routes[MAX_ROUTES];
static size_t nroutes;

struct h1_session {
    struct conn *c;
    struct http_req_parser *parser;
    struct http_exchange x;
    char *pending; /* input not yet fed */
    size_t pending_len;
    uint64_t request_began_ns; /* first byte of the request being read; 0 between requests */
    bool feeding;
    bool broken;  /* the reader failed under a streaming exchange: close after its answer */
    bool discard; /* an exchange ended before its (empty) body was read: finish reading it */
    bool decided; /* HTTP/1.1 or HTTP/2 preface decided (plain listeners) */
};

struct http_session {
    enum http_proto proto;
    struct runtime *rt; /* the configuration the site settings point into */
    struct http_site site;
    unsigned nactive; /* exchanges dispatched and not yet ended */
    bool closed;      /* on_close ran */
    struct h1_session h1;
    struct h2_session *h2;
};

static void h1_kick(struct h1_session *s);

/* ---- routes ---- */

int http_route_ex(const char *service, const char *prefix, http_handler handler,
                  const struct http_route_opts *o)
{
    const char *host = o && o->host && strcmp(o->host, "*") ? o->host : "";
    if (nroutes >= MAX_ROUTES || strlen(prefix) >= sizeof(routes[0].prefix) ||
        strlen(service) >= sizeof(routes[0].service) || strlen(host) >= sizeof(routes[0].host) ||
        prefix[0] != '/')
        return -1;
    struct route *r = &routes[nroutes++];
    snprintf(r->service, sizeof(r->service), "%s", service);
    snprintf(r->host, sizeof(r->host), "%s", host);
    snprintf(r->prefix, sizeof(r->prefix), "%s", prefix);
    r->prefix_len = strlen(prefix);
    r->flags = o ? o->flags : 0;
    r->max_body = o && o->max_body ? o->max_body : HTTP_MAX_BODY_DEFAULT;
    r->handler = handler;
    return 0;
}

int http_route(const char *service, const char *prefix, http_handler handler)
{
    return http_route_ex(service, prefix, handler, NULL);
}

/* path is under prefix: equal, or followed by '/', or prefix ends in '/'. */
static bool under(const char *path, const char *prefix, size_t plen, bool nocase)
{
    if (plen == 1 && prefix[0] == '/')
        return true;
    if (nocase ? strncasecmp(path, prefix, plen) : strncmp(path, prefix, plen))
        return false;
    return path[plen] == '\0' || path[plen] == '/' || prefix[plen - 1] == '/';
}

static const struct route *find_route(const char *service, const char *host, const char *path)
{
    const struct route *best = NULL;
    for (size_t i = 0; i < nroutes; i++) {
        const struct route *r = &routes[i];
        if (strcmp(r->service, service) ||
            !under(path, r->prefix, r->prefix_len, r->flags & HTTP_ROUTE_NOCASE) ||
            (r->host[0] && !http_host_match(r->host, host)))
            continue;
        if (!best || r->prefix_len > best->prefix_len ||
            (r->prefix_len == best->prefix_len && r->host[0] && !best->host[0]))
            best = r;
    }
    return best;
}

/* ---- hosts ---- */

void http_host_normalise(const char *v, char out[HTTP_HOST_MAX + 1])
{
    out[0] = '\0';
    if (!v)
        return;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n;
    if (*v == '[') { /* IPv6 literal: keep the brackets, drop the port */
        const char *e = strchr(v, ']');
        if (!e)
            return;
        n = (size_t)(e - v) + 1;
    } else {
        n = strcspn(v, ": \t");
    }
    while (n > 0 && v[n - 1] == '.' && v[0] != '[')
        n--; /* "example.com." is example.com */
    if (n == 0 || n > HTTP_HOST_MAX)
        return;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        /* RFC 3986 §3.2.2 reg-name characters (and IPv6 literal ones); anything
         * else is no host we could match */
        if (!isalnum(ch) && !strchr("-._~[]:%!$&'()*+,;=", ch)) {
            out[0] = '\0';
            return;
        }
        out[i] = (char)tolower(ch);
    }
    out[n] = '\0';
}

bool http_host_match(const char *pattern, const char *host)
{
    char h[HTTP_HOST_MAX + 1];
    http_host_normalise(host, h);
    if (!strcmp(pattern, "*"))
        return true;
    if (!h[0])
        return false;
    size_t pl = strlen(pattern), hl = strlen(h);
    if (pl >= 2 && pattern[0] == '*' && pattern[1] == '.') {
        /* "*.example.com": one or more labels before ".example.com" */
        size_t sl = pl - 1; /* ".example.com" */
        return hl > sl && !strcasecmp(h + hl - sl, pattern + 1);
    }
    if (pl >= 2 && pattern[pl - 1] == '*' && pattern[pl - 2] == '.') {
        /* "autoconfig.*": the first label, then at least one more */
        size_t sl = pl - 1; /* "autoconfig." */
        return hl > sl && !strncasecmp(h, pattern, sl);
    }
    return !strcasecmp(pattern, h);
}

/* Calls fn for each item of a list separated by commas, semicolons or blanks;
 * stops when fn returns false. */
static void each_item(const char *list, bool (*fn)(const char *item, size_t len, void *arg),
                      void *arg)
{
    for (const char *p = list; p && *p;) {
        p += strspn(p, ",; \t");
        size_t n = strcspn(p, ",; \t");
        if (n && !fn(p, n, arg))
            return;
        p += n;
    }
}

struct host_probe {
    const char *host;
    bool found;
};

static bool probe_host(const char *item, size_t len, void *arg)
{
    struct host_probe *hp = arg;
    char pat[HTTP_HOST_MAX + 1];
    if (len > HTTP_HOST_MAX)
        return true;
    memcpy(pat, item, len);
    pat[len] = '\0';
    hp->found = http_host_match(pat, hp->host);
    return !hp->found;
}

struct path_probe {
    const char *path;
    bool found;
};

static bool probe_path(const char *item, size_t len, void *arg)
{
    struct path_probe *pp = arg;
    pp->found = under(pp->path, item, len, false);
    return !pp->found;
}

/* ---- configuration: [service X] root, vhosts, vhost.NAME.* ---- */

static bool valid_vhost_name(const char *s, size_t n)
{
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
            return false;
    return true;
}

static int check_root(const char *key, const char *root, char *err, size_t errlen)
{
    if (root[0] != '/') {
        snprintf(err, errlen, "%s: '%s' must be an absolute path", key, root);
        return -1;
    }
    return 0;
}

struct vh_ctx {
    struct service_config *sc;
    char *err;
    size_t errlen;
    int rc;
    size_t n;
};

static bool check_pattern(const char *item, size_t len, void *arg)
{
    struct vh_ctx *v = arg;
    bool ok = len <= HTTP_HOST_MAX;
    for (size_t i = 0; ok && i < len; i++)
        ok = isalnum((unsigned char)item[i]) || strchr("-._*[]:", item[i]);
    if (!ok) {
        snprintf(v->err, v->errlen, "[service %s]: '%.*s' is not a host name or pattern",
                 v->sc->name, (int)(len > 200 ? 200 : len), item);
        v->rc = -1;
    }
    return ok;
}

static bool check_prefix(const char *item, size_t len, void *arg)
{
    struct vh_ctx *v = arg;
    if (item[0] != '/' || len >= 128) {
        snprintf(v->err, v->errlen, "[service %s]: route prefix '%.*s' must start with '/'",
                 v->sc->name, (int)(len > 200 ? 200 : len), item);
        v->rc = -1;
        return false;
    }
    return true;
}

static bool check_vhost(const char *name, size_t len, void *arg)
{
    struct vh_ctx *v = arg;
    char key[80];
    const char *hosts, *rts, *root;
    if (!valid_vhost_name(name, len) || v->n >= HTTP_MAX_VHOSTS) {
        snprintf(v->err, v->errlen,
                 "[service %s] vhosts: '%.*s': names are letters, digits, '-', '_' "
                 "(at most 32 characters, %d names)",
                 v->sc->name, (int)(len > 40 ? 40 : len), name, HTTP_MAX_VHOSTS);
        v->rc = -1;
        return false;
    }
    v->n++;
    snprintf(key, sizeof(key), "vhost.%.*s.hosts", (int)len, name);
    if (config_service_get_str(v->sc, key, NULL, &hosts, v->err, v->errlen) < 0)
        return v->rc = -1, false;
    if (!hosts || !*hosts) {
        snprintf(v->err, v->errlen, "[service %s]: vhost '%.*s' needs %s", v->sc->name, (int)len,
                 name, key);
        return v->rc = -1, false;
    }
    each_item(hosts, check_pattern, v);
    snprintf(key, sizeof(key), "vhost.%.*s.routes", (int)len, name);
    if (v->rc == 0 && config_service_get_str(v->sc, key, NULL, &rts, v->err, v->errlen) < 0)
        return v->rc = -1, false;
    if (v->rc == 0 && rts)
        each_item(rts, check_prefix, v);
    snprintf(key, sizeof(key), "vhost.%.*s.root", (int)len, name);
    if (v->rc == 0 && (config_service_get_str(v->sc, key, NULL, &root, v->err, v->errlen) < 0 ||
                       (root && check_root(key, root, v->err, v->errlen) < 0)))
        v->rc = -1;
    if (v->rc == 0 && !rts && !root) {
        snprintf(v->err, v->errlen, "[service %s]: vhost '%.*s' needs routes or root", v->sc->name,
                 (int)len, name);
        v->rc = -1;
    }
    return v->rc == 0;
}

int http_configure(struct service_config *sc, char *err, size_t errlen)
{
    const char *root, *vhosts;
    bool diag;
    if (config_service_get_str(sc, "root", NULL, &root, err, errlen) < 0 ||
        (root && check_root("root", root, err, errlen) < 0) ||
        config_service_get_bool(sc, "diagnostics", false, &diag, err, errlen) < 0 ||
        config_service_get_str(sc, "vhosts", NULL, &vhosts, err, errlen) < 0)
        return -1;
    struct vh_ctx v = {sc, err, errlen, 0, 0};
    each_item(vhosts, check_vhost, &v);
    return v.rc;
}

struct site_ctx {
    const struct service_config *sc;
    struct http_site *site;
};

static bool load_vhost(const char *name, size_t len, void *arg)
{
    struct site_ctx *s = arg;
    if (s->site->nvhosts >= HTTP_MAX_VHOSTS)
        return false;
    struct http_vhost *v = &s->site->vhosts[s->site->nvhosts];
    char key[80], e[8];
    snprintf(key, sizeof(key), "vhost.%.*s.hosts", (int)len, name);
    config_service_get_str(s->sc, key, NULL, &v->hosts, e, sizeof(e));
    snprintf(key, sizeof(key), "vhost.%.*s.routes", (int)len, name);
    config_service_get_str(s->sc, key, NULL, &v->routes, e, sizeof(e));
    snprintf(key, sizeof(key), "vhost.%.*s.root", (int)len, name);
    config_service_get_str(s->sc, key, NULL, &v->root, e, sizeof(e));
    v->name = name;
    if (v->hosts)
        s->site->nvhosts++;
    return true;
}

void http_site_load(struct http_site *site, const struct config *cfg, const char *service)
{
    memset(site, 0, sizeof(*site));
    site->service = service;
    const struct service_config *sc = config_service(cfg, service);
    if (!sc)
        return;
    char e[8];
    const char *vhosts;
    config_service_get_str(sc, "root", NULL, &site->root, e, sizeof(e));
    config_service_get_bool(sc, "diagnostics", false, &site->diagnostics, e, sizeof(e));
    config_service_get_str(sc, "vhosts", NULL, &vhosts, e, sizeof(e));
    struct site_ctx ctx = {sc, site};
    each_item(vhosts, load_vhost, &ctx);
}

const struct http_site *http_site_of(struct conn *c)
{
    return &((struct http_session *)conn_session(c))->site;
}

unsigned http_idle_timeout(struct conn *c)
{
    struct http_session *hs = conn_session(c);
    const struct service_config *sc = config_service(hs->rt->cfg, conn_service(c));
    return sc ? sc->idle_timeout : 120;
}

/* ---- exchanges: routing, running, logging ---- */

void http_x_route(struct http_exchange *x)
{
    const struct http_site *site = x->site;
    const struct http_vhost *vh = NULL;
    for (size_t i = 0; i < site->nvhosts && !vh; i++) {
        struct host_probe hp = {x->host, false};
        each_item(site->vhosts[i].hosts, probe_host, &hp);
        if (hp.found)
            vh = &site->vhosts[i];
    }
    x->handler = NULL;
    x->route_flags = 0;
    x->max_body = HTTP_MAX_BODY_DEFAULT;
    x->root = vh ? vh->root : site->root;
    bool routed = true;
    if (vh && vh->routes) {
        struct path_probe pp = {x->req->path, false};
        each_item(vh->routes, probe_path, &pp);
        routed = pp.found;
    }
    const struct route *r = routed ? find_route(site->service, x->host, x->req->path) : NULL;
    if (r) {
        x->handler = r->handler;
        x->route_flags = r->flags;
        x->max_body = r->max_body;
    }
}

void http_x_run(struct http_exchange *x)
{
    if (x->handler)
        x->handler(x);
    else if (x->root)
        http_static_serve(x, x->root);
    else
        http_respond_status(x, 404);
}

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

void http_x_log(struct http_exchange *x)
{
    const struct http_request *req = x->req;
    conn_log(x->conn, LOG_SUMMARY, "%s %s %d %llu%s%s%s", req && req->method ? req->method : "-",
             req && req->url ? req->url : "-", x->status, x->sent,
             x->proto == HTTP_PROTO_2 ? " h2" : "", x->host[0] ? " host=" : "", x->host);
    metrics_command(conn_metrics(x->conn), (now_ns() - x->started_ns) / 1000,
                    x->status >= 400 || x->status == 0);
}

const char *http_date_now(void)
{
    static _Thread_local time_t cached;
    static _Thread_local char text[40];
    time_t t = time(NULL);
    if (t != cached) {
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(text, sizeof(text), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cached = t;
    }
    return text;
}

void http_x_begin(struct http_exchange *x)
{
    struct http_session *hs = conn_session(x->conn);
    x->active = true;
    hs->nactive++;
    conn_hold(x->conn);
}

static void session_free(struct http_session *hs)
{
    http_req_parser_free(&hs->h1.parser);
    free(hs->h1.pending);
    hs->h1.pending = NULL;
    hs->h1.pending_len = 0;
    h2_session_free(&hs->h2);
    runtime_put(&hs->rt);
}

void http_exchange_done(struct conn *c)
{
    struct http_session *hs = conn_session(c);
    hs->nactive--;
    if (hs->closed && hs->nactive == 0)
        session_free(hs);
    conn_release(c); /* may free c, and hs with it */
}

void http_x_body_end(struct http_exchange *x, int error)
{
    if (x->body_done)
        return;
    x->body_done = true;
    http_body_end_fn fn = x->body_end_fn;
    x->body_end_fn = NULL;
    x->body_fn = NULL;
    if (fn)
        fn(x, error, x->body_arg);
}

void http_x_drained(struct http_exchange *x)
{
    if (!x->active || !x->drain_wanted)
        return;
    x->drain_wanted = false;
    if (x->drain_fn)
        x->drain_fn(x, x->drain_arg);
}

/* ---- the exchange API ---- */

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

const char *http_host(const struct http_exchange *x)
{
    return x->host;
}

int http_version(const struct http_exchange *x)
{
    return x->proto == HTTP_PROTO_2 ? 2 : 1;
}

bool http_gone(const struct http_exchange *x)
{
    return x->gone;
}

const char *http_status_text(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 207:
        return "Multi-Status";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

static int h1_start(struct http_exchange *x, int status, const char *ctype, long long length,
                    const char *extra, const char *body, size_t body_len);
static int h1_write(struct http_exchange *x, const void *data, size_t len);
static void h1_end(struct http_exchange *x);

static int x_start(struct http_exchange *x, int status, const char *ctype, long long length,
                   const char *extra, const char *body, size_t body_len)
{
    if (!x->active || x->started)
        return -1;
    x->status = status;
    if (x->proto == HTTP_PROTO_2)
        return h2_x_start(x, status, ctype, length, extra, body, body_len);
    return h1_start(x, status, ctype, length, extra, body, body_len);
}

void http_respond(struct http_exchange *x, int status, const char *content_type, const char *body,
                  size_t len, const char *extra_headers)
{
    if (!x->active)
        return;
    if (!x->started)
        x_start(x, status, content_type, (long long)len, extra_headers, body ? body : "", len);
    http_end(x);
}

void http_respond_status(struct http_exchange *x, int status)
{
    char body[128];
    int n = snprintf(body, sizeof(body), "%d %s\n", status, http_status_text(status));
    http_respond(x, status, "text/plain; charset=utf-8", body, (size_t)n, NULL);
}

void http_redirect(struct http_exchange *x, int status, const char *location)
{
    /* A location with a line break would split the header: never from config, but
     * cheap to refuse here. */
    if (!location || strpbrk(location, "\r\n") || strlen(location) > 2048) {
        http_respond_status(x, 500);
        return;
    }
    char hdr[2100], body[128];
    snprintf(hdr, sizeof(hdr), "Location: %s\r\n", location);
    int n = snprintf(body, sizeof(body), "%d %s\n", status, http_status_text(status));
    http_respond(x, status, "text/plain; charset=utf-8", body, (size_t)n, hdr);
}

void http_defer(struct http_exchange *x)
{
    x->deferred = true;
}

int http_respond_start(struct http_exchange *x, int status, const char *content_type,
                       long long length, const char *extra_headers)
{
    return x_start(x, status, content_type, length < 0 ? -1 : length, extra_headers, NULL, 0);
}

int http_write(struct http_exchange *x, const void *data, size_t len)
{
    if (!x->active || !x->started || x->gone)
        return -1;
    if (x->length >= 0 && (unsigned long long)x->length - x->sent < len)
        return -1;
    int r = x->proto == HTTP_PROTO_2 ? h2_x_write(x, data, len) : h1_write(x, data, len);
    if (r == 1)
        x->drain_wanted = true;
    return r;
}

void http_on_drain(struct http_exchange *x, http_drain_fn fn, void *arg)
{
    x->drain_fn = fn;
    x->drain_arg = arg;
}

void http_end(struct http_exchange *x)
{
    if (!x->active)
        return;
    if (!x->started) /* ended without an answer: a handler bug, but the client gets one */
        x_start(x, 500, NULL, 0, NULL, "", 0);
    if (x->proto == HTTP_PROTO_2)
        h2_x_end(x);
    else
        h1_end(x);
}

void http_body_read(struct http_exchange *x, http_body_fn on_data, http_body_end_fn on_end,
                    void *arg)
{
    if (!x->active || x->body_reading)
        return;
    x->body_reading = true;
    x->body_fn = on_data;
    x->body_end_fn = on_end;
    x->body_arg = arg;
    if (!x->body_stream) {
        /* a buffered route: the body is all here already */
        if (x->req->body_len && on_data)
            on_data(x, x->req->body, x->req->body_len, arg);
        http_x_body_end(x, 0);
        return;
    }
    if (x->gone) {
        http_x_body_end(x, -1);
        return;
    }
    if (x->proto == HTTP_PROTO_2) {
        h2_x_body_flow(x);
        return;
    }
    /* RFC 9110 §10.1.1: the client waits for this before it sends the body */
    if (x->req->expect_continue && !x->continue_sent && !x->started) {
        x->continue_sent = true;
        conn_write(x->conn, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
    h1_kick(x->h1);
}

void http_body_pause(struct http_exchange *x)
{
    x->body_paused = true;
}

void http_body_resume(struct http_exchange *x)
{
    if (!x->body_paused)
        return;
    x->body_paused = false;
    if (!x->active || !x->body_stream || x->body_done)
        return;
    if (x->proto == HTTP_PROTO_2)
        h2_x_body_flow(x);
    else
        h1_kick(x->h1);
}

/* ---- HTTP/1.1 ---- */

/* An answer outside any exchange (the request could not be read), then close. */
static void h1_refuse_quietly(struct h1_session *s, int status)
{
    const char *text = http_status_text(status);
    metrics_command(conn_metrics(s->c), 0, true);
    conn_printf(s->c,
                "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: Floe\r\nContent-Length: %zu\r\n"
                "Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n%s",
                status, text, http_date_now(), strlen(text), text);
    conn_close(s->c);
}

static void h1_refuse(struct h1_session *s, int status)
{
    conn_log(s->c, LOG_SUMMARY, "bad request: answering %d", status);
    h1_refuse_quietly(s, status);
}

static int h1_start(struct http_exchange *x, int status, const char *ctype, long long length,
                    const char *extra, const char *body, size_t body_len)
{
    struct h1_session *s = x->h1;
    struct conn *c = x->conn;
    const struct http_request *req = x->req;
    x->started = true;
    x->length = length;
    if (x->gone || conn_closing(c)) {
        x->gone = true;
        return -1;
    }
    bool head = req->method && !strcmp(req->method, "HEAD");
    bool bodiless = status < 200 || status == 204 || status == 304;
    x->no_body = head || bodiless;
    /* A request body left unread when the answer ends closes the connection then
     * (h1_end): it could not be told from the next request. The answer may well
     * start before the body is in (echo, early errors), so that is not known yet. */
    x->keep = req->keep_alive && !server_stopping() && !s->broken;
    x->chunked = false;
    if (length < 0 && !x->no_body) {
        if (req->version_minor >= 1)
            x->chunked = true; /* RFC 9112 §7.1 */
        else
            x->keep = false; /* RFC 9112 §6.3: the close ends the body */
    }
    char lenhdr[48] = "";
    if (!bodiless && length >= 0)
        snprintf(lenhdr, sizeof(lenhdr), "Content-Length: %lld\r\n", length);
    else if (x->chunked)
        snprintf(lenhdr, sizeof(lenhdr), "Transfer-Encoding: chunked\r\n");
    const char *conn_hdr = !x->keep                  ? "Connection: close\r\n"
                           : req->version_minor == 0 ? "Connection: keep-alive\r\n"
                                                     : "";
    size_t extra_len = extra ? strlen(extra) : 0;
    size_t ctype_len = ctype ? strlen(ctype) : 0;
    size_t send_body = body && !x->no_body ? body_len : 0;
    size_t cap = 256 + extra_len + ctype_len + (send_body <= 16384 ? send_body : 0);
    char small[2048], *buf = cap <= sizeof(small) ? small : malloc(cap);
    if (!buf) {
        conn_abort(c);
        x->gone = true;
        return -1;
    }
    int n =
        snprintf(buf, cap, "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: Floe\r\n%s%s%s%s%s%s\r\n", status,
                 http_status_text(status), http_date_now(), lenhdr, ctype ? "Content-Type: " : "",
                 ctype ? ctype : "", ctype ? "\r\n" : "", conn_hdr, extra ? extra : "");
    size_t used = (size_t)n;
    /* one write for the head and a small body: one TLS record, one syscall */
    if (send_body && send_body <= 16384) {
        memcpy(buf + used, body, send_body);
        used += send_body;
        send_body = 0;
    }
    int r = conn_write(c, buf, used);
    if (buf != small)
        free(buf);
    if (r == 0 && send_body)
        r = conn_write(c, body, send_body);
    if (body)
        x->sent = body_len;
    if (r < 0) {
        x->gone = true;
        return -1;
    }
    return 0;
}

static int h1_write(struct http_exchange *x, const void *data, size_t len)
{
    struct conn *c = x->conn;
    if (conn_closing(c)) {
        x->gone = true;
        return -1;
    }
    x->sent += len;
    if (x->no_body || len == 0)
        return 0;
    int r;
    if (x->chunked) {
        char head[24];
        int hn = snprintf(head, sizeof(head), "%zx\r\n", len);
        if (len <= 8192) {
            char buf[8192 + 32];
            memcpy(buf, head, (size_t)hn);
            memcpy(buf + hn, data, len);
            memcpy(buf + (size_t)hn + len, "\r\n", 2);
            r = conn_write(c, buf, (size_t)hn + len + 2);
        } else {
            r = conn_write(c, head, (size_t)hn);
            if (r == 0)
                r = conn_write(c, data, len);
            if (r == 0)
                r = conn_write(c, "\r\n", 2);
        }
    } else {
        r = conn_write(c, data, len);
    }
    if (r < 0) {
        x->gone = true;
        return -1;
    }
    return conn_output_pending(c) > CONN_HIGH_WATER ? 1 : 0;
}

static void h1_end(struct http_exchange *x)
{
    struct h1_session *s = x->h1;
    struct conn *c = s->c;
    struct http_session *hs = conn_session(c);
    if (!x->gone && !conn_closing(c)) {
        if (x->chunked)
            conn_write(c, "0\r\n\r\n", 5);
        else if (!x->no_body && x->length >= 0 && x->sent < (unsigned long long)x->length)
            x->keep = false; /* short body: the client must not take what follows as more */
    }
    http_x_log(x);
    bool close = !x->keep || s->broken || server_stopping();
    if (x->body_stream && !x->body_done) {
        /* the handler did not read (all of) the body */
        if (x->req->has_body)
            close = true;
        else
            s->discard = true;
        x->body_done = true;
    }
    x->active = x->deferred = x->drain_wanted = false;
    x->body_fn = NULL;
    x->body_end_fn = NULL;
    if (!hs->closed) {
        if (!s->discard)
            http_req_parser_next(s->parser);
        if (close)
            conn_close(c);
        else
            h1_kick(s);
    }
    http_exchange_done(c);
}

static void h1_headers(struct h1_session *s)
{
    struct http_exchange *x = &s->x;
    struct http_session *hs = conn_session(s->c);
    memset(x, 0, sizeof(*x));
    x->conn = s->c;
    x->h1 = s;
    x->proto = HTTP_PROTO_1;
    x->site = &hs->site;
    x->req = http_req_parser_request(s->parser);
    x->started_ns = now_ns();
    x->length = -1;
    http_host_normalise(http_request_header(x->req, "Host"), x->host);
    http_x_route(x);
    int status;
    bool stream = x->handler && (x->route_flags & HTTP_ROUTE_STREAM_BODY);
    if (http_req_parser_body_mode(s->parser, stream, x->max_body, &status) < 0) {
        h1_refuse(s, status);
        return;
    }
    if (stream) {
        /* the handler runs now and reads the body at its own pace, however long */
        x->body_stream = true;
        s->request_began_ns = 0;
        http_x_begin(x);
        http_x_run(x);
        return;
    }
    if (x->req->expect_continue) {
        x->continue_sent = true;
        conn_write(s->c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
}

static void h1_complete(struct h1_session *s)
{
    struct http_exchange *x = &s->x;
    if (x->active) { /* the streamed body is over */
        http_x_body_end(x, 0);
        return;
    }
    if (s->discard) {
        s->discard = false;
        http_req_parser_next(s->parser);
        return;
    }
    s->request_began_ns = 0;
    x->body_done = true;
    http_x_begin(x);
    http_x_run(x);
}

static bool h1_can_feed(const struct h1_session *s)
{
    const struct http_exchange *x = &s->x;
    if (conn_closing(s->c) || !s->parser)
        return false;
    if (!x->active)
        return true;
    return x->body_stream && x->body_reading && !x->body_paused && !x->body_done;
}

static void h1_keep(struct h1_session *s, const char *data, size_t len)
{
    char *t = realloc(s->pending, s->pending_len + len);
    if (!t) {
        conn_abort(s->c);
        return;
    }
    memcpy(t + s->pending_len, data, len);
    s->pending = t;
    s->pending_len += len;
}

static void h1_feed(struct h1_session *s, const char *data, size_t len)
{
    struct conn *c = s->c;
    s->feeding = true;
    while (len > 0 && h1_can_feed(s)) {
        size_t used;
        int status;
        enum http_req_event ev = http_req_parser_feed(s->parser, data, len, &used, &status);
        data += used;
        len -= used;
        if (ev == HTTP_REQ_MORE) {
            break;
        } else if (ev == HTTP_REQ_HEADERS) {
            h1_headers(s);
        } else if (ev == HTTP_REQ_BODY) {
            const char *piece;
            size_t n;
            http_req_parser_body_piece(s->parser, &piece, &n);
            if (s->x.active && s->x.body_fn && n)
                s->x.body_fn(&s->x, piece, n, s->x.body_arg);
        } else if (ev == HTTP_REQ_COMPLETE) {
            h1_complete(s);
        } else {
            if (s->x.active) {
                /* the body of a streaming exchange is malformed or too large: its
                 * handler answers, then the connection closes */
                s->broken = true;
                http_x_body_end(&s->x, status);
            } else {
                h1_refuse(s, status);
            }
            len = 0;
            break;
        }
    }
    s->feeding = false;
    if (len > 0 && !conn_closing(c)) {
        h1_keep(s, data, len);
        conn_pause(c);
    }
}

/* Feeds what waits when the session can take input again. */
static void h1_kick(struct h1_session *s)
{
    if (s->feeding || conn_closing(s->c))
        return;
    while (s->pending && h1_can_feed(s)) {
        char *p = s->pending;
        size_t n = s->pending_len;
        s->pending = NULL;
        s->pending_len = 0;
        h1_feed(s, p, n);
        free(p);
    }
    if (h1_can_feed(s))
        conn_resume(s->c);
}

static void h1_data(struct h1_session *s, const char *data, size_t len)
{
    struct conn *c = s->c;
    /* A client that trickles a request a byte at a time never trips the idle timeout;
     * the whole request must arrive within request_timeout. */
    uint64_t now = now_ns();
    if (!s->request_began_ns && !s->x.active)
        s->request_began_ns = now;
    else if (s->request_began_ns &&
             now - s->request_began_ns > (uint64_t)conn_request_timeout(c) * 1000000000ull) {
        conn_log(c, LOG_SUMMARY, "request not complete after %u s: answering 408",
                 conn_request_timeout(c));
        h1_refuse_quietly(s, 408);
        return;
    }
    if (s->pending || s->feeding || !h1_can_feed(s)) {
        h1_keep(s, data, len);
        if (!h1_can_feed(s))
            conn_pause(c);
        return;
    }
    h1_feed(s, data, len);
}

/* ---- the session: HTTP/1.1 or HTTP/2 ---- */

static void start_h2(struct conn *c, struct http_session *hs)
{
    hs->proto = HTTP_PROTO_2;
    http_req_parser_free(&hs->h1.parser);
    hs->h2 = h2_session_new(c, &hs->site);
    if (!hs->h2)
        conn_abort(c);
}

static void session_open(struct conn *c)
{
    struct http_session *hs = conn_session(c);
    hs->rt = runtime_get();
    http_site_load(&hs->site, hs->rt->cfg, conn_service(c));
    hs->h1.c = c;
    hs->proto = HTTP_PROTO_1;
    const unsigned char *alpn;
    unsigned alpn_len;
    conn_tls_alpn(c, &alpn, &alpn_len);
    if (alpn_len == 2 && !memcmp(alpn, "h2", 2)) {
        start_h2(c, hs);
        return;
    }
    /* TLS without "h2": HTTP/1.1; a plain connection may still open with the
     * HTTP/2 preface */
    hs->h1.decided = conn_is_tls(c);
    hs->h1.parser = http_req_parser_new(HTTP_MAX_BODY_DEFAULT);
    if (!hs->h1.parser) {
        conn_abort(c);
        return;
    }
    http_req_parser_stop_at_headers(hs->h1.parser, true);
}

static void session_data(struct conn *c, const char *data, size_t len)
{
    struct http_session *hs = conn_session(c);
    if (hs->proto == HTTP_PROTO_2) {
        if (hs->h2)
            h2_session_data(hs->h2, data, len);
        return;
    }
    struct h1_session *s = &hs->h1;
    if (!s->decided) {
        /* RFC 9113 §3.3: prior knowledge; the first bytes tell */
        h1_keep(s, data, len);
        size_t n = s->pending_len < H2_PREFACE_LEN ? s->pending_len : H2_PREFACE_LEN;
        if (memcmp(s->pending, H2_PREFACE, n))
            s->decided = true;
        else if (s->pending_len < H2_PREFACE_LEN)
            return; /* could still be either */
        char *p = s->pending;
        size_t plen = s->pending_len;
        s->pending = NULL;
        s->pending_len = 0;
        s->decided = true;
        if (!memcmp(p, H2_PREFACE, n) && plen >= H2_PREFACE_LEN) {
            start_h2(c, hs);
            if (hs->h2)
                h2_session_data(hs->h2, p, plen);
        } else {
            h1_data(s, p, plen);
        }
        free(p);
        return;
    }
    h1_data(s, data, len);
}

static void session_drained(struct conn *c)
{
    struct http_session *hs = conn_session(c);
    if (hs->proto == HTTP_PROTO_2) {
        if (hs->h2)
            h2_session_drained(hs->h2);
        return;
    }
    http_x_drained(&hs->h1.x);
}

static void session_shutdown(struct conn *c)
{
    struct http_session *hs = conn_session(c);
    if (hs->proto == HTTP_PROTO_2 && hs->h2) {
        h2_session_shutdown(hs->h2);
        return;
    }
    /* HTTP/1.1: an answer in progress finishes with Connection: close (keep is
     * off once the server stops); an idle connection closes now */
    if (!hs->h1.x.active)
        conn_close(c);
}

static void session_timeout(struct conn *c)
{
    struct http_session *hs = conn_session(c);
    if (hs->proto == HTTP_PROTO_2 && hs->h2) {
        h2_session_timeout(hs->h2);
        return;
    }
    const struct http_exchange *x = &hs->h1.x;
    bool client_owes =
        x->drain_wanted || (x->body_reading && !x->body_done && !x->body_paused); /* slowloris */
    if (x->active && !client_owes) {
        /* waiting for a worker or a slow producer, not for the client */
        conn_set_idle_timeout(c, http_idle_timeout(c));
        return;
    }
    conn_log(c, LOG_SUMMARY, "idle timeout");
    conn_close(c);
}

/* Tells a handler whose client went away, from the loop rather than from inside
 * the connection's close. */
static void gone_posted(void *arg)
{
    struct conn *c = arg;
    struct http_session *hs = conn_session(c);
    struct http_exchange *x = &hs->h1.x;
    if (x->active) {
        if (x->body_reading && !x->body_done)
            http_x_body_end(x, -1);
        if (x->active)
            http_x_drained(x);
    }
    loop_work_end(conn_loop(c));
    conn_release(c);
}

static void session_close(struct conn *c)
{
    struct http_session *hs = conn_session(c);
    hs->closed = true;
    if (hs->proto == HTTP_PROTO_2) {
        if (hs->h2)
            h2_session_gone(hs->h2);
    } else if (hs->h1.x.active) {
        struct http_exchange *x = &hs->h1.x;
        x->gone = true;
        if ((x->body_reading && !x->body_done) || x->drain_wanted) {
            conn_hold(c);
            loop_work_begin(conn_loop(c));
            if (loop_post(conn_loop(c), gone_posted, c) < 0) {
                loop_work_end(conn_loop(c));
                conn_release(c);
            }
        }
    }
    if (hs->nactive == 0)
        session_free(hs);
}

const struct service_ops http_session_ops = {
    .session_size = sizeof(struct http_session),
    .on_open = session_open,
    .on_data = session_data,
    .on_drained = session_drained,
    .on_shutdown = session_shutdown,
    .on_timeout = session_timeout,
    .on_close = session_close,
};
