/* HTTP/2 sessions (RFC 9113) on nghttp2, serving the same routes and handlers
 * as HTTP/1.1 through struct http_exchange (see http.h, http_internal.h).
 *
 * nghttp2 does the framing, HPACK, stream states and flow-control accounting;
 * this file feeds it the connection's bytes (nghttp2_session_mem_recv), takes
 * its output (nghttp2_session_mem_send) into the connection, and turns streams
 * into exchanges:
 *
 *   - A stream's request is collected from its HEADERS into a struct
 *     http_request and routed as soon as the header block is in. Nothing runs
 *     handler code from inside nghttp2's callbacks: they only record what
 *     happened and mark the stream as having work; the work pass (h2_work) runs
 *     after nghttp2 returns. A buffered route runs its handler once the request
 *     has ended (END_STREAM); a streaming route (HTTP_ROUTE_STREAM_BODY) at once.
 *   - Flow control towards the client (RFC 9113 §5.2): automatic WINDOW_UPDATEs
 *     are off. The connection window is given back as soon as DATA arrives (its
 *     bytes are held per stream, bounded by the stream window); a stream's window
 *     is given back when its handler has taken the bytes. A handler that pauses
 *     its body therefore stops that stream's sender and no other.
 *   - Answers: HEADERS via nghttp2_submit_response, the body through a data
 *     provider that reads the stream's output queue and defers while it is empty.
 *     Output is taken from nghttp2 only while the connection's queue is under its
 *     high-water mark (backpressure from a slow reader); the connection's
 *     on_drained takes the rest.
 *   - Limits: SETTINGS_MAX_CONCURRENT_STREAMS (HTTP_H2_MAX_STREAMS; nghttp2
 *     refuses streams over it), SETTINGS_MAX_HEADER_LIST_SIZE and our own count of
 *     header bytes and fields (431), the routes' body limits (413), nghttp2's
 *     defences against settings, ping and reset floods.
 *   - Shutdown: GOAWAY with the last stream processed (RFC 9113 §6.8); streams
 *     under way finish, then the connection closes.
 *
 * Lifetime: a stream belongs to the session's list from its first HEADERS until
 * nghttp2 has closed it and its exchange (if it got one) has ended. */
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "node/http/http_internal.h"
#include "node/loop.h"
#include "node/server.h"

#define H2_WINDOW 65535              /* stream window: what one stream may have in flight */
#define H2_CONN_WINDOW (1024 * 1024) /* connection window */
#define H2_STREAM_HIGH (64 * 1024)   /* a stream's queued output: http_write says "wait" */
#define H2_STREAM_LOW (16 * 1024)    /* ... and the drain callback runs below this */
#define H2_MAX_EXTRA_HEADERS 32
#define H2_COALESCE 16384 /* frames gathered into one connection write */

struct obuf {
    struct obuf *next;
    size_t len, off;
    char data[];
};

struct h2_stream {
    struct http_exchange x; /* x.h2 points back here */
    struct h2_session *s;
    struct h2_stream *prev, *next;
    int32_t id;
    struct http_request req;
    size_t header_bytes;
    int refuse;     /* answer this status instead of running the route */
    int body_error; /* 413 for a streamed body over its limit */
    bool headers_done, req_done, dispatched, closed, work, eof, data_deferred, reset_after;
    struct obuf *out_head, *out_tail;
    size_t out_len;
    char *held; /* streamed body received, not yet taken by the handler */
    size_t held_len;
    unsigned long long received; /* streamed body bytes, against the route's limit */
};

struct h2_session {
    struct conn *c;
    const struct http_site *site;
    nghttp2_session *ng;
    struct h2_stream *streams;
    int busy;     /* inside nghttp2_session_mem_recv or h2_flush */
    bool in_recv; /* inside nghttp2_session_mem_recv: the work pass follows it */
    bool gone;    /* the connection has closed */
    bool posted;  /* a work pass is queued on the loop */
    bool dead;    /* freed while a work pass was queued: the pass frees it */
    bool in_work; /* the work pass is running */
};

