/* layer: proto */
/* Unit tests for header field parsing: field splitting, unfolding, RFC 2047 encoded-words in
 * several charsets, RFC 2045/2231 parameters, RFC 5322 address lists (with the examples of
 * RFC 5322 Appendix A and RFC 2231 §3-§4 as written there). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/mime/header.h"

/* ---- fields and unfolding ------------------------------------------------------------------- */

static void test_next_field(void **state)
{
    const char *h = "From: a@b\r\n"
                    "Subject: hello\r\n world\r\n"
                    "bogus line without colon\r\n"
                    "  continuation of the bogus line: x\r\n"
                    "X-Spaced : z\r\n"
                    ": no name\r\n"
                    "Bad Name: y\r\n"
                    "Last:v\n"
                    "\r\n"
                    "Body: not a header\r\n";
    size_t pos = 0, len = strlen(h);
    struct mime_header_field f;
    assert_int_equal(mime_header_next_field(h, len, &pos, &f), 1);
    assert_int_equal(f.name_len, 4);
    assert_memory_equal(f.name, "From", 4);
    assert_int_equal(f.value_len, strlen(" a@b\r\n"));
    assert_memory_equal(f.value, " a@b\r\n", f.value_len);
    assert_int_equal(mime_header_next_field(h, len, &pos, &f), 1);
    assert_memory_equal(f.name, "Subject", 7);
    assert_int_equal(f.value_len, strlen(" hello\r\n world\r\n"));
    assert_memory_equal(f.value, " hello\r\n world\r\n", f.value_len);
    assert_int_equal(mime_header_next_field(h, len, &pos, &f), 1); /* bogus lines skipped */
    assert_int_equal(f.name_len, 8);
    assert_memory_equal(f.name, "X-Spaced", 8); /* RFC 5322 §4.5: WSP before the colon */
    assert_memory_equal(f.value, " z\r\n", 4);
    assert_int_equal(mime_header_next_field(h, len, &pos, &f), 1); /* ": no name", "Bad Name" */
    assert_int_equal(f.name_len, 4);
    assert_memory_equal(f.name, "Last", 4);
    assert_memory_equal(f.value, "v\n", 2);
    assert_int_equal(mime_header_next_field(h, len, &pos, &f), 0); /* stops at the blank line */
    assert_int_equal(mime_header_next_field(h, len, &pos, &f), 0);

    pos = 0;
    assert_int_equal(mime_header_next_field("", 0, &pos, &f), 0);
    pos = 0; /* a header without its blank line, last line without a line break */
    const char *nob = "A: 1\r\nB: 2";
    assert_int_equal(mime_header_next_field(nob, strlen(nob), &pos, &f), 1);
    assert_int_equal(mime_header_next_field(nob, strlen(nob), &pos, &f), 1);
    assert_memory_equal(f.name, "B", 1);
    assert_int_equal(f.value_len, 2);
    assert_int_equal(mime_header_next_field(nob, strlen(nob), &pos, &f), 0);
}

static void check_unfold(const char *in, size_t len, const char *want)
{
    char *s = mime_header_unfold(in, len);
    assert_non_null(s);
    assert_string_equal(s, want);
    free(s);
}

static void test_unfold(void **state)
{
    check_unfold(" hello\r\n world\r\n", 16, "hello world");
    check_unfold("\t x \r\n\t y\t\r\n", 12, "x \t y");
    check_unfold(" bare\n\tlf\n", 10, "bare\tlf");
    check_unfold("", 0, "");
    check_unfold(" \r\n ", 4, "");
    check_unfold(" a\0b", 4, "a b"); /* NUL becomes a space */
    check_unfold(" lone\rcr", 8, "lone\rcr");
}

/* ---- RFC 2047 ------------------------------------------------------------------------------- */

static void check_decode(const char *in, const char *want)
{
    char *s = mime_header_decode(in, strlen(in));
    assert_non_null(s);
    assert_string_equal(s, want);
    free(s);
}

