/* layer: storage */
/* Tests for storage/blob: the same behaviour checked on each backend, then
 * what is particular to each.
 *
 *  - pg runs against a real PostgreSQL: FLOE_TEST_PG holds a libpq
 *    connection string for a user who may create databases (the run creates
 *    floe_test_blob_<pid> with tests/unit/support/testdb and drops it at the
 *    end);
 *  - fs runs in a fresh temporary directory;
 *  - s3 runs against an S3-compatible server: FLOE_TEST_S3 holds
 *    "endpoint bucket access-key secret-key" (ops/s3-test-server starts one
 *    on loopback and prints it); objects go under a prefix of this run and
 *    are deleted at the end.
 * A missing FLOE_TEST_PG or FLOE_TEST_S3 fails that backend's tests.
 *
 * Content is generated from (seed, position), so multi-megabyte blobs are
 * written and checked without ever being held whole in memory, and the
 * heap is sampled during the 20 MB round trip to check that it stays within
 * a bound set by the backend's buffers, not by the blob's size. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "storage/blob.h"
#include "storage/db.h"
#include "support/testdb.h"

#define KIB 1024ULL
#define MIB (1024ULL * 1024)
#define C BLOB_CHUNK_SIZE
#define P BLOB_S3_PART_SIZE
#define EMPTY_ID "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* ---- heap measurement ---- */

#if defined(__SANITIZE_ADDRESS__)
/* From the sanitizer runtime (sanitizer/allocator_interface.h, which GCC
 * does not install). */
size_t __sanitizer_get_current_allocated_bytes(void);
static size_t heap_now(void)
{
    return __sanitizer_get_current_allocated_bytes();
}
#else
static size_t heap_now(void)
{
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}
#endif

struct heap_watch {
    size_t base, peak;
};

static void heap_start(struct heap_watch *h)
{
    h->base = heap_now();
    h->peak = 0;
}

static void heap_sample(struct heap_watch *h)
{
    size_t now = heap_now();
    if (now > h->base && now - h->base > h->peak)
        h->peak = now - h->base;
}

/* ---- fixtures ---- */

struct fx {
    const char *name; /* "pg", "fs", "s3" */
    struct blob_store *bs;
    PGconn *c; /* pg only */
    struct blob_config cfg;
    char root[256];   /* fs */
    char s3env[1024]; /* s3: FLOE_TEST_S3, split in place */
    char prefix[64];  /* s3 */
    size_t heap_bound;
    char why[1024]; /* why the backend could not be opened ("" when it was) */
};

static struct fx fx_pg = {.name = "pg", .heap_bound = 4 * MIB};
static struct fx fx_fs = {.name = "fs", .heap_bound = 4 * MIB};
/* One part of writer buffer, one spool read-back buffer being the same
 * memory, plus curl's buffers. */
static struct fx fx_s3 = {.name = "s3", .heap_bound = 10 * MIB};

static void assert_contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) == NULL)
        fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

/* First cell of a fixed test query with up to two text parameters. */
static const char *sql1(PGconn *c, const char *sql, const char *p1, const char *p2)
{
    static char out[512];
    const char *p[] = {p1, p2};
    int np = p2 ? 2 : (p1 ? 1 : 0);
    PGresult *r = PQexecParams(c, sql, np, NULL, p, NULL, NULL, 0);
    if (!db_ok(r))
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    snprintf(out, sizeof out, "%s",
             (PQntuples(r) > 0 && PQnfields(r) > 0) ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    return out;
}

static long long count(PGconn *c, const char *sql, const char *p1)
{
    return strtoll(sql1(c, sql, p1, NULL), NULL, 10);
}

/* Each open_* prepares one backend, or says in why what is missing; the
 * tests of a backend that did not open fail one by one (see wipe()). */
static void open_pg(void)
{
    const char *pg = getenv("FLOE_TEST_PG");
    if (pg == NULL || pg[0] == '\0') {
        snprintf(fx_pg.why, sizeof fx_pg.why,
                 "FLOE_TEST_PG is not set: the pg blob tests need a PostgreSQL server.\n"
                 "Set it to a libpq connection string for a user who may create databases,\n"
                 "e.g. FLOE_TEST_PG='host=/tmp/pg port=55432 user=floe dbname=postgres'");
        return;
    }
    fx_pg.c = testdb_create("blob");
    fx_pg.cfg = (struct blob_config){.backend = "pg"};
    char err[512];
    fx_pg.bs = blob_store_open(&fx_pg.cfg, err, sizeof err);
    if (fx_pg.bs == NULL)
        snprintf(fx_pg.why, sizeof fx_pg.why, "blob_store_open(pg): %s", err);
}

static void close_pg(void)
{
    blob_store_close(&fx_pg.bs);
    if (fx_pg.c != NULL)
        testdb_drop(&fx_pg.c);
}

static void open_fs(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(fx_fs.root, sizeof fx_fs.root, "%s/floe-test-blob-XXXXXX",
             tmp != NULL && tmp[0] == '/' ? tmp : "/tmp");
    if (mkdtemp(fx_fs.root) == NULL) {
        snprintf(fx_fs.why, sizeof fx_fs.why, "mkdtemp: %s", strerror(errno));
        fx_fs.root[0] = '\0';
        return;
    }
    fx_fs.cfg = (struct blob_config){.backend = "fs", .fs_path = fx_fs.root};
    char err[512];
    fx_fs.bs = blob_store_open(&fx_fs.cfg, err, sizeof err);
    if (fx_fs.bs == NULL)
        snprintf(fx_fs.why, sizeof fx_fs.why, "blob_store_open(fs): %s", err);
}

/* rm -r of a directory this test made (no symlinks are followed). */
static void remove_tree(int parent, const char *name)
{
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        unlinkat(parent, name, 0);
        return;
    }
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (de->d_type == DT_DIR)
            remove_tree(dirfd(d), de->d_name);
        else
            unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
    unlinkat(parent, name, AT_REMOVEDIR);
}

static void close_fs(void)
{
    blob_store_close(&fx_fs.bs);
    if (fx_fs.root[0] != '\0')
        remove_tree(AT_FDCWD, fx_fs.root);
}

static void open_s3(void)
{
    const char *env = getenv("FLOE_TEST_S3");
    if (env == NULL || env[0] == '\0') {
        snprintf(fx_s3.why, sizeof fx_s3.why,
                 "FLOE_TEST_S3 is not set: the s3 blob tests need an S3-compatible server.\n"
                 "Start one with: eval \"$(ops/s3-test-server start /tmp/s3)\"\n"
                 "(it sets FLOE_TEST_S3='http://127.0.0.1:PORT bucket access-key secret')");
        return;
    }
    snprintf(fx_s3.s3env, sizeof fx_s3.s3env, "%s", env);
    char *fields[4], *save = NULL;
    int n = 0;
    for (char *t = strtok_r(fx_s3.s3env, " \t", &save); t != NULL && n < 4;
         t = strtok_r(NULL, " \t", &save))
        fields[n++] = t;
    if (n != 4) {
        snprintf(fx_s3.why, sizeof fx_s3.why,
                 "FLOE_TEST_S3 must be \"endpoint bucket access-key secret-key\"");
        return;
    }
    snprintf(fx_s3.prefix, sizeof fx_s3.prefix, "floe-test-%ld-%ld/", (long)getpid(),
             (long)time(NULL));
    fx_s3.cfg = (struct blob_config){.backend = "s3",
                                     .s3_endpoint = fields[0],
                                     .s3_bucket = fields[1],
                                     .s3_access_key = fields[2],
                                     .s3_secret_key = fields[3],
                                     .s3_prefix = fx_s3.prefix,
                                     .s3_path_style = true,
                                     .s3_timeout = 20};
    char err[512];
    fx_s3.bs = blob_store_open(&fx_s3.cfg, err, sizeof err);
    if (fx_s3.bs == NULL) {
        snprintf(fx_s3.why, sizeof fx_s3.why, "blob_store_open(s3): %s", err);
        return;
    }
    /* Reachable, and the credentials work (HEAD of an absent id). */
    unsigned long long sz;
    int rc = blob_stat(fx_s3.bs, NULL, EMPTY_ID, &sz, err, sizeof err);
    if (rc != 0 && rc != BLOB_ENOTFOUND) {
        snprintf(fx_s3.why, sizeof fx_s3.why, "the S3 server in FLOE_TEST_S3 does not answer: %s",
                 err);
        blob_store_close(&fx_s3.bs);
    }
}

