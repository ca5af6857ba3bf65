/* Folder access rights (see storage/acl.h; schema in migration 0002).
 *
 * Masks are eleven bits in ACL_RIGHTS order; the database stores the
 * canonical letter string (folder_acl.rights), which its CHECK constraint
 * holds to that order.
 *
 * Resolution is one recursive statement, ACL_SOURCE plus the groups:
 * - "up" walks from the folder towards the top while folders inherit, so its
 *   last row (if it does not inherit) is the folder whose entries apply;
 *   the walk is bounded by the tree depth limit even if a parent cycle ever
 *   appeared;
 * - "grp" expands the account's groups: those listing the account or its
 *   domain, then, repeatedly, those listing a group already found. UNION
 *   (not UNION ALL) drops rows already produced, so a cycle adds nothing new
 *   and the recursion ends.
 * The precedence (account > groups > domain > anyone) is applied in C to the
 * handful of entries that come back.
 *
 * Changes lock the owner's account row first, like every folder change
 * (storage/folders.c), and take a modseq from it.
 */
#include "storage/acl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/changes.h"
#include "storage/db.h"

/* The folder whose id is $1 ("up" at depth 0, then its ancestors while
 * they inherit) and "src": the folder whose entries apply to it; no row
 * when none does. */
#define ACL_SOURCE                                                                                 \
    "WITH RECURSIVE up (id, parent_id, acl_inherit, account_id, depth) AS ("                       \
    "  SELECT id, parent_id, acl_inherit, account_id, 0 FROM folders WHERE id = $1::bigint"        \
    "  UNION ALL"                                                                                  \
    "  SELECT p.id, p.parent_id, p.acl_inherit, p.account_id, up.depth + 1"                        \
    "  FROM folders p JOIN up ON p.id = up.parent_id"                                              \
    "  WHERE up.acl_inherit AND up.depth < 64),"                                                   \
    " src AS (SELECT id FROM up WHERE NOT acl_inherit ORDER BY depth LIMIT 1)"

/* Copies the entries that apply to folder $1 onto it. */
#define ACL_COPY_SQL                                                                               \
    ACL_SOURCE                                                                                     \
    " INSERT INTO folder_acl (folder_id, grantee_kind, grantee_id, rights)"                        \
    " SELECT $1::bigint, a.grantee_kind, a.grantee_id, a.rights"                                   \
    " FROM folder_acl a JOIN src ON a.folder_id = src.id"

/* The entries that apply to folder $1 with their grantees' names; the first
 * column tells whether the folder exists, so an unknown folder and one
 * without entries are told apart. */
#define ACL_LIST_SQL                                                                               \
    ACL_SOURCE                                                                                     \
    " SELECT EXISTS (SELECT 1 FROM up), a.grantee_kind, a.grantee_id, a.rights, a.folder_id,"      \
    "  CASE a.grantee_kind WHEN 'anyone' THEN 'anyone' WHEN 'domain' THEN d.name"                  \
    "   ELSE acc.local_part || '@' || ad.name END AS grantee"                                      \
    " FROM (SELECT 1) one"                                                                         \
    " LEFT JOIN (folder_acl a JOIN src ON a.folder_id = src.id) ON true"                           \
    " LEFT JOIN accounts acc"                                                                      \
    "  ON a.grantee_kind IN ('account', 'group') AND acc.id = a.grantee_id"                        \
    " LEFT JOIN domains ad ON ad.id = acc.domain_id"                                               \
    " LEFT JOIN domains d ON a.grantee_kind = 'domain' AND d.id = a.grantee_id"                    \
    " ORDER BY array_position(ARRAY['account', 'group', 'domain', 'anyone'], a.grantee_kind),"     \
    "  grantee, a.grantee_id"

/* The owner of folder $1 and the entries there that may concern account $2.
 * "me" is empty for the owner and when no entries apply, which spares the
 * group expansion in the common cases. The scalar subqueries on "me" make
 * the membership lookups index conditions on group_members_member. */
