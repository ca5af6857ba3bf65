/* Read-only directory views for the admin APIs (see dirview.h). Each view is
 * one statement; the group walk is a recursive UNION (not UNION ALL), which
 * stops on membership cycles because a group already found adds no row. */
#include "storage/dirview.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STR2(x) #x
#define STR(x) STR2(x)
#define DESC_CHARS STR(DIR_VIEW_DESC_CHARS)

/* Domains, then their aliases, with the same columns:
 * id, name, alias_of, description, accounts. The account count runs on
 * accounts_domain_local by its leading column. $1 is the administrator's id,
 * 0 for every domain. */
#define DOMAINS_SQL                                                                                \
    "WITH dom AS ("                                                                                \
    "  SELECT d.id, d.name, left(d.description, " DESC_CHARS ") AS description,"                   \
    "         (SELECT count(*) FROM accounts a WHERE a.domain_id = d.id) AS n"                     \
    "  FROM domains d"                                                                             \
    "  WHERE $1::bigint = 0 OR EXISTS (SELECT 1 FROM domain_admins x"                              \
    "                                  WHERE x.account_id = $1::bigint AND x.domain_id = d.id))"   \
    " SELECT id, name, '' AS alias_of, description, n FROM dom"                                    \
    " UNION ALL"                                                                                   \
    " SELECT dom.id, al.name, dom.name, dom.description, dom.n"                                    \
    " FROM domain_aliases al JOIN dom ON dom.id = al.domain_id"

static const char *id_param(char buf[24], long long id)
{
    snprintf(buf, 24, "%lld", id);
    return buf;
}

static void fill_domain(struct dir_domain_info *d, const PGresult *r, int row)
{
    memset(d, 0, sizeof *d);
    d->id = strtoll(PQgetvalue(r, row, 0), NULL, 10);
    snprintf(d->name, sizeof d->name, "%s", PQgetvalue(r, row, 1));
    snprintf(d->alias_of, sizeof d->alias_of, "%s", PQgetvalue(r, row, 2));
    /* left() cut the text to DIR_VIEW_DESC_CHARS characters: it fits */
    snprintf(d->description, sizeof d->description, "%s", PQgetvalue(r, row, 3));
    d->accounts = strtoll(PQgetvalue(r, row, 4), NULL, 10);
}

struct domain_each {
    dir_domain_info_cb cb;
    void *ctx;
};

static int domain_row(const PGresult *r, int row, void *arg)
{
    const struct domain_each *e = arg;
    struct dir_domain_info d;
    fill_domain(&d, r, row);
    return e->cb(&d, e->ctx);
}

int dir_view_domains(PGconn *c, long long admin_id, dir_domain_info_cb cb, void *ctx, char *err,
                     size_t errlen)
{
    if (cb == NULL) {
        dir_set_err(err, errlen, "dir_view_domains: no callback");
        return -1;
    }
    char aid[24];
    const char *p[] = {id_param(aid, admin_id > 0 ? admin_id : 0)};
    struct domain_each e = {cb, ctx};
    return dir_sql_each(c, DOMAINS_SQL " ORDER BY 2", 1, p, domain_row, &e, "cannot list domains",
                        err, errlen);
}

int dir_view_domain(PGconn *c, const char *name, struct dir_domain_info *d_r, char *err,
                    size_t errlen)
{
    char dom[DIR_DOMAIN_MAX + 1];
    if (name == NULL || dir_domain_name_check(name, dom, sizeof dom, NULL, 0) != 0) {
        dir_set_err(err, errlen, "unknown domain");
        return DIR_ENOTFOUND;
    }
    const char *p[] = {"0", dom};
    PGresult *r = dir_sql(c, "SELECT * FROM (" DOMAINS_SQL ") v WHERE name = $2", 2, p,
                          "cannot look up domain", NULL, err, errlen);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        dir_set_err(err, errlen, "unknown domain %s", dom);
        return DIR_ENOTFOUND;
    }
    if (d_r != NULL)
        fill_domain(d_r, r, 0);
    PQclear(r);
    return 0;
}