static void h2_flush(struct h2_session *s);
static void h2_work(struct h2_session *s);

/* Frees a session that h2_session_free() could not free at once because it was
 * in use up the stack; true when it did (s is gone then). */
static bool reap(struct h2_session *s)
{
    if (!s->dead || s->busy || s->in_work || s->posted)
        return false;
    free(s);
    return true;
}

/* ---- streams ---- */

static struct h2_stream *stream_new(struct h2_session *s, int32_t id)
{
    struct h2_stream *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->s = s;
    st->id = id;
    st->req.content_length = -1;
    st->req.version_major = 2;
    st->req.keep_alive = true;
    st->x.length = -1;
    st->next = s->streams;
    if (st->next)
        st->next->prev = st;
    s->streams = st;
    return st;
}

static void stream_free(struct h2_stream *st)
{
    struct h2_session *s = st->s;
    if (st->prev)
        st->prev->next = st->next;
    else
        s->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    while (st->out_head) {
        struct obuf *b = st->out_head;
        st->out_head = b->next;
        free(b);
    }
    free(st->held);
    http_request_reset(&st->req);
    if (s->ng && !st->closed)
        nghttp2_session_set_stream_user_data(s->ng, st->id, NULL);
    free(st);
}

static struct h2_stream *stream_of(struct h2_session *s, int32_t id)
{
    return s->ng ? nghttp2_session_get_stream_user_data(s->ng, id) : NULL;
}

/* The work pass runs from the loop, never inside nghttp2 or a handler's call. */
static void work_posted(void *arg)
{
    struct h2_session *s = arg;
    struct conn *c = s->c;
    s->posted = false;
    if (!s->dead)
        h2_work(s);
    if (!s->dead)
        h2_flush(s);
    reap(s);
    loop_work_end(conn_loop(c));
    conn_release(c);
}

static void schedule(struct h2_session *s)
{
    if (s->posted || s->dead)
        return;
    s->posted = true;
    conn_hold(s->c);
    loop_work_begin(conn_loop(s->c));
    if (loop_post(conn_loop(s->c), work_posted, s) < 0) {
        s->posted = false;
        loop_work_end(conn_loop(s->c));
        conn_release(s->c);
    }
}

static void mark(struct h2_stream *st)
{
    st->work = true;
    if (!st->s->in_recv && !st->s->in_work)
        schedule(st->s);
}

/* ---- nghttp2 callbacks: record, never run handlers ---- */

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    struct h2_session *s = user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct h2_stream *st = stream_new(s, frame->hd.stream_id);
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets just this stream */
    nghttp2_session_set_stream_user_data(ng, frame->hd.stream_id, st);
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    struct h2_session *s = user;
    struct h2_stream *st = stream_of(s, frame->hd.stream_id);
    if (!st || frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailers and the like: not used */
    const char *n = (const char *)name, *v = (const char *)value;
    /* RFC 9113 §6.5.2: the size of a field is its name and value plus 32 */
    st->header_bytes += namelen + valuelen + 32;
    if (st->header_bytes > HTTP_MAX_HEADER_BYTES)
        st->refuse = 431;
    if (st->refuse)
        return 0;
    struct http_request *r = &st->req;
    if (namelen > 0 && n[0] == ':') {
        if (namelen == 7 && !memcmp(n, ":method", 7)) {
            r->method = http_method_lookup(v, valuelen);
            if (!r->method)
                st->refuse = 501; /* RFC 9110 §9.1 */
        } else if (namelen == 5 && !memcmp(n, ":path", 5)) {
            if (http_request_set_target(r, v, valuelen) < 0)
                st->refuse = 400;
        } else if (namelen == 10 && !memcmp(n, ":authority", 10)) {
            /* RFC 9113 §8.3.1: the authority takes the place of Host */
            if (!http_request_header(r, "host") &&
                http_request_add_header(r, "host", 4, v, valuelen) < 0)
                st->refuse = 431;
        }
        return 0;
    }
    if (namelen == 6 && !memcmp(n, "cookie", 6)) {
        /* RFC 9113 §8.2.3: crumbs are joined with "; " for the application */
        for (size_t i = 0; i < r->nheaders; i++) {
            if (strcmp(r->headers[i].name, "cookie"))
                continue;
            size_t ol = strlen(r->headers[i].value);
            char *t = realloc(r->headers[i].value, ol + 2 + valuelen + 1);
            if (!t) {
                st->refuse = 500;
                return 0;
            }
            memcpy(t + ol, "; ", 2);
            memcpy(t + ol + 2, v, valuelen);
            t[ol + 2 + valuelen] = '\0';
            r->headers[i].value = t;
            return 0;
        }
    }
    if (namelen == 4 && !memcmp(n, "host", 4)) {
        /* a Host field after :authority: the authority wins (RFC 9113 §8.3.1) */
        if (http_request_header(r, "host"))
            return 0;
    }
    if (namelen == 14 && !memcmp(n, "content-length", 14)) {
        char buf[24];
        if (valuelen == 0 || valuelen >= sizeof(buf)) {
            st->refuse = 400;
            return 0;
        }
        memcpy(buf, v, valuelen);
        buf[valuelen] = '\0';
        char *end;
        long long cl = strtoll(buf, &end, 10);
        if (*end || cl < 0) {
            st->refuse = 400;
            return 0;
        }
        r->content_length = cl;
    }
    if (http_request_add_header(r, n, namelen, v, valuelen) < 0)
        st->refuse = 431;
    return 0;
}

