/* Header field parsing for MIME messages (see header.h).
 *
 * Every parser here is a hand-written recursive descent over one field value held in memory,
 * tolerant in the way mail readers are: the grammar of RFC 5322 / RFC 2045 is followed where
 * the input follows it, and anything else is skipped up to the next separator instead of being
 * an error. Output strings are built in a small growable buffer (struct sbuf) whose allocation
 * failure is sticky, so code paths stay linear and the one check happens at the end.
 *
 * Charsets: a MIME charset name is normalised (lower-case, RFC 2231 language suffix dropped,
 * a few common mislabels mapped to the superset that is really meant, as WHATWG's Encoding
 * standard does) and handed to iconv. US-ASCII, UTF-8, unknown and absent charsets take the
 * "UTF-8 where valid, ISO-8859-1 byte by byte where not" path, which always yields UTF-8 and
 * reads both modern undeclared 8-bit mail and old Latin-1 mail sensibly. */
#include "proto/mime/header.h"

#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- growable string ------------------------------------------------------------------------ */

struct sbuf {
    char *d;
    size_t len, cap;
    bool oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
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
    if (n)
        memcpy(b->d + b->len, s, n);
    b->len += n;
    b->d[b->len] = '\0';
}

static void sb_addc(struct sbuf *b, char c)
{
    sb_add(b, &c, 1);
}

/* Returns the NUL-terminated string (never NULL unless out of memory) and resets b. */
static char *sb_take(struct sbuf *b)
{
    if (!b->oom && !b->d)
        sb_add(b, "", 0);
    char *s = b->oom ? NULL : b->d;
    if (b->oom)
        free(b->d);
    memset(b, 0, sizeof(*b));
    return s;
}

static void sb_free(struct sbuf *b)
{
    free(b->d);
    memset(b, 0, sizeof(*b));
}

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_fws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* ---- header block --------------------------------------------------------------------------- */

/* Index just past the line starting at i (past its LF, or len). */
static size_t line_next(const char *h, size_t len, size_t i)
{
    const char *lf = memchr(h + i, '\n', len - i);
    return lf ? (size_t)(lf - h) + 1 : len;
}

int mime_header_next_field(const char *hdr, size_t len, size_t *pos,
                           struct mime_header_field *field_r)
{
    size_t i = *pos;
    while (i < len) {
        size_t next = line_next(hdr, len, i);
        size_t end = next;
        if (end > i && hdr[end - 1] == '\n')
            end--;
        if (end > i && hdr[end - 1] == '\r')
            end--;
        if (end == i) { /* blank line: end of the header (RFC 5322 §2.1) */
            *pos = len;
            return 0;
        }
        if (is_wsp(hdr[i])) { /* continuation of a skipped line */
            i = next;
            continue;
        }
        const char *colon = memchr(hdr + i, ':', end - i);
        size_t name_end = colon ? (size_t)(colon - hdr) : i;
        while (name_end > i && is_wsp(hdr[name_end - 1]))
            name_end--; /* RFC 5322 §4.5: obs-optional WSP before the colon */
        bool ok = colon && name_end > i;
        for (size_t k = i; ok && k < name_end; k++)
            ok = hdr[k] >= 33 && hdr[k] <= 126; /* RFC 5322 §3.6.8 ftext */
        size_t j = next;
        while (j < len && is_wsp(hdr[j]))
            j = line_next(hdr, len, j);
        if (ok) {
            field_r->name = hdr + i;
            field_r->name_len = name_end - i;
            field_r->value = colon + 1;
            field_r->value_len = j - (size_t)(colon + 1 - hdr);
            *pos = j;
            return 1;
        }
        i = j; /* not a field: skip it with its continuations */
    }
    *pos = len;
    return 0;
}

char *mime_header_unfold(const char *value, size_t len)
{
    size_t i = 0;
    while (i < len && is_fws(value[i]))
        i++;
    char *out = malloc(len - i + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (; i < len; i++) {
        char c = value[i];
        if (c == '\n' || (c == '\r' && i + 1 < len && value[i + 1] == '\n'))
            continue; /* RFC 5322 §2.2.3 */
        out[o++] = c ? c : ' ';
    }
    while (o > 0 && (is_wsp(out[o - 1]) || out[o - 1] == '\r'))
        o--;
    out[o] = '\0';
    return out;
}

/* ---- charsets ------------------------------------------------------------------------------- */

int mime_header_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    int need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    for (int k = 1; k <= need; k++) {
        if ((size_t)k >= n)
            return -1;
        unsigned char lim_lo = k == 1 ? lo : 0x80, lim_hi = k == 1 ? hi : 0xBF;
        if (s[k] < lim_lo || s[k] > lim_hi)
            return 0;
    }
    return need + 1;
}

