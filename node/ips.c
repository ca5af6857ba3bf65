/* Intrusion prevention on a node (see ips.h for what it does and how services
 * call it).
 *
 * Three parts:
 *
 * 1. The report queue. ips_login_report() runs on the caller's thread: it
 *    checks [ips] enabled and the exempt lists, then copies the report (the
 *    address as a 16-byte key, the service, and the [ips] thresholds in force
 *    now) into a fixed ring under a mutex and signals the ips thread. No
 *    allocation, no I/O: cheap enough for an I/O thread.
 *
 * 2. The ips thread. It owns one PostgreSQL connection and one blocking
 *    Redis connection (1 s timeouts). For a failure it increments the
 *    address's counter (Redis INCR, with EXPIRE set when the key has no TTL
 *    yet, so the window starts at the first failure; PostgreSQL's
 *    ips_failure_add() when Redis is not configured or not answering, retried
 *    every few seconds). When the count reaches [ips] failures it writes the
 *    block to ips_blocks, puts it in the local table, publishes an IpsEvent on
 *    the bus and resets the counter. Every [ips] refresh seconds it reads the
 *    blocks in force into a new table and swaps it in (blocks made or lifted
 *    while the bus was away are picked up that way); now and then it purges
 *    expired blocks and stale counters.
 *
 * 3. The table: a hash of (address, service) -> until, guarded by a rwlock;
 *    ips_blocked() takes the read lock. Bus messages (the bus thread) and
 *    local blocks change it under the write lock and are also written to a
 *    small replay ring: a refresh notes the ring position before its query
 *    and, when it swaps the new table in, replays the changes that arrived
 *    meanwhile, so a block or release announced during a refresh is not
 *    undone by the older snapshot.
 *
 * Addresses are keys of 16 bytes, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d),
 * and text in normalised form (storage/ips.h) on the wire and in the
 * database. Times are wall-clock seconds (the database's for until; nodes are
 * expected to keep their clocks in sync, as block lengths are minutes). */
#include "node/ips.h"

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/bus.h"
#include "node/config.h"
#include "node/log.h"
#include "node/server.h"
#include "proto/bus/bus.pb-c.h"
#include "storage/db.h"
#include "storage/ips.h"

#define BUCKETS 4096
#define REPLAY 256
#define RETRY_SECONDS 5       /* between attempts to reach PostgreSQL or Redis */
#define PURGE_SECONDS 300     /* between purges of expired rows */
#define REDIS_TIMEOUT_MS 1000 /* connect and per command */
#define DB_STATEMENT_MS 10000
#define CHANNEL "floe:ips" /* cluster/bus.c's name for BUS_IPS */
#define LOGNAME "ips"

/* ---- addresses ---- */

typedef unsigned char ipkey[16];

static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static int key_from_sockaddr(const struct sockaddr *sa, ipkey key)
{
    if (!sa)
        return -1;
    if (sa->sa_family == AF_INET) {
        memcpy(key, v4mapped, 12);
        memcpy(key + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        return 0;
    }
    return -1;
}

static int key_from_text(const char *text, ipkey key)
{
    unsigned char a[16];
    if (inet_pton(AF_INET, text, a) == 1) {
        memcpy(key, v4mapped, 12);
        memcpy(key + 12, a, 4);
        return 0;
    }
    if (inet_pton(AF_INET6, text, a) == 1) {
        memcpy(key, a, 16);
        return 0;
    }
    return -1;
}

static void key_to_text(const ipkey key, char out[IPS_ADDRESS_MAX])
{
    if (!memcmp(key, v4mapped, 12))
        inet_ntop(AF_INET, key + 12, out, IPS_ADDRESS_MAX);
    else
        inet_ntop(AF_INET6, key, out, IPS_ADDRESS_MAX);
}

static uint32_t key_hash(const ipkey key)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    return h;
}

/* ---- the table ---- */

