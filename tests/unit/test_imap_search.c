/* layer: proto */
/* Tests for proto/imap/search.c and proto/imap/thread.c: SEARCH / SORT / THREAD arguments
 * read by the real command reader (parser.c) and parsed into programs (every key, the
 * normalisations, RETURN, CHARSET, limits, errors), dates, the SEARCH / ESEARCH / SORT
 * responses, RFC 5182 saved results, base subjects (RFC 5256 §2.1) and both threading
 * algorithms with the RFC 5256 §4 examples, dummies, loops and a very long reply chain. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/imap/parser.h"
#include "proto/imap/search.h"
#include "proto/imap/thread.h"

/* ---- helpers ---- */

/* Reads "tag <line>" with the real command reader and parses the arguments after the command
 * name (and after UID). */
static int parse_ctx(enum imap_search_command cmd, const char *line, uint32_t messages,
                     uint32_t max_uid, struct imap_search_program **prog, char *err, size_t errlen)
{
    struct imap_parser *p = imap_parser_new(NULL);
    assert_non_null(p);
    size_t n = strlen(line) + 8;
    char *buf = malloc(n);
    assert_non_null(buf);
    snprintf(buf, n, "a1 %s\r\n", line);
    const char *d = buf;
    size_t len = strlen(buf);
    enum imap_parse_event ev;
    for (;;) {
        size_t used;
        ev = imap_parser_feed(p, d, len, &used);
        d += used;
        len -= used;
        if (ev != IMAP_PARSE_CONTINUE)
            break;
    }
    if (ev != IMAP_PARSE_COMMAND) {
        const char *msg;
        imap_parser_error(p, &msg);
        fail_msg("reader: %d %s for %s", ev, msg ? msg : "", line);
    }
    const struct imap_command *c = imap_parser_command(p);
    size_t skip = strcmp(c->name, "UID") == 0 ? 1 : 0;
    struct imap_search_context ctx = {.messages = messages, .max_uid = max_uid};
    int rc = imap_search_parse(cmd, c->args + skip, c->count - skip, &ctx, prog, err, errlen);
    imap_parser_free(&p);
    free(buf);
    return rc;
}

static int parse(enum imap_search_command cmd, const char *line, struct imap_search_program **prog)
{
    char err[256];
    return parse_ctx(cmd, line, 10, 100, prog, err, sizeof(err));
}

/* The tree as an S-expression, for compact assertions. */
static void dump_key(const struct imap_search_key *k, char *out, size_t cap)
{
    static const char *const names[] = {
        "ALL",     "AND",       "OR",          "NOT",     "SEQ",        "UID",    "SAVED",
        "FLAG",    "KEYWORD",   "RECENT",      "BEFORE",  "ON",         "SINCE",  "SENTBEFORE",
        "SENTON",  "SENTSINCE", "SAVEDBEFORE", "SAVEDON", "SAVEDSINCE", "LARGER", "SMALLER",
        "OLDER",   "YOUNGER",   "MODSEQ",      "BCC",     "BODY",       "CC",     "FROM",
        "SUBJECT", "TEXT",      "TO",          "HEADER"};
    size_t l = strlen(out);
    snprintf(out + l, cap - l, "(%s", names[k->op]);
    l = strlen(out);
    switch (k->op) {
    case IMAP_SEARCH_FLAG:
        snprintf(out + l, cap - l, " %u", k->flag);
        break;
    case IMAP_SEARCH_SEQSET:
    case IMAP_SEARCH_UIDSET: {
        char *s = NULL;
        assert_int_equal(imap_seqset_format(k->set, &s, NULL), 0);
        snprintf(out + l, cap - l, " %s", s);
        free(s);
        break;
    }
    case IMAP_SEARCH_BEFORE:
    case IMAP_SEARCH_ON:
    case IMAP_SEARCH_SINCE:
    case IMAP_SEARCH_SENTBEFORE:
    case IMAP_SEARCH_SENTON:
    case IMAP_SEARCH_SENTSINCE:
    case IMAP_SEARCH_SAVEDBEFORE:
    case IMAP_SEARCH_SAVEDON:
    case IMAP_SEARCH_SAVEDSINCE:
        snprintf(out + l, cap - l, " %d", (int)k->day);
        break;
    case IMAP_SEARCH_LARGER:
    case IMAP_SEARCH_SMALLER:
    case IMAP_SEARCH_OLDER:
    case IMAP_SEARCH_YOUNGER:
    case IMAP_SEARCH_MODSEQ:
        snprintf(out + l, cap - l, " %llu", (unsigned long long)k->number);
        break;
    case IMAP_SEARCH_HEADER:
        snprintf(out + l, cap - l, " %s", k->field);
        /* fall through */
    case IMAP_SEARCH_KEYWORD:
    case IMAP_SEARCH_BCC:
    case IMAP_SEARCH_BODY:
    case IMAP_SEARCH_CC:
    case IMAP_SEARCH_FROM:
    case IMAP_SEARCH_SUBJECT:
    case IMAP_SEARCH_TEXT:
    case IMAP_SEARCH_TO:
        l = strlen(out);
        snprintf(out + l, cap - l, " \"%s\"", k->str);
        break;
    default:
        break;
    }
    for (size_t i = 0; i < k->nchildren; i++) {
        l = strlen(out);
        snprintf(out + l, cap - l, " ");
        dump_key(&k->children[i], out, cap);
    }
    l = strlen(out);
    snprintf(out + l, cap - l, ")");
}

