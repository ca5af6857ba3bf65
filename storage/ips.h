/* Intrusion prevention in PostgreSQL (migration 0013): the cluster-wide list of
 * blocked client addresses, and the failed-login counters used when Redis is
 * not there.
 *
 * A block is (address, service): one host address (IPv4 or IPv6, no prefix)
 * and the [service NAME] it is refused from, or "*" for every service. It
 * carries a reason, the node that made it and the time it ends ("until");
 * expired blocks are ignored by every reader and deleted by ips_purge().
 *
 * Addresses are given as text and normalised here (inet_pton/inet_ntop): an
 * IPv4-mapped IPv6 address (::ffff:192.0.2.1) is the IPv4 address, so one
 * client has one spelling whatever socket it came in on.
 *
 * Every function is a blocking call on a caller-owned connection, one
 * statement, no transaction of its own. All times are the database's.
 * Returns as documented, -1 on a database error or an invalid argument with
 * the reason in err (err may be NULL). */
#ifndef FLOE_STORAGE_IPS_H
#define FLOE_STORAGE_IPS_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

/* Bytes of a normalised address, NUL included (INET6_ADDRSTRLEN). */
#define IPS_ADDRESS_MAX 46
/* Bytes of a service name ([a-z0-9_-], or "*"), a reason and a node name. */
#define IPS_SERVICE_MAX 32
#define IPS_REASON_MAX 256
#define IPS_NODE_MAX 64
/* Longest block: ten years. */
#define IPS_BLOCK_SECONDS_MAX (10u * 366u * 86400u)
/* Longest failure window: one day. */
#define IPS_WINDOW_SECONDS_MAX 86400u

struct ips_block {
    char address[IPS_ADDRESS_MAX];
    char service[IPS_SERVICE_MAX + 1];
    char reason[IPS_REASON_MAX + 1];
    char node[IPS_NODE_MAX + 1];
    long long blocked_unix, until_unix; /* seconds since the epoch (until rounded up) */
    bool expired;                       /* until has passed (only listed with include_expired) */
};

/* Normalises a textual host address into out (at least IPS_ADDRESS_MAX bytes):
 * IPv4 dotted quad, or IPv6 in RFC 5952 form; an IPv4-mapped IPv6 address
 * becomes the IPv4 address. 0 ok, -1 not a host address (a prefix, a name,
 * garbage). Pure: no database. */
int ips_address_normalize(const char *in, char *out, size_t outlen);

/* True for "*" and for 1..IPS_SERVICE_MAX bytes of [a-z0-9_-]. */
bool ips_service_valid(const char *service);

/* Blocks address from service ("*": every service) for seconds (1 ..
 * IPS_BLOCK_SECONDS_MAX) from now. An existing block of the same (address,
 * service) is never shortened: it ends at the later of the two ends and takes
 * the new reason and node. The end in force is stored in *until_r (may be
 * NULL), seconds since the epoch. reason (may be "") is at most
 * IPS_REASON_MAX bytes, node at most IPS_NODE_MAX. Returns 0 or -1. */
int ips_block_add(PGconn *c, const char *address, const char *service, const char *reason,
                  const char *node, unsigned seconds, long long *until_r, char *err, size_t errlen);

/* Lifts the blocks of address: of one service (service "*" is the block of
 * every service, which is a block of its own), or all of them with service
 * NULL. Returns the number removed (>= 0) or -1. */
int ips_block_remove(PGconn *c, const char *address, const char *service, char *err, size_t errlen);

/* Called for each listed block; a non-zero return stops the listing and is
 * returned by ips_block_list(). */
typedef int (*ips_block_fn)(const struct ips_block *b, void *arg);

/* Lists the blocks in force (and with include_expired the expired ones not yet
 * purged), ordered by address and service, at most max of them. Returns the
 * number listed (>= 0), -1 on error, or the callback's non-zero return. */
int ips_block_list(PGconn *c, bool include_expired, size_t max, ips_block_fn fn, void *arg,
                   char *err, size_t errlen);

/* Deletes the expired blocks, and the failure counters whose window of
 * window_s seconds has passed. Returns the number of blocks deleted or -1. */
int ips_purge(PGconn *c, unsigned window_s, char *err, size_t errlen);

/* Records one failed login of address and stores in *count_r the failures
 * counted in the current window: the window starts at the first failure and
 * lasts window_s seconds (1 .. IPS_WINDOW_SECONDS_MAX); a failure after it
 * starts a new window at 1. Returns 0 or -1. */
int ips_failure_add(PGconn *c, const char *address, unsigned window_s, unsigned *count_r, char *err,
                    size_t errlen);

/* Forgets the failures of address (after a successful login, or once it is
 * blocked). Returns 1 when there was a counter, 0 when not, or -1. */
int ips_failure_reset(PGconn *c, const char *address, char *err, size_t errlen);

#endif
