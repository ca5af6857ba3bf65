/* The mail store (see mailstore.h).
 *
 * UID sets travel to PostgreSQL as an int8multirange literal plus the set's
 * lowest and highest UID, so the (folder_id, uid) index narrows the rows and the
 * multirange picks the exact members. Writes that touch several rows do it in
 * one statement with data-modifying CTEs, so each command costs a handful of
 * round trips whatever the number of messages.
 *
 * Lock order, to keep concurrent commands free of deadlocks: account rows (the
 * modseq) in ascending id, then folder rows, then message rows. */
#include "storage/mailstore.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "storage/changes.h"
#include "storage/db.h"
#include "storage/quota.h"

#define SEARCH_TEXT_MAX (256 * 1024) /* to_tsvector input; keeps the vector far below 1 MB */

static int fail(char *err, size_t errlen, PGconn *c, PGresult *r, const char *what)
{
    db_set_error(err, errlen, c, r, what);
    PQclear(r);
    db_rollback(c);
    return -1;
}

/* fail() for a unit of work begun with db_op_begin(). */
static int fail_op(char *err, size_t errlen, PGconn *c, struct db_op *op, PGresult *r,
                   const char *what)
{
    db_set_error(err, errlen, c, r, what);
    PQclear(r);
    db_op_abort(c, op);
    return -1;
}

static PGresult *exec(PGconn *c, const char *sql, int n, const char *const *p)
{
    return PQexecParams(c, sql, n, NULL, p, NULL, NULL, 0);
}

/* ---- UID sets ---- */

struct uidset_sql {
    char *multirange; /* "{[1,6),[9,10)}" */
    char lo[16], hi[16];
};

static int uidset_build(const struct uid_range *set, size_t nset, struct uidset_sql *out)
{
    uint64_t lo = UINT32_MAX, hi = 0;
    size_t cap = 2 + nset * 26 + 1;
    out->multirange = malloc(cap);
    if (!out->multirange)
        return -1;
    size_t o = 0;
    out->multirange[o++] = '{';
    for (size_t i = 0; i < nset; i++) {
        uint32_t a = set[i].lo < set[i].hi ? set[i].lo : set[i].hi;
        uint32_t b = set[i].lo < set[i].hi ? set[i].hi : set[i].lo;
        if (a < lo)
            lo = a;
        if (b > hi)
            hi = b;
        o += (size_t)snprintf(out->multirange + o, cap - o, "%s[%" PRIu32 ",%" PRIu64 ")",
                              i ? "," : "", a, (uint64_t)b + 1);
    }
    out->multirange[o++] = '}';
    out->multirange[o] = '\0';
    if (nset == 0)
        lo = hi = 0;
    snprintf(out->lo, sizeof(out->lo), "%" PRIu64, lo);
    snprintf(out->hi, sizeof(out->hi), "%" PRIu64, hi);
    return 0;
}

static void uidset_free(struct uidset_sql *u)
{
    free(u->multirange);
    u->multirange = NULL;
}

/* ---- keywords ---- */

bool mailstore_keyword_valid(const char *kw)
{
    size_t n = strlen(kw);
    if (n == 0 || n > MAIL_KEYWORD_LEN || kw[0] == '\\')
        return false;
    for (const unsigned char *p = (const unsigned char *)kw; *p; p++) {
        /* RFC 3501 atom: no CTL, SP, atom-specials or resp-specials */
        if (*p <= 0x20 || *p >= 0x7f || strchr("(){%*\"\\]", *p))
            return false;
    }
    return true;
}

unsigned mailstore_flag_bit(const char *name)
{
    static const struct {
        const char *name;
        unsigned bit;
    } map[] = {{"\\Seen", MAIL_SEEN},
               {"\\Answered", MAIL_ANSWERED},
               {"\\Flagged", MAIL_FLAGGED},
               {"\\Deleted", MAIL_DELETED},
               {"\\Draft", MAIL_DRAFT}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (!strcasecmp(name, map[i].name))
            return map[i].bit;
    return 0;
}

/* A PostgreSQL text[] literal of keywords: every element double-quoted. */
static char *keywords_literal(const char *const *kw, size_t n)
{
    size_t cap = 3;
    for (size_t i = 0; i < n; i++)
        cap += strlen(kw[i]) * 2 + 3;
    char *s = malloc(cap), *p = s;
    if (!s)
        return NULL;
    *p++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *p++ = ',';
        *p++ = '"';
        for (const char *k = kw[i]; *k; k++) {
            if (*k == '"' || *k == '\\')
                *p++ = '\\';
            *p++ = *k;
        }
        *p++ = '"';
    }
    *p++ = '}';
    *p = '\0';
    return s;
}

