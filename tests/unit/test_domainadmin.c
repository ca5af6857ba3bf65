/* layer: storage */
/* Tests for storage/domainadmin (domain administrators and the admin scope
 * checks), storage/dirview (domain listings with aliases and counts, the
 * groups an account is in) and storage/apisession (XML API sessions and RSA
 * keys) against a real PostgreSQL. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/aliases.h"
#include "storage/apisession.h"
#include "storage/directory.h"
#include "storage/dirview.h"
#include "storage/domainadmin.h"
#include "storage/groups.h"
#include "storage/quota.h"
#include "support/testdb.h"

static PGconn *conn;

static void ok(int rc, const char *err)
{
    if (rc != 0)
        fail_msg("rc %d: %s", rc, err);
}

static struct dir_account find(const char *address)
{
    char err[256];
    struct dir_account a;
    ok(dir_account_find(conn, address, &a, err, sizeof(err)), err);
    return a;
}

static void exec(const char *sql)
{
    PQclear(testdb_exec(conn, sql));
}

static int setup(void **state)
{
    exec("TRUNCATE domains, accounts, vendorapi_sessions, vendorapi_keys RESTART IDENTITY CASCADE");
    char err[256];
    ok(dir_domain_add(conn, "one.test", err, sizeof(err)), err);
    ok(dir_domain_add(conn, "two.test", err, sizeof(err)), err);
    ok(dir_domain_alias_add(conn, "uno.test", "one.test", err, sizeof(err)), err);
    ok(dir_account_add(conn, "boss@one.test", "user", "pw-123456", "Boss", false, err, sizeof(err)),
       err);
    ok(dir_account_add(conn, "root@two.test", "user", "pw-123456", "Root", true, err, sizeof(err)),
       err);
    ok(dir_account_add(conn, "ann@one.test", "user", "pw-123456", "Ann", false, err, sizeof(err)),
       err);
    ok(dir_account_add(conn, "bob@two.test", "user", "pw-123456", "Bob", false, err, sizeof(err)),
       err);
    return 0;
}

static int collect_name(const char *name, void *ctx)
{
    char *buf = ctx;
    strcat(buf, name);
    strcat(buf, ";");
    return 0;
}

static int collect_account(const struct dir_account *a, void *ctx)
{
    char *buf = ctx;
    strcat(buf, a->address);
    strcat(buf, ";");
    return 0;
}

static void test_add_list_remove(void **state)
{
    char err[256], buf[512] = "";
    ok(dir_domain_admin_add(conn, "boss@one.test", "one.test", err, sizeof(err)), err);
    /* a domain alias names the same domain: already there */
    assert_int_equal(dir_domain_admin_add(conn, "boss@one.test", "uno.test", err, sizeof(err)),
                     DIR_EEXIST);
    assert_non_null(strstr(err, "already administers"));
    ok(dir_domain_admin_add(conn, "BOSS@uno.test", "two.test", err, sizeof(err)), err);
    ok(dir_domain_admin_list(conn, "boss@one.test", collect_name, buf, err, sizeof(err)), err);
    assert_string_equal(buf, "one.test;two.test;");
    buf[0] = '\0';
    ok(dir_domain_admins(conn, "uno.test", collect_account, buf, err, sizeof(err)), err);
    assert_string_equal(buf, "boss@one.test;");

    struct dir_account boss = find("boss@one.test");
    long long one_id = 0, two_id = 0;
    ok(dir_domain_lookup(conn, "one.test", &one_id, NULL, err, sizeof(err)), err);
    ok(dir_domain_lookup(conn, "two.test", &two_id, NULL, err, sizeof(err)), err);
    assert_int_equal(dir_is_domain_admin(conn, boss.id, one_id), 1);
    long long n = -1;
    ok(dir_domain_admin_count(conn, boss.id, &n, err, sizeof(err)), err);
    assert_int_equal(n, 2);

    ok(dir_domain_admin_remove(conn, "boss@one.test", "two.test", err, sizeof(err)), err);
    assert_int_equal(dir_is_domain_admin(conn, boss.id, two_id), 0);
    assert_int_equal(dir_domain_admin_remove(conn, "boss@one.test", "two.test", err, sizeof(err)),
                     DIR_ENOTFOUND);
    assert_non_null(strstr(err, "does not administer"));
    buf[0] = '\0';
    ok(dir_domain_admin_list(conn, "boss@one.test", collect_name, buf, err, sizeof(err)), err);
    assert_string_equal(buf, "one.test;");
}

