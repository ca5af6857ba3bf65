/* SEARCH / SORT / THREAD over the messages table (see mailsearch.h).
 *
 * A run translates the key tree once into SQL text plus an array of parameter strings:
 * $1 the folder, $2 the highest UID to report, $3 the UID to start after (0, or the last UID
 * of the previous page in a raw-header search); every key's values follow as $4... Only
 * constants chosen by this file (column names, flag bits, operators) are written into the SQL
 * text. The same WHERE text then serves whichever statement the command needs: the streamed
 * UID list, MIN/MAX with LIMIT 1, count(*), ORDER BY for SORT, or the columns THREAD needs.
 *
 * Raw-header keys (HEADER on a field that has no column, BCC, HEADER with an empty string) are
 * evaluated here, after PostgreSQL narrowed the candidates: see mailsearch.h. */
#include "storage/mailsearch.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/mime/header.h"
#include "storage/db.h"
#include "storage/mailstore.h"

_Static_assert(IMAP_SEARCH_SEEN == MAIL_SEEN && IMAP_SEARCH_ANSWERED == MAIL_ANSWERED &&
                   IMAP_SEARCH_FLAGGED == MAIL_FLAGGED && IMAP_SEARCH_DELETED == MAIL_DELETED &&
                   IMAP_SEARCH_DRAFT == MAIL_DRAFT,
               "search flag bits are the messages.flags bits");

#define EPOCH_MIN (-62135596800LL) /* 0001-01-01 00:00:00 UTC, the earliest IMAP date */

/* ---- growing text ---- */

struct buf {
    char *s;
    size_t len, cap;
    bool oom;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *t = realloc(b->s, cap);
        if (!t) {
            b->oom = true;
            return;
        }
        b->s = t;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void buf_fmt(struct buf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        b->oom = true; /* only short fragments (column names, numbers) are formatted here */
        return;
    }
    buf_add(b, tmp, (size_t)n);
}

static void buf_free(struct buf *b)
{
    free(b->s);
    memset(b, 0, sizeof(*b));
}

/* ---- a run: the program translated to SQL ---- */

struct run {
    PGconn *c;
    const struct mailsearch_scope *scope;
    const struct imap_search_program *prog;
    char **params;
    size_t nparams, cap;
    bool raw;         /* raw-header keys present */
    struct buf where; /* the condition (raw: its over-approximation) */
    struct buf cols;  /* raw: ", (key), ..." the truth of every other key */
    bool failed;      /* out of memory while building */
    int rc;
    char *err;
    size_t errlen;
    /* raw: the header of the row being evaluated */
    const char *blob_id;
    char *hdr;
    size_t hdrlen;
    bool hdr_loaded;
};

__attribute__((format(printf, 3, 4))) static int run_fail(struct run *r, int rc, const char *fmt,
                                                          ...)
{
    if (r->rc == 0) {
        r->rc = rc;
        if (r->err && r->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(r->err, r->errlen, fmt, ap);
            va_end(ap);
        }
    }
    return rc;
}

/* Adds a parameter (taking s, which may be NULL after a failed allocation); its number. */
static size_t param_take(struct run *r, char *s)
{
    if (!s || r->failed) {
        free(s);
        r->failed = true;
        return 1;
    }
    if (r->nparams == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        char **p = realloc(r->params, cap * sizeof(*p));
        if (!p) {
            free(s);
            r->failed = true;
            return 1;
        }
        r->params = p;
        r->cap = cap;
    }
    r->params[r->nparams++] = s;
    return r->nparams;
}

static size_t param_str(struct run *r, const char *s)
{
    return param_take(r, strdup(s));
}

static size_t param_i64(struct run *r, long long v)
{
    char b[24];
    snprintf(b, sizeof(b), "%lld", v);
    return param_str(r, b);
}

static void run_free(struct run *r)
{
    for (size_t i = 0; i < r->nparams; i++)
        free(r->params[i]);
    free(r->params);
    buf_free(&r->where);
    buf_free(&r->cols);
    free(r->hdr);
}

/* ---- keys to SQL ---- */

/* The column holding a header field, for HEADER with a non-empty string. */
static const char *header_column(const struct imap_search_key *k)
{
    static const struct {
        const char *field, *column;
    } map[] = {{"Subject", "subject"}, {"From", "from_addr"},        {"To", "to_addr"},
               {"Cc", "cc_addr"},      {"Message-ID", "message_id"}, {"In-Reply-To", "in_reply_to"},
               {"References", "refs"}};
    if (!k->str || !k->str[0])
        return NULL;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcasecmp(k->field, map[i].field) == 0)
            return map[i].column;
    return NULL;
}

static bool is_raw(const struct imap_search_key *k)
{
    return k->op == IMAP_SEARCH_BCC || (k->op == IMAP_SEARCH_HEADER && !header_column(k));
}

static bool is_node(const struct imap_search_key *k)
{
    return k->op == IMAP_SEARCH_AND || k->op == IMAP_SEARCH_OR || k->op == IMAP_SEARCH_NOT;
}

static bool has_raw(const struct imap_search_key *k)
{
    if (is_raw(k))
        return true;
    for (size_t i = 0; i < k->nchildren; i++)
        if (has_raw(&k->children[i]))
            return true;
    return false;
}

struct uidr {
    uint32_t lo, hi;
};

/* uid in the ascending, disjoint ranges v[0..n): bounds for the index, a multirange for the
 * members. */
static void uid_ranges_sql(struct run *r, struct buf *b, const struct uidr *v, size_t n)
{
    if (n == 0) {
        buf_str(b, "FALSE");
        return;
    }
    size_t lo = param_i64(r, v[0].lo), hi = param_i64(r, v[n - 1].hi);
    if (n == 1) {
        buf_fmt(b, "(uid BETWEEN $%zu AND $%zu)", lo, hi);
        return;
    }
    struct buf mr = {0};
    buf_add(&mr, "{", 1);
    for (size_t i = 0; i < n; i++) {
        char t[48];
        int l = snprintf(t, sizeof(t), "%s[%" PRIu32 ",%" PRIu64 ")", i ? "," : "", v[i].lo,
                         (uint64_t)v[i].hi + 1);
        buf_add(&mr, t, (size_t)l);
    }
    buf_add(&mr, "}", 1);
    if (mr.oom) {
        buf_free(&mr);
        r->failed = true;
        return;
    }
    size_t m = param_take(r, mr.s);
    buf_fmt(b, "(uid BETWEEN $%zu AND $%zu AND uid <@ $%zu::int8multirange)", lo, hi, m);
}

