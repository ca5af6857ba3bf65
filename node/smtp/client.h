/* The SMTP client: one delivery attempt of one message to one server (RFC 5321), with
 * STARTTLS (RFC 3207), AUTH PLAIN/LOGIN for smarthosts (RFC 4954), DSN parameters
 * (RFC 3461), SMTPUTF8 (RFC 6531), SIZE (RFC 1870) and BODY (RFC 6152).
 *
 * Blocking, for the delivery threads: smtp_client_deliver() connects, talks to the
 * server and returns when every recipient has its result, each step bounded by a
 * timeout. Nothing is shared between calls, so any number of threads may deliver at
 * once. The caller picks the server (MX lookup, node/smtp/dns.h), the order of
 * servers and when to retry; this module makes one attempt on one address (plus, under
 * the OPPORTUNISTIC TLS policy, one reconnection in the clear when the TLS handshake
 * fails).
 *
 * The process should ignore SIGPIPE as floed does; this module does not depend on it
 * (plain writes use MSG_NOSIGNAL and a SIGPIPE raised inside OpenSSL is blocked and
 * consumed on the calling thread). */
#ifndef FLOE_NODE_SMTP_CLIENT_H
#define FLOE_NODE_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define SMTP_CLIENT_MAX_RCPTS 1000      /* recipients in one call */
#define SMTP_CLIENT_ADDRESS_MAX 512     /* bytes in a sender or recipient address */
#define SMTP_CLIENT_ENVID_MAX 100       /* RFC 3461 §4.4: bytes of ENVID */
#define SMTP_CLIENT_ORCPT_MAX 256       /* bytes of an original recipient sent as ORCPT */
#define SMTP_CLIENT_REPLY_MAX 512       /* bytes of reply text kept (with the NUL) */
#define SMTP_CLIENT_STATUS_MAX 16       /* an enhanced status code "5.1.1" (with the NUL) */
#define SMTP_CLIENT_REMOTE_MAX 320      /* "host[address]:port" (with the NUL) */
#define SMTP_CLIENT_REPLY_LINE_MAX 2048 /* longer reply lines are cut */
#define SMTP_CLIENT_REPLY_LINES_MAX 100 /* more lines in one reply is a protocol error */

#define SMTP_CLIENT_CONNECT_TIMEOUT_MS 30000
/* RFC 5321 §4.5.3.2: 5 minutes for the greeting and each command, 10 for the reply
 * to the end of data. */
#define SMTP_CLIENT_COMMAND_TIMEOUT_MS 300000
#define SMTP_CLIENT_DATA_TIMEOUT_MS 600000

enum smtp_client_tls {
    SMTP_CLIENT_TLS_NONE = 0,      /* never STARTTLS */
    SMTP_CLIENT_TLS_OPPORTUNISTIC, /* STARTTLS when offered, certificate not checked;
                                    * a failed handshake -> one new connection in the clear */
    SMTP_CLIENT_TLS_REQUIRED,      /* no STARTTLS, a refused STARTTLS, a failed handshake or
                                    * a failed certificate check fail the attempt */
};

enum smtp_client_body {
    SMTP_CLIENT_BODY_NONE = 0, /* no BODY parameter */
    SMTP_CLIENT_BODY_7BIT,     /* BODY=7BIT when 8BITMIME is offered */
    SMTP_CLIENT_BODY_8BITMIME, /* BODY=8BITMIME when offered; else sent without it */
};

enum smtp_client_ret { SMTP_CLIENT_RET_NONE = 0, SMTP_CLIENT_RET_FULL, SMTP_CLIENT_RET_HDRS };

/* RFC 3461 §4.1 NOTIFY values (NEVER alone, or any of the others). */
#define SMTP_CLIENT_NOTIFY_NEVER 1u
#define SMTP_CLIENT_NOTIFY_SUCCESS 2u
#define SMTP_CLIENT_NOTIFY_FAILURE 4u
#define SMTP_CLIENT_NOTIFY_DELAY 8u

enum smtp_client_class {
    SMTP_CLIENT_PENDING = 0, /* only before the call; never left after it */
    SMTP_CLIENT_DELIVERED,   /* the server accepted the message for this recipient */
    SMTP_CLIENT_TEMP,        /* try again later (4xx, or any local or network failure) */
    SMTP_CLIENT_PERM,        /* bounce (5xx, or a message the server cannot take) */
};

