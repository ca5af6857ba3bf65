/* Message header fields: splitting a header block into fields, unfolding, MIME parameters
 * (RFC 2045 §5.1 with RFC 2231 continuations and charsets), RFC 2047 encoded-words decoded to
 * UTF-8, and address lists (RFC 5322 §3.4 with groups and the obsolete forms of §4.4).
 *
 * Everything here works on bytes already in memory (one header field of a bounded header block),
 * never fails on malformed input (the result is a best effort, like every mail client's), and
 * allocates with malloc: NULL / -1 mean out of memory only. Charset conversion uses iconv;
 * unknown charsets and undeclared 8-bit text are read as UTF-8 where valid and as ISO-8859-1
 * byte by byte where not, so the output is always valid UTF-8. */
#ifndef FLOE_PROTO_MIME_HEADER_H
#define FLOE_PROTO_MIME_HEADER_H

#include <stdbool.h>
#include <stddef.h>

#define MIME_HEADER_MAX_PARAMS 128      /* parameters kept per field; more are ignored */
#define MIME_HEADER_MAX_SECTIONS 1000   /* RFC 2231 continuation numbers 0..999 */
#define MIME_HEADER_MAX_ADDRESSES 10000 /* list entries (group markers included) kept per field */
#define MIME_HEADER_MAX_CHARSET 64      /* longer charset names are treated as unknown */

/* One field of a header block. name is not NUL-terminated; value is the raw value after the
 * colon, folding line breaks and the final line break included (use mime_header_unfold). */
