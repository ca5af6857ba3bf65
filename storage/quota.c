/* Quotas: limits at server, domain and account level, usage counters, and
 * the charge the mail store makes for every message it adds or removes.
 *
 * Limits are columns (server_settings, domains, accounts; migration 0003)
 * where NULL means "inherit" and 0 "unlimited"; the effective account limit
 * is coalesce(account, domain default, server default), written once below
 * as EFFECTIVE_LIMITS and used by every query that needs it.
 *
 * quota_charge() is on the delivery path. It reads the limits (one indexed
 * row), takes the domain row lock only when the domain has a total limit and
 * the charge grows usage, and then applies the charge with a single upsert
 * whose WHERE clause re-checks the account limit against the locked row, so
 * the check and the write cannot be separated by a concurrent charge. A
 * refused upsert writes nothing.
 *
 * Setting a limit below usage is refused unless forced: the new limit is
 * written, the accounts it governs are checked in the same transaction, and
 * any offender rolls the change back.
 */
#include "storage/quota.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/db.h"

/* The effective limits of account a in domain d with server settings s. */
#define EFFECTIVE_LIMITS                                                                           \
    "coalesce(a.quota_bytes, d.account_quota_bytes, s.account_quota_bytes),"                       \
    " coalesce(a.quota_messages, d.account_quota_messages, s.account_quota_messages)"

static const char *ll_param(char buf[24], long long v)
{
    snprintf(buf, 24, "%lld", v);
    return buf;
}

static long long cell_ll(const PGresult *r, int row, int col)
{
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

const char *quota_source_name(enum quota_source s)
{
    switch (s) {
    case QUOTA_FROM_ACCOUNT:
        return "account";
    case QUOTA_FROM_DOMAIN:
        return "domain";
    case QUOTA_FROM_SERVER:
        return "server";
    }
    return "unknown";
}

int quota_parse(const char *s, bool sizes, bool allow_inherit, long long *v_r, char *err,
                size_t errlen)
{
    if (s == NULL || s[0] == '\0') {
        dir_set_err(err, errlen, "empty limit");
        return -1;
    }
    if (strcmp(s, "unlimited") == 0) {
        *v_r = 0;
        return 0;
    }
    if (strcmp(s, "inherit") == 0) {
        if (!allow_inherit) {
            dir_set_err(err, errlen, "this limit has no level above to inherit from");
            return -1;
        }
        *v_r = QUOTA_INHERIT;
        return 0;
    }
    long long v = 0;
    const char *p = s;
    if (!(*p >= '0' && *p <= '9')) {
        dir_set_err(err, errlen, "limit \"%.32s\" is not a number%s", s,
                    sizes ? " (with an optional K, M, G or T)" : "");
        return -1;
    }
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (QUOTA_VALUE_MAX - (*p - '0')) / 10) {
            dir_set_err(err, errlen, "limit \"%.32s\" is too large", s);
            return -1;
        }
        v = v * 10 + (*p - '0');
    }
    int shift = 0;
    if (sizes && *p != '\0' && p[1] == '\0') {
        switch (*p) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        case 't':
        case 'T':
            shift = 40;
            break;
        default:
            shift = -1;
        }
        if (shift > 0)
            p++;
    }
    if (*p != '\0' || shift < 0) {
        dir_set_err(err, errlen, "limit \"%.32s\" is not a number%s", s,
                    sizes ? " (with an optional K, M, G or T)" : "");
        return -1;
    }
    if (v > (QUOTA_VALUE_MAX >> shift)) {
        dir_set_err(err, errlen, "limit \"%.32s\" is too large", s);
        return -1;
    }
    *v_r = v << shift;
    return 0;
}

/* A limit argument: 0..QUOTA_VALUE_MAX, QUOTA_KEEP, or QUOTA_INHERIT when
 * the level has one above it. */
static int limit_check(long long v, bool inherit_ok, char *err, size_t errlen)
{
    if ((v >= 0 && v <= QUOTA_VALUE_MAX) || v == QUOTA_KEEP || (inherit_ok && v == QUOTA_INHERIT))
        return 0;
    dir_set_err(err, errlen, "invalid limit %lld", v);
    return -1;
}

/* ---- reading ---- */

