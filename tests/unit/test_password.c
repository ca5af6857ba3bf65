/* layer: storage */
/* Unit tests for storage/password: the password rules, yescrypt hashing and
 * verification, and SCRAM-SHA-256 verifiers checked against the RFC 7677
 * example exchange. No database needed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "storage/password.h"

/* ---- rules ---- */

static void test_check_accepts(void **state)
{
    char err[128];
    assert_int_equal(password_check("x", err, sizeof err), 0);
    assert_int_equal(password_check("correct horse battery staple", err, sizeof err), 0);
    assert_int_equal(password_check("p\xc3\xa4ssw\xc3\xb6rd", err, sizeof err), 0); /* pässwörd */
    assert_int_equal(password_check("\xe2\x82\xac\xf0\x9f\x94\x91", err, sizeof err), 0); /* €🔑 */
    assert_int_equal(password_check("tab\there", err, sizeof err), 0);

    char max[PASSWORD_MAX_LEN + 1];
    memset(max, 'a', PASSWORD_MAX_LEN);
    max[PASSWORD_MAX_LEN] = '\0';
    assert_int_equal(password_check(max, err, sizeof err), 0);
}

static void test_check_rejects(void **state)
{
    char err[128];
    err[0] = '\0';
    assert_int_equal(password_check("", err, sizeof err), -1);
    assert_non_null(strstr(err, "empty"));
    assert_int_equal(password_check(NULL, err, sizeof err), -1);

    char big[PASSWORD_MAX_LEN + 2];
    memset(big, 'a', PASSWORD_MAX_LEN + 1);
    big[PASSWORD_MAX_LEN + 1] = '\0';
    err[0] = '\0';
    assert_int_equal(password_check(big, err, sizeof err), -1);
    assert_non_null(strstr(err, "longer"));

    err[0] = '\0';
    assert_int_equal(password_check("abc\rdef", err, sizeof err), -1);
    assert_non_null(strstr(err, "line break"));
    assert_int_equal(password_check("abc\n", err, sizeof err), -1);

    static const char *const bad_utf8[] = {
        "\x80",             /* lone continuation byte */
        "a\xc3",            /* truncated two-byte sequence */
        "\xe2\x82",         /* truncated three-byte sequence */
        "\xc0\xaf",         /* overlong '/' */
        "\xe0\x80\xaf",     /* overlong '/' in three bytes */
        "\xed\xa0\x80",     /* UTF-16 surrogate U+D800 */
        "\xf4\x90\x80\x80", /* U+110000, past the end of Unicode */
        "\xf5\x80\x80\x80", /* lead byte never valid */
        "\xff",
        "ok\xc3\x28", /* bad continuation */
    };
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        err[0] = '\0';
        assert_int_equal(password_check(bad_utf8[i], err, sizeof err), -1);
        assert_non_null(strstr(err, "UTF-8"));
    }
    /* err may be omitted */
    assert_int_equal(password_check("", NULL, 0), -1);
}

/* ---- yescrypt ---- */

static void test_hash_verify(void **state)
{
    char h[PASSWORD_HASH_MAX];
    assert_int_equal(password_hash("secret one", h, sizeof h), 0);
    assert_memory_equal(h, "$y$", 3);
    assert_true(password_verify("secret one", h));
    assert_false(password_verify("secret onE", h));
    assert_false(password_verify("secret on", h));
    assert_false(password_verify("secret one ", h));

    /* Non-ASCII passwords hash as their bytes. */
    char h2[PASSWORD_HASH_MAX];
    assert_int_equal(password_hash("\xc3\xa4\xc3\xb6\xc3\xbc", h2, sizeof h2), 0);
    assert_true(password_verify("\xc3\xa4\xc3\xb6\xc3\xbc", h2));
    assert_false(password_verify("aou", h2));
}

static void test_hash_salts_differ(void **state)
{
    char a[PASSWORD_HASH_MAX], b[PASSWORD_HASH_MAX];
    assert_int_equal(password_hash("same password", a, sizeof a), 0);
    assert_int_equal(password_hash("same password", b, sizeof b), 0);
    assert_string_not_equal(a, b);
    assert_true(password_verify("same password", a));
    assert_true(password_verify("same password", b));
}

