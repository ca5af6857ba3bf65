/* FETCH and UID FETCH (RFC 9051 §6.4.5, RFC 3516 BINARY, RFC 7162 CHANGEDSINCE / VANISHED).
 *
 * Everything a FETCH returns comes from the stored row and metadata (flags, dates, sizes,
 * ENVELOPE, BODY, BODYSTRUCTURE computed at delivery) and from the message's blob: body
 * sections are byte ranges found in the part offsets the ingest stored (storage/ingest.c),
 * read from the blob store without parsing the message again. HEADER.FIELDS filters the
 * header block of the part; BINARY decodes base64 / quoted-printable as it reads (its size is
 * learnt by a first decoding pass, since a literal announces its length).
 *
 * Memory stays bounded whatever is asked: one job produces about IMAP_OUTPUT_CHUNK of output
 * and returns; its done() hands that to the connection and submits the job again at once, or,
 * when the client is slow and the connection's queue is past its high-water mark, waits for
 * on_drained first. The job keeps its place between rounds: the messages are loaded a batch
 * at a time, and a literal in progress remembers its offset in the blob (and its decoder).
 *
 * Each message's items are planned before any of its response is written (sizes, decoded
 * sizes, header subsets, the transfer encoding BINARY needs: [UNKNOWN-CTE] must come before
 * output). A failure after a literal has been announced cannot be put right in the protocol:
 * the session then ends with BYE. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "node/imap/imap.h"
#include "node/imap/syntax.h"
#include "node/server.h"
#include "proto/bus/bus.pb-c.h"
#include "proto/mime/header.h"
#include "storage/blob.h"
#include "storage/changes.h"
#include "storage/mailstore.h"

/* Messages loaded per batch. */
#define FETCH_BATCH 256
/* Largest header block read into memory (HEADER.FIELDS, the MIME header BINARY looks at). */
#define HEADER_MAX (16u * 1024 * 1024)
/* How far into a message the end of its header is looked for. */
#define HEADER_SCAN_MAX (64u * 1024 * 1024)
/* Bytes read from the blob store per call. */
#define READ_PIECE (64 * 1024)

enum plan_kind { PLAN_NIL, PLAN_MEM, PLAN_RANGE };

struct plan {
    enum plan_kind kind;
    char *mem;                 /* PLAN_MEM */
    uint64_t size;             /* the literal's length */
    uint64_t raw_off, raw_len; /* PLAN_RANGE: the bytes read from the blob */
    enum imap_cte cte;         /* PLAN_RANGE decoded when not identity */
    uint64_t skip;             /* decoded bytes skipped first (partial origin) */
    uint64_t decoded;          /* BINARY.SIZE */
};

struct fetch_msg {
    uint32_t uid, seq;
    long long modseq;
    unsigned flags;
    char *keywords;
    uint64_t size;
    time_t internal_date;
    char blob_id[BLOB_ID_LEN + 1];
    char *envelope, *body, *bodystructure, *parts;
    bool flags_changed; /* \Seen set by this FETCH */
};

/* A literal being written across rounds. */
struct stream {
    bool active;
    char blob_id[BLOB_ID_LEN + 1];
    uint64_t raw_off, raw_left;
    struct imap_decoder dec;
    bool decode;
    uint64_t skip, left; /* decoded bytes still to skip, and to write */
};

struct fetch_job {
    struct imap_job base;
    struct imap_fetch_spec spec;
    bool uid_cmd, readonly, want_sync, qresync, condstore;
    uint32_t *uids, *seqs; /* the requested messages the view knows, ascending */
    size_t n, next;
    struct imap_seqset *vanished_set; /* UID FETCH ... VANISHED: the client's UID set */
    bool started, finished;
    struct fetch_msg *batch;
    size_t nbatch, bi;
    bool in_msg;
    size_t item;
    struct plan *plans;
    struct stream st;
    struct imap_envelope_out out;
    uint64_t missing; /* requested messages that are gone (EXPUNGEISSUED) */
    bool unknown_cte, fatal;
    /* \Seen set by this FETCH: uids and their new modseqs, for the view */
    uint32_t *seen_uids;
    long long *seen_modseqs;
    size_t nseen, capseen;
    long long seen_modseq;
};

/* ---- cleanup ---- */

static void plans_free(struct fetch_job *fj)
{
    if (!fj->plans)
        return;
    for (size_t i = 0; i < fj->spec.n; i++)
        free(fj->plans[i].mem);
    free(fj->plans);
    fj->plans = NULL;
}

static void batch_free(struct fetch_job *fj)
{
    for (size_t i = 0; i < fj->nbatch; i++) {
        struct fetch_msg *m = &fj->batch[i];
        free(m->keywords);
        free(m->envelope);
        free(m->body);
        free(m->bodystructure);
        free(m->parts);
    }
    free(fj->batch);
    fj->batch = NULL;
    fj->nbatch = fj->bi = 0;
}

