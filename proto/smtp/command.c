/* SMTP command lines (see smtp.h): the verb, the MAIL and RCPT paths with their ESMTP
 * parameters, BDAT arguments and xtext.
 *
 * Everything is parsed by hand against the ABNF of RFC 5321 §4.1.2, extended by RFC 6531 §3.3
 * (UTF-8 in local parts, domains and parameter values), with the parameters of RFC 1870 (SIZE),
 * RFC 6152 and RFC 3030 (BODY), RFC 6531 (SMTPUTF8), RFC 3461 (RET, ENVID, NOTIFY, ORCPT) and
 * RFC 4954 (AUTH). The grammar is applied strictly, with one exception many clients need: a
 * space after "FROM:" / "TO:". Character classes are plain ASCII tests so the result never
 * depends on the locale.
 *
 * A path is parsed in one pass over at most SMTP_PATH_MAX bytes: the optional source route is
 * checked and dropped, the local part is checked as a Dot-string or a Quoted-string (and
 * rewritten in its simplest form: quotes only when needed, escapes only for '"' and '\'), the
 * domain as a host name or an address literal. The normalised address is never longer than
 * what was written, so it always fits in SMTP_ADDRESS_MAX. */
#include "proto/smtp/smtp.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <string.h>

#include "proto/text/utf8.h"

/* RFC 5321 §4.5.3.1.1 and §4.5.3.1.2 */
#define LOCAL_MAX 64
#define DOMAIN_MAX 255
/* RFC 1035 §2.3.4: a DNS label */
#define LABEL_MAX 63
/* RFC 1870 §3: size-value ::= 1*20DIGIT */
#define SIZE_DIGITS_MAX 20
/* The longest textual IPv6 address inet_pton can take (with an IPv4 tail). */
#define IPV6_TEXT_MAX 45

static const struct smtp_reply reply_ok = {0, ""};
static const struct smtp_reply reply_bad_sender = {501, "5.1.7 Bad sender address syntax"};
static const struct smtp_reply reply_bad_rcpt = {501, "5.1.3 Bad recipient address syntax"};
static const struct smtp_reply reply_bad_param = {501, "5.5.4 Syntax error in parameters"};
static const struct smtp_reply reply_bad_value = {501, "5.5.4 Invalid parameter value"};
static const struct smtp_reply reply_dup_param = {501, "5.5.4 Duplicate parameter"};
static const struct smtp_reply reply_unknown_param = {555, "5.5.4 Unsupported parameter"};

/* ---- character classes ---------------------------------------------------------------------- */

static bool is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alnum(unsigned char c)
{
    return is_alpha(c) || is_digit(c);
}

