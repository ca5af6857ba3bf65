/* SmartDiscover settings per domain (seed 003 "SmartDiscover"): what client
 * auto-configuration tells the clients of one domain — a public host name, the
 * host, TLS mode and port of SMTP, POP3, IMAP, XMPP and SIP, and the URLs of the
 * web services. Stored in table smartdiscover (migration 0015); a field that is
 * not set falls back to the node configuration (node/http/discover_settings.c
 * merges them). The admin sets them with `floectl autodiscover set`.
 *
 * Values are checked before they are stored (smartdiscover_check): host names
 * are LDH names or IPv4 addresses, TLS modes "tls" (implicit TLS), "starttls"
 * (standard port, upgraded) or "none", ports 1..65535, URLs http(s) with a host
 * and no blanks or control characters. They reach XML and JSON documents, which
 * escape them again.
 *
 * Conventions of storage/directory.h: caller-owned connection, 0 / -1 with the
 * reason in err, DIR_ENOTFOUND for an unknown domain. */
#ifndef FLOE_STORAGE_SMARTDISCOVER_H
#define FLOE_STORAGE_SMARTDISCOVER_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#define SMARTDISCOVER_HOST_MAX 253
#define SMARTDISCOVER_VALUE_MAX 1024 /* longest URL */

/* The fields, in the order of smartdiscover_fields[]. The three fields of a
 * service are consecutive: host, tls, port. */
enum smartdiscover_field {
    SD_PUBLIC_HOSTNAME,
    SD_SMTP_HOST,
    SD_SMTP_TLS,
    SD_SMTP_PORT,
    SD_POP3_HOST,
    SD_POP3_TLS,
    SD_POP3_PORT,
    SD_IMAP_HOST,
    SD_IMAP_TLS,
    SD_IMAP_PORT,
    SD_XMPP_HOST,
    SD_XMPP_TLS,
    SD_XMPP_PORT,
    SD_SIP_HOST,
    SD_SIP_TLS,
    SD_SIP_PORT,
    SD_MOBILESYNC_URL,
    SD_SYNCML_URL,
    SD_WEBDAV_URL,
    SD_WEBCLIENT_URL,
    SD_WEBADMIN_URL,
    SD_FREEBUSY_URL,
    SD_ICALENDAR_URL,
    SD_CALDAV_URL,
    SD_CARDDAV_URL,
    SD_NFIELDS
};

/* The services that have host, tls and port fields. */
enum smartdiscover_service {
    SD_SVC_SMTP,
    SD_SVC_POP3,
    SD_SVC_IMAP,
    SD_SVC_XMPP,
    SD_SVC_SIP,
    SD_NSERVICES
};
#define SD_HOST_OF(svc) ((enum smartdiscover_field)(SD_SMTP_HOST + 3 * (svc)))
#define SD_TLS_OF(svc) ((enum smartdiscover_field)(SD_SMTP_TLS + 3 * (svc)))
#define SD_PORT_OF(svc) ((enum smartdiscover_field)(SD_SMTP_PORT + 3 * (svc)))

/* Field names as floectl and the documentation spell them ("imap_host", ...),
 * indexed by enum smartdiscover_field, NULL-terminated. */
extern const char *const smartdiscover_fields[SD_NFIELDS + 1];

/* One domain's stored settings; "" = not set. */
struct smartdiscover {
    char v[SD_NFIELDS][SMARTDISCOVER_VALUE_MAX + 1];
};

/* The field called name, or -1. */
int smartdiscover_field_of(const char *name);

/* Checks value for field and writes its canonical form into out (lower-case
 * host names; "ssl" and "standard" accepted for "tls" and "starttls"). 0 ok, -1
 * with the reason in err. */
int smartdiscover_check(enum smartdiscover_field f, const char *value,
                        char out[SMARTDISCOVER_VALUE_MAX + 1], char *err, size_t errlen);

/* Reads the settings of domain (its name or an alias). 0 with *sd_r filled (all
 * "" when none are set), DIR_ENOTFOUND, or -1. */
int smartdiscover_get(PGconn *c, const char *domain, struct smartdiscover *sd_r, char *err,
                      size_t errlen);

/* Sets n fields of domain in one statement: values[i] NULL or "" clears
 * fields[i]. Every value is checked first; nothing is written when one is bad.
 * 0, -1 or DIR_ENOTFOUND. */
int smartdiscover_set(PGconn *c, const char *domain, const enum smartdiscover_field *fields,
                      const char *const *values, size_t n, char *err, size_t errlen);

/* Forgets every setting of domain. 0, -1 or DIR_ENOTFOUND. */
int smartdiscover_clear(PGconn *c, const char *domain, char *err, size_t errlen);

#endif
