/* IMAP SEARCH, SORT and THREAD programs: the arguments of those commands (after the command
 * name, and after "UID") parsed into a tree of search keys plus the command's options, and the
 * untagged responses that carry their results. No I/O and no mailbox access: the storage layer
 * (storage/mailsearch.h) runs a program against a folder.
 *
 * What is parsed:
 *  - SEARCH [RETURN (opts)] [CHARSET cs] key... (RFC 9051 §6.4.4, RFC 4731 ESEARCH, RFC 5182
 *    SAVE): RETURN options MIN MAX ALL COUNT SAVE, "RETURN ()" meaning ALL;
 *  - SORT (criteria) cs key... (RFC 5256 §3, RFC 5957 DISPLAYFROM / DISPLAYTO);
 *  - THREAD alg cs key... (RFC 5256 §3: ORDEREDSUBJECT, REFERENCES).
 * The charset must be UTF-8 or US-ASCII (RFC 9051 §6.4.4 requires both); any other gives
 * IMAP_SEARCH_EBADCHARSET, answered "NO [BADCHARSET (US-ASCII UTF-8)]". Strings must be valid
 * UTF-8 (a superset of US-ASCII).
 *
 * Search keys: every key of RFC 9051 §6.4.4 and RFC 3501 §6.4.4 (ALL ANSWERED BCC BEFORE BODY
 * CC DELETED DRAFT FLAGGED FROM HEADER KEYWORD LARGER NEW NOT OLD ON OR RECENT SEEN SENTBEFORE
 * SENTON SENTSINCE SINCE SMALLER SUBJECT TEXT TO UID UNANSWERED UNDELETED UNDRAFT UNFLAGGED
 * UNKEYWORD UNSEEN, sequence sets, parenthesised lists), MODSEQ (RFC 7162 §3.1.5, the optional
 * entry name and type are checked and ignored: Floe keeps one modseq per message, which RFC
 * 7162 allows), OLDER / YOUNGER (RFC 5032), SAVEDBEFORE / SAVEDON / SAVEDSINCE /
 * SAVEDATESUPPORTED (RFC 8514) and "$" (RFC 5182) alone or after UID.
 *
 * The tree is normalised so the executor has few cases: UNSEEN is NOT(SEEN), UNKEYWORD x is
 * NOT(KEYWORD x), NEW is AND(RECENT, NOT(SEEN)), OLD is NOT(RECENT), a parenthesised list and
 * the top level are AND nodes. Keywords and system flag names are matched without regard to
 * ASCII case (KEYWORD \Seen is taken as SEEN). Dates are kept as days since 1970-01-01, the
 * executor choosing the time zone (RFC 9051 §6.4.4: dates disregard time and time zone).
 *
 * Sequence sets need the mailbox: "*" is the number of messages for sequence numbers and the
 * highest UID for UIDs (seqset.h), so the caller passes both in struct imap_search_context,
 * taken from the session's view of the mailbox when the command starts.
 *
 * Bounds: at most IMAP_SEARCH_MAX_KEYS keys and IMAP_SEARCH_MAX_DEPTH levels of nesting
 * (NOT, OR and lists all count), IMAP_SEARCH_MAX_SORT sort criteria; each sequence set holds at
 * most IMAP_SEQSET_MAX_RANGES ranges. The recursion depth of every function here is bounded by
 * IMAP_SEARCH_MAX_DEPTH. */
#ifndef FLOE_PROTO_IMAP_SEARCH_H
#define FLOE_PROTO_IMAP_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/imap/envelope.h"
#include "proto/imap/parser.h"
#include "proto/imap/seqset.h"

#define IMAP_SEARCH_MAX_KEYS 1000
#define IMAP_SEARCH_MAX_DEPTH 32
#define IMAP_SEARCH_MAX_SORT 16
#define IMAP_SEARCH_MAX_STRING 4096 /* bytes in one search string or header name */

/* Return codes of imap_search_parse. */
#define IMAP_SEARCH_EBAD (-1)        /* syntax or limit: BAD */
#define IMAP_SEARCH_EBADCHARSET (-2) /* NO [BADCHARSET (US-ASCII UTF-8)] */
#define IMAP_SEARCH_ENOMEM (-3)      /* NO, server trouble */

/* System flags as bits; the values are those of the messages.flags column
 * (storage/mailstore.h MAIL_*). */
