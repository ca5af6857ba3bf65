/* libFuzzer harness for proto/sasl.
 *
 * Input: byte 0 picks the mechanism (mod 3: PLAIN, LOGIN, SCRAM-SHA-256), byte 1 holds flags
 * (bit 0: the first message is an initial response, else the exchange starts without one;
 * bit 1: the password check answers ok; bit 2: the SCRAM verifier is found), the rest is the
 * client's messages separated by '\n'. Each message goes to the server from its own exact-size
 * heap copy so ASan sees any over-read. CHECK_PASSWORD and NEED_VERIFIER are answered with
 * fixed values: the verifier is the RFC 7677 one (user "user", password "pencil") and the server
 * nonce the RFC's, so a seed replaying that exchange reaches SUCCESS.
 *
 * Properties checked besides memory safety: results stay in the enum, challenges within
 * SASL_CHALLENGE_MAX, the user name within SASL_USER_MAX; SUCCESS only follows a positive
 * password answer or a found verifier; after a terminal result every call is MALFORMED; a
 * SCRAM server-first message starts with "r=". Every message is also base64-decoded: what
 * decodes must re-encode to the same text (strict, canonical), and encoding then decoding the
 * message must give it back. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "proto/sasl/sasl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

static unsigned char salt[16];
static unsigned char stored_key[SASL_SCRAM_KEY_LEN], server_key[SASL_SCRAM_KEY_LEN];
static int keys_ready;

/* The RFC 7677 §3 verifier: PBKDF2 once, not per input. */
static void make_keys(void)
{
    static const char salt64[] = "W22ZaJ0SNY7soEsUEjb6gQ==";
    unsigned char salted[32], client_key[32];
    unsigned int l;
    check(sasl_b64_decode(salt64, strlen(salt64), salt, sizeof(salt)) == 16);
    check(PKCS5_PBKDF2_HMAC("pencil", 6, salt, sizeof(salt), 4096, EVP_sha256(), 32, salted) == 1);
    check(HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Client Key", 10, client_key, &l) !=
          NULL);
    check(HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Server Key", 10, server_key, &l) !=
          NULL);
    check(EVP_Digest(client_key, 32, stored_key, &l, EVP_sha256(), NULL) == 1);
    keys_ready = 1;
}

static void check_b64(const unsigned char *msg, size_t len)
{
    unsigned char dec[1024];
    char enc[1400];
    long n = sasl_b64_decode((const char *)msg, len, dec, sizeof(dec));
    if (n >= 0) {
        check((size_t)n <= len / 4 * 3);
        check(sasl_b64_encode(dec, (size_t)n, enc, sizeof(enc)) == (long)len);
        check(memcmp(enc, msg, len) == 0);
    }
    if (len <= sizeof(dec)) {
        long e = sasl_b64_encode(msg, len, enc, sizeof(enc));
        check(e == (long)((len + 2) / 3 * 4));
        check(sasl_b64_decode(enc, (size_t)e, dec, sizeof(dec)) == (long)len);
        check(len == 0 || memcmp(dec, msg, len) == 0);
    }
}

static int terminal(enum sasl_result r)
{
    return r == SASL_SUCCESS || r == SASL_FAIL || r == SASL_MALFORMED;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    if (!keys_ready)
        make_keys();
    enum sasl_mech mech = (enum sasl_mech)(data[0] % 3 + 1);
    bool initial = data[1] & 1, password_ok = data[1] & 2, found = data[1] & 4;
    const uint8_t *p = data + 2, *end = data + size;

    struct sasl_server *s = sasl_server_new(mech);
    check(s != NULL);
    sasl_server_set_test_nonce(s, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
    unsigned char chal[SASL_CHALLENGE_MAX];
    size_t chal_len = 0;
    enum sasl_result r = SASL_CONTINUE;
    bool allowed_success = false, done = false;

    if (!initial) {
        r = sasl_server_step(s, NULL, 0, false, chal, &chal_len);
        check(r == SASL_CONTINUE && chal_len <= SASL_CHALLENGE_MAX);
    }
    while (p <= end) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        unsigned char *msg = malloc(len ? len : 1);
        check(msg != NULL);
        memcpy(msg, p, len);
        check_b64(msg, len);

        r = sasl_server_step(s, msg, len, true, chal, &chal_len);
        free(msg);
        check(r >= SASL_CONTINUE && r <= SASL_MALFORMED);
        check(chal_len <= SASL_CHALLENGE_MAX);
        if (done) {
            check(r == SASL_MALFORMED);
        } else if (r == SASL_CHECK_PASSWORD) {
            check(mech != SASL_MECH_SCRAM_SHA_256);
            check(strlen(sasl_server_password(s)) > 0);
            r = sasl_server_password_result(s, password_ok);
            check(r == (password_ok ? SASL_SUCCESS : SASL_FAIL));
            check(sasl_server_password(s)[0] == '\0');
            allowed_success = password_ok;
        } else if (r == SASL_NEED_VERIFIER) {
            check(mech == SASL_MECH_SCRAM_SHA_256);
            check(strlen(sasl_server_user(s)) > 0);
            r = sasl_server_set_verifier(s, found, 4096, salt, sizeof(salt), stored_key, server_key,
                                         chal, &chal_len);
            check(r == SASL_CONTINUE && chal_len > 2 && chal_len <= SASL_CHALLENGE_MAX);
            check(memcmp(chal, "r=", 2) == 0);
            allowed_success = found;
        }
        check(r != SASL_SUCCESS || allowed_success);
        check(strlen(sasl_server_user(s)) <= SASL_USER_MAX);
        if (terminal(r))
            done = true;
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    if (done) {
        check(sasl_server_step(s, NULL, 0, false, chal, &chal_len) == SASL_MALFORMED);
        check(sasl_server_password_result(s, true) == SASL_MALFORMED);
    }
    sasl_server_free(&s);
    check(s == NULL);
    return 0;
}