/* Splits PostgreSQL's text[] output ("{a,\"b c\"}") in place into out[]. */
static size_t keywords_parse(char *s, const char **out, size_t max)
{
    size_t n = 0;
    if (*s != '{')
        return 0;
    char *p = s + 1;
    while (*p && *p != '}' && n < max) {
        char *start = p, *w = p;
        if (*p == '"') {
            start = w = ++p;
            while (*p && *p != '"') {
                if (*p == '\\' && p[1])
                    p++;
                *w++ = *p++;
            }
            if (*p == '"')
                p++;
        } else {
            while (*p && *p != ',' && *p != '}')
                *w++ = *p++;
        }
        char sep = *p;
        *w = '\0';
        out[n++] = start;
        if (sep == ',')
            p++;
        else
            break;
    }
    return n;
}

/* ---- append ---- */

static int check_new(const struct mail_new *m, char *err, size_t errlen)
{
    if (!m->blob_id || strlen(m->blob_id) != 64 || !m->meta || !m->meta->envelope ||
        !m->meta->body || !m->meta->bodystructure) {
        snprintf(err, errlen, "incomplete message");
        return MAIL_EINVAL;
    }
    if ((m->flags & ~MAIL_FLAGS_ALL) || m->nkeywords > MAIL_KEYWORDS_MAX) {
        snprintf(err, errlen, "invalid flags");
        return MAIL_EINVAL;
    }
    for (size_t i = 0; i < m->nkeywords; i++)
        if (!mailstore_keyword_valid(m->keywords[i])) {
            snprintf(err, errlen, "invalid keyword");
            return MAIL_EINVAL;
        }
    return 0;
}

