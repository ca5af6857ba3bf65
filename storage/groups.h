/* Groups and resources: accounts of kind "group" with members, and of kind
 * "resource" (rooms, equipment) with managers and a booking policy.
 *
 * Conventions as in storage/directory.h: blocking calls on a caller-owned
 * connection, one transaction per call (nothing written on error), 0 on
 * success, -1 on invalid input or a database error with the reason in err,
 * and the DIR_* codes where described. err may be NULL. Every write drops the
 * directory cache (storage/dircache.h) once committed.
 *
 * Members. A group's members are accounts (users or resources), other groups
 * (nested to any depth) and whole domains (all their users, now and later).
 * Members may be in any domain. A membership that would make a group contain
 * itself, directly or through other groups, is refused with DIR_ECYCLE.
 * Deleting an account or a domain removes its memberships.
 */
#ifndef FLOE_STORAGE_GROUPS_H
#define FLOE_STORAGE_GROUPS_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "storage/directory.h"

/* Adding the member would make a group contain itself. */
#define DIR_ECYCLE (-7)

/* Most direct members of one group. */
#define DIR_GROUP_MEMBERS_MAX 10000
/* Most managers of one resource. */
#define DIR_RESOURCE_MANAGERS_MAX 100

/* ---- groups ---- */

/* Adds a group account at address (no password: a group does not log in).
 * full_name may be NULL. deliver_to is "members" (mail to the group is sent
 * to every member of dir_group_expand()) or "folder" (it is stored in the
 * group's shared folder and not sent to members); NULL = "members".
 * Returns as dir_account_add(): 0, -1, DIR_ENOTFOUND (unknown domain) or
 * DIR_EEXIST. */
int dir_group_add(PGconn *c, const char *address, const char *full_name, const char *deliver_to,
                  char *err, size_t errlen);

/* Changes where mail to the group goes ("members" or "folder"). Returns 0,
 * -1 (also when the account is not a group) or DIR_ENOTFOUND. */
int dir_group_set_deliver(PGconn *c, const char *group, const char *deliver_to, char *err,
                          size_t errlen);

/* Stores the group's deliver_to ("members" or "folder") in deliver_r.
 * Returns 0, -1 (also when the account is not a group) or DIR_ENOTFOUND. */
int dir_group_get_deliver(PGconn *c, const char *group, char deliver_r[16], char *err,
                          size_t errlen);

/* Adds a member to group. kind is "account" (member is the address of a user
 * or resource), "group" (the address of a group) or "domain" (a domain name
 * or alias); NULL infers it: a name without '@' is a domain, an address is
 * "group" or "account" by the kind of its account.
 * Returns 0; -1 for an invalid kind, a member whose account does not match
 * the kind, a group that is not a group, or a group already holding
 * DIR_GROUP_MEMBERS_MAX members; DIR_ENOTFOUND for an unknown group or
 * member; DIR_EEXIST when it is a member already; DIR_ECYCLE when member is
 * the group itself or already contains it through nested groups. */
int dir_group_member_add(PGconn *c, const char *group, const char *member, const char *kind,
                         char *err, size_t errlen);

/* Removes a member (kind as for dir_group_member_add(), NULL = inferred).
 * Returns 0, -1, or DIR_ENOTFOUND for an unknown group or member, or one
 * that is not a member. */
int dir_group_member_remove(PGconn *c, const char *group, const char *member, const char *kind,
                            char *err, size_t errlen);

/* Called once per direct member with its kind ("account", "group" or
 * "domain") and name (an address, or a domain's own name). */
typedef int (*dir_member_cb)(const char *kind, const char *name, void *ctx);

/* Calls cb for every direct member of group, ordered by kind then name.
 * Returns 0 (also when cb stopped early), -1, or DIR_ENOTFOUND. */
int dir_group_member_list(PGconn *c, const char *group, dir_member_cb cb, void *ctx, char *err,
                          size_t errlen);

/* Calls cb once for every account the group reaches: its account members,
 * the users of its domain members, and the same for every group nested in
 * it, at any depth. Each account is reported once, however many paths reach
 * it; groups themselves are not reported, and a domain member contributes
 * only its accounts of kind user (not its groups or resources). Disabled
 * accounts are included (a->disabled). Ordered by domain, then local part.
 * Rows are streamed. Returns 0 (also when cb stopped early), -1 (also when
 * the account is not a group), or DIR_ENOTFOUND. */
int dir_group_expand(PGconn *c, const char *group, dir_account_cb cb, void *ctx, char *err,
                     size_t errlen);

/* ---- resources ---- */

struct dir_resource {
    char type[16];    /* "room" or "equipment" */
    char booking[24]; /* "auto_accept" or "manager_approval" */
};

/* Adds a resource account at address with its type ("room" or
 * "equipment"), booking policy (as for dir_resource_set(); NULL =
 * "auto_accept") and full_name (may be NULL). Returns as dir_account_add(),
 * and -1 for an invalid type or booking policy. */
int dir_resource_add(PGconn *c, const char *address, const char *type, const char *booking,
                     const char *full_name, char *err, size_t errlen);

/* Changes a resource's type and/or booking policy ("auto_accept": a request
 * for a free slot is accepted at once; "manager_approval": a manager decides);
 * NULL leaves that setting as it is. Returns 0, -1 (invalid value, not a
 * resource) or DIR_ENOTFOUND. */
int dir_resource_set(PGconn *c, const char *address, const char *type, const char *booking,
                     char *err, size_t errlen);

/* Reads a resource's settings. A resource account that never had them set
 * (made with dir_account_add()) reads as a room with auto_accept. Returns 0,
 * -1 (not a resource) or DIR_ENOTFOUND. */
int dir_resource_get(PGconn *c, const char *address, struct dir_resource *r_r, char *err,
                     size_t errlen);

/* Makes the user account manager a manager of resource. Returns 0, -1 (not
 * a resource, manager not a user, DIR_RESOURCE_MANAGERS_MAX reached),
 * DIR_ENOTFOUND or DIR_EEXIST (already a manager). */
int dir_resource_manager_add(PGconn *c, const char *resource, const char *manager, char *err,
                             size_t errlen);

/* Removes a manager. Returns 0, -1 or DIR_ENOTFOUND (also when not a
 * manager). */
int dir_resource_manager_remove(PGconn *c, const char *resource, const char *manager, char *err,
                                size_t errlen);

/* Calls cb for every manager of resource, ordered by domain then local part.
 * Returns 0 (also when cb stopped early), -1 or DIR_ENOTFOUND. */
int dir_resource_manager_list(PGconn *c, const char *resource, dir_account_cb cb, void *ctx,
                              char *err, size_t errlen);

#endif
