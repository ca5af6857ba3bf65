/* Domain administrators (see domainadmin.h): rows of domain_admins, one per
 * (account, domain), and the two scope checks every admin API request of a
 * domain administrator runs. Each check is one statement on primary keys. */
#include "storage/domainadmin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *id_param(char buf[24], long long id)
{
    snprintf(buf, 24, "%lld", id);
    return buf;
}

/* Finds the account and domain a change names, inside the caller's
 * transaction. */
static int find_pair(PGconn *c, const char *address, const char *domain, struct dir_account *a_r,
                     long long *domain_id_r, char *err, size_t errlen)
{
    int rc = dir_account_find(c, address, a_r, err, errlen);
    if (rc != 0)
        return rc;
    return dir_domain_lookup(c, domain, domain_id_r, NULL, err, errlen);
}

int dir_domain_admin_add(PGconn *c, const char *address, const char *domain, char *err,
                         size_t errlen)
{
    if (address == NULL || domain == NULL) {
        dir_set_err(err, errlen, "dir_domain_admin_add: missing argument");
        return -1;
    }
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    struct dir_account a = {0};
    long long did = 0;
    int rc = find_pair(c, address, domain, &a, &did, err, errlen);
    if (rc == 0 && strcmp(a.kind, "user") != 0) {
        dir_set_err(err, errlen, "%s is a %s: only users can administer domains", a.address,
                    a.kind);
        rc = -1;
    }
    char aid[24], dids[24];
    const char *p[] = {id_param(aid, a.id), id_param(dids, did)};
    if (rc == 0) {
        /* the account's row lock orders concurrent additions for one account, so the
         * count below cannot be raced past the limit */
        PGresult *r = dir_sql(c, "SELECT 1 FROM accounts WHERE id = $1::bigint FOR UPDATE", 1, p,
                              "cannot lock account", NULL, err, errlen);
        PQclear(r);
        if (r == NULL)
            rc = -1;
    }
    if (rc == 0) {
        PGresult *r = dir_sql(c, "SELECT count(*) FROM domain_admins WHERE account_id = $1::bigint",
                              1, p, "cannot count domains", NULL, err, errlen);
        if (r == NULL) {
            rc = -1;
        } else {
            if (strtoll(PQgetvalue(r, 0, 0), NULL, 10) >= DIR_DOMAIN_ADMIN_MAX) {
                dir_set_err(err, errlen, "%s already administers %d domains", a.address,
                            DIR_DOMAIN_ADMIN_MAX);
                rc = -1;
            }
            PQclear(r);
        }
    }
    if (rc == 0) {
        PGresult *r = dir_sql(c,
                              "INSERT INTO domain_admins (account_id, domain_id)"
                              " VALUES ($1::bigint, $2::bigint) ON CONFLICT DO NOTHING",
                              2, p, "cannot add domain administrator", NULL, err, errlen);
        if (r == NULL) {
            rc = -1;
        } else {
            if (strcmp(PQcmdTuples(r), "0") == 0) {
                dir_set_err(err, errlen, "%s already administers %s", a.address, domain);
                rc = DIR_EEXIST;
            }
            PQclear(r);
        }
    }
    return dir_tx_end(c, rc, rc == 0, err, errlen);
}

int dir_domain_admin_remove(PGconn *c, const char *address, const char *domain, char *err,
                            size_t errlen)
{
    if (address == NULL || domain == NULL) {
        dir_set_err(err, errlen, "dir_domain_admin_remove: missing argument");
        return -1;
    }
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    struct dir_account a;
    long long did = 0;
    int rc = find_pair(c, address, domain, &a, &did, err, errlen);
    if (rc == 0) {
        char aid[24], dids[24];
        const char *p[] = {id_param(aid, a.id), id_param(dids, did)};
        PGresult *r = dir_sql(c,
                              "DELETE FROM domain_admins"
                              " WHERE account_id = $1::bigint AND domain_id = $2::bigint",
                              2, p, "cannot remove domain administrator", NULL, err, errlen);
        if (r == NULL) {
            rc = -1;
        } else {
            if (strcmp(PQcmdTuples(r), "0") == 0) {
                dir_set_err(err, errlen, "%s does not administer %s", a.address, domain);
                rc = DIR_ENOTFOUND;
            }
            PQclear(r);
        }
    }
    return dir_tx_end(c, rc, rc == 0, err, errlen);
}

struct name_each {
    dir_domain_cb cb;
    void *ctx;
};

static int name_row(const PGresult *r, int row, void *arg)
{
    const struct name_each *e = arg;
    return e->cb(PQgetvalue(r, row, 0), e->ctx);
}

