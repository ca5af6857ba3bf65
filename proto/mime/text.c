/* A part's body as UTF-8 text for full-text search (see mime.h, "text.c").
 *
 * Four streaming stages, each keeping only a few bytes of state between calls so a body can be
 * fed in pieces of any size:
 *   1. transfer decoding: base64 (RFC 2045 §6.8) or quoted-printable (§6.7), collected into
 *      blocks of CHUNK bytes;
 *   2. charset to UTF-8, one whole block at a time: iconv for declared charsets, with an
 *      incomplete multibyte sequence at the end of a block carried over to the next one;
 *      US-ASCII, UTF-8 and unknown charsets are read as UTF-8 where valid and ISO-8859-1 where
 *      not (as header.c does). Converting fixed blocks, not whatever the caller fed, makes the
 *      result independent of how the body was split: with stateful charsets (UTF-7,
 *      ISO-2022-*) iconv's error recovery depends on where its calls begin and end;
 *   3. for HTML, a crude tag stripper: tags become whitespace (inline ones nothing), script and
 *      style contents and comments are dropped, common entities are decoded;
 *   4. whitespace runs collapse to one space (or one line feed when the run had one) and the
 *      result is appended to a bounded buffer, cut at a character boundary when it fills.
 * Once the output buffer is full, feeding does nothing: a 50 MB text part costs only the
 * first megabyte's decoding. */
#include "proto/mime/mime.h"

#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CHUNK 4096
#define PEND_MAX 16 /* longest incomplete multibyte sequence carried between chunks */
#define ENT_MAX 10  /* longest entity name kept ("&thetasym;" is 8) */

enum cte { CTE_IDENTITY, CTE_BASE64, CTE_QP };

enum hstate {
    H_TEXT,
    H_ENT,     /* after '&' */
    H_TAGNAME, /* after '<' */
    H_TAG,     /* inside a tag, after its name */
    H_TAG_Q1,  /* inside '...' in a tag */
    H_TAG_Q2,  /* inside "..." in a tag */
    H_COMMENT, /* inside <!-- --> */
};

struct mime_text {
    enum cte cte;
    unsigned b64_acc;
    int b64_bits;
    int qp_state; /* 0 text, 1 after '=', 2 after '=X', 3 after '=' + CR, 4 after '=' + WSP */
    int qp_hi;

    char blk[CHUNK]; /* transfer-decoded bytes waiting for a whole block */
    size_t nblk;
    iconv_t cd; /* (iconv_t)-1: the lenient UTF-8 path */
    char pend[PEND_MAX];
    size_t npend;

    bool html;
    enum hstate hs;
    char tag[8]; /* lower-case tag name, '/' first for an end tag; truncated */
    size_t ntag;
    char skip_until[8]; /* inside <script> or <style>: the end tag that ends the skip */
    int dashes;         /* comment: consecutive '-' seen */
    char ent[ENT_MAX + 1];
    size_t nent;

    int ws;       /* pending whitespace: 0 none, 1 space, 2 line feed */
    bool started; /* some text was written */
};

/* ---- output --------------------------------------------------------------------------------- */

int mime_textbuf_add(struct mime_textbuf *out, const char *s, size_t n)
{
    if (out->full || out->oom || n == 0)
        return out->oom ? -1 : 0;
    size_t room = out->max > out->len ? out->max - out->len : 0;
    if (n > room) {
        n = room;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--; /* s[n] continues the character s[n-1] begins: drop that one */
        out->full = true;
    }
    if (out->len + n + 1 > out->cap) {
        size_t cap = out->cap ? out->cap : 256;
        while (cap < out->len + n + 1)
            cap *= 2;
        if (cap > out->max + 1)
            cap = out->max + 1;
        char *d = realloc(out->data, cap);
        if (!d) {
            out->oom = true;
            return -1;
        }
        out->data = d;
        out->cap = cap;
    }
    memcpy(out->data + out->len, s, n);
    out->len += n;
    out->data[out->len] = '\0';
    return 0;
}