/* A set of UIDs (saved result, recent messages). */
static void uid_set_sql(struct run *r, struct buf *b, const struct imap_seqset *set)
{
    size_t n = 0;
    const struct imap_seq_range *rg = set ? imap_seqset_ranges(set, &n) : NULL;
    struct uidr *v = malloc((n ? n : 1) * sizeof(*v));
    if (!v) {
        r->failed = true;
        return;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = (struct uidr){rg[i].lo, rg[i].hi};
    uid_ranges_sql(r, b, v, n);
    free(v);
}

/* Sequence numbers through the view: lo..hi is UIDs uids[lo-1]..uids[hi-1]. No message of
 * the folder has a UID between two neighbours of the view that is not in it (UIDs only grow),
 * so the UID range holds exactly the messages of the sequence range that still exist. */
static void seq_set_sql(struct run *r, struct buf *b, const struct imap_seqset *set)
{
    const struct mailsearch_scope *s = r->scope;
    size_t n = 0, k = 0;
    const struct imap_seq_range *rg = imap_seqset_ranges(set, &n);
    struct uidr *v = malloc((n ? n : 1) * sizeof(*v));
    if (!v) {
        r->failed = true;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (rg[i].lo > s->nuids)
            break;
        size_t hi = rg[i].hi < s->nuids ? rg[i].hi : s->nuids;
        v[k++] = (struct uidr){s->uids[rg[i].lo - 1], s->uids[hi - 1]};
    }
    uid_ranges_sql(r, b, v, k);
    free(v);
}

/* Does s hold anything the text-search parser makes a word of? ASCII letters and digits, and
 * any non-ASCII character (letters of other scripts) count. Without one, PostgreSQL's query
 * would be empty (and it complains with a NOTICE). */
static bool has_word(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p >= '0' && *p <= '9') || ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z') || *p >= 0x80)
            return true;
    return false;
}

/* The leaf k as an SQL boolean expression. */
static void leaf_sql(struct run *r, struct buf *b, const struct imap_search_key *k)
{
    const struct mailsearch_scope *s = r->scope;
    static const char *const date_col[] = {"internal_date", "coalesce(sent_date, internal_date)",
                                           "saved_at"};
    switch (k->op) {
    case IMAP_SEARCH_ALL:
        buf_str(b, "TRUE");
        return;
    case IMAP_SEARCH_SEQSET:
        seq_set_sql(r, b, k->set);
        return;
    case IMAP_SEARCH_UIDSET:
        uid_set_sql(r, b, k->set);
        return;
    case IMAP_SEARCH_SAVED:
        uid_set_sql(r, b, s->saved);
        return;
    case IMAP_SEARCH_RECENT:
        uid_set_sql(r, b, s->recent);
        return;
    case IMAP_SEARCH_FLAG:
        if ((k->flag & MAIL_FLAGS_ALL) == 0) {
            buf_str(b, "FALSE");
            return;
        }
        buf_fmt(b, "(flags & %u) <> 0", k->flag & MAIL_FLAGS_ALL);
        return;
    case IMAP_SEARCH_KEYWORD:
        /* keywords compare without regard to ASCII case (lower() under "C" folds only ASCII) */
        buf_fmt(b,
                "EXISTS (SELECT 1 FROM unnest(keywords) AS kw(w)"
                " WHERE lower(kw.w) = lower($%zu COLLATE \"C\"))",
                param_str(r, k->str));
        return;
    case IMAP_SEARCH_SAVEDBEFORE:
    case IMAP_SEARCH_SAVEDON:
    case IMAP_SEARCH_SAVEDSINCE:
    case IMAP_SEARCH_SENTBEFORE:
    case IMAP_SEARCH_SENTON:
    case IMAP_SEARCH_SENTSINCE:
    case IMAP_SEARCH_BEFORE:
    case IMAP_SEARCH_ON:
    case IMAP_SEARCH_SINCE: {
        int dc = k->op == IMAP_SEARCH_SAVEDBEFORE || k->op == IMAP_SEARCH_SAVEDON ||
                         k->op == IMAP_SEARCH_SAVEDSINCE
                     ? 2
                 : k->op == IMAP_SEARCH_SENTBEFORE || k->op == IMAP_SEARCH_SENTON ||
                         k->op == IMAP_SEARCH_SENTSINCE
                     ? 1
                     : 0;
        long long start = (long long)k->day * 86400 - s->tz_offset;
        bool before = k->op == IMAP_SEARCH_BEFORE || k->op == IMAP_SEARCH_SENTBEFORE ||
                      k->op == IMAP_SEARCH_SAVEDBEFORE;
        bool on =
            k->op == IMAP_SEARCH_ON || k->op == IMAP_SEARCH_SENTON || k->op == IMAP_SEARCH_SAVEDON;
        size_t a = param_i64(r, start);
        if (before)
            buf_fmt(b, "%s < to_timestamp($%zu)", date_col[dc], a);
        else if (on)
            buf_fmt(b, "(%s >= to_timestamp($%zu) AND %s < to_timestamp($%zu))", date_col[dc], a,
                    date_col[dc], param_i64(r, start + 86400));
        else
            buf_fmt(b, "%s >= to_timestamp($%zu)", date_col[dc], a);
        return;
    }
    case IMAP_SEARCH_LARGER:
        buf_fmt(b, "size > $%zu::bigint", param_i64(r, (long long)k->number));
        return;
    case IMAP_SEARCH_SMALLER:
        buf_fmt(b, "size < $%zu::bigint", param_i64(r, (long long)k->number));
        return;
    case IMAP_SEARCH_OLDER:
    case IMAP_SEARCH_YOUNGER: {
        /* RFC 5032 §3: OLDER n: more than n seconds old; YOUNGER n: at most n seconds old */
        long long now = s->now ? (long long)s->now : (long long)time(NULL);
        long long t =
            k->number > (uint64_t)(now - EPOCH_MIN) ? EPOCH_MIN : now - (long long)k->number;
        buf_fmt(b, "internal_date %s to_timestamp($%zu)",
                k->op == IMAP_SEARCH_OLDER ? "<" : ">=", param_i64(r, t));
        return;
    }
    case IMAP_SEARCH_MODSEQ:
        buf_fmt(b, "modseq >= $%zu::bigint", param_i64(r, (long long)k->number));
        return;
    case IMAP_SEARCH_FROM:
    case IMAP_SEARCH_TO:
    case IMAP_SEARCH_CC:
    case IMAP_SEARCH_SUBJECT:
    case IMAP_SEARCH_HEADER: {
        const char *col = k->op == IMAP_SEARCH_FROM      ? "from_addr"
                          : k->op == IMAP_SEARCH_TO      ? "to_addr"
                          : k->op == IMAP_SEARCH_CC      ? "cc_addr"
                          : k->op == IMAP_SEARCH_SUBJECT ? "subject"
                                                         : header_column(k);
        if (!col) { /* a raw-header key never gets here */
            buf_str(b, "FALSE");
            return;
        }
        /* RFC 9051 §6.4.4: substring, case-insensitive; strpos needs no escaping */
        buf_fmt(b, "strpos(lower(%s), lower($%zu)) > 0", col, param_str(r, k->str));
        return;
    }
    case IMAP_SEARCH_BODY:
    case IMAP_SEARCH_TEXT: {
        if (!has_word(k->str)) {
            buf_str(b, "TRUE");
            return;
        }
        /* the words in order, the last as a prefix. The CASE guards a string in which the
         * text-search parser still finds no word (the query would be invalid); it folds away
         * when the statement is planned, the parameter being known, so the GIN index serves
         * the rest, and its test raises no NOTICE as phraseto_tsquery would. */
        size_t p = param_str(r, k->str);
        char q[160];
        snprintf(q, sizeof(q), "(phraseto_tsquery('simple', $%zu)::text || ':*')::tsquery", p);
        buf_fmt(b, "(CASE WHEN length(to_tsvector('simple', $%zu)) = 0 THEN TRUE ELSE ", p);
        buf_str(b, "fts @@ ");
        buf_str(b, q);
        if (k->op == IMAP_SEARCH_BODY) { /* the body's words only: weight D */
            buf_str(b, " AND ts_filter(fts, '{d}') @@ ");
            buf_str(b, q);
        }
        buf_str(b, " END)");
        return;
    }
    case IMAP_SEARCH_BCC:
    case IMAP_SEARCH_AND:
    case IMAP_SEARCH_OR:
    case IMAP_SEARCH_NOT:
        break;
    }
    buf_str(b, "FALSE");
}

