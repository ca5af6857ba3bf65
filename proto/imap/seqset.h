/* IMAP sequence sets (RFC 9051 §9 sequence-set, RFC 5182 "$"): parsed into a sorted list of
 * disjoint, non-adjacent ranges, and built and formatted back for responses (UIDPLUS COPYUID,
 * ESEARCH ALL: "1:3,5").
 *
 * Numbers are nz-number: 1 to 4294967295, no leading zero, so 0 is an error. A range a:b may be
 * written in either order. "*" stands for the largest number in use, which the caller passes as
 * `star`: the message count for sequence numbers, the highest UID for UIDs (RFC 9051 §9: "3291:*"
 * with a highest UID of 100 is 100:3291, so it holds UID 100). With an empty mailbox there is no
 * such number: pass star 0 and every item that names "*" is left out of the set (it can contain
 * no message); imap_seqset_has_star() tells the caller it was there, since what to answer then
 * is the command's business (a UID command just matches nothing; RFC 9051 makes "*" in a
 * message sequence number set in an empty mailbox an error for most commands).
 *
 * "$" (RFC 5182 SEARCHRES, the saved search result) is a whole set on its own: the parser
 * returns a set marked saved, with no ranges, and the caller substitutes the saved result. */
#ifndef FLOE_PROTO_IMAP_SEQSET_H
#define FLOE_PROTO_IMAP_SEQSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMAP_SEQSET_MAX_RANGES 10000 /* default bound on items parsed and ranges held */

struct imap_seq_range {
    uint32_t lo, hi; /* lo <= hi */
};

struct imap_seqset;

/* An empty set holding at most max_ranges ranges (0: IMAP_SEQSET_MAX_RANGES). NULL when out of
 * memory. */
struct imap_seqset *imap_seqset_new(size_t max_ranges);
void imap_seqset_free(struct imap_seqset **set);
/* Empties the set (and forgets "$" and "*"). */
void imap_seqset_clear(struct imap_seqset *set);

/* Parses s[0..len) into a new set in *set_r, with "*" meaning star (see above). At most
 * max_ranges items (0: the default) may be written, else "too many ranges". 0 ok; -1 with a
 * message in err (may be NULL) on a syntax error, an out-of-range number, too many ranges or
 * out of memory. */
int imap_seqset_parse(const char *s, size_t len, uint32_t star, size_t max_ranges,
                      struct imap_seqset **set_r, char *err, size_t errlen);

/* True when the parsed text was "$". */
bool imap_seqset_is_saved(const struct imap_seqset *set);
/* True when the parsed text used "*". */
bool imap_seqset_has_star(const struct imap_seqset *set);

/* Adds n, or the numbers lo..hi in either order, merging with what is there. -1 for 0 or when
 * the set would need more than its max_ranges ranges (the set is then unchanged) or out of
 * memory. */
int imap_seqset_add(struct imap_seqset *set, uint32_t n);
int imap_seqset_add_range(struct imap_seqset *set, uint32_t lo, uint32_t hi);

/* The ranges in ascending order, disjoint and never adjacent (5:6 and 7:9 are one range). */
const struct imap_seq_range *imap_seqset_ranges(const struct imap_seqset *set, size_t *count_r);

bool imap_seqset_contains(const struct imap_seqset *set, uint32_t n);
bool imap_seqset_is_empty(const struct imap_seqset *set);
/* How many numbers the set holds. */
uint64_t imap_seqset_count(const struct imap_seqset *set);
/* Smallest and largest member; 0 when empty. */
uint32_t imap_seqset_min(const struct imap_seqset *set);
uint32_t imap_seqset_max(const struct imap_seqset *set);

/* Iteration over every number in ascending order:
 *     struct imap_seqset_iter it;
 *     uint32_t n;
 *     imap_seqset_iter_init(&it);
 *     while (imap_seqset_iter_next(set, &it, &n)) ... */
struct imap_seqset_iter {
    size_t range;
    uint64_t next; /* 0: start of the range */
};
void imap_seqset_iter_init(struct imap_seqset_iter *it);
bool imap_seqset_iter_next(const struct imap_seqset *set, struct imap_seqset_iter *it,
                           uint32_t *n_r);

/* The set as text ("1:3,5"; "$" for a saved-result set; "" when empty, which is no valid
 * sequence set: the caller leaves the item out). New NUL-terminated string in *out_r, length
 * in *len_r (may be NULL). -1 when out of memory. */
int imap_seqset_format(const struct imap_seqset *set, char **out_r, size_t *len_r);

#endif
