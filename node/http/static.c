/* Static files from a document root (the root of a virtual host or of the
 * service, docs/CONFIG.md): GET and HEAD, conditional requests on the file's
 * modification time and a validator made of its size and time (RFC 9110
 * §13.1.1, §13.1.3), index.html for directories.
 *
 * What is served: regular files below the root, reached without following a
 * symbolic link in the last component; no segment may start with a dot (hidden
 * files, and ".." which the request reader already refuses) except
 * ".well-known" (RFC 8615). Small files are read whole and answered at once;
 * larger ones stream in pieces as the client takes them (http_write's
 * backpressure), so a slow reader holds one piece of memory, not the file.
 * Reads are plain blocking reads on the I/O thread: fine for the page cache,
 * which is where small static assets live; a DAV store does not come here. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "node/http/http_internal.h"

#define STATIC_WHOLE (256 * 1024) /* files up to this size are answered in one piece */
#define STATIC_PIECE (64 * 1024)

static const char *content_type(const char *path)
{
    static const char *const types[][2] = {
        {"html", "text/html; charset=utf-8"},
        {"htm", "text/html; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"json", "application/json"},
        {"xml", "application/xml"},
        {"txt", "text/plain; charset=utf-8"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},
        {"svg", "image/svg+xml"},
        {"ico", "image/vnd.microsoft.icon"},
        {"pdf", "application/pdf"},
        {"wasm", "application/wasm"},
        {"woff2", "font/woff2"},
        {"ics", "text/calendar; charset=utf-8"},
        {"vcf", "text/vcard; charset=utf-8"},
    };
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (dot && (!slash || dot > slash))
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
            if (!strcasecmp(dot + 1, types[i][0]))
                return types[i][1];
    return "application/octet-stream";
}

static bool hidden(const char *path)
{
    for (const char *seg = path; seg; seg = strchr(seg + 1, '/'))
        if (seg[1] == '.' && strncmp(seg + 1, ".well-known", 11) != 0)
            return true;
    return false;
}

struct piece_job {
    int fd;
    long long left;
    struct http_exchange *x;
};

static void finish(struct piece_job *j)
{
    close(j->fd);
    http_end(j->x);
    free(j);
}

/* Writes pieces until the output is full, then waits for the drain callback. */
static void pump(struct http_exchange *x, void *arg)
{
    struct piece_job *j = arg;
    char *buf = malloc(STATIC_PIECE);
    while (buf && j->left > 0 && !http_gone(x)) {
        ssize_t n = read(j->fd, buf, STATIC_PIECE);
        if (n <= 0)
            break; /* the file shrank: the short body resets / closes */
        j->left -= n;
        int r = http_write(x, buf, (size_t)n);
        if (r < 0)
            break;
        if (r == 1 && j->left > 0) {
            free(buf);
            return; /* pump runs again when the client has taken enough */
        }
    }
    free(buf);
    finish(j);
}

/* RFC 9110 §13.1.3: If-Modified-Since only for GET/HEAD, ignored when unparsable */
static bool not_modified(struct http_exchange *x, const struct stat *st, const char *etag)
{
    const char *inm = http_header(x, "If-None-Match");
    if (inm) /* §13.1.2: when present, If-None-Match decides */
        return strstr(inm, etag) != NULL || !strcmp(inm, "*");
    const char *ims = http_header(x, "If-Modified-Since");
    if (!ims)
        return false;
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(ims, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end)
        return false;
    return st->st_mtime <= timegm(&tm);
}

void http_static_serve(struct http_exchange *x, const char *root)
{
    const struct http_request *req = http_request(x);
    bool head = !strcmp(req->method, "HEAD");
    if (strcmp(req->method, "GET") && !head) {
        http_respond(x, 405, "text/plain; charset=utf-8", "405 Method Not Allowed\n", 23,
                     "Allow: GET, HEAD\r\n");
        return;
    }
    if (hidden(req->path)) {
        http_respond_status(x, 404);
        return;
    }
    char full[PATH_MAX];
    size_t pl = strlen(req->path);
    bool dir = pl && req->path[pl - 1] == '/';
    int n = snprintf(full, sizeof(full), "%s%s%s", root, req->path, dir ? "index.html" : "");
    if (n < 0 || (size_t)n >= sizeof(full)) {
        http_respond_status(x, 404);
        return;
    }
    int fd = open(full, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        http_respond_status(x, errno == EACCES ? 403 : 404);
        return;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))) {
        close(fd);
        http_respond_status(x, 404);
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        /* a directory named without its slash: send the client to the slash form */
        close(fd);
        char loc[PATH_MAX + 8];
        if (snprintf(loc, sizeof(loc), "%s/", req->path) >= (int)sizeof(loc) ||
            strpbrk(loc, "\r\n")) {
            http_respond_status(x, 404);
            return;
        }
        http_redirect(x, 301, loc);
        return;
    }
    char etag[64], lm[64], hdrs[200];
    struct tm tm;
    gmtime_r(&st.st_mtime, &tm);
    strftime(lm, sizeof(lm), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    snprintf(etag, sizeof(etag), "\"%llx-%llx\"", (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtim.tv_sec * 1000000000ull +
                 (unsigned long long)st.st_mtim.tv_nsec);
    snprintf(hdrs, sizeof(hdrs), "Last-Modified: %s\r\nETag: %s\r\n", lm, etag);
    if (not_modified(x, &st, etag)) {
        close(fd);
        http_respond(x, 304, NULL, NULL, 0, hdrs);
        return;
    }
    const char *ctype = content_type(full);
    if (head || st.st_size == 0) {
        close(fd);
        http_respond_start(x, 200, ctype, (long long)st.st_size, hdrs);
        http_end(x);
        return;
    }
    if (st.st_size <= STATIC_WHOLE) {
        char *buf = malloc((size_t)st.st_size);
        ssize_t got = buf ? read(fd, buf, (size_t)st.st_size) : -1;
        close(fd);
        if (got != (ssize_t)st.st_size) {
            free(buf);
            http_respond_status(x, 500);
            return;
        }
        http_respond(x, 200, ctype, buf, (size_t)got, hdrs);
        free(buf);
        return;
    }
    struct piece_job *j = malloc(sizeof(*j));
    if (!j) {
        close(fd);
        http_respond_status(x, 503);
        return;
    }
    *j = (struct piece_job){fd, (long long)st.st_size, x};
    if (http_respond_start(x, 200, ctype, (long long)st.st_size, hdrs) < 0) {
        finish(j);
        return;
    }
    http_on_drain(x, pump, j);
    pump(x, j);
}
