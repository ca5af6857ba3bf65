/* The SMTP services: "smtp" (port 25, the MX), "submission" (587) and
 * "submissions" (465, implicit TLS, RFC 8314). One session machine serves all
 * three; they differ in what they demand (submission: AUTH before MAIL).
 *
 * Input is processed strictly in order. Commands that need the directory
 * (RCPT, AUTH) or storage (the end of DATA/BDAT) run as worker jobs; while one
 * runs the connection is paused and later pipelined input waits in the
 * session's buffer (RFC 2920: replies keep the order of the commands). A job
 * owns everything it works on, so a client that disconnects meanwhile only
 * makes its result be thrown away.
 *
 * The message body goes to an anonymous spool file as it arrives (memory per
 * session stays bounded by the line limit); the end of data stores it with
 * smtp_message_store(), which commits before "250" is sent (DESIGN §5: an
 * accepted message is never lost). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "node/access.h"
#include "node/conn.h"
#include "node/ips.h"
#include "node/metrics.h"
#include "node/server.h"
#include "node/services.h"
#include "node/smtp/delivery.h"
#include "node/smtp/route.h"
#include "node/workers.h"
#include "proto/sasl/sasl.h"
#include "proto/smtp/smtp.h"
#include "storage/aliases.h"
#include "storage/directory.h"
#include "storage/password.h"
#include "storage/policy.h"

/* Pipelined input kept while a job runs: more than this and the client is not
 * waiting for replies as RFC 2920 §3.1 allows, so reading stops (pause). */
#define SMTP_INPUT_MAX (SMTP_LINE_MAX + 65536)
/* Failed AUTH attempts per session before the connection is closed. */
#define SMTP_AUTH_FAILURES_MAX 3
/* Most messages in one session. */
#define SMTP_MESSAGES_MAX 1000

enum smtp_kind { KIND_MX, KIND_SUBMISSION, KIND_SUBMISSIONS };
enum phase { PH_COMMAND, PH_DATA, PH_BDAT, PH_AUTH };

struct smtp_session {
    struct conn *c;
    struct runtime *rt; /* the configuration this session started with */
    const struct smtp_config *cfg;
    enum smtp_kind kind;
    enum phase phase;
    bool busy; /* a job is running */
    bool quit; /* close after the current reply */
    char *in;  /* unprocessed input */
    size_t inlen;
    bool skipping_line; /* inside an over-long line, dropping it */
    unsigned errors;
    unsigned messages;

    char helo[256];
    bool greeted, esmtp;
    bool may_relay; /* trusted address or authenticated */

    /* authentication */
    bool authed;
    struct dir_account account;
    struct sasl_server *sasl;
    unsigned auth_failures;

    /* the mail transaction */
    bool in_mail;
    struct smtp_mail mail;
    struct smtp_route *routes;
    size_t nroutes;
    FILE *spool;
    struct smtp_data data;
    uint64_t size; /* bytes written to the spool */
    bool too_big, write_failed;
    /* header scan of the decoded body: Received: lines (loop detection) */
    bool in_headers, line_start;
    char head[10];
    size_t headlen;
    unsigned received;
    uint64_t bdat_left;
    bool bdat_last, bdat_failed;
    char txid[24];
};

static void process(struct smtp_session *s);

/* ---- output ---- */

static void reply(struct smtp_session *s, int code, const char *text)
{
    conn_printf(s->c, "%d %s\r\n", code, text);
}

static void reply_r(struct smtp_session *s, const struct smtp_reply *r)
{
    reply(s, r->code, r->text);
}

/* A protocol error: counted; too many end the session (Postfix's
 * smtpd_hard_error_limit). */
static void error_reply(struct smtp_session *s, int code, const char *text)
{
    reply(s, code, text);
    metrics_command(conn_metrics(s->c), 0, true);
    if (++s->errors >= s->cfg->max_errors) {
        reply(s, 421, "4.7.0 Too many errors, closing connection");
        conn_log(s->c, LOG_SUMMARY, "too many errors");
        s->quit = true;
        conn_close(s->c);
    }
}

/* ---- the transaction ---- */

static void routes_free(struct smtp_route *routes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        smtp_route_free(&routes[i]);
    free(routes);
}

static void transaction_reset(struct smtp_session *s)
{
    s->in_mail = false;
    memset(&s->mail, 0, sizeof(s->mail));
    routes_free(s->routes, s->nroutes);
    s->routes = NULL;
    s->nroutes = 0;
    if (s->spool)
        fclose(s->spool);
    s->spool = NULL;
    s->size = 0;
    s->too_big = s->write_failed = false;
    s->bdat_failed = false;
    s->bdat_left = 0;
    s->phase = PH_COMMAND;
}

static void session_reset(struct smtp_session *s)
{
    transaction_reset(s);
    sasl_server_free(&s->sasl);
    s->greeted = s->esmtp = false;
    s->helo[0] = '\0';
}

/* ---- worker jobs ---- */

enum job_kind { JOB_RCPT, JOB_PASSWORD, JOB_VERIFIER, JOB_STORE, JOB_SENDER };

