/* Typed, validated node configuration built from the INI entries (node/ini.c).
 *
 * Each reader (get_str, get_uint, ...) marks the entries it consumes; after every
 * known section has been read, any entry left unmarked is an unknown key and the
 * load fails, naming its line. Services are configured from the compiled-in
 * registry (node/registry.c) so every service has defaults even without a section. */
#include "node/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "node/registry.h"

#define ERR(...) (snprintf(err, errlen, __VA_ARGS__), -1)

static struct ini_entry *find(const struct ini *ini, const char *section, const char *name,
                              const char *key)
{
    struct ini_entry *found = NULL;
    for (size_t i = 0; i < ini->count; i++) {
        struct ini_entry *e = &ini->entries[i];
        if (!strcmp(e->section, section) && !strcmp(e->name, name) && !strcmp(e->key, key)) {
            e->used = true;
            found = e; /* the last occurrence wins, like most daemons */
        }
    }
    return found;
}

__attribute__((format(printf, 5, 6))) static int where(char *err, size_t errlen,
                                                        const struct ini *ini,
                                                        const struct ini_entry *e,
                                                        const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return ERR("%s:%d: key '%s': %s", ini->path, e->line, e->key, msg);
}

static int get_str(const struct ini *ini, const char *sec, const char *name, const char *key,
                   const char *def, char **out)
{
    struct ini_entry *e = find(ini, sec, name, key);
    const char *v = e ? e->value : def;
    free(*out);
    *out = v ? strdup(v) : NULL;
    return (v && !*out) ? -1 : 0;
}

static int parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
    if (!*s || !isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

static int get_uint(const struct ini *ini, const char *sec, const char *name, const char *key,
                    unsigned def, unsigned max, unsigned *out, char *err, size_t errlen)
{
    struct ini_entry *e = find(ini, sec, name, key);
    if (!e) {
        *out = def;
        return 0;
    }
    unsigned long long v;
    if (parse_uint(e->value, max, &v) < 0) {
        char lim[32];
        snprintf(lim, sizeof(lim), "%u", max);
        return where(err, errlen, ini, e, "expected a whole number from 0 to %s", lim);
    }
    *out = (unsigned)v;
    return 0;
}

static int get_int(const struct ini *ini, const char *sec, const char *name, const char *key,
                   int def, int min, int max, int *out, char *err, size_t errlen)
{
    struct ini_entry *e = find(ini, sec, name, key);
    if (!e) {
        *out = def;
        return 0;
    }
    errno = 0;
    char *end;
    long v = strtol(e->value, &end, 10);
    if (!*e->value || errno || *end || v < min || v > max) {
        char lim[64];
        snprintf(lim, sizeof(lim), "%d to %d", min, max);
        return where(err, errlen, ini, e, "expected a whole number from %s", lim);
    }
    *out = (int)v;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *yes[] = {"yes", "true", "on", "1"}, *no[] = {"no", "false", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(s, yes[i]))
            return *out = true, 0;
        if (!strcasecmp(s, no[i]))
            return *out = false, 0;
    }
    return -1;
}

static int get_bool(const struct ini *ini, const char *sec, const char *name, const char *key,
                    bool def, bool *out, char *err, size_t errlen)
{
    struct ini_entry *e = find(ini, sec, name, key);
    if (!e) {
        *out = def;
        return 0;
    }
    if (parse_bool(e->value, out) < 0)
        return where(err, errlen, ini, e, "expected yes or no, got '%s'", e->value);
    return 0;
}

