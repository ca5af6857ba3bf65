/* Outbound delivery threads (delivery.h).
 *
 * Per batch: a domain of ours is delivered into the recipients' mailboxes
 * (storage, no network); otherwise the destination is the smarthost, or the
 * domain's MX hosts in preference order (RFC 5321 §5.1), each of their
 * addresses in turn until one answers. A "Secure Destination" matching the
 * domain or the MX host makes TLS mandatory with its certificate checks, and
 * a destination that cannot meet it fails the recipients permanently (the
 * message is returned, as the policy demands). */
#include "node/smtp/delivery.h"

#include <arpa/inet.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cluster/bus.h"
#include "node/config.h"
#include "node/log.h"
#include "node/server.h"
#include "node/smtp/client.h"
#include "node/smtp/dns.h"
#include "storage/aliases.h"
#include "storage/blob.h"
#include "storage/db.h"
#include "storage/directory.h"
#include "storage/folders.h"
#include "storage/ingest.h"
#include "storage/mailstore.h"
#include "storage/queue.h"

/* Seconds an idle thread sleeps before looking for due retries again. */
#define DELIVERY_POLL_S 5
/* Seconds between runs of the notification builder on a thread. */
#define DELIVERY_NOTICE_S 10

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static atomic_bool stopping;
static unsigned kicks;
static pthread_t *threads;
static unsigned nthreads;
static struct blob_store *blobs;
static char *db_url;

static void dlog(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void dlog(enum log_level level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_write("delivery", level, NULL, NULL, "%s", msg);
}

void delivery_kick(void)
{
    pthread_mutex_lock(&lock);
    kicks++;
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
}

/* Sleeps up to seconds, or until kicked or stopping. */
static void idle(unsigned seconds)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += seconds;
    pthread_mutex_lock(&lock);
    while (!kicks && !atomic_load(&stopping))
        if (pthread_cond_timedwait(&wake, &lock, &until) != 0)
            break;
    if (kicks)
        kicks--;
    pthread_mutex_unlock(&lock);
}

/* ---- local delivery ---- */

/* Delivers the batch into the mailboxes of our own domain. */
static void deliver_local(PGconn *c, const struct queue_batch *b, struct queue_outcome *o)
{
    for (size_t i = 0; i < b->n; i++) {
        struct dir_target t;
        char err[256];
        int rc = dir_resolve(c, b->rcpts[i].address, &t, err, sizeof(err));
        if (rc == DIR_ENOTFOUND ||
            (rc == 0 && (t.account.disabled || !strcmp(t.account.kind, "group")))) {
            o[i] = (struct queue_outcome){QUEUE_PERMFAIL, "5.1.1", "550 5.1.1 User unknown", NULL};
            continue;
        }
        struct folder f;
        if (rc != 0 || folders_find_role(c, t.account.id, FOLDER_ROLE_INBOX, &f) != 0) {
            o[i] = (struct queue_outcome){QUEUE_TEMPFAIL, "4.3.0", "451 4.3.0 lookup failed", NULL};
            continue;
        }
        /* the stored message is read again so its metadata is computed by the
         * same ingest path as any other (the blob itself is deduplicated) */
        struct blob_reader *r = NULL;
        struct mail_ingest *in = NULL;
        struct mail_ingested m;
        bool ok =
            blob_reader_open(blobs, c, b->blob_id, 0, UINT64_MAX, &r, err, sizeof(err)) == 0 &&
            (in = mail_ingest_new(blobs, c, err, sizeof(err))) != NULL;
        if (ok) {
            char buf[65536];
            ssize_t n;
            char rp[SMTP_ADDRESS_MAX + 32];
            snprintf(rp, sizeof(rp), "Return-Path: <%s>\r\n", b->sender);
            ok = mail_ingest_write(in, rp, strlen(rp)) == 0;
            while (ok && (n = blob_reader_read(r, buf, sizeof(buf))) > 0)
                ok = mail_ingest_write(in, buf, (size_t)n) == 0;
            ok = ok && n == 0;
        }
        blob_reader_close(&r);
        if (!ok || mail_ingest_finish(&in, &m, err, sizeof(err)) != 0) {
            mail_ingest_abort(&in);
            o[i] = (struct queue_outcome){QUEUE_TEMPFAIL, "4.3.0",
                                          "451 4.3.0 cannot read the message", NULL};
            continue;
        }
        struct mail_new nm = {.blob_id = m.blob_id, .size = m.size, .meta = &m.meta};
        uint32_t uid;
        long long modseq;
        rc = mailstore_append(c, t.account.id, f.id, &nm, true, &uid, &modseq, err, sizeof(err));
        mail_ingested_free(&m);
        if (rc == MAIL_EQUOTA)
            o[i] = (struct queue_outcome){QUEUE_TEMPFAIL, "4.2.2", "452 4.2.2 Mailbox full", NULL};
        else if (rc != 0)
            o[i] = (struct queue_outcome){QUEUE_TEMPFAIL, "4.3.0", "451 4.3.0 cannot store", NULL};
        else {
            o[i] = (struct queue_outcome){QUEUE_DELIVERED, "2.0.0", "250 2.0.0 delivered", NULL};
            bus_publish_mailbox(t.account.id, f.id, modseq, 1);
        }
    }
}

