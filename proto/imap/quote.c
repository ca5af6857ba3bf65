/* IMAP string output (see quote.h): one scan of the text decides the form, a second writes it.
 * Escaping in quoted strings is limited to the two quoted-specials, the only escapes RFC 9051 §9
 * QUOTED-CHAR has. */
#include "proto/imap/quote.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "proto/text/utf8.h"

/* RFC 9051 §9: ASTRING-CHAR = ATOM-CHAR / resp-specials; ATOM-CHAR is any CHAR except
 * atom-specials: "(" ")" "{" SP CTL "%" "*" '"' "\" "]" (the last one is allowed back as
 * resp-specials). */
static bool astring_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' && c != '%' && c != '*' &&
           c != '"' && c != '\\';
}

enum imap_quote_form imap_quote_choose(const char *s, size_t n, unsigned flags)
{
    const unsigned char *u = (const unsigned char *)s;
    bool atom = (flags & IMAP_QUOTE_ASTRING) && n > 0 && !(n == 3 && strncasecmp(s, "NIL", 3) == 0);
    bool quotable = true, high = false, bracket = false;
    for (size_t i = 0; i < n; i++) {
        if (u[i] == 0)
            return IMAP_QUOTE_FORM_NONE;
        if (!astring_char(u[i]))
            atom = false;
        /* parser.c reads an atom's '[' up to its ']' (FETCH sections): only balanced,
         * unnested brackets can go out in an atom */
        if (u[i] == '[') {
            if (bracket)
                atom = false;
            bracket = true;
        } else if (u[i] == ']') {
            bracket = false;
        }
        if (u[i] >= 0x80)
            high = true;
        else if (u[i] < 0x20 || u[i] == 0x7f)
            quotable = false;
    }
    if (atom && !bracket)
        return IMAP_QUOTE_FORM_ATOM;
    /* RFC 9051 §4.3 / RFC 6855 §3: UTF-8 in quoted strings only for UTF-8 sessions */
    if (high && (!(flags & IMAP_QUOTE_UTF8) || !utf8_check(s, n, 0)))
        quotable = false;
    return quotable ? IMAP_QUOTE_FORM_QUOTED : IMAP_QUOTE_FORM_LITERAL;
}

int imap_quote_append(struct imap_envelope_out *out, const char *s, size_t n, unsigned flags)
{
    switch (imap_quote_choose(s, n, flags)) {
    case IMAP_QUOTE_FORM_NONE:
        return -1;
    case IMAP_QUOTE_FORM_ATOM:
        imap_envelope_out_add(out, s, n);
        return 0;
    case IMAP_QUOTE_FORM_QUOTED: {
        imap_envelope_out_add(out, "\"", 1);
        size_t start = 0;
        for (size_t i = 0; i < n; i++) {
            if (s[i] == '"' || s[i] == '\\') {
                imap_envelope_out_add(out, s + start, i - start);
                imap_envelope_out_add(out, "\\", 1);
                start = i;
            }
        }
        imap_envelope_out_add(out, s + start, n - start);
        imap_envelope_out_add(out, "\"", 1);
        return 0;
    }
    case IMAP_QUOTE_FORM_LITERAL: {
        char prefix[32];
        int pn = snprintf(prefix, sizeof(prefix), "{%zu}\r\n", n);
        imap_envelope_out_add(out, prefix, (size_t)pn);
        imap_envelope_out_add(out, s, n);
        return 0;
    }
    }
    return -1;
}

int imap_quote_nstring(struct imap_envelope_out *out, const char *s, unsigned flags)
{
    if (!s) {
        imap_envelope_out_add(out, "NIL", 3);
        return 0;
    }
    return imap_quote_append(out, s, strlen(s), flags & ~IMAP_QUOTE_ASTRING);
}