struct block {
    struct block *next;
    ipkey key;
    char service[IPS_SERVICE_MAX + 1];
    long long until;
};

struct table {
    struct block *b[BUCKETS];
    size_t n;
    bool full_warned;
};

struct change {
    ipkey key;
    char service[IPS_SERVICE_MAX + 1]; /* "" with until 0: every service */
    long long until;                   /* 0: released */
};

static pthread_rwlock_t tab_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct table *tab;            /* NULL while the module is off */
static struct change replay[REPLAY]; /* under tab_lock (write) */
static uint64_t replay_seq;          /* changes ever recorded; under tab_lock */

static void table_free(struct table **tp)
{
    struct table *t = *tp;
    if (!t)
        return;
    for (size_t i = 0; i < BUCKETS; i++)
        while (t->b[i]) {
            struct block *b = t->b[i];
            t->b[i] = b->next;
            free(b);
        }
    free(t);
    *tp = NULL;
}

/* Sets (key, service) to until, or removes it (until 0; service "" removes
 * every service of the key). */
static void table_set(struct table *t, const ipkey key, const char *service, long long until)
{
    struct block **pp = &t->b[key_hash(key) % BUCKETS];
    bool all = until == 0 && !*service;
    while (*pp) {
        struct block *b = *pp;
        if (!memcmp(b->key, key, 16) && (all || !strcmp(b->service, service))) {
            if (until == 0) {
                *pp = b->next;
                free(b);
                t->n--;
                continue;
            }
            b->until = until;
            return;
        }
        pp = &b->next;
    }
    if (until == 0)
        return;
    if (t->n >= IPS_TABLE_MAX) {
        if (!t->full_warned)
            log_warn(LOGNAME, NULL, NULL,
                     "more than %d blocked addresses: further blocks are not "
                     "held in memory until the list shrinks",
                     IPS_TABLE_MAX);
        t->full_warned = true;
        return;
    }
    struct block *b = calloc(1, sizeof(*b));
    if (!b)
        return;
    memcpy(b->key, key, 16);
    snprintf(b->service, sizeof(b->service), "%s", service);
    b->until = until;
    *pp = b;
    t->n++;
}

static bool table_blocked(const struct table *t, const ipkey key, const char *service,
                          long long now)
{
    for (const struct block *b = t->b[key_hash(key) % BUCKETS]; b; b = b->next)
        if (!memcmp(b->key, key, 16) && b->until > now &&
            (!strcmp(b->service, "*") || (service && !strcmp(b->service, service))))
            return true;
    return false;
}

/* A block or release from the bus or from this node: into the table and the
 * replay ring. */
static void table_apply(const ipkey key, const char *service, long long until)
{
    pthread_rwlock_wrlock(&tab_lock);
    struct change *ch = &replay[replay_seq++ % REPLAY];
    memcpy(ch->key, key, 16);
    snprintf(ch->service, sizeof(ch->service), "%s", service);
    ch->until = until;
    if (tab)
        table_set(tab, key, service, until);
    pthread_rwlock_unlock(&tab_lock);
}

bool ips_blocked(const struct config *cfg, const char *service, const struct sockaddr *addr)
{
    if (!cfg || !cfg->ips.enabled)
        return false;
    ipkey key;
    if (key_from_sockaddr(addr, key) < 0 || access_list_match(cfg->ips.exempt, addr) ||
        access_list_match(cfg->trusted, addr))
        return false;
    long long now = (long long)time(NULL);
    pthread_rwlock_rdlock(&tab_lock);
    bool blocked = tab && table_blocked(tab, key, service, now);
    pthread_rwlock_unlock(&tab_lock);
    return blocked;
}

/* ---- module state ---- */

struct report {
    ipkey key;
    char service[IPS_SERVICE_MAX + 1];
    bool ok;
    unsigned failures, window, block;
};