/* ---- remote delivery ---- */

struct reader_ctx {
    struct blob_reader *r;
};

static ssize_t read_blob(void *ctx, char *buf, size_t n)
{
    struct reader_ctx *rc = ctx;
    return blob_reader_read(rc->r, buf, n);
}

static const struct secure_destination *secure_match(const struct smtp_config *sm, const char *name)
{
    for (size_t i = 0; i < sm->nsecure; i++)
        if (fnmatch(sm->secure[i].host, name, FNM_CASEFOLD) == 0)
            return &sm->secure[i];
    return NULL;
}

/* One SMTP attempt at one address; the recipients carry the answers. */
static int attempt(PGconn *c, const struct smtp_config *sm, const struct queue_batch *b,
                   const struct sockaddr *addr, const char *host,
                   const struct secure_destination *sd, bool smarthost, struct smtp_client_rcpt *rc,
                   struct smtp_client_result *res)
{
    char err[256];
    struct reader_ctx rctx = {0};
    if (blob_reader_open(blobs, c, b->blob_id, 0, UINT64_MAX, &rctx.r, err, sizeof(err)) != 0) {
        dlog(LOG_SUMMARY, "queue %lld: cannot read the message: %s", b->message_id, err);
        return -1;
    }
    struct smtp_client_params p = {
        .addr = addr,
        .host = host,
        .helo = sm->hostname,
        .connect_timeout_ms = sm->connect_timeout * 1000,
        .command_timeout_ms = sm->command_timeout * 1000,
        .tls = sd || (smarthost && *sm->smarthost_user) ? SMTP_CLIENT_TLS_REQUIRED
                                                        : SMTP_CLIENT_TLS_OPPORTUNISTIC,
        .tls_verify = sd != NULL,
        .pin_subject = sd ? sd->subject : NULL,
        .pin_issuer = sd ? sd->issuer : NULL,
        .pin_fingerprint = sd ? sd->fingerprint : NULL,
        .auth_user = smarthost && *sm->smarthost_user ? sm->smarthost_user : NULL,
        .auth_password = smarthost && *sm->smarthost_user ? sm->smarthost_password : NULL,
        .sender = b->sender,
        .size = b->size,
        .body = b->body == SMTP_BODY_8BITMIME ? SMTP_CLIENT_BODY_8BITMIME : SMTP_CLIENT_BODY_NONE,
        .smtputf8 = b->smtputf8,
        .ret = b->ret == SMTP_RET_FULL   ? SMTP_CLIENT_RET_FULL
               : b->ret == SMTP_RET_HDRS ? SMTP_CLIENT_RET_HDRS
                                         : SMTP_CLIENT_RET_NONE,
        .envid = b->envid[0] ? b->envid : NULL,
        .read = read_blob,
        .read_ctx = &rctx,
    };
    for (size_t i = 0; i < b->n; i++)
        rc[i] = (struct smtp_client_rcpt){.addr = b->rcpts[i].address,
                                          .notify = b->rcpts[i].notify,
                                          .orcpt = b->rcpts[i].orcpt[0] ? b->rcpts[i].orcpt : NULL};
    smtp_client_deliver(&p, rc, b->n, res);
    blob_reader_close(&rctx.r);
    return 0;
}

