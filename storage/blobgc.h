/* Blob garbage collection: removes blobs nothing references any more (DESIGN §4).
 * Run by the master only (the scheduler's built-in task "blob_gc"). */
#ifndef FLOE_STORAGE_BLOBGC_H
#define FLOE_STORAGE_BLOBGC_H

#include <libpq-fe.h>
#include <stddef.h>

#include "storage/blob.h"

struct blobgc_result {
    long long examined, deleted, uploads_purged;
};

/* Deletes every blob written more than grace_s seconds ago that no message
 * references, and uploads abandoned for as long. The grace period protects a
 * blob written just before the row that will reference it commits (blobs are
 * written first); a writer that finds an old blob again refreshes its time
 * (storage/blob.h), so a reused blob is never collected under it.
 * 0 ok (counts in *res_r), -1 with message. */
int blobgc_run(PGconn *c, struct blob_store *bs, long long grace_s, struct blobgc_result *res_r,
               char *err, size_t errlen);

#endif
