/* The settings client auto-configuration documents are built from: one
 * implementation for the web service's routes and `floectl autodiscover show`.
 *
 * Per domain, the stored SmartDiscover settings (storage/smartdiscover.h) win;
 * what they leave unset comes from the node configuration: every host is the
 * public host name (the domain's, else [service web] public_hostname, else
 * [node] hostname), IMAP and POP3 use implicit TLS on 993 and 995, SMTP
 * submission STARTTLS on 587, ActiveSync https://<public>/Microsoft-Server-ActiveSync.
 * XMPP, SIP and the other URLs are offered only when set for the domain (Floe
 * runs no XMPP or SIP service itself). */
#ifndef FLOE_NODE_HTTP_DISCOVER_SETTINGS_H
#define FLOE_NODE_HTTP_DISCOVER_SETTINGS_H

#include <stdbool.h>

#include "node/config.h"
#include "proto/autodiscover/autodiscover.h"
#include "storage/smartdiscover.h"

#define DISCOVER_NURLS (SD_NFIELDS - SD_MOBILESYNC_URL)

struct discover_settings {
    char domain[SMARTDISCOVER_HOST_MAX + 1];
    char host[SMARTDISCOVER_HOST_MAX + 1]; /* the public host name in effect */
    struct {
        bool on; /* offered to clients */
        char host[SMARTDISCOVER_HOST_MAX + 1];
        char tls[12]; /* "tls", "starttls", "none" */
        int port;
    } svc[SD_NSERVICES];
    char url[DISCOVER_NURLS][SMARTDISCOVER_VALUE_MAX + 1]; /* by field - SD_MOBILESYNC_URL */
    char autodiscover[SMARTDISCOVER_HOST_MAX + 64];
    struct autodiscover_settings s; /* points into this struct */
};

/* Fills d for domain (may be NULL) from cfg alone. */
void discover_settings(const struct config *cfg, const char *domain, struct discover_settings *d);

/* Fills d for domain from cfg and the domain's stored settings sd (NULL: none). */
void discover_settings_domain(const struct config *cfg, const char *domain,
                              const struct smartdiscover *sd, struct discover_settings *d);

/* The URL of field f (SD_MOBILESYNC_URL..SD_CARDDAV_URL) in effect, NULL when unset. */
const char *discover_url(const struct discover_settings *d, enum smartdiscover_field f);

/* The SmartDiscover answer to an authenticated GET of /autodiscover/autodiscover.xml
 * (seed 002 "SmartDiscover", Response): Culture, User (DisplayName, EMailAddress),
 * and an Account with one Protocol per offered service (Type, Server, Port, SSL,
 * Encryption, LoginName) and per set URL (Type, Server = Name = the URL,
 * LoginName). display_name may be NULL. All text is validated (UTF-8, no control
 * characters) and XML-escaped. Returns a document the caller frees, or NULL when
 * a string cannot be carried or memory runs out. */
char *discover_smartdiscover_xml(const struct discover_settings *d, const char *email,
                                 const char *display_name);

#endif
