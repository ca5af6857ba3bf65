/* libFuzzer harness for proto/pop3. Besides memory errors it checks what the
 * POP3 service relies on:
 *   - lines: pop3_line_find() never reports a line longer than its bound and
 *     always makes progress; every line parses without touching bytes past
 *     it (each is parsed from an exact-size heap copy), and a parsed command
 *     has an upper-case 3..4 letter keyword and arguments inside the line;
 *   - the multi-line writer: the output is the same however the input is cut,
 *     stays within POP3_STUFF_OUT_MAX, is made of CRLF-terminated lines only
 *     (no bare CR or LF), and its only line consisting of a single "." is the
 *     last one; for RETR every non-line-end input byte comes out once, after
 *     undoing the dot-stuffing.
 * The first input byte chooses the writer's mode (RETR or TOP with a line
 * count) and the second the cut point. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/pop3/pop3.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_lines(const char *in, size_t len, size_t max)
{
    while (len > 0) {
        size_t n = 0, used = 0;
        enum pop3_line_result r = pop3_line_find(in, len, max, &n, &used);
        if (r == POP3_LINE_MORE) {
            if (len >= max || memchr(in, '\n', len))
                abort();
            return;
        }
        if (r == POP3_LINE_TOO_LONG) {
            if (len < max)
                abort();
            const char *lf = memchr(in, '\n', len);
            if (lf && (size_t)(lf - in) + 1 <= max)
                abort();
            /* the service skips to the next line end */
            if (!lf)
                return;
            used = (size_t)(lf - in) + 1;
        } else {
            if (used == 0 || used > len || used > max || n > used || in[used - 1] != '\n')
                abort();
            char *copy = malloc(n + 1);
            if (!copy)
                abort();
            memcpy(copy, in, n);
            struct pop3_command cmd;
            if (pop3_command_parse(copy, n, &cmd) == 0) {
                size_t k = strlen(cmd.keyword);
                if (k < 3 || k > 4 || cmd.nargs > POP3_ARGS_MAX)
                    abort();
                for (size_t i = 0; i < k; i++)
                    if (cmd.keyword[i] < 'A' || cmd.keyword[i] > 'Z')
                        abort();
                for (size_t i = 0; i < cmd.nargs; i++)
                    if (cmd.args[i] < copy || cmd.args[i] + strlen(cmd.args[i]) > copy + n)
                        abort();
            }
            free(copy);
        }
        in += used;
        len -= used;
    }
}

static size_t stuff(const char *in, size_t len, size_t cut, bool top, uint32_t lines, char *out)
{
    struct pop3_stuffer s;
    pop3_stuffer_init(&s, top, lines);
    size_t used = 0;
    size_t o = pop3_stuffer_feed(&s, in, cut, out, &used);
    if (o > POP3_STUFF_OUT_MAX(cut) || used > cut || (used < cut && !pop3_stuffer_done(&s)))
        abort();
    size_t o2 = pop3_stuffer_feed(&s, in + cut, len - cut, out + o, &used);
    if (o2 > POP3_STUFF_OUT_MAX(len - cut) || used > len - cut)
        abort();
    o += o2;
    size_t f = pop3_stuffer_finish(&s, out + o);
    if (f > POP3_STUFF_FINISH_MAX)
        abort();
    return o + f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    bool top = data[0] & 1;
    uint32_t lines = data[0] >> 1;
    const char *in = (const char *)data + 2;
    size_t len = size - 2;
    size_t cut = len ? data[1] % (len + 1) : 0;

    check_lines(in, len, POP3_LINE_MAX);
    check_lines(in, len, POP3_SASL_LINE_MAX);

    size_t cap = POP3_STUFF_OUT_MAX(len) + POP3_STUFF_FINISH_MAX;
    char *a = malloc(cap), *b = malloc(cap);
    if (!a || !b)
        abort();
    size_t na = stuff(in, len, len, top, lines, a);
    size_t nb = stuff(in, len, cut, top, lines, b);
    if (na != nb || memcmp(a, b, na))
        abort();
    /* CRLF lines only, the lone "." last */
    size_t i = 0, content = 0;
    while (i < na) {
        const char *lf = memchr(a + i, '\n', na - i);
        if (!lf)
            abort();
        size_t end = (size_t)(lf - a);
        if (end == i || a[end - 1] != '\r')
            abort();
        size_t n = end - 1 - i; /* text without CRLF */
        if (memchr(a + i, '\r', n))
            abort();
        bool last = end + 1 == na;
        if (n == 1 && a[i] == '.' && !last)
            abort();
        if (last && !(n == 1 && a[i] == '.'))
            abort();
        if (!last)
            content += n && a[i] == '.' ? n - 1 : n; /* undo the stuffing */
        i = end + 1;
    }
    if (!top) {
        size_t expect = 0;
        for (size_t k = 0; k < len; k++)
            expect += in[k] != '\r' && in[k] != '\n';
        if (content != expect)
            abort();
    }
    free(a);
    free(b);
    return 0;
}
