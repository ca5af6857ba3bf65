/* The POP3 service: RFC 1939 on the shared mail store, with the RFC 2449
 * extension mechanism (CAPA, response codes, PIPELINING), RFC 5034 SASL
 * (PLAIN, LOGIN, SCRAM-SHA-256) and RFC 2595 STLS. docs/POP3.md lists what is
 * supported and what is not.
 *
 * A session is a small state machine on its connection's loop:
 *
 *   AUTHORIZATION --USER/PASS or AUTH--> (worker: authenticate, policy,
 *   maildrop lock, INBOX snapshot) --> TRANSACTION --QUIT--> (worker: apply
 *   the deletions, release the lock) --> closed.
 *
 * Input is kept in one bounded buffer and taken a line at a time
 * (proto/pop3). While a command waits for something — a worker job, the
 * delay after a failed login, a message being streamed — `waiting` is set
 * and input is paused, so pipelined commands (RFC 2449 §6.6) are answered in
 * order once the wait ends.
 *
 * The maildrop is the INBOX as it was at login (RFC 1939 §8 leaves the view
 * fixed for the session): UID, size, flags and blob id of each message.
 * Messages are read from the blob store a chunk at a time on workers (each
 * job opens a reader for its own byte range, so no reader outlives a job or
 * moves between worker connections) and written through the dot-stuffing
 * writer; a new chunk is read only when the connection's output has drained
 * below its high-water mark, so a large message is never held whole.
 *
 * Exclusive access: the account's "pop3" session lock (storage/session_lock.h)
 * is taken at login with a lease that a timer renews while the session
 * lives; a second session anywhere in the cluster gets [IN-USE]. DELE only
 * marks; the marked messages are expunged at QUIT, and a connection that ends
 * any other way changes nothing (RFC 1939 §6).
 *
 * Lifetime: connection callbacks can nest (a failed write closes the
 * connection, which calls on_close from inside our own code), so every entry
 * point brackets itself with enter()/leave() and session memory is released
 * only when the outermost one returns and no worker job is outstanding. A
 * worker job holds the connection (conn_hold) until its done() has run. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "node/conn.h"
#include "node/ips.h"
#include "node/loop.h"
#include "node/metrics.h"
#include "node/server.h"
#include "node/services.h"
#include "node/workers.h"
#include "proto/pop3/pop3.h"
#include "proto/sasl/sasl.h"
#include "storage/blob.h"
#include "storage/directory.h"
#include "storage/folders.h"
#include "storage/mailstore.h"
#include "storage/password.h"
#include "storage/policy.h"
#include "storage/session_lock.h"

#define LOCK_KIND "pop3"
/* The maildrop lock's lease and how often it is renewed: a node that dies
 * holds its users' maildrops for at most the lease. */
#define LOCK_LEASE_S 120
#define LOCK_RENEW_MS (40 * 1000)
/* A failed login is answered after this delay, and the connection closes
 * after AUTH_FAILURES_MAX of them (password guessing costs time). */
#define AUTH_DELAY_MS 1000
#define AUTH_FAILURES_MAX 3
/* Protocol errors (unknown commands, bad syntax) before the session ends. */
#define ERRORS_MAX 10
/* Unprocessed input kept while a command waits (input is paused then, so
 * this only has to hold what one read delivered). */
#define INPUT_MAX (128 * 1024)
/* Messages in one maildrop snapshot; a larger INBOX shows its oldest. */
#define MAILDROP_MAX 100000
/* Bytes of a message read per worker job: one pg chunk. */
#define READ_CHUNK BLOB_CHUNK_SIZE

enum pop3_state { ST_AUTH, ST_SASL, ST_TRANS, ST_QUIT };

struct pop3_msg {
    uint64_t size;
    uint32_t uid;
    uint8_t flags;  /* MAIL_* at login */
    bool deleted;   /* DELE, undone by RSET */
    bool retrieved; /* RETR completed: \Seen at QUIT */
    unsigned char blob[BLOB_ID_LEN / 2];
};

struct stream {
    uint32_t idx;
    bool top, header_sent, drain_wait, waited;
    unsigned long long off;
    struct pop3_stuffer st;
};

struct pop3_session {
    struct conn *c;
    enum pop3_state state;
    int depth;      /* our callbacks on the stack */
    bool closed;    /* on_close has run */
    bool job;       /* a command's worker job is outstanding */
    bool renew_job; /* a lock renewal is outstanding */
    bool waiting;   /* input waits for the current command to finish */
    bool skipping;  /* discarding the rest of an over-long line */
    bool timers;    /* the timers below are initialised */
    bool locked;    /* we hold the maildrop lock */
    bool streaming;
    unsigned errors, auth_failures;
    unsigned idle_timeout;
    uint64_t cmd_started_ns;
    uint64_t progress, progress_seen; /* stream progress, for the idle timeout */

    char *in;
    size_t inlen;

    char user[SASL_USER_MAX + 1];
    bool have_user;
    struct sasl_server *sasl;
    struct dir_account scram_account; /* SCRAM: the account the verifier belongs to */

    char node[SESSION_LOCK_NAME_MAX + 1];
    char tag[SESSION_LOCK_NAME_MAX + 1];
    long long account_id;
    char address[DIR_ADDRESS_SIZE];
    long long folder_id;
    uint32_t uidvalidity;
    struct pop3_msg *msgs;
    uint32_t nmsgs;

    char delayed_reply[POP3_RESPONSE_MAX];
    uv_timer_t delay_timer, renew_timer;
    struct stream stream;
};

static void process(struct pop3_session *s);

/* ---- small helpers ---- */

static void enter(struct pop3_session *s)
{
    s->depth++;
}

static void release_resources(struct pop3_session *s)
{
    free(s->in);
    s->in = NULL;
    s->inlen = 0;
    free(s->msgs);
    s->msgs = NULL;
    s->nmsgs = 0;
    sasl_server_free(&s->sasl);
    explicit_bzero(s->user, sizeof(s->user));
}

static void leave(struct pop3_session *s)
{
    if (--s->depth == 0 && s->closed && !s->job)
        release_resources(s);
}

/* A login name fit for a log line: printable ASCII, cut at 64 bytes. */
static const char *printable(const char *in, char out[72])
{
    size_t i = 0;
    for (; in[i] && i < 64; i++)
        out[i] = (in[i] >= 0x20 && in[i] < 0x7f) ? in[i] : '?';
    out[i] = '\0';
    if (in[i])
        snprintf(out + i, 4, "...");
    return out;
}

static void hex_to_bin(const char *hex, unsigned char *out)
{
    for (size_t i = 0; i < BLOB_ID_LEN / 2; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char ch = hex[2 * i + (size_t)k];
            v = v * 16 + (unsigned)(ch <= '9' ? ch - '0' : ch - 'a' + 10);
        }
        out[i] = (unsigned char)v;
    }
}

static void bin_to_hex(const unsigned char *in, char out[BLOB_ID_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < BLOB_ID_LEN / 2; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[BLOB_ID_LEN] = '\0';
}

static bool is_loopback(const struct sockaddr *a)
{
    if (a->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr) >> 24) == 127;
    if (a->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)a)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a6))
            return true;
        return IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127;
    }
    return false;
}

/* Passwords in clear (USER/PASS, AUTH PLAIN and LOGIN) only over TLS or from
 * this host (RFC 2595 §2.1: a server should not accept them otherwise). */
