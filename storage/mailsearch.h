/* SEARCH, SORT and THREAD over one mail folder: runs a program parsed by proto/imap/search.h
 * against the messages table (migration 0005).
 *
 * How it works. The search keys become ONE parameterised SQL statement (user text only ever
 * travels as a $n parameter) returning the matching UIDs in ascending order, read row by row
 * (single-row mode) into a growing uint32 array, so a folder of 10^6 messages costs 4 bytes
 * per match in this process. RETURN (MIN), (MAX), (MIN MAX) and (COUNT) without other options
 * become "ORDER BY uid LIMIT 1", "... DESC LIMIT 1" and count(*) (RFC 4731 §5 invites it).
 *
 * Keys and what serves them:
 *  - every statement is bounded by folder_id and a UID range, served by the unique index
 *    messages_folder_uid (folder_id, uid); UID sets, sequence sets (mapped to UIDs through the
 *    caller's view), "$" and RECENT add BETWEEN bounds and a multirange on uid there;
 *  - MODSEQ: messages_folder_modseq (folder_id, modseq);
 *  - BODY and TEXT: the GIN index messages_fts on the tsvector built at delivery ('simple'
 *    configuration: subject weight A, From/To/Cc weight B, decoded text parts weight D).
 *    Matching is by words, not substrings: the string's words must appear in that order, the
 *    last one as a prefix (BODY "quick bro" finds "the quick brown fox"; BODY "uick" does not
 *    find "quick"). TEXT searches the vector (subject, addresses and body text; other header
 *    fields are not in it); BODY rechecks the body's weight-D lexemes only. A string without
 *    any word (only punctuation) matches every message, as the empty string does. Text parts
 *    past 256 KiB of a message are not in the vector (storage/mailstore.c);
 *  - flags, keywords, dates, sizes, OLDER/YOUNGER, and SUBJECT/FROM/TO/CC (ASCII
 *    case-insensitive substrings of the decoded columns): filters on the folder's rows read
 *    through messages_folder_uid (no index of their own: they are cheap per row);
 *  - HEADER on Subject, From, To, Cc, Message-ID, In-Reply-To or References with a non-empty
 *    string: the stored column, like SUBJECT;
 *  - HEADER on any other field, HEADER with an empty string (RFC 9051: "has the field") and
 *    BCC: the raw header. Decision: nothing new is stored for them; the statement is run with
 *    those keys taken as "may match" (TRUE or FALSE by their polarity under NOT), in pages of
 *    MAILSEARCH_PAGE rows by UID, returning the truth of every other key as a column; the
 *    header of each candidate (at most MAILSEARCH_HEADER_MAX bytes from the blob store) is
 *    then read, its fields unfolded and RFC 2047-decoded, and the program evaluated in C. Such
 *    a search costs one blob read per candidate message, so combine it with cheap keys.
 *
 * Dates: BEFORE/ON/SINCE compare the internal date, SENT* the Date: header (the internal date
 * when the message has none, as RFC 5256 §2.2 does for SORT), SAVED* the time the row was
 * saved (RFC 8514), each as a day in the zone scope->tz_offset seconds east of UTC (RFC 9051
 * §6.4.4: time and zone disregarded). OLDER n / YOUNGER n (RFC 5032): internal date before /
 * at or after now - n seconds.
 *
 * SORT (RFC 5256 §3, RFC 5957): ARRIVAL, DATE and SIZE alone are done by PostgreSQL (ORDER BY,
 * uid last as the implicit sequence-number criterion) and streamed. Criteria on strings are
 * done here: the rows' keys are computed as they stream (base subject with
 * imap_thread_base_subject; addr-mailbox or display name of the first address, taken from the
 * stored ENVELOPE so quoting and encoded words are already resolved; each string key cut at
 * MAILSEARCH_SORT_KEY_MAX bytes) and sorted with the i;ascii-casemap comparison, ties by UID.
 *
 * THREAD: the matching rows' subject (its first MAILSEARCH_SUBJECT_MAX bytes), sent date and,
 * for REFERENCES, Message-ID and In-Reply-To (250 bytes each) and the last MAILSEARCH_REFS_MAX
 * bytes of References (the nearest ancestors) are read and given to proto/imap/thread.c: memory
 * is bounded by about 2 KiB per matching message (typically a tenth of that).
 *
 * Consistency: one statement sees one snapshot. A raw-header search reads in pages (several
 * statements) and may see messages appended or expunged meanwhile; it never reports a UID
 * above the view's highest.
 *
 * Every function blocks (run it on a worker) and uses c outside or inside the caller's
 * transaction (it only reads). 0 ok, -1 with a message in err, MAILSEARCH_EINVAL for a program
 * that cannot run here (sequence numbers without a view; header keys without a blob store). */