static void test_refusals(void **state)
{
    char err[256];
    assert_int_equal(dir_domain_admin_add(conn, "nobody@one.test", "one.test", err, sizeof(err)),
                     DIR_ENOTFOUND);
    assert_int_equal(dir_domain_admin_add(conn, "boss@one.test", "nowhere.test", err, sizeof(err)),
                     DIR_ENOTFOUND);
    assert_int_equal(dir_domain_admin_add(conn, "boss@one.test", "not a domain", err, sizeof(err)),
                     DIR_ENOTFOUND);
    ok(dir_group_add(conn, "staff@one.test", "Staff", NULL, err, sizeof(err)), err);
    assert_int_equal(dir_domain_admin_add(conn, "staff@one.test", "one.test", err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "only users"));
    assert_int_equal(
        dir_domain_admin_list(conn, "nobody@one.test", collect_name, NULL, err, sizeof(err)),
        DIR_ENOTFOUND);
    assert_int_equal(dir_domain_admin_add(conn, NULL, "one.test", err, sizeof(err)), -1);
}

static void test_cascades(void **state)
{
    char err[256];
    ok(dir_domain_admin_add(conn, "boss@one.test", "two.test", err, sizeof(err)), err);
    ok(dir_account_delete(conn, "bob@two.test", err, sizeof(err)), err);
    ok(dir_domain_admin_add(conn, "ann@one.test", "two.test", err, sizeof(err)), err);
    /* deleting the domain ends its administration; deleting the account ends all of its */
    ok(dir_domain_delete(conn, "two.test", true, err, sizeof(err)), err);
    PGresult *r = testdb_exec(conn, "SELECT count(*) FROM domain_admins");
    assert_string_equal(PQgetvalue(r, 0, 0), "0");
    PQclear(r);
    ok(dir_domain_admin_add(conn, "ann@one.test", "one.test", err, sizeof(err)), err);
    ok(dir_account_delete(conn, "ann@one.test", err, sizeof(err)), err);
    r = testdb_exec(conn, "SELECT count(*) FROM domain_admins");
    assert_string_equal(PQgetvalue(r, 0, 0), "0");
    PQclear(r);
}

static void test_scope(void **state)
{
    char err[256];
    ok(dir_domain_admin_add(conn, "boss@one.test", "one.test", err, sizeof(err)), err);
    ok(dir_account_add(conn, "chief@one.test", "user", "pw-123456", "", true, err, sizeof(err)),
       err);
    struct dir_account boss = find("boss@one.test"), root = find("root@two.test"),
                       ann = find("ann@one.test");

    assert_int_equal(dir_admin_may_domain(conn, &boss, "one.test", err, sizeof(err)), 1);
    assert_int_equal(dir_admin_may_domain(conn, &boss, "UNO.test", err, sizeof(err)), 1);
    assert_int_equal(dir_admin_may_domain(conn, &boss, "two.test", err, sizeof(err)), 0);
    assert_int_equal(dir_admin_may_domain(conn, &boss, "nowhere.test", err, sizeof(err)), 0);
    assert_int_equal(dir_admin_may_domain(conn, &boss, "%%%", err, sizeof(err)), 0);
    assert_int_equal(dir_admin_may_domain(conn, &ann, "one.test", err, sizeof(err)), 0);
    assert_int_equal(dir_admin_may_domain(conn, &root, "nowhere.test", err, sizeof(err)), 1);

    assert_int_equal(dir_admin_may_account(conn, &boss, "ann@one.test", err, sizeof(err)), 1);
    assert_int_equal(dir_admin_may_account(conn, &boss, "ann@uno.test", err, sizeof(err)), 1);
    /* a new account in its domain: yes; in another domain: no */
    assert_int_equal(dir_admin_may_account(conn, &boss, "new@one.test", err, sizeof(err)), 1);
    assert_int_equal(dir_admin_may_account(conn, &boss, "bob@two.test", err, sizeof(err)), 0);
    /* never a server administrator's account, even in its own domain */
    assert_int_equal(dir_admin_may_account(conn, &boss, "chief@one.test", err, sizeof(err)), 0);
    assert_int_equal(dir_admin_may_account(conn, &boss, "no-at-sign", err, sizeof(err)), 0);
    assert_int_equal(dir_admin_may_account(conn, &root, "chief@one.test", err, sizeof(err)), 1);
    /* a disabled administrator manages nothing */
    boss.disabled = true;
    assert_int_equal(dir_admin_may_domain(conn, &boss, "one.test", err, sizeof(err)), 0);
    root.disabled = true;
    assert_int_equal(dir_admin_may_account(conn, &root, "ann@one.test", err, sizeof(err)), 0);
}

