/* IMAP command reader (see parser.h for the contract).
 *
 * How it works: a byte-at-a-time state machine over the command line, with bulk copies for
 * literal data and for discarding. Token text goes into one buffer per command (each token
 * NUL-terminated, referred to by offset because the buffer may move while it grows); tokens are
 * recorded flat, in order, with list open and close markers. When the final CRLF arrives the
 * flat tokens are turned into the tree handed out: every list's children are placed contiguously
 * in one node array, so a handler indexes args[i] and list[i] directly.
 *
 * Everything that grows is bounded: the buffer by max_command, the token array by max_args (and
 * as many close markers as opens), the nesting by max_depth; each line's text by max_line. A
 * literal's size is known from its header, so buffering one allocates once and streaming one
 * allocates nothing.
 *
 * After an error the reader never takes the rest of the line as a new command: it discards up
 * to the end of the line while watching for a literal header at the end of it (a small state
 * machine, `dl`), because a literal's bytes belong to the bad command and must not be read as
 * commands (command injection through a literal a server failed to account for). */
#include "proto/imap/parser.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/text/utf8.h"

#define IDLE_BUF 4096 /* buffer bytes kept between commands */
#define IDLE_TOKS 256 /* token records kept between commands */

enum state {
    ST_START,          /* before the first byte of a command */
    ST_TAG,            /* in the tag */
    ST_NAME_START,     /* after the tag's SP */
    ST_NAME,           /* in the command name */
    ST_SEP,            /* where an argument may start: SP, token, ')' or end of line */
    ST_AFTER,          /* right after an argument: SP, ')' or end of line */
    ST_ATOM,           /* in an atom */
    ST_BRACKET,        /* in an atom's [...] part */
    ST_BRACKET_QUOTED, /* in a quoted string inside [...] (kept verbatim) */
    ST_BRACKET_ESC,    /* after '\' there */
    ST_QUOTED,         /* in a quoted string */
    ST_QUOTED_ESC,     /* after '\' there */
    ST_TILDE,          /* after '~' where an argument starts: literal8 or an atom */
    ST_LIT_NUM,        /* in a literal header's digits */
    ST_LIT_PLUS,       /* after '+' */
    ST_LIT_CR,         /* after '}' */
    ST_LIT_LF,         /* after '}' CR */
    ST_LIT_DECIDE,     /* a big literal waits for the caller's decision */
    ST_LIT_DATA,       /* copying a buffered literal */
    ST_LIT_STREAM,     /* handing a literal out */
    ST_EOL,            /* CR at the end of a command, LF expected */
    ST_DONE,           /* a command is ready */
    ST_LINE,           /* raw line mode */
    ST_LINE_CR,        /* CR seen in raw line mode */
    ST_LINE_DONE,      /* a raw line is ready */
    ST_DISCARD,        /* skipping the rest of a bad line */
    ST_DISCARD_LIT,    /* skipping the bytes of a literal that belongs to a bad command */
    ST_FATAL,          /* nothing more can be read: the session must close */
};

/* Literal header watcher used while discarding (see the file comment). */
enum dl_state { DL_NONE, DL_NUM, DL_PLUS, DL_CLOSE, DL_CR };

enum tok_type { T_ATOM, T_QUOTED, T_LITERAL, T_LITERAL8, T_OPEN, T_CLOSE };

struct tok {
    enum tok_type type;
    bool nonsync, streamed, has_nul;
    size_t off; /* into buf */
    size_t len; /* text length; for T_OPEN the number of children */
};

/* What step() did with a byte. */
enum step_result {
    R_OK,    /* taken */
    R_EVENT, /* taken, and p->event is to be returned */
    R_ERR,   /* not taken: an error was set (the byte will be discarded or the reader is dead) */
    R_ERR_TAKEN, /* taken, and an error was set */
};

struct imap_parser {
    struct imap_parser_limits lim;
    enum state state;
    enum imap_parse_event event;

    char *buf; /* tag, name and token text of the command being read */
    size_t buf_len, buf_cap;
    struct tok *toks;
    size_t ntoks, toks_cap;
    size_t nargs; /* tokens that become nodes (all but T_CLOSE) */

    /* list nesting: the open token of each level and its number of children so far */
    unsigned depth;
    size_t open_tok[IMAP_PARSER_DEPTH_CEILING + 1];
    size_t children[IMAP_PARSER_DEPTH_CEILING + 1];

    size_t line_len; /* bytes of the current line (literal data excluded) */
    size_t name_off;
    bool tag_done, name_done;
    bool quoted_8bit;  /* the quoted string being read has bytes >= 0x80 */
    size_t cur_tok;    /* index of the token being read */
    size_t lit_digits; /* literal header being read */
    uint64_t lit_size;
    bool lit_nonsync, lit_binary;
    uint64_t lit_remaining; /* buffered or streamed literal data still to come */

    /* discarding */
    enum dl_state dl;
    uint64_t dl_size;
    bool dl_digits, dl_nonsync, dl_overflow;
    bool disc_raw; /* discarding a raw line: no literal headers there */
    uint64_t skip; /* ST_DISCARD_LIT: bytes left */