/* Whether to try the next address: the server never got to answer. */
static bool try_next(const struct smtp_client_result *res)
{
    return res->failure == SMTP_CLIENT_FAIL_CONNECT || res->failure == SMTP_CLIENT_FAIL_NETWORK ||
           res->failure == SMTP_CLIENT_FAIL_SESSION || res->failure == SMTP_CLIENT_FAIL_PROTOCOL;
}

static void all(const struct queue_batch *b, struct queue_outcome *o, enum queue_result r,
                const char *status, const char *reply)
{
    for (size_t i = 0; i < b->n; i++)
        o[i] = (struct queue_outcome){r, status, reply, NULL};
}

/* Splits "host[:port]"; an IPv6 literal in brackets. */
static void split_hostport(const char *s, unsigned defport, char *host, size_t hostlen,
                           unsigned *port)
{
    *port = defport;
    const char *colon = strrchr(s, ':');
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        size_t n = close ? (size_t)(close - s - 1) : strlen(s + 1);
        snprintf(host, hostlen, "%.*s", (int)n, s + 1);
        if (close && close[1] == ':')
            *port = (unsigned)atoi(close + 2);
        return;
    }
    if (colon && strchr(s, ':') == colon) {
        snprintf(host, hostlen, "%.*s", (int)(colon - s), s);
        *port = (unsigned)atoi(colon + 1);
        return;
    }
    snprintf(host, hostlen, "%s", s);
}

static void set_port(struct sockaddr_storage *a, unsigned port)
{
    if (a->ss_family == AF_INET)
        ((struct sockaddr_in *)a)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)a)->sin6_port = htons((uint16_t)port);
}

static void deliver_remote(PGconn *c, struct dns_resolver *dns, const struct smtp_config *sm,
                           const struct queue_batch *b, struct queue_outcome *o,
                           struct smtp_client_rcpt *rc, char reasons[][SMTP_CLIENT_REPLY_MAX])
{
    struct dns_mx_result mx = {0};
    char err[256];
    bool smarthost = sm->smarthost[0] != '\0';
    unsigned port = sm->remote_port;
    if (smarthost) {
        split_hostport(sm->smarthost, 25, mx.mx[0].host, sizeof(mx.mx[0].host), &port);
        mx.n = 1;
    } else {
        int st = dns_mx(dns, b->domain, &mx, err, sizeof(err));
        if (st == DNS_PERM) {
            all(b, o, QUEUE_PERMFAIL, "5.1.2", "550 5.1.2 the recipient domain does not exist");
            return;
        }
        if (st != DNS_OK) {
            all(b, o, QUEUE_TEMPFAIL, "4.4.3", "451 4.4.3 DNS lookup of the domain failed");
            return;
        }
        if (mx.null_mx) {
            /* RFC 7505 §4.2 */
            all(b, o, QUEUE_PERMFAIL, "5.1.10", "556 5.1.10 the recipient domain accepts no mail");
            return;
        }
    }
    const struct secure_destination *sd_domain = smarthost ? NULL : secure_match(sm, b->domain);
    struct smtp_client_result res = {0};
    bool answered = false;
    all(b, o, QUEUE_TEMPFAIL, "4.4.1", "451 4.4.1 no mail server answered");
    for (size_t m = 0; m < mx.n && !answered && !atomic_load(&stopping); m++) {
        struct sockaddr_storage addrs[DNS_MAX_ADDRS];
        size_t naddrs = 0;
        if (dns_literal(mx.mx[m].host, &addrs[0]) == 0)
            naddrs = 1;
        else if (dns_addrs(dns, mx.mx[m].host, addrs, &naddrs, err, sizeof(err)) != DNS_OK)
            continue;
        const struct secure_destination *sd =
            sd_domain ? sd_domain : secure_match(sm, mx.mx[m].host);
        for (size_t a = 0; a < naddrs && !answered; a++) {
            set_port(&addrs[a], port);
            memset(&res, 0, sizeof(res));
            if (attempt(c, sm, b, (struct sockaddr *)&addrs[a], mx.mx[m].host, sd, smarthost, rc,
                        &res) != 0) {
                all(b, o, QUEUE_TEMPFAIL, "4.3.0", "451 4.3.0 cannot read the queued message");
                return;
            }
            dlog(LOG_DEBUG, "queue %lld: %s: %s (%zu delivered, %zu temp, %zu perm)", b->message_id,
                 res.remote, smtp_client_failure_str(res.failure), res.delivered, res.temp,
                 res.perm);
            if (res.failure == SMTP_CLIENT_FAIL_TLS && sd) {
                /* the Secure Destination cannot be met: returned to the sender */
                for (size_t i = 0; i < b->n; i++) {
                    snprintf(reasons[i], SMTP_CLIENT_REPLY_MAX, "%s", res.reply);
                    o[i] =
                        (struct queue_outcome){QUEUE_PERMFAIL, "5.7.10", reasons[i], rc[i].remote};
                }
                return;
            }
            if (!try_next(&res))
                answered = true;
        }
    }
    if (!answered) {
        if (res.reply[0])
            for (size_t i = 0; i < b->n; i++) {
                snprintf(reasons[i], SMTP_CLIENT_REPLY_MAX, "%s", res.reply);
                o[i] = (struct queue_outcome){QUEUE_TEMPFAIL, res.status[0] ? res.status : "4.4.1",
                                              reasons[i], res.remote[0] ? res.remote : NULL};
            }
        return;
    }
    for (size_t i = 0; i < b->n; i++) {
        enum queue_result r = rc[i].cls == SMTP_CLIENT_DELIVERED ? QUEUE_DELIVERED
                              : rc[i].cls == SMTP_CLIENT_PERM    ? QUEUE_PERMFAIL
                                                                 : QUEUE_TEMPFAIL;
        o[i] = (struct queue_outcome){r, rc[i].status, rc[i].reply, rc[i].remote};
    }
}

