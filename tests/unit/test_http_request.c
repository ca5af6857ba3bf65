/* layer: proto */
/* Unit tests for the HTTP/1.1 request reader: buffered and streamed bodies at
 * every split of the input, limits, and building requests from parts (HTTP/2). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/http/request.h"

/* Feeds all of text in pieces of `step` bytes until an event other than MORE. */
static enum http_req_event feed_all(struct http_req_parser *p, const char *text, size_t step,
                                    size_t *consumed_r, int *status_r)
{
    size_t len = strlen(text), off = 0;
    enum http_req_event ev = HTTP_REQ_MORE;
    while (off < len) {
        size_t chunk = len - off < step ? len - off : step, used;
        ev = http_req_parser_feed(p, text + off, chunk, &used, status_r);
        off += used;
        if (ev != HTTP_REQ_MORE)
            break;
    }
    *consumed_r = off;
    return ev;
}

static void test_simple_get_any_split(void **state)
{
    const char *req = "GET /a%20b/c?x=1&y=%41 HTTP/1.1\r\nHost: example.test\r\n"
                      "X-Multi: one\r\nUser-Agent: t\r\n\r\n";
    for (size_t step = 1; step <= strlen(req); step++) {
        struct http_req_parser *p = http_req_parser_new(1024);
        size_t used;
        int status;
        assert_int_equal(feed_all(p, req, step, &used, &status), HTTP_REQ_COMPLETE);
        assert_int_equal(used, strlen(req));
        struct http_request *r = http_req_parser_request(p);
        assert_string_equal(r->method, "GET");
        assert_string_equal(r->url, "/a%20b/c?x=1&y=%41");
        assert_string_equal(r->path, "/a b/c");
        assert_string_equal(r->query, "x=1&y=%41");
        assert_int_equal(r->nheaders, 3);
        assert_string_equal(http_request_header(r, "host"), "example.test");
        assert_string_equal(http_request_header(r, "USER-AGENT"), "t");
        assert_null(http_request_header(r, "Missing"));
        assert_true(r->keep_alive);
        assert_int_equal(r->body_len, 0);
        assert_string_equal(r->body, "");
        http_req_parser_free(&p);
        assert_null(p);
    }
}

static void test_pipelined_and_bodies(void **state)
{
    const char *two = "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                      "PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
                      "GET /last HTTP/1.0\r\n\r\n";
    struct http_req_parser *p = http_req_parser_new(1024);
    size_t len = strlen(two), off = 0, used;
    int status;
    assert_int_equal(http_req_parser_feed(p, two, len, &used, &status), HTTP_REQ_COMPLETE);
    struct http_request *r = http_req_parser_request(p);
    assert_string_equal(r->method, "POST");
    assert_int_equal(r->body_len, 5);
    assert_memory_equal(r->body, "hello", 5);
    off += used;
    assert_true(off < len); /* stops after the first request */
    /* without _next, feeding again reports the same completion and takes nothing */
    assert_int_equal(http_req_parser_feed(p, two + off, len - off, &used, &status),
                     HTTP_REQ_COMPLETE);
    assert_int_equal(used, 0);
    http_req_parser_next(p);
    assert_int_equal(http_req_parser_feed(p, two + off, len - off, &used, &status),
                     HTTP_REQ_COMPLETE);
    off += used;
    r = http_req_parser_request(p);
    assert_string_equal(r->method, "PUT");
    assert_int_equal(r->body_len, 5);
    assert_memory_equal(r->body, "abcde", 5);
    http_req_parser_next(p);
    assert_int_equal(http_req_parser_feed(p, two + off, len - off, &used, &status),
                     HTTP_REQ_COMPLETE);
    r = http_req_parser_request(p);
    assert_string_equal(r->path, "/last");
    assert_false(r->keep_alive); /* HTTP/1.0 without keep-alive */
    assert_int_equal(r->version_minor, 0);
    assert_int_equal(off + used, len);
    http_req_parser_free(&p);
}