static void test_decode_rfc2047_examples(void **state)
{
    /* RFC 2047 §8 */
    check_decode("=?US-ASCII?Q?Keith_Moore?= <moore@cs.utk.edu>", "Keith Moore <moore@cs.utk.edu>");
    check_decode("=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?=", "Keld J\xc3\xb8rn Simonsen");
    check_decode("=?ISO-8859-1?Q?Andr=E9?= Pirard", "Andr\xc3\xa9 Pirard");
    check_decode("=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?= "
                 "=?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=",
                 "If you can read this you understand the example.");
    check_decode("(=?ISO-8859-1?Q?a?=)", "(a)");
    check_decode("(=?ISO-8859-1?Q?a?= b)", "(a b)");
    check_decode("(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)");
    check_decode("(=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=)", "(ab)");
    check_decode("(=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=)", "(ab)");
    check_decode("(=?ISO-8859-1?Q?a_b?=)", "(a b)");
    check_decode("(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)", "(a b)");
    check_decode("a =?ISO-8859-1?Q?b?= c", "a b c");
}

static void test_decode_charsets(void **state)
{
    check_decode("=?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=", "Gr\xc3\xbc\xc3\x9f"
                                                         "e aus K\xc3\xb6ln");
    check_decode("=?utf-8?q?=C3=A9t=C3=A9?=", "\xc3\xa9t\xc3\xa9");
    check_decode("=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=", "\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88");
    check_decode("=?koi8-r?B?8NLJ18XUIM3J0g==?=",
                 "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xd0\xbc\xd0\xb8\xd1\x80");
    check_decode("=?gb2312?B?1tDOxNPKvP4=?=", "\xe4\xb8\xad\xe6\x96\x87\xe9\x82\xae\xe4\xbb\xb6");
    check_decode("=?shift_jis?B?k/qWe4zq?=", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e");
    check_decode("=?windows-1252?Q?=80_5?=", "\xe2\x82\xac 5");
    /* a character split across two words in one charset survives */
    check_decode("=?UTF-8?Q?caf=C3?= =?UTF-8?Q?=A9?=", "caf\xc3\xa9");
    /* RFC 2231 §5 language suffix */
    check_decode("=?utf-8*en?Q?hi?=", "hi");
    /* lower-case encoding letters, words glued to text (seen in the wild) */
    check_decode("Re:=?utf-8?b?w6k=?=!", "Re:\xc3\xa9!");
}

static void test_decode_malformed(void **state)
{
    check_decode("=?x-no-such-charset?Q?abc?=", "=?x-no-such-charset?Q?abc?=");
    check_decode("=?utf-8?X?abc?=", "=?utf-8?X?abc?=");
    check_decode("=?utf-8?Q?unterminated", "=?utf-8?Q?unterminated");
    check_decode("=?utf-8?B?not*base64?=", "=?utf-8?B?not*base64?=");
    check_decode("=?utf-8?Q?with space?=", "=?utf-8?Q?with space?=");
    check_decode("=?utf//translit?Q?x?=", "=?utf//translit?Q?x?="); /* no iconv options */
    check_decode("=?", "=?");
    check_decode("=?utf-8?Q?\?=", ""); /* "?\?=" avoids a trigraph */
    check_decode("=?utf-8?Q?=ZZ=4?=", "=ZZ=4");
    /* invalid UTF-8 in a UTF-8 word: that byte is read as ISO-8859-1 (the lenient path) */
    check_decode("=?utf-8?Q?a=FFb?=", "a\xc3\xbf"
                                      "b");
    /* raw 8-bit: valid UTF-8 is kept, other bytes are ISO-8859-1 */
    check_decode("Caf\xc3\xa9", "Caf\xc3\xa9");
    check_decode("Caf\xe9", "Caf\xc3\xa9");
    /* control characters from decoded text cannot inject line breaks */
    check_decode("=?utf-8?Q?a=0D=0Ab=00c?=", "a  b c");
    check_decode("a\tb", "a\tb");

    /* many "=?" starts and no "?=" anywhere: stays linear (it would take minutes if every
     * start searched to the end) and leaves the text as it is */
    size_t n = 256 * 1024;
    char *many = malloc(n + 1);
    assert_non_null(many);
    for (size_t i = 0; i < n; i++)
        many[i] = "=?a?q?a"[i % 7];
    many[n] = '\0';
    char *s = mime_header_decode(many, n);
    assert_non_null(s);
    assert_string_equal(s, many);
    free(s);
    free(many);
}

static void test_charset_to_utf8(void **state)
{
    char *s;
    size_t n;
    assert_int_equal(
        mime_header_charset_to_utf8("windows-1251", "\xcf\xf0\xe8\xe2\xe5\xf2", 6, &s, &n), 0);
    assert_string_equal(s, "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82");
    assert_int_equal(n, 12);
    free(s);
    assert_int_equal(mime_header_charset_to_utf8(NULL, "ok\xe9", 3, &s, NULL), 0);
    assert_string_equal(s, "ok\xc3\xa9");
    free(s);
    assert_int_equal(mime_header_charset_to_utf8("no-such", "abc", 3, &s, NULL), 0);
    assert_string_equal(s, "abc");
    free(s);
    /* an invalid sequence in a declared charset becomes U+FFFD */
    assert_int_equal(mime_header_charset_to_utf8("shift_jis", "a\x81", 2, &s, NULL), 0);
    assert_string_equal(s, "a\xef\xbf\xbd");
    free(s);
    char buf[MIME_HEADER_MAX_CHARSET + 1];
    assert_string_equal(mime_header_charset_iconv_name("ISO-8859-1", buf, sizeof(buf)),
                        "WINDOWS-1252");
    assert_string_equal(mime_header_charset_iconv_name(" KOI8-R*ru", buf, sizeof(buf)), "koi8-r");
    assert_null(mime_header_charset_iconv_name("UTF-8", buf, sizeof(buf)));
    assert_null(mime_header_charset_iconv_name("us-ascii", buf, sizeof(buf)));
    assert_null(mime_header_charset_iconv_name("utf-8//IGNORE", buf, sizeof(buf)));
    assert_null(mime_header_charset_iconv_name(NULL, buf, sizeof(buf)));
    assert_int_equal(mime_header_utf8_len((const unsigned char *)"\xe2\x82\xac", 3), 3);
    assert_int_equal(mime_header_utf8_len((const unsigned char *)"\xe2\x82", 2), -1);
    assert_int_equal(mime_header_utf8_len((const unsigned char *)"\xc0\x80", 2), 0); /* overlong */
    assert_int_equal(mime_header_utf8_len((const unsigned char *)"\xed\xa0\x80", 3), 0);
}

/* ---- parameters ----------------------------------------------------------------------------- */

struct parsed {
    char *token;
    struct mime_param *v;
    size_t n;
};

static struct parsed params(const char *in)
{
    struct parsed p;
    assert_int_equal(mime_header_params_parse(in, strlen(in), &p.token, &p.v, &p.n), 0);
    assert_non_null(p.token);
    return p;
}

static void parsed_free(struct parsed *p)
{
    free(p->token);
    mime_header_params_free(&p->v, p->n);
    assert_null(p->v);
}

static void check_param(const struct parsed *p, size_t i, const char *name, const char *value,
                        const char *decoded, bool extended)
{
    assert_true(i < p->n);
    assert_string_equal(p->v[i].name, name);
    assert_string_equal(p->v[i].value, value);
    assert_string_equal(p->v[i].decoded, decoded);
    assert_int_equal(p->v[i].extended, extended);
}

static void test_params_basic(void **state)
{
    /* RFC 2045 §5.1's example, with its comment */
    struct parsed p = params(" text/plain; charset=us-ascii (Plain text)");
    assert_string_equal(p.token, "text/plain");
    assert_int_equal(p.n, 1);
    check_param(&p, 0, "charset", "us-ascii", "us-ascii", false);
    parsed_free(&p);

    p = params("Text/HTML;Charset=\"UTF-8\";\r\n\tFormat=flowed");
    assert_string_equal(p.token, "text/html");
    assert_int_equal(p.n, 2);
    check_param(&p, 0, "charset", "UTF-8", "UTF-8", false);
    check_param(&p, 1, "format", "flowed", "flowed", false);
    parsed_free(&p);

    p = params("multipart/mixed; boundary=\"foo\r\n bar\"");
    check_param(&p, 0, "boundary", "foo bar", "foo bar", false);
    parsed_free(&p);

    p = params("text / plain (comment) ; foo=\"a\\\"b\"; ; junk; =x; bar=1");
    assert_string_equal(p.token, "text/plain");
    assert_int_equal(p.n, 2);
    check_param(&p, 0, "foo", "a\"b", "a\"b", false);
    check_param(&p, 1, "bar", "1", "1", false);
    parsed_free(&p);

    /* unquoted values with spaces, as broken mailers send file names */
    p = params("attachment; filename=my file (1).pdf; size=10");
    assert_string_equal(p.token, "attachment");
    check_param(&p, 0, "filename", "my file (1).pdf", "my file (1).pdf", false);
    check_param(&p, 1, "size", "10", "10", false);
    parsed_free(&p);

    /* RFC 2047 in a plain value: decoded, value kept raw */
    p = params("attachment; filename=\"=?UTF-8?B?4oKsIHJhdGVzLnBkZg==?=\"");
    check_param(&p, 0, "filename", "=?UTF-8?B?4oKsIHJhdGVzLnBkZg==?=", "\xe2\x82\xac rates.pdf",
                false);
    parsed_free(&p);

    /* whitespace goes around '/', but separates two words: an invalid token for the caller */
    p = params("in line (comment); x=y");
    assert_string_equal(p.token, "in line");
    check_param(&p, 0, "x", "y", "y", false);
    parsed_free(&p);

    p = params("");
    assert_string_equal(p.token, "");
    assert_int_equal(p.n, 0);
    assert_null(p.v);
    parsed_free(&p);
}

static void test_params_rfc2231(void **state)
{
    /* RFC 2231 §3 */
    struct parsed p = params("message/external-body; access-type=URL;\r\n URL*0=\"ftp://\";\r\n"
                             " URL*1=\"cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar\"");
    assert_int_equal(p.n, 2);
    check_param(&p, 0, "access-type", "URL", "URL", false);
    check_param(&p, 1, "url", "ftp://cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar",
                "ftp://cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar", false);
    parsed_free(&p);

    /* RFC 2231 §4 */
    p = params("application/x-stuff;\r\n title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A");
    check_param(&p, 0, "title", "us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A",
                "This is ***fun***", true);
    parsed_free(&p);

    /* RFC 2231 §4.1: mixed extended and plain sections */
    p = params("application/x-stuff;\r\n title*0*=us-ascii'en'This%20is%20even%20more%20;\r\n"
               " title*1*=%2A%2A%2Afun%2A%2A%2A%20;\r\n title*2=\"isn't it!\"");
    assert_int_equal(p.n, 1);
    check_param(&p, 0, "title",
                "us-ascii'en'This%20is%20even%20more%20%2A%2A%2Afun%2A%2A%2A%20isn't it!",
                "This is even more ***fun*** isn't it!", true);
    parsed_free(&p);

    /* charset conversion, both forms side by side, lookup prefers the extended one */
    p = params("attachment; filename=\"rates.pdf\"; filename*=UTF-8''%E2%82%AC%20rates.pdf");
    assert_int_equal(p.n, 2);
    check_param(&p, 1, "filename", "UTF-8''%E2%82%AC%20rates.pdf", "\xe2\x82\xac rates.pdf", true);
    assert_ptr_equal(mime_header_param_find(p.v, p.n, "filename"), &p.v[1]);
    assert_null(mime_header_param_find(p.v, p.n, "name"));
    parsed_free(&p);

    p = params("attachment; filename*=iso-8859-1'fr'caf%E9.txt");
    check_param(&p, 0, "filename", "iso-8859-1'fr'caf%E9.txt", "caf\xc3\xa9.txt", true);
    parsed_free(&p);

    /* out of order sections are merged in order; a plain first section with extended later
     * ones gets an empty charset and its '%' escaped (as Dovecot writes it) */
    p = params("x/y; name*1*=%41; name*0=\"50%\"; other=1");
    assert_int_equal(p.n, 2);
    check_param(&p, 0, "name", "''50%25%41", "50%A", true);
    check_param(&p, 1, "other", "1", "1", false);
    parsed_free(&p);

    p = params("x/y; n*1=\"b\"; n*0=\"a\"; n*2=c");
    check_param(&p, 0, "n", "abc", "abc", false);
    parsed_free(&p);

    /* a gap or a repeat: kept as they came */
    p = params("x/y; n*0=a; n*2=c");
    assert_int_equal(p.n, 2);
    check_param(&p, 0, "n*0", "a", "a", false);
    check_param(&p, 1, "n*2", "c", "c", false);
    parsed_free(&p);
    p = params("x/y; n*0=a; n*0=b");
    assert_int_equal(p.n, 2);
    parsed_free(&p);

    /* not RFC 2231 forms */
    p = params("x/y; *0=a; n*x=b; n*1000=c");
    assert_int_equal(p.n, 3);
    check_param(&p, 0, "*0", "a", "a", false);
    check_param(&p, 1, "n*x", "b", "b", false);
    check_param(&p, 2, "n*1000", "c", "c", false);
    parsed_free(&p);

    /* no quotes in the extended value: no charset, the whole is text */
    p = params("x/y; n*=abc%20d");
    check_param(&p, 0, "n", "abc%20d", "abc d", true);
    parsed_free(&p);
}

static void test_params_limit(void **state)
{
    char buf[8192];
    size_t o = (size_t)snprintf(buf, sizeof(buf), "x/y");
    for (int i = 0; i < 200; i++)
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "; p%d=%d", i, i);
    struct parsed p = params(buf);
    assert_int_equal(p.n, MIME_HEADER_MAX_PARAMS);
    check_param(&p, 127, "p127", "127", "127", false);
    parsed_free(&p);
}

