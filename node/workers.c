/* Worker pool: a FIFO of jobs under one mutex and condition variable, N threads
 * taking jobs from it. Completions go back with loop_post(); the submitting loop
 * is kept alive meanwhile with loop_work_begin()/loop_work_end(). */
#include "node/workers.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/log.h"
#include "node/loop.h"
#include "storage/db.h"

struct worker {
    struct workers *ws;
    pthread_t thread;
    PGconn *db;
    bool check;
};

struct workers {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job *head, *tail;
    unsigned queued, max_queue;
    bool stopping;
    char *db_url;
    unsigned statement_timeout_ms;
    unsigned nthreads;
    struct worker *w;
};

PGconn *worker_db(struct worker *w, char *err, size_t errlen)
{
    if (!*w->ws->db_url) {
        snprintf(err, errlen, "no database configured");
        return NULL;
    }
    if (w->db && (w->check || PQstatus(w->db) != CONNECTION_OK)) {
        w->check = false;
        PGresult *r = PQexec(w->db, "SELECT 1");
        bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
        if (!ok) {
            PQfinish(w->db);
            w->db = NULL;
        }
    }
    if (!w->db)
        w->db = db_connect(w->ws->db_url, (int)w->ws->statement_timeout_ms, err, errlen);
    return w->db;
}

void worker_db_check(struct worker *w)
{
    w->check = true;
}

static void completion(void *arg)
{
    struct job *j = arg;
    struct io_loop *l = j->loop;
    j->done(j);
    loop_work_end(l);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct workers *ws = w->ws;
    for (;;) {
        pthread_mutex_lock(&ws->lock);
        while (!ws->head && !ws->stopping)
            pthread_cond_wait(&ws->cond, &ws->lock);
        struct job *j = ws->head;
        if (!j) {
            pthread_mutex_unlock(&ws->lock);
            break;
        }
        ws->head = j->next;
        if (!ws->head)
            ws->tail = NULL;
        ws->queued--;
        pthread_mutex_unlock(&ws->lock);
        j->work(j, w);
        if (loop_post(j->loop, completion, j) < 0)
            log_error("system", NULL, NULL, "lost a job completion: out of memory");
    }
    if (w->db)
        PQfinish(w->db);
    w->db = NULL;
    return NULL;
}

struct workers *workers_new(unsigned threads, unsigned max_queue, const char *db_url,
                            unsigned statement_timeout_ms)
{
    struct workers *ws = calloc(1, sizeof(*ws));
    if (!ws)
        return NULL;
    pthread_mutex_init(&ws->lock, NULL);
    pthread_cond_init(&ws->cond, NULL);
    ws->max_queue = max_queue;
    ws->statement_timeout_ms = statement_timeout_ms;
    ws->db_url = strdup(db_url ? db_url : "");
    ws->w = calloc(threads, sizeof(*ws->w));
    if (!ws->db_url || !ws->w) {
        free(ws->db_url);
        free(ws->w);
        free(ws);
        return NULL;
    }
    for (unsigned i = 0; i < threads; i++) {
        ws->w[i].ws = ws;
        if (pthread_create(&ws->w[i].thread, NULL, worker_main, &ws->w[i]) != 0)
            break;
        ws->nthreads++;
    }
    if (ws->nthreads == 0) {
        struct workers *tmp = ws;
        workers_free(&tmp);
        return NULL;
    }
    return ws;
}

int workers_submit(struct workers *ws, struct job *j)
{
    struct io_loop *l = loop_current();
    if (!l)
        return -1;
    pthread_mutex_lock(&ws->lock);
    if (ws->stopping || ws->queued >= ws->max_queue) {
        pthread_mutex_unlock(&ws->lock);
        return -1;
    }
    j->loop = l;
    j->next = NULL;
    if (ws->tail)
        ws->tail->next = j;
    else
        ws->head = j;
    ws->tail = j;
    ws->queued++;
    loop_work_begin(l);
    pthread_cond_signal(&ws->cond);
    pthread_mutex_unlock(&ws->lock);
    return 0;
}

void workers_free(struct workers **wsp)
{
    struct workers *ws = *wsp;
    if (!ws)
        return;
    pthread_mutex_lock(&ws->lock);
    ws->stopping = true;
    pthread_cond_broadcast(&ws->cond);
    pthread_mutex_unlock(&ws->lock);
    for (unsigned i = 0; i < ws->nthreads; i++)
        pthread_join(ws->w[i].thread, NULL);
    pthread_mutex_destroy(&ws->lock);
    pthread_cond_destroy(&ws->cond);
    free(ws->w);
    free(ws->db_url);
    free(ws);
    *wsp = NULL;
}
