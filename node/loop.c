/* I/O thread loops and the cross-thread post queue.
 *
 * Each loop owns a uv_async_t; loop_post() appends to a mutex-protected list and
 * wakes the async, whose callback drains the list on the loop's thread. The async
 * handle keeps the loop alive until loop_end_keepalive() (the stop), and after
 * that only while work is outstanding: a stopping loop returns from uv_run() once
 * its listeners and sessions are closed. */
#include "node/loop.h"

#include <pthread.h>
#include <stdlib.h>

struct post {
    loop_fn fn;
    void *arg;
    struct post *next;
};

struct io_loop {
    uv_loop_t uv;
    uv_async_t wake;
    pthread_mutex_t lock;
    struct post *head, *tail;
    pthread_t thread;
    bool started;
    int index;
    unsigned outstanding; /* loop thread only */
    bool keepalive;       /* until loop_end_keepalive() */
    void (*setup)(struct io_loop *, void *);
    void (*done)(struct io_loop *, void *);
    void *setup_arg;
    char rbuf[64 * 1024];
};

static _Thread_local struct io_loop *current;

static void drain(uv_async_t *a)
{
    struct io_loop *l = a->data;
    pthread_mutex_lock(&l->lock);
    struct post *p = l->head;
    l->head = l->tail = NULL;
    pthread_mutex_unlock(&l->lock);
    while (p) {
        struct post *next = p->next;
        p->fn(p->arg);
        free(p);
        p = next;
    }
}

int loop_post(struct io_loop *l, loop_fn fn, void *arg)
{
    struct post *p = malloc(sizeof(*p));
    if (!p)
        return -1;
    *p = (struct post){.fn = fn, .arg = arg};
    pthread_mutex_lock(&l->lock);
    if (l->tail)
        l->tail->next = p;
    else
        l->head = p;
    l->tail = p;
    pthread_mutex_unlock(&l->lock);
    uv_async_send(&l->wake);
    return 0;
}

static void update_ref(struct io_loop *l)
{
    if (l->keepalive || l->outstanding > 0)
        uv_ref((uv_handle_t *)&l->wake);
    else
        uv_unref((uv_handle_t *)&l->wake);
}

void loop_work_begin(struct io_loop *l)
{
    l->outstanding++;
    update_ref(l);
}

void loop_work_end(struct io_loop *l)
{
    l->outstanding--;
    update_ref(l);
}

void loop_end_keepalive(struct io_loop *l)
{
    l->keepalive = false;
    update_ref(l);
}

uv_loop_t *loop_uv(struct io_loop *l)
{
    return &l->uv;
}

struct io_loop *loop_current(void)
{
    return current;
}

char *loop_read_buffer(struct io_loop *l, size_t *len_r)
{
    *len_r = sizeof(l->rbuf);
    return l->rbuf;
}

int loop_index(const struct io_loop *l)
{
    return l->index;
}

struct io_loop *loop_new(int index)
{
    struct io_loop *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->index = index;
    if (uv_loop_init(&l->uv) < 0) {
        free(l);
        return NULL;
    }
    pthread_mutex_init(&l->lock, NULL);
    uv_async_init(&l->uv, &l->wake, drain);
    l->wake.data = l;
    l->keepalive = true;
    return l;
}

static void *thread_main(void *arg)
{
    struct io_loop *l = arg;
    current = l;
    if (l->setup)
        l->setup(l, l->setup_arg);
    uv_run(&l->uv, UV_RUN_DEFAULT);
    /* Posts that raced with the end of the loop still run, so nothing leaks. */
    drain(&l->wake);
    if (l->done)
        l->done(l, l->setup_arg);
    current = NULL;
    return NULL;
}

int loop_start(struct io_loop *l, void (*setup)(struct io_loop *, void *),
               void (*done)(struct io_loop *, void *), void *arg)
{
    l->setup = setup;
    l->done = done;
    l->setup_arg = arg;
    if (pthread_create(&l->thread, NULL, thread_main, l) != 0)
        return -1;
    l->started = true;
    return 0;
}

void loop_join(struct io_loop *l)
{
    if (l->started)
        pthread_join(l->thread, NULL);
    l->started = false;
}

void loop_free(struct io_loop **lp)
{
    struct io_loop *l = *lp;
    if (!l)
        return;
    uv_close((uv_handle_t *)&l->wake, NULL);
    uv_run(&l->uv, UV_RUN_NOWAIT);
    drain(&l->wake);
    uv_loop_close(&l->uv);
    pthread_mutex_destroy(&l->lock);
    free(l);
    *lp = NULL;
}
