/* layer: proto */
/* Unit tests for proto/smtp: command lines, MAIL/RCPT paths and parameters (valid forms, every
 * kind of refusal with its reply code, the length limits at and past their bounds), BDAT,
 * xtext, the DATA decoder (fed whole, at every split point, in three pieces and byte by byte,
 * with the SMTP smuggling near-misses) and DSNs, which are parsed back with the project's MIME
 * parser to check their structure and fields. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/mime/header.h"
#include "proto/mime/mime.h"
#include "proto/smtp/smtp.h"

/* ---- helpers -------------------------------------------------------------------------------- */

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static struct smtp_mail mail_ok(const char *arg)
{
    struct smtp_mail m;
    struct smtp_reply err;
    if (smtp_mail_parse(arg, &m, &err) != 0)
        fail_msg("MAIL %s refused: %d %s", arg, err.code, err.text);
    assert_int_equal(err.code, 0);
    return m;
}

/* MAIL arg is refused with code and a text starting with want. */
static void mail_bad(const char *arg, int code, const char *want)
{
    struct smtp_mail m;
    struct smtp_reply err;
    if (smtp_mail_parse(arg, &m, &err) != -1)
        fail_msg("MAIL %s accepted", arg);
    if (err.code != code || strncmp(err.text, want, strlen(want)) != 0)
        fail_msg("MAIL %s: got %d %s, want %d %s", arg, err.code, err.text, code, want);
}

static struct smtp_rcpt rcpt_ok(const char *arg)
{
    struct smtp_rcpt r;
    struct smtp_reply err;
    if (smtp_rcpt_parse(arg, &r, &err) != 0)
        fail_msg("RCPT %s refused: %d %s", arg, err.code, err.text);
    return r;
}

static void rcpt_bad(const char *arg, int code, const char *want)
{
    struct smtp_rcpt r;
    struct smtp_reply err;
    if (smtp_rcpt_parse(arg, &r, &err) != -1)
        fail_msg("RCPT %s accepted", arg);
    if (err.code != code || strncmp(err.text, want, strlen(want)) != 0)
        fail_msg("RCPT %s: got %d %s, want %d %s", arg, err.code, err.text, code, want);
}

/* ---- command lines -------------------------------------------------------------------------- */

static void cmd(const char *line, enum smtp_verb verb, const char *arg)
{
    struct smtp_command c;
    if (smtp_command_parse(line, strlen(line), &c) != 0)
        fail_msg("\"%s\" refused", line);
    assert_int_equal(c.verb, verb);
    assert_string_equal(c.arg, arg);
}

static void test_command_verbs(void **state)
{
    cmd("EHLO client.example", SMTP_EHLO, "client.example");
    cmd("helo client.example", SMTP_HELO, "client.example");
    cmd("EHLO   spaced", SMTP_EHLO, "spaced");
    cmd("DATA", SMTP_DATA, "");
    cmd("data ", SMTP_DATA, "");
    cmd("BDAT 100 LAST", SMTP_BDAT, "100 LAST");
    cmd("rset", SMTP_RSET, "");
    cmd("NOOP anything", SMTP_NOOP, "anything");
    cmd("QuIt", SMTP_QUIT, "");
    cmd("VRFY user", SMTP_VRFY, "user");
    cmd("EXPN list", SMTP_EXPN, "list");
    cmd("HELP", SMTP_HELP, "");
    cmd("StartTLS", SMTP_STARTTLS, "");
    cmd("AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=", SMTP_AUTH, "PLAIN dGVzdAB0ZXN0AHRlc3Q=");

    /* MAIL FROM: / RCPT TO: are consumed, and one space after the colon is forgiven */
    cmd("MAIL FROM:<a@b.example>", SMTP_MAIL, "<a@b.example>");
    cmd("mail from:<a@b.example> SIZE=10", SMTP_MAIL, "<a@b.example> SIZE=10");
    cmd("MAIL FROM: <a@b.example>", SMTP_MAIL, "<a@b.example>");
    cmd("MAIL FROM:  <a@b.example>", SMTP_MAIL, " <a@b.example>");
    cmd("RCPT TO:<x@y.example>", SMTP_RCPT, "<x@y.example>");
    cmd("Rcpt To: <x@y.example>", SMTP_RCPT, "<x@y.example>");
    /* without the keyword the argument stays whole, and the path parser refuses it */
    cmd("MAIL TO:<a@b.example>", SMTP_MAIL, "TO:<a@b.example>");
    mail_bad("TO:<a@b.example>", 501, "5.1.7");
    mail_bad(" <a@b.example>", 501, "5.1.7");

    assert_string_equal(smtp_verb_name(SMTP_STARTTLS), "STARTTLS");
    assert_string_equal(smtp_verb_name(SMTP_MAIL), "MAIL");
    assert_string_equal(smtp_verb_name(SMTP_UNKNOWN), "UNKNOWN");
}

static void test_command_refused(void **state)
{
    struct smtp_command c;
    assert_int_equal(smtp_command_parse("", 0, &c), -1);
    assert_int_equal(c.verb, SMTP_UNKNOWN);
    assert_int_equal(smtp_command_parse("MAILX FROM:<a@b>", 16, &c), -1);
    assert_int_equal(c.verb, SMTP_UNKNOWN);
    assert_int_equal(smtp_command_parse("FOO", 3, &c), -1);
    assert_int_equal(smtp_command_parse(" QUIT", 5, &c), -1);
    assert_int_equal(smtp_command_parse("QUIT\tnow", 8, &c), -1);
    assert_int_equal(smtp_command_parse("QUI", 3, &c), -1);
    assert_int_equal(smtp_command_parse("NOOP a\0b", 8, &c), -1);
    assert_int_equal(c.verb, SMTP_UNKNOWN);
    assert_string_equal(c.arg, "");
    /* only len bytes count */
    assert_int_equal(smtp_command_parse("QUIT", 3, &c), -1);
    assert_int_equal(smtp_command_parse("QUITX", 4, &c), 0);
    assert_int_equal(c.verb, SMTP_QUIT);
    assert_string_equal(c.arg, "");
}

/* ---- MAIL ----------------------------------------------------------------------------------- */

static void test_mail_addresses(void **state)
{
    struct smtp_mail m = mail_ok("<alice@example.org>");
    assert_string_equal(m.address, "alice@example.org");
    assert_false(m.utf8_address);
    assert_int_equal(m.size, -1);
    assert_int_equal(m.body, SMTP_BODY_NONE);
    assert_false(m.smtputf8);
    assert_int_equal(m.ret, SMTP_RET_NONE);
    assert_string_equal(m.envid, "");
    assert_string_equal(m.auth, "");

    m = mail_ok("<>");
    assert_string_equal(m.address, "");

    /* atext specials, several atoms, the domain kept as given */
    m = mail_ok("<first.last+tag!#$%&'*/=?^_`{|}~-@Sub.Example.ORG>");
    assert_string_equal(m.address, "first.last+tag!#$%&'*/=?^_`{|}~-@Sub.Example.ORG");
    m = mail_ok("<a@localhost>");
    assert_string_equal(m.address, "a@localhost");
    m = mail_ok("<a@xn--bcher-kva.example>");
    assert_string_equal(m.address, "a@xn--bcher-kva.example");
    m = mail_ok("<a@1-2.3com>");
    assert_string_equal(m.address, "a@1-2.3com");

    /* source routes are dropped */
    m = mail_ok("<@relay.example,@other.example:user@c.example>");
    assert_string_equal(m.address, "user@c.example");
    m = mail_ok("<@relay.example:user@c.example>");
    assert_string_equal(m.address, "user@c.example");

    /* quoted local parts: unquoted when they need no quotes, minimal escapes otherwise */
    m = mail_ok("<\"alice\"@example.org>");
    assert_string_equal(m.address, "alice@example.org");
    m = mail_ok("<\"a.b\"@example.org>");
    assert_string_equal(m.address, "a.b@example.org");
    m = mail_ok("<\"\\a\\l\"@example.org>");
    assert_string_equal(m.address, "al@example.org");
    m = mail_ok("<\"john doe\"@example.org>");
    assert_string_equal(m.address, "\"john doe\"@example.org");
    m = mail_ok("<\"a..b\"@example.org>");
    assert_string_equal(m.address, "\"a..b\"@example.org");
    m = mail_ok("<\"a\\\"b\\\\c\"@example.org>");
    assert_string_equal(m.address, "\"a\\\"b\\\\c\"@example.org");
    m = mail_ok("<\"a@b\"@example.org>");
    assert_string_equal(m.address, "\"a@b\"@example.org");
    m = mail_ok("<\"\"@example.org>");
    assert_string_equal(m.address, "\"\"@example.org");

    /* address literals */
    m = mail_ok("<postmaster@[192.0.2.1]>");
    assert_string_equal(m.address, "postmaster@[192.0.2.1]");
    m = mail_ok("<a@[255.255.255.255]>");
    assert_string_equal(m.address, "a@[255.255.255.255]");
    m = mail_ok("<a@[IPv6:2001:db8::1]>");
    assert_string_equal(m.address, "a@[IPv6:2001:db8::1]");
    m = mail_ok("<a@[ipv6:::ffff:192.0.2.1]>");
    assert_string_equal(m.address, "a@[ipv6:::ffff:192.0.2.1]");

    /* RFC 6531: UTF-8 in local part and domain */
    m = mail_ok("<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a>");
    assert_string_equal(
        m.address, "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a");
    assert_true(m.utf8_address);
    m = mail_ok("<j\xc3\xb6rg@example.org>");
    assert_true(m.utf8_address);
    m = mail_ok("<\"j\xc3\xb6rg x\"@example.org>");
    assert_string_equal(m.address, "\"j\xc3\xb6rg x\"@example.org");
    assert_true(m.utf8_address);
    m = mail_ok("<a@b\xc3\xbc\x63her.example>");
    assert_true(m.utf8_address);
}