/* ---- listing and cleaning ---- */

struct collect {
    char (*ids)[BLOB_ID_LEN + 1];
    long long *when;
    size_t n, cap;
    size_t stop_after; /* 0: never stop */
};

static int collect_cb(const char *id, long long written, void *ctx)
{
    struct collect *col = ctx;
    if (col->n == col->cap) {
        col->cap = col->cap ? col->cap * 2 : 64;
        col->ids = realloc(col->ids, col->cap * sizeof col->ids[0]);
        col->when = realloc(col->when, col->cap * sizeof col->when[0]);
        assert_non_null(col->ids);
        assert_non_null(col->when);
    }
    snprintf(col->ids[col->n], BLOB_ID_LEN + 1, "%s", id);
    col->when[col->n] = written;
    col->n++;
    return (col->stop_after != 0 && col->n >= col->stop_after) ? 1 : 0;
}

static void collect_free(struct collect *col)
{
    free(col->ids);
    free(col->when);
    memset(col, 0, sizeof *col);
}

/* Every blob in the store, in id order. */
static void list_all(struct fx *f, struct collect *col)
{
    char err[512], after[BLOB_ID_LEN + 1] = "";
    for (;;) {
        size_t before = col->n;
        int n = blob_list(f->bs, f->c, after, 100, collect_cb, col, err, sizeof err);
        if (n < 0)
            fail_msg("blob_list: %s", err);
        assert_int_equal((size_t)n, col->n - before);
        if (n < 100)
            break;
        snprintf(after, sizeof after, "%s", col->ids[col->n - 1]);
    }
}

static size_t count_listed(struct fx *f, const char *id)
{
    struct collect col = {0};
    list_all(f, &col);
    size_t k = 0;
    for (size_t i = 0; i < col.n; i++)
        k += strcmp(col.ids[i], id) == 0;
    collect_free(&col);
    return k;
}

static size_t dir_entries(const char *path)
{
    DIR *d = opendir(path);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* Nothing left of uploads: no upload rows or orphan chunks (pg), no
 * tmp files (fs). */
static void assert_no_leftovers(struct fx *f)
{
    if (strcmp(f->name, "pg") == 0) {
        assert_int_equal(count(f->c, "SELECT count(*) FROM blob_uploads", NULL), 0);
        assert_int_equal(count(f->c,
                               "SELECT count(*) FROM blob_chunks k WHERE NOT EXISTS "
                               "(SELECT 1 FROM blobs b WHERE b.content = k.content)",
                               NULL),
                         0);
    } else if (strcmp(f->name, "fs") == 0) {
        char tmp[300];
        snprintf(tmp, sizeof tmp, "%s/tmp", f->root);
        assert_int_equal(dir_entries(tmp), 0);
    }
}

/* Per-test setup: an empty store; a backend that could not be opened fails
 * the test with the reason. */
static int wipe(void **state)
{
    struct fx *f = *state;
    if (f->bs == NULL) {
        print_error("%s backend unavailable: %s\n", f->name, f->why);
        return -1;
    }
    if (strcmp(f->name, "pg") == 0) {
        PGresult *r = PQexec(f->c, "TRUNCATE blobs, blob_chunks, blob_uploads");
        int ok = db_ok(r);
        PQclear(r);
        return ok ? 0 : -1;
    }
    struct collect col = {0};
    list_all(f, &col);
    char err[512];
    for (size_t i = 0; i < col.n; i++)
        if (blob_delete(f->bs, f->c, col.ids[i], err, sizeof err) != 0)
            fail_msg("cleaning %s: %s", col.ids[i], err);
    collect_free(&col);
    if (strcmp(f->name, "fs") == 0) {
        char tmp[300];
        snprintf(tmp, sizeof tmp, "%s/tmp", f->root);
        int fd = open(tmp, O_RDONLY | O_DIRECTORY);
        DIR *d = fdopendir(fd);
        struct dirent *de;
        while ((de = readdir(d)) != NULL)
            if (de->d_name[0] != '.')
                unlinkat(fd, de->d_name, 0);
        closedir(d);
    }
    return 0;
}

static void close_s3(void)
{
    if (fx_s3.bs != NULL) {
        void *state = &fx_s3;
        wipe(&state); /* this run's objects */
        blob_store_close(&fx_s3.bs);
    }
}

/* ---- content ---- */

/* Byte i of content `seed`: a mix of the position, so a byte read from the
 * wrong offset (a chunk or part mix-up) does not match. */
static void gen(unsigned seed, unsigned long long off, unsigned char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        uint64_t x = (off + i) * 0x9E3779B97F4A7C15ULL + seed * 0xBF58476D1CE4E5B9ULL;
        x ^= x >> 31;
        x *= 0x94D049BB133111EBULL;
        buf[i] = (unsigned char)(x >> 56);
    }
}

static void sha256_hex(EVP_MD_CTX *ctx, char out[BLOB_ID_LEN + 1])
{
    unsigned char md[32];
    unsigned int len = 0;
    assert_int_equal(EVP_DigestFinal_ex(ctx, md, &len), 1);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* The id content `seed` of `size` bytes must get. */
static void expected_id(unsigned seed, unsigned long long size, char id[BLOB_ID_LEN + 1])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL), 1);
    static unsigned char buf[64 * KIB];
    for (unsigned long long off = 0; off < size; off += sizeof buf) {
        size_t n = (size_t)(size - off < sizeof buf ? size - off : sizeof buf);
        gen(seed, off, buf, n);
        EVP_DigestUpdate(ctx, buf, n);
    }
    sha256_hex(ctx, id);
    EVP_MD_CTX_free(ctx);
}

/* Writes content `seed` of `size` bytes in pieces of `piece` bytes; checks
 * the id; samples the heap after every write when h is not NULL. */
static void put_gen(struct fx *f, unsigned seed, unsigned long long size, size_t piece,
                    char id[BLOB_ID_LEN + 1], struct heap_watch *h)
{
    char err[512] = "";
    struct blob_writer *w = blob_writer_new(f->bs, f->c, err, sizeof err);
    if (w == NULL)
        fail_msg("blob_writer_new: %s", err);
    unsigned char *buf = malloc(piece);
    assert_non_null(buf);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL), 1);
    if (h != NULL)
        heap_start(h);
    for (unsigned long long off = 0; off < size; off += piece) {
        size_t n = (size_t)(size - off < piece ? size - off : piece);
        gen(seed, off, buf, n);
        EVP_DigestUpdate(ctx, buf, n);
        if (blob_writer_write(w, buf, n) != 0)
            fail_msg("blob_writer_write at %llu: %s", off, blob_writer_error(w));
        if (h != NULL)
            heap_sample(h);
    }
    char want[BLOB_ID_LEN + 1];
    sha256_hex(ctx, want);
    EVP_MD_CTX_free(ctx);
    free(buf);
    unsigned long long got_size = 0;
    if (blob_writer_finish(&w, id, &got_size, err, sizeof err) != 0)
        fail_msg("blob_writer_finish: %s", err);
    if (h != NULL)
        heap_sample(h);
    assert_null(w);
    assert_string_equal(id, want);
    assert_int_equal(got_size, size);
}