/* Sizes: plain bytes or with a K/M/G suffix (powers of 1024). */
static int get_size(const struct ini *ini, const char *sec, const char *key, size_t def,
                    size_t *out, char *err, size_t errlen)
{
    struct ini_entry *e = find(ini, sec, "", key);
    if (!e) {
        *out = def;
        return 0;
    }
    char num[32];
    size_t n = strlen(e->value);
    unsigned long long mult = 1;
    if (n > 0 && n < sizeof(num)) {
        char last = (char)toupper((unsigned char)e->value[n - 1]);
        if (last == 'K' || last == 'M' || last == 'G') {
            mult = last == 'K' ? 1ULL << 10 : last == 'M' ? 1ULL << 20 : 1ULL << 30;
            n--;
        }
    }
    unsigned long long v;
    if (n == 0 || n >= sizeof(num))
        return where(err, errlen, ini, e, "expected a size such as 64M, got '%s'", e->value);
    memcpy(num, e->value, n);
    num[n] = '\0';
    if (parse_uint(num, (1ULL << 40) / mult, &v) < 0)
        return where(err, errlen, ini, e, "expected a size such as 64M, got '%s'", e->value);
    *out = (size_t)(v * mult);
    return 0;
}

static int get_level(const struct ini *ini, const char *sec, const char *name, const char *key,
                     enum log_level def, enum log_level *out, char *err, size_t errlen)
{
    struct ini_entry *e = find(ini, sec, name, key);
    if (!e) {
        *out = def;
        return 0;
    }
    if (log_level_parse(e->value, out) < 0)
        return where(err, errlen, ini, e, "expected none, summary, debug or extended, got '%s'",
                     e->value);
    return 0;
}

static int get_access_list(const struct config *cfg, const char *sec, const char *name,
                           const char *key, const char *def, struct access_list **out, char *err,
                           size_t errlen)
{
    struct ini_entry *e = find(cfg->ini, sec, name, key);
    const char *spec = e ? e->value : def;
    char why[256] = "";
    access_list_free(out);
    *out = access_list_parse(spec, cfg->patterns, why, sizeof(why));
    if (!*out) {
        if (e)
            return where(err, errlen, cfg->ini, e, "%s", why);
        return ERR("%s: default for '%s': %s", cfg->ini->path, key, why);
    }
    return 0;
}

static int get_access_mode(const struct ini *ini, const char *sec, const char *name,
                           const char *key, enum access_mode *out, char *err, size_t errlen)
{
    struct ini_entry *e = find(ini, sec, name, key);
    *out = ACCESS_OFF;
    if (e && access_mode_parse(e->value, out) < 0)
        return where(err, errlen, ini, e, "expected off, grant or deny, got '%s'", e->value);
    return 0;
}

/* ---- listen addresses ---- */

static int add_listen(struct listen_addr *out, size_t max, size_t *n, const char *host, long port,
                      bool tls, bool wildcard6, char *err, size_t errlen)
{
    if (*n >= max)
        return ERR("too many listen addresses (at most %zu)", max);
    struct listen_addr *l = &out[*n];
    memset(l, 0, sizeof(*l));
    l->tls = tls;
    l->wildcard6 = wildcard6;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&l->addr;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&l->addr;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        l->addrlen = sizeof(*s4);
        snprintf(l->text, sizeof(l->text), "%s:%ld", host, port);
    } else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        l->addrlen = sizeof(*s6);
        snprintf(l->text, sizeof(l->text), "[%s]:%ld", host, port);
    } else {
        return ERR("'%s' is not an IP address", host);
    }
    (*n)++;
    return 0;
}

