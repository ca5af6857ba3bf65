/* libFuzzer harness for the small IMAP text modules: sequence sets (proto/imap/seqset.c),
 * modified UTF-7 (proto/imap/utf7.c) and string output (proto/imap/quote.c), each run on the
 * whole input. Checks: a parsed set is sorted, disjoint, non-adjacent and within 1..2^32-1, its
 * text parses back to the same set, membership agrees with the ranges; whatever decodes as
 * modified UTF-7 encodes back to the same bytes (one spelling per name) and whatever encodes
 * decodes back; a string written by quote.c is read back unchanged by the command reader. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/imap/parser.h"
#include "proto/imap/quote.h"
#include "proto/imap/seqset.h"
#include "proto/imap/utf7.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_seqset(const char *s, size_t len, uint32_t star)
{
    struct imap_seqset *set;
    char err[128];
    if (imap_seqset_parse(s, len, star, 64, &set, err, sizeof(err)) < 0)
        return;
    size_t n;
    const struct imap_seq_range *r = imap_seqset_ranges(set, &n);
    if (n > 64)
        abort();
    for (size_t i = 0; i < n; i++) {
        if (r[i].lo == 0 || r[i].lo > r[i].hi)
            abort();
        if (i > 0 && (uint64_t)r[i - 1].hi + 1 >= r[i].lo)
            abort();
        if (!imap_seqset_contains(set, r[i].lo) || !imap_seqset_contains(set, r[i].hi))
            abort();
        if (r[i].lo > 1 && imap_seqset_contains(set, r[i].lo - 1))
            abort();
        if (r[i].hi < UINT32_MAX && imap_seqset_contains(set, r[i].hi + 1))
            abort();
    }
    if (imap_seqset_contains(set, 0))
        abort();
    char *text;
    size_t tlen;
    if (imap_seqset_format(set, &text, &tlen) < 0)
        abort();
    if (n > 0 || imap_seqset_is_saved(set)) {
        struct imap_seqset *again;
        if (imap_seqset_parse(text, tlen, star, 64, &again, NULL, 0) < 0)
            abort();
        size_t n2;
        const struct imap_seq_range *r2 = imap_seqset_ranges(again, &n2);
        if (n2 != n || (n && memcmp(r, r2, n * sizeof(*r)) != 0))
            abort();
        imap_seqset_free(&again);
    }
    free(text);
    /* rebuilding by single adds gives the same set */
    struct imap_seqset *built = imap_seqset_new(64);
    if (!built)
        abort();
    for (size_t i = n; i-- > 0;)
        if (imap_seqset_add_range(built, r[i].hi, r[i].lo) < 0)
            abort();
    size_t nb;
    const struct imap_seq_range *rb = imap_seqset_ranges(built, &nb);
    if (nb != n || (n && memcmp(r, rb, n * sizeof(*r)) != 0))
        abort();
    imap_seqset_free(&built);
    imap_seqset_free(&set);
}

static void check_utf7(const char *s, size_t len)
{
    char *dec, *enc;
    size_t dlen, elen;
    if (imap_utf7_decode(s, len, &dec, &dlen, NULL, 0) == 0) {
        if (imap_utf7_encode(dec, dlen, &enc, &elen, NULL, 0) < 0)
            abort();
        if (elen != len || memcmp(enc, s, len) != 0)
            abort();
        free(enc);
        free(dec);
    }
    if (imap_utf7_encode(s, len, &enc, &elen, NULL, 0) == 0) {
        for (size_t i = 0; i < elen; i++)
            if (enc[i] < 0x20 || enc[i] > 0x7e)
                abort();
        if (imap_utf7_decode(enc, elen, &dec, &dlen, NULL, 0) < 0)
            abort();
        if (dlen != len || memcmp(dec, s, len) != 0)
            abort();
        free(enc);
        free(dec);
    }
}

static void check_quote(const char *s, size_t len, unsigned flags)
{
    struct imap_envelope_out out = {0};
    if (imap_quote_append(&out, s, len, flags) < 0) {
        if (!memchr(s, '\0', len) || out.len != 0)
            abort();
        return;
    }
    if (out.failed)
        abort();
    imap_envelope_out_add(&out, "\r\n", 2);
    struct imap_parser_limits lim;
    imap_parser_limits_default(&lim);
    lim.max_line = lim.max_literal = 1u << 20; /* escapes may double the input */
    lim.max_command = 4u << 20;
    struct imap_parser *p = imap_parser_new(&lim);
    size_t used, off = 0;
    if (!p || imap_parser_feed(p, "T X ", 4, &used) != IMAP_PARSE_MORE)
        abort();
    enum imap_parse_event ev;
    while ((ev = imap_parser_feed(p, out.data + off, out.len - off, &used)) == IMAP_PARSE_CONTINUE)
        off += used;
    if (ev != IMAP_PARSE_COMMAND)
        abort();
    const struct imap_command *c = imap_parser_command(p);
    const char *back =
        (flags & IMAP_QUOTE_ASTRING) ? imap_arg_astring(&c->args[0]) : imap_arg_string(&c->args[0]);
    if (c->count != 1 || !back || c->args[0].len != len || memcmp(back, s, len) != 0)
        abort();
    imap_parser_free(&p);
    imap_envelope_out_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    uint32_t star = size >= 4 ? (uint32_t)data[0] << 24 | (uint32_t)data[size - 1] : 0;
    check_seqset(s, size, star);
    check_seqset(s, size, 0);
    check_seqset(s, size, UINT32_MAX);
    check_utf7(s, size);
    if (size < 200000)
        for (unsigned flags = 0; flags < 4; flags++)
            check_quote(s, size, flags);
    return 0;
}
