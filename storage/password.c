/* Password rules, yescrypt hashing and SCRAM-SHA-256 verifiers.
 *
 * yescrypt comes from libcrypt (libxcrypt): crypt_gensalt_rn() draws the salt
 * from the kernel and picks the library's default cost, crypt_rn() hashes.
 * The crypt_data work area is about 32 KiB, so it is allocated on the heap
 * (worker threads have modest stacks) and wiped after use.
 *
 * SCRAM-SHA-256 verifiers (RFC 5802 §3, RFC 7677) are derived with OpenSSL's
 * PBKDF2, HMAC and SHA-256 and stored in the text form PostgreSQL also uses:
 *   SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
 * The parser treats the string as untrusted: every field is bounded, base64
 * must be canonical, and the decoded lengths are checked before use.
 */
#include "proto/text/utf8.h"
#include "storage/password.h"

#include <crypt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#define SCRAM_PREFIX "SCRAM-SHA-256$"

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt,
                                                          ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}


int password_check(const char *plain, char *err, size_t errlen)
{
    if (plain == NULL || plain[0] == '\0') {
        set_err(err, errlen, "password is empty");
        return -1;
    }
    size_t n = strnlen(plain, PASSWORD_MAX_LEN + 1);
    if (n > PASSWORD_MAX_LEN) {
        set_err(err, errlen, "password is longer than %d bytes", PASSWORD_MAX_LEN);
        return -1;
    }
    if (memchr(plain, '\r', n) != NULL || memchr(plain, '\n', n) != NULL) {
        set_err(err, errlen, "password contains a line break");
        return -1;
    }
    if (!utf8_check(plain, n, 0)) {
        set_err(err, errlen, "password is not valid UTF-8");
        return -1;
    }
    return 0;
}

/* 1..PASSWORD_MAX_LEN bytes; the length in *n_r. */
static bool plain_ok(const char *plain, size_t *n_r)
{
    if (plain == NULL)
        return false;
    size_t n = strnlen(plain, PASSWORD_MAX_LEN + 1);
    if (n == 0 || n > PASSWORD_MAX_LEN)
        return false;
    *n_r = n;
    return true;
}

int password_hash(const char *plain, char *out, size_t outlen)
{
    size_t n;
    if (!plain_ok(plain, &n) || out == NULL || outlen == 0)
        return -1;

    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    /* NULL random bytes: libcrypt reads the salt from the kernel itself. */
    if (crypt_gensalt_rn("$y$", 0, NULL, 0, setting, sizeof setting) == NULL)
        return -1;

    struct crypt_data *cd = calloc(1, sizeof *cd);
    if (cd == NULL)
        return -1;
    int rc = -1;
    const char *h = crypt_rn(plain, setting, cd, (int)sizeof *cd);
    /* crypt_rn returns NULL on failure; a result starting with '*' is a
     * failure token, never a hash. */
    if (h != NULL && h[0] != '*') {
        size_t hl = strlen(h);
        if (hl < outlen) {
            memcpy(out, h, hl + 1);
            rc = 0;
        }
    }
    OPENSSL_cleanse(cd, sizeof *cd);
    free(cd);
    return rc;
}

bool password_verify(const char *plain, const char *hash)
{
    size_t n;
    if (!plain_ok(plain, &n) || hash == NULL || hash[0] == '\0')
        return false;
    size_t hl = strnlen(hash, CRYPT_OUTPUT_SIZE);
    if (hl >= CRYPT_OUTPUT_SIZE)
        return false;

    struct crypt_data *cd = calloc(1, sizeof *cd);
    if (cd == NULL)
        return false;
    bool ok = false;
    const char *h = crypt_rn(plain, hash, cd, (int)sizeof *cd);
    if (h != NULL && h[0] != '*' && strlen(h) == hl)
        ok = CRYPTO_memcmp(h, hash, hl) == 0;
    OPENSSL_cleanse(cd, sizeof *cd);
    free(cd);
    return ok;
}

