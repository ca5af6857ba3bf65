/* The per-account change sequence and tombstones (see storage/changes.h).
 *
 * The sequence is a column of the account row, not a PostgreSQL sequence:
 * taking a value with UPDATE ... RETURNING locks the row until the
 * transaction ends, so an account's changes are numbered in the order they
 * commit and a reader never sees modseq N before N-1. A sequence object
 * would hand out numbers without that ordering (and one per account would be
 * thousands of objects).
 *
 * Tombstones are purged by age. Each purge raises the account's horizon
 * (accounts.tombstones_purged_modseq) to the highest modseq it removed, and
 * changes_tombstones_since() refuses a "since" below the horizon, because
 * some deletions after it can no longer be reported.
 */
#include "storage/changes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/db.h"

static bool kind_ok(const char *kind)
{
    return kind != NULL && (strcmp(kind, "folder") == 0 || strcmp(kind, "message") == 0 ||
                            strcmp(kind, "item") == 0);
}

int changes_next_modseq(PGconn *c, long long account_id, long long *modseq_r)
{
    if (PQtransactionStatus(c) != PQTRANS_INTRANS)
        return CHANGES_EINVAL;
    char id[24];
    snprintf(id, sizeof id, "%lld", account_id);
    const char *p[] = {id};
    PGresult *r = PQexecParams(
        c, "UPDATE accounts SET modseq = modseq + 1 WHERE id = $1::bigint RETURNING modseq", 1,
        NULL, p, NULL, NULL, 0);
    if (!db_ok(r)) {
        PQclear(r);
        return -1;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        return CHANGES_ENOTFOUND;
    }
    if (modseq_r != NULL)
        *modseq_r = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return 0;
}

int changes_current_modseq(PGconn *c, long long account_id, long long *modseq_r)
{
    char id[24];
    snprintf(id, sizeof id, "%lld", account_id);
    const char *p[] = {id};
    PGresult *r = PQexecParams(c, "SELECT modseq FROM accounts WHERE id = $1::bigint", 1, NULL, p,
                               NULL, NULL, 0);
    if (!db_ok(r)) {
        PQclear(r);
        return -1;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        return CHANGES_ENOTFOUND;
    }
    if (modseq_r != NULL)
        *modseq_r = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return 0;
}

int changes_tombstone(PGconn *c, long long account_id, long long modseq, const char *kind,
                      long long object_id, long long folder_id, long long uid)
{
    if (!kind_ok(kind) || modseq <= 0 || object_id <= 0 || folder_id < 0 || uid < 0)
        return CHANGES_EINVAL;
    char a[24], m[24], o[24], f[24], u[24];
    snprintf(a, sizeof a, "%lld", account_id);
    snprintf(m, sizeof m, "%lld", modseq);
    snprintf(o, sizeof o, "%lld", object_id);
    snprintf(f, sizeof f, "%lld", folder_id);
    snprintf(u, sizeof u, "%lld", uid);
    const char *p[] = {a, m, kind, o, folder_id > 0 ? f : NULL, uid > 0 ? u : NULL};
    PGresult *r = PQexecParams(c,
                               "INSERT INTO tombstones (account_id, modseq, object_kind, object_id,"
                               " folder_id, uid)"
                               " VALUES ($1::bigint, $2::bigint, $3, $4::bigint, $5::bigint,"
                               " $6::bigint)",
                               6, NULL, p, NULL, NULL, 0);
    int rc = 0;
    if (!db_ok(r))
        rc = db_sqlstate_is(r, "23503") ? CHANGES_ENOTFOUND : -1; /* foreign_key_violation */
    PQclear(r);
    return rc;
}

