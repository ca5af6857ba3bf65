/* The folder tree of an account (see storage/folders.h; schema in migration
 * 0002).
 *
 * Each row keeps its full path next to parent_id and name, so the lookups
 * every protocol command makes are one probe of folders_account_path, and a
 * subtree is a range of that index: the descendants of "A/B" are exactly the
 * paths p with "A/B/" <= p < "A/B0" in byte order ('0' follows '/'), which
 * the "C" collation of the column guarantees. Rename rewrites the prefix of
 * that range; delete removes it.
 *
 * Every change starts by locking the account row (the same lock the modseq
 * update takes, storage/changes.h), so two changes of one tree never
 * interleave: the existence checks below stay true until commit, and the
 * unique indexes only fire for a sibling name that differs in case.
 *
 * Paths are validated in C before any SQL runs; the CHECK constraints repeat
 * the essentials for rows written by other means.
 */
#include "proto/text/utf8.h"
#include "storage/directory.h"
#include "storage/folders.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "storage/changes.h"
#include "storage/db.h"

/* Columns read by fill_folder(), in this order, from folders aliased f. */
#define FOLDER_COLS                                                                                \
    "f.id, f.account_id, f.parent_id, f.name, f.path, f.kind, f.role, f.uidvalidity,"              \
    " f.uidnext, f.highest_modseq, f.acl_inherit"

/* Paths below the one in $2 ($2 || '/' <= path < $2 || '0'), and the
 * folder itself by id in $3, of account $1. */
#define SUBTREE_OF                                                                                 \
    "(f.account_id = $1::bigint AND (f.id = $3::bigint"                                            \
    " OR (f.path >= ($2::text || '/') COLLATE \"C\""                                               \
    "     AND f.path < ($2::text || '0') COLLATE \"C\")))"

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

/* ---- names ---- */

static const char *const kind_names[] = {"mail",  "events",  "contacts", "tasks",
                                         "notes", "journal", "files"};
static const char *const role_names[] = {NULL,    "inbox",   "drafts", "sent",     "trash",
                                         "junk",  "archive", "events", "contacts", "tasks",
                                         "notes", "journal", "files"};
#define NKINDS (sizeof kind_names / sizeof kind_names[0])
#define NROLES (sizeof role_names / sizeof role_names[0])

const char *folders_kind_str(enum folder_kind kind)
{
    return (unsigned)kind < NKINDS ? kind_names[kind] : NULL;
}

int folders_kind_parse(const char *s, enum folder_kind *kind_r)
{
    for (size_t i = 0; s != NULL && i < NKINDS; i++)
        if (strcmp(s, kind_names[i]) == 0) {
            if (kind_r != NULL)
                *kind_r = (enum folder_kind)i;
            return 0;
        }
    return FOLDERS_EINVAL;
}

const char *folders_role_str(enum folder_role role)
{
    return (unsigned)role < NROLES ? role_names[role] : NULL;
}

int folders_role_parse(const char *s, enum folder_role *role_r)
{
    for (size_t i = 1; s != NULL && i < NROLES; i++)
        if (strcmp(s, role_names[i]) == 0) {
            if (role_r != NULL)
                *role_r = (enum folder_role)i;
            return 0;
        }
    return FOLDERS_EINVAL;
}

enum folder_kind folders_role_kind(enum folder_role role)
{
    switch (role) {
    case FOLDER_ROLE_EVENTS:
        return FOLDER_KIND_EVENTS;
    case FOLDER_ROLE_CONTACTS:
        return FOLDER_KIND_CONTACTS;
    case FOLDER_ROLE_TASKS:
        return FOLDER_KIND_TASKS;
    case FOLDER_ROLE_NOTES:
        return FOLDER_KIND_NOTES;
    case FOLDER_ROLE_JOURNAL:
        return FOLDER_KIND_JOURNAL;
    case FOLDER_ROLE_FILES:
        return FOLDER_KIND_FILES;
    default:
        return FOLDER_KIND_MAIL;
    }
}

/* ---- paths ---- */

/* RFC 3629 UTF-8 without control characters: C0, DEL and C1 (U+0080..9F),
 * none of which a display name needs and all of which confuse logs, IMAP
 * quoting and URLs. */
static bool name_text_ok(const char *s, size_t n)
{
    return utf8_check(s, n, UTF8_NO_C0 | UTF8_NO_C1);
}

