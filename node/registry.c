/* The services this node can run. Adding a service: write its session code
 * under node/services/ (or node/<service>/), declare its ops, add a row here
 * and document its keys and defaults in docs/CONFIG.md. */
#include "node/registry.h"

#include <string.h>

#include "node/http/http.h"
#include "node/services.h"

const struct service_def service_defs[] = {
    /* RFC 867 time service of seed 003; off by default. */
    {"daytime", false, "*:13", "", 30, "daytime", "tcp", "daytime-tls", "tls", NULL, NULL, &daytime_ops},
    /* POP3 (RFC 1939) with STLS on 110, implicit TLS on 995 (RFC 8314);
     * RFC 1939 §3: the autologout timer is at least 10 minutes. */
    {"pop3", true, "*:110", "*:995", 600, "pop3", "pop3", "pop3s", "pop3s", NULL, NULL, &pop3_ops},
    /* Health, readiness and metrics, and the admin API: plain HTTP on loopback (for
     * local health checks), HTTPS everywhere. */
    {"admin", true, "127.0.0.1:9180", "*:9443", 120, "admin-http", "http", "admin", "https", NULL, admin_http_init, &http_session_ops},
    /* The web service (seed 003 "Web", ports 80/443): client auto-configuration now;
     * DAV, ActiveSync and the rest later. */
    {"web", true, "*:80", "*:443", 120, "web", "http", "webs", "https", web_configure, web_http_init, &http_session_ops},
    /* IMAP (RFC 9051, RFC 3501) with STARTTLS on 143, implicit TLS on 993 (RFC 8314);
     * RFC 9051 §5.4: the autologout timer is at least 30 minutes. */
    {"imap", true, "*:143", "*:993", 1800, "imap", "imap", "imaps", "imaps", imap_configure, imap_init, &imap_ops},
    /* SMTP (seed 003 port table): the MX on 25 with STARTTLS, submission on 587
     * (AUTH required), implicit-TLS submission on 465 (RFC 8314). Settings
     * they share are in [smtp]. RFC 5321 §4.5.3.2.7: 5 minutes idle. */
    {"smtp", true, "*:25", "", 300, "smtp", "smtp", "smtps", "smtps", NULL, NULL, &smtp_ops},
    {"submission", true, "*:587", "", 300, "submission", "smtp", "submissions", "smtps", NULL, NULL, &smtp_ops},
    {"submissions", true, "", "*:465", 300, "submission", "smtp", "submissions", "smtps", NULL, NULL, &smtp_ops},
};
const size_t service_defs_count = sizeof(service_defs) / sizeof(service_defs[0]);

void registry_init(void)
{
    for (size_t i = 0; i < service_defs_count; i++)
        if (service_defs[i].init)
            service_defs[i].init();
}

const struct service_def *registry_find(const char *name)
{
    for (size_t i = 0; i < service_defs_count; i++)
        if (!strcmp(service_defs[i].name, name))
            return &service_defs[i];
    return NULL;
}
