/* IMAP command reader (RFC 9051 §2.2, §4, §9; RFC 3501 for IMAP4rev1 clients): bytes in, one
 * complete command out as a tag, an upper-cased command name and a tree of arguments. No I/O.
 *
 * How a service uses it:
 *
 *     while (len > 0) {
 *         size_t used;
 *         enum imap_parse_event ev = imap_parser_feed(p, data, len, &used);
 *         data += used, len -= used;
 *         switch (ev) {
 *         case IMAP_PARSE_MORE:     return;                  (wait for more input)
 *         case IMAP_PARSE_CONTINUE: send "+ OK\r\n"; break;  (synchronizing literal accepted)
 *         case IMAP_PARSE_LITERAL:  big literal: imap_parser_literal_stream() or _refuse(); break;
 *         case IMAP_PARSE_LITERAL_DATA: the `used` bytes just consumed are literal data; break;
 *         case IMAP_PARSE_COMMAND:  run imap_parser_command(p); later imap_parser_next(p); break;
 *         case IMAP_PARSE_LINE:     (after imap_parser_read_line) imap_parser_line(); _next(p);
 *         case IMAP_PARSE_ERROR:    BAD (tag or "*"), close if imap_parser_error_fatal(); break;
 *         }
 *     }
 *
 * Arguments are atoms, quoted strings (with \" and \\ escapes), literals {n}, non-synchronizing
 * literals {n+} (RFC 7888), literal8 ~{n} (RFC 3516), NIL and parenthesised lists. An atom
 * holding '[' continues to the matching ']' and may contain spaces, parentheses and quoted
 * strings there, so a FETCH item like BODY.PEEK[HEADER.FIELDS (DATE "X-Y")]<0.100> arrives as
 * one atom, spelled as sent, for the FETCH parser to read. A literal inside the brackets is not
 * supported (an error); a '[' not closed on its line is an error, so a mailbox name with an
 * unbalanced '[' must be sent as a string.
 *
 * Strictness: atoms are 7-bit ATOM-CHARs plus '%', '*' and ']' (list patterns, sequence sets,
 * astrings) and a leading '\' (flags); quoted strings hold printable 7-bit text or valid UTF-8
 * (RFC 9051 §4.3 allows UTF-8 there); literals hold no NUL (CHAR8), literal8 may. Tokens are
 * separated by one or more spaces; a line ends with CRLF (a bare LF is accepted, a bare CR is
 * not). Empty lines are errors.
 *
 * Literals. A literal of at most max_literal bytes is buffered: for {n} the reader returns
 * IMAP_PARSE_CONTINUE once its header line is read and the service sends a continuation
 * request; {n+} is read on without a pause. A larger literal stops the reader with
 * IMAP_PARSE_LITERAL: the service looks at imap_parser_literal_info() and the command name and
 * either streams it (APPEND: imap_parser_literal_stream(), then sends "+ OK" itself when the
 * literal is synchronizing, then receives the bytes as IMAP_PARSE_LITERAL_DATA events, each
 * being exactly the bytes consumed by that feed, without copies) or refuses it
 * (imap_parser_literal_refuse(), or simply feeding on, gives an IMAP_ERR_TOOBIG error to answer
 * with [TOOBIG]). A streamed literal appears in the finished command with streamed set, str ""
 * and len its size. Memory per session is therefore bounded by max_command (tag, name, token
 * text and buffered literals) plus max_args nodes, whatever the client sends.
 *
 * Errors. Every error is reported once, with the tag when it was read (imap_parser_error_tag)
 * so the service can answer "<tag> BAD ..." (or "* BAD"). The reader then resynchronises by
 * itself on the following feeds: it discards the rest of the command line, and when that line
 * ends with a literal header it treats the literal as part of the bad command: {n} ends the
 * command (the client waits for a continuation that never comes), {n+} / ~{n+} are read and
 * dropped when n <= max_discard. A larger non-synchronizing literal cannot be skipped safely
 * (its bytes would be taken as commands, and reading them costs unbounded time): the reader
 * then reports a second, fatal error and the service must close the connection. Fatal errors
 * (imap_parser_error_fatal) also include running out of memory; after one, feed only returns
 * IMAP_PARSE_ERROR.
 *
 * A refused synchronizing literal ends its command at once (RFC 9051 §7.1 TOOBIG, the client
 * gets no continuation). A non-synchronizing literal over 4096 bytes when the server announced
 * LITERAL- instead of LITERAL+ (limits.literal_minus) is an IMAP_ERR_TOOBIG error (RFC 7888
 * §4), skipped like above. */
