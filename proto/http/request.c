/* HTTP/1.1 request reader on http-parser (see request.h).
 *
 * http-parser calls back with pieces of the request line, header fields and
 * body; they are appended to the current request under the limits. Reaching the
 * end of a message, the end of the headers (for Expect: 100-continue, or for
 * every request with stop_at_headers) or, in streamed mode, a piece of body
 * pauses the parser, which makes http_parser_execute() return right there;
 * feeding again from where it stopped resumes it. */
#include "proto/http/request.h"

#include <ctype.h>
#include <http_parser.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct http_req_parser {
    http_parser parser;
    struct http_request req;
    size_t max_body; /* default limit, and the one of buffered requests */
    size_t req_max;  /* limit of the current request */
    size_t streamed; /* body bytes handed out in streamed mode */
    size_t header_bytes;
    const char *piece; /* HTTP_REQ_BODY: the piece */
    size_t piece_len;
    bool stop_at_headers; /* report the end of every request's headers */
    bool value_open;      /* the last callback was a header value */
    bool at_headers;      /* paused at the end of the headers */
    bool mode_chosen;     /* http_req_parser_body_mode() ran for this request */
    bool stream;          /* streamed mode for this request */
    bool have_piece;      /* paused in on_body with a piece */
    bool complete;        /* message complete, waiting for _next */
    int error_status;     /* set by a callback that refuses */
};

void http_request_reset(struct http_request *r)
{
    free(r->url);
    free(r->path);
    free(r->query);
    for (size_t i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->body);
    memset(r, 0, sizeof(*r));
    r->content_length = -1;
}

static struct http_req_parser *of(http_parser *hp)
{
    return hp->data;
}

/* Appends n bytes to a NUL-terminated growing string. */
static int append(char **s, size_t *len, const char *at, size_t n)
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

static int refuse(struct http_req_parser *p, int status)
{
    p->error_status = status;
    return -1;
}

static int count(struct http_req_parser *p, size_t n)
{
    p->header_bytes += n;
    return p->header_bytes > HTTP_MAX_HEADER_BYTES ? -1 : 0;
}

static int on_message_begin(http_parser *hp)
{
    struct http_req_parser *p = of(hp);
    http_request_reset(&p->req);
    p->header_bytes = 0;
    p->value_open = false;
    p->at_headers = false;
    p->mode_chosen = false;
    p->stream = false;
    p->streamed = 0;
    p->req_max = p->max_body;
    return 0;
}