/* Stage 4: whitespace collapsing into the output. */
static void put(struct mime_text *t, struct mime_textbuf *out, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && !out->full) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == 0x7F) {
            if (c == '\n')
                t->ws = 2;
            else if (t->ws == 0)
                t->ws = 1;
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && (unsigned char)s[j] > ' ' && s[j] != 0x7F)
            j++;
        if (t->ws && t->started)
            mime_textbuf_add(out, t->ws == 2 ? "\n" : " ", 1);
        t->ws = 0;
        t->started = true;
        mime_textbuf_add(out, s + i, j - i);
        i = j;
    }
}

/* ---- stage 3: HTML -------------------------------------------------------------------------- */

static void put_codepoint(struct mime_text *t, struct mime_textbuf *out, unsigned long cp)
{
    char u[4];
    size_t n;
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        cp = 0xFFFD;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    put(t, out, u, n);
}

/* Ends an entity: decodes &name; / &#N; / &#xH; or writes it back as it was. */
static void entity_end(struct mime_text *t, struct mime_textbuf *out, bool semicolon)
{
    static const struct {
        const char *name;
        unsigned long cp;
    } named[] = {{"amp", '&'},      {"lt", '<'},        {"gt", '>'},       {"quot", '"'},
                 {"apos", '\''},    {"nbsp", ' '},      {"copy", 0xA9},    {"reg", 0xAE},
                 {"euro", 0x20AC},  {"hellip", 0x2026}, {"mdash", 0x2014}, {"ndash", 0x2013},
                 {"laquo", 0xAB},   {"raquo", 0xBB},    {"rsquo", 0x2019}, {"lsquo", 0x2018},
                 {"rdquo", 0x201D}, {"ldquo", 0x201C},  {"bull", 0x2022},  {"middot", 0xB7}};
    t->ent[t->nent] = '\0';
    t->hs = H_TEXT;
    if (semicolon && t->nent > 1 && t->ent[0] == '#') {
        char *end;
        unsigned long cp = (t->ent[1] == 'x' || t->ent[1] == 'X') ? strtoul(t->ent + 2, &end, 16)
                                                                  : strtoul(t->ent + 1, &end, 10);
        bool hex = t->ent[1] == 'x' || t->ent[1] == 'X';
        if (*end == '\0' && end != t->ent + (hex ? 2 : 1)) {
            put_codepoint(t, out, cp);
            return;
        }
    } else if (semicolon) {
        for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++)
            if (strcmp(t->ent, named[i].name) == 0) {
                put_codepoint(t, out, named[i].cp);
                return;
            }
    }
    put(t, out, "&", 1);
    put(t, out, t->ent, t->nent);
    if (semicolon)
        put(t, out, ";", 1);
}

/* A tag ended (at '>'): decide what it stands for. */
static void tag_end(struct mime_text *t)
{
    static const char *const inline_tags[] = {"a",  "b",      "i",     "u",   "span", "font",
                                              "em", "strong", "small", "big", "sub",  "sup"};
    t->tag[t->ntag] = '\0';
    t->hs = H_TEXT;
    if (t->skip_until[0]) { /* inside script/style: only its end tag matters */
        if (strcmp(t->tag, t->skip_until) == 0) {
            t->skip_until[0] = '\0';
            if (t->ws == 0)
                t->ws = 1;
        }
        return;
    }
    if (strcmp(t->tag, "script") == 0 || strcmp(t->tag, "style") == 0) {
        t->skip_until[0] = '/';
        memcpy(t->skip_until + 1, t->tag, strlen(t->tag) + 1);
        return;
    }
    const char *name = t->tag[0] == '/' ? t->tag + 1 : t->tag;
    for (size_t i = 0; i < sizeof(inline_tags) / sizeof(inline_tags[0]); i++)
        if (strcmp(name, inline_tags[i]) == 0)
            return;
    if (strcmp(name, "br") == 0 || strcmp(name, "p") == 0 || strcmp(name, "div") == 0 ||
        strcmp(name, "tr") == 0 || strcmp(name, "li") == 0 ||
        (name[0] == 'h' && name[1] >= '1' && name[1] <= '6'))
        t->ws = 2;
    else if (t->ws == 0)
        t->ws = 1;
}