static void test_expect_continue(void **state)
{
    const char *hdrs = "PUT /f HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                       "Expect: 100-continue\r\n\r\n";
    struct http_req_parser *p = http_req_parser_new(1024);
    size_t used;
    int status;
    assert_int_equal(http_req_parser_feed(p, hdrs, strlen(hdrs), &used, &status), HTTP_REQ_HEADERS);
    assert_true(http_req_parser_request(p)->expect_continue);
    const char *rest = hdrs + used;
    size_t restlen = strlen(hdrs) - used;
    enum http_req_event ev = http_req_parser_feed(p, rest, restlen, &used, &status);
    assert_int_equal(ev, HTTP_REQ_MORE);
    assert_int_equal(http_req_parser_feed(p, "abc", 3, &used, &status), HTTP_REQ_COMPLETE);
    assert_memory_equal(http_req_parser_request(p)->body, "abc", 3);
    http_req_parser_free(&p);

    p = http_req_parser_new(1024);
    const char *odd = "PUT /f HTTP/1.1\r\nExpect: something-else\r\n\r\n";
    assert_int_equal(http_req_parser_feed(p, odd, strlen(odd), &used, &status), HTTP_REQ_ERROR);
    assert_int_equal(status, 417);
    http_req_parser_free(&p);
}

static void expect_status(const char *text, size_t max_body, int want)
{
    struct http_req_parser *p = http_req_parser_new(max_body);
    size_t used;
    int status = 0;
    enum http_req_event ev = feed_all(p, text, 7, &used, &status);
    if (ev != HTTP_REQ_ERROR || status != want)
        fail_msg("'%.60s': event %d status %d, want error %d", text, ev, status, want);
    /* an errored reader stays errored */
    assert_int_equal(http_req_parser_feed(p, "GET / HTTP/1.1\r\n\r\n", 18, &used, &status),
                     HTTP_REQ_ERROR);
    http_req_parser_free(&p);
}

