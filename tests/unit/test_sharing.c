/* layer: storage */
/* Tests for storage/sharing (other accounts' folders as one account sees them) against a real
 * PostgreSQL (FLOE_TEST_PG; without it the tests fail). Each run creates its own database and
 * drops it at the end.
 *
 * The cast: john owns folders shared in every way storage/acl.h knows (an account entry, an
 * inheriting child, domain and anyone entries, a group entry overridden by an account entry, no
 * entry at all); alice and carol are users of example.com (carol in the group staff), olaf of
 * other.org; support is a group with folders of its own (a public folder). The rights
 * sharing_list() reports must be acl_rights()'s for every folder. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/acl.h"
#include "storage/db.h"
#include "storage/directory.h"
#include "storage/folders.h"
#include "storage/groups.h"
#include "storage/sharing.h"
#include "support/testdb.h"

static PGconn *conn;
static long long john, alice, carol, olaf, staff, support;
static long long f_a, f_ab, f_c, f_d, f_e, f_pub;

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

static void grant(long long folder, enum acl_grantee_kind kind, long long id, const char *rights)
{
    char err[256] = "";
    if (acl_set(conn, folder, kind, id, rights, err, sizeof err) != 0)
        fail_msg("acl_set(%lld, %s): %s", folder, rights ? rights : "(none)", err);
}

/* What one sharing_list() call reported, in order. */
#define SEEN_MAX 32
struct seen {
    struct sharing_folder f[SEEN_MAX];
    int n;
    int stop_after; /* 0: never stop */
};

static int collect(const struct sharing_folder *sf, void *ctx)
{
    struct seen *s = ctx;
    if (s->n < SEEN_MAX)
        s->f[s->n] = *sf;
    s->n++;
    return s->stop_after && s->n >= s->stop_after;
}

static void list(struct seen *s, long long account, enum sharing_scope scope, bool subscribed,
                 long long owner)
{
    char err[256] = "";
    memset(s, 0, sizeof(*s));
    if (sharing_list(conn, account, scope, subscribed, owner, collect, s, err, sizeof err) != 0)
        fail_msg("sharing_list: %s", err);
}

static const char *letters(unsigned mask)
{
    static char out[12];
    acl_mask_format(mask, out);
    return out;
}

/* Every reported mask equals acl_rights() for that folder. */
static void assert_rights_agree(const struct seen *s, long long account)
{
    for (int i = 0; i < s->n && i < SEEN_MAX; i++) {
        unsigned mask = 0;
        assert_int_equal(acl_rights(conn, s->f[i].f.id, account, &mask), 0);
        assert_string_equal(letters(s->f[i].rights), letters(mask));
    }
}

