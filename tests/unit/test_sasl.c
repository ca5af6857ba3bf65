/* layer: proto */
/* Unit tests for proto/sasl: mechanism names, strict base64, PLAIN and LOGIN exchanges with
 * every malformed path, SCRAM-SHA-256 replaying the RFC 7677 §3 example byte for byte (keys
 * derived here with OpenSSL, as the storage layer's password_scram_derive is out of reach),
 * wrong passwords, unknown users, gs2 header / authzid / escaping rules, and state misuse. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "proto/sasl/sasl.h"

/* ---- helpers -------------------------------------------------------------------------------- */

/* One step with a NUL-terminated message. */
static enum sasl_result step_str(struct sasl_server *s, const char *msg, char *chal_r)
{
    unsigned char buf[SASL_CHALLENGE_MAX];
    size_t len = 12345;
    enum sasl_result r =
        sasl_server_step(s, (const unsigned char *)msg, strlen(msg), true, buf, &len);
    assert_true(len <= SASL_CHALLENGE_MAX);
    if (chal_r) {
        memcpy(chal_r, buf, len);
        chal_r[len] = '\0';
    }
    return r;
}

static enum sasl_result step_mem(struct sasl_server *s, const void *msg, size_t n)
{
    unsigned char buf[SASL_CHALLENGE_MAX];
    size_t len;
    return sasl_server_step(s, msg, n, true, buf, &len);
}

/* SCRAM keys of RFC 5802 §3 from a password, as a client (and password_scram_derive) makes them. */
struct keys {
    unsigned char client_key[32], stored_key[32], server_key[32];
};

