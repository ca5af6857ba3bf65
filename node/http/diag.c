/* Diagnostic routes of an HTTP service, answered only with [service X]
 * diagnostics = yes (off by default; the integration tests and ops/bench turn it
 * on). They exercise the streaming paths of the HTTP core end to end with real
 * clients:
 *   GET  /_floe/hello        a small fixed text (the benchmark's static route)
 *   POST /_floe/echo         answers the request body as it arrives, chunked
 *                            (HTTP/1.1) or in DATA frames (HTTP/2); when the
 *                            client does not read the answer, reading its body
 *                            pauses (backpressure both ways)
 *   POST /_floe/sha256       reads a body of up to 1 GiB in pieces and answers
 *                            {"bytes":N,"sha256":"..."}
 *   GET  /_floe/bytes?n=N    N bytes (at most 1 GiB) of a repeating pattern, in
 *                            pieces as the client takes them */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/http/http_internal.h"

#define DIAG_MAX_BODY (1024ull * 1024 * 1024)

static bool enabled(struct http_exchange *x)
{
    if (x->site->diagnostics)
        return true;
    http_respond_status(x, 404);
    return false;
}

static void hello(struct http_exchange *x)
{
    if (enabled(x))
        http_respond(x, 200, "text/plain; charset=utf-8", "hello from floe\n", 16, NULL);
}

/* ---- echo ---- */

static void echo_drained(struct http_exchange *x, void *arg)
{
    if (!http_gone(x))
        http_body_resume(x);
}

static void echo_data(struct http_exchange *x, const char *data, size_t len, void *arg)
{
    if (http_write(x, data, len) == 1)
        http_body_pause(x); /* the client is not reading: stop reading it */
}

static void echo_end(struct http_exchange *x, int error, void *arg)
{
    if (error > 0 && !x->started)
        http_respond_status(x, error);
    else
        http_end(x); /* after an error mid-way the body is short: the client sees it cut */
}

static void echo(struct http_exchange *x)
{
    if (!enabled(x))
        return;
    if (strcmp(http_request(x)->method, "POST") && strcmp(http_request(x)->method, "PUT")) {
        http_respond_status(x, 405);
        return;
    }
    const char *ctype = http_header(x, "Content-Type");
    if (http_respond_start(x, 200,
                           ctype && !strpbrk(ctype, "\r\n") ? ctype : "application/octet-stream",
                           http_request(x)->content_length, NULL) < 0) {
        http_end(x);
        return;
    }
    http_on_drain(x, echo_drained, NULL);
    http_body_read(x, echo_data, echo_end, NULL);
}

/* ---- sha256 ---- */

struct digest {
    EVP_MD_CTX *md;
    unsigned long long bytes;
};

static void digest_data(struct http_exchange *x, const char *data, size_t len, void *arg)
{
    struct digest *d = arg;
    EVP_DigestUpdate(d->md, data, len);
    d->bytes += len;
}

static void digest_end(struct http_exchange *x, int error, void *arg)
{
    struct digest *d = arg;
    unsigned char md[32];
    unsigned mdlen = 0;
    EVP_DigestFinal_ex(d->md, md, &mdlen);
    EVP_MD_CTX_free(d->md);
    unsigned long long bytes = d->bytes;
    free(d);
    if (error) {
        http_respond_status(x, error > 0 ? error : 400);
        return;
    }
    char body[160];
    int n = snprintf(body, sizeof(body), "{\"bytes\":%llu,\"sha256\":\"", bytes);
    for (unsigned i = 0; i < mdlen; i++)
        n += snprintf(body + n, sizeof(body) - (size_t)n, "%02x", md[i]);
    n += snprintf(body + n, sizeof(body) - (size_t)n, "\"}\n");
    http_respond(x, 200, "application/json", body, (size_t)n, NULL);
}

static void sha256(struct http_exchange *x)
{
    if (!enabled(x))
        return;
    struct digest *d = calloc(1, sizeof(*d));
    if (!d || !(d->md = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(d->md, EVP_sha256(), NULL)) {
        if (d)
            EVP_MD_CTX_free(d->md);
        free(d);
        http_respond_status(x, 503);
        return;
    }
    http_body_read(x, digest_data, digest_end, d);
}

/* ---- bytes ---- */

struct gen {
    unsigned long long left;
};

static void gen_pump(struct http_exchange *x, void *arg)
{
    struct gen *g = arg;
    char buf[16384];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (char)('a' + i % 26);
    while (g->left > 0 && !http_gone(x)) {
        size_t n = g->left < sizeof(buf) ? (size_t)g->left : sizeof(buf);
        g->left -= n;
        int r = http_write(x, buf, n);
        if (r < 0)
            break;
        if (r == 1 && g->left > 0)
            return;
    }
    free(g);
    http_end(x);
}

static void bytes(struct http_exchange *x)
{
    if (!enabled(x))
        return;
    const char *q = http_request(x)->query;
    unsigned long long n = q && !strncmp(q, "n=", 2) ? strtoull(q + 2, NULL, 10) : 0;
    struct gen *g = malloc(sizeof(*g));
    if (n > DIAG_MAX_BODY || !g) {
        free(g);
        http_respond_status(x, n > DIAG_MAX_BODY ? 400 : 503);
        return;
    }
    g->left = n;
    if (http_respond_start(x, 200, "application/octet-stream", (long long)n, NULL) < 0) {
        free(g);
        http_end(x);
        return;
    }
    http_on_drain(x, gen_pump, g);
    gen_pump(x, g);
}

void http_diag_init(const char *service)
{
    const struct http_route_opts stream = {.flags = HTTP_ROUTE_STREAM_BODY,
                                           .max_body = DIAG_MAX_BODY};
    http_route(service, "/_floe/hello", hello);
    http_route_ex(service, "/_floe/echo", echo, &stream);
    http_route_ex(service, "/_floe/sha256", sha256, &stream);
    http_route(service, "/_floe/bytes", bytes);
}
