/* layer: storage */
/* Tests for storage/ips (intrusion prevention, migration 0013) against a real
 * PostgreSQL: address normalisation, blocks that are added, extended but never
 * shortened, listed with and without expired ones, removed per service or
 * altogether and purged; failure counters that count within a window, start a
 * new window after it, lose nothing when several connections count at once,
 * and reset; the schema's own checks; argument checks. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage/ips.h"
#include "support/testdb.h"

static PGconn *conn;

static int setup(void **state)
{
    PQclear(testdb_exec(conn, "TRUNCATE ips_blocks, ips_failures"));
    return 0;
}

static void exec_ok(const char *sql)
{
    PQclear(testdb_exec(conn, sql));
}

/* ---- collecting a listing ---- */

#define MAXB 16
struct listing {
    struct ips_block b[MAXB];
    int n;
    int stop_after; /* 0: never stop */
};

static int collect(const struct ips_block *b, void *arg)
{
    struct listing *l = arg;
    if (l->n < MAXB)
        l->b[l->n] = *b;
    l->n++;
    return l->stop_after && l->n >= l->stop_after ? 42 : 0;
}

static int list(bool include_expired, struct listing *l)
{
    memset(l, 0, sizeof(*l));
    char err[256];
    int n = ips_block_list(conn, include_expired, 1000, collect, l, err, sizeof(err));
    if (n < 0)
        fail_msg("%s", err);
    assert_int_equal(n, l->n);
    return n;
}

/* ---- tests ---- */

