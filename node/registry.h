/* The compiled-in list of services: their names, default listeners and timeouts,
 * the hook that validates their own configuration keys, and their session code. */
#ifndef FLOE_NODE_REGISTRY_H
#define FLOE_NODE_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

#include "node/config.h"
#include "node/conn.h"

struct service_def {
    const char *name;
    bool enabled;           /* default */
    const char *listen;     /* default plain listeners ("" none; "*:13" = IPv4 and IPv6) */
    const char *listen_tls; /* default implicit-TLS listeners */
    unsigned idle_timeout;  /* default, seconds */
    const char *label, *scheme;         /* endpoint line for plain listeners: "imap", "imap" */
    const char *label_tls, *scheme_tls; /* and for TLS listeners: "imaps", "imaps" */
    /* Validates the service's own keys (config_service_get_*); may be NULL. */
    int (*configure)(struct service_config *sc, char *err, size_t errlen);
    /* Runs once at start-up, before listeners accept (e.g. registers HTTP routes). */
    void (*init)(void);
    const struct service_ops *ops;
};

extern const struct service_def service_defs[];
extern const size_t service_defs_count;

const struct service_def *registry_find(const char *name);
/* Runs every service's init hook. */
void registry_init(void);

#endif
