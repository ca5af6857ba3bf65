/* Folders of other accounts as one account sees them: shared and public
 * folders (seed 000 "Sharing Concepts", "Public Folders").
 *
 * Nothing here is a new kind of data. A folder is shared when its rights
 * (storage/acl.h) give some account a right on it; the folders of group
 * accounts are the public folders (a group "with a public shared folder" is
 * a group that owns folders: mail sent to a group that keeps its mail lands
 * in the group's INBOX). An account is subscribed to another account's
 * shared folders when it is subscribed to at least one of them (the
 * subscriptions table of migration 0002), which is what the IMAP
 * "CREATE ~user@domain" subscription does for every folder it may see.
 *
 * The rights are exactly acl_rights()'s, computed for every folder of the
 * owners concerned in one statement: the owner set comes from the reverse
 * index folder_acl_grantee (entries naming the account, one of its groups,
 * its domain, or anyone), the inheritance is walked down each owner's tree
 * once (folders_parent), and the entries of the folder that applies are read
 * through folder_acl_entry.
 *
 * Functions return 0 on success and -1 on a database error with the reason
 * in err (err may be NULL).
 */
#ifndef FLOE_STORAGE_SHARING_H
#define FLOE_STORAGE_SHARING_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "storage/directory.h"
#include "storage/folders.h"

/* Which owners: accounts of kind user or resource (shared folders), groups
 * (public folders), or both. */
enum sharing_scope {
    SHARING_USERS = 0,
    SHARING_GROUPS,
    SHARING_ALL,
};

/* One folder of another account, with what the viewing account may do. */
struct sharing_folder {
    struct folder f;              /* f.account_id is the owner */
    char owner[DIR_ADDRESS_SIZE]; /* the owner's address */
    bool owner_is_group;          /* a public folder */
    unsigned rights;              /* storage/acl.h mask, never 0 */
    bool subscribed;              /* the viewing account subscribed to it */
};

/* Called once per folder. Return 0 to continue, non-zero to stop. The
 * callback must not use the connection. */
typedef int (*sharing_cb)(const struct sharing_folder *sf, void *ctx);

/* Calls cb for every folder, of any kind, of another account in scope on
 * which account_id has at least one right, ordered by owner address, then
 * path (a parent before its children). subscribed_owners: only owners the
 * account is subscribed to (see the top of this file). owner_id > 0: only
 * that owner. Rows are streamed. Returns 0 (also when cb stopped early) or
 * -1. */
int sharing_list(PGconn *c, long long account_id, enum sharing_scope scope, bool subscribed_owners,
                 long long owner_id, sharing_cb cb, void *ctx, char *err, size_t errlen);

/* Subscribes account_id to every folder of owner_id on which it has the
 * lookup right "l" (on), or removes every subscription it has to folders of
 * owner_id (off). *count_r (may be NULL) receives the number of folders
 * the account is now subscribed to (on) or was unsubscribed from (off); 0
 * means the owner shares nothing the account may see (on) or nothing was
 * subscribed (off). Either way one statement: all or nothing. Subscribing to
 * one's own account does nothing. Returns 0 or -1. */
int sharing_subscribe_owner(PGconn *c, long long account_id, long long owner_id, bool on,
                            int *count_r, char *err, size_t errlen);

#endif
