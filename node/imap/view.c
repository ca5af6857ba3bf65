/* The selected mailbox as the client sees it, and keeping it up to date.
 *
 * The session holds the UIDs of the messages the client knows in sequence order (RFC 9051
 * §2.3.1.2: message n is the n-th UID) with, per message, the modseq of the state it was last
 * told, and the modseq up to which every change of the folder has been taken in. Everything
 * else is asked of the store when needed.
 *
 * Bringing the view up to date is two halves. On a worker, imap_changes_collect() reads the
 * folder's highest modseq and, only when that moved, the rows changed after the view's modseq
 * (new messages and flag changes) and the account's tombstones after it (expunges; when the
 * tombstones were purged, every UID instead, to compare). Back on the session's thread
 * imap_view_apply() turns that into untagged responses: FETCH for flags the client has not
 * seen, EXISTS for new messages, and EXPUNGE (VANISHED under QRESYNC, RFC 7162 §3.2.10) when
 * the command in progress allows them; otherwise the expunged UIDs wait in `gone`, keeping
 * their sequence numbers, until a command that may announce them. Appends are numbered in
 * modseq order (the account row lock orders every change of an account), so new UIDs always
 * come after those the view holds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/imap/imap.h"
#include "storage/changes.h"
#include "storage/mailstore.h"

/* ---- collecting, on a worker ---- */

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 64;
    while (n < need)
        n *= 2;
    void *t = realloc(*arr, n * elem);
    if (!t)
        return -1;
    *arr = t;
    *cap = n;
    return 0;
}

static char *join_keywords(const char *const *kw, size_t n)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(kw[i]) + 1;
    char *s = malloc(len), *p = s;
    if (!s)
        return NULL;
    *p = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *p++ = ' ';
        size_t l = strlen(kw[i]);
        memcpy(p, kw[i], l);
        p += l;
        *p = '\0';
    }
    return s;
}

static int row_cb(const struct mail_row *r, void *ctx)
{
    struct imap_changes *ch = ctx;
    if (grow((void **)&ch->rows, &ch->caprows, ch->nrows + 1, sizeof(*ch->rows)) < 0)
        return ch->failed = true, 1;
    char *kw = join_keywords(r->keywords, r->nkeywords);
    if (!kw)
        return ch->failed = true, 1;
    ch->rows[ch->nrows++] = (struct imap_change_row){
        .uid = r->uid, .flags = r->flags, .modseq = r->modseq, .keywords = kw};
    return 0;
}

struct tomb_ctx {
    struct imap_changes *ch;
    long long folder_id;
};

static int tomb_cb(const struct tombstone *t, void *ctx)
{
    struct tomb_ctx *tc = ctx;
    if (strcmp(t->kind, "message") != 0 || t->folder_id != tc->folder_id || t->uid <= 0 ||
        t->uid > (long long)UINT32_MAX)
        return 0;
    struct imap_changes *ch = tc->ch;
    if (grow((void **)&ch->expunged, &ch->capexpunged, ch->nexpunged + 1, sizeof(uint32_t)) < 0)
        return ch->failed = true, 1;
    ch->expunged[ch->nexpunged++] = (uint32_t)t->uid;
    return 0;
}

static int all_cb(const struct mail_row *r, void *ctx)
{
    struct imap_changes *ch = ctx;
    if (grow((void **)&ch->all, &ch->capall, ch->nall + 1, sizeof(uint32_t)) < 0)
        return ch->failed = true, 1;
    ch->all[ch->nall++] = r->uid;
    return 0;
}

int imap_changes_collect(PGconn *db, long long owner_id, long long folder_id, long long since,
                         struct imap_changes *ch, char *err, size_t errlen)
{
    struct mail_status st;
    int rc = mailstore_status(db, folder_id, &st, err, errlen);
    if (rc == MAIL_ENOTFOUND) {
        ch->folder_gone = true;
        return 0;
    }
    if (rc < 0)
        return -1;
    ch->highest = st.highest_modseq;
    if (st.highest_modseq <= since)
        return 0;
    if (mailstore_fetch(db, folder_id, NULL, 0, since, false, row_cb, ch, err, errlen) < 0)
        return -1;
    struct tomb_ctx tc = {ch, folder_id};
    rc = changes_tombstones_since(db, owner_id, since, tomb_cb, &tc);
    if (rc == CHANGES_EEXPIRED) {
        /* the tombstones the view needs are gone: compare against every UID instead */
        ch->full = true;
        if (mailstore_fetch(db, folder_id, NULL, 0, 0, false, all_cb, ch, err, errlen) < 0)
            return -1;
    } else if (rc < 0) {
        snprintf(err, errlen, "cannot read tombstones: %s", PQerrorMessage(db));
        return -1;
    }
    return ch->failed ? -1 : 0;
}