#define IMAP_SEARCH_SEEN 1u
#define IMAP_SEARCH_ANSWERED 2u
#define IMAP_SEARCH_FLAGGED 4u
#define IMAP_SEARCH_DELETED 8u
#define IMAP_SEARCH_DRAFT 16u

/* RETURN options (RFC 4731 §3.1, RFC 5182 §2.4). */
#define IMAP_SEARCH_RET_MIN 1u
#define IMAP_SEARCH_RET_MAX 2u
#define IMAP_SEARCH_RET_ALL 4u
#define IMAP_SEARCH_RET_COUNT 8u
#define IMAP_SEARCH_RET_SAVE 16u

enum imap_search_op {
    IMAP_SEARCH_ALL,
    IMAP_SEARCH_AND,     /* children: all must match (an empty AND matches everything) */
    IMAP_SEARCH_OR,      /* two children */
    IMAP_SEARCH_NOT,     /* one child */
    IMAP_SEARCH_SEQSET,  /* set: message sequence numbers */
    IMAP_SEARCH_UIDSET,  /* set: UIDs */
    IMAP_SEARCH_SAVED,   /* "$": the saved search result (RFC 5182) */
    IMAP_SEARCH_FLAG,    /* flag: one IMAP_SEARCH_SEEN... bit is set */
    IMAP_SEARCH_KEYWORD, /* str: the keyword is set */
    IMAP_SEARCH_RECENT,
    /* day: internal date (BEFORE ON SINCE), Date: header (SENT*), save date (SAVED*) */
    IMAP_SEARCH_BEFORE,
    IMAP_SEARCH_ON,
    IMAP_SEARCH_SINCE,
    IMAP_SEARCH_SENTBEFORE,
    IMAP_SEARCH_SENTON,
    IMAP_SEARCH_SENTSINCE,
    IMAP_SEARCH_SAVEDBEFORE,
    IMAP_SEARCH_SAVEDON,
    IMAP_SEARCH_SAVEDSINCE,
    /* number */
    IMAP_SEARCH_LARGER,  /* RFC822.SIZE > number */
    IMAP_SEARCH_SMALLER, /* RFC822.SIZE < number */
    IMAP_SEARCH_OLDER,   /* internal date more than number seconds ago (RFC 5032) */
    IMAP_SEARCH_YOUNGER, /* internal date at most number seconds ago */
    IMAP_SEARCH_MODSEQ,  /* modseq >= number (RFC 7162 §3.1.5) */
    /* str: substring, ASCII case-insensitive (RFC 9051 §6.4.4) */
    IMAP_SEARCH_BCC,
    IMAP_SEARCH_BODY,
    IMAP_SEARCH_CC,
    IMAP_SEARCH_FROM,
    IMAP_SEARCH_SUBJECT,
    IMAP_SEARCH_TEXT,
    IMAP_SEARCH_TO,
    IMAP_SEARCH_HEADER, /* field and str; an empty str matches every message with the field */
};

struct imap_search_key {
    enum imap_search_op op;
    unsigned flag;                    /* FLAG */
    int32_t day;                      /* date keys: days since 1970-01-01 */
    uint64_t number;                  /* LARGER ... MODSEQ */
    char *str;                        /* KEYWORD, string keys: NUL-terminated UTF-8 */
    char *field;                      /* HEADER: the field name as sent */
    struct imap_seqset *set;          /* SEQSET, UIDSET */
    struct imap_search_key *children; /* AND, OR, NOT */
    size_t nchildren;
};

enum imap_search_command {
    IMAP_SEARCH_CMD_SEARCH,
    IMAP_SEARCH_CMD_SORT,
    IMAP_SEARCH_CMD_THREAD,
};

enum imap_sort_key {
    IMAP_SORT_ARRIVAL,     /* internal date */
    IMAP_SORT_CC,          /* addr-mailbox of the first Cc address */
    IMAP_SORT_DATE,        /* sent date, else internal date (RFC 5256 §2.2) */
    IMAP_SORT_FROM,        /* addr-mailbox of the first From address */
    IMAP_SORT_SIZE,        /* RFC822.SIZE */
    IMAP_SORT_SUBJECT,     /* base subject (RFC 5256 §2.1) */
    IMAP_SORT_TO,          /* addr-mailbox of the first To address */
    IMAP_SORT_DISPLAYFROM, /* RFC 5957 §3: display name, else addr-spec, of the first From */
    IMAP_SORT_DISPLAYTO,
};

