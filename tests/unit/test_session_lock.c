/* layer: storage */
/* Tests for storage/session_lock against a real PostgreSQL: acquire, refusal
 * with the holder named, renew and release only by the holder, takeover of an
 * expired lease (after which the old holder can neither renew nor release),
 * many connections racing for one lock, locks of one node dropped together,
 * cascade with the account, and argument checks. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/directory.h"
#include "storage/session_lock.h"
#include "support/testdb.h"

static PGconn *conn;
static long long alice, bob;

static long long account(const char *address)
{
    char err[256];
    if (dir_account_add(conn, address, "user", "pw-123456", "", false, err, sizeof(err)) < 0)
        fail_msg("%s", err);
    struct dir_account a;
    assert_int_equal(dir_account_find(conn, address, &a, err, sizeof(err)), 0);
    return a.id;
}

static int setup(void **state)
{
    PGresult *r =
        testdb_exec(conn, "TRUNCATE domains, accounts, session_locks RESTART IDENTITY CASCADE");
    PQclear(r);
    char err[256];
    if (dir_domain_add(conn, "example.test", err, sizeof(err)) < 0)
        fail_msg("%s", err);
    alice = account("alice@example.test");
    bob = account("bob@example.test");
    return 0;
}

/* Moves the lease of (account, kind) into the past, as if its holder had died. */
static void expire(long long account_id, const char *kind)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "UPDATE session_locks SET expires_at = clock_timestamp() - interval '1 second'"
             " WHERE account_id = %lld AND kind = '%s'",
             account_id, kind);
    PGresult *r = testdb_exec(conn, sql);
    assert_string_equal(PQcmdTuples(r), "1");
    PQclear(r);
}

static void test_acquire_refuse_release(void **state)
{
    char err[256];
    struct session_lock_holder h;
    assert_int_equal(
        session_lock_acquire(conn, alice, "pop3", "node1", "s1", 120, &h, err, sizeof(err)), 0);
    /* a second session, on this node or another, is refused and told who holds it */
    memset(&h, 0x55, sizeof(h));
    assert_int_equal(
        session_lock_acquire(conn, alice, "pop3", "node2", "s9", 120, &h, err, sizeof(err)),
        SESSION_LOCK_EBUSY);
    assert_string_equal(h.node, "node1");
    assert_string_equal(h.session, "s1");
    assert_true(h.expires_unix >= h.acquired_unix + 119);
    assert_non_null(strstr(err, "held by another session"));
    /* the same holder asking again is refused too: a lock is taken once */
    assert_int_equal(
        session_lock_acquire(conn, alice, "pop3", "node1", "s1", 120, NULL, err, sizeof(err)),
        SESSION_LOCK_EBUSY);
    /* other kinds and other accounts are independent */
    assert_int_equal(
        session_lock_acquire(conn, alice, "other-kind", "node2", "s9", 120, NULL, err, sizeof(err)),
        0);
    assert_int_equal(
        session_lock_acquire(conn, bob, "pop3", "node2", "s9", 120, NULL, err, sizeof(err)), 0);
    /* release by a stranger does nothing */
    assert_int_equal(session_lock_release(conn, alice, "pop3", "node2", "s1", err, sizeof(err)), 0);
    assert_int_equal(session_lock_release(conn, alice, "pop3", "node1", "s2", err, sizeof(err)), 0);
    bool expired = true;
    assert_int_equal(session_lock_get(conn, alice, "pop3", &h, &expired, err, sizeof(err)), 1);
    assert_false(expired);
    assert_string_equal(h.node, "node1");
    /* release by the holder frees it for the next session */
    assert_int_equal(session_lock_release(conn, alice, "pop3", "node1", "s1", err, sizeof(err)), 1);
    assert_int_equal(session_lock_release(conn, alice, "pop3", "node1", "s1", err, sizeof(err)), 0);
    assert_int_equal(session_lock_get(conn, alice, "pop3", &h, NULL, err, sizeof(err)), 0);
    assert_int_equal(
        session_lock_acquire(conn, alice, "pop3", "node2", "s9", 120, NULL, err, sizeof(err)), 0);
}