int config_parse_listen(const char *spec, bool tls, int port_offset, struct listen_addr *out,
                        size_t max, size_t *n_r, char *err, size_t errlen)
{
    *n_r = 0;
    char buf[1024];
    if (strlen(spec) >= sizeof(buf))
        return ERR("listen list too long");
    strcpy(buf, spec);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
        char host[INET6_ADDRSTRLEN + 2];
        const char *portstr;
        if (tok[0] == '[') {
            char *close = strchr(tok, ']');
            if (!close || close[1] != ':' || (size_t)(close - tok - 1) >= sizeof(host))
                return ERR("'%s': expected [IPv6]:port", tok);
            memcpy(host, tok + 1, (size_t)(close - tok - 1));
            host[close - tok - 1] = '\0';
            portstr = close + 2;
        } else {
            char *colon = strrchr(tok, ':');
            if (!colon || (size_t)(colon - tok) >= sizeof(host))
                return ERR("'%s': expected address:port", tok);
            memcpy(host, tok, (size_t)(colon - tok));
            host[colon - tok] = '\0';
            portstr = colon + 1;
        }
        unsigned long long port;
        if (parse_uint(portstr, 65535, &port) < 0 || port == 0)
            return ERR("'%s': port must be 1 to 65535", tok);
        long p = (long)port + port_offset;
        if (p < 1 || p > 65535)
            return ERR("'%s': port %ld after port_offset %d is out of range", tok, p, port_offset);
        if (!strcmp(host, "*")) {
            if (add_listen(out, max, n_r, "0.0.0.0", p, tls, false, err, errlen) < 0 ||
                add_listen(out, max, n_r, "::", p, tls, true, err, errlen) < 0)
                return -1;
        } else if (add_listen(out, max, n_r, host, p, tls, false, err, errlen) < 0) {
            return -1;
        }
    }
    return 0;
}

static int get_listen(const struct config *cfg, struct service_config *sc, const char *key,
                      const char *def, bool tls, char *err, size_t errlen)
{
    struct ini_entry *e = find(cfg->ini, "service", sc->name, key);
    const char *spec = e ? e->value : def;
    size_t n = 0;
    char why[300];
    if (config_parse_listen(spec, tls, cfg->port_offset, sc->listen + sc->nlisten,
                            CONFIG_MAX_LISTEN - sc->nlisten, &n, why, sizeof(why)) < 0) {
        if (e)
            return where(err, errlen, cfg->ini, e, "%s", why);
        return ERR("%s: [service %s] default %s: %s", cfg->path, sc->name, key, why);
    }
    sc->nlisten += n;
    return 0;
}

/* ---- service-specific key access ---- */

int config_service_get_str(const struct service_config *sc, const char *key, const char *def,
                           const char **out_r, char *err, size_t errlen)
{
    struct ini_entry *e = find(sc->ini, "service", sc->name, key);
    *out_r = e ? e->value : def;
    return 0;
}

int config_service_get_uint(const struct service_config *sc, const char *key, unsigned def,
                            unsigned max, unsigned *out_r, char *err, size_t errlen)
{
    return get_uint(sc->ini, "service", sc->name, key, def, max, out_r, err, errlen);
}

int config_service_get_bool(const struct service_config *sc, const char *key, bool def,
                            bool *out_r, char *err, size_t errlen)
{
    return get_bool(sc->ini, "service", sc->name, key, def, out_r, err, errlen);
}

/* ---- whole file ---- */