static void derive(const char *password, const unsigned char *salt, size_t saltlen, int iter,
                   struct keys *k)
{
    unsigned char salted[32];
    unsigned int l;
    assert_int_equal(PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)saltlen, iter,
                                       EVP_sha256(), sizeof(salted), salted),
                     1);
    assert_non_null(
        HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Client Key", 10, k->client_key, &l));
    assert_non_null(
        HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Server Key", 10, k->server_key, &l));
    assert_int_equal(EVP_Digest(k->client_key, 32, k->stored_key, &l, EVP_sha256(), NULL), 1);
}

/* client-final-message for the exchange so far: "<without_proof>,p=<proof>". */
static void client_final(const struct keys *k, const char *first_bare, const char *server_first,
                         const char *without_proof, char *out, size_t outlen)
{
    char auth[2048];
    snprintf(auth, sizeof(auth), "%s,%s,%s", first_bare, server_first, without_proof);
    unsigned char sig[32], proof[32];
    unsigned int l;
    assert_non_null(
        HMAC(EVP_sha256(), k->stored_key, 32, (const unsigned char *)auth, strlen(auth), sig, &l));
    for (int i = 0; i < 32; i++)
        proof[i] = k->client_key[i] ^ sig[i];
    char p64[64];
    assert_int_equal(sasl_b64_encode(proof, 32, p64, sizeof(p64)), 44);
    snprintf(out, outlen, "%s,p=%s", without_proof, p64);
}

/* The expected server-final for an exchange. */
static void server_final(const struct keys *k, const char *first_bare, const char *server_first,
                         const char *without_proof, char *out, size_t outlen)
{
    char auth[2048];
    snprintf(auth, sizeof(auth), "%s,%s,%s", first_bare, server_first, without_proof);
    unsigned char sig[32];
    unsigned int l;
    assert_non_null(
        HMAC(EVP_sha256(), k->server_key, 32, (const unsigned char *)auth, strlen(auth), sig, &l));
    char s64[64];
    assert_int_equal(sasl_b64_encode(sig, 32, s64, sizeof(s64)), 44);
    snprintf(out, outlen, "v=%s", s64);
}

static const char rfc_salt64[] = "W22ZaJ0SNY7soEsUEjb6gQ==";

static void rfc_keys(const char *password, struct keys *k, unsigned char salt[16])
{
    assert_int_equal(sasl_b64_decode(rfc_salt64, strlen(rfc_salt64), salt, 16), 16);
    derive(password, salt, 16, 4096, k);
}

/* Runs client-first and set_verifier with the RFC 7677 salt and the password "pencil". */
static struct sasl_server *scram_to_final(const char *client_first, const char *snonce,
                                          struct keys *k, char *server_first_r)
{
    unsigned char salt[16];
    rfc_keys("pencil", k, salt);
    struct sasl_server *s = sasl_server_new(SASL_MECH_SCRAM_SHA_256);
    assert_non_null(s);
    if (snonce)
        sasl_server_set_test_nonce(s, snonce);
    assert_int_equal(step_str(s, client_first, NULL), SASL_NEED_VERIFIER);
    unsigned char buf[SASL_CHALLENGE_MAX];
    size_t len = 0;
    assert_int_equal(
        sasl_server_set_verifier(s, true, 4096, salt, 16, k->stored_key, k->server_key, buf, &len),
        SASL_CONTINUE);
    memcpy(server_first_r, buf, len);
    server_first_r[len] = '\0';
    return s;
}

/* ---- names and base64 ----------------------------------------------------------------------- */

static void test_mech_names(void **state)
{
    enum sasl_mech m = 0;
    assert_int_equal(sasl_mech_parse("PLAIN", &m), 0);
    assert_int_equal(m, SASL_MECH_PLAIN);
    assert_int_equal(sasl_mech_parse("login", &m), 0);
    assert_int_equal(m, SASL_MECH_LOGIN);
    assert_int_equal(sasl_mech_parse("Scram-Sha-256", &m), 0);
    assert_int_equal(m, SASL_MECH_SCRAM_SHA_256);
    assert_int_equal(sasl_mech_parse("SCRAM-SHA-1", &m), -1);
    assert_int_equal(sasl_mech_parse("SCRAM-SHA-256-PLUS", &m), -1);
    assert_int_equal(sasl_mech_parse("", &m), -1);
    assert_int_equal(sasl_mech_parse(NULL, &m), -1);
    assert_string_equal(sasl_mech_name(SASL_MECH_PLAIN), "PLAIN");
    assert_string_equal(sasl_mech_name(SASL_MECH_LOGIN), "LOGIN");
    assert_string_equal(sasl_mech_name(SASL_MECH_SCRAM_SHA_256), "SCRAM-SHA-256");
    assert_null(sasl_mech_name((enum sasl_mech)0));
    assert_null(sasl_mech_name((enum sasl_mech)99));
    assert_true(sasl_mech_plaintext(SASL_MECH_PLAIN));
    assert_true(sasl_mech_plaintext(SASL_MECH_LOGIN));
    assert_false(sasl_mech_plaintext(SASL_MECH_SCRAM_SHA_256));
    assert_null(sasl_server_new((enum sasl_mech)0));
    assert_null(sasl_server_new((enum sasl_mech)4));
}

static void test_b64_vectors(void **state)
{
    /* RFC 4648 §10 */
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const enc[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                      "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        char out[16];
        unsigned char dec[16];
        assert_int_equal(
            sasl_b64_encode((const unsigned char *)plain[i], strlen(plain[i]), out, sizeof(out)),
            (long)strlen(enc[i]));
        assert_string_equal(out, enc[i]);
        assert_int_equal(sasl_b64_decode(enc[i], strlen(enc[i]), dec, sizeof(dec)),
                         (long)strlen(plain[i]));
        assert_memory_equal(dec, plain[i], strlen(plain[i]));
    }
    /* every byte value round trips, "+" and "/" included */
    unsigned char all[256], back[256];
    char text[400];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    assert_int_equal(sasl_b64_encode(all, 256, text, sizeof(text)), 344);
    assert_non_null(strchr(text, '+'));
    assert_non_null(strchr(text, '/'));
    assert_int_equal(sasl_b64_decode(text, 344, back, sizeof(back)), 256);
    assert_memory_equal(all, back, 256);
}

static void test_b64_strict(void **state)
{
    unsigned char out[16];
    static const char *const bad[] = {
        "Zg",       /* no padding */
        "Zg=",      /* short padding */
        "Zh==",     /* non-canonical: unused bits set */
        "Zm9=",     /* non-canonical with one '=' */
        "Z===",     /* three '=' */
        "====",     /* only padding */
        "Zg==Zg==", /* padding in the middle */
        "Z=g=",     /* '=' inside a quantum */
        "Zm9 v",    /* whitespace */
        "Zm9v\n",   /* line break */
        "Zm9-",     /* base64url alphabet */
        "Zm9_",     /* base64url alphabet */
        "Zm9\x80",  /* 8-bit byte */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(sasl_b64_decode(bad[i], strlen(bad[i]), out, sizeof(out)), -1);
    /* embedded NUL */
    assert_int_equal(sasl_b64_decode("Zm\0v", 4, out, sizeof(out)), -1);
    /* output bound: "foobar" needs 6 bytes */
    assert_int_equal(sasl_b64_decode("Zm9vYmFy", 8, out, 5), -1);
    assert_int_equal(sasl_b64_decode("Zm9vYmFy", 8, out, 6), 6);
    assert_int_equal(sasl_b64_decode("Zm9vYg==", 8, out, 4), 4);
    assert_int_equal(sasl_b64_decode("Zm9vYg==", 8, out, 3), -1);
    assert_int_equal(sasl_b64_decode("", 0, NULL, 0), 0);
    /* encode bound: "foo" needs 4 characters and the NUL */
    char text[8];
    assert_int_equal(sasl_b64_encode((const unsigned char *)"foo", 3, text, 4), -1);
    assert_int_equal(sasl_b64_encode((const unsigned char *)"foo", 3, text, 5), 4);
    assert_int_equal(sasl_b64_encode((const unsigned char *)"", 0, text, 0), -1);
    assert_int_equal(sasl_b64_encode((const unsigned char *)"", 0, text, 1), 0);
    assert_string_equal(text, "");
}

/* ---- PLAIN ---------------------------------------------------------------------------------- */

static void test_plain_initial_response(void **state)
{
    struct sasl_server *s = sasl_server_new(SASL_MECH_PLAIN);
    assert_string_equal(sasl_server_user(s), "");
    assert_string_equal(sasl_server_password(s), "");
    assert_int_equal(step_mem(s, "\0tim\0tanstaaftanstaaf", 21), SASL_CHECK_PASSWORD);
    assert_string_equal(sasl_server_user(s), "tim");
    assert_string_equal(sasl_server_password(s), "tanstaaftanstaaf");
    assert_int_equal(sasl_server_password_result(s, true), SASL_SUCCESS);
    assert_string_equal(sasl_server_user(s), "tim");
    assert_string_equal(sasl_server_password(s), ""); /* wiped */
    sasl_server_free(&s);
    assert_null(s);
    sasl_server_free(&s); /* twice is harmless */
    sasl_server_free(NULL);
}

static void test_plain_no_initial_response(void **state)
{
    struct sasl_server *s = sasl_server_new(SASL_MECH_PLAIN);
    unsigned char buf[SASL_CHALLENGE_MAX];
    size_t len = 99;
    assert_int_equal(sasl_server_step(s, NULL, 0, false, buf, &len), SASL_CONTINUE);
    assert_int_equal(len, 0);
    /* RFC 4616 §4 example: authzid equal to authcid is not proxying */
    const char msg[] = "Ursel\0Ursel\0p\xc3\xa4ss";
    assert_int_equal(step_mem(s, msg, sizeof(msg) - 1), SASL_CHECK_PASSWORD);
    assert_string_equal(sasl_server_user(s), "Ursel");
    assert_string_equal(sasl_server_password(s), "p\xc3\xa4ss");
    assert_int_equal(sasl_server_password_result(s, false), SASL_FAIL);
    assert_string_equal(sasl_server_password(s), "");
    sasl_server_free(&s);
}

static void test_plain_authzid(void **state)
{
    /* RFC 4616 §4 example: Ursel acting as Kurt is proxying, not offered */
    struct sasl_server *s = sasl_server_new(SASL_MECH_PLAIN);
    assert_int_equal(step_mem(s, "Ursel\0Kurt\0xipj3plmq", 20), SASL_FAIL);
    assert_string_equal(sasl_server_password(s), "");
    sasl_server_free(&s);
    /* the comparison is exact: a prefix or a different case is another identity */
    s = sasl_server_new(SASL_MECH_PLAIN);
    assert_int_equal(step_mem(s, "Kur\0Kurt\0pw", 11), SASL_FAIL);
    sasl_server_free(&s);
    s = sasl_server_new(SASL_MECH_PLAIN);
    assert_int_equal(step_mem(s, "kurt\0Kurt\0pw", 12), SASL_FAIL);
    sasl_server_free(&s);
}

static void expect_plain(const void *msg, size_t n, enum sasl_result want)
{
    struct sasl_server *s = sasl_server_new(SASL_MECH_PLAIN);
    assert_int_equal(step_mem(s, msg, n), want);
    if (want == SASL_MALFORMED) /* and the exchange is over */
        assert_int_equal(step_mem(s, "\0a\0b", 4), SASL_MALFORMED);
    sasl_server_free(&s);
}

static void test_plain_malformed(void **state)
{
    expect_plain("", 0, SASL_MALFORMED);
    expect_plain("timpassword", 11, SASL_MALFORMED);       /* no NUL */
    expect_plain("\0timpassword", 12, SASL_MALFORMED);     /* one NUL */
    expect_plain("\0tim\0pass\0word", 14, SASL_MALFORMED); /* NUL in the password */
    expect_plain("\0\0password", 10, SASL_MALFORMED);      /* empty authcid */
    expect_plain("\0tim\0", 5, SASL_MALFORMED);            /* empty password */
    expect_plain("\0\0", 2, SASL_MALFORMED);
    expect_plain("\0t\xffm\0pw", 7, SASL_MALFORMED);   /* user not UTF-8 */
    expect_plain("\0t\rm\0pw", 7, SASL_MALFORMED);     /* control character in the user */
    expect_plain("x\xc3\0tim\0pw", 9, SASL_MALFORMED); /* authzid not UTF-8 */

    /* field lengths: the limits themselves pass, one more byte does not */
    char msg[2 + SASL_USER_MAX + 1 + SASL_PASSWORD_MAX + 1];
    msg[0] = '\0';
    memset(msg + 1, 'u', SASL_USER_MAX);
    msg[1 + SASL_USER_MAX] = '\0';
    memset(msg + 2 + SASL_USER_MAX, 'p', SASL_PASSWORD_MAX);
    expect_plain(msg, 2 + SASL_USER_MAX + SASL_PASSWORD_MAX, SASL_CHECK_PASSWORD);
    msg[2 + SASL_USER_MAX + SASL_PASSWORD_MAX] = 'p';
    expect_plain(msg, 2 + SASL_USER_MAX + SASL_PASSWORD_MAX + 1, SASL_MALFORMED);

    char longuser[SASL_USER_MAX + 8];
    longuser[0] = '\0';
    memset(longuser + 1, 'u', SASL_USER_MAX + 1);
    memcpy(longuser + SASL_USER_MAX + 2, "\0pw", 3);
    expect_plain(longuser, SASL_USER_MAX + 5, SASL_MALFORMED);

    /* a long authzid equal to nothing is malformed before it is compared */
    char longz[SASL_USER_MAX + 8];
    memset(longz, 'z', SASL_USER_MAX + 1);
    memcpy(longz + SASL_USER_MAX + 1, "\0a\0b", 4);
    expect_plain(longz, SASL_USER_MAX + 5, SASL_MALFORMED);
}

/* ---- LOGIN ---------------------------------------------------------------------------------- */

static void test_login(void **state)
{
    struct sasl_server *s = sasl_server_new(SASL_MECH_LOGIN);
    unsigned char buf[SASL_CHALLENGE_MAX];
    size_t len = 0;
    assert_int_equal(sasl_server_step(s, NULL, 0, false, buf, &len), SASL_CONTINUE);
    assert_int_equal(len, 9);
    assert_memory_equal(buf, "Username:", 9);
    char chal[SASL_CHALLENGE_MAX + 1];
    assert_int_equal(step_str(s, "alice@example.org", chal), SASL_CONTINUE);
    assert_string_equal(chal, "Password:");
    assert_string_equal(sasl_server_user(s), "alice@example.org");
    assert_string_equal(sasl_server_password(s), "");
    assert_int_equal(step_str(s, "s3cret word", NULL), SASL_CHECK_PASSWORD);
    assert_string_equal(sasl_server_password(s), "s3cret word");
    assert_int_equal(sasl_server_password_result(s, true), SASL_SUCCESS);
    assert_string_equal(sasl_server_user(s), "alice@example.org");
    assert_string_equal(sasl_server_password(s), "");
    sasl_server_free(&s);

    /* the initial response is the user name */
    s = sasl_server_new(SASL_MECH_LOGIN);
    assert_int_equal(step_str(s, "bob", chal), SASL_CONTINUE);
    assert_string_equal(chal, "Password:");
    assert_int_equal(step_str(s, "pw", NULL), SASL_CHECK_PASSWORD);
    assert_int_equal(sasl_server_password_result(s, false), SASL_FAIL);
    sasl_server_free(&s);
}

static void test_login_malformed(void **state)
{
    struct sasl_server *s = sasl_server_new(SASL_MECH_LOGIN);
    assert_int_equal(step_str(s, "", NULL), SASL_MALFORMED); /* empty initial response */
    sasl_server_free(&s);

    s = sasl_server_new(SASL_MECH_LOGIN);
    assert_int_equal(step_mem(s, "bo\0b", 4), SASL_MALFORMED); /* NUL in the user */
    sasl_server_free(&s);

    s = sasl_server_new(SASL_MECH_LOGIN);
    assert_int_equal(step_str(s, "bob\n", NULL), SASL_MALFORMED); /* control character */
    sasl_server_free(&s);

    char big[SASL_PASSWORD_MAX + 2];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    s = sasl_server_new(SASL_MECH_LOGIN);
    assert_int_equal(step_mem(s, big, SASL_USER_MAX + 1), SASL_MALFORMED); /* user too long */
    sasl_server_free(&s);

    s = sasl_server_new(SASL_MECH_LOGIN);
    assert_int_equal(step_mem(s, big, SASL_USER_MAX), SASL_CONTINUE);
    assert_int_equal(step_str(s, big, NULL), SASL_MALFORMED); /* password too long */
    sasl_server_free(&s);

    s = sasl_server_new(SASL_MECH_LOGIN);
    assert_int_equal(step_str(s, "bob", NULL), SASL_CONTINUE);
    assert_int_equal(step_mem(s, big, SASL_PASSWORD_MAX), SASL_CHECK_PASSWORD);
    sasl_server_free(&s);

    s = sasl_server_new(SASL_MECH_LOGIN);
    assert_int_equal(step_str(s, "bob", NULL), SASL_CONTINUE);
    assert_int_equal(step_str(s, "", NULL), SASL_MALFORMED); /* empty password */
    sasl_server_free(&s);

    s = sasl_server_new(SASL_MECH_LOGIN);
    assert_int_equal(step_str(s, "bob", NULL), SASL_CONTINUE);
    assert_int_equal(step_mem(s, "p\0w", 3), SASL_MALFORMED); /* NUL in the password */
    sasl_server_free(&s);
}

/* ---- SCRAM-SHA-256 -------------------------------------------------------------------------- */

/* RFC 7677 §3, byte for byte. */
static void test_scram_rfc7677(void **state)
{
    struct keys k;
    char sfirst[SASL_CHALLENGE_MAX + 1], chal[SASL_CHALLENGE_MAX + 1];
    struct sasl_server *s = scram_to_final("n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                                           "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", &k, sfirst);
    assert_string_equal(sasl_server_user(s), "user");
    assert_string_equal(sfirst, "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                                "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
    assert_int_equal(step_str(s,
                              "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                              "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                              chal),
                     SASL_CONTINUE);
    assert_string_equal(chal, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    assert_int_equal(step_str(s, "", NULL), SASL_SUCCESS);
    assert_string_equal(sasl_server_user(s), "user");
    assert_int_equal(step_str(s, "", NULL), SASL_MALFORMED); /* over */
    sasl_server_free(&s);

    /* the same without an initial response: an empty challenge first */
    s = sasl_server_new(SASL_MECH_SCRAM_SHA_256);
    sasl_server_set_test_nonce(s, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
    unsigned char buf[SASL_CHALLENGE_MAX];
    size_t len = 7;
    assert_int_equal(sasl_server_step(s, NULL, 0, false, buf, &len), SASL_CONTINUE);
    assert_int_equal(len, 0);
    assert_int_equal(step_str(s, "n,,n=user,r=rOprNGfwEbeRWgbNEkqO", NULL), SASL_NEED_VERIFIER);
    unsigned char salt[16];
    rfc_keys("pencil", &k, salt);
    assert_int_equal(
        sasl_server_set_verifier(s, true, 4096, salt, 16, k.stored_key, k.server_key, buf, &len),
        SASL_CONTINUE);
    assert_int_equal(len, strlen(sfirst));
    assert_memory_equal(buf, sfirst, len);
    assert_int_equal(step_str(s,
                              "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                              "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                              chal),
                     SASL_CONTINUE);
    assert_string_equal(chal, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    /* a later response passed without data counts as the empty one, whatever the buffer */
    assert_int_equal(sasl_server_step(s, (const unsigned char *)"x", 1, false, buf, &len),
                     SASL_SUCCESS);
    sasl_server_free(&s);
}

static void test_scram_wrong_password(void **state)
{
    struct keys k, wrong;
    char sfirst[SASL_CHALLENGE_MAX + 1], fin[1024];
    struct sasl_server *s = scram_to_final("n,,n=user,r=abc", "XYZ", &k, sfirst);
    unsigned char salt[16];
    rfc_keys("pencil!", &wrong, salt);
    client_final(&wrong, "n=user,r=abc", sfirst, "c=biws,r=abcXYZ", fin, sizeof(fin));
    assert_int_equal(step_str(s, fin, NULL), SASL_FAIL);
    assert_int_equal(step_str(s, "", NULL), SASL_MALFORMED);
    sasl_server_free(&s);

    /* the right password on the same terms succeeds, with the server signature expected */
    char chal[SASL_CHALLENGE_MAX + 1], want[128];
    s = scram_to_final("n,,n=user,r=abc", "XYZ", &k, sfirst);
    client_final(&k, "n=user,r=abc", sfirst, "c=biws,r=abcXYZ", fin, sizeof(fin));
    assert_int_equal(step_str(s, fin, chal), SASL_CONTINUE);
    server_final(&k, "n=user,r=abc", sfirst, "c=biws,r=abcXYZ", want, sizeof(want));
    assert_string_equal(chal, want);
    assert_int_equal(step_str(s, "x", NULL), SASL_MALFORMED); /* must be empty */
    sasl_server_free(&s);

    /* a flipped bit in a correct proof fails */
    s = scram_to_final("n,,n=user,r=abc", "XYZ", &k, sfirst);
    client_final(&k, "n=user,r=abc", sfirst, "c=biws,r=abcXYZ", fin, sizeof(fin));
    char *p = strstr(fin, ",p=") + 3;
    p[0] = p[0] == 'A' ? 'B' : 'A';
    assert_int_equal(step_str(s, fin, NULL), SASL_FAIL);
    sasl_server_free(&s);
}

/* Parses "r=...,s=...,i=..." into its salt and iteration count. */
static void parse_server_first(const char *sf, unsigned char *salt, long *saltlen_r, int *iter_r,
                               char *nonce_r)
{
    const char *s = strstr(sf, ",s=");
    const char *i = strstr(sf, ",i=");
    assert_non_null(s);
    assert_non_null(i);
    assert_memory_equal(sf, "r=", 2);
    memcpy(nonce_r, sf + 2, (size_t)(s - sf - 2));
    nonce_r[s - sf - 2] = '\0';
    *saltlen_r = sasl_b64_decode(s + 3, (size_t)(i - s - 3), salt, 64);
    *iter_r = atoi(i + 3);
}

static void test_scram_unknown_user(void **state)
{
    unsigned char buf[SASL_CHALLENGE_MAX], salt1[64], salt2[64], salt3[64];
    char sf1[SASL_CHALLENGE_MAX + 1], sf2[SASL_CHALLENGE_MAX + 1], sf3[SASL_CHALLENGE_MAX + 1];
    char nonce[SASL_CHALLENGE_MAX], fin[1024], wo[1024];
    long l1, l2, l3;
    int it;
    size_t len;

    struct sasl_server *s = sasl_server_new(SASL_MECH_SCRAM_SHA_256);
    assert_int_equal(step_str(s, "n,,n=ghost,r=n1", NULL), SASL_NEED_VERIFIER);
    assert_string_equal(sasl_server_user(s), "ghost");
    assert_int_equal(sasl_server_set_verifier(s, false, 0, NULL, 0, NULL, NULL, buf, &len),
                     SASL_CONTINUE);
    memcpy(sf1, buf, len);
    sf1[len] = '\0';
    parse_server_first(sf1, salt1, &l1, &it, nonce);
    assert_int_equal(l1, 16);
    assert_int_equal(it, 4096);
    /* a client that tries a password against the made-up salt still fails */
    struct keys k;
    derive("pencil", salt1, 16, 4096, &k);
    snprintf(wo, sizeof(wo), "c=biws,r=%s", nonce);
    client_final(&k, "n=ghost,r=n1", sf1, wo, fin, sizeof(fin));
    assert_int_equal(step_str(s, fin, NULL), SASL_FAIL);
    sasl_server_free(&s);

    /* the same unknown user gets the same salt, another one a different salt */
    s = sasl_server_new(SASL_MECH_SCRAM_SHA_256);
    assert_int_equal(step_str(s, "y,,n=ghost,r=n2", NULL), SASL_NEED_VERIFIER);
    assert_int_equal(sasl_server_set_verifier(s, false, 0, NULL, 0, NULL, NULL, buf, &len),
                     SASL_CONTINUE);
    memcpy(sf2, buf, len);
    sf2[len] = '\0';
    parse_server_first(sf2, salt2, &l2, &it, nonce);
    assert_int_equal(l2, 16);
    assert_memory_equal(salt1, salt2, 16);
    sasl_server_free(&s);

    s = sasl_server_new(SASL_MECH_SCRAM_SHA_256);
    assert_int_equal(step_str(s, "n,,n=ghost2,r=n3", NULL), SASL_NEED_VERIFIER);
    assert_int_equal(sasl_server_set_verifier(s, false, 0, NULL, 0, NULL, NULL, buf, &len),
                     SASL_CONTINUE);
    memcpy(sf3, buf, len);
    sf3[len] = '\0';
    parse_server_first(sf3, salt3, &l3, &it, nonce);
    assert_int_equal(l3, 16);
    assert_memory_not_equal(salt1, salt3, 16);
    sasl_server_free(&s);

    /* a verifier that cannot be right is treated as no verifier: the correct password fails */
    unsigned char rsalt[16];
    rfc_keys("pencil", &k, rsalt);
    s = sasl_server_new(SASL_MECH_SCRAM_SHA_256);
    sasl_server_set_test_nonce(s, "S");
    assert_int_equal(step_str(s, "n,,n=user,r=c", NULL), SASL_NEED_VERIFIER);
    assert_int_equal(
        sasl_server_set_verifier(s, true, 0, rsalt, 16, k.stored_key, k.server_key, buf, &len),
        SASL_CONTINUE);
    memcpy(sf1, buf, len);
    sf1[len] = '\0';
    assert_null(strstr(sf1, rfc_salt64));
    client_final(&k, "n=user,r=c", sf1, "c=biws,r=cS", fin, sizeof(fin));
    assert_int_equal(step_str(s, fin, NULL), SASL_FAIL);
    sasl_server_free(&s);
}

static void test_scram_random_nonce(void **state)
{
    char sf1[SASL_CHALLENGE_MAX + 1], sf2[SASL_CHALLENGE_MAX + 1];
    char n1[SASL_CHALLENGE_MAX], n2[SASL_CHALLENGE_MAX];
    unsigned char salt[64];
    long sl;
    int it;
    struct keys k;
    /* a test nonce with a ',' is ignored, so both use random nonces */
    struct sasl_server *a = scram_to_final("n,,n=user,r=cli", "bad,nonce", &k, sf1);
    struct sasl_server *b = scram_to_final("n,,n=user,r=cli", NULL, &k, sf2);
    parse_server_first(sf1, salt, &sl, &it, n1);
    parse_server_first(sf2, salt, &sl, &it, n2);
    assert_int_equal(sl, 16);
    assert_int_equal(it, 4096);
    assert_int_equal(strlen(n1), 3 + 32);
    assert_int_equal(strlen(n2), 3 + 32);
    assert_memory_equal(n1, "cli", 3);
    assert_memory_equal(n2, "cli", 3);
    assert_string_not_equal(n1, n2);
    for (size_t i = 0; i < strlen(n1); i++)
        assert_true(n1[i] > 0x20 && n1[i] < 0x7f && n1[i] != ',');
    /* the exchange with a random nonce completes */
    char fin[1024], wo[600], chal[SASL_CHALLENGE_MAX + 1];
    snprintf(wo, sizeof(wo), "c=biws,r=%s", n1);
    client_final(&k, "n=user,r=cli", sf1, wo, fin, sizeof(fin));
    assert_int_equal(step_str(a, fin, chal), SASL_CONTINUE);
    assert_int_equal(step_str(a, "", NULL), SASL_SUCCESS);
    sasl_server_free(&a);
    sasl_server_free(&b);
}

static void expect_first(const char *first, enum sasl_result want, const char *user)
{
    struct sasl_server *s = sasl_server_new(SASL_MECH_SCRAM_SHA_256);
    assert_int_equal(step_str(s, first, NULL), want);
    if (user)
        assert_string_equal(sasl_server_user(s), user);
    sasl_server_free(&s);
}

static void test_scram_client_first(void **state)
{
    expect_first("n,,n=user,r=x", SASL_NEED_VERIFIER, "user");
    expect_first("y,,n=user,r=x", SASL_NEED_VERIFIER, "user");
    expect_first("n,a=user,n=user,r=x", SASL_NEED_VERIFIER, "user");
    expect_first("n,,n=user,r=x,x=ext,y=more", SASL_NEED_VERIFIER, "user");
    expect_first("n,,n=us=2Cer=3Dx,r=x", SASL_NEED_VERIFIER, "us,er=x");
    expect_first("n,,n=a=2cb=3dc,r=x", SASL_NEED_VERIFIER, "a,b=c"); /* RFC 5234 §2.3 */
    expect_first("n,,n=j\xc3\xbcrgen,r=x", SASL_NEED_VERIFIER, "j\xc3\xbcrgen");
    expect_first("n,a=us=2Cer,n=us=2Cer,r=x", SASL_NEED_VERIFIER, "us,er");

    /* channel binding and proxy authorisation are refused */
    expect_first("p=tls-server-end-point,,n=user,r=x", SASL_FAIL, NULL);
    expect_first("n,a=admin,n=user,r=x", SASL_FAIL, "user");
    expect_first("n,a=User,n=user,r=x", SASL_FAIL, "user");

    /* syntax */
    static const char *const bad[] = {
        "",
        "n",
        "n,",
        "n,,",
        "x,,n=user,r=x",
        "nn,,n=user,r=x",
        "p,,n=user,r=x",
        "n,a=,n=user,r=x",
        "n,a=user",
        "n,b=user,n=user,r=x",
        "n,,m=ext,n=user,r=x",
        "n,,n=user",
        "n,,n=user,",
        "n,,n=user,r=",
        "n,,n=,r=x",
        "n,,r=x,n=user",
        "n,,n=user,r=x,",
        "n,,n=user,r=x,1=y",
        "n,,n=user,r=x,e=",
        "n,,n=user,r=x,ee",
        "n,,n=us=2Xer,r=x",
        "n,,n=user=,r=x",
        "n,,n=user=2,r=x",
        "n,,n=us=er,r=x",
        "n,,n=us\x01r,r=x",
        "n,,n=us\xffr,r=x",
        "n,,n=user,r=a b",
        "n,,n=user,r=\x7f",
        "n,,n=user,r=\xc3\xa4",
        "N,,n=user,r=x",
        "n,,N=user,r=x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct sasl_server *s = sasl_server_new(SASL_MECH_SCRAM_SHA_256);
        if (step_str(s, bad[i], NULL) != SASL_MALFORMED)
            fail_msg("accepted %s", bad[i]);
        sasl_server_free(&s);
    }
    /* NUL inside */
    struct sasl_server *s = sasl_server_new(SASL_MECH_SCRAM_SHA_256);
    assert_int_equal(step_mem(s, "n,,n=us\0r,r=x", 13), SASL_MALFORMED);
    sasl_server_free(&s);

    /* user name bound, after unescaping */
    char msg[4096];
    char user[SASL_USER_MAX + 2];
    memset(user, 'u', SASL_USER_MAX + 1);
    user[SASL_USER_MAX] = '\0';
    snprintf(msg, sizeof(msg), "n,,n=%s,r=x", user);
    expect_first(msg, SASL_NEED_VERIFIER, user);
    user[SASL_USER_MAX] = 'u';
    user[SASL_USER_MAX + 1] = '\0';
    snprintf(msg, sizeof(msg), "n,,n=%s,r=x", user);
    expect_first(msg, SASL_MALFORMED, NULL);
    /* SASL_USER_MAX escaped commas are SASL_USER_MAX bytes: accepted */
    strcpy(msg, "n,,n=");
    for (int i = 0; i < SASL_USER_MAX; i++)
        strcat(msg, "=2C");
    strcat(msg, ",r=x");
    expect_first(msg, SASL_NEED_VERIFIER, NULL);
    /* nonce bound */
    char nonce[300];
    memset(nonce, 'n', 257);
    nonce[257] = '\0';
    snprintf(msg, sizeof(msg), "n,,n=u,r=%s", nonce);
    expect_first(msg, SASL_MALFORMED, NULL);
    nonce[256] = '\0';
    snprintf(msg, sizeof(msg), "n,,n=u,r=%s", nonce);
    expect_first(msg, SASL_NEED_VERIFIER, "u");
    /* whole message bound */
    memset(msg, 'e', sizeof(msg));
    memcpy(msg, "n,,n=u,r=x,e=", 13);
    msg[2049] = '\0';
    expect_first(msg, SASL_MALFORMED, NULL);
    msg[2048] = '\0';
    expect_first(msg, SASL_NEED_VERIFIER, "u");
}

/* Client-final messages against a fresh exchange "n,,n=user,r=abc" / server nonce "XYZ". */
static void expect_final(const char *gs2, const char *without_proof, bool add_proof,
                         const char *suffix, enum sasl_result want)
{
    struct keys k;
    char sfirst[SASL_CHALLENGE_MAX + 1], first[128], fin[1024];
    snprintf(first, sizeof(first), "%sn=user,r=abc", gs2);
    struct sasl_server *s = scram_to_final(first, "XYZ", &k, sfirst);
    if (add_proof)
        client_final(&k, "n=user,r=abc", sfirst, without_proof, fin, sizeof(fin));
    else
        snprintf(fin, sizeof(fin), "%s", without_proof);
    strncat(fin, suffix, sizeof(fin) - strlen(fin) - 1);
    enum sasl_result r = step_str(s, fin, NULL);
    if (r != want)
        fail_msg("%s: got %d, want %d", fin, (int)r, (int)want);
    sasl_server_free(&s);
}

static void test_scram_client_final(void **state)
{
    expect_final("n,,", "c=biws,r=abcXYZ", true, "", SASL_CONTINUE);
    expect_final("y,,", "c=eSws,r=abcXYZ", true, "", SASL_CONTINUE);
    expect_final("n,a=user,", "c=bixhPXVzZXIs,r=abcXYZ", true, "", SASL_CONTINUE);
    expect_final("n,,", "c=biws,r=abcXYZ,x=ext", true, "", SASL_CONTINUE);

    /* the channel-binding data must repeat the gs2 header exactly */
    expect_final("n,,", "c=eSws,r=abcXYZ", true, "", SASL_FAIL);
    expect_final("y,,", "c=biws,r=abcXYZ", true, "", SASL_FAIL);
    expect_final("n,a=user,", "c=biws,r=abcXYZ", true, "", SASL_FAIL);
    expect_final("n,,", "c=,r=abcXYZ", true, "", SASL_FAIL);
    /* the nonce must be the combined one */
    expect_final("n,,", "c=biws,r=abc", true, "", SASL_FAIL);
    expect_final("n,,", "c=biws,r=abcXYZW", true, "", SASL_FAIL);
    expect_final("n,,", "c=biws,r=abcXYz", true, "", SASL_FAIL);

    /* syntax */
    expect_final("n,,", "", false, "", SASL_MALFORMED);
    expect_final("n,,", "c=biws,r=abcXYZ", false, "", SASL_MALFORMED);    /* no proof */
    expect_final("n,,", "c=biws,r=abcXYZ", true, ",x=y", SASL_MALFORMED); /* proof not last */
    expect_final("n,,", "c=biws,r=abcXYZ", true, ",", SASL_MALFORMED);    /* trailing comma */
    expect_final("n,,", "c=biws,r=abcXYZ", true, "A", SASL_MALFORMED);    /* proof not base64 */
    expect_final("n,,", "c=biw,r=abcXYZ", true, "", SASL_MALFORMED);      /* c= not base64 */
    expect_final("n,,", "r=abcXYZ,c=biws", true, "", SASL_MALFORMED);     /* order */
    expect_final("n,,", "c=biws", true, "", SASL_MALFORMED);              /* no nonce */
    expect_final("n,,", "c=biws,r=abcXYZ,1=x", true, "", SASL_MALFORMED); /* bad extension */
    expect_final("n,,", "c=biws,r=abcXYZ,p=", false, "", SASL_MALFORMED);
    expect_final("n,,", "c=biws,r=abcXYZ,p=AAAA", false, "", SASL_MALFORMED); /* 3 bytes */
    expect_final("n,,", "c=biws,r=abcXYZ,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", false,
                 "", SASL_MALFORMED); /* 36 bytes */
    /* a well-formed all-zero proof is just wrong */
    expect_final("n,,", "c=biws,r=abcXYZ,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", false, "",
                 SASL_FAIL);
}

/* ---- state misuse --------------------------------------------------------------------------- */

static void test_state_misuse(void **state)
{
    unsigned char buf[SASL_CHALLENGE_MAX], key[32] = {0}, salt[4] = {1, 2, 3, 4};
    size_t len;

    /* PLAIN: a step while the password is being checked ends the exchange */
    struct sasl_server *s = sasl_server_new(SASL_MECH_PLAIN);
    assert_int_equal(step_mem(s, "\0u\0p", 4), SASL_CHECK_PASSWORD);
    assert_int_equal(step_mem(s, "\0u\0p", 4), SASL_MALFORMED);
    assert_int_equal(sasl_server_password_result(s, true), SASL_MALFORMED);
    assert_string_equal(sasl_server_password(s), "");
    sasl_server_free(&s);

    /* answers nobody asked for */
    s = sasl_server_new(SASL_MECH_PLAIN);
    assert_int_equal(sasl_server_password_result(s, true), SASL_MALFORMED);
    assert_int_equal(step_mem(s, "\0u\0p", 4), SASL_MALFORMED); /* and it is over */
    sasl_server_free(&s);

    s = sasl_server_new(SASL_MECH_PLAIN);
    assert_int_equal(step_mem(s, "\0u\0p", 4), SASL_CHECK_PASSWORD);
    assert_int_equal(sasl_server_set_verifier(s, true, 1, salt, 4, key, key, buf, &len),
                     SASL_MALFORMED);
    sasl_server_free(&s);

    s = sasl_server_new(SASL_MECH_LOGIN);
    assert_int_equal(sasl_server_set_verifier(s, false, 0, NULL, 0, NULL, NULL, buf, &len),
                     SASL_MALFORMED);
    sasl_server_free(&s);

    /* after success nothing more is accepted */
    s = sasl_server_new(SASL_MECH_PLAIN);
    assert_int_equal(step_mem(s, "\0u\0p", 4), SASL_CHECK_PASSWORD);
    assert_int_equal(sasl_server_password_result(s, true), SASL_SUCCESS);
    assert_int_equal(sasl_server_password_result(s, true), SASL_MALFORMED);
    assert_int_equal(step_mem(s, "\0u\0p", 4), SASL_MALFORMED);
    sasl_server_free(&s);

    /* SCRAM: steps while the verifier is looked up, verifier twice, password answers */
    s = sasl_server_new(SASL_MECH_SCRAM_SHA_256);
    assert_int_equal(step_str(s, "n,,n=u,r=x", NULL), SASL_NEED_VERIFIER);
    assert_int_equal(step_str(s, "n,,n=u,r=x", NULL), SASL_MALFORMED);
    assert_int_equal(sasl_server_set_verifier(s, true, 1, salt, 4, key, key, buf, &len),
                     SASL_MALFORMED);
    sasl_server_free(&s);

    s = sasl_server_new(SASL_MECH_SCRAM_SHA_256);
    assert_int_equal(step_str(s, "n,,n=u,r=x", NULL), SASL_NEED_VERIFIER);
    assert_int_equal(sasl_server_set_verifier(s, true, 1, salt, 4, key, key, buf, &len),
                     SASL_CONTINUE);
    assert_int_equal(sasl_server_set_verifier(s, true, 1, salt, 4, key, key, buf, &len),
                     SASL_MALFORMED);
    sasl_server_free(&s);

    s = sasl_server_new(SASL_MECH_SCRAM_SHA_256);
    assert_int_equal(step_str(s, "n,,n=u,r=x", NULL), SASL_NEED_VERIFIER);
    assert_int_equal(sasl_server_password_result(s, true), SASL_MALFORMED);
    sasl_server_free(&s);

    s = sasl_server_new(SASL_MECH_SCRAM_SHA_256);
    assert_int_equal(sasl_server_set_verifier(s, false, 0, NULL, 0, NULL, NULL, buf, &len),
                     SASL_MALFORMED);
    sasl_server_free(&s);

    /* missing output buffers and data */
    s = sasl_server_new(SASL_MECH_LOGIN);
    assert_int_equal(sasl_server_step(s, NULL, 0, false, NULL, &len), SASL_MALFORMED);
    sasl_server_free(&s);
    s = sasl_server_new(SASL_MECH_LOGIN);
    assert_int_equal(sasl_server_step(s, NULL, 0, false, buf, NULL), SASL_MALFORMED);
    sasl_server_free(&s);
    s = sasl_server_new(SASL_MECH_PLAIN);
    assert_int_equal(sasl_server_step(s, NULL, 5, true, buf, &len), SASL_MALFORMED);
    sasl_server_free(&s);
    s = sasl_server_new(SASL_MECH_SCRAM_SHA_256);
    assert_int_equal(step_str(s, "n,,n=u,r=x", NULL), SASL_NEED_VERIFIER);
    assert_int_equal(sasl_server_set_verifier(s, true, 1, salt, 4, key, key, NULL, &len),
                     SASL_MALFORMED);
    sasl_server_free(&s);

    /* NULL servers */
    assert_int_equal(sasl_server_step(NULL, NULL, 0, false, buf, &len), SASL_MALFORMED);
    assert_int_equal(sasl_server_password_result(NULL, true), SASL_MALFORMED);
    assert_int_equal(sasl_server_set_verifier(NULL, false, 0, NULL, 0, NULL, NULL, buf, &len),
                     SASL_MALFORMED);
    assert_string_equal(sasl_server_user(NULL), "");
    assert_string_equal(sasl_server_password(NULL), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mech_names),
        cmocka_unit_test(test_b64_vectors),
        cmocka_unit_test(test_b64_strict),
        cmocka_unit_test(test_plain_initial_response),
        cmocka_unit_test(test_plain_no_initial_response),
        cmocka_unit_test(test_plain_authzid),
        cmocka_unit_test(test_plain_malformed),
        cmocka_unit_test(test_login),
        cmocka_unit_test(test_login_malformed),
        cmocka_unit_test(test_scram_rfc7677),
        cmocka_unit_test(test_scram_wrong_password),
        cmocka_unit_test(test_scram_unknown_user),
        cmocka_unit_test(test_scram_random_nonce),
        cmocka_unit_test(test_scram_client_first),
        cmocka_unit_test(test_scram_client_final),
        cmocka_unit_test(test_state_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
