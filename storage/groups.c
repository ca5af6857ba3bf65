/* Groups (accounts of kind "group") with their members, and resources
 * (accounts of kind "resource") with their settings and managers.
 *
 * Membership lives in group_members (migration 0002): (group_id,
 * member_kind, member_id) where member_id is an account id for kinds
 * "account" and "group" and a domain id for "domain". Having no foreign key
 * on member_id, it is kept clean by the delete triggers of migration 0002,
 * and every read joins the member's row anyway.
 *
 * Cycles. Only group-in-group edges can close a cycle. Adding one first
 * takes a single advisory lock for the whole group graph (name "#groups",
 * which no address or domain can be), then asks with a recursive query
 * whether the new member already reaches the group; two adds that would
 * close a cycle together are thus serialised and the second one sees the
 * first. Reachability uses UNION (not UNION ALL), so the query visits each
 * group once and ends even on a graph that is somehow cyclic already.
 *
 * Expansion is one recursive query streamed row by row: the set of groups
 * reached, then the accounts those groups name and the users of the domains
 * they name, deduplicated by UNION.
 */
#include "storage/groups.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/db.h"

/* The advisory lock name that serialises group-in-group membership changes. */
#define GROUP_GRAPH_LOCK "#groups"

static const char *id_param(char buf[24], long long id)
{
    snprintf(buf, 24, "%lld", id);
    return buf;
}

static int deliver_check(const char *deliver_to, char *err, size_t errlen)
{
    if (strcmp(deliver_to, "members") == 0 || strcmp(deliver_to, "folder") == 0)
        return 0;
    dir_set_err(err, errlen, "group delivery must be members or folder");
    return -1;
}

/* Looks up an account that must be of the given kind. */
static int find_kind(PGconn *c, const char *address, const char *kind, struct dir_account *a_r,
                     char *err, size_t errlen)
{
    int rc = dir_account_find(c, address, a_r, err, errlen);
    if (rc != 0)
        return rc;
    if (strcmp(a_r->kind, kind) != 0) {
        dir_set_err(err, errlen, "%s is not a %s but a %s", a_r->address, kind, a_r->kind);
        return -1;
    }
    return 0;
}

/* ---- groups ---- */