#define ACL_RIGHTS_SQL                                                                             \
    ACL_SOURCE                                                                                     \
    ", me AS (SELECT id, domain_id FROM accounts WHERE id = $2::bigint"                            \
    "  AND EXISTS (SELECT 1 FROM src)"                                                             \
    "  AND NOT EXISTS (SELECT 1 FROM up WHERE depth = 0 AND account_id = $2::bigint)),"            \
    " grp (gid) AS ("                                                                              \
    "  SELECT m.group_id FROM group_members m"                                                     \
    "   WHERE m.member_kind = 'account' AND m.member_id = (SELECT id FROM me)"                     \
    "  UNION"                                                                                      \
    "  SELECT m.group_id FROM group_members m"                                                     \
    "   WHERE m.member_kind = 'domain' AND m.member_id = (SELECT domain_id FROM me)"               \
    "  UNION"                                                                                      \
    "  SELECT m.group_id FROM group_members m JOIN grp"                                            \
    "   ON m.member_kind = 'group' AND m.member_id = grp.gid),"                                    \
    " e AS (SELECT a.grantee_kind, a.rights"                                                       \
    "  FROM folder_acl a JOIN src ON a.folder_id = src.id"                                         \
    "  WHERE (a.grantee_kind = 'account' AND a.grantee_id = $2::bigint)"                           \
    "   OR (a.grantee_kind = 'group' AND a.grantee_id IN (SELECT gid FROM grp))"                   \
    "   OR (a.grantee_kind = 'domain' AND a.grantee_id = (SELECT domain_id FROM me))"              \
    "   OR a.grantee_kind = 'anyone')"                                                             \
    " SELECT (SELECT account_id FROM up WHERE depth = 0), e.grantee_kind, e.rights"                \
    " FROM (SELECT 1) one LEFT JOIN e ON true"

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt,
                                                          ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- masks ---- */

unsigned acl_mask_parse(const char *letters)
{
    if (letters == NULL)
        return ACL_MASK_INVALID;
    size_t n = strnlen(letters, ACL_RIGHTS_INPUT_MAX + 1);
    if (n > ACL_RIGHTS_INPUT_MAX)
        return ACL_MASK_INVALID;
    unsigned mask = 0;
    for (size_t i = 0; i < n; i++) {
        const char *at = strchr(ACL_RIGHTS, letters[i]);
        if (at == NULL)
            return ACL_MASK_INVALID;
        mask |= 1u << (unsigned)(at - ACL_RIGHTS);
    }
    return mask;
}

void acl_mask_format(unsigned mask, char out[12])
{
    size_t n = 0;
    for (unsigned i = 0; i < sizeof ACL_RIGHTS - 1; i++)
        if (mask & (1u << i))
            out[n++] = ACL_RIGHTS[i];
    out[n] = '\0';
}

static const char *const grantee_names[] = {"account", "group", "domain", "anyone"};
#define NGRANTEES (sizeof grantee_names / sizeof grantee_names[0])

const char *acl_grantee_kind_str(enum acl_grantee_kind kind)
{
    return (unsigned)kind < NGRANTEES ? grantee_names[kind] : NULL;
}

int acl_grantee_kind_parse(const char *s, enum acl_grantee_kind *kind_r)
{
    for (size_t i = 0; s != NULL && i < NGRANTEES; i++)
        if (strcmp(s, grantee_names[i]) == 0) {
            if (kind_r != NULL)
                *kind_r = (enum acl_grantee_kind)i;
            return 0;
        }
    return ACL_EINVAL;
}

/* ---- database helpers ---- */


static PGresult *run(PGconn *c, const char *sql, int nparams, const char *const *params,
                     const char *what, char *err, size_t errlen)
{
    PGresult *r = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
    if (db_ok(r))
        return r;
    db_set_error(err, errlen, c, r, what);
    PQclear(r);
    return NULL;
}

/* Locks the owner of folder fid (as text) and reads the folder under that
 * lock: the owner's id into owner_r, acl_inherit into *inherit_r. Every tree
 * change holds the same lock, so the folder stays as read until commit.
 * Returns 0, -1 or ACL_ENOTFOUND. */