static struct {
    pthread_mutex_t lock; /* guards the queue, running and stop */
    pthread_cond_t cond;
    bool running, stop;
    struct report queue[IPS_QUEUE_MAX];
    size_t qhead, qlen;

    /* the thread's own */
    pthread_t thread;
    char *db_url, *redis_url, *node_id;
    unsigned refresh;
    PGconn *db;
    long long db_retry;
    redisContext *redis;
    long long redis_retry;
    bool redis_lost; /* said that counting moved to PostgreSQL */
    bool loaded;     /* the first read of the block list succeeded */
    unsigned last_window;

    atomic_uint_fast64_t reported, blocked, dropped, events, refreshes;
    atomic_bool redis_up;
    bool subscribed;
} ips = {.lock = PTHREAD_MUTEX_INITIALIZER};

void ips_get_stats(struct ips_stats *st)
{
    st->reported = atomic_load(&ips.reported);
    st->blocked = atomic_load(&ips.blocked);
    st->dropped = atomic_load(&ips.dropped);
    st->events = atomic_load(&ips.events);
    st->refreshes = atomic_load(&ips.refreshes);
    st->redis = atomic_load(&ips.redis_up);
    pthread_rwlock_rdlock(&tab_lock);
    st->table = tab ? tab->n : 0;
    pthread_rwlock_unlock(&tab_lock);
}

void ips_login_report(const struct config *cfg, const char *service, const struct sockaddr *addr,
                      bool ok)
{
    struct report r;
    memset(&r, 0, sizeof(r));
    if (!cfg || !cfg->ips.enabled || key_from_sockaddr(addr, r.key) < 0 ||
        access_list_match(cfg->ips.exempt, addr) || access_list_match(cfg->trusted, addr))
        return;
    snprintf(r.service, sizeof(r.service), "%s", ips_service_valid(service) ? service : "-");
    r.ok = ok;
    r.failures = cfg->ips.failures;
    r.window = cfg->ips.window;
    r.block = cfg->ips.block;
    pthread_mutex_lock(&ips.lock);
    if (!ips.running || ips.stop || ips.qlen >= IPS_QUEUE_MAX) {
        bool on = ips.running;
        pthread_mutex_unlock(&ips.lock);
        if (on)
            atomic_fetch_add(&ips.dropped, 1);
        return;
    }
    ips.queue[(ips.qhead + ips.qlen++) % IPS_QUEUE_MAX] = r;
    pthread_cond_signal(&ips.cond);
    pthread_mutex_unlock(&ips.lock);
}

void ips_login_failed(const char *service, const struct sockaddr *addr)
{
    struct runtime *rt = runtime_get();
    ips_login_report(rt->cfg, service, addr, false);
    runtime_put(&rt);
}

void ips_login_ok(const char *service, const struct sockaddr *addr)
{
    struct runtime *rt = runtime_get();
    ips_login_report(rt->cfg, service, addr, true);
    runtime_put(&rt);
}

/* ---- bus messages ---- */

/* protobuf-c's generated INIT macros cast away const on its empty string. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wcast-qual"

/* Packs an Envelope{origin, IpsEvent} into buf. Returns its length, or 0 when
 * it does not fit. */
static size_t pack_event(const char *origin, const char *address, const char *service,
                         long long until, const char *reason, uint8_t *buf, size_t buflen)
{
    Floe__Bus__IpsEvent ev = FLOE__BUS__IPS_EVENT__INIT;
    ev.address = (char *)address;
    ev.service = (char *)(service ? service : "");
    ev.until_unix = until;
    ev.reason = (char *)(reason ? reason : "");
    Floe__Bus__Envelope env = FLOE__BUS__ENVELOPE__INIT;
    env.origin_node = (char *)(origin ? origin : "");
    env.body_case = FLOE__BUS__ENVELOPE__BODY_IPS;
    env.ips = &ev;
    size_t len = floe__bus__envelope__get_packed_size(&env);
    if (len > buflen)
        return 0;
    floe__bus__envelope__pack(&env, buf);
    return len;
}