    /* the error being reported */
    enum imap_parse_error err;
    const char *errmsg;
    bool fatal;
    bool pending_error; /* report err on the next feed (refused literal) */

    /* the finished command */
    struct imap_arg *nodes;
    struct imap_command cmd;
};

/* ---- helpers -------------------------------------------------------------------------------- */

/* RFC 9051 §9: ATOM-CHAR is any CHAR except atom-specials ("(" ")" "{" SP CTL list-wildcards
 * quoted-specials resp-specials). We also take '%' and '*' (list-mailbox, sequence sets) and ']'
 * (ASTRING-CHAR); '[' is handled by the caller because it opens a section. */
static bool atom_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' && c != '"' && c != '\\' &&
           c != '[';
}

/* RFC 9051 §9: tag = 1*<any ASTRING-CHAR except "+">. */
static bool tag_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' && c != '"' && c != '\\' &&
           c != '%' && c != '*' && c != '+';
}

/* Command names are atoms; in practice letters, digits and '-' / '_' / '.' for extensions. */
static bool name_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
}

static char upper(unsigned char c)
{
    return (char)(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
}

/* Between commands: small buffers are kept for the next command, big ones given back so an idle
 * session holds little. The tag stays readable (imap_parser_error_tag after a refused literal). */
static void release_big(struct imap_parser *p)
{
    if (p->buf_cap > IDLE_BUF) {
        size_t keep = p->tag_done ? strlen(p->buf) + 1 : 0;
        if (keep == 0) {
            free(p->buf);
            p->buf = NULL;
            p->buf_cap = 0;
        } else {
            char *b = realloc(p->buf, keep); /* shrinking; on failure keep the old block */
            if (b) {
                p->buf = b;
                p->buf_cap = keep;
            }
        }
        p->buf_len = keep < p->buf_len ? keep : p->buf_len;
    }
    if (p->toks_cap > IDLE_TOKS) {
        free(p->toks);
        p->toks = NULL;
        p->toks_cap = 0;
        p->ntoks = 0;
    }
}

/* Starts discarding the rest of the line; the literal header watcher takes over whatever part
 * of a literal header the parser was in, so "{5+" cut by an error still counts. */
static void start_discard(struct imap_parser *p)
{
    p->dl = DL_NONE;
    p->dl_digits = false;
    p->dl_nonsync = false;
    p->dl_overflow = false;
    p->dl_size = 0;
    switch (p->state) {
    case ST_LIT_NUM:
        p->dl = DL_NUM;
        p->dl_digits = p->lit_digits > 0;
        p->dl_size = p->lit_size;
        break;
    case ST_LIT_PLUS:
        p->dl = DL_PLUS;
        p->dl_digits = true;
        p->dl_nonsync = true;
        p->dl_size = p->lit_size;
        break;
    case ST_LIT_CR:
    case ST_LIT_LF:
        p->dl = p->state == ST_LIT_CR ? DL_CLOSE : DL_CR;
        p->dl_digits = true;
        p->dl_nonsync = p->lit_nonsync;
        p->dl_size = p->lit_size;
        break;
    default:
        break;
    }
    p->disc_raw = p->state == ST_LINE || p->state == ST_LINE_CR;
    p->state = ST_DISCARD;
}

/* Sets a non-fatal error; the current byte is not taken and will be discarded. */
static enum step_result fail(struct imap_parser *p, enum imap_parse_error code, const char *msg)
{
    p->err = code;
    p->errmsg = msg;
    p->fatal = false;
    start_discard(p);
    return R_ERR;
}

static enum step_result fail_fatal(struct imap_parser *p, enum imap_parse_error code,
                                   const char *msg)
{
    p->err = code;
    p->errmsg = msg;
    p->fatal = true;
    p->state = ST_FATAL;
    return R_ERR;
}

/* After an error on a literal whose header line has been read: a synchronizing one ends the
 * command (the client waits for a continuation request it will not get), a non-synchronizing
 * one is on its way and is skipped when that is affordable. */
static void literal_resync(struct imap_parser *p, uint64_t size, bool nonsync)
{
    if (!nonsync) {
        p->state = ST_START;
        release_big(p);
    } else if (size <= p->lim.max_discard) {
        p->skip = size;
        p->dl = DL_NONE;
        p->disc_raw = false;
        p->state = ST_DISCARD_LIT;
    } else {
        p->fatal = true;
        p->state = ST_FATAL;
    }
}

/* Makes room for extra more bytes in buf. 0 ok, -1 error set. */
static int reserve(struct imap_parser *p, size_t extra)
{
    if (extra > p->lim.max_command || p->buf_len > p->lim.max_command - extra) {
        fail(p, IMAP_ERR_TOOLONG, "command too long");
        return -1;
    }
    size_t need = p->buf_len + extra;
    if (need <= p->buf_cap)
        return 0;
    size_t cap = p->buf_cap ? p->buf_cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > p->lim.max_command && need <= p->lim.max_command)
        cap = p->lim.max_command;
    char *b = realloc(p->buf, cap);
    if (!b) {
        fail_fatal(p, IMAP_ERR_NOMEM, "out of memory");
        return -1;
    }
    p->buf = b;
    p->buf_cap = cap;
    return 0;
}

