/* layer: storage */
/* Tests for storage/mailstore against a real PostgreSQL: append, UIDs and
 * modseqs, flags (with UNCHANGEDSINCE), copy and move, expunge with tombstones,
 * quota in the same transaction, counters, and concurrent appends into one
 * mailbox from several connections. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/changes.h"
#include "storage/directory.h"
#include "storage/folders.h"
#include "storage/mailstore.h"
#include "storage/quota.h"
#include "support/testdb.h"

static PGconn *conn;
static long long alice, bob;
static long long inbox, archive, bob_inbox;

static const struct mail_meta meta = {
    .envelope = "(\"Sat, 21 Nov 2026 05:00:00 +0000\" \"Hello\" NIL NIL NIL NIL NIL NIL NIL NIL)",
    .body = "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 1)",
    .bodystructure = "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 1 NIL NIL NIL NIL)",
    .parts_json = "[]",
    .sent_date = 1795237200,
    .subject = "Hello",
    .from = "Alice <alice@example.test>",
    .to = "bob@example.test",
    .search_text = "the quick brown fox",
};

static const char *blob_a = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

static long long account(const char *address)
{
    char err[256];
    if (dir_account_add(conn, address, "user", "pw-123456", "", false, err, sizeof(err)) < 0)
        fail_msg("%s", err);
    struct dir_account a;
    assert_int_equal(dir_account_find(conn, address, &a, err, sizeof(err)), 0);
    return a.id;
}

static long long folder(long long acct, const char *path)
{
    struct folder f;
    char err[256];
    if (folders_find_path(conn, acct, path, &f) == 0)
        return f.id;
    if (folders_create(conn, acct, path, FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, &f, err, sizeof(err)))
        fail_msg("%s", err);
    return f.id;
}

static int setup(void **state)
{
    PGresult *r = testdb_exec(conn, "TRUNCATE domains, accounts RESTART IDENTITY CASCADE");
    PQclear(r);
    char err[256];
    if (dir_domain_add(conn, "example.test", err, sizeof(err)) < 0)
        fail_msg("%s", err);
    alice = account("alice@example.test");
    bob = account("bob@example.test");
    inbox = folder(alice, "INBOX");
    archive = folder(alice, "Archive");
    bob_inbox = folder(bob, "INBOX");
    return 0;
}

static uint32_t append(long long folder_id, unsigned flags, uint64_t size, long long *modseq_r)
{
    struct mail_new m = {.blob_id = blob_a, .size = size, .flags = flags, .meta = &meta};
    uint32_t uid;
    long long ms;
    char err[256];
    int rc = mailstore_append(conn, alice, folder_id, &m, true, &uid, &ms, err, sizeof(err));
    if (rc != 0)
        fail_msg("append: %d %s", rc, err);
    if (modseq_r)
        *modseq_r = ms;
    return uid;
}

static void test_append_uids_modseqs_status(void **state)
{
    long long m1, m2;
    assert_int_equal(append(inbox, 0, 100, &m1), 1);
    assert_int_equal(append(inbox, MAIL_SEEN, 50, &m2), 2);
    assert_true(m2 > m1);
    assert_int_equal(append(archive, 0, 10, NULL), 1); /* UIDs are per folder */
    struct mail_status st;
    char err[256];
    assert_int_equal(mailstore_status(conn, inbox, &st, err, sizeof(err)), 0);
    assert_int_equal(st.messages, 2);
    assert_int_equal(st.unseen, 1);
    assert_int_equal(st.bytes, 150);
    assert_int_equal(st.uidnext, 3);
    assert_int_equal(st.highest_modseq, m2);
    assert_true(st.uidvalidity > 0);
    struct quota_info q;
    assert_int_equal(quota_get(conn, "alice@example.test", &q, err, sizeof(err)), 0);
    assert_int_equal(q.bytes_used, 160);
    assert_int_equal(q.messages_used, 3);

    /* wrong owner, wrong kind, bad keyword: nothing written */
    struct mail_new m = {.blob_id = blob_a, .size = 1, .meta = &meta};
    uint32_t uid;
    long long ms;
    assert_int_equal(mailstore_append(conn, alice, bob_inbox, &m, true, &uid, &ms, err, sizeof(err)),
                     MAIL_ENOTFOUND);
    const char *bad[] = {"has space"};
    m.keywords = bad;
    m.nkeywords = 1;
    assert_int_equal(mailstore_append(conn, alice, inbox, &m, true, &uid, &ms, err, sizeof(err)),
                     MAIL_EINVAL);
    assert_int_equal(mailstore_status(conn, inbox, &st, err, sizeof(err)), 0);
    assert_int_equal(st.messages, 2);
}

struct collect {
    uint32_t uids[64];
    unsigned flags[64];
    size_t nkw[64];
    char kw0[64][32];
    long long modseq[64];
    size_t n;
};