/* The request's header block is complete: route it. */
static void headers_done(struct h2_stream *st, bool end_stream)
{
    struct h2_session *s = st->s;
    struct http_exchange *x = &st->x;
    struct http_request *r = &st->req;
    st->headers_done = true;
    st->req_done = end_stream;
    r->has_body = !end_stream;
    x->conn = s->c;
    x->req = r;
    x->site = s->site;
    x->proto = HTTP_PROTO_2;
    x->h2 = st;
    x->length = -1;
    http_host_normalise(http_request_header(r, "host"), x->host);
    if (!st->refuse && (!r->method || !r->path))
        st->refuse = 400; /* nghttp2 checks the pseudo-headers; CONNECT has no :path */
    if (!st->refuse) {
        http_x_route(x);
        x->body_stream = x->handler && (x->route_flags & HTTP_ROUTE_STREAM_BODY);
        if (r->content_length >= 0 && (unsigned long long)r->content_length > x->max_body)
            st->refuse = 413;
    }
    mark(st);
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    struct h2_session *s = user;
    struct h2_stream *st = stream_of(s, frame->hd.stream_id);
    if (!st)
        return 0;
    bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        headers_done(st, end);
    } else if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) && end) {
        st->req_done = true;
        mark(st);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    struct h2_session *s = user;
    /* the connection window comes back at once: what a stream holds is bounded
     * by its own window */
    nghttp2_session_consume_connection(ng, len);
    struct h2_stream *st = stream_of(s, id);
    if (!st)
        return 0;
    struct http_exchange *x = &st->x;
    bool wanted = !st->refuse && !st->body_error && !(st->dispatched && !x->active) &&
                  !(x->body_stream && x->body_done);
    if (wanted && !x->body_stream) {
        if (http_request_append_body(&st->req, (const char *)data, len, x->max_body) < 0) {
            st->refuse = st->dispatched ? st->refuse : 413;
            mark(st);
        }
        nghttp2_session_consume_stream(ng, id, len);
        return 0;
    }
    if (wanted) {
        st->received += len;
        if (st->received > x->max_body) {
            st->body_error = 413;
            mark(st);
            nghttp2_session_consume_stream(ng, id, len);
            return 0;
        }
        size_t total = st->held_len + len;
        char *t = realloc(st->held, total);
        if (!t)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        memcpy(t + st->held_len, data, len);
        st->held = t;
        st->held_len = total;
        mark(st);
        return 0;
    }
    nghttp2_session_consume_stream(ng, id, len); /* dropped */
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    struct h2_session *s = user;
    if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct h2_stream *st = stream_of(s, frame->hd.stream_id);
    /* RFC 9113 §8.1: the answer is complete before the request: tell the client to
     * stop sending it */
    if (st && st->reset_after && !st->req_done)
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *user)
{
    struct h2_session *s = user;
    struct h2_stream *st = stream_of(s, id);
    if (!st)
        return 0;
    st->closed = true;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    if (st->x.active) {
        st->x.gone = true; /* reset by the client, or the connection is going */
        mark(st);
    } else {
        stream_free(st);
    }
    return 0;
}

