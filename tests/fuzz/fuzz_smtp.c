/* libFuzzer harness for proto/smtp.
 *
 * The first byte chooses where the DATA decoder's input is split in two; the rest is the input
 * for everything: the command parser, the MAIL / RCPT / BDAT argument parsers (on the command's
 * argument and on the raw bytes), xtext decoding and the DATA decoder; small inputs also go
 * through the DSN builder as the diagnostic text and the original message.
 *
 * Checks: results within their bounds; a normalised address parses again to itself; xtext
 * decoding survives an encode/decode round trip; the decoder consumes at most what it is given,
 * writes at most twice what it consumed, never writes a bare CR or LF, ends only right after
 * CRLF "." CRLF (or a first line "."), and gives the same result split or whole; a DSN parses
 * back as multipart/report with its parts, and no line outside the original is over 998. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/mime/mime.h"
#include "proto/smtp/smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

static bool has_8bit(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return true;
    return false;
}

static void check_reply(const struct smtp_reply *e)
{
    check((e->code == 501 || e->code == 555) && e->text && strncmp(e->text, "5.", 2) == 0);
}

static void check_mail(const char *arg)
{
    struct smtp_mail m, again;
    struct smtp_reply err;
    if (smtp_mail_parse(arg, &m, &err) != 0) {
        check_reply(&err);
        return;
    }
    check(err.code == 0);
    check(strlen(m.address) <= SMTP_ADDRESS_MAX && strlen(m.envid) <= SMTP_ENVID_MAX);
    check(strlen(m.auth) <= SMTP_ADDRESS_MAX && m.size >= -1);
    check(m.utf8_address == has_8bit(m.address));
    /* the normalised form is a fixed point */
    char path[SMTP_ADDRESS_MAX + 3];
    snprintf(path, sizeof(path), "<%s>", m.address);
    if (strlen(path) <= SMTP_PATH_MAX) {
        check(smtp_mail_parse(path, &again, &err) == 0);
        check(strcmp(again.address, m.address) == 0);
    }
}

static void check_rcpt(const char *arg)
{
    struct smtp_rcpt r, again;
    struct smtp_reply err;
    if (smtp_rcpt_parse(arg, &r, &err) != 0) {
        check_reply(&err);
        return;
    }
    check(r.address[0] != '\0' && strlen(r.address) <= SMTP_ADDRESS_MAX);
    check(strlen(r.orcpt) <= SMTP_ORCPT_MAX && r.utf8_address == has_8bit(r.address));
    check(r.notify == 0 || r.notify == SMTP_NOTIFY_NEVER || !(r.notify & SMTP_NOTIFY_NEVER));
    char path[SMTP_ADDRESS_MAX + 3];
    snprintf(path, sizeof(path), "<%s>", r.address);
    if (strlen(path) <= SMTP_PATH_MAX) {
        check(smtp_rcpt_parse(path, &again, &err) == 0);
        check(strcmp(again.address, r.address) == 0);
    }
}

static void check_xtext(const char *in, size_t len)
{
    char dec[256], enc[800], dec2[256];
    if (smtp_xtext_decode(in, len, dec, sizeof(dec)) != 0) {
        check(dec[0] == '\0');
        return;
    }
    check(strlen(dec) <= len);
    check(smtp_xtext_encode(dec, enc, sizeof(enc)) == 0);
    check(smtp_xtext_decode(enc, strlen(enc), dec2, sizeof(dec2)) == 0);
    check(strcmp(dec, dec2) == 0);
}

struct sink {
    char *d;
    size_t len, cap;
};

static int sink_out(void *ctx, const char *p, size_t n)
{
    struct sink *s = ctx;
    check(n > 0 && s->len + n <= s->cap);
    memcpy(s->d + s->len, p, n);
    s->len += n;
    return 0;
}

/* Runs the decoder over in[0..len), split at cut; returns the bytes consumed. */
static size_t decode(const char *in, size_t len, size_t cut, struct sink *out, struct smtp_data *d)
{
    smtp_data_init(d);
    out->len = 0;
    long r = smtp_data_feed(d, in, cut, sink_out, out);
    check(r >= 0 && (size_t)r <= cut);
    check(d->done || (size_t)r == cut);
    size_t used = (size_t)r;
    check(d->bytes == out->len && out->len <= 2 * used);
    if (!d->done) {
        r = smtp_data_feed(d, in + cut, len - cut, sink_out, out);
        check(r >= 0 && (size_t)r <= len - cut);
        check(d->done || (size_t)r == len - cut);
        used += (size_t)r;
    }
    check(used <= len && d->bytes == out->len && out->len <= 2 * used);
    return used;
}

