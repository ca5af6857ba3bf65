/* Mailbox commands: SELECT and EXAMINE (RFC 9051 §6.3.2, with CONDSTORE and QRESYNC
 * parameters, RFC 7162), CREATE (with CREATE-SPECIAL-USE, RFC 6154 §3), DELETE, RENAME,
 * SUBSCRIBE, UNSUBSCRIBE, LIST (with LIST-EXTENDED RFC 5258, LIST-STATUS RFC 5819,
 * SPECIAL-USE RFC 6154, CHILDREN RFC 3348), LSUB, STATUS (STATUS=SIZE RFC 8438, DELETED,
 * HIGHESTMODSEQ, APPENDLIMIT RFC 7889, DELETED-STORAGE RFC 9208), NAMESPACE (RFC 2342), CLOSE
 * and UNSELECT (RFC 3691).
 *
 * Names. The tree is the account's folder tree (storage/folders.h) with '/' as the hierarchy
 * delimiter; IMAP shows its mail folders. A groupware folder is listed only when mail folders
 * live below it, as \Noselect. Folder roles are the special-use attributes. Names travel in
 * modified UTF-7 unless the client enabled UTF8=ACCEPT or IMAP4rev2.
 *
 * Other accounts' folders (names.c) are governed by their rights (storage/acl.h, RFC 4314 §4):
 * LIST shows what has "l", SELECT and STATUS need "r", CREATE needs "k" on the parent, DELETE
 * and RENAME "x" (RENAME also "k" on the new parent); a folder without any right does not
 * exist. LIST shows public folders (group accounts) always, as subscribed, and other users'
 * folders once the session's account is subscribed to that user (CREATE or SUBSCRIBE
 * "~user@domain" subscribes to every folder of theirs it may see; LSUB then lists those), with
 * the hierarchy above them as \Noselect. Special-use attributes are the owner's business and
 * are not shown for other accounts' folders.
 *
 * Each command runs one job; the folder list, statuses and responses of LIST are built on the
 * worker, so a large tree costs the I/O thread nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "node/imap/imap.h"
#include "node/imap/syntax.h"
#include "proto/bus/bus.pb-c.h"
#include "proto/imap/quote.h"
#include "proto/imap/utf7.h"
#include "proto/text/utf8.h"
#include "storage/acl.h"
#include "storage/changes.h"
#include "storage/folders.h"
#include "storage/imapstate.h"
#include "storage/mailstore.h"
#include "storage/sharing.h"

/* Distinct keywords shown in a SELECT's FLAGS. */
#define SELECT_KEYWORDS_MAX 256

static void put_mailbox(struct imap_envelope_out *out, const char *path, bool utf8)
{
    imap_put_mailbox(out, path, utf8);
}

static const char *role_attr(enum folder_role role)
{
    switch (role) {
    case FOLDER_ROLE_DRAFTS:
        return "\\Drafts";
    case FOLDER_ROLE_SENT:
        return "\\Sent";
    case FOLDER_ROLE_TRASH:
        return "\\Trash";
    case FOLDER_ROLE_JUNK:
        return "\\Junk";
    case FOLDER_ROLE_ARCHIVE:
        return "\\Archive";
    default:
        return NULL;
    }
}