static ssize_t read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *source, void *user)
{
    struct h2_stream *st = source->ptr;
    size_t n = 0;
    while (n < length && st->out_head) {
        struct obuf *b = st->out_head;
        size_t take = b->len - b->off;
        if (take > length - n)
            take = length - n;
        memcpy(buf + n, b->data + b->off, take);
        n += take;
        b->off += take;
        if (b->off == b->len) {
            st->out_head = b->next;
            if (!st->out_head)
                st->out_tail = NULL;
            free(b);
        }
    }
    st->out_len -= n;
    if (st->x.drain_wanted && st->out_len < H2_STREAM_LOW)
        mark(st);
    if (!st->out_head) {
        if (st->eof) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
        } else if (n == 0) {
            st->data_deferred = true;
            return NGHTTP2_ERR_DEFERRED;
        }
    }
    return (ssize_t)n;
}

/* ---- output ---- */

static void session_del(struct h2_session *s)
{
    if (s->ng && !s->busy) {
        nghttp2_session_del(s->ng);
        s->ng = NULL;
    }
}

/* Takes nghttp2's output into the connection while the connection takes it. */
static void h2_flush(struct h2_session *s)
{
    if (!s->ng || s->busy || s->gone)
        return;
    struct conn *c = s->c;
    char buf[H2_COALESCE];
    size_t used = 0;
    bool failed = false;
    s->busy++;
    while (!s->gone && conn_output_pending(c) <= CONN_HIGH_WATER) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(s->ng, &data);
        if (n < 0) {
            conn_log(c, LOG_DEBUG, "HTTP/2: %s", nghttp2_strerror((int)n));
            failed = true;
            break;
        }
        if (n == 0)
            break;
        if (used + (size_t)n > sizeof(buf) && used) {
            if (conn_write(c, buf, used) < 0)
                break;
            used = 0;
        }
        if ((size_t)n > sizeof(buf)) {
            if (conn_write(c, data, (size_t)n) < 0)
                break;
        } else {
            memcpy(buf + used, data, (size_t)n);
            used += (size_t)n;
        }
    }
    if (used && !s->gone)
        conn_write(c, buf, used);
    /* GOAWAY exchanged and nothing left, or a fatal error. Still busy: a close that
     * frees the session only marks it dead, for the caller's reap(). */
    if (!s->gone &&
        (failed || (!nghttp2_session_want_read(s->ng) && !nghttp2_session_want_write(s->ng))))
        conn_close(c);
    s->busy--;
    if (s->gone)
        session_del(s);
}

/* ---- the work pass: dispatch, body delivery, drain and gone notices ---- */

