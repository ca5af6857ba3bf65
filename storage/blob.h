/* The blob store: content-addressed storage for message bodies, attachments
 * and files (DESIGN §4).
 *
 * A blob is an immutable byte string named by the lowercase hex SHA-256 of
 * its content, so storing the same bytes twice yields the same id and one
 * stored object. Blobs are written before the metadata that references them;
 * blobs nothing references are removed later by a master-only collector,
 * which uses blob_list() and blob_delete_if_older() (see "Collecting" below).
 *
 * Three backends keep the bytes:
 *  - "pg": in PostgreSQL (migration 0004), in chunks of BLOB_CHUNK_SIZE;
 *  - "fs": files under a directory, <root>/ab/cd/<id> (a shared mount in a
 *    cluster);
 *  - "s3": objects <prefix><id> in an S3-compatible bucket.
 * docs/BLOBS.md describes how each stores data and its durability.
 *
 * Both directions stream: a writer takes the content in pieces and a reader
 * returns it in pieces, so memory stays bounded whatever the size (at most
 * one chunk for pg, one S3 part, BLOB_S3_PART_SIZE, for s3).
 *
 * Every function blocks (run them on worker threads). A store may be used by
 * several threads at once; a writer or reader by one thread at a time. The
 * PGconn argument is the caller's connection: the pg backend runs its queries
 * on it (it must not be inside a transaction of the caller's, since writers
 * and deletions commit their own), the other backends ignore it (NULL is
 * fine for them). A pg writer or reader uses the connection it was created
 * with until it is finished or closed.
 *
 * Functions returning int return 0 on success, -1 on an error with the reason
 * in err (err may be NULL), and the named codes below where they say so.
 * Ids given to any function must be exactly BLOB_ID_LEN lowercase hex digits;
 * anything else is refused with -1 before any storage is touched.
 */
#ifndef FLOE_STORAGE_BLOB_H
#define FLOE_STORAGE_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <libpq-fe.h>

/* Lowercase hex SHA-256. */
#define BLOB_ID_LEN 64

/* No blob with that id. */
#define BLOB_ENOTFOUND (-2)
/* A range that starts past the end of the blob. */
#define BLOB_ERANGE (-3)
/* blob_delete_if_older(): the blob was written at or after the cut-off. */
#define BLOB_ENEWER (-4)

/* Largest blob accepted when the configuration does not say (5 GiB, the
 * largest object S3 copies in one request). */
#define BLOB_SIZE_MAX_DEFAULT (5ULL * 1024 * 1024 * 1024)
/* pg: bytes per stored chunk (the last chunk of a blob may be shorter). */
#define BLOB_CHUNK_SIZE (256 * 1024)
/* s3: objects up to this size go up in one PUT, larger ones in multipart
 * uploads of parts of this size (S3's smallest part but the last). */
#define BLOB_S3_PART_SIZE (5 * 1024 * 1024)
/* Most ids one blob_list() call returns. */
#define BLOB_LIST_MAX 1000
/* A finished writer whose content exists already refreshes the blob's
 * written time when that time is older than this many seconds. */
#define BLOB_REFRESH_INTERVAL 3600

struct blob_config {
    const char *backend; /* "pg" | "fs" | "s3" (NULL: "pg") */
    const char *fs_path; /* fs: absolute path of the root directory */
    /* s3: endpoint "https://host[:port]" or "http://host[:port]" (no path) */
    const char *s3_endpoint;
    const char *s3_region; /* NULL: "us-east-1" (AWS's first region, MinIO's default) */
    const char *s3_bucket;
    const char *s3_access_key, *s3_secret_key;
    const char *s3_prefix; /* put before every object name, e.g. "floe/"; NULL: none */
    bool s3_path_style; /* true: http://host/bucket/key (MinIO, RGW, s3rver); false: virtual-host */
    /* s3: seconds to connect, and seconds a transfer may move no data, before
     * it fails (0: 30) */
    unsigned s3_timeout;
    /* s3: directory for blobs larger than one part while they are written
     * (unnamed files, gone when closed); NULL: $TMPDIR, else /tmp */
    const char *spool_dir;
    /* Largest blob accepted, in bytes (0: BLOB_SIZE_MAX_DEFAULT). */
    unsigned long long max_size;
};

struct blob_store;
struct blob_writer;
struct blob_reader;

/* Is id exactly BLOB_ID_LEN lowercase hex digits? */
bool blob_id_valid(const char *id);

/* Opens a store. The configuration is checked and copied (cfg may be freed
 * afterwards). No network or database traffic happens here: a store opens
 * while its backend is unreachable, and operations report the failures.
 * fs: the root must exist; its tmp/ directory is created when missing.
 * Returns the store, or NULL with the reason in err. */
struct blob_store *blob_store_open(const struct blob_config *cfg, char *err, size_t errlen);

