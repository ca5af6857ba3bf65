/* The node server: start-up, reload and stop.
 *
 * Start-up order matters for "no half-started node": the configuration is already
 * valid; then certificates are loaded and checked, every listening socket is bound
 * (one SO_REUSEPORT socket per address per I/O thread, so the kernel spreads
 * connections across threads), privileges are dropped, and only then do threads
 * start. Any failure before that point exits with status 2 and nothing served.
 *
 * The main thread runs its own libuv loop for signals: SIGHUP reloads the
 * configuration and certificates into a new runtime snapshot (open connections
 * keep theirs); SIGTERM/SIGINT close the listeners, ask every session for its
 * goodbye, and after [node] shutdown_timeout close whatever is left. */
#include "node/server.h"

#include <errno.h>
#include <grp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/bus.h"
#include "cluster/cluster.h"
#include "cluster/scheduler.h"
#include "proto/bus/bus.pb-c.h"
#include "storage/dircache.h"
#include "node/conn_internal.h"
#include "node/ips.h"
#include "node/log.h"
#include "node/loop.h"
#include "node/metrics.h"
#include "node/registry.h"
#include "node/smtp/delivery.h"
#include "node/tls.h"
#include "node/workers.h"
#include "storage/db.h"
#include "storage/session_lock.h"

#define MAX_LISTENERS 4096

static pthread_mutex_t rt_lock = PTHREAD_MUTEX_INITIALIZER;
static struct runtime *current_rt;
static atomic_bool stopping;
static struct workers *workers;
static struct blob_store *blobs;

static struct io_loop **loops;
static unsigned nloops;
static struct listener *listeners[MAX_LISTENERS];
static size_t nlisteners;
static atomic_uint loops_finished;
static uv_async_t loops_done_async;
static int port_offset_override = -1;

struct runtime *runtime_get(void)
{
    pthread_mutex_lock(&rt_lock);
    struct runtime *rt = current_rt;
    atomic_fetch_add(&rt->refs, 1);
    pthread_mutex_unlock(&rt_lock);
    return rt;
}

void runtime_put(struct runtime **rtp)
{
    struct runtime *rt = *rtp;
    if (!rt)
        return;
    *rtp = NULL;
    if (atomic_fetch_sub(&rt->refs, 1) != 1)
        return;
    tls_store_unref(&rt->tls);
    config_free(&rt->cfg);
    free(rt);
}

struct workers *server_workers(void)
{
    return workers;
}

struct blob_store *server_blobs(void)
{
    return blobs;
}

bool server_stopping(void)
{
    return atomic_load(&stopping);
}

/* ---- runtime snapshots ---- */

/* 0 ok; -1 when the log files cannot be set up (log_configure said why on stderr and
 * kept the previous settings). */
static int apply_logging(const struct config *cfg)
{
    struct log_config lc = {
        .node_id = cfg->node_id,
        .to_stderr = cfg->log_stderr,
        .dir = *cfg->log_dir ? cfg->log_dir : NULL,
        .rotate_bytes = cfg->log_rotate_bytes,
        .retention_days = (int)cfg->log_retention_days,
        .default_level = cfg->log_level,
    };
    if (log_configure(&lc) < 0)
        return -1;
    for (size_t i = 0; i < cfg->nservices; i++)
        log_set_level(cfg->services[i].name, cfg->services[i].log_level);
    return 0;
}

static bool needs_tls(const struct config *cfg)
{
    if (cfg->ncerts > 0)
        return true;
    for (size_t i = 0; i < cfg->nservices; i++)
        if (cfg->services[i].enabled)
            return true; /* any service may offer STARTTLS */
    return false;
}

