/* layer: node */
/* Unit tests for node/smtp/client against a scripted fake SMTP server: a thread that
 * listens on 127.0.0.1:0 and follows a script of steps (accept a connection and greet,
 * expect a command line, reply, then maybe start TLS, read message data, go silent,
 * send garbage instead of a TLS handshake, or hang up), recording every line it gets
 * and the raw message data. Tests compare the whole conversation and each recipient's
 * result: the happy path, multi-line replies, per-recipient refusals, 4xx/5xx on MAIL,
 * DATA and after the data, 421, dot-stuffing and line ends, extensions sent only when
 * offered, SMTPUTF8 and SIZE refusals, STARTTLS (opportunistic with fallback, required),
 * certificate chain checks and pins, AUTH PLAIN and LOGIN, timeouts, connection refused,
 * garbled replies and bad parameters. The TLS certificates (a CA and a leaf for
 * "mx.test") are made at run time. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "node/smtp/client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* --- certificates --- */

static char tmpdir[64];
static char ca_path[128];
static EVP_PKEY *ca_key, *leaf_key;
static X509 *ca_cert, *leaf_cert;
static char leaf_fp[128]; /* "AB:CD:..." */

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

static X509 *make_cert(const char *cn, const char *san, EVP_PKEY *key, X509 *issuer,
                       EVP_PKEY *issuer_key, long serial, bool ca)
{
    X509 *x = X509_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), serial), 1);
    assert_non_null(X509_time_adj_ex(X509_getm_notBefore(x), -1, 0, NULL));
    assert_non_null(X509_time_adj_ex(X509_getm_notAfter(x), 30, 0, NULL));
    X509_NAME *name = X509_get_subject_name(x);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                                (const unsigned char *)"Floe Tests", -1, -1, 0),
                     1);
    assert_int_equal(
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0),
        1);
    assert_int_equal(X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name), 1);
    assert_int_equal(X509_set_pubkey(x, key), 1);
    X509 *iss = issuer ? issuer : x;
    add_ext(x, iss, NID_subject_key_identifier, "hash");
    if (ca) {
        add_ext(x, iss, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, iss, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(x, iss, NID_basic_constraints, "CA:FALSE");
        add_ext(x, iss, NID_ext_key_usage, "serverAuth");
        add_ext(x, iss, NID_authority_key_identifier, "keyid");
        add_ext(x, iss, NID_subject_alt_name, san);
    }
    assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    return x;
}

static int group_setup(void **state)
{
    signal(SIGPIPE, SIG_IGN);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/floe_test_smtpc_XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    leaf_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (ca_key == NULL || leaf_key == NULL)
        return -1;
    ca_cert = make_cert("Floe Test CA", NULL, ca_key, NULL, NULL, 1, true);
    leaf_cert = make_cert("mx.test", "DNS:mx.test", leaf_key, ca_cert, ca_key, 2, false);
    snprintf(ca_path, sizeof ca_path, "%s/ca.pem", tmpdir);
    FILE *f = fopen(ca_path, "w");
    if (f == NULL || PEM_write_X509(f, ca_cert) != 1)
        return -1;
    fclose(f);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (X509_digest(leaf_cert, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32)
        return -1;
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(leaf_fp + 3 * i, sizeof leaf_fp - 3 * i, i + 1 < mdlen ? "%02X:" : "%02X", md[i]);
    return 0;
}

static int group_teardown(void **state)
{
    unlink(ca_path);
    rmdir(tmpdir);
    X509_free(ca_cert);
    X509_free(leaf_cert);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(leaf_key);
    return 0;
}

/* --- the fake server --- */

enum act {
    A_NONE = 0,
    A_ACCEPT,      /* accept the next connection; reply is the greeting */
    A_STARTTLS,    /* after the reply: TLS handshake as the server */
    A_DATA,        /* after the reply: read message data up to CRLF . CRLF */
    A_SILENT,      /* after the reply (if any): say nothing until the client hangs up */
    A_CLOSE,       /* after the reply: hang up */
    A_TLS_GARBAGE, /* after the reply: bytes that are no TLS handshake, then hang up */
};

struct step {
    enum act act;
    const char *expect; /* the line the client must send ("...*": a prefix); NULL: none */
    const char *reply;  /* sent as is (CRLF included); NULL: nothing */
};

#define LOG_MAX 16384
#define DATA_MAX (1u << 20)

struct fake {
    int lfd;
    int port;
    const struct step *script;
    size_t nsteps;
    SSL_CTX *ctx;
    pthread_t thread;
    /* the connection */
    int fd;
    SSL *ssl;
    char in[8192];
    size_t in_len;
    /* what happened */
    char log[LOG_MAX]; /* lines received, each ended by '\n'; "<EOF>" when the client
                        * hung up before the script ended */
    char *data;        /* raw data after 354, without the final ".\r\n" */
    size_t data_len;
    bool data_eof;   /* the data ended without CRLF . CRLF */
    char error[512]; /* first deviation from the script */
    int connections;
    bool tls;
};

static void fake_error(struct fake *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fake_error(struct fake *f, const char *fmt, ...)
{
    if (f->error[0] != '\0')
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->error, sizeof f->error, fmt, ap);
    va_end(ap);
}

static void fake_log(struct fake *f, const char *line)
{
    size_t used = strlen(f->log);
    snprintf(f->log + used, sizeof f->log - used, "%s\n", line);
}

static ssize_t fake_recv(struct fake *f, char *buf, size_t n)
{
    if (f->ssl != NULL) {
        int rc = SSL_read(f->ssl, buf, (int)n);
        return rc > 0 ? rc : (SSL_get_error(f->ssl, rc) == SSL_ERROR_ZERO_RETURN ? 0 : -1);
    }
    return recv(f->fd, buf, n, 0);
}

static void fake_send(struct fake *f, const char *s)
{
    size_t len = strlen(s);
    if (f->ssl != NULL)
        SSL_write(f->ssl, s, (int)len);
    else
        send(f->fd, s, len, MSG_NOSIGNAL);
}

static void fake_hangup(struct fake *f)
{
    if (f->ssl != NULL) {
        SSL_free(f->ssl);
        f->ssl = NULL;
    }
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    f->in_len = 0;
}

/* A line without CRLF; false at EOF, error or timeout. */
static bool fake_line(struct fake *f, char *line, size_t cap)
{
    for (;;) {
        char *nl = memchr(f->in, '\n', f->in_len);
        if (nl != NULL) {
            size_t len = (size_t)(nl - f->in);
            size_t keep = len > 0 && f->in[len - 1] == '\r' ? len - 1 : len;
            snprintf(line, cap, "%.*s", (int)keep, f->in);
            memmove(f->in, nl + 1, f->in_len - len - 1);
            f->in_len -= len + 1;
            return true;
        }
        if (f->in_len == sizeof f->in)
            return false;
        ssize_t n = fake_recv(f, f->in + f->in_len, sizeof f->in - f->in_len);
        if (n <= 0)
            return false;
        f->in_len += (size_t)n;
    }
}

/* Message data up to CRLF . CRLF (or a lone . CRLF at the start). */
static void fake_data(struct fake *f)
{
    for (;;) {
        /* look in what is buffered for the end */
        char *buf = f->data;
        size_t have = f->data_len;
        for (size_t i = 0; i + 3 <= have; i++) {
            bool start = i == 0 && memcmp(buf, ".\r\n", 3) == 0;
            bool mid = i >= 2 && memcmp(buf + i - 2, "\r\n.\r\n", 5) == 0;
            if (start || mid) {
                size_t end = i; /* the dot */
                /* what follows the terminator is the next command */
                size_t rest = have - (end + 3);
                if (rest > sizeof f->in - f->in_len)
                    rest = sizeof f->in - f->in_len;
                memcpy(f->in + f->in_len, buf + end + 3, rest);
                f->in_len += rest;
                f->data_len = end;
                return;
            }
        }
        if (f->in_len > 0) {
            size_t take = f->in_len < DATA_MAX - f->data_len ? f->in_len : DATA_MAX - f->data_len;
            memcpy(f->data + f->data_len, f->in, take);
            f->data_len += take;
            f->in_len = 0;
            continue;
        }
        if (f->data_len == DATA_MAX) {
            fake_error(f, "data too long");
            return;
        }
        ssize_t n = fake_recv(f, f->data + f->data_len, DATA_MAX - f->data_len);
        if (n <= 0) {
            f->data_eof = true;
            return;
        }
        f->data_len += (size_t)n;
    }
}

static bool matches(const char *expect, const char *line)
{
    size_t el = strlen(expect);
    if (el > 0 && expect[el - 1] == '*')
        return strncmp(expect, line, el - 1) == 0;
    return strcmp(expect, line) == 0;
}

static void set_timeouts(int fd, int seconds)
{
    struct timeval tv = {.tv_sec = seconds};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    char line[4096];
    size_t i;
    for (i = 0; i < f->nsteps && f->error[0] == '\0'; i++) {
        const struct step *s = &f->script[i];
        if (s->act == A_ACCEPT) {
            fake_hangup(f);
            struct pollfd p = {.fd = f->lfd, .events = POLLIN};
            if (poll(&p, 1, 5000) != 1) {
                fake_error(f, "step %zu: no connection", i);
                break;
            }
            f->fd = accept(f->lfd, NULL, NULL);
            if (f->fd < 0) {
                fake_error(f, "step %zu: accept: %s", i, strerror(errno));
                break;
            }
            set_timeouts(f->fd, 5);
            f->connections++;
        } else if (s->expect != NULL) {
            if (!fake_line(f, line, sizeof line)) {
                fake_log(f, "<EOF>");
                fake_error(f, "step %zu: EOF, expected '%s'", i, s->expect);
                break;
            }
            fake_log(f, line);
            if (!matches(s->expect, line)) {
                fake_error(f, "step %zu: got '%s', expected '%s'", i, line, s->expect);
                break;
            }
        }
        if (s->reply != NULL)
            fake_send(f, s->reply);
        switch (s->act) {
        case A_STARTTLS:
            f->ssl = SSL_new(f->ctx);
            SSL_set_fd(f->ssl, f->fd);
            if (SSL_accept(f->ssl) != 1) {
                fake_error(f, "step %zu: TLS handshake failed", i);
                SSL_free(f->ssl);
                f->ssl = NULL;
            } else {
                f->tls = true;
            }
            break;
        case A_DATA:
            fake_data(f);
            break;
        case A_SILENT:
            while (fake_line(f, line, sizeof line))
                fake_log(f, line);
            fake_hangup(f);
            break;
        case A_CLOSE:
            fake_hangup(f);
            break;
        case A_TLS_GARBAGE:
            fake_send(f, "this is no TLS server hello\r\n\r\n\r\n");
            fake_hangup(f);
            break;
        default:
            break;
        }
    }
    /* whatever else the client says until it hangs up */
    if (f->fd >= 0)
        while (fake_line(f, line, sizeof line))
            fake_log(f, line);
    fake_hangup(f);
    return NULL;
}

static SSL_CTX *server_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate(ctx, leaf_cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, leaf_key), 1);
    assert_int_equal(SSL_CTX_add1_chain_cert(ctx, ca_cert), 1);
    return ctx;
}

