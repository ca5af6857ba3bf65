/* layer: node */
/* Unit tests for the IMAP service's pure syntax helpers (node/imap/syntax.c): FETCH data items
 * and sections (macros, PEEK, partials, HEADER.FIELDS lists, BINARY, modifiers, and the errors),
 * the response names, the stored part offsets, base64 and quoted-printable decoding fed in
 * every split, date-time both ways, and LIST pattern matching. Arguments are made by the real
 * command reader (proto/imap/parser.h) from command text. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/imap/syntax.h"
#include "proto/imap/parser.h"

/* Parses "t FETCH 1 <items> [modifiers]" and runs imap_fetch_spec_parse on it. */
static int parse(struct imap_parser **pp, const char *items, struct imap_fetch_spec *spec,
                 char *err, size_t errlen)
{
    struct imap_parser *p = imap_parser_new(NULL);
    assert_non_null(p);
    char line[4096];
    snprintf(line, sizeof(line), "t FETCH 1 %s\r\n", items);
    size_t used;
    enum imap_parse_event ev = imap_parser_feed(p, line, strlen(line), &used);
    assert_int_equal(ev, IMAP_PARSE_COMMAND);
    const struct imap_command *cmd = imap_parser_command(p);
    *pp = p;
    return imap_fetch_spec_parse(&cmd->args[1], cmd->count > 2 ? &cmd->args[2] : NULL, spec, err,
                                 errlen);
}

static void parse_ok(const char *items, struct imap_fetch_spec *spec)
{
    struct imap_parser *p;
    char err[128] = "";
    if (parse(&p, items, spec, err, sizeof(err)) < 0)
        fail_msg("%s: %s", items, err);
    imap_parser_free(&p);
}

static void parse_bad(const char *items, const char *errpart)
{
    struct imap_parser *p;
    struct imap_fetch_spec spec;
    char err[128] = "";
    assert_int_equal(parse(&p, items, &spec, err, sizeof(err)), -1);
    if (!strstr(err, errpart))
        fail_msg("%s: error \"%s\" lacks \"%s\"", items, err, errpart);
    assert_null(spec.items);
    imap_parser_free(&p);
}

static void test_fetch_simple_and_macros(void **state)
{
    (void)state;
    struct imap_fetch_spec s;
    parse_ok("(FLAGS UID MODSEQ INTERNALDATE RFC822.SIZE)", &s);
    assert_int_equal(s.n, 5);
    assert_int_equal(s.items[0].att, IMAP_FA_FLAGS);
    assert_int_equal(s.items[4].att, IMAP_FA_RFC822_SIZE);
    assert_true(s.has_uid && s.has_modseq && s.has_flags);
    assert_false(s.need_meta);
    assert_false(s.sets_seen);
    imap_fetch_spec_free(&s);
    assert_null(s.items);

    parse_ok("ALL", &s); /* RFC 9051 §6.4.5 */
    assert_int_equal(s.n, 4);
    assert_int_equal(s.items[3].att, IMAP_FA_ENVELOPE);
    assert_true(s.need_meta);
    imap_fetch_spec_free(&s);
    parse_ok("fast", &s);
    assert_int_equal(s.n, 3);
    imap_fetch_spec_free(&s);
    parse_ok("FULL", &s);
    assert_int_equal(s.n, 5);
    assert_int_equal(s.items[4].att, IMAP_FA_BODY);
    imap_fetch_spec_free(&s);
    parse_ok("bodystructure", &s);
    assert_int_equal(s.items[0].att, IMAP_FA_BODYSTRUCTURE);
    imap_fetch_spec_free(&s);

    parse_bad("(ALL)", "Unknown FETCH item"); /* macros stand alone */
    parse_bad("(FLAGS NOPE)", "Unknown FETCH item");
    parse_bad("()", "Invalid FETCH items");
    parse_bad("(FLAGS (UID))", "Invalid FETCH item");
}