static bool plaintext_ok(struct conn *c)
{
    return conn_is_tls(c) || is_loopback(conn_peer_addr(c));
}

static bool tls_available(void)
{
    struct runtime *rt = runtime_get();
    bool ok = rt && rt->tls;
    runtime_put(&rt);
    return ok;
}

/* Writes one status line ("+OK ..." / "-ERR ...", cut to the RFC 2449 §4
 * limit) and records the command in the service's metrics. */
__attribute__((format(printf, 3, 4))) static void reply(struct pop3_session *s, bool ok,
                                                        const char *fmt, ...)
{
    char text[POP3_RESPONSE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (m < 0)
        text[0] = '\0';
    char line[POP3_RESPONSE_MAX];
    /* "-ERR " + text + CRLF within the limit; snprintf cuts the text */
    int n =
        snprintf(line, sizeof(line) - 2, "%s%s%s", ok ? "+OK" : "-ERR", text[0] ? " " : "", text);
    size_t len = n < 0 ? 0 : (size_t)n;
    if (len > sizeof(line) - 3)
        len = sizeof(line) - 3;
    memcpy(line + len, "\r\n", 2);
    len += 2;
    if (s->cmd_started_ns) {
        metrics_command(conn_metrics(s->c), (uv_hrtime() - s->cmd_started_ns) / 1000, !ok);
        s->cmd_started_ns = 0;
    }
    conn_write(s->c, line, len);
}

/* A protocol error: -ERR, and the end of the session after too many. */
static void bad(struct pop3_session *s, const char *msg)
{
    if (++s->errors >= ERRORS_MAX) {
        conn_log(s->c, LOG_SUMMARY, "too many protocol errors, closing");
        reply(s, false, "%s (too many errors, closing)", msg);
        conn_close(s->c);
        return;
    }
    reply(s, false, "%s", msg);
}

/* Writes a multi-line body that is already stuffed (lines we generate). */
static void write_text(struct pop3_session *s, const char *text)
{
    conn_write(s->c, text, strlen(text));
}

static void stop_waiting(struct pop3_session *s)
{
    s->waiting = false;
    if (s->closed || conn_closing(s->c))
        return;
    process(s);
    if (!s->waiting && !s->closed && !conn_closing(s->c))
        conn_resume(s->c);
}

/* Queues a worker job for the current command: input waits until it is done. */
static int submit(struct pop3_session *s, struct job *j)
{
    struct workers *ws = server_workers();
    if (!ws || workers_submit(ws, j) < 0)
        return -1;
    s->job = true;
    s->waiting = true;
    conn_pause(s->c);
    conn_hold(s->c);
    return 0;
}

/* The process-wide part of lock tags: session ids restart with the process,
 * so a tag also names the run (start time and pid). */
static pthread_once_t run_once = PTHREAD_ONCE_INIT;
static unsigned long long run_nonce;
static void run_nonce_init(void)
{
    run_nonce = ((unsigned long long)time(NULL) << 22) ^ (unsigned long long)getpid();
}

/* ---- lock release and renewal ---- */

struct lock_job {
    struct job job;
    struct conn *c; /* renewals only */
    long long account_id;
    char node[SESSION_LOCK_NAME_MAX + 1], tag[SESSION_LOCK_NAME_MAX + 1];
    int rc;
    char why[256];
};

static void release_work(struct job *j, struct worker *w)
{
    struct lock_job *l = (struct lock_job *)j;
    PGconn *db = worker_db(w, l->why, sizeof(l->why));
    l->rc = db ? session_lock_release(db, l->account_id, LOCK_KIND, l->node, l->tag, l->why,
                                      sizeof(l->why))
               : -1;
    if (l->rc < 0)
        worker_db_check(w);
}

static void release_done(struct job *j)
{
    free(j);
}

/* Drops the maildrop lock without waiting for the answer (the session is
 * ending); if it cannot be queued the lease runs out instead. */
static void release_lock_async(long long account_id, const char *node, const char *tag)
{
    struct lock_job *l = calloc(1, sizeof(*l));
    struct workers *ws = server_workers();
    if (!l || !ws)
        goto fail;
    l->account_id = account_id;
    snprintf(l->node, sizeof(l->node), "%s", node);
    snprintf(l->tag, sizeof(l->tag), "%s", tag);
    l->job.work = release_work;
    l->job.done = release_done;
    if (workers_submit(ws, &l->job) == 0)
        return;
fail:
    free(l);
}

static void renew_work(struct job *j, struct worker *w)
{
    struct lock_job *l = (struct lock_job *)j;
    PGconn *db = worker_db(w, l->why, sizeof(l->why));
    l->rc = db ? session_lock_renew(db, l->account_id, LOCK_KIND, l->node, l->tag, LOCK_LEASE_S,
                                    l->why, sizeof(l->why))
               : -1;
    if (l->rc == -1)
        worker_db_check(w);
}

static void renew_done(struct job *j)
{
    struct lock_job *l = (struct lock_job *)j;
    struct conn *c = l->c;
    struct pop3_session *s = conn_session(c);
    enter(s);
    s->renew_job = false;
    if (!s->closed && s->locked && s->state == ST_TRANS) {
        if (l->rc == SESSION_LOCK_ELOST) {
            /* Our lease ran out (the database was away) and another session
             * took the maildrop: this one must not touch it any more. */
            conn_log(c, LOG_SUMMARY, "maildrop lock lost, closing: %s", l->why);
            s->locked = false;
            conn_close(c);
        } else if (l->rc < 0) {
            conn_log(c, LOG_SUMMARY, "cannot renew the maildrop lock (will retry): %s", l->why);
        }
    }
    leave(s);
    free(l);
    conn_release(c);
}

static void renew_tick(uv_timer_t *t)
{
    struct conn *c = t->data;
    struct pop3_session *s = conn_session(c);
    if (s->closed || !s->locked || s->renew_job)
        return;
    struct lock_job *l = calloc(1, sizeof(*l));
    struct workers *ws = server_workers();
    if (!l || !ws) {
        free(l);
        return;
    }
    l->c = c;
    l->account_id = s->account_id;
    snprintf(l->node, sizeof(l->node), "%s", s->node);
    snprintf(l->tag, sizeof(l->tag), "%s", s->tag);
    l->job.work = renew_work;
    l->job.done = renew_done;
    if (workers_submit(ws, &l->job) < 0) {
        free(l); /* the next tick tries again; the lease is three ticks long */
        return;
    }
    s->renew_job = true;
    conn_hold(c);
}

/* ---- login: authenticate, then open the maildrop ---- */

enum login_mode {
    LOGIN_PASSWORD, /* check user + password, then open */
    LOGIN_SCRAM,    /* look up the SCRAM verifier of user */
    LOGIN_OPEN,     /* open the maildrop of an authenticated account */
};

enum login_result { L_OK, L_FAIL, L_DENIED, L_IN_USE, L_TEMP, L_PERM };

struct login_job {
    struct job job;
    struct conn *c;
    enum login_mode mode;
    char user[SASL_USER_MAX + 1];
    char pass[SASL_PASSWORD_MAX + 1];
    char node[SESSION_LOCK_NAME_MAX + 1], tag[SESSION_LOCK_NAME_MAX + 1];
    struct dir_account account;
    /* LOGIN_SCRAM */
    bool found;
    int iterations;
    unsigned char salt[PASSWORD_SCRAM_SALT_MAX];
    size_t saltlen;
    unsigned char stored[PASSWORD_SCRAM_KEY_LEN], server[PASSWORD_SCRAM_KEY_LEN];
    /* result */
    enum login_result result;
    char why[256];
    long long folder_id;
    uint32_t uidvalidity;
    struct pop3_msg *msgs;
    size_t nmsgs, cap;
    bool truncated;
};

static int snapshot_row(const struct mail_row *r, void *ctx)
{
    struct login_job *l = ctx;
    /* Messages an IMAP client has marked \Deleted are on their way out. */
    if (r->flags & MAIL_DELETED)
        return 0;
    if (l->nmsgs == MAILDROP_MAX) {
        l->truncated = true;
        return 1;
    }
    if (!blob_id_valid(r->blob_id))
        return 0;
    if (l->nmsgs == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        if (cap > MAILDROP_MAX)
            cap = MAILDROP_MAX;
        struct pop3_msg *m = realloc(l->msgs, cap * sizeof(*m));
        if (!m) {
            snprintf(l->why, sizeof(l->why), "out of memory");
            return 1;
        }
        l->msgs = m;
        l->cap = cap;
    }
    struct pop3_msg *m = &l->msgs[l->nmsgs++];
    memset(m, 0, sizeof(*m));
    m->uid = r->uid;
    m->size = r->size;
    m->flags = (uint8_t)(r->flags & MAIL_FLAGS_ALL);
    hex_to_bin(r->blob_id, m->blob);
    return 0;
}

/* Policy, lock, INBOX and snapshot for l->account. */
static void open_maildrop(struct login_job *l, struct worker *w, PGconn *db)
{
    char err[256];
    bool allowed = false;
    int rc = policy_service_allowed(db, l->account.id, "pop3", &allowed, err, sizeof(err));
    if (rc == DIR_ENOTFOUND) {
        l->result = L_FAIL;
        return;
    }
    if (rc < 0) {
        worker_db_check(w);
        l->result = L_TEMP;
        snprintf(l->why, sizeof(l->why), "%s", err);
        return;
    }
    if (!allowed) {
        l->result = L_DENIED;
        return;
    }
    rc = session_lock_acquire(db, l->account.id, LOCK_KIND, l->node, l->tag, LOCK_LEASE_S, NULL,
                              err, sizeof(err));
    if (rc == SESSION_LOCK_EBUSY) {
        l->result = L_IN_USE;
        return;
    }
    if (rc < 0) {
        worker_db_check(w);
        l->result = L_TEMP;
        snprintf(l->why, sizeof(l->why), "%s", err);
        return;
    }
    struct folder f;
    rc = folders_find_role(db, l->account.id, FOLDER_ROLE_INBOX, &f);
    if (rc == FOLDERS_ENOTFOUND) {
        /* An account made before default folders existed: give it them. */
        if (folders_create_defaults(db, l->account.id, NULL) >= 0)
            rc = folders_find_role(db, l->account.id, FOLDER_ROLE_INBOX, &f);
    }
    if (rc != 0) {
        if (rc == -1)
            worker_db_check(w);
        l->result = rc == FOLDERS_ENOTFOUND ? L_PERM : L_TEMP;
        snprintf(l->why, sizeof(l->why), "cannot find the INBOX: %s", PQerrorMessage(db));
        goto unlock;
    }
    l->folder_id = f.id;
    l->uidvalidity = f.uidvalidity;
    l->why[0] = '\0';
    if (mailstore_fetch(db, f.id, NULL, 0, 0, false, snapshot_row, l, err, sizeof(err)) < 0) {
        worker_db_check(w);
        l->result = L_TEMP;
        snprintf(l->why, sizeof(l->why), "%s", err);
        goto unlock;
    }
    if (l->why[0]) { /* out of memory in the callback */
        l->result = L_TEMP;
        goto unlock;
    }
    l->result = L_OK;
    return;
unlock:
    free(l->msgs);
    l->msgs = NULL;
    l->nmsgs = 0;
    session_lock_release(db, l->account.id, LOCK_KIND, l->node, l->tag, NULL, 0);
}

static void login_work(struct job *j, struct worker *w)
{
    struct login_job *l = (struct login_job *)j;
    PGconn *db = worker_db(w, l->why, sizeof(l->why));
    if (!db) {
        l->result = L_TEMP;
        goto out;
    }
    if (l->mode == LOGIN_SCRAM) {
        char verifier[PASSWORD_SCRAM_MAX];
        int rc = dir_scram_lookup(db, l->user, &l->account, verifier);
        if (rc == -2) {
            worker_db_check(w);
            l->result = L_TEMP;
            snprintf(l->why, sizeof(l->why), "%s", PQerrorMessage(db));
            goto out;
        }
        l->found = rc == 0 && password_scram_parse(verifier, &l->iterations, l->salt, &l->saltlen,
                                                   l->stored, l->server) == 0;
        explicit_bzero(verifier, sizeof(verifier));
        l->result = L_OK;
        goto out;
    }
    if (l->mode == LOGIN_PASSWORD) {
        int rc = dir_authenticate(db, l->user, l->pass, &l->account);
        if (rc == -2) {
            worker_db_check(w);
            l->result = L_TEMP;
            snprintf(l->why, sizeof(l->why), "%s", PQerrorMessage(db));
            goto out;
        }
        if (rc != 0) {
            l->result = L_FAIL;
            goto out;
        }
    }
    open_maildrop(l, w, db);
out:
    explicit_bzero(l->pass, sizeof(l->pass));
}

static void auth_failed(struct pop3_session *s, const char *msg);
static void sasl_result(struct pop3_session *s, enum sasl_result r, const unsigned char *ch,
                        size_t chlen);

static void renew_timer_start(struct pop3_session *s)
{
    uv_timer_start(&s->renew_timer, renew_tick, LOCK_RENEW_MS, LOCK_RENEW_MS);
}

static void login_done(struct job *j)
{
    struct login_job *l = (struct login_job *)j;
    struct conn *c = l->c;
    struct pop3_session *s = conn_session(c);
    s->job = false;
    enter(s);
    s->waiting = false;
    char name[72];
    if (s->closed) {
        if (l->result == L_OK && l->mode != LOGIN_SCRAM)
            release_lock_async(l->account.id, l->node, l->tag);
        goto out;
    }
    if (l->mode == LOGIN_SCRAM) {
        if (l->result != L_OK) {
            conn_log(c, LOG_SUMMARY, "SCRAM verifier lookup failed: %s", l->why);
            sasl_server_free(&s->sasl);
            s->state = ST_AUTH;
            reply(s, false, "[SYS/TEMP] Authentication is unavailable, try again later");
            goto resume;
        }
        s->scram_account = l->account;
        unsigned char ch[SASL_CHALLENGE_MAX];
        size_t chlen = 0;
        enum sasl_result r = sasl_server_set_verifier(s->sasl, l->found, l->iterations, l->salt,
                                                      l->saltlen, l->stored, l->server, ch, &chlen);
        sasl_result(s, r, ch, chlen);
        goto resume;
    }
    /* A SASL PLAIN/LOGIN exchange ends with the password check's answer. */
    if (s->sasl)
        sasl_server_password_result(s->sasl, l->result != L_FAIL);
    sasl_server_free(&s->sasl);
    s->state = ST_AUTH;
    switch (l->result) {
    case L_OK:
        ips_login_ok(conn_service(c), conn_peer_addr(c));
        s->state = ST_TRANS;
        s->locked = true;
        s->account_id = l->account.id;
        snprintf(s->address, sizeof(s->address), "%s", l->account.address);
        s->folder_id = l->folder_id;
        s->uidvalidity = l->uidvalidity;
        s->msgs = l->msgs;
        s->nmsgs = (uint32_t)l->nmsgs;
        l->msgs = NULL;
        renew_timer_start(s);
        unsigned long long total = 0;
        for (uint32_t i = 0; i < s->nmsgs; i++)
            total += s->msgs[i].size;
        conn_log(c, LOG_SUMMARY, "login %s: %u messages, %llu octets%s", s->address, s->nmsgs,
                 total, l->truncated ? " (maildrop cut at its limit)" : "");
        reply(s, true, "Logged in, %u messages (%llu octets)", s->nmsgs, total);
        break;
    case L_FAIL:
        conn_log(c, LOG_SUMMARY, "authentication failed for '%s'",
                 printable(l->mode == LOGIN_OPEN ? l->account.address : l->user, name));
        auth_failed(s, "[AUTH] Authentication failed");
        break;
    case L_DENIED:
        conn_log(c, LOG_SUMMARY, "POP3 not allowed by policy for %s", l->account.address);
        auth_failed(s, "[AUTH] POP3 access is not allowed for this account");
        break;
    case L_IN_USE:
        conn_log(c, LOG_SUMMARY, "maildrop of %s in use by another session", l->account.address);
        reply(s, false, "[IN-USE] The maildrop is in use by another session");
        break;
    case L_TEMP:
        conn_log(c, LOG_SUMMARY, "login failed: %s", l->why);
        reply(s, false, "[SYS/TEMP] The mail store is unavailable, try again later");
        break;
    case L_PERM:
        conn_log(c, LOG_SUMMARY, "login failed: %s", l->why);
        reply(s, false, "[SYS/PERM] The maildrop cannot be opened");
        break;
    }
resume:
    if (!s->waiting)
        stop_waiting(s);
out:
    free(l->msgs);
    explicit_bzero(l, sizeof(*l));
    free(l);
    leave(s);
    conn_release(c);
}

static void start_login(struct pop3_session *s, enum login_mode mode, const char *user,
                        const char *pass)
{
    struct login_job *l = calloc(1, sizeof(*l));
    if (!l) {
        reply(s, false, "[SYS/TEMP] Out of memory");
        return;
    }
    l->c = s->c;
    l->mode = mode;
    snprintf(l->user, sizeof(l->user), "%s", user ? user : "");
    snprintf(l->pass, sizeof(l->pass), "%s", pass ? pass : "");
    snprintf(l->node, sizeof(l->node), "%s", s->node);
    snprintf(l->tag, sizeof(l->tag), "%s", s->tag);
    if (mode == LOGIN_OPEN)
        l->account = s->scram_account;
    l->job.work = login_work;
    l->job.done = login_done;
    if (submit(s, &l->job) < 0) {
        explicit_bzero(l, sizeof(*l));
        free(l);
        sasl_server_free(&s->sasl);
        s->state = ST_AUTH;
        reply(s, false, "[SYS/TEMP] Server busy, try again later");
    }
}

/* ---- failed logins ---- */

static void delay_done(uv_timer_t *t)
{
    struct conn *c = t->data;
    struct pop3_session *s = conn_session(c);
    enter(s);
    if (s->auth_failures >= AUTH_FAILURES_MAX) {
        reply(s, false, "%s (too many failures, closing)", s->delayed_reply);
        conn_close(c);
    } else {
        reply(s, false, "%s", s->delayed_reply);
        stop_waiting(s);
    }
    leave(s);
}

/* RFC 3206 §4 [AUTH]; the answer comes after a delay. */
static void auth_failed(struct pop3_session *s, const char *msg)
{
    ips_login_failed(conn_service(s->c), conn_peer_addr(s->c));
    s->auth_failures++;
    sasl_server_free(&s->sasl);
    s->state = ST_AUTH;
    snprintf(s->delayed_reply, sizeof(s->delayed_reply), "%s", msg);
    s->waiting = true;
    conn_pause(s->c);
    uv_timer_start(&s->delay_timer, delay_done, AUTH_DELAY_MS, 0);
}

/* ---- SASL (RFC 5034) ---- */

static void sasl_result(struct pop3_session *s, enum sasl_result r, const unsigned char *ch,
                        size_t chlen)
{
    switch (r) {
    case SASL_CONTINUE: {
        char b64[SASL_CHALLENGE_MAX * 4 / 3 + 8];
        if (sasl_b64_encode(ch, chlen, b64, sizeof(b64)) < 0) {
            sasl_server_free(&s->sasl);
            s->state = ST_AUTH;
            reply(s, false, "[SYS/TEMP] Internal error");
            return;
        }
        s->state = ST_SASL;
        conn_printf(s->c, "+ %s\r\n", b64);
        return;
    }
    case SASL_CHECK_PASSWORD:
        start_login(s, LOGIN_PASSWORD, sasl_server_user(s->sasl), sasl_server_password(s->sasl));
        return;
    case SASL_NEED_VERIFIER:
        start_login(s, LOGIN_SCRAM, sasl_server_user(s->sasl), NULL);
        return;
    case SASL_SUCCESS:
        /* SCRAM: the proof verified against scram_account's verifier. */
        sasl_server_free(&s->sasl);
        s->state = ST_AUTH;
        start_login(s, LOGIN_OPEN, NULL, NULL);
        return;
    case SASL_FAIL:
    case SASL_MALFORMED: {
        char name[72];
        conn_log(s->c, LOG_SUMMARY, "authentication %s for '%s'",
                 r == SASL_FAIL ? "failed" : "malformed",
                 printable(s->sasl ? sasl_server_user(s->sasl) : "", name));
        auth_failed(s, "[AUTH] Authentication failed");
        return;
    }
    }
}

static void sasl_step(struct pop3_session *s, const unsigned char *data, size_t len, bool has_data)
{
    unsigned char ch[SASL_CHALLENGE_MAX];
    size_t chlen = 0;
    enum sasl_result r = sasl_server_step(s->sasl, data, len, has_data, ch, &chlen);
    sasl_result(s, r, ch, chlen);
}

/* A continuation line of an AUTH exchange. */
static void sasl_line(struct pop3_session *s, const char *line, size_t n)
{
    if (n == 1 && line[0] == '*') {
        /* RFC 5034 §4: the client cancels; the server answers -ERR. */
        sasl_server_free(&s->sasl);
        s->state = ST_AUTH;
        reply(s, false, "Authentication cancelled");
        return;
    }
    unsigned char buf[POP3_SASL_LINE_MAX];
    long len = n ? sasl_b64_decode(line, n, buf, sizeof(buf)) : 0;
    if (len < 0) {
        sasl_server_free(&s->sasl);
        s->state = ST_AUTH;
        bad(s, "Invalid base64 in the authentication exchange");
        return;
    }
    sasl_step(s, buf, (size_t)len, true);
    explicit_bzero(buf, sizeof(buf));
}

/* The SASL mechanisms offered on this connection, joined by sep: SCRAM
 * always, the plaintext ones where plaintext_ok() allows them. */
static void mechanisms(struct pop3_session *s, char *out, size_t outlen, const char *sep)
{
    if (plaintext_ok(s->c))
        snprintf(out, outlen, "SCRAM-SHA-256%sPLAIN%sLOGIN", sep, sep);
    else
        snprintf(out, outlen, "SCRAM-SHA-256");
}

static void cmd_auth(struct pop3_session *s, const struct pop3_command *cmd)
{
    if (cmd->nargs == 0) {
        /* Not in RFC 5034, but clients written to its draft send a bare AUTH
         * to learn the mechanisms: answer with a list, as CAPA's SASL line. */
        char list[128];
        mechanisms(s, list, sizeof(list), "\r\n");
        reply(s, true, "Mechanisms follow");
        conn_printf(s->c, "%s\r\n.\r\n", list);
        return;
    }
    enum sasl_mech mech;
    if (sasl_mech_parse(cmd->args[0], &mech) < 0) {
        bad(s, "Unsupported authentication mechanism");
        return;
    }
    if (sasl_mech_plaintext(mech) && !plaintext_ok(s->c)) {
        reply(s, false, "[AUTH] Plaintext authentication requires TLS (use STLS)");
        return;
    }
    s->sasl = sasl_server_new(mech);
    if (!s->sasl) {
        reply(s, false, "[SYS/TEMP] Out of memory");
        return;
    }
    if (cmd->nargs < 2) {
        sasl_step(s, NULL, 0, false);
        return;
    }
    /* RFC 5034 §4: "=" is an empty initial response. */
    unsigned char buf[POP3_LINE_MAX];
    long len = 0;
    if (strcmp(cmd->args[1], "=") != 0)
        len = sasl_b64_decode(cmd->args[1], strlen(cmd->args[1]), buf, sizeof(buf));
    if (len < 0) {
        sasl_server_free(&s->sasl);
        bad(s, "Invalid base64 in the initial response");
        return;
    }
    sasl_step(s, buf, (size_t)len, true);
    explicit_bzero(buf, sizeof(buf));
}

/* ---- streaming a message (RETR, TOP) ---- */

struct read_job {
    struct job job;
    struct conn *c;
    struct blob_store *bs;
    char blob[BLOB_ID_LEN + 1];
    unsigned long long off, total;
    size_t n;
    int rc;
    char why[256];
    char data[READ_CHUNK];
};

static void read_work(struct job *j, struct worker *w)
{
    struct read_job *r = (struct read_job *)j;
    /* The pg backend reads through this worker's connection; the others
     * take NULL, so they keep working while PostgreSQL is away. */
    PGconn *db = NULL;
    if (!strcmp(blob_store_backend(r->bs), "pg") && !(db = worker_db(w, r->why, sizeof(r->why)))) {
        r->rc = -1;
        return;
    }
    struct blob_reader *rd = NULL;
    r->rc = blob_reader_open(r->bs, db, r->blob, r->off, READ_CHUNK, &rd, r->why, sizeof(r->why));
    if (r->rc == BLOB_ERANGE) {
        r->rc = 0; /* shorter than we thought: nothing more */
        r->total = r->off;
        return;
    }
    if (r->rc < 0) {
        if (r->rc == -1 && db)
            worker_db_check(w);
        return;
    }
    r->total = blob_reader_size(rd);
    while (r->n < READ_CHUNK) {
        ssize_t got = blob_reader_read(rd, r->data + r->n, READ_CHUNK - r->n);
        if (got < 0) {
            snprintf(r->why, sizeof(r->why), "%s", blob_reader_error(rd));
            r->rc = -1;
            break;
        }
        if (got == 0)
            break;
        r->n += (size_t)got;
    }
    blob_reader_close(&rd);
}

static void read_done(struct job *j);

static void read_next(struct pop3_session *s)
{
    struct stream *st = &s->stream;
    struct read_job *r = malloc(sizeof(*r));
    struct blob_store *bs = server_blobs();
    if (!r || !bs) {
        free(r);
        goto fail;
    }
    memset(r, 0, offsetof(struct read_job, data));
    r->c = s->c;
    r->bs = bs;
    bin_to_hex(s->msgs[st->idx].blob, r->blob);
    r->off = st->off;
    r->job.work = read_work;
    r->job.done = read_done;
    if (submit(s, &r->job) == 0)
        return;
    free(r);
fail:
    s->streaming = false;
    if (!st->header_sent) {
        reply(s, false, "[SYS/TEMP] Server busy, try again later");
        stop_waiting(s);
    } else {
        conn_log(s->c, LOG_SUMMARY, "cannot continue the message, closing");
        conn_abort(s->c);
    }
}

static void stream_end(struct pop3_session *s)
{
    char fin[POP3_STUFF_FINISH_MAX];
    size_t n = pop3_stuffer_finish(&s->stream.st, fin);
    conn_write(s->c, fin, n);
    if (!s->stream.top)
        s->msgs[s->stream.idx].retrieved = true;
    s->streaming = false;
    stop_waiting(s);
}

static void read_done(struct job *j)
{
    struct read_job *r = (struct read_job *)j;
    struct conn *c = r->c;
    struct pop3_session *s = conn_session(c);
    struct stream *st = &s->stream;
    s->job = false;
    enter(s);
    s->progress++;
    if (s->closed || conn_closing(c))
        goto out;
    if (r->rc < 0) {
        conn_log(c, LOG_SUMMARY, "cannot read message uid %u: %s", s->msgs[st->idx].uid, r->why);
        s->streaming = false;
        if (!st->header_sent) {
            reply(s, false,
                  r->rc == BLOB_ENOTFOUND ? "[SYS/PERM] The message cannot be read"
                                          : "[SYS/TEMP] The message cannot be read now");
            stop_waiting(s);
        } else {
            /* Half a response cannot be taken back: end the session (the
             * client sees no terminator and must not trust the message). */
            conn_abort(c);
        }
        goto out;
    }
    if (!st->header_sent) {
        st->header_sent = true;
        if (st->top)
            reply(s, true, "Top of message follows");
        else
            reply(s, true, "%llu octets", (unsigned long long)s->msgs[st->idx].size);
    }
    if (r->n > 0) {
        char *out = malloc(POP3_STUFF_OUT_MAX(r->n));
        if (!out) {
            conn_abort(c);
            goto out;
        }
        size_t w = pop3_stuffer_feed(&st->st, r->data, r->n, out, NULL);
        conn_write(c, out, w);
        free(out);
        if (s->closed || conn_closing(c))
            goto out;
    }
    st->off += r->n;
    if (r->n == 0 || st->off >= r->total || pop3_stuffer_done(&st->st))
        stream_end(s);
    else if (conn_output_pending(c) > CONN_HIGH_WATER) {
        st->drain_wait = true; /* on_drained asks for the next chunk */
        if (!st->waited)
            conn_log(c, LOG_DEBUG, "message uid %u: waiting for the client to read",
                     s->msgs[st->idx].uid);
        st->waited = true;
    } else
        read_next(s);
out:
    leave(s);
    free(r);
    conn_release(c);
}

static void start_stream(struct pop3_session *s, uint32_t idx, bool top, uint32_t lines)
{
    memset(&s->stream, 0, sizeof(s->stream));
    s->stream.idx = idx;
    s->stream.top = top;
    pop3_stuffer_init(&s->stream.st, top, lines);
    s->streaming = true;
    read_next(s);
}

/* ---- QUIT in the TRANSACTION state: the UPDATE state (RFC 1939 §6) ---- */

struct update_job {
    struct job job;
    struct conn *c;
    long long account_id, folder_id;
    char node[SESSION_LOCK_NAME_MAX + 1], tag[SESSION_LOCK_NAME_MAX + 1];
    struct uid_range *del, *seen;
    size_t ndel, nseen;
    unsigned expunged;
    enum { U_OK, U_TEMP, U_LOST, U_PARTIAL } result;
    char why[320];
};

static void count_expunged(uint32_t uid, void *ctx)
{
    (void)uid;
    (*(unsigned *)ctx)++;
}

static void update_work(struct job *j, struct worker *w)
{
    struct update_job *u = (struct update_job *)j;
    char err[256];
    PGconn *db = worker_db(w, u->why, sizeof(u->why));
    if (!db) {
        u->result = U_TEMP;
        return;
    }
    /* Only the holder of the maildrop may change it. */
    int rc = session_lock_renew(db, u->account_id, LOCK_KIND, u->node, u->tag, LOCK_LEASE_S, u->why,
                                sizeof(u->why));
    if (rc != 0) {
        if (rc == -1)
            worker_db_check(w);
        u->result = rc == SESSION_LOCK_ELOST ? U_LOST : U_TEMP;
        return;
    }
    u->result = U_OK;
    if (u->nseen &&
        mailstore_store(db, u->account_id, u->folder_id, u->seen, u->nseen, MAIL_FLAGS_ADD,
                        MAIL_SEEN, NULL, 0, 0, NULL, NULL, NULL, NULL, err, sizeof(err)) < 0)
        snprintf(u->why, sizeof(u->why), "cannot set \\Seen: %s", err); /* not worth failing */
    if (u->ndel) {
        /* Expunge removes \Deleted messages, so the marks become the flag
         * first; if the expunge fails the flags are taken back (the snapshot
         * held no message that had it), so nothing looks deleted that is not. */
        if (mailstore_store(db, u->account_id, u->folder_id, u->del, u->ndel, MAIL_FLAGS_ADD,
                            MAIL_DELETED, NULL, 0, 0, NULL, NULL, NULL, NULL, err,
                            sizeof(err)) < 0) {
            worker_db_check(w);
            u->result = U_TEMP;
            snprintf(u->why, sizeof(u->why), "%s", err);
        } else if (mailstore_expunge(db, u->account_id, u->folder_id, u->del, u->ndel,
                                     count_expunged, &u->expunged, err, sizeof(err)) < 0) {
            worker_db_check(w);
            u->result = U_PARTIAL;
            snprintf(u->why, sizeof(u->why), "%s", err);
            mailstore_store(db, u->account_id, u->folder_id, u->del, u->ndel, MAIL_FLAGS_REMOVE,
                            MAIL_DELETED, NULL, 0, 0, NULL, NULL, NULL, NULL, err, sizeof(err));
        }
    }
    session_lock_release(db, u->account_id, LOCK_KIND, u->node, u->tag, NULL, 0);
}

static void update_done(struct job *j)
{
    struct update_job *u = (struct update_job *)j;
    struct conn *c = u->c;
    struct pop3_session *s = conn_session(c);
    s->job = false;
    enter(s);
    s->locked = false;
    if (s->closed)
        goto out;
    switch (u->result) {
    case U_OK:
        if (u->why[0])
            conn_log(c, LOG_SUMMARY, "%s", u->why);
        conn_log(c, LOG_SUMMARY, "logout %s: %u deleted", s->address, u->expunged);
        reply(s, true, "Floe POP3 server signing off (%u messages deleted)", u->expunged);
        break;
    case U_LOST:
        conn_log(c, LOG_SUMMARY, "QUIT without the maildrop lock: %s", u->why);
        reply(s, false, "[SYS/TEMP] The maildrop lock was lost; no messages deleted");
        break;
    case U_TEMP:
        conn_log(c, LOG_SUMMARY, "QUIT failed: %s", u->why);
        reply(s, false, "[SYS/TEMP] Some deleted messages not removed, try again later");
        break;
    case U_PARTIAL:
        conn_log(c, LOG_SUMMARY, "expunge failed: %s", u->why);
        reply(s, false, "[SYS/TEMP] Some deleted messages not removed, try again later");
        break;
    }
    conn_close(c);
out:
    free(u->del);
    free(u->seen);
    free(u);
    leave(s);
    conn_release(c);
}

/* The UIDs of the messages pred selects, as merged ranges (the snapshot is
 * in UID order). Returns the count of ranges; *r_r NULL when none or out of
 * memory (then *oom_r is set). */
static size_t uid_ranges(const struct pop3_session *s, bool (*pred)(const struct pop3_msg *),
                         struct uid_range **r_r, bool *oom_r)
{
    *r_r = NULL;
    size_t n = 0;
    struct uid_range *r = NULL;
    for (uint32_t i = 0; i < s->nmsgs; i++) {
        if (!pred(&s->msgs[i]))
            continue;
        uint32_t uid = s->msgs[i].uid;
        if (n && r[n - 1].hi + 1 == uid) {
            r[n - 1].hi = uid;
            continue;
        }
        if (!r && !(r = malloc(s->nmsgs * sizeof(*r)))) {
            *oom_r = true;
            return 0;
        }
        r[n].lo = r[n].hi = uid;
        n++;
    }
    *r_r = r;
    return n;
}

static bool is_deleted(const struct pop3_msg *m)
{
    return m->deleted;
}

static bool newly_seen(const struct pop3_msg *m)
{
    return m->retrieved && !m->deleted && !(m->flags & MAIL_SEEN);
}

static void cmd_quit_update(struct pop3_session *s)
{
    struct update_job *u = calloc(1, sizeof(*u));
    bool oom = false;
    if (u) {
        u->ndel = uid_ranges(s, is_deleted, &u->del, &oom);
        u->nseen = uid_ranges(s, newly_seen, &u->seen, &oom);
    }
    if (!u || oom) {
        if (u) {
            free(u->del);
            free(u->seen);
        }
        free(u);
        reply(s, false, "[SYS/TEMP] Out of memory; no messages deleted");
        conn_close(s->c);
        return;
    }
    u->c = s->c;
    u->account_id = s->account_id;
    u->folder_id = s->folder_id;
    snprintf(u->node, sizeof(u->node), "%s", s->node);
    snprintf(u->tag, sizeof(u->tag), "%s", s->tag);
    u->job.work = update_work;
    u->job.done = update_done;
    s->state = ST_QUIT;
    uv_timer_stop(&s->renew_timer);
    if (submit(s, &u->job) < 0) {
        free(u->del);
        free(u->seen);
        free(u);
        s->state = ST_TRANS;
        renew_timer_start(s);
        reply(s, false, "[SYS/TEMP] Server busy; no messages deleted, try QUIT again");
    }
}

/* ---- the TRANSACTION state ---- */

/* Resolves a message-number argument; answers -ERR itself when it fails. */
static bool message_arg(struct pop3_session *s, const char *arg, uint32_t *idx_r)
{
    uint32_t n;
    if (pop3_number_parse(arg, 1, UINT32_MAX, &n) < 0) {
        bad(s, "Invalid message number");
        return false;
    }
    if (n > s->nmsgs) {
        reply(s, false, "No such message, only %u messages in maildrop", s->nmsgs);
        return false;
    }
    /* RFC 1939 §5: a deleted message may not be referred to. */
    if (s->msgs[n - 1].deleted) {
        reply(s, false, "Message %u already deleted", n);
        return false;
    }
    *idx_r = n - 1;
    return true;
}

static void maildrop_totals(const struct pop3_session *s, uint32_t *count_r,
                            unsigned long long *octets_r)
{
    uint32_t n = 0;
    unsigned long long o = 0;
    for (uint32_t i = 0; i < s->nmsgs; i++)
        if (!s->msgs[i].deleted) {
            n++;
            o += s->msgs[i].size;
        }
    *count_r = n;
    *octets_r = o;
}

/* LIST and UIDL without an argument: one line per undeleted message. */
static void scan_listing(struct pop3_session *s, bool uidl)
{
    char buf[16384];
    size_t len = 0;
    for (uint32_t i = 0; i < s->nmsgs; i++) {
        const struct pop3_msg *m = &s->msgs[i];
        if (m->deleted)
            continue;
        if (len > sizeof(buf) - 64) {
            conn_write(s->c, buf, len);
            len = 0;
        }
        /* RFC 1939 §7: the unique-id is 1..70 characters 0x21..0x7E, the
         * same for a message across sessions. UIDVALIDITY.UID is, and it
         * changes (so clients fetch again) exactly when IMAP UIDs do. */
        len += uidl ? (size_t)snprintf(buf + len, sizeof(buf) - len, "%u %u.%u\r\n", i + 1,
                                       s->uidvalidity, m->uid)
                    : (size_t)snprintf(buf + len, sizeof(buf) - len, "%u %llu\r\n", i + 1,
                                       (unsigned long long)m->size);
    }
    memcpy(buf + len, ".\r\n", 3);
    conn_write(s->c, buf, len + 3);
}

static void transaction(struct pop3_session *s, const struct pop3_command *cmd)
{
    uint32_t idx, count;
    unsigned long long octets;
    switch (cmd->cmd) {
    case POP3_CMD_STAT:
        if (cmd->nargs) {
            bad(s, "STAT takes no argument");
            return;
        }
        maildrop_totals(s, &count, &octets);
        reply(s, true, "%u %llu", count, octets);
        return;
    case POP3_CMD_LIST:
    case POP3_CMD_UIDL: {
        bool uidl = cmd->cmd == POP3_CMD_UIDL;
        if (cmd->nargs > 1) {
            bad(s, "Too many arguments");
            return;
        }
        if (cmd->nargs == 1) {
            if (!message_arg(s, cmd->args[0], &idx))
                return;
            if (uidl)
                reply(s, true, "%u %u.%u", idx + 1, s->uidvalidity, s->msgs[idx].uid);
            else
                reply(s, true, "%u %llu", idx + 1, (unsigned long long)s->msgs[idx].size);
            return;
        }
        maildrop_totals(s, &count, &octets);
        if (uidl)
            reply(s, true, "Unique-ID listing follows");
        else
            reply(s, true, "%u messages (%llu octets)", count, octets);
        scan_listing(s, uidl);
        return;
    }
    case POP3_CMD_RETR:
        if (cmd->nargs != 1) {
            bad(s, "Syntax: RETR msg");
            return;
        }
        if (message_arg(s, cmd->args[0], &idx))
            start_stream(s, idx, false, 0);
        return;
    case POP3_CMD_TOP: {
        uint32_t lines;
        if (cmd->nargs != 2) {
            bad(s, "Syntax: TOP msg n");
            return;
        }
        if (pop3_number_parse(cmd->args[1], 0, UINT32_MAX, &lines) < 0) {
            bad(s, "Invalid number of lines");
            return;
        }
        if (message_arg(s, cmd->args[0], &idx))
            start_stream(s, idx, true, lines);
        return;
    }
    case POP3_CMD_DELE:
        if (cmd->nargs != 1) {
            bad(s, "Syntax: DELE msg");
            return;
        }
        if (message_arg(s, cmd->args[0], &idx)) {
            s->msgs[idx].deleted = true;
            reply(s, true, "Message %u deleted", idx + 1);
        }
        return;
    case POP3_CMD_NOOP:
        reply(s, true, "%s", "");
        return;
    case POP3_CMD_RSET:
        for (uint32_t i = 0; i < s->nmsgs; i++)
            s->msgs[i].deleted = false;
        maildrop_totals(s, &count, &octets);
        reply(s, true, "Maildrop has %u messages (%llu octets)", count, octets);
        return;
    case POP3_CMD_QUIT:
        cmd_quit_update(s);
        return;
    default:
        bad(s, cmd->cmd == POP3_CMD_UNKNOWN ? "Unknown command" : "Not allowed after login");
        return;
    }
}

/* ---- the AUTHORIZATION state ---- */

static void capa(struct pop3_session *s)
{
    /* RFC 2449 §5, §6; RFC 5034 §3 (SASL), RFC 2595 §4 (STLS). */
    reply(s, true, "Capability list follows");
    char buf[512];
    size_t len = (size_t)snprintf(buf, sizeof(buf),
                                  "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n");
    if (s->state == ST_AUTH) {
        char mechs[128];
        mechanisms(s, mechs, sizeof(mechs), " ");
        if (plaintext_ok(s->c))
            len += (size_t)snprintf(buf + len, sizeof(buf) - len, "USER\r\n");
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "SASL %s\r\n", mechs);
        if (!conn_is_tls(s->c) && tls_available())
            len += (size_t)snprintf(buf + len, sizeof(buf) - len, "STLS\r\n");
    }
    snprintf(buf + len, sizeof(buf) - len, "IMPLEMENTATION Floe\r\n.\r\n");
    write_text(s, buf);
}

