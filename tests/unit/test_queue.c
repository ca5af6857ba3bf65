/* layer: storage */
/* Tests for storage/queue against a real PostgreSQL and the pg blob store:
 * enqueue, claim and report; concurrent claimers never sharing a recipient;
 * leases that run out and the fencing of the old holder; backoff and expiry;
 * the RFC 3461 notice rules; notifications built, stored and queued to the
 * sender; retry, delete and list; and the blob collector keeping queued
 * blobs. Times are moved by rewriting rows, never by sleeping. */
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

#include "storage/blob.h"
#include "storage/blobgc.h"
#include "storage/db.h"
#include "storage/queue.h"
#include "support/testdb.h"

static PGconn *conn;
static struct blob_store *bs;

static const char original[] = "From: Alice <alice@a.test>\r\n"
                               "To: bob@x.test\r\n"
                               "Subject: Quarterly figures\r\n"
                               "Message-ID: <q1@a.test>\r\n"
                               "\r\n"
                               "SECRET-BODY-LINE\r\n";

static int setup(void **state)
{
    (void)state;
    PQclear(testdb_exec(conn, "TRUNCATE queue_messages, queue_recipients, blobs, blob_chunks,"
                              " blob_uploads RESTART IDENTITY CASCADE"));
    return 0;
}

static void put_blob(const char *text, char id[BLOB_ID_LEN + 1])
{
    char err[256];
    if (blob_put(bs, conn, text, strlen(text), id, err, sizeof err) != 0)
        fail_msg("blob_put: %s", err);
}

/* Queues the standard original from sender to the given recipients, all with
 * the same NOTIFY. */
static long long enqueue_ret(const char *sender, enum smtp_ret ret, unsigned notify, bool is_notice,
                             const char *const *rcpts, size_t n)
{
    char blob[BLOB_ID_LEN + 1], err[256];
    put_blob(original, blob);
    struct queue_message_new m = {.blob_id = blob,
                                  .size = strlen(original),
                                  .sender = sender,
                                  .envid = "env-1",
                                  .ret = ret,
                                  .body = SMTP_BODY_8BITMIME,
                                  .is_notice = is_notice,
                                  .origin_node = "node-a"};
    struct queue_rcpt_new r[8];
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++)
        r[i] = (struct queue_rcpt_new){.address = rcpts[i], .notify = notify};
    long long id = 0;
    if (queue_enqueue(conn, &m, r, n, &id, err, sizeof err) != 0)
        fail_msg("queue_enqueue: %s", err);
    assert_true(id > 0);
    return id;
}

static long long enqueue(const char *sender, unsigned notify, const char *const *rcpts, size_t n)
{
    return enqueue_ret(sender, SMTP_RET_NONE, notify, false, rcpts, n);
}

static int claim(PGconn *c, const char *node, struct queue_batch *b)
{
    char err[256];
    int rc = queue_claim(c, node, 600, b, err, sizeof err);
    if (rc < 0)
        fail_msg("queue_claim: %s", err);
    return rc;
}

/* Reports the same result for every recipient of b. */
static int report_all(const struct queue_batch *b, enum queue_result res, const char *status,
                      const char *reply)
{
    struct queue_outcome o[QUEUE_BATCH_MAX];
    for (size_t i = 0; i < b->n; i++)
        o[i] = (struct queue_outcome){
            .result = res, .status = status, .reply = reply, .remote_host = "mx.x.test"};
    char err[256];
    int rc = queue_report(conn, b, o, NULL, err, sizeof err);
    if (rc == -1)
        fail_msg("queue_report: %s", err);
    return rc;
}

