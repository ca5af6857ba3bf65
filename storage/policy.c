/* Service policies per domain and account, and the server's login policy.
 *
 * A setting is a row (domain_service_policies, account_service_policies;
 * migration 0003) holding enabled true or false; "inherit" is the absence of
 * a row, so setting it deletes the row. The effective answer is
 * coalesce(account row, domain row, true), read in one query by primary
 * key. The login policy is a column of the one-row server_settings table.
 */
#include "storage/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/db.h"
#include "storage/dircache.h"

const char *const policy_services[POLICY_SERVICE_COUNT] = {"imap",       "pop3", "smtp",
                                                           "activesync", "dav",  "syncml"};

static const char *id_param(char buf[24], long long id)
{
    snprintf(buf, 24, "%lld", id);
    return buf;
}

int policy_service_check(const char *service, char *err, size_t errlen)
{
    for (int i = 0; service != NULL && i < POLICY_SERVICE_COUNT; i++)
        if (strcmp(service, policy_services[i]) == 0)
            return 0;
    dir_set_err(err, errlen,
                "unknown service \"%.32s\": services are imap, pop3, smtp, activesync, dav and"
                " syncml",
                service != NULL ? service : "");
    return -1;
}

const char *policy_state_name(enum policy_state st)
{
    switch (st) {
    case POLICY_INHERIT:
        return "inherit";
    case POLICY_ENABLED:
        return "enabled";
    case POLICY_DISABLED:
        return "disabled";
    }
    return "unknown";
}

int policy_state_parse(const char *s, enum policy_state *st_r, char *err, size_t errlen)
{
    static const enum policy_state all[] = {POLICY_INHERIT, POLICY_ENABLED, POLICY_DISABLED};
    for (size_t i = 0; s != NULL && i < sizeof all / sizeof all[0]; i++)
        if (strcmp(s, policy_state_name(all[i])) == 0) {
            *st_r = all[i];
            return 0;
        }
    dir_set_err(err, errlen, "policy state must be enabled, disabled or inherit");
    return -1;
}

const char *policy_login_name(enum policy_login p)
{
    switch (p) {
    case POLICY_LOGIN_FULL_ADDRESS:
        return "full_address";
    case POLICY_LOGIN_LOCAL_PART_WHEN_UNAMBIGUOUS:
        return "local_part_when_unambiguous";
    }
    return "unknown";
}

int policy_login_parse(const char *s, enum policy_login *p_r, char *err, size_t errlen)
{
    if (s != NULL && strcmp(s, "full_address") == 0) {
        *p_r = POLICY_LOGIN_FULL_ADDRESS;
        return 0;
    }
    if (s != NULL && strcmp(s, "local_part_when_unambiguous") == 0) {
        *p_r = POLICY_LOGIN_LOCAL_PART_WHEN_UNAMBIGUOUS;
        return 0;
    }
    dir_set_err(err, errlen, "login policy must be full_address or local_part_when_unambiguous");
    return -1;
}

/* ---- setting ---- */