/* The condition of k. In raw mode a raw-header key stands for "may match": TRUE where it counts
 * positively, FALSE under an odd number of NOTs, so the rows returned include every match. */
static void cond_sql(struct run *r, struct buf *b, const struct imap_search_key *k, bool positive)
{
    switch (k->op) {
    case IMAP_SEARCH_AND:
    case IMAP_SEARCH_OR:
        if (k->nchildren == 0) {
            buf_str(b, k->op == IMAP_SEARCH_AND ? "TRUE" : "FALSE");
            return;
        }
        buf_add(b, "(", 1);
        for (size_t i = 0; i < k->nchildren; i++) {
            if (i)
                buf_str(b, k->op == IMAP_SEARCH_AND ? " AND " : " OR ");
            cond_sql(r, b, &k->children[i], positive);
        }
        buf_add(b, ")", 1);
        return;
    case IMAP_SEARCH_NOT:
        buf_str(b, "(NOT ");
        cond_sql(r, b, &k->children[0], !positive);
        buf_add(b, ")", 1);
        return;
    default:
        if (is_raw(k))
            buf_str(b, positive ? "TRUE" : "FALSE");
        else
            leaf_sql(r, b, k);
    }
}

/* Raw mode: one column per key that is not raw, in pre-order (eval_key reads them so). */
static void cols_sql(struct run *r, const struct imap_search_key *k)
{
    if (is_node(k)) {
        for (size_t i = 0; i < k->nchildren; i++)
            cols_sql(r, &k->children[i]);
        return;
    }
    if (is_raw(k))
        return;
    buf_str(&r->cols, ", (");
    leaf_sql(r, &r->cols, k);
    buf_str(&r->cols, ")");
}

static int run_init(struct run *r, PGconn *c, const struct mailsearch_scope *scope,
                    const struct imap_search_program *prog, char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    r->c = c;
    r->scope = scope;
    r->prog = prog;
    r->err = err;
    r->errlen = errlen;
    if (err && errlen)
        err[0] = '\0';
    if (prog->uses_seq && !scope->uids)
        return run_fail(r, MAILSEARCH_EINVAL, "sequence numbers need the session's view");
    r->raw = has_raw(&prog->root);
    if (r->raw && !scope->bs)
        return run_fail(r, MAILSEARCH_EINVAL, "header search needs the blob store");
    uint32_t max = scope->uids && scope->nuids ? scope->uids[scope->nuids - 1] : UINT32_MAX;
    param_i64(r, scope->folder_id); /* $1 */
    param_i64(r, max);              /* $2 */
    param_i64(r, 0);                /* $3 */
    cond_sql(r, &r->where, &prog->root, true);
    if (r->raw)
        cols_sql(r, &prog->root);
    if (r->failed || r->where.oom || r->cols.oom)
        return run_fail(r, -1, "out of memory");
    return 0;
}

/* Is uid in the session's view (always, without one)? The statements already stop at the
 * view's highest UID, and a folder cannot hold a UID below that which the view lacks (UIDs only
 * grow), so this is a cheap guard that every reported UID maps to a sequence number. */
static bool in_view(const struct mailsearch_scope *s, uint32_t uid)
{
    return !s->uids || imap_search_uid_to_seq(s->uids, s->nuids, uid) != 0;
}

/* The view is empty: nothing can match (and "*" had no value). */
static bool view_empty(const struct mailsearch_scope *s)
{
    return s->uids && s->nuids == 0;
}

/* ---- raw headers ---- */

/* Reads the header of the current row's message (up to its empty line, at most
 * MAILSEARCH_HEADER_MAX bytes). */