static void authorization(struct pop3_session *s, struct pop3_command *cmd)
{
    switch (cmd->cmd) {
    case POP3_CMD_USER:
        s->have_user = false;
        if (!plaintext_ok(s->c)) {
            reply(s, false, "[AUTH] Plaintext authentication requires TLS (use STLS)");
            return;
        }
        if (cmd->nargs != 1 || strlen(cmd->args[0]) > SASL_USER_MAX) {
            bad(s, "Syntax: USER name");
            return;
        }
        snprintf(s->user, sizeof(s->user), "%s", cmd->args[0]);
        s->have_user = true;
        reply(s, true, "Send your password");
        return;
    case POP3_CMD_PASS: {
        /* RFC 1939 §7: PASS only right after a successful USER. */
        bool had_user = s->have_user;
        s->have_user = false;
        if (!had_user) {
            bad(s, "USER first");
            return;
        }
        if (!plaintext_ok(s->c)) {
            reply(s, false, "[AUTH] Plaintext authentication requires TLS (use STLS)");
            return;
        }
        /* A missing or over-long password fails like a wrong one. */
        const char *pass =
            cmd->nargs == 1 && strlen(cmd->args[0]) <= SASL_PASSWORD_MAX ? cmd->args[0] : "";
        start_login(s, LOGIN_PASSWORD, s->user, pass);
        explicit_bzero(s->user, sizeof(s->user));
        return;
    }
    case POP3_CMD_AUTH:
        s->have_user = false;
        cmd_auth(s, cmd);
        return;
    case POP3_CMD_STLS:
        if (cmd->nargs) {
            bad(s, "STLS takes no argument");
            return;
        }
        if (conn_is_tls(s->c)) {
            bad(s, "TLS is already active");
            return;
        }
        if (!tls_available()) {
            reply(s, false, "TLS is not available");
            return;
        }
        reply(s, true, "Begin TLS negotiation");
        if (conn_starttls(s->c) < 0) {
            conn_log(s->c, LOG_SUMMARY, "STLS: cannot start TLS");
            conn_close(s->c);
            return;
        }
        /* RFC 2595 §4 and RFC 3207 §4.2: nothing the client sent in clear
         * after STLS may be taken as a command, and what was learnt before
         * (the USER name) is forgotten. */
        s->inlen = 0;
        s->skipping = false;
        s->have_user = false;
        explicit_bzero(s->user, sizeof(s->user));
        return;
    case POP3_CMD_QUIT:
        reply(s, true, "Floe POP3 server signing off");
        conn_close(s->c);
        return;
    case POP3_CMD_APOP:
        /* No greeting timestamp is offered: APOP needs the plain password on
         * the server, which Floe never keeps. */
        bad(s, "APOP is not supported");
        return;
    case POP3_CMD_UNKNOWN:
        bad(s, "Unknown command");
        return;
    default:
        bad(s, "Log in first");
        return;
    }
}