/* ---- the threads ---- */

static void deliver_batch(PGconn *c, struct dns_resolver *dns, const struct queue_batch *b)
{
    struct runtime *rt = runtime_get();
    const struct smtp_config *sm = &rt->cfg->smtp;
    struct queue_outcome *o = calloc(b->n, sizeof(*o));
    struct smtp_client_rcpt *rc = calloc(b->n, sizeof(*rc));
    char(*reasons)[SMTP_CLIENT_REPLY_MAX] = calloc(b->n, sizeof(*reasons));
    if (!o || !rc || !reasons) {
        free(o);
        free(rc);
        free(reasons);
        runtime_put(&rt);
        return; /* the lease runs out and the batch comes back */
    }
    char err[256];
    int local = dir_domain_lookup(c, b->domain, NULL, NULL, err, sizeof(err));
    if (local == 0)
        deliver_local(c, b, o);
    else if (local == DIR_ENOTFOUND)
        deliver_remote(c, dns, sm, b, o, rc, reasons);
    else
        all(b, o, QUEUE_TEMPFAIL, "4.3.0", "451 4.3.0 directory lookup failed");
    struct queue_policy pol = {.lifetime = sm->queue_lifetime,
                               .min_backoff = sm->retry_min,
                               .max_backoff = sm->retry_max,
                               .delay_warning = sm->delay_warning};
    for (size_t i = 0; i < b->n; i++)
        dlog(LOG_SUMMARY, "queue %lld: to=<%s> %s %s%s%s", b->message_id, b->rcpts[i].address,
             o[i].result == QUEUE_DELIVERED  ? "delivered"
             : o[i].result == QUEUE_PERMFAIL ? "failed"
                                             : "deferred",
             o[i].reply ? o[i].reply : "", o[i].remote_host ? " via " : "",
             o[i].remote_host ? o[i].remote_host : "");
    int r = queue_report(c, b, o, &pol, err, sizeof(err));
    if (r == QUEUE_ELEASE)
        dlog(LOG_SUMMARY, "queue %lld: lease lost, outcome not recorded", b->message_id);
    else if (r != 0)
        dlog(LOG_SUMMARY, "queue %lld: cannot record the outcome: %s", b->message_id, err);
    free(o);
    free(rc);
    free(reasons);
    runtime_put(&rt);
}

