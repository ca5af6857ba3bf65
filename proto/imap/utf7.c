/* Modified UTF-7 (RFC 3501 §5.1.3) <-> UTF-8 (see utf7.h for the rules).
 *
 * Decoding walks the input once: printable ASCII is copied, a base64 run is turned into 16-bit
 * units through a small bit accumulator and each unit (or surrogate pair) is written as UTF-8.
 * The checks that make the form canonical happen where the information is: a printable code
 * unit when it is decoded, leftover bits at the closing "-", the null shift at the next "&".
 * UTF-8 output is at most 9/8 of the input length: a 16-bit unit takes 16/6 base64 characters
 * and at most 3 UTF-8 bytes (a surrogate pair 32/6 characters and 4 bytes), ASCII is 1:1.
 * Encoding gathers each run of characters outside printable ASCII into one base64 run. */
#include "proto/imap/utf7.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "proto/text/utf8.h"

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

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
    if (c == ',')
        return 63;
    return -1;
}

static size_t put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

int imap_utf7_decode(const char *in, size_t len, char **out_r, size_t *len_r, char *err,
                     size_t errlen)
{
    *out_r = NULL;
    if (len > SIZE_MAX / 2) {
        set_err(err, errlen, "input too long");
        return -1;
    }
    char *out = malloc(len + len / 8 + 8);
    if (!out) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0, n = 0;
    bool after_run = false; /* the previous byte closed a base64 run */
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x20 || c > 0x7e) {
            set_err(err, errlen, "byte 0x%02x at offset %zu is not printable ASCII", c, i);
            goto fail;
        }
        if (c != '&') {
            out[n++] = (char)c;
            i++;
            after_run = false;
            continue;
        }
        if (++i == len) {
            set_err(err, errlen, "'&' at the end");
            goto fail;
        }
        if (s[i] == '-') { /* "&-" is "&" */
            out[n++] = '&';
            i++;
            after_run = false;
            continue;
        }
        if (after_run) {
            set_err(err, errlen, "two encoded runs in a row at offset %zu", i - 1);
            goto fail;
        }
        uint32_t bits = 0, high = 0;
        unsigned nbits = 0;
        size_t units = 0;
        while (i < len && s[i] != '-') {
            int v = b64val(s[i]);
            if (v < 0) {
                set_err(err, errlen, "invalid base64 character at offset %zu", i);
                goto fail;
            }
            bits = ((bits << 6) | (uint32_t)v) & 0x3fffff; /* at most 22 bits are pending */
            nbits += 6;
            i++;
            if (nbits < 16)
                continue;
            nbits -= 16;
            uint32_t u = (bits >> nbits) & 0xffff;
            units++;
            if (high) {
                if (u < 0xdc00 || u > 0xdfff) {
                    set_err(err, errlen, "unpaired high surrogate");
                    goto fail;
                }
                n += put_utf8(out + n, 0x10000 + ((high - 0xd800) << 10) + (u - 0xdc00));
                high = 0;
            } else if (u >= 0xd800 && u <= 0xdbff) {
                high = u;
            } else if (u >= 0xdc00 && u <= 0xdfff) {
                set_err(err, errlen, "unpaired low surrogate");
                goto fail;
            } else if (u >= 0x20 && u <= 0x7e) {
                /* RFC 3501 §5.1.3: base64 MUST NOT represent a printable US-ASCII character */
                set_err(err, errlen, "encoded printable ASCII character");
                goto fail;
            } else if (u == 0) {
                set_err(err, errlen, "encoded NUL");
                goto fail;
            } else {
                n += put_utf8(out + n, u);
            }
        }
        if (i == len) {
            set_err(err, errlen, "unterminated encoded run");
            goto fail;
        }
        /* the shortest encoding leaves fewer than 6 bits over, all zero */
        if (units == 0 || nbits >= 6 || (bits & ((1u << nbits) - 1)) != 0) {
            set_err(err, errlen, "non-canonical encoded run ending at offset %zu", i);
            goto fail;
        }
        if (high) {
            set_err(err, errlen, "unpaired high surrogate");
            goto fail;
        }
        i++; /* '-' */
        after_run = true;
    }
    out[n] = '\0';
    *out_r = out;
    if (len_r)
        *len_r = n;
    return 0;
fail:
    free(out);
    return -1;
}

int imap_utf7_encode(const char *in, size_t len, char **out_r, size_t *len_r, char *err,
                     size_t errlen)
{
    *out_r = NULL;
    /* Worst case: a 1-byte control character between printable ones becomes "&AAE-". */
    if (len > (SIZE_MAX - 1) / 5) {
        set_err(err, errlen, "input too long");
        return -1;
    }
    char *out = malloc(len * 5 + 1);
    if (!out) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0, n = 0;
    while (i < len) {
        if (s[i] >= 0x20 && s[i] <= 0x7e) {
            out[n++] = (char)s[i];
            if (s[i] == '&')
                out[n++] = '-';
            i++;
            continue;
        }
        out[n++] = '&';
        uint32_t bits = 0;
        unsigned nbits = 0;
        while (i < len && !(s[i] >= 0x20 && s[i] <= 0x7e)) {
            uint32_t cp;
            size_t k = utf8_decode(s + i, len - i, &cp);
            if (k == 0) {
                set_err(err, errlen, "invalid UTF-8 at offset %zu", i);
                goto fail;
            }
            if (cp == 0) {
                set_err(err, errlen, "NUL at offset %zu", i);
                goto fail;
            }
            i += k;
            uint32_t units[2];
            size_t nu = 0;
            if (cp >= 0x10000) {
                units[nu++] = 0xd800 + ((cp - 0x10000) >> 10);
                units[nu++] = 0xdc00 + ((cp - 0x10000) & 0x3ff);
            } else {
                units[nu++] = cp;
            }
            for (size_t u = 0; u < nu; u++) {
                bits = (bits << 16) | units[u];
                nbits += 16;
                while (nbits >= 6) {
                    nbits -= 6;
                    out[n++] = b64chars[(bits >> nbits) & 0x3f];
                }
                bits &= (1u << nbits) - 1;
            }
        }
        if (nbits > 0)
            out[n++] = b64chars[(bits << (6 - nbits)) & 0x3f];
        out[n++] = '-';
    }
    out[n] = '\0';
    *out_r = out;
    if (len_r)
        *len_r = n;
    return 0;
fail:
    free(out);
    return -1;
}
