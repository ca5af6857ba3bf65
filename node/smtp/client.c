/* The SMTP client (one delivery attempt): a blocking session on a non-blocking socket.
 *
 * Every wait goes through poll() against an absolute deadline, so a silent or slow
 * server costs at most the configured timeout per step. The connection reads into a
 * small buffer and hands out lines; a reply is read as a whole (its lines up to the
 * one with a space after the code, RFC 5321 §4.2.1), checked (three digits, one code
 * for every line, bounded lines and line count) and kept twice: the raw line texts
 * (for the EHLO keywords) and one joined text for the recipients' results.
 *
 * The session: greeting -> EHLO (HELO when EHLO is refused with 5xx) -> STARTTLS and
 * EHLO again (RFC 3207 §4.2: nothing learnt before TLS is kept) -> AUTH -> checks of
 * SMTPUTF8 and SIZE -> MAIL -> RCPT per recipient -> DATA -> the message -> QUIT. Each
 * recipient is PENDING until its outcome is known; a failure of the session as a whole
 * settles every pending recipient at once, so no recipient is ever left unsettled.
 *
 * TLS is OpenSSL on the same socket (SSL_set_fd), with one SSL_CTX per call: the
 * attempt owns everything it uses. Certificates are checked after the handshake
 * rather than during it, so a failure carries OpenSSL's reason, and nothing more is
 * sent to a server that failed the check. */
#include "node/smtp/client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define IN_BUF 4096
#define OUT_BUF 16384
#define CMD_MAX 4096
#define RAW_MAX 8192          /* reply line texts kept for EHLO parsing */
#define QUIT_TIMEOUT_MS 10000 /* the reply to QUIT is a courtesy: wait less for it */
#define READ_CHUNK 8192

/* I/O results (negative) */
enum { IO_OK = 0, IO_TIMEOUT = -1, IO_CLOSED = -2, IO_ERROR = -3, IO_PROTOCOL = -4 };

/* EHLO keywords we act on */
enum {
    EXT_STARTTLS = 1u << 0,
    EXT_SIZE = 1u << 1,
    EXT_8BITMIME = 1u << 2,
    EXT_SMTPUTF8 = 1u << 3,
    EXT_DSN = 1u << 4,
    EXT_AUTH_PLAIN = 1u << 5,
    EXT_AUTH_LOGIN = 1u << 6,
    EXT_AUTH = 1u << 7,
};

struct conn {
    int fd;
    SSL *ssl;
    char in[IN_BUF];
    size_t in_start, in_end;
    char out[OUT_BUF];
    size_t out_len;
    char err[256]; /* detail of the last IO_ERROR / IO_PROTOCOL */
};

struct reply {
    int code;
    char status[SMTP_CLIENT_STATUS_MAX];
    char text[SMTP_CLIENT_REPLY_MAX]; /* "550 5.1.1 joined text" */
    char raw[RAW_MAX];                /* each line's text after "NNN-", '\n'-terminated */
    size_t raw_len;
};

struct client {
    const struct smtp_client_params *p;
    struct smtp_client_rcpt *rcpts;
    size_t n;
    struct smtp_client_result *res;
    struct conn c;
    SSL_CTX *ctx;
    char remote[SMTP_CLIENT_REMOTE_MAX];
    unsigned ext;
    uint64_t size_max;
    bool need_utf8;
    unsigned connect_ms, command_ms, data_ms;
};

/* --- small helpers --- */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src != NULL ? src : "");
}

/* Appends src (len bytes) to the NUL-terminated dst of capacity cap, cutting it. */
static void append(char *dst, size_t cap, const char *src, size_t len)
{
    size_t used = strlen(dst);
    if (used + 1 >= cap)
        return;
    if (len > cap - used - 1)
        len = cap - used - 1;
    memcpy(dst + used, src, len);
    dst[used + len] = '\0';
}

static bool is_ascii(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

/* A path we can put between <> on a command line. */
static bool address_ok(const char *a)
{
    size_t len = strlen(a);
    if (len > SMTP_CLIENT_ADDRESS_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)a[i];
        if (ch < 0x20 || ch == 0x7f || ch == '<' || ch == '>')
            return false;
    }
    return true;
}

/* RFC 3461 §4: xtext; "+" "=" and bytes outside "!".."~" as "+HH". */
static void xtext(const char *in, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *in != '\0' && o + 4 < cap; in++) {
        unsigned char ch = (unsigned char)*in;
        if (ch < '!' || ch > '~' || ch == '+' || ch == '=') {
            out[o++] = '+';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o] = '\0';
}

/* RFC 6533 §3 utf-8-addr-unitext: UTF-8 as is, but "+", "=", "\", blanks and
 * controls as "\x{HH}". */
static void unitext(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (; *in != '\0' && o + 7 < cap; in++) {
        unsigned char ch = (unsigned char)*in;
        if (ch <= ' ' || ch == 0x7f || ch == '+' || ch == '=' || ch == '\\')
            o += (size_t)snprintf(out + o, cap - o, "\\x{%02X}", ch);
        else
            out[o++] = (char)ch;
    }
    out[o] = '\0';
}

static bool is_ip_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return host[0] == '[' || inet_pton(AF_INET, host, buf) == 1 ||
           inet_pton(AF_INET6, host, buf) == 1;
}

static void format_remote(struct client *cl)
{
    const struct sockaddr *sa = cl->p->addr;
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip);
        port = ntohs(sin->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof ip);
        port = ntohs(sin6->sin6_port);
    }
    const char *h = cl->p->host != NULL && cl->p->host[0] != '\0' ? cl->p->host : ip;
    snprintf(cl->remote, sizeof cl->remote, "%.255s[%s]:%u", h, ip, port);
}

/* --- SIGPIPE around OpenSSL (it writes with write(), which raises SIGPIPE on a
 * closed connection): blocked on this thread, and a SIGPIPE raised meanwhile is
 * taken out of the pending set before unblocking. --- */

struct sigpipe_guard {
    sigset_t old;
    bool was_pending;
};

static void sigpipe_block(struct sigpipe_guard *g)
{
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
    sigemptyset(&pending);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE) == 1;
}

static void sigpipe_restore(const struct sigpipe_guard *g)
{
    if (!g->was_pending) {
        sigset_t set, pending;
        sigemptyset(&pending);
        sigpending(&pending);
        if (sigismember(&pending, SIGPIPE) == 1) {
            sigemptyset(&set);
            sigaddset(&set, SIGPIPE);
            struct timespec zero = {0, 0};
            sigtimedwait(&set, NULL, &zero);
        }
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* --- the connection --- */

static int wait_fd(struct conn *c, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0)
            return IO_TIMEOUT;
        struct pollfd p = {.fd = c->fd, .events = events};
        int rc = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (rc > 0)
            return IO_OK; /* errors and hangups show up in the next read or write */
        if (rc < 0 && errno != EINTR) {
            snprintf(c->err, sizeof c->err, "poll: %s", strerror(errno));
            return IO_ERROR;
        }
    }
}

