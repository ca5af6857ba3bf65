/* The streaming DATA decoder (see smtp.h): finds the end of the message, removes dot-stuffing
 * and writes every line ending as CRLF.
 *
 * RFC 5321 §4.1.1.4: the data ends with a line holding only "." — CRLF "." CRLF, where the
 * first CRLF belongs to the message; §4.5.2: a line starting with "." had one more "." put in
 * front by the client, which is removed here. Only the exact sequence CRLF "." CRLF ends the
 * data (or "." CRLF as the very first line): the near misses "\n.\n", "\n.\r\n", "\r\n.\n",
 * "\r.\r\n" are read by some servers as the end, which lets a sender hide a second message
 * inside the first for them ("SMTP smuggling"). They are not the end here, and since every bare
 * LF and bare CR is written as CRLF, none of them survives in the output for a later hop to
 * misread. A bare line ending still starts a new line for dot-unstuffing, as it does in the
 * output.
 *
 * The decoder is a byte-at-a-time state machine, so input may be split anywhere. The only
 * bytes ever held back are a leading "." (and a CR after it) of a line that may turn out to be
 * the end marker; a CR is written as CRLF at once and a following LF is then swallowed. Each
 * input byte therefore produces at most two output bytes over the whole stream. Output is
 * gathered in a small buffer and handed to the callback in pieces. */
#include "proto/smtp/smtp.h"

#include <limits.h>
#include <string.h>

enum {
    S_BOL = 0,  /* start of a line after CRLF (or of the data): the end marker may follow */
    S_BOL_BARE, /* start of a line after a bare LF or CR: dot-stuffing, but never the end */
    S_DOT,      /* S_BOL then ".": held back */
    S_DOT_CR,   /* S_BOL then ".\r": held back */
    S_BARE_DOT, /* S_BOL_BARE then ".": held back */
    S_TEXT,     /* inside a line */
    S_CR,       /* after a CR, already written as CRLF: an LF here is swallowed */
    S_DONE,
};

#define OUT_BUF 4096

struct sink {
    smtp_data_out out;
    void *ctx;
    struct smtp_data *d;
    char buf[OUT_BUF];
    size_t len;
    int err;
};

static int sink_flush(struct sink *k)
{
    if (k->len == 0 || k->err)
        return k->err;
    if (k->out) {
        int r = k->out(k->ctx, k->buf, k->len);
        if (r != 0) {
            /* a positive value would read as a byte count */
            k->err = r < 0 ? r : -1;
            return k->err;
        }
    }
    k->d->bytes += k->len;
    k->len = 0;
    return 0;
}

/* Queues n <= OUT_BUF bytes. A callback error is kept in k->err, which stops the caller's loop. */
static void sink_put(struct sink *k, const char *p, size_t n)
{
    if (k->err || (k->len + n > OUT_BUF && sink_flush(k) != 0))
        return;
    memcpy(k->buf + k->len, p, n);
    k->len += n;
}

void smtp_data_init(struct smtp_data *d)
{
    memset(d, 0, sizeof(*d));
    d->state = S_BOL;
}

long smtp_data_feed(struct smtp_data *d, const char *in, size_t len, smtp_data_out out, void *ctx)
{
    struct sink k = {.out = out, .ctx = ctx, .d = d};
    size_t i = 0;

    if (d->done || d->state == S_DONE)
        return 0;
    if (len > LONG_MAX)
        len = LONG_MAX;
    while (i < len && k.err == 0) {
        char c = in[i];
        switch (d->state) {
        case S_BOL:
        case S_BOL_BARE:
            if (c == '.') {
                d->state = d->state == S_BOL ? S_DOT : S_BARE_DOT;
                i++;
                continue;
            }
            d->state = S_TEXT;
            continue; /* the byte is read again as text */
        case S_DOT:
            if (c == '\r') {
                d->state = S_DOT_CR;
                i++;
                continue;
            }
            if (c == '.') { /* RFC 5321 §4.5.2: ".." -> "." */
                sink_put(&k, ".", 1);
                d->state = S_TEXT;
                i++;
                continue;
            }
            sink_put(&k, ".", 1); /* a lone dot: kept, the byte is text */
            d->state = S_TEXT;
            continue;
        case S_DOT_CR:
            if (c == '\n') { /* CRLF "." CRLF */
                d->state = S_DONE;
                d->done = true;
                i++;
                break;
            }
            /* ".\r" then not LF: the CR was bare */
            sink_put(&k, ".\r\n", 3);
            d->bare_newlines++;
            d->state = S_BOL_BARE;
            continue;
        case S_BARE_DOT:
            if (c == '.')
                i++; /* unstuffed; the dot kept is written below */
            sink_put(&k, ".", 1);
            d->state = S_TEXT;
            continue;
        case S_CR:
            if (c == '\n') {
                d->state = S_BOL;
                i++;
                continue;
            }
            d->bare_newlines++;
            d->state = S_BOL_BARE;
            continue;
        case S_TEXT: {
            /* Copy the run of ordinary bytes up to the next CR or LF at once. */
            size_t j = i;
            while (j < len && in[j] != '\r' && in[j] != '\n')
                j++;
            while (i < j && k.err == 0) {
                size_t n = j - i < OUT_BUF ? j - i : OUT_BUF;
                sink_put(&k, in + i, n);
                i += n;
            }
            if (i == len || k.err)
                continue;
            sink_put(&k, "\r\n", 2);
            if (in[i] == '\n') {
                d->bare_newlines++;
                d->state = S_BOL_BARE;
            } else {
                d->state = S_CR;
            }
            i++;
            continue;
        }
        default:
            d->state = S_DONE;
            d->done = true;
            break;
        }
        break; /* S_DONE */
    }
    if (sink_flush(&k) != 0)
        return k.err;
    return (long)i;
}
