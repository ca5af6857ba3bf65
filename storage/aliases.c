/* Addresses that reach an account: account aliases, domain aliases,
 * catch-alls, forwarders, and dir_resolve() which puts them together.
 *
 * Names. Accounts and account aliases share one namespace per domain, as do
 * domains and domain aliases. No constraint can span two tables, so a write
 * that claims a name takes that name's advisory lock (dir_lock_name) and
 * then checks the other table; the account and domain inserts in
 * directory.c take the same locks. An alias is stored lower-case, as
 * local@domain with the domain's own name even when it was given through a
 * domain alias, so resolution needs one exact lookup on the unique index of
 * account_aliases.address.
 *
 * Resolution (dir_resolve) is one query: the account, the alias and the
 * catch-all are three branches of a UNION ALL ranked by a constant, the
 * first match wins.
 *
 * Forwarders are a text[] per account (at most DIR_FORWARD_MAX), replaced as
 * a whole; a target that resolves back to the account itself is refused, as
 * it would loop.
 */
#include "storage/aliases.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/db.h"
#include "storage/dircache.h"

/* Writes "%lld" into a parameter buffer. */
static const char *id_param(char buf[24], long long id)
{
    snprintf(buf, 24, "%lld", id);
    return buf;
}

/* Runs sql (returning rows or not) and reports whether it affected or
 * returned a row: 1 yes, 0 no, -1 error. */
static int sql_any(PGconn *c, const char *sql, int np, const char *const *p, const char *what,
                   char *err, size_t errlen)
{
    PGresult *r = dir_sql(c, sql, np, p, what, NULL, err, errlen);
    if (r == NULL)
        return -1;
    int any =
        PQresultStatus(r) == PGRES_TUPLES_OK ? PQntuples(r) > 0 : strcmp(PQcmdTuples(r), "0") != 0;
    PQclear(r);
    return any;
}

/* ---- account aliases ---- */

/* Refuses key (lower-cased local@domain, domain_id its domain) when it is an
 * account's address or an alias already. */
static int alias_name_free(PGconn *c, const char *key, const char *lower, const char *domain_id,
                           char *err, size_t errlen)
{
    const char *p[] = {domain_id, lower};
    int any = sql_any(c,
                      "SELECT 1 FROM accounts WHERE domain_id = $1::bigint"
                      " AND lower(local_part) = $2",
                      2, p, "cannot look up accounts", err, errlen);
    if (any < 0)
        return -1;
    if (any > 0) {
        dir_set_err(err, errlen, "%s is already an account", key);
        return DIR_EEXIST;
    }
    const char *kp[] = {key};
    PGresult *r = dir_sql(c,
                          "SELECT a.local_part || '@' || d.name FROM account_aliases al"
                          " JOIN accounts a ON a.id = al.account_id"
                          " JOIN domains d ON d.id = a.domain_id WHERE al.address = $1",
                          1, kp, "cannot look up aliases", NULL, err, errlen);
    if (r == NULL)
        return -1;
    if (PQntuples(r) > 0) {
        dir_set_err(err, errlen, "%s is already an alias of %s", key, PQgetvalue(r, 0, 0));
        PQclear(r);
        return DIR_EEXIST;
    }
    PQclear(r);
    return 0;
}

