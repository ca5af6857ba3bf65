/* Pure syntax helpers of the IMAP service (see syntax.h): FETCH items (RFC 9051 §6.4.5,
 * RFC 3516 BINARY, RFC 7162 modifiers), the stored part offsets, transfer decoding, date-time
 * and LIST patterns. Everything here is bounded by its input and the limits in syntax.h. */
#include "node/imap/syntax.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- FETCH items ---- */

static int errf(char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    return -1;
}

static void item_free(struct imap_fetch_item *it)
{
    for (size_t i = 0; i < it->nfields; i++)
        free(it->fields[i]);
    free(it->fields);
    free(it->name);
    memset(it, 0, sizeof(*it));
}

void imap_fetch_spec_free(struct imap_fetch_spec *spec)
{
    for (size_t i = 0; i < spec->n; i++)
        item_free(&spec->items[i]);
    free(spec->items);
    memset(spec, 0, sizeof(*spec));
}

static struct imap_fetch_item *add_item(struct imap_fetch_spec *spec, enum imap_fetch_att att)
{
    if (spec->n >= IMAP_FETCH_ITEMS_MAX)
        return NULL;
    struct imap_fetch_item *it = &spec->items[spec->n++];
    memset(it, 0, sizeof(*it));
    it->att = att;
    return it;
}

/* An ATOM-CHAR of RFC 9051 §9 (no atom-specials), which header field names usually are. */
static bool atom_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("(){ %*\"\\]", c);
}

/* Reads a header field name (atom or quoted string) at *p, into a new string. */
static char *read_field_name(const char **pp, const char *end)
{
    const char *p = *pp;
    char buf[256];
    size_t n = 0;
    if (p < end && *p == '"') {
        p++;
        while (p < end && *p != '"') {
            if (*p == '\\' && p + 1 < end)
                p++;
            if (n + 1 >= sizeof(buf))
                return NULL;
            buf[n++] = *p++;
        }
        if (p >= end)
            return NULL;
        p++;
    } else {
        while (p < end && atom_char((unsigned char)*p)) {
            if (n + 1 >= sizeof(buf))
                return NULL;
            buf[n++] = *p++;
        }
    }
    /* RFC 5322 §3.6.8: a field name is printable ASCII without ':' */
    if (n == 0)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)buf[i] <= 0x20 || (unsigned char)buf[i] >= 0x7f || buf[i] == ':')
            return NULL;
    buf[n] = '\0';
    *pp = p;
    return strdup(buf);
}

/* Parses "1.2.3" at *p; stops before ".HEADER" etc. */
static int read_part(const char **pp, const char *end, char *part, size_t partlen)
{
    const char *p = *pp;
    size_t n = 0;
    for (;;) {
        if (p >= end || !isdigit((unsigned char)*p) || *p == '0')
            return -1; /* nz-number */
        unsigned long v = 0;
        const char *start = p;
        while (p < end && isdigit((unsigned char)*p)) {
            v = v * 10 + (unsigned long)(*p - '0');
            if (v > 1000000)
                return -1;
            p++;
        }
        size_t len = (size_t)(p - start);
        if (n + len + 2 > partlen)
            return -1;
        if (n)
            part[n++] = '.';
        memcpy(part + n, start, len);
        n += len;
        part[n] = '\0';
        if (p + 1 < end && *p == '.' && isdigit((unsigned char)p[1])) {
            p++;
            continue;
        }
        break;
    }
    *pp = p;
    return 0;
}

static bool word_at(const char *p, const char *end, const char *w)
{
    size_t n = strlen(w);
    return (size_t)(end - p) >= n && !strncasecmp(p, w, n);
}