/* ---- addresses ------------------------------------------------------------------------------ */

struct alist {
    struct mime_address *v;
    size_t n;
};

static struct alist addrs(const char *in)
{
    struct alist a;
    assert_int_equal(mime_header_addresses_parse(in, strlen(in), &a.v, &a.n), 0);
    return a;
}

static void alist_free(struct alist *a)
{
    mime_header_addresses_free(&a->v, a->n);
    assert_null(a->v);
}

static void check_nstr(const char *got, const char *want)
{
    if (!want)
        assert_null(got);
    else {
        assert_non_null(got);
        assert_string_equal(got, want);
    }
}

static void check_mbox(const struct alist *a, size_t i, const char *name, const char *route,
                       const char *mailbox, const char *domain)
{
    assert_true(i < a->n);
    assert_int_equal(a->v[i].kind, MIME_ADDRESS_MAILBOX);
    check_nstr(a->v[i].name, name);
    check_nstr(a->v[i].route, route);
    check_nstr(a->v[i].mailbox, mailbox);
    check_nstr(a->v[i].domain, domain);
}

static void check_group(const struct alist *a, size_t i, const char *name)
{
    assert_true(i < a->n);
    assert_int_equal(a->v[i].kind, name ? MIME_ADDRESS_GROUP_START : MIME_ADDRESS_GROUP_END);
    check_nstr(a->v[i].mailbox, name);
    assert_null(a->v[i].name);
    assert_null(a->v[i].domain);
}

