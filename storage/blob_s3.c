/* The "s3" blob backend: one object <prefix><id> per blob in an
 * S3-compatible bucket (AWS S3, MinIO, Ceph RGW, ...), over libcurl, with
 * requests signed by storage/sigv4.c.
 *
 * Writing. The id is the SHA-256 of the whole content, known only at the
 * end, and S3 cannot rename. Two ways were possible: upload to a temporary
 * key while the content arrives and copy it server-side to its name at the
 * end, or keep the content locally until the id is known and upload once to
 * the final key. This backend does the second:
 *  - content up to one part (BLOB_S3_PART_SIZE, 5 MiB) stays in memory and
 *    goes up in one PUT; larger content moves to an unnamed spool file
 *    (O_TMPFILE, or a file unlinked at once) and goes up as a multipart
 *    upload, one 5 MiB part in memory at a time;
 *  - so memory stays at one part per writer, and nothing touches the bucket
 *    before the id is known: a blob that exists already (deduplication,
 *    checked with HEAD) is never uploaded at all, saving the transfer;
 *  - the final key is written once, by PUT or by CompleteMultipartUpload,
 *    both atomic, so a reader never sees a partial object; a temporary key
 *    would have cost a server-side copy of every blob (limited to 5 GiB in
 *    one request), a second write of the data, and orphan keys after crashes;
 *  - every request body is signed with its real SHA-256 (for a single PUT
 *    that is the blob id itself), so the server rejects bytes damaged on the
 *    way; parts read back from the spool are hashed again and must add up to
 *    the id before the upload is completed.
 * The cost is local disk for blobs above 5 MiB while they are written, and
 * an upload that starts only at finish.
 *
 * Refreshing: a writer that finds its blob present and its Last-Modified
 * older than BLOB_REFRESH_INTERVAL copies the object onto itself
 * (x-amz-metadata-directive: REPLACE), which S3 allows and which sets a new
 * Last-Modified: the garbage collector's clock (storage/blob.h).
 *
 * Reading streams one GET (with a Range header for ranges) through a
 * multi handle: the write callback takes what fits in a 64 KiB buffer and
 * pauses the transfer otherwise, so a slow consumer holds back the socket
 * instead of filling memory. A connection that breaks mid-way is resumed
 * with a new ranged GET from the current position (the content of a key
 * never changes). Connections are kept in a small per-store pool for reuse.
 *
 * Errors: S3's XML <Error><Code> and <Message> become the error text.
 * The XML read here (errors, InitiateMultipartUpload, ListObjectsV2) is a
 * handful of flat elements; a few lines of tag scanning read them without
 * linking an XML library into the storage layer.
 */
#define BLOB_BACKEND_IMPL
#include "storage/blob.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "storage/sigv4.h"

#define S3_PREFIX_MAX 200
#define S3_KEY_SIZE (S3_PREFIX_MAX + BLOB_ID_LEN + 1)
#define S3_HOST_MAX 255
#define S3_URL_SIZE 2048
/* Kept of a response body: error documents, list pages (1000 keys of ~300
 * bytes), InitiateMultipartUpload and CopyObject results. */
#define S3_RESP_MAX (1024 * 1024)
/* Reader buffer: one curl delivery (CURLOPT_BUFFERSIZE). */
#define S3_READ_BUF (64 * 1024)
/* S3 allows 10000 parts; 5 GiB (the size limit here) needs 1024. */
#define S3_MAX_PARTS 10000
/* Idle connections kept per store. */
#define S3_POOL_MAX 16
/* Times a broken download is resumed before the reader fails. */
#define S3_RESUMES 3
/* List pages fetched in one blob_list() call while skipping foreign keys. */
#define S3_LIST_PAGES 100
#define S3_ETAG_SIZE 128

struct s3_conn {
    CURLM *multi; /* owns the connection cache */
    CURL *easy;
    struct s3_conn *next;
};

struct s3_store {
    bool https;
    char hostport[S3_HOST_MAX + 1]; /* as in the endpoint, port included */
    char bucket[64];
    char prefix[S3_PREFIX_MAX + 1];
    char region[64];
    char access_key[257];
    char secret_key[257];
    bool path_style;
    long timeout;
    char spool_dir[PATH_MAX];
    pthread_mutex_t lock; /* guards pool */
    struct s3_conn *pool;
    int pooled;
};

/* One response: status, the headers used, and (some of) the body. */
struct s3_resp {
    long status;
    bool headers_done;
    bool has_length;
    unsigned long long content_length;
    char etag[S3_ETAG_SIZE];
    char last_modified[64];
    char content_range[96];
    char *body;
    size_t body_len, body_cap, body_max;
    bool body_overflow;
};

/* One request. */
struct s3_req {
    const char *method; /* GET HEAD PUT POST DELETE */
    const char *key;    /* full object key; NULL = the bucket */
    struct sigv4_param query[6];
    size_t nquery;
    struct sigv4_param hdr[4]; /* signed, besides host and x-amz-* */
    size_t nhdr;
    const void *body; /* PUT/POST */
    size_t body_len;
    const char *body_sha256; /* NULL: computed here */
};

struct body_src {
    const unsigned char *p;
    size_t len, off;
};

/* A prepared transfer on a pooled connection. */
struct s3_xfer {
    struct s3_store *s;
    struct s3_conn *conn;
    struct curl_slist *hdrs;
    struct s3_resp resp;
    struct body_src src;
    char errbuf[CURL_ERROR_SIZE];
    char what[S3_KEY_SIZE + 16]; /* "GET key", for messages */
    bool added, done;
    CURLcode result;
};

struct s3_writer {
    struct s3_store *s;
    unsigned char *buf; /* grows to BLOB_S3_PART_SIZE */
    size_t fill, cap;
    int spool;                  /* -1: not spilled */
    unsigned long long spooled; /* bytes in the spool */
};

struct s3_reader {
    struct s3_store *s;
    char key[S3_KEY_SIZE];
    unsigned long long pos, end; /* next byte to return; end of the range */
    struct s3_xfer *x;           /* the GET in flight; NULL when none */
    unsigned char *buf;
    size_t buf_cap, buf_off, buf_len;
    bool paused;
    int resumes;
};

/* ---- small helpers ---- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static bool ascii_ieq_prefix(const char *s, size_t n, const char *prefix)
{
    size_t pl = strlen(prefix);
    return n >= pl && strncasecmp(s, prefix, pl) == 0;
}

static void copy_trimmed(char *dst, size_t cap, const char *s, size_t n)
{
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* Parses "Sun, 06 Nov 1994 08:49:37 GMT" (RFC 9110 §5.6.7 IMF-fixdate).
 * Returns the time, or -1. Month names are matched here rather than with
 * strptime(), which depends on the locale. */
static long long parse_http_date(const char *s)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    char mon[4];
    int day, year, h, m, sec;
    if (sscanf(s, "%*3s, %2d %3s %4d %2d:%2d:%2d GMT", &day, mon, &year, &h, &m, &sec) != 6)
        return -1;
    const char *p = strstr(months, mon);
    if (p == NULL || (p - months) % 3 != 0)
        return -1;
    struct tm tm = {.tm_year = year - 1900,
                    .tm_mon = (int)((p - months) / 3),
                    .tm_mday = day,
                    .tm_hour = h,
                    .tm_min = m,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? -1 : (long long)t;
}

