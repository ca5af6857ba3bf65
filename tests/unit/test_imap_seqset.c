/* layer: proto */
/* Unit tests for IMAP sequence sets (proto/imap/seqset.c): parsing into sorted merged ranges,
 * "*" and "$", the number and range bounds, membership, iteration, building and formatting
 * back. Results are checked through the formatted text, which is itself checked against
 * explicit range lists. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/imap/seqset.h"

/* Parses s with star and checks the normalised result's text. */
static void check(const char *s, uint32_t star, const char *want)
{
    struct imap_seqset *set = NULL;
    char err[128] = "";
    if (imap_seqset_parse(s, strlen(s), star, 0, &set, err, sizeof(err)) < 0)
        fail_msg("\"%s\": %s", s, err);
    char *out;
    size_t len;
    assert_int_equal(imap_seqset_format(set, &out, &len), 0);
    if (strcmp(out, want) != 0)
        fail_msg("\"%s\" (star %u): got \"%s\", want \"%s\"", s, (unsigned)star, out, want);
    assert_int_equal(len, strlen(want));
    free(out);
    imap_seqset_free(&set);
    assert_null(set);
}

static void check_bad(const char *s, const char *errpart)
{
    struct imap_seqset *set = (struct imap_seqset *)1;
    char err[128] = "";
    assert_int_equal(imap_seqset_parse(s, strlen(s), 100, 0, &set, err, sizeof(err)), -1);
    assert_null(set);
    if (!strstr(err, errpart))
        fail_msg("\"%s\": error \"%s\" lacks \"%s\"", s, err, errpart);
}

static void test_parse(void **state)
{
    (void)state;
    check("1", 10, "1");
    check("1:3", 10, "1:3");
    check("3:1", 10, "1:3"); /* either order */
    check("5,1,3", 10, "1,3,5");
    check("1,2,3", 10, "1:3"); /* adjacent numbers merge */
    check("1:3,4:6", 10, "1:6");
    check("1:5,2:3", 10, "1:5");
    check("7:9,1:4,3:8", 10, "1:9");
    check("1,1,1", 10, "1");
    check("2:4,6:8,10", 100, "2:4,6:8,10");
    /* RFC 9051 §6.4.5 example */
    check("2:4", 10, "2:4");
    /* RFC 9051 §9 example: 2,4:7,9,12:* for a 15 message mailbox */
    check("2,4:7,9,12:*", 15, "2,4:7,9,12:15");
    /* the extremes */
    check("4294967295", 10, "4294967295");
    check("1:4294967295", 10, "1:4294967295");
    check("4294967294,4294967295", 10, "4294967294:4294967295");
    check("4294967295,1", 10, "1,4294967295");
}

static void test_star(void **state)
{
    (void)state;
    check("*", 42, "42");
    check("1:*", 42, "1:42");
    check("*:1", 42, "1:42");
    check("*:*", 42, "42");
    /* RFC 9051 §9: UID range 3291:* includes the last UID even when it is smaller */
    check("3291:*", 100, "100:3291");
    check("*,1", 4294967295u, "1,4294967295");
    /* empty mailbox: items naming "*" hold nothing; the caller is told "*" was there */
    struct imap_seqset *set;
    assert_int_equal(imap_seqset_parse("1:*,5", 5, 0, 0, &set, NULL, 0), 0);
    assert_true(imap_seqset_has_star(set));
    assert_false(imap_seqset_is_saved(set));
    size_t n;
    const struct imap_seq_range *r = imap_seqset_ranges(set, &n);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].lo, 5);
    assert_int_equal(r[0].hi, 5);
    imap_seqset_free(&set);
    assert_int_equal(imap_seqset_parse("*", 1, 0, 0, &set, NULL, 0), 0);
    assert_true(imap_seqset_is_empty(set));
    assert_true(imap_seqset_has_star(set));
    imap_seqset_free(&set);
    assert_int_equal(imap_seqset_parse("1:2", 3, 0, 0, &set, NULL, 0), 0);
    assert_false(imap_seqset_has_star(set));
    imap_seqset_free(&set);
}

static void test_saved(void **state)
{
    (void)state;
    /* RFC 5182: "$" alone is the saved search result */
    struct imap_seqset *set;
    assert_int_equal(imap_seqset_parse("$", 1, 10, 0, &set, NULL, 0), 0);
    assert_true(imap_seqset_is_saved(set));
    assert_true(imap_seqset_is_empty(set));
    char *out;
    assert_int_equal(imap_seqset_format(set, &out, NULL), 0);
    assert_string_equal(out, "$");
    free(out);
    imap_seqset_clear(set);
    assert_false(imap_seqset_is_saved(set));
    imap_seqset_free(&set);
    check_bad("$,1", "alone");
    check_bad("1,$", "alone");
    check_bad("$:3", "alone");
    check_bad("1:$", "alone");
    check_bad("$$", "alone");
}

