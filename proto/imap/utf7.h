/* Modified UTF-7 mailbox names (RFC 3501 §5.1.3, kept by RFC 9051 §5.1 for IMAP4rev1 clients)
 * to and from UTF-8.
 *
 * Decoding is strict, so every name has exactly one encoded form and two spellings can never
 * name the same mailbox: only printable US-ASCII (0x20-0x7e) may appear; "&-" is "&"; "&" opens
 * a run of modified base64 (',' for '/', no '=' padding) of UTF-16BE that "-" must close; a run
 * may not be empty, may not encode a printable ASCII character, may not leave a partial or
 * non-zero trailing group of bits, may not split a surrogate pair, and may not follow another
 * run directly ("-&" null shift). U+0000 is refused both ways. Encoding produces that one form;
 * its input must be valid UTF-8 (proto/text/utf8.h). */
#ifndef FLOE_PROTO_IMAP_UTF7_H
#define FLOE_PROTO_IMAP_UTF7_H

#include <stddef.h>

/* Modified UTF-7 in[0..len) to UTF-8: a new NUL-terminated string in *out_r, its length in
 * *len_r (may be NULL). -1 with a message in err (may be NULL) when the input is not canonical
 * modified UTF-7, or out of memory. */
int imap_utf7_decode(const char *in, size_t len, char **out_r, size_t *len_r, char *err,
                     size_t errlen);

/* UTF-8 in[0..len) to modified UTF-7, same conventions; -1 for invalid UTF-8 or U+0000. */
int imap_utf7_encode(const char *in, size_t len, char **out_r, size_t *len_r, char *err,
                     size_t errlen);

#endif
