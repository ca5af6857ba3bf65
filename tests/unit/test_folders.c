/* layer: storage */
/* Tests for storage/folders and storage/changes against a real PostgreSQL.
 *
 * FLOE_TEST_PG holds a libpq connection string for a server where the user
 * may create databases; without it the tests fail. Every run creates its own
 * database (floe_test_folders_<pid>) and drops it at the end. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "storage/changes.h"
#include "storage/db.h"
#include "storage/directory.h"
#include "storage/folders.h"
#include "support/testdb.h"

static PGconn *conn;         /* to this run's migrated database */
static long long alice, bob; /* account ids, fresh for every test */

/* ---- helpers ---- */

/* Runs fixed test SQL with up to two text parameters, returns the first
 * cell of the first row ("" when none) in a static buffer. */
static const char *sql1(PGconn *c, const char *sql, const char *p1, const char *p2)
{
    static char out[1100];
    const char *p[] = {p1, p2};
    int np = p2 ? 2 : (p1 ? 1 : 0);
    PGresult *r = PQexecParams(c, sql, np, NULL, p, NULL, NULL, 0);
    if (!db_ok(r))
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    snprintf(out, sizeof out, "%s",
             (PQntuples(r) > 0 && PQnfields(r) > 0) ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    return out;
}

static long long num(PGconn *c, const char *sql, const char *p1, const char *p2)
{
    return strtoll(sql1(c, sql, p1, p2), NULL, 10);
}

static long long count_folders(long long account_id)
{
    char a[24];
    snprintf(a, sizeof a, "%lld", account_id);
    return num(conn, "SELECT count(*) FROM folders WHERE account_id = $1::bigint", a, NULL);
}

static long long modseq_of(long long account_id)
{
    long long m = -1;
    assert_int_equal(changes_current_modseq(conn, account_id, &m), 0);
    return m;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) == NULL)
        fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

static long long add_account(const char *address)
{
    char err[256];
    struct dir_account a;
    if (dir_account_add(conn, address, NULL, NULL, NULL, false, err, sizeof err) != 0)
        fail_msg("dir_account_add(%s): %s", address, err);
    assert_int_equal(dir_account_find(conn, address, &a, err, sizeof err), 0);
    return a.id;
}

static void create_ok(long long account_id, const char *path, enum folder_kind kind,
                      enum folder_role role, struct folder *f_r)
{
    char err[256] = "";
    int rc = folders_create(conn, account_id, path, kind, role, f_r, err, sizeof err);
    if (rc != 0)
        fail_msg("folders_create(%s): %d %s", path, rc, err);
}

static struct folder get_path(long long account_id, const char *path)
{
    struct folder f;
    int rc = folders_find_path(conn, account_id, path, &f);
    if (rc != 0)
        fail_msg("folders_find_path(%s): %d", path, rc);
    return f;
}

/* ---- setup ---- */

static void quiet_notices(void *arg, const char *message)
{
}

