/* Shared and public folders as one account sees them (see storage/sharing.h).
 *
 * One statement does the work of acl_rights() for every folder of the owners
 * concerned: "grp" expands the viewer's groups exactly as storage/acl.c does,
 * "own" finds the owners that have an entry naming the viewer (by the
 * reverse index folder_acl_grantee), and "tree" walks each owner's tree from
 * the top, carrying the folder whose entries apply ("src": the folder itself
 * when it has its own list, else its parent's source; none at an inheriting
 * top level). The precedence between the kinds of entries (account > union
 * of groups > domain > anyone) is applied here in C to the four columns each
 * folder row brings, as acl_rights() does.
 */
#include "storage/sharing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/acl.h"
#include "storage/db.h"

/* $1 viewer, $2 scope ("users", "groups", "all"), $3 subscribed owners only,
 * $4 one owner (0: any). Columns: the folder (as in storage/folders.c), the
 * owner's address and kind, the rights letters of the account entry, of all
 * group entries concatenated, of the domain entry and of the anyone entry
 * (NULL where none applies), and whether the viewer subscribed the folder. */
static const char list_sql[] =
    "WITH RECURSIVE me AS (SELECT id, domain_id FROM accounts WHERE id = $1::bigint),"
    " grp (gid) AS ("
    "  SELECT m.group_id FROM group_members m"
    "   WHERE m.member_kind = 'account' AND m.member_id = (SELECT id FROM me)"
    "  UNION"
    "  SELECT m.group_id FROM group_members m"
    "   WHERE m.member_kind = 'domain' AND m.member_id = (SELECT domain_id FROM me)"
    "  UNION"
    "  SELECT m.group_id FROM group_members m JOIN grp"
    "   ON m.member_kind = 'group' AND m.member_id = grp.gid),"
    " granted AS (SELECT DISTINCT f.account_id FROM folder_acl a JOIN folders f"
    "  ON f.id = a.folder_id"
    "  WHERE (a.grantee_kind = 'account' AND a.grantee_id = (SELECT id FROM me))"
    "   OR (a.grantee_kind = 'group' AND a.grantee_id IN (SELECT gid FROM grp))"
    "   OR (a.grantee_kind = 'domain' AND a.grantee_id = (SELECT domain_id FROM me))"
    "   OR a.grantee_kind = 'anyone'),"
    " own AS (SELECT o.id, o.kind, o.local_part || '@' || d.name AS address"
    "  FROM granted g JOIN accounts o ON o.id = g.account_id JOIN domains d ON d.id = o.domain_id"
    "  WHERE o.id <> $1::bigint"
    "   AND ($2::text = 'all' OR (o.kind = 'group') = ($2::text = 'groups'))"
    "   AND ($4::bigint = 0 OR o.id = $4::bigint)"
    "   AND (NOT $3::boolean OR EXISTS (SELECT 1 FROM subscriptions s"
    "    JOIN folders sf ON sf.id = s.folder_id"
    "    WHERE s.account_id = $1::bigint AND sf.account_id = o.id))),"
    " tree (id, src, depth) AS ("
    "  SELECT f.id, CASE WHEN f.acl_inherit THEN NULL ELSE f.id END, 0"
    "   FROM folders f JOIN own ON f.account_id = own.id WHERE f.parent_id IS NULL"
    "  UNION ALL"
    "  SELECT c.id, CASE WHEN c.acl_inherit THEN t.src ELSE c.id END, t.depth + 1"
    "   FROM folders c JOIN tree t ON c.parent_id = t.id WHERE t.depth < 64)"
    " SELECT f.id, f.account_id, f.parent_id, f.name, f.path, f.kind, f.role, f.uidvalidity,"
    "  f.uidnext, f.highest_modseq, f.acl_inherit, own.address, own.kind,"
    "  (SELECT a.rights FROM folder_acl a WHERE a.folder_id = t.src"
    "    AND a.grantee_kind = 'account' AND a.grantee_id = $1::bigint),"
    "  (SELECT string_agg(a.rights, '') FROM folder_acl a WHERE a.folder_id = t.src"
    "    AND a.grantee_kind = 'group' AND a.grantee_id IN (SELECT gid FROM grp)),"
    "  (SELECT a.rights FROM folder_acl a WHERE a.folder_id = t.src"
    "    AND a.grantee_kind = 'domain' AND a.grantee_id = (SELECT domain_id FROM me)),"
    "  (SELECT a.rights FROM folder_acl a WHERE a.folder_id = t.src"
    "    AND a.grantee_kind = 'anyone'),"
    "  EXISTS (SELECT 1 FROM subscriptions s WHERE s.account_id = $1::bigint"
    "   AND s.folder_id = f.id)"
    " FROM tree t JOIN folders f ON f.id = t.id JOIN own ON own.id = f.account_id"
    " WHERE t.src IS NOT NULL"
    " ORDER BY own.address, string_to_array(f.path, '/')";

