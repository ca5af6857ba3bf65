/* Worker jobs of the IMAP service (the pattern of node/smtp/session.c): a command copies what
 * it needs into a job, the job runs its storage calls on a worker, and done() applies the result
 * on the session's thread. While a job runs the session is busy and its input paused, so
 * pipelined commands wait in order; the job holds the connection, and a client that goes away
 * meanwhile only makes the result be thrown away.
 *
 * A job submitted while a mailbox is selected also collects what changed in that mailbox since
 * the view's modseq (view.c), on the same worker connection right after its own work, so the
 * tagged reply follows the EXISTS / EXPUNGE / FETCH updates RFC 9051 §7 wants sent with it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/imap/imap.h"
#include "node/server.h"

static void job_work(struct job *jb, struct worker *w)
{
    struct imap_job *j = (struct imap_job *)jb;
    PGconn *db = worker_db(w, j->err, sizeof(j->err));
    if (!db) {
        j->rc = -2;
        return;
    }
    j->work(j, db);
    if (j->sync && j->changes && j->rc != -2) {
        char err[256];
        if (imap_changes_collect(db, j->owner_id, j->folder_id, j->since, j->changes, err,
                                 sizeof(err)) < 0)
            j->changes->failed = true;
    }
    if (PQstatus(db) != CONNECTION_OK)
        worker_db_check(w);
}

void imap_job_destroy(struct imap_job *j)
{
    if (!j)
        return;
    imap_changes_free(&j->changes);
    if (j->destroy)
        j->destroy(j);
    else
        free(j);
}

static void job_done(struct job *jb)
{
    struct imap_job *j = (struct imap_job *)jb;
    struct conn *c = j->c;
    struct imap_session *s = conn_session(c);
    j->keep = false;
    if (!conn_closing(c) && !s->closed) {
        imap_session_enter(s);
        s->busy = false;
        j->done(s, j);
        if (!s->busy)
            imap_unbusy(s);
        imap_session_leave(s);
    }
    if (!j->keep)
        imap_job_destroy(j);
    conn_release(c);
}

static int submit(struct imap_session *s, struct imap_job *j)
{
    j->c = s->c;
    j->job.work = job_work;
    j->job.done = job_done;
    j->account_id = s->account.id;
    j->cfg = &s->cfg;
    if (workers_submit(server_workers(), &j->job) < 0) {
        conn_log(s->c, LOG_SUMMARY, "worker queue full");
        if (!j->quiet)
            imap_tagged(s, "NO", "[UNAVAILABLE] Server busy, try again later");
        return -1;
    }
    s->busy = true;
    conn_hold(s->c);
    conn_pause(s->c);
    return 0;
}

int imap_job_submit(struct imap_session *s, struct imap_job *j, bool with_sync)
{
    if (s->state == IMAP_SELECTED && !j->folder_id) {
        j->folder_id = s->view.folder_id;
        j->owner_id = s->view.owner_id;
    }
    if (with_sync && s->state == IMAP_SELECTED) {
        j->sync = true;
        j->folder_id = s->view.folder_id;
        j->owner_id = s->view.owner_id;
        j->since = s->view.known_modseq;
        j->changes = calloc(1, sizeof(*j->changes));
        if (!j->changes) {
            if (!j->quiet)
                imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
            imap_job_destroy(j);
            return -1;
        }
    }
    if (submit(s, j) < 0) {
        imap_job_destroy(j);
        return -1;
    }
    return 0;
}

int imap_job_resubmit(struct imap_session *s, struct imap_job *j)
{
    if (s->drain_job == j)
        s->drain_job = NULL;
    if (submit(s, j) < 0) {
        j->keep = false;
        return -1;
    }
    j->keep = true;
    return 0;
}

void imap_job_park(struct imap_session *s, struct imap_job *j)
{
    j->keep = true;
    s->drain_job = j;
    s->busy = true;
    conn_pause(s->c);
}