static void fetch_destroy(struct imap_job *j)
{
    struct fetch_job *fj = (struct fetch_job *)j;
    imap_fetch_spec_free(&fj->spec);
    free(fj->uids);
    free(fj->seqs);
    imap_seqset_free(&fj->vanished_set);
    plans_free(fj);
    batch_free(fj);
    imap_envelope_out_free(&fj->out);
    free(fj->seen_uids);
    free(fj->seen_modseqs);
    free(fj);
}

/* ---- blob reading ---- */

/* Reads [off, off+len) of the blob, calling fn for each piece. 0, or -1 (err). */
static int read_blob(PGconn *db, const char *blob, uint64_t off, uint64_t len,
                     int (*fn)(const char *p, size_t n, void *ctx), void *ctx, char *err,
                     size_t errlen)
{
    if (len == 0)
        return 0;
    struct blob_reader *r = NULL;
    int rc = blob_reader_open(server_blobs(), db, blob, off, len, &r, err, errlen);
    if (rc < 0)
        return -1;
    char buf[READ_PIECE];
    uint64_t got = 0;
    while (got < len) {
        size_t want = len - got < sizeof(buf) ? (size_t)(len - got) : sizeof(buf);
        ssize_t n = blob_reader_read(r, buf, want);
        if (n <= 0) {
            snprintf(err, errlen, "blob %s: %s", blob, n < 0 ? blob_reader_error(r) : "short");
            blob_reader_close(&r);
            return -1;
        }
        if (fn(buf, (size_t)n, ctx) != 0)
            break;
        got += (uint64_t)n;
    }
    blob_reader_close(&r);
    return 0;
}

struct membuf {
    char *p;
    size_t len, cap;
    bool failed;
};

static int to_mem(const char *p, size_t n, void *ctx)
{
    struct membuf *m = ctx;
    if (m->len + n + 1 > m->cap) {
        size_t cap = (m->len + n + 1) * 2;
        char *t = realloc(m->p, cap);
        if (!t) {
            m->failed = true;
            return 1;
        }
        m->p = t;
        m->cap = cap;
    }
    memcpy(m->p + m->len, p, n);
    m->len += n;
    m->p[m->len] = '\0';
    return 0;
}

/* Finds where the message's header ends (after its empty line; RFC 5322 §2.1). */
struct hdrscan {
    uint64_t pos;
    char last[2];
    bool found;
    uint64_t end;
    bool at_start;
};

static int scan_header(const char *p, size_t n, void *ctx)
{
    struct hdrscan *h = ctx;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        uint64_t at = h->pos + i;
        if (at == 0 && c == '\n') {
            h->found = true, h->end = 1;
            return 1;
        }
        if (at == 1 && c == '\n' && h->last[1] == '\r') {
            h->found = true, h->end = 2;
            return 1;
        }
        /* "\n\n" or "\n\r\n" */
        if (c == '\n' && (h->last[1] == '\n' || (h->last[1] == '\r' && h->last[0] == '\n'))) {
            h->found = true, h->end = at + 1;
            return 1;
        }
        h->last[0] = h->last[1];
        h->last[1] = c;
    }
    h->pos += n;
    return 0;
}

static int root_header_len(PGconn *db, const struct fetch_msg *m, uint64_t *len_r, char *err,
                           size_t errlen)
{
    struct imap_part_offsets o;
    /* a message that is not multipart has one part, 1, whose header is the message's */
    if (imap_parts_find(m->parts, "1", &o) == 0 && o.h_off == 0) {
        *len_r = o.h_len;
        return 0;
    }
    struct hdrscan h = {0};
    uint64_t max = m->size < HEADER_SCAN_MAX ? m->size : HEADER_SCAN_MAX;
    if (read_blob(db, m->blob_id, 0, max, scan_header, &h, err, errlen) < 0)
        return -1;
    *len_r = h.found ? h.end : m->size;
    return 0;
}

/* ---- planning one item ---- */

/* The header block of a section (HEADER, HEADER.FIELDS, MIME for BINARY). */
static int section_header(PGconn *db, struct fetch_job *fj, const struct fetch_msg *m,
                          const char *part, bool mime, uint64_t *off_r, uint64_t *len_r,
                          bool *found_r)
{
    *found_r = true;
    if (!*part) {
        *off_r = 0;
        return root_header_len(db, m, len_r, fj->base.err, sizeof(fj->base.err));
    }
    struct imap_part_offsets o;
    if (imap_parts_find(m->parts, part, &o) < 0 || (!mime && !o.message)) {
        *found_r = false;
        return 0;
    }
    *off_r = mime ? o.h_off : o.mh_off;
    *len_r = mime ? o.h_len : o.mh_len;
    return 0;
}

static bool field_listed(const struct imap_fetch_item *it, const char *name, size_t len)
{
    for (size_t i = 0; i < it->nfields; i++)
        if (strlen(it->fields[i]) == len && !strncasecmp(it->fields[i], name, len))
            return true;
    return false;
}

