/* IMAP sequence sets (see seqset.h).
 *
 * Parsing collects every item as a range (bounded by max_ranges), sorts them and merges
 * overlapping and adjacent ones in one pass: O(n log n) whatever order the client wrote them in.
 * Adding one range at a time (building response sets) appends when it comes after the last
 * range, the usual case for ascending UIDs, and otherwise inserts with a binary search. Ends of
 * ranges are compared in 64 bits so 4294967295 + 1 cannot wrap. */
#include "proto/imap/seqset.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct imap_seqset {
    struct imap_seq_range *r;
    size_t count, cap, max;
    bool saved, star;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

struct imap_seqset *imap_seqset_new(size_t max_ranges)
{
    struct imap_seqset *set = calloc(1, sizeof(*set));
    if (!set)
        return NULL;
    set->max = max_ranges ? max_ranges : IMAP_SEQSET_MAX_RANGES;
    return set;
}

void imap_seqset_free(struct imap_seqset **set)
{
    if (!set || !*set)
        return;
    free((*set)->r);
    free(*set);
    *set = NULL;
}

void imap_seqset_clear(struct imap_seqset *set)
{
    set->count = 0;
    set->saved = false;
    set->star = false;
}

static int grow(struct imap_seqset *set, size_t need)
{
    if (need <= set->cap)
        return 0;
    if (need > set->max)
        return -1;
    size_t cap = set->cap ? set->cap : 8;
    while (cap < need)
        cap *= 2;
    if (cap > set->max)
        cap = set->max;
    struct imap_seq_range *r = realloc(set->r, cap * sizeof(*r));
    if (!r)
        return -1;
    set->r = r;
    set->cap = cap;
    return 0;
}

static int cmp_range(const void *a, const void *b)
{
    const struct imap_seq_range *x = a, *y = b;
    if (x->lo != y->lo)
        return x->lo < y->lo ? -1 : 1;
    if (x->hi != y->hi)
        return x->hi < y->hi ? -1 : 1;
    return 0;
}

/* Sorts and merges set->r[0..count) in place. */
static void normalise(struct imap_seqset *set)
{
    if (set->count < 2)
        return;
    qsort(set->r, set->count, sizeof(*set->r), cmp_range);
    size_t out = 0;
    for (size_t i = 1; i < set->count; i++) {
        struct imap_seq_range *last = &set->r[out];
        if ((uint64_t)set->r[i].lo <= (uint64_t)last->hi + 1) {
            if (set->r[i].hi > last->hi)
                last->hi = set->r[i].hi;
        } else {
            set->r[++out] = set->r[i];
        }
    }
    set->count = out + 1;
}

/* RFC 9051 §9: seq-number = nz-number / "*"; nz-number = digit-nz *DIGIT, below 2^32.
 * Reads one at s[*i]; 0 ok with *n_r (0 for "*"). */
static int parse_number(const char *s, size_t len, size_t *i, uint32_t *n_r, char *err,
                        size_t errlen)
{
    if (*i < len && s[*i] == '*') {
        (*i)++;
        *n_r = 0;
        return 0;
    }
    if (*i < len && s[*i] == '$') {
        set_err(err, errlen, "\"$\" must stand alone");
        return -1;
    }
    if (*i >= len || s[*i] < '0' || s[*i] > '9') {
        set_err(err, errlen, "number expected at offset %zu", *i);
        return -1;
    }
    if (s[*i] == '0') {
        set_err(err, errlen, "0 or a leading zero at offset %zu", *i);
        return -1;
    }
    uint64_t v = 0;
    while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
        v = v * 10 + (uint64_t)(s[*i] - '0');
        if (v > UINT32_MAX) {
            set_err(err, errlen, "number above 4294967295");
            return -1;
        }
        (*i)++;
    }
    *n_r = (uint32_t)v;
    return 0;
}

int imap_seqset_parse(const char *s, size_t len, uint32_t star, size_t max_ranges,
                      struct imap_seqset **set_r, char *err, size_t errlen)
{
    *set_r = NULL;
    struct imap_seqset *set = imap_seqset_new(max_ranges);
    if (!set) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    /* RFC 5182 §2.1: seq-last-command = "$" stands alone. */
    if (len == 1 && s[0] == '$') {
        set->saved = true;
        *set_r = set;
        return 0;
    }
    if (len == 0) {
        set_err(err, errlen, "empty sequence set");
        goto fail;
    }
    size_t i = 0, items = 0;
    for (;;) {
        uint32_t a, b;
        if (parse_number(s, len, &i, &a, err, errlen) < 0)
            goto fail;
        b = a;
        bool a_star = a == 0, b_star = a_star;
        if (i < len && s[i] == ':') {
            i++;
            if (parse_number(s, len, &i, &b, err, errlen) < 0)
                goto fail;
            b_star = b == 0;
        }
        if (++items > set->max) {
            set_err(err, errlen, "too many ranges (more than %zu)", set->max);
            goto fail;
        }
        if (a_star || b_star)
            set->star = true;
        /* with an empty mailbox ("*" has no value) an item naming "*" holds nothing */
        if (!((a_star || b_star) && star == 0)) {
            if (a_star)
                a = star;
            if (b_star)
                b = star;
            if (grow(set, set->count + 1) < 0) {
                set_err(err, errlen, "out of memory");
                goto fail;
            }
            set->r[set->count].lo = a < b ? a : b;
            set->r[set->count].hi = a < b ? b : a;
            set->count++;
        }
        if (i == len)
            break;
        if (s[i] != ',') {
            set_err(err, errlen, "unexpected character at offset %zu", i);
            goto fail;
        }
        i++;
    }
    normalise(set);
    *set_r = set;
    return 0;
fail:
    imap_seqset_free(&set);
    return -1;
}