static void test_renew(void **state)
{
    char err[256];
    assert_int_equal(
        session_lock_acquire(conn, alice, "pop3", "node1", "s1", 5, NULL, err, sizeof(err)), 0);
    struct session_lock_holder before, after;
    assert_int_equal(session_lock_get(conn, alice, "pop3", &before, NULL, err, sizeof(err)), 1);
    assert_int_equal(session_lock_renew(conn, alice, "pop3", "node1", "s1", 600, err, sizeof(err)),
                     0);
    assert_int_equal(session_lock_get(conn, alice, "pop3", &after, NULL, err, sizeof(err)), 1);
    assert_true(after.expires_unix >= before.expires_unix + 590);
    assert_int_equal(after.acquired_unix, before.acquired_unix);
    /* a stranger cannot renew */
    assert_int_equal(session_lock_renew(conn, alice, "pop3", "node1", "s2", 600, err, sizeof(err)),
                     SESSION_LOCK_ELOST);
    assert_int_equal(session_lock_renew(conn, bob, "pop3", "node1", "s1", 600, err, sizeof(err)),
                     SESSION_LOCK_ELOST);
    /* an expired lease nobody took over is still ours to renew */
    expire(alice, "pop3");
    bool expired = false;
    assert_int_equal(session_lock_get(conn, alice, "pop3", NULL, &expired, err, sizeof(err)), 1);
    assert_true(expired);
    assert_int_equal(session_lock_renew(conn, alice, "pop3", "node1", "s1", 60, err, sizeof(err)),
                     0);
    assert_int_equal(session_lock_get(conn, alice, "pop3", NULL, &expired, err, sizeof(err)), 1);
    assert_false(expired);
    assert_int_equal(
        session_lock_acquire(conn, alice, "pop3", "node2", "s2", 60, NULL, err, sizeof(err)),
        SESSION_LOCK_EBUSY);
}

static void test_takeover_after_expiry(void **state)
{
    char err[256];
    assert_int_equal(
        session_lock_acquire(conn, alice, "pop3", "node1", "s1", 120, NULL, err, sizeof(err)), 0);
    expire(alice, "pop3"); /* node1 died and stopped renewing */
    struct session_lock_holder h;
    assert_int_equal(
        session_lock_acquire(conn, alice, "pop3", "node2", "s7", 120, &h, err, sizeof(err)), 0);
    assert_int_equal(session_lock_get(conn, alice, "pop3", &h, NULL, err, sizeof(err)), 1);
    assert_string_equal(h.node, "node2");
    assert_string_equal(h.session, "s7");
    /* the old holder wakes up: it can neither renew nor release the new lock */
    assert_int_equal(session_lock_renew(conn, alice, "pop3", "node1", "s1", 120, err, sizeof(err)),
                     SESSION_LOCK_ELOST);
    assert_non_null(strstr(err, "no longer held"));
    assert_int_equal(session_lock_release(conn, alice, "pop3", "node1", "s1", err, sizeof(err)), 0);
    assert_int_equal(session_lock_get(conn, alice, "pop3", &h, NULL, err, sizeof(err)), 1);
    assert_string_equal(h.node, "node2");
    /* the holder's own expired lock may be taken again by itself, as by anyone */
    expire(alice, "pop3");
    assert_int_equal(
        session_lock_acquire(conn, alice, "pop3", "node2", "s8", 120, NULL, err, sizeof(err)), 0);
}

#define RACERS 8
struct racer {
    long long account_id;
    int rc;
    char session[16];
};

static void *race(void *arg)
{
    struct racer *r = arg;
    PGconn *c = testdb_connect();
    char err[256];
    r->rc = session_lock_acquire(c, r->account_id, "pop3", "nodeX", r->session, 120, NULL, err,
                                 sizeof(err));
    PQfinish(c);
    return NULL;
}

static void test_concurrent_acquire_one_winner(void **state)
{
    for (int round = 0; round < 5; round++) {
        PGresult *r = testdb_exec(conn, "DELETE FROM session_locks");
        PQclear(r);
        struct racer racers[RACERS];
        pthread_t t[RACERS];
        for (int i = 0; i < RACERS; i++) {
            racers[i].account_id = alice;
            racers[i].rc = 99;
            snprintf(racers[i].session, sizeof(racers[i].session), "r%d", i);
            assert_int_equal(pthread_create(&t[i], NULL, race, &racers[i]), 0);
        }
        int winners = 0, busy = 0;
        const char *winner = NULL;
        for (int i = 0; i < RACERS; i++) {
            pthread_join(t[i], NULL);
            if (racers[i].rc == 0) {
                winners++;
                winner = racers[i].session;
            } else if (racers[i].rc == SESSION_LOCK_EBUSY) {
                busy++;
            }
        }
        assert_int_equal(winners, 1);
        assert_int_equal(busy, RACERS - 1);
        struct session_lock_holder h;
        char err[256];
        assert_int_equal(session_lock_get(conn, alice, "pop3", &h, NULL, err, sizeof(err)), 1);
        assert_string_equal(h.session, winner);
    }
}