#pragma GCC diagnostic pop

/* On the bus thread: apply another node's (or our own, harmlessly again)
 * block or release. */
static void on_bus(enum bus_channel ch, const uint8_t *data, size_t len, void *arg)
{
    Floe__Bus__Envelope *env = floe__bus__envelope__unpack(NULL, len, data);
    if (!env)
        return;
    ipkey key;
    if (env->body_case == FLOE__BUS__ENVELOPE__BODY_IPS && env->ips->address &&
        key_from_text(env->ips->address, key) == 0) {
        const char *svc = env->ips->service ? env->ips->service : "";
        long long until = env->ips->until_unix > 0 ? env->ips->until_unix : 0;
        if (until && !*svc)
            svc = "*";
        if (!*svc || ips_service_valid(svc)) {
            table_apply(key, svc, until);
            atomic_fetch_add(&ips.events, 1);
            log_write(LOGNAME, LOG_DEBUG, NULL, env->ips->address, "%s %s by %s",
                      until ? "blocked" : "released", *svc ? svc : "(every service)",
                      env->origin_node ? env->origin_node : "?");
        }
    }
    floe__bus__envelope__free_unpacked(env, NULL);
}

/* ---- connections of the ips thread ---- */

static long long now_s(void)
{
    return (long long)time(NULL);
}

static PGconn *db_get(void)
{
    if (ips.db && PQstatus(ips.db) == CONNECTION_OK)
        return ips.db;
    if (ips.db) {
        PQfinish(ips.db);
        ips.db = NULL;
    }
    if (now_s() < ips.db_retry)
        return NULL;
    char err[512];
    ips.db = db_connect(ips.db_url, DB_STATEMENT_MS, err, sizeof(err));
    if (!ips.db) {
        ips.db_retry = now_s() + RETRY_SECONDS;
        log_warn(LOGNAME, NULL, NULL, "database: %s", err);
    }
    return ips.db;
}

/* After a failed statement: drop a connection that is broken. */
static void db_check(void)
{
    if (ips.db && PQstatus(ips.db) != CONNECTION_OK) {
        PQfinish(ips.db);
        ips.db = NULL;
    }
}

/* Opens a blocking connection to redis://host[:port] or unix:///path, with
 * timeout_ms for the connect and for every later command. */
static redisContext *redis_open(const char *url, int timeout_ms, char *err, size_t errlen)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *rc;
    if (!strncmp(url, "unix://", 7)) {
        rc = redisConnectUnixWithTimeout(url + 7, tv);
    } else if (!strncmp(url, "redis://", 8)) {
        const char *hp = url + 8;
        char host[256];
        int port = 6379;
        const char *colon = strrchr(hp, ':');
        size_t hl = colon ? (size_t)(colon - hp) : strlen(hp);
        if (hl == 0 || hl >= sizeof(host)) {
            snprintf(err, errlen, "redis url '%s': bad host", url);
            return NULL;
        }
        memcpy(host, hp, hl);
        host[hl] = '\0';
        if (colon) {
            char *end;
            long p = strtol(colon + 1, &end, 10);
            if (*end || p < 1 || p > 65535) {
                snprintf(err, errlen, "redis url '%s': bad port", url);
                return NULL;
            }
            port = (int)p;
        }
        rc = redisConnectWithTimeout(host, port, tv);
    } else {
        snprintf(err, errlen, "redis url '%s': expected redis://host[:port] or unix:///path", url);
        return NULL;
    }
    if (!rc) {
        snprintf(err, errlen, "redis: out of memory");
        return NULL;
    }
    if (rc->err || redisSetTimeout(rc, tv) != REDIS_OK) {
        snprintf(err, errlen, "redis at %s: %s", url, rc->err ? rc->errstr : "cannot set timeout");
        redisFree(rc);
        return NULL;
    }
    return rc;
}

