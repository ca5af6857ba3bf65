/* SmartDiscover settings per domain (smartdiscover.h). */
#include "storage/smartdiscover.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "storage/directory.h"

const char *const smartdiscover_fields[SD_NFIELDS + 1] = {
    "public_hostname", "smtp_host",    "smtp_tls",      "smtp_port",
    "pop3_host",       "pop3_tls",     "pop3_port",     "imap_host",
    "imap_tls",        "imap_port",    "xmpp_host",     "xmpp_tls",
    "xmpp_port",       "sip_host",     "sip_tls",       "sip_port",
    "mobilesync_url",  "syncml_url",   "webdav_url",    "webclient_url",
    "webadmin_url",    "freebusy_url", "icalendar_url", "caldav_url",
    "carddav_url",     NULL,
};

int smartdiscover_field_of(const char *name)
{
    for (int i = 0; i < SD_NFIELDS; i++)
        if (!strcmp(smartdiscover_fields[i], name))
            return i;
    return -1;
}

static bool is_host_field(enum smartdiscover_field f)
{
    return f == SD_PUBLIC_HOSTNAME ||
           (f >= SD_SMTP_HOST && f <= SD_SIP_PORT && (f - SD_SMTP_HOST) % 3 == 0);
}

static bool is_tls_field(enum smartdiscover_field f)
{
    return f >= SD_SMTP_HOST && f <= SD_SIP_PORT && (f - SD_SMTP_HOST) % 3 == 1;
}

static bool is_port_field(enum smartdiscover_field f)
{
    return f >= SD_SMTP_HOST && f <= SD_SIP_PORT && (f - SD_SMTP_HOST) % 3 == 2;
}

/* RFC 1123 §2.1 host names: LDH labels of 1..63 characters, not starting or
 * ending with '-', 1..253 in all (an IPv4 address passes as well). */
static bool host_ok(const char *s, size_t n)
{
    if (n == 0 || n > SMARTDISCOVER_HOST_MAX)
        return false;
    size_t label = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '.') {
            if (label == 0 || label > 63 || s[i - 1] == '-' || s[i - label] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!isalnum((unsigned char)s[i]) && s[i] != '-')
            return false;
        label++;
    }
    return true;
}

/* http(s)://host[:port][/path...]: printable ASCII without blanks, quotes or
 * angle brackets (they would need escaping in every document format). */
static bool url_ok(const char *s)
{
    size_t n = strlen(s);
    const char *rest;
    if (n > SMARTDISCOVER_VALUE_MAX)
        return false;
    if (!strncasecmp(s, "https://", 8))
        rest = s + 8;
    else if (!strncasecmp(s, "http://", 7))
        rest = s + 7;
    else
        return false;
    for (const char *p = s; *p; p++)
        if (*p <= ' ' || *p >= 127 || strchr("\"<>\\^`{|}", *p))
            return false;
    size_t hl = strcspn(rest, ":/?#");
    if (!host_ok(rest, hl))
        return false;
    if (rest[hl] == ':') {
        char *end;
        long port = strtol(rest + hl + 1, &end, 10);
        if (end == rest + hl + 1 || port < 1 || port > 65535 || (*end && *end != '/'))
            return false;
    }
    return true;
}

int smartdiscover_check(enum smartdiscover_field f, const char *value,
                        char out[SMARTDISCOVER_VALUE_MAX + 1], char *err, size_t errlen)
{
    const char *name = f >= 0 && f < SD_NFIELDS ? smartdiscover_fields[f] : "?";
    if (f < 0 || f >= SD_NFIELDS || !value) {
        dir_set_err(err, errlen, "unknown SmartDiscover field");
        return -1;
    }
    if (is_host_field(f)) {
        size_t n = strlen(value);
        if (n > 0 && value[n - 1] == '.')
            n--; /* a final dot names the same host */
        if (!host_ok(value, n)) {
            dir_set_err(err, errlen, "%s: '%.100s' is not a host name", name, value);
            return -1;
        }
        for (size_t i = 0; i < n; i++)
            out[i] = (char)tolower((unsigned char)value[i]);
        out[n] = '\0';
        return 0;
    }
    if (is_tls_field(f)) {
        /* seed 003 calls the choice "Standard / TLS/SSL" */
        const char *canon = !strcasecmp(value, "tls") || !strcasecmp(value, "ssl") ? "tls"
                            : !strcasecmp(value, "starttls") || !strcasecmp(value, "standard")
                                ? "starttls"
                            : !strcasecmp(value, "none") || !strcasecmp(value, "plain") ? "none"
                                                                                        : NULL;
        if (!canon) {
            dir_set_err(err, errlen, "%s: '%.100s': use tls, starttls or none", name, value);
            return -1;
        }
        snprintf(out, SMARTDISCOVER_VALUE_MAX + 1, "%s", canon);
        return 0;
    }
    if (is_port_field(f)) {
        char *end;
        long port = strtol(value, &end, 10);
        if (!*value || *end || port < 1 || port > 65535) {
            dir_set_err(err, errlen, "%s: '%.100s' is not a port (1-65535)", name, value);
            return -1;
        }
        snprintf(out, SMARTDISCOVER_VALUE_MAX + 1, "%ld", port);
        return 0;
    }
    if (!url_ok(value)) {
        dir_set_err(err, errlen, "%s: '%.100s' is not an http:// or https:// URL", name, value);
        return -1;
    }
    snprintf(out, SMARTDISCOVER_VALUE_MAX + 1, "%s", value);
    return 0;
}

