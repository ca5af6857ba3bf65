/* layer: proto */
/* Unit tests for the streaming MIME structure parser: a corpus of real-world-shaped messages
 * (written here) checked for structure, exact offsets (the message sliced at the reported
 * offsets gives the expected bytes), line counts, envelope fields, search text, identical
 * results whatever the feeding split, and the limits. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/mime/mime.h"

/* ---- helpers -------------------------------------------------------------------------------- */

struct buf {
    char *d;
    size_t len, cap;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->d = realloc(b->d, b->cap);
        assert_non_null(b->d);
    }
    memcpy(b->d + b->len, s, n);
    b->len += n;
    b->d[b->len] = '\0';
}

static void buf_printf(struct buf *b, const char *fmt, ...)
{
    char tmp[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof(tmp));
    buf_add(b, tmp, (size_t)n);
}

/* The text with every "\n" turned into "\r\n": messages below are written with \n. */
static struct buf crlf(const char *s)
{
    struct buf b = {0};
    for (; *s; s++) {
        if (*s == '\n')
            buf_add(&b, "\r", 1);
        buf_add(&b, s, 1);
    }
    if (!b.d)
        buf_add(&b, "", 0);
    return b;
}

static struct mime_message *parse_step(const char *msg, size_t len, size_t step,
                                       const struct mime_limits *lim)
{
    struct mime_parser *p = mime_parser_new(lim);
    assert_non_null(p);
    for (size_t off = 0; off < len; off += step)
        assert_int_equal(mime_parser_feed(p, msg + off, len - off < step ? len - off : step), 0);
    assert_int_equal(mime_parser_feed(p, msg, 0), 0);
    struct mime_message *m = mime_parser_finish(&p);
    assert_null(p);
    assert_non_null(m);
    return m;
}

static void check_slice(const char *msg, uint64_t off, uint64_t size, const char *want)
{
    assert_int_equal(size, strlen(want));
    assert_memory_equal(msg + off, want, size);
}

/* Structural invariants: header then body, children inside their parent's body, in order. */
static void check_part(const struct mime_part *p, uint64_t lo, uint64_t hi)
{
    assert_non_null(p->type);
    assert_non_null(p->subtype);
    assert_true(p->header_offset >= lo);
    assert_int_equal(p->header_offset + p->header_size, p->body_offset);
    assert_true(p->body_offset + p->body_size <= hi);
    uint64_t prev = p->body_offset;
    for (size_t i = 0; i < p->nchildren; i++) {
        const struct mime_part *c = &p->children[i];
        assert_true(c->header_offset >= prev);
        check_part(c, p->body_offset, p->body_offset + p->body_size);
        prev = c->body_offset + c->body_size;
    }
    if (mime_part_is_message(p) && p->nchildren == 1) {
        assert_int_equal(p->children[0].header_offset, p->body_offset);
        assert_int_equal(p->children[0].body_offset + p->children[0].body_size,
                         p->body_offset + p->body_size);
        assert_non_null(p->children[0].envelope);
    }
}

static void dump_params(struct buf *o, const char *what, const struct mime_param *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf_printf(o, " %s:%s%s=%s|%s", what, v[i].name, v[i].extended ? "*" : "", v[i].value,
                   v[i].decoded);
}

/* A text form of everything parsed, to compare parses made with different splits. */
static void dump_part(struct buf *o, const struct mime_part *p)
{
    buf_printf(o, "(%s/%s h%" PRIu64 "+%" PRIu64 " b%" PRIu64 "+%" PRIu64 " l%" PRIu64, p->type,
               p->subtype, p->header_offset, p->header_size, p->body_offset, p->body_size,
               p->body_lines);
    dump_params(o, "p", p->params, p->nparams);
    dump_params(o, "d", p->disposition_params, p->ndisposition_params);
    const char *f[] = {p->id,       p->description, p->md5,        p->location,
                       p->language, p->encoding,    p->disposition};
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
        buf_printf(o, " %s", f[i] ? f[i] : "-");
    if (p->envelope) {
        const struct mime_envelope *e = p->envelope;
        const char *ef[] = {e->date, e->subject, e->from,        e->sender,     e->reply_to,  e->to,
                            e->cc,   e->bcc,     e->in_reply_to, e->message_id, e->references};
        buf_add(o, " env", 4);
        for (size_t i = 0; i < sizeof(ef) / sizeof(ef[0]); i++)
            buf_printf(o, "|%s", ef[i] ? ef[i] : "-");
    }
    for (size_t i = 0; i < p->nchildren; i++)
        dump_part(o, &p->children[i]);
    buf_add(o, ")", 1);
}

static char *dump(const struct mime_message *m)
{
    struct buf o = {0};
    buf_printf(&o, "size=%" PRIu64 " lines=%" PRIu64 " parts=%zu limits=%u ", m->size, m->lines,
               m->nparts, m->limits);
    dump_part(&o, &m->root);
    buf_add(&o, " text=", 6);
    buf_add(&o, m->search_text, m->search_text_len);
    return o.d;
}

/* Parses msg whole and in pieces of several sizes; all must agree. Returns the whole parse. */
static struct mime_message *parse_all_ways(const char *msg, size_t len,
                                           const struct mime_limits *lim)
{
    struct mime_message *m = parse_step(msg, len, len ? len : 1, lim);
    check_part(&m->root, 0, len);
    assert_int_equal(m->size, len);
    assert_int_equal(m->root.body_offset + m->root.body_size, len);
    assert_int_equal(strlen(m->search_text), m->search_text_len);
    char *want = dump(m);
    static const size_t steps[] = {1, 2, 3, 5, 7, 13, 64, 1000};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        if (steps[i] >= len)
            break;
        struct mime_message *m2 = parse_step(msg, len, steps[i], lim);
        char *got = dump(m2);
        assert_string_equal(got, want);
        free(got);
        mime_message_free(&m2);
    }
    free(want);
    return m;
}