static struct fake *fake_start(const struct step *script, size_t nsteps)
{
    struct fake *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->data = malloc(DATA_MAX);
    assert_non_null(f->data);
    f->script = script;
    f->nsteps = nsteps;
    f->fd = -1;
    f->ctx = server_ctx();
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->lfd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sin;
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(f->lfd, 8), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&sin, &sl), 0);
    f->port = ntohs(sin.sin_port);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
    return f;
}

/* Waits for the script to end; fails the test on a deviation. */
static void fake_finish(struct fake *f)
{
    pthread_join(f->thread, NULL);
    close(f->lfd);
    SSL_CTX_free(f->ctx);
    if (f->error[0] != '\0')
        fail_msg("fake server: %s\nconversation:\n%s", f->error, f->log);
}

static void fake_free(struct fake **f)
{
    free((*f)->data);
    free(*f);
    *f = NULL;
}

#define FAKE_START(script) fake_start(script, sizeof(script) / sizeof((script)[0]))

/* --- the client side --- */

struct msg {
    const char *text;
    size_t len, off;
    size_t chunk; /* bytes per read (0: all) */
    bool fail;    /* return -1 after the first chunk */
    int reads;
};

static ssize_t msg_read(void *ctx, char *buf, size_t n)
{
    struct msg *m = ctx;
    if (m->fail && m->reads > 0)
        return -1;
    m->reads++;
    size_t left = m->len - m->off;
    size_t take = m->chunk != 0 && m->chunk < n ? m->chunk : n;
    if (take > left)
        take = left;
    memcpy(buf, m->text + m->off, take);
    m->off += take;
    return (ssize_t)take;
}

static struct sockaddr_in server_addr;
static struct msg message;

static void base_params(struct smtp_client_params *p, int port, const char *text)
{
    memset(p, 0, sizeof *p);
    memset(&server_addr, 0, sizeof server_addr);
    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((uint16_t)port);
    server_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    p->addr = (const struct sockaddr *)&server_addr;
    p->host = "mx.test";
    p->helo = "client.test";
    p->connect_timeout_ms = 3000;
    p->command_timeout_ms = 3000;
    p->data_timeout_ms = 3000;
    p->sender = "sender@client.test";
    memset(&message, 0, sizeof message);
    message.text = text;
    message.len = strlen(text);
    p->read = msg_read;
    p->read_ctx = &message;
}

static void rcpts_init(struct smtp_client_rcpt *r, size_t n, const char *const *addrs)
{
    memset(r, 0, n * sizeof *r);
    for (size_t i = 0; i < n; i++)
        r[i].addr = addrs[i];
}

