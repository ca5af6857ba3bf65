/* Cluster membership and master election (see cluster.h for the model).
 *
 * The cluster thread is a plain loop with a one-second tick on its own
 * connection: heartbeat, read the leader row, then either keep/give up the
 * mastership or try to take it (removing a frozen master first). All state the
 * rest of the node reads is one atomic: the epoch we are master under. */
#include "cluster/cluster.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "storage/db.h"

/* pg_locks shows a bigint advisory key as classid (high half) and objid (low half). */
#define LOCK_CLASSID "1181511525"
#define LOCK_OBJID "2"
#define LOCK_HOLDER_SQL                                                                            \
    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = " LOCK_CLASSID \
    " AND objid = " LOCK_OBJID " AND objsubid = 1"

static struct {
    struct cluster_config cfg;
    char *node_id, *db_url, *addresses, *version, *roles;
    pthread_t thread;
    bool running;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    atomic_llong epoch; /* > 0 while master */
    PGconn *db;
    time_t cooldown_until; /* after a step-down, do not stand again before this */
} cl = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

__attribute__((format(printf, 2, 3))) static void say(bool warning, const char *fmt, ...)
{
    if (!cl.cfg.log)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cl.cfg.log(warning, msg, cl.cfg.arg);
}

long long cluster_master_epoch(void)
{
    return atomic_load(&cl.epoch);
}

static void set_master(long long epoch, const char *why)
{
    long long old = atomic_exchange(&cl.epoch, epoch);
    if (old == epoch)
        return;
    if (epoch > 0)
        say(false, "this node is master (epoch %lld)", epoch);
    else
        say(true, "this node is no longer master (epoch %lld): %s", old, why);
    if (cl.cfg.on_change)
        cl.cfg.on_change(epoch > 0, epoch, cl.cfg.arg);
}

static PGresult *q(const char *sql, int n, const char *const *params)
{
    return PQexecParams(cl.db, sql, n, NULL, params, NULL, NULL, 0);
}

static bool exec_ok(const char *sql, int n, const char *const *params)
{
    PGresult *r = q(sql, n, params);
    bool ok = db_ok(r);
    PQclear(r);
    return ok;
}

static void disconnect(const char *why)
{
    if (cl.db)
        PQfinish(cl.db);
    cl.db = NULL;
    set_master(0, why);
}

static bool connect_db(void)
{
    char err[512];
    cl.db = db_connect(cl.db_url, 5000, err, sizeof(err));
    if (!cl.db) {
        say(true, "cannot reach the database: %s", err);
        return false;
    }
    char pid[16];
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    const char *p[] = {cl.node_id, cl.addresses, cl.version, cl.roles, pid};
    if (!exec_ok("INSERT INTO cluster_nodes (node_id, addresses, version, roles, pid, backend_pid,"
                 " started_at, heartbeat_at, stopped_at)"
                 " VALUES ($1, $2, $3, $4, $5::integer, pg_backend_pid(), now(), now(), NULL)"
                 " ON CONFLICT (node_id) DO UPDATE SET addresses = $2, version = $3, roles = $4,"
                 " pid = $5::integer, backend_pid = pg_backend_pid(), started_at = now(),"
                 " heartbeat_at = now(), stopped_at = NULL",
                 5, p)) {
        say(true, "cannot register the node: %s", PQerrorMessage(cl.db));
        PQfinish(cl.db);
        cl.db = NULL;
        return false;
    }
    return true;
}

static bool heartbeat(void)
{
    char conns[1024] = "{}";
    if (cl.cfg.connections_json)
        cl.cfg.connections_json(conns, sizeof(conns), cl.cfg.arg);
    const char *p[] = {cl.node_id, conns};
    return exec_ok("UPDATE cluster_nodes SET heartbeat_at = now(), connections = $2::jsonb,"
                   " backend_pid = pg_backend_pid() WHERE node_id = $1",
                   2, p);
}

struct leader {
    long long epoch, stepdown_epoch;
    char node[64], pinned[64];
    bool pinned_up; /* the pinned node heartbeats */
};

static bool read_leader(struct leader *l)
{
    PGresult *r = q("SELECT l.epoch, coalesce(l.node_id, ''), coalesce(l.pinned_node, ''),"
                    " l.stepdown_epoch, coalesce((SELECT heartbeat_at > now() - make_interval("
                    "secs => $1::integer) AND stopped_at IS NULL FROM cluster_nodes"
                    " WHERE node_id = l.pinned_node), false)"
                    " FROM cluster_leader l WHERE id = 1",
                    1, (const char *const[]){"8"});
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    if (ok) {
        l->epoch = atoll(PQgetvalue(r, 0, 0));
        snprintf(l->node, sizeof(l->node), "%s", PQgetvalue(r, 0, 1));
        snprintf(l->pinned, sizeof(l->pinned), "%s", PQgetvalue(r, 0, 2));
        l->stepdown_epoch = atoll(PQgetvalue(r, 0, 3));
        l->pinned_up = PQgetvalue(r, 0, 4)[0] == 't';
    }
    PQclear(r);
    return ok;
}