/* Reads [off, off+len) of blob id (content `seed`, `size` bytes) in reads of
 * `piece` bytes and compares with the generated content. */
static void expect_range(struct fx *f, const char *id, unsigned seed, unsigned long long size,
                         unsigned long long off, unsigned long long len, size_t piece,
                         struct heap_watch *h)
{
    char err[512] = "";
    struct blob_reader *r = NULL;
    int rc = blob_reader_open(f->bs, f->c, id, off, len, &r, err, sizeof err);
    if (rc != 0)
        fail_msg("blob_reader_open(%llu, %llu): %d %s", off, len, rc, err);
    unsigned long long want_len = size - off < len ? size - off : len;
    assert_int_equal(blob_reader_size(r), size);
    assert_int_equal(blob_reader_length(r), want_len);
    unsigned char *got = malloc(piece), *exp = malloc(piece);
    assert_non_null(got);
    assert_non_null(exp);
    unsigned long long pos = off;
    for (;;) {
        ssize_t n = blob_reader_read(r, got, piece);
        if (n < 0)
            fail_msg("blob_reader_read at %llu: %s", pos, blob_reader_error(r));
        if (h != NULL)
            heap_sample(h);
        if (n == 0)
            break;
        gen(seed, pos, exp, (size_t)n);
        if (memcmp(got, exp, (size_t)n) != 0)
            fail_msg("range (%llu, %llu): wrong bytes at %llu..%llu", off, len, pos,
                     pos + (unsigned long long)n);
        pos += (unsigned long long)n;
    }
    assert_int_equal(pos - off, want_len);
    assert_int_equal(blob_reader_read(r, got, piece), 0); /* the end stays the end */
    free(got);
    free(exp);
    blob_reader_close(&r);
    assert_null(r);
}

/* Sets a blob's written time `secs` into the past, where the backend allows
 * it (pg, fs). Returns false for s3. */
static bool age_blob(struct fx *f, const char *id, long secs)
{
    char s[32];
    snprintf(s, sizeof s, "%ld", secs);
    if (strcmp(f->name, "pg") == 0) {
        sql1(f->c,
             "UPDATE blobs SET written_at = now() - make_interval(secs => $2::float8) "
             "WHERE id = $1",
             id, s);
        return true;
    }
    if (strcmp(f->name, "fs") == 0) {
        char path[400];
        snprintf(path, sizeof path, "%s/%.2s/%.2s/%s", f->root, id, id + 2, id);
        struct timespec ts[2] = {{time(NULL) - secs, 0}, {time(NULL) - secs, 0}};
        assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
        return true;
    }
    return false;
}

static long long written_time(struct fx *f, const char *id)
{
    struct collect col = {0};
    list_all(f, &col);
    long long t = -1;
    for (size_t i = 0; i < col.n; i++)
        if (strcmp(col.ids[i], id) == 0)
            t = col.when[i];
    collect_free(&col);
    return t;
}

/* ---- behaviour every backend shares ---- */

static void test_put_get_small(void **state)
{
    struct fx *f = *state;
    char id[BLOB_ID_LEN + 1], err[512] = "";
    const char text[] = "Subject: hello\r\n\r\nA small blob.\r\n";
    assert_int_equal(blob_put(f->bs, f->c, text, strlen(text), id, err, sizeof err), 0);
    assert_true(blob_id_valid(id));

    /* The id is the SHA-256 of the content. */
    char want[BLOB_ID_LEN + 1];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, text, strlen(text));
    sha256_hex(ctx, want);
    EVP_MD_CTX_free(ctx);
    assert_string_equal(id, want);

    unsigned long long size = 0;
    assert_int_equal(blob_stat(f->bs, f->c, id, &size, err, sizeof err), 0);
    assert_int_equal(size, strlen(text));
    assert_int_equal(blob_stat(f->bs, f->c, id, NULL, err, sizeof err), 0);

    /* Read back in 5-byte steps. */
    struct blob_reader *r = NULL;
    assert_int_equal(blob_reader_open(f->bs, f->c, id, 0, UINT64_MAX, &r, err, sizeof err), 0);
    assert_int_equal(blob_reader_size(r), strlen(text));
    assert_int_equal(blob_reader_length(r), strlen(text));
    char got[128];
    size_t n = 0;
    ssize_t k;
    while ((k = blob_reader_read(r, got + n, 5)) > 0) {
        assert_true(k <= 5);
        n += (size_t)k;
    }
    assert_int_equal(k, 0);
    assert_int_equal(n, strlen(text));
    assert_memory_equal(got, text, n);
    assert_string_equal(blob_reader_error(r), "");
    blob_reader_close(&r);
    blob_reader_close(&r); /* NULL is fine */

    /* The same bytes through a writer in uneven pieces: the same id. */
    struct blob_writer *w = blob_writer_new(f->bs, f->c, err, sizeof err);
    assert_non_null(w);
    assert_int_equal(blob_writer_write(w, text, 3), 0);
    assert_int_equal(blob_writer_write(w, text + 3, 0), 0);
    assert_int_equal(blob_writer_write(w, text + 3, strlen(text) - 3), 0);
    char id2[BLOB_ID_LEN + 1];
    assert_int_equal(blob_writer_finish(&w, id2, NULL, err, sizeof err), 0);
    assert_string_equal(id2, id);
    assert_no_leftovers(f);
}

static void test_empty(void **state)
{
    struct fx *f = *state;
    char id[BLOB_ID_LEN + 1], err[512] = "";
    assert_int_equal(blob_put(f->bs, f->c, NULL, 0, id, err, sizeof err), 0);
    assert_string_equal(id, EMPTY_ID);
    unsigned long long size = 99;
    assert_int_equal(blob_stat(f->bs, f->c, id, &size, err, sizeof err), 0);
    assert_int_equal(size, 0);

    /* A writer that never writes gives the same blob. */
    struct blob_writer *w = blob_writer_new(f->bs, f->c, err, sizeof err);
    assert_non_null(w);
    unsigned long long sz = 99;
    assert_int_equal(blob_writer_finish(&w, id, &sz, err, sizeof err), 0);
    assert_string_equal(id, EMPTY_ID);
    assert_int_equal(sz, 0);

    char buf[16];
    struct blob_reader *r = NULL;
    assert_int_equal(blob_reader_open(f->bs, f->c, id, 0, UINT64_MAX, &r, err, sizeof err), 0);
    assert_int_equal(blob_reader_length(r), 0);
    assert_int_equal(blob_reader_read(r, buf, sizeof buf), 0);
    blob_reader_close(&r);
    assert_int_equal(blob_reader_open(f->bs, f->c, id, 0, 10, &r, err, sizeof err), 0);
    assert_int_equal(blob_reader_size(r), 0);
    assert_int_equal(blob_reader_read(r, buf, sizeof buf), 0);
    blob_reader_close(&r);
    err[0] = '\0';
    assert_int_equal(blob_reader_open(f->bs, f->c, id, 1, 10, &r, err, sizeof err), BLOB_ERANGE);
    assert_null(r);
    assert_contains(err, "past the end");
    assert_int_equal(count_listed(f, id), 1);
    assert_no_leftovers(f);
}