struct imap_sort_criterion {
    enum imap_sort_key key;
    bool reverse; /* REVERSE applies to this criterion only (RFC 5256 §3) */
};

enum imap_thread_alg {
    IMAP_THREAD_ORDEREDSUBJECT,
    IMAP_THREAD_REFERENCES,
};

struct imap_search_program {
    enum imap_search_command command;
    struct imap_search_key root; /* an AND of the top-level keys */
    bool esearch;                /* RETURN was given: answer with ESEARCH */
    unsigned ret;                /* IMAP_SEARCH_RET_*; RETURN () is ALL */
    bool modseq;                 /* a MODSEQ key is used: report MODSEQ (RFC 7162 §3.1.5) */
    bool uses_saved;             /* "$" is used */
    bool uses_seq;               /* message sequence numbers are used */
    size_t nkeys;                /* keys in the tree */
    struct imap_sort_criterion sort[IMAP_SEARCH_MAX_SORT]; /* SORT */
    size_t nsort;
    enum imap_thread_alg thread; /* THREAD */
};

/* What "*" means in this mailbox (see above). */
struct imap_search_context {
    uint32_t messages; /* messages in the session's view; 0: "*" in a sequence set matches none */
    uint32_t max_uid;  /* highest UID in the view; 0 when empty */
};

/* Parses args[0..count) (the arguments after SEARCH / SORT / THREAD) into a new program in
 * *prog_r. 0 ok; IMAP_SEARCH_EBAD, IMAP_SEARCH_EBADCHARSET or IMAP_SEARCH_ENOMEM with a
 * message for the reply in err (may be NULL); *prog_r is then NULL. */
int imap_search_parse(enum imap_search_command command, const struct imap_arg *args, size_t count,
                      const struct imap_search_context *ctx, struct imap_search_program **prog_r,
                      char *err, size_t errlen);

void imap_search_program_free(struct imap_search_program **prog);

/* The 1-based sequence number of uid in uids[0..n) (ascending, the session's view), 0 when it
 * is not there. Binary search. */
uint32_t imap_search_uid_to_seq(const uint32_t *uids, size_t n, uint32_t uid);

/* What RETURN (SAVE) keeps (RFC 5182 §2.4): with MIN and/or MAX and neither ALL nor COUNT, just
 * those messages, else the whole result. nums[0..n) is the result in ascending order (the
 * smallest and largest being its MIN and MAX); the saved set is made of those numbers (the
 * caller saves UIDs). New set in *saved_r; -1 out of memory. */
int imap_search_save_result(const struct imap_search_program *prog, const uint32_t *nums, size_t n,
                            struct imap_seqset **saved_r);

/* Appends the untagged response of a SEARCH to out, CRLF included: "* SEARCH 2 5 (MODSEQ 9)"
 * (RFC 9051 §7.3.5, RFC 7162 §3.1.5) or, when prog->esearch, "* ESEARCH (TAG "t") UID MIN 2
 * MAX 5 COUNT 2 ALL 2,5 MODSEQ 9" (RFC 4731 §3.1, §3.2; RFC 9051 §7.3.4). nums[0..n) are the
 * numbers to report in ascending order (sequence numbers, or UIDs when uid), count the number
 * of matches (for COUNT) and highest_modseq the modseq to report when prog->modseq (left out
 * when no message matched). With RETURN (SAVE) alone nothing is appended (RFC 5182 §2.4).
 * IMAP4rev2 answers every SEARCH with ESEARCH (RFC 9051 §6.4.4): force_esearch makes the
 * plain form ESEARCH ALL. Check out->failed for out of memory. */
void imap_search_format(const struct imap_search_program *prog, const char *tag, bool uid,
                        bool force_esearch, const uint32_t *nums, size_t n, uint64_t count,
                        long long highest_modseq, struct imap_envelope_out *out);

/* Appends "* SORT n1 n2 ... [(MODSEQ m)]" CRLF (RFC 5256 §4, RFC 7162 §3.1.5): nums in sort
 * order. */
void imap_search_format_sort(const struct imap_search_program *prog, const uint32_t *nums, size_t n,
                             long long highest_modseq, struct imap_envelope_out *out);

/* Days since 1970-01-01 of a date-text "1-Feb-1994" (RFC 9051 §9), 0 ok / -1 invalid. */
int imap_search_parse_date(const char *s, int32_t *day_r);

#endif