static int put(struct imap_parser *p, char c)
{
    if (p->buf_len >= p->buf_cap && reserve(p, 1) < 0)
        return -1;
    if (p->buf_len >= p->lim.max_command) {
        fail(p, IMAP_ERR_TOOLONG, "command too long");
        return -1;
    }
    p->buf[p->buf_len++] = c;
    return 0;
}

/* Appends a token record. 0 ok, -1 error set. */
static int add_tok(struct imap_parser *p, enum tok_type type)
{
    if (type != T_CLOSE) {
        if (p->nargs >= p->lim.max_args) {
            fail(p, IMAP_ERR_LIMIT, "too many arguments");
            return -1;
        }
    }
    if (p->ntoks == p->toks_cap) {
        size_t cap = p->toks_cap ? p->toks_cap * 2 : 16;
        struct tok *t = realloc(p->toks, cap * sizeof(*t));
        if (!t) {
            fail_fatal(p, IMAP_ERR_NOMEM, "out of memory");
            return -1;
        }
        p->toks = t;
        p->toks_cap = cap;
    }
    struct tok *t = &p->toks[p->ntoks];
    memset(t, 0, sizeof(*t));
    t->type = type;
    t->off = p->buf_len;
    p->cur_tok = p->ntoks++;
    if (type != T_CLOSE) {
        p->nargs++;
        p->children[p->depth]++;
    }
    return 0;
}

/* Ends the current text token: NUL-terminates it and records its length. */
static int end_text(struct imap_parser *p)
{
    struct tok *t = &p->toks[p->cur_tok];
    size_t len = p->buf_len - t->off;
    if (put(p, '\0') < 0)
        return -1;
    t->len = len;
    return 0;
}

static enum step_result open_list(struct imap_parser *p)
{
    if (p->depth >= p->lim.max_depth)
        return fail(p, IMAP_ERR_LIMIT, "lists nested too deep");
    if (add_tok(p, T_OPEN) < 0)
        return R_ERR;
    p->depth++;
    p->open_tok[p->depth] = p->cur_tok;
    p->children[p->depth] = 0;
    p->state = ST_SEP;
    return R_OK;
}

static enum step_result close_list(struct imap_parser *p)
{
    if (p->depth == 0)
        return fail(p, IMAP_ERR_SYNTAX, "unexpected ')'");
    if (add_tok(p, T_CLOSE) < 0)
        return R_ERR;
    p->toks[p->open_tok[p->depth]].len = p->children[p->depth];
    p->depth--;
    p->state = ST_AFTER;
    return R_OK;
}

/* Lays the tokens from *ti on out as n siblings, their lists' children from *next_free on. The
 * recursion is bounded by max_depth. */
static void place(struct imap_parser *p, size_t *ti, struct imap_arg *out, size_t n,
                  size_t *next_free)
{
    static const char empty[] = "";
    for (size_t k = 0; k < n; k++) {
        const struct tok *t = &p->toks[(*ti)++];
        struct imap_arg *a = &out[k];
        memset(a, 0, sizeof(*a));
        switch (t->type) {
        case T_ATOM:
            a->str = p->buf + t->off;
            a->len = t->len;
            a->type = t->len == 3 && strcasecmp(a->str, "NIL") == 0 ? IMAP_ARG_NIL : IMAP_ARG_ATOM;
            break;
        case T_QUOTED:
            a->type = IMAP_ARG_QUOTED;
            a->str = p->buf + t->off;
            a->len = t->len;
            break;
        case T_LITERAL:
        case T_LITERAL8:
            a->type = t->type == T_LITERAL ? IMAP_ARG_LITERAL : IMAP_ARG_LITERAL8;
            a->nonsync = t->nonsync;
            a->streamed = t->streamed;
            a->has_nul = t->has_nul;
            a->str = t->streamed ? empty : p->buf + t->off;
            a->len = t->len;
            break;
        case T_OPEN: {
            size_t count = t->len;
            struct imap_arg *children = p->nodes + *next_free;
            *next_free += count;
            a->type = IMAP_ARG_LIST;
            a->list = children; /* one past the end when empty: count says so */
            a->count = count;
            place(p, ti, children, count, next_free);
            (*ti)++; /* its T_CLOSE */
            break;
        }
        case T_CLOSE: /* never at a sibling position: counts come from the parse */
            break;
        }
    }
}

/* The end of the command line. */
static enum step_result finish(struct imap_parser *p)
{
    if (p->depth > 0)
        return fail(p, IMAP_ERR_SYNTAX, "missing ')'");
    free(p->nodes);
    p->nodes = NULL;
    if (p->nargs > 0) {
        p->nodes = calloc(p->nargs, sizeof(*p->nodes));
        if (!p->nodes)
            return fail_fatal(p, IMAP_ERR_NOMEM, "out of memory");
        size_t ti = 0, next_free = p->children[0];
        place(p, &ti, p->nodes, p->children[0], &next_free);
    }
    p->cmd.tag = p->buf;
    p->cmd.name = p->buf + p->name_off;
    p->cmd.args = p->nodes;
    p->cmd.count = p->children[0];
    p->state = ST_DONE;
    p->event = IMAP_PARSE_COMMAND;
    return R_EVENT;
}

