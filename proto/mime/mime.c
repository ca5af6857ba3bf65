/* Streaming MIME structure parser (see mime.h for the rules it follows).
 *
 * How it works. The input is cut into lines as it arrives; a line belongs to the innermost open
 * part, whose frame on a stack says whether it is still in its header or in its body. Header
 * lines are collected (up to a limit) until the empty line, then parsed in one go into the
 * part's fields; the part then becomes a leaf, a multipart (its boundary goes "active") or a
 * message/rfc822 (a child frame for the encapsulated message is pushed at once). Body lines
 * of a text leaf go through the text decoder into the search text; other body bytes are only
 * counted.
 *
 * Boundaries: while any boundary is active, a line starting with "--" is held back (at most
 * HOLD_MAX bytes) until its end shows whether it is "--boundary" or "--boundary--" of an open
 * multipart, innermost first. Any other line passes straight through, found with memchr, so a
 * large base64 attachment costs one memchr and a few comparisons per line. A boundary line
 * closes every frame above its multipart at the end of the line before it: RFC 2046 §5.1.1
 * makes the CRLF preceding the boundary part of the boundary, so the closed parts end
 * prev_eol bytes (and one line feed) before the boundary line starts.
 *
 * Offsets and line counts are exact without looking back: the parser keeps the byte position
 * and the number of line feeds seen, records both where each body starts, and derives sizes
 * and line counts from the values where the body ends. Memory is the stack (bounded by the
 * depth limit), one header buffer, the text decoder of the one text part being read, the
 * search text and the tree of parsed fields (bounded by max_parts and max_meta_bytes). */
#include "proto/mime/mime.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HOLD_MAX (2 + MIME_MAX_BOUNDARY + 2 + 64) /* "--" boundary "--" and trailing blanks */
#define MAX_DEPTH_CAP 1000                        /* max_depth is clamped to this */
#define MAX_TOKEN 64                              /* transfer encoding, disposition type */

enum fstate { F_HEADER, F_BODY };

struct frame {
    struct mime_part *part;
    enum fstate state;
    size_t depth;
    bool message_header; /* the part's header is a message header: keep the envelope */
    bool digest_child;   /* a part of a multipart/digest: defaults to message/rfc822 */
    bool digest;         /* this multipart is a digest */
    char *boundary;      /* multipart boundary, NULL when none usable */
    size_t blen;
    bool active;        /* the boundary is looked for (the close delimiter not seen yet) */
    size_t ccap;        /* capacity of part->children */
    uint64_t header_nl; /* line feeds seen when the header started */
    uint64_t body_nl;   /* line feeds seen when the body started */
    struct mime_text *text;
};

enum lstate { L_START, L_HOLD, L_PASS };

struct mime_parser {
    struct mime_limits lim;
    struct mime_message *msg;
    struct frame *stack;
    size_t nstack, stack_cap;
    size_t nactive;     /* frames with an active boundary */
    bool no_more_parts; /* max_parts reached: boundaries are no longer looked for */

    uint64_t pos, nl; /* bytes and line feeds consumed */
    enum lstate lstate;
    uint64_t line_start, line_nl; /* where the current line started */
    unsigned prev_eol;            /* length of the previous line's ending: 0 (none), 1 LF, 2 CRLF */
    size_t lcount;                /* bytes of the current line before its LF */
    unsigned char llast;          /* the last of them */
    char hold[HOLD_MAX];
    size_t nhold;

    char *hbuf;               /* header of the innermost frame while it is in F_HEADER */
    size_t hlen, hcap, hline; /* hline: where the current header line starts in hbuf */
    bool hfull;

    size_t meta_used;
    struct mime_textbuf search;
    bool oom;
};

/* ---- small helpers -------------------------------------------------------------------------- */

static struct frame *top(struct mime_parser *p)
{
    return &p->stack[p->nstack - 1];
}

/* Takes ownership of s and keeps it if the metadata budget allows; NULL (s freed) otherwise. */
static char *keep(struct mime_parser *p, char *s)
{
    if (!s) {
        p->oom = true;
        return NULL;
    }
    size_t n = strlen(s) + 1;
    if (p->meta_used + n > p->lim.max_meta_bytes) {
        p->msg->limits |= MIME_LIMIT_META;
        free(s);
        return NULL;
    }
    p->meta_used += n;
    return s;
}