static int load_header(struct run *r)
{
    if (r->hdr_loaded)
        return 0;
    r->hdrlen = 0;
    struct blob_reader *rd = NULL;
    char e[256] = "";
    int rc = blob_reader_open(r->scope->bs, r->c, r->blob_id, 0, MAILSEARCH_HEADER_MAX, &rd, e,
                              sizeof(e));
    if (rc == BLOB_ENOTFOUND || rc == BLOB_ERANGE) { /* a message without content: no header */
        r->hdr_loaded = true;
        return 0;
    }
    if (rc < 0)
        return run_fail(r, -1, "cannot read a message header: %s", e);
    if (!r->hdr && !(r->hdr = malloc(MAILSEARCH_HEADER_MAX + 1))) {
        blob_reader_close(&rd);
        return run_fail(r, -1, "out of memory");
    }
    for (;;) {
        if (r->hdrlen == MAILSEARCH_HEADER_MAX)
            break;
        ssize_t n = blob_reader_read(rd, r->hdr + r->hdrlen, MAILSEARCH_HEADER_MAX - r->hdrlen);
        if (n < 0) {
            rc = run_fail(r, -1, "cannot read a message header: %s", blob_reader_error(rd));
            blob_reader_close(&rd);
            return rc;
        }
        if (n == 0)
            break;
        /* stop at the empty line (RFC 5322 §2.1), looking back across the previous read */
        size_t from = r->hdrlen > 3 ? r->hdrlen - 3 : 0;
        r->hdrlen += (size_t)n;
        bool done = false;
        for (size_t i = from; i + 1 < r->hdrlen && !done; i++)
            if (r->hdr[i] == '\n' &&
                (r->hdr[i + 1] == '\n' ||
                 (r->hdr[i + 1] == '\r' && i + 2 < r->hdrlen && r->hdr[i + 2] == '\n'))) {
                r->hdrlen = i + 1;
                done = true;
            }
        if (done)
            break;
    }
    blob_reader_close(&rd);
    r->hdr[r->hdrlen] = '\0';
    r->hdr_loaded = true;
    return 0;
}

/* needle in hay, ASCII case-insensitive. */
static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    if (n == 0)
        return true;
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    return false;
}

/* HEADER field str / BCC str on the raw header: 1 match, 0 not, -1 error. */
static int header_match(struct run *r, const struct imap_search_key *k)
{
    if (load_header(r) < 0)
        return -1;
    const char *field = k->op == IMAP_SEARCH_BCC ? "Bcc" : k->field;
    size_t flen = strlen(field), pos = 0;
    struct mime_header_field f;
    while (mime_header_next_field(r->hdr, r->hdrlen, &pos, &f) == 1) {
        if (f.name_len != flen || strncasecmp(f.name, field, flen) != 0)
            continue;
        if (!k->str[0]) /* RFC 9051 §6.4.4: an empty string matches any message with the field */
            return 1;
        char *u = mime_header_unfold(f.value, f.value_len);
        char *d = u ? mime_header_decode(u, strlen(u)) : NULL;
        free(u);
        if (!d)
            return run_fail(r, -1, "out of memory");
        bool hit = contains_ci(d, k->str);
        free(d);
        if (hit)
            return 1;
    }
    return 0;
}

/* Raw mode: the program on row `row` of res, the other keys' truth in columns from *col. */
static int eval_key(struct run *r, const struct imap_search_key *k, const PGresult *res, int row,
                    int *col)
{
    switch (k->op) {
    case IMAP_SEARCH_AND:
    case IMAP_SEARCH_OR: {
        /* every child is evaluated, so the column numbering stays in step */
        int v = k->op == IMAP_SEARCH_AND;
        for (size_t i = 0; i < k->nchildren; i++) {
            int x = eval_key(r, &k->children[i], res, row, col);
            if (x < 0)
                return -1;
            v = k->op == IMAP_SEARCH_AND ? (v && x) : (v || x);
        }
        return v;
    }
    case IMAP_SEARCH_NOT: {
        int x = eval_key(r, &k->children[0], res, row, col);
        return x < 0 ? -1 : !x;
    }
    default:
        if (is_raw(k))
            return header_match(r, k);
        return PQgetvalue(res, row, (*col)++)[0] == 't';
    }
}

/* ---- scanning the matches ---- */

struct srow {
    uint32_t uid;
    long long modseq;
    const PGresult *res;
    int row; /* extra columns start at 2 */
};

typedef int (*row_fn)(struct run *r, const struct srow *row, void *ctx);

/* Runs sql and calls fn for each row in the view, row by row (single-row mode: nothing but the
 * current row is held). fn returning non-zero stops the calls (the rest is drained). */
static int stream(struct run *r, const char *sql, row_fn fn, void *ctx)
{
    if (!PQsendQueryParams(r->c, sql, (int)r->nparams, NULL, (const char *const *)r->params, NULL,
                           NULL, 0)) {
        db_set_error(r->err, r->errlen, r->c, NULL, "cannot search");
        return r->rc = -1;
    }
    (void)PQsetSingleRowMode(r->c); /* cannot fail right after sending; rows come either way */
    int rc = 0;
    PGresult *res;
    while ((res = PQgetResult(r->c)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_SINGLE_TUPLE || st == PGRES_TUPLES_OK) {
            for (int i = 0; i < PQntuples(res) && rc == 0; i++) {
                struct srow row = {(uint32_t)strtoul(PQgetvalue(res, i, 0), NULL, 10),
                                   atoll(PQgetvalue(res, i, 1)), res, i};
                if (in_view(r->scope, row.uid) && fn(r, &row, ctx) != 0)
                    rc = -1; /* go on reading: libpq needs the results drained */
            }
        } else if (rc == 0) {
            db_set_error(r->err, r->errlen, r->c, res, "cannot search");
            rc = r->rc = -1;
        }
        PQclear(res);
    }
    return rc;
}

/* Calls fn for every matching row in UID order, with the extra columns `extras` (", a, b",
 * nextras of them). fn returning non-zero stops with that error (it set the message). */
