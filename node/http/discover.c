/* Client auto-configuration on the web service (docs/AUTODISCOVER.md):
 *   POST /autodiscover/autodiscover.xml  Microsoft Autodiscover POX, Outlook and
 *                                        MobileSync schemas, Basic credentials required
 *   GET  /autodiscover/autodiscover.xml  SmartDiscover (seed 002): the same
 *                                        credentials, every protocol and URL
 *   GET  /autodiscover/autodiscover.json Autodiscover v2 (?Email=&Protocol=)
 *   GET  /.well-known/autoconfig/mail/config-v1.1.xml, and /mail/config-v1.1.xml
 *        on host autoconfig.<domain>     Thunderbird autoconfig (?emailaddress=)
 *   GET  /.well-known/caldav, /.well-known/carddav
 *                                        301 to the DAV context paths (RFC 6764 §5)
 * The documents are built from the domain's SmartDiscover settings (read on a
 * worker, storage/smartdiscover.h) merged with the node configuration
 * (discover_settings.h): they name the cluster's public host names, never a
 * node, so they stay right behind a load balancer. */
#include <ctype.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "node/config.h"
#include "node/http/auth.h"
#include "node/http/discover_settings.h"
#include "node/http/http.h"
#include "node/http/http_internal.h"
#include "node/http/vendorapi.h"
#include "node/server.h"
#include "node/services.h"
#include "node/workers.h"
#include "proto/autodiscover/autodiscover.h"
#include "storage/directory.h"
#include "storage/smartdiscover.h"

#define WELL_KNOWN_DEFAULT "/dav/"

/* ---- settings of a domain: a short-lived cache, else read on a worker ---- */

/* Auto-configuration is read-mostly and unauthenticated (v2, Thunderbird): a
 * domain's row is kept for DISCOVER_CACHE_MS, so a burst of requests costs one
 * query; a change made with floectl on any node shows within that time. Slots
 * are direct-mapped by a hash of the name; a collision just replaces. */
#define DISCOVER_CACHE_SLOTS 512
#define DISCOVER_CACHE_MS 5000

struct cached {
    char domain[DIR_DOMAIN_MAX + 1];
    uint64_t until_ms;
    char *values; /* the set fields, NUL-separated, in field order; NULL: none set */
    unsigned set; /* bit per field (SD_NFIELDS < 32) */
};
static struct cached cache[DISCOVER_CACHE_SLOTS];
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t slot_of(const char *domain)
{
    uint32_t h = 2166136261u;
    for (const char *p = domain; *p; p++)
        h = (h ^ (unsigned char)tolower((unsigned char)*p)) * 16777619u;
    return h % DISCOVER_CACHE_SLOTS;
}

static void cache_put(const char *domain, const struct smartdiscover *sd)
{
    size_t need = 0;
    unsigned set = 0;
    for (int f = 0; sd && f < SD_NFIELDS; f++)
        if (sd->v[f][0]) {
            set |= 1u << f;
            need += strlen(sd->v[f]) + 1;
        }
    char *values = need ? malloc(need) : NULL;
    if (need && !values)
        return;
    for (int f = 0, o = 0; values && f < SD_NFIELDS; f++)
        if (set & (1u << f)) {
            size_t n = strlen(sd->v[f]) + 1;
            memcpy(values + o, sd->v[f], n);
            o += (int)n;
        }
    struct cached *e = &cache[slot_of(domain)];
    pthread_mutex_lock(&cache_lock);
    free(e->values);
    snprintf(e->domain, sizeof(e->domain), "%s", domain);
    e->until_ms = uv_hrtime() / 1000000 + DISCOVER_CACHE_MS;
    e->values = values;
    e->set = set;
    pthread_mutex_unlock(&cache_lock);
}

/* Fills *sd from the cache: true on a fresh hit. */
static bool cache_get(const char *domain, struct smartdiscover *sd)
{
    struct cached *e = &cache[slot_of(domain)];
    bool hit = false;
    pthread_mutex_lock(&cache_lock);
    if (e->until_ms > uv_hrtime() / 1000000 && !strcasecmp(e->domain, domain)) {
        hit = true;
        const char *v = e->values;
        for (int f = 0; f < SD_NFIELDS; f++) {
            sd->v[f][0] = '\0';
            if (e->set & (1u << f)) {
                snprintf(sd->v[f], sizeof(sd->v[f]), "%s", v);
                v += strlen(v) + 1;
            }
        }
    }
    pthread_mutex_unlock(&cache_lock);
    return hit;
}