static void test_mail_bad_addresses(void **state)
{
    static const char *const bad[] = {
        "a@b.example",                /* no brackets */
        "<a@b.example",               /* unterminated */
        "<a@b.example",               /* unterminated */
        "a@b.example>",               /* no opening bracket */
        "<a b@c.example>",            /* space outside quotes */
        "<a@b c.example>",            /* space in the domain */
        "<a..b@c.example>",           /* empty atom */
        "<.a@c.example>",             /* leading dot */
        "<a.@c.example>",             /* trailing dot */
        "<a@-b.example>",             /* label starts with '-' */
        "<a@b-.example>",             /* label ends with '-' */
        "<a@b..example>",             /* empty label */
        "<a@b.example.>",             /* trailing dot */
        "<a@.b.example>",             /* leading dot */
        "<a@>",                       /* no domain */
        "<@b.example>",               /* route without a mailbox */
        "<a>",                        /* no domain */
        "<postmaster>",               /* only RCPT may name postmaster without a domain */
        "<a@b_c.example>",            /* '_' in a host name */
        "<a@b.example:25>",           /* port */
        "<a(comment)@b.example>",     /* comments are not SMTP */
        "<a\x01@b.example>",          /* control character */
        "<a\t@b.example>",            /* tab */
        "<a\x7f@b.example>",          /* DEL */
        "<\"a\x01\"@b.example>",      /* control character in quotes */
        "<\"a\\\x01\"@b.example>",    /* quoted control character */
        "<\"ab@b.example>",           /* unterminated quote */
        "<\"a\"b@c.example>",         /* quote then atom */
        "<a\"b\"@c.example>",         /* atom then quote */
        "<\xff@b.example>",           /* not UTF-8 */
        "<\xc3@b.example>",           /* truncated UTF-8 */
        "<\xc0\xaf@b.example>",       /* overlong */
        "<\xed\xa0\x80@b.example>",   /* surrogate */
        "<\xc2\x85@b.example>",       /* C1 control character (NEL) */
        "<a@b.\xff>",                 /* not UTF-8 in the domain */
        "<a@[256.1.1.1]>",            /* literal out of range */
        "<a@[1.2.3]>",                /* three parts */
        "<a@[1.2.3.4.5]>",            /* five parts */
        "<a@[1.2.3.0004]>",           /* four digits */
        "<a@[1..2.3]>",               /* empty part */
        "<a@[IPv6:zz::1]>",           /* not IPv6 */
        "<a@[IPv6:]>",                /* empty */
        "<a@[IPv6:1.2.3.4]>",         /* IPv4 as IPv6 */
        "<a@[IPv6:fe80::1%eth0]>",    /* zone */
        "<a@[x400:foo]>",             /* unregistered tag */
        "<a@[]>",                     /* empty literal */
        "<a@[1.2.3.4>",               /* unterminated literal */
        "<@a.example,b@c.example>",   /* route not ended by ':' */
        "<@a.example,@:b@c.example>", /* empty route domain */
        "<@[1.2.3.4]:b@c.example>",   /* literal in a route */
        "<<a@b.example>>",            /* double brackets */
        "",                           /* nothing */
        "<",                          /* nothing */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        mail_bad(bad[i], 501, "5.1.7 ");
}

static void test_mail_limits(void **state)
{
    char buf[600];
    char *s64 = repeat('l', 64), *s65 = repeat('l', 65);
    char *l63 = repeat('d', 63), *l64 = repeat('d', 64);

    /* RFC 5321 §4.5.3.1.1: local part 64 octets */
    snprintf(buf, sizeof(buf), "<%s@example.org>", s64);
    struct smtp_mail m = mail_ok(buf);
    assert_int_equal(strlen(m.address), 64 + 12);
    snprintf(buf, sizeof(buf), "<%s@example.org>", s65);
    mail_bad(buf, 501, "5.1.7");
    /* the bound applies to the quoted form as written */
    snprintf(buf, sizeof(buf), "<\"%.62s\"@example.org>", s64);
    mail_ok(buf);
    snprintf(buf, sizeof(buf), "<\"%.63s\"@example.org>", s64);
    mail_bad(buf, 501, "5.1.7");

    /* RFC 1035: labels of 63 */
    snprintf(buf, sizeof(buf), "<a@%s.example>", l63);
    mail_ok(buf);
    snprintf(buf, sizeof(buf), "<a@%s.example>", l64);
    mail_bad(buf, 501, "5.1.7");

    /* RFC 5321 §4.5.3.1.3: the path is at most 256 octets with its brackets */
    char dom[300];
    snprintf(dom, sizeof(dom), "%s.%s.%s.%s", l63, l63, l63, l63); /* 255 */
    dom[252] = '\0';                                               /* "<a@" + dom + ">" = 256 */
    assert_int_not_equal(dom[251], '.');
    snprintf(buf, sizeof(buf), "<a@%s>", dom);
    assert_int_equal(strlen(buf), 256);
    m = mail_ok(buf);
    assert_int_equal(strlen(m.address), 254);
    snprintf(buf, sizeof(buf), "<ab@%s>", dom);
    assert_int_equal(strlen(buf), 257);
    mail_bad(buf, 501, "5.1.7");
    /* a source route counts toward the path too */
    snprintf(buf, sizeof(buf), "<@r.example:a@%s>", dom);
    mail_bad(buf, 501, "5.1.7");

    free(s64);
    free(s65);
    free(l63);
    free(l64);
}

static void test_mail_params(void **state)
{
    struct smtp_mail m = mail_ok("<a@b.example> SIZE=1048576 BODY=8BITMIME SMTPUTF8 RET=HDRS "
                                 "ENVID=QQ314159+2Bx+3D AUTH=joe@b.example");
    assert_int_equal(m.size, 1048576);
    assert_int_equal(m.body, SMTP_BODY_8BITMIME);
    assert_true(m.smtputf8);
    assert_int_equal(m.ret, SMTP_RET_HDRS);
    assert_string_equal(m.envid, "QQ314159+x=");
    assert_string_equal(m.auth, "joe@b.example");

    /* keywords and values without regard to case */
    m = mail_ok("<> size=0 body=7bit ret=full smtputf8 auth=<>");
    assert_string_equal(m.address, "");
    assert_int_equal(m.size, 0);
    assert_int_equal(m.body, SMTP_BODY_7BIT);
    assert_int_equal(m.ret, SMTP_RET_FULL);
    assert_true(m.smtputf8);
    assert_string_equal(m.auth, "<>");
    m = mail_ok("<a@b.example> BODY=BinaryMIME");
    assert_int_equal(m.body, SMTP_BODY_BINARYMIME);
    m = mail_ok("<a@b.example> AUTH=+3Ce+3E");
    assert_string_equal(m.auth, "<e>");
    m = mail_ok("<a@b.example> ENVID=a+20b");
    assert_string_equal(m.envid, "a b");

    /* SIZE: 1*20DIGIT, within long long */
    m = mail_ok("<a@b.example> SIZE=9223372036854775807");
    assert_int_equal(m.size, 9223372036854775807LL);
    m = mail_ok("<a@b.example> SIZE=00000000000000000001");
    assert_int_equal(m.size, 1);
    mail_bad("<a@b.example> SIZE=9223372036854775808", 501, "5.5.4");
    mail_bad("<a@b.example> SIZE=99999999999999999999", 501, "5.5.4");
    mail_bad("<a@b.example> SIZE=000000000000000000001", 501, "5.5.4");
    mail_bad("<a@b.example> SIZE=-1", 501, "5.5.4");
    mail_bad("<a@b.example> SIZE=1k", 501, "5.5.4");
    mail_bad("<a@b.example> SIZE", 501, "5.5.4");
    mail_bad("<a@b.example> SIZE=", 501, "5.5.4");

    /* ENVID: xtext, 100 decoded characters at most, printable */
    char buf[400];
    char *s100 = repeat('e', 100);
    snprintf(buf, sizeof(buf), "<a@b.example> ENVID=%s", s100);
    m = mail_ok(buf);
    assert_string_equal(m.envid, s100);
    snprintf(buf, sizeof(buf), "<a@b.example> ENVID=%s+2B", s100 + 1);
    m = mail_ok(buf);
    assert_int_equal(strlen(m.envid), 100);
    snprintf(buf, sizeof(buf), "<a@b.example> ENVID=%se", s100);
    mail_bad(buf, 501, "5.5.4");
    free(s100);
    mail_bad("<a@b.example> ENVID=a+2b", 501, "5.5.4");      /* lower-case hex */
    mail_bad("<a@b.example> ENVID=a+2", 501, "5.5.4");       /* short */
    mail_bad("<a@b.example> ENVID=a+00", 501, "5.5.4");      /* NUL */
    mail_bad("<a@b.example> ENVID=a+0D+0A", 501, "5.5.4");   /* CRLF: would reach the DSN */
    mail_bad("<a@b.example> ENVID=a\xc3\xa9", 501, "5.5.4"); /* not xtext */
    mail_bad("<a@b.example> AUTH=a+0Ab", 501, "5.5.4");

    /* other values */
    mail_bad("<a@b.example> BODY=9BIT", 501, "5.5.4");
    mail_bad("<a@b.example> BODY", 501, "5.5.4");
    mail_bad("<a@b.example> SMTPUTF8=YES", 501, "5.5.4");
    mail_bad("<a@b.example> RET=ALL", 501, "5.5.4");
    mail_bad("<a@b.example> RET", 501, "5.5.4");

    /* repeated = 501, unknown = 555 */
    mail_bad("<a@b.example> SIZE=1 SIZE=2", 501, "5.5.4 Duplicate");
    mail_bad("<a@b.example> SIZE=1 size=1", 501, "5.5.4 Duplicate");
    mail_bad("<a@b.example> SMTPUTF8 SMTPUTF8", 501, "5.5.4 Duplicate");
    mail_bad("<a@b.example> XFOO=bar", 555, "5.5.4");
    mail_bad("<a@b.example> XFOO", 555, "5.5.4");
    mail_bad("<a@b.example> NOTIFY=NEVER", 555, "5.5.4");
    mail_bad("<a@b.example> ORCPT=rfc822;a@b", 555, "5.5.4");

    /* parameter syntax: exactly one space before each, esmtp-keyword and esmtp-value */
    mail_bad("<a@b.example>SIZE=1", 501, "5.5.4");
    mail_bad("<a@b.example>  SIZE=1", 501, "5.5.4");
    mail_bad("<a@b.example> ", 501, "5.5.4");
    mail_bad("<a@b.example> SIZE=1 ", 501, "5.5.4");
    mail_bad("<a@b.example> =1", 501, "5.5.4");
    mail_bad("<a@b.example> -X=1", 501, "5.5.4");
    mail_bad("<a@b.example> X_Y=1", 501, "5.5.4");
    mail_bad("<a@b.example> SIZE=1=2", 501, "5.5.4");
    mail_bad("<a@b.example> ENVID=a\x01", 501, "5.5.4");
    mail_bad("<a@b.example> X=a\xff", 501, "5.5.4");
    mail_bad("<a@b.example>junk", 501, "5.5.4");
    /* the address is checked first */
    mail_bad("<a@@b.example> SIZE=1", 501, "5.1.7");
}

/* ---- RCPT ----------------------------------------------------------------------------------- */

static void test_rcpt(void **state)
{
    struct smtp_rcpt r = rcpt_ok("<bob@example.net>");
    assert_string_equal(r.address, "bob@example.net");
    assert_false(r.utf8_address);
    assert_int_equal(r.notify, 0);
    assert_string_equal(r.orcpt, "");

    /* RFC 5321 §4.1.1.3: <Postmaster> without a domain */
    r = rcpt_ok("<Postmaster>");
    assert_string_equal(r.address, "postmaster");
    r = rcpt_ok("<postMASTER>");
    assert_string_equal(r.address, "postmaster");
    r = rcpt_ok("<Postmaster@example.net>");
    assert_string_equal(r.address, "Postmaster@example.net");
    rcpt_bad("<@r.example:Postmaster>", 501, "5.1.3");
    rcpt_bad("<postmasterx>", 501, "5.1.3");
    rcpt_bad("<>", 501, "5.1.3 ");
    rcpt_bad("bob@example.net", 501, "5.1.3 ");
    rcpt_bad("<bob@example.net", 501, "5.1.3 ");
    rcpt_bad("<b ob@example.net>", 501, "5.1.3 ");

    r = rcpt_ok("<@r.example:bob@example.net>");
    assert_string_equal(r.address, "bob@example.net");
    r = rcpt_ok("<\xd0\xb8\xd0\xb2\xd0\xb0\xd0\xbd@example.net>");
    assert_true(r.utf8_address);

    /* NOTIFY (RFC 3461 §4.1) */
    r = rcpt_ok("<bob@example.net> NOTIFY=NEVER");
    assert_int_equal(r.notify, SMTP_NOTIFY_NEVER);
    r = rcpt_ok("<bob@example.net> NOTIFY=SUCCESS,FAILURE");
    assert_int_equal(r.notify, SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE);
    r = rcpt_ok("<bob@example.net> notify=delay,Success,FAILURE");
    assert_int_equal(r.notify, SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY);
    r = rcpt_ok("<bob@example.net> NOTIFY=DELAY");
    assert_int_equal(r.notify, SMTP_NOTIFY_DELAY);
    rcpt_bad("<bob@example.net> NOTIFY=NEVER,SUCCESS", 501, "5.5.4");
    rcpt_bad("<bob@example.net> NOTIFY=FAILURE,NEVER", 501, "5.5.4");
    rcpt_bad("<bob@example.net> NOTIFY=SUCCESS,SUCCESS", 501, "5.5.4");
    rcpt_bad("<bob@example.net> NOTIFY=SUCCESS,", 501, "5.5.4");
    rcpt_bad("<bob@example.net> NOTIFY=,SUCCESS", 501, "5.5.4");
    rcpt_bad("<bob@example.net> NOTIFY=SUCCESS,,DELAY", 501, "5.5.4");
    rcpt_bad("<bob@example.net> NOTIFY=ALWAYS", 501, "5.5.4");
    rcpt_bad("<bob@example.net> NOTIFY", 501, "5.5.4");
    rcpt_bad("<bob@example.net> NOTIFY=DELAY NOTIFY=DELAY", 501, "5.5.4 Duplicate");

    /* ORCPT (RFC 3461 §4.2): the type kept, the xtext decoded */
    r = rcpt_ok("<bob@example.net> ORCPT=rfc822;bob@example.net");
    assert_string_equal(r.orcpt, "rfc822;bob@example.net");
    r = rcpt_ok("<bob@example.net> ORCPT=rfc822;b+2Bo+3Db@example.net NOTIFY=FAILURE");
    assert_string_equal(r.orcpt, "rfc822;b+o=b@example.net");
    assert_int_equal(r.notify, SMTP_NOTIFY_FAILURE);
    r = rcpt_ok("<bob@example.net> ORCPT=RFC822;x+20y");
    assert_string_equal(r.orcpt, "RFC822;x y");
    /* RFC 6533 §3: the utf-8 type carries UTF-8 as is */
    r = rcpt_ok("<bob@example.net> ORCPT=utf-8;\xd0\xb8@example.net");
    assert_string_equal(r.orcpt, "utf-8;\xd0\xb8@example.net");
    rcpt_bad("<bob@example.net> ORCPT=rfc822;\xd0\xb8@example.net", 501, "5.5.4");
    rcpt_bad("<bob@example.net> ORCPT=utf-8;\xd0@example.net", 501, "5.5.4");
    rcpt_bad("<bob@example.net> ORCPT=rfc822", 501, "5.5.4");
    rcpt_bad("<bob@example.net> ORCPT=rfc822;", 501, "5.5.4");
    rcpt_bad("<bob@example.net> ORCPT=;bob@example.net", 501, "5.5.4");
    rcpt_bad("<bob@example.net> ORCPT=rfc(822);bob@example.net", 501, "5.5.4");
    rcpt_bad("<bob@example.net> ORCPT=rfc822;a+0Ab", 501, "5.5.4");
    rcpt_bad("<bob@example.net> ORCPT=rfc822;a ORCPT=rfc822;b", 501, "5.5.4 Duplicate");
    char buf[1200];
    char *x = repeat('x', 493);
    snprintf(buf, sizeof(buf), "<bob@example.net> ORCPT=rfc822;%s", x); /* 7 + 493 = 500 */
    r = rcpt_ok(buf);
    assert_int_equal(strlen(r.orcpt), SMTP_ORCPT_MAX);
    snprintf(buf, sizeof(buf), "<bob@example.net> ORCPT=rfc822;%sx", x);
    rcpt_bad(buf, 501, "5.5.4");
    free(x);

    /* MAIL's parameters are not RCPT's */
    rcpt_bad("<bob@example.net> SIZE=10", 555, "5.5.4");
    rcpt_bad("<bob@example.net> RET=FULL", 555, "5.5.4");
    rcpt_bad("<bob@example.net> XFOO", 555, "5.5.4");
    rcpt_bad("<bob@example.net>  NOTIFY=NEVER", 501, "5.5.4");
}

/* ---- BDAT and xtext ------------------------------------------------------------------------- */

static void test_bdat(void **state)
{
    uint64_t n;
    bool last;
    assert_int_equal(smtp_bdat_parse("100", &n, &last), 0);
    assert_int_equal(n, 100);
    assert_false(last);
    assert_int_equal(smtp_bdat_parse("0 LAST", &n, &last), 0);
    assert_int_equal(n, 0);
    assert_true(last);
    assert_int_equal(smtp_bdat_parse("65536 last", &n, &last), 0);
    assert_int_equal(n, 65536);
    assert_true(last);
    assert_int_equal(smtp_bdat_parse("18446744073709551615", &n, &last), 0);
    assert_true(n == UINT64_MAX);

    static const char *const bad[] = {"",
                                      "LAST",
                                      "abc",
                                      "-1",
                                      "+1",
                                      " 100",
                                      "100 ",
                                      "100  LAST",
                                      "100 LASTX",
                                      "100 LAST ",
                                      "100 FIRST",
                                      "1e3",
                                      "18446744073709551616",
                                      "000000000000000000001"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (smtp_bdat_parse(bad[i], &n, &last) != -1)
            fail_msg("BDAT \"%s\" accepted", bad[i]);
        assert_int_equal(n, 0);
        assert_false(last);
    }
}

static void test_xtext(void **state)
{
    char out[64];
    const char *in = "a+2Bb+3Dc+20d";
    assert_int_equal(smtp_xtext_decode(in, strlen(in), out, sizeof(out)), 0);
    assert_string_equal(out, "a+b=c d");
    /* only len bytes are read */
    assert_int_equal(smtp_xtext_decode("abc+2B", 3, out, sizeof(out)), 0);
    assert_string_equal(out, "abc");
    assert_int_equal(smtp_xtext_decode("", 0, out, sizeof(out)), 0);
    assert_string_equal(out, "");

    static const char *const bad[] = {"+2b", "+2",  "+",    "a+G0",    "a b",
                                      "a=b", "+00", "\x7f", "\xc3\xa9"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        strcpy(out, "junk");
        if (smtp_xtext_decode(bad[i], strlen(bad[i]), out, sizeof(out)) != -1)
            fail_msg("xtext \"%s\" accepted", bad[i]);
        assert_string_equal(out, "");
    }
    /* exact fit and one short */
    assert_int_equal(smtp_xtext_decode("abc+41", 6, out, 5), 0);
    assert_string_equal(out, "abcA");
    assert_int_equal(smtp_xtext_decode("abc+41", 6, out, 4), -1);
    assert_int_equal(smtp_xtext_decode("a", 1, out, 0), -1);

    assert_int_equal(smtp_xtext_encode("a+b=c d\x01\xc3\xa9~!", out, sizeof(out)), 0);
    assert_string_equal(out, "a+2Bb+3Dc+20d+01+C3+A9~!");
    assert_int_equal(smtp_xtext_encode("ab+", out, 5), -1);
    assert_int_equal(smtp_xtext_encode("ab+", out, 6), 0);
    assert_string_equal(out, "ab+2B");
    assert_int_equal(smtp_xtext_encode("", out, 1), 0);
    assert_int_equal(smtp_xtext_encode("a", out, 1), -1);

    /* every byte but NUL survives a round trip */
    char all[256], enc[800], dec[256];
    for (int i = 1; i < 256; i++)
        all[i - 1] = (char)i;
    all[255] = '\0';
    assert_int_equal(smtp_xtext_encode(all, enc, sizeof(enc)), 0);
    for (const char *p = enc; *p; p++)
        assert_true(*p > 32 && *p < 127 && *p != '=');
    assert_int_equal(smtp_xtext_decode(enc, strlen(enc), dec, sizeof(dec)), 0);
    assert_string_equal(dec, all);
}

/* ---- DATA ----------------------------------------------------------------------------------- */

struct collect {
    char *d;
    size_t len, cap;
    size_t calls;
};

static int collect_out(void *ctx, const char *p, size_t n)
{
    struct collect *c = ctx;
    assert_true(n > 0);
    if (c->len + n + 1 > c->cap) {
        c->cap = (c->len + n + 1) * 2;
        c->d = realloc(c->d, c->cap);
        assert_non_null(c->d);
    }
    memcpy(c->d + c->len, p, n);
    c->len += n;
    c->d[c->len] = '\0';
    c->calls++;
    return 0;
}

struct data_case {
    const char *in;
    const char *out;
    long consumed; /* -1: all of in, not done */
    unsigned bare;
};

static const struct data_case data_cases[] = {
    {"Hello\r\n.\r\n", "Hello\r\n", 10, 0},
    {".\r\n", "", 3, 0}, /* empty message */
    {".\r\nQUIT\r\n", "", 3, 0},
    {"\r\n.\r\n", "\r\n", 5, 0},
    {"..x\r\n.\r\n", ".x\r\n", 8, 0},
    {"..\r\n.\r\n", ".\r\n", 7, 0},
    {"...\r\n.\r\n", "..\r\n", 8, 0},
    {".a\r\n.\r\n", ".a\r\n", 7, 0},
    {"a\r\n..\r\n.\r\nMAIL FROM:<x@y>\r\n", "a\r\n.\r\n", 10, 0},
    {"a\r\n\r\nb\r\n.\r\n", "a\r\n\r\nb\r\n", 11, 0},
    {"a\r\n. \r\n.\r\n", "a\r\n. \r\n", 10, 0},
    {"a\r\n.x.\r\n.\r\n", "a\r\n.x.\r\n", 11, 0},
    /* SMTP smuggling: none of these near-misses ends the data */
    {"a\n.\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", 10, 2},
    {"a\n.\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", 11, 1},
    {"a\r\n.\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", 11, 1},
    {"a\r.\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", 11, 1},
    {"a\r\n.\rb\r\n.\r\n", "a\r\n.\r\nb\r\n", 11, 1},
    {"a\r.\rb\r\n.\r\n", "a\r\n.\r\nb\r\n", 10, 2},
    {".\n", ".\r\n", -1, 1},
    {".\r", "", -1, 0}, /* held back: could still be the end */
    {".\rx", ".\r\nx", -1, 1},
    {"\n.\r\n", "\r\n.\r\n", -1, 1},
    {"\r.\r\n", "\r\n.\r\n", -1, 1},
    /* bare line endings become CRLF, and still start lines for dot-unstuffing */
    {"a\rb\r\n.\r\n", "a\r\nb\r\n", 8, 1},
    {"a\nb\r\n.\r\n", "a\r\nb\r\n", 8, 1},
    {"\r\r\n.\r\n", "\r\n\r\n", 6, 1},
    {"\n\n\n", "\r\n\r\n\r\n", -1, 3},
    {"\r\r\r", "\r\n\r\n\r\n", -1, 2}, /* the last CR may still get its LF */
    {"a\n..b\r\n.\r\n", "a\r\n.b\r\n", 10, 1},
    {"a\r..b\r\n.\r\n", "a\r\n.b\r\n", 10, 1},
    {"a\n.b\r\n.\r\n", "a\r\n.b\r\n", 9, 1},
    {"a\r\nb", "a\r\nb", -1, 0},
    {"no end\r\n", "no end\r\n", -1, 0},
    {"", "", -1, 0},
};

/* Runs one case fed in the pieces split at cuts[0..ncuts) (ascending). */
static void data_run(const struct data_case *c, size_t inlen, size_t outlen, const size_t *cuts,
                     size_t ncuts)
{
    struct smtp_data d;
    struct collect col = {0};
    smtp_data_init(&d);
    size_t pos = 0;
    long total = 0;
    for (size_t k = 0; k <= ncuts && !d.done; k++) {
        size_t end = k < ncuts ? cuts[k] : inlen;
        long r = smtp_data_feed(&d, c->in + pos, end - pos, collect_out, &col);
        assert_true(r >= 0 && (size_t)r <= end - pos);
        total += r;
        if (!d.done)
            assert_int_equal((size_t)r, end - pos);
        pos = end;
        /* RFC: never more than twice the input, counted over the stream */
        assert_true(d.bytes <= 2 * (uint64_t)total);
    }
    long want = c->consumed < 0 ? (long)inlen : c->consumed;
    if (total != want || col.len != outlen || (outlen && memcmp(col.d, c->out, outlen) != 0))
        fail_msg("case \"%s\" (%zu cuts): consumed %ld want %ld, output %zu bytes", c->in, ncuts,
                 total, want, col.len);
    assert_int_equal(d.done, c->consumed >= 0);
    assert_int_equal(d.bare_newlines, c->bare);
    assert_int_equal(d.bytes, outlen);
    if (d.done) /* after the end nothing more is taken */
        assert_int_equal(smtp_data_feed(&d, "x\r\n", 3, collect_out, &col), 0);
    free(col.d);
}

static void test_data_cases(void **state)
{
    for (size_t i = 0; i < sizeof(data_cases) / sizeof(data_cases[0]); i++) {
        const struct data_case *c = &data_cases[i];
        size_t inlen = strlen(c->in), outlen = strlen(c->out);
        data_run(c, inlen, outlen, NULL, 0);
        /* every split point, every pair of split points */
        for (size_t a = 0; a <= inlen; a++) {
            size_t cut[2] = {a, 0};
            data_run(c, inlen, outlen, cut, 1);
            for (size_t b = a; b <= inlen; b++) {
                cut[1] = b;
                data_run(c, inlen, outlen, cut, 2);
            }
        }
        /* one byte at a time */
        size_t cuts[64];
        assert_true(inlen < 64);
        for (size_t k = 0; k < inlen; k++)
            cuts[k] = k + 1;
        data_run(c, inlen, outlen, cuts, inlen ? inlen - 1 : 0);
    }
}

static int fail_out(void *ctx, const char *p, size_t n)
{
    int *rc = ctx;
    return *rc;
}

static void test_data_callback_and_large(void **state)
{
    struct smtp_data d;
    int rc = -5;
    smtp_data_init(&d);
    assert_int_equal(smtp_data_feed(&d, "abc\r\n", 5, fail_out, &rc), -5);
    assert_int_equal(d.bytes, 0);
    rc = 7; /* a positive value must not read as a count */
    smtp_data_init(&d);
    assert_int_equal(smtp_data_feed(&d, "abc\r\n", 5, fail_out, &rc), -1);

    /* NULL output discards but still counts */
    smtp_data_init(&d);
    assert_int_equal(smtp_data_feed(&d, "abc\n.\r\n.\r\nX", 11, NULL, NULL), 10);
    assert_true(d.done);
    assert_int_equal(d.bytes, 8);

    /* NUL bytes are data like any other */
    struct collect nul = {0};
    smtp_data_init(&d);
    assert_int_equal(smtp_data_feed(&d, "x\0y\r\n.\r\n", 8, collect_out, &nul), 8);
    assert_int_equal(nul.len, 5);
    assert_memory_equal(nul.d, "x\0y\r\n", 5);
    free(nul.d);

    /* a large message, longer than any internal buffer, with dot-stuffed lines, fed in
     * awkward pieces; the result is compared with what it must be */
    size_t nlines = 3000;
    struct collect in = {0}, want = {0}, got = {0};
    for (size_t i = 0; i < nlines; i++) {
        char line[200];
        int n;
        if (i % 7 == 0)
            n = snprintf(line, sizeof(line), "..stuffed line %zu\r\n", i);
        else
            n = snprintf(line, sizeof(line), "line %zu %0120zu\r\n", i, i);
        collect_out(&in, line, (size_t)n);
        collect_out(&want, line[0] == '.' ? line + 1 : line, (size_t)n - (line[0] == '.'));
    }
    collect_out(&in, ".\r\nRSET\r\n", 9);
    smtp_data_init(&d);
    size_t pos = 0, step = 1;
    long total = 0;
    while (pos < in.len && !d.done) {
        size_t n = in.len - pos < step ? in.len - pos : step;
        long r = smtp_data_feed(&d, in.d + pos, n, collect_out, &got);
        assert_true(r >= 0);
        total += r;
        pos += n;
        step = step * 3 % 10007 + 1;
    }
    assert_true(d.done);
    assert_int_equal(total, in.len - 6);
    assert_int_equal(got.len, want.len);
    assert_memory_equal(got.d, want.d, want.len);
    assert_int_equal(d.bytes, want.len);
    assert_int_equal(d.bare_newlines, 0);
    /* pieces are gathered: far fewer callbacks than lines */
    assert_true(got.calls < nlines / 4);
    free(in.d);
    free(want.d);
    free(got.d);

    /* the worst case: only bare line endings, exactly twice the input */
    char *lf = repeat('\n', 10000);
    struct collect o = {0};
    smtp_data_init(&d);
    assert_int_equal(smtp_data_feed(&d, lf, 10000, collect_out, &o), 10000);
    assert_int_equal(o.len, 20000);
    assert_int_equal(d.bare_newlines, 10000);
    free(lf);
    free(o.d);
}

/* ---- DSN ------------------------------------------------------------------------------------ */

/* The unfolded value of the first field called name in hdr[0..len), NULL when absent. */
static char *field_get(const char *hdr, size_t len, const char *name)
{
    size_t pos = 0;
    struct mime_header_field f;
    while (mime_header_next_field(hdr, len, &pos, &f) == 1)
        if (f.name_len == strlen(name) && strncasecmp(f.name, name, f.name_len) == 0)
            return mime_header_unfold(f.value, f.value_len);
    return NULL;
}

static void field_is(const char *hdr, size_t len, const char *name, const char *want)
{
    char *v = field_get(hdr, len, name);
    if (!want) {
        if (v)
            fail_msg("%s present: %s", name, v);
        return;
    }
    if (!v)
        fail_msg("%s absent", name);
    if (strcmp(v, want) != 0)
        fail_msg("%s: \"%s\", want \"%s\"", name, v, want);
    free(v);
}

/* Checks what every DSN must be: CRLF lines of at most 998 octets, the MIME structure
 * (multipart/report with report-type and boundary, then text/plain, a delivery-status part and
 * the optional third part), and the top-level fields. Returns the parse. */
/* Every line ends in CRLF and holds at most 998 octets (RFC 5322 §2.1.1). */
static void lines_ok(const char *msg, size_t len)
{
    size_t line = 0;
    for (size_t i = 0; i < len; i++) {
        if (msg[i] == '\n') {
            assert_true(i > 0 && msg[i - 1] == '\r');
            line = 0;
        } else {
            if (msg[i] == '\r')
                assert_true(i + 1 < len && msg[i + 1] == '\n');
            else
                line++;
            assert_true(line <= 998);
        }
    }
}

/* s with every run of whitespace (line breaks included) made one space: wrapped text. */
static char *squash(const char *s, size_t n)
{
    char *o = malloc(n + 1);
    assert_non_null(o);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool ws = s[i] == ' ' || s[i] == '\r' || s[i] == '\n' || s[i] == '\t';
        if (!ws)
            o[k++] = s[i];
        else if (k > 0 && o[k - 1] != ' ')
            o[k++] = ' ';
    }
    o[k] = '\0';
    return o;
}