/* One step of work for st. True when a handler ran (st and others may be gone). */
static bool step(struct h2_stream *st)
{
    struct h2_session *s = st->s;
    struct http_exchange *x = &st->x;
    if (!st->dispatched) {
        if (!st->headers_done) {
            if (st->closed)
                stream_free(st);
            return false;
        }
        if (st->closed && !st->req_done) { /* reset before it was complete */
            stream_free(st);
            return false;
        }
        if (!st->refuse && !x->body_stream && !st->req_done)
            return false; /* a buffered body still coming */
        st->dispatched = true;
        http_x_begin(x);
        if (!x->body_stream)
            x->body_done = true; /* a streamed body ends when its handler has had it all */
        if (st->refuse)
            http_respond_status(x, st->refuse);
        else
            http_x_run(x);
        return true;
    }
    if (!x->active)
        return false;
    if (x->body_stream && x->body_reading && !x->body_done) {
        if (x->gone) {
            http_x_body_end(x, -1);
            return true;
        }
        if (st->body_error) {
            http_x_body_end(x, st->body_error);
            return true;
        }
        if (!x->body_paused && st->held_len) {
            char *data = st->held;
            size_t n = st->held_len;
            st->held = NULL;
            st->held_len = 0;
            st->work = true; /* the end of the body may be next */
            if (s->ng && !st->closed)
                nghttp2_session_consume_stream(s->ng, st->id, n);
            if (x->body_fn)
                x->body_fn(x, data, n, x->body_arg);
            free(data);
            return true;
        }
        if (!x->body_paused && st->req_done && !st->held_len) {
            http_x_body_end(x, 0);
            return true;
        }
    }
    if (x->drain_wanted && (x->gone || (st->out_len < H2_STREAM_LOW &&
                                        conn_output_pending(s->c) <= CONN_HIGH_WATER))) {
        http_x_drained(x);
        return true;
    }
    return false;
}

static void h2_work(struct h2_session *s)
{
    if (s->in_work)
        return;
    s->in_work = true;
    for (int rounds = 0; rounds < 100000 && !s->dead; rounds++) {
        struct h2_stream *st = s->streams;
        while (st && !st->work)
            st = st->next;
        if (!st)
            break;
        st->work = false;
        step(st);
    }
    s->in_work = false;
}

/* ---- exchange output ---- */

static int add_nv(nghttp2_nv *nv, size_t *n, size_t max, const char *name, size_t nl,
                  const char *value, size_t vl)
{
    if (*n >= max)
        return -1;
    nv[*n] = (nghttp2_nv){(uint8_t *)(uintptr_t)name, (uint8_t *)(uintptr_t)value, nl, vl,
                          NGHTTP2_NV_FLAG_NONE};
    (*n)++;
    return 0;
}

/* RFC 9113 §8.2.2: connection-specific fields have no place in HTTP/2 */
static bool connection_specific(const char *name, size_t len)
{
    static const char *const names[] = {"connection", "keep-alive", "proxy-connection",
                                        "transfer-encoding", "upgrade"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i]) == len && !strncasecmp(names[i], name, len))
            return true;
    return false;
}

static int queue_out(struct h2_stream *st, const void *data, size_t len)
{
    struct obuf *b = malloc(sizeof(*b) + len);
    if (!b)
        return -1;
    b->next = NULL;
    b->len = len;
    b->off = 0;
    memcpy(b->data, data, len);
    if (st->out_tail)
        st->out_tail->next = b;
    else
        st->out_head = b;
    st->out_tail = b;
    st->out_len += len;
    return 0;
}

