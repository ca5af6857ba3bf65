/* layer: storage */
/* Unit tests for storage/smartdiscover: the checks of every kind of field, and
 * storing, reading, clearing SmartDiscover settings against PostgreSQL — unknown
 * domains, aliases, several fields in one statement, a bad value writing
 * nothing, removal with the domain. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/aliases.h"
#include "storage/directory.h"
#include "storage/smartdiscover.h"
#include "support/testdb.h"

static PGconn *conn;

static void check_ok(enum smartdiscover_field f, const char *in, const char *want)
{
    char out[SMARTDISCOVER_VALUE_MAX + 1], err[256];
    if (smartdiscover_check(f, in, out, err, sizeof(err)) != 0)
        fail_msg("%s = '%s' refused: %s", smartdiscover_fields[f], in, err);
    assert_string_equal(out, want);
}

static void check_bad(enum smartdiscover_field f, const char *in)
{
    char out[SMARTDISCOVER_VALUE_MAX + 1], err[256] = "";
    if (smartdiscover_check(f, in, out, err, sizeof(err)) == 0)
        fail_msg("%s = '%s' accepted", smartdiscover_fields[f], in);
    assert_non_null(strstr(err, smartdiscover_fields[f]));
}

static void test_checks(void **state)
{
    assert_int_equal(smartdiscover_field_of("imap_tls"), SD_IMAP_TLS);
    assert_int_equal(smartdiscover_field_of("carddav_url"), SD_CARDDAV_URL);
    assert_int_equal(smartdiscover_field_of("nope"), -1);
    assert_int_equal(SD_TLS_OF(SD_SVC_SIP), SD_SIP_TLS);
    assert_null(smartdiscover_fields[SD_NFIELDS]);

    check_ok(SD_PUBLIC_HOSTNAME, "Mail.Example.COM.", "mail.example.com");
    check_ok(SD_IMAP_HOST, "192.0.2.7", "192.0.2.7");
    check_bad(SD_IMAP_HOST, "");
    check_bad(SD_IMAP_HOST, "-bad.example");
    check_bad(SD_IMAP_HOST, "bad-.example");
    check_bad(SD_IMAP_HOST, "a..b");
    check_bad(SD_SMTP_HOST, "under_score.example");
    check_bad(SD_SMTP_HOST, "has space.example");
    char label[80];
    memset(label, 'a', 64);
    strcpy(label + 64, ".example");
    check_bad(SD_SMTP_HOST, label);
    check_ok(SD_SMTP_TLS, "SSL", "tls");
    check_ok(SD_SMTP_TLS, "standard", "starttls");
    check_ok(SD_SMTP_TLS, "None", "none");
    check_bad(SD_SMTP_TLS, "maybe");
    check_ok(SD_POP3_PORT, "995", "995");
    check_bad(SD_POP3_PORT, "0");
    check_bad(SD_POP3_PORT, "65536");
    check_bad(SD_POP3_PORT, "99x");
    check_bad(SD_POP3_PORT, "");
    check_ok(SD_WEBCLIENT_URL, "https://web.example.com:32001/webmail/?x=1",
             "https://web.example.com:32001/webmail/?x=1");
    check_ok(SD_SYNCML_URL, "http://example.com", "http://example.com");
    check_bad(SD_WEBCLIENT_URL, "ftp://example.com/");
    check_bad(SD_WEBCLIENT_URL, "https://");
    check_bad(SD_WEBCLIENT_URL, "https://exa mple.com/");
    check_bad(SD_WEBCLIENT_URL, "https://example.com/<script>");
    check_bad(SD_WEBCLIENT_URL, "https://example.com:0/");
    check_bad(SD_WEBCLIENT_URL, "https://example.com/\x01");
    check_bad(SD_WEBCLIENT_URL, "https://example.com/\xc3\xa9");
    char *longurl = malloc(SMARTDISCOVER_VALUE_MAX + 40);
    assert_non_null(longurl);
    strcpy(longurl, "https://example.com/");
    memset(longurl + 20, 'x', SMARTDISCOVER_VALUE_MAX);
    longurl[20 + SMARTDISCOVER_VALUE_MAX] = '\0';
    check_bad(SD_WEBDAV_URL, longurl);
    free(longurl);
}

static void test_store(void **state)
{
    char err[512];
    PQclear(testdb_exec(conn, "TRUNCATE domains RESTART IDENTITY CASCADE"));
    assert_int_equal(dir_domain_add(conn, "example.test", err, sizeof(err)), 0);
    assert_int_equal(dir_domain_add(conn, "other.test", err, sizeof(err)), 0);
    static struct smartdiscover sd;

    /* nothing stored yet: every field empty */
    assert_int_equal(smartdiscover_get(conn, "example.test", &sd, err, sizeof(err)), 0);
    for (int f = 0; f < SD_NFIELDS; f++)
        assert_string_equal(sd.v[f], "");
    assert_int_equal(smartdiscover_get(conn, "nowhere.test", &sd, err, sizeof(err)), DIR_ENOTFOUND);

    enum smartdiscover_field f1[] = {SD_PUBLIC_HOSTNAME, SD_IMAP_TLS, SD_IMAP_PORT,
                                     SD_WEBCLIENT_URL, SD_IMAP_TLS};
    const char *v1[] = {"MX.Example.Test", "tls", "1993", "https://web.example.test/", "standard"};
    assert_int_equal(smartdiscover_set(conn, "example.test", f1, v1, 5, err, sizeof(err)), 0);
    assert_int_equal(smartdiscover_get(conn, "EXAMPLE.test", &sd, err, sizeof(err)), 0);
    assert_string_equal(sd.v[SD_PUBLIC_HOSTNAME], "mx.example.test");
    assert_string_equal(sd.v[SD_IMAP_TLS], "starttls"); /* the last one given */
    assert_string_equal(sd.v[SD_IMAP_PORT], "1993");
    assert_string_equal(sd.v[SD_WEBCLIENT_URL], "https://web.example.test/");
    assert_string_equal(sd.v[SD_SMTP_HOST], "");
    /* a domain alias names the same settings */
    assert_int_equal(dir_domain_alias_add(conn, "alias.test", "example.test", err, sizeof(err)), 0);
    assert_int_equal(smartdiscover_get(conn, "alias.test", &sd, err, sizeof(err)), 0);
    assert_string_equal(sd.v[SD_PUBLIC_HOSTNAME], "mx.example.test");

    /* a second set changes only what it names; NULL or "" clears */
    enum smartdiscover_field f2[] = {SD_IMAP_PORT, SD_WEBCLIENT_URL, SD_SIP_HOST};
    const char *v2[] = {NULL, "", "sip.example.test"};
    assert_int_equal(smartdiscover_set(conn, "example.test", f2, v2, 3, err, sizeof(err)), 0);
    assert_int_equal(smartdiscover_get(conn, "example.test", &sd, err, sizeof(err)), 0);
    assert_string_equal(sd.v[SD_IMAP_PORT], "");
    assert_string_equal(sd.v[SD_WEBCLIENT_URL], "");
    assert_string_equal(sd.v[SD_SIP_HOST], "sip.example.test");
    assert_string_equal(sd.v[SD_PUBLIC_HOSTNAME], "mx.example.test");

    /* one bad value: nothing written */
    enum smartdiscover_field f3[] = {SD_SMTP_HOST, SD_SMTP_PORT};
    const char *v3[] = {"smtp.example.test", "70000"};
    assert_int_equal(smartdiscover_set(conn, "example.test", f3, v3, 2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "smtp_port"));
    assert_int_equal(smartdiscover_get(conn, "example.test", &sd, err, sizeof(err)), 0);
    assert_string_equal(sd.v[SD_SMTP_HOST], "");
    assert_int_equal(smartdiscover_set(conn, "nowhere.test", f3, v3, 1, err, sizeof(err)),
                     DIR_ENOTFOUND);
    enum smartdiscover_field bad[] = {(enum smartdiscover_field)SD_NFIELDS};
    assert_int_equal(smartdiscover_set(conn, "example.test", bad, v3, 1, err, sizeof(err)), -1);

    /* the other domain is untouched */
    assert_int_equal(smartdiscover_get(conn, "other.test", &sd, err, sizeof(err)), 0);
    assert_string_equal(sd.v[SD_PUBLIC_HOSTNAME], "");

    /* clear, and removal with the domain */
    assert_int_equal(smartdiscover_clear(conn, "example.test", err, sizeof(err)), 0);
    assert_int_equal(smartdiscover_get(conn, "example.test", &sd, err, sizeof(err)), 0);
    assert_string_equal(sd.v[SD_SIP_HOST], "");
    assert_int_equal(smartdiscover_clear(conn, "nowhere.test", err, sizeof(err)), DIR_ENOTFOUND);
    assert_int_equal(smartdiscover_set(conn, "other.test", f3, v3, 1, err, sizeof(err)), 0);
    assert_int_equal(dir_domain_delete(conn, "other.test", true, err, sizeof(err)), 0);
    PGresult *r = testdb_exec(conn, "SELECT count(*) FROM smartdiscover");
    assert_string_equal(PQgetvalue(r, 0, 0), "0");
    PQclear(r);
}

static int setup(void **state)
{
    conn = testdb_create("smartdiscover");
    return 0;
}

static int teardown(void **state)
{
    testdb_drop(&conn);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checks),
        cmocka_unit_test(test_store),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