static void test_fetch_sections(void **state)
{
    (void)state;
    struct imap_fetch_spec s;
    parse_ok("(BODY[] BODY.PEEK[1.2.MIME] BODY[TEXT]<10.20> BODY.PEEK[3.HEADER] RFC822 "
             "RFC822.HEADER RFC822.TEXT)",
             &s);
    assert_int_equal(s.n, 7);
    assert_string_equal(s.items[0].name, "BODY[]");
    assert_false(s.items[0].peek);
    assert_string_equal(s.items[1].name, "BODY[1.2.MIME]");
    assert_string_equal(s.items[1].part, "1.2");
    assert_int_equal(s.items[1].kind, IMAP_SEC_MIME);
    assert_true(s.items[1].peek);
    assert_string_equal(s.items[2].name, "BODY[TEXT]");
    assert_true(s.items[2].partial);
    assert_int_equal(s.items[2].origin, 10);
    assert_int_equal(s.items[2].count, 20);
    assert_int_equal(s.items[3].kind, IMAP_SEC_HEADER);
    assert_string_equal(s.items[3].part, "3");
    assert_string_equal(s.items[4].name, "RFC822");
    assert_false(s.items[4].peek);
    assert_true(s.items[5].peek); /* RFC822.HEADER is BODY.PEEK[HEADER] */
    assert_int_equal(s.items[5].kind, IMAP_SEC_HEADER);
    assert_int_equal(s.items[6].kind, IMAP_SEC_TEXT);
    assert_true(s.sets_seen && s.need_meta);
    imap_fetch_spec_free(&s);

    parse_ok("BODY.PEEK[HEADER.FIELDS (From \"X-Odd(Name\" date)]", &s);
    assert_int_equal(s.items[0].kind, IMAP_SEC_FIELDS);
    assert_int_equal(s.items[0].nfields, 3);
    assert_string_equal(s.items[0].fields[1], "X-Odd(Name");
    assert_string_equal(s.items[0].name, "BODY[HEADER.FIELDS (From \"X-Odd(Name\" date)]");
    assert_false(s.sets_seen);
    imap_fetch_spec_free(&s);

    parse_ok("BODY[2.HEADER.FIELDS.NOT (Received)]", &s);
    assert_int_equal(s.items[0].kind, IMAP_SEC_FIELDS_NOT);
    assert_string_equal(s.items[0].name, "BODY[2.HEADER.FIELDS.NOT (Received)]");
    imap_fetch_spec_free(&s);

    parse_ok("(BINARY[1] BINARY.PEEK[]<0.5> BINARY.SIZE[2.1])", &s);
    assert_true(s.items[0].binary && !s.items[0].peek);
    assert_string_equal(s.items[0].name, "BINARY[1]");
    assert_string_equal(s.items[1].name, "BINARY[]");
    assert_int_equal(s.items[2].att, IMAP_FA_BINARY_SIZE);
    assert_string_equal(s.items[2].name, "BINARY.SIZE[2.1]");
    imap_fetch_spec_free(&s);

    parse_bad("BODY[HEADER.FIELDS]", "list of field names");
    parse_bad("BODY[HEADER.FIELDS ()]", "Invalid header field name");
    parse_bad("BODY[0]", "part number");
    parse_bad("BODY[1.X]", "Invalid section");
    parse_bad("BODY[MIME]", "Invalid section"); /* MIME needs a part */
    parse_bad("BODY[]<5>", "Invalid partial");
    parse_bad("BODY[]<1.0>", "Invalid partial");
    parse_bad("BODY[]<x.1>", "Invalid partial");
    parse_bad("BINARY[HEADER]", "part number only");
    parse_bad("BINARY[1.MIME]", "Invalid section");
    parse_bad("BINARY.SIZE[1]<0.1>", "no partial");
    parse_bad("BODY[HEADER.FIELDS (a:b)]", "Invalid header field name");
    parse_bad("BODY[HEADER.FIELDS (\"a b\")]", "Invalid header field name"); /* RFC 5322 ftext */
}