int changes_tombstones_since(PGconn *c, long long account_id, long long since,
                             changes_tombstone_cb cb, void *ctx)
{
    if (since < 0 || cb == NULL)
        return CHANGES_EINVAL;
    char a[24], s[24];
    snprintf(a, sizeof a, "%lld", account_id);
    snprintf(s, sizeof s, "%lld", since);
    const char *p[] = {a, s};
    /* One statement, one snapshot: the horizon comes with the rows. The
     * account row always comes back (LEFT JOIN), so "no account" and "no
     * tombstones" are told apart; tombstones_account_modseq serves the join. */
    if (!PQsendQueryParams(c,
                           "SELECT a.tombstones_purged_modseq, t.modseq, t.object_kind,"
                           " t.object_id, t.folder_id, t.uid,"
                           " floor(extract(epoch FROM t.deleted_at))::bigint"
                           " FROM accounts a LEFT JOIN tombstones t"
                           " ON t.account_id = a.id AND t.modseq > $2::bigint"
                           " WHERE a.id = $1::bigint ORDER BY t.modseq, t.object_id",
                           2, NULL, p, NULL, NULL, 0))
        return -1;
    (void)PQsetSingleRowMode(c);

    int rc = CHANGES_ENOTFOUND; /* until the account row arrives */
    bool stop = false;
    PGresult *r;
    while ((r = PQgetResult(c)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE || st == PGRES_TUPLES_OK) {
            int nt = PQntuples(r);
            for (int i = 0; i < nt && !stop; i++) {
                if (rc == CHANGES_ENOTFOUND) {
                    long long horizon = strtoll(PQgetvalue(r, i, 0), NULL, 10);
                    rc = since < horizon ? CHANGES_EEXPIRED : 0;
                    if (rc != 0) {
                        stop = true;
                        break;
                    }
                }
                if (PQgetisnull(r, i, 1))
                    continue; /* the account has no tombstones after since */
                struct tombstone t;
                memset(&t, 0, sizeof t);
                t.account_id = account_id;
                t.modseq = strtoll(PQgetvalue(r, i, 1), NULL, 10);
                snprintf(t.kind, sizeof t.kind, "%s", PQgetvalue(r, i, 2));
                t.object_id = strtoll(PQgetvalue(r, i, 3), NULL, 10);
                t.folder_id = PQgetisnull(r, i, 4) ? 0 : strtoll(PQgetvalue(r, i, 4), NULL, 10);
                t.uid = PQgetisnull(r, i, 5) ? 0 : strtoll(PQgetvalue(r, i, 5), NULL, 10);
                t.deleted_at = strtoll(PQgetvalue(r, i, 6), NULL, 10);
                if (cb(&t, ctx) != 0)
                    stop = true;
            }
        } else {
            rc = -1;
            stop = true;
        }
        PQclear(r);
    }
    return rc;
}

int changes_purge_tombstones(PGconn *c, long long max_age_seconds, long long limit,
                             long long *purged_r)
{
    if (max_age_seconds < 0 || limit < 1 || limit > CHANGES_PURGE_BATCH_MAX)
        return CHANGES_EINVAL;
    char age[24], lim[24];
    snprintf(age, sizeof age, "%lld", max_age_seconds);
    snprintf(lim, sizeof lim, "%lld", limit);
    const char *p[] = {age, lim};
    /* The oldest first (tombstones_deleted_at), at most limit of them; the
     * horizon update joins what was actually deleted. The count comes from
     * the deleted rows, not from the accounts updated. */
    PGresult *r =
        PQexecParams(c,
                     "WITH gone AS ("
                     "  DELETE FROM tombstones WHERE ctid IN ("
                     "    SELECT ctid FROM tombstones"
                     "     WHERE deleted_at < now() - make_interval(secs => $1::bigint)"
                     "     ORDER BY deleted_at LIMIT $2::bigint)"
                     "  RETURNING account_id, modseq),"
                     " per AS (SELECT account_id, max(modseq) AS m FROM gone GROUP BY account_id),"
                     " raised AS ("
                     "  UPDATE accounts a SET tombstones_purged_modseq ="
                     "    greatest(a.tombstones_purged_modseq, per.m)"
                     "  FROM per WHERE a.id = per.account_id RETURNING a.id)"
                     " SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM raised)",
                     2, NULL, p, NULL, NULL, 0);
    if (!db_ok(r)) {
        PQclear(r);
        return -1;
    }
    if (purged_r != NULL)
        *purged_r = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return 0;
}
