/* The cluster bus over Redis pub/sub (see bus.h).
 *
 * Everything Redis-related happens on the bus thread: hiredis async contexts
 * are attached to its libuv loop, and other threads hand their publishes over
 * through a bounded, locked queue plus a uv_async wake-up. Each of the two
 * contexts (subscriber, publisher) reconnects on its own after a loss, one
 * second later, for as long as the node runs. */
#include "cluster/bus.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "proto/bus/bus.pb-c.h"

#define QUEUE_MAX 10000
#define MAX_HANDLERS 16
#define RECONNECT_MS 1000

static const char *const channel_names[BUS_CHANNELS] = {"floe:mailbox", "floe:invalidate",
                                                        "floe:ips"};

struct handler {
    enum bus_channel ch;
    bus_handler fn;
    void *arg;
};

struct queued {
    struct queued *next;
    enum bus_channel ch;
    size_t len;
    uint8_t data[];
};

static struct {
    char *url, *node_id;
    void (*log)(bool, const char *, void *);
    void *log_arg;
    struct handler handlers[MAX_HANDLERS];
    size_t nhandlers;

    pthread_t thread;
    bool running;
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t retry;
    redisAsyncContext *sub, *pub;
    bool sub_ready, pub_ready;
    bool stopping; /* bus thread only */

    pthread_mutex_t lock;
    struct queued *head, *tail;
    size_t queued;
    bool stop_requested;

    atomic_bool connected;
    atomic_uint_fast64_t published, received, dropped, reconnects;
} bus = {.lock = PTHREAD_MUTEX_INITIALIZER};

__attribute__((format(printf, 2, 3))) static void say(bool warning, const char *fmt, ...)
{
    if (!bus.log)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    bus.log(warning, msg, bus.log_arg);
}

static void update_connected(void)
{
    bool now = bus.sub_ready && bus.pub_ready;
    bool before = atomic_exchange(&bus.connected, now);
    if (now && !before)
        say(false, "connected to Redis at %s", bus.url);
    else if (!now && before)
        say(true, "lost Redis at %s: notifications fall back to polling until it returns", bus.url);
}

int bus_subscribe(enum bus_channel ch, bus_handler fn, void *arg)
{
    if (bus.nhandlers >= MAX_HANDLERS || ch >= BUS_CHANNELS)
        return -1;
    bus.handlers[bus.nhandlers++] = (struct handler){ch, fn, arg};
    return 0;
}

/* ---- connections ---- */

static redisAsyncContext *open_context(void)
{
    redisAsyncContext *ac;
    if (!strncmp(bus.url, "unix://", 7)) {
        ac = redisAsyncConnectUnix(bus.url + 7);
    } else {
        const char *hp = !strncmp(bus.url, "redis://", 8) ? bus.url + 8 : bus.url;
        char host[256];
        int port = 6379;
        const char *colon = strrchr(hp, ':');
        size_t hl = colon ? (size_t)(colon - hp) : strlen(hp);
        if (hl >= sizeof(host))
            return NULL;
        memcpy(host, hp, hl);
        host[hl] = '\0';
        if (colon)
            port = atoi(colon + 1);
        ac = redisAsyncConnect(host, port);
    }
    if (!ac)
        return NULL;
    if (ac->err || redisLibuvAttach(ac, &bus.loop) != REDIS_OK) {
        redisAsyncFree(ac);
        return NULL;
    }
    return ac;
}

static void connect_all(void);

static void on_retry(uv_timer_t *t)
{
    atomic_fetch_add(&bus.reconnects, 1);
    connect_all();
}

static void retry_later(void)
{
    if (!bus.stopping)
        uv_timer_start(&bus.retry, on_retry, RECONNECT_MS, 0);
}