static void test_fetch_modifiers(void **state)
{
    (void)state;
    struct imap_fetch_spec s;
    parse_ok("(FLAGS) (CHANGEDSINCE 12345)", &s);
    assert_int_equal(s.changedsince, 12345);
    assert_false(s.vanished);
    assert_false(s.has_modseq); /* implied, not named */
    imap_fetch_spec_free(&s);
    parse_ok("(FLAGS) (VANISHED CHANGEDSINCE 7)", &s);
    assert_true(s.vanished);
    imap_fetch_spec_free(&s);
    parse_bad("(FLAGS) (VANISHED)", "VANISHED needs CHANGEDSINCE");
    parse_bad("(FLAGS) (CHANGEDSINCE x)", "Invalid CHANGEDSINCE");
    parse_bad("(FLAGS) (CHANGEDSINCE 99999999999999999999)", "Invalid CHANGEDSINCE");
    parse_bad("(FLAGS) (FOO)", "Unknown FETCH modifier");
}

static void test_parts_find(void **state)
{
    (void)state;
    const char *json = "[{\"s\":\"1\",\"h\":[100,40],\"b\":[140,10],\"l\":1},"
                       " {\"s\": \"2\", \"h\": [170, 30], \"b\": [200, 500], \"l\": 3,"
                       " \"mh\": [200, 50], \"mb\": [250, 450]},"
                       "{\"s\":\"2.1\",\"h\":[200,50],\"b\":[250,450],\"l\":2}]";
    struct imap_part_offsets o;
    assert_int_equal(imap_parts_find(json, "1", &o), 0);
    assert_int_equal(o.h_off, 100);
    assert_int_equal(o.b_len, 10);
    assert_false(o.message);
    assert_int_equal(imap_parts_find(json, "2", &o), 0);
    assert_true(o.message);
    assert_int_equal(o.mh_off, 200);
    assert_int_equal(o.mb_len, 450);
    assert_int_equal(imap_parts_find(json, "2.1", &o), 0);
    assert_int_equal(o.b_off, 250);
    assert_int_equal(imap_parts_find(json, "3", &o), -1);
    assert_int_equal(imap_parts_find(json, "2.", &o), -1);
    assert_int_equal(imap_parts_find("[]", "1", &o), -1);
    assert_int_equal(imap_parts_find("", "1", &o), -1);
    assert_int_equal(imap_parts_find("[{\"s\":\"1\",\"h\":[1,2]", "1", &o), -1);
    assert_int_equal(imap_parts_find(NULL, "1", &o), -1);
}

/* Decodes in with every split point and checks the result each time. */
static void check_decode(enum imap_cte cte, const char *in, const char *want, size_t wantlen)
{
    size_t len = strlen(in);
    for (size_t cut = 0; cut <= len; cut++) {
        struct imap_decoder d;
        imap_decoder_init(&d, cte);
        char *out = malloc(len + 16);
        size_t o = imap_decoder_feed(&d, in, cut, out);
        o += imap_decoder_feed(&d, in + cut, len - cut, out + o);
        o += imap_decoder_finish(&d, out + o);
        if (o != wantlen || memcmp(out, want, wantlen) != 0)
            fail_msg("decoding \"%s\" cut at %zu: got %zu bytes \"%.*s\"", in, cut, o, (int)o, out);
        free(out);
    }
}

static void test_decoders(void **state)
{
    (void)state;
    enum imap_cte cte;
    assert_int_equal(imap_cte_parse(NULL, &cte), 0);
    assert_int_equal(cte, IMAP_CTE_IDENTITY);
    assert_int_equal(imap_cte_parse("BASE64", &cte), 0);
    assert_int_equal(cte, IMAP_CTE_BASE64);
    assert_int_equal(imap_cte_parse("Quoted-Printable", &cte), 0);
    assert_int_equal(cte, IMAP_CTE_QP);
    assert_int_equal(imap_cte_parse("8bit", &cte), 0);
    assert_int_equal(cte, IMAP_CTE_IDENTITY);
    assert_int_equal(imap_cte_parse("x-uuencode", &cte), -1); /* [UNKNOWN-CTE] */

    check_decode(IMAP_CTE_BASE64, "SGVsbG8sIHdv\r\ncmxkIQ==\r\n", "Hello, world!", 13);
    check_decode(IMAP_CTE_BASE64, "AAEC/w==", "\0\1\2\377", 4);
    check_decode(IMAP_CTE_BASE64, "YQ", "a", 1);                /* missing padding */
    check_decode(IMAP_CTE_BASE64, "YW Jj*ZA==junk", "abcd", 4); /* noise ignored, "=" ends */
    check_decode(IMAP_CTE_QP, "H=C3=A9llo w=\r\norld=0A", "H\xc3\xa9llo world\n", 13);
    check_decode(IMAP_CTE_QP, "soft=\nbreak", "softbreak", 9);
    check_decode(IMAP_CTE_QP, "bad =ZZ and =4", "bad =ZZ and =4", 14);
    check_decode(IMAP_CTE_QP, "a==41b", "a=Ab", 4);
    check_decode(IMAP_CTE_QP, "cr =\rx", "cr =\rx", 6);
    check_decode(IMAP_CTE_IDENTITY, "as is\r\n", "as is\r\n", 7);
}