static const struct mime_part *section(const struct mime_message *m, const char *s)
{
    const struct mime_part *p = mime_message_section(m, s);
    assert_non_null(p);
    return p;
}

/* ---- the corpus ----------------------------------------------------------------------------- */

static const char simple_msg[] = "From: Alice <alice@example.org>\n"
                                 "To: bob@example.net\n"
                                 "Subject: Hello\n"
                                 "Date: Mon, 1 Jan 2024 10:00:00 +0000\n"
                                 "Message-ID: <1@example.org>\n"
                                 "\n"
                                 "Hi Bob,\n"
                                 "how are you?\n";

static void test_simple_text(void **state)
{
    struct buf msg = crlf(simple_msg);
    struct mime_message *m = parse_all_ways(msg.d, msg.len, NULL);
    const struct mime_part *r = &m->root;
    assert_string_equal(r->type, "text");
    assert_string_equal(r->subtype, "plain");
    assert_int_equal(r->nchildren, 0);
    assert_int_equal(r->header_offset, 0);
    assert_memory_equal(msg.d + r->header_size - 4, "\r\n\r\n", 4);
    check_slice(msg.d, r->body_offset, r->body_size, "Hi Bob,\r\nhow are you?\r\n");
    assert_int_equal(r->body_lines, 2);
    assert_int_equal(m->lines, 8);
    assert_int_equal(m->nparts, 1);
    assert_int_equal(m->limits, 0);
    assert_non_null(r->envelope);
    assert_string_equal(r->envelope->from, "Alice <alice@example.org>");
    assert_string_equal(r->envelope->subject, "Hello");
    assert_string_equal(r->envelope->message_id, "<1@example.org>");
    assert_null(r->envelope->cc);
    assert_null(r->encoding);
    assert_string_equal(m->search_text, "Hi Bob,\nhow are you?");
    assert_ptr_equal(section(m, ""), r);
    assert_ptr_equal(section(m, "1"), r); /* RFC 3501 §6.4.5: a single part is part 1 */
    assert_null(mime_message_section(m, "2"));
    assert_null(mime_message_section(m, "1.1"));
    assert_null(mime_message_section(m, "0"));
    assert_null(mime_message_section(m, "1."));
    assert_null(mime_message_section(m, "x"));
    mime_message_free(&m);
    assert_null(m);
    free(msg.d);
}

static const char alternative_msg[] =
    "From: a@b\n"
    "Subject: alt\n"
    "MIME-Version: 1.0\n"
    "Content-Type: multipart/alternative; boundary=\"=_alt\"\n"
    "\n"
    "This is a multi-part message in MIME format.\n"
    "--=_alt\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "Caf=C3=A9 cr=C3=A8me =\n"
    "soft break\n"
    "--=_alt\n"
    "Content-Type: text/html; charset=utf-8\n"
    "\n"
    "<html><head><style>p {color: red}</style></head><body><p>Caf&#233; &amp; "
    "<b>bo</b>ld&#x21;</p><script>if (a < b) alert(1)</script><!-- hidden --></body></html>\n"
    "--=_alt--\n"
    "epilogue text\n";

