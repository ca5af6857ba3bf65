/* Commands that change messages of the selected mailbox: STORE (RFC 9051 §6.4.6, with RFC 7162
 * UNCHANGEDSINCE), COPY (§6.4.7) and MOVE (RFC 6851) with UIDPLUS COPYUID (RFC 4315),
 * EXPUNGE and UID EXPUNGE (RFC 4315 §2.1), and the plain "bring the view up to date" job of
 * NOOP, CHECK and IDLE.
 *
 * Sets are resolved against the view first (imap_arg_seqset), so a command only ever names
 * messages the client knows; the store's single-statement operations do the rest in one
 * transaction each. Changes are announced on the bus (notify.c) for other sessions.
 *
 * Rights (RFC 4314 §4), asked again on the worker for another account's folder, since the
 * owner may change them while it is selected: STORE changes \Seen only with "s", \Deleted
 * only with "t", other flags and keywords only with "w", and silently leaves alone what it may
 * not change (PERMANENTFLAGS told the client); COPY and MOVE need "i" on the target, MOVE also
 * "t" and "e" on the source; EXPUNGE needs "e". Changes in another account's folder take that
 * account's modseqs (the owner's change sequence is the folder's). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "node/imap/imap.h"
#include "proto/bus/bus.pb-c.h"
#include "storage/acl.h"
#include "storage/folders.h"
#include "storage/mailstore.h"

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

struct u32list {
    uint32_t *v;
    size_t n, cap;
    bool failed;
};

static void u32_add(struct u32list *l, uint32_t x)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        uint32_t *t = realloc(l->v, cap * sizeof(*t));
        if (!t) {
            l->failed = true;
            return;
        }
        l->v = t;
        l->cap = cap;
    }
    l->v[l->n++] = x;
}

/* A UID list as a sequence set ("1:3,7"), NULL when empty or out of memory. */
static char *u32_format(const uint32_t *v, size_t n)
{
    struct imap_seqset *set = imap_seqset_new(n + 1);
    char *txt = NULL;
    if (!set)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (imap_seqset_add(set, v[i]) < 0)
            goto out;
    if (imap_seqset_format(set, &txt, NULL) < 0)
        txt = NULL;
out:
    imap_seqset_free(&set);
    return txt;
}

/* ---- the plain refresh (NOOP, CHECK, IDLE) ---- */

struct sync_job {
    struct imap_job base;
    char text[64];
    bool answer;
};

static void sync_work(struct imap_job *j, PGconn *db)
{
    (void)j;
    (void)db;
}

static void sync_done(struct imap_session *s, struct imap_job *j)
{
    struct sync_job *sj = (struct sync_job *)j;
    long long before = s->view.known_modseq;
    if (imap_view_apply(s, j->changes, true) < 0)
        return;
    if (sj->answer) {
        imap_tagged(s, "OK", "%s", sj->text);
        return;
    }
    /* IDLE: a change announced while this ran may be newer than what it saw; look again,
     * unless this round learnt nothing (a notification naming a state never reached) */
    if (s->notified_modseq > s->view.known_modseq) {
        if (s->view.known_modseq > before && s->idling)
            imap_sync_start(s, NULL);
        else if (s->view.known_modseq == before)
            s->notified_modseq = s->view.known_modseq;
    }
}

