/* AWS Signature Version 4, as S3 checks it (storage/sigv4.h).
 *
 * The signature is HMAC-SHA256 over a "string to sign" that names the
 * algorithm, the time, the scope (day/region/service) and the SHA-256 of a
 * canonical form of the request; the key is derived from the secret by a
 * chain of HMACs over the scope. Everything is built in caller-sized buffers
 * with explicit bounds; a result that does not fit is an error, never
 * truncated, since a truncated canonical request would sign something other
 * than what is sent.
 */
#include "storage/sigv4.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#define ALGORITHM "AWS4-HMAC-SHA256"
/* Longest header name; real ones are far shorter. */
#define HEADER_NAME_MAX 128
/* Holds the signed header list of any request that passes the checks. */
#define SIGNED_LIST_SIZE (SIGV4_MAX_PARAMS * (HEADER_NAME_MAX + 1) + 1)

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

void sigv4_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void sigv4_sha256_hex(const void *data, size_t len, char out[SIGV4_HEX_LEN + 1])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != sizeof md) {
        /* Only on a broken OpenSSL; a hash that matches nothing fails the
         * request at the server rather than signing garbage silently. */
        memset(out, '0', SIGV4_HEX_LEN);
        out[SIGV4_HEX_LEN] = '\0';
        return;
    }
    sigv4_hex(md, sizeof md, out);
}

static bool unreserved(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

int sigv4_uri_encode(const char *in, size_t len, bool encode_slash, char *out, size_t outlen)
{
    static const char digits[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (unreserved(ch) || (ch == '/' && !encode_slash)) {
            if (o + 1 >= outlen)
                return -1;
            out[o++] = (char)ch;
        } else {
            if (o + 3 >= outlen)
                return -1;
            out[o++] = '%';
            out[o++] = digits[ch >> 4];
            out[o++] = digits[ch & 15];
        }
    }
    if (o >= outlen)
        return -1;
    out[o] = '\0';
    return (int)o;
}

/* ---- canonical query ---- */

struct enc_pair {
    char name[3 * SIGV4_MAX_FIELD + 1];
    char value[3 * SIGV4_MAX_FIELD + 1];
};

static int cmp_pair(const void *a, const void *b)
{
    const struct enc_pair *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c != 0 ? c : strcmp(x->value, y->value);
}

/* Appends s to out at *o; false when it does not fit (NUL kept in bounds). */
static bool put(char *out, size_t outlen, size_t *o, const char *s, size_t n)
{
    if (*o + n >= outlen)
        return false;
    memcpy(out + *o, s, n);
    *o += n;
    out[*o] = '\0';
    return true;
}

static bool puts0(char *out, size_t outlen, size_t *o, const char *s)
{
    return put(out, outlen, o, s, strlen(s));
}

int sigv4_canonical_query(const struct sigv4_param *q, size_t n, char *out, size_t outlen)
{
    if (outlen == 0 || n > SIGV4_MAX_PARAMS || (n > 0 && q == NULL))
        return -1;
    out[0] = '\0';
    if (n == 0)
        return 0;
    /* The encoded pairs are sorted (by encoded bytes, as AWS specifies), so
     * they are encoded first; about 100 KiB at most, hence the heap. */
    struct enc_pair *pairs = calloc(n, sizeof *pairs);
    if (pairs == NULL)
        return -1;
    int rc = -1;
    for (size_t i = 0; i < n; i++) {
        const char *name = q[i].name, *value = q[i].value ? q[i].value : "";
        if (name == NULL || name[0] == '\0')
            goto done;
        size_t nl = strnlen(name, SIGV4_MAX_FIELD + 1), vl = strnlen(value, SIGV4_MAX_FIELD + 1);
        if (nl > SIGV4_MAX_FIELD || vl > SIGV4_MAX_FIELD)
            goto done;
        if (sigv4_uri_encode(name, nl, true, pairs[i].name, sizeof pairs[i].name) < 0 ||
            sigv4_uri_encode(value, vl, true, pairs[i].value, sizeof pairs[i].value) < 0)
            goto done;
    }
    qsort(pairs, n, sizeof *pairs, cmp_pair);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if ((i > 0 && !put(out, outlen, &o, "&", 1)) || !puts0(out, outlen, &o, pairs[i].name) ||
            !put(out, outlen, &o, "=", 1) || !puts0(out, outlen, &o, pairs[i].value))
            goto done;
    }
    rc = (int)o;
done:
    free(pairs);
    if (rc < 0)
        out[0] = '\0';
    return rc;
}

/* ---- canonical headers ---- */

struct hdr_ref {
    char name[HEADER_NAME_MAX + 1]; /* lower-cased */
    size_t index;                   /* position given, keeps repeated names in order */
};

static int cmp_hdr(const void *a, const void *b)
{
    const struct hdr_ref *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c != 0)
        return c;
    return x->index < y->index ? -1 : (x->index > y->index ? 1 : 0);
}

