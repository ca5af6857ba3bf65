/* HTTP/1.1 request reader on http-parser (see request.h).
 *
 * http-parser calls back with pieces of the request line, header fields and
 * body; they are appended to the current request under the limits. Reaching the
 * end of a message (or of the headers, for Expect: 100-continue) pauses the
 * parser, which makes http_parser_execute() return right there. */
#include "proto/http/request.h"

#include <ctype.h>
#include <http_parser.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct http_req_parser {
    http_parser parser;
    struct http_request req;
    size_t max_body;
    size_t header_bytes;
    bool value_open;      /* the last callback was a header value */
    bool headers_done;    /* stop at end of headers reported already */
    bool complete;        /* message complete, waiting for _next */
    int error_status;     /* set by a callback that refuses */
};

static void request_clear(struct http_request *r)
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
    request_clear(&p->req);
    p->header_bytes = 0;
    p->value_open = false;
    p->headers_done = false;
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

/* Splits the target into a percent-decoded path and the raw query. Refuses
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
    if (hp->content_length != ULLONG_MAX && hp->content_length > p->max_body)
        return refuse(p, 413);
    /* RFC 9110 §10.1.1: a 1.1 client may wait for 100 Continue before sending the body. */
    const char *expect = http_request_header(r, "Expect");
    if (expect && hp->http_minor >= 1) {
        if (strcasecmp(expect, "100-continue"))
            return refuse(p, 417);
        r->expect_continue = true;
        http_parser_pause(hp, 1);
    }
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t n)
{
    struct http_req_parser *p = of(hp);
    if (p->req.body_len + n > p->max_body)
        return refuse(p, 413);
    return append(&p->req.body, &p->req.body_len, at, n) < 0 ? refuse(p, 500) : 0;
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
    return p;
}

void http_req_parser_free(struct http_req_parser **pp)
{
    if (!*pp)
        return;
    request_clear(&(*pp)->req);
    free(*pp);
    *pp = NULL;
}

struct http_request *http_req_parser_request(struct http_req_parser *p)
{
    return &p->req;
}

void http_req_parser_next(struct http_req_parser *p)
{
    request_clear(&p->req);
    p->complete = false;
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
    http_parser_pause(&p->parser, 0);
    size_t n = http_parser_execute(&p->parser, &settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&p->parser);
    if (e == HPE_PAUSED) {
        /* Resuming means feeding again from data + n (http-parser's contract). */
        *used_r = n;
        if (p->complete)
            return HTTP_REQ_COMPLETE;
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