static struct mime_message *dsn_check(const char *msg, size_t len, size_t nparts, const char *third)
{
    lines_ok(msg, len);
    struct mime_parser *p = mime_parser_new(NULL);
    assert_non_null(p);
    assert_int_equal(mime_parser_feed(p, msg, len), 0);
    struct mime_message *m = mime_parser_finish(&p);
    assert_non_null(m);
    const struct mime_part *r = &m->root;
    assert_string_equal(r->type, "multipart");
    assert_string_equal(r->subtype, "report");
    assert_string_equal(mime_part_param(r, "report-type"), "delivery-status");
    const char *boundary = mime_part_param(r, "boundary");
    assert_non_null(boundary);
    assert_true(strlen(boundary) >= 32 && strlen(boundary) <= 70);
    assert_int_equal(r->nchildren, nparts);
    assert_string_equal(r->children[0].type, "text");
    assert_string_equal(r->children[0].subtype, "plain");
    assert_string_equal(mime_part_param(&r->children[0], "charset"), "utf-8");
    assert_string_equal(r->children[1].type, "message");
    if (nparts == 3) {
        char t[64];
        snprintf(t, sizeof(t), "%s/%s", r->children[2].type, r->children[2].subtype);
        assert_string_equal(t, third);
    }
    field_is(msg, r->header_size, "MIME-Version", "1.0");
    field_is(msg, r->header_size, "Auto-Submitted", "auto-replied");
    field_is(msg, r->header_size, "From", "Mail Delivery System <MAILER-DAEMON@mx.example.org>");
    field_is(msg, r->header_size, "To", "<alice@example.org>");
    field_is(msg, r->header_size, "Date", "Tue, 14 Nov 2023 22:13:20 +0000");
    const char *id = r->envelope->message_id;
    assert_non_null(id);
    assert_true(id[0] == '<' && strlen(id) > 20);
    assert_string_equal(id + strlen(id) - strlen("@mx.example.org>"), "@mx.example.org>");
    return m;
}