/* The header line of a literal has been read (its LF taken). */
static enum step_result literal_begin(struct imap_parser *p)
{
    uint64_t n = p->lit_size;
    p->line_len = 0; /* what follows the literal is a new line for the line limit */
    /* RFC 7888 §4: with LITERAL-, a non-synchronizing literal over 4096 bytes is refused. */
    if (p->lim.literal_minus && p->lit_nonsync && n > IMAP_PARSER_LITERAL_MINUS_MAX) {
        p->err = IMAP_ERR_TOOBIG;
        p->errmsg = "non-synchronizing literal over 4096 bytes (LITERAL-)";
        p->fatal = false;
        literal_resync(p, n, true);
        return R_ERR_TAKEN;
    }
    struct tok *t = &p->toks[p->cur_tok];
    t->nonsync = p->lit_nonsync;
    if (n > p->lim.max_literal) {
        p->state = ST_LIT_DECIDE;
        p->event = IMAP_PARSE_LITERAL;
        return R_EVENT;
    }
    if (n >= p->lim.max_command || p->buf_len > p->lim.max_command - (size_t)n - 1) {
        p->err = IMAP_ERR_TOOBIG;
        p->errmsg = "literal does not fit in the command size limit";
        p->fatal = false;
        literal_resync(p, n, p->lit_nonsync);
        return R_ERR_TAKEN;
    }
    if (reserve(p, (size_t)n + 1) < 0)
        return R_ERR_TAKEN; /* only out of memory can fail here: fatal */
    t->off = p->buf_len;
    p->lit_remaining = n;
    p->state = ST_LIT_DATA;
    if (n == 0) {
        if (end_text(p) < 0)
            return R_ERR_TAKEN;
        p->state = ST_AFTER;
    }
    if (!p->lit_nonsync) {
        p->event = IMAP_PARSE_CONTINUE;
        return R_EVENT;
    }
    return R_OK;
}

static void reset_command(struct imap_parser *p)
{
    p->buf_len = 0;
    p->ntoks = 0;
    p->nargs = 0;
    p->depth = 0;
    p->children[0] = 0;
    p->line_len = 0;
    p->name_off = 0;
    p->tag_done = false;
    p->name_done = false;
    p->lit_remaining = 0;
    p->err = IMAP_ERR_NONE;
    p->errmsg = NULL;
    p->fatal = false;
}

static enum step_result atom_byte(struct imap_parser *p, unsigned char c);

static enum step_result line_done(struct imap_parser *p)
{
    if (put(p, '\0') < 0)
        return R_ERR;
    p->state = ST_LINE_DONE;
    p->event = IMAP_PARSE_LINE;
    return R_EVENT;
}

