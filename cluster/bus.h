/* The cluster bus: notifications between nodes over Redis pub/sub (DESIGN §1).
 *
 * The bus runs on its own thread with its own libuv loop and two Redis
 * connections (hiredis async): one subscribed to the channels, one to publish.
 * Messages are protobuf-c encoded (proto/bus/bus.proto). When Redis is away the
 * bus reconnects every second and resubscribes; meanwhile publishes are dropped
 * (counted) and bus_connected() is false so consumers fall back to polling
 * PostgreSQL — the bus is never the only copy of anything. */
#ifndef FLOE_CLUSTER_BUS_H
#define FLOE_CLUSTER_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum bus_channel {
    BUS_MAILBOX = 0, /* MailboxChange: drives IMAP IDLE, ActiveSync Ping, DAV */
    BUS_INVALIDATE,  /* Invalidate: directory and configuration caches */
    BUS_IPS,         /* IpsEvent: intrusion-prevention blocks seen by every node */
    BUS_CHANNELS
};

/* Receives the packed Envelope of a message (decode with floe__bus__envelope__unpack)
 * on the bus thread; must not block (post work to its own loop instead). Messages a
 * node published itself are delivered to it too. */
typedef void (*bus_handler)(enum bus_channel ch, const uint8_t *data, size_t len, void *arg);

struct bus_config {
    const char *url;     /* redis://host[:port] or unix:///path/redis.sock */
    const char *node_id; /* origin of published messages; channel prefix "floe:" */
    void (*log)(bool warning, const char *msg, void *arg);
    void *log_arg;
};

/* Registers a handler for a channel; call before bus_start. 0 ok, -1 full. */
int bus_subscribe(enum bus_channel ch, bus_handler fn, void *arg);
/* Starts the bus thread. 0 ok, -1 with message (a bad URL; an unreachable Redis is
 * not an error: the bus keeps trying). */
int bus_start(const struct bus_config *cfg, char *err, size_t errlen);
void bus_stop(void);

/* Publishes a packed Envelope from any thread. 0 queued, -1 dropped (not connected,
 * queue full, or not started). */
int bus_publish(enum bus_channel ch, const uint8_t *data, size_t len);
bool bus_connected(void);

/* Counters for /metrics. */
struct bus_stats {
    uint64_t published, received, dropped, reconnects;
    bool connected;
};
void bus_get_stats(struct bus_stats *st_r);

/* Convenience: publish a MailboxChange / Invalidate for this node. */
int bus_publish_mailbox(long long account_id, long long folder_id, long long modseq, int kind);
int bus_publish_invalidate(int scope, const char *key);

#endif
