/* UTF-8 validation (RFC 3629 §3-4): shortest form only, no surrogates, nothing
 * above U+10FFFF; optionally no control characters. Shared by every check of
 * names, passwords and other text that arrives from outside. */
#ifndef FLOE_PROTO_TEXT_UTF8_H
#define FLOE_PROTO_TEXT_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UTF8_NO_C0 1u /* refuse U+0000..U+001F and DEL (U+007F) */
#define UTF8_NO_C1 2u /* refuse U+0080..U+009F */

/* Decodes the code point at s[0..n). Returns its length in bytes (1-4) and the
 * value in *cp_r, or 0 when the bytes there are not valid UTF-8 (truncated,
 * overlong, surrogate, above U+10FFFF, stray continuation byte). */
size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp_r);

/* True when s[0..n) is valid UTF-8 and has none of the characters flags refuse. */
bool utf8_check(const char *s, size_t n, unsigned flags);

#endif