/* The section between the brackets, s[0..len). */
static int parse_section(struct imap_fetch_item *it, const char *s, size_t len, char *err,
                         size_t errlen)
{
    const char *p = s, *end = s + len;
    it->kind = IMAP_SEC_ALL;
    if (p < end && isdigit((unsigned char)*p)) {
        if (read_part(&p, end, it->part, sizeof(it->part)) < 0)
            return errf(err, errlen, "Invalid section part number");
        if (p == end)
            return 0;
        if (*p != '.' || it->binary)
            return errf(err, errlen, "Invalid section");
        p++;
        if (word_at(p, end, "MIME") && p + 4 == end) {
            it->kind = IMAP_SEC_MIME;
            return 0;
        }
    } else if (p < end && it->binary) {
        return errf(err, errlen, "BINARY takes a part number only");
    }
    if (p == end)
        return 0;
    if (word_at(p, end, "TEXT") && p + 4 == end) {
        it->kind = IMAP_SEC_TEXT;
        return 0;
    }
    if (!word_at(p, end, "HEADER"))
        return errf(err, errlen, "Invalid section");
    p += 6;
    if (p == end) {
        it->kind = IMAP_SEC_HEADER;
        return 0;
    }
    if (!word_at(p, end, ".FIELDS"))
        return errf(err, errlen, "Invalid section");
    p += 7;
    it->kind = IMAP_SEC_FIELDS;
    if (word_at(p, end, ".NOT")) {
        it->kind = IMAP_SEC_FIELDS_NOT;
        p += 4;
    }
    if (p + 2 > end || p[0] != ' ' || p[1] != '(')
        return errf(err, errlen, "HEADER.FIELDS needs a list of field names");
    p += 2;
    it->fields = calloc(IMAP_FETCH_FIELDS_MAX, sizeof(char *));
    if (!it->fields)
        return errf(err, errlen, "Out of memory");
    for (;;) {
        if (p < end && *p == ')' && it->nfields > 0) {
            p++;
            break;
        }
        if (it->nfields > 0) {
            if (p >= end || *p != ' ')
                return errf(err, errlen, "Invalid header field list");
            p++;
        }
        if (it->nfields >= IMAP_FETCH_FIELDS_MAX)
            return errf(err, errlen, "Too many header fields");
        char *f = read_field_name(&p, end);
        if (!f)
            return errf(err, errlen, "Invalid header field name");
        it->fields[it->nfields++] = f;
    }
    if (p != end)
        return errf(err, errlen, "Invalid section");
    return 0;
}

/* Appends a field name for the response: an atom when it is one, else a quoted string. */
static size_t name_field(char *out, size_t cap, size_t o, const char *f)
{
    bool atom = true;
    for (const char *q = f; *q; q++)
        if (!atom_char((unsigned char)*q))
            atom = false;
    if (atom) {
        o += (size_t)snprintf(out + o, cap - o, "%s", f);
        return o < cap ? o : cap - 1;
    }
    if (o + 1 < cap)
        out[o++] = '"';
    for (const char *q = f; *q && o + 3 < cap; q++) {
        if (*q == '"' || *q == '\\')
            out[o++] = '\\';
        out[o++] = *q;
    }
    if (o + 1 < cap)
        out[o++] = '"';
    out[o] = '\0';
    return o;
}

static int make_name(struct imap_fetch_item *it, const char *prefix)
{
    size_t cap = 64 + IMAP_SECTION_PART_MAX;
    for (size_t i = 0; i < it->nfields; i++)
        cap += strlen(it->fields[i]) * 2 + 3;
    char *out = malloc(cap);
    if (!out)
        return -1;
    size_t o = (size_t)snprintf(out, cap, "%s[%s", prefix, it->part);
    static const char *const kinds[] = {"",     "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT",
                                        "TEXT", "MIME"};
    if (it->kind != IMAP_SEC_ALL)
        o += (size_t)snprintf(out + o, cap - o, "%s%s", *it->part ? "." : "", kinds[it->kind]);
    if (it->nfields) {
        o += (size_t)snprintf(out + o, cap - o, " (");
        for (size_t i = 0; i < it->nfields; i++) {
            if (i)
                out[o++] = ' ';
            o = name_field(out, cap, o, it->fields[i]);
        }
        o += (size_t)snprintf(out + o, cap - o, ")");
    }
    snprintf(out + o, cap - o, "]");
    it->name = out;
    return 0;
}