static enum quota_source source_of(const PGresult *r, int account_col, int domain_col)
{
    if (!PQgetisnull(r, 0, account_col))
        return QUOTA_FROM_ACCOUNT;
    if (!PQgetisnull(r, 0, domain_col))
        return QUOTA_FROM_DOMAIN;
    return QUOTA_FROM_SERVER;
}

int quota_get(PGconn *c, const char *address, struct quota_info *q_r, char *err, size_t errlen)
{
    struct dir_address ad;
    if (dir_address_parse(address, &ad, err, errlen) != 0)
        return DIR_ENOTFOUND;
    const char *p[] = {ad.lower, ad.domain};
    PGresult *r = dir_sql(
        c,
        "SELECT a.id, a.local_part || '@' || d.name, " EFFECTIVE_LIMITS ","
        " a.quota_bytes, d.account_quota_bytes, a.quota_messages, d.account_quota_messages,"
        " coalesce(u.bytes, 0), coalesce(u.messages, 0), d.quota_bytes, d.quota_messages,"
        " t.bytes, t.messages"
        " FROM accounts a JOIN domains d ON d.id = a.domain_id CROSS JOIN server_settings s"
        " LEFT JOIN quota_usage u ON u.account_id = a.id"
        " CROSS JOIN LATERAL (SELECT coalesce(sum(du.bytes), 0), coalesce(sum(du.messages), 0)"
        "    FROM quota_usage du JOIN accounts da ON da.id = du.account_id"
        "   WHERE da.domain_id = d.id) AS t(bytes, messages)"
        " WHERE a.domain_id = " DIR_DOMAIN_ID_OF("$2") " AND lower(a.local_part) = $1",
        2, p, "cannot read quota", NULL, err, errlen);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        dir_set_err(err, errlen, "unknown account %s@%s", ad.local, ad.domain);
        return DIR_ENOTFOUND;
    }
    struct quota_info q;
    memset(&q, 0, sizeof q);
    q.account_id = cell_ll(r, 0, 0);
    snprintf(q.address, sizeof q.address, "%s", PQgetvalue(r, 0, 1));
    q.bytes_limit = cell_ll(r, 0, 2);
    q.messages_limit = cell_ll(r, 0, 3);
    q.bytes_from = source_of(r, 4, 5);
    q.messages_from = source_of(r, 6, 7);
    q.bytes_used = cell_ll(r, 0, 8);
    q.messages_used = cell_ll(r, 0, 9);
    q.domain_bytes_limit = cell_ll(r, 0, 10);
    q.domain_messages_limit = cell_ll(r, 0, 11);
    q.domain_bytes_used = cell_ll(r, 0, 12);
    q.domain_messages_used = cell_ll(r, 0, 13);
    PQclear(r);
    if (q_r != NULL)
        *q_r = q;
    return 0;
}

int quota_get_domain(PGconn *c, const char *domain, struct quota_domain_info *q_r, char *err,
                     size_t errlen)
{
    char dom[DIR_DOMAIN_MAX + 1];
    if (dir_domain_name_check(domain, dom, sizeof dom, err, errlen) != 0)
        return DIR_ENOTFOUND;
    const char *p[] = {dom};
    PGresult *r = dir_sql(c,
                          "SELECT d.name, d.quota_bytes, d.quota_messages,"
                          " d.account_quota_bytes, d.account_quota_messages,"
                          " (SELECT coalesce(sum(u.bytes), 0) FROM quota_usage u"
                          "   JOIN accounts a ON a.id = u.account_id WHERE a.domain_id = d.id),"
                          " (SELECT coalesce(sum(u.messages), 0) FROM quota_usage u"
                          "   JOIN accounts a ON a.id = u.account_id WHERE a.domain_id = d.id)"
                          " FROM domains d WHERE d.id = " DIR_DOMAIN_ID_OF("$1"),
                          1, p, "cannot read quota", NULL, err, errlen);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        dir_set_err(err, errlen, "unknown domain %s", dom);
        return DIR_ENOTFOUND;
    }
    struct quota_domain_info q;
    memset(&q, 0, sizeof q);
    snprintf(q.domain, sizeof q.domain, "%s", PQgetvalue(r, 0, 0));
    q.bytes_limit = cell_ll(r, 0, 1);
    q.messages_limit = cell_ll(r, 0, 2);
    q.account_bytes = PQgetisnull(r, 0, 3) ? QUOTA_INHERIT : cell_ll(r, 0, 3);
    q.account_messages = PQgetisnull(r, 0, 4) ? QUOTA_INHERIT : cell_ll(r, 0, 4);
    q.bytes_used = cell_ll(r, 0, 5);
    q.messages_used = cell_ll(r, 0, 6);
    PQclear(r);
    if (q_r != NULL)
        *q_r = q;
    return 0;
}

