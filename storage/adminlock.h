/* Administrator locks: serialise one administrator's read-compare-write of an
 * object against every other administrator's, across the cluster.
 *
 * The admin API honours If-Match (RFC 9110 §13.1.1) on objects whose storage
 * calls each run a transaction of their own (forwarding, auto-responder,
 * quotas, policies, catch-all, groups): it reads the object, compares its
 * entity tag with If-Match, then writes. Holding this lock on the object's
 * name from before the read until after the write makes that sequence atomic
 * with respect to every other holder, so of two administrators who start from
 * the same version exactly one succeeds and the other gets 412.
 *
 * The lock is a PostgreSQL session-level advisory lock keyed
 * (ADMINLOCK_CLASS, hashtext(name)): it survives the storage calls'
 * transactions, and the server drops it when the connection ends, so a
 * crashed holder cannot leave it behind. A hash collision only serialises two
 * unrelated changes.
 *
 * Conventions of storage/directory.h: blocking calls on a caller-owned
 * connection outside any transaction, 0 on success, -1 with the reason in err
 * (err may be NULL). */
#ifndef FLOE_STORAGE_ADMINLOCK_H
#define FLOE_STORAGE_ADMINLOCK_H

#include <stddef.h>

#include <libpq-fe.h>

/* The first key of the lock: differs from DIR_NAME_LOCK_CLASS, so these locks
 * never wait for the directory's own transaction-level name locks. */
#define ADMINLOCK_CLASS 0x466C4164 /* "FlAd" */
/* Longest name (the caller's canonical form: a lower-cased address, a domain
 * name, or a fixed word such as "#server"). */
#define ADMINLOCK_NAME_MAX 320
/* How long adminlock_take() waits for another holder. */
#define ADMINLOCK_WAIT_MS 5000

/* Takes the lock on name, waiting up to ADMINLOCK_WAIT_MS for another holder
 * (a holder keeps it for one request). Returns 0, or -1 (busy for too long,
 * invalid name, database error). */
int adminlock_take(PGconn *c, const char *name, char *err, size_t errlen);

/* Releases a lock adminlock_take() took on c. Returns 0, or -1 when c did not
 * hold it or the database failed. */
int adminlock_release(PGconn *c, const char *name, char *err, size_t errlen);

#endif