static int attr_role(const char *attr, enum folder_role *role_r)
{
    static const struct {
        const char *name;
        enum folder_role role;
    } map[] = {{"\\Drafts", FOLDER_ROLE_DRAFTS},
               {"\\Sent", FOLDER_ROLE_SENT},
               {"\\Trash", FOLDER_ROLE_TRASH},
               {"\\Junk", FOLDER_ROLE_JUNK},
               {"\\Archive", FOLDER_ROLE_ARCHIVE}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (!strcasecmp(attr, map[i].name)) {
            *role_r = map[i].role;
            return 0;
        }
    return -1;
}

/* ---- STATUS items (shared by STATUS and LIST RETURN (STATUS)) ---- */

enum {
    ST_MESSAGES = 1 << 0,
    ST_UIDNEXT = 1 << 1,
    ST_UIDVALIDITY = 1 << 2,
    ST_UNSEEN = 1 << 3,
    ST_DELETED = 1 << 4,
    ST_SIZE = 1 << 5,
    ST_HIGHESTMODSEQ = 1 << 6,
    ST_RECENT = 1 << 7,
    ST_APPENDLIMIT = 1 << 8,
    ST_DELETED_STORAGE = 1 << 9,
};

static const struct {
    const char *name;
    unsigned bit;
} status_items[] = {{"MESSAGES", ST_MESSAGES},
                    {"UIDNEXT", ST_UIDNEXT},
                    {"UIDVALIDITY", ST_UIDVALIDITY},
                    {"UNSEEN", ST_UNSEEN},
                    {"DELETED", ST_DELETED},
                    {"SIZE", ST_SIZE},
                    {"HIGHESTMODSEQ", ST_HIGHESTMODSEQ},
                    {"RECENT", ST_RECENT},
                    {"APPENDLIMIT", ST_APPENDLIMIT},
                    {"DELETED-STORAGE", ST_DELETED_STORAGE}};

static int parse_status_items(const struct imap_arg *a, unsigned *mask_r)
{
    size_t n;
    const struct imap_arg *l = imap_arg_list(a, &n);
    if (!l || n == 0)
        return -1;
    *mask_r = 0;
    for (size_t i = 0; i < n; i++) {
        const char *w = imap_arg_atom(&l[i]);
        size_t k;
        for (k = 0; w && k < sizeof(status_items) / sizeof(status_items[0]); k++)
            if (!strcasecmp(w, status_items[k].name))
                break;
        if (!w || k == sizeof(status_items) / sizeof(status_items[0]))
            return -1;
        *mask_r |= status_items[k].bit;
    }
    return 0;
}

/* "* STATUS name (...)" of one folder, read on a worker. */
static int status_line(PGconn *db, long long folder_id, const char *name, unsigned mask, bool utf8,
                       uint64_t append_limit, struct imap_envelope_out *out, char *err,
                       size_t errlen)
{
    struct mail_status st;
    int rc = mailstore_status(db, folder_id, &st, err, errlen);
    if (rc < 0)
        return rc;
    unsigned long long deleted_bytes = 0;
    if ((mask & ST_DELETED_STORAGE) &&
        imapstate_deleted_bytes(db, folder_id, &deleted_bytes, err, errlen) < 0)
        return -1;
    imap_envelope_out_add(out, "* STATUS ", 9);
    put_mailbox(out, name, utf8);
    char buf[512];
    size_t o = 0;
    buf[0] = '\0';
#define ADD(...) o += (size_t)snprintf(buf + o, sizeof(buf) - o, __VA_ARGS__)
    if (mask & ST_MESSAGES)
        ADD(" MESSAGES %llu", (unsigned long long)st.messages);
    if (mask & ST_RECENT)
        ADD(" RECENT 0");
    if (mask & ST_UIDNEXT)
        ADD(" UIDNEXT %u", st.uidnext);
    if (mask & ST_UIDVALIDITY)
        ADD(" UIDVALIDITY %u", st.uidvalidity);
    if (mask & ST_UNSEEN)
        ADD(" UNSEEN %llu", (unsigned long long)st.unseen);
    if (mask & ST_DELETED)
        ADD(" DELETED %llu", (unsigned long long)st.deleted);
    if (mask & ST_SIZE)
        ADD(" SIZE %llu", (unsigned long long)st.bytes);
    if (mask & ST_HIGHESTMODSEQ)
        ADD(" HIGHESTMODSEQ %lld", st.highest_modseq > 0 ? st.highest_modseq : 1);
    if (mask & ST_APPENDLIMIT)
        ADD(" APPENDLIMIT %llu", (unsigned long long)append_limit);
    if (mask & ST_DELETED_STORAGE)
        ADD(" DELETED-STORAGE %llu", (deleted_bytes + 1023) / 1024);
#undef ADD
    imap_envelope_out_add(out, " (", 2);
    imap_envelope_out_add(out, buf + (o ? 1 : 0), o ? o - 1 : 0);
    imap_envelope_out_add(out, ")\r\n", 3);
    return 0;
}

/* ---- SELECT / EXAMINE ---- */

struct select_job {
    struct imap_job base;
    char path[IMAP_NAME_MAX + 1];
    bool examine;
    unsigned rights;
    /* QRESYNC (RFC 7162 §3.2.5) */
    bool qresync;
    uint32_t q_uidvalidity;
    long long q_modseq;
    struct imap_seqset *q_known; /* known UIDs, NULL: all up to UIDNEXT */
    /* results */
    struct folder f;
    struct mail_status st;
    bool notfound, notmail, noperm;
    uint32_t *uids;
    long long *modseqs;
    uint32_t count, cap;
    uint32_t first_unseen;
    char *keywords[SELECT_KEYWORDS_MAX];
    size_t nkeywords;
    bool too_big, oom;
    struct imap_changes *q; /* QRESYNC: what changed since the client's modseq */
};

static void select_destroy(struct imap_job *j)
{
    struct select_job *sj = (struct select_job *)j;
    free(sj->uids);
    free(sj->modseqs);
    for (size_t i = 0; i < sj->nkeywords; i++)
        free(sj->keywords[i]);
    imap_seqset_free(&sj->q_known);
    imap_changes_free(&sj->q);
    free(sj);
}

static int select_row(const struct mail_row *r, void *ctx)
{
    struct select_job *sj = ctx;
    if (sj->count >= IMAP_VIEW_MAX) {
        sj->too_big = true;
        return 1;
    }
    if (sj->count == sj->cap) {
        uint32_t cap = sj->cap ? sj->cap * 2 : 1024;
        uint32_t *u = realloc(sj->uids, cap * sizeof(*u));
        if (!u)
            return sj->oom = true, 1;
        sj->uids = u;
        long long *m = realloc(sj->modseqs, cap * sizeof(*m));
        if (!m)
            return sj->oom = true, 1;
        sj->modseqs = m;
        sj->cap = cap;
    }
    sj->uids[sj->count] = r->uid;
    sj->modseqs[sj->count] = r->modseq;
    sj->count++;
    if (!sj->first_unseen && !(r->flags & MAIL_SEEN))
        sj->first_unseen = sj->count;
    for (size_t i = 0; i < r->nkeywords && sj->nkeywords < SELECT_KEYWORDS_MAX; i++) {
        bool seen = false;
        for (size_t k = 0; k < sj->nkeywords && !seen; k++)
            seen = !strcmp(sj->keywords[k], r->keywords[i]);
        if (!seen && (sj->keywords[sj->nkeywords] = strdup(r->keywords[i])))
            sj->nkeywords++;
    }
    return 0;
}

static void select_work(struct imap_job *j, PGconn *db)
{
    struct select_job *sj = (struct select_job *)j;
    struct imap_mailbox mb;
    int rc = imap_mailbox_resolve(db, j->account_id, j->cfg, sj->path, &mb, j->err, sizeof(j->err));
    if (rc == IMAP_MB_ENOTFOUND || (rc == 0 && !mb.found)) {
        sj->notfound = !mb.container;
        sj->notmail = mb.container;
        j->rc = -1;
        return;
    }
    if (rc < 0 || mb.f.kind != FOLDER_KIND_MAIL) {
        sj->notmail = rc == 0;
        j->rc = -1;
        if (rc == 0)
            snprintf(j->err, sizeof(j->err), "not mail");
        return;
    }
    sj->f = mb.f;
    sj->rights = mb.rights;
    if (!(mb.rights & ACL_R)) {
        /* RFC 4314 §4: SELECT and EXAMINE need "r" */
        sj->noperm = true;
        j->rc = -1;
        return;
    }
    if (mailstore_status(db, sj->f.id, &sj->st, j->err, sizeof(j->err)) < 0 ||
        mailstore_fetch(db, sj->f.id, NULL, 0, 0, false, select_row, sj, j->err, sizeof(j->err)) <
            0) {
        j->rc = -2;
        return;
    }
    if (sj->oom || sj->too_big) {
        j->rc = -1;
        return;
    }
    if (sj->qresync && sj->q_uidvalidity == sj->f.uidvalidity && sj->q_modseq > 0) {
        sj->q = calloc(1, sizeof(*sj->q));
        if (!sj->q || imap_changes_collect(db, sj->f.account_id, sj->f.id, sj->q_modseq, sj->q,
                                           j->err, sizeof(j->err)) < 0) {
            j->rc = -2;
            return;
        }
    }
    j->rc = 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* RFC 7162 §3.2.5.1: VANISHED (EARLIER) for known UIDs that no longer exist. */
static void qresync_vanished(struct imap_session *s, struct select_job *sj)
{
    struct imap_seqset *gone = imap_seqset_new(0);
    if (!gone)
        return;
    const struct imap_view *v = &s->view;
    if (sj->q->full) {
        /* no tombstones to go by: every known UID the view lacks */
        uint32_t top = sj->st.uidnext > 1 ? sj->st.uidnext - 1 : 0;
        size_t n = 0;
        const struct imap_seq_range *r = sj->q_known ? imap_seqset_ranges(sj->q_known, &n) : NULL;
        struct imap_seq_range all = {1, top};
        if (!sj->q_known) {
            r = top ? &all : NULL;
            n = top ? 1 : 0;
        }
        for (size_t i = 0; i < n; i++) {
            uint64_t hi = r[i].hi < top ? r[i].hi : top;
            for (uint64_t u = r[i].lo; u <= hi; u++)
                if (!imap_view_seq(v, (uint32_t)u) && imap_seqset_add(gone, (uint32_t)u) < 0)
                    break;
        }
    } else {
        if (sj->q->nexpunged)
            qsort(sj->q->expunged, sj->q->nexpunged, sizeof(uint32_t), cmp_u32);
        for (size_t i = 0; i < sj->q->nexpunged; i++) {
            uint32_t u = sj->q->expunged[i];
            if ((!sj->q_known || imap_seqset_contains(sj->q_known, u)) && !imap_view_seq(v, u))
                imap_seqset_add(gone, u);
        }
    }
    char *txt = NULL;
    if (!imap_seqset_is_empty(gone) && imap_seqset_format(gone, &txt, NULL) == 0)
        imap_printf(s, "* VANISHED (EARLIER) %s\r\n", txt);
    free(txt);
    imap_seqset_free(&gone);
}

static void select_done(struct imap_session *s, struct imap_job *j)
{
    struct select_job *sj = (struct select_job *)j;
    const char *what = sj->examine ? "EXAMINE" : "SELECT";
    if (j->rc != 0) {
        if (sj->notfound)
            imap_tagged(s, "NO", "[NONEXISTENT] No such mailbox");
        else if (sj->noperm)
            imap_tagged(s, "NO", "%s", imap_noperm_text(sj->rights));
        else if (sj->notmail)
            imap_tagged(s, "NO", "[CANNOT] Not a mail folder");
        else if (sj->too_big)
            imap_tagged(s, "NO", "[LIMIT] Too many messages in this mailbox");
        else {
            conn_log(s->c, LOG_SUMMARY, "%s failed: %s", what, j->err);
            imap_tagged(s, "NO", "[UNAVAILABLE] %s failed", what);
        }
        return;
    }
    struct imap_view *v = &s->view;
    imap_view_clear(v);
    v->folder_id = sj->f.id;
    v->owner_id = sj->f.account_id;
    snprintf(v->path, sizeof(v->path), "%s", sj->path);
    v->rights = sj->rights;
    /* RFC 4314 §5.2: read-only when none of the rights that change the mailbox is held */
    v->readonly = sj->examine || !(sj->rights & (ACL_S | ACL_W | ACL_T | ACL_E | ACL_I));
    v->uidvalidity = sj->f.uidvalidity;
    v->uids = sj->uids;
    v->modseqs = sj->modseqs;
    v->count = sj->count;
    v->cap = sj->cap;
    v->known_modseq = sj->st.highest_modseq;
    sj->uids = NULL;
    sj->modseqs = NULL;
    s->state = IMAP_SELECTED;
    s->notified_modseq = 0;

    struct imap_envelope_out kw = {0};
    for (size_t i = 0; i < sj->nkeywords; i++) {
        imap_envelope_out_add(&kw, " ", 1);
        imap_envelope_out_add(&kw, sj->keywords[i], strlen(sj->keywords[i]));
    }
    const char *kws = kw.data ? kw.data : "";
    imap_printf(s, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s)\r\n", kws);
    if (v->readonly) {
        imap_printf(s, "* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
    } else {
        /* RFC 4314 §4: \Seen needs "s", \Deleted "t", the other flags and keywords "w" */
        char perm[128];
        size_t o = 0;
        bool w = v->rights & ACL_W;
        perm[0] = '\0';
#define PERM(t) o += (size_t)snprintf(perm + o, sizeof(perm) - o, "%s%s", o ? " " : "", t)
        if (w)
            PERM("\\Answered \\Flagged");
        if (v->rights & ACL_T)
            PERM("\\Deleted");
        if (v->rights & ACL_S)
            PERM("\\Seen");
        if (w)
            PERM("\\Draft");
#undef PERM
        imap_printf(s, "* OK [PERMANENTFLAGS (%s%s%s)] Flags permitted\r\n", perm, w ? kws : "",
                    w ? " \\*" : "");
    }
    imap_envelope_out_free(&kw);
    imap_printf(s, "* %u EXISTS\r\n", v->count);
    if (!s->rev2) {
        /* RFC 3501 §6.3.1; Floe keeps no \Recent (RFC 9051 removed it) */
        imap_printf(s, "* 0 RECENT\r\n");
        if (sj->first_unseen)
            imap_printf(s, "* OK [UNSEEN %u] First unseen\r\n", sj->first_unseen);
    }
    imap_printf(s, "* OK [UIDVALIDITY %u] UIDs valid\r\n", v->uidvalidity);
    imap_printf(s, "* OK [UIDNEXT %u] Predicted next UID\r\n", sj->st.uidnext);
    imap_printf(s, "* OK [HIGHESTMODSEQ %lld] Highest\r\n",
                sj->st.highest_modseq > 0 ? sj->st.highest_modseq : 1);
    if (s->rev2) {
        /* RFC 9051 §6.3.2: the mailbox's LIST response */
        struct imap_envelope_out o = {0};
        put_mailbox(&o, v->path, s->utf8);
        imap_printf(s, "* LIST () \"/\" %s\r\n", o.data ? o.data : "\"\"");
        imap_envelope_out_free(&o);
    }
    if (sj->q) {
        qresync_vanished(s, sj);
        /* the changed messages' flags; everything the view holds counts as told after that */
        for (size_t i = 0; i < sj->q->nrows; i++) {
            const struct imap_change_row *r = &sj->q->rows[i];
            uint32_t seq = imap_view_seq(v, r->uid);
            if (!seq)
                continue;
            struct imap_envelope_out o = {0};
            imap_flags_append(&o, r->flags, r->keywords);
            imap_printf(s, "* %u FETCH (UID %u FLAGS %s MODSEQ (%lld))\r\n", seq, r->uid,
                        o.data ? o.data : "()", r->modseq);
            imap_envelope_out_free(&o);
        }
    }
    conn_log(s->c, LOG_DEBUG, "selected %s (%u messages)", v->path, v->count);
    imap_tagged(s, "OK", "[%s] %s completed", v->readonly ? "READ-ONLY" : "READ-WRITE", what);
}

void imap_unselect(struct imap_session *s, bool announce)
{
    if (s->state != IMAP_SELECTED)
        return;
    imap_view_clear(&s->view);
    s->state = IMAP_AUTH;
    s->notified_modseq = 0;
    if (announce)
        imap_printf(s, "* OK [CLOSED] Previous mailbox closed\r\n");
}

/* SELECT's parameters: (CONDSTORE) or (QRESYNC (uidvalidity modseq [known-uids [seq-match]])) */
static int select_params(struct imap_session *s, const struct imap_arg *p, struct select_job *sj)
{
    size_t n;
    const struct imap_arg *l = imap_arg_list(p, &n);
    if (!l)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const char *w = imap_arg_atom(&l[i]);
        if (w && !strcasecmp(w, "CONDSTORE")) {
            s->condstore = true; /* RFC 7162 §3.1.8 */
            continue;
        }
        if (!w || strcasecmp(w, "QRESYNC") || i + 1 >= n || !s->qresync)
            return -1; /* RFC 7162 §3.2.5: QRESYNC needs ENABLE QRESYNC first */
        size_t k;
        const struct imap_arg *q = imap_arg_list(&l[++i], &k);
        if (!q || k < 2 || k > 4)
            return -1;
        const char *uv = imap_arg_atom(&q[0]), *ms = imap_arg_atom(&q[1]);
        char *end;
        if (!uv || !ms || strlen(uv) > 10 || strlen(ms) > 19)
            return -1;
        unsigned long long u = strtoull(uv, &end, 10);
        if (*end || u == 0 || u > UINT32_MAX)
            return -1;
        long long m = strtoll(ms, &end, 10);
        if (*end || m <= 0)
            return -1;
        sj->qresync = true;
        sj->q_uidvalidity = (uint32_t)u;
        sj->q_modseq = m;
        if (k >= 3) {
            const char *known = imap_arg_atom(&q[2]);
            if (!known)
                return -1;
            if (imap_seqset_parse(known, strlen(known), UINT32_MAX, 0, &sj->q_known, NULL, 0) < 0 ||
                imap_seqset_is_saved(sj->q_known))
                return -1;
        }
        if (k == 4 && q[3].type != IMAP_ARG_LIST)
            return -1; /* the sequence match data is accepted and not needed */
    }
    return 0;
}

void imap_cmd_select(struct imap_session *s, const struct imap_arg *a, size_t n, bool examine)
{
    if (n < 1 || n > 2 || (n == 2 && a[1].type != IMAP_ARG_LIST)) {
        imap_tagged(s, "BAD", "Syntax: SELECT mailbox [(parameters)]");
        return;
    }
    struct select_job *sj = calloc(1, sizeof(*sj));
    if (!sj) {
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    sj->examine = examine;
    sj->base.destroy = select_destroy;
    if (imap_arg_mailbox(s, &a[0], sj->path, sizeof(sj->path)) < 0) {
        select_destroy(&sj->base);
        return;
    }
    if (n == 2 && select_params(s, &a[1], sj) < 0) {
        select_destroy(&sj->base);
        imap_tagged(s, "BAD", "Invalid SELECT parameters");
        return;
    }
    /* RFC 9051 §6.3.2: selecting closes the mailbox selected before, without expunging, even
     * when the new selection fails */
    imap_unselect(s, true);
    sj->base.work = select_work;
    sj->base.done = select_done;
    imap_job_submit(s, &sj->base, false);
}

/* ---- CREATE, DELETE, RENAME, (UN)SUBSCRIBE ---- */

enum folder_op { OP_CREATE, OP_DELETE, OP_RENAME, OP_SUBSCRIBE, OP_UNSUBSCRIBE };

struct folder_job {
    struct imap_job base;
    enum folder_op op;
    char path[IMAP_NAME_MAX + 1], path2[IMAP_NAME_MAX + 1];
    enum folder_role role;
    const char *code;       /* the response code of a NO */
    const char *done_text;  /* OK text other than "<command> completed" */
    const char *owner_path; /* DELETE: the path looked for below, in the owner's tree */
};

static int has_children_cb(const struct folder *f, void *ctx)
{
    struct folder_job *fj = ctx;
    size_t n = strlen(fj->owner_path);
    if (!strncmp(f->path, fj->owner_path, n) && f->path[n] == '/') {
        fj->code = "[HASCHILDREN] ";
        return 1;
    }
    return 0;
}

/* RFC 3501 §6.3.5: RENAME of INBOX moves its messages to the new mailbox and leaves INBOX empty. */
static int rename_inbox(PGconn *db, struct folder_job *fj, long long account_id, const char *to)
{
    struct folder dst, inbox;
    int rc = folders_find_path(db, account_id, "INBOX", &inbox);
    if (rc < 0)
        return rc;
    rc = folders_create(db, account_id, to, FOLDER_KIND_MAIL, FOLDER_ROLE_NONE, &dst, fj->base.err,
                        sizeof(fj->base.err));
    if (rc < 0)
        return rc;
    struct uid_range all = {1, UINT32_MAX};
    rc = mailstore_copy(db, account_id, inbox.id, &all, 1, dst.id, true, false, NULL, NULL, NULL,
                        fj->base.err, sizeof(fj->base.err));
    return rc == MAIL_EINVAL ? 0 : rc;
}

static int fail_with(struct folder_job *fj, const char *code, int rc, const char *text)
{
    fj->code = code;
    snprintf(fj->base.err, sizeof(fj->base.err), "%s", text);
    return rc;
}

/* RFC 4314 §4: creating a folder in another account needs "k" on its parent (a new top-level
 * folder there is the owner's alone to make). 0 or a FOLDERS_* code with fj->code set. */
static int parent_may_create(PGconn *db, struct folder_job *fj, const struct imap_mailbox *mb,
                             const char *path)
{
    if (mb->name.ns == IMAP_NS_PERSONAL)
        return 0;
    const char *slash = strrchr(path, '/');
    if (!slash)
        return fail_with(fj, "[NOPERM] ", FOLDERS_EINVAL,
                         "Only the owner creates top-level folders in an account");
    char parent[FOLDERS_PATH_MAX + 1];
    snprintf(parent, sizeof(parent), "%.*s", (int)(slash - path), path);
    struct folder pf;
    int rc = folders_find_path(db, mb->owner_id, parent, &pf);
    if (rc < 0 && rc != FOLDERS_ENOTFOUND)
        return -1;
    unsigned rights = rc == 0 ? imap_rights_now(db, fj->base.account_id, pf.id, mb->owner_id) : 0;
    if (!(rights & ACL_K))
        return fail_with(fj, rights & ACL_L ? "[NOPERM] " : "[NONEXISTENT] ", FOLDERS_EINVAL,
                         rights & ACL_L ? "No right to create folders there"
                                        : "The parent mailbox does not exist");
    return 0;
}

static int op_create(PGconn *db, struct folder_job *fj, const struct imap_mailbox *mb, int found)
{
    long long acc = fj->base.account_id;
    if (mb->container) {
        if (mb->name.ns == IMAP_NS_SHARED && mb->owner_id) {
            /* seed 000 "Sharing Concepts": CREATE "~user@domain" subscribes to that user's shared
             * folders instead of creating one */
            int n = 0;
            if (sharing_subscribe_owner(db, acc, mb->owner_id, true, &n, fj->base.err,
                                        sizeof(fj->base.err)) < 0)
                return -1;
            if (n == 0)
                return fail_with(fj, "[NONEXISTENT] ", FOLDERS_ENOTFOUND,
                                 "No folders of that account are shared with you");
            fj->done_text = "CREATE completed: subscribed to the shared folders";
            return 0;
        }
        if (mb->name.ns == IMAP_NS_PUBLIC && mb->owner_id)
            return fail_with(fj, "[ALREADYEXISTS] ", FOLDERS_EEXIST,
                             "Public folders are shown without subscribing");
        return fail_with(fj, "[CANNOT] ", FOLDERS_EINVAL, "That name is a namespace");
    }
    if (found == 0)
        return fail_with(fj, "[ALREADYEXISTS] ", FOLDERS_EEXIST, "Mailbox exists");
    if (!mb->owner_id)
        return fail_with(fj, "[NONEXISTENT] ", FOLDERS_ENOTFOUND, "No such account");
    if (mb->name.ns != IMAP_NS_PERSONAL && fj->role != FOLDER_ROLE_NONE)
        return fail_with(fj, "[USEATTR] ", FOLDERS_EINVAL,
                         "Special use is for one's own mailboxes");
    int rc = parent_may_create(db, fj, mb, mb->name.path);
    if (rc != 0)
        return rc;
    if (fj->role != FOLDER_ROLE_NONE && folders_find_role(db, acc, fj->role, NULL) == 0)
        return fail_with(fj, "[USEATTR] ", FOLDERS_EEXIST,
                         "A mailbox with that special use exists");
    return folders_create(db, mb->owner_id, mb->name.path, FOLDER_KIND_MAIL, fj->role, NULL,
                          fj->base.err, sizeof(fj->base.err));
}

static int op_delete(PGconn *db, struct folder_job *fj, const struct imap_mailbox *mb, int found)
{
    if (mb->container) {
        if (mb->name.ns == IMAP_NS_SHARED && mb->owner_id) {
            /* the counterpart of the CREATE above: unsubscribes from that user */
            if (sharing_subscribe_owner(db, fj->base.account_id, mb->owner_id, false, NULL,
                                        fj->base.err, sizeof(fj->base.err)) < 0)
                return -1;
            fj->done_text = "DELETE completed: unsubscribed from the shared folders";
            return 0;
        }
        return fail_with(fj, "[CANNOT] ", FOLDERS_EINVAL, "That name is not a mailbox");
    }
    if (found != 0)
        return FOLDERS_ENOTFOUND;
    if (mb->name.ns == IMAP_NS_PERSONAL && !strcmp(mb->name.path, "INBOX"))
        return fail_with(fj, "[CANNOT] ", FOLDERS_EINVAL, "INBOX cannot be deleted");
    if (!(mb->rights & ACL_X)) /* RFC 4314 §4: DELETE needs "x" */
        return fail_with(fj, "[NOPERM] ", FOLDERS_EINVAL, "No right to delete this mailbox");
    fj->owner_path = mb->name.path;
    if (folders_list(db, mb->owner_id, has_children_cb, fj, fj->base.err, sizeof(fj->base.err)) < 0)
        return -1;
    if (fj->code) {
        /* RFC 9051 §6.3.4: a mailbox with inferiors is not deleted here */
        snprintf(fj->base.err, sizeof(fj->base.err), "Mailbox has children; delete them first");
        return FOLDERS_EINVAL;
    }
    return folders_delete(db, mb->owner_id, mb->name.path, fj->base.err, sizeof(fj->base.err));
}

static int op_rename(PGconn *db, struct folder_job *fj, const struct imap_mailbox *mb, int found)
{
    struct imap_mailbox to;
    int rc = imap_mailbox_resolve(db, fj->base.account_id, fj->base.cfg, fj->path2, &to,
                                  fj->base.err, sizeof(fj->base.err));
    if (rc == -1)
        return -1;
    *fj->base.err = '\0';
    if (mb->container || to.container)
        return fail_with(fj, "[CANNOT] ", FOLDERS_EINVAL, "That name is not a mailbox");
    if (found != 0)
        return FOLDERS_ENOTFOUND;
    if (to.name.ns != mb->name.ns || to.owner_id != mb->owner_id)
        return fail_with(fj, "[CANNOT] ", FOLDERS_EINVAL, "Mailboxes move only within one account");
    if (rc == 0)
        return fail_with(fj, "[ALREADYEXISTS] ", FOLDERS_EEXIST, "Target mailbox exists");
    if (!(mb->rights & ACL_X)) /* RFC 4314 §4: RENAME needs "x", and "k" on the new parent */
        return fail_with(fj, "[NOPERM] ", FOLDERS_EINVAL, "No right to rename this mailbox");
    if ((rc = parent_may_create(db, fj, &to, to.name.path)) != 0)
        return rc;
    if (mb->name.ns == IMAP_NS_PERSONAL && !strcmp(mb->name.path, "INBOX"))
        return rename_inbox(db, fj, mb->owner_id, to.name.path);
    return folders_rename(db, mb->owner_id, mb->name.path, to.name.path, fj->base.err,
                          sizeof(fj->base.err));
}

static int op_subscribe(PGconn *db, struct folder_job *fj, const struct imap_mailbox *mb, int found)
{
    long long acc = fj->base.account_id;
    bool on = fj->op == OP_SUBSCRIBE;
    if (mb->name.ns == IMAP_NS_PUBLIC) {
        /* seed 000 "Public Folders": shown without subscribing; they always count as
         * subscribed, so both directions change nothing */
        if (found != 0 && !mb->container)
            return FOLDERS_ENOTFOUND;
        return 0;
    }
    if (mb->container) {
        if (!mb->owner_id)
            return fail_with(fj, "[CANNOT] ", FOLDERS_EINVAL, "That name is a namespace");
        int n = 0;
        if (sharing_subscribe_owner(db, acc, mb->owner_id, on, &n, fj->base.err,
                                    sizeof(fj->base.err)) < 0)
            return -1;
        if (on && n == 0)
            return fail_with(fj, "[NONEXISTENT] ", FOLDERS_ENOTFOUND,
                             "No folders of that account are shared with you");
        return 0;
    }
    if (found == 0 && (mb->name.ns == IMAP_NS_PERSONAL || (mb->rights & ACL_L)))
        return folders_subscribe(db, acc, mb->f.id, on);
    if (!on && mb->owner_id && mb->name.ns == IMAP_NS_SHARED) {
        /* a folder no longer shared may still be subscribed: let it go */
        struct folder f;
        int rc = folders_find_path(db, mb->owner_id, mb->name.path, &f);
        return rc == 0 ? folders_subscribe(db, acc, f.id, false) : rc;
    }
    return FOLDERS_ENOTFOUND;
}

static void folder_work(struct imap_job *j, PGconn *db)
{
    struct folder_job *fj = (struct folder_job *)j;
    struct imap_mailbox mb;
    int found =
        imap_mailbox_resolve(db, j->account_id, j->cfg, fj->path, &mb, j->err, sizeof(j->err));
    int rc;
    if (found == -1) {
        rc = -1;
    } else {
        *j->err = '\0';
        switch (fj->op) {
        case OP_CREATE:
            rc = op_create(db, fj, &mb, found);
            break;
        case OP_DELETE:
            rc = op_delete(db, fj, &mb, found);
            break;
        case OP_RENAME:
            rc = op_rename(db, fj, &mb, found);
            break;
        default:
            rc = op_subscribe(db, fj, &mb, found);
            break;
        }
    }
    if (rc == FOLDERS_ENOTFOUND && !fj->code)
        fj->code = "[NONEXISTENT] ";
    if (rc == FOLDERS_EEXIST && !fj->code)
        fj->code = "[ALREADYEXISTS] ";
    if (rc == FOLDERS_EINVAL && !fj->code)
        fj->code = "[CANNOT] ";
    if (rc == -1 && !*j->err)
        snprintf(j->err, sizeof(j->err), "%s", PQerrorMessage(db));
    j->rc = rc;
    bool tree_changed = fj->op != OP_SUBSCRIBE && fj->op != OP_UNSUBSCRIBE && !mb.container;
    if (rc == 0 && tree_changed && mb.owner_id) {
        long long ms = 0;
        if (changes_current_modseq(db, mb.owner_id, &ms) == 0)
            imap_notify_publish(mb.owner_id, 0, ms, FLOE__BUS__MAILBOX_CHANGE__KIND__FOLDERS);
    }
}

static void folder_done(struct imap_session *s, struct imap_job *j)
{
    struct folder_job *fj = (struct folder_job *)j;
    static const char *const names[] = {"CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE"};
    if (j->rc == 0 && fj->op == OP_DELETE && s->state == IMAP_SELECTED &&
        !strcmp(s->view.path, fj->path))
        imap_unselect(s, true); /* this session deleted its own selected mailbox */
    if (imap_view_apply(s, j->changes, true) < 0)
        return;
    if (j->rc == 0) {
        if (fj->op == OP_RENAME && s->state == IMAP_SELECTED && !strcmp(s->view.path, fj->path))
            snprintf(s->view.path, sizeof(s->view.path), "%s", fj->path2);
        if (fj->done_text)
            imap_tagged(s, "OK", "%s", fj->done_text);
        else
            imap_tagged(s, "OK", "%s completed", names[fj->op]);
        return;
    }
    if (j->rc == -1 || !fj->code) {
        conn_log(s->c, LOG_SUMMARY, "%s failed: %s", names[fj->op], j->err);
        imap_tagged(s, "NO", "[SERVERBUG] %s failed", names[fj->op]);
        return;
    }
    for (char *p = j->err; *p; p++)
        if (*p == '\r' || *p == '\n')
            *p = ' ';
    imap_tagged(s, "NO", "%s%s", fj->code, *j->err ? j->err : "Failed");
}

static struct folder_job *folder_job_new(struct imap_session *s, enum folder_op op)
{
    struct folder_job *fj = calloc(1, sizeof(*fj));
    if (!fj) {
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return NULL;
    }
    fj->op = op;
    fj->base.work = folder_work;
    fj->base.done = folder_done;
    return fj;
}

void imap_cmd_create(struct imap_session *s, const struct imap_arg *a, size_t n, bool f)
{
    if (n < 1 || n > 2) {
        imap_tagged(s, "BAD", "Syntax: CREATE mailbox [(USE (attributes))]");
        return;
    }
    struct folder_job *fj = folder_job_new(s, OP_CREATE);
    if (!fj)
        return;
    if (imap_arg_mailbox(s, &a[0], fj->path, sizeof(fj->path)) < 0) {
        free(fj);
        return;
    }
    if (n == 2) {
        /* RFC 6154 §3: CREATE name (USE (\Sent)) */
        size_t k, u;
        const struct imap_arg *l = imap_arg_list(&a[1], &k);
        const char *w = l && k == 2 ? imap_arg_atom(&l[0]) : NULL;
        const struct imap_arg *uses = w && !strcasecmp(w, "USE") ? imap_arg_list(&l[1], &u) : NULL;
        if (!uses) {
            free(fj);
            imap_tagged(s, "BAD", "Invalid CREATE parameters");
            return;
        }
        for (size_t i = 0; i < u; i++) {
            const char *attr = imap_arg_atom(&uses[i]);
            enum folder_role role;
            if (!attr || attr_role(attr, &role) < 0 || (fj->role && fj->role != role)) {
                free(fj);
                imap_tagged(s, "NO", "[USEATTR] Unsupported special-use attribute");
                return;
            }
            fj->role = role;
        }
    }
    if (!strcmp(fj->path, "INBOX")) {
        free(fj);
        imap_tagged(s, "NO", "[ALREADYEXISTS] INBOX exists");
        return;
    }
    imap_job_submit(s, &fj->base, true);
}

void imap_cmd_delete(struct imap_session *s, const struct imap_arg *a, size_t n, bool f)
{
    if (n != 1) {
        imap_tagged(s, "BAD", "Syntax: DELETE mailbox");
        return;
    }
    struct folder_job *fj = folder_job_new(s, OP_DELETE);
    if (!fj)
        return;
    if (imap_arg_mailbox(s, &a[0], fj->path, sizeof(fj->path)) < 0) {
        free(fj);
        return;
    }
    imap_job_submit(s, &fj->base, true);
}

void imap_cmd_rename(struct imap_session *s, const struct imap_arg *a, size_t n, bool f)
{
    if (n != 2) {
        imap_tagged(s, "BAD", "Syntax: RENAME old new");
        return;
    }
    struct folder_job *fj = folder_job_new(s, OP_RENAME);
    if (!fj)
        return;
    if (imap_arg_mailbox(s, &a[0], fj->path, sizeof(fj->path)) < 0 ||
        imap_arg_mailbox(s, &a[1], fj->path2, sizeof(fj->path2)) < 0) {
        free(fj);
        return;
    }
    if (!strcmp(fj->path2, "INBOX")) {
        free(fj);
        imap_tagged(s, "NO", "[ALREADYEXISTS] INBOX exists");
        return;
    }
    imap_job_submit(s, &fj->base, true);
}

void imap_cmd_subscribe(struct imap_session *s, const struct imap_arg *a, size_t n, bool on)
{
    if (n != 1) {
        imap_tagged(s, "BAD", on ? "Syntax: SUBSCRIBE mailbox" : "Syntax: UNSUBSCRIBE mailbox");
        return;
    }
    struct folder_job *fj = folder_job_new(s, on ? OP_SUBSCRIBE : OP_UNSUBSCRIBE);
    if (!fj)
        return;
    if (imap_arg_mailbox(s, &a[0], fj->path, sizeof(fj->path)) < 0) {
        free(fj);
        return;
    }
    imap_job_submit(s, &fj->base, true);
}

/* ---- LIST and LSUB ---- */

struct list_entry {
    char *path; /* the client's name */
    long long id;
    enum folder_kind kind;
    enum folder_role role;
    unsigned rights; /* ACL_ALL in one's own tree */
    bool other;      /* another account's folder (shared or public) */
    bool visible;    /* may be listed as itself: one's own, or "l" (RFC 4314 §4) */
    bool synthetic;  /* a level above other accounts' folders: a name, not a folder */
    bool subscribed, children, mail_below, sub_below;
};

struct list_job {
    struct imap_job base;
    bool lsub, utf8;
    char **patterns;
    size_t npatterns;
    bool sel_subscribed, sel_special, recursive;
    bool ret_subscribed;
    /* RETURN (CHILDREN) and (SPECIAL-USE): accepted; both are always returned */
    bool ret_children, ret_special;
    unsigned status_mask;
    uint64_t append_limit;
    struct list_entry *e;
    size_t n, cap;
    bool oom;
    struct imap_envelope_out out;
};

static void list_destroy(struct imap_job *j)
{
    struct list_job *lj = (struct list_job *)j;
    for (size_t i = 0; i < lj->npatterns; i++)
        free(lj->patterns[i]);
    free(lj->patterns);
    for (size_t i = 0; i < lj->n; i++)
        free(lj->e[i].path);
    free(lj->e);
    imap_envelope_out_free(&lj->out);
    free(lj);
}

/* A new zeroed entry named path, or NULL (lj->oom set, or the list is full). */
static struct list_entry *entry_add(struct list_job *lj, const char *path)
{
    if (lj->n >= IMAP_LIST_MAX)
        return NULL;
    if (lj->n == lj->cap) {
        size_t cap = lj->cap ? lj->cap * 2 : 64;
        struct list_entry *t = realloc(lj->e, cap * sizeof(*t));
        if (!t)
            return lj->oom = true, NULL;
        lj->e = t;
        lj->cap = cap;
    }
    struct list_entry *e = &lj->e[lj->n];
    memset(e, 0, sizeof(*e));
    if (!(e->path = strdup(path)))
        return lj->oom = true, NULL;
    lj->n++;
    return e;
}

static int list_cb(const struct folder *f, void *ctx)
{
    struct list_job *lj = ctx;
    struct list_entry *e = entry_add(lj, f->path);
    if (!e)
        return 1;
    e->id = f->id;
    e->kind = f->kind;
    e->role = f->role;
    e->rights = ACL_ALL;
    e->visible = true;
    return 0;
}

static int sub_cb(const struct folder *f, void *ctx)
{
    struct list_job *lj = ctx;
    for (size_t i = 0; i < lj->n; i++)
        if (lj->e[i].id == f->id) {
            lj->e[i].subscribed = true;
            break;
        }
    return 0;
}

/* Another account's folder (storage/sharing.h), under its namespace's name. */
static int shared_cb(const struct sharing_folder *sf, void *ctx)
{
    struct list_job *lj = ctx;
    char name[IMAP_NAME_MAX + 1];
    if (imap_name_join(lj->base.cfg, sf->owner_is_group ? IMAP_NS_PUBLIC : IMAP_NS_SHARED,
                       sf->owner, sf->f.path, name, sizeof(name)) < 0)
        return 0;
    struct list_entry *e = entry_add(lj, name);
    if (!e)
        return 1;
    e->id = sf->f.id;
    e->kind = sf->f.kind;
    e->role = sf->f.role;
    e->rights = sf->rights;
    e->other = true;
    e->visible = (sf->rights & ACL_L) != 0;
    /* public folders count as subscribed without subscribing (seed 000 "Public Folders") */
    e->subscribed = sf->owner_is_group || sf->subscribed;
    return 0;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp((*(const struct list_entry *const *)a)->path,
                  (*(const struct list_entry *const *)b)->path);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static struct list_entry *find_entry(struct list_entry **sorted, size_t n, const char *path)
{
    struct list_entry key = {.path = (char *)(uintptr_t)path}, *kp = &key;
    struct list_entry **hit = bsearch(&kp, sorted, n, sizeof(*sorted), entry_cmp);
    return hit ? *hit : NULL;
}

static struct list_entry **sorted_entries(struct list_job *lj)
{
    struct list_entry **sorted = malloc((lj->n ? lj->n : 1) * sizeof(*sorted));
    if (!sorted)
        return NULL;
    for (size_t i = 0; i < lj->n; i++)
        sorted[i] = &lj->e[i];
    qsort(sorted, lj->n, sizeof(*sorted), entry_cmp);
    return sorted;
}

/* The levels above other accounts' folders that are not folders the client may see
 * ("~john@example.test", "Public Folders"): added as synthetic \Noselect entries, so a client
 * walking the hierarchy level by level finds what lies below (RFC 9051 §6.3.9). 0 or -1. */
static int add_levels(struct list_job *lj)
{
    struct list_entry **sorted = sorted_entries(lj);
    char **missing = NULL;
    size_t nmissing = 0, capmissing = 0, n = lj->n;
    int rc = sorted ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!lj->e[i].other)
            continue;
        char path[IMAP_NAME_MAX + 1];
        snprintf(path, sizeof(path), "%s", lj->e[i].path);
        char *slash;
        while (rc == 0 && (slash = strrchr(path, '/'))) {
            *slash = '\0';
            if (find_entry(sorted, n, path))
                continue;
            if (nmissing == capmissing) {
                size_t cap = capmissing ? capmissing * 2 : 16;
                char **t = realloc(missing, cap * sizeof(*t));
                if (!t) {
                    rc = -1;
                    break;
                }
                missing = t;
                capmissing = cap;
            }
            if (!(missing[nmissing] = strdup(path)))
                rc = -1;
            else
                nmissing++;
        }
    }
    free(sorted);
    if (nmissing)
        qsort(missing, nmissing, sizeof(*missing), str_cmp);
    for (size_t i = 0; rc == 0 && i < nmissing; i++) {
        if (i && !strcmp(missing[i], missing[i - 1]))
            continue;
        struct list_entry *e = entry_add(lj, missing[i]);
        if (!e)
            break; /* out of memory (lj->oom) or the list is full */
        e->kind = FOLDER_KIND_MAIL;
        e->other = e->synthetic = true;
    }
    for (size_t i = 0; i < nmissing; i++)
        free(missing[i]);
    free(missing);
    return rc < 0 || lj->oom ? -1 : 0;
}

/* May be selected: a mail folder the client may see. */
static bool selectable(const struct list_entry *e)
{
    return e->kind == FOLDER_KIND_MAIL && e->visible && !e->synthetic;
}

/* Marks every ancestor of e: it has children, mail below it, subscriptions below it. */
static void mark_ancestors(struct list_entry **sorted, size_t n, const struct list_entry *e)
{
    /* a folder that is not listed itself (no "l", or not mail and nothing below) counts for
     * nothing above it */
    if (!selectable(e) && !e->mail_below)
        return;
    char path[IMAP_NAME_MAX + 1];
    snprintf(path, sizeof(path), "%s", e->path);
    char *slash;
    while ((slash = strrchr(path, '/'))) {
        *slash = '\0';
        struct list_entry *p = find_entry(sorted, n, path);
        if (!p)
            continue;
        p->children = true;
        p->mail_below = true;
        if (e->subscribed)
            p->sub_below = true;
    }
}

static bool matches(const struct list_job *lj, const char *path)
{
    for (size_t i = 0; i < lj->npatterns; i++)
        if (imap_list_match(lj->patterns[i], path))
            return true;
    return false;
}

static void list_work(struct imap_job *j, PGconn *db)
{
    struct list_job *lj = (struct list_job *)j;
    if (folders_list(db, j->account_id, list_cb, lj, j->err, sizeof(j->err)) < 0 ||
        folders_subscriptions(db, j->account_id, sub_cb, lj) < 0 ||
        /* other users' folders once subscribed to them; public folders always */
        sharing_list(db, j->account_id, SHARING_USERS, true, 0, shared_cb, lj, j->err,
                     sizeof(j->err)) < 0 ||
        sharing_list(db, j->account_id, SHARING_GROUPS, false, 0, shared_cb, lj, j->err,
                     sizeof(j->err)) < 0) {
        j->rc = -2;
        return;
    }
    if (lj->oom || add_levels(lj) < 0) {
        j->rc = -1;
        return;
    }
    struct list_entry **sorted = sorted_entries(lj);
    if (!sorted) {
        j->rc = -1;
        return;
    }
    /* deepest first, so that "mail below" travels up through levels that are not listed */
    for (size_t i = lj->n; i-- > 0;)
        mark_ancestors(sorted, lj->n, sorted[i]);
    free(sorted);

    struct imap_envelope_out *out = &lj->out;
    for (size_t i = 0; i < lj->n; i++) {
        struct list_entry *e = &lj->e[i];
        bool mail = selectable(e);
        /* mail folders, and other folders only as the \Noselect parents of mail folders */
        if (!mail && !e->mail_below)
            continue;
        if (!matches(lj, e->path))
            continue;
        bool childinfo = false;
        if (lj->sel_subscribed && !(e->subscribed && mail)) {
            /* RFC 5258 §3.5: RECURSIVEMATCH lists parents of subscribed mailboxes */
            if (!(lj->recursive && e->sub_below))
                continue;
            childinfo = true;
        }
        const char *special = mail && !e->other ? role_attr(e->role) : NULL;
        if (lj->sel_special && !special)
            continue;
        char attrs[128];
        size_t o = 0;
        attrs[0] = '\0';
#define ATTR(s) o += (size_t)snprintf(attrs + o, sizeof(attrs) - o, "%s%s", o ? " " : "", s)
        if (!childinfo) {
            if (!mail)
                ATTR("\\Noselect");
            if (!lj->lsub)
                ATTR(e->children ? "\\HasChildren" : "\\HasNoChildren");
            if (e->subscribed && mail && (lj->ret_subscribed || lj->sel_subscribed) && !lj->lsub)
                ATTR("\\Subscribed");
            if (special)
                ATTR(special);
        }
#undef ATTR
        imap_envelope_out_add(out, lj->lsub ? "* LSUB (" : "* LIST (", 8);
        imap_envelope_out_add(out, attrs, o);
        imap_envelope_out_add(out, ") \"/\" ", 6);
        put_mailbox(out, e->path, lj->utf8);
        if (childinfo)
            imap_envelope_out_add(out, " (\"CHILDINFO\" (\"SUBSCRIBED\"))", 29);
        imap_envelope_out_add(out, "\r\n", 2);
        if (lj->status_mask && mail && !childinfo && (e->rights & ACL_R)) {
            /* RFC 5819 §2: the STATUS of each listed selectable mailbox follows its LIST (RFC
             * 4314 §4: STATUS needs "r") */
            char err[256];
            if (status_line(db, e->id, e->path, lj->status_mask, lj->utf8, lj->append_limit, out,
                            err, sizeof(err)) == -1) {
                snprintf(j->err, sizeof(j->err), "%s", err);
                j->rc = -2;
                return;
            }
        }
        if (out->failed)
            break;
    }
    j->rc = out->failed ? -1 : 0;
}

static void list_done(struct imap_session *s, struct imap_job *j)
{
    struct list_job *lj = (struct list_job *)j;
    if (j->rc != 0) {
        conn_log(s->c, LOG_SUMMARY, "LIST failed: %s", j->err);
        imap_view_apply(s, j->changes, true);
        imap_tagged(s, "NO", "[UNAVAILABLE] %s failed", lj->lsub ? "LSUB" : "LIST");
        return;
    }
    if (lj->out.len)
        imap_write(s, lj->out.data, lj->out.len);
    if (imap_view_apply(s, j->changes, true) < 0)
        return;
    imap_tagged(s, "OK", "%s completed", lj->lsub ? "LSUB" : "LIST");
}

/* A reference or pattern from the client, to UTF-8 ('*' and '%' pass through modified UTF-7). */
static char *list_text(struct imap_session *s, const struct imap_arg *a)
{
    const char *t = imap_arg_astring(a);
    if (!t) {
        /* list-mailbox also allows atoms with '%' and '*', which the reader gives as atoms */
        t = imap_arg_atom(a);
        if (!t)
            return NULL;
    }
    if (s->utf8)
        return utf8_check(t, strlen(t), UTF8_NO_C0) ? strdup(t) : NULL;
    char *out = NULL;
    if (imap_utf7_decode(t, strlen(t), &out, NULL, NULL, 0) < 0)
        return NULL;
    return out;
}

static int add_pattern(struct list_job *lj, const char *ref, const char *pat)
{
    char **t = realloc(lj->patterns, (lj->npatterns + 1) * sizeof(*t));
    if (!t)
        return -1;
    lj->patterns = t;
    size_t rl = strlen(ref), pl = strlen(pat);
    char *p = malloc(rl + pl + 2);
    if (!p)
        return -1;
    /* RFC 9051 §6.3.9: the reference and the pattern are joined; a pattern starting with the
     * delimiter ignores a reference that ends with it */
    if (rl && ref[rl - 1] == '/' && pat[0] == '/')
        rl--;
    memcpy(p, ref, rl);
    memcpy(p + rl, pat, pl + 1);
    lj->patterns[lj->npatterns++] = p;
    return 0;
}

static int list_options(struct list_job *lj, const struct imap_arg *sel, const struct imap_arg *ret)
{
    size_t n;
    const struct imap_arg *l;
    if (sel) {
        if (!(l = imap_arg_list(sel, &n)))
            return -1;
        for (size_t i = 0; i < n; i++) {
            const char *w = imap_arg_atom(&l[i]);
            if (!w)
                return -1;
            if (!strcasecmp(w, "SUBSCRIBED"))
                lj->sel_subscribed = true;
            else if (!strcasecmp(w, "SPECIAL-USE"))
                lj->sel_special = true;
            else if (!strcasecmp(w, "RECURSIVEMATCH"))
                lj->recursive = true;
            else if (strcasecmp(w, "REMOTE") != 0)
                return -1; /* RFC 5258 §3: unknown selection options are errors */
        }
        /* RFC 5258 §3.1: RECURSIVEMATCH needs another selection option */
        if (lj->recursive && !lj->sel_subscribed && !lj->sel_special)
            return -1;
    }
    if (ret) {
        if (!(l = imap_arg_list(ret, &n)))
            return -1;
        for (size_t i = 0; i < n; i++) {
            const char *w = imap_arg_atom(&l[i]);
            if (!w)
                return -1;
            if (!strcasecmp(w, "SUBSCRIBED"))
                lj->ret_subscribed = true;
            else if (!strcasecmp(w, "CHILDREN"))
                lj->ret_children = true;
            else if (!strcasecmp(w, "SPECIAL-USE"))
                lj->ret_special = true;
            else if (!strcasecmp(w, "STATUS") && i + 1 < n) {
                if (parse_status_items(&l[++i], &lj->status_mask) < 0)
                    return -1;
            } else
                return -1;
        }
    }
    return 0;
}

void imap_cmd_list(struct imap_session *s, const struct imap_arg *a, size_t n, bool lsub)
{
    /* LIST [(selection)] reference (pattern | (patterns)) [RETURN (options)] */
    size_t i = 0;
    const struct imap_arg *sel = NULL, *ret = NULL;
    if (!lsub && n > 0 && a[0].type == IMAP_ARG_LIST)
        sel = &a[i++];
    if (n < i + 2) {
        imap_tagged(s, "BAD",
                    lsub ? "Syntax: LSUB reference pattern"
                         : "Syntax: LIST [(options)] reference pattern");
        return;
    }
    const struct imap_arg *ref_arg = &a[i], *pat_arg = &a[i + 1];
    i += 2;
    if (!lsub && n == i + 2) {
        const char *w = imap_arg_atom(&a[i]);
        if (!w || strcasecmp(w, "RETURN") || a[i + 1].type != IMAP_ARG_LIST) {
            imap_tagged(s, "BAD", "Invalid LIST return options");
            return;
        }
        ret = &a[i + 1];
        i += 2;
    }
    if (n != i) {
        imap_tagged(s, "BAD", "Invalid LIST arguments");
        return;
    }
    struct list_job *lj = calloc(1, sizeof(*lj));
    if (!lj) {
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    lj->base.destroy = list_destroy;
    lj->lsub = lsub;
    lj->utf8 = s->utf8;
    lj->append_limit = s->cfg.append_limit;
    if (list_options(lj, sel, ret) < 0) {
        list_destroy(&lj->base);
        imap_tagged(s, "BAD", "Invalid LIST options");
        return;
    }
    if (lsub)
        lj->sel_subscribed = true;
    if (lj->status_mask & ST_HIGHESTMODSEQ)
        s->condstore = true;
    char *ref = list_text(s, ref_arg);
    if (!ref) {
        list_destroy(&lj->base);
        imap_tagged(s, "BAD", "Invalid reference name");
        return;
    }
    size_t np = 1;
    const struct imap_arg *pats = pat_arg;
    if (!lsub && pat_arg->type == IMAP_ARG_LIST && !(pats = imap_arg_list(pat_arg, &np))) {
        np = 0;
    }
    bool empty_only = true;
    for (size_t k = 0; k < np; k++) {
        char *p = list_text(s, &pats[k]);
        if (!p || add_pattern(lj, ref, p) < 0) {
            free(p);
            free(ref);
            list_destroy(&lj->base);
            imap_tagged(s, "BAD", "Invalid mailbox pattern");
            return;
        }
        if (*p)
            empty_only = false;
        free(p);
    }
    free(ref);
    if (np == 0) {
        list_destroy(&lj->base);
        imap_tagged(s, "BAD", "Mailbox pattern expected");
        return;
    }
    if (empty_only && !lsub) {
        /* RFC 9051 §6.3.9: an empty pattern asks for the hierarchy delimiter */
        list_destroy(&lj->base);
        imap_printf(s, "* LIST (\\Noselect) \"/\" \"\"\r\n");
        imap_tagged(s, "OK", "LIST completed");
        return;
    }
    lj->base.work = list_work;
    lj->base.done = list_done;
    imap_job_submit(s, &lj->base, true);
}

/* ---- STATUS ---- */

struct status_job {
    struct imap_job base;
    char path[IMAP_NAME_MAX + 1];
    unsigned mask, rights;
    bool utf8, notfound, noperm;
    uint64_t append_limit;
    struct imap_envelope_out out;
};

static void status_destroy(struct imap_job *j)
{
    struct status_job *sj = (struct status_job *)j;
    imap_envelope_out_free(&sj->out);
    free(sj);
}

static void status_work(struct imap_job *j, PGconn *db)
{
    struct status_job *sj = (struct status_job *)j;
    struct imap_mailbox mb;
    int rc = imap_mailbox_resolve(db, j->account_id, j->cfg, sj->path, &mb, j->err, sizeof(j->err));
    if (rc == IMAP_MB_ENOTFOUND || (rc == 0 && (!mb.found || mb.f.kind != FOLDER_KIND_MAIL))) {
        sj->notfound = true;
        j->rc = -1;
        return;
    }
    if (rc < 0) {
        j->rc = -2;
        return;
    }
    if (!(mb.rights & ACL_R)) { /* RFC 4314 §4: STATUS needs "r" */
        sj->noperm = true;
        sj->rights = mb.rights;
        j->rc = -1;
        return;
    }
    j->rc = status_line(db, mb.f.id, sj->path, sj->mask, sj->utf8, sj->append_limit, &sj->out,
                        j->err, sizeof(j->err));
}

static void status_done(struct imap_session *s, struct imap_job *j)
{
    struct status_job *sj = (struct status_job *)j;
    if (j->rc == 0 && sj->out.len)
        imap_write(s, sj->out.data, sj->out.len);
    if (imap_view_apply(s, j->changes, true) < 0)
        return;
    if (j->rc == 0)
        imap_tagged(s, "OK", "STATUS completed");
    else if (sj->notfound)
        imap_tagged(s, "NO", "[NONEXISTENT] No such mailbox");
    else if (sj->noperm)
        imap_tagged(s, "NO", "%s", imap_noperm_text(sj->rights));
    else {
        conn_log(s->c, LOG_SUMMARY, "STATUS failed: %s", j->err);
        imap_tagged(s, "NO", "[UNAVAILABLE] STATUS failed");
    }
}

void imap_cmd_status(struct imap_session *s, const struct imap_arg *a, size_t n, bool f)
{
    if (n != 2) {
        imap_tagged(s, "BAD", "Syntax: STATUS mailbox (items)");
        return;
    }
    struct status_job *sj = calloc(1, sizeof(*sj));
    if (!sj) {
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    sj->base.destroy = status_destroy;
    if (imap_arg_mailbox(s, &a[0], sj->path, sizeof(sj->path)) < 0) {
        status_destroy(&sj->base);
        return;
    }
    if (parse_status_items(&a[1], &sj->mask) < 0) {
        status_destroy(&sj->base);
        imap_tagged(s, "BAD", "Invalid STATUS items");
        return;
    }
    if (sj->mask & ST_HIGHESTMODSEQ)
        s->condstore = true; /* RFC 7162 §3.1 */
    sj->utf8 = s->utf8;
    sj->append_limit = s->cfg.append_limit;
    sj->base.work = status_work;
    sj->base.done = status_done;
    imap_job_submit(s, &sj->base, true);
}

/* ---- NAMESPACE, CLOSE, UNSELECT ---- */

/* RFC 2342 §5: a namespace prefix is a string, never an atom. */
static void put_prefix(struct imap_envelope_out *out, const char *prefix, bool utf8)
{
    if (utf8) {
        imap_quote_append(out, prefix, strlen(prefix), IMAP_QUOTE_UTF8);
        return;
    }
    char *enc = NULL;
    size_t len;
    if (imap_utf7_encode(prefix, strlen(prefix), &enc, &len, NULL, 0) < 0) {
        out->failed = true;
        return;
    }
    imap_quote_append(out, enc, len, 0);
    free(enc);
}

void imap_cmd_namespace(struct imap_session *s, const struct imap_arg *a, size_t n, bool f)
{
    if (n) {
        imap_tagged(s, "BAD", "NAMESPACE takes no arguments");
        return;
    }
    /* RFC 2342 §5: personal, other users' and shared (public) namespaces */
    struct imap_envelope_out o = {0};
    imap_envelope_out_add(&o, "* NAMESPACE ((\"\" \"/\")) ((", 25);
    put_prefix(&o, s->cfg.shared_prefix, s->utf8);
    imap_envelope_out_add(&o, " \"/\")) ((", 9);
    put_prefix(&o, s->cfg.public_prefix, s->utf8);
    imap_envelope_out_add(&o, " \"/\"))\r\n", 8);
    if (o.data)
        imap_write(s, o.data, o.len);
    imap_envelope_out_free(&o);
    imap_tagged(s, "OK", "NAMESPACE completed");
}

void imap_cmd_close(struct imap_session *s, const struct imap_arg *a, size_t n, bool unselect)
{
    if (n) {
        imap_tagged(s, "BAD", "No arguments expected");
        return;
    }
    if (unselect || s->view.readonly || !(s->view.rights & ACL_E)) {
        /* RFC 3691 UNSELECT, and CLOSE of a read-only mailbox or without the expunge right
         * (RFC 4314 §4): nothing is expunged */
        imap_unselect(s, false);
        imap_tagged(s, "OK", unselect ? "UNSELECT completed" : "CLOSE completed");
        return;
    }
    imap_expunge_start(s, true);
}
