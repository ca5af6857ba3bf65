/* Node metrics in Prometheus text format (served at /metrics on the admin listener).
 *
 * One fixed block of atomic counters per service, registered once at start; any
 * thread updates them without locks. Command latency goes into a fixed-bucket
 * histogram. Everything here is per node: the cluster view aggregates nodes. */
#ifndef FLOE_NODE_METRICS_H
#define FLOE_NODE_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_MAX_SERVICES 32
#define METRICS_BUCKETS 12

enum metrics_refusal {
    METRICS_REFUSED_ACCESS,  /* access list */
    METRICS_REFUSED_LIMIT,   /* connection limits */
    METRICS_REFUSED_PROXY,   /* missing or malformed PROXY header */
    METRICS_REFUSED_TLS,     /* TLS handshake failed or timed out */
    METRICS_REFUSED_COUNT
};

struct metrics_service {
    char name[32];
    atomic_uint_fast64_t connections_total;
    atomic_int_fast64_t connections_active;
    atomic_uint_fast64_t refused[METRICS_REFUSED_COUNT];
    atomic_uint_fast64_t timeouts_total;
    atomic_uint_fast64_t bytes_in, bytes_out;
    atomic_uint_fast64_t commands_total, errors_total;
    atomic_uint_fast64_t latency_bucket[METRICS_BUCKETS]; /* cumulative per upper bound */
    atomic_uint_fast64_t latency_count, latency_sum_us;
    int64_t started_unix;
};

/* Returns the block for service name, registering it on first use (start-up only:
 * registration itself is not thread-safe). NULL past METRICS_MAX_SERVICES. */
struct metrics_service *metrics_service(const char *name);
/* The block of a service registered at start, or NULL (safe from any thread). */
struct metrics_service *metrics_find(const char *name);
/* Records one command: its duration and whether it failed (protocol error reply). */
void metrics_command(struct metrics_service *m, uint64_t duration_us, bool failed);
/* Renders every registered service into buf (Prometheus text format 0.0.4).
 * Returns bytes written (without NUL), or -1 when buf is too small. */
int metrics_render(char *buf, size_t len, const char *node_id);

/* Open connections per service as a JSON object ({"admin":2,"imap":10}), for the
 * cluster heartbeat. Always NUL-terminates; truncates to "{}" when buf is too small. */
void metrics_connections_json(char *buf, size_t len);

#endif
