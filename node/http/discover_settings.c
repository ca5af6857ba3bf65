/* Auto-configuration settings from the node configuration and the domain's
 * SmartDiscover row, and the SmartDiscover document (see discover_settings.h). */
#include "node/http/discover_settings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/text/utf8.h"

/* Standard ports by service and TLS mode (seed 003's port table, RFC 8314 for
 * implicit TLS, RFC 6120 §14.7 XMPP, RFC 3261 §19.1.2 SIP). */
static int default_port(enum smartdiscover_service svc, const char *tls)
{
    bool implicit = !strcmp(tls, "tls");
    switch (svc) {
    case SD_SVC_SMTP:
        return implicit ? 465 : 587;
    case SD_SVC_POP3:
        return implicit ? 995 : 110;
    case SD_SVC_IMAP:
        return implicit ? 993 : 143;
    case SD_SVC_XMPP:
        return implicit ? 5223 : 5222;
    case SD_SVC_SIP:
        return implicit ? 5061 : 5060;
    default:
        return 0;
    }
}

void discover_settings_domain(const struct config *cfg, const char *domain,
                              const struct smartdiscover *sd, struct discover_settings *d)
{
    static const char *const default_tls[SD_NSERVICES] = {"starttls", "tls", "tls", "starttls",
                                                          "tls"};
    memset(d, 0, sizeof(*d));
    snprintf(d->domain, sizeof(d->domain), "%.253s", domain ? domain : "");
    const struct service_config *sc = config_service(cfg, "web");
    const char *host = cfg->hostname;
    char err[64];
    if (sc)
        config_service_get_str(sc, "public_hostname", cfg->hostname, &host, err, sizeof(err));
    if (sd && sd->v[SD_PUBLIC_HOSTNAME][0])
        host = sd->v[SD_PUBLIC_HOSTNAME];
    snprintf(d->host, sizeof(d->host), "%.253s", host);
    for (int svc = 0; svc < SD_NSERVICES; svc++) {
        const char *h = sd ? sd->v[SD_HOST_OF(svc)] : "";
        const char *t = sd ? sd->v[SD_TLS_OF(svc)] : "";
        const char *p = sd ? sd->v[SD_PORT_OF(svc)] : "";
        /* Floe itself serves SMTP, POP3 and IMAP; XMPP and SIP only when named */
        d->svc[svc].on = svc <= SD_SVC_IMAP || h[0];
        snprintf(d->svc[svc].host, sizeof(d->svc[svc].host), "%.253s", h[0] ? h : d->host);
        snprintf(d->svc[svc].tls, sizeof(d->svc[svc].tls), "%.11s", t[0] ? t : default_tls[svc]);
        d->svc[svc].port = p[0] ? atoi(p) : default_port(svc, d->svc[svc].tls);
    }
    for (int i = 0; i < DISCOVER_NURLS; i++)
        if (sd)
            snprintf(d->url[i], sizeof(d->url[i]), "%s", sd->v[SD_MOBILESYNC_URL + i]);
    /* seed 003: "For ActiveSync it is not possible to change this name" (the path) */
    if (!d->url[0][0])
        snprintf(d->url[0], sizeof(d->url[0]), "https://%s/Microsoft-Server-ActiveSync", d->host);
    snprintf(d->autodiscover, sizeof(d->autodiscover), "https://%s/autodiscover/autodiscover.xml",
             d->host);
    d->s = (struct autodiscover_settings){
        .display_name = d->domain[0] ? d->domain : NULL,
        .imap_host = d->svc[SD_SVC_IMAP].host,
        .imap_port = d->svc[SD_SVC_IMAP].port,
        .imap_tls = d->svc[SD_SVC_IMAP].tls,
        .pop3_host = d->svc[SD_SVC_POP3].host,
        .pop3_port = d->svc[SD_SVC_POP3].port,
        .pop3_tls = d->svc[SD_SVC_POP3].tls,
        .smtp_host = d->svc[SD_SVC_SMTP].host,
        .smtp_port = d->svc[SD_SVC_SMTP].port,
        .smtp_tls = d->svc[SD_SVC_SMTP].tls,
        .activesync_url = d->url[0],
        .autodiscover_url = d->autodiscover,
        .caldav_url = discover_url(d, SD_CALDAV_URL),
        .carddav_url = discover_url(d, SD_CARDDAV_URL),
        .webmail_url = discover_url(d, SD_WEBCLIENT_URL),
        .freebusy_url = discover_url(d, SD_FREEBUSY_URL),
    };
}