static int collect_row(const struct mail_row *r, void *ctx)
{
    struct collect *c = ctx;
    c->uids[c->n] = r->uid;
    c->flags[c->n] = r->flags;
    c->nkw[c->n] = r->nkeywords;
    snprintf(c->kw0[c->n], sizeof(c->kw0[0]), "%s", r->nkeywords ? r->keywords[0] : "");
    c->modseq[c->n] = r->modseq;
    c->n++;
    return 0;
}

static void collect_uid(uint32_t uid, void *ctx)
{
    struct collect *c = ctx;
    c->uids[c->n++] = uid;
}

static void test_fetch_sets(void **state)
{
    for (int i = 0; i < 6; i++)
        append(inbox, 0, 10, NULL);
    struct uid_range set[] = {{2, 3}, {5, UINT32_MAX}};
    struct collect c = {0};
    char err[256];
    assert_int_equal(mailstore_fetch(conn, inbox, set, 2, 0, true, collect_row, &c, err, sizeof(err)),
                     0);
    assert_int_equal(c.n, 4);
    assert_int_equal(c.uids[0], 2);
    assert_int_equal(c.uids[1], 3);
    assert_int_equal(c.uids[2], 5);
    assert_int_equal(c.uids[3], 6);
    memset(&c, 0, sizeof(c));
    assert_int_equal(mailstore_fetch(conn, inbox, NULL, 0, 0, false, collect_row, &c, err, sizeof(err)),
                     0);
    assert_int_equal(c.n, 6);
}

static void test_store_flags_keywords_unchangedsince(void **state)
{
    for (int i = 0; i < 3; i++)
        append(inbox, 0, 10, NULL);
    char err[256];
    struct uid_range all = {1, UINT32_MAX};
    const char *kw[] = {"$Important", "work,late"}; /* a comma is legal in an atom */
    struct collect changed = {0}, failed = {0};
    assert_int_equal(mailstore_store(conn, alice, inbox, &all, 1, MAIL_FLAGS_ADD,
                                     MAIL_SEEN | MAIL_FLAGGED, kw, 2, 0, collect_row, &changed,
                                     NULL, NULL, err, sizeof(err)),
                     0);
    assert_int_equal(changed.n, 3);
    assert_int_equal(changed.flags[0], MAIL_SEEN | MAIL_FLAGGED);
    assert_int_equal(changed.nkw[0], 2);
    long long ms1 = changed.modseq[0];
    assert_int_equal(changed.modseq[2], ms1); /* one modseq per command */

    struct collect rows = {0};
    mailstore_fetch(conn, inbox, NULL, 0, 0, false, collect_row, &rows, err, sizeof(err));
    assert_int_equal(rows.nkw[1], 2);
    assert_string_equal(rows.kw0[1], "$Important");

    /* storing what is already there changes nothing and reports nothing */
    memset(&changed, 0, sizeof(changed));
    assert_int_equal(mailstore_store(conn, alice, inbox, &all, 1, MAIL_FLAGS_ADD, MAIL_SEEN, NULL,
                                     0, 0, collect_row, &changed, NULL, NULL, err, sizeof(err)),
                     0);
    assert_int_equal(changed.n, 0);

    /* UNCHANGEDSINCE: change message 2 after ms1, then a conditional store on all */
    struct uid_range two = {2, 2};
    mailstore_store(conn, alice, inbox, &two, 1, MAIL_FLAGS_REMOVE, MAIL_FLAGGED, NULL, 0, 0, NULL,
                    NULL, NULL, NULL, err, sizeof(err));
    memset(&changed, 0, sizeof(changed));
    assert_int_equal(mailstore_store(conn, alice, inbox, &all, 1, MAIL_FLAGS_ADD, MAIL_ANSWERED,
                                     NULL, 0, ms1, collect_row, &changed, collect_uid, &failed,
                                     err, sizeof(err)),
                     0);
    assert_int_equal(failed.n, 1);
    assert_int_equal(failed.uids[0], 2);
    assert_int_equal(changed.n, 2);

    /* SET replaces; REMOVE of keywords */
    memset(&changed, 0, sizeof(changed));
    const char *kw2[] = {"work,late"};
    assert_int_equal(mailstore_store(conn, alice, inbox, &all, 1, MAIL_FLAGS_REMOVE, 0, kw2, 1, 0,
                                     collect_row, &changed, NULL, NULL, err, sizeof(err)),
                     0);
    assert_int_equal(changed.nkw[0], 1);
    assert_int_equal(mailstore_store(conn, alice, inbox, &all, 1, MAIL_FLAGS_SET, MAIL_DELETED,
                                     NULL, 0, 0, NULL, NULL, NULL, NULL, err, sizeof(err)),
                     0);
    struct mail_status st;
    mailstore_status(conn, inbox, &st, err, sizeof(err));
    assert_int_equal(st.unseen, 3);
    assert_int_equal(st.deleted, 3);
    const char *badkw[] = {"\\Seen"};
    assert_int_equal(mailstore_store(conn, alice, inbox, &all, 1, MAIL_FLAGS_ADD, 0, badkw, 1, 0,
                                     NULL, NULL, NULL, NULL, err, sizeof(err)),
                     MAIL_EINVAL);
}