/* Parses "2009-10-12T17:50:30.000Z" (ListObjectsV2 LastModified). */
static long long parse_iso_date(const char *s)
{
    int y, mo, d, h, mi, se;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &se) != 6)
        return -1;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = se};
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? -1 : (long long)t;
}

/* ---- XML: just enough for S3's flat documents ---- */

/* Decodes the five predefined entities and numeric references (ASCII
 * range; others are refused). Returns 0, or -1 when out is too small or the
 * text is malformed. */
static int xml_unescape(const char *s, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '&') {
            const char *semi = memchr(s + i, ';', n - i);
            if (semi == NULL || semi - (s + i) > 8)
                return -1;
            size_t el = (size_t)(semi - (s + i)) + 1;
            if (el == 5 && memcmp(s + i, "&amp;", 5) == 0)
                ch = '&';
            else if (el == 4 && memcmp(s + i, "&lt;", 4) == 0)
                ch = '<';
            else if (el == 4 && memcmp(s + i, "&gt;", 4) == 0)
                ch = '>';
            else if (el == 6 && memcmp(s + i, "&quot;", 6) == 0)
                ch = '"';
            else if (el == 6 && memcmp(s + i, "&apos;", 6) == 0)
                ch = '\'';
            else if (el >= 4 && s[i + 1] == '#') {
                char num[8];
                memcpy(num, s + i + 2, el - 3);
                num[el - 3] = '\0';
                char *endp;
                long v = (num[0] == 'x') ? strtol(num + 1, &endp, 16) : strtol(num, &endp, 10);
                if (*endp != '\0' || v <= 0 || v > 127)
                    return -1;
                ch = (char)v;
            } else
                return -1;
            i += el - 1;
        }
        if (o + 1 >= outlen)
            return -1;
        out[o++] = ch;
    }
    out[o] = '\0';
    return 0;
}

/* Finds <tag>text</tag> in [s, s+n) and writes the decoded text to out.
 * Returns 1 found, 0 absent, -1 malformed or too long. *after_r (may be
 * NULL) receives the position past the closing tag. */
static int xml_get(const char *s, size_t n, const char *tag, char *out, size_t outlen,
                   const char **after_r)
{
    char open[48], close[48];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *b = memmem(s, n, open, strlen(open));
    if (b == NULL)
        return 0;
    b += strlen(open);
    const char *e = memmem(b, n - (size_t)(b - s), close, strlen(close));
    if (e == NULL)
        return -1;
    if (after_r != NULL)
        *after_r = e + strlen(close);
    return xml_unescape(b, (size_t)(e - b), out, outlen) == 0 ? 1 : -1;
}

/* Appends s to a growing buffer, XML-escaped when escape is set. */
static int buf_add(char **buf, size_t *len, size_t *cap, const char *s, bool escape)
{
    for (; *s; s++) {
        char one[2] = {*s, '\0'};
        const char *rep = one;
        if (escape && *s == '&')
            rep = "&amp;";
        else if (escape && *s == '<')
            rep = "&lt;";
        else if (escape && *s == '>')
            rep = "&gt;";
        size_t rl = strlen(rep);
        if (*len + rl + 1 > *cap) {
            size_t nc = (*cap ? *cap * 2 : 4096);
            while (nc < *len + rl + 1)
                nc *= 2;
            char *p = realloc(*buf, nc);
            if (p == NULL)
                return -1;
            *buf = p;
            *cap = nc;
        }
        memcpy(*buf + *len, rep, rl);
        *len += rl;
        (*buf)[*len] = '\0';
    }
    return 0;
}

/* ---- errors ---- */

/* "s3 GET key: 403 AccessDenied: Access Denied" from a failed response. */
static void set_http_err(char *err, size_t errlen, const struct s3_xfer *x)
{
    char code[128] = "", msg[256] = "";
    if (x->resp.body != NULL) {
        xml_get(x->resp.body, x->resp.body_len, "Code", code, sizeof code, NULL);
        xml_get(x->resp.body, x->resp.body_len, "Message", msg, sizeof msg, NULL);
    }
    if (code[0] != '\0')
        blob_set_err(err, errlen, "s3 %s: HTTP %ld %s%s%s", x->what, x->resp.status, code,
                     msg[0] ? ": " : "", msg);
    else if (x->resp.status == 403)
        blob_set_err(err, errlen, "s3 %s: HTTP 403 (access denied: check the keys and region)",
                     x->what);
    else
        blob_set_err(err, errlen, "s3 %s: HTTP %ld", x->what, x->resp.status);
}

static void set_curl_err(char *err, size_t errlen, const struct s3_xfer *x)
{
    if (x->resp.body_overflow)
        blob_set_err(err, errlen, "s3 %s: response larger than %d bytes", x->what, S3_RESP_MAX);
    else
        blob_set_err(err, errlen, "s3 %s: %s%s%s", x->what, curl_easy_strerror(x->result),
                     x->errbuf[0] ? ": " : "", x->errbuf);
}

/* A 2xx that carries an <Error> document (CopyObject and
 * CompleteMultipartUpload may fail after answering 200). */
static bool body_has_error(const struct s3_xfer *x)
{
    return x->resp.body != NULL && memmem(x->resp.body, x->resp.body_len, "<Error>", 7) != NULL;
}

/* ---- connections ---- */

static struct s3_conn *conn_get(struct s3_store *s)
{
    pthread_mutex_lock(&s->lock);
    struct s3_conn *k = s->pool;
    if (k != NULL) {
        s->pool = k->next;
        s->pooled--;
    }
    pthread_mutex_unlock(&s->lock);
    if (k != NULL)
        return k;
    k = calloc(1, sizeof *k);
    if (k == NULL)
        return NULL;
    k->multi = curl_multi_init();
    k->easy = curl_easy_init();
    if (k->multi == NULL || k->easy == NULL) {
        curl_multi_cleanup(k->multi);
        curl_easy_cleanup(k->easy);
        free(k);
        return NULL;
    }
    return k;
}

static void conn_free(struct s3_conn *k)
{
    curl_easy_cleanup(k->easy);
    curl_multi_cleanup(k->multi);
    free(k);
}

static void conn_put(struct s3_store *s, struct s3_conn *k)
{
    pthread_mutex_lock(&s->lock);
    if (s->pooled < S3_POOL_MAX) {
        k->next = s->pool;
        s->pool = k;
        s->pooled++;
        k = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    if (k != NULL)
        conn_free(k);
}

/* ---- transfers ---- */

static size_t on_header(char *line, size_t size, size_t n, void *ud)
{
    struct s3_resp *r = ud;
    size_t len = size * n;
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        /* A new response (after 100 Continue, or a new transfer). */
        const char *sp = memchr(line, ' ', len);
        r->status = sp != NULL ? strtol(sp + 1, NULL, 10) : 0;
        r->headers_done = false;
        r->has_length = false;
        r->etag[0] = r->last_modified[0] = r->content_range[0] = '\0';
    } else if (len <= 2 && (line[0] == '\r' || line[0] == '\n')) {
        if (r->status >= 200)
            r->headers_done = true;
    } else if (ascii_ieq_prefix(line, len, "content-length:")) {
        char v[32];
        copy_trimmed(v, sizeof v, line + 15, len - 15);
        char *end;
        errno = 0;
        unsigned long long cl = strtoull(v, &end, 10);
        r->has_length = (errno == 0 && end != v && *end == '\0');
        r->content_length = cl;
    } else if (ascii_ieq_prefix(line, len, "etag:")) {
        copy_trimmed(r->etag, sizeof r->etag, line + 5, len - 5);
    } else if (ascii_ieq_prefix(line, len, "last-modified:")) {
        copy_trimmed(r->last_modified, sizeof r->last_modified, line + 14, len - 14);
    } else if (ascii_ieq_prefix(line, len, "content-range:")) {
        copy_trimmed(r->content_range, sizeof r->content_range, line + 14, len - 14);
    }
    return len;
}