static void test_normalize(void **state)
{
    char out[IPS_ADDRESS_MAX];
    assert_int_equal(ips_address_normalize("192.0.2.7", out, sizeof(out)), 0);
    assert_string_equal(out, "192.0.2.7");
    /* one client, one spelling: a mapped address is the IPv4 address */
    assert_int_equal(ips_address_normalize("::ffff:192.0.2.7", out, sizeof(out)), 0);
    assert_string_equal(out, "192.0.2.7");
    assert_int_equal(ips_address_normalize("2001:DB8:0:0:0:0:0:1", out, sizeof(out)), 0);
    assert_string_equal(out, "2001:db8::1");
    assert_int_equal(ips_address_normalize("::1", out, sizeof(out)), 0);
    assert_string_equal(out, "::1");
    /* not host addresses */
    const char *bad[] = {
        "",        "10.0.0.0/8", "2001:db8::/32", "mail.example.com", "192.0.2.300",
        "192.0.2", " 192.0.2.1", "192.0.2.1 ",    "1:2:3:4:5:6:7:8:9"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ips_address_normalize(bad[i], out, sizeof(out)), -1);
    assert_int_equal(ips_address_normalize(NULL, out, sizeof(out)), -1);
    /* an output buffer too small for every address is refused, not overrun */
    char small[8];
    assert_int_equal(ips_address_normalize("1.2.3.4", small, sizeof(small)), -1);
    char longer[200];
    memset(longer, '1', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    assert_int_equal(ips_address_normalize(longer, out, sizeof(out)), -1);
}

static void test_service_valid(void **state)
{
    assert_true(ips_service_valid("*"));
    assert_true(ips_service_valid("smtp"));
    assert_true(ips_service_valid("admin-http_2"));
    assert_true(ips_service_valid("abcdefghijklmnopqrstuvwxyz012345")); /* 32 */
    assert_false(ips_service_valid("abcdefghijklmnopqrstuvwxyz0123456"));
    assert_false(ips_service_valid(""));
    assert_false(ips_service_valid(NULL));
    assert_false(ips_service_valid("SMTP"));
    assert_false(ips_service_valid("**"));
    assert_false(ips_service_valid("smtp "));
}

static void test_block_add_extend_never_shorten(void **state)
{
    char err[256];
    long long until = 0, now = (long long)time(NULL);
    assert_int_equal(ips_block_add(conn, "192.0.2.7", "*", "10 failed logins", "node1", 3600,
                                   &until, err, sizeof(err)),
                     0);
    assert_in_range(until, now + 3595, now + 3605);
    struct listing l;
    assert_int_equal(list(false, &l), 1);
    assert_string_equal(l.b[0].address, "192.0.2.7");
    assert_string_equal(l.b[0].service, "*");
    assert_string_equal(l.b[0].reason, "10 failed logins");
    assert_string_equal(l.b[0].node, "node1");
    assert_int_equal(l.b[0].until_unix, until);
    assert_in_range(l.b[0].blocked_unix, now - 5, now + 5);
    assert_false(l.b[0].expired);

    /* a shorter block of the same (address, service), in the mapped spelling:
     * the same row, the end stays, reason and node are the new ones */
    long long until2 = 0;
    assert_int_equal(ips_block_add(conn, "::ffff:192.0.2.7", "*", "again", "node2", 60, &until2,
                                   err, sizeof(err)),
                     0);
    assert_int_equal(until2, until);
    assert_int_equal(list(false, &l), 1);
    assert_string_equal(l.b[0].reason, "again");
    assert_string_equal(l.b[0].node, "node2");
    assert_int_equal(l.b[0].until_unix, until);

    /* a longer one extends it */
    assert_int_equal(
        ips_block_add(conn, "192.0.2.7", "*", "long", "floectl", 86400, &until2, err, sizeof(err)),
        0);
    assert_in_range(until2, now + 86395, now + 86405);
    assert_int_equal(list(false, &l), 1);
    assert_int_equal(l.b[0].until_unix, until2);

    /* other services and addresses are rows of their own; listing is ordered */
    assert_int_equal(ips_block_add(conn, "192.0.2.7", "imap", "", "", 60, NULL, err, sizeof(err)),
                     0);
    assert_int_equal(ips_block_add(conn, "2001:db8::1", "*", "v6", "n", 60, NULL, err, sizeof(err)),
                     0);
    assert_int_equal(ips_block_add(conn, "192.0.2.1", "pop3", "", "", 60, NULL, err, sizeof(err)),
                     0);
    assert_int_equal(list(false, &l), 4);
    assert_string_equal(l.b[0].address, "192.0.2.1");
    assert_string_equal(l.b[1].address, "192.0.2.7");
    assert_string_equal(l.b[1].service, "*");
    assert_string_equal(l.b[2].service, "imap");
    assert_string_equal(l.b[3].address, "2001:db8::1");
}

static void test_list_expired_max_and_stop(void **state)
{
    char err[256];
    assert_int_equal(ips_block_add(conn, "198.51.100.1", "*", "", "", 600, NULL, err, sizeof(err)),
                     0);
    assert_int_equal(ips_block_add(conn, "198.51.100.2", "*", "", "", 600, NULL, err, sizeof(err)),
                     0);
    assert_int_equal(ips_block_add(conn, "198.51.100.3", "*", "", "", 600, NULL, err, sizeof(err)),
                     0);
    exec_ok("UPDATE ips_blocks SET until = now() - interval '1 second'"
            " WHERE address = '198.51.100.2'");
    struct listing l;
    /* expired blocks are not in force */
    assert_int_equal(list(false, &l), 2);
    assert_string_equal(l.b[0].address, "198.51.100.1");
    assert_string_equal(l.b[1].address, "198.51.100.3");
    /* until purged, they are listed on request, marked */
    assert_int_equal(list(true, &l), 3);
    assert_false(l.b[0].expired);
    assert_true(l.b[1].expired);
    assert_false(l.b[2].expired);
    /* at most max */
    memset(&l, 0, sizeof(l));
    assert_int_equal(ips_block_list(conn, true, 2, collect, &l, err, sizeof(err)), 2);
    /* a callback's non-zero return stops the listing and is returned */
    memset(&l, 0, sizeof(l));
    l.stop_after = 1;
    assert_int_equal(ips_block_list(conn, true, 100, collect, &l, err, sizeof(err)), 42);
    assert_int_equal(l.n, 1);
}

static void test_remove(void **state)
{
    char err[256];
    assert_int_equal(ips_block_add(conn, "203.0.113.9", "*", "", "", 600, NULL, err, sizeof(err)),
                     0);
    assert_int_equal(
        ips_block_add(conn, "203.0.113.9", "smtp", "", "", 600, NULL, err, sizeof(err)), 0);
    assert_int_equal(
        ips_block_add(conn, "203.0.113.9", "imap", "", "", 600, NULL, err, sizeof(err)), 0);
    assert_int_equal(ips_block_add(conn, "203.0.113.10", "*", "", "", 600, NULL, err, sizeof(err)),
                     0);
    /* one service only */
    assert_int_equal(ips_block_remove(conn, "203.0.113.9", "smtp", err, sizeof(err)), 1);
    assert_int_equal(ips_block_remove(conn, "203.0.113.9", "smtp", err, sizeof(err)), 0);
    struct listing l;
    assert_int_equal(list(false, &l), 3);
    /* every block of the address, in any spelling; others stay */
    assert_int_equal(ips_block_remove(conn, "::ffff:203.0.113.9", NULL, err, sizeof(err)), 2);
    assert_int_equal(list(false, &l), 1);
    assert_string_equal(l.b[0].address, "203.0.113.10");
    assert_int_equal(ips_block_remove(conn, "192.0.2.99", NULL, err, sizeof(err)), 0);
}

static void test_purge(void **state)
{
    char err[256];
    unsigned count;
    assert_int_equal(ips_block_add(conn, "192.0.2.1", "*", "", "", 600, NULL, err, sizeof(err)), 0);
    assert_int_equal(ips_block_add(conn, "192.0.2.2", "*", "", "", 600, NULL, err, sizeof(err)), 0);
    assert_int_equal(ips_failure_add(conn, "192.0.2.3", 600, &count, err, sizeof(err)), 0);
    assert_int_equal(ips_failure_add(conn, "192.0.2.4", 600, &count, err, sizeof(err)), 0);
    exec_ok(
        "UPDATE ips_blocks SET until = now() - interval '1 second' WHERE address = '192.0.2.1'");
    exec_ok("UPDATE ips_failures SET window_start = now() - interval '601 seconds'"
            " WHERE address = '192.0.2.3'");
    assert_int_equal(ips_purge(conn, 600, err, sizeof(err)), 1);
    struct listing l;
    assert_int_equal(list(true, &l), 1);
    assert_string_equal(l.b[0].address, "192.0.2.2");
    PGresult *r = testdb_exec(conn, "SELECT host(address) FROM ips_failures");
    assert_int_equal(PQntuples(r), 1);
    assert_string_equal(PQgetvalue(r, 0, 0), "192.0.2.4");
    PQclear(r);
    assert_int_equal(ips_purge(conn, 600, err, sizeof(err)), 0);
}

static void test_failure_window_and_reset(void **state)
{
    char err[256];
    unsigned count = 0;
    for (unsigned i = 1; i <= 5; i++) {
        assert_int_equal(ips_failure_add(conn, "192.0.2.50", 600, &count, err, sizeof(err)), 0);
        assert_int_equal(count, i);
    }
    /* the mapped spelling is the same client */
    assert_int_equal(ips_failure_add(conn, "::ffff:192.0.2.50", 600, &count, err, sizeof(err)), 0);
    assert_int_equal(count, 6);
    /* addresses are counted apart */
    assert_int_equal(ips_failure_add(conn, "192.0.2.51", 600, &count, err, sizeof(err)), 0);
    assert_int_equal(count, 1);
    /* the window started at the first failure; once it has passed, counting starts over */
    exec_ok("UPDATE ips_failures SET window_start = now() - interval '601 seconds'"
            " WHERE address = '192.0.2.50'");
    assert_int_equal(ips_failure_add(conn, "192.0.2.50", 600, &count, err, sizeof(err)), 0);
    assert_int_equal(count, 1);
    PGresult *r = testdb_exec(conn, "SELECT window_start > now() - interval '10 seconds'"
                                    " FROM ips_failures WHERE address = '192.0.2.50'");
    assert_string_equal(PQgetvalue(r, 0, 0), "t");
    PQclear(r);
    /* inside a still running window (a longer window setting) the count goes on */
    exec_ok("UPDATE ips_failures SET window_start = now() - interval '601 seconds'"
            " WHERE address = '192.0.2.50'");
    assert_int_equal(ips_failure_add(conn, "192.0.2.50", 3600, &count, err, sizeof(err)), 0);
    assert_int_equal(count, 2);
    /* reset */
    assert_int_equal(ips_failure_reset(conn, "192.0.2.50", err, sizeof(err)), 1);
    assert_int_equal(ips_failure_reset(conn, "192.0.2.50", err, sizeof(err)), 0);
    assert_int_equal(ips_failure_add(conn, "192.0.2.50", 600, &count, err, sizeof(err)), 0);
    assert_int_equal(count, 1);
    /* IPv6 */
    assert_int_equal(ips_failure_add(conn, "2001:db8::5", 600, &count, err, sizeof(err)), 0);
    assert_int_equal(ips_failure_add(conn, "2001:DB8:0::5", 600, &count, err, sizeof(err)), 0);
    assert_int_equal(count, 2);
}

#define COUNTERS 8
#define EACH 25

static void *count_many(void *arg)
{
    PGconn *c = testdb_connect();
    char err[256];
    unsigned count;
    long ok = 0;
    for (int i = 0; i < EACH; i++)
        if (ips_failure_add(c, "198.51.100.77", 600, &count, err, sizeof(err)) == 0)
            ok++;
    PQfinish(c);
    return (void *)ok;
}

static void test_concurrent_counting_loses_nothing(void **state)
{
    pthread_t t[COUNTERS];
    for (int i = 0; i < COUNTERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, count_many, NULL), 0);
    long total = 0;
    for (int i = 0; i < COUNTERS; i++) {
        void *ok;
        pthread_join(t[i], &ok);
        total += (long)ok;
    }
    assert_int_equal(total, COUNTERS * EACH);
    PGresult *r = testdb_exec(conn, "SELECT failures FROM ips_failures"
                                    " WHERE address = '198.51.100.77'");
    assert_int_equal(atoi(PQgetvalue(r, 0, 0)), COUNTERS * EACH);
    PQclear(r);
}