/* HEADER.FIELDS [.NOT]: the chosen fields of a header block, then the empty line. */
static char *filter_header(const struct imap_fetch_item *it, const char *hdr, size_t len,
                           size_t *out_len)
{
    char *out = malloc(len + 3);
    if (!out)
        return NULL;
    size_t o = 0, pos = 0;
    struct mime_header_field f;
    bool want_not = it->kind == IMAP_SEC_FIELDS_NOT;
    while (mime_header_next_field(hdr, len, &pos, &f) == 1) {
        if (field_listed(it, f.name, f.name_len) == want_not)
            continue;
        size_t flen = (size_t)(f.value + f.value_len - f.name);
        memcpy(out + o, f.name, flen);
        o += flen;
        if (flen && out[o - 1] != '\n') { /* a last line without its line break */
            out[o++] = '\r';
            out[o++] = '\n';
        }
    }
    out[o++] = '\r';
    out[o++] = '\n';
    out[o] = '\0';
    *out_len = o;
    return out;
}

/* The Content-Transfer-Encoding of a header block. */
static int header_cte(const char *hdr, size_t len, enum imap_cte *cte_r)
{
    size_t pos = 0;
    struct mime_header_field f;
    while (mime_header_next_field(hdr, len, &pos, &f) == 1) {
        if (f.name_len != 25 || strncasecmp(f.name, "Content-Transfer-Encoding", 25) != 0)
            continue;
        char *v = mime_header_unfold(f.value, f.value_len);
        if (!v)
            return -2;
        /* the token, without comments or parameters */
        char *e = v;
        while (*e && *e != ' ' && *e != '\t' && *e != '(' && *e != ';')
            e++;
        *e = '\0';
        int rc = imap_cte_parse(v, cte_r);
        free(v);
        return rc;
    }
    *cte_r = IMAP_CTE_IDENTITY;
    return 0;
}

struct counter {
    struct imap_decoder dec;
    uint64_t total;
    char buf[READ_PIECE + 8];
};

static int count_decoded(const char *p, size_t n, void *ctx)
{
    struct counter *c = ctx;
    c->total += imap_decoder_feed(&c->dec, p, n, c->buf);
    return 0;
}

static int plan_item(PGconn *db, struct fetch_job *fj, const struct fetch_msg *m,
                     const struct imap_fetch_item *it, struct plan *pl)
{
    char *err = fj->base.err;
    size_t errlen = sizeof(fj->base.err);
    memset(pl, 0, sizeof(*pl));
    uint64_t off = 0, len = 0;
    bool found = true;
    enum imap_cte cte = IMAP_CTE_IDENTITY;
    if (it->kind == IMAP_SEC_FIELDS || it->kind == IMAP_SEC_FIELDS_NOT) {
        if (section_header(db, fj, m, it->part, false, &off, &len, &found) < 0)
            return -1;
        if (!found) {
            pl->kind = PLAN_NIL;
            return 0;
        }
        if (len > HEADER_MAX)
            len = HEADER_MAX;
        struct membuf mb = {0};
        if (read_blob(db, m->blob_id, off, len, to_mem, &mb, err, errlen) < 0 || mb.failed) {
            free(mb.p);
            return -1;
        }
        size_t flen;
        char *f = filter_header(it, mb.p ? mb.p : "", mb.len, &flen);
        free(mb.p);
        if (!f)
            return -1;
        pl->kind = PLAN_MEM;
        pl->mem = f;
        uint64_t origin = it->partial ? it->origin : 0;
        if (origin >= flen) {
            pl->size = 0;
        } else {
            memmove(f, f + origin, flen - origin);
            pl->size = flen - origin;
            if (it->partial && pl->size > it->count)
                pl->size = it->count;
        }
        return 0;
    }
    if (!*it->part) {
        uint64_t hlen = 0;
        if (it->kind != IMAP_SEC_ALL && root_header_len(db, m, &hlen, err, errlen) < 0)
            return -1;
        if (it->kind == IMAP_SEC_ALL)
            off = 0, len = m->size;
        else if (it->kind == IMAP_SEC_HEADER)
            off = 0, len = hlen;
        else /* TEXT */
            off = hlen, len = m->size > hlen ? m->size - hlen : 0;
    } else {
        struct imap_part_offsets o;
        if (imap_parts_find(m->parts, it->part, &o) < 0) {
            found = false;
        } else if (it->kind == IMAP_SEC_ALL) {
            off = o.b_off, len = o.b_len;
        } else if (it->kind == IMAP_SEC_MIME) {
            off = o.h_off, len = o.h_len;
        } else if (!o.message) {
            found = false; /* HEADER / TEXT of a part that is no message/rfc822 */
        } else if (it->kind == IMAP_SEC_HEADER) {
            off = o.mh_off, len = o.mh_len;
        } else {
            off = o.mb_off, len = o.mb_len;
        }
        if (found && it->binary) {
            /* RFC 3516 §4: BINARY decodes the part's Content-Transfer-Encoding */
            struct membuf mb = {0};
            uint64_t hl = o.h_len > HEADER_MAX ? HEADER_MAX : o.h_len;
            if (read_blob(db, m->blob_id, o.h_off, hl, to_mem, &mb, err, errlen) < 0 || mb.failed) {
                free(mb.p);
                return -1;
            }
            int rc = header_cte(mb.p ? mb.p : "", mb.len, &cte);
            free(mb.p);
            if (rc == -2)
                return -1;
            if (rc < 0) {
                fj->unknown_cte = true;
                return -1;
            }
        }
    }
    if (!found) {
        pl->kind = PLAN_NIL;
        return 0;
    }
    if (off > m->size || len > m->size - off)
        len = off > m->size ? 0 : m->size - off; /* offsets from a damaged row: stay inside */
    pl->kind = PLAN_RANGE;
    pl->raw_off = off;
    pl->raw_len = len;
    pl->cte = cte;
    uint64_t total = len;
    if (cte != IMAP_CTE_IDENTITY) {
        struct counter *c = malloc(sizeof(*c));
        if (!c)
            return -1;
        imap_decoder_init(&c->dec, cte);
        c->total = 0;
        int rc = read_blob(db, m->blob_id, off, len, count_decoded, c, err, errlen);
        c->total += imap_decoder_finish(&c->dec, c->buf);
        total = c->total;
        free(c);
        if (rc < 0)
            return -1;
    }
    pl->decoded = total;
    uint64_t origin = it->partial ? it->origin : 0;
    if (origin >= total) {
        pl->size = 0;
    } else {
        pl->size = total - origin;
        if (it->partial && pl->size > it->count)
            pl->size = it->count;
    }
    if (cte == IMAP_CTE_IDENTITY) {
        pl->raw_off += origin < len ? origin : len;
        pl->raw_len = pl->size;
    } else {
        pl->skip = origin;
    }
    return 0;
}