static void test_datetime(void **state)
{
    (void)state;
    time_t t;
    assert_int_equal(imap_datetime_parse("21-Nov-2026 12:00:00 +0100", &t), 0);
    char out[32];
    imap_datetime_format(t, out);
    assert_string_equal(out, "21-Nov-2026 11:00:00 +0000");
    assert_int_equal(imap_datetime_parse(" 1-Jan-2000 00:00:00 -0130", &t), 0);
    imap_datetime_format(t, out);
    assert_string_equal(out, "01-Jan-2000 01:30:00 +0000");
    assert_int_equal(imap_datetime_parse("1-jan-2000 00:00:00 +0000", &t), 0);
    assert_int_equal(imap_datetime_parse("32-Jan-2000 00:00:00 +0000", &t), -1);
    assert_int_equal(imap_datetime_parse("01-Foo-2000 00:00:00 +0000", &t), -1);
    assert_int_equal(imap_datetime_parse("01-Jan-2000 24:00:00 +0000", &t), -1);
    assert_int_equal(imap_datetime_parse("01-Jan-2000 00:00:00 0000", &t), -1);
    assert_int_equal(imap_datetime_parse("01-Jan-2000 00:00:00 +0000 ", &t), -1);
    assert_int_equal(imap_datetime_parse("", &t), -1);
}

static void test_list_match(void **state)
{
    (void)state;
    assert_true(imap_list_match("*", "INBOX"));
    assert_true(imap_list_match("*", "a/b/c"));
    assert_true(imap_list_match("%", "Sent"));
    assert_false(imap_list_match("%", "a/b"));
    assert_true(imap_list_match("a/%", "a/b"));
    assert_false(imap_list_match("a/%", "a/b/c"));
    assert_true(imap_list_match("a/*", "a/b/c"));
    assert_false(imap_list_match("a/*", "a"));
    assert_true(imap_list_match("inbox", "INBOX")); /* RFC 9051 §5.1 */
    assert_true(imap_list_match("Inbox/%", "INBOX/x"));
    assert_false(imap_list_match("inbo%", "INBOX")); /* only INBOX itself is case-insensitive */
    assert_false(imap_list_match("sent", "Sent"));
    assert_true(imap_list_match("%r%", "Archive"));
    assert_true(imap_list_match("*b*b*b*b*", "abababab/b"));
    assert_false(imap_list_match("*b*b*b*b*b", "abababab"));
    assert_true(imap_list_match("", ""));
    assert_false(imap_list_match("", "a"));
    assert_true(imap_list_match("Entw\xc3\xbc*", "Entw\xc3\xbcrfe"));
    /* bounded: a long pathological pattern is linear in the name, not exponential */
    char pat[2000], name[1000];
    for (size_t i = 0; i < sizeof(pat) - 1; i++)
        pat[i] = i % 2 ? '*' : 'a';
    pat[sizeof(pat) - 1] = '\0';
    memset(name, 'a', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    assert_false(imap_list_match(pat, name));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fetch_simple_and_macros),
        cmocka_unit_test(test_fetch_sections),
        cmocka_unit_test(test_fetch_modifiers),
        cmocka_unit_test(test_parts_find),
        cmocka_unit_test(test_decoders),
        cmocka_unit_test(test_datetime),
        cmocka_unit_test(test_list_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
