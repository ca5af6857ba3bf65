/* The "pg" blob backend: blobs as 256 KiB bytea chunks in PostgreSQL
 * (migration 0004_blobs.sql; the default store of a single node).
 *
 * Writing: a writer takes a content number (a blob_uploads row) and inserts
 * each chunk as soon as it fills, in its own short transaction, so neither
 * this process nor the server holds more than one chunk of an upload at a
 * time. Finishing is one transaction: the upload row goes, and either a blobs
 * row attaches the chunks under the blob's id or, when the id exists, the
 * chunks are deleted (deduplication). Readers therefore never see a partial
 * blob.
 *
 * Reading: the blob row gives the size and the content number; each read
 * fetches at most the rest of one chunk, with substring() so that a range
 * read transfers only the bytes it asks for and touches only the chunks it
 * covers.
 *
 * Races are settled by row locks (see writer_finish and pg_del): a writer
 * deduplicating against a blob while the collector deletes it either keeps
 * the blob alive (refreshed written_at, which the conditional delete
 * re-checks after waiting for the lock) or finds it gone and stores its own
 * copy.
 */
#define BLOB_BACKEND_IMPL
#include "storage/blob.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/db.h"

/* PostgreSQL type OIDs of the parameters sent (pg_type.h). */
#define OID_INT8 20
#define OID_INT4 23
#define OID_BYTEA 17
#define OID_TEXT 25
#define OID_FLOAT8 701

struct pg_writer {
    PGconn *c;
    long long upload; /* blob_uploads.id = content number */
    int seq;          /* next chunk number */
    size_t fill;
    unsigned char buf[BLOB_CHUNK_SIZE];
};

struct pg_reader {
    PGconn *c;
    long long content;
    unsigned long long pos; /* next byte of the blob to return */
    unsigned long long end; /* end of the range */
    PGresult *res;          /* the chunk slice being served */
    size_t res_off, res_len;
};

static PGresult *exec(PGconn *c, const char *sql, int n, const Oid *types, const char *const *vals,
                      const int *lens, const int *fmts, int binary_result)
{
    return PQexecParams(c, sql, n, types, vals, lens, fmts, binary_result);
}

/* Writers and deletions commit their own transactions. */
static int need_idle(PGconn *c, char *err, size_t errlen)
{
    if (c == NULL) {
        blob_set_err(err, errlen, "pg blob store: no database connection");
        return -1;
    }
    if (PQtransactionStatus(c) != PQTRANS_IDLE) {
        blob_set_err(err, errlen, "pg blob store: the connection is busy or inside a transaction");
        return -1;
    }
    return 0;
}

/* ---- store ---- */

static int pg_open(const struct blob_config *cfg, void **impl_r, char *err, size_t errlen)
{
    /* Nothing to keep: every call brings its connection. A non-NULL marker
     * keeps the interface uniform. */
    static int marker;
    *impl_r = &marker;
    return 0;
}

static void pg_close(void *impl)
{
}

/* ---- writing ---- */

static int pg_writer_new(void *impl, PGconn *c, void **w_r, char *err, size_t errlen)
{
    if (need_idle(c, err, errlen) != 0)
        return -1;
    struct pg_writer *w = malloc(sizeof *w);
    if (w == NULL) {
        blob_set_err(err, errlen, "pg blob writer: out of memory");
        return -1;
    }
    PGresult *r = exec(c, "INSERT INTO blob_uploads DEFAULT VALUES RETURNING id", 0, NULL, NULL,
                       NULL, NULL, 0);
    if (!db_ok(r) || PQntuples(r) != 1) {
        db_set_error(err, errlen, c, r, "cannot start a blob upload");
        PQclear(r);
        free(w);
        return -1;
    }
    w->c = c;
    w->upload = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    w->seq = 0;
    w->fill = 0;
    PQclear(r);
    *w_r = w;
    return 0;
}

/* Stores the buffered chunk. The upload row is touched in the same statement;
 * when it is gone (purged as abandoned) nothing is inserted and the writer
 * fails rather than writing chunks no one will collect. A chunk's commit does
 * not wait for its WAL to reach disk (synchronous_commit off for that one
 * transaction): the finishing transaction, which makes the blob visible, is
 * synchronous, and flushing its WAL flushes every chunk written before it. A
 * crash in between loses only an upload nobody references yet. One disk flush
 * per blob instead of one per 256 KiB. */