static int scan(struct run *r, const char *extras, int nextras, row_fn fn, void *ctx)
{
    struct buf sql = {0};
    buf_str(&sql, "SELECT uid, modseq");
    buf_str(&sql, extras);
    if (r->raw) {
        buf_str(&sql, ", blob_id");
        buf_str(&sql, r->cols.s ? r->cols.s : "");
    }
    buf_str(&sql, " FROM messages WHERE folder_id = $1 AND uid > $3 AND uid <= $2 AND ");
    buf_str(&sql, r->where.s);
    buf_fmt(&sql, " ORDER BY uid%s", r->raw ? " LIMIT " : "");
    if (r->raw)
        buf_fmt(&sql, "%d", MAILSEARCH_PAGE);
    if (sql.oom) {
        buf_free(&sql);
        return run_fail(r, -1, "out of memory");
    }
    int rc = 0;
    if (!r->raw) {
        rc = stream(r, sql.s, fn, ctx);
        buf_free(&sql);
        return rc;
    }
    /* raw mode: pages by UID, each candidate's header read between statements */
    for (;;) {
        PGresult *res = PQexecParams(r->c, sql.s, (int)r->nparams, NULL,
                                     (const char *const *)r->params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            db_set_error(r->err, r->errlen, r->c, res, "cannot search");
            PQclear(res);
            rc = r->rc = -1;
            break;
        }
        int n = PQntuples(res);
        for (int i = 0; i < n && rc == 0; i++) {
            int col = 3 + nextras;
            if (!in_view(r->scope, (uint32_t)strtoul(PQgetvalue(res, i, 0), NULL, 10)))
                continue;
            r->blob_id = PQgetvalue(res, i, 2 + nextras);
            r->hdr_loaded = false;
            int v = eval_key(r, &r->prog->root, res, i, &col);
            if (v < 0) {
                rc = -1;
            } else if (v) {
                struct srow row = {(uint32_t)strtoul(PQgetvalue(res, i, 0), NULL, 10),
                                   atoll(PQgetvalue(res, i, 1)), res, i};
                if (fn(r, &row, ctx) != 0)
                    rc = -1;
            }
        }
        const char *last = n > 0 ? PQgetvalue(res, n - 1, 0) : NULL;
        char *next = last ? strdup(last) : NULL;
        PQclear(res);
        if (rc < 0 || n < MAILSEARCH_PAGE) {
            free(next);
            break;
        }
        if (!next) {
            rc = run_fail(r, -1, "out of memory");
            break;
        }
        free(r->params[2]); /* $3: after the page's last UID */
        r->params[2] = next;
    }
    buf_free(&sql);
    return rc;
}

/* ---- results ---- */

void mailsearch_result_free(struct mailsearch_result *res)
{
    free(res->uids);
    memset(res, 0, sizeof(*res));
}

static int res_add(struct mailsearch_result *res, uint32_t uid)
{
    if (res->count == res->cap) {
        size_t cap = res->cap ? res->cap * 2 : 256;
        uint32_t *u = realloc(res->uids, cap * sizeof(*u));
        if (!u)
            return -1;
        res->uids = u;
        res->cap = cap;
    }
    res->uids[res->count++] = uid;
    return 0;
}

struct collect {
    struct mailsearch_result *res;
    long long first_modseq, last_modseq;
};

static int collect_row(struct run *r, const struct srow *row, void *ctx)
{
    struct collect *cl = ctx;
    if (res_add(cl->res, row->uid) < 0)
        return run_fail(r, -1, "out of memory");
    if (cl->res->count == 1)
        cl->first_modseq = row->modseq;
    cl->last_modseq = row->modseq;
    if (row->modseq > cl->res->highest_modseq)
        cl->res->highest_modseq = row->modseq;
    return 0;
}

/* One statement's rows of (uid, modseq) appended to res. */
static int exec_pairs(struct run *r, const char *sql, struct mailsearch_result *res)
{
    PGresult *q = PQexecParams(r->c, sql, (int)r->nparams, NULL, (const char *const *)r->params,
                               NULL, NULL, 0);
    if (PQresultStatus(q) != PGRES_TUPLES_OK) {
        db_set_error(r->err, r->errlen, r->c, q, "cannot search");
        PQclear(q);
        return -1;
    }
    for (int i = 0; i < PQntuples(q); i++) {
        uint32_t uid = (uint32_t)strtoul(PQgetvalue(q, i, 0), NULL, 10);
        long long ms = atoll(PQgetvalue(q, i, 1));
        if (res->count && res->uids[res->count - 1] == uid)
            continue; /* MIN and MAX are one message */
        if (res_add(res, uid) < 0) {
            PQclear(q);
            return run_fail(r, -1, "out of memory");
        }
        if (ms > res->highest_modseq)
            res->highest_modseq = ms;
    }
    PQclear(q);
    return 0;
}

