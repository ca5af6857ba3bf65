/* layer: proto */
/* Unit tests for the IMAP command reader (proto/imap/parser.c).
 *
 * Every input is run through a small service loop that writes what happened into a trace:
 * commands as a canonical dump of their tree, "+" for continuation requests, L<n> for a big
 * literal offered to the caller, D<n> when a streamed literal has been handed out, !<code>:<tag>
 * for errors. The same input must give the same trace whatever way it is split into feeds (at
 * every byte, and one byte at a time); each feed gets its own exact-size heap copy so an
 * over-read shows up under ASan. Many commands are the RFC 9051 examples.
 *
 * The string writer (proto/imap/quote.c) is tested here too: whatever it writes, the reader
 * must read back as the same string. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/imap/parser.h"
#include "proto/imap/quote.h"

/* ---- the trace ------------------------------------------------------------------------------ */

struct tr {
    char out[16384];
    size_t n;
    bool stream;      /* stream big literals (else refuse them) */
    bool dead;        /* a fatal error was seen */
    char data[65536]; /* the last streamed literal */
    size_t data_len;
    char line[256]; /* after a command named LINE, read the next line raw */
};

static void tr_add(struct tr *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void tr_add(struct tr *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(t->out + t->n, sizeof(t->out) - t->n, fmt, ap);
    va_end(ap);
    assert_true(w >= 0 && (size_t)w < sizeof(t->out) - t->n);
    t->n += (size_t)w;
}

static void dump_arg(struct tr *t, const struct imap_arg *a)
{
    switch (a->type) {
    case IMAP_ARG_ATOM:
        tr_add(t, "%s", a->str);
        break;
    case IMAP_ARG_NIL:
        tr_add(t, "NIL!");
        break;
    case IMAP_ARG_QUOTED:
        tr_add(t, "\"%s\"", a->str);
        break;
    case IMAP_ARG_LITERAL:
    case IMAP_ARG_LITERAL8:
        tr_add(t, "%s{%zu%s%s}", a->type == IMAP_ARG_LITERAL8 ? "~" : "", a->len,
               a->nonsync ? "+" : "", a->streamed ? "*" : "");
        if (!a->streamed) {
            for (size_t i = 0; i < a->len; i++) {
                unsigned char c = (unsigned char)a->str[i];
                if (c < 0x20 || c >= 0x7f)
                    tr_add(t, "\\x%02x", c);
                else
                    tr_add(t, "%c", c);
            }
            assert_int_equal(a->str[a->len], '\0');
        } else {
            assert_string_equal(a->str, "");
        }
        break;
    case IMAP_ARG_LIST:
        assert_null(a->str);
        tr_add(t, "(");
        for (size_t i = 0; i < a->count; i++) {
            if (i)
                tr_add(t, " ");
            dump_arg(t, &a->list[i]);
        }
        tr_add(t, ")");
        break;
    }
    /* text without NUL: its length is its strlen (literal8 may hold NUL, streamed ones "") */
    if (a->type != IMAP_ARG_LIST && a->type != IMAP_ARG_LITERAL8 && !a->streamed)
        assert_int_equal(strlen(a->str), a->len);
}

static char errcode(enum imap_parse_error e)
{
    switch (e) {
    case IMAP_ERR_NONE:
        return '0';
    case IMAP_ERR_SYNTAX:
        return 'S';
    case IMAP_ERR_TOOLONG:
        return 'L';
    case IMAP_ERR_TOOBIG:
        return 'B';
    case IMAP_ERR_LIMIT:
        return 'M';
    case IMAP_ERR_NOMEM:
        return 'N';
    }
    return '?';
}

/* Feeds one chunk the way a service would, until the reader wants more input. */
static void trace_feed(struct imap_parser *p, struct tr *t, const char *in, size_t len)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, in, len);
    size_t off = 0;
    for (int guard = 0; !t->dead; guard++) {
        assert_true(guard < 1000000);
        size_t used = 12345;
        enum imap_parse_event ev = imap_parser_feed(p, copy + off, len - off, &used);
        assert_true(used <= len - off);
        off += used;
        switch (ev) {
        case IMAP_PARSE_MORE:
            assert_int_equal(off, len);
            free(copy);
            return;
        case IMAP_PARSE_CONTINUE:
            tr_add(t, "+ ");
            break;
        case IMAP_PARSE_LITERAL: {
            struct imap_literal_info info;
            assert_int_equal(imap_parser_literal_info(p, &info), 0);
            assert_non_null(imap_parser_command_name(p));
            tr_add(t, "L%s%llu%s@%u.%zu ", info.binary ? "~" : "", (unsigned long long)info.size,
                   info.sync ? "" : "+", info.depth, info.index);
            t->data_len = 0;
            if (t->stream) {
                assert_int_equal(imap_parser_literal_stream(p), 0);
                if (info.sync)
                    tr_add(t, "+ ");
                if (info.size == 0)
                    tr_add(t, "D0 ");
            } else {
                assert_int_equal(imap_parser_literal_refuse(p), 0);
            }
            assert_int_equal(imap_parser_literal_refuse(p), -1); /* decided already */
            break;
        }
        case IMAP_PARSE_LITERAL_DATA:
            assert_true(used > 0);
            assert_true(t->data_len + used <= sizeof(t->data));
            memcpy(t->data + t->data_len, copy + off - used, used);
            t->data_len += used;
            if (imap_parser_literal_remaining(p) == 0)
                tr_add(t, "D%zu ", t->data_len);
            break;
        case IMAP_PARSE_COMMAND: {
            const struct imap_command *c = imap_parser_command(p);
            assert_non_null(c);
            /* repeated until next() */
            size_t u2 = 1;
            assert_int_equal(imap_parser_feed(p, copy + off, len - off, &u2), IMAP_PARSE_COMMAND);
            assert_int_equal(u2, 0);
            tr_add(t, "[%s %s", c->tag, c->name);
            for (size_t i = 0; i < c->count; i++) {
                tr_add(t, " ");
                dump_arg(t, &c->args[i]);
            }
            tr_add(t, "] ");
            bool line = strcmp(c->name, "LINE") == 0;
            imap_parser_next(p);
            assert_null(imap_parser_command(p));
            if (line)
                assert_int_equal(imap_parser_read_line(p), 0);
            break;
        }
        case IMAP_PARSE_LINE: {
            size_t n;
            const char *l = imap_parser_line(p, &n);
            assert_non_null(l);
            assert_int_equal(strlen(l), n);
            tr_add(t, "<%s> ", l);
            imap_parser_next(p);
            break;
        }
        case IMAP_PARSE_ERROR: {
            const char *msg = NULL;
            enum imap_parse_error e = imap_parser_error(p, &msg);
            assert_true(e != IMAP_ERR_NONE);
            assert_non_null(msg);
            const char *tag = imap_parser_error_tag(p);
            tr_add(t, "!%c:%s ", errcode(e), tag ? tag : "*");
            if (imap_parser_error_fatal(p)) {
                tr_add(t, "FATAL ");
                t->dead = true;
                size_t u2 = 1;
                assert_int_equal(imap_parser_feed(p, copy + off, len - off, &u2), IMAP_PARSE_ERROR);
                assert_int_equal(u2, 0);
            }
            break;
        }
        }
    }
    free(copy);
}

