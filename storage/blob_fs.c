/* The "fs" blob backend: one file per blob under a root directory, which in
 * a cluster is a mount every node shares.
 *
 * Layout: <root>/ab/cd/<id> where ab and cd are the id's first two pairs of
 * hex digits (65536 directories at most, so no directory grows huge), and
 * <root>/tmp/ for uploads in progress.
 *
 * Writing goes to tmp/<random>.part. At finish the blob either exists (its
 * time stamp is refreshed when stale and the upload is deleted) or the
 * upload is made durable and moved into place: fsync(file), create the
 * directories (fsync'ing each parent that gained one), rename(), then
 * fsync(the directory) so the new name survives a crash. rename() replaces
 * atomically, so readers see either no blob or all of it, and two nodes
 * storing the same id at once both succeed with identical content.
 *
 * Every path is built from a validated id (64 hex digits) and relative to a
 * descriptor of the root, so nothing outside the root can be named.
 * The file's mtime is the blob's written time.
 */
#define BLOB_BACKEND_IMPL
#include "storage/blob.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#define FILE_MODE 0640
#define DIR_MODE 0750
/* "tmp/" + 32 hex digits + ".part" */
#define TMP_NAME_SIZE 48
/* "ab/cd/" + id */
#define REL_PATH_SIZE (6 + BLOB_ID_LEN + 1)

struct fs_store {
    int root; /* O_DIRECTORY descriptor of the root */
    char path[PATH_MAX];
};

struct fs_writer {
    struct fs_store *s;
    int fd;
    char tmp[TMP_NAME_SIZE]; /* relative to the root */
};

struct fs_reader {
    int fd;
    unsigned long long pos;
};

static void rel_path(const char *id, char out[REL_PATH_SIZE])
{
    snprintf(out, REL_PATH_SIZE, "%.2s/%.2s/%s", id, id + 2, id);
}