static int group_setup(void **state)
{
    conn = testdb_create("folders");
    /* A statement timeout turns a hang into a failure. */
    PQclear(testdb_exec(conn, "SET statement_timeout = 20000"));
    PQsetNoticeProcessor(conn, quiet_notices, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    testdb_drop(&conn);
    return 0;
}

/* An account without the default tree dir_account_add gives it. */
static long long bare_account(const char *address)
{
    long long id = add_account(address);
    char ids[24];
    snprintf(ids, sizeof ids, "%lld", id);
    sql1(conn, "DELETE FROM folders WHERE account_id = $1", ids, NULL);
    return id;
}

/* Every test starts from empty tables with two accounts. */
static int setup(void **state)
{
    sql1(conn, "TRUNCATE domains, accounts, folders, tombstones RESTART IDENTITY CASCADE", NULL,
         NULL);
    char err[256];
    assert_int_equal(dir_domain_add(conn, "example.com", err, sizeof err), 0);
    alice = add_account("alice@example.com");
    bob = add_account("bob@example.com");
    /* dir_account_add gives every account its default tree; these tests build
     * trees themselves, so they start from accounts without folders. */
    sql1(conn, "DELETE FROM folders", NULL, NULL);
    sql1(conn, "DELETE FROM tombstones", NULL, NULL);
    sql1(conn, "UPDATE accounts SET modseq = 0, uidvalidity_last = 0", NULL, NULL);
    return 0;
}

/* A new account has its default tree from the start. */
static void test_account_add_creates_defaults(void **state)
{
    long long carol = add_account("carol@example.com");
    struct folder f;
    assert_int_equal(folders_find_role(conn, carol, FOLDER_ROLE_INBOX, &f), 0);
    assert_string_equal(f.path, "INBOX");
    assert_int_equal(folders_find_role(conn, carol, FOLDER_ROLE_EVENTS, &f), 0);
    assert_int_equal(f.kind, FOLDER_KIND_EVENTS);
    assert_int_equal(folders_create_defaults(conn, carol, "en"), 0); /* nothing left to make */
}

/* ---- names and paths ---- */

static void test_names(void **state)
{
    for (int k = FOLDER_KIND_MAIL; k <= FOLDER_KIND_FILES; k++) {
        enum folder_kind back;
        assert_non_null(folders_kind_str((enum folder_kind)k));
        assert_int_equal(folders_kind_parse(folders_kind_str((enum folder_kind)k), &back), 0);
        assert_int_equal(back, k);
    }
    assert_string_equal(folders_kind_str(FOLDER_KIND_EVENTS), "events");
    assert_null(folders_kind_str((enum folder_kind)99));
    assert_int_equal(folders_kind_parse("Mail", NULL), FOLDERS_EINVAL);
    assert_int_equal(folders_kind_parse(NULL, NULL), FOLDERS_EINVAL);

    for (int r = FOLDER_ROLE_INBOX; r <= FOLDER_ROLE_FILES; r++) {
        enum folder_role back;
        assert_int_equal(folders_role_parse(folders_role_str((enum folder_role)r), &back), 0);
        assert_int_equal(back, r);
    }
    assert_null(folders_role_str(FOLDER_ROLE_NONE));
    assert_null(folders_role_str((enum folder_role)99));
    assert_int_equal(folders_role_parse("", NULL), FOLDERS_EINVAL);
    assert_int_equal(folders_role_parse("outbox", NULL), FOLDERS_EINVAL);
    assert_int_equal(folders_role_kind(FOLDER_ROLE_SENT), FOLDER_KIND_MAIL);
    assert_int_equal(folders_role_kind(FOLDER_ROLE_EVENTS), FOLDER_KIND_EVENTS);
    assert_int_equal(folders_role_kind(FOLDER_ROLE_FILES), FOLDER_KIND_FILES);
}

static void test_path_check(void **state)
{
    char out[FOLDERS_PATH_MAX + 1], err[256];
    assert_int_equal(
        folders_path_check("A/B c/Calend\xc3\xa1rio", out, sizeof out, err, sizeof err), 0);
    assert_string_equal(out, "A/B c/Calend\xc3\xa1rio");
    /* RFC 3501 §5.1: INBOX in any case, as the first segment only. */
    assert_int_equal(folders_path_check("inbox", out, sizeof out, err, sizeof err), 0);
    assert_string_equal(out, "INBOX");
    assert_int_equal(folders_path_check("iNbOx/Sub/inbox", out, sizeof out, err, sizeof err), 0);
    assert_string_equal(out, "INBOX/Sub/inbox");
    assert_int_equal(folders_path_check("inboxes", out, sizeof out, err, sizeof err), 0);
    assert_string_equal(out, "inboxes");
    assert_int_equal(folders_path_check("A/inbox", out, sizeof out, err, sizeof err), 0);
    assert_string_equal(out, "A/inbox");

    /* The limits, exactly. */
    char name255[300], name256[300];
    memset(name255, 'n', 255);
    name255[255] = '\0';
    memset(name256, 'n', 256);
    name256[256] = '\0';
    assert_int_equal(folders_path_check(name255, out, sizeof out, err, sizeof err), 0);
    assert_int_equal(folders_path_check(name256, out, sizeof out, err, sizeof err), FOLDERS_EINVAL);
    assert_contains(err, "255");

    char deep[200];
    size_t n = 0;
    for (int i = 0; i < 64; i++)
        n += (size_t)snprintf(deep + n, sizeof deep - n, i ? "/d" : "d");
    assert_int_equal(folders_path_check(deep, out, sizeof out, err, sizeof err), 0);
    snprintf(deep + n, sizeof deep - n, "/d");
    assert_int_equal(folders_path_check(deep, out, sizeof out, err, sizeof err), FOLDERS_EINVAL);
    assert_contains(err, "64");

    char longp[1300];
    /* 4 x 255 + 3 slashes = 1023 bytes: the longest path. */
    snprintf(longp, sizeof longp, "%s/%s/%s/%s", name255, name255, name255, name255);
    assert_int_equal(strlen(longp), 1023);
    assert_int_equal(folders_path_check(longp, out, sizeof out, err, sizeof err), 0);
    snprintf(longp, sizeof longp, "%s/%s/%s/%sx", name255, name255, name255, name255);
    assert_int_equal(folders_path_check(longp, out, sizeof out, err, sizeof err), FOLDERS_EINVAL);
    assert_contains(err, "1023");

    static const char *const bad[] = {
        "",
        "/A",
        "A/",
        "A//B",
        "/",
        "A\001B",
        "A\x7f",
        "Tab\there",
        "new\nline",
        "C1\xc2\x85",
        "bad\xff",
        "over\xc0\xaf",
        "sur\xed\xa0\x80",
        "cut\xc3",
        ".",
        "..",
        "A/./B",
        "A/..",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        if (folders_path_check(bad[i], out, sizeof out, err, sizeof err) != FOLDERS_EINVAL)
            fail_msg("accepted bad path %zu \"%s\"", i, bad[i]);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(folders_path_check(NULL, out, sizeof out, NULL, 0), FOLDERS_EINVAL);
    char small[4];
    assert_int_equal(folders_path_check("Archive", small, sizeof small, NULL, 0), FOLDERS_EINVAL);
    /* Names with dots that are not "." or ".." are fine. */
    assert_int_equal(folders_path_check("...", out, sizeof out, err, sizeof err), 0);
    assert_int_equal(folders_path_check(".hidden/a.b", out, sizeof out, err, sizeof err), 0);
}

/* ---- default tree ---- */

struct seen {
    struct folder f[80];
    int n;
    int stop_after;
};

static int collect(const struct folder *f, void *ctx)
{
    struct seen *s = ctx;
    if (s->n < 80)
        s->f[s->n] = *f;
    s->n++;
    return s->stop_after > 0 && s->n >= s->stop_after;
}

static void list_all(long long account_id, struct seen *s)
{
    char err[256];
    memset(s, 0, sizeof *s);
    assert_int_equal(folders_list(conn, account_id, collect, s, err, sizeof err), 0);
}

static void test_defaults(void **state)
{
    assert_int_equal(folders_create_defaults(conn, alice, "en"), 12);
    assert_int_equal(PQtransactionStatus(conn), PQTRANS_IDLE);

    static const struct {
        enum folder_role role;
        enum folder_kind kind;
        const char *name;
    } want[] = {
        {FOLDER_ROLE_INBOX, FOLDER_KIND_MAIL, "INBOX"},
        {FOLDER_ROLE_DRAFTS, FOLDER_KIND_MAIL, "Drafts"},
        {FOLDER_ROLE_SENT, FOLDER_KIND_MAIL, "Sent"},
        {FOLDER_ROLE_TRASH, FOLDER_KIND_MAIL, "Trash"},
        {FOLDER_ROLE_JUNK, FOLDER_KIND_MAIL, "Junk"},
        {FOLDER_ROLE_ARCHIVE, FOLDER_KIND_MAIL, "Archive"},
        {FOLDER_ROLE_EVENTS, FOLDER_KIND_EVENTS, "Calendar"},
        {FOLDER_ROLE_CONTACTS, FOLDER_KIND_CONTACTS, "Contacts"},
        {FOLDER_ROLE_TASKS, FOLDER_KIND_TASKS, "Tasks"},
        {FOLDER_ROLE_NOTES, FOLDER_KIND_NOTES, "Notes"},
        {FOLDER_ROLE_JOURNAL, FOLDER_KIND_JOURNAL, "Journal"},
        {FOLDER_ROLE_FILES, FOLDER_KIND_FILES, "Files"},
    };
    long long seen_modseq[12];
    unsigned seen_uidv[12];
    for (size_t i = 0; i < 12; i++) {
        struct folder f;
        memset(&f, 0, sizeof f);
        assert_int_equal(folders_find_role(conn, alice, want[i].role, &f), 0);
        assert_string_equal(f.name, want[i].name);
        assert_string_equal(f.path, want[i].name);
        assert_int_equal(f.kind, want[i].kind);
        assert_int_equal(f.role, want[i].role);
        assert_int_equal(f.account_id, alice);
        assert_int_equal(f.parent_id, 0);
        assert_int_equal(f.uidnext, 1);
        assert_true(f.acl_inherit);
        assert_true(f.uidvalidity != 0);
        /* Every creation took its own modseq; UIDVALIDITYs are all different. */
        for (size_t j = 0; j < i; j++) {
            assert_true(f.highest_modseq != seen_modseq[j]);
            assert_true(f.uidvalidity > seen_uidv[j]);
        }
        seen_modseq[i] = f.highest_modseq;
        seen_uidv[i] = f.uidvalidity;
        assert_true(f.highest_modseq >= 1 && f.highest_modseq <= 12);
    }
    assert_int_equal(modseq_of(alice), 12);
    assert_int_equal(count_folders(alice), 12);

    /* Idempotent: nothing new, no modseq taken. */
    assert_int_equal(folders_create_defaults(conn, alice, "de"), 0);
    assert_int_equal(count_folders(alice), 12);
    assert_int_equal(modseq_of(alice), 12);
    /* Bob is untouched. */
    assert_int_equal(count_folders(bob), 0);
    assert_int_equal(modseq_of(bob), 0);

    assert_int_equal(folders_create_defaults(conn, 999999, "en"), FOLDERS_ENOTFOUND);
    assert_int_equal(PQtransactionStatus(conn), PQTRANS_IDLE);
}

static void test_defaults_localised(void **state)
{
    struct folder f;
    assert_int_equal(folders_create_defaults(conn, bob, "de-AT"), 12);
    assert_int_equal(folders_find_role(conn, bob, FOLDER_ROLE_INBOX, &f), 0);
    assert_string_equal(f.path, "INBOX");
    assert_int_equal(folders_find_role(conn, bob, FOLDER_ROLE_DRAFTS, &f), 0);
    assert_string_equal(f.name, "Entw\xc3\xbcrfe");
    assert_int_equal(folders_find_role(conn, bob, FOLDER_ROLE_TRASH, &f), 0);
    assert_string_equal(f.name, "Papierkorb");
    assert_int_equal(folders_find_role(conn, bob, FOLDER_ROLE_EVENTS, &f), 0);
    assert_string_equal(f.name, "Kalender");
    assert_int_equal(f.kind, FOLDER_KIND_EVENTS);
    /* The role is found whatever the name; the name is found by path. */
    assert_int_equal(folders_find_path(conn, bob, "Kalender", &f), 0);
    assert_int_equal(f.role, FOLDER_ROLE_EVENTS);

    long long carol = bare_account("carol@example.com");
    assert_int_equal(folders_create_defaults(conn, carol, "FR_fr.UTF-8"), 12);
    assert_int_equal(folders_find_role(conn, carol, FOLDER_ROLE_SENT, &f), 0);
    assert_string_equal(f.name, "Envoy\xc3\xa9s");
    assert_int_equal(folders_find_role(conn, carol, FOLDER_ROLE_TASKS, &f), 0);
    assert_string_equal(f.name, "Tâches");
    assert_int_equal(folders_find_role(conn, carol, FOLDER_ROLE_EVENTS, &f), 0);
    assert_string_equal(f.name, "Calendrier");

    /* Unknown or missing language: English. */
    long long dave = bare_account("dave@example.com");
    assert_int_equal(folders_create_defaults(conn, dave, "xx-YY"), 12);
    assert_int_equal(folders_find_role(conn, dave, FOLDER_ROLE_JUNK, &f), 0);
    assert_string_equal(f.name, "Junk");
    long long erin = bare_account("erin@example.com");
    assert_int_equal(folders_create_defaults(conn, erin, NULL), 12);
    assert_int_equal(folders_find_role(conn, erin, FOLDER_ROLE_EVENTS, &f), 0);
    assert_string_equal(f.name, "Calendar");
    long long finn = bare_account("finn@example.com");
    assert_int_equal(folders_create_defaults(conn, finn, "deutsch-but-longer-than-a-tag"), 12);
    assert_int_equal(folders_find_role(conn, finn, FOLDER_ROLE_EVENTS, &f), 0);
    assert_string_equal(f.name, "Calendar");
}

static void test_defaults_existing(void **state)
{
    /* A role-less mail "Sent" is adopted; a mail folder called "Notes" is not
     * a notes folder, so the notes folder becomes "Notes 2". */
    struct folder sent, notes, f;
    create_ok(alice, "Sent", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, &sent);
    create_ok(alice, "notes", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, &notes);
    create_ok(alice, "Calendar", FOLDER_KIND_EVENTS, FOLDER_ROLE_EVENTS, NULL);
    long long before = modseq_of(alice);

    assert_int_equal(folders_create_defaults(conn, alice, "en"), 11);
    assert_int_equal(folders_find_role(conn, alice, FOLDER_ROLE_SENT, &f), 0);
    assert_int_equal(f.id, sent.id);
    assert_true(f.highest_modseq > before);
    assert_int_equal(folders_find_role(conn, alice, FOLDER_ROLE_NOTES, &f), 0);
    assert_string_equal(f.path, "Notes 2");
    assert_int_equal(f.kind, FOLDER_KIND_NOTES);
    assert_int_equal(folders_get(conn, notes.id, &f), 0);
    assert_int_equal(f.role, FOLDER_ROLE_NONE);
    assert_int_equal(count_folders(alice), 13);
    assert_int_equal(modseq_of(alice), before + 11);

    /* In the caller's transaction: rolled back with it. */
    assert_int_equal(db_begin(conn), 0);
    assert_int_equal(folders_create_defaults(conn, bob, "en"), 12);
    assert_int_equal(PQtransactionStatus(conn), PQTRANS_INTRANS);
    assert_int_equal(count_folders(bob), 12);
    db_rollback(conn);
    assert_int_equal(count_folders(bob), 0);
    assert_int_equal(modseq_of(bob), 0);
}

/* ---- create and look up ---- */

static void test_create(void **state)
{
    char err[256];
    struct folder c, a, b, f;
    create_ok(alice, "A/B/C", FOLDER_KIND_EVENTS, FOLDER_ROLE_NONE, &c);
    assert_string_equal(c.path, "A/B/C");
    assert_string_equal(c.name, "C");
    assert_int_equal(c.kind, FOLDER_KIND_EVENTS);
    assert_int_equal(c.account_id, alice);
    /* RFC 3501 §6.3.3: the superior levels were created, as mail folders. */
    a = get_path(alice, "A");
    b = get_path(alice, "A/B");
    assert_int_equal(a.parent_id, 0);
    assert_int_equal(b.parent_id, a.id);
    assert_int_equal(c.parent_id, b.id);
    assert_int_equal(a.kind, FOLDER_KIND_MAIL);
    assert_int_equal(b.kind, FOLDER_KIND_MAIL);
    assert_string_equal(b.name, "B");
    /* Each creation took a modseq. */
    assert_int_equal(modseq_of(alice), 3);
    assert_int_equal(a.highest_modseq, 1);
    assert_int_equal(b.highest_modseq, 2);
    assert_int_equal(c.highest_modseq, 3);
    assert_true(a.uidvalidity < b.uidvalidity && b.uidvalidity < c.uidvalidity);

    assert_int_equal(folders_get(conn, c.id, &f), 0);
    assert_memory_equal(&f, &c, sizeof f);
    assert_int_equal(folders_get(conn, 424242, &f), FOLDERS_ENOTFOUND);

    /* A sibling below an existing parent creates only itself. */
    create_ok(alice, "A/B/D", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, NULL);
    assert_int_equal(count_folders(alice), 4);
    assert_int_equal(modseq_of(alice), 4);

    /* Duplicates, also differing only in case at any level. */
    err[0] = '\0';
    assert_int_equal(
        folders_create(conn, alice, "A/B/C", FOLDER_KIND_MAIL, 0, NULL, err, sizeof err),
        FOLDERS_EEXIST);
    assert_contains(err, "exists");
    assert_int_equal(folders_create(conn, alice, "A/b", FOLDER_KIND_MAIL, 0, NULL, err, sizeof err),
                     FOLDERS_EEXIST);
    assert_int_equal(
        folders_create(conn, alice, "a/x/y", FOLDER_KIND_MAIL, 0, NULL, err, sizeof err),
        FOLDERS_EEXIST);
    assert_int_equal(folders_create(conn, alice, "A", FOLDER_KIND_MAIL, 0, NULL, err, sizeof err),
                     FOLDERS_EEXIST);
    /* Nothing half-written, no modseq consumed. */
    assert_int_equal(count_folders(alice), 4);
    assert_int_equal(modseq_of(alice), 4);
    assert_int_equal(PQtransactionStatus(conn), PQTRANS_IDLE);

    /* Lookups are case-sensitive. */
    assert_int_equal(folders_find_path(conn, alice, "a/b/c", &f), FOLDERS_ENOTFOUND);
    assert_int_equal(folders_find_path(conn, alice, "A/B/C", &f), 0);
    assert_int_equal(f.id, c.id);
    assert_int_equal(folders_find_path(conn, bob, "A/B/C", &f), FOLDERS_ENOTFOUND);
    assert_int_equal(folders_find_path(conn, alice, "A//B", &f), FOLDERS_ENOTFOUND);
    assert_int_equal(folders_find_path(conn, alice, NULL, &f), FOLDERS_ENOTFOUND);
    assert_int_equal(folders_find_path(conn, alice, "A/B/C", NULL), 0);

    /* Another account has its own namespace. */
    create_ok(bob, "A/B/C", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, NULL);

    /* UTF-8 names; case folding is ASCII only. */
    create_ok(alice, "Calend\xc3\xa1rio", FOLDER_KIND_EVENTS, FOLDER_ROLE_NONE, &f);
    assert_string_equal(f.name, "Calend\xc3\xa1rio");
    create_ok(alice, "Über", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, NULL);
    create_ok(alice, "über", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, NULL);

    /* Validation. */
    err[0] = '\0';
    assert_int_equal(
        folders_create(conn, alice, "bad/\x01", FOLDER_KIND_MAIL, 0, NULL, err, sizeof err),
        FOLDERS_EINVAL);
    assert_contains(err, "control");
    assert_int_equal(
        folders_create(conn, alice, "X", (enum folder_kind)42, 0, NULL, err, sizeof err),
        FOLDERS_EINVAL);
    assert_int_equal(folders_create(conn, alice, "X", FOLDER_KIND_MAIL, (enum folder_role)42, NULL,
                                    err, sizeof err),
                     FOLDERS_EINVAL);
    err[0] = '\0';
    assert_int_equal(folders_create(conn, alice, "Cal", FOLDER_KIND_MAIL, FOLDER_ROLE_EVENTS, NULL,
                                    err, sizeof err),
                     FOLDERS_EINVAL);
    assert_contains(err, "kind events");
    assert_int_equal(folders_create(conn, alice, "Other", FOLDER_KIND_MAIL, FOLDER_ROLE_INBOX, NULL,
                                    err, sizeof err),
                     FOLDERS_EINVAL);
    assert_int_equal(folders_create(conn, 999999, "X", FOLDER_KIND_MAIL, 0, NULL, err, sizeof err),
                     FOLDERS_ENOTFOUND);

    /* Roles are unique per account. */
    create_ok(alice, "Cal", FOLDER_KIND_EVENTS, FOLDER_ROLE_EVENTS, NULL);
    err[0] = '\0';
    assert_int_equal(folders_create(conn, alice, "Cal2", FOLDER_KIND_EVENTS, FOLDER_ROLE_EVENTS,
                                    NULL, err, sizeof err),
                     FOLDERS_EEXIST);
    assert_contains(err, "Cal");
    assert_int_equal(folders_find_role(conn, alice, FOLDER_ROLE_EVENTS, &f), 0);
    assert_string_equal(f.path, "Cal");
    assert_int_equal(folders_find_role(conn, alice, FOLDER_ROLE_SENT, &f), FOLDERS_ENOTFOUND);
    assert_int_equal(folders_find_role(conn, alice, FOLDER_ROLE_NONE, &f), FOLDERS_ENOTFOUND);
}

static void test_inbox_case(void **state)
{
    char err[256];
    struct folder inbox, sub, f;
    create_ok(alice, "inbox", FOLDER_KIND_MAIL, FOLDER_ROLE_INBOX, &inbox);
    assert_string_equal(inbox.path, "INBOX");
    assert_string_equal(inbox.name, "INBOX");
    create_ok(alice, "Inbox/Sub", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, &sub);
    assert_string_equal(sub.path, "INBOX/Sub");
    assert_int_equal(sub.parent_id, inbox.id);
    assert_int_equal(count_folders(alice), 2);

    assert_int_equal(folders_find_path(conn, alice, "iNbOx", &f), 0);
    assert_int_equal(f.id, inbox.id);
    assert_int_equal(folders_find_path(conn, alice, "INBOX/Sub", &f), 0);
    assert_int_equal(folders_find_path(conn, alice, "inbox/Sub", &f), 0);
    assert_int_equal(f.id, sub.id);
    /* Only the first segment is special. */
    assert_int_equal(folders_find_path(conn, alice, "INBOX/sub", &f), FOLDERS_ENOTFOUND);
    assert_int_equal(
        folders_create(conn, alice, "INBOX", FOLDER_KIND_MAIL, 0, NULL, err, sizeof err),
        FOLDERS_EEXIST);
}

static void test_create_in_transaction(void **state)
{
    char err[256];
    /* Inside the caller's transaction a failed call undoes only itself. */
    assert_int_equal(db_begin(conn), 0);
    create_ok(alice, "Kept", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, NULL);
    assert_int_equal(
        folders_create(conn, alice, "kept/x", FOLDER_KIND_MAIL, 0, NULL, err, sizeof err),
        FOLDERS_EEXIST);
    assert_int_equal(PQtransactionStatus(conn), PQTRANS_INTRANS);
    create_ok(alice, "Kept/Too", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, NULL);
    assert_int_equal(db_commit(conn), 0);
    assert_int_equal(count_folders(alice), 2);
    get_path(alice, "Kept/Too");

    /* A failed transaction is refused, not made worse. */
    assert_int_equal(db_begin(conn), 0);
    PGresult *r = PQexec(conn, "SELECT 1/0");
    PQclear(r);
    err[0] = '\0';
    assert_int_equal(folders_create(conn, alice, "Y", FOLDER_KIND_MAIL, 0, NULL, err, sizeof err),
                     -1);
    assert_contains(err, "transaction");
    db_rollback(conn);
}

static void test_uidvalidity_recreate(void **state)
{
    /* RFC 3501 §2.3.1.1: a re-created folder gets a new UIDVALIDITY, even
     * within the same second. */
    char err[256];
    struct folder first, second;
    create_ok(alice, "Box", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, &first);
    assert_int_equal(folders_delete(conn, alice, "Box", err, sizeof err), 0);
    create_ok(alice, "Box", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, &second);
    assert_true(second.uidvalidity > first.uidvalidity);
    assert_true(second.id != first.id);
    /* Derived from the clock. */
    long long now = num(conn, "SELECT floor(extract(epoch FROM now()))::bigint", NULL, NULL);
    assert_true((long long)first.uidvalidity >= now - 60);
}

/* ---- rename ---- */

static void test_rename(void **state)
{
    char err[256];
    struct folder b, c, d, x, f;
    create_ok(alice, "A/B/C", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, &c);
    create_ok(alice, "A/B/D", FOLDER_KIND_CONTACTS, FOLDER_ROLE_CONTACTS, &d);
    create_ok(alice, "A/X", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, &x);
    /* Names sharing the prefix "A" byte-wise but not path-wise. */
    create_ok(alice, "A B", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, NULL);
    create_ok(alice, "AB/C", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, NULL);
    create_ok(alice, "A.B", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, NULL);
    b = get_path(alice, "A/B");
    long long before = modseq_of(alice);

    /* A subtree moves to a new parent that does not exist yet. */
    assert_int_equal(folders_rename(conn, alice, "A/B", "Z/Y", err, sizeof err), 0);
    struct folder z = get_path(alice, "Z");
    f = get_path(alice, "Z/Y");
    assert_int_equal(f.id, b.id);
    assert_int_equal(f.parent_id, z.id);
    assert_string_equal(f.name, "Y");
    assert_int_equal(f.uidvalidity, b.uidvalidity);
    long long m = f.highest_modseq;
    assert_int_equal(m, before + 2); /* one for creating Z, one for the move */
    assert_int_equal(modseq_of(alice), m);
    f = get_path(alice, "Z/Y/C");
    assert_int_equal(f.id, c.id);
    assert_int_equal(f.parent_id, b.id);
    assert_int_equal(f.highest_modseq, m);
    f = get_path(alice, "Z/Y/D");
    assert_int_equal(f.id, d.id);
    assert_int_equal(f.role, FOLDER_ROLE_CONTACTS);
    assert_int_equal(f.highest_modseq, m);
    assert_int_equal(folders_find_path(conn, alice, "A/B", NULL), FOLDERS_ENOTFOUND);
    assert_int_equal(folders_find_path(conn, alice, "A/B/C", NULL), FOLDERS_ENOTFOUND);
    /* Untouched neighbours. */
    f = get_path(alice, "A/X");
    assert_int_equal(f.highest_modseq, x.highest_modseq);
    get_path(alice, "A B");
    get_path(alice, "AB/C");
    get_path(alice, "A.B");

    /* Rename a top-level folder with everything below. */
    assert_int_equal(folders_rename(conn, alice, "Z", "Zed", err, sizeof err), 0);
    f = get_path(alice, "Zed/Y/C");
    assert_int_equal(f.id, c.id);
    assert_int_equal(folders_find_path(conn, alice, "Z/Y/C", NULL), FOLDERS_ENOTFOUND);
    /* ... and the prefix-sharing neighbours of "A" stay when "A" moves. */
    assert_int_equal(folders_rename(conn, alice, "A", "Q/A", err, sizeof err), 0);
    get_path(alice, "Q/A/X");
    get_path(alice, "A B");
    get_path(alice, "AB/C");
    get_path(alice, "A.B");
    assert_int_equal(count_folders(alice), 11);

    /* Case-only rename of a folder is fine. */
    assert_int_equal(folders_rename(conn, alice, "Q/A/X", "Q/A/x", err, sizeof err), 0);
    get_path(alice, "Q/A/x");

    /* Refusals. */
    long long ms = modseq_of(alice);
    err[0] = '\0';
    assert_int_equal(folders_rename(conn, alice, "Zed", "Zed/Y/C/Sub", err, sizeof err),
                     FOLDERS_EINVAL);
    assert_contains(err, "under itself");
    assert_int_equal(folders_rename(conn, alice, "Zed", "Zed", err, sizeof err), FOLDERS_EEXIST);
    assert_int_equal(folders_rename(conn, alice, "Zed/Y", "Q/A/x", err, sizeof err),
                     FOLDERS_EEXIST);
    assert_int_equal(folders_rename(conn, alice, "Zed/Y", "q/New", err, sizeof err),
                     FOLDERS_EEXIST); /* would create "q" next to "Q" */
    assert_int_equal(folders_rename(conn, alice, "Zed/Y", "A b", err, sizeof err),
                     FOLDERS_EEXIST); /* "A B" differs only in case */
    assert_int_equal(folders_rename(conn, alice, "Nope", "Other", err, sizeof err),
                     FOLDERS_ENOTFOUND);
    assert_int_equal(folders_rename(conn, alice, "Zed", "", err, sizeof err), FOLDERS_EINVAL);
    assert_int_equal(folders_rename(conn, bob, "Zed", "Zed2", err, sizeof err), FOLDERS_ENOTFOUND);
    assert_int_equal(modseq_of(alice), ms);
    get_path(alice, "Zed/Y/C");
    assert_int_equal(PQtransactionStatus(conn), PQTRANS_IDLE);
}

static void test_rename_limits(void **state)
{
    char err[256];
    char name255[256], path[1100];
    memset(name255, 'n', 255);
    name255[255] = '\0';
    /* "S/<255>/<255>/<255>" is 1 + 3 * 256 = 769 bytes; moving S under a
     * 255-byte name would make it 1025. */
    snprintf(path, sizeof path, "S/%s/%s/%s", name255, name255, name255);
    create_ok(alice, path, FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, NULL);
    snprintf(path, sizeof path, "%s/S", name255);
    err[0] = '\0';
    assert_int_equal(folders_rename(conn, alice, "S", path, err, sizeof err), FOLDERS_EINVAL);
    assert_contains(err, "longer");
    /* Just fits: 253 + 1 + 769 = 1023. */
    snprintf(path, sizeof path, "%.253s/S", name255);
    assert_int_equal(folders_rename(conn, alice, "S", path, err, sizeof err), 0);

    /* Depth: a chain of 60 levels from D, moved 5 levels down, is 65 deep. */
    char deep[400];
    size_t n = 0;
    for (int i = 0; i < 60; i++)
        n += (size_t)snprintf(deep + n, sizeof deep - n, i ? "/d" : "D");
    create_ok(alice, deep, FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, NULL);
    err[0] = '\0';
    assert_int_equal(folders_rename(conn, alice, "D", "a/b/c/d/e/D", err, sizeof err),
                     FOLDERS_EINVAL);
    assert_contains(err, "deeper");
    assert_int_equal(folders_find_path(conn, alice, "a", NULL), FOLDERS_ENOTFOUND);
    /* 64 levels exactly. */
    assert_int_equal(folders_rename(conn, alice, "D", "a/b/c/d/D", err, sizeof err), 0);
}

static void test_rename_utf8(void **state)
{
    char err[256];
    /* substr() counts characters: multi-byte prefixes must not shift. */
    create_ok(alice, "\xc3\x84rger/\xc3\xb6l/x", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, NULL);
    assert_int_equal(
        folders_rename(conn, alice, "\xc3\x84rger", "\xe2\x82\xac/Fr\xc3\xbcher", err, sizeof err),
        0);
    struct folder f = get_path(alice, "\xe2\x82\xac/Fr\xc3\xbcher/\xc3\xb6l/x");
    assert_string_equal(f.name, "x");
}

/* ---- delete and tombstones ---- */

struct tombs {
    struct tombstone t[16];
    int n;
};

static int collect_tomb(const struct tombstone *t, void *ctx)
{
    struct tombs *s = ctx;
    if (s->n < 16)
        s->t[s->n] = *t;
    s->n++;
    return 0;
}

static void test_delete(void **state)
{
    char err[256];
    struct folder p, q, r, s, px, inbox;
    create_ok(alice, "INBOX", FOLDER_KIND_MAIL, FOLDER_ROLE_INBOX, &inbox);
    create_ok(alice, "INBOX/Keep", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, NULL);
    create_ok(alice, "P/Q/R", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, &r);
    create_ok(alice, "P/S", FOLDER_KIND_TASKS, FOLDER_ROLE_TASKS, &s);
    create_ok(alice, "PX", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, &px);
    p = get_path(alice, "P");
    q = get_path(alice, "P/Q");
    assert_int_equal(folders_subscribe(conn, alice, r.id, true), 0);
    assert_int_equal(folders_subscribe(conn, bob, q.id, true), 0);
    long long before = modseq_of(alice);

    assert_int_equal(folders_delete(conn, alice, "P", err, sizeof err), 0);
    assert_int_equal(modseq_of(alice), before + 1);
    assert_int_equal(folders_find_path(conn, alice, "P", NULL), FOLDERS_ENOTFOUND);
    assert_int_equal(folders_find_path(conn, alice, "P/Q/R", NULL), FOLDERS_ENOTFOUND);
    assert_int_equal(folders_get(conn, s.id, NULL), FOLDERS_ENOTFOUND);
    assert_int_equal(folders_get(conn, px.id, NULL), 0);
    assert_int_equal(folders_find_role(conn, alice, FOLDER_ROLE_TASKS, NULL), FOLDERS_ENOTFOUND);
    assert_int_equal(count_folders(alice), 3);
    /* Subscriptions went with the folders. */
    assert_int_equal(num(conn, "SELECT count(*) FROM subscriptions", NULL, NULL), 0);

    /* One tombstone per folder, all at the deletion's modseq. */
    struct tombs t = {0};
    assert_int_equal(changes_tombstones_since(conn, alice, before, collect_tomb, &t), 0);
    assert_int_equal(t.n, 4);
    long long want_ids[] = {p.id, q.id, r.id, s.id};
    long long want_parent[] = {0, p.id, q.id, p.id};
    for (int i = 0; i < 4; i++) {
        bool found = false;
        for (int j = 0; j < t.n; j++) {
            if (t.t[j].object_id != want_ids[i])
                continue;
            found = true;
            assert_string_equal(t.t[j].kind, "folder");
            assert_int_equal(t.t[j].modseq, before + 1);
            assert_int_equal(t.t[j].folder_id, want_parent[i]);
            assert_int_equal(t.t[j].uid, 0);
            assert_int_equal(t.t[j].account_id, alice);
            assert_true(t.t[j].deleted_at > 1600000000);
        }
        if (!found)
            fail_msg("no tombstone for folder %lld", want_ids[i]);
    }
    /* Nothing before it. */
    t.n = 0;
    assert_int_equal(changes_tombstones_since(conn, alice, before + 1, collect_tomb, &t), 0);
    assert_int_equal(t.n, 0);

    /* The INBOX stays; its children may go. */
    long long ms = modseq_of(alice);
    err[0] = '\0';
    assert_int_equal(folders_delete(conn, alice, "inbox", err, sizeof err), FOLDERS_EINVAL);
    assert_contains(err, "INBOX");
    assert_int_equal(modseq_of(alice), ms);
    assert_int_equal(folders_get(conn, inbox.id, NULL), 0);
    assert_int_equal(folders_delete(conn, alice, "INBOX/Keep", err, sizeof err), 0);

    assert_int_equal(folders_delete(conn, alice, "P", err, sizeof err), FOLDERS_ENOTFOUND);
    assert_int_equal(folders_delete(conn, alice, "bad//path", err, sizeof err), FOLDERS_ENOTFOUND);
    assert_int_equal(folders_delete(conn, bob, "PX", err, sizeof err), FOLDERS_ENOTFOUND);
    assert_int_equal(PQtransactionStatus(conn), PQTRANS_IDLE);
}

/* ---- listing ---- */

static void test_list(void **state)
{
    char err[256];
    create_ok(alice, "Z", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, NULL);
    create_ok(alice, "A B", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, NULL);
    create_ok(alice, "A/B/C", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, NULL);
    create_ok(alice, "A/Ab", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, NULL);
    create_ok(alice, "\xc3\x84", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, NULL);
    create_ok(alice, "A!", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, NULL);
    create_ok(bob, "Bob's", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, NULL);

    struct seen s;
    list_all(alice, &s);
    static const char *const order[] = {"A", "A/Ab", "A/B", "A/B/C", "A B", "A!", "Z", "\xc3\x84"};
    assert_int_equal(s.n, 8);
    for (int i = 0; i < 8; i++)
        if (strcmp(s.f[i].path, order[i]) != 0)
            fail_msg("position %d: %s, want %s", i, s.f[i].path, order[i]);

    memset(&s, 0, sizeof s);
    s.stop_after = 3;
    assert_int_equal(folders_list(conn, alice, collect, &s, err, sizeof err), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(PQtransactionStatus(conn), PQTRANS_IDLE);

    list_all(999999, &s);
    assert_int_equal(s.n, 0);
    assert_int_equal(folders_list(conn, alice, NULL, NULL, err, sizeof err), -1);
}

/* ---- subscriptions ---- */

static void test_subscriptions(void **state)
{
    struct folder mine, other, shared;
    create_ok(alice, "Mine", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, &mine);
    create_ok(alice, "Other", FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, &other);
    create_ok(bob, "Shared/Cal", FOLDER_KIND_EVENTS, FOLDER_ROLE_NONE, &shared);

    assert_int_equal(folders_subscribe(conn, alice, shared.id, true), 0);
    assert_int_equal(folders_subscribe(conn, alice, other.id, true), 0);
    assert_int_equal(folders_subscribe(conn, alice, mine.id, true), 0);
    assert_int_equal(folders_subscribe(conn, alice, mine.id, true), 0); /* idempotent */

    struct seen s = {0};
    assert_int_equal(folders_subscriptions(conn, alice, collect, &s), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.f[0].path, "Mine");
    assert_string_equal(s.f[1].path, "Other");
    assert_string_equal(s.f[2].path, "Shared/Cal");
    assert_int_equal(s.f[2].account_id, bob);
    assert_int_equal(s.f[2].kind, FOLDER_KIND_EVENTS);

    assert_int_equal(folders_subscribe(conn, alice, other.id, false), 0);
    assert_int_equal(folders_subscribe(conn, alice, other.id, false), 0);
    memset(&s, 0, sizeof s);
    assert_int_equal(folders_subscriptions(conn, alice, collect, &s), 0);
    assert_int_equal(s.n, 2);
    memset(&s, 0, sizeof s);
    assert_int_equal(folders_subscriptions(conn, bob, collect, &s), 0);
    assert_int_equal(s.n, 0);

    assert_int_equal(folders_subscribe(conn, alice, 424242, true), FOLDERS_ENOTFOUND);
    assert_int_equal(folders_subscribe(conn, alice, 424242, false), FOLDERS_ENOTFOUND);
    assert_int_equal(folders_subscribe(conn, 999999, mine.id, true), FOLDERS_ENOTFOUND);
    assert_int_equal(folders_subscribe(conn, 999999, mine.id, false), FOLDERS_ENOTFOUND);
    /* Subscriptions are not changes of the tree. */
    long long ms = modseq_of(alice);
    assert_int_equal(folders_subscribe(conn, alice, other.id, true), 0);
    assert_int_equal(modseq_of(alice), ms);
    assert_int_equal(folders_subscriptions(conn, alice, NULL, NULL), -1);
}

/* ---- the change sequence ---- */

static void test_modseq(void **state)
{
    long long m = 0;
    /* Only inside a transaction. */
    assert_int_equal(changes_next_modseq(conn, alice, &m), CHANGES_EINVAL);
    assert_int_equal(db_begin(conn), 0);
    assert_int_equal(changes_next_modseq(conn, alice, &m), 0);
    assert_int_equal(m, 1);
    assert_int_equal(changes_next_modseq(conn, alice, &m), 0);
    assert_int_equal(m, 2);
    assert_int_equal(changes_next_modseq(conn, 999999, &m), CHANGES_ENOTFOUND);
    assert_int_equal(db_commit(conn), 0);
    assert_int_equal(modseq_of(alice), 2);
    assert_int_equal(modseq_of(bob), 0);
    assert_int_equal(changes_current_modseq(conn, 999999, &m), CHANGES_ENOTFOUND);

    /* Rolled back: the value is not seen. */
    assert_int_equal(db_begin(conn), 0);
    assert_int_equal(changes_next_modseq(conn, alice, &m), 0);
    assert_int_equal(m, 3);
    db_rollback(conn);
    assert_int_equal(modseq_of(alice), 2);
}

struct bumper {
    const char *dbname;
    long long account_id;
    pthread_barrier_t *barrier;
    long long got[200];
    int n;
    char err[256];
};

static void *bumper_main(void *arg)
{
    struct bumper *b = arg;
    char ci[2048];
    testdb_conninfo(b->dbname, ci, sizeof ci);
    PGconn *c = db_connect(ci, 20000, b->err, sizeof b->err);
    pthread_barrier_wait(b->barrier);
    if (c == NULL)
        return NULL;
    for (int i = 0; i < 200; i++) {
        long long m;
        if (db_begin(c) != 0 || changes_next_modseq(c, b->account_id, &m) != 0 ||
            db_commit(c) != 0) {
            snprintf(b->err, sizeof b->err, "%s", PQerrorMessage(c));
            break;
        }
        b->got[b->n++] = m;
    }
    PQfinish(c);
    return NULL;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static void test_modseq_concurrent(void **state)
{
    enum { N = 2 };
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, N);
    struct bumper *b = calloc(N, sizeof *b);
    assert_non_null(b);
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        b[i].dbname = testdb_name();
        b[i].account_id = alice;
        b[i].barrier = &barrier;
        assert_int_equal(pthread_create(&th[i], NULL, bumper_main, &b[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&barrier);

    long long all[N * 200];
    int n = 0;
    for (int i = 0; i < N; i++) {
        if (b[i].n != 200)
            fail_msg("connection %d: %d values (%s)", i, b[i].n, b[i].err);
        /* Each connection sees its own values strictly increase. */
        for (int j = 1; j < b[i].n; j++)
            assert_true(b[i].got[j] > b[i].got[j - 1]);
        memcpy(all + n, b[i].got, sizeof(long long) * (size_t)b[i].n);
        n += b[i].n;
    }
    free(b);
    /* Together: never the same value twice, no gaps. */
    qsort(all, (size_t)n, sizeof all[0], cmp_ll);
    for (int i = 0; i < n; i++)
        assert_int_equal(all[i], i + 1);
    assert_int_equal(modseq_of(alice), N * 200);
}

static void test_tombstones(void **state)
{
    long long m1, m2, m3;
    assert_int_equal(db_begin(conn), 0);
    assert_int_equal(changes_next_modseq(conn, alice, &m1), 0);
    assert_int_equal(changes_tombstone(conn, alice, m1, "message", 11, 5, 100), 0);
    assert_int_equal(changes_tombstone(conn, alice, m1, "message", 10, 5, 99), 0);
    assert_int_equal(changes_next_modseq(conn, alice, &m2), 0);
    assert_int_equal(changes_tombstone(conn, alice, m2, "item", 12, 6, 0), 0);
    assert_int_equal(changes_next_modseq(conn, alice, &m3), 0);
    assert_int_equal(changes_tombstone(conn, alice, m3, "folder", 6, 0, 0), 0);
    assert_int_equal(db_commit(conn), 0);

    /* Validation. */
    assert_int_equal(changes_tombstone(conn, alice, m1, "mail", 1, 0, 0), CHANGES_EINVAL);
    assert_int_equal(changes_tombstone(conn, alice, m1, NULL, 1, 0, 0), CHANGES_EINVAL);
    assert_int_equal(changes_tombstone(conn, alice, 0, "item", 1, 0, 0), CHANGES_EINVAL);
    assert_int_equal(changes_tombstone(conn, alice, m1, "item", 0, 0, 0), CHANGES_EINVAL);
    assert_int_equal(changes_tombstone(conn, alice, m1, "item", 1, -1, 0), CHANGES_EINVAL);
    assert_int_equal(changes_tombstone(conn, 999999, 1, "item", 1, 0, 0), CHANGES_ENOTFOUND);

    struct tombs t = {0};
    assert_int_equal(changes_tombstones_since(conn, alice, 0, collect_tomb, &t), 0);
    assert_int_equal(t.n, 4);
    /* modseq order, ties by object id */
    assert_int_equal(t.t[0].object_id, 10);
    assert_int_equal(t.t[0].uid, 99);
    assert_int_equal(t.t[0].folder_id, 5);
    assert_int_equal(t.t[1].object_id, 11);
    assert_string_equal(t.t[2].kind, "item");
    assert_int_equal(t.t[2].uid, 0);
    assert_int_equal(t.t[3].modseq, m3);
    assert_int_equal(t.t[3].folder_id, 0);

    memset(&t, 0, sizeof t);
    assert_int_equal(changes_tombstones_since(conn, alice, m1, collect_tomb, &t), 0);
    assert_int_equal(t.n, 2);
    memset(&t, 0, sizeof t);
    assert_int_equal(changes_tombstones_since(conn, bob, 0, collect_tomb, &t), 0);
    assert_int_equal(t.n, 0);
    assert_int_equal(changes_tombstones_since(conn, 999999, 0, collect_tomb, &t),
                     CHANGES_ENOTFOUND);
    assert_int_equal(changes_tombstones_since(conn, alice, -1, collect_tomb, &t), CHANGES_EINVAL);
    assert_int_equal(changes_tombstones_since(conn, alice, 0, NULL, NULL), CHANGES_EINVAL);
}

static void test_purge(void **state)
{
    long long m;
    assert_int_equal(db_begin(conn), 0);
    for (int i = 1; i <= 5; i++) {
        assert_int_equal(changes_next_modseq(conn, alice, &m), 0);
        assert_int_equal(changes_tombstone(conn, alice, m, "message", i, 1, i), 0);
    }
    assert_int_equal(changes_next_modseq(conn, bob, &m), 0);
    assert_int_equal(changes_tombstone(conn, bob, m, "item", 1, 0, 0), 0);
    assert_int_equal(db_commit(conn), 0);
    /* Alice's first three and bob's one are a month old. */
    char alices[24], bobs[24];
    snprintf(alices, sizeof alices, "%lld", alice);
    snprintf(bobs, sizeof bobs, "%lld", bob);
    sql1(conn,
         "UPDATE tombstones SET deleted_at = now() - interval '30 days'"
         " WHERE (account_id = $1::bigint AND modseq <= 3) OR account_id = $2::bigint",
         alices, bobs);

    long long purged = -1;
    assert_int_equal(changes_purge_tombstones(conn, 7 * 86400, 0, &purged), CHANGES_EINVAL);
    assert_int_equal(changes_purge_tombstones(conn, -1, 10, &purged), CHANGES_EINVAL);
    assert_int_equal(
        changes_purge_tombstones(conn, 7 * 86400, CHANGES_PURGE_BATCH_MAX + 1, &purged),
        CHANGES_EINVAL);
    /* In batches of two: 2, 2, then 0. */
    assert_int_equal(changes_purge_tombstones(conn, 7 * 86400, 2, &purged), 0);
    assert_int_equal(purged, 2);
    assert_int_equal(changes_purge_tombstones(conn, 7 * 86400, 2, &purged), 0);
    assert_int_equal(purged, 2);
    assert_int_equal(changes_purge_tombstones(conn, 7 * 86400, 2, NULL), 0);
    assert_int_equal(changes_purge_tombstones(conn, 7 * 86400, 2, &purged), 0);
    assert_int_equal(purged, 0);
    assert_int_equal(num(conn, "SELECT count(*) FROM tombstones", NULL, NULL), 2);

    /* A client older than the purge must resynchronise; a newer one is told
     * the rest. */
    struct tombs t = {0};
    assert_int_equal(changes_tombstones_since(conn, alice, 2, collect_tomb, &t), CHANGES_EEXPIRED);
    assert_int_equal(t.n, 0);
    assert_int_equal(changes_tombstones_since(conn, alice, 0, collect_tomb, &t), CHANGES_EEXPIRED);
    assert_int_equal(changes_tombstones_since(conn, alice, 3, collect_tomb, &t), 0);
    assert_int_equal(t.n, 2);
    assert_int_equal(t.t[0].modseq, 4);
    memset(&t, 0, sizeof t);
    assert_int_equal(changes_tombstones_since(conn, bob, 0, collect_tomb, &t), CHANGES_EEXPIRED);
    assert_int_equal(changes_tombstones_since(conn, bob, 1, collect_tomb, &t), 0);
    assert_int_equal(t.n, 0);

    /* Age 0 purges everything older than now. */
    assert_int_equal(changes_purge_tombstones(conn, 0, 100, &purged), 0);
    assert_int_equal(purged, 2);
    assert_int_equal(changes_tombstones_since(conn, alice, 4, collect_tomb, &t), CHANGES_EEXPIRED);
    assert_int_equal(changes_tombstones_since(conn, alice, 5, collect_tomb, &t), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_path_check),
        cmocka_unit_test_setup(test_account_add_creates_defaults, setup),
        cmocka_unit_test_setup(test_defaults, setup),
        cmocka_unit_test_setup(test_defaults_localised, setup),
        cmocka_unit_test_setup(test_defaults_existing, setup),
        cmocka_unit_test_setup(test_create, setup),
        cmocka_unit_test_setup(test_inbox_case, setup),
        cmocka_unit_test_setup(test_create_in_transaction, setup),
        cmocka_unit_test_setup(test_uidvalidity_recreate, setup),
        cmocka_unit_test_setup(test_rename, setup),
        cmocka_unit_test_setup(test_rename_limits, setup),
        cmocka_unit_test_setup(test_rename_utf8, setup),
        cmocka_unit_test_setup(test_delete, setup),
        cmocka_unit_test_setup(test_list, setup),
        cmocka_unit_test_setup(test_subscriptions, setup),
        cmocka_unit_test_setup(test_modseq, setup),
        cmocka_unit_test_setup(test_modseq_concurrent, setup),
        cmocka_unit_test_setup(test_tombstones, setup),
        cmocka_unit_test_setup(test_purge, setup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