void discover_settings(const struct config *cfg, const char *domain, struct discover_settings *d)
{
    discover_settings_domain(cfg, domain, NULL, d);
}

const char *discover_url(const struct discover_settings *d, enum smartdiscover_field f)
{
    if (f < SD_MOBILESYNC_URL || f >= SD_NFIELDS)
        return NULL;
    const char *u = d->url[f - SD_MOBILESYNC_URL];
    return u[0] ? u : NULL;
}

/* ---- the SmartDiscover document ---- */

#define DOC_MAX 65536

struct doc {
    char *buf;
    size_t len, cap;
    bool bad;
};

static void raw(struct doc *b, const char *s, size_t n)
{
    if (b->bad)
        return;
    if (b->len + n + 1 > DOC_MAX) {
        b->bad = true;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 2048;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *t = realloc(b->buf, cap);
        if (!t) {
            b->bad = true;
            return;
        }
        b->buf = t;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

static void lit(struct doc *b, const char *s)
{
    raw(b, s, strlen(s));
}

/* XML 1.0 character data: valid UTF-8 without C0 controls (tab, LF and CR
 * aside they are not allowed) or DEL, with the five markup characters escaped. */
static void text(struct doc *b, const char *s)
{
    if (!s || !utf8_check(s, strlen(s), UTF8_NO_C0)) {
        b->bad = true;
        return;
    }
    for (const char *p = s; *p; p++) {
        switch (*p) {
        case '&':
            lit(b, "&amp;");
            break;
        case '<':
            lit(b, "&lt;");
            break;
        case '>':
            lit(b, "&gt;");
            break;
        case '"':
            lit(b, "&quot;");
            break;
        case '\'':
            lit(b, "&apos;");
            break;
        default:
            raw(b, p, 1);
        }
    }
}

static void elem(struct doc *b, const char *indent, const char *name, const char *value)
{
    lit(b, indent);
    lit(b, "<");
    lit(b, name);
    lit(b, ">");
    text(b, value);
    lit(b, "</");
    lit(b, name);
    lit(b, ">\n");
}

char *discover_smartdiscover_xml(const struct discover_settings *d, const char *email,
                                 const char *display_name)
{
    static const char *const svc_type[SD_NSERVICES] = {"SMTP", "POP3", "IMAP", "XMPP", "SIP"};
    static const char *const url_type[DISCOVER_NURLS] = {"MobileSync",       "SyncML",   "WebDAV",
                                                         "WebClient",        "WebAdmin", "FreeBusy",
                                                         "InternetCalendar", "CalDAV",   "CardDAV"};
    struct doc b = {0};
    lit(&b, "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Autodiscover>\n  <Response>\n");
    elem(&b, "    ", "Culture", "en:en");
    lit(&b, "    <User>\n");
    elem(&b, "      ", "DisplayName", display_name && *display_name ? display_name : email);
    elem(&b, "      ", "EMailAddress", email);
    lit(&b, "    </User>\n    <Account>\n");
    for (int svc = 0; svc < SD_NSERVICES; svc++) {
        if (!d->svc[svc].on)
            continue;
        const char *tls = d->svc[svc].tls;
        char port[8];
        snprintf(port, sizeof(port), "%d", d->svc[svc].port);
        lit(&b, "      <Protocol>\n");
        elem(&b, "        ", "Type", svc_type[svc]);
        elem(&b, "        ", "Server", d->svc[svc].host);
        elem(&b, "        ", "Port", port);
        /* the same reading as the Outlook schema: SSL for TLS of any kind,
         * Encryption says which */
        elem(&b, "        ", "SSL", strcmp(tls, "none") ? "on" : "off");
        elem(&b, "        ", "Encryption",
             !strcmp(tls, "tls")        ? "SSL"
             : !strcmp(tls, "starttls") ? "TLS"
                                        : "None");
        elem(&b, "        ", "LoginName", email);
        lit(&b, "      </Protocol>\n");
    }
    for (int i = 0; i < DISCOVER_NURLS; i++) {
        const char *u = discover_url(d, (enum smartdiscover_field)(SD_MOBILESYNC_URL + i));
        if (!u)
            continue;
        lit(&b, "      <Protocol>\n");
        elem(&b, "        ", "Type", url_type[i]);
        elem(&b, "        ", "Server", u);
        elem(&b, "        ", "Name", u);
        elem(&b, "        ", "LoginName", email);
        lit(&b, "      </Protocol>\n");
    }
    lit(&b, "    </Account>\n  </Response>\n</Autodiscover>\n");
    if (b.bad) {
        free(b.buf);
        return NULL;
    }
    return b.buf;
}