int quota_get_server(PGconn *c, struct quota_server_info *q_r, char *err, size_t errlen)
{
    PGresult *r =
        dir_sql(c, "SELECT account_quota_bytes, account_quota_messages FROM server_settings", 0,
                NULL, "cannot read quota", NULL, err, errlen);
    if (r == NULL)
        return -1;
    if (PQntuples(r) != 1) {
        PQclear(r);
        dir_set_err(err, errlen, "server_settings has no row");
        return -1;
    }
    if (q_r != NULL) {
        q_r->account_bytes = cell_ll(r, 0, 0);
        q_r->account_messages = cell_ll(r, 0, 1);
    }
    PQclear(r);
    return 0;
}

/* ---- setting ---- */

/* SQL for a column set from a limit parameter $n: unchanged for QUOTA_KEEP
 * (-1), NULL for QUOTA_INHERIT (-2), else the value. */
#define LIMIT_SET(col, n)                                                                          \
    col " = CASE WHEN $" n "::bigint = -1 THEN " col " WHEN $" n "::bigint = -2 THEN NULL"         \
        " ELSE $" n "::bigint END"

/* clang-format off */
/* $1 the account's id, $2 and $3 its limits. */
#define SET_ACCOUNT_SQL                                                                            \
    "UPDATE accounts SET " LIMIT_SET("quota_bytes", "2") ","                                       \
    " " LIMIT_SET("quota_messages", "3")                                                           \
    " WHERE id = $1::bigint"

/* $1 the domain's id, $2..$5 its totals and defaults per account. */
#define SET_DOMAIN_SQL                                                                             \
    "UPDATE domains SET " LIMIT_SET("quota_bytes", "2") ","                                        \
    " " LIMIT_SET("quota_messages", "3") ","                                                       \
    " " LIMIT_SET("account_quota_bytes", "4") ","                                                  \
    " " LIMIT_SET("account_quota_messages", "5")                                                   \
    " WHERE id = $1::bigint RETURNING name, quota_bytes, quota_messages"
/* clang-format on */

/* After a change at level ("account", "domain" or "server"; id the account
 * or domain), finds an account the level governs whose usage is now above
 * its effective limit in a changed dimension. An account with its own value
 * is governed only by the account level, and one whose domain sets a default
 * not by the server level. Returns 0 when there is none, QUOTA_EBELOWUSAGE
 * with the offender in err, or -1. */
static int below_usage_check(PGconn *c, const char *level, long long id, bool bytes, bool messages,
                             char *err, size_t errlen)
{
    char idb[24];
    const char *p[] = {level, ll_param(idb, id), bytes ? "t" : "f", messages ? "t" : "f"};
    PGresult *r = dir_sql(c,
                          "SELECT a.local_part || '@' || d.name, u.bytes, e.b, u.messages, e.m"
                          " FROM quota_usage u JOIN accounts a ON a.id = u.account_id"
                          " JOIN domains d ON d.id = a.domain_id CROSS JOIN server_settings s"
                          " CROSS JOIN LATERAL (SELECT " EFFECTIVE_LIMITS ") AS e(b, m)"
                          " WHERE CASE $1 WHEN 'account' THEN a.id = $2::bigint"
                          "               WHEN 'domain' THEN a.domain_id = $2::bigint ELSE true END"
                          " AND (($3::boolean AND e.b > 0 AND u.bytes > e.b"
                          "       AND ($1 = 'account' OR a.quota_bytes IS NULL)"
                          "       AND ($1 <> 'server' OR d.account_quota_bytes IS NULL))"
                          "   OR ($4::boolean AND e.m > 0 AND u.messages > e.m"
                          "       AND ($1 = 'account' OR a.quota_messages IS NULL)"
                          "       AND ($1 <> 'server' OR d.account_quota_messages IS NULL)))"
                          " ORDER BY d.name, lower(a.local_part) LIMIT 1",
                          4, p, "cannot check usage", NULL, err, errlen);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return 0;
    }
    long long ub = cell_ll(r, 0, 1), lb = cell_ll(r, 0, 2);
    long long um = cell_ll(r, 0, 3), lm = cell_ll(r, 0, 4);
    if (bytes && lb > 0 && ub > lb)
        dir_set_err(err, errlen,
                    "quota below usage: %s uses %lld bytes, its limit would be %lld"
                    " (force sets it anyway)",
                    PQgetvalue(r, 0, 0), ub, lb);
    else
        dir_set_err(err, errlen,
                    "quota below usage: %s holds %lld messages, its limit would be %lld"
                    " (force sets it anyway)",
                    PQgetvalue(r, 0, 0), um, lm);
    PQclear(r);
    return QUOTA_EBELOWUSAGE;
}