static int load_service(struct config *cfg, const struct service_def *def, char *err,
                        size_t errlen)
{
    if (cfg->nservices >= CONFIG_MAX_SERVICES)
        return ERR("too many services");
    struct service_config *sc = &cfg->services[cfg->nservices++];
    snprintf(sc->name, sizeof(sc->name), "%s", def->name);
    sc->ini = cfg->ini;
    const struct ini *ini = cfg->ini;
    const char *n = def->name;
    if (get_bool(ini, "service", n, "enabled", def->enabled, &sc->enabled, err, errlen) < 0 ||
        get_listen(cfg, sc, "listen", def->listen, false, err, errlen) < 0 ||
        get_listen(cfg, sc, "listen_tls", def->listen_tls, true, err, errlen) < 0 ||
        get_bool(ini, "service", n, "proxy_protocol", false, &sc->proxy_protocol, err, errlen) <
            0 ||
        get_access_list(cfg, "service", n, "proxy_from", "127.0.0.1;::1", &sc->proxy_from, err,
                        errlen) < 0 ||
        get_access_mode(ini, "service", n, "access", &sc->access_mode, err, errlen) < 0 ||
        get_access_list(cfg, "service", n, "access_list", "", &sc->access, err, errlen) < 0 ||
        get_uint(ini, "service", n, "max_connections", 0, 10000000, &sc->max_connections, err,
                 errlen) < 0 ||
        get_uint(ini, "service", n, "max_connections_per_ip", 0, 10000000,
                 &sc->max_connections_per_ip, err, errlen) < 0 ||
        get_uint(ini, "service", n, "bandwidth", 0, 10000000, &sc->bandwidth_kbps, err, errlen) <
            0 ||
        get_uint(ini, "service", n, "idle_timeout", def->idle_timeout, 86400, &sc->idle_timeout,
                 err, errlen) < 0 ||
        get_uint(ini, "service", n, "handshake_timeout", 30, 3600, &sc->handshake_timeout, err,
                 errlen) < 0 ||
        get_uint(ini, "service", n, "request_timeout", 60, 86400, &sc->request_timeout, err,
                 errlen) < 0 ||
        get_level(ini, "service", n, "log", cfg->log_level, &sc->log_level, err, errlen) < 0)
        return -1;
    if (sc->idle_timeout == 0 || sc->handshake_timeout == 0 || sc->request_timeout == 0)
        return ERR("%s: [service %s]: timeouts must be at least 1 second", cfg->path, n);
    if (def->configure && def->configure(sc, err, errlen) < 0)
        return -1;
    return 0;
}

static int load_smtp(struct config *cfg, char *err, size_t errlen)
{
    const struct ini *ini = cfg->ini;
    struct smtp_config *sm = &cfg->smtp;
    size_t default_size = 50u << 20;
    if (get_str(ini, "smtp", "", "hostname", cfg->hostname, &sm->hostname) < 0 ||
        get_size(ini, "smtp", "max_message_size", default_size, &sm->max_message_size, err,
                 errlen) < 0 ||
        get_uint(ini, "smtp", "", "max_recipients", 500, 100000, &sm->max_recipients, err,
                 errlen) < 0 ||
        get_uint(ini, "smtp", "", "max_errors", 10, 1000, &sm->max_errors, err, errlen) < 0 ||
        get_uint(ini, "smtp", "", "max_received", 50, 1000, &sm->max_received, err, errlen) < 0 ||
        get_bool(ini, "smtp", "", "auth_requires_tls", true, &sm->auth_requires_tls, err,
                 errlen) < 0 ||
        get_bool(ini, "smtp", "", "sender_login_check", true, &sm->sender_login_check, err,
                 errlen) < 0 ||
        get_access_list(cfg, "smtp", "", "relay_from", "127.0.0.1;::1", &sm->relay_from, err,
                        errlen) < 0 ||
        get_uint(ini, "smtp", "", "delivery_threads", 4, 256, &sm->delivery_threads, err,
                 errlen) < 0 ||
        get_str(ini, "smtp", "", "dns_servers", "", &sm->dns_servers) < 0 ||
        get_uint(ini, "smtp", "", "remote_port", 25, 65535, &sm->remote_port, err, errlen) < 0 ||
        get_uint(ini, "smtp", "", "queue_lifetime", 432000, 86400 * 60, &sm->queue_lifetime, err,
                 errlen) < 0 ||
        get_uint(ini, "smtp", "", "delay_warning", 14400, 86400 * 60, &sm->delay_warning, err,
                 errlen) < 0 ||
        get_uint(ini, "smtp", "", "retry_min", 300, 86400, &sm->retry_min, err, errlen) < 0 ||
        get_uint(ini, "smtp", "", "retry_max", 14400, 86400 * 7, &sm->retry_max, err, errlen) <
            0 ||
        get_uint(ini, "smtp", "", "connect_timeout", 30, 3600, &sm->connect_timeout, err,
                 errlen) < 0 ||
        get_uint(ini, "smtp", "", "command_timeout", 300, 3600, &sm->command_timeout, err,
                 errlen) < 0 ||
        get_str(ini, "smtp", "", "smarthost", "", &sm->smarthost) < 0 ||
        get_str(ini, "smtp", "", "smarthost_user", "", &sm->smarthost_user) < 0 ||
        get_str(ini, "smtp", "", "smarthost_password", "", &sm->smarthost_password) < 0)
        return -1;
    if (sm->max_message_size < 1024)
        return where(err, errlen, ini, find(ini, "smtp", "", "max_message_size"), "%s",
                     "at least 1K");
    if (sm->retry_min == 0 || sm->retry_max < sm->retry_min)
        return ERR("%s: [smtp] retry_min must be at least 1 and at most retry_max", cfg->path);
    if (sm->delivery_threads == 0)
        return ERR("%s: [smtp] delivery_threads must be at least 1", cfg->path);
    for (size_t i = 0; i < ini->count; i++) {
        struct ini_entry *e = &ini->entries[i];
        if (strcmp(e->section, "secure_destination") || !*e->name || strcmp(e->key, "host"))
            continue;
        if (sm->nsecure >= CONFIG_MAX_SECURE_DESTINATIONS)
            return where(err, errlen, ini, e, "%s", "too many secure destinations");
        struct secure_destination *sd = &sm->secure[sm->nsecure++];
        snprintf(sd->name, sizeof(sd->name), "%s", e->name);
        if (get_str(ini, "secure_destination", sd->name, "host", NULL, &sd->host) < 0 ||
            get_str(ini, "secure_destination", sd->name, "subject", NULL, &sd->subject) < 0 ||
            get_str(ini, "secure_destination", sd->name, "issuer", NULL, &sd->issuer) < 0 ||
            get_str(ini, "secure_destination", sd->name, "fingerprint", NULL, &sd->fingerprint) <
                0)
            return ERR("out of memory");
    }
    return 0;
}