#ifndef FLOE_PROTO_IMAP_PARSER_H
#define FLOE_PROTO_IMAP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Defaults for struct imap_parser_limits. */
#define IMAP_PARSER_MAX_LINE (64 * 1024)      /* per line, literal data not counted */
#define IMAP_PARSER_MAX_LITERAL (64 * 1024)   /* largest buffered literal */
#define IMAP_PARSER_MAX_COMMAND (1024 * 1024) /* all buffered text of one command */
#define IMAP_PARSER_MAX_ARGS 10000            /* argument nodes, lists included */
#define IMAP_PARSER_MAX_DEPTH 32              /* list nesting */
#define IMAP_PARSER_MAX_DISCARD (1024 * 1024) /* largest {n+} skipped after an error */
#define IMAP_PARSER_DEPTH_CEILING 64          /* max_depth is clamped to this */
#define IMAP_PARSER_LITERAL_MINUS_MAX 4096    /* RFC 7888 §4 */

struct imap_parser_limits {
    size_t max_line;
    size_t max_literal;
    size_t max_command;
    size_t max_args;
    unsigned max_depth;
    uint64_t max_discard;
    bool literal_minus; /* the server announced LITERAL- rather than LITERAL+ */
};

enum imap_arg_type {
    IMAP_ARG_ATOM,     /* atom, flag (\Seen), sequence set, FETCH item with its [section] */
    IMAP_ARG_NIL,      /* the atom NIL in any case; str is the spelling sent */
    IMAP_ARG_QUOTED,   /* quoted string, escapes removed */
    IMAP_ARG_LITERAL,  /* {n} or {n+} */
    IMAP_ARG_LITERAL8, /* ~{n} (RFC 3516) */
    IMAP_ARG_LIST,     /* ( ... ) */
};

/* One argument. str is NUL-terminated and len its length in bytes (a LITERAL8 may hold NUL
 * bytes before len); lists have str NULL and their children in list[0..count). */
struct imap_arg {
    enum imap_arg_type type;
    bool nonsync;  /* literal sent as {n+} / ~{n+} */
    bool streamed; /* literal handed out as IMAP_PARSE_LITERAL_DATA: str is "", len its size */
    bool has_nul;  /* literal data held a NUL byte (possible in LITERAL8 and streamed ones) */
    const char *str;
    size_t len;
    const struct imap_arg *list;
    size_t count;
};

/* A complete command, valid until imap_parser_next() or imap_parser_free(). */
struct imap_command {
    const char *tag;
    const char *name; /* upper-cased ASCII (command names are case-insensitive) */
    const struct imap_arg *args;
    size_t count;
};

enum imap_parse_event {
    IMAP_PARSE_MORE,         /* all input taken, no complete command yet */
    IMAP_PARSE_CONTINUE,     /* a synchronizing literal was accepted: send a "+" line */
    IMAP_PARSE_LITERAL,      /* a literal over max_literal: call _literal_stream or _refuse */
    IMAP_PARSE_LITERAL_DATA, /* the bytes consumed by this feed are streamed literal data */
    IMAP_PARSE_COMMAND,      /* imap_parser_command() is ready; call imap_parser_next() after */
    IMAP_PARSE_LINE,         /* imap_parser_line() is ready; call imap_parser_next() after */
    IMAP_PARSE_ERROR,        /* see imap_parser_error*() */
};

enum imap_parse_error {
    IMAP_ERR_NONE,
    IMAP_ERR_SYNTAX,  /* BAD */
    IMAP_ERR_TOOLONG, /* line or whole command over its limit: BAD */
    IMAP_ERR_TOOBIG,  /* literal refused or over a limit: BAD/NO [TOOBIG] (RFC 9051 §7.1) */
    IMAP_ERR_LIMIT,   /* too many arguments or lists nested too deep: BAD */
    IMAP_ERR_NOMEM,   /* out of memory (fatal) */
};

/* What the reader knows about the literal that caused IMAP_PARSE_LITERAL. */
struct imap_literal_info {
    uint64_t size;
    bool sync;      /* {n}: the client waits for a continuation request */
    bool binary;    /* ~{n}: literal8 */
    unsigned depth; /* list nesting where it stands, 0 = a top-level argument */
    size_t index;   /* 0-based position among the top-level arguments */
};

