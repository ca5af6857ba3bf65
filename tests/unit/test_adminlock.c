/* layer: storage */
/* Tests for the storage pieces the admin API added, against a real
 * PostgreSQL: storage/adminlock (the administrator lock across connections),
 * policy_set_*_many() (several service policies in one transaction) and
 * dir_account_update() with a group's delivery (one statement with the
 * version check). */
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

#include "storage/adminlock.h"
#include "storage/directory.h"
#include "storage/groups.h"
#include "storage/policy.h"
#include "support/testdb.h"

static PGconn *conn;

static void ok(int rc, const char *err)
{
    if (rc != 0)
        fail_msg("rc %d: %s", rc, err);
}

static int setup(void **state)
{
    PQclear(testdb_exec(conn, "TRUNCATE domains, accounts RESTART IDENTITY CASCADE"));
    char err[256];
    ok(dir_domain_add(conn, "one.test", err, sizeof(err)), err);
    ok(dir_account_add(conn, "ann@one.test", "user", "pw-123456", "Ann", false, err, sizeof(err)),
       err);
    ok(dir_group_add(conn, "team@one.test", "Team", NULL, err, sizeof(err)), err);
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- adminlock ---- */

static void test_lock_excludes_other_connections(void **state)
{
    char err[256];
    PGconn *other = testdb_connect();
    ok(adminlock_take(conn, "ann@one.test", err, sizeof(err)), err);
    /* the same session may take it again (advisory locks count per session) */
    ok(adminlock_take(conn, "ann@one.test", err, sizeof(err)), err);
    ok(adminlock_release(conn, "ann@one.test", err, sizeof(err)), err);
    /* another name is free */
    ok(adminlock_take(other, "team@one.test", err, sizeof(err)), err);
    ok(adminlock_release(other, "team@one.test", err, sizeof(err)), err);
    /* still held once: another connection waits its time, then gives up */
    double t0 = now_s();
    assert_int_equal(adminlock_take(other, "ann@one.test", err, sizeof(err)), -1);
    double waited = now_s() - t0;
    assert_true(waited >= ADMINLOCK_WAIT_MS / 1000.0 - 0.05);
    assert_true(waited < ADMINLOCK_WAIT_MS / 1000.0 + 3);
    assert_non_null(strstr(err, "another administrator"));
    ok(adminlock_release(conn, "ann@one.test", err, sizeof(err)), err);
    ok(adminlock_take(other, "ann@one.test", err, sizeof(err)), err);
    /* releasing what one does not hold is an error */
    assert_int_equal(adminlock_release(conn, "ann@one.test", err, sizeof(err)), -1);
    ok(adminlock_release(other, "ann@one.test", err, sizeof(err)), err);
    PQfinish(other);
}

static void test_lock_survives_transactions_and_dies_with_the_session(void **state)
{
    char err[256];
    PGconn *holder = testdb_connect();
    ok(adminlock_take(holder, "#server", err, sizeof(err)), err);
    /* a storage call's own transaction on the holder does not drop it */
    ok(policy_set_domain(holder, "one.test", "imap", POLICY_DISABLED, err, sizeof(err)), err);
    char sql[160];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %u",
             (unsigned)ADMINLOCK_CLASS);
    PGresult *r = testdb_exec(conn, sql);
    assert_string_equal(PQgetvalue(r, 0, 0), "1");
    PQclear(r);
    /* a holder that goes away loses it: the next one gets it at once */
    PQfinish(holder);
    double t0 = now_s();
    ok(adminlock_take(conn, "#server", err, sizeof(err)), err);
    assert_true(now_s() - t0 < ADMINLOCK_WAIT_MS / 1000.0);
    ok(adminlock_release(conn, "#server", err, sizeof(err)), err);
}

struct waiter {
    PGconn *c;
    int rc;
    double got_at;
};

static void *take_later(void *arg)
{
    struct waiter *w = arg;
    w->rc = adminlock_take(w->c, "ann@one.test", NULL, 0);
    w->got_at = now_s();
    if (w->rc == 0)
        adminlock_release(w->c, "ann@one.test", NULL, 0);
    return NULL;
}

static void test_lock_waiter_gets_it_after_release(void **state)
{
    char err[256];
    ok(adminlock_take(conn, "ann@one.test", err, sizeof(err)), err);
    struct waiter w = {testdb_connect(), -9, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, take_later, &w), 0);
    struct timespec pause = {0, 300 * 1000000L};
    nanosleep(&pause, NULL);
    double released_at = now_s();
    ok(adminlock_release(conn, "ann@one.test", err, sizeof(err)), err);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, 0);
    assert_true(w.got_at >= released_at);
    assert_true(w.got_at - released_at < 1.0);
    PQfinish(w.c);
}

static void test_lock_names(void **state)
{
    char err[256], big[ADMINLOCK_NAME_MAX + 2];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(adminlock_take(conn, "", err, sizeof(err)), -1);
    assert_int_equal(adminlock_take(conn, NULL, err, sizeof(err)), -1);
    assert_int_equal(adminlock_take(conn, big, err, sizeof(err)), -1);
    big[ADMINLOCK_NAME_MAX] = '\0';
    ok(adminlock_take(conn, big, err, sizeof(err)), err);
    ok(adminlock_release(conn, big, err, sizeof(err)), err);
}

/* ---- several policies at once ---- */

static enum policy_state account_state(const char *service)
{
    char err[256];
    struct policy_service ps[POLICY_SERVICE_COUNT];
    ok(policy_get_account(conn, "ann@one.test", ps, err, sizeof(err)), err);
    for (int i = 0; i < POLICY_SERVICE_COUNT; i++)
        if (strcmp(ps[i].service, service) == 0)
            return ps[i].account;
    fail_msg("no service %s", service);
    return POLICY_INHERIT;
}