static int flush_chunk(struct pg_writer *w, char *err, size_t errlen)
{
    char upload[24], seq[16];
    snprintf(upload, sizeof upload, "%lld", w->upload);
    snprintf(seq, sizeof seq, "%d", w->seq);
    const Oid types[] = {OID_INT8, OID_INT4, OID_BYTEA};
    const char *vals[] = {upload, seq, (const char *)w->buf};
    const int lens[] = {0, 0, (int)w->fill};
    const int fmts[] = {0, 0, 1};
    PGresult *r = exec(w->c,
                       "WITH a AS (SELECT set_config('synchronous_commit', 'off', true)), "
                       "u AS (UPDATE blob_uploads SET touched_at = now() WHERE id = $1 "
                       "RETURNING id) "
                       "INSERT INTO blob_chunks (content, seq, data) SELECT id, $2, $3 FROM u, a",
                       3, types, vals, lens, fmts, 0);
    if (!db_ok(r)) {
        db_set_error(err, errlen, w->c, r, "cannot store a blob chunk");
        PQclear(r);
        return -1;
    }
    bool stored = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    if (!stored) {
        blob_set_err(err, errlen, "blob upload %lld was purged as abandoned", w->upload);
        return -1;
    }
    w->seq++;
    w->fill = 0;
    return 0;
}

static int pg_writer_write(void *wp, const void *data, size_t len, char *err, size_t errlen)
{
    struct pg_writer *w = wp;
    const unsigned char *p = data;
    while (len > 0) {
        if (w->seq == INT32_MAX) {
            blob_set_err(err, errlen, "blob too large for the pg store");
            return -1;
        }
        size_t n = sizeof w->buf - w->fill;
        if (n > len)
            n = len;
        memcpy(w->buf + w->fill, p, n);
        w->fill += n;
        p += n;
        len -= n;
        if (w->fill == sizeof w->buf && flush_chunk(w, err, errlen) != 0)
            return -1;
    }
    return 0;
}

/* Deletes an upload and its chunks. Best effort: what fails here is left to
 * blob_purge_uploads(). */
static void drop_upload(PGconn *c, long long upload)
{
    if (PQtransactionStatus(c) == PQTRANS_INERROR || PQtransactionStatus(c) == PQTRANS_INTRANS)
        db_rollback(c);
    if (PQtransactionStatus(c) != PQTRANS_IDLE)
        return;
    char id[24];
    snprintf(id, sizeof id, "%lld", upload);
    const Oid types[] = {OID_INT8};
    const char *vals[] = {id};
    PGresult *r = exec(c,
                       "WITH u AS (DELETE FROM blob_uploads WHERE id = $1) "
                       "DELETE FROM blob_chunks WHERE content = $1",
                       1, types, vals, NULL, NULL, 0);
    PQclear(r);
}

static void pg_writer_abort(void *wp)
{
    struct pg_writer *w = wp;
    drop_upload(w->c, w->upload);
    free(w);
}

