/* layer: node */
/* Tests for node/ips (the node side of intrusion prevention) against a real
 * PostgreSQL, without Redis, so failures are counted in the database: the
 * [ips] section of the configuration, a block after the threshold (for the
 * IPv4 address in both socket spellings), the reset by a success, exempt and
 * trusted addresses, service-specific blocks and releases picked up by the
 * periodic refresh, [ips] enabled = no, and ips_announce()'s argument checks.
 * The cluster-wide behaviour (bus, Redis, floectl) is in tests/cluster/test_ips.py. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "node/config.h"
#include "node/ips.h"
#include "storage/ips.h"
#include "support/testdb.h"

static PGconn *conn;
static char path[] = "/tmp/floe-test-ips-XXXXXX";

static struct config *load(const char *ips_section, char *err, size_t errlen)
{
    char ci[1024];
    testdb_conninfo(NULL, ci, sizeof(ci));
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "[node]\nid = test1\n[database]\nurl = %s\n[ips]\n%s\n", ci, ips_section);
    fclose(f);
    return config_load(path, -1, err, errlen);
}

static struct sockaddr_storage v4(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *s = (struct sockaddr_in *)&ss;
    s->sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, text, &s->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage v6(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
    s->sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, text, &s->sin6_addr), 1);
    return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

/* Polls pred for up to ms milliseconds. */
static bool eventually(const struct config *cfg, const char *service,
                       const struct sockaddr_storage *a, bool want, int ms)
{
    for (int i = 0; i < ms / 20; i++) {
        if (ips_blocked(cfg, service, SA(*a)) == want)
            return true;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return ips_blocked(cfg, service, SA(*a)) == want;
}

static int failures_in_db(const char *address)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT failures FROM ips_failures WHERE address = '%s'", address);
    PGresult *r = testdb_exec(conn, sql);
    int n = PQntuples(r) ? atoi(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    return n;
}

static void test_config(void **state)
{
    char err[1024] = "";
    struct config *cfg = load("", err, sizeof(err));
    assert_non_null(cfg);
    assert_true(cfg->ips.enabled);
    assert_int_equal(cfg->ips.failures, 10);
    assert_int_equal(cfg->ips.window, 600);
    assert_int_equal(cfg->ips.block, 3600);
    assert_int_equal(cfg->ips.refresh, 30);
    assert_int_equal(access_list_count(cfg->ips.exempt), 0);
    config_free(&cfg);
    cfg = load("enabled = no\nfailures = 5\nwindow = 60\nblock = 120\nrefresh = 5\n"
               "exempt = 10.0.0.0/8; 2001:db8::/32",
               err, sizeof(err));
    assert_non_null(cfg);
    assert_false(cfg->ips.enabled);
    assert_int_equal(cfg->ips.failures, 5);
    assert_int_equal(cfg->ips.block, 120);
    assert_int_equal(access_list_count(cfg->ips.exempt), 2);
    config_free(&cfg);
    assert_null(load("failures = 0", err, sizeof(err)));
    assert_non_null(strstr(err, "at least 1"));
    assert_null(load("window = 86401", err, sizeof(err)));
    assert_non_null(strstr(err, "'window'"));
    assert_null(load("exempt = 300.0.0.1", err, sizeof(err)));
    assert_non_null(strstr(err, "'exempt'"));
    assert_null(load("threshold = 3", err, sizeof(err)));
    assert_non_null(strstr(err, "unknown key 'threshold'"));
}

static void test_count_block_reset_exempt_refresh(void **state)
{
    char err[1024] = "";
    PQclear(testdb_exec(conn, "TRUNCATE ips_blocks, ips_failures"));
    struct config *cfg = load("failures = 3\nwindow = 600\nblock = 600\nrefresh = 1\n"
                              "exempt = 198.51.100.0/24",
                              err, sizeof(err));
    assert_non_null(cfg);
    assert_int_equal(ips_start(cfg, err, sizeof(err)), 0);
    assert_int_equal(ips_start(cfg, err, sizeof(err)), -1); /* once */

    struct sockaddr_storage a = v4("192.0.2.10"), a6 = v6("::ffff:192.0.2.10");
    /* two failures, then a success: the counter is gone */
    ips_login_report(cfg, "smtp", SA(a), false);
    ips_login_report(cfg, "smtp", SA(a6), false); /* the same client */
    for (int i = 0; i < 100 && failures_in_db("192.0.2.10") != 2; i++)
        usleep(20000);
    assert_int_equal(failures_in_db("192.0.2.10"), 2);
    ips_login_report(cfg, "smtp", SA(a), true);
    for (int i = 0; i < 100 && failures_in_db("192.0.2.10") != 0; i++)
        usleep(20000);
    assert_int_equal(failures_in_db("192.0.2.10"), 0);
    /* three more: blocked, for every service and both spellings */
    for (int i = 0; i < 3; i++)
        ips_login_report(cfg, "pop3", SA(a), false);
    assert_true(eventually(cfg, "smtp", &a, true, 3000));
    assert_true(ips_blocked(cfg, "imap", SA(a6)));
    struct sockaddr_storage other = v4("192.0.2.11");
    assert_false(ips_blocked(cfg, "smtp", SA(other)));
    struct ips_stats st;
    ips_get_stats(&st);
    assert_int_equal(st.reported, 5);
    assert_int_equal(st.blocked, 1);
    assert_false(st.redis);
    /* recorded for the cluster, counter reset */
    PGresult *r = testdb_exec(conn, "SELECT host(address), service, node, reason FROM ips_blocks");
    assert_int_equal(PQntuples(r), 1);
    assert_string_equal(PQgetvalue(r, 0, 0), "192.0.2.10");
    assert_string_equal(PQgetvalue(r, 0, 1), "*");
    assert_string_equal(PQgetvalue(r, 0, 2), "test1");
    assert_non_null(strstr(PQgetvalue(r, 0, 3), "3 failed logins within 600 s (last on pop3)"));
    PQclear(r);
    assert_int_equal(failures_in_db("192.0.2.10"), 0);
    /* failures while blocked are not counted again */
    ips_login_report(cfg, "smtp", SA(a), false);
    usleep(200000);
    assert_int_equal(failures_in_db("192.0.2.10"), 0);

    /* exempt ([ips] exempt) and trusted ([limits] trusted, default 127.0.0.1)
     * addresses are neither counted nor refused, even with a block on record */
    struct sockaddr_storage ex = v4("198.51.100.5"), lo = v4("127.0.0.1");
    for (int i = 0; i < 5; i++) {
        ips_login_report(cfg, "smtp", SA(ex), false);
        ips_login_report(cfg, "smtp", SA(lo), false);
    }
    assert_int_equal(ips_block_add(conn, "198.51.100.5", "*", "", "", 600, NULL, err, sizeof(err)),
                     0);
    assert_int_equal(ips_block_add(conn, "127.0.0.1", "*", "", "", 600, NULL, err, sizeof(err)), 0);
    /* a block of one service only, made elsewhere: seen at the next refresh */
    struct sockaddr_storage s6 = v6("2001:db8::77");
    assert_int_equal(
        ips_block_add(conn, "2001:db8::77", "imap", "", "", 600, NULL, err, sizeof(err)), 0);
    assert_true(eventually(cfg, "imap", &s6, true, 3000));
    assert_false(ips_blocked(cfg, "smtp", SA(s6)));
    assert_false(ips_blocked(cfg, "smtp", SA(ex)));
    assert_false(ips_blocked(cfg, "smtp", SA(lo)));
    assert_int_equal(failures_in_db("198.51.100.5"), 0);
    assert_int_equal(failures_in_db("127.0.0.1"), 0);

    /* released elsewhere: lifted at the next refresh */
    assert_int_equal(ips_block_remove(conn, "192.0.2.10", NULL, err, sizeof(err)), 1);
    assert_true(eventually(cfg, "smtp", &a, false, 3000));

    /* [ips] enabled = no: nothing refused, nothing counted */
    char err2[1024];
    struct config *off = load("enabled = no\nfailures = 1", err2, sizeof(err2));
    assert_non_null(off);
    assert_true(ips_blocked(cfg, "imap", SA(s6)));
    assert_false(ips_blocked(off, "imap", SA(s6)));
    ips_login_report(off, "smtp", SA(other), false);
    usleep(200000);
    assert_int_equal(failures_in_db("192.0.2.11"), 0);
    assert_false(ips_blocked(cfg, "smtp", SA(other)));
    config_free(&off);

    ips_stop();
    assert_false(ips_blocked(cfg, "imap", SA(s6)));
    ips_login_report(cfg, "smtp", SA(other), false); /* after stop: dropped quietly */
    ips_stop();                                      /* twice is harmless */
    config_free(&cfg);
}

static void test_announce_arguments(void **state)
{
    char err[256] = "";
    assert_int_equal(ips_announce("", "t", "192.0.2.1", "*", 1, "", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no [redis] url"));
    assert_int_equal(ips_announce("http://x", "t", "192.0.2.1", "*", 1, "", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "expected redis://"));
    assert_int_equal(ips_announce("redis://h:0", "t", "192.0.2.1", "*", 1, "", err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "bad port"));
    assert_int_equal(ips_announce("unix:///nonexistent/redis.sock", "t", "192.0.2.1", "*", 1, "",
                                  err, sizeof(err)),
                     -1);
    assert_int_equal(ips_announce("unix:///x", "t", "192.0.2.0/24", "*", 1, "", err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "not a host address"));
}

int main(void)
{
    int fd = mkstemp(path);
    if (fd < 0)
        return 1;
    close(fd);
    conn = testdb_create("ips_node");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_count_block_reset_exempt_refresh),
        cmocka_unit_test(test_announce_arguments),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    testdb_drop(&conn);
    unlink(path);
    return rc;
}
