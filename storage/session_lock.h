/* Session locks: a cluster-wide exclusive lock per (account, kind) with a lease
 * (migration 0011).
 *
 * A POP3 session holds the account's "pop3" lock from login to its end, so a
 * second session on any node is refused (RFC 1939 §8, RFC 2449 §8.1.1
 * [IN-USE]). Nodes are stateless, so the lock is a row in PostgreSQL, and a
 * row outlives a node that dies: every lock therefore carries a lease. The
 * holder renews it (well before it runs out, e.g. every third of the lease)
 * while the session lives and releases it at the end; a lease that has run
 * out may be taken over by the next session that asks. All times are the
 * database's, so the nodes' clocks do not matter.
 *
 * A holder is named by its node ([node] id) and a session tag unique on that
 * node over time (the node's session id plus something that differs between
 * runs of the process, so a restarted node never mistakes an old session's
 * lock for its own). Renew and release act only when node and session match.
 *
 * Every function is a blocking call on a caller-owned connection (one
 * statement, no transaction of its own; inside the caller's transaction it
 * takes part in it). Returns 0 on success, -1 on a database error or invalid
 * argument with the reason in err (err may be NULL), and the named codes
 * below where the description says so. */
#ifndef FLOE_STORAGE_SESSION_LOCK_H
#define FLOE_STORAGE_SESSION_LOCK_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

/* The lock is held by another session whose lease has not run out. */
#define SESSION_LOCK_EBUSY (-2)
/* Renew: the lock is no longer ours (released, or taken over after our lease
 * ran out). */
#define SESSION_LOCK_ELOST (-3)

/* Bytes of a kind ([a-z0-9_-]), node name and session tag (each at least 1). */
#define SESSION_LOCK_KIND_MAX 32
#define SESSION_LOCK_NAME_MAX 64
/* Bounds of a lease, in seconds. */
#define SESSION_LOCK_LEASE_MIN 1
#define SESSION_LOCK_LEASE_MAX 86400

/* Who holds a lock, as session_lock_acquire() reports a refusal. */
struct session_lock_holder {
    char node[SESSION_LOCK_NAME_MAX + 1];
    char session[SESSION_LOCK_NAME_MAX + 1];
    long long acquired_unix, expires_unix; /* seconds since the epoch, database clock */
};

/* Takes the (account_id, kind) lock for node/session for lease_s seconds: it
 * is free, or held by anyone (us included) whose lease has run out. Returns
 * 0 when acquired, SESSION_LOCK_EBUSY when another live lease holds it (its
 * holder in *holder_r when holder_r is not NULL; the row may vanish between
 * the two reads, then the holder is left empty), or -1 (also for an account
 * that does not exist). */
int session_lock_acquire(PGconn *c, long long account_id, const char *kind, const char *node,
                         const char *session, unsigned lease_s,
                         struct session_lock_holder *holder_r, char *err, size_t errlen);

/* Extends our lease to lease_s seconds from now. Succeeds also after the
 * lease has run out, as long as nobody took the lock over meanwhile.
 * Returns 0, SESSION_LOCK_ELOST when the lock is not ours, or -1. */
int session_lock_renew(PGconn *c, long long account_id, const char *kind, const char *node,
                       const char *session, unsigned lease_s, char *err, size_t errlen);

/* Releases our lock. Releasing a lock that is not (or no longer) ours does
 * nothing. Returns 1 when a lock was released, 0 when there was none of
 * ours, or -1. */
int session_lock_release(PGconn *c, long long account_id, const char *kind, const char *node,
                         const char *session, char *err, size_t errlen);

/* Releases every lock held by node, whatever the session: for a node that
 * starts again after a crash, whose earlier sessions are all gone. Returns
 * the number released (>= 0), or -1. */
int session_lock_release_node(PGconn *c, const char *node, char *err, size_t errlen);

/* Reads the holder of (account_id, kind), live or expired. Returns 1 with
 * *holder_r filled, 0 when nobody holds it, or -1. *expired_r (may be NULL)
 * says whether the lease has run out. */
int session_lock_get(PGconn *c, long long account_id, const char *kind,
                     struct session_lock_holder *holder_r, bool *expired_r, char *err,
                     size_t errlen);

#endif
