/* What the server (node/server.c) needs from node/conn.c beyond the service API. */
#ifndef FLOE_NODE_CONN_INTERNAL_H
#define FLOE_NODE_CONN_INTERNAL_H

#include <stddef.h>

struct listener;
struct io_loop;

/* Accepts one pending connection on ls (from its connection callback). */
void conn_accept(struct listener *ls);
/* Asks every session on the loop to finish (the service's goodbye, then close). */
void conn_shutdown_all(struct io_loop *l);
/* Closes every connection on the loop at once. */
void conn_abort_all(struct io_loop *l);
/* Connections open on the loop. */
size_t conn_count(struct io_loop *l);

#endif