typedef void (*settings_fn)(struct http_exchange *x, const struct discover_settings *d, void *arg);

struct settings_job {
    struct job job;
    struct http_exchange *x;
    char domain[DIR_DOMAIN_MAX + 1]; /* "" = none: configuration defaults only */
    int rc;
    struct smartdiscover sd;
    settings_fn then;
    void *arg;
};

static void settings_work(struct job *j, struct worker *w)
{
    struct settings_job *s = (struct settings_job *)j;
    char err[256];
    PGconn *db = worker_db(w, err, sizeof(err));
    if (!db) {
        s->rc = -1;
        return;
    }
    s->rc = smartdiscover_get(db, s->domain, &s->sd, err, sizeof(err));
    if (s->rc == -1)
        worker_db_check(w);
}

static void settings_done(struct job *j)
{
    struct settings_job *s = (struct settings_job *)j;
    if (s->rc == -1) {
        /* wrong settings would send clients astray: better to fail visibly */
        conn_log(http_conn(s->x), LOG_SUMMARY, "SmartDiscover settings of %s unavailable",
                 s->domain);
        http_respond_status(s->x, 503);
        free(s->arg);
    } else {
        cache_put(s->domain, s->rc == 0 ? &s->sd : NULL);
        struct discover_settings *d = malloc(sizeof(*d));
        struct runtime *rt = runtime_get();
        if (d) {
            /* an unknown domain (DIR_ENOTFOUND) gets the configured defaults: the
             * answer must not tell which domains exist */
            discover_settings_domain(rt->cfg, s->domain, s->rc == 0 ? &s->sd : NULL, d);
            s->then(s->x, d, s->arg);
        } else {
            http_respond_status(s->x, 503);
            free(s->arg);
        }
        runtime_put(&rt);
        free(d);
    }
    free(s);
}

/* Reads the settings of domain (NULL: defaults) and calls then(x, settings, arg);
 * on failure answers 503 and frees arg. */
static void with_settings(struct http_exchange *x, const char *domain, settings_fn then, void *arg)
{
    if (!domain || !*domain || strlen(domain) > DIR_DOMAIN_MAX) {
        struct discover_settings *d = malloc(sizeof(*d));
        if (!d) {
            free(arg);
            http_respond_status(x, 503);
            return;
        }
        struct runtime *rt = runtime_get();
        discover_settings_domain(rt->cfg, NULL, NULL, d);
        runtime_put(&rt);
        then(x, d, arg);
        free(d);
        return;
    }
    struct settings_job *s = calloc(1, sizeof(*s));
    if (!s) {
        free(arg);
        http_respond_status(x, 503);
        return;
    }
    if (cache_get(domain, &s->sd)) {
        struct discover_settings *d = malloc(sizeof(*d));
        if (d) {
            struct runtime *rt = runtime_get();
            discover_settings_domain(rt->cfg, domain, &s->sd, d);
            runtime_put(&rt);
            then(x, d, arg);
        } else {
            free(arg);
            http_respond_status(x, 503);
        }
        free(d);
        free(s);
        return;
    }
    s->x = x;
    s->then = then;
    s->arg = arg;
    snprintf(s->domain, sizeof(s->domain), "%s", domain);
    s->job.work = settings_work;
    s->job.done = settings_done;
    if (workers_submit(server_workers(), &s->job) < 0) {
        free(s);
        free(arg);
        http_respond_status(x, 503);
        return;
    }
    http_defer(x);
}

/* ---- helpers ---- */

/* The value of query parameter name (case-insensitive), percent-decoded. */
static bool query_param(const char *query, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    for (const char *p = query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > nl && p[nl] == '=' && !strncasecmp(p, name, nl)) {
            size_t o = 0;
            for (size_t i = nl + 1; i < len && o + 1 < outlen; i++) {
                if (p[i] == '%' && i + 2 < len && isxdigit((unsigned char)p[i + 1]) &&
                    isxdigit((unsigned char)p[i + 2])) {
                    char hex[3] = {p[i + 1], p[i + 2], 0};
                    out[o++] = (char)strtol(hex, NULL, 16);
                    i += 2;
                } else {
                    out[o++] = p[i] == '+' ? ' ' : p[i];
                }
            }
            out[o] = '\0';
            return o > 0;
        }
        p = amp ? amp + 1 : NULL;
    }
    return false;
}