static void test_large_streamed(void **state)
{
    struct fx *f = *state;
    /* 20 MB, not a multiple of any chunk or part size. */
    const unsigned long long size = 20 * MIB + 12345;
    char id[BLOB_ID_LEN + 1];
    struct heap_watch h;
    put_gen(f, 7, size, 64 * KIB, id, &h);
    size_t write_peak = h.peak;
    heap_start(&h);
    expect_range(f, id, 7, size, 0, UINT64_MAX, 64 * KIB, &h);
    size_t read_peak = h.peak;
    print_message("%s: heap growth writing 20 MB: %zu KiB, reading: %zu KiB\n", f->name,
                  write_peak / 1024, read_peak / 1024);
    if (write_peak > f->heap_bound || read_peak > f->heap_bound)
        fail_msg("heap grew by %zu / %zu bytes (bound %zu)", write_peak, read_peak, f->heap_bound);
    unsigned long long got = 0;
    char err[512];
    assert_int_equal(blob_stat(f->bs, f->c, id, &got, err, sizeof err), 0);
    assert_int_equal(got, size);
    assert_no_leftovers(f);
}

static void test_dedup(void **state)
{
    struct fx *f = *state;
    char a[BLOB_ID_LEN + 1], b[BLOB_ID_LEN + 1], err[512];
    const unsigned long long size = 3 * C + 17; /* several pg chunks */
    put_gen(f, 11, size, 4000, a, NULL);
    put_gen(f, 11, size, 64 * KIB, b, NULL); /* other pieces, same bytes */
    assert_string_equal(a, b);
    assert_int_equal(count_listed(f, a), 1);
    assert_no_leftovers(f);
    if (strcmp(f->name, "pg") == 0) {
        assert_int_equal(count(f->c, "SELECT count(*) FROM blobs", NULL), 1);
        assert_int_equal(count(f->c, "SELECT count(*) FROM blob_chunks", NULL), 4);
    } else if (strcmp(f->name, "fs") == 0) {
        char path[400];
        snprintf(path, sizeof path, "%s/%.2s/%.2s", f->root, a, a + 2);
        assert_int_equal(dir_entries(path), 1);
    }

    /* Two writers of the same content at once: both succeed, one object. */
    unsigned char *buf = malloc(size);
    assert_non_null(buf);
    gen(12, 0, buf, size);
    struct blob_writer *w1 = blob_writer_new(f->bs, f->c, err, sizeof err);
    struct blob_writer *w2 = blob_writer_new(f->bs, f->c, err, sizeof err);
    assert_non_null(w1);
    assert_non_null(w2);
    assert_int_equal(blob_writer_write(w1, buf, size / 2), 0);
    assert_int_equal(blob_writer_write(w2, buf, size), 0);
    assert_int_equal(blob_writer_write(w1, buf + size / 2, size - size / 2), 0);
    assert_int_equal(blob_writer_finish(&w2, a, NULL, err, sizeof err), 0);
    assert_int_equal(blob_writer_finish(&w1, b, NULL, err, sizeof err), 0);
    free(buf);
    assert_string_equal(a, b);
    assert_int_equal(count_listed(f, a), 1);
    expect_range(f, a, 12, size, 0, UINT64_MAX, 10000, NULL);
    assert_no_leftovers(f);

    /* Deduplicating against an old blob refreshes its written time (the
     * collector's grace period starts again); a fresh one is left as is. */
    if (age_blob(f, a, 2 * BLOB_REFRESH_INTERVAL)) {
        long long old = written_time(f, a);
        assert_true(old < (long long)time(NULL) - BLOB_REFRESH_INTERVAL);
        put_gen(f, 12, size, 64 * KIB, b, NULL);
        long long fresh = written_time(f, a);
        assert_true(fresh >= (long long)time(NULL) - 5);
        age_blob(f, a, 60);
        long long recent = written_time(f, a);
        put_gen(f, 12, size, 64 * KIB, b, NULL);
        assert_int_equal(written_time(f, a), recent);
    }
}

static void test_ranges(void **state)
{
    struct fx *f = *state;
    /* Two S3 parts and a bit: crosses many pg chunk boundaries and the s3
     * part boundaries. */
    const unsigned long long size = 2 * P + 1000;
    char id[BLOB_ID_LEN + 1], err[512];
    put_gen(f, 21, size, 64 * KIB, id, NULL);

    const unsigned long long offsets[] = {0,     1, C - 1, C,         C + 1, 2 * C - 3,
                                          P - 1, P, P + 1, 2 * P - 1, 2 * P, size - 1};
    const unsigned long long lens[] = {1, 2, 7, C + 2};
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++)
        for (size_t j = 0; j < sizeof lens / sizeof lens[0]; j++)
            expect_range(f, id, 21, size, offsets[i], lens[j], 4093, NULL);
    /* To the end, from near the end and across the last part boundary. */
    expect_range(f, id, 21, size, 2 * P - 1, UINT64_MAX, 4093, NULL);
    expect_range(f, id, 21, size, size - 1, UINT64_MAX, 4093, NULL);
    expect_range(f, id, 21, size, P + 1, 100 * MIB, 65536, NULL); /* len past the end */
    /* A whole chunk exactly, read in one call. */
    expect_range(f, id, 21, size, C, C, C, NULL);
    /* Empty ranges: at the end, and zero length inside. */
    expect_range(f, id, 21, size, size, UINT64_MAX, 100, NULL);
    expect_range(f, id, 21, size, size, 5, 100, NULL);
    expect_range(f, id, 21, size, P, 0, 100, NULL);
    /* Past the end. */
    struct blob_reader *r = NULL;
    err[0] = '\0';
    assert_int_equal(blob_reader_open(f->bs, f->c, id, size + 1, 1, &r, err, sizeof err),
                     BLOB_ERANGE);
    assert_null(r);
    assert_int_equal(blob_reader_open(f->bs, f->c, id, size + 1, 0, &r, err, sizeof err),
                     BLOB_ERANGE);
    assert_int_equal(blob_reader_open(f->bs, f->c, id, UINT64_MAX, UINT64_MAX, &r, err, sizeof err),
                     BLOB_ERANGE);
}

static void test_not_found(void **state)
{
    struct fx *f = *state;
    const char *absent = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char err[512] = "";
    unsigned long long size = 42;
    assert_int_equal(blob_stat(f->bs, f->c, absent, &size, err, sizeof err), BLOB_ENOTFOUND);
    assert_contains(err, "not found");
    assert_int_equal(size, 42);
    struct blob_reader *r = (struct blob_reader *)1;
    err[0] = '\0';
    assert_int_equal(blob_reader_open(f->bs, f->c, absent, 0, UINT64_MAX, &r, err, sizeof err),
                     BLOB_ENOTFOUND);
    assert_null(r);
    assert_contains(err, "not found");
    assert_int_equal(blob_reader_open(f->bs, f->c, absent, 10, 5, &r, err, sizeof err),
                     BLOB_ENOTFOUND);
    assert_int_equal(blob_reader_open(f->bs, f->c, absent, 0, 0, &r, err, sizeof err),
                     BLOB_ENOTFOUND);
    assert_int_equal(blob_delete(f->bs, f->c, absent, err, sizeof err), BLOB_ENOTFOUND);
    assert_int_equal(blob_delete_if_older(f->bs, f->c, absent, time(NULL), err, sizeof err),
                     BLOB_ENOTFOUND);
}

