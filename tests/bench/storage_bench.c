/* Storage benchmark, run by ops/bench storage: appends N messages of mixed sizes
 * (4 KB to 1 MB; most small, as real mail is) into one mailbox through the same
 * path SMTP delivery uses (blob write + MIME parse + metadata + one mail store
 * transaction), once per blob backend, and prints messages/s, MB/s and the
 * p50/p99 append latency.
 *
 * usage: floe-bench-storage CONNINFO BACKEND [N] [FS_DIR | "S3 endpoint bucket key secret"] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage/db.h"
#include "storage/directory.h"
#include "storage/folders.h"
#include "storage/ingest.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* A message of about `size` bytes whose content is unique to i (no dedup): text
 * drawn from a vocabulary, as mail is, so the search index sees words rather
 * than a flood of distinct random tokens. */
static size_t make_message(char *buf, size_t size, int i, unsigned *seed)
{
    static const char *const words[] = {
        "the",     "meeting", "project", "report",  "please", "review",  "attached", "budget",
        "team",    "update",  "quarter", "results", "thanks", "regards", "schedule", "client",
        "invoice", "deadline", "server", "release", "notes",  "question", "answer",  "friday",
        "monday",  "office",  "travel",  "agenda",  "draft",  "final",   "version",  "numbers"};
    int n = snprintf(buf, size,
                     "Date: Sat, 21 Nov 2026 07:00:00 +0000\r\nFrom: bench@example.test\r\n"
                     "To: box@example.test\r\nSubject: message %d\r\nMessage-ID: <%d@bench>\r\n"
                     "Content-Type: text/plain; charset=us-ascii\r\n\r\nid %d\r\n",
                     i, i, i);
    size_t o = (size_t)n, line = 0;
    while (o + 16 < size) {
        *seed = *seed * 1103515245u + 12345u;
        const char *w = words[(*seed >> 16) % (sizeof(words) / sizeof(words[0]))];
        size_t wl = strlen(w);
        memcpy(buf + o, w, wl);
        o += wl;
        line += wl + 1;
        if (line > 70) {
            buf[o++] = '\r';
            buf[o++] = '\n';
            line = 0;
        } else {
            buf[o++] = ' ';
        }
    }
    return o;
}

static size_t pick_size(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    unsigned r = (*seed >> 8) % 100;
    unsigned x = (*seed >> 4) % 1000;
    if (r < 70)
        return 4096 + x * 12;           /* 4-16 KB */
    if (r < 95)
        return 16384 + x * 240;         /* 16-256 KB */
    return 262144 + x * 786;            /* 256 KB - 1 MB */
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s CONNINFO pg|fs|s3 [N] [FS_DIR | S3 spec]\n", argv[0]);
        return 2;
    }
    const char *backend = argv[2];
    int n = argc > 3 ? atoi(argv[3]) : 10000;
    char err[512];
    PGconn *c = db_connect(argv[1], 0, err, sizeof(err));
    if (!c || db_migrate(c, err, sizeof(err)) < 0) {
        fprintf(stderr, "database: %s\n", err);
        return 1;
    }
    struct blob_config bc = {.backend = backend};
    char s3[4][256];
    if (!strcmp(backend, "fs"))
        bc.fs_path = argc > 4 ? argv[4] : "/tmp/floe-bench-blobs";
    if (!strcmp(backend, "s3")) {
        if (argc < 5 || sscanf(argv[4], "%255s %255s %255s %255s", s3[0], s3[1], s3[2], s3[3]) != 4) {
            fprintf(stderr, "s3 needs \"endpoint bucket key secret\"\n");
            return 2;
        }
        bc.s3_endpoint = s3[0];
        bc.s3_bucket = s3[1];
        bc.s3_access_key = s3[2];
        bc.s3_secret_key = s3[3];
        bc.s3_path_style = true;
    }
    struct blob_store *bs = blob_store_open(&bc, err, sizeof(err));
    if (!bs) {
        fprintf(stderr, "blob store: %s\n", err);
        return 1;
    }
    char address[64];
    snprintf(address, sizeof(address), "box-%s-%d@bench.test", backend, (int)time(NULL));
    dir_domain_add(c, "bench.test", err, sizeof(err));
    if (dir_account_add(c, address, "user", NULL, "", false, err, sizeof(err)) < 0) {
        fprintf(stderr, "account: %s\n", err);
        return 1;
    }
    struct dir_account a;
    struct folder f;
    dir_account_find(c, address, &a, err, sizeof(err));
    folders_find_role(c, a.id, FOLDER_ROLE_INBOX, &f);

    char *buf = malloc(1100 * 1024);
    double *lat = calloc((size_t)n, sizeof(double));
    if (!buf || !lat)
        return 1;
    unsigned seed = 42;
    double bytes = 0, t0 = now_s();
    for (int i = 0; i < n; i++) {
        size_t len = make_message(buf, pick_size(&seed), i, &seed);
        double s = now_s();
        uint32_t uid;
        long long ms;
        if (mail_deliver(c, bs, a.id, f.id, buf, len, 0, 0, false, &uid, &ms, err, sizeof(err))) {
            fprintf(stderr, "append %d: %s\n", i, err);
            return 1;
        }
        lat[i] = now_s() - s;
        bytes += (double)len;
    }
    double total = now_s() - t0;
    qsort(lat, (size_t)n, sizeof(double), cmp_double);
    printf("storage %-3s %6d messages  %8.1f msg/s  %7.1f MB/s  p50 %6.2f ms  p99 %7.2f ms\n",
           backend, n, n / total, bytes / total / 1e6, lat[n / 2] * 1e3,
           lat[(int)(n * 0.99)] * 1e3);
    free(buf);
    free(lat);
    blob_store_close(&bs);
    PQfinish(c);
    return 0;
}