static void test_release_node_and_cascade(void **state)
{
    char err[256];
    assert_int_equal(
        session_lock_acquire(conn, alice, "pop3", "node1", "a", 120, NULL, err, sizeof(err)), 0);
    assert_int_equal(
        session_lock_acquire(conn, bob, "pop3", "node1", "b", 120, NULL, err, sizeof(err)), 0);
    assert_int_equal(
        session_lock_acquire(conn, alice, "k2", "node2", "c", 120, NULL, err, sizeof(err)), 0);
    assert_int_equal(session_lock_release_node(conn, "node1", err, sizeof(err)), 2);
    assert_int_equal(session_lock_release_node(conn, "node1", err, sizeof(err)), 0);
    assert_int_equal(session_lock_get(conn, alice, "pop3", NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(session_lock_get(conn, alice, "k2", NULL, NULL, err, sizeof(err)), 1);
    /* deleting the account drops its locks */
    assert_int_equal(dir_account_delete(conn, "alice@example.test", err, sizeof(err)), 0);
    PGresult *r = testdb_exec(conn, "SELECT count(*) FROM session_locks");
    assert_string_equal(PQgetvalue(r, 0, 0), "0");
    PQclear(r);
    /* an account that does not exist cannot be locked */
    assert_int_equal(
        session_lock_acquire(conn, alice, "pop3", "node1", "a", 120, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no account"));
}

static void test_invalid_arguments(void **state)
{
    char err[256];
    char long_name[SESSION_LOCK_NAME_MAX + 2];
    memset(long_name, 'n', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    struct {
        long long account;
        const char *kind, *node, *session;
        unsigned lease;
    } bad[] = {
        {0, "pop3", "n", "s", 60},       {alice, "", "n", "s", 60},
        {alice, "POP3", "n", "s", 60},   {alice, "pop 3", "n", "s", 60},
        {alice, "pop3", "", "s", 60},    {alice, "pop3", "n", "", 60},
        {alice, "pop3", "n s", "s", 60}, {alice, "pop3", long_name, "s", 60},
        {alice, "pop3", "n", "s", 0},    {alice, "pop3", "n", "s", SESSION_LOCK_LEASE_MAX + 1},
        {alice, NULL, "n", "s", 60},     {alice, "pop3", NULL, "s", 60},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(session_lock_acquire(conn, bad[i].account, bad[i].kind, bad[i].node,
                                              bad[i].session, bad[i].lease, NULL, err, sizeof(err)),
                         -1);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(session_lock_renew(conn, alice, "pop3", "n", "s", 0, err, sizeof(err)), -1);
    assert_int_equal(session_lock_release(conn, alice, "pop3", "n", "", err, sizeof(err)), -1);
    assert_int_equal(session_lock_release_node(conn, "", err, sizeof(err)), -1);
    assert_int_equal(session_lock_get(conn, alice, "Bad", NULL, NULL, err, sizeof(err)), -1);
    /* nothing was written by any of them */
    PGresult *r = testdb_exec(conn, "SELECT count(*) FROM session_locks");
    assert_string_equal(PQgetvalue(r, 0, 0), "0");
    PQclear(r);
    /* err may be NULL */
    assert_int_equal(session_lock_acquire(conn, alice, "", "n", "s", 60, NULL, NULL, 0), -1);
}

int main(void)
{
    conn = testdb_create("session_lock");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_acquire_refuse_release, setup),
        cmocka_unit_test_setup(test_renew, setup),
        cmocka_unit_test_setup(test_takeover_after_expiry, setup),
        cmocka_unit_test_setup(test_concurrent_acquire_one_winner, setup),
        cmocka_unit_test_setup(test_release_node_and_cascade, setup),
        cmocka_unit_test_setup(test_invalid_arguments, setup),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    testdb_drop(&conn);
    return rc;
}