/* Keeps up to body_max bytes of the body; more fails the transfer. */
static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    struct s3_resp *r = ud;
    size_t len = size * n;
    if (r->body_len + len > r->body_max) {
        r->body_overflow = true;
        return 0;
    }
    if (r->body_len + len + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 4096;
        while (cap < r->body_len + len + 1)
            cap *= 2;
        char *p = realloc(r->body, cap);
        if (p == NULL)
            return 0;
        r->body = p;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return len;
}

static size_t on_read(char *out, size_t size, size_t n, void *ud)
{
    struct body_src *b = ud;
    size_t want = size * n, left = b->len - b->off;
    if (want > left)
        want = left;
    memcpy(out, b->p + b->off, want);
    b->off += want;
    return want;
}

static void xfer_free(struct s3_xfer *x)
{
    if (x == NULL)
        return;
    if (x->conn != NULL) {
        if (x->added)
            curl_multi_remove_handle(x->conn->multi, x->conn->easy);
        /* An unfinished transfer's connection cannot be reused; curl closes
         * it when the handle is removed, and the handles stay reusable. */
        conn_put(x->s, x->conn);
    }
    curl_slist_free_all(x->hdrs);
    free(x->resp.body);
    free(x);
}

/* Builds the URL, signs, and starts the request on a pooled connection.
 * The response body goes to on_body (kept up to S3_RESP_MAX) unless the
 * caller replaces CURLOPT_WRITEFUNCTION before the first drive. */
static struct s3_xfer *xfer_start(struct s3_store *s, const struct s3_req *q, char *err,
                                  size_t errlen)
{
    struct s3_xfer *x = calloc(1, sizeof *x);
    if (x == NULL) {
        blob_set_err(err, errlen, "s3: out of memory");
        return NULL;
    }
    x->s = s;
    x->resp.body_max = S3_RESP_MAX;
    snprintf(x->what, sizeof x->what, "%s %s", q->method, q->key ? q->key : s->bucket);

    /* Host and path (path-style: /bucket/key; virtual-host: bucket.host/key). */
    char host[S3_HOST_MAX + 70], path[1024], enc[3 * S3_KEY_SIZE + 1];
    if (s->path_style)
        snprintf(host, sizeof host, "%s", s->hostport);
    else
        snprintf(host, sizeof host, "%s.%s", s->bucket, s->hostport);
    enc[0] = '\0';
    if (q->key != NULL && sigv4_uri_encode(q->key, strlen(q->key), false, enc, sizeof enc) < 0) {
        blob_set_err(err, errlen, "s3: key too long");
        goto fail;
    }
    int pl;
    if (s->path_style)
        pl = q->key ? snprintf(path, sizeof path, "/%s/%s", s->bucket, enc)
                    : snprintf(path, sizeof path, "/%s", s->bucket);
    else
        pl = snprintf(path, sizeof path, "/%s", enc);
    if (pl < 0 || (size_t)pl >= sizeof path) {
        blob_set_err(err, errlen, "s3: path too long");
        goto fail;
    }
    char query[S3_URL_SIZE];
    if (sigv4_canonical_query(q->query, q->nquery, query, sizeof query) < 0) {
        blob_set_err(err, errlen, "s3: query too long");
        goto fail;
    }
    char url[S3_URL_SIZE + 1024 + S3_HOST_MAX + 80];
    snprintf(url, sizeof url, "%s://%s%s%s%s", s->https ? "https" : "http", host, path,
             query[0] ? "?" : "", query);

    /* Signature. */
    char payload[SIGV4_HEX_LEN + 1], date[SIGV4_DATE_SIZE];
    if (q->body_sha256 != NULL)
        snprintf(payload, sizeof payload, "%s", q->body_sha256);
    else
        sigv4_sha256_hex(q->body ? q->body : "", q->body ? q->body_len : 0, payload);
    if (sigv4_amz_date(time(NULL), date) != 0) {
        blob_set_err(err, errlen, "s3: clock out of range");
        goto fail;
    }
    struct sigv4_param sh[3 + 4] = {
        {"host", host}, {"x-amz-content-sha256", payload}, {"x-amz-date", date}};
    size_t nsh = 3;
    for (size_t i = 0; i < q->nhdr; i++)
        sh[nsh++] = q->hdr[i];
    struct sigv4_request sreq = {q->method, path, q->query, q->nquery, sh, nsh, payload};
    struct sigv4_credentials cred = {s->access_key, s->secret_key, s->region, "s3"};
    char auth[1024];
    if (sigv4_authorization(&sreq, &cred, date, auth, sizeof auth, NULL, err, errlen) != 0)
        goto fail;

    /* Headers: exactly the signed values, plus unsigned housekeeping. */
    char line[1200];
    for (size_t i = 0; i < nsh; i++) {
        snprintf(line, sizeof line, "%s: %s", sh[i].name, sh[i].value);
        struct curl_slist *l = curl_slist_append(x->hdrs, line);
        if (l == NULL)
            goto oom;
        x->hdrs = l;
    }
    snprintf(line, sizeof line, "Authorization: %s", auth);
    const char *extra[] = {line, "Expect:", "Accept:",
                           (q->body != NULL || strcmp(q->method, "POST") == 0)
                               ? "Content-Type: application/octet-stream"
                               : "Content-Type:"};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        struct curl_slist *l = curl_slist_append(x->hdrs, extra[i]);
        if (l == NULL)
            goto oom;
        x->hdrs = l;
    }

    x->conn = conn_get(s);
    if (x->conn == NULL)
        goto oom;
    CURL *e = x->conn->easy;
    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, s->timeout);
    /* A transfer that moves nothing for `timeout` seconds fails; a paused
     * one is not checked (curl skips speed checks while paused). */
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, s->timeout);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &x->resp);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &x->resp);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, (long)S3_READ_BUF);
    x->src = (struct body_src){q->body, q->body ? q->body_len : 0, 0};
    if (strcmp(q->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(q->method, "PUT") == 0) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, &x->src);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)x->src.len);
    } else if (strcmp(q->method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, &x->src);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->src.len);
    } else if (strcmp(q->method, "DELETE") == 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
    }
    if (curl_multi_add_handle(x->conn->multi, e) != CURLM_OK) {
        blob_set_err(err, errlen, "s3: cannot start a transfer");
        goto fail;
    }
    x->added = true;
    return x;
oom:
    blob_set_err(err, errlen, "s3: out of memory");
fail:
    xfer_free(x);
    return NULL;
}

/* Moves the transfer forward as far as it goes without waiting.
 * Returns 0 (check x->done), -1 on a multi-interface failure. */
static int xfer_perform(struct s3_xfer *x, int *running_r)
{
    int running = 0;
    if (curl_multi_perform(x->conn->multi, &running) != CURLM_OK)
        return -1;
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(x->conn->multi, &left)) != NULL) {
        if (m->msg == CURLMSG_DONE && m->easy_handle == x->conn->easy) {
            x->done = true;
            x->result = m->data.result;
        }
    }
    *running_r = running;
    return 0;
}

