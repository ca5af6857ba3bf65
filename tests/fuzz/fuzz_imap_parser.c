/* libFuzzer harness for the IMAP command reader (proto/imap/parser.c). The first byte picks the
 * feed size (to exercise resumption at every boundary), the second the options: LITERAL-, small
 * limits, streaming or refusing big literals, raw-line reads between commands. The rest is the
 * byte stream from a client. Checks: the reader never claims more bytes than it was given,
 * "more" means all was taken, every command tree respects the limits (argument count, depth,
 * NUL-terminated strings of the stated length, valid UTF-8 in quoted strings, an upper-case
 * name), streamed literal data adds up to the announced size, and the reader always makes
 * progress unless it reports a fatal error. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/imap/parser.h"
#include "proto/text/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t walk(const struct imap_arg *args, size_t count, unsigned depth,
                   const struct imap_parser_limits *lim)
{
    size_t nodes = 0;
    if (depth > lim->max_depth)
        abort();
    for (size_t i = 0; i < count; i++) {
        const struct imap_arg *a = &args[i];
        nodes++;
        switch (a->type) {
        case IMAP_ARG_LIST:
            if (a->str || (a->count && !a->list))
                abort();
            nodes += walk(a->list, a->count, depth + 1, lim);
            break;
        case IMAP_ARG_ATOM:
        case IMAP_ARG_NIL:
            if (!a->str || a->len == 0 || strlen(a->str) != a->len)
                abort();
            for (size_t k = 0; k < a->len; k++)
                if ((unsigned char)a->str[k] <= 0x20 || (unsigned char)a->str[k] >= 0x7f)
                    if (!memchr(a->str, '[', k)) /* only a section may hold spaces */
                        abort();
            break;
        case IMAP_ARG_QUOTED:
            if (!a->str || strlen(a->str) != a->len || !utf8_check(a->str, a->len, 0))
                abort();
            break;
        case IMAP_ARG_LITERAL:
        case IMAP_ARG_LITERAL8:
            if (!a->str || a->str[a->streamed ? 0 : a->len] != '\0')
                abort();
            if (!a->streamed && a->len > lim->max_literal)
                abort();
            if (a->type == IMAP_ARG_LITERAL && !a->streamed && strlen(a->str) != a->len)
                abort();
            break;
        }
    }
    return nodes;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t step = (size_t)(data[0] % 17) + 1;
    uint8_t opt = data[1];
    const char *in = (const char *)data + 2;
    size_t len = size - 2;

    struct imap_parser_limits lim;
    imap_parser_limits_default(&lim);
    lim.literal_minus = opt & 1;
    if (opt & 2) {
        lim.max_line = 64;
        lim.max_literal = 16;
        lim.max_command = 256;
        lim.max_args = 16;
        lim.max_depth = 4;
        lim.max_discard = 64;
    }
    struct imap_parser *p = imap_parser_new(&lim);
    if (!p)
        return 0;
    size_t off = 0, stalls = 0, commands = 0, literals = 0;
    uint64_t streaming = 0, streamed = 0;
    for (;;) {
        size_t avail = len - off < step ? len - off : step;
        size_t used = (size_t)-1;
        enum imap_parse_event ev = imap_parser_feed(p, in + off, avail, &used);
        if (used > avail)
            abort();
        off += used;
        stalls = used ? 0 : stalls + 1;
        if (stalls > 3)
            abort(); /* no progress */
        bool stop = false;
        switch (ev) {
        case IMAP_PARSE_MORE:
            if (used != avail)
                abort();
            if (off == len)
                stop = true;
            break;
        case IMAP_PARSE_CONTINUE:
            break;
        case IMAP_PARSE_LITERAL: {
            struct imap_literal_info info;
            if (imap_parser_literal_info(p, &info) < 0 || info.size <= lim.max_literal ||
                !imap_parser_command_name(p))
                abort();
            if ((opt & 4) && (++literals & 1)) {
                if (imap_parser_literal_stream(p) < 0)
                    abort();
                streaming = info.size;
                streamed = 0;
            } else if (imap_parser_literal_refuse(p) < 0) {
                abort();
            }
            break;
        }
        case IMAP_PARSE_LITERAL_DATA:
            if (used == 0)
                abort();
            streamed += used;
            if (streamed + imap_parser_literal_remaining(p) != streaming)
                abort();
            break;
        case IMAP_PARSE_COMMAND: {
            const struct imap_command *c = imap_parser_command(p);
            if (!c || !c->tag[0] || !c->name[0])
                abort();
            for (const char *s = c->name; *s; s++)
                if (*s >= 'a' && *s <= 'z')
                    abort();
            if (walk(c->args, c->count, 0, &lim) > lim.max_args)
                abort();
            imap_parser_next(p);
            if ((opt & 8) && ++commands % 3 == 0 && imap_parser_read_line(p) < 0)
                abort();
            break;
        }
        case IMAP_PARSE_LINE: {
            size_t n;
            const char *l = imap_parser_line(p, &n);
            if (!l || strlen(l) != n || n > lim.max_line)
                abort();
            imap_parser_next(p);
            break;
        }
        case IMAP_PARSE_ERROR: {
            const char *msg = NULL;
            if (imap_parser_error(p, &msg) == IMAP_ERR_NONE || !msg)
                abort();
            if (imap_parser_error_fatal(p))
                stop = true;
            break;
        }
        }
        if (stop)
            break;
    }
    imap_parser_free(&p);
    return 0;
}