static void check_data(const char *in, size_t len, size_t cut)
{
    struct sink a = {.cap = 2 * len + 1}, b = {.cap = 2 * len + 1};
    a.d = malloc(a.cap);
    b.d = malloc(b.cap);
    check(a.d && b.d);
    struct smtp_data da, db;
    size_t ua = decode(in, len, cut, &a, &da);
    size_t ub = decode(in, len, len, &b, &db);
    check(ua == ub && da.done == db.done && da.bare_newlines == db.bare_newlines);
    check(a.len == b.len && memcmp(a.d, b.d, a.len) == 0);
    if (da.done)
        check((ua == 3 && memcmp(in, ".\r\n", 3) == 0) ||
              (ua >= 5 && memcmp(in + ua - 5, "\r\n.\r\n", 5) == 0));
    for (size_t i = 0; i < a.len; i++) {
        if (a.d[i] == '\n')
            check(i > 0 && a.d[i - 1] == '\r');
        if (a.d[i] == '\r')
            check(i + 1 < a.len && a.d[i + 1] == '\n');
    }
    free(a.d);
    free(b.d);
}

static void check_dsn(const char *text, const char *raw, size_t len, bool full)
{
    const struct smtp_dsn_rcpt rcpt = {.final_recipient = text,
                                       .original_recipient = text,
                                       .action = full ? SMTP_DSN_FAILED : SMTP_DSN_DELAYED,
                                       .remote_mta = text,
                                       .diagnostic = text,
                                       .last_attempt = 1700000000,
                                       .will_retry_until = 1700500000};
    const struct smtp_dsn d = {.reporting_mta = "mx.example.org",
                               .from = "MAILER-DAEMON@mx.example.org",
                               .to = text,
                               .envid = text,
                               .arrival = 1700000000,
                               .now = 1700000000,
                               .rcpts = &rcpt,
                               .nrcpts = 1,
                               .original = raw,
                               .original_len = len,
                               .ret_full = full};
    char *msg;
    size_t mlen;
    if (smtp_dsn_build(&d, &msg, &mlen) != 0) {
        check(text[0] == '\0'); /* only an empty recipient or sender is refused */
        return;
    }
    struct mime_parser *p = mime_parser_new(NULL);
    check(p != NULL && mime_parser_feed(p, msg, mlen) == 0);
    struct mime_message *m = mime_parser_finish(&p);
    check(m != NULL);
    check(strcmp(m->root.type, "multipart") == 0 && strcmp(m->root.subtype, "report") == 0);
    check(m->root.nchildren == 3);
    check(strcmp(m->root.children[0].type, "text") == 0);
    check(strcmp(m->root.children[1].type, "message") == 0);
    check(strcmp(m->root.children[2].subtype, full ? "rfc822" : "rfc822-headers") == 0);
    size_t col = 0;
    for (uint64_t i = 0; i < m->root.children[2].body_offset; i++) {
        col = msg[i] == '\n' ? 0 : col + (msg[i] != '\r');
        check(col <= 998);
    }
    mime_message_free(&m);
    free(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    size_t cut = (size_t)data[0] * (len + 1) / 256;

    /* a NUL-terminated copy, as the command reader hands lines over */
    char *line = malloc(len + 1);
    check(line != NULL);
    memcpy(line, in, len);
    line[len] = '\0';

    struct smtp_command c;
    if (smtp_command_parse(line, len, &c) == 0) {
        check(c.verb != SMTP_UNKNOWN && strcmp(smtp_verb_name(c.verb), "UNKNOWN") != 0);
        check(c.arg[0] == '\0' || (c.arg > line && c.arg < line + len));
        if (c.verb == SMTP_MAIL)
            check_mail(c.arg);
        if (c.verb == SMTP_RCPT)
            check_rcpt(c.arg);
        if (c.verb == SMTP_BDAT) {
            uint64_t n;
            bool last;
            (void)smtp_bdat_parse(c.arg, &n, &last);
        }
    } else {
        check(c.verb == SMTP_UNKNOWN && c.arg[0] == '\0');
    }
    check_mail(line);
    check_rcpt(line);
    uint64_t n;
    bool last;
    if (smtp_bdat_parse(line, &n, &last) != 0)
        check(n == 0 && !last);
    check_xtext(in, len);
    check_data(in, len, cut);
    if (len < 2048)
        check_dsn(line, in, len, data[0] & 1);
    free(line);
    return 0;
}