static struct imap_parser *new_parser(const struct imap_parser_limits *lim)
{
    struct imap_parser *p = imap_parser_new(lim);
    assert_non_null(p);
    return p;
}

/* The trace of input fed in one piece. */
static void run_once(const struct imap_parser_limits *lim, bool stream, const char *in, size_t len,
                     struct tr *t)
{
    memset(t, 0, sizeof(*t));
    t->stream = stream;
    struct imap_parser *p = new_parser(lim);
    trace_feed(p, t, in, len);
    imap_parser_free(&p);
    assert_null(p);
}

/* Checks the trace of in against want, fed whole, split in two at every byte and one byte at a
 * time. */
static void check_lim(const struct imap_parser_limits *lim, bool stream, const char *in, size_t len,
                      const char *want)
{
    static struct tr t, u;
    run_once(lim, stream, in, len, &t);
    if (strcmp(t.out, want) != 0)
        fail_msg("input \"%.*s\": got \"%s\", want \"%s\"", (int)len, in, t.out, want);
    for (size_t cut = 0; cut <= len; cut++) {
        memset(&u, 0, sizeof(u));
        u.stream = stream;
        struct imap_parser *p = new_parser(lim);
        trace_feed(p, &u, in, cut);
        trace_feed(p, &u, in + cut, len - cut);
        imap_parser_free(&p);
        if (strcmp(u.out, want) != 0)
            fail_msg("split at %zu: got \"%s\", want \"%s\"", cut, u.out, want);
    }
    memset(&u, 0, sizeof(u));
    u.stream = stream;
    struct imap_parser *p = new_parser(lim);
    for (size_t i = 0; i < len; i++)
        trace_feed(p, &u, in + i, 1);
    imap_parser_free(&p);
    if (strcmp(u.out, want) != 0)
        fail_msg("byte by byte: got \"%s\", want \"%s\"", u.out, want);
}

static void check(const char *in, const char *want)
{
    check_lim(NULL, false, in, strlen(in), want);
}

/* For inputs holding NUL bytes: the length of a string literal. */
#define CHECK_BIN(lim, stream, lit, want) check_lim(lim, stream, lit, sizeof(lit) - 1, want)

/* ---- tokens --------------------------------------------------------------------------------- */

static void test_simple(void **state)
{
    (void)state;
    /* RFC 9051 §6.2.3 */
    check("a001 LOGIN SMITH SESAME\r\n", "[a001 LOGIN SMITH SESAME] ");
    check("a002 noop\r\n", "[a002 NOOP] ");
    check("A1 Capability\n", "[A1 CAPABILITY] "); /* bare LF accepted */
    check("A1 NOOP  \r\n", "[A1 NOOP] ");
    check("A1  NOOP\r\n", "[A1 NOOP] ");
    check("A1 SELECT  INBOX \r\n", "[A1 SELECT INBOX] ");
    check("x.y-z] ENABLE UTF8=ACCEPT\r\n", "[x.y-z] ENABLE UTF8=ACCEPT] ");
    /* pipelined */
    check("a NOOP\r\nb CHECK\r\nc LOGOUT\r\n", "[a NOOP] [b CHECK] [c LOGOUT] ");
}

static void test_atoms_and_nil(void **state)
{
    (void)state;
    check("A1 STORE 2:4 +FLAGS (\\Deleted \\Seen $Forwarded)\r\n",
          "[A1 STORE 2:4 +FLAGS (\\Deleted \\Seen $Forwarded)] ");
    check("A202 LIST ~/Mail/ %\r\n", "[A202 LIST ~/Mail/ %] ");
    check("A1 LIST \"\" *\r\n", "[A1 LIST \"\" *] ");
    check("A1 FETCH 1:* FLAGS\r\n", "[A1 FETCH 1:* FLAGS] ");
    check("A1 SELECT [Gmail]/Sent\r\n", "[A1 SELECT [Gmail]/Sent] ");
    check("A1 X NIL nil Nil NILS (NIL)\r\n", "[A1 X NIL! NIL! NIL! NILS (NIL!)] ");
    check("A1 X ~peter ~ ~~{\r\n", "!S:A1 ");
    check("A1 X ~peter ~ a~b\r\n", "[A1 X ~peter ~ a~b] ");
    check("A1 X a]b\r\n", "[A1 X a]b] ");
}

static void test_quoted(void **state)
{
    (void)state;
    check("A1 LOGIN \"fred foobar\" \"fat\\\"man\\\\\"\r\n",
          "[A1 LOGIN \"fred foobar\" \"fat\"man\\\"] ");
    check("A1 X \"\" \"(a)\" \"{5}\"\r\n", "[A1 X \"\" \"(a)\" \"{5}\"] ");
    check("A1 X \"tab\there\"\r\n", "[A1 X \"tab\there\"] ");
    /* RFC 9051 §4.3: UTF-8 in quoted strings */
    check("A1 SELECT \"Entw\xc3\xbcrfe\"\r\n", "[A1 SELECT \"Entw\xc3\xbcrfe\"] ");
    check("A1 SELECT \"\xf0\x9f\x98\x80\"\r\n", "[A1 SELECT \"\xf0\x9f\x98\x80\"] ");
}