int folders_path_check(const char *path, char *out, size_t outlen, char *err, size_t errlen)
{
    if (path == NULL || path[0] == '\0') {
        set_err(err, errlen, "folder path is empty");
        return FOLDERS_EINVAL;
    }
    size_t n = strnlen(path, FOLDERS_PATH_MAX + 1);
    if (n > FOLDERS_PATH_MAX) {
        set_err(err, errlen, "folder path is longer than %d bytes", FOLDERS_PATH_MAX);
        return FOLDERS_EINVAL;
    }
    if (out == NULL || outlen <= n) {
        set_err(err, errlen, "folder path buffer too small");
        return FOLDERS_EINVAL;
    }
    size_t depth = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && path[i] != '/')
            continue;
        size_t len = i - start;
        if (len == 0) {
            set_err(err, errlen, "folder path has an empty name (leading, trailing or double /)");
            return FOLDERS_EINVAL;
        }
        if (len > FOLDERS_NAME_MAX) {
            set_err(err, errlen, "folder name is longer than %d bytes", FOLDERS_NAME_MAX);
            return FOLDERS_EINVAL;
        }
        if (!name_text_ok(path + start, len)) {
            set_err(err, errlen, "folder name must be UTF-8 without control characters");
            return FOLDERS_EINVAL;
        }
        /* DAV serves the tree as URLs, where these two mean something else. */
        if ((len == 1 && path[start] == '.') ||
            (len == 2 && path[start] == '.' && path[start + 1] == '.')) {
            set_err(err, errlen, "folder name may not be \".\" or \"..\"");
            return FOLDERS_EINVAL;
        }
        if (++depth > FOLDERS_DEPTH_MAX) {
            set_err(err, errlen, "folder path is deeper than %d levels", FOLDERS_DEPTH_MAX);
            return FOLDERS_EINVAL;
        }
        start = i + 1;
    }
    memcpy(out, path, n + 1);
    /* RFC 3501 §5.1: "INBOX" is case-insensitive; store and look up one spelling. */
    if ((n == 5 || (n > 5 && path[5] == '/')) && strncasecmp(path, "INBOX", 5) == 0)
        memcpy(out, "INBOX", 5);
    return 0;
}

/* Length of the parent part of a checked path ("A/B/C" -> 3), 0 at the top. */
static size_t parent_len(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash != NULL ? (size_t)(slash - path) : 0;
}

static size_t path_depth(const char *path)
{
    size_t d = 1;
    for (const char *p = path; *p; p++)
        d += *p == '/';
    return d;
}

/* ---- database helpers ---- */


static long long cell_ll(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* Fills *f from a row whose first columns are FOLDER_COLS. */
static void fill_folder(struct folder *f, const PGresult *r, int row)
{
    memset(f, 0, sizeof *f);
    f->id = cell_ll(r, row, 0);
    f->account_id = cell_ll(r, row, 1);
    f->parent_id = cell_ll(r, row, 2);
    /* The CHECK constraints bound name and path to fit. */
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
}

/* Locks the account row for the rest of the transaction (the lock the
 * modseq update takes too). Returns 0, -1 or FOLDERS_ENOTFOUND. */
static int lock_account(PGconn *c, const char *acct, char *err, size_t errlen)
{
    const char *p[] = {acct};
    PGresult *r = dir_sql(c, "SELECT 1 FROM accounts WHERE id = $1::bigint FOR NO KEY UPDATE", 1, p,
                      "cannot lock the account", NULL, err, errlen);
    if (r == NULL)
        return -1;
    int n = PQntuples(r);
    PQclear(r);
    if (n == 0) {
        set_err(err, errlen, "unknown account %s", acct);
        return FOLDERS_ENOTFOUND;
    }
    return 0;
}

static int next_modseq(PGconn *c, long long account_id, char out[24], char *err, size_t errlen)
{
    long long m;
    int rc = changes_next_modseq(c, account_id, &m);
    if (rc == CHANGES_ENOTFOUND) {
        set_err(err, errlen, "unknown account %lld", account_id);
        return FOLDERS_ENOTFOUND;
    }
    if (rc != 0) {
        db_set_error(err, errlen, c, NULL, "cannot take a modseq");
        return -1;
    }
    snprintf(out, 24, "%lld", m);
    return 0;
}

/* Finds the folder at a checked path. Returns 0 with *f_r filled (may be
 * NULL), -1 or FOLDERS_ENOTFOUND. */
static int find_path(PGconn *c, const char *acct, const char *path, struct folder *f_r, char *err,
                     size_t errlen)
{
    const char *p[] = {acct, path};
    PGresult *r = dir_sql(c,
                      "SELECT " FOLDER_COLS " FROM folders f"
                      " WHERE f.account_id = $1::bigint AND f.path = $2::text COLLATE \"C\"",
                      2, p, "cannot look up folder", NULL, err, errlen);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        set_err(err, errlen, "no folder %s", path);
        return FOLDERS_ENOTFOUND;
    }
    if (f_r != NULL)
        fill_folder(f_r, r, 0);
    PQclear(r);
    return 0;
}