static void assert_tree(const char *line, const char *want)
{
    struct imap_search_program *prog = NULL;
    char err[256] = "";
    int rc = parse_ctx(IMAP_SEARCH_CMD_SEARCH, line, 10, 100, &prog, err, sizeof(err));
    if (rc != 0)
        fail_msg("%s: %d %s", line, rc, err);
    char out[4096] = "";
    dump_key(&prog->root, out, sizeof(out));
    if (strcmp(out, want) != 0)
        fail_msg("%s:\n got  %s\n want %s", line, out, want);
    imap_search_program_free(&prog);
    assert_null(prog);
}

static void assert_bad(enum imap_search_command cmd, const char *line, int want_rc)
{
    struct imap_search_program *prog = (struct imap_search_program *)1;
    char err[256] = "";
    int rc = parse_ctx(cmd, line, 10, 100, &prog, err, sizeof(err));
    if (rc != want_rc)
        fail_msg("%s: rc %d (%s), want %d", line, rc, err, want_rc);
    assert_null(prog);
    assert_true(err[0] != '\0');
}

/* ---- parsing ---- */

static void test_every_key(void **state)
{
    (void)state;
    assert_tree("SEARCH ALL", "(AND (ALL))");
    assert_tree("SEARCH ANSWERED DELETED DRAFT FLAGGED SEEN",
                "(AND (FLAG 2) (FLAG 8) (FLAG 16) (FLAG 4) (FLAG 1))");
    assert_tree(
        "SEARCH UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNSEEN",
        "(AND (NOT (FLAG 2)) (NOT (FLAG 8)) (NOT (FLAG 16)) (NOT (FLAG 4)) (NOT (FLAG 1)))");
    assert_tree("SEARCH BCC b CC \"c d\" FROM {3}\r\nf\"x TO t SUBJECT s BODY y TEXT \"\"",
                "(AND (BCC \"b\") (CC \"c d\") (FROM \"f\"x\") (TO \"t\") (SUBJECT \"s\") "
                "(BODY \"y\") (TEXT \"\"))");
    assert_tree("SEARCH HEADER X-Spam \"yes\" HEADER Message-ID \"\"",
                "(AND (HEADER X-Spam \"yes\") (HEADER Message-ID \"\"))");
    assert_tree("SEARCH KEYWORD $Junk UNKEYWORD foo KEYWORD \\Seen",
                "(AND (KEYWORD \"$Junk\") (NOT (KEYWORD \"foo\")) (FLAG 1))");
    /* 1-Feb-1994 is day 8797 after 1970-01-01 */
    assert_tree("SEARCH BEFORE 1-Feb-1994 ON \"1-feb-1994\" SINCE 01-Jan-1970",
                "(AND (BEFORE 8797) (ON 8797) (SINCE 0))");
    assert_tree("SEARCH SENTBEFORE 2-Feb-1994 SENTON 31-Dec-1969 SENTSINCE 29-Feb-2000",
                "(AND (SENTBEFORE 8798) (SENTON -1) (SENTSINCE 11016))");
    assert_tree("SEARCH SAVEDBEFORE 1-Jan-1970 SAVEDON 1-Jan-1970 SAVEDSINCE 1-Jan-1970 "
                "SAVEDATESUPPORTED",
                "(AND (SAVEDBEFORE 0) (SAVEDON 0) (SAVEDSINCE 0) (ALL))");
    assert_tree("SEARCH LARGER 0 SMALLER 9223372036854775807 OLDER 60 YOUNGER 1",
                "(AND (LARGER 0) (SMALLER 9223372036854775807) (OLDER 60) (YOUNGER 1))");
    assert_tree("SEARCH NEW OLD RECENT",
                "(AND (AND (RECENT) (NOT (FLAG 1))) (NOT (RECENT)) (RECENT))");
    assert_tree("SEARCH NOT OR SEEN (FLAGGED DELETED) ALL",
                "(AND (NOT (OR (FLAG 1) (AND (FLAG 4) (FLAG 8)))) (ALL))");
    assert_tree("search or not seen from x subject y",
                "(AND (OR (NOT (FLAG 1)) (FROM \"x\")) (SUBJECT \"y\"))");
}