/* The column list of SELECT, ports as text. */
static void select_list(char *buf, size_t len)
{
    size_t o = 0;
    for (int i = 0; i < SD_NFIELDS; i++)
        o += (size_t)snprintf(buf + o, len - o, "%ss.%s%s", i ? ", " : "", smartdiscover_fields[i],
                              is_port_field((enum smartdiscover_field)i) ? "::text" : "");
}

int smartdiscover_get(PGconn *c, const char *domain, struct smartdiscover *sd_r, char *err,
                      size_t errlen)
{
    memset(sd_r, 0, sizeof(*sd_r));
    long long id;
    int rc = dir_domain_lookup(c, domain, &id, NULL, err, errlen);
    if (rc != 0)
        return rc;
    char cols[1024], sql[1400], ids[24];
    select_list(cols, sizeof(cols));
    snprintf(sql, sizeof(sql), "SELECT %s FROM smartdiscover s WHERE s.domain_id = $1", cols);
    snprintf(ids, sizeof(ids), "%lld", id);
    const char *p[] = {ids};
    PGresult *r =
        dir_sql(c, sql, 1, p, "cannot read the SmartDiscover settings", NULL, err, errlen);
    if (!r)
        return -1;
    if (PQntuples(r) == 1)
        for (int i = 0; i < SD_NFIELDS; i++)
            if (!PQgetisnull(r, 0, i))
                snprintf(sd_r->v[i], sizeof(sd_r->v[i]), "%s", PQgetvalue(r, 0, i));
    PQclear(r);
    return 0;
}

int smartdiscover_set(PGconn *c, const char *domain, const enum smartdiscover_field *fields,
                      const char *const *values, size_t n, char *err, size_t errlen)
{
    /* the last value given for a field wins; each column appears once */
    struct smartdiscover *canon = malloc(sizeof(*canon));
    bool given[SD_NFIELDS] = {false}, cleared[SD_NFIELDS] = {false};
    if (!canon) {
        dir_set_err(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        enum smartdiscover_field f = fields[i];
        if (f < 0 || f >= SD_NFIELDS) {
            dir_set_err(err, errlen, "unknown SmartDiscover field");
            free(canon);
            return -1;
        }
        given[f] = true;
        cleared[f] = !values[i] || !*values[i];
        if (!cleared[f] && smartdiscover_check(f, values[i], canon->v[f], err, errlen) < 0) {
            free(canon);
            return -1;
        }
    }
    long long id;
    int rc = dir_domain_lookup(c, domain, &id, NULL, err, errlen);
    if (rc != 0) {
        free(canon);
        return rc;
    }
    char ids[24], cols[1024] = "", vals[512] = "", sets[1536] = "", sql[3200];
    snprintf(ids, sizeof(ids), "%lld", id);
    const char *params[SD_NFIELDS + 1] = {ids};
    int np = 1;
    size_t co = 0, vo = 0, so = 0;
    for (int f = 0; f < SD_NFIELDS; f++) {
        if (!given[f])
            continue;
        params[np++] = cleared[f] ? NULL : canon->v[f];
        co += (size_t)snprintf(cols + co, sizeof(cols) - co, ", %s", smartdiscover_fields[f]);
        vo += (size_t)snprintf(vals + vo, sizeof(vals) - vo, ", $%d", np);
        so += (size_t)snprintf(sets + so, sizeof(sets) - so, "%s = EXCLUDED.%s, ",
                               smartdiscover_fields[f], smartdiscover_fields[f]);
    }
    if (np == 1) {
        free(canon);
        return 0;
    }
    snprintf(sql, sizeof(sql),
             "INSERT INTO smartdiscover (domain_id%s) VALUES ($1%s) ON CONFLICT (domain_id)"
             " DO UPDATE SET %supdated_at = now()",
             cols, vals, sets);
    PGresult *r =
        dir_sql(c, sql, np, params, "cannot store the SmartDiscover settings", NULL, err, errlen);
    free(canon);
    if (!r)
        return -1;
    PQclear(r);
    return 0;
}

int smartdiscover_clear(PGconn *c, const char *domain, char *err, size_t errlen)
{
    long long id;
    int rc = dir_domain_lookup(c, domain, &id, NULL, err, errlen);
    if (rc != 0)
        return rc;
    char ids[24];
    snprintf(ids, sizeof(ids), "%lld", id);
    const char *p[] = {ids};
    PGresult *r = dir_sql(c, "DELETE FROM smartdiscover WHERE domain_id = $1", 1, p,
                          "cannot remove the SmartDiscover settings", NULL, err, errlen);
    if (!r)
        return -1;
    PQclear(r);
    return 0;
}
