/* layer: storage */
/* Tests for storage/acl against a real PostgreSQL.
 *
 * FLOE_TEST_PG holds a libpq connection string for a server where the user
 * may create databases; without it the tests fail. Every run creates its own
 * database (floe_test_acl_<pid>) and drops it at the end.
 *
 * The cast: alice owns the folders; bob and carol are users of example.com,
 * dave of other.org; staff, team and all are groups. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "storage/acl.h"
#include "storage/changes.h"
#include "storage/db.h"
#include "storage/directory.h"
#include "storage/folders.h"
#include "support/testdb.h"

static PGconn *conn; /* to this run's migrated database */

static long long alice, bob, carol, dave, staff, team, all;
static long long example_com, other_org;
static long long shared, sub, deep, private_f; /* alice's folders */

/* ---- helpers ---- */

/* Runs fixed test SQL with up to three bigint parameters, returns the first
 * cell of the first row ("" when none) in a static buffer. */
static const char *sqln(const char *sql, long long a, long long b, long long c, int np)
{
    static char out[512];
    char s[3][24];
    snprintf(s[0], sizeof s[0], "%lld", a);
    snprintf(s[1], sizeof s[1], "%lld", b);
    snprintf(s[2], sizeof s[2], "%lld", c);
    const char *p[] = {s[0], s[1], s[2]};
    PGresult *r = PQexecParams(conn, sql, np, NULL, p, NULL, NULL, 0);
    if (!db_ok(r))
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    snprintf(out, sizeof out, "%s",
             (PQntuples(r) > 0 && PQnfields(r) > 0) ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    return out;
}

/* group_members is written by the group management code; the tests fill it
 * directly. */
static void member(long long group, const char *kind, long long id)
{
    char g[24], m[24];
    snprintf(g, sizeof g, "%lld", group);
    snprintf(m, sizeof m, "%lld", id);
    const char *p[] = {g, kind, m};
    PGresult *r = PQexecParams(conn,
                               "INSERT INTO group_members (group_id, member_kind, member_id)"
                               " VALUES ($1::bigint, $2, $3::bigint)",
                               3, NULL, p, NULL, NULL, 0);
    if (!db_ok(r))
        fail_msg("member: %s", PQresultErrorMessage(r));
    PQclear(r);
}

static void assert_contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) == NULL)
        fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

static long long add_account(const char *address, const char *kind)
{
    char err[256];
    struct dir_account a;
    if (dir_account_add(conn, address, kind, NULL, NULL, false, err, sizeof err) != 0)
        fail_msg("dir_account_add(%s): %s", address, err);
    assert_int_equal(dir_account_find(conn, address, &a, err, sizeof err), 0);
    return a.id;
}

static long long add_folder(long long account_id, const char *path)
{
    char err[256];
    struct folder f;
    if (folders_create(conn, account_id, path, FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, &f, err,
                       sizeof err) != 0)
        fail_msg("folders_create(%s): %s", path, err);
    return f.id;
}

static void set_ok(long long folder, enum acl_grantee_kind kind, long long id, const char *rights)
{
    char err[256] = "";
    int rc = acl_set(conn, folder, kind, id, rights, err, sizeof err);
    if (rc != 0)
        fail_msg("acl_set(%lld, %d, %lld, %s): %d %s", folder, kind, id, rights ? rights : "(null)", rc, err);
}

/* The rights of account on folder, as letters. */
static const char *rights_of(long long folder, long long account)
{
    static char out[12];
    unsigned mask = 0xdead;
    int rc = acl_rights(conn, folder, account, &mask);
    if (rc != 0)
        fail_msg("acl_rights(%lld, %lld): %d %s", folder, account, rc, PQerrorMessage(conn));
    acl_mask_format(mask, out);
    return out;
}

/* ---- setup ---- */

static void quiet_notices(void *arg, const char *message)
{
}