static void on_message(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply *reply = r;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3)
        return;
    redisReply *kind = reply->element[0];
    if (kind->type != REDIS_REPLY_STRING)
        return;
    if (!strcmp(kind->str, "subscribe")) {
        /* the reply to our SUBSCRIBE, one per channel; the last one means ready */
        if (reply->element[2]->type == REDIS_REPLY_INTEGER &&
            reply->element[2]->integer == BUS_CHANNELS) {
            bus.sub_ready = true;
            update_connected();
        }
        return;
    }
    if (strcmp(kind->str, "message") || reply->element[1]->type != REDIS_REPLY_STRING ||
        reply->element[2]->type != REDIS_REPLY_STRING)
        return;
    for (int ch = 0; ch < BUS_CHANNELS; ch++) {
        if (strcmp(reply->element[1]->str, channel_names[ch]))
            continue;
        atomic_fetch_add(&bus.received, 1);
        for (size_t i = 0; i < bus.nhandlers; i++)
            if (bus.handlers[i].ch == (enum bus_channel)ch)
                bus.handlers[i].fn((enum bus_channel)ch, (const uint8_t *)reply->element[2]->str,
                                   reply->element[2]->len, bus.handlers[i].arg);
    }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    bool is_sub = ac == bus.sub;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback */
        if (is_sub)
            bus.sub = NULL;
        else
            bus.pub = NULL;
        retry_later();
        return;
    }
    if (is_sub) {
        redisAsyncCommand(bus.sub, on_message, NULL, "SUBSCRIBE %s %s %s", channel_names[0],
                          channel_names[1], channel_names[2]);
    } else {
        bus.pub_ready = true;
        update_connected();
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    if (ac == bus.sub) {
        bus.sub = NULL;
        bus.sub_ready = false;
    } else {
        bus.pub = NULL;
        bus.pub_ready = false;
    }
    update_connected();
    retry_later();
}

static redisAsyncContext *start_context(void)
{
    redisAsyncContext *ac = open_context();
    if (!ac)
        return NULL;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    return ac;
}

static void connect_all(void)
{
    if (bus.stopping)
        return;
    if (!bus.sub)
        bus.sub = start_context();
    if (!bus.pub)
        bus.pub = start_context();
    if (!bus.sub || !bus.pub)
        retry_later();
}

/* ---- publishing ---- */

static void drain(uv_async_t *a)
{
    pthread_mutex_lock(&bus.lock);
    struct queued *q = bus.head;
    bus.head = bus.tail = NULL;
    bus.queued = 0;
    bool stop = bus.stop_requested;
    pthread_mutex_unlock(&bus.lock);
    while (q) {
        struct queued *next = q->next;
        if (bus.pub_ready && bus.pub &&
            redisAsyncCommand(bus.pub, NULL, NULL, "PUBLISH %s %b", channel_names[q->ch], q->data,
                              q->len) == REDIS_OK)
            atomic_fetch_add(&bus.published, 1);
        else
            atomic_fetch_add(&bus.dropped, 1);
        free(q);
        q = next;
    }
    if (stop && !bus.stopping) {
        bus.stopping = true;
        uv_timer_stop(&bus.retry);
        if (bus.sub)
            redisAsyncDisconnect(bus.sub);
        if (bus.pub)
            redisAsyncDisconnect(bus.pub);
        uv_close((uv_handle_t *)&bus.retry, NULL);
        uv_close((uv_handle_t *)&bus.wake, NULL);
    }
}

int bus_publish(enum bus_channel ch, const uint8_t *data, size_t len)
{
    if (!bus.running || ch >= BUS_CHANNELS || !atomic_load(&bus.connected)) {
        atomic_fetch_add(&bus.dropped, 1);
        return -1;
    }
    struct queued *q = malloc(sizeof(*q) + len);
    if (!q)
        return -1;
    q->next = NULL;
    q->ch = ch;
    q->len = len;
    memcpy(q->data, data, len);
    pthread_mutex_lock(&bus.lock);
    if (bus.queued >= QUEUE_MAX) {
        pthread_mutex_unlock(&bus.lock);
        free(q);
        atomic_fetch_add(&bus.dropped, 1);
        return -1;
    }
    if (bus.tail)
        bus.tail->next = q;
    else
        bus.head = q;
    bus.tail = q;
    bus.queued++;
    pthread_mutex_unlock(&bus.lock);
    uv_async_send(&bus.wake);
    return 0;
}

