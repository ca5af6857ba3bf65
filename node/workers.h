/* The bounded worker pool for blocking work (DESIGN §3): storage calls, password
 * hashing, blob reads. Each worker thread owns one PostgreSQL connection, opened
 * on first use and reopened after a failure. A job submitted from an I/O thread
 * runs work() on a worker, then done() back on the submitting thread. */
#ifndef FLOE_NODE_WORKERS_H
#define FLOE_NODE_WORKERS_H

#include <libpq-fe.h>
#include <stddef.h>

struct io_loop;
struct workers;
struct worker;

struct job {
    void (*work)(struct job *j, struct worker *w); /* on a worker thread */
    void (*done)(struct job *j);                   /* on the submitting I/O thread */
    /* set by workers_submit */
    struct io_loop *loop;
    struct job *next;
};

/* The worker's database connection, (re)connected as needed. NULL with a message
 * in err when the database cannot be reached. */
PGconn *worker_db(struct worker *w, char *err, size_t errlen);
/* Marks the connection broken (after a failed query whose cause may be the link):
 * the next worker_db() checks it and reconnects. */
void worker_db_check(struct worker *w);

/* threads workers, at most max_queue waiting jobs. db_url may be "" (no database). */
struct workers *workers_new(unsigned threads, unsigned max_queue, const char *db_url,
                            unsigned statement_timeout_ms);
/* Queues j from an I/O thread. 0 ok; -1 when the queue is full (the caller answers
 * "busy") — j is untouched then. */
int workers_submit(struct workers *ws, struct job *j);
/* Runs the queued jobs to the end, joins the threads, closes the connections. */
void workers_free(struct workers **ws);

#endif