struct imap_parser;

/* Fills limits with the defaults above. */
void imap_parser_limits_default(struct imap_parser_limits *limits);

/* A reader with the given limits (NULL: the defaults). NULL when out of memory. */
struct imap_parser *imap_parser_new(const struct imap_parser_limits *limits);
void imap_parser_free(struct imap_parser **p);

/* Replaces the limits; meant for a command boundary (max_depth is clamped to
 * IMAP_PARSER_DEPTH_CEILING, zero values take the defaults). */
void imap_parser_set_limits(struct imap_parser *p, const struct imap_parser_limits *limits);

/* Feeds input. *used_r is the number of bytes taken; the rest must be fed again after the
 * event has been handled. Never reads beyond data[len). IMAP_PARSE_MORE means every byte was
 * taken. An error may take no bytes: the next feed goes on discarding. In the COMMAND and LINE
 * states feed takes nothing and repeats the event until imap_parser_next(). */
enum imap_parse_event imap_parser_feed(struct imap_parser *p, const char *data, size_t len,
                                       size_t *used_r);

/* The finished command after IMAP_PARSE_COMMAND, NULL otherwise. */
const struct imap_command *imap_parser_command(const struct imap_parser *p);

/* Forgets the finished command or line and prepares for the next one; large buffers are
 * released so an idle session keeps little memory. */
void imap_parser_next(struct imap_parser *p);

/* The command name once it has been read (upper-cased), else NULL: lets the service decide
 * about a big literal (APPEND streams its message). */
const char *imap_parser_command_name(const struct imap_parser *p);

/* After IMAP_PARSE_LITERAL: what the literal is. -1 when no literal is waiting. */
int imap_parser_literal_info(const struct imap_parser *p, struct imap_literal_info *info_r);

/* After IMAP_PARSE_LITERAL: hand the literal out as IMAP_PARSE_LITERAL_DATA events. The caller
 * sends the continuation request itself when info.sync. -1 when no literal is waiting. */
int imap_parser_literal_stream(struct imap_parser *p);

/* After IMAP_PARSE_LITERAL: refuse it. The next feed returns IMAP_PARSE_ERROR (IMAP_ERR_TOOBIG)
 * without taking input, then resynchronises as described above. Feeding without deciding
 * refuses too. -1 when no literal was waiting. */
int imap_parser_literal_refuse(struct imap_parser *p);

/* Bytes of the streamed literal still to come (0 when not streaming). */
uint64_t imap_parser_literal_remaining(const struct imap_parser *p);

/* At a command boundary (after imap_parser_next, before any byte of a new command): read the
 * next line raw (AUTHENTICATE responses, IDLE's DONE) up to max_line bytes; feed then returns
 * IMAP_PARSE_LINE. -1 when a command is being read. */
int imap_parser_read_line(struct imap_parser *p);

/* After IMAP_PARSE_LINE: the line without its CRLF, NUL-terminated; *len_r its length. */
const char *imap_parser_line(const struct imap_parser *p, size_t *len_r);

/* After IMAP_PARSE_ERROR: the error class and a message for the BAD reply or the log. */
enum imap_parse_error imap_parser_error(const struct imap_parser *p, const char **msg_r);
/* The tag of the failed command when it had been read completely, else NULL ("* BAD"). */
const char *imap_parser_error_tag(const struct imap_parser *p);
/* True when the session must be closed (see above). */
bool imap_parser_error_fatal(const struct imap_parser *p);

/* ---- argument accessors: NULL / -1 when the argument is not of the wanted kind ---- */

/* An atom (NIL included, as it is also a valid astring atom). */
const char *imap_arg_atom(const struct imap_arg *a);
/* A string: quoted or buffered literal (not literal8, not streamed). */
const char *imap_arg_string(const struct imap_arg *a);
/* An astring (RFC 9051 §9): atom, NIL, quoted or buffered literal. */
const char *imap_arg_astring(const struct imap_arg *a);
/* An nstring: 0 with *s_r NULL for NIL, 0 with the string, -1 otherwise. */
int imap_arg_nstring(const struct imap_arg *a, const char **s_r);
/* A list's children and their number. */
const struct imap_arg *imap_arg_list(const struct imap_arg *a, size_t *count_r);

#endif