void imap_changes_free(struct imap_changes **chp)
{
    struct imap_changes *ch = *chp;
    if (!ch)
        return;
    for (size_t i = 0; i < ch->nrows; i++)
        free(ch->rows[i].keywords);
    free(ch->rows);
    free(ch->expunged);
    free(ch->all);
    free(ch);
    *chp = NULL;
}

/* ---- the view, on the session's thread ---- */

static long index_of(const struct imap_view *v, uint32_t uid)
{
    uint32_t lo = 0, hi = v->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (v->uids[mid] < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < v->count && v->uids[lo] == uid ? (long)lo : -1;
}

uint32_t imap_view_seq(const struct imap_view *v, uint32_t uid)
{
    long i = index_of(v, uid);
    return i < 0 ? 0 : (uint32_t)i + 1;
}

void imap_view_set_modseq(struct imap_view *v, uint32_t uid, long long modseq)
{
    long i = index_of(v, uid);
    if (i >= 0 && v->modseqs[i] < modseq)
        v->modseqs[i] = modseq;
}

void imap_view_clear(struct imap_view *v)
{
    free(v->uids);
    free(v->modseqs);
    free(v->gone);
    memset(v, 0, sizeof(*v));
}

static int view_push(struct imap_view *v, uint32_t uid, long long modseq)
{
    if (v->count >= IMAP_VIEW_MAX)
        return -1;
    if (v->count == v->cap) {
        uint32_t n = v->cap ? v->cap * 2 : 256;
        uint32_t *u = realloc(v->uids, n * sizeof(*u));
        if (!u)
            return -1;
        v->uids = u;
        long long *m = realloc(v->modseqs, n * sizeof(*m));
        if (!m)
            return -1;
        v->modseqs = m;
        v->cap = n;
    }
    v->uids[v->count] = uid;
    v->modseqs[v->count] = modseq;
    v->count++;
    return 0;
}

/* Duplicates are allowed here and dropped when the list is announced. */
static int gone_add(struct imap_view *v, uint32_t uid)
{
    if (v->ngone == v->gone_cap) {
        uint32_t n = v->gone_cap ? v->gone_cap * 2 : 64;
        uint32_t *g = realloc(v->gone, n * sizeof(*g));
        if (!g)
            return -1;
        v->gone = g;
        v->gone_cap = n;
    }
    v->gone[v->ngone++] = uid;
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

void imap_flags_append(struct imap_envelope_out *out, unsigned flags, const char *keywords)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{MAIL_ANSWERED, "\\Answered"},
                 {MAIL_FLAGGED, "\\Flagged"},
                 {MAIL_DELETED, "\\Deleted"},
                 {MAIL_SEEN, "\\Seen"},
                 {MAIL_DRAFT, "\\Draft"}};
    imap_envelope_out_add(out, "(", 1);
    bool first = true;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (flags & names[i].bit) {
            if (!first)
                imap_envelope_out_add(out, " ", 1);
            imap_envelope_out_add(out, names[i].name, strlen(names[i].name));
            first = false;
        }
    if (keywords && *keywords) {
        if (!first)
            imap_envelope_out_add(out, " ", 1);
        imap_envelope_out_add(out, keywords, strlen(keywords));
    }
    imap_envelope_out_add(out, ")", 1);
}

/* Removes the UIDs uids[0..n) (ascending) from the view in one pass, announcing each as
 * EXPUNGE with its sequence number at that moment (RFC 9051 §7.5.1), or all of them in one
 * VANISHED under QRESYNC (RFC 7162 §3.2.10). */
static void expunge_sorted(struct imap_session *s, const uint32_t *uids, size_t n)
{
    struct imap_view *v = &s->view;
    struct imap_seqset *vanished = s->qresync ? imap_seqset_new(0) : NULL;
    uint32_t w = 0, removed = 0;
    size_t k = 0;
    for (uint32_t r = 0; r < v->count; r++) {
        while (k < n && uids[k] < v->uids[r])
            k++;
        if (k < n && uids[k] == v->uids[r]) {
            if (vanished) {
                if (imap_seqset_add(vanished, v->uids[r]) < 0) {
                    /* too many ranges for one line: send what we have and go on */
                    char *txt = NULL;
                    if (imap_seqset_format(vanished, &txt, NULL) == 0 && *txt)
                        imap_printf(s, "* VANISHED %s\r\n", txt);
                    free(txt);
                    imap_seqset_clear(vanished);
                    imap_seqset_add(vanished, v->uids[r]);
                }
            } else {
                imap_printf(s, "* %u EXPUNGE\r\n", r - removed + 1);
            }
            removed++;
            continue;
        }
        v->uids[w] = v->uids[r];
        v->modseqs[w] = v->modseqs[r];
        w++;
    }
    v->count = w;
    if (vanished) {
        char *txt = NULL;
        if (imap_seqset_format(vanished, &txt, NULL) == 0 && *txt)
            imap_printf(s, "* VANISHED %s\r\n", txt);
        free(txt);
        imap_seqset_free(&vanished);
    }
    /* whatever was announced no longer waits */
    uint32_t gw = 0;
    for (uint32_t i = 0; i < v->ngone; i++)
        if (index_of(v, v->gone[i]) >= 0)
            v->gone[gw++] = v->gone[i];
    v->ngone = gw;
}