/* Why an attempt ended early. After FAIL_CONNECT, FAIL_NETWORK, FAIL_PROTOCOL,
 * FAIL_SESSION and FAIL_TLS another MX host may do better (RFC 5321 §5.1); after the
 * others it would not. */
enum smtp_client_failure {
    SMTP_CLIENT_OK = 0,           /* the session ran: recipients carry the server's answers */
    SMTP_CLIENT_FAIL_CONNECT,     /* no connection (refused, unreachable, timeout) */
    SMTP_CLIENT_FAIL_NETWORK,     /* connection lost, I/O error or timeout after connecting */
    SMTP_CLIENT_FAIL_PROTOCOL,    /* a reply that is not SMTP */
    SMTP_CLIENT_FAIL_SESSION,     /* greeting or EHLO/HELO refused, or 421 at any time */
    SMTP_CLIENT_FAIL_TLS,         /* the TLS policy could not be met */
    SMTP_CLIENT_FAIL_AUTH,        /* credentials given but AUTH impossible or refused */
    SMTP_CLIENT_FAIL_UNSUPPORTED, /* the message needs what the server lacks: SMTPUTF8
                                   * (5.6.7) or a SIZE limit below the message (5.3.4) */
    SMTP_CLIENT_FAIL_LOCAL,       /* the read callback failed */
};

/* One recipient: the caller fills the input fields; the call fills the others. */
struct smtp_client_rcpt {
    /* in */
    const char *addr;  /* forward path without <>, at most SMTP_CLIENT_ADDRESS_MAX bytes,
                        * no control characters, no '<' or '>'; UTF-8 needs SMTPUTF8 */
    unsigned notify;   /* SMTP_CLIENT_NOTIFY_* (0: no NOTIFY); sent when DSN is offered */
    const char *orcpt; /* original recipient (a bare address) or NULL; sent as ORCPT when DSN
                        * is offered: "rfc822;" xtext, or for UTF-8 "utf-8;" RFC 6533
                        * unitext under SMTPUTF8 only (else left out); left out above
                        * SMTP_CLIENT_ORCPT_MAX bytes */
    /* out */
    enum smtp_client_class cls;
    char status[SMTP_CLIENT_STATUS_MAX]; /* enhanced status: the server's, else
                                          * "2.0.0"/"4.0.0"/"5.0.0" by reply class, or ours
                                          * for local failures (4.4.1 no connection, 4.4.2
                                          * connection lost or timeout, 4.5.0 protocol
                                          * error, 4.7.4/4.7.5 TLS, 5.6.7 SMTPUTF8, 5.3.4
                                          * size, 5.1.3/5.1.7 bad address) */
    char reply[SMTP_CLIENT_REPLY_MAX];   /* the server's reply, "550 5.1.1 text", the lines
                                          * of a multi-line reply joined with spaces (their
                                          * repeated codes left out); or a local reason */
    char remote[SMTP_CLIENT_REMOTE_MAX]; /* the server, "host[address]:port" */
};

struct smtp_client_params {
    /* the server */
    const struct sockaddr *addr; /* AF_INET or AF_INET6, port set */
    const char *host;            /* its name, for SNI, certificate checks and messages; NULL:
                                  * none (the address is used) */
    const char *helo;            /* our name for EHLO/HELO (a domain or address literal) */
    unsigned connect_timeout_ms; /* 0: SMTP_CLIENT_CONNECT_TIMEOUT_MS */
    unsigned command_timeout_ms; /* greeting and each reply; 0: SMTP_CLIENT_COMMAND_TIMEOUT_MS;
                                  * also bounds each write of message data */
    unsigned data_timeout_ms;    /* the reply to the end of data; 0: SMTP_CLIENT_DATA_TIMEOUT_MS */

    /* TLS. Under REQUIRED, when any pin is set the leaf certificate must match every set
     * pin and the chain is not checked; else when tls_verify the chain must verify
     * against tls_ca_file (NULL: the system store) and name host (or the address when
     * host is NULL or a literal); else any certificate is accepted (encryption only).
     * Under OPPORTUNISTIC no certificate is checked (RFC 7435). */
    enum smtp_client_tls tls;
    bool tls_verify;
    const char *tls_ca_file;
    const char *pin_subject;     /* substring of a subject CN (case-insensitive) */
    const char *pin_issuer;      /* substring of the issuer DN in RFC 2253 form
                                  * ("CN=R3,O=Let's Encrypt,C=US"), case-insensitive */
    const char *pin_fingerprint; /* SHA-256 of the leaf certificate (DER), 64 hex digits,
                                  * optionally separated by ':' */