/* Appends s[0..n) read as UTF-8 where valid and ISO-8859-1 where not. */
static void append_lenient(struct sbuf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        while (run < n && u[run] < 0x80)
            run++;
        sb_add(b, s + i, run - i);
        i = run;
        if (i >= n)
            break;
        int l = mime_header_utf8_len(u + i, n - i);
        if (l > 0) {
            sb_add(b, s + i, (size_t)l);
            i += (size_t)l;
        } else {
            char two[2] = {(char)(0xC0 | (u[i] >> 6)), (char)(0x80 | (u[i] & 0x3F))};
            sb_add(b, two, 2);
            i++;
        }
    }
}

/* The iconv name for a MIME charset, written to buf: "" when the lenient UTF-8 path applies
 * (absent, ASCII, UTF-8, "unknown"), NULL for a name iconv must not see (too long, or with
 * characters such as '/' that iconv would read as options). */
static const char *charset_name(const char *charset, char *buf, size_t buflen)
{
    static const struct {
        const char *alias, *name;
    } map[] = {
        /* the lenient path */
        {"us-ascii", ""},
        {"ascii", ""},
        {"ansi_x3.4-1968", ""},
        {"utf-8", ""},
        {"utf8", ""},
        {"unicode-1-1-utf-8", ""},
        {"unknown", ""},
        {"unknown-8bit", ""},
        {"x-unknown", ""},
        {"x-user-defined", ""},
        {"default", ""},
        /* labels commonly used for a superset (WHATWG Encoding standard, §4.2) */
        {"iso-8859-1", "WINDOWS-1252"},
        {"iso8859-1", "WINDOWS-1252"},
        {"iso_8859-1", "WINDOWS-1252"},
        {"latin1", "WINDOWS-1252"},
        {"l1", "WINDOWS-1252"},
        {"cp819", "WINDOWS-1252"},
        {"iso-8859-9", "WINDOWS-1254"},
        {"ks_c_5601-1987", "CP949"},
        {"ks_c_5601", "CP949"},
        {"euc-kr", "CP949"},
        {"gb2312", "GB18030"},
        {"gb_2312-80", "GB18030"},
        {"gbk", "GB18030"},
        {"x-gbk", "GB18030"},
        {"euc-cn", "GB18030"},
        {"cp936", "GB18030"},
        {"shift_jis", "CP932"},
        {"shift-jis", "CP932"},
        {"x-sjis", "CP932"},
        {"sjis", "CP932"},
        {"windows-31j", "CP932"},
        {"tis-620", "CP874"},
        {"big5", "BIG5-HKSCS"},
    };
    if (!charset)
        return "";
    while (is_fws(*charset))
        charset++;
    size_t n = 0;
    /* RFC 2231 §5: "charset*language" */
    while (charset[n] && charset[n] != '*' && !is_fws(charset[n]))
        n++;
    if (n == 0)
        return "";
    if (n >= buflen || n > MIME_HEADER_MAX_CHARSET)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        char c = (char)tolower((unsigned char)charset[i]);
        if (!isalnum((unsigned char)c) && !strchr("-_.:+()", c))
            return NULL;
        buf[i] = c;
    }
    buf[n] = '\0';
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(buf, map[i].alias) == 0)
            return map[i].name;
    return buf;
}

const char *mime_header_charset_iconv_name(const char *charset, char *buf, size_t buflen)
{
    const char *name = charset_name(charset, buf, buflen);
    return name && *name ? name : NULL;
}

static void append_u_fffd(struct sbuf *b)
{
    sb_add(b, "\xEF\xBF\xBD", 3);
}

/* Converts with cd, appending to b; invalid input becomes U+FFFD. */
static void iconv_append(struct sbuf *b, iconv_t cd, const char *in, size_t len)
{
    /* iconv's prototype takes char ** for input it does not modify. */
    char *ip = (char *)(uintptr_t)in;
    size_t ileft = len;
    char out[1024];
    while (ileft > 0 && !b->oom) {
        char *op = out;
        size_t oleft = sizeof(out);
        size_t r = iconv(cd, &ip, &ileft, &op, &oleft);
        sb_add(b, out, sizeof(out) - oleft);
        if (r != (size_t)-1 || errno == E2BIG)
            continue;
        if (errno == EILSEQ && ileft > 0) {
            append_u_fffd(b);
            ip++;
            ileft--;
            continue;
        }
        append_u_fffd(b); /* EINVAL: an incomplete sequence ends the input */
        break;
    }
    /* return to the initial shift state (stateful charsets such as ISO-2022-JP) */
    char *op = out;
    size_t oleft = sizeof(out);
    if (iconv(cd, NULL, NULL, &op, &oleft) == (size_t)-1)
        oleft = sizeof(out);
    sb_add(b, out, sizeof(out) - oleft);
}

