/* Cluster membership and master election (DESIGN §1, §5).
 *
 * Each node runs one cluster thread with its own PostgreSQL connection. Every
 * second it refreshes the node's heartbeat row and, unless another node is
 * pinned as master, tries the election advisory lock. The holder of the lock is
 * the master; each takeover increments the epoch in cluster_leader (a fencing
 * token that master-only work records with its effects). Losing the connection
 * loses the lock, and the thread reports the loss at once.
 *
 * A frozen master keeps its lock (its backend is alive) but stops its
 * heartbeats; after CLUSTER_STALE_SECONDS the other nodes terminate the
 * backend that holds the lock and the next one takes it. When the frozen node
 * wakes it finds its connection gone (or the epoch moved on) before it does any
 * master-only work, and logs that it lost the mastership. */
#ifndef FLOE_CLUSTER_CLUSTER_H
#define FLOE_CLUSTER_CLUSTER_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#define CLUSTER_ELECTION_LOCK_KEY 0x466C6F6500000002LL
#define CLUSTER_HEARTBEAT_MS 1000
#define CLUSTER_STALE_SECONDS 8  /* a master silent this long is removed */
#define CLUSTER_GONE_SECONDS 60  /* status: a node silent this long is "gone" */

struct cluster_config {
    const char *node_id;
    const char *db_url;
    const char *addresses; /* for status: the node's listeners */
    const char *version;
    const char *roles;
    /* Called on the cluster thread whenever mastership is won (epoch > 0) or lost
     * (epoch 0). May be NULL. */
    void (*on_change)(bool master, long long epoch, void *arg);
    void *arg;
    /* Receives the thread's messages (warning = true for problems); the cluster
     * layer does no logging of its own. May be NULL. */
    void (*log)(bool warning, const char *msg, void *arg);
    /* Called on the cluster thread before each heartbeat to fill the node's open
     * connections per service as a JSON object text (e.g. {"imap":3}); may be NULL. */
    void (*connections_json)(char *buf, size_t len, void *arg);
};

/* Starts the cluster thread. 0 ok, -1 with message. */
int cluster_start(const struct cluster_config *cfg, char *err, size_t errlen);
/* Stops it: releases the lock (stepping down cleanly), marks the node stopped. */
void cluster_stop(void);

/* The epoch this node is master under, or 0 when it is not master. Safe from any
 * thread; a master-only task reads it before and records it with its work. */
long long cluster_master_epoch(void);

/* Confirms on conn (any connection) that epoch is still the cluster's current one:
 * the fencing check a master-only task makes inside its own transaction
 * (SELECT ... FOR SHARE on cluster_leader). 1 current, 0 superseded, -1 error. */
int cluster_epoch_is_current(PGconn *conn, long long epoch);

/* ---- operator view and controls (floectl and the admin API) ---- */

struct cluster_node_status {
    char node_id[64];
    char state[8]; /* "up", "stale", "gone", "stopped" */
    char addresses[256];
    char version[32];
    long long heartbeat_age_s;
    long long started_unix;
    char connections[512]; /* JSON object text */
    bool master;
};

struct cluster_status {
    long long epoch;
    char master[64];      /* "" when none */
    char pinned[64];      /* "" when not pinned */
    long long master_since_unix;
    struct cluster_node_status *nodes;
    size_t nnodes;
};

int cluster_status_read(PGconn *c, struct cluster_status *st_r, char *err, size_t errlen);
void cluster_status_free(struct cluster_status *st);
/* Pins the master to node (NULL: unpin). The current master steps down when it is
 * not the pinned node; only the pinned node then stands. */
int cluster_pin(PGconn *c, const char *node, char *err, size_t errlen);
/* Asks the current master to step down; another node takes over. */
int cluster_stepdown(PGconn *c, char *err, size_t errlen);

#endif