void imap_sync_start(struct imap_session *s, const char *text)
{
    struct sync_job *sj = calloc(1, sizeof(*sj));
    if (!sj) {
        if (text)
            imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    sj->answer = text != NULL;
    snprintf(sj->text, sizeof(sj->text), "%s", text ? text : "");
    sj->base.work = sync_work;
    sj->base.done = sync_done;
    sj->base.quiet = text == NULL;
    imap_job_submit(s, &sj->base, true);
}

/* ---- STORE ---- */

struct store_job {
    struct imap_job base;
    struct uid_range *ranges;
    size_t nranges;
    enum mail_store_mode mode;
    unsigned flags;
    char **kw;
    size_t nkw;
    long long unchanged_since;
    bool silent, uid;
    /* results */
    struct imap_change_row *rows; /* every message of the set after the change (not silent) */
    size_t nrows, caprows;
    struct u32list changed_uids; /* changed by this STORE, with their new modseq below */
    long long *changed_modseqs;
    size_t capmodseqs;
    struct u32list failed; /* UNCHANGEDSINCE: modified meanwhile (RFC 7162 §3.1.3) */
    long long new_modseq;
    bool noperm; /* the rights to read the folder are gone */
    /* the union of the keywords of the set (FLAGS with partial rights) */
    char **have;
    size_t nhave, caphave;
    bool have_oom;
};

static void store_destroy(struct imap_job *j)
{
    struct store_job *sj = (struct store_job *)j;
    free(sj->ranges);
    for (size_t i = 0; i < sj->nkw; i++)
        free(sj->kw[i]);
    free(sj->kw);
    for (size_t i = 0; i < sj->nrows; i++)
        free(sj->rows[i].keywords);
    free(sj->rows);
    free(sj->changed_uids.v);
    free(sj->changed_modseqs);
    free(sj->failed.v);
    for (size_t i = 0; i < sj->nhave; i++)
        free(sj->have[i]);
    free(sj->have);
    free(sj);
}

static int store_changed(const struct mail_row *r, void *ctx)
{
    struct store_job *sj = ctx;
    u32_add(&sj->changed_uids, r->uid);
    if (sj->changed_uids.failed)
        return 1;
    if (sj->capmodseqs < sj->changed_uids.cap) {
        long long *t = realloc(sj->changed_modseqs, sj->changed_uids.cap * sizeof(*t));
        if (!t) {
            sj->changed_uids.failed = true;
            return 1;
        }
        sj->changed_modseqs = t;
        sj->capmodseqs = sj->changed_uids.cap;
    }
    sj->changed_modseqs[sj->changed_uids.n - 1] = r->modseq;
    sj->new_modseq = r->modseq;
    return 0;
}

static void store_failed(uint32_t uid, void *ctx)
{
    struct store_job *sj = ctx;
    u32_add(&sj->failed, uid);
}

static int store_row(const struct mail_row *r, void *ctx)
{
    struct store_job *sj = ctx;
    if (sj->nrows == sj->caprows) {
        size_t cap = sj->caprows ? sj->caprows * 2 : 64;
        struct imap_change_row *t = realloc(sj->rows, cap * sizeof(*t));
        if (!t)
            return 1;
        sj->rows = t;
        sj->caprows = cap;
    }
    size_t len = 1;
    for (size_t i = 0; i < r->nkeywords; i++)
        len += strlen(r->keywords[i]) + 1;
    char *kw = malloc(len), *p = kw;
    if (!kw)
        return 1;
    *p = '\0';
    for (size_t i = 0; i < r->nkeywords; i++)
        p += sprintf(p, "%s%s", i ? " " : "", r->keywords[i]);
    sj->rows[sj->nrows++] = (struct imap_change_row){
        .uid = r->uid, .flags = r->flags, .modseq = r->modseq, .keywords = kw};
    return 0;
}

static int collect_keywords(const struct mail_row *r, void *ctx)
{
    struct store_job *sj = ctx;
    for (size_t i = 0; i < r->nkeywords; i++) {
        bool dup = false;
        for (size_t k = 0; k < sj->nhave && !dup; k++)
            dup = !strcmp(sj->have[k], r->keywords[i]);
        for (size_t k = 0; k < sj->nkw && !dup; k++)
            dup = !strcasecmp(sj->kw[k], r->keywords[i]); /* asked for: stays */
        if (dup)
            continue;
        if (sj->nhave == sj->caphave) {
            size_t cap = sj->caphave ? sj->caphave * 2 : 16;
            char **t = realloc(sj->have, cap * sizeof(*t));
            if (!t)
                return sj->have_oom = true, 1;
            sj->have = t;
            sj->caphave = cap;
        }
        if (!(sj->have[sj->nhave] = strdup(r->keywords[i])))
            return sj->have_oom = true, 1;
        sj->nhave++;
    }
    return 0;
}

static int cmp_u32(const void *a, const void *b);

/* The ranges r[0..n) without the UIDs ex[0..nex) (ascending); *n_r ranges, NULL on OOM. */
static struct uid_range *ranges_without(const struct uid_range *r, size_t n, const uint32_t *ex,
                                        size_t nex, size_t *n_r)
{
    struct uid_range *out = malloc((n + nex + 1) * sizeof(*out));
    size_t o = 0, k = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        uint64_t lo = r[i].lo;
        while (k < nex && ex[k] < lo)
            k++;
        for (; k < nex && ex[k] <= r[i].hi; k++) {
            if (ex[k] > lo)
                out[o++] = (struct uid_range){(uint32_t)lo, ex[k] - 1};
            lo = (uint64_t)ex[k] + 1;
        }
        if (lo <= r[i].hi)
            out[o++] = (struct uid_range){(uint32_t)lo, r[i].hi};
    }
    *n_r = o;
    return out;
}