int mailsearch_search(PGconn *c, const struct mailsearch_scope *scope,
                      const struct imap_search_program *prog, struct mailsearch_result *res,
                      char *err, size_t errlen)
{
    memset(res, 0, sizeof(*res));
    struct run r;
    int rc = run_init(&r, c, scope, prog, err, errlen);
    if (rc < 0 || view_empty(scope)) {
        run_free(&r);
        return rc;
    }
    unsigned ret = prog->esearch ? prog->ret : 0;
    bool minmax = (ret & (IMAP_SEARCH_RET_MIN | IMAP_SEARCH_RET_MAX)) &&
                  !(ret & (IMAP_SEARCH_RET_ALL | IMAP_SEARCH_RET_COUNT));
    const char *from = " FROM messages WHERE folder_id = $1 AND uid > $3 AND uid <= $2 AND ";
    if (!r.raw && (minmax || ret == IMAP_SEARCH_RET_COUNT)) {
        struct buf sql = {0};
        if (ret == IMAP_SEARCH_RET_COUNT) {
            buf_str(&sql, "SELECT count(*), coalesce(max(modseq), 0)");
            buf_str(&sql, from);
            buf_str(&sql, r.where.s);
        } else {
            /* RFC 4731 §5: MIN and MAX alone need one row each, straight from the index */
            bool both = (ret & IMAP_SEARCH_RET_MIN) && (ret & IMAP_SEARCH_RET_MAX);
            for (int pass = 0; pass < 2; pass++) {
                bool want = pass == 0 ? (ret & IMAP_SEARCH_RET_MIN) : (ret & IMAP_SEARCH_RET_MAX);
                if (!want)
                    continue;
                if (both && pass == 1)
                    buf_str(&sql, " UNION ALL ");
                buf_str(&sql, "(SELECT uid, modseq");
                buf_str(&sql, from);
                buf_str(&sql, r.where.s);
                buf_str(&sql, pass == 0 ? " ORDER BY uid LIMIT 1)" : " ORDER BY uid DESC LIMIT 1)");
            }
        }
        if (sql.oom) {
            rc = run_fail(&r, -1, "out of memory");
        } else if (ret == IMAP_SEARCH_RET_COUNT) {
            PGresult *q = PQexecParams(c, sql.s, (int)r.nparams, NULL,
                                       (const char *const *)r.params, NULL, NULL, 0);
            if (PQresultStatus(q) == PGRES_TUPLES_OK && PQntuples(q) == 1) {
                res->matches = strtoull(PQgetvalue(q, 0, 0), NULL, 10);
                res->highest_modseq = atoll(PQgetvalue(q, 0, 1));
            } else {
                db_set_error(err, errlen, c, q, "cannot search");
                rc = -1;
            }
            PQclear(q);
        } else {
            rc = exec_pairs(&r, sql.s, res);
            res->matches = res->count;
        }
        buf_free(&sql);
        run_free(&r);
        if (rc < 0)
            mailsearch_result_free(res);
        return rc;
    }
    struct collect cl = {.res = res};
    rc = scan(&r, "", 0, collect_row, &cl);
    run_free(&r);
    if (rc < 0) {
        mailsearch_result_free(res);
        return rc;
    }
    res->matches = res->count;
    if (ret == IMAP_SEARCH_RET_COUNT) {
        res->count = 0; /* COUNT alone reports no numbers */
    } else if (minmax && res->count > 0) {
        /* keep MIN and/or MAX; MODSEQ is theirs (RFC 4731 §3.2) */
        uint32_t lo = res->uids[0], hi = res->uids[res->count - 1];
        bool both = (ret & IMAP_SEARCH_RET_MIN) && (ret & IMAP_SEARCH_RET_MAX);
        res->count = 0;
        if (ret & IMAP_SEARCH_RET_MIN)
            res->uids[res->count++] = lo;
        if ((ret & IMAP_SEARCH_RET_MAX) && !(both && hi == lo))
            res->uids[res->count++] = hi;
        res->highest_modseq =
            both ? (cl.first_modseq > cl.last_modseq ? cl.first_modseq : cl.last_modseq)
                 : ((ret & IMAP_SEARCH_RET_MIN) ? cl.first_modseq : cl.last_modseq);
        res->matches = res->count;
    }
    return 0;
}

/* ---- SORT ---- */

static bool sql_sortable(const struct imap_search_program *prog)
{
    for (size_t i = 0; i < prog->nsort; i++)
        if (prog->sort[i].key != IMAP_SORT_ARRIVAL && prog->sort[i].key != IMAP_SORT_DATE &&
            prog->sort[i].key != IMAP_SORT_SIZE)
            return false;
    return true;
}

