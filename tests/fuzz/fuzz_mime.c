/* libFuzzer harness for the streaming MIME parser and the IMAP formatters on its output.
 *
 * The first byte chooses how the rest is split into feeds (pieces of 1..32 bytes, or whole)
 * and whether small limits are used (so the limit paths run on small inputs); the rest is the
 * message. Checks: splitting does not change the result (compared with a one-shot parse),
 * every offset lies within the message, children lie within their parent's body and in order,
 * the counts and the search text respect the limits and the search text is valid UTF-8, and
 * ENVELOPE / BODY / BODYSTRUCTURE formatting and section lookup never fail. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/imap/bodystructure.h"
#include "proto/imap/envelope.h"
#include "proto/mime/mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

static struct mime_message *parse(const char *msg, size_t len, size_t step,
                                  const struct mime_limits *lim)
{
    struct mime_parser *p = mime_parser_new(lim);
    check(p != NULL);
    for (size_t off = 0; off < len; off += step)
        check(mime_parser_feed(p, msg + off, len - off < step ? len - off : step) == 0);
    struct mime_message *m = mime_parser_finish(&p);
    check(m != NULL && p == NULL);
    return m;
}

static size_t walk(const struct mime_part *p, uint64_t lo, uint64_t hi, size_t depth,
                   size_t max_depth)
{
    check(p->type != NULL && p->subtype != NULL);
    check(depth <= max_depth);
    check(p->header_offset >= lo && p->header_offset + p->header_size == p->body_offset);
    check(p->body_offset + p->body_size <= hi);
    check(p->body_lines <= p->body_size);
    size_t n = 1;
    uint64_t prev = p->body_offset;
    for (size_t i = 0; i < p->nchildren; i++) {
        const struct mime_part *c = &p->children[i];
        check(c->header_offset >= prev);
        n += walk(c, p->body_offset, p->body_offset + p->body_size, depth + 1, max_depth);
        prev = c->body_offset + c->body_size;
    }
    if (mime_part_is_message(p) && p->nchildren > 0)
        check(p->nchildren == 1 && p->children[0].envelope != NULL);
    if (p->nchildren > 0)
        check(mime_part_is_multipart(p) || mime_part_is_message(p));
    return n;
}

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void same(const struct mime_part *a, const struct mime_part *b)
{
    check(same_str(a->type, b->type) && same_str(a->subtype, b->subtype));
    check(a->header_offset == b->header_offset && a->header_size == b->header_size);
    check(a->body_offset == b->body_offset && a->body_size == b->body_size);
    check(a->body_lines == b->body_lines && a->nchildren == b->nchildren);
    check(a->nparams == b->nparams && a->ndisposition_params == b->ndisposition_params);
    check(same_str(a->encoding, b->encoding) && same_str(a->disposition, b->disposition));
    check(same_str(a->id, b->id) && same_str(a->description, b->description));
    check((a->envelope == NULL) == (b->envelope == NULL));
    if (a->envelope)
        check(same_str(a->envelope->subject, b->envelope->subject) &&
              same_str(a->envelope->from, b->envelope->from));
    for (size_t i = 0; i < a->nparams; i++)
        check(same_str(a->params[i].value, b->params[i].value));
    for (size_t i = 0; i < a->nchildren; i++)
        same(&a->children[i], &b->children[i]);
}

static void formats(const struct mime_part *p)
{
    char *s;
    size_t n;
    check(imap_bodystructure_format(p, true, &s, &n) == 0 && strlen(s) <= n);
    free(s);
    check(imap_bodystructure_format(p, false, &s, &n) == 0);
    free(s);
    if (p->envelope) {
        check(imap_envelope_format(p->envelope, &s, &n) == 0 && s[0] == '(' && s[n - 1] == ')');
        free(s);
    }
    for (size_t i = 0; i < p->nchildren; i++)
        formats(&p->children[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)(data[0] & 0x1F) + 1;
    bool small = data[0] & 0x40;
    if (data[0] & 0x20)
        step = size; /* whole */
    const char *msg = (const char *)data + 1;
    size_t len = size - 1;
    struct mime_limits lim = {0};
    if (small)
        lim = (struct mime_limits){.max_parts = 20,
                                   .max_depth = 4,
                                   .max_header_bytes = 256,
                                   .max_search_text = 64,
                                   .max_meta_bytes = 2048};
    struct mime_message *m = parse(msg, len, step, &lim);
    struct mime_message *whole = parse(msg, len, len ? len : 1, &lim);

    size_t max_parts = small ? 20 : MIME_DEFAULT_MAX_PARTS;
    size_t max_depth = small ? 4 : MIME_DEFAULT_MAX_DEPTH;
    size_t max_text = small ? 64 : MIME_DEFAULT_MAX_SEARCH_TEXT;
    check(m->size == len && m->root.header_offset == 0);
    check(m->root.body_offset + m->root.body_size == len);
    check(walk(&m->root, 0, len, 0, max_depth) == m->nparts && m->nparts <= max_parts);
    check(m->search_text_len <= max_text && strlen(m->search_text) == m->search_text_len);
    for (size_t i = 0; i < m->search_text_len;) {
        int l =
            mime_header_utf8_len((const unsigned char *)m->search_text + i, m->search_text_len - i);
        check(l > 0);
        i += (size_t)l;
    }
    same(&m->root, &whole->root);
    check(m->search_text_len == whole->search_text_len &&
          memcmp(m->search_text, whole->search_text, m->search_text_len) == 0);
    check(m->limits == whole->limits && m->lines == whole->lines);

    formats(&m->root);
    static const char *const sections[] = {"", "1", "2", "1.1", "1.2", "2.1", "1.1.1", "3.2.1"};
    for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
        const struct mime_part *p = mime_message_section(m, sections[i]);
        if (p)
            check(p->body_offset + p->body_size <= len);
    }
    mime_message_free(&m);
    mime_message_free(&whole);
    return 0;
}