/* One byte of line text. */
static enum step_result step(struct imap_parser *p, unsigned char c)
{
    switch (p->state) {
    case ST_TAG:
        if (tag_char(c))
            return put(p, (char)c) < 0 ? R_ERR : R_OK;
        if (p->buf_len == 0) {
            if (c == '\r' || c == '\n')
                return fail(p, IMAP_ERR_SYNTAX, "empty command line");
            return fail(p, IMAP_ERR_SYNTAX, "invalid tag");
        }
        if (c == ' ') {
            if (put(p, '\0') < 0)
                return R_ERR;
            p->tag_done = true;
            p->state = ST_NAME_START;
            return R_OK;
        }
        if (c == '\r' || c == '\n')
            return fail(p, IMAP_ERR_SYNTAX, "missing command name");
        return fail(p, IMAP_ERR_SYNTAX, "invalid tag");

    case ST_NAME_START:
        if (c == ' ')
            return R_OK;
        if (!name_char(c)) {
            if (c == '\r' || c == '\n')
                return fail(p, IMAP_ERR_SYNTAX, "missing command name");
            return fail(p, IMAP_ERR_SYNTAX, "invalid command name");
        }
        p->name_off = p->buf_len;
        p->state = ST_NAME;
        return put(p, upper(c)) < 0 ? R_ERR : R_OK;

    case ST_NAME:
        if (name_char(c))
            return put(p, upper(c)) < 0 ? R_ERR : R_OK;
        if (c != ' ' && c != '\r' && c != '\n')
            return fail(p, IMAP_ERR_SYNTAX, "invalid command name");
        if (put(p, '\0') < 0)
            return R_ERR;
        p->name_done = true;
        p->state = c == ' ' ? ST_SEP : ST_EOL;
        return c == '\n' ? finish(p) : R_OK;

    case ST_SEP:
        switch (c) {
        case ' ':
            return R_OK;
        case '(':
            return open_list(p);
        case ')':
            return close_list(p);
        case '"':
            if (add_tok(p, T_QUOTED) < 0)
                return R_ERR;
            p->quoted_8bit = false;
            p->state = ST_QUOTED;
            return R_OK;
        case '{':
            if (add_tok(p, T_LITERAL) < 0)
                return R_ERR;
            p->lit_binary = false;
            p->lit_nonsync = false;
            p->lit_size = 0;
            p->lit_digits = 0;
            p->state = ST_LIT_NUM;
            return R_OK;
        case '~':
            p->state = ST_TILDE;
            return R_OK;
        case '\r':
            p->state = ST_EOL;
            return R_OK;
        case '\n':
            return finish(p);
        default:
            if (!atom_char(c) && c != '\\' && c != '[')
                return fail(p, IMAP_ERR_SYNTAX, "invalid character");
            if (add_tok(p, T_ATOM) < 0)
                return R_ERR;
            if (c == '\\') { /* a flag: '\' only leads */
                p->state = ST_ATOM;
                return put(p, '\\') < 0 ? R_ERR : R_OK;
            }
            p->state = ST_ATOM;
            return atom_byte(p, c);
        }

    case ST_AFTER:
        switch (c) {
        case ' ':
            p->state = ST_SEP;
            return R_OK;
        case ')':
            return close_list(p);
        case '\r':
            p->state = ST_EOL;
            return R_OK;
        case '\n':
            return finish(p);
        default:
            return fail(p, IMAP_ERR_SYNTAX, "missing space between arguments");
        }

    case ST_ATOM:
        return atom_byte(p, c);

    case ST_BRACKET:
        if (c == ']') {
            p->state = ST_ATOM;
        } else if (c == '"') {
            p->state = ST_BRACKET_QUOTED;
        } else if (c == '[') {
            return fail(p, IMAP_ERR_SYNTAX, "nested '['");
        } else if (c == '{') {
            return fail(p, IMAP_ERR_SYNTAX, "literal inside a section is not supported");
        } else if (c == '\r' || c == '\n') {
            return fail(p, IMAP_ERR_SYNTAX, "unterminated '['");
        } else if (c < 0x20 || c >= 0x7f) {
            return fail(p, IMAP_ERR_SYNTAX, "invalid character in section");
        }
        return put(p, (char)c) < 0 ? R_ERR : R_OK;

    case ST_BRACKET_QUOTED:
        if (c == '\\') {
            p->state = ST_BRACKET_ESC;
        } else if (c == '"') {
            p->state = ST_BRACKET;
        } else if (c == '\r' || c == '\n') {
            return fail(p, IMAP_ERR_SYNTAX, "unterminated quoted string");
        } else if (c == 0 || c >= 0x80) {
            return fail(p, IMAP_ERR_SYNTAX, "invalid character in section");
        }
        return put(p, (char)c) < 0 ? R_ERR : R_OK;

    case ST_BRACKET_ESC:
        if (c != '"' && c != '\\')
            return fail(p, IMAP_ERR_SYNTAX, "invalid escape in quoted string");
        p->state = ST_BRACKET_QUOTED;
        return put(p, (char)c) < 0 ? R_ERR : R_OK;

    case ST_QUOTED:
        switch (c) {
        case '"': {
            const struct tok *t = &p->toks[p->cur_tok];
            /* RFC 9051 §4.3: 8-bit text in a quoted string must be UTF-8. */
            if (p->quoted_8bit && !utf8_check(p->buf + t->off, p->buf_len - t->off, 0))
                return fail(p, IMAP_ERR_SYNTAX, "invalid UTF-8 in quoted string");
            if (end_text(p) < 0)
                return R_ERR;
            p->state = ST_AFTER;
            return R_OK;
        }
        case '\\':
            p->state = ST_QUOTED_ESC;
            return R_OK;
        case '\r':
        case '\n':
            return fail(p, IMAP_ERR_SYNTAX, "unterminated quoted string");
        case '\0':
            return fail(p, IMAP_ERR_SYNTAX, "NUL in quoted string");
        default:
            if (c >= 0x80)
                p->quoted_8bit = true;
            return put(p, (char)c) < 0 ? R_ERR : R_OK;
        }

    case ST_QUOTED_ESC:
        /* RFC 9051 §9: QUOTED-CHAR allows only "\" quoted-specials. */
        if (c != '"' && c != '\\')
            return fail(p, IMAP_ERR_SYNTAX, "invalid escape in quoted string");
        p->state = ST_QUOTED;
        return put(p, (char)c) < 0 ? R_ERR : R_OK;

    case ST_TILDE:
        if (c == '{') { /* RFC 3516 literal8 */
            if (add_tok(p, T_LITERAL8) < 0)
                return R_ERR;
            p->lit_binary = true;
            p->lit_nonsync = false;
            p->lit_size = 0;
            p->lit_digits = 0;
            p->state = ST_LIT_NUM;
            return R_OK;
        }
        /* an atom that starts with '~' ("~peter/mail") */
        if (add_tok(p, T_ATOM) < 0 || put(p, '~') < 0)
            return R_ERR;
        p->state = ST_ATOM;
        return atom_byte(p, c);

    case ST_LIT_NUM:
        if (c >= '0' && c <= '9') {
            /* RFC 9051 §9: number64 is at most 2^63 - 1. */
            uint64_t d = (uint64_t)(c - '0');
            if (p->lit_size > ((uint64_t)INT64_MAX - d) / 10)
                return fail(p, IMAP_ERR_TOOBIG, "literal size too large");
            p->lit_size = p->lit_size * 10 + d;
            p->lit_digits++;
            return R_OK;
        }
        if (p->lit_digits > 0 && c == '+') {
            p->lit_nonsync = true;
            p->state = ST_LIT_PLUS;
            return R_OK;
        }
        if (p->lit_digits > 0 && c == '}') {
            p->state = ST_LIT_CR;
            return R_OK;
        }
        return fail(p, IMAP_ERR_SYNTAX, "invalid literal size");

    case ST_LIT_PLUS:
        if (c != '}')
            return fail(p, IMAP_ERR_SYNTAX, "invalid literal size");
        p->state = ST_LIT_CR;
        return R_OK;

    case ST_LIT_CR:
        if (c == '\r') {
            p->state = ST_LIT_LF;
            return R_OK;
        }
        if (c == '\n')
            return literal_begin(p);
        return fail(p, IMAP_ERR_SYNTAX, "a literal header must end the line");

    case ST_LIT_LF:
        if (c != '\n')
            return fail(p, IMAP_ERR_SYNTAX, "CR without LF");
        return literal_begin(p);

    case ST_EOL:
        if (c != '\n')
            return fail(p, IMAP_ERR_SYNTAX, "CR without LF");
        return finish(p);

    case ST_LINE:
        if (c == '\r') {
            p->state = ST_LINE_CR;
            return R_OK;
        }
        if (c == '\n')
            return line_done(p);
        if (c == '\0')
            return fail(p, IMAP_ERR_SYNTAX, "NUL in line");
        return put(p, (char)c) < 0 ? R_ERR : R_OK;

    case ST_LINE_CR:
        if (c != '\n')
            return fail(p, IMAP_ERR_SYNTAX, "CR without LF");
        return line_done(p);

    default: /* the other states never see line bytes (see imap_parser_feed) */
        return fail_fatal(p, IMAP_ERR_SYNTAX, "internal state error");
    }
}