static void test_alternative(void **state)
{
    struct buf msg = crlf(alternative_msg);
    struct mime_message *m = parse_all_ways(msg.d, msg.len, NULL);
    const struct mime_part *r = &m->root;
    assert_string_equal(r->type, "multipart");
    assert_string_equal(r->subtype, "alternative");
    assert_string_equal(mime_part_param(r, "boundary"), "=_alt");
    assert_int_equal(r->nchildren, 2);
    assert_int_equal(m->nparts, 3);
    const struct mime_part *t = &r->children[0], *h = &r->children[1];
    assert_string_equal(t->type, "text");
    assert_string_equal(t->encoding, "quoted-printable");
    check_slice(msg.d, t->header_offset, t->header_size,
                "Content-Type: text/plain; charset=utf-8\r\n"
                "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
    check_slice(msg.d, t->body_offset, t->body_size, "Caf=C3=A9 cr=C3=A8me =\r\nsoft break");
    assert_int_equal(t->body_lines, 1);
    assert_string_equal(h->subtype, "html");
    assert_int_equal(h->body_lines, 0);
    assert_memory_equal(msg.d + h->body_offset, "<html>", 6);
    assert_memory_equal(msg.d + h->body_offset + h->body_size - 7, "</html>", 7);
    /* the root body has the preamble and the epilogue, the parts do not */
    assert_memory_equal(msg.d + r->body_offset, "This is a multi-part", 20);
    assert_int_equal(r->body_offset + r->body_size, msg.len);
    assert_string_equal(m->search_text, "Caf\xc3\xa9 cr\xc3\xa8me soft break\n"
                                        "Caf\xc3\xa9 & bold!");
    assert_ptr_equal(section(m, "1"), t);
    assert_ptr_equal(section(m, "2"), h);
    assert_null(mime_message_section(m, "3"));
    mime_message_free(&m);
    free(msg.d);
}

static const char mixed_msg[] = "From: \"Carol\" <carol@example.com>\n"
                                "To: dave@example.com\n"
                                "Subject: =?UTF-8?B?UmVwb3J0IOKCrA==?=\n"
                                "MIME-Version: 1.0\n"
                                "Content-Type: multipart/mixed;\n"
                                " boundary=\"outer\"\n"
                                "\n"
                                "--outer\n"
                                "Content-Type: text/plain; charset=iso-8859-1\n"
                                "Content-Transfer-Encoding: 8bit\n"
                                "\n"
                                "Gr\xfc\xdf"
                                "e\n"
                                "--outer\n"
                                "Content-Type: application/pdf; name=\"report.pdf\"\n"
                                "Content-Transfer-Encoding: base64\n"
                                "Content-Disposition: attachment;\n"
                                " filename*0*=UTF-8''%E2%82%AC%20;\n"
                                " filename*1=\"report.pdf\"\n"
                                "\n"
                                "JVBERi0xLjQK\n"
                                "JSVFT0YK\n"
                                "--outer\n"
                                "Content-Type: message/rfc822\n"
                                "Content-Description: forwarded\n"
                                "\n"
                                "From: eve@example.com\n"
                                "Subject: inner\n"
                                "Content-Type: multipart/mixed; boundary=\"inner\"\n"
                                "\n"
                                "--inner\n"
                                "Content-Type: text/plain\n"
                                "\n"
                                "inner text\n"
                                "--inner\n"
                                "Content-Type: image/png\n"
                                "Content-Transfer-Encoding: base64\n"
                                "\n"
                                "iVBORw0KGgo=\n"
                                "--inner--\n"
                                "\n"
                                "--outer--\n";

static void check_mixed(const char *msg, size_t len, const char *eol)
{
    struct mime_message *m = parse_all_ways(msg, len, NULL);
    const struct mime_part *r = &m->root;
    assert_int_equal(r->nchildren, 3);
    assert_int_equal(m->nparts, 7);
    assert_string_equal(r->envelope->subject, "=?UTF-8?B?UmVwb3J0IOKCrA==?=");
    const struct mime_part *txt = section(m, "1"), *pdf = section(m, "2"), *fwd = section(m, "3");
    assert_string_equal(txt->encoding, "8bit");
    assert_string_equal(mime_part_param(txt, "charset"), "iso-8859-1");
    assert_string_equal(pdf->type, "application");
    assert_string_equal(pdf->disposition, "attachment");
    assert_string_equal(mime_part_filename(pdf), "\xe2\x82\xac report.pdf");
    assert_null(mime_part_filename(txt));
    assert_memory_equal(msg + pdf->body_offset, "JVBERi0xLjQK", 12);
    assert_int_equal(pdf->body_size, 12 + strlen(eol) + 8);
    assert_true(mime_part_is_message(fwd));
    assert_string_equal(fwd->description, "forwarded");
    assert_int_equal(fwd->nchildren, 1);
    const struct mime_part *inner = &fwd->children[0];
    assert_ptr_equal(section(m, "3"), fwd);
    assert_string_equal(inner->envelope->subject, "inner");
    assert_string_equal(inner->envelope->from, "eve@example.com");
    assert_true(mime_part_is_multipart(inner));
    assert_memory_equal(msg + inner->header_offset, "From: eve@example.com", 21);
    /* the forwarded message ends with its close delimiter line; the empty line after it is
     * the line break that belongs to "--outer--" */
    const char *end = msg + fwd->body_offset + fwd->body_size;
    assert_memory_equal(end - 9 - strlen(eol), "--inner--", 9);
    assert_memory_equal(end, eol, strlen(eol));
    assert_memory_equal(end + strlen(eol), "--outer--", 9);
    const struct mime_part *it = section(m, "3.1"), *png = section(m, "3.2");
    assert_ptr_equal(it, &inner->children[0]);
    check_slice(msg, it->body_offset, it->body_size, "inner text");
    assert_int_equal(it->body_lines, 0);
    check_slice(msg, png->body_offset, png->body_size, "iVBORw0KGgo=");
    assert_null(mime_message_section(m, "3.3"));
    assert_null(mime_message_section(m, "4"));
    assert_null(mime_message_section(m, "1.1"));
    assert_null(mime_message_section(m, "3.1.1"));
    assert_string_equal(m->search_text, "Gr\xc3\xbc\xc3\x9f"
                                        "e\ninner text");
    mime_message_free(&m);
}

static void test_mixed_nested(void **state)
{
    struct buf msg = crlf(mixed_msg);
    check_mixed(msg.d, msg.len, "\r\n");
    free(msg.d);
    /* the same message with bare LF line ends */
    check_mixed(mixed_msg, strlen(mixed_msg), "\n");
}

static void test_section_single_part_message(void **state)
{
    /* a message/rfc822 whose message is a single part: "2.1" is that message's body */
    struct buf msg = crlf("Content-Type: multipart/mixed; boundary=x\n\n"
                          "--x\n\none\n"
                          "--x\nContent-Type: message/rfc822\n\nSubject: s\n\ntwo\n"
                          "--x--\n");
    struct mime_message *m = parse_all_ways(msg.d, msg.len, NULL);
    const struct mime_part *fwd = section(m, "2");
    assert_ptr_equal(section(m, "2.1"), &fwd->children[0]);
    check_slice(msg.d, fwd->children[0].body_offset, fwd->children[0].body_size, "two");
    assert_null(mime_message_section(m, "2.2"));
    assert_null(mime_message_section(m, "2.1.1"));
    /* parts without headers default to text/plain */
    assert_string_equal(section(m, "1")->type, "text");
    check_slice(msg.d, section(m, "1")->header_offset, section(m, "1")->header_size, "\r\n");
    mime_message_free(&m);
    free(msg.d);
}

static void test_missing_close_boundary(void **state)
{
    struct buf msg = crlf("Content-Type: multipart/mixed; boundary=b\n"
                          "\n"
                          "--b\n"
                          "Content-Type: text/plain\n"
                          "\n"
                          "first\n"
                          "--b\n"
                          "Content-Type: text/plain\n"
                          "\n"
                          "second runs to the end\n");
    struct mime_message *m = parse_all_ways(msg.d, msg.len, NULL);
    assert_int_equal(m->root.nchildren, 2);
    const struct mime_part *a = &m->root.children[0], *b = &m->root.children[1];
    check_slice(msg.d, a->body_offset, a->body_size, "first");
    check_slice(msg.d, b->body_offset, b->body_size, "second runs to the end\r\n");
    assert_int_equal(b->body_lines, 1);
    assert_int_equal(b->body_offset + b->body_size, msg.len);
    mime_message_free(&m);
    free(msg.d);
}

static void test_multipart_without_boundary(void **state)
{
    struct buf msg = crlf("Content-Type: multipart/mixed; charset=utf-8\n\n--x\nhello\n");
    struct mime_message *m = parse_all_ways(msg.d, msg.len, NULL);
    assert_string_equal(m->root.type, "text"); /* as Dovecot does */
    assert_string_equal(m->root.subtype, "plain");
    assert_int_equal(m->root.nchildren, 0);
    assert_int_equal(m->root.body_lines, 2);
    assert_string_equal(m->search_text, "--x\nhello");
    mime_message_free(&m);
    free(msg.d);

    /* a boundary that is unusable (too long, empty, extended) is the same */
    struct buf b = {0};
    buf_add(&b, "Content-Type: multipart/mixed; boundary=", 40);
    for (int i = 0; i < MIME_MAX_BOUNDARY + 1; i++)
        buf_add(&b, "x", 1);
    buf_add(&b, "\r\n\r\nbody\r\n", 10);
    m = parse_all_ways(b.d, b.len, NULL);
    assert_string_equal(m->root.type, "text");
    mime_message_free(&m);
    free(b.d);
    msg = crlf("Content-Type: multipart/mixed; boundary=\"\"\n\n--\nx\n");
    m = parse_all_ways(msg.d, msg.len, NULL);
    assert_string_equal(m->root.type, "text");
    mime_message_free(&m);
    free(msg.d);

    /* a usable boundary that never comes: a multipart without parts, all preamble */
    msg = crlf("Content-Type: multipart/mixed; boundary=never\n\nonly preamble\n");
    m = parse_all_ways(msg.d, msg.len, NULL);
    assert_string_equal(m->root.type, "multipart");
    assert_int_equal(m->root.nchildren, 0);
    assert_string_equal(m->search_text, "");
    mime_message_free(&m);
    free(msg.d);
}

static void test_broken_headers(void **state)
{
    struct buf msg = crlf("From: a@b\n"
                          "this line is not a header\n"
                          "Subject: still parsed\n"
                          ": empty name\n"
                          "Subject: second subject ignored\n"
                          "Content-Type: text/plain; charset=\"utf-8\n"
                          "Content-Type: text/html\n"
                          "Content-Transfer-Encoding: ?invalid\n"
                          "\n"
                          "body\n");
    struct mime_message *m = parse_all_ways(msg.d, msg.len, NULL);
    assert_string_equal(m->root.envelope->subject, "still parsed");
    assert_string_equal(m->root.subtype, "plain"); /* the first Content-Type counts */
    assert_string_equal(mime_part_param(&m->root, "charset"), "utf-8");
    assert_null(m->root.encoding); /* not a token: as if absent */
    check_slice(msg.d, m->root.body_offset, m->root.body_size, "body\r\n");
    mime_message_free(&m);
    free(msg.d);

    /* invalid Content-Types mean text/plain without parameters (RFC 2045 §5.2) */
    static const char *const bad[] = {"text",          "text/", "/plain",
                                      "te xt/pl ain?", "a/b/c", "multipart/mixed/x; boundary=b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct buf b = {0};
        buf_printf(&b, "Content-Type: %s; charset=koi8-r\r\n\r\nx", bad[i]);
        m = parse_all_ways(b.d, b.len, NULL);
        assert_string_equal(m->root.type, "text");
        assert_string_equal(m->root.subtype, "plain");
        assert_int_equal(m->root.nparams, 0);
        mime_message_free(&m);
        free(b.d);
    }

    /* a header without an empty line is all header */
    const char *noblank = "Subject: x\r\nFrom: y";
    m = parse_all_ways(noblank, strlen(noblank), NULL);
    assert_int_equal(m->root.header_size, strlen(noblank));
    assert_int_equal(m->root.body_size, 0);
    assert_string_equal(m->root.envelope->from, "y");
    mime_message_free(&m);

    /* an empty header, an empty message */
    m = parse_all_ways("\r\nbody", 6, NULL);
    assert_int_equal(m->root.header_size, 2);
    check_slice("\r\nbody", m->root.body_offset, m->root.body_size, "body");
    assert_null(m->root.envelope->subject);
    mime_message_free(&m);
    m = parse_all_ways("", 0, NULL);
    assert_int_equal(m->size, 0);
    assert_int_equal(m->root.header_size + m->root.body_size, 0);
    assert_string_equal(m->root.type, "text");
    assert_string_equal(m->search_text, "");
    mime_message_free(&m);

    /* empty fields are "", absent ones NULL; folding is undone */
    msg = crlf("Subject:\nCc:   \nTo: a@b,\n\tc@d\nContent-Language: en,\n de\n\nx");
    m = parse_all_ways(msg.d, msg.len, NULL);
    assert_string_equal(m->root.envelope->subject, "");
    assert_string_equal(m->root.envelope->cc, "");
    assert_string_equal(m->root.envelope->to, "a@b,\tc@d");
    assert_string_equal(m->root.language, "en, de");
    assert_null(m->root.envelope->bcc);
    mime_message_free(&m);
    free(msg.d);
}

static void test_8bit_headers(void **state)
{
    struct buf msg = crlf("Subject: Gr\xc3\xbc\xc3\x9f"
                          "e\n"
                          "From: J\xc3\xb6rg <j@x>\n"
                          "Content-Type: text/plain; charset=utf-8\n"
                          "\n"
                          "K\xc3\xb6ln\n");
    struct mime_message *m = parse_all_ways(msg.d, msg.len, NULL);
    assert_string_equal(m->root.envelope->subject, "Gr\xc3\xbc\xc3\x9f"
                                                   "e");
    assert_string_equal(m->root.envelope->from, "J\xc3\xb6rg <j@x>");
    assert_string_equal(m->search_text, "K\xc3\xb6ln");
    mime_message_free(&m);
    free(msg.d);
}

static void test_digest_and_encoded_message(void **state)
{
    struct buf msg = crlf("Content-Type: multipart/digest; boundary=d\n"
                          "\n"
                          "--d\n"
                          "\n"
                          "Subject: m1\n"
                          "\n"
                          "one\n"
                          "--d\n"
                          "Content-Type: text/plain\n"
                          "\n"
                          "not a message\n"
                          "--d\n"
                          "Content-Type: message/rfc822\n"
                          "Content-Transfer-Encoding: base64\n"
                          "\n"
                          "U3ViamVjdDogeAoKeQo=\n"
                          "--d--\n");
    struct mime_message *m = parse_all_ways(msg.d, msg.len, NULL);
    assert_int_equal(m->root.nchildren, 3);
    const struct mime_part *d1 = &m->root.children[0];
    assert_true(mime_part_is_message(d1)); /* RFC 2046 §5.1.5 */
    assert_int_equal(d1->nchildren, 1);
    assert_string_equal(d1->children[0].envelope->subject, "m1");
    assert_string_equal(d1->children[0].type, "text"); /* not a digest part itself */
    check_slice(msg.d, d1->children[0].body_offset, d1->children[0].body_size, "one");
    assert_string_equal(m->root.children[1].type, "text");
    /* RFC 2046 §5.2.1: a base64 message/rfc822 is not parsed */
    const struct mime_part *enc = &m->root.children[2];
    assert_true(mime_part_is_message(enc));
    assert_int_equal(enc->nchildren, 0);
    assert_int_equal(m->nparts, 5);
    assert_string_equal(m->search_text, "one\nnot a message");
    mime_message_free(&m);
    free(msg.d);
}

static void test_boundary_edge_cases(void **state)
{
    /* trailing whitespace after a boundary; a longer boundary is not ours; text after "--" */
    struct buf msg = crlf("Content-Type: multipart/mixed; boundary=\"b\"\n"
                          "\n"
                          "--b \t\n"
                          "\n"
                          "--bb is not our boundary\n"
                          "--b-- is not a close delimiter\n"
                          "---b\n"
                          "--b--  \n");
    struct mime_message *m = parse_all_ways(msg.d, msg.len, NULL);
    assert_int_equal(m->root.nchildren, 1);
    const struct mime_part *c = &m->root.children[0];
    check_slice(msg.d, c->body_offset, c->body_size,
                "--bb is not our boundary\r\n--b-- is not a close delimiter\r\n---b");
    assert_int_equal(c->body_lines, 2);
    mime_message_free(&m);
    free(msg.d);

    /* an outer boundary ends the inner parts (RFC 2046 §5.1.2) */
    msg = crlf("Content-Type: multipart/mixed; boundary=outer\n"
               "\n"
               "--outer\n"
               "Content-Type: multipart/alternative; boundary=inner\n"
               "\n"
               "--inner\n"
               "Content-Type: text/plain\n"
               "\n"
               "inner one\n"
               "--outer\n"
               "Content-Type: text/plain\n"
               "\n"
               "after\n"
               "--outer--\n");
    m = parse_all_ways(msg.d, msg.len, NULL);
    assert_int_equal(m->root.nchildren, 2);
    const struct mime_part *alt = &m->root.children[0];
    assert_int_equal(alt->nchildren, 1);
    check_slice(msg.d, alt->children[0].body_offset, alt->children[0].body_size, "inner one");
    assert_int_equal(alt->body_offset + alt->body_size,
                     alt->children[0].body_offset + alt->children[0].body_size);
    check_slice(msg.d, m->root.children[1].body_offset, m->root.children[1].body_size, "after");
    mime_message_free(&m);
    free(msg.d);

    /* a close delimiter at the very end without a line break; then one cut short */
    msg = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nlast\n--b--");
    m = parse_all_ways(msg.d, msg.len, NULL);
    assert_int_equal(m->root.nchildren, 1);
    check_slice(msg.d, m->root.children[0].body_offset, m->root.children[0].body_size, "last");
    mime_message_free(&m);
    free(msg.d);
    msg = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nlast\n--b");
    m = parse_all_ways(msg.d, msg.len, NULL);
    assert_int_equal(m->root.nchildren, 2); /* a delimiter starts a part, even an empty one */
    check_slice(msg.d, m->root.children[0].body_offset, m->root.children[0].body_size, "last");
    assert_int_equal(m->root.children[1].header_offset, msg.len);
    assert_int_equal(m->root.children[1].header_size + m->root.children[1].body_size, 0);
    mime_message_free(&m);
    free(msg.d);

    /* a part whose header is cut by the next boundary; an empty body right before one */
    msg = crlf("Content-Type: multipart/mixed; boundary=b\n"
               "\n"
               "--b\n"
               "Content-Type: text/html\n"
               "--b\n"
               "Content-Type: text/plain\n"
               "\n"
               "--b--\n");
    m = parse_all_ways(msg.d, msg.len, NULL);
    assert_int_equal(m->root.nchildren, 2);
    const struct mime_part *h = &m->root.children[0], *e = &m->root.children[1];
    assert_string_equal(h->subtype, "html");
    check_slice(msg.d, h->header_offset, h->header_size, "Content-Type: text/html");
    assert_int_equal(h->body_size, 0);
    assert_int_equal(e->body_size, 0);
    assert_int_equal(e->body_lines, 0);
    mime_message_free(&m);
    free(msg.d);

    /* an encapsulated message whose header's empty line is the line break before the
     * boundary: the message/rfc822 part ends with that header, not before it (found by
     * fuzz_mime) */
    msg = crlf("Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: x\n\n--d--\n");
    m = parse_all_ways(msg.d, msg.len, NULL);
    const struct mime_part *fwd = &m->root.children[0];
    check_slice(msg.d, fwd->body_offset, fwd->body_size, "Subject: x\r\n\r\n");
    assert_int_equal(fwd->body_lines, 2);
    check_slice(msg.d, fwd->children[0].header_offset, fwd->children[0].header_size,
                "Subject: x\r\n\r\n");
    assert_int_equal(fwd->children[0].body_size, 0);
    assert_int_equal(fwd->children[0].body_lines, 0);
    mime_message_free(&m);
    free(msg.d);

    /* boundary lines are only boundaries at the start of a line, and a long "--" line that
     * cannot be one passes through */
    struct buf b = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx --b\n");
    for (int i = 0; i < 1000; i++)
        buf_add(&b, "-", 1);
    buf_add(&b, "\r\n--b--\r\n", 9);
    m = parse_all_ways(b.d, b.len, NULL);
    assert_int_equal(m->root.nchildren, 1);
    assert_int_equal(m->root.children[0].body_lines, 1);
    assert_int_equal(m->root.children[0].body_size, 7 + 1000);
    mime_message_free(&m);
    free(b.d);
}

static void test_search_text(void **state)
{
    struct buf msg = crlf("Content-Type: multipart/mixed; boundary=s\n"
                          "\n"
                          "--s\n"
                          "Content-Type: text/plain; charset=utf-8\n"
                          "Content-Transfer-Encoding: base64\n"
                          "\n"
                          "R3LDvMOfZSBh\n"
                          "dXMgS8O2bG4=\n"
                          "--s\n"
                          "Content-Type: text/plain; charset=iso-8859-1\n"
                          "Content-Transfer-Encoding: quoted-printable\n"
                          "\n"
                          "Caf=E9   au =\n"
                          "lait=3D=ZZ\n"
                          "--s\n"
                          "Content-Type: text/plain; charset=iso-2022-jp\n"
                          "\n"
                          "\x1b$B%F%9%H\x1b(B\n"
                          "--s\n"
                          "Content-Type: application/octet-stream\n"
                          "Content-Transfer-Encoding: base64\n"
                          "\n"
                          "aWdub3JlZA==\n"
                          "--s\n"
                          "Content-Type: text/enriched; charset=x-no-such-charset\n"
                          "\n"
                          "\xc3\xa9t\xe9\n"
                          "--s--\n");
    struct mime_message *m = parse_all_ways(msg.d, msg.len, NULL);
    assert_string_equal(m->search_text, "Gr\xc3\xbc\xc3\x9f"
                                        "e aus K\xc3\xb6ln\n"
                                        "Caf\xc3\xa9 au lait==ZZ\n"
                                        "\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88\n"
                                        "\xc3\xa9t\xc3\xa9");
    mime_message_free(&m);
    free(msg.d);

    /* the search text bound cuts at a character boundary and is flagged */
    struct mime_limits lim = {.max_search_text = 11};
    const char *two = "Content-Type: text/plain; charset=utf-8\r\n\r\n"
                      "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9";
    m = parse_all_ways(two, strlen(two), &lim);
    assert_int_equal(m->search_text_len, 10);
    assert_true(m->limits & MIME_LIMIT_SEARCH_TEXT);
    mime_message_free(&m);
}

/* A stateful charset (UTF-7), valid then malformed, over more than one conversion block: the
 * search text must not depend on how the body was fed (found by fuzz_mime). */
static void test_stateful_charset_any_split(void **state)
{
    struct buf b = crlf("Content-Type: text/plain; charset=utf-7\n\nHi +AOk-t+AOk-\n");
    for (int i = 0; i < 600; i++)
        buf_printf(&b, "mbl\xff\x8c+ZZ%%%%+AGE %d +AOk-\r\n", i);
    struct mime_message *m = parse_all_ways(b.d, b.len, NULL);
    assert_memory_equal(m->search_text, "Hi \xc3\xa9t\xc3\xa9\n", 9);
    for (size_t i = 0; i < m->search_text_len;) {
        int l =
            mime_header_utf8_len((const unsigned char *)m->search_text + i, m->search_text_len - i);
        assert_true(l > 0);
        i += (size_t)l;
    }
    mime_message_free(&m);
    free(b.d);
}

/* A message of n parts in one multipart. */
static struct buf flat_multipart(size_t n)
{
    struct buf b = {0};
    buf_printf(&b, "Subject: many\r\nContent-Type: multipart/mixed; boundary=p\r\n\r\n");
    for (size_t i = 0; i < n; i++)
        buf_printf(&b, "--p\r\nContent-Type: text/plain\r\n\r\npart %zu\r\n", i);
    buf_printf(&b, "--p--\r\n");
    return b;
}

static void test_limit_parts(void **state)
{
    struct buf msg = flat_multipart(10000); /* 10001 parts with the message */
    struct mime_message *m = parse_step(msg.d, msg.len, msg.len, NULL);
    check_part(&m->root, 0, msg.len);
    assert_int_equal(m->nparts, MIME_DEFAULT_MAX_PARTS);
    assert_int_equal(m->root.nchildren, MIME_DEFAULT_MAX_PARTS - 1);
    assert_true(m->limits & MIME_LIMIT_PARTS);
    /* the last part made runs to the end: no more boundaries are looked for */
    const struct mime_part *last = &m->root.children[m->root.nchildren - 1];
    assert_int_equal(last->body_offset + last->body_size, msg.len);
    assert_memory_equal(msg.d + last->body_offset, "part 9998\r\n--p\r\n", 16);
    char *want = dump(m);
    mime_message_free(&m);
    m = parse_step(msg.d, msg.len, 7, NULL);
    char *got = dump(m);
    assert_string_equal(got, want);
    free(got);
    free(want);
    mime_message_free(&m);
    free(msg.d);

    /* 9999 parts are within the limit */
    msg = flat_multipart(9999);
    m = parse_step(msg.d, msg.len, msg.len, NULL);
    assert_int_equal(m->nparts, 10000);
    assert_int_equal(m->limits, 0);
    mime_message_free(&m);
    free(msg.d);

    /* a message/rfc822 past the limit is a leaf */
    struct mime_limits lim = {.max_parts = 2};
    struct buf fwd = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n"
                          "Content-Type: message/rfc822\n\nSubject: x\n\ny\n--b--\n");
    m = parse_all_ways(fwd.d, fwd.len, &lim);
    assert_int_equal(m->nparts, 2);
    assert_int_equal(m->root.children[0].nchildren, 0);
    assert_true(m->limits & MIME_LIMIT_PARTS);
    mime_message_free(&m);
    free(fwd.d);
}