static struct runtime *runtime_build(struct config *cfg, char *err, size_t errlen)
{
    struct runtime *rt = calloc(1, sizeof(*rt));
    if (!rt) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&rt->refs, 1);
    if (needs_tls(cfg)) {
        /* The default certificate goes first: the store serves the first one to
         * clients whose SNI matches no certificate. */
        struct tls_cert_spec specs[CONFIG_MAX_CERTS];
        size_t n = 0;
        bool found_default = false;
        for (size_t i = 0; i < cfg->ncerts; i++) {
            const struct cert_config *cc = &cfg->certs[i];
            bool is_default = cfg->tls_default && !strcmp(cc->name, cfg->tls_default);
            if (is_default) {
                memmove(specs + 1, specs, n * sizeof(specs[0]));
                specs[0] = (struct tls_cert_spec){cc->file, cc->key, cc->chain};
                found_default = true;
            } else {
                specs[n] = (struct tls_cert_spec){cc->file, cc->key, cc->chain};
            }
            n++;
        }
        char sspath[4096];
        snprintf(sspath, sizeof(sspath), "%s/selfsigned.pem", cfg->state_dir);
        struct tls_settings ts = {
            .min_version = cfg->tls_min_version,
            .ciphers = cfg->tls_ciphers,
            .ciphersuites = cfg->tls_ciphersuites,
            .certs = specs,
            .ncerts = cfg->ncerts,
            .default_name = NULL,
            .selfsigned_path = sspath,
            .selfsigned_host = cfg->hostname,
        };
        if (cfg->tls_default && !found_default) {
            snprintf(err, errlen, "%s: [tls] default: no [certificate %s]", cfg->path,
                     cfg->tls_default);
            free(rt);
            return NULL;
        }
        rt->tls = tls_store_new(&ts, err, errlen);
        if (!rt->tls) {
            free(rt);
            return NULL;
        }
        /* HTTP services answer in HTTP/2 when the client offers it (RFC 9113 §3.2);
         * the other services never look at ALPN, and a client offering neither
         * gets no ALPN answer at all (RFC 7301 §3.2). */
        static const unsigned char alpn[] = "\x02h2\x08http/1.1";
        tls_store_set_alpn(rt->tls, alpn, sizeof(alpn) - 1);
    }
    rt->cfg = cfg;
    return rt;
}

/* ---- listeners ---- */