struct dom_rows {
    char text[4096];
};

static int collect_info(const struct dir_domain_info *d, void *ctx)
{
    struct dom_rows *rows = ctx;
    char line[1600];
    snprintf(line, sizeof line, "%s<%s>[%s]%lld;", d->name, d->alias_of, d->description,
             d->accounts);
    strcat(rows->text, line);
    return 0;
}

static void test_view_domains(void **state)
{
    char err[256];
    exec("UPDATE domains SET description = 'First' WHERE name = 'one.test'");
    struct dom_rows rows = {""};
    ok(dir_view_domains(conn, 0, collect_info, &rows, err, sizeof(err)), err);
    assert_string_equal(rows.text, "one.test<>[First]2;two.test<>[]2;uno.test<one.test>[First]2;");

    struct dir_account boss = find("boss@one.test");
    memset(&rows, 0, sizeof rows);
    ok(dir_view_domains(conn, boss.id, collect_info, &rows, err, sizeof(err)), err);
    assert_string_equal(rows.text, "");
    ok(dir_domain_admin_add(conn, "boss@one.test", "two.test", err, sizeof(err)), err);
    ok(dir_view_domains(conn, boss.id, collect_info, &rows, err, sizeof(err)), err);
    assert_string_equal(rows.text, "two.test<>[]2;");

    struct dir_domain_info d;
    ok(dir_view_domain(conn, "UNO.test", &d, err, sizeof(err)), err);
    assert_string_equal(d.name, "uno.test");
    assert_string_equal(d.alias_of, "one.test");
    assert_string_equal(d.description, "First");
    assert_int_equal(d.accounts, 2);
    assert_int_equal(dir_view_domain(conn, "nowhere.test", &d, err, sizeof(err)), DIR_ENOTFOUND);
    assert_int_equal(dir_view_domain(conn, "bad domain", &d, err, sizeof(err)), DIR_ENOTFOUND);

    /* a long description is cut to DIR_VIEW_DESC_CHARS characters, never inside one */
    exec("UPDATE domains SET description = repeat('é', 400) WHERE name = 'two.test'");
    ok(dir_view_domain(conn, "two.test", &d, err, sizeof(err)), err);
    assert_int_equal(strlen(d.description), 2 * DIR_VIEW_DESC_CHARS);
}

static int collect_view(const struct dir_view_account *v, void *ctx)
{
    char *buf = ctx, line[512];
    snprintf(line, sizeof line, "%s:%d:%lld/%lld;", v->a.address, v->domain_admin, v->bytes_used,
             v->bytes_limit);
    strcat(buf, line);
    return 0;
}

