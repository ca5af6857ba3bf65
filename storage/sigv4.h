/* AWS Signature Version 4 (header form) for S3 requests.
 *
 * Pure functions: no I/O, no clock, no allocation. The caller supplies the
 * request as it will be sent (method, encoded path, query parameters, headers
 * to sign, payload hash) and the time stamp, and gets the Authorization
 * header value back. Checked against the examples AWS publishes (the
 * Signature Version 4 test suite and the S3 API reference's worked examples)
 * in tests/unit/test_sigv4.c.
 *
 * S3 rules, which differ from other AWS services: the canonical URI is the
 * path exactly as sent (S3 does not normalise it or encode it twice), and
 * every request carries x-amz-content-sha256.
 */
#ifndef FLOE_STORAGE_SIGV4_H
#define FLOE_STORAGE_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* Lowercase hex SHA-256, without the NUL. */
#define SIGV4_HEX_LEN 64
/* "YYYYMMDDTHHMMSSZ" plus NUL. */
#define SIGV4_DATE_SIZE 17
/* Most query parameters or headers one request may carry. */
#define SIGV4_MAX_PARAMS 16
/* Longest query parameter name or value (before encoding), and longest
 * header value; header names are limited to 128 characters. */
#define SIGV4_MAX_FIELD 1024
/* Payload hash of a body that is not signed (allowed by S3 over TLS). */
#define SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"

/* A query parameter or a header: name and value as they are, not encoded. */
struct sigv4_param {
    const char *name;
    const char *value;
};

struct sigv4_request {
    const char *method; /* "GET", "PUT", ... */
    /* The path as it goes on the request line, already URI-encoded (see
     * sigv4_uri_encode with encode_slash false); "/" at least. */
    const char *path;
    const struct sigv4_param *query; /* any order; value "" for "?uploads" */
    size_t nquery;
    /* Headers to sign, any order, names in any case. Must include host and
     * x-amz-date, and for S3 x-amz-content-sha256; the request must send
     * exactly these values. */
    const struct sigv4_param *headers;
    size_t nheaders;
    /* Lowercase hex SHA-256 of the body, or SIGV4_UNSIGNED_PAYLOAD. */
    const char *payload_sha256;
};

struct sigv4_credentials {
    const char *access_key;
    const char *secret_key;
    const char *region;  /* "us-east-1" */
    const char *service; /* "s3" */
};

/* URI-encodes len bytes of in as SigV4 requires (RFC 3986 unreserved
 * characters A-Z a-z 0-9 - . _ ~ kept, every other byte %XX in upper case);
 * '/' is kept unless encode_slash (object key paths keep it, query names and
 * values do not). Writes a NUL-terminated string to out.
 * Returns the length written (without NUL), or -1 when out is too small. */
int sigv4_uri_encode(const char *in, size_t len, bool encode_slash, char *out, size_t outlen);

/* The canonical query string: every name and value encoded, pairs sorted by
 * name then value, joined by '&', "name=" for empty values. The same string
 * serves as the query of the URL. Returns its length, or -1 when out is too
 * small or a parameter is too long or there are too many. */
int sigv4_canonical_query(const struct sigv4_param *q, size_t n, char *out, size_t outlen);

/* The canonical request (method, path, canonical query, canonical headers,
 * signed header list, payload hash, separated by newlines). Header names are
 * lower-cased and sorted, values trimmed with inner runs of blanks made one
 * space; repeated names are joined with commas in the order given. When
 * signed_r is not NULL the signed header list ("host;x-amz-date") is written
 * there. Returns the length of out, or -1 when a buffer is too small or the
 * request is malformed (no method or path, too many fields, a header value
 * with a line break). */
int sigv4_canonical_request(const struct sigv4_request *req, char *out, size_t outlen,
                            char *signed_r, size_t signedlen);

/* The signing key HMAC(HMAC(HMAC(HMAC("AWS4" secret, date), region), service),
 * "aws4_request") for the day date8 ("YYYYMMDD"). Returns 0, -1 on bad input
 * or a crypto failure. */
int sigv4_signing_key(const char *secret_key, const char *date8, const char *region,
                      const char *service, unsigned char key_r[32]);

/* The string to sign for a canonical request made at amz_date
 * ("YYYYMMDDTHHMMSSZ"). Returns its length or -1. */
int sigv4_string_to_sign(const char *canonical_request, const char *amz_date, const char *region,
                         const char *service, char *out, size_t outlen);

/* Signs req and writes the Authorization header value
 * "AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/<service>/aws4_request,
 * SignedHeaders=<list>, Signature=<hex>" to out. When signature_r is not NULL
 * the bare signature (SIGV4_HEX_LEN hex digits + NUL) is also written there.
 * Returns 0, or -1 with the reason in err. */
int sigv4_authorization(const struct sigv4_request *req, const struct sigv4_credentials *cred,
                        const char *amz_date, char *out, size_t outlen,
                        char signature_r[SIGV4_HEX_LEN + 1], char *err, size_t errlen);

/* Formats t as the x-amz-date value "YYYYMMDDTHHMMSSZ" (UTC). Returns 0, -1
 * when t cannot be represented. */
int sigv4_amz_date(time_t t, char out[SIGV4_DATE_SIZE]);

/* Lowercase hex SHA-256 of len bytes. */
void sigv4_sha256_hex(const void *data, size_t len, char out[SIGV4_HEX_LEN + 1]);

/* Lowercase hex of n bytes; out holds 2n + 1. */
void sigv4_hex(const unsigned char *in, size_t n, char *out);

#endif
