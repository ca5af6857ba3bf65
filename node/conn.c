/* Client connections (see conn.h for the phases a connection goes through).
 *
 * I/O: libuv reads into the loop's shared buffer; plain bytes go straight to the
 * service, TLS bytes go into the SSL object's memory BIO and decrypted bytes come
 * out of SSL_read. Output (service bytes, or TLS records from the write BIO) is
 * sent with uv_try_write and, for what the socket does not take at once, queued
 * with uv_write. The queue size drives backpressure.
 *
 * Lifetime: a connection is freed once its libuv handles are closed and no one
 * holds it (conn_hold/conn_release around asynchronous work). The per-service
 * per-IP connection counts live in a small locked table shared by all threads. */
#include "node/conn.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/conn_internal.h"
#include "node/ips.h"
#include "node/loop.h"
#include "node/metrics.h"
#include "node/registry.h"
#include "node/server.h"
#include "node/tls.h"
#include "proto/proxy/proxy.h"

enum phase { PH_PROXY, PH_HANDSHAKE, PH_OPEN, PH_CLOSING };

struct held {
    struct held *next;
    size_t len, off;
    char data[];
};

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;     /* handshake, idle or close timeout */
    uv_timer_t *bw_timer; /* bandwidth refill, only with a cap */
    struct listener *ls;
    struct runtime *rt;
    const struct service_config *sc;
    const struct service_ops *ops;
    struct metrics_service *m;
    struct conn *prev, *next; /* the loop's connection list */

    enum phase phase;
    bool implicit_tls, tls, opened, counted, paused, bp_paused, bw_paused, pump_posted;
    bool on_close_done;
    int open_handles;
    int holds;
    unsigned idle_timeout;

    SSL *ssl;
    BIO *rbio, *wbio;

    unsigned char *proxybuf; /* only during PH_PROXY */
    size_t proxylen;

    /* Bandwidth cap: a token bucket in bytes, refilled at `rate` bytes/s. */
    double tokens;
    double rate;
    uint64_t refilled_ms;
    struct held *held_head, *held_tail;

    struct sockaddr_storage peer, local;
    char peer_str[INET6_ADDRSTRLEN];
    char id[20];
    _Alignas(max_align_t) unsigned char session[];
};

/* ---- per-loop lists, per-IP counts ---- */

#define MAX_LOOPS 256
static struct conn *loop_conns[MAX_LOOPS];

#define IPTAB_BUCKETS 4096
struct ipcount {
    struct ipcount *next;
    size_t service;
    unsigned char addr[16];
    unsigned count;
};
static struct ipcount *iptab[IPTAB_BUCKETS];
static pthread_mutex_t iptab_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_uint_fast64_t next_session_id = 1;