static int parse_partial(struct imap_fetch_item *it, const char *p, const char *end, char *err,
                         size_t errlen)
{
    if (p == end)
        return 0;
    /* "<" number "." nz-number ">" (RFC 9051 §9 partial) */
    if (*p != '<' || end[-1] != '>')
        return errf(err, errlen, "Invalid partial");
    char buf[48];
    size_t n = (size_t)(end - p) - 2;
    if (n >= sizeof(buf))
        return errf(err, errlen, "Invalid partial");
    memcpy(buf, p + 1, n);
    buf[n] = '\0';
    char *dot = strchr(buf, '.');
    if (!dot || dot == buf || !dot[1])
        return errf(err, errlen, "Invalid partial");
    *dot = '\0';
    for (char *q = buf; *q; q++)
        if (!isdigit((unsigned char)*q))
            return errf(err, errlen, "Invalid partial");
    for (char *q = dot + 1; *q; q++)
        if (!isdigit((unsigned char)*q))
            return errf(err, errlen, "Invalid partial");
    if (strlen(buf) > 10 || strlen(dot + 1) > 10)
        return errf(err, errlen, "Invalid partial");
    it->origin = strtoull(buf, NULL, 10);
    it->count = strtoull(dot + 1, NULL, 10);
    if (it->origin > UINT32_MAX || it->count == 0 || it->count > UINT32_MAX)
        return errf(err, errlen, "Invalid partial");
    it->partial = true;
    return 0;
}

static int parse_item(struct imap_fetch_spec *spec, const char *a, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        enum imap_fetch_att att;
    } simple[] = {{"FLAGS", IMAP_FA_FLAGS},
                  {"INTERNALDATE", IMAP_FA_INTERNALDATE},
                  {"RFC822.SIZE", IMAP_FA_RFC822_SIZE},
                  {"UID", IMAP_FA_UID},
                  {"MODSEQ", IMAP_FA_MODSEQ},
                  {"ENVELOPE", IMAP_FA_ENVELOPE},
                  {"BODY", IMAP_FA_BODY},
                  {"BODYSTRUCTURE", IMAP_FA_BODYSTRUCTURE}};
    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++)
        if (!strcasecmp(a, simple[i].name)) {
            if (!add_item(spec, simple[i].att))
                return errf(err, errlen, "Too many FETCH items");
            if (simple[i].att == IMAP_FA_UID)
                spec->has_uid = true;
            if (simple[i].att == IMAP_FA_MODSEQ)
                spec->has_modseq = true;
            if (simple[i].att == IMAP_FA_FLAGS)
                spec->has_flags = true;
            if (simple[i].att >= IMAP_FA_ENVELOPE)
                spec->need_meta = true;
            return 0;
        }
    /* RFC 9051 §6.4.5: RFC822 = BODY[], RFC822.HEADER = BODY.PEEK[HEADER], RFC822.TEXT = BODY[TEXT]
     */
    static const struct {
        const char *name;
        enum imap_section_kind kind;
        bool peek;
    } rfc822[] = {{"RFC822", IMAP_SEC_ALL, false},
                  {"RFC822.HEADER", IMAP_SEC_HEADER, true},
                  {"RFC822.TEXT", IMAP_SEC_TEXT, false}};
    for (size_t i = 0; i < sizeof(rfc822) / sizeof(rfc822[0]); i++)
        if (!strcasecmp(a, rfc822[i].name)) {
            struct imap_fetch_item *it = add_item(spec, IMAP_FA_SECTION);
            if (!it)
                return errf(err, errlen, "Too many FETCH items");
            it->kind = rfc822[i].kind;
            it->peek = rfc822[i].peek;
            it->name = strdup(rfc822[i].name);
            if (!it->name)
                return errf(err, errlen, "Out of memory");
            spec->need_meta = true;
            spec->sets_seen |= !it->peek;
            return 0;
        }
    static const struct {
        const char *prefix, *name;
        bool peek, binary, size;
    } sections[] = {{"BODY.PEEK[", "BODY", true, false, false},
                    {"BODY[", "BODY", false, false, false},
                    {"BINARY.PEEK[", "BINARY", true, true, false},
                    {"BINARY.SIZE[", "BINARY.SIZE", true, true, true},
                    {"BINARY[", "BINARY", false, true, false}};
    for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
        size_t pl = strlen(sections[i].prefix);
        if (strncasecmp(a, sections[i].prefix, pl) != 0)
            continue;
        const char *close = strrchr(a, ']');
        if (!close || close < a + pl - 1)
            return errf(err, errlen, "Invalid section");
        struct imap_fetch_item *it =
            add_item(spec, sections[i].size ? IMAP_FA_BINARY_SIZE : IMAP_FA_SECTION);
        if (!it)
            return errf(err, errlen, "Too many FETCH items");
        it->peek = sections[i].peek;
        it->binary = sections[i].binary;
        if (parse_section(it, a + pl, (size_t)(close - (a + pl)), err, errlen) < 0)
            return -1;
        if (sections[i].size && close[1])
            return errf(err, errlen, "BINARY.SIZE takes no partial");
        if (parse_partial(it, close + 1, close + 1 + strlen(close + 1), err, errlen) < 0)
            return -1;
        if (make_name(it, sections[i].name) < 0)
            return errf(err, errlen, "Out of memory");
        spec->need_meta = true;
        spec->sets_seen |= !it->peek;
        return 0;
    }
    return errf(err, errlen, "Unknown FETCH item");
}

