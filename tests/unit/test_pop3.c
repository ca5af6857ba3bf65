/* layer: proto */
/* Tests for proto/pop3: line finding with the RFC 2449 bound, command parsing
 * (keywords without regard to case, arguments, PASS with spaces, refusals),
 * message numbers, and the multi-line writer: dot-stuffing, line ends made
 * CRLF, the terminator, TOP's limits, and the same output whatever the input
 * is cut into. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/pop3/pop3.h"

static void test_line_find(void **state)
{
    size_t n = 0, used = 0;
    assert_int_equal(pop3_line_find("STAT\r\nNOOP\r\n", 12, POP3_LINE_MAX, &n, &used),
                     POP3_LINE_OK);
    assert_int_equal(n, 4);
    assert_int_equal(used, 6);
    assert_int_equal(pop3_line_find("STAT\nX", 6, POP3_LINE_MAX, &n, &used), POP3_LINE_OK);
    assert_int_equal(n, 4);
    assert_int_equal(used, 5);
    assert_int_equal(pop3_line_find("\r\n", 2, POP3_LINE_MAX, &n, &used), POP3_LINE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(used, 2);
    assert_int_equal(pop3_line_find("STA", 3, POP3_LINE_MAX, &n, &used), POP3_LINE_MORE);
    assert_int_equal(pop3_line_find("STAT\r", 5, POP3_LINE_MAX, &n, &used), POP3_LINE_MORE);
    assert_int_equal(pop3_line_find("", 0, POP3_LINE_MAX, &n, &used), POP3_LINE_MORE);

    /* 253 characters + CRLF = 255 octets: the longest line allowed */
    char buf[600];
    memset(buf, 'x', sizeof(buf));
    memcpy(buf + 253, "\r\n", 2);
    assert_int_equal(pop3_line_find(buf, 255, POP3_LINE_MAX, &n, &used), POP3_LINE_OK);
    assert_int_equal(n, 253);
    assert_int_equal(used, 255);
    /* one more: over the limit, even though its end is in the buffer */
    memset(buf, 'x', sizeof(buf));
    memcpy(buf + 254, "\r\n", 2);
    assert_int_equal(pop3_line_find(buf, 256, POP3_LINE_MAX, &n, &used), POP3_LINE_TOO_LONG);
    /* without a line end: more input is wanted until the bound is reached */
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(pop3_line_find(buf, 254, POP3_LINE_MAX, &n, &used), POP3_LINE_MORE);
    assert_int_equal(pop3_line_find(buf, 255, POP3_LINE_MAX, &n, &used), POP3_LINE_TOO_LONG);
    assert_int_equal(pop3_line_find(buf, 600, POP3_LINE_MAX, &n, &used), POP3_LINE_TOO_LONG);
    /* the SASL bound is larger */
    assert_int_equal(pop3_line_find(buf, 600, POP3_SASL_LINE_MAX, &n, &used), POP3_LINE_MORE);
}

static int parse(const char *text, struct pop3_command *cmd, char *buf, size_t buflen)
{
    size_t n = strlen(text);
    assert_true(n < buflen);
    memcpy(buf, text, n);
    return pop3_command_parse(buf, n, cmd);
}

