/* The node bootstrap configuration (DESIGN §6): what one floed needs before it can
 * reach the cluster — identity, listeners, database/Redis/blob locations, TLS,
 * access lists, logging. Every key is documented in docs/CONFIG.md.
 *
 * config_load() reads and validates the whole file; an error names file, line and
 * key. The result is immutable; a reload builds a new one. */
#ifndef FLOE_NODE_CONFIG_H
#define FLOE_NODE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "node/access.h"
#include "node/ini.h"
#include "node/log.h"
#include "storage/blob.h"

#define CONFIG_MAX_LISTEN 16
#define CONFIG_MAX_SERVICES 32
#define CONFIG_MAX_CERTS 64

struct listen_addr {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    bool tls;        /* implicit TLS; otherwise plain (STARTTLS where the protocol has it) */
    bool wildcard6;  /* the [::] half of "*:port": skipped when the host has no IPv6 */
    char text[80];   /* "127.0.0.1:13" / "[::1]:993" after port offset */
};

struct service_config {
    char name[32];
    bool enabled;
    struct listen_addr listen[CONFIG_MAX_LISTEN];
    size_t nlisten;
    bool proxy_protocol;
    struct access_list *proxy_from; /* peers whose PROXY header is required and trusted */
    enum access_mode access_mode;
    struct access_list *access;
    unsigned max_connections;        /* 0: unlimited */
    unsigned max_connections_per_ip; /* 0: unlimited */
    unsigned bandwidth_kbps;         /* per connection, both directions; 0: unlimited */
    unsigned idle_timeout;           /* seconds without input before the session is closed */
    unsigned handshake_timeout;      /* seconds to complete PROXY header + TLS handshake */
    unsigned request_timeout;        /* seconds a client may take to send one whole request or
                                        command, however it trickles (slow-client defence) */
    enum log_level log_level;
    const struct ini *ini; /* service-specific keys are read by the service itself */
};

struct cert_config {
    char name[64];
    char *file, *key, *chain;
};

/* [secure_destination NAME] (seed 003 "Secure Destinations"): outbound SMTP to a
 * matching host must use TLS with a certificate that verifies, or that matches
 * the given subject / issuer / SHA-256 fingerprint; otherwise the message is
 * returned. */
struct secure_destination {
    char name[64];
    char *host; /* host name or pattern ("*.example.com", "*") */
    char *subject, *issuer, *fingerprint; /* NULL: not required */
};

#define CONFIG_MAX_SECURE_DESTINATIONS 64

/* [smtp]: settings the SMTP services and the outbound delivery share. */
struct smtp_config {
    char *hostname;           /* greeting, Received:, HELO; default [node] hostname */
    size_t max_message_size;  /* SIZE; larger messages get 552 */
    unsigned max_recipients;  /* per message; more get 452 */
    unsigned max_errors;      /* protocol errors per session before 421 and close */
    unsigned max_received;    /* Received: headers before a message is a loop (554) */
    bool auth_requires_tls;   /* AUTH offered only under TLS */
    bool sender_login_check;  /* authenticated senders only as their own addresses */
    struct access_list *relay_from; /* clients that may relay without AUTH */
    unsigned delivery_threads;
    char *dns_servers;        /* "" = the system's resolvers */
    unsigned remote_port;     /* port of remote MX hosts (25) */
    unsigned queue_lifetime, delay_warning, retry_min, retry_max; /* seconds */
    unsigned connect_timeout, command_timeout;                    /* seconds */
    char *smarthost;          /* "" = deliver directly; else host[:port] */
    char *smarthost_user, *smarthost_password;
    struct secure_destination secure[CONFIG_MAX_SECURE_DESTINATIONS];
    size_t nsecure;
};

/* [ips]: intrusion prevention (node/ips.c, docs/OPERATIONS.md). */
struct ips_config {
    bool enabled;
    unsigned failures;          /* failed logins from one address within window ... */
    unsigned window;            /* ... seconds block it */
    unsigned block;             /* for this many seconds */
    unsigned refresh;           /* seconds between reads of the cluster's block list */
    struct access_list *exempt; /* never counted or refused ([limits] trusted neither) */
};

struct config {
    char *path;
    char *node_id;
    char *hostname;
    unsigned io_threads; /* 0 in the file: number of CPUs */
    unsigned workers;
    int port_offset;
    char *user;
    char *state_dir;
    unsigned shutdown_timeout;

    char *db_url;
    unsigned db_statement_timeout_ms;
    char *redis_url;
    char *blob_backend;
    char *blob_path; /* fs */
    char *s3_endpoint, *s3_region, *s3_bucket, *s3_access_key, *s3_secret_key, *s3_prefix;
    bool s3_path_style;
    unsigned s3_timeout;
    char *blob_spool_dir;
    size_t blob_max_size;

    char *log_dir;
    bool log_stderr;
    enum log_level log_level;
    size_t log_rotate_bytes;
    unsigned log_retention_days;

    char *tls_min_version, *tls_ciphers, *tls_ciphersuites, *tls_default;
    struct cert_config certs[CONFIG_MAX_CERTS];
    size_t ncerts;

    struct access_patterns *patterns;
    enum access_mode access_mode;
    struct access_list *access;
    struct access_list *trusted;    /* exempt from bandwidth caps */

    struct service_config services[CONFIG_MAX_SERVICES];
    size_t nservices;

    struct smtp_config smtp;
    struct ips_config ips;

    struct ini *ini;
};

/* Loads and validates FILE. port_offset_override >= 0 replaces node.port_offset.
 * NULL on error with "file:line: key 'k': reason" (or "file: reason") in err. */
struct config *config_load(const char *path, int port_offset_override, char *err, size_t errlen);
void config_free(struct config **cfg);
const struct service_config *config_service(const struct config *cfg, const char *name);
/* The blob store settings of cfg (strings point into cfg). */
struct blob_config;
void config_blob(const struct config *cfg, struct blob_config *bc_r);

/* Typed access to a service's own keys (for service_defaults.configure). Each marks the key used;
 * returns 0 (found or defaulted), -1 with message on a bad value. */
int config_service_get_str(const struct service_config *sc, const char *key, const char *def,
                           const char **out_r, char *err, size_t errlen);
int config_service_get_uint(const struct service_config *sc, const char *key, unsigned def,
                            unsigned max, unsigned *out_r, char *err, size_t errlen);
int config_service_get_bool(const struct service_config *sc, const char *key, bool def,
                            bool *out_r, char *err, size_t errlen);

/* Parses a listen list ("*:143, 127.0.0.1:1143 [::1]:143"), adding offset to each port. */
int config_parse_listen(const char *spec, bool tls, int port_offset, struct listen_addr *out,
                        size_t max, size_t *n_r, char *err, size_t errlen);

#endif
