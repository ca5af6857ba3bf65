/* layer: node */
/* Tests for the IMAP namespaces of node/imap/names.c that need no database: namespace prefixes
 * from the configuration, splitting a client's mailbox name into namespace, owner and path
 * (with the canonical INBOX), and joining them back. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "node/imap/imap.h"

static struct imap_settings cfg_with(const char *shared, const char *pub)
{
    struct imap_settings c;
    memset(&c, 0, sizeof(c));
    snprintf(c.shared_prefix, sizeof(c.shared_prefix), "%s", shared);
    snprintf(c.public_prefix, sizeof(c.public_prefix), "%s", pub);
    return c;
}

static void split_ok(const struct imap_settings *c, const char *name, enum imap_ns ns,
                     const char *owner, const char *path)
{
    struct imap_name n;
    char err[256] = "";
    if (imap_name_split(c, name, &n, err, sizeof(err)) != 0)
        fail_msg("split(%s): %s", name, err);
    assert_int_equal(n.ns, ns);
    assert_string_equal(n.owner, owner);
    assert_string_equal(n.path, path);
    /* and back: the canonical name */
    char out[IMAP_NAME_MAX + 1];
    assert_int_equal(imap_name_join(c, n.ns, n.owner, n.path, out, sizeof(out)), 0);
    struct imap_name again;
    assert_int_equal(imap_name_split(c, out, &again, err, sizeof(err)), 0);
    assert_int_equal(again.ns, ns);
    assert_string_equal(again.owner, owner);
    assert_string_equal(again.path, path);
}

static void split_bad(const struct imap_settings *c, const char *name)
{
    struct imap_name n;
    char err[256] = "";
    if (imap_name_split(c, name, &n, err, sizeof(err)) == 0)
        fail_msg("split(%s) accepted", name);
    assert_true(err[0] != '\0');
}

static void test_default_prefixes(void **state)
{
    (void)state;
    struct imap_settings c = cfg_with(IMAP_SHARED_PREFIX, IMAP_PUBLIC_PREFIX);
    split_ok(&c, "INBOX", IMAP_NS_PERSONAL, "", "INBOX");
    split_ok(&c, "inbox/Sub", IMAP_NS_PERSONAL, "", "INBOX/Sub");
    split_ok(&c, "Lists/floe", IMAP_NS_PERSONAL, "", "Lists/floe");
    split_ok(&c, "Public", IMAP_NS_PERSONAL, "", "Public"); /* not the prefix */
    split_ok(&c, "~john@example.test/Events", IMAP_NS_SHARED, "john@example.test", "Events");
    split_ok(&c, "~john@example.test/inbox/a b", IMAP_NS_SHARED, "john@example.test", "INBOX/a b");
    split_ok(&c, "~john@example.test", IMAP_NS_SHARED, "john@example.test", "");
    split_ok(&c, "~", IMAP_NS_SHARED, "", "");
    split_ok(&c, "Public Folders/support@example.test/INBOX", IMAP_NS_PUBLIC,
             "support@example.test", "INBOX");
    split_ok(&c, "Public Folders/support@example.test", IMAP_NS_PUBLIC, "support@example.test", "");
    split_ok(&c, "Public Folders", IMAP_NS_PUBLIC, "", "");
    split_ok(&c, "Public Folders2", IMAP_NS_PERSONAL, "", "Public Folders2");

    char out[IMAP_NAME_MAX + 1];
    assert_int_equal(imap_name_join(&c, IMAP_NS_PUBLIC, "", "", out, sizeof(out)), 0);
    assert_string_equal(out, "Public Folders");
    assert_int_equal(imap_name_join(&c, IMAP_NS_SHARED, "", "", out, sizeof(out)), 0);
    assert_string_equal(out, "~");
    assert_int_equal(imap_name_join(&c, IMAP_NS_SHARED, "a@b.test", "X/Y", out, sizeof(out)), 0);
    assert_string_equal(out, "~a@b.test/X/Y");
    assert_int_equal(imap_name_join(&c, IMAP_NS_SHARED, "a@b.test", "X/Y", out, 8), -1);
}

static void test_bad_names(void **state)
{
    (void)state;
    struct imap_settings c = cfg_with(IMAP_SHARED_PREFIX, IMAP_PUBLIC_PREFIX);
    split_bad(&c, "~/Events");                 /* no owner */
    split_bad(&c, "~john@example.test/a//b");  /* empty segment */
    split_bad(&c, "~john@example.test/..");    /* DAV-unsafe segment */
    split_bad(&c, "~john@example.test/a\x01"); /* control character */
    split_bad(&c, "Public Folders//x");
    split_bad(&c, "a//b");
    char name[IMAP_NAME_MAX + 64];
    memset(name, 'a', sizeof(name) - 1);
    name[0] = '~';
    name[sizeof(name) - 1] = '\0';
    split_bad(&c, name); /* owner too long */
}

static void test_other_prefixes(void **state)
{
    (void)state;
    /* a prefix with a slash puts the accounts one level down (seed 000) */
    struct imap_settings c = cfg_with("Shared/Users/", "Pub/");
    split_ok(&c, "Shared/Users/john@x.test/A", IMAP_NS_SHARED, "john@x.test", "A");
    split_ok(&c, "Shared/Users", IMAP_NS_SHARED, "", "");
    split_ok(&c, "Shared", IMAP_NS_PERSONAL, "", "Shared");
    split_ok(&c, "Pub/g@x.test", IMAP_NS_PUBLIC, "g@x.test", "");
    split_ok(&c, "~john@x.test", IMAP_NS_PERSONAL, "", "~john@x.test");
    /* the longer prefix wins where both match */
    struct imap_settings d = cfg_with("P", "Pub/");
    split_ok(&d, "Pub/g@x.test/A", IMAP_NS_PUBLIC, "g@x.test", "A");
    split_ok(&d, "Pj@x.test/A", IMAP_NS_SHARED, "j@x.test", "A");
}

static void test_prefix_check(void **state)
{
    (void)state;
    char err[128];
    assert_int_equal(imap_prefix_check("~", err, sizeof(err)), 0);
    assert_int_equal(imap_prefix_check("Public Folders/", err, sizeof(err)), 0);
    assert_int_equal(imap_prefix_check("Geteilt/Öffentlich/", err, sizeof(err)), 0);
    const char *bad[] = {"",    "/x",   "a//b", "INBOX/", "inbox.", "a%",
                         "a*b", "a\"b", "a\\b", "a\tb",   "\xff",   NULL};
    for (const char **b = bad; *b; b++)
        if (imap_prefix_check(*b, err, sizeof(err)) == 0)
            fail_msg("prefix '%s' accepted", *b);
    char longp[IMAP_PREFIX_MAX + 2];
    memset(longp, 'p', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = '\0';
    assert_int_equal(imap_prefix_check(longp, err, sizeof(err)), -1);
    longp[IMAP_PREFIX_MAX] = '\0';
    assert_int_equal(imap_prefix_check(longp, err, sizeof(err)), 0);
}

static void test_noperm_text(void **state)
{
    (void)state;
    /* RFC 4314 §4: without "l" a folder is not admitted to exist */
    assert_string_equal(imap_noperm_text(ACL_L), "[NOPERM] Permission denied");
    assert_string_equal(imap_noperm_text(ACL_R), "[NONEXISTENT] No such mailbox");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_prefixes), cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_other_prefixes),   cmocka_unit_test(test_prefix_check),
        cmocka_unit_test(test_noperm_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