static int on_url(http_parser *hp, const char *at, size_t n)
{
    struct http_req_parser *p = of(hp);
    size_t len = p->req.url ? strlen(p->req.url) : 0;
    if (count(p, n) < 0)
        return refuse(p, 414);
    return append(&p->req.url, &len, at, n) < 0 ? refuse(p, 500) : 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t n)
{
    struct http_req_parser *p = of(hp);
    struct http_request *r = &p->req;
    if (count(p, n) < 0)
        return refuse(p, 431);
    if (p->value_open || r->nheaders == 0) {
        if (r->nheaders >= HTTP_MAX_HEADERS)
            return refuse(p, 431);
        r->nheaders++;
        p->value_open = false;
    }
    struct http_header *h = &r->headers[r->nheaders - 1];
    size_t len = h->name ? strlen(h->name) : 0;
    return append(&h->name, &len, at, n) < 0 ? refuse(p, 500) : 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t n)
{
    struct http_req_parser *p = of(hp);
    struct http_request *r = &p->req;
    if (count(p, n) < 0)
        return refuse(p, 431);
    if (r->nheaders == 0)
        return refuse(p, 400);
    struct http_header *h = &r->headers[r->nheaders - 1];
    size_t len = h->value ? strlen(h->value) : 0;
    p->value_open = true;
    return append(&h->value, &len, at, n) < 0 ? refuse(p, 500) : 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Splits r->url into a percent-decoded path and the raw query. Refuses
 * malformed escapes, an encoded NUL, and ".." segments (path traversal). */
static int split_target(struct http_request *r)
{
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (!r->url || http_parser_parse_url(r->url, strlen(r->url), 0, &u) != 0 ||
        !(u.field_set & (1 << UF_PATH)))
        return -1;
    const char *src = r->url + u.field_data[UF_PATH].off;
    size_t n = u.field_data[UF_PATH].len;
    r->path = malloc(n + 1);
    if (!r->path)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (src[i] != '%') {
            r->path[o++] = src[i];
            continue;
        }
        int hi = i + 1 < n ? hexval((unsigned char)src[i + 1]) : -1;
        int lo = i + 2 < n ? hexval((unsigned char)src[i + 2]) : -1;
        if (hi < 0 || lo < 0 || hi * 16 + lo == 0)
            return -1;
        r->path[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    r->path[o] = '\0';
    if (r->path[0] != '/')
        return -1;
    for (const char *seg = r->path; seg; seg = strchr(seg + 1, '/')) {
        if (!strncmp(seg, "/..", 3) && (seg[3] == '/' || seg[3] == '\0'))
            return -1;
    }
    if (u.field_set & (1 << UF_QUERY)) {
        r->query = strndup(r->url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
        if (!r->query)
            return -1;
    }
    return 0;
}

/* The announced length against the limit of this request. */
static int check_length(struct http_req_parser *p)
{
    if (p->req.content_length >= 0 && (unsigned long long)p->req.content_length > p->req_max)
        return refuse(p, 413);
    return 0;
}

static int on_headers_complete(http_parser *hp)
{
    struct http_req_parser *p = of(hp);
    struct http_request *r = &p->req;
    for (size_t i = 0; i < r->nheaders; i++) {
        if (!r->headers[i].name && !(r->headers[i].name = strdup("")))
            return refuse(p, 500);
        if (!r->headers[i].value && !(r->headers[i].value = strdup("")))
            return refuse(p, 500);
    }
    r->method = http_method_str((enum http_method)hp->method);
    r->version_major = hp->http_major;
    r->version_minor = hp->http_minor;
    if (hp->http_major != 1)
        return refuse(p, 505);
    if (split_target(r) < 0)
        return refuse(p, 400);
    bool chunked = (hp->flags & F_CHUNKED) != 0;
    if (!chunked && hp->content_length != ULLONG_MAX) {
        if (hp->content_length > (unsigned long long)LLONG_MAX)
            return refuse(p, 413);
        r->content_length = (long long)hp->content_length;
    }
    r->has_body = chunked || r->content_length > 0;
    r->keep_alive = http_should_keep_alive(hp);
    /* RFC 9110 §10.1.1: a 1.1 client may wait for 100 Continue before sending the body. */
    const char *expect = http_request_header(r, "Expect");
    if (expect && hp->http_minor >= 1) {
        if (strcasecmp(expect, "100-continue"))
            return refuse(p, 417);
        r->expect_continue = true;
    }
    if (p->stop_at_headers || r->expect_continue) {
        p->at_headers = true;
        http_parser_pause(hp, 1);
        return 0;
    }
    p->mode_chosen = true;
    return check_length(p);
}

static int on_body(http_parser *hp, const char *at, size_t n)
{
    struct http_req_parser *p = of(hp);
    if (!p->stream) {
        if (p->req.body_len + n > p->req_max)
            return refuse(p, 413);
        return append(&p->req.body, &p->req.body_len, at, n) < 0 ? refuse(p, 500) : 0;
    }
    if (p->streamed + n > p->req_max || p->streamed + n < p->streamed)
        return refuse(p, 413);
    p->streamed += n;
    p->piece = at;
    p->piece_len = n;
    p->have_piece = true;
    http_parser_pause(hp, 1);
    return 0;
}

static int on_message_complete(http_parser *hp)
{
    struct http_req_parser *p = of(hp);
    p->req.keep_alive = http_should_keep_alive(hp);
    if (!p->req.body && !(p->req.body = calloc(1, 1)))
        return refuse(p, 500);
    p->complete = true;
    http_parser_pause(hp, 1);
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

struct http_req_parser *http_req_parser_new(size_t max_body)
{
    struct http_req_parser *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    http_parser_init(&p->parser, HTTP_REQUEST);
    p->parser.data = p;
    p->max_body = max_body;
    p->req_max = max_body;
    p->req.content_length = -1;
    return p;
}

void http_req_parser_free(struct http_req_parser **pp)
{
    if (!*pp)
        return;
    http_request_reset(&(*pp)->req);
    free(*pp);
    *pp = NULL;
}

void http_req_parser_stop_at_headers(struct http_req_parser *p, bool on)
{
    p->stop_at_headers = on;
}

int http_req_parser_body_mode(struct http_req_parser *p, bool stream, size_t max_body,
                              int *status_r)
{
    *status_r = 0;
    p->stream = stream;
    p->req_max = max_body;
    p->mode_chosen = true;
    if (check_length(p) < 0) {
        *status_r = p->error_status;
        /* the reader stays in error, as after any refusal */
        p->parser.http_errno = HPE_CB_headers_complete;
        return -1;
    }
    return 0;
}

void http_req_parser_body_piece(const struct http_req_parser *p, const char **data_r, size_t *len_r)
{
    *data_r = p->piece;
    *len_r = p->piece_len;
}

struct http_request *http_req_parser_request(struct http_req_parser *p)
{
    return &p->req;
}

void http_req_parser_next(struct http_req_parser *p)
{
    http_request_reset(&p->req);
    p->complete = false;
    p->at_headers = false;
    p->have_piece = false;
}

static int status_for(const struct http_req_parser *p, enum http_errno e)
{
    if (p->error_status)
        return p->error_status;
    switch (e) {
    case HPE_HEADER_OVERFLOW:
        return 431;
    case HPE_INVALID_VERSION:
        return 505;
    default:
        return 400;
    }
}

enum http_req_event http_req_parser_feed(struct http_req_parser *p, const char *data, size_t len,
                                         size_t *used_r, int *status_r)
{
    *used_r = 0;
    *status_r = 0;
    if (p->complete) /* the caller must take the request first */
        return HTTP_REQ_COMPLETE;
    if (HTTP_PARSER_ERRNO(&p->parser) != HPE_OK && HTTP_PARSER_ERRNO(&p->parser) != HPE_PAUSED) {
        *status_r = status_for(p, HTTP_PARSER_ERRNO(&p->parser));
        return HTTP_REQ_ERROR;
    }
    if (p->at_headers) {
        p->at_headers = false;
        if (!p->mode_chosen && http_req_parser_body_mode(p, false, p->max_body, status_r) < 0)
            return HTTP_REQ_ERROR;
    }
    p->have_piece = false;
    http_parser_pause(&p->parser, 0);
    size_t n = http_parser_execute(&p->parser, &settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&p->parser);
    if (e == HPE_PAUSED) {
        /* Resuming means feeding again from data + n (http-parser's contract). */
        *used_r = n;
        if (p->complete)
            return HTTP_REQ_COMPLETE;
        if (p->have_piece)
            return HTTP_REQ_BODY;
        return HTTP_REQ_HEADERS;
    }
    if (e != HPE_OK) {
        *status_r = status_for(p, e);
        return HTTP_REQ_ERROR;
    }
    *used_r = n;
    return HTTP_REQ_MORE;
}

const char *http_request_header(const struct http_request *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (req->headers[i].name && !strcasecmp(req->headers[i].name, name))
            return req->headers[i].value;
    return NULL;
}

/* ---- building a request from parts ---- */

const char *http_method_lookup(const char *name, size_t len)
{
    /* http-parser numbers its methods from 0 and names the first unused number "<unknown>" */
    for (int m = 0; m < 64; m++) {
        const char *s = http_method_str((enum http_method)m);
        if (!strcmp(s, "<unknown>"))
            break;
        if (strlen(s) == len && !memcmp(s, name, len))
            return s;
    }
    return NULL;
}

int http_request_set_target(struct http_request *r, const char *target, size_t len)
{
    if (len == 0 || len > HTTP_MAX_HEADER_BYTES || memchr(target, '\0', len))
        return -1;
    free(r->url);
    free(r->path);
    free(r->query);
    r->path = r->query = NULL;
    r->url = strndup(target, len);
    if (!r->url)
        return -1;
    return split_target(r);
}

int http_request_add_header(struct http_request *r, const char *name, size_t nlen,
                            const char *value, size_t vlen)
{
    if (r->nheaders >= HTTP_MAX_HEADERS)
        return -1;
    struct http_header *h = &r->headers[r->nheaders];
    h->name = strndup(name, nlen);
    h->value = strndup(value, vlen);
    if (!h->name || !h->value) {
        free(h->name);
        free(h->value);
        h->name = h->value = NULL;
        return -1;
    }
    r->nheaders++;
    return 0;
}

int http_request_append_body(struct http_request *r, const char *data, size_t len, size_t max)
{
    if (len > max || r->body_len > max - len)
        return -1;
    if (len == 0 && r->body)
        return 0;
    return append(&r->body, &r->body_len, data, len);
}
