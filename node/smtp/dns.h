/* Outbound DNS for mail delivery: where mail for a domain goes (MX, RFC 5321 §5.1,
 * null MX RFC 7505) and the addresses of a host (A and AAAA).
 *
 * Blocking, for the delivery threads: each call returns when its answers are in or
 * its deadline has passed. A resolver owns one c-ares channel and is used by one
 * thread at a time (one resolver per delivery thread); different resolvers may be
 * used concurrently.
 *
 * Every lookup returns DNS_OK, DNS_TEMP (try again later: SERVFAIL, timeout, no
 * answer, network error) or DNS_PERM (the answer is final: the name does not exist
 * (NXDOMAIN), has no usable record, or is not a valid name). A caller turns DNS_PERM
 * into a bounce and DNS_TEMP into a retry. */
#ifndef FLOE_NODE_SMTP_DNS_H
#define FLOE_NODE_SMTP_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define DNS_MAX_NAME 255     /* bytes in a domain name, without the final NUL */
#define DNS_MAX_MX 32        /* MX hosts kept per domain (the lowest preferences) */
#define DNS_MAX_ADDRS 32     /* addresses returned per host (at most half per family) */
#define DNS_MAX_SERVERS 1024 /* bytes in a server list */
#define DNS_DEFAULT_TIMEOUT_MS 10000

enum dns_status {
    DNS_OK = 0,
    DNS_TEMP = -1, /* temporary: SERVFAIL, timeout, refused, network error */
    DNS_PERM = -2, /* permanent: NXDOMAIN, no usable record, invalid name */
};

struct dns_resolver;

struct dns_mx {
    char host[DNS_MAX_NAME + 1]; /* without a trailing dot */
    unsigned pref;
};

struct dns_mx_result {
    struct dns_mx mx[DNS_MAX_MX]; /* ascending preference; equal preferences shuffled */
    size_t n;
    bool implicit; /* no MX record: mx[0] is the domain itself, preference 0 */
    bool null_mx;  /* RFC 7505 null MX: the domain accepts no mail; n is 0 */
};

/* A resolver asking SERVERS: "" (or NULL) for the system's resolvers
 * (/etc/resolv.conf), else a comma-separated list of "ADDR", "ADDR:PORT",
 * "[IPV6]" or "[IPV6]:PORT" (at most DNS_MAX_SERVERS bytes). TIMEOUT_MS bounds each
 * dns_mx()/dns_addrs() call as a whole, retries included; 0 means
 * DNS_DEFAULT_TIMEOUT_MS. Returns NULL with a message in err on a bad server list or
 * when c-ares cannot start. err may be NULL when errlen is 0. */
struct dns_resolver *dns_resolver_new(const char *servers, unsigned timeout_ms, char *err,
                                      size_t errlen);
/* Frees the resolver (cancelling nothing: no lookup is running between calls) and
 * NULLs *r; *r may be NULL. */
void dns_resolver_free(struct dns_resolver **r);

/* Where mail for DOMAIN goes (RFC 5321 §5.1). Fills *res_r and returns DNS_OK when:
 *  - MX records exist: the hosts ordered by preference, equal preferences in random
 *    order (§5.1 spreads load between them), at most DNS_MAX_MX; MX records naming
 *    the root (".") are left out unless it is the only record;
 *  - the only MX record names the root with preference 0: null_mx is true and n 0
 *    (RFC 7505 §3: the domain accepts no mail; the caller bounces with 5.1.10);
 *  - no MX record but an A or AAAA record: the implicit MX, mx[0] = DOMAIN with
 *    preference 0, implicit true.
 * Returns DNS_PERM when DOMAIN does not exist (NXDOMAIN), has neither MX nor address
 * records, has only MX records naming the root with a non-zero preference, or is not
 * a valid name; DNS_TEMP on SERVFAIL, timeout or any other failure. On failure
 * *res_r is emptied and err gets a one-line reason. A trailing dot on DOMAIN is
 * accepted. No search domains are applied: DOMAIN is always fully qualified. */
int dns_mx(struct dns_resolver *r, const char *domain, struct dns_mx_result *res_r, char *err,
           size_t errlen);

/* The addresses of HOST: the AAAA answers (as sockaddr_in6) then the A answers (as
 * sockaddr_in), each family at most DNS_MAX_ADDRS / 2, in the order the server gave
 * them, with port 0 (the caller sets the port). addrs_r has room for DNS_MAX_ADDRS
 * entries; *n_r gets the count. Returns DNS_OK when at least one address was found
 * (even if the lookup of the other family failed); DNS_PERM when HOST does not
 * exist, has no address record, or is not a valid name; DNS_TEMP otherwise. On
 * failure *n_r is 0 and err gets a one-line reason. */
int dns_addrs(struct dns_resolver *r, const char *host, struct sockaddr_storage *addrs_r,
              size_t *n_r, char *err, size_t errlen);

/* Parses an SMTP address literal (RFC 5321 §4.1.3): "[192.0.2.1]" or
 * "[IPv6:2001:db8::1]" (the tag case-insensitive), into *addr_r with port 0.
 * Returns 0, or -1 when LITERAL is not one of those two forms (general address
 * literals "[tag:...]" are not supported). */
int dns_literal(const char *literal, struct sockaddr_storage *addr_r);

/* A short static description of a status ("ok", "temporary failure", ...). */
const char *dns_status_str(int status);

#endif