/* Like keep() for a short string the structure depends on (at most MAX_TOKEN bytes): counted
 * in the budget but never refused. */
static char *keep_always(struct mime_parser *p, char *s)
{
    if (!s)
        p->oom = true;
    else
        p->meta_used += strlen(s) + 1;
    return s;
}

static size_t params_cost(const struct mime_param *v, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += strlen(v[i].name) + strlen(v[i].value) + strlen(v[i].decoded) + 3 + sizeof(v[i]);
    return c;
}

/* Keeps a parameter list under the budget, or frees it. */
static void keep_params(struct mime_parser *p, struct mime_param **v, size_t *n)
{
    size_t c = params_cost(*v, *n);
    if (p->meta_used + c > p->lim.max_meta_bytes) {
        p->msg->limits |= MIME_LIMIT_META;
        mime_header_params_free(v, *n);
        *n = 0;
        return;
    }
    p->meta_used += c;
}

static bool is_token_char(unsigned char c)
{
    return c > 32 && c < 127 && !strchr("()<>@,;:\\\"/[]?=", c); /* RFC 2045 §5.1 */
}

static bool valid_token(const char *s, size_t n, size_t max)
{
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_token_char((unsigned char)s[i]))
            return false;
    return true;
}

static bool name_is(const struct mime_header_field *f, const char *name)
{
    return f->name_len == strlen(name) && strncasecmp(f->name, name, f->name_len) == 0;
}

static void set_type(struct mime_parser *p, struct mime_part *part, const char *type,
                     const char *subtype)
{
    free(part->type);
    free(part->subtype);
    part->type = strdup(type);
    part->subtype = strdup(subtype);
    if (!part->type || !part->subtype)
        p->oom = true;
}

/* ---- header fields -------------------------------------------------------------------------- */

static const struct {
    const char *name;
    size_t off;
} envelope_fields[] = {
    {"date", offsetof(struct mime_envelope, date)},
    {"subject", offsetof(struct mime_envelope, subject)},
    {"from", offsetof(struct mime_envelope, from)},
    {"sender", offsetof(struct mime_envelope, sender)},
    {"reply-to", offsetof(struct mime_envelope, reply_to)},
    {"to", offsetof(struct mime_envelope, to)},
    {"cc", offsetof(struct mime_envelope, cc)},
    {"bcc", offsetof(struct mime_envelope, bcc)},
    {"in-reply-to", offsetof(struct mime_envelope, in_reply_to)},
    {"message-id", offsetof(struct mime_envelope, message_id)},
    {"references", offsetof(struct mime_envelope, references)},
};
#define NENVELOPE (sizeof(envelope_fields) / sizeof(envelope_fields[0]))

/* Content-* fields kept as unfolded text (RFC 2045 §7, §8, RFC 1864, RFC 3282, RFC 2557). */
static const struct {
    const char *name;
    size_t off;
} content_fields[] = {
    {"content-id", offsetof(struct mime_part, id)},
    {"content-description", offsetof(struct mime_part, description)},
    {"content-md5", offsetof(struct mime_part, md5)},
    {"content-location", offsetof(struct mime_part, location)},
    {"content-language", offsetof(struct mime_part, language)},
};
#define NCONTENT (sizeof(content_fields) / sizeof(content_fields[0]))

/* The first token of a structured value ("base64 (comment)" -> "base64"), lower-case, when it
 * is a valid RFC 2045 token; NULL otherwise (RFC 2045 §6.1: as if absent, which means 7bit),
 * and for out of memory (flagged). */
static char *token_of(struct mime_parser *p, const struct mime_header_field *f)
{
    char *tok;
    struct mime_param *params;
    size_t n;
    if (mime_header_params_parse(f->value, f->value_len, &tok, &params, &n) < 0) {
        p->oom = true;
        return NULL;
    }
    mime_header_params_free(&params, n);
    if (!valid_token(tok, strlen(tok), MAX_TOKEN)) {
        free(tok);
        return NULL;
    }
    return keep_always(p, tok);
}