/* The finishing transaction; returns 0 or -1 with err set. */
static int attach(struct pg_writer *w, const char *id, unsigned long long size, char *err,
                  size_t errlen)
{
    PGconn *c = w->c;
    char upload[24], sz[24], refresh[16];
    snprintf(upload, sizeof upload, "%lld", w->upload);
    snprintf(sz, sizeof sz, "%llu", size);
    snprintf(refresh, sizeof refresh, "%d", BLOB_REFRESH_INTERVAL);

    if (db_begin(c) != 0) {
        db_set_error(err, errlen, c, NULL, "cannot begin the blob transaction");
        return -1;
    }
    /* The upload row first: its lock keeps blob_purge_uploads() away, and
     * its absence means the chunks were purged. */
    const Oid t1[] = {OID_INT8};
    const char *v1[] = {upload};
    PGresult *r = exec(c, "DELETE FROM blob_uploads WHERE id = $1", 1, t1, v1, NULL, NULL, 0);
    if (!db_ok(r)) {
        db_set_error(err, errlen, c, r, "cannot finish the blob upload");
        goto fail;
    }
    if (strcmp(PQcmdTuples(r), "1") != 0) {
        blob_set_err(err, errlen, "blob upload %lld was purged as abandoned", w->upload);
        goto fail;
    }
    PQclear(r);
    r = NULL;

    /* Either our chunks become the blob, or the blob exists and is kept
     * alive. A concurrent delete may commit between the statements; then
     * the insert is tried again (three rounds are plenty: each needs a new
     * blob to have been stored and deleted meanwhile). */
    bool exists = false, attached = false;
    unsigned long long have = 0;
    for (int round = 0; round < 3 && !exists && !attached; round++) {
        const Oid ti[] = {OID_TEXT, OID_INT8, OID_INT8};
        const char *vi[] = {id, sz, upload};
        r = exec(c,
                 "INSERT INTO blobs (id, size, content) VALUES ($1, $2, $3) "
                 "ON CONFLICT (id) DO NOTHING",
                 3, ti, vi, NULL, NULL, 0);
        if (!db_ok(r)) {
            db_set_error(err, errlen, c, r, "cannot store the blob");
            goto fail;
        }
        attached = strcmp(PQcmdTuples(r), "1") == 0;
        PQclear(r);
        r = NULL;
        if (attached)
            break;
        /* Refresh a stale stamp (this also locks the row against deletion);
         * a fresh one is only locked, without writing a new row version. */
        const Oid tu[] = {OID_TEXT, OID_FLOAT8};
        const char *vu[] = {id, refresh};
        r = exec(c,
                 "UPDATE blobs SET written_at = now() WHERE id = $1 "
                 "AND written_at < now() - make_interval(secs => $2) RETURNING size",
                 2, tu, vu, NULL, NULL, 0);
        if (!db_ok(r)) {
            db_set_error(err, errlen, c, r, "cannot refresh the blob");
            goto fail;
        }
        if (PQntuples(r) == 0) {
            PQclear(r);
            const Oid ts[] = {OID_TEXT};
            const char *vs[] = {id};
            r = exec(c, "SELECT size FROM blobs WHERE id = $1 FOR KEY SHARE", 1, ts, vs, NULL, NULL,
                     0);
            if (!db_ok(r)) {
                db_set_error(err, errlen, c, r, "cannot look the blob up");
                goto fail;
            }
        }
        if (PQntuples(r) == 1) {
            exists = true;
            have = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        }
        PQclear(r);
        r = NULL;
    }
    if (!exists && !attached) {
        blob_set_err(err, errlen, "blob %s kept being deleted while stored", id);
        goto fail;
    }
    if (exists) {
        if (have != size) {
            /* Equal SHA-256, different length: a collision or a damaged row. */
            blob_set_err(err, errlen, "blob %s exists with size %llu, not %llu", id, have, size);
            goto fail;
        }
        r = exec(c, "DELETE FROM blob_chunks WHERE content = $1", 1, t1, v1, NULL, NULL, 0);
        if (!db_ok(r)) {
            db_set_error(err, errlen, c, r, "cannot drop the duplicate chunks");
            goto fail;
        }
        PQclear(r);
        r = NULL;
    }
    if (db_commit(c) != 0) {
        db_set_error(err, errlen, c, NULL, "cannot commit the blob");
        return -1;
    }
    return 0;
fail:
    PQclear(r);
    db_rollback(c);
    return -1;
}

static int pg_writer_finish(void *wp, const char *id, unsigned long long size, char *err,
                            size_t errlen)
{
    struct pg_writer *w = wp;
    int rc = -1;
    if (PQtransactionStatus(w->c) != PQTRANS_IDLE) {
        blob_set_err(err, errlen, "pg blob store: the connection is busy or inside a transaction");
    } else if ((w->fill == 0 || flush_chunk(w, err, errlen) == 0) &&
               attach(w, id, size, err, errlen) == 0) {
        rc = 0;
    }
    if (rc != 0)
        drop_upload(w->c, w->upload);
    free(w);
    return rc;
}

/* ---- reading ---- */

static int pg_reader_open(void *impl, PGconn *c, const char *id, unsigned long long offset,
                          unsigned long long len, void **r_r, unsigned long long *size_r, char *err,
                          size_t errlen)
{
    if (c == NULL) {
        blob_set_err(err, errlen, "pg blob store: no database connection");
        return -1;
    }
    const Oid types[] = {OID_TEXT};
    const char *vals[] = {id};
    PGresult *r =
        exec(c, "SELECT size, content FROM blobs WHERE id = $1", 1, types, vals, NULL, NULL, 0);
    if (!db_ok(r)) {
        db_set_error(err, errlen, c, r, "cannot look the blob up");
        PQclear(r);
        return -1;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        blob_set_err(err, errlen, "blob %s not found", id);
        return BLOB_ENOTFOUND;
    }
    unsigned long long size = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    long long content = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    PQclear(r);
    if (offset > size) {
        blob_set_err(err, errlen, "range starts past the end of the blob");
        return BLOB_ERANGE;
    }
    struct pg_reader *rd = calloc(1, sizeof *rd);
    if (rd == NULL) {
        blob_set_err(err, errlen, "pg blob reader: out of memory");
        return -1;
    }
    rd->c = c;
    rd->content = content;
    rd->pos = offset;
    rd->end = (len < size - offset) ? offset + len : size;
    *size_r = size;
    *r_r = rd;
    return 0;
}

