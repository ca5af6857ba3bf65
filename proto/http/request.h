/* HTTP/1.1 request reader: bytes in, complete requests out, no I/O.
 *
 * It wraps http-parser (libhttp-parser) with Floe's limits — header count and
 * size, body size — and collects one request at a time into a struct
 * http_request with the decoded path split from the query. The caller feeds
 * input as it arrives; feeding stops at the end of each request (so pipelined
 * requests are answered in order) and, when the client sent
 * "Expect: 100-continue", once at the end of the headers so the caller can
 * answer 100 Continue (or refuse) before the body comes.
 *
 * Two modes for the body, chosen per request at the end of the headers:
 *   - buffered (default): the body is collected into req->body, up to a limit;
 *   - streamed: each piece of body is handed out as an HTTP_REQ_BODY event and
 *     not kept, so a handler can take a body of any size in bounded memory and
 *     stop feeding when it cannot take more (backpressure).
 * With http_req_parser_stop_at_headers() the reader stops at the end of every
 * request's headers, so the caller can route the request and pick the mode.
 *
 * The helpers at the end build a struct http_request from parts (the HTTP/2
 * session does that from HEADERS frames), with the same checks and limits. */
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
    char *body; /* NUL-terminated for convenience; body_len excludes it (buffered mode) */
    size_t body_len;
    int version_major, version_minor; /* 2.0 for HTTP/2 */
    bool keep_alive;
    bool expect_continue;
    bool has_body;            /* Content-Length > 0 or chunked (HTTP/1.1); DATA expected (HTTP/2) */
    long long content_length; /* -1 when not given (chunked, or no body) */
};

enum http_req_event {
    HTTP_REQ_MORE,     /* all input consumed, request not complete yet */
    HTTP_REQ_HEADERS,  /* headers complete: the client waits for 100 Continue, or
                          stop_at_headers is on */
    HTTP_REQ_BODY,     /* streamed mode: a piece of body, see http_req_parser_body_piece() */
    HTTP_REQ_COMPLETE, /* a whole request is available */
    HTTP_REQ_ERROR,    /* malformed or over a limit: answer *status_r and close */
};

struct http_req_parser;

/* A reader for requests with bodies up to max_body bytes. NULL when out of memory. */
struct http_req_parser *http_req_parser_new(size_t max_body);
void http_req_parser_free(struct http_req_parser **p);

/* With on, HTTP_REQ_HEADERS is reported at the end of the headers of every
 * request, not only of those that expect 100 Continue. The body limit is then
 * checked when the caller picks the mode (http_req_parser_body_mode), or with
 * the defaults when it feeds on without picking. */
void http_req_parser_stop_at_headers(struct http_req_parser *p, bool on);

/* After HTTP_REQ_HEADERS: take this request's body buffered (stream false) or as
 * HTTP_REQ_BODY events (stream true), refusing bodies over max_body bytes.
 * 0 ok; -1 with *status_r = 413 when the announced Content-Length is already
 * over it (the reader is then in error). */
int http_req_parser_body_mode(struct http_req_parser *p, bool stream, size_t max_body,
                              int *status_r);

/* Feeds input. *used_r is set to the bytes consumed; the rest must be fed again
 * after the event has been handled. On HTTP_REQ_ERROR *status_r is the status to
 * answer (400, 413, 414, 417, 431, 505). */
enum http_req_event http_req_parser_feed(struct http_req_parser *p, const char *data, size_t len,
                                         size_t *used_r, int *status_r);

/* After HTTP_REQ_BODY: the piece, which points into the data just fed (valid
 * until that buffer is reused). */
void http_req_parser_body_piece(const struct http_req_parser *p, const char **data_r,
                                size_t *len_r);

/* The request being read or just completed (valid until http_req_parser_next). */
struct http_request *http_req_parser_request(struct http_req_parser *p);
/* Forgets the completed request and prepares for the next one on the connection. */
void http_req_parser_next(struct http_req_parser *p);

/* A header of req by case-insensitive name; NULL when absent. */
const char *http_request_header(const struct http_request *req, const char *name);

/* ---- building a request from parts (HTTP/2) ---- */

/* Frees what req holds and zeroes it. */
void http_request_reset(struct http_request *req);

/* The static method string for name[0..len) ("GET", "PROPFIND", ...), NULL when
 * it is not a method http-parser knows (the HTTP/1.1 side refuses those too). */
const char *http_method_lookup(const char *name, size_t len);

/* Sets url, path and query from a request target in origin form ("/a%20b?x")
 * or absolute form. -1 when it is malformed, decodes to a NUL, has a ".."
 * segment, or is longer than HTTP_MAX_HEADER_BYTES (the caller answers 400). */
int http_request_set_target(struct http_request *req, const char *target, size_t len);

/* Appends a header field. -1 when HTTP_MAX_HEADERS are there already or memory
 * runs out (the caller answers 431). */
int http_request_add_header(struct http_request *req, const char *name, size_t nlen,
                            const char *value, size_t vlen);

/* Appends to the buffered body, keeping it NUL-terminated. -1 when the body
 * would pass max bytes (413) or memory runs out. */
int http_request_append_body(struct http_request *req, const char *data, size_t len, size_t max);

#endif