/* Inserts one folder, taking the account's next modseq and UIDVALIDITY in
 * the same statement. parent "" = top level, role NULL = none. Returns 0
 * with *f_r filled (may be NULL), -1 or FOLDERS_EEXIST. */
static int insert_folder(PGconn *c, const char *acct, const char *parent, const char *name,
                         const char *path, const char *kind, const char *role, struct folder *f_r,
                         char *err, size_t errlen)
{
    const char *p[] = {acct, parent[0] ? parent : NULL, name, path, kind, role};
    PGresult *failed = NULL;
    /* RFC 3501 §2.3.1.1: UIDVALIDITY from the clock, and above every value the
     * account handed out before, so a folder re-created under an old name
     * never gets the old value back, even within the same second. */
    PGresult *r = dir_sql(c,
                      "WITH a AS ("
                      "  UPDATE accounts SET modseq = modseq + 1,"
                      "   uidvalidity_last = greatest(uidvalidity_last + 1,"
                      "    floor(extract(epoch FROM clock_timestamp()))::bigint)"
                      "  WHERE id = $1::bigint RETURNING modseq, uidvalidity_last)"
                      " INSERT INTO folders AS f (account_id, parent_id, name, path, kind, role,"
                      "  uidvalidity, highest_modseq)"
                      " SELECT $1::bigint, $2::bigint, $3, $4, $5, $6, a.uidvalidity_last, a.modseq"
                      " FROM a RETURNING " FOLDER_COLS,
                      6, p, "cannot create folder", &failed, err, errlen);
    if (r == NULL) {
        int rc = -1;
        if (db_sqlstate_is(failed, "23505")) { /* unique_violation */
            const char *cn = PQresultErrorField(failed, PG_DIAG_CONSTRAINT_NAME);
            if (cn != NULL && strcmp(cn, "folders_account_role") == 0)
                set_err(err, errlen, "the account already has a %s folder", role ? role : "");
            else
                set_err(err, errlen, "a folder named like %s (differing only in case) exists",
                        path);
            rc = FOLDERS_EEXIST;
        }
        PQclear(failed);
        return rc;
    }
    if (PQntuples(r) != 1) { /* the account vanished under our lock: cannot happen */
        PQclear(r);
        set_err(err, errlen, "unknown account %s", acct);
        return FOLDERS_ENOTFOUND;
    }
    if (f_r != NULL)
        fill_folder(f_r, r, 0);
    PQclear(r);
    return 0;
}

/* Makes sure every proper prefix of a checked path exists, creating the
 * missing ones as plain mail folders. Writes the id of the last one (the
 * parent of path) to parent_id ("" at the top level). Returns 0, -1 or
 * FOLDERS_EEXIST (a missing level's name differs from an existing sibling's
 * only in case). */
static int ensure_parents(PGconn *c, const char *acct, const char *path, char parent_id[24],
                          char *err, size_t errlen)
{
    char prefix[FOLDERS_PATH_MAX + 1];
    parent_id[0] = '\0';
    size_t plen = parent_len(path);
    size_t start = 0;
    while (plen > 0 && start < plen) {
        const char *slash = strchr(path + start, '/');
        size_t end = (size_t)(slash - path); /* plen > 0: every level below it has a '/' */
        memcpy(prefix, path, end);
        prefix[end] = '\0';
        struct folder f;
        int rc = find_path(c, acct, prefix, &f, err, errlen);
        if (rc == FOLDERS_ENOTFOUND)
            rc = insert_folder(c, acct, parent_id, prefix + start, prefix, "mail", NULL, &f, err,
                               errlen);
        if (rc != 0)
            return rc;
        snprintf(parent_id, 24, "%lld", f.id);
        start = end + 1;
    }
    return 0;
}

/* ---- create ---- */