static void step_down(const char *why, int cooldown_s)
{
    exec_ok("SELECT pg_advisory_unlock(x'466C6F6500000002'::bigint)", 0, NULL);
    cl.cooldown_until = time(NULL) + cooldown_s;
    set_master(0, why);
}

/* A master whose heartbeats stopped (frozen, partitioned from us but not from the
 * database) still holds the lock: end its backend so the lock is released. */
static void remove_frozen_master(void)
{
    char secs[16];
    snprintf(secs, sizeof(secs), "%d", CLUSTER_STALE_SECONDS);
    PGresult *r = q("SELECT n.node_id, h.pid FROM cluster_leader l"
                    " JOIN cluster_nodes n ON n.node_id = l.node_id"
                    " JOIN (" LOCK_HOLDER_SQL ") h ON true"
                    " WHERE l.id = 1 AND n.heartbeat_at < now() - make_interval(secs => $1::integer)",
                    1, (const char *const[]){secs});
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        char node[64];
        snprintf(node, sizeof(node), "%s", PQgetvalue(r, 0, 0));
        const char *pid = PQgetvalue(r, 0, 1);
        say(true, "master %s sent no heartbeat for %d s: ending its database session (pid %s)", node,
                 CLUSTER_STALE_SECONDS, pid);
        const char *p[] = {pid};
        exec_ok("SELECT pg_terminate_backend($1::integer)", 1, p);
    }
    PQclear(r);
}

static void try_take(void)
{
    PGresult *r = q("SELECT pg_try_advisory_lock(x'466C6F6500000002'::bigint)", 0, NULL);
    bool got = PQresultStatus(r) == PGRES_TUPLES_OK && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (!got) {
        remove_frozen_master();
        return;
    }
    const char *p[] = {cl.node_id};
    r = q("UPDATE cluster_leader SET epoch = epoch + 1, node_id = $1, since = now()"
          " WHERE id = 1 RETURNING epoch",
          1, p);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        set_master(atoll(PQgetvalue(r, 0, 0)), "");
    } else {
        exec_ok("SELECT pg_advisory_unlock(x'466C6F6500000002'::bigint)", 0, NULL);
    }
    PQclear(r);
}

static void tick(void)
{
    if (!cl.db && !connect_db())
        return;
    if (!heartbeat() || PQstatus(cl.db) != CONNECTION_OK) {
        disconnect("the database connection was lost (and the lock with it)");
        return;
    }
    struct leader l;
    if (!read_leader(&l)) {
        disconnect("cannot read the leader record");
        return;
    }
    long long mine = atomic_load(&cl.epoch);
    if (mine > 0) {
        if (l.epoch != mine || strcmp(l.node, cl.node_id)) {
            /* Someone else took over: our session must have been ended meanwhile. */
            disconnect("another node took over");
        } else if (*l.pinned && strcmp(l.pinned, cl.node_id) && l.pinned_up) {
            step_down("the master is pinned to another node", 2);
        } else if (l.stepdown_epoch == mine) {
            step_down("asked to step down", 5);
        }
        return;
    }
    if (time(NULL) < cl.cooldown_until)
        return;
    if (*l.pinned && strcmp(l.pinned, cl.node_id) && l.pinned_up)
        return; /* only the pinned node stands while it is up */
    try_take();
}