int mailstore_append(PGconn *c, long long account_id, long long folder_id, const struct mail_new *m,
                     bool enforce_quota, uint32_t *uid_r, long long *modseq_r, char *err,
                     size_t errlen)
{
    int rc = check_new(m, err, errlen);
    if (rc < 0)
        return rc;
    /* A unit of work, so SMTP can deliver to several mailboxes and queue the
     * rest in one transaction. */
    struct db_op op;
    if (db_op_begin(c, &op, err, errlen) < 0)
        return -1;
    long long modseq;
    if (changes_next_modseq(c, account_id, &modseq) < 0)
        return fail_op(err, errlen, c, &op, NULL, "cannot take a modseq");
    char acc[24], fol[24], ms[24], size[24], idate[24], flags[8], sent[24];
    snprintf(acc, sizeof(acc), "%lld", account_id);
    snprintf(fol, sizeof(fol), "%lld", folder_id);
    snprintf(ms, sizeof(ms), "%lld", modseq);
    const char *p1[] = {fol, acc, ms};
    PGresult *r = exec(c,
                       "UPDATE folders SET uidnext = uidnext + 1, highest_modseq = $3"
                       " WHERE id = $1 AND account_id = $2 AND kind = 'mail'"
                       " RETURNING uidnext - 1",
                       3, p1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return fail_op(err, errlen, c, &op, r, "cannot allocate a UID");
    if (PQntuples(r) != 1) {
        PQclear(r);
        db_op_abort(c, &op);
        snprintf(err, errlen, "no such mail folder");
        return MAIL_ENOTFOUND;
    }
    long long uid = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (uid > (long long)UINT32_MAX) {
        db_op_abort(c, &op);
        snprintf(err, errlen, "the folder has used every UID; it must be renamed and re-created");
        return -1;
    }
    int q = quota_charge(c, account_id, (long long)m->size, 1, enforce_quota, err, errlen);
    if (q == QUOTA_EXCEEDED) {
        db_op_abort(c, &op);
        snprintf(err, errlen, "quota exceeded");
        return MAIL_EQUOTA;
    }
    if (q < 0)
        return fail_op(err, errlen, c, &op, NULL, "cannot account quota");

    char *kw = keywords_literal(m->keywords, m->nkeywords);
    if (!kw) {
        db_op_abort(c, &op);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char uidbuf[24];
    snprintf(uidbuf, sizeof(uidbuf), "%lld", uid);
    snprintf(size, sizeof(size), "%llu", (unsigned long long)m->size);
    snprintf(idate, sizeof(idate), "%lld", (long long)(m->internal_date ? m->internal_date : time(NULL)));
    snprintf(flags, sizeof(flags), "%u", m->flags);
    snprintf(sent, sizeof(sent), "%lld", (long long)m->meta->sent_date);
    const struct mail_meta *mt = m->meta;
    char *text = NULL;
    if (mt->search_text) {
        size_t n = strnlen(mt->search_text, SEARCH_TEXT_MAX);
        /* do not cut inside a UTF-8 sequence */
        while (n > 0 && n == SEARCH_TEXT_MAX && ((unsigned char)mt->search_text[n] & 0xC0) == 0x80)
            n--;
        text = strndup(mt->search_text, n);
    }
    const char *p2[] = {acc,
                        fol,
                        uidbuf,
                        ms,
                        m->blob_id,
                        size,
                        idate,
                        flags,
                        kw,
                        mt->envelope,
                        mt->body,
                        mt->bodystructure,
                        mt->parts_json ? mt->parts_json : "[]",
                        mt->sent_date ? sent : NULL,
                        mt->subject ? mt->subject : "",
                        mt->from ? mt->from : "",
                        mt->to ? mt->to : "",
                        mt->cc ? mt->cc : "",
                        mt->message_id ? mt->message_id : "",
                        mt->in_reply_to ? mt->in_reply_to : "",
                        mt->references ? mt->references : "",
                        text ? text : ""};
    r = exec(c,
             "INSERT INTO messages (account_id, folder_id, uid, modseq, blob_id, size, internal_date,"
             " flags, keywords, envelope, body, bodystructure, parts, sent_date, subject, from_addr,"
             " to_addr, cc_addr, message_id, in_reply_to, refs, fts)"
             " VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7), $8, $9::text[], $10, $11, $12,"
             " $13::jsonb, to_timestamp($14), $15, $16, $17, $18, $19, $20, $21,"
             " setweight(to_tsvector('simple', $15), 'A') ||"
             " setweight(to_tsvector('simple', $16 || ' ' || $17 || ' ' || $18), 'B') ||"
             " to_tsvector('simple', $22))",
             22, p2);
    free(kw);
    free(text);
    if (!db_ok(r))
        return fail_op(err, errlen, c, &op, r, "cannot store the message");
    PQclear(r);
    char unseen[4], deleted[4];
    snprintf(unseen, sizeof(unseen), "%d", !(m->flags & MAIL_SEEN));
    snprintf(deleted, sizeof(deleted), "%d", !!(m->flags & MAIL_DELETED));
    const char *p3[] = {fol, unseen, deleted, size};
    r = exec(c,
             "INSERT INTO folder_counts (folder_id, messages, unseen, deleted, bytes)"
             " VALUES ($1, 1, $2, $3, $4) ON CONFLICT (folder_id) DO UPDATE SET"
             " messages = folder_counts.messages + 1, unseen = folder_counts.unseen + $2,"
             " deleted = folder_counts.deleted + $3, bytes = folder_counts.bytes + $4",
             4, p3);
    if (!db_ok(r))
        return fail_op(err, errlen, c, &op, r, "cannot update the folder counters");
    PQclear(r);
    if (db_op_commit(c, &op, err, errlen) < 0)
        return fail_op(err, errlen, c, &op, NULL, "cannot commit");
    *uid_r = (uint32_t)uid;
    *modseq_r = modseq;
    return 0;
}

/* ---- fetch ---- */

int mailstore_fetch(PGconn *c, long long folder_id, const struct uid_range *set, size_t nset,
                    long long changed_since, bool want_meta, mail_row_cb cb, void *ctx, char *err,
                    size_t errlen)
{
    struct uidset_sql us = {0};
    if (nset && uidset_build(set, nset, &us) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char fol[24], since[24];
    snprintf(fol, sizeof(fol), "%lld", folder_id);
    snprintf(since, sizeof(since), "%lld", changed_since);
    const char *p[] = {fol, since, nset ? us.lo : NULL, nset ? us.hi : NULL, us.multirange};
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "SELECT id, uid, modseq, flags, keywords, size, extract(epoch FROM internal_date)::bigint,"
             " blob_id%s FROM messages WHERE folder_id = $1 AND modseq > $2"
             " AND ($3::bigint IS NULL OR (uid BETWEEN $3 AND $4 AND uid <@ $5::int8multirange))"
             " ORDER BY uid",
             want_meta ? ", envelope, body, bodystructure, parts::text" : "");
    if (!PQsendQueryParams(c, sql, 5, NULL, p, NULL, NULL, 0) || !PQsetSingleRowMode(c)) {
        uidset_free(&us);
        db_set_error(err, errlen, c, NULL, "cannot read messages");
        return -1;
    }
    uidset_free(&us);
    int rc = 0;
    bool stopped = false;
    PGresult *r;
    while ((r = PQgetResult(c)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE && !stopped) {
            const char *kws[MAIL_KEYWORDS_MAX];
            char *kwtext = strdup(PQgetvalue(r, 0, 4));
            struct mail_row row = {
                .id = atoll(PQgetvalue(r, 0, 0)),
                .uid = (uint32_t)strtoul(PQgetvalue(r, 0, 1), NULL, 10),
                .modseq = atoll(PQgetvalue(r, 0, 2)),
                .flags = (unsigned)atoi(PQgetvalue(r, 0, 3)),
                .keywords = kws,
                .nkeywords = kwtext ? keywords_parse(kwtext, kws, MAIL_KEYWORDS_MAX) : 0,
                .size = strtoull(PQgetvalue(r, 0, 5), NULL, 10),
                .internal_date = (time_t)atoll(PQgetvalue(r, 0, 6)),
                .blob_id = PQgetvalue(r, 0, 7),
            };
            if (want_meta) {
                row.envelope = PQgetvalue(r, 0, 8);
                row.body = PQgetvalue(r, 0, 9);
                row.bodystructure = PQgetvalue(r, 0, 10);
                row.parts_json = PQgetvalue(r, 0, 11);
            }
            if (cb(&row, ctx) != 0)
                stopped = true; /* drain the rest, libpq needs the results read */
            free(kwtext);
        } else if (st != PGRES_TUPLES_OK && st != PGRES_SINGLE_TUPLE) {
            db_set_error(err, errlen, c, r, "cannot read messages");
            rc = -1;
        }
        PQclear(r);
    }
    return rc;
}

/* ---- store ---- */

int mailstore_store(PGconn *c, long long account_id, long long folder_id,
                    const struct uid_range *set, size_t nset, enum mail_store_mode mode,
                    unsigned flags, const char *const *keywords, size_t nkeywords,
                    long long unchanged_since, mail_row_cb changed_cb, void *changed_ctx,
                    void (*failed_cb)(uint32_t uid, void *ctx), void *failed_ctx, char *err,
                    size_t errlen)
{
    if ((flags & ~MAIL_FLAGS_ALL) || nkeywords > MAIL_KEYWORDS_MAX) {
        snprintf(err, errlen, "invalid flags");
        return MAIL_EINVAL;
    }
    for (size_t i = 0; i < nkeywords; i++)
        if (!mailstore_keyword_valid(keywords[i])) {
            snprintf(err, errlen, "invalid keyword");
            return MAIL_EINVAL;
        }
    struct uidset_sql us = {0};
    char *kw = keywords_literal(keywords, nkeywords);
    if (!kw || uidset_build(set, nset, &us) < 0) {
        free(kw);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = -1;
    long long modseq;
    if (db_begin(c) < 0 || changes_next_modseq(c, account_id, &modseq) < 0) {
        fail(err, errlen, c, NULL, "cannot take a modseq");
        goto out;
    }
    char fol[24], ms[24], fl[8], unch[24];
    snprintf(fol, sizeof(fol), "%lld", folder_id);
    snprintf(ms, sizeof(ms), "%lld", modseq);
    snprintf(fl, sizeof(fl), "%u", flags);
    snprintf(unch, sizeof(unch), "%lld", unchanged_since);
    static const char *const flag_expr[] = {"$5::int", "o.flags | $5::int", "o.flags & ~$5::int"};
    static const char *const kw_expr[] = {
        "ARRAY(SELECT DISTINCT unnest($6::text[]) ORDER BY 1)",
        "ARRAY(SELECT DISTINCT unnest(o.keywords || $6::text[]) ORDER BY 1)",
        "ARRAY(SELECT unnest(o.keywords) EXCEPT SELECT unnest($6::text[]) ORDER BY 1)"};
    char sql[2048];
    /* RFC 7162 §3.1.3: with UNCHANGEDSINCE, messages changed after it fail the STORE. */
    snprintf(sql, sizeof(sql),
             "WITH o AS (SELECT id, uid, flags, keywords, modseq FROM messages"
             "  WHERE folder_id = $1 AND uid BETWEEN $2 AND $3 AND uid <@ $4::int8multirange"
             "  ORDER BY uid FOR UPDATE),"
             " n AS (SELECT o.id, %s AS nflags, %s AS nkw FROM o"
             "  WHERE ($8::bigint = 0 OR o.modseq <= $8)),"
             " u AS (UPDATE messages m SET flags = n.nflags, keywords = n.nkw, modseq = $7"
             "  FROM n, o WHERE m.id = n.id AND o.id = n.id"
             "  AND (o.flags <> n.nflags OR o.keywords <> n.nkw)"
             "  RETURNING m.id, m.uid, m.flags, m.keywords, m.size, m.blob_id, o.flags AS oflags)"
             " SELECT 'c', id, uid, flags, keywords, size, blob_id, oflags FROM u"
             " UNION ALL SELECT 'f', id, uid, 0, NULL, 0, NULL, 0 FROM o"
             "  WHERE $8::bigint <> 0 AND o.modseq > $8"
             " ORDER BY 3",
             flag_expr[mode], kw_expr[mode]);
    const char *p[] = {fol, us.lo, us.hi, us.multirange, fl, kw, ms, unch};
    PGresult *r = exec(c, sql, 8, p);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fail(err, errlen, c, r, "cannot change flags");
        goto out;
    }
    long long d_unseen = 0, d_deleted = 0;
    int changed = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        uint32_t uid = (uint32_t)strtoul(PQgetvalue(r, i, 2), NULL, 10);
        if (PQgetvalue(r, i, 0)[0] == 'f') {
            if (failed_cb)
                failed_cb(uid, failed_ctx);
            continue;
        }
        unsigned nf = (unsigned)atoi(PQgetvalue(r, i, 3)), of = (unsigned)atoi(PQgetvalue(r, i, 7));
        d_unseen += (long long)!(nf & MAIL_SEEN) - (long long)!(of & MAIL_SEEN);
        d_deleted += (long long)!!(nf & MAIL_DELETED) - (long long)!!(of & MAIL_DELETED);
        changed++;
    }
    if (changed) {
        char du[24], dd[24];
        snprintf(du, sizeof(du), "%lld", d_unseen);
        snprintf(dd, sizeof(dd), "%lld", d_deleted);
        const char *p2[] = {fol, du, dd, ms};
        PGresult *r2 = exec(c,
                            "WITH f AS (UPDATE folders SET highest_modseq = $4 WHERE id = $1)"
                            " UPDATE folder_counts SET unseen = unseen + $2, deleted = deleted + $3"
                            " WHERE folder_id = $1",
                            4, p2);
        if (!db_ok(r2)) {
            PQclear(r);
            fail(err, errlen, c, r2, "cannot update the folder counters");
            goto out;
        }
        PQclear(r2);
    }
    if (db_commit(c) < 0) {
        PQclear(r);
        fail(err, errlen, c, NULL, "cannot commit");
        goto out;
    }
    /* Report after the commit: what the callback sees is durable. */
    for (int i = 0; changed_cb && i < PQntuples(r); i++) {
        if (PQgetvalue(r, i, 0)[0] != 'c')
            continue;
        const char *kws[MAIL_KEYWORDS_MAX];
        char *kwtext = strdup(PQgetvalue(r, i, 4));
        struct mail_row row = {
            .id = atoll(PQgetvalue(r, i, 1)),
            .uid = (uint32_t)strtoul(PQgetvalue(r, i, 2), NULL, 10),
            .modseq = modseq,
            .flags = (unsigned)atoi(PQgetvalue(r, i, 3)),
            .keywords = kws,
            .nkeywords = kwtext ? keywords_parse(kwtext, kws, MAIL_KEYWORDS_MAX) : 0,
            .size = strtoull(PQgetvalue(r, i, 5), NULL, 10),
            .blob_id = PQgetvalue(r, i, 6),
        };
        changed_cb(&row, changed_ctx);
        free(kwtext);
    }
    PQclear(r);
    rc = 0;
out:
    free(kw);
    uidset_free(&us);
    return rc;
}

/* ---- copy / move ---- */

/* Takes the modseq of one or two accounts in ascending id order. */
static int take_modseqs(PGconn *c, long long a, long long b, long long *ma, long long *mb)
{
    if (a == b) {
        if (changes_next_modseq(c, a, ma) < 0)
            return -1;
        *mb = *ma;
        return 0;
    }
    if (a < b)
        return changes_next_modseq(c, a, ma) < 0 || changes_next_modseq(c, b, mb) < 0 ? -1 : 0;
    return changes_next_modseq(c, b, mb) < 0 || changes_next_modseq(c, a, ma) < 0 ? -1 : 0;
}

static int folder_owner(PGconn *c, long long folder_id, long long *owner_r)
{
    char fol[24];
    snprintf(fol, sizeof(fol), "%lld", folder_id);
    const char *p[] = {fol};
    PGresult *r = exec(c, "SELECT account_id FROM folders WHERE id = $1 AND kind = 'mail'", 1, p);
    int rc = MAIL_ENOTFOUND;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        *owner_r = atoll(PQgetvalue(r, 0, 0));
        rc = 0;
    } else if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = -1;
    }
    PQclear(r);
    return rc;
}