static int parse_modifiers(struct imap_fetch_spec *spec, const struct imap_arg *m, char *err,
                           size_t errlen)
{
    size_t n;
    const struct imap_arg *l = imap_arg_list(m, &n);
    if (!l || n == 0)
        return errf(err, errlen, "Invalid FETCH modifiers");
    for (size_t i = 0; i < n; i++) {
        const char *w = imap_arg_atom(&l[i]);
        if (!w)
            return errf(err, errlen, "Invalid FETCH modifier");
        if (!strcasecmp(w, "CHANGEDSINCE") && i + 1 < n) {
            const char *v = imap_arg_atom(&l[++i]);
            char *end;
            /* RFC 7162 §7: mod-sequence-value, 1..2^63-1 */
            long long ms =
                v && isdigit((unsigned char)*v) && strlen(v) <= 19 ? strtoll(v, &end, 10) : -1;
            if (ms < 0 || (v && *end))
                return errf(err, errlen, "Invalid CHANGEDSINCE");
            spec->changedsince = ms;
        } else if (!strcasecmp(w, "VANISHED")) {
            spec->vanished = true;
        } else {
            return errf(err, errlen, "Unknown FETCH modifier");
        }
    }
    /* RFC 7162 §3.2.6: VANISHED only together with CHANGEDSINCE */
    if (spec->vanished && spec->changedsince <= 0)
        return errf(err, errlen, "VANISHED needs CHANGEDSINCE");
    return 0;
}