static void addr_key(const struct sockaddr_storage *ss, unsigned char key[16])
{
    memset(key, 0, 16);
    if (ss->ss_family == AF_INET) {
        key[10] = key[11] = 0xff; /* as an IPv4-mapped IPv6 address */
        memcpy(key + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
    } else if (ss->ss_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
    }
}

static unsigned ipcount_change(size_t service, const struct sockaddr_storage *ss, int delta)
{
    unsigned char key[16];
    addr_key(ss, key);
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    h = (h ^ (uint32_t)service) * 16777619u;
    struct ipcount **pp = &iptab[h % IPTAB_BUCKETS], *e;
    unsigned result = 0;
    pthread_mutex_lock(&iptab_lock);
    for (e = *pp; e; pp = &e->next, e = e->next)
        if (e->service == service && !memcmp(e->addr, key, 16))
            break;
    if (!e && delta > 0 && (e = calloc(1, sizeof(*e)))) {
        e->service = service;
        memcpy(e->addr, key, 16);
        e->next = NULL;
        *pp = e;
    }
    if (e) {
        e->count = (unsigned)((int)e->count + delta);
        result = e->count;
        if (e->count == 0) {
            *pp = e->next;
            free(e);
        }
    }
    pthread_mutex_unlock(&iptab_lock);
    return result;
}

static uint64_t now_ms(struct conn *c)
{
    return uv_now(c->tcp.loop);
}

/* ---- accessors ---- */

void *conn_session(struct conn *c)
{
    return c->session;
}
const char *conn_service(const struct conn *c)
{
    return c->ls->def->name;
}
const char *conn_id(const struct conn *c)
{
    return c->id;
}
const char *conn_peer(const struct conn *c)
{
    return c->peer_str;
}
const struct sockaddr *conn_peer_addr(const struct conn *c)
{
    return (const struct sockaddr *)&c->peer;
}
const struct sockaddr *conn_local_addr(const struct conn *c)
{
    return (const struct sockaddr *)&c->local;
}
bool conn_is_tls(const struct conn *c)
{
    return c->tls;
}
const char *conn_tls_sni(const struct conn *c)
{
    return c->ssl ? SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name) : NULL;
}
void conn_tls_alpn(const struct conn *c, const unsigned char **proto_r, unsigned *len_r)
{
    *proto_r = NULL;
    *len_r = 0;
    if (c->ssl)
        SSL_get0_alpn_selected(c->ssl, proto_r, len_r);
}
struct io_loop *conn_loop(const struct conn *c)
{
    return c->ls->loop;
}
struct metrics_service *conn_metrics(const struct conn *c)
{
    return c->m;
}
unsigned conn_request_timeout(const struct conn *c)
{
    return c->sc->request_timeout;
}

bool conn_closing(const struct conn *c)
{
    return c->phase == PH_CLOSING;
}

size_t conn_output_pending(const struct conn *c)
{
    size_t n = c->tcp.write_queue_size;
    for (const struct held *h = c->held_head; h; h = h->next)
        n += h->len - h->off;
    return n;
}

void conn_log(struct conn *c, enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(conn_service(c), level))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(conn_service(c), level, c->id, c->peer_str, fmt, ap);
    va_end(ap);
}

/* ---- reading state ---- */

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    size_t len;
    buf->base = loop_read_buffer(c->ls->loop, &len);
    buf->len = len;
}

static void update_reading(struct conn *c)
{
    bool want = c->phase != PH_CLOSING && !c->paused && !c->bp_paused && !c->bw_paused;
    if (want && !uv_is_active((uv_handle_t *)&c->tcp))
        uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
    else if (!want && uv_is_active((uv_handle_t *)&c->tcp))
        uv_read_stop((uv_stream_t *)&c->tcp);
}

static void on_timer(uv_timer_t *t);

static void arm_timer(struct conn *c, unsigned seconds)
{
    uv_timer_start(&c->timer, on_timer, (uint64_t)seconds * 1000, 0);
}

/* ---- closing ---- */

static void maybe_free(struct conn *c)
{
    if (c->open_handles > 0 || c->holds > 0)
        return;
    runtime_put(&c->rt);
    free(c);
}

static void handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (h != (uv_handle_t *)&c->tcp && h != (uv_handle_t *)&c->timer)
        free(h); /* the bandwidth timer */
    c->open_handles--;
    maybe_free(c);
}

static void finish(struct conn *c)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    c->phase = PH_CLOSING;
    if (c->opened && !c->on_close_done && c->ops->on_close) {
        c->on_close_done = true;
        c->ops->on_close(c);
    }
    while (c->held_head) {
        struct held *h = c->held_head;
        c->held_head = h->next;
        free(h);
    }
    c->held_tail = NULL;
    if (c->ssl)
        SSL_free(c->ssl); /* frees both BIOs */
    c->ssl = NULL;
    c->rbio = c->wbio = NULL;
    free(c->proxybuf);
    c->proxybuf = NULL;
    if (c->counted)
        ipcount_change(c->ls->service_index, &c->peer, -1);
    c->counted = false;
    atomic_fetch_sub(&c->m->connections_active, 1);
    /* unlink from the loop's list */
    int li = loop_index(c->ls->loop);
    if (c->prev)
        c->prev->next = c->next;
    else
        loop_conns[li] = c->next;
    if (c->next)
        c->next->prev = c->prev;
    conn_log(c, LOG_DEBUG, "connection closed");
    uv_close((uv_handle_t *)&c->tcp, handle_closed);
    uv_close((uv_handle_t *)&c->timer, handle_closed);
    if (c->bw_timer)
        uv_close((uv_handle_t *)c->bw_timer, handle_closed);
}

