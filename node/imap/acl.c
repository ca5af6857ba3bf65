/* ACL (RFC 4314) and QUOTA (RFC 9208) commands.
 *
 * Rights are storage/acl.h's: the eleven RFC 4314 letters, the owner holding all of them.
 * Identifiers are "anyone", an account's address or a group's address. The RFC 2086 letters
 * "c" and "d" a client may still send are read as "k" and "xte" (RFC 4314 §2.1.1), which is
 * what RIGHTS=kxte announces. Negative rights ("-identifier") are not supported. The commands
 * work on other accounts' folders too (names.c): MYRIGHTS with any right, GETACL, SETACL,
 * DELETEACL and LISTRIGHTS with "a" (RFC 4314 §4); the owner shown first is the folder's.
 *
 * Quota: one quota root per account, named "" for the session's own account (every mailbox of
 * it shares that root) and by the owner's address for other accounts' folders (what an APPEND
 * there is charged to), with the STORAGE (KiB) and MESSAGE resources of that account's
 * effective limits (storage/quota.h); limits are set by administrators (floectl), so SETQUOTA
 * is refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "node/imap/imap.h"
#include "proto/imap/quote.h"
#include "storage/acl.h"
#include "storage/directory.h"
#include "storage/folders.h"
#include "storage/quota.h"
#include "storage/sharing.h"

enum acl_op { OP_GETACL, OP_SETACL, OP_DELETEACL, OP_LISTRIGHTS, OP_MYRIGHTS };

struct acl_job {
    struct imap_job base;
    enum acl_op op;
    char path[IMAP_NAME_MAX + 1];
    char ident[DIR_ADDRESS_SIZE];
    char owner[DIR_ADDRESS_SIZE]; /* the folder's owner (the session's account at first) */
    char rights[ACL_RIGHTS_INPUT_MAX + 2];
    bool utf8;
    bool notfound, badident, isowner, badrights, noperm;
    unsigned myrights;
    struct imap_envelope_out out;
};

static void acl_destroy(struct imap_job *j)
{
    struct acl_job *aj = (struct acl_job *)j;
    imap_envelope_out_free(&aj->out);
    free(aj);
}

/* RFC 4314 §2.1.1: the obsolete "c" and "d" in terms of the current rights. */
static unsigned parse_rights(const char *s)
{
    char buf[ACL_RIGHTS_INPUT_MAX * 3 + 1];
    size_t o = 0;
    for (const char *p = s; *p; p++) {
        if (o + 4 >= sizeof(buf))
            return ACL_MASK_INVALID;
        if (*p == 'c')
            buf[o++] = 'k';
        else if (*p == 'd')
            buf[o++] = 'x', buf[o++] = 't', buf[o++] = 'e';
        else
            buf[o++] = *p;
    }
    buf[o] = '\0';
    return acl_mask_parse(buf);
}

static void put_astring(struct imap_envelope_out *out, const char *s, bool utf8)
{
    imap_quote_append(out, s, strlen(s), IMAP_QUOTE_ASTRING | (utf8 ? IMAP_QUOTE_UTF8 : 0));
}

struct entry_ctx {
    enum acl_grantee_kind kind;
    long long id;
    unsigned rights;
    bool found;
    struct imap_envelope_out *out;
    bool utf8;
};

static int entry_out(const struct acl_entry *e, void *ctx)
{
    struct entry_ctx *ec = ctx;
    char letters[12];
    acl_mask_format(e->rights, letters);
    imap_envelope_out_add(ec->out, " ", 1);
    put_astring(ec->out, e->grantee, ec->utf8);
    imap_envelope_out_add(ec->out, " ", 1);
    put_astring(ec->out, letters, false);
    return 0;
}

static int entry_find(const struct acl_entry *e, void *ctx)
{
    struct entry_ctx *ec = ctx;
    if (e->kind == ec->kind && (ec->kind == ACL_GRANTEE_ANYONE || e->grantee_id == ec->id)) {
        ec->rights = e->rights;
        ec->found = true;
        return 1;
    }
    return 0;
}

