/* Read-only views of the directory for the admin APIs: domains with their
 * description, account count and aliases in one listing, the accounts of a
 * domain with their usage and administrator status, and the groups an
 * account belongs to (the reverse of storage/groups.h's membership).
 *
 * Conventions as in storage/directory.h: blocking calls on a caller-owned
 * connection, 0 on success, -1 on a database error or invalid input with the
 * reason in err, DIR_ENOTFOUND for unknown names. err may be NULL. Callbacks
 * must not use the connection.
 */
#ifndef FLOE_STORAGE_DIRVIEW_H
#define FLOE_STORAGE_DIRVIEW_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "storage/directory.h"

/* A domain description is returned cut to this many characters (UTF-8, so
 * at most 4 bytes each). */
#define DIR_VIEW_DESC_CHARS 250
#define DIR_VIEW_DESC_SIZE (DIR_VIEW_DESC_CHARS * 4 + 1)

struct dir_domain_info {
    long long id; /* the domain's id (for an alias: the id of its domain) */
    char name[DIR_DOMAIN_MAX + 1];
    /* "" for a domain; for a domain alias, the own name of its domain */
    char alias_of[DIR_DOMAIN_MAX + 1];
    char description[DIR_VIEW_DESC_SIZE];
    long long accounts; /* accounts of every kind in the domain */
};

typedef int (*dir_domain_info_cb)(const struct dir_domain_info *d, void *ctx);

/* Calls cb for every domain and every domain alias, in name order (an alias
 * carries its domain's description and count). With admin_id > 0 only the
 * domains that account administers as a domain administrator
 * (storage/domainadmin.h), and their aliases, are listed. Returns 0 (also
 * when cb stopped early) or -1. */
int dir_view_domains(PGconn *c, long long admin_id, dir_domain_info_cb cb, void *ctx, char *err,
                     size_t errlen);

/* Reads one domain or domain alias by name. Returns 0, -1 or DIR_ENOTFOUND
 * (also for a malformed name). */
int dir_view_domain(PGconn *c, const char *name, struct dir_domain_info *d_r, char *err,
                    size_t errlen);

/* An account as the admin listings show it. */
struct dir_view_account {
    struct dir_account a;
    bool domain_admin;     /* administers the domain it is in (storage/domainadmin.h) */
    long long bytes_used;  /* storage/quota.h usage */
    long long bytes_limit; /* effective limit (account, else domain default, else
                            * server default); 0 = unlimited */
};

typedef int (*dir_view_account_cb)(const struct dir_view_account *v, void *ctx);

/* Calls cb for every account of domain (own name or alias), ordered by
 * local part, streamed. Returns 0 (also when cb stopped early), -1, or
 * DIR_ENOTFOUND for an unknown domain. */
int dir_view_accounts(PGconn *c, const char *domain, dir_view_account_cb cb, void *ctx, char *err,
                      size_t errlen);

/* Calls cb for every group the account account_id belongs to: groups that
 * name it as a member, groups that contain its whole domain (for a user:
 * the same rule as dir_group_expand()), and every group that contains one of
 * those, at any depth (membership cycles end the walk). Each group once,
 * ordered by domain then local part. Returns 0 (also when cb stopped early)
 * or -1. */
int dir_view_account_groups(PGconn *c, long long account_id, dir_account_cb cb, void *ctx,
                            char *err, size_t errlen);

#endif