static int bind_socket(const struct listen_addr *a, char *err, size_t errlen, bool *skip_r)
{
    *skip_r = false;
    int fd = socket(a->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        if (a->wildcard6 && (errno == EAFNOSUPPORT || errno == EPROTONOSUPPORT)) {
            *skip_r = true;
            return -1;
        }
        snprintf(err, errlen, "cannot create socket for %s: %s", a->text, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (a->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->addr, a->addrlen) < 0 || listen(fd, 511) < 0) {
        int e = errno;
        close(fd);
        if (a->wildcard6 && (e == EADDRNOTAVAIL || e == EAFNOSUPPORT)) {
            *skip_r = true;
            return -1;
        }
        snprintf(err, errlen, "cannot listen on %s: %s", a->text, strerror(e));
        return -1;
    }
    return fd;
}

/* Binds every listener of every enabled service once per loop. */
static int bind_all(const struct config *cfg, char *err, size_t errlen)
{
    for (size_t si = 0; si < cfg->nservices; si++) {
        const struct service_config *sc = &cfg->services[si];
        if (!sc->enabled)
            continue;
        const struct service_def *def = registry_find(sc->name);
        struct metrics_service *m = metrics_service(sc->name);
        for (size_t ai = 0; ai < sc->nlisten; ai++) {
            for (unsigned li = 0; li < nloops; li++) {
                if (nlisteners >= MAX_LISTENERS) {
                    snprintf(err, errlen, "too many listeners");
                    return -1;
                }
                char why[256];
                bool skip;
                int fd = bind_socket(&sc->listen[ai], why, sizeof(why), &skip);
                if (fd < 0 && skip) {
                    if (li == 0)
                        log_warn("system", NULL, NULL, "service %s: no IPv6, not listening on %s",
                                 sc->name, sc->listen[ai].text);
                    break;
                }
                if (fd < 0) {
                    snprintf(err, errlen, "service %s: %s", sc->name, why);
                    return -1;
                }
                struct listener *ls = calloc(1, sizeof(*ls));
                if (!ls) {
                    close(fd);
                    snprintf(err, errlen, "out of memory");
                    return -1;
                }
                ls->fd = fd;
                ls->loop = loops[li];
                ls->def = def;
                ls->service_index = si;
                ls->addr = sc->listen[ai];
                ls->metrics = m;
                listeners[nlisteners++] = ls;
            }
        }
    }
    return 0;
}

static void on_connection(uv_stream_t *s, int status)
{
    struct listener *ls = s->data;
    if (status < 0) {
        log_warn("system", NULL, NULL, "accept on %s: %s", ls->addr.text, uv_strerror(status));
        return;
    }
    conn_accept(ls);
}

static void loop_setup(struct io_loop *l, void *arg)
{
    for (size_t i = 0; i < nlisteners; i++) {
        struct listener *ls = listeners[i];
        if (ls->loop != l)
            continue;
        uv_tcp_init(loop_uv(l), &ls->tcp);
        ls->tcp.data = ls;
        if (uv_tcp_open(&ls->tcp, ls->fd) < 0 ||
            uv_listen((uv_stream_t *)&ls->tcp, 511, on_connection) < 0)
            log_error("system", NULL, NULL, "cannot accept on %s", ls->addr.text);
        ls->fd = -1; /* owned by the handle now */
    }
}

static void loop_done(struct io_loop *l, void *arg)
{
    atomic_fetch_add(&loops_finished, 1);
    uv_async_send(&loops_done_async);
}

static void loop_stop(void *arg)
{
    struct io_loop *l = loop_current();
    for (size_t i = 0; i < nlisteners; i++)
        if (listeners[i]->loop == l && !uv_is_closing((uv_handle_t *)&listeners[i]->tcp))
            uv_close((uv_handle_t *)&listeners[i]->tcp, NULL);
    conn_shutdown_all(l);
    loop_end_keepalive(l);
}

static void loop_abort(void *arg)
{
    struct io_loop *l = loop_current();
    if (!l)
        return; /* the loop had already ended: loop_free() drains its posts on this thread */
    size_t n = conn_count(l);
    if (n)
        log_warn("system", NULL, NULL, "closing %zu session(s) still open at shutdown timeout",
                 n);
    conn_abort_all(l);
}

/* ---- privileges ---- */

static int drop_privileges(const struct config *cfg, char *err, size_t errlen)
{
    if (!cfg->user || !*cfg->user || geteuid() != 0)
        return 0;
    struct passwd *pw = getpwnam(cfg->user);
    if (!pw) {
        snprintf(err, errlen, "%s: [node] user: no such user '%s'", cfg->path, cfg->user);
        return -1;
    }
    if (chown(cfg->state_dir, pw->pw_uid, pw->pw_gid) < 0 && errno != ENOENT)
        log_warn("system", NULL, NULL, "cannot chown %s: %s", cfg->state_dir, strerror(errno));
    if (*cfg->log_dir && chown(cfg->log_dir, pw->pw_uid, pw->pw_gid) < 0)
        log_warn("system", NULL, NULL, "cannot chown %s: %s", cfg->log_dir, strerror(errno));
    if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
        snprintf(err, errlen, "cannot switch to user %s: %s", cfg->user, strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- signals ---- */

static uv_signal_t sig_term, sig_int, sig_hup;
static uv_timer_t stop_timer;

static void on_all_loops_done(uv_async_t *a)
{
    if (atomic_load(&loops_finished) == nloops)
        uv_stop(a->loop);
}

static void on_stop_timeout(uv_timer_t *t)
{
    for (unsigned i = 0; i < nloops; i++)
        loop_post(loops[i], loop_abort, NULL);
}

static void begin_stop(int signum)
{
    if (atomic_exchange(&stopping, true))
        return;
    log_write("system", LOG_SUMMARY, NULL, NULL, "received %s, stopping",
              signum == SIGTERM ? "SIGTERM" : "SIGINT");
    for (unsigned i = 0; i < nloops; i++)
        loop_post(loops[i], loop_stop, NULL);
    struct runtime *rt = runtime_get();
    uv_timer_start(&stop_timer, on_stop_timeout, (uint64_t)rt->cfg->shutdown_timeout * 1000, 0);
    runtime_put(&rt);
    uv_signal_stop(&sig_hup);
}

static void on_stop_signal(uv_signal_t *s, int signum)
{
    begin_stop(signum);
}

static bool same_listeners(const struct config *a, const struct config *b)
{
    for (size_t i = 0; i < a->nservices; i++) {
        const struct service_config *x = &a->services[i], *y = &b->services[i];
        if (x->enabled != y->enabled || x->nlisten != y->nlisten)
            return false;
        for (size_t j = 0; j < x->nlisten; j++)
            if (strcmp(x->listen[j].text, y->listen[j].text) || x->listen[j].tls != y->listen[j].tls)
                return false;
    }
    return true;
}

static void reload(void)
{
    struct runtime *old = runtime_get();
    char err[1024];
    struct config *cfg = config_load(old->cfg->path, port_offset_override, err, sizeof(err));
    if (!cfg) {
        log_error("system", NULL, NULL, "reload failed, keeping the running configuration: %s",
                  err);
        runtime_put(&old);
        return;
    }
    struct runtime *rt = runtime_build(cfg, err, sizeof(err));
    if (!rt) {
        log_error("system", NULL, NULL, "reload failed, keeping the running configuration: %s",
                  err);
        config_free(&cfg);
        runtime_put(&old);
        return;
    }
    if (!same_listeners(old->cfg, cfg))
        log_warn("system", NULL, NULL,
                 "listener changes (addresses, ports, enabled services) take effect at restart");
    if (apply_logging(cfg) < 0)
        log_error("system", NULL, NULL, "[log] dir '%s' cannot be used: keeping the previous log "
                  "settings", cfg->log_dir);
    pthread_mutex_lock(&rt_lock);
    struct runtime *prev = current_rt;
    current_rt = rt;
    pthread_mutex_unlock(&rt_lock);
    runtime_put(&prev);
    runtime_put(&old);
    log_write("system", LOG_SUMMARY, NULL, NULL, "configuration and certificates reloaded");
    scheduler_event("settings_changed");
}

static void on_hup(uv_signal_t *s, int signum)
{
    reload();
}

/* ---- cluster ---- */

static void cluster_log(bool warning, const char *msg, void *arg)
{
    if (warning)
        log_warn("cluster", NULL, NULL, "%s", msg);
    else
        log_write("cluster", LOG_SUMMARY, NULL, NULL, "%s", msg);
}

static void cluster_connections(char *buf, size_t len, void *arg)
{
    metrics_connections_json(buf, len);
}

static int start_cluster(const struct config *cfg, char *err, size_t errlen)
{
    char addrs[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < cfg->nservices && used < sizeof(addrs); i++)
        for (size_t j = 0; cfg->services[i].enabled && j < cfg->services[i].nlisten; j++) {
            int n = snprintf(addrs + used, sizeof(addrs) - used, "%s%s=%s", used ? " " : "",
                             cfg->services[i].name, cfg->services[i].listen[j].text);
            if (n < 0 || (size_t)n >= sizeof(addrs) - used)
                break;
            used += (size_t)n;
        }
    struct cluster_config cc = {
        .node_id = cfg->node_id,
        .db_url = cfg->db_url,
        .addresses = addrs,
        .version = FLOE_VERSION,
        .roles = "all",
        .log = cluster_log,
        .connections_json = cluster_connections,
    };
    return cluster_start(&cc, err, errlen);
}

/* Directory caches: a write on this node drops the local cache and tells the
 * others; a message from another node drops ours (without echoing it back). */
static void directory_changed_here(void)
{
    bus_publish_invalidate(FLOE__BUS__INVALIDATE__SCOPE__DIRECTORY, "");
}

static void on_invalidate(enum bus_channel ch, const uint8_t *data, size_t len, void *arg)
{
    Floe__Bus__Envelope *env = floe__bus__envelope__unpack(NULL, len, data);
    if (!env)
        return;
    struct runtime *rt = runtime_get();
    bool mine = !strcmp(env->origin_node, rt->cfg->node_id);
    runtime_put(&rt);
    if (!mine && env->body_case == FLOE__BUS__ENVELOPE__BODY_INVALIDATE &&
        env->invalidate->scope == FLOE__BUS__INVALIDATE__SCOPE__DIRECTORY) {
        if (*env->invalidate->key)
            dircache_invalidate(env->invalidate->key);
        else
            dircache_invalidate_all();
    }
    floe__bus__envelope__free_unpacked(env, NULL);
}

static int start_scheduler(const struct config *cfg, char *err, size_t errlen)
{
    struct scheduler_config sc = {
        .node_id = cfg->node_id,
        .db_url = cfg->db_url,
        .log = cluster_log,
        .blobs = blobs,
        .mail_hostname = cfg->smtp.hostname,
    };
    return scheduler_start(&sc, err, errlen);
}

static int start_bus(const struct config *cfg, char *err, size_t errlen)
{
    dircache_set_invalidation_hook(directory_changed_here);
    bus_subscribe(BUS_INVALIDATE, on_invalidate, NULL);
    struct bus_config bc = {
        .url = cfg->redis_url,
        .node_id = cfg->node_id,
        .log = cluster_log,
    };
    return bus_start(&bc, err, errlen);
}

/* ---- run ---- */

static unsigned cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 256 ? (unsigned)n : 1;
}

static int mkdir_p(const char *path)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
        return -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0750) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(tmp, 0750) < 0 && errno != EEXIST ? -1 : 0;
}