struct smtp_job {
    struct job job;
    struct conn *c;
    enum job_kind kind;
    int rc;
    /* RCPT */
    struct smtp_rcpt rcpt;
    long long size;
    bool may_relay;
    struct smtp_route route;
    struct smtp_reply reply;
    /* AUTH */
    char user[SASL_USER_MAX + 1];
    char password[SASL_PASSWORD_MAX + 1];
    char verifier[PASSWORD_SCRAM_MAX];
    struct dir_account account;
    bool allowed;
    /* storing */
    struct smtp_mail mail;
    struct smtp_route *routes;
    size_t nroutes;
    FILE *spool;
    char *received;
    char node[64];
    unsigned lifetime;
    long long queue_id;
    int autoreplies;
    uint64_t bytes;
    long long auth_account;
    char hostname[256];
    char err[256];
};

static void job_work(struct job *j, struct worker *w)
{
    struct smtp_job *sj = (struct smtp_job *)j;
    PGconn *db = worker_db(w, sj->err, sizeof(sj->err));
    if (!db) {
        sj->rc = -2;
        sj->reply = (struct smtp_reply){451, "4.3.0 Temporary failure, try again later"};
        return;
    }
    switch (sj->kind) {
    case JOB_RCPT:
        sj->rc = smtp_route_resolve(db, &sj->rcpt, sj->size, sj->may_relay, &sj->route, &sj->reply);
        break;
    case JOB_PASSWORD:
        sj->rc = dir_authenticate(db, sj->user, sj->password, &sj->account);
        explicit_bzero(sj->password, sizeof(sj->password));
        if (sj->rc == 0 && policy_service_allowed(db, sj->account.id, "smtp", &sj->allowed, sj->err,
                                                  sizeof(sj->err)) != 0)
            sj->rc = -2;
        break;
    case JOB_VERIFIER:
        sj->rc = dir_scram_lookup(db, sj->user, &sj->account, sj->verifier);
        if (sj->rc == 0 && policy_service_allowed(db, sj->account.id, "smtp", &sj->allowed, sj->err,
                                                  sizeof(sj->err)) != 0)
            sj->rc = -2;
        break;
    case JOB_SENDER: {
        /* the sender must be one of the authenticated account's own addresses
         * (its address or an alias; not a catch-all) */
        struct dir_target t;
        int rc = dir_resolve(db, sj->mail.address, &t, sj->err, sizeof(sj->err));
        sj->rc = rc == -1 ? -2 : 0;
        sj->allowed = rc == 0 && t.account.id == sj->account.id && t.via != DIR_VIA_CATCHALL;
        break;
    }
    case JOB_STORE: {
        struct smtp_message m = {.spool = sj->spool,
                                 .received = sj->received,
                                 .mail = &sj->mail,
                                 .routes = sj->routes,
                                 .nroutes = sj->nroutes,
                                 .node = sj->node,
                                 .queue_lifetime = sj->lifetime,
                                 .auth_account = sj->auth_account,
                                 .hostname = sj->hostname};
        sj->rc =
            smtp_message_store(db, server_blobs(), &m, &sj->queue_id, &sj->autoreplies, sj->err,
                               sizeof(sj->err));
        break;
    }
    }
    if (sj->rc == -2)
        worker_db_check(w);
}

static void job_free(struct smtp_job *sj)
{
    smtp_route_free(&sj->route);
    routes_free(sj->routes, sj->nroutes);
    if (sj->spool)
        fclose(sj->spool);
    free(sj->received);
    explicit_bzero(sj->password, sizeof(sj->password));
    explicit_bzero(sj->verifier, sizeof(sj->verifier));
    free(sj);
}

static void rcpt_done(struct smtp_session *s, struct smtp_job *sj);
static void password_done(struct smtp_session *s, struct smtp_job *sj);
static void verifier_done(struct smtp_session *s, struct smtp_job *sj);
static void store_done(struct smtp_session *s, struct smtp_job *sj);
static void sender_done(struct smtp_session *s, struct smtp_job *sj);

static void job_done(struct job *j)
{
    struct smtp_job *sj = (struct smtp_job *)j;
    struct conn *c = sj->c;
    if (!conn_closing(c)) {
        struct smtp_session *s = conn_session(c);
        s->busy = false;
        switch (sj->kind) {
        case JOB_RCPT:
            rcpt_done(s, sj);
            break;
        case JOB_PASSWORD:
            password_done(s, sj);
            break;
        case JOB_VERIFIER:
            verifier_done(s, sj);
            break;
        case JOB_STORE:
            store_done(s, sj);
            break;
        case JOB_SENDER:
            sender_done(s, sj);
            break;
        }
        if (s->quit && !conn_closing(c))
            conn_close(c); /* the node is stopping: the reply was the last word */
        if (!conn_closing(c)) {
            conn_resume(c);
            process(s);
        }
    } else if (sj->kind == JOB_STORE && sj->rc == 0) {
        /* stored, but the client went away before hearing "250": it will
         * send the message again (RFC 5321 §6.1 allows duplicates, not loss) */
        conn_log(c, LOG_SUMMARY, "message stored but client disconnected before the reply");
    }
    job_free(sj);
    conn_release(c);
}

static struct smtp_job *job_new(struct smtp_session *s, enum job_kind kind)
{
    struct smtp_job *sj = calloc(1, sizeof(*sj));
    if (!sj)
        return NULL;
    sj->c = s->c;
    sj->kind = kind;
    sj->job.work = job_work;
    sj->job.done = job_done;
    return sj;
}