static void test_delete(void **state)
{
    struct fx *f = *state;
    char id[BLOB_ID_LEN + 1], keep[BLOB_ID_LEN + 1], err[512] = "";
    put_gen(f, 31, 2 * C + 5, 64 * KIB, id, NULL);
    put_gen(f, 32, 100, 64 * KIB, keep, NULL);
    assert_int_equal(blob_delete(f->bs, f->c, id, err, sizeof err), 0);
    assert_int_equal(blob_stat(f->bs, f->c, id, NULL, err, sizeof err), BLOB_ENOTFOUND);
    struct blob_reader *r = NULL;
    assert_int_equal(blob_reader_open(f->bs, f->c, id, 0, UINT64_MAX, &r, err, sizeof err),
                     BLOB_ENOTFOUND);
    assert_int_equal(blob_delete(f->bs, f->c, id, err, sizeof err), BLOB_ENOTFOUND);
    assert_int_equal(count_listed(f, id), 0);
    /* The other blob is untouched. */
    assert_int_equal(count_listed(f, keep), 1);
    expect_range(f, keep, 32, 100, 0, UINT64_MAX, 64, NULL);
    if (strcmp(f->name, "pg") == 0)
        assert_int_equal(count(f->c, "SELECT count(*) FROM blob_chunks", NULL), 1);

    /* Deleted blobs can be stored again. */
    char again[BLOB_ID_LEN + 1];
    put_gen(f, 31, 2 * C + 5, 64 * KIB, again, NULL);
    assert_string_equal(again, id);
    expect_range(f, id, 31, 2 * C + 5, 0, UINT64_MAX, 64 * KIB, NULL);

    /* The conditional form: written after the cut-off is kept. */
    long long now = time(NULL);
    err[0] = '\0';
    assert_int_equal(blob_delete_if_older(f->bs, f->c, id, now - 120, err, sizeof err),
                     BLOB_ENEWER);
    assert_contains(err, "after the cut-off");
    assert_int_equal(blob_stat(f->bs, f->c, id, NULL, err, sizeof err), 0);
    assert_int_equal(blob_delete_if_older(f->bs, f->c, id, now + 120, err, sizeof err), 0);
    assert_int_equal(blob_stat(f->bs, f->c, id, NULL, err, sizeof err), BLOB_ENOTFOUND);
    if (age_blob(f, keep, 2 * 3600)) {
        assert_int_equal(blob_delete_if_older(f->bs, f->c, keep, now - 3600, err, sizeof err), 0);
        assert_int_equal(blob_stat(f->bs, f->c, keep, NULL, err, sizeof err), BLOB_ENOTFOUND);
    }
    assert_no_leftovers(f);
}