bool imap_seqset_is_saved(const struct imap_seqset *set)
{
    return set->saved;
}

bool imap_seqset_has_star(const struct imap_seqset *set)
{
    return set->star;
}

/* Index of the first range whose hi + 1 >= n (the first that n could touch or precede). */
static size_t lower(const struct imap_seqset *set, uint64_t n)
{
    size_t lo = 0, hi = set->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uint64_t)set->r[mid].hi + 1 < n)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int imap_seqset_add_range(struct imap_seqset *set, uint32_t lo, uint32_t hi)
{
    if (lo == 0 || hi == 0)
        return -1;
    if (lo > hi) {
        uint32_t t = lo;
        lo = hi;
        hi = t;
    }
    /* fast path: at or after the end */
    if (set->count > 0 && (uint64_t)set->r[set->count - 1].hi + 1 >= lo &&
        set->r[set->count - 1].lo <= lo) {
        if (hi > set->r[set->count - 1].hi)
            set->r[set->count - 1].hi = hi;
        return 0;
    }
    size_t i = lower(set, lo);
    /* ranges i..j-1 overlap or touch [lo, hi] */
    size_t j = i;
    while (j < set->count && (uint64_t)set->r[j].lo <= (uint64_t)hi + 1)
        j++;
    if (j == i) { /* nothing to merge with: insert at i */
        if (set->count >= set->max || grow(set, set->count + 1) < 0)
            return -1;
        memmove(&set->r[i + 1], &set->r[i], (set->count - i) * sizeof(*set->r));
        set->r[i].lo = lo;
        set->r[i].hi = hi;
        set->count++;
        return 0;
    }
    uint32_t nlo = set->r[i].lo < lo ? set->r[i].lo : lo;
    uint32_t nhi = set->r[j - 1].hi > hi ? set->r[j - 1].hi : hi;
    set->r[i].lo = nlo;
    set->r[i].hi = nhi;
    memmove(&set->r[i + 1], &set->r[j], (set->count - j) * sizeof(*set->r));
    set->count -= j - i - 1;
    return 0;
}

int imap_seqset_add(struct imap_seqset *set, uint32_t n)
{
    return imap_seqset_add_range(set, n, n);
}

const struct imap_seq_range *imap_seqset_ranges(const struct imap_seqset *set, size_t *count_r)
{
    *count_r = set->count;
    return set->r;
}

bool imap_seqset_contains(const struct imap_seqset *set, uint32_t n)
{
    if (n == 0)
        return false;
    size_t i = lower(set, (uint64_t)n + 1); /* first range with hi >= n */
    return i < set->count && set->r[i].lo <= n && n <= set->r[i].hi;
}

bool imap_seqset_is_empty(const struct imap_seqset *set)
{
    return set->count == 0;
}

uint64_t imap_seqset_count(const struct imap_seqset *set)
{
    uint64_t n = 0;
    for (size_t i = 0; i < set->count; i++)
        n += (uint64_t)set->r[i].hi - set->r[i].lo + 1;
    return n;
}

uint32_t imap_seqset_min(const struct imap_seqset *set)
{
    return set->count ? set->r[0].lo : 0;
}

uint32_t imap_seqset_max(const struct imap_seqset *set)
{
    return set->count ? set->r[set->count - 1].hi : 0;
}

void imap_seqset_iter_init(struct imap_seqset_iter *it)
{
    it->range = 0;
    it->next = 0;
}

bool imap_seqset_iter_next(const struct imap_seqset *set, struct imap_seqset_iter *it,
                           uint32_t *n_r)
{
    while (it->range < set->count) {
        const struct imap_seq_range *r = &set->r[it->range];
        if (it->next == 0)
            it->next = r->lo;
        if (it->next <= r->hi) {
            *n_r = (uint32_t)it->next++;
            return true;
        }
        it->range++;
        it->next = 0;
    }
    return false;
}

int imap_seqset_format(const struct imap_seqset *set, char **out_r, size_t *len_r)
{
    /* "4294967295:4294967295," is at most 22 bytes per range */
    size_t cap = set->saved ? 2 : set->count * 22 + 1;
    char *out = malloc(cap);
    if (!out)
        return -1;
    size_t n = 0;
    if (set->saved) {
        out[n++] = '$';
    } else {
        for (size_t i = 0; i < set->count; i++) {
            const struct imap_seq_range *r = &set->r[i];
            int w = r->lo == r->hi
                        ? snprintf(out + n, cap - n, "%s%u", i ? "," : "", (unsigned)r->lo)
                        : snprintf(out + n, cap - n, "%s%u:%u", i ? "," : "", (unsigned)r->lo,
                                   (unsigned)r->hi);
            if (w < 0 || (size_t)w >= cap - n) { /* cannot happen with the bound above */
                free(out);
                return -1;
            }
            n += (size_t)w;
        }
    }
    out[n] = '\0';
    *out_r = out;
    if (len_r)
        *len_r = n;
    return 0;
}