static void *thread_main(void *arg)
{
    pthread_mutex_lock(&cl.lock);
    while (!cl.stop) {
        pthread_mutex_unlock(&cl.lock);
        tick();
        pthread_mutex_lock(&cl.lock);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += CLUSTER_HEARTBEAT_MS / 1000;
        while (!cl.stop && pthread_cond_timedwait(&cl.cond, &cl.lock, &ts) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&cl.lock);
    if (cl.db) {
        if (atomic_load(&cl.epoch) > 0)
            step_down("the node is stopping", 0);
        const char *p[] = {cl.node_id};
        exec_ok("UPDATE cluster_nodes SET stopped_at = now() WHERE node_id = $1", 1, p);
        PQfinish(cl.db);
        cl.db = NULL;
    }
    return NULL;
}

int cluster_start(const struct cluster_config *cfg, char *err, size_t errlen)
{
    cl.cfg = *cfg;
    cl.node_id = strdup(cfg->node_id);
    cl.db_url = strdup(cfg->db_url);
    cl.addresses = strdup(cfg->addresses ? cfg->addresses : "");
    cl.version = strdup(cfg->version ? cfg->version : "");
    cl.roles = strdup(cfg->roles ? cfg->roles : "");
    cl.stop = false;
    if (!cl.node_id || !cl.db_url || !cl.addresses || !cl.version || !cl.roles ||
        pthread_create(&cl.thread, NULL, thread_main, NULL) != 0) {
        snprintf(err, errlen, "cannot start the cluster thread");
        return -1;
    }
    cl.running = true;
    return 0;
}

void cluster_stop(void)
{
    if (!cl.running)
        return;
    pthread_mutex_lock(&cl.lock);
    cl.stop = true;
    pthread_cond_signal(&cl.cond);
    pthread_mutex_unlock(&cl.lock);
    pthread_join(cl.thread, NULL);
    cl.running = false;
    free(cl.node_id);
    free(cl.db_url);
    free(cl.addresses);
    free(cl.version);
    free(cl.roles);
    cl.node_id = cl.db_url = cl.addresses = cl.version = cl.roles = NULL;
}

int cluster_epoch_is_current(PGconn *c, long long epoch)
{
    char e[24];
    snprintf(e, sizeof(e), "%lld", epoch);
    const char *p[] = {e};
    PGresult *r = PQexecParams(c, "SELECT epoch = $1::bigint FROM cluster_leader WHERE id = 1 FOR SHARE",
                               1, NULL, p, NULL, NULL, 0);
    int res = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        res = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return res;
}

/* ---- operator view ---- */

int cluster_status_read(PGconn *c, struct cluster_status *st, char *err, size_t errlen)
{
    memset(st, 0, sizeof(*st));
    PGresult *r = PQexecParams(
        c,
        "SELECT l.epoch, coalesce(l.node_id, ''), coalesce(l.pinned_node, ''),"
        " coalesce(extract(epoch FROM l.since)::bigint, 0),"
        " EXISTS (" LOCK_HOLDER_SQL ") FROM cluster_leader l WHERE l.id = 1",
        0, NULL, NULL, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        db_set_error(err, errlen, c, r, "cannot read the cluster leader");
        PQclear(r);
        return -1;
    }
    st->epoch = atoll(PQgetvalue(r, 0, 0));
    bool held = PQgetvalue(r, 0, 4)[0] == 't';
    if (held)
        snprintf(st->master, sizeof(st->master), "%s", PQgetvalue(r, 0, 1));
    snprintf(st->pinned, sizeof(st->pinned), "%s", PQgetvalue(r, 0, 2));
    st->master_since_unix = atoll(PQgetvalue(r, 0, 3));
    PQclear(r);

    r = PQexecParams(c,
                     "SELECT node_id, addresses, version,"
                     " extract(epoch FROM now() - heartbeat_at)::bigint,"
                     " extract(epoch FROM started_at)::bigint, connections::text,"
                     " stopped_at IS NOT NULL FROM cluster_nodes ORDER BY node_id",
                     0, NULL, NULL, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        db_set_error(err, errlen, c, r, "cannot read the cluster nodes");
        PQclear(r);
        return -1;
    }
    int n = PQntuples(r);
    st->nodes = calloc((size_t)(n > 0 ? n : 1), sizeof(*st->nodes));
    if (!st->nodes) {
        PQclear(r);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        struct cluster_node_status *ns = &st->nodes[i];
        snprintf(ns->node_id, sizeof(ns->node_id), "%s", PQgetvalue(r, i, 0));
        snprintf(ns->addresses, sizeof(ns->addresses), "%s", PQgetvalue(r, i, 1));
        snprintf(ns->version, sizeof(ns->version), "%s", PQgetvalue(r, i, 2));
        ns->heartbeat_age_s = atoll(PQgetvalue(r, i, 3));
        ns->started_unix = atoll(PQgetvalue(r, i, 4));
        snprintf(ns->connections, sizeof(ns->connections), "%s", PQgetvalue(r, i, 5));
        bool stopped = PQgetvalue(r, i, 6)[0] == 't';
        const char *state = stopped                                         ? "stopped"
                            : ns->heartbeat_age_s < CLUSTER_STALE_SECONDS ? "up"
                            : ns->heartbeat_age_s < CLUSTER_GONE_SECONDS  ? "stale"
                                                                           : "gone";
        snprintf(ns->state, sizeof(ns->state), "%s", state);
        ns->master = held && !strcmp(ns->node_id, st->master);
    }
    st->nnodes = (size_t)n;
    PQclear(r);
    return 0;
}

void cluster_status_free(struct cluster_status *st)
{
    free(st->nodes);
    st->nodes = NULL;
    st->nnodes = 0;
}

int cluster_pin(PGconn *c, const char *node, char *err, size_t errlen)
{
    if (node) {
        const char *p[] = {node};
        PGresult *r = PQexecParams(c, "SELECT 1 FROM cluster_nodes WHERE node_id = $1", 1, NULL,
                                   p, NULL, NULL, 0);
        bool known = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
        PQclear(r);
        if (!known) {
            snprintf(err, errlen, "unknown node '%s'", node);
            return -2;
        }
    }
    const char *p[] = {node};
    PGresult *r = PQexecParams(c, "UPDATE cluster_leader SET pinned_node = $1 WHERE id = 1", 1,
                               NULL, p, NULL, NULL, 0);
    int rc = db_ok(r) ? 0 : -1;
    if (rc)
        db_set_error(err, errlen, c, r, "cannot pin the master");
    PQclear(r);
    return rc;
}

int cluster_stepdown(PGconn *c, char *err, size_t errlen)
{
    PGresult *r = PQexecParams(c, "UPDATE cluster_leader SET stepdown_epoch = epoch WHERE id = 1",
                               0, NULL, NULL, NULL, NULL, 0);
    int rc = db_ok(r) ? 0 : -1;
    if (rc)
        db_set_error(err, errlen, c, r, "cannot ask the master to step down");
    PQclear(r);
    return rc;
}
