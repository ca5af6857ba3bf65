/* Quotas: limits on the bytes and messages an account stores, at three
 * levels, and the usage counters the mail store keeps.
 *
 *   server   a default limit per account (server_settings);
 *   domain   a default limit per account of the domain (overrides the
 *            server's), and a limit on the total of all its accounts;
 *   account  the account's own limit (overrides both defaults).
 *
 * The effective limit of an account, per dimension, is its own value if set,
 * else its domain's default per account if set, else the server default.
 * A limit of 0 means unlimited (so an account can be exempt from a default).
 *
 * Usage (quota_usage) is changed only through quota_charge(), inside the mail
 * store's own transactions, so usage and stored messages commit together.
 *
 * Conventions as in storage/directory.h: 0 on success, -1 on invalid input
 * or a database error with the reason in err, the codes below and DIR_*
 * codes where described. err may be NULL.
 */
#ifndef FLOE_STORAGE_QUOTA_H
#define FLOE_STORAGE_QUOTA_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "storage/directory.h"

/* The charge would take the account past its effective limit, or its
 * domain past the domain's total. */
#define QUOTA_EXCEEDED (-5)
/* The new limit is below what is already stored and force was not given. */
#define QUOTA_EBELOWUSAGE (-6)

/* Values for the limit arguments of the quota_set_* functions besides a
 * limit (0..QUOTA_VALUE_MAX; 0 = unlimited). */
#define QUOTA_KEEP (-1LL)    /* leave this limit as it is */
#define QUOTA_INHERIT (-2LL) /* remove this level's own value (account, domain default) */

/* Largest limit, and largest single charge (either sign): 2^60 (1 EiB). */
#define QUOTA_VALUE_MAX (1LL << 60)

/* Where an effective limit comes from. */
enum quota_source {
    QUOTA_FROM_ACCOUNT,
    QUOTA_FROM_DOMAIN,
    QUOTA_FROM_SERVER,
};

/* "account", "domain" or "server". */
const char *quota_source_name(enum quota_source s);

struct quota_info {
    long long account_id;
    char address[DIR_ADDRESS_SIZE];
    long long bytes_limit, messages_limit; /* effective, 0 = unlimited */
    enum quota_source bytes_from, messages_from;
    long long bytes_used, messages_used;
    long long domain_bytes_limit, domain_messages_limit; /* totals, 0 = unlimited */
    long long domain_bytes_used, domain_messages_used;   /* sums over the domain */
};

struct quota_domain_info {
    char domain[DIR_DOMAIN_MAX + 1];
    long long bytes_limit, messages_limit; /* totals, 0 = unlimited */
    /* default per account; QUOTA_INHERIT when not set (the server's applies) */
    long long account_bytes, account_messages;
    long long bytes_used, messages_used; /* sums over the domain's accounts */
};

struct quota_server_info {
    long long account_bytes, account_messages; /* default per account, 0 = unlimited */
};

/* Parses a limit given by an administrator: a decimal number, for sizes
 * (sizes true) optionally followed by K, M, G or T (powers of 1024, either
 * case); "unlimited" is 0; "inherit" is QUOTA_INHERIT when allow_inherit.
 * Returns 0 with *v_r set, -1 with the reason in err. */
int quota_parse(const char *s, bool sizes, bool allow_inherit, long long *v_r, char *err,
                size_t errlen);

/* Reads the limits and usage of the account at address. Returns 0, -1 or
 * DIR_ENOTFOUND. */
int quota_get(PGconn *c, const char *address, struct quota_info *q_r, char *err, size_t errlen);

/* Reads the limits and usage of a domain (own name or alias). Returns 0, -1
 * or DIR_ENOTFOUND. */
int quota_get_domain(PGconn *c, const char *domain, struct quota_domain_info *q_r, char *err,
                     size_t errlen);

/* Reads the server defaults. Returns 0 or -1. */
int quota_get_server(PGconn *c, struct quota_server_info *q_r, char *err, size_t errlen);

/* Sets the account's own limits: a limit, QUOTA_KEEP or QUOTA_INHERIT each.
 * Unless force, refused with QUOTA_EBELOWUSAGE ("quota below usage: ...")
 * when the account's new effective limit of a changed dimension is below
 * its usage. Returns 0, -1, DIR_ENOTFOUND or QUOTA_EBELOWUSAGE. */
int quota_set_account(PGconn *c, const char *address, long long bytes, long long messages,
                      bool force, char *err, size_t errlen);

/* Sets a domain's limits in one transaction: the totals bytes and messages
 * (a limit or QUOTA_KEEP each) and the default per account account_bytes
 * and account_messages (a limit, QUOTA_KEEP or QUOTA_INHERIT each). Unless
 * force, refused with QUOTA_EBELOWUSAGE when a changed total is below the
 * domain's total usage, or when an account of the domain that takes a
 * changed default would end up below its usage. Returns 0, -1,
 * DIR_ENOTFOUND or QUOTA_EBELOWUSAGE. */
int quota_set_domain(PGconn *c, const char *domain, long long bytes, long long messages,
                     long long account_bytes, long long account_messages, bool force, char *err,
                     size_t errlen);

/* Sets the server default limits per account (a limit or QUOTA_KEEP each).
 * Unless force, refused with QUOTA_EBELOWUSAGE when an account that takes
 * the server default would end up below its usage. Returns 0, -1 or
 * QUOTA_EBELOWUSAGE. */
int quota_set_server(PGconn *c, long long bytes, long long messages, bool force, char *err,
                     size_t errlen);

/* Adds dbytes and dmessages (negative to release) to the account's usage.
 * With enforce, a charge that grows a dimension is refused with
 * QUOTA_EXCEEDED, changing nothing, when it would take that dimension past
 * the account's effective limit or the domain's total; exactly reaching a
 * limit is allowed. Releases are never refused and usage does not go below
 * zero. Without enforce the charge is always applied (for messages that are
 * accepted whatever the quota, such as a copy the system must keep).
 *
 * Runs inside the caller's transaction when one is open on c, so usage
 * commits or rolls back with the messages it counts; then on -1 the
 * transaction has failed and must be rolled back, while QUOTA_EXCEEDED
 * leaves it usable. Without an open transaction it runs in its own.
 * While the caller's transaction lasts, the account's usage row stays
 * locked, and when the domain has a total limit so does the domain's row, so
 * concurrent charges in that domain wait their turn: totals hold exactly.
 * This relies on the READ COMMITTED isolation level (PostgreSQL's default)
 * for the caller's transaction: under REPEATABLE READ a charge could not see
 * the charges committed while it waited.
 * Returns 0, -1, DIR_ENOTFOUND (unknown account) or QUOTA_EXCEEDED. */
int quota_charge(PGconn *c, long long account_id, long long dbytes, long long dmessages,
                 bool enforce, char *err, size_t errlen);

#endif