static bool is_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static void html(struct mime_text *t, struct mime_textbuf *out, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && !out->full) {
        unsigned char c = (unsigned char)s[i];
        switch (t->hs) {
        case H_TEXT: {
            size_t j = i;
            while (j < n && s[j] != '<' && s[j] != '&')
                j++;
            if (!t->skip_until[0])
                put(t, out, s + i, j - i);
            i = j;
            if (i < n) {
                if (s[i] == '<') {
                    t->hs = H_TAGNAME;
                    t->ntag = 0;
                } else if (!t->skip_until[0]) {
                    t->hs = H_ENT;
                    t->nent = 0;
                }
                i++;
            }
            continue;
        }
        case H_ENT:
            if (c == ';') {
                entity_end(t, out, true);
                i++;
            } else if ((is_alnum(c) || (c == '#' && t->nent == 0)) && t->nent < ENT_MAX) {
                t->ent[t->nent++] = (char)c;
                i++;
            } else
                entity_end(t, out, false); /* c is read again as text */
            continue;
        case H_TAGNAME:
            if (t->ntag == 0 && c == '!') {
                t->tag[t->ntag++] = '!';
                i++;
            } else if (t->ntag == 1 && t->tag[0] == '!' && c == '-') {
                t->hs = H_COMMENT; /* "<!-" : close enough to a comment */
                t->dashes = 0;
                i++;
            } else if (is_alnum(c) || (c == '/' && t->ntag == 0)) {
                if (t->ntag < sizeof(t->tag) - 1)
                    t->tag[t->ntag++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
                i++;
            } else if (t->ntag == 0 && !t->skip_until[0] && c != '/') {
                t->hs = H_TEXT; /* a lone '<' is text */
                put(t, out, "<", 1);
            } else
                t->hs = H_TAG;
            continue;
        case H_TAG:
            if (c == '>')
                tag_end(t);
            else if (c == '\'')
                t->hs = H_TAG_Q1;
            else if (c == '"')
                t->hs = H_TAG_Q2;
            i++;
            continue;
        case H_TAG_Q1:
        case H_TAG_Q2: {
            const char *q = memchr(s + i, t->hs == H_TAG_Q1 ? '\'' : '"', n - i);
            if (!q) {
                i = n;
                continue;
            }
            i = (size_t)(q - s) + 1;
            t->hs = H_TAG;
            continue;
        }
        case H_COMMENT:
            if (c == '>' && t->dashes >= 2) {
                t->hs = H_TEXT;
                if (t->ws == 0)
                    t->ws = 1;
            }
            t->dashes = c == '-' ? t->dashes + 1 : 0;
            i++;
            continue;
        }
    }
}

static void text_out(struct mime_text *t, struct mime_textbuf *out, const char *s, size_t n)
{
    if (t->html)
        html(t, out, s, n);
    else
        put(t, out, s, n);
}

/* ---- stage 2: charset ----------------------------------------------------------------------- */

/* Lenient path: valid UTF-8 passes, other bytes are ISO-8859-1. s holds pending + new bytes;
 * returns how many trailing bytes form an incomplete sequence to carry over. */
static size_t lenient(struct mime_text *t, struct mime_textbuf *out, const char *s, size_t n,
                      bool last)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int l = mime_header_utf8_len(u + i, n - i);
        if (l > 0) {
            i += (size_t)l;
            continue;
        }
        text_out(t, out, s + run, i - run);
        if (l < 0 && !last)
            return n - i;
        char two[2] = {(char)(0xC0 | (u[i] >> 6)), (char)(0x80 | (u[i] & 0x3F))};
        text_out(t, out, two, 2);
        run = ++i;
    }
    text_out(t, out, s + run, n - run);
    return 0;
}