static void test_addresses_rfc5322_examples(void **state)
{
    /* Appendix A.1.1 */
    struct alist a = addrs("John Doe <jdoe@machine.example>");
    assert_int_equal(a.n, 1);
    check_mbox(&a, 0, "John Doe", NULL, "jdoe", "machine.example");
    assert_false(a.v[0].invalid);
    alist_free(&a);
    /* A.1.2 */
    a = addrs("\"Joe Q. Public\" <john.q.public@example.com>");
    check_mbox(&a, 0, "Joe Q. Public", NULL, "john.q.public", "example.com");
    alist_free(&a);
    a = addrs("Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>");
    assert_int_equal(a.n, 3);
    check_mbox(&a, 0, "Mary Smith", NULL, "mary", "x.test");
    check_mbox(&a, 1, NULL, NULL, "jdoe", "example.org");
    check_mbox(&a, 2, "Who?", NULL, "one", "y.test");
    alist_free(&a);
    a = addrs("<boss@nil.test>, \"Giant; \\\"Big\\\" Box\" <sysservices@example.net>");
    assert_int_equal(a.n, 2);
    check_mbox(&a, 0, NULL, NULL, "boss", "nil.test");
    check_mbox(&a, 1, "Giant; \"Big\" Box", NULL, "sysservices", "example.net");
    alist_free(&a);
    /* A.1.3: groups */
    a = addrs("A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;");
    assert_int_equal(a.n, 5);
    check_group(&a, 0, "A Group");
    check_mbox(&a, 1, "Ed Jones", NULL, "c", "a.test");
    check_mbox(&a, 2, NULL, NULL, "joe", "where.test");
    check_mbox(&a, 3, "John", NULL, "jdoe", "one.test");
    check_group(&a, 4, NULL);
    alist_free(&a);
    a = addrs("Undisclosed recipients:;");
    assert_int_equal(a.n, 2);
    check_group(&a, 0, "Undisclosed recipients");
    check_group(&a, 1, NULL);
    alist_free(&a);
    /* A.5: comments everywhere */
    a = addrs("Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>");
    assert_int_equal(a.n, 1);
    check_mbox(&a, 0, "Pete", NULL, "pete", "silly.test");
    alist_free(&a);
    a = addrs("A Group(Some people)\r\n     :Chris Jones <c@(Chris's host.)public.example>,\r\n"
              "         joe@example.org,\r\n  John <jdoe@one.test> (my dear friend); (the end of "
              "the group)");
    assert_int_equal(a.n, 5);
    check_group(&a, 0, "A Group");
    check_mbox(&a, 1, "Chris Jones", NULL, "c", "public.example");
    check_mbox(&a, 2, NULL, NULL, "joe", "example.org");
    check_mbox(&a, 3, "John", NULL, "jdoe", "one.test");
    check_group(&a, 4, NULL);
    alist_free(&a);
    /* A.6.1 / A.6.3: obsolete forms */
    a = addrs("Joe Q. Public <john.q.public@example.com>");
    check_mbox(&a, 0, "Joe Q. Public", NULL, "john.q.public", "example.com");
    alist_free(&a);
    a = addrs("Mary Smith <@node.test:mary@example.net>, , jdoe@test  . example");
    assert_int_equal(a.n, 2);
    check_mbox(&a, 0, "Mary Smith", "@node.test", "mary", "example.net");
    check_mbox(&a, 1, NULL, NULL, "jdoe", "test.example");
    alist_free(&a);
    a = addrs("John Doe <jdoe@machine(comment).  example>");
    check_mbox(&a, 0, "John Doe", NULL, "jdoe", "machine.example");
    alist_free(&a);
}

