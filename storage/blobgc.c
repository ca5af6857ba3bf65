/* Blob garbage collection (see blobgc.h): pages through the store's listing,
 * and for each blob old enough asks whether any message still references it,
 * stored in a folder (messages_blob index) or waiting in the outbound queue
 * (queue_messages_blob index); unreferenced ones are deleted only if still
 * older than the cutoff at the moment of deletion. */
#include "storage/blobgc.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define PAGE 500

struct page {
    char ids[PAGE][BLOB_ID_LEN + 1];
    long long written[PAGE];
    size_t n;
};

static int collect(const char *id, long long written_unix, void *ctx)
{
    struct page *p = ctx;
    if (p->n < PAGE) {
        snprintf(p->ids[p->n], sizeof(p->ids[0]), "%s", id);
        p->written[p->n++] = written_unix;
    }
    return 0;
}

static int referenced(PGconn *c, const char *id, bool *yes_r)
{
    const char *p[] = {id};
    PGresult *r = PQexecParams(c,
                               "SELECT 1 WHERE EXISTS (SELECT 1 FROM messages WHERE blob_id = $1)"
                               " OR EXISTS (SELECT 1 FROM queue_messages WHERE blob_id = $1)",
                               1, NULL, p, NULL, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : -1;
    *yes_r = rc == 0 && PQntuples(r) > 0;
    PQclear(r);
    return rc;
}

int blobgc_run(PGconn *c, struct blob_store *bs, long long grace_s, struct blobgc_result *res,
               char *err, size_t errlen)
{
    memset(res, 0, sizeof(*res));
    long long cutoff = (long long)time(NULL) - grace_s;
    static struct page page; /* one collector runs per node, on the scheduler thread */
    char after[BLOB_ID_LEN + 1] = "";
    for (;;) {
        page.n = 0;
        int n = blob_list(bs, c, after, PAGE, collect, &page, err, errlen);
        if (n < 0)
            return -1;
        for (size_t i = 0; i < page.n; i++) {
            res->examined++;
            if (page.written[i] >= cutoff)
                continue;
            bool used;
            if (referenced(c, page.ids[i], &used) < 0) {
                snprintf(err, errlen, "cannot check references: %s", PQerrorMessage(c));
                return -1;
            }
            if (used)
                continue;
            int rc = blob_delete_if_older(bs, c, page.ids[i], cutoff, err, errlen);
            if (rc == 0)
                res->deleted++;
            else if (rc != BLOB_ENOTFOUND && rc != BLOB_ENEWER)
                return -1;
        }
        if (page.n == 0 || (size_t)n < PAGE)
            break;
        snprintf(after, sizeof(after), "%s", page.ids[page.n - 1]);
    }
    int purged = blob_purge_uploads(bs, c, grace_s, err, errlen);
    if (purged < 0)
        return -1;
    res->uploads_purged = purged;
    return 0;
}
