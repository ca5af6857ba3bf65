/* HTTP/1.1 request reader: bytes in, complete requests out, no I/O.
 *
 * It wraps http-parser (libhttp-parser) with Floe's limits — header count and
 * size, body size — and collects one request at a time into a struct
 * http_request with the decoded path split from the query. The caller feeds
 * input as it arrives; feeding stops at the end of each request (so pipelined
 * requests are answered in order) and, when the client sent
 * "Expect: 100-continue", once at the end of the headers so the caller can
 * answer 100 Continue (or refuse) before the body comes. */
#ifndef FLOE_PROTO_HTTP_REQUEST_H
#define FLOE_PROTO_HTTP_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_MAX_HEADERS 64
#define HTTP_MAX_HEADER_BYTES (16 * 1024) /* request line + all header fields */

struct http_header {
    char *name, *value;
};

struct http_request {
    const char *method; /* "GET", ... (static string) */
    char *url;          /* request target as sent */
    char *path;         /* percent-decoded path, without the query; never contains NUL */
    char *query;        /* raw query string, or NULL */
    struct http_header headers[HTTP_MAX_HEADERS];
    size_t nheaders;
    char *body; /* NUL-terminated for convenience; body_len excludes it */
    size_t body_len;
    int version_major, version_minor;
    bool keep_alive;
    bool expect_continue;
};

enum http_req_event {
    HTTP_REQ_MORE,     /* all input consumed, request not complete yet */
    HTTP_REQ_HEADERS,  /* headers complete and the client waits for 100 Continue */
    HTTP_REQ_COMPLETE, /* a whole request is available */
    HTTP_REQ_ERROR,    /* malformed or over a limit: answer *status_r and close */
};

struct http_req_parser;

/* A reader for requests with bodies up to max_body bytes. NULL when out of memory. */
struct http_req_parser *http_req_parser_new(size_t max_body);
void http_req_parser_free(struct http_req_parser **p);

/* Feeds input. *used_r is set to the bytes consumed; the rest must be fed again
 * after the event has been handled. On HTTP_REQ_ERROR *status_r is the status to
 * answer (400, 413, 414, 431, 505). */
enum http_req_event http_req_parser_feed(struct http_req_parser *p, const char *data, size_t len,
                                         size_t *used_r, int *status_r);

/* The request being read or just completed (valid until http_req_parser_next). */
struct http_request *http_req_parser_request(struct http_req_parser *p);
/* Forgets the completed request and prepares for the next one on the connection. */
void http_req_parser_next(struct http_req_parser *p);

/* A header of req by case-insensitive name; NULL when absent. */
const char *http_request_header(const struct http_request *req, const char *name);

#endif