static long long db_now(void)
{
    PGresult *r = testdb_exec(conn, "SELECT floor(extract(epoch FROM now()))::bigint");
    long long v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

/* Makes every queued recipient due (as if time had passed). */
static void make_due(void)
{
    PQclear(testdb_exec(conn, "UPDATE queue_recipients SET next_attempt_at = now() - interval "
                              "'1 second', lease_until = now() - interval '1 second'"
                              " WHERE state = 'queued'"));
}

/* What queue_show says about one message: its counts and each recipient. */
struct shown {
    bool found;
    struct queue_info m;
    char sender[SMTP_ADDRESS_MAX + 1];
    size_t n;
    struct {
        char address[SMTP_ADDRESS_MAX + 1], state[16], notice[16], status[16], reply[256];
        char lease_node[QUEUE_NODE_MAX + 1];
        int attempts;
        long long next_attempt, first_attempt;
        bool delay_notified;
    } r[16];
};

static int show_msg(const struct queue_info *m, void *ctx)
{
    struct shown *s = ctx;
    s->found = true;
    s->m = *m;
    snprintf(s->sender, sizeof s->sender, "%s", m->sender);
    s->m.sender = s->sender;
    s->m.blob_id = s->m.envid = s->m.ret = s->m.body = s->m.origin_node = NULL;
    return 0;
}

static int show_rcpt(const struct queue_rcpt_info *r, void *ctx)
{
    struct shown *s = ctx;
    if (s->n >= 16)
        return 1;
    snprintf(s->r[s->n].address, sizeof s->r[0].address, "%s", r->address);
    snprintf(s->r[s->n].state, sizeof s->r[0].state, "%s", r->state);
    snprintf(s->r[s->n].notice, sizeof s->r[0].notice, "%s", r->notice);
    snprintf(s->r[s->n].status, sizeof s->r[0].status, "%s", r->last_status);
    snprintf(s->r[s->n].reply, sizeof s->r[0].reply, "%s", r->last_reply);
    snprintf(s->r[s->n].lease_node, sizeof s->r[0].lease_node, "%s", r->lease_node);
    s->r[s->n].attempts = r->attempts;
    s->r[s->n].next_attempt = r->next_attempt_unix;
    s->r[s->n].first_attempt = r->first_attempt_unix;
    s->r[s->n].delay_notified = r->delay_notified;
    s->n++;
    return 0;
}

static int show(long long id, struct shown *s)
{
    char err[256];
    memset(s, 0, sizeof *s);
    int rc = queue_show(conn, id, show_msg, show_rcpt, s, err, sizeof err);
    if (rc == -1)
        fail_msg("queue_show: %s", err);
    return rc;
}

static long long count(const char *sql)
{
    PGresult *r = testdb_exec(conn, sql);
    long long v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

/* Reads a whole blob into a malloc'd string. */
static char *read_blob(const char *id)
{
    char err[256];
    struct blob_reader *rd = NULL;
    if (blob_reader_open(bs, conn, id, 0, UINT64_MAX, &rd, err, sizeof err) != 0)
        fail_msg("blob_reader_open: %s", err);
    size_t len = (size_t)blob_reader_length(rd);
    char *buf = malloc(len + 1);
    assert_non_null(buf);
    size_t got = 0;
    while (got < len) {
        ssize_t n = blob_reader_read(rd, buf + got, len - got);
        assert_true(n > 0);
        got += (size_t)n;
    }
    buf[len] = '\0';
    blob_reader_close(&rd);
    return buf;
}

/* ---- enqueue, claim, report ---- */

static void test_happy_path(void **state)
{
    (void)state;
    const char *rc[] = {"r1@x.test", "R2@X.TEST", "r3@y.test"};
    long long id = enqueue("alice@a.test", 0, rc, 3);

    struct queue_batch b;
    assert_int_equal(claim(conn, "node-1", &b), 1);
    assert_int_equal(b.message_id, id);
    assert_string_equal(b.domain, "x.test");
    assert_string_equal(b.sender, "alice@a.test");
    assert_string_equal(b.envid, "env-1");
    assert_string_equal(b.node, "node-1");
    assert_int_equal(b.body, SMTP_BODY_8BITMIME);
    assert_int_equal(b.size, strlen(original));
    assert_true(blob_id_valid(b.blob_id));
    assert_true(b.expires_unix - b.received_unix == QUEUE_DEFAULT_LIFETIME);
    assert_int_equal(b.n, 2);
    assert_string_equal(b.rcpts[0].address, "r1@x.test");
    assert_string_equal(b.rcpts[1].address, "R2@X.TEST");
    assert_int_equal(b.rcpts[0].attempts, 0);

    struct queue_batch b2;
    assert_int_equal(claim(conn, "node-1", &b2), 1);
    assert_string_equal(b2.domain, "y.test");
    assert_int_equal(b2.n, 1);
    struct queue_batch b3;
    assert_int_equal(claim(conn, "node-1", &b3), 0); /* everything is leased */
    assert_int_equal(b3.n, 0);

    struct shown s;
    assert_int_equal(show(id, &s), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.r[0].lease_node, "node-1");
    assert_int_equal(s.m.nqueued, 3);

    assert_int_equal(report_all(&b, QUEUE_DELIVERED, "2.0.0", "250 2.0.0 ok"), 0);
    assert_int_equal(show(id, &s), 0);
    assert_string_equal(s.r[0].state, "delivered");
    assert_string_equal(s.r[1].state, "delivered");
    assert_string_equal(s.r[0].notice, "none");
    assert_string_equal(s.r[0].reply, "250 2.0.0 ok");
    assert_string_equal(s.r[0].lease_node, "");
    assert_int_equal(s.r[0].attempts, 1);
    assert_string_equal(s.r[2].state, "queued");
    assert_int_equal(s.m.ndelivered, 2);
    assert_int_equal(s.m.nqueued, 1);

    /* the last recipient done: nothing owed, the message goes */
    assert_int_equal(report_all(&b2, QUEUE_DELIVERED, NULL, NULL), 0);
    assert_int_equal(show(id, &s), QUEUE_ENOTFOUND);
    assert_int_equal(count("SELECT count(*) FROM queue_recipients"), 0);
    queue_batch_free(&b);
    queue_batch_free(&b2);
    assert_null(b.rcpts);
}

static void test_enqueue_validation_and_transactions(void **state)
{
    (void)state;
    char blob[BLOB_ID_LEN + 1], err[256];
    put_blob(original, blob);
    struct queue_message_new m = {.blob_id = blob, .size = 10, .sender = "alice@a.test"};
    struct queue_rcpt_new ok = {.address = "bob@x.test"};
    struct queue_rcpt_new bad = {.address = "no-domain"};
    struct queue_rcpt_new ctl = {.address = "bo\nb@x.test"};
    struct queue_rcpt_new badnotify = {.address = "bob@x.test", .notify = 16};
    assert_int_equal(queue_enqueue(conn, &m, &ok, 0, NULL, err, sizeof err), -1);
    assert_int_equal(queue_enqueue(conn, &m, &bad, 1, NULL, err, sizeof err), -1);
    assert_int_equal(queue_enqueue(conn, &m, &ctl, 1, NULL, err, sizeof err), -1);
    assert_int_equal(queue_enqueue(conn, &m, &badnotify, 1, NULL, err, sizeof err), -1);
    struct queue_message_new badblob = m;
    badblob.blob_id = "xyz";
    assert_int_equal(queue_enqueue(conn, &badblob, &ok, 1, NULL, err, sizeof err), -1);
    struct queue_message_new badsender = m;
    badsender.sender = "alice@";
    assert_int_equal(queue_enqueue(conn, &badsender, &ok, 1, NULL, err, sizeof err), -1);
    assert_int_equal(count("SELECT count(*) FROM queue_messages"), 0);

    /* inside the caller's transaction: a rollback takes the entry back */
    PQclear(testdb_exec(conn, "BEGIN"));
    long long id;
    assert_int_equal(queue_enqueue(conn, &m, &ok, 1, &id, err, sizeof err), 0);
    assert_int_equal(PQtransactionStatus(conn), PQTRANS_INTRANS);
    PQclear(testdb_exec(conn, "ROLLBACK"));
    assert_int_equal(count("SELECT count(*) FROM queue_messages"), 0);

    /* and a failed enqueue leaves the caller's transaction usable */
    PQclear(testdb_exec(conn, "BEGIN"));
    struct queue_message_new dead = m;
    dead.auth_account = 999999; /* no such account: the foreign key refuses */
    assert_int_equal(queue_enqueue(conn, &dead, &ok, 1, NULL, err, sizeof err), -1);
    assert_int_equal(queue_enqueue(conn, &m, &ok, 1, &id, err, sizeof err), 0);
    PQclear(testdb_exec(conn, "COMMIT"));
    assert_int_equal(count("SELECT count(*) FROM queue_messages"), 1);

    /* a custom lifetime */
    struct queue_message_new shortlived = m;
    shortlived.lifetime = 3600;
    assert_int_equal(queue_enqueue(conn, &shortlived, &ok, 1, &id, err, sizeof err), 0);
    assert_int_equal(count("SELECT floor(extract(epoch FROM expires_at - received_at))::bigint"
                           " FROM queue_messages ORDER BY id DESC LIMIT 1"),
                     3600);
}

/* ---- concurrency ---- */

#define CONC_MESSAGES 30
#define CONC_THREADS 3

struct claimer {
    PGconn *c;
    char node[16];
    long long ids[CONC_MESSAGES * 4];
    size_t n;
    int batches;
    char error[256];
};

static void *claimer_run(void *arg)
{
    struct claimer *cl = arg;
    for (;;) {
        struct queue_batch b;
        int rc = queue_claim(cl->c, cl->node, 600, &b, cl->error, sizeof cl->error);
        if (rc < 0)
            return NULL;
        if (rc == 0)
            break;
        cl->batches++;
        for (size_t i = 0; i < b.n && cl->n < CONC_MESSAGES * 4; i++)
            cl->ids[cl->n++] = b.rcpts[i].id;
        queue_batch_free(&b);
    }
    cl->error[0] = '\0';
    return NULL;
}

static void test_concurrent_claims(void **state)
{
    (void)state;
    const char *rc[] = {"a@one.test", "b@one.test", "c@two.test", "d@three.test"};
    for (int i = 0; i < CONC_MESSAGES; i++)
        enqueue("alice@a.test", 0, rc, 4);
    struct claimer cl[CONC_THREADS];
    pthread_t th[CONC_THREADS];
    memset(cl, 0, sizeof cl);
    for (int t = 0; t < CONC_THREADS; t++) {
        cl[t].c = testdb_connect();
        snprintf(cl[t].node, sizeof cl[t].node, "node-%d", t);
        assert_int_equal(pthread_create(&th[t], NULL, claimer_run, &cl[t]), 0);
    }
    for (int t = 0; t < CONC_THREADS; t++) {
        pthread_join(th[t], NULL);
        PQfinish(cl[t].c);
        if (cl[t].error[0])
            fail_msg("claimer %d: %s", t, cl[t].error);
    }
    /* every recipient claimed exactly once */
    static char seen[CONC_MESSAGES * 4 + 1];
    memset(seen, 0, sizeof seen);
    size_t total = 0;
    for (int t = 0; t < CONC_THREADS; t++) {
        for (size_t i = 0; i < cl[t].n; i++) {
            long long id = cl[t].ids[i];
            assert_true(id >= 1 && id <= CONC_MESSAGES * 4);
            assert_int_equal(seen[id], 0);
            seen[id] = 1;
            total++;
        }
    }
    assert_int_equal(total, CONC_MESSAGES * 4);
    /* the database agrees: each row leased by the claimer that got it */
    for (int t = 0; t < CONC_THREADS; t++) {
        char sql[128];
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM queue_recipients WHERE lease_node = 'node-%d'", t);
        assert_int_equal(count(sql), (long long)cl[t].n);
    }
}

/* ---- leases ---- */

static void test_expired_lease_reclaimed_and_fenced(void **state)
{
    (void)state;
    char err[256];
    const char *rc[] = {"bob@x.test", "carol@x.test"};
    long long id = enqueue("alice@a.test", 0, rc, 2);
    struct queue_batch old, fresh, again;
    assert_int_equal(claim(conn, "node-a", &old), 1);
    assert_int_equal(claim(conn, "node-b", &fresh), 0); /* leased */

    make_due(); /* node-a's lease ran out: it died, or froze */
    assert_int_equal(claim(conn, "node-b", &fresh), 1);
    assert_int_equal(fresh.message_id, id);
    assert_int_equal(fresh.n, 2);
    assert_true(fresh.lease_token != old.lease_token);

    /* the old holder wakes up: its report is refused and writes nothing */
    struct queue_outcome o[2] = {{.result = QUEUE_PERMFAIL, .status = "5.1.1"},
                                 {.result = QUEUE_PERMFAIL, .status = "5.1.1"}};
    assert_int_equal(queue_report(conn, &old, o, NULL, err, sizeof err), QUEUE_ELEASE);
    struct shown s;
    assert_int_equal(show(id, &s), 0);
    assert_string_equal(s.r[0].state, "queued");
    assert_string_equal(s.r[0].lease_node, "node-b");
    assert_int_equal(s.r[0].attempts, 0);

    /* the same node name with an old token (a restarted node) is refused too */
    make_due();
    assert_int_equal(claim(conn, "node-a", &again), 1);
    assert_int_equal(queue_report(conn, &old, o, NULL, err, sizeof err), QUEUE_ELEASE);
    assert_int_equal(queue_report(conn, &fresh, o, NULL, err, sizeof err), QUEUE_ELEASE);

    /* the current holder's report counts, even after its lease ran out as
     * long as nobody took it over (the attempt did happen) */
    make_due();
    assert_int_equal(report_all(&again, QUEUE_DELIVERED, NULL, NULL), 0);
    assert_int_equal(show(id, &s), QUEUE_ENOTFOUND);
    /* a second report of the same batch: the lease is gone */
    assert_int_equal(queue_report(conn, &again, o, NULL, err, sizeof err), QUEUE_ELEASE);
    queue_batch_free(&old);
    queue_batch_free(&fresh);
    queue_batch_free(&again);

    /* bad arguments */
    struct queue_batch b;
    assert_int_equal(queue_claim(conn, "", 60, &b, err, sizeof err), -1);
    assert_int_equal(queue_claim(conn, "n", 0, &b, err, sizeof err), -1);
    assert_int_equal(queue_claim(conn, "bad\nname", 60, &b, err, sizeof err), -1);
}

/* ---- backoff and expiry ---- */

static void test_backoff_and_expiry(void **state)
{
    (void)state;
    const char *rc[] = {"bob@x.test"};
    long long id = enqueue("alice@a.test", 0, rc, 1);
    struct queue_batch b;
    struct shown s;
    long long waits[] = {300, 600, 1200, 2400, 4800, 9600, 14400, 14400};
    for (size_t i = 0; i < sizeof waits / sizeof waits[0]; i++) {
        assert_int_equal(claim(conn, "node-1", &b), 1);
        assert_int_equal(b.rcpts[0].attempts, (int)i);
        long long before = db_now();
        assert_int_equal(report_all(&b, QUEUE_TEMPFAIL, "4.4.1", "421 4.4.1 try later"), 0);
        queue_batch_free(&b);
        assert_int_equal(show(id, &s), 0);
        assert_string_equal(s.r[0].state, "queued");
        assert_string_equal(s.r[0].status, "4.4.1");
        assert_int_equal(s.r[0].attempts, (int)i + 1);
        assert_string_equal(s.r[0].lease_node, "");
        long long wait = s.r[0].next_attempt - before;
        assert_true(wait >= waits[i] - 1 && wait <= waits[i] + 1);
        assert_int_equal(claim(conn, "node-1", &b), 0); /* not due yet */
        make_due();
    }

    /* a policy of its own */
    struct queue_policy p = queue_policy_default();
    assert_int_equal(p.lifetime, QUEUE_DEFAULT_LIFETIME);
    assert_int_equal(p.min_backoff, 300);
    assert_int_equal(p.max_backoff, 4 * 3600);
    assert_int_equal(p.delay_warning, 4 * 3600);
    p.min_backoff = 10;
    p.max_backoff = 15;
    assert_int_equal(claim(conn, "node-1", &b), 1);
    struct queue_outcome o = {.result = QUEUE_TEMPFAIL};
    char err[256];
    long long before = db_now();
    assert_int_equal(queue_report(conn, &b, &o, &p, err, sizeof err), 0);
    queue_batch_free(&b);
    assert_int_equal(show(id, &s), 0);
    assert_true(s.r[0].next_attempt - before >= 14 && s.r[0].next_attempt - before <= 16);
    assert_string_equal(s.r[0].status, "4.0.0"); /* no status given */

    /* the next attempt is never scheduled past the expiry */
    make_due();
    PQclear(testdb_exec(conn, "UPDATE queue_messages SET expires_at = now() + interval '100 s'"));
    assert_int_equal(claim(conn, "node-1", &b), 1);
    before = db_now();
    assert_int_equal(report_all(&b, QUEUE_TEMPFAIL, "4.4.1", NULL), 0);
    queue_batch_free(&b);
    assert_int_equal(show(id, &s), 0);
    assert_true(s.r[0].next_attempt - before >= 99 && s.r[0].next_attempt - before <= 101);

    /* expired: a temporary failure is final now, 5.4.7, and a failure notice */
    make_due();
    PQclear(testdb_exec(conn, "UPDATE queue_messages SET received_at = now() - interval '6 days',"
                              " expires_at = now() - interval '1 day'"));
    assert_int_equal(claim(conn, "node-1", &b), 1);
    assert_int_equal(report_all(&b, QUEUE_TEMPFAIL, "4.4.1", "421 4.4.1 try later"), 0);
    queue_batch_free(&b);
    assert_int_equal(show(id, &s), 0);
    assert_string_equal(s.r[0].state, "failed");
    assert_string_equal(s.r[0].status, "5.4.7");
    assert_string_equal(s.r[0].notice, "failure");
    assert_string_equal(s.r[0].reply, "421 4.4.1 try later");
    assert_int_equal(claim(conn, "node-1", &b), 0); /* failed rows are never due */
}

/* ---- notice rules ---- */

/* One message, one recipient, one outcome: the notice recorded. */
static void expect_notice(const char *sender, unsigned notify, bool is_notice,
                          enum queue_result res, const char *want)
{
    const char *rc[] = {"bob@x.test"};
    long long id = enqueue_ret(sender, SMTP_RET_NONE, notify, is_notice, rc, 1);
    struct queue_batch b;
    assert_int_equal(claim(conn, "node-1", &b), 1);
    assert_int_equal(b.message_id, id);
    assert_int_equal(report_all(&b, res, NULL, NULL), 0);
    queue_batch_free(&b);
    struct shown s;
    if (!strcmp(want, "gone")) {
        assert_int_equal(show(id, &s), QUEUE_ENOTFOUND);
        return;
    }
    assert_int_equal(show(id, &s), 0);
    assert_string_equal(s.r[0].notice, want);
    PQclear(testdb_exec(conn, "TRUNCATE queue_messages CASCADE"));
}

static void test_notice_rules(void **state)
{
    (void)state;
    /* RFC 3461 §4.1: NOTIFY absent = failures (and delays) */
    expect_notice("alice@a.test", 0, false, QUEUE_PERMFAIL, "failure");
    expect_notice("alice@a.test", 0, false, QUEUE_DELIVERED, "gone");
    expect_notice("alice@a.test", SMTP_NOTIFY_NEVER, false, QUEUE_PERMFAIL, "gone");
    expect_notice("alice@a.test", SMTP_NOTIFY_SUCCESS, false, QUEUE_DELIVERED, "success");
    expect_notice("alice@a.test", SMTP_NOTIFY_SUCCESS, false, QUEUE_PERMFAIL, "gone");
    expect_notice("alice@a.test", SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE, false, QUEUE_PERMFAIL,
                  "failure");
    expect_notice("alice@a.test", SMTP_NOTIFY_FAILURE, false, QUEUE_PERMFAIL, "failure");
    /* null sender and our own notifications: never */
    expect_notice("", 0, false, QUEUE_PERMFAIL, "gone");
    expect_notice("", SMTP_NOTIFY_SUCCESS, false, QUEUE_DELIVERED, "gone");
    expect_notice("alice@a.test", 0, true, QUEUE_PERMFAIL, "gone");
    /* a temporary failure before the delay warning: nothing yet */
    expect_notice("alice@a.test", 0, false, QUEUE_TEMPFAIL, "none");
}

static void test_delay_notice(void **state)
{
    (void)state;
    const char *rc[] = {"bob@x.test", "carol@x.test", "dave@x.test"};
    long long id = enqueue("alice@a.test", 0, rc, 3);
    /* bob: default, carol: only FAILURE, dave: DELAY */
    PQclear(
        testdb_exec(conn, "UPDATE queue_recipients SET notify = 4 WHERE address = 'carol@x.test'"));
    PQclear(
        testdb_exec(conn, "UPDATE queue_recipients SET notify = 8 WHERE address = 'dave@x.test'"));
    struct queue_batch b;
    struct shown s;
    assert_int_equal(claim(conn, "node-1", &b), 1);
    assert_int_equal(b.n, 3);
    assert_int_equal(report_all(&b, QUEUE_TEMPFAIL, "4.4.1", NULL), 0);
    queue_batch_free(&b);
    assert_int_equal(show(id, &s), 0);
    assert_string_equal(s.r[0].notice, "none");

    /* the first attempt is now older than the delay warning */
    make_due();
    PQclear(testdb_exec(conn, "UPDATE queue_recipients SET first_attempt_at = now() - interval "
                              "'5 hours'"));
    assert_int_equal(claim(conn, "node-1", &b), 1);
    assert_int_equal(report_all(&b, QUEUE_TEMPFAIL, "4.4.1", NULL), 0);
    queue_batch_free(&b);
    assert_int_equal(show(id, &s), 0);
    assert_string_equal(s.r[0].notice, "delay");
    assert_true(s.r[0].delay_notified);
    assert_string_equal(s.r[1].notice, "none"); /* NOTIFY=FAILURE: no delay */
    assert_false(s.r[1].delay_notified);
    assert_string_equal(s.r[2].notice, "delay");

    /* once only: clear the owed notices as a sent notification would */
    PQclear(testdb_exec(conn, "UPDATE queue_recipients SET notice = 'none'"));
    make_due();
    assert_int_equal(claim(conn, "node-1", &b), 1);
    assert_int_equal(report_all(&b, QUEUE_TEMPFAIL, "4.4.1", NULL), 0);
    queue_batch_free(&b);
    assert_int_equal(show(id, &s), 0);
    assert_string_equal(s.r[0].notice, "none");
    assert_string_equal(s.r[2].notice, "none");

    /* a failure replaces a delay notice not sent yet; dave (DELAY only)
     * gets none for his failure */
    PQclear(testdb_exec(conn, "UPDATE queue_recipients SET notice = 'delay'"
                              " WHERE address <> 'carol@x.test'"));
    make_due();
    assert_int_equal(claim(conn, "node-1", &b), 1);
    assert_int_equal(report_all(&b, QUEUE_PERMFAIL, "5.1.1", NULL), 0);
    queue_batch_free(&b);
    assert_int_equal(show(id, &s), 0);
    assert_string_equal(s.r[0].notice, "failure");
    assert_string_equal(s.r[1].notice, "failure");
    assert_string_equal(s.r[2].notice, "none");
    assert_int_equal(s.m.nfailed, 3);
}

/* ---- notifications ---- */

static int find_notice(const struct queue_info *m, void *ctx)
{
    long long *id = ctx;
    if (m->is_notice)
        *id = m->id;
    return 0;
}

/* The queued notification: its id, checked envelope, and text. */
static char *queued_notice(const char *to, long long *id_r)
{
    char err[256];
    long long id = 0;
    assert_int_equal(queue_list(conn, find_notice, &id, err, sizeof err), 0);
    assert_true(id > 0);
    struct shown s;
    assert_int_equal(show(id, &s), 0);
    assert_string_equal(s.sender, ""); /* from the null sender */
    assert_true(s.m.is_notice);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.r[0].address, to);
    assert_string_equal(s.r[0].state, "queued");
    PGresult *r = testdb_exec(conn, "SELECT blob_id FROM queue_messages WHERE is_notice");
    char *text = read_blob(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (id_r != NULL)
        *id_r = id;
    return text;
}

static void test_failure_notification(void **state)
{
    (void)state;
    char err[256];
    const char *rc[] = {"bad@x.test", "good@x.test"};
    long long id = enqueue("alice@a.test", 0, rc, 2);
    struct queue_batch b;
    assert_int_equal(claim(conn, "node-1", &b), 1);
    struct queue_outcome o[2] = {
        {.result = QUEUE_PERMFAIL,
         .status = "5.1.1",
         .reply = "550 5.1.1 <bad@x.test>: no such user",
         .remote_host = "mx.x.test"},
        {.result = QUEUE_DELIVERED, .status = "2.0.0", .reply = "250 ok"},
    };
    assert_int_equal(queue_report(conn, &b, o, NULL, err, sizeof err), 0);
    queue_batch_free(&b);

    int made = -1;
    time_t now = time(NULL);
    if (queue_notices_run(conn, bs, "mx.a.test", now, NULL, &made, err, sizeof err) != 0)
        fail_msg("queue_notices_run: %s", err);
    assert_int_equal(made, 1);
    /* the original is finished now: the notice was its last business */
    struct shown s;
    assert_int_equal(show(id, &s), QUEUE_ENOTFOUND);

    long long nid;
    char *text = queued_notice("alice@a.test", &nid);
    assert_non_null(strstr(text, "Final-Recipient:"));
    assert_non_null(strstr(text, "bad@x.test"));
    assert_non_null(strstr(text, "Status: 5.1.1"));
    assert_non_null(strstr(text, "Action: failed"));
    assert_non_null(strstr(text, "Original-Envelope-Id: env-1"));
    assert_non_null(strstr(text, "Reporting-MTA: dns; mx.a.test"));
    assert_non_null(strstr(text, "MAILER-DAEMON@mx.a.test"));
    assert_non_null(strstr(text, "no such user"));
    assert_null(strstr(text, "good@x.test")); /* delivered without SUCCESS: not reported */
    /* no RET and a failure: the whole original comes back */
    assert_non_null(strstr(text, "Subject: Quarterly figures"));
    assert_non_null(strstr(text, "SECRET-BODY-LINE"));
    free(text);

    /* nothing more owed */
    assert_int_equal(queue_notices_run(conn, bs, "mx.a.test", now, NULL, &made, err, sizeof err),
                     0);
    assert_int_equal(made, 0);

    /* the notification bounces: no notification about a notification */
    assert_int_equal(claim(conn, "node-1", &b), 1);
    assert_int_equal(b.message_id, nid);
    assert_true(b.is_notice);
    assert_string_equal(b.sender, "");
    assert_int_equal(report_all(&b, QUEUE_PERMFAIL, "5.1.1", NULL), 0);
    queue_batch_free(&b);
    assert_int_equal(show(nid, &s), QUEUE_ENOTFOUND);
    assert_int_equal(count("SELECT count(*) FROM queue_messages"), 0);
}

static void test_headers_only_and_success_notifications(void **state)
{
    (void)state;
    char err[256];
    int made;
    /* RET=HDRS: the header without the body */
    const char *rc[] = {"bad@x.test"};
    enqueue_ret("alice@a.test", SMTP_RET_HDRS, 0, false, rc, 1);
    struct queue_batch b;
    assert_int_equal(claim(conn, "node-1", &b), 1);
    assert_int_equal(report_all(&b, QUEUE_PERMFAIL, "5.2.2", "552 5.2.2 mailbox full"), 0);
    queue_batch_free(&b);
    assert_int_equal(
        queue_notices_run(conn, bs, "mx.a.test", time(NULL), NULL, &made, err, sizeof err), 0);
    assert_int_equal(made, 1);
    char *text = queued_notice("alice@a.test", NULL);
    assert_non_null(strstr(text, "Status: 5.2.2"));
    assert_non_null(strstr(text, "Subject: Quarterly figures"));
    assert_null(strstr(text, "SECRET-BODY-LINE"));
    free(text);
    PQclear(testdb_exec(conn, "TRUNCATE queue_messages CASCADE"));

    /* NOTIFY=SUCCESS: a success report, headers only (RFC 3461 §4.3) */
    const char *rc2[] = {"carol@x.test"};
    enqueue_ret("alice@a.test", SMTP_RET_FULL, SMTP_NOTIFY_SUCCESS, false, rc2, 1);
    assert_int_equal(claim(conn, "node-1", &b), 1);
    assert_int_equal(report_all(&b, QUEUE_DELIVERED, "2.0.0", "250 2.0.0 queued as X"), 0);
    queue_batch_free(&b);
    assert_int_equal(
        queue_notices_run(conn, bs, "mx.a.test", time(NULL), NULL, &made, err, sizeof err), 0);
    assert_int_equal(made, 1);
    text = queued_notice("alice@a.test", NULL);
    assert_non_null(strstr(text, "carol@x.test"));
    assert_non_null(strstr(text, "Status: 2.0.0"));
    assert_non_null(strstr(text, "Action: delivered"));
    assert_null(strstr(text, "SECRET-BODY-LINE"));
    free(text);
    assert_int_equal(count("SELECT count(*) FROM queue_messages WHERE NOT is_notice"), 0);
    PQclear(testdb_exec(conn, "TRUNCATE queue_messages CASCADE"));

    /* a delay notice: the message stays queued, the notice goes once */
    const char *rc3[] = {"slow@x.test"};
    long long id = enqueue("alice@a.test", 0, rc3, 1);
    assert_int_equal(claim(conn, "node-1", &b), 1);
    PQclear(testdb_exec(conn, "UPDATE queue_recipients SET first_attempt_at = now() - interval "
                              "'1 day'"));
    assert_int_equal(report_all(&b, QUEUE_TEMPFAIL, "4.4.1", "421 4.4.1 busy"), 0);
    queue_batch_free(&b);
    assert_int_equal(
        queue_notices_run(conn, bs, "mx.a.test", time(NULL), NULL, &made, err, sizeof err), 0);
    assert_int_equal(made, 1);
    text = queued_notice("alice@a.test", NULL);
    assert_non_null(strstr(text, "slow@x.test"));
    assert_non_null(strstr(text, "Status: 4.4.1"));
    assert_non_null(strstr(text, "Action: delayed"));
    free(text);
    struct shown s;
    assert_int_equal(show(id, &s), 0);
    assert_string_equal(s.r[0].state, "queued");
    assert_string_equal(s.r[0].notice, "none");
    assert_int_equal(
        queue_notices_run(conn, bs, "mx.a.test", time(NULL), NULL, &made, err, sizeof err), 0);
    assert_int_equal(made, 0);

    /* bad arguments */
    assert_int_equal(queue_notices_run(conn, bs, "", time(NULL), NULL, &made, err, sizeof err), -1);
    PQclear(testdb_exec(conn, "BEGIN"));
    assert_int_equal(
        queue_notices_run(conn, bs, "mx.a.test", time(NULL), NULL, &made, err, sizeof err), -1);
    PQclear(testdb_exec(conn, "ROLLBACK"));
}

/* A large original comes back as its header only, cut at the empty line. */
static void test_large_original_headers_only(void **state)
{
    (void)state;
    char err[256], blob[BLOB_ID_LEN + 1];
    size_t big = QUEUE_NOTICE_ORIGINAL_MAX + 300000;
    char *msg = malloc(big + 1);
    assert_non_null(msg);
    const char *hdr = "From: alice@a.test\r\nSubject: Big one\r\n\r\n";
    size_t hl = strlen(hdr);
    memcpy(msg, hdr, hl);
    memset(msg + hl, 'Z', big - hl);
    msg[big] = '\0';
    put_blob(msg, blob);
    free(msg);
    struct queue_message_new m = {
        .blob_id = blob, .size = big, .sender = "alice@a.test", .ret = SMTP_RET_FULL};
    struct queue_rcpt_new r = {.address = "bad@x.test"};
    assert_int_equal(queue_enqueue(conn, &m, &r, 1, NULL, err, sizeof err), 0);
    struct queue_batch b;
    assert_int_equal(claim(conn, "node-1", &b), 1);
    assert_int_equal(report_all(&b, QUEUE_PERMFAIL, "5.3.4", "552 5.3.4 too big"), 0);
    queue_batch_free(&b);
    int made;
    assert_int_equal(
        queue_notices_run(conn, bs, "mx.a.test", time(NULL), NULL, &made, err, sizeof err), 0);
    assert_int_equal(made, 1);
    char *text = queued_notice("alice@a.test", NULL);
    assert_non_null(strstr(text, "Subject: Big one"));
    assert_null(strstr(text, "ZZZZ"));
    assert_true(strlen(text) < 20000);
    free(text);
}

/* Another node changes an owed notice while a notification is being built:
 * the notification is dropped, nothing is sent twice. */
struct runner {
    int made, rc;
    char err[256];
};

static void *notices_thread(void *arg)
{
    struct runner *ru = arg;
    ru->rc = queue_notices_run(conn, bs, "mx.a.test", time(NULL), NULL, &ru->made, ru->err,
                               sizeof ru->err);
    return NULL;
}

static void test_notice_changed_meanwhile(void **state)
{
    (void)state;
    const char *rc[] = {"bad@x.test"};
    long long id = enqueue("alice@a.test", 0, rc, 1);
    struct queue_batch b;
    assert_int_equal(claim(conn, "node-1", &b), 1);
    assert_int_equal(report_all(&b, QUEUE_PERMFAIL, "5.1.1", NULL), 0);
    queue_batch_free(&b);

    /* "another node" holds the message and clears the notice, as if it had
     * sent the notification; the runner blocks on the message lock */
    PGconn *other = testdb_connect();
    PQclear(testdb_exec(other, "BEGIN"));
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT 1 FROM queue_messages WHERE id = %lld FOR UPDATE", id);
    PQclear(testdb_exec(other, sql));
    PQclear(testdb_exec(other, "UPDATE queue_recipients SET notice = 'none'"));
    struct runner ru = {0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, notices_thread, &ru), 0);
    long long waiting = 0;
    for (int i = 0; i < 1000 && waiting == 0; i++) {
        PGresult *r = testdb_exec(other, "SELECT count(*) FROM pg_locks WHERE NOT granted");
        waiting = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        if (waiting == 0) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    assert_true(waiting > 0);
    PQclear(testdb_exec(other, "COMMIT"));
    pthread_join(th, NULL);
    PQfinish(other);
    if (ru.rc != 0)
        fail_msg("queue_notices_run: %s", ru.err);
    assert_int_equal(ru.made, 0);
    assert_int_equal(count("SELECT count(*) FROM queue_messages WHERE is_notice"), 0);
    assert_int_equal(PQtransactionStatus(conn), PQTRANS_IDLE);
}

/* ---- administration ---- */

struct listed {
    size_t n;
    long long ids[8];
    int queued[8], failed[8];
};

static int list_cb(const struct queue_info *m, void *ctx)
{
    struct listed *l = ctx;
    if (l->n < 8) {
        l->ids[l->n] = m->id;
        l->queued[l->n] = m->nqueued;
        l->failed[l->n] = m->nfailed;
        l->n++;
    }
    return 0;
}

static void test_retry_delete_list(void **state)
{
    (void)state;
    char err[256];
    const char *rc[] = {"bob@x.test", "eve@y.test"};
    long long id1 = enqueue("alice@a.test", 0, rc, 2);
    long long id2 = enqueue("", 0, rc, 1);

    struct listed l = {0};
    assert_int_equal(queue_list(conn, list_cb, &l, err, sizeof err), 0);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.ids[0], id1);
    assert_int_equal(l.queued[0], 2);
    assert_int_equal(l.ids[1], id2);

    /* a temporary failure pushes bob back; retry makes him due again */
    struct queue_batch b, all[3];
    assert_int_equal(claim(conn, "node-1", &b), 1);
    assert_int_equal(b.message_id, id1);
    assert_string_equal(b.rcpts[0].address, "bob@x.test");
    assert_int_equal(report_all(&b, QUEUE_TEMPFAIL, "4.4.1", NULL), 0);
    queue_batch_free(&b);
    long long n = -1;
    assert_int_equal(queue_retry(conn, id1, &n, err, sizeof err), 0);
    assert_int_equal(n, 2); /* bob, and eve who was due already */

    /* everything can be claimed now: three batches */
    struct queue_batch *held = NULL;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(claim(conn, "node-1", &all[i]), 1);
        if (all[i].message_id == id1 && !strcmp(all[i].domain, "x.test"))
            held = &all[i];
    }
    assert_non_null(held);
    assert_int_equal(claim(conn, "node-1", &b), 0);

    /* recipients under a live lease are left alone */
    assert_int_equal(queue_retry(conn, id1, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(queue_retry(conn, 0, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(queue_retry(conn, 987654, &n, err, sizeof err), QUEUE_ENOTFOUND);
    assert_int_equal(queue_retry(conn, -1, &n, err, sizeof err), -1);

    /* deletion: silent, and the node delivering it is fenced out */
    assert_int_equal(queue_delete(conn, id1, err, sizeof err), 0);
    assert_int_equal(queue_delete(conn, id1, err, sizeof err), QUEUE_ENOTFOUND);
    struct shown s;
    assert_int_equal(show(id1, &s), QUEUE_ENOTFOUND);
    struct queue_outcome o = {.result = QUEUE_DELIVERED};
    assert_int_equal(queue_report(conn, held, &o, NULL, err, sizeof err), QUEUE_ELEASE);
    for (int i = 0; i < 3; i++)
        queue_batch_free(&all[i]);
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM queue_recipients WHERE message_id = %lld", id1);
    assert_int_equal(count(sql), 0);
    memset(&l, 0, sizeof l);
    assert_int_equal(queue_list(conn, list_cb, &l, err, sizeof err), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.ids[0], id2);
}

static void test_retry_all(void **state)
{
    (void)state;
    char err[256];
    const char *rc[] = {"bob@x.test"};
    enqueue("alice@a.test", 0, rc, 1);
    enqueue("alice@a.test", 0, rc, 1);
    struct queue_batch b;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(claim(conn, "node-1", &b), 1);
        assert_int_equal(report_all(&b, QUEUE_TEMPFAIL, "4.4.1", NULL), 0);
        queue_batch_free(&b);
    }
    assert_int_equal(claim(conn, "node-1", &b), 0);
    long long n = -1;
    assert_int_equal(queue_retry(conn, 0, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(claim(conn, "node-1", &b), 1);
    queue_batch_free(&b);
    assert_int_equal(claim(conn, "node-1", &b), 1);
    queue_batch_free(&b);
    assert_int_equal(claim(conn, "node-1", &b), 0);
}

/* ---- blob collection ---- */

static void test_blobgc_keeps_queued_blob(void **state)
{
    (void)state;
    char err[256], orphan[BLOB_ID_LEN + 1];
    const char *rc[] = {"bob@x.test"};
    long long id = enqueue("alice@a.test", 0, rc, 1);
    PGresult *r = testdb_exec(conn, "SELECT blob_id FROM queue_messages");
    char queued[BLOB_ID_LEN + 1];
    snprintf(queued, sizeof queued, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    put_blob("nobody refers to me", orphan);
    PQclear(testdb_exec(conn, "UPDATE blobs SET written_at = now() - interval '2 days'"));

    struct blobgc_result res;
    assert_int_equal(blobgc_run(conn, bs, 3600, &res, err, sizeof err), 0);
    assert_int_equal(res.examined, 2);
    assert_int_equal(res.deleted, 1);
    assert_int_equal(blob_stat(bs, conn, queued, NULL, err, sizeof err), 0);
    assert_int_equal(blob_stat(bs, conn, orphan, NULL, err, sizeof err), BLOB_ENOTFOUND);

    /* once the message has left the queue the blob is garbage */
    assert_int_equal(queue_delete(conn, id, err, sizeof err), 0);
    assert_int_equal(blobgc_run(conn, bs, 3600, &res, err, sizeof err), 0);
    assert_int_equal(res.deleted, 1);
    assert_int_equal(blob_stat(bs, conn, queued, NULL, err, sizeof err), BLOB_ENOTFOUND);
}

int main(void)
{
    conn = testdb_create("queue");
    struct blob_config cfg = {.backend = "pg"};
    char err[256];
    bs = blob_store_open(&cfg, err, sizeof err);
    if (bs == NULL) {
        fprintf(stderr, "blob_store_open: %s\n", err);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_happy_path, setup),
        cmocka_unit_test_setup(test_enqueue_validation_and_transactions, setup),
        cmocka_unit_test_setup(test_concurrent_claims, setup),
        cmocka_unit_test_setup(test_expired_lease_reclaimed_and_fenced, setup),
        cmocka_unit_test_setup(test_backoff_and_expiry, setup),
        cmocka_unit_test_setup(test_notice_rules, setup),
        cmocka_unit_test_setup(test_delay_notice, setup),
        cmocka_unit_test_setup(test_failure_notification, setup),
        cmocka_unit_test_setup(test_headers_only_and_success_notifications, setup),
        cmocka_unit_test_setup(test_large_original_headers_only, setup),
        cmocka_unit_test_setup(test_notice_changed_meanwhile, setup),
        cmocka_unit_test_setup(test_retry_delete_list, setup),
        cmocka_unit_test_setup(test_retry_all, setup),
        cmocka_unit_test_setup(test_blobgc_keeps_queued_blob, setup),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    blob_store_close(&bs);
    testdb_drop(&conn);
    return rc;
}
