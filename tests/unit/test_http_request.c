/* layer: proto */
/* Unit tests for the HTTP/1.1 request reader. */
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
    assert_int_equal(http_req_parser_feed(p, hdrs, strlen(hdrs), &used, &status),
                     HTTP_REQ_HEADERS);
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
    expect_status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n0123456789a\r\n0\r\n\r\n",
                  10, 413);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get_any_split),
        cmocka_unit_test(test_pipelined_and_bodies),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_absolute_target),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
