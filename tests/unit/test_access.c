/* layer: node */
/* Unit tests for node/access: entry kinds, match edges, IPv6 and mapped IPv4,
 * patterns, malformed entries, limits and the per-level decision. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "node/access.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

/* A socket address for a literal: IPv6 when it has a ':'. */
static struct sockaddr_storage addr_of(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
    }
    return ss;
}

static bool match(const struct access_list *l, const char *ip)
{
    struct sockaddr_storage ss = addr_of(ip);
    return access_list_match(l, (const struct sockaddr *)&ss);
}

static struct access_list *parse_ok(const char *spec, const struct access_patterns *pats)
{
    char err[256] = "untouched";
    struct access_list *l = access_list_parse(spec, pats, err, sizeof(err));
    if (!l)
        fail_msg("parse of '%s' failed: %s", spec, err);
    assert_string_equal(err, "");
    return l;
}

/* Parsing must fail and the message must contain `want`. */
static void parse_fails(const char *spec, const struct access_patterns *pats, const char *want)
{
    char err[256] = "";
    struct access_list *l = access_list_parse(spec, pats, err, sizeof(err));
    if (l) {
        access_list_free(&l);
        fail_msg("parse of '%s' succeeded, expected '%s'", spec, want);
    }
    if (!strstr(err, want))
        fail_msg("parse of '%s': got '%s', expected '%s'", spec, err, want);
    assert_null(strchr(err, '\n'));
}

/* Checks each "+addr" matches and each "-addr" does not. */
static void check(const char *spec, const char *const *cases)
{
    struct access_list *l = parse_ok(spec, NULL);
    for (; *cases; cases++) {
        bool want = (*cases)[0] == '+';
        if (match(l, *cases + 1) != want)
            fail_msg("'%s' against %s: expected %s", spec, *cases + 1, want ? "match" : "no match");
    }
    access_list_free(&l);
}

static void test_single_addresses(void **state)
{
    check("127.0.0.1", (const char *[]){"+127.0.0.1", "-127.0.0.0", "-127.0.0.2", "-128.0.0.1",
                                        "-::1", "-::ffff:127.0.0.2", NULL});
    check("::1", (const char *[]){"+::1", "-::2", "-::", "-127.0.0.1", "-::ffff:0.0.0.1", NULL});
    check("2001:DB8::A", (const char *[]){"+2001:db8::a", "-2001:db8::b", NULL});
    check("0.0.0.0;255.255.255.255",
          (const char *[]){"+0.0.0.0", "+255.255.255.255", "-0.0.0.1", "-255.255.255.254", NULL});
}

static void test_cidr_v4(void **state)
{
    check("10.0.0.0/8",
          (const char *[]){"-9.255.255.255", "+10.0.0.0", "+10.255.255.255", "-11.0.0.0", NULL});
    check("172.16.0.0/12", (const char *[]){"-172.15.255.255", "+172.16.0.0", "+172.31.255.255",
                                            "-172.32.0.0", NULL});
    check("192.0.2.128/25",
          (const char *[]){"-192.0.2.127", "+192.0.2.128", "+192.0.2.255", "-192.0.3.128", NULL});
    check("192.0.2.1/32", (const char *[]){"-192.0.2.0", "+192.0.2.1", "-192.0.2.2", NULL});
    check("0.0.0.0/0", (const char *[]){"+0.0.0.0", "+255.255.255.255", "-::1", NULL});
    /* Host bits after the prefix are ignored. */
    check("192.168.1.77/24", (const char *[]){"+192.168.1.0", "+192.168.1.255", "-192.168.0.255",
                                              "-192.168.2.0", NULL});
}