static int alias_add_tx(PGconn *c, const struct dir_address *al, const char *account_address,
                        char *err, size_t errlen)
{
    long long dom_id;
    char dom[DIR_DOMAIN_MAX + 1];
    int rc = dir_domain_lookup(c, al->domain, &dom_id, dom, err, errlen);
    if (rc != 0)
        return rc;
    char key[DIR_ADDRESS_SIZE], did[24];
    snprintf(key, sizeof key, "%s@%s", al->lower, dom);
    id_param(did, dom_id);
    if (dir_lock_name(c, key, err, errlen) != 0)
        return -1;
    if ((rc = alias_name_free(c, key, al->lower, did, err, errlen)) != 0)
        return rc;

    struct dir_account a;
    if ((rc = dir_account_find(c, account_address, &a, err, errlen)) != 0)
        return rc;
    char aid[24];
    id_param(aid, a.id);
    const char *ap[] = {aid};
    /* Locking the account serialises alias adds for it, so the count holds
     * until the insert; it also keeps the account from going away. */
    PGresult *r =
        dir_sql(c,
                "SELECT (SELECT count(*) FROM account_aliases WHERE account_id = $1::bigint)"
                " FROM accounts WHERE id = $1::bigint FOR NO KEY UPDATE",
                1, ap, "cannot lock account", NULL, err, errlen);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        dir_set_err(err, errlen, "unknown account %s", account_address);
        return DIR_ENOTFOUND;
    }
    long long n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    if (n >= DIR_ALIASES_MAX) {
        dir_set_err(err, errlen, "%s already has %d aliases, the most allowed", a.address,
                    DIR_ALIASES_MAX);
        return -1;
    }
    const char *ip[] = {key, aid, did};
    PGresult *failed = NULL;
    r = dir_sql(c,
                "INSERT INTO account_aliases (address, account_id, domain_id)"
                " VALUES ($1, $2::bigint, $3::bigint)",
                3, ip, "cannot add alias", &failed, err, errlen);
    if (r == NULL) {
        rc = -1;
        if (db_sqlstate_is(failed, "23505")) {
            dir_set_err(err, errlen, "%s is already an alias", key);
            rc = DIR_EEXIST;
        }
        PQclear(failed);
        return rc;
    }
    PQclear(r);
    return 0;
}

int dir_alias_add(PGconn *c, const char *alias, const char *account_address, char *err,
                  size_t errlen)
{
    struct dir_address al;
    if (dir_address_parse(alias, &al, err, errlen) != 0)
        return -1;
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    int rc = alias_add_tx(c, &al, account_address, err, errlen);
    return dir_tx_end(c, rc, true, err, errlen);
}

int dir_alias_remove(PGconn *c, const char *alias, char *err, size_t errlen)
{
    struct dir_address al;
    if (dir_address_parse(alias, &al, err, errlen) != 0)
        return -1;
    const char *p[] = {al.lower, al.domain};
    /* One statement, so one transaction of its own. */
    int any = sql_any(c,
                      "DELETE FROM account_aliases WHERE address = $1 || '@' ||"
                      " (SELECT name FROM domains WHERE id = " DIR_DOMAIN_ID_OF("$2") ")",
                      2, p, "cannot remove alias", err, errlen);
    if (any < 0)
        return -1;
    if (any == 0) {
        dir_set_err(err, errlen, "unknown alias %s@%s", al.lower, al.domain);
        return DIR_ENOTFOUND;
    }
    dircache_directory_changed();
    return 0;
}

struct alias_each {
    dir_alias_cb cb;
    void *ctx;
};

static int alias_row(const PGresult *r, int row, void *arg)
{
    const struct alias_each *e = arg;
    return e->cb(PQgetvalue(r, row, 0), e->ctx);
}

int dir_alias_list(PGconn *c, const char *account_address, dir_alias_cb cb, void *ctx, char *err,
                   size_t errlen)
{
    if (cb == NULL) {
        dir_set_err(err, errlen, "dir_alias_list: no callback");
        return -1;
    }
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    struct dir_account a;
    int rc = dir_account_find(c, account_address, &a, err, errlen);
    if (rc == 0) {
        char aid[24];
        const char *p[] = {id_param(aid, a.id)};
        struct alias_each e = {cb, ctx};
        rc = dir_sql_each(c,
                          "SELECT address FROM account_aliases WHERE account_id = $1::bigint"
                          " ORDER BY address",
                          1, p, alias_row, &e, "cannot list aliases", err, errlen);
    }
    return dir_tx_end(c, rc, false, err, errlen);
}

/* ---- domain aliases ---- */