static const char *domain_of(const char *email)
{
    const char *at = strrchr(email, '@');
    return at && at[1] ? at + 1 : NULL;
}

static void respond_doc(struct http_exchange *x, int status, const char *ctype, char *doc)
{
    if (!doc) {
        http_respond_status(x, 500);
        return;
    }
    http_respond(x, status, ctype, doc, strlen(doc), NULL);
    free(doc);
}

/* ---- POX: POST (Microsoft), GET (SmartDiscover) ---- */

struct pox {
    char email[AUTODISCOVER_EMAIL_SIZE];
    char name[DIR_FULL_NAME_MAX + 1];
    enum autodiscover_schema schema;
    bool smart;
};

static void pox_settings(struct http_exchange *x, const struct discover_settings *d, void *arg)
{
    struct pox *p = arg;
    if (p->smart)
        respond_doc(x, 200, "text/xml; charset=utf-8",
                    discover_smartdiscover_xml(d, p->email, p->name[0] ? p->name : NULL));
    else
        respond_doc(x, 200, "text/xml; charset=utf-8",
                    autodiscover_response(p->schema, p->email, p->name[0] ? p->name : NULL, &d->s));
    free(p);
}

static void pox_authed(struct http_exchange *x, const struct dir_account *a, void *arg)
{
    struct pox *p = arg;
    snprintf(p->name, sizeof(p->name), "%s", a->full_name);
    if (p->smart) { /* a GET names nobody: the account is who logged in */
        if (strlen(a->address) >= sizeof(p->email)) {
            free(p);
            http_respond_status(x, 500);
            return;
        }
        snprintf(p->email, sizeof(p->email), "%.254s", a->address);
    }
    with_settings(x, domain_of(p->email), pox_settings, p);
}

static void pox(struct http_exchange *x)
{
    const struct http_request *req = http_request(x);
    bool get = !strcmp(req->method, "GET");
    if (strcmp(req->method, "POST") && !get) {
        http_respond(x, 405, "text/plain; charset=utf-8", "405 Method Not Allowed\n", 23,
                     "Allow: GET, POST\r\n");
        return;
    }
    struct pox *p = calloc(1, sizeof(*p));
    if (!p) {
        http_respond_status(x, 503);
        return;
    }
    if (get) {
        /* seed 002 "SmartDiscover": a plain GET, HTTP authentication, then the XML */
        p->smart = true;
        http_auth_basic(x, "Autodiscover", pox_authed, p);
        return;
    }
    int rc = autodiscover_parse_request(req->body, req->body_len, p->email, sizeof(p->email),
                                        &p->schema);
    if (rc < 0 || !domain_of(p->email)) {
        /* RFC-less but what Exchange does: a 200 carrying the POX error */
        int code = rc == -2 ? AUTODISCOVER_ERR_NO_SCHEMA : AUTODISCOVER_ERR_INVALID_REQUEST;
        respond_doc(x, 200, "text/xml; charset=utf-8",
                    autodiscover_error(p->schema, code,
                                       code == AUTODISCOVER_ERR_NO_SCHEMA
                                           ? "Requested schema not available"
                                           : "Invalid Request"));
        free(p);
        return;
    }
    http_auth_basic(x, "Autodiscover", pox_authed, p);
}

/* ---- v2 JSON ---- */

static void v2_settings(struct http_exchange *x, const struct discover_settings *d, void *arg)
{
    char *protocol = arg;
    int status = 400;
    char *doc = autodiscover_v2_json(protocol, &d->s, &status);
    respond_doc(x, status, "application/json", doc);
    free(protocol);
}

static void v2(struct http_exchange *x)
{
    const struct http_request *req = http_request(x);
    char email[AUTODISCOVER_EMAIL_SIZE] = "", protocol[64] = "";
    query_param(req->query, "Email", email, sizeof(email));
    query_param(req->query, "Protocol", protocol, sizeof(protocol));
    /* the other spelling: /autodiscover/autodiscover.json/v1.0/<address>?Protocol= */
    const char *v1 = strcasestr(req->path, "/autodiscover.json/v1.0/");
    if (!email[0] && v1)
        snprintf(email, sizeof(email), "%.254s", v1 + 24);
    char *p = strdup(protocol);
    if (!p) {
        http_respond_status(x, 503);
        return;
    }
    with_settings(x, domain_of(email), v2_settings, p);
}

