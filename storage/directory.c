/* The directory: domains, domain aliases and accounts (migration 0001).
 *
 * Input is validated in C before any SQL runs, so the database only ever sees
 * well-formed names; the CHECK constraints in the migration repeat the
 * essentials for rows written by other means. Password hashing (slow by
 * design) happens before a transaction opens, never while one holds locks.
 *
 * Case: domain names are folded to lower case here and stored that way.
 * Local parts are ASCII, stored as given and matched by lower(local_part),
 * which the unique index accounts_domain_local serves; the lookup value is
 * folded here so the query compares against the indexed expression directly.
 *
 * A domain is named either by its own name or by one of its aliases; the
 * DIR_DOMAIN_ID_OF fragment (directory.h) resolves either to the domain's id.
 *
 * The same namespace holds accounts and their aliases (storage/aliases.c),
 * and domains and domain aliases: no constraint spans the two tables of each
 * pair, so whoever claims a name takes its advisory lock (dir_lock_name)
 * before checking the other table. The helpers at the top of this file are
 * shared with the other directory modules (aliases, groups, quota, policy).
 * Every write ends with dircache_directory_changed() once committed.
 */
#include "proto/text/utf8.h"
#include "storage/directory.h"
#include "storage/folders.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/db.h"
#include "storage/dircache.h"
#include "storage/password.h"

/* A yescrypt hash at libcrypt's default cost of a password nobody knows.
 * dir_authenticate() verifies against it when the account does not exist, so
 * an unknown login costs as much time as a known one. */
static const char dummy_hash[] =
    "$y$j9T$UcHWpgfY7f.RDvA3ipBzf.$r2Gzgnru08zr/F2D3O1RVC0fb0obBLrd0QTLoR9jsUC";

void dir_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- validation ---- */

static char ascii_lower(char ch)
{
    return (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
}

int dir_domain_name_check(const char *name, char *out, size_t outlen, char *err, size_t errlen)
{
    if (name == NULL || name[0] == '\0') {
        dir_set_err(err, errlen, "domain name is empty");
        return -1;
    }
    size_t n = strnlen(name, DIR_DOMAIN_MAX + 1);
    if (n > DIR_DOMAIN_MAX) {
        dir_set_err(err, errlen, "domain name is longer than %d characters", DIR_DOMAIN_MAX);
        return -1;
    }
    char buf[DIR_DOMAIN_MAX + 1];
    size_t labels = 0, start = 0;
    bool all_digits = true;
    for (size_t i = 0; i <= n; i++) {
        char ch = i < n ? ascii_lower(name[i]) : '.';
        if (i < n)
            buf[i] = ch;
        if (ch == '.') {
            size_t len = i - start;
            if (len == 0) {
                dir_set_err(err, errlen, "domain name has an empty label");
                return -1;
            }
            if (len > DIR_LABEL_MAX) {
                dir_set_err(err, errlen, "domain name has a label longer than %d characters",
                            DIR_LABEL_MAX);
                return -1;
            }
            /* RFC 952/1123: letters, digits, hyphens; no hyphen at either end. */
            if (buf[start] == '-' || buf[i - 1] == '-') {
                dir_set_err(err, errlen, "domain name label starts or ends with a hyphen");
                return -1;
            }
            labels++;
            start = i + 1;
            if (i < n)
                all_digits = true;
            continue;
        }
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-')) {
            dir_set_err(err, errlen, "domain name may hold only letters, digits, hyphens and dots");
            return -1;
        }
        if (!(ch >= '0' && ch <= '9'))
            all_digits = false;
    }
    buf[n] = '\0';
    if (labels < 2) {
        dir_set_err(err, errlen, "domain name needs at least one dot");
        return -1;
    }
    /* RFC 3696 §2: a top-level domain is never all-numeric. */
    if (all_digits) {
        dir_set_err(err, errlen, "domain name ends in an all-numeric label");
        return -1;
    }
    if (out != NULL) {
        if (outlen <= n) {
            dir_set_err(err, errlen, "domain name buffer too small");
            return -1;
        }
        memcpy(out, buf, n + 1);
    }
    return 0;
}

/* RFC 5322 §3.2.3 atext. */
static bool is_atext(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    return ch != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", ch) != NULL;
}

int dir_local_part_check(const char *local, char *err, size_t errlen)
{
    if (local == NULL || local[0] == '\0') {
        dir_set_err(err, errlen, "local part is empty");
        return -1;
    }
    size_t n = strnlen(local, DIR_LOCAL_PART_MAX + 1);
    if (n > DIR_LOCAL_PART_MAX) {
        dir_set_err(err, errlen, "local part is longer than %d characters", DIR_LOCAL_PART_MAX);
        return -1;
    }
    /* RFC 5321 §4.1.2: Dot-string = Atom *("." Atom). */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)local[i];
        if (ch == '.') {
            if (i == 0 || i == n - 1 || local[i - 1] == '.') {
                dir_set_err(err, errlen, "local part has a leading, trailing or double dot");
                return -1;
            }
        } else if (!is_atext(ch)) {
            dir_set_err(err, errlen, "local part holds a character not allowed in an address");
            return -1;
        }
    }
    return 0;
}