static void ssl_error(struct conn *c, const char *what)
{
    unsigned long e = ERR_get_error();
    if (e != 0) {
        char buf[200];
        ERR_error_string_n(e, buf, sizeof buf);
        snprintf(c->err, sizeof c->err, "%s: %s", what, buf);
    } else if (errno != 0) {
        snprintf(c->err, sizeof c->err, "%s: %s", what, strerror(errno));
    } else {
        snprintf(c->err, sizeof c->err, "%s failed", what);
    }
    ERR_clear_error();
}

/* What to do after an SSL call returned rc <= 0: wait and retry (IO_OK), or fail. */
static int ssl_wait(struct conn *c, int rc, long long deadline, const char *what)
{
    int e = SSL_get_error(c->ssl, rc);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        return wait_fd(c, POLLIN, deadline);
    case SSL_ERROR_WANT_WRITE:
        return wait_fd(c, POLLOUT, deadline);
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return IO_CLOSED;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0 && errno == 0) {
            snprintf(c->err, sizeof c->err, "%s: connection closed", what);
            return IO_CLOSED;
        }
        ssl_error(c, what);
        return IO_ERROR;
    default:
        ssl_error(c, what);
        return IO_ERROR;
    }
}

static int conn_write(struct conn *c, const char *data, size_t len, long long deadline)
{
    while (len > 0) {
        ssize_t n;
        if (c->ssl != NULL) {
            struct sigpipe_guard g;
            sigpipe_block(&g);
            ERR_clear_error();
            errno = 0;
            int rc = SSL_write(c->ssl, data, len > INT32_MAX ? INT32_MAX : (int)len);
            int wrc = rc > 0 ? IO_OK : ssl_wait(c, rc, deadline, "TLS write");
            sigpipe_restore(&g);
            if (wrc != IO_OK)
                return wrc;
            n = rc > 0 ? rc : 0;
        } else {
            n = send(c->fd, data, len, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    int rc = wait_fd(c, POLLOUT, deadline);
                    if (rc != IO_OK)
                        return rc;
                    continue;
                }
                snprintf(c->err, sizeof c->err, "write: %s", strerror(errno));
                return IO_ERROR;
            }
        }
        data += n;
        len -= (size_t)n;
    }
    return IO_OK;
}

static int conn_flush(struct conn *c, long long deadline)
{
    int rc = conn_write(c, c->out, c->out_len, deadline);
    c->out_len = 0;
    return rc;
}

/* Reads more input after what is buffered; IO_OK when some arrived. */
static int conn_fill(struct conn *c, long long deadline)
{
    if (c->in_start > 0) {
        memmove(c->in, c->in + c->in_start, c->in_end - c->in_start);
        c->in_end -= c->in_start;
        c->in_start = 0;
    }
    size_t room = sizeof c->in - c->in_end;
    for (;;) {
        if (c->ssl != NULL) {
            struct sigpipe_guard g;
            sigpipe_block(&g);
            ERR_clear_error();
            errno = 0;
            int rc = SSL_read(c->ssl, c->in + c->in_end, (int)room);
            int wrc = rc > 0 ? IO_OK : ssl_wait(c, rc, deadline, "TLS read");
            sigpipe_restore(&g);
            if (rc > 0) {
                c->in_end += (size_t)rc;
                return IO_OK;
            }
            if (wrc != IO_OK)
                return wrc;
        } else {
            ssize_t n = recv(c->fd, c->in + c->in_end, room, 0);
            if (n > 0) {
                c->in_end += (size_t)n;
                return IO_OK;
            }
            if (n == 0)
                return IO_CLOSED;
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                snprintf(c->err, sizeof c->err, "read: %s", strerror(errno));
                return IO_ERROR;
            }
            int rc = wait_fd(c, POLLIN, deadline);
            if (rc != IO_OK)
                return rc;
        }
    }
}

/* One line without its CR LF into line (cap bytes, NUL-terminated); a longer line is
 * cut and the rest of it dropped. */
static int conn_line(struct conn *c, char *line, size_t cap, long long deadline)
{
    size_t len = 0;
    bool cr_pending = false;
    for (;;) {
        while (c->in_start < c->in_end) {
            char ch = c->in[c->in_start++];
            if (ch == '\n') {
                line[len] = '\0';
                return IO_OK;
            }
            if (cr_pending && len + 1 < cap)
                line[len++] = '\r'; /* a CR inside the line is kept */
            cr_pending = ch == '\r';
            if (!cr_pending && len + 1 < cap)
                line[len++] = ch;
        }
        int rc = conn_fill(c, deadline);
        if (rc != IO_OK)
            return rc;
    }
}

static void conn_close(struct conn *c)
{
    if (c->ssl != NULL) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    c->in_start = c->in_end = 0;
    c->out_len = 0;
}

static int conn_open(struct conn *c, const struct sockaddr *sa, unsigned timeout_ms)
{
    socklen_t len =
        sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    c->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        snprintf(c->err, sizeof c->err, "socket: %s", strerror(errno));
        return IO_ERROR;
    }
    if (connect(c->fd, sa, len) == 0)
        return IO_OK;
    if (errno != EINPROGRESS && errno != EINTR) {
        snprintf(c->err, sizeof c->err, "%s", strerror(errno));
        return IO_ERROR;
    }
    int rc = wait_fd(c, POLLOUT, now_ms() + timeout_ms);
    if (rc == IO_TIMEOUT) {
        snprintf(c->err, sizeof c->err, "timed out");
        return rc;
    }
    if (rc != IO_OK)
        return rc;
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
        soerr = errno;
    if (soerr != 0) {
        snprintf(c->err, sizeof c->err, "%s", strerror(soerr));
        return IO_ERROR;
    }
    return IO_OK;
}

/* --- replies --- */

static bool digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* An RFC 3463 status "c.s.d" (c in 2/4/5, s and d 1-3 digits) at the start of text,
 * followed by a blank or the end; its length, or 0. */
static size_t status_len(const char *t)
{
    if (t[0] != '2' && t[0] != '4' && t[0] != '5')
        return 0;
    if (t[1] != '.')
        return 0;
    size_t i = 2, n = 0;
    while (digit(t[i]) && n < 4)
        i++, n++;
    if (n == 0 || n > 3 || t[i] != '.')
        return 0;
    i++;
    n = 0;
    while (digit(t[i]) && n < 4)
        i++, n++;
    if (n == 0 || n > 3 || (t[i] != '\0' && t[i] != ' '))
        return 0;
    return i;
}