static void test_sets(void **state)
{
    (void)state;
    /* "*" is the message count (10) for sequence numbers, the highest UID (100) for UIDs */
    assert_tree("SEARCH 1:3,5 2:* UID 50:* UID 7",
                "(AND (SEQ 1:3,5) (SEQ 2:10) (UID 50:100) (UID 7))");
    assert_tree("UID SEARCH UID 200:*", "(AND (UID 100:200))");
    assert_tree("SEARCH $ UID $ NOT $", "(AND (SAVED) (SAVED) (NOT (SAVED)))");
    struct imap_search_program *prog;
    assert_int_equal(parse(IMAP_SEARCH_CMD_SEARCH, "SEARCH 1:4 $", &prog), 0);
    assert_true(prog->uses_seq);
    assert_true(prog->uses_saved);
    imap_search_program_free(&prog);
    assert_int_equal(parse(IMAP_SEARCH_CMD_SEARCH, "SEARCH UID 1:4", &prog), 0);
    assert_false(prog->uses_seq);
    assert_false(prog->uses_saved);
    imap_search_program_free(&prog);
    /* empty mailbox: "*" stands for nothing */
    char err[128];
    assert_int_equal(
        parse_ctx(IMAP_SEARCH_CMD_SEARCH, "SEARCH 1:* UID *", 0, 0, &prog, err, sizeof(err)), 0);
    assert_true(imap_seqset_is_empty(prog->root.children[0].set));
    assert_true(imap_seqset_is_empty(prog->root.children[1].set));
    imap_search_program_free(&prog);
    assert_bad(IMAP_SEARCH_CMD_SEARCH, "SEARCH 0:3", IMAP_SEARCH_EBAD);
    assert_bad(IMAP_SEARCH_CMD_SEARCH, "SEARCH 1,,2", IMAP_SEARCH_EBAD);
    assert_bad(IMAP_SEARCH_CMD_SEARCH, "SEARCH UID x", IMAP_SEARCH_EBAD);
    assert_bad(IMAP_SEARCH_CMD_SEARCH, "SEARCH UID", IMAP_SEARCH_EBAD);
    assert_bad(IMAP_SEARCH_CMD_SEARCH, "SEARCH $,1", IMAP_SEARCH_EBAD);
}

static void test_return_charset_modseq(void **state)
{
    (void)state;
    struct imap_search_program *prog;
    assert_int_equal(parse(IMAP_SEARCH_CMD_SEARCH, "SEARCH ALL", &prog), 0);
    assert_false(prog->esearch);
    assert_int_equal(prog->ret, 0);
    imap_search_program_free(&prog);
    assert_int_equal(parse(IMAP_SEARCH_CMD_SEARCH,
                           "SEARCH RETURN (MIN max Count ALL SAVE) CHARSET UTF-8 ALL", &prog),
                     0);
    assert_true(prog->esearch);
    assert_int_equal(prog->ret, IMAP_SEARCH_RET_MIN | IMAP_SEARCH_RET_MAX | IMAP_SEARCH_RET_COUNT |
                                    IMAP_SEARCH_RET_ALL | IMAP_SEARCH_RET_SAVE);
    imap_search_program_free(&prog);
    /* RFC 4731 §3.1: RETURN () is ALL */
    assert_int_equal(parse(IMAP_SEARCH_CMD_SEARCH, "SEARCH RETURN () SEEN", &prog), 0);
    assert_true(prog->esearch);
    assert_int_equal(prog->ret, IMAP_SEARCH_RET_ALL);
    imap_search_program_free(&prog);
    assert_int_equal(parse(IMAP_SEARCH_CMD_SEARCH, "SEARCH CHARSET \"us-ascii\" SEEN", &prog), 0);
    imap_search_program_free(&prog);
    /* RFC 7162 §3.1.5 with and without the entry name */
    assert_int_equal(parse(IMAP_SEARCH_CMD_SEARCH,
                           "SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338 MODSEQ 0", &prog),
                     0);
    assert_true(prog->modseq);
    assert_int_equal(prog->root.children[0].number, 620162338);
    assert_int_equal(prog->root.children[1].number, 0);
    imap_search_program_free(&prog);
    assert_int_equal(parse(IMAP_SEARCH_CMD_SEARCH, "SEARCH SEEN", &prog), 0);
    assert_false(prog->modseq);
    imap_search_program_free(&prog);

    assert_bad(IMAP_SEARCH_CMD_SEARCH, "SEARCH CHARSET KOI8-R ALL", IMAP_SEARCH_EBADCHARSET);
    assert_bad(IMAP_SEARCH_CMD_SEARCH, "SEARCH CHARSET", IMAP_SEARCH_EBAD);
    assert_bad(IMAP_SEARCH_CMD_SEARCH, "SEARCH CHARSET UTF-8", IMAP_SEARCH_EBAD);
    assert_bad(IMAP_SEARCH_CMD_SEARCH, "SEARCH RETURN (FIRST) ALL", IMAP_SEARCH_EBAD);
    assert_bad(IMAP_SEARCH_CMD_SEARCH, "SEARCH RETURN ALL", IMAP_SEARCH_EBAD);
    assert_bad(IMAP_SEARCH_CMD_SEARCH, "SEARCH MODSEQ \"/flags/\\\\draft\" 5", IMAP_SEARCH_EBAD);
    assert_bad(IMAP_SEARCH_CMD_SEARCH, "SEARCH MODSEQ \"/x\" all 5", IMAP_SEARCH_EBAD);
    assert_bad(IMAP_SEARCH_CMD_SEARCH, "SEARCH MODSEQ \"/flags/\\\\draft\" any 5",
               IMAP_SEARCH_EBAD);
    assert_bad(IMAP_SEARCH_CMD_SEARCH, "SEARCH MODSEQ 9223372036854775808", IMAP_SEARCH_EBAD);
}