static int group_add_tx(PGconn *c, const char *address, const char *full_name,
                        const char *deliver_to, char *err, size_t errlen)
{
    long long id;
    int rc = dir_account_create(c, address, "group", full_name, &id, err, errlen);
    if (rc != 0)
        return rc;
    char gid[24];
    const char *p[] = {id_param(gid, id), deliver_to};
    PGresult *r = dir_sql(c, "UPDATE accounts SET deliver_to = $2 WHERE id = $1::bigint", 2, p,
                          "cannot set group delivery", NULL, err, errlen);
    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

int dir_group_add(PGconn *c, const char *address, const char *full_name, const char *deliver_to,
                  char *err, size_t errlen)
{
    if (deliver_to == NULL)
        deliver_to = "members";
    if (deliver_check(deliver_to, err, errlen) != 0)
        return -1;
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    int rc = group_add_tx(c, address, full_name, deliver_to, err, errlen);
    return dir_tx_end(c, rc, true, err, errlen);
}

static int group_deliver_tx(PGconn *c, const char *group, const char *deliver_to,
                            char deliver_r[16], char *err, size_t errlen)
{
    struct dir_account g;
    int rc = find_kind(c, group, "group", &g, err, errlen);
    if (rc != 0)
        return rc;
    char gid[24];
    const char *p[] = {id_param(gid, g.id), deliver_to};
    PGresult *r = deliver_to != NULL
                      ? dir_sql(c,
                                "UPDATE accounts SET deliver_to = $2 WHERE id = $1::bigint"
                                " RETURNING deliver_to",
                                2, p, "cannot set group delivery", NULL, err, errlen)
                      : dir_sql(c, "SELECT deliver_to FROM accounts WHERE id = $1::bigint", 1, p,
                                "cannot read group delivery", NULL, err, errlen);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        dir_set_err(err, errlen, "unknown account %s", g.address);
        return DIR_ENOTFOUND;
    }
    if (deliver_r != NULL)
        snprintf(deliver_r, 16, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

int dir_group_set_deliver(PGconn *c, const char *group, const char *deliver_to, char *err,
                          size_t errlen)
{
    if (deliver_to == NULL || deliver_check(deliver_to, err, errlen) != 0) {
        if (deliver_to == NULL)
            dir_set_err(err, errlen, "group delivery must be members or folder");
        return -1;
    }
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    int rc = group_deliver_tx(c, group, deliver_to, NULL, err, errlen);
    return dir_tx_end(c, rc, true, err, errlen);
}

int dir_group_get_deliver(PGconn *c, const char *group, char deliver_r[16], char *err,
                          size_t errlen)
{
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    char out[16];
    int rc = group_deliver_tx(c, group, NULL, out, err, errlen);
    rc = dir_tx_end(c, rc, false, err, errlen);
    if (rc == 0)
        snprintf(deliver_r, 16, "%s", out);
    return rc;
}

/* A member named for dir_group_member_add()/remove(): its kind and id, and
 * its canonical name for messages. */
struct member {
    const char *kind; /* "account", "group" or "domain" */
    long long id;
    char name[DIR_ADDRESS_SIZE];
};

static int member_resolve(PGconn *c, const char *name, const char *kind, struct member *m,
                          char *err, size_t errlen)
{
    if (name == NULL || name[0] == '\0') {
        dir_set_err(err, errlen, "no member given");
        return -1;
    }
    if (kind == NULL)
        kind = strchr(name, '@') == NULL ? "domain" : NULL;
    if (kind != NULL && strcmp(kind, "account") != 0 && strcmp(kind, "group") != 0 &&
        strcmp(kind, "domain") != 0) {
        dir_set_err(err, errlen, "member kind must be account, group or domain");
        return -1;
    }
    if (kind != NULL && strcmp(kind, "domain") == 0) {
        char dom[DIR_DOMAIN_MAX + 1];
        int rc = dir_domain_lookup(c, name, &m->id, dom, err, errlen);
        if (rc != 0)
            return rc;
        m->kind = "domain";
        snprintf(m->name, sizeof m->name, "%s", dom);
        return 0;
    }
    struct dir_account a;
    int rc = dir_account_find(c, name, &a, err, errlen);
    if (rc != 0)
        return rc;
    bool is_group = strcmp(a.kind, "group") == 0;
    if (kind != NULL && strcmp(kind, "group") == 0 && !is_group) {
        dir_set_err(err, errlen, "%s is not a group but a %s", a.address, a.kind);
        return -1;
    }
    if (kind != NULL && strcmp(kind, "account") == 0 && is_group) {
        dir_set_err(err, errlen, "%s is a group: add it as a member of kind group", a.address);
        return -1;
    }
    m->kind = is_group ? "group" : "account";
    m->id = a.id;
    snprintf(m->name, sizeof m->name, "%s", a.address);
    return 0;
}

/* DIR_ECYCLE when group g would reach itself through member m. */
static int cycle_check(PGconn *c, const struct dir_account *g, const struct member *m, char *err,
                       size_t errlen)
{
    if (m->id == g->id) {
        dir_set_err(err, errlen, "group %s cannot be a member of itself", g->address);
        return DIR_ECYCLE;
    }
    if (dir_lock_name(c, GROUP_GRAPH_LOCK, err, errlen) != 0)
        return -1;
    char mid[24], gid[24];
    const char *p[] = {id_param(mid, m->id), id_param(gid, g->id)};
    /* Served by the primary key of group_members (group_id, member_kind, ...). */
    PGresult *r =
        dir_sql(c,
                "WITH RECURSIVE reach(id) AS ("
                "  SELECT $1::bigint"
                "  UNION"
                "  SELECT gm.member_id FROM group_members gm JOIN reach ON gm.group_id = reach.id"
                "   WHERE gm.member_kind = 'group'"
                ") SELECT 1 FROM reach WHERE id = $2::bigint",
                2, p, "cannot check for group cycles", NULL, err, errlen);
    if (r == NULL)
        return -1;
    int found = PQntuples(r);
    PQclear(r);
    if (found > 0) {
        dir_set_err(err, errlen, "adding group %s to %s would make a cycle: %s already contains %s",
                    m->name, g->address, m->name, g->address);
        return DIR_ECYCLE;
    }
    return 0;
}

static int member_add_tx(PGconn *c, const char *group, const char *member, const char *kind,
                         char *err, size_t errlen)
{
    struct dir_account g;
    int rc = find_kind(c, group, "group", &g, err, errlen);
    if (rc != 0)
        return rc;
    struct member m;
    if ((rc = member_resolve(c, member, kind, &m, err, errlen)) != 0)
        return rc;
    if (strcmp(m.kind, "group") == 0 && (rc = cycle_check(c, &g, &m, err, errlen)) != 0)
        return rc;

    char gid[24], mid[24];
    const char *gp[] = {id_param(gid, g.id)};
    /* The row lock serialises member adds of this group, so the count holds. */
    PGresult *r = dir_sql(c,
                          "SELECT (SELECT count(*) FROM group_members WHERE group_id = $1::bigint)"
                          " FROM accounts WHERE id = $1::bigint FOR NO KEY UPDATE",
                          1, gp, "cannot lock group", NULL, err, errlen);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        dir_set_err(err, errlen, "unknown account %s", g.address);
        return DIR_ENOTFOUND;
    }
    long long n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    if (n >= DIR_GROUP_MEMBERS_MAX) {
        dir_set_err(err, errlen, "group %s already has %d members, the most allowed", g.address,
                    DIR_GROUP_MEMBERS_MAX);
        return -1;
    }
    const char *p[] = {gid, m.kind, id_param(mid, m.id)};
    r = dir_sql(c,
                "INSERT INTO group_members (group_id, member_kind, member_id)"
                " VALUES ($1::bigint, $2, $3::bigint) ON CONFLICT DO NOTHING RETURNING 1",
                3, p, "cannot add member", NULL, err, errlen);
    if (r == NULL)
        return -1;
    int added = PQntuples(r);
    PQclear(r);
    if (added == 0) {
        dir_set_err(err, errlen, "%s is already a member of %s", m.name, g.address);
        return DIR_EEXIST;
    }
    return 0;
}

int dir_group_member_add(PGconn *c, const char *group, const char *member, const char *kind,
                         char *err, size_t errlen)
{
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    int rc = member_add_tx(c, group, member, kind, err, errlen);
    return dir_tx_end(c, rc, true, err, errlen);
}

static int member_remove_tx(PGconn *c, const char *group, const char *member, const char *kind,
                            char *err, size_t errlen)
{
    struct dir_account g;
    int rc = find_kind(c, group, "group", &g, err, errlen);
    if (rc != 0)
        return rc;
    struct member m;
    if ((rc = member_resolve(c, member, kind, &m, err, errlen)) != 0)
        return rc;
    char gid[24], mid[24];
    const char *p[] = {id_param(gid, g.id), m.kind, id_param(mid, m.id)};
    PGresult *r = dir_sql(c,
                          "DELETE FROM group_members WHERE group_id = $1::bigint"
                          " AND member_kind = $2 AND member_id = $3::bigint",
                          3, p, "cannot remove member", NULL, err, errlen);
    if (r == NULL)
        return -1;
    bool none = strcmp(PQcmdTuples(r), "0") == 0;
    PQclear(r);
    if (none) {
        dir_set_err(err, errlen, "%s is not a member of %s", m.name, g.address);
        return DIR_ENOTFOUND;
    }
    return 0;
}

int dir_group_member_remove(PGconn *c, const char *group, const char *member, const char *kind,
                            char *err, size_t errlen)
{
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    int rc = member_remove_tx(c, group, member, kind, err, errlen);
    return dir_tx_end(c, rc, true, err, errlen);
}

struct member_each {
    dir_member_cb cb;
    void *ctx;
};

static int member_row(const PGresult *r, int row, void *arg)
{
    const struct member_each *e = arg;
    return e->cb(PQgetvalue(r, row, 0), PQgetvalue(r, row, 1), e->ctx);
}

int dir_group_member_list(PGconn *c, const char *group, dir_member_cb cb, void *ctx, char *err,
                          size_t errlen)
{
    if (cb == NULL) {
        dir_set_err(err, errlen, "dir_group_member_list: no callback");
        return -1;
    }
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    struct dir_account g;
    int rc = find_kind(c, group, "group", &g, err, errlen);
    if (rc == 0) {
        char gid[24];
        const char *p[] = {id_param(gid, g.id)};
        struct member_each e = {cb, ctx};
        rc = dir_sql_each(
            c,
            "SELECT m.member_kind, coalesce(a.local_part || '@' || ad.name, md.name) AS n"
            " FROM group_members m"
            " LEFT JOIN accounts a ON m.member_kind <> 'domain' AND a.id = m.member_id"
            " LEFT JOIN domains ad ON ad.id = a.domain_id"
            " LEFT JOIN domains md ON m.member_kind = 'domain' AND md.id = m.member_id"
            " WHERE m.group_id = $1::bigint AND (a.id IS NOT NULL OR md.id IS NOT NULL)"
            " ORDER BY m.member_kind, n",
            1, p, member_row, &e, "cannot list members", err, errlen);
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

/* $1 the group's id. The recursive part and the member lookups use the
 * primary key of group_members; domain members use accounts_domain_local. */
#define EXPAND_SQL                                                                                 \
    "WITH RECURSIVE g(id) AS ("                                                                    \
    "  SELECT $1::bigint"                                                                          \
    "  UNION"                                                                                      \
    "  SELECT m.member_id FROM group_members m JOIN g ON m.group_id = g.id"                        \
    "   WHERE m.member_kind = 'group'"                                                             \
    "), reached(id) AS ("                                                                          \
    "  SELECT m.member_id FROM group_members m JOIN g ON m.group_id = g.id"                        \
    "   WHERE m.member_kind = 'account'"                                                           \
    "  UNION"                                                                                      \
    "  SELECT x.id FROM group_members m JOIN g ON m.group_id = g.id"                               \
    "   JOIN accounts x ON x.domain_id = m.member_id AND x.kind = 'user'"                          \
    "   WHERE m.member_kind = 'domain'"                                                            \
    ") SELECT " DIR_ACCOUNT_COLS " FROM reached"                                                   \
    " JOIN accounts a ON a.id = reached.id JOIN domains d ON d.id = a.domain_id"                   \
    " WHERE a.kind <> 'group'"                                                                     \
    " ORDER BY d.name, lower(a.local_part), a.id"

int dir_group_expand(PGconn *c, const char *group, dir_account_cb cb, void *ctx, char *err,
                     size_t errlen)
{
    if (cb == NULL) {
        dir_set_err(err, errlen, "dir_group_expand: no callback");
        return -1;
    }
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    struct dir_account g;
    int rc = find_kind(c, group, "group", &g, err, errlen);
    if (rc == 0) {
        char gid[24];
        const char *p[] = {id_param(gid, g.id)};
        struct account_each e = {cb, ctx};
        rc = dir_sql_each(c, EXPAND_SQL, 1, p, account_row, &e, "cannot expand group", err, errlen);
    }
    return dir_tx_end(c, rc, false, err, errlen);
}

/* ---- resources ---- */

static int type_check(const char *type, char *err, size_t errlen)
{
    if (strcmp(type, "room") == 0 || strcmp(type, "equipment") == 0)
        return 0;
    dir_set_err(err, errlen, "resource type must be room or equipment");
    return -1;
}

static int booking_check(const char *booking, char *err, size_t errlen)
{
    if (strcmp(booking, "auto_accept") == 0 || strcmp(booking, "manager_approval") == 0)
        return 0;
    dir_set_err(err, errlen, "booking policy must be auto_accept or manager_approval");
    return -1;
}

static int resource_add_tx(PGconn *c, const char *address, const char *type, const char *booking,
                           const char *full_name, char *err, size_t errlen)
{
    long long id;
    int rc = dir_account_create(c, address, "resource", full_name, &id, err, errlen);
    if (rc != 0)
        return rc;
    char rid[24];
    const char *p[] = {id_param(rid, id), type, booking};
    PGresult *r = dir_sql(c,
                          "INSERT INTO resources (account_id, resource_type, booking_policy)"
                          " VALUES ($1::bigint, $2, $3)",
                          3, p, "cannot add resource", NULL, err, errlen);
    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

int dir_resource_add(PGconn *c, const char *address, const char *type, const char *booking,
                     const char *full_name, char *err, size_t errlen)
{
    if (type == NULL || type_check(type, err, errlen) != 0) {
        if (type == NULL)
            dir_set_err(err, errlen, "resource type must be room or equipment");
        return -1;
    }
    if (booking == NULL)
        booking = "auto_accept";
    if (booking_check(booking, err, errlen) != 0)
        return -1;
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    int rc = resource_add_tx(c, address, type, booking, full_name, err, errlen);
    return dir_tx_end(c, rc, true, err, errlen);
}

static int resource_set_tx(PGconn *c, const char *address, const char *type, const char *booking,
                           char *err, size_t errlen)
{
    struct dir_account a;
    int rc = find_kind(c, address, "resource", &a, err, errlen);
    if (rc != 0)
        return rc;
    char rid[24];
    const char *p[] = {id_param(rid, a.id), type, booking};
    PGresult *r = dir_sql(c,
                          "INSERT INTO resources (account_id, resource_type, booking_policy)"
                          " VALUES ($1::bigint, coalesce($2, 'room'), coalesce($3, 'auto_accept'))"
                          " ON CONFLICT (account_id) DO UPDATE SET"
                          " resource_type = coalesce($2, resources.resource_type),"
                          " booking_policy = coalesce($3, resources.booking_policy)",
                          3, p, "cannot change resource", NULL, err, errlen);
    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

int dir_resource_set(PGconn *c, const char *address, const char *type, const char *booking,
                     char *err, size_t errlen)
{
    if (type != NULL && type_check(type, err, errlen) != 0)
        return -1;
    if (booking != NULL && booking_check(booking, err, errlen) != 0)
        return -1;
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    int rc = resource_set_tx(c, address, type, booking, err, errlen);
    return dir_tx_end(c, rc, true, err, errlen);
}

static int resource_get_tx(PGconn *c, const char *address, struct dir_resource *res, char *err,
                           size_t errlen)
{
    struct dir_account a;
    int rc = find_kind(c, address, "resource", &a, err, errlen);
    if (rc != 0)
        return rc;
    char rid[24];
    const char *p[] = {id_param(rid, a.id)};
    PGresult *r = dir_sql(c,
                          "SELECT resource_type, booking_policy FROM resources"
                          " WHERE account_id = $1::bigint",
                          1, p, "cannot read resource", NULL, err, errlen);
    if (r == NULL)
        return -1;
    bool have = PQntuples(r) > 0;
    snprintf(res->type, sizeof res->type, "%s", have ? PQgetvalue(r, 0, 0) : "room");
    snprintf(res->booking, sizeof res->booking, "%s", have ? PQgetvalue(r, 0, 1) : "auto_accept");
    PQclear(r);
    return 0;
}

int dir_resource_get(PGconn *c, const char *address, struct dir_resource *r_r, char *err,
                     size_t errlen)
{
    if (r_r == NULL) {
        dir_set_err(err, errlen, "dir_resource_get: no result buffer");
        return -1;
    }
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    struct dir_resource res;
    int rc = resource_get_tx(c, address, &res, err, errlen);
    rc = dir_tx_end(c, rc, false, err, errlen);
    if (rc == 0)
        *r_r = res;
    return rc;
}

static int manager_tx(PGconn *c, const char *resource, const char *manager, bool add, char *err,
                      size_t errlen)
{
    struct dir_account res, man;
    int rc = find_kind(c, resource, "resource", &res, err, errlen);
    if (rc != 0)
        return rc;
    if ((rc = dir_account_find(c, manager, &man, err, errlen)) != 0)
        return rc;
    char rid[24], mid[24];
    const char *p[] = {id_param(rid, res.id), id_param(mid, man.id)};
    if (!add) {
        PGresult *r = dir_sql(c,
                              "DELETE FROM resource_managers WHERE resource_id = $1::bigint"
                              " AND manager_id = $2::bigint",
                              2, p, "cannot remove manager", NULL, err, errlen);
        if (r == NULL)
            return -1;
        bool none = strcmp(PQcmdTuples(r), "0") == 0;
        PQclear(r);
        if (none) {
            dir_set_err(err, errlen, "%s is not a manager of %s", man.address, res.address);
            return DIR_ENOTFOUND;
        }
        return 0;
    }
    if (strcmp(man.kind, "user") != 0) {
        dir_set_err(err, errlen, "manager %s is not a user but a %s", man.address, man.kind);
        return -1;
    }
    /* The row lock serialises manager adds of this resource. */
    PGresult *r = dir_sql(c,
                          "SELECT (SELECT count(*) FROM resource_managers"
                          "         WHERE resource_id = $1::bigint)"
                          " FROM accounts WHERE id = $1::bigint FOR NO KEY UPDATE",
                          1, p, "cannot lock resource", NULL, err, errlen);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        dir_set_err(err, errlen, "unknown account %s", res.address);
        return DIR_ENOTFOUND;
    }
    long long n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    if (n >= DIR_RESOURCE_MANAGERS_MAX) {
        dir_set_err(err, errlen, "resource %s already has %d managers, the most allowed",
                    res.address, DIR_RESOURCE_MANAGERS_MAX);
        return -1;
    }
    r = dir_sql(c,
                "INSERT INTO resource_managers (resource_id, manager_id)"
                " VALUES ($1::bigint, $2::bigint) ON CONFLICT DO NOTHING RETURNING 1",
                2, p, "cannot add manager", NULL, err, errlen);
    if (r == NULL)
        return -1;
    int added = PQntuples(r);
    PQclear(r);
    if (added == 0) {
        dir_set_err(err, errlen, "%s is already a manager of %s", man.address, res.address);
        return DIR_EEXIST;
    }
    return 0;
}

int dir_resource_manager_add(PGconn *c, const char *resource, const char *manager, char *err,
                             size_t errlen)
{
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    int rc = manager_tx(c, resource, manager, true, err, errlen);
    return dir_tx_end(c, rc, true, err, errlen);
}

int dir_resource_manager_remove(PGconn *c, const char *resource, const char *manager, char *err,
                                size_t errlen)
{
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    int rc = manager_tx(c, resource, manager, false, err, errlen);
    return dir_tx_end(c, rc, true, err, errlen);
}

int dir_resource_manager_list(PGconn *c, const char *resource, dir_account_cb cb, void *ctx,
                              char *err, size_t errlen)
{
    if (cb == NULL) {
        dir_set_err(err, errlen, "dir_resource_manager_list: no callback");
        return -1;
    }
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    struct dir_account res;
    int rc = find_kind(c, resource, "resource", &res, err, errlen);
    if (rc == 0) {
        char rid[24];
        const char *p[] = {id_param(rid, res.id)};
        struct account_each e = {cb, ctx};
        rc = dir_sql_each(c,
                          "SELECT " DIR_ACCOUNT_COLS " FROM resource_managers rm"
                          " JOIN accounts a ON a.id = rm.manager_id"
                          " JOIN domains d ON d.id = a.domain_id"
                          " WHERE rm.resource_id = $1::bigint"
                          " ORDER BY d.name, lower(a.local_part), a.id",
                          1, p, account_row, &e, "cannot list managers", err, errlen);
    }
    return dir_tx_end(c, rc, false, err, errlen);
}