void imap_view_expunge(struct imap_session *s, uint32_t *uids, size_t n)
{
    if (n == 0)
        return;
    qsort(uids, n, sizeof(*uids), cmp_u32);
    expunge_sorted(s, uids, n);
}

void imap_view_flush_gone(struct imap_session *s)
{
    struct imap_view *v = &s->view;
    if (v->ngone == 0)
        return;
    qsort(v->gone, v->ngone, sizeof(*v->gone), cmp_u32);
    uint32_t *copy = malloc(v->ngone * sizeof(*copy));
    if (!copy)
        return;
    uint32_t n = 0;
    for (uint32_t i = 0; i < v->ngone; i++)
        if (n == 0 || copy[n - 1] != v->gone[i])
            copy[n++] = v->gone[i];
    expunge_sorted(s, copy, n);
    free(copy);
    v->ngone = 0;
}

static void fetch_flags(struct imap_session *s, uint32_t seq, const struct imap_change_row *r)
{
    struct imap_envelope_out o = {0};
    imap_flags_append(&o, r->flags, r->keywords);
    /* RFC 7162 §3.2.4: UID in every unsolicited FETCH under QRESYNC (harmless otherwise);
     * §3.1.4: MODSEQ with them once CONDSTORE is on */
    if (s->condstore)
        imap_printf(s, "* %u FETCH (UID %u FLAGS %s MODSEQ (%lld))\r\n", seq, r->uid,
                    o.data ? o.data : "()", r->modseq);
    else
        imap_printf(s, "* %u FETCH (UID %u FLAGS %s)\r\n", seq, r->uid, o.data ? o.data : "()");
    imap_envelope_out_free(&o);
}

int imap_view_apply(struct imap_session *s, struct imap_changes *ch, bool allow_expunge)
{
    if (!ch || ch->failed || s->state != IMAP_SELECTED)
        return 0;
    struct imap_view *v = &s->view;
    if (ch->folder_gone) {
        /* the mailbox was deleted (or renamed away and removed) elsewhere: its sequence
         * numbers mean nothing any more (RFC 2180 §3 lets the server end the session) */
        conn_log(s->c, LOG_SUMMARY, "selected mailbox %s was deleted", v->path);
        imap_printf(s, "* BYE [CLOSED] The selected mailbox was deleted\r\n");
        s->state = IMAP_LOGOUT;
        imap_flush(s);
        conn_close(s->c);
        return -1;
    }
    if (ch->full) {
        /* ch->all is ascending (mailstore_fetch orders by UID) */
        size_t k = 0;
        for (uint32_t i = 0; i < v->count; i++) {
            while (k < ch->nall && ch->all[k] < v->uids[i])
                k++;
            if (k >= ch->nall || ch->all[k] != v->uids[i])
                gone_add(v, v->uids[i]);
        }
    }
    for (size_t i = 0; i < ch->nexpunged; i++)
        if (index_of(v, ch->expunged[i]) >= 0)
            gone_add(v, ch->expunged[i]);
    uint32_t added = 0;
    uint32_t last = v->count ? v->uids[v->count - 1] : 0;
    for (size_t i = 0; i < ch->nrows; i++) {
        const struct imap_change_row *r = &ch->rows[i];
        long idx = index_of(v, r->uid);
        if (idx >= 0) {
            if (r->modseq > v->modseqs[idx]) {
                fetch_flags(s, (uint32_t)idx + 1, r);
                v->modseqs[idx] = r->modseq;
            }
        } else if (r->uid > last) {
            if (view_push(v, r->uid, r->modseq) < 0)
                break;
            last = r->uid;
            added++;
        }
    }
    if (added)
        imap_printf(s, "* %u EXISTS\r\n", v->count);
    if (allow_expunge)
        imap_view_flush_gone(s);
    if (ch->highest > v->known_modseq)
        v->known_modseq = ch->highest;
    return 0;
}