/* Submits the job; on failure answers 451 and frees it. */
static void job_submit(struct smtp_session *s, struct smtp_job *sj)
{
    if (workers_submit(server_workers(), &sj->job) < 0) {
        job_free(sj);
        reply(s, 451, "4.3.2 Server busy, try again later");
        return;
    }
    s->busy = true;
    conn_hold(s->c);
    conn_pause(s->c);
}

/* ---- EHLO and friends ---- */

static bool tls_possible(struct smtp_session *s)
{
    return !conn_is_tls(s->c) && s->rt->tls != NULL;
}

static bool auth_possible(struct smtp_session *s)
{
    return conn_is_tls(s->c) || !s->cfg->auth_requires_tls;
}

static void cmd_ehlo(struct smtp_session *s, const char *arg, bool esmtp)
{
    if (!*arg || strlen(arg) >= sizeof(s->helo)) {
        error_reply(s, 501, esmtp ? "5.5.4 Syntax: EHLO hostname" : "5.5.4 Syntax: HELO hostname");
        return;
    }
    /* RFC 5321 §4.1.4: EHLO/HELO also reset the transaction */
    transaction_reset(s);
    snprintf(s->helo, sizeof(s->helo), "%s", arg);
    for (char *p = s->helo; *p; p++)
        if (!isgraph((unsigned char)*p))
            *p = '?';
    s->greeted = true;
    s->esmtp = esmtp;
    const char *host = s->cfg->hostname;
    if (!esmtp) {
        conn_printf(s->c, "250 %s\r\n", host);
        return;
    }
    conn_printf(s->c, "250-%s Hello %s\r\n", host, s->helo);
    conn_printf(s->c, "250-SIZE %zu\r\n", s->cfg->max_message_size);
    conn_printf(s->c, "%s",
                "250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
                "250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250-DSN\r\n");
    if (tls_possible(s))
        conn_printf(s->c, "%s", "250-STARTTLS\r\n");
    if (!s->authed && auth_possible(s))
        conn_printf(s->c, "%s", "250-AUTH PLAIN LOGIN SCRAM-SHA-256\r\n");
    conn_printf(s->c, "%s", "250 HELP\r\n");
}

static void cmd_starttls(struct smtp_session *s, const char *arg)
{
    if (*arg) {
        error_reply(s, 501, "5.5.4 Syntax: STARTTLS");
        return;
    }
    if (conn_is_tls(s->c)) {
        error_reply(s, 503, "5.5.1 Already using TLS");
        return;
    }
    if (!tls_possible(s)) {
        error_reply(s, 454, "4.7.0 TLS not available");
        return;
    }
    reply(s, 220, "2.0.0 Ready to start TLS");
    if (conn_starttls(s->c) < 0) {
        conn_close(s->c);
        return;
    }
    /* RFC 3207 §4.2: forget everything, including what the client pipelined
     * after STARTTLS in plain text (it could have been injected). */
    s->inlen = 0;
    s->skipping_line = false;
    session_reset(s);
}

/* ---- AUTH (RFC 4954) ---- */

static void auth_finish(struct smtp_session *s, bool ok)
{
    sasl_server_free(&s->sasl);
    s->phase = PH_COMMAND;
    /* Intrusion prevention: every AUTH outcome passes here (password and SCRAM
     * paths alike). On this I/O thread ips only queues the report; the
     * counting runs on its own thread (node/ips.h). */
    if (ok)
        ips_login_ok(conn_service(s->c), conn_peer_addr(s->c));
    else
        ips_login_failed(conn_service(s->c), conn_peer_addr(s->c));
    if (ok) {
        s->authed = true;
        s->may_relay = true;
        conn_log(s->c, LOG_SUMMARY, "authenticated %s", s->account.address);
        reply(s, 235, "2.7.0 Authentication successful");
        metrics_command(conn_metrics(s->c), 0, false);
        return;
    }
    conn_log(s->c, LOG_SUMMARY, "authentication failed");
    reply(s, 535, "5.7.8 Authentication credentials invalid");
    metrics_command(conn_metrics(s->c), 0, true);
    if (++s->auth_failures >= SMTP_AUTH_FAILURES_MAX) {
        reply(s, 421, "4.7.0 Too many failed authentications, closing connection");
        s->quit = true;
        conn_close(s->c);
    }
}

static void auth_result(struct smtp_session *s, enum sasl_result r, const unsigned char *ch,
                        size_t chlen)
{
    switch (r) {
    case SASL_CONTINUE: {
        char b64[SASL_CHALLENGE_MAX * 2];
        if (sasl_b64_encode(ch, chlen, b64, sizeof(b64)) < 0) {
            auth_finish(s, false);
            return;
        }
        conn_printf(s->c, "334 %s\r\n", b64);
        s->phase = PH_AUTH;
        return;
    }
    case SASL_CHECK_PASSWORD: {
        struct smtp_job *sj = job_new(s, JOB_PASSWORD);
        if (!sj) {
            auth_finish(s, false);
            return;
        }
        snprintf(sj->user, sizeof(sj->user), "%s", sasl_server_user(s->sasl));
        snprintf(sj->password, sizeof(sj->password), "%s", sasl_server_password(s->sasl));
        s->phase = PH_COMMAND;
        job_submit(s, sj);
        return;
    }
    case SASL_NEED_VERIFIER: {
        struct smtp_job *sj = job_new(s, JOB_VERIFIER);
        if (!sj) {
            auth_finish(s, false);
            return;
        }
        snprintf(sj->user, sizeof(sj->user), "%s", sasl_server_user(s->sasl));
        s->phase = PH_COMMAND;
        job_submit(s, sj);
        return;
    }
    case SASL_SUCCESS:
        auth_finish(s, true);
        return;
    case SASL_FAIL:
        auth_finish(s, false);
        return;
    case SASL_MALFORMED:
        sasl_server_free(&s->sasl);
        s->phase = PH_COMMAND;
        error_reply(s, 501, "5.5.2 Invalid SASL response");
        return;
    }
}