/* RFC 5322 §3.2.3 atext, ASCII part */
static bool is_atext(unsigned char c)
{
    return is_alnum(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static unsigned char to_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* s[0..n) equals the ASCII word w without regard to case. */
static bool ci_equal(const char *s, size_t n, const char *w)
{
    size_t wl = strlen(w);
    if (n != wl)
        return false;
    for (size_t i = 0; i < n; i++)
        if (to_lower((unsigned char)s[i]) != to_lower((unsigned char)w[i]))
            return false;
    return true;
}

/* s[0..n) starts with the ASCII word w without regard to case. */
static bool ci_prefix(const char *s, size_t n, const char *w)
{
    size_t wl = strlen(w);
    return n >= wl && ci_equal(s, wl, w);
}

/* Length of the UTF8-non-ascii character (RFC 6531 §3.3, RFC 3629) at s[0..n), 0 when there is
 * none: an ASCII byte, invalid UTF-8, or a C1 control character (never wanted in an address). */
static size_t utf8_char(const unsigned char *s, size_t n)
{
    uint32_t cp;
    if (n == 0 || s[0] < 0x80)
        return 0;
    size_t l = utf8_decode(s, n, &cp);
    if (l == 0 || cp <= 0x9F)
        return 0;
    return l;
}

/* ---- verbs ---------------------------------------------------------------------------------- */

static const struct {
    enum smtp_verb verb;
    const char *name;
} verbs[] = {
    {SMTP_HELO, "HELO"}, {SMTP_EHLO, "EHLO"},         {SMTP_MAIL, "MAIL"}, {SMTP_RCPT, "RCPT"},
    {SMTP_DATA, "DATA"}, {SMTP_BDAT, "BDAT"},         {SMTP_RSET, "RSET"}, {SMTP_NOOP, "NOOP"},
    {SMTP_QUIT, "QUIT"}, {SMTP_VRFY, "VRFY"},         {SMTP_EXPN, "EXPN"}, {SMTP_HELP, "HELP"},
    {SMTP_AUTH, "AUTH"}, {SMTP_STARTTLS, "STARTTLS"},
};

const char *smtp_verb_name(enum smtp_verb v)
{
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (verbs[i].verb == v)
            return verbs[i].name;
    return "UNKNOWN";
}

int smtp_command_parse(const char *line, size_t len, struct smtp_command *cmd_r)
{
    cmd_r->verb = SMTP_UNKNOWN;
    cmd_r->arg = "";
    if (len == 0 || memchr(line, '\0', len) != NULL)
        return -1;

    /* RFC 5321 §4.1.1: the verb ends at the first space or the end of the line. */
    size_t vlen = 0;
    while (vlen < len && line[vlen] != ' ')
        vlen++;
    enum smtp_verb verb = SMTP_UNKNOWN;
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (ci_equal(line, vlen, verbs[i].name))
            verb = verbs[i].verb;
    if (verb == SMTP_UNKNOWN)
        return -1;

    size_t i = vlen;
    while (i < len && line[i] == ' ')
        i++;
    if (verb == SMTP_MAIL || verb == SMTP_RCPT) {
        /* RFC 5321 §4.1.1.2, §4.1.1.3: "MAIL FROM:" Reverse-path, "RCPT TO:" Forward-path.
         * Without the keyword the argument is left whole and the path parser refuses it. */
        const char *kw = verb == SMTP_MAIL ? "FROM:" : "TO:";
        if (ci_prefix(line + i, len - i, kw)) {
            i += strlen(kw);
            /* Not in the grammar, but sent by many clients: "MAIL FROM: <a@b>". */
            if (i < len && line[i] == ' ')
                i++;
        }
    }
    cmd_r->verb = verb;
    cmd_r->arg = i < len ? line + i : "";
    return 0;
}

/* ---- paths ---------------------------------------------------------------------------------- */

/* A Dot-string (RFC 5321 §4.1.2: Atom *("." Atom), atext extended by RFC 6531 §3.3). */
static bool dot_string_ok(const unsigned char *s, size_t n)
{
    bool atom = false; /* inside an atom (the last character was not a dot) */
    size_t i = 0;
    while (i < n) {
        size_t l;
        if (s[i] == '.') {
            if (!atom)
                return false;
            atom = false;
            i++;
        } else if (is_atext(s[i])) {
            atom = true;
            i++;
        } else if ((l = utf8_char(s + i, n - i)) > 0) {
            atom = true;
            i += l;
        } else {
            return false;
        }
    }
    return atom;
}

/* Domain (RFC 5321 §4.1.2: sub-domain *("." sub-domain), sub-domain = Let-dig [Ldh-str], or a
 * U-label, RFC 6531 §3.3) at s[pos..n). Returns the end position, 0 when there is none. Labels
 * of UTF-8 are not held to 63 octets: that bound applies to their A-label form. */
static size_t scan_domain(const unsigned char *s, size_t n, size_t pos)
{
    size_t start = pos;
    for (;;) {
        size_t lstart = pos;
        bool ascii = true;
        unsigned char last = 0;
        while (pos < n) {
            size_t l;
            if (is_alnum(s[pos]) || s[pos] == '-') {
                last = s[pos++];
            } else if ((l = utf8_char(s + pos, n - pos)) > 0) {
                ascii = false;
                last = s[pos];
                pos += l;
            } else {
                break;
            }
        }
        size_t llen = pos - lstart;
        if (llen == 0 || s[lstart] == '-' || last == '-')
            return 0;
        if (ascii && llen > LABEL_MAX)
            return 0;
        if (pos - start > DOMAIN_MAX)
            return 0;
        if (pos < n && s[pos] == '.') {
            pos++; /* an empty label after it fails on the next turn */
            continue;
        }
        return pos;
    }
}

/* IPv4-address-literal (RFC 5321 §4.1.3): Snum 3("." Snum), Snum = 1*3DIGIT in 0..255. */
static bool ipv4_literal_ok(const unsigned char *s, size_t n)
{
    unsigned parts = 0;
    size_t i = 0;
    for (;;) {
        unsigned v = 0, digits = 0;
        while (i < n && is_digit(s[i]) && digits < 4) {
            v = v * 10 + (unsigned)(s[i] - '0');
            digits++;
            i++;
        }
        if (digits == 0 || digits > 3 || v > 255)
            return false;
        parts++;
        if (i == n)
            return parts == 4;
        if (s[i] != '.' || parts == 4)
            return false;
        i++;
    }
}

/* address-literal (RFC 5321 §4.1.3) at s[pos..n), s[pos] == '['. Only IPv4 and "IPv6:" forms:
 * General-address-literal needs a tag registered with IANA, and none is. Returns the position
 * after ']', 0 when invalid. */
static size_t scan_address_literal(const unsigned char *s, size_t n, size_t pos)
{
    size_t start = ++pos;
    while (pos < n && s[pos] != ']') {
        /* dcontent: %d33-90 / %d94-126 */
        if (s[pos] < 33 || s[pos] > 126 || (s[pos] >= 91 && s[pos] <= 93))
            return 0;
        pos++;
    }
    if (pos == n)
        return 0;
    const unsigned char *lit = s + start;
    size_t len = pos - start;
    if (ci_prefix((const char *)lit, len, "IPv6:")) {
        char buf[IPV6_TEXT_MAX + 1];
        struct in6_addr a6;
        if (len - 5 == 0 || len - 5 > IPV6_TEXT_MAX)
            return 0;
        memcpy(buf, lit + 5, len - 5);
        buf[len - 5] = '\0';
        if (inet_pton(AF_INET6, buf, &a6) != 1)
            return 0;
    } else if (!ipv4_literal_ok(lit, len)) {
        return 0;
    }
    return pos + 1;
}

/* Quoted-string (RFC 5321 §4.1.2, qtextSMTP extended by RFC 6531 §3.3) at s[pos..n), s[pos]
 * == '"'. Writes the unescaped content to out (at least LOCAL_MAX bytes; the content is shorter
 * than the quoted form, which is bounded by the caller) and returns the position after the
 * closing quote, 0 when invalid. */
static size_t scan_quoted(const unsigned char *s, size_t n, size_t pos, size_t limit,
                          unsigned char *out, size_t *outlen_r)
{
    size_t o = 0;
    pos++;
    while (pos < n && s[pos] != '"') {
        size_t l;
        if (s[pos] == '\\') {
            /* quoted-pairSMTP = %d92 %d32-126 */
            if (pos + 1 >= n || s[pos + 1] < 32 || s[pos + 1] > 126)
                return 0;
            out[o++] = s[pos + 1];
            pos += 2;
        } else if (s[pos] >= 32 && s[pos] <= 126) {
            out[o++] = s[pos++];
        } else if ((l = utf8_char(s + pos, n - pos)) > 0) {
            if (o + l > limit)
                return 0;
            memcpy(out + o, s + pos, l);
            o += l;
            pos += l;
        } else {
            return 0;
        }
        if (o > limit)
            return 0;
    }
    if (pos == n)
        return 0;
    *outlen_r = o;
    return pos + 1;
}

struct path {
    char *out; /* SMTP_ADDRESS_MAX + 1 bytes */
    bool utf8;
    bool null_path;
};

/* Appends src[0..n) to the address being built at *o; false when it would not fit. */
static bool out_add(char *out, size_t *o, const void *src, size_t n)
{
    if (*o + n > SMTP_ADDRESS_MAX)
        return false;
    memcpy(out + *o, src, n);
    *o += n;
    out[*o] = '\0';
    return true;
}

/* Parses the path at the start of arg (RFC 5321 §4.1.2 Path, with "<>" and "<Postmaster>"
 * when allowed). Fills p and returns the number of bytes it takes, or -1. */
static long parse_path(const char *arg, bool allow_null, bool allow_postmaster, struct path *p)
{
    const unsigned char *s = (const unsigned char *)arg;
    /* RFC 5321 §4.5.3.1.3: at most 256 octets including the brackets. */
    size_t n = strnlen(arg, SMTP_PATH_MAX);
    size_t pos = 0, o = 0;

    p->out[0] = '\0';
    p->utf8 = false;
    p->null_path = false;
    if (n < 2 || s[0] != '<')
        return -1;
    pos = 1;
    if (s[pos] == '>') {
        if (!allow_null)
            return -1;
        p->null_path = true;
        return 2;
    }

    /* A-d-l ":" — a source route, accepted and ignored (RFC 5321 §4.1.2, §C). */
    if (s[pos] == '@') {
        for (;;) {
            size_t end = scan_domain(s, n, pos + 1);
            if (end == 0)
                return -1;
            pos = end;
            if (pos < n && s[pos] == ',' && pos + 1 < n && s[pos + 1] == '@') {
                pos++;
                continue;
            }
            if (pos < n && s[pos] == ':') {
                pos++;
                break;
            }
            return -1;
        }
    }

    /* Local-part = Dot-string / Quoted-string */
    size_t lstart = pos;
    if (pos < n && s[pos] == '"') {
        unsigned char content[LOCAL_MAX + 1];
        size_t clen = 0;
        size_t end = scan_quoted(s, n, pos, LOCAL_MAX, content, &clen);
        if (end == 0 || end - lstart > LOCAL_MAX)
            return -1;
        pos = end;
        if (clen > 0 && dot_string_ok(content, clen)) {
            /* "a"@x is the same mailbox as a@x: keep the simplest form. */
            if (!out_add(p->out, &o, content, clen))
                return -1;
        } else {
            if (!out_add(p->out, &o, "\"", 1))
                return -1;
            for (size_t i = 0; i < clen; i++) {
                if ((content[i] == '"' || content[i] == '\\') && !out_add(p->out, &o, "\\", 1))
                    return -1;
                if (!out_add(p->out, &o, content + i, 1))
                    return -1;
            }
            if (!out_add(p->out, &o, "\"", 1))
                return -1;
        }
    } else {
        while (pos < n && s[pos] != '@' && s[pos] != '>')
            pos++;
        size_t llen = pos - lstart;
        if (llen > LOCAL_MAX || !dot_string_ok(s + lstart, llen))
            return -1;
        /* RFC 5321 §4.1.1.3, §4.5.1: "<Postmaster>" without a domain. */
        if (allow_postmaster && lstart == 1 && pos < n && s[pos] == '>' &&
            ci_equal(arg + lstart, llen, "postmaster")) {
            return out_add(p->out, &o, "postmaster", 10) ? (long)pos + 1 : -1;
        }
        if (!out_add(p->out, &o, s + lstart, llen))
            return -1;
    }

    if (pos >= n || s[pos] != '@')
        return -1;
    pos++;
    size_t dstart = pos, dend;
    if (pos < n && s[pos] == '[')
        dend = scan_address_literal(s, n, pos);
    else
        dend = scan_domain(s, n, pos);
    if (dend == 0 || dend - dstart > DOMAIN_MAX)
        return -1;
    if (!out_add(p->out, &o, "@", 1) || !out_add(p->out, &o, s + dstart, dend - dstart))
        return -1;
    pos = dend;
    if (pos >= n || s[pos] != '>')
        return -1;
    for (size_t i = 0; i < o; i++)
        if ((unsigned char)p->out[i] >= 0x80)
            p->utf8 = true;
    return (long)pos + 1;
}

/* ---- xtext ---------------------------------------------------------------------------------- */

static int hex_upper(unsigned char c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* xtext (RFC 3461 §4) decoding; with allow_utf8, UTF8-non-ascii characters are also taken as
 * themselves (RFC 6533 §3: the "utf-8" address type of ORCPT). */
static int xtext_decode(const char *in, size_t inlen, bool allow_utf8, char *out, size_t outlen,
                        size_t *len_r)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t o = 0;
    if (outlen == 0)
        return -1;
    for (size_t i = 0; i < inlen;) {
        unsigned char c = s[i];
        size_t l = 1;
        int hi, lo;
        if (c == '+') {
            /* hexchar = "+" 2(upper-case hex digit); a NUL would cut the C string the caller
             * gets, so "+00" is refused. */
            if (inlen - i < 3 || (hi = hex_upper(s[i + 1])) < 0 || (lo = hex_upper(s[i + 2])) < 0 ||
                (hi == 0 && lo == 0) || o + 1 >= outlen)
                goto bad;
            out[o++] = (char)(hi * 16 + lo);
            i += 3;
        } else if (c >= 33 && c <= 126 && c != '=') {
            if (o + 1 >= outlen)
                goto bad;
            out[o++] = (char)c;
            i++;
        } else if (allow_utf8 && (l = utf8_char(s + i, inlen - i)) > 0) {
            if (o + l >= outlen)
                goto bad;
            memcpy(out + o, s + i, l);
            o += l;
            i += l;
        } else {
            goto bad;
        }
    }
    out[o] = '\0';
    if (len_r)
        *len_r = o;
    return 0;
bad:
    out[0] = '\0';
    return -1;
}

int smtp_xtext_decode(const char *in, size_t inlen, char *out, size_t outlen)
{
    return xtext_decode(in, inlen, false, out, outlen, NULL);
}

int smtp_xtext_encode(const char *in, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    if (outlen == 0)
        return -1;
    for (const unsigned char *s = (const unsigned char *)in; *s; s++) {
        if (*s >= 33 && *s <= 126 && *s != '+' && *s != '=') {
            if (o + 1 >= outlen)
                return -1;
            out[o++] = (char)*s;
        } else {
            if (o + 3 >= outlen)
                return -1;
            out[o++] = '+';
            out[o++] = hex[*s >> 4];
            out[o++] = hex[*s & 15];
        }
    }
    out[o] = '\0';
    return 0;
}

/* ---- parameters ----------------------------------------------------------------------------- */

struct param {
    const char *kw;
    size_t kwlen;
    const char *val; /* NULL: no "=" */
    size_t vallen;
};

/* Reads the next " keyword[=value]" at *pp (RFC 5321 §4.1.2 esmtp-param; esmtp-value extended
 * by RFC 6531 §3.3). Returns 1 with *p filled, 0 at the end of the line, -1 on a syntax error. */
static int next_param(const char **pp, struct param *p)
{
    const unsigned char *s = (const unsigned char *)*pp;
    if (*s == '\0')
        return 0;
    /* Exactly one space before each parameter; a trailing space is not a parameter. */
    if (*s != ' ')
        return -1;
    s++;
    const unsigned char *kw = s;
    if (!is_alnum(*s))
        return -1;
    while (is_alnum(*s) || *s == '-')
        s++;
    p->kw = (const char *)kw;
    p->kwlen = (size_t)(s - kw);
    p->val = NULL;
    p->vallen = 0;
    if (*s == '=') {
        const unsigned char *v = ++s;
        while (*s != '\0' && *s != ' ') {
            size_t l;
            if ((*s >= 33 && *s <= 60) || (*s >= 62 && *s <= 126))
                s++;
            else if ((l = utf8_char(s, strnlen((const char *)s, 4))) > 0)
                s += l;
            else
                return -1;
        }
        if (s == v)
            return -1;
        p->val = (const char *)v;
        p->vallen = (size_t)(s - v);
    }
    if (*s != '\0' && *s != ' ')
        return -1;
    *pp = (const char *)s;
    return 1;
}

/* Decoded xtext holds printable characters only: it ends up in DSN header fields. */
static bool printable(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 32 || *p == 127)
            return false;
    return true;
}

/* An unsigned decimal of at most max_digits digits that fits in limit. */
static bool parse_decimal(const char *s, size_t n, size_t max_digits, uint64_t limit, uint64_t *v_r)
{
    uint64_t v = 0;
    if (n == 0 || n > max_digits)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit((unsigned char)s[i]))
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (limit - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *v_r = v;
    return true;
}

enum mail_param { MP_SIZE, MP_BODY, MP_SMTPUTF8, MP_RET, MP_ENVID, MP_AUTH, MP_COUNT };
static const char *const mail_param_names[MP_COUNT] = {"SIZE", "BODY",  "SMTPUTF8",
                                                       "RET",  "ENVID", "AUTH"};

/* The value of one MAIL parameter; false when it is invalid. */
static bool mail_param_value(enum mail_param which, const struct param *p, struct smtp_mail *m)
{
    uint64_t v;
    switch (which) {
    case MP_SIZE: /* RFC 1870 §3 */
        if (!p->val || !parse_decimal(p->val, p->vallen, SIZE_DIGITS_MAX, LLONG_MAX, &v))
            return false;
        m->size = (long long)v;
        return true;
    case MP_BODY: /* RFC 6152 §2, RFC 3030 §3 */
        if (!p->val)
            return false;
        if (ci_equal(p->val, p->vallen, "7BIT"))
            m->body = SMTP_BODY_7BIT;
        else if (ci_equal(p->val, p->vallen, "8BITMIME"))
            m->body = SMTP_BODY_8BITMIME;
        else if (ci_equal(p->val, p->vallen, "BINARYMIME"))
            m->body = SMTP_BODY_BINARYMIME;
        else
            return false;
        return true;
    case MP_SMTPUTF8: /* RFC 6531 §3.4: no value */
        if (p->val)
            return false;
        m->smtputf8 = true;
        return true;
    case MP_RET: /* RFC 3461 §4.3 */
        if (!p->val)
            return false;
        if (ci_equal(p->val, p->vallen, "FULL"))
            m->ret = SMTP_RET_FULL;
        else if (ci_equal(p->val, p->vallen, "HDRS"))
            m->ret = SMTP_RET_HDRS;
        else
            return false;
        return true;
    case MP_ENVID: /* RFC 3461 §4.4: xtext, at most 100 characters */
        return p->val &&
               xtext_decode(p->val, p->vallen, false, m->envid, sizeof(m->envid), NULL) == 0 &&
               printable(m->envid);
    case MP_AUTH: /* RFC 4954 §5: AUTH=xtext, an addr-spec or "<>" */
        return p->val &&
               xtext_decode(p->val, p->vallen, false, m->auth, sizeof(m->auth), NULL) == 0 &&
               printable(m->auth);
    case MP_COUNT:
        break;
    }
    return false;
}

int smtp_mail_parse(const char *arg, struct smtp_mail *m_r, struct smtp_reply *err_r)
{
    memset(m_r, 0, sizeof(*m_r));
    m_r->size = -1;
    *err_r = reply_ok;

    struct path path = {.out = m_r->address};
    long n = parse_path(arg, true, false, &path);
    if (n < 0) {
        m_r->address[0] = '\0';
        *err_r = reply_bad_sender;
        return -1;
    }
    m_r->utf8_address = path.utf8;

    const char *s = arg + n;
    unsigned seen = 0;
    struct param p;
    int r;
    while ((r = next_param(&s, &p)) == 1) {
        int which = -1;
        for (int i = 0; i < MP_COUNT; i++)
            if (ci_equal(p.kw, p.kwlen, mail_param_names[i]))
                which = i;
        if (which < 0) {
            *err_r = reply_unknown_param;
            return -1;
        }
        if (seen & (1u << which)) {
            *err_r = reply_dup_param;
            return -1;
        }
        seen |= 1u << which;
        if (!mail_param_value((enum mail_param)which, &p, m_r)) {
            *err_r = reply_bad_value;
            return -1;
        }
    }
    if (r < 0) {
        *err_r = reply_bad_param;
        return -1;
    }
    return 0;
}

/* NOTIFY="NEVER" / 1#("SUCCESS" / "FAILURE" / "DELAY") (RFC 3461 §4.1); 0 when invalid. */
static unsigned parse_notify(const char *v, size_t n)
{
    unsigned bits = 0;
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && v[j] != ',')
            j++;
        unsigned bit;
        if (ci_equal(v + i, j - i, "NEVER"))
            bit = SMTP_NOTIFY_NEVER;
        else if (ci_equal(v + i, j - i, "SUCCESS"))
            bit = SMTP_NOTIFY_SUCCESS;
        else if (ci_equal(v + i, j - i, "FAILURE"))
            bit = SMTP_NOTIFY_FAILURE;
        else if (ci_equal(v + i, j - i, "DELAY"))
            bit = SMTP_NOTIFY_DELAY;
        else
            return 0;
        if (bits & bit)
            return 0;
        bits |= bit;
        i = j + 1;
    }
    if ((bits & SMTP_NOTIFY_NEVER) && bits != SMTP_NOTIFY_NEVER)
        return 0;
    return bits;
}

