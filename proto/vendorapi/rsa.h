/* RSA for the challenge login of the vendor-compatible admin XML API
 * (docs/VENDORAPI.md): getauthchallenge hands out the public modulus (as
 * lower-case hex, "hashid"; the exponent is 65537 by convention) and a
 * timestamp; the client encrypts "p=<password>&t=<timestamp>" with RSA
 * PKCS#1 v1.5 (RFC 8017 §7.2) and sends the ciphertext as hex, "digest".
 *
 * Pure code on OpenSSL's libcrypto: key generation, PEM in and out, the
 * modulus, and decryption. No I/O. */
#ifndef FLOE_PROTO_VENDORAPI_RSA_H
#define FLOE_PROTO_VENDORAPI_RSA_H

#include <stddef.h>

/* The vendor's server hands out 2048-bit moduli (512 hex digits). */
#define VAPI_RSA_BITS 2048
/* Hex digits of a modulus of VAPI_RSA_BITS, and its buffer. */
#define VAPI_RSA_HEX_LEN (VAPI_RSA_BITS / 4)
#define VAPI_RSA_HEX_SIZE (VAPI_RSA_HEX_LEN + 1)

struct vapi_rsa;

/* A new key pair of bits (1024..4096) with public exponent 65537. NULL on
 * failure. Slow (tens to hundreds of milliseconds): not for an event loop. */
struct vapi_rsa *vapi_rsa_generate(unsigned bits);

/* A key from its PKCS#8 PEM text (as vapi_rsa_private_pem() writes it);
 * NULL when it is not an RSA private key. */
struct vapi_rsa *vapi_rsa_from_pem(const char *pem);

/* The private key as PKCS#8 PEM, malloc'd and NUL-terminated; NULL on
 * failure. */
char *vapi_rsa_private_pem(const struct vapi_rsa *k);

/* The modulus in lower-case hex, without leading zeros, into out[outlen].
 * Returns its length, or -1 when it does not fit. */
int vapi_rsa_modulus_hex(const struct vapi_rsa *k, char *out, size_t outlen);

/* Decrypts a PKCS#1 v1.5 ciphertext given as hex (either case; exactly the
 * modulus's length in bytes, or shorter when the client dropped leading
 * zeros) into out[outlen], NUL-terminated, its length in *len_r. Returns 0,
 * or -1 when the hex is malformed, the padding is wrong or out is too small.
 * (With OpenSSL 3.2's implicit rejection a wrong ciphertext may instead come
 * out as random bytes: callers must check the plaintext's form, as the
 * login does with vapi_digest_split() and the timestamp.) */
int vapi_rsa_decrypt_hex(const struct vapi_rsa *k, const char *hex, char *out, size_t outlen,
                         size_t *len_r);

/* Encrypts in[0..len) with the public key, PKCS#1 v1.5, as lower-case hex
 * into out[outlen] (what a client does; for tests and tools). Returns 0 or
 * -1. */
int vapi_rsa_encrypt_hex(const struct vapi_rsa *k, const char *in, size_t len, char *out,
                         size_t outlen);

void vapi_rsa_free(struct vapi_rsa **k);

#endif
