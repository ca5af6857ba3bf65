/* Client auto-configuration on the web service (docs/AUTODISCOVER.md):
 *   POST /autodiscover/autodiscover.xml  Microsoft Autodiscover POX, Outlook and
 *                                        MobileSync schemas, Basic credentials required
 *   GET  /autodiscover/autodiscover.json Autodiscover v2 (?Email=&Protocol=)
 *   GET  /.well-known/autoconfig/mail/config-v1.1.xml and /mail/config-v1.1.xml
 *                                        Thunderbird autoconfig (?emailaddress=)
 * The documents name the cluster's public host name ([service web] public_hostname),
 * never a node, so they stay right behind a load balancer. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/config.h"
#include "node/http/auth.h"
#include "node/http/http.h"
#include "node/http/vendorapi.h"
#include "node/server.h"
#include "node/services.h"
#include "node/http/discover_settings.h"
#include "proto/autodiscover/autodiscover.h"

static void settings_for(const char *domain, struct discover_settings *d)
{
    struct runtime *rt = runtime_get();
    discover_settings(rt->cfg, domain, d);
    runtime_put(&rt);
}

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

/* ---- POX ---- */

struct pox {
    char email[AUTODISCOVER_EMAIL_SIZE];
    enum autodiscover_schema schema;
};

static void pox_authed(struct http_exchange *x, const struct dir_account *a, void *arg)
{
    struct pox *p = arg;
    struct discover_settings d;
    settings_for(domain_of(p->email), &d);
    respond_doc(x, 200, "text/xml; charset=utf-8",
                autodiscover_response(p->schema, p->email, a->full_name[0] ? a->full_name : NULL,
                                      &d.s));
    free(p);
}

static void pox(struct http_exchange *x)
{
    const struct http_request *req = http_request(x);
    if (strcmp(req->method, "POST")) {
        http_respond(x, 405, "text/plain; charset=utf-8", "405 Method Not Allowed\n", 23,
                     "Allow: POST\r\n");
        return;
    }
    struct pox *p = calloc(1, sizeof(*p));
    if (!p) {
        http_respond_status(x, 503);
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

/* ---- v2 JSON, Thunderbird ---- */

static void v2(struct http_exchange *x)
{
    const struct http_request *req = http_request(x);
    char email[AUTODISCOVER_EMAIL_SIZE] = "", protocol[64] = "";
    query_param(req->query, "Email", email, sizeof(email));
    query_param(req->query, "Protocol", protocol, sizeof(protocol));
    struct discover_settings d;
    settings_for(domain_of(email), &d);
    int status = 400;
    char *doc = autodiscover_v2_json(protocol, &d.s, &status);
    respond_doc(x, status, "application/json", doc);
}

static void thunderbird(struct http_exchange *x)
{
    const struct http_request *req = http_request(x);
    char email[AUTODISCOVER_EMAIL_SIZE] = "";
    if (!query_param(req->query, "emailaddress", email, sizeof(email)) || !domain_of(email)) {
        http_respond_status(x, 400);
        return;
    }
    struct discover_settings d;
    settings_for(domain_of(email), &d);
    respond_doc(x, 200, "application/xml; charset=utf-8", autodiscover_thunderbird(email, &d.s));
}

int web_configure(struct service_config *sc, char *err, size_t errlen)
{
    const char *host;
    return config_service_get_str(sc, "public_hostname", NULL, &host, err, errlen);
}

void web_http_init(void)
{
    autodiscover_init();
    vendorapi_http_init(); /* the vendor admin XML API, /icewarpapi (docs/VENDORAPI.md) */
    /* clients vary the case of this path */
    static const char *const pox_paths[] = {"/autodiscover/autodiscover.xml",
                                            "/Autodiscover/Autodiscover.xml",
                                            "/AutoDiscover/AutoDiscover.xml"};
    for (size_t i = 0; i < sizeof(pox_paths) / sizeof(pox_paths[0]); i++)
        http_route("web", pox_paths[i], pox);
    http_route("web", "/autodiscover/autodiscover.json", v2);
    http_route("web", "/Autodiscover/Autodiscover.json", v2);
    http_route("web", "/.well-known/autoconfig/mail/config-v1.1.xml", thunderbird);
    http_route("web", "/mail/config-v1.1.xml", thunderbird);
}