static int group_setup(void **state)
{
    conn = testdb_create("acl");
    /* A statement timeout turns a hang (say, a group cycle) into a failure. */
    PQclear(testdb_exec(conn, "SET statement_timeout = 10000"));
    PQsetNoticeProcessor(conn, quiet_notices, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    testdb_drop(&conn);
    return 0;
}

static int setup(void **state)
{
    PGresult *r =
        PQexec(conn, "TRUNCATE domains, accounts, folders, tombstones RESTART IDENTITY CASCADE");
    assert_true(db_ok(r));
    PQclear(r);
    char err[256];
    assert_int_equal(dir_domain_add(conn, "example.com", err, sizeof err), 0);
    assert_int_equal(dir_domain_add(conn, "other.org", err, sizeof err), 0);
    example_com = atoll(sqln("SELECT id FROM domains WHERE name = 'example.com'", 0, 0, 0, 0));
    other_org = atoll(sqln("SELECT id FROM domains WHERE name = 'other.org'", 0, 0, 0, 0));
    alice = add_account("alice@example.com", NULL);
    bob = add_account("bob@example.com", NULL);
    carol = add_account("carol@example.com", NULL);
    dave = add_account("dave@other.org", NULL);
    staff = add_account("staff@example.com", "group");
    team = add_account("team@example.com", "group");
    all = add_account("all@example.com", "group");
    shared = add_folder(alice, "Shared");
    sub = add_folder(alice, "Shared/Sub");
    deep = add_folder(alice, "Shared/Sub/Deep");
    private_f = add_folder(alice, "Private");
    return 0;
}

/* ---- masks ---- */

static void test_masks(void **state)
{
    assert_int_equal(acl_mask_parse(ACL_RIGHTS), ACL_ALL);
    assert_int_equal(acl_mask_parse(""), 0);
    assert_int_equal(acl_mask_parse("rl"), ACL_L | ACL_R);
    assert_int_equal(acl_mask_parse("llll"), ACL_L);
    assert_int_equal(acl_mask_parse("a"), ACL_A);
    assert_int_equal(acl_mask_parse("e"), ACL_E);
    assert_int_equal(acl_mask_parse("ktx"), ACL_K | ACL_T | ACL_X);
    /* Not rights: other letters, RFC 4314 §2.1.1's obsolete c and d, upper
     * case, spaces, NULL, and too long an input. */
    static const char *const bad[] = {"lrz", "c", "d", "L", " l", "l r", "lr\n", "\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (acl_mask_parse(bad[i]) != ACL_MASK_INVALID)
            fail_msg("accepted \"%s\"", bad[i]);
    assert_int_equal(acl_mask_parse(NULL), ACL_MASK_INVALID);
    char many[ACL_RIGHTS_INPUT_MAX + 2];
    memset(many, 'l', sizeof many - 1);
    many[sizeof many - 1] = '\0';
    assert_int_equal(acl_mask_parse(many), ACL_MASK_INVALID);
    many[ACL_RIGHTS_INPUT_MAX] = '\0';
    assert_int_equal(acl_mask_parse(many), ACL_L);

    char out[12];
    acl_mask_format(ACL_ALL, out);
    assert_string_equal(out, "lrswipkxtea");
    acl_mask_format(ACL_A | ACL_R, out);
    assert_string_equal(out, "ra");
    acl_mask_format(0, out);
    assert_string_equal(out, "");
    acl_mask_format(ACL_ALL | 0x800 | 0x80000000u, out);
    assert_string_equal(out, "lrswipkxtea");
    acl_mask_format(acl_mask_parse("aetxkpiwsrl"), out);
    assert_string_equal(out, "lrswipkxtea");

    enum acl_grantee_kind k;
    assert_int_equal(acl_grantee_kind_parse("group", &k), 0);
    assert_int_equal(k, ACL_GRANTEE_GROUP);
    assert_int_equal(acl_grantee_kind_parse("anyone", &k), 0);
    assert_int_equal(k, ACL_GRANTEE_ANYONE);
    assert_int_equal(acl_grantee_kind_parse("everyone", &k), ACL_EINVAL);
    assert_int_equal(acl_grantee_kind_parse(NULL, &k), ACL_EINVAL);
    assert_string_equal(acl_grantee_kind_str(ACL_GRANTEE_DOMAIN), "domain");
    assert_null(acl_grantee_kind_str((enum acl_grantee_kind)9));
}

/* ---- resolution ---- */

static void test_owner_and_nobody(void **state)
{
    /* The owner has everything, with or without entries. */
    assert_string_equal(rights_of(shared, alice), "lrswipkxtea");
    assert_string_equal(rights_of(deep, alice), "lrswipkxtea");
    /* A top-level folder that inherits grants nothing. */
    assert_string_equal(rights_of(shared, bob), "");
    assert_string_equal(rights_of(deep, bob), "");
    assert_string_equal(rights_of(shared, 0), "");
    assert_string_equal(rights_of(shared, 999999), "");
    set_ok(private_f, ACL_GRANTEE_ANYONE, 0, "lr");
    /* Even a restrictive entry cannot reduce the owner. */
    assert_string_equal(rights_of(private_f, alice), "lrswipkxtea");

    unsigned mask = 7;
    assert_int_equal(acl_rights(conn, 424242, alice, &mask), ACL_ENOTFOUND);
    assert_int_equal(mask, 7);
    assert_false(acl_may(conn, 424242, alice, 0));
    assert_true(acl_may(conn, shared, alice, ACL_ALL));
    assert_false(acl_may(conn, shared, bob, ACL_L));
    assert_true(acl_may(conn, shared, bob, 0));
}

static void test_precedence(void **state)
{
    member(staff, "account", bob);
    set_ok(shared, ACL_GRANTEE_ANYONE, 0, "lrswi");
    set_ok(shared, ACL_GRANTEE_DOMAIN, example_com, "lrs");
    set_ok(shared, ACL_GRANTEE_GROUP, staff, "lrw");
    set_ok(shared, ACL_GRANTEE_ACCOUNT, bob, "l");

    /* Account beats group, even when it grants less. */
    assert_string_equal(rights_of(shared, bob), "l");
    assert_true(acl_may(conn, shared, bob, ACL_L));
    assert_false(acl_may(conn, shared, bob, ACL_L | ACL_R));
    /* Without the account entry, the group applies: group beats domain. */
    set_ok(shared, ACL_GRANTEE_ACCOUNT, bob, "");
    assert_string_equal(rights_of(shared, bob), "lrw");
    /* Carol is in no group: the domain entry beats anyone's wider one. */
    assert_string_equal(rights_of(shared, carol), "lrs");
    /* Dave's domain has no entry: anyone. So have visitors. */
    assert_string_equal(rights_of(shared, dave), "lrswi");
    assert_string_equal(rights_of(shared, 0), "lrswi");
    /* Remove anyone: dave has nothing. */
    set_ok(shared, ACL_GRANTEE_ANYONE, 0, NULL);
    assert_string_equal(rights_of(shared, dave), "");
    /* A group entry for a group bob is not in does not apply. */
    set_ok(shared, ACL_GRANTEE_GROUP, team, "lrswipkxtea");
    assert_string_equal(rights_of(shared, bob), "lrw");
    assert_string_equal(rights_of(shared, carol), "lrs");
}

static void test_group_union_and_nesting(void **state)
{
    /* Union of two groups. */
    member(staff, "account", bob);
    member(team, "account", bob);
    set_ok(shared, ACL_GRANTEE_GROUP, staff, "lr");
    set_ok(shared, ACL_GRANTEE_GROUP, team, "li");
    assert_string_equal(rights_of(shared, bob), "lri");

    /* Nested: carol is in team through all; all's entry counts too. */
    member(all, "group", team);
    member(all, "account", carol);
    set_ok(shared, ACL_GRANTEE_GROUP, all, "lt");
    assert_string_equal(rights_of(shared, carol), "lt");
    /* bob is in staff and team, and in all through team. */
    assert_string_equal(rights_of(shared, bob), "lrit");

    /* Deeper: carol in team only via a chain of groups. */
    long long g1 = add_account("g1@example.com", "group");
    long long g2 = add_account("g2@example.com", "group");
    member(g2, "account", dave);
    member(g1, "group", g2);
    member(team, "group", g1);
    assert_string_equal(rights_of(shared, dave), "lit"); /* team (li) and all (lt) */
}

static void test_group_with_domain(void **state)
{
    /* A group that contains all of other.org. */
    member(staff, "domain", other_org);
    set_ok(shared, ACL_GRANTEE_GROUP, staff, "lrx");
    set_ok(shared, ACL_GRANTEE_DOMAIN, other_org, "l");
    assert_string_equal(rights_of(shared, dave), "lrx"); /* the group beats the domain */
    assert_string_equal(rights_of(shared, bob), "");
    /* ... also nested. */
    member(team, "group", staff);
    set_ok(shared, ACL_GRANTEE_GROUP, team, "lk");
    assert_string_equal(rights_of(shared, dave), "lrkx");
}

static void test_group_cycle(void **state)
{
    /* staff -> team -> all -> staff: resolution must end and union all three. */
    member(staff, "group", team);
    member(team, "group", all);
    member(all, "group", staff);
    member(all, "account", carol);
    member(staff, "group", staff); /* and a group that contains itself */
    set_ok(shared, ACL_GRANTEE_GROUP, staff, "l");
    set_ok(shared, ACL_GRANTEE_GROUP, team, "r");
    set_ok(shared, ACL_GRANTEE_GROUP, all, "w");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_string_equal(rights_of(shared, carol), "lrw");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    if (ms > 2000)
        fail_msg("resolution over a cycle took %.0f ms", ms);
    assert_string_equal(rights_of(shared, bob), "");
}

/* ---- inheritance ---- */

struct entries {
    struct acl_entry e[16];
    int n;
};

static int collect(const struct acl_entry *e, void *ctx)
{
    struct entries *s = ctx;
    if (s->n < 16)
        s->e[s->n] = *e;
    s->n++;
    return 0;
}

static struct entries list_of(long long folder)
{
    struct entries s;
    memset(&s, 0, sizeof s);
    int rc = acl_list(conn, folder, collect, &s);
    if (rc != 0)
        fail_msg("acl_list(%lld): %d", folder, rc);
    return s;
}

static bool inherits(long long folder)
{
    struct folder f;
    assert_int_equal(folders_get(conn, folder, &f), 0);
    return f.acl_inherit;
}

static void test_inheritance(void **state)
{
    set_ok(shared, ACL_GRANTEE_ACCOUNT, bob, "lr");
    set_ok(shared, ACL_GRANTEE_DOMAIN, example_com, "l");
    assert_false(inherits(shared));
    assert_true(inherits(sub));
    /* Children inherit, however deep. */
    assert_string_equal(rights_of(sub, bob), "lr");
    assert_string_equal(rights_of(deep, bob), "lr");
    assert_string_equal(rights_of(deep, carol), "l");
    /* A new folder below inherits too. */
    long long newer = add_folder(alice, "Shared/Sub/Deep/Newer");
    assert_string_equal(rights_of(newer, bob), "lr");
    /* Not across to other trees. */
    assert_string_equal(rights_of(private_f, bob), "");

    struct entries s = list_of(deep);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.e[0].kind, ACL_GRANTEE_ACCOUNT);
    assert_int_equal(s.e[0].grantee_id, bob);
    assert_string_equal(s.e[0].grantee, "bob@example.com");
    assert_int_equal(s.e[0].rights, ACL_L | ACL_R);
    assert_int_equal(s.e[0].folder_id, shared);
    assert_true(s.e[0].inherited);
    assert_int_equal(s.e[1].kind, ACL_GRANTEE_DOMAIN);
    assert_string_equal(s.e[1].grantee, "example.com");
    s = list_of(shared);
    assert_int_equal(s.n, 2);
    assert_false(s.e[0].inherited);
    /* An inheriting top-level folder has no entries; an unknown one is not found. */
    s = list_of(private_f);
    assert_int_equal(s.n, 0);
    assert_int_equal(acl_list(conn, 424242, collect, &s), ACL_ENOTFOUND);
    assert_int_equal(acl_list(conn, shared, NULL, NULL), ACL_EINVAL);

    /* Moving a folder that inherits makes it inherit from its new parent. */
    char err[256];
    assert_int_equal(
        folders_rename(conn, alice, "Shared/Sub/Deep", "Private/Deep", err, sizeof err), 0);
    assert_string_equal(rights_of(deep, bob), "");
    assert_string_equal(rights_of(newer, bob), "");
}

static void test_override_with_copy(void **state)
{
    set_ok(shared, ACL_GRANTEE_ACCOUNT, bob, "lr");
    set_ok(shared, ACL_GRANTEE_ANYONE, 0, "l");
    long long before =
        atoll(sqln("SELECT modseq FROM accounts WHERE id = $1::bigint", alice, 0, 0, 1));

    /* Giving carol rights on Sub copies Shared's entries first... */
    set_ok(sub, ACL_GRANTEE_ACCOUNT, carol, "lrsw");
    assert_false(inherits(sub));
    assert_string_equal(rights_of(sub, carol), "lrsw");
    /* ... so bob and the anyone entry keep their rights there. */
    assert_string_equal(rights_of(sub, bob), "lr");
    assert_string_equal(rights_of(sub, dave), "l");
    /* Deep now inherits from Sub. */
    assert_string_equal(rights_of(deep, carol), "lrsw");
    struct entries s = list_of(deep);
    assert_int_equal(s.n, 3);
    for (int i = 0; i < s.n; i++)
        assert_int_equal(s.e[i].folder_id, sub);
    /* Shared did not change. */
    assert_string_equal(rights_of(shared, carol), "l");
    /* Sub stands on its own: later changes to Shared do not reach it. */
    set_ok(shared, ACL_GRANTEE_ACCOUNT, bob, "lrswipkxtea");
    assert_string_equal(rights_of(shared, bob), "lrswipkxtea");
    assert_string_equal(rights_of(sub, bob), "lr");

    /* The change took a modseq and stamped the folder. */
    long long after =
        atoll(sqln("SELECT modseq FROM accounts WHERE id = $1::bigint", alice, 0, 0, 1));
    assert_int_equal(after, before + 2);
    struct folder f;
    assert_int_equal(folders_get(conn, sub, &f), 0);
    assert_int_equal(f.highest_modseq, before + 1);

    /* Removing an entry on the override: bob falls back to anyone. */
    set_ok(sub, ACL_GRANTEE_ACCOUNT, bob, "");
    assert_string_equal(rights_of(sub, bob), "l");
    /* Removing an entry that does not exist is fine. */
    set_ok(sub, ACL_GRANTEE_ACCOUNT, bob, "");

    /* Removal on an inheriting folder copies first, then removes. */
    set_ok(deep, ACL_GRANTEE_ANYONE, 0, "");
    assert_false(inherits(deep));
    assert_string_equal(rights_of(deep, carol), "lrsw");
    assert_string_equal(rights_of(deep, dave), "");

    /* Back to inheritance. */
    char err[256];
    assert_int_equal(acl_reset_inherit(conn, sub, err, sizeof err), 0);
    assert_true(inherits(sub));
    assert_string_equal(rights_of(sub, bob), "lrswipkxtea");
    assert_string_equal(rights_of(sub, carol), "l");
    s = list_of(sub);
    assert_int_equal(s.n, 2);
    assert_true(s.e[0].inherited);
    /* On a top-level folder: no access for anyone. */
    assert_int_equal(acl_reset_inherit(conn, shared, err, sizeof err), 0);
    assert_string_equal(rights_of(shared, bob), "");
    assert_string_equal(rights_of(sub, bob), "");
    assert_string_equal(rights_of(shared, alice), "lrswipkxtea");
    assert_int_equal(acl_reset_inherit(conn, 424242, err, sizeof err), ACL_ENOTFOUND);
}

static void test_set_errors(void **state)
{
    char err[256];
    set_ok(shared, ACL_GRANTEE_ACCOUNT, bob, "lr");
    long long before =
        atoll(sqln("SELECT modseq FROM accounts WHERE id = $1::bigint", alice, 0, 0, 1));

    err[0] = '\0';
    assert_int_equal(acl_set(conn, shared, ACL_GRANTEE_ACCOUNT, bob, "lrq", err, sizeof err),
                     ACL_EINVAL);
    assert_contains(err, "lrswipkxtea");
    assert_int_equal(acl_set(conn, shared, ACL_GRANTEE_ACCOUNT, bob, "cd", err, sizeof err),
                     ACL_EINVAL);
    assert_int_equal(acl_set(conn, 424242, ACL_GRANTEE_ACCOUNT, bob, "l", err, sizeof err),
                     ACL_ENOTFOUND);
    err[0] = '\0';
    assert_int_equal(acl_set(conn, shared, ACL_GRANTEE_ACCOUNT, 999999, "l", err, sizeof err),
                     ACL_ENOTFOUND);
    assert_contains(err, "unknown account");
    assert_int_equal(acl_set(conn, shared, ACL_GRANTEE_DOMAIN, 999999, "l", err, sizeof err),
                     ACL_ENOTFOUND);
    assert_int_equal(acl_set(conn, shared, ACL_GRANTEE_GROUP, 999999, "l", err, sizeof err),
                     ACL_ENOTFOUND);
    err[0] = '\0';
    assert_int_equal(acl_set(conn, shared, ACL_GRANTEE_GROUP, bob, "l", err, sizeof err),
                     ACL_EINVAL);
    assert_contains(err, "not a group");
    assert_int_equal(acl_set(conn, shared, ACL_GRANTEE_ACCOUNT, staff, "l", err, sizeof err),
                     ACL_EINVAL);
    err[0] = '\0';
    assert_int_equal(acl_set(conn, shared, ACL_GRANTEE_ACCOUNT, alice, "l", err, sizeof err),
                     ACL_EINVAL);
    assert_contains(err, "owner");
    assert_int_equal(acl_set(conn, shared, ACL_GRANTEE_ACCOUNT, 0, "l", err, sizeof err),
                     ACL_EINVAL);
    assert_int_equal(acl_set(conn, shared, (enum acl_grantee_kind)7, bob, "l", err, sizeof err),
                     ACL_EINVAL);
    /* A failed set on an inheriting folder does not leave a copy behind. */
    assert_int_equal(acl_set(conn, sub, ACL_GRANTEE_GROUP, bob, "l", err, sizeof err), ACL_EINVAL);
    assert_true(inherits(sub));

    /* Nothing changed. */
    assert_string_equal(rights_of(shared, bob), "lr");
    assert_string_equal(sqln("SELECT count(*) FROM folder_acl", 0, 0, 0, 0), "1");
    assert_int_equal(
        atoll(sqln("SELECT modseq FROM accounts WHERE id = $1::bigint", alice, 0, 0, 1)), before);
    assert_int_equal(PQtransactionStatus(conn), PQTRANS_IDLE);

    /* Anyone ignores the id; rights are stored canonical. */
    set_ok(shared, ACL_GRANTEE_ANYONE, 12345, "rl");
    assert_string_equal(
        sqln("SELECT rights FROM folder_acl WHERE grantee_kind = 'anyone'", 0, 0, 0, 0), "lr");

    /* Inside the caller's transaction, a failure undoes only itself. */
    assert_int_equal(db_begin(conn), 0);
    set_ok(shared, ACL_GRANTEE_ACCOUNT, carol, "l");
    assert_int_equal(acl_set(conn, shared, ACL_GRANTEE_ACCOUNT, alice, "l", err, sizeof err),
                     ACL_EINVAL);
    assert_int_equal(PQtransactionStatus(conn), PQTRANS_INTRANS);
    assert_int_equal(db_commit(conn), 0);
    assert_string_equal(rights_of(shared, carol), "l");
}

static void test_entries_max(void **state)
{
    /* Fill the folder to the limit directly, then one more through acl_set. */
    PGresult *r = PQexecParams(conn,
                               "INSERT INTO domains (name)"
                               " SELECT 'd' || i || '.example' FROM generate_series(1, $1::int) i",
                               1, NULL, (const char *const[]){"1000"}, NULL, NULL, 0);
    assert_true(db_ok(r));
    PQclear(r);
    char f[24];
    snprintf(f, sizeof f, "%lld", shared);
    r = PQexecParams(conn,
                     "INSERT INTO folder_acl (folder_id, grantee_kind, grantee_id, rights)"
                     " SELECT $1::bigint, 'domain', id, 'l' FROM domains"
                     " WHERE name LIKE 'd%.example'",
                     1, NULL, (const char *const[]){f}, NULL, NULL, 0);
    assert_true(db_ok(r));
    PQclear(r);
    sqln("UPDATE folders SET acl_inherit = false WHERE id = $1::bigint", shared, 0, 0, 1);
    char err[256] = "";
    assert_int_equal(acl_set(conn, shared, ACL_GRANTEE_ACCOUNT, bob, "lr", err, sizeof err),
                     ACL_EINVAL);
    assert_contains(err, "at most");
    assert_string_equal(rights_of(shared, bob), "");
    /* Changing or removing an existing entry still works at the limit. */
    long long d1 = atoll(sqln("SELECT id FROM domains WHERE name = 'd1.example'", 0, 0, 0, 0));
    long long d2 = atoll(sqln("SELECT id FROM domains WHERE name = 'd2.example'", 0, 0, 0, 0));
    set_ok(shared, ACL_GRANTEE_DOMAIN, d1, "lr");
    set_ok(shared, ACL_GRANTEE_DOMAIN, d2, "");
    set_ok(shared, ACL_GRANTEE_ACCOUNT, bob, "lr");
    assert_string_equal(rights_of(shared, bob), "lr");
}

static void test_grantee_deleted(void **state)
{
    char err[256];
    member(staff, "account", bob);
    member(staff, "domain", other_org);
    set_ok(shared, ACL_GRANTEE_ACCOUNT, bob, "lr");
    set_ok(shared, ACL_GRANTEE_GROUP, staff, "l");
    set_ok(shared, ACL_GRANTEE_DOMAIN, other_org, "lr");

    /* A deleted account's entries and memberships go with it. */
    assert_int_equal(dir_account_delete(conn, "bob@example.com", err, sizeof err), 0);
    assert_string_equal(
        sqln("SELECT count(*) FROM folder_acl WHERE grantee_kind = 'account'", 0, 0, 0, 0), "0");
    assert_string_equal(
        sqln("SELECT count(*) FROM group_members WHERE member_kind = 'account'", 0, 0, 0, 0), "0");
    /* So do a domain's. */
    assert_int_equal(dir_domain_delete(conn, "other.org", true, err, sizeof err), 0);
    assert_string_equal(
        sqln("SELECT count(*) FROM folder_acl WHERE grantee_kind = 'domain'", 0, 0, 0, 0), "0");
    assert_string_equal(sqln("SELECT count(*) FROM group_members", 0, 0, 0, 0), "0");
    /* And a group's. */
    assert_int_equal(dir_account_delete(conn, "staff@example.com", err, sizeof err), 0);
    assert_string_equal(sqln("SELECT count(*) FROM folder_acl", 0, 0, 0, 0), "0");

    /* group_members only takes groups as groups. */
    char g[24], m[24];
    snprintf(g, sizeof g, "%lld", carol);
    snprintf(m, sizeof m, "%lld", alice);
    const char *p[] = {g, m};
    PGresult *r = PQexecParams(conn,
                               "INSERT INTO group_members (group_id, member_kind, member_id)"
                               " VALUES ($1::bigint, 'account', $2::bigint)",
                               2, NULL, p, NULL, NULL, 0);
    assert_true(db_sqlstate_is(r, "23503"));
    PQclear(r);
}

/* The plan of sql, all lines joined, in a static buffer. */
static const char *plan_of(const char *sql)
{
    static char out[4096];
    PGresult *r = PQexec(conn, sql);
    if (!db_ok(r))
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; i < PQntuples(r) && n < sizeof out; i++)
        n += (size_t)snprintf(out + n, sizeof out - n, "%s\n", PQgetvalue(r, i, 0));
    PQclear(r);
    return out;
}