/* Removes the rows of src matching where_sql (which uses $1 folder, $2..$4 the UID
 * set), leaving tombstones under modseq $5 for owner $6; returns uid, flags, size. */
static PGresult *delete_with_tombstones(PGconn *c, const char *fol, const struct uidset_sql *us,
                                        const char *ms, const char *owner, const char *extra)
{
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "WITH d AS (DELETE FROM messages WHERE folder_id = $1"
             "  AND ($2::bigint IS NULL OR (uid BETWEEN $2 AND $3 AND uid <@ $4::int8multirange))"
             "  %s RETURNING id, uid, flags, size),"
             " t AS (INSERT INTO tombstones (account_id, modseq, object_kind, object_id, folder_id,"
             "  uid) SELECT $6, $5, 'message', id, $1, uid FROM d)"
             " SELECT uid, flags, size FROM d ORDER BY uid",
             extra);
    const char *p[] = {fol, us->multirange ? us->lo : NULL, us->multirange ? us->hi : NULL,
                       us->multirange, ms, owner};
    return exec(c, sql, 6, p);
}

/* Applies the counters and quota for rows removed from a folder. */
static int account_removed(PGconn *c, PGresult *del, const char *fol, long long owner,
                           const char *ms)
{
    long long n = PQntuples(del), unseen = 0, deleted = 0, bytes = 0;
    for (int i = 0; i < n; i++) {
        unsigned f = (unsigned)atoi(PQgetvalue(del, i, 1));
        unseen += !(f & MAIL_SEEN);
        deleted += !!(f & MAIL_DELETED);
        bytes += atoll(PQgetvalue(del, i, 2));
    }
    if (n == 0)
        return 0;
    char sn[24], su[24], sd[24], sb[24];
    snprintf(sn, sizeof(sn), "%lld", n);
    snprintf(su, sizeof(su), "%lld", unseen);
    snprintf(sd, sizeof(sd), "%lld", deleted);
    snprintf(sb, sizeof(sb), "%lld", bytes);
    const char *p[] = {fol, sn, su, sd, sb, ms};
    PGresult *r = exec(c,
                       "WITH f AS (UPDATE folders SET highest_modseq = $6 WHERE id = $1)"
                       " UPDATE folder_counts SET messages = messages - $2, unseen = unseen - $3,"
                       " deleted = deleted - $4, bytes = bytes - $5 WHERE folder_id = $1",
                       6, p);
    bool ok = db_ok(r);
    PQclear(r);
    if (!ok)
        return -1;
    char qerr[256];
    return quota_charge(c, owner, -bytes, -n, false, qerr, sizeof(qerr)) < 0 ? -1 : 0;
}