int password_scram_derive(const char *plain, int iterations, const unsigned char *salt,
                          size_t saltlen, unsigned char stored_r[PASSWORD_SCRAM_KEY_LEN],
                          unsigned char server_r[PASSWORD_SCRAM_KEY_LEN])
{
    size_t n;
    if (!plain_ok(plain, &n) || iterations < 1 || iterations > PASSWORD_SCRAM_MAX_ITERATIONS ||
        salt == NULL || saltlen == 0 || saltlen > PASSWORD_SCRAM_SALT_MAX)
        return -1;

    unsigned char salted[PASSWORD_SCRAM_KEY_LEN];
    unsigned char client_key[PASSWORD_SCRAM_KEY_LEN];
    unsigned int len = 0;
    int rc = -1;

    if (PKCS5_PBKDF2_HMAC(plain, (int)n, salt, (int)saltlen, iterations, EVP_sha256(),
                          (int)sizeof salted, salted) != 1)
        goto out;
    if (HMAC(EVP_sha256(), salted, sizeof salted, (const unsigned char *)"Client Key", 10,
             client_key, &len) == NULL ||
        len != sizeof client_key)
        goto out;
    if (SHA256(client_key, sizeof client_key, stored_r) == NULL)
        goto out;
    if (HMAC(EVP_sha256(), salted, sizeof salted, (const unsigned char *)"Server Key", 10, server_r,
             &len) == NULL ||
        len != PASSWORD_SCRAM_KEY_LEN)
        goto out;
    rc = 0;
out:
    OPENSSL_cleanse(salted, sizeof salted);
    OPENSSL_cleanse(client_key, sizeof client_key);
    return rc;
}

/* Base64 of n bytes into out (room for 4*ceil(n/3)+1); returns the length. */
static size_t b64_encode(char *out, const unsigned char *in, size_t n)
{
    return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

int password_scram_make(const char *plain, int iterations, char *out, size_t outlen)
{
    size_t n;
    if (!plain_ok(plain, &n) || out == NULL)
        return -1;
    if (iterations == 0)
        iterations = PASSWORD_SCRAM_ITERATIONS;
    if (iterations < PASSWORD_SCRAM_ITERATIONS || iterations > PASSWORD_SCRAM_MAX_ITERATIONS)
        return -1;

    unsigned char salt[PASSWORD_SCRAM_SALT_LEN];
    unsigned char stored[PASSWORD_SCRAM_KEY_LEN], server[PASSWORD_SCRAM_KEY_LEN];
    if (RAND_bytes(salt, (int)sizeof salt) != 1)
        return -1;
    if (password_scram_derive(plain, iterations, salt, sizeof salt, stored, server) != 0)
        return -1;

    char salt64[4 * ((PASSWORD_SCRAM_SALT_LEN + 2) / 3) + 1];
    char stored64[4 * ((PASSWORD_SCRAM_KEY_LEN + 2) / 3) + 1];
    char server64[sizeof stored64];
    b64_encode(salt64, salt, sizeof salt);
    b64_encode(stored64, stored, sizeof stored);
    b64_encode(server64, server, sizeof server);
    OPENSSL_cleanse(stored, sizeof stored);
    OPENSSL_cleanse(server, sizeof server);

    int w =
        snprintf(out, outlen, SCRAM_PREFIX "%d:%s$%s:%s", iterations, salt64, stored64, server64);
    if (w < 0 || (size_t)w >= outlen) {
        if (outlen > 0)
            out[0] = '\0';
        return -1;
    }
    return 0;
}

/* Value of one base64 character (RFC 4648 §4), -1 when not in the alphabet. */
static int b64_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+')
        return 62;
    if (ch == '/')
        return 63;
    return -1;
}