int dir_domain_admin_list(PGconn *c, const char *address, dir_domain_cb cb, void *ctx, char *err,
                          size_t errlen)
{
    if (cb == NULL || address == NULL) {
        dir_set_err(err, errlen, "dir_domain_admin_list: missing argument");
        return -1;
    }
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    struct dir_account a;
    int rc = dir_account_find(c, address, &a, err, errlen);
    if (rc == 0) {
        char aid[24];
        const char *p[] = {id_param(aid, a.id)};
        struct name_each e = {cb, ctx};
        rc = dir_sql_each(c,
                          "SELECT d.name FROM domain_admins x JOIN domains d ON d.id = x.domain_id"
                          " WHERE x.account_id = $1::bigint ORDER BY d.name",
                          1, p, name_row, &e, "cannot list administered domains", err, errlen);
    }
    return dir_tx_end(c, rc, false, err, errlen);
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

int dir_domain_admins(PGconn *c, const char *domain, dir_account_cb cb, void *ctx, char *err,
                      size_t errlen)
{
    if (cb == NULL || domain == NULL) {
        dir_set_err(err, errlen, "dir_domain_admins: missing argument");
        return -1;
    }
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    long long did = 0;
    int rc = dir_domain_lookup(c, domain, &did, NULL, err, errlen);
    if (rc == 0) {
        char dids[24];
        const char *p[] = {id_param(dids, did)};
        struct account_each e = {cb, ctx};
        rc = dir_sql_each(c,
                          "SELECT " DIR_ACCOUNT_COLS " FROM domain_admins x"
                          " JOIN accounts a ON a.id = x.account_id"
                          " JOIN domains d ON d.id = a.domain_id"
                          " WHERE x.domain_id = $1::bigint"
                          " ORDER BY d.name, lower(a.local_part), a.id",
                          1, p, account_row, &e, "cannot list domain administrators", err, errlen);
    }
    return dir_tx_end(c, rc, false, err, errlen);
}

int dir_is_domain_admin(PGconn *c, long long account_id, long long domain_id)
{
    char aid[24], did[24];
    const char *p[] = {id_param(aid, account_id), id_param(did, domain_id)};
    PGresult *r = dir_sql(c,
                          "SELECT 1 FROM domain_admins"
                          " WHERE account_id = $1::bigint AND domain_id = $2::bigint",
                          2, p, "cannot look up domain administrator", NULL, NULL, 0);
    if (r == NULL)
        return -1;
    int yes = PQntuples(r) > 0;
    PQclear(r);
    return yes;
}

int dir_admin_may_domain(PGconn *c, const struct dir_account *who, const char *domain, char *err,
                         size_t errlen)
{
    if (who == NULL || who->disabled)
        return 0;
    if (who->is_admin)
        return 1;
    char dom[DIR_DOMAIN_MAX + 1];
    if (domain == NULL || dir_domain_name_check(domain, dom, sizeof dom, NULL, 0) != 0)
        return 0;
    char aid[24];
    const char *p[] = {id_param(aid, who->id), dom};
    /* one statement: the domain (own name or alias) and the admin row together */
    PGresult *r = dir_sql(c,
                          "SELECT 1 FROM domain_admins WHERE account_id = $1::bigint"
                          " AND domain_id = " DIR_DOMAIN_ID_OF("$2"),
                          2, p, "cannot look up domain administrator", NULL, err, errlen);
    if (r == NULL)
        return -1;
    int yes = PQntuples(r) > 0;
    PQclear(r);
    return yes;
}

int dir_admin_may_account(PGconn *c, const struct dir_account *who, const char *address, char *err,
                          size_t errlen)
{
    if (who == NULL || who->disabled || address == NULL)
        return 0;
    if (who->is_admin)
        return 1;
    const char *at = strrchr(address, '@');
    if (at == NULL)
        return 0;
    int may = dir_admin_may_domain(c, who, at + 1, err, errlen);
    if (may != 1)
        return may;
    struct dir_account a;
    int rc = dir_account_find(c, address, &a, err, errlen);
    if (rc == DIR_ENOTFOUND)
        return 1; /* a new account: its domain decided */
    if (rc != 0)
        return -1;
    return a.is_admin ? 0 : 1;
}

int dir_domain_admin_count(PGconn *c, long long account_id, long long *n_r, char *err,
                           size_t errlen)
{
    char aid[24];
    const char *p[] = {id_param(aid, account_id)};
    PGresult *r = dir_sql(c, "SELECT count(*) FROM domain_admins WHERE account_id = $1::bigint", 1,
                          p, "cannot count administered domains", NULL, err, errlen);
    if (r == NULL)
        return -1;
    *n_r = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return 0;
}