/* The delivery-status part split into its field groups (blank-line separated). */
struct groups {
    const char *start[8];
    size_t len[8];
    size_t n;
};

static struct groups status_groups(const char *msg, const struct mime_part *part)
{
    struct groups g = {0};
    const char *b = msg + part->body_offset, *e = b + part->body_size;
    while (b < e) {
        const char *blank = NULL;
        for (const char *q = b; q + 4 <= e; q++)
            if (memcmp(q, "\r\n\r\n", 4) == 0) {
                blank = q + 2;
                break;
            }
        assert_true(g.n < 8);
        g.start[g.n] = b;
        g.len[g.n] = blank ? (size_t)(blank - b) : (size_t)(e - b);
        g.n++;
        b = blank ? blank + 2 : e;
    }
    return g;
}

static char *slice(const char *msg, uint64_t off, uint64_t len)
{
    char *s = malloc(len + 1);
    assert_non_null(s);
    memcpy(s, msg + off, len);
    s[len] = '\0';
    return s;
}

static const char original[] = "From: Alice <alice@example.org>\r\n"
                               "To: bob@example.net\r\n"
                               "Subject: lunch\r\n"
                               "\r\n"
                               "secret body text\n"
                               "second line\r\n";

static void test_dsn_failed(void **state)
{
    const struct smtp_dsn_rcpt rcpts[] = {
        {.final_recipient = "bob@example.net",
         .original_recipient = "rfc822;Bob@Example.NET",
         .action = SMTP_DSN_FAILED,
         .status = "5.1.1",
         .remote_mta = "mx.example.net",
         .diagnostic = "550-5.1.1 no such user\r\n550 5.1.1 Bcc: injected@evil.example",
         .last_attempt = 1700000000 - 60},
        {.final_recipient = "carol@example.net",
         .action = SMTP_DSN_DELAYED,
         .status = "4.4.1",
         .will_retry_until = 1700000000 + 5 * 86400},
    };
    const struct smtp_dsn d = {.reporting_mta = "mx.example.org",
                               .from = "MAILER-DAEMON@mx.example.org",
                               .to = "alice@example.org",
                               .envid = "QQ314159",
                               .arrival = 1700000000 - 3600,
                               .now = 1700000000,
                               .rcpts = rcpts,
                               .nrcpts = 2,
                               .original = original,
                               .original_len = strlen(original),
                               .ret_full = false};
    char *msg;
    size_t len;
    assert_int_equal(smtp_dsn_build(&d, &msg, &len), 0);
    assert_int_equal(strlen(msg), len);
    struct mime_message *m = dsn_check(msg, len, 3, "text/rfc822-headers");
    const struct mime_part *r = &m->root;
    assert_string_equal(r->envelope->subject, "Undelivered Mail Returned to Sender");
    /* the remote reply's CRLF did not make a header line */
    assert_null(strstr(msg, "\r\nBcc:"));

    /* the human-readable part names the recipients and the reason */
    char *text = squash(msg + r->children[0].body_offset, r->children[0].body_size);
    assert_non_null(strstr(text, "mx.example.org"));
    assert_non_null(strstr(text, "<bob@example.net>: delivery failed."));
    assert_non_null(strstr(text, "mx.example.net"));
    assert_non_null(strstr(text, "no such user"));
    assert_non_null(strstr(text, "<carol@example.net>: delivery delayed"));
    assert_non_null(strstr(text, "Sun, 19 Nov 2023 22:13:20 +0000"));
    free(text);

    /* the machine-readable part, field by field */
    assert_string_equal(r->children[1].subtype, "delivery-status");
    struct groups g = status_groups(msg, &r->children[1]);
    assert_int_equal(g.n, 3);
    field_is(g.start[0], g.len[0], "Reporting-MTA", "dns; mx.example.org");
    field_is(g.start[0], g.len[0], "Original-Envelope-Id", "QQ314159");
    field_is(g.start[0], g.len[0], "Arrival-Date", "Tue, 14 Nov 2023 21:13:20 +0000");
    field_is(g.start[0], g.len[0], "Final-Recipient", NULL);
    field_is(g.start[1], g.len[1], "Original-Recipient", "rfc822;Bob@Example.NET");
    field_is(g.start[1], g.len[1], "Final-Recipient", "rfc822; bob@example.net");
    field_is(g.start[1], g.len[1], "Action", "failed");
    field_is(g.start[1], g.len[1], "Status", "5.1.1");
    field_is(g.start[1], g.len[1], "Remote-MTA", "dns; mx.example.net");
    field_is(g.start[1], g.len[1], "Diagnostic-Code",
             "smtp; 550-5.1.1 no such user 550 5.1.1 Bcc: injected@evil.example");
    field_is(g.start[1], g.len[1], "Last-Attempt-Date", "Tue, 14 Nov 2023 22:12:20 +0000");
    field_is(g.start[1], g.len[1], "Will-Retry-Until", NULL);
    field_is(g.start[2], g.len[2], "Original-Recipient", NULL);
    field_is(g.start[2], g.len[2], "Final-Recipient", "rfc822; carol@example.net");
    field_is(g.start[2], g.len[2], "Action", "delayed");
    field_is(g.start[2], g.len[2], "Status", "4.4.1");
    field_is(g.start[2], g.len[2], "Remote-MTA", NULL);
    field_is(g.start[2], g.len[2], "Diagnostic-Code", NULL);
    field_is(g.start[2], g.len[2], "Last-Attempt-Date", NULL);
    field_is(g.start[2], g.len[2], "Will-Retry-Until", "Sun, 19 Nov 2023 22:13:20 +0000");

    /* RET=HDRS: the header only, and not a byte of the body */
    char *third = slice(msg, r->children[2].body_offset, r->children[2].body_size);
    assert_string_equal(third, "From: Alice <alice@example.org>\r\n"
                               "To: bob@example.net\r\n"
                               "Subject: lunch\r\n");
    assert_null(strstr(msg, "secret"));
    free(third);

    /* no 8-bit content, so no 8bit label */
    assert_null(strstr(msg, "8bit"));
    mime_message_free(&m);
    free(msg);
}