static int lock_folder(PGconn *c, const char *fid, char owner_r[24], bool *inherit_r, char *err,
                       size_t errlen)
{
    const char *p[] = {fid};
    PGresult *r = run(c,
                      "SELECT a.id FROM accounts a JOIN folders f ON f.account_id = a.id"
                      " WHERE f.id = $1::bigint FOR NO KEY UPDATE OF a",
                      1, p, "cannot lock the folder's owner", err, errlen);
    if (r == NULL)
        return -1;
    int n = PQntuples(r);
    PQclear(r);
    if (n == 0) {
        set_err(err, errlen, "unknown folder %s", fid);
        return ACL_ENOTFOUND;
    }
    /* Read again after the lock: the folder may have gone meanwhile. */
    r = run(c, "SELECT account_id, acl_inherit FROM folders WHERE id = $1::bigint", 1, p,
            "cannot read the folder", err, errlen);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        set_err(err, errlen, "unknown folder %s", fid);
        return ACL_ENOTFOUND;
    }
    snprintf(owner_r, 24, "%s", PQgetvalue(r, 0, 0));
    *inherit_r = PQgetvalue(r, 0, 1)[0] == 't';
    PQclear(r);
    return 0;
}

/* Stamps the folder with the owner's next modseq. */
static int touch_folder(PGconn *c, const char *fid, const char *owner, char *err, size_t errlen)
{
    long long m;
    if (changes_next_modseq(c, strtoll(owner, NULL, 10), &m) != 0) {
        db_set_error(err, errlen, c, NULL, "cannot take a modseq");
        return -1;
    }
    char ms[24];
    snprintf(ms, sizeof ms, "%lld", m);
    const char *p[] = {fid, ms};
    PGresult *r = run(c, "UPDATE folders SET highest_modseq = $2::bigint WHERE id = $1::bigint", 2,
                      p, "cannot update the folder", err, errlen);
    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

/* Checks that the grantee exists, has the right kind and is not the owner. */
static int grantee_check(PGconn *c, enum acl_grantee_kind kind, const char *gid, const char *owner,
                         char *err, size_t errlen)
{
    if (kind == ACL_GRANTEE_ANYONE)
        return 0;
    const char *p[] = {gid};
    PGresult *r =
        run(c,
            kind == ACL_GRANTEE_DOMAIN ? "SELECT 'domain' FROM domains WHERE id = $1::bigint"
                                       : "SELECT kind FROM accounts WHERE id = $1::bigint",
            1, p, "cannot look up the grantee", err, errlen);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        set_err(err, errlen, "unknown %s %s", acl_grantee_kind_str(kind), gid);
        return ACL_ENOTFOUND;
    }
    bool is_group = strcmp(PQgetvalue(r, 0, 0), "group") == 0;
    PQclear(r);
    if (kind == ACL_GRANTEE_GROUP && !is_group) {
        set_err(err, errlen, "account %s is not a group", gid);
        return ACL_EINVAL;
    }
    if (kind == ACL_GRANTEE_ACCOUNT && is_group) {
        set_err(err, errlen, "account %s is a group: grant it as a group", gid);
        return ACL_EINVAL;
    }
    if (kind == ACL_GRANTEE_ACCOUNT && strcmp(gid, owner) == 0) {
        set_err(err, errlen, "the owner always has every right");
        return ACL_EINVAL;
    }
    return 0;
}

/* ---- changing ---- */

