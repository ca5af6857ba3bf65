/* HTTP Basic authentication (see auth.h). */
#include "node/http/auth.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "node/ips.h"
#include "node/server.h"
#include "node/workers.h"

int http_basic_decode(const char *header, char *user, size_t userlen, char *pass, size_t passlen)
{
    if (!header || strncasecmp(header, "Basic ", 6))
        return -1;
    const char *b64 = header + 6;
    while (*b64 == ' ')
        b64++;
    size_t n = strlen(b64);
    while (n > 0 && b64[n - 1] == ' ')
        n--;
    if (n == 0 || n % 4 || n > 2048)
        return -1;
    unsigned char out[1600];
    int len = EVP_DecodeBlock(out, (const unsigned char *)b64, (int)n);
    if (len < 0)
        return -1;
    /* EVP_DecodeBlock counts padding bytes as zeros: drop them */
    if (n >= 1 && b64[n - 1] == '=')
        len--;
    if (n >= 2 && b64[n - 2] == '=')
        len--;
    if (memchr(out, '\0', (size_t)len))
        return -1;
    unsigned char *colon = memchr(out, ':', (size_t)len);
    if (!colon)
        return -1;
    size_t ul = (size_t)(colon - out), pl = (size_t)len - ul - 1;
    if (ul == 0 || ul >= userlen || pl >= passlen)
        return -1;
    memcpy(user, out, ul);
    user[ul] = '\0';
    memcpy(pass, colon + 1, pl);
    pass[pl] = '\0';
    return 0;
}

struct auth_job {
    struct job job;
    struct http_exchange *x;
    char user[321], pass[1025], realm[64];
    int rc;
    struct dir_account account;
    http_authed then;
    void *arg;
};

static void challenge(struct http_exchange *x, const char *realm)
{
    char hdr[160];
    snprintf(hdr, sizeof(hdr), "WWW-Authenticate: Basic realm=\"%s\", charset=\"UTF-8\"\r\n",
             realm);
    http_respond(x, 401, "text/plain; charset=utf-8", "401 Unauthorized\n", 17, hdr);
}

static void auth_work(struct job *j, struct worker *w)
{
    struct auth_job *a = (struct auth_job *)j;
    char err[256];
    PGconn *c = worker_db(w, err, sizeof(err));
    a->rc = c ? dir_authenticate(c, a->user, a->pass, &a->account) : -2;
    if (a->rc == -2)
        worker_db_check(w);
    explicit_bzero(a->pass, sizeof(a->pass));
}

static void auth_done(struct job *j)
{
    struct auth_job *a = (struct auth_job *)j;
    struct conn *c = http_conn(a->x);
    /* Intrusion prevention (node/ips.h): checked credentials only; a database
     * failure (-2) is nobody's guess at a password. */
    if (a->rc == 0)
        ips_login_ok(conn_service(c), conn_peer_addr(c));
    else if (a->rc == -1)
        ips_login_failed(conn_service(c), conn_peer_addr(c));
    if (a->rc == 0) {
        conn_log(http_conn(a->x), LOG_DEBUG, "authenticated %s", a->account.address);
        a->then(a->x, &a->account, a->arg);
    } else {
        conn_log(http_conn(a->x), LOG_SUMMARY, "authentication failed for '%s'", a->user);
        if (a->rc == -2)
            http_respond_status(a->x, 503);
        else
            challenge(a->x, a->realm);
        free(a->arg);
    }
    free(a);
}

void http_auth_basic(struct http_exchange *x, const char *realm, http_authed then, void *arg)
{
    struct auth_job *a = calloc(1, sizeof(*a));
    if (!a) {
        free(arg);
        http_respond_status(x, 503);
        return;
    }
    snprintf(a->realm, sizeof(a->realm), "%s", realm);
    /* Basic credentials only over TLS: in clear text they would be readable on the wire */
    if (!conn_is_tls(http_conn(x)) ||
        http_basic_decode(http_header(x, "Authorization"), a->user, sizeof(a->user), a->pass,
                          sizeof(a->pass)) < 0) {
        challenge(x, a->realm);
        free(a);
        free(arg);
        return;
    }
    a->x = x;
    a->then = then;
    a->arg = arg;
    a->job.work = auth_work;
    a->job.done = auth_done;
    if (workers_submit(server_workers(), &a->job) < 0) {
        explicit_bzero(a->pass, sizeof(a->pass));
        free(a);
        free(arg);
        http_respond_status(x, 503);
        return;
    }
    http_defer(x);
}