/* Parses the collected header of f into its part. */
static void parse_header(struct mime_parser *p, struct frame *f)
{
    struct mime_part *part = f->part;
    const char *h = p->hbuf ? p->hbuf : "";
    size_t len = p->hlen, pos = 0;
    struct mime_header_field fld;
    char *ct = NULL;
    struct mime_param *ct_params = NULL;
    size_t n_ct_params = 0;
    bool seen_ct = false, seen_cte = false, seen_dsp = false;
    bool seen_env[NENVELOPE] = {false}, seen_content[NCONTENT] = {false};

    if (f->message_header && !part->envelope) {
        part->envelope = calloc(1, sizeof(*part->envelope));
        if (!part->envelope)
            p->oom = true;
    }
    while (!p->oom && mime_header_next_field(h, len, &pos, &fld)) {
        char **slot = NULL;
        bool *seenp = NULL;
        if (fld.name_len > 8 && strncasecmp(fld.name, "content-", 8) == 0) {
            if (name_is(&fld, "content-type") && !seen_ct) {
                seen_ct = true;
                if (mime_header_params_parse(fld.value, fld.value_len, &ct, &ct_params,
                                             &n_ct_params) < 0)
                    p->oom = true;
            } else if (name_is(&fld, "content-transfer-encoding") && !seen_cte) {
                seen_cte = true;
                part->encoding = token_of(p, &fld);
            } else if (name_is(&fld, "content-disposition") && !seen_dsp) {
                seen_dsp = true;
                char *tok;
                if (mime_header_params_parse(fld.value, fld.value_len, &tok,
                                             &part->disposition_params,
                                             &part->ndisposition_params) < 0) {
                    p->oom = true;
                    continue;
                }
                if (valid_token(tok, strlen(tok), MAX_TOKEN))
                    part->disposition = keep(p, tok);
                else
                    free(tok);
                if (part->disposition)
                    keep_params(p, &part->disposition_params, &part->ndisposition_params);
                else
                    mime_header_params_free(&part->disposition_params, part->ndisposition_params);
                if (!part->disposition)
                    part->ndisposition_params = 0;
            } else {
                for (size_t i = 0; i < NCONTENT; i++)
                    if (name_is(&fld, content_fields[i].name)) {
                        slot = (char **)((char *)part + content_fields[i].off);
                        seenp = &seen_content[i];
                        break;
                    }
            }
        } else if (part->envelope) {
            for (size_t i = 0; i < NENVELOPE; i++)
                if (name_is(&fld, envelope_fields[i].name)) {
                    slot = (char **)((char *)part->envelope + envelope_fields[i].off);
                    seenp = &seen_env[i];
                    break;
                }
        }
        if (slot && !*seenp) {
            *seenp = true;
            *slot = keep(p, mime_header_unfold(fld.value, fld.value_len));
        }
    }

    /* Content-Type: "type/subtype" of RFC 2045 tokens, else the default (RFC 2045 §5.2,
     * RFC 2046 §5.1.5 for digests); an invalid one loses its parameters too. */
    const char *slash = ct ? strchr(ct, '/') : NULL;
    if (slash && valid_token(ct, (size_t)(slash - ct), MIME_MAX_TYPE_NAME) &&
        valid_token(slash + 1, strlen(slash + 1), MIME_MAX_TYPE_NAME)) {
        part->type = strndup(ct, (size_t)(slash - ct));
        part->subtype = strdup(slash + 1);
        if (!part->type || !part->subtype)
            p->oom = true;
    } else {
        set_type(p, part, f->digest_child ? "message" : "text",
                 f->digest_child ? "rfc822" : "plain");
        mime_header_params_free(&ct_params, n_ct_params);
        n_ct_params = 0;
    }
    free(ct);
    if (part->type && strcmp(part->type, "multipart") == 0) {
        const struct mime_param *b = mime_header_param_find(ct_params, n_ct_params, "boundary");
        size_t bl = b ? strlen(b->value) : 0;
        while (bl > 0 && (b->value[bl - 1] == ' ' || b->value[bl - 1] == '\t'))
            bl--; /* RFC 2046 §5.1.1: a boundary does not end in a space */
        if (b && !b->extended && bl > 0 && bl <= MIME_MAX_BOUNDARY) {
            f->boundary = strndup(b->value, bl);
            f->blen = bl;
            if (!f->boundary)
                p->oom = true;
        }
    }
    part->params = ct_params;
    part->nparams = n_ct_params;
    keep_params(p, &part->params, &part->nparams);
}