/* FLAGS (replace) without every flag right: the flags the account may change are added and
 * removed in two steps, the others stay as they are; the keywords are replaced (with "w") by
 * adding the asked ones and removing the others the set has. */
static int store_partial(PGconn *db, struct imap_job *j, struct store_job *sj, unsigned allowed,
                         bool kw_ok)
{
    unsigned add = sj->flags & allowed, del = allowed & ~sj->flags;
    int rc =
        mailstore_store(db, j->owner_id, j->folder_id, sj->ranges, sj->nranges, MAIL_FLAGS_ADD, add,
                        (const char *const *)sj->kw, kw_ok ? sj->nkw : 0, sj->unchanged_since,
                        store_changed, sj, store_failed, sj, j->err, sizeof(j->err));
    if (rc < 0)
        return rc;
    if (kw_ok && (mailstore_fetch(db, j->folder_id, sj->ranges, sj->nranges, 0, false,
                                  collect_keywords, sj, j->err, sizeof(j->err)) < 0 ||
                  sj->have_oom))
        return -1;
    if (!del && !sj->nhave)
        return 0;
    /* the messages the first step refused under UNCHANGEDSINCE are left alone */
    if (sj->failed.n)
        qsort(sj->failed.v, sj->failed.n, sizeof(uint32_t), cmp_u32);
    size_t nr;
    struct uid_range *r = ranges_without(sj->ranges, sj->nranges, sj->failed.v, sj->failed.n, &nr);
    if (!r)
        return -1;
    size_t off = 0;
    do {
        size_t nk = sj->nhave - off > MAIL_KEYWORDS_MAX ? MAIL_KEYWORDS_MAX : sj->nhave - off;
        if (nr)
            rc = mailstore_store(db, j->owner_id, j->folder_id, r, nr, MAIL_FLAGS_REMOVE,
                                 off ? 0 : del, (const char *const *)sj->have + off, nk, 0,
                                 store_changed, sj, NULL, NULL, j->err, sizeof(j->err));
        off += nk;
    } while (rc == 0 && off < sj->nhave);
    free(r);
    return rc;
}

static void store_work(struct imap_job *j, PGconn *db)
{
    struct store_job *sj = (struct store_job *)j;
    unsigned rights = imap_rights_now(db, j->account_id, j->folder_id, j->owner_id);
    unsigned allowed = (rights & ACL_S ? MAIL_SEEN : 0) | (rights & ACL_T ? MAIL_DELETED : 0) |
                       (rights & ACL_W ? MAIL_ANSWERED | MAIL_FLAGGED | MAIL_DRAFT : 0);
    bool kw_ok = rights & ACL_W;
    if (!(rights & ACL_R)) {
        sj->noperm = true;
        j->rc = -1;
        return;
    }
    if (allowed == MAIL_FLAGS_ALL) {
        j->rc =
            mailstore_store(db, j->owner_id, j->folder_id, sj->ranges, sj->nranges, sj->mode,
                            sj->flags, (const char *const *)sj->kw, sj->nkw, sj->unchanged_since,
                            store_changed, sj, store_failed, sj, j->err, sizeof(j->err));
    } else if (sj->mode == MAIL_FLAGS_SET) {
        j->rc = store_partial(db, j, sj, allowed, kw_ok);
    } else if ((sj->flags & allowed) || (kw_ok && sj->nkw)) {
        /* RFC 4314 §4: what may not be changed is left out, silently */
        j->rc = mailstore_store(db, j->owner_id, j->folder_id, sj->ranges, sj->nranges, sj->mode,
                                sj->flags & allowed, (const char *const *)sj->kw,
                                kw_ok ? sj->nkw : 0, sj->unchanged_since, store_changed, sj,
                                store_failed, sj, j->err, sizeof(j->err));
    } else {
        j->rc = 0;
    }
    if (j->rc == 0 && sj->changed_uids.n)
        imap_notify_publish(j->owner_id, j->folder_id, sj->new_modseq,
                            FLOE__BUS__MAILBOX_CHANGE__KIND__FLAGS);
    /* RFC 9051 §6.4.6: the new flags of every message of the set, unless .SILENT */
    if (j->rc == 0 && !sj->silent)
        mailstore_fetch(db, j->folder_id, sj->ranges, sj->nranges, 0, false, store_row, sj, j->err,
                        sizeof(j->err));
}