static void auth_step(struct smtp_session *s, const char *b64, bool has_data)
{
    unsigned char buf[SMTP_LINE_MAX];
    long n = 0;
    if (has_data && strcmp(b64, "=") != 0) {
        n = sasl_b64_decode(b64, strlen(b64), buf, sizeof(buf));
        if (n < 0) {
            sasl_server_free(&s->sasl);
            s->phase = PH_COMMAND;
            error_reply(s, 501, "5.5.2 Cannot decode the response");
            return;
        }
    }
    unsigned char ch[SASL_CHALLENGE_MAX];
    size_t chlen = 0;
    enum sasl_result r = sasl_server_step(s->sasl, buf, (size_t)n, has_data, ch, &chlen);
    explicit_bzero(buf, sizeof(buf));
    auth_result(s, r, ch, chlen);
}

static void cmd_auth(struct smtp_session *s, const char *arg)
{
    if (!s->greeted || !s->esmtp) {
        error_reply(s, 503, "5.5.1 Send EHLO first");
        return;
    }
    if (s->authed) {
        error_reply(s, 503, "5.5.1 Already authenticated");
        return;
    }
    if (s->in_mail) {
        error_reply(s, 503, "5.5.1 AUTH not permitted during a mail transaction");
        return;
    }
    if (!auth_possible(s)) {
        error_reply(s, 538, "5.7.11 Encryption required for requested authentication mechanism");
        return;
    }
    char mech[32];
    const char *sp = strchr(arg, ' ');
    size_t ml = sp ? (size_t)(sp - arg) : strlen(arg);
    enum sasl_mech m;
    if (ml == 0 || ml >= sizeof(mech)) {
        error_reply(s, 501, "5.5.4 Syntax: AUTH mechanism [initial-response]");
        return;
    }
    memcpy(mech, arg, ml);
    mech[ml] = '\0';
    if (sasl_mech_parse(mech, &m) < 0) {
        error_reply(s, 504, "5.5.4 Unrecognized authentication type");
        return;
    }
    s->sasl = sasl_server_new(m);
    if (!s->sasl) {
        reply(s, 454, "4.7.0 Temporary authentication failure");
        return;
    }
    if (sp) {
        while (*sp == ' ')
            sp++;
        auth_step(s, sp, true);
    } else {
        auth_step(s, "", false);
    }
}

static void auth_line(struct smtp_session *s, const char *line)
{
    if (!strcmp(line, "*")) {
        sasl_server_free(&s->sasl);
        s->phase = PH_COMMAND;
        error_reply(s, 501, "5.0.0 Authentication cancelled");
        return;
    }
    auth_step(s, line, true);
}

static void password_done(struct smtp_session *s, struct smtp_job *sj)
{
    if (!s->sasl)
        return;
    if (sj->rc == -2) {
        sasl_server_free(&s->sasl);
        reply(s, 454, "4.7.0 Temporary authentication failure");
        return;
    }
    bool ok = sj->rc == 0 && sj->allowed;
    if (ok)
        s->account = sj->account;
    enum sasl_result r = sasl_server_password_result(s->sasl, ok);
    auth_result(s, r, NULL, 0);
}

static void verifier_done(struct smtp_session *s, struct smtp_job *sj)
{
    if (!s->sasl)
        return;
    if (sj->rc == -2) {
        sasl_server_free(&s->sasl);
        reply(s, 454, "4.7.0 Temporary authentication failure");
        return;
    }
    int iter = 0;
    unsigned char salt[PASSWORD_SCRAM_SALT_MAX], stored[PASSWORD_SCRAM_KEY_LEN],
        server[PASSWORD_SCRAM_KEY_LEN];
    size_t saltlen = 0;
    bool found = sj->rc == 0 && sj->allowed &&
                 password_scram_parse(sj->verifier, &iter, salt, &saltlen, stored, server) == 0 &&
                 saltlen <= SASL_SCRAM_SALT_MAX;
    if (found)
        s->account = sj->account;
    unsigned char ch[SASL_CHALLENGE_MAX];
    size_t chlen = 0;
    enum sasl_result r =
        sasl_server_set_verifier(s->sasl, found, iter, salt, saltlen, stored, server, ch, &chlen);
    explicit_bzero(stored, sizeof(stored));
    explicit_bzero(server, sizeof(server));
    auth_result(s, r, ch, chlen);
}

/* ---- MAIL, RCPT ---- */