/* Waits up to wait_ms for the network. Only worth it when the transfer is
 * running and not paused: a paused transfer's socket is not watched. */
static int xfer_wait(struct s3_xfer *x, int wait_ms)
{
    return curl_multi_poll(x->conn->multi, NULL, 0, wait_ms, NULL) == CURLM_OK ? 0 : -1;
}

/* perform, then wait when nothing finished. */
static int xfer_step(struct s3_xfer *x, int wait_ms)
{
    int running = 0;
    if (xfer_perform(x, &running) != 0)
        return -1;
    if (!x->done && running > 0 && xfer_wait(x, wait_ms) != 0)
        return -1;
    return 0;
}

/* Runs a transfer to its end. Returns 0 when a response arrived (look at
 * x->resp.status), -1 on a transport failure (err set). */
static int xfer_run(struct s3_xfer *x, char *err, size_t errlen)
{
    while (!x->done) {
        if (xfer_step(x, 1000) != 0) {
            blob_set_err(err, errlen, "s3 %s: transfer failed", x->what);
            return -1;
        }
    }
    if (x->result != CURLE_OK) {
        set_curl_err(err, errlen, x);
        return -1;
    }
    return 0;
}

/* Starts and runs one request. Returns the finished transfer (status in
 * resp) or NULL with err set. */
static struct s3_xfer *request(struct s3_store *s, const struct s3_req *q, char *err, size_t errlen)
{
    struct s3_xfer *x = xfer_start(s, q, err, errlen);
    if (x == NULL)
        return NULL;
    if (xfer_run(x, err, errlen) != 0) {
        xfer_free(x);
        return NULL;
    }
    return x;
}

static void object_key(const struct s3_store *s, const char *id, char out[S3_KEY_SIZE])
{
    snprintf(out, S3_KEY_SIZE, "%s%s", s->prefix, id);
}

/* HEAD key. Returns 0 with size and time, BLOB_ENOTFOUND (err not set: the
 * caller says what absence means), or -1. */
static int head(struct s3_store *s, const char *key, unsigned long long *size_r, long long *mtime_r,
                char *err, size_t errlen)
{
    struct s3_req q = {.method = "HEAD", .key = key};
    struct s3_xfer *x = request(s, &q, err, errlen);
    if (x == NULL)
        return -1;
    int rc;
    if (x->resp.status == 200 && x->resp.has_length) {
        *size_r = x->resp.content_length;
        if (mtime_r != NULL)
            *mtime_r = parse_http_date(x->resp.last_modified);
        rc = 0;
    } else if (x->resp.status == 404) {
        rc = BLOB_ENOTFOUND; /* err untouched: absence is not always an error */
    } else {
        if (x->resp.status == 200)
            blob_set_err(err, errlen, "s3 %s: no Content-Length in the answer", x->what);
        else
            set_http_err(err, errlen, x);
        rc = -1;
    }
    xfer_free(x);
    return rc;
}

/* ---- store ---- */

static bool printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

static int s3_open(const struct blob_config *cfg, void **impl_r, char *err, size_t errlen)
{
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        blob_set_err(err, errlen, "s3 blob store: libcurl failed to initialise");
        return -1;
    }
    const char *ep = cfg->s3_endpoint;
    if (ep == NULL || ep[0] == '\0') {
        blob_set_err(err, errlen, "s3 blob store: no endpoint");
        return -1;
    }
    struct s3_store *s = calloc(1, sizeof *s);
    if (s == NULL) {
        blob_set_err(err, errlen, "s3 blob store: out of memory");
        return -1;
    }
    if (strncmp(ep, "https://", 8) == 0) {
        s->https = true;
        ep += 8;
    } else if (strncmp(ep, "http://", 7) == 0) {
        ep += 7;
    } else {
        blob_set_err(err, errlen, "s3 blob store: endpoint must start with https:// or http://");
        goto fail;
    }
    size_t hl = strcspn(ep, "/");
    if (hl == 0 || hl > S3_HOST_MAX || (ep[hl] == '/' && ep[hl + 1] != '\0')) {
        blob_set_err(err, errlen, "s3 blob store: endpoint must be scheme://host[:port] only");
        goto fail;
    }
    for (size_t i = 0; i < hl; i++) {
        char ch = ep[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '-' || ch == ':' || ch == '[' || ch == ']')) {
            blob_set_err(err, errlen, "s3 blob store: endpoint host has a bad character");
            goto fail;
        }
    }
    memcpy(s->hostport, ep, hl);
    s->hostport[hl] = '\0';

    /* Bucket names: 3..63 of [a-z0-9.-] (the S3 naming rules). */
    const char *b = cfg->s3_bucket;
    size_t bl = b != NULL ? strlen(b) : 0;
    if (bl < 3 || bl > 63 || strspn(b, "abcdefghijklmnopqrstuvwxyz0123456789.-") != bl) {
        blob_set_err(err, errlen, "s3 blob store: bucket must be 3 to 63 of a-z 0-9 . -");
        goto fail;
    }
    memcpy(s->bucket, b, bl + 1);

    const char *region = cfg->s3_region != NULL && cfg->s3_region[0] ? cfg->s3_region : "us-east-1";
    size_t rl = strlen(region);
    if (rl >= sizeof s->region ||
        strspn(region, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != rl) {
        blob_set_err(err, errlen, "s3 blob store: bad region");
        goto fail;
    }
    memcpy(s->region, region, rl + 1);

    if (cfg->s3_access_key == NULL || cfg->s3_access_key[0] == '\0' || cfg->s3_secret_key == NULL ||
        cfg->s3_secret_key[0] == '\0') {
        blob_set_err(err, errlen, "s3 blob store: access key and secret key are required");
        goto fail;
    }
    if (strlen(cfg->s3_access_key) >= sizeof s->access_key ||
        strlen(cfg->s3_secret_key) >= sizeof s->secret_key || !printable(cfg->s3_secret_key) ||
        strspn(cfg->s3_access_key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789-._~") != strlen(cfg->s3_access_key)) {
        blob_set_err(err, errlen, "s3 blob store: malformed access key or secret key");
        goto fail;
    }
    snprintf(s->access_key, sizeof s->access_key, "%s", cfg->s3_access_key);
    snprintf(s->secret_key, sizeof s->secret_key, "%s", cfg->s3_secret_key);

    const char *prefix = cfg->s3_prefix != NULL ? cfg->s3_prefix : "";
    if (strlen(prefix) > S3_PREFIX_MAX || !printable(prefix) || prefix[0] == '/') {
        blob_set_err(err, errlen,
                     "s3 blob store: prefix must be at most %d printable characters, not "
                     "starting with /",
                     S3_PREFIX_MAX);
        goto fail;
    }
    snprintf(s->prefix, sizeof s->prefix, "%s", prefix);
    s->path_style = cfg->s3_path_style;
    s->timeout = cfg->s3_timeout != 0 ? (long)cfg->s3_timeout : 30;
    if (s->timeout > 3600) {
        blob_set_err(err, errlen, "s3 blob store: timeout above 3600 seconds");
        goto fail;
    }
    /* A refresh copies the object onto itself, one request up to 5 GiB. */
    if (cfg->max_size > BLOB_SIZE_MAX_DEFAULT) {
        blob_set_err(err, errlen, "s3 blob store: max_size cannot exceed %llu bytes",
                     BLOB_SIZE_MAX_DEFAULT);
        goto fail;
    }

    const char *spool = cfg->spool_dir;
    if (spool == NULL || spool[0] == '\0')
        spool = getenv("TMPDIR");
    if (spool == NULL || spool[0] == '\0')
        spool = "/tmp";
    struct stat st;
    if (spool[0] != '/' || strlen(spool) >= sizeof s->spool_dir - 32 || stat(spool, &st) != 0 ||
        !S_ISDIR(st.st_mode)) {
        blob_set_err(err, errlen, "s3 blob store: spool directory %.200s is not a directory",
                     spool);
        goto fail;
    }
    snprintf(s->spool_dir, sizeof s->spool_dir, "%s", spool);
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        blob_set_err(err, errlen, "s3 blob store: cannot create a lock");
        goto fail;
    }
    *impl_r = s;
    return 0;
fail:
    free(s);
    return -1;
}

