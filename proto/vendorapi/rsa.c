/* RSA for the vendor XML API's challenge login (see rsa.h), on OpenSSL 3's
 * EVP_PKEY interface. */
#include "proto/vendorapi/rsa.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdlib.h>
#include <string.h>

struct vapi_rsa {
    EVP_PKEY *pkey;
};

static struct vapi_rsa *wrap(EVP_PKEY *pkey)
{
    if (pkey == NULL)
        return NULL;
    struct vapi_rsa *k = calloc(1, sizeof *k);
    if (k == NULL) {
        EVP_PKEY_free(pkey);
        return NULL;
    }
    k->pkey = pkey;
    return k;
}

struct vapi_rsa *vapi_rsa_generate(unsigned bits)
{
    if (bits < 1024 || bits > 4096)
        return NULL;
    /* EVP_RSA_gen uses the public exponent 65537, which clients assume */
    return wrap(EVP_RSA_gen(bits));
}

struct vapi_rsa *vapi_rsa_from_pem(const char *pem)
{
    if (pem == NULL)
        return NULL;
    BIO *b = BIO_new_mem_buf(pem, -1);
    if (b == NULL)
        return NULL;
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    if (pkey != NULL && EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    return wrap(pkey);
}

char *vapi_rsa_private_pem(const struct vapi_rsa *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL)
        return NULL;
    char *out = NULL;
    if (PEM_write_bio_PrivateKey(b, k->pkey, NULL, NULL, 0, NULL, NULL) == 1) {
        char *data;
        long n = BIO_get_mem_data(b, &data);
        if (n > 0 && (out = malloc((size_t)n + 1)) != NULL) {
            memcpy(out, data, (size_t)n);
            out[n] = '\0';
        }
    }
    BIO_free(b);
    return out;
}

int vapi_rsa_modulus_hex(const struct vapi_rsa *k, char *out, size_t outlen)
{
    BIGNUM *n = NULL;
    if (EVP_PKEY_get_bn_param(k->pkey, OSSL_PKEY_PARAM_RSA_N, &n) != 1)
        return -1;
    char *hex = BN_bn2hex(n);
    BN_free(n);
    if (hex == NULL)
        return -1;
    size_t len = strlen(hex);
    int rc = -1;
    if (len < outlen) {
        for (size_t i = 0; i <= len; i++)
            out[i] = (hex[i] >= 'A' && hex[i] <= 'F') ? (char)(hex[i] - 'A' + 'a') : hex[i];
        rc = (int)len;
    }
    OPENSSL_free(hex);
    return rc;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int vapi_rsa_decrypt_hex(const struct vapi_rsa *k, const char *hex, char *out, size_t outlen,
                         size_t *len_r)
{
    size_t mod = (size_t)EVP_PKEY_get_size(k->pkey);
    size_t hl = hex ? strlen(hex) : 0;
    if (hl == 0 || hl % 2 != 0 || hl / 2 > mod || mod > 1024)
        return -1;
    /* left-pad to the modulus length: a client may drop leading zero bytes */
    unsigned char ct[1024];
    size_t pad = mod - hl / 2;
    memset(ct, 0, pad);
    for (size_t i = 0; i < hl / 2; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        ct[pad + i] = (unsigned char)(hi * 16 + lo);
    }
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k->pkey, NULL);
    if (ctx == NULL)
        return -1;
    unsigned char pt[1024];
    size_t ptlen = sizeof pt;
    int rc = -1;
    if (EVP_PKEY_decrypt_init(ctx) == 1 &&
        EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1) {
        /* OpenSSL 3.2+ would otherwise answer a bad padding with random bytes (implicit
         * rejection); older versions do not know the setting, and fail as we want */
        (void)EVP_PKEY_CTX_ctrl_str(ctx, "rsa_pkcs1_implicit_rejection", "0");
        if (EVP_PKEY_decrypt(ctx, pt, &ptlen, ct, mod) == 1 && ptlen < outlen) {
            memcpy(out, pt, ptlen);
            out[ptlen] = '\0';
            if (len_r != NULL)
                *len_r = ptlen;
            rc = 0;
        }
    }
    OPENSSL_cleanse(pt, sizeof pt);
    EVP_PKEY_CTX_free(ctx);
    /* leave no failure on this thread's error queue for a later TLS call to trip over */
    ERR_clear_error();
    return rc;
}

int vapi_rsa_encrypt_hex(const struct vapi_rsa *k, const char *in, size_t len, char *out,
                         size_t outlen)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k->pkey, NULL);
    if (ctx == NULL)
        return -1;
    unsigned char ct[1024];
    size_t ctlen = sizeof ct;
    int rc = -1;
    if (EVP_PKEY_encrypt_init(ctx) == 1 &&
        EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
        EVP_PKEY_encrypt(ctx, ct, &ctlen, (const unsigned char *)in, len) == 1 &&
        2 * ctlen < outlen) {
        static const char digits[] = "0123456789abcdef";
        for (size_t i = 0; i < ctlen; i++) {
            out[2 * i] = digits[ct[i] >> 4];
            out[2 * i + 1] = digits[ct[i] & 15];
        }
        out[2 * ctlen] = '\0';
        rc = 0;
    }
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

void vapi_rsa_free(struct vapi_rsa **k)
{
    if (k == NULL || *k == NULL)
        return;
    EVP_PKEY_free((*k)->pkey);
    free(*k);
    *k = NULL;
}
