/* layer: node */
/* Tests for node/http/api_request: matching request paths against route
 * patterns, decoding query values, and parsing and evaluating If-Match
 * (RFC 9110 §13.1.1). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "node/http/api_request.h"

static void test_path_match(void **state)
{
    char p[API_PARAMS_MAX][API_PARAM_SIZE];
    assert_true(api_path_match("/domains", "/domains", p));
    assert_false(api_path_match("/domains", "/domains/", p));
    assert_false(api_path_match("/domains", "/domain", p));
    assert_false(api_path_match("/domains", "/domainsx", p));
    assert_false(api_path_match("/domains", "", p));
    assert_true(api_path_match("/domains/{name}", "/domains/a.test", p));
    assert_string_equal(p[0], "a.test");
    assert_false(api_path_match("/domains/{name}", "/domains/", p));
    assert_false(api_path_match("/domains/{name}", "/domains//", p));
    assert_false(api_path_match("/domains/{name}", "/domains/a.test/", p));
    assert_true(api_path_match("/groups/{address}/members/{member}",
                               "/groups/g@a.test/members/x@b.test", p));
    assert_string_equal(p[0], "g@a.test");
    assert_string_equal(p[1], "x@b.test");
    assert_false(
        api_path_match("/groups/{address}/members/{member}", "/groups/g@a.test/members", p));
    assert_false(api_path_match("/groups/{address}/members", "/groups/g@a.test/memberz", p));
    assert_false(api_path_match("/a/{x}/{y}/{z}", "/a/1/2/3", p)); /* three: too many */
    /* a parameter of API_PARAM_SIZE - 1 bytes fits, one more does not */
    char path[API_PARAM_SIZE + 16];
    strcpy(path, "/aliases/");
    memset(path + 9, 'x', API_PARAM_SIZE - 1);
    path[9 + API_PARAM_SIZE - 1] = '\0';
    assert_true(api_path_match("/aliases/{alias}", path, p));
    assert_int_equal(strlen(p[0]), API_PARAM_SIZE - 1);
    strcat(path, "x");
    assert_false(api_path_match("/aliases/{alias}", path, p));
}

static void test_query_value(void **state)
{
    char out[16];
    assert_int_equal(api_query_value("a%40b.test", 10, out, sizeof out), 0);
    assert_string_equal(out, "a@b.test");
    assert_int_equal(api_query_value("a+b%2Bc", 7, out, sizeof out), 0);
    assert_string_equal(out, "a b+c");
    assert_int_equal(api_query_value("", 0, out, sizeof out), 0);
    assert_string_equal(out, "");
    /* only len bytes count */
    assert_int_equal(api_query_value("abc&x=1", 3, out, sizeof out), 0);
    assert_string_equal(out, "abc");
    assert_int_equal(api_query_value("%zz", 3, out, sizeof out), -1);
    assert_int_equal(api_query_value("%4", 2, out, sizeof out), -1);
    assert_int_equal(api_query_value("%", 1, out, sizeof out), -1);
    assert_int_equal(api_query_value("a%00b", 5, out, sizeof out), -1);
    /* 15 characters fit with the NUL, 16 do not */
    assert_int_equal(api_query_value("123456789012345", 15, out, sizeof out), 0);
    assert_int_equal(api_query_value("1234567890123456", 16, out, sizeof out), -1);
    assert_int_equal(api_query_value("a", 1, out, 0), -1);
}

static void test_if_match(void **state)
{
    struct api_if_match m;
    assert_int_equal(api_if_match_parse("*", &m), 0);
    assert_true(m.any);
    assert_true(api_if_match_ok(&m, "anything"));
    assert_int_equal(api_if_match_parse("  * ", &m), 0);
    assert_true(m.any);

    assert_int_equal(api_if_match_parse("\"17\"", &m), 0);
    assert_false(m.any);
    assert_int_equal(m.n, 1);
    assert_true(api_if_match_ok(&m, "17"));
    assert_false(api_if_match_ok(&m, "18"));
    assert_false(api_if_match_ok(&m, "1"));

    /* a list; weak tags are skipped (strong comparison) */
    assert_int_equal(api_if_match_parse("W/\"a\", \"hx\" ,\"17\"", &m), 0);
    assert_int_equal(m.n, 2);
    assert_false(api_if_match_ok(&m, "a"));
    assert_true(api_if_match_ok(&m, "hx"));
    assert_true(api_if_match_ok(&m, "17"));
    assert_int_equal(api_if_match_parse("W/\"a\"", &m), -1); /* nothing that can match */

    /* a bare version number, as earlier clients sent it */
    assert_int_equal(api_if_match_parse("42", &m), 0);
    assert_true(api_if_match_ok(&m, "42"));

    /* malformed */
    const char *bad[] = {"",   "   ",       "garbage", "\"open", "\"a\" \"b\"", "\"a\";",
                         "**", "* , \"a\"", "\"a b\"", "W/42",   "\"a\",,x",    "\"\x01\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(api_if_match_parse(bad[i], &m), -1);

    /* only the first API_IF_MATCH_TAGS count, and over-long ones never match */
    char many[512] = "";
    for (int i = 0; i < API_IF_MATCH_TAGS + 2; i++) {
        char t[16];
        snprintf(t, sizeof t, "%s\"t%d\"", i ? ", " : "", i);
        strcat(many, t);
    }
    assert_int_equal(api_if_match_parse(many, &m), 0);
    assert_int_equal(m.n, API_IF_MATCH_TAGS);
    assert_true(api_if_match_ok(&m, "t0"));
    assert_false(api_if_match_ok(&m, "t9"));
    char longtag[API_ETAG_MAX + 8];
    memset(longtag, 'x', sizeof longtag);
    longtag[0] = '"';
    longtag[API_ETAG_MAX + 2] = '"';
    longtag[API_ETAG_MAX + 3] = '\0';
    assert_int_equal(api_if_match_parse(longtag, &m), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_match),
        cmocka_unit_test(test_query_value),
        cmocka_unit_test(test_if_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