struct mime_header_field {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* Iterates over the fields of hdr[0..len) (a header block, blank line included or not), starting
 * at *pos (0 for the first call). Returns 1 with the next field in *field_r and *pos advanced,
 * 0 when there are no more fields. Lines that are neither a field ("name:" with a non-empty
 * name of printable ASCII) nor a continuation are skipped (RFC 5322 §2.2, §3.6.8). Whitespace
 * between the name and the colon is allowed (RFC 5322 §4.5) and not part of name. */
int mime_header_next_field(const char *hdr, size_t len, size_t *pos,
                           struct mime_header_field *field_r);

/* Unfolds a raw field value (RFC 5322 §2.2.3): removes every CRLF or bare LF, keeps the
 * whitespace that follows it, drops leading and trailing whitespace, and turns NUL bytes
 * into spaces so the result is a C string of the same content. NULL: out of memory. */
char *mime_header_unfold(const char *value, size_t len);

/* Decodes RFC 2047 encoded-words in an unstructured value (Subject, a display name, ...) to
 * UTF-8. Whitespace between adjacent encoded-words is dropped (RFC 2047 §6.2); adjacent words
 * in one charset are joined before conversion, so a character split across two words survives;
 * words are recognised even without surrounding whitespace (common in the wild). Words with an
 * unknown charset or malformed encoded text stay as they are. Text outside encoded-words is
 * taken as UTF-8, invalid bytes as ISO-8859-1. Control characters other than TAB become spaces.
 * The value should be unfolded first. NULL: out of memory. */
char *mime_header_decode(const char *value, size_t len);

/* Converts in[0..len) from charset to UTF-8 (iconv; invalid sequences become U+FFFD). An unknown
 * or absent charset, US-ASCII and UTF-8 take the UTF-8-else-ISO-8859-1 path described above.
 * *out_r is NUL-terminated; *out_len_r (may be NULL) excludes the NUL. -1: out of memory. */
int mime_header_charset_to_utf8(const char *charset, const char *in, size_t len, char **out_r,
                                size_t *out_len_r);

/* The name to pass to iconv_open() for a MIME charset, written to buf (at least
 * MIME_HEADER_MAX_CHARSET + 1 bytes): lower-cased, RFC 2231 language suffix dropped, common
 * mislabels mapped to the superset really meant ("iso-8859-1" -> WINDOWS-1252, "gb2312" ->
 * GB18030, "ks_c_5601-1987" -> CP949: the WHATWG Encoding standard's choices). NULL when the
 * UTF-8-else-ISO-8859-1 path applies: absent, US-ASCII, UTF-8, "unknown", or a name iconv must
 * not see (too long, or with characters such as '/' that iconv reads as options). A name
 * iconv_open() then refuses should take that path too. */
const char *mime_header_charset_iconv_name(const char *charset, char *buf, size_t buflen);

/* Length of the valid UTF-8 sequence starting s[0..n) (RFC 3629 §4): 1..4; 0 when s[0] does not
 * start a valid sequence; -1 when s is a valid but incomplete prefix. n > 0. */
int mime_header_utf8_len(const unsigned char *s, size_t n);

/* A MIME parameter after RFC 2231 processing. Continuations (name*0, name*1*, ...) are merged
 * into one parameter; when any piece was extended (charset'language'%XX), extended is true and
 * value is the merged extended form ("utf-8''%E2%82%AC.pdf"), which IMAP BODYSTRUCTURE sends as
 * the parameter "name*" (what Dovecot does). decoded is the value as UTF-8 text: the extended
 * form percent-decoded and converted from its charset, or a plain value with any RFC 2047
 * encoded-words decoded (not standard, but what many mailers send for file names). A set of
 * continuations with a missing or repeated number is kept as separate raw parameters. */
struct mime_param {
    char *name; /* lower-case, without the RFC 2231 '*' marks (raw "name*1" when not merged) */
    char *value;
    char *decoded;
    bool extended;
};

/* Parses a Content-Type / Content-Disposition style value: a leading token (everything before
 * the first ';', lower-cased, comments removed, whitespace removed around '/' and otherwise
 * kept as one space: "text/plain", "attachment", "in line")
 * and "; attribute=value" parameters (token or quoted-string values; an unquoted value with
 * spaces is taken up to the next ';'). Comments are skipped (RFC 2045 §5.1, RFC 822 §3.4.3).
 * At most MIME_HEADER_MAX_PARAMS parameters are kept. *token_r is never NULL on success;
 * *params_r is NULL when *nparams_r is 0. Free with mime_header_params_free. -1: out of memory. */
int mime_header_params_parse(const char *value, size_t len, char **token_r,
                             struct mime_param **params_r, size_t *nparams_r);

/* The parameter called name (lower-case, without '*') in params, preferring an extended one
 * (RFC 2231 §4: it carries the better value); NULL when absent. */
const struct mime_param *mime_header_param_find(const struct mime_param *params, size_t n,
                                                const char *name);

/* Frees n parameters and the array; NULLs *params. */
void mime_header_params_free(struct mime_param **params, size_t n);

enum mime_address_kind {
    MIME_ADDRESS_MAILBOX,
    MIME_ADDRESS_GROUP_START, /* mailbox holds the group's display name */
    MIME_ADDRESS_GROUP_END,
};

/* One entry of an address list, in the shape of RFC 3501 §7.4.2 / RFC 9051 §7.5.2 addresses.
 * For a mailbox: name is the display name as sent (quoted-strings unquoted, words joined by
 * single spaces, encoded-words not decoded) or, without one, a trailing comment
 * ("user@host (Name)"); route is the obsolete source route ("@a,@b"); mailbox is the local part;
 * domain the domain. A missing local part or domain reads "MISSING_MAILBOX" / "MISSING_DOMAIN"
 * (as Dovecot does, so that the IMAP host is never NIL except for group markers) and sets
 * invalid. Group markers have only mailbox (start) or nothing (end) set. */
struct mime_address {
    enum mime_address_kind kind;
    char *name, *route, *mailbox, *domain; /* NULL when absent */
    bool invalid;
};

/* Parses an address-list / mailbox-list field value (From, Sender, Reply-To, To, Cc, Bcc, ...)
 * per RFC 5322 §3.4 and §4.4: display names, angle addresses, groups ("team: a@b, c@d;"),
 * obsolete routes, empty list elements, CFWS anywhere; junk is skipped up to the next comma.
 * A group without its ';' is closed at the end. At most MIME_HEADER_MAX_ADDRESSES entries.
 * *list_r is NULL when *n_r is 0. Free with mime_header_addresses_free. -1: out of memory. */
int mime_header_addresses_parse(const char *value, size_t len, struct mime_address **list_r,
                                size_t *n_r);

/* Frees n addresses and the array; NULLs *list. */
void mime_header_addresses_free(struct mime_address **list, size_t n);

#endif
