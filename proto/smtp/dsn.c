/* Delivery status notifications (see smtp.h): RFC 3464 reports in a multipart/report
 * (RFC 6522) with a human-readable text/plain part, the machine-readable delivery-status part
 * and the original message or its header.
 *
 * Every value the caller passes may come from the network (a remote server's reply, an ENVID,
 * an ORCPT, addresses), so before it goes into a header line it is cleaned: runs of CR, LF, TAB
 * and other control characters become one space (no header injection, no broken structure),
 * invalid UTF-8 becomes '?', and the length is bounded. Lines are then folded at spaces near
 * 78 columns (RFC 5322 §2.1.1) and, for a word with no space to fold at, broken hard so that no
 * line is ever longer than 998 octets.
 *
 * Each part is built into its own buffer first, so its content decides its labels: a status
 * part with UTF-8 in it becomes message/global-delivery-status with "utf-8" address types
 * (RFC 6533 §3, §6.2), parts with 8-bit bytes are labelled 8bit. The boundary is 128 random
 * bits, checked against the original message anyway. */
#include "proto/smtp/smtp.h"

#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/text/utf8.h"

/* RFC 5322 §2.1.1: lines SHOULD stay within 78 octets and MUST within 998. */
#define SOFT_LINE 78
#define HARD_LINE 998
/* Cleaned values are cut at this many bytes: enough for any host, address or reply text. */
#define VALUE_MAX 4096
/* Tries to find a boundary that does not occur in the original message. */
#define BOUNDARY_TRIES 8

struct dbuf {
    char *d;
    size_t len, cap;
    bool oom;
};

static void db_add(struct dbuf *b, const char *s, size_t n)
{
    if (b->oom || n == 0)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->d, cap);
        if (!d) {
            b->oom = true;
            return;
        }
        b->d = d;
        b->cap = cap;
    }
    memcpy(b->d + b->len, s, n);
    b->len += n;
    b->d[b->len] = '\0';
}

static void db_str(struct dbuf *b, const char *s)
{
    db_add(b, s, strlen(s));
}

static void db_free(struct dbuf *b)
{
    free(b->d);
    b->d = NULL;
    b->len = b->cap = 0;
}

static bool has_8bit(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return true;
    return false;
}

/* The value made safe for a header line or a line of text (see the top of the file): valid
 * UTF-8 without control characters, single spaces, no leading or trailing space, at most
 * VALUE_MAX bytes. */
static void clean(struct dbuf *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strnlen(s, VALUE_MAX * 4);
    size_t start = out->len;
    bool space = false;
    for (size_t i = 0; i < n && out->len - start < VALUE_MAX;) {
        uint32_t cp;
        size_t l = utf8_decode(p + i, n - i, &cp);
        if (l == 0) { /* not UTF-8 */
            cp = '?';
            l = 1;
        }
        if (cp <= 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F)) {
            space = out->len > start;
            i += l;
            continue;
        }
        if (out->len - start + (space ? 1 : 0) + l > VALUE_MAX)
            break;
        if (space)
            db_add(out, " ", 1);
        space = false;
        if (cp == '?' && p[i] != '?')
            db_add(out, "?", 1);
        else
            db_add(out, s + i, l);
        i += l;
    }
}

/* Writes text (cleaned: words separated by single spaces) starting on a line that already
 * holds col octets; a line break replaces a space when the next word would pass SOFT_LINE,
 * and the next line starts with cont. A word that cannot fit even on a fresh line is broken
 * at a character boundary before HARD_LINE. Ends with CRLF. */