/* Closes *bs (no writers or readers may remain) and sets *bs to NULL.
 * NULL and *bs == NULL are accepted. */
void blob_store_close(struct blob_store **bs);

/* The backend's name: "pg", "fs" or "s3". */
const char *blob_store_backend(const struct blob_store *bs);

/* ---- writing ---- */

/* Starts a blob. The content is hashed as it comes; the blob becomes visible
 * under its id only when blob_writer_finish() succeeds. pg needs c.
 * Returns the writer, or NULL with the reason in err. */
struct blob_writer *blob_writer_new(struct blob_store *bs, PGconn *c, char *err, size_t errlen);

/* Appends len bytes (len 0 is allowed). pg stores each full chunk as it
 * fills, fs writes through to the file, s3 keeps one part in memory and
 * moves larger content to a spool file. Returns 0, or -1 when the content
 * would exceed the store's max_size or storing failed; the writer is then
 * failed: blob_writer_error() says why, later writes fail, and finish fails
 * (abort or finish it to free it). */
int blob_writer_write(struct blob_writer *w, const void *data, size_t len);

/* Why the writer failed ("" when it did not). */
const char *blob_writer_error(const struct blob_writer *w);

/* Makes the content durable and visible under its id, written to id_r
 * (BLOB_ID_LEN digits + NUL), its size to *size_r (size_r may be NULL).
 * When a blob with that id exists already, the new copy is dropped and the
 * call still succeeds (deduplication); the existing blob's written time is
 * refreshed when older than BLOB_REFRESH_INTERVAL. Frees the writer and sets
 * *w to NULL whatever the outcome. Returns 0, or -1 with the reason in err
 * (nothing became visible). */
int blob_writer_finish(struct blob_writer **w, char id_r[BLOB_ID_LEN + 1],
                       unsigned long long *size_r, char *err, size_t errlen);

/* Drops the content written so far; nothing becomes visible. Frees the writer
 * and sets *w to NULL (NULL and *w == NULL accepted). */
void blob_writer_abort(struct blob_writer **w);

/* Stores len bytes in one call (writer, one write, finish).
 * Returns 0 with the id in id_r, or -1. */
int blob_put(struct blob_store *bs, PGconn *c, const void *data, size_t len,
             char id_r[BLOB_ID_LEN + 1], char *err, size_t errlen);

/* ---- reading ---- */

/* Opens a stream over the bytes [offset, offset + len) of blob id, cut at the
 * end of the blob (len UINT64_MAX: to the end). offset equal to the size
 * gives an empty stream. pg needs c and reads one chunk at a time, touching
 * only the chunks the range covers; fs reads with pread(); s3 sends one GET
 * with a Range header (and resumes from where it stopped if the connection
 * breaks). Returns 0 with the reader in *r_r, BLOB_ENOTFOUND, BLOB_ERANGE
 * (offset past the end), or -1. */
int blob_reader_open(struct blob_store *bs, PGconn *c, const char *id, unsigned long long offset,
                     unsigned long long len, struct blob_reader **r_r, char *err, size_t errlen);

/* Size of the whole blob. */
unsigned long long blob_reader_size(const struct blob_reader *r);

/* Number of bytes the stream yields in all (the range cut at the end). */
unsigned long long blob_reader_length(const struct blob_reader *r);

/* Reads up to len bytes into buf. Returns the number read (> 0; fewer than
 * len is not the end), 0 at the end of the range, or -1 on an error
 * (blob_reader_error() says why; the reader stays failed). A blob that turns
 * out shorter than it claimed (deleted or damaged while read) is an error,
 * never a silent short read. */
ssize_t blob_reader_read(struct blob_reader *r, void *buf, size_t len);

/* Why the reader failed ("" when it did not). */
const char *blob_reader_error(const struct blob_reader *r);

/* Closes *r and sets it to NULL (NULL and *r == NULL accepted). */
void blob_reader_close(struct blob_reader **r);

/* ---- other operations ---- */

/* Writes the size of blob id to *size_r (may be NULL: an existence test).
 * Returns 0, BLOB_ENOTFOUND or -1. s3: a missing bucket also reads as
 * BLOB_ENOTFOUND (S3 gives no reason for a failed HEAD). */
int blob_stat(struct blob_store *bs, PGconn *c, const char *id, unsigned long long *size_r,
              char *err, size_t errlen);

/* Deletes blob id. Readers open on it may fail. Returns 0, BLOB_ENOTFOUND or
 * -1. */
int blob_delete(struct blob_store *bs, PGconn *c, const char *id, char *err, size_t errlen);

/* Deletes blob id only when it was written (or last refreshed) before
 * written_before_unix (seconds since the epoch). Returns 0, BLOB_ENOTFOUND,
 * BLOB_ENEWER, or -1. pg checks and deletes atomically; fs and s3 check then
 * delete, so a refresh in between is not seen (see docs/BLOBS.md). */
