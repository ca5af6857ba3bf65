/* POP3 (RFC 1939) protocol pieces without I/O: finding command lines in
 * buffered input, parsing one command line, reading message numbers, and the
 * writer that turns message bytes into a multi-line response (CRLF line ends,
 * dot-stuffing, the terminating line, TOP's line limit).
 *
 * The service (node/pop3/pop3.c) owns sockets, state and storage; everything
 * here is plain functions over caller-owned buffers, unit-tested and fuzzed
 * alone. */
#ifndef FLOE_PROTO_POP3_H
#define FLOE_PROTO_POP3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 2449 §4: a command line is at most 255 octets, CRLF included. */
#define POP3_LINE_MAX 255
/* RFC 5034 §4: responses to SASL challenges are not bound by the command
 * limit (a SCRAM or Kerberos message in base64 easily passes it); this is the
 * most a continuation line may hold here, CRLF included. */
#define POP3_SASL_LINE_MAX 8192
/* RFC 2449 §4: a response line is at most 512 octets, CRLF included. */
#define POP3_RESPONSE_MAX 512
/* Arguments of a command: AUTH takes two (mechanism, initial response). */
#define POP3_ARGS_MAX 2

enum pop3_cmd {
    POP3_CMD_UNKNOWN = 0, /* a well-formed keyword this server does not know */
    POP3_CMD_USER,
    POP3_CMD_PASS,
    POP3_CMD_APOP,
    POP3_CMD_AUTH,
    POP3_CMD_CAPA,
    POP3_CMD_STLS,
    POP3_CMD_STAT,
    POP3_CMD_LIST,
    POP3_CMD_RETR,
    POP3_CMD_DELE,
    POP3_CMD_NOOP,
    POP3_CMD_RSET,
    POP3_CMD_TOP,
    POP3_CMD_UIDL,
    POP3_CMD_QUIT,
};

/* ---- finding lines ---- */

enum pop3_line_result {
    POP3_LINE_OK = 0,   /* a line: *len_r bytes of text, *used_r bytes to drop */
    POP3_LINE_MORE,     /* no line end yet, and fewer than max bytes: wait for input */
    POP3_LINE_TOO_LONG, /* max bytes without a line end: the line is over the limit */
};

/* Looks for the first line in buf[0..len). A line ends in LF; a CR before the
 * LF is not part of the text (a bare LF is accepted as many clients send it).
 * max bounds the line with its ending (POP3_LINE_MAX or POP3_SASL_LINE_MAX):
 * a line whose ending would come later than max bytes is POP3_LINE_TOO_LONG,
 * and the caller answers -ERR and discards input up to the next LF. */
enum pop3_line_result pop3_line_find(const char *buf, size_t len, size_t max, size_t *len_r,
                                     size_t *used_r);

/* ---- parsing a command ---- */

struct pop3_command {
    enum pop3_cmd cmd;
    char keyword[5]; /* as received, upper-cased (for logs and replies) */
    size_t nargs;
    const char *args[POP3_ARGS_MAX]; /* point into the parsed line */
};

/* Parses one command line (without its line ending) in place: line[len] is
 * written, arguments are NUL-terminated inside line, so line must have room
 * for len + 1 bytes. RFC 1939 §3: a keyword of 3 or 4 letters (compared
 * without regard to case), then arguments separated by single spaces. Runs
 * of spaces and trailing spaces are tolerated. PASS takes the rest of the
 * line as one argument, spaces included (RFC 1939 §7: a password may hold
 * spaces). Returns 0 with *cmd_r filled (cmd POP3_CMD_UNKNOWN for a keyword
 * not known here), or -1 for an empty line, a bad keyword, a NUL or other
 * control character, or more arguments than POP3_ARGS_MAX; then *cmd_r says
 * nothing. Argument counts per command are the service's business. */
int pop3_command_parse(char *line, size_t len, struct pop3_command *cmd_r);

/* The keyword of a command, upper case ("RETR"); "" for POP3_CMD_UNKNOWN. */
const char *pop3_cmd_name(enum pop3_cmd cmd);

/* Reads a decimal number: 1..10 digits, nothing else, at most max. RFC 1939
 * message numbers are 1-based (the caller passes 1 as min) and TOP's line
 * count may be 0. Returns 0 with *n_r set, -1 otherwise. */
int pop3_number_parse(const char *s, uint32_t min, uint32_t max, uint32_t *n_r);

/* ---- writing a multi-line response ---- */

/* The writer turns stored message bytes into the body of a multi-line
 * response (RFC 1939 §3): every line ends in CRLF (a bare LF or a bare CR
 * becomes CRLF, so a message stored with other line ends cannot break the
 * framing), a line that starts with "." gets another "." in front, and
 * pop3_stuffer_finish() writes the terminating ".". For TOP (RFC 1939 §7) it
 * stops after the header, the blank line and the given number of body lines.
 * The state carries across calls, so input may be cut anywhere. */
struct pop3_stuffer {
    bool top;                   /* a line limit applies */
    bool in_body;               /* past the blank line that ends the header */
    bool done;                  /* TOP: the limit is reached, input is ignored */
    bool bol;                   /* at the beginning of a line */
    bool cr;                    /* a CR was seen and not yet written */
    uint32_t lines_left;        /* TOP: body lines still to write */
    unsigned long long in, out; /* bytes taken and written so far */
};

/* Output room pop3_stuffer_feed() may need for len input bytes. */
#define POP3_STUFF_OUT_MAX(len) (2 * (size_t)(len) + 2)
/* Output room pop3_stuffer_finish() needs. */
#define POP3_STUFF_FINISH_MAX 8

/* Starts a writer. top false: the whole message (RETR); true: the header and
 * body_lines lines of the body (TOP). */
void pop3_stuffer_init(struct pop3_stuffer *s, bool top, uint32_t body_lines);

/* Converts in[0..len) into out, which must hold POP3_STUFF_OUT_MAX(len)
 * bytes. Returns the number of bytes written. *used_r (may be NULL) is the
 * number of input bytes taken: len, unless a TOP limit was reached within
 * them (then pop3_stuffer_done() is true and further input is ignored). */
size_t pop3_stuffer_feed(struct pop3_stuffer *s, const char *in, size_t len, char *out,
                         size_t *used_r);

/* True once a TOP limit is reached: the caller may stop reading the message. */
bool pop3_stuffer_done(const struct pop3_stuffer *s);

/* Ends the response: the line end a message without a final line end lacks,
 * then ".\r\n". out holds POP3_STUFF_FINISH_MAX bytes. Returns the bytes
 * written. */
size_t pop3_stuffer_finish(struct pop3_stuffer *s, char *out);

#endif