static redisContext *redis_get(void)
{
    if (!*ips.redis_url)
        return NULL;
    if (ips.redis)
        return ips.redis;
    if (now_s() < ips.redis_retry)
        return NULL;
    char err[512];
    ips.redis = redis_open(ips.redis_url, REDIS_TIMEOUT_MS, err, sizeof(err));
    if (!ips.redis) {
        ips.redis_retry = now_s() + RETRY_SECONDS;
        if (!ips.redis_lost)
            log_warn(LOGNAME, NULL, NULL, "%s: counting failed logins in PostgreSQL", err);
        ips.redis_lost = true;
        return NULL;
    }
    if (ips.redis_lost)
        log_write(LOGNAME, LOG_SUMMARY, NULL, NULL, "counting failed logins in Redis again");
    ips.redis_lost = false;
    atomic_store(&ips.redis_up, true);
    return ips.redis;
}

static void redis_drop(const char *why)
{
    if (!ips.redis_lost)
        log_warn(LOGNAME, NULL, NULL, "redis: %s: counting failed logins in PostgreSQL",
                 why ? why : "no answer");
    ips.redis_lost = true;
    redisFree(ips.redis);
    ips.redis = NULL;
    ips.redis_retry = now_s() + RETRY_SECONDS;
    atomic_store(&ips.redis_up, false);
}

/* Takes the next reply; NULL (connection dropped) when there is none or it is
 * not of the expected type. */
static redisReply *redis_reply(int type)
{
    void *r = NULL;
    if (redisGetReply(ips.redis, &r) != REDIS_OK || !r) {
        redis_drop(ips.redis->err ? ips.redis->errstr : NULL);
        return NULL;
    }
    redisReply *reply = r;
    if (reply->type != type) {
        char why[160];
        snprintf(why, sizeof(why), "unexpected reply%s%.100s",
                 reply->type == REDIS_REPLY_ERROR ? ": " : "",
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "");
        freeReplyObject(reply);
        redis_drop(why);
        return NULL;
    }
    return reply;
}

/* INCR, then EXPIRE when the key has no TTL yet (a key just created, or one
 * left without a TTL by a crash between the two). 0 with the count, -1 when
 * Redis is not available. */
static int redis_count(const char *addr, unsigned window, unsigned *count_r)
{
    if (!redis_get())
        return -1;
    char key[64 + IPS_ADDRESS_MAX];
    snprintf(key, sizeof(key), "floe:ips:fail:%s", addr);
    if (redisAppendCommand(ips.redis, "INCR %s", key) != REDIS_OK ||
        redisAppendCommand(ips.redis, "TTL %s", key) != REDIS_OK) {
        redis_drop("out of memory");
        return -1;
    }
    redisReply *incr = redis_reply(REDIS_REPLY_INTEGER);
    if (!incr)
        return -1;
    long long count = incr->integer;
    freeReplyObject(incr);
    redisReply *ttl = redis_reply(REDIS_REPLY_INTEGER);
    if (!ttl)
        return -1;
    bool no_ttl = ttl->integer < 0;
    freeReplyObject(ttl);
    if (no_ttl) {
        redisReply *ex = redisCommand(ips.redis, "EXPIRE %s %u", key, window);
        if (!ex || ex->type != REDIS_REPLY_INTEGER) {
            if (ex)
                freeReplyObject(ex);
            redis_drop(ips.redis->err ? ips.redis->errstr : "EXPIRE failed");
            return -1;
        }
        freeReplyObject(ex);
    }
    *count_r = count < 0 ? 0 : count > 1000000000 ? 1000000000u : (unsigned)count;
    return 0;
}