void conn_abort(struct conn *c)
{
    finish(c);
}

static bool output_empty(const struct conn *c)
{
    return c->tcp.write_queue_size == 0 && !c->held_head &&
           (!c->wbio || BIO_ctrl_pending(c->wbio) == 0);
}

static void flush_tls(struct conn *c);

void conn_close(struct conn *c)
{
    if (c->phase == PH_CLOSING)
        return;
    c->phase = PH_CLOSING;
    update_reading(c);
    if (c->tls && c->ssl && SSL_is_init_finished(c->ssl)) {
        SSL_shutdown(c->ssl); /* queues close_notify */
        flush_tls(c);
    }
    if (c->phase == PH_CLOSING && !uv_is_closing((uv_handle_t *)&c->tcp)) {
        if (output_empty(c))
            finish(c);
        else
            arm_timer(c, 30); /* a client that never reads cannot keep us forever */
    }
}

void conn_hold(struct conn *c)
{
    c->holds++;
}

void conn_release(struct conn *c)
{
    c->holds--;
    maybe_free(c);
}

/* ---- writing ---- */

struct wreq {
    uv_write_t req;
    struct conn *c;
    char data[];
};

static void on_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct conn *c = w->c;
    free(w);
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    if (status < 0) {
        conn_log(c, LOG_DEBUG, "write failed: %s", uv_strerror(status));
        finish(c);
        return;
    }
    if (c->phase == PH_CLOSING) {
        if (output_empty(c))
            finish(c);
        return;
    }
    if (c->bp_paused && conn_output_pending(c) < CONN_LOW_WATER) {
        c->bp_paused = false;
        update_reading(c);
        if (c->ops->on_drained && c->opened)
            c->ops->on_drained(c);
    }
}

static int send_now(struct conn *c, const char *data, size_t len)
{
    if (c->tcp.write_queue_size == 0) {
        /* uv_buf_t has no const member; uv_try_write only reads it. */
        union {
            const char *c;
            char *m;
        } u = {.c = data};
        uv_buf_t b = uv_buf_init(u.m, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        } else if (n != UV_EAGAIN && n != UV_ENOSYS) {
            conn_log(c, LOG_DEBUG, "write failed: %s", uv_strerror(n));
            return -1;
        }
    }
    if (len == 0)
        return 0;
    struct wreq *w = malloc(sizeof(*w) + len);
    if (!w)
        return -1;
    w->c = c;
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (r < 0) {
        free(w);
        return -1;
    }
    return 0;
}

static void bw_refill(struct conn *c)
{
    uint64_t now = now_ms(c);
    c->tokens += c->rate * (double)(now - c->refilled_ms) / 1000.0;
    if (c->tokens > c->rate)
        c->tokens = c->rate; /* burst of one second */
    c->refilled_ms = now;
}

static void bw_schedule(struct conn *c);

/* Sends held output while the bucket allows, then decides on reading again. */
static void bw_tick(uv_timer_t *t)
{
    struct conn *c = t->data;
    bw_refill(c);
    while (c->held_head && c->tokens > 0) {
        struct held *h = c->held_head;
        size_t n = h->len - h->off;
        if ((double)n > c->tokens + 1)
            n = (size_t)c->tokens + 1;
        if (send_now(c, h->data + h->off, n) < 0) {
            finish(c);
            return;
        }
        c->tokens -= (double)n;
        h->off += n;
        if (h->off == h->len) {
            c->held_head = h->next;
            if (!c->held_head)
                c->held_tail = NULL;
            free(h);
        }
    }
    if (c->phase == PH_CLOSING && output_empty(c)) {
        finish(c);
        return;
    }
    if (c->bw_paused && c->tokens > 0) {
        c->bw_paused = false;
        update_reading(c);
    }
    bw_schedule(c);
}