static void test_dsn_full_and_success(void **state)
{
    const struct smtp_dsn_rcpt rcpt = {.final_recipient = "bob@example.net",
                                       .action = SMTP_DSN_FAILED};
    struct smtp_dsn d = {.reporting_mta = "mx.example.org",
                         .from = "MAILER-DAEMON@mx.example.org",
                         .to = "alice@example.org",
                         .now = 1700000000,
                         .rcpts = &rcpt,
                         .nrcpts = 1,
                         .original = original,
                         .original_len = strlen(original),
                         .ret_full = true};
    char *msg, *msg2;
    size_t len, len2;
    assert_int_equal(smtp_dsn_build(&d, &msg, &len), 0);
    struct mime_message *m = dsn_check(msg, len, 3, "message/rfc822");
    const struct mime_part *r = &m->root;
    /* the whole message, encapsulated, its bare LF written as CRLF */
    assert_int_equal(r->children[2].nchildren, 1);
    assert_string_equal(r->children[2].children[0].envelope->subject, "lunch");
    char *third = slice(msg, r->children[2].body_offset, r->children[2].body_size);
    assert_string_equal(third, "From: Alice <alice@example.org>\r\n"
                               "To: bob@example.net\r\n"
                               "Subject: lunch\r\n"
                               "\r\n"
                               "secret body text\r\n"
                               "second line\r\n");
    free(third);
    /* defaults: no status given means x.0.0 by action; no optional fields */
    struct groups g = status_groups(msg, &r->children[1]);
    assert_int_equal(g.n, 2);
    field_is(g.start[0], g.len[0], "Original-Envelope-Id", NULL);
    field_is(g.start[0], g.len[0], "Arrival-Date", NULL);
    field_is(g.start[1], g.len[1], "Status", "5.0.0");

    /* a fresh boundary and Message-ID every time */
    assert_int_equal(smtp_dsn_build(&d, &msg2, &len2), 0);
    struct mime_message *m2 = dsn_check(msg2, len2, 3, "message/rfc822");
    assert_string_not_equal(mime_part_param(&m->root, "boundary"),
                            mime_part_param(&m2->root, "boundary"));
    assert_string_not_equal(m->root.envelope->message_id, m2->root.envelope->message_id);
    mime_message_free(&m2);
    free(msg2);
    mime_message_free(&m);
    free(msg);

    /* success reports, with no original: two parts */
    const struct smtp_dsn_rcpt ok[] = {
        {.final_recipient = "bob@example.net", .action = SMTP_DSN_DELIVERED, .status = "2.0.0"},
        {.final_recipient = "list@example.net", .action = SMTP_DSN_EXPANDED},
        {.final_recipient = "far@example.com",
         .action = SMTP_DSN_RELAYED,
         .remote_mta = "legacy.example.com"},
    };
    d.rcpts = ok;
    d.nrcpts = 3;
    d.original = NULL;
    assert_int_equal(smtp_dsn_build(&d, &msg, &len), 0);
    m = dsn_check(msg, len, 2, NULL);
    assert_string_equal(m->root.envelope->subject, "Successful Mail Delivery Report");
    g = status_groups(msg, &m->root.children[1]);
    assert_int_equal(g.n, 4);
    field_is(g.start[1], g.len[1], "Action", "delivered");
    field_is(g.start[2], g.len[2], "Action", "expanded");
    field_is(g.start[2], g.len[2], "Status", "2.0.0");
    field_is(g.start[3], g.len[3], "Action", "relayed");
    field_is(g.start[3], g.len[3], "Remote-MTA", "dns; legacy.example.com");
    mime_message_free(&m);
    free(msg);

    /* delayed only */
    const struct smtp_dsn_rcpt late = {.final_recipient = "bob@example.net",
                                       .action = SMTP_DSN_DELAYED,
                                       .diagnostic = "451 4.7.1 try again later"};
    d.rcpts = &late;
    d.nrcpts = 1;
    assert_int_equal(smtp_dsn_build(&d, &msg, &len), 0);
    m = dsn_check(msg, len, 2, NULL);
    assert_string_equal(m->root.envelope->subject, "Delayed Mail (still being retried)");
    g = status_groups(msg, &m->root.children[1]);
    field_is(g.start[1], g.len[1], "Status", "4.0.0");
    field_is(g.start[1], g.len[1], "Will-Retry-Until", NULL);
    field_is(g.start[1], g.len[1], "Diagnostic-Code", "smtp; 451 4.7.1 try again later");
    mime_message_free(&m);
    free(msg);
}