static void test_plan_uses_indexes(void **state)
{
    /* With table scans priced out, the lookups acl_rights() makes must find
     * an index to use (the tables are too small for the planner to prefer
     * one on its own). */
    PGresult *r = PQexec(conn, "SET enable_seqscan = off");
    PQclear(r);
    char sql[512];
    snprintf(sql, sizeof sql,
             "EXPLAIN SELECT group_id FROM group_members"
             " WHERE member_kind = 'account' AND member_id = %lld",
             bob);
    assert_contains(plan_of(sql), "group_members_member");
    snprintf(sql, sizeof sql,
             "EXPLAIN SELECT group_id FROM group_members"
             " WHERE member_kind = 'group' AND member_id = %lld",
             staff);
    assert_contains(plan_of(sql), "group_members_member");
    snprintf(sql, sizeof sql, "EXPLAIN SELECT rights FROM folder_acl WHERE folder_id = %lld",
             shared);
    assert_contains(plan_of(sql), "folder_acl_entry");
    r = PQexec(conn, "RESET enable_seqscan");
    PQclear(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_masks),
        cmocka_unit_test_setup(test_owner_and_nobody, setup),
        cmocka_unit_test_setup(test_precedence, setup),
        cmocka_unit_test_setup(test_group_union_and_nesting, setup),
        cmocka_unit_test_setup(test_group_with_domain, setup),
        cmocka_unit_test_setup(test_group_cycle, setup),
        cmocka_unit_test_setup(test_inheritance, setup),
        cmocka_unit_test_setup(test_override_with_copy, setup),
        cmocka_unit_test_setup(test_set_errors, setup),
        cmocka_unit_test_setup(test_entries_max, setup),
        cmocka_unit_test_setup(test_grantee_deleted, setup),
        cmocka_unit_test_setup(test_plan_uses_indexes, setup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
