/* Folder access rights (migration 0002).
 *
 * Rights are the eleven RFC 4314 §2.1 letters "lrswipkxtea" (lookup, read,
 * keep seen, write flags, insert, post, create subfolders, delete folder,
 * delete items, expunge, administer), the same for mail and groupware
 * folders: IMAP, DAV, ActiveSync and the admin API all ask acl_rights().
 *
 * Who gets what (DESIGN §4):
 * - the folder's owner has every right, always;
 * - a folder either has its own entries (acl_inherit off) or uses those of
 *   the nearest ancestor that has its own; a top-level folder that inherits
 *   grants nothing to anybody;
 * - entries name an account, a group, a domain, or anyone; the closest
 *   applicable kind wins: the account's own entry; else the union of the
 *   entries of every group the account is in (directly, through nested
 *   groups, or through a group that contains its whole domain); else the
 *   entry of the account's domain; else the anyone entry; else nothing.
 *   A closer entry wins even when it grants less than a wider one.
 *
 * Changing an entry of a folder that inherits first copies the inherited
 * entries onto it, so nobody else's rights change as a side effect; the
 * folder then has its own list until acl_reset_inherit().
 *
 * Functions return 0 on success, -1 on a database error, and the named codes
 * below where the description says so. Where a function takes err, the
 * reason for any failure is written there (err may be NULL); otherwise
 * PQerrorMessage(c) says why a -1 happened.
 */
#ifndef FLOE_STORAGE_ACL_H
#define FLOE_STORAGE_ACL_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "storage/directory.h"

/* The folder, the grantee or the account does not exist. */
#define ACL_ENOTFOUND (-2)
/* Invalid rights letters or grantee. */
#define ACL_EINVAL (-4)

/* RFC 4314 §2.1 rights in canonical order; bit i of a mask is letter i. */
#define ACL_RIGHTS "lrswipkxtea"
#define ACL_L (1u << 0)  /* lookup: the folder is visible (LIST, PROPFIND) */
#define ACL_R (1u << 1)  /* read: SELECT, fetch, GET */
#define ACL_S (1u << 2)  /* keep seen/unseen across sessions */
#define ACL_W (1u << 3)  /* write flags and keywords other than seen and deleted */
#define ACL_I (1u << 4)  /* insert: APPEND, COPY into, PUT of a new item */
#define ACL_P (1u << 5)  /* post: send mail to the folder's submission address */
#define ACL_K (1u << 6)  /* create subfolders */
#define ACL_X (1u << 7)  /* delete (and rename) the folder */
#define ACL_T (1u << 8)  /* delete items: set \Deleted, DELETE of an item */
#define ACL_E (1u << 9)  /* expunge */
#define ACL_A (1u << 10) /* administer: change the folder's rights */
#define ACL_ALL 0x7FFu
/* What acl_mask_parse() returns for input that is not a rights string. */
#define ACL_MASK_INVALID UINT_MAX
/* Longest rights string acl_mask_parse() reads (letters may repeat). */
#define ACL_RIGHTS_INPUT_MAX 64
/* Most entries one folder may have (groups and domains keep real lists far
 * shorter; the bound keeps every rights check and listing small). */
#define ACL_ENTRIES_MAX 1000

enum acl_grantee_kind {
    ACL_GRANTEE_ACCOUNT = 0,
    ACL_GRANTEE_GROUP,
    ACL_GRANTEE_DOMAIN,
    ACL_GRANTEE_ANYONE,
};

/* Parses rights letters, in any order, repeats allowed: the mask (0 for "",
 * no rights), or ACL_MASK_INVALID for NULL, a letter outside ACL_RIGHTS
 * (including RFC 4314 §2.1.1's obsolete "c" and "d", which the IMAP layer
 * maps before calling) or more than ACL_RIGHTS_INPUT_MAX characters. */
unsigned acl_mask_parse(const char *letters);

/* Writes the rights of mask in canonical order ("" for none; bits outside
 * ACL_ALL are ignored). */
void acl_mask_format(unsigned mask, char out[12]);

/* The kind's name as stored ("account", "group", "domain", "anyone"); NULL
 * for a value outside the enum. */
const char *acl_grantee_kind_str(enum acl_grantee_kind kind);

/* Parses a kind name (exact, lower case). Returns 0 with *kind_r set, or
 * ACL_EINVAL. */
int acl_grantee_kind_parse(const char *s, enum acl_grantee_kind *kind_r);

/* Sets the rights of one grantee on a folder, replacing its entry; NULL or
 * "" removes the entry. grantee_id is an accounts.id of kind user or
 * resource for ACL_GRANTEE_ACCOUNT, of kind group for ACL_GRANTEE_GROUP, a
 * domains.id for ACL_GRANTEE_DOMAIN, and ignored for ACL_GRANTEE_ANYONE.
 * The owner cannot be given an entry (they have every right). When the
 * folder inherits, the inherited entries are copied onto it first and
 * inheritance is turned off. A folder holds at most ACL_ENTRIES_MAX
 * entries. Takes a modseq of the owner's account. Runs in its own
 * transaction, or in the caller's under a savepoint. Returns 0, -1,
 * ACL_ENOTFOUND (folder or grantee) or ACL_EINVAL. */
int acl_set(PGconn *c, long long folder_id, enum acl_grantee_kind kind, long long grantee_id,
            const char *rights, char *err, size_t errlen);

/* Removes the folder's own entries and makes it inherit from its parent
 * again (a top-level folder then grants nothing). Takes a modseq. Returns 0,
 * -1 or ACL_ENOTFOUND. */
int acl_reset_inherit(PGconn *c, long long folder_id, char *err, size_t errlen);

/* One entry of a folder's effective list. */
struct acl_entry {
    enum acl_grantee_kind kind;
    long long grantee_id;           /* 0 for anyone */
    char grantee[DIR_ADDRESS_SIZE]; /* account or group address, domain name, or "anyone" */
    unsigned rights;                /* mask */
    long long folder_id;            /* the folder the entry is set on */
    bool inherited;                 /* folder_id is an ancestor */
};

/* Called once per entry: accounts, then groups, then domains, then anyone,
 * each by name. Return 0 to continue, non-zero to stop. The callback must
 * not use the connection. */
typedef int (*acl_entry_cb)(const struct acl_entry *e, void *ctx);

/* Calls cb for each entry that applies to the folder: its own, or those of
 * the ancestor it inherits from (none for an inheriting top-level folder).
 * The owner's implicit rights are not an entry. Returns 0 (also when cb
 * stopped early), -1, or ACL_ENOTFOUND. */
int acl_list(PGconn *c, long long folder_id, acl_entry_cb cb, void *ctx);

/* The rights account_id has on the folder, by the rules at the top of this
 * file; account_id 0 is an anonymous visitor, who gets the anyone entry.
 * One statement (a recursive query up the tree and through the groups,
 * cycles in group_members included, served by the primary keys,
 * folder_acl_entry and group_members_member). Returns 0 with *mask_r set,
 * -1, or ACL_ENOTFOUND when the folder does not exist. */
int acl_rights(PGconn *c, long long folder_id, long long account_id, unsigned *mask_r);

/* True when account_id has every right in needed on the folder; false when
 * it lacks one, the folder does not exist, or the lookup failed. */
bool acl_may(PGconn *c, long long folder_id, long long account_id, unsigned needed);

#endif