static void test_view_accounts(void **state)
{
    char err[256], buf[1024] = "";
    ok(dir_domain_admin_add(conn, "boss@one.test", "one.test", err, sizeof(err)), err);
    ok(dir_domain_admin_add(conn, "ann@one.test", "two.test", err, sizeof(err)), err);
    /* limits: the server default, a domain default, an account's own */
    ok(quota_set_server(conn, 1000, QUOTA_KEEP, false, err, sizeof(err)), err);
    ok(dir_account_add(conn, "cy@one.test", "user", NULL, "", false, err, sizeof(err)), err);
    ok(quota_set_account(conn, "cy@one.test", 5000, QUOTA_KEEP, false, err, sizeof(err)), err);
    struct dir_account ann = find("ann@one.test");
    ok(quota_charge(conn, ann.id, 300, 1, false, err, sizeof(err)), err);
    ok(dir_view_accounts(conn, "uno.test", collect_view, buf, err, sizeof(err)), err);
    /* boss administers its own domain; ann administers another one, which does not count */
    assert_string_equal(buf,
                        "ann@one.test:0:300/1000;boss@one.test:1:0/1000;cy@one.test:0:0/5000;");
    ok(quota_set_domain(conn, "two.test", QUOTA_KEEP, QUOTA_KEEP, 2000, QUOTA_KEEP, false, err,
                        sizeof(err)),
       err);
    buf[0] = '\0';
    ok(dir_view_accounts(conn, "two.test", collect_view, buf, err, sizeof(err)), err);
    assert_string_equal(buf, "bob@two.test:0:0/2000;root@two.test:0:0/2000;");
    assert_int_equal(dir_view_accounts(conn, "nowhere.test", collect_view, buf, err, sizeof(err)),
                     DIR_ENOTFOUND);
}

static void test_view_account_groups(void **state)
{
    char err[256], buf[512] = "";
    ok(dir_group_add(conn, "staff@one.test", "Staff", NULL, err, sizeof(err)), err);
    ok(dir_group_add(conn, "all@one.test", "All", NULL, err, sizeof(err)), err);
    ok(dir_group_add(conn, "everyone@two.test", "Everyone", NULL, err, sizeof(err)), err);
    ok(dir_group_add(conn, "other@two.test", "Other", NULL, err, sizeof(err)), err);
    ok(dir_group_member_add(conn, "staff@one.test", "ann@one.test", NULL, err, sizeof(err)), err);
    ok(dir_group_member_add(conn, "all@one.test", "staff@one.test", NULL, err, sizeof(err)), err);
    ok(dir_group_member_add(conn, "everyone@two.test", "one.test", NULL, err, sizeof(err)), err);
    ok(dir_group_member_add(conn, "other@two.test", "bob@two.test", NULL, err, sizeof(err)), err);

    struct dir_account ann = find("ann@one.test");
    ok(dir_view_account_groups(conn, ann.id, collect_account, buf, err, sizeof(err)), err);
    /* directly, through nesting, and through its whole domain */
    assert_string_equal(buf, "all@one.test;staff@one.test;everyone@two.test;");

    buf[0] = '\0';
    struct dir_account staff = find("staff@one.test");
    ok(dir_view_account_groups(conn, staff.id, collect_account, buf, err, sizeof(err)), err);
    /* a group is not a user: its domain's membership does not carry it */
    assert_string_equal(buf, "all@one.test;");

    /* a cycle (made behind the API's back) still ends */
    char sql[256];
    struct dir_account all = find("all@one.test");
    snprintf(sql, sizeof sql,
             "INSERT INTO group_members (group_id, member_kind, member_id)"
             " VALUES (%lld, 'group', %lld)",
             staff.id, all.id);
    exec(sql);
    buf[0] = '\0';
    ok(dir_view_account_groups(conn, ann.id, collect_account, buf, err, sizeof(err)), err);
    assert_string_equal(buf, "all@one.test;staff@one.test;everyone@two.test;");
}