/* DEL of the counter. 0 done, -1 Redis not available. */
static int redis_reset(const char *addr)
{
    if (!redis_get())
        return -1;
    redisReply *r = redisCommand(ips.redis, "DEL floe:ips:fail:%s", addr);
    if (!r || r->type != REDIS_REPLY_INTEGER) {
        if (r)
            freeReplyObject(r);
        redis_drop(ips.redis->err ? ips.redis->errstr : "DEL failed");
        return -1;
    }
    freeReplyObject(r);
    return 0;
}

/* ---- the ips thread's work ---- */

static void counter_reset(const char *addr)
{
    if (redis_reset(addr) == 0)
        return;
    char err[512];
    PGconn *db = db_get();
    if (db && ips_failure_reset(db, addr, err, sizeof(err)) < 0) {
        log_warn(LOGNAME, NULL, addr, "%s", err);
        db_check();
    }
}

static void block_address(const struct report *r, const char *addr, unsigned count)
{
    char reason[IPS_REASON_MAX + 1], err[512];
    snprintf(reason, sizeof(reason), "%u failed logins within %u s (last on %s)", count, r->window,
             r->service);
    long long until = now_s() + r->block;
    PGconn *db = db_get();
    if (!db ||
        ips_block_add(db, addr, "*", reason, ips.node_id, r->block, &until, err, sizeof(err)) < 0) {
        /* Still refused here and, through the bus, on the other nodes, but
         * only until their next refresh reads the list without it. */
        log_warn(LOGNAME, NULL, addr, "cannot record the block: %s",
                 db ? err : "no database connection");
        db_check();
    }
    table_apply(r->key, "*", until);
    uint8_t buf[1024];
    size_t len = pack_event(ips.node_id, addr, "*", until, reason, buf, sizeof(buf));
    if (len)
        bus_publish(BUS_IPS, buf, len); /* dropped without Redis: the others poll */
    counter_reset(addr);
    atomic_fetch_add(&ips.blocked, 1);
    log_write(LOGNAME, LOG_SUMMARY, NULL, addr, "blocked for %u s: %s", r->block, reason);
}

static void handle_failure(const struct report *r)
{
    char addr[IPS_ADDRESS_MAX], err[512];
    key_to_text(r->key, addr);
    /* A session opened before the block may go on failing: already handled. */
    pthread_rwlock_rdlock(&tab_lock);
    bool already = tab && table_blocked(tab, r->key, "*", now_s());
    pthread_rwlock_unlock(&tab_lock);
    if (already)
        return;
    unsigned count = 0;
    if (redis_count(addr, r->window, &count) < 0) {
        PGconn *db = db_get();
        if (!db || ips_failure_add(db, addr, r->window, &count, err, sizeof(err)) < 0) {
            if (db)
                log_warn(LOGNAME, NULL, addr, "cannot count the failed login: %s", err);
            db_check();
            atomic_fetch_add(&ips.dropped, 1);
            return;
        }
    }
    atomic_fetch_add(&ips.reported, 1);
    log_write(LOGNAME, LOG_DEBUG, NULL, addr, "failed login on %s: %u of %u within %u s",
              r->service, count, r->failures, r->window);
    if (count >= r->failures)
        block_address(r, addr, count);
}

struct refresh_ctx {
    struct table *t;
};

static int refresh_add(const struct ips_block *b, void *arg)
{
    struct refresh_ctx *rc = arg;
    ipkey key;
    if (key_from_text(b->address, key) == 0)
        table_set(rc->t, key, b->service, b->until_unix);
    return 0;
}

/* Reads the blocks in force into a new table and swaps it in. 0 ok, -1 the
 * database cannot be read (the current table stays). */