static void test_abort(void **state)
{
    struct fx *f = *state;
    char err[512] = "";
    /* 1 MB (several pg chunks) and 6 MB (an s3 spool file). */
    const unsigned long long sizes[] = {MIB, 6 * MIB};
    for (size_t k = 0; k < 2; k++) {
        char want[BLOB_ID_LEN + 1];
        expected_id(41, sizes[k], want);
        struct blob_writer *w = blob_writer_new(f->bs, f->c, err, sizeof err);
        assert_non_null(w);
        unsigned char *buf = malloc(64 * KIB);
        for (unsigned long long off = 0; off < sizes[k]; off += 64 * KIB) {
            gen(41, off, buf, 64 * KIB);
            assert_int_equal(blob_writer_write(w, buf, 64 * KIB), 0);
        }
        free(buf);
        blob_writer_abort(&w);
        assert_null(w);
        blob_writer_abort(&w); /* NULL is fine */
        assert_int_equal(blob_stat(f->bs, f->c, want, NULL, err, sizeof err), BLOB_ENOTFOUND);
        assert_int_equal(count_listed(f, want), 0);
        assert_no_leftovers(f);
    }

    /* A writer that fails (over max_size) leaves nothing either. */
    struct blob_config small = f->cfg;
    small.max_size = 1000;
    struct blob_store *bs = blob_store_open(&small, err, sizeof err);
    assert_non_null(bs);
    unsigned char buf[600];
    gen(42, 0, buf, sizeof buf);
    struct blob_writer *w = blob_writer_new(bs, f->c, err, sizeof err);
    assert_non_null(w);
    assert_int_equal(blob_writer_write(w, buf, sizeof buf), 0);
    assert_string_equal(blob_writer_error(w), "");
    assert_int_equal(blob_writer_write(w, buf, sizeof buf), -1);
    assert_contains(blob_writer_error(w), "larger than the limit of 1000 bytes");
    assert_int_equal(blob_writer_write(w, buf, 1), -1); /* stays failed */
    char id[BLOB_ID_LEN + 1];
    err[0] = '\0';
    assert_int_equal(blob_writer_finish(&w, id, NULL, err, sizeof err), -1);
    assert_null(w);
    assert_contains(err, "larger than the limit");
    /* Exactly the limit is fine; one byte more is not. */
    unsigned char exact[1001];
    gen(43, 0, exact, sizeof exact);
    assert_int_equal(blob_put(bs, f->c, exact, 1000, id, err, sizeof err), 0);
    err[0] = '\0';
    assert_int_equal(blob_put(bs, f->c, exact, 1001, id, err, sizeof err), -1);
    assert_contains(err, "larger than the limit");
    blob_store_close(&bs);
    assert_null(bs);
    assert_no_leftovers(f);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_list_paging(void **state)
{
    struct fx *f = *state;
    enum { N = 25 };
    char ids[N][BLOB_ID_LEN + 1], err[512] = "";
    long long t0 = time(NULL);
    for (int i = 0; i < N; i++) {
        char text[32];
        int n = snprintf(text, sizeof text, "blob number %d", i);
        assert_int_equal(blob_put(f->bs, f->c, text, (size_t)n, ids[i], err, sizeof err), 0);
    }
    qsort(ids, N, sizeof ids[0], cmp_str);

    /* Pages of 10: 10, 10, 5; each strictly after the previous. */
    struct collect col = {0};
    char after[BLOB_ID_LEN + 1] = "";
    int pages[4], np = 0;
    for (;;) {
        int n =
            blob_list(f->bs, f->c, np == 0 ? NULL : after, 10, collect_cb, &col, err, sizeof err);
        if (n < 0)
            fail_msg("blob_list: %s", err);
        pages[np++] = n;
        if (n < 10)
            break;
        snprintf(after, sizeof after, "%s", col.ids[col.n - 1]);
        assert_true(np < 4);
    }
    assert_int_equal(np, 3);
    assert_int_equal(pages[0], 10);
    assert_int_equal(pages[1], 10);
    assert_int_equal(pages[2], 5);
    assert_int_equal(col.n, N);
    for (int i = 0; i < N; i++) {
        assert_string_equal(col.ids[i], ids[i]);
        assert_true(col.when[i] >= t0 - 5 && col.when[i] <= (long long)time(NULL) + 5);
    }
    collect_free(&col);

    /* After the last id: nothing. From "" = from the start. */
    assert_int_equal(blob_list(f->bs, f->c, ids[N - 1], 10, collect_cb, &col, err, sizeof err), 0);
    assert_int_equal(blob_list(f->bs, f->c, "", 3, collect_cb, &col, err, sizeof err), 3);
    assert_string_equal(col.ids[0], ids[0]);
    collect_free(&col);
    /* From an id that is not stored: the ones after it. */
    char mid[BLOB_ID_LEN + 1];
    snprintf(mid, sizeof mid, "%s", ids[12]);
    mid[BLOB_ID_LEN - 1] = mid[BLOB_ID_LEN - 1] == '0' ? '1' : '0';
    int n = blob_list(f->bs, f->c, mid, BLOB_LIST_MAX, collect_cb, &col, err, sizeof err);
    assert_true(n == N - 12 || n == N - 13);
    for (size_t i = 0; i < col.n; i++)
        assert_true(strcmp(col.ids[i], mid) > 0);
    collect_free(&col);
    /* The callback stops early. */
    col.stop_after = 4;
    assert_int_equal(blob_list(f->bs, f->c, NULL, 10, collect_cb, &col, err, sizeof err), 4);
    collect_free(&col);
    /* Bad page sizes and cursors. */
    err[0] = '\0';
    assert_int_equal(blob_list(f->bs, f->c, NULL, 0, collect_cb, &col, err, sizeof err), -1);
    assert_contains(err, "page size");
    assert_int_equal(
        blob_list(f->bs, f->c, NULL, BLOB_LIST_MAX + 1, collect_cb, &col, err, sizeof err), -1);
    assert_int_equal(blob_list(f->bs, f->c, "../x", 10, collect_cb, &col, err, sizeof err), -1);
    assert_int_equal(blob_list(f->bs, f->c, NULL, 10, NULL, NULL, err, sizeof err), -1);
    assert_int_equal(col.n, 0);
}

static void test_invalid_ids(void **state)
{
    struct fx *f = *state;
    char upper[BLOB_ID_LEN + 1], longer[BLOB_ID_LEN + 2], shorter[BLOB_ID_LEN];
    memset(upper, 'A', BLOB_ID_LEN);
    upper[BLOB_ID_LEN] = '\0';
    memset(longer, 'a', BLOB_ID_LEN + 1);
    longer[BLOB_ID_LEN + 1] = '\0';
    memset(shorter, 'a', BLOB_ID_LEN - 1);
    shorter[BLOB_ID_LEN - 1] = '\0';
    const char *bad[] = {
        NULL,
        "",
        "abc",
        upper,
        longer,
        shorter,
        "../../../../etc/passwd/../../../../../../../../../../../../../..",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde/",
        " 123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[512] = "";
        assert_false(blob_id_valid(bad[i]));
        assert_int_equal(blob_stat(f->bs, f->c, bad[i], NULL, err, sizeof err), -1);
        assert_contains(err, "invalid blob id");
        struct blob_reader *r = NULL;
        assert_int_equal(blob_reader_open(f->bs, f->c, bad[i], 0, 1, &r, err, sizeof err), -1);
        assert_null(r);
        assert_int_equal(blob_delete(f->bs, f->c, bad[i], err, sizeof err), -1);
        assert_int_equal(blob_delete_if_older(f->bs, f->c, bad[i], 0, err, sizeof err), -1);
        if (bad[i] != NULL && bad[i][0] != '\0')
            assert_int_equal(blob_list(f->bs, f->c, bad[i], 1, collect_cb, NULL, err, sizeof err),
                             -1);
    }
    assert_true(blob_id_valid(EMPTY_ID));
}

/* Several threads on one store at once, two of them storing the same
 * content (the deduplication race). cmocka's checks are not thread-safe, so
 * the threads report through their struct. */
struct worker {
    struct fx *f;
    PGconn *c;
    unsigned seed;
    char id[BLOB_ID_LEN + 1];
    bool ok;
    char err[512];
};

static void *work(void *arg)
{
    struct worker *k = arg;
    enum { SIZE = 700 * 1024, PIECE = 50000 };
    unsigned char *buf = malloc(PIECE), *got = malloc(PIECE);
    struct blob_writer *w = blob_writer_new(k->f->bs, k->c, k->err, sizeof k->err);
    if (buf == NULL || got == NULL || w == NULL)
        goto done;
    for (size_t off = 0; off < SIZE; off += PIECE) {
        size_t n = SIZE - off < PIECE ? SIZE - off : PIECE;
        gen(k->seed, off, buf, n);
        if (blob_writer_write(w, buf, n) != 0) {
            snprintf(k->err, sizeof k->err, "write: %s", blob_writer_error(w));
            blob_writer_abort(&w);
            goto done;
        }
    }
    if (blob_writer_finish(&w, k->id, NULL, k->err, sizeof k->err) != 0)
        goto done;
    struct blob_reader *r = NULL;
    if (blob_reader_open(k->f->bs, k->c, k->id, 0, UINT64_MAX, &r, k->err, sizeof k->err) != 0)
        goto done;
    size_t pos = 0;
    ssize_t n;
    while ((n = blob_reader_read(r, got, PIECE)) > 0) {
        gen(k->seed, pos, buf, (size_t)n);
        if (memcmp(got, buf, (size_t)n) != 0) {
            snprintf(k->err, sizeof k->err, "wrong bytes at %zu", pos);
            break;
        }
        pos += (size_t)n;
    }
    if (n < 0)
        snprintf(k->err, sizeof k->err, "read: %s", blob_reader_error(r));
    else if (n == 0 && pos != SIZE)
        snprintf(k->err, sizeof k->err, "read %zu bytes", pos);
    else if (n == 0)
        k->ok = true;
    blob_reader_close(&r);
done:
    free(buf);
    free(got);
    return NULL;
}

static void test_concurrent(void **state)
{
    struct fx *f = *state;
    enum { N = 4 };
    struct worker k[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        k[i] = (struct worker){.f = f, .seed = 90 + (unsigned)(i == 3 ? 0 : i)};
        /* pg: a connection per thread, as the node's workers have. */
        k[i].c = strcmp(f->name, "pg") == 0 ? testdb_connect() : NULL;
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_create(&t[i], NULL, work, &k[i]), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < N; i++) {
        if (k[i].c != NULL)
            PQfinish(k[i].c);
        if (!k[i].ok)
            fail_msg("thread %d: %s", i, k[i].err);
    }
    assert_string_equal(k[0].id, k[3].id);
    struct collect col = {0};
    list_all(f, &col);
    assert_int_equal(col.n, 3);
    collect_free(&col);
    assert_no_leftovers(f);
}

/* ---- pg ---- */

static void test_pg_chunks_as_written(void **state)
{
    struct fx *f = *state;
    char err[512] = "";
    struct blob_writer *w = blob_writer_new(f->bs, f->c, err, sizeof err);
    assert_non_null(w);
    assert_int_equal(count(f->c, "SELECT count(*) FROM blob_uploads", NULL), 1);
    unsigned char buf[64 * KIB];
    /* Each full chunk is in the table as soon as it is complete. */
    for (unsigned long long off = 0; off < 4 * C + 10; off += sizeof buf) {
        gen(51, off, buf, sizeof buf);
        assert_int_equal(blob_writer_write(w, buf, sizeof buf), 0);
        long long chunks = count(f->c, "SELECT count(*) FROM blob_chunks", NULL);
        assert_int_equal(chunks, (long long)((off + sizeof buf) / C));
    }
    char id[BLOB_ID_LEN + 1];
    assert_int_equal(blob_writer_finish(&w, id, NULL, err, sizeof err), 0);
    assert_int_equal(count(f->c, "SELECT count(*) FROM blob_chunks", NULL), 5);
    assert_int_equal(count(f->c, "SELECT max(octet_length(data)) FROM blob_chunks", NULL), C);
    assert_int_equal(count(f->c, "SELECT count(*) FROM blob_uploads", NULL), 0);
    assert_int_equal(count(f->c, "SELECT size FROM blobs WHERE id = $1", id), 4 * C + 64 * KIB);
}

static void test_pg_purge_and_damage(void **state)
{
    struct fx *f = *state;
    char err[512] = "";
    unsigned char buf[C];
    gen(61, 0, buf, sizeof buf);

    /* A live upload and an abandoned one. */
    struct blob_writer *live = blob_writer_new(f->bs, f->c, err, sizeof err);
    struct blob_writer *dead = blob_writer_new(f->bs, f->c, err, sizeof err);
    assert_int_equal(blob_writer_write(live, buf, sizeof buf), 0);
    assert_int_equal(blob_writer_write(dead, buf, sizeof buf), 0);
    sql1(f->c,
         "UPDATE blob_uploads SET touched_at = now() - interval '2 hours' "
         "WHERE id = (SELECT max(id) FROM blob_uploads)",
         NULL, NULL);
    assert_int_equal(blob_purge_uploads(f->bs, f->c, 3600, err, sizeof err), 1);
    assert_int_equal(count(f->c, "SELECT count(*) FROM blob_uploads", NULL), 1);
    assert_int_equal(count(f->c, "SELECT count(*) FROM blob_chunks", NULL), 1);
    /* The purged writer learns it at its next chunk, not silently. */
    assert_int_equal(blob_writer_write(dead, buf, sizeof buf), -1);
    assert_contains(blob_writer_error(dead), "purged");
    char id[BLOB_ID_LEN + 1];
    assert_int_equal(blob_writer_finish(&dead, id, NULL, err, sizeof err), -1);
    /* A purged upload that had no further chunk fails at finish. */
    struct blob_writer *w3 = blob_writer_new(f->bs, f->c, err, sizeof err);
    assert_int_equal(blob_writer_write(w3, buf, 10), 0);
    sql1(f->c, "DELETE FROM blob_uploads WHERE id = (SELECT max(id) FROM blob_uploads)", NULL,
         NULL);
    err[0] = '\0';
    assert_int_equal(blob_writer_finish(&w3, id, NULL, err, sizeof err), -1);
    assert_contains(err, "purged");
    /* The live one finishes. */
    assert_int_equal(blob_writer_finish(&live, id, NULL, err, sizeof err), 0);
    expect_range(f, id, 61, C, 0, UINT64_MAX, 1000, NULL);
    assert_no_leftovers(f);
    assert_int_equal(blob_purge_uploads(f->bs, f->c, -1, err, sizeof err), -1);

    /* A chunk lost from under a blob is an error when read, not a short
     * read; a reader of a deleted blob fails the same way. */
    struct blob_reader *r = NULL;
    assert_int_equal(blob_reader_open(f->bs, f->c, id, 0, UINT64_MAX, &r, err, sizeof err), 0);
    sql1(f->c, "DELETE FROM blob_chunks", NULL, NULL);
    assert_int_equal(blob_reader_read(r, buf, 100), -1);
    assert_contains(blob_reader_error(r), "early");
    assert_int_equal(blob_reader_read(r, buf, 100), -1);
    blob_reader_close(&r);

    /* A stored size that disagrees with the content (damage): dedup
     * refuses to vouch for it. */
    sql1(f->c, "UPDATE blobs SET size = 1 WHERE id = $1", id, NULL);
    err[0] = '\0';
    assert_int_equal(blob_put(f->bs, f->c, buf, C, id, err, sizeof err), -1);
    assert_contains(err, "exists with size 1");
    assert_int_equal(PQtransactionStatus(f->c), PQTRANS_IDLE); /* rolled back, usable */
    assert_no_leftovers(f);
}

static void test_pg_connection_rules(void **state)
{
    struct fx *f = *state;
    char err[512] = "";
    /* Writers and deletions commit their own work: not inside the
     * caller's transaction. */
    assert_int_equal(db_begin(f->c), 0);
    assert_null(blob_writer_new(f->bs, f->c, err, sizeof err));
    assert_contains(err, "transaction");
    assert_int_equal(blob_delete(f->bs, f->c, EMPTY_ID, err, sizeof err), -1);
    db_rollback(f->c);
    assert_null(blob_writer_new(f->bs, NULL, err, sizeof err));
    assert_contains(err, "no database connection");
    assert_int_equal(blob_stat(f->bs, NULL, EMPTY_ID, NULL, err, sizeof err), -1);
    assert_int_equal(blob_list(f->bs, NULL, NULL, 1, collect_cb, NULL, err, sizeof err), -1);

    /* After the refusals the connection is idle and works. */
    char id[BLOB_ID_LEN + 1];
    assert_int_equal(blob_put(f->bs, f->c, "x", 1, id, err, sizeof err), 0);
    assert_int_equal(PQtransactionStatus(f->c), PQTRANS_IDLE);
}

/* ---- fs ---- */

static void test_fs_layout(void **state)
{
    struct fx *f = *state;
    char err[512] = "", path[400];
    const char text[] = "on disk";
    char id[BLOB_ID_LEN + 1];
    assert_int_equal(blob_put(f->bs, NULL, text, strlen(text), id, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/%.2s/%.2s/%s", f->root, id, id + 2, id);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, strlen(text));
    assert_int_equal(st.st_mode & 0007, 0); /* never world-readable */

    /* While writing, the content is only a tmp/ file. */
    struct blob_writer *w = blob_writer_new(f->bs, NULL, err, sizeof err);
    assert_int_equal(blob_writer_write(w, "abc", 3), 0);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s/tmp", f->root);
    assert_int_equal(dir_entries(tmp), 1);
    assert_int_equal(blob_writer_finish(&w, id, NULL, err, sizeof err), 0);
    assert_int_equal(dir_entries(tmp), 0);

    /* A damaged copy (wrong size) is replaced by the next writer. */
    snprintf(path, sizeof path, "%s/%.2s/%.2s/%s", f->root, id, id + 2, id);
    assert_int_equal(truncate(path, 1), 0);
    assert_int_equal(blob_put(f->bs, NULL, "abc", 3, id, err, sizeof err), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 3);

    /* Stray files are not blobs. */
    char stray[400];
    snprintf(stray, sizeof stray, "%s/%.2s/%.2s/notes.txt", f->root, id, id + 2);
    FILE *fp = fopen(stray, "w");
    assert_non_null(fp);
    fclose(fp);
    struct collect col = {0};
    list_all(f, &col);
    assert_int_equal(col.n, 2);
    collect_free(&col);
    unlink(stray);

    /* Abandoned uploads go; live ones stay. */
    struct blob_writer *old = blob_writer_new(f->bs, NULL, err, sizeof err);
    struct blob_writer *young = blob_writer_new(f->bs, NULL, err, sizeof err);
    assert_int_equal(blob_writer_write(old, "x", 1), 0);
    DIR *d = opendir(tmp);
    struct dirent *de;
    struct timespec ts[2] = {{time(NULL) - 7200, 0}, {time(NULL) - 7200, 0}};
    int aged = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char p[600];
        snprintf(p, sizeof p, "%s/%s", tmp, de->d_name);
        if (aged == 0 && stat(p, &st) == 0 && st.st_size == 1) {
            assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
            aged++;
        }
    }
    closedir(d);
    assert_int_equal(aged, 1);
    assert_int_equal(blob_purge_uploads(f->bs, NULL, 3600, err, sizeof err), 1);
    assert_int_equal(dir_entries(tmp), 1);
    assert_int_equal(blob_writer_write(young, "y", 1), 0);
    assert_int_equal(blob_writer_finish(&young, id, NULL, err, sizeof err), 0);
    blob_writer_abort(&old);
    assert_no_leftovers(f);
}

static void test_fs_open_errors(void **state)
{
    char err[512] = "";
    struct blob_config cfg = {.backend = "fs", .fs_path = "relative/dir"};
    assert_null(blob_store_open(&cfg, err, sizeof err));
    assert_contains(err, "absolute");
    cfg.fs_path = "/nonexistent/floe/blobs";
    assert_null(blob_store_open(&cfg, err, sizeof err));
    assert_contains(err, "/nonexistent/floe/blobs");
    cfg.fs_path = NULL;
    assert_null(blob_store_open(&cfg, err, sizeof err));
}

/* ---- s3 ---- */

static void test_s3_errors(void **state)
{
    struct fx *f = *state;
    char err[512] = "", id[BLOB_ID_LEN + 1];

    /* A wrong secret: S3's own error code comes through. */
    struct blob_config bad = f->cfg;
    bad.s3_secret_key = "not-the-secret";
    struct blob_store *bs = blob_store_open(&bad, err, sizeof err);
    assert_non_null(bs);
    assert_int_equal(blob_put(bs, NULL, "x", 1, id, err, sizeof err), -1);
    assert_contains(err, "403"); /* a HEAD: no error document */
    struct collect col = {0};
    err[0] = '\0';
    assert_int_equal(blob_list(bs, NULL, NULL, 10, collect_cb, &col, err, sizeof err), -1);
    assert_contains(err, "SignatureDoesNotMatch");
    blob_store_close(&bs);

    /* A bucket that does not exist. */
    bad = f->cfg;
    bad.s3_bucket = "floe-no-such-bucket";
    bs = blob_store_open(&bad, err, sizeof err);
    assert_non_null(bs);
    err[0] = '\0';
    assert_int_equal(blob_put(bs, NULL, "x", 1, id, err, sizeof err), -1);
    assert_contains(err, "NoSuchBucket");
    struct blob_reader *r = NULL;
    assert_int_equal(blob_reader_open(bs, NULL, EMPTY_ID, 0, 1, &r, err, sizeof err), -1);
    assert_contains(err, "NoSuchBucket");
    blob_store_close(&bs);

    /* Nothing listens: a transport error, quickly. */
    bad = f->cfg;
    bad.s3_endpoint = "http://127.0.0.1:1";
    bad.s3_timeout = 2;
    bs = blob_store_open(&bad, err, sizeof err);
    assert_non_null(bs);
    err[0] = '\0';
    assert_int_equal(blob_stat(bs, NULL, EMPTY_ID, NULL, err, sizeof err), -1);
    assert_contains(err, "s3 HEAD");
    blob_store_close(&bs);
}

static void test_s3_part_sizes(void **state)
{
    struct fx *f = *state;
    /* Exactly one part (one PUT), one byte more (multipart with a 1-byte
     * last part), and two full parts. */
    const unsigned long long sizes[] = {P, P + 1, 2 * P};
    for (size_t i = 0; i < 3; i++) {
        char id[BLOB_ID_LEN + 1];
        put_gen(f, 70 + (unsigned)i, sizes[i], 100 * KIB, id, NULL);
        expect_range(f, id, 70 + (unsigned)i, sizes[i], 0, UINT64_MAX, 64 * KIB, NULL);
        expect_range(f, id, 70 + (unsigned)i, sizes[i], sizes[i] - 3, UINT64_MAX, 64, NULL);
    }
}

static void test_s3_resume(void **state)
{
    struct fx *f = *state;
    /* ops/s3-test-server breaks the first download of every object under
     * "resume-test/" after 100 KiB: the reader must resume where it was. */
    char prefix[128], err[512] = "", id[BLOB_ID_LEN + 1];
    snprintf(prefix, sizeof prefix, "%sresume-test/", f->prefix);
    struct blob_config cfg = f->cfg;
    cfg.s3_prefix = prefix;
    struct blob_store *bs = blob_store_open(&cfg, err, sizeof err);
    assert_non_null(bs);
    struct fx g = *f;
    g.bs = bs;
    const unsigned long long size = MIB + 3;
    put_gen(&g, 81, size, 64 * KIB, id, NULL);
    expect_range(&g, id, 81, size, 0, UINT64_MAX, 64 * KIB, NULL);
    /* A ranged download, broken too (a new object: broken once each). */
    char id2[BLOB_ID_LEN + 1];
    put_gen(&g, 82, size, 64 * KIB, id2, NULL);
    expect_range(&g, id2, 82, size, 1000, 500 * KIB, 4093, NULL);
    assert_int_equal(blob_delete(bs, NULL, id, err, sizeof err), 0);
    assert_int_equal(blob_delete(bs, NULL, id2, err, sizeof err), 0);
    blob_store_close(&bs);
}

static void test_s3_open_errors(void **state)
{
    char err[512] = "";
    struct blob_config cfg = {.backend = "s3",
                              .s3_endpoint = "http://127.0.0.1:9000",
                              .s3_bucket = "floe",
                              .s3_access_key = "AK",
                              .s3_secret_key = "SK"};
    struct blob_store *bs = blob_store_open(&cfg, err, sizeof err);
    assert_non_null(bs);
    assert_string_equal(blob_store_backend(bs), "s3");
    blob_store_close(&bs);

    struct blob_config c2 = cfg;
    c2.s3_endpoint = "ftp://host";
    assert_null(blob_store_open(&c2, err, sizeof err));
    assert_contains(err, "https://");
    c2.s3_endpoint = "http://host/path";
    assert_null(blob_store_open(&c2, err, sizeof err));
    c2.s3_endpoint = "http://ho st";
    assert_null(blob_store_open(&c2, err, sizeof err));
    c2.s3_endpoint = NULL;
    assert_null(blob_store_open(&c2, err, sizeof err));
    c2 = cfg;
    c2.s3_bucket = "Bad_Bucket";
    assert_null(blob_store_open(&c2, err, sizeof err));
    assert_contains(err, "bucket");
    c2 = cfg;
    c2.s3_secret_key = "";
    assert_null(blob_store_open(&c2, err, sizeof err));
    c2 = cfg;
    c2.s3_access_key = "AK\r\nX-Evil: 1";
    assert_null(blob_store_open(&c2, err, sizeof err));
    c2 = cfg;
    c2.s3_prefix = "/abs";
    assert_null(blob_store_open(&c2, err, sizeof err));
    c2 = cfg;
    c2.max_size = BLOB_SIZE_MAX_DEFAULT + 1;
    assert_null(blob_store_open(&c2, err, sizeof err));
    c2 = cfg;
    c2.spool_dir = "/nonexistent/spool";
    assert_null(blob_store_open(&c2, err, sizeof err));
    assert_contains(err, "spool");
    c2 = cfg;
    c2.s3_region = "us east";
    assert_null(blob_store_open(&c2, err, sizeof err));

    struct blob_config c3 = {.backend = "tape"};
    assert_null(blob_store_open(&c3, err, sizeof err));
    assert_contains(err, "unknown backend");
    assert_null(blob_store_open(NULL, err, sizeof err));
    struct blob_config c4 = {0}; /* default backend: pg */
    bs = blob_store_open(&c4, err, sizeof err);
    assert_non_null(bs);
    assert_string_equal(blob_store_backend(bs), "pg");
    blob_store_close(&bs);
}

static int setup_all(void **state)
{
    open_pg();
    open_fs();
    open_s3();
    return 0;
}

static int teardown_all(void **state)
{
    close_pg();
    close_fs();
    close_s3();
    return 0;
}

/* A test run on one backend, named after it ("fs: test_ranges"). */
#define ON(b, f)                                                                                   \
    {                                                                                              \
#b ": " #f, f, wipe, NULL, &fx_##b                                                         \
    }
#define SHARED(b)                                                                                  \
    ON(b, test_put_get_small), ON(b, test_empty), ON(b, test_large_streamed), ON(b, test_dedup),   \
        ON(b, test_ranges), ON(b, test_not_found), ON(b, test_delete), ON(b, test_abort),          \
        ON(b, test_list_paging), ON(b, test_invalid_ids), ON(b, test_concurrent)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fs_open_errors),
        cmocka_unit_test(test_s3_open_errors),
        SHARED(pg),
        ON(pg, test_pg_chunks_as_written),
        ON(pg, test_pg_purge_and_damage),
        ON(pg, test_pg_connection_rules),
        SHARED(fs),
        ON(fs, test_fs_layout),
        SHARED(s3),
        ON(s3, test_s3_part_sizes),
        ON(s3, test_s3_resume),
        ON(s3, test_s3_errors),
    };
    return cmocka_run_group_tests_name("blob", tests, setup_all, teardown_all);
}