int mailstore_copy(PGconn *c, long long account_id, long long src_folder_id,
                   const struct uid_range *set, size_t nset, long long dst_folder_id, bool move,
                   bool enforce_quota, void (*mapped_cb)(uint32_t src, uint32_t dst, void *ctx),
                   void *ctx, uint32_t *dst_uidvalidity_r, char *err, size_t errlen)
{
    struct uidset_sql us = {0};
    if (nset == 0 || uidset_build(set, nset, &us) < 0) {
        snprintf(err, errlen, nset ? "out of memory" : "empty message set");
        return nset ? -1 : MAIL_EINVAL;
    }
    int rc = -1;
    PGresult *src = NULL;
    long long src_owner, dst_owner, ms_src, ms_dst;
    if (db_begin(c) < 0) {
        fail(err, errlen, c, NULL, "cannot begin");
        goto out;
    }
    int o1 = folder_owner(c, src_folder_id, &src_owner);
    int o2 = o1 == 0 ? folder_owner(c, dst_folder_id, &dst_owner) : o1;
    if (o1 || o2) {
        db_rollback(c);
        snprintf(err, errlen, "no such mail folder");
        rc = o1 ? o1 : o2;
        goto out;
    }
    (void)account_id; /* rights were checked by the caller; owners are charged */
    if (take_modseqs(c, src_owner, dst_owner, &ms_src, &ms_dst) < 0) {
        fail(err, errlen, c, NULL, "cannot take a modseq");
        goto out;
    }
    char sfol[24], dfol[24], msd[24], mss[24], sown[24], down[24];
    snprintf(sfol, sizeof(sfol), "%lld", src_folder_id);
    snprintf(dfol, sizeof(dfol), "%lld", dst_folder_id);
    snprintf(msd, sizeof(msd), "%lld", ms_dst);
    snprintf(mss, sizeof(mss), "%lld", ms_src);
    snprintf(sown, sizeof(sown), "%lld", src_owner);
    snprintf(down, sizeof(down), "%lld", dst_owner);

    /* How many, how big: reserves the UIDs and charges the destination owner. */
    const char *p1[] = {sfol, us.lo, us.hi, us.multirange};
    src = exec(c,
               "SELECT count(*), coalesce(sum(size), 0), count(*) FILTER (WHERE flags & 1 = 0),"
               " count(*) FILTER (WHERE flags & 8 <> 0) FROM messages WHERE folder_id = $1"
               " AND uid BETWEEN $2 AND $3 AND uid <@ $4::int8multirange",
               4, p1);
    if (PQresultStatus(src) != PGRES_TUPLES_OK) {
        fail(err, errlen, c, src, "cannot read messages");
        src = NULL;
        goto out;
    }
    long long n = atoll(PQgetvalue(src, 0, 0)), bytes = atoll(PQgetvalue(src, 0, 1));
    char sn[24], sb[24], su[24], sd[24];
    snprintf(sn, sizeof(sn), "%lld", n);
    snprintf(sb, sizeof(sb), "%lld", bytes);
    snprintf(su, sizeof(su), "%s", PQgetvalue(src, 0, 2));
    snprintf(sd, sizeof(sd), "%s", PQgetvalue(src, 0, 3));
    PQclear(src);
    src = NULL;
    if (n == 0) {
        db_rollback(c);
        rc = 0;
        goto out;
    }
    const char *p2[] = {dfol, sn, msd};
    PGresult *r = exec(c,
                       "UPDATE folders SET uidnext = uidnext + $2, highest_modseq = $3"
                       " WHERE id = $1 RETURNING uidnext - $2, uidvalidity",
                       3, p2);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        fail(err, errlen, c, r, "cannot allocate UIDs");
        goto out;
    }
    long long first = atoll(PQgetvalue(r, 0, 0));
    uint32_t uidvalidity = (uint32_t)strtoul(PQgetvalue(r, 0, 1), NULL, 10);
    PQclear(r);
    if (first + n - 1 > (long long)UINT32_MAX) {
        db_rollback(c);
        snprintf(err, errlen, "the destination folder has used every UID");
        goto out;
    }
    if (!move || src_owner != dst_owner) {
        int q = quota_charge(c, dst_owner, bytes, n, enforce_quota, err, errlen);
        if (q == QUOTA_EXCEEDED) {
            db_rollback(c);
            snprintf(err, errlen, "quota exceeded");
            rc = MAIL_EQUOTA;
            goto out;
        }
        if (q < 0) {
            fail(err, errlen, c, NULL, "cannot account quota");
            goto out;
        }
    }
    char sfirst[24];
    snprintf(sfirst, sizeof(sfirst), "%lld", first);
    const char *p3[] = {sfol, us.lo, us.hi, us.multirange, dfol, down, sfirst, msd};
    src = exec(c,
               "WITH s AS (SELECT *, row_number() OVER (ORDER BY uid) AS rn FROM messages"
               "  WHERE folder_id = $1 AND uid BETWEEN $2 AND $3 AND uid <@ $4::int8multirange),"
               " i AS (INSERT INTO messages (account_id, folder_id, uid, modseq, blob_id, size,"
               "  internal_date, flags, keywords, envelope, body, bodystructure, parts, sent_date,"
               "  subject, from_addr, to_addr, cc_addr, message_id, in_reply_to, refs, fts)"
               "  SELECT $6, $5, $7 + rn - 1, $8, blob_id, size, internal_date, flags, keywords,"
               "  envelope, body, bodystructure, parts, sent_date, subject, from_addr, to_addr,"
               "  cc_addr, message_id, in_reply_to, refs, fts FROM s)"
               " SELECT uid, $7 + rn - 1 FROM s ORDER BY uid",
               8, p3);
    if (PQresultStatus(src) != PGRES_TUPLES_OK) {
        fail(err, errlen, c, src, "cannot copy messages");
        src = NULL;
        goto out;
    }
    const char *p4[] = {dfol, sn, su, sd, sb};
    r = exec(c,
             "INSERT INTO folder_counts (folder_id, messages, unseen, deleted, bytes)"
             " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (folder_id) DO UPDATE SET"
             " messages = folder_counts.messages + $2, unseen = folder_counts.unseen + $3,"
             " deleted = folder_counts.deleted + $4, bytes = folder_counts.bytes + $5",
             5, p4);
    if (!db_ok(r)) {
        PQclear(src);
        src = NULL;
        fail(err, errlen, c, r, "cannot update the folder counters");
        goto out;
    }
    PQclear(r);
    if (move) {
        r = delete_with_tombstones(c, sfol, &us, mss, sown, "");
        bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        /* Same owner: the usage did not change; the counters of src still do. */
        if (ok && src_owner == dst_owner) {
            long long nn = PQntuples(r), unseen = 0, deleted = 0, b = 0;
            for (int i = 0; i < nn; i++) {
                unsigned f = (unsigned)atoi(PQgetvalue(r, i, 1));
                unseen += !(f & MAIL_SEEN);
                deleted += !!(f & MAIL_DELETED);
                b += atoll(PQgetvalue(r, i, 2));
            }
            char a1[24], a2[24], a3[24], a4[24];
            snprintf(a1, sizeof(a1), "%lld", nn);
            snprintf(a2, sizeof(a2), "%lld", unseen);
            snprintf(a3, sizeof(a3), "%lld", deleted);
            snprintf(a4, sizeof(a4), "%lld", b);
            const char *p5[] = {sfol, a1, a2, a3, a4, mss};
            PGresult *r2 = exec(c,
                                "WITH f AS (UPDATE folders SET highest_modseq = $6 WHERE id = $1)"
                                " UPDATE folder_counts SET messages = messages - $2,"
                                " unseen = unseen - $3, deleted = deleted - $4, bytes = bytes - $5"
                                " WHERE folder_id = $1",
                                6, p5);
            ok = db_ok(r2);
            PQclear(r2);
        } else if (ok) {
            ok = account_removed(c, r, sfol, src_owner, mss) == 0;
        }
        PQclear(r);
        if (!ok) {
            PQclear(src);
            src = NULL;
            fail(err, errlen, c, NULL, "cannot remove the moved messages");
            goto out;
        }
    }
    if (db_commit(c) < 0) {
        PQclear(src);
        src = NULL;
        fail(err, errlen, c, NULL, "cannot commit");
        goto out;
    }
    for (int i = 0; mapped_cb && i < PQntuples(src); i++)
        mapped_cb((uint32_t)strtoul(PQgetvalue(src, i, 0), NULL, 10),
                  (uint32_t)strtoul(PQgetvalue(src, i, 1), NULL, 10), ctx);
    if (dst_uidvalidity_r)
        *dst_uidvalidity_r = uidvalidity;
    rc = 0;