static void bw_schedule(struct conn *c)
{
    if ((c->held_head || c->bw_paused) && !uv_is_active((uv_handle_t *)c->bw_timer)) {
        double deficit = c->tokens < 0 ? -c->tokens : 0;
        uint64_t ms = (uint64_t)(deficit * 1000.0 / c->rate) + 10;
        uv_timer_start(c->bw_timer, bw_tick, ms, 0);
    }
}

/* All bytes to the socket pass here: metrics, bandwidth cap, backpressure. */
static int raw_write(struct conn *c, const char *data, size_t len)
{
    if (len == 0)
        return 0;
    atomic_fetch_add(&c->m->bytes_out, len);
    if (c->bw_timer) {
        bw_refill(c);
        if (c->tokens <= 0 || c->held_head) {
            struct held *h = malloc(sizeof(*h) + len);
            if (!h)
                return -1;
            h->next = NULL;
            h->len = len;
            h->off = 0;
            memcpy(h->data, data, len);
            if (c->held_tail)
                c->held_tail->next = h;
            else
                c->held_head = h;
            c->held_tail = h;
            bw_schedule(c);
            goto check;
        }
        c->tokens -= (double)len;
    }
    if (send_now(c, data, len) < 0)
        return -1;
check:
    if (!c->bp_paused && conn_output_pending(c) > CONN_HIGH_WATER) {
        c->bp_paused = true;
        update_reading(c);
    }
    return 0;
}

static void flush_tls(struct conn *c)
{
    char buf[16384];
    while (c->wbio && BIO_ctrl_pending(c->wbio) > 0) {
        int n = BIO_read(c->wbio, buf, sizeof(buf));
        if (n <= 0)
            break;
        if (raw_write(c, buf, (size_t)n) < 0) {
            finish(c);
            return;
        }
    }
}