/* fsync() on a directory relative to the root ("." for the root itself). */
static int sync_dir(struct fs_store *s, const char *rel)
{
    int fd = openat(s->root, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* ---- store ---- */

static int fs_open(const struct blob_config *cfg, void **impl_r, char *err, size_t errlen)
{
    const char *path = cfg->fs_path;
    if (path == NULL || path[0] != '/') {
        blob_set_err(err, errlen, "fs blob store: path must be an absolute directory path");
        return -1;
    }
    if (strnlen(path, PATH_MAX) >= PATH_MAX - REL_PATH_SIZE) {
        blob_set_err(err, errlen, "fs blob store: path is too long");
        return -1;
    }
    struct fs_store *s = calloc(1, sizeof *s);
    if (s == NULL) {
        blob_set_err(err, errlen, "fs blob store: out of memory");
        return -1;
    }
    snprintf(s->path, sizeof s->path, "%s", path);
    s->root = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->root < 0) {
        blob_set_err(err, errlen, "fs blob store: %s: %s", path, strerror(errno));
        free(s);
        return -1;
    }
    if (mkdirat(s->root, "tmp", DIR_MODE) == 0) {
        if (sync_dir(s, ".") != 0) {
            blob_set_err(err, errlen, "fs blob store: %s: fsync: %s", path, strerror(errno));
            goto fail;
        }
    } else if (errno != EEXIST) {
        blob_set_err(err, errlen, "fs blob store: %s/tmp: %s", path, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstatat(s->root, "tmp", &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) {
        blob_set_err(err, errlen, "fs blob store: %s/tmp is not a directory", path);
        goto fail;
    }
    *impl_r = s;
    return 0;
fail:
    close(s->root);
    free(s);
    return -1;
}

static void fs_close(void *impl)
{
    struct fs_store *s = impl;
    close(s->root);
    free(s);
}

/* ---- writing ---- */

static int fs_writer_new(void *impl, PGconn *c, void **w_r, char *err, size_t errlen)
{
    struct fs_store *s = impl;
    struct fs_writer *w = calloc(1, sizeof *w);
    if (w == NULL) {
        blob_set_err(err, errlen, "fs blob writer: out of memory");
        return -1;
    }
    w->s = s;
    unsigned char rnd[16];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        blob_set_err(err, errlen, "fs blob writer: no random bytes");
        free(w);
        return -1;
    }
    static const char digits[] = "0123456789abcdef";
    char hex[33];
    for (size_t i = 0; i < sizeof rnd; i++) {
        hex[2 * i] = digits[rnd[i] >> 4];
        hex[2 * i + 1] = digits[rnd[i] & 15];
    }
    hex[32] = '\0';
    snprintf(w->tmp, sizeof w->tmp, "tmp/%s.part", hex);
    /* O_EXCL: a name clash (or a planted symlink) fails instead of writing
     * somewhere else. */
    w->fd =
        openat(s->root, w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, FILE_MODE);
    if (w->fd < 0) {
        blob_set_err(err, errlen, "fs blob writer: %s/%s: %s", s->path, w->tmp, strerror(errno));
        free(w);
        return -1;
    }
    *w_r = w;
    return 0;
}

static int fs_writer_write(void *wp, const void *data, size_t len, char *err, size_t errlen)
{
    struct fs_writer *w = wp;
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(w->fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            blob_set_err(err, errlen, "fs blob writer: %s/%s: %s", w->s->path, w->tmp,
                         strerror(errno));
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void writer_free(struct fs_writer *w, bool unlink_tmp)
{
    if (w->fd >= 0)
        close(w->fd);
    if (unlink_tmp)
        unlinkat(w->s->root, w->tmp, 0);
    free(w);
}

static void fs_writer_abort(void *wp)
{
    writer_free(wp, true);
}

/* Creates rel (relative to the root) when missing; a created directory is
 * made durable by fsync'ing its parent. */
static int ensure_dir(struct fs_store *s, const char *rel, const char *parent)
{
    if (mkdirat(s->root, rel, DIR_MODE) == 0)
        return sync_dir(s, parent);
    return errno == EEXIST ? 0 : -1;
}

/* Refreshes the written time of an existing blob when stale. Returns 1 when
 * the blob exists (refreshed or fresh), 0 when it does not, -1 on error. */
static int touch_existing(struct fs_store *s, const char *rel, unsigned long long size, char *err,
                          size_t errlen)
{
    struct stat st;
    if (fstatat(s->root, rel, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT)
            return 0;
        blob_set_err(err, errlen, "fs blob store: %s/%s: %s", s->path, rel, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode) || (unsigned long long)st.st_size != size)
        return 0; /* damaged: replace it with the good copy */
    if (st.st_mtime >= time(NULL) - BLOB_REFRESH_INTERVAL)
        return 1;
    if (utimensat(s->root, rel, NULL, AT_SYMLINK_NOFOLLOW) == 0)
        return 1;
    if (errno == ENOENT)
        return 0; /* deleted just now: store ours */
    blob_set_err(err, errlen, "fs blob store: %s/%s: %s", s->path, rel, strerror(errno));
    return -1;
}

static int fs_writer_finish(void *wp, const char *id, unsigned long long size, char *err,
                            size_t errlen)
{
    struct fs_writer *w = wp;
    struct fs_store *s = w->s;
    char rel[REL_PATH_SIZE], d1[3], d2[6];
    rel_path(id, rel);
    snprintf(d1, sizeof d1, "%.2s", id);
    snprintf(d2, sizeof d2, "%.2s/%.2s", id, id + 2);

    int have = touch_existing(s, rel, size, err, errlen);
    if (have != 0) {
        writer_free(w, true);
        return have > 0 ? 0 : -1;
    }
    const char *step = "fsync";
    if (fsync(w->fd) != 0)
        goto fail;
    step = "close";
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) != 0)
        goto fail;
    step = "mkdir";
    if (ensure_dir(s, d1, ".") != 0 || ensure_dir(s, d2, d1) != 0)
        goto fail;
    step = "rename";
    if (renameat(s->root, w->tmp, s->root, rel) != 0)
        goto fail;
    /* The blob is in place; the directory entry must survive a crash before
     * anyone is told it is stored. */
    if (sync_dir(s, d2) != 0) {
        blob_set_err(err, errlen, "fs blob store: %s/%s: fsync: %s", s->path, d2, strerror(errno));
        writer_free(w, false);
        return -1;
    }
    writer_free(w, false);
    return 0;
fail:
    blob_set_err(err, errlen, "fs blob store: %s %s/%s: %s", step, s->path, w->tmp,
                 strerror(errno));
    writer_free(w, true);
    return -1;
}

/* ---- reading ---- */

static int fs_reader_open(void *impl, PGconn *c, const char *id, unsigned long long offset,
                          unsigned long long len, void **r_r, unsigned long long *size_r, char *err,
                          size_t errlen)
{
    struct fs_store *s = impl;
    char rel[REL_PATH_SIZE];
    rel_path(id, rel);
    int fd = openat(s->root, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT) {
            blob_set_err(err, errlen, "blob %s not found", id);
            return BLOB_ENOTFOUND;
        }
        blob_set_err(err, errlen, "fs blob store: %s/%s: %s", s->path, rel, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        blob_set_err(err, errlen, "fs blob store: %s/%s is not a readable file", s->path, rel);
        close(fd);
        return -1;
    }
    if (offset > (unsigned long long)st.st_size) {
        close(fd);
        blob_set_err(err, errlen, "range starts past the end of the blob");
        return BLOB_ERANGE;
    }
    struct fs_reader *r = malloc(sizeof *r);
    if (r == NULL) {
        close(fd);
        blob_set_err(err, errlen, "fs blob reader: out of memory");
        return -1;
    }
    r->fd = fd;
    r->pos = offset;
    *size_r = (unsigned long long)st.st_size;
    *r_r = r;
    return 0;
}

static ssize_t fs_reader_read(void *rp, void *buf, size_t len, char *err, size_t errlen)
{
    struct fs_reader *r = rp;
    if (r->pos > (unsigned long long)INT64_MAX) {
        blob_set_err(err, errlen, "fs blob reader: offset out of range");
        return -1;
    }
    for (;;) {
        ssize_t n = pread(r->fd, buf, len, (off_t)r->pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            blob_set_err(err, errlen, "fs blob reader: %s", strerror(errno));
            return -1;
        }
        r->pos += (unsigned long long)n;
        return n;
    }
}

static void fs_reader_close(void *rp)
{
    struct fs_reader *r = rp;
    close(r->fd);
    free(r);
}

/* ---- other operations ---- */

static int fs_stat(void *impl, PGconn *c, const char *id, unsigned long long *size_r, char *err,
                   size_t errlen)
{
    struct fs_store *s = impl;
    char rel[REL_PATH_SIZE];
    rel_path(id, rel);
    struct stat st;
    if (fstatat(s->root, rel, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) {
            blob_set_err(err, errlen, "blob %s not found", id);
            return BLOB_ENOTFOUND;
        }
        blob_set_err(err, errlen, "fs blob store: %s/%s: %s", s->path, rel, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        blob_set_err(err, errlen, "fs blob store: %s/%s is not a file", s->path, rel);
        return -1;
    }
    *size_r = (unsigned long long)st.st_size;
    return 0;
}

static int fs_del(void *impl, PGconn *c, const char *id, const long long *before, char *err,
                  size_t errlen)
{
    struct fs_store *s = impl;
    char rel[REL_PATH_SIZE];
    rel_path(id, rel);
    if (before != NULL) {
        struct stat st;
        if (fstatat(s->root, rel, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT) {
                blob_set_err(err, errlen, "blob %s not found", id);
                return BLOB_ENOTFOUND;
            }
            blob_set_err(err, errlen, "fs blob store: %s/%s: %s", s->path, rel, strerror(errno));
            return -1;
        }
        if ((long long)st.st_mtime >= *before) {
            blob_set_err(err, errlen, "blob %s was written after the cut-off", id);
            return BLOB_ENEWER;
        }
    }
    if (unlinkat(s->root, rel, 0) != 0) {
        if (errno == ENOENT) {
            blob_set_err(err, errlen, "blob %s not found", id);
            return BLOB_ENOTFOUND;
        }
        blob_set_err(err, errlen, "fs blob store: %s/%s: %s", s->path, rel, strerror(errno));
        return -1;
    }
    /* Not fsync'ed: a deletion lost in a crash only delays collection. */
    return 0;
}

/* ---- listing ---- */

struct id_list {
    char (*ids)[BLOB_ID_LEN + 1];
    size_t n, cap;
};

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Keeps the `keep` smallest ids: sorted and cut. */
static void trim(struct id_list *l, size_t keep)
{
    if (l->n > 1)
        qsort(l->ids, l->n, sizeof l->ids[0], cmp_id);
    if (l->n > keep)
        l->n = keep;
}

/* Collects the ids in directory rel that sort after `after`, keeping at most
 * `keep` of the smallest (memory stays O(keep) however full the directory). */
static int collect(struct fs_store *s, const char *rel, const char *after, size_t keep,
                   struct id_list *l, char *err, size_t errlen)
{
    l->n = 0;
    int fd = openat(s->root, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        blob_set_err(err, errlen, "fs blob store: %s/%s: %s", s->path, rel, strerror(errno));
        return -1;
    }
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        blob_set_err(err, errlen, "fs blob store: %s/%s: %s", s->path, rel, strerror(errno));
        close(fd);
        return -1;
    }
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        /* Only names that are ids of this directory (ignores stray files). */
        if (!blob_id_valid(de->d_name) || strncmp(de->d_name, rel, 2) != 0 ||
            strncmp(de->d_name + 2, rel + 3, 2) != 0)
            continue;
        if (after != NULL && strcmp(de->d_name, after) <= 0)
            continue;
        if (l->n == l->cap) {
            trim(l, keep);
            if (l->n == l->cap) { /* first growth: cap is 0 or too small */
                size_t cap = l->cap ? l->cap * 2 : 2 * keep + 16;
                void *p = realloc(l->ids, cap * sizeof l->ids[0]);
                if (p == NULL) {
                    closedir(d);
                    blob_set_err(err, errlen, "fs blob list: out of memory");
                    return -1;
                }
                l->ids = p;
                l->cap = cap;
            }
        }
        memcpy(l->ids[l->n++], de->d_name, BLOB_ID_LEN + 1);
        errno = 0;
    }
    int e = errno;
    closedir(d);
    if (e != 0) {
        blob_set_err(err, errlen, "fs blob store: %s/%s: %s", s->path, rel, strerror(e));
        return -1;
    }
    trim(l, keep);
    return 0;
}

/* Walks ab/cd directories in order from the one holding after_id. The
 * directory names are computed (00..ff), not read, so the order is the id
 * order by construction. */
static int fs_list(void *impl, PGconn *c, const char *after_id, size_t max, blob_list_cb cb,
                   void *ctx, char *err, size_t errlen)
{
    struct fs_store *s = impl;
    static const char digits[] = "0123456789abcdef";
    unsigned start = 0;
    if (after_id != NULL) {
        /* The first four hex digits of after_id: its ab/cd directory. */
        start = 0;
        for (int i = 0; i < 4; i++) {
            const char *p = strchr(digits, after_id[i]);
            start = start * 16 + (unsigned)(p - digits);
        }
    }
    struct id_list l = {0};
    int given = 0;
    for (unsigned top = start >> 8; top < 256 && (size_t)given < max; top++) {
        char d1[3] = {digits[top >> 4], digits[top & 15], '\0'};
        struct stat st;
        if (fstatat(s->root, d1, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT)
                continue;
            blob_set_err(err, errlen, "fs blob store: %s/%s: %s", s->path, d1, strerror(errno));
            given = -1;
            break;
        }
        unsigned first = (top == (start >> 8)) ? (start & 255) : 0;
        for (unsigned sub = first; sub < 256 && given >= 0 && (size_t)given < max; sub++) {
            char rel[6] = {d1[0], d1[1], '/', digits[sub >> 4], digits[sub & 15], '\0'};
            const char *after = (after_id != NULL && top * 256 + sub == start) ? after_id : NULL;
            if (collect(s, rel, after, max - (size_t)given, &l, err, errlen) != 0) {
                given = -1;
                break;
            }
            for (size_t i = 0; i < l.n; i++) {
                char path[REL_PATH_SIZE];
                rel_path(l.ids[i], path);
                long long when = 0;
                if (fstatat(s->root, path, &st, AT_SYMLINK_NOFOLLOW) == 0)
                    when = (long long)st.st_mtime;
                else if (errno == ENOENT)
                    continue; /* deleted meanwhile */
                given++;
                if (cb(l.ids[i], when, ctx) != 0) {
                    free(l.ids);
                    return given;
                }
            }
        }
        if (given < 0)
            break;
    }
    free(l.ids);
    return given;
}

/* ---- purge ---- */

static int fs_purge(void *impl, PGconn *c, long long older_than_s, char *err, size_t errlen)
{
    struct fs_store *s = impl;
    int fd = openat(s->root, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        blob_set_err(err, errlen, "fs blob store: %s/tmp: %s", s->path, strerror(errno));
        return -1;
    }
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        blob_set_err(err, errlen, "fs blob store: %s/tmp: %s", s->path, strerror(errno));
        close(fd);
        return -1;
    }
    time_t cutoff = time(NULL) - (time_t)older_than_s;
    int removed = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n < 6 || strcmp(de->d_name + n - 5, ".part") != 0)
            continue;
        struct stat st;
        /* mtime moves with every write, so only abandoned uploads are old. */
        if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            st.st_mtime < cutoff && unlinkat(fd, de->d_name, 0) == 0 && removed < INT_MAX)
            removed++;
        errno = 0;
    }
    int e = errno;
    closedir(d);
    if (e != 0) {
        blob_set_err(err, errlen, "fs blob store: %s/tmp: %s", s->path, strerror(e));
        return -1;
    }
    return removed;
}

const struct blob_backend blob_backend_fs = {
    .name = "fs",
    .open = fs_open,
    .close = fs_close,
    .writer_new = fs_writer_new,
    .writer_write = fs_writer_write,
    .writer_finish = fs_writer_finish,
    .writer_abort = fs_writer_abort,
    .reader_open = fs_reader_open,
    .reader_read = fs_reader_read,
    .reader_close = fs_reader_close,
    .stat = fs_stat,
    .del = fs_del,
    .list = fs_list,
    .purge = fs_purge,
};