/* Fetches the bytes from pos to the end of its chunk or of the range. */
static int fetch(struct pg_reader *rd, char *err, size_t errlen)
{
    unsigned long long seq = rd->pos / BLOB_CHUNK_SIZE;
    unsigned long long intra = rd->pos % BLOB_CHUNK_SIZE;
    unsigned long long want = BLOB_CHUNK_SIZE - intra;
    if (want > rd->end - rd->pos)
        want = rd->end - rd->pos;
    if (seq > INT32_MAX) {
        blob_set_err(err, errlen, "blob offset out of range for the pg store");
        return -1;
    }
    char content[24], sq[24], from[24], count[24];
    snprintf(content, sizeof content, "%lld", rd->content);
    snprintf(sq, sizeof sq, "%llu", seq);
    snprintf(from, sizeof from, "%llu", intra + 1); /* substring() counts from 1 */
    snprintf(count, sizeof count, "%llu", want);
    const Oid types[] = {OID_INT8, OID_INT4, OID_INT4, OID_INT4};
    const char *vals[] = {content, sq, from, count};
    PGresult *r = exec(rd->c,
                       "SELECT substring(data FROM $3 FOR $4) FROM blob_chunks "
                       "WHERE content = $1 AND seq = $2",
                       4, types, vals, NULL, NULL, 1);
    if (!db_ok(r)) {
        db_set_error(err, errlen, rd->c, r, "cannot read a blob chunk");
        PQclear(r);
        return -1;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        return 0; /* deleted while read: the common layer says so */
    }
    size_t got = (size_t)PQgetlength(r, 0, 0);
    if (got != want) {
        PQclear(r);
        blob_set_err(err, errlen, "blob chunk %llu holds %zu bytes at %llu, expected %llu", seq,
                     got, intra, want);
        return -1;
    }
    rd->res = r;
    rd->res_off = 0;
    rd->res_len = got;
    return 1;
}

static ssize_t pg_reader_read(void *rp, void *buf, size_t len, char *err, size_t errlen)
{
    struct pg_reader *rd = rp;
    if (rd->res == NULL) {
        int rc = fetch(rd, err, errlen);
        if (rc <= 0)
            return rc;
    }
    size_t n = rd->res_len - rd->res_off;
    if (n > len)
        n = len;
    memcpy(buf, PQgetvalue(rd->res, 0, 0) + rd->res_off, n);
    rd->res_off += n;
    rd->pos += n;
    if (rd->res_off == rd->res_len) {
        PQclear(rd->res);
        rd->res = NULL;
    }
    return (ssize_t)n;
}

static void pg_reader_close(void *rp)
{
    struct pg_reader *rd = rp;
    PQclear(rd->res);
    free(rd);
}

/* ---- other operations ---- */

static int pg_stat(void *impl, PGconn *c, const char *id, unsigned long long *size_r, char *err,
                   size_t errlen)
{
    if (c == NULL) {
        blob_set_err(err, errlen, "pg blob store: no database connection");
        return -1;
    }
    const Oid types[] = {OID_TEXT};
    const char *vals[] = {id};
    PGresult *r = exec(c, "SELECT size FROM blobs WHERE id = $1", 1, types, vals, NULL, NULL, 0);
    if (!db_ok(r)) {
        db_set_error(err, errlen, c, r, "cannot look the blob up");
        PQclear(r);
        return -1;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        blob_set_err(err, errlen, "blob %s not found", id);
        return BLOB_ENOTFOUND;
    }
    *size_r = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return 0;
}

/* Deleting takes the row lock, so a writer refreshing the blob at the same
 * moment is waited for, and the written_at condition is evaluated again on
 * the refreshed row (READ COMMITTED re-checks an updated row). */