static void header_add(struct mime_parser *p, const char *d, size_t n)
{
    if (p->hfull || n == 0)
        return;
    if (p->hlen + n > p->lim.max_header_bytes) { /* keep whole lines only */
        p->hlen = p->hline;
        p->hfull = true;
        p->msg->limits |= MIME_LIMIT_HEADER;
        return;
    }
    if (p->hlen + n > p->hcap) {
        size_t cap = p->hcap ? p->hcap : 1024;
        while (cap < p->hlen + n)
            cap *= 2;
        if (cap > p->lim.max_header_bytes)
            cap = p->lim.max_header_bytes;
        char *b = realloc(p->hbuf, cap);
        if (!b) {
            p->oom = true;
            return;
        }
        p->hbuf = b;
        p->hcap = cap;
    }
    memcpy(p->hbuf + p->hlen, d, n);
    p->hlen += n;
}

static void header_reset(struct mime_parser *p)
{
    p->hlen = p->hline = 0;
    p->hfull = false;
}

/* ---- frames --------------------------------------------------------------------------------- */

static struct frame *push(struct mime_parser *p, struct mime_part *part, size_t depth)
{
    if (p->nstack == p->stack_cap) {
        size_t cap = p->stack_cap ? p->stack_cap * 2 : 8;
        struct frame *s = realloc(p->stack, cap * sizeof(*s));
        if (!s) {
            p->oom = true;
            return NULL;
        }
        p->stack = s;
        p->stack_cap = cap;
    }
    struct frame *f = &p->stack[p->nstack++];
    memset(f, 0, sizeof(*f));
    f->part = part;
    f->depth = depth;
    f->state = F_HEADER;
    part->header_offset = p->pos;
    f->header_nl = p->nl;
    return f;
}

static void text_end(struct mime_parser *p, struct frame *f)
{
    if (!f->text)
        return;
    if (mime_text_finish(f->text, &p->search) < 0)
        p->oom = true;
    mime_text_free(&f->text);
    if (p->search.len > 0 && p->search.data[p->search.len - 1] != '\n' &&
        mime_textbuf_add(&p->search, "\n", 1) < 0)
        p->oom = true;
}

static bool identity_encoding(const char *enc)
{
    /* RFC 2046 §5.2.1 / §5.1: composite types are only 7bit, 8bit or binary */
    return !enc || strcmp(enc, "7bit") == 0 || strcmp(enc, "8bit") == 0 ||
           strcmp(enc, "binary") == 0;
}

/* The header of the top frame is complete: decide what its body is. */
static void body_start(struct mime_parser *p)
{
    struct frame *f = top(p);
    struct mime_part *part = f->part;
    f->state = F_BODY;
    f->body_nl = p->nl;
    if (!part->type)
        return; /* out of memory */
    if (strcmp(part->type, "multipart") == 0) {
        if (!f->boundary) { /* no usable boundary: text/plain, as Dovecot does */
            set_type(p, part, "text", "plain");
        } else if (f->depth >= p->lim.max_depth) {
            p->msg->limits |= MIME_LIMIT_DEPTH;
            return;
        } else {
            f->active = true;
            f->digest = strcmp(part->subtype, "digest") == 0;
            p->nactive++;
            return;
        }
    }
    if (strcmp(part->type, "message") == 0 && strcmp(part->subtype, "rfc822") == 0 &&
        identity_encoding(part->encoding)) {
        if (f->depth >= p->lim.max_depth) {
            p->msg->limits |= MIME_LIMIT_DEPTH;
            return;
        }
        if (p->no_more_parts || p->msg->nparts >= p->lim.max_parts) {
            p->msg->limits |= MIME_LIMIT_PARTS;
            p->no_more_parts = true;
            return;
        }
        struct mime_part *child = calloc(1, sizeof(*child));
        if (!child) {
            p->oom = true;
            return;
        }
        part->children = child;
        part->nchildren = 1;
        size_t depth = f->depth + 1;
        p->msg->nparts++;
        struct frame *c = push(p, child, depth); /* f is invalid from here */
        if (c)
            c->message_header = true;
        return;
    }
    if (strcmp(part->type, "text") == 0 && !p->search.full) {
        const char *charset = mime_part_param(part, "charset");
        f->text = mime_text_new(part->encoding, charset, strcmp(part->subtype, "html") == 0);
        if (!f->text)
            p->oom = true;
    }
}

