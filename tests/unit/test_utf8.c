/* layer: proto */
/* UTF-8 validation: RFC 3629 boundaries and the control-character flags. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "proto/text/utf8.h"

static bool ok(const char *s, unsigned flags)
{
    return utf8_check(s, strlen(s), flags);
}

static void test_valid_and_invalid(void **state)
{
    assert_true(ok("plain ascii", 0));
    assert_true(ok("J\xc3\xb6rg \xe2\x82\xac \xf0\x9f\x98\x80", 0)); /* 2, 3, 4 bytes */
    assert_true(ok("\xef\xbf\xbf", 0));                              /* U+FFFF */
    assert_true(ok("\xf4\x8f\xbf\xbf", 0));                          /* U+10FFFF */
    assert_false(ok("\xf4\x90\x80\x80", 0));                         /* above U+10FFFF */
    assert_false(ok("\xc0\xaf", 0));                                 /* overlong '/' */
    assert_false(ok("\xe0\x80\xaf", 0));                             /* overlong */
    assert_false(ok("\xed\xa0\x80", 0));                             /* surrogate */
    assert_false(ok("\x80", 0));                                     /* stray continuation */
    assert_false(ok("\xc3", 0));                                     /* truncated */
    assert_false(ok("\xe2\x82", 0));
    assert_false(ok("\xf8\x88\x80\x80\x80", 0)); /* 5-byte form */
    assert_true(utf8_check("a\0b", 3, 0));       /* NUL is valid UTF-8 */
    assert_false(utf8_check("a\0b", 3, UTF8_NO_C0));
}

static void test_control_flags(void **state)
{
    assert_false(ok("tab\there", UTF8_NO_C0));
    assert_false(ok("del\x7f", UTF8_NO_C0));
    assert_true(ok("del\x7f", 0));
    assert_true(ok("c1 \xc2\x85", UTF8_NO_C0));
    assert_false(ok("c1 \xc2\x85", UTF8_NO_C1));
    assert_true(ok("\xc2\xa0 nbsp", UTF8_NO_C0 | UTF8_NO_C1));
    uint32_t cp;
    assert_int_equal(utf8_decode((const unsigned char *)"\xe2\x82\xac", 3, &cp), 3);
    assert_int_equal(cp, 0x20ac);
    assert_int_equal(utf8_decode((const unsigned char *)"", 0, &cp), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_valid_and_invalid),
                                       cmocka_unit_test(test_control_flags)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