static int pg_del(void *impl, PGconn *c, const char *id, const long long *before, char *err,
                  size_t errlen)
{
    if (need_idle(c, err, errlen) != 0)
        return -1;
    char when[24];
    snprintf(when, sizeof when, "%lld", before != NULL ? *before : 0);
    const Oid types[] = {OID_TEXT, OID_FLOAT8};
    const char *vals[] = {id, before != NULL ? when : NULL};
    if (db_begin(c) != 0) {
        db_set_error(err, errlen, c, NULL, "cannot begin the blob transaction");
        return -1;
    }
    int rc = -1;
    PGresult *r = exec(c,
                       "DELETE FROM blobs WHERE id = $1 "
                       "AND ($2::float8 IS NULL OR written_at < to_timestamp($2)) "
                       "RETURNING content",
                       2, types, vals, NULL, NULL, 0);
    if (!db_ok(r)) {
        db_set_error(err, errlen, c, r, "cannot delete the blob");
        goto done;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        r = exec(c, "SELECT 1 FROM blobs WHERE id = $1", 1, types, vals, NULL, NULL, 0);
        if (!db_ok(r)) {
            db_set_error(err, errlen, c, r, "cannot look the blob up");
            goto done;
        }
        if (PQntuples(r) == 0) {
            blob_set_err(err, errlen, "blob %s not found", id);
            rc = BLOB_ENOTFOUND;
        } else {
            blob_set_err(err, errlen, "blob %s was written after the cut-off", id);
            rc = BLOB_ENEWER;
        }
        goto done;
    }
    char content[24];
    snprintf(content, sizeof content, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    const Oid tc[] = {OID_INT8};
    const char *vc[] = {content};
    r = exec(c, "DELETE FROM blob_chunks WHERE content = $1", 1, tc, vc, NULL, NULL, 0);
    if (!db_ok(r)) {
        db_set_error(err, errlen, c, r, "cannot delete the blob's chunks");
        goto done;
    }
    PQclear(r);
    r = NULL;
    if (db_commit(c) != 0) {
        db_set_error(err, errlen, c, NULL, "cannot commit the deletion");
        return -1;
    }
    return 0;
done:
    PQclear(r);
    db_rollback(c);
    return rc;
}

static int pg_list(void *impl, PGconn *c, const char *after_id, size_t max, blob_list_cb cb,
                   void *ctx, char *err, size_t errlen)
{
    if (c == NULL) {
        blob_set_err(err, errlen, "pg blob store: no database connection");
        return -1;
    }
    char lim[24];
    snprintf(lim, sizeof lim, "%zu", max);
    const Oid types[] = {OID_TEXT, OID_INT8};
    const char *vals[] = {after_id != NULL ? after_id : "", lim};
    /* '' sorts before every id in the "C" collation. */
    PGresult *r = exec(c,
                       "SELECT id, floor(extract(epoch FROM written_at))::bigint FROM blobs "
                       "WHERE id > $1 ORDER BY id LIMIT $2",
                       2, types, vals, NULL, NULL, 0);
    if (!db_ok(r)) {
        db_set_error(err, errlen, c, r, "cannot list blobs");
        PQclear(r);
        return -1;
    }
    int n = PQntuples(r), given = 0;
    for (int i = 0; i < n; i++) {
        given++;
        if (cb(PQgetvalue(r, i, 0), strtoll(PQgetvalue(r, i, 1), NULL, 10), ctx) != 0)
            break;
    }
    PQclear(r);
    return given;
}

static int pg_purge(void *impl, PGconn *c, long long older_than_s, char *err, size_t errlen)
{
    if (need_idle(c, err, errlen) != 0)
        return -1;
    char secs[24];
    snprintf(secs, sizeof secs, "%lld", older_than_s);
    const Oid types[] = {OID_FLOAT8};
    const char *vals[] = {secs};
    /* One statement, so uploads and their chunks go together. */
    PGresult *r = exec(c,
                       "WITH gone AS (DELETE FROM blob_uploads "
                       "WHERE touched_at < now() - make_interval(secs => $1) RETURNING id), "
                       "chunks AS (DELETE FROM blob_chunks WHERE content IN (SELECT id FROM gone)) "
                       "SELECT count(*) FROM gone",
                       1, types, vals, NULL, NULL, 0);
    if (!db_ok(r) || PQntuples(r) != 1) {
        db_set_error(err, errlen, c, r, "cannot purge abandoned blob uploads");
        PQclear(r);
        return -1;
    }
    long long n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return n > INT32_MAX ? INT32_MAX : (int)n;
}

const struct blob_backend blob_backend_pg = {
    .name = "pg",
    .open = pg_open,
    .close = pg_close,
    .writer_new = pg_writer_new,
    .writer_write = pg_writer_write,
    .writer_finish = pg_writer_finish,
    .writer_abort = pg_writer_abort,
    .reader_open = pg_reader_open,
    .reader_read = pg_reader_read,
    .reader_close = pg_reader_close,
    .stat = pg_stat,
    .del = pg_del,
    .list = pg_list,
    .purge = pg_purge,
};