static int domain_alias_add_tx(PGconn *c, const char *alias, const char *domain, char *err,
                               size_t errlen)
{
    /* dir_domain_add() takes the same lock before its own check. */
    if (dir_lock_name(c, alias, err, errlen) != 0)
        return -1;
    long long dom_id;
    char dom[DIR_DOMAIN_MAX + 1];
    int rc = dir_domain_lookup(c, domain, &dom_id, dom, err, errlen);
    if (rc != 0)
        return rc;
    const char *p[] = {alias};
    PGresult *r = dir_sql(c,
                          "SELECT name, 'domain' FROM domains WHERE name = $1 UNION ALL"
                          " SELECT d.name, 'alias' FROM domain_aliases a"
                          " JOIN domains d ON d.id = a.domain_id WHERE a.name = $1",
                          1, p, "cannot look up domains", NULL, err, errlen);
    if (r == NULL)
        return -1;
    if (PQntuples(r) > 0) {
        if (strcmp(PQgetvalue(r, 0, 1), "domain") == 0)
            dir_set_err(err, errlen, "%s is a domain", alias);
        else
            dir_set_err(err, errlen, "%s is already an alias of %s", alias, PQgetvalue(r, 0, 0));
        PQclear(r);
        return DIR_EEXIST;
    }
    PQclear(r);

    char did[24];
    const char *dp[] = {id_param(did, dom_id)};
    /* The row lock serialises alias adds of this domain, so the count holds. */
    r = dir_sql(c,
                "SELECT (SELECT count(*) FROM domain_aliases WHERE domain_id = $1::bigint)"
                " FROM domains WHERE id = $1::bigint FOR NO KEY UPDATE",
                1, dp, "cannot lock domain", NULL, err, errlen);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        dir_set_err(err, errlen, "unknown domain %s", dom);
        return DIR_ENOTFOUND;
    }
    long long n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    if (n >= DIR_DOMAIN_ALIASES_MAX) {
        dir_set_err(err, errlen, "%s already has %d aliases, the most allowed", dom,
                    DIR_DOMAIN_ALIASES_MAX);
        return -1;
    }
    const char *ip[] = {alias, did};
    PGresult *failed = NULL;
    r = dir_sql(c, "INSERT INTO domain_aliases (name, domain_id) VALUES ($1, $2::bigint)", 2, ip,
                "cannot add domain alias", &failed, err, errlen);
    if (r == NULL) {
        rc = -1;
        if (db_sqlstate_is(failed, "23505")) {
            dir_set_err(err, errlen, "%s is already a domain alias", alias);
            rc = DIR_EEXIST;
        }
        PQclear(failed);
        return rc;
    }
    PQclear(r);
    return 0;
}

int dir_domain_alias_add(PGconn *c, const char *alias, const char *domain, char *err, size_t errlen)
{
    char name[DIR_DOMAIN_MAX + 1];
    if (dir_domain_name_check(alias, name, sizeof name, err, errlen) != 0)
        return -1;
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    int rc = domain_alias_add_tx(c, name, domain, err, errlen);
    return dir_tx_end(c, rc, true, err, errlen);
}

int dir_domain_alias_remove(PGconn *c, const char *alias, char *err, size_t errlen)
{
    char name[DIR_DOMAIN_MAX + 1];
    if (dir_domain_name_check(alias, name, sizeof name, err, errlen) != 0)
        return -1;
    const char *p[] = {name};
    int any = sql_any(c, "DELETE FROM domain_aliases WHERE name = $1", 1, p,
                      "cannot remove domain alias", err, errlen);
    if (any < 0)
        return -1;
    if (any == 0) {
        dir_set_err(err, errlen, "unknown domain alias %s", name);
        return DIR_ENOTFOUND;
    }
    dircache_directory_changed();
    return 0;
}

struct domain_alias_each {
    dir_domain_alias_cb cb;
    void *ctx;
};

static int domain_alias_row(const PGresult *r, int row, void *arg)
{
    const struct domain_alias_each *e = arg;
    return e->cb(PQgetvalue(r, row, 0), PQgetvalue(r, row, 1), e->ctx);
}

