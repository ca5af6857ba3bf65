/* The blob store's common layer (storage/blob.h): picks the backend, checks
 * every argument once, hashes content as it is written, and keeps readers
 * inside their range.
 *
 * The backends (blob_pg.c, blob_fs.c, blob_s3.c) implement struct
 * blob_backend and only move bytes: they never see an invalid id, never
 * compute a hash, and are never asked to read past the range a reader was
 * opened for. The id of a blob is computed here, from the bytes as they
 * passed through blob_writer_write(), so a backend cannot file content under
 * a name that does not match it.
 */
#define BLOB_BACKEND_IMPL
#include "storage/blob.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define ERR_SIZE 512

struct blob_store {
    const struct blob_backend *be;
    void *impl;
    unsigned long long max_size;
};

struct blob_writer {
    struct blob_store *bs;
    void *impl;
    EVP_MD_CTX *sha;
    unsigned long long size;
    bool failed;
    char err[ERR_SIZE];
};

struct blob_reader {
    struct blob_store *bs;
    void *impl;
    unsigned long long size;      /* of the blob */
    unsigned long long length;    /* of the range */
    unsigned long long remaining; /* of the range, still to read */
    bool failed;
    char err[ERR_SIZE];
};

void blob_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

bool blob_id_valid(const char *id)
{
    if (id == NULL)
        return false;
    for (size_t i = 0; i < BLOB_ID_LEN; i++) {
        char ch = id[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            return false; /* also stops at a NUL before BLOB_ID_LEN */
    }
    return id[BLOB_ID_LEN] == '\0';
}

static int check_id(const char *id, char *err, size_t errlen)
{
    if (blob_id_valid(id))
        return 0;
    blob_set_err(err, errlen, "invalid blob id: not %d lowercase hex digits", BLOB_ID_LEN);
    return -1;
}

/* ---- store ---- */

struct blob_store *blob_store_open(const struct blob_config *cfg, char *err, size_t errlen)
{
    if (cfg == NULL) {
        blob_set_err(err, errlen, "blob store: no configuration");
        return NULL;
    }
    const char *name = cfg->backend != NULL ? cfg->backend : "pg";
    const struct blob_backend *be;
    if (strcmp(name, "pg") == 0)
        be = &blob_backend_pg;
    else if (strcmp(name, "fs") == 0)
        be = &blob_backend_fs;
    else if (strcmp(name, "s3") == 0)
        be = &blob_backend_s3;
    else {
        blob_set_err(err, errlen, "blob store: unknown backend '%.32s' (pg, fs or s3)", name);
        return NULL;
    }
    struct blob_store *bs = calloc(1, sizeof *bs);
    if (bs == NULL) {
        blob_set_err(err, errlen, "blob store: out of memory");
        return NULL;
    }
    bs->be = be;
    bs->max_size = cfg->max_size != 0 ? cfg->max_size : BLOB_SIZE_MAX_DEFAULT;
    if (be->open(cfg, &bs->impl, err, errlen) != 0) {
        free(bs);
        return NULL;
    }
    return bs;
}

void blob_store_close(struct blob_store **bs)
{
    if (bs == NULL || *bs == NULL)
        return;
    (*bs)->be->close((*bs)->impl);
    free(*bs);
    *bs = NULL;
}

const char *blob_store_backend(const struct blob_store *bs)
{
    return bs->be->name;
}

/* ---- writing ---- */

struct blob_writer *blob_writer_new(struct blob_store *bs, PGconn *c, char *err, size_t errlen)
{
    if (bs == NULL) {
        blob_set_err(err, errlen, "blob writer: no store");
        return NULL;
    }
    struct blob_writer *w = calloc(1, sizeof *w);
    if (w == NULL) {
        blob_set_err(err, errlen, "blob writer: out of memory");
        return NULL;
    }
    w->bs = bs;
    w->sha = EVP_MD_CTX_new();
    if (w->sha == NULL || EVP_DigestInit_ex(w->sha, EVP_sha256(), NULL) != 1) {
        blob_set_err(err, errlen, "blob writer: cannot start SHA-256");
        EVP_MD_CTX_free(w->sha);
        free(w);
        return NULL;
    }
    if (bs->be->writer_new(bs->impl, c, &w->impl, err, errlen) != 0) {
        EVP_MD_CTX_free(w->sha);
        free(w);
        return NULL;
    }
    return w;
}

int blob_writer_write(struct blob_writer *w, const void *data, size_t len)
{
    if (w == NULL)
        return -1;
    if (w->failed)
        return -1;
    if (len == 0)
        return 0;
    if (data == NULL) {
        blob_set_err(w->err, sizeof w->err, "blob writer: no data");
        w->failed = true;
        return -1;
    }
    if (len > w->bs->max_size - w->size) {
        blob_set_err(w->err, sizeof w->err, "blob is larger than the limit of %llu bytes",
                     w->bs->max_size);
        w->failed = true;
        return -1;
    }
    if (EVP_DigestUpdate(w->sha, data, len) != 1) {
        blob_set_err(w->err, sizeof w->err, "blob writer: SHA-256 failed");
        w->failed = true;
        return -1;
    }
    if (w->bs->be->writer_write(w->impl, data, len, w->err, sizeof w->err) != 0) {
        w->failed = true;
        return -1;
    }
    w->size += len;
    return 0;
}

const char *blob_writer_error(const struct blob_writer *w)
{
    return w != NULL ? w->err : "no writer";
}

static void writer_free(struct blob_writer **w)
{
    EVP_MD_CTX_free((*w)->sha);
    free(*w);
    *w = NULL;
}

int blob_writer_finish(struct blob_writer **wp, char id_r[BLOB_ID_LEN + 1],
                       unsigned long long *size_r, char *err, size_t errlen)
{
    if (wp == NULL || *wp == NULL) {
        blob_set_err(err, errlen, "blob writer: none to finish");
        return -1;
    }
    struct blob_writer *w = *wp;
    if (w->failed) {
        blob_set_err(err, errlen, "%s", w->err);
        w->bs->be->writer_abort(w->impl);
        writer_free(wp);
        return -1;
    }
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (EVP_DigestFinal_ex(w->sha, md, &mdlen) != 1 || mdlen != sizeof md) {
        blob_set_err(err, errlen, "blob writer: SHA-256 failed");
        w->bs->be->writer_abort(w->impl);
        writer_free(wp);
        return -1;
    }
    static const char digits[] = "0123456789abcdef";
    char id[BLOB_ID_LEN + 1];
    for (size_t i = 0; i < sizeof md; i++) {
        id[2 * i] = digits[md[i] >> 4];
        id[2 * i + 1] = digits[md[i] & 15];
    }
    id[BLOB_ID_LEN] = '\0';
    unsigned long long size = w->size;
    int rc = w->bs->be->writer_finish(w->impl, id, size, err, errlen);
    writer_free(wp);
    if (rc != 0)
        return -1;
    if (id_r != NULL)
        memcpy(id_r, id, sizeof id);
    if (size_r != NULL)
        *size_r = size;
    return 0;
}

void blob_writer_abort(struct blob_writer **w)
{
    if (w == NULL || *w == NULL)
        return;
    (*w)->bs->be->writer_abort((*w)->impl);
    writer_free(w);
}

int blob_put(struct blob_store *bs, PGconn *c, const void *data, size_t len,
             char id_r[BLOB_ID_LEN + 1], char *err, size_t errlen)
{
    struct blob_writer *w = blob_writer_new(bs, c, err, errlen);
    if (w == NULL)
        return -1;
    if (blob_writer_write(w, data, len) != 0) {
        blob_set_err(err, errlen, "%s", w->err);
        blob_writer_abort(&w);
        return -1;
    }
    return blob_writer_finish(&w, id_r, NULL, err, errlen);
}

/* ---- reading ---- */

int blob_reader_open(struct blob_store *bs, PGconn *c, const char *id, unsigned long long offset,
                     unsigned long long len, struct blob_reader **r_r, char *err, size_t errlen)
{
    if (r_r != NULL)
        *r_r = NULL;
    if (bs == NULL || r_r == NULL) {
        blob_set_err(err, errlen, "blob reader: bad arguments");
        return -1;
    }
    if (check_id(id, err, errlen) != 0)
        return -1;
    struct blob_reader *r = calloc(1, sizeof *r);
    if (r == NULL) {
        blob_set_err(err, errlen, "blob reader: out of memory");
        return -1;
    }
    r->bs = bs;
    int rc = bs->be->reader_open(bs->impl, c, id, offset, len, &r->impl, &r->size, err, errlen);
    if (rc != 0) {
        free(r);
        return rc;
    }
    /* Backends check this too; kept here so no backend can get it wrong. */
    if (offset > r->size) {
        bs->be->reader_close(r->impl);
        free(r);
        blob_set_err(err, errlen, "range starts past the end of the blob");
        return BLOB_ERANGE;
    }
    unsigned long long avail = r->size - offset;
    r->length = len < avail ? len : avail;
    r->remaining = r->length;
    *r_r = r;
    return 0;
}

unsigned long long blob_reader_size(const struct blob_reader *r)
{
    return r->size;
}

unsigned long long blob_reader_length(const struct blob_reader *r)
{
    return r->length;
}

ssize_t blob_reader_read(struct blob_reader *r, void *buf, size_t len)
{
    if (r == NULL)
        return -1;
    if (r->failed)
        return -1;
    if (r->remaining == 0 || len == 0)
        return 0;
    if (buf == NULL) {
        blob_set_err(r->err, sizeof r->err, "blob reader: no buffer");
        r->failed = true;
        return -1;
    }
    if (len > (size_t)SSIZE_MAX)
        len = (size_t)SSIZE_MAX;
    if (len > r->remaining)
        len = (size_t)r->remaining;
    ssize_t n = r->bs->be->reader_read(r->impl, buf, len, r->err, sizeof r->err);
    if (n == 0) {
        blob_set_err(r->err, sizeof r->err,
                     "blob ended %llu bytes early (deleted or damaged while read)", r->remaining);
        n = -1;
    }
    if (n < 0 || (size_t)n > len) {
        if (n > 0)
            blob_set_err(r->err, sizeof r->err, "blob reader: backend returned too much");
        r->failed = true;
        return -1;
    }
    r->remaining -= (unsigned long long)n;
    return n;
}

const char *blob_reader_error(const struct blob_reader *r)
{
    return r != NULL ? r->err : "no reader";
}

void blob_reader_close(struct blob_reader **r)
{
    if (r == NULL || *r == NULL)
        return;
    (*r)->bs->be->reader_close((*r)->impl);
    free(*r);
    *r = NULL;
}

/* ---- other operations ---- */

int blob_stat(struct blob_store *bs, PGconn *c, const char *id, unsigned long long *size_r,
              char *err, size_t errlen)
{
    if (bs == NULL) {
        blob_set_err(err, errlen, "blob store: none");
        return -1;
    }
    if (check_id(id, err, errlen) != 0)
        return -1;
    unsigned long long size = 0;
    int rc = bs->be->stat(bs->impl, c, id, &size, err, errlen);
    if (rc == 0 && size_r != NULL)
        *size_r = size;
    return rc;
}

int blob_delete(struct blob_store *bs, PGconn *c, const char *id, char *err, size_t errlen)
{
    if (bs == NULL) {
        blob_set_err(err, errlen, "blob store: none");
        return -1;
    }
    if (check_id(id, err, errlen) != 0)
        return -1;
    return bs->be->del(bs->impl, c, id, NULL, err, errlen);
}

int blob_delete_if_older(struct blob_store *bs, PGconn *c, const char *id,
                         long long written_before_unix, char *err, size_t errlen)
{
    if (bs == NULL) {
        blob_set_err(err, errlen, "blob store: none");
        return -1;
    }
    if (check_id(id, err, errlen) != 0)
        return -1;
    return bs->be->del(bs->impl, c, id, &written_before_unix, err, errlen);
}

int blob_list(struct blob_store *bs, PGconn *c, const char *after_id, size_t max, blob_list_cb cb,
              void *ctx, char *err, size_t errlen)
{
    if (bs == NULL || cb == NULL) {
        blob_set_err(err, errlen, "blob list: bad arguments");
        return -1;
    }
    if (max == 0 || max > BLOB_LIST_MAX) {
        blob_set_err(err, errlen, "blob list: page size must be 1 to %d", BLOB_LIST_MAX);
        return -1;
    }
    if (after_id != NULL && after_id[0] == '\0')
        after_id = NULL;
    if (after_id != NULL && check_id(after_id, err, errlen) != 0)
        return -1;
    return bs->be->list(bs->impl, c, after_id, max, cb, ctx, err, errlen);
}

int blob_purge_uploads(struct blob_store *bs, PGconn *c, long long older_than_s, char *err,
                       size_t errlen)
{
    if (bs == NULL || older_than_s < 0) {
        blob_set_err(err, errlen, "blob purge: bad arguments");
        return -1;
    }
    return bs->be->purge(bs->impl, c, older_than_s, err, errlen);
}