static void test_sessions(void **state)
{
    char err[256], sid[APISESSION_ID_SIZE], sid2[APISESSION_ID_SIZE];
    struct dir_account ann = find("ann@one.test"), a;
    ok(apisession_create(conn, ann.id, 3600, 86400, sid, err, sizeof(err)), err);
    assert_int_equal(strlen(sid), APISESSION_ID_LEN);
    assert_int_equal(strspn(sid, "0123456789abcdef"), APISESSION_ID_LEN);
    ok(apisession_create(conn, ann.id, 3600, 86400, sid2, err, sizeof(err)), err);
    assert_string_not_equal(sid, sid2);
    ok(apisession_use(conn, sid, &a, err, sizeof(err)), err);
    assert_string_equal(a.address, "ann@one.test");
    assert_false(a.is_admin);

    /* only the hash is stored */
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM vendorapi_sessions WHERE id_hash = '%s'", sid);
    PGresult *r = testdb_exec(conn, sql);
    assert_string_equal(PQgetvalue(r, 0, 0), "0");
    PQclear(r);

    /* the account as it is now: rights changes count at once */
    exec("UPDATE accounts SET is_admin = true WHERE local_part = 'ann'");
    ok(apisession_use(conn, sid, &a, err, sizeof(err)), err);
    assert_true(a.is_admin);

    /* a use older than a minute is recorded; a recent one is not rewritten */
    exec("UPDATE vendorapi_sessions SET last_used_at = clock_timestamp() - interval '10 minutes'");
    ok(apisession_use(conn, sid, &a, err, sizeof(err)), err);
    r = testdb_exec(conn, "SELECT count(*) FROM vendorapi_sessions"
                          " WHERE last_used_at > clock_timestamp() - interval '1 minute'");
    assert_string_equal(PQgetvalue(r, 0, 0), "1");
    PQclear(r);

    /* malformed and unknown ids */
    assert_int_equal(apisession_use(conn, "", &a, err, sizeof(err)), DIR_ENOTFOUND);
    assert_int_equal(apisession_use(conn, NULL, &a, err, sizeof(err)), DIR_ENOTFOUND);
    assert_int_equal(apisession_use(conn, "0123456789ABCDEF0123456789abcdef", &a, err, sizeof(err)),
                     DIR_ENOTFOUND);
    assert_int_equal(apisession_use(conn, "00000000000000000000000000000000", &a, err, sizeof(err)),
                     DIR_ENOTFOUND);

    /* a disabled account's sessions stop working */
    ok(dir_account_set_disabled(conn, "ann@one.test", true, err, sizeof(err)), err);
    assert_int_equal(apisession_use(conn, sid, &a, err, sizeof(err)), DIR_ENOTFOUND);
    ok(dir_account_set_disabled(conn, "ann@one.test", false, err, sizeof(err)), err);
    ok(apisession_use(conn, sid, &a, err, sizeof(err)), err);

    /* logout */
    ok(apisession_delete(conn, sid, err, sizeof(err)), err);
    assert_int_equal(apisession_use(conn, sid, &a, err, sizeof(err)), DIR_ENOTFOUND);
    assert_int_equal(apisession_delete(conn, sid, err, sizeof(err)), DIR_ENOTFOUND);
    ok(apisession_use(conn, sid2, &a, err, sizeof(err)), err);

    /* unknown account; lifetimes out of range */
    assert_int_equal(apisession_create(conn, 999999, 60, 60, sid, err, sizeof(err)), DIR_ENOTFOUND);
    assert_int_equal(apisession_create(conn, ann.id, 0, 60, sid, err, sizeof(err)), -1);
    assert_int_equal(
        apisession_create(conn, ann.id, 60, APISESSION_SECONDS_MAX + 1, sid, err, sizeof(err)), -1);
}