static int group_setup(void **state)
{
    (void)state;
    char err[256];
    conn = testdb_create("sharing");
    PQclear(testdb_exec(conn, "SET statement_timeout = 10000"));
    assert_int_equal(dir_domain_add(conn, "example.com", err, sizeof err), 0);
    assert_int_equal(dir_domain_add(conn, "other.org", err, sizeof err), 0);
    john = add_account("john@example.com", "user");
    alice = add_account("alice@example.com", "user");
    carol = add_account("carol@example.com", "user");
    olaf = add_account("olaf@other.org", "user");
    if (dir_group_add(conn, "staff@example.com", NULL, NULL, err, sizeof err) != 0 ||
        dir_group_add(conn, "support@example.com", NULL, "folder", err, sizeof err) != 0 ||
        dir_group_member_add(conn, "staff@example.com", "carol@example.com", NULL, err,
                             sizeof err) != 0 ||
        dir_group_member_add(conn, "staff@example.com", "alice@example.com", NULL, err,
                             sizeof err) != 0)
        fail_msg("groups: %s", err);
    struct dir_account g;
    assert_int_equal(dir_account_find(conn, "staff@example.com", &g, err, sizeof err), 0);
    staff = g.id;
    assert_int_equal(dir_account_find(conn, "support@example.com", &g, err, sizeof err), 0);
    support = g.id;
    long long example_com;
    assert_int_equal(dir_domain_lookup(conn, "example.com", &example_com, NULL, err, sizeof err),
                     0);

    f_a = add_folder(john, "A");
    f_ab = add_folder(john, "A/B"); /* inherits A's */
    f_c = add_folder(john, "C");
    f_d = add_folder(john, "D"); /* nobody's but john's */
    f_e = add_folder(john, "E");
    add_folder(alice, "Mine");
    grant(f_a, ACL_GRANTEE_ACCOUNT, alice, "lr");
    grant(f_c, ACL_GRANTEE_ANYONE, 0, "l");
    grant(f_c, ACL_GRANTEE_DOMAIN, example_com, "lrs");
    grant(f_e, ACL_GRANTEE_GROUP, staff, "lrw");
    grant(f_e, ACL_GRANTEE_ACCOUNT, alice, "r");      /* closer, and less */
    grant(f_ab, ACL_GRANTEE_ACCOUNT, carol, "lrswi"); /* A/B now has its own list */
    struct folder inbox; /* a group's default folders include its INBOX */
    if (folders_find_path(conn, support, "INBOX", &inbox) != 0 &&
        folders_create_defaults(conn, support, NULL) < 0)
        fail_msg("no INBOX for the group");
    assert_int_equal(folders_find_path(conn, support, "INBOX", &inbox), 0);
    f_pub = inbox.id;
    grant(f_pub, ACL_GRANTEE_DOMAIN, example_com, "lri");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    testdb_drop(&conn);
    return 0;
}

static void test_rights_as_acl_rights(void **state)
{
    (void)state;
    struct seen s;
    list(&s, alice, SHARING_USERS, false, 0);
    /* A, A/B (its own list now copies A's entry for alice), C, E; not D, not her own */
    assert_int_equal(s.n, 4);
    assert_string_equal(s.f[0].f.path, "A");
    assert_string_equal(s.f[1].f.path, "A/B");
    assert_string_equal(s.f[2].f.path, "C");
    assert_string_equal(s.f[3].f.path, "E");
    assert_string_equal(letters(s.f[0].rights), "lr");
    assert_string_equal(letters(s.f[1].rights), "lr");
    assert_string_equal(letters(s.f[2].rights), "lrs"); /* domain beats anyone */
    assert_string_equal(letters(s.f[3].rights), "r");   /* account beats group */
    for (int i = 0; i < 4; i++) {
        assert_string_equal(s.f[i].owner, "john@example.com");
        assert_false(s.f[i].owner_is_group);
        assert_int_equal(s.f[i].f.account_id, john);
        assert_false(s.f[i].subscribed);
    }
    assert_rights_agree(&s, alice);

    list(&s, carol, SHARING_USERS, false, 0);
    assert_int_equal(s.n, 3); /* A/B, C, E */
    assert_string_equal(s.f[0].f.path, "A/B");
    assert_string_equal(letters(s.f[0].rights), "lrswi");
    assert_string_equal(letters(s.f[2].rights), "lrw"); /* through staff */
    assert_rights_agree(&s, carol);

    list(&s, olaf, SHARING_USERS, false, 0);
    assert_int_equal(s.n, 1); /* only what anyone may */
    assert_string_equal(s.f[0].f.path, "C");
    assert_string_equal(letters(s.f[0].rights), "l");

    /* john's own folders are never "shared" with him */
    list(&s, john, SHARING_ALL, false, 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.f[0].f.id, f_pub);
}

