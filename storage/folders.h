/* The folder tree of an account (migration 0002).
 *
 * DESIGN §4: one typed tree per account. Mail folders and groupware folders
 * (events, contacts, tasks, notes, journal, files) are nodes of the same
 * tree; IMAP, DAV, ActiveSync and the admin API are views of it. A folder
 * has a kind, an optional role (inbox, sent, events, ...) that says what it
 * is for whatever its display name, and a path: the names from the top
 * joined by '/'.
 *
 * Names. A path segment is 1..FOLDERS_NAME_MAX bytes of UTF-8 without '/',
 * control characters (C0, DEL, C1) or the names "." and ".."; a path has at
 * most FOLDERS_DEPTH_MAX segments and FOLDERS_PATH_MAX bytes. Lookups are
 * case-sensitive, except that a first segment equal to "INBOX" in any case
 * means the INBOX (RFC 3501 §5.1); paths are stored and accepted with that
 * segment spelled "INBOX". Two folders of one parent may not have names that
 * differ only in (ASCII) case, so every protocol may treat names
 * case-insensitively if it must.
 *
 * Transactions. Every function that changes the tree runs as one unit: in
 * its own transaction when none is open on the connection, otherwise inside
 * the caller's under a savepoint, so a failure undoes exactly this call's
 * work and the caller's transaction stays usable. Each change takes the
 * account's next modseq (storage/changes.h; the account row is locked first,
 * which also serialises concurrent changes of one tree) and stores it in the
 * changed folders' highest_modseq.
 *
 * Rights are not checked here: protocol code asks storage/acl.h first.
 *
 * Functions return 0 on success, -1 on a database error, and the named codes
 * below where the description says so. Where a function takes err, the
 * reason for any failure is written there (err may be NULL); otherwise
 * PQerrorMessage(c) says why a -1 happened.
 */
#ifndef FLOE_STORAGE_FOLDERS_H
#define FLOE_STORAGE_FOLDERS_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

/* The account, folder or path does not exist. */
#define FOLDERS_ENOTFOUND (-2)
/* A folder with that path (or a name differing only in case at that level)
 * exists. */
#define FOLDERS_EEXIST (-3)
/* Invalid name or path, or a refused operation (deleting the INBOX, moving
 * a folder under itself, a role that does not fit the kind). */
#define FOLDERS_EINVAL (-4)

/* Bytes of one path segment. */
#define FOLDERS_NAME_MAX 255
/* Bytes of a whole path, so it fits struct folder's path with its NUL. */
#define FOLDERS_PATH_MAX 1023
/* Segments of a path. */
#define FOLDERS_DEPTH_MAX 64

enum folder_kind {
    FOLDER_KIND_MAIL = 0,
    FOLDER_KIND_EVENTS,
    FOLDER_KIND_CONTACTS,
    FOLDER_KIND_TASKS,
    FOLDER_KIND_NOTES,
    FOLDER_KIND_JOURNAL,
    FOLDER_KIND_FILES,
};

enum folder_role {
    FOLDER_ROLE_NONE = 0,
    FOLDER_ROLE_INBOX,
    FOLDER_ROLE_DRAFTS,
    FOLDER_ROLE_SENT,
    FOLDER_ROLE_TRASH,
    FOLDER_ROLE_JUNK,
    FOLDER_ROLE_ARCHIVE,
    FOLDER_ROLE_EVENTS,
    FOLDER_ROLE_CONTACTS,
    FOLDER_ROLE_TASKS,
    FOLDER_ROLE_NOTES,
    FOLDER_ROLE_JOURNAL,
    FOLDER_ROLE_FILES,
};

struct folder {
    long long id;
    long long account_id; /* the owner */
    long long parent_id;  /* 0 at the top */
    char name[FOLDERS_NAME_MAX + 1];
    char path[FOLDERS_PATH_MAX + 1]; /* names from the top joined by '/' */
    enum folder_kind kind;
    enum folder_role role; /* FOLDER_ROLE_NONE when it has none */
    unsigned uidvalidity;  /* RFC 3501 §2.3.1.1; nonzero */
    long long uidnext;
    long long highest_modseq;
    bool acl_inherit; /* rights come from the parent (storage/acl.h) */
};

/* The kind's name as stored ("mail", "events", "contacts", "tasks", "notes",
 * "journal", "files"); NULL for a value outside the enum. */
const char *folders_kind_str(enum folder_kind kind);

/* Parses a kind name (exact, lower case). Returns 0 with *kind_r set, or
 * FOLDERS_EINVAL. */
int folders_kind_parse(const char *s, enum folder_kind *kind_r);

/* The role's name as stored ("inbox", "drafts", "sent", "trash", "junk",
 * "archive", "events", "contacts", "tasks", "notes", "journal", "files");
 * NULL for FOLDER_ROLE_NONE and values outside the enum. */
const char *folders_role_str(enum folder_role role);

/* Parses a role name (exact, lower case). Returns 0 with *role_r set, or
 * FOLDERS_EINVAL (also for NULL and ""). */
int folders_role_parse(const char *s, enum folder_role *role_r);

/* The kind a folder with this role has: mail for inbox, drafts, sent, trash,
 * junk and archive; the kind of the same name for the others. For
 * FOLDER_ROLE_NONE, FOLDER_KIND_MAIL. */
enum folder_kind folders_role_kind(enum folder_role role);