int folders_create(PGconn *c, long long account_id, const char *path, enum folder_kind kind,
                   enum folder_role role, struct folder *f_r, char *err, size_t errlen)
{
    char p[FOLDERS_PATH_MAX + 1];
    int rc = folders_path_check(path, p, sizeof p, err, errlen);
    if (rc != 0)
        return rc;
    const char *kname = folders_kind_str(kind);
    if (kname == NULL) {
        set_err(err, errlen, "unknown folder kind");
        return FOLDERS_EINVAL;
    }
    const char *rname = NULL;
    if (role != FOLDER_ROLE_NONE) {
        rname = folders_role_str(role);
        if (rname == NULL) {
            set_err(err, errlen, "unknown folder role");
            return FOLDERS_EINVAL;
        }
        if (folders_role_kind(role) != kind) {
            set_err(err, errlen, "the %s role needs a folder of kind %s", rname,
                    folders_kind_str(folders_role_kind(role)));
            return FOLDERS_EINVAL;
        }
        if (role == FOLDER_ROLE_INBOX && strcmp(p, "INBOX") != 0) {
            set_err(err, errlen, "only the top-level INBOX can have the inbox role");
            return FOLDERS_EINVAL;
        }
    }
    char acct[24], parent[24];
    snprintf(acct, sizeof acct, "%lld", account_id);

    struct db_op op;
    if (db_op_begin(c, &op, err, errlen) != 0)
        return -1;
    struct folder f;
    rc = lock_account(c, acct, err, errlen);
    if (rc != 0)
        goto fail;
    rc = find_path(c, acct, p, NULL, err, errlen);
    if (rc == 0) {
        set_err(err, errlen, "folder %s already exists", p);
        rc = FOLDERS_EEXIST;
        goto fail;
    }
    if (rc != FOLDERS_ENOTFOUND)
        goto fail;
    if (rname != NULL) {
        const char *rp[] = {acct, rname};
        PGresult *r = dir_sql(c, "SELECT path FROM folders WHERE account_id = $1::bigint AND role = $2",
                          2, rp, "cannot look up folder role", NULL, err, errlen);
        if (r == NULL) {
            rc = -1;
            goto fail;
        }
        if (PQntuples(r) > 0) {
            set_err(err, errlen, "the account's %s folder is %s already", rname,
                    PQgetvalue(r, 0, 0));
            PQclear(r);
            rc = FOLDERS_EEXIST;
            goto fail;
        }
        PQclear(r);
    }
    rc = ensure_parents(c, acct, p, parent, err, errlen);
    if (rc != 0)
        goto fail;
    rc = insert_folder(c, acct, parent, p + (parent[0] ? parent_len(p) + 1 : 0), p, kname, rname,
                       &f, err, errlen);
    if (rc != 0)
        goto fail;
    if (db_op_commit(c, &op, err, errlen) != 0) {
        rc = -1;
        goto fail;
    }
    if (f_r != NULL)
        *f_r = f;
    return 0;
fail:
    db_op_abort(c, &op);
    return rc;
}

/* ---- default tree ---- */

/* Languages of the default names, in the column order of default_tree. */
static const char *const default_langs[] = {"en", "de", "fr", "es", "it", "nl"};
#define NLANGS (sizeof default_langs / sizeof default_langs[0])

static const struct {
    enum folder_role role;
    const char *name[NLANGS];
} default_tree[] = {
    /* RFC 3501 §5.1: the INBOX has this name whatever the language. */
    {FOLDER_ROLE_INBOX, {"INBOX", "INBOX", "INBOX", "INBOX", "INBOX", "INBOX"}},
    {FOLDER_ROLE_DRAFTS, {"Drafts", "Entwürfe", "Brouillons", "Borradores", "Bozze", "Concepten"}},
    {FOLDER_ROLE_SENT, {"Sent", "Gesendet", "Envoyés", "Enviados", "Posta inviata", "Verzonden"}},
    {FOLDER_ROLE_TRASH, {"Trash", "Papierkorb", "Corbeille", "Papelera", "Cestino", "Prullenbak"}},
    {FOLDER_ROLE_JUNK,
     {"Junk", "Spam", "Indésirables", "Correo no deseado", "Posta indesiderata", "Ongewenst"}},
    {FOLDER_ROLE_ARCHIVE, {"Archive", "Archiv", "Archives", "Archivo", "Archivio", "Archief"}},
    {FOLDER_ROLE_EVENTS,
     {"Calendar", "Kalender", "Calendrier", "Calendario", "Calendario", "Agenda"}},
    {FOLDER_ROLE_CONTACTS,
     {"Contacts", "Kontakte", "Contacts", "Contactos", "Contatti", "Contactpersonen"}},
    {FOLDER_ROLE_TASKS, {"Tasks", "Aufgaben", "Tâches", "Tareas", "Attività", "Taken"}},
    {FOLDER_ROLE_NOTES, {"Notes", "Notizen", "Notes", "Notas", "Note", "Notities"}},
    {FOLDER_ROLE_JOURNAL, {"Journal", "Journal", "Journal", "Diario", "Diario", "Logboek"}},
    {FOLDER_ROLE_FILES, {"Files", "Dateien", "Fichiers", "Archivos", "File", "Bestanden"}},
};

