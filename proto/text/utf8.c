/* UTF-8 validation (see utf8.h). */
#include "proto/text/utf8.h"

size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp_r)
{
    if (n == 0)
        return 0;
    unsigned char b = s[0];
    if (b < 0x80) {
        *cp_r = b;
        return 1;
    }
    size_t len;
    uint32_t cp, min;
    if ((b & 0xE0) == 0xC0) {
        len = 2, cp = b & 0x1F, min = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
        len = 3, cp = b & 0x0F, min = 0x800;
    } else if ((b & 0xF8) == 0xF0) {
        len = 4, cp = b & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    *cp_r = cp;
    return len;
}

bool utf8_check(const char *s, size_t n, unsigned flags)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t len = utf8_decode(p + i, n - i, &cp);
        if (len == 0)
            return false;
        if ((flags & UTF8_NO_C0) && (cp < 0x20 || cp == 0x7f))
            return false;
        if ((flags & UTF8_NO_C1) && cp >= 0x80 && cp <= 0x9f)
            return false;
        i += len;
    }
    return true;
}