static void test_hash_errors(void **state)
{
    char h[PASSWORD_HASH_MAX];
    assert_int_equal(password_hash("", h, sizeof h), -1);
    assert_int_equal(password_hash(NULL, h, sizeof h), -1);
    char small[20];
    assert_int_equal(password_hash("secret", small, sizeof small), -1);
    char big[PASSWORD_MAX_LEN + 2];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(password_hash(big, h, sizeof h), -1);
}

static void test_verify_rejects_bad_hashes(void **state)
{
    char h[PASSWORD_HASH_MAX];
    assert_int_equal(password_hash("pw", h, sizeof h), 0);

    assert_false(password_verify("pw", NULL));
    assert_false(password_verify(NULL, h));
    assert_false(password_verify("pw", ""));
    assert_false(password_verify("pw", "!"));
    assert_false(password_verify("pw", "*"));
    assert_false(password_verify("pw", "*0"));
    assert_false(password_verify("pw", "$y$"));

    /* A changed last character of the hash no longer matches. */
    char t[PASSWORD_HASH_MAX + 8];
    strcpy(t, h);
    size_t n = strlen(t);
    t[n - 1] = (t[n - 1] == 'A') ? 'B' : 'A';
    assert_false(password_verify("pw", t));
    /* A truncated hash does not match either. */
    strcpy(t, h);
    t[n - 1] = '\0';
    assert_false(password_verify("pw", t));
    /* Nor does one with text appended. */
    snprintf(t, sizeof t, "%sx", h);
    assert_false(password_verify("pw", t));
}

/* ---- SCRAM-SHA-256 ---- */

static size_t b64d(unsigned char *out, const char *in)
{
    int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)strlen(in));
    assert_true(n > 0);
    size_t len = (size_t)n;
    size_t l = strlen(in);
    if (in[l - 1] == '=')
        len--;
    if (in[l - 2] == '=')
        len--;
    return len;
}

/* RFC 7677 §3: the example exchange for user "user", password "pencil".
 * From StoredKey and ServerKey alone the server must be able to check the
 * client's proof and produce the server signature the RFC shows. */
static void test_scram_rfc7677(void **state)
{
    const char *client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
    const char *server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                               "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const char *client_final_wo_proof =
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const char *proof64 = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const char *server_sig64 = "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    unsigned char salt[64];
    size_t saltlen = b64d(salt, "W22ZaJ0SNY7soEsUEjb6gQ==");
    assert_int_equal(saltlen, 16);

    unsigned char stored[32], server[32];
    assert_int_equal(password_scram_derive("pencil", 4096, salt, saltlen, stored, server), 0);

    char auth[512];
    snprintf(auth, sizeof auth, "%s,%s,%s", client_first_bare, server_first, client_final_wo_proof);

    /* ClientSignature = HMAC(StoredKey, AuthMessage); ClientKey = proof XOR sig;
     * the server accepts when H(ClientKey) == StoredKey (RFC 5802 §3). */
    unsigned char client_sig[32], proof[48], client_key[32], h[32];
    unsigned int len = 0;
    assert_non_null(HMAC(EVP_sha256(), stored, 32, (const unsigned char *)auth, strlen(auth),
                         client_sig, &len));
    assert_int_equal(len, 32);
    assert_int_equal(b64d(proof, proof64), 32);
    for (int i = 0; i < 32; i++)
        client_key[i] = proof[i] ^ client_sig[i];
    SHA256(client_key, 32, h);
    assert_memory_equal(h, stored, 32);

    /* ServerSignature = HMAC(ServerKey, AuthMessage), the RFC's v= value. */
    unsigned char server_sig[32], expect_sig[48];
    assert_non_null(HMAC(EVP_sha256(), server, 32, (const unsigned char *)auth, strlen(auth),
                         server_sig, &len));
    assert_int_equal(b64d(expect_sig, server_sig64), 32);
    assert_memory_equal(server_sig, expect_sig, 32);

    /* A different password does not derive the same keys. */
    unsigned char stored2[32], server2[32];
    assert_int_equal(password_scram_derive("pencil2", 4096, salt, saltlen, stored2, server2), 0);
    assert_memory_not_equal(stored2, stored, 32);
    assert_memory_not_equal(server2, server, 32);
}