static void header_end(struct mime_parser *p)
{
    struct frame *f = top(p);
    f->part->header_size = p->pos - f->part->header_offset;
    f->part->body_offset = p->pos;
    parse_header(p, f);
    header_reset(p);
    body_start(p);
}

/* Closes the top frame with its part ending at byte *end, where *end_nl line feeds were seen.
 * A part cannot end before its body (or header) starts: when *end is earlier (an empty body
 * right before a boundary, whose line break then belongs to the header's empty line), the
 * part ends where its body starts and *end / *end_nl move there, so that the enclosing parts
 * closed next end there too. */
static void close_top(struct mime_parser *p, uint64_t *end, uint64_t *end_nl)
{
    struct frame *f = top(p);
    struct mime_part *part = f->part;
    if (f->state == F_HEADER) { /* the header never ended: it is all there is */
        if (*end < part->header_offset) {
            *end = part->header_offset;
            *end_nl = f->header_nl;
        }
        part->header_size = *end - part->header_offset;
        part->body_offset = *end;
        parse_header(p, f);
        header_reset(p);
    } else {
        if (*end < part->body_offset) {
            *end = part->body_offset;
            *end_nl = f->body_nl;
        }
        part->body_size = *end - part->body_offset;
        part->body_lines = *end_nl - f->body_nl;
        text_end(p, f);
        if (f->active)
            p->nactive--;
    }
    free(f->boundary);
    p->nstack--;
}

/* ---- lines ---------------------------------------------------------------------------------- */

/* Gives n bytes of the current line to the top frame; eol: they end with the line's LF. */
static void content(struct mime_parser *p, const char *d, size_t n, bool eol)
{
    struct frame *f = top(p);
    size_t body = eol ? n - 1 : n;
    if (body > 0) {
        p->lcount += body;
        p->llast = (unsigned char)d[body - 1];
    }
    if (f->state == F_HEADER)
        header_add(p, d, n);
    else if (f->text && !p->search.full && mime_text_feed(f->text, d, n, &p->search) < 0)
        p->oom = true;
    p->pos += n;
    if (!eol)
        return;
    p->nl++;
    bool cr = p->lcount >= 1 && p->llast == '\r';
    bool blank = p->lcount == 0 || (p->lcount == 1 && cr);
    p->prev_eol = cr ? 2 : 1;
    p->lcount = 0;
    p->lstate = L_START;
    if (f->state == F_HEADER) {
        if (blank)
            header_end(p);
        else
            p->hline = p->hlen;
    }
}

/* Whether line[0..n) is a boundary line of an open multipart (innermost first): sets *idx_r to
 * its frame and *close_r for "--boundary--". RFC 2046 §5.1.1: "--" boundary ["--"], then
 * optional linear whitespace. */
static bool boundary_match(struct mime_parser *p, const char *line, size_t n, size_t *idx_r,
                           bool *close_r)
{
    while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t' || line[n - 1] == '\r'))
        n--;
    if (n < 3 || line[0] != '-' || line[1] != '-')
        return false;
    const char *b = line + 2;
    size_t bn = n - 2;
    for (size_t i = p->nstack; i-- > 0;) {
        const struct frame *f = &p->stack[i];
        if (!f->active || bn < f->blen || memcmp(b, f->boundary, f->blen) != 0)
            continue;
        if (bn == f->blen) {
            *idx_r = i;
            *close_r = false;
            return true;
        }
        if (bn == f->blen + 2 && b[f->blen] == '-' && b[f->blen + 1] == '-') {
            *idx_r = i;
            *close_r = true;
            return true;
        }
    }
    return false;
}

static void new_child(struct mime_parser *p, size_t idx)
{
    if (p->msg->nparts >= p->lim.max_parts) {
        p->msg->limits |= MIME_LIMIT_PARTS;
        p->no_more_parts = true;
        return;
    }
    struct frame *m = &p->stack[idx];
    struct mime_part *mp = m->part;
    if (mp->nchildren == m->ccap) {
        size_t cap = m->ccap ? m->ccap * 2 : 4;
        struct mime_part *c = realloc(mp->children, cap * sizeof(*c));
        if (!c) {
            p->oom = true;
            return;
        }
        mp->children = c;
        m->ccap = cap;
    }
    struct mime_part *child = &mp->children[mp->nchildren++];
    memset(child, 0, sizeof(*child));
    p->msg->nparts++;
    bool digest = m->digest;
    size_t depth = m->depth + 1;
    struct frame *f = push(p, child, depth); /* m is invalid from here */
    if (f)
        f->digest_child = digest;
}

