/* Pure pieces of the IMAP service that read client syntax or stored data, kept apart so they
 * are unit-tested (tests/unit/test_imap_syntax.c) and fuzzed (tests/fuzz/fuzz_imap_syntax.c)
 * without a server: FETCH data items and body sections, the part offsets the ingest stores,
 * Content-Transfer-Encoding decoding for BINARY, IMAP date-time, and LIST patterns. */
#ifndef FLOE_NODE_IMAP_SYNTAX_H
#define FLOE_NODE_IMAP_SYNTAX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "proto/imap/parser.h"

/* Data items in one FETCH, header fields named in one section, digits of a part number. */
#define IMAP_FETCH_ITEMS_MAX 100
#define IMAP_FETCH_FIELDS_MAX 100
#define IMAP_SECTION_PART_MAX 128

enum imap_fetch_att {
    IMAP_FA_FLAGS,
    IMAP_FA_INTERNALDATE,
    IMAP_FA_RFC822_SIZE,
    IMAP_FA_UID,
    IMAP_FA_MODSEQ,
    IMAP_FA_ENVELOPE,
    IMAP_FA_BODY, /* BODY without a section: the non-extensible structure */
    IMAP_FA_BODYSTRUCTURE,
    IMAP_FA_SECTION, /* BODY[...], BODY.PEEK[...], BINARY[...], RFC822, RFC822.HEADER/TEXT */
    IMAP_FA_BINARY_SIZE,
};

enum imap_section_kind {
    IMAP_SEC_ALL,    /* [] or [part]: the whole message or the part's body */
    IMAP_SEC_HEADER, /* [HEADER], [part.HEADER] */
    IMAP_SEC_FIELDS, /* [HEADER.FIELDS (...)] */
    IMAP_SEC_FIELDS_NOT,
    IMAP_SEC_TEXT,
    IMAP_SEC_MIME, /* [part.MIME] */
};

struct imap_fetch_item {
    enum imap_fetch_att att;
    bool binary;                      /* BINARY[] / BINARY.SIZE[]: decoded content */
    bool peek;                        /* does not set \Seen */
    char part[IMAP_SECTION_PART_MAX]; /* "1.2", "" for the message itself */
    enum imap_section_kind kind;
    char **fields; /* HEADER.FIELDS names as sent */
    size_t nfields;
    bool partial;
    uint64_t origin, count;
    /* the response's item name: "BODY[1.MIME]", "RFC822.HEADER", "BINARY[2]" (without <origin>) */
    char *name;
};

struct imap_fetch_spec {
    struct imap_fetch_item *items;
    size_t n;
    bool need_meta; /* ENVELOPE, BODY, BODYSTRUCTURE or a section: stored metadata */
    bool sets_seen; /* a section without PEEK */
    bool has_uid, has_modseq, has_flags; /* asked for by name */
    long long changedsince;              /* RFC 7162 CHANGEDSINCE; 0 none */
    bool vanished;                       /* RFC 7162 VANISHED modifier */
};

/* Parses the data items of a FETCH (an atom: a macro or one item; or a list of items) and the
 * optional modifier list (RFC 7162 §3.1.4.1 CHANGEDSINCE, §3.2.6 VANISHED; NULL none). 0, or -1
 * with a message for the BAD reply. Free with imap_fetch_spec_free. */
int imap_fetch_spec_parse(const struct imap_arg *items, const struct imap_arg *modifiers,
                          struct imap_fetch_spec *spec_r, char *err, size_t errlen);
void imap_fetch_spec_free(struct imap_fetch_spec *spec);

/* Where a section's bytes are in a message, from the "parts" JSON the ingest stored
 * (storage/ingest.c): [{"s":"1.2","h":[off,len],"b":[off,len],"l":n,"mh":[..],"mb":[..]},...]. */
struct imap_part_offsets {
    uint64_t h_off, h_len, b_off, b_len;
    bool message; /* a message/rfc822 part: its message's header and text follow */
    uint64_t mh_off, mh_len, mb_off, mb_len;
};
/* 0 with *r filled when section (e.g. "2.1") is in json, -1 when not (or json is malformed). */
int imap_parts_find(const char *json, const char *section, struct imap_part_offsets *r);

/* Content-Transfer-Encoding decoding (RFC 2045 §6.7, §6.8), a piece at a time. */
enum imap_cte {
    IMAP_CTE_IDENTITY, /* 7bit, 8bit, binary, or none given */
    IMAP_CTE_BASE64,
    IMAP_CTE_QP,
};
struct imap_decoder {
    enum imap_cte cte;
    uint32_t bits; /* base64: pending bits */
    int nbits;
    bool b64_end; /* base64: padding seen */
    char qp[3];   /* quoted-printable: "=" and up to two characters seen */
    int nqp;
};
/* The encoding named by a Content-Transfer-Encoding value (NULL: none); -1 for one that
 * cannot be decoded (RFC 3516 §4.3: [UNKNOWN-CTE]). */
int imap_cte_parse(const char *value, enum imap_cte *cte_r);
void imap_decoder_init(struct imap_decoder *d, enum imap_cte cte);
/* Decodes in[0..len) into out, which must hold len + 3 bytes; returns the bytes written. */
size_t imap_decoder_feed(struct imap_decoder *d, const char *in, size_t len, char *out);
/* Flushes what is pending (a quoted-printable "=" at the end); out holds 3 bytes. */
size_t imap_decoder_finish(struct imap_decoder *d, char *out);

/* RFC 9051 §9 date-time "dd-Mon-yyyy hh:mm:ss +zzzz" (day may be one digit or space-padded).
 * 0 with *t_r, -1 when invalid. */
int imap_datetime_parse(const char *s, time_t *t_r);
/* t as a date-time in UTC ("01-Jan-2026 10:00:00 +0000"), 27 bytes with the NUL. */
void imap_datetime_format(time_t t, char out[32]);

/* LIST pattern matching (RFC 9051 §6.3.9): '*' matches anything, '%' anything but the
 * hierarchy delimiter '/'. Names and patterns are UTF-8; a pattern whose first segment is
 * INBOX in any case matches the INBOX. Runs in O(pattern length x name length). */
bool imap_list_match(const char *pattern, const char *name);

#endif