static void test_bad(void **state)
{
    (void)state;
    check_bad("", "empty");
    check_bad("0", "0");
    check_bad("1:0", "0");
    check_bad("01", "leading zero");
    check_bad("4294967296", "above");
    check_bad("99999999999999999999", "above");
    check_bad("1,", "number expected");
    check_bad(",1", "number expected");
    check_bad("1,,2", "number expected");
    check_bad("1:", "number expected");
    check_bad(":1", "number expected");
    check_bad("1:2:3", "unexpected");
    check_bad("1 ", "unexpected");
    check_bad("-1", "number expected");
    check_bad("1-3", "unexpected");
    check_bad("**", "unexpected");
    check_bad("a", "number expected");
    /* embedded NUL: the length counts, not the string */
    struct imap_seqset *set;
    assert_int_equal(imap_seqset_parse("1\0002", 3, 10, 0, &set, NULL, 0), -1);
    assert_int_equal(imap_seqset_parse("1\0002", 1, 10, 0, &set, NULL, 0), 0);
    imap_seqset_free(&set);
}

static void test_too_many(void **state)
{
    (void)state;
    /* bounded on items written, even when they would merge */
    struct imap_seqset *set;
    char err[64];
    assert_int_equal(imap_seqset_parse("1,2,3", 5, 10, 3, &set, err, sizeof(err)), 0);
    imap_seqset_free(&set);
    assert_int_equal(imap_seqset_parse("1,2,3,4", 7, 10, 3, &set, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too many"));
    /* the default bound is 10000 */
    size_t cap = 10001 * 7 + 1, n = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    for (unsigned i = 0; i < 10000; i++)
        n += (size_t)snprintf(s + n, cap - n, "%s%u", i ? "," : "", 2 * i + 1);
    assert_int_equal(imap_seqset_parse(s, n, 10, 0, &set, err, sizeof(err)), 0);
    assert_int_equal(imap_seqset_count(set), 10000);
    assert_true(imap_seqset_contains(set, 19999));
    assert_false(imap_seqset_contains(set, 20000));
    imap_seqset_free(&set);
    n += (size_t)snprintf(s + n, cap - n, ",7");
    assert_int_equal(imap_seqset_parse(s, n, 10, 0, &set, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too many"));
    free(s);
}

static void test_contains_and_iterate(void **state)
{
    (void)state;
    struct imap_seqset *set;
    const char *s = "10:12,1,4294967295,5:6";
    assert_int_equal(imap_seqset_parse(s, strlen(s), 1, 0, &set, NULL, 0), 0);
    assert_false(imap_seqset_contains(set, 0));
    assert_true(imap_seqset_contains(set, 1));
    assert_false(imap_seqset_contains(set, 2));
    assert_false(imap_seqset_contains(set, 4));
    assert_true(imap_seqset_contains(set, 5));
    assert_true(imap_seqset_contains(set, 6));
    assert_false(imap_seqset_contains(set, 7));
    assert_false(imap_seqset_contains(set, 9));
    assert_true(imap_seqset_contains(set, 10));
    assert_true(imap_seqset_contains(set, 12));
    assert_false(imap_seqset_contains(set, 13));
    assert_false(imap_seqset_contains(set, 4294967294u));
    assert_true(imap_seqset_contains(set, 4294967295u));
    assert_int_equal(imap_seqset_count(set), 7);
    assert_int_equal(imap_seqset_min(set), 1);
    assert_int_equal(imap_seqset_max(set), 4294967295u);
    struct imap_seqset_iter it;
    imap_seqset_iter_init(&it);
    uint32_t got[10], n;
    size_t k = 0;
    while (imap_seqset_iter_next(set, &it, &n)) {
        assert_true(k < 10);
        got[k++] = n;
    }
    assert_int_equal(k, 7);
    const uint32_t want[] = {1, 5, 6, 10, 11, 12, 4294967295u};
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(got[i], want[i]);
    assert_false(imap_seqset_iter_next(set, &it, &n)); /* stays finished */
    imap_seqset_free(&set);
    /* the whole range counts without overflow */
    assert_int_equal(imap_seqset_parse("1:*", 3, 4294967295u, 0, &set, NULL, 0), 0);
    assert_int_equal(imap_seqset_count(set), 4294967295ull);
    imap_seqset_free(&set);
}

static void test_build(void **state)
{
    (void)state;
    struct imap_seqset *set = imap_seqset_new(4);
    assert_non_null(set);
    assert_true(imap_seqset_is_empty(set));
    assert_int_equal(imap_seqset_min(set), 0);
    assert_int_equal(imap_seqset_max(set), 0);
    char *out;
    assert_int_equal(imap_seqset_format(set, &out, NULL), 0);
    assert_string_equal(out, "");
    free(out);
    assert_int_equal(imap_seqset_add(set, 0), -1);
    assert_int_equal(imap_seqset_add_range(set, 0, 5), -1);
    /* ascending UIDs (COPYUID) */
    assert_int_equal(imap_seqset_add(set, 1), 0);
    assert_int_equal(imap_seqset_add(set, 2), 0);
    assert_int_equal(imap_seqset_add(set, 3), 0);
    assert_int_equal(imap_seqset_add(set, 5), 0);
    assert_int_equal(imap_seqset_format(set, &out, NULL), 0);
    assert_string_equal(out, "1:3,5");
    free(out);
    /* out of order: insert, merge across ranges */
    assert_int_equal(imap_seqset_add_range(set, 20, 10), 0);
    assert_int_equal(imap_seqset_add(set, 8), 0);
    assert_int_equal(imap_seqset_format(set, &out, NULL), 0);
    assert_string_equal(out, "1:3,5,8,10:20");
    free(out);
    /* the bound: a fifth range is refused and the set is unchanged */
    assert_int_equal(imap_seqset_add(set, 30), -1);
    assert_int_equal(imap_seqset_add(set, 4294967295u), -1);
    assert_false(imap_seqset_contains(set, 30));
    /* merging needs no new range */
    assert_int_equal(imap_seqset_add(set, 4), 0);
    assert_int_equal(imap_seqset_add(set, 9), 0);
    assert_int_equal(imap_seqset_format(set, &out, NULL), 0);
    assert_string_equal(out, "1:5,8:20");
    free(out);
    assert_int_equal(imap_seqset_add_range(set, 2, 4294967295u), 0);
    assert_int_equal(imap_seqset_format(set, &out, NULL), 0);
    assert_string_equal(out, "1:4294967295");
    free(out);
    assert_int_equal(imap_seqset_add(set, 4294967295u), 0);
    assert_int_equal(imap_seqset_add(set, 7), 0);
    size_t n;
    imap_seqset_ranges(set, &n);
    assert_int_equal(n, 1);
    imap_seqset_clear(set);
    assert_true(imap_seqset_is_empty(set));
    /* prepend before the first range, and touch from below */
    assert_int_equal(imap_seqset_add(set, 10), 0);
    assert_int_equal(imap_seqset_add(set, 5), 0);
    assert_int_equal(imap_seqset_add(set, 9), 0);
    assert_int_equal(imap_seqset_add(set, 1), 0);
    assert_int_equal(imap_seqset_format(set, &out, NULL), 0);
    assert_string_equal(out, "1,5,9:10");
    free(out);
    imap_seqset_free(&set);
    imap_seqset_free(&set);
}

/* Adding numbers one at a time in a scrambled order gives the same set as parsing them. */
static void test_build_matches_parse(void **state)
{
    (void)state;
    struct imap_seqset *a = imap_seqset_new(0);
    assert_non_null(a);
    char text[8192];
    bool present[702] = {false};
    size_t n = 0;
    uint32_t x = 12345;
    for (int i = 0; i < 500; i++) {
        x = x * 1103515245u + 12345u;
        uint32_t v = (x >> 8) % 700 + 1;
        present[v] = true;
        assert_int_equal(imap_seqset_add(a, v), 0);
        n += (size_t)snprintf(text + n, sizeof(text) - n, "%s%u", i ? "," : "", (unsigned)v);
    }
    struct imap_seqset *b;
    assert_int_equal(imap_seqset_parse(text, n, 1, 0, &b, NULL, 0), 0);
    char *fa, *fb;
    assert_int_equal(imap_seqset_format(a, &fa, NULL), 0);
    assert_int_equal(imap_seqset_format(b, &fb, NULL), 0);
    assert_string_equal(fa, fb);
    /* and the text parses back to itself */
    struct imap_seqset *c;
    assert_int_equal(imap_seqset_parse(fa, strlen(fa), 1, 0, &c, NULL, 0), 0);
    char *fc;
    assert_int_equal(imap_seqset_format(c, &fc, NULL), 0);
    assert_string_equal(fa, fc);
    for (uint32_t v = 0; v <= 701; v++) {
        assert_int_equal(imap_seqset_contains(a, v), present[v]);
        assert_int_equal(imap_seqset_contains(b, v), present[v]);
    }
    free(fa);
    free(fb);
    free(fc);
    imap_seqset_free(&a);
    imap_seqset_free(&b);
    imap_seqset_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),    cmocka_unit_test(test_star),
        cmocka_unit_test(test_saved),    cmocka_unit_test(test_bad),
        cmocka_unit_test(test_too_many), cmocka_unit_test(test_contains_and_iterate),
        cmocka_unit_test(test_build),    cmocka_unit_test(test_build_matches_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