static int set_account_tx(PGconn *c, const char *address, long long bytes, long long messages,
                          bool force, char *err, size_t errlen)
{
    struct dir_account a;
    int rc = dir_account_find(c, address, &a, err, errlen);
    if (rc != 0)
        return rc;
    char idb[24], bb[24], mb[24];
    const char *p[] = {ll_param(idb, a.id), ll_param(bb, bytes), ll_param(mb, messages)};
    PGresult *r = dir_sql(c, SET_ACCOUNT_SQL, 3, p, "cannot set quota", NULL, err, errlen);
    if (r == NULL)
        return -1;
    PQclear(r);
    if (force)
        return 0;
    return below_usage_check(c, "account", a.id, bytes != QUOTA_KEEP, messages != QUOTA_KEEP, err,
                             errlen);
}

int quota_set_account(PGconn *c, const char *address, long long bytes, long long messages,
                      bool force, char *err, size_t errlen)
{
    if (limit_check(bytes, true, err, errlen) != 0 || limit_check(messages, true, err, errlen) != 0)
        return -1;
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    int rc = set_account_tx(c, address, bytes, messages, force, err, errlen);
    return dir_tx_end(c, rc, true, err, errlen);
}

static int set_domain_tx(PGconn *c, const char *domain, const long long v[4], bool force, char *err,
                         size_t errlen)
{
    long long id;
    int rc = dir_domain_lookup(c, domain, &id, NULL, err, errlen);
    if (rc != 0)
        return rc;
    char idb[24], vb[4][24];
    const char *p[] = {ll_param(idb, id), ll_param(vb[0], v[0]), ll_param(vb[1], v[1]),
                       ll_param(vb[2], v[2]), ll_param(vb[3], v[3])};
    PGresult *r = dir_sql(c, SET_DOMAIN_SQL, 5, p, "cannot set quota", NULL, err, errlen);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        dir_set_err(err, errlen, "unknown domain %s", domain);
        return DIR_ENOTFOUND;
    }
    char name[DIR_DOMAIN_MAX + 1];
    snprintf(name, sizeof name, "%s", PQgetvalue(r, 0, 0));
    long long lb = cell_ll(r, 0, 1), lm = cell_ll(r, 0, 2);
    PQclear(r);
    if (force)
        return 0;
    if (v[2] != QUOTA_KEEP || v[3] != QUOTA_KEEP) {
        rc =
            below_usage_check(c, "domain", id, v[2] != QUOTA_KEEP, v[3] != QUOTA_KEEP, err, errlen);
        if (rc != 0)
            return rc;
    }
    if (v[0] == QUOTA_KEEP && v[1] == QUOTA_KEEP)
        return 0;

    r = dir_sql(c,
                "SELECT coalesce(sum(u.bytes), 0), coalesce(sum(u.messages), 0)"
                " FROM quota_usage u JOIN accounts a ON a.id = u.account_id"
                " WHERE a.domain_id = $1::bigint",
                1, p, "cannot sum usage", NULL, err, errlen);
    if (r == NULL)
        return -1;
    long long ub = cell_ll(r, 0, 0), um = cell_ll(r, 0, 1);
    PQclear(r);
    if (v[0] != QUOTA_KEEP && lb > 0 && ub > lb) {
        dir_set_err(err, errlen,
                    "quota below usage: domain %s uses %lld bytes, its total would be %lld"
                    " (force sets it anyway)",
                    name, ub, lb);
        return QUOTA_EBELOWUSAGE;
    }
    if (v[1] != QUOTA_KEEP && lm > 0 && um > lm) {
        dir_set_err(err, errlen,
                    "quota below usage: domain %s holds %lld messages, its total would be %lld"
                    " (force sets it anyway)",
                    name, um, lm);
        return QUOTA_EBELOWUSAGE;
    }
    return 0;
}

