/* The per-account change sequence (modseq) and tombstones (migration 0002).
 *
 * DESIGN §4: every create, update, flag change, move and delete of any item
 * or folder of an account takes the next value of the account's modseq, and
 * every deletion leaves a tombstone carrying it. IMAP CONDSTORE/QRESYNC
 * (RFC 7162), WebDAV sync-token (RFC 6578), CalDAV/CardDAV ctags and
 * ActiveSync SyncKeys are all derived from it.
 *
 * Lock order. changes_next_modseq() locks the account's row until the
 * transaction ends; that lock is what serialises an account's changes, so a
 * reader that sees modseq N committed also sees every change below N. Take
 * the modseq before locking any folder or item row of the change: the folder
 * operations (storage/folders.h, storage/acl.h) lock the account first and
 * its folders after, and a writer locking in the other order can deadlock
 * with them.
 *
 * Functions return 0 on success, -1 on a database error (PQerrorMessage(c)
 * says why) and the named codes below where the description says so.
 */
#ifndef FLOE_STORAGE_CHANGES_H
#define FLOE_STORAGE_CHANGES_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

/* The account does not exist. */
#define CHANGES_ENOTFOUND (-2)
/* An argument is out of range, or the call needs a transaction and none is
 * open. */
#define CHANGES_EINVAL (-4)
/* The tombstones a caller asked for may have been purged (the client's state
 * is older than the account's purge horizon): it must resynchronise fully
 * (IMAP: no QRESYNC; WebDAV: DAV:valid-sync-token, RFC 6578 §3.2;
 * ActiveSync: invalid SyncKey). */
#define CHANGES_EEXPIRED (-5)

/* Largest batch changes_purge_tombstones() deletes in one call. */
#define CHANGES_PURGE_BATCH_MAX 100000

/* Takes the account's next modseq: UPDATE accounts SET modseq = modseq + 1
 * ... RETURNING modseq, inside the caller's transaction, which must be open
 * (the value is only meaningful committed together with the change it
 * numbers). The row lock taken here is held until the caller commits or
 * rolls back: concurrent changes of one account wait for each other and
 * commit in modseq order; a rolled-back change leaves no gap visible as a
 * change (its value is simply never seen). Returns 0 with *modseq_r set,
 * -1, CHANGES_ENOTFOUND, or CHANGES_EINVAL when no transaction is open. */
int changes_next_modseq(PGconn *c, long long account_id, long long *modseq_r);

/* Records that an object of the account was deleted at modseq (taken with
 * changes_next_modseq() in the same transaction as the deletion). kind is
 * "folder", "message" or "item"; object_id the deleted row's id; folder_id
 * the folder it was in (for a folder: its parent) and uid its IMAP UID, 0
 * for none (stored as NULL). Returns 0, -1, CHANGES_ENOTFOUND (no such
 * account), or CHANGES_EINVAL for an unknown kind, a non-positive modseq or
 * object_id, or a negative folder_id or uid. */
int changes_tombstone(PGconn *c, long long account_id, long long modseq, const char *kind,
                      long long object_id, long long folder_id, long long uid);

/* One tombstone, as changes_tombstones_since() reports it. */
struct tombstone {
    long long account_id;
    long long modseq;
    char kind[8]; /* "folder", "message" or "item" */
    long long object_id;
    long long folder_id;  /* 0 = none */
    long long uid;        /* 0 = none */
    long long deleted_at; /* seconds since the Unix epoch */
};

/* Called once per tombstone in modseq order (ties in object id order).
 * Return 0 to continue, non-zero to stop early. The callback must not use
 * the connection. */
typedef int (*changes_tombstone_cb)(const struct tombstone *t, void *ctx);

/* Calls cb for every tombstone of the account with modseq > since. Rows are
 * streamed, so memory stays small however many there are. The purge horizon
 * and the rows are read by one statement, so a concurrent purge cannot slip
 * between the check and the rows. Returns 0 (also when cb stopped early),
 * -1, CHANGES_ENOTFOUND, CHANGES_EINVAL (since < 0), or CHANGES_EEXPIRED when
 * tombstones newer than since may have been purged (cb is not called then). */
int changes_tombstones_since(PGconn *c, long long account_id, long long since,
                             changes_tombstone_cb cb, void *ctx);

/* Retention: deletes at most limit (1..CHANGES_PURGE_BATCH_MAX) tombstones
 * older than max_age_seconds (>= 0), of all accounts, and raises each
 * affected account's purge horizon to the highest modseq purged, in one
 * statement. Batches keep the account row locks short; a caller (the
 * master's retention task) repeats while *purged_r == limit. Runs in its own
 * statement-level transaction when none is open. Returns 0 with *purged_r
 * (may be NULL) set, -1, or CHANGES_EINVAL. */
int changes_purge_tombstones(PGconn *c, long long max_age_seconds, long long limit,
                             long long *purged_r);

/* The account's current modseq in *modseq_r: the highest value committed
 * (or taken by the caller's own open transaction), which is what a client is
 * given as its synchronisation state. Returns 0, -1 or CHANGES_ENOTFOUND. */
int changes_current_modseq(PGconn *c, long long account_id, long long *modseq_r);

#endif