static void cleanup(void)
{
    for (size_t i = 0; i < nlisteners; i++) {
        if (listeners[i]->fd >= 0)
            close(listeners[i]->fd);
        free(listeners[i]);
    }
    nlisteners = 0;
    for (unsigned i = 0; i < nloops; i++)
        loop_free(&loops[i]);
    free(loops);
    loops = NULL;
    nloops = 0;
    workers_free(&workers);
    blob_store_close(&blobs);
    pthread_mutex_lock(&rt_lock);
    struct runtime *rt = current_rt;
    current_rt = NULL;
    pthread_mutex_unlock(&rt_lock);
    runtime_put(&rt);
}

void server_set_port_offset_override(int offset)
{
    port_offset_override = offset;
}

/* Schema migrations run at every start, under the advisory lock that makes nodes
 * starting together apply them once (storage/db.c). */
static int migrate(const struct config *cfg, char *err, size_t errlen)
{
    char why[768];
    PGconn *c = db_connect(cfg->db_url, 0, why, sizeof(why));
    if (!c) {
        snprintf(err, errlen, "database: %s", why);
        return -1;
    }
    int n = db_migrate(c, why, sizeof(why));
    /* Mailbox locks this node held before a crash are stale now: its sessions
     * are gone (a clean stop released them already). */
    if (n >= 0 && session_lock_release_node(c, cfg->node_id, why, sizeof(why)) < 0)
        log_write("system", LOG_SUMMARY, NULL, NULL, "cannot release old mailbox locks: %s", why);
    PQfinish(c);
    if (n < 0) {
        snprintf(err, errlen, "database migration: %s", why);
        return -1;
    }
    if (n > 0)
        log_write("system", LOG_SUMMARY, NULL, NULL, "applied %d schema migration(s)", n);
    return 0;
}