/* Appends a header value trimmed, with each run of blanks made one space. */
static bool put_trimmed(char *out, size_t outlen, size_t *o, const char *v)
{
    size_t n = strnlen(v, SIGV4_MAX_FIELD + 1);
    if (n > SIGV4_MAX_FIELD)
        return false;
    size_t b = 0, e = n;
    while (b < e && (v[b] == ' ' || v[b] == '\t'))
        b++;
    while (e > b && (v[e - 1] == ' ' || v[e - 1] == '\t'))
        e--;
    bool blank = false;
    for (size_t i = b; i < e; i++) {
        char ch = v[i];
        if (ch == '\r' || ch == '\n')
            return false; /* would forge another header line */
        if (ch == ' ' || ch == '\t') {
            blank = true;
            continue;
        }
        if (blank && !put(out, outlen, o, " ", 1))
            return false;
        blank = false;
        if (!put(out, outlen, o, &ch, 1))
            return false;
    }
    return true;
}

int sigv4_canonical_request(const struct sigv4_request *req, char *out, size_t outlen,
                            char *signed_r, size_t signedlen)
{
    if (req == NULL || out == NULL || outlen == 0 || req->method == NULL ||
        req->method[0] == '\0' || req->path == NULL || req->path[0] != '/' ||
        req->payload_sha256 == NULL || req->nheaders > SIGV4_MAX_PARAMS ||
        (req->nheaders > 0 && req->headers == NULL))
        return -1;
    out[0] = '\0';
    struct hdr_ref h[SIGV4_MAX_PARAMS];
    for (size_t i = 0; i < req->nheaders; i++) {
        const char *name = req->headers[i].name;
        if (name == NULL || name[0] == '\0' || req->headers[i].value == NULL)
            return -1;
        size_t nl = strnlen(name, HEADER_NAME_MAX + 1);
        if (nl > HEADER_NAME_MAX)
            return -1;
        for (size_t k = 0; k < nl; k++) {
            char ch = name[k];
            /* field names are tokens (RFC 9110 §5.1, §5.6.2): no blanks or colons */
            if (ch <= ' ' || ch == ':' || (unsigned char)ch >= 0x7f)
                return -1;
            h[i].name[k] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
        }
        h[i].name[nl] = '\0';
        h[i].index = i;
    }
    if (req->nheaders > 1)
        qsort(h, req->nheaders, sizeof h[0], cmp_hdr);

    size_t o = 0;
    if (!puts0(out, outlen, &o, req->method) || !put(out, outlen, &o, "\n", 1) ||
        !puts0(out, outlen, &o, req->path) || !put(out, outlen, &o, "\n", 1))
        return -1;
    int ql = sigv4_canonical_query(req->query, req->nquery, out + o, outlen - o);
    if (ql < 0)
        return -1;
    o += (size_t)ql;
    if (!put(out, outlen, &o, "\n", 1))
        return -1;

    /* Signed header list, built alongside. */
    char sig[SIGNED_LIST_SIZE];
    size_t so = 0;
    sig[0] = '\0';
    for (size_t i = 0; i < req->nheaders; i++) {
        bool repeat = i > 0 && strcmp(h[i].name, h[i - 1].name) == 0;
        if (repeat) {
            if (!put(out, outlen, &o, ",", 1))
                return -1;
        } else {
            if (i > 0 && (!put(out, outlen, &o, "\n", 1) || !put(sig, sizeof sig, &so, ";", 1)))
                return -1;
            if (!puts0(out, outlen, &o, h[i].name) || !put(out, outlen, &o, ":", 1) ||
                !puts0(sig, sizeof sig, &so, h[i].name))
                return -1;
        }
        if (!put_trimmed(out, outlen, &o, req->headers[h[i].index].value))
            return -1;
    }
    if (req->nheaders > 0 && !put(out, outlen, &o, "\n", 1))
        return -1;
    if (!put(out, outlen, &o, "\n", 1) || !puts0(out, outlen, &o, sig) ||
        !put(out, outlen, &o, "\n", 1) || !puts0(out, outlen, &o, req->payload_sha256))
        return -1;
    if (signed_r != NULL) {
        if (signedlen <= so)
            return -1;
        memcpy(signed_r, sig, so + 1);
    }
    return (int)o;
}

/* ---- signing ---- */

static bool hmac(const void *key, size_t keylen, const char *data, unsigned char out[32])
{
    unsigned int len = 0;
    return HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)data, strlen(data), out,
                &len) != NULL &&
           len == 32;
}

/* Scope parts become part of signed strings: keep them to plain tokens. */
static bool scope_part_ok(const char *s, size_t max)
{
    if (s == NULL || s[0] == '\0')
        return false;
    size_t n = strnlen(s, max + 1);
    if (n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!(unreserved(ch)))
            return false;
    }
    return true;
}

static bool date8_ok(const char *d)
{
    if (d == NULL || strlen(d) != 8)
        return false;
    for (size_t i = 0; i < 8; i++)
        if (d[i] < '0' || d[i] > '9')
            return false;
    return true;
}

static bool amz_date_ok(const char *d)
{
    if (d == NULL || strlen(d) != SIGV4_DATE_SIZE - 1 || d[8] != 'T' || d[15] != 'Z')
        return false;
    for (size_t i = 0; i < 15; i++)
        if (i != 8 && (d[i] < '0' || d[i] > '9'))
            return false;
    return true;
}