int acl_set(PGconn *c, long long folder_id, enum acl_grantee_kind kind, long long grantee_id,
            const char *rights, char *err, size_t errlen)
{
    unsigned mask = acl_mask_parse(rights != NULL ? rights : "");
    if (mask == ACL_MASK_INVALID) {
        set_err(err, errlen, "rights must be letters of %s", ACL_RIGHTS);
        return ACL_EINVAL;
    }
    const char *kname = acl_grantee_kind_str(kind);
    if (kname == NULL) {
        set_err(err, errlen, "unknown grantee kind");
        return ACL_EINVAL;
    }
    if (kind != ACL_GRANTEE_ANYONE && grantee_id <= 0) {
        set_err(err, errlen, "a %s grantee needs an id", kname);
        return ACL_EINVAL;
    }
    char fid[24], gid[24], owner[24], letters[12];
    snprintf(fid, sizeof fid, "%lld", folder_id);
    snprintf(gid, sizeof gid, "%lld", grantee_id);
    acl_mask_format(mask, letters);
    const char *gidp = kind == ACL_GRANTEE_ANYONE ? NULL : gid;

    struct db_op op;
    if (db_op_begin(c, &op, err, errlen) != 0)
        return -1;
    bool inherit;
    PGresult *r;
    int rc = lock_folder(c, fid, owner, &inherit, err, errlen);
    if (rc != 0)
        goto fail;
    rc = grantee_check(c, kind, gid, owner, err, errlen);
    if (rc != 0)
        goto fail;
    rc = -1;
    if (inherit) {
        /* Copy what applied so far, then the folder stands on its own. */
        const char *p[] = {fid};
        r = run(c, ACL_COPY_SQL, 1, p, "cannot copy the inherited rights", err, errlen);
        if (r == NULL)
            goto fail;
        PQclear(r);
        r = run(c, "UPDATE folders SET acl_inherit = false WHERE id = $1::bigint", 1, p,
                "cannot stop inheritance", err, errlen);
        if (r == NULL)
            goto fail;
        PQclear(r);
    }
    const char *p[] = {fid, kname, gidp, letters};
    if (mask == 0)
        r = run(c,
                "DELETE FROM folder_acl WHERE folder_id = $1::bigint AND grantee_kind = $2"
                " AND COALESCE(grantee_id, 0) = COALESCE($3::bigint, 0)",
                3, p, "cannot remove the entry", err, errlen);
    else
        r = run(c,
                "INSERT INTO folder_acl (folder_id, grantee_kind, grantee_id, rights)"
                " VALUES ($1::bigint, $2, $3::bigint, $4)"
                " ON CONFLICT (folder_id, grantee_kind, (COALESCE(grantee_id, 0)))"
                " DO UPDATE SET rights = EXCLUDED.rights",
                4, p, "cannot set the entry", err, errlen);
    if (r == NULL)
        goto fail;
    PQclear(r);
    if (mask != 0) {
        r = run(c, "SELECT count(*) FROM folder_acl WHERE folder_id = $1::bigint", 1, p,
                "cannot count the entries", err, errlen);
        if (r == NULL)
            goto fail;
        long long n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        if (n > ACL_ENTRIES_MAX) {
            set_err(err, errlen, "a folder may have at most %d entries", ACL_ENTRIES_MAX);
            rc = ACL_EINVAL;
            goto fail;
        }
    }
    if (touch_folder(c, fid, owner, err, errlen) != 0)
        goto fail;
    if (db_op_commit(c, &op, err, errlen) != 0)
        goto fail;
    return 0;
fail:
    db_op_abort(c, &op);
    return rc;
}

int acl_reset_inherit(PGconn *c, long long folder_id, char *err, size_t errlen)
{
    char fid[24], owner[24];
    snprintf(fid, sizeof fid, "%lld", folder_id);
    struct db_op op;
    if (db_op_begin(c, &op, err, errlen) != 0)
        return -1;
    bool inherit;
    int rc = lock_folder(c, fid, owner, &inherit, err, errlen);
    if (rc != 0)
        goto fail;
    rc = -1;
    const char *p[] = {fid};
    PGresult *r = run(c, "DELETE FROM folder_acl WHERE folder_id = $1::bigint", 1, p,
                      "cannot remove the entries", err, errlen);
    if (r == NULL)
        goto fail;
    PQclear(r);
    r = run(c, "UPDATE folders SET acl_inherit = true WHERE id = $1::bigint", 1, p,
            "cannot restore inheritance", err, errlen);
    if (r == NULL)
        goto fail;
    PQclear(r);
    if (touch_folder(c, fid, owner, err, errlen) != 0)
        goto fail;
    if (db_op_commit(c, &op, err, errlen) != 0)
        goto fail;
    return 0;
fail:
    db_op_abort(c, &op);
    return rc;
}

