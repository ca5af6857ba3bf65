/* Addresses that reach an account: aliases of accounts, domain aliases,
 * catch-all accounts, and forwarders; and the resolution of an address to
 * its account that SMTP RCPT, logins and delivery use.
 *
 * Conventions as in storage/directory.h: blocking calls on a caller-owned
 * connection, one transaction per call (nothing written on error), 0 on
 * success, -1 on invalid input or a database error with the reason in err,
 * and the DIR_* codes where described. err may be NULL. Every write drops the
 * directory cache (storage/dircache.h) once committed.
 */
#ifndef FLOE_STORAGE_ALIASES_H
#define FLOE_STORAGE_ALIASES_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "storage/directory.h"

/* Most aliases one account may have. */
#define DIR_ALIASES_MAX 100
/* Most aliases one domain may have. */
#define DIR_DOMAIN_ALIASES_MAX 100
/* Most forward targets of one account. */
#define DIR_FORWARD_MAX 32

/* ---- account aliases ---- */

/* Adds alias (local@domain) as a further address of the account at
 * account_address. The alias's domain must be a domain or a domain alias; in
 * the latter case the alias is stored under the real domain, so a@alias.org
 * is kept as a@example.org. The alias is stored lower-case. The account may
 * be in any domain and is named by its address (through a domain alias too),
 * not by another alias.
 * Returns 0; -1 for a malformed address or when the account already has
 * DIR_ALIASES_MAX aliases; DIR_ENOTFOUND for an unknown domain ("unknown
 * domain x") or account ("unknown account x"); DIR_EEXIST when the alias is
 * already an account or an alias (of any account). */
int dir_alias_add(PGconn *c, const char *alias, const char *account_address, char *err,
                  size_t errlen);

/* Removes an alias (named through a domain alias too). Returns 0, -1 or
 * DIR_ENOTFOUND. */
int dir_alias_remove(PGconn *c, const char *alias, char *err, size_t errlen);

/* Called once per alias, in address order. Return 0 to continue, non-zero
 * to stop. The callback must not use the connection. */
typedef int (*dir_alias_cb)(const char *alias, void *ctx);

/* Calls cb for every alias of the account at account_address. Returns 0
 * (also when cb stopped early), -1, or DIR_ENOTFOUND for an unknown
 * account. */
int dir_alias_list(PGconn *c, const char *account_address, dir_alias_cb cb, void *ctx, char *err,
                   size_t errlen);

/* ---- domain aliases ---- */

/* Makes alias another name of domain (given by its own name or another of
 * its aliases). alias is validated like a domain name and stored lower-case.
 * Returns 0; -1 for an invalid name or when the domain has
 * DIR_DOMAIN_ALIASES_MAX aliases; DIR_ENOTFOUND for an unknown domain;
 * DIR_EEXIST when alias is already a domain or a domain alias. */
int dir_domain_alias_add(PGconn *c, const char *alias, const char *domain, char *err,
                         size_t errlen);

/* Removes a domain alias. Addresses stored under the domain (accounts,
 * aliases) are not affected. Returns 0, -1 or DIR_ENOTFOUND (also when alias
 * is a domain's own name). */
int dir_domain_alias_remove(PGconn *c, const char *alias, char *err, size_t errlen);

/* Called once per domain alias with the alias and its domain's own name. */
typedef int (*dir_domain_alias_cb)(const char *alias, const char *domain, void *ctx);

/* Calls cb for every alias of domain (own name or alias), or of all domains
 * when domain is NULL, ordered by domain then alias. Returns 0 (also when cb
 * stopped early), -1, or DIR_ENOTFOUND for an unknown domain. */
int dir_domain_alias_list(PGconn *c, const char *domain, dir_domain_alias_cb cb, void *ctx,
                          char *err, size_t errlen);

/* ---- catch-all ---- */

/* Sets the account that receives mail for local parts of domain (own name
 * or alias) that match no account and no alias; account_address NULL removes
 * it. The account may be in any domain. Deleting the account removes the
 * catch-all. Returns 0, -1, or DIR_ENOTFOUND for an unknown domain or
 * account. */
int dir_domain_set_catchall(PGconn *c, const char *domain, const char *account_address, char *err,
                            size_t errlen);

/* Stores the catch-all account's address of domain in account_r ("" when the
 * domain has none). Returns 0, -1 or DIR_ENOTFOUND. */
int dir_domain_get_catchall(PGconn *c, const char *domain, char account_r[DIR_ADDRESS_SIZE],
                            char *err, size_t errlen);

/* ---- resolution ---- */

/* How an address reached its account. */
enum dir_via {
    DIR_VIA_ACCOUNT = 1, /* the account's own address */
    DIR_VIA_ALIAS,       /* an alias of the account */
    DIR_VIA_CATCHALL,    /* the domain's catch-all */
};

struct dir_target {
    struct dir_account account;
    enum dir_via via;
};

/* "account", "alias" or "catchall". */
const char *dir_via_name(enum dir_via via);

/* Resolves an address to the account that receives its mail. The domain
 * may be a domain alias. Order, first match wins:
 *   1. an account with that local part in the domain (ignoring case);
 *   2. an alias with that address;
 *   3. the domain's catch-all account.
 * Disabled accounts are returned like others (t_r->account.disabled says
 * so); groups are returned as the group account (dir_group_expand() fans
 * them out). Forwarders are not applied (dir_forward_get()).
 * Returns 0 with *t_r filled (t_r may be NULL), -1 on a database error, or
 * DIR_ENOTFOUND for an unknown address or domain and a malformed address (as
 * dir_account_find()). */
int dir_resolve(PGconn *c, const char *address, struct dir_target *t_r, char *err, size_t errlen);

/* ---- forwarders ---- */

struct dir_forward {
    bool keep_copy; /* deliver to the account as well */
    size_t n;       /* 0 = no forwarding */
    char targets[DIR_FORWARD_MAX][DIR_ADDRESS_SIZE];
};

/* Sets the forwarding of the account at address to targets[0..n-1], each a
 * local@domain address (the RFC 5321 Dot-string local parts and domain names
 * that dir_address_parse() accepts; the domain is stored lower-case), and
 * keep_copy. Replaces any earlier forwarding.
 * Returns 0; -1 when n is 0 or more than DIR_FORWARD_MAX, a target is
 * malformed, appears twice (ignoring case), or resolves to the account
 * itself (a loop); DIR_ENOTFOUND for an unknown account. */
int dir_forward_set(PGconn *c, const char *address, const char *const *targets, size_t n,
                    bool keep_copy, char *err, size_t errlen);

/* Removes the forwarding of the account (harmless when there is none).
 * Returns 0, -1 or DIR_ENOTFOUND. */
int dir_forward_clear(PGconn *c, const char *address, char *err, size_t errlen);

/* Reads the forwarding of the account into *f_r (n = 0 when none). Returns
 * 0, -1 or DIR_ENOTFOUND. */
int dir_forward_get(PGconn *c, const char *address, struct dir_forward *f_r, char *err,
                    size_t errlen);

#endif