/* The column of default_tree for a language tag: its primary subtag ("de" of
 * "de-AT" or "de_DE.UTF-8"), ASCII case ignored; English when unknown. */
static size_t lang_index(const char *lang)
{
    if (lang == NULL)
        return 0;
    char primary[9];
    size_t n = 0;
    while (n < sizeof primary - 1 && lang[n] != '\0' && strchr("-_.@", lang[n]) == NULL) {
        primary[n] = lang[n];
        n++;
    }
    primary[n] = '\0';
    for (size_t i = 0; i < NLANGS; i++)
        if (strcasecmp(primary, default_langs[i]) == 0)
            return i;
    return 0;
}

/* The top-level folder whose name equals name ignoring ASCII case: 0 with
 * *f_r, FOLDERS_ENOTFOUND, or -1. Served by folders_sibling_name. */
static int find_top_sibling(PGconn *c, const char *acct, const char *name, struct folder *f_r,
                            char *err, size_t errlen)
{
    const char *p[] = {acct, name};
    PGresult *r = dir_sql(c,
                      "SELECT " FOLDER_COLS " FROM folders f WHERE f.account_id = $1::bigint"
                      " AND COALESCE(f.parent_id, 0) = 0"
                      " AND lower(f.name) = lower($2::text COLLATE \"C\")",
                      2, p, "cannot look up folder", NULL, err, errlen);
    if (r == NULL)
        return -1;
    int n = PQntuples(r);
    if (n > 0)
        fill_folder(f_r, r, 0);
    PQclear(r);
    return n > 0 ? 0 : FOLDERS_ENOTFOUND;
}

/* Gives the default folder for role to the account: adopts a role-less
 * top-level folder of that name and kind, or creates one under the first
 * free name of name, "name 2", ... "name 9". Returns 1 when it did, -1 or
 * FOLDERS_EEXIST when every name is taken. */
static int default_one(PGconn *c, long long account_id, const char *acct, enum folder_role role,
                       const char *name, char *err, size_t errlen)
{
    const char *kname = folders_kind_str(folders_role_kind(role));
    const char *rname = folders_role_str(role);
    for (int i = 1; i <= 9; i++) {
        char cand[FOLDERS_NAME_MAX + 1];
        if (i == 1)
            snprintf(cand, sizeof cand, "%s", name);
        else
            snprintf(cand, sizeof cand, "%s %d", name, i);
        struct folder f;
        int rc = find_top_sibling(c, acct, cand, &f, err, errlen);
        if (rc == FOLDERS_ENOTFOUND) {
            rc = insert_folder(c, acct, "", cand, cand, kname, rname, NULL, err, errlen);
            return rc == 0 ? 1 : rc;
        }
        if (rc != 0)
            return rc;
        if (f.role == FOLDER_ROLE_NONE && f.kind == folders_role_kind(role)) {
            char m[24], id[24];
            rc = next_modseq(c, account_id, m, err, errlen);
            if (rc != 0)
                return rc;
            snprintf(id, sizeof id, "%lld", f.id);
            const char *p[] = {id, rname, m};
            PGresult *r = dir_sql(c,
                              "UPDATE folders SET role = $2, highest_modseq = $3::bigint"
                              " WHERE id = $1::bigint",
                              3, p, "cannot set folder role", NULL, err, errlen);
            if (r == NULL)
                return -1;
            PQclear(r);
            return 1;
        }
    }
    set_err(err, errlen, "no free name for the %s folder", rname);
    return FOLDERS_EEXIST;
}

