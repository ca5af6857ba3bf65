/* Taking in one message: its bytes go to the blob store and through the MIME
 * parser in the same pass (nothing is held whole), then the metadata the mail
 * store keeps is computed from the parse (IMAP ENVELOPE/BODY/BODYSTRUCTURE,
 * section offsets, decoded header fields, search text). SMTP delivery, IMAP
 * APPEND and imports all come through here. */
#ifndef FLOE_STORAGE_INGEST_H
#define FLOE_STORAGE_INGEST_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "storage/blob.h"
#include "storage/mailstore.h"

struct mail_ingest;

/* The result: the blob and the metadata, owning every string meta points to. */
struct mail_ingested {
    char blob_id[BLOB_ID_LEN + 1];
    uint64_t size;
    struct mail_meta meta;
    char *owned[16];
};

/* Starts an ingest into bs (c: the caller's connection, used by the pg backend). */
struct mail_ingest *mail_ingest_new(struct blob_store *bs, PGconn *c, char *err, size_t errlen);
int mail_ingest_write(struct mail_ingest *in, const void *data, size_t len);
/* Stores the blob and computes the metadata into *out (free with mail_ingested_free).
 * Frees the ingest. 0 ok, -1 with message. */
int mail_ingest_finish(struct mail_ingest **in, struct mail_ingested *out, char *err,
                       size_t errlen);
void mail_ingest_abort(struct mail_ingest **in);
void mail_ingested_free(struct mail_ingested *m);

/* Parses an RFC 5322 date ("Sat, 21 Nov 2026 06:00:00 +0100", obsolete zones
 * included); 0 when it cannot be read. */
time_t mail_parse_date(const char *s);

/* Everything at once for a message in memory: ingest, then mailstore_append. */
int mail_deliver(PGconn *c, struct blob_store *bs, long long account_id, long long folder_id,
                 const char *data, size_t len, unsigned flags, time_t internal_date,
                 bool enforce_quota, uint32_t *uid_r, long long *modseq_r, char *err,
                 size_t errlen);

#endif
