/* libFuzzer harness for the IMAP service's syntax helpers (node/imap/syntax.c). The first byte
 * picks what the rest is:
 *   0: FETCH data items and modifiers, as the text after "t FETCH 1 " on one command line, read
 *      by the real command reader;
 *   1: a stored "parts" JSON document, looked up for a few sections;
 *   2: a body to decode as base64, then as quoted-printable, fed in two pieces;
 *   3: an IMAP date-time;
 *   4: a LIST pattern and a name, split at the first NUL.
 * Checks: a parsed spec respects its limits and names every section item; offsets come back
 * only for a section that is there; decoded output never exceeds the bound the decoder
 * promises; a parsed date-time formats to text that, read again, names the same time. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/imap/syntax.h"
#include "proto/imap/parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fetch_items(const char *in, size_t len)
{
    char *line = malloc(len + 16);
    if (!line)
        return;
    memcpy(line, "t FETCH 1 ", 10);
    memcpy(line + 10, in, len);
    memcpy(line + 10 + len, "\r\n", 2);
    struct imap_parser *p = imap_parser_new(NULL);
    size_t used;
    if (p && imap_parser_feed(p, line, len + 12, &used) == IMAP_PARSE_COMMAND) {
        const struct imap_command *cmd = imap_parser_command(p);
        struct imap_fetch_spec spec;
        char err[128];
        if (cmd->count >= 2 &&
            imap_fetch_spec_parse(&cmd->args[1], cmd->count > 2 ? &cmd->args[2] : NULL, &spec, err,
                                  sizeof(err)) == 0) {
            if (spec.n == 0 || spec.n > IMAP_FETCH_ITEMS_MAX)
                abort();
            for (size_t i = 0; i < spec.n; i++) {
                const struct imap_fetch_item *it = &spec.items[i];
                if ((it->att == IMAP_FA_SECTION || it->att == IMAP_FA_BINARY_SIZE) && !it->name)
                    abort();
                if (it->nfields > IMAP_FETCH_FIELDS_MAX || (it->partial && it->count == 0))
                    abort();
            }
            if (spec.vanished && spec.changedsince <= 0)
                abort();
            imap_fetch_spec_free(&spec);
        }
    }
    imap_parser_free(&p);
    free(line);
}

static void decode(enum imap_cte cte, const char *in, size_t len)
{
    struct imap_decoder d;
    imap_decoder_init(&d, cte);
    char *out = malloc(len + 16);
    if (!out)
        return;
    size_t half = len / 2;
    size_t a = imap_decoder_feed(&d, in, half, out);
    if (a > half + 3)
        abort();
    size_t b = imap_decoder_feed(&d, in + half, len - half, out + a);
    if (b > len - half + 3)
        abort();
    size_t c = imap_decoder_finish(&d, out + a + b);
    if (c > 3 || a + b + c > len + 3)
        abort();
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return 0;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    char *z = malloc(len + 1); /* a NUL-terminated copy */
    if (!z)
        return 0;
    memcpy(z, in, len);
    z[len] = '\0';
    switch (data[0] % 5) {
    case 0:
        if (!memchr(in, '\r', len) && !memchr(in, '\n', len))
            fetch_items(in, len);
        break;
    case 1: {
        static const char *const sections[] = {"1", "2", "1.1", "2.3.4", ""};
        for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
            struct imap_part_offsets o;
            if (imap_parts_find(z, sections[i], &o) == 0 && !strstr(z, sections[i]))
                abort();
        }
        break;
    }
    case 2:
        decode(IMAP_CTE_BASE64, in, len);
        decode(IMAP_CTE_QP, in, len);
        break;
    case 3: {
        time_t t, t2;
        if (imap_datetime_parse(z, &t) == 0) {
            char out[32];
            imap_datetime_format(t, out);
            if (imap_datetime_parse(out, &t2) == 0 && t2 != t)
                abort();
        }
        break;
    }
    case 4: {
        const char *name = z + strlen(z) + (strlen(z) < len ? 1 : 0);
        (void)imap_list_match(z, name);
        break;
    }
    }
    free(z);
    return 0;
}