static void handle_line(struct pop3_session *s, char *line, size_t n)
{
    s->cmd_started_ns = uv_hrtime();
    if (s->state == ST_SASL) {
        sasl_line(s, line, n);
        return;
    }
    struct pop3_command cmd;
    if (pop3_command_parse(line, n, &cmd) < 0) {
        bad(s, "Invalid command line");
        return;
    }
    conn_log(s->c, LOG_DEBUG, "command %s", cmd.keyword);
    if (cmd.cmd == POP3_CMD_CAPA) {
        capa(s);
        return;
    }
    if (s->state == ST_AUTH)
        authorization(s, &cmd);
    else if (s->state == ST_TRANS)
        transaction(s, &cmd);
}

/* Takes complete lines from the input buffer until a command has to wait. */
static void process(struct pop3_session *s)
{
    char line[POP3_SASL_LINE_MAX + 1];
    size_t pos = 0;
    while (pos < s->inlen && !s->waiting && !s->closed && !conn_closing(s->c)) {
        const char *p = s->in + pos;
        size_t avail = s->inlen - pos;
        if (s->skipping) {
            const char *lf = memchr(p, '\n', avail);
            if (!lf) {
                pos = s->inlen;
                break;
            }
            pos += (size_t)(lf - p) + 1;
            s->skipping = false;
            continue;
        }
        size_t max = s->state == ST_SASL ? POP3_SASL_LINE_MAX : POP3_LINE_MAX;
        size_t n = 0, used = 0;
        enum pop3_line_result r = pop3_line_find(p, avail, max, &n, &used);
        if (r == POP3_LINE_MORE)
            break;
        if (r == POP3_LINE_TOO_LONG) {
            s->skipping = true;
            if (s->state == ST_SASL) {
                sasl_server_free(&s->sasl);
                s->state = ST_AUTH;
            }
            s->cmd_started_ns = uv_hrtime();
            bad(s, "Line too long");
            continue;
        }
        memcpy(line, p, n);
        pos += used;
        handle_line(s, line, n);
        explicit_bzero(line, n);
        /* STLS drops all buffered input */
        if (s->inlen == 0)
            pos = 0;
    }
    if (s->in && pos > 0) {
        memmove(s->in, s->in + pos, s->inlen - pos);
        s->inlen -= pos;
        explicit_bzero(s->in + s->inlen, pos); /* no password left behind */
    }
}