/* Bytes kept of a string key: at most max, never splitting a UTF-8 sequence. */
static size_t cut_utf8(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return n;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

struct chunk {
    struct chunk *next;
    size_t used, size;
    char data[];
};

/* A copy of s[0..n) in the arena *head. */
static char *arena_dup(struct chunk **head, const char *s, size_t n)
{
    if (!*head || (*head)->size - (*head)->used < n + 1) {
        size_t size = n + 1 > 65536 ? n + 1 : 65536;
        struct chunk *c = malloc(sizeof(*c) + size);
        if (!c)
            return NULL;
        c->next = *head;
        c->used = 0;
        c->size = size;
        *head = c;
    }
    char *p = (*head)->data + (*head)->used;
    memcpy(p, s, n);
    p[n] = '\0';
    (*head)->used += n + 1;
    return p;
}

static void arena_free(struct chunk **head)
{
    while (*head) {
        struct chunk *n = (*head)->next;
        free(*head);
        *head = n;
    }
}

/* -- reading the stored ENVELOPE (RFC 9051 §7.5.2, as proto/imap/envelope.c writes it) -- */

struct envp {
    const char *s;
    size_t len, pos;
};

static void env_space(struct envp *e)
{
    while (e->pos < e->len && e->s[e->pos] == ' ')
        e->pos++;
}

/* An nstring: 0 with a new string or NULL for NIL; -1 malformed or out of memory. */
static int env_nstring(struct envp *e, char **out_r)
{
    *out_r = NULL;
    env_space(e);
    if (e->pos >= e->len)
        return -1;
    const char *p = e->s + e->pos;
    if (e->len - e->pos >= 3 && strncasecmp(p, "NIL", 3) == 0) {
        e->pos += 3;
        return 0;
    }
    if (*p == '"') {
        struct buf b = {0};
        size_t i = e->pos + 1;
        while (i < e->len && e->s[i] != '"') {
            if (e->s[i] == '\\' && i + 1 < e->len)
                i++;
            buf_add(&b, e->s + i, 1);
            i++;
        }
        if (i >= e->len || b.oom) {
            buf_free(&b);
            return -1;
        }
        e->pos = i + 1;
        *out_r = b.s ? b.s : strdup("");
        return *out_r ? 0 : -1;
    }
    if (*p == '{') { /* literal: {n}CRLF then n bytes */
        char *end;
        unsigned long long n = strtoull(p + 1, &end, 10);
        size_t at = (size_t)(end - e->s);
        if (at + 3 > e->len || e->s[at] != '}' || e->s[at + 1] != '\r' || e->s[at + 2] != '\n' ||
            n > e->len - (at + 3))
            return -1;
        *out_r = strndup(e->s + at + 3, (size_t)n);
        e->pos = at + 3 + (size_t)n;
        return *out_r ? 0 : -1;
    }
    return -1;
}

/* Skips one element (nstring or list). -1 malformed. */
static int env_skip(struct envp *e)
{
    env_space(e);
    if (e->pos < e->len && e->s[e->pos] == '(') {
        int depth = 0;
        do {
            env_space(e);
            if (e->pos >= e->len)
                return -1;
            char ch = e->s[e->pos];
            if (ch == '(') {
                depth++;
                e->pos++;
            } else if (ch == ')') {
                depth--;
                e->pos++;
            } else {
                char *s;
                if (env_nstring(e, &s) < 0)
                    return -1;
                free(s);
            }
        } while (depth > 0);
        return 0;
    }
    char *s;
    if (env_nstring(e, &s) < 0)
        return -1;
    free(s);
    return 0;
}

static bool env_take(struct envp *e, char ch)
{
    env_space(e);
    if (e->pos < e->len && e->s[e->pos] == ch) {
        e->pos++;
        return true;
    }
    return false;
}

/* The first mailbox (not a group marker) of address field `field` (2 from, 5 to, 6 cc):
 * display name (raw, may hold encoded-words), local part and domain; all NULL when none. */
static void env_first_address(const char *env, int field, char **name_r, char **mailbox_r,
                              char **host_r)
{
    *name_r = *mailbox_r = *host_r = NULL;
    struct envp e = {env, strlen(env), 0};
    if (!env_take(&e, '('))
        return;
    for (int i = 0; i < field; i++)
        if (env_skip(&e) < 0)
            return;
    if (!env_take(&e, '('))
        return; /* NIL: no addresses */
    while (env_take(&e, '(')) {
        char *name = NULL, *mailbox = NULL, *host = NULL;
        if (env_nstring(&e, &name) < 0 || env_skip(&e) < 0 || env_nstring(&e, &mailbox) < 0 ||
            env_nstring(&e, &host) < 0 || !env_take(&e, ')')) {
            free(name);
            free(mailbox);
            free(host);
            return;
        }
        if (host) { /* group markers have no host (RFC 9051 §7.5.2) */
            *name_r = name;
            *mailbox_r = mailbox;
            *host_r = host;
            return;
        }
        free(name);
        free(mailbox);
    }
}

union skey {
    int64_t n;
    const char *s;
};

struct sorter {
    const struct imap_search_program *prog;
    int col[IMAP_SEARCH_MAX_SORT]; /* each criterion's column */
    uint32_t *uids;
    union skey *keys; /* nsort per row */
    size_t n, cap;
    long long highest_modseq;
    struct chunk *arena;
};

/* The key string of a criterion on strings for the current row. */
static char *string_key(enum imap_sort_key key, const char *value)
{
    if (key == IMAP_SORT_SUBJECT)
        return imap_thread_base_subject(value, NULL);
    int field = key == IMAP_SORT_CC                                   ? 6
                : (key == IMAP_SORT_TO || key == IMAP_SORT_DISPLAYTO) ? 5
                                                                      : 2;
    char *name, *mailbox, *host, *out = NULL;
    env_first_address(value, field, &name, &mailbox, &host);
    if (key == IMAP_SORT_DISPLAYFROM || key == IMAP_SORT_DISPLAYTO) {
        /* RFC 5957 §3: the decoded display name, else the addr-spec, else "" */
        char *d = name ? mime_header_decode(name, strlen(name)) : NULL;
        if (d && d[0]) {
            out = d;
            d = NULL;
        } else if (mailbox && host) {
            size_t l = strlen(mailbox) + strlen(host) + 2;
            if ((out = malloc(l)))
                snprintf(out, l, "%s@%s", mailbox, host);
        }
        free(d);
    } else if (mailbox) { /* RFC 5256 §3: addr-mailbox of the first address */
        out = mailbox;
        mailbox = NULL;
    }
    free(name);
    free(mailbox);
    free(host);
    return out ? out : strdup("");
}

static int sort_row(struct run *r, const struct srow *row, void *ctx)
{
    struct sorter *so = ctx;
    const struct imap_search_program *prog = so->prog;
    if (so->n == so->cap) {
        size_t cap = so->cap ? so->cap * 2 : 256;
        uint32_t *u = realloc(so->uids, cap * sizeof(*u));
        if (u)
            so->uids = u;
        union skey *k = u ? realloc(so->keys, cap * prog->nsort * sizeof(*k)) : NULL;
        if (!k)
            return run_fail(r, -1, "out of memory");
        so->keys = k;
        so->cap = cap;
    }
    union skey *k = &so->keys[so->n * prog->nsort];
    for (size_t i = 0; i < prog->nsort; i++) {
        const char *v = PQgetvalue(row->res, row->row, so->col[i]);
        enum imap_sort_key key = prog->sort[i].key;
        if (key == IMAP_SORT_ARRIVAL || key == IMAP_SORT_DATE || key == IMAP_SORT_SIZE) {
            k[i].n = strtoll(v, NULL, 10);
            continue;
        }
        char *s = string_key(key, v);
        if (!s)
            return run_fail(r, -1, "out of memory");
        k[i].s = arena_dup(&so->arena, s, cut_utf8(s, MAILSEARCH_SORT_KEY_MAX));
        free(s);
        if (!k[i].s)
            return run_fail(r, -1, "out of memory");
    }
    so->uids[so->n++] = row->uid;
    if (row->modseq > so->highest_modseq)
        so->highest_modseq = row->modseq;
    return 0;
}

static _Thread_local const struct sorter *cmp_sorter;

static int cmp_rows(const void *a, const void *b)
{
    const struct sorter *so = cmp_sorter;
    size_t x = *(const size_t *)a, y = *(const size_t *)b, ns = so->prog->nsort;
    for (size_t i = 0; i < ns; i++) {
        const union skey *kx = &so->keys[x * ns + i], *ky = &so->keys[y * ns + i];
        enum imap_sort_key key = so->prog->sort[i].key;
        int c;
        if (key == IMAP_SORT_ARRIVAL || key == IMAP_SORT_DATE || key == IMAP_SORT_SIZE)
            c = kx->n < ky->n ? -1 : kx->n > ky->n;
        else
            c = imap_thread_subject_cmp(kx->s, ky->s);
        if (c)
            return so->prog->sort[i].reverse ? -c : c;
    }
    /* RFC 5256 §3: the implicit last criterion, mailbox order, is never reversed */
    return so->uids[x] < so->uids[y] ? -1 : so->uids[x] > so->uids[y];
}

static const char *sort_column(enum imap_sort_key key)
{
    switch (key) {
    case IMAP_SORT_ARRIVAL:
        return "extract(epoch FROM internal_date)::bigint";
    case IMAP_SORT_DATE:
        return "extract(epoch FROM coalesce(sent_date, internal_date))::bigint";
    case IMAP_SORT_SIZE:
        return "size";
    case IMAP_SORT_SUBJECT:
        return "subject";
    case IMAP_SORT_CC:
    case IMAP_SORT_FROM:
    case IMAP_SORT_TO:
    case IMAP_SORT_DISPLAYFROM:
    case IMAP_SORT_DISPLAYTO:
        break;
    }
    return "envelope";
}

int mailsearch_sort(PGconn *c, const struct mailsearch_scope *scope,
                    const struct imap_search_program *prog, struct mailsearch_result *res,
                    char *err, size_t errlen)
{
    memset(res, 0, sizeof(*res));
    struct run r;
    int rc = run_init(&r, c, scope, prog, err, errlen);
    if (rc < 0 || view_empty(scope)) {
        run_free(&r);
        return rc;
    }
    if (!r.raw && sql_sortable(prog)) {
        /* dates and sizes: PostgreSQL sorts and the rows stream in order */
        struct buf sql = {0};
        buf_str(&sql, "SELECT uid, modseq FROM messages WHERE folder_id = $1 AND uid > $3"
                      " AND uid <= $2 AND ");
        buf_str(&sql, r.where.s);
        buf_str(&sql, " ORDER BY ");
        for (size_t i = 0; i < prog->nsort; i++) {
            buf_str(&sql, sort_column(prog->sort[i].key));
            buf_str(&sql, prog->sort[i].reverse ? " DESC, " : ", ");
        }
        buf_str(&sql, "uid");
        struct collect cl = {.res = res};
        rc = sql.oom ? run_fail(&r, -1, "out of memory") : stream(&r, sql.s, collect_row, &cl);
        buf_free(&sql);
        run_free(&r);
        if (rc < 0)
            mailsearch_result_free(res);
        else
            res->matches = res->count;
        return rc;
    }
    /* strings: keys computed here, then sorted */
    struct sorter so = {.prog = prog};
    struct buf extras = {0};
    const char *cols[IMAP_SEARCH_MAX_SORT];
    int ncols = 0;
    for (size_t i = 0; i < prog->nsort; i++) {
        const char *col = sort_column(prog->sort[i].key);
        int k = 0;
        while (k < ncols && strcmp(cols[k], col) != 0)
            k++;
        if (k == ncols) {
            cols[ncols++] = col;
            buf_str(&extras, ", ");
            buf_str(&extras, col);
        }
        so.col[i] = 2 + k;
    }
    if (extras.oom)
        rc = run_fail(&r, -1, "out of memory");
    else
        rc = scan(&r, extras.s ? extras.s : "", ncols, sort_row, &so);
    size_t *order = NULL;
    if (rc == 0 && so.n > 0 && !(order = malloc(so.n * sizeof(*order))))
        rc = run_fail(&r, -1, "out of memory");
    if (rc == 0 && so.n > 0) {
        for (size_t i = 0; i < so.n; i++)
            order[i] = i;
        cmp_sorter = &so;
        qsort(order, so.n, sizeof(*order), cmp_rows);
        res->uids = malloc(so.n * sizeof(*res->uids));
        if (!res->uids) {
            rc = run_fail(&r, -1, "out of memory");
        } else {
            for (size_t i = 0; i < so.n; i++)
                res->uids[i] = so.uids[order[i]];
            res->count = res->cap = res->matches = so.n;
            res->highest_modseq = so.highest_modseq;
        }
    }
    free(order);
    free(so.uids);
    free(so.keys);
    arena_free(&so.arena);
    buf_free(&extras);
    run_free(&r);
    if (rc < 0)
        mailsearch_result_free(res);
    return rc;
}

/* ---- THREAD ---- */

struct threader {
    struct imap_thread_msg *msgs;
    size_t n, cap;
    struct chunk *arena;
};

static int thread_row(struct run *r, const struct srow *row, void *ctx)
{
    struct threader *th = ctx;
    if (th->n == th->cap) {
        size_t cap = th->cap ? th->cap * 2 : 256;
        struct imap_thread_msg *m = realloc(th->msgs, cap * sizeof(*m));
        if (!m)
            return run_fail(r, -1, "out of memory");
        th->msgs = m;
        th->cap = cap;
    }
    const PGresult *q = row->res;
    struct imap_thread_msg *m = &th->msgs[th->n];
    m->uid = row->uid;
    m->date = strtoll(PQgetvalue(q, row->row, 3), NULL, 10);
    const char *v;
    v = PQgetvalue(q, row->row, 2);
    m->subject = arena_dup(&th->arena, v, strlen(v));
    v = PQgetvalue(q, row->row, 4);
    m->message_id = arena_dup(&th->arena, v, strlen(v));
    v = PQgetvalue(q, row->row, 5);
    m->in_reply_to = arena_dup(&th->arena, v, strlen(v));
    v = PQgetvalue(q, row->row, 6);
    m->references = arena_dup(&th->arena, v, strlen(v));
    if (!m->subject || !m->message_id || !m->in_reply_to || !m->references)
        return run_fail(r, -1, "out of memory");
    th->n++;
    return 0;
}

int mailsearch_thread(PGconn *c, const struct mailsearch_scope *scope,
                      const struct imap_search_program *prog, struct imap_thread **thread_r,
                      char *err, size_t errlen)
{
    *thread_r = NULL;
    struct run r;
    int rc = run_init(&r, c, scope, prog, err, errlen);
    if (rc < 0) {
        run_free(&r);
        return rc;
    }
    struct threader th = {0};
    if (!view_empty(scope)) {
        /* per message at most MAILSEARCH_THREAD_TEXT_MAX bytes of subject and IDs, and no
         * IDs at all for ORDEREDSUBJECT, so memory stays in proportion to the matches */
        char extras[320];
        if (prog->thread == IMAP_THREAD_REFERENCES)
            snprintf(extras, sizeof(extras),
                     ", left(subject, %d), extract(epoch FROM coalesce(sent_date, internal_date))"
                     "::bigint, left(message_id, 250), left(in_reply_to, 250), right(refs, %d)",
                     MAILSEARCH_SUBJECT_MAX, MAILSEARCH_REFS_MAX);
        else
            snprintf(extras, sizeof(extras),
                     ", left(subject, %d), extract(epoch FROM coalesce(sent_date, internal_date))"
                     "::bigint, '', '', ''",
                     MAILSEARCH_SUBJECT_MAX);
        rc = scan(&r, extras, 5, thread_row, &th);
    }
    if (rc == 0 && imap_thread_build(prog->thread, th.msgs, th.n, thread_r) < 0)
        rc = run_fail(&r, -1, "out of memory");
    free(th.msgs);
    arena_free(&th.arena);
    run_free(&r);
    return rc;
}