static void fffd(struct mime_text *t, struct mime_textbuf *out)
{
    text_out(t, out, "\xEF\xBF\xBD", 3);
}

/* iconv path; returns the trailing bytes of an incomplete sequence to carry over. */
static size_t convert(struct mime_text *t, struct mime_textbuf *out, const char *s, size_t n,
                      bool last)
{
    /* iconv's prototype takes char ** for input it does not modify. */
    char *ip = (char *)(uintptr_t)s;
    size_t ileft = n;
    char buf[CHUNK];
    while (ileft > 0 && !out->full) {
        char *op = buf;
        size_t oleft = sizeof(buf);
        size_t r = iconv(t->cd, &ip, &ileft, &op, &oleft);
        text_out(t, out, buf, sizeof(buf) - oleft);
        if (r != (size_t)-1 || errno == E2BIG)
            continue;
        if (errno == EINVAL && !last && ileft < PEND_MAX)
            return ileft;
        fffd(t, out); /* EILSEQ, or an incomplete sequence that cannot complete */
        ip++;
        ileft--;
    }
    return 0;
}

/* Stage 2 entry: s is decoded body bytes, at most CHUNK of them. */
static void charset_in(struct mime_text *t, struct mime_textbuf *out, const char *s, size_t n,
                       bool last)
{
    char buf[PEND_MAX + CHUNK];
    memcpy(buf, t->pend, t->npend);
    memcpy(buf + t->npend, s, n);
    size_t total = t->npend + n, keep;
    keep = t->cd == (iconv_t)-1 ? lenient(t, out, buf, total, last)
                                : convert(t, out, buf, total, last);
    memcpy(t->pend, buf + total - keep, keep);
    t->npend = keep;
}

/* Collects decoded bytes into blocks and converts each full one. */
static void block_add(struct mime_text *t, struct mime_textbuf *out, const char *s, size_t n)
{
    while (n > 0 && !out->full) {
        size_t k = CHUNK - t->nblk < n ? CHUNK - t->nblk : n;
        memcpy(t->blk + t->nblk, s, k);
        t->nblk += k;
        s += k;
        n -= k;
        if (t->nblk == CHUNK) {
            charset_in(t, out, t->blk, CHUNK, false);
            t->nblk = 0;
        }
    }
}

/* ---- stage 1: transfer encoding ------------------------------------------------------------- */

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes up to CHUNK input bytes of s into buf; returns the bytes written (never more than
 * consumed, so buf of CHUNK bytes is enough). */
static size_t decode_base64(struct mime_text *t, const char *s, size_t n, char *buf)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '=') { /* padding ends a group: drop the partial bits (RFC 2045 §6.8) */
            t->b64_bits = 0;
            t->b64_acc = 0;
            continue;
        }
        int v = b64val(c);
        if (v < 0)
            continue; /* line breaks and anything outside the alphabet are ignored */
        t->b64_acc = ((t->b64_acc << 6) | (unsigned)v) & 0xFFFFFF;
        t->b64_bits += 6;
        if (t->b64_bits >= 8) {
            t->b64_bits -= 8;
            buf[o++] = (char)((t->b64_acc >> t->b64_bits) & 0xFF);
        }
    }
    return o;
}