/* The identifier to a grantee. 0; -1 unknown or the owner (flags set); -2 database. */
static int resolve_ident(PGconn *db, struct acl_job *aj, enum acl_grantee_kind *kind_r,
                         long long *id_r)
{
    if (!strcasecmp(aj->ident, "anyone")) {
        *kind_r = ACL_GRANTEE_ANYONE;
        *id_r = 0;
        return 0;
    }
    struct dir_account a;
    char err[256];
    int rc = dir_account_find(db, aj->ident, &a, err, sizeof(err));
    if (rc == DIR_ENOTFOUND) {
        aj->badident = true;
        return -1;
    }
    if (rc < 0)
        return -2;
    if (!strcasecmp(a.address, aj->owner)) {
        aj->isowner = true;
        return -1;
    }
    *kind_r = !strcmp(a.kind, "group") ? ACL_GRANTEE_GROUP : ACL_GRANTEE_ACCOUNT;
    *id_r = a.id;
    return 0;
}

static void acl_work(struct imap_job *j, PGconn *db)
{
    struct acl_job *aj = (struct acl_job *)j;
    struct imap_mailbox mb;
    int rc = imap_mailbox_resolve(db, j->account_id, j->cfg, aj->path, &mb, j->err, sizeof(j->err));
    if (rc == IMAP_MB_ENOTFOUND || (rc == 0 && (!mb.found || mb.f.kind != FOLDER_KIND_MAIL))) {
        aj->notfound = true;
        j->rc = -1;
        return;
    }
    if (rc < 0) {
        j->rc = -2;
        return;
    }
    const struct folder f = mb.f;
    if (mb.name.ns != IMAP_NS_PERSONAL)
        snprintf(aj->owner, sizeof(aj->owner), "%s", mb.owner_addr);
    aj->myrights = mb.rights;
    if (aj->op != OP_MYRIGHTS && !(mb.rights & ACL_A)) {
        /* RFC 4314 §4: every ACL command but MYRIGHTS needs "a" */
        aj->noperm = true;
        j->rc = -1;
        return;
    }
    struct imap_envelope_out *out = &aj->out;
    struct entry_ctx ec = {.out = out, .utf8 = aj->utf8};
    enum acl_grantee_kind kind;
    long long gid;
    switch (aj->op) {
    case OP_MYRIGHTS: {
        char letters[12];
        acl_mask_format(mb.rights, letters);
        imap_envelope_out_add(out, "* MYRIGHTS ", 11);
        imap_put_mailbox(out, aj->path, aj->utf8);
        imap_envelope_out_add(out, " ", 1);
        put_astring(out, letters, false);
        imap_envelope_out_add(out, "\r\n", 2);
        break;
    }
    case OP_GETACL:
        /* RFC 4314 §3.6; the owner's rights are implicit in storage, shown first */
        imap_envelope_out_add(out, "* ACL ", 6);
        imap_put_mailbox(out, aj->path, aj->utf8);
        imap_envelope_out_add(out, " ", 1);
        put_astring(out, aj->owner, aj->utf8);
        imap_envelope_out_add(out, " " ACL_RIGHTS, 1 + strlen(ACL_RIGHTS));
        if (acl_list(db, f.id, entry_out, &ec) < 0) {
            j->rc = -2;
            return;
        }
        imap_envelope_out_add(out, "\r\n", 2);
        break;
    case OP_LISTRIGHTS:
        /* RFC 4314 §3.7: required rights, then each optional one */
        rc = resolve_ident(db, aj, &kind, &gid);
        if (rc == -2) {
            j->rc = -2;
            return;
        }
        imap_envelope_out_add(out, "* LISTRIGHTS ", 13);
        imap_put_mailbox(out, aj->path, aj->utf8);
        imap_envelope_out_add(out, " ", 1);
        put_astring(out, aj->ident, aj->utf8);
        if (aj->isowner)
            imap_envelope_out_add(out, " " ACL_RIGHTS "\r\n", 3 + strlen(ACL_RIGHTS));
        else
            imap_envelope_out_add(out, " \"\" l r s w i p k x t e a\r\n", 27);
        aj->badident = aj->isowner = false;
        break;
    case OP_SETACL:
    case OP_DELETEACL: {
        rc = resolve_ident(db, aj, &kind, &gid);
        if (rc < 0) {
            j->rc = rc;
            return;
        }
        char buf[12];
        const char *letters = NULL;
        if (aj->op == OP_SETACL) {
            /* RFC 4314 §3.1: "+" adds, "-" removes, otherwise replaces */
            const char *r = aj->rights;
            bool mod = *r == '+' || *r == '-';
            unsigned cur = 0;
            if (mod) {
                ec.kind = kind;
                ec.id = gid;
                if (acl_list(db, f.id, entry_find, &ec) < 0) {
                    j->rc = -2;
                    return;
                }
                cur = ec.found ? ec.rights : 0;
            }
            unsigned mask = parse_rights(mod ? r + 1 : r);
            if (mask == ACL_MASK_INVALID) {
                aj->badrights = true;
                j->rc = -1;
                return;
            }
            mask = *r == '+' ? cur | mask : *r == '-' ? cur & ~mask : mask;
            acl_mask_format(mask, buf);
            letters = buf;
        }
        rc = acl_set(db, f.id, kind, gid, letters, j->err, sizeof(j->err));
        if (rc == ACL_EINVAL)
            aj->badrights = true;
        j->rc = rc == 0 ? 0 : rc == ACL_EINVAL || rc == ACL_ENOTFOUND ? -1 : -2;
        if (rc == ACL_ENOTFOUND)
            aj->badident = true;
        return;
    }
    }
    j->rc = 0;
}