/* The held line (starting with "--") ended, with its LF when eol. */
static void hold_end(struct mime_parser *p, bool eol)
{
    size_t idx;
    bool close;
    bool match = p->nstack > 0 && boundary_match(p, p->hold, p->nhold, &idx, &close);
    if (match && !close && p->msg->nparts >= p->lim.max_parts) {
        /* no room for the part this delimiter starts: from here on boundaries are not looked
         * for, so the part being read runs to the end of the message */
        p->msg->limits |= MIME_LIMIT_PARTS;
        p->no_more_parts = true;
        match = false;
    }
    if (match) {
        uint64_t end = p->line_start - p->prev_eol;
        uint64_t end_nl = p->line_nl - (p->prev_eol ? 1 : 0);
        while (p->nstack - 1 > idx)
            close_top(p, &end, &end_nl);
        /* the boundary line itself is the multipart's, between its parts */
        content(p, p->hold, p->nhold, false);
        if (eol)
            content(p, "\n", 1, true);
        if (close) {
            top(p)->active = false;
            p->nactive--;
        } else
            new_child(p, idx);
    } else {
        content(p, p->hold, p->nhold, false);
        if (eol)
            content(p, "\n", 1, true);
    }
    p->nhold = 0;
}

/* ---- public --------------------------------------------------------------------------------- */

struct mime_parser *mime_parser_new(const struct mime_limits *lim)
{
    struct mime_parser *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    if (lim)
        p->lim = *lim;
    if (!p->lim.max_parts)
        p->lim.max_parts = MIME_DEFAULT_MAX_PARTS;
    if (!p->lim.max_depth)
        p->lim.max_depth = MIME_DEFAULT_MAX_DEPTH;
    if (p->lim.max_depth > MAX_DEPTH_CAP)
        p->lim.max_depth = MAX_DEPTH_CAP;
    if (!p->lim.max_header_bytes)
        p->lim.max_header_bytes = MIME_DEFAULT_MAX_HEADER_BYTES;
    if (!p->lim.max_search_text)
        p->lim.max_search_text = MIME_DEFAULT_MAX_SEARCH_TEXT;
    if (!p->lim.max_meta_bytes)
        p->lim.max_meta_bytes = MIME_DEFAULT_MAX_META_BYTES;
    p->search.max = p->lim.max_search_text;
    p->msg = calloc(1, sizeof(*p->msg));
    if (!p->msg) {
        free(p);
        return NULL;
    }
    p->msg->nparts = 1;
    struct frame *f = push(p, &p->msg->root, 0);
    if (!f) {
        free(p->msg);
        free(p);
        return NULL;
    }
    f->message_header = true;
    return p;
}

int mime_parser_feed(struct mime_parser *p, const char *data, size_t len)
{
    while (len > 0 && !p->oom) {
        if (p->lstate == L_START) {
            p->line_start = p->pos;
            p->line_nl = p->nl;
            p->nhold = 0;
            p->lstate = p->nactive > 0 && !p->no_more_parts ? L_HOLD : L_PASS;
        }
        if (p->lstate == L_HOLD) {
            while (len > 0) {
                char c = *data;
                if (c == '\n') {
                    data++;
                    len--;
                    hold_end(p, true);
                    break;
                }
                if ((p->nhold < 2 && c != '-') || p->nhold == HOLD_MAX) {
                    /* cannot be a boundary line: let it through */
                    content(p, p->hold, p->nhold, false);
                    p->nhold = 0;
                    p->lstate = L_PASS;
                    break;
                }
                p->hold[p->nhold++] = c;
                data++;
                len--;
            }
            continue;
        }
        const char *lf = memchr(data, '\n', len);
        size_t n = lf ? (size_t)(lf - data) + 1 : len;
        content(p, data, n, lf != NULL);
        data += n;
        len -= n;
    }
    return p->oom ? -1 : 0;
}

static void part_free(struct mime_part *part)
{
    free(part->type);
    free(part->subtype);
    mime_header_params_free(&part->params, part->nparams);
    free(part->id);
    free(part->description);
    free(part->md5);
    free(part->location);
    free(part->language);
    free(part->encoding);
    free(part->disposition);
    mime_header_params_free(&part->disposition_params, part->ndisposition_params);
    for (size_t i = 0; i < part->nchildren; i++)
        part_free(&part->children[i]);
    free(part->children);
    if (part->envelope) {
        struct mime_envelope *e = part->envelope;
        for (size_t i = 0; i < NENVELOPE; i++)
            free(*(char **)((char *)e + envelope_fields[i].off));
        free(e);
    }
}