int imap_fetch_spec_parse(const struct imap_arg *items, const struct imap_arg *modifiers,
                          struct imap_fetch_spec *spec, char *err, size_t errlen)
{
    memset(spec, 0, sizeof(*spec));
    spec->items = calloc(IMAP_FETCH_ITEMS_MAX, sizeof(*spec->items));
    if (!spec->items)
        return errf(err, errlen, "Out of memory");
    int rc = 0;
    const char *a = imap_arg_atom(items);
    if (a) {
        /* RFC 9051 §6.4.5 macros, valid only on their own */
        static const char *const fast[] = {"FLAGS", "INTERNALDATE", "RFC822.SIZE"};
        bool all = !strcasecmp(a, "ALL"), full = !strcasecmp(a, "FULL");
        if (all || full || !strcasecmp(a, "FAST")) {
            for (size_t i = 0; i < 3 && rc == 0; i++)
                rc = parse_item(spec, fast[i], err, errlen);
            if (rc == 0 && (all || full))
                rc = parse_item(spec, "ENVELOPE", err, errlen);
            if (rc == 0 && full)
                rc = parse_item(spec, "BODY", err, errlen);
        } else {
            rc = parse_item(spec, a, err, errlen);
        }
    } else {
        size_t n;
        const struct imap_arg *l = imap_arg_list(items, &n);
        if (!l || n == 0)
            rc = errf(err, errlen, "Invalid FETCH items");
        for (size_t i = 0; rc == 0 && i < n; i++) {
            const char *w = imap_arg_atom(&l[i]);
            rc = w ? parse_item(spec, w, err, errlen) : errf(err, errlen, "Invalid FETCH item");
        }
    }
    if (rc == 0 && modifiers)
        rc = parse_modifiers(spec, modifiers, err, errlen);
    if (rc < 0)
        imap_fetch_spec_free(spec);
    return rc;
}

/* ---- part offsets ---- */

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
        p++;
    return p;
}

/* "[a,b]" at p (after the key's colon). */
static const char *read_pair(const char *p, uint64_t *a, uint64_t *b)
{
    p = skip_ws(p);
    if (*p != '[')
        return NULL;
    char *end;
    *a = strtoull(p + 1, &end, 10);
    if (end == p + 1)
        return NULL;
    p = skip_ws(end);
    if (*p != ',')
        return NULL;
    const char *q = skip_ws(p + 1);
    *b = strtoull(q, &end, 10);
    if (end == q)
        return NULL;
    p = skip_ws(end);
    return *p == ']' ? p + 1 : NULL;
}

int imap_parts_find(const char *json, const char *section, struct imap_part_offsets *r)
{
    if (!json)
        return -1;
    const char *p = skip_ws(json);
    if (*p != '[')
        return -1;
    p++;
    size_t seclen = strlen(section);
    for (;;) {
        p = skip_ws(p);
        if (*p != '{')
            return -1;
        p++;
        struct imap_part_offsets o = {0};
        bool match = false, have_h = false, have_b = false;
        for (;;) {
            p = skip_ws(p);
            if (*p == '}') {
                p++;
                break;
            }
            if (*p == ',') {
                p++;
                continue;
            }
            if (*p != '"')
                return -1;
            const char *key = p + 1;
            const char *kend = strchr(key, '"');
            if (!kend)
                return -1;
            size_t klen = (size_t)(kend - key);
            p = skip_ws(kend + 1);
            if (*p != ':')
                return -1;
            p = skip_ws(p + 1);
            if (klen == 1 && *key == 's') {
                if (*p != '"')
                    return -1;
                const char *v = p + 1, *vend = strchr(v, '"');
                if (!vend)
                    return -1;
                match = (size_t)(vend - v) == seclen && !memcmp(v, section, seclen);
                p = vend + 1;
            } else if (klen == 1 && (*key == 'h' || *key == 'b')) {
                uint64_t a, b;
                if (!(p = read_pair(p, &a, &b)))
                    return -1;
                if (*key == 'h') {
                    o.h_off = a, o.h_len = b, have_h = true;
                } else {
                    o.b_off = a, o.b_len = b, have_b = true;
                }
            } else if (klen == 2 && key[0] == 'm' && (key[1] == 'h' || key[1] == 'b')) {
                uint64_t a, b;
                if (!(p = read_pair(p, &a, &b)))
                    return -1;
                o.message = true;
                if (key[1] == 'h') {
                    o.mh_off = a, o.mh_len = b;
                } else {
                    o.mb_off = a, o.mb_len = b;
                }
            } else {
                /* another value: a number */
                while (*p && *p != ',' && *p != '}')
                    p++;
            }
        }
        if (match && have_h && have_b) {
            *r = o;
            return 0;
        }
        p = skip_ws(p);
        if (*p == ',') {
            p++;
            continue;
        }
        return -1;
    }
}