static void test_dsn_long_and_hostile(void **state)
{
    /* a long reply of ordinary words: folded near 78 columns, unfolding gives it back */
    char diag[6000];
    size_t n = 0;
    n += (size_t)snprintf(diag, sizeof(diag), "550 5.7.1");
    for (int i = 0; n < 1200; i++)
        n += (size_t)snprintf(diag + n, sizeof(diag) - n, " word%d", i);
    /* then one 2500-byte token with no space to fold at, and control characters */
    char *tok = repeat('Z', 2500);
    snprintf(diag + n, sizeof(diag) - n, " %s\t\x01\x7f end \xff\xc3\xa9", tok);
    free(tok);
    struct smtp_dsn_rcpt rcpt = {.final_recipient = "bob@example.net",
                                 .action = SMTP_DSN_FAILED,
                                 .status = "5.7.1",
                                 .diagnostic = diag};
    struct smtp_dsn d = {.reporting_mta = "mx.example.org",
                         .from = "MAILER-DAEMON@mx.example.org",
                         .to = "alice@example.org\r\nBcc: x@evil.example",
                         .envid = "id\r\nX-Evil: 1",
                         .now = 1700000000,
                         .rcpts = &rcpt,
                         .nrcpts = 1};
    char *msg;
    size_t len;
    assert_int_equal(smtp_dsn_build(&d, &msg, &len), 0);
    lines_ok(msg, len);
    assert_null(strstr(msg, "\r\nBcc:"));
    assert_null(strstr(msg, "\r\nX-Evil:"));
    /* dsn_check bounds every line to 998; it also wants a clean To, so check the parts here */
    struct mime_parser *p = mime_parser_new(NULL);
    assert_int_equal(mime_parser_feed(p, msg, len), 0);
    struct mime_message *m = mime_parser_finish(&p);
    assert_non_null(m);
    assert_int_equal(m->root.nchildren, 2);
    field_is(msg, m->root.header_size, "To", "<alice@example.org Bcc: x@evil.example>");
    struct groups g = status_groups(msg, &m->root.children[1]);
    field_is(g.start[0], g.len[0], "Original-Envelope-Id", "id X-Evil: 1");

    /* the status part: word lines within 78, the long token broken under 998 */
    const char *b = msg + m->root.children[1].body_offset;
    size_t blen = m->root.children[1].body_size, col = 0, longest = 0, over78 = 0;
    for (size_t i = 0; i < blen; i++) {
        if (b[i] == '\r')
            continue;
        if (b[i] == '\n') {
            over78 += col > 78;
            col = 0;
        } else if (++col > longest) {
            longest = col;
        }
    }
    assert_true(longest <= 998);
    assert_true(over78 >= 2 && over78 <= 4); /* only the pieces of the long token */
    char *v = field_get(g.start[1], g.len[1], "Diagnostic-Code");
    assert_non_null(v);
    /* unfolded: the words as sent, single spaces; controls and bad bytes made harmless */
    assert_int_equal(strncmp(v, "smtp; 550 5.7.1 word0 word1 word2 ", 34), 0);
    assert_non_null(strstr(v, " end ?\xc3\xa9"));
    for (const char *q = v; *q; q++)
        assert_true((unsigned char)*q >= 32 && *q != 127);
    size_t zs = 0;
    for (const char *q = v; *q; q++)
        zs += *q == 'Z';
    assert_int_equal(zs, 2500);
    free(v);
    mime_message_free(&m);
    free(msg);

    /* a reply of 20000 bytes is cut to a sane size */
    char *huge = repeat('w', 20000);
    for (size_t i = 5; i < 20000; i += 6)
        huge[i] = ' ';
    rcpt.diagnostic = huge;
    d.to = "alice@example.org";
    assert_int_equal(smtp_dsn_build(&d, &msg, &len), 0);
    lines_ok(msg, len);
    assert_true(len < 20000);
    free(msg);
    free(huge);
}

