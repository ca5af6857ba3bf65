/* Domain administrators: accounts that manage the accounts and the domain
 * record of one or more domains (migration 0014), as opposed to server
 * administrators (dir_account.is_admin), who manage everything.
 *
 * The admin APIs (node/http/api.c, node/http/vendorapi.c) and floectl ask the
 * same two questions through this module: "may this administrator manage
 * domain D" and "may it manage the account at address A". A domain
 * administrator may never manage a server administrator's account, even in
 * its own domain: otherwise it could set that account's password and become
 * a server administrator itself.
 *
 * Conventions as in storage/directory.h: blocking calls on a caller-owned
 * connection, one transaction per call (nothing written on error), 0 on
 * success, -1 on invalid input or a database error with the reason in err,
 * and the DIR_* codes where described. err may be NULL.
 */
#ifndef FLOE_STORAGE_DOMAINADMIN_H
#define FLOE_STORAGE_DOMAINADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "storage/directory.h"

/* Most domains one account may administer. */
#define DIR_DOMAIN_ADMIN_MAX 1000

/* Makes the user account at address an administrator of domain (its own
 * name or an alias). Returns 0; -1 when the account is not a user (groups
 * and resources do not log in) or already administers DIR_DOMAIN_ADMIN_MAX
 * domains; DIR_ENOTFOUND for an unknown account or domain; DIR_EEXIST when
 * it administers the domain already. */
int dir_domain_admin_add(PGconn *c, const char *address, const char *domain, char *err,
                         size_t errlen);

/* Ends the account's administration of domain. Returns 0, -1, or
 * DIR_ENOTFOUND for an unknown account or domain, or when the account does
 * not administer the domain. */
int dir_domain_admin_remove(PGconn *c, const char *address, const char *domain, char *err,
                            size_t errlen);

/* Calls cb with the own name of every domain the account at address
 * administers, in name order. Returns 0 (also when cb stopped early), -1 or
 * DIR_ENOTFOUND. The callback must not use the connection. */
int dir_domain_admin_list(PGconn *c, const char *address, dir_domain_cb cb, void *ctx, char *err,
                          size_t errlen);

/* Calls cb for every administrator of domain (own name or alias), ordered
 * by domain then local part. Server administrators are not listed (they
 * administer every domain without a row). Returns 0 (also when cb stopped
 * early), -1 or DIR_ENOTFOUND. */
int dir_domain_admins(PGconn *c, const char *domain, dir_account_cb cb, void *ctx, char *err,
                      size_t errlen);

/* Whether account_id administers domain_id as a domain administrator (a
 * server administrator's rights are not looked at here). One primary-key
 * lookup. Returns 1 yes, 0 no, -1 on a database error (PQerrorMessage(c)
 * says why). */
int dir_is_domain_admin(PGconn *c, long long account_id, long long domain_id);

/* Whether who may manage domain (its own name or an alias): always for a
 * server administrator, else when who administers it. An unknown or
 * malformed domain is 0 for a domain administrator, so that the answer
 * reveals nothing about domains it does not manage. Disabled accounts may
 * manage nothing. Returns 1, 0 or -1 with err. */
int dir_admin_may_domain(PGconn *c, const struct dir_account *who, const char *domain, char *err,
                         size_t errlen);

/* Whether who may manage the account at address (which need not exist yet:
 * for a new account, its domain decides): always for a server administrator;
 * for a domain administrator, when it administers the address's domain and
 * the account, if it exists, is not a server administrator. Returns 1, 0 or
 * -1 with err. */
int dir_admin_may_account(PGconn *c, const struct dir_account *who, const char *address, char *err,
                          size_t errlen);

/* Counts the domains the account with id account_id administers into
 * *n_r. Returns 0 or -1. */
int dir_domain_admin_count(PGconn *c, long long account_id, long long *n_r, char *err,
                           size_t errlen);

#endif
