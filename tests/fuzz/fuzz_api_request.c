/* libFuzzer harness for node/http/api_request: the admin API's path matching,
 * query value decoding and If-Match parsing, all fed straight from clients.
 * The first byte picks the function (and for query values the output size);
 * the rest is the client's text. Checks: parameters are non-empty, bounded
 * and hold no '/'; a decoded value fits its buffer and holds no NUL; parsed
 * entity tags are bounded and each one satisfies the If-Match it came from. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "node/http/api_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const patterns[] = {
    "/domains",
    "/domains/{name}",
    "/domains/{name}/admins/{address}",
    "/groups/{address}/members/{member}",
    "/queue/{id}/retry",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 8192)
        return 0;
    int mode = data[0] % 3;
    size_t outlen = (size_t)(data[0] / 3) + 1; /* 1..86 */
    size_t len = size - 1;
    char *text = malloc(len + 1);
    if (!text)
        return 0;
    memcpy(text, data + 1, len);
    text[len] = '\0';
    if (mode == 0) {
        char p[API_PARAMS_MAX][API_PARAM_SIZE];
        for (size_t i = 0; i < sizeof patterns / sizeof patterns[0]; i++) {
            if (!api_path_match(patterns[i], text, p))
                continue;
            int n = 0;
            for (const char *c = patterns[i]; *c; c++)
                n += *c == '{';
            for (int k = 0; k < n; k++) {
                size_t pl = strlen(p[k]);
                if (pl == 0 || pl >= API_PARAM_SIZE || strchr(p[k], '/'))
                    abort();
            }
        }
    } else if (mode == 1) {
        char *out = malloc(outlen);
        if (out && api_query_value(text, len, out, outlen) == 0) {
            size_t ol = strlen(out);
            if (ol >= outlen || ol > len)
                abort();
        }
        free(out);
    } else {
        struct api_if_match m;
        if (api_if_match_parse(text, &m) == 0) {
            if (m.n < 0 || m.n > API_IF_MATCH_TAGS || (!m.any && m.n == 0))
                abort();
            for (int i = 0; i < m.n; i++)
                if (strlen(m.tags[i]) >= API_ETAG_MAX || !api_if_match_ok(&m, m.tags[i]))
                    abort();
        }
    }
    free(text);
    return 0;
}