static void test_dsn_utf8(void **state)
{
    const struct smtp_dsn_rcpt rcpt = {.final_recipient = "\xd0\xb8\xd0\xb2@example.net",
                                       .action = SMTP_DSN_FAILED,
                                       .status = "5.1.1"};
    const struct smtp_dsn d = {.reporting_mta = "mx.example.org",
                               .from = "MAILER-DAEMON@mx.example.org",
                               .to = "alice@example.org",
                               .now = 1700000000,
                               .rcpts = &rcpt,
                               .nrcpts = 1};
    char *msg;
    size_t len;
    assert_int_equal(smtp_dsn_build(&d, &msg, &len), 0);
    struct mime_message *m = dsn_check(msg, len, 2, NULL);
    /* RFC 6533: a UTF-8 report is message/global-delivery-status, with utf-8 addresses */
    assert_string_equal(m->root.children[1].subtype, "global-delivery-status");
    assert_string_equal(m->root.children[1].encoding, "8bit");
    assert_string_equal(m->root.encoding, "8bit");
    struct groups g = status_groups(msg, &m->root.children[1]);
    field_is(g.start[1], g.len[1], "Final-Recipient", "utf-8; \xd0\xb8\xd0\xb2@example.net");
    mime_message_free(&m);
    free(msg);

    /* bytes that are not UTF-8 are replaced, and then the report is plain ASCII */
    const struct smtp_dsn_rcpt bad = {.final_recipient = "b\xffob@example.net",
                                      .action = SMTP_DSN_FAILED};
    struct smtp_dsn d2 = d;
    d2.rcpts = &bad;
    /* an original with an empty header: RET=HDRS returns nothing of it */
    d2.original = "\r\nbody only\r\n";
    d2.original_len = strlen(d2.original);
    assert_int_equal(smtp_dsn_build(&d2, &msg, &len), 0);
    m = dsn_check(msg, len, 3, "text/rfc822-headers");
    assert_string_equal(m->root.children[1].subtype, "delivery-status");
    g = status_groups(msg, &m->root.children[1]);
    field_is(g.start[1], g.len[1], "Final-Recipient", "rfc822; b?ob@example.net");
    assert_int_equal(m->root.children[2].body_size, 0);
    assert_null(strstr(msg, "body only"));
    mime_message_free(&m);
    free(msg);
}