static void mail_accepted(struct smtp_session *s)
{
    s->in_mail = true;
    snprintf(s->txid, sizeof(s->txid), "%s.%u", conn_id(s->c), s->messages + 1);
    conn_log(s->c, LOG_DEBUG, "from=<%s> size=%lld", s->mail.address, s->mail.size);
    reply(s, 250, "2.1.0 Ok");
}

static void cmd_mail(struct smtp_session *s, const char *arg)
{
    if (!s->greeted) {
        error_reply(s, 503, "5.5.1 Send HELO/EHLO first");
        return;
    }
    if (s->in_mail) {
        error_reply(s, 503, "5.5.1 Nested MAIL command");
        return;
    }
    if (s->kind != KIND_MX && !s->authed) {
        error_reply(s, 530, "5.7.0 Authentication required");
        return;
    }
    if (s->messages >= SMTP_MESSAGES_MAX) {
        reply(s, 421, "4.7.0 Too many messages in one session");
        s->quit = true;
        conn_close(s->c);
        return;
    }
    struct smtp_reply err;
    if (smtp_mail_parse(arg, &s->mail, &err) != 0) {
        error_reply(s, err.code, err.text);
        return;
    }
    if (!s->esmtp && (s->mail.size >= 0 || s->mail.body || s->mail.smtputf8 || s->mail.ret ||
                      s->mail.envid[0] || s->mail.auth[0])) {
        error_reply(s, 555, "5.5.4 Parameters need EHLO");
        return;
    }
    if (s->mail.utf8_address && !s->mail.smtputf8) {
        error_reply(s, 553, "5.6.7 Non-ASCII address needs SMTPUTF8");
        return;
    }
    if (s->mail.size > (long long)s->cfg->max_message_size) {
        error_reply(s, 552, "5.3.4 Message size exceeds fixed maximum message size");
        return;
    }
    if (s->authed && s->mail.address[0] && s->cfg->sender_login_check) {
        struct smtp_job *sj = job_new(s, JOB_SENDER);
        if (!sj) {
            reply(s, 451, "4.3.0 Out of memory");
            return;
        }
        sj->mail = s->mail;
        sj->account = s->account;
        job_submit(s, sj);
        return;
    }
    mail_accepted(s);
}

static void sender_done(struct smtp_session *s, struct smtp_job *sj)
{
    if (sj->rc != 0) {
        reply(s, 451, "4.3.0 Temporary lookup failure");
        return;
    }
    if (!sj->allowed) {
        conn_log(s->c, LOG_SUMMARY, "sender <%s> refused for %s", sj->mail.address,
                 s->account.address);
        error_reply(s, 553, "5.7.1 Sender address not owned by the authenticated user");
        return;
    }
    mail_accepted(s);
}

static void cmd_rcpt(struct smtp_session *s, const char *arg)
{
    if (!s->in_mail) {
        error_reply(s, 503, "5.5.1 Need MAIL before RCPT");
        return;
    }
    if (s->nroutes >= s->cfg->max_recipients) {
        reply(s, 452, "4.5.3 Too many recipients");
        return;
    }
    struct smtp_job *sj = job_new(s, JOB_RCPT);
    if (!sj) {
        reply(s, 451, "4.3.0 Out of memory");
        return;
    }
    struct smtp_reply err;
    if (smtp_rcpt_parse(arg, &sj->rcpt, &err) != 0) {
        job_free(sj);
        error_reply(s, err.code, err.text);
        return;
    }
    if (sj->rcpt.utf8_address && !s->mail.smtputf8) {
        job_free(sj);
        error_reply(s, 553, "5.6.7 Non-ASCII address needs SMTPUTF8");
        return;
    }
    if (!strchr(sj->rcpt.address, '@')) {
        /* "<Postmaster>": RFC 5321 §4.5.1, ours is the one of the server's name */
        char pm[SMTP_ADDRESS_MAX + 1];
        snprintf(pm, sizeof(pm), "postmaster@%s", s->cfg->hostname);
        snprintf(sj->rcpt.address, sizeof(sj->rcpt.address), "%s", pm);
    }
    sj->size = s->mail.size;
    sj->may_relay = s->may_relay;
    job_submit(s, sj);
}

static void rcpt_done(struct smtp_session *s, struct smtp_job *sj)
{
    if (sj->rc != 0) {
        conn_log(s->c, LOG_SUMMARY, "rcpt <%s> refused: %d %s", sj->rcpt.address, sj->reply.code,
                 sj->reply.text);
        if (sj->reply.code >= 500)
            error_reply(s, sj->reply.code, sj->reply.text);
        else
            reply_r(s, &sj->reply);
        return;
    }
    struct smtp_route *n = realloc(s->routes, (s->nroutes + 1) * sizeof(*n));
    if (!n) {
        reply(s, 451, "4.3.0 Out of memory");
        return;
    }
    s->routes = n;
    n[s->nroutes++] = sj->route;
    memset(&sj->route, 0, sizeof(sj->route)); /* moved */
    conn_log(s->c, LOG_DEBUG, "rcpt <%s> accepted", sj->rcpt.address);
    reply(s, 250, "2.1.5 Ok");
}

/* ---- the message body ---- */

static bool spool_open(struct smtp_session *s)
{
    if (s->spool)
        return true;
    s->spool = tmpfile();
    if (!s->spool) {
        conn_log(s->c, LOG_SUMMARY, "cannot create a spool file");
        return false;
    }
    s->in_headers = true;
    s->line_start = true;
    s->headlen = 0;
    s->received = 0;
    return true;
}