/* ---- reading ---- */

int acl_list(PGconn *c, long long folder_id, acl_entry_cb cb, void *ctx)
{
    if (cb == NULL)
        return ACL_EINVAL;
    char fid[24];
    snprintf(fid, sizeof fid, "%lld", folder_id);
    const char *p[] = {fid};
    PGresult *r = PQexecParams(c, ACL_LIST_SQL, 1, NULL, p, NULL, NULL, 0);
    if (!db_ok(r)) {
        PQclear(r);
        return -1;
    }
    int n = PQntuples(r);
    if (n == 0 || PQgetvalue(r, 0, 0)[0] != 't') {
        PQclear(r);
        return ACL_ENOTFOUND;
    }
    for (int i = 0; i < n; i++) {
        if (PQgetisnull(r, i, 1))
            continue; /* no entries */
        struct acl_entry e;
        memset(&e, 0, sizeof e);
        if (acl_grantee_kind_parse(PQgetvalue(r, i, 1), &e.kind) != 0)
            continue;
        e.grantee_id = PQgetisnull(r, i, 2) ? 0 : strtoll(PQgetvalue(r, i, 2), NULL, 10);
        e.rights = acl_mask_parse(PQgetvalue(r, i, 3));
        if (e.rights == ACL_MASK_INVALID)
            e.rights = 0;
        e.folder_id = strtoll(PQgetvalue(r, i, 4), NULL, 10);
        e.inherited = e.folder_id != folder_id;
        snprintf(e.grantee, sizeof e.grantee, "%s", PQgetvalue(r, i, 5));
        if (cb(&e, ctx) != 0)
            break;
    }
    PQclear(r);
    return 0;
}

int acl_rights(PGconn *c, long long folder_id, long long account_id, unsigned *mask_r)
{
    char fid[24], aid[24];
    snprintf(fid, sizeof fid, "%lld", folder_id);
    snprintf(aid, sizeof aid, "%lld", account_id);
    const char *p[] = {fid, aid};
    PGresult *r = PQexecParams(c, ACL_RIGHTS_SQL, 2, NULL, p, NULL, NULL, 0);
    if (!db_ok(r)) {
        PQclear(r);
        return -1;
    }
    if (PQntuples(r) == 0 || PQgetisnull(r, 0, 0)) {
        PQclear(r);
        return ACL_ENOTFOUND;
    }
    long long owner = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    unsigned mask = 0;
    if (account_id > 0 && owner == account_id) {
        mask = ACL_ALL;
    } else {
        /* Closest kind wins: account, then the union of groups, then domain,
         * then anyone. */
        unsigned level_mask[4] = {0, 0, 0, 0};
        bool level_set[4] = {false, false, false, false};
        for (int i = 0; i < PQntuples(r); i++) {
            enum acl_grantee_kind k;
            if (PQgetisnull(r, i, 1) || acl_grantee_kind_parse(PQgetvalue(r, i, 1), &k) != 0)
                continue;
            unsigned m = acl_mask_parse(PQgetvalue(r, i, 2));
            if (m == ACL_MASK_INVALID)
                continue;
            level_mask[k] |= m;
            level_set[k] = true;
        }
        for (int k = 0; k < 4; k++)
            if (level_set[k]) {
                mask = level_mask[k];
                break;
            }
    }
    PQclear(r);
    if (mask_r != NULL)
        *mask_r = mask;
    return 0;
}

bool acl_may(PGconn *c, long long folder_id, long long account_id, unsigned needed)
{
    unsigned mask;
    if (acl_rights(c, folder_id, account_id, &mask) != 0)
        return false;
    return (mask & needed) == needed;
}