int dir_domain_alias_list(PGconn *c, const char *domain, dir_domain_alias_cb cb, void *ctx,
                          char *err, size_t errlen)
{
    if (cb == NULL) {
        dir_set_err(err, errlen, "dir_domain_alias_list: no callback");
        return -1;
    }
    struct domain_alias_each e = {cb, ctx};
    if (domain == NULL)
        return dir_sql_each(c,
                            "SELECT a.name, d.name FROM domain_aliases a"
                            " JOIN domains d ON d.id = a.domain_id ORDER BY d.name, a.name",
                            0, NULL, domain_alias_row, &e, "cannot list domain aliases", err,
                            errlen);
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    long long id;
    int rc = dir_domain_lookup(c, domain, &id, NULL, err, errlen);
    if (rc == 0) {
        char did[24];
        const char *p[] = {id_param(did, id)};
        rc = dir_sql_each(c,
                          "SELECT a.name, d.name FROM domain_aliases a"
                          " JOIN domains d ON d.id = a.domain_id"
                          " WHERE a.domain_id = $1::bigint ORDER BY a.name",
                          1, p, domain_alias_row, &e, "cannot list domain aliases", err, errlen);
    }
    return dir_tx_end(c, rc, false, err, errlen);
}

/* ---- catch-all ---- */