/* Checks a path and writes its stored form to out (outlen >= FOLDERS_PATH_MAX
 * + 1): the same bytes, with a first segment equal to "INBOX" in any case
 * spelled "INBOX". Returns 0, or FOLDERS_EINVAL with the reason in err. */
int folders_path_check(const char *path, char *out, size_t outlen, char *err, size_t errlen);

/* Creates the default tree of an account that lacks it: INBOX (role inbox),
 * Drafts, Sent, Trash, Junk, Archive (mail), Calendar (events), Contacts,
 * Tasks, Notes, Journal and Files with their roles, at the top level. Display
 * names follow lang, a language tag ("de", "fr-CA", "de_DE.UTF-8"; NULL or an
 * unknown language means English); the INBOX is "INBOX" in every language,
 * as IMAP requires. Each created folder takes its own modseq.
 * Idempotent: a role the account already has is left alone. When a
 * top-level folder already has the default name: if it has no role and the
 * right kind, it receives the role; otherwise the default folder is created
 * as "<name> 2" (up to "<name> 9"). Runs in the caller's transaction (under a
 * savepoint) or its own. Returns the number of folders created or given a
 * role (>= 0), -1, FOLDERS_ENOTFOUND for an unknown account, or
 * FOLDERS_EEXIST when all nine names for a default folder are taken. */
int folders_create_defaults(PGconn *c, long long account_id, const char *lang);

/* Creates the folder at path with kind and role. Missing parents are created
 * as plain mail folders (RFC 3501 §6.3.3: CREATE creates the superior
 * levels a name needs), each taking a modseq. role (FOLDER_ROLE_NONE for
 * none) must fit kind (folders_role_kind()); the inbox role belongs to the
 * top-level "INBOX" alone. Fills *f_r (may be NULL) with the new folder.
 * Returns 0, -1, FOLDERS_ENOTFOUND (account), FOLDERS_EEXIST (the path, a
 * name differing only in case at one of its levels, or the role is taken)
 * or FOLDERS_EINVAL. */
int folders_create(PGconn *c, long long account_id, const char *path, enum folder_kind kind,
                   enum folder_role role, struct folder *f_r, char *err, size_t errlen);

/* Looks a folder up by path (case rules above). Returns 0 with *f_r filled
 * (f_r may be NULL), -1, or FOLDERS_ENOTFOUND (also for an invalid path). */
int folders_find_path(PGconn *c, long long account_id, const char *path, struct folder *f_r);

/* Looks up the account's folder with this role. Returns 0 with *f_r filled
 * (may be NULL), -1, or FOLDERS_ENOTFOUND (also for FOLDER_ROLE_NONE). */
int folders_find_role(PGconn *c, long long account_id, enum folder_role role, struct folder *f_r);

/* Looks a folder up by id. Returns 0 with *f_r filled (may be NULL), -1, or
 * FOLDERS_ENOTFOUND. */
int folders_get(PGconn *c, long long folder_id, struct folder *f_r);

/* Renames or moves the folder at old_path, with everything below it, to
 * new_path; ids, roles, UIDVALIDITY and rights entries stay. Missing
 * parents of new_path are created as plain mail folders (RFC 3501 §6.3.5).
 * The INBOX is not special here (RFC 3501's rename-INBOX-moves-the-messages
 * rule is the IMAP layer's). Refuses a move under itself and paths that
 * would grow past the limits. A folder that inherits its rights inherits
 * from its new parent afterwards. All moved folders get the new modseq.
 * Returns 0, -1, FOLDERS_ENOTFOUND (old_path), FOLDERS_EEXIST (new_path) or
 * FOLDERS_EINVAL. */
int folders_rename(PGconn *c, long long account_id, const char *old_path, const char *new_path,
                   char *err, size_t errlen);

/* Deletes the folder at path and everything below it (with their content,
 * through the foreign keys that reference folders), leaving one "folder"
 * tombstone per deleted folder, all at one new modseq. Refused when the
 * subtree holds the folder with the inbox role. Note that IMAP DELETE of a
 * folder with children does not delete them (RFC 3501 §6.3.4); the IMAP
 * layer decides before calling this. Returns 0, -1, FOLDERS_ENOTFOUND or
 * FOLDERS_EINVAL. */
int folders_delete(PGconn *c, long long account_id, const char *path, char *err, size_t errlen);

/* Called once per folder. Return 0 to continue, non-zero to stop early. The
 * callback must not use the connection. */
typedef int (*folders_cb)(const struct folder *f, void *ctx);

/* Calls cb for every folder of the account in path order: depth first, a
 * parent before its children, siblings by name in byte order. Rows are
 * streamed. Returns 0 (also when cb stopped early; an unknown account simply
 * has no folders) or -1; on -1 cb may already have been called. */
int folders_list(PGconn *c, long long account_id, folders_cb cb, void *ctx, char *err,
                 size_t errlen);

/* Subscribes (on) or unsubscribes the account to a folder, its own or one of
 * another account (whether it may see that folder is the caller's check).
 * Both directions are idempotent. Subscriptions name folders, so deleting a
 * folder removes its subscriptions. Returns 0, -1, or FOLDERS_ENOTFOUND when
 * the account or the folder does not exist. */
int folders_subscribe(PGconn *c, long long account_id, long long folder_id, bool on);

/* Calls cb for every folder the account is subscribed to, its own first,
 * then by owner, each in path order; f->account_id is the owner. Returns 0
 * (also when cb stopped early) or -1. */
int folders_subscriptions(PGconn *c, long long account_id, folders_cb cb, void *ctx);

#endif