/* Appends in[0..len) converted from charset to UTF-8; an unknown charset takes the lenient path. */
static void convert_append(struct sbuf *b, const char *charset, const char *in, size_t len)
{
    char buf[MIME_HEADER_MAX_CHARSET + 1];
    const char *name = charset_name(charset, buf, sizeof(buf));
    if (name && *name) {
        iconv_t cd = iconv_open("UTF-8", name);
        if (cd != (iconv_t)-1) {
            iconv_append(b, cd, in, len);
            iconv_close(cd);
            return;
        }
    }
    append_lenient(b, in, len);
}

/* Whether charset can be converted: known to iconv, or one the lenient path is meant for. */
static bool charset_known(const char *charset)
{
    char buf[MIME_HEADER_MAX_CHARSET + 1];
    const char *name = charset_name(charset, buf, sizeof(buf));
    if (!name)
        return false;
    if (!*name)
        return true;
    iconv_t cd = iconv_open("UTF-8", name);
    if (cd == (iconv_t)-1)
        return false;
    iconv_close(cd);
    return true;
}

int mime_header_charset_to_utf8(const char *charset, const char *in, size_t len, char **out_r,
                                size_t *out_len_r)
{
    struct sbuf b = {0};
    convert_append(&b, charset, in, len);
    size_t n = b.len;
    char *s = sb_take(&b);
    if (!s)
        return -1;
    *out_r = s;
    if (out_len_r)
        *out_len_r = n;
    return 0;
}

/* ---- RFC 2047 encoded-words ----------------------------------------------------------------- */

static int b64val(int c)
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

struct eword {
    const char *charset; /* not NUL-terminated */
    size_t charset_len;
    char enc; /* 'B' or 'Q' */
    const char *text;
    size_t text_len;
    size_t end; /* index just past "?=" */
};

/* Recognises "=?charset?enc?text?=" at v[i] (RFC 2047 §2); no whitespace inside. When it
 * fails, *resume_r is where the next attempt may start: past the point where the search for
 * "?=" stopped, since no "=?" before it can end any sooner. That keeps decoding linear on
 * input like "=?a?q?a=?a?q?a..." without a single "?=". */
static bool eword_parse(const char *v, size_t len, size_t i, struct eword *w, size_t *resume_r)
{
    size_t p = i + 2, cs = p;
    *resume_r = i + 1;
    while (p < len && p - cs <= MIME_HEADER_MAX_CHARSET + 16 && v[p] != '?' &&
           (unsigned char)v[p] > 32 && (unsigned char)v[p] < 127)
        p++;
    if (p >= len || v[p] != '?' || p == cs || p - cs > MIME_HEADER_MAX_CHARSET + 16)
        return false;
    w->charset = v + cs;
    w->charset_len = p - cs;
    p++;
    if (p + 1 >= len || v[p + 1] != '?')
        return false;
    w->enc = (char)toupper((unsigned char)v[p]);
    if (w->enc != 'B' && w->enc != 'Q')
        return false;
    p += 2;
    size_t t = p;
    while (p + 1 < len && !(v[p] == '?' && v[p + 1] == '=')) {
        if ((unsigned char)v[p] <= 32 || (unsigned char)v[p] >= 127) {
            *resume_r = p;
            return false;
        }
        p++;
    }
    if (p + 1 >= len) {
        *resume_r = len;
        return false;
    }
    w->text = v + t;
    w->text_len = p - t;
    w->end = p + 2;
    return true;
}

/* Decodes the encoded text of w, appending bytes to b; false when malformed. */
static bool eword_decode(const struct eword *w, struct sbuf *b)
{
    if (w->enc == 'Q') { /* RFC 2047 §4.2 */
        for (size_t i = 0; i < w->text_len; i++) {
            char c = w->text[i];
            if (c == '_')
                sb_addc(b, ' ');
            else if (c == '=' && i + 2 < w->text_len &&
                     hexval((unsigned char)w->text[i + 1]) >= 0 &&
                     hexval((unsigned char)w->text[i + 2]) >= 0) {
                sb_addc(b, (char)(hexval((unsigned char)w->text[i + 1]) * 16 +
                                  hexval((unsigned char)w->text[i + 2])));
                i += 2;
            } else
                sb_addc(b, c);
        }
        return true;
    }
    unsigned acc = 0; /* RFC 2047 §4.1: base64 */
    int bits = 0;
    for (size_t i = 0; i < w->text_len; i++) {
        char c = w->text[i];
        if (c == '=')
            break;
        int v = b64val((unsigned char)c);
        if (v < 0)
            return false;
        acc = ((acc << 6) | (unsigned)v) & 0xFFFFFF;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            sb_addc(b, (char)((acc >> bits) & 0xFF));
        }
    }
    return true;
}

struct decoder {
    struct sbuf out;
    struct sbuf pend; /* decoded bytes of adjacent words in one charset */
    char charset[MIME_HEADER_MAX_CHARSET + 17];
};

static void decoder_flush(struct decoder *d)
{
    if (d->pend.len)
        convert_append(&d->out, d->charset, d->pend.d, d->pend.len);
    d->pend.len = 0;
    d->charset[0] = '\0';
}