static void s3_close(void *impl)
{
    struct s3_store *s = impl;
    while (s->pool != NULL) {
        struct s3_conn *k = s->pool;
        s->pool = k->next;
        conn_free(k);
    }
    pthread_mutex_destroy(&s->lock);
    OPENSSL_cleanse(s->secret_key, sizeof s->secret_key);
    free(s);
}

/* ---- writing ---- */

static int s3_writer_new(void *impl, PGconn *c, void **w_r, char *err, size_t errlen)
{
    struct s3_writer *w = calloc(1, sizeof *w);
    if (w == NULL) {
        blob_set_err(err, errlen, "s3 blob writer: out of memory");
        return -1;
    }
    w->s = impl;
    w->spool = -1;
    *w_r = w;
    return 0;
}

/* An unnamed file in the spool directory: it vanishes when closed, so a
 * crashed writer leaves nothing behind. */
static int spool_open(struct s3_writer *w, char *err, size_t errlen)
{
    int fd = open(w->s->spool_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        char path[PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/floe-blob-XXXXXX", w->s->spool_dir);
        fd = mkostemp(path, O_CLOEXEC);
        if (fd >= 0)
            unlink(path);
    }
    if (fd < 0) {
        blob_set_err(err, errlen, "s3 blob writer: spool file in %s: %s", w->s->spool_dir,
                     strerror(errno));
        return -1;
    }
    w->spool = fd;
    return 0;
}

static int spool_write(struct s3_writer *w, char *err, size_t errlen)
{
    if (w->spool < 0 && spool_open(w, err, errlen) != 0)
        return -1;
    size_t off = 0;
    while (off < w->fill) {
        ssize_t n = pwrite(w->spool, w->buf + off, w->fill - off, (off_t)(w->spooled + off));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            blob_set_err(err, errlen, "s3 blob writer: spool file: %s",
                         n < 0 ? strerror(errno) : "short write");
            return -1;
        }
        off += (size_t)n;
    }
    w->spooled += w->fill;
    w->fill = 0;
    return 0;
}

static int s3_writer_write(void *wp, const void *data, size_t len, char *err, size_t errlen)
{
    struct s3_writer *w = wp;
    const unsigned char *p = data;
    while (len > 0) {
        /* A full part goes to the spool only when more follows, so content
         * of exactly one part still goes up in a single PUT. */
        if (w->fill == BLOB_S3_PART_SIZE && spool_write(w, err, errlen) != 0)
            return -1;
        if (w->fill == w->cap) {
            size_t cap = w->cap ? w->cap * 2 : 64 * 1024;
            if (cap > BLOB_S3_PART_SIZE)
                cap = BLOB_S3_PART_SIZE;
            unsigned char *nb = realloc(w->buf, cap);
            if (nb == NULL) {
                blob_set_err(err, errlen, "s3 blob writer: out of memory");
                return -1;
            }
            w->buf = nb;
            w->cap = cap;
        }
        size_t n = w->cap - w->fill;
        if (n > len)
            n = len;
        memcpy(w->buf + w->fill, p, n);
        w->fill += n;
        p += n;
        len -= n;
    }
    return 0;
}

static void writer_free(struct s3_writer *w)
{
    if (w->spool >= 0)
        close(w->spool);
    free(w->buf);
    free(w);
}

static void s3_writer_abort(void *wp)
{
    writer_free(wp);
}

/* Copies key onto itself to give it a new Last-Modified. Returns 0,
 * BLOB_ENOTFOUND (deleted meanwhile), or -1. */
static int refresh(struct s3_store *s, const char *key, char *err, size_t errlen)
{
    char src[3 * S3_KEY_SIZE + 80], enc[3 * S3_KEY_SIZE + 1];
    if (sigv4_uri_encode(key, strlen(key), false, enc, sizeof enc) < 0)
        return -1;
    snprintf(src, sizeof src, "/%s/%s", s->bucket, enc);
    struct s3_req q = {.method = "PUT",
                       .key = key,
                       .hdr = {{"x-amz-copy-source", src}, {"x-amz-metadata-directive", "REPLACE"}},
                       .nhdr = 2};
    struct s3_xfer *x = request(s, &q, err, errlen);
    if (x == NULL)
        return -1;
    int rc = 0;
    if (x->resp.status == 404) {
        rc = BLOB_ENOTFOUND;
    } else if (x->resp.status != 200 || body_has_error(x)) {
        set_http_err(err, errlen, x);
        rc = -1;
    }
    xfer_free(x);
    return rc;
}

static int put_single(struct s3_writer *w, const char *key, const char *id, char *err,
                      size_t errlen)
{
    /* The payload hash of the whole content is the id: S3 checks it. */
    struct s3_req q = {.method = "PUT",
                       .key = key,
                       .body = w->buf ? (const void *)w->buf : (const void *)"",
                       .body_len = w->fill,
                       .body_sha256 = id};
    struct s3_xfer *x = request(w->s, &q, err, errlen);
    if (x == NULL)
        return -1;
    int rc = 0;
    if (x->resp.status != 200) {
        set_http_err(err, errlen, x);
        rc = -1;
    }
    xfer_free(x);
    return rc;
}

static void abort_multipart(struct s3_store *s, const char *key, const char *upload_id)
{
    char e[256];
    struct s3_req q = {
        .method = "DELETE", .key = key, .query = {{"uploadId", upload_id}}, .nquery = 1};
    struct s3_xfer *x = request(s, &q, e, sizeof e);
    xfer_free(x); /* best effort; the bucket's lifecycle rule catches the rest */
}