static int set_domain_tx(PGconn *c, const char *domain, const char *service, enum policy_state st,
                         char *err, size_t errlen)
{
    long long id;
    int rc = dir_domain_lookup(c, domain, &id, NULL, err, errlen);
    if (rc != 0)
        return rc;
    char idb[24];
    const char *p[] = {id_param(idb, id), service, st == POLICY_ENABLED ? "t" : "f"};
    PGresult *r =
        st == POLICY_INHERIT
            ? dir_sql(c,
                      "DELETE FROM domain_service_policies"
                      " WHERE domain_id = $1::bigint AND service = $2",
                      2, p, "cannot set policy", NULL, err, errlen)
            : dir_sql(c,
                      "INSERT INTO domain_service_policies (domain_id, service, enabled)"
                      " VALUES ($1::bigint, $2, $3::boolean)"
                      " ON CONFLICT (domain_id, service) DO UPDATE SET enabled = excluded.enabled",
                      3, p, "cannot set policy", NULL, err, errlen);
    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

/* Checks a list of changes before anything is written: known services, each
 * once, 1..POLICY_SERVICE_COUNT of them. */
static int changes_check(const struct policy_change *ch, size_t n, char *err, size_t errlen)
{
    if (n == 0 || n > POLICY_SERVICE_COUNT) {
        dir_set_err(err, errlen, "between 1 and %d policy changes at once", POLICY_SERVICE_COUNT);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (policy_service_check(ch[i].service, err, errlen) != 0)
            return -1;
        if (ch[i].state != POLICY_INHERIT && ch[i].state != POLICY_ENABLED &&
            ch[i].state != POLICY_DISABLED) {
            dir_set_err(err, errlen, "policy state must be enabled, disabled or inherit");
            return -1;
        }
        for (size_t k = 0; k < i; k++)
            if (strcmp(ch[k].service, ch[i].service) == 0) {
                dir_set_err(err, errlen, "service %s given twice", ch[i].service);
                return -1;
            }
    }
    return 0;
}

int policy_set_domain_many(PGconn *c, const char *domain, const struct policy_change *ch, size_t n,
                           char *err, size_t errlen)
{
    if (changes_check(ch, n, err, errlen) != 0)
        return -1;
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = set_domain_tx(c, domain, ch[i].service, ch[i].state, err, errlen);
    return dir_tx_end(c, rc, true, err, errlen);
}

int policy_set_domain(PGconn *c, const char *domain, const char *service, enum policy_state st,
                      char *err, size_t errlen)
{
    const struct policy_change ch = {service, st};
    return policy_set_domain_many(c, domain, &ch, 1, err, errlen);
}

static int set_account_tx(PGconn *c, const char *address, const char *service, enum policy_state st,
                          char *err, size_t errlen)
{
    struct dir_account a;
    int rc = dir_account_find(c, address, &a, err, errlen);
    if (rc != 0)
        return rc;
    char idb[24];
    const char *p[] = {id_param(idb, a.id), service, st == POLICY_ENABLED ? "t" : "f"};
    PGresult *r =
        st == POLICY_INHERIT
            ? dir_sql(c,
                      "DELETE FROM account_service_policies"
                      " WHERE account_id = $1::bigint AND service = $2",
                      2, p, "cannot set policy", NULL, err, errlen)
            : dir_sql(c,
                      "INSERT INTO account_service_policies (account_id, service, enabled)"
                      " VALUES ($1::bigint, $2, $3::boolean)"
                      " ON CONFLICT (account_id, service) DO UPDATE SET enabled = excluded.enabled",
                      3, p, "cannot set policy", NULL, err, errlen);
    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

int policy_set_account_many(PGconn *c, const char *address, const struct policy_change *ch,
                            size_t n, char *err, size_t errlen)
{
    if (changes_check(ch, n, err, errlen) != 0)
        return -1;
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = set_account_tx(c, address, ch[i].service, ch[i].state, err, errlen);
    return dir_tx_end(c, rc, true, err, errlen);
}

int policy_set_account(PGconn *c, const char *address, const char *service, enum policy_state st,
                       char *err, size_t errlen)
{
    const struct policy_change ch = {service, st};
    return policy_set_account_many(c, address, &ch, 1, err, errlen);
}

/* ---- reading ---- */

static enum policy_state state_of(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return POLICY_INHERIT;
    return PQgetvalue(r, row, col)[0] == 't' ? POLICY_ENABLED : POLICY_DISABLED;
}

/* Fills out[] from rows (service, domain enabled, account enabled). */
static void fill_services(struct policy_service out[POLICY_SERVICE_COUNT], const PGresult *r)
{
    for (int i = 0; i < POLICY_SERVICE_COUNT; i++) {
        out[i] = (struct policy_service){policy_services[i], POLICY_INHERIT, POLICY_INHERIT, true};
        for (int k = 0; k < PQntuples(r); k++) {
            if (strcmp(PQgetvalue(r, k, 0), policy_services[i]) != 0)
                continue;
            out[i].domain = state_of(r, k, 1);
            out[i].account = state_of(r, k, 2);
        }
        enum policy_state eff = out[i].account != POLICY_INHERIT ? out[i].account : out[i].domain;
        out[i].allowed = eff != POLICY_DISABLED;
    }
}

int policy_get_domain(PGconn *c, const char *domain,
                      struct policy_service out[POLICY_SERVICE_COUNT], char *err, size_t errlen)
{
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    long long id;
    int rc = dir_domain_lookup(c, domain, &id, NULL, err, errlen);
    if (rc == 0) {
        char idb[24];
        const char *p[] = {id_param(idb, id)};
        PGresult *r = dir_sql(c,
                              "SELECT service, enabled, NULL::boolean FROM domain_service_policies"
                              " WHERE domain_id = $1::bigint",
                              1, p, "cannot read policies", NULL, err, errlen);
        if (r == NULL) {
            rc = -1;
        } else {
            fill_services(out, r);
            PQclear(r);
        }
    }
    return dir_tx_end(c, rc, false, err, errlen);
}

int policy_get_account(PGconn *c, const char *address,
                       struct policy_service out[POLICY_SERVICE_COUNT], char *err, size_t errlen)
{
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    struct dir_account a;
    int rc = dir_account_find(c, address, &a, err, errlen);
    if (rc == 0) {
        char idb[24];
        /* policy_services as an array literal (they need no quoting). */
        const char *p[] = {id_param(idb, a.id), "{imap,pop3,smtp,activesync,dav,syncml}"};
        PGresult *r = dir_sql(c,
                              "SELECT s.service, dp.enabled, ap.enabled"
                              " FROM accounts a CROSS JOIN unnest($2::text[]) AS s(service)"
                              " LEFT JOIN domain_service_policies dp"
                              "  ON dp.domain_id = a.domain_id AND dp.service = s.service"
                              " LEFT JOIN account_service_policies ap"
                              "  ON ap.account_id = a.id AND ap.service = s.service"
                              " WHERE a.id = $1::bigint",
                              2, p, "cannot read policies", NULL, err, errlen);
        if (r == NULL) {
            rc = -1;
        } else {
            fill_services(out, r);
            PQclear(r);
        }
    }
    return dir_tx_end(c, rc, false, err, errlen);
}

int policy_service_allowed(PGconn *c, long long account_id, const char *service, bool *allowed_r,
                           char *err, size_t errlen)
{
    if (policy_service_check(service, err, errlen) != 0)
        return -1;
    char idb[24];
    const char *p[] = {id_param(idb, account_id), service};
    PGresult *r = dir_sql(c,
                          "SELECT coalesce(ap.enabled, dp.enabled, true) FROM accounts a"
                          " LEFT JOIN account_service_policies ap"
                          "  ON ap.account_id = a.id AND ap.service = $2"
                          " LEFT JOIN domain_service_policies dp"
                          "  ON dp.domain_id = a.domain_id AND dp.service = $2"
                          " WHERE a.id = $1::bigint",
                          2, p, "cannot read policy", NULL, err, errlen);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        dir_set_err(err, errlen, "unknown account id %lld", account_id);
        return DIR_ENOTFOUND;
    }
    if (allowed_r != NULL)
        *allowed_r = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return 0;
}

/* ---- login policy ---- */

int policy_login_set(PGconn *c, enum policy_login p, char *err, size_t errlen)
{
    const char *name = policy_login_name(p);
    if (strcmp(name, "unknown") == 0) {
        dir_set_err(err, errlen, "invalid login policy");
        return -1;
    }
    const char *params[] = {name};
    PGresult *r = dir_sql(c, "UPDATE server_settings SET login_policy = $1", 1, params,
                          "cannot set login policy", NULL, err, errlen);
    if (r == NULL)
        return -1;
    PQclear(r);
    dircache_directory_changed();
    return 0;
}

int policy_login_get(PGconn *c, enum policy_login *p_r, char *err, size_t errlen)
{
    PGresult *r = dir_sql(c, "SELECT login_policy FROM server_settings", 0, NULL,
                          "cannot read login policy", NULL, err, errlen);
    if (r == NULL)
        return -1;
    if (PQntuples(r) != 1) {
        PQclear(r);
        dir_set_err(err, errlen, "server_settings has no row");
        return -1;
    }
    int rc = policy_login_parse(PQgetvalue(r, 0, 0), p_r, err, errlen);
    PQclear(r);
    return rc;
}