/* Decodes the n characters at in into out (capacity cap). Only canonical
 * base64 is accepted (RFC 4648 §3.5: padded, unused bits zero), because
 * OpenSSL's decoder alone is lenient about whitespace and padding.
 * Returns the decoded length, or -1. */
static long b64_decode(unsigned char *out, size_t cap, const char *in, size_t n)
{
    if (n == 0 || n % 4 != 0 || n > 4 * ((PASSWORD_SCRAM_SALT_MAX + 2) / 3))
        return -1;
    size_t pad = 0;
    if (in[n - 1] == '=')
        pad = (in[n - 2] == '=') ? 2 : 1;
    for (size_t i = 0; i < n - pad; i++)
        if (b64_value((unsigned char)in[i]) < 0)
            return -1;
    /* The last data character may not carry bits past the end of the data. */
    if (pad == 1 && (b64_value((unsigned char)in[n - 2]) & 0x03) != 0)
        return -1;
    if (pad == 2 && (b64_value((unsigned char)in[n - 3]) & 0x0F) != 0)
        return -1;
    size_t len = n / 4 * 3 - pad;
    unsigned char tmp[3 * ((PASSWORD_SCRAM_SALT_MAX + 2) / 3) + 3];
    if (len > cap || n / 4 * 3 > sizeof tmp)
        return -1;
    /* EVP_DecodeBlock counts padding as zero bytes; they are dropped here. */
    int got = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)n);
    if (got < 0 || (size_t)got != n / 4 * 3) {
        OPENSSL_cleanse(tmp, sizeof tmp);
        return -1;
    }
    memcpy(out, tmp, len);
    OPENSSL_cleanse(tmp, sizeof tmp);
    return (long)len;
}

int password_scram_parse(const char *s, int *iter_r, unsigned char salt[PASSWORD_SCRAM_SALT_MAX],
                         size_t *saltlen_r, unsigned char stored[PASSWORD_SCRAM_KEY_LEN],
                         unsigned char server[PASSWORD_SCRAM_KEY_LEN])
{
    if (s == NULL || iter_r == NULL || salt == NULL || saltlen_r == NULL || stored == NULL ||
        server == NULL)
        return -1;
    size_t n = strnlen(s, PASSWORD_SCRAM_MAX);
    if (n >= PASSWORD_SCRAM_MAX)
        return -1;
    size_t plen = strlen(SCRAM_PREFIX);
    if (n < plen || memcmp(s, SCRAM_PREFIX, plen) != 0)
        return -1;
    const char *p = s + plen, *end = s + n;

    /* <iterations>: decimal, no sign, no leading zero. */
    long iter = 0;
    const char *q = p;
    while (q < end && *q >= '0' && *q <= '9') {
        iter = iter * 10 + (*q - '0');
        if (iter > PASSWORD_SCRAM_MAX_ITERATIONS)
            return -1;
        q++;
    }
    if (q == p || (*p == '0') || iter < 1 || q == end || *q != ':')
        return -1;
    p = q + 1;

    /* <salt>$ */
    const char *dollar = memchr(p, '$', (size_t)(end - p));
    if (dollar == NULL)
        return -1;
    long sl = b64_decode(salt, PASSWORD_SCRAM_SALT_MAX, p, (size_t)(dollar - p));
    if (sl < 1)
        return -1;
    p = dollar + 1;

    /* <StoredKey>:<ServerKey> */
    const char *colon = memchr(p, ':', (size_t)(end - p));
    if (colon == NULL)
        return -1;
    if (b64_decode(stored, PASSWORD_SCRAM_KEY_LEN, p, (size_t)(colon - p)) !=
        PASSWORD_SCRAM_KEY_LEN)
        return -1;
    p = colon + 1;
    if (b64_decode(server, PASSWORD_SCRAM_KEY_LEN, p, (size_t)(end - p)) != PASSWORD_SCRAM_KEY_LEN)
        return -1;

    *iter_r = (int)iter;
    *saltlen_r = (size_t)sl;
    return 0;
}
