/* Auto-configuration settings from the node configuration (see discover_settings.h). */
#include "node/http/discover_settings.h"

#include <stdio.h>

void discover_settings(const struct config *cfg, const char *domain, struct discover_settings *d)
{
    const struct service_config *sc = config_service(cfg, "web");
    const char *host = cfg->hostname;
    char err[64];
    if (sc)
        config_service_get_str(sc, "public_hostname", cfg->hostname, &host, err, sizeof(err));
    snprintf(d->host, sizeof(d->host), "%s", host);
    snprintf(d->activesync, sizeof(d->activesync), "https://%s/Microsoft-Server-ActiveSync",
             d->host);
    snprintf(d->autodiscover, sizeof(d->autodiscover),
             "https://%s/autodiscover/autodiscover.xml", d->host);
    d->s = (struct autodiscover_settings){
        .display_name = domain,
        .imap_host = d->host, .imap_port = 993, .imap_tls = "tls",
        .pop3_host = d->host, .pop3_port = 995, .pop3_tls = "tls",
        .smtp_host = d->host, .smtp_port = 587, .smtp_tls = "starttls",
        .activesync_url = d->activesync,
        .autodiscover_url = d->autodiscover,
    };
}