static void test_schema_checks(void **state)
{
    /* the table itself refuses prefixes and bad service names */
    const char *bad[] = {
        "INSERT INTO ips_blocks (address, service, until) VALUES ('10.0.0.0/8', '*', now())",
        "INSERT INTO ips_blocks (address, service, until) VALUES ('2001:db8::/64', '*', now())",
        "INSERT INTO ips_blocks (address, service, until) VALUES ('10.0.0.1', 'SMTP', now())",
        "INSERT INTO ips_blocks (address, service, until) VALUES ('10.0.0.1', '', now())",
        "INSERT INTO ips_failures (address, window_start, failures) VALUES ('10.0.0.0/24', now(), "
        "1)",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        PGresult *r = PQexec(conn, bad[i]);
        assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
        assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "23514");
        PQclear(r);
    }
}

static void test_invalid_arguments(void **state)
{
    char err[256] = "";
    unsigned count;
    char reason[IPS_REASON_MAX + 2];
    memset(reason, 'r', sizeof(reason) - 1);
    reason[sizeof(reason) - 1] = '\0';
    assert_int_equal(ips_block_add(conn, "10.0.0.0/8", "*", "", "", 60, NULL, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "not an IPv4 or IPv6 host address"));
    assert_int_equal(ips_block_add(conn, "10.0.0.1", "Smtp", "", "", 60, NULL, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "invalid service"));
    assert_int_equal(ips_block_add(conn, "10.0.0.1", "*", "", "", 0, NULL, err, sizeof(err)), -1);
    assert_int_equal(ips_block_add(conn, "10.0.0.1", "*", "", "", IPS_BLOCK_SECONDS_MAX + 1, NULL,
                                   err, sizeof(err)),
                     -1);
    assert_int_equal(ips_block_add(conn, "10.0.0.1", "*", reason, "", 60, NULL, err, sizeof(err)),
                     -1);
    reason[IPS_REASON_MAX] = '\0'; /* exactly the maximum is fine */
    assert_int_equal(ips_block_add(conn, "10.0.0.1", "*", reason, "", 60, NULL, err, sizeof(err)),
                     0);
    assert_int_equal(ips_block_remove(conn, "nonsense", NULL, err, sizeof(err)), -1);
    assert_int_equal(ips_block_remove(conn, "10.0.0.1", "", err, sizeof(err)), -1);
    assert_int_equal(ips_failure_add(conn, "10.0.0.1", 0, &count, err, sizeof(err)), -1);
    assert_int_equal(
        ips_failure_add(conn, "10.0.0.1", IPS_WINDOW_SECONDS_MAX + 1, &count, err, sizeof(err)),
        -1);
    assert_int_equal(ips_failure_add(conn, "", 60, &count, err, sizeof(err)), -1);
    assert_int_equal(ips_failure_reset(conn, "x", err, sizeof(err)), -1);
    assert_int_equal(ips_purge(conn, 0, err, sizeof(err)), -1);
    /* err may be NULL */
    assert_int_equal(ips_block_add(conn, "bad", "*", "", "", 60, NULL, NULL, 0), -1);
    /* nothing invalid reached the table */
    struct listing l;
    assert_int_equal(list(true, &l), 1);
    assert_string_equal(l.b[0].address, "10.0.0.1");
}

int main(void)
{
    conn = testdb_create("ips");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_service_valid),
        cmocka_unit_test_setup(test_block_add_extend_never_shorten, setup),
        cmocka_unit_test_setup(test_list_expired_max_and_stop, setup),
        cmocka_unit_test_setup(test_remove, setup),
        cmocka_unit_test_setup(test_purge, setup),
        cmocka_unit_test_setup(test_failure_window_and_reset, setup),
        cmocka_unit_test_setup(test_concurrent_counting_loses_nothing, setup),
        cmocka_unit_test_setup(test_schema_checks, setup),
        cmocka_unit_test_setup(test_invalid_arguments, setup),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    testdb_drop(&conn);
    return rc;
}
