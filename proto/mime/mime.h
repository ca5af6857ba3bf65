/* Streaming MIME structure parser: a message's bytes in, in pieces of any size, and out a tree
 * of parts with their header fields, byte offsets, sizes and line counts, the envelope header
 * fields of the message and of every message/rfc822 part, and the text of the message for
 * full-text search (UTF-8). No I/O, and memory bounded whatever the message size: the body
 * is never kept, only one part's header at a time (up to a limit), the parsed fields (up to a
 * budget) and at most a fixed amount of search text.
 *
 * Structure rules (RFC 2045, RFC 2046, RFC 5322), with the tolerance real servers show:
 *  - CRLF and bare LF line ends are both accepted; offsets count the bytes as given.
 *  - A header ends at the first empty line (RFC 5322 §2.1); a message or part without one is
 *    all header. Lines that are not header fields are ignored.
 *  - A multipart body is split at lines "--boundary" (optionally followed by whitespace);
 *    "--boundary--" closes it (RFC 2046 §5.1.1). The line break before a boundary line belongs
 *    to the boundary, not to the part before it. The preamble and epilogue belong to no part.
 *    A boundary of any enclosing multipart also ends the inner parts (RFC 2046 §5.1.2), and a
 *    part whose boundary never comes runs to the end of the message.
 *  - A multipart without a usable boundary parameter is treated as text/plain (as Dovecot
 *    does); a multipart/digest's parts default to message/rfc822 (RFC 2046 §5.1.5); an invalid
 *    Content-Type means text/plain (RFC 2045 §5.2).
 *  - message/rfc822 is parsed as a message of its own, with its own envelope, unless its
 *    Content-Transfer-Encoding hides it (RFC 2046 §5.2.1 allows only 7bit, 8bit, binary).
 *  - Limits: past max_depth nesting, multiparts and messages are kept as leaves; past
 *    max_parts, no more parts are made and boundaries are no longer looked for, so the part
 *    being read runs to the end of the message. Both are flagged in mime_message.limits.
 */
#ifndef FLOE_PROTO_MIME_MIME_H
#define FLOE_PROTO_MIME_MIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/mime/header.h"

#define MIME_DEFAULT_MAX_PARTS 10000
#define MIME_DEFAULT_MAX_DEPTH 64
#define MIME_DEFAULT_MAX_HEADER_BYTES (256 * 1024)
#define MIME_DEFAULT_MAX_SEARCH_TEXT (1024 * 1024)
#define MIME_DEFAULT_MAX_META_BYTES (16 * 1024 * 1024)
#define MIME_MAX_BOUNDARY 200  /* longer boundaries are unusable (RFC 2046 §5.1.1 says 70) */
#define MIME_MAX_TYPE_NAME 127 /* RFC 6838 §4.2: type and subtype names */

/* Limits of one parse; a field left 0 takes its MIME_DEFAULT_*. */
struct mime_limits {
    size_t max_parts;        /* parts in the tree, the message itself included */
    size_t max_depth;        /* nesting: the message is depth 0, its parts 1, ...; at most
                                1000 (larger values are clamped) */
    size_t max_header_bytes; /* header bytes kept per part; the rest of a longer header is
                                skipped (its fields lost), its offsets still exact */
    size_t max_search_text;  /* bytes of search text kept */
    size_t max_meta_bytes;   /* bytes of field strings kept over the whole tree; past it,
                                optional fields of further parts are dropped */
};

/* Which limits a parse ran into (mime_message.limits). */
#define MIME_LIMIT_PARTS 1u
#define MIME_LIMIT_DEPTH 2u
#define MIME_LIMIT_HEADER 4u
#define MIME_LIMIT_SEARCH_TEXT 8u
#define MIME_LIMIT_META 16u

/* The header fields IMAP's ENVELOPE is made of (RFC 3501 §7.4.2), unfolded but otherwise as
 * sent (encoded-words not decoded, addresses not parsed); NULL when the field is absent, ""
 * when present but empty. The first occurrence of a field counts. references is kept too
 * (threading, RFC 5256). */
struct mime_envelope {
    char *date, *subject, *from, *sender, *reply_to, *to, *cc, *bcc, *in_reply_to, *message_id;
    char *references;
};

struct mime_part {
    char *type, *subtype;      /* lower-case, never NULL ("text"/"plain" by default) */
    struct mime_param *params; /* Content-Type parameters (see header.h) */
    size_t nparams;
    char *id, *description, *md5, *location, *language; /* Content-*, unfolded, or NULL */
    char *encoding;    /* Content-Transfer-Encoding, lower-case token, or NULL */
    char *disposition; /* Content-Disposition type, lower-case token, or NULL */
    struct mime_param *disposition_params;
    size_t ndisposition_params;

