/* The admin listener's observability routes: /healthz (the process answers),
 * /readyz (this node can reach PostgreSQL: a load balancer should send traffic
 * only then) and /metrics (Prometheus text format). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/bus.h"
#include "cluster/cluster.h"
#include "node/http/http.h"
#include "node/metrics.h"
#include "node/server.h"
#include "node/services.h"
#include "node/workers.h"

static void healthz(struct http_exchange *x)
{
    http_respond(x, 200, "text/plain; charset=utf-8", "ok\n", 3, NULL);
}

struct ready_job {
    struct job job;
    struct http_exchange *x;
    bool ok;
    char err[256];
};

static void ready_work(struct job *j, struct worker *w)
{
    struct ready_job *r = (struct ready_job *)j;
    PGconn *db = worker_db(w, r->err, sizeof(r->err));
    if (!db)
        return;
    PGresult *res = PQexec(db, "SELECT 1");
    r->ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!r->ok) {
        snprintf(r->err, sizeof(r->err), "%s", PQerrorMessage(db));
        worker_db_check(w);
    }
    PQclear(res);
}

static void ready_done(struct job *j)
{
    struct ready_job *r = (struct ready_job *)j;
    if (r->ok) {
        http_respond(r->x, 200, "text/plain; charset=utf-8", "ready\n", 6, NULL);
    } else {
        char body[400];
        /* one line: libpq messages end with a newline */
        r->err[strcspn(r->err, "\r\n")] = '\0';
        int n = snprintf(body, sizeof(body), "not ready: database: %s\n", r->err);
        http_respond(r->x, 503, "text/plain; charset=utf-8", body, (size_t)n, NULL);
    }
    free(r);
}

static void readyz(struct http_exchange *x)
{
    if (server_stopping()) {
        http_respond(x, 503, "text/plain; charset=utf-8", "not ready: stopping\n", 20, NULL);
        return;
    }
    struct ready_job *r = calloc(1, sizeof(*r));
    if (!r) {
        http_respond_status(x, 503);
        return;
    }
    r->job.work = ready_work;
    r->job.done = ready_done;
    r->x = x;
    if (workers_submit(server_workers(), &r->job) < 0) {
        free(r);
        http_respond(x, 503, "text/plain; charset=utf-8", "not ready: busy\n", 16, NULL);
        return;
    }
    http_defer(x);
}

static void metrics(struct http_exchange *x)
{
    size_t cap = 64 * 1024;
    for (int tries = 0; tries < 6; tries++, cap *= 2) {
        char *buf = malloc(cap);
        if (!buf)
            break;
        struct runtime *rt = runtime_get();
        int n = metrics_render(buf, cap, rt->cfg->node_id);
        runtime_put(&rt);
        if (n >= 0) {
            long long epoch = cluster_master_epoch();
            struct bus_stats bs;
            bus_get_stats(&bs);
            int m = snprintf(
                buf + n, cap - (size_t)n,
                "# HELP floe_cluster_master 1 when this node is the cluster master.\n"
                "# TYPE floe_cluster_master gauge\nfloe_cluster_master %d\n"
                "# HELP floe_cluster_epoch Election epoch this node is master under.\n"
                "# TYPE floe_cluster_epoch gauge\nfloe_cluster_epoch %lld\n"
                "# HELP floe_bus_connected 1 while the Redis bus is connected.\n"
                "# TYPE floe_bus_connected gauge\nfloe_bus_connected %d\n"
                "# TYPE floe_bus_published_total counter\nfloe_bus_published_total %llu\n"
                "# TYPE floe_bus_received_total counter\nfloe_bus_received_total %llu\n"
                "# TYPE floe_bus_dropped_total counter\nfloe_bus_dropped_total %llu\n"
                "# TYPE floe_bus_reconnects_total counter\nfloe_bus_reconnects_total %llu\n",
                epoch > 0, epoch, bs.connected, (unsigned long long)bs.published,
                (unsigned long long)bs.received, (unsigned long long)bs.dropped,
                (unsigned long long)bs.reconnects);
            n = (m < 0 || (size_t)m >= cap - (size_t)n) ? -1 : n + m;
        }
        if (n >= 0) {
            http_respond(x, 200, "text/plain; version=0.0.4; charset=utf-8", buf, (size_t)n,
                         NULL);
            free(buf);
            return;
        }
        free(buf);
    }
    http_respond_status(x, 500);
}

void admin_http_init(void)
{
    http_route("admin", "/healthz", healthz);
    http_route("admin", "/readyz", readyz);
    http_route("admin", "/metrics", metrics);
    api_http_init();
}
