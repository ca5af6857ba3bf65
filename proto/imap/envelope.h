/* IMAP ENVELOPE (RFC 3501 §7.4.2, RFC 9051 §7.5.2) from a message's envelope header fields, and
 * the IMAP string output both ENVELOPE and BODYSTRUCTURE are written with.
 *
 * Strings are written as quoted strings when every byte is printable 7-bit ASCII other than
 * '"' and '\', and as literals ("{n}\r\n" then the bytes) otherwise: CR, LF, quotes,
 * backslashes and 8-bit bytes all go in literals, which every IMAP parser must accept and which
 * need no escaping. NUL bytes, which no IMAP string may hold (RFC 3501 §4.3), are sent as
 * spaces. Absent values are NIL. */
#ifndef FLOE_PROTO_IMAP_ENVELOPE_H
#define FLOE_PROTO_IMAP_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/mime/mime.h"

/* A growable output buffer. After an allocation failure it stops growing and failed is set;
 * the caller checks once at the end. data is NUL-terminated when not NULL. */
struct imap_envelope_out {
    char *data;
    size_t len, cap;
    bool failed;
};

/* Appends raw text. */
void imap_envelope_out_add(struct imap_envelope_out *out, const char *s, size_t n);

/* Appends s[0..n) as an IMAP string (quoted or literal, see above). */
void imap_envelope_out_string(struct imap_envelope_out *out, const char *s, size_t n);

/* Appends a NUL-terminated s as an IMAP nstring: NIL when s is NULL. */
void imap_envelope_out_nstring(struct imap_envelope_out *out, const char *s);

/* Frees the buffer's data and resets it. */
void imap_envelope_out_free(struct imap_envelope_out *out);

/* Appends the parenthesised ENVELOPE of env: date, subject, from, sender, reply-to, to, cc, bcc,
 * in-reply-to, message-id. Date, subject, in-reply-to and message-id are the unfolded field
 * values (NIL when absent, "" when empty). Address lists are parsed (header.h) into
 * "(name adl mailbox host)" entries, groups as (NIL NIL "name" NIL) ... (NIL NIL NIL NIL); an
 * absent or empty list is NIL; Sender and Reply-To, when absent or empty, repeat From (RFC 3501
 * §7.4.2). env NULL gives an envelope of ten NILs. */
void imap_envelope_append(struct imap_envelope_out *out, const struct mime_envelope *env);

/* The ENVELOPE of env as a new NUL-terminated string in *out_r, its length in *len_r (may be
 * NULL). Formatting cannot fail on any input; -1 means out of memory. */
int imap_envelope_format(const struct mime_envelope *env, char **out_r, size_t *len_r);

#endif