/* Counts Received: fields at the start of header lines of the decoded body. */
static void scan_headers(struct smtp_session *s, const char *p, size_t n)
{
    for (size_t i = 0; i < n && s->in_headers; i++) {
        char ch = p[i];
        if (s->line_start) {
            if (s->headlen == 0 && (ch == '\r' || ch == '\n')) {
                s->in_headers = false; /* the empty line ends the header section */
                return;
            }
            if (s->headlen < 9) {
                s->head[s->headlen++] = ch;
                if (s->headlen == 9) {
                    s->head[9] = '\0';
                    if (!strncasecmp(s->head, "Received:", 9))
                        s->received++;
                    s->line_start = false;
                }
            }
            if (ch == '\n') {
                s->headlen = 0;
                s->line_start = true;
            } else if (s->headlen < 9 && ch == '\r') {
                s->line_start = false;
            }
            continue;
        }
        if (ch == '\n') {
            s->line_start = true;
            s->headlen = 0;
        }
    }
}

static int body_out(void *ctx, const char *p, size_t n)
{
    struct smtp_session *s = ctx;
    if (s->too_big || s->write_failed)
        return 0;
    if (s->size + n > s->cfg->max_message_size) {
        s->too_big = true;
        return 0;
    }
    scan_headers(s, p, n);
    if (fwrite(p, 1, n, s->spool) != n)
        s->write_failed = true;
    s->size += n;
    return 0;
}

/* The trace field (RFC 5321 §4.4) with the RFC 3848 protocol name. */
static char *received_field(struct smtp_session *s)
{
    char date[64];
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
    const char *proto = !s->esmtp                        ? "SMTP"
                        : conn_is_tls(s->c) && s->authed ? "ESMTPSA"
                        : conn_is_tls(s->c)              ? "ESMTPS"
                        : s->authed                      ? "ESMTPA"
                                                         : "ESMTP";
    if (s->mail.smtputf8)
        proto = !strcmp(proto, "ESMTP")     ? "UTF8SMTP"
                : !strcmp(proto, "ESMTPS")  ? "UTF8SMTPS"
                : !strcmp(proto, "ESMTPA")  ? "UTF8SMTPA"
                : !strcmp(proto, "ESMTPSA") ? "UTF8SMTPSA"
                                            : proto;
    char forpart[SMTP_ADDRESS_MAX + 16] = "";
    if (s->nroutes == 1)
        snprintf(forpart, sizeof(forpart), "\r\n\tfor <%s>", s->routes[0].rcpt.address);
    char *out = NULL;
    if (asprintf(&out, "Received: from %s ([%s])\r\n\tby %s (Floe) with %s id %s%s;\r\n\t%s\r\n",
                 s->helo, conn_peer(s->c), s->cfg->hostname, proto, s->txid, forpart, date) < 0)
        return NULL;
    return out;
}

/* The body is complete: check it, then store it on a worker. */
static void message_end(struct smtp_session *s)
{
    s->phase = PH_COMMAND;
    if (s->too_big) {
        conn_log(s->c, LOG_SUMMARY, "message too big");
        transaction_reset(s);
        error_reply(s, 552, "5.3.4 Message size exceeds fixed maximum message size");
        return;
    }
    if (s->write_failed || fflush(s->spool) != 0) {
        transaction_reset(s);
        reply(s, 451, "4.3.0 Local error in processing");
        return;
    }
    if (s->received > s->cfg->max_received) {
        conn_log(s->c, LOG_SUMMARY, "mail loop: %u Received: fields", s->received);
        transaction_reset(s);
        reply(s, 554, "5.4.6 Too many hops (mail loop?)");
        return;
    }
    struct smtp_job *sj = job_new(s, JOB_STORE);
    char *received = received_field(s);
    if (!sj || !received) {
        free(sj);
        free(received);
        transaction_reset(s);
        reply(s, 451, "4.3.0 Out of memory");
        return;
    }
    sj->received = received;
    sj->mail = s->mail;
    sj->routes = s->routes;
    sj->nroutes = s->nroutes;
    sj->spool = s->spool;
    s->routes = NULL;
    s->nroutes = 0;
    s->spool = NULL;
    snprintf(sj->node, sizeof(sj->node), "%s", s->rt->cfg->node_id);
    sj->lifetime = s->cfg->queue_lifetime;
    sj->bytes = s->size;
    sj->auth_account = s->authed ? s->account.id : 0;
    snprintf(sj->hostname, sizeof(sj->hostname), "%s", s->cfg->hostname);
    snprintf(sj->err, sizeof(sj->err), "%s", s->txid);
    transaction_reset(s);
    job_submit(s, sj);
}