int quota_set_domain(PGconn *c, const char *domain, long long bytes, long long messages,
                     long long account_bytes, long long account_messages, bool force, char *err,
                     size_t errlen)
{
    if (limit_check(bytes, false, err, errlen) != 0 ||
        limit_check(messages, false, err, errlen) != 0 ||
        limit_check(account_bytes, true, err, errlen) != 0 ||
        limit_check(account_messages, true, err, errlen) != 0)
        return -1;
    const long long v[4] = {bytes, messages, account_bytes, account_messages};
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    int rc = set_domain_tx(c, domain, v, force, err, errlen);
    return dir_tx_end(c, rc, true, err, errlen);
}

static int set_server_tx(PGconn *c, long long bytes, long long messages, bool force, char *err,
                         size_t errlen)
{
    char bb[24], mb[24];
    const char *p[] = {ll_param(bb, bytes), ll_param(mb, messages)};
    PGresult *r = dir_sql(c,
                          "UPDATE server_settings SET"
                          " account_quota_bytes = CASE WHEN $1::bigint = -1"
                          "  THEN account_quota_bytes ELSE $1::bigint END,"
                          " account_quota_messages = CASE WHEN $2::bigint = -1"
                          "  THEN account_quota_messages ELSE $2::bigint END",
                          2, p, "cannot set quota", NULL, err, errlen);
    if (r == NULL)
        return -1;
    PQclear(r);
    if (force)
        return 0;
    return below_usage_check(c, "server", 0, bytes != QUOTA_KEEP, messages != QUOTA_KEEP, err,
                             errlen);
}

int quota_set_server(PGconn *c, long long bytes, long long messages, bool force, char *err,
                     size_t errlen)
{
    if (limit_check(bytes, false, err, errlen) != 0 ||
        limit_check(messages, false, err, errlen) != 0)
        return -1;
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    int rc = set_server_tx(c, bytes, messages, force, err, errlen);
    return dir_tx_end(c, rc, true, err, errlen);
}

/* ---- charging ---- */

/* The account is the one charged; the message says which limit. */
static int exceeded(char *err, size_t errlen, long long id, const char *what, long long used,
                    long long delta, long long limit)
{
    dir_set_err(err, errlen, "quota exceeded: account %lld %s %lld + %lld > %lld", id, what, used,
                delta, limit);
    return QUOTA_EXCEEDED;
}

