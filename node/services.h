/* Start-up hooks of the services (route registration and the like), called
 * once by floed before any listener accepts. */
#ifndef FLOE_NODE_SERVICES_H
#define FLOE_NODE_SERVICES_H

#include "node/conn.h"

extern const struct service_ops daytime_ops;
extern const struct service_ops pop3_ops;
extern const struct service_ops imap_ops;
extern const struct service_ops smtp_ops;

void admin_http_init(void);
void api_http_init(void);

struct service_config;
void web_http_init(void);
int web_configure(struct service_config *sc, char *err, size_t errlen);
/* IMAP (node/imap/): [service imap] keys, and the bus subscription made at start-up. */
int imap_configure(struct service_config *sc, char *err, size_t errlen);
void imap_init(void);

#endif
