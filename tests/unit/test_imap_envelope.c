/* layer: proto */
/* Unit tests for IMAP ENVELOPE and BODY/BODYSTRUCTURE formatting from parsed messages. The
 * expected strings are exact. Two are cross-checked against other servers: the RFC 3501 §7.4.2
 * FETCH example (rebuilt as the message it describes) and Dovecot's own
 * src/lib-imap/test-imap-bodystructure.c message, whose expected output ours matches except
 * where our documented choices differ (literals instead of \" escapes, the outer parentheses,
 * lower-case type names). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/imap/bodystructure.h"
#include "proto/imap/envelope.h"
#include "proto/mime/mime.h"

/* ---- helpers -------------------------------------------------------------------------------- */

/* Parses text with "\n" turned into "\r\n" (one-shot, then byte by byte: both must format the
 * same). */
static struct mime_message *parse_crlf(const char *text)
{
    size_t n = 0;
    char *msg = malloc(strlen(text) * 2 + 1);
    assert_non_null(msg);
    for (const char *s = text; *s; s++) {
        if (*s == '\n')
            msg[n++] = '\r';
        msg[n++] = *s;
    }
    struct mime_parser *p = mime_parser_new(NULL);
    assert_int_equal(mime_parser_feed(p, msg, n), 0);
    struct mime_message *m = mime_parser_finish(&p);
    assert_non_null(m);
    p = mime_parser_new(NULL);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(mime_parser_feed(p, msg + i, 1), 0);
    struct mime_message *m1 = mime_parser_finish(&p);
    char *a, *b;
    assert_int_equal(imap_bodystructure_format(&m->root, true, &a, NULL), 0);
    assert_int_equal(imap_bodystructure_format(&m1->root, true, &b, NULL), 0);
    assert_string_equal(a, b);
    free(a);
    free(b);
    mime_message_free(&m1);
    free(msg);
    return m;
}

static void check_envelope(const struct mime_envelope *env, const char *want)
{
    char *s;
    size_t n;
    assert_int_equal(imap_envelope_format(env, &s, &n), 0);
    assert_string_equal(s, want);
    assert_int_equal(n, strlen(want));
    free(s);
}

static void check_body(const struct mime_message *m, const char *body, const char *bodystructure)
{
    char *s;
    size_t n;
    assert_int_equal(imap_bodystructure_format(&m->root, false, &s, &n), 0);
    assert_string_equal(s, body);
    assert_int_equal(n, strlen(body));
    free(s);
    assert_int_equal(imap_bodystructure_format(&m->root, true, &s, &n), 0);
    assert_string_equal(s, bodystructure);
    free(s);
}

/* ---- strings -------------------------------------------------------------------------------- */

static void test_strings(void **state)
{
    struct imap_envelope_out o = {0};
    imap_envelope_out_string(&o, "plain text", 10);
    imap_envelope_out_add(&o, " ", 1);
    imap_envelope_out_string(&o, "", 0);
    imap_envelope_out_add(&o, " ", 1);
    imap_envelope_out_nstring(&o, NULL);
    imap_envelope_out_add(&o, " ", 1);
    imap_envelope_out_string(&o, "say \"hi\"", 8);
    imap_envelope_out_add(&o, " ", 1);
    imap_envelope_out_string(&o, "a\\b", 3);
    imap_envelope_out_add(&o, " ", 1);
    imap_envelope_out_string(&o, "two\r\nlines", 10);
    imap_envelope_out_add(&o, " ", 1);
    imap_envelope_out_string(&o, "K\xc3\xb6ln", 5);
    imap_envelope_out_add(&o, " ", 1);
    imap_envelope_out_string(&o, "nul\0byte", 8);
    assert_false(o.failed);
    const char want[] =
        "\"plain text\" \"\" NIL {8}\r\nsay \"hi\" {3}\r\na\\b {10}\r\ntwo\r\nlines "
        "{5}\r\nK\xc3\xb6ln {8}\r\nnul byte";
    assert_int_equal(o.len, sizeof(want) - 1);
    assert_memory_equal(o.data, want, o.len);
    imap_envelope_out_free(&o);
    assert_null(o.data);
}