static void test_addresses_edge_cases(void **state)
{
    struct alist a = addrs("<@route1,@route2:user@domain>, x <@a @b:c@d>");
    assert_int_equal(a.n, 2);
    check_mbox(&a, 0, NULL, "@route1,@route2", "user", "domain");
    check_mbox(&a, 1, "x", "@a,@b", "c", "d");
    alist_free(&a);

    /* what Dovecot fills in for what is missing */
    a = addrs("user (hello), @domain, <@only.domain>, Name <>, ");
    assert_int_equal(a.n, 4);
    check_mbox(&a, 0, "hello", NULL, "user", "MISSING_DOMAIN");
    assert_true(a.v[0].invalid);
    check_mbox(&a, 1, NULL, NULL, "MISSING_MAILBOX", "domain");
    assert_true(a.v[1].invalid);
    check_mbox(&a, 2, NULL, NULL, "MISSING_MAILBOX", "only.domain");
    check_mbox(&a, 3, "Name", NULL, "MISSING_MAILBOX", "MISSING_DOMAIN");
    alist_free(&a);

    a = addrs("user@host (Real Name), \"\" <a@b>, =?utf-8?q?J=C3=B6rg?= <j@x>");
    assert_int_equal(a.n, 3);
    check_mbox(&a, 0, "Real Name", NULL, "user", "host");
    check_mbox(&a, 1, NULL, NULL, "a", "b");
    check_mbox(&a, 2, "=?utf-8?q?J=C3=B6rg?=", NULL, "j", "x"); /* encoded-words stay */
    alist_free(&a);

    a = addrs("a@[127.0.0.1], \"john doe\"@example.com, J\xc3\xb6rg <j\xc3\xb6rg@b\xc3\xbc"
              "cher.example>");
    assert_int_equal(a.n, 3);
    check_mbox(&a, 0, NULL, NULL, "a", "[127.0.0.1]");
    check_mbox(&a, 1, NULL, NULL, "john doe", "example.com");
    check_mbox(&a, 2, "J\xc3\xb6rg", NULL, "j\xc3\xb6rg",
               "b\xc3\xbc"
               "cher.example");
    alist_free(&a);

    /* junk is skipped up to the next comma */
    a = addrs("a@b.c <garbage, d@e, >>>, ;;, f@g");
    assert_int_equal(a.n, 3);
    check_mbox(&a, 0, NULL, NULL, "a", "b.c");
    check_mbox(&a, 1, NULL, NULL, "d", "e");
    check_mbox(&a, 2, NULL, NULL, "f", "g");
    alist_free(&a);

    /* an unterminated group is closed at the end; no nested groups */
    a = addrs("g: a@b, inner: c@d, e@f");
    assert_int_equal(a.n, 5);
    check_group(&a, 0, "g");
    check_mbox(&a, 1, NULL, NULL, "a", "b");
    check_mbox(&a, 2, NULL, NULL, "inner", "MISSING_DOMAIN");
    check_mbox(&a, 3, NULL, NULL, "e", "f");
    check_group(&a, 4, NULL);
    alist_free(&a);

    a = addrs(": a@b;");
    assert_int_equal(a.n, 3);
    check_group(&a, 0, "");
    alist_free(&a);

    a = addrs("");
    assert_int_equal(a.n, 0);
    assert_null(a.v);
    alist_free(&a);
    a = addrs("  ,, (just a comment) ,");
    assert_int_equal(a.n, 0);
    alist_free(&a);
    a = addrs("i<@,\t"); /* a route cut short at the end (found by fuzz_mime_header) */
    assert_int_equal(a.n, 1);
    check_mbox(&a, 0, "i", NULL, "MISSING_MAILBOX", "MISSING_DOMAIN");
    alist_free(&a);
    a = addrs("\"unterminated <a@b>");
    assert_int_equal(a.n, 1);
    check_mbox(&a, 0, NULL, NULL, "unterminated <a@b>", "MISSING_DOMAIN");
    alist_free(&a);
}

static void test_addresses_limit(void **state)
{
    size_t count = MIME_HEADER_MAX_ADDRESSES + 50;
    char *buf = malloc(count * 6 + 1);
    assert_non_null(buf);
    for (size_t i = 0; i < count; i++)
        memcpy(buf + i * 6, "a@b.c,", 6);
    buf[count * 6] = '\0';
    struct alist a = addrs(buf);
    assert_int_equal(a.n, MIME_HEADER_MAX_ADDRESSES);
    alist_free(&a);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_next_field),
        cmocka_unit_test(test_unfold),
        cmocka_unit_test(test_decode_rfc2047_examples),
        cmocka_unit_test(test_decode_charsets),
        cmocka_unit_test(test_decode_malformed),
        cmocka_unit_test(test_charset_to_utf8),
        cmocka_unit_test(test_params_basic),
        cmocka_unit_test(test_params_rfc2231),
        cmocka_unit_test(test_params_limit),
        cmocka_unit_test(test_addresses_rfc5322_examples),
        cmocka_unit_test(test_addresses_edge_cases),
        cmocka_unit_test(test_addresses_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