static int put_multipart(struct s3_writer *w, const char *key, const char *id,
                         unsigned long long size, char *err, size_t errlen)
{
    struct s3_store *s = w->s;
    if (w->fill > 0 && spool_write(w, err, errlen) != 0)
        return -1;
    if (w->cap < BLOB_S3_PART_SIZE) {
        unsigned char *nb = realloc(w->buf, BLOB_S3_PART_SIZE);
        if (nb == NULL) {
            blob_set_err(err, errlen, "s3 blob writer: out of memory");
            return -1;
        }
        w->buf = nb;
        w->cap = BLOB_S3_PART_SIZE;
    }
    unsigned long long nparts = (size + BLOB_S3_PART_SIZE - 1) / BLOB_S3_PART_SIZE;
    if (nparts > S3_MAX_PARTS || w->spooled != size) {
        blob_set_err(err, errlen, "s3 blob writer: %llu bytes spooled for a %llu-byte blob",
                     w->spooled, size);
        return -1;
    }

    /* CreateMultipartUpload */
    struct s3_req q = {.method = "POST", .key = key, .query = {{"uploads", ""}}, .nquery = 1};
    struct s3_xfer *x = request(s, &q, err, errlen);
    if (x == NULL)
        return -1;
    char upload_id[1024];
    if (x->resp.status != 200 || x->resp.body == NULL ||
        xml_get(x->resp.body, x->resp.body_len, "UploadId", upload_id, sizeof upload_id, NULL) !=
            1) {
        if (x->resp.status != 200)
            set_http_err(err, errlen, x);
        else
            blob_set_err(err, errlen, "s3 %s: no UploadId in the answer", x->what);
        xfer_free(x);
        return -1;
    }
    xfer_free(x);

    int rc = -1;
    char(*etags)[S3_ETAG_SIZE] = calloc((size_t)nparts, sizeof *etags);
    char *xml = NULL;
    size_t xl = 0, xc = 0;
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    if (etags == NULL || sha == NULL || EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1) {
        blob_set_err(err, errlen, "s3 blob writer: out of memory");
        goto done;
    }
    for (unsigned long long part = 0; part < nparts; part++) {
        unsigned long long off = part * BLOB_S3_PART_SIZE;
        size_t plen = (size_t)(size - off < BLOB_S3_PART_SIZE ? size - off : BLOB_S3_PART_SIZE);
        size_t got = 0;
        while (got < plen) {
            ssize_t n = pread(w->spool, w->buf + got, plen - got, (off_t)(off + got));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                blob_set_err(err, errlen, "s3 blob writer: spool file: %s",
                             n < 0 ? strerror(errno) : "short read");
                goto done;
            }
            got += (size_t)n;
        }
        if (EVP_DigestUpdate(sha, w->buf, plen) != 1) {
            blob_set_err(err, errlen, "s3 blob writer: SHA-256 failed");
            goto done;
        }
        char part_sha[SIGV4_HEX_LEN + 1], num[16];
        sigv4_sha256_hex(w->buf, plen, part_sha);
        snprintf(num, sizeof num, "%llu", part + 1);
        struct s3_req pq = {.method = "PUT",
                            .key = key,
                            .query = {{"partNumber", num}, {"uploadId", upload_id}},
                            .nquery = 2,
                            .body = w->buf,
                            .body_len = plen,
                            .body_sha256 = part_sha};
        x = request(s, &pq, err, errlen);
        if (x == NULL)
            goto done;
        if (x->resp.status != 200 || x->resp.etag[0] == '\0') {
            if (x->resp.status != 200)
                set_http_err(err, errlen, x);
            else
                blob_set_err(err, errlen, "s3 %s: no ETag for part %s", x->what, num);
            xfer_free(x);
            goto done;
        }
        snprintf(etags[part], S3_ETAG_SIZE, "%s", x->resp.etag);
        xfer_free(x);
    }
    /* What went up must be what was hashed on the way in. */
    unsigned char md[32];
    unsigned int mdlen = 0;
    char again[SIGV4_HEX_LEN + 1];
    if (EVP_DigestFinal_ex(sha, md, &mdlen) != 1 || mdlen != 32) {
        blob_set_err(err, errlen, "s3 blob writer: SHA-256 failed");
        goto done;
    }
    sigv4_hex(md, sizeof md, again);
    if (strcmp(again, id) != 0) {
        blob_set_err(err, errlen, "s3 blob writer: the spool file changed under the upload");
        goto done;
    }

    /* CompleteMultipartUpload */
    if (buf_add(&xml, &xl, &xc, "<CompleteMultipartUpload>", false) != 0)
        goto oom;
    for (unsigned long long part = 0; part < nparts; part++) {
        char num[64];
        snprintf(num, sizeof num, "<Part><PartNumber>%llu</PartNumber><ETag>", part + 1);
        if (buf_add(&xml, &xl, &xc, num, false) != 0 ||
            buf_add(&xml, &xl, &xc, etags[part], true) != 0 ||
            buf_add(&xml, &xl, &xc, "</ETag></Part>", false) != 0)
            goto oom;
    }
    if (buf_add(&xml, &xl, &xc, "</CompleteMultipartUpload>", false) != 0)
        goto oom;
    struct s3_req cq = {.method = "POST",
                        .key = key,
                        .query = {{"uploadId", upload_id}},
                        .nquery = 1,
                        .body = xml,
                        .body_len = xl};
    x = request(s, &cq, err, errlen);
    if (x == NULL)
        goto done;
    if (x->resp.status != 200 || body_has_error(x)) {
        set_http_err(err, errlen, x);
        xfer_free(x);
        goto done;
    }
    xfer_free(x);
    rc = 0;
    goto done;
oom:
    blob_set_err(err, errlen, "s3 blob writer: out of memory");
done:
    if (rc != 0)
        abort_multipart(s, key, upload_id);
    EVP_MD_CTX_free(sha);
    free(etags);
    free(xml);
    return rc;
}

static int s3_writer_finish(void *wp, const char *id, unsigned long long size, char *err,
                            size_t errlen)
{
    struct s3_writer *w = wp;
    struct s3_store *s = w->s;
    char key[S3_KEY_SIZE];
    object_key(s, id, key);
    int rc;

    /* Present already? Then nothing is uploaded. */
    unsigned long long have = 0;
    long long mtime = -1;
    rc = head(s, key, &have, &mtime, err, errlen);
    if (rc == 0 && have == size) {
        if (mtime >= (long long)time(NULL) - BLOB_REFRESH_INTERVAL) {
            writer_free(w);
            return 0;
        }
        rc = refresh(s, key, err, errlen);
        if (rc != BLOB_ENOTFOUND) { /* refreshed, or failed */
            writer_free(w);
            return rc;
        }
    } else if (rc == -1) {
        writer_free(w);
        return -1;
    }
    /* Absent, deleted just now, or damaged (another size): upload. */
    if (w->spool < 0)
        rc = put_single(w, key, id, err, errlen);
    else
        rc = put_multipart(w, key, id, size, err, errlen);
    writer_free(w);
    return rc;
}

/* ---- reading ---- */

/* Body callback of a reader's GET: takes a delivery only into an empty
 * buffer, otherwise pauses; curl delivers the same bytes again after the
 * unpause. Error answers are kept as a (bounded) error document. */