static void acl_done(struct imap_session *s, struct imap_job *j)
{
    struct acl_job *aj = (struct acl_job *)j;
    static const char *const names[] = {"GETACL", "SETACL", "DELETEACL", "LISTRIGHTS", "MYRIGHTS"};
    if (j->rc == 0 && aj->out.len)
        imap_write(s, aj->out.data, aj->out.len);
    if (imap_view_apply(s, j->changes, true) < 0)
        return;
    if (j->rc == 0)
        imap_tagged(s, "OK", "%s completed", names[aj->op]);
    else if (aj->notfound)
        imap_tagged(s, "NO", "[NONEXISTENT] No such mailbox");
    else if (aj->noperm)
        imap_tagged(s, "NO", "[NOPERM] Administer right (a) needed");
    else if (aj->isowner)
        imap_tagged(s, "NO", "[CANNOT] The owner always has every right");
    else if (aj->badident)
        imap_tagged(s, "NO", "[CANNOT] Unknown identifier");
    else if (aj->badrights)
        imap_tagged(s, "BAD", "Invalid rights");
    else {
        conn_log(s->c, LOG_SUMMARY, "%s failed: %s", names[aj->op], j->err);
        imap_tagged(s, "NO", "[SERVERBUG] %s failed", names[aj->op]);
    }
}