static int refresh(void)
{
    PGconn *db = db_get();
    if (!db)
        return -1;
    struct refresh_ctx rc = {calloc(1, sizeof(struct table))};
    if (!rc.t)
        return -1;
    pthread_rwlock_rdlock(&tab_lock);
    uint64_t start = replay_seq;
    pthread_rwlock_unlock(&tab_lock);
    char err[512];
    if (ips_block_list(db, false, IPS_TABLE_MAX, refresh_add, &rc, err, sizeof(err)) < 0) {
        log_warn(LOGNAME, NULL, NULL, "cannot read the blocked addresses: %s", err);
        db_check();
        table_free(&rc.t);
        return -1;
    }
    pthread_rwlock_wrlock(&tab_lock);
    uint64_t from = replay_seq - start > REPLAY ? replay_seq - REPLAY : start;
    for (uint64_t s = from; s < replay_seq; s++) {
        const struct change *ch = &replay[s % REPLAY];
        table_set(rc.t, ch->key, ch->service, ch->until);
    }
    struct table *old = tab;
    tab = rc.t;
    pthread_rwlock_unlock(&tab_lock);
    table_free(&old);
    atomic_fetch_add(&ips.refreshes, 1);
    return 0;
}

static void purge(void)
{
    PGconn *db = db_get();
    char err[512];
    unsigned window = ips.last_window ? ips.last_window : IPS_WINDOW_SECONDS_MAX;
    int n = db ? ips_purge(db, window, err, sizeof(err)) : 0;
    if (n < 0) {
        log_warn(LOGNAME, NULL, NULL, "%s", err);
        db_check();
    } else if (n > 0) {
        log_write(LOGNAME, LOG_DEBUG, NULL, NULL, "purged %d expired block(s)", n);
    }
}

static struct timespec mono_after(long long seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)seconds;
    return ts;
}