/* [ips]: needs cfg->patterns (the exempt list may name patterns). */
static int load_ips(struct config *cfg, char *err, size_t errlen)
{
    const struct ini *ini = cfg->ini;
    struct ips_config *ip = &cfg->ips;
    if (get_bool(ini, "ips", "", "enabled", true, &ip->enabled, err, errlen) < 0 ||
        get_uint(ini, "ips", "", "failures", 10, 100000, &ip->failures, err, errlen) < 0 ||
        get_uint(ini, "ips", "", "window", 600, 86400, &ip->window, err, errlen) < 0 ||
        get_uint(ini, "ips", "", "block", 3600, 86400 * 3660, &ip->block, err, errlen) < 0 ||
        get_uint(ini, "ips", "", "refresh", 30, 3600, &ip->refresh, err, errlen) < 0 ||
        get_access_list(cfg, "ips", "", "exempt", "", &ip->exempt, err, errlen) < 0)
        return -1;
    if (ip->failures == 0 || ip->window == 0 || ip->block == 0 || ip->refresh == 0)
        return ERR("%s: [ips] failures, window, block and refresh must be at least 1", cfg->path);
    return 0;
}

static int load_sections(struct config *cfg, char *err, size_t errlen)
{
    struct ini *ini = cfg->ini;
    char host[256] = "localhost";
    gethostname(host, sizeof(host) - 1);

    /* Patterns first: access lists anywhere may name them. */
    cfg->patterns = access_patterns_new();
    if (!cfg->patterns)
        return ERR("out of memory");
    for (size_t i = 0; i < ini->count; i++) {
        struct ini_entry *e = &ini->entries[i];
        if (strcmp(e->section, "pattern"))
            continue;
        if (!*e->name || strcmp(e->key, "list"))
            return where(err, errlen, ini, e, "%s",
                         "a [pattern NAME] section takes one key: list");
        e->used = true;
        if (access_patterns_set(cfg->patterns, e->name, e->value) < 0)
            return ERR("out of memory");
    }

    if (get_str(ini, "node", "", "id", host, &cfg->node_id) < 0 ||
        get_str(ini, "node", "", "hostname", host, &cfg->hostname) < 0 ||
        get_uint(ini, "node", "", "io_threads", 0, 256, &cfg->io_threads, err, errlen) < 0 ||
        get_uint(ini, "node", "", "workers", 8, 1024, &cfg->workers, err, errlen) < 0 ||
        get_str(ini, "node", "", "user", NULL, &cfg->user) < 0 ||
        get_str(ini, "node", "", "state_dir", "/var/lib/floe", &cfg->state_dir) < 0 ||
        get_uint(ini, "node", "", "shutdown_timeout", 10, 3600, &cfg->shutdown_timeout, err,
                 errlen) < 0)
        return -1;
    int file_offset = 0;
    if (get_int(ini, "node", "", "port_offset", 0, -65535, 65535, &file_offset, err, errlen) < 0)
        return -1;
    if (cfg->port_offset == INT_MIN) /* no --port-offset on the command line */
        cfg->port_offset = file_offset;
    if (cfg->workers == 0)
        return ERR("%s: [node] workers must be at least 1", cfg->path);
    for (const char *c = cfg->node_id; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_' && *c != '.')
            return ERR("%s: [node] id '%s': letters, digits, '-', '_' and '.' only", cfg->path,
                       cfg->node_id);
    if (!*cfg->node_id || strlen(cfg->node_id) > 63)
        return ERR("%s: [node] id must be 1 to 63 characters", cfg->path);

    if (get_str(ini, "database", "", "url", "", &cfg->db_url) < 0 ||
        get_uint(ini, "database", "", "statement_timeout", 30000, 3600000,
                 &cfg->db_statement_timeout_ms, err, errlen) < 0 ||
        get_str(ini, "redis", "", "url", "", &cfg->redis_url) < 0 ||
        get_str(ini, "blob", "", "backend", "pg", &cfg->blob_backend) < 0 ||
        get_str(ini, "blob", "", "path", "", &cfg->blob_path) < 0)
        return -1;
    if (strcmp(cfg->blob_backend, "pg") && strcmp(cfg->blob_backend, "fs") &&
        strcmp(cfg->blob_backend, "s3")) {
        struct ini_entry *e = find(ini, "blob", "", "backend");
        return where(err, errlen, ini, e, "expected pg, fs or s3, got '%s'", cfg->blob_backend);
    }
    if (get_str(ini, "blob", "", "s3_endpoint", "", &cfg->s3_endpoint) < 0 ||
        get_str(ini, "blob", "", "s3_region", "", &cfg->s3_region) < 0 ||
        get_str(ini, "blob", "", "s3_bucket", "", &cfg->s3_bucket) < 0 ||
        get_str(ini, "blob", "", "s3_access_key", "", &cfg->s3_access_key) < 0 ||
        get_str(ini, "blob", "", "s3_secret_key", "", &cfg->s3_secret_key) < 0 ||
        get_str(ini, "blob", "", "s3_prefix", "", &cfg->s3_prefix) < 0 ||
        get_bool(ini, "blob", "", "s3_path_style", true, &cfg->s3_path_style, err, errlen) < 0 ||
        get_uint(ini, "blob", "", "s3_timeout", 30, 3600, &cfg->s3_timeout, err, errlen) < 0 ||
        get_str(ini, "blob", "", "spool_dir", "", &cfg->blob_spool_dir) < 0 ||
        get_size(ini, "blob", "max_size", 0, &cfg->blob_max_size, err, errlen) < 0)
        return -1;
    if (!strcmp(cfg->blob_backend, "fs") && cfg->blob_path[0] != '/')
        return ERR("%s: [blob] backend fs needs an absolute path", cfg->path);
    if (!strcmp(cfg->blob_backend, "s3") &&
        (!*cfg->s3_endpoint || !*cfg->s3_bucket || !*cfg->s3_access_key || !*cfg->s3_secret_key))
        return ERR("%s: [blob] backend s3 needs s3_endpoint, s3_bucket, s3_access_key and "
                   "s3_secret_key",
                   cfg->path);

    unsigned rot_days;
    if (get_str(ini, "log", "", "dir", "", &cfg->log_dir) < 0 ||
        get_bool(ini, "log", "", "stderr", true, &cfg->log_stderr, err, errlen) < 0 ||
        get_level(ini, "log", "", "level", LOG_SUMMARY, &cfg->log_level, err, errlen) < 0 ||
        get_size(ini, "log", "rotate_size", 64u << 20, &cfg->log_rotate_bytes, err, errlen) < 0 ||
        get_uint(ini, "log", "", "retention_days", 30, 36500, &rot_days, err, errlen) < 0)
        return -1;
    cfg->log_retention_days = rot_days;

    if (get_str(ini, "tls", "", "min_version", "1.2", &cfg->tls_min_version) < 0 ||
        get_str(ini, "tls", "", "ciphers", NULL, &cfg->tls_ciphers) < 0 ||
        get_str(ini, "tls", "", "ciphersuites", NULL, &cfg->tls_ciphersuites) < 0 ||
        get_str(ini, "tls", "", "default", NULL, &cfg->tls_default) < 0)
        return -1;
    if (strcmp(cfg->tls_min_version, "1.2") && strcmp(cfg->tls_min_version, "1.3")) {
        struct ini_entry *e = find(ini, "tls", "", "min_version");
        return where(err, errlen, ini, e, "expected 1.2 or 1.3, got '%s'", cfg->tls_min_version);
    }
    for (size_t i = 0; i < ini->count; i++) {
        struct ini_entry *e = &ini->entries[i];
        if (strcmp(e->section, "certificate") || !*e->name || strcmp(e->key, "file"))
            continue;
        if (cfg->ncerts >= CONFIG_MAX_CERTS)
            return where(err, errlen, ini, e, "%s", "too many certificates");
        struct cert_config *cc = &cfg->certs[cfg->ncerts++];
        snprintf(cc->name, sizeof(cc->name), "%s", e->name);
        if (get_str(ini, "certificate", cc->name, "file", NULL, &cc->file) < 0 ||
            get_str(ini, "certificate", cc->name, "key", NULL, &cc->key) < 0 ||
            get_str(ini, "certificate", cc->name, "chain", NULL, &cc->chain) < 0)
            return ERR("out of memory");
    }

    if (load_smtp(cfg, err, errlen) < 0 || load_ips(cfg, err, errlen) < 0)
        return -1;

    if (cfg->tls_default) {
        bool found = false;
        for (size_t i = 0; i < cfg->ncerts; i++)
            found = found || !strcmp(cfg->certs[i].name, cfg->tls_default);
        if (!found)
            return where(err, errlen, ini, find(ini, "tls", "", "default"),
                         "no [certificate %s] section", cfg->tls_default);
    }

    if (get_access_mode(ini, "access", "", "mode", &cfg->access_mode, err, errlen) < 0 ||
        get_access_list(cfg, "access", "", "list", "", &cfg->access, err, errlen) < 0 ||
        get_access_list(cfg, "limits", "", "trusted", "127.0.0.1;::1", &cfg->trusted, err,
                        errlen) < 0)
        return -1;

    for (size_t i = 0; i < service_defs_count; i++)
        if (load_service(cfg, &service_defs[i], err, errlen) < 0)
            return -1;

    /* Whatever no reader consumed is a mistake the administrator should hear about. */
    for (size_t i = 0; i < ini->count; i++) {
        struct ini_entry *e = &ini->entries[i];
        if (e->used)
            continue;
        if (!strcmp(e->section, "service") && !registry_find(e->name))
            return ERR("%s:%d: unknown service [service %s]", ini->path, e->line, e->name);
        if (!strcmp(e->section, "certificate"))
            return ERR("%s:%d: key '%s': [certificate %s] needs 'file', takes file, key, chain",
                       ini->path, e->line, e->key, e->name);
        return ERR("%s:%d: unknown key '%s' in [%s%s%s]", ini->path, e->line, e->key, e->section,
                   *e->name ? " " : "", e->name);
    }
    return 0;
}

struct config *config_load(const char *path, int port_offset_override, char *err, size_t errlen)
{
    struct config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg || !(cfg->path = strdup(path))) {
        free(cfg);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    cfg->port_offset = port_offset_override >= 0 ? port_offset_override : INT_MIN;
    cfg->ini = ini_load(path, err, errlen);
    if (!cfg->ini || load_sections(cfg, err, errlen) < 0) {
        config_free(&cfg);
        return NULL;
    }
    return cfg;
}

void config_blob(const struct config *cfg, struct blob_config *bc_r)
{
    *bc_r = (struct blob_config){
        .backend = cfg->blob_backend,
        .fs_path = cfg->blob_path,
        .s3_endpoint = cfg->s3_endpoint,
        .s3_region = *cfg->s3_region ? cfg->s3_region : NULL,
        .s3_bucket = cfg->s3_bucket,
        .s3_access_key = cfg->s3_access_key,
        .s3_secret_key = cfg->s3_secret_key,
        .s3_prefix = *cfg->s3_prefix ? cfg->s3_prefix : NULL,
        .s3_path_style = cfg->s3_path_style,
        .s3_timeout = cfg->s3_timeout,
        .spool_dir = *cfg->blob_spool_dir ? cfg->blob_spool_dir : NULL,
        .max_size = cfg->blob_max_size,
    };
}

const struct service_config *config_service(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nservices; i++)
        if (!strcmp(cfg->services[i].name, name))
            return &cfg->services[i];
    return NULL;
}