    /* AUTH (smarthost): both or neither. Credentials go only over TLS, so they need a
     * TLS policy other than NONE; the attempt fails (FAIL_AUTH, temporary) without TLS,
     * when the server offers neither PLAIN nor LOGIN, or refuses them. */
    const char *auth_user;
    const char *auth_password;

    /* the envelope */
    const char *sender; /* reverse path without <>; "" for the null path */
    uint64_t size;      /* message size in bytes for SIZE=; 0: unknown */
    enum smtp_client_body body;
    bool smtputf8;            /* the message needs SMTPUTF8 (also implied by a non-ASCII
                               * sender or recipient address) */
    enum smtp_client_ret ret; /* RET=, when DSN is offered */
    const char *envid;        /* ENVID= (xtext-encoded here), when DSN is offered; NULL:
                               * none; longer than SMTP_CLIENT_ENVID_MAX: left out */

    /* The message, read from the start: returns bytes read (> 0), 0 at the end, -1 on an
     * error (the attempt stops without ending the data, so the server drops it; every
     * accepted recipient becomes TEMP with FAIL_LOCAL). Line ends may be CRLF, LF or CR;
     * they are sent as CRLF, lines starting with '.' are dot-stuffed (RFC 5321 §4.5.2)
     * and a missing final line end is added. Called only after DATA was accepted. */
    ssize_t (*read)(void *ctx, char *buf, size_t n);
    void *read_ctx;
};

struct smtp_client_result {
    enum smtp_client_failure failure;
    char status[SMTP_CLIENT_STATUS_MAX]; /* of the failure, or of a refused MAIL, DATA
                                          * or end of data; "" when none */
    char reply[SMTP_CLIENT_REPLY_MAX];   /* the same's reply or local reason */
    char remote[SMTP_CLIENT_REMOTE_MAX];
    unsigned connections; /* connections made (2 after an opportunistic fallback) */
    bool tls;             /* the message went over TLS */
    bool tls_fallback;    /* OPPORTUNISTIC: the handshake failed; went in the clear */
    bool tls_verified;    /* REQUIRED: the certificate passed the pins or the chain */
    char tls_version[16]; /* "TLSv1.3" */
    char tls_cipher[64];
    bool authenticated;           /* AUTH succeeded */
    size_t delivered, temp, perm; /* recipients in each class */
};

/* Delivers the message of p to the n recipients on the server p->addr (n at most
 * SMTP_CLIENT_MAX_RCPTS). Returns 0 when the attempt ran, whatever its outcome: every
 * recipient then has its class, status, reply and remote set, and *result_r says how
 * the session went. Returns -1 without connecting when the parameters are unusable
 * (no address, helo, sender, read callback or recipients, too many recipients, a
 * NULL recipient address, half of the AUTH credentials, an unknown TLS policy) or
 * memory runs out; then
 * result_r->reply says why and the recipients are untouched.
 *
 * Outcomes: a connection or network failure, a timeout or a garbled reply make every
 * recipient not yet rejected TEMP. A reply to MAIL or DATA, or to the end of data,
 * applies to every recipient accepted so far (2xx after the data: DELIVERED). A
 * recipient refused at RCPT keeps that reply. A recipient or sender address that
 * cannot be sent (control characters, '<' or '>', too long) is PERM (5.1.3 / 5.1.7)
 * without asking the server. SIZE, BODY, SMTPUTF8, RET, ENVID, NOTIFY and ORCPT are
 * sent only when the server offers the extension; a message that needs SMTPUTF8 on a
 * server without it, or is larger than the server's SIZE, is PERM for everyone. The
 * session ends with QUIT when the server is still talking to us. PIPELINING is not
 * used: each command waits for its reply. */
int smtp_client_deliver(const struct smtp_client_params *p, struct smtp_client_rcpt *rcpts,
                        size_t n, struct smtp_client_result *result_r);

/* Static names for logs: "delivered", "temporary", ...; "tls", "connect", ... */
const char *smtp_client_class_str(enum smtp_client_class c);
const char *smtp_client_failure_str(enum smtp_client_failure f);

#endif