static int publish_envelope(enum bus_channel ch, Floe__Bus__Envelope *env)
{
    env->origin_node = bus.node_id ? bus.node_id : (char *)"";
    size_t len = floe__bus__envelope__get_packed_size(env);
    uint8_t buf[1024];
    if (len > sizeof(buf))
        return -1;
    floe__bus__envelope__pack(env, buf);
    return bus_publish(ch, buf, len);
}

/* protobuf-c's generated INIT macros cast away const on its empty string. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wcast-qual"

int bus_publish_mailbox(long long account_id, long long folder_id, long long modseq, int kind)
{
    Floe__Bus__MailboxChange mc = FLOE__BUS__MAILBOX_CHANGE__INIT;
    mc.account_id = account_id;
    mc.folder_id = folder_id;
    mc.modseq = modseq;
    mc.kind = (Floe__Bus__MailboxChange__Kind)kind;
    Floe__Bus__Envelope env = FLOE__BUS__ENVELOPE__INIT;
    env.body_case = FLOE__BUS__ENVELOPE__BODY_MAILBOX;
    env.mailbox = &mc;
    return publish_envelope(BUS_MAILBOX, &env);
}

int bus_publish_invalidate(int scope, const char *key)
{
    Floe__Bus__Invalidate inv = FLOE__BUS__INVALIDATE__INIT;
    inv.scope = (Floe__Bus__Invalidate__Scope)scope;
    char *k = strdup(key ? key : "");
    if (!k)
        return -1;
    inv.key = k;
    Floe__Bus__Envelope env = FLOE__BUS__ENVELOPE__INIT;
    env.body_case = FLOE__BUS__ENVELOPE__BODY_INVALIDATE;
    env.invalidate = &inv;
    int rc = publish_envelope(BUS_INVALIDATE, &env);
    free(k);
    return rc;
}

#pragma GCC diagnostic pop

/* ---- thread ---- */

static void *thread_main(void *arg)
{
    connect_all();
    uv_run(&bus.loop, UV_RUN_DEFAULT);
    uv_loop_close(&bus.loop);
    return NULL;
}

int bus_start(const struct bus_config *cfg, char *err, size_t errlen)
{
    if (strncmp(cfg->url, "unix://", 7) && strncmp(cfg->url, "redis://", 8)) {
        snprintf(err, errlen, "redis url '%s': expected redis://host[:port] or unix:///path",
                 cfg->url);
        return -1;
    }
    bus.url = strdup(cfg->url);
    bus.node_id = strdup(cfg->node_id ? cfg->node_id : "");
    bus.log = cfg->log;
    bus.log_arg = cfg->log_arg;
    bus.stopping = bus.stop_requested = false;
    if (!bus.url || !bus.node_id || uv_loop_init(&bus.loop) != 0) {
        snprintf(err, errlen, "cannot start the bus");
        return -1;
    }
    uv_async_init(&bus.loop, &bus.wake, drain);
    uv_timer_init(&bus.loop, &bus.retry);
    if (pthread_create(&bus.thread, NULL, thread_main, NULL) != 0) {
        snprintf(err, errlen, "cannot start the bus thread");
        return -1;
    }
    bus.running = true;
    return 0;
}

void bus_stop(void)
{
    if (!bus.running)
        return;
    pthread_mutex_lock(&bus.lock);
    bus.stop_requested = true;
    pthread_mutex_unlock(&bus.lock);
    uv_async_send(&bus.wake);
    pthread_join(bus.thread, NULL);
    bus.running = false;
    atomic_store(&bus.connected, false);
    free(bus.url);
    free(bus.node_id);
    bus.url = bus.node_id = NULL;
}

bool bus_connected(void)
{
    return atomic_load(&bus.connected);
}

void bus_get_stats(struct bus_stats *st)
{
    st->published = atomic_load(&bus.published);
    st->received = atomic_load(&bus.received);
    st->dropped = atomic_load(&bus.dropped);
    st->reconnects = atomic_load(&bus.reconnects);
    st->connected = atomic_load(&bus.connected);
}