static void test_session_expiry(void **state)
{
    char err[256], idle[APISESSION_ID_SIZE], old[APISESSION_ID_SIZE], live[APISESSION_ID_SIZE];
    struct dir_account ann = find("ann@one.test"), a;
    ok(apisession_create(conn, ann.id, 60, 86400, idle, err, sizeof(err)), err);
    ok(apisession_create(conn, ann.id, 86400, 60, old, err, sizeof(err)), err);
    ok(apisession_create(conn, ann.id, 86400, 86400, live, err, sizeof(err)), err);
    /* idle past its idle lifetime; old past its absolute end */
    exec("UPDATE vendorapi_sessions SET last_used_at = clock_timestamp() - interval '61 seconds'"
         " WHERE idle_seconds = 60");
    exec("UPDATE vendorapi_sessions SET expires_at = clock_timestamp() - interval '1 second'"
         " WHERE idle_seconds = 86400 AND expires_at < clock_timestamp() + interval '1 hour'");
    assert_int_equal(apisession_use(conn, idle, &a, err, sizeof(err)), DIR_ENOTFOUND);
    assert_int_equal(apisession_use(conn, old, &a, err, sizeof(err)), DIR_ENOTFOUND);
    assert_int_equal(apisession_delete(conn, idle, err, sizeof(err)), DIR_ENOTFOUND);
    ok(apisession_use(conn, live, &a, err, sizeof(err)), err);
    long long n = -1;
    ok(apisession_purge(conn, &n, err, sizeof(err)), err);
    assert_int_equal(n, 2);
    ok(apisession_use(conn, live, &a, err, sizeof(err)), err);
    /* deleting the account ends its sessions */
    ok(dir_account_delete(conn, "ann@one.test", err, sizeof(err)), err);
    PGresult *r = testdb_exec(conn, "SELECT count(*) FROM vendorapi_sessions");
    assert_string_equal(PQgetvalue(r, 0, 0), "0");
    PQclear(r);
}

static int collect_key(const char *pem, void *ctx)
{
    char *buf = ctx;
    strcat(buf, pem);
    strcat(buf, ";");
    return 0;
}

static void test_keys(void **state)
{
    char err[256], buf[256] = "";
    ok(apisession_key_add(conn, "n1", "KEY-A", 3600, err, sizeof(err)), err);
    ok(apisession_key_add(conn, "n2", "KEY-B", 3600, err, sizeof(err)), err);
    ok(apisession_key_list(conn, 600, 10, collect_key, buf, err, sizeof(err)), err);
    assert_string_equal(buf, "KEY-B;KEY-A;");
    buf[0] = '\0';
    ok(apisession_key_list(conn, 600, 1, collect_key, buf, err, sizeof(err)), err);
    assert_string_equal(buf, "KEY-B;");
    /* too old to be listed, and deleted when the next key arrives */
    exec("UPDATE vendorapi_keys SET created_at = clock_timestamp() - interval '2 hours'"
         " WHERE private_pem = 'KEY-A'");
    buf[0] = '\0';
    ok(apisession_key_list(conn, 600, 10, collect_key, buf, err, sizeof(err)), err);
    assert_string_equal(buf, "KEY-B;");
    ok(apisession_key_add(conn, "n1", "KEY-C", 3600, err, sizeof(err)), err);
    PGresult *r = testdb_exec(conn, "SELECT string_agg(private_pem, ',' ORDER BY id)"
                                    " FROM vendorapi_keys");
    assert_string_equal(PQgetvalue(r, 0, 0), "KEY-B,KEY-C");
    PQclear(r);
    assert_int_equal(apisession_key_add(conn, "", "KEY", 60, err, sizeof(err)), -1);
    assert_int_equal(apisession_key_add(conn, "n1", "", 60, err, sizeof(err)), -1);
    assert_int_equal(apisession_key_list(conn, 0, 1, collect_key, buf, err, sizeof(err)), -1);
}

int main(void)
{
    conn = testdb_create("domainadmin");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_add_list_remove, setup),
        cmocka_unit_test_setup(test_refusals, setup),
        cmocka_unit_test_setup(test_cascades, setup),
        cmocka_unit_test_setup(test_scope, setup),
        cmocka_unit_test_setup(test_view_domains, setup),
        cmocka_unit_test_setup(test_view_accounts, setup),
        cmocka_unit_test_setup(test_view_account_groups, setup),
        cmocka_unit_test_setup(test_sessions, setup),
        cmocka_unit_test_setup(test_session_expiry, setup),
        cmocka_unit_test_setup(test_keys, setup),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    testdb_drop(&conn);
    return failed;
}