void config_free(struct config **cfgp)
{
    struct config *cfg = *cfgp;
    if (!cfg)
        return;
    free(cfg->path);
    free(cfg->node_id);
    free(cfg->hostname);
    free(cfg->user);
    free(cfg->state_dir);
    free(cfg->db_url);
    free(cfg->redis_url);
    free(cfg->blob_backend);
    free(cfg->blob_path);
    free(cfg->s3_endpoint);
    free(cfg->s3_region);
    free(cfg->s3_bucket);
    free(cfg->s3_access_key);
    free(cfg->s3_secret_key);
    free(cfg->s3_prefix);
    free(cfg->blob_spool_dir);
    free(cfg->log_dir);
    free(cfg->tls_min_version);
    free(cfg->tls_ciphers);
    free(cfg->tls_ciphersuites);
    free(cfg->tls_default);
    free(cfg->smtp.hostname);
    access_list_free(&cfg->smtp.relay_from);
    free(cfg->smtp.dns_servers);
    free(cfg->smtp.smarthost);
    free(cfg->smtp.smarthost_user);
    free(cfg->smtp.smarthost_password);
    for (size_t i = 0; i < cfg->smtp.nsecure; i++) {
        free(cfg->smtp.secure[i].host);
        free(cfg->smtp.secure[i].subject);
        free(cfg->smtp.secure[i].issuer);
        free(cfg->smtp.secure[i].fingerprint);
    }
    for (size_t i = 0; i < cfg->ncerts; i++) {
        free(cfg->certs[i].file);
        free(cfg->certs[i].key);
        free(cfg->certs[i].chain);
    }
    for (size_t i = 0; i < cfg->nservices; i++) {
        access_list_free(&cfg->services[i].proxy_from);
        access_list_free(&cfg->services[i].access);
    }
    access_list_free(&cfg->access);
    access_list_free(&cfg->trusted);
    access_list_free(&cfg->ips.exempt);
    access_patterns_free(&cfg->patterns);
    ini_free(&cfg->ini);
    free(cfg);
    *cfgp = NULL;
}