int conn_write(struct conn *c, const void *data, size_t len)
{
    if (c->phase == PH_CLOSING || uv_is_closing((uv_handle_t *)&c->tcp))
        return -1;
    if (!c->tls)
        return raw_write(c, data, len) < 0 ? (finish(c), -1) : 0;
    const char *p = data;
    while (len > 0) {
        int chunk = len > 16384 ? 16384 : (int)len;
        int n = SSL_write(c->ssl, p, chunk);
        if (n <= 0) {
            conn_log(c, LOG_DEBUG, "TLS write failed");
            finish(c);
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    flush_tls(c);
    return c->phase == PH_CLOSING && uv_is_closing((uv_handle_t *)&c->tcp) ? -1 : 0;
}

int conn_printf(struct conn *c, const char *fmt, ...)
{
    char small[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n < sizeof(small))
        return conn_write(c, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big)
        return -1;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int r = conn_write(c, big, (size_t)n);
    free(big);
    return r;
}

/* ---- TLS ---- */

static int tls_begin(struct conn *c)
{
    SSL_CTX *ctx = c->rt->tls ? tls_store_ctx(c->rt->tls) : NULL;
    if (!ctx)
        return -1;
    c->ssl = SSL_new(ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (!c->ssl || !c->rbio || !c->wbio) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        SSL_free(c->ssl);
        c->ssl = NULL;
        c->rbio = c->wbio = NULL;
        return -1;
    }
    BIO_set_mem_eof_return(c->rbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_accept_state(c->ssl);
    SSL_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
    c->phase = PH_HANDSHAKE;
    arm_timer(c, c->sc->handshake_timeout);
    return 0;
}

static void log_tls_errors(struct conn *c, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "connection closed";
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    conn_log(c, LOG_SUMMARY, "%s: %s", what, buf);
}

static void open_session(struct conn *c)
{
    c->phase = PH_OPEN;
    arm_timer(c, c->idle_timeout);
    if (!c->opened) {
        c->opened = true;
        if (c->ops->on_open)
            c->ops->on_open(c);
    }
}

static void pump_posted(void *arg);

/* Runs the handshake and hands decrypted input to the service. */
static void tls_pump(struct conn *c)
{
    if (c->phase == PH_HANDSHAKE) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            flush_tls(c);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return;
            if (!c->opened)
                atomic_fetch_add(&c->m->refused[METRICS_REFUSED_TLS], 1);
            log_tls_errors(c, "TLS handshake failed");
            conn_close(c);
            return;
        }
        flush_tls(c);
        c->tls = true;
        const char *sni = conn_tls_sni(c);
        conn_log(c, LOG_DEBUG, "TLS established: %s %s%s%s", SSL_get_version(c->ssl),
                 SSL_get_cipher_name(c->ssl), sni ? " sni=" : "", sni ? sni : "");
        open_session(c);
    }
    size_t cap;
    char *buf = loop_read_buffer(c->ls->loop, &cap);
    while (c->phase == PH_OPEN && !c->paused) {
        int n = SSL_read(c->ssl, buf, (int)cap);
        if (n > 0) {
            c->ops->on_data(c, buf, (size_t)n);
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            conn_close(c);
        } else {
            log_tls_errors(c, "TLS error");
            conn_close(c);
        }
        break;
    }
    flush_tls(c); /* key updates, alerts, close_notify */
}

static void pump_posted(void *arg)
{
    struct conn *c = arg;
    c->pump_posted = false;
    if (c->phase == PH_OPEN && c->tls && !c->paused)
        tls_pump(c);
    loop_work_end(c->ls->loop);
    conn_release(c);
}

int conn_starttls(struct conn *c)
{
    if (c->tls || c->ssl || c->phase != PH_OPEN)
        return -1;
    if (tls_begin(c) < 0)
        return -1;
    conn_log(c, LOG_DEBUG, "STARTTLS");
    return 0;
}

void conn_pause(struct conn *c)
{
    c->paused = true;
    update_reading(c);
}

void conn_resume(struct conn *c)
{
    if (!c->paused)
        return;
    c->paused = false;
    update_reading(c);
    /* Decrypted input may be waiting inside the SSL object; deliver it from the loop,
     * not from inside the caller's stack. */
    if (c->tls && c->ssl && !c->pump_posted && SSL_pending(c->ssl) > 0) {
        c->pump_posted = true;
        conn_hold(c);
        loop_work_begin(c->ls->loop);
        loop_post(c->ls->loop, pump_posted, c);
    }
}

void conn_set_idle_timeout(struct conn *c, unsigned seconds)
{
    c->idle_timeout = seconds ? seconds : 1;
    if (c->phase == PH_OPEN)
        arm_timer(c, c->idle_timeout);
}

/* ---- the phases before the session ---- */

static bool access_ok(struct conn *c)
{
    const struct config *cfg = c->rt->cfg;
    const struct sockaddr *a = (const struct sockaddr *)&c->peer;
    return access_allows(cfg->access_mode, cfg->access, a) &&
           access_allows(c->sc->access_mode, c->sc->access, a);
}

static void refuse(struct conn *c, const char *why)
{
    conn_log(c, LOG_SUMMARY, "connection refused: %s", why);
    c->opened = false;
    if (c->ops->on_refuse) {
        c->phase = PH_OPEN;
        c->ops->on_refuse(c, why);
    }
    conn_close(c);
}

static void deliver(struct conn *c, const char *data, size_t len)
{
    if (len == 0 || c->phase == PH_CLOSING)
        return;
    if (c->phase == PH_HANDSHAKE || c->tls) {
        if (BIO_write(c->rbio, data, (int)len) != (int)len) {
            finish(c);
            return;
        }
        tls_pump(c);
        return;
    }
    c->ops->on_data(c, data, len);
}

/* The client address is final: check access and limits, then start the session. */
static void admit(struct conn *c, const char *rest, size_t restlen)
{
    const struct sockaddr *pa = (const struct sockaddr *)&c->peer;
    proxy_addr_str(&c->peer, c->peer_str, sizeof(c->peer_str));
    bool blocked = false; /* by intrusion prevention (node/ips.c): refused like a denial */
    if (!access_ok(c) || (blocked = ips_blocked(c->rt->cfg, conn_service(c), pa))) {
        atomic_fetch_add(&c->m->refused[METRICS_REFUSED_ACCESS], 1);
        conn_log(c, LOG_SUMMARY, "access denied%s", blocked ? ": address blocked" : "");
        finish(c);
        return;
    }
    unsigned per_ip = ipcount_change(c->ls->service_index, &c->peer, +1);
    c->counted = true;
    long long active = (long long)atomic_load(&c->m->connections_active);
    if ((c->sc->max_connections && active > (long long)c->sc->max_connections) ||
        (c->sc->max_connections_per_ip && per_ip > c->sc->max_connections_per_ip)) {
        atomic_fetch_add(&c->m->refused[METRICS_REFUSED_LIMIT], 1);
        refuse(c, per_ip > c->sc->max_connections_per_ip && c->sc->max_connections_per_ip
                      ? "too many connections from this address"
                      : "too many connections");
        return;
    }
    if (c->sc->bandwidth_kbps && !access_list_match(c->rt->cfg->trusted, pa)) {
        c->bw_timer = malloc(sizeof(*c->bw_timer));
        if (c->bw_timer) {
            uv_timer_init(c->tcp.loop, c->bw_timer);
            c->bw_timer->data = c;
            c->open_handles++;
            c->rate = (double)c->sc->bandwidth_kbps * 1024.0;
            c->tokens = c->rate;
            c->refilled_ms = now_ms(c);
        }
    }
    conn_log(c, LOG_SUMMARY, "connection from %s on %s%s", c->peer_str, c->ls->addr.text,
             c->implicit_tls ? " (TLS)" : "");
    if (c->implicit_tls) {
        if (tls_begin(c) < 0) {
            conn_log(c, LOG_SUMMARY, "no TLS certificate available");
            finish(c);
            return;
        }
    } else {
        open_session(c);
    }
    deliver(c, rest, restlen);
}

static void proxy_input(struct conn *c, const char *data, size_t len)
{
    size_t room = PROXY_MAX_HEADER - c->proxylen;
    size_t take = len < room ? len : room;
    memcpy(c->proxybuf + c->proxylen, data, take);
    c->proxylen += take;
    struct proxy_header h;
    int r = proxy_parse(c->proxybuf, c->proxylen, &h);
    if (r == 0 && c->proxylen < PROXY_MAX_HEADER)
        return;
    if (r <= 0) {
        atomic_fetch_add(&c->m->refused[METRICS_REFUSED_PROXY], 1);
        conn_log(c, LOG_SUMMARY, "invalid PROXY protocol header from load balancer");
        finish(c);
        return;
    }
    if (!h.local) {
        c->peer = h.src;
        c->local = h.dst;
    }
    /* Bytes after the header in this buffer, then the unread part of data. */
    size_t extra_in_buf = c->proxylen - h.length;
    char *rest = NULL;
    size_t restlen = extra_in_buf + (len - take);
    if (restlen) {
        rest = malloc(restlen);
        if (!rest) {
            finish(c);
            return;
        }
        memcpy(rest, c->proxybuf + h.length, extra_in_buf);
        memcpy(rest + extra_in_buf, data + take, len - take);
    }
    free(c->proxybuf);
    c->proxybuf = NULL;
    admit(c, rest, restlen);
    free(rest);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            conn_log(c, LOG_DEBUG, "read failed: %s", uv_strerror((int)nread));
        if (c->phase == PH_OPEN)
            conn_close(c);
        else
            finish(c);
        return;
    }
    atomic_fetch_add(&c->m->bytes_in, (uint64_t)nread);
    if (c->bw_timer) {
        bw_refill(c);
        c->tokens -= (double)nread;
        if (c->tokens < 0) {
            c->bw_paused = true;
            update_reading(c);
            bw_schedule(c);
        }
    }
    switch (c->phase) {
    case PH_PROXY:
        proxy_input(c, buf->base, (size_t)nread);
        break;
    case PH_HANDSHAKE:
    case PH_OPEN:
        if (c->phase == PH_OPEN)
            arm_timer(c, c->idle_timeout);
        deliver(c, buf->base, (size_t)nread);
        break;
    case PH_CLOSING:
        break;
    }
}

