/* layer: proto */
/* Unit tests for modified UTF-7 (proto/imap/utf7.c): the RFC 3501 §5.1.3 example, fixed
 * encodings (checked by hand against the base64 bit layout, and the astral one against Python's
 * UTF-7 codec, which differs only in '+' for '&'), every kind of invalid input, and two
 * properties over many inputs: UTF-8 survives encode+decode, and whatever decodes is canonical
 * (encoding the result gives back the same bytes), checked exhaustively over short strings of
 * the characters that matter. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/imap/utf7.h"

static void check_pair(const char *utf7, const char *utf8)
{
    char *out;
    size_t len;
    char err[128] = "";
    if (imap_utf7_decode(utf7, strlen(utf7), &out, &len, err, sizeof(err)) < 0)
        fail_msg("decode \"%s\": %s", utf7, err);
    assert_string_equal(out, utf8);
    assert_int_equal(len, strlen(utf8));
    free(out);
    if (imap_utf7_encode(utf8, strlen(utf8), &out, &len, err, sizeof(err)) < 0)
        fail_msg("encode \"%s\": %s", utf8, err);
    assert_string_equal(out, utf7);
    assert_int_equal(len, strlen(utf7));
    free(out);
}

static void check_bad_utf7(const char *in, size_t len, const char *errpart)
{
    char *out = (char *)1;
    char err[128] = "";
    if (imap_utf7_decode(in, len, &out, NULL, err, sizeof(err)) == 0)
        fail_msg("\"%.*s\" decoded to \"%s\"", (int)len, in, out);
    assert_null(out);
    if (!strstr(err, errpart))
        fail_msg("\"%.*s\": error \"%s\" lacks \"%s\"", (int)len, in, err, errpart);
}

#define BAD7(lit, part) check_bad_utf7(lit, sizeof(lit) - 1, part)

static void test_rfc3501_example(void **state)
{
    (void)state;
    /* RFC 3501 §5.1.3: "~peter/mail/台北/日本語" */
    check_pair("~peter/mail/&U,BTFw-/&ZeVnLIqe-",
               "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e");
}

static void test_pairs(void **state)
{
    (void)state;
    check_pair("", "");
    check_pair("INBOX", "INBOX");
    check_pair(" !\"#$%'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~",
               " !\"#$%'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~");
    check_pair("&-", "&");
    check_pair("a&-b&-&-", "a&b&&");
    check_pair("&AOk-", "\xc3\xa9");               /* é U+00E9 */
    check_pair("Entw&APw-rfe", "Entw\xc3\xbcrfe"); /* Entwürfe */
    check_pair("&AOkA6Q-", "\xc3\xa9\xc3\xa9");    /* two units in one run */
    check_pair("a&AOk- b", "a\xc3\xa9 b");
    check_pair("&AOk-&-", "\xc3\xa9&"); /* a run then "&-" is no null shift */
    check_pair("&AAE-", "\x01");        /* controls are encoded */
    check_pair("&AH8-", "\x7f");        /* DEL too */
    check_pair("&AAkACg-", "\t\n");
    check_pair("&2D3eAA-", "\xf0\x9f\x98\x80"); /* U+1F600, a surrogate pair */
    check_pair("&2D3eANg93gE-", "\xf0\x9f\x98\x80\xf0\x9f\x98\x81");
    check_pair("&,,8-", "\xef\xbf\xbf");        /* U+FFFF */
    check_pair("&2,,f,w-", "\xf4\x8f\xbf\xbf"); /* U+10FFFF */
    check_pair("&AIA-", "\xc2\x80");            /* U+0080 */
}

static void test_bad_utf7(void **state)
{
    (void)state;
    BAD7("&", "end");
    BAD7("a&", "end");
    BAD7("&AOk", "unterminated");
    BAD7("&AOk-&AOk-", "two encoded runs"); /* "-&" null shift */
    BAD7("&AGE-", "printable");             /* 'a' encoded */
    BAD7("&ACY-", "printable");             /* '&' encoded (it is "&-") */
    BAD7("&ACA-", "printable");             /* SP encoded */
    BAD7("&AH4-", "printable");             /* '~' encoded */
    BAD7("&AOkA-", "non-canonical");        /* a character too many */
    BAD7("&AOl-", "non-canonical");         /* non-zero padding bits */
    BAD7("&A-", "non-canonical");           /* no whole unit */
    BAD7("&AA-", "non-canonical");
    BAD7("&2D0-", "unpaired high");    /* lone high surrogate */
    BAD7("&2D0AOQ-", "unpaired high"); /* high then not a low */
    BAD7("&3gA-", "unpaired low");     /* lone low surrogate */
    BAD7("&AAA-", "NUL");
    BAD7("&AO=-", "invalid base64");
    BAD7("&AO/-", "invalid base64"); /* standard base64 '/' is ',' here */
    BAD7("&*-", "invalid base64");
    BAD7("caf\xc3\xa9", "printable ASCII"); /* raw 8-bit */
    BAD7("a\tb", "printable ASCII");
    BAD7("a\x7f", "printable ASCII");
    BAD7("a\0b", "printable ASCII");
    /* err may be NULL */
    char *out;
    assert_int_equal(imap_utf7_decode("&", 1, &out, NULL, NULL, 0), -1);
}