static void test_errors_and_limits(void **state)
{
    (void)state;
    const char *bad[] = {
        "SEARCH",
        "SEARCH FOO",
        "SEARCH FROM",
        "SEARCH HEADER X",
        "SEARCH HEADER \"\" x",
        "SEARCH HEADER \"a:b\" x",
        "SEARCH BEFORE 1-Foo-2000",
        "SEARCH BEFORE 31-Apr-2000",
        "SEARCH BEFORE 29-Feb-1900",
        "SEARCH BEFORE 1-Jan-99",
        "SEARCH BEFORE 1-Jan-2000x",
        "SEARCH BEFORE 123-Jan-2000",
        "SEARCH LARGER -1",
        "SEARCH LARGER x",
        "SEARCH SMALLER 9223372036854775808",
        "SEARCH OLDER 0",
        "SEARCH KEYWORD \\Foo",
        "SEARCH KEYWORD (x)",
        "SEARCH KEYWORD",
        "SEARCH NOT",
        "SEARCH OR SEEN",
        "SEARCH ()",
        "SEARCH NIL",
        "SEARCH FROM (x)",
        "SEARCH SUBJECT {2}\r\n\xc3\x28",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_bad(IMAP_SEARCH_CMD_SEARCH, bad[i], IMAP_SEARCH_EBAD);

    /* nesting: NOT chains count, not just parentheses */
    char line[8192] = "SEARCH";
    for (int i = 0; i < IMAP_SEARCH_MAX_DEPTH - 1; i++)
        strcat(line, " NOT");
    strcat(line, " ALL");
    struct imap_search_program *prog;
    assert_int_equal(parse(IMAP_SEARCH_CMD_SEARCH, line, &prog), 0);
    imap_search_program_free(&prog);
    strcpy(line, "SEARCH");
    for (int i = 0; i < IMAP_SEARCH_MAX_DEPTH + 5; i++)
        strcat(line, " NOT");
    strcat(line, " ALL");
    assert_bad(IMAP_SEARCH_CMD_SEARCH, line, IMAP_SEARCH_EBAD);

    /* key count */
    char *many = malloc(8 * (IMAP_SEARCH_MAX_KEYS + 2) + 16);
    assert_non_null(many);
    strcpy(many, "SEARCH");
    for (int i = 0; i < IMAP_SEARCH_MAX_KEYS; i++)
        strcat(many, " SEEN");
    assert_int_equal(parse(IMAP_SEARCH_CMD_SEARCH, many, &prog), 0);
    assert_int_equal(prog->nkeys, IMAP_SEARCH_MAX_KEYS);
    imap_search_program_free(&prog);
    strcat(many, " SEEN");
    assert_bad(IMAP_SEARCH_CMD_SEARCH, many, IMAP_SEARCH_EBAD);
    free(many);
}

static void test_sort_thread_args(void **state)
{
    (void)state;
    struct imap_search_program *prog;
    assert_int_equal(parse(IMAP_SEARCH_CMD_SORT,
                           "SORT (SUBJECT REVERSE DATE arrival CC FROM SIZE TO DISPLAYFROM "
                           "REVERSE DISPLAYTO) UTF-8 SINCE 1-Feb-1994",
                           &prog),
                     0);
    assert_int_equal(prog->command, IMAP_SEARCH_CMD_SORT);
    assert_int_equal(prog->nsort, 9);
    assert_int_equal(prog->sort[0].key, IMAP_SORT_SUBJECT);
    assert_false(prog->sort[0].reverse);
    assert_int_equal(prog->sort[1].key, IMAP_SORT_DATE);
    assert_true(prog->sort[1].reverse);
    assert_int_equal(prog->sort[2].key, IMAP_SORT_ARRIVAL);
    assert_false(prog->sort[2].reverse);
    assert_int_equal(prog->sort[7].key, IMAP_SORT_DISPLAYFROM);
    assert_int_equal(prog->sort[8].key, IMAP_SORT_DISPLAYTO);
    assert_true(prog->sort[8].reverse);
    assert_int_equal(prog->root.children[0].op, IMAP_SEARCH_SINCE);
    imap_search_program_free(&prog);
    assert_int_equal(parse(IMAP_SEARCH_CMD_SORT, "UID SORT (SIZE) US-ASCII 1:*", &prog), 0);
    imap_search_program_free(&prog);
    assert_int_equal(parse(IMAP_SEARCH_CMD_THREAD, "THREAD REFERENCES UTF-8 ALL", &prog), 0);
    assert_int_equal(prog->thread, IMAP_THREAD_REFERENCES);
    imap_search_program_free(&prog);
    assert_int_equal(parse(IMAP_SEARCH_CMD_THREAD, "UID THREAD orderedsubject utf-8 SEEN", &prog),
                     0);
    assert_int_equal(prog->thread, IMAP_THREAD_ORDEREDSUBJECT);
    imap_search_program_free(&prog);

    assert_bad(IMAP_SEARCH_CMD_SORT, "SORT () UTF-8 ALL", IMAP_SEARCH_EBAD);
    assert_bad(IMAP_SEARCH_CMD_SORT, "SORT (DATE REVERSE) UTF-8 ALL", IMAP_SEARCH_EBAD);
    assert_bad(IMAP_SEARCH_CMD_SORT, "SORT (REVERSE REVERSE DATE) UTF-8 ALL", IMAP_SEARCH_EBAD);
    assert_bad(IMAP_SEARCH_CMD_SORT, "SORT (COLOR) UTF-8 ALL", IMAP_SEARCH_EBAD);
    assert_bad(IMAP_SEARCH_CMD_SORT, "SORT DATE UTF-8 ALL", IMAP_SEARCH_EBAD);
    assert_bad(IMAP_SEARCH_CMD_SORT, "SORT (DATE) ALL", IMAP_SEARCH_EBADCHARSET);
    assert_bad(IMAP_SEARCH_CMD_SORT, "SORT (DATE) UTF-8", IMAP_SEARCH_EBAD);
    assert_bad(IMAP_SEARCH_CMD_SORT, "SORT (DATE) ISO-8859-1 ALL", IMAP_SEARCH_EBADCHARSET);
    assert_bad(IMAP_SEARCH_CMD_SORT,
               "SORT (DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE "
               "DATE DATE DATE DATE DATE DATE DATE) UTF-8 ALL",
               IMAP_SEARCH_EBAD);
    assert_bad(IMAP_SEARCH_CMD_THREAD, "THREAD X-FANCY UTF-8 ALL", IMAP_SEARCH_EBAD);
    assert_bad(IMAP_SEARCH_CMD_THREAD, "THREAD REFERENCES UTF-8", IMAP_SEARCH_EBAD);
    assert_bad(IMAP_SEARCH_CMD_THREAD, "THREAD", IMAP_SEARCH_EBAD);
}

static void test_dates(void **state)
{
    (void)state;
    int32_t d;
    assert_int_equal(imap_search_parse_date("1-Jan-1970", &d), 0);
    assert_int_equal(d, 0);
    assert_int_equal(imap_search_parse_date("31-Dec-1969", &d), 0);
    assert_int_equal(d, -1);
    assert_int_equal(imap_search_parse_date("1-Mar-2000", &d), 0);
    assert_int_equal(d, 11017);
    assert_int_equal(imap_search_parse_date("21-Nov-2026", &d), 0);
    assert_int_equal(d, 20778); /* 2026-11-21 */
    assert_int_equal(imap_search_parse_date("1-Jan-0001", &d), 0);
    assert_int_equal(d, -719162);
    assert_int_equal(imap_search_parse_date("31-Dec-9999", &d), 0);
    assert_int_equal(d, 2932896);
    assert_int_equal(imap_search_parse_date("29-Feb-2024", &d), 0);
    assert_int_equal(imap_search_parse_date("29-Feb-2023", &d), -1);
    assert_int_equal(imap_search_parse_date("0-Jan-2023", &d), -1);
    assert_int_equal(imap_search_parse_date("1-Jan-0000", &d), -1);
    assert_int_equal(imap_search_parse_date("", &d), -1);
    assert_int_equal(imap_search_parse_date("1-Jan", &d), -1);
}

/* ---- responses ---- */

static char *format(const char *line, const char *tag, bool uid, bool force, const uint32_t *nums,
                    size_t n, uint64_t count, long long modseq)
{
    struct imap_search_program *prog;
    assert_int_equal(parse(IMAP_SEARCH_CMD_SEARCH, line, &prog), 0);
    struct imap_envelope_out out = {0};
    imap_search_format(prog, tag, uid, force, nums, n, count, modseq, &out);
    assert_false(out.failed);
    imap_search_program_free(&prog);
    char *s = out.data ? out.data : strdup("");
    return s;
}

static void assert_format(const char *line, bool uid, bool force, const uint32_t *nums, size_t n,
                          uint64_t count, long long modseq, const char *want)
{
    char *got = format(line, "A282", uid, force, nums, n, count, modseq);
    assert_string_equal(got, want);
    free(got);
}

static void test_format(void **state)
{
    (void)state;
    const uint32_t r[] = {2, 10, 11, 12, 20};
    assert_format("SEARCH ALL", false, false, r, 5, 5, 0, "* SEARCH 2 10 11 12 20\r\n");
    assert_format("SEARCH ALL", false, false, NULL, 0, 0, 0, "* SEARCH\r\n");
    assert_format("SEARCH MODSEQ 5", false, false, r, 2, 2, 917162500,
                  "* SEARCH 2 10 (MODSEQ 917162500)\r\n");
    assert_format("SEARCH MODSEQ 5", false, false, NULL, 0, 0, 0, "* SEARCH\r\n");
    /* RFC 4731 examples */
    assert_format("SEARCH RETURN (MIN COUNT) FLAGGED", false, false, r, 3, 3, 0,
                  "* ESEARCH (TAG \"A282\") MIN 2 COUNT 3\r\n");
    assert_format("SEARCH RETURN () FLAGGED", false, false, r + 0, 3, 3, 0,
                  "* ESEARCH (TAG \"A282\") ALL 2,10:11\r\n");
    assert_format("UID SEARCH RETURN (MIN MAX) 1:5000", true, false, r, 5, 5, 0,
                  "* ESEARCH (TAG \"A282\") UID MIN 2 MAX 20\r\n");
    assert_format("SEARCH RETURN (MIN MAX ALL COUNT) ALL", false, false, NULL, 0, 0, 0,
                  "* ESEARCH (TAG \"A282\") COUNT 0\r\n");
    assert_format("SEARCH RETURN (MIN COUNT) MODSEQ 1", false, false, r, 1, 10, 917162500,
                  "* ESEARCH (TAG \"A282\") MIN 2 COUNT 10 MODSEQ 917162500\r\n");
    /* RFC 5182 §2.4: SAVE alone answers nothing */
    assert_format("SEARCH RETURN (SAVE) ALL", false, false, r, 5, 5, 0, "");
    assert_format("SEARCH RETURN (SAVE COUNT) ALL", false, false, r, 5, 5, 0,
                  "* ESEARCH (TAG \"A282\") COUNT 5\r\n");
    /* IMAP4rev2: every SEARCH answers with ESEARCH */
    assert_format("SEARCH ALL", true, true, r, 5, 5, 0,
                  "* ESEARCH (TAG \"A282\") UID ALL 2,10:12,20\r\n");

    struct imap_search_program *prog;
    assert_int_equal(parse(IMAP_SEARCH_CMD_SORT, "SORT (DATE) UTF-8 MODSEQ 3", &prog), 0);
    struct imap_envelope_out out = {0};
    const uint32_t s[] = {5, 3, 4};
    imap_search_format_sort(prog, s, 3, 77, &out);
    assert_string_equal(out.data, "* SORT 5 3 4 (MODSEQ 77)\r\n");
    imap_envelope_out_free(&out);
    imap_search_format_sort(prog, NULL, 0, 0, &out);
    assert_string_equal(out.data, "* SORT\r\n");
    imap_envelope_out_free(&out);
    imap_search_program_free(&prog);
}

static void test_saved_result_and_seq(void **state)
{
    (void)state;
    const uint32_t r[] = {3, 4, 5, 9, 20};
    struct {
        const char *line;
        const char *want;
    } cases[] = {
        {"SEARCH RETURN (SAVE) ALL", "3:5,9,20"},
        {"SEARCH RETURN (SAVE MIN) ALL", "3"},
        {"SEARCH RETURN (SAVE MAX) ALL", "20"},
        {"SEARCH RETURN (SAVE MIN MAX) ALL", "3,20"},
        {"SEARCH RETURN (SAVE MIN COUNT) ALL", "3:5,9,20"},
        {"SEARCH ALL", "3:5,9,20"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct imap_search_program *prog;
        assert_int_equal(parse(IMAP_SEARCH_CMD_SEARCH, cases[i].line, &prog), 0);
        struct imap_seqset *set;
        assert_int_equal(imap_search_save_result(prog, r, 5, &set), 0);
        char *s;
        assert_int_equal(imap_seqset_format(set, &s, NULL), 0);
        assert_string_equal(s, cases[i].want);
        free(s);
        imap_seqset_free(&set);
        assert_int_equal(imap_search_save_result(prog, r, 0, &set), 0);
        assert_true(imap_seqset_is_empty(set));
        imap_seqset_free(&set);
        imap_search_program_free(&prog);
    }
    const uint32_t view[] = {2, 5, 7, 100, 4000000000u};
    assert_int_equal(imap_search_uid_to_seq(view, 5, 2), 1);
    assert_int_equal(imap_search_uid_to_seq(view, 5, 7), 3);
    assert_int_equal(imap_search_uid_to_seq(view, 5, 4000000000u), 5);
    assert_int_equal(imap_search_uid_to_seq(view, 5, 6), 0);
    assert_int_equal(imap_search_uid_to_seq(view, 5, 1), 0);
    assert_int_equal(imap_search_uid_to_seq(view, 5, 4000000001u), 0);
    assert_int_equal(imap_search_uid_to_seq(view, 0, 2), 0);
}

/* ---- base subject ---- */

static void assert_base(const char *subject, const char *want, bool want_reply)
{
    bool reply = !want_reply;
    char *b = imap_thread_base_subject(subject, &reply);
    assert_non_null(b);
    if (strcmp(b, want) != 0)
        fail_msg("base of \"%s\": \"%s\", want \"%s\"", subject, b, want);
    if (reply != want_reply)
        fail_msg("base of \"%s\": reply %d", subject, reply);
    free(b);
}

static void test_base_subject(void **state)
{
    (void)state;
    assert_base("Hello", "Hello", false);
    assert_base("  Hello  \t world  ", "Hello world", false);
    assert_base("Re: Hello", "Hello", true);
    assert_base("RE:Hello", "Hello", true);
    assert_base("re : Hello", "Hello", true);
    assert_base("Fwd: Hello", "Hello", true);
    assert_base("FW: Hello", "Hello", true);
    assert_base("Re[2]: Hello", "Hello", true);
    assert_base("Re: Re: Fwd: Re[3]: Hello", "Hello", true);
    assert_base("[PATCH] Hello", "Hello", false);
    assert_base("[list] Re: [PATCH 2/3] Hello", "Hello", true);
    assert_base("Hello (fwd)", "Hello", true);
    assert_base("Hello (FWD) (fwd)  ", "Hello", true);
    assert_base("[fwd: Hello]", "Hello", true);
    assert_base("[Fwd: Re: [x] Hello (fwd)]", "Hello", true);
    assert_base("[only a blob]", "[only a blob]", false); /* (4): base must stay non-empty */
    assert_base("[a] [b]", "[b]", false);
    assert_base("Re:", "", true);
    assert_base("", "", false);
    assert_base("Ref: Hello", "Ref: Hello", false); /* "re" must be followed by ':' */
    assert_base("Reply", "Reply", false);
    assert_base("Re: [fwd: x] y", "y", true); /* "[fwd: x] " is a subj-blob here */
    assert_base("[fwd: x] (fwd)", "x", true);
    assert_base("Grüße: Re: x", "Grüße: Re: x", false);
    assert_int_equal(imap_thread_subject_cmp("hello", "HELLO"), 0);
    assert_true(imap_thread_subject_cmp("", "a") < 0);
    assert_true(imap_thread_subject_cmp("abc", "ABD") < 0);
    assert_true(imap_thread_subject_cmp("z", "\xc3\xa4") < 0); /* UTF-8 after ASCII */
}

/* ---- threads ---- */

static char *thread_text(enum imap_thread_alg alg, const struct imap_thread_msg *m, size_t n)
{
    struct imap_thread *t = NULL;
    assert_int_equal(imap_thread_build(alg, m, n, &t), 0);
    struct imap_envelope_out out = {0};
    imap_thread_format(t, NULL, NULL, &out);
    assert_false(out.failed);
    imap_thread_free(&t);
    assert_null(t);
    return out.data ? out.data : strdup("");
}

static void assert_threads(enum imap_thread_alg alg, const struct imap_thread_msg *m, size_t n,
                           const char *want)
{
    char *got = thread_text(alg, m, n);
    if (strcmp(got, want) != 0)
        fail_msg("threads: got %s, want %s", got, want);
    free(got);
}

#define MSG(uid, date, subj, id, irt, refs)                                                        \
    {                                                                                              \
        uid, date, subj, id, irt, refs                                                             \
    }

static void test_references_rfc_example(void **state)
{
    (void)state;
    /* RFC 5256 §4: "(2)(3 6 (4 23)(44 7 96))": 6 is a reply to 3; 4 and 44 reply to 6 (4 the
     * older); 23 to 4; 7 to 44; 96 to 7. Mailbox order is by UID, not by thread. */
    const struct imap_thread_msg m[] = {
        MSG(2, 100, "Other", "<2@x>", "", ""),
        MSG(3, 200, "Topic", "<3@x>", "", ""),
        MSG(4, 400, "Re: Topic", "<4@x>", "", "<3@x> <6@x>"),
        MSG(6, 300, "Re: Topic", "<6@x>", "<3@x>", ""),
        MSG(7, 600, "Re: Topic", "<7@x>", "", "<3@x> <6@x> <44@x>"),
        MSG(23, 700, "Re: Topic", "<23@x>", "", "<3@x>\r\n <6@x> <4@x>"),
        MSG(44, 500, "Re: Topic", "<44@x>", "", "<3@x> <6@x>"),
        MSG(96, 800, "Re: Topic", "<96@x>", "", "<3@x> <6@x> <44@x> <7@x>"),
    };
    assert_threads(IMAP_THREAD_REFERENCES, m, 8, "(2)(3 6 (4 23)(44 7 96))");

    /* "((3)(5))": siblings whose parent is missing */
    const struct imap_thread_msg d[] = {
        MSG(3, 10, "A", "<3@x>", "", "<gone@x>"),
        MSG(5, 20, "B", "<5@x>", "", "<gone@x>"),
    };
    assert_threads(IMAP_THREAD_REFERENCES, d, 2, "((3)(5))");
    /* one child under a missing parent is promoted to the top */
    assert_threads(IMAP_THREAD_REFERENCES, d, 1, "(3)");
    /* no messages, no threads */
    assert_threads(IMAP_THREAD_REFERENCES, d, 0, "");
    assert_threads(IMAP_THREAD_ORDEREDSUBJECT, d, 0, "");
}

static void test_references_rules(void **state)
{
    (void)state;
    /* quoting does not make another ID (RFC 5256 §3); In-Reply-To when References has no
     * valid ID; a missing grandparent stays a pruned dummy */
    const struct imap_thread_msg q[] = {
        MSG(1, 10, "x", "<\"01KF8JCEOCBS0045PS\"@xxx.yyy.com>", "", ""),
        MSG(2, 20, "y", "<a@b>", "<01KF8JCEOCBS0045PS@xxx.yyy.com> (sent by x)", "<broken"),
        MSG(3, 30, "z", "<c@d>", "", "<missing@z> <a@b>"),
    };
    assert_threads(IMAP_THREAD_REFERENCES, q, 3, "(1 2 3)");

    /* a loop in the references is not followed: 1 says 2 is its parent, 2 says 1 is */
    const struct imap_thread_msg l[] = {
        MSG(1, 10, "p", "<1@x>", "", "<2@x>"),
        MSG(2, 20, "q", "<2@x>", "", "<1@x>"),
    };
    char *got = thread_text(IMAP_THREAD_REFERENCES, l, 2);
    assert_true(strcmp(got, "(2 1)") == 0 || strcmp(got, "(1 2)") == 0);
    free(got);

    /* duplicate Message-IDs: the first message keeps the ID, the later one is its own */
    const struct imap_thread_msg dup[] = {
        MSG(1, 10, "a", "<same@x>", "", ""),
        MSG(2, 20, "b", "<same@x>", "", ""),
        MSG(3, 30, "c", "<r@x>", "<same@x>", ""),
    };
    assert_threads(IMAP_THREAD_REFERENCES, dup, 3, "(1 3)(2)");

    /* (5): same base subject, no references: a reply goes under the original ... */
    const struct imap_thread_msg s[] = {
        MSG(1, 20, "Re: Lunch", "<1@x>", "", ""),
        MSG(2, 10, "Lunch", "<2@x>", "", ""),
        MSG(3, 30, "Other", "<3@x>", "", ""),
    };
    assert_threads(IMAP_THREAD_REFERENCES, s, 3, "(2 1)(3)");
    /* ... two originals share a dummy ... */
    const struct imap_thread_msg s2[] = {
        MSG(1, 10, "Lunch", "<1@x>", "", ""),
        MSG(2, 20, "lunch", "<2@x>", "", ""),
    };
    assert_threads(IMAP_THREAD_REFERENCES, s2, 2, "((1)(2))");
    /* ... and empty subjects are never gathered */
    const struct imap_thread_msg s3[] = {
        MSG(1, 10, "", "<1@x>", "", ""),
        MSG(2, 20, "Re:", "<2@x>", "", ""),
    };
    assert_threads(IMAP_THREAD_REFERENCES, s3, 2, "(1)(2)");
    /* a dummy thread takes a message of its subject as one more child */
    const struct imap_thread_msg s4[] = {
        MSG(1, 10, "Plan", "<1@x>", "", "<gone@x>"),
        MSG(2, 20, "Plan", "<2@x>", "", "<gone@x>"),
        MSG(3, 5, "Re: Plan", "<3@x>", "", ""),
    };
    assert_threads(IMAP_THREAD_REFERENCES, s4, 3, "((3)(1)(2))");
    /* equal dates: mailbox order decides */
    const struct imap_thread_msg e[] = {
        MSG(7, 10, "b", "<7@x>", "", ""),
        MSG(8, 10, "a", "<8@x>", "", ""),
    };
    assert_threads(IMAP_THREAD_REFERENCES, e, 2, "(7)(8)");
}

static uint32_t times_ten(uint32_t uid, void *ctx)
{
    (void)ctx;
    return uid * 10;
}

static void test_ordered_subject(void **state)
{
    (void)state;
    /* the threads by the date of their first message; the first message is the parent of all
     * others (RFC 5256 §3 ORDEREDSUBJECT) */
    const struct imap_thread_msg m[] = {
        MSG(1, 50, "Re: Dinner", "", "", ""), MSG(2, 10, "Dinner", "", "", ""),
        MSG(3, 30, "Lunch", "", "", ""),      MSG(4, 20, "re: DINNER", "", "", ""),
        MSG(5, 40, "Fwd: Lunch", "", "", ""), MSG(6, 5, "Breakfast", "", "", ""),
    };
    assert_threads(IMAP_THREAD_ORDEREDSUBJECT, m, 6, "(6)(2 (4)(1))(3 5)");
    struct imap_thread *t;
    assert_int_equal(imap_thread_build(IMAP_THREAD_ORDEREDSUBJECT, m, 3, &t), 0);
    struct imap_envelope_out out = {0};
    imap_thread_format(t, times_ten, NULL, &out);
    assert_string_equal(out.data, "(20 10)(30)");
    imap_envelope_out_free(&out);
    const struct imap_thread_node *root = imap_thread_roots(t);
    assert_non_null(root);
    assert_int_equal(root->uid, 2);
    assert_int_equal(root->child->uid, 1);
    assert_null(root->child->next);
    assert_int_equal(root->next->uid, 3);
    assert_null(root->next->next);
    imap_thread_free(&t);
}

static void test_long_chain(void **state)
{
    (void)state;
    /* a reply chain as long as a big mailbox, and a comb (every message with two replies, one
     * of which goes on): nothing may recurse that deep */
    enum { N = 200000 };
    struct imap_thread_msg *m = calloc(N, sizeof(*m));
    char(*ids)[32] = calloc(N, sizeof(*ids));
    char(*irt)[32] = calloc(N, sizeof(*irt));
    assert_non_null(m);
    assert_non_null(ids);
    assert_non_null(irt);
    for (size_t i = 0; i < N; i++) {
        snprintf(ids[i], sizeof(ids[i]), "<%zu@chain>", i);
        if (i)
            snprintf(irt[i], sizeof(irt[i]), "<%zu@chain>", i - 1);
        m[i] = (struct imap_thread_msg){(uint32_t)(i + 1), (int64_t)i, "chain", ids[i], irt[i], ""};
    }
    char *got = thread_text(IMAP_THREAD_REFERENCES, m, N);
    assert_memory_equal(got, "(1 2 3 4 ", 9);
    assert_string_equal(got + strlen(got) - 8, " 200000)");
    free(got);
    /* comb: message 2k+1 and 2k+2 both reply to 2k-1 */
    for (size_t i = 0; i < N; i++) {
        size_t parent = i < 2 ? SIZE_MAX : ((i - 2) / 2) * 2;
        if (parent == SIZE_MAX)
            irt[i][0] = '\0';
        else
            snprintf(irt[i], sizeof(irt[i]), "<%zu@chain>", parent);
        m[i].subject = i == 1 ? "other" : "chain";
    }
    got = thread_text(IMAP_THREAD_REFERENCES, m, N);
    assert_memory_equal(got, "(1 (3 (5 ", 9);
    free(got);
    got = thread_text(IMAP_THREAD_ORDEREDSUBJECT, m, N);
    assert_memory_equal(got, "(1 (3)(4)", 9);
    free(got);
    free(m);
    free(ids);
    free(irt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_sets),
        cmocka_unit_test(test_return_charset_modseq),
        cmocka_unit_test(test_errors_and_limits),
        cmocka_unit_test(test_sort_thread_args),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_saved_result_and_seq),
        cmocka_unit_test(test_base_subject),
        cmocka_unit_test(test_references_rfc_example),
        cmocka_unit_test(test_references_rules),
        cmocka_unit_test(test_ordered_subject),
        cmocka_unit_test(test_long_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