/* A byte in an atom (outside its brackets). */
static enum step_result atom_byte(struct imap_parser *p, unsigned char c)
{
    if (atom_char(c))
        return put(p, (char)c) < 0 ? R_ERR : R_OK;
    switch (c) {
    case '[':
        p->state = ST_BRACKET;
        return put(p, '[') < 0 ? R_ERR : R_OK;
    case ' ':
        if (end_text(p) < 0)
            return R_ERR;
        p->state = ST_SEP;
        return R_OK;
    case ')':
        if (end_text(p) < 0)
            return R_ERR;
        return close_list(p);
    case '\r':
        if (end_text(p) < 0)
            return R_ERR;
        p->state = ST_EOL;
        return R_OK;
    case '\n':
        if (end_text(p) < 0)
            return R_ERR;
        return finish(p);
    default:
        return fail(p, IMAP_ERR_SYNTAX, "invalid character in atom");
    }
}

/* One byte while discarding a line. Returns true when a fatal error was set. */
static bool discard_byte(struct imap_parser *p, unsigned char c)
{
    if (c == '\n') {
        bool literal = !p->disc_raw && (p->dl == DL_CLOSE || p->dl == DL_CR);
        if (!literal || !p->dl_nonsync) {
            p->state = ST_START; /* the bad command ends here */
            release_big(p);
            return false;
        }
        if (p->dl_overflow || p->dl_size > p->lim.max_discard) {
            p->err = IMAP_ERR_TOOBIG;
            p->errmsg = "literal of a failed command too large to skip";
            p->fatal = true;
            p->state = ST_FATAL;
            return true;
        }
        p->skip = p->dl_size;
        p->state = ST_DISCARD_LIT;
        p->dl = DL_NONE;
        return false;
    }
    switch (c) {
    case '{':
        p->dl = DL_NUM;
        p->dl_size = 0;
        p->dl_digits = false;
        p->dl_nonsync = false;
        p->dl_overflow = false;
        return false;
    case '+':
        p->dl = p->dl == DL_NUM && p->dl_digits ? DL_PLUS : DL_NONE;
        p->dl_nonsync = true;
        return false;
    case '}':
        p->dl = (p->dl == DL_NUM && p->dl_digits) || p->dl == DL_PLUS ? DL_CLOSE : DL_NONE;
        return false;
    case '\r':
        p->dl = p->dl == DL_CLOSE ? DL_CR : DL_NONE;
        return false;
    default:
        if (p->dl == DL_NUM && c >= '0' && c <= '9') {
            uint64_t d = (uint64_t)(c - '0');
            if (p->dl_size > (UINT64_MAX - d) / 10)
                p->dl_overflow = true;
            else
                p->dl_size = p->dl_size * 10 + d;
            p->dl_digits = true;
        } else {
            p->dl = DL_NONE;
        }
        return false;
    }
}

/* ---- public --------------------------------------------------------------------------------- */