/* ---- ENVELOPE ------------------------------------------------------------------------------- */

static void test_envelope_rfc3501_example(void **state)
{
    /* the message behind RFC 3501 §7.4.2's FETCH example */
    struct mime_message *m =
        parse_crlf("Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\n"
                   "From: Terry Gray <gray@cac.washington.edu>\n"
                   "Subject: IMAP4rev1 WG mtg summary and minutes\n"
                   "To: imap@cac.washington.edu\n"
                   "cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\n"
                   "Message-Id: <B27397-0100000@cac.washington.edu>\n"
                   "MIME-Version: 1.0\n"
                   "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\n"
                   "\n"
                   "line 1\n"
                   "line 2\n"
                   "line 3\n");
    check_envelope(m->root.envelope, "(\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" "
                                     "\"IMAP4rev1 WG mtg summary and minutes\" "
                                     "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
                                     "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
                                     "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
                                     "((NIL NIL \"imap\" \"cac.washington.edu\")) "
                                     "((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")"
                                     "(\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) "
                                     "NIL NIL \"<B27397-0100000@cac.washington.edu>\")");
    check_body(m, "(\"text\" \"plain\" (\"charset\" \"US-ASCII\") NIL NIL \"7bit\" 24 3)",
               "(\"text\" \"plain\" (\"charset\" \"US-ASCII\") NIL NIL \"7bit\" 24 3 NIL NIL NIL "
               "NIL)");
    mime_message_free(&m);
}

