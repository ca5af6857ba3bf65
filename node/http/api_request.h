/* The pieces of an admin API request that come straight from the client and
 * are parsed before anything else looks at them: the path matched against a
 * route pattern, a query parameter's value, and If-Match. Pure functions on
 * bounded buffers (fuzzed by tests/fuzz/fuzz_api_request.c); node/http/api.c
 * uses them. */
#ifndef FLOE_NODE_HTTP_API_REQUEST_H
#define FLOE_NODE_HTTP_API_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

/* Bytes of a path parameter, NUL included: an address is the longest
 * (DIR_ADDRESS_SIZE, storage/directory.h). */
#define API_PARAM_SIZE 320
/* Path parameters of one pattern. */
#define API_PARAMS_MAX 2
/* Entity tags of one If-Match that are looked at, and the size of one (NUL
 * included); further or longer tags never match anything we give. */
#define API_IF_MATCH_TAGS 8
#define API_ETAG_MAX 40

/* Whether path (a decoded request path after /api/v1) matches pattern, whose
 * segments are literal or "{name}"; a {name} segment matches one non-empty
 * path segment shorter than API_PARAM_SIZE, stored in order in p (at most
 * API_PARAMS_MAX). No other normalisation: "/a/" does not match "/a". */
bool api_path_match(const char *pattern, const char *path, char p[API_PARAMS_MAX][API_PARAM_SIZE]);

/* Percent-decodes a query value s[0..len) (RFC 3986 §2.1; '+' is a space as
 * in HTML forms) into out[outlen] with its NUL. Returns 0, or -1 for a
 * malformed escape, an encoded NUL, or a value that does not fit. */
int api_query_value(const char *s, size_t len, char *out, size_t outlen);

/* A parsed If-Match (RFC 9110 §13.1.1). */
struct api_if_match {
    bool any; /* "*" */
    int n;    /* strong tags kept in tags[] */
    char tags[API_IF_MATCH_TAGS][API_ETAG_MAX];
};

/* Parses an If-Match field value: "*" or a comma-separated list of entity
 * tags (RFC 9110 §8.8.3), each "opaque" or W/"opaque". Weak tags are skipped,
 * as If-Match compares strongly; for earlier clients a bare decimal number is
 * taken as the tag of that account version. Returns 0, or -1 when the value
 * is malformed or holds no strong tag. */
int api_if_match_parse(const char *value, struct api_if_match *m_r);

/* Whether etag (without quotes) satisfies m. */
bool api_if_match_ok(const struct api_if_match *m, const char *etag);

#endif