static void fold(struct dbuf *b, size_t col, const char *cont, const char *text)
{
    size_t contlen = strlen(cont);
    size_t line_start_col = col;
    const char *w = text;
    while (*w) {
        const char *e = strchr(w, ' ');
        size_t wlen = e ? (size_t)(e - w) : strlen(w);
        bool first = col == line_start_col;
        if (!first && col + 1 + wlen > SOFT_LINE) {
            db_add(b, "\r\n", 2);
            db_add(b, cont, contlen);
            col = line_start_col = contlen;
            first = true;
        }
        if (!first) {
            db_add(b, " ", 1);
            col++;
        }
        while (col + wlen > HARD_LINE) {
            /* no space to fold at: break the word, never inside a UTF-8 sequence */
            size_t take = HARD_LINE - col;
            while (take > 0 && ((unsigned char)w[take] & 0xC0) == 0x80)
                take--;
            if (take == 0) /* not UTF-8 after all: cut anyway rather than loop */
                take = HARD_LINE - col;
            db_add(b, w, take);
            db_add(b, "\r\n", 2);
            db_add(b, cont, contlen);
            col = line_start_col = contlen;
            w += take;
            wlen -= take;
        }
        db_add(b, w, wlen);
        col += wlen;
        w += wlen;
        if (*w == ' ')
            w++;
    }
    db_add(b, "\r\n", 2);
}

/* A header field "Name: prefix value suffix" with the value cleaned and all of it folded. */
static void field3(struct dbuf *b, const char *name, const char *prefix, const char *value,
                   const char *suffix)
{
    struct dbuf v = {0};
    db_str(&v, prefix);
    clean(&v, value);
    db_str(&v, suffix);
    db_str(b, name);
    db_add(b, ":", 1);
    if (v.len > 0) {
        db_add(b, " ", 1);
        fold(b, strlen(name) + 2, " ", v.d);
    } else {
        db_add(b, "\r\n", 2);
    }
    b->oom |= v.oom;
    db_free(&v);
}

static void field(struct dbuf *b, const char *name, const char *prefix, const char *value)
{
    field3(b, name, prefix, value, "");
}

/* A paragraph of text wrapped at SOFT_LINE, continuation lines indented by indent. */
static void para(struct dbuf *b, const char *indent, const char *text)
{
    struct dbuf v = {0};
    clean(&v, text);
    db_str(b, indent);
    if (v.len > 0)
        fold(b, strlen(indent), indent, v.d);
    else
        db_add(b, "\r\n", 2);
    b->oom |= v.oom;
    db_free(&v);
}

/* RFC 5322 §3.3 date-time in UTC; written with fixed English names, whatever the locale. */
static int fmt_date(time_t t, char *buf, size_t len)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    if (!gmtime_r(&t, &tm) || tm.tm_year < 0 || tm.tm_year > 9999 - 1900 || tm.tm_wday < 0 ||
        tm.tm_wday > 6 || tm.tm_mon < 0 || tm.tm_mon > 11)
        return -1;
    int n = snprintf(buf, len, "%s, %d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
                     months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return n > 0 && (size_t)n < len ? 0 : -1;
}