/* ---- writing ---- */

static void add(struct fetch_job *fj, const char *s, size_t n)
{
    imap_envelope_out_add(&fj->out, s, n);
}

__attribute__((format(printf, 2, 3))) static void addf(struct fetch_job *fj, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n > 0)
        add(fj, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

struct stream_ctx {
    struct fetch_job *fj;
    char *dbuf;
};

static int stream_piece(const char *p, size_t n, void *ctx)
{
    struct stream_ctx *sc = ctx;
    struct stream *st = &sc->fj->st;
    const char *data = p;
    size_t len = n;
    if (st->decode) {
        len = imap_decoder_feed(&st->dec, p, n, sc->dbuf);
        data = sc->dbuf;
    }
    st->raw_off += n;
    st->raw_left -= n;
    if (st->skip) {
        size_t k = st->skip < len ? (size_t)st->skip : len;
        st->skip -= k;
        data += k;
        len -= k;
    }
    if (len > st->left)
        len = (size_t)st->left;
    add(sc->fj, data, len);
    st->left -= len;
    return st->left == 0 ? 1 : 0;
}

/* Writes more of the literal in progress; ends it when complete. -1 on a read error. */
static int stream_step(PGconn *db, struct fetch_job *fj)
{
    struct stream *st = &fj->st;
    uint64_t want = IMAP_OUTPUT_CHUNK;
    if (st->left && st->raw_left) {
        uint64_t raw = st->raw_left < want ? st->raw_left : want;
        char *dbuf = st->decode ? malloc(READ_PIECE + 8) : NULL;
        if (st->decode && !dbuf)
            return -1;
        struct stream_ctx sc = {fj, dbuf};
        int rc = read_blob(db, st->blob_id, st->raw_off, raw, stream_piece, &sc, fj->base.err,
                           sizeof(fj->base.err));
        free(dbuf);
        if (rc < 0)
            return -1;
    }
    if (st->left && st->raw_left == 0 && st->decode) {
        char tail[8];
        size_t k = imap_decoder_finish(&st->dec, tail);
        size_t skip = st->skip < k ? (size_t)st->skip : k;
        st->skip -= skip;
        size_t w = k - skip < st->left ? k - skip : (size_t)st->left;
        add(fj, tail + skip, w);
        st->left -= w;
    }
    if (st->left && st->raw_left == 0) {
        /* the blob ended before the announced length (damaged metadata): keep the protocol
         * in step with spaces */
        char spaces[256];
        memset(spaces, ' ', sizeof(spaces));
        while (st->left) {
            size_t k = st->left < sizeof(spaces) ? (size_t)st->left : sizeof(spaces);
            add(fj, spaces, k);
            st->left -= k;
        }
    }
    if (st->left == 0)
        st->active = false;
    return 0;
}

static void start_literal(struct fetch_job *fj, const struct fetch_msg *m,
                          const struct imap_fetch_item *it, struct plan *pl)
{
    addf(fj, "%s{%llu}\r\n", it->binary ? "~" : "", (unsigned long long)pl->size);
    if (pl->kind == PLAN_MEM) {
        add(fj, pl->mem, (size_t)pl->size);
        return;
    }
    struct stream *st = &fj->st;
    memset(st, 0, sizeof(*st));
    snprintf(st->blob_id, sizeof(st->blob_id), "%s", m->blob_id);
    st->raw_off = pl->raw_off;
    st->raw_left = pl->raw_len;
    /* decoded: the whole part is read, skip and left cut the decoded bytes */
    st->decode = pl->cte != IMAP_CTE_IDENTITY;
    if (st->decode)
        imap_decoder_init(&st->dec, pl->cte);
    st->skip = pl->skip;
    st->left = pl->size;
    st->active = pl->size > 0;
}

/* Writes item i of message m (the stream, if any, continues in the caller). */
static void write_item(struct fetch_job *fj, const struct fetch_msg *m, size_t i)
{
    const struct imap_fetch_item *it = &fj->spec.items[i];
    if (i > 0)
        add(fj, " ", 1);
    switch (it->att) {
    case IMAP_FA_FLAGS:
        add(fj, "FLAGS ", 6);
        imap_flags_append(&fj->out, m->flags, m->keywords);
        break;
    case IMAP_FA_INTERNALDATE: {
        char d[32];
        imap_datetime_format(m->internal_date, d);
        addf(fj, "INTERNALDATE \"%s\"", d);
        break;
    }
    case IMAP_FA_RFC822_SIZE:
        addf(fj, "RFC822.SIZE %llu", (unsigned long long)m->size);
        break;
    case IMAP_FA_UID:
        addf(fj, "UID %u", m->uid);
        break;
    case IMAP_FA_MODSEQ:
        addf(fj, "MODSEQ (%lld)", m->modseq);
        break;
    case IMAP_FA_ENVELOPE:
        add(fj, "ENVELOPE ", 9);
        add(fj, m->envelope ? m->envelope : "NIL", strlen(m->envelope ? m->envelope : "NIL"));
        break;
    case IMAP_FA_BODY:
        add(fj, "BODY ", 5);
        add(fj, m->body ? m->body : "NIL", strlen(m->body ? m->body : "NIL"));
        break;
    case IMAP_FA_BODYSTRUCTURE:
        add(fj, "BODYSTRUCTURE ", 14);
        add(fj, m->bodystructure ? m->bodystructure : "NIL",
            strlen(m->bodystructure ? m->bodystructure : "NIL"));
        break;
    case IMAP_FA_BINARY_SIZE:
        addf(fj, "%s %llu", it->name,
             (unsigned long long)(fj->plans[i].kind == PLAN_NIL ? 0 : fj->plans[i].decoded));
        break;
    case IMAP_FA_SECTION:
        add(fj, it->name, strlen(it->name));
        if (it->partial)
            addf(fj, "<%llu>", (unsigned long long)it->origin);
        add(fj, " ", 1);
        if (fj->plans[i].kind == PLAN_NIL)
            add(fj, "NIL", 3);
        else
            start_literal(fj, m, it, &fj->plans[i]);
        break;
    }
}

/* The end of a message's response: what the client did not ask for but must hear. */
static void end_message(struct fetch_job *fj, const struct fetch_msg *m)
{
    bool any = fj->spec.n > 0;
    /* RFC 9051 §6.4.9: UID FETCH responses carry the UID */
    if (fj->uid_cmd && !fj->spec.has_uid) {
        addf(fj, "%sUID %u", any ? " " : "", m->uid);
        any = true;
    }
    /* RFC 9051 §6.4.5: \Seen set now is reported with FLAGS */
    if (m->flags_changed && !fj->spec.has_flags) {
        add(fj, any ? " FLAGS " : "FLAGS ", any ? 7 : 6);
        imap_flags_append(&fj->out, m->flags, m->keywords);
        any = true;
    }
    /* RFC 7162 §3.1.4.1: CHANGEDSINCE implies MODSEQ; so does a flag change under CONDSTORE */
    if (!fj->spec.has_modseq && (fj->spec.changedsince || (m->flags_changed && fj->condstore)))
        addf(fj, "%sMODSEQ (%lld)", any ? " " : "", m->modseq);
    add(fj, ")\r\n", 3);
}

/* ---- loading messages ---- */

struct load_ctx {
    struct fetch_job *fj;
    size_t from, to; /* the slice of fj->uids being loaded */
    bool oom;
};

static char *dupnull(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int load_row(const struct mail_row *r, void *ctx)
{
    struct load_ctx *lc = ctx;
    struct fetch_job *fj = lc->fj;
    /* the sequence number: the row's place among the requested UIDs */
    size_t lo = lc->from, hi = lc->to;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (fj->uids[mid] < r->uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo >= lc->to || fj->uids[lo] != r->uid)
        return 0; /* not one the client knows */
    struct fetch_msg *m = &fj->batch[fj->nbatch];
    memset(m, 0, sizeof(*m));
    m->uid = r->uid;
    m->seq = fj->seqs[lo];
    m->modseq = r->modseq;
    m->flags = r->flags;
    m->size = r->size;
    m->internal_date = r->internal_date;
    snprintf(m->blob_id, sizeof(m->blob_id), "%s", r->blob_id ? r->blob_id : "");
    struct imap_envelope_out kw = {0};
    for (size_t i = 0; i < r->nkeywords; i++) {
        if (i)
            imap_envelope_out_add(&kw, " ", 1);
        imap_envelope_out_add(&kw, r->keywords[i], strlen(r->keywords[i]));
    }
    m->keywords = kw.data ? kw.data : strdup("");
    if (fj->spec.need_meta) {
        m->envelope = dupnull(r->envelope);
        m->body = dupnull(r->body);
        m->bodystructure = dupnull(r->bodystructure);
        m->parts = dupnull(r->parts_json);
        if (!m->envelope || !m->body || !m->bodystructure || !m->parts)
            lc->oom = true;
    }
    fj->nbatch++;
    if (!m->keywords || kw.failed)
        lc->oom = true;
    return lc->oom ? 1 : 0;
}

static int seen_changed(const struct mail_row *r, void *ctx)
{
    struct fetch_job *fj = ctx;
    for (size_t i = fj->bi; i < fj->nbatch; i++)
        if (fj->batch[i].uid == r->uid) {
            fj->batch[i].flags = r->flags;
            fj->batch[i].modseq = r->modseq;
            fj->batch[i].flags_changed = true;
        }
    if (fj->nseen == fj->capseen) {
        size_t cap = fj->capseen ? fj->capseen * 2 : 64;
        uint32_t *u = realloc(fj->seen_uids, cap * sizeof(*u));
        if (!u)
            return 1;
        fj->seen_uids = u;
        long long *m = realloc(fj->seen_modseqs, cap * sizeof(*m));
        if (!m)
            return 1;
        fj->seen_modseqs = m;
        fj->capseen = cap;
    }
    fj->seen_uids[fj->nseen] = r->uid;
    fj->seen_modseqs[fj->nseen++] = r->modseq;
    fj->seen_modseq = r->modseq;
    return 0;
}

/* UID ranges of uids[from, to) (ascending), merged where consecutive in the list. */
static struct uid_range *ranges_of(const uint32_t *uids, size_t from, size_t to, size_t *n_r)
{
    struct uid_range *r = malloc((to - from) * sizeof(*r));
    size_t n = 0;
    if (!r)
        return NULL;
    for (size_t i = from; i < to; i++) {
        /* the requested list is a subset of the view: merge only adjacent UIDs */
        if (n && r[n - 1].hi + 1 == uids[i])
            r[n - 1].hi = uids[i];
        else
            r[n++] = (struct uid_range){uids[i], uids[i]};
    }
    *n_r = n;
    return r;
}

static int load_batch(PGconn *db, struct fetch_job *fj)
{
    batch_free(fj);
    size_t from = fj->next, to = from + FETCH_BATCH < fj->n ? from + FETCH_BATCH : fj->n;
    fj->next = to;
    fj->batch = calloc(to - from, sizeof(*fj->batch));
    size_t nr;
    struct uid_range *r = fj->batch ? ranges_of(fj->uids, from, to, &nr) : NULL;
    if (!r)
        return -1;
    struct load_ctx lc = {fj, from, to, false};
    int rc = mailstore_fetch(db, fj->base.folder_id, r, nr, fj->spec.changedsince,
                             fj->spec.need_meta, load_row, &lc, fj->base.err, sizeof(fj->base.err));
    if (rc == 0 && !lc.oom && !fj->spec.changedsince && fj->nbatch < to - from)
        fj->missing += (to - from) - fj->nbatch; /* expunged by someone else meanwhile */
    if (rc == 0 && !lc.oom && fj->spec.sets_seen && !fj->readonly) {
        /* RFC 9051 §6.4.5: BODY[...] (not PEEK) sets \Seen */
        struct uid_range *unseen = malloc((fj->nbatch ? fj->nbatch : 1) * sizeof(*unseen));
        size_t nu = 0;
        for (size_t i = 0; unseen && i < fj->nbatch; i++)
            if (!(fj->batch[i].flags & MAIL_SEEN))
                unseen[nu++] = (struct uid_range){fj->batch[i].uid, fj->batch[i].uid};
        if (nu)
            rc = mailstore_store(db, fj->base.owner_id, fj->base.folder_id, unseen, nu,
                                 MAIL_FLAGS_ADD, MAIL_SEEN, NULL, 0, 0, seen_changed, fj, NULL,
                                 NULL, fj->base.err, sizeof(fj->base.err));
        if (nu && rc == 0)
            imap_notify_publish(fj->base.owner_id, fj->base.folder_id, fj->seen_modseq,
                                FLOE__BUS__MAILBOX_CHANGE__KIND__FLAGS);
        free(unseen);
    }
    free(r);
    return rc < 0 || lc.oom ? -1 : 0;
}

/* ---- VANISHED (EARLIER) for UID FETCH ... (CHANGEDSINCE m VANISHED) ---- */

static void write_vanished(PGconn *db, struct fetch_job *fj)
{
    struct imap_changes *ch = calloc(1, sizeof(*ch));
    struct imap_seqset *gone = imap_seqset_new(0);
    char err[256];
    if (!ch || !gone ||
        imap_changes_collect(db, fj->base.owner_id, fj->base.folder_id, fj->spec.changedsince, ch,
                             err, sizeof(err)) < 0)
        goto out;
    if (ch->full) {
        /* no tombstones to go by: every UID of the set up to the highest that does not exist */
        size_t n;
        const struct imap_seq_range *r = imap_seqset_ranges(fj->vanished_set, &n);
        uint32_t top = ch->nall ? ch->all[ch->nall - 1] : 0;
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            for (uint64_t u = r[i].lo; u <= r[i].hi && u <= top; u++) {
                while (k < ch->nall && ch->all[k] < u)
                    k++;
                if ((k >= ch->nall || ch->all[k] != u) && imap_seqset_add(gone, (uint32_t)u) < 0)
                    goto write;
            }
    } else {
        for (size_t i = 0; i < ch->nexpunged; i++)
            if (imap_seqset_contains(fj->vanished_set, ch->expunged[i]))
                imap_seqset_add(gone, ch->expunged[i]);
    }
write:;
    char *txt = NULL;
    if (!imap_seqset_is_empty(gone) && imap_seqset_format(gone, &txt, NULL) == 0) {
        add(fj, "* VANISHED (EARLIER) ", 21);
        add(fj, txt, strlen(txt));
        add(fj, "\r\n", 2);
    }
    free(txt);
out:
    imap_changes_free(&ch);
    imap_seqset_free(&gone);
}

/* ---- the job ---- */

static void fetch_work(struct imap_job *j, PGconn *db)
{
    struct fetch_job *fj = (struct fetch_job *)j;
    fj->out.len = 0;
    j->sync = false;
    if (!fj->started) {
        fj->started = true;
        if (fj->vanished_set)
            write_vanished(db, fj);
    }
    while (fj->out.len < IMAP_OUTPUT_CHUNK && !fj->out.failed) {
        if (fj->st.active) {
            if (stream_step(db, fj) < 0) {
                fj->fatal = true;
                break;
            }
            if (fj->st.active)
                continue;
            fj->item++;
            continue;
        }
        if (fj->in_msg) {
            struct fetch_msg *m = &fj->batch[fj->bi];
            if (fj->item < fj->spec.n) {
                write_item(fj, m, fj->item);
                if (!fj->st.active)
                    fj->item++;
                continue;
            }
            end_message(fj, m);
            fj->in_msg = false;
            plans_free(fj);
            fj->bi++;
            continue;
        }
        if (fj->bi >= fj->nbatch) {
            if (fj->next >= fj->n) {
                fj->finished = true;
                break;
            }
            if (load_batch(db, fj) < 0) {
                j->rc = -1;
                break;
            }
            continue;
        }
        /* plan every item of the next message before writing any of it */
        struct fetch_msg *m = &fj->batch[fj->bi];
        fj->plans = calloc(fj->spec.n ? fj->spec.n : 1, sizeof(*fj->plans));
        if (!fj->plans) {
            j->rc = -1;
            break;
        }
        bool failed = false;
        for (size_t i = 0; i < fj->spec.n && !failed; i++) {
            const struct imap_fetch_item *it = &fj->spec.items[i];
            if ((it->att == IMAP_FA_SECTION || it->att == IMAP_FA_BINARY_SIZE) &&
                plan_item(db, fj, m, it, &fj->plans[i]) < 0)
                failed = true;
        }
        if (failed) {
            plans_free(fj);
            j->rc = -1;
            break;
        }
        addf(fj, "* %u FETCH (", m->seq);
        fj->in_msg = true;
        fj->item = 0;
    }
    if (fj->out.failed)
        fj->fatal = true;
    /* the view's changes are collected once, with the last round */
    if ((fj->finished || j->rc < 0) && !fj->fatal)
        j->sync = fj->want_sync;
}

static void fetch_done(struct imap_session *s, struct imap_job *j)
{
    struct fetch_job *fj = (struct fetch_job *)j;
    if (fj->fatal || (j->rc < 0 && fj->in_msg)) {
        /* a response is cut in the middle: the protocol cannot go on */
        conn_log(s->c, LOG_SUMMARY, "FETCH failed mid-response: %s", j->err);
        imap_write(s, fj->out.data, fj->out.len);
        imap_printf(s, "\r\n* BYE Internal error while sending a message\r\n");
        s->state = IMAP_LOGOUT;
        imap_flush(s);
        conn_close(s->c);
        return;
    }
    if (fj->out.len)
        imap_write(s, fj->out.data, fj->out.len);
    for (size_t i = 0; i < fj->nseen; i++)
        imap_view_set_modseq(&s->view, fj->seen_uids[i], fj->seen_modseqs[i]);
    fj->nseen = 0;
    if (!fj->finished && j->rc == 0) {
        imap_flush(s);
        if (s->closed || conn_closing(s->c))
            return;
        /* a slow reader: wait until its queue has drained (on_drained), else go on */
        if (conn_output_pending(s->c) > CONN_HIGH_WATER) {
            conn_log(s->c, LOG_DEBUG, "FETCH waits for the client to read %zu bytes",
                     conn_output_pending(s->c));
            imap_job_park(s, j);
        } else
            imap_job_resubmit(s, j);
        return;
    }
    if (imap_view_apply(s, j->changes, fj->uid_cmd) < 0)
        return;
    if (j->rc < 0) {
        if (fj->unknown_cte)
            imap_tagged(s, "NO", "[UNKNOWN-CTE] Cannot decode the part's transfer encoding");
        else {
            conn_log(s->c, LOG_SUMMARY, "FETCH failed: %s", j->err);
            imap_tagged(s, "NO", "[SERVERBUG] FETCH failed");
        }
        return;
    }
    if (fj->missing && !fj->uid_cmd)
        imap_tagged(s, "NO", "[EXPUNGEISSUED] Some of the requested messages no longer exist");
    else
        imap_tagged(s, "OK", "FETCH completed");
}

void imap_fetch_drained(struct imap_session *s)
{
    struct imap_job *j = s->drain_job;
    if (!j)
        return;
    s->busy = false;
    if (imap_job_resubmit(s, j) < 0) {
        s->drain_job = NULL;
        imap_job_destroy(j);
        imap_unbusy(s);
    }
}

void imap_cmd_fetch(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid)
{
    if (n < 2 || n > 3) {
        imap_tagged(s, "BAD", "Syntax: FETCH set items [(modifiers)]");
        return;
    }
    struct fetch_job *fj = calloc(1, sizeof(*fj));
    if (!fj) {
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    fj->base.destroy = fetch_destroy;
    char err[128];
    if (imap_fetch_spec_parse(&a[1], n == 3 ? &a[2] : NULL, &fj->spec, err, sizeof(err)) < 0) {
        fetch_destroy(&fj->base);
        imap_tagged(s, "BAD", "%s", err);
        return;
    }
    if (fj->spec.vanished && (!uid || !s->qresync)) {
        /* RFC 7162 §3.2.6: UID FETCH only, after ENABLE QRESYNC */
        fetch_destroy(&fj->base);
        imap_tagged(s, "BAD", "VANISHED needs UID FETCH and QRESYNC");
        return;
    }
    if (fj->spec.has_modseq || fj->spec.changedsince)
        s->condstore = true; /* RFC 7162 §3.1: MODSEQ and CHANGEDSINCE enable CONDSTORE */
    struct uid_range *ranges;
    size_t nranges;
    if (imap_arg_seqset(s, &a[0], uid, &ranges, &nranges) < 0) {
        fetch_destroy(&fj->base);
        return;
    }
    if (fj->spec.vanished) {
        const char *text = imap_arg_atom(&a[0]);
        uint32_t star = s->view.count ? s->view.uids[s->view.count - 1] : 0;
        if (imap_seqset_parse(text, strlen(text), star, 0, &fj->vanished_set, NULL, 0) < 0 ||
            imap_seqset_is_saved(fj->vanished_set)) {
            free(ranges);
            fetch_destroy(&fj->base);
            imap_tagged(s, "BAD", "Invalid UID set");
            return;
        }
    }
    /* the requested messages, with their sequence numbers, from the view */
    size_t total = 0;
    const struct imap_view *v = &s->view;
    for (size_t r = 0; r < nranges; r++) {
        uint32_t first = imap_view_seq(v, ranges[r].lo), last = imap_view_seq(v, ranges[r].hi);
        if (first && last >= first)
            total += last - first + 1;
    }
    fj->uids = malloc((total ? total : 1) * sizeof(uint32_t));
    fj->seqs = malloc((total ? total : 1) * sizeof(uint32_t));
    if (!fj->uids || !fj->seqs) {
        free(ranges);
        fetch_destroy(&fj->base);
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    for (size_t r = 0; r < nranges; r++) {
        uint32_t first = imap_view_seq(v, ranges[r].lo), last = imap_view_seq(v, ranges[r].hi);
        for (uint32_t q = first; first && q <= last; q++) {
            fj->uids[fj->n] = v->uids[q - 1];
            fj->seqs[fj->n++] = q;
        }
    }
    free(ranges);
    fj->uid_cmd = uid;
    /* RFC 4314 §4: reading a body sets \Seen only with "s" */
    fj->readonly = s->view.readonly || !(s->view.rights & ACL_S);
    fj->qresync = s->qresync;
    fj->condstore = s->condstore;
    fj->want_sync = true;
    fj->base.work = fetch_work;
    fj->base.done = fetch_done;
    imap_job_submit(s, &fj->base, true);
}