int folders_create_defaults(PGconn *c, long long account_id, const char *lang)
{
    char err[256];
    char acct[24];
    snprintf(acct, sizeof acct, "%lld", account_id);
    size_t li = lang_index(lang);

    struct db_op op;
    if (db_op_begin(c, &op, err, sizeof err) != 0)
        return -1;
    int rc = lock_account(c, acct, err, sizeof err);
    if (rc != 0)
        goto fail;
    PGresult *r =
        dir_sql(c, "SELECT role FROM folders WHERE account_id = $1::bigint AND role IS NOT NULL", 1,
            (const char *const[]){acct}, "cannot read folder roles", NULL, err, sizeof err);
    if (r == NULL) {
        rc = -1;
        goto fail;
    }
    bool have[sizeof role_names / sizeof role_names[0]] = {false};
    for (int i = 0; i < PQntuples(r); i++) {
        enum folder_role role;
        if (folders_role_parse(PQgetvalue(r, i, 0), &role) == 0)
            have[role] = true;
    }
    PQclear(r);

    int made = 0;
    for (size_t i = 0; i < sizeof default_tree / sizeof default_tree[0]; i++) {
        if (have[default_tree[i].role])
            continue;
        rc = default_one(c, account_id, acct, default_tree[i].role, default_tree[i].name[li], err,
                         sizeof err);
        if (rc < 0)
            goto fail;
        made += rc;
    }
    if (db_op_commit(c, &op, err, sizeof err) != 0) {
        rc = -1;
        goto fail;
    }
    return made;
fail:
    db_op_abort(c, &op);
    return rc;
}

/* ---- lookups ---- */

int folders_find_path(PGconn *c, long long account_id, const char *path, struct folder *f_r)
{
    char p[FOLDERS_PATH_MAX + 1], acct[24];
    if (folders_path_check(path, p, sizeof p, NULL, 0) != 0)
        return FOLDERS_ENOTFOUND;
    snprintf(acct, sizeof acct, "%lld", account_id);
    return find_path(c, acct, p, f_r, NULL, 0);
}

/* Runs a query for at most one folder with one parameter. */
static int find_one(PGconn *c, const char *sql, int n, const char *const *params,
                    struct folder *f_r)
{
    PGresult *r = dir_sql(c, sql, n, params, "cannot look up folder", NULL, NULL, 0);
    if (r == NULL)
        return -1;
    int rows = PQntuples(r);
    if (rows > 0 && f_r != NULL)
        fill_folder(f_r, r, 0);
    PQclear(r);
    return rows > 0 ? 0 : FOLDERS_ENOTFOUND;
}

int folders_find_role(PGconn *c, long long account_id, enum folder_role role, struct folder *f_r)
{
    const char *rname = folders_role_str(role);
    if (rname == NULL)
        return FOLDERS_ENOTFOUND;
    char acct[24];
    snprintf(acct, sizeof acct, "%lld", account_id);
    const char *p[] = {acct, rname};
    return find_one(c,
                    "SELECT " FOLDER_COLS " FROM folders f"
                    " WHERE f.account_id = $1::bigint AND f.role = $2",
                    2, p, f_r);
}

int folders_get(PGconn *c, long long folder_id, struct folder *f_r)
{
    char id[24];
    snprintf(id, sizeof id, "%lld", folder_id);
    const char *p[] = {id};
    return find_one(c, "SELECT " FOLDER_COLS " FROM folders f WHERE f.id = $1::bigint", 1, p, f_r);
}

/* ---- rename ---- */