static bool u32_has(const struct u32list *l, uint32_t x)
{
    return l->n && bsearch(&x, l->v, l->n, sizeof(uint32_t), cmp_u32) != NULL;
}

static void store_done(struct imap_session *s, struct imap_job *j)
{
    struct store_job *sj = (struct store_job *)j;
    if (j->rc < 0) {
        imap_view_apply(s, j->changes, false);
        if (sj->noperm) {
            imap_tagged(s, "NO", "[NOPERM] The rights to this mailbox were withdrawn");
            return;
        }
        conn_log(s->c, LOG_SUMMARY, "STORE failed: %s", j->err);
        imap_tagged(s, "NO", "[SERVERBUG] Cannot change flags");
        return;
    }
    /* our own changes: the client hears of them now (or not, with .SILENT), not again */
    for (size_t i = 0; i < sj->changed_uids.n; i++)
        imap_view_set_modseq(&s->view, sj->changed_uids.v[i], sj->changed_modseqs[i]);
    if (sj->failed.n)
        qsort(sj->failed.v, sj->failed.n, sizeof(uint32_t), cmp_u32);
    for (size_t i = 0; i < sj->nrows; i++) {
        const struct imap_change_row *r = &sj->rows[i];
        uint32_t seq = imap_view_seq(&s->view, r->uid);
        if (!seq || u32_has(&sj->failed, r->uid))
            continue;
        imap_view_set_modseq(&s->view, r->uid, r->modseq);
        struct imap_envelope_out o = {0};
        imap_flags_append(&o, r->flags, r->keywords);
        imap_printf(s, "* %u FETCH (", seq);
        if (sj->uid || s->qresync)
            imap_printf(s, "UID %u ", r->uid);
        imap_printf(s, "FLAGS %s", o.data ? o.data : "()");
        if (s->condstore)
            imap_printf(s, " MODSEQ (%lld)", r->modseq);
        imap_printf(s, ")\r\n");
        imap_envelope_out_free(&o);
    }
    /* RFC 9051 §7.5.1: no EXPUNGE during STORE (UID STORE may, RFC 9051 §6.4.9 leaves it
     * open; kept the same for both) */
    if (imap_view_apply(s, j->changes, false) < 0)
        return;
    if (sj->failed.n) {
        /* RFC 7162 §3.1.3: [MODIFIED set], in UIDs for UID STORE, else sequence numbers */
        uint32_t *set = malloc(sj->failed.n * sizeof(*set));
        size_t k = 0;
        for (size_t i = 0; set && i < sj->failed.n; i++) {
            uint32_t v = sj->uid ? sj->failed.v[i] : imap_view_seq(&s->view, sj->failed.v[i]);
            if (v)
                set[k++] = v;
        }
        char *txt = set ? u32_format(set, k) : NULL;
        free(set);
        imap_tagged(s, "OK", "[MODIFIED %s] Conditional STORE failed for some messages",
                    txt ? txt : "0");
        free(txt);
        return;
    }
    imap_tagged(s, "OK", "STORE completed");
}