/* depth + 1 nested multiparts (or messages), innermost text last. */
static struct buf nested(size_t levels, bool messages)
{
    struct buf b = {0};
    for (size_t i = 0; i < levels; i++) {
        if (messages)
            buf_printf(&b, "Subject: level %zu\r\nContent-Type: message/rfc822\r\n\r\n", i);
        else
            buf_printf(&b, "Content-Type: multipart/mixed; boundary=b%zu\r\n\r\n--b%zu\r\n", i, i);
    }
    buf_printf(&b, "Content-Type: text/plain\r\n\r\ndeep text\r\n");
    if (!messages)
        for (size_t i = levels; i-- > 0;)
            buf_printf(&b, "--b%zu--\r\n", i);
    return b;
}

static void test_limit_depth(void **state)
{
    for (int messages = 0; messages < 2; messages++) {
        /* 64 containers: the deepest text is at depth 64, within the limit */
        struct buf msg = nested(64, messages);
        struct mime_message *m = parse_all_ways(msg.d, msg.len, NULL);
        assert_int_equal(m->limits, 0);
        assert_int_equal(m->nparts, 65);
        const struct mime_part *p = &m->root;
        for (int d = 0; d < 64; d++) {
            assert_int_equal(p->nchildren, 1);
            p = &p->children[0];
        }
        assert_string_equal(p->type, "text");
        assert_string_equal(m->search_text, "deep text");
        mime_message_free(&m);
        free(msg.d);

        /* 65 containers: the one at depth 64 stays a leaf holding the rest */
        msg = nested(65, messages);
        m = parse_all_ways(msg.d, msg.len, NULL);
        assert_true(m->limits & MIME_LIMIT_DEPTH);
        assert_int_equal(m->nparts, 65);
        p = &m->root;
        for (int d = 0; d < 64; d++)
            p = &p->children[0];
        assert_int_equal(p->nchildren, 0);
        assert_string_equal(p->type, messages ? "message" : "multipart");
        assert_string_equal(m->search_text, "");
        mime_message_free(&m);
        free(msg.d);
    }

    /* a smaller limit, and a huge one clamped */
    struct mime_limits lim = {.max_depth = 2};
    struct buf msg = nested(5, false);
    struct mime_message *m = parse_all_ways(msg.d, msg.len, &lim);
    assert_int_equal(m->nparts, 3);
    mime_message_free(&m);
    free(msg.d);
    lim.max_depth = SIZE_MAX;
    msg = nested(1500, false);
    m = parse_step(msg.d, msg.len, msg.len, &lim);
    assert_int_equal(m->nparts, 1001);
    check_part(&m->root, 0, msg.len);
    mime_message_free(&m);
    free(msg.d);
}

