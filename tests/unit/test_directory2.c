/* layer: storage */
/* Tests for the rest of the directory against a real PostgreSQL: aliases,
 * domain aliases, catch-alls and resolution (storage/aliases), forwarders,
 * groups and resources (storage/groups), quotas (storage/quota), service and
 * login policies (storage/policy), and the directory cache
 * (storage/dircache).
 *
 * FLOE_TEST_PG holds a libpq connection string for a server where the user
 * may create databases; without it the tests fail. The run creates its own
 * database (floe_test_dir2_<pid>) and drops it at the end. */
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
#include <unistd.h>

#include "storage/aliases.h"
#include "storage/db.h"
#include "storage/dircache.h"
#include "storage/directory.h"
#include "storage/groups.h"
#include "storage/policy.h"
#include "storage/quota.h"
#include "support/testdb.h"

static PGconn *conn; /* to this run's migrated database */

/* ---- helpers ---- */

/* Runs fixed test SQL with up to two text parameters, returns the first
 * cell of the first row ("" when none) in a static buffer. */
static const char *sql1(PGconn *c, const char *sql, const char *p1, const char *p2)
{
    static char out[1024];
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

static long long count(const char *sql)
{
    return strtoll(sql1(conn, sql, NULL, NULL), NULL, 10);
}

static void assert_contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) == NULL)
        fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

static void assert_idle(void)
{
    assert_int_equal(PQtransactionStatus(conn), PQTRANS_IDLE);
}

static long long account_id(const char *address)
{
    struct dir_account a;
    char err[256];
    if (dir_account_find(conn, address, &a, err, sizeof err) != 0)
        fail_msg("account %s: %s", address, err);
    return a.id;
}

static void add_domain(const char *name)
{
    char err[256];
    if (dir_domain_add(conn, name, err, sizeof err) != 0)
        fail_msg("domain %s: %s", name, err);
}

