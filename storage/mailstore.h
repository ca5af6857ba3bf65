/* The mail store: messages in mail folders (DESIGN §4, §5).
 *
 * A message's content is a blob (storage/blob.h) written before the row that
 * references it; its metadata (IMAP ENVELOPE/BODY/BODYSTRUCTURE, part offsets,
 * header fields, search vector) is computed once when it arrives. Every write
 * here is one transaction that takes the account's next modseq first (the
 * account row lock orders all changes of an account), then the folder's UIDs,
 * and keeps quota usage and the folder counters in step. A caller told "ok"
 * finds the change on every node.
 *
 * UID sets are arrays of inclusive ranges; a range's hi may be UINT32_MAX
 * for "to the end" (IMAP's '*'). */
#ifndef FLOE_STORAGE_MAILSTORE_H
#define FLOE_STORAGE_MAILSTORE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define MAIL_SEEN 1u
#define MAIL_ANSWERED 2u
#define MAIL_FLAGGED 4u
#define MAIL_DELETED 8u
#define MAIL_DRAFT 16u
#define MAIL_FLAGS_ALL 31u

#define MAIL_KEYWORDS_MAX 128 /* keywords on one message */
#define MAIL_KEYWORD_LEN 100  /* bytes in one keyword */

#define MAIL_ENOTFOUND (-2)
#define MAIL_EQUOTA (-5)    /* the change would pass a quota; nothing was written */
#define MAIL_EINVAL (-4)

struct uid_range {
    uint32_t lo, hi;
};

/* Metadata computed from the message text (storage/ingest.c makes it). */
struct mail_meta {
    const char *envelope, *body, *bodystructure; /* IMAP strings */
    const char *parts_json;                      /* section offsets, JSON array */
    time_t sent_date;                            /* 0: none */
    const char *subject, *from, *to, *cc;        /* decoded, for SORT/SEARCH */
    const char *message_id, *in_reply_to, *references;
    const char *search_text; /* decoded text for the full-text vector */
};

struct mail_new {
    const char *blob_id;
    uint64_t size;
    time_t internal_date; /* 0: now */
    unsigned flags;
    const char *const *keywords;
    size_t nkeywords;
    const struct mail_meta *meta;
};

/* Appends one message whose blob is stored. Fills *uid_r and *modseq_r.
 * enforce_quota false lets delivery paths that must not refuse (e.g. saving a
 * copy the user asked for) account without limit. MAIL_EQUOTA, MAIL_ENOTFOUND
 * (no such mail folder of this account), -1. */
int mailstore_append(PGconn *c, long long account_id, long long folder_id, const struct mail_new *m,
                     bool enforce_quota, uint32_t *uid_r, long long *modseq_r, char *err,
                     size_t errlen);

struct mail_row {
    long long id;
    uint32_t uid;
    long long modseq;
    unsigned flags;
    const char *const *keywords;
    size_t nkeywords;
    uint64_t size;
    time_t internal_date;
    const char *blob_id;
    /* Filled only by mailstore_fetch with want_meta: */
    const char *envelope, *body, *bodystructure, *parts_json;
};
typedef int (*mail_row_cb)(const struct mail_row *r, void *ctx);

/* Rows of folder in UID order whose uid is in the set (NULL/0 ranges: all)
 * and, when changed_since > 0, whose modseq is greater. want_meta adds the IMAP
 * strings. The callback returning non-zero stops the walk. */
int mailstore_fetch(PGconn *c, long long folder_id, const struct uid_range *set, size_t nset,
                    long long changed_since, bool want_meta, mail_row_cb cb, void *ctx, char *err,
                    size_t errlen);

enum mail_store_mode { MAIL_FLAGS_SET, MAIL_FLAGS_ADD, MAIL_FLAGS_REMOVE };

/* STORE: changes flags and keywords of the messages in set. With
 * unchanged_since > 0 (RFC 7162 UNCHANGEDSINCE) messages whose modseq is greater
 * are left alone and reported through failed_cb. Every changed message gets the
 * same new modseq (one per command); changed_cb receives each changed row. */
int mailstore_store(PGconn *c, long long account_id, long long folder_id,
                    const struct uid_range *set, size_t nset, enum mail_store_mode mode,
                    unsigned flags, const char *const *keywords, size_t nkeywords,
                    long long unchanged_since, mail_row_cb changed_cb, void *changed_ctx,
                    void (*failed_cb)(uint32_t uid, void *ctx), void *failed_ctx, char *err,
                    size_t errlen);

/* COPY (move = false) or MOVE (RFC 6851) of the messages in set to dst. The
 * copies get new UIDs in dst in source UID order; mapped_cb reports each pair
 * (for COPYUID). A move expunges the sources in the same transaction. */
int mailstore_copy(PGconn *c, long long account_id, long long src_folder_id,
                   const struct uid_range *set, size_t nset, long long dst_folder_id, bool move,
                   bool enforce_quota, void (*mapped_cb)(uint32_t src, uint32_t dst, void *ctx),
                   void *ctx, uint32_t *dst_uidvalidity_r, char *err, size_t errlen);

/* EXPUNGE: removes the \Deleted messages of folder (only those in set when set is
 * given: UID EXPUNGE), leaving tombstones; expunged_cb reports each UID. */
int mailstore_expunge(PGconn *c, long long account_id, long long folder_id,
                      const struct uid_range *set, size_t nset,
                      void (*expunged_cb)(uint32_t uid, void *ctx), void *ctx, char *err,
                      size_t errlen);

struct mail_status {
    uint64_t messages, unseen, deleted, bytes;
    uint32_t uidvalidity, uidnext;
    long long highest_modseq;
};
int mailstore_status(PGconn *c, long long folder_id, struct mail_status *st_r, char *err,
                     size_t errlen);

/* Converts flag names ("\\Seen" ...) to bits; 0 and *is_system false for keywords. */
unsigned mailstore_flag_bit(const char *name);
/* Checks a keyword (RFC 3501 atom, at most MAIL_KEYWORD_LEN bytes, not a \ flag). */
bool mailstore_keyword_valid(const char *kw);

#endif