static void on_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    switch (c->phase) {
    case PH_PROXY:
        atomic_fetch_add(&c->m->refused[METRICS_REFUSED_PROXY], 1);
        conn_log(c, LOG_SUMMARY, "no PROXY header in time");
        finish(c);
        break;
    case PH_HANDSHAKE:
        if (!c->opened)
            atomic_fetch_add(&c->m->refused[METRICS_REFUSED_TLS], 1);
        conn_log(c, LOG_SUMMARY, "TLS handshake timed out");
        finish(c);
        break;
    case PH_OPEN:
        atomic_fetch_add(&c->m->timeouts_total, 1);
        if (c->ops->on_timeout) {
            c->ops->on_timeout(c);
        } else {
            conn_log(c, LOG_SUMMARY, "idle timeout");
            conn_close(c);
        }
        break;
    case PH_CLOSING:
        conn_log(c, LOG_DEBUG, "client did not take the last output in time");
        finish(c);
        break;
    }
}

/* ---- accepting ---- */

void conn_accept(struct listener *ls)
{
    struct runtime *rt = runtime_get();
    const struct service_config *sc = &rt->cfg->services[ls->service_index];
    const struct service_ops *ops = ls->def->ops;
    struct conn *c = calloc(1, sizeof(*c) + ops->session_size);
    if (!c) {
        runtime_put(&rt);
        return;
    }
    c->ls = ls;
    c->rt = rt;
    c->sc = sc;
    c->ops = ops;
    c->m = ls->metrics;
    c->idle_timeout = sc->idle_timeout;
    c->implicit_tls = ls->addr.tls;
    uv_tcp_init(ls->tcp.loop, &c->tcp);
    uv_timer_init(ls->tcp.loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    snprintf(c->id, sizeof(c->id), "%llx",
             (unsigned long long)atomic_fetch_add(&next_session_id, 1));
    atomic_fetch_add(&c->m->connections_total, 1);
    atomic_fetch_add(&c->m->connections_active, 1);
    int li = loop_index(ls->loop);
    c->next = loop_conns[li];
    if (c->next)
        c->next->prev = c;
    loop_conns[li] = c;
    c->phase = PH_PROXY;
    if (uv_accept((uv_stream_t *)&ls->tcp, (uv_stream_t *)&c->tcp) < 0) {
        finish(c);
        return;
    }
    int len = sizeof(c->peer);
    uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &len);
    len = sizeof(c->local);
    uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&c->local, &len);
    proxy_addr_str(&c->peer, c->peer_str, sizeof(c->peer_str));
    uv_tcp_nodelay(&c->tcp, 1);
    if (server_stopping()) {
        finish(c);
        return;
    }
    if (sc->proxy_protocol &&
        access_list_match(sc->proxy_from, (const struct sockaddr *)&c->peer)) {
        c->proxybuf = malloc(PROXY_MAX_HEADER);
        if (!c->proxybuf) {
            finish(c);
            return;
        }
        arm_timer(c, sc->handshake_timeout);
        update_reading(c);
        return;
    }
    update_reading(c);
    admit(c, NULL, 0);
}

void conn_shutdown_all(struct io_loop *l)
{
    struct conn *c = loop_conns[loop_index(l)], *next;
    for (; c; c = next) {
        next = c->next;
        if (c->phase == PH_OPEN && c->opened && c->ops->on_shutdown)
            c->ops->on_shutdown(c);
        else if (c->phase == PH_OPEN)
            conn_close(c);
        else if (c->phase != PH_CLOSING)
            finish(c);
    }
}

void conn_abort_all(struct io_loop *l)
{
    struct conn *c = loop_conns[loop_index(l)], *next;
    for (; c; c = next) {
        next = c->next;
        finish(c);
    }
}

size_t conn_count(struct io_loop *l)
{
    size_t n = 0;
    for (struct conn *c = loop_conns[loop_index(l)]; c; c = c->next)
        n++;
    return n;
}