static void test_scram_make_parse_roundtrip(void **state)
{
    char v[PASSWORD_SCRAM_MAX];
    assert_int_equal(password_scram_make("pencil", 0, v, sizeof v), 0);
    assert_memory_equal(v, "SCRAM-SHA-256$4096:", 19);

    int iter = 0;
    unsigned char salt[PASSWORD_SCRAM_SALT_MAX], stored[32], server[32];
    size_t saltlen = 0;
    assert_int_equal(password_scram_parse(v, &iter, salt, &saltlen, stored, server), 0);
    assert_int_equal(iter, 4096);
    assert_int_equal(saltlen, PASSWORD_SCRAM_SALT_LEN);

    /* The parsed keys are the ones the password derives with the parsed salt. */
    unsigned char s2[32], k2[32];
    assert_int_equal(password_scram_derive("pencil", iter, salt, saltlen, s2, k2), 0);
    assert_memory_equal(s2, stored, 32);
    assert_memory_equal(k2, server, 32);
    assert_int_equal(password_scram_derive("Pencil", iter, salt, saltlen, s2, k2), 0);
    assert_memory_not_equal(s2, stored, 32);

    /* Explicit iteration count, and a fresh salt each time. */
    char w[PASSWORD_SCRAM_MAX];
    assert_int_equal(password_scram_make("pencil", 5000, w, sizeof w), 0);
    assert_memory_equal(w, "SCRAM-SHA-256$5000:", 19);
    unsigned char salt2[PASSWORD_SCRAM_SALT_MAX];
    assert_int_equal(password_scram_parse(w, &iter, salt2, &saltlen, stored, server), 0);
    assert_int_equal(iter, 5000);
    assert_memory_not_equal(salt, salt2, PASSWORD_SCRAM_SALT_LEN);
}

static void test_scram_parse_known(void **state)
{
    /* The RFC 7677 salt with the keys that "pencil" derives from it. */
    unsigned char salt[64], stored[32], server[32];
    size_t saltlen = b64d(salt, "W22ZaJ0SNY7soEsUEjb6gQ==");
    assert_int_equal(password_scram_derive("pencil", 4096, salt, saltlen, stored, server), 0);
    char s64[64], k64[64], v[PASSWORD_SCRAM_MAX];
    EVP_EncodeBlock((unsigned char *)s64, stored, 32);
    EVP_EncodeBlock((unsigned char *)k64, server, 32);
    snprintf(v, sizeof v, "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$%s:%s", s64, k64);

    int iter;
    unsigned char psalt[PASSWORD_SCRAM_SALT_MAX], pstored[32], pserver[32];
    size_t plen;
    assert_int_equal(password_scram_parse(v, &iter, psalt, &plen, pstored, pserver), 0);
    assert_int_equal(iter, 4096);
    assert_int_equal(plen, 16);
    assert_memory_equal(psalt, salt, 16);
    assert_memory_equal(pstored, stored, 32);
    assert_memory_equal(pserver, server, 32);
}

