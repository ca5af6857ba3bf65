/* Session locks (see session_lock.h): one row per held lock in session_locks,
 * keyed by (account_id, kind).
 *
 * Acquiring is a single INSERT ... ON CONFLICT DO UPDATE whose WHERE clause
 * lets the update through only when the existing lease has run out. Two
 * sessions racing for one lock are serialised by the primary key: the loser
 * waits for the winner's row, re-evaluates the WHERE clause against it, finds
 * a live lease and gets no row back. Renew and release name the holder in
 * their WHERE clause, so a session whose lease was taken over can neither
 * extend nor drop the new holder's lock.
 *
 * clock_timestamp() rather than now(): inside a caller's long transaction
 * now() would be the transaction's start, and a lease must be measured from
 * the moment the statement runs. */
#include "storage/session_lock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/db.h"
#include "storage/directory.h"

static bool kind_valid(const char *kind)
{
    size_t n = kind ? strlen(kind) : 0;
    if (n < 1 || n > SESSION_LOCK_KIND_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = kind[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/* Node names and session tags: 1..SESSION_LOCK_NAME_MAX printable ASCII bytes. */
static bool name_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > SESSION_LOCK_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

static int check_args(long long account_id, const char *kind, const char *node, const char *session,
                      char *err, size_t errlen)
{
    if (account_id <= 0) {
        dir_set_err(err, errlen, "invalid account id %lld", account_id);
        return -1;
    }
    if (!kind_valid(kind)) {
        dir_set_err(err, errlen, "invalid lock kind");
        return -1;
    }
    if (!name_valid(node) || (session && !name_valid(session))) {
        dir_set_err(err, errlen, "invalid node name or session tag");
        return -1;
    }
    return 0;
}

static int check_lease(unsigned lease_s, char *err, size_t errlen)
{
    if (lease_s < SESSION_LOCK_LEASE_MIN || lease_s > SESSION_LOCK_LEASE_MAX) {
        dir_set_err(err, errlen, "lease of %u s outside %d..%d", lease_s, SESSION_LOCK_LEASE_MIN,
                SESSION_LOCK_LEASE_MAX);
        return -1;
    }
    return 0;
}

int session_lock_get(PGconn *c, long long account_id, const char *kind,
                     struct session_lock_holder *holder_r, bool *expired_r, char *err,
                     size_t errlen)
{
    if (account_id <= 0 || !kind_valid(kind)) {
        dir_set_err(err, errlen, "invalid account id or lock kind");
        return -1;
    }
    char acct[24];
    snprintf(acct, sizeof(acct), "%lld", account_id);
    const char *p[] = {acct, kind};
    PGresult *r = PQexecParams(c,
                               "SELECT node, session,"
                               " extract(epoch FROM acquired_at)::bigint,"
                               " extract(epoch FROM expires_at)::bigint,"
                               " expires_at < clock_timestamp()"
                               " FROM session_locks WHERE account_id = $1 AND kind = $2",
                               2, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        db_set_error(err, errlen, c, r, "cannot read the session lock");
        PQclear(r);
        return -1;
    }
    int found = PQntuples(r) == 1;
    if (found && holder_r) {
        snprintf(holder_r->node, sizeof(holder_r->node), "%s", PQgetvalue(r, 0, 0));
        snprintf(holder_r->session, sizeof(holder_r->session), "%s", PQgetvalue(r, 0, 1));
        holder_r->acquired_unix = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
        holder_r->expires_unix = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
    }
    if (found && expired_r)
        *expired_r = PQgetvalue(r, 0, 4)[0] == 't';
    PQclear(r);
    return found;
}

int session_lock_acquire(PGconn *c, long long account_id, const char *kind, const char *node,
                         const char *session, unsigned lease_s,
                         struct session_lock_holder *holder_r, char *err, size_t errlen)
{
    if (check_args(account_id, kind, node, session, err, errlen) < 0 ||
        check_lease(lease_s, err, errlen) < 0)
        return -1;
    char acct[24], lease[16];
    snprintf(acct, sizeof(acct), "%lld", account_id);
    snprintf(lease, sizeof(lease), "%u", lease_s);
    const char *p[] = {acct, kind, node, session, lease};
    PGresult *r = PQexecParams(
        c,
        "INSERT INTO session_locks (account_id, kind, node, session, acquired_at, expires_at)"
        " VALUES ($1, $2, $3, $4, clock_timestamp(),"
        "         clock_timestamp() + make_interval(secs => $5::int))"
        " ON CONFLICT (account_id, kind) DO UPDATE SET node = EXCLUDED.node,"
        "  session = EXCLUDED.session, acquired_at = EXCLUDED.acquired_at,"
        "  expires_at = EXCLUDED.expires_at"
        " WHERE session_locks.expires_at < clock_timestamp()"
        " RETURNING 1",
        5, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        if (db_sqlstate_is(r, "23503"))
            dir_set_err(err, errlen, "no account with id %lld", account_id);
        else
            db_set_error(err, errlen, c, r, "cannot take the session lock");
        PQclear(r);
        return -1;
    }
    bool got = PQntuples(r) == 1;
    PQclear(r);
    if (got)
        return 0;
    if (holder_r) {
        memset(holder_r, 0, sizeof(*holder_r));
        if (session_lock_get(c, account_id, kind, holder_r, NULL, err, errlen) < 0)
            return -1;
    }
    dir_set_err(err, errlen, "the %s lock of account %lld is held by another session", kind,
            account_id);
    return SESSION_LOCK_EBUSY;
}

int session_lock_renew(PGconn *c, long long account_id, const char *kind, const char *node,
                       const char *session, unsigned lease_s, char *err, size_t errlen)
{
    if (check_args(account_id, kind, node, session, err, errlen) < 0 ||
        check_lease(lease_s, err, errlen) < 0)
        return -1;
    char acct[24], lease[16];
    snprintf(acct, sizeof(acct), "%lld", account_id);
    snprintf(lease, sizeof(lease), "%u", lease_s);
    const char *p[] = {acct, kind, node, session, lease};
    PGresult *r = PQexecParams(
        c,
        "UPDATE session_locks SET expires_at = clock_timestamp() + make_interval(secs => $5::int)"
        " WHERE account_id = $1 AND kind = $2 AND node = $3 AND session = $4",
        5, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        db_set_error(err, errlen, c, r, "cannot renew the session lock");
        PQclear(r);
        return -1;
    }
    bool ours = !strcmp(PQcmdTuples(r), "1");
    PQclear(r);
    if (!ours) {
        dir_set_err(err, errlen, "the %s lock of account %lld is no longer held by this session", kind,
                account_id);
        return SESSION_LOCK_ELOST;
    }
    return 0;
}

int session_lock_release(PGconn *c, long long account_id, const char *kind, const char *node,
                         const char *session, char *err, size_t errlen)
{
    if (check_args(account_id, kind, node, session, err, errlen) < 0)
        return -1;
    char acct[24];
    snprintf(acct, sizeof(acct), "%lld", account_id);
    const char *p[] = {acct, kind, node, session};
    PGresult *r = PQexecParams(c,
                               "DELETE FROM session_locks WHERE account_id = $1 AND kind = $2"
                               " AND node = $3 AND session = $4",
                               4, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        db_set_error(err, errlen, c, r, "cannot release the session lock");
        PQclear(r);
        return -1;
    }
    int n = !strcmp(PQcmdTuples(r), "1");
    PQclear(r);
    return n;
}

int session_lock_release_node(PGconn *c, const char *node, char *err, size_t errlen)
{
    if (!name_valid(node)) {
        dir_set_err(err, errlen, "invalid node name");
        return -1;
    }
    const char *p[] = {node};
    PGresult *r =
        PQexecParams(c, "DELETE FROM session_locks WHERE node = $1", 1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        db_set_error(err, errlen, c, r, "cannot release the node's session locks");
        PQclear(r);
        return -1;
    }
    int n = atoi(PQcmdTuples(r));
    PQclear(r);
    return n;
}
