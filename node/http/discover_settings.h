/* The settings client auto-configuration documents are built from: one
 * implementation for the web service's routes and `floectl autodiscover show`. */
#ifndef FLOE_NODE_HTTP_DISCOVER_SETTINGS_H
#define FLOE_NODE_HTTP_DISCOVER_SETTINGS_H

#include "node/config.h"
#include "proto/autodiscover/autodiscover.h"

struct discover_settings {
    char host[256];
    char activesync[300], autodiscover[300];
    struct autodiscover_settings s; /* points into this struct and at domain */
};

/* Fills d for domain from cfg: every protocol on [service web] public_hostname
 * (default [node] hostname) with the standard ports: IMAP 993 and POP3 995 with
 * implicit TLS, submission 587 with STARTTLS, ActiveSync on HTTPS. */
void discover_settings(const struct config *cfg, const char *domain, struct discover_settings *d);

#endif