static size_t on_stream(char *data, size_t size, size_t n, void *ud)
{
    struct s3_reader *r = ud;
    size_t len = size * n;
    if (r->x->resp.status < 200 || r->x->resp.status >= 300)
        return on_body(data, size, n, &r->x->resp);
    if (r->buf_len > r->buf_off) {
        r->paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    if (len > r->buf_cap) {
        /* Larger than CURLOPT_BUFFERSIZE: curl does not do this, but the
         * bound holds anyway. */
        if (len > 16 * S3_READ_BUF)
            return 0;
        unsigned char *nb = realloc(r->buf, len);
        if (nb == NULL)
            return 0;
        r->buf = nb;
        r->buf_cap = len;
    }
    memcpy(r->buf, data, len);
    r->buf_off = 0;
    r->buf_len = len;
    return len;
}

/* Starts a GET from r->pos (to r->end when known, else to the end) and
 * drives it until the response headers are in. Returns 0 with the transfer
 * in r->x (status in r->x->resp), or -1. */
static int stream_start(struct s3_reader *r, bool to_end, char *err, size_t errlen)
{
    char range[64];
    struct s3_req q = {.method = "GET", .key = r->key};
    if (to_end && r->pos == 0) {
        /* no Range: the whole object */
    } else {
        /* RFC 9110 §14.1.2: first-last, both inclusive; "first-" to the end. */
        if (to_end)
            snprintf(range, sizeof range, "bytes=%llu-", r->pos);
        else
            snprintf(range, sizeof range, "bytes=%llu-%llu", r->pos, r->end - 1);
        q.hdr[0] = (struct sigv4_param){"range", range};
        q.nhdr = 1;
    }
    r->x = xfer_start(r->s, &q, err, errlen);
    if (r->x == NULL)
        return -1;
    curl_easy_setopt(r->x->conn->easy, CURLOPT_WRITEFUNCTION, on_stream);
    curl_easy_setopt(r->x->conn->easy, CURLOPT_WRITEDATA, r);
    r->buf_off = r->buf_len = 0;
    r->paused = false;
    while (!r->x->done && !r->x->resp.headers_done) {
        int running = 0;
        if (xfer_perform(r->x, &running) != 0 ||
            (!r->x->done && !r->x->resp.headers_done && !r->paused && running > 0 &&
             xfer_wait(r->x, 1000) != 0)) {
            blob_set_err(err, errlen, "s3 %s: transfer failed", r->x->what);
            return -1;
        }
    }
    if (!r->x->resp.headers_done) {
        if (r->x->result != CURLE_OK)
            set_curl_err(err, errlen, r->x);
        else
            blob_set_err(err, errlen, "s3 %s: no answer", r->x->what);
        return -1;
    }
    return 0;
}

/* Checks that a 2xx answer starts at r->pos; returns the object's size from
 * Content-Range "bytes first-last/complete" (206, RFC 9110 §14.4) or
 * Content-Length (200: a server may ignore Range, §14.2, which is only
 * usable from byte 0), or -1 on a mismatch. */
static long long check_start(struct s3_reader *r, char *err, size_t errlen)
{
    const struct s3_resp *resp = &r->x->resp;
    if (resp->status == 206) {
        unsigned long long first, last, total;
        if (sscanf(resp->content_range, "bytes %llu-%llu/%llu", &first, &last, &total) != 3 ||
            first != r->pos || total > (unsigned long long)LLONG_MAX) {
            blob_set_err(err, errlen, "s3 %s: unexpected Content-Range '%s'", r->x->what,
                         resp->content_range);
            return -1;
        }
        return (long long)total;
    }
    if (resp->status == 200 && r->pos == 0 && resp->has_length &&
        resp->content_length <= (unsigned long long)LLONG_MAX)
        return (long long)resp->content_length;
    blob_set_err(err, errlen, "s3 %s: answer %ld does not start at byte %llu", r->x->what,
                 resp->status, r->pos);
    return -1;
}

static void reader_free(struct s3_reader *r)
{
    xfer_free(r->x);
    free(r->buf);
    free(r);
}

static int s3_reader_open(void *impl, PGconn *c, const char *id, unsigned long long offset,
                          unsigned long long len, void **r_r, unsigned long long *size_r, char *err,
                          size_t errlen)
{
    struct s3_store *s = impl;
    struct s3_reader *r = calloc(1, sizeof *r);
    if (r == NULL) {
        blob_set_err(err, errlen, "s3 blob reader: out of memory");
        return -1;
    }
    r->s = s;
    object_key(s, id, r->key);
    r->pos = offset;
    int rc = -1;
    unsigned long long size = 0;

    /* An empty range needs only the size. */
    if (len == 0) {
        rc = head(s, r->key, &size, NULL, err, errlen);
        if (rc == BLOB_ENOTFOUND)
            blob_set_err(err, errlen, "blob %s not found", id);
        if (rc == 0 && offset > size) {
            blob_set_err(err, errlen, "range starts past the end of the blob");
            rc = BLOB_ERANGE;
        }
        if (rc != 0)
            goto fail;
        r->end = offset;
        goto ok;
    }
    bool to_end = len >= UINT64_MAX - offset; /* no end to name */
    r->end = to_end ? UINT64_MAX : offset + len;
    if (stream_start(r, to_end, err, errlen) != 0)
        goto fail;
    long status = r->x->resp.status;
    if (status == 200 || status == 206) {
        long long total = check_start(r, err, errlen);
        if (total < 0)
            goto fail;
        size = (unsigned long long)total;
        if (r->end > size)
            r->end = size;
        goto ok;
    }
    if (status == 416) {
        /* 416 (RFC 9110 §15.5.17): nothing at offset. The blob ends there
         * (an empty stream) or before (a bad range); HEAD says which. */
        xfer_free(r->x);
        r->x = NULL;
        rc = head(s, r->key, &size, NULL, err, errlen);
        if (rc == BLOB_ENOTFOUND)
            blob_set_err(err, errlen, "blob %s not found", id);
        if (rc != 0)
            goto fail;
        if (offset > size) {
            blob_set_err(err, errlen, "range starts past the end of the blob");
            rc = BLOB_ERANGE;
            goto fail;
        }
        r->end = offset;
        goto ok;
    }
    /* An error: read the (small) error document to tell a missing key from
     * a missing bucket or a refusal. */
    if (xfer_run(r->x, err, errlen) != 0)
        goto fail;
    char code[64] = "";
    if (r->x->resp.body != NULL)
        xml_get(r->x->resp.body, r->x->resp.body_len, "Code", code, sizeof code, NULL);
    if (status == 404 && (code[0] == '\0' || strcmp(code, "NoSuchKey") == 0)) {
        blob_set_err(err, errlen, "blob %s not found", id);
        rc = BLOB_ENOTFOUND;
    } else {
        set_http_err(err, errlen, r->x);
        rc = -1;
    }
fail:
    reader_free(r);
    return rc;
ok:
    if (r->x != NULL && r->pos >= r->end) {
        xfer_free(r->x);
        r->x = NULL;
    }
    *size_r = size;
    *r_r = r;
    return 0;
}

static ssize_t s3_reader_read(void *rp, void *buf, size_t len, char *err, size_t errlen)
{
    struct s3_reader *r = rp;
    while (r->buf_len == r->buf_off) {
        if (r->x == NULL)
            return 0;
        if (r->x->done) {
            /* Ended before the range did: resume from here, a few times. */
            bool ok = r->x->result == CURLE_OK;
            if (!ok && r->resumes >= S3_RESUMES) {
                set_curl_err(err, errlen, r->x);
                return -1;
            }
            if (ok && r->resumes >= S3_RESUMES)
                return 0; /* the common layer reports the early end */
            r->resumes++;
            xfer_free(r->x);
            r->x = NULL;
            if (stream_start(r, false, err, errlen) != 0)
                return -1;
            if (r->x->resp.status != 206 && r->x->resp.status != 200) {
                if (xfer_run(r->x, err, errlen) == 0)
                    set_http_err(err, errlen, r->x);
                return r->x->resp.status == 404 || r->x->resp.status == 416 ? 0 : -1;
            }
            if (check_start(r, err, errlen) < 0)
                return -1;
            continue;
        }
        if (r->paused) {
            r->paused = false;
            /* May deliver the held bytes at once, through on_stream. */
            if (curl_easy_pause(r->x->conn->easy, CURLPAUSE_CONT) != CURLE_OK) {
                blob_set_err(err, errlen, "s3 %s: cannot resume the transfer", r->x->what);
                return -1;
            }
            if (r->buf_len > r->buf_off)
                break;
        }
        /* Wait for the network only when the last perform brought
         * nothing: after a delivery the transfer is paused and its socket
         * unwatched, so a wait would only sleep. */
        int running = 0;
        if (xfer_perform(r->x, &running) != 0 ||
            (r->buf_len == r->buf_off && !r->x->done && !r->paused && running > 0 &&
             xfer_wait(r->x, 1000) != 0)) {
            blob_set_err(err, errlen, "s3 %s: transfer failed", r->x->what);
            return -1;
        }
    }
    size_t n = r->buf_len - r->buf_off;
    if (n > len)
        n = len;
    memcpy(buf, r->buf + r->buf_off, n);
    r->buf_off += n;
    r->pos += n;
    if (r->pos >= r->end && r->x != NULL) {
        /* The range is complete: drop the connection's remaining bytes, if
         * any (there are none when the server honoured the range). */
        xfer_free(r->x);
        r->x = NULL;
    }
    return (ssize_t)n;
}

static void s3_reader_close(void *rp)
{
    reader_free(rp);
}

/* ---- other operations ---- */

static int s3_stat(void *impl, PGconn *c, const char *id, unsigned long long *size_r, char *err,
                   size_t errlen)
{
    struct s3_store *s = impl;
    char key[S3_KEY_SIZE];
    object_key(s, id, key);
    int rc = head(s, key, size_r, NULL, err, errlen);
    if (rc == BLOB_ENOTFOUND)
        blob_set_err(err, errlen, "blob %s not found", id);
    return rc;
}

/* S3 answers 204 to deleting a missing key, so HEAD comes first; it also
 * gives Last-Modified for the conditional form. S3 has no conditional
 * delete by date: a refresh landing between the two requests is missed. */
static int s3_del(void *impl, PGconn *c, const char *id, const long long *before, char *err,
                  size_t errlen)
{
    struct s3_store *s = impl;
    char key[S3_KEY_SIZE];
    object_key(s, id, key);
    unsigned long long size;
    long long mtime = -1;
    int rc = head(s, key, &size, &mtime, err, errlen);
    if (rc == BLOB_ENOTFOUND)
        blob_set_err(err, errlen, "blob %s not found", id);
    if (rc != 0)
        return rc;
    if (before != NULL) {
        if (mtime < 0) {
            blob_set_err(err, errlen, "s3 HEAD %s: no usable Last-Modified", key);
            return -1;
        }
        if (mtime >= *before) {
            blob_set_err(err, errlen, "blob %s was written after the cut-off", id);
            return BLOB_ENEWER;
        }
    }
    struct s3_req q = {.method = "DELETE", .key = key};
    struct s3_xfer *x = request(s, &q, err, errlen);
    if (x == NULL)
        return -1;
    rc = 0;
    if (x->resp.status != 204 && x->resp.status != 200) {
        set_http_err(err, errlen, x);
        rc = -1;
    }
    xfer_free(x);
    return rc;
}

/* ListObjectsV2 from after_id. Pages continue with start-after = the last
 * key seen rather than the continuation token: the same result, one cursor
 * format for the first and later pages, and nothing opaque to keep. Keys
 * under the prefix that are not ids (foreign objects) are skipped, so a
 * page may take several requests. */
static int s3_list(void *impl, PGconn *c, const char *after_id, size_t max, blob_list_cb cb,
                   void *ctx, char *err, size_t errlen)
{
    struct s3_store *s = impl;
    char start[S3_KEY_SIZE + 64] = "", maxkeys[16];
    size_t plen = strlen(s->prefix);
    if (after_id != NULL)
        object_key(s, after_id, start);
    int given = 0;
    for (int page = 0; page < S3_LIST_PAGES; page++) {
        snprintf(maxkeys, sizeof maxkeys, "%zu", max - (size_t)given);
        struct s3_req q = {.method = "GET", .key = NULL};
        q.query[q.nquery++] = (struct sigv4_param){"list-type", "2"};
        q.query[q.nquery++] = (struct sigv4_param){"max-keys", maxkeys};
        q.query[q.nquery++] = (struct sigv4_param){"prefix", s->prefix};
        if (start[0] != '\0')
            q.query[q.nquery++] = (struct sigv4_param){"start-after", start};
        struct s3_xfer *x = request(s, &q, err, errlen);
        if (x == NULL)
            return -1;
        if (x->resp.status != 200 || x->resp.body == NULL) {
            set_http_err(err, errlen, x);
            xfer_free(x);
            return -1;
        }
        const char *p = x->resp.body, *end = x->resp.body + x->resp.body_len;
        bool any = false;
        for (;;) {
            const char *b = memmem(p, (size_t)(end - p), "<Contents>", 10);
            if (b == NULL)
                break;
            const char *e = memmem(b, (size_t)(end - b), "</Contents>", 11);
            if (e == NULL) {
                blob_set_err(err, errlen, "s3 list: malformed answer");
                xfer_free(x);
                return -1;
            }
            p = e + 11;
            char key[S3_KEY_SIZE + 64], when[64] = "";
            if (xml_get(b, (size_t)(e - b), "Key", key, sizeof key, NULL) != 1)
                continue; /* too long to be ours, and no use as a cursor */
            if (strcmp(key, start) <= 0)
                continue; /* a server that ignored start-after */
            any = true;
            snprintf(start, sizeof start, "%s", key);
            xml_get(b, (size_t)(e - b), "LastModified", when, sizeof when, NULL);
            if (strncmp(key, s->prefix, plen) != 0 || !blob_id_valid(key + plen))
                continue;
            given++;
            if (cb(key + plen, parse_iso_date(when), ctx) != 0 || (size_t)given >= max) {
                xfer_free(x);
                return given;
            }
        }
        char trunc[16] = "";
        xml_get(x->resp.body, x->resp.body_len, "IsTruncated", trunc, sizeof trunc, NULL);
        xfer_free(x);
        if (strcmp(trunc, "true") != 0)
            return given;
        if (!any) {
            blob_set_err(err, errlen, "s3 list: truncated answer that moves no further");
            return -1;
        }
    }
    blob_set_err(err, errlen, "s3 list: more than %d pages of foreign keys under the prefix",
                 S3_LIST_PAGES);
    return -1;
}

static int s3_purge(void *impl, PGconn *c, long long older_than_s, char *err, size_t errlen)
{
    /* Spool files are unnamed and die with their process; unfinished
     * multipart uploads are the bucket lifecycle rule's job. */
    return 0;
}

const struct blob_backend blob_backend_s3 = {
    .name = "s3",
    .open = s3_open,
    .close = s3_close,
    .writer_new = s3_writer_new,
    .writer_write = s3_writer_write,
    .writer_finish = s3_writer_finish,
    .writer_abort = s3_writer_abort,
    .reader_open = s3_reader_open,
    .reader_read = s3_reader_read,
    .reader_close = s3_reader_close,
    .stat = s3_stat,
    .del = s3_del,
    .list = s3_list,
    .purge = s3_purge,
};
