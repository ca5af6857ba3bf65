/* layer: proto */
/* DNS records a domain needs: content, and refusal of invalid names. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "proto/autodiscover/dnsrecords.h"

static char out[8192];

static void add(const char *text, void *arg)
{
    strcat(out, text);
    strcat(out, "\n");
}

static void test_records(void **state)
{
    out[0] = '\0';
    int n = dns_records("example.test", "mail.example.net", 3600, add, NULL);
    assert_int_equal(n, 16);
    assert_non_null(strstr(out, "example.test. 3600 IN MX 10 mail.example.net.\n"));
    assert_non_null(strstr(out, "_imaps._tcp.example.test. 3600 IN SRV 0 1 993 mail.example.net.\n"));
    assert_non_null(strstr(out, "_submission._tcp.example.test. 3600 IN SRV 10 1 587 mail.example.net.\n"));
    assert_non_null(strstr(out, "_submissions._tcp.example.test. 3600 IN SRV 0 1 465 mail.example.net.\n"));
    assert_non_null(strstr(out, "_caldavs._tcp.example.test. 3600 IN TXT \"path=/.well-known/caldav\"\n"));
    assert_non_null(strstr(out, "_autodiscover._tcp.example.test. 3600 IN SRV 0 1 443 mail.example.net.\n"));
    assert_non_null(strstr(out, "autoconfig.example.test. 3600 IN CNAME mail.example.net.\n"));
    /* the host is the domain itself: no CNAME onto itself */
    out[0] = '\0';
    assert_int_equal(dns_records("example.test", "example.test", 300, add, NULL), 14);
    assert_null(strstr(out, "CNAME"));
}

static void test_invalid_names(void **state)
{
    static const char *bad[] = {"", "-a.test", "a-.test", "a..test", "a.test.", "a b.test",
                                "a_b.test", "\"quoted\".test"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(dns_records(bad[i], "mail.test", 1, add, NULL), -1);
        assert_int_equal(dns_records("ok.test", bad[i], 1, add, NULL), -1);
    }
    char longlabel[80];
    memset(longlabel, 'a', 64);
    strcpy(longlabel + 64, ".test");
    assert_int_equal(dns_records(longlabel, "mail.test", 1, add, NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_records),
                                       cmocka_unit_test(test_invalid_names)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