/* ---- Thunderbird ---- */

static void tb_settings(struct http_exchange *x, const struct discover_settings *d, void *arg)
{
    char *email = arg;
    respond_doc(x, 200, "application/xml; charset=utf-8",
                autodiscover_thunderbird(email[0] ? email : NULL, &d->s));
    free(email);
}

static void thunderbird(struct http_exchange *x)
{
    const struct http_request *req = http_request(x);
    char email[AUTODISCOVER_EMAIL_SIZE] = "";
    const char *domain = NULL;
    if (query_param(req->query, "emailaddress", email, sizeof(email)))
        domain = domain_of(email);
    else if (!strncmp(http_host(x), "autoconfig.", 11) && http_host(x)[11])
        domain = http_host(x) + 11; /* autoconfig.<domain> names the domain itself */
    if (!domain) {
        http_respond_status(x, 400);
        return;
    }
    char *e = strdup(email);
    if (!e) {
        http_respond_status(x, 503);
        return;
    }
    with_settings(x, domain, tb_settings, e);
}

/* ---- /.well-known/caldav, /.well-known/carddav ---- */

static void well_known(struct http_exchange *x)
{
    bool cal = !strncmp(http_request(x)->path, "/.well-known/caldav", 19);
    struct runtime *rt = runtime_get();
    const struct service_config *sc = config_service(rt->cfg, "web");
    const char *target = WELL_KNOWN_DEFAULT;
    char err[64];
    if (sc)
        config_service_get_str(sc, cal ? "well_known_caldav" : "well_known_carddav",
                               WELL_KNOWN_DEFAULT, &target, err, sizeof(err));
    /* RFC 6764 §5: the client follows the redirect to the context path */
    http_redirect(x, 301, target);
    runtime_put(&rt);
}

/* ---- configuration and routes ---- */

static int check_target(const char *key, const char *v, char *err, size_t errlen)
{
    bool ok = v[0] == '/' || !strncmp(v, "https://", 8) || !strncmp(v, "http://", 7);
    for (const char *p = v; ok && *p; p++)
        ok = *p > ' ' && *p < 127;
    if (!ok || strlen(v) > 1024) {
        snprintf(err, errlen, "[service web] %s: '%.100s' is not a path or http(s) URL", key, v);
        return -1;
    }
    return 0;
}

int web_configure(struct service_config *sc, char *err, size_t errlen)
{
    const char *host, *cal, *card;
    if (http_configure(sc, err, errlen) < 0 ||
        config_service_get_str(sc, "public_hostname", NULL, &host, err, errlen) < 0 ||
        config_service_get_str(sc, "well_known_caldav", WELL_KNOWN_DEFAULT, &cal, err, errlen) <
            0 ||
        config_service_get_str(sc, "well_known_carddav", WELL_KNOWN_DEFAULT, &card, err, errlen) <
            0)
        return -1;
    return check_target("well_known_caldav", cal, err, errlen) < 0 ||
                   check_target("well_known_carddav", card, err, errlen) < 0
               ? -1
               : 0;
}

void web_http_init(void)
{
    autodiscover_init();
    /* clients vary the case of these paths */
    const struct http_route_opts nocase = {.flags = HTTP_ROUTE_NOCASE};
    http_route_ex("web", "/autodiscover/autodiscover.xml", pox, &nocase);
    http_route_ex("web", "/autodiscover/autodiscover.json", v2, &nocase);
    http_route("web", "/.well-known/autoconfig/mail/config-v1.1.xml", thunderbird);
    const struct http_route_opts autoconfig = {.host = "autoconfig.*"};
    http_route_ex("web", "/mail/config-v1.1.xml", thunderbird, &autoconfig);
    http_route("web", "/.well-known/caldav", well_known);
    http_route("web", "/.well-known/carddav", well_known);
    vendorapi_http_init(); /* the vendor admin XML API, /icewarpapi (docs/VENDORAPI.md) */
    http_diag_init("web");
}