static bool all_fws(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_fws(s[i]))
            return false;
    return true;
}

char *mime_header_decode(const char *v, size_t len)
{
    struct decoder d;
    memset(&d, 0, sizeof(d));
    size_t i = 0, text_start = 0;
    bool after_word = false;
    size_t resume = 0;
    while (i < len) {
        struct eword w;
        if (v[i] != '=' || i + 1 >= len || v[i + 1] != '?' || i < resume) {
            i++;
            continue;
        }
        if (!eword_parse(v, len, i, &w, &resume)) {
            i++;
            continue;
        }
        char cs[sizeof(d.charset)];
        memcpy(cs, w.charset, w.charset_len);
        cs[w.charset_len] = '\0';
        struct sbuf bytes = {0};
        bool ok = charset_known(cs) && eword_decode(&w, &bytes);
        if (!ok) { /* stays as it is, as ordinary text */
            sb_free(&bytes);
            i = w.end;
            continue;
        }
        if (!(after_word && all_fws(v + text_start, i - text_start))) {
            decoder_flush(&d);
            append_lenient(&d.out, v + text_start, i - text_start);
        }
        if (d.pend.len && strcasecmp(d.charset, cs) != 0)
            decoder_flush(&d);
        memcpy(d.charset, cs, w.charset_len + 1);
        sb_add(&d.pend, bytes.d ? bytes.d : "", bytes.len);
        d.out.oom |= bytes.oom;
        sb_free(&bytes);
        i = text_start = w.end;
        after_word = true;
    }
    decoder_flush(&d);
    append_lenient(&d.out, v + text_start, len - text_start);
    d.out.oom |= d.pend.oom;
    sb_free(&d.pend);
    for (size_t k = 0; k < d.out.len; k++) /* NUL, CR, LF ... decoded from a word */
        if ((unsigned char)d.out.d[k] < 32 && d.out.d[k] != '\t')
            d.out.d[k] = ' ';
    return sb_take(&d.out);
}

/* ---- parameters (RFC 2045 §5.1, RFC 2231) --------------------------------------------------- */

/* RFC 2045 §5.1 token character; 8-bit bytes are accepted (raw UTF-8 file names). */
static bool is_token(unsigned char c)
{
    return c >= 0x80 || (c > 32 && c < 127 && !strchr("()<>@,;:\\\"/[]?=", c));
}

/* Skips a comment at v[*p] == '(' (nested, with quoted-pairs); saves its text when save is set. */
static void skip_comment(const char *v, size_t len, size_t *p, struct sbuf *save)
{
    int depth = 0;
    size_t i = *p;
    if (save)
        save->len = 0;
    for (; i < len; i++) {
        char c = v[i];
        if (c == '\\' && i + 1 < len) {
            i++;
            if (save && depth == 1)
                sb_addc(save, v[i]);
            continue;
        }
        if (c == '(') {
            if (depth++ == 0)
                continue;
        } else if (c == ')') {
            if (--depth == 0) {
                i++;
                break;
            }
        }
        if (save && depth >= 1)
            sb_addc(save, c == '\r' || c == '\n' ? ' ' : c);
    }
    *p = i;
}

static void skip_cfws(const char *v, size_t len, size_t *p)
{
    while (*p < len) {
        if (is_fws(v[*p]))
            (*p)++;
        else if (v[*p] == '(')
            skip_comment(v, len, p, NULL);
        else
            break;
    }
}

/* Reads a quoted-string at v[*p] == '"', unescaping quoted-pairs; CR/LF of folding dropped. */
static void read_quoted(const char *v, size_t len, size_t *p, struct sbuf *out)
{
    size_t i = *p + 1;
    for (; i < len && v[i] != '"'; i++) {
        if (v[i] == '\\' && i + 1 < len)
            i++;
        else if (v[i] == '\r' || v[i] == '\n')
            continue;
        sb_addc(out, v[i]);
    }
    *p = i < len ? i + 1 : len;
}

struct rawparam {
    char *name, *value;
    /* RFC 2231 section, parsed from name */
    size_t baselen; /* length of the name before '*'; 0 when not a section */
    unsigned idx;
    bool ext, used;
};

/* Splits an RFC 2231 §3/§4 attribute "base*" (extended), "base*N" or "base*N*" into its base,
 * section number and extended mark; false when the name has another form. */
static bool section_parse(struct rawparam *r)
{
    char *star = strchr(r->name, '*');
    if (!star || star == r->name)
        return false;
    const char *s = star + 1;
    unsigned idx = 0;
    bool ext = false;
    if (*s == '\0')
        ext = true;
    else {
        if (*s < '0' || *s > '9')
            return false;
        while (*s >= '0' && *s <= '9') {
            idx = idx * 10 + (unsigned)(*s - '0');
            if (idx >= MIME_HEADER_MAX_SECTIONS)
                return false;
            s++;
        }
        if (*s == '*') {
            ext = true;
            s++;
        }
        if (*s != '\0')
            return false;
    }
    r->baselen = (size_t)(star - r->name);
    r->idx = idx;
    r->ext = ext;
    return true;
}