static void test_limit_header_and_meta(void **state)
{
    struct buf msg = {0};
    buf_printf(&msg, "From: a@b\r\nX-Filler: ");
    for (int i = 0; i < 300 * 1024; i++)
        buf_add(&msg, "x", 1);
    buf_printf(&msg, "\r\nSubject: lost\r\n\r\nbody\r\n");
    struct mime_message *m = parse_all_ways(msg.d, msg.len, NULL);
    assert_true(m->limits & MIME_LIMIT_HEADER);
    assert_string_equal(m->root.envelope->from, "a@b"); /* before the cut */
    assert_null(m->root.envelope->subject);             /* after it */
    check_slice(msg.d, m->root.body_offset, m->root.body_size, "body\r\n");
    mime_message_free(&m);
    free(msg.d);

    /* the metadata budget drops optional fields, never the structure */
    struct mime_limits lim = {.max_meta_bytes = 64};
    struct buf mm = crlf("Subject: a subject that is long enough to eat the whole budget\n"
                         "Content-Type: multipart/mixed; boundary=b\n\n"
                         "--b\nContent-Type: text/plain; charset=utf-8\n"
                         "Content-Description: also too long for what is left\n\nx\n--b--\n");
    m = parse_all_ways(mm.d, mm.len, &lim);
    assert_true(m->limits & MIME_LIMIT_META);
    assert_int_equal(m->root.nchildren, 1);
    assert_null(m->root.children[0].description);
    assert_string_equal(m->search_text, "x");
    mime_message_free(&m);
    free(mm.d);
}