static void test_errors(void **state)
{
    expect_status("\x01\x02garbage\r\n\r\n", 10, 400);
    expect_status("GET /a HTTP/1.1\r\nBad Header\r\n\r\n", 10, 400);
    expect_status("GET /../etc/passwd HTTP/1.1\r\n\r\n", 10, 400);
    expect_status("GET /a/%2e%2e/b HTTP/1.1\r\n\r\n", 10, 400);
    expect_status("GET /a/.. HTTP/1.1\r\n\r\n", 10, 400);
    expect_status("GET /a%00b HTTP/1.1\r\n\r\n", 10, 400);
    expect_status("GET /a%zz HTTP/1.1\r\n\r\n", 10, 400);
    expect_status("GET /a% HTTP/1.1\r\n\r\n", 10, 400);
    expect_status("GET / HTTP/2.0\r\n\r\n", 10, 505);
    expect_status("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", 10, 413);
    expect_status(
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n0123456789a\r\n0\r\n\r\n", 10,
        413);
    expect_status("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 10, 400);

    /* too many headers, too many header bytes, too long a target */
    char *big = malloc(HTTP_MAX_HEADER_BYTES * 2);
    assert_non_null(big);
    size_t o = (size_t)sprintf(big, "GET / HTTP/1.1\r\n");
    for (int i = 0; i <= HTTP_MAX_HEADERS; i++)
        o += (size_t)sprintf(big + o, "X-%d: v\r\n", i);
    strcpy(big + o, "\r\n");
    expect_status(big, 10, 431);
    o = (size_t)sprintf(big, "GET / HTTP/1.1\r\nX: ");
    memset(big + o, 'a', HTTP_MAX_HEADER_BYTES);
    strcpy(big + o + HTTP_MAX_HEADER_BYTES, "\r\n\r\n");
    expect_status(big, 10, 431);
    o = (size_t)sprintf(big, "GET /");
    memset(big + o, 'a', HTTP_MAX_HEADER_BYTES);
    strcpy(big + o + HTTP_MAX_HEADER_BYTES, " HTTP/1.1\r\n\r\n");
    expect_status(big, 10, 414);
    free(big);
}

static void test_absolute_target(void **state)
{
    struct http_req_parser *p = http_req_parser_new(10);
    const char *req = "GET http://example.test/x/y?z HTTP/1.1\r\n\r\n";
    size_t used;
    int status;
    assert_int_equal(http_req_parser_feed(p, req, strlen(req), &used, &status), HTTP_REQ_COMPLETE);
    assert_string_equal(http_req_parser_request(p)->path, "/x/y");
    assert_string_equal(http_req_parser_request(p)->query, "z");
    http_req_parser_free(&p);
}

/* Streams every request of text through a reader that stops at headers and takes
 * bodies as pieces, in feeds of `step` bytes; returns the bodies joined with '|'. */
static void stream_all(const char *text, size_t step, char *out, size_t outlen, int *requests_r)
{
    struct http_req_parser *p = http_req_parser_new(10);
    http_req_parser_stop_at_headers(p, true);
    size_t len = strlen(text), off = 0, o = 0, fed_end = 0;
    int requests = 0;
    out[0] = '\0';
    while (off < len) {
        /* a feed never reaches past what "arrived" so far */
        if (fed_end <= off)
            fed_end = off + step < len ? off + step : len;
        size_t used;
        int status;
        enum http_req_event ev = http_req_parser_feed(p, text + off, fed_end - off, &used, &status);
        assert_true(used <= fed_end - off);
        off += used;
        if (ev == HTTP_REQ_HEADERS) {
            assert_int_equal(http_req_parser_body_mode(p, true, 1000, &status), 0);
        } else if (ev == HTTP_REQ_BODY) {
            const char *d;
            size_t n;
            http_req_parser_body_piece(p, &d, &n);
            assert_true(n > 0 && o + n < outlen);
            /* the piece lies inside what was just fed */
            assert_true(d >= text && d + n <= text + fed_end);
            memcpy(out + o, d, n);
            o += n;
            out[o] = '\0';
        } else if (ev == HTTP_REQ_COMPLETE) {
            struct http_request *r = http_req_parser_request(p);
            assert_int_equal(r->body_len, 0); /* streamed: nothing kept */
            assert_true(o + 1 < outlen);
            out[o++] = '|';
            out[o] = '\0';
            requests++;
            http_req_parser_next(p);
        } else if (ev == HTTP_REQ_ERROR) {
            fail_msg("error %d at %zu step %zu", status, off, step);
        }
    }
    *requests_r = requests;
    http_req_parser_free(&p);
}

static void test_streamed_bodies_any_split(void **state)
{
    /* the reader's own limit (10) does not apply: the mode's limit (1000) does */
    const char *text = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 26\r\n\r\n"
                       "abcdefghijklmnopqrstuvwxyz"
                       "PUT /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5\r\nhello\r\n1\r\n \r\nd\r\nstreamed rest\r\n0\r\n\r\n"
                       "GET /c HTTP/1.1\r\n\r\n";
    for (size_t step = 1; step <= strlen(text); step++) {
        char out[256];
        int n;
        stream_all(text, step, out, sizeof(out), &n);
        assert_int_equal(n, 3);
        assert_string_equal(out, "abcdefghijklmnopqrstuvwxyz|hello streamed rest||");
    }
}

static void test_stop_at_headers_and_modes(void **state)
{
    struct http_req_parser *p = http_req_parser_new(5);
    http_req_parser_stop_at_headers(p, true);
    size_t used;
    int status;
    const char *get = "GET /x HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_int_equal(http_req_parser_feed(p, get, strlen(get), &used, &status), HTTP_REQ_HEADERS);
    struct http_request *r = http_req_parser_request(p);
    assert_false(r->has_body);
    assert_int_equal(r->content_length, -1);
    assert_string_equal(r->path, "/x");
    /* feeding on without picking a mode: buffered with the default limit */
    assert_int_equal(http_req_parser_feed(p, get + used, strlen(get) - used, &used, &status),
                     HTTP_REQ_COMPLETE);
    http_req_parser_next(p);

    /* a buffered body under a larger per-request limit than the reader's */
    const char *post = "POST /y HTTP/1.1\r\nContent-Length: 8\r\n\r\n12345678";
    assert_int_equal(http_req_parser_feed(p, post, strlen(post), &used, &status), HTTP_REQ_HEADERS);
    r = http_req_parser_request(p);
    assert_true(r->has_body);
    assert_int_equal(r->content_length, 8);
    assert_int_equal(http_req_parser_body_mode(p, false, 100, &status), 0);
    size_t off = used;
    assert_int_equal(http_req_parser_feed(p, post + off, strlen(post) - off, &used, &status),
                     HTTP_REQ_COMPLETE);
    assert_string_equal(http_req_parser_request(p)->body, "12345678");
    http_req_parser_next(p);

    /* the default limit applies when the caller picks nothing */
    assert_int_equal(http_req_parser_feed(p, post, strlen(post), &used, &status), HTTP_REQ_HEADERS);
    off = used;
    assert_int_equal(http_req_parser_feed(p, post + off, strlen(post) - off, &used, &status),
                     HTTP_REQ_ERROR);
    assert_int_equal(status, 413);
    http_req_parser_free(&p);

    /* an announced length over the mode's limit is refused before any body */
    p = http_req_parser_new(1000);
    http_req_parser_stop_at_headers(p, true);
    assert_int_equal(http_req_parser_feed(p, post, strlen(post), &used, &status), HTTP_REQ_HEADERS);
    assert_int_equal(http_req_parser_body_mode(p, true, 7, &status), -1);
    assert_int_equal(status, 413);
    assert_int_equal(http_req_parser_feed(p, post + used, 1, &used, &status), HTTP_REQ_ERROR);
    http_req_parser_free(&p);

    /* a chunked body that grows past the streamed limit */
    p = http_req_parser_new(1000);
    http_req_parser_stop_at_headers(p, true);
    const char *ch =
        "PUT /z HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n4\r\nefgh\r\n";
    assert_int_equal(http_req_parser_feed(p, ch, strlen(ch), &used, &status), HTTP_REQ_HEADERS);
    assert_true(http_req_parser_request(p)->has_body);
    assert_int_equal(http_req_parser_body_mode(p, true, 6, &status), 0);
    off = used;
    assert_int_equal(http_req_parser_feed(p, ch + off, strlen(ch) - off, &used, &status),
                     HTTP_REQ_BODY);
    off += used;
    assert_int_equal(http_req_parser_feed(p, ch + off, strlen(ch) - off, &used, &status),
                     HTTP_REQ_ERROR);
    assert_int_equal(status, 413);
    http_req_parser_free(&p);
}

static void test_building_requests(void **state)
{
    struct http_request r;
    memset(&r, 0, sizeof(r));
    http_request_reset(&r);
    assert_int_equal(r.content_length, -1);
    assert_string_equal(http_method_lookup("PROPFIND", 8), "PROPFIND");
    assert_string_equal(http_method_lookup("GETX", 3), "GET");
    assert_null(http_method_lookup("BREW", 4));
    assert_null(http_method_lookup("get", 3));
    assert_int_equal(http_request_set_target(&r, "/a%2Fb?q=1", 10), 0);
    assert_string_equal(r.path, "/a/b");
    assert_string_equal(r.query, "q=1");
    assert_int_equal(http_request_set_target(&r, "/c", 2), 0); /* replaces */
    assert_string_equal(r.url, "/c");
    assert_null(r.query);
    assert_int_equal(http_request_set_target(&r, "/../x", 5), -1);
    assert_int_equal(http_request_set_target(&r, "/a%00", 5), -1);
    assert_int_equal(http_request_set_target(&r, "*", 1), -1);
    assert_int_equal(http_request_set_target(&r, "/a\0b", 4), -1);
    for (int i = 0; i < HTTP_MAX_HEADERS; i++)
        assert_int_equal(http_request_add_header(&r, "x-h", 3, "v", 1), 0);
    assert_int_equal(http_request_add_header(&r, "x-h", 3, "v", 1), -1);
    assert_string_equal(http_request_header(&r, "X-H"), "v");
    assert_int_equal(http_request_append_body(&r, "abc", 3, 5), 0);
    assert_int_equal(http_request_append_body(&r, "de", 2, 5), 0);
    assert_int_equal(http_request_append_body(&r, "f", 1, 5), -1);
    assert_int_equal(r.body_len, 5);
    assert_string_equal(r.body, "abcde");
    http_request_reset(&r);
    assert_null(r.body);
    assert_int_equal(r.nheaders, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get_any_split),
        cmocka_unit_test(test_pipelined_and_bodies),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_absolute_target),
        cmocka_unit_test(test_streamed_bodies_any_split),
        cmocka_unit_test(test_stop_at_headers_and_modes),
        cmocka_unit_test(test_building_requests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