int folders_rename(PGconn *c, long long account_id, const char *old_path, const char *new_path,
                   char *err, size_t errlen)
{
    char from[FOLDERS_PATH_MAX + 1], to[FOLDERS_PATH_MAX + 1];
    int rc = folders_path_check(old_path, from, sizeof from, err, errlen);
    if (rc != 0)
        return rc;
    rc = folders_path_check(new_path, to, sizeof to, err, errlen);
    if (rc != 0)
        return rc;
    size_t fl = strlen(from), tl = strlen(to);
    if (strcmp(from, to) == 0) {
        set_err(err, errlen, "folder %s already exists", to);
        return FOLDERS_EEXIST;
    }
    if (tl > fl && memcmp(to, from, fl) == 0 && to[fl] == '/') {
        set_err(err, errlen, "cannot move %s under itself", from);
        return FOLDERS_EINVAL;
    }
    char acct[24], src[24], parent[24], m[24];
    snprintf(acct, sizeof acct, "%lld", account_id);

    struct db_op op;
    if (db_op_begin(c, &op, err, errlen) != 0)
        return -1;
    PGresult *r;
    struct folder f;
    rc = lock_account(c, acct, err, errlen);
    if (rc != 0)
        goto fail;
    rc = find_path(c, acct, from, &f, err, errlen);
    if (rc != 0)
        goto fail;
    snprintf(src, sizeof src, "%lld", f.id);
    rc = find_path(c, acct, to, NULL, err, errlen);
    if (rc == 0) {
        set_err(err, errlen, "folder %s already exists", to);
        rc = FOLDERS_EEXIST;
        goto fail;
    }
    if (rc != FOLDERS_ENOTFOUND)
        goto fail;

    /* The deepest and the longest path of the subtree must still fit. */
    const char *sp[] = {acct, from, src};
    r = dir_sql(c,
            "SELECT max(octet_length(f.path)), max(cardinality(string_to_array(f.path, '/')))"
            " FROM folders f WHERE " SUBTREE_OF,
            3, sp, "cannot measure the subtree", NULL, err, errlen);
    if (r == NULL) {
        rc = -1;
        goto fail;
    }
    long long longest = cell_ll(r, 0, 0), deepest = cell_ll(r, 0, 1);
    PQclear(r);
    if (longest - (long long)fl + (long long)tl > FOLDERS_PATH_MAX) {
        set_err(err, errlen, "the move would make a folder path longer than %d bytes",
                FOLDERS_PATH_MAX);
        rc = FOLDERS_EINVAL;
        goto fail;
    }
    if (deepest - (long long)path_depth(from) + (long long)path_depth(to) > FOLDERS_DEPTH_MAX) {
        set_err(err, errlen, "the move would make a folder path deeper than %d levels",
                FOLDERS_DEPTH_MAX);
        rc = FOLDERS_EINVAL;
        goto fail;
    }

    rc = ensure_parents(c, acct, to, parent, err, errlen);
    if (rc != 0)
        goto fail;
    rc = next_modseq(c, account_id, m, err, errlen);
    if (rc != 0)
        goto fail;

    /* The folder itself, then the paths below it. The sibling-name index
     * catches a name that differs from an existing one only in case. */
    const char *leaf = to + (parent[0] ? parent_len(to) + 1 : 0);
    const char *up[] = {src, parent[0] ? parent : NULL, leaf, to, m};
    PGresult *failed = NULL;
    r = dir_sql(c,
            "UPDATE folders SET parent_id = $2::bigint, name = $3, path = $4,"
            " highest_modseq = $5::bigint WHERE id = $1::bigint",
            5, up, "cannot rename folder", &failed, err, errlen);
    if (r == NULL) {
        rc = -1;
        if (db_sqlstate_is(failed, "23505")) {
            set_err(err, errlen, "a folder named like %s (differing only in case) exists", to);
            rc = FOLDERS_EEXIST;
        }
        PQclear(failed);
        goto fail;
    }
    PQclear(r);
    /* The folder has left the range already, so only its descendants match
     * (no id given). substr() counts characters; the old prefix is a whole
     * number of them. */
    const char *dp[] = {acct, from, "0", to, m};
    r = dir_sql(c,
            "UPDATE folders f SET path = $4::text || substr(f.path, char_length($2::text) + 1),"
            " highest_modseq = $5::bigint WHERE " SUBTREE_OF,
            5, dp, "cannot rename subfolders", NULL, err, errlen);
    if (r == NULL) {
        rc = -1;
        goto fail;
    }
    PQclear(r);
    if (db_op_commit(c, &op, err, errlen) != 0) {
        rc = -1;
        goto fail;
    }
    return 0;
fail:
    db_op_abort(c, &op);
    return rc;
}

/* ---- delete ---- */