static void test_policy_many(void **state)
{
    char err[256];
    const struct policy_change two[] = {{"pop3", POLICY_DISABLED}, {"imap", POLICY_ENABLED}};
    ok(policy_set_account_many(conn, "ann@one.test", two, 2, err, sizeof(err)), err);
    assert_int_equal(account_state("pop3"), POLICY_DISABLED);
    assert_int_equal(account_state("imap"), POLICY_ENABLED);
    assert_int_equal(account_state("dav"), POLICY_INHERIT);

    /* all or nothing: a bad entry anywhere changes none */
    const struct policy_change bad_service[] = {{"pop3", POLICY_ENABLED}, {"ftp", POLICY_ENABLED}};
    assert_int_equal(
        policy_set_account_many(conn, "ann@one.test", bad_service, 2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "unknown service"));
    const struct policy_change twice[] = {{"pop3", POLICY_ENABLED}, {"pop3", POLICY_INHERIT}};
    assert_int_equal(policy_set_account_many(conn, "ann@one.test", twice, 2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "twice"));
    const struct policy_change bad_state[] = {{"pop3", POLICY_ENABLED},
                                              {"dav", (enum policy_state)7}};
    assert_int_equal(policy_set_account_many(conn, "ann@one.test", bad_state, 2, err, sizeof(err)),
                     -1);
    assert_int_equal(policy_set_account_many(conn, "ann@one.test", two, 0, err, sizeof(err)), -1);
    assert_int_equal(account_state("pop3"), POLICY_DISABLED);
    assert_int_equal(policy_set_account_many(conn, "nobody@one.test", two, 2, err, sizeof(err)),
                     DIR_ENOTFOUND);

    /* the same for a domain, and the single setter is the same operation */
    const struct policy_change dom[] = {{"dav", POLICY_DISABLED}, {"syncml", POLICY_DISABLED}};
    ok(policy_set_domain_many(conn, "one.test", dom, 2, err, sizeof(err)), err);
    struct policy_service ps[POLICY_SERVICE_COUNT];
    ok(policy_get_domain(conn, "one.test", ps, err, sizeof(err)), err);
    for (int i = 0; i < POLICY_SERVICE_COUNT; i++)
        if (!strcmp(ps[i].service, "dav") || !strcmp(ps[i].service, "syncml"))
            assert_int_equal(ps[i].domain, POLICY_DISABLED);
    ok(policy_set_domain(conn, "one.test", "dav", POLICY_INHERIT, err, sizeof(err)), err);
    ok(policy_get_domain(conn, "one.test", ps, err, sizeof(err)), err);
    assert_int_equal(ps[4].domain, POLICY_INHERIT); /* dav */
    assert_int_equal(policy_set_domain_many(conn, "none.test", dom, 2, err, sizeof(err)),
                     DIR_ENOTFOUND);
}

/* ---- a group's delivery in the versioned update ---- */

static void test_update_group_delivery(void **state)
{
    char err[256], deliver[16];
    long long v0, v1, v2;
    ok(dir_account_version(conn, "team@one.test", &v0, err, sizeof(err)), err);
    struct dir_account_change ch = {.full_name = "Team A", .disabled = -1, .deliver_to = "folder"};
    ok(dir_account_update(conn, "team@one.test", v0, &ch, &v1, err, sizeof(err)), err);
    assert_true(v1 > v0);
    ok(dir_group_get_deliver(conn, "team@one.test", deliver, err, sizeof(err)), err);
    assert_string_equal(deliver, "folder");

    /* a stale version changes nothing */
    struct dir_account_change back = {.disabled = -1, .deliver_to = "members"};
    assert_int_equal(dir_account_update(conn, "team@one.test", v0, &back, &v2, err, sizeof(err)),
                     DIR_ECONFLICT);
    ok(dir_group_get_deliver(conn, "team@one.test", deliver, err, sizeof(err)), err);
    assert_string_equal(deliver, "folder");

    /* an invalid delivery, or one for an account that is not a group, changes nothing either */
    struct dir_account_change wrong = {.full_name = "Team B", .disabled = -1, .deliver_to = "void"};
    assert_int_equal(dir_account_update(conn, "team@one.test", 0, &wrong, &v2, err, sizeof(err)),
                     -1);
    struct dir_account_change user = {.full_name = "Ann B", .disabled = -1, .deliver_to = "folder"};
    assert_int_equal(dir_account_update(conn, "ann@one.test", 0, &user, &v2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not a group"));
    struct dir_account a;
    ok(dir_account_find(conn, "ann@one.test", &a, err, sizeof(err)), err);
    assert_string_equal(a.full_name, "Ann");
    ok(dir_account_find(conn, "team@one.test", &a, err, sizeof(err)), err);
    assert_string_equal(a.full_name, "Team A");
    ok(dir_account_version(conn, "team@one.test", &v2, err, sizeof(err)), err);
    assert_int_equal(v2, v1);
}

int main(void)
{
    conn = testdb_create("adminlock");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_lock_excludes_other_connections, setup),
        cmocka_unit_test_setup(test_lock_survives_transactions_and_dies_with_the_session, setup),
        cmocka_unit_test_setup(test_lock_waiter_gets_it_after_release, setup),
        cmocka_unit_test_setup(test_lock_names, setup),
        cmocka_unit_test_setup(test_policy_many, setup),
        cmocka_unit_test_setup(test_update_group_delivery, setup),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    testdb_drop(&conn);
    return failed ? 1 : 0;
}