/* ORCPT=addr-type ";" xtext (RFC 3461 §4.2); addr-type is an atom (RFC 5322 §3.2.3). Stored as
 * addr-type ";" decoded address. */
static bool parse_orcpt(const char *v, size_t n, char *out, size_t outlen)
{
    size_t t = 0;
    while (t < n && v[t] != ';') {
        if (!is_atext((unsigned char)v[t]))
            return false;
        t++;
    }
    if (t == 0 || t == n || t + 1 >= outlen)
        return false;
    memcpy(out, v, t + 1);
    bool utf8_type = ci_equal(v, t, "utf-8");
    size_t alen = 0;
    if (xtext_decode(v + t + 1, n - t - 1, utf8_type, out + t + 1, outlen - t - 1, &alen) != 0)
        return false;
    return alen > 0 && printable(out);
}

int smtp_rcpt_parse(const char *arg, struct smtp_rcpt *r_r, struct smtp_reply *err_r)
{
    memset(r_r, 0, sizeof(*r_r));
    *err_r = reply_ok;

    struct path path = {.out = r_r->address};
    long n = parse_path(arg, false, true, &path);
    if (n < 0) {
        r_r->address[0] = '\0';
        *err_r = reply_bad_rcpt;
        return -1;
    }
    r_r->utf8_address = path.utf8;

    const char *s = arg + n;
    bool seen_notify = false, seen_orcpt = false;
    struct param p;
    int r;
    while ((r = next_param(&s, &p)) == 1) {
        if (ci_equal(p.kw, p.kwlen, "NOTIFY")) {
            if (seen_notify) {
                *err_r = reply_dup_param;
                return -1;
            }
            seen_notify = true;
            if (!p.val || (r_r->notify = parse_notify(p.val, p.vallen)) == 0) {
                *err_r = reply_bad_value;
                return -1;
            }
        } else if (ci_equal(p.kw, p.kwlen, "ORCPT")) {
            if (seen_orcpt) {
                *err_r = reply_dup_param;
                return -1;
            }
            seen_orcpt = true;
            if (!p.val || !parse_orcpt(p.val, p.vallen, r_r->orcpt, sizeof(r_r->orcpt))) {
                r_r->orcpt[0] = '\0';
                *err_r = reply_bad_value;
                return -1;
            }
        } else {
            *err_r = reply_unknown_param;
            return -1;
        }
    }
    if (r < 0) {
        *err_r = reply_bad_param;
        return -1;
    }
    return 0;
}

/* ---- BDAT ----------------------------------------------------------------------------------- */

int smtp_bdat_parse(const char *arg, uint64_t *size_r, bool *last_r)
{
    *size_r = 0;
    *last_r = false;
    /* RFC 3030 §2: bdat-cmd ::= "BDAT" SP chunk-size [ SP end-marker ]; chunk-size ::= 1*DIGIT.
     * More than 20 digits cannot fit in 64 bits anyway. */
    size_t n = 0;
    while (is_digit((unsigned char)arg[n]) && n <= SIZE_DIGITS_MAX)
        n++;
    uint64_t v;
    if (!parse_decimal(arg, n, SIZE_DIGITS_MAX, UINT64_MAX, &v))
        return -1;
    const char *rest = arg + n;
    if (*rest == '\0') {
        *size_r = v;
        return 0;
    }
    if (ci_equal(rest, strnlen(rest, 6), " LAST")) {
        *size_r = v;
        *last_r = true;
        return 0;
    }
    return -1;
}