out:
    PQclear(src);
    uidset_free(&us);
    return rc;
}

/* ---- expunge ---- */

int mailstore_expunge(PGconn *c, long long account_id, long long folder_id,
                      const struct uid_range *set, size_t nset,
                      void (*expunged_cb)(uint32_t uid, void *ctx), void *ctx, char *err,
                      size_t errlen)
{
    struct uidset_sql us = {0};
    if (nset && uidset_build(set, nset, &us) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = -1;
    long long owner, modseq;
    if (db_begin(c) < 0) {
        fail(err, errlen, c, NULL, "cannot begin");
        goto out;
    }
    int o = folder_owner(c, folder_id, &owner);
    if (o) {
        db_rollback(c);
        snprintf(err, errlen, "no such mail folder");
        rc = o;
        goto out;
    }
    (void)account_id;
    if (changes_next_modseq(c, owner, &modseq) < 0) {
        fail(err, errlen, c, NULL, "cannot take a modseq");
        goto out;
    }
    char fol[24], ms[24], own[24];
    snprintf(fol, sizeof(fol), "%lld", folder_id);
    snprintf(ms, sizeof(ms), "%lld", modseq);
    snprintf(own, sizeof(own), "%lld", owner);
    PGresult *r = delete_with_tombstones(c, fol, &us, ms, own, "AND flags & 8 <> 0");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fail(err, errlen, c, r, "cannot expunge");
        goto out;
    }
    if (account_removed(c, r, fol, owner, ms) < 0 || db_commit(c) < 0) {
        PQclear(r);
        fail(err, errlen, c, NULL, "cannot expunge");
        goto out;
    }
    for (int i = 0; expunged_cb && i < PQntuples(r); i++)
        expunged_cb((uint32_t)strtoul(PQgetvalue(r, i, 0), NULL, 10), ctx);
    PQclear(r);
    rc = 0;
out:
    uidset_free(&us);
    return rc;
}