static size_t decode_qp(struct mime_text *t, const char *s, size_t n, char *buf)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (t->qp_state) {
        case 0:
            if (c == '=')
                t->qp_state = 1;
            else
                buf[o++] = (char)c;
            break;
        case 1: /* after '=' */
            if (hexval(c) >= 0) {
                t->qp_hi = hexval(c);
                t->qp_state = 2;
            } else if (c == '\r')
                t->qp_state = 3;
            else if (c == '\n')
                t->qp_state = 0; /* soft line break (RFC 2045 §6.7 rule 5) */
            else if (c == ' ' || c == '\t')
                t->qp_state = 4;
            else { /* not an escape: keep the '=' (rule 1's robustness note) */
                buf[o++] = '=';
                buf[o++] = (char)c;
                t->qp_state = 0;
            }
            break;
        case 2: /* after "=X" */
            if (hexval(c) >= 0)
                buf[o++] = (char)(t->qp_hi * 16 + hexval(c));
            else {
                buf[o++] = '=';
                buf[o++] = (char)"0123456789ABCDEF"[t->qp_hi];
                buf[o++] = (char)c;
            }
            t->qp_state = 0;
            break;
        case 3: /* after "=\r" */
            t->qp_state = 0;
            if (c != '\n')
                buf[o++] = (char)c;
            break;
        default: /* after "= ": transport padding before a soft break (rule 3) */
            if (c == '\r')
                t->qp_state = 3;
            else if (c == '\n')
                t->qp_state = 0;
            else if (c != ' ' && c != '\t') {
                buf[o++] = '=';
                buf[o++] = (char)c;
                t->qp_state = 0;
            }
            break;
        }
    }
    return o;
}

/* ---- public --------------------------------------------------------------------------------- */

struct mime_text *mime_text_new(const char *encoding, const char *charset, bool is_html)
{
    struct mime_text *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    if (encoding && strcasecmp(encoding, "base64") == 0)
        t->cte = CTE_BASE64;
    else if (encoding && strcasecmp(encoding, "quoted-printable") == 0)
        t->cte = CTE_QP;
    t->html = is_html;
    t->cd = (iconv_t)-1;
    char buf[MIME_HEADER_MAX_CHARSET + 1];
    const char *name = mime_header_charset_iconv_name(charset, buf, sizeof(buf));
    if (name)
        t->cd = iconv_open("UTF-8", name); /* stays (iconv_t)-1 if unknown: lenient path */
    return t;
}

int mime_text_feed(struct mime_text *t, const char *data, size_t len, struct mime_textbuf *out)
{
    /* quoted-printable may write up to 3 bytes per input byte on malformed escapes */
    const size_t step = t->cte == CTE_QP ? CHUNK / 3 : CHUNK;
    char buf[CHUNK];
    while (len > 0 && !out->full && !out->oom) {
        size_t n = len < step ? len : step;
        if (t->cte == CTE_BASE64)
            block_add(t, out, buf, decode_base64(t, data, n, buf));
        else if (t->cte == CTE_QP)
            block_add(t, out, buf, decode_qp(t, data, n, buf));
        else
            block_add(t, out, data, n);
        data += n;
        len -= n;
    }
    return out->oom ? -1 : 0;
}

int mime_text_finish(struct mime_text *t, struct mime_textbuf *out)
{
    if (t->cte == CTE_QP && t->qp_state == 1) /* a body ending in "=" or "=X": kept as text */
        block_add(t, out, "=", 1);
    else if (t->cte == CTE_QP && t->qp_state == 2)
        block_add(t, out, (const char[]){'=', "0123456789ABCDEF"[t->qp_hi]}, 2);
    if (!out->full)
        charset_in(t, out, t->blk, t->nblk, true);
    t->nblk = 0;
    if (t->cd != (iconv_t)-1) { /* back to the initial shift state */
        char buf[64], *op = buf;
        size_t oleft = sizeof(buf);
        if (iconv(t->cd, NULL, NULL, &op, &oleft) == (size_t)-1)
            oleft = sizeof(buf);
        text_out(t, out, buf, sizeof(buf) - oleft);
    }
    if (t->html && t->hs == H_ENT)
        entity_end(t, out, false);
    return out->oom ? -1 : 0;
}

void mime_text_free(struct mime_text **t)
{
    if (!*t)
        return;
    if ((*t)->cd != (iconv_t)-1)
        iconv_close((*t)->cd);
    free(*t);
    *t = NULL;
}
