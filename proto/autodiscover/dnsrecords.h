/* The DNS records a mail domain served by Floe needs (docs/DNS.md), as zone-file
 * lines: MX, SPF, the RFC 6186 / RFC 8314 SRV records for mail, RFC 6764 for
 * CalDAV/CardDAV, the Autodiscover SRV record, and the autoconfig/autodiscover
 * names. Pure: the caller prints or serves them (floectl dns records, admin API). */
#ifndef FLOE_PROTO_AUTODISCOVER_DNSRECORDS_H
#define FLOE_PROTO_AUTODISCOVER_DNSRECORDS_H

#include <stddef.h>

/* Calls line(text, arg) once per record ("name. TTL IN TYPE data", no newline).
 * domain and host are DNS names (validated: LDH labels); ttl in seconds.
 * Returns the number of records, or -1 when a name is invalid. */
int dns_records(const char *domain, const char *host, unsigned ttl,
                void (*line)(const char *text, void *arg), void *arg);

#endif