static int read_reply(struct client *cl, long long deadline, struct reply *r)
{
    memset(r, 0, sizeof *r);
    char line[SMTP_CLIENT_REPLY_LINE_MAX];
    char joined[SMTP_CLIENT_REPLY_MAX] = "";
    for (size_t nlines = 0;; nlines++) {
        if (nlines == SMTP_CLIENT_REPLY_LINES_MAX) {
            snprintf(cl->c.err, sizeof cl->c.err, "reply of more than %d lines",
                     SMTP_CLIENT_REPLY_LINES_MAX);
            return IO_PROTOCOL;
        }
        int rc = conn_line(&cl->c, line, sizeof line, deadline);
        if (rc != IO_OK)
            return rc;
        size_t len = strlen(line);
        /* RFC 5321 §4.2: three digits, then '-' on all lines but the last, which has
         * a space or nothing */
        if (len < 3 || line[0] < '2' || line[0] > '5' || !digit(line[1]) || !digit(line[2]) ||
            (len > 3 && line[3] != ' ' && line[3] != '-')) {
            snprintf(cl->c.err, sizeof cl->c.err, "malformed reply line '%.60s'", line);
            return IO_PROTOCOL;
        }
        int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        if (nlines > 0 && code != r->code) {
            snprintf(cl->c.err, sizeof cl->c.err, "reply codes %d and %d in one reply", r->code,
                     code);
            return IO_PROTOCOL;
        }
        r->code = code;
        const char *text = len > 4 ? line + 4 : "";
        size_t tlen = strlen(text);
        if (r->raw_len + tlen + 2 <= sizeof r->raw) {
            memcpy(r->raw + r->raw_len, text, tlen);
            r->raw_len += tlen;
            r->raw[r->raw_len++] = '\n';
            r->raw[r->raw_len] = '\0';
        }
        if (nlines == 0) {
            size_t sl = status_len(text);
            if (sl > 0 && text[0] == line[0] && sl < sizeof r->status) {
                memcpy(r->status, text, sl);
                r->status[sl] = '\0';
            }
        }
        /* each line repeats the status: keep it once, at the front */
        size_t sl = r->status[0] != '\0' ? strlen(r->status) : 0;
        if (sl > 0 && strncmp(text, r->status, sl) == 0 && (text[sl] == ' ' || text[sl] == '\0'))
            text += text[sl] == ' ' ? sl + 1 : sl;
        if (text[0] != '\0') {
            if (joined[0] != '\0')
                append(joined, sizeof joined, " ", 1);
            append(joined, sizeof joined, text, strlen(text));
        }
        if (len <= 3 || line[3] == ' ')
            break;
    }
    snprintf(r->text, sizeof r->text, "%d", r->code);
    if (r->status[0] != '\0') {
        append(r->text, sizeof r->text, " ", 1);
        append(r->text, sizeof r->text, r->status, strlen(r->status));
    }
    if (joined[0] != '\0') {
        append(r->text, sizeof r->text, " ", 1);
        append(r->text, sizeof r->text, joined, strlen(joined)); /* cut when too long */
    }
    return IO_OK;
}

/* --- outcomes --- */

static void rcpt_set(struct client *cl, struct smtp_client_rcpt *r, enum smtp_client_class cls,
                     const char *status, const char *text)
{
    r->cls = cls;
    copy_str(r->status, sizeof r->status, status);
    copy_str(r->reply, sizeof r->reply, text);
    copy_str(r->remote, sizeof r->remote, cl->remote);
}

static enum smtp_client_class class_of(int code)
{
    return code >= 500 && code < 600 ? SMTP_CLIENT_PERM : SMTP_CLIENT_TEMP;
}

/* The reply's status, or one by its class. */
static const char *status_of(const struct reply *rep, char *buf, size_t cap)
{
    if (rep->status[0] != '\0')
        return rep->status;
    int c = rep->code / 100;
    snprintf(buf, cap, "%d.0.0", c == 2 || c == 5 ? c : 4);
    return buf;
}

/* A reply that settles one recipient (RCPT refused). */
static void rcpt_reply(struct client *cl, struct smtp_client_rcpt *r, const struct reply *rep)
{
    char sbuf[SMTP_CLIENT_STATUS_MAX];
    rcpt_set(cl, r, class_of(rep->code), status_of(rep, sbuf, sizeof sbuf), rep->text);
}

/* Settles every pending recipient. */
static void settle_pending(struct client *cl, enum smtp_client_class cls, const char *status,
                           const char *text)
{
    for (size_t i = 0; i < cl->n; i++)
        if (cl->rcpts[i].cls == SMTP_CLIENT_PENDING)
            rcpt_set(cl, &cl->rcpts[i], cls, status, text);
}