static void test_expunge_tombstones_quota(void **state)
{
    for (int i = 0; i < 4; i++)
        append(inbox, i % 2 ? MAIL_DELETED : 0, 100, NULL);
    char err[256];
    long long before;
    changes_current_modseq(conn, alice, &before);
    struct collect ex = {0};
    struct uid_range only4 = {4, 4};
    /* UID EXPUNGE 4 removes just that \Deleted one */
    assert_int_equal(mailstore_expunge(conn, alice, inbox, &only4, 1, collect_uid, &ex, err,
                                       sizeof(err)),
                     0);
    assert_int_equal(ex.n, 1);
    assert_int_equal(ex.uids[0], 4);
    memset(&ex, 0, sizeof(ex));
    assert_int_equal(mailstore_expunge(conn, alice, inbox, NULL, 0, collect_uid, &ex, err,
                                       sizeof(err)),
                     0);
    assert_int_equal(ex.n, 1);
    assert_int_equal(ex.uids[0], 2);
    struct mail_status st;
    mailstore_status(conn, inbox, &st, err, sizeof(err));
    assert_int_equal(st.messages, 2);
    assert_int_equal(st.deleted, 0);
    assert_int_equal(st.bytes, 200);
    struct quota_info q;
    quota_get(conn, "alice@example.test", &q, err, sizeof(err));
    assert_int_equal(q.bytes_used, 200);
    assert_int_equal(q.messages_used, 2);
    PGresult *r = testdb_exec(conn, "SELECT uid FROM tombstones WHERE object_kind = 'message'"
                                    " ORDER BY uid");
    assert_int_equal(PQntuples(r), 2);
    assert_string_equal(PQgetvalue(r, 0, 0), "2");
    assert_string_equal(PQgetvalue(r, 1, 0), "4");
    PQclear(r);
}

struct pair {
    uint32_t src[16], dst[16];
    size_t n;
};

static void collect_pair(uint32_t s, uint32_t d, void *ctx)
{
    struct pair *p = ctx;
    p->src[p->n] = s;
    p->dst[p->n++] = d;
}

static void test_copy_and_move(void **state)
{
    for (int i = 0; i < 3; i++)
        append(inbox, i == 0 ? MAIL_SEEN : 0, 100, NULL);
    append(archive, 0, 1, NULL); /* archive uidnext is 2 */
    char err[256];
    struct uid_range set[] = {{1, 1}, {3, 3}};
    struct pair p = {0};
    uint32_t uv;
    assert_int_equal(mailstore_copy(conn, alice, inbox, set, 2, archive, false, true, collect_pair,
                                    &p, &uv, err, sizeof(err)),
                     0);
    assert_int_equal(p.n, 2);
    assert_int_equal(p.src[0], 1);
    assert_int_equal(p.dst[0], 2);
    assert_int_equal(p.src[1], 3);
    assert_int_equal(p.dst[1], 3);
    struct mail_status st;
    mailstore_status(conn, archive, &st, err, sizeof(err));
    assert_int_equal(st.uidvalidity, uv);
    assert_int_equal(st.messages, 3);
    assert_int_equal(st.unseen, 2);
    struct quota_info q;
    quota_get(conn, "alice@example.test", &q, err, sizeof(err));
    assert_int_equal(q.bytes_used, 501);

    memset(&p, 0, sizeof(p));
    struct uid_range two = {2, 2};
    assert_int_equal(mailstore_copy(conn, alice, inbox, &two, 1, archive, true, true, collect_pair,
                                    &p, NULL, err, sizeof(err)),
                     0);
    assert_int_equal(p.dst[0], 4);
    mailstore_status(conn, inbox, &st, err, sizeof(err));
    assert_int_equal(st.messages, 2);
    quota_get(conn, "alice@example.test", &q, err, sizeof(err));
    assert_int_equal(q.bytes_used, 501); /* a move within an account changes no usage */

    /* a move into another account's folder charges that owner */
    struct uid_range one = {1, 1};
    assert_int_equal(mailstore_copy(conn, alice, inbox, &one, 1, bob_inbox, true, true, NULL, NULL,
                                    NULL, err, sizeof(err)),
                     0);
    quota_get(conn, "bob@example.test", &q, err, sizeof(err));
    assert_int_equal(q.bytes_used, 100);
    quota_get(conn, "alice@example.test", &q, err, sizeof(err));
    assert_int_equal(q.bytes_used, 401);
    /* nothing matches: nothing happens */
    struct uid_range none = {900, 901};
    memset(&p, 0, sizeof(p));
    assert_int_equal(mailstore_copy(conn, alice, inbox, &none, 1, archive, false, true, collect_pair,
                                    &p, NULL, err, sizeof(err)),
                     0);
    assert_int_equal(p.n, 0);
}