/* ---- status ---- */

int mailstore_status(PGconn *c, long long folder_id, struct mail_status *st, char *err,
                     size_t errlen)
{
    char fol[24];
    snprintf(fol, sizeof(fol), "%lld", folder_id);
    const char *p[] = {fol};
    PGresult *r = exec(c,
                       "SELECT f.uidvalidity, f.uidnext, f.highest_modseq, coalesce(n.messages, 0),"
                       " coalesce(n.unseen, 0), coalesce(n.deleted, 0), coalesce(n.bytes, 0)"
                       " FROM folders f LEFT JOIN folder_counts n ON n.folder_id = f.id"
                       " WHERE f.id = $1",
                       1, p);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        db_set_error(err, errlen, c, r, "cannot read the folder status");
        PQclear(r);
        return -1;
    }
    if (PQntuples(r) != 1) {
        PQclear(r);
        snprintf(err, errlen, "no such folder");
        return MAIL_ENOTFOUND;
    }
    st->uidvalidity = (uint32_t)strtoul(PQgetvalue(r, 0, 0), NULL, 10);
    st->uidnext = (uint32_t)strtoul(PQgetvalue(r, 0, 1), NULL, 10);
    st->highest_modseq = atoll(PQgetvalue(r, 0, 2));
    st->messages = strtoull(PQgetvalue(r, 0, 3), NULL, 10);
    st->unseen = strtoull(PQgetvalue(r, 0, 4), NULL, 10);
    st->deleted = strtoull(PQgetvalue(r, 0, 5), NULL, 10);
    st->bytes = strtoull(PQgetvalue(r, 0, 6), NULL, 10);
    PQclear(r);
    return 0;
}