static void test_scram_parse_rejects(void **state)
{
    const char *k = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="; /* 32 zero bytes */
    char v[PASSWORD_SCRAM_MAX * 2];
    int iter;
    unsigned char salt[PASSWORD_SCRAM_SALT_MAX], stored[32], server[32];
    size_t saltlen;

    /* the template parses, so each variant below fails for its own reason */
    snprintf(v, sizeof v, "SCRAM-SHA-256$4096:c2FsdA==$%s:%s", k, k);
    assert_int_equal(password_scram_parse(v, &iter, salt, &saltlen, stored, server), 0);
    assert_int_equal(saltlen, 4);
    snprintf(v, sizeof v, "SCRAM-SHA-256$4096:c2FsdHk=$%s:%s", k, k); /* "salty" */
    assert_int_equal(password_scram_parse(v, &iter, salt, &saltlen, stored, server), 0);
    assert_int_equal(saltlen, 5);
    assert_memory_equal(salt, "salty", 5);

    const char *bad[] = {
        "",
        "SCRAM-SHA-256$",
        "SCRAM-SHA-1$4096:c2FsdA==$%s:%s",
        "scram-sha-256$4096:c2FsdA==$%s:%s",
        "SCRAM-SHA-256$0:c2FsdA==$%s:%s",
        "SCRAM-SHA-256$04096:c2FsdA==$%s:%s",
        "SCRAM-SHA-256$-1:c2FsdA==$%s:%s",
        "SCRAM-SHA-256$+4096:c2FsdA==$%s:%s",
        "SCRAM-SHA-256$99999999999:c2FsdA==$%s:%s",
        "SCRAM-SHA-256$10000001:c2FsdA==$%s:%s",
        "SCRAM-SHA-256$4096c2FsdA==$%s:%s",
        "SCRAM-SHA-256$4096:$%s:%s",             /* empty salt */
        "SCRAM-SHA-256$4096:c2FsdA=$%s:%s",      /* bad length */
        "SCRAM-SHA-256$4096:c2FsdA$%s:%s",       /* no padding */
        "SCRAM-SHA-256$4096:c2Fsd B=$%s:%s",     /* space */
        "SCRAM-SHA-256$4096:c2FsdB==$%s:%s",     /* non-canonical: stray bits */
        "SCRAM-SHA-256$4096:c2FsdHl=$%s:%s",     /* the same with one '=' */
        "SCRAM-SHA-256$4096:c2F=dA==$%s:%s",     /* padding in the middle */
        "SCRAM-SHA-256$4096:c2FsdA==%s:%s",      /* missing $ */
        "SCRAM-SHA-256$4096:c2FsdA==$%s%s",      /* missing : */
        "SCRAM-SHA-256$4096:c2FsdA==$%s:%s:",    /* trailing junk */
        "SCRAM-SHA-256$4096:c2FsdA==$%s:%sAAAA", /* key too long */
        "SCRAM-SHA-256$4096:c2FsdA==$%s:%.40s",  /* key too short */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        snprintf(v, sizeof v, bad[i], k, k);
#pragma GCC diagnostic pop
        assert_int_equal(password_scram_parse(v, &iter, salt, &saltlen, stored, server), -1);
    }

    /* salts of 64 bytes are the limit: 86 characters + "==" is 64 bytes,
     * 88 characters are 66 bytes */
    char longsalt[100];
    memset(longsalt, 'A', 86);
    memcpy(longsalt + 86, "==", 3);
    snprintf(v, sizeof v, "SCRAM-SHA-256$4096:%s$%s:%s", longsalt, k, k);
    assert_int_equal(password_scram_parse(v, &iter, salt, &saltlen, stored, server), 0);
    assert_int_equal(saltlen, 64);
    memset(longsalt, 'A', 88);
    longsalt[88] = '\0';
    snprintf(v, sizeof v, "SCRAM-SHA-256$4096:%s$%s:%s", longsalt, k, k);
    assert_int_equal(password_scram_parse(v, &iter, salt, &saltlen, stored, server), -1);
}

static void test_scram_make_errors(void **state)
{
    char v[PASSWORD_SCRAM_MAX];
    assert_int_equal(password_scram_make("", 0, v, sizeof v), -1);
    assert_int_equal(password_scram_make(NULL, 0, v, sizeof v), -1);
    assert_int_equal(password_scram_make("pw", 1000, v, sizeof v), -1);
    assert_int_equal(password_scram_make("pw", -5, v, sizeof v), -1);
    assert_int_equal(password_scram_make("pw", PASSWORD_SCRAM_MAX_ITERATIONS + 1, v, sizeof v), -1);
    char small[40];
    assert_int_equal(password_scram_make("pw", 0, small, sizeof small), -1);
    assert_string_equal(small, "");

    unsigned char salt[16] = {0}, s[32], k[32];
    assert_int_equal(password_scram_derive("pw", 0, salt, sizeof salt, s, k), -1);
    assert_int_equal(password_scram_derive("pw", 4096, salt, 0, s, k), -1);
    assert_int_equal(password_scram_derive("pw", 4096, NULL, 16, s, k), -1);
    assert_int_equal(password_scram_derive("pw", 4096, salt, PASSWORD_SCRAM_SALT_MAX + 1, s, k),
                     -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_accepts),     cmocka_unit_test(test_check_rejects),
        cmocka_unit_test(test_hash_verify),       cmocka_unit_test(test_hash_salts_differ),
        cmocka_unit_test(test_hash_errors),       cmocka_unit_test(test_verify_rejects_bad_hashes),
        cmocka_unit_test(test_scram_rfc7677),     cmocka_unit_test(test_scram_make_parse_roundtrip),
        cmocka_unit_test(test_scram_parse_known), cmocka_unit_test(test_scram_parse_rejects),
        cmocka_unit_test(test_scram_make_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