static void test_large_message_bounded(void **state)
{
    /* 8 MB: a big base64 attachment and a 2 MB text part, fed in 64 KiB pieces */
    struct buf b = crlf("Subject: big\nContent-Type: multipart/mixed; boundary=big\n\n--big\n"
                        "Content-Type: application/octet-stream\n"
                        "Content-Transfer-Encoding: base64\n\n");
    char line[78];
    memset(line, 'A', 76);
    line[76] = '\r';
    line[77] = '\n';
    size_t att_start = b.len;
    for (int i = 0; i < 6 * 1024 * 1024 / 76; i++)
        buf_add(&b, line, 78);
    size_t att_end = b.len - 2;
    buf_printf(&b, "--big\r\nContent-Type: text/plain\r\n\r\n");
    for (int i = 0; i < 2 * 1024 * 1024 / 78; i++) {
        memset(line, 'a' + i % 26, 76);
        buf_add(&b, line, 78);
    }
    buf_printf(&b, "--big--\r\n");
    struct mime_message *m = parse_step(b.d, b.len, 65536, NULL);
    check_part(&m->root, 0, b.len);
    assert_int_equal(m->root.nchildren, 2);
    assert_int_equal(m->root.children[0].body_offset, att_start);
    assert_int_equal(m->root.children[0].body_size, att_end - att_start);
    assert_int_equal(m->root.children[0].body_lines, 6 * 1024 * 1024 / 76 - 1);
    assert_int_equal(m->search_text_len, MIME_DEFAULT_MAX_SEARCH_TEXT);
    assert_true(m->limits & MIME_LIMIT_SEARCH_TEXT);
    mime_message_free(&m);
    free(b.d);
}