#ifndef FLOE_STORAGE_MAILSEARCH_H
#define FLOE_STORAGE_MAILSEARCH_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "proto/imap/search.h"
#include "proto/imap/seqset.h"
#include "proto/imap/thread.h"
#include "storage/blob.h"

#define MAILSEARCH_EINVAL (-4)
#define MAILSEARCH_PAGE 1000               /* rows per statement in a raw-header search */
#define MAILSEARCH_HEADER_MAX (256 * 1024) /* header bytes read for a raw-header key */
#define MAILSEARCH_SORT_KEY_MAX 256        /* bytes kept of a string sort key */
#define MAILSEARCH_SUBJECT_MAX 512         /* bytes of Subject read for THREAD */
#define MAILSEARCH_REFS_MAX 1024           /* bytes of References read for THREAD */

/* Where and with what a program runs. */
struct mailsearch_scope {
    long long folder_id;
    /* The session's view: the UIDs of its messages in sequence order (uids[i] is message
     * i + 1), ascending. Sequence-number keys map through it and nothing above its last UID
     * is reported (messages the client has not been told about yet). NULL: no view (only
     * for callers without sequence numbers; the whole folder is searched). */
    const uint32_t *uids;
    size_t nuids;
    const struct imap_seqset *saved;  /* "$" (RFC 5182): saved UIDs; NULL: empty */
    const struct imap_seqset *recent; /* UIDs \Recent in this session; NULL: none */
    struct blob_store *bs;            /* raw headers (HEADER x, BCC); NULL: such keys fail */
    time_t now;                       /* OLDER / YOUNGER reference; 0: time(NULL) */
    int tz_offset;                    /* seconds east of UTC for the date keys */
};

struct mailsearch_result {
    /* Matching UIDs: ascending for a search, in sort order for SORT. When the program asked
     * only for MIN and/or MAX (RETURN without ALL and COUNT) just those one or two; with
     * RETURN (COUNT) alone, none. */
    uint32_t *uids;
    size_t count, cap;
    uint64_t matches;         /* how many messages matched (exact, also for COUNT alone; with
                                 MIN/MAX alone: count) */
    long long highest_modseq; /* RFC 4731 §3.2 / RFC 7162 §3.1.5: of the reported messages,
                                 0 when none */
};

/* SEARCH / UID SEARCH: prog->command must be IMAP_SEARCH_CMD_SEARCH (the search part of a
 * SORT or THREAD program also works: every match, ascending). *res is filled from zero. */
int mailsearch_search(PGconn *c, const struct mailsearch_scope *scope,
                      const struct imap_search_program *prog, struct mailsearch_result *res,
                      char *err, size_t errlen);

/* SORT / UID SORT: the matches in prog->sort order into *res (highest_modseq over all). */
int mailsearch_sort(PGconn *c, const struct mailsearch_scope *scope,
                    const struct imap_search_program *prog, struct mailsearch_result *res,
                    char *err, size_t errlen);

/* THREAD / UID THREAD: the matches threaded with prog->thread into *thread_r (node numbers are
 * UIDs; format with imap_thread_format). */
int mailsearch_thread(PGconn *c, const struct mailsearch_scope *scope,
                      const struct imap_search_program *prog, struct imap_thread **thread_r,
                      char *err, size_t errlen);

void mailsearch_result_free(struct mailsearch_result *res);

#endif