int blob_delete_if_older(struct blob_store *bs, PGconn *c, const char *id,
                         long long written_before_unix, char *err, size_t errlen);

/* Called for each listed blob: its id and written time (seconds since the
 * epoch). Return 0 to go on, non-zero to stop. Must not use the connection. */
typedef int (*blob_list_cb)(const char *id, long long written_unix, void *ctx);

/* Lists up to max (1..BLOB_LIST_MAX) blobs whose id sorts after after_id
 * (NULL or "": from the start), in id order. A page shorter than max means
 * the listing is complete; the next page starts after the last id seen.
 * Returns the number of ids passed to cb (cb stopping early counts the ids
 * it took), or -1 (cb may have been called already). */
int blob_list(struct blob_store *bs, PGconn *c, const char *after_id, size_t max, blob_list_cb cb,
              void *ctx, char *err, size_t errlen);

/* Removes what writers left behind when their process died: pg upload rows
 * and chunks, fs tmp/ files, untouched for at least older_than_s seconds
 * (which must exceed the longest a live writer may pause between writes;
 * an hour is plenty). s3 keeps unfinished uploads only in unnamed spool
 * files, which vanish with the process, and multipart uploads that S3 drops
 * by the bucket's lifecycle rule (docs/BLOBS.md): nothing to do here.
 * Returns the number of uploads removed, or -1. */
int blob_purge_uploads(struct blob_store *bs, PGconn *c, long long older_than_s, char *err,
                       size_t errlen);

/* ---- Collecting ----
 *
 * A safe collector (master-only, DESIGN §1):
 *   1. cutoff = now - G, where G >= BLOB_REFRESH_INTERVAL plus the longest
 *      time between blob_writer_finish() and the commit of the metadata that
 *      references the blob (a day is a comfortable G);
 *   2. page through blob_list(), keep ids with written_unix < cutoff;
 *   3. for each that no metadata references, blob_delete_if_older(id, cutoff).
 * A writer deduplicating against an old blob refreshes its written time, so
 * step 3 leaves alone a blob that a writer was just told exists.
 */

#ifdef BLOB_BACKEND_IMPL
/* ---- backend interface: implemented by storage/blob_{pg,fs,s3}.c ----
 *
 * storage/blob.c validates ids and arguments, hashes what is written,
 * enforces max_size and the reader's range; backends only move bytes. Each
 * function may assume valid ids and sets err on failure. */
struct blob_backend {
    const char *name;
    int (*open)(const struct blob_config *cfg, void **impl_r, char *err, size_t errlen);
    void (*close)(void *impl);
    int (*writer_new)(void *impl, PGconn *c, void **w_r, char *err, size_t errlen);
    int (*writer_write)(void *w, const void *data, size_t len, char *err, size_t errlen);
    /* Commits the content under id (dropping it when id exists) and frees w,
     * whatever the outcome. */
    int (*writer_finish)(void *w, const char *id, unsigned long long size, char *err,
                         size_t errlen);
    void (*writer_abort)(void *w);
    /* Opens id for reading from offset; *size_r = the blob's size. Returns
     * 0, BLOB_ENOTFOUND, BLOB_ERANGE (offset > size) or -1. len is the most
     * the caller will read; it may reach past the end (UINT64_MAX: to the
     * end), which the caller cuts once *size_r is known. */
    int (*reader_open)(void *impl, PGconn *c, const char *id, unsigned long long offset,
                       unsigned long long len, void **r_r, unsigned long long *size_r, char *err,
                       size_t errlen);
    /* Reads 1..len bytes; len never reaches past the range. Returns the
     * count, 0 when the stored data ended early, or -1. */
    ssize_t (*reader_read)(void *r, void *buf, size_t len, char *err, size_t errlen);
    void (*reader_close)(void *r);
    int (*stat)(void *impl, PGconn *c, const char *id, unsigned long long *size_r, char *err,
                size_t errlen);
    /* before NULL: unconditional; else only when written before *before. */
    int (*del)(void *impl, PGconn *c, const char *id, const long long *before, char *err,
               size_t errlen);
    int (*list)(void *impl, PGconn *c, const char *after_id, size_t max, blob_list_cb cb, void *ctx,
                char *err, size_t errlen);
    int (*purge)(void *impl, PGconn *c, long long older_than_s, char *err, size_t errlen);
};

extern const struct blob_backend blob_backend_pg;
extern const struct blob_backend blob_backend_fs;
extern const struct blob_backend blob_backend_s3;

/* printf into err when err is not NULL (shared by the backends). */
__attribute__((format(printf, 3, 4))) void blob_set_err(char *err, size_t errlen, const char *fmt,
                                                        ...);
#endif

#endif