int sigv4_signing_key(const char *secret_key, const char *date8, const char *region,
                      const char *service, unsigned char key_r[32])
{
    if (secret_key == NULL || !date8_ok(date8) || !scope_part_ok(region, 64) ||
        !scope_part_ok(service, 64))
        return -1;
    size_t sl = strnlen(secret_key, 1024);
    if (sl == 0 || sl >= 1024)
        return -1;
    unsigned char secret[4 + 1024];
    memcpy(secret, "AWS4", 4);
    memcpy(secret + 4, secret_key, sl);
    unsigned char k1[32], k2[32], k3[32];
    bool ok = hmac(secret, 4 + sl, date8, k1) && hmac(k1, sizeof k1, region, k2) &&
              hmac(k2, sizeof k2, service, k3) && hmac(k3, sizeof k3, "aws4_request", key_r);
    OPENSSL_cleanse(secret, sizeof secret);
    OPENSSL_cleanse(k1, sizeof k1);
    OPENSSL_cleanse(k2, sizeof k2);
    OPENSSL_cleanse(k3, sizeof k3);
    return ok ? 0 : -1;
}

int sigv4_string_to_sign(const char *canonical_request, const char *amz_date, const char *region,
                         const char *service, char *out, size_t outlen)
{
    if (canonical_request == NULL || !amz_date_ok(amz_date) || !scope_part_ok(region, 64) ||
        !scope_part_ok(service, 64) || out == NULL)
        return -1;
    char hash[SIGV4_HEX_LEN + 1];
    sigv4_sha256_hex(canonical_request, strlen(canonical_request), hash);
    int n = snprintf(out, outlen, ALGORITHM "\n%s\n%.8s/%s/%s/aws4_request\n%s", amz_date, amz_date,
                     region, service, hash);
    if (n < 0 || (size_t)n >= outlen)
        return -1;
    return n;
}

int sigv4_authorization(const struct sigv4_request *req, const struct sigv4_credentials *cred,
                        const char *amz_date, char *out, size_t outlen,
                        char signature_r[SIGV4_HEX_LEN + 1], char *err, size_t errlen)
{
    if (cred == NULL || cred->access_key == NULL || cred->access_key[0] == '\0' ||
        cred->secret_key == NULL || out == NULL) {
        set_err(err, errlen, "signing: no credentials");
        return -1;
    }
    if (!amz_date_ok(amz_date)) {
        set_err(err, errlen, "signing: malformed date");
        return -1;
    }
    if (!scope_part_ok(cred->region, 64) || !scope_part_ok(cred->service, 64)) {
        set_err(err, errlen, "signing: region and service must be plain names");
        return -1;
    }
    /* Access keys are plain tokens; anything else would break the header. */
    for (const char *p = cred->access_key; *p; p++) {
        if (!unreserved((unsigned char)*p) || p - cred->access_key > 256) {
            set_err(err, errlen, "signing: malformed access key");
            return -1;
        }
    }
    /* Heap: the canonical request may reach tens of KiB. */
    size_t creqlen = 64 * 1024;
    char *creq = malloc(creqlen);
    if (creq == NULL) {
        set_err(err, errlen, "signing: out of memory");
        return -1;
    }
    char signed_headers[SIGNED_LIST_SIZE];
    int rc = -1;
    if (sigv4_canonical_request(req, creq, creqlen, signed_headers, sizeof signed_headers) < 0) {
        set_err(err, errlen, "signing: request too large or malformed");
        goto done;
    }
    char sts[512];
    if (sigv4_string_to_sign(creq, amz_date, cred->region, cred->service, sts, sizeof sts) < 0) {
        set_err(err, errlen, "signing: cannot build the string to sign");
        goto done;
    }
    char date8[9];
    memcpy(date8, amz_date, 8);
    date8[8] = '\0';
    unsigned char key[32], sig[32];
    if (sigv4_signing_key(cred->secret_key, date8, cred->region, cred->service, key) != 0 ||
        !hmac(key, sizeof key, sts, sig)) {
        OPENSSL_cleanse(key, sizeof key);
        set_err(err, errlen, "signing: HMAC failed");
        goto done;
    }
    OPENSSL_cleanse(key, sizeof key);
    char hex[SIGV4_HEX_LEN + 1];
    sigv4_hex(sig, sizeof sig, hex);
    int n =
        snprintf(out, outlen,
                 ALGORITHM " Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, Signature=%s",
                 cred->access_key, date8, cred->region, cred->service, signed_headers, hex);
    if (n < 0 || (size_t)n >= outlen) {
        set_err(err, errlen, "signing: authorization buffer too small");
        goto done;
    }
    if (signature_r != NULL)
        memcpy(signature_r, hex, sizeof hex);
    rc = 0;
done:
    free(creq);
    return rc;
}

int sigv4_amz_date(time_t t, char out[SIGV4_DATE_SIZE])
{
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
        return -1;
    int n = snprintf(out, SIGV4_DATE_SIZE, "%04d%02d%02dT%02d%02d%02dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return (n == SIGV4_DATE_SIZE - 1) ? 0 : -1;
}