static void hex(char *out, const unsigned char *in, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* RFC 3463 §2: class "." subject "." detail, 1-3 digits each, class 2, 4 or 5. */
static bool status_ok(const char *s)
{
    if (!(s[0] == '2' || s[0] == '4' || s[0] == '5') || s[1] != '.')
        return false;
    s += 2;
    for (int part = 0; part < 2; part++) {
        size_t n = 0;
        while (s[n] >= '0' && s[n] <= '9')
            n++;
        if (n < 1 || n > 3)
            return false;
        s += n;
        if (part == 0 && *s++ != '.')
            return false;
    }
    return *s == '\0';
}

static const char *action_name(enum smtp_dsn_action a)
{
    switch (a) {
    case SMTP_DSN_FAILED:
        return "failed";
    case SMTP_DSN_DELAYED:
        return "delayed";
    case SMTP_DSN_DELIVERED:
        return "delivered";
    case SMTP_DSN_RELAYED:
        return "relayed";
    case SMTP_DSN_EXPANDED:
        return "expanded";
    }
    return NULL;
}

static const char *default_status(enum smtp_dsn_action a)
{
    return a == SMTP_DSN_FAILED ? "5.0.0" : a == SMTP_DSN_DELAYED ? "4.0.0" : "2.0.0";
}

static bool nonempty(const char *s)
{
    return s && *s;
}

/* The human-readable part: what happened, in plain words, then one paragraph per recipient. */
static void text_part(struct dbuf *b, const struct smtp_dsn *d, bool failed, bool delayed,
                      bool success)
{
    struct dbuf t = {0};
    db_str(&t, "This is the mail system at ");
    db_str(&t, d->reporting_mta);
    db_str(&t, ".");
    para(b, "", t.d ? t.d : "");
    db_free(&t);
    db_add(b, "\r\n", 2);
    if (failed) {
        para(b, "",
             "Your message could not be delivered to one or more of its recipients. "
             "The mail system has given up on them: the message will not be sent to them. "
             "The reasons are listed below.");
        db_add(b, "\r\n", 2);
    }
    if (delayed) {
        para(b, "",
             "Your message has not been delivered yet to one or more of its recipients. "
             "The mail system keeps trying, so you do not need to send it again; you will be "
             "told if it finally fails.");
        db_add(b, "\r\n", 2);
    }
    if (success) {
        para(b, "",
             "As you asked, here is a report of the delivery of your message to the "
             "recipients listed below.");
        db_add(b, "\r\n", 2);
    }
    for (size_t i = 0; i < d->nrcpts; i++) {
        const struct smtp_dsn_rcpt *r = &d->rcpts[i];
        char date[64];
        db_str(&t, "<");
        db_str(&t, r->final_recipient);
        db_str(&t, ">: ");
        switch (r->action) {
        case SMTP_DSN_FAILED:
            db_str(&t, "delivery failed.");
            break;
        case SMTP_DSN_DELAYED:
            if (r->will_retry_until && fmt_date(r->will_retry_until, date, sizeof(date)) == 0) {
                db_str(&t, "delivery delayed; the mail system keeps trying until ");
                db_str(&t, date);
                db_str(&t, ".");
            } else {
                db_str(&t, "delivery delayed; the mail system keeps trying.");
            }
            break;
        case SMTP_DSN_DELIVERED:
            db_str(&t, "delivered.");
            break;
        case SMTP_DSN_RELAYED:
            db_str(&t, "passed on to a mail system that sends no delivery reports.");
            break;
        case SMTP_DSN_EXPANDED:
            db_str(&t, "delivered to a list or alias, which passed it on to its members.");
            break;
        }
        para(b, "", t.d ? t.d : "");
        db_free(&t);
        if (nonempty(r->diagnostic)) {
            if (nonempty(r->remote_mta)) {
                db_str(&t, "The mail server ");
                db_str(&t, r->remote_mta);
                db_str(&t, " said: ");
            } else {
                db_str(&t, "The reason given: ");
            }
            db_str(&t, r->diagnostic);
            para(b, "    ", t.d ? t.d : "");
            db_free(&t);
        }
        db_add(b, "\r\n", 2);
    }
    b->oom |= t.oom; /* t's flag outlives db_free */
}

/* The message/delivery-status content (RFC 3464 §2.1-§2.3). */
static int status_part(struct dbuf *b, const struct smtp_dsn *d)
{
    char date[64];
    field(b, "Reporting-MTA", "dns; ", d->reporting_mta);
    if (nonempty(d->envid))
        field(b, "Original-Envelope-Id", "", d->envid);
    if (d->arrival) {
        if (fmt_date(d->arrival, date, sizeof(date)) != 0)
            return -1;
        field(b, "Arrival-Date", "", date);
    }
    for (size_t i = 0; i < d->nrcpts; i++) {
        const struct smtp_dsn_rcpt *r = &d->rcpts[i];
        const char *status = r->status ? r->status : default_status(r->action);
        db_add(b, "\r\n", 2);
        if (nonempty(r->original_recipient))
            field(b, "Original-Recipient", "", r->original_recipient);
        /* RFC 6533 §3: a non-ASCII address has the address type "utf-8" */
        struct dbuf addr = {0};
        clean(&addr, r->final_recipient);
        field(b, "Final-Recipient", has_8bit(addr.d, addr.len) ? "utf-8; " : "rfc822; ",
              addr.d ? addr.d : "");
        b->oom |= addr.oom;
        db_free(&addr);
        field(b, "Action", "", action_name(r->action));
        field(b, "Status", "", status);
        if (nonempty(r->remote_mta))
            field(b, "Remote-MTA", "dns; ", r->remote_mta);
        if (nonempty(r->diagnostic))
            field(b, "Diagnostic-Code", "smtp; ", r->diagnostic);
        if (r->last_attempt) {
            if (fmt_date(r->last_attempt, date, sizeof(date)) != 0)
                return -1;
            field(b, "Last-Attempt-Date", "", date);
        }
        if (r->action == SMTP_DSN_DELAYED && r->will_retry_until) {
            if (fmt_date(r->will_retry_until, date, sizeof(date)) != 0)
                return -1;
            field(b, "Will-Retry-Until", "", date);
        }
    }
    return 0;
}

/* The original message, or its header (up to the first empty line) when !full, with every
 * line ending written as CRLF so the part cannot confuse a reader looking for the boundary. */
static void original_part(struct dbuf *b, const char *m, size_t len, bool full)
{
    size_t end = len;
    if (!full && len > 0 && (m[0] == '\n' || (m[0] == '\r' && len > 1 && m[1] == '\n'))) {
        end = 0; /* an empty header */
    } else if (!full) {
        /* the header ends at the first empty line (a line ending right after another) */
        for (size_t i = 0; i < len; i++) {
            if (m[i] != '\n')
                continue;
            size_t j = i + 1;
            if (j < len && m[j] == '\r')
                j++;
            if (j < len && m[j] == '\n') {
                end = i + 1;
                break;
            }
        }
    }
    size_t run = 0;
    for (size_t i = 0; i < end; i++) {
        if (m[i] != '\r' && m[i] != '\n')
            continue;
        db_add(b, m + run, i - run);
        db_add(b, "\r\n", 2);
        if (m[i] == '\r' && i + 1 < end && m[i + 1] == '\n')
            i++;
        run = i + 1;
    }
    db_add(b, m + run, end - run);
}

static bool contains(const char *hay, size_t n, const char *needle)
{
    size_t nl = strlen(needle);
    return nl <= n && memmem(hay, n, needle, nl) != NULL;
}

/* One part: "--boundary", its header fields, the empty line, the content. */
static void put_part(struct dbuf *out, const char *boundary, const char *type,
                     const char *description, const struct dbuf *content)
{
    db_str(out, "\r\n--");
    db_str(out, boundary);
    db_str(out, "\r\nContent-Type: ");
    db_str(out, type);
    db_str(out, "\r\nContent-Description: ");
    db_str(out, description);
    db_str(out, "\r\n");
    if (has_8bit(content->d, content->len))
        db_str(out, "Content-Transfer-Encoding: 8bit\r\n");
    db_str(out, "\r\n");
    db_add(out, content->d, content->len);
}

int smtp_dsn_build(const struct smtp_dsn *d, char **out_r, size_t *len_r)
{
    struct dbuf text = {0}, status = {0}, orig = {0}, body = {0}, msg = {0};
    bool failed = false, delayed = false, success = false, third = false, found = false;
    unsigned char rnd[16];
    char boundary[64], rhex[2 * sizeof(rnd) + 1], date[64];
    int ret = -1;

    *out_r = NULL;
    *len_r = 0;
    if (!nonempty(d->reporting_mta) || !nonempty(d->from) || !nonempty(d->to) || !d->rcpts ||
        d->nrcpts == 0)
        return -1;
    for (size_t i = 0; i < d->nrcpts; i++) {
        const struct smtp_dsn_rcpt *r = &d->rcpts[i];
        if (!nonempty(r->final_recipient) || !action_name(r->action) ||
            (r->status && !status_ok(r->status)))
            return -1;
        failed |= r->action == SMTP_DSN_FAILED;
        delayed |= r->action == SMTP_DSN_DELAYED;
        success |= r->action != SMTP_DSN_FAILED && r->action != SMTP_DSN_DELAYED;
    }
    if (fmt_date(d->now, date, sizeof(date)) != 0)
        return -1;

    text_part(&text, d, failed, delayed, success);
    if (status_part(&status, d) != 0)
        goto out;
    third = d->original != NULL;
    if (third)
        original_part(&orig, d->original, d->original_len, d->ret_full);
    if (text.oom || status.oom || orig.oom)
        goto out;

    /* RFC 2046 §5.1.1: the boundary must not occur in the parts. */
    for (int tries = 0; tries < BOUNDARY_TRIES && !found; tries++) {
        if (RAND_bytes(rnd, (int)sizeof(rnd)) != 1)
            goto out;
        hex(rhex, rnd, sizeof(rnd));
        snprintf(boundary, sizeof(boundary), "=_floe-dsn-%s", rhex);
        found = !contains(orig.d, orig.len, boundary) && !contains(text.d, text.len, boundary) &&
                !contains(status.d, status.len, boundary);
    }
    if (!found)
        goto out;

    db_str(&body, "This is a delivery status notification in MIME format.\r\n");
    put_part(&body, boundary, "text/plain; charset=utf-8", "Notification", &text);
    /* RFC 6533 §6.2: UTF-8 in the report makes it message/global-delivery-status */
    put_part(&body, boundary,
             has_8bit(status.d, status.len) ? "message/global-delivery-status"
                                            : "message/delivery-status",
             "Delivery report", &status);
    if (third)
        put_part(&body, boundary, d->ret_full ? "message/rfc822" : "text/rfc822-headers",
                 d->ret_full ? "Original message" : "Original message header", &orig);
    db_str(&body, "\r\n--");
    db_str(&body, boundary);
    db_str(&body, "--\r\n");

    field3(&msg, "From", "Mail Delivery System <", d->from, ">");
    field3(&msg, "To", "<", d->to, ">");
    if (failed)
        field(&msg, "Subject", "", "Undelivered Mail Returned to Sender");
    else if (delayed)
        field(&msg, "Subject", "", "Delayed Mail (still being retried)");
    else
        field(&msg, "Subject", "", "Successful Mail Delivery Report");
    field(&msg, "Date", "", date);
    /* RFC 5322 §3.6.4: msg-id = "<" id-left "@" id-right ">"; the host is reduced to
     * dot-atom characters so the id stays well-formed whatever it holds. */
    if (RAND_bytes(rnd, (int)sizeof(rnd)) != 1)
        goto out;
    hex(rhex, rnd, sizeof(rnd));
    db_str(&msg, "Message-ID: <dsn.");
    db_str(&msg, rhex);
    db_str(&msg, "@");
    for (const char *h = d->reporting_mta; *h && h - d->reporting_mta < 255; h++) {
        char c = *h;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || (c == '.' && h[1] != '\0' && h[1] != '.' && h != d->reporting_mta);
        db_add(&msg, ok ? &c : "-", 1);
    }
    db_str(&msg, ">\r\n");
    db_str(&msg, "MIME-Version: 1.0\r\n");
    db_str(&msg, "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"");
    db_str(&msg, boundary);
    db_str(&msg, "\"\r\n");
    if (has_8bit(body.d, body.len))
        db_str(&msg, "Content-Transfer-Encoding: 8bit\r\n");
    /* RFC 3834 §5: so that auto-responders do not answer the notification */
    db_str(&msg, "Auto-Submitted: auto-replied\r\n");
    db_str(&msg, "\r\n");
    db_add(&msg, body.d, body.len);
    if (msg.oom || body.oom)
        goto out;

    *out_r = msg.d;
    *len_r = msg.len;
    msg.d = NULL;
    ret = 0;
out:
    db_free(&text);
    db_free(&status);
    db_free(&orig);
    db_free(&body);
    db_free(&msg);
    return ret;
}