static void test_lists(void **state)
{
    (void)state;
    check("A1 X () (()) (a (b (c)) d)\r\n", "[A1 X () (()) (a (b (c)) d)] ");
    check("A1 X (a)\r\n", "[A1 X (a)] ");
    check("A1 X ( a  b )\r\n", "[A1 X (a b)] ");
    check("A1 X (\"a\")(b)\r\n", "!S:A1 ");
    /* RFC 9051 §6.3.11 STATUS */
    check("A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n",
          "[A042 STATUS blurdybloop (UIDNEXT MESSAGES)] ");
    /* list positions and children are real pointers */
    struct imap_parser *p = new_parser(NULL);
    const char *in = "T SEARCH (OR (a b) c) d\r\n";
    size_t used;
    assert_int_equal(imap_parser_feed(p, in, strlen(in), &used), IMAP_PARSE_COMMAND);
    assert_int_equal(used, strlen(in));
    const struct imap_command *c = imap_parser_command(p);
    assert_int_equal(c->count, 2);
    size_t n;
    const struct imap_arg *l = imap_arg_list(&c->args[0], &n);
    assert_non_null(l);
    assert_int_equal(n, 3);
    assert_string_equal(imap_arg_atom(&l[0]), "OR");
    const struct imap_arg *l2 = imap_arg_list(&l[1], &n);
    assert_int_equal(n, 2);
    assert_string_equal(l2[1].str, "b");
    assert_string_equal(imap_arg_atom(&c->args[1]), "d");
    assert_null(imap_arg_list(&c->args[1], &n));
    imap_parser_free(&p);
}

static void test_fetch_sections(void **state)
{
    (void)state;
    /* RFC 9051 §6.4.5 */
    check("A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n",
          "[A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])] ");
    check("A1 FETCH 1 BODY.PEEK[HEADER.FIELDS.NOT (\"X-A\" B\\C)]<0.100>\r\n",
          "[A1 FETCH 1 BODY.PEEK[HEADER.FIELDS.NOT (\"X-A\" B\\C)]<0.100>] ");
    check("A1 FETCH 1 (BODY[] BINARY.PEEK[1.2] BODY[1.MIME]<5.10>)\r\n",
          "[A1 FETCH 1 (BODY[] BINARY.PEEK[1.2] BODY[1.MIME]<5.10>)] ");
    check("A1 FETCH 1 BODY[HEADER.FIELDS (\"a\\\"b\")]\r\n",
          "[A1 FETCH 1 BODY[HEADER.FIELDS (\"a\\\"b\")]] ");
    check("A1 FETCH 1 BODY[HEADER\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 FETCH 1 BODY[a[b]]\r\n", "!S:A1 ");
    check("A1 FETCH 1 BODY[HEADER.FIELDS {5}\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 FETCH 1 BODY[\"x\xc3\xa9\"]\r\n", "!S:A1 ");
}

/* ---- literals ------------------------------------------------------------------------------- */