static void test_command_parse(void **state)
{
    struct pop3_command cmd;
    char buf[300];
    assert_int_equal(parse("stat", &cmd, buf, sizeof(buf)), 0);
    assert_int_equal(cmd.cmd, POP3_CMD_STAT);
    assert_string_equal(cmd.keyword, "STAT");
    assert_int_equal(cmd.nargs, 0);

    assert_int_equal(parse("ReTr 17", &cmd, buf, sizeof(buf)), 0);
    assert_int_equal(cmd.cmd, POP3_CMD_RETR);
    assert_int_equal(cmd.nargs, 1);
    assert_string_equal(cmd.args[0], "17");

    assert_int_equal(parse("TOP 1 10", &cmd, buf, sizeof(buf)), 0);
    assert_int_equal(cmd.cmd, POP3_CMD_TOP);
    assert_int_equal(cmd.nargs, 2);
    assert_string_equal(cmd.args[0], "1");
    assert_string_equal(cmd.args[1], "10");

    /* runs of spaces and trailing spaces are tolerated */
    assert_int_equal(parse("top  1   10  ", &cmd, buf, sizeof(buf)), 0);
    assert_int_equal(cmd.nargs, 2);
    assert_string_equal(cmd.args[1], "10");
    assert_int_equal(parse("NOOP ", &cmd, buf, sizeof(buf)), 0);
    assert_int_equal(cmd.nargs, 0);

    assert_int_equal(parse("AUTH PLAIN AGFsaWNlAHNlY3JldA==", &cmd, buf, sizeof(buf)), 0);
    assert_int_equal(cmd.cmd, POP3_CMD_AUTH);
    assert_int_equal(cmd.nargs, 2);
    assert_string_equal(cmd.args[0], "PLAIN");
    assert_string_equal(cmd.args[1], "AGFsaWNlAHNlY3JldA==");

    /* PASS: the rest of the line, spaces included */
    assert_int_equal(parse("PASS  my secret  pass ", &cmd, buf, sizeof(buf)), 0);
    assert_int_equal(cmd.cmd, POP3_CMD_PASS);
    assert_int_equal(cmd.nargs, 1);
    assert_string_equal(cmd.args[0], " my secret  pass ");
    assert_int_equal(parse("pass", &cmd, buf, sizeof(buf)), 0);
    assert_int_equal(cmd.nargs, 0);
    assert_int_equal(parse("PASS ", &cmd, buf, sizeof(buf)), 0);
    assert_int_equal(cmd.nargs, 0);
    /* non-ASCII bytes pass (UTF-8 passwords) */
    assert_int_equal(parse("PASS p\xc3\xa4ss", &cmd, buf, sizeof(buf)), 0);
    assert_string_equal(cmd.args[0], "p\xc3\xa4ss");

    /* known shape, unknown keyword */
    assert_int_equal(parse("XTND XMIT", &cmd, buf, sizeof(buf)), 0);
    assert_int_equal(cmd.cmd, POP3_CMD_UNKNOWN);
    assert_string_equal(cmd.keyword, "XTND");
    assert_int_equal(parse("apop", &cmd, buf, sizeof(buf)), 0);
    assert_int_equal(cmd.cmd, POP3_CMD_APOP);

    /* refused */
    const char *bad[] = {"",           " STAT",   "ST",     "STATS",   "ST4T",
                         "RETR 1 2 3", "LIST\t1", "RE-T 1", "\177AAA", "USER a\x01"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(parse(bad[i], &cmd, buf, sizeof(buf)), -1);
    /* an embedded NUL */
    memcpy(buf, "USER a\0b", 8);
    assert_int_equal(pop3_command_parse(buf, 8, &cmd), -1);

    assert_string_equal(pop3_cmd_name(POP3_CMD_UIDL), "UIDL");
    assert_string_equal(pop3_cmd_name(POP3_CMD_UNKNOWN), "");
}

static void test_number_parse(void **state)
{
    uint32_t n = 0;
    assert_int_equal(pop3_number_parse("1", 1, 100, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(pop3_number_parse("007", 1, 100, &n), 0);
    assert_int_equal(n, 7);
    assert_int_equal(pop3_number_parse("0", 0, 100, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(pop3_number_parse("4294967295", 0, UINT32_MAX, &n), 0);
    assert_int_equal(n, UINT32_MAX);
    const char *bad[] = {"0", "101", "", "+1", "-1", "1a", " 1", "4294967296", "12345678901"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(pop3_number_parse(bad[i], 1, 100, &n), -1);
    assert_int_equal(pop3_number_parse("4294967296", 0, UINT32_MAX, &n), -1);
    assert_int_equal(pop3_number_parse(NULL, 0, 1, &n), -1);
}

/* Runs the writer over in[0..len) cut at the given points (cuts sorted, each
 * <= len) and returns the whole output (caller frees). */
static char *stuff_cut(const char *in, size_t len, bool top, uint32_t lines, const size_t *cuts,
                       size_t ncuts, size_t *outlen_r)
{
    char *out = malloc(POP3_STUFF_OUT_MAX(len) + POP3_STUFF_FINISH_MAX + 1);
    assert_non_null(out);
    struct pop3_stuffer s;
    pop3_stuffer_init(&s, top, lines);
    size_t o = 0, prev = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        size_t used = 0;
        size_t piece = end - prev;
        size_t w = pop3_stuffer_feed(&s, in + prev, piece, out + o, &used);
        assert_true(w <= POP3_STUFF_OUT_MAX(piece));
        assert_true(used <= piece);
        if (used < piece)
            assert_true(pop3_stuffer_done(&s));
        o += w;
        prev = end;
    }
    o += pop3_stuffer_finish(&s, out + o);
    out[o] = '\0';
    *outlen_r = o;
    return out;
}

static void expect_stuffed(const char *in, size_t len, bool top, uint32_t lines,
                           const char *expected)
{
    size_t outlen;
    char *whole = stuff_cut(in, len, top, lines, NULL, 0, &outlen);
    if (outlen != strlen(expected) || memcmp(whole, expected, outlen))
        fail_msg("input %zu bytes (top %d, %u lines): got \"%s\", want \"%s\"", len, top, lines,
                 whole, expected);
    /* every single cut point */
    for (size_t cut = 0; cut <= len; cut++) {
        size_t n;
        char *o = stuff_cut(in, len, top, lines, &cut, 1, &n);
        assert_int_equal(n, outlen);
        assert_memory_equal(o, whole, n);
        free(o);
    }
    /* one byte at a time */
    size_t *cuts = malloc((len + 1) * sizeof(*cuts));
    assert_non_null(cuts);
    for (size_t i = 0; i < len; i++)
        cuts[i] = i;
    size_t n;
    char *o = stuff_cut(in, len, top, lines, cuts, len, &n);
    assert_int_equal(n, outlen);
    assert_memory_equal(o, whole, n);
    free(o);
    free(cuts);
    free(whole);
}

#define S(lit) lit, sizeof(lit) - 1

static void test_stuffer_retr(void **state)
{
    expect_stuffed(S("Subject: x\r\n\r\nhello\r\n"), false, 0, "Subject: x\r\n\r\nhello\r\n.\r\n");
    /* dot-stuffing at the start of every line, the first one included */
    expect_stuffed(S(".\r\n..x\r\nmid.dle\r\n.\r\n"), false, 0,
                   "..\r\n...x\r\nmid.dle\r\n..\r\n.\r\n");
    /* a smuggled terminator stays data */
    expect_stuffed(S("a\r\n.\r\nQUIT\r\n"), false, 0, "a\r\n..\r\nQUIT\r\n.\r\n");
    /* bare LF and bare CR become CRLF, so no bare line end reaches the client */
    expect_stuffed(S("a\nb\rc\r\n\n.d\n"), false, 0, "a\r\nb\r\nc\r\n\r\n..d\r\n.\r\n");
    expect_stuffed(S("a\n.\n"), false, 0, "a\r\n..\r\n.\r\n");
    expect_stuffed(S("a\r\r\nb"), false, 0, "a\r\n\r\nb\r\n.\r\n");
    /* a message without a final line end gets one before the terminator */
    expect_stuffed(S("no newline"), false, 0, "no newline\r\n.\r\n");
    expect_stuffed(S("ends in CR\r"), false, 0, "ends in CR\r\n.\r\n");
    expect_stuffed(S("."), false, 0, "..\r\n.\r\n");
    expect_stuffed("", 0, false, 0, ".\r\n");
    /* binary bytes pass unchanged */
    expect_stuffed(S("\x01\xff\x7f\r\n"), false, 0, "\x01\xff\x7f\r\n.\r\n");
}

static void test_stuffer_top(void **state)
{
    const char msg[] = "From: a\r\nSubject: s\r\n\r\nline1\r\n.line2\r\nline3\r\n";
    expect_stuffed(S(msg), true, 0, "From: a\r\nSubject: s\r\n\r\n.\r\n");
    expect_stuffed(S(msg), true, 1, "From: a\r\nSubject: s\r\n\r\nline1\r\n.\r\n");
    expect_stuffed(S(msg), true, 2, "From: a\r\nSubject: s\r\n\r\nline1\r\n..line2\r\n.\r\n");
    /* more lines asked than there are: the whole message */
    expect_stuffed(S(msg), true, 3,
                   "From: a\r\nSubject: s\r\n\r\nline1\r\n..line2\r\nline3\r\n.\r\n");
    expect_stuffed(S(msg), true, 1000,
                   "From: a\r\nSubject: s\r\n\r\nline1\r\n..line2\r\nline3\r\n.\r\n");
    /* bare LF line ends count as line ends */
    expect_stuffed(S("A: 1\n\nb1\nb2\n"), true, 1, "A: 1\r\n\r\nb1\r\n.\r\n");
    expect_stuffed(S("A: 1\r\rb1\rb2\r"), true, 1, "A: 1\r\n\r\nb1\r\n.\r\n");
    /* a header without a body, and a body line without a line end */
    expect_stuffed(S("A: 1\r\nB: 2\r\n"), true, 0, "A: 1\r\nB: 2\r\n.\r\n");
    expect_stuffed(S("A: 1\r\n\r\nlast"), true, 5, "A: 1\r\n\r\nlast\r\n.\r\n");
    /* empty body lines count */
    expect_stuffed(S("A: 1\r\n\r\n\r\n\r\nx\r\n"), true, 2, "A: 1\r\n\r\n\r\n\r\n.\r\n");
    /* a message starting with the blank line: no header at all */
    expect_stuffed(S("\r\nbody\r\n"), true, 0, "\r\n.\r\n");

    /* input after the limit is not taken */
    struct pop3_stuffer s;
    pop3_stuffer_init(&s, true, 1);
    char out[200];
    size_t used;
    const char in[] = "H: v\r\n\r\nb1\r\nb2\r\n";
    size_t w = pop3_stuffer_feed(&s, in, sizeof(in) - 1, out, &used);
    assert_true(pop3_stuffer_done(&s));
    assert_int_equal(used, strlen("H: v\r\n\r\nb1\r\n"));
    assert_int_equal(w, used);
    assert_int_equal(pop3_stuffer_feed(&s, "more", 4, out, &used), 0);
    assert_int_equal(used, 0);
}

/* Worst-case growth: every byte a line-starting dot after a pending CR. */
static void test_stuffer_bound(void **state)
{
    char in[64];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (i % 2) ? '.' : '\r';
    for (size_t len = 1; len <= sizeof(in); len++) {
        struct pop3_stuffer s;
        pop3_stuffer_init(&s, false, 0);
        char out[POP3_STUFF_OUT_MAX(64) + POP3_STUFF_FINISH_MAX];
        /* feed a CR first so the chunk starts with a pending one */
        size_t w0 = pop3_stuffer_feed(&s, "\r", 1, out, NULL);
        assert_int_equal(w0, 0);
        size_t w = pop3_stuffer_feed(&s, in + 1, len - 1, out, NULL);
        assert_true(w <= POP3_STUFF_OUT_MAX(len - 1));
        size_t f = pop3_stuffer_finish(&s, out + w);
        assert_true(f <= POP3_STUFF_FINISH_MAX);
        assert_int_equal(s.out, w + f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_find),    cmocka_unit_test(test_command_parse),
        cmocka_unit_test(test_number_parse), cmocka_unit_test(test_stuffer_retr),
        cmocka_unit_test(test_stuffer_top),  cmocka_unit_test(test_stuffer_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