/* ---- connection callbacks ---- */

static void pop3_open(struct conn *c)
{
    struct pop3_session *s = conn_session(c);
    s->c = c;
    s->state = ST_AUTH;
    pthread_once(&run_once, run_nonce_init);
    struct runtime *rt = runtime_get();
    snprintf(s->node, sizeof(s->node), "%s", rt && rt->cfg->node_id ? rt->cfg->node_id : "node");
    const struct service_config *sc = rt ? config_service(rt->cfg, conn_service(c)) : NULL;
    s->idle_timeout = sc && sc->idle_timeout ? sc->idle_timeout : 600;
    runtime_put(&rt);
    snprintf(s->tag, sizeof(s->tag), "%s-%llx", conn_id(c), run_nonce);
    uv_loop_t *loop = loop_uv(conn_loop(c));
    uv_timer_init(loop, &s->delay_timer);
    uv_timer_init(loop, &s->renew_timer);
    s->delay_timer.data = s->renew_timer.data = c;
    s->timers = true;
    /* RFC 1939 §4; no APOP timestamp (see APOP above). */
    conn_printf(c, "+OK Floe POP3 server ready\r\n");
}

static void pop3_data(struct conn *c, const char *data, size_t len)
{
    struct pop3_session *s = conn_session(c);
    enter(s);
    if (s->inlen + len > INPUT_MAX) {
        conn_log(c, LOG_SUMMARY, "more than %d bytes of unprocessed input, closing", INPUT_MAX);
        conn_abort(c);
        goto out;
    }
    char *in = realloc(s->in, s->inlen + len);
    if (!in) {
        conn_abort(c);
        goto out;
    }
    s->in = in;
    memcpy(s->in + s->inlen, data, len);
    s->inlen += len;
    if (!s->waiting)
        process(s);
out:
    leave(s);
}