struct thread_arg {
    unsigned index;
};

static void *run(void *arg)
{
    unsigned index = ((struct thread_arg *)arg)->index;
    free(arg);
    PGconn *c = NULL;
    struct dns_resolver *dns = NULL;
    time_t last_notice = 0;
    char err[256];
    while (!atomic_load(&stopping)) {
        struct runtime *rt = runtime_get();
        char node[64], host[256], servers[DNS_MAX_SERVERS];
        unsigned lease = rt->cfg->smtp.connect_timeout * 4 + rt->cfg->smtp.command_timeout * 4;
        snprintf(node, sizeof(node), "%s", rt->cfg->node_id);
        snprintf(host, sizeof(host), "%s", rt->cfg->smtp.hostname);
        snprintf(servers, sizeof(servers), "%s", rt->cfg->smtp.dns_servers);
        struct queue_policy pol = {.lifetime = rt->cfg->smtp.queue_lifetime,
                                   .min_backoff = rt->cfg->smtp.retry_min,
                                   .max_backoff = rt->cfg->smtp.retry_max,
                                   .delay_warning = rt->cfg->smtp.delay_warning};
        runtime_put(&rt);
        if (!c && !(c = db_connect(db_url, 0, err, sizeof(err)))) {
            dlog(LOG_SUMMARY, "cannot connect to the database: %s", err);
            idle(DELIVERY_POLL_S);
            continue;
        }
        if (!dns && !(dns = dns_resolver_new(servers, DNS_DEFAULT_TIMEOUT_MS, err, sizeof(err)))) {
            dlog(LOG_SUMMARY, "cannot start a resolver: %s", err);
            idle(DELIVERY_POLL_S);
            continue;
        }
        if (index == 0 && time(NULL) - last_notice >= DELIVERY_NOTICE_S) {
            int made = 0;
            if (queue_notices_run(c, blobs, host, time(NULL), &pol, &made, err, sizeof(err)) != 0)
                dlog(LOG_SUMMARY, "notifications: %s", err);
            else if (made)
                dlog(LOG_SUMMARY, "%d delivery status notifications queued", made);
            last_notice = time(NULL);
            if (made)
                continue; /* deliver them now */
        }
        struct queue_batch b;
        int got = queue_claim(c, node, (int)lease, &b, err, sizeof(err));
        if (got < 0) {
            dlog(LOG_SUMMARY, "cannot claim from the queue: %s", err);
            if (PQstatus(c) != CONNECTION_OK) {
                PQfinish(c);
                c = NULL;
            }
            idle(DELIVERY_POLL_S);
            continue;
        }
        if (got == 0) {
            idle(DELIVERY_POLL_S);
            continue;
        }
        deliver_batch(c, dns, &b);
        queue_batch_free(&b);
    }
    dns_resolver_free(&dns);
    if (c)
        PQfinish(c);
    return NULL;
}

int delivery_start(const struct config *cfg, struct blob_store *bs, char *err, size_t errlen)
{
    blobs = bs;
    db_url = strdup(cfg->db_url);
    nthreads = cfg->smtp.delivery_threads;
    threads = calloc(nthreads, sizeof(*threads));
    if (!db_url || !threads) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    atomic_store(&stopping, false);
    for (unsigned i = 0; i < nthreads; i++) {
        struct thread_arg *a = malloc(sizeof(*a));
        if (a)
            a->index = i;
        if (!a || pthread_create(&threads[i], NULL, run, a) != 0) {
            free(a);
            snprintf(err, errlen, "cannot start delivery threads");
            nthreads = i;
            delivery_stop();
            return -1;
        }
    }
    return 0;
}

void delivery_stop(void)
{
    atomic_store(&stopping, true);
    pthread_mutex_lock(&lock);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);
    for (unsigned i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    free(threads);
    threads = NULL;
    nthreads = 0;
    free(db_url);
    db_url = NULL;
}
