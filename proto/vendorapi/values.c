/* Values of the vendor admin XML API (see values.h). */
#include "proto/vendorapi/values.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int vapi_account_type(const char *kind)
{
    if (kind == NULL)
        return -1;
    if (strcmp(kind, "user") == 0)
        return VAPI_TYPE_USER;
    if (strcmp(kind, "group") == 0)
        return VAPI_TYPE_GROUP;
    if (strcmp(kind, "resource") == 0)
        return VAPI_TYPE_RESOURCE;
    return -1;
}

static unsigned char fold(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Length of the character at s (a UTF-8 lead byte and its continuation
 * bytes, never past the NUL); 1 for a stray byte. */
static size_t char_len(const char *s)
{
    size_t n = 1;
    if ((unsigned char)s[0] >= 0xC0)
        while (n < 4 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n++;
    return n;
}

bool vapi_glob_match(const char *mask, const char *text)
{
    if (mask == NULL || *mask == '\0')
        return true;
    if (text == NULL)
        text = "";
    /* Greedy scan that remembers the last '*': on a mismatch the star takes one
     * more character and the scan resumes after it. Each restart moves star_t
     * forward, so the work is bounded by len(mask) * len(text). */
    const char *m = mask, *t = text, *star_m = NULL, *star_t = NULL;
    while (*t != '\0') {
        if (*m == '*') {
            while (*m == '*')
                m++;
            star_m = m;
            star_t = t;
        } else if (*m == '?') {
            m++;
            t += char_len(t);
        } else if (*m != '\0' && fold((unsigned char)*m) == fold((unsigned char)*t)) {
            m++;
            t++;
        } else if (star_m != NULL) {
            star_t += char_len(star_t);
            m = star_m;
            t = star_t;
        } else {
            return false;
        }
    }
    while (*m == '*')
        m++;
    return *m == '\0';
}

static const char *trim(const char *s, size_t *len_r)
{
    size_t n = strlen(s);
    while (n > 0 && strchr(" \t\r\n", s[n - 1]) != NULL)
        n--;
    while (n > 0 && strchr(" \t\r\n", *s) != NULL) {
        s++;
        n--;
    }
    *len_r = n;
    return s;
}

int vapi_authtype_parse(const char *s)
{
    if (s == NULL)
        return 0;
    size_t n;
    s = trim(s, &n);
    if (n == 0 || (n == 1 && *s == '0') || (n == 5 && strncasecmp(s, "plain", 5) == 0))
        return 0;
    if ((n == 1 && *s == '1') || (n == 3 && strncasecmp(s, "rsa", 3) == 0))
        return 1;
    return -1;
}

int vapi_number_parse(const char *s, long long max, long long *v_r)
{
    if (s == NULL)
        return -1;
    size_t n;
    s = trim(s, &n);
    if (n == 0 || n > 18)
        return -1;
    long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max)
        return -1;
    *v_r = v;
    return 0;
}

int vapi_digest_split(const char *plain, size_t len, char *pw, size_t pwlen, long long *t_r)
{
    if (plain == NULL || len < 5 || memchr(plain, '\0', len) != NULL ||
        strncmp(plain, "p=", 2) != 0)
        return -1;
    /* the last "&t=": whatever follows it must be the timestamp */
    size_t at = 0;
    bool found = false;
    for (size_t i = 2; i + 3 <= len; i++)
        if (memcmp(plain + i, "&t=", 3) == 0) {
            at = i;
            found = true;
        }
    if (!found)
        return -1;
    size_t tlen = len - at - 3;
    if (tlen == 0 || tlen > 18)
        return -1;
    long long t = 0;
    for (size_t i = at + 3; i < len; i++) {
        if (plain[i] < '0' || plain[i] > '9')
            return -1;
        t = t * 10 + (plain[i] - '0');
    }
    size_t plen = at - 2;
    if (plen >= pwlen)
        return -1;
    memcpy(pw, plain + 2, plen);
    pw[plen] = '\0';
    *t_r = t;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int vapi_percent_decode(const char *s, char *out, size_t outlen)
{
    size_t o = 0;
    int decoded = 0;
    if (outlen == 0)
        return -1;
    for (size_t i = 0; s[i] != '\0'; i++) {
        char c = s[i];
        if (c == '%') {
            int hi = hexval(s[i + 1]), lo = hi < 0 ? -1 : hexval(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
            decoded = 1;
        }
        if (o + 1 >= outlen)
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return decoded;
}

/* Copies s[0..n) into out[outlen], cut on a UTF-8 character boundary. */
static void copy_cut(char *out, size_t outlen, const char *s, size_t n)
{
    if (outlen == 0)
        return;
    if (n >= outlen) {
        n = outlen - 1;
        /* never end inside a multi-byte sequence */
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(out, s, n);
    out[n] = '\0';
}

void vapi_name_split(const char *full, char *given, size_t givenlen, char *surname,
                     size_t surnamelen)
{
    if (full == NULL)
        full = "";
    while (*full == ' ')
        full++;
    const char *sp = strchr(full, ' ');
    size_t glen = sp ? (size_t)(sp - full) : strlen(full);
    copy_cut(given, givenlen, full, glen);
    const char *rest = sp ? sp : full + glen;
    while (*rest == ' ')
        rest++;
    size_t rlen = strlen(rest);
    while (rlen > 0 && rest[rlen - 1] == ' ')
        rlen--;
    copy_cut(surname, surnamelen, rest, rlen);
}