void imap_parser_limits_default(struct imap_parser_limits *limits)
{
    limits->max_line = IMAP_PARSER_MAX_LINE;
    limits->max_literal = IMAP_PARSER_MAX_LITERAL;
    limits->max_command = IMAP_PARSER_MAX_COMMAND;
    limits->max_args = IMAP_PARSER_MAX_ARGS;
    limits->max_depth = IMAP_PARSER_MAX_DEPTH;
    limits->max_discard = IMAP_PARSER_MAX_DISCARD;
    limits->literal_minus = false;
}

void imap_parser_set_limits(struct imap_parser *p, const struct imap_parser_limits *limits)
{
    struct imap_parser_limits d;
    imap_parser_limits_default(&d);
    if (limits) {
        d.literal_minus = limits->literal_minus;
        d.max_discard = limits->max_discard;
        if (limits->max_line)
            d.max_line = limits->max_line;
        if (limits->max_literal)
            d.max_literal = limits->max_literal;
        if (limits->max_command)
            d.max_command = limits->max_command;
        if (limits->max_args)
            d.max_args = limits->max_args;
        if (limits->max_depth)
            d.max_depth = limits->max_depth;
    }
    if (d.max_depth > IMAP_PARSER_DEPTH_CEILING)
        d.max_depth = IMAP_PARSER_DEPTH_CEILING;
    p->lim = d;
}

struct imap_parser *imap_parser_new(const struct imap_parser_limits *limits)
{
    struct imap_parser *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    imap_parser_set_limits(p, limits);
    p->state = ST_START;
    return p;
}

void imap_parser_free(struct imap_parser **pp)
{
    if (!pp || !*pp)
        return;
    struct imap_parser *p = *pp;
    free(p->buf);
    free(p->toks);
    free(p->nodes);
    free(p);
    *pp = NULL;
}

static void refuse(struct imap_parser *p)
{
    p->err = IMAP_ERR_TOOBIG;
    p->errmsg = "literal too big";
    p->fatal = false;
    literal_resync(p, p->lit_size, p->lit_nonsync);
    if (p->fatal)
        p->errmsg = "literal too big (and too big to skip)";
}

enum imap_parse_event imap_parser_feed(struct imap_parser *p, const char *data, size_t len,
                                       size_t *used_r)
{
    *used_r = 0;
    if (p->pending_error) {
        p->pending_error = false;
        return IMAP_PARSE_ERROR;
    }
    switch (p->state) {
    case ST_DONE:
        return IMAP_PARSE_COMMAND;
    case ST_LINE_DONE:
        return IMAP_PARSE_LINE;
    case ST_FATAL:
        return IMAP_PARSE_ERROR;
    case ST_LIT_DECIDE:
        refuse(p);
        return IMAP_PARSE_ERROR;
    case ST_LIT_STREAM: {
        size_t k = p->lit_remaining < len ? (size_t)p->lit_remaining : len;
        if (k == 0)
            return IMAP_PARSE_MORE;
        struct tok *t = &p->toks[p->cur_tok];
        if (!t->has_nul && memchr(data, '\0', k))
            t->has_nul = true;
        p->lit_remaining -= k;
        if (p->lit_remaining == 0)
            p->state = ST_AFTER;
        *used_r = k;
        return IMAP_PARSE_LITERAL_DATA;
    }
    default:
        break;
    }
    /* a new feed: the previous error has been answered */
    p->err = IMAP_ERR_NONE;
    p->errmsg = NULL;

    const unsigned char *in = (const unsigned char *)data;
    size_t i = 0;
    while (i < len) {
        switch (p->state) {
        case ST_LIT_DATA: {
            size_t k = len - i < p->lit_remaining ? len - i : (size_t)p->lit_remaining;
            struct tok *t = &p->toks[p->cur_tok];
            if (memchr(in + i, '\0', k)) {
                if (!p->lit_binary) {
                    /* RFC 9051 §4.3: a literal is CHAR8 (no NUL); literal8 is for binary. The
                     * rest of the literal is the bad command's (bounded by max_literal). */
                    p->err = IMAP_ERR_SYNTAX;
                    p->errmsg = "NUL in literal";
                    p->fatal = false;
                    p->skip = p->lit_remaining;
                    p->dl = DL_NONE;
                    p->disc_raw = false;
                    p->state = ST_DISCARD_LIT;
                    *used_r = i;
                    return IMAP_PARSE_ERROR;
                }
                t->has_nul = true;
            }
            memcpy(p->buf + p->buf_len, in + i, k);
            p->buf_len += k;
            p->lit_remaining -= k;
            i += k;
            if (p->lit_remaining == 0) {
                if (end_text(p) < 0) { /* cannot fail: room was reserved */
                    *used_r = i;
                    return IMAP_PARSE_ERROR;
                }
                p->state = ST_AFTER;
            }
            continue;
        }
        case ST_DISCARD_LIT: {
            size_t k = len - i < p->skip ? len - i : (size_t)p->skip;
            p->skip -= k;
            i += k;
            if (p->skip == 0)
                p->state = ST_DISCARD;
            continue;
        }
        case ST_DISCARD:
            if (discard_byte(p, in[i++])) {
                *used_r = i;
                return IMAP_PARSE_ERROR;
            }
            continue;
        case ST_START:
            reset_command(p);
            p->state = ST_TAG;
            break;
        case ST_DONE:
        case ST_LINE_DONE:
        case ST_FATAL:
        case ST_LIT_DECIDE:
        case ST_LIT_STREAM:
            /* only reached through an event return below */
            *used_r = i;
            return IMAP_PARSE_ERROR;
        default:
            break;
        }
        if (++p->line_len > p->lim.max_line) {
            fail(p, IMAP_ERR_TOOLONG, "line too long");
            *used_r = i;
            return IMAP_PARSE_ERROR;
        }
        switch (step(p, in[i])) {
        case R_OK:
            i++;
            break;
        case R_EVENT:
            *used_r = i + 1;
            return p->event;
        case R_ERR:
            *used_r = i;
            return IMAP_PARSE_ERROR;
        case R_ERR_TAKEN:
            *used_r = i + 1;
            return IMAP_PARSE_ERROR;
        }
    }
    *used_r = i;
    return IMAP_PARSE_MORE;
}