int h2_x_start(struct http_exchange *x, int status, const char *ctype, long long length,
               const char *extra, const char *body, size_t body_len)
{
    struct h2_stream *st = x->h2;
    struct h2_session *s = st->s;
    x->started = true;
    x->length = length;
    if (x->gone || !s->ng || st->closed) {
        x->gone = true;
        return -1;
    }
    bool head = x->req->method && !strcmp(x->req->method, "HEAD");
    bool bodiless = status < 200 || status == 204 || status == 304;
    x->no_body = head || bodiless;
    char statusbuf[8], lenbuf[24];
    snprintf(statusbuf, sizeof(statusbuf), "%d", status);
    nghttp2_nv nv[6 + H2_MAX_EXTRA_HEADERS];
    size_t n = 0, max = sizeof(nv) / sizeof(nv[0]);
    add_nv(nv, &n, max, ":status", 7, statusbuf, strlen(statusbuf));
    const char *date = http_date_now();
    add_nv(nv, &n, max, "date", 4, date, strlen(date));
    add_nv(nv, &n, max, "server", 6, "Floe", 4);
    if (!bodiless && length >= 0) {
        snprintf(lenbuf, sizeof(lenbuf), "%lld", length);
        add_nv(nv, &n, max, "content-length", 14, lenbuf, strlen(lenbuf));
    }
    if (ctype)
        add_nv(nv, &n, max, "content-type", 12, ctype, strlen(ctype));
    /* extra header lines "Name: value\r\n": names lower-cased (RFC 9113 §8.2.1) */
    char names[H2_MAX_EXTRA_HEADERS][64];
    size_t nn = 0;
    for (const char *p = extra; p && *p && nn < H2_MAX_EXTRA_HEADERS;) {
        const char *eol = strstr(p, "\r\n");
        size_t linelen = eol ? (size_t)(eol - p) : strlen(p);
        const char *colon = memchr(p, ':', linelen);
        if (colon && (size_t)(colon - p) < sizeof(names[0]) && colon > p &&
            !connection_specific(p, (size_t)(colon - p))) {
            size_t nl = (size_t)(colon - p);
            for (size_t i = 0; i < nl; i++)
                names[nn][i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]);
            const char *v = colon + 1;
            while (v < p + linelen && (*v == ' ' || *v == '\t'))
                v++;
            add_nv(nv, &n, max, names[nn], nl, v, (size_t)(p + linelen - v));
            nn++;
        }
        p += linelen + (eol ? 2 : 0);
    }
    if (body && body_len && !x->no_body && queue_out(st, body, body_len) < 0) {
        x->gone = true;
        return -1;
    }
    if (body)
        x->sent = body_len;
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_body};
    int rv = nghttp2_submit_response(s->ng, st->id, nv, n, x->no_body ? NULL : &prd);
    if (rv != 0) {
        conn_log(s->c, LOG_DEBUG, "HTTP/2 response on stream %d: %s", st->id, nghttp2_strerror(rv));
        x->gone = true;
        return -1;
    }
    if (x->no_body && !st->req_done)
        st->reset_after = true;
    if (!body) /* answers in pieces go out now; whole answers when they end */
        h2_flush(s);
    return 0;
}

int h2_x_write(struct http_exchange *x, const void *data, size_t len)
{
    struct h2_stream *st = x->h2;
    struct h2_session *s = st->s;
    if (x->gone || !s->ng || st->closed) {
        x->gone = true;
        return -1;
    }
    x->sent += len;
    if (x->no_body || len == 0)
        return 0;
    if (queue_out(st, data, len) < 0) {
        x->gone = true;
        return -1;
    }
    if (st->data_deferred) {
        st->data_deferred = false;
        nghttp2_session_resume_data(s->ng, st->id);
    }
    h2_flush(s);
    if (x->gone || !s->ng)
        return -1;
    return st->out_len > H2_STREAM_HIGH || conn_output_pending(s->c) > CONN_HIGH_WATER ? 1 : 0;
}

void h2_x_end(struct http_exchange *x)
{
    struct h2_stream *st = x->h2;
    struct h2_session *s = st->s;
    struct conn *c = x->conn;
    if (!x->gone && s->ng && !st->closed) {
        if (!x->no_body && x->length >= 0 && x->sent < (unsigned long long)x->length) {
            /* shorter than announced: the client must not take it as complete */
            nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        } else {
            st->eof = true;
            if (!st->req_done)
                st->reset_after = true;
            if (st->data_deferred) {
                st->data_deferred = false;
                nghttp2_session_resume_data(s->ng, st->id);
            }
        }
    }
    http_x_log(x);
    x->active = x->deferred = x->drain_wanted = false;
    x->body_done = true;
    x->body_fn = NULL;
    x->body_end_fn = NULL;
    if (st->held_len) {
        if (s->ng && !st->closed)
            nghttp2_session_consume_stream(s->ng, st->id, st->held_len);
        free(st->held);
        st->held = NULL;
        st->held_len = 0;
    }
    if (st->closed)
        stream_free(st);
    h2_flush(s);
    http_exchange_done(c); /* may free the session and the connection */
}

void h2_x_body_flow(struct http_exchange *x)
{
    mark(x->h2);
}

/* ---- the session ---- */