static void test_quota_enforced_in_transaction(void **state)
{
    char err[256];
    assert_int_equal(quota_set_account(conn, "alice@example.test", 250, QUOTA_KEEP, false, err, sizeof(err)), 0);
    append(inbox, 0, 200, NULL);
    struct mail_new m = {.blob_id = blob_a, .size = 100, .meta = &meta};
    uint32_t uid;
    long long ms;
    assert_int_equal(mailstore_append(conn, alice, inbox, &m, true, &uid, &ms, err, sizeof(err)),
                     MAIL_EQUOTA);
    struct mail_status st;
    mailstore_status(conn, inbox, &st, err, sizeof(err));
    assert_int_equal(st.messages, 1);
    assert_int_equal(st.uidnext, 2); /* the refused append took no UID */
    /* not enforced: accepted and accounted */
    assert_int_equal(mailstore_append(conn, alice, inbox, &m, false, &uid, &ms, err, sizeof(err)),
                     0);
    struct uid_range one = {1, 1};
    assert_int_equal(mailstore_copy(conn, alice, inbox, &one, 1, archive, false, true, NULL, NULL,
                                    NULL, err, sizeof(err)),
                     MAIL_EQUOTA);
}

#define THREADS 4
#define PER_THREAD 50

static void *appender(void *arg)
{
    PGconn *c = testdb_connect();
    struct mail_new m = {.blob_id = blob_a, .size = 10, .meta = &meta};
    uint32_t *uids = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        long long ms;
        char err[256];
        if (mailstore_append(c, alice, inbox, &m, true, &uids[i], &ms, err, sizeof(err)) != 0)
            uids[i] = 0;
    }
    PQfinish(c);
    return NULL;
}

static void test_concurrent_appends(void **state)
{
    static uint32_t uids[THREADS][PER_THREAD];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, appender, uids[i]);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    static char seen[THREADS * PER_THREAD + 1];
    memset(seen, 0, sizeof(seen));
    for (int i = 0; i < THREADS; i++)
        for (int j = 0; j < PER_THREAD; j++) {
            uint32_t u = uids[i][j];
            assert_true(u >= 1 && u <= THREADS * PER_THREAD); /* none failed, no gaps */
            assert_int_equal(seen[u], 0);                     /* no duplicate UID */
            seen[u] = 1;
        }
    struct mail_status st;
    char err[256];
    mailstore_status(conn, inbox, &st, err, sizeof(err));
    assert_int_equal(st.messages, THREADS * PER_THREAD); /* no lost message */
    PGresult *r = testdb_exec(conn, "SELECT count(DISTINCT modseq) FROM messages");
    assert_int_equal(atoi(PQgetvalue(r, 0, 0)), THREADS * PER_THREAD);
    PQclear(r);
}

static void test_keywords_and_flags_helpers(void **state)
{
    assert_int_equal(mailstore_flag_bit("\\seen"), MAIL_SEEN);
    assert_int_equal(mailstore_flag_bit("\\Draft"), MAIL_DRAFT);
    assert_int_equal(mailstore_flag_bit("\\Recent"), 0);
    assert_true(mailstore_keyword_valid("$Junk"));
    assert_false(mailstore_keyword_valid(""));
    assert_false(mailstore_keyword_valid("a b"));
    assert_false(mailstore_keyword_valid("a(b"));
    assert_false(mailstore_keyword_valid("\\Flag"));
    char longkw[MAIL_KEYWORD_LEN + 2];
    memset(longkw, 'k', sizeof(longkw) - 1);
    longkw[sizeof(longkw) - 1] = '\0';
    assert_false(mailstore_keyword_valid(longkw));
}

int main(void)
{
    conn = testdb_create("mailstore");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_append_uids_modseqs_status, setup),
        cmocka_unit_test_setup(test_fetch_sets, setup),
        cmocka_unit_test_setup(test_store_flags_keywords_unchangedsince, setup),
        cmocka_unit_test_setup(test_expunge_tombstones_quota, setup),
        cmocka_unit_test_setup(test_copy_and_move, setup),
        cmocka_unit_test_setup(test_quota_enforced_in_transaction, setup),
        cmocka_unit_test_setup(test_concurrent_appends, setup),
        cmocka_unit_test(test_keywords_and_flags_helpers),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    testdb_drop(&conn);
    return rc;
}
