/* SASL server mechanisms shared by SMTP (RFC 4954), IMAP (RFC 9051 §6.2.2)
 * and POP3 (RFC 5034): PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login)
 * and SCRAM-SHA-256 (RFC 5802, RFC 7677) without channel binding.
 *
 * A pure state machine: the protocol decodes each client line from base64
 * (sasl_b64_decode; "*" is a cancel the protocol handles itself), hands the
 * bytes to sasl_server_step(), and acts on the result. Password checks and
 * verifier look-ups need the directory, so the machine stops and asks the
 * caller for them (SASL_CHECK_PASSWORD, SASL_NEED_VERIFIER) and the caller
 * resumes it once it has the answer (usually from a worker thread).
 *
 * Proxy authorisation is not offered: an authorisation identity that differs
 * from the authentication identity fails the exchange. */
#ifndef FLOE_PROTO_SASL_H
#define FLOE_PROTO_SASL_H

#include <stdbool.h>
#include <stddef.h>

#define SASL_USER_MAX 320
#define SASL_PASSWORD_MAX 1024
/* Largest challenge the server sends, decoded. */
#define SASL_CHALLENGE_MAX 512
#define SASL_SCRAM_KEY_LEN 32
#define SASL_SCRAM_SALT_MAX 64

enum sasl_mech { SASL_MECH_PLAIN = 1, SASL_MECH_LOGIN, SASL_MECH_SCRAM_SHA_256 };

/* Mechanism name (case-insensitive) to mech; -1 when unknown. */
int sasl_mech_parse(const char *name, enum sasl_mech *mech_r);
/* The registered name ("PLAIN", "LOGIN", "SCRAM-SHA-256"); NULL for a value
 * outside the enum. */
const char *sasl_mech_name(enum sasl_mech mech);
/* True when the mechanism sends the password itself (PLAIN, LOGIN), so
 * protocols offer it only over TLS unless configured otherwise. */
bool sasl_mech_plaintext(enum sasl_mech mech);

enum sasl_result {
    SASL_CONTINUE = 1,   /* send challenge (possibly empty) and read another response */
    SASL_CHECK_PASSWORD, /* verify user/password (sasl_server_user/_password), then
                            call sasl_server_password_result() */
    SASL_NEED_VERIFIER,  /* look up the SCRAM verifier of sasl_server_user(), then call
                            sasl_server_set_verifier() */
    SASL_SUCCESS,        /* authenticated as sasl_server_user() */
    SASL_FAIL,           /* authentication failed (wrong password, unknown user) */
    SASL_MALFORMED,      /* the client's message broke the mechanism's syntax */
};

struct sasl_server;

/* NULL when mech is not one of the enum or memory runs out. */
struct sasl_server *sasl_server_new(enum sasl_mech mech);
/* Wipes secrets and frees; *s set to NULL. */
void sasl_server_free(struct sasl_server **s);

/* One client message (already base64-decoded; the initial response of
 * SASL-IR / AUTH <mech> <ir> too, with has_data distinguishing "no initial
 * response" from an empty one "="). The first call for mechanisms that start
 * with a server challenge (LOGIN) is made with has_data false.
 * On SASL_CONTINUE the challenge to send is in challenge_r (len in
 * *challenge_len_r, may be 0), buffer of SASL_CHALLENGE_MAX bytes.
 *
 * has_data only matters on the first call; a later call with has_data false
 * counts as an empty message. Once SASL_SUCCESS, SASL_FAIL or SASL_MALFORMED
 * has been returned the exchange is over and every further call (as well as
 * any call in a state that does not expect it, e.g. a step while the machine
 * waits for sasl_server_password_result(), or NULL challenge buffers) returns
 * SASL_MALFORMED and ends the exchange. */
enum sasl_result sasl_server_step(struct sasl_server *s, const unsigned char *data, size_t len,
                                  bool has_data, unsigned char *challenge_r,
                                  size_t *challenge_len_r);

/* The authentication identity (NUL-terminated UTF-8) once the mechanism has
 * read it; "" before. */
const char *sasl_server_user(const struct sasl_server *s);
/* PLAIN/LOGIN: the password to verify (NUL-terminated), valid until the next
 * call; wiped by sasl_server_password_result() and sasl_server_free(). */
const char *sasl_server_password(const struct sasl_server *s);
/* Answer to SASL_CHECK_PASSWORD; returns SASL_SUCCESS or SASL_FAIL. */
enum sasl_result sasl_server_password_result(struct sasl_server *s, bool ok);

/* Answer to SASL_NEED_VERIFIER (SCRAM): the stored verifier of the user as
 * password_scram_parse() gives it, or found=false when the user does not
 * exist or has no verifier (the exchange then continues with made-up values
 * and fails at the proof, so user names cannot be probed). Returns
 * SASL_CONTINUE with the server-first message in challenge_r. A found
 * verifier with iterations < 1, saltlen outside 1..SASL_SCRAM_SALT_MAX or
 * NULL keys is treated like found=false. SASL_MALFORMED when the machine does
 * not wait for a verifier, SASL_FAIL when the random generator fails. */
enum sasl_result sasl_server_set_verifier(struct sasl_server *s, bool found, int iterations,
                                          const unsigned char *salt, size_t saltlen,
                                          const unsigned char stored_key[SASL_SCRAM_KEY_LEN],
                                          const unsigned char server_key[SASL_SCRAM_KEY_LEN],
                                          unsigned char *challenge_r, size_t *challenge_len_r);

/* Base64 (RFC 4648, padding required, no whitespace). Decode: -1 when
 * malformed or longer than outlen; else the decoded length. Encode writes a
 * NUL-terminated string; -1 when it does not fit. */
long sasl_b64_decode(const char *in, size_t inlen, unsigned char *out, size_t outlen);
long sasl_b64_encode(const unsigned char *in, size_t inlen, char *out, size_t outlen);

/* For tests only: makes SCRAM use nonce (printable ASCII without ',', at
 * most 64 characters; anything else is ignored) as the server nonce instead
 * of 24 random bytes, so published example exchanges can be replayed byte for
 * byte. Never call it outside tests. */
void sasl_server_set_test_nonce(struct sasl_server *s, const char *nonce);

#endif
