/* SMTP protocol pieces that need no I/O: the command-line parser (RFC 5321
 * §4.1 with the ESMTP parameters of SIZE, 8BITMIME/BINARYMIME, SMTPUTF8, DSN
 * and AUTH), xtext (RFC 3461 §4), BDAT arguments (RFC 3030), the streaming
 * DATA decoder (end of data, dot-unstuffing, line ending normalisation) and
 * the builder of delivery status notifications (RFC 3464).
 *
 * Every function is bounded by the limits below and never reads past the
 * lengths it is given. Replies are returned as "code text" pairs the caller
 * writes as "<code> <text>\r\n"; texts carry the enhanced status code
 * (RFC 3463), e.g. {501, "5.5.4 Syntax error in parameters"}. */
#ifndef FLOE_PROTO_SMTP_H
#define FLOE_PROTO_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* RFC 5321 §4.5.3.1: 512 octets per command line is the minimum servers must
 * take; AUTH initial responses (RFC 4954 §4) need up to 12288. */
#define SMTP_LINE_MAX 12288
/* RFC 5321 §4.5.3.1.3: a path is at most 256 octets including the brackets. */
#define SMTP_PATH_MAX 256
/* Longest local@domain kept (local part 64, domain 255, '@'). */
#define SMTP_ADDRESS_MAX 320
/* RFC 3461 §4.4: ENVID at most 100 characters (decoded here). */
#define SMTP_ENVID_MAX 100
/* ORCPT: addr-type ";" decoded xtext original address. */
#define SMTP_ORCPT_MAX 500

enum smtp_verb {
    SMTP_UNKNOWN = 0,
    SMTP_HELO, SMTP_EHLO, SMTP_MAIL, SMTP_RCPT, SMTP_DATA, SMTP_BDAT, SMTP_RSET,
    SMTP_NOOP, SMTP_QUIT, SMTP_VRFY, SMTP_EXPN, SMTP_HELP, SMTP_STARTTLS, SMTP_AUTH,
};

struct smtp_reply {
    int code;         /* 0 = none (success) */
    const char *text; /* static string, enhanced code first */
};

struct smtp_command {
    enum smtp_verb verb;
    /* The rest of the line after the verb and its separating space(s), without
     * CRLF; "" when none. Points into the caller's line. */
    const char *arg;
};

/* Parses one command line (len bytes, CRLF/LF already removed). The verb is
 * matched without regard to case; "MAIL FROM:" and "RCPT TO:" are recognised
 * as MAIL and RCPT with arg starting at the path ("<...> params"); one space
 * after the colon is skipped (common client behaviour). Without "FROM:" /
 * "TO:", arg is the rest of the line, which smtp_mail/rcpt_parse refuse.
 * arg is read as a C string, so the caller keeps line[len] == '\0'.
 * Returns 0, or -1 for an empty line, a NUL byte or an unknown verb
 * (verb = SMTP_UNKNOWN, arg = ""). */
int smtp_command_parse(const char *line, size_t len, struct smtp_command *cmd_r);

const char *smtp_verb_name(enum smtp_verb v);

enum smtp_body { SMTP_BODY_NONE = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME, SMTP_BODY_BINARYMIME };
enum smtp_ret { SMTP_RET_NONE = 0, SMTP_RET_FULL, SMTP_RET_HDRS };

/* DSN NOTIFY bits (RFC 3461 §4.1); 0 = not given. NEVER excludes the others. */
#define SMTP_NOTIFY_NEVER 1u
#define SMTP_NOTIFY_SUCCESS 2u
#define SMTP_NOTIFY_FAILURE 4u
#define SMTP_NOTIFY_DELAY 8u

struct smtp_mail {
    /* local@domain, "" for the null reverse-path <>. Source routes
     * (RFC 5321 §4.1.2 "@a,@b:") are dropped. A quoted local part is kept
     * quoted when it needs quoting, unquoted otherwise ("a"@x -> a@x). */
    char address[SMTP_ADDRESS_MAX + 1];
    bool utf8_address;   /* the address has non-ASCII bytes (needs SMTPUTF8) */
    long long size;      /* SIZE=, -1 when not given */
    enum smtp_body body; /* BODY= */
    bool smtputf8;       /* SMTPUTF8 */
    enum smtp_ret ret;   /* RET= */
    char envid[SMTP_ENVID_MAX + 1]; /* ENVID=, decoded xtext, "" none */
    char auth[SMTP_ADDRESS_MAX + 1]; /* AUTH=, decoded xtext, "<>" or address, "" none */
};

struct smtp_rcpt {
    char address[SMTP_ADDRESS_MAX + 1]; /* as in smtp_mail; never "" */
    bool utf8_address;
    unsigned notify;                   /* SMTP_NOTIFY_* */
    char orcpt[SMTP_ORCPT_MAX + 1];    /* ORCPT= "rfc822;addr" decoded, "" none */
};