static void test_literals(void **state)
{
    (void)state;
    /* RFC 9051 §6.3.12 APPEND, shortened */
    const char *append = "A003 APPEND saved-messages (\\Seen) {23}\r\n"
                         "Subject: afternoon\r\n\r\nx\r\n";
    check(append,
          "+ [A003 APPEND saved-messages (\\Seen) {23}Subject: afternoon\\x0d\\x0a\\x0d\\x0ax] ");
    check("A1 LOGIN {5}\r\nSMITH {6}\r\nSESAME\r\n", "+ + [A1 LOGIN {5}SMITH {6}SESAME] ");
    check("A1 LOGIN {5+}\r\nSMITH {6+}\r\nSESAME\r\n", "[A1 LOGIN {5+}SMITH {6+}SESAME] ");
    check("A1 X {0}\r\n {0+}\r\n\r\n", "+ [A1 X {0} {0+}] ");
    check("A1 X ({3}\r\n(a)) b\r\n", "+ [A1 X ({3}(a)) b] ");
    check("A1 X {007}\r\n\"{}\\()\"\r\n", "+ [A1 X {7}\"{}\\()\"] ");
    /* RFC 3516 literal8 may hold NUL */
    CHECK_BIN(NULL, false, "A1 APPEND box ~{3}\r\na\0b ~{1+}\r\n\0\r\n",
              "+ [A1 APPEND box ~{3}a\\x00b ~{1+}\\x00] ");
    /* 8-bit bytes are fine in literals */
    check("A1 X {2}\r\n\xff\xfe\r\n", "+ [A1 X {2}\\xff\\xfe] ");
    /* a literal header must end its line */
    check("A1 X {3} a\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 X {}\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 X {+}\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 X {3\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 X {3}\rA2 NOOP\r\nA3 NOOP\r\n", "!S:A1 [A3 NOOP] "); /* a bare CR ends no line */
    check("A1 X x{3}\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    /* RFC 9051 §4.3: no NUL in a literal; the rest of it is the bad command's */
    CHECK_BIN(NULL, false, "A1 X {4}\r\na\0bc\r\nA2 NOOP\r\n", "+ !S:A1 [A2 NOOP] ");
    CHECK_BIN(NULL, false, "A1 X {4+}\r\na\0bc {3+}\r\nabc\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    /* a literal that starts a command line after another literal */
    check("A1 X {1}\r\na {1+}\r\nb\r\n", "+ [A1 X {1}a {1+}b] ");
    /* the literal's size does not count against the line */
    struct imap_parser_limits lim;
    imap_parser_limits_default(&lim);
    lim.max_line = 16;
    char big[200];
    snprintf(big, sizeof(big), "A1 X {100+}\r\n%0100d\r\n", 0);
    struct tr t;
    run_once(&lim, false, big, strlen(big), &t);
    assert_int_equal(strncmp(t.out, "[A1 X {100+}0000", 16), 0);
}

static void test_literal_limits(void **state)
{
    (void)state;
    struct imap_parser_limits lim;
    imap_parser_limits_default(&lim);
    lim.max_literal = 8;
    lim.max_discard = 10;
    /* over max_literal: the caller refuses; sync ends the command at once */
    check_lim(&lim, false, "A1 LOGIN {9}\r\nA2 NOOP\r\n", 23, "L9@0.0 !B:A1 [A2 NOOP] ");
    /* non-sync: the bytes are skipped with the rest of the command */
    const char *s = "A1 LOGIN {9+}\r\n123456789 x\r\nA2 NOOP\r\n";
    check_lim(&lim, false, s, strlen(s), "L9+@0.0 !B:A1 [A2 NOOP] ");
    /* and literals later on that line too */
    s = "A1 LOGIN {9+}\r\n123456789 {2+}\r\nab\r\nA2 NOOP\r\n";
    check_lim(&lim, false, s, strlen(s), "L9+@0.0 !B:A1 [A2 NOOP] ");
    /* too big to skip: fatal */
    s = "A1 LOGIN {11+}\r\n12345678901\r\nA2 NOOP\r\n";
    check_lim(&lim, false, s, strlen(s), "L11+@0.0 !B:A1 FATAL ");
    /* streaming instead */
    s = "A1 APPEND box (\\Seen) {11}\r\nhello world\r\nA2 NOOP\r\n";
    check_lim(&lim, true, s, strlen(s), "L11@0.2 + D11 [A1 APPEND box (\\Seen) {11*}] [A2 NOOP] ");
    s = "A1 APPEND box {0}\r\n\r\n";
    check_lim(&lim, true, s, strlen(s), "+ [A1 APPEND box {0}] "); /* 0 <= max_literal */
    /* CATENATE-style literal inside a list, binary, non-sync */
    static const char cat[] = "A1 APPEND box CATENATE (TEXT ~{10+}\r\n0123\0"
                              "56789)\r\n";
    const size_t catlen = sizeof(cat) - 1;
    s = cat;
    check_lim(&lim, true, s, catlen, "L~10+@1.2 D10 [A1 APPEND box CATENATE (TEXT ~{10+*})] ");
    /* the streamed bytes are the literal's */
    struct tr t;
    run_once(&lim, true, s, catlen, &t);
    assert_int_equal(t.data_len, 10);
    assert_memory_equal(t.data,
                        "0123\0"
                        "56789",
                        10);
    /* the NUL is flagged */
    struct imap_parser *p = new_parser(&lim);
    size_t used, off = 0;
    assert_int_equal(imap_parser_feed(p, s, catlen, &used), IMAP_PARSE_LITERAL);
    off += used;
    assert_string_equal(imap_parser_command_name(p), "APPEND");
    assert_int_equal(imap_parser_literal_stream(p), 0);
    assert_int_equal(imap_parser_literal_stream(p), -1);
    assert_int_equal(imap_parser_literal_remaining(p), 10);
    assert_int_equal(imap_parser_feed(p, s + off, 3, &used), IMAP_PARSE_LITERAL_DATA);
    assert_int_equal(used, 3);
    off += used;
    assert_int_equal(imap_parser_literal_remaining(p), 7);
    assert_int_equal(imap_parser_feed(p, s + off, catlen - off, &used), IMAP_PARSE_LITERAL_DATA);
    assert_int_equal(used, 7);
    off += used;
    assert_int_equal(imap_parser_feed(p, s + off, catlen - off, &used), IMAP_PARSE_COMMAND);
    const struct imap_command *c = imap_parser_command(p);
    const struct imap_arg *l = c->args[2].list;
    assert_int_equal(l[1].type, IMAP_ARG_LITERAL8);
    assert_true(l[1].streamed);
    assert_true(l[1].has_nul);
    assert_null(imap_arg_string(&l[1]));
    imap_parser_free(&p);
    /* not deciding refuses */
    p = new_parser(&lim);
    s = "A1 LOGIN {9}\r\nA2 NOOP\r\n";
    assert_int_equal(imap_parser_feed(p, s, strlen(s), &used), IMAP_PARSE_LITERAL);
    off = used;
    assert_int_equal(imap_parser_feed(p, s + off, strlen(s) - off, &used), IMAP_PARSE_ERROR);
    assert_int_equal(used, 0);
    assert_int_equal(imap_parser_error(p, NULL), IMAP_ERR_TOOBIG);
    assert_string_equal(imap_parser_error_tag(p), "A1");
    assert_false(imap_parser_error_fatal(p));
    assert_int_equal(imap_parser_feed(p, s + off, strlen(s) - off, &used), IMAP_PARSE_COMMAND);
    assert_string_equal(imap_parser_command(p)->tag, "A2");
    assert_int_equal(imap_parser_literal_info(p, &(struct imap_literal_info){0}), -1);
    imap_parser_free(&p);
}

/* A 100 MiB APPEND goes through without the reader holding any of it. */
static void test_stream_large(void **state)
{
    (void)state;
    struct imap_parser *p = new_parser(NULL);
    const char *hdr = "A1 APPEND INBOX {104857600}\r\n";
    size_t used;
    assert_int_equal(imap_parser_feed(p, hdr, strlen(hdr), &used), IMAP_PARSE_LITERAL);
    assert_int_equal(used, strlen(hdr));
    struct imap_literal_info info;
    assert_int_equal(imap_parser_literal_info(p, &info), 0);
    assert_int_equal(info.size, 104857600);
    assert_true(info.sync);
    assert_false(info.binary);
    assert_int_equal(info.index, 1);
    assert_int_equal(imap_parser_literal_stream(p), 0);
    size_t chunk = 1 << 20;
    char *buf = calloc(1, chunk + 2);
    assert_non_null(buf);
    memset(buf, 'x', chunk);
    uint64_t total = 0;
    for (int i = 0; i < 100; i++) {
        assert_int_equal(imap_parser_feed(p, buf, chunk, &used), IMAP_PARSE_LITERAL_DATA);
        assert_int_equal(used, chunk);
        total += used;
        assert_int_equal(imap_parser_literal_remaining(p), 104857600 - total);
    }
    /* once it is all there, the bytes after it are the command's again */
    assert_int_equal(imap_parser_feed(p, buf, chunk, &used), IMAP_PARSE_ERROR);
    assert_int_equal(used, 0);
    imap_parser_free(&p);
    p = new_parser(NULL);
    assert_int_equal(imap_parser_feed(p, hdr, strlen(hdr), &used), IMAP_PARSE_LITERAL);
    assert_int_equal(imap_parser_literal_stream(p), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(imap_parser_feed(p, buf, chunk, &used), IMAP_PARSE_LITERAL_DATA);
    assert_int_equal(imap_parser_feed(p, "\r\n", 2, &used), IMAP_PARSE_COMMAND);
    const struct imap_command *c = imap_parser_command(p);
    assert_int_equal(c->count, 2);
    assert_true(c->args[1].streamed);
    assert_int_equal(c->args[1].len, 104857600);
    assert_false(c->args[1].has_nul);
    imap_parser_free(&p);
    free(buf);
}

static void test_literal_minus(void **state)
{
    (void)state;
    struct imap_parser_limits lim;
    imap_parser_limits_default(&lim);
    lim.literal_minus = true;
    lim.max_literal = 10000;
    static char in[10000];
    /* 4096 is allowed */
    int n = snprintf(in, sizeof(in), "A1 X {4096+}\r\n%04096d\r\nA2 NOOP\r\n", 7);
    struct tr t;
    run_once(&lim, false, in, (size_t)n, &t);
    assert_int_equal(strncmp(t.out, "[A1 X {4096+}0000", 17), 0);
    assert_non_null(strstr(t.out, "7] [A2 NOOP] "));
    /* 4097 is an error (RFC 7888 §4); the literal is skipped */
    n = snprintf(in, sizeof(in), "A1 X {4097+}\r\n%04097d\r\nA2 NOOP\r\n", 7);
    check_lim(&lim, false, in, (size_t)n, "!B:A1 [A2 NOOP] ");
    /* a synchronizing literal of any size is fine */
    n = snprintf(in, sizeof(in), "A1 X {5000}\r\n%05000d\r\n", 7);
    run_once(&lim, false, in, (size_t)n, &t);
    assert_int_equal(strncmp(t.out, "+ [A1 X {5000}0000", 18), 0);
    /* with LITERAL+ the non-synchronizing one is fine too */
    lim.literal_minus = false;
    n = snprintf(in, sizeof(in), "A1 X {4097+}\r\n%04097d\r\n", 7);
    run_once(&lim, false, in, (size_t)n, &t);
    assert_int_equal(strncmp(t.out, "[A1 X {4097+}0000", 17), 0);
}

static void test_literal_size_overflow(void **state)
{
    (void)state;
    /* 2^63 is one too many (number64) */
    check("A1 X {9223372036854775808}\r\nA2 NOOP\r\n", "!B:A1 [A2 NOOP] ");
    check("A1 X {9223372036854775808+}\r\nA2 NOOP\r\n", "!B:A1 !B:A1 FATAL ");
    check("A1 X {99999999999999999999999999+}\r\nA2 NOOP\r\n", "!B:A1 !B:A1 FATAL ");
    /* 2^63 - 1 parses and is refused as a literal */
    check("A1 X {9223372036854775807}\r\nA2 NOOP\r\n", "L9223372036854775807@0.0 !B:A1 [A2 NOOP] ");
}

/* ---- limits and errors ---------------------------------------------------------------------- */

static void test_line_limit(void **state)
{
    (void)state;
    struct imap_parser_limits lim;
    imap_parser_limits_default(&lim);
    lim.max_line = 20;
    /* 20 bytes with CRLF is fine */
    check_lim(&lim, false, "A1 X 0123456789ab\r\n", 19, "[A1 X 0123456789ab] ");
    check_lim(&lim, false, "A1 X 0123456789abc\r\n", 20, "[A1 X 0123456789abc] ");
    const char *s = "A1 X 0123456789abcd\r\nA2 NOOP\r\n";
    check_lim(&lim, false, s, strlen(s), "!L:A1 [A2 NOOP] ");
    /* no tag yet */
    s = "A123456789012345678901234567890 X\r\nA2 NOOP\r\n";
    check_lim(&lim, false, s, strlen(s), "!L:* [A2 NOOP] ");
    /* a literal on a line cut by the limit is still skipped */
    s = "A1 X aaaaaaaaaaaaaaaaaaaaaaaaaaa {4+}\r\nA3 X\r\nA2 NOOP\r\n";
    check_lim(&lim, false, s, strlen(s), "!L:A1 [A2 NOOP] ");
    /* also when the limit cuts the header itself */
    s = "A1 X aaaaaaaaaaa {0000000000004+}\r\nA3 X\r\nA2 NOOP\r\n";
    check_lim(&lim, false, s, strlen(s), "!L:A1 [A2 NOOP] ");
    /* raw lines have the limit too */
    s = "A1 LINE\r\n0123456789012345678901234\r\nA2 NOOP\r\n";
    check_lim(&lim, false, s, strlen(s), "[A1 LINE] !L:* [A2 NOOP] ");
}

static void test_depth_and_args(void **state)
{
    (void)state;
    struct imap_parser_limits lim;
    imap_parser_limits_default(&lim);
    char in[512];
    /* 32 levels are fine, 33 are not */
    size_t n = (size_t)snprintf(in, sizeof(in), "A1 X ");
    for (int i = 0; i < 32; i++)
        in[n++] = '(';
    for (int i = 0; i < 32; i++)
        in[n++] = ')';
    memcpy(in + n, "\r\n", 3);
    struct tr t;
    run_once(&lim, false, in, strlen(in), &t);
    assert_int_equal(t.out[0], '[');
    n = (size_t)snprintf(in, sizeof(in), "A1 X ");
    for (int i = 0; i < 33; i++)
        in[n++] = '(';
    for (int i = 0; i < 33; i++)
        in[n++] = ')';
    memcpy(in + n, "\r\nA2 NOOP\r\n", 12);
    check_lim(&lim, false, in, strlen(in), "!M:A1 [A2 NOOP] ");
    /* a deeper ceiling is clamped */
    lim.max_depth = 1000;
    n = (size_t)snprintf(in, sizeof(in), "A1 X ");
    for (int i = 0; i < 65; i++)
        in[n++] = '(';
    memcpy(in + n, "\r\nA2 NOOP\r\n", 12);
    check_lim(&lim, false, in, strlen(in), "!M:A1 [A2 NOOP] ");
    /* arguments: lists count */
    imap_parser_limits_default(&lim);
    lim.max_args = 4;
    check_lim(&lim, false, "A1 X a (b) c\r\n", 14, "[A1 X a (b) c] ");
    check_lim(&lim, false, "A1 X a (b c) d\r\nA2 NOOP\r\n", 25, "!M:A1 [A2 NOOP] ");
    check_lim(&lim, false, "A1 X a b c d e\r\n", 16, "!M:A1 ");
    check_lim(&lim, false, "A1 X a b c d {1}\r\nA2 NOOP\r\n", 27, "!M:A1 [A2 NOOP] ");
    /* whole command */
    imap_parser_limits_default(&lim);
    lim.max_command = 32;
    const char *s = "A1 X {10}\r\n0123456789 {10}\r\n0123456789 {10}\r\nA2 NOOP\r\n";
    check_lim(&lim, false, s, strlen(s), "+ + !B:A1 [A2 NOOP] ");
    s = "A1 X 0123456789 0123456789 0123456789\r\nA2 NOOP\r\n";
    check_lim(&lim, false, s, strlen(s), "!L:A1 [A2 NOOP] ");
}

static void test_syntax_errors(void **state)
{
    (void)state;
    check("\r\nA2 NOOP\r\n", "!S:* [A2 NOOP] ");
    check("\nA2 NOOP\r\n", "!S:* [A2 NOOP] ");
    check(" A1 NOOP\r\nA2 NOOP\r\n", "!S:* [A2 NOOP] ");
    check("A1\r\nA2 NOOP\r\n", "!S:* [A2 NOOP] ");
    check("A1 \r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("+1 NOOP\r\nA2 NOOP\r\n", "!S:* [A2 NOOP] ");
    check("A*1 NOOP\r\nA2 NOOP\r\n", "!S:* [A2 NOOP] ");
    check("A1 NO\"OP\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 NOOP\rA2 NOOP\r\nA3 NOOP\r\n", "!S:A1 [A3 NOOP] ");
    check("A1 X \"abc\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 X \"a\\bc\"\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 X \"a\"b\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 X a)\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 X (a\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 X a(b\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 X a\\b\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 X a{b\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 X \x01\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 X caf\xc3\xa9\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 X \"\xc3\"\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 X \"\xed\xa0\x80\"\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    CHECK_BIN(NULL, false, "A1 X \"a\0\"\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 X ~{3}x\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    /* after an error, a synchronizing literal ends the command, a non-synchronizing one is
     * skipped, so its bytes never run as a command */
    check("A1 X ) {13}\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 X ) {13+}\r\nA9 DELETE x\r\n\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    /* the command goes on after the literal, up to its own end of line */
    check("A1 X ) {13+}\r\nA9 DELETE x\r\nA2 NOOP\r\nA3 NOOP\r\n", "!S:A1 [A3 NOOP] ");
    check("A1 X ) {2+}\r\nab{3+}\r\nabc\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 X ) ~{13+}\r\nA9 DELETE x\r\n)\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 X ) {13+} \r\nA9 DELETE x\r\n", "!S:A1 [A9 DELETE x] ");
    check("A1 X ) {2000000+}\r\nA9 DELETE x\r\n", "!S:A1 !B:A1 FATAL ");
    /* the header that caused the error still counts */
    check("A1 X {1x+}\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 X {12+x}\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 X {12+} \r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
    check("A1 X {12+}\rx\r\nA2 NOOP\r\n", "!S:A1 [A2 NOOP] ");
}

static void test_line_mode(void **state)
{
    (void)state;
    /* AUTHENTICATE-style exchange: the command, then raw lines */
    check("A1 LINE\r\ndGVzdA==\r\nA2 NOOP\r\n", "[A1 LINE] <dGVzdA==> [A2 NOOP] ");
    check("A1 LINE\r\n\r\n", "[A1 LINE] <> ");
    check("A1 LINE\r\n* {5+}\r\n", "[A1 LINE] <* {5+}> ");
    check("A1 LINE\r\nDONE\nA2 NOOP\r\n", "[A1 LINE] <DONE> [A2 NOOP] ");
    check("A1 LINE\r\nab\rc\r\nA2 NOOP\r\n", "[A1 LINE] !S:* [A2 NOOP] ");
    /* raw lines are refused in the middle of a command */
    struct imap_parser *p = new_parser(NULL);
    size_t used;
    assert_int_equal(imap_parser_feed(p, "A1 X", 4, &used), IMAP_PARSE_MORE);
    assert_int_equal(imap_parser_read_line(p), -1);
    assert_null(imap_parser_line(p, NULL));
    assert_null(imap_parser_command_name(p)); /* not complete yet */
    assert_int_equal(imap_parser_feed(p, "y ", 2, &used), IMAP_PARSE_MORE);
    assert_string_equal(imap_parser_command_name(p), "XY");
    imap_parser_free(&p);
    imap_parser_free(&p); /* NULL is fine */
}

static void test_accessors(void **state)
{
    (void)state;
    struct imap_parser *p = new_parser(NULL);
    const char *in = "T X atom NIL \"q\" {1+}\r\nl ~{1+}\r\nb ()\r\n";
    size_t used;
    assert_int_equal(imap_parser_feed(p, in, strlen(in), &used), IMAP_PARSE_COMMAND);
    const struct imap_command *c = imap_parser_command(p);
    assert_int_equal(c->count, 6);
    const struct imap_arg *a = c->args;
    const char *s;
    assert_string_equal(imap_arg_atom(&a[0]), "atom");
    assert_string_equal(imap_arg_astring(&a[0]), "atom");
    assert_null(imap_arg_string(&a[0]));
    assert_int_equal(imap_arg_nstring(&a[0], &s), -1);
    assert_int_equal(a[1].type, IMAP_ARG_NIL);
    assert_string_equal(imap_arg_astring(&a[1]), "NIL");
    assert_int_equal(imap_arg_nstring(&a[1], &s), 0);
    assert_null(s);
    assert_null(imap_arg_atom(&a[2]));
    assert_string_equal(imap_arg_string(&a[2]), "q");
    assert_string_equal(imap_arg_astring(&a[2]), "q");
    assert_int_equal(imap_arg_nstring(&a[2], &s), 0);
    assert_string_equal(s, "q");
    assert_string_equal(imap_arg_string(&a[3]), "l");
    assert_true(a[3].nonsync);
    assert_null(imap_arg_string(&a[4])); /* literal8 is not a string */
    assert_null(imap_arg_astring(&a[4]));
    size_t n = 99;
    assert_non_null(imap_arg_list(&a[5], &n));
    assert_int_equal(n, 0);
    assert_null(imap_arg_astring(&a[5]));
    assert_null(imap_arg_atom(NULL));
    assert_null(imap_arg_string(NULL));
    imap_parser_free(&p);
}

static void test_error_state_api(void **state)
{
    (void)state;
    struct imap_parser *p = new_parser(NULL);
    size_t used;
    const char *msg;
    assert_int_equal(imap_parser_error(p, &msg), IMAP_ERR_NONE);
    assert_null(imap_parser_error_tag(p));
    assert_int_equal(imap_parser_feed(p, "A1 X )", 6, &used), IMAP_PARSE_ERROR);
    assert_int_equal(used, 5); /* the ')' is left for the discard */
    assert_int_equal(imap_parser_error(p, &msg), IMAP_ERR_SYNTAX);
    assert_string_equal(msg, "unexpected ')'");
    assert_string_equal(imap_parser_error_tag(p), "A1");
    assert_int_equal(imap_parser_feed(p, ")", 1, &used), IMAP_PARSE_MORE);
    assert_int_equal(used, 1);
    assert_int_equal(imap_parser_error(p, NULL), IMAP_ERR_NONE); /* answered */
    assert_int_equal(imap_parser_feed(p, "\r\nA2 NOOP\r\n", 11, &used), IMAP_PARSE_COMMAND);
    assert_int_equal(used, 11);
    /* no decision outside a literal */
    assert_int_equal(imap_parser_literal_stream(p), -1);
    assert_int_equal(imap_parser_literal_refuse(p), -1);
    assert_int_equal(imap_parser_literal_remaining(p), 0);
    imap_parser_next(p);
    imap_parser_next(p); /* harmless */
    assert_null(imap_parser_command_name(p));
    /* empty feeds */
    assert_int_equal(imap_parser_feed(p, "", 0, &used), IMAP_PARSE_MORE);
    assert_int_equal(used, 0);
    imap_parser_free(&p);
}

static void test_limits_defaults(void **state)
{
    (void)state;
    struct imap_parser_limits lim;
    imap_parser_limits_default(&lim);
    assert_int_equal(lim.max_line, 64 * 1024);
    assert_int_equal(lim.max_depth, 32);
    assert_false(lim.literal_minus);
    /* zero fields take defaults, so a zeroed struct is a working set of limits */
    struct imap_parser_limits zero = {0};
    struct imap_parser *p = new_parser(&zero);
    size_t used;
    assert_int_equal(imap_parser_feed(p, "A1 X {5+}\r\nhello\r\n", 18, &used), IMAP_PARSE_COMMAND);
    imap_parser_next(p);
    /* set_limits between commands */
    lim.max_line = 8;
    imap_parser_set_limits(p, &lim);
    assert_int_equal(imap_parser_feed(p, "A1 NOOPNOOP\r\n", 13, &used), IMAP_PARSE_ERROR);
    assert_int_equal(imap_parser_error(p, NULL), IMAP_ERR_TOOLONG);
    imap_parser_free(&p);
}

/* A large command through a parser that grows and gives back its buffers. */
static void test_big_command(void **state)
{
    (void)state;
    size_t n = 5000;
    char *in = malloc(n * 4 + 64);
    assert_non_null(in);
    size_t k = (size_t)sprintf(in, "A1 SEARCH");
    for (size_t i = 0; i < n; i++)
        k += (size_t)sprintf(in + k, " %zu", i % 10);
    k += (size_t)sprintf(in + k, "\r\n");
    struct imap_parser *p = new_parser(NULL);
    for (int round = 0; round < 3; round++) {
        size_t used;
        assert_int_equal(imap_parser_feed(p, in, k, &used), IMAP_PARSE_COMMAND);
        assert_int_equal(used, k);
        const struct imap_command *c = imap_parser_command(p);
        assert_int_equal(c->count, n);
        assert_string_equal(c->args[4999].str, "9");
        imap_parser_next(p);
        assert_int_equal(imap_parser_feed(p, "A2 NOOP\r\n", 9, &used), IMAP_PARSE_COMMAND);
        imap_parser_next(p);
    }
    imap_parser_free(&p);
    free(in);
}

/* ---- writing strings (quote.c) -------------------------------------------------------------- */

static void check_quote(const char *s, size_t n, unsigned flags, enum imap_quote_form form,
                        const char *want)
{
    assert_int_equal(imap_quote_choose(s, n, flags), form);
    struct imap_envelope_out out = {0};
    assert_int_equal(imap_quote_append(&out, s, n, flags), 0);
    assert_false(out.failed);
    assert_string_equal(out.data, want);
    /* the reader gets the same bytes back */
    char cmd[512];
    int w = snprintf(cmd, sizeof(cmd), "T X %s\r\n", out.data);
    assert_true(w > 0 && (size_t)w < sizeof(cmd));
    struct imap_parser *p = new_parser(NULL);
    size_t used, off = 0;
    enum imap_parse_event ev;
    while ((ev = imap_parser_feed(p, cmd + off, (size_t)w - off, &used)) == IMAP_PARSE_CONTINUE)
        off += used;
    assert_int_equal(ev, IMAP_PARSE_COMMAND);
    const struct imap_command *c = imap_parser_command(p);
    assert_int_equal(c->count, 1);
    const char *back =
        (flags & IMAP_QUOTE_ASTRING) ? imap_arg_astring(&c->args[0]) : imap_arg_string(&c->args[0]);
    assert_non_null(back);
    assert_int_equal(c->args[0].len, n);
    assert_memory_equal(back, s, n);
    imap_parser_free(&p);
    imap_envelope_out_free(&out);
}

static void test_quote(void **state)
{
    (void)state;
    const unsigned A = IMAP_QUOTE_ASTRING, U = IMAP_QUOTE_UTF8;
    check_quote("INBOX", 5, A, IMAP_QUOTE_FORM_ATOM, "INBOX");
    check_quote("INBOX", 5, 0, IMAP_QUOTE_FORM_QUOTED, "\"INBOX\"");
    check_quote("[Gmail]/Sent", 12, A, IMAP_QUOTE_FORM_ATOM, "[Gmail]/Sent");
    check_quote("a]b[c]", 6, A, IMAP_QUOTE_FORM_ATOM, "a]b[c]");
    /* the reader needs brackets closed on the line, so unbalanced ones are quoted */
    check_quote("a[b", 3, A, IMAP_QUOTE_FORM_QUOTED, "\"a[b\"");
    check_quote("a[b[c]]", 7, A, IMAP_QUOTE_FORM_QUOTED, "\"a[b[c]]\"");
    check_quote("", 0, A, IMAP_QUOTE_FORM_QUOTED, "\"\"");
    check_quote("NIL", 3, A, IMAP_QUOTE_FORM_QUOTED, "\"NIL\"");
    check_quote("nil", 3, A, IMAP_QUOTE_FORM_QUOTED, "\"nil\"");
    check_quote("NILS", 4, A, IMAP_QUOTE_FORM_ATOM, "NILS");
    check_quote("a b", 3, A, IMAP_QUOTE_FORM_QUOTED, "\"a b\"");
    check_quote("a*", 2, A, IMAP_QUOTE_FORM_QUOTED, "\"a*\"");
    check_quote("50%", 3, A, IMAP_QUOTE_FORM_QUOTED, "\"50%\"");
    check_quote("(x)", 3, A, IMAP_QUOTE_FORM_QUOTED, "\"(x)\"");
    check_quote("{5}", 3, A, IMAP_QUOTE_FORM_QUOTED, "\"{5}\"");
    check_quote("say \"hi\" \\o/", 12, A, IMAP_QUOTE_FORM_QUOTED, "\"say \\\"hi\\\" \\\\o/\"");
    check_quote("\\Seen", 5, A, IMAP_QUOTE_FORM_QUOTED, "\"\\\\Seen\"");
    /* CR, LF and controls go in literals */
    check_quote("a\r\nb", 4, A, IMAP_QUOTE_FORM_LITERAL, "{4}\r\na\r\nb");
    check_quote("a\tb", 3, 0, IMAP_QUOTE_FORM_LITERAL, "{3}\r\na\tb");
    check_quote("\x7f", 1, 0, IMAP_QUOTE_FORM_LITERAL, "{1}\r\n\x7f");
    /* UTF-8: quoted only for UTF-8 sessions, and only when valid */
    check_quote("caf\xc3\xa9", 5, A | U, IMAP_QUOTE_FORM_QUOTED, "\"caf\xc3\xa9\"");
    check_quote("caf\xc3\xa9", 5, A, IMAP_QUOTE_FORM_LITERAL, "{5}\r\ncaf\xc3\xa9");
    check_quote("caf\xe9", 4, A | U, IMAP_QUOTE_FORM_LITERAL, "{4}\r\ncaf\xe9");
    /* NUL cannot be sent */
    assert_int_equal(imap_quote_choose("a\0b", 3, A), IMAP_QUOTE_FORM_NONE);
    struct imap_envelope_out out = {0};
    assert_int_equal(imap_quote_append(&out, "a\0b", 3, A), -1);
    assert_int_equal(out.len, 0);
    /* nstrings: NIL, and never an atom */
    assert_int_equal(imap_quote_nstring(&out, NULL, A), 0);
    assert_int_equal(imap_quote_nstring(&out, "x", A), 0);
    assert_int_equal(imap_quote_nstring(&out, "NIL", A | U), 0);
    assert_string_equal(out.data, "NIL\"x\"\"NIL\"");
    imap_envelope_out_free(&out);
}

/* Every byte value alone and in pairs survives writing and reading in both session kinds. */
static void test_quote_all_bytes(void **state)
{
    (void)state;
    struct imap_envelope_out out = {0};
    for (unsigned flags = 0; flags < 4; flags++) {
        for (int a = 1; a < 256; a++) {
            for (int b = 0; b < 256; b += 17) {
                char s[2] = {(char)a, (char)b};
                size_t n = b ? 2 : 1;
                enum imap_quote_form f = imap_quote_choose(s, n, flags);
                assert_true(f != IMAP_QUOTE_FORM_NONE);
                char cmd[64];
                out.len = 0;
                assert_int_equal(imap_quote_append(&out, s, n, flags), 0);
                int w = snprintf(cmd, sizeof(cmd), "T X ");
                memcpy(cmd + w, out.data, out.len);
                memcpy(cmd + w + out.len, "\r\n", 2);
                size_t total = (size_t)w + out.len + 2;
                struct imap_parser *p = new_parser(NULL);
                size_t used, off = 0;
                enum imap_parse_event ev;
                while ((ev = imap_parser_feed(p, cmd + off, total - off, &used)) ==
                       IMAP_PARSE_CONTINUE)
                    off += used;
                if (ev != IMAP_PARSE_COMMAND)
                    fail_msg("bytes %02x %02x flags %u: \"%s\" not read back", a, b, flags,
                             out.data);
                const struct imap_arg *arg = &imap_parser_command(p)->args[0];
                const char *back =
                    (flags & IMAP_QUOTE_ASTRING) ? imap_arg_astring(arg) : imap_arg_string(arg);
                assert_non_null(back);
                assert_int_equal(arg->len, n);
                assert_memory_equal(back, s, n);
                imap_parser_free(&p);
            }
        }
    }
    imap_envelope_out_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple),          cmocka_unit_test(test_atoms_and_nil),
        cmocka_unit_test(test_quoted),          cmocka_unit_test(test_lists),
        cmocka_unit_test(test_fetch_sections),  cmocka_unit_test(test_literals),
        cmocka_unit_test(test_literal_limits),  cmocka_unit_test(test_stream_large),
        cmocka_unit_test(test_literal_minus),   cmocka_unit_test(test_literal_size_overflow),
        cmocka_unit_test(test_line_limit),      cmocka_unit_test(test_depth_and_args),
        cmocka_unit_test(test_syntax_errors),   cmocka_unit_test(test_line_mode),
        cmocka_unit_test(test_accessors),       cmocka_unit_test(test_error_state_api),
        cmocka_unit_test(test_limits_defaults), cmocka_unit_test(test_big_command),
        cmocka_unit_test(test_quote),           cmocka_unit_test(test_quote_all_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