static void pop3_drained(struct conn *c)
{
    struct pop3_session *s = conn_session(c);
    if (!s->streaming || !s->stream.drain_wait)
        return;
    enter(s);
    s->progress++;
    s->stream.drain_wait = false;
    read_next(s);
    leave(s);
}

static void pop3_timeout(struct conn *c)
{
    struct pop3_session *s = conn_session(c);
    /* A long RETR to a client that keeps reading is not idleness (RFC 1939 §3
     * counts client inactivity); a stalled one is. */
    if ((s->streaming || s->job) && s->progress != s->progress_seen) {
        s->progress_seen = s->progress;
        conn_set_idle_timeout(c, s->idle_timeout);
        return;
    }
    conn_log(c, LOG_SUMMARY, "idle for %u s, closing", s->idle_timeout);
    conn_close(c);
}

static void pop3_refuse(struct conn *c, const char *why)
{
    conn_printf(c, "-ERR [SYS/TEMP] %s\r\n", why);
}

static void timer_closed(uv_handle_t *h)
{
    conn_release(h->data);
}

static void pop3_close(struct conn *c)
{
    struct pop3_session *s = conn_session(c);
    enter(s);
    s->closed = true;
    if (s->timers) {
        s->timers = false;
        conn_hold(c);
        uv_close((uv_handle_t *)&s->delay_timer, timer_closed);
        conn_hold(c);
        uv_close((uv_handle_t *)&s->renew_timer, timer_closed);
    }
    /* A session that ends without QUIT changes nothing (RFC 1939 §6) but
     * gives the maildrop back at once. */
    if (s->locked && s->state != ST_QUIT) {
        release_lock_async(s->account_id, s->node, s->tag);
        s->locked = false;
    }
    leave(s);
}

const struct service_ops pop3_ops = {
    .session_size = sizeof(struct pop3_session),
    .on_open = pop3_open,
    .on_data = pop3_data,
    .on_drained = pop3_drained,
    .on_timeout = pop3_timeout,
    .on_refuse = pop3_refuse,
    .on_close = pop3_close,
};
