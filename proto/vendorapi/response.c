/* The vendor admin XML API response writer (see response.h). */
#include "proto/vendorapi/response.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/vendorapi/request.h"

struct vapi_out {
    char *buf;
    size_t len, cap, max;
    bool failed;
};

struct vapi_out *vapi_out_new(size_t max_len)
{
    struct vapi_out *o = calloc(1, sizeof *o);
    if (o != NULL)
        o->max = max_len;
    return o;
}

void vapi_out_free(struct vapi_out **o)
{
    if (o == NULL || *o == NULL)
        return;
    free((*o)->buf);
    free(*o);
    *o = NULL;
}

static void put(struct vapi_out *o, const char *s, size_t n)
{
    if (o->failed)
        return;
    if (n > o->max - o->len) {
        o->failed = true;
        return;
    }
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 1024;
        while (cap < o->len + n + 1)
            cap *= 2;
        if (cap > o->max + 1)
            cap = o->max + 1;
        char *b = realloc(o->buf, cap);
        if (b == NULL) {
            o->failed = true;
            return;
        }
        o->buf = b;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void puts_(struct vapi_out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* XML 1.0 §2.2 Char. */
static bool xml_char(uint32_t cp)
{
    return cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF) ||
           (cp >= 0xE000 && cp <= 0xFFFD) || (cp >= 0x10000 && cp <= 0x10FFFF);
}

/* Decodes one UTF-8 sequence at s[0..n) (RFC 3629 §4: shortest form, no
 * surrogates, at most U+10FFFF). Returns its length and the code point, or 0
 * when it is not valid UTF-8. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t k;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        k = 2;
        v = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        k = 3;
        v = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        k = 4;
        v = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (k > n)
        return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return k;
}

/* Appends s[0..n) escaped for text and attribute values alike. Line ends are
 * written as character references, so that every element stays on its line
 * and a CR survives the parser's line-end normalisation (XML 1.0 §2.11). */
static void put_escaped(struct vapi_out *o, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0; /* p[i - run .. i) is copied as is */
    while (i < n) {
        const char *rep = NULL;
        uint32_t cp = 0;
        size_t k = utf8_next(p + i, n - i, &cp);
        if (k == 0 || !xml_char(cp)) {
            rep = "\xEF\xBF\xBD"; /* U+FFFD */
            k = k ? k : 1;
        } else if (cp == '&') {
            rep = "&amp;";
        } else if (cp == '<') {
            rep = "&lt;";
        } else if (cp == '>') {
            rep = "&gt;";
        } else if (cp == '"') {
            rep = "&quot;";
        } else if (cp == '\'') {
            rep = "&apos;";
        } else if (cp == '\r') {
            rep = "&#13;";
        } else if (cp == '\n') {
            rep = "&#10;";
        }
        if (rep != NULL) {
            put(o, (const char *)p + i - run, run);
            puts_(o, rep);
            run = 0;
        } else {
            run += k;
        }
        i += k;
    }
    put(o, (const char *)p + i - run, run);
}

static void attr(struct vapi_out *o, const char *name, const char *value)
{
    if (value == NULL || *value == '\0')
        return;
    puts_(o, " ");
    puts_(o, name);
    puts_(o, "=\"");
    put_escaped(o, value, strlen(value));
    puts_(o, "\"");
}

void vapi_out_begin(struct vapi_out *o, const char *type, const char *id, const char *uid,
                    const char *sid)
{
    o->len = 0;
    o->failed = false;
    if (o->buf != NULL)
        o->buf[0] = '\0';
    /* type first and sid last: scripts read sid="(.*)" greedily to the line's end */
    puts_(o, "<iq type=\"");
    puts_(o, type);
    puts_(o, "\"");
    attr(o, "id", id);
    attr(o, "uid", uid);
    attr(o, "sid", sid);
    puts_(o, ">\n<query xmlns=\"" VAPI_NAMESPACE "\">\n");
}

void vapi_out_end(struct vapi_out *o)
{
    puts_(o, "</query>\n</iq>\n");
}

void vapi_out_open(struct vapi_out *o, const char *name)
{
    puts_(o, "<");
    puts_(o, name);
    puts_(o, ">\n");
}

void vapi_out_close(struct vapi_out *o, const char *name)
{
    puts_(o, "</");
    puts_(o, name);
    puts_(o, ">\n");
}

void vapi_out_textn(struct vapi_out *o, const char *name, const char *text, size_t len)
{
    puts_(o, "<");
    puts_(o, name);
    if (text == NULL || len == 0) {
        puts_(o, "/>\n");
        return;
    }
    puts_(o, ">");
    put_escaped(o, text, len);
    puts_(o, "</");
    puts_(o, name);
    puts_(o, ">\n");
}

void vapi_out_text(struct vapi_out *o, const char *name, const char *text)
{
    vapi_out_textn(o, name, text, text ? strlen(text) : 0);
}

void vapi_out_int(struct vapi_out *o, const char *name, long long v)
{
    char num[24];
    snprintf(num, sizeof num, "%lld", v);
    vapi_out_text(o, name, num);
}

void vapi_out_prop_begin(struct vapi_out *o, const char *propname, const char *classname)
{
    vapi_out_open(o, "item");
    vapi_out_open(o, "apiproperty");
    vapi_out_text(o, "propname", propname);
    vapi_out_close(o, "apiproperty");
    vapi_out_open(o, "propertyval");
    vapi_out_text(o, "classname", classname);
}

void vapi_out_prop_end(struct vapi_out *o, int right)
{
    vapi_out_close(o, "propertyval");
    vapi_out_int(o, "propertyright", right);
    vapi_out_close(o, "item");
}

const char *vapi_out_data(const struct vapi_out *o, size_t *len_r)
{
    if (o->failed || o->buf == NULL)
        return NULL;
    if (len_r != NULL)
        *len_r = o->len;
    return o->buf;
}

bool vapi_out_failed(const struct vapi_out *o)
{
    return o->failed;
}

char *vapi_out_take(struct vapi_out *o, size_t *len_r)
{
    if (o->failed || o->buf == NULL)
        return NULL;
    char *doc = o->buf;
    if (len_r != NULL)
        *len_r = o->len;
    o->buf = NULL;
    o->len = o->cap = 0;
    return doc;
}

char *vapi_error_document(const char *error_uid, const char *id, const char *uid, const char *sid)
{
    struct vapi_out *o = vapi_out_new(4096);
    if (o == NULL)
        return NULL;
    vapi_out_begin(o, "error", id, uid, sid);
    puts_(o, "<error uid=\"");
    put_escaped(o, error_uid, strlen(error_uid));
    puts_(o, "\"/>\n");
    vapi_out_end(o);
    char *doc = vapi_out_take(o, NULL);
    vapi_out_free(&o);
    return doc;
}