int folders_delete(PGconn *c, long long account_id, const char *path, char *err, size_t errlen)
{
    char p[FOLDERS_PATH_MAX + 1];
    if (folders_path_check(path, p, sizeof p, err, errlen) != 0)
        return FOLDERS_ENOTFOUND;
    char acct[24], src[24], m[24];
    snprintf(acct, sizeof acct, "%lld", account_id);

    struct db_op op;
    if (db_op_begin(c, &op, err, errlen) != 0)
        return -1;
    PGresult *r;
    struct folder f;
    int rc = lock_account(c, acct, err, errlen);
    if (rc != 0)
        goto fail;
    rc = find_path(c, acct, p, &f, err, errlen);
    if (rc != 0)
        goto fail;
    snprintf(src, sizeof src, "%lld", f.id);
    const char *sp[] = {acct, p, src};
    r = dir_sql(c, "SELECT f.path FROM folders f WHERE " SUBTREE_OF " AND f.role = 'inbox'", 3, sp,
            "cannot look at the subtree", NULL, err, errlen);
    if (r == NULL) {
        rc = -1;
        goto fail;
    }
    if (PQntuples(r) > 0) {
        set_err(err, errlen, "cannot delete the INBOX (%s)", PQgetvalue(r, 0, 0));
        PQclear(r);
        rc = FOLDERS_EINVAL;
        goto fail;
    }
    PQclear(r);
    rc = next_modseq(c, account_id, m, err, errlen);
    if (rc != 0)
        goto fail;

    /* One tombstone per folder, all at this modseq; then the rows (their
     * content goes with them through ON DELETE CASCADE). */
    const char *tp[] = {acct, p, src, m};
    r = dir_sql(c,
            "INSERT INTO tombstones (account_id, modseq, object_kind, object_id, folder_id)"
            " SELECT f.account_id, $4::bigint, 'folder', f.id, f.parent_id FROM folders f"
            " WHERE " SUBTREE_OF,
            4, tp, "cannot record the deletion", NULL, err, errlen);
    if (r == NULL) {
        rc = -1;
        goto fail;
    }
    PQclear(r);
    r = dir_sql(c, "DELETE FROM folders f WHERE " SUBTREE_OF, 3, sp, "cannot delete folder", NULL, err,
            errlen);
    if (r == NULL) {
        rc = -1;
        goto fail;
    }
    PQclear(r);
    if (db_op_commit(c, &op, err, errlen) != 0) {
        rc = -1;
        goto fail;
    }
    return 0;
fail:
    db_op_abort(c, &op);
    return rc;
}

/* ---- listing ---- */

struct folder_each {
    folders_cb cb;
    void *ctx;
};

static int folder_row(const PGresult *r, int row, void *arg)
{
    const struct folder_each *e = arg;
    struct folder f;
    fill_folder(&f, r, row);
    return e->cb(&f, e->ctx);
}

int folders_list(PGconn *c, long long account_id, folders_cb cb, void *ctx, char *err,
                 size_t errlen)
{
    if (cb == NULL) {
        set_err(err, errlen, "folders_list: no callback");
        return -1;
    }
    char acct[24];
    snprintf(acct, sizeof acct, "%lld", account_id);
    const char *p[] = {acct};
    struct folder_each e = {cb, ctx};
    /* Arrays of names compare name by name: depth first, parent first. */
    return dir_sql_each(c,
                      "SELECT " FOLDER_COLS " FROM folders f WHERE f.account_id = $1::bigint"
                      " ORDER BY string_to_array(f.path, '/')",
                      1, p, folder_row, &e, "cannot list folders", err, errlen);
}

/* ---- subscriptions ---- */

int folders_subscribe(PGconn *c, long long account_id, long long folder_id, bool on)
{
    char acct[24], id[24];
    snprintf(acct, sizeof acct, "%lld", account_id);
    snprintf(id, sizeof id, "%lld", folder_id);
    const char *p[] = {acct, id};
    PGresult *failed = NULL;
    PGresult *r;
    if (on)
        r = dir_sql(c,
                "INSERT INTO subscriptions (account_id, folder_id)"
                " VALUES ($1::bigint, $2::bigint) ON CONFLICT DO NOTHING",
                2, p, "cannot subscribe", &failed, NULL, 0);
    else
        r = dir_sql(c,
                "WITH d AS (DELETE FROM subscriptions"
                "  WHERE account_id = $1::bigint AND folder_id = $2::bigint)"
                " SELECT 1 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1::bigint)"
                " AND EXISTS (SELECT 1 FROM folders WHERE id = $2::bigint)",
                2, p, "cannot unsubscribe", &failed, NULL, 0);
    if (r == NULL) {
        int rc = db_sqlstate_is(failed, "23503") ? FOLDERS_ENOTFOUND : -1;
        PQclear(failed);
        return rc;
    }
    int rc = (!on && PQntuples(r) == 0) ? FOLDERS_ENOTFOUND : 0;
    PQclear(r);
    return rc;
}

int folders_subscriptions(PGconn *c, long long account_id, folders_cb cb, void *ctx)
{
    if (cb == NULL)
        return -1;
    char acct[24];
    snprintf(acct, sizeof acct, "%lld", account_id);
    const char *p[] = {acct};
    struct folder_each e = {cb, ctx};
    return dir_sql_each(c,
                      "SELECT " FOLDER_COLS " FROM subscriptions s JOIN folders f"
                      " ON f.id = s.folder_id WHERE s.account_id = $1::bigint"
                      " ORDER BY f.account_id <> $1::bigint, f.account_id,"
                      " string_to_array(f.path, '/')",
                      1, p, folder_row, &e, "cannot list subscriptions", NULL, 0);
}