struct h2_session *h2_session_new(struct conn *c, const struct http_site *site)
{
    struct h2_session *s = calloc(1, sizeof(*s));
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    if (!s || nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cbs);
        free(s);
        return NULL;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    s->c = c;
    s->site = site;
    nghttp2_option_set_no_auto_window_update(opt, 1);
    /* the session keeps its own copy of the callbacks */
    int rv = nghttp2_session_server_new2(&s->ng, cbs, s, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0) {
        free(s);
        return NULL;
    }
    const nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, HTTP_H2_MAX_STREAMS},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, HTTP_MAX_HEADER_BYTES},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_WINDOW},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    /* RFC 9113 §3.4: the server's preface is a SETTINGS frame */
    if (nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0 ||
        nghttp2_session_set_local_window_size(s->ng, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW) != 0) {
        nghttp2_session_del(s->ng);
        free(s);
        return NULL;
    }
    /* the SETTINGS go out with the first answer to the client's preface */
    conn_log(c, LOG_DEBUG, "HTTP/2");
    return s;
}

void h2_session_data(struct h2_session *s, const char *data, size_t len)
{
    if (!s->ng)
        return;
    s->busy++;
    s->in_recv = true;
    ssize_t r = nghttp2_session_mem_recv(s->ng, (const uint8_t *)data, len);
    s->in_recv = false;
    s->busy--;
    if (s->gone) {
        session_del(s);
        reap(s);
        return;
    }
    if (r < 0) {
        conn_log(s->c, LOG_SUMMARY, "HTTP/2 protocol error: %s", nghttp2_strerror((int)r));
        h2_flush(s); /* a GOAWAY nghttp2 may have queued */
        if (reap(s) || s->dead)
            return;
        conn_close(s->c); /* may free s */
        return;
    }
    h2_work(s);
    if (!s->dead)
        h2_flush(s);
    reap(s);
}

void h2_session_drained(struct h2_session *s)
{
    h2_flush(s);
    for (struct h2_stream *st = s->streams; st; st = st->next)
        if (st->x.active && st->x.drain_wanted)
            st->work = true;
    h2_work(s);
    if (!s->dead)
        h2_flush(s);
    reap(s);
}

void h2_session_shutdown(struct h2_session *s)
{
    if (!s->ng)
        return;
    /* RFC 9113 §6.8: streams up to the last one processed are answered, later
     * ones were not touched and may be retried elsewhere */
    nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(s->ng),
                          NGHTTP2_NO_ERROR, NULL, 0);
    h2_flush(s);
    reap(s);
}

void h2_session_timeout(struct h2_session *s)
{
    bool active = false;
    /* streams waiting for a worker keep the connection; streams waiting for the
     * client (its reading, or its body) do not */
    for (struct h2_stream *st = s->streams; st && !active; st = st->next)
        active = st->x.active && !st->x.drain_wanted &&
                 !(st->x.body_reading && !st->x.body_done && !st->x.body_paused);
    if (active && s->ng) {
        conn_set_idle_timeout(s->c, http_idle_timeout(s->c));
        return;
    }
    conn_log(s->c, LOG_SUMMARY, "idle timeout");
    if (s->ng) {
        nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(s->ng), NGHTTP2_NO_ERROR,
                              NULL, 0);
        h2_flush(s);
    }
    if (reap(s) || s->dead)
        return;
    conn_close(s->c); /* may free s */
}

void h2_session_gone(struct h2_session *s)
{
    s->gone = true;
    struct h2_stream *st = s->streams, *next;
    for (; st; st = next) {
        next = st->next;
        st->closed = true;
        if (st->x.active) {
            st->x.gone = true;
            st->work = true;
        } else {
            stream_free(st);
        }
    }
    session_del(s);
    if (s->streams)
        schedule(s); /* handlers hear of it from the loop */
}

void h2_session_free(struct h2_session **sp)
{
    struct h2_session *s = *sp;
    if (!s)
        return;
    *sp = NULL;
    while (s->streams)
        stream_free(s->streams);
    if (s->ng && !s->busy) {
        nghttp2_session_del(s->ng);
        s->ng = NULL;
    }
    s->dead = true; /* freed now, or by reap() up the stack or in the queued pass */
    reap(s);
}