static void acl_start(struct imap_session *s, const struct imap_arg *a, size_t n, enum acl_op op,
                      size_t want)
{
    static const char *const syntax[] = {
        "Syntax: GETACL mailbox", "Syntax: SETACL mailbox identifier rights",
        "Syntax: DELETEACL mailbox identifier", "Syntax: LISTRIGHTS mailbox identifier",
        "Syntax: MYRIGHTS mailbox"};
    if (n != want) {
        imap_tagged(s, "BAD", "%s", syntax[op]);
        return;
    }
    struct acl_job *aj = calloc(1, sizeof(*aj));
    if (!aj) {
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    aj->op = op;
    aj->utf8 = s->utf8;
    aj->base.destroy = acl_destroy;
    snprintf(aj->owner, sizeof(aj->owner), "%s", s->account.address);
    if (imap_arg_mailbox(s, &a[0], aj->path, sizeof(aj->path)) < 0) {
        acl_destroy(&aj->base);
        return;
    }
    const char *ident = want >= 2 ? imap_arg_astring(&a[1]) : "";
    const char *rights = want == 3 ? imap_arg_astring(&a[2]) : "";
    if (!ident || !rights || strlen(ident) >= sizeof(aj->ident) ||
        strlen(rights) >= sizeof(aj->rights)) {
        acl_destroy(&aj->base);
        imap_tagged(s, "BAD", "%s", syntax[op]);
        return;
    }
    if (ident[0] == '-') {
        acl_destroy(&aj->base);
        imap_tagged(s, "NO", "[CANNOT] Negative rights are not supported");
        return;
    }
    snprintf(aj->ident, sizeof(aj->ident), "%s", ident);
    snprintf(aj->rights, sizeof(aj->rights), "%s", rights);
    aj->base.work = acl_work;
    aj->base.done = acl_done;
    imap_job_submit(s, &aj->base, true);
}

void imap_cmd_getacl(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid)
{
    acl_start(s, a, n, OP_GETACL, 1);
}

void imap_cmd_setacl(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid)
{
    acl_start(s, a, n, OP_SETACL, 3);
}

void imap_cmd_deleteacl(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid)
{
    acl_start(s, a, n, OP_DELETEACL, 2);
}

void imap_cmd_listrights(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid)
{
    acl_start(s, a, n, OP_LISTRIGHTS, 2);
}

void imap_cmd_myrights(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid)
{
    acl_start(s, a, n, OP_MYRIGHTS, 1);
}

/* ---- QUOTA (RFC 9208) ---- */

enum quota_op { Q_GETQUOTA, Q_GETQUOTAROOT };

struct quota_job {
    struct imap_job base;
    enum quota_op op;
    char path[IMAP_NAME_MAX + 1];
    char address[DIR_ADDRESS_SIZE]; /* the account whose root it is */
    char root[DIR_ADDRESS_SIZE];    /* its name: "" for the session's account */
    bool utf8, notfound, noroot;
    struct imap_envelope_out out;
};

static void quota_destroy(struct imap_job *j)
{
    struct quota_job *qj = (struct quota_job *)j;
    imap_envelope_out_free(&qj->out);
    free(qj);
}

static int quota_seen(const struct sharing_folder *sf, void *ctx)
{
    (void)sf;
    *(bool *)ctx = true;
    return 1;
}

static void quota_work(struct imap_job *j, PGconn *db)
{
    struct quota_job *qj = (struct quota_job *)j;
    struct imap_envelope_out *out = &qj->out;
    if (qj->op == Q_GETQUOTAROOT) {
        struct imap_mailbox mb;
        int rc =
            imap_mailbox_resolve(db, j->account_id, j->cfg, qj->path, &mb, j->err, sizeof(j->err));
        if (rc == IMAP_MB_ENOTFOUND || (rc == 0 && (!mb.found || mb.f.kind != FOLDER_KIND_MAIL))) {
            qj->notfound = true;
            j->rc = -1;
            return;
        }
        if (rc < 0) {
            j->rc = -2;
            return;
        }
        if (mb.name.ns != IMAP_NS_PERSONAL) {
            /* the owner's root: what storing a message there is charged to */
            snprintf(qj->address, sizeof(qj->address), "%s", mb.owner_addr);
            snprintf(qj->root, sizeof(qj->root), "%s", mb.owner_addr);
        }
    } else if (*qj->root) {
        /* another account's root: only for an account that shares a folder with this one */
        struct dir_account a;
        int rc = dir_account_find(db, qj->root, &a, j->err, sizeof(j->err));
        if (rc < 0 && rc != DIR_ENOTFOUND) {
            j->rc = -2;
            return;
        }
        bool seen = false;
        if (rc == 0 && a.id != j->account_id &&
            sharing_list(db, j->account_id, SHARING_ALL, false, a.id, quota_seen, &seen, j->err,
                         sizeof(j->err)) < 0) {
            j->rc = -2;
            return;
        }
        if (!seen) {
            qj->noroot = true;
            j->rc = -1;
            return;
        }
        snprintf(qj->address, sizeof(qj->address), "%s", a.address);
        snprintf(qj->root, sizeof(qj->root), "%s", a.address);
    }
    struct quota_info q;
    if (quota_get(db, qj->address, &q, j->err, sizeof(j->err)) < 0) {
        j->rc = -2;
        return;
    }
    bool limited = q.bytes_limit > 0 || q.messages_limit > 0;
    if (qj->op == Q_GETQUOTAROOT) {
        /* RFC 9208 §4.3.2: every mailbox has the account's root, "" (none when unlimited) */
        imap_envelope_out_add(out, "* QUOTAROOT ", 12);
        imap_put_mailbox(out, qj->path, qj->utf8);
        if (limited) {
            imap_envelope_out_add(out, " ", 1);
            imap_quote_append(out, qj->root, strlen(qj->root), 0);
        }
        imap_envelope_out_add(out, "\r\n", 2);
    } else if (!limited) {
        qj->noroot = true;
        j->rc = -1;
        return;
    }
    if (limited) {
        char buf[256];
        size_t o = 0;
        /* STORAGE in units of 1024 octets (RFC 9208 §5.1), MESSAGE a count (§5.2) */
        if (q.bytes_limit > 0)
            o += (size_t)snprintf(buf + o, sizeof(buf) - o, "STORAGE %lld %lld",
                                  (q.bytes_used + 1023) / 1024, q.bytes_limit / 1024);
        if (q.messages_limit > 0)
            o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%sMESSAGE %lld %lld", o ? " " : "",
                                  q.messages_used, q.messages_limit);
        imap_envelope_out_add(out, "* QUOTA ", 8);
        imap_quote_append(out, qj->root, strlen(qj->root), 0);
        imap_envelope_out_add(out, " (", 2);
        imap_envelope_out_add(out, buf, o);
        imap_envelope_out_add(out, ")\r\n", 3);
    }
    j->rc = 0;
}

