/* Password hashing and SCRAM verifiers for the directory.
 *
 * Two forms are stored per account: a yescrypt hash (libcrypt) used for plain
 * logins (IMAP LOGIN, SMTP AUTH PLAIN, HTTP Basic, ...) and an RFC 5802/7677
 * SCRAM-SHA-256 verifier used for SCRAM logins, where the server never sees
 * the password. Neither form can be turned back into the password.
 */
#ifndef FLOE_STORAGE_PASSWORD_H
#define FLOE_STORAGE_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

/* Longest password accepted, in bytes. */
#define PASSWORD_MAX_LEN 1024
/* Buffer size that always holds a password_hash() result, NUL included. */
#define PASSWORD_HASH_MAX 128
/* Buffer size that always holds a password_scram_make() result, NUL included. */
#define PASSWORD_SCRAM_MAX 256
/* RFC 7677 §4: the iteration count SHOULD be at least 4096. */
#define PASSWORD_SCRAM_ITERATIONS 4096
/* Largest iteration count made or parsed; bounds the work one login costs. */
#define PASSWORD_SCRAM_MAX_ITERATIONS 10000000
/* Salt length of verifiers made here, and the longest salt parsed. */
#define PASSWORD_SCRAM_SALT_LEN 16
#define PASSWORD_SCRAM_SALT_MAX 64
/* SHA-256 output: the length of StoredKey and ServerKey. */
#define PASSWORD_SCRAM_KEY_LEN 32

/* Checks a new password against the rules: 1..PASSWORD_MAX_LEN bytes, valid
 * UTF-8 (RFC 3629: no overlong forms, no surrogates), no CR or LF (a C string
 * cannot hold NUL). Returns 0 when acceptable, -1 with the reason in err. */
int password_check(const char *plain, char *err, size_t errlen);

/* Hashes plain with yescrypt and a fresh random salt at libcrypt's default
 * cost, writing the crypt string ("$y$...") to out. plain must be
 * 1..PASSWORD_MAX_LEN bytes. Returns 0 ok, -1 on error (bad input, out too
 * small, libcrypt failure). */
int password_hash(const char *plain, char *out, size_t outlen);

/* True when plain matches hash, a crypt string made by password_hash() (or any
 * method libcrypt supports). The final comparison runs in constant time. False
 * for NULL arguments, an over-long plain, and hashes libcrypt rejects (such as
 * "!" or "*" used to lock an account). */
bool password_verify(const char *plain, const char *hash);

/* Derives the SCRAM-SHA-256 StoredKey and ServerKey (RFC 5802 §3) from plain,
 * the salt and the iteration count:
 *   SaltedPassword = PBKDF2-HMAC-SHA-256(plain, salt, iterations)
 *   StoredKey = SHA-256(HMAC(SaltedPassword, "Client Key"))
 *   ServerKey = HMAC(SaltedPassword, "Server Key")
 * The password is used as its UTF-8 bytes; SASLprep (RFC 4013) is not applied,
 * which makes no difference for printable ASCII passwords.
 * Returns 0 ok, -1 on bad arguments or a crypto failure. */
int password_scram_derive(const char *plain, int iterations, const unsigned char *salt,
                          size_t saltlen, unsigned char stored_r[PASSWORD_SCRAM_KEY_LEN],
                          unsigned char server_r[PASSWORD_SCRAM_KEY_LEN]);

/* Makes a SCRAM-SHA-256 verifier for plain with a fresh random 16-byte salt:
 *   SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>
 * iterations 0 means PASSWORD_SCRAM_ITERATIONS; otherwise it must lie in
 * PASSWORD_SCRAM_ITERATIONS..PASSWORD_SCRAM_MAX_ITERATIONS. plain must be
 * 1..PASSWORD_MAX_LEN bytes. Returns 0 ok, -1 on error (bad input, out too
 * small, no randomness). */
int password_scram_make(const char *plain, int iterations, char *out, size_t outlen);

/* Parses a verifier in the form password_scram_make() writes. The salt must
 * decode to 1..PASSWORD_SCRAM_SALT_MAX bytes, both keys to exactly 32 bytes,
 * the iteration count must be 1..PASSWORD_SCRAM_MAX_ITERATIONS, and base64
 * must be canonical with padding. Returns 0 ok with every output filled, -1
 * when s is malformed (outputs then undefined). */
int password_scram_parse(const char *s, int *iter_r, unsigned char salt[PASSWORD_SCRAM_SALT_MAX],
                         size_t *saltlen_r, unsigned char stored[PASSWORD_SCRAM_KEY_LEN],
                         unsigned char server[PASSWORD_SCRAM_KEY_LEN]);

#endif
