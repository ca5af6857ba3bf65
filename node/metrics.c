/* Prometheus exposition of per-service counters (see metrics.h). The histogram
 * buckets are in seconds as Prometheus expects; counts are cumulative. */
#include "node/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static struct metrics_service services[METRICS_MAX_SERVICES];
static size_t nservices;

/* Upper bounds in microseconds: 0.5 ms .. 10 s. */
static const uint64_t bucket_us[METRICS_BUCKETS] = {500,    1000,    2500,    5000,
                                                    10000,  25000,   50000,   100000,
                                                    250000, 1000000, 2500000, 10000000};

struct metrics_service *metrics_service(const char *name)
{
    for (size_t i = 0; i < nservices; i++)
        if (!strcmp(services[i].name, name))
            return &services[i];
    if (nservices >= METRICS_MAX_SERVICES)
        return NULL;
    struct metrics_service *m = &services[nservices++];
    snprintf(m->name, sizeof(m->name), "%s", name);
    m->started_unix = (int64_t)time(NULL);
    return m;
}

struct metrics_service *metrics_find(const char *name)
{
    for (size_t i = 0; i < nservices; i++)
        if (!strcmp(services[i].name, name))
            return &services[i];
    return NULL;
}

void metrics_command(struct metrics_service *m, uint64_t duration_us, bool failed)
{
    if (!m)
        return;
    atomic_fetch_add(&m->commands_total, 1);
    if (failed)
        atomic_fetch_add(&m->errors_total, 1);
    for (size_t i = 0; i < METRICS_BUCKETS; i++)
        if (duration_us <= bucket_us[i])
            atomic_fetch_add(&m->latency_bucket[i], 1);
    atomic_fetch_add(&m->latency_count, 1);
    atomic_fetch_add(&m->latency_sum_us, duration_us);
}

struct out {
    char *buf;
    size_t len, used;
    bool overflow;
};

__attribute__((format(printf, 2, 3))) static void put(struct out *o, const char *fmt, ...)
{
    if (o->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->used, o->len - o->used, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->len - o->used)
        o->overflow = true;
    else
        o->used += (size_t)n;
}

#define LOAD(x) ((unsigned long long)atomic_load(&(x)))

static void counter(struct out *o, const char *name, const char *help, const char *type,
                    size_t field_offset)
{
    put(o, "# HELP floe_%s %s\n# TYPE floe_%s %s\n", name, help, name, type);
    for (size_t i = 0; i < nservices; i++) {
        const atomic_uint_fast64_t *v =
            (const atomic_uint_fast64_t *)((const char *)&services[i] + field_offset);
        put(o, "floe_%s{service=\"%s\"} %llu\n", name, services[i].name, LOAD(*v));
    }
}

int metrics_render(char *buf, size_t len, const char *node_id)
{
    struct out o = {.buf = buf, .len = len};
    if (len == 0)
        return -1;
    buf[0] = '\0';
    put(&o, "# HELP floe_node_info Node identity.\n# TYPE floe_node_info gauge\n");
    put(&o, "floe_node_info{node=\"%s\",version=\"%s\"} 1\n", node_id, FLOE_VERSION);
    counter(&o, "connections_total", "Connections accepted.", "counter",
            offsetof(struct metrics_service, connections_total));
    put(&o, "# HELP floe_connections_active Connections open now.\n"
            "# TYPE floe_connections_active gauge\n");
    for (size_t i = 0; i < nservices; i++)
        put(&o, "floe_connections_active{service=\"%s\"} %lld\n", services[i].name,
            (long long)atomic_load(&services[i].connections_active));
    static const char *reasons[METRICS_REFUSED_COUNT] = {"access", "limit", "proxy", "tls"};
    put(&o, "# HELP floe_connections_refused_total Connections closed before the session "
            "started.\n# TYPE floe_connections_refused_total counter\n");
    for (size_t i = 0; i < nservices; i++)
        for (size_t r = 0; r < METRICS_REFUSED_COUNT; r++)
            put(&o, "floe_connections_refused_total{service=\"%s\",reason=\"%s\"} %llu\n",
                services[i].name, reasons[r], LOAD(services[i].refused[r]));
    counter(&o, "timeouts_total", "Sessions closed for inactivity.", "counter",
            offsetof(struct metrics_service, timeouts_total));
    counter(&o, "received_bytes_total", "Bytes received from clients.", "counter",
            offsetof(struct metrics_service, bytes_in));
    counter(&o, "sent_bytes_total", "Bytes sent to clients.", "counter",
            offsetof(struct metrics_service, bytes_out));
    counter(&o, "commands_total", "Protocol commands or requests handled.", "counter",
            offsetof(struct metrics_service, commands_total));
    counter(&o, "command_errors_total", "Commands answered with a protocol error.", "counter",
            offsetof(struct metrics_service, errors_total));
    put(&o, "# HELP floe_command_duration_seconds Time to answer a command.\n"
            "# TYPE floe_command_duration_seconds histogram\n");
    for (size_t i = 0; i < nservices; i++) {
        const struct metrics_service *m = &services[i];
        for (size_t b = 0; b < METRICS_BUCKETS; b++)
            put(&o, "floe_command_duration_seconds_bucket{service=\"%s\",le=\"%g\"} %llu\n",
                m->name, (double)bucket_us[b] / 1e6, LOAD(m->latency_bucket[b]));
        put(&o, "floe_command_duration_seconds_bucket{service=\"%s\",le=\"+Inf\"} %llu\n",
            m->name, LOAD(m->latency_count));
        put(&o, "floe_command_duration_seconds_sum{service=\"%s\"} %.6f\n", m->name,
            (double)LOAD(m->latency_sum_us) / 1e6);
        put(&o, "floe_command_duration_seconds_count{service=\"%s\"} %llu\n", m->name,
            LOAD(m->latency_count));
    }
    put(&o, "# HELP floe_service_start_time_seconds When the service started.\n"
            "# TYPE floe_service_start_time_seconds gauge\n");
    for (size_t i = 0; i < nservices; i++)
        put(&o, "floe_service_start_time_seconds{service=\"%s\"} %lld\n", services[i].name,
            (long long)services[i].started_unix);
    return o.overflow ? -1 : (int)o.used;
}

void metrics_connections_json(char *buf, size_t len)
{
    struct out o = {.buf = buf, .len = len};
    if (len < 3)
        return;
    put(&o, "{");
    for (size_t i = 0; i < nservices; i++)
        put(&o, "%s\"%s\":%lld", i ? "," : "", services[i].name,
            (long long)atomic_load(&services[i].connections_active));
    put(&o, "}");
    if (o.overflow)
        snprintf(buf, len, "{}");
}