static void store_done(struct smtp_session *s, struct smtp_job *sj)
{
    if (sj->rc != 0) {
        conn_log(s->c, LOG_SUMMARY, "cannot store message: %s", sj->err);
        reply(s, 451, "4.3.0 Local error in processing, try again later");
        metrics_command(conn_metrics(s->c), 0, true);
        return;
    }
    s->messages++;
    if (sj->queue_id || sj->autoreplies)
        delivery_kick();
    conn_log(s->c, LOG_SUMMARY, "accepted from=<%s> rcpts=%zu size=%llu queue=%lld",
             sj->mail.address, sj->nroutes, (unsigned long long)sj->bytes, sj->queue_id);
    char text[96];
    if (sj->queue_id)
        snprintf(text, sizeof(text), "2.0.0 Ok: queued as %lld", sj->queue_id);
    else
        snprintf(text, sizeof(text), "2.0.0 Ok: delivered");
    reply(s, 250, text);
    metrics_command(conn_metrics(s->c), 0, false);
}

static void cmd_data(struct smtp_session *s, const char *arg)
{
    if (*arg) {
        error_reply(s, 501, "5.5.4 Syntax: DATA");
        return;
    }
    if (!s->in_mail) {
        error_reply(s, 503, "5.5.1 Need MAIL command");
        return;
    }
    if (s->nroutes == 0) {
        error_reply(s, 554, "5.5.1 No valid recipients");
        return;
    }
    if (s->spool) {
        /* RFC 3030 §3: DATA after BDAT is an error */
        error_reply(s, 503, "5.5.1 DATA not permitted after BDAT");
        return;
    }
    if (s->mail.body == SMTP_BODY_BINARYMIME) {
        error_reply(s, 503, "5.5.1 BINARYMIME needs BDAT");
        return;
    }
    if (!spool_open(s)) {
        reply(s, 451, "4.3.0 Local error in processing");
        return;
    }
    smtp_data_init(&s->data);
    s->phase = PH_DATA;
    reply(s, 354, "End data with <CR><LF>.<CR><LF>");
}

static void bdat_chunk_end(struct smtp_session *s);

static void cmd_bdat(struct smtp_session *s, const char *arg)
{
    uint64_t size;
    bool last;
    if (smtp_bdat_parse(arg, &size, &last) != 0) {
        /* the chunk length is unknown, so its bytes cannot be skipped */
        reply(s, 501, "5.5.4 Syntax: BDAT size [LAST]");
        s->quit = true;
        conn_close(s->c);
        return;
    }
    s->bdat_left = size;
    s->bdat_last = last;
    s->phase = PH_BDAT;
    /* RFC 3030 §2: a failed BDAT still consumes its chunk. After a failure the
     * transaction is reset, so later chunks fail for want of MAIL. */
    s->bdat_failed = !s->in_mail || s->nroutes == 0 || !spool_open(s);
    if (size == 0)
        bdat_chunk_end(s);
}

static void bdat_chunk_end(struct smtp_session *s)
{
    s->phase = PH_COMMAND;
    if (s->bdat_failed) {
        bool had_mail = s->in_mail && s->nroutes > 0;
        transaction_reset(s);
        error_reply(s, had_mail ? 451 : 503,
                    had_mail ? "4.3.0 Local error in processing"
                             : "5.5.1 Need MAIL and RCPT first");
        return;
    }
    if (s->bdat_last) {
        message_end(s);
        return;
    }
    if (s->too_big) {
        transaction_reset(s);
        error_reply(s, 552, "5.3.4 Message size exceeds fixed maximum message size");
        return;
    }
    conn_printf(s->c, "250 2.0.0 %llu octets received\r\n", (unsigned long long)s->size);
}

/* ---- commands ---- */

static void command(struct smtp_session *s, char *line, size_t len)
{
    struct smtp_command cmd;
    if (smtp_command_parse(line, len, &cmd) != 0) {
        error_reply(s, 500, "5.5.2 Syntax error, command unrecognized");
        return;
    }
    conn_log(s->c, LOG_DEBUG, "command %s", smtp_verb_name(cmd.verb));
    switch (cmd.verb) {
    case SMTP_HELO:
        cmd_ehlo(s, cmd.arg, false);
        break;
    case SMTP_EHLO:
        cmd_ehlo(s, cmd.arg, true);
        break;
    case SMTP_STARTTLS:
        cmd_starttls(s, cmd.arg);
        break;
    case SMTP_AUTH:
        cmd_auth(s, cmd.arg);
        break;
    case SMTP_MAIL:
        cmd_mail(s, cmd.arg);
        break;
    case SMTP_RCPT:
        cmd_rcpt(s, cmd.arg);
        break;
    case SMTP_DATA:
        cmd_data(s, cmd.arg);
        break;
    case SMTP_BDAT:
        cmd_bdat(s, cmd.arg);
        break;
    case SMTP_RSET:
        transaction_reset(s);
        reply(s, 250, "2.0.0 Ok");
        break;
    case SMTP_NOOP:
        reply(s, 250, "2.0.0 Ok");
        break;
    case SMTP_QUIT:
        reply(s, 221, "2.0.0 Bye");
        s->quit = true;
        conn_close(s->c);
        break;
    case SMTP_VRFY:
        /* RFC 5321 §3.5.3: no directory harvesting */
        reply(s, 252, "2.5.2 Cannot VRFY user, but will accept message and attempt delivery");
        break;
    case SMTP_EXPN:
        error_reply(s, 502, "5.5.1 EXPN not available");
        break;
    case SMTP_HELP:
        reply(s, 214, "2.0.0 See RFC 5321");
        break;
    default:
        error_reply(s, 500, "5.5.2 Syntax error, command unrecognized");
        break;
    }
}