static long long cell_ll(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* Letters to a mask; unlike acl_mask_parse() any length (the group column
 * concatenates the entries of every group) and unknown letters ignored (the
 * schema's CHECK admits none). */
static unsigned letters_mask(const char *s)
{
    unsigned m = 0;
    for (; *s; s++) {
        const char *at = strchr(ACL_RIGHTS, *s);
        if (at != NULL)
            m |= 1u << (unsigned)(at - ACL_RIGHTS);
    }
    return m;
}

struct list_ctx {
    sharing_cb cb;
    void *ctx;
};

static int list_row(const PGresult *r, int row, void *arg)
{
    const struct list_ctx *lc = arg;
    /* Closest kind wins (storage/acl.h): account, groups, domain, anyone. */
    unsigned rights = 0;
    for (int col = 13; col <= 16; col++)
        if (!PQgetisnull(r, row, col)) {
            rights = letters_mask(PQgetvalue(r, row, col));
            break;
        }
    if (rights == 0)
        return 0;
    struct sharing_folder sf;
    memset(&sf, 0, sizeof sf);
    struct folder *f = &sf.f;
    f->id = cell_ll(r, row, 0);
    f->account_id = cell_ll(r, row, 1);
    f->parent_id = cell_ll(r, row, 2);
    snprintf(f->name, sizeof f->name, "%s", PQgetvalue(r, row, 3));
    snprintf(f->path, sizeof f->path, "%s", PQgetvalue(r, row, 4));
    if (folders_kind_parse(PQgetvalue(r, row, 5), &f->kind) != 0)
        f->kind = FOLDER_KIND_MAIL;
    if (PQgetisnull(r, row, 6) || folders_role_parse(PQgetvalue(r, row, 6), &f->role) != 0)
        f->role = FOLDER_ROLE_NONE;
    f->uidvalidity = (unsigned)strtoul(PQgetvalue(r, row, 7), NULL, 10);
    f->uidnext = cell_ll(r, row, 8);
    f->highest_modseq = cell_ll(r, row, 9);
    f->acl_inherit = PQgetvalue(r, row, 10)[0] == 't';
    snprintf(sf.owner, sizeof sf.owner, "%s", PQgetvalue(r, row, 11));
    sf.owner_is_group = strcmp(PQgetvalue(r, row, 12), "group") == 0;
    sf.rights = rights;
    sf.subscribed = PQgetvalue(r, row, 17)[0] == 't';
    return lc->cb(&sf, lc->ctx);
}

int sharing_list(PGconn *c, long long account_id, enum sharing_scope scope, bool subscribed_owners,
                 long long owner_id, sharing_cb cb, void *ctx, char *err, size_t errlen)
{
    static const char *const scopes[] = {"users", "groups", "all"};
    if (cb == NULL || (unsigned)scope > SHARING_ALL) {
        dir_set_err(err, errlen, "sharing_list: invalid arguments");
        return -1;
    }
    char acct[24], owner[24];
    snprintf(acct, sizeof acct, "%lld", account_id);
    snprintf(owner, sizeof owner, "%lld", owner_id > 0 ? owner_id : 0);
    const char *p[] = {acct, scopes[scope], subscribed_owners ? "true" : "false", owner};
    struct list_ctx lc = {cb, ctx};
    return dir_sql_each(c, list_sql, 4, p, list_row, &lc, "cannot list shared folders", err,
                        errlen) == 0
               ? 0
               : -1;
}

/* ---- subscribing to an owner ---- */

struct ids {
    char *text; /* "{1,2,3}" */
    size_t len, cap;
    int n;
    bool oom;
};

static int collect_visible(const struct sharing_folder *sf, void *ctx)
{
    struct ids *ids = ctx;
    if (!(sf->rights & ACL_L))
        return 0;
    if (ids->len + 32 > ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 256;
        char *t = realloc(ids->text, cap);
        if (t == NULL) {
            ids->oom = true;
            return 1;
        }
        ids->text = t;
        ids->cap = cap;
    }
    ids->len += (size_t)snprintf(ids->text + ids->len, ids->cap - ids->len, "%s%lld",
                                 ids->n ? "," : "{", sf->f.id);
    ids->n++;
    return 0;
}

int sharing_subscribe_owner(PGconn *c, long long account_id, long long owner_id, bool on,
                            int *count_r, char *err, size_t errlen)
{
    char acct[24], owner[24];
    snprintf(acct, sizeof acct, "%lld", account_id);
    snprintf(owner, sizeof owner, "%lld", owner_id);
    if (count_r != NULL)
        *count_r = 0;
    PGresult *r;
    if (!on) {
        const char *p[] = {acct, owner};
        r = dir_sql(c,
                    "DELETE FROM subscriptions s USING folders f"
                    " WHERE s.account_id = $1::bigint AND f.id = s.folder_id"
                    " AND f.account_id = $2::bigint",
                    2, p, "cannot unsubscribe", NULL, err, errlen);
        if (r == NULL)
            return -1;
    } else {
        struct ids ids = {0};
        if (owner_id <= 0 || owner_id == account_id) {
            return 0; /* one's own folders are not "shared" */
        }
        if (sharing_list(c, account_id, SHARING_ALL, false, owner_id, collect_visible, &ids, err,
                         errlen) != 0 ||
            ids.oom) {
            if (ids.oom)
                dir_set_err(err, errlen, "out of memory");
            free(ids.text);
            return -1;
        }
        if (ids.n == 0) {
            free(ids.text);
            return 0;
        }
        snprintf(ids.text + ids.len, ids.cap - ids.len, "}");
        const char *p[] = {acct, ids.text};
        /* One statement: all the folders or none (a folder deleted meanwhile
         * simply drops out of the SELECT). */
        r = dir_sql(c,
                    "INSERT INTO subscriptions (account_id, folder_id)"
                    " SELECT $1::bigint, f.id FROM folders f WHERE f.id = ANY ($2::bigint[])"
                    " ON CONFLICT DO NOTHING",
                    2, p, "cannot subscribe", NULL, err, errlen);
        free(ids.text);
        if (r == NULL)
            return -1;
        if (count_r != NULL)
            *count_r = ids.n;
        PQclear(r);
        return 0;
    }
    if (count_r != NULL)
        *count_r = atoi(PQcmdTuples(r));
    PQclear(r);
    return 0;
}