void imap_cmd_store(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid)
{
    /* STORE set [(UNCHANGEDSINCE n)] (+|-)FLAGS[.SILENT] flags */
    size_t i = 1;
    long long unchanged = 0;
    if (n >= 2 && a[1].type == IMAP_ARG_LIST) {
        size_t k;
        const struct imap_arg *m = imap_arg_list(&a[1], &k);
        const char *w = k == 2 ? imap_arg_atom(&m[0]) : NULL;
        const char *v = k == 2 ? imap_arg_atom(&m[1]) : NULL;
        char *end = NULL;
        if (w && v && !strcasecmp(w, "UNCHANGEDSINCE") && strlen(v) <= 19)
            unchanged = strtoll(v, &end, 10);
        if (!w || !v || strcasecmp(w, "UNCHANGEDSINCE") || !end || *end || unchanged < 0) {
            imap_tagged(s, "BAD", "Invalid STORE modifier");
            return;
        }
        s->condstore = true; /* RFC 7162 §3.1: a CONDSTORE-enabling command */
        i = 2;
    }
    const char *item = n == i + 2 ? imap_arg_atom(&a[i]) : NULL;
    if (!item) {
        imap_tagged(s, "BAD", "Syntax: STORE set [(UNCHANGEDSINCE n)] +FLAGS (flags)");
        return;
    }
    enum mail_store_mode mode = MAIL_FLAGS_SET;
    const char *p = item;
    if (*p == '+')
        mode = MAIL_FLAGS_ADD, p++;
    else if (*p == '-')
        mode = MAIL_FLAGS_REMOVE, p++;
    bool silent = false;
    if (!strcasecmp(p, "FLAGS.SILENT"))
        silent = true;
    else if (strcasecmp(p, "FLAGS") != 0) {
        imap_tagged(s, "BAD", "Unknown STORE item");
        return;
    }
    if (s->view.readonly) {
        imap_tagged(s, "NO", "[READ-ONLY] Mailbox is read-only");
        return;
    }
    unsigned flags;
    const char *kw[MAIL_KEYWORDS_MAX];
    size_t nkw;
    if (imap_arg_flags(s, &a[i + 1], &flags, kw, MAIL_KEYWORDS_MAX, &nkw) < 0)
        return;
    struct uid_range *ranges;
    size_t nranges;
    if (imap_arg_seqset(s, &a[0], uid, &ranges, &nranges) < 0)
        return;
    if (nranges == 0) {
        free(ranges);
        imap_tagged(s, "OK", "STORE completed (no messages)");
        return;
    }
    if (i == 2 && unchanged == 0) {
        /* RFC 7162 §3.1.3: every message has a modseq above 0, so each one fails (the store
         * reads 0 as "no condition": answered here) */
        struct u32list failed = {0};
        for (size_t r = 0; r < nranges; r++)
            for (uint32_t x = imap_view_seq(&s->view, ranges[r].lo);
                 x && x <= s->view.count && s->view.uids[x - 1] <= ranges[r].hi; x++)
                u32_add(&failed, uid ? s->view.uids[x - 1] : x);
        free(ranges);
        char *txt = failed.failed ? NULL : u32_format(failed.v, failed.n);
        free(failed.v);
        imap_tagged(s, "OK", "[MODIFIED %s] Conditional STORE failed", txt ? txt : "0");
        free(txt);
        return;
    }
    struct store_job *sj = calloc(1, sizeof(*sj));
    if (!sj) {
        free(ranges);
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    sj->ranges = ranges;
    sj->nranges = nranges;
    sj->mode = mode;
    sj->flags = flags;
    sj->silent = silent;
    sj->uid = uid;
    sj->unchanged_since = unchanged;
    sj->kw = calloc(nkw ? nkw : 1, sizeof(char *));
    for (size_t k = 0; sj->kw && k < nkw; k++)
        if ((sj->kw[k] = strdup(kw[k])))
            sj->nkw++;
    if (!sj->kw || sj->nkw != nkw) {
        store_destroy(&sj->base);
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    sj->base.work = store_work;
    sj->base.done = store_done;
    sj->base.destroy = store_destroy;
    imap_job_submit(s, &sj->base, true);
}

/* ---- COPY and MOVE ---- */

struct copy_job {
    struct imap_job base;
    struct uid_range *ranges;
    size_t nranges;
    char dest[IMAP_NAME_MAX + 1];
    bool move, uid;
    long long dest_id;
    uint32_t uidvalidity;
    struct u32list src, dst;
    bool trycreate, notmail, notfound, noperm_src, noperm_dest;
    unsigned dest_rights; /* when it lacks "i" */
};

static void copy_destroy(struct imap_job *j)
{
    struct copy_job *cj = (struct copy_job *)j;
    free(cj->ranges);
    free(cj->src.v);
    free(cj->dst.v);
    free(cj);
}

static void copy_mapped(uint32_t src, uint32_t dst, void *ctx)
{
    struct copy_job *cj = ctx;
    u32_add(&cj->src, src);
    u32_add(&cj->dst, dst);
}

static void copy_work(struct imap_job *j, PGconn *db)
{
    struct copy_job *cj = (struct copy_job *)j;
    struct imap_mailbox mb;
    int rc = imap_mailbox_resolve(db, j->account_id, j->cfg, cj->dest, &mb, j->err, sizeof(j->err));
    if (rc == IMAP_MB_ENOTFOUND) {
        /* RFC 9051 §6.4.7: TRYCREATE when CREATE could help: not in another account */
        cj->trycreate = mb.name.ns == IMAP_NS_PERSONAL;
        cj->notfound = !cj->trycreate;
        j->rc = -1;
        return;
    }
    if (rc < 0) {
        j->rc = -2;
        return;
    }
    if (!mb.found || mb.f.kind != FOLDER_KIND_MAIL) {
        cj->notmail = true;
        j->rc = -1;
        return;
    }
    const struct folder f = mb.f;
    if (!(mb.rights & ACL_I)) { /* RFC 4314 §4: COPY needs "i" on the target */
        cj->dest_rights = mb.rights;
        cj->noperm_dest = true;
        j->rc = -1;
        return;
    }
    unsigned src_rights = imap_rights_now(db, j->account_id, j->folder_id, j->owner_id);
    unsigned src_need = ACL_R | (cj->move ? ACL_T | ACL_E : 0);
    if ((src_rights & src_need) != src_need) {
        cj->noperm_src = true;
        j->rc = -1;
        return;
    }
    cj->dest_id = f.id;
    j->rc = mailstore_copy(db, j->account_id, j->folder_id, cj->ranges, cj->nranges, f.id, cj->move,
                           true, copy_mapped, cj, &cj->uidvalidity, j->err, sizeof(j->err));
    if (j->rc == 0 && cj->src.n) {
        long long ms = 0;
        struct mail_status st;
        char err[128];
        if (mailstore_status(db, f.id, &st, err, sizeof(err)) == 0)
            ms = st.highest_modseq;
        imap_notify_publish(f.account_id, f.id, ms, FLOE__BUS__MAILBOX_CHANGE__KIND__APPEND);
        if (cj->move && mailstore_status(db, j->folder_id, &st, err, sizeof(err)) == 0)
            imap_notify_publish(j->owner_id, j->folder_id, st.highest_modseq,
                                FLOE__BUS__MAILBOX_CHANGE__KIND__EXPUNGE);
    }
}

static void copy_done(struct imap_session *s, struct imap_job *j)
{
    struct copy_job *cj = (struct copy_job *)j;
    const char *what = cj->move ? "MOVE" : "COPY";
    if (j->rc != 0) {
        imap_view_apply(s, j->changes, cj->move || cj->uid);
        if (cj->trycreate)
            imap_tagged(s, "NO", "[TRYCREATE] No such mailbox");
        else if (cj->notfound)
            imap_tagged(s, "NO", "[NONEXISTENT] No such mailbox");
        else if (cj->noperm_src)
            imap_tagged(s, "NO", "[NOPERM] No right to %s messages of this mailbox",
                        cj->move ? "move" : "copy");
        else if (cj->noperm_dest)
            imap_tagged(s, "NO", "%s", imap_noperm_text(cj->dest_rights));
        else if (cj->notmail)
            imap_tagged(s, "NO", "[CANNOT] Not a mail folder");
        else if (j->rc == MAIL_EQUOTA)
            imap_tagged(s, "NO", "[OVERQUOTA] Quota exceeded");
        else {
            conn_log(s->c, LOG_SUMMARY, "%s failed: %s", what, j->err);
            imap_tagged(s, "NO", "[SERVERBUG] %s failed", what);
        }
        return;
    }
    if (cj->src.failed || cj->dst.failed) {
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    /* RFC 4315 §3 COPYUID uidvalidity source-uids dest-uids, the pairs in the same order: both
     * ascending, since the copies are numbered in source UID order */
    char *src = u32_format(cj->src.v, cj->src.n), *dst = u32_format(cj->dst.v, cj->dst.n);
    char code[64 + 2 * 4096];
    code[0] = '\0';
    /* a reply too long for the buffer goes without the code rather than cut */
    if (src && dst && strlen(src) + strlen(dst) < 2 * 4096 &&
        snprintf(code, sizeof(code), "[COPYUID %u %s %s] ", cj->uidvalidity, src, dst) >=
            (int)sizeof(code))
        code[0] = '\0';
    free(src);
    free(dst);
    if (cj->move) {
        /* RFC 6851 §4.3: COPYUID in an untagged OK before the expunges */
        if (*code)
            imap_printf(s, "* OK %sMoved\r\n", code);
        imap_view_expunge(s, cj->src.v, cj->src.n);
        if (imap_view_apply(s, j->changes, true) < 0)
            return;
        imap_tagged(s, "OK", "MOVE completed");
        return;
    }
    if (imap_view_apply(s, j->changes, cj->uid) < 0)
        return;
    if (cj->src.n == 0)
        imap_tagged(s, "OK", "COPY completed (no messages)");
    else
        imap_tagged(s, "OK", "%sCOPY completed", code);
}

static void copy_or_move(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid,
                         bool move)
{
    if (n != 2) {
        imap_tagged(s, "BAD", move ? "Syntax: MOVE set mailbox" : "Syntax: COPY set mailbox");
        return;
    }
    if (move && s->view.readonly) {
        imap_tagged(s, "NO", "[READ-ONLY] Mailbox is read-only");
        return;
    }
    if (move && (s->view.rights & (ACL_T | ACL_E)) != (ACL_T | ACL_E)) {
        /* RFC 6851 §3.3 with RFC 4314: moving out deletes and expunges */
        imap_tagged(s, "NO", "[NOPERM] No right to move messages out of this mailbox");
        return;
    }
    struct copy_job *cj = calloc(1, sizeof(*cj));
    if (!cj) {
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    if (imap_arg_mailbox(s, &a[1], cj->dest, sizeof(cj->dest)) < 0 ||
        imap_arg_seqset(s, &a[0], uid, &cj->ranges, &cj->nranges) < 0) {
        copy_destroy(&cj->base);
        return;
    }
    if (cj->nranges == 0) {
        copy_destroy(&cj->base);
        imap_tagged(s, "OK", "%s completed (no messages)", move ? "MOVE" : "COPY");
        return;
    }
    cj->move = move;
    cj->uid = uid;
    cj->base.work = copy_work;
    cj->base.done = copy_done;
    cj->base.destroy = copy_destroy;
    imap_job_submit(s, &cj->base, true);
}

void imap_cmd_copy(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid)
{
    copy_or_move(s, a, n, uid, false);
}

void imap_cmd_move(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid)
{
    copy_or_move(s, a, n, uid, true);
}

/* ---- EXPUNGE ---- */

struct expunge_job {
    struct imap_job base;
    struct uid_range *ranges;
    size_t nranges;
    bool by_uid, noperm;
    bool silent; /* CLOSE: no responses (RFC 9051 §6.4.1) */
    struct u32list gone;
};

static void expunge_destroy(struct imap_job *j)
{
    struct expunge_job *ej = (struct expunge_job *)j;
    free(ej->ranges);
    free(ej->gone.v);
    free(ej);
}

static void expunged(uint32_t uid, void *ctx)
{
    struct expunge_job *ej = ctx;
    u32_add(&ej->gone, uid);
}

static void expunge_work(struct imap_job *j, PGconn *db)
{
    struct expunge_job *ej = (struct expunge_job *)j;
    if (!(imap_rights_now(db, j->account_id, j->folder_id, j->owner_id) & ACL_E)) {
        ej->noperm = true; /* RFC 4314 §4: EXPUNGE needs "e" (CLOSE then expunges nothing) */
        j->rc = 0;
        return;
    }
    j->rc = mailstore_expunge(db, j->owner_id, j->folder_id, ej->ranges, ej->nranges, expunged, ej,
                              j->err, sizeof(j->err));
    if (j->rc == 0 && ej->gone.n) {
        struct mail_status st;
        char err[128];
        if (mailstore_status(db, j->folder_id, &st, err, sizeof(err)) == 0)
            imap_notify_publish(j->owner_id, j->folder_id, st.highest_modseq,
                                FLOE__BUS__MAILBOX_CHANGE__KIND__EXPUNGE);
    }
}

static void expunge_done(struct imap_session *s, struct imap_job *j)
{
    struct expunge_job *ej = (struct expunge_job *)j;
    if (ej->silent) {
        /* CLOSE leaves the mailbox whatever happens (a mailbox deleted meanwhile has nothing
         * left to expunge) */
        imap_unselect(s, false);
        if (j->rc < 0 && j->rc != MAIL_ENOTFOUND) {
            conn_log(s->c, LOG_SUMMARY, "CLOSE: expunge failed: %s", j->err);
            imap_tagged(s, "NO", "[SERVERBUG] Mailbox closed, but its deleted messages remain");
        } else {
            imap_tagged(s, "OK", "CLOSE completed");
        }
        return;
    }
    if (ej->noperm) {
        imap_view_apply(s, j->changes, true);
        imap_tagged(s, "NO", "[NOPERM] No right to expunge this mailbox");
        return;
    }
    if (j->rc < 0 || ej->gone.failed) {
        conn_log(s->c, LOG_SUMMARY, "EXPUNGE failed: %s", j->err);
        imap_view_apply(s, j->changes, true);
        imap_tagged(s, "NO", "[SERVERBUG] EXPUNGE failed");
        return;
    }
    imap_view_expunge(s, ej->gone.v, ej->gone.n);
    if (imap_view_apply(s, j->changes, true) < 0)
        return;
    imap_tagged(s, "OK", "EXPUNGE completed");
}

void imap_expunge_start(struct imap_session *s, bool silent)
{
    struct expunge_job *ej = calloc(1, sizeof(*ej));
    if (!ej) {
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    ej->silent = silent;
    ej->base.work = expunge_work;
    ej->base.done = expunge_done;
    ej->base.destroy = expunge_destroy;
    imap_job_submit(s, &ej->base, !silent);
}

void imap_cmd_expunge(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid)
{
    if (uid ? n != 1 : n != 0) {
        imap_tagged(s, "BAD", uid ? "Syntax: UID EXPUNGE set" : "EXPUNGE takes no arguments");
        return;
    }
    if (s->view.readonly) {
        imap_tagged(s, "NO", "[READ-ONLY] Mailbox is read-only");
        return;
    }
    if (!(s->view.rights & ACL_E)) {
        imap_tagged(s, "NO", "[NOPERM] No right to expunge this mailbox");
        return;
    }
    struct expunge_job *ej = calloc(1, sizeof(*ej));
    if (!ej) {
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    if (uid) {
        /* RFC 4315 §2.1: only the \Deleted messages in the set */
        if (imap_arg_seqset(s, &a[0], true, &ej->ranges, &ej->nranges) < 0) {
            expunge_destroy(&ej->base);
            return;
        }
        if (ej->nranges == 0) {
            expunge_destroy(&ej->base);
            imap_sync_start(s, "EXPUNGE completed (no messages)");
            return;
        }
    }
    ej->by_uid = uid;
    ej->base.work = expunge_work;
    ej->base.done = expunge_done;
    ej->base.destroy = expunge_destroy;
    imap_job_submit(s, &ej->base, true);
}