static void test_cidr_v6(void **state)
{
    check("2001:db8::/32",
          (const char *[]){"-2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", "+2001:db8::",
                           "+2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "-2001:db9::", NULL});
    check("2001:db8:8000::/33",
          (const char *[]){"-2001:db8:7fff:ffff:ffff:ffff:ffff:ffff", "+2001:db8:8000::",
                           "+2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "-2001:db9::", NULL});
    check("fe80::/10",
          (const char *[]){"-fe7f:ffff::", "+fe80::1", "+febf:ffff::", "-fec0::", NULL});
    /* Host bits after the prefix are ignored, within a byte too. */
    check("2001:db8:ffff::1/33",
          (const char *[]){"-2001:db8:7fff:ffff:ffff:ffff:ffff:ffff",
                           "+2001:db8:8000::", "+2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", NULL});
    check("2001:db8::1/128", (const char *[]){"+2001:db8::1", "-2001:db8::", "-2001:db8::2", NULL});
    /* ::/0 is every IPv6 client, not the IPv4 ones seen on a dual-stack socket. */
    check("::/0", (const char *[]){"+::", "+::1", "+ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                                   "-10.0.0.1", "-::ffff:10.0.0.1", NULL});
}

static void test_wildcards_and_ranges(void **state)
{
    check("192.168.*.*", (const char *[]){"-192.167.255.255", "+192.168.0.0", "+192.168.255.255",
                                          "-192.169.0.0", "-::ffff:192.169.0.0", NULL});
    check("*.*.*.*", (const char *[]){"+0.0.0.0", "+255.255.255.255", "-::1", NULL});
    check("192-193.*.*.*", (const char *[]){"-191.255.255.255", "+192.0.0.0", "+193.255.255.255",
                                            "-194.0.0.0", NULL});
    check("10.0-15.*.1-254",
          (const char *[]){"-10.0.0.0", "+10.0.0.1", "+10.15.9.254", "-10.15.9.255", "-10.16.0.1",
                           "-9.0.0.1", "-11.0.0.1", NULL});
    check("1.2.3.4-4", (const char *[]){"-1.2.3.3", "+1.2.3.4", "-1.2.3.5", NULL});
    check("0-255.0-255.0-255.0-255", (const char *[]){"+0.0.0.0", "+255.255.255.255", NULL});
}

static void test_star_and_mapped(void **state)
{
    struct access_list *l = parse_ok("*", NULL);
    assert_int_equal(access_list_count(l), 1);
    assert_true(match(l, "1.2.3.4"));
    assert_true(match(l, "::1"));
    assert_true(match(l, "::ffff:1.2.3.4"));
    assert_true(match(l, "2001:db8::1"));
    access_list_free(&l);

    /* IPv4 entries match IPv4 clients seen as v4-mapped IPv6. */
    check("192.0.2.1", (const char *[]){"+::ffff:192.0.2.1", "-::ffff:192.0.2.2", "-::192.0.2.1",
                                        "-64:ff9b::192.0.2.1", NULL});
    check("192.0.2.0/24;10.*.*.*",
          (const char *[]){"+::ffff:192.0.2.200", "-::ffff:192.0.3.1", "+::ffff:10.9.8.7", NULL});
    /* Entries written in mapped form are IPv4 entries. */
    check("::ffff:10.0.0.0/104", (const char *[]){"+10.1.2.3", "+::ffff:10.255.255.255",
                                                  "-11.0.0.0", "-9.255.255.255", NULL});
    check("::ffff:192.0.2.1",
          (const char *[]){"+192.0.2.1", "+::ffff:192.0.2.1", "-192.0.2.2", NULL});
    check("::ffff:0:0/96", (const char *[]){"+0.0.0.0", "+255.255.255.255", "-::1", NULL});
}

static void test_separators_and_empty(void **state)
{
    struct access_list *l = parse_ok(" 1.1.1.1, 2.2.2.2;3.3.3.3\n4.4.4.4\r\n\t;;,::1 ", NULL);
    assert_int_equal(access_list_count(l), 5);
    assert_true(match(l, "1.1.1.1"));
    assert_true(match(l, "4.4.4.4"));
    assert_true(match(l, "::1"));
    assert_false(match(l, "5.5.5.5"));
    access_list_free(&l);
    assert_null(l);

    const char *empties[] = {"", " ", ";;;", " ,\n\t; "};
    for (size_t i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
        l = parse_ok(empties[i], NULL);
        assert_int_equal(access_list_count(l), 0);
        assert_false(match(l, "0.0.0.0"));
        assert_false(match(l, "::"));
        access_list_free(&l);
    }
}

static void test_malformed(void **state)
{
    parse_fails("1.2.3", NULL, "bad entry '1.2.3'");
    parse_fails("256.0.0.0", NULL, "bad entry '256.0.0.0'");
    parse_fails("300.1.*.*", NULL, "bad entry '300.1.*.*'");
    parse_fails("5-3.*.*.*", NULL, "bad entry '5-3.*.*.*'");
    parse_fails("10.0.0.0/33", NULL, "bad entry '10.0.0.0/33'");
    parse_fails("::1/129", NULL, "bad entry '::1/129'");
    parse_fails("[unterminated", NULL, "unterminated pattern reference '[unterminated'");
    parse_fails("[Foo;1.2.3.4", NULL, "unterminated pattern reference '[Foo'");
    parse_fails("1.2.3.4/", NULL, "bad entry '1.2.3.4/'");
    parse_fails("::1/", NULL, "bad entry '::1/'");
    parse_fails("garbage", NULL, "bad entry 'garbage'");
    parse_fails("mail.example.com", NULL, "bad entry 'mail.example.com'");
    parse_fails("1.2.3.4.5", NULL, "bad entry '1.2.3.4.5'");
    parse_fails("1..2.3", NULL, "bad entry '1..2.3'");
    parse_fails("010.0.0.1", NULL, "bad entry '010.0.0.1' (leading zero)");
    parse_fails("10.0.0.0/08", NULL, "bad entry '10.0.0.0/08'");
    parse_fails("10.0.0.0/8x", NULL, "bad entry '10.0.0.0/8x'");
    parse_fails("10.0.0.0/-8", NULL, "bad entry '10.0.0.0/-8'");
    parse_fails("10.*.*.*/8", NULL, "bad entry '10.*.*.*/8'");
    parse_fails("10.0.0.0/8/8", NULL, "bad entry '10.0.0.0/8/8'");
    parse_fails("1.2.3.-4", NULL, "bad entry '1.2.3.-4'");
    parse_fails("1.2.3.4-", NULL, "bad entry '1.2.3.4-'");
    parse_fails("1.2.3.4-256", NULL, "bad entry '1.2.3.4-256'");
    parse_fails("1.2.3.**", NULL, "bad entry '1.2.3.**'");
    parse_fails("**", NULL, "bad entry '**'");
    parse_fails("*.*", NULL, "bad entry '*.*'");
    parse_fails("1.2.3.4:25", NULL, "bad entry '1.2.3.4:25'");
    parse_fails("fe80::1%eth0", NULL, "bad entry 'fe80::1%eth0'");
    parse_fails("2001:db8:::1", NULL, "bad entry '2001:db8:::1'");
    parse_fails("2001:db8::/", NULL, "bad entry '2001:db8::/'");
    parse_fails("[A]x", NULL, "bad entry '[A]x'");
    /* The bad entry is named even after good ones. */
    parse_fails("1.1.1.1;10.0.0.0/8;300.1.*.*;2.2.2.2", NULL, "bad entry '300.1.*.*'");
    parse_fails(NULL, NULL, "no access list");
}

static void test_error_messages_bounded(void **state)
{
    /* A long bad entry is shortened, control bytes are not echoed. */
    char spec[200];
    memset(spec, 'x', sizeof(spec) - 1);
    spec[sizeof(spec) - 1] = '\0';
    spec[3] = '\x1b';
    char err[256];
    assert_null(access_list_parse(spec, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "bad entry 'xxx?xxx"));
    assert_non_null(strstr(err, "...'"));
    assert_true(strlen(err) < 100);

    /* A tiny buffer is truncated, NUL-terminated. */
    char small[8];
    memset(small, 'Z', sizeof(small));
    assert_null(access_list_parse("garbage", NULL, small, sizeof(small)));
    assert_int_equal(small[7], '\0');
    assert_string_equal(small, "bad ent");

    /* No buffer at all. */
    assert_null(access_list_parse("garbage", NULL, NULL, 0));
}

static void test_patterns(void **state)
{
    struct access_patterns *p = access_patterns_new();
    assert_non_null(p);
    assert_int_equal(access_patterns_set(p, "Firewall", "192.168.*.*\n206.62.*.*"), 0);
    assert_int_equal(access_patterns_set(p, "Office LAN", "10.1.0.0/16; [firewall]"), 0);
    assert_int_equal(access_patterns_set(p, "Top", "[OFFICE LAN],2001:db8::/32"), 0);

    struct access_list *l = parse_ok("127.0.0.1;[Firewall]", p);
    assert_int_equal(access_list_count(l), 3);
    assert_true(match(l, "192.168.4.5"));
    assert_true(match(l, "206.62.0.1"));
    assert_true(match(l, "127.0.0.1"));
    assert_false(match(l, "206.63.0.1"));
    access_list_free(&l);

    /* Nested: Top -> Office LAN -> Firewall. */
    l = parse_ok("[top]", p);
    assert_int_equal(access_list_count(l), 4);
    assert_true(match(l, "10.1.200.3"));
    assert_true(match(l, "192.168.0.1"));
    assert_true(match(l, "2001:db8::5"));
    assert_false(match(l, "10.2.0.1"));
    access_list_free(&l);

    /* The same pattern twice (not a cycle) expands twice. */
    l = parse_ok("[Firewall];[Firewall]", p);
    assert_int_equal(access_list_count(l), 4);
    access_list_free(&l);

    /* Replacing a pattern changes later parses; names stay case-insensitive. */
    assert_int_equal(access_patterns_set(p, "FIREWALL", "8.8.8.8"), 0);
    l = parse_ok("[Firewall]", p);
    assert_int_equal(access_list_count(l), 1);
    assert_true(match(l, "8.8.8.8"));
    assert_false(match(l, "192.168.0.1"));
    access_list_free(&l);

    /* An empty pattern adds nothing. */
    assert_int_equal(access_patterns_set(p, "Nobody", ""), 0);
    l = parse_ok("[Nobody]", p);
    assert_int_equal(access_list_count(l), 0);
    access_list_free(&l);

    parse_fails("[Foo]", p, "unknown pattern [Foo]");
    parse_fails("[Firewall]", NULL, "unknown pattern [Firewall]");
    parse_fails("[ Firewall ]", p, "bad pattern name [ Firewall ]");
    parse_fails("[]", p, "bad pattern name []");

    /* Errors inside a pattern say which pattern. */
    assert_int_equal(access_patterns_set(p, "Broken", "1.1.1.1;300.1.*.*"), 0);
    assert_int_equal(access_patterns_set(p, "Outer", "[Broken]"), 0);
    parse_fails("[Outer]", p, "bad entry '300.1.*.*' (octet out of range) in [Broken]");
    assert_int_equal(access_patterns_set(p, "Dangling", "[Missing]"), 0);
    parse_fails("1.1.1.1;[Dangling]", p, "unknown pattern [Missing] in [Dangling]");

    access_patterns_free(&p);
    assert_null(p);
    access_patterns_free(&p);
}

static void test_pattern_cycles_and_depth(void **state)
{
    struct access_patterns *p = access_patterns_new();
    assert_int_equal(access_patterns_set(p, "A", "1.1.1.1;[B]"), 0);
    assert_int_equal(access_patterns_set(p, "B", "[a]"), 0);
    assert_int_equal(access_patterns_set(p, "Self", "2.2.2.2 [self]"), 0);
    parse_fails("[A]", p, "pattern cycle at [A]");
    parse_fails("[B]", p, "pattern cycle at [B]");
    parse_fails("[Self]", p, "pattern cycle at [Self]");

    /* A chain exactly ACCESS_MAX_DEPTH deep parses; one more does not. */
    char name[16], spec[32];
    for (int i = 0; i <= ACCESS_MAX_DEPTH; i++) {
        snprintf(name, sizeof(name), "L%d", i);
        if (i == ACCESS_MAX_DEPTH)
            snprintf(spec, sizeof(spec), "9.9.9.9");
        else
            snprintf(spec, sizeof(spec), "[L%d]", i + 1);
        assert_int_equal(access_patterns_set(p, name, spec), 0);
    }
    struct access_list *l = parse_ok("[L1]", p);
    assert_int_equal(access_list_count(l), 1);
    assert_true(match(l, "9.9.9.9"));
    access_list_free(&l);
    parse_fails("[L0]", p, "nested deeper than 16");
    access_patterns_free(&p);
}

static void test_pattern_expansion_budget(void **state)
{
    /* A diamond of references reading an empty-looking pattern over and over adds no
     * entries but must still stop. */
    struct access_patterns *p = access_patterns_new();
    char *big = malloc(ACCESS_MAX_SPEC + 1);
    assert_non_null(big);
    memset(big, ' ', ACCESS_MAX_SPEC);
    big[ACCESS_MAX_SPEC] = '\0';
    assert_int_equal(access_patterns_set(p, "Blank", big), 0);
    free(big);
    assert_int_equal(access_patterns_set(p, "Fan", "[Blank] [Blank] [Blank] [Blank]"), 0);
    assert_int_equal(access_patterns_set(p, "Fan2", "[Fan] [Fan] [Fan] [Fan] [Fan]"), 0);

    struct access_list *l = parse_ok("[Fan] [Fan] [Fan]", p); /* 12 x 64 KiB fits */
    assert_int_equal(access_list_count(l), 0);
    access_list_free(&l);
    parse_fails("[Fan2]", p, "pattern expansion exceeds 1048576 bytes at [Blank]");
    access_patterns_free(&p);
}

static void test_patterns_set_errors(void **state)
{
    struct access_patterns *p = access_patterns_new();
    assert_int_equal(access_patterns_set(p, "", "1.1.1.1"), -1);
    assert_int_equal(access_patterns_set(p, "[A]", "1.1.1.1"), -1);
    assert_int_equal(access_patterns_set(p, "a;b", "1.1.1.1"), -1);
    assert_int_equal(access_patterns_set(p, " lead", "1.1.1.1"), -1);
    assert_int_equal(access_patterns_set(p, "trail ", "1.1.1.1"), -1);
    assert_int_equal(access_patterns_set(p, "tab\there", "1.1.1.1"), -1);
    assert_int_equal(access_patterns_set(p, NULL, "1.1.1.1"), -1);
    assert_int_equal(access_patterns_set(p, "ok", NULL), -1);
    assert_int_equal(access_patterns_set(NULL, "ok", "1.1.1.1"), -1);

    char longname[ACCESS_MAX_NAME + 2];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(access_patterns_set(p, longname, "1.1.1.1"), -1);
    longname[ACCESS_MAX_NAME] = '\0';
    assert_int_equal(access_patterns_set(p, longname, "1.1.1.1"), 0);

    char *big = malloc(ACCESS_MAX_SPEC + 2);
    assert_non_null(big);
    memset(big, ' ', ACCESS_MAX_SPEC + 1);
    big[ACCESS_MAX_SPEC + 1] = '\0';
    assert_int_equal(access_patterns_set(p, "big", big), -1);
    free(big);

    /* The table is bounded; replacing an existing name still works when full. */
    char name[16];
    for (int i = 1; i < ACCESS_MAX_PATTERNS; i++) {
        snprintf(name, sizeof(name), "p%d", i);
        assert_int_equal(access_patterns_set(p, name, "1.1.1.1"), 0);
    }
    assert_int_equal(access_patterns_set(p, "one-too-many", "1.1.1.1"), -1);
    assert_int_equal(access_patterns_set(p, "P7", "7.7.7.7"), 0);
    struct access_list *l = parse_ok("[p7]", p);
    assert_true(match(l, "7.7.7.7"));
    assert_false(match(l, "1.1.1.1"));
    access_list_free(&l);
    access_patterns_free(&p);
}

static void test_limits(void **state)
{
    /* Exactly ACCESS_MAX_ENTRIES entries parse; one more does not. */
    size_t cap = (size_t)(ACCESS_MAX_ENTRIES + 1) * 2 + 1;
    char *spec = malloc(cap);
    assert_non_null(spec);
    size_t n = 0;
    for (int i = 0; i < ACCESS_MAX_ENTRIES; i++) {
        spec[n++] = '*';
        spec[n++] = ';';
    }
    spec[n] = '\0';
    struct access_list *l = parse_ok(spec, NULL);
    assert_int_equal(access_list_count(l), ACCESS_MAX_ENTRIES);
    access_list_free(&l);
    spec[n++] = '*';
    spec[n] = '\0';
    parse_fails(spec, NULL, "more than 10000 entries");
    free(spec);

    /* Expansion counts toward the entry bound too. */
    struct access_patterns *p = access_patterns_new();
    spec = malloc(6 * 2001 + 1);
    assert_non_null(spec);
    n = 0;
    for (int i = 0; i < 2001; i++) {
        memcpy(spec + n, "::1/0;", 6);
        n += 6;
    }
    spec[n] = '\0';
    assert_int_equal(access_patterns_set(p, "Many", spec), 0);
    free(spec);
    parse_fails("[Many] [Many] [Many] [Many] [Many]", p, "more than 10000 entries in [Many]");
    access_patterns_free(&p);

    /* The spec itself is bounded. */
    spec = malloc(ACCESS_MAX_SPEC + 2);
    assert_non_null(spec);
    memset(spec, ' ', ACCESS_MAX_SPEC + 1);
    spec[ACCESS_MAX_SPEC] = '\0';
    l = parse_ok(spec, NULL);
    access_list_free(&l);
    spec[ACCESS_MAX_SPEC] = ' ';
    spec[ACCESS_MAX_SPEC + 1] = '\0';
    parse_fails(spec, NULL, "longer than 65536 bytes");
    free(spec);
}

static void test_match_odd_inputs(void **state)
{
    struct access_list *l = parse_ok("*", NULL);
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    assert_false(access_list_match(l, (const struct sockaddr *)&sun));
    assert_false(access_list_match(l, NULL));
    struct sockaddr_storage ss = addr_of("1.2.3.4");
    assert_false(access_list_match(NULL, (const struct sockaddr *)&ss));
    assert_int_equal(access_list_count(NULL), 0);
    access_list_free(&l);
    access_list_free(&l);
    access_list_free(NULL);
}

static void test_allows(void **state)
{
    struct access_list *l = parse_ok("10.0.0.0/8;::1", NULL);
    struct sockaddr_storage in = addr_of("10.1.2.3");
    struct sockaddr_storage out = addr_of("11.1.2.3");
    struct sockaddr_storage in6 = addr_of("::1");
    struct sockaddr_storage mapped_in = addr_of("::ffff:10.0.0.1");
    const struct sockaddr *a_in = (const struct sockaddr *)&in;
    const struct sockaddr *a_out = (const struct sockaddr *)&out;
    const struct sockaddr *a_in6 = (const struct sockaddr *)&in6;
    const struct sockaddr *a_mapped = (const struct sockaddr *)&mapped_in;

    assert_true(access_allows(ACCESS_OFF, l, a_in));
    assert_true(access_allows(ACCESS_OFF, l, a_out));
    assert_true(access_allows(ACCESS_OFF, NULL, NULL));

    assert_true(access_allows(ACCESS_GRANT, l, a_in));
    assert_true(access_allows(ACCESS_GRANT, l, a_in6));
    assert_true(access_allows(ACCESS_GRANT, l, a_mapped));
    assert_false(access_allows(ACCESS_GRANT, l, a_out));
    assert_false(access_allows(ACCESS_GRANT, NULL, a_in));

    assert_false(access_allows(ACCESS_DENY, l, a_in));
    assert_false(access_allows(ACCESS_DENY, l, a_in6));
    assert_false(access_allows(ACCESS_DENY, l, a_mapped));
    assert_true(access_allows(ACCESS_DENY, l, a_out));
    assert_true(access_allows(ACCESS_DENY, NULL, a_in));

    assert_false(access_allows((enum access_mode)42, l, a_out));
    access_list_free(&l);

    /* An empty list: grant lets nobody in, deny lets everybody in. */
    l = parse_ok("", NULL);
    assert_false(access_allows(ACCESS_GRANT, l, a_in));
    assert_true(access_allows(ACCESS_DENY, l, a_in));
    access_list_free(&l);
}

static void test_mode_parse(void **state)
{
    enum access_mode m = ACCESS_DENY;
    assert_int_equal(access_mode_parse("off", &m), 0);
    assert_int_equal(m, ACCESS_OFF);
    assert_int_equal(access_mode_parse("GRANT", &m), 0);
    assert_int_equal(m, ACCESS_GRANT);
    assert_int_equal(access_mode_parse("Deny", &m), 0);
    assert_int_equal(m, ACCESS_DENY);

    const char *bad[] = {"", "of", "offf", "grants", " deny", "deny ", "allow", "0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        m = ACCESS_GRANT;
        assert_int_equal(access_mode_parse(bad[i], &m), -1);
        assert_int_equal(m, ACCESS_GRANT);
    }
    assert_int_equal(access_mode_parse(NULL, &m), -1);
    assert_int_equal(access_mode_parse("off", NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_addresses),
        cmocka_unit_test(test_cidr_v4),
        cmocka_unit_test(test_cidr_v6),
        cmocka_unit_test(test_wildcards_and_ranges),
        cmocka_unit_test(test_star_and_mapped),
        cmocka_unit_test(test_separators_and_empty),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_error_messages_bounded),
        cmocka_unit_test(test_patterns),
        cmocka_unit_test(test_pattern_cycles_and_depth),
        cmocka_unit_test(test_pattern_expansion_budget),
        cmocka_unit_test(test_patterns_set_errors),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_match_odd_inputs),
        cmocka_unit_test(test_allows),
        cmocka_unit_test(test_mode_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