static bool mono_passed(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > t->tv_sec || (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

static void *thread_main(void *arg)
{
    struct timespec next_refresh = mono_after(ips.loaded ? ips.refresh : RETRY_SECONDS);
    struct timespec next_purge = mono_after(0);
    struct report batch[64];
    pthread_mutex_lock(&ips.lock);
    for (;;) {
        while (!ips.stop && ips.qlen == 0 && !mono_passed(&next_refresh))
            if (pthread_cond_timedwait(&ips.cond, &ips.lock, &next_refresh) == ETIMEDOUT)
                break;
        if (ips.stop)
            break;
        size_t n = 0;
        while (ips.qlen > 0 && n < sizeof(batch) / sizeof(batch[0])) {
            batch[n++] = ips.queue[ips.qhead];
            ips.qhead = (ips.qhead + 1) % IPS_QUEUE_MAX;
            ips.qlen--;
        }
        pthread_mutex_unlock(&ips.lock);
        for (size_t i = 0; i < n; i++) {
            ips.last_window = batch[i].window;
            if (batch[i].ok) {
                char addr[IPS_ADDRESS_MAX];
                key_to_text(batch[i].key, addr);
                counter_reset(addr);
            } else {
                handle_failure(&batch[i]);
            }
        }
        if (mono_passed(&next_refresh)) {
            /* a failed read is retried sooner than a whole interval later */
            next_refresh = mono_after(refresh() == 0 ? ips.refresh : RETRY_SECONDS);
            if (mono_passed(&next_purge)) {
                purge();
                next_purge = mono_after(PURGE_SECONDS);
            }
        }
        pthread_mutex_lock(&ips.lock);
    }
    pthread_mutex_unlock(&ips.lock);
    return NULL;
}

/* ---- start, stop ---- */

static void free_state(void)
{
    free(ips.db_url);
    free(ips.redis_url);
    free(ips.node_id);
    ips.db_url = ips.redis_url = ips.node_id = NULL;
    if (ips.db)
        PQfinish(ips.db);
    ips.db = NULL;
    if (ips.redis)
        redisFree(ips.redis);
    ips.redis = NULL;
}

int ips_start(const struct config *cfg, char *err, size_t errlen)
{
    if (ips.running) {
        snprintf(err, errlen, "intrusion prevention already started");
        return -1;
    }
    if (!cfg->db_url || !*cfg->db_url)
        return 0; /* no shared list without a database: stay off */
    ips.db_url = strdup(cfg->db_url);
    ips.redis_url = strdup(cfg->redis_url ? cfg->redis_url : "");
    ips.node_id = strdup(cfg->node_id);
    if (!ips.db_url || !ips.redis_url || !ips.node_id) {
        free_state();
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    ips.refresh = cfg->ips.refresh;
    ips.last_window = cfg->ips.window;
    ips.db_retry = ips.redis_retry = 0;
    ips.redis_lost = false;
    ips.stop = false;
    ips.qhead = ips.qlen = 0;
    struct table *t = calloc(1, sizeof(*t));
    if (!t) {
        free_state();
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_rwlock_wrlock(&tab_lock);
    tab = t;
    pthread_rwlock_unlock(&tab_lock);
    /* The blocks in force before the first connection is accepted. */
    ips.loaded = refresh() == 0;
    if (!ips.loaded)
        log_warn(LOGNAME, NULL, NULL,
                 "starting without the list of blocked addresses; "
                 "retrying in %d s",
                 RETRY_SECONDS);
    if (!ips.subscribed && bus_subscribe(BUS_IPS, on_bus, NULL) == 0)
        ips.subscribed = true;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ips.cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&ips.thread, NULL, thread_main, NULL) != 0) {
        pthread_cond_destroy(&ips.cond);
        pthread_rwlock_wrlock(&tab_lock);
        table_free(&tab);
        pthread_rwlock_unlock(&tab_lock);
        free_state();
        snprintf(err, errlen, "cannot start the intrusion prevention thread");
        return -1;
    }
    pthread_mutex_lock(&ips.lock);
    ips.running = true;
    pthread_mutex_unlock(&ips.lock);
    return 0;
}

void ips_stop(void)
{
    pthread_mutex_lock(&ips.lock);
    bool was = ips.running;
    if (was) {
        ips.stop = true;
        pthread_cond_signal(&ips.cond);
    }
    pthread_mutex_unlock(&ips.lock);
    if (!was)
        return;
    pthread_join(ips.thread, NULL);
    pthread_mutex_lock(&ips.lock);
    ips.running = false;
    ips.qlen = 0;
    pthread_mutex_unlock(&ips.lock);
    pthread_cond_destroy(&ips.cond);
    pthread_rwlock_wrlock(&tab_lock);
    table_free(&tab);
    pthread_rwlock_unlock(&tab_lock);
    free_state();
    atomic_store(&ips.redis_up, false);
}

/* ---- floectl ---- */

int ips_announce(const char *redis_url, const char *origin, const char *address,
                 const char *service, long long until_unix, const char *reason, char *err,
                 size_t errlen)
{
    if (!redis_url || !*redis_url) {
        snprintf(err, errlen, "no [redis] url");
        return -1;
    }
    char addr[IPS_ADDRESS_MAX];
    if (ips_address_normalize(address, addr, sizeof(addr)) < 0) {
        snprintf(err, errlen, "'%.64s' is not a host address", address ? address : "");
        return -1;
    }
    uint8_t buf[1024];
    size_t len = pack_event(origin, addr, until_unix > 0 && (!service || !*service) ? "*" : service,
                            until_unix > 0 ? until_unix : 0, reason, buf, sizeof(buf));
    if (!len) {
        snprintf(err, errlen, "event too large");
        return -1;
    }
    redisContext *rc = redis_open(redis_url, 2000, err, errlen);
    if (!rc)
        return -1;
    redisReply *r = redisCommand(rc, "PUBLISH %s %b", CHANNEL, buf, len);
    int ret = 0;
    if (!r || r->type != REDIS_REPLY_INTEGER) {
        snprintf(err, errlen, "redis PUBLISH failed: %s",
                 rc->err                             ? rc->errstr
                 : r && r->type == REDIS_REPLY_ERROR ? r->str
                                                     : "no answer");
        ret = -1;
    }
    if (r)
        freeReplyObject(r);
    redisFree(rc);
    return ret;
}
