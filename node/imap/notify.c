/* "Mailbox changed" notifications for IMAP sessions (what wakes IDLE).
 *
 * A change is announced as (account, folder, modseq). Changes made through any node arrive on
 * the cluster bus (cluster/bus.h, channel BUS_MAILBOX) on the bus thread; changes made through
 * this node while the bus is not connected are handed over directly. Either way the
 * notification is posted to every I/O loop that has watching sessions (loop_post), and there
 * handed to the sessions of that loop, kept in a list only that loop's thread touches, whose
 * account matches. Nothing is lost when the bus is away: idling sessions also poll
 * (session.c), so this is a fast path, never the only one (DESIGN §1). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "cluster/bus.h"
#include "node/imap/imap.h"
#include "node/loop.h"
#include "proto/bus/bus.pb-c.h"

#define NOTIFY_LOOPS 256

struct loop_slot {
    struct io_loop *loop;
    atomic_uint watchers;
};

static struct loop_slot slots[NOTIFY_LOOPS];
static atomic_size_t nslots;
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;

/* The watching sessions of the calling I/O thread. */
static _Thread_local struct imap_session *watchers;

struct note {
    long long account_id, folder_id, modseq;
};

static struct loop_slot *slot_for(struct io_loop *l)
{
    size_t n = atomic_load(&nslots);
    for (size_t i = 0; i < n; i++)
        if (slots[i].loop == l)
            return &slots[i];
    pthread_mutex_lock(&slots_lock);
    struct loop_slot *s = NULL;
    n = atomic_load(&nslots);
    for (size_t i = 0; i < n && !s; i++)
        if (slots[i].loop == l)
            s = &slots[i];
    if (!s && n < NOTIFY_LOOPS) {
        s = &slots[n];
        s->loop = l;
        atomic_store(&s->watchers, 0);
        atomic_store(&nslots, n + 1);
    }
    pthread_mutex_unlock(&slots_lock);
    return s;
}

void imap_notify_watch(struct imap_session *s)
{
    if (s->watching)
        return;
    struct loop_slot *slot = slot_for(conn_loop(s->c));
    if (!slot)
        return;
    s->watch_prev = NULL;
    s->watch_next = watchers;
    if (watchers)
        watchers->watch_prev = s;
    watchers = s;
    s->watching = true;
    atomic_fetch_add(&slot->watchers, 1);
}

void imap_notify_unwatch(struct imap_session *s)
{
    if (!s->watching)
        return;
    if (s->watch_prev)
        s->watch_prev->watch_next = s->watch_next;
    else
        watchers = s->watch_next;
    if (s->watch_next)
        s->watch_next->watch_prev = s->watch_prev;
    s->watch_next = s->watch_prev = NULL;
    s->watching = false;
    struct loop_slot *slot = slot_for(conn_loop(s->c));
    if (slot)
        atomic_fetch_sub(&slot->watchers, 1);
}

/* On an I/O thread (or, after the loops ended, on whichever thread drains the posts: its list
 * is then empty). */
static void deliver(void *arg)
{
    struct note *n = arg;
    for (struct imap_session *s = watchers, *next; s; s = next) {
        next = s->watch_next; /* the session may stop watching while it is told */
        /* its own account, or the owner of the other account's folder it has selected */
        if (s->account.id == n->account_id ||
            (s->state == IMAP_SELECTED && s->view.owner_id == n->account_id))
            imap_session_changed(s, n->folder_id, n->modseq);
    }
    free(n);
}

static void changed(long long account_id, long long folder_id, long long modseq)
{
    size_t n = atomic_load(&nslots);
    for (size_t i = 0; i < n; i++) {
        if (atomic_load(&slots[i].watchers) == 0)
            continue;
        struct note *note = malloc(sizeof(*note));
        if (!note)
            return;
        *note = (struct note){account_id, folder_id, modseq};
        if (loop_post(slots[i].loop, deliver, note) < 0)
            free(note);
    }
}

/* On the bus thread: must not block. */
static void on_bus(enum bus_channel ch, const uint8_t *data, size_t len, void *arg)
{
    (void)ch;
    (void)arg;
    Floe__Bus__Envelope *env = floe__bus__envelope__unpack(NULL, len, data);
    if (!env)
        return;
    if (env->body_case == FLOE__BUS__ENVELOPE__BODY_MAILBOX && env->mailbox)
        changed(env->mailbox->account_id, env->mailbox->folder_id, env->mailbox->modseq);
    floe__bus__envelope__free_unpacked(env, NULL);
}

void imap_notify_init(void)
{
    bus_subscribe(BUS_MAILBOX, on_bus, NULL);
}

void imap_notify_publish(long long account_id, long long folder_id, long long modseq, int kind)
{
    /* The bus echoes our own messages back to us; without it, tell this node's sessions. */
    if (!bus_connected() || bus_publish_mailbox(account_id, folder_id, modseq, kind) < 0)
        changed(account_id, folder_id, modseq);
}