void mime_parser_free(struct mime_parser **pp)
{
    struct mime_parser *p = *pp;
    if (!p)
        return;
    for (size_t i = 0; i < p->nstack; i++) {
        mime_text_free(&p->stack[i].text);
        free(p->stack[i].boundary);
    }
    free(p->stack);
    free(p->hbuf);
    free(p->search.data);
    if (p->msg) {
        part_free(&p->msg->root);
        free(p->msg);
    }
    free(p);
    *pp = NULL;
}

struct mime_message *mime_parser_finish(struct mime_parser **pp)
{
    struct mime_parser *p = *pp;
    if (!p)
        return NULL;
    if (!p->oom && p->lstate == L_HOLD)
        hold_end(p, false); /* the last line had no line break */
    uint64_t end = p->pos, end_nl = p->nl;
    while (!p->oom && p->nstack > 0)
        close_top(p, &end, &end_nl);
    if (p->oom) {
        mime_parser_free(pp);
        return NULL;
    }
    struct mime_message *m = p->msg;
    m->size = p->pos;
    m->lines = p->nl;
    if (p->search.len > 0 && p->search.data[p->search.len - 1] == '\n')
        p->search.data[--p->search.len] = '\0';
    m->search_text = p->search.data ? p->search.data : strdup("");
    m->search_text_len = p->search.len;
    if (p->search.full)
        m->limits |= MIME_LIMIT_SEARCH_TEXT;
    p->search.data = NULL;
    p->msg = NULL;
    mime_parser_free(pp);
    if (!m->search_text) {
        mime_message_free(&m);
        return NULL;
    }
    return m;
}

void mime_message_free(struct mime_message **m)
{
    if (!*m)
        return;
    part_free(&(*m)->root);
    free((*m)->search_text);
    free(*m);
    *m = NULL;
}

bool mime_part_is_multipart(const struct mime_part *part)
{
    return part->type && strcmp(part->type, "multipart") == 0;
}

bool mime_part_is_message(const struct mime_part *part)
{
    return part->type && part->subtype && strcmp(part->type, "message") == 0 &&
           strcmp(part->subtype, "rfc822") == 0;
}

const char *mime_part_param(const struct mime_part *part, const char *name)
{
    const struct mime_param *v = mime_header_param_find(part->params, part->nparams, name);
    return v ? v->decoded : NULL;
}

const char *mime_part_filename(const struct mime_part *part)
{
    const struct mime_param *v =
        mime_header_param_find(part->disposition_params, part->ndisposition_params, "filename");
    if (v && *v->decoded)
        return v->decoded;
    const char *name = mime_part_param(part, "name");
    return name && *name ? name : NULL;
}

const struct mime_part *mime_message_section(const struct mime_message *m, const char *section)
{
    const struct mime_part *sel = &m->root;
    bool is_msg = true; /* sel is a message: its parts are numbered, or its body is part 1 */
    const char *s = section;
    while (*s) {
        if (*s < '1' || *s > '9')
            return NULL;
        size_t k = 0;
        while (*s >= '0' && *s <= '9') {
            k = k * 10 + (size_t)(*s - '0');
            if (k > 1000000)
                return NULL;
            s++;
        }
        if (*s == '.' && s[1])
            s++;
        else if (*s)
            return NULL;
        const struct mime_part *msg = NULL;
        if (is_msg)
            msg = sel;
        else if (mime_part_is_message(sel) && sel->nchildren == 1)
            msg = &sel->children[0];
        if (msg) { /* RFC 3501 §6.4.5: a non-multipart message's body is part 1 */
            if (mime_part_is_multipart(msg))
                sel = k <= msg->nchildren ? &msg->children[k - 1] : NULL;
            else
                sel = k == 1 ? msg : NULL;
        } else if (mime_part_is_multipart(sel))
            sel = k <= sel->nchildren ? &sel->children[k - 1] : NULL;
        else
            sel = NULL;
        if (!sel)
            return NULL;
        is_msg = false;
    }
    return sel;
}