static void test_scopes_and_owner(void **state)
{
    (void)state;
    struct seen s;
    list(&s, alice, SHARING_GROUPS, false, 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.f[0].f.id, f_pub);
    assert_true(s.f[0].owner_is_group);
    assert_string_equal(s.f[0].owner, "support@example.com");
    assert_string_equal(letters(s.f[0].rights), "lri");
    list(&s, olaf, SHARING_GROUPS, false, 0);
    assert_int_equal(s.n, 0);
    list(&s, alice, SHARING_ALL, false, 0);
    assert_int_equal(s.n, 5);
    assert_string_equal(s.f[0].owner, "john@example.com"); /* by owner address */
    assert_string_equal(s.f[4].owner, "support@example.com");
    list(&s, alice, SHARING_ALL, false, support);
    assert_int_equal(s.n, 1);
    list(&s, alice, SHARING_USERS, false, support);
    assert_int_equal(s.n, 0);
    /* the callback stops the walk */
    char err[256];
    memset(&s, 0, sizeof(s));
    s.stop_after = 2;
    assert_int_equal(sharing_list(conn, alice, SHARING_ALL, false, 0, collect, &s, err, sizeof err),
                     0);
    assert_int_equal(s.n, 2);
    assert_int_equal(sharing_list(conn, alice, SHARING_ALL, false, 0, NULL, NULL, err, sizeof err),
                     -1);
}

static void test_subscribe_owner(void **state)
{
    (void)state;
    char err[256];
    struct seen s;
    int n = -1;
    list(&s, alice, SHARING_USERS, true, 0);
    assert_int_equal(s.n, 0); /* not subscribed to john */
    /* every folder of john's she may look up: A, A/B, C; not E ("r" without "l") */
    assert_int_equal(sharing_subscribe_owner(conn, alice, john, true, &n, err, sizeof err), 0);
    assert_int_equal(n, 3);
    list(&s, alice, SHARING_USERS, true, 0);
    assert_int_equal(s.n, 4);
    assert_true(s.f[0].subscribed && s.f[1].subscribed && s.f[2].subscribed);
    assert_false(s.f[3].subscribed);
    /* again: nothing new, still all of them */
    assert_int_equal(sharing_subscribe_owner(conn, alice, john, true, &n, err, sizeof err), 0);
    assert_int_equal(n, 3);
    /* an owner sharing nothing, and oneself */
    assert_int_equal(sharing_subscribe_owner(conn, olaf, alice, true, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(sharing_subscribe_owner(conn, alice, alice, true, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    /* one subscription is enough to count as subscribed to the owner */
    assert_int_equal(sharing_subscribe_owner(conn, alice, john, false, &n, err, sizeof err), 0);
    assert_int_equal(n, 3);
    list(&s, alice, SHARING_USERS, true, 0);
    assert_int_equal(s.n, 0);
    assert_int_equal(folders_subscribe(conn, alice, f_c, true), 0);
    list(&s, alice, SHARING_USERS, true, 0);
    assert_int_equal(s.n, 4);
    assert_false(s.f[0].subscribed);
    assert_true(s.f[2].subscribed);
    assert_int_equal(sharing_subscribe_owner(conn, alice, john, false, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(sharing_subscribe_owner(conn, alice, john, false, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
}

static void test_revoked_rights_hide(void **state)
{
    (void)state;
    struct seen s;
    grant(f_a, ACL_GRANTEE_ACCOUNT, alice, NULL); /* removes her entry on A */
    list(&s, alice, SHARING_USERS, false, john);
    assert_int_equal(s.n, 3); /* A/B still has a copy of the entry; C, E */
    assert_string_equal(s.f[0].f.path, "A/B");
    assert_rights_agree(&s, alice);
    /* A/B back to inheriting: gone with A's entry */
    char err[256];
    assert_int_equal(acl_reset_inherit(conn, f_ab, err, sizeof err), 0);
    list(&s, alice, SHARING_USERS, false, john);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.f[0].f.path, "C");
    list(&s, carol, SHARING_USERS, false, john);
    assert_int_equal(s.n, 2); /* C, E: A/B's own entry for carol went with its list */
    assert_rights_agree(&s, carol);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rights_as_acl_rights),
        cmocka_unit_test(test_scopes_and_owner),
        cmocka_unit_test(test_subscribe_owner),
        cmocka_unit_test(test_revoked_rights_hide),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
