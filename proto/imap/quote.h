/* Writing strings back to an IMAP client (RFC 9051 §4.1-§4.3): as an atom when the context
 * allows one and the text is a plain atom, as a quoted string when that is safe, as a literal
 * otherwise.
 *
 * Quoted strings carry printable US-ASCII (0x20-0x7e) with '"' and '\' escaped, and, when the
 * session accepts UTF-8 (IMAP4rev2, or UTF8=ACCEPT under RFC 6855 §3), valid UTF-8 too; other
 * 8-bit text, CR, LF and other control characters go in a literal "{n}\r\n..." (server literals
 * are always synchronizing in form). A string with a NUL byte cannot be sent as an IMAP string
 * at all (RFC 9051 §4.3: literals are CHAR8) and is refused; binary content goes out as literal8
 * through the FETCH BINARY code, not here.
 *
 * The output goes into the growable buffer of envelope.h, which ENVELOPE and BODYSTRUCTURE also
 * write to. */
#ifndef FLOE_PROTO_IMAP_QUOTE_H
#define FLOE_PROTO_IMAP_QUOTE_H

#include <stddef.h>

#include "proto/imap/envelope.h"

#define IMAP_QUOTE_ASTRING 1u /* the grammar takes an astring here: an atom may be used */
#define IMAP_QUOTE_UTF8 2u    /* the session accepts UTF-8 in quoted strings */

enum imap_quote_form {
    IMAP_QUOTE_FORM_ATOM,
    IMAP_QUOTE_FORM_QUOTED,
    IMAP_QUOTE_FORM_LITERAL,
    IMAP_QUOTE_FORM_NONE, /* holds NUL: cannot be sent as a string */
};

/* The form s[0..n) would be written in with these flags. An atom is never chosen for the empty
 * string or for "NIL" in any case (a client would read NIL), nor for text with ASTRING-CHARs
 * only in part; '%' and '*' are list wildcards, not ASTRING-CHARs, so they are quoted; so is
 * text with an unclosed or nested '[', which Floe's own reader (parser.h) takes for a section. */
enum imap_quote_form imap_quote_choose(const char *s, size_t n, unsigned flags);

/* Appends s[0..n) in the chosen form. -1 (nothing written) when it holds NUL. */
int imap_quote_append(struct imap_envelope_out *out, const char *s, size_t n, unsigned flags);

/* Appends a NUL-terminated s as an nstring: NIL when s is NULL. */
int imap_quote_nstring(struct imap_envelope_out *out, const char *s, unsigned flags);

#endif