/* Parses the argument of MAIL (what smtp_command_parse left in arg, starting
 * with "<"). Parameters are matched without regard to case; an unknown or
 * repeated parameter or a bad value is an error. Bare addresses without
 * brackets are refused (RFC 5321 §4.1.2). Returns 0, or fills *err_r:
 * 501 5.1.7 bad sender address syntax, 501 5.5.4 bad parameter syntax,
 * 555 5.5.4 unsupported parameter. */
int smtp_mail_parse(const char *arg, struct smtp_mail *m_r, struct smtp_reply *err_r);

/* The same for RCPT: the null path and postmaster without domain
 * ("<Postmaster>", RFC 5321 §4.5.1, returned as "postmaster") are handled;
 * errors 501 5.1.3 bad recipient address syntax, 501 5.5.4, 555 5.5.4. */
int smtp_rcpt_parse(const char *arg, struct smtp_rcpt *r_r, struct smtp_reply *err_r);

/* BDAT <size> [LAST] (RFC 3030 §2). Returns 0 or -1 (501 syntax). */
int smtp_bdat_parse(const char *arg, uint64_t *size_r, bool *last_r);

/* xtext (RFC 3461 §4): decode into out (NUL-terminated); -1 when malformed
 * (including lower-case hex and "+00", which would cut the string) or it does
 * not fit; out is then "". Encode: -1 when it does not fit. */
int smtp_xtext_decode(const char *in, size_t inlen, char *out, size_t outlen);
int smtp_xtext_encode(const char *in, char *out, size_t outlen);

/* Streaming DATA decoder (RFC 5321 §4.1.1.4, §4.5.2).
 * The message ends only at CRLF "." CRLF (or "." CRLF as the very first line);
 * a leading dot of every other line is removed. Bare LF and bare CR inside the
 * data are written as CRLF, so no sequence that a later hop could read as the
 * end of data survives ("SMTP smuggling"); bare_newlines counts them. */
struct smtp_data {
    int state;             /* private */
    uint64_t bytes;        /* decoded bytes written so far */
    unsigned bare_newlines;
    bool done;
};
void smtp_data_init(struct smtp_data *d);
/* Consumes input, writing decoded bytes through out (called with pieces of
 * any size; a non-zero return aborts and is returned, a positive one as -1;
 * out NULL discards the data). Returns the number of
 * input bytes consumed: all of len, or fewer when the end of data was reached
 * (d->done; the rest of the input belongs to the next command), or a negative
 * value returned by out (the decoder is then unusable). Once done, 0.
 * Up to two bytes of a line start (".", ".\r") are held back until the next
 * call shows whether they are the end marker; over the whole stream the
 * output is never more than twice the input. */
typedef int (*smtp_data_out)(void *ctx, const char *p, size_t n);
long smtp_data_feed(struct smtp_data *d, const char *in, size_t len, smtp_data_out out, void *ctx);

/* Delivery status notification (RFC 3464, RFC 3461 §6). */
enum smtp_dsn_action { SMTP_DSN_FAILED, SMTP_DSN_DELAYED, SMTP_DSN_DELIVERED, SMTP_DSN_RELAYED,
                       SMTP_DSN_EXPANDED };

struct smtp_dsn_rcpt {
    const char *final_recipient; /* local@domain */
    const char *original_recipient; /* ORCPT as given ("rfc822;x@y"), NULL none */
    enum smtp_dsn_action action;
    const char *status;          /* "5.1.1" */
    const char *remote_mta;      /* host name, NULL none */
    const char *diagnostic;      /* the remote reply "550 5.1.1 no such user", NULL none */
    time_t last_attempt;         /* 0 none */
    time_t will_retry_until;     /* delayed only, 0 none */
};

struct smtp_dsn {
    const char *reporting_mta; /* this host's name */
    const char *from;          /* "MAILER-DAEMON@host" */
    const char *to;            /* the original sender */
    const char *envid;         /* NULL none */
    time_t arrival;
    time_t now;                /* Date: header */
    const struct smtp_dsn_rcpt *rcpts;
    size_t nrcpts;
    /* The original message (headers only when ret_full is false: everything up
     * to the first empty line). May be NULL (no third part then). */
    const char *original;
    size_t original_len;
    bool ret_full;
};

/* Builds the complete notification message (headers, a human-readable
 * text/plain part, message/delivery-status, and message/rfc822 or
 * text/rfc822-headers) into a malloc'd buffer. Subject and text depend on the
 * actions ("Undelivered Mail Returned to Sender", "Delayed Mail (still being
 * retried)", "Successful Mail Delivery Report"). Auto-Submitted: auto-replied.
 * Returns 0 with *out_r and *len_r (caller frees) or -1. */
int smtp_dsn_build(const struct smtp_dsn *d, char **out_r, size_t *len_r);

#endif