static void consume(struct smtp_session *s, size_t n)
{
    memmove(s->in, s->in + n, s->inlen - n);
    s->inlen -= n;
}

/* Works through buffered input until it runs out, a job starts, or the
 * session ends. */
static void process(struct smtp_session *s)
{
    while (!s->busy && !s->quit && !conn_closing(s->c) && s->inlen > 0) {
        if (s->phase == PH_DATA) {
            long used = smtp_data_feed(&s->data, s->in, s->inlen, body_out, s);
            if (used < 0) {
                conn_abort(s->c);
                return;
            }
            consume(s, (size_t)used);
            if (s->data.done)
                message_end(s);
            continue;
        }
        if (s->phase == PH_BDAT) {
            size_t n = s->inlen < s->bdat_left ? s->inlen : (size_t)s->bdat_left;
            if (!s->bdat_failed)
                body_out(s, s->in, n);
            consume(s, n);
            s->bdat_left -= n;
            if (s->bdat_left == 0)
                bdat_chunk_end(s);
            continue;
        }
        char *lf = memchr(s->in, '\n', s->inlen);
        if (!lf) {
            if (s->inlen > SMTP_LINE_MAX) {
                /* RFC 5321 §4.5.3.1.4 */
                if (!s->skipping_line)
                    error_reply(s, 500, "5.5.2 Line too long");
                s->skipping_line = true;
                s->inlen = 0;
            }
            return;
        }
        size_t linelen = (size_t)(lf - s->in);
        *lf = '\0';
        if (linelen > 0 && s->in[linelen - 1] == '\r')
            s->in[--linelen] = '\0';
        bool skip = s->skipping_line || linelen > SMTP_LINE_MAX;
        if (skip && !s->skipping_line)
            error_reply(s, 500, "5.5.2 Line too long");
        s->skipping_line = false;
        char *line = malloc(linelen + 1);
        if (!line) {
            conn_abort(s->c);
            return;
        }
        memcpy(line, s->in, linelen + 1);
        consume(s, (size_t)(lf - s->in) + 1);
        if (!skip) {
            if (s->phase == PH_AUTH)
                auth_line(s, line);
            else
                command(s, line, linelen);
        }
        explicit_bzero(line, linelen);
        free(line);
    }
}

/* ---- connection callbacks ---- */

static enum smtp_kind kind_of(const char *service)
{
    if (!strcmp(service, "submission"))
        return KIND_SUBMISSION;
    if (!strcmp(service, "submissions"))
        return KIND_SUBMISSIONS;
    return KIND_MX;
}

static void smtp_open(struct conn *c)
{
    struct smtp_session *s = conn_session(c);
    s->c = c;
    s->rt = runtime_get();
    s->cfg = &s->rt->cfg->smtp;
    s->kind = kind_of(conn_service(c));
    s->in = malloc(SMTP_INPUT_MAX);
    if (!s->in) {
        conn_abort(c);
        return;
    }
    s->may_relay = access_list_match(s->cfg->relay_from, conn_peer_addr(c));
    if (!server_blobs()) {
        conn_printf(c, "421 4.3.2 %s Service not available\r\n", s->cfg->hostname);
        conn_close(c);
        return;
    }
    conn_printf(c, "220 %s ESMTP Floe\r\n", s->cfg->hostname);
}

static void smtp_data(struct conn *c, const char *data, size_t len)
{
    struct smtp_session *s = conn_session(c);
    if (!s->in || s->quit)
        return;
    /* Reads stop while a job runs, and otherwise process() leaves at most a
     * partial line, so a read always fits; anything else is a bug. */
    if (len > SMTP_INPUT_MAX - s->inlen) {
        conn_log(c, LOG_SUMMARY, "input overflow");
        conn_abort(c);
        return;
    }
    memcpy(s->in + s->inlen, data, len);
    s->inlen += len;
    process(s);
}

static void smtp_timeout(struct conn *c)
{
    struct smtp_session *s = conn_session(c);
    conn_log(c, LOG_SUMMARY, "timeout");
    if (!s->busy)
        conn_printf(c, "421 4.4.2 %s Error: timeout exceeded\r\n", s->cfg->hostname);
    conn_close(c);
}

static void smtp_shutdown(struct conn *c)
{
    struct smtp_session *s = conn_session(c);
    if (s->busy) {
        /* the job's reply is sent, then the session ends */
        s->quit = true;
        return;
    }
    conn_printf(c, "421 4.3.2 %s Service shutting down\r\n", s->cfg ? s->cfg->hostname : "");
    conn_close(c);
}

static void smtp_refuse(struct conn *c, const char *why)
{
    conn_printf(c, "421 4.7.0 Too many connections (%s)\r\n", why);
}

static void smtp_close(struct conn *c)
{
    struct smtp_session *s = conn_session(c);
    transaction_reset(s);
    sasl_server_free(&s->sasl);
    free(s->in);
    s->in = NULL;
    if (s->rt)
        runtime_put(&s->rt);
}

const struct service_ops smtp_ops = {
    .session_size = sizeof(struct smtp_session),
    .on_open = smtp_open,
    .on_data = smtp_data,
    .on_timeout = smtp_timeout,
    .on_shutdown = smtp_shutdown,
    .on_refuse = smtp_refuse,
    .on_close = smtp_close,
};