/* ---- transfer decoding ---- */

int imap_cte_parse(const char *v, enum imap_cte *cte_r)
{
    if (!v || !*v || !strcasecmp(v, "7bit") || !strcasecmp(v, "8bit") || !strcasecmp(v, "binary")) {
        *cte_r = IMAP_CTE_IDENTITY;
        return 0;
    }
    if (!strcasecmp(v, "base64")) {
        *cte_r = IMAP_CTE_BASE64;
        return 0;
    }
    if (!strcasecmp(v, "quoted-printable")) {
        *cte_r = IMAP_CTE_QP;
        return 0;
    }
    return -1;
}

void imap_decoder_init(struct imap_decoder *d, enum imap_cte cte)
{
    memset(d, 0, sizeof(*d));
    d->cte = cte;
}

static int b64_value(unsigned char c)
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
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

size_t imap_decoder_feed(struct imap_decoder *d, const char *in, size_t len, char *out)
{
    size_t o = 0;
    switch (d->cte) {
    case IMAP_CTE_IDENTITY:
        memcpy(out, in, len);
        return len;
    case IMAP_CTE_BASE64:
        /* RFC 2045 §6.8: characters outside the alphabet are ignored; "=" ends the data */
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)in[i];
            if (c == '=') {
                d->b64_end = true;
                continue;
            }
            int v = b64_value(c);
            if (v < 0 || d->b64_end)
                continue;
            d->bits = (d->bits << 6) | (uint32_t)v;
            d->nbits += 6;
            if (d->nbits >= 8) {
                d->nbits -= 8;
                out[o++] = (char)((d->bits >> d->nbits) & 0xff);
            }
            d->bits &= (1u << d->nbits) - 1;
        }
        return o;
    case IMAP_CTE_QP:
        /* RFC 2045 §6.7: "=XX" is a byte, "=" before a line break is a soft break; anything
         * else after "=" is kept as it is (robustness, as §6.7 note (2) suggests) */
        for (size_t i = 0; i < len; i++) {
            char c = in[i];
            if (d->nqp == 0) {
                if (c == '=')
                    d->qp[d->nqp++] = c;
                else
                    out[o++] = c;
                continue;
            }
            d->qp[d->nqp++] = c;
            if (d->nqp == 2) {
                if (c == '\n') { /* "=\n": soft break */
                    d->nqp = 0;
                } else if (c != '\r' && hexval((unsigned char)c) < 0) {
                    out[o++] = '=';
                    d->nqp = 0;
                    if (c == '=')
                        d->qp[d->nqp++] = c;
                    else
                        out[o++] = c;
                }
                continue;
            }
            /* three characters: "=\r\n", "=\rX" or "=HH" */
            if (d->qp[1] == '\r') {
                if (c != '\n') {
                    out[o++] = '=';
                    out[o++] = '\r';
                    d->nqp = 0;
                    if (c == '=')
                        d->qp[d->nqp++] = c;
                    else
                        out[o++] = c;
                } else {
                    d->nqp = 0;
                }
                continue;
            }
            int hi = hexval((unsigned char)d->qp[1]), lo = hexval((unsigned char)c);
            d->nqp = 0;
            if (lo < 0) {
                out[o++] = '=';
                out[o++] = d->qp[1];
                if (c == '=')
                    d->qp[d->nqp++] = c;
                else
                    out[o++] = c;
            } else {
                out[o++] = (char)(hi * 16 + lo);
            }
        }
        return o;
    }
    return 0;
}

size_t imap_decoder_finish(struct imap_decoder *d, char *out)
{
    size_t o = 0;
    if (d->cte == IMAP_CTE_QP)
        for (int i = 0; i < d->nqp; i++)
            out[o++] = d->qp[i];
    d->nqp = 0;
    d->nbits = 0;
    d->bits = 0;
    return o;
}

/* ---- date-time ---- */