struct account_each {
    dir_account_cb cb;
    void *ctx;
};

static int account_row(const PGresult *r, int row, void *arg)
{
    const struct account_each *e = arg;
    struct dir_account a;
    dir_fill_account(&a, r, row, 0);
    return e->cb(&a, e->ctx);
}

struct view_each {
    dir_view_account_cb cb;
    void *ctx;
};

static int view_row(const PGresult *r, int row, void *arg)
{
    const struct view_each *e = arg;
    struct dir_view_account v;
    memset(&v, 0, sizeof v);
    dir_fill_account(&v.a, r, row, 0);
    v.domain_admin = PQgetvalue(r, row, DIR_ACCOUNT_NCOLS)[0] == 't';
    v.bytes_used = strtoll(PQgetvalue(r, row, DIR_ACCOUNT_NCOLS + 1), NULL, 10);
    v.bytes_limit = strtoll(PQgetvalue(r, row, DIR_ACCOUNT_NCOLS + 2), NULL, 10);
    return e->cb(&v, e->ctx);
}

int dir_view_accounts(PGconn *c, const char *domain, dir_view_account_cb cb, void *ctx, char *err,
                      size_t errlen)
{
    if (cb == NULL) {
        dir_set_err(err, errlen, "dir_view_accounts: no callback");
        return -1;
    }
    long long did = 0;
    int rc = dir_domain_lookup(c, domain, &did, NULL, err, errlen);
    if (rc != 0)
        return rc;
    char dids[24];
    const char *p[] = {id_param(dids, did)};
    struct view_each e = {cb, ctx};
    /* accounts_domain_local serves the scan by its leading column, the primary keys of
     * quota_usage and domain_admins the rest; the effective limit follows
     * storage/quota.h: the account's own, else the domain's default, else the server's */
    return dir_sql_each(c,
                        "SELECT " DIR_ACCOUNT_COLS ","
                        " EXISTS (SELECT 1 FROM domain_admins x"
                        "         WHERE x.account_id = a.id AND x.domain_id = a.domain_id),"
                        " coalesce(u.bytes, 0),"
                        " coalesce(a.quota_bytes, d.account_quota_bytes, s.account_quota_bytes)"
                        " FROM accounts a JOIN domains d ON d.id = a.domain_id"
                        " LEFT JOIN quota_usage u ON u.account_id = a.id"
                        " CROSS JOIN server_settings s"
                        " WHERE a.domain_id = $1::bigint ORDER BY lower(a.local_part), a.id",
                        1, p, view_row, &e, "cannot list accounts", err, errlen);
}

int dir_view_account_groups(PGconn *c, long long account_id, dir_account_cb cb, void *ctx,
                            char *err, size_t errlen)
{
    if (cb == NULL) {
        dir_set_err(err, errlen, "dir_view_account_groups: no callback");
        return -1;
    }
    char aid[24];
    const char *p[] = {id_param(aid, account_id)};
    struct account_each e = {cb, ctx};
    /* The first branch starts from the account (member_kind 'account' for users and
     * resources, 'group' for a group) and, for a user, its domain; the second climbs
     * through member_kind 'group'. Both are served by group_members_member. */
    return dir_sql_each(
        c,
        "WITH RECURSIVE me AS (SELECT id, domain_id, kind FROM accounts WHERE id = $1::bigint),"
        " g (id) AS ("
        "  SELECT m.group_id FROM group_members m JOIN me"
        "    ON (m.member_kind IN ('account', 'group') AND m.member_id = me.id)"
        "    OR (m.member_kind = 'domain' AND m.member_id = me.domain_id AND me.kind = 'user')"
        "  UNION"
        "  SELECT m.group_id FROM group_members m JOIN g"
        "    ON m.member_kind = 'group' AND m.member_id = g.id)"
        " SELECT " DIR_ACCOUNT_COLS " FROM g JOIN accounts a ON a.id = g.id"
        " JOIN domains d ON d.id = a.domain_id"
        " ORDER BY d.name, lower(a.local_part), a.id",
        1, p, account_row, &e, "cannot list the account's groups", err, errlen);
}
