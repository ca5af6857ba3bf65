/* IMAP BODY and BODYSTRUCTURE (RFC 3501 §7.4.2, RFC 9051 §7.5.2) from a parsed MIME tree
 * (proto/mime/mime.h), strings written as envelope.h describes.
 *
 * Shape, per part:
 *  - multipart: its parts, then the subtype; extended adds the Content-Type parameters, the
 *    disposition, language and location. A multipart that ended up with no parts (no boundary
 *    line found, or cut by a limit) gets one empty text/plain part, since the grammar needs one
 *    (what Dovecot does).
 *  - other parts: type, subtype, parameters (text parts without a charset get
 *    "charset" "us-ascii", RFC 2045 §5.2), id, description, transfer encoding ("7bit" when
 *    absent), body size in bytes; text parts add their line count; message/rfc822 parts add
 *    the encapsulated message's ENVELOPE, its body and the line count (when a limit stopped the
 *    parse, an all-NIL envelope and an empty text/plain body); extended adds MD5, disposition,
 *    language (always as a list) and location.
 * Types, subtypes, encodings, disposition types and parameter names are lower-case (they are
 * case-insensitive: RFC 2045 §5.1); RFC 2231 parameters are merged and sent as "name*" with
 * their extended value, like Dovecot. Sizes are the bytes of the message as stored. */
#ifndef FLOE_PROTO_IMAP_BODYSTRUCTURE_H
#define FLOE_PROTO_IMAP_BODYSTRUCTURE_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/imap/envelope.h"
#include "proto/mime/mime.h"

/* Appends the body structure of part (a whole "( ... )" body): BODYSTRUCTURE when extended,
 * BODY otherwise. */
void imap_bodystructure_append(struct imap_envelope_out *out, const struct mime_part *part,
                               bool extended);

/* The body structure of root (normally &message->root) as a new NUL-terminated string in
 * *out_r, ready to follow "BODYSTRUCTURE " or "BODY " in a FETCH response; its length in
 * *len_r (may be NULL). Formatting cannot fail on any tree; -1 means out of memory. */
int imap_bodystructure_format(const struct mime_part *root, bool extended, char **out_r,
                              size_t *len_r);

#endif