static int charge(PGconn *c, long long account_id, long long dbytes, long long dmessages,
                  bool enforce, char *err, size_t errlen)
{
    char idb[24];
    const char *ip[] = {ll_param(idb, account_id)};
    PGresult *r =
        dir_sql(c,
                "SELECT a.domain_id, " EFFECTIVE_LIMITS ", d.quota_bytes, d.quota_messages"
                " FROM accounts a JOIN domains d ON d.id = a.domain_id"
                " CROSS JOIN server_settings s WHERE a.id = $1::bigint",
                1, ip, "cannot read quota", NULL, err, errlen);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        dir_set_err(err, errlen, "unknown account id %lld", account_id);
        return DIR_ENOTFOUND;
    }
    long long dom_id = cell_ll(r, 0, 0);
    long long lim_b = cell_ll(r, 0, 1), lim_m = cell_ll(r, 0, 2);
    long long dom_b = cell_ll(r, 0, 3), dom_m = cell_ll(r, 0, 4);
    PQclear(r);

    bool grow_b = enforce && dbytes > 0, grow_m = enforce && dmessages > 0;
    /* Usage is never negative, so a charge larger than the limit fails
     * whatever the usage; checked here because the upsert below cannot
     * guard the insert of a first usage row. */
    if (grow_b && lim_b > 0 && dbytes > lim_b)
        return exceeded(err, errlen, account_id, "bytes", 0, dbytes, lim_b);
    if (grow_m && lim_m > 0 && dmessages > lim_m)
        return exceeded(err, errlen, account_id, "messages", 0, dmessages, lim_m);

    char db[24], dm[24], domb[24];
    if ((grow_b && dom_b > 0) || (grow_m && dom_m > 0)) {
        /* Every growing, enforced charge in this domain takes this lock
         * first, so the sum cannot grow until the caller commits. The sum
         * is a statement of its own: under READ COMMITTED each statement
         * sees what was committed before it started, so it sees the
         * charges committed while this one waited for the lock (a
         * subquery of the locking statement would not). */
        const char *dp[] = {ll_param(domb, dom_id)};
        r = dir_sql(c, "SELECT 1 FROM domains WHERE id = $1::bigint FOR NO KEY UPDATE", 1, dp,
                    "cannot lock domain", NULL, err, errlen);
        if (r == NULL)
            return -1;
        PQclear(r);
        r = dir_sql(c,
                    "SELECT coalesce(sum(u.bytes), 0), coalesce(sum(u.messages), 0)"
                    " FROM quota_usage u JOIN accounts a ON a.id = u.account_id"
                    " WHERE a.domain_id = $1::bigint",
                    1, dp, "cannot sum domain usage", NULL, err, errlen);
        if (r == NULL)
            return -1;
        long long sb = 0, sm = 0;
        int ok = PQntuples(r) == 1;
        if (ok) {
            sb = cell_ll(r, 0, 0);
            sm = cell_ll(r, 0, 1);
        }
        PQclear(r);
        if (!ok) {
            dir_set_err(err, errlen, "cannot sum the usage of domain %lld", dom_id);
            return -1;
        }
        if (grow_b && dom_b > 0 && sb + dbytes > dom_b)
            return exceeded(err, errlen, account_id, "domain bytes", sb, dbytes, dom_b);
        if (grow_m && dom_m > 0 && sm + dmessages > dom_m)
            return exceeded(err, errlen, account_id, "domain messages", sm, dmessages, dom_m);
    }

    char lb[24], lm[24];
    const char *p[] = {idb,
                       ll_param(db, dbytes),
                       ll_param(dm, dmessages),
                       enforce ? "t" : "f",
                       ll_param(lb, lim_b),
                       ll_param(lm, lim_m)};
    /* The conflict branch runs on the locked row, so its WHERE sees the
     * usage the update would change: check and write are one step. */
    r = dir_sql(
        c,
        "INSERT INTO quota_usage AS u (account_id, bytes, messages)"
        " VALUES ($1::bigint, greatest($2::bigint, 0), greatest($3::bigint, 0))"
        " ON CONFLICT (account_id) DO UPDATE SET"
        " bytes = greatest(u.bytes + $2::bigint, 0),"
        " messages = greatest(u.messages + $3::bigint, 0)"
        " WHERE NOT $4::boolean"
        "  OR (($2::bigint <= 0 OR $5::bigint = 0 OR u.bytes + $2::bigint <= $5::bigint)"
        "  AND ($3::bigint <= 0 OR $6::bigint = 0 OR u.messages + $3::bigint <= $6::bigint))"
        " RETURNING bytes, messages",
        6, p, "cannot charge quota", NULL, err, errlen);
    if (r == NULL)
        return -1;
    int applied = PQntuples(r);
    PQclear(r);
    if (applied == 0) {
        dir_set_err(err, errlen,
                    "quota exceeded: account %lld cannot take %lld more bytes and %lld more"
                    " messages (limits %lld bytes, %lld messages)",
                    account_id, dbytes, dmessages, lim_b, lim_m);
        return QUOTA_EXCEEDED;
    }
    return 0;
}

int quota_charge(PGconn *c, long long account_id, long long dbytes, long long dmessages,
                 bool enforce, char *err, size_t errlen)
{
    if (dbytes < -QUOTA_VALUE_MAX || dbytes > QUOTA_VALUE_MAX || dmessages < -QUOTA_VALUE_MAX ||
        dmessages > QUOTA_VALUE_MAX) {
        dir_set_err(err, errlen, "quota charge out of range");
        return -1;
    }
    if (PQtransactionStatus(c) != PQTRANS_IDLE)
        return charge(c, account_id, dbytes, dmessages, enforce, err, errlen);
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    int rc = charge(c, account_id, dbytes, dmessages, enforce, err, errlen);
    return dir_tx_end(c, rc, false, err, errlen);
}