const struct imap_command *imap_parser_command(const struct imap_parser *p)
{
    return p->state == ST_DONE ? &p->cmd : NULL;
}

void imap_parser_next(struct imap_parser *p)
{
    if (p->state != ST_DONE && p->state != ST_LINE_DONE)
        return;
    p->state = ST_START;
    memset(&p->cmd, 0, sizeof(p->cmd));
    free(p->nodes);
    p->nodes = NULL;
    release_big(p);
}

const char *imap_parser_command_name(const struct imap_parser *p)
{
    if (!p->name_done || p->state == ST_START || p->state == ST_LINE || p->state == ST_LINE_CR ||
        p->state == ST_LINE_DONE)
        return NULL;
    return p->buf + p->name_off;
}

int imap_parser_literal_info(const struct imap_parser *p, struct imap_literal_info *info_r)
{
    if (p->state != ST_LIT_DECIDE)
        return -1;
    info_r->size = p->lit_size;
    info_r->sync = !p->lit_nonsync;
    info_r->binary = p->lit_binary;
    info_r->depth = p->depth;
    info_r->index = p->children[0] - 1;
    return 0;
}

int imap_parser_literal_stream(struct imap_parser *p)
{
    if (p->state != ST_LIT_DECIDE)
        return -1;
    struct tok *t = &p->toks[p->cur_tok];
    t->streamed = true;
    t->len = (size_t)p->lit_size;
    p->lit_remaining = p->lit_size;
    p->state = p->lit_size == 0 ? ST_AFTER : ST_LIT_STREAM;
    return 0;
}

int imap_parser_literal_refuse(struct imap_parser *p)
{
    if (p->state != ST_LIT_DECIDE)
        return -1;
    refuse(p);
    p->pending_error = true;
    return 0;
}

uint64_t imap_parser_literal_remaining(const struct imap_parser *p)
{
    return p->state == ST_LIT_STREAM ? p->lit_remaining : 0;
}

int imap_parser_read_line(struct imap_parser *p)
{
    if (p->state != ST_START)
        return -1;
    reset_command(p);
    p->state = ST_LINE;
    return 0;
}

const char *imap_parser_line(const struct imap_parser *p, size_t *len_r)
{
    if (p->state != ST_LINE_DONE)
        return NULL;
    if (len_r)
        *len_r = p->buf_len - 1;
    return p->buf;
}

enum imap_parse_error imap_parser_error(const struct imap_parser *p, const char **msg_r)
{
    if (msg_r)
        *msg_r = p->errmsg ? p->errmsg : "no error";
    return p->err;
}

const char *imap_parser_error_tag(const struct imap_parser *p)
{
    return p->err != IMAP_ERR_NONE && p->tag_done ? p->buf : NULL;
}

bool imap_parser_error_fatal(const struct imap_parser *p)
{
    return p->state == ST_FATAL;
}

/* ---- argument accessors --------------------------------------------------------------------- */

const char *imap_arg_atom(const struct imap_arg *a)
{
    return a && (a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_NIL) ? a->str : NULL;
}

const char *imap_arg_string(const struct imap_arg *a)
{
    if (!a)
        return NULL;
    if (a->type == IMAP_ARG_QUOTED || (a->type == IMAP_ARG_LITERAL && !a->streamed))
        return a->str;
    return NULL;
}

const char *imap_arg_astring(const struct imap_arg *a)
{
    const char *s = imap_arg_atom(a);
    if (s)
        return s;
    return imap_arg_string(a);
}

int imap_arg_nstring(const struct imap_arg *a, const char **s_r)
{
    if (a && a->type == IMAP_ARG_NIL) {
        *s_r = NULL;
        return 0;
    }
    const char *s = imap_arg_string(a);
    if (!s)
        return -1;
    *s_r = s;
    return 0;
}

const struct imap_arg *imap_arg_list(const struct imap_arg *a, size_t *count_r)
{
    if (!a || a->type != IMAP_ARG_LIST)
        return NULL;
    *count_r = a->count;
    return a->list;
}
