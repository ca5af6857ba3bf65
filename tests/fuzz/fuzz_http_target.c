/* libFuzzer harness for what HTTP routing takes from the client: the Host value
 * (normalised and matched against host patterns) and request targets given as a
 * whole (the HTTP/2 :path). The input is "pattern\0host\0target". Checks: a
 * normalised host is lower-case, at most HTTP_HOST_MAX bytes and free of
 * characters that could split a log line or a header; a pattern matches the
 * normalised host exactly when it matches the raw one; a target that is accepted
 * decodes to a path starting with '/' with no ".." segment and no NUL. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "node/http/http_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 3);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = buf[size + 1] = buf[size + 2] = '\0';
    const char *pattern = buf;
    const char *host = pattern + strlen(pattern) + 1;
    if (host > buf + size)
        host = buf + size;
    const char *target = host + strlen(host) + 1;
    if (target > buf + size + 1)
        target = buf + size + 1;

    char norm[HTTP_HOST_MAX + 1];
    http_host_normalise(host, norm);
    size_t n = strlen(norm);
    if (n > HTTP_HOST_MAX)
        abort();
    for (size_t i = 0; i < n; i++)
        if (norm[i] >= 'A' && norm[i] <= 'Z')
            abort();
    if (strpbrk(norm, "\r\n\t /\\\"<>"))
        abort();
    if (http_host_match(pattern, host) != http_host_match(pattern, norm))
        abort();

    struct http_request r;
    memset(&r, 0, sizeof(r));
    http_request_reset(&r);
    size_t tlen = strlen(target);
    if (http_request_set_target(&r, target, tlen) == 0) {
        if (!r.path || r.path[0] != '/' || strstr(r.path, "/../"))
            abort();
        size_t pl = strlen(r.path);
        if (pl >= 3 && !strcmp(r.path + pl - 3, "/.."))
            abort();
    }
    http_request_reset(&r);
    free(buf);
    return 0;
}