static void pct_decode(struct sbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval((unsigned char)s[i + 1]) >= 0 &&
            hexval((unsigned char)s[i + 2]) >= 0) {
            sb_addc(b,
                    (char)(hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2])));
            i += 2;
        } else
            sb_addc(b, s[i]);
    }
}

static int cmp_idx(const void *a, const void *b)
{
    const struct rawparam *x = *(const struct rawparam *const *)a;
    const struct rawparam *y = *(const struct rawparam *const *)b;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

struct plist {
    struct mime_param *v;
    size_t n, cap;
    bool oom;
};

static void plist_add(struct plist *l, char *name, char *value, char *decoded, bool ext)
{
    if (l->oom || !name || !value || !decoded) {
        free(name);
        free(value);
        free(decoded);
        l->oom = true;
        return;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        struct mime_param *v = realloc(l->v, cap * sizeof(*v));
        if (!v) {
            free(name);
            free(value);
            free(decoded);
            l->oom = true;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    struct mime_param *v = l->v;
    v[l->n].name = name;
    v[l->n].value = value;
    v[l->n].decoded = decoded;
    v[l->n].extended = ext;
    l->n++;
}

/* Emits the RFC 2231 group of sections named like raw[first] (all unused raws of that base). */
static void merge_sections(struct plist *l, struct rawparam *raw, size_t n, size_t first)
{
    struct rawparam *sec[MIME_HEADER_MAX_PARAMS];
    size_t ns = 0;
    const char *base = raw[first].name;
    size_t bl = raw[first].baselen;
    for (size_t i = first; i < n; i++) {
        if (raw[i].used || raw[i].baselen != bl || strncmp(raw[i].name, base, bl) != 0)
            continue;
        raw[i].used = true;
        sec[ns++] = &raw[i];
    }
    qsort(sec, ns, sizeof(sec[0]), cmp_idx);
    bool ok = true, have_ext = false;
    for (size_t i = 0; i < ns; i++) {
        ok = ok && sec[i]->idx == i; /* no gaps, no repeats */
        have_ext = have_ext || sec[i]->ext;
    }
    if (!ok) { /* keep them as they came (Dovecot does the same) */
        for (size_t i = 0; i < ns; i++)
            plist_add(l, strdup(sec[i]->name), strdup(sec[i]->value),
                      mime_header_decode(sec[i]->value, strlen(sec[i]->value)), false);
        return;
    }
    struct sbuf val = {0}, bytes = {0};
    char charset[MIME_HEADER_MAX_CHARSET + 1] = "";
    if (have_ext && !sec[0]->ext)
        sb_add(&val, "''", 2);
    for (size_t i = 0; i < ns; i++) {
        const char *s = sec[i]->value;
        size_t sl = strlen(s);
        if (!have_ext) {
            sb_add(&val, s, sl);
            continue;
        }
        if (!sec[i]->ext) { /* escape what the extended form would read as an escape */
            for (size_t k = 0; k < sl; k++)
                if (s[k] == '%')
                    sb_add(&val, "%25", 3);
                else
                    sb_addc(&val, s[k]);
            sb_add(&bytes, s, sl);
            continue;
        }
        sb_add(&val, s, sl);
        if (i == 0) { /* RFC 2231 §4: charset'language'text */
            const char *q1 = strchr(s, '\'');
            const char *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
            if (q2) {
                size_t cl = (size_t)(q1 - s);
                if (cl <= MIME_HEADER_MAX_CHARSET) {
                    memcpy(charset, s, cl);
                    charset[cl] = '\0';
                }
                sl -= (size_t)(q2 + 1 - s);
                s = q2 + 1;
            }
        }
        pct_decode(&bytes, s, sl);
    }
    char *decoded = NULL;
    if (have_ext) {
        if (!bytes.oom && mime_header_charset_to_utf8(charset, bytes.d ? bytes.d : "", bytes.len,
                                                      &decoded, NULL) < 0)
            decoded = NULL;
    } else if (!val.oom)
        decoded = mime_header_decode(val.d ? val.d : "", val.len);
    if (bytes.oom)
        l->oom = true;
    sb_free(&bytes);
    char *name = strndup(base, bl);
    plist_add(l, name, sb_take(&val), decoded, have_ext);
}

int mime_header_params_parse(const char *v, size_t len, char **token_r,
                             struct mime_param **params_r, size_t *nparams_r)
{
    struct sbuf tok = {0};
    size_t p = 0;
    bool gap = false;
    while (p < len && v[p] != ';') {
        char c = v[p];
        if (c == '(' || is_fws(c)) {
            if (c == '(')
                skip_comment(v, len, &p, NULL);
            else
                p++;
            gap = true;
            continue;
        }
        /* CFWS may surround the '/' of "type / subtype"; elsewhere it separates two words,
         * which is kept as one space so that the caller sees an invalid token */
        if (gap && tok.len > 0 && tok.d[tok.len - 1] != '/' && c != '/')
            sb_addc(&tok, ' ');
        gap = false;
        if (c == '"')
            read_quoted(v, len, &p, &tok);
        else {
            sb_addc(&tok, (char)tolower((unsigned char)c));
            p++;
        }
    }
    struct rawparam raw[MIME_HEADER_MAX_PARAMS];
    size_t n = 0;
    bool oom = false;
    while (p < len && n < MIME_HEADER_MAX_PARAMS) {
        if (v[p] == ';')
            p++;
        skip_cfws(v, len, &p);
        if (p >= len)
            break;
        if (v[p] == ';')
            continue;
        size_t ns = p;
        while (p < len && (is_token((unsigned char)v[p])))
            p++;
        size_t ne = p;
        skip_cfws(v, len, &p);
        if (ns == ne || p >= len || v[p] != '=') { /* junk: skip to the next ';' */
            while (p < len && v[p] != ';') {
                if (v[p] == '"') {
                    struct sbuf junk = {0};
                    read_quoted(v, len, &p, &junk);
                    sb_free(&junk);
                } else
                    p++;
            }
            continue;
        }
        p++;
        skip_cfws(v, len, &p);
        struct sbuf val = {0};
        if (p < len && v[p] == '"') {
            read_quoted(v, len, &p, &val);
            while (p < len && v[p] != ';')
                p++;
        } else {
            size_t vs = p;
            while (p < len && is_token((unsigned char)v[p]))
                p++;
            size_t ve = p;
            skip_cfws(v, len, &p);
            if (p < len && v[p] != ';') { /* unquoted value with spaces: up to ';' */
                while (p < len && v[p] != ';')
                    p++;
                ve = p;
                while (ve > vs && is_fws(v[ve - 1]))
                    ve--;
            }
            for (size_t k = vs; k < ve; k++)
                if (v[k] != '\r' && v[k] != '\n')
                    sb_addc(&val, v[k]);
        }
        char *name = strndup(v + ns, ne - ns);
        char *value = sb_take(&val);
        if (!name || !value) {
            free(name);
            free(value);
            oom = true;
            break;
        }
        for (char *c = name; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        memset(&raw[n], 0, sizeof(raw[n]));
        raw[n].name = name;
        raw[n].value = value;
        if (!section_parse(&raw[n]))
            raw[n].baselen = 0;
        n++;
    }
    struct plist l = {0};
    l.oom = oom;
    for (size_t i = 0; i < n && !l.oom; i++) {
        if (raw[i].used)
            continue;
        if (raw[i].baselen == 0) {
            raw[i].used = true;
            plist_add(&l, strdup(raw[i].name), strdup(raw[i].value),
                      mime_header_decode(raw[i].value, strlen(raw[i].value)), false);
        } else
            merge_sections(&l, raw, n, i);
    }
    for (size_t i = 0; i < n; i++) {
        free(raw[i].name);
        free(raw[i].value);
    }
    char *token = sb_take(&tok);
    if (l.oom || !token) {
        free(token);
        mime_header_params_free(&l.v, l.n);
        return -1;
    }
    *token_r = token;
    *params_r = l.v;
    *nparams_r = l.n;
    return 0;
}

const struct mime_param *mime_header_param_find(const struct mime_param *params, size_t n,
                                                const char *name)
{
    const struct mime_param *plain = NULL;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(params[i].name, name) != 0)
            continue;
        if (params[i].extended)
            return &params[i];
        if (!plain)
            plain = &params[i];
    }
    return plain;
}

void mime_header_params_free(struct mime_param **params, size_t n)
{
    if (!*params)
        return;
    for (size_t i = 0; i < n; i++) {
        free((*params)[i].name);
        free((*params)[i].value);
        free((*params)[i].decoded);
    }
    free(*params);
    *params = NULL;
}

/* ---- addresses (RFC 5322 §3.4, §4.4) -------------------------------------------------------- */

struct ap {
    const char *s;
    size_t len, pos;
    struct sbuf comment; /* text of the last comment skipped */
    struct mime_address *list;
    size_t n, cap;
    bool oom;
};

/* RFC 5322 §3.2.3 atext; 8-bit bytes accepted (RFC 6532). */
static bool is_atext(unsigned char c)
{
    return c >= 0x80 || (c > 32 && c < 127 && !strchr("()<>[]:;@\\,.\"", c));
}

static bool ap_cfws(struct ap *a)
{
    size_t start = a->pos;
    while (a->pos < a->len) {
        if (is_fws(a->s[a->pos]))
            a->pos++;
        else if (a->s[a->pos] == '(') {
            skip_comment(a->s, a->len, &a->pos, &a->comment);
            a->oom |= a->comment.oom;
        } else
            break;
    }
    return a->pos > start;
}

/* Skips CFWS and commas (empty list elements, RFC 5322 §4.4 obs-addr-list). */
static void ap_skip_commas(struct ap *a)
{
    for (;;) {
        ap_cfws(a);
        if (a->pos < a->len && a->s[a->pos] == ',')
            a->pos++;
        else
            return;
    }
}

struct words {
    struct sbuf phrase, local;
    bool any;
};

/* Reads words (atoms, quoted-strings) and dots: a display-name phrase (obs-phrase allows the
 * dots) or a local-part (obs-local-part allows CFWS around them). */
static void ap_words(struct ap *a, struct words *w)
{
    bool space = false;
    for (;;) {
        if (ap_cfws(a) && w->any)
            space = true;
        if (a->pos >= a->len)
            break;
        unsigned char c = (unsigned char)a->s[a->pos];
        struct sbuf word = {0};
        if (c == '"')
            read_quoted(a->s, a->len, &a->pos, &word);
        else if (c == '.') {
            sb_addc(&word, '.');
            a->pos++;
        } else if (is_atext(c)) {
            size_t st = a->pos;
            while (a->pos < a->len && is_atext((unsigned char)a->s[a->pos]))
                a->pos++;
            sb_add(&word, a->s + st, a->pos - st);
        } else
            break;
        if (space)
            sb_addc(&w->phrase, ' ');
        sb_add(&w->phrase, word.d ? word.d : "", word.len);
        sb_add(&w->local, word.d ? word.d : "", word.len);
        a->oom |= word.oom;
        sb_free(&word);
        w->any = true;
        space = false;
    }
}

/* Reads a domain after '@': dot-atom with CFWS around the dots (obs-domain) or a literal. */
static char *ap_domain(struct ap *a)
{
    struct sbuf d = {0};
    ap_cfws(a);
    if (a->pos < a->len && a->s[a->pos] == '[') {
        for (; a->pos < a->len; a->pos++) {
            char c = a->s[a->pos];
            if (c == '\\' && a->pos + 1 < a->len)
                c = a->s[++a->pos];
            else if (is_fws(c))
                continue;
            sb_addc(&d, c);
            if (c == ']') {
                a->pos++;
                break;
            }
        }
    } else {
        for (;;) {
            ap_cfws(a);
            if (a->pos >= a->len)
                break;
            unsigned char c = (unsigned char)a->s[a->pos];
            if (c == '.') {
                sb_addc(&d, '.');
                a->pos++;
            } else if (is_atext(c)) {
                size_t st = a->pos;
                while (a->pos < a->len && is_atext((unsigned char)a->s[a->pos]))
                    a->pos++;
                sb_add(&d, a->s + st, a->pos - st);
            } else
                break;
        }
    }
    a->oom |= d.oom;
    return sb_take(&d);
}

static char *dup_or_null(const struct sbuf *b)
{
    return b->len ? strndup(b->d, b->len) : NULL;
}

static void ap_emit(struct ap *a, enum mime_address_kind kind, char *name, char *route,
                    char *mailbox, char *domain)
{
    if (a->oom || a->n >= MIME_HEADER_MAX_ADDRESSES)
        goto drop;
    struct mime_address e = {kind, name, route, mailbox, domain, false};
    if (kind == MIME_ADDRESS_MAILBOX) {
        if (!mailbox || !*mailbox) {
            free(e.mailbox);
            e.mailbox = strdup("MISSING_MAILBOX");
            e.invalid = true;
        }
        if (!domain || !*domain) {
            free(e.domain);
            e.domain = strdup("MISSING_DOMAIN");
            e.invalid = true;
        }
        if (!e.mailbox || !e.domain) {
            mailbox = e.mailbox;
            domain = e.domain;
            a->oom = true;
            goto drop;
        }
    }
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 4;
        struct mime_address *l = realloc(a->list, cap * sizeof(*l));
        if (!l) {
            mailbox = e.mailbox;
            domain = e.domain;
            a->oom = true;
            goto drop;
        }
        a->list = l;
        a->cap = cap;
    }
    a->list[a->n++] = e;
    return;
drop:
    free(name);
    free(route);
    free(mailbox);
    free(domain);
}

/* Skips what is left of a malformed address, up to ',' (or ';' inside a group). */
static void ap_skip_junk(struct ap *a, bool in_group, size_t start)
{
    for (;;) {
        ap_cfws(a);
        if (a->pos >= a->len)
            return;
        char c = a->s[a->pos];
        if (c == ',' || (in_group && c == ';')) {
            if (a->pos == start && !in_group)
                a->pos++; /* guarantee progress */
            return;
        }
        if (c == '"') {
            struct sbuf junk = {0};
            read_quoted(a->s, a->len, &a->pos, &junk);
            sb_free(&junk);
        } else
            a->pos++;
    }
}

static void ap_angle(struct ap *a, char *name)
{
    struct sbuf route = {0};
    char *last_domain = NULL;
    a->pos++; /* '<' */
    ap_cfws(a);
    /* obs-route = obs-domain-list ":" (RFC 5322 §4.4) */
    while (a->pos < a->len && a->s[a->pos] == '@') {
        a->pos++;
        free(last_domain);
        last_domain = ap_domain(a);
        if (route.len)
            sb_addc(&route, ',');
        sb_addc(&route, '@');
        sb_add(&route, last_domain ? last_domain : "", last_domain ? strlen(last_domain) : 0);
        ap_skip_commas(a);
    }
    char *route_s = NULL, *mailbox = NULL, *domain = NULL;
    if (route.len && (a->pos >= a->len || a->s[a->pos] != ':')) {
        /* "<@domain>": no local part, not a route */
        domain = last_domain;
        last_domain = NULL;
    } else {
        if (route.len) {
            a->pos++; /* ':' */
            route_s = dup_or_null(&route);
        }
        struct words w = {0};
        ap_words(a, &w);
        mailbox = dup_or_null(&w.local);
        if (a->pos < a->len && a->s[a->pos] == '@') {
            a->pos++;
            domain = ap_domain(a);
        }
        a->oom |= w.phrase.oom || w.local.oom;
        sb_free(&w.phrase);
        sb_free(&w.local);
    }
    free(last_domain);
    a->oom |= route.oom;
    sb_free(&route);
    ap_cfws(a);
    while (a->pos < a->len && a->s[a->pos] != '>' && a->s[a->pos] != ',')
        a->pos++;
    if (a->pos < a->len && a->s[a->pos] == '>')
        a->pos++;
    ap_emit(a, MIME_ADDRESS_MAILBOX, name, route_s, mailbox, domain);
}

static void ap_address(struct ap *a, bool in_group)
{
    size_t start = a->pos;
    struct words w = {0};
    a->comment.len = 0;
    ap_words(a, &w);
    char c = a->pos < a->len ? a->s[a->pos] : '\0';
    char *comment = dup_or_null(&a->comment);
    if (c == ':' && !in_group) { /* group = display-name ":" [group-list] ";" */
        a->pos++;
        ap_emit(a, MIME_ADDRESS_GROUP_START, NULL, NULL,
                strndup(w.phrase.d ? w.phrase.d : "", w.phrase.len), NULL);
        for (;;) {
            ap_skip_commas(a);
            if (a->pos >= a->len)
                break;
            if (a->s[a->pos] == ';') {
                a->pos++;
                break;
            }
            if (a->oom || a->n >= MIME_HEADER_MAX_ADDRESSES)
                break;
            ap_address(a, true);
        }
        ap_emit(a, MIME_ADDRESS_GROUP_END, NULL, NULL, NULL, NULL);
        free(comment);
    } else if (c == '<') {
        char *name = w.phrase.len ? strndup(w.phrase.d, w.phrase.len) : comment;
        if (name != comment)
            free(comment);
        ap_angle(a, name);
    } else if (c == '@') {
        a->pos++;
        char *mailbox = dup_or_null(&w.local);
        a->comment.len = 0;
        char *domain = ap_domain(a);
        ap_cfws(a); /* "user@host (Name)": the comment is the name */
        free(comment);
        ap_emit(a, MIME_ADDRESS_MAILBOX, dup_or_null(&a->comment), NULL, mailbox, domain);
    } else if (w.any) { /* a bare local part, or a phrase with nothing after it */
        ap_emit(a, MIME_ADDRESS_MAILBOX, comment, NULL, dup_or_null(&w.local), NULL);
    } else
        free(comment);
    a->oom |= w.phrase.oom || w.local.oom;
    sb_free(&w.phrase);
    sb_free(&w.local);
    ap_skip_junk(a, in_group, start);
}

int mime_header_addresses_parse(const char *value, size_t len, struct mime_address **list_r,
                                size_t *n_r)
{
    struct ap a;
    memset(&a, 0, sizeof(a));
    a.s = value;
    a.len = len;
    while (!a.oom && a.n < MIME_HEADER_MAX_ADDRESSES) {
        ap_skip_commas(&a);
        if (a.pos >= a.len)
            break;
        ap_address(&a, false);
    }
    sb_free(&a.comment);
    if (a.oom) {
        mime_header_addresses_free(&a.list, a.n);
        return -1;
    }
    *list_r = a.list;
    *n_r = a.n;
    return 0;
}

void mime_header_addresses_free(struct mime_address **list, size_t n)
{
    if (!*list)
        return;
    for (size_t i = 0; i < n; i++) {
        free((*list)[i].name);
        free((*list)[i].route);
        free((*list)[i].mailbox);
        free((*list)[i].domain);
    }
    free(*list);
    *list = NULL;
}
