/* Scheduled tasks and events ("Tasks & Events" of the product Floe replaces),
 * with the "perform on master only" flag enforced by the cluster election.
 *
 * A task (table tasks) has a cron-like schedule (cluster/cron.h) and an action:
 *   command  — /bin/sh -c TARGET, with FLOE_TASK, FLOE_NODE, FLOE_EPOCH and
 *              FLOE_SLOT in its environment; output (first 4 KiB) is recorded;
 *   url      — an HTTP(S) GET of TARGET; success is a 2xx answer;
 *   builtin  — maintenance: "tombstone_purge [DAYS]" (default 30) removes older
 *              tombstones; "blob_gc [HOURS]" (default 24) removes blobs no message
 *              references, written more than HOURS ago (storage/blobgc.h).
 * Before a run, its schedule slot is claimed with a row in task_runs: once for
 * the cluster for master-only tasks (and only while this node is master, under
 * a fencing check of the epoch in the same transaction), once per node
 * otherwise. A slot left "running" by a master that died is taken over by the
 * next master, so each slot completes once.
 *
 * Events (table events) run their command or URL when a node starts, stops or
 * reloads its configuration; master-only ones only on the master. */
#ifndef FLOE_CLUSTER_SCHEDULER_H
#define FLOE_CLUSTER_SCHEDULER_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

struct blob_store;

struct scheduler_config {
    const char *node_id;
    const char *db_url;
    void (*log)(bool warning, const char *msg, void *arg);
    void *log_arg;
    struct blob_store *blobs; /* for the blob_gc built-in and mailed alerts; may be NULL */
    const char *mail_hostname; /* the From: domain of mailed watchdog alerts */
};

int scheduler_start(const struct scheduler_config *cfg, char *err, size_t errlen);
/* Stops the scheduler, waits for event runs in flight, then runs the
 * "server_stopped" actions to the end. Call from the thread that started it. */
void scheduler_stop(void);

/* Starts the actions bound to event ("server_started", "settings_changed") on a
 * thread of their own. Call from the thread that started the scheduler. */
void scheduler_event(const char *event);

/* ---- administration (floectl) ---- */

/* Adds a task after validating name, schedule and action. 0, -3 exists, -1. */
int scheduler_task_add(PGconn *c, const char *name, const char *schedule, bool master_only,
                       const char *action, const char *target, int timeout_s, char *err,
                       size_t errlen);
int scheduler_task_remove(PGconn *c, const char *name, char *err, size_t errlen);
int scheduler_event_add(PGconn *c, const char *name, const char *event, bool master_only,
                        const char *action, const char *target, char *err, size_t errlen);
int scheduler_event_remove(PGconn *c, const char *name, char *err, size_t errlen);

#endif