int server_run(struct config *cfg)
{
    char err[1024];
    if (apply_logging(cfg) < 0) {
        fprintf(stderr, "floed: %s: [log] dir '%s' cannot be used\n", cfg->path, cfg->log_dir);
        config_free(&cfg);
        return 2;
    }
    if (mkdir_p(cfg->state_dir) < 0) {
        fprintf(stderr, "floed: cannot create state_dir %s: %s\n", cfg->state_dir,
                strerror(errno));
        config_free(&cfg);
        return 2;
    }
    if (*cfg->db_url && migrate(cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "floed: %s\n", err);
        config_free(&cfg);
        return 2;
    }
    struct blob_config bc;
    config_blob(cfg, &bc);
    if (*cfg->db_url && !(blobs = blob_store_open(&bc, err, sizeof(err)))) {
        fprintf(stderr, "floed: blob store: %s\n", err);
        config_free(&cfg);
        return 2;
    }
    struct runtime *rt = runtime_build(cfg, err, sizeof(err));
    if (!rt) {
        fprintf(stderr, "floed: %s\n", err);
        blob_store_close(&blobs);
        config_free(&cfg);
        return 2;
    }
    current_rt = rt;

    nloops = cfg->io_threads ? cfg->io_threads : cpu_count();
    loops = calloc(nloops, sizeof(*loops));
    for (unsigned i = 0; loops && i < nloops; i++)
        if (!(loops[i] = loop_new((int)i)))
            break;
    if (!loops || !loops[nloops - 1]) {
        fprintf(stderr, "floed: cannot create I/O loops\n");
        cleanup();
        return 2;
    }
    if (bind_all(cfg, err, sizeof(err)) < 0 || drop_privileges(cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "floed: %s\n", err);
        cleanup();
        return 2;
    }
    workers = workers_new(cfg->workers, cfg->workers * 256, cfg->db_url,
                          cfg->db_statement_timeout_ms);
    if (!workers) {
        fprintf(stderr, "floed: cannot start workers\n");
        cleanup();
        return 2;
    }

    if ((*cfg->db_url && start_cluster(cfg, err, sizeof(err)) < 0) ||
        (*cfg->db_url && start_scheduler(cfg, err, sizeof(err)) < 0) ||
        ips_start(cfg, err, sizeof(err)) < 0 || /* subscribes: before the bus starts */
        (*cfg->redis_url && start_bus(cfg, err, sizeof(err)) < 0) ||
        (*cfg->db_url && blobs && delivery_start(cfg, blobs, err, sizeof(err)) < 0)) {
        fprintf(stderr, "floed: %s\n", err);
        cleanup();
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    uv_loop_t *main_loop = uv_default_loop();
    uv_async_init(main_loop, &loops_done_async, on_all_loops_done);
    uv_timer_init(main_loop, &stop_timer);
    uv_signal_init(main_loop, &sig_term);
    uv_signal_init(main_loop, &sig_int);
    uv_signal_init(main_loop, &sig_hup);
    uv_signal_start(&sig_term, on_stop_signal, SIGTERM);
    uv_signal_start(&sig_int, on_stop_signal, SIGINT);
    uv_signal_start(&sig_hup, on_hup, SIGHUP);

    for (unsigned i = 0; i < nloops; i++)
        loop_start(loops[i], loop_setup, loop_done, NULL);
    for (size_t si = 0; si < cfg->nservices; si++) {
        const struct service_config *sc = &cfg->services[si];
        for (size_t ai = 0; sc->enabled && ai < sc->nlisten; ai++)
            log_write("system", LOG_SUMMARY, NULL, NULL, "service %s listening on %s%s", sc->name,
                      sc->listen[ai].text, sc->listen[ai].tls ? " (TLS)" : "");
    }
    log_write("system", LOG_SUMMARY, NULL, NULL, "node %s started (%u I/O threads, %u workers)",
              cfg->node_id, nloops, cfg->workers);
    scheduler_event("server_started");

    uv_run(main_loop, UV_RUN_DEFAULT);

    for (unsigned i = 0; i < nloops; i++)
        loop_join(loops[i]);
    delivery_stop();
    scheduler_stop(); /* runs the server_stopped actions */
    cluster_stop();
    bus_stop();
    ips_stop();
    uv_close((uv_handle_t *)&loops_done_async, NULL);
    uv_close((uv_handle_t *)&stop_timer, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
    uv_close((uv_handle_t *)&sig_hup, NULL);
    uv_run(main_loop, UV_RUN_DEFAULT);
    uv_loop_close(main_loop);
    log_write("system", LOG_SUMMARY, NULL, NULL, "node stopped");
    cleanup();
    log_shutdown();
    return 0;
}