static void add_account(const char *address, const char *kind, const char *password)
{
    char err[256];
    if (dir_account_add(conn, address, kind, password, NULL, false, err, sizeof err) != 0)
        fail_msg("account %s: %s", address, err);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Collects names from list callbacks. */
struct names {
    char v[16][DIR_ADDRESS_SIZE];
    char kind[16][16];
    int n;
};

static int collect_alias(const char *alias, void *ctx)
{
    struct names *ns = ctx;
    if (ns->n < 16)
        snprintf(ns->v[ns->n], sizeof ns->v[0], "%s", alias);
    ns->n++;
    return 0;
}

static int collect_domain_alias(const char *alias, const char *domain, void *ctx)
{
    struct names *ns = ctx;
    if (ns->n < 16) {
        snprintf(ns->v[ns->n], sizeof ns->v[0], "%s", alias);
        snprintf(ns->kind[ns->n], sizeof ns->kind[0], "%.15s", domain);
    }
    ns->n++;
    return 0;
}

static int collect_member(const char *kind, const char *name, void *ctx)
{
    struct names *ns = ctx;
    if (ns->n < 16) {
        snprintf(ns->v[ns->n], sizeof ns->v[0], "%s", name);
        snprintf(ns->kind[ns->n], sizeof ns->kind[0], "%s", kind);
    }
    ns->n++;
    return 0;
}

static int collect_account(const struct dir_account *a, void *ctx)
{
    struct names *ns = ctx;
    if (ns->n < 16) {
        snprintf(ns->v[ns->n], sizeof ns->v[0], "%s", a->address);
        snprintf(ns->kind[ns->n], sizeof ns->kind[0], "%s", a->disabled ? "disabled" : a->kind);
    }
    ns->n++;
    return 0;
}

/* ---- setup ---- */

static void quiet_notices(void *arg, const char *message)
{
}

static int hook_calls;
static void count_hook(void)
{
    hook_calls++;
}

static int group_setup(void **state)
{
    conn = testdb_create("dir2");
    PQsetNoticeProcessor(conn, quiet_notices, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    testdb_drop(&conn);
    dircache_set_invalidation_hook(NULL);
    dircache_configure(0, 0);
    return 0;
}

/* Every test starts from an empty directory, default server settings and an
 * empty cache with the default bounds:
 *   example.com (alias example.net) with alice (password "alice secret"),
 *   bob and carol; other.org with dave and bob. */
static int dir_setup(void **state)
{
    sql1(conn, "TRUNCATE domains, accounts CASCADE", NULL, NULL);
    sql1(conn,
         "UPDATE server_settings SET login_policy = 'full_address', account_quota_bytes = 0,"
         " account_quota_messages = 0",
         NULL, NULL);
    dircache_set_invalidation_hook(NULL);
    dircache_configure(0, 0);
    char err[256];
    add_domain("example.com");
    add_domain("other.org");
    if (dir_domain_alias_add(conn, "example.net", "example.com", err, sizeof err) != 0)
        fail_msg("domain alias: %s", err);
    add_account("Alice@example.com", NULL, "alice secret");
    add_account("bob@example.com", NULL, "bob secret");
    add_account("carol@example.com", NULL, NULL);
    add_account("dave@other.org", NULL, "dave secret");
    add_account("bob@other.org", NULL, "other bob secret");
    return 0;
}

/* ---- account aliases ---- */

static void test_alias_add(void **state)
{
    char err[256];
    assert_int_equal(dir_alias_add(conn, "Info@Example.COM", "alice@example.com", err, sizeof err),
                     0);
    assert_idle();
    assert_string_equal(sql1(conn,
                             "SELECT al.address || ' ' || d.name FROM account_aliases al"
                             " JOIN domains d ON d.id = al.domain_id WHERE al.address LIKE 'info%'",
                             NULL, NULL),
                        "info@example.com example.com");

    /* Through a domain alias: stored under the real domain; the account
     * too may be named through the alias. */
    assert_int_equal(dir_alias_add(conn, "sales@example.net", "ALICE@example.net", err, sizeof err),
                     0);
    assert_int_equal(
        count("SELECT count(*) FROM account_aliases WHERE address = 'sales@example.com'"), 1);
    /* Into another domain's account. */
    assert_int_equal(dir_alias_add(conn, "bobby@example.com", "bob@other.org", err, sizeof err), 0);

    struct names ns = {0};
    assert_int_equal(dir_alias_list(conn, "alice@EXAMPLE.com", collect_alias, &ns, err, sizeof err),
                     0);
    assert_int_equal(ns.n, 2);
    assert_string_equal(ns.v[0], "info@example.com");
    assert_string_equal(ns.v[1], "sales@example.com");
    assert_idle();

    /* Rejections, each leaving nothing behind. */
    long long before = count("SELECT count(*) FROM account_aliases");
    err[0] = '\0';
    assert_int_equal(dir_alias_add(conn, "INFO@example.com", "bob@example.com", err, sizeof err),
                     DIR_EEXIST);
    assert_contains(err, "already an alias of Alice@example.com");
    assert_int_equal(dir_alias_add(conn, "info@example.net", "bob@example.com", err, sizeof err),
                     DIR_EEXIST);
    err[0] = '\0';
    assert_int_equal(dir_alias_add(conn, "BOB@example.net", "alice@example.com", err, sizeof err),
                     DIR_EEXIST);
    assert_contains(err, "already an account");
    err[0] = '\0';
    assert_int_equal(dir_alias_add(conn, "x@nowhere.org", "alice@example.com", err, sizeof err),
                     DIR_ENOTFOUND);
    assert_contains(err, "unknown domain nowhere.org");
    err[0] = '\0';
    assert_int_equal(dir_alias_add(conn, "x@example.com", "nobody@example.com", err, sizeof err),
                     DIR_ENOTFOUND);
    assert_contains(err, "unknown account");
    /* An alias is not an account to point at. */
    assert_int_equal(dir_alias_add(conn, "y@example.com", "info@example.com", err, sizeof err),
                     DIR_ENOTFOUND);
    static const char *const malformed[] = {"no-at-sign",
                                            "a..b@example.com",
                                            "@example.com",
                                            "x@-bad.com",
                                            "x@example",
                                            "x y@example.com",
                                            ""};
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        err[0] = '\0';
        assert_int_equal(dir_alias_add(conn, malformed[i], "alice@example.com", err, sizeof err),
                         -1);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(dir_alias_add(conn, NULL, "alice@example.com", err, sizeof err), -1);
    assert_int_equal(count("SELECT count(*) FROM account_aliases"), before);
    assert_idle();

    /* The other direction: an account cannot take an alias's address. */
    err[0] = '\0';
    assert_int_equal(
        dir_account_add(conn, "Info@example.net", NULL, NULL, NULL, false, err, sizeof err),
        DIR_ENOTFOUND); /* accounts are added under the domain's own name */
    assert_contains(err, "unknown domain");
    err[0] = '\0';
    assert_int_equal(
        dir_account_add(conn, "Info@example.com", NULL, NULL, NULL, false, err, sizeof err),
        DIR_EEXIST);
    assert_contains(err, "already an alias of Alice@example.com");
    assert_idle();

    struct names none = {0};
    assert_int_equal(
        dir_alias_list(conn, "nobody@example.com", collect_alias, &none, err, sizeof err),
        DIR_ENOTFOUND);
    assert_int_equal(none.n, 0);
    assert_idle();
}

static void test_alias_remove_and_cascade(void **state)
{
    char err[256];
    assert_int_equal(dir_alias_add(conn, "info@example.com", "alice@example.com", err, sizeof err),
                     0);
    assert_int_equal(dir_alias_add(conn, "sales@example.com", "alice@example.com", err, sizeof err),
                     0);
    assert_int_equal(dir_alias_add(conn, "dave2@example.com", "dave@other.org", err, sizeof err),
                     0);
    assert_int_equal(dir_alias_add(conn, "alice2@other.org", "alice@example.com", err, sizeof err),
                     0);

    assert_int_equal(dir_alias_remove(conn, "SALES@example.net", err, sizeof err), 0);
    err[0] = '\0';
    assert_int_equal(dir_alias_remove(conn, "sales@example.com", err, sizeof err), DIR_ENOTFOUND);
    assert_contains(err, "unknown alias");
    assert_int_equal(dir_alias_remove(conn, "alice@example.com", err, sizeof err), DIR_ENOTFOUND);
    assert_int_equal(dir_alias_remove(conn, "bad", err, sizeof err), -1);
    assert_int_equal(count("SELECT count(*) FROM account_aliases"), 3);

    /* The account's aliases go with it... */
    assert_int_equal(dir_account_delete(conn, "dave@other.org", err, sizeof err), 0);
    assert_int_equal(count("SELECT count(*) FROM account_aliases"), 2);
    /* ...and a domain's aliases go with the domain, also those naming an
     * account elsewhere. */
    assert_int_equal(dir_domain_delete(conn, "other.org", true, err, sizeof err), 0);
    assert_int_equal(count("SELECT count(*) FROM account_aliases"), 1);
    assert_string_equal(sql1(conn, "SELECT address FROM account_aliases", NULL, NULL),
                        "info@example.com");
}

static void test_alias_limit(void **state)
{
    char err[256], addr[64];
    for (int i = 0; i < DIR_ALIASES_MAX; i++) {
        snprintf(addr, sizeof addr, "a%d@example.com", i);
        if (dir_alias_add(conn, addr, "carol@example.com", err, sizeof err) != 0)
            fail_msg("alias %d: %s", i, err);
    }
    err[0] = '\0';
    assert_int_equal(
        dir_alias_add(conn, "one-more@example.com", "carol@example.com", err, sizeof err), -1);
    assert_contains(err, "most allowed");
    assert_int_equal(count("SELECT count(*) FROM account_aliases"), DIR_ALIASES_MAX);
    /* Another account is not affected. */
    assert_int_equal(
        dir_alias_add(conn, "one-more@example.com", "bob@example.com", err, sizeof err), 0);
}

/* ---- domain aliases ---- */

static void test_domain_alias(void **state)
{
    char err[256];
    /* example.net exists (setup); an alias may be named through an alias. */
    assert_int_equal(dir_domain_alias_add(conn, "Example.ORG", "example.net", err, sizeof err), 0);
    assert_string_equal(sql1(conn,
                             "SELECT d.name FROM domain_aliases a JOIN domains d"
                             " ON d.id = a.domain_id WHERE a.name = 'example.org'",
                             NULL, NULL),
                        "example.com");
    assert_int_equal(dir_domain_alias_add(conn, "other.net", "other.org", err, sizeof err), 0);

    err[0] = '\0';
    assert_int_equal(dir_domain_alias_add(conn, "example.net", "other.org", err, sizeof err),
                     DIR_EEXIST);
    assert_contains(err, "already an alias of example.com");
    err[0] = '\0';
    assert_int_equal(dir_domain_alias_add(conn, "other.org", "example.com", err, sizeof err),
                     DIR_EEXIST);
    assert_contains(err, "is a domain");
    assert_int_equal(dir_domain_alias_add(conn, "example.com", "example.com", err, sizeof err),
                     DIR_EEXIST);
    err[0] = '\0';
    assert_int_equal(dir_domain_alias_add(conn, "new.org", "nowhere.org", err, sizeof err),
                     DIR_ENOTFOUND);
    assert_contains(err, "unknown domain");
    assert_int_equal(dir_domain_alias_add(conn, "bad..name", "example.com", err, sizeof err), -1);
    assert_int_equal(dir_domain_alias_add(conn, "localhost", "example.com", err, sizeof err), -1);
    assert_int_equal(dir_domain_alias_add(conn, "1.2.3.4", "example.com", err, sizeof err), -1);
    assert_int_equal(count("SELECT count(*) FROM domain_aliases"), 3);
    assert_idle();

    /* A domain cannot take an alias's name (existing rule, same lock). */
    assert_int_equal(dir_domain_add(conn, "example.org", err, sizeof err), DIR_EEXIST);

    struct names ns = {0};
    assert_int_equal(
        dir_domain_alias_list(conn, "example.com", collect_domain_alias, &ns, err, sizeof err), 0);
    assert_int_equal(ns.n, 2);
    assert_string_equal(ns.v[0], "example.net");
    assert_string_equal(ns.v[1], "example.org");
    assert_string_equal(ns.kind[1], "example.com");
    struct names all = {0};
    assert_int_equal(dir_domain_alias_list(conn, NULL, collect_domain_alias, &all, err, sizeof err),
                     0);
    assert_int_equal(all.n, 3);
    assert_string_equal(all.v[2], "other.net");
    struct names none = {0};
    assert_int_equal(
        dir_domain_alias_list(conn, "nowhere.org", collect_domain_alias, &none, err, sizeof err),
        DIR_ENOTFOUND);
    assert_idle();

    /* Accounts are reached through the new alias. */
    struct dir_target t;
    assert_int_equal(dir_resolve(conn, "dave@other.net", &t, err, sizeof err), 0);
    assert_string_equal(t.account.address, "dave@other.org");

    assert_int_equal(dir_domain_alias_remove(conn, "OTHER.net", err, sizeof err), 0);
    assert_int_equal(dir_resolve(conn, "dave@other.net", &t, err, sizeof err), DIR_ENOTFOUND);
    err[0] = '\0';
    assert_int_equal(dir_domain_alias_remove(conn, "other.net", err, sizeof err), DIR_ENOTFOUND);
    assert_contains(err, "unknown domain alias");
    assert_int_equal(dir_domain_alias_remove(conn, "other.org", err, sizeof err), DIR_ENOTFOUND);
    assert_int_equal(dir_domain_alias_remove(conn, "-x-.org", err, sizeof err), -1);
    assert_int_equal(count("SELECT count(*) FROM domains"), 2);
}

/* ---- resolution and catch-all ---- */

static void test_resolve_order(void **state)
{
    char err[256], who[DIR_ADDRESS_SIZE];
    assert_int_equal(dir_alias_add(conn, "info@example.com", "alice@example.com", err, sizeof err),
                     0);

    struct dir_target t;
    memset(&t, 0, sizeof t);
    assert_int_equal(dir_resolve(conn, "BOB@example.COM", &t, err, sizeof err), 0);
    assert_string_equal(t.account.address, "bob@example.com");
    assert_int_equal(t.via, DIR_VIA_ACCOUNT);
    assert_string_equal(dir_via_name(t.via), "account");
    assert_int_equal(t.account.id, account_id("bob@example.com"));
    assert_string_equal(t.account.kind, "user");

    assert_int_equal(dir_resolve(conn, "Info@example.net", &t, err, sizeof err), 0);
    assert_string_equal(t.account.address, "Alice@example.com");
    assert_int_equal(t.via, DIR_VIA_ALIAS);

    err[0] = '\0';
    assert_int_equal(dir_resolve(conn, "random@example.com", &t, err, sizeof err), DIR_ENOTFOUND);
    assert_contains(err, "unknown address");

    /* Catch-all: only what matches no account and no alias. */
    assert_int_equal(dir_domain_get_catchall(conn, "example.com", who, err, sizeof err), 0);
    assert_string_equal(who, "");
    assert_int_equal(
        dir_domain_set_catchall(conn, "example.net", "carol@example.com", err, sizeof err), 0);
    assert_idle();
    assert_int_equal(dir_domain_get_catchall(conn, "example.com", who, err, sizeof err), 0);
    assert_string_equal(who, "carol@example.com");
    assert_int_equal(dir_resolve(conn, "random@example.net", &t, err, sizeof err), 0);
    assert_string_equal(t.account.address, "carol@example.com");
    assert_int_equal(t.via, DIR_VIA_CATCHALL);
    assert_string_equal(dir_via_name(t.via), "catchall");
    assert_int_equal(dir_resolve(conn, "bob@example.com", &t, err, sizeof err), 0);
    assert_int_equal(t.via, DIR_VIA_ACCOUNT);
    assert_string_equal(t.account.address, "bob@example.com");
    assert_int_equal(dir_resolve(conn, "info@example.com", &t, err, sizeof err), 0);
    assert_int_equal(t.via, DIR_VIA_ALIAS);
    assert_string_equal(t.account.address, "Alice@example.com");
    /* Other domains keep their own (none). */
    assert_int_equal(dir_resolve(conn, "random@other.org", &t, err, sizeof err), DIR_ENOTFOUND);
    /* A catch-all in another domain is fine. */
    assert_int_equal(
        dir_domain_set_catchall(conn, "other.org", "carol@example.com", err, sizeof err), 0);
    assert_int_equal(dir_resolve(conn, "random@other.org", &t, err, sizeof err), 0);
    assert_string_equal(t.account.address, "carol@example.com");

    /* Unknown domains and malformed addresses are just not found. */
    assert_int_equal(dir_resolve(conn, "bob@nowhere.org", &t, err, sizeof err), DIR_ENOTFOUND);
    assert_int_equal(dir_resolve(conn, "bob", &t, err, sizeof err), DIR_ENOTFOUND);
    assert_int_equal(dir_resolve(conn, "bob@@example.com", &t, err, sizeof err), DIR_ENOTFOUND);
    assert_int_equal(dir_resolve(conn, NULL, &t, err, sizeof err), DIR_ENOTFOUND);

    /* Disabled accounts resolve, and say so. */
    assert_int_equal(dir_account_set_disabled(conn, "bob@example.com", true, err, sizeof err), 0);
    assert_int_equal(dir_resolve(conn, "bob@example.com", &t, err, sizeof err), 0);
    assert_true(t.account.disabled);

    /* Catch-all errors change nothing. */
    assert_int_equal(
        dir_domain_set_catchall(conn, "nowhere.org", "carol@example.com", err, sizeof err),
        DIR_ENOTFOUND);
    assert_int_equal(
        dir_domain_set_catchall(conn, "example.com", "nobody@example.com", err, sizeof err),
        DIR_ENOTFOUND);
    assert_int_equal(dir_domain_get_catchall(conn, "nowhere.org", who, err, sizeof err),
                     DIR_ENOTFOUND);
    assert_int_equal(dir_domain_get_catchall(conn, "example.com", who, err, sizeof err), 0);
    assert_string_equal(who, "carol@example.com");
    assert_idle();

    /* Deleting the catch-all account removes the catch-all. */
    assert_int_equal(dir_account_delete(conn, "carol@example.com", err, sizeof err), 0);
    assert_int_equal(dir_domain_get_catchall(conn, "example.com", who, err, sizeof err), 0);
    assert_string_equal(who, "");
    assert_int_equal(dir_resolve(conn, "random@example.com", &t, err, sizeof err), DIR_ENOTFOUND);

    /* NULL removes it. */
    assert_int_equal(
        dir_domain_set_catchall(conn, "example.com", "bob@example.com", err, sizeof err), 0);
    assert_int_equal(dir_domain_set_catchall(conn, "example.com", NULL, err, sizeof err), 0);
    assert_int_equal(dir_resolve(conn, "random@example.com", &t, err, sizeof err), DIR_ENOTFOUND);

    /* A domain that is its own catch-all's domain can still be deleted. */
    assert_int_equal(
        dir_domain_set_catchall(conn, "example.com", "bob@example.com", err, sizeof err), 0);
    assert_int_equal(dir_domain_delete(conn, "example.com", true, err, sizeof err), 0);
    assert_int_equal(count("SELECT count(*) FROM domains"), 1);
}

/* ---- forwarders ---- */

static void test_forward(void **state)
{
    char err[256];
    struct dir_forward f;
    assert_int_equal(dir_forward_get(conn, "alice@example.com", &f, err, sizeof err), 0);
    assert_int_equal(f.n, 0);

    const char *t2[] = {"Someone@Elsewhere.ORG", "bob@example.com"};
    assert_int_equal(dir_forward_set(conn, "alice@example.net", t2, 2, true, err, sizeof err), 0);
    assert_idle();
    assert_int_equal(dir_forward_get(conn, "ALICE@example.com", &f, err, sizeof err), 0);
    assert_int_equal(f.n, 2);
    assert_true(f.keep_copy);
    assert_string_equal(f.targets[0], "Someone@elsewhere.org");
    assert_string_equal(f.targets[1], "bob@example.com");

    /* Replaced as a whole. */
    const char *t1[] = {"x@y.org"};
    assert_int_equal(dir_forward_set(conn, "alice@example.com", t1, 1, false, err, sizeof err), 0);
    assert_int_equal(dir_forward_get(conn, "alice@example.com", &f, err, sizeof err), 0);
    assert_int_equal(f.n, 1);
    assert_false(f.keep_copy);
    assert_string_equal(f.targets[0], "x@y.org");

    /* Validation: nothing changes on any rejection. */
    err[0] = '\0';
    assert_int_equal(dir_forward_set(conn, "alice@example.com", t1, 0, false, err, sizeof err), -1);
    assert_contains(err, "no forward targets");
    const char *bad[] = {"ok@y.org", "not an address"};
    err[0] = '\0';
    assert_int_equal(dir_forward_set(conn, "alice@example.com", bad, 2, false, err, sizeof err),
                     -1);
    assert_contains(err, "not an address");
    const char *bad2[] = {"x@localhost"};
    assert_int_equal(dir_forward_set(conn, "alice@example.com", bad2, 1, false, err, sizeof err),
                     -1);
    const char *bad3[] = {NULL};
    assert_int_equal(dir_forward_set(conn, "alice@example.com", bad3, 1, false, err, sizeof err),
                     -1);
    const char *dup[] = {"X@y.org", "x@Y.org"};
    err[0] = '\0';
    assert_int_equal(dir_forward_set(conn, "alice@example.com", dup, 2, false, err, sizeof err),
                     -1);
    assert_contains(err, "twice");
    /* To itself, by its own address, through a domain alias or an alias. */
    assert_int_equal(dir_alias_add(conn, "info@example.com", "alice@example.com", err, sizeof err),
                     0);
    const char *self[] = {"z@y.org", "alice@EXAMPLE.net"};
    err[0] = '\0';
    assert_int_equal(dir_forward_set(conn, "alice@example.com", self, 2, false, err, sizeof err),
                     -1);
    assert_contains(err, "loop");
    const char *self2[] = {"info@example.com"};
    assert_int_equal(dir_forward_set(conn, "alice@example.com", self2, 1, false, err, sizeof err),
                     -1);
    err[0] = '\0';
    assert_int_equal(dir_forward_set(conn, "nobody@example.com", t1, 1, false, err, sizeof err),
                     DIR_ENOTFOUND);
    assert_contains(err, "unknown account");
    assert_idle();

    /* The most targets allowed, and one more. */
    char many[DIR_FORWARD_MAX + 1][32];
    const char *mp[DIR_FORWARD_MAX + 1];
    for (int i = 0; i <= DIR_FORWARD_MAX; i++) {
        snprintf(many[i], sizeof many[i], "t%d@y.org", i);
        mp[i] = many[i];
    }
    err[0] = '\0';
    assert_int_equal(
        dir_forward_set(conn, "alice@example.com", mp, DIR_FORWARD_MAX + 1, false, err, sizeof err),
        -1);
    assert_contains(err, "at most 32");
    assert_int_equal(dir_forward_get(conn, "alice@example.com", &f, err, sizeof err), 0);
    assert_int_equal(f.n, 1);
    assert_string_equal(f.targets[0], "x@y.org");
    assert_int_equal(
        dir_forward_set(conn, "alice@example.com", mp, DIR_FORWARD_MAX, true, err, sizeof err), 0);
    assert_int_equal(dir_forward_get(conn, "alice@example.com", &f, err, sizeof err), 0);
    assert_int_equal(f.n, DIR_FORWARD_MAX);
    assert_string_equal(f.targets[31], "t31@y.org");

    assert_int_equal(dir_forward_clear(conn, "alice@example.com", err, sizeof err), 0);
    assert_int_equal(dir_forward_clear(conn, "alice@example.com", err, sizeof err), 0);
    assert_int_equal(dir_forward_get(conn, "alice@example.com", &f, err, sizeof err), 0);
    assert_int_equal(f.n, 0);
    assert_int_equal(dir_forward_clear(conn, "nobody@example.com", err, sizeof err), DIR_ENOTFOUND);
    assert_int_equal(dir_forward_get(conn, "nobody@example.com", &f, err, sizeof err),
                     DIR_ENOTFOUND);
    assert_idle();
}

/* ---- groups ---- */

static void test_group_members(void **state)
{
    char err[256], deliver[16];
    assert_int_equal(dir_group_add(conn, "sales@example.com", "Sales", "folder", err, sizeof err),
                     0);
    assert_int_equal(dir_group_add(conn, "dev@example.com", NULL, NULL, err, sizeof err), 0);
    assert_int_equal(dir_group_get_deliver(conn, "sales@example.com", deliver, err, sizeof err), 0);
    assert_string_equal(deliver, "folder");
    assert_int_equal(dir_group_get_deliver(conn, "dev@example.net", deliver, err, sizeof err), 0);
    assert_string_equal(deliver, "members");
    assert_string_equal(
        sql1(conn, "SELECT kind FROM accounts WHERE local_part = 'sales'", NULL, NULL), "group");
    assert_int_equal(dir_group_add(conn, "sales@example.com", NULL, NULL, err, sizeof err),
                     DIR_EEXIST);
    err[0] = '\0';
    assert_int_equal(dir_group_add(conn, "x@example.com", NULL, "everyone", err, sizeof err), -1);
    assert_contains(err, "members or folder");
    assert_int_equal(dir_group_add(conn, "x@nowhere.org", NULL, NULL, err, sizeof err),
                     DIR_ENOTFOUND);
    assert_int_equal(count("SELECT count(*) FROM accounts WHERE kind = 'group'"), 2);

    assert_int_equal(dir_group_set_deliver(conn, "sales@example.com", "members", err, sizeof err),
                     0);
    assert_int_equal(dir_group_get_deliver(conn, "sales@example.com", deliver, err, sizeof err), 0);
    assert_string_equal(deliver, "members");
    assert_int_equal(dir_group_set_deliver(conn, "sales@example.com", "nowhere", err, sizeof err),
                     -1);
    err[0] = '\0';
    assert_int_equal(dir_group_set_deliver(conn, "alice@example.com", "folder", err, sizeof err),
                     -1);
    assert_contains(err, "not a group");
    assert_int_equal(dir_group_set_deliver(conn, "no@example.com", "folder", err, sizeof err),
                     DIR_ENOTFOUND);

    /* Members of every kind; kinds inferred or given. */
    assert_int_equal(
        dir_group_member_add(conn, "sales@example.com", "alice@example.net", NULL, err, sizeof err),
        0);
    assert_int_equal(
        dir_group_member_add(conn, "sales@example.com", "dev@example.com", NULL, err, sizeof err),
        0);
    assert_int_equal(
        dir_group_member_add(conn, "sales@example.com", "other.org", "domain", err, sizeof err), 0);
    assert_int_equal(dir_group_member_add(conn, "sales@example.com", "bob@other.org", "account",
                                          err, sizeof err),
                     0);
    assert_idle();
    struct names ns = {0};
    assert_int_equal(
        dir_group_member_list(conn, "sales@example.com", collect_member, &ns, err, sizeof err), 0);
    assert_int_equal(ns.n, 4);
    assert_string_equal(ns.kind[0], "account");
    assert_string_equal(ns.v[0], "Alice@example.com");
    assert_string_equal(ns.v[1], "bob@other.org");
    assert_string_equal(ns.kind[2], "domain");
    assert_string_equal(ns.v[2], "other.org");
    assert_string_equal(ns.kind[3], "group");
    assert_string_equal(ns.v[3], "dev@example.com");

    /* Rejections. */
    long long before = count("SELECT count(*) FROM group_members");
    err[0] = '\0';
    assert_int_equal(
        dir_group_member_add(conn, "sales@example.com", "ALICE@example.com", NULL, err, sizeof err),
        DIR_EEXIST);
    assert_contains(err, "already a member");
    assert_int_equal(
        dir_group_member_add(conn, "sales@example.com", "other.org", NULL, err, sizeof err),
        DIR_EEXIST);
    err[0] = '\0';
    assert_int_equal(dir_group_member_add(conn, "sales@example.com", "dev@example.com", "account",
                                          err, sizeof err),
                     -1);
    assert_contains(err, "is a group");
    err[0] = '\0';
    assert_int_equal(dir_group_member_add(conn, "sales@example.com", "bob@example.com", "group",
                                          err, sizeof err),
                     -1);
    assert_contains(err, "not a group");
    err[0] = '\0';
    assert_int_equal(
        dir_group_member_add(conn, "sales@example.com", "bob@example.com", "team", err, sizeof err),
        -1);
    assert_contains(err, "account, group or domain");
    assert_int_equal(dir_group_member_add(conn, "sales@example.com", "nobody@example.com", NULL,
                                          err, sizeof err),
                     DIR_ENOTFOUND);
    assert_int_equal(
        dir_group_member_add(conn, "sales@example.com", "nowhere.org", NULL, err, sizeof err),
        DIR_ENOTFOUND);
    assert_int_equal(
        dir_group_member_add(conn, "nogroup@example.com", "bob@example.com", NULL, err, sizeof err),
        DIR_ENOTFOUND);
    err[0] = '\0';
    assert_int_equal(
        dir_group_member_add(conn, "alice@example.com", "bob@example.com", NULL, err, sizeof err),
        -1);
    assert_contains(err, "not a group");
    assert_int_equal(dir_group_member_add(conn, "sales@example.com", "", NULL, err, sizeof err),
                     -1);
    assert_int_equal(count("SELECT count(*) FROM group_members"), before);
    assert_idle();

    /* Remove. */
    assert_int_equal(
        dir_group_member_remove(conn, "sales@example.com", "bob@other.org", NULL, err, sizeof err),
        0);
    err[0] = '\0';
    assert_int_equal(
        dir_group_member_remove(conn, "sales@example.com", "bob@other.org", NULL, err, sizeof err),
        DIR_ENOTFOUND);
    assert_contains(err, "not a member");
    assert_int_equal(
        dir_group_member_remove(conn, "sales@example.com", "other.org", "domain", err, sizeof err),
        0);
    assert_int_equal(count("SELECT count(*) FROM group_members"), before - 2);

    /* A deleted member leaves its groups. */
    assert_int_equal(dir_account_delete(conn, "alice@example.com", err, sizeof err), 0);
    struct names after = {0};
    assert_int_equal(
        dir_group_member_list(conn, "sales@example.com", collect_member, &after, err, sizeof err),
        0);
    assert_int_equal(after.n, 1);
    assert_string_equal(after.v[0], "dev@example.com");
    struct names none = {0};
    assert_int_equal(
        dir_group_member_list(conn, "bob@example.com", collect_member, &none, err, sizeof err), -1);
    assert_int_equal(
        dir_group_member_list(conn, "no@example.com", collect_member, &none, err, sizeof err),
        DIR_ENOTFOUND);
    assert_idle();
}

static void test_group_cycles(void **state)
{
    char err[256];
    assert_int_equal(dir_group_add(conn, "a@example.com", NULL, NULL, err, sizeof err), 0);
    assert_int_equal(dir_group_add(conn, "b@example.com", NULL, NULL, err, sizeof err), 0);
    assert_int_equal(dir_group_add(conn, "c@other.org", NULL, NULL, err, sizeof err), 0);
    assert_int_equal(
        dir_group_member_add(conn, "a@example.com", "b@example.com", NULL, err, sizeof err), 0);
    assert_int_equal(
        dir_group_member_add(conn, "b@example.com", "c@other.org", "group", err, sizeof err), 0);

    err[0] = '\0';
    assert_int_equal(
        dir_group_member_add(conn, "a@example.com", "a@example.com", NULL, err, sizeof err),
        DIR_ECYCLE);
    assert_contains(err, "itself");
    err[0] = '\0';
    assert_int_equal(
        dir_group_member_add(conn, "b@example.com", "a@example.com", NULL, err, sizeof err),
        DIR_ECYCLE);
    assert_contains(err, "cycle");
    err[0] = '\0';
    assert_int_equal(
        dir_group_member_add(conn, "c@other.org", "a@example.net", "group", err, sizeof err),
        DIR_ECYCLE);
    assert_contains(err, "a@example.com already contains c@other.org");
    assert_int_equal(count("SELECT count(*) FROM group_members"), 2);
    assert_idle();

    /* A diamond is not a cycle. */
    assert_int_equal(dir_group_add(conn, "d@example.com", NULL, NULL, err, sizeof err), 0);
    assert_int_equal(
        dir_group_member_add(conn, "a@example.com", "d@example.com", NULL, err, sizeof err), 0);
    assert_int_equal(
        dir_group_member_add(conn, "d@example.com", "c@other.org", NULL, err, sizeof err), 0);
    /* After removing b -> c, c may contain b; then b may not contain c. */
    assert_int_equal(
        dir_group_member_remove(conn, "b@example.com", "c@other.org", NULL, err, sizeof err), 0);
    assert_int_equal(
        dir_group_member_add(conn, "c@other.org", "b@example.com", NULL, err, sizeof err), 0);
    assert_int_equal(
        dir_group_member_add(conn, "b@example.com", "c@other.org", NULL, err, sizeof err),
        DIR_ECYCLE);
}

static void test_group_expand(void **state)
{
    char err[256];
    /* top -> mid -> leaf, top -> leaf too; leaf holds the domain other.org,
     * which also has a group and a resource that a domain member does not
     * bring in. */
    assert_int_equal(dir_group_add(conn, "top@example.com", NULL, NULL, err, sizeof err), 0);
    assert_int_equal(dir_group_add(conn, "mid@example.com", NULL, NULL, err, sizeof err), 0);
    assert_int_equal(dir_group_add(conn, "leaf@other.org", NULL, NULL, err, sizeof err), 0);
    assert_int_equal(dir_resource_add(conn, "room1@other.org", "room", NULL, NULL, err, sizeof err),
                     0);
    assert_int_equal(
        dir_resource_add(conn, "beamer@example.com", "equipment", NULL, NULL, err, sizeof err), 0);
    add_account("erin@other.org", NULL, NULL);
    assert_int_equal(dir_account_set_disabled(conn, "erin@other.org", true, err, sizeof err), 0);

    static const char *const edges[][3] = {
        {"top@example.com", "mid@example.com", NULL},
        {"top@example.com", "leaf@other.org", NULL},
        {"top@example.com", "alice@example.com", NULL},
        {"mid@example.com", "leaf@other.org", NULL},
        {"mid@example.com", "Alice@example.com", NULL},
        {"mid@example.com", "beamer@example.com", NULL},
        {"leaf@other.org", "other.org", NULL},
        {"leaf@other.org", "bob@example.com", "account"},
    };
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
        if (dir_group_member_add(conn, edges[i][0], edges[i][1], edges[i][2], err, sizeof err) != 0)
            fail_msg("edge %zu: %s", i, err);

    struct names ns = {0};
    assert_int_equal(
        dir_group_expand(conn, "top@example.com", collect_account, &ns, err, sizeof err), 0);
    assert_idle();
    /* Each once, ordered by domain then local part; no groups, no
     * room1@other.org (domain members bring users only), erin included. */
    assert_int_equal(ns.n, 6);
    assert_string_equal(ns.v[0], "Alice@example.com");
    assert_string_equal(ns.v[1], "beamer@example.com");
    assert_string_equal(ns.kind[1], "resource");
    assert_string_equal(ns.v[2], "bob@example.com");
    assert_string_equal(ns.v[3], "bob@other.org");
    assert_string_equal(ns.v[4], "dave@other.org");
    assert_string_equal(ns.v[5], "erin@other.org");
    assert_string_equal(ns.kind[5], "disabled");

    struct names leaf = {0};
    assert_int_equal(
        dir_group_expand(conn, "leaf@other.org", collect_account, &leaf, err, sizeof err), 0);
    assert_int_equal(leaf.n, 4);

    /* A domain's new users are members at once. */
    add_account("frank@other.org", NULL, NULL);
    struct names leaf2 = {0};
    assert_int_equal(
        dir_group_expand(conn, "leaf@other.org", collect_account, &leaf2, err, sizeof err), 0);
    assert_int_equal(leaf2.n, 5);

    /* An empty group expands to nothing; a non-group is refused. */
    assert_int_equal(dir_group_add(conn, "empty@example.com", NULL, NULL, err, sizeof err), 0);
    struct names empty = {0};
    assert_int_equal(
        dir_group_expand(conn, "empty@example.com", collect_account, &empty, err, sizeof err), 0);
    assert_int_equal(empty.n, 0);
    assert_int_equal(
        dir_group_expand(conn, "alice@example.com", collect_account, &empty, err, sizeof err), -1);
    assert_int_equal(
        dir_group_expand(conn, "none@example.com", collect_account, &empty, err, sizeof err),
        DIR_ENOTFOUND);

    /* Deleting the domain removes it as a member, and with it the group
     * leaf@other.org and everything only leaf brought in. */
    assert_int_equal(dir_domain_delete(conn, "other.org", true, err, sizeof err), 0);
    struct names after = {0};
    assert_int_equal(
        dir_group_expand(conn, "top@example.com", collect_account, &after, err, sizeof err), 0);
    assert_int_equal(after.n, 2);
    assert_string_equal(after.v[0], "Alice@example.com");
    assert_string_equal(after.v[1], "beamer@example.com");
    assert_int_equal(count("SELECT count(*) FROM group_members WHERE member_kind = 'domain'"), 0);
    assert_idle();
}

/* ---- resources ---- */

static void test_resources(void **state)
{
    char err[256];
    struct dir_resource r;
    assert_int_equal(
        dir_resource_add(conn, "room1@example.com", "room", NULL, "Room One", err, sizeof err), 0);
    assert_int_equal(dir_resource_get(conn, "ROOM1@example.net", &r, err, sizeof err), 0);
    assert_string_equal(r.type, "room");
    assert_string_equal(r.booking, "auto_accept");
    assert_string_equal(sql1(conn,
                             "SELECT kind || ' ' || full_name FROM accounts"
                             " WHERE local_part = 'room1'",
                             NULL, NULL),
                        "resource Room One");

    err[0] = '\0';
    assert_int_equal(
        dir_resource_add(conn, "car@example.com", "vehicle", NULL, NULL, err, sizeof err), -1);
    assert_contains(err, "room or equipment");
    assert_int_equal(dir_resource_add(conn, "car@example.com", NULL, NULL, NULL, err, sizeof err),
                     -1);
    err[0] = '\0';
    assert_int_equal(
        dir_resource_add(conn, "car@example.com", "equipment", "whenever", NULL, err, sizeof err),
        -1);
    assert_contains(err, "booking policy");
    assert_int_equal(dir_resource_add(conn, "car@example.com", "equipment", "manager_approval",
                                      NULL, err, sizeof err),
                     0);
    assert_int_equal(dir_resource_get(conn, "car@example.com", &r, err, sizeof err), 0);
    assert_string_equal(r.type, "equipment");
    assert_string_equal(r.booking, "manager_approval");
    assert_int_equal(dir_account_delete(conn, "car@example.com", err, sizeof err), 0);
    assert_int_equal(
        dir_resource_add(conn, "room1@example.com", "room", NULL, NULL, err, sizeof err),
        DIR_EEXIST);
    assert_int_equal(
        dir_resource_add(conn, "car@nowhere.org", "equipment", NULL, NULL, err, sizeof err),
        DIR_ENOTFOUND);
    assert_int_equal(count("SELECT count(*) FROM accounts WHERE kind = 'resource'"), 1);
    assert_int_equal(count("SELECT count(*) FROM resources"), 1);

    assert_int_equal(
        dir_resource_set(conn, "room1@example.com", NULL, "manager_approval", err, sizeof err), 0);
    assert_int_equal(dir_resource_get(conn, "room1@example.com", &r, err, sizeof err), 0);
    assert_string_equal(r.type, "room");
    assert_string_equal(r.booking, "manager_approval");
    assert_int_equal(
        dir_resource_set(conn, "room1@example.com", "equipment", NULL, err, sizeof err), 0);
    assert_int_equal(dir_resource_get(conn, "room1@example.com", &r, err, sizeof err), 0);
    assert_string_equal(r.type, "equipment");
    assert_string_equal(r.booking, "manager_approval");
    err[0] = '\0';
    assert_int_equal(
        dir_resource_set(conn, "room1@example.com", NULL, "first_come", err, sizeof err), -1);
    assert_contains(err, "auto_accept or manager_approval");
    assert_int_equal(dir_resource_set(conn, "room1@example.com", "hall", NULL, err, sizeof err),
                     -1);
    err[0] = '\0';
    assert_int_equal(dir_resource_set(conn, "alice@example.com", "room", NULL, err, sizeof err),
                     -1);
    assert_contains(err, "not a resource");
    assert_int_equal(dir_resource_set(conn, "no@example.com", "room", NULL, err, sizeof err),
                     DIR_ENOTFOUND);
    assert_int_equal(dir_resource_get(conn, "alice@example.com", &r, err, sizeof err), -1);
    assert_int_equal(dir_resource_get(conn, "no@example.com", &r, err, sizeof err), DIR_ENOTFOUND);

    /* A resource account made without settings reads as the defaults, and
     * setting one field fills in the other's default. */
    add_account("hall@example.com", "resource", NULL);
    assert_int_equal(dir_resource_get(conn, "hall@example.com", &r, err, sizeof err), 0);
    assert_string_equal(r.type, "room");
    assert_string_equal(r.booking, "auto_accept");
    assert_int_equal(
        dir_resource_set(conn, "hall@example.com", NULL, "manager_approval", err, sizeof err), 0);
    assert_int_equal(dir_resource_get(conn, "hall@example.com", &r, err, sizeof err), 0);
    assert_string_equal(r.type, "room");
    assert_string_equal(r.booking, "manager_approval");

    /* Managers. */
    assert_int_equal(
        dir_resource_manager_add(conn, "room1@example.com", "bob@other.org", err, sizeof err), 0);
    assert_int_equal(
        dir_resource_manager_add(conn, "room1@example.com", "alice@example.net", err, sizeof err),
        0);
    err[0] = '\0';
    assert_int_equal(
        dir_resource_manager_add(conn, "room1@example.com", "ALICE@example.com", err, sizeof err),
        DIR_EEXIST);
    assert_contains(err, "already a manager");
    assert_int_equal(dir_group_add(conn, "team@example.com", NULL, NULL, err, sizeof err), 0);
    err[0] = '\0';
    assert_int_equal(
        dir_resource_manager_add(conn, "room1@example.com", "team@example.com", err, sizeof err),
        -1);
    assert_contains(err, "not a user");
    assert_int_equal(
        dir_resource_manager_add(conn, "alice@example.com", "bob@example.com", err, sizeof err),
        -1);
    assert_int_equal(
        dir_resource_manager_add(conn, "room1@example.com", "no@example.com", err, sizeof err),
        DIR_ENOTFOUND);
    assert_int_equal(
        dir_resource_manager_add(conn, "no@example.com", "bob@example.com", err, sizeof err),
        DIR_ENOTFOUND);
    struct names ns = {0};
    assert_int_equal(
        dir_resource_manager_list(conn, "room1@example.com", collect_account, &ns, err, sizeof err),
        0);
    assert_int_equal(ns.n, 2);
    assert_string_equal(ns.v[0], "Alice@example.com");
    assert_string_equal(ns.v[1], "bob@other.org");
    assert_int_equal(
        dir_resource_manager_remove(conn, "room1@example.com", "bob@other.org", err, sizeof err),
        0);
    err[0] = '\0';
    assert_int_equal(
        dir_resource_manager_remove(conn, "room1@example.com", "bob@other.org", err, sizeof err),
        DIR_ENOTFOUND);
    assert_contains(err, "not a manager");
    /* A deleted manager is no longer listed. */
    assert_int_equal(dir_account_delete(conn, "alice@example.com", err, sizeof err), 0);
    struct names ns2 = {0};
    assert_int_equal(dir_resource_manager_list(conn, "room1@example.com", collect_account, &ns2,
                                               err, sizeof err),
                     0);
    assert_int_equal(ns2.n, 0);
    assert_int_equal(
        dir_resource_manager_list(conn, "bob@example.com", collect_account, &ns2, err, sizeof err),
        -1);
    assert_idle();
}

/* ---- quotas ---- */

static void test_quota_parse(void **state)
{
    char err[256];
    long long v;
    assert_int_equal(quota_parse("0", true, false, &v, err, sizeof err), 0);
    assert_int_equal(v, 0);
    assert_int_equal(quota_parse("1234", true, false, &v, err, sizeof err), 0);
    assert_int_equal(v, 1234);
    assert_int_equal(quota_parse("10K", true, false, &v, err, sizeof err), 0);
    assert_int_equal(v, 10240);
    assert_int_equal(quota_parse("5m", true, false, &v, err, sizeof err), 0);
    assert_int_equal(v, 5LL << 20);
    assert_int_equal(quota_parse("2G", true, false, &v, err, sizeof err), 0);
    assert_int_equal(v, 2LL << 30);
    assert_int_equal(quota_parse("1T", true, false, &v, err, sizeof err), 0);
    assert_int_equal(v, 1LL << 40);
    assert_int_equal(quota_parse("unlimited", true, false, &v, err, sizeof err), 0);
    assert_int_equal(v, 0);
    assert_int_equal(quota_parse("inherit", true, true, &v, err, sizeof err), 0);
    assert_int_equal(v, QUOTA_INHERIT);
    assert_int_equal(quota_parse("inherit", true, false, &v, err, sizeof err), -1);
    assert_int_equal(quota_parse("10K", false, false, &v, err, sizeof err), -1);
    static const char *const bad[] = {
        "", "-1", "1.5G", "10KB", "K", "12X", " 1", "1 ", "99999999999999999999", "1048577T"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        if (quota_parse(bad[i], true, true, &v, err, sizeof err) != -1)
            fail_msg("\"%s\" parsed", bad[i]);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(quota_parse(NULL, true, true, &v, err, sizeof err), -1);
    assert_int_equal(quota_parse("1048576T", true, false, &v, err, sizeof err), 0);
    assert_int_equal(v, QUOTA_VALUE_MAX);
}

static void test_quota_levels(void **state)
{
    char err[256];
    struct quota_info q;
    assert_int_equal(quota_get(conn, "alice@example.com", &q, err, sizeof err), 0);
    assert_int_equal(q.bytes_limit, 0);
    assert_int_equal(q.messages_limit, 0);
    assert_int_equal(q.bytes_from, QUOTA_FROM_SERVER);
    assert_int_equal(q.bytes_used, 0);
    assert_string_equal(q.address, "Alice@example.com");

    /* Server default, overridden by the domain's default, overridden by the
     * account's own value; each dimension on its own. */
    assert_int_equal(quota_set_server(conn, 1000, 50, false, err, sizeof err), 0);
    assert_int_equal(quota_get(conn, "alice@example.com", &q, err, sizeof err), 0);
    assert_int_equal(q.bytes_limit, 1000);
    assert_int_equal(q.messages_limit, 50);
    assert_int_equal(q.bytes_from, QUOTA_FROM_SERVER);
    assert_string_equal(quota_source_name(q.bytes_from), "server");

    assert_int_equal(quota_set_domain(conn, "example.net", QUOTA_KEEP, QUOTA_KEEP, 2000, QUOTA_KEEP,
                                      false, err, sizeof err),
                     0);
    assert_int_equal(quota_get(conn, "alice@example.com", &q, err, sizeof err), 0);
    assert_int_equal(q.bytes_limit, 2000);
    assert_int_equal(q.bytes_from, QUOTA_FROM_DOMAIN);
    assert_int_equal(q.messages_limit, 50);
    assert_int_equal(q.messages_from, QUOTA_FROM_SERVER);
    assert_int_equal(quota_get(conn, "dave@other.org", &q, err, sizeof err), 0);
    assert_int_equal(q.bytes_limit, 1000);

    assert_int_equal(quota_set_account(conn, "alice@example.com", 0, 7, false, err, sizeof err), 0);
    assert_int_equal(quota_get(conn, "alice@example.com", &q, err, sizeof err), 0);
    assert_int_equal(q.bytes_limit, 0); /* exempt: unlimited */
    assert_int_equal(q.bytes_from, QUOTA_FROM_ACCOUNT);
    assert_int_equal(q.messages_limit, 7);
    assert_int_equal(q.messages_from, QUOTA_FROM_ACCOUNT);

    /* KEEP leaves a dimension alone; INHERIT goes back up a level. */
    assert_int_equal(quota_set_account(conn, "alice@example.com", QUOTA_INHERIT, QUOTA_KEEP, false,
                                       err, sizeof err),
                     0);
    assert_int_equal(quota_get(conn, "alice@example.com", &q, err, sizeof err), 0);
    assert_int_equal(q.bytes_limit, 2000);
    assert_int_equal(q.messages_limit, 7);
    assert_int_equal(quota_set_domain(conn, "example.com", QUOTA_KEEP, QUOTA_KEEP, QUOTA_INHERIT,
                                      QUOTA_KEEP, false, err, sizeof err),
                     0);
    assert_int_equal(quota_get(conn, "alice@example.com", &q, err, sizeof err), 0);
    assert_int_equal(q.bytes_limit, 1000);

    /* Domain totals and the views of domain and server. */
    assert_int_equal(quota_set_domain(conn, "example.com", 5000, 100, QUOTA_KEEP, QUOTA_KEEP, false,
                                      err, sizeof err),
                     0);
    struct quota_domain_info d;
    assert_int_equal(quota_get_domain(conn, "EXAMPLE.net", &d, err, sizeof err), 0);
    assert_string_equal(d.domain, "example.com");
    assert_int_equal(d.bytes_limit, 5000);
    assert_int_equal(d.messages_limit, 100);
    assert_int_equal(d.account_bytes, QUOTA_INHERIT);
    assert_int_equal(d.account_messages, QUOTA_INHERIT);
    struct quota_server_info s;
    assert_int_equal(quota_get_server(conn, &s, err, sizeof err), 0);
    assert_int_equal(s.account_bytes, 1000);
    assert_int_equal(s.account_messages, 50);
    assert_int_equal(quota_get(conn, "alice@example.com", &q, err, sizeof err), 0);
    assert_int_equal(q.domain_bytes_limit, 5000);

    /* Invalid input and unknown names change nothing. */
    assert_int_equal(quota_set_server(conn, QUOTA_INHERIT, QUOTA_KEEP, false, err, sizeof err), -1);
    assert_int_equal(quota_set_domain(conn, "example.com", QUOTA_INHERIT, 1, QUOTA_KEEP, QUOTA_KEEP,
                                      false, err, sizeof err),
                     -1);
    assert_int_equal(quota_set_account(conn, "alice@example.com", -7, 1, false, err, sizeof err),
                     -1);
    assert_int_equal(quota_set_account(conn, "alice@example.com", QUOTA_VALUE_MAX + 1, 1, false,
                                       err, sizeof err),
                     -1);
    assert_int_equal(quota_set_account(conn, "no@example.com", 1, 1, false, err, sizeof err),
                     DIR_ENOTFOUND);
    assert_int_equal(
        quota_set_domain(conn, "nowhere.org", 1, 1, QUOTA_KEEP, QUOTA_KEEP, false, err, sizeof err),
        DIR_ENOTFOUND);
    assert_int_equal(
        quota_set_domain(conn, "nowhere.org", QUOTA_KEEP, QUOTA_KEEP, 1, 1, false, err, sizeof err),
        DIR_ENOTFOUND);
    assert_int_equal(quota_get(conn, "no@example.com", &q, err, sizeof err), DIR_ENOTFOUND);
    assert_int_equal(quota_get(conn, "bad", &q, err, sizeof err), DIR_ENOTFOUND);
    assert_int_equal(quota_get_domain(conn, "nowhere.org", &d, err, sizeof err), DIR_ENOTFOUND);
    assert_int_equal(quota_get(conn, "alice@example.com", &q, err, sizeof err), 0);
    assert_int_equal(q.messages_limit, 7);
    assert_idle();
}

static void test_quota_charge_account(void **state)
{
    char err[256];
    long long alice = account_id("alice@example.com");
    struct quota_info q;
    assert_int_equal(quota_set_account(conn, "alice@example.com", 1000, 10, false, err, sizeof err),
                     0);

    /* A first charge above the limit, with no usage row yet. */
    err[0] = '\0';
    assert_int_equal(quota_charge(conn, alice, 1001, 1, true, err, sizeof err), QUOTA_EXCEEDED);
    assert_contains(err, "quota exceeded");
    assert_int_equal(count("SELECT count(*) FROM quota_usage"), 0);

    /* Up to exactly the limit, then one byte over. */
    assert_int_equal(quota_charge(conn, alice, 600, 1, true, err, sizeof err), 0);
    assert_int_equal(quota_charge(conn, alice, 400, 1, true, err, sizeof err), 0);
    assert_idle();
    assert_int_equal(quota_get(conn, "alice@example.com", &q, err, sizeof err), 0);
    assert_int_equal(q.bytes_used, 1000);
    assert_int_equal(q.messages_used, 2);
    assert_int_equal(quota_charge(conn, alice, 1, 1, true, err, sizeof err), QUOTA_EXCEEDED);
    assert_int_equal(quota_get(conn, "alice@example.com", &q, err, sizeof err), 0);
    assert_int_equal(q.bytes_used, 1000);
    assert_int_equal(q.messages_used, 2);

    /* Growing only messages is fine while bytes are full. */
    assert_int_equal(quota_charge(conn, alice, 0, 8, true, err, sizeof err), 0);
    assert_int_equal(quota_charge(conn, alice, 0, 1, true, err, sizeof err), QUOTA_EXCEEDED);

    /* Releases always work and never go below zero. */
    assert_int_equal(quota_charge(conn, alice, -300, -3, true, err, sizeof err), 0);
    assert_int_equal(quota_charge(conn, alice, 300, 3, true, err, sizeof err), 0);
    assert_int_equal(quota_charge(conn, alice, 1, 0, true, err, sizeof err), QUOTA_EXCEEDED);

    /* Without enforce the charge is applied anyway. */
    assert_int_equal(quota_charge(conn, alice, 500, 5, false, err, sizeof err), 0);
    assert_int_equal(quota_get(conn, "alice@example.com", &q, err, sizeof err), 0);
    assert_int_equal(q.bytes_used, 1500);
    assert_int_equal(q.messages_used, 15);
    assert_int_equal(quota_charge(conn, alice, -99999, -99, true, err, sizeof err), 0);
    assert_int_equal(quota_get(conn, "alice@example.com", &q, err, sizeof err), 0);
    assert_int_equal(q.bytes_used, 0);
    assert_int_equal(q.messages_used, 0);

    /* Unlimited (0) takes anything. */
    assert_int_equal(quota_set_account(conn, "alice@example.com", 0, 0, false, err, sizeof err), 0);
    assert_int_equal(quota_charge(conn, alice, 1LL << 40, 1000000, true, err, sizeof err), 0);

    /* Unknown accounts and out-of-range charges. */
    assert_int_equal(quota_charge(conn, 999999, 1, 1, true, err, sizeof err), DIR_ENOTFOUND);
    assert_int_equal(quota_charge(conn, alice, QUOTA_VALUE_MAX + 1, 0, true, err, sizeof err), -1);
    assert_idle();
}

static void test_quota_charge_domain(void **state)
{
    char err[256];
    long long alice = account_id("alice@example.com");
    long long bob = account_id("bob@example.com");
    long long dave = account_id("dave@other.org");
    assert_int_equal(quota_set_domain(conn, "example.com", 1500, 3, QUOTA_KEEP, QUOTA_KEEP, false,
                                      err, sizeof err),
                     0);

    assert_int_equal(quota_charge(conn, alice, 1000, 1, true, err, sizeof err), 0);
    assert_int_equal(quota_charge(conn, bob, 500, 1, true, err, sizeof err), 0);
    err[0] = '\0';
    assert_int_equal(quota_charge(conn, bob, 1, 0, true, err, sizeof err), QUOTA_EXCEEDED);
    assert_contains(err, "domain bytes");
    assert_int_equal(quota_charge(conn, alice, 0, 1, true, err, sizeof err), 0);
    assert_int_equal(quota_charge(conn, bob, 0, 1, true, err, sizeof err), QUOTA_EXCEEDED);
    /* Another domain is not limited. */
    assert_int_equal(quota_charge(conn, dave, 100000, 100, true, err, sizeof err), 0);
    /* Freeing space in the domain makes room for another account. */
    assert_int_equal(quota_charge(conn, alice, -100, -1, true, err, sizeof err), 0);
    assert_int_equal(quota_charge(conn, bob, 100, 1, true, err, sizeof err), 0);

    struct quota_domain_info d;
    assert_int_equal(quota_get_domain(conn, "example.com", &d, err, sizeof err), 0);
    assert_int_equal(d.bytes_used, 1500);
    assert_int_equal(d.messages_used, 3);
    struct quota_info q;
    assert_int_equal(quota_get(conn, "bob@example.com", &q, err, sizeof err), 0);
    assert_int_equal(q.domain_bytes_used, 1500);
    assert_int_equal(q.bytes_used, 600);
    assert_idle();
}

static void test_quota_charge_in_transaction(void **state)
{
    char err[256];
    long long alice = account_id("alice@example.com");
    assert_int_equal(quota_set_account(conn, "alice@example.com", 100, 0, false, err, sizeof err),
                     0);

    /* Inside the caller's transaction: rolled back with it. */
    assert_int_equal(db_begin(conn), 0);
    assert_int_equal(quota_charge(conn, alice, 60, 1, true, err, sizeof err), 0);
    assert_int_equal(PQtransactionStatus(conn), PQTRANS_INTRANS);
    db_rollback(conn);
    struct quota_info q;
    assert_int_equal(quota_get(conn, "alice@example.com", &q, err, sizeof err), 0);
    assert_int_equal(q.bytes_used, 0);

    /* A refused charge leaves the transaction usable. */
    assert_int_equal(db_begin(conn), 0);
    assert_int_equal(quota_charge(conn, alice, 60, 1, true, err, sizeof err), 0);
    assert_int_equal(quota_charge(conn, alice, 41, 1, true, err, sizeof err), QUOTA_EXCEEDED);
    assert_int_equal(PQtransactionStatus(conn), PQTRANS_INTRANS);
    assert_int_equal(quota_charge(conn, alice, 40, 1, true, err, sizeof err), 0);
    assert_int_equal(db_commit(conn), 0);
    assert_int_equal(quota_get(conn, "alice@example.com", &q, err, sizeof err), 0);
    assert_int_equal(q.bytes_used, 100);
    assert_int_equal(q.messages_used, 2);
}

struct charger {
    const char *dbname;
    long long account;
    int ok;
};

static void *charger_main(void *arg)
{
    struct charger *ch = arg;
    char ci[2048], err[256];
    testdb_conninfo(ch->dbname, ci, sizeof ci);
    PGconn *c = db_connect(ci, 0, err, sizeof err);
    if (c == NULL)
        return NULL;
    for (int i = 0; i < 20; i++)
        if (quota_charge(c, ch->account, 10, 1, true, err, sizeof err) == 0)
            ch->ok++;
    PQfinish(c);
    return NULL;
}

/* Concurrent charges never pass the domain total together. */
static void test_quota_charge_concurrent(void **state)
{
    char err[256];
    assert_int_equal(quota_set_domain(conn, "example.com", 250, 0, QUOTA_KEEP, QUOTA_KEEP, false,
                                      err, sizeof err),
                     0);
    struct charger ch[3] = {{testdb_name(), account_id("alice@example.com"), 0},
                            {testdb_name(), account_id("bob@example.com"), 0},
                            {testdb_name(), account_id("carol@example.com"), 0}};
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&th[i], NULL, charger_main, &ch[i]), 0);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(ch[0].ok + ch[1].ok + ch[2].ok, 25);
    struct quota_domain_info d;
    assert_int_equal(quota_get_domain(conn, "example.com", &d, err, sizeof err), 0);
    assert_int_equal(d.bytes_used, 250);
}

static void test_quota_below_usage(void **state)
{
    char err[256];
    long long alice = account_id("alice@example.com");
    long long bob = account_id("bob@example.com");
    long long dave = account_id("dave@other.org");
    assert_int_equal(quota_charge(conn, alice, 800, 8, true, err, sizeof err), 0);
    assert_int_equal(quota_charge(conn, bob, 300, 3, true, err, sizeof err), 0);
    assert_int_equal(quota_charge(conn, dave, 50, 1, true, err, sizeof err), 0);
    struct quota_info q;

    /* Account. */
    err[0] = '\0';
    assert_int_equal(
        quota_set_account(conn, "alice@example.com", 500, QUOTA_KEEP, false, err, sizeof err),
        QUOTA_EBELOWUSAGE);
    assert_contains(err, "quota below usage");
    assert_contains(err, "Alice@example.com uses 800 bytes");
    assert_int_equal(quota_get(conn, "alice@example.com", &q, err, sizeof err), 0);
    assert_int_equal(q.bytes_limit, 0);
    assert_int_equal(quota_set_account(conn, "alice@example.com", 800, 8, false, err, sizeof err),
                     0); /* exactly the usage is fine */
    err[0] = '\0';
    assert_int_equal(
        quota_set_account(conn, "alice@example.com", QUOTA_KEEP, 7, false, err, sizeof err),
        QUOTA_EBELOWUSAGE);
    assert_contains(err, "8 messages");
    assert_int_equal(
        quota_set_account(conn, "alice@example.com", 500, QUOTA_KEEP, true, err, sizeof err), 0);
    assert_int_equal(quota_get(conn, "alice@example.com", &q, err, sizeof err), 0);
    assert_int_equal(q.bytes_limit, 500);
    /* Changing the other dimension is not blocked by the forced one. */
    assert_int_equal(
        quota_set_account(conn, "alice@example.com", QUOTA_KEEP, 20, false, err, sizeof err), 0);

    /* Domain total. */
    err[0] = '\0';
    assert_int_equal(quota_set_domain(conn, "example.com", 1000, QUOTA_KEEP, QUOTA_KEEP, QUOTA_KEEP,
                                      false, err, sizeof err),
                     QUOTA_EBELOWUSAGE);
    assert_contains(err, "domain example.com uses 1100 bytes");
    assert_int_equal(quota_set_domain(conn, "example.com", QUOTA_KEEP, 10, QUOTA_KEEP, QUOTA_KEEP,
                                      false, err, sizeof err),
                     QUOTA_EBELOWUSAGE);
    assert_int_equal(quota_set_domain(conn, "example.com", 1100, 11, QUOTA_KEEP, QUOTA_KEEP, false,
                                      err, sizeof err),
                     0);
    assert_int_equal(quota_set_domain(conn, "example.com", 1000, QUOTA_KEEP, QUOTA_KEEP, QUOTA_KEEP,
                                      true, err, sizeof err),
                     0);

    /* Domain default: bob (300 bytes) takes it, alice has her own value. */
    err[0] = '\0';
    assert_int_equal(quota_set_domain(conn, "example.com", QUOTA_KEEP, QUOTA_KEEP, 200, QUOTA_KEEP,
                                      false, err, sizeof err),
                     QUOTA_EBELOWUSAGE);
    assert_contains(err, "bob@example.com uses 300 bytes");
    assert_int_equal(quota_set_domain(conn, "example.com", QUOTA_KEEP, QUOTA_KEEP, 300, QUOTA_KEEP,
                                      false, err, sizeof err),
                     0);

    /* One call is one transaction: a refused default undoes the totals. */
    struct quota_domain_info d;
    assert_int_equal(quota_set_domain(conn, "example.com", 9999, QUOTA_KEEP, 100, QUOTA_KEEP, false,
                                      err, sizeof err),
                     QUOTA_EBELOWUSAGE);
    assert_int_equal(quota_set_domain(conn, "example.com", 9999, QUOTA_KEEP, -5, QUOTA_KEEP, false,
                                      err, sizeof err),
                     -1);
    assert_int_equal(quota_get_domain(conn, "example.com", &d, err, sizeof err), 0);
    assert_int_equal(d.bytes_limit, 1000);
    assert_int_equal(d.account_bytes, 300);
    assert_int_equal(d.bytes_used, 1100);

    /* Server default: only dave (50 bytes, no domain default) takes it. */
    err[0] = '\0';
    assert_int_equal(quota_set_server(conn, 40, QUOTA_KEEP, false, err, sizeof err),
                     QUOTA_EBELOWUSAGE);
    assert_contains(err, "dave@other.org");
    assert_int_equal(quota_set_server(conn, 50, QUOTA_KEEP, false, err, sizeof err), 0);
    struct quota_server_info s;
    assert_int_equal(quota_get_server(conn, &s, err, sizeof err), 0);
    assert_int_equal(s.account_bytes, 50);
    assert_int_equal(quota_set_server(conn, 10, QUOTA_KEEP, true, err, sizeof err), 0);
    assert_idle();
}

/* ---- policies ---- */

static void test_service_policy(void **state)
{
    char err[256];
    long long alice = account_id("alice@example.com");
    long long dave = account_id("dave@other.org");
    bool allowed = false;

    /* Default: enabled. */
    for (int i = 0; i < POLICY_SERVICE_COUNT; i++) {
        assert_int_equal(
            policy_service_allowed(conn, alice, policy_services[i], &allowed, err, sizeof err), 0);
        assert_true(allowed);
    }

    /* Domain disables, accounts inherit. */
    assert_int_equal(
        policy_set_domain(conn, "example.net", "imap", POLICY_DISABLED, err, sizeof err), 0);
    assert_idle();
    assert_int_equal(policy_service_allowed(conn, alice, "imap", &allowed, err, sizeof err), 0);
    assert_false(allowed);
    assert_int_equal(policy_service_allowed(conn, alice, "pop3", &allowed, err, sizeof err), 0);
    assert_true(allowed);
    assert_int_equal(policy_service_allowed(conn, dave, "imap", &allowed, err, sizeof err), 0);
    assert_true(allowed);

    /* Account overrides, both ways. */
    assert_int_equal(
        policy_set_account(conn, "alice@example.com", "imap", POLICY_ENABLED, err, sizeof err), 0);
    assert_int_equal(policy_service_allowed(conn, alice, "imap", &allowed, err, sizeof err), 0);
    assert_true(allowed);
    assert_int_equal(
        policy_set_account(conn, "dave@other.org", "activesync", POLICY_DISABLED, err, sizeof err),
        0);
    assert_int_equal(policy_service_allowed(conn, dave, "activesync", &allowed, err, sizeof err),
                     0);
    assert_false(allowed);
    /* Setting the same state again is fine. */
    assert_int_equal(
        policy_set_account(conn, "dave@other.org", "activesync", POLICY_DISABLED, err, sizeof err),
        0);

    struct policy_service ps[POLICY_SERVICE_COUNT];
    assert_int_equal(policy_get_account(conn, "alice@example.com", ps, err, sizeof err), 0);
    assert_string_equal(ps[0].service, "imap");
    assert_int_equal(ps[0].domain, POLICY_DISABLED);
    assert_int_equal(ps[0].account, POLICY_ENABLED);
    assert_true(ps[0].allowed);
    assert_string_equal(ps[3].service, "activesync");
    assert_int_equal(ps[3].domain, POLICY_INHERIT);
    assert_int_equal(ps[3].account, POLICY_INHERIT);
    assert_true(ps[3].allowed);
    assert_int_equal(policy_get_domain(conn, "example.com", ps, err, sizeof err), 0);
    assert_int_equal(ps[0].domain, POLICY_DISABLED);
    assert_false(ps[0].allowed);
    assert_true(ps[1].allowed);

    /* Inherit removes the setting at that level. */
    assert_int_equal(
        policy_set_account(conn, "alice@example.com", "imap", POLICY_INHERIT, err, sizeof err), 0);
    assert_int_equal(policy_service_allowed(conn, alice, "imap", &allowed, err, sizeof err), 0);
    assert_false(allowed);
    assert_int_equal(
        policy_set_domain(conn, "example.com", "imap", POLICY_INHERIT, err, sizeof err), 0);
    assert_int_equal(policy_service_allowed(conn, alice, "imap", &allowed, err, sizeof err), 0);
    assert_true(allowed);
    assert_int_equal(count("SELECT count(*) FROM domain_service_policies"), 0);

    /* Rejections. */
    err[0] = '\0';
    assert_int_equal(
        policy_set_domain(conn, "example.com", "ftp", POLICY_DISABLED, err, sizeof err), -1);
    assert_contains(err, "unknown service");
    assert_int_equal(
        policy_set_account(conn, "alice@example.com", "IMAP", POLICY_DISABLED, err, sizeof err),
        -1);
    assert_int_equal(
        policy_set_account(conn, "alice@example.com", NULL, POLICY_DISABLED, err, sizeof err), -1);
    assert_int_equal(policy_service_allowed(conn, alice, "gopher", &allowed, err, sizeof err), -1);
    assert_int_equal(
        policy_set_domain(conn, "nowhere.org", "imap", POLICY_DISABLED, err, sizeof err),
        DIR_ENOTFOUND);
    assert_int_equal(
        policy_set_account(conn, "no@example.com", "imap", POLICY_DISABLED, err, sizeof err),
        DIR_ENOTFOUND);
    assert_int_equal(policy_get_domain(conn, "nowhere.org", ps, err, sizeof err), DIR_ENOTFOUND);
    assert_int_equal(policy_get_account(conn, "no@example.com", ps, err, sizeof err),
                     DIR_ENOTFOUND);
    assert_int_equal(policy_service_allowed(conn, 999999, "imap", &allowed, err, sizeof err),
                     DIR_ENOTFOUND);
    enum policy_state st;
    assert_int_equal(policy_state_parse("enabled", &st, err, sizeof err), 0);
    assert_int_equal(st, POLICY_ENABLED);
    assert_int_equal(policy_state_parse("on", &st, err, sizeof err), -1);
    assert_int_equal(count("SELECT count(*) FROM account_service_policies"), 1);
    assert_idle();
}

static void test_login_policy(void **state)
{
    char err[256];
    struct dir_account a;
    enum policy_login lp;
    assert_int_equal(policy_login_get(conn, &lp, err, sizeof err), 0);
    assert_int_equal(lp, POLICY_LOGIN_FULL_ADDRESS);

    /* Full address: the address, a domain alias, or an alias of the account;
     * never a catch-all, never a bare local part. */
    assert_int_equal(dir_alias_add(conn, "info@example.com", "alice@example.com", err, sizeof err),
                     0);
    assert_int_equal(
        dir_domain_set_catchall(conn, "example.com", "alice@example.com", err, sizeof err), 0);
    assert_int_equal(dir_authenticate(conn, "alice@example.com", "alice secret", &a), 0);
    memset(&a, 0, sizeof a);
    assert_int_equal(dir_authenticate(conn, "INFO@example.net", "alice secret", &a), 0);
    assert_string_equal(a.address, "Alice@example.com");
    assert_int_equal(dir_authenticate(conn, "info@example.com", "wrong", &a), -1);
    assert_int_equal(dir_authenticate(conn, "random@example.com", "alice secret", &a), -1);
    assert_int_equal(dir_authenticate(conn, "alice", "alice secret", &a), -1);
    assert_int_equal(dir_authenticate(conn, "dave", "dave secret", &a), -1);

    /* Bare local parts when unambiguous. */
    assert_int_equal(policy_login_parse("local_part_when_unambiguous", &lp, err, sizeof err), 0);
    assert_int_equal(policy_login_set(conn, lp, err, sizeof err), 0);
    assert_int_equal(policy_login_get(conn, &lp, err, sizeof err), 0);
    assert_string_equal(policy_login_name(lp), "local_part_when_unambiguous");
    memset(&a, 0, sizeof a);
    assert_int_equal(dir_authenticate(conn, "DAVE", "dave secret", &a), 0);
    assert_string_equal(a.address, "dave@other.org");
    assert_int_equal(dir_authenticate(conn, "alice", "alice secret", &a), 0);
    assert_int_equal(dir_authenticate(conn, "alice", "wrong secret", &a), -1);
    /* bob is in two domains: ambiguous, refused even with either password. */
    assert_int_equal(dir_authenticate(conn, "bob", "bob secret", &a), -1);
    assert_int_equal(dir_authenticate(conn, "bob", "other bob secret", &a), -1);
    assert_int_equal(dir_authenticate(conn, "bob@example.com", "bob secret", &a), 0);
    assert_int_equal(dir_authenticate(conn, "bob@other.org", "other bob secret", &a), 0);
    /* Alias local parts are not bare logins; neither are malformed ones. */
    assert_int_equal(dir_authenticate(conn, "info", "alice secret", &a), -1);
    assert_int_equal(dir_authenticate(conn, "a..b", "alice secret", &a), -1);
    assert_int_equal(dir_authenticate(conn, "", "alice secret", &a), -1);
    /* Once bob is unique, his local part works. */
    char err2[256];
    assert_int_equal(dir_account_delete(conn, "bob@other.org", err2, sizeof err2), 0);
    assert_int_equal(dir_authenticate(conn, "bob", "bob secret", &a), 0);
    /* Disabled still means no. */
    assert_int_equal(dir_account_set_disabled(conn, "dave@other.org", true, err, sizeof err), 0);
    assert_int_equal(dir_authenticate(conn, "dave", "dave secret", &a), -1);

    assert_int_equal(policy_login_parse("local_part", &lp, err, sizeof err), -1);
    assert_int_equal(policy_login_set(conn, (enum policy_login)42, err, sizeof err), -1);
    assert_int_equal(policy_login_set(conn, POLICY_LOGIN_FULL_ADDRESS, err, sizeof err), 0);
    assert_int_equal(dir_authenticate(conn, "bob", "bob secret", &a), -1);
}

/* ---- directory cache ---- */

static struct dir_target target_for(long long id, const char *address)
{
    struct dir_target t;
    memset(&t, 0, sizeof t);
    t.account.id = id;
    snprintf(t.account.address, sizeof t.account.address, "%s", address);
    snprintf(t.account.kind, sizeof t.account.kind, "user");
    t.via = DIR_VIA_ACCOUNT;
    return t;
}

static void test_cache_basics(void **state)
{
    dircache_configure(3, 60000);
    struct dircache_stats st;
    struct dir_target t = target_for(7, "a@x.org"), out;
    int rc = 99;

    assert_false(dircache_lookup("a@x.org", &rc, &out));
    uint64_t g = dircache_generation();
    dircache_store("A@X.org", g, 0, &t);
    memset(&out, 0, sizeof out);
    assert_true(dircache_lookup("a@X.ORG", &rc, &out));
    assert_int_equal(rc, 0);
    assert_int_equal(out.account.id, 7);
    assert_string_equal(out.account.address, "a@x.org");

    /* Negative answers are cached; other codes are not. */
    dircache_store("nobody@x.org", g, DIR_ENOTFOUND, NULL);
    assert_true(dircache_lookup("nobody@x.org", &rc, &out));
    assert_int_equal(rc, DIR_ENOTFOUND);
    dircache_store("broken@x.org", g, -1, NULL);
    assert_false(dircache_lookup("broken@x.org", &rc, &out));
    dircache_store("null@x.org", g, 0, NULL);
    assert_false(dircache_lookup("null@x.org", &rc, &out));

    /* Bounded: the least recently used goes. a@x.org was used last. */
    dircache_store("b@x.org", g, 0, &t);
    assert_true(dircache_lookup("a@x.org", &rc, &out));
    dircache_store("c@x.org", g, 0, &t);
    dircache_get_stats(&st);
    assert_int_equal(st.entries, 3);
    assert_int_equal(st.evictions, 1);
    assert_false(dircache_lookup("nobody@x.org", &rc, &out));
    assert_true(dircache_lookup("a@x.org", &rc, &out));
    assert_true(dircache_lookup("b@x.org", &rc, &out));
    assert_true(dircache_lookup("c@x.org", &rc, &out));
    /* Storing an existing key replaces it without eviction. */
    struct dir_target t2 = target_for(8, "a2@x.org");
    dircache_store("a@x.org", g, 0, &t2);
    assert_true(dircache_lookup("a@x.org", &rc, &out));
    assert_int_equal(out.account.id, 8);
    dircache_get_stats(&st);
    assert_int_equal(st.entries, 3);
    assert_int_equal(st.evictions, 1);

    /* Single invalidation starts a new generation: an answer read before it
     * is not stored. */
    dircache_invalidate("B@x.org");
    assert_false(dircache_lookup("b@x.org", &rc, &out));
    assert_true(dircache_lookup("c@x.org", &rc, &out));
    dircache_store("b@x.org", g, 0, &t);
    assert_false(dircache_lookup("b@x.org", &rc, &out));
    g = dircache_generation();
    dircache_store("b@x.org", g, 0, &t);
    assert_true(dircache_lookup("b@x.org", &rc, &out));

    /* Everything, without the hook. */
    hook_calls = 0;
    dircache_set_invalidation_hook(count_hook);
    dircache_invalidate_all();
    assert_int_equal(hook_calls, 0);
    dircache_get_stats(&st);
    assert_int_equal(st.entries, 0);
    assert_false(dircache_lookup("a@x.org", &rc, &out));

    dircache_get_stats(&st);
    assert_true(st.hits > 0 && st.misses > 0);

    /* Expiry (configure also resets the counters). */
    dircache_configure(3, 300);
    g = dircache_generation();
    dircache_store("a@x.org", g, 0, &t);
    assert_true(dircache_lookup("a@x.org", &rc, &out));
    sleep_ms(400);
    assert_false(dircache_lookup("a@x.org", &rc, &out));
    dircache_get_stats(&st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.misses, 1);

    /* Too long for any address: never stored, never found. */
    char longaddr[DIR_ADDRESS_SIZE + 10];
    memset(longaddr, 'a', sizeof longaddr - 1);
    longaddr[sizeof longaddr - 1] = '\0';
    dircache_store(longaddr, dircache_generation(), 0, &t);
    assert_false(dircache_lookup(longaddr, &rc, &out));
    assert_false(dircache_lookup(NULL, &rc, &out));
    dircache_invalidate(NULL);
}

static void test_cache_directory(void **state)
{
    char err[256];
    struct dir_target t;
    dircache_configure(100, 60000);
    hook_calls = 0;
    dircache_set_invalidation_hook(count_hook);

    assert_int_equal(dircache_resolve(conn, "bob@example.com", &t, err, sizeof err), 0);
    assert_string_equal(t.account.address, "bob@example.com");
    assert_int_equal(dircache_resolve(conn, "ghost@example.com", &t, err, sizeof err),
                     DIR_ENOTFOUND);
    struct dircache_stats st;
    dircache_get_stats(&st);
    assert_int_equal(st.entries, 2);

    /* A change behind the directory's back is not seen while cached... */
    sql1(conn,
         "UPDATE accounts SET local_part = 'robert' WHERE local_part = 'bob'"
         " AND domain_id = (SELECT id FROM domains WHERE name = 'example.com')",
         NULL, NULL);
    assert_int_equal(dircache_resolve(conn, "bob@example.com", &t, err, sizeof err), 0);
    dircache_get_stats(&st);
    assert_int_equal(st.hits, 1);

    /* ...but any directory write drops the cache and calls the hook. */
    assert_int_equal(dir_alias_add(conn, "ghost@example.com", "alice@example.com", err, sizeof err),
                     0);
    assert_int_equal(hook_calls, 1);
    dircache_get_stats(&st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(dircache_resolve(conn, "bob@example.com", &t, err, sizeof err), DIR_ENOTFOUND);
    assert_int_equal(dircache_resolve(conn, "ghost@example.com", &t, err, sizeof err), 0);
    assert_int_equal(t.via, DIR_VIA_ALIAS);
    assert_int_equal(dircache_resolve(conn, "ghost@example.com", &t, err, sizeof err), 0);
    assert_string_equal(t.account.address, "Alice@example.com");

    /* Every kind of write calls the hook once it committed; failed writes
     * and reads do not. */
    int before = hook_calls;
    assert_int_equal(
        dir_domain_set_catchall(conn, "example.com", "carol@example.com", err, sizeof err), 0);
    assert_int_equal(dir_group_add(conn, "g@example.com", NULL, NULL, err, sizeof err), 0);
    assert_int_equal(
        policy_set_domain(conn, "example.com", "dav", POLICY_DISABLED, err, sizeof err), 0);
    assert_int_equal(quota_set_server(conn, 5, 5, false, err, sizeof err), 0);
    assert_int_equal(
        dir_account_add(conn, "new@example.com", NULL, NULL, NULL, false, err, sizeof err), 0);
    assert_int_equal(dir_account_set_disabled(conn, "new@example.com", true, err, sizeof err), 0);
    assert_int_equal(hook_calls, before + 6);
    assert_int_equal(dir_alias_add(conn, "ghost@example.com", "alice@example.com", err, sizeof err),
                     DIR_EEXIST);
    assert_int_equal(dir_domain_add(conn, "example.com", err, sizeof err), DIR_EEXIST);
    struct dir_forward f;
    assert_int_equal(dir_forward_get(conn, "alice@example.com", &f, err, sizeof err), 0);
    assert_int_equal(
        quota_charge(conn, account_id("alice@example.com"), 1, 1, false, err, sizeof err), 0);
    assert_int_equal(hook_calls, before + 6);
    dircache_set_invalidation_hook(NULL);
}

#define CACHE_THREADS 8
#define CACHE_OPS 20000

struct cache_worker {
    unsigned seed;
    uint64_t lookups;
    int wrong;
};

static void *cache_worker_main(void *arg)
{
    struct cache_worker *w = arg;
    char addr[32];
    for (int i = 0; i < CACHE_OPS; i++) {
        int k = (int)(rand_r(&w->seed) % 200);
        snprintf(addr, sizeof addr, "u%d@x.org", k);
        int op = (int)(rand_r(&w->seed) % 100);
        if (op < 60) {
            int rc;
            struct dir_target t;
            w->lookups++;
            /* Whatever is found must be what was stored for that key. */
            if (dircache_lookup(addr, &rc, &t) && (rc != 0 || t.account.id != k))
                w->wrong++;
        } else if (op < 97) {
            struct dir_target t = target_for(k, addr);
            dircache_store(addr, dircache_generation(), 0, &t);
        } else if (op < 99) {
            dircache_invalidate(addr);
        } else {
            dircache_invalidate_all();
        }
    }
    return NULL;
}

static void test_cache_threads(void **state)
{
    dircache_configure(64, 60000);
    struct cache_worker w[CACHE_THREADS];
    pthread_t th[CACHE_THREADS];
    for (int i = 0; i < CACHE_THREADS; i++) {
        w[i] = (struct cache_worker){.seed = (unsigned)i * 7919u + 1u};
        assert_int_equal(pthread_create(&th[i], NULL, cache_worker_main, &w[i]), 0);
    }
    uint64_t lookups = 0;
    for (int i = 0; i < CACHE_THREADS; i++) {
        pthread_join(th[i], NULL);
        lookups += w[i].lookups;
        assert_int_equal(w[i].wrong, 0);
    }
    struct dircache_stats st;
    dircache_get_stats(&st);
    assert_true(st.entries <= 64);
    assert_true(st.hits + st.misses == lookups);
    assert_true(st.hits > 0);
    assert_true(st.evictions > 0);
    dircache_invalidate_all();
    dircache_get_stats(&st);
    assert_int_equal(st.entries, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_alias_add, dir_setup),
        cmocka_unit_test_setup(test_alias_remove_and_cascade, dir_setup),
        cmocka_unit_test_setup(test_alias_limit, dir_setup),
        cmocka_unit_test_setup(test_domain_alias, dir_setup),
        cmocka_unit_test_setup(test_resolve_order, dir_setup),
        cmocka_unit_test_setup(test_forward, dir_setup),
        cmocka_unit_test_setup(test_group_members, dir_setup),
        cmocka_unit_test_setup(test_group_cycles, dir_setup),
        cmocka_unit_test_setup(test_group_expand, dir_setup),
        cmocka_unit_test_setup(test_resources, dir_setup),
        cmocka_unit_test(test_quota_parse),
        cmocka_unit_test_setup(test_quota_levels, dir_setup),
        cmocka_unit_test_setup(test_quota_charge_account, dir_setup),
        cmocka_unit_test_setup(test_quota_charge_domain, dir_setup),
        cmocka_unit_test_setup(test_quota_charge_in_transaction, dir_setup),
        cmocka_unit_test_setup(test_quota_charge_concurrent, dir_setup),
        cmocka_unit_test_setup(test_quota_below_usage, dir_setup),
        cmocka_unit_test_setup(test_service_policy, dir_setup),
        cmocka_unit_test_setup(test_login_policy, dir_setup),
        cmocka_unit_test_setup(test_cache_basics, dir_setup),
        cmocka_unit_test_setup(test_cache_directory, dir_setup),
        cmocka_unit_test_setup(test_cache_threads, dir_setup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