static void test_envelope_details(void **state)
{
    struct mime_message *m =
        parse_crlf("Date: Tue, 2 Apr 2024 09:00:00 +0200\n"
                   "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= \"quoted\"\n"
                   "From: \"Doe, Jane\" <jane@example.org>, Team: a@x.org, b@x.org;\n"
                   "Sender: <@relay.example:sec@example.org>\n"
                   "Reply-To:\n"
                   "To: undisclosed-recipients:;\n"
                   "Cc: broken\n"
                   "In-Reply-To: <a@b>\n"
                   " <c@d>\n"
                   "Message-ID: <m1@example.org>\n"
                   "\n"
                   "x\n");
    const char *from = "((\"Doe, Jane\" NIL \"jane\" \"example.org\")(NIL NIL \"Team\" NIL)"
                       "(NIL NIL \"a\" \"x.org\")(NIL NIL \"b\" \"x.org\")(NIL NIL NIL NIL))";
    char want[2048];
    snprintf(want, sizeof(want),
             "(\"Tue, 2 Apr 2024 09:00:00 +0200\" {36}\r\n=?UTF-8?Q?Gr=C3=BC=C3=9Fe?= \"quoted\" "
             "%s ((NIL \"@relay.example\" \"sec\" \"example.org\")) %s "
             "((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) "
             "((NIL NIL \"broken\" \"MISSING_DOMAIN\")) NIL \"<a@b> <c@d>\" "
             "\"<m1@example.org>\")",
             from, from);
    check_envelope(m->root.envelope, want);
    mime_message_free(&m);

    /* 8-bit and backslash subjects go as literals; empty fields are "" or NIL by kind */
    m = parse_crlf("Subject: Gr\xc3\xbc\xc3\x9f"
                   "e\nFrom: \"a\\\\b\" <x@y>\nTo:\nDate:\n\nbody\n");
    check_envelope(m->root.envelope,
                   "(\"\" {7}\r\nGr\xc3\xbc\xc3\x9f"
                   "e (({3}\r\na\\b NIL \"x\" \"y\")) "
                   "(({3}\r\na\\b NIL \"x\" \"y\")) (({3}\r\na\\b NIL \"x\" \"y\")) "
                   "NIL NIL NIL NIL NIL)");
    mime_message_free(&m);

    /* no envelope fields at all; and no envelope */
    m = parse_crlf("Content-Type: text/plain\n\nx\n");
    check_envelope(m->root.envelope, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
    mime_message_free(&m);
    check_envelope(NULL, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");

    /* Sender and Reply-To of their own */
    m = parse_crlf("From: a@b\nSender: s@b\nReply-To: r@b, (nobody)\n\n");
    check_envelope(m->root.envelope, "(NIL NIL ((NIL NIL \"a\" \"b\")) ((NIL NIL \"s\" \"b\")) "
                                     "((NIL NIL \"r\" \"b\")) NIL NIL NIL NIL NIL)");
    mime_message_free(&m);
}

/* ---- BODYSTRUCTURE -------------------------------------------------------------------------- */

/* Dovecot's src/lib-imap/test-imap-bodystructure.c message, here with CRLF line ends (Dovecot
 * reports CRLF sizes for its LF test data, so the numbers are the same). */
static const char dovecot_msg[] =
    "From: user@domain.org\n"
    "Date: Sat, 24 Mar 2007 23:00:00 +0200\n"
    "Mime-Version: 1.0\n"
    "Content-Type: multipart/mixed; boundary=\"foo\n"
    " bar\"\n"
    "\n"
    "Root MIME prologue\n"
    "\n"
    "--foo bar\n"
    "Content-Type: text/x-myown; charset=us-ascii; foo=\"quoted\\\"string\"\n"
    "Content-ID: <foo@example.com>\n"
    "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n"
    "Content-Disposition: inline; foo=bar\n"
    "Content-Description: hellodescription\n"
    "Content-Language: en, fi, se\n"
    "Content-Location: http://example.com/test.txt\n"
    "\n"
    "hello\n"
    "\n"
    "--foo bar\n"
    "Content-Type: message/rfc822\n"
    "\n"
    "From: sub@domain.org\n"
    "To: sub-to1@domain.org, sub-to2@domain.org\n"
    "Date: Sun, 12 Aug 2012 12:34:56 +0300\n"
    "Subject: submsg\n"
    "Content-Type: multipart/alternative; boundary=\"sub1\"\n"
    "\n"
    "Sub MIME prologue\n"
    "--sub1\n"
    "Content-Type: text/html\n"
    "Content-Transfer-Encoding: 8bit\n"
    "\n"
    "<p>Hello world</p>\n"
    "\n"
    "--sub1\n"
    "Content-Type: text/plain\n"
    "Content-Transfer-Encoding: ?invalid\n"
    "\n"
    "Hello another world\n"
    "\n"
    "--sub1--\n"
    "Sub MIME epilogue\n"
    "\n"
    "--foo bar--\n"
    "Root MIME epilogue\n";

static void test_bodystructure_dovecot_crosscheck(void **state)
{
    struct mime_message *m = parse_crlf(dovecot_msg);
    const char *sub_env = "(\"Sun, 12 Aug 2012 12:34:56 +0300\" \"submsg\" "
                          "((NIL NIL \"sub\" \"domain.org\")) ((NIL NIL \"sub\" \"domain.org\")) "
                          "((NIL NIL \"sub\" \"domain.org\")) ((NIL NIL \"sub-to1\" "
                          "\"domain.org\")(NIL NIL \"sub-to2\" \"domain.org\")) NIL NIL NIL NIL)";
    char body[4096], bodystructure[4096];
    snprintf(bodystructure, sizeof(bodystructure),
             "((\"text\" \"x-myown\" (\"charset\" \"us-ascii\" \"foo\" {13}\r\nquoted\"string) "
             "\"<foo@example.com>\" \"hellodescription\" \"7bit\" 7 1 "
             "\"Q2hlY2sgSW50ZWdyaXR5IQ==\" (\"inline\" (\"foo\" \"bar\")) (\"en\" \"fi\" \"se\") "
             "\"http://example.com/test.txt\")"
             "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 412 %s "
             "((\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"8bit\" 20 1 NIL NIL NIL NIL)"
             "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 21 1 NIL NIL NIL NIL)"
             " \"alternative\" (\"boundary\" \"sub1\") NIL NIL NIL) 21 NIL NIL NIL NIL) "
             "\"mixed\" (\"boundary\" \"foo bar\") NIL NIL NIL)",
             sub_env);
    snprintf(body, sizeof(body),
             "((\"text\" \"x-myown\" (\"charset\" \"us-ascii\" \"foo\" {13}\r\nquoted\"string) "
             "\"<foo@example.com>\" \"hellodescription\" \"7bit\" 7 1)"
             "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 412 %s "
             "((\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"8bit\" 20 1)"
             "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 21 1) "
             "\"alternative\") 21) \"mixed\")",
             sub_env);
    check_body(m, body, bodystructure);
    check_envelope(m->root.envelope, "(\"Sat, 24 Mar 2007 23:00:00 +0200\" NIL "
                                     "((NIL NIL \"user\" \"domain.org\")) "
                                     "((NIL NIL \"user\" \"domain.org\")) "
                                     "((NIL NIL \"user\" \"domain.org\")) NIL NIL NIL NIL NIL)");
    mime_message_free(&m);
}

static void test_bodystructure_attachments(void **state)
{
    struct mime_message *m =
        parse_crlf("From: a@b\n"
                   "Content-Type: multipart/mixed; boundary=\"b1\"\n"
                   "\n"
                   "--b1\n"
                   "Content-Type: text/plain; charset=utf-8; format=flowed\n"
                   "Content-Transfer-Encoding: 8bit\n"
                   "\n"
                   "Gr\xc3\xbc\xc3\x9f"
                   "e\n"
                   "--b1\n"
                   "Content-Type: application/pdf; name=\"=?UTF-8?Q?=E2=82=AC.pdf?=\"\n"
                   "Content-Transfer-Encoding: BASE64\n"
                   "Content-Disposition: ATTACHMENT; filename*=utf-8''%E2%82%AC.pdf; size=3\n"
                   "Content-ID: <pdf@x>\n"
                   "\n"
                   "JVBE\n"
                   "--b1\n"
                   "Content-Type: text/html; name=\"Gr\xc3\xbc\xc3\x9f"
                   "e.txt\"\n"
                   "Content-Language: de\n"
                   "\n"
                   "<p>x</p>\n"
                   "--b1--\n");
    check_body(m,
               "((\"text\" \"plain\" (\"charset\" \"utf-8\" \"format\" \"flowed\") NIL NIL "
               "\"8bit\" 7 0)"
               "(\"application\" \"pdf\" (\"name\" \"=?UTF-8?Q?=E2=82=AC.pdf?=\") \"<pdf@x>\" NIL "
               "\"base64\" 4)"
               "(\"text\" \"html\" (\"name\" {11}\r\nGr\xc3\xbc\xc3\x9f"
               "e.txt \"charset\" "
               "\"us-ascii\") NIL NIL \"7bit\" 8 0) \"mixed\")",
               "((\"text\" \"plain\" (\"charset\" \"utf-8\" \"format\" \"flowed\") NIL NIL "
               "\"8bit\" 7 0 NIL NIL NIL NIL)"
               "(\"application\" \"pdf\" (\"name\" \"=?UTF-8?Q?=E2=82=AC.pdf?=\") \"<pdf@x>\" NIL "
               "\"base64\" 4 NIL (\"attachment\" (\"filename*\" \"utf-8''%E2%82%AC.pdf\" \"size\" "
               "\"3\")) NIL NIL)"
               "(\"text\" \"html\" (\"name\" {11}\r\nGr\xc3\xbc\xc3\x9f"
               "e.txt \"charset\" "
               "\"us-ascii\") NIL NIL \"7bit\" 8 0 NIL NIL (\"de\") NIL) \"mixed\" "
               "(\"boundary\" \"b1\") NIL NIL NIL)");
    mime_message_free(&m);
}

static void test_bodystructure_malformed(void **state)
{
    /* a multipart whose boundary never comes: one empty text/plain part (as Dovecot) */
    struct mime_message *m =
        parse_crlf("Content-Type: multipart/mixed; boundary=never\n\npreamble\n");
    check_body(m,
               "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) \"mixed\")",
               "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL "
               "NIL) \"mixed\" (\"boundary\" \"never\") NIL NIL NIL)");
    mime_message_free(&m);

    /* a multipart without a boundary is text/plain */
    m = parse_crlf("Content-Type: multipart/mixed\n\nx\n");
    check_body(m, "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1)",
               "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1 NIL NIL NIL "
               "NIL)");
    mime_message_free(&m);

    /* a message/rfc822 that is not parsed (base64) still has the message syntax */
    m = parse_crlf("Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n"
                   "U3ViamVjdDogeAoKeQo=\n");
    check_body(m,
               "(\"message\" \"rfc822\" NIL NIL NIL \"base64\" 22 (NIL NIL NIL NIL NIL NIL NIL NIL "
               "NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) 1)",
               "(\"message\" \"rfc822\" NIL NIL NIL \"base64\" 22 (NIL NIL NIL NIL NIL NIL NIL NIL "
               "NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL "
               "NIL NIL NIL) 1 NIL NIL NIL NIL)");
    mime_message_free(&m);

    /* a top-level message/rfc822 with its own message */
    m = parse_crlf("Content-Type: message/rfc822\n\nSubject: in\n\nbody\n");
    check_body(m,
               "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 21 (NIL \"in\" NIL NIL NIL NIL NIL "
               "NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1) "
               "3)",
               "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 21 (NIL \"in\" NIL NIL NIL NIL NIL "
               "NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1 "
               "NIL NIL NIL NIL) 3 NIL NIL NIL NIL)");
    mime_message_free(&m);

    /* empty disposition parameters and languages, disposition junk */
    m = parse_crlf("Content-Type: image/png\nContent-Disposition: inline\n"
                   "Content-Language: (none)\nContent-Location: \n\n");
    check_body(m, "(\"image\" \"png\" NIL NIL NIL \"7bit\" 0)",
               "(\"image\" \"png\" NIL NIL NIL \"7bit\" 0 NIL (\"inline\" NIL) NIL \"\")");
    mime_message_free(&m);
    m = parse_crlf("Content-Type: image/png\nContent-Disposition: in line; x=y\n\n");
    check_body(m, "(\"image\" \"png\" NIL NIL NIL \"7bit\" 0)",
               "(\"image\" \"png\" NIL NIL NIL \"7bit\" 0 NIL NIL NIL NIL)");
    mime_message_free(&m);
}

static void test_bodystructure_deep(void **state)
{
    /* 65 nested multiparts: the last is cut by the depth limit and formats as an empty one */
    size_t cap = 65 * 64 + 256, n = 0;
    char *msg = malloc(cap);
    assert_non_null(msg);
    for (int i = 0; i < 65; i++)
        n += (size_t)snprintf(msg + n, cap - n,
                              "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i);
    struct mime_parser *p = mime_parser_new(NULL);
    assert_int_equal(mime_parser_feed(p, msg, n), 0);
    struct mime_message *m = mime_parser_finish(&p);
    assert_true(m->limits & MIME_LIMIT_DEPTH);
    char *s;
    size_t len;
    assert_int_equal(imap_bodystructure_format(&m->root, false, &s, &len), 0);
    size_t open = 0, close = 0;
    for (size_t i = 0; i < len; i++) {
        open += s[i] == '(';
        close += s[i] == ')';
    }
    assert_int_equal(open, close);
    assert_int_equal(open, 65 + 2); /* 65 multiparts, the empty part and its parameters */
    assert_non_null(strstr(s, "((((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
                              "\"7bit\" 0 0) \"mixed\") \"mixed\")"));
    free(s);
    mime_message_free(&m);
    free(msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_envelope_rfc3501_example),
        cmocka_unit_test(test_envelope_details),
        cmocka_unit_test(test_bodystructure_dovecot_crosscheck),
        cmocka_unit_test(test_bodystructure_attachments),
        cmocka_unit_test(test_bodystructure_malformed),
        cmocka_unit_test(test_bodystructure_deep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