static void test_text_decoder_direct(void **state)
{
    struct mime_textbuf out = {.max = 1000};
    struct mime_text *t = mime_text_new("BASE64", "utf-8", false);
    assert_non_null(t);
    const char *in = "4oKs IDE=\r\n"; /* "€ 1" in two pieces, with junk between */
    for (size_t i = 0; in[i]; i++)
        assert_int_equal(mime_text_feed(t, in + i, 1, &out), 0);
    assert_int_equal(mime_text_finish(t, &out), 0);
    mime_text_free(&t);
    assert_null(t);
    assert_string_equal(out.data, "\xe2\x82\xac 1");
    free(out.data);

    memset(&out, 0, sizeof(out));
    out.max = 1000;
    t = mime_text_new("quoted-printable", NULL, false);
    const char *qp = "a=3Db=\r\nc =4";
    assert_int_equal(mime_text_feed(t, qp, strlen(qp), &out), 0);
    assert_int_equal(mime_text_finish(t, &out), 0);
    mime_text_free(&t);
    assert_string_equal(out.data, "a=bc =4"); /* the unfinished escape is kept as text */
    free(out.data);

    memset(&out, 0, sizeof(out));
    out.max = 1000;
    t = mime_text_new(NULL, "windows-1251", true);
    const char *html = "<P>\xcf\xf0\xe8&nbsp;&lt;&#x41;&#0;&bogus;&amp<br>x<style>y</style>z&#33";
    assert_int_equal(mime_text_feed(t, html, strlen(html), &out), 0);
    assert_int_equal(mime_text_finish(t, &out), 0);
    mime_text_free(&t);
    assert_string_equal(out.data, "\xd0\x9f\xd1\x80\xd0\xb8 <A\xef\xbf\xbd&bogus;&amp\nx z&#33");
    free(out.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_text),
        cmocka_unit_test(test_alternative),
        cmocka_unit_test(test_mixed_nested),
        cmocka_unit_test(test_section_single_part_message),
        cmocka_unit_test(test_missing_close_boundary),
        cmocka_unit_test(test_multipart_without_boundary),
        cmocka_unit_test(test_broken_headers),
        cmocka_unit_test(test_8bit_headers),
        cmocka_unit_test(test_digest_and_encoded_message),
        cmocka_unit_test(test_boundary_edge_cases),
        cmocka_unit_test(test_search_text),
        cmocka_unit_test(test_stateful_charset_any_split),
        cmocka_unit_test(test_limit_parts),
        cmocka_unit_test(test_limit_depth),
        cmocka_unit_test(test_limit_header_and_meta),
        cmocka_unit_test(test_large_message_bounded),
        cmocka_unit_test(test_text_decoder_direct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