static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static bool digits(const char *s, int n)
{
    for (int i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

int imap_datetime_parse(const char *s, time_t *t_r)
{
    /* date-day-fixed = (SP DIGIT) / 2DIGIT; RFC 3501 clients also send one digit */
    if (s[0] == ' ')
        s++;
    int day;
    if (digits(s, 2)) {
        day = (s[0] - '0') * 10 + (s[1] - '0');
        s += 2;
    } else if (digits(s, 1)) {
        day = s[0] - '0';
        s += 1;
    } else {
        return -1;
    }
    if (*s++ != '-')
        return -1;
    int mon = -1;
    for (int i = 0; i < 12; i++)
        if (!strncasecmp(s, months[i], 3))
            mon = i;
    if (mon < 0)
        return -1;
    s += 3;
    if (*s++ != '-' || !digits(s, 4) || s[4] != ' ' || !digits(s + 5, 2) || s[7] != ':' ||
        !digits(s + 8, 2) || s[10] != ':' || !digits(s + 11, 2) || s[13] != ' ' ||
        (s[14] != '+' && s[14] != '-') || !digits(s + 15, 4) || s[19] != '\0')
        return -1;
    int year = atoi(s), h = atoi(s + 5), mi = atoi(s + 8), sec = atoi(s + 11);
    int zh = (s[15] - '0') * 10 + (s[16] - '0'), zm = (s[17] - '0') * 10 + (s[18] - '0');
    if (day < 1 || day > 31 || year < 1900 || h > 23 || mi > 59 || sec > 60 || zm > 59)
        return -1;
    struct tm tm = {.tm_year = year - 1900,
                    .tm_mon = mon,
                    .tm_mday = day,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    long off = (long)zh * 3600 + (long)zm * 60;
    *t_r = s[14] == '+' ? t - off : t + off;
    return 0;
}

void imap_datetime_format(time_t t, char out[32])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, 32, "%02d-%s-%04d %02d:%02d:%02d +0000", tm.tm_mday % 100, months[tm.tm_mon % 12],
             (tm.tm_year + 1900) % 10000, tm.tm_hour % 100, tm.tm_min % 100, tm.tm_sec % 100);
}

/* ---- LIST patterns ---- */

bool imap_list_match(const char *pattern, const char *name)
{
    size_t pl = strlen(pattern), nl = strlen(name);
    if (pl > 4096 || nl > 4096)
        return false;
    /* RFC 9051 §5.1: INBOX is case-insensitive, so a pattern starting with it in any case
     * matches the stored spelling */
    char *pat = malloc(pl + 1);
    bool *cur = calloc(pl + 1, sizeof(bool)), *next = calloc(pl + 1, sizeof(bool));
    bool ok = false;
    if (!pat || !cur || !next)
        goto out;
    memcpy(pat, pattern, pl + 1);
    if (!strncasecmp(pat, "INBOX", 5) && (pat[5] == '\0' || pat[5] == '/'))
        memcpy(pat, "INBOX", 5);
    /* an NFA walk over the name: cur[i] = pattern position i is reachable */
    cur[0] = true;
    for (size_t i = 0; i < pl; i++)
        if (cur[i] && (pat[i] == '*' || pat[i] == '%'))
            cur[i + 1] = true;
    for (size_t k = 0; k < nl; k++) {
        char c = name[k];
        memset(next, 0, (pl + 1) * sizeof(bool));
        bool any = false;
        for (size_t i = 0; i < pl; i++) {
            if (!cur[i])
                continue;
            if (pat[i] == '*' || (pat[i] == '%' && c != '/'))
                next[i] = any = true;
            else if (pat[i] == c)
                next[i + 1] = any = true;
        }
        if (!any)
            goto out;
        for (size_t i = 0; i < pl; i++)
            if (next[i] && (pat[i] == '*' || pat[i] == '%'))
                next[i + 1] = true;
        bool *t = cur;
        cur = next;
        next = t;
    }
    ok = cur[pl];
out:
    free(pat);
    free(cur);
    free(next);
    return ok;
}
