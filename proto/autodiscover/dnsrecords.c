/* DNS records for a domain (see dnsrecords.h). */
#include "proto/autodiscover/dnsrecords.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* LDH labels of 1-63 characters, at most 253 in all, no leading or trailing hyphen. */
static bool dns_name_ok(const char *name)
{
    size_t n = strlen(name), label = 0;
    if (n == 0 || n > 253 || name[n - 1] == '.')
        return false;
    for (size_t i = 0; i <= n; i++) {
        char c = name[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || name[i - 1] == '-' || name[i - label] == '-')
                return false;
            label = 0;
        } else if (isalnum((unsigned char)c) || c == '-') {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

int dns_records(const char *domain, const char *host, unsigned ttl,
                void (*line)(const char *text, void *arg), void *arg)
{
    if (!dns_name_ok(domain) || !dns_name_ok(host))
        return -1;
    /* RFC 6186 (mail), RFC 8314 (implicit TLS submission), RFC 6764 (CalDAV/CardDAV):
     * priority 0 weight 1; plain-text variants get a lower preference (priority 10). */
    static const struct {
        const char *service;
        unsigned prio, port;
    } srv[] = {{"_submissions._tcp", 0, 465}, {"_submission._tcp", 10, 587},
               {"_imaps._tcp", 0, 993},       {"_imap._tcp", 10, 143},
               {"_pop3s._tcp", 0, 995},       {"_pop3._tcp", 10, 110},
               {"_caldavs._tcp", 0, 443},     {"_carddavs._tcp", 0, 443},
               {"_autodiscover._tcp", 0, 443}};
    char buf[600];
    int count = 0;
#define EMIT(...)                                                                                 \
    do {                                                                                          \
        snprintf(buf, sizeof(buf), __VA_ARGS__);                                                  \
        line(buf, arg);                                                                           \
        count++;                                                                                  \
    } while (0)
    EMIT("%s. %u IN MX 10 %s.", domain, ttl, host);
    EMIT("%s. %u IN TXT \"v=spf1 mx -all\"", domain, ttl);
    EMIT("_dmarc.%s. %u IN TXT \"v=DMARC1; p=quarantine\"", domain, ttl);
    for (size_t i = 0; i < sizeof(srv) / sizeof(srv[0]); i++)
        EMIT("%s.%s. %u IN SRV %u 1 %u %s.", srv[i].service, domain, ttl, srv[i].prio,
             srv[i].port, host);
    /* RFC 6764 §4: where the DAV context path starts */
    EMIT("_caldavs._tcp.%s. %u IN TXT \"path=/.well-known/caldav\"", domain, ttl);
    EMIT("_carddavs._tcp.%s. %u IN TXT \"path=/.well-known/carddav\"", domain, ttl);
    /* names clients try before SRV: Thunderbird autoconfig, Outlook/EAS autodiscover */
    if (strcmp(host, domain)) {
        EMIT("autoconfig.%s. %u IN CNAME %s.", domain, ttl, host);
        EMIT("autodiscover.%s. %u IN CNAME %s.", domain, ttl, host);
    }
#undef EMIT
    return count;
}