static void expect_rcpt(const struct smtp_client_rcpt *r, enum smtp_client_class cls,
                        const char *status, const char *reply)
{
    if (r->cls != cls)
        fail_msg("%s: class %s, expected %s (%s %s)", r->addr, smtp_client_class_str(r->cls),
                 smtp_client_class_str(cls), r->status, r->reply);
    assert_string_equal(r->status, status);
    if (reply != NULL)
        assert_string_equal(r->reply, reply);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define GREET "220 mx.test ESMTP\r\n"
#define EHLO_PLAIN "250-mx.test hello\r\n250 PIPELINING\r\n"

/* --- tests: the transaction --- */

static void test_happy_path(void **state)
{
    static const struct step script[] = {
        {A_ACCEPT, NULL, "220-mx.test ESMTP\r\n220-second line\r\n220 ready\r\n"},
        {A_NONE, "EHLO client.test", EHLO_PLAIN},
        {A_NONE, "MAIL FROM:<sender@client.test>", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<rcpt@mx.test>", "250 ok\r\n"},
        {A_DATA, "DATA", "354 go ahead\r\n"},
        {A_NONE, NULL, "250-2.0.0 queued\r\n250 2.0.0 as 1234\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    struct fake *f = FAKE_START(script);
    struct smtp_client_params p;
    base_params(&p, f->port, "Subject: hi\r\n\r\nHello.\r\n");
    struct smtp_client_rcpt r[1];
    rcpts_init(r, 1, (const char *[]){"rcpt@mx.test"});
    struct smtp_client_result res;
    assert_int_equal(smtp_client_deliver(&p, r, 1, &res), 0);
    fake_finish(f);
    expect_rcpt(&r[0], SMTP_CLIENT_DELIVERED, "2.0.0", "250 2.0.0 queued as 1234");
    char remote[64];
    snprintf(remote, sizeof remote, "mx.test[127.0.0.1]:%d", f->port);
    assert_string_equal(r[0].remote, remote);
    assert_string_equal(res.remote, remote);
    assert_int_equal(res.failure, SMTP_CLIENT_OK);
    assert_int_equal(res.delivered, 1);
    assert_int_equal(res.temp + res.perm, 0);
    assert_int_equal(res.connections, 1);
    assert_false(res.tls);
    assert_string_equal(f->log, "EHLO client.test\nMAIL FROM:<sender@client.test>\n"
                                "RCPT TO:<rcpt@mx.test>\nDATA\nQUIT\n");
    assert_int_equal(f->data_len, strlen("Subject: hi\r\n\r\nHello.\r\n"));
    assert_memory_equal(f->data, "Subject: hi\r\n\r\nHello.\r\n", f->data_len);
    assert_false(f->data_eof);
    fake_free(&f);
}

static void test_recipient_refused_multiline(void **state)
{
    static const struct step script[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", "250-mx.test\r\n250 ENHANCEDSTATUSCODES\r\n"},
        {A_NONE, "MAIL FROM:<>", "250 2.1.0 ok\r\n"},
        {A_NONE, "RCPT TO:<a@mx.test>", "250 2.1.5 ok\r\n"},
        {A_NONE, "RCPT TO:<b@mx.test>",
         "550-5.1.1 No such user\r\n550-5.1.1 here, see\r\n550 5.1.1 https://x.test/why\r\n"},
        {A_NONE, "RCPT TO:<c@mx.test>", "452 4.2.2 Mailbox full\r\n"},
        {A_NONE, "RCPT TO:<d@mx.test>", "251 User not local; will forward\r\n"},
        {A_DATA, "DATA", "354 go ahead\r\n"},
        {A_NONE, NULL, "250 2.0.0 ok\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    struct fake *f = FAKE_START(script);
    struct smtp_client_params p;
    base_params(&p, f->port, "x");
    p.sender = ""; /* the null reverse path */
    struct smtp_client_rcpt r[4];
    rcpts_init(r, 4, (const char *[]){"a@mx.test", "b@mx.test", "c@mx.test", "d@mx.test"});
    struct smtp_client_result res;
    assert_int_equal(smtp_client_deliver(&p, r, 4, &res), 0);
    fake_finish(f);
    expect_rcpt(&r[0], SMTP_CLIENT_DELIVERED, "2.0.0", "250 2.0.0 ok");
    expect_rcpt(&r[1], SMTP_CLIENT_PERM, "5.1.1",
                "550 5.1.1 No such user here, see https://x.test/why");
    expect_rcpt(&r[2], SMTP_CLIENT_TEMP, "4.2.2", "452 4.2.2 Mailbox full");
    expect_rcpt(&r[3], SMTP_CLIENT_DELIVERED, "2.0.0", "250 2.0.0 ok");
    assert_int_equal(res.delivered, 2);
    assert_int_equal(res.perm, 1);
    assert_int_equal(res.temp, 1);
    assert_int_equal(res.failure, SMTP_CLIENT_OK);
    assert_int_equal(f->data_len, 3);
    assert_memory_equal(f->data, "x\r\n", 3);
    fake_free(&f);
}

static void test_all_recipients_refused(void **state)
{
    static const struct step script[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_PLAIN},
        {A_NONE, "MAIL FROM:<sender@client.test>", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<a@mx.test>", "550 no\r\n"},
        {A_NONE, "RCPT TO:<b@mx.test>", "450 later\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    struct fake *f = FAKE_START(script);
    struct smtp_client_params p;
    base_params(&p, f->port, "x\r\n");
    struct smtp_client_rcpt r[2];
    rcpts_init(r, 2, (const char *[]){"a@mx.test", "b@mx.test"});
    struct smtp_client_result res;
    assert_int_equal(smtp_client_deliver(&p, r, 2, &res), 0);
    fake_finish(f);
    /* no enhanced status from the server: one by the reply's class */
    expect_rcpt(&r[0], SMTP_CLIENT_PERM, "5.0.0", "550 no");
    expect_rcpt(&r[1], SMTP_CLIENT_TEMP, "4.0.0", "450 later");
    assert_null(strstr(f->log, "DATA"));
    assert_int_equal(message.reads, 0); /* the message was never read */
    fake_free(&f);
}

static void test_mail_refused(void **state)
{
    static const struct step script[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_PLAIN},
        {A_NONE, "MAIL FROM:<sender@client.test>", "553 5.7.1 sender refused\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    struct fake *f = FAKE_START(script);
    struct smtp_client_params p;
    base_params(&p, f->port, "x\r\n");
    struct smtp_client_rcpt r[2];
    rcpts_init(r, 2, (const char *[]){"a@mx.test", "b@mx.test"});
    struct smtp_client_result res;
    assert_int_equal(smtp_client_deliver(&p, r, 2, &res), 0);
    fake_finish(f);
    expect_rcpt(&r[0], SMTP_CLIENT_PERM, "5.7.1", "553 5.7.1 sender refused");
    expect_rcpt(&r[1], SMTP_CLIENT_PERM, "5.7.1", "553 5.7.1 sender refused");
    assert_int_equal(res.failure, SMTP_CLIENT_OK);
    assert_string_equal(res.reply, "553 5.7.1 sender refused");
    assert_null(strstr(f->log, "RCPT"));
    fake_free(&f);
}

static void test_data_4xx(void **state)
{
    static const struct step script[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_PLAIN},
        {A_NONE, "MAIL FROM:<sender@client.test>", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<a@mx.test>", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<b@mx.test>", "550 5.1.1 unknown\r\n"},
        {A_NONE, "RCPT TO:<c@mx.test>", "250 ok\r\n"},
        {A_NONE, "DATA", "451 4.3.0 try again later\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    struct fake *f = FAKE_START(script);
    struct smtp_client_params p;
    base_params(&p, f->port, "x\r\n");
    struct smtp_client_rcpt r[3];
    rcpts_init(r, 3, (const char *[]){"a@mx.test", "b@mx.test", "c@mx.test"});
    struct smtp_client_result res;
    assert_int_equal(smtp_client_deliver(&p, r, 3, &res), 0);
    fake_finish(f);
    expect_rcpt(&r[0], SMTP_CLIENT_TEMP, "4.3.0", "451 4.3.0 try again later");
    expect_rcpt(&r[1], SMTP_CLIENT_PERM, "5.1.1", "550 5.1.1 unknown");
    expect_rcpt(&r[2], SMTP_CLIENT_TEMP, "4.3.0", "451 4.3.0 try again later");
    assert_int_equal(res.temp, 2);
    assert_int_equal(res.perm, 1);
    fake_free(&f);
}

static void test_end_of_data_refused(void **state)
{
    static const struct step script[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_PLAIN},
        {A_NONE, "MAIL FROM:<sender@client.test>", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<a@mx.test>", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<b@mx.test>", "250 ok\r\n"},
        {A_DATA, "DATA", "354 go ahead\r\n"},
        {A_NONE, NULL, "554-5.7.1 message refused\r\n554 5.7.1 as spam\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    struct fake *f = FAKE_START(script);
    struct smtp_client_params p;
    base_params(&p, f->port, "spam\r\n");
    struct smtp_client_rcpt r[2];
    rcpts_init(r, 2, (const char *[]){"a@mx.test", "b@mx.test"});
    struct smtp_client_result res;
    assert_int_equal(smtp_client_deliver(&p, r, 2, &res), 0);
    fake_finish(f);
    expect_rcpt(&r[0], SMTP_CLIENT_PERM, "5.7.1", "554 5.7.1 message refused as spam");
    expect_rcpt(&r[1], SMTP_CLIENT_PERM, "5.7.1", "554 5.7.1 message refused as spam");
    fake_free(&f);
}

static void test_421_during_rcpt(void **state)
{
    static const struct step script[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_PLAIN},
        {A_NONE, "MAIL FROM:<sender@client.test>", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<a@mx.test>", "550 5.1.1 unknown\r\n"},
        {A_CLOSE, "RCPT TO:<b@mx.test>", "421 4.3.2 shutting down\r\n"},
    };
    struct fake *f = FAKE_START(script);
    struct smtp_client_params p;
    base_params(&p, f->port, "x\r\n");
    struct smtp_client_rcpt r[3];
    rcpts_init(r, 3, (const char *[]){"a@mx.test", "b@mx.test", "c@mx.test"});
    struct smtp_client_result res;
    assert_int_equal(smtp_client_deliver(&p, r, 3, &res), 0);
    fake_finish(f);
    expect_rcpt(&r[0], SMTP_CLIENT_PERM, "5.1.1", NULL);
    expect_rcpt(&r[1], SMTP_CLIENT_TEMP, "4.3.2", "421 4.3.2 shutting down");
    expect_rcpt(&r[2], SMTP_CLIENT_TEMP, "4.3.2", "421 4.3.2 shutting down");
    assert_int_equal(res.failure, SMTP_CLIENT_FAIL_SESSION);
    fake_free(&f);
}

static void test_greeting_refused_and_helo_fallback(void **state)
{
    static const struct step refuse[] = {
        {A_ACCEPT, NULL, "554 5.7.1 no service for you\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    struct fake *f = FAKE_START(refuse);
    struct smtp_client_params p;
    base_params(&p, f->port, "x\r\n");
    struct smtp_client_rcpt r[1];
    rcpts_init(r, 1, (const char *[]){"a@mx.test"});
    struct smtp_client_result res;
    assert_int_equal(smtp_client_deliver(&p, r, 1, &res), 0);
    fake_finish(f);
    /* a refused session is this host's problem: temporary, another MX may do */
    assert_int_equal(res.failure, SMTP_CLIENT_FAIL_SESSION);
    assert_int_equal(r[0].cls, SMTP_CLIENT_TEMP);
    assert_non_null(strstr(r[0].reply, "554 5.7.1 no service for you"));
    fake_free(&f);

    /* an old server: EHLO unknown, HELO works, no extension is used */
    static const struct step helo[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", "502 5.5.1 what?\r\n"},
        {A_NONE, "HELO client.test", "250 mx.test\r\n"},
        {A_NONE, "MAIL FROM:<sender@client.test>", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<a@mx.test>", "250 ok\r\n"},
        {A_DATA, "DATA", "354 go ahead\r\n"},
        {A_NONE, NULL, "250 ok\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    f = FAKE_START(helo);
    base_params(&p, f->port, "x\r\n");
    p.size = 100;
    p.body = SMTP_CLIENT_BODY_8BITMIME;
    p.tls = SMTP_CLIENT_TLS_OPPORTUNISTIC;
    rcpts_init(r, 1, (const char *[]){"a@mx.test"});
    assert_int_equal(smtp_client_deliver(&p, r, 1, &res), 0);
    fake_finish(f);
    expect_rcpt(&r[0], SMTP_CLIENT_DELIVERED, "2.0.0", "250 ok");
    fake_free(&f);
}

/* --- tests: the message --- */

static void deliver_text(const char *text, size_t chunk, const char *want, size_t want_len)
{
    static const struct step script[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_PLAIN},
        {A_NONE, "MAIL FROM:<sender@client.test>", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<a@mx.test>", "250 ok\r\n"},
        {A_DATA, "DATA", "354 go ahead\r\n"},
        {A_NONE, NULL, "250 ok\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    struct fake *f = FAKE_START(script);
    struct smtp_client_params p;
    base_params(&p, f->port, text);
    message.chunk = chunk;
    struct smtp_client_rcpt r[1];
    rcpts_init(r, 1, (const char *[]){"a@mx.test"});
    struct smtp_client_result res;
    assert_int_equal(smtp_client_deliver(&p, r, 1, &res), 0);
    fake_finish(f);
    expect_rcpt(&r[0], SMTP_CLIENT_DELIVERED, "2.0.0", NULL);
    assert_false(f->data_eof);
    if (f->data_len != want_len || memcmp(f->data, want, want_len) != 0)
        fail_msg("chunk %zu: data differs (%zu bytes, want %zu):\n%.*s", chunk, f->data_len,
                 want_len, (int)(f->data_len < 400 ? f->data_len : 400), f->data);
    fake_free(&f);
}

static void test_dot_stuffing_and_line_ends(void **state)
{
    const char *text = ".starts with a dot\n"
                       "..two dots\r\n"
                       "mid.dle . fine\r"
                       ".\n"
                       "\n"
                       "crlf\r\n"
                       ".after crlf\r\r\n"
                       "no final newline .";
    const char *want = "..starts with a dot\r\n"
                       "...two dots\r\n"
                       "mid.dle . fine\r\n"
                       "..\r\n"
                       "\r\n"
                       "crlf\r\n"
                       "..after crlf\r\n\r\n"
                       "no final newline .\r\n";
    /* every chunk size, so each state crosses a read boundary */
    for (size_t chunk = 1; chunk <= 7; chunk++)
        deliver_text(text, chunk, want, strlen(want));
    deliver_text(text, 0, want, strlen(want));

    /* an empty message, and one that is a lone dot */
    deliver_text("", 0, "", 0);
    deliver_text(".", 0, "..\r\n", 4);
}

static void test_large_message(void **state)
{
    /* 300 KB of lines, every third starting with a dot: many buffer flushes */
    size_t lines = 6000;
    char *text = malloc(lines * 50 + 1), *want = malloc(lines * 52 + 1);
    assert_non_null(text);
    assert_non_null(want);
    size_t tl = 0, wl = 0;
    for (size_t i = 0; i < lines; i++) {
        char line[64];
        int n = snprintf(line, sizeof line, "%sline %05zu of the large message body\n",
                         i % 3 == 0 ? "." : "", i);
        memcpy(text + tl, line, (size_t)n);
        tl += (size_t)n;
        if (i % 3 == 0)
            want[wl++] = '.';
        memcpy(want + wl, line, (size_t)n - 1);
        wl += (size_t)n - 1;
        memcpy(want + wl, "\r\n", 2);
        wl += 2;
    }
    text[tl] = '\0';
    deliver_text(text, 0, want, wl);
    deliver_text(text, 1000, want, wl);
    free(text);
    free(want);
}

static void test_read_failure(void **state)
{
    static const struct step script[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_PLAIN},
        {A_NONE, "MAIL FROM:<sender@client.test>", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<a@mx.test>", "250 ok\r\n"},
        {A_DATA, "DATA", "354 go ahead\r\n"},
    };
    struct fake *f = FAKE_START(script);
    struct smtp_client_params p;
    base_params(&p, f->port, "first part of the message\r\nsecond");
    message.chunk = 10;
    message.fail = true;
    struct smtp_client_rcpt r[1];
    rcpts_init(r, 1, (const char *[]){"a@mx.test"});
    struct smtp_client_result res;
    assert_int_equal(smtp_client_deliver(&p, r, 1, &res), 0);
    fake_finish(f);
    assert_int_equal(res.failure, SMTP_CLIENT_FAIL_LOCAL);
    expect_rcpt(&r[0], SMTP_CLIENT_TEMP, "4.3.0", NULL);
    /* the data never ended: the server must not take the message */
    assert_true(f->data_eof);
    fake_free(&f);
}

/* --- tests: extensions --- */

static void test_extensions_when_offered(void **state)
{
    static const struct step offered[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test",
         "250-mx.test\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n"
         "250 ENHANCEDSTATUSCODES\r\n"},
        {A_NONE, "MAIL FROM:<s@client.test> SIZE=1234 BODY=8BITMIME RET=HDRS ENVID=id+2B1+3D2",
         "250 ok\r\n"},
        {A_NONE, "RCPT TO:<a@mx.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig+2Bx@y.test",
         "250 ok\r\n"},
        {A_NONE, "RCPT TO:<b@mx.test> NOTIFY=NEVER", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<c@mx.test>", "250 ok\r\n"},
        {A_DATA, "DATA", "354 go ahead\r\n"},
        {A_NONE, NULL, "250 2.0.0 ok\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    static const struct step bare[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", "250-mx.test\r\n250 PIPELINING\r\n"},
        {A_NONE, "MAIL FROM:<s@client.test>", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<a@mx.test>", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<b@mx.test>", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<c@mx.test>", "250 ok\r\n"},
        {A_DATA, "DATA", "354 go ahead\r\n"},
        {A_NONE, NULL, "250 ok\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    for (int round = 0; round < 2; round++) {
        struct fake *f = round == 0 ? FAKE_START(offered) : FAKE_START(bare);
        struct smtp_client_params p;
        base_params(&p, f->port, "x\r\n");
        p.sender = "s@client.test";
        p.size = 1234;
        p.body = SMTP_CLIENT_BODY_8BITMIME;
        p.ret = SMTP_CLIENT_RET_HDRS;
        p.envid = "id+1=2";
        struct smtp_client_rcpt r[3];
        rcpts_init(r, 3, (const char *[]){"a@mx.test", "b@mx.test", "c@mx.test"});
        r[0].notify = SMTP_CLIENT_NOTIFY_SUCCESS | SMTP_CLIENT_NOTIFY_FAILURE;
        r[0].orcpt = "orig+x@y.test";
        r[1].notify = SMTP_CLIENT_NOTIFY_NEVER | SMTP_CLIENT_NOTIFY_DELAY; /* NEVER wins */
        struct smtp_client_result res;
        assert_int_equal(smtp_client_deliver(&p, r, 3, &res), 0);
        fake_finish(f);
        assert_int_equal(res.delivered, 3);
        fake_free(&f);
    }
}

static void test_smtputf8(void **state)
{
    static const struct step offered[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", "250-mx.test\r\n250-DSN\r\n250 SMTPUTF8\r\n"},
        {A_NONE, "MAIL FROM:<s@client.test> SMTPUTF8", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<j\xc3\xbcrg@mx.test> ORCPT=utf-8;j\xc3\xbcrg\\x{2B}1@mx.test",
         "250 ok\r\n"},
        {A_DATA, "DATA", "354 go ahead\r\n"},
        {A_NONE, NULL, "250 ok\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    struct fake *f = FAKE_START(offered);
    struct smtp_client_params p;
    base_params(&p, f->port, "x\r\n");
    p.sender = "s@client.test";
    struct smtp_client_rcpt r[1];
    rcpts_init(r, 1, (const char *[]){"j\xc3\xbcrg@mx.test"}); /* needs SMTPUTF8 by itself */
    r[0].orcpt = "j\xc3\xbcrg+1@mx.test";
    struct smtp_client_result res;
    assert_int_equal(smtp_client_deliver(&p, r, 1, &res), 0);
    fake_finish(f);
    expect_rcpt(&r[0], SMTP_CLIENT_DELIVERED, "2.0.0", NULL);
    fake_free(&f);

    /* needed but not offered: permanent for the whole message, 5.6.7 */
    static const struct step missing[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", "250-mx.test\r\n250 8BITMIME\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    f = FAKE_START(missing);
    base_params(&p, f->port, "x\r\n");
    p.smtputf8 = true;
    struct smtp_client_rcpt r2[2];
    rcpts_init(r2, 2, (const char *[]){"a@mx.test", "b@mx.test"});
    assert_int_equal(smtp_client_deliver(&p, r2, 2, &res), 0);
    fake_finish(f);
    expect_rcpt(&r2[0], SMTP_CLIENT_PERM, "5.6.7", NULL);
    expect_rcpt(&r2[1], SMTP_CLIENT_PERM, "5.6.7", NULL);
    assert_int_equal(res.failure, SMTP_CLIENT_FAIL_UNSUPPORTED);
    assert_string_equal(f->log, "EHLO client.test\nQUIT\n");
    fake_free(&f);
}

static void test_size_limit(void **state)
{
    static const struct step script[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", "250-mx.test\r\n250 SIZE 1000\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    struct fake *f = FAKE_START(script);
    struct smtp_client_params p;
    base_params(&p, f->port, "x\r\n");
    p.size = 1001;
    struct smtp_client_rcpt r[1];
    rcpts_init(r, 1, (const char *[]){"a@mx.test"});
    struct smtp_client_result res;
    assert_int_equal(smtp_client_deliver(&p, r, 1, &res), 0);
    fake_finish(f);
    expect_rcpt(&r[0], SMTP_CLIENT_PERM, "5.3.4", NULL);
    assert_int_equal(res.failure, SMTP_CLIENT_FAIL_UNSUPPORTED);
    fake_free(&f);
}

/* --- tests: TLS --- */

#define EHLO_TLS "250-mx.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n"

static void test_starttls_opportunistic(void **state)
{
    static const struct step script[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_TLS},
        {A_STARTTLS, "STARTTLS", "220 2.0.0 go ahead\r\n"},
        {A_NONE, "EHLO client.test", "250-mx.test\r\n250 8BITMIME\r\n"},
        {A_NONE, "MAIL FROM:<sender@client.test>", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<a@mx.test>", "250 ok\r\n"},
        {A_DATA, "DATA", "354 go ahead\r\n"},
        {A_NONE, NULL, "250 ok\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    struct fake *f = FAKE_START(script);
    struct smtp_client_params p;
    base_params(&p, f->port, "secret\r\n");
    p.tls = SMTP_CLIENT_TLS_OPPORTUNISTIC;
    struct smtp_client_rcpt r[1];
    rcpts_init(r, 1, (const char *[]){"a@mx.test"});
    struct smtp_client_result res;
    assert_int_equal(smtp_client_deliver(&p, r, 1, &res), 0);
    fake_finish(f);
    expect_rcpt(&r[0], SMTP_CLIENT_DELIVERED, "2.0.0", NULL);
    assert_true(f->tls);
    assert_true(res.tls);
    assert_false(res.tls_fallback);
    assert_false(res.tls_verified); /* opportunistic: nothing checked */
    assert_int_equal(strncmp(res.tls_version, "TLSv1.", 6), 0);
    assert_true(res.tls_cipher[0] != '\0');
    assert_int_equal(f->data_len, 8);
    fake_free(&f);

    /* not offered: the session goes on in the clear */
    static const struct step clear[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_PLAIN},
        {A_NONE, "MAIL FROM:<sender@client.test>", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<a@mx.test>", "250 ok\r\n"},
        {A_DATA, "DATA", "354 go ahead\r\n"},
        {A_NONE, NULL, "250 ok\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    f = FAKE_START(clear);
    base_params(&p, f->port, "x\r\n");
    p.tls = SMTP_CLIENT_TLS_OPPORTUNISTIC;
    rcpts_init(r, 1, (const char *[]){"a@mx.test"});
    assert_int_equal(smtp_client_deliver(&p, r, 1, &res), 0);
    fake_finish(f);
    expect_rcpt(&r[0], SMTP_CLIENT_DELIVERED, "2.0.0", NULL);
    assert_false(res.tls);
    fake_free(&f);

    /* refused with 454: also in the clear, same connection */
    static const struct step refused[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_TLS},
        {A_NONE, "STARTTLS", "454 4.7.0 TLS not available\r\n"},
        {A_NONE, "MAIL FROM:<sender@client.test>", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<a@mx.test>", "250 ok\r\n"},
        {A_DATA, "DATA", "354 go ahead\r\n"},
        {A_NONE, NULL, "250 ok\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    f = FAKE_START(refused);
    base_params(&p, f->port, "x\r\n");
    p.tls = SMTP_CLIENT_TLS_OPPORTUNISTIC;
    rcpts_init(r, 1, (const char *[]){"a@mx.test"});
    assert_int_equal(smtp_client_deliver(&p, r, 1, &res), 0);
    fake_finish(f);
    expect_rcpt(&r[0], SMTP_CLIENT_DELIVERED, "2.0.0", NULL);
    assert_false(res.tls);
    assert_int_equal(res.connections, 1);
    fake_free(&f);
}

static void test_starttls_opportunistic_fallback(void **state)
{
    static const struct step script[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_TLS},
        {A_TLS_GARBAGE, "STARTTLS", "220 go ahead\r\n"},
        /* the retry: a new connection, STARTTLS offered but not used */
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_TLS},
        {A_NONE, "MAIL FROM:<sender@client.test>", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<a@mx.test>", "250 ok\r\n"},
        {A_DATA, "DATA", "354 go ahead\r\n"},
        {A_NONE, NULL, "250 ok\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    struct fake *f = FAKE_START(script);
    struct smtp_client_params p;
    base_params(&p, f->port, "x\r\n");
    p.tls = SMTP_CLIENT_TLS_OPPORTUNISTIC;
    struct smtp_client_rcpt r[1];
    rcpts_init(r, 1, (const char *[]){"a@mx.test"});
    struct smtp_client_result res;
    assert_int_equal(smtp_client_deliver(&p, r, 1, &res), 0);
    fake_finish(f);
    expect_rcpt(&r[0], SMTP_CLIENT_DELIVERED, "2.0.0", NULL);
    assert_int_equal(res.connections, 2);
    assert_int_equal(f->connections, 2);
    assert_true(res.tls_fallback);
    assert_false(res.tls);
    fake_free(&f);
}

static void test_starttls_required_failures(void **state)
{
    /* not offered */
    static const struct step missing[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_PLAIN},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    struct fake *f = FAKE_START(missing);
    struct smtp_client_params p;
    base_params(&p, f->port, "x\r\n");
    p.tls = SMTP_CLIENT_TLS_REQUIRED;
    struct smtp_client_rcpt r[2];
    rcpts_init(r, 2, (const char *[]){"a@mx.test", "b@mx.test"});
    struct smtp_client_result res;
    assert_int_equal(smtp_client_deliver(&p, r, 2, &res), 0);
    fake_finish(f);
    assert_int_equal(res.failure, SMTP_CLIENT_FAIL_TLS);
    assert_string_equal(res.status, "4.7.4");
    expect_rcpt(&r[0], SMTP_CLIENT_TEMP, "4.7.4", NULL);
    expect_rcpt(&r[1], SMTP_CLIENT_TEMP, "4.7.4", NULL);
    assert_non_null(strstr(r[0].reply, "STARTTLS"));
    assert_string_equal(f->log, "EHLO client.test\nQUIT\n");
    fake_free(&f);

    /* refused */
    static const struct step refused[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_TLS},
        {A_NONE, "STARTTLS", "454 4.7.0 not now\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    f = FAKE_START(refused);
    base_params(&p, f->port, "x\r\n");
    p.tls = SMTP_CLIENT_TLS_REQUIRED;
    rcpts_init(r, 2, (const char *[]){"a@mx.test", "b@mx.test"});
    assert_int_equal(smtp_client_deliver(&p, r, 2, &res), 0);
    fake_finish(f);
    assert_int_equal(res.failure, SMTP_CLIENT_FAIL_TLS);
    expect_rcpt(&r[0], SMTP_CLIENT_TEMP, "4.7.4", NULL);
    assert_non_null(strstr(r[0].reply, "454 4.7.0 not now"));
    fake_free(&f);

    /* handshake failure: no second connection */
    static const struct step broken[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_TLS},
        {A_TLS_GARBAGE, "STARTTLS", "220 go ahead\r\n"},
    };
    f = FAKE_START(broken);
    base_params(&p, f->port, "x\r\n");
    p.tls = SMTP_CLIENT_TLS_REQUIRED;
    rcpts_init(r, 2, (const char *[]){"a@mx.test", "b@mx.test"});
    assert_int_equal(smtp_client_deliver(&p, r, 2, &res), 0);
    fake_finish(f);
    assert_int_equal(res.failure, SMTP_CLIENT_FAIL_TLS);
    assert_int_equal(res.connections, 1);
    assert_false(res.tls_fallback);
    expect_rcpt(&r[0], SMTP_CLIENT_TEMP, "4.7.5", NULL);
    expect_rcpt(&r[1], SMTP_CLIENT_TEMP, "4.7.5", NULL);
    fake_free(&f);

    /* a reply injected after the 220 to STARTTLS (RFC 3207 §4.2: would be read as
     * coming from inside TLS): refused before any handshake */
    static const struct step injected[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_TLS},
        {A_NONE, "STARTTLS", "220 go ahead\r\n250 injected\r\n"},
    };
    f = FAKE_START(injected);
    base_params(&p, f->port, "x\r\n");
    p.tls = SMTP_CLIENT_TLS_REQUIRED;
    rcpts_init(r, 2, (const char *[]){"a@mx.test", "b@mx.test"});
    assert_int_equal(smtp_client_deliver(&p, r, 2, &res), 0);
    fake_finish(f);
    assert_int_equal(res.failure, SMTP_CLIENT_FAIL_TLS);
    assert_false(res.tls);
    assert_non_null(strstr(r[0].reply, "plaintext after the reply to STARTTLS"));
    assert_string_equal(f->log, "EHLO client.test\nSTARTTLS\n");
    fake_free(&f);
}

/* One REQUIRED delivery with the checks set by tune. want_ok: the certificate passes
 * and the message goes over TLS; else the attempt fails as a TLS failure and the client
 * says nothing after the handshake (why gets its reason). Returns tls_verified. */
static bool required_delivery(void (*tune)(struct smtp_client_params *), bool want_ok, char *why,
                              size_t cap)
{
    static const struct step ok[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_TLS},
        {A_STARTTLS, "STARTTLS", "220 go ahead\r\n"},
        {A_NONE, "EHLO client.test", "250 mx.test\r\n"},
        {A_NONE, "MAIL FROM:<sender@client.test>", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<a@mx.test>", "250 ok\r\n"},
        {A_DATA, "DATA", "354 go ahead\r\n"},
        {A_NONE, NULL, "250 ok\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    static const struct step refused[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_TLS},
        {A_STARTTLS, "STARTTLS", "220 go ahead\r\n"},
    };
    struct smtp_client_params p;
    struct smtp_client_rcpt r[1];
    struct smtp_client_result res;
    struct fake *f = want_ok ? FAKE_START(ok) : FAKE_START(refused);
    base_params(&p, f->port, "x\r\n");
    p.tls = SMTP_CLIENT_TLS_REQUIRED;
    tune(&p);
    rcpts_init(r, 1, (const char *[]){"a@mx.test"});
    assert_int_equal(smtp_client_deliver(&p, r, 1, &res), 0);
    fake_finish(f);
    assert_true(f->tls);
    if (want_ok) {
        expect_rcpt(&r[0], SMTP_CLIENT_DELIVERED, "2.0.0", NULL);
        assert_true(res.tls);
        why[0] = '\0';
    } else {
        if (res.failure != SMTP_CLIENT_FAIL_TLS)
            fail_msg("not refused: %s %s", smtp_client_failure_str(res.failure), r[0].reply);
        expect_rcpt(&r[0], SMTP_CLIENT_TEMP, "4.7.5", NULL);
        assert_false(res.tls);
        assert_string_equal(f->log, "EHLO client.test\nSTARTTLS\n");
        snprintf(why, cap, "%s", r[0].reply);
    }
    fake_free(&f);
    return res.tls_verified;
}

static void tune_none(struct smtp_client_params *p)
{
}

static void tune_chain(struct smtp_client_params *p)
{
    p->tls_verify = true;
    p->tls_ca_file = ca_path;
}

static void tune_chain_wrong_name(struct smtp_client_params *p)
{
    tune_chain(p);
    p->host = "other.test";
}

static void tune_chain_system_store(struct smtp_client_params *p)
{
    p->tls_verify = true; /* our test CA is not in the system store */
}

static void tune_fp(struct smtp_client_params *p)
{
    p->pin_fingerprint = leaf_fp;
}

static char other_fp[128];

static void tune_fp_wrong(struct smtp_client_params *p)
{
    snprintf(other_fp, sizeof other_fp, "%s", leaf_fp);
    other_fp[0] = other_fp[0] == '0' ? '1' : '0';
    p->pin_fingerprint = other_fp;
}

static void tune_fp_lower_no_colons(struct smtp_client_params *p)
{
    size_t o = 0;
    for (const char *s = leaf_fp; *s != '\0'; s++)
        if (*s != ':')
            other_fp[o++] = (char)(*s >= 'A' && *s <= 'F' ? *s - 'A' + 'a' : *s);
    other_fp[o] = '\0';
    p->pin_fingerprint = other_fp;
}

static void tune_fp_garbage(struct smtp_client_params *p)
{
    p->pin_fingerprint = "not-a-fingerprint";
}

static void tune_pins_subject_issuer(struct smtp_client_params *p)
{
    p->pin_subject = "MX.test";
    p->pin_issuer = "floe test ca";
    p->tls_verify = true; /* pins replace the chain: the unknown CA does not matter */
}

static void tune_pin_subject_wrong(struct smtp_client_params *p)
{
    p->pin_subject = "mail.example";
}

static void tune_pin_issuer_wrong(struct smtp_client_params *p)
{
    p->pin_subject = "mx.test";
    p->pin_issuer = "Some Other CA";
}

static void test_starttls_required_checks(void **state)
{
    char why[SMTP_CLIENT_REPLY_MAX];
    /* encryption only: nothing to verify */
    assert_false(required_delivery(tune_none, true, why, sizeof why));
    assert_true(required_delivery(tune_chain, true, why, sizeof why));
    assert_false(required_delivery(tune_chain_wrong_name, false, why, sizeof why));
    assert_non_null(strstr(why, "verification failed"));
    assert_false(required_delivery(tune_chain_system_store, false, why, sizeof why));
    assert_non_null(strstr(why, "verification failed"));
    assert_true(required_delivery(tune_fp, true, why, sizeof why));
    assert_true(required_delivery(tune_fp_lower_no_colons, true, why, sizeof why));
    assert_false(required_delivery(tune_fp_wrong, false, why, sizeof why));
    assert_non_null(strstr(why, "fingerprint does not match"));
    assert_false(required_delivery(tune_fp_garbage, false, why, sizeof why));
    assert_non_null(strstr(why, "not a SHA-256"));
    assert_true(required_delivery(tune_pins_subject_issuer, true, why, sizeof why));
    assert_false(required_delivery(tune_pin_subject_wrong, false, why, sizeof why));
    assert_non_null(strstr(why, "subject"));
    assert_false(required_delivery(tune_pin_issuer_wrong, false, why, sizeof why));
    assert_non_null(strstr(why, "issuer"));
}

/* --- tests: AUTH --- */

static void test_auth_plain(void **state)
{
    static const struct step script[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_TLS},
        {A_STARTTLS, "STARTTLS", "220 go ahead\r\n"},
        {A_NONE, "EHLO client.test", "250-mx.test\r\n250 AUTH LOGIN PLAIN\r\n"},
        /* base64 of "\0user@client.test\0s3cret" */
        {A_NONE, "AUTH PLAIN AHVzZXJAY2xpZW50LnRlc3QAczNjcmV0", "235 2.7.0 ok\r\n"},
        {A_NONE, "MAIL FROM:<sender@client.test>", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<a@mx.test>", "250 ok\r\n"},
        {A_DATA, "DATA", "354 go ahead\r\n"},
        {A_NONE, NULL, "250 ok\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    struct fake *f = FAKE_START(script);
    struct smtp_client_params p;
    base_params(&p, f->port, "x\r\n");
    p.tls = SMTP_CLIENT_TLS_OPPORTUNISTIC;
    p.auth_user = "user@client.test";
    p.auth_password = "s3cret";
    struct smtp_client_rcpt r[1];
    rcpts_init(r, 1, (const char *[]){"a@mx.test"});
    struct smtp_client_result res;
    assert_int_equal(smtp_client_deliver(&p, r, 1, &res), 0);
    fake_finish(f);
    expect_rcpt(&r[0], SMTP_CLIENT_DELIVERED, "2.0.0", NULL);
    assert_true(res.authenticated);
    assert_true(res.tls);
    fake_free(&f);
}

static void test_auth_login_and_failures(void **state)
{
    static const struct step login[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_TLS},
        {A_STARTTLS, "STARTTLS", "220 go ahead\r\n"},
        {A_NONE, "EHLO client.test", "250-mx.test\r\n250 AUTH=LOGIN\r\n"},
        {A_NONE, "AUTH LOGIN", "334 VXNlcm5hbWU6\r\n"},
        {A_NONE, "dXNlcg==", "334 UGFzc3dvcmQ6\r\n"},
        {A_NONE, "cGFzcw==", "235 ok\r\n"},
        {A_NONE, "MAIL FROM:<sender@client.test>", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<a@mx.test>", "250 ok\r\n"},
        {A_DATA, "DATA", "354 go ahead\r\n"},
        {A_NONE, NULL, "250 ok\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    struct fake *f = FAKE_START(login);
    struct smtp_client_params p;
    base_params(&p, f->port, "x\r\n");
    p.tls = SMTP_CLIENT_TLS_REQUIRED;
    p.auth_user = "user";
    p.auth_password = "pass";
    struct smtp_client_rcpt r[1];
    rcpts_init(r, 1, (const char *[]){"a@mx.test"});
    struct smtp_client_result res;
    assert_int_equal(smtp_client_deliver(&p, r, 1, &res), 0);
    fake_finish(f);
    expect_rcpt(&r[0], SMTP_CLIENT_DELIVERED, "2.0.0", NULL);
    assert_true(res.authenticated);
    fake_free(&f);

    /* refused credentials: temporary, nothing sent after */
    static const struct step refused[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_TLS},
        {A_STARTTLS, "STARTTLS", "220 go ahead\r\n"},
        {A_NONE, "EHLO client.test", "250-mx.test\r\n250 AUTH PLAIN\r\n"},
        {A_NONE, "AUTH PLAIN *", "535 5.7.8 bad credentials\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    f = FAKE_START(refused);
    base_params(&p, f->port, "x\r\n");
    p.tls = SMTP_CLIENT_TLS_OPPORTUNISTIC;
    p.auth_user = "user";
    p.auth_password = "wrong";
    rcpts_init(r, 1, (const char *[]){"a@mx.test"});
    assert_int_equal(smtp_client_deliver(&p, r, 1, &res), 0);
    fake_finish(f);
    assert_int_equal(res.failure, SMTP_CLIENT_FAIL_AUTH);
    assert_false(res.authenticated);
    assert_int_equal(r[0].cls, SMTP_CLIENT_TEMP);
    assert_non_null(strstr(r[0].reply, "535 5.7.8 bad credentials"));
    fake_free(&f);

    /* no TLS: the credentials are never sent */
    static const struct step clear[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", "250-mx.test\r\n250 AUTH PLAIN LOGIN\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    f = FAKE_START(clear);
    base_params(&p, f->port, "x\r\n");
    p.tls = SMTP_CLIENT_TLS_OPPORTUNISTIC; /* STARTTLS not offered */
    p.auth_user = "user";
    p.auth_password = "pass";
    rcpts_init(r, 1, (const char *[]){"a@mx.test"});
    assert_int_equal(smtp_client_deliver(&p, r, 1, &res), 0);
    fake_finish(f);
    assert_int_equal(res.failure, SMTP_CLIENT_FAIL_AUTH);
    assert_int_equal(r[0].cls, SMTP_CLIENT_TEMP);
    assert_string_equal(f->log, "EHLO client.test\nQUIT\n");
    fake_free(&f);

    /* TLS but no mechanism we know */
    static const struct step nomech[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_TLS},
        {A_STARTTLS, "STARTTLS", "220 go ahead\r\n"},
        {A_NONE, "EHLO client.test", "250-mx.test\r\n250 AUTH CRAM-MD5 XOAUTH2\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    f = FAKE_START(nomech);
    base_params(&p, f->port, "x\r\n");
    p.tls = SMTP_CLIENT_TLS_REQUIRED;
    p.auth_user = "user";
    p.auth_password = "pass";
    rcpts_init(r, 1, (const char *[]){"a@mx.test"});
    assert_int_equal(smtp_client_deliver(&p, r, 1, &res), 0);
    fake_finish(f);
    assert_int_equal(res.failure, SMTP_CLIENT_FAIL_AUTH);
    assert_non_null(strstr(r[0].reply, "PLAIN"));
    fake_free(&f);
}

/* --- tests: failures --- */

static void test_timeout_silent_server(void **state)
{
    static const struct step silent[] = {
        {A_ACCEPT, NULL, NULL},
        {A_SILENT, NULL, NULL},
    };
    struct fake *f = FAKE_START(silent);
    struct smtp_client_params p;
    base_params(&p, f->port, "x\r\n");
    p.command_timeout_ms = 300;
    struct smtp_client_rcpt r[2];
    rcpts_init(r, 2, (const char *[]){"a@mx.test", "b@mx.test"});
    struct smtp_client_result res;
    long long t0 = now_ms();
    assert_int_equal(smtp_client_deliver(&p, r, 2, &res), 0);
    long long took = now_ms() - t0;
    fake_finish(f);
    assert_true(took >= 250);
    assert_true(took < 2000);
    assert_int_equal(res.failure, SMTP_CLIENT_FAIL_NETWORK);
    expect_rcpt(&r[0], SMTP_CLIENT_TEMP, "4.4.2", NULL);
    expect_rcpt(&r[1], SMTP_CLIENT_TEMP, "4.4.2", NULL);
    assert_non_null(strstr(r[0].reply, "timeout waiting for the greeting"));
    fake_free(&f);

    /* silent after the end of data: the data timeout */
    static const struct step after_data[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_PLAIN},
        {A_NONE, "MAIL FROM:<sender@client.test>", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<a@mx.test>", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<b@mx.test>", "550 no\r\n"},
        {A_DATA, "DATA", "354 go ahead\r\n"},
        {A_SILENT, NULL, NULL},
    };
    f = FAKE_START(after_data);
    base_params(&p, f->port, "x\r\n");
    p.data_timeout_ms = 300;
    rcpts_init(r, 2, (const char *[]){"a@mx.test", "b@mx.test"});
    t0 = now_ms();
    assert_int_equal(smtp_client_deliver(&p, r, 2, &res), 0);
    took = now_ms() - t0;
    fake_finish(f);
    assert_true(took < 2000);
    expect_rcpt(&r[0], SMTP_CLIENT_TEMP, "4.4.2", NULL);
    assert_non_null(strstr(r[0].reply, "timeout after the end of data"));
    expect_rcpt(&r[1], SMTP_CLIENT_PERM, "5.0.0", "550 no");
    fake_free(&f);
}

static void test_connection_refused(void **state)
{
    /* a port nobody listens on: bound, then closed */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sin;
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
    close(fd);
    struct smtp_client_params p;
    base_params(&p, ntohs(sin.sin_port), "x\r\n");
    struct smtp_client_rcpt r[2];
    rcpts_init(r, 2, (const char *[]){"a@mx.test", "b@mx.test"});
    struct smtp_client_result res;
    long long t0 = now_ms();
    assert_int_equal(smtp_client_deliver(&p, r, 2, &res), 0);
    assert_true(now_ms() - t0 < 1000);
    assert_int_equal(res.failure, SMTP_CLIENT_FAIL_CONNECT);
    assert_string_equal(res.status, "4.4.1");
    expect_rcpt(&r[0], SMTP_CLIENT_TEMP, "4.4.1", NULL);
    expect_rcpt(&r[1], SMTP_CLIENT_TEMP, "4.4.1", NULL);
    assert_non_null(strstr(r[0].reply, "refused"));
    assert_non_null(strstr(r[0].reply, "mx.test[127.0.0.1]"));
    assert_int_equal(res.temp, 2);
    assert_string_equal(smtp_client_failure_str(res.failure), "connect");
}

static void test_garbled_and_lost(void **state)
{
    static const struct step garbage[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", "250-mx.test\r\n251 mixed codes\r\n"},
    };
    struct fake *f = FAKE_START(garbage);
    struct smtp_client_params p;
    base_params(&p, f->port, "x\r\n");
    struct smtp_client_rcpt r[1];
    rcpts_init(r, 1, (const char *[]){"a@mx.test"});
    struct smtp_client_result res;
    assert_int_equal(smtp_client_deliver(&p, r, 1, &res), 0);
    fake_finish(f);
    assert_int_equal(res.failure, SMTP_CLIENT_FAIL_PROTOCOL);
    expect_rcpt(&r[0], SMTP_CLIENT_TEMP, "4.5.0", NULL);
    fake_free(&f);

    static const struct step http[] = {
        {A_ACCEPT, NULL, "HTTP/1.1 400 Bad Request\r\n\r\n"},
    };
    f = FAKE_START(http);
    base_params(&p, f->port, "x\r\n");
    rcpts_init(r, 1, (const char *[]){"a@mx.test"});
    assert_int_equal(smtp_client_deliver(&p, r, 1, &res), 0);
    fake_finish(f);
    assert_int_equal(res.failure, SMTP_CLIENT_FAIL_PROTOCOL);
    expect_rcpt(&r[0], SMTP_CLIENT_TEMP, "4.5.0", NULL);
    fake_free(&f);

    /* hung up in the middle of the transaction */
    static const struct step lost[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_PLAIN},
        {A_CLOSE, "MAIL FROM:<sender@client.test>", NULL},
    };
    f = FAKE_START(lost);
    base_params(&p, f->port, "x\r\n");
    rcpts_init(r, 1, (const char *[]){"a@mx.test"});
    assert_int_equal(smtp_client_deliver(&p, r, 1, &res), 0);
    fake_finish(f);
    assert_int_equal(res.failure, SMTP_CLIENT_FAIL_NETWORK);
    expect_rcpt(&r[0], SMTP_CLIENT_TEMP, "4.4.2", NULL);
    assert_non_null(strstr(r[0].reply, "connection closed"));
    fake_free(&f);

    /* a reply of too many lines */
    static char longreply[200 * 13 + 16];
    static struct step many[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", longreply},
    };
    size_t o = 0;
    for (int i = 0; i < 200; i++)
        o += (size_t)snprintf(longreply + o, sizeof longreply - o, "250-line%03d\r\n", i);
    snprintf(longreply + o, sizeof longreply - o, "250 end\r\n");
    f = FAKE_START(many);
    base_params(&p, f->port, "x\r\n");
    rcpts_init(r, 1, (const char *[]){"a@mx.test"});
    assert_int_equal(smtp_client_deliver(&p, r, 1, &res), 0);
    fake_finish(f);
    assert_int_equal(res.failure, SMTP_CLIENT_FAIL_PROTOCOL);
    fake_free(&f);
}

static void test_bad_addresses_and_params(void **state)
{
    static const struct step script[] = {
        {A_ACCEPT, NULL, GREET},
        {A_NONE, "EHLO client.test", EHLO_PLAIN},
        {A_NONE, "MAIL FROM:<sender@client.test>", "250 ok\r\n"},
        {A_NONE, "RCPT TO:<good@mx.test>", "250 ok\r\n"},
        {A_DATA, "DATA", "354 go ahead\r\n"},
        {A_NONE, NULL, "250 ok\r\n"},
        {A_NONE, "QUIT", "221 bye\r\n"},
    };
    struct fake *f = FAKE_START(script);
    struct smtp_client_params p;
    base_params(&p, f->port, "x\r\n");
    struct smtp_client_rcpt r[4];
    rcpts_init(r, 4, (const char *[]){"evil@x\r\nRSET", "good@mx.test", "<angle@mx.test>", ""});
    struct smtp_client_result res;
    assert_int_equal(smtp_client_deliver(&p, r, 4, &res), 0);
    fake_finish(f);
    expect_rcpt(&r[0], SMTP_CLIENT_PERM, "5.1.3", NULL);
    expect_rcpt(&r[1], SMTP_CLIENT_DELIVERED, "2.0.0", NULL);
    expect_rcpt(&r[2], SMTP_CLIENT_PERM, "5.1.3", NULL);
    expect_rcpt(&r[3], SMTP_CLIENT_PERM, "5.1.3", NULL);
    assert_null(strstr(f->log, "RSET"));
    fake_free(&f);

    /* a bad sender: nothing to try, no connection */
    base_params(&p, 1, "x\r\n");
    p.sender = "a@b\nc";
    rcpts_init(r, 1, (const char *[]){"good@mx.test"});
    assert_int_equal(smtp_client_deliver(&p, r, 1, &res), 0);
    assert_int_equal(res.connections, 0);
    expect_rcpt(&r[0], SMTP_CLIENT_PERM, "5.1.7", NULL);

    /* unusable parameters: -1, recipients untouched */
    struct smtp_client_params bad;
    base_params(&bad, 1, "x\r\n");
    bad.helo = NULL;
    rcpts_init(r, 1, (const char *[]){"good@mx.test"});
    assert_int_equal(smtp_client_deliver(&bad, r, 1, &res), -1);
    assert_int_equal(r[0].cls, SMTP_CLIENT_PENDING);
    assert_non_null(strstr(res.reply, "HELO"));
    base_params(&bad, 1, "x\r\n");
    bad.auth_user = "only-user";
    assert_int_equal(smtp_client_deliver(&bad, r, 1, &res), -1);
    base_params(&bad, 1, "x\r\n");
    bad.read = NULL;
    assert_int_equal(smtp_client_deliver(&bad, r, 1, &res), -1);
    base_params(&bad, 1, "x\r\n");
    assert_int_equal(smtp_client_deliver(&bad, r, 0, &res), -1);
    assert_int_equal(smtp_client_deliver(&bad, r, SMTP_CLIENT_MAX_RCPTS + 1, &res), -1);
    assert_int_equal(smtp_client_deliver(NULL, r, 1, &res), -1);
    bad.tls = (enum smtp_client_tls)7;
    assert_int_equal(smtp_client_deliver(&bad, r, 1, &res), -1);
    base_params(&bad, 1, "x\r\n");
    bad.helo = "two words";
    assert_int_equal(smtp_client_deliver(&bad, r, 1, &res), -1);
    assert_int_equal(r[0].cls, SMTP_CLIENT_PENDING);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_happy_path),
        cmocka_unit_test(test_recipient_refused_multiline),
        cmocka_unit_test(test_all_recipients_refused),
        cmocka_unit_test(test_mail_refused),
        cmocka_unit_test(test_data_4xx),
        cmocka_unit_test(test_end_of_data_refused),
        cmocka_unit_test(test_421_during_rcpt),
        cmocka_unit_test(test_greeting_refused_and_helo_fallback),
        cmocka_unit_test(test_dot_stuffing_and_line_ends),
        cmocka_unit_test(test_large_message),
        cmocka_unit_test(test_read_failure),
        cmocka_unit_test(test_extensions_when_offered),
        cmocka_unit_test(test_smtputf8),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_starttls_opportunistic),
        cmocka_unit_test(test_starttls_opportunistic_fallback),
        cmocka_unit_test(test_starttls_required_failures),
        cmocka_unit_test(test_starttls_required_checks),
        cmocka_unit_test(test_auth_plain),
        cmocka_unit_test(test_auth_login_and_failures),
        cmocka_unit_test(test_timeout_silent_server),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_garbled_and_lost),
        cmocka_unit_test(test_bad_addresses_and_params),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