/* RFC 3629 UTF-8 without control characters (C0 and DEL). */
static bool text_ok(const char *s, size_t n)
{
    return utf8_check(s, n, UTF8_NO_C0);
}

/* Splits and validates local@domain. local_r receives the local part as
 * given, lower_r the same folded to lower case (the lookup key), domain_r
 * the lower-cased domain. */
static int parse_address(const char *address, char local_r[DIR_LOCAL_PART_MAX + 1],
                         char lower_r[DIR_LOCAL_PART_MAX + 1], char domain_r[DIR_DOMAIN_MAX + 1],
                         char *err, size_t errlen)
{
    if (address == NULL || address[0] == '\0') {
        dir_set_err(err, errlen, "address is empty");
        return -1;
    }
    size_t n = strnlen(address, DIR_ADDRESS_SIZE);
    if (n >= DIR_ADDRESS_SIZE) {
        dir_set_err(err, errlen, "address is too long");
        return -1;
    }
    const char *at = memchr(address, '@', n);
    if (at == NULL) {
        dir_set_err(err, errlen, "address must have the form local@domain");
        return -1;
    }
    size_t ll = (size_t)(at - address);
    if (ll == 0 || ll > DIR_LOCAL_PART_MAX) {
        dir_set_err(err, errlen, "local part must be 1 to %d characters", DIR_LOCAL_PART_MAX);
        return -1;
    }
    memcpy(local_r, address, ll);
    local_r[ll] = '\0';
    if (dir_local_part_check(local_r, err, errlen) != 0)
        return -1;
    /* A second '@' lands in the domain part and fails its check there. */
    if (dir_domain_name_check(at + 1, domain_r, DIR_DOMAIN_MAX + 1, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i <= ll; i++)
        lower_r[i] = ascii_lower(local_r[i]);
    return 0;
}

int dir_address_parse(const char *address, struct dir_address *a_r, char *err, size_t errlen)
{
    return parse_address(address, a_r->local, a_r->lower, a_r->domain, err, errlen);
}

static int kind_check(const char *kind, char *err, size_t errlen)
{
    if (strcmp(kind, "user") == 0 || strcmp(kind, "group") == 0 || strcmp(kind, "resource") == 0)
        return 0;
    dir_set_err(err, errlen, "account kind must be user, group or resource");
    return -1;
}

/* ---- results ---- */

static void copy_cell(char *dst, size_t cap, const PGresult *r, int row, int col)
{
    snprintf(dst, cap, "%s", PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

void dir_fill_account(struct dir_account *a, const PGresult *r, int row, int first)
{
    memset(a, 0, sizeof *a);
    a->id = strtoll(PQgetvalue(r, row, first), NULL, 10);
    /* The CHECK constraints bound both parts to 64 + 1 + 253 < DIR_ADDRESS_SIZE. */
    snprintf(a->address, sizeof a->address, "%s@%s", PQgetvalue(r, row, first + 1),
             PQgetvalue(r, row, first + 2));
    copy_cell(a->kind, sizeof a->kind, r, row, first + 3);
    copy_cell(a->full_name, sizeof a->full_name, r, row, first + 4);
    a->disabled = PQgetvalue(r, row, first + 5)[0] == 't';
    a->is_admin = PQgetvalue(r, row, first + 6)[0] == 't';
}

int dir_sql_each(PGconn *c, const char *sql, int nparams, const char *const *params,
                 int (*fn)(const PGresult *r, int row, void *arg), void *arg, const char *what,
                 char *err, size_t errlen)
{
    if (!PQsendQueryParams(c, sql, nparams, NULL, params, NULL, NULL, 0)) {
        db_set_error(err, errlen, c, NULL, what);
        return -1;
    }
    /* If single-row mode cannot be set the whole result arrives at once in
     * PGRES_TUPLES_OK, which the loop below handles the same way. */
    (void)PQsetSingleRowMode(c);
    int rc = 0;
    bool stop = false;
    PGresult *r;
    while ((r = PQgetResult(c)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE || st == PGRES_TUPLES_OK) {
            int nt = PQntuples(r);
            for (int i = 0; i < nt && !stop && rc == 0; i++)
                if (fn(r, i, arg) != 0)
                    stop = true;
        } else if (rc == 0) {
            db_set_error(err, errlen, c, r, what);
            rc = -1;
        }
        PQclear(r);
    }
    return rc;
}

PGresult *dir_sql(PGconn *c, const char *sql, int nparams, const char *const *params,
                  const char *what, PGresult **failed_r, char *err, size_t errlen)
{
    PGresult *r = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
    if (db_ok(r))
        return r;
    db_set_error(err, errlen, c, r, what);
    if (failed_r != NULL)
        *failed_r = r;
    else
        PQclear(r);
    return NULL;
}

/* ---- transactions and name locks ---- */

int dir_tx_begin(PGconn *c, char *err, size_t errlen)
{
    if (db_begin(c) != 0) {
        if (PQtransactionStatus(c) == PQTRANS_INTRANS || PQtransactionStatus(c) == PQTRANS_INERROR)
            dir_set_err(err, errlen, "cannot begin: a transaction is already open");
        else
            db_set_error(err, errlen, c, NULL, "cannot begin");
        return -1;
    }
    return 0;
}

int dir_tx_end(PGconn *c, int rc, bool wrote, char *err, size_t errlen)
{
    if (rc != 0) {
        db_rollback(c);
        return rc;
    }
    if (db_commit(c) != 0) {
        db_set_error(err, errlen, c, NULL, "cannot commit");
        db_rollback(c);
        return -1;
    }
    if (wrote)
        dircache_directory_changed();
    return 0;
}

int dir_lock_name(PGconn *c, const char *name, char *err, size_t errlen)
{
    char cls[16];
    snprintf(cls, sizeof cls, "%d", DIR_NAME_LOCK_CLASS);
    const char *p[] = {cls, name};
    PGresult *r = dir_sql(c, "SELECT pg_advisory_xact_lock($1::integer, hashtext($2))", 2, p,
                          "cannot lock name", NULL, err, errlen);
    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

/* ---- domains ---- */

int dir_domain_add(PGconn *c, const char *name, char *err, size_t errlen)
{
    char dom[DIR_DOMAIN_MAX + 1];
    if (dir_domain_name_check(name, dom, sizeof dom, err, errlen) != 0)
        return -1;
    const char *p[] = {dom};

    if (db_begin(c) != 0) {
        db_set_error(err, errlen, c, NULL, "cannot begin");
        return -1;
    }
    /* The same lock dir_domain_alias_add() takes: an alias of the same name
     * cannot appear between the check below and the insert. */
    if (dir_lock_name(c, dom, err, errlen) != 0)
        goto fail;
    PGresult *r = dir_sql(c,
                          "SELECT d.name FROM domain_aliases a JOIN domains d ON d.id = a.domain_id"
                          " WHERE a.name = $1",
                          1, p, "cannot look up domain aliases", NULL, err, errlen);
    if (r == NULL)
        goto fail;
    if (PQntuples(r) > 0) {
        dir_set_err(err, errlen, "domain %s already exists as an alias of %s", dom,
                    PQgetvalue(r, 0, 0));
        PQclear(r);
        db_rollback(c);
        return DIR_EEXIST;
    }
    PQclear(r);

    /* ON CONFLICT also covers a concurrent add of the same name. */
    r = dir_sql(c,
                "INSERT INTO domains (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id",
                1, p, "cannot add domain", NULL, err, errlen);
    if (r == NULL)
        goto fail;
    int added = PQntuples(r);
    PQclear(r);
    if (added == 0) {
        dir_set_err(err, errlen, "domain %s already exists", dom);
        db_rollback(c);
        return DIR_EEXIST;
    }
    if (db_commit(c) != 0) {
        db_set_error(err, errlen, c, NULL, "cannot commit");
        goto fail;
    }
    dircache_directory_changed();
    return 0;
fail:
    db_rollback(c);
    return -1;
}

int dir_domain_delete(PGconn *c, const char *name, bool force, char *err, size_t errlen)
{
    char dom[DIR_DOMAIN_MAX + 1];
    if (dir_domain_name_check(name, dom, sizeof dom, err, errlen) != 0)
        return -1;
    const char *p[] = {dom};

    if (db_begin(c) != 0) {
        db_set_error(err, errlen, c, NULL, "cannot begin");
        return -1;
    }
    /* FOR UPDATE conflicts with the key-share lock an account insert takes on
     * its domain, so no account can slip in between the count and the delete. */
    PGresult *r = dir_sql(c, "SELECT id FROM domains WHERE name = $1 FOR UPDATE", 1, p,
                          "cannot look up domain", NULL, err, errlen);
    if (r == NULL)
        goto fail;
    if (PQntuples(r) == 0) {
        PQclear(r);
        dir_set_err(err, errlen, "unknown domain %s", dom);
        db_rollback(c);
        return DIR_ENOTFOUND;
    }
    char id[24];
    snprintf(id, sizeof id, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    const char *idp[] = {id};

    if (!force) {
        r = dir_sql(c, "SELECT count(*) FROM accounts WHERE domain_id = $1::bigint", 1, idp,
                    "cannot count accounts", NULL, err, errlen);
        if (r == NULL)
            goto fail;
        long long count = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        if (count > 0) {
            dir_set_err(err, errlen, "domain %s still has %lld account%s; force deletes them too",
                        dom, count, count == 1 ? "" : "s");
            db_rollback(c);
            return DIR_ENOTEMPTY;
        }
    }
    /* Aliases and accounts go with it (ON DELETE CASCADE), and with them
     * everything that hangs off an account; group memberships of the domain
     * and its accounts are removed by the triggers of migration 0002. */
    r = dir_sql(c, "DELETE FROM domains WHERE id = $1::bigint", 1, idp, "cannot delete domain",
                NULL, err, errlen);
    if (r == NULL)
        goto fail;
    PQclear(r);
    if (db_commit(c) != 0) {
        db_set_error(err, errlen, c, NULL, "cannot commit");
        goto fail;
    }
    dircache_directory_changed();
    return 0;
fail:
    db_rollback(c);
    return -1;
}

int dir_domain_lookup(PGconn *c, const char *name, long long *id_r, char name_r[DIR_DOMAIN_MAX + 1],
                      char *err, size_t errlen)
{
    char dom[DIR_DOMAIN_MAX + 1];
    if (dir_domain_name_check(name, dom, sizeof dom, err, errlen) != 0)
        return DIR_ENOTFOUND;
    const char *p[] = {dom};
    PGresult *r = dir_sql(c, "SELECT id, name FROM domains WHERE id = " DIR_DOMAIN_ID_OF("$1"), 1,
                          p, "cannot look up domain", NULL, err, errlen);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        dir_set_err(err, errlen, "unknown domain %s", dom);
        return DIR_ENOTFOUND;
    }
    if (id_r != NULL)
        *id_r = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    if (name_r != NULL)
        snprintf(name_r, DIR_DOMAIN_MAX + 1, "%s", PQgetvalue(r, 0, 1));
    PQclear(r);
    return 0;
}

struct domain_each {
    dir_domain_cb cb;
    void *ctx;
};

static int domain_row(const PGresult *r, int row, void *arg)
{
    const struct domain_each *e = arg;
    return e->cb(PQgetvalue(r, row, 0), e->ctx);
}

int dir_domain_list(PGconn *c, dir_domain_cb cb, void *ctx, char *err, size_t errlen)
{
    if (cb == NULL) {
        dir_set_err(err, errlen, "dir_domain_list: no callback");
        return -1;
    }
    struct domain_each e = {cb, ctx};
    return dir_sql_each(c, "SELECT name FROM domains ORDER BY name", 0, NULL, domain_row, &e,
                        "cannot list domains", err, errlen);
}

/* ---- accounts ---- */

/* The insert of dir_account_add() and dir_account_create(), inside the
 * caller's transaction. key is the lower-cased address; p holds domain, local
 * part, kind, full name, hash, verifier and is_admin. The new id goes to
 * *id_r when not NULL. */
static int account_insert(PGconn *c, const char *key, const char *const *p, long long *id_r,
                          char *err, size_t errlen)
{
    /* An alias of the same address cannot be added between the check and
     * the insert: dir_alias_add() takes the same lock. */
    if (dir_lock_name(c, key, err, errlen) != 0)
        return -1;
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

    /* One statement: the domain lookup and the insert happen atomically. */
    PGresult *failed = NULL;
    r = dir_sql(c,
                "INSERT INTO accounts (domain_id, local_part, kind, full_name,"
                " password_hash, scram_sha256, is_admin)"
                " SELECT d.id, $2, $3, $4, $5, $6, $7::boolean FROM domains d"
                " WHERE d.name = $1 RETURNING id",
                7, p, "cannot add account", &failed, err, errlen);
    if (r == NULL) {
        int rc = -1;
        if (db_sqlstate_is(failed, "23505")) { /* unique_violation */
            dir_set_err(err, errlen, "account %s@%s already exists", p[1], p[0]);
            rc = DIR_EEXIST;
        } else if (db_sqlstate_is(failed, "23503")) { /* domain deleted meanwhile */
            dir_set_err(err, errlen, "unknown domain %s", p[0]);
            rc = DIR_ENOTFOUND;
        }
        PQclear(failed);
        return rc;
    }
    int added = PQntuples(r);
    if (added > 0 && id_r != NULL)
        *id_r = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    if (added == 0) {
        dir_set_err(err, errlen, "unknown domain %s", p[0]);
        return DIR_ENOTFOUND;
    }
    return 0;
}

/* Validates kind and full name for an account insert. */
static int account_fields_check(const char *kind, const char *full_name, char *err, size_t errlen)
{
    if (kind_check(kind, err, errlen) != 0)
        return -1;
    size_t fl = strnlen(full_name, DIR_FULL_NAME_MAX + 1);
    if (fl > DIR_FULL_NAME_MAX) {
        dir_set_err(err, errlen, "full name is longer than %d bytes", DIR_FULL_NAME_MAX);
        return -1;
    }
    if (!text_ok(full_name, fl)) {
        dir_set_err(err, errlen, "full name must be UTF-8 without control characters");
        return -1;
    }
    return 0;
}

/* Every account starts with its default folder tree (INBOX, Sent, Calendar, ...),
 * created in the same transaction: an account never exists without an INBOX. */
static int default_folders(PGconn *c, long long account_id, char *err, size_t errlen)
{
    if (folders_create_defaults(c, account_id, "en") < 0) {
        dir_set_err(err, errlen, "cannot create the default folders");
        return -1;
    }
    return 0;
}

int dir_account_add(PGconn *c, const char *address, const char *kind, const char *password,
                    const char *full_name, bool is_admin, char *err, size_t errlen)
{
    char local[DIR_LOCAL_PART_MAX + 1], lower[DIR_LOCAL_PART_MAX + 1], dom[DIR_DOMAIN_MAX + 1];
    if (parse_address(address, local, lower, dom, err, errlen) != 0)
        return -1;
    if (kind == NULL)
        kind = "user";
    if (full_name == NULL)
        full_name = "";
    if (account_fields_check(kind, full_name, err, errlen) != 0)
        return -1;

    char hash[PASSWORD_HASH_MAX], scram[PASSWORD_SCRAM_MAX];
    const char *hashp = NULL, *scramp = NULL;
    if (password != NULL) {
        if (password_check(password, err, errlen) != 0)
            return -1;
        if (password_hash(password, hash, sizeof hash) != 0 ||
            password_scram_make(password, 0, scram, sizeof scram) != 0) {
            dir_set_err(err, errlen, "cannot hash the password");
            return -1;
        }
        hashp = hash;
        scramp = scram;
    }

    char key[DIR_ADDRESS_SIZE];
    snprintf(key, sizeof key, "%s@%s", lower, dom);
    const char *p[] = {dom, local, kind, full_name, hashp, scramp, is_admin ? "t" : "f"};
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    long long id;
    int rc = account_insert(c, key, p, &id, err, errlen);
    if (rc == 0)
        rc = default_folders(c, id, err, errlen);
    return dir_tx_end(c, rc, true, err, errlen);
}

int dir_account_create(PGconn *c, const char *address, const char *kind, const char *full_name,
                       long long *id_r, char *err, size_t errlen)
{
    char local[DIR_LOCAL_PART_MAX + 1], lower[DIR_LOCAL_PART_MAX + 1], dom[DIR_DOMAIN_MAX + 1];
    if (parse_address(address, local, lower, dom, err, errlen) != 0)
        return -1;
    if (full_name == NULL)
        full_name = "";
    if (kind == NULL || account_fields_check(kind, full_name, err, errlen) != 0) {
        if (kind == NULL)
            dir_set_err(err, errlen, "no account kind");
        return -1;
    }
    char key[DIR_ADDRESS_SIZE];
    snprintf(key, sizeof key, "%s@%s", lower, dom);
    const char *p[] = {dom, local, kind, full_name, NULL, NULL, "f"};
    long long id;
    int rc = account_insert(c, key, p, &id, err, errlen);
    if (rc == 0)
        rc = default_folders(c, id, err, errlen);
    if (rc == 0 && id_r != NULL)
        *id_r = id;
    return rc;
}

/* Runs an UPDATE or DELETE on the account named by $1 (lower-cased local
 * part) and $2 (domain or alias) plus extra parameters; DIR_ENOTFOUND when it
 * touched no row. */
static int account_change(PGconn *c, const char *address, const char *sql, int nextra,
                          const char *const *extra, const char *what, char *err, size_t errlen)
{
    char local[DIR_LOCAL_PART_MAX + 1], lower[DIR_LOCAL_PART_MAX + 1], dom[DIR_DOMAIN_MAX + 1];
    if (parse_address(address, local, lower, dom, err, errlen) != 0)
        return -1;
    const char *p[4] = {lower, dom, NULL, NULL};
    if (nextra < 0 || nextra > 2)
        return -1;
    for (int i = 0; i < nextra; i++)
        p[2 + i] = extra[i];
    PGresult *r = dir_sql(c, sql, 2 + nextra, p, what, NULL, err, errlen);
    if (r == NULL)
        return -1;
    bool none = strcmp(PQcmdTuples(r), "0") == 0;
    PQclear(r);
    if (none) {
        dir_set_err(err, errlen, "unknown account %s@%s", local, dom);
        return DIR_ENOTFOUND;
    }
    dircache_directory_changed();
    return 0;
}

int dir_account_delete(PGconn *c, const char *address, char *err, size_t errlen)
{
    return account_change(
        c, address,
        "DELETE FROM accounts"
        " WHERE domain_id = " DIR_DOMAIN_ID_OF("$2") " AND lower(local_part) = $1",
        0, NULL, "cannot delete account", err, errlen);
}

int dir_account_passwd(PGconn *c, const char *address, const char *password, char *err,
                       size_t errlen)
{
    char hash[PASSWORD_HASH_MAX], scram[PASSWORD_SCRAM_MAX];
    const char *extra[2] = {NULL, NULL};
    if (password != NULL) {
        /* Validate the address first so a bad one costs no hashing. */
        char local[DIR_LOCAL_PART_MAX + 1], lower[DIR_LOCAL_PART_MAX + 1];
        char dom[DIR_DOMAIN_MAX + 1];
        if (parse_address(address, local, lower, dom, err, errlen) != 0)
            return -1;
        if (password_check(password, err, errlen) != 0)
            return -1;
        if (password_hash(password, hash, sizeof hash) != 0 ||
            password_scram_make(password, 0, scram, sizeof scram) != 0) {
            dir_set_err(err, errlen, "cannot hash the password");
            return -1;
        }
        extra[0] = hash;
        extra[1] = scram;
    }
    return account_change(
        c, address,
        "UPDATE accounts SET password_hash = $3, scram_sha256 = $4"
        " WHERE domain_id = " DIR_DOMAIN_ID_OF("$2") " AND lower(local_part) = $1",
        2, extra, "cannot set password", err, errlen);
}

int dir_account_set_disabled(PGconn *c, const char *address, bool disabled, char *err,
                             size_t errlen)
{
    const char *extra[1] = {disabled ? "t" : "f"};
    return account_change(
        c, address,
        "UPDATE accounts SET disabled = $3::boolean"
        " WHERE domain_id = " DIR_DOMAIN_ID_OF("$2") " AND lower(local_part) = $1",
        1, extra, "cannot change account", err, errlen);
}

#define FIND_SQL                                                                                   \
    "SELECT " DIR_ACCOUNT_COLS ", a.password_hash, a.scram_sha256"                                 \
    " FROM accounts a JOIN domains d ON d.id = a.domain_id"                                        \
    " WHERE a.domain_id = " DIR_DOMAIN_ID_OF("$2") " AND lower(a.local_part) = $1"

int dir_account_find(PGconn *c, const char *address, struct dir_account *a_r, char *err,
                     size_t errlen)
{
    char local[DIR_LOCAL_PART_MAX + 1], lower[DIR_LOCAL_PART_MAX + 1], dom[DIR_DOMAIN_MAX + 1];
    if (parse_address(address, local, lower, dom, err, errlen) != 0)
        return DIR_ENOTFOUND;
    const char *p[] = {lower, dom};
    PGresult *r = dir_sql(c, FIND_SQL, 2, p, "cannot look up account", NULL, err, errlen);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        dir_set_err(err, errlen, "unknown account %s@%s", local, dom);
        return DIR_ENOTFOUND;
    }
    if (a_r != NULL)
        dir_fill_account(a_r, r, 0, 0);
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

int dir_account_list(PGconn *c, const char *domain, dir_account_cb cb, void *ctx, char *err,
                     size_t errlen)
{
    if (cb == NULL) {
        dir_set_err(err, errlen, "dir_account_list: no callback");
        return -1;
    }
    struct account_each e = {cb, ctx};
    if (domain == NULL)
        return dir_sql_each(c,
                            "SELECT " DIR_ACCOUNT_COLS
                            " FROM accounts a JOIN domains d ON d.id = a.domain_id"
                            " ORDER BY d.name, lower(a.local_part), a.id",
                            0, NULL, account_row, &e, "cannot list accounts", err, errlen);

    char dom[DIR_DOMAIN_MAX + 1];
    if (dir_domain_name_check(domain, dom, sizeof dom, NULL, 0) != 0) {
        dir_set_err(err, errlen, "unknown domain");
        return DIR_ENOTFOUND;
    }
    const char *p[] = {dom};
    if (db_begin(c) != 0) {
        db_set_error(err, errlen, c, NULL, "cannot begin");
        return -1;
    }
    PGresult *r = dir_sql(c, "SELECT " DIR_DOMAIN_ID_OF("$1"), 1, p, "cannot look up domain", NULL,
                          err, errlen);
    if (r == NULL)
        goto fail;
    if (PQntuples(r) != 1 || PQgetisnull(r, 0, 0)) {
        PQclear(r);
        dir_set_err(err, errlen, "unknown domain %s", dom);
        db_rollback(c);
        return DIR_ENOTFOUND;
    }
    char id[24];
    snprintf(id, sizeof id, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    const char *idp[] = {id};
    if (dir_sql_each(c,
                     "SELECT " DIR_ACCOUNT_COLS
                     " FROM accounts a JOIN domains d ON d.id = a.domain_id"
                     " WHERE a.domain_id = $1::bigint ORDER BY lower(a.local_part), a.id",
                     1, idp, account_row, &e, "cannot list accounts", err, errlen) != 0)
        goto fail;
    if (db_commit(c) != 0) {
        db_set_error(err, errlen, c, NULL, "cannot commit");
        goto fail;
    }
    return 0;
fail:
    db_rollback(c);
    return -1;
}

/* ---- authentication ---- */

/* A login that is an address: the account itself first, else the account an
 * alias names ($1 the lower-cased local part, $2 the domain or an alias of
 * it). Aliases are stored under the domain's own name. */
/* clang-format off */
#define AUTH_ADDRESS_SQL                                                                           \
    "SELECT " DIR_ACCOUNT_COLS ", a.password_hash, a.scram_sha256 FROM ("                                          \
    " SELECT 1 AS pri, x.id FROM accounts x"                                                       \
    "  WHERE x.domain_id = " DIR_DOMAIN_ID_OF("$2") " AND lower(x.local_part) = $1"                \
    " UNION ALL"                                                                                   \
    " SELECT 2, al.account_id FROM account_aliases al"                                             \
    "  WHERE al.address = $1 || '@' ||"                                                            \
    "   (SELECT name FROM domains WHERE id = " DIR_DOMAIN_ID_OF("$2") ")"                          \
    ") m JOIN accounts a ON a.id = m.id JOIN domains d ON d.id = a.domain_id"                      \
    " ORDER BY m.pri LIMIT 1"
/* clang-format on */

/* A login that is a bare local part ($1, lower-cased): every account with it,
 * but only when the login policy allows bare local parts. Two rows are
 * enough to know it is ambiguous. accounts_local_part (migration 0003)
 * serves the lookup across domains. */
#define AUTH_LOCAL_SQL                                                                             \
    "SELECT " DIR_ACCOUNT_COLS ", a.password_hash, a.scram_sha256"                                 \
    " FROM accounts a JOIN domains d ON d.id = a.domain_id"                                        \
    " WHERE lower(a.local_part) = $1"                                                              \
    " AND (SELECT login_policy FROM server_settings) = 'local_part_when_unambiguous'"              \
    " LIMIT 2"

/* The row of the account a login names (the columns of dir_fill_account(),
 * then password_hash and scram_sha256). Returns 1 with *r_r (caller clears),
 * 0 when no single account with a login matches, -2 on a database error. */
static int login_row(PGconn *c, const char *login, PGresult **r_r)
{
    char local[DIR_LOCAL_PART_MAX + 1], lower[DIR_LOCAL_PART_MAX + 1], dom[DIR_DOMAIN_MAX + 1];
    dom[0] = '\0';
    const char *sql;
    int np;
    if (login != NULL && strchr(login, '@') == NULL && dir_local_part_check(login, NULL, 0) == 0) {
        /* dir_local_part_check() bounds it to DIR_LOCAL_PART_MAX. */
        size_t n = strlen(login);
        for (size_t i = 0; i <= n; i++)
            lower[i] = ascii_lower(login[i]);
        sql = AUTH_LOCAL_SQL;
        np = 1;
    } else if (parse_address(login, local, lower, dom, NULL, 0) == 0) {
        sql = AUTH_ADDRESS_SQL;
        np = 2;
    } else {
        return 0;
    }
    const char *p[] = {lower, dom};
    PGresult *r = PQexecParams(c, sql, np, NULL, p, NULL, NULL, 0);
    if (!db_ok(r)) {
        PQclear(r);
        return -2;
    }
    /* Unknown, ambiguous, or an account without login. */
    if (PQntuples(r) != 1 || PQgetisnull(r, 0, DIR_ACCOUNT_NCOLS)) {
        PQclear(r);
        return 0;
    }
    *r_r = r;
    return 1;
}

int dir_authenticate(PGconn *c, const char *login, const char *password, struct dir_account *a_r)
{
    /* A password that breaks the rules can match no stored hash; refusing it
     * before any lookup reveals nothing about the account. */
    if (password_check(password, NULL, 0) != 0)
        return -1;
    PGresult *r = NULL;
    int found = login_row(c, login, &r);
    if (found < 0)
        return -2;
    /* Unknown, ambiguous, or an account without login: same work, same answer. */
    if (found == 0) {
        (void)password_verify(password, dummy_hash);
        return -1;
    }
    struct dir_account a;
    dir_fill_account(&a, r, 0, 0);
    bool ok = password_verify(password, PQgetvalue(r, 0, DIR_ACCOUNT_NCOLS));
    PQclear(r);
    if (!ok || a.disabled)
        return -1;
    if (a_r != NULL)
        *a_r = a;
    return 0;
}

int dir_scram_lookup(PGconn *c, const char *login, struct dir_account *a_r,
                     char verifier_r[PASSWORD_SCRAM_MAX])
{
    PGresult *r = NULL;
    int found = login_row(c, login, &r);
    if (found <= 0)
        return found < 0 ? -2 : -1;
    dir_fill_account(a_r, r, 0, 0);
    const char *v = PQgetvalue(r, 0, DIR_ACCOUNT_NCOLS + 1);
    bool usable = !PQgetisnull(r, 0, DIR_ACCOUNT_NCOLS + 1) && strlen(v) < PASSWORD_SCRAM_MAX &&
                  !a_r->disabled;
    if (usable)
        memcpy(verifier_r, v, strlen(v) + 1);
    PQclear(r);
    return usable ? 0 : -1;
}

/* ---- versions, updates (admin API) ---- */

int dir_account_version(PGconn *c, const char *address, long long *version_r, char *err,
                        size_t errlen)
{
    char local[DIR_LOCAL_PART_MAX + 1], lower[DIR_LOCAL_PART_MAX + 1], dom[DIR_DOMAIN_MAX + 1];
    if (parse_address(address, local, lower, dom, err, errlen) != 0)
        return DIR_ENOTFOUND;
    const char *p[] = {lower, dom};
    PGresult *r = dir_sql(c,
                          "SELECT version FROM accounts WHERE domain_id = " DIR_DOMAIN_ID_OF("$2")
                          " AND lower(local_part) = $1",
                          2, p, "cannot read the account", NULL, err, errlen);
    if (r == NULL)
        return -1;
    int rc = PQntuples(r) == 1 ? 0 : DIR_ENOTFOUND;
    if (rc == 0)
        *version_r = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    else
        dir_set_err(err, errlen, "unknown account %s@%s", local, dom);
    PQclear(r);
    return rc;
}

int dir_account_update(PGconn *c, const char *address, long long expected_version,
                       const struct dir_account_change *ch, long long *version_r, char *err,
                       size_t errlen)
{
    char local[DIR_LOCAL_PART_MAX + 1], lower[DIR_LOCAL_PART_MAX + 1], dom[DIR_DOMAIN_MAX + 1];
    if (parse_address(address, local, lower, dom, err, errlen) != 0)
        return -1;
    if (ch->full_name && account_fields_check("user", ch->full_name, err, errlen) != 0)
        return -1;
    if (ch->deliver_to && strcmp(ch->deliver_to, "members") != 0 &&
        strcmp(ch->deliver_to, "folder") != 0) {
        dir_set_err(err, errlen, "group delivery must be members or folder");
        return -1;
    }
    char hash[PASSWORD_HASH_MAX], scram[PASSWORD_SCRAM_MAX];
    if (ch->password) {
        if (password_check(ch->password, err, errlen) != 0)
            return -1;
        if (password_hash(ch->password, hash, sizeof hash) != 0 ||
            password_scram_make(ch->password, 0, scram, sizeof scram) != 0) {
            dir_set_err(err, errlen, "cannot hash the password");
            return -1;
        }
    }
    char ev[24];
    snprintf(ev, sizeof ev, "%lld", expected_version);
    const char *p[] = {lower,
                       dom,
                       ev,
                       ch->password ? hash : NULL,
                       ch->password ? scram : NULL,
                       ch->full_name,
                       ch->disabled < 0 ? NULL : ch->disabled ? "t" : "f",
                       ch->deliver_to};
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    int rc = 0;
    /* One statement: the version check and the change cannot be separated. */
    PGresult *r = dir_sql(c,
                          "WITH a AS (SELECT id, version, kind FROM accounts WHERE domain_id = "
                          DIR_DOMAIN_ID_OF("$2") " AND lower(local_part) = $1 FOR UPDATE),"
                          " u AS (UPDATE accounts SET"
                          "  password_hash = coalesce($4, password_hash),"
                          "  scram_sha256 = coalesce($5, scram_sha256),"
                          "  full_name = coalesce($6, full_name),"
                          "  disabled = coalesce($7::boolean, disabled),"
                          "  deliver_to = coalesce($8, deliver_to)"
                          "  FROM a WHERE accounts.id = a.id AND ($3::bigint = 0 OR a.version = $3)"
                          "  AND ($8::text IS NULL OR a.kind = 'group')"
                          "  RETURNING accounts.version)"
                          " SELECT (SELECT version FROM a), (SELECT version FROM u),"
                          " (SELECT kind FROM a)",
                          8, p, "cannot change the account", NULL, err, errlen);
    if (r == NULL) {
        rc = -1;
    } else if (PQgetisnull(r, 0, 0)) {
        dir_set_err(err, errlen, "unknown account %s@%s", local, dom);
        rc = DIR_ENOTFOUND;
    } else if (ch->deliver_to && strcmp(PQgetvalue(r, 0, 2), "group") != 0) {
        dir_set_err(err, errlen, "%s@%s is not a group but a %s", local, dom,
                    PQgetvalue(r, 0, 2));
        rc = -1;
    } else if (PQgetisnull(r, 0, 1)) {
        dir_set_err(err, errlen, "the account was changed meanwhile (version %s)",
                    PQgetvalue(r, 0, 0));
        rc = DIR_ECONFLICT;
    } else {
        *version_r = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    }
    PQclear(r);
    return dir_tx_end(c, rc, true, err, errlen);
}