/* The attempt as a whole ends: failure recorded, every pending recipient settled. */
static void session_fail(struct client *cl, enum smtp_client_failure f, enum smtp_client_class cls,
                         const char *status, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void session_fail(struct client *cl, enum smtp_client_failure f, enum smtp_client_class cls,
                         const char *status, const char *fmt, ...)
{
    char text[SMTP_CLIENT_REPLY_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    cl->res->failure = f;
    copy_str(cl->res->status, sizeof cl->res->status, status);
    copy_str(cl->res->reply, sizeof cl->res->reply, text);
    settle_pending(cl, cls, status, text);
}

/* A server reply that ends the attempt for everyone pending. */
static void session_fail_reply(struct client *cl, enum smtp_client_failure f,
                               const struct reply *rep)
{
    char sbuf[SMTP_CLIENT_STATUS_MAX];
    session_fail(cl, f, class_of(rep->code), status_of(rep, sbuf, sizeof sbuf), "%s", rep->text);
}

/* An I/O result other than IO_OK ends the attempt: temporary for everyone pending. */
static void io_fail(struct client *cl, int rc, const char *when)
{
    switch (rc) {
    case IO_TIMEOUT:
        session_fail(cl, SMTP_CLIENT_FAIL_NETWORK, SMTP_CLIENT_TEMP, "4.4.2", "timeout %s (%s)",
                     when, cl->remote);
        break;
    case IO_CLOSED:
        session_fail(cl, SMTP_CLIENT_FAIL_NETWORK, SMTP_CLIENT_TEMP, "4.4.2",
                     "connection closed by %s %s", cl->remote, when);
        break;
    case IO_PROTOCOL:
        session_fail(cl, SMTP_CLIENT_FAIL_PROTOCOL, SMTP_CLIENT_TEMP, "4.5.0",
                     "protocol error %s (%s): %s", when, cl->remote, cl->c.err);
        break;
    default:
        session_fail(cl, SMTP_CLIENT_FAIL_NETWORK, SMTP_CLIENT_TEMP, "4.4.2", "%s %s: %s",
                     cl->remote, when, cl->c.err);
        break;
    }
}

/* --- commands --- */

/* Sends a command line (CRLF added) and reads its reply; IO_OK or an I/O result
 * (the session is then already failed with `when`). */
static int command(struct client *cl, struct reply *rep, const char *when, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int command(struct client *cl, struct reply *rep, const char *when, const char *fmt, ...)
{
    char line[CMD_MAX + 2];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(line, CMD_MAX, fmt, ap);
    va_end(ap);
    if (len < 0 || len >= CMD_MAX) {
        snprintf(cl->c.err, sizeof cl->c.err, "command too long");
        io_fail(cl, IO_ERROR, when);
        return IO_ERROR;
    }
    memcpy(line + len, "\r\n", 2);
    long long deadline = now_ms() + cl->command_ms;
    int rc = conn_write(&cl->c, line, (size_t)len + 2, deadline);
    if (rc == IO_OK)
        rc = read_reply(cl, deadline, rep);
    if (rc != IO_OK)
        io_fail(cl, rc, when);
    return rc;
}

/* A polite end: QUIT and a short wait for its reply, whose content does not matter. */
static void quit(struct client *cl)
{
    if (cl->c.fd < 0)
        return;
    long long deadline =
        now_ms() + (cl->command_ms < QUIT_TIMEOUT_MS ? cl->command_ms : QUIT_TIMEOUT_MS);
    struct reply rep;
    if (conn_write(&cl->c, "QUIT\r\n", 6, deadline) == IO_OK)
        (void)read_reply(cl, deadline, &rep);
}

/* EHLO keywords (RFC 5321 §4.1.1.1: the lines after the first). */
static void parse_ehlo(struct client *cl, const struct reply *rep)
{
    cl->ext = 0;
    cl->size_max = 0;
    const char *line = strchr(rep->raw, '\n');
    while (line != NULL && line[1] != '\0') {
        line++;
        const char *end = strchr(line, '\n');
        size_t len = (size_t)(end - line);
        char kw[32];
        size_t k = 0;
        while (k < len && k + 1 < sizeof kw && line[k] != ' ' && line[k] != '=') {
            kw[k] = line[k];
            k++;
        }
        kw[k] = '\0';
        const char *args = line + k;
        size_t alen = len - k;
        if (strcasecmp(kw, "STARTTLS") == 0) {
            cl->ext |= EXT_STARTTLS;
        } else if (strcasecmp(kw, "SIZE") == 0) {
            cl->ext |= EXT_SIZE;
            /* RFC 1870 §4: an optional limit; 0 or none means no fixed limit */
            char num[24] = "";
            size_t i = 0;
            while (i < alen && args[i] == ' ')
                i++;
            size_t j = 0;
            while (i < alen && digit(args[i]) && j + 1 < sizeof num)
                num[j++] = args[i++];
            num[j] = '\0';
            cl->size_max = j > 0 && j < 20 ? strtoull(num, NULL, 10) : 0;
        } else if (strcasecmp(kw, "8BITMIME") == 0) {
            cl->ext |= EXT_8BITMIME;
        } else if (strcasecmp(kw, "SMTPUTF8") == 0) {
            cl->ext |= EXT_SMTPUTF8;
        } else if (strcasecmp(kw, "DSN") == 0) {
            cl->ext |= EXT_DSN;
        } else if (strcasecmp(kw, "AUTH") == 0) {
            /* "AUTH PLAIN LOGIN", or the pre-standard "AUTH=PLAIN LOGIN" */
            cl->ext |= EXT_AUTH;
            size_t i = 0;
            while (i < alen) {
                while (i < alen && (args[i] == ' ' || args[i] == '='))
                    i++;
                size_t s = i;
                while (i < alen && args[i] != ' ')
                    i++;
                if (i - s == 5 && strncasecmp(args + s, "PLAIN", 5) == 0)
                    cl->ext |= EXT_AUTH_PLAIN;
                if (i - s == 5 && strncasecmp(args + s, "LOGIN", 5) == 0)
                    cl->ext |= EXT_AUTH_LOGIN;
            }
        }
        line = end;
    }
}

/* EHLO, or HELO when EHLO is refused with 5xx (RFC 5321 §3.2). IO_OK when the
 * session may go on. */
static int hello(struct client *cl)
{
    struct reply rep;
    int rc = command(cl, &rep, "after EHLO", "EHLO %s", cl->p->helo);
    if (rc != IO_OK)
        return rc;
    if (rep.code / 100 == 2) {
        parse_ehlo(cl, &rep);
        return IO_OK;
    }
    if (rep.code / 100 == 5) {
        cl->ext = 0;
        rc = command(cl, &rep, "after HELO", "HELO %s", cl->p->helo);
        if (rc != IO_OK)
            return rc;
        if (rep.code / 100 == 2)
            return IO_OK;
    }
    session_fail(cl, SMTP_CLIENT_FAIL_SESSION, SMTP_CLIENT_TEMP, "4.4.0",
                 "%s refused the session: %s", cl->remote, rep.text);
    if (rep.code != 421)
        quit(cl);
    return IO_ERROR;
}

/* --- TLS --- */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Checks the leaf against every pin that is set; 0 ok, -1 with why. */
static int check_pins(const struct smtp_client_params *p, X509 *leaf, char *why, size_t cap)
{
    if (p->pin_fingerprint != NULL) {
        unsigned char want[32], got[EVP_MAX_MD_SIZE];
        size_t n = 0;
        for (const char *s = p->pin_fingerprint; *s != '\0'; s++) {
            if (*s == ':' || *s == ' ')
                continue;
            int hi = hexval(s[0]), lo = s[1] != '\0' ? hexval(s[1]) : -1;
            if (hi < 0 || lo < 0 || n == sizeof want) {
                snprintf(why, cap, "the configured fingerprint is not a SHA-256 in hex");
                return -1;
            }
            want[n++] = (unsigned char)(hi << 4 | lo);
            s++;
        }
        unsigned glen = 0;
        if (n != sizeof want) {
            snprintf(why, cap, "the configured fingerprint is not a SHA-256 in hex");
            return -1;
        }
        if (X509_digest(leaf, EVP_sha256(), got, &glen) != 1 || glen != sizeof want ||
            memcmp(got, want, sizeof want) != 0) {
            snprintf(why, cap, "certificate fingerprint does not match the pin");
            return -1;
        }
    }
    if (p->pin_subject != NULL) {
        X509_NAME *name = X509_get_subject_name(leaf);
        bool found = false;
        for (int i = -1;
             !found && (i = X509_NAME_get_index_by_NID(name, NID_commonName, i)) >= 0;) {
            ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
            unsigned char *utf8 = NULL;
            int len = ASN1_STRING_to_UTF8(&utf8, d);
            if (len >= 0) {
                char cn[256];
                snprintf(cn, sizeof cn, "%.*s", len, (const char *)utf8);
                found = (size_t)len < sizeof cn && strlen(cn) == (size_t)len &&
                        strcasestr(cn, p->pin_subject) != NULL;
            }
            OPENSSL_free(utf8);
        }
        if (!found) {
            snprintf(why, cap, "certificate subject CN does not contain '%.64s'", p->pin_subject);
            return -1;
        }
    }
    if (p->pin_issuer != NULL) {
        char dn[512] = "";
        BIO *b = BIO_new(BIO_s_mem());
        if (b != NULL && X509_NAME_print_ex(b, X509_get_issuer_name(leaf), 0,
                                            XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
            int n = BIO_read(b, dn, (int)sizeof dn - 1);
            dn[n > 0 ? n : 0] = '\0';
        }
        BIO_free(b);
        if (strcasestr(dn, p->pin_issuer) == NULL) {
            snprintf(why, cap, "certificate issuer '%.128s' does not contain '%.64s'", dn,
                     p->pin_issuer);
            return -1;
        }
    }
    return 0;
}

static bool pinned(const struct smtp_client_params *p)
{
    return p->pin_subject != NULL || p->pin_issuer != NULL || p->pin_fingerprint != NULL;
}

static int ctx_make(struct client *cl, char *why, size_t cap)
{
    if (cl->ctx != NULL)
        return 0;
    cl->ctx = SSL_CTX_new(TLS_client_method());
    if (cl->ctx == NULL) {
        snprintf(why, cap, "cannot create a TLS context");
        return -1;
    }
    SSL_CTX_set_min_proto_version(cl->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(cl->ctx, SSL_VERIFY_NONE, NULL); /* checked after the handshake */
    const struct smtp_client_params *p = cl->p;
    if (p->tls == SMTP_CLIENT_TLS_REQUIRED && p->tls_verify && !pinned(p)) {
        int ok = p->tls_ca_file != NULL
                     ? SSL_CTX_load_verify_locations(cl->ctx, p->tls_ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(cl->ctx);
        if (ok != 1) {
            snprintf(why, cap, "cannot load the trusted certificates%s%.128s",
                     p->tls_ca_file ? " from " : "", p->tls_ca_file ? p->tls_ca_file : "");
            ERR_clear_error();
            return -1;
        }
    }
    return 0;
}

/* The handshake on the connected socket. 0 ok; -1 with why (handshake failure), -2
 * with why (the certificate failed the checks). */
static int tls_handshake(struct client *cl, char *why, size_t cap)
{
    const struct smtp_client_params *p = cl->p;
    if (ctx_make(cl, why, cap) < 0)
        return -1;
    cl->c.ssl = SSL_new(cl->ctx);
    if (cl->c.ssl == NULL || SSL_set_fd(cl->c.ssl, cl->c.fd) != 1) {
        snprintf(why, cap, "cannot create a TLS session");
        return -1;
    }
    bool named = p->host != NULL && p->host[0] != '\0' && !is_ip_literal(p->host);
    if (named) {
        /* RFC 6066 §3: SNI carries names only. A copy: OpenSSL's macro casts to a
         * non-const pointer. */
        char sni[256];
        snprintf(sni, sizeof sni, "%s", p->host);
        SSL_set_tlsext_host_name(cl->c.ssl, sni);
    }
    bool chain = p->tls == SMTP_CLIENT_TLS_REQUIRED && p->tls_verify && !pinned(p);
    if (chain) {
        int ok;
        if (named) {
            ok = SSL_set1_host(cl->c.ssl, p->host);
        } else {
            X509_VERIFY_PARAM *vp = SSL_get0_param(cl->c.ssl);
            const struct sockaddr *sa = p->addr;
            ok =
                sa->sa_family == AF_INET
                    ? X509_VERIFY_PARAM_set1_ip(
                          vp, (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr, 4)
                    : X509_VERIFY_PARAM_set1_ip(
                          vp, (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr,
                          16);
        }
        if (ok != 1) {
            snprintf(why, cap, "cannot set the name to verify");
            return -1;
        }
    }
    long long deadline = now_ms() + cl->command_ms;
    for (;;) {
        struct sigpipe_guard g;
        sigpipe_block(&g);
        ERR_clear_error();
        errno = 0;
        int rc = SSL_connect(cl->c.ssl);
        int wrc = rc == 1 ? IO_OK : ssl_wait(&cl->c, rc, deadline, "TLS handshake");
        sigpipe_restore(&g);
        if (rc == 1)
            break;
        if (wrc != IO_OK) {
            snprintf(why, cap, "%s",
                     wrc == IO_TIMEOUT  ? "TLS handshake timed out"
                     : wrc == IO_CLOSED ? "connection closed during the TLS handshake"
                                        : cl->c.err);
            return -1;
        }
    }

    X509 *leaf = SSL_get1_peer_certificate(cl->c.ssl);
    int verdict = 0;
    if (p->tls == SMTP_CLIENT_TLS_REQUIRED && (pinned(p) || p->tls_verify)) {
        if (leaf == NULL) {
            snprintf(why, cap, "no server certificate");
            verdict = -2;
        } else if (pinned(p)) {
            verdict = check_pins(p, leaf, why, cap) < 0 ? -2 : 0;
        } else {
            long vr = SSL_get_verify_result(cl->c.ssl);
            if (vr != X509_V_OK) {
                snprintf(why, cap, "certificate verification failed: %s",
                         X509_verify_cert_error_string(vr));
                verdict = -2;
            }
        }
        cl->res->tls_verified = verdict == 0;
    }
    X509_free(leaf);
    if (verdict == 0) {
        cl->res->tls = true;
        copy_str(cl->res->tls_version, sizeof cl->res->tls_version, SSL_get_version(cl->c.ssl));
        copy_str(cl->res->tls_cipher, sizeof cl->res->tls_cipher,
                 SSL_CIPHER_get_name(SSL_get_current_cipher(cl->c.ssl)));
    }
    return verdict;
}

enum step { STEP_GO_ON, STEP_DONE, STEP_RETRY_PLAIN };

/* STARTTLS per the policy (RFC 3207). */
static enum step starttls(struct client *cl, bool allowed)
{
    const struct smtp_client_params *p = cl->p;
    bool required = p->tls == SMTP_CLIENT_TLS_REQUIRED;
    if (p->tls == SMTP_CLIENT_TLS_NONE || !allowed)
        return STEP_GO_ON;
    if (!(cl->ext & EXT_STARTTLS)) {
        if (!required)
            return STEP_GO_ON;
        session_fail(cl, SMTP_CLIENT_FAIL_TLS, SMTP_CLIENT_TEMP, "4.7.4",
                     "TLS is required, but %s does not offer STARTTLS", cl->remote);
        quit(cl);
        return STEP_DONE;
    }
    struct reply rep;
    if (command(cl, &rep, "after STARTTLS", "STARTTLS") != IO_OK)
        return STEP_DONE;
    if (rep.code == 421) {
        session_fail_reply(cl, SMTP_CLIENT_FAIL_SESSION, &rep);
        return STEP_DONE;
    }
    if (rep.code != 220) {
        if (!required)
            return STEP_GO_ON; /* the session goes on in the clear */
        session_fail(cl, SMTP_CLIENT_FAIL_TLS, SMTP_CLIENT_TEMP, "4.7.4",
                     "TLS is required, but %s refused STARTTLS: %s", cl->remote, rep.text);
        if (rep.code != 421)
            quit(cl);
        return STEP_DONE;
    }
    /* RFC 3207 §4.2 / CVE-2011-0411: bytes sent before the handshake would be taken
     * as answers inside TLS. */
    char why[256];
    int rc;
    if (cl->c.in_end > cl->c.in_start) {
        snprintf(why, sizeof why, "plaintext after the reply to STARTTLS");
        rc = -1;
    } else {
        rc = tls_handshake(cl, why, sizeof why);
    }
    if (rc == -1 && !required) {
        cl->res->tls_fallback = true;
        return STEP_RETRY_PLAIN;
    }
    if (rc < 0) {
        session_fail(cl, SMTP_CLIENT_FAIL_TLS, SMTP_CLIENT_TEMP, "4.7.5", "TLS with %s failed: %s",
                     cl->remote, why);
        return STEP_DONE; /* nothing more to a server we could not check */
    }
    if (hello(cl) != IO_OK)
        return STEP_DONE;
    return STEP_GO_ON;
}

/* --- AUTH (RFC 4954) --- */

static int b64(const char *in, size_t len, char *out, size_t cap)
{
    if (4 * ((len + 2) / 3) + 1 > cap)
        return -1;
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in, (int)len);
    return 0;
}

static bool authenticate(struct client *cl)
{
    const struct smtp_client_params *p = cl->p;
    if (p->auth_user == NULL)
        return true;
    if (!cl->res->tls) {
        session_fail(cl, SMTP_CLIENT_FAIL_AUTH, SMTP_CLIENT_TEMP, "4.7.0",
                     "credentials are sent only over TLS, and the session with %s is not "
                     "encrypted",
                     cl->remote);
        quit(cl);
        return false;
    }
    if (!(cl->ext & (EXT_AUTH_PLAIN | EXT_AUTH_LOGIN))) {
        session_fail(cl, SMTP_CLIENT_FAIL_AUTH, SMTP_CLIENT_TEMP, "4.7.0",
                     "%s offers no AUTH mechanism we use (PLAIN, LOGIN)", cl->remote);
        quit(cl);
        return false;
    }
    size_t ulen = strlen(p->auth_user), plen = strlen(p->auth_password);
    char buf[SMTP_CLIENT_ADDRESS_MAX * 2 + 4], enc[CMD_MAX - 64];
    struct reply rep;
    int rc;
    if (ulen > SMTP_CLIENT_ADDRESS_MAX || plen > SMTP_CLIENT_ADDRESS_MAX) {
        session_fail(cl, SMTP_CLIENT_FAIL_AUTH, SMTP_CLIENT_TEMP, "4.7.0", "credentials too long");
        quit(cl);
        return false;
    }
    if (cl->ext & EXT_AUTH_PLAIN) {
        /* RFC 4616: authzid NUL authcid NUL passwd, with an empty authzid */
        buf[0] = '\0';
        memcpy(buf + 1, p->auth_user, ulen);
        buf[1 + ulen] = '\0';
        memcpy(buf + 2 + ulen, p->auth_password, plen);
        if (b64(buf, 2 + ulen + plen, enc, sizeof enc) < 0)
            return false;
        explicit_bzero(buf, sizeof buf);
        rc = command(cl, &rep, "after AUTH", "AUTH PLAIN %s", enc);
    } else {
        rc = command(cl, &rep, "after AUTH", "AUTH LOGIN");
        if (rc == IO_OK && rep.code == 334 && b64(p->auth_user, ulen, enc, sizeof enc) == 0)
            rc = command(cl, &rep, "after AUTH", "%s", enc);
        if (rc == IO_OK && rep.code == 334 && b64(p->auth_password, plen, enc, sizeof enc) == 0)
            rc = command(cl, &rep, "after AUTH", "%s", enc);
    }
    explicit_bzero(enc, sizeof enc);
    if (rc != IO_OK)
        return false;
    if (rep.code != 235) {
        if (rep.code == 334) {
            /* an exchange we cannot finish: cancel it (RFC 4954 §4); its answer is
             * a 501 that changes nothing */
            struct reply ignored;
            long long deadline = now_ms() + cl->command_ms;
            if (conn_write(&cl->c, "*\r\n", 3, deadline) == IO_OK)
                (void)read_reply(cl, deadline, &ignored);
        }
        char sbuf[SMTP_CLIENT_STATUS_MAX];
        session_fail(cl, SMTP_CLIENT_FAIL_AUTH, SMTP_CLIENT_TEMP,
                     status_of(&rep, sbuf, sizeof sbuf), "authentication with %s failed: %s",
                     cl->remote, rep.text);
        if (cl->c.fd >= 0 && rep.code != 421)
            quit(cl);
        return false;
    }
    cl->res->authenticated = true;
    return true;
}

/* --- the message --- */

/* Buffers len bytes (at most READ_CHUNK, less than the buffer), writing the buffer
 * out first when they do not fit. */
static int put(struct client *cl, const char *s, size_t len)
{
    if (cl->c.out_len + len > sizeof cl->c.out) {
        /* RFC 5321 §4.5.3.2.5: a timeout per block of data written */
        int rc = conn_flush(&cl->c, now_ms() + cl->command_ms);
        if (rc != IO_OK)
            return rc;
    }
    memcpy(cl->c.out + cl->c.out_len, s, len);
    cl->c.out_len += len;
    return IO_OK;
}

/* Streams the message with CRLF line ends and dot-stuffing, then CRLF "." CRLF.
 * IO_OK, an I/O result, or 1 when the read callback failed. */
static int send_message(struct client *cl)
{
    char buf[READ_CHUNK];
    bool bol = true;       /* at the beginning of a line */
    bool after_cr = false; /* the last byte was a CR (already sent as CRLF) */
    for (;;) {
        ssize_t n = cl->p->read(cl->p->read_ctx, buf, sizeof buf);
        if (n < 0)
            return 1;
        if (n == 0)
            break;
        if ((size_t)n > sizeof buf)
            return 1;
        size_t start = 0; /* run of ordinary bytes copied as one */
        for (size_t i = 0; i < (size_t)n; i++) {
            char ch = buf[i];
            bool special = ch == '\r' || ch == '\n' || (bol && ch == '.');
            if (!special) {
                bol = false;
                after_cr = false;
                continue;
            }
            int rc = put(cl, buf + start, i - start);
            if (rc != IO_OK)
                return rc;
            start = i + 1;
            if (ch == '.') {
                rc = put(cl, "..", 2);
                bol = false;
                after_cr = false;
            } else if (ch == '\n' && after_cr) {
                after_cr = false; /* the LF of a CRLF already sent */
            } else {
                rc = put(cl, "\r\n", 2);
                bol = true;
                after_cr = ch == '\r';
            }
            if (rc != IO_OK)
                return rc;
        }
        int rc = put(cl, buf + start, (size_t)n - start);
        if (rc != IO_OK)
            return rc;
    }
    int rc = IO_OK;
    if (!bol)
        rc = put(cl, "\r\n", 2);
    if (rc == IO_OK)
        rc = put(cl, ".\r\n", 3);
    if (rc == IO_OK)
        rc = conn_flush(&cl->c, now_ms() + cl->command_ms);
    return rc;
}

/* --- the transaction --- */

static void mail_params(struct client *cl, char *out, size_t cap)
{
    const struct smtp_client_params *p = cl->p;
    out[0] = '\0';
    char tmp[SMTP_CLIENT_ENVID_MAX * 3 + 16];
    if ((cl->ext & EXT_SIZE) && p->size > 0) {
        snprintf(tmp, sizeof tmp, " SIZE=%llu", (unsigned long long)p->size);
        append(out, cap, tmp, strlen(tmp));
    }
    if ((cl->ext & EXT_8BITMIME) && p->body != SMTP_CLIENT_BODY_NONE) {
        const char *b = p->body == SMTP_CLIENT_BODY_8BITMIME ? " BODY=8BITMIME" : " BODY=7BIT";
        append(out, cap, b, strlen(b));
    }
    if (cl->need_utf8) /* checked to be offered before */
        append(out, cap, " SMTPUTF8", 9);
    if (cl->ext & EXT_DSN) {
        if (p->ret != SMTP_CLIENT_RET_NONE) {
            const char *r = p->ret == SMTP_CLIENT_RET_FULL ? " RET=FULL" : " RET=HDRS";
            append(out, cap, r, strlen(r));
        }
        if (p->envid != NULL && p->envid[0] != '\0' && strlen(p->envid) <= SMTP_CLIENT_ENVID_MAX) {
            char enc[SMTP_CLIENT_ENVID_MAX * 3 + 1];
            xtext(p->envid, enc, sizeof enc);
            snprintf(tmp, sizeof tmp, " ENVID=%s", enc);
            append(out, cap, tmp, strlen(tmp));
        }
    }
}

static void rcpt_params(struct client *cl, const struct smtp_client_rcpt *r, char *out, size_t cap)
{
    out[0] = '\0';
    if (!(cl->ext & EXT_DSN))
        return;
    unsigned nt = r->notify;
    if (nt & SMTP_CLIENT_NOTIFY_NEVER) {
        append(out, cap, " NOTIFY=NEVER", 13);
    } else if (nt != 0) {
        char v[64] = "";
        static const struct {
            unsigned bit;
            const char *name;
        } names[] = {{SMTP_CLIENT_NOTIFY_SUCCESS, "SUCCESS"},
                     {SMTP_CLIENT_NOTIFY_FAILURE, "FAILURE"},
                     {SMTP_CLIENT_NOTIFY_DELAY, "DELAY"}};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            if (!(nt & names[i].bit))
                continue;
            if (v[0] != '\0')
                append(v, sizeof v, ",", 1);
            append(v, sizeof v, names[i].name, strlen(names[i].name));
        }
        if (v[0] != '\0') {
            append(out, cap, " NOTIFY=", 8);
            append(out, cap, v, strlen(v));
        }
    }
    const char *o = r->orcpt;
    if (o != NULL && o[0] != '\0' && strlen(o) <= SMTP_CLIENT_ORCPT_MAX) {
        char enc[SMTP_CLIENT_ORCPT_MAX * 7 + 1];
        if (is_ascii(o)) {
            xtext(o, enc, sizeof enc);
            append(out, cap, " ORCPT=rfc822;", 14);
            append(out, cap, enc, strlen(enc));
        } else if (cl->need_utf8) {
            unitext(o, enc, sizeof enc);
            append(out, cap, " ORCPT=utf-8;", 13);
            append(out, cap, enc, strlen(enc));
        }
    }
}

/* From MAIL to the reply after the data. */
static void transaction(struct client *cl)
{
    const struct smtp_client_params *p = cl->p;
    struct reply rep;
    char params[CMD_MAX / 2];
    char sbuf[SMTP_CLIENT_STATUS_MAX];

    mail_params(cl, params, sizeof params);
    if (command(cl, &rep, "after MAIL FROM", "MAIL FROM:<%s>%s", p->sender, params) != IO_OK)
        return;
    if (rep.code / 100 != 2) {
        session_fail_reply(cl, rep.code == 421 ? SMTP_CLIENT_FAIL_SESSION : SMTP_CLIENT_OK, &rep);
        if (rep.code != 421)
            quit(cl);
        return;
    }

    size_t accepted = 0;
    for (size_t i = 0; i < cl->n; i++) {
        struct smtp_client_rcpt *r = &cl->rcpts[i];
        if (r->cls != SMTP_CLIENT_PENDING)
            continue; /* refused before (bad address) */
        rcpt_params(cl, r, params, sizeof params);
        if (command(cl, &rep, "after RCPT TO", "RCPT TO:<%s>%s", r->addr, params) != IO_OK)
            return;
        if (rep.code / 100 == 2) {
            accepted++;
            continue;
        }
        if (rep.code == 421) {
            session_fail_reply(cl, SMTP_CLIENT_FAIL_SESSION, &rep);
            return;
        }
        rcpt_reply(cl, r, &rep);
    }
    if (accepted == 0) {
        quit(cl);
        return;
    }

    if (command(cl, &rep, "after DATA", "DATA") != IO_OK)
        return;
    if (rep.code != 354) {
        session_fail_reply(cl, rep.code == 421 ? SMTP_CLIENT_FAIL_SESSION : SMTP_CLIENT_OK, &rep);
        if (rep.code / 100 == 2 || rep.code / 100 == 3) {
            /* not 354 but not a refusal either: no way to tell what the server
             * expects next, so nothing more is sent */
            return;
        }
        if (rep.code != 421)
            quit(cl);
        return;
    }
    int rc = send_message(cl);
    if (rc == 1) {
        /* Without the final dot the server discards the message (RFC 5321 §4.1.1.4);
         * closing the connection is the only way to stop in the middle of data. */
        session_fail(cl, SMTP_CLIENT_FAIL_LOCAL, SMTP_CLIENT_TEMP, "4.3.0",
                     "reading the message failed");
        return;
    }
    if (rc != IO_OK) {
        io_fail(cl, rc, "while sending the message");
        return;
    }
    rc = read_reply(cl, now_ms() + cl->data_ms, &rep);
    if (rc != IO_OK) {
        io_fail(cl, rc, "after the end of data");
        return;
    }
    if (rep.code / 100 == 2)
        settle_pending(cl, SMTP_CLIENT_DELIVERED, status_of(&rep, sbuf, sizeof sbuf), rep.text);
    else
        session_fail_reply(cl, rep.code == 421 ? SMTP_CLIENT_FAIL_SESSION : SMTP_CLIENT_OK, &rep);
    if (rep.code != 421)
        quit(cl);
}

/* One connection: returns STEP_RETRY_PLAIN when an opportunistic handshake failed. */
static enum step attempt(struct client *cl, bool starttls_allowed)
{
    cl->res->connections++;
    cl->ext = 0;
    int rc = conn_open(&cl->c, cl->p->addr, cl->connect_ms);
    if (rc != IO_OK) {
        session_fail(cl, SMTP_CLIENT_FAIL_CONNECT, SMTP_CLIENT_TEMP, "4.4.1", "connect to %s: %s",
                     cl->remote, cl->c.err);
        return STEP_DONE;
    }
    struct reply rep;
    rc = read_reply(cl, now_ms() + cl->command_ms, &rep);
    if (rc != IO_OK) {
        io_fail(cl, rc, "waiting for the greeting");
        return STEP_DONE;
    }
    if (rep.code / 100 != 2) {
        /* a 554 greeting refuses this host's service, not the message: another MX
         * may take it (RFC 5321 §3.1), so the outcome is temporary */
        session_fail(cl, SMTP_CLIENT_FAIL_SESSION, SMTP_CLIENT_TEMP, "4.4.0",
                     "%s refused the session: %s", cl->remote, rep.text);
        if (rep.code != 421)
            quit(cl);
        return STEP_DONE;
    }
    if (hello(cl) != IO_OK)
        return STEP_DONE;
    enum step st = starttls(cl, starttls_allowed);
    if (st != STEP_GO_ON)
        return st;
    if (!authenticate(cl))
        return STEP_DONE;

    /* RFC 6531 §3.4: no SMTPUTF8, no delivery of a message that needs it. */
    if (cl->need_utf8 && !(cl->ext & EXT_SMTPUTF8)) {
        session_fail(cl, SMTP_CLIENT_FAIL_UNSUPPORTED, SMTP_CLIENT_PERM, "5.6.7",
                     "the message needs SMTPUTF8, which %s does not offer", cl->remote);
        quit(cl);
        return STEP_DONE;
    }
    /* RFC 1870 §6: a declared limit below the message size refuses it anyway. */
    if ((cl->ext & EXT_SIZE) && cl->size_max > 0 && cl->p->size > cl->size_max) {
        session_fail(cl, SMTP_CLIENT_FAIL_UNSUPPORTED, SMTP_CLIENT_PERM, "5.3.4",
                     "message of %llu bytes exceeds the limit of %s (%llu bytes)",
                     (unsigned long long)cl->p->size, cl->remote, (unsigned long long)cl->size_max);
        quit(cl);
        return STEP_DONE;
    }
    transaction(cl);
    return STEP_DONE;
}

static bool params_ok(const struct smtp_client_params *p, const struct smtp_client_rcpt *rcpts,
                      size_t n, const char **why)
{
    *why = NULL;
    if (p == NULL)
        *why = "no parameters";
    else if (p->addr == NULL || (p->addr->sa_family != AF_INET && p->addr->sa_family != AF_INET6))
        *why = "no IPv4 or IPv6 server address";
    else if (p->helo == NULL || p->helo[0] == '\0' || !address_ok(p->helo) ||
             strchr(p->helo, ' ') != NULL)
        *why = "no usable HELO name";
    else if (p->sender == NULL)
        *why = "no sender";
    else if (p->read == NULL)
        *why = "no read callback";
    else if (rcpts == NULL || n == 0)
        *why = "no recipients";
    else if (n > SMTP_CLIENT_MAX_RCPTS)
        *why = "too many recipients";
    else if ((p->auth_user == NULL) != (p->auth_password == NULL))
        *why = "AUTH needs both a user and a password";
    else if (p->tls != SMTP_CLIENT_TLS_NONE && p->tls != SMTP_CLIENT_TLS_OPPORTUNISTIC &&
             p->tls != SMTP_CLIENT_TLS_REQUIRED)
        *why = "unknown TLS policy";
    for (size_t i = 0; *why == NULL && i < n; i++)
        if (rcpts[i].addr == NULL)
            *why = "a recipient without an address";
    return *why == NULL;
}

int smtp_client_deliver(const struct smtp_client_params *p, struct smtp_client_rcpt *rcpts,
                        size_t n, struct smtp_client_result *result_r)
{
    memset(result_r, 0, sizeof *result_r);
    const char *why;
    if (!params_ok(p, rcpts, n, &why)) {
        result_r->failure = SMTP_CLIENT_FAIL_LOCAL;
        copy_str(result_r->reply, sizeof result_r->reply, why);
        return -1;
    }

    struct client *cl = calloc(1, sizeof *cl);
    if (cl == NULL) {
        result_r->failure = SMTP_CLIENT_FAIL_LOCAL;
        copy_str(result_r->reply, sizeof result_r->reply, "out of memory");
        return -1;
    }
    cl->p = p;
    cl->rcpts = rcpts;
    cl->n = n;
    cl->res = result_r;
    cl->c.fd = -1;
    cl->connect_ms = p->connect_timeout_ms ? p->connect_timeout_ms : SMTP_CLIENT_CONNECT_TIMEOUT_MS;
    cl->command_ms = p->command_timeout_ms ? p->command_timeout_ms : SMTP_CLIENT_COMMAND_TIMEOUT_MS;
    cl->data_ms = p->data_timeout_ms ? p->data_timeout_ms : SMTP_CLIENT_DATA_TIMEOUT_MS;
    format_remote(cl);
    copy_str(result_r->remote, sizeof result_r->remote, cl->remote);

    for (size_t i = 0; i < n; i++) {
        struct smtp_client_rcpt *r = &rcpts[i];
        r->cls = SMTP_CLIENT_PENDING;
        r->status[0] = r->reply[0] = r->remote[0] = '\0';
    }
    cl->need_utf8 = p->smtputf8 || !is_ascii(p->sender);
    if (!address_ok(p->sender)) {
        session_fail(cl, SMTP_CLIENT_OK, SMTP_CLIENT_PERM, "5.1.7",
                     "the sender address cannot be sent");
    } else {
        size_t usable = 0;
        for (size_t i = 0; i < n; i++) {
            if (!address_ok(rcpts[i].addr) || rcpts[i].addr[0] == '\0') {
                rcpt_set(cl, &rcpts[i], SMTP_CLIENT_PERM, "5.1.3",
                         "the recipient address cannot be sent");
                continue;
            }
            usable++;
            if (!is_ascii(rcpts[i].addr))
                cl->need_utf8 = true;
        }
        if (usable > 0) {
            if (attempt(cl, true) == STEP_RETRY_PLAIN) {
                conn_close(&cl->c);
                attempt(cl, false);
            }
        }
    }
    /* Nothing may stay pending: a session that ended without a word on some
     * recipients (a server that went quiet in an unexpected way) leaves them TEMP. */
    settle_pending(cl, SMTP_CLIENT_TEMP, "4.4.2", "the session ended without an answer");
    for (size_t i = 0; i < n; i++) {
        if (rcpts[i].cls == SMTP_CLIENT_DELIVERED)
            result_r->delivered++;
        else if (rcpts[i].cls == SMTP_CLIENT_PERM)
            result_r->perm++;
        else
            result_r->temp++;
    }

    conn_close(&cl->c);
    SSL_CTX_free(cl->ctx);
    free(cl);
    return 0;
}

const char *smtp_client_class_str(enum smtp_client_class c)
{
    switch (c) {
    case SMTP_CLIENT_PENDING:
        return "pending";
    case SMTP_CLIENT_DELIVERED:
        return "delivered";
    case SMTP_CLIENT_TEMP:
        return "temporary";
    case SMTP_CLIENT_PERM:
        return "permanent";
    }
    return "unknown";
}

const char *smtp_client_failure_str(enum smtp_client_failure f)
{
    switch (f) {
    case SMTP_CLIENT_OK:
        return "ok";
    case SMTP_CLIENT_FAIL_CONNECT:
        return "connect";
    case SMTP_CLIENT_FAIL_NETWORK:
        return "network";
    case SMTP_CLIENT_FAIL_PROTOCOL:
        return "protocol";
    case SMTP_CLIENT_FAIL_SESSION:
        return "session";
    case SMTP_CLIENT_FAIL_TLS:
        return "tls";
    case SMTP_CLIENT_FAIL_AUTH:
        return "auth";
    case SMTP_CLIENT_FAIL_UNSUPPORTED:
        return "unsupported";
    case SMTP_CLIENT_FAIL_LOCAL:
        return "local";
    }
    return "unknown";
}
