/* The node server: configuration snapshots, listeners on every I/O thread,
 * reload and graceful stop. node/main.c drives it; node/conn.c serves the
 * connections it accepts. */
#ifndef FLOE_NODE_SERVER_H
#define FLOE_NODE_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

#include "node/config.h"

struct tls_store;
struct service_def;
struct io_loop;
struct workers;

/* Everything derived from one configuration load. Connections keep the snapshot
 * they started with; a reload publishes a new one for new connections. */
struct runtime {
    atomic_int refs;
    struct config *cfg;
    struct tls_store *tls;
};

/* The current snapshot with a reference taken; release with runtime_put(). */
struct runtime *runtime_get(void);
void runtime_put(struct runtime **rt);

/* One listening socket of one service on one I/O thread. */
struct listener {
    uv_tcp_t tcp;
    struct io_loop *loop;
    const struct service_def *def;
    size_t service_index; /* into config.services, stable across reloads */
    struct listen_addr addr;
    struct metrics_service *metrics;
    int fd;
};

/* The node's worker pool (NULL before start). */
struct workers *server_workers(void);
/* The node's blob store (NULL without a database). */
struct blob_store *server_blobs(void);
/* True once a stop has begun: listeners are closing, sessions are saying goodbye. */
bool server_stopping(void);

/* The --port-offset given on the command line (-1: none), re-applied on reload. */
void server_set_port_offset_override(int offset);

/* Binds every listener, loads certificates, drops privileges, starts the I/O
 * threads and workers, then runs until SIGTERM/SIGINT. Reloads on SIGHUP.
 * Returns the process exit status: 0 after a clean stop, 1 on a runtime error,
 * 2 when the configuration or start-up fails (message already printed). */
int server_run(struct config *cfg);

#endif