static void test_bad_utf8(void **state)
{
    (void)state;
    static const char *bad[] = {
        "\xc3",             /* truncated */
        "\xc0\x80",         /* overlong */
        "\xe0\x80\xaf",     /* overlong */
        "\xed\xa0\x80",     /* surrogate */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\x80",             /* stray continuation */
        "ok\xff",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *out = (char *)1;
        char err[64] = "";
        assert_int_equal(imap_utf7_encode(bad[i], strlen(bad[i]), &out, NULL, err, sizeof(err)),
                         -1);
        assert_null(out);
        assert_non_null(strstr(err, "invalid UTF-8"));
    }
    char *out;
    char err[64] = "";
    assert_int_equal(imap_utf7_encode("a\0b", 3, &out, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "NUL"));
}

/* A pseudo-random UTF-8 string of up to 40 characters from every class the encoder treats
 * differently. */
static size_t random_utf8(uint32_t *seed, char *out)
{
    size_t n = 0, chars = (*seed >> 16) % 41;
    for (size_t i = 0; i < chars; i++) {
        *seed = *seed * 1103515245u + 12345u;
        uint32_t r = *seed >> 8, cp;
        switch (r % 6) {
        case 0:
            cp = 0x20 + (r >> 3) % 0x5f; /* printable ASCII */
            break;
        case 1:
            cp = '&';
            break;
        case 2:
            cp = 1 + (r >> 3) % 0x1f; /* controls */
            break;
        case 3:
            cp = 0x80 + (r >> 3) % 0x780; /* two bytes */
            break;
        case 4:
            cp = 0x800 + (r >> 3) % 0xf800; /* three bytes, surrogates skipped below */
            if (cp >= 0xd800 && cp <= 0xdfff)
                cp = 0xe000;
            break;
        default:
            cp = 0x10000 + (r >> 3) % 0x100000; /* four bytes */
            break;
        }
        if (cp < 0x80) {
            out[n++] = (char)cp;
        } else if (cp < 0x800) {
            out[n++] = (char)(0xc0 | (cp >> 6));
            out[n++] = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            out[n++] = (char)(0xe0 | (cp >> 12));
            out[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
            out[n++] = (char)(0x80 | (cp & 0x3f));
        } else {
            out[n++] = (char)(0xf0 | (cp >> 18));
            out[n++] = (char)(0x80 | ((cp >> 12) & 0x3f));
            out[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
            out[n++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    return n;
}

static void test_round_trip(void **state)
{
    (void)state;
    uint32_t seed = 42;
    char in[200];
    for (int round = 0; round < 20000; round++) {
        seed = seed * 1103515245u + 12345u;
        size_t n = random_utf8(&seed, in);
        char *enc, *dec, *again;
        size_t elen, dlen, alen;
        assert_int_equal(imap_utf7_encode(in, n, &enc, &elen, NULL, 0), 0);
        for (size_t i = 0; i < elen; i++)
            assert_true(enc[i] >= 0x20 && enc[i] <= 0x7e);
        assert_int_equal(imap_utf7_decode(enc, elen, &dec, &dlen, NULL, 0), 0);
        assert_int_equal(dlen, n);
        assert_memory_equal(dec, in, n);
        assert_int_equal(imap_utf7_encode(dec, dlen, &again, &alen, NULL, 0), 0);
        assert_int_equal(alen, elen);
        assert_memory_equal(again, enc, elen);
        free(enc);
        free(dec);
        free(again);
    }
}

/* Every string up to 6 characters over an alphabet that reaches every decoder branch: when it
 * decodes, encoding gives it back (one spelling per name). */
static void test_canonical_exhaustive(void **state)
{
    (void)state;
    static const char alpha[] = "&-AOkG2D3g,";
    const size_t na = sizeof(alpha) - 1;
    char s[8];
    size_t valid = 0;
    for (size_t len = 0; len <= 6; len++) {
        size_t total = 1;
        for (size_t i = 0; i < len; i++)
            total *= na;
        for (size_t k = 0; k < total; k++) {
            size_t v = k;
            for (size_t i = 0; i < len; i++) {
                s[i] = alpha[v % na];
                v /= na;
            }
            char *dec;
            size_t dlen;
            if (imap_utf7_decode(s, len, &dec, &dlen, NULL, 0) < 0)
                continue;
            valid++;
            char *enc;
            size_t elen;
            assert_int_equal(imap_utf7_encode(dec, dlen, &enc, &elen, NULL, 0), 0);
            if (elen != len || memcmp(enc, s, len) != 0)
                fail_msg("\"%.*s\" decodes but encodes back as \"%s\"", (int)len, s, enc);
            free(enc);
            free(dec);
        }
    }
    assert_true(valid > 1000); /* the alphabet does reach valid encoded runs */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3501_example), cmocka_unit_test(test_pairs),
        cmocka_unit_test(test_bad_utf7),        cmocka_unit_test(test_bad_utf8),
        cmocka_unit_test(test_round_trip),      cmocka_unit_test(test_canonical_exhaustive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