static int catchall_tx(PGconn *c, const char *domain, const char *account_address, char *err,
                       size_t errlen)
{
    long long dom_id;
    int rc = dir_domain_lookup(c, domain, &dom_id, NULL, err, errlen);
    if (rc != 0)
        return rc;
    char did[24], aid[24];
    const char *p[] = {id_param(did, dom_id), NULL};
    if (account_address != NULL) {
        struct dir_account a;
        if ((rc = dir_account_find(c, account_address, &a, err, errlen)) != 0)
            return rc;
        p[1] = id_param(aid, a.id);
    }
    PGresult *r = dir_sql(c,
                          "UPDATE domains SET catchall_account_id = $2::bigint"
                          " WHERE id = $1::bigint",
                          2, p, "cannot set catch-all", NULL, err, errlen);
    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

int dir_domain_set_catchall(PGconn *c, const char *domain, const char *account_address, char *err,
                            size_t errlen)
{
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    int rc = catchall_tx(c, domain, account_address, err, errlen);
    return dir_tx_end(c, rc, true, err, errlen);
}

int dir_domain_get_catchall(PGconn *c, const char *domain, char account_r[DIR_ADDRESS_SIZE],
                            char *err, size_t errlen)
{
    char dom[DIR_DOMAIN_MAX + 1];
    if (dir_domain_name_check(domain, dom, sizeof dom, err, errlen) != 0)
        return DIR_ENOTFOUND;
    const char *p[] = {dom};
    PGresult *r = dir_sql(c,
                          "SELECT a.local_part || '@' || ad.name FROM domains x"
                          " LEFT JOIN accounts a ON a.id = x.catchall_account_id"
                          " LEFT JOIN domains ad ON ad.id = a.domain_id"
                          " WHERE x.id = " DIR_DOMAIN_ID_OF("$1"),
                          1, p, "cannot read catch-all", NULL, err, errlen);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        dir_set_err(err, errlen, "unknown domain %s", dom);
        return DIR_ENOTFOUND;
    }
    snprintf(account_r, DIR_ADDRESS_SIZE, "%s", PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

/* ---- resolution ---- */

const char *dir_via_name(enum dir_via via)
{
    switch (via) {
    case DIR_VIA_ACCOUNT:
        return "account";
    case DIR_VIA_ALIAS:
        return "alias";
    case DIR_VIA_CATCHALL:
        return "catchall";
    }
    return "unknown";
}

/* $1 the lower-cased local part, $2 the domain or a domain alias. The
 * branches use accounts_domain_local, the unique index on
 * account_aliases.address and the domain's primary key. */
#define RESOLVE_SQL                                                                                \
    "WITH dom AS (SELECT id, name, catchall_account_id FROM domains"                               \
    "             WHERE id = " DIR_DOMAIN_ID_OF(                                                   \
        "$2") ")"                                                                                  \
              " SELECT m.via, " DIR_ACCOUNT_COLS " FROM ("                                         \
              "  SELECT 1 AS via, x.id FROM accounts x, dom"                                       \
              "   WHERE x.domain_id = dom.id AND lower(x.local_part) = $1"                         \
              "  UNION ALL"                                                                        \
              "  SELECT 2, al.account_id FROM account_aliases al, dom"                             \
              "   WHERE al.address = $1 || '@' || dom.name"                                        \
              "  UNION ALL"                                                                        \
              "  SELECT 3, dom.catchall_account_id FROM dom WHERE dom.catchall_account_id IS NOT " \
              "NULL"                                                                               \
              " ) m JOIN accounts a ON a.id = m.id JOIN domains d ON d.id = a.domain_id"           \
              " ORDER BY m.via LIMIT 1"

int dir_resolve(PGconn *c, const char *address, struct dir_target *t_r, char *err, size_t errlen)
{
    struct dir_address ad;
    if (dir_address_parse(address, &ad, err, errlen) != 0)
        return DIR_ENOTFOUND;
    const char *p[] = {ad.lower, ad.domain};
    PGresult *r = dir_sql(c, RESOLVE_SQL, 2, p, "cannot resolve address", NULL, err, errlen);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        dir_set_err(err, errlen, "unknown address %s@%s", ad.local, ad.domain);
        return DIR_ENOTFOUND;
    }
    if (t_r != NULL) {
        dir_fill_account(&t_r->account, r, 0, 1);
        t_r->via = (enum dir_via)atoi(PQgetvalue(r, 0, 0));
    }
    PQclear(r);
    return 0;
}

/* ---- forwarders ---- */

/* Appends s to the array literal in buf as a quoted element. */
static int array_append(char *buf, size_t cap, size_t *len, const char *s)
{
    size_t n = *len;
    if (n + 2 >= cap)
        return -1;
    if (n > 1)
        buf[n++] = ',';
    buf[n++] = '"';
    for (; *s; s++) {
        if (n + 4 >= cap)
            return -1;
        if (*s == '"' || *s == '\\')
            buf[n++] = '\\';
        buf[n++] = *s;
    }
    buf[n++] = '"';
    buf[n] = '\0';
    *len = n;
    return 0;
}

/* Two quoted, escaped addresses per target at worst, and the braces. */
#define TARGETS_LITERAL_SIZE (DIR_FORWARD_MAX * (2 * DIR_ADDRESS_SIZE + 3) + 3)

static int forward_set_tx(PGconn *c, const char *address, char (*norm)[DIR_ADDRESS_SIZE], size_t n,
                          const char *literal, bool keep_copy, char *err, size_t errlen)
{
    struct dir_account a;
    int rc = dir_account_find(c, address, &a, err, errlen);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        struct dir_target t;
        rc = dir_resolve(c, norm[i], &t, err, errlen);
        if (rc == -1)
            return -1;
        if (rc == 0 && t.account.id == a.id) {
            dir_set_err(err, errlen, "forwarding %s to %s would loop: that address reaches %s",
                        a.address, norm[i], a.address);
            return -1;
        }
    }
    char aid[24];
    const char *p[] = {id_param(aid, a.id), literal, keep_copy ? "t" : "f"};
    PGresult *r = dir_sql(c,
                          "INSERT INTO forwarders (account_id, targets, keep_copy)"
                          " VALUES ($1::bigint, $2::text[], $3::boolean)"
                          " ON CONFLICT (account_id) DO UPDATE SET targets = excluded.targets,"
                          " keep_copy = excluded.keep_copy, updated_at = now()",
                          3, p, "cannot set forwarding", NULL, err, errlen);
    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

int dir_forward_set(PGconn *c, const char *address, const char *const *targets, size_t n,
                    bool keep_copy, char *err, size_t errlen)
{
    if (n == 0 || targets == NULL) {
        dir_set_err(err, errlen, "no forward targets (dir_forward_clear removes forwarding)");
        return -1;
    }
    if (n > DIR_FORWARD_MAX) {
        dir_set_err(err, errlen, "at most %d forward targets", DIR_FORWARD_MAX);
        return -1;
    }
    char norm[DIR_FORWARD_MAX][DIR_ADDRESS_SIZE];
    char folded[DIR_FORWARD_MAX][DIR_ADDRESS_SIZE];
    char literal[TARGETS_LITERAL_SIZE] = "{";
    size_t len = 1;
    for (size_t i = 0; i < n; i++) {
        struct dir_address t;
        char why[256];
        if (dir_address_parse(targets[i], &t, why, sizeof why) != 0) {
            dir_set_err(err, errlen, "forward target \"%.*s\": %s", DIR_ADDRESS_SIZE,
                        targets[i] ? targets[i] : "", why);
            return -1;
        }
        snprintf(norm[i], sizeof norm[i], "%s@%s", t.local, t.domain);
        snprintf(folded[i], sizeof folded[i], "%s@%s", t.lower, t.domain);
        for (size_t k = 0; k < i; k++)
            if (strcmp(folded[k], folded[i]) == 0) {
                dir_set_err(err, errlen, "forward target %s is given twice", norm[i]);
                return -1;
            }
        if (array_append(literal, sizeof literal, &len, norm[i]) != 0) {
            dir_set_err(err, errlen, "forward targets too long");
            return -1;
        }
    }
    literal[len++] = '}';
    literal[len] = '\0';

    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    int rc = forward_set_tx(c, address, norm, n, literal, keep_copy, err, errlen);
    return dir_tx_end(c, rc, true, err, errlen);
}

static int forward_clear_tx(PGconn *c, const char *address, char *err, size_t errlen)
{
    struct dir_account a;
    int rc = dir_account_find(c, address, &a, err, errlen);
    if (rc != 0)
        return rc;
    char aid[24];
    const char *p[] = {id_param(aid, a.id)};
    return sql_any(c, "DELETE FROM forwarders WHERE account_id = $1::bigint", 1, p,
                   "cannot clear forwarding", err, errlen) < 0
               ? -1
               : 0;
}

int dir_forward_clear(PGconn *c, const char *address, char *err, size_t errlen)
{
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    int rc = forward_clear_tx(c, address, err, errlen);
    return dir_tx_end(c, rc, true, err, errlen);
}

static int forward_get_tx(PGconn *c, const char *address, struct dir_forward *f, char *err,
                          size_t errlen)
{
    struct dir_account a;
    int rc = dir_account_find(c, address, &a, err, errlen);
    if (rc != 0)
        return rc;
    char aid[24];
    const char *p[] = {id_param(aid, a.id)};
    PGresult *r = dir_sql(c,
                          "SELECT f.keep_copy, t.v FROM forwarders f,"
                          " unnest(f.targets) WITH ORDINALITY AS t(v, i)"
                          " WHERE f.account_id = $1::bigint ORDER BY t.i",
                          1, p, "cannot read forwarding", NULL, err, errlen);
    if (r == NULL)
        return -1;
    memset(f, 0, sizeof *f);
    int nt = PQntuples(r);
    /* The CHECK constraint bounds the array to DIR_FORWARD_MAX. */
    for (int i = 0; i < nt && i < DIR_FORWARD_MAX; i++) {
        f->keep_copy = PQgetvalue(r, i, 0)[0] == 't';
        snprintf(f->targets[i], sizeof f->targets[i], "%s", PQgetvalue(r, i, 1));
        f->n++;
    }
    PQclear(r);
    return 0;
}

int dir_forward_get(PGconn *c, const char *address, struct dir_forward *f_r, char *err,
                    size_t errlen)
{
    if (f_r == NULL) {
        dir_set_err(err, errlen, "dir_forward_get: no result buffer");
        return -1;
    }
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    struct dir_forward f;
    int rc = forward_get_tx(c, address, &f, err, errlen);
    rc = dir_tx_end(c, rc, false, err, errlen);
    if (rc == 0)
        *f_r = f;
    return rc;
}
