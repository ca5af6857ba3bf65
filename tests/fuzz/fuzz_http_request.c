/* libFuzzer harness for the HTTP request reader. The first byte picks how the
 * input is split into feeds (to exercise resumption at every boundary) and the
 * mode: bodies buffered as the reader defaults (stops only for Expect), or with
 * the reader stopping at every request's headers and the body buffered or
 * streamed in pieces. The rest is the byte stream from a client. Checks: the
 * reader never claims more bytes than it was given, body pieces lie inside the
 * bytes just fed and never pass the limit, completed requests have a path
 * starting with '/' and no ".." segment, and errors carry a 4xx/5xx status. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/http/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)(data[0] % 17) + 1;
    int mode = (data[0] / 17) % 3; /* 0 default, 1 stop + buffered, 2 stop + streamed */
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    struct http_req_parser *p = http_req_parser_new(4096);
    if (!p)
        return 0;
    http_req_parser_stop_at_headers(p, mode != 0);
    size_t off = 0, streamed = 0;
    int requests = 0;
    while (off < len) {
        size_t chunk = len - off < step ? len - off : step;
        size_t used;
        int status;
        enum http_req_event ev = http_req_parser_feed(p, in + off, chunk, &used, &status);
        if (used > chunk)
            abort();
        if (ev == HTTP_REQ_BODY) {
            const char *piece;
            size_t n;
            http_req_parser_body_piece(p, &piece, &n);
            /* the piece may end one byte past `used`: http-parser sees the last body byte
             * again when it resumes, without handing it out twice */
            if (mode != 2 || n == 0 || piece < in + off || piece + n > in + off + chunk)
                abort();
            streamed += n;
            if (streamed > 8192)
                abort();
        }
        off += used;
        if (ev == HTTP_REQ_ERROR) {
            if (status < 400 || status > 599)
                abort();
            break;
        }
        if (ev == HTTP_REQ_HEADERS && mode != 0) {
            if (http_req_parser_body_mode(p, mode == 2, mode == 2 ? 8192 : 4096, &status) < 0) {
                if (status != 413)
                    abort();
                break;
            }
            streamed = 0;
        }
        if (ev == HTTP_REQ_COMPLETE) {
            struct http_request *r = http_req_parser_request(p);
            if (!r->path || r->path[0] != '/' || strstr(r->path, "/../") || !r->method ||
                !r->body || r->body_len > 4096 || r->nheaders > HTTP_MAX_HEADERS ||
                (mode == 2 && r->body_len != 0))
                abort();
            http_req_parser_next(p);
            if (++requests > 1000)
                break;
        }
        if (ev == HTTP_REQ_MORE && used < chunk)
            abort(); /* "more" means everything given was taken */
    }
    http_req_parser_free(&p);
    return 0;
}