static void quota_done(struct imap_session *s, struct imap_job *j)
{
    struct quota_job *qj = (struct quota_job *)j;
    const char *name = qj->op == Q_GETQUOTA ? "GETQUOTA" : "GETQUOTAROOT";
    if (j->rc == 0 && qj->out.len)
        imap_write(s, qj->out.data, qj->out.len);
    if (imap_view_apply(s, j->changes, true) < 0)
        return;
    if (j->rc == 0)
        imap_tagged(s, "OK", "%s completed", name);
    else if (qj->notfound)
        imap_tagged(s, "NO", "[NONEXISTENT] No such mailbox");
    else if (qj->noroot)
        imap_tagged(s, "NO", "[NONEXISTENT] No such quota root");
    else {
        conn_log(s->c, LOG_SUMMARY, "%s failed: %s", name, j->err);
        imap_tagged(s, "NO", "[UNAVAILABLE] %s failed", name);
    }
}

static void quota_start(struct imap_session *s, struct quota_job *qj)
{
    qj->utf8 = s->utf8;
    snprintf(qj->address, sizeof(qj->address), "%s", s->account.address);
    qj->base.work = quota_work;
    qj->base.done = quota_done;
    qj->base.destroy = quota_destroy;
    imap_job_submit(s, &qj->base, true);
}

void imap_cmd_getquota(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid)
{
    const char *root = n == 1 ? imap_arg_astring(&a[0]) : NULL;
    if (!root) {
        imap_tagged(s, "BAD", "Syntax: GETQUOTA root");
        return;
    }
    if (strlen(root) >= DIR_ADDRESS_SIZE || (*root && !strchr(root, '@'))) {
        imap_tagged(s, "NO", "[NONEXISTENT] No such quota root");
        return;
    }
    struct quota_job *qj = calloc(1, sizeof(*qj));
    if (!qj) {
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    qj->op = Q_GETQUOTA;
    snprintf(qj->root, sizeof(qj->root), "%s", root);
    quota_start(s, qj);
}

void imap_cmd_getquotaroot(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid)
{
    if (n != 1) {
        imap_tagged(s, "BAD", "Syntax: GETQUOTAROOT mailbox");
        return;
    }
    struct quota_job *qj = calloc(1, sizeof(*qj));
    if (!qj) {
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    if (imap_arg_mailbox(s, &a[0], qj->path, sizeof(qj->path)) < 0) {
        free(qj);
        return;
    }
    qj->op = Q_GETQUOTAROOT;
    quota_start(s, qj);
}

void imap_cmd_setquota(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid)
{
    if (n != 2 || a[1].type != IMAP_ARG_LIST) {
        imap_tagged(s, "BAD", "Syntax: SETQUOTA root (resource limit ...)");
        return;
    }
    /* RFC 9208 §4.1.3: limits are the administrator's (floectl quota) */
    imap_tagged(s, "NO", "[NOPERM] Quota limits are set by the administrator");
}