    /* Byte offsets in the message. The header includes the empty line ending it. The body of
     * a part in a multipart excludes the line break before the next boundary line (unless
     * that line break ends the part's header: then the body is empty). */
    uint64_t header_offset, header_size, body_offset, body_size;
    uint64_t body_lines; /* line feeds in the body */

    /* A multipart's parts; a message/rfc822 part's one child (the encapsulated message, whose
     * header is that message's header). Empty for leaves and for containers cut by a limit. */
    struct mime_part *children;
    size_t nchildren;

    /* Set on the message (the root) and on each message/rfc822 child: its envelope fields. */
    struct mime_envelope *envelope;
};

struct mime_message {
    struct mime_part root; /* the message itself; its header is the message header */
    uint64_t size;         /* bytes fed */
    uint64_t lines;        /* line feeds in the message */
    size_t nparts;         /* parts in the tree, root included */
    unsigned limits;       /* MIME_LIMIT_* that were reached */
    char *search_text;     /* UTF-8 text of the text parts (HTML stripped), never NULL */
    size_t search_text_len;
};

struct mime_parser;

/* A parser for one message; lim NULL means all defaults. NULL: out of memory. */
struct mime_parser *mime_parser_new(const struct mime_limits *lim);

/* Feeds the next len bytes of the message; data may be split anywhere. 0 ok, -1 out of memory
 * (the parser is then unusable except for mime_parser_free / _finish, which returns NULL). */
int mime_parser_feed(struct mime_parser *p, const char *data, size_t len);

/* Ends the input, frees the parser (*p becomes NULL) and returns the parsed message. Malformed
 * MIME is never an error: it gives a best-effort tree. NULL only when memory ran out. */
struct mime_message *mime_parser_finish(struct mime_parser **p);

/* Frees a parser without a result (on an error path); NULLs *p. */
void mime_parser_free(struct mime_parser **p);

void mime_message_free(struct mime_message **m);

/* Whether the part is a multipart (its children are parts) or a message/rfc822 (its one child
 * is the encapsulated message); both can have no children when a limit cut them. */
bool mime_part_is_multipart(const struct mime_part *part);
bool mime_part_is_message(const struct mime_part *part);

/* The decoded (UTF-8) value of a Content-Type parameter, NULL when absent. */
const char *mime_part_param(const struct mime_part *part, const char *name);

/* The part's file name: Content-Disposition's filename, else Content-Type's name (RFC 2183
 * §2.3, and the older convention); UTF-8, NULL when none. */
const char *mime_part_filename(const struct mime_part *part);

/* The part at an IMAP section number ("1", "2.1.3"; RFC 3501 §6.4.5): parts of a multipart are
 * numbered from 1; a message/rfc822 part's numbers continue into its message's parts (or its
 * body, when that is not a multipart). "" is the whole message. NULL when there is no such
 * part. For "N.HEADER"/"N.TEXT"/"N.MIME" the caller strips the suffix first. */
const struct mime_part *mime_message_section(const struct mime_message *m, const char *section);

/* ---- text.c: a part's body as UTF-8 text ---------------------------------------------------- */

/* Output of the text decoder: text appended up to max bytes, never splitting a character. */
struct mime_textbuf {
    char *data; /* NUL-terminated when not NULL */
    size_t len, cap, max;
    bool full; /* max was reached: further text is dropped */
    bool oom;
};

struct mime_text;

/* A decoder for a body in Content-Transfer-Encoding encoding (NULL: identity; base64 and
 * quoted-printable are decoded, RFC 2045 §6.7, §6.8) and charset (see header.h for how
 * charsets are read), with HTML tags and scripts stripped and entities decoded when html.
 * Whitespace runs are collapsed to one space or one line feed. NULL: out of memory. */
struct mime_text *mime_text_new(const char *encoding, const char *charset, bool html);

/* Decodes the next body bytes (any split), appending the text to out. 0, or -1 out of memory. */
int mime_text_feed(struct mime_text *t, const char *data, size_t len, struct mime_textbuf *out);

/* Ends the body: flushes what is pending into out. 0, or -1 out of memory. */
int mime_text_finish(struct mime_text *t, struct mime_textbuf *out);

void mime_text_free(struct mime_text **t);

/* Appends UTF-8 text to out under its bound (cutting at a character boundary). 0, -1 oom. */
int mime_textbuf_add(struct mime_textbuf *out, const char *s, size_t n);

#endif