static void test_dsn_refused(void **state)
{
    struct smtp_dsn_rcpt rcpt = {
        .final_recipient = "bob@example.net", .action = SMTP_DSN_FAILED, .status = "5.1.1"};
    struct smtp_dsn d = {.reporting_mta = "mx.example.org",
                         .from = "MAILER-DAEMON@mx.example.org",
                         .to = "alice@example.org",
                         .now = 1700000000,
                         .rcpts = &rcpt,
                         .nrcpts = 1};
    static char junk[] = "junk";
    char *msg = junk;
    size_t len = 9;

    assert_int_equal(smtp_dsn_build(&d, &msg, &len), 0);
    free(msg);

    static const char *const bad_status[] = {"5.1",   "6.0.0", "5.1.1.1", "5.1000.1", "5..1",
                                             "5.1.x", "",      "2.0.0 ",  "3.0.0"};
    for (size_t i = 0; i < sizeof(bad_status) / sizeof(bad_status[0]); i++) {
        rcpt.status = bad_status[i];
        msg = junk;
        if (smtp_dsn_build(&d, &msg, &len) != -1)
            fail_msg("status \"%s\" accepted", bad_status[i]);
        assert_null(msg);
        assert_int_equal(len, 0);
    }
    rcpt.status = "4.999.999";
    assert_int_equal(smtp_dsn_build(&d, &msg, &len), 0);
    free(msg);

    rcpt.action = (enum smtp_dsn_action)42;
    assert_int_equal(smtp_dsn_build(&d, &msg, &len), -1);
    rcpt.action = SMTP_DSN_FAILED;
    rcpt.final_recipient = NULL;
    assert_int_equal(smtp_dsn_build(&d, &msg, &len), -1);
    rcpt.final_recipient = "";
    assert_int_equal(smtp_dsn_build(&d, &msg, &len), -1);
    rcpt.final_recipient = "bob@example.net";
    d.nrcpts = 0;
    assert_int_equal(smtp_dsn_build(&d, &msg, &len), -1);
    d.nrcpts = 1;
    d.to = "";
    assert_int_equal(smtp_dsn_build(&d, &msg, &len), -1);
    d.to = "alice@example.org";
    d.reporting_mta = NULL;
    assert_int_equal(smtp_dsn_build(&d, &msg, &len), -1);
    d.reporting_mta = "mx.example.org";
    d.from = NULL;
    assert_int_equal(smtp_dsn_build(&d, &msg, &len), -1);
    assert_null(msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_command_verbs),
        cmocka_unit_test(test_command_refused),
        cmocka_unit_test(test_mail_addresses),
        cmocka_unit_test(test_mail_bad_addresses),
        cmocka_unit_test(test_mail_limits),
        cmocka_unit_test(test_mail_params),
        cmocka_unit_test(test_rcpt),
        cmocka_unit_test(test_bdat),
        cmocka_unit_test(test_xtext),
        cmocka_unit_test(test_data_cases),
        cmocka_unit_test(test_data_callback_and_large),
        cmocka_unit_test(test_dsn_failed),
        cmocka_unit_test(test_dsn_full_and_success),
        cmocka_unit_test(test_dsn_long_and_hostile),
        cmocka_unit_test(test_dsn_utf8),
        cmocka_unit_test(test_dsn_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
