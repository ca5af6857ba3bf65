/* The IMAP service: sessions on ports 143 (STARTTLS) and 993 (implicit TLS), RFC 9051
 * IMAP4rev2 and RFC 3501 IMAP4rev1 with the extensions listed in docs/IMAP.md.
 *
 * A session is a state machine on its connection's loop: not authenticated -> (LOGIN or
 * AUTHENTICATE, on a worker) -> authenticated <-> selected -> logout (RFC 9051 §3).
 *
 * Input. Bytes from the connection (inflated first after COMPRESS, a bounded piece at a time)
 * go to the command reader of proto/imap/parser.h, which hands out one complete command with
 * its arguments, asks for continuation requests, and lets APPEND stream a big literal to a
 * spool file (append.c) instead of holding it. A command either answers at once or starts a
 * worker job (job.c); while a job runs, or a failed login waits out its delay, or a FETCH waits
 * for the client to read, the session is busy: reading is paused and what was already read
 * stays in the session's buffer, so pipelined commands are answered in order.
 *
 * Output is collected in the session's buffer and handed to the connection when a batch of
 * work is done (through deflate after COMPRESS), so a response is written with few TLS
 * records.
 *
 * Lifetime. The connection may close inside any write (conn_write fails, on_close runs from
 * inside our call); every entry point brackets itself with imap_session_enter/leave and session
 * resources are released only when the outermost one returns. A worker job holds the
 * connection until its done() has run, so session memory outlives it. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cluster/bus.h"
#include "node/imap/imap.h"
#include "node/ips.h"
#include "node/loop.h"
#include "node/metrics.h"
#include "node/server.h"
#include "node/services.h"
#include "proto/imap/quote.h"
#include "proto/imap/utf7.h"
#include "proto/sasl/sasl.h"
#include "proto/text/utf8.h"
#include "storage/mailstore.h"
#include "storage/password.h"
#include "storage/policy.h"

/* Plaintext inflated per step from COMPRESS input. */
#define INFLATE_PIECE (16 * 1024)

enum timer_mode { TIMER_NONE, TIMER_AUTH_DELAY, TIMER_IDLE_POLL };

static void process(struct imap_session *s);
static void session_free(struct imap_session *s);

/* ---- lifetime ---- */

void imap_session_enter(struct imap_session *s)
{
    s->depth++;
}

void imap_session_leave(struct imap_session *s)
{
    if (--s->depth == 0 && s->closed && !s->freed)
        session_free(s);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- output ---- */

void imap_write(struct imap_session *s, const void *data, size_t len)
{
    imap_envelope_out_add(&s->out, data, len);
}

void imap_printf(struct imap_session *s, const char *fmt, ...)
{
    char small[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(small)) {
        imap_write(s, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        s->out.failed = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    imap_write(s, big, (size_t)n);
    free(big);
}

void imap_flush(struct imap_session *s)
{
    if (s->closed || conn_closing(s->c)) {
        s->out.len = 0;
        return;
    }
    if (s->out.failed) {
        conn_log(s->c, LOG_SUMMARY, "out of memory for output, closing");
        imap_envelope_out_free(&s->out);
        conn_abort(s->c);
        return;
    }
    if (s->out.len == 0)
        return;
    int rc;
    if (s->z) {
        struct imap_envelope_out zo = {0};
        rc = imap_compress_deflate(s->z, s->out.data, s->out.len, &zo);
        if (rc == 0)
            rc = conn_write(s->c, zo.data, zo.len);
        imap_envelope_out_free(&zo);
    } else {
        rc = conn_write(s->c, s->out.data, s->out.len);
    }
    s->out.len = 0;
    /* keep a small buffer, give back a big one (a large FETCH) */
    if (s->out.cap > 4 * IMAP_OUTPUT_CHUNK)
        imap_envelope_out_free(&s->out);
    if (rc < 0 && !conn_closing(s->c))
        conn_abort(s->c);
}

void imap_put_mailbox(struct imap_envelope_out *out, const char *path, bool utf8)
{
    if (utf8) {
        imap_quote_append(out, path, strlen(path), IMAP_QUOTE_ASTRING | IMAP_QUOTE_UTF8);
        return;
    }
    char *enc = NULL;
    size_t len;
    if (imap_utf7_encode(path, strlen(path), &enc, &len, NULL, 0) < 0) {
        /* stored names are valid UTF-8, so this is out of memory */
        out->failed = true;
        return;
    }
    imap_quote_append(out, enc, len, IMAP_QUOTE_ASTRING);
    free(enc);
}

void imap_tagged(struct imap_session *s, const char *status, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    imap_printf(s, "%s %s %s\r\n", *s->tag ? s->tag : "*", status, text);
    bool bad = !strcmp(status, "BAD");
    uint64_t us = s->cmd_started_ns ? (now_ns() - s->cmd_started_ns) / 1000 : 0;
    metrics_command(conn_metrics(s->c), us, strcmp(status, "OK") != 0);
    s->cmd_started_ns = 0;
    if (bad && ++s->errors >= s->cfg.max_errors && s->state != IMAP_LOGOUT) {
        conn_log(s->c, LOG_SUMMARY, "too many errors, closing");
        imap_printf(s, "* BYE Too many invalid commands\r\n");
        s->state = IMAP_LOGOUT;
        imap_flush(s);
        conn_close(s->c);
    }
}

static void untagged_bad(struct imap_session *s, bool toobig, const char *msg)
{
    imap_printf(s, "* BAD %s%s\r\n", toobig ? "[TOOBIG] " : "", msg);
    metrics_command(conn_metrics(s->c), 0, true);
    if (++s->errors >= s->cfg.max_errors && s->state != IMAP_LOGOUT) {
        imap_printf(s, "* BYE Too many invalid commands\r\n");
        s->state = IMAP_LOGOUT;
        imap_flush(s);
        conn_close(s->c);
    }
}

/* ---- capabilities ---- */

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

/* Passwords in clear (LOGIN, AUTHENTICATE PLAIN and LOGIN) only over TLS, from this host, or
 * when login_disabled_plain is off (RFC 9051 §6.2.3, RFC 8314 §3). */
static bool plaintext_ok(struct imap_session *s)
{
    return !s->cfg.login_disabled_plain || conn_is_tls(s->c) || is_loopback(conn_peer_addr(s->c));
}

static bool tls_possible(struct imap_session *s)
{
    return !conn_is_tls(s->c) && s->rt && s->rt->tls;
}

void imap_capabilities(struct imap_session *s, struct imap_envelope_out *out)
{
    char buf[1024];
    int n = snprintf(buf, sizeof(buf), "IMAP4rev1 IMAP4rev2");
    if (s->state == IMAP_NOTAUTH) {
        if (tls_possible(s))
            n += snprintf(buf + n, sizeof(buf) - (size_t)n, " STARTTLS");
        if (plaintext_ok(s))
            n += snprintf(buf + n, sizeof(buf) - (size_t)n, " AUTH=PLAIN AUTH=LOGIN");
        else
            n += snprintf(buf + n, sizeof(buf) - (size_t)n, " LOGINDISABLED");
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, " AUTH=SCRAM-SHA-256 SASL-IR");
    }
    n += snprintf(buf + n, sizeof(buf) - (size_t)n,
                  " LITERAL+ ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN SPECIAL-USE"
                  " CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS STATUS=SIZE CONDSTORE QRESYNC"
                  " QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE ACL RIGHTS=kxte MULTIAPPEND"
                  " APPENDLIMIT=%llu UTF8=ACCEPT",
                  (unsigned long long)s->cfg.append_limit);
    if (s->state != IMAP_NOTAUTH && !s->z)
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, " COMPRESS=DEFLATE");
    const char *search = imap_search_capabilities();
    if (*search)
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, " %s", search);
    imap_envelope_out_add(out, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

static void capability_code(struct imap_session *s, char *buf, size_t len)
{
    struct imap_envelope_out o = {0};
    imap_capabilities(s, &o);
    snprintf(buf, len, "[CAPABILITY %s]", o.data ? o.data : "IMAP4rev1");
    imap_envelope_out_free(&o);
}

/* ---- argument helpers ---- */

int imap_arg_mailbox(struct imap_session *s, const struct imap_arg *a, char *path, size_t pathlen)
{
    const char *name = imap_arg_astring(a);
    if (!name) {
        imap_tagged(s, "BAD", "Mailbox name expected");
        return -1;
    }
    size_t len = strlen(name);
    char *utf8 = NULL;
    if (s->utf8) {
        if (!utf8_check(name, len, UTF8_NO_C0 | UTF8_NO_C1)) {
            imap_tagged(s, "BAD", "Mailbox name is not valid UTF-8");
            return -1;
        }
        utf8 = strdup(name);
    } else if (imap_utf7_decode(name, len, &utf8, &len, NULL, 0) < 0) {
        imap_tagged(s, "BAD", "Mailbox name is not valid modified UTF-7");
        return -1;
    }
    if (!utf8) {
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return -1;
    }
    len = strlen(utf8);
    /* RFC 9051 §6.3.4: a trailing delimiter only says the name is meant to have children */
    while (len > 1 && utf8[len - 1] == '/')
        utf8[--len] = '\0';
    /* the canonical form: INBOX spelled so at the top of the tree it names (names.c) */
    char why[256];
    struct imap_name nm;
    int rc = imap_name_split(&s->cfg, utf8, &nm, why, sizeof(why));
    free(utf8);
    if (rc < 0) {
        imap_tagged(s, "NO", "[CANNOT] Invalid mailbox name: %s", why);
        return -1;
    }
    if (imap_name_join(&s->cfg, nm.ns, nm.owner, nm.path, path, pathlen) < 0) {
        imap_tagged(s, "NO", "[CANNOT] Invalid mailbox name: too long");
        return -1;
    }
    return 0;
}

int imap_arg_seqset(struct imap_session *s, const struct imap_arg *a, bool uid,
                    struct uid_range **ranges_r, size_t *nranges_r)
{
    *ranges_r = NULL;
    *nranges_r = 0;
    const char *text = imap_arg_atom(a);
    if (!text) {
        imap_tagged(s, "BAD", "Sequence set expected");
        return -1;
    }
    struct imap_view *v = &s->view;
    uint32_t star = uid ? (v->count ? v->uids[v->count - 1] : 0) : v->count;
    struct imap_seqset *set = NULL;
    char err[128];
    if (imap_seqset_parse(text, strlen(text), star, 0, &set, err, sizeof(err)) < 0) {
        imap_tagged(s, "BAD", "Invalid sequence set: %s", err);
        return -1;
    }
    const struct imap_seqset *use = set;
    bool as_uid = uid;
    if (imap_seqset_is_saved(set)) {
        /* RFC 5182 §2.1: "$" is the saved search result (UIDs), empty when none */
        use = s->searchres;
        as_uid = true;
    }
    size_t n = 0;
    const struct imap_seq_range *r = use ? imap_seqset_ranges(use, &n) : NULL;
    if (!as_uid && n && r[n - 1].hi > v->count) {
        /* RFC 9051 §9: a message sequence number beyond the mailbox is an error */
        imap_seqset_free(&set);
        imap_tagged(s, "BAD", "Invalid message sequence number");
        return -1;
    }
    struct uid_range *out = n ? malloc(n * sizeof(*out)) : NULL;
    if (n && !out) {
        imap_seqset_free(&set);
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return -1;
    }
    size_t k = 0;
    uint32_t prev_hi = UINT32_MAX; /* view index where the last range ended */
    for (size_t i = 0; i < n; i++) {
        uint32_t lo_idx, hi_idx;
        if (!as_uid) {
            lo_idx = r[i].lo - 1;
            hi_idx = r[i].hi - 1;
        } else {
            /* first view index with uid >= lo, one past the last with uid <= hi */
            uint32_t lo = 0, hi = v->count;
            while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                if (v->uids[mid] < r[i].lo)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            lo_idx = lo;
            lo = lo_idx, hi = v->count;
            while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                if (v->uids[mid] <= r[i].hi)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo == lo_idx)
                continue; /* no known message in this range */
            hi_idx = lo - 1;
        }
        /* adjacent view positions have no known message between them: one UID range serves
         * both (UIDs in the gap were expunged, new ones are always higher) */
        if (k > 0 && prev_hi != UINT32_MAX && lo_idx == prev_hi + 1)
            out[k - 1].hi = v->uids[hi_idx];
        else
            out[k++] = (struct uid_range){v->uids[lo_idx], v->uids[hi_idx]};
        prev_hi = hi_idx;
    }
    imap_seqset_free(&set);
    if (k == 0) {
        free(out);
        out = NULL;
    }
    *ranges_r = out;
    *nranges_r = k;
    return 0;
}

int imap_arg_flags(struct imap_session *s, const struct imap_arg *a, unsigned *flags_r,
                   const char **kw, size_t kwmax, size_t *nkw_r)
{
    size_t n = 1;
    const struct imap_arg *list = a;
    if (a->type == IMAP_ARG_LIST)
        list = imap_arg_list(a, &n);
    *flags_r = 0;
    *nkw_r = 0;
    for (size_t i = 0; i < n; i++) {
        const char *f = imap_arg_atom(&list[i]);
        if (!f) {
            imap_tagged(s, "BAD", "Flag expected");
            return -1;
        }
        if (f[0] == '\\') {
            unsigned bit = mailstore_flag_bit(f);
            if (bit) {
                *flags_r |= bit;
                continue;
            }
            if (!strcasecmp(f, "\\Recent"))
                continue; /* RFC 3501 §2.3.2: \Recent cannot be changed by a client */
            imap_tagged(s, "BAD", "Unknown system flag %s", f);
            return -1;
        }
        if (!mailstore_keyword_valid(f)) {
            imap_tagged(s, "BAD", "Invalid keyword");
            return -1;
        }
        bool dup = false;
        for (size_t k = 0; k < *nkw_r; k++)
            if (!strcasecmp(kw[k], f))
                dup = true;
        if (dup)
            continue;
        if (*nkw_r >= kwmax) {
            imap_tagged(s, "NO", "[LIMIT] Too many keywords");
            return -1;
        }
        kw[(*nkw_r)++] = f;
    }
    return 0;
}

void imap_read_line(struct imap_session *s)
{
    /* inside a command the reader still holds it: switch once the command is released */
    if (s->in_dispatch)
        s->want_line = true;
    else
        imap_parser_read_line(s->parser);
}

/* ---- timers: the failed-login delay and IDLE polling ---- */

static void timer_fired(uv_timer_t *t);

static void timer_start(struct imap_session *s, enum timer_mode mode, uint64_t ms, uint64_t repeat)
{
    if (!s->timer_ready)
        return;
    s->timer_mode = mode;
    uv_timer_start(&s->timer, timer_fired, ms, repeat);
}

static void timer_stop(struct imap_session *s)
{
    if (s->timer_ready)
        uv_timer_stop(&s->timer);
    s->timer_mode = TIMER_NONE;
}

/* With the bus connected, changes arrive as messages and polling only backs it up (a lost
 * message, a writer that did not publish): the timer ticks every poll interval so that losing
 * the bus is noticed at once, but then checks the folder only this often. */
#define POLL_WITH_BUS_NS (60ull * 1000000000)

static void timer_fired(uv_timer_t *t)
{
    struct conn *c = t->data;
    struct imap_session *s = conn_session(c);
    if (s->closed || conn_closing(c))
        return;
    imap_session_enter(s);
    if (s->timer_mode == TIMER_AUTH_DELAY) {
        s->timer_mode = TIMER_NONE;
        imap_tagged(s, "NO", "%s", s->delayed);
        if (s->auth_failures >= IMAP_AUTH_FAILURES_MAX) {
            imap_printf(s, "* BYE Too many failed authentications\r\n");
            s->state = IMAP_LOGOUT;
            imap_flush(s);
            conn_close(c);
        } else {
            imap_unbusy(s);
        }
    } else if (s->timer_mode == TIMER_IDLE_POLL) {
        uint64_t now = now_ns();
        bool due = !bus_connected() || s->notified_modseq > s->view.known_modseq ||
                   now - s->last_poll_ns >= POLL_WITH_BUS_NS;
        if (due && s->idling && !s->busy && s->state == IMAP_SELECTED) {
            s->last_poll_ns = now;
            imap_sync_start(s, NULL);
        }
        imap_flush(s);
    }
    imap_session_leave(s);
}

/* ---- processing ---- */

void imap_unbusy(struct imap_session *s)
{
    s->busy = false;
    imap_flush(s);
    if (s->closed || conn_closing(s->c))
        return;
    conn_resume(s->c);
    process(s);
}

static void session_reset_input(struct imap_session *s)
{
    s->inlen = s->inoff = 0;
    s->zinlen = 0;
    imap_parser_free(&s->parser);
    s->parser = imap_parser_new(NULL);
    imap_append_free(&s->append);
}

/* ---- commands of any state ---- */

static void cmd_capability(struct imap_session *s, const struct imap_arg *a, size_t n, bool f)
{
    if (n) {
        imap_tagged(s, "BAD", "CAPABILITY takes no arguments");
        return;
    }
    struct imap_envelope_out o = {0};
    imap_capabilities(s, &o);
    imap_printf(s, "* CAPABILITY %s\r\n", o.data ? o.data : "IMAP4rev1");
    imap_envelope_out_free(&o);
    imap_tagged(s, "OK", "CAPABILITY completed");
}

static void cmd_noop(struct imap_session *s, const struct imap_arg *a, size_t n, bool check)
{
    if (n) {
        imap_tagged(s, "BAD", "No arguments expected");
        return;
    }
    if (s->state == IMAP_SELECTED) {
        imap_sync_start(s, check ? "CHECK completed" : "NOOP completed");
        return;
    }
    imap_tagged(s, "OK", "NOOP completed");
}

static void cmd_logout(struct imap_session *s, const struct imap_arg *a, size_t n, bool f)
{
    if (n) {
        imap_tagged(s, "BAD", "LOGOUT takes no arguments");
        return;
    }
    imap_printf(s, "* BYE Logging out\r\n");
    imap_tagged(s, "OK", "LOGOUT completed");
    s->state = IMAP_LOGOUT;
    imap_flush(s);
    conn_close(s->c);
}

/* RFC 2971: the client's identification is logged, ours is answered. */
static void cmd_id(struct imap_session *s, const struct imap_arg *a, size_t n, bool f)
{
    if (n != 1) {
        imap_tagged(s, "BAD", "ID takes one argument");
        return;
    }
    const char *nil;
    if (a[0].type == IMAP_ARG_LIST) {
        size_t k;
        const struct imap_arg *l = imap_arg_list(&a[0], &k);
        /* RFC 2971 §3.3: at most 30 field-value pairs, fields up to 30 octets, values 1024 */
        if (k % 2 || k > 60) {
            imap_tagged(s, "BAD", "Invalid ID list");
            return;
        }
        char line[512] = "";
        size_t used = 0;
        for (size_t i = 0; i < k; i += 2) {
            const char *field = imap_arg_string(&l[i]), *value = NULL;
            if (!field || strlen(field) > 30 || imap_arg_nstring(&l[i + 1], &value) < 0 ||
                (value && strlen(value) > 1024)) {
                imap_tagged(s, "BAD", "Invalid ID list");
                return;
            }
            int w = snprintf(line + used, sizeof(line) - used, "%s%s=%s", used ? " " : "", field,
                             value ? value : "NIL");
            if (w > 0 && (size_t)w < sizeof(line) - used)
                used += (size_t)w;
        }
        for (char *p = line; *p; p++)
            if (!isprint((unsigned char)*p))
                *p = '?';
        conn_log(s->c, LOG_DEBUG, "client ID %s", line);
    } else if (imap_arg_nstring(&a[0], &nil) < 0 || nil) {
        imap_tagged(s, "BAD", "ID takes a list or NIL");
        return;
    }
    imap_printf(s, "* ID (\"name\" \"Floe\" \"version\" \"%s\")\r\n", FLOE_VERSION);
    imap_tagged(s, "OK", "ID completed");
}

/* ---- STARTTLS (RFC 9051 §6.2.1) ---- */

static void cmd_starttls(struct imap_session *s, const struct imap_arg *a, size_t n, bool f)
{
    if (n) {
        imap_tagged(s, "BAD", "STARTTLS takes no arguments");
        return;
    }
    if (conn_is_tls(s->c)) {
        imap_tagged(s, "BAD", "TLS is already active");
        return;
    }
    if (!tls_possible(s)) {
        imap_tagged(s, "NO", "[UNAVAILABLE] TLS is not available");
        return;
    }
    imap_tagged(s, "OK", "Begin TLS negotiation now");
    imap_flush(s);
    if (s->closed || conn_closing(s->c))
        return;
    if (conn_starttls(s->c) < 0) {
        conn_close(s->c);
        return;
    }
    /* RFC 9051 §6.2.1 (and RFC 3207 §4.2): what the client pipelined in plain text after
     * STARTTLS could have been injected; it is dropped */
    session_reset_input(s);
}

/* ---- authentication ---- */

struct auth_job {
    struct imap_job base;
    bool scram;
    char user[SASL_USER_MAX + 1];
    char password[SASL_PASSWORD_MAX + 1];
    char verifier[PASSWORD_SCRAM_MAX];
    struct dir_account account;
    bool allowed;
};

static void auth_work(struct imap_job *j, PGconn *db)
{
    struct auth_job *aj = (struct auth_job *)j;
    if (aj->scram)
        j->rc = dir_scram_lookup(db, aj->user, &aj->account, aj->verifier);
    else
        j->rc = dir_authenticate(db, aj->user, aj->password, &aj->account);
    explicit_bzero(aj->password, sizeof(aj->password));
    if (j->rc == 0 && policy_service_allowed(db, aj->account.id, "imap", &aj->allowed, j->err,
                                             sizeof(j->err)) != 0)
        j->rc = -2;
}

static void auth_destroy(struct imap_job *j)
{
    explicit_bzero((char *)j + sizeof(struct imap_job), sizeof(struct auth_job) - sizeof(*j));
    free(j);
}

static void auth_succeeded(struct imap_session *s, const struct dir_account *a)
{
    sasl_server_free(&s->sasl);
    s->in_sasl = false;
    s->account = *a;
    s->state = IMAP_AUTH;
    imap_notify_watch(s);
    ips_login_ok(conn_service(s->c), conn_peer_addr(s->c));
    conn_log(s->c, LOG_SUMMARY, "authenticated %s", a->address);
    char caps[1024];
    capability_code(s, caps, sizeof(caps));
    imap_tagged(s, "OK", "%s Logged in", caps);
}

static void auth_failed(struct imap_session *s, const char *text)
{
    sasl_server_free(&s->sasl);
    s->in_sasl = false;
    s->auth_failures++;
    ips_login_failed(conn_service(s->c), conn_peer_addr(s->c));
    conn_log(s->c, LOG_SUMMARY, "authentication failed");
    snprintf(s->delayed, sizeof(s->delayed), "%s", text);
    /* password guessing costs time: the NO comes after a delay, input waits meanwhile */
    s->busy = true;
    conn_pause(s->c);
    timer_start(s, TIMER_AUTH_DELAY, IMAP_AUTH_DELAY_MS, 0);
}

static void sasl_result(struct imap_session *s, enum sasl_result r, const unsigned char *ch,
                        size_t chlen, const struct dir_account *account);

static void auth_done(struct imap_session *s, struct imap_job *j)
{
    struct auth_job *aj = (struct auth_job *)j;
    if (j->rc == -2) {
        conn_log(s->c, LOG_SUMMARY, "authentication: storage error: %s", j->err);
        sasl_server_free(&s->sasl);
        s->in_sasl = false;
        imap_tagged(s, "NO", "[UNAVAILABLE] Temporary failure, try again later");
        return;
    }
    bool ok = j->rc == 0 && aj->allowed;
    if (j->rc == 0 && !aj->allowed)
        conn_log(s->c, LOG_SUMMARY, "imap not allowed for %s", aj->account.address);
    if (!s->sasl) { /* LOGIN */
        if (ok)
            auth_succeeded(s, &aj->account);
        else
            auth_failed(s, "[AUTHENTICATIONFAILED] Authentication failed");
        return;
    }
    unsigned char chal[SASL_CHALLENGE_MAX];
    size_t chlen = 0;
    enum sasl_result r;
    if (aj->scram) {
        int iterations = 0;
        unsigned char salt[PASSWORD_SCRAM_SALT_MAX], stored[SASL_SCRAM_KEY_LEN],
            server[SASL_SCRAM_KEY_LEN];
        size_t saltlen = 0;
        bool found = ok && password_scram_parse(aj->verifier, &iterations, salt, &saltlen, stored,
                                                server) == 0;
        r = sasl_server_set_verifier(s->sasl, found, iterations, salt, saltlen, stored, server,
                                     chal, &chlen);
        explicit_bzero(salt, sizeof(salt));
        explicit_bzero(stored, sizeof(stored));
        explicit_bzero(server, sizeof(server));
        s->account = aj->account; /* kept until the proof has been checked */
    } else {
        r = sasl_server_password_result(s->sasl, ok);
    }
    sasl_result(s, r, chal, chlen, &aj->account);
}

static void auth_submit(struct imap_session *s, bool scram, const char *user, const char *pass)
{
    struct auth_job *aj = calloc(1, sizeof(*aj));
    if (!aj) {
        sasl_server_free(&s->sasl);
        s->in_sasl = false;
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    aj->scram = scram;
    snprintf(aj->user, sizeof(aj->user), "%s", user);
    if (pass)
        snprintf(aj->password, sizeof(aj->password), "%s", pass);
    aj->base.work = auth_work;
    aj->base.done = auth_done;
    aj->base.destroy = auth_destroy;
    imap_job_submit(s, &aj->base, false);
}

static void sasl_result(struct imap_session *s, enum sasl_result r, const unsigned char *ch,
                        size_t chlen, const struct dir_account *account)
{
    switch (r) {
    case SASL_CONTINUE: {
        char b64[SASL_CHALLENGE_MAX * 2];
        if (sasl_b64_encode(ch, chlen, b64, sizeof(b64)) < 0) {
            auth_failed(s, "[AUTHENTICATIONFAILED] Authentication failed");
            return;
        }
        /* RFC 9051 §6.2.2: a challenge is a continuation request with base64 data */
        imap_printf(s, "+ %s\r\n", b64);
        s->in_sasl = true;
        imap_read_line(s);
        return;
    }
    case SASL_CHECK_PASSWORD:
        auth_submit(s, false, sasl_server_user(s->sasl), sasl_server_password(s->sasl));
        return;
    case SASL_NEED_VERIFIER:
        auth_submit(s, true, sasl_server_user(s->sasl), NULL);
        return;
    case SASL_SUCCESS: {
        struct dir_account a = account ? *account : s->account;
        auth_succeeded(s, &a);
        return;
    }
    case SASL_FAIL:
        auth_failed(s, "[AUTHENTICATIONFAILED] Authentication failed");
        return;
    case SASL_MALFORMED:
        sasl_server_free(&s->sasl);
        s->in_sasl = false;
        imap_tagged(s, "BAD", "Invalid SASL exchange");
        return;
    }
}

static void sasl_input(struct imap_session *s, const char *b64, size_t len, bool has_data)
{
    unsigned char buf[8192];
    long n = 0;
    if (has_data && !(len == 1 && b64[0] == '=')) {
        n = sasl_b64_decode(b64, len, buf, sizeof(buf));
        if (n < 0) {
            sasl_server_free(&s->sasl);
            s->in_sasl = false;
            imap_tagged(s, "BAD", "Invalid base64");
            return;
        }
    }
    unsigned char ch[SASL_CHALLENGE_MAX];
    size_t chlen = 0;
    enum sasl_result r = sasl_server_step(s->sasl, buf, (size_t)n, has_data, ch, &chlen);
    explicit_bzero(buf, sizeof(buf));
    sasl_result(s, r, ch, chlen, NULL);
}

static void cmd_authenticate(struct imap_session *s, const struct imap_arg *a, size_t n, bool f)
{
    const char *mechname = n >= 1 ? imap_arg_atom(&a[0]) : NULL;
    const char *ir = n == 2 ? imap_arg_atom(&a[1]) : NULL;
    if (!mechname || n > 2 || (n == 2 && !ir)) {
        imap_tagged(s, "BAD", "Syntax: AUTHENTICATE mechanism [initial-response]");
        return;
    }
    enum sasl_mech mech;
    if (sasl_mech_parse(mechname, &mech) < 0) {
        imap_tagged(s, "NO", "[CANNOT] Unsupported authentication mechanism");
        return;
    }
    if (sasl_mech_plaintext(mech) && !plaintext_ok(s)) {
        imap_tagged(s, "NO", "[PRIVACYREQUIRED] Use STARTTLS first");
        return;
    }
    s->sasl = sasl_server_new(mech);
    if (!s->sasl) {
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    /* RFC 4959 SASL-IR: "=" is an empty initial response */
    sasl_input(s, ir ? ir : "", ir ? strlen(ir) : 0, ir != NULL);
}

static void sasl_line(struct imap_session *s, const char *line, size_t len)
{
    s->in_sasl = false;
    if (len == 1 && line[0] == '*') {
        /* RFC 9051 §6.2.2: the client cancels */
        sasl_server_free(&s->sasl);
        imap_tagged(s, "BAD", "Authentication cancelled");
        return;
    }
    sasl_input(s, line, len, true);
}

static void cmd_login(struct imap_session *s, const struct imap_arg *a, size_t n, bool f)
{
    const char *user = n == 2 ? imap_arg_astring(&a[0]) : NULL;
    const char *pass = n == 2 ? imap_arg_astring(&a[1]) : NULL;
    if (!user || !pass) {
        imap_tagged(s, "BAD", "Syntax: LOGIN user password");
        return;
    }
    if (!plaintext_ok(s)) {
        imap_tagged(s, "NO", "[PRIVACYREQUIRED] LOGIN is disabled without TLS");
        return;
    }
    if (strlen(user) > SASL_USER_MAX || strlen(pass) > SASL_PASSWORD_MAX) {
        auth_failed(s, "[AUTHENTICATIONFAILED] Authentication failed");
        return;
    }
    auth_submit(s, false, user, pass);
}

/* ---- ENABLE (RFC 5161), COMPRESS (RFC 4978) ---- */

static void cmd_enable(struct imap_session *s, const struct imap_arg *a, size_t n, bool f)
{
    if (n == 0) {
        imap_tagged(s, "BAD", "ENABLE needs capability names");
        return;
    }
    char enabled[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        const char *cap = imap_arg_atom(&a[i]);
        if (!cap) {
            imap_tagged(s, "BAD", "Capability name expected");
            return;
        }
        const char *name = NULL;
        if (!strcasecmp(cap, "CONDSTORE")) {
            s->condstore = true;
            name = "CONDSTORE";
        } else if (!strcasecmp(cap, "QRESYNC")) {
            s->qresync = s->condstore = true; /* RFC 7162 §3.2.3 */
            name = "QRESYNC";
        } else if (!strcasecmp(cap, "UTF8=ACCEPT")) {
            s->utf8 = true;
            name = "UTF8=ACCEPT";
        } else if (!strcasecmp(cap, "IMAP4rev2")) {
            s->rev2 = s->utf8 = true; /* RFC 9051 §6.3.1 */
            name = "IMAP4rev2";
        }
        if (name && !strstr(enabled, name)) {
            int w = snprintf(enabled + used, sizeof(enabled) - used, " %s", name);
            if (w > 0 && (size_t)w < sizeof(enabled) - used)
                used += (size_t)w;
        }
    }
    imap_printf(s, "* ENABLED%s\r\n", enabled);
    imap_tagged(s, "OK", "ENABLE completed");
}

static void cmd_compress(struct imap_session *s, const struct imap_arg *a, size_t n, bool f)
{
    const char *alg = n == 1 ? imap_arg_atom(&a[0]) : NULL;
    if (!alg) {
        imap_tagged(s, "BAD", "Syntax: COMPRESS DEFLATE");
        return;
    }
    if (s->z) {
        imap_tagged(s, "NO", "[COMPRESSIONACTIVE] Compression is already active");
        return;
    }
    if (strcasecmp(alg, "DEFLATE") != 0) {
        imap_tagged(s, "NO", "[CANNOT] Unknown compression algorithm");
        return;
    }
    struct imap_compress *z = imap_compress_new();
    if (!z) {
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    imap_tagged(s, "OK", "DEFLATE active");
    imap_flush(s); /* the OK itself is not compressed (RFC 4978 §3) */
    s->z = z;
    /* anything read after the command is the start of the client's deflate stream */
    size_t rest = s->inlen - s->inoff;
    if (rest) {
        char *t = realloc(s->zin, s->zinlen + rest);
        if (!t) {
            conn_abort(s->c);
            return;
        }
        s->zin = t;
        memmove(s->zin + rest, s->zin, s->zinlen);
        memcpy(s->zin, s->in + s->inoff, rest);
        s->zinlen += rest;
        s->inlen = s->inoff = 0;
    }
    conn_log(s->c, LOG_DEBUG, "COMPRESS=DEFLATE active");
}

/* ---- IDLE (RFC 2177) ---- */

static void cmd_idle(struct imap_session *s, const struct imap_arg *a, size_t n, bool f)
{
    if (n) {
        imap_tagged(s, "BAD", "IDLE takes no arguments");
        return;
    }
    imap_printf(s, "+ idling\r\n");
    s->idling = true;
    imap_read_line(s);
    /* RFC 9051 §5.4: the client re-issues IDLE within 30 minutes; allow it time */
    conn_set_idle_timeout(s->c, s->cfg.idle_timeout * 2);
    uint64_t ms = (uint64_t)s->cfg.poll_interval * 1000;
    timer_start(s, TIMER_IDLE_POLL, ms, ms);
    s->last_poll_ns = now_ns();
    if (s->state == IMAP_SELECTED)
        imap_sync_start(s, NULL); /* what changed since the last command, at once */
}

static void idle_line(struct imap_session *s, const char *line, size_t len)
{
    s->idling = false;
    timer_stop(s);
    conn_set_idle_timeout(s->c, s->cfg.idle_timeout);
    if (len == 4 && !strncasecmp(line, "DONE", 4))
        imap_tagged(s, "OK", "IDLE terminated");
    else
        imap_tagged(s, "BAD", "Expected DONE");
}

void imap_session_changed(struct imap_session *s, long long folder_id, long long modseq)
{
    if (s->closed || conn_closing(s->c) || s->state != IMAP_SELECTED ||
        folder_id != s->view.folder_id || modseq <= s->view.known_modseq)
        return;
    if (modseq > s->notified_modseq)
        s->notified_modseq = modseq;
    if (!s->idling || s->busy)
        return; /* the running job's end, or the next command, looks again */
    imap_session_enter(s);
    imap_sync_start(s, NULL);
    imap_flush(s);
    imap_session_leave(s);
}

/* ---- the command table ---- */

static void cmd_uid(struct imap_session *s, const struct imap_arg *a, size_t n, bool f);

struct command_def {
    const char *name;
    unsigned states;
    imap_command_fn fn;
    bool flag; /* passed to fn: EXAMINE, LSUB, SUBSCRIBE, UNSELECT, CHECK */
};

static const struct command_def commands[] = {
    {"CAPABILITY", IMAP_ST_ANY, cmd_capability, false},
    {"NOOP", IMAP_ST_ANY, cmd_noop, false},
    {"LOGOUT", IMAP_ST_ANY, cmd_logout, false},
    {"ID", IMAP_ST_ANY, cmd_id, false},
    {"STARTTLS", IMAP_ST_NOTAUTH, cmd_starttls, false},
    {"AUTHENTICATE", IMAP_ST_NOTAUTH, cmd_authenticate, false},
    {"LOGIN", IMAP_ST_NOTAUTH, cmd_login, false},
    {"ENABLE", IMAP_ST_AUTH, cmd_enable, false},
    {"COMPRESS", IMAP_ST_AUTHED, cmd_compress, false},
    {"SELECT", IMAP_ST_AUTHED, imap_cmd_select, false},
    {"EXAMINE", IMAP_ST_AUTHED, imap_cmd_select, true},
    {"CREATE", IMAP_ST_AUTHED, imap_cmd_create, false},
    {"DELETE", IMAP_ST_AUTHED, imap_cmd_delete, false},
    {"RENAME", IMAP_ST_AUTHED, imap_cmd_rename, false},
    {"SUBSCRIBE", IMAP_ST_AUTHED, imap_cmd_subscribe, true},
    {"UNSUBSCRIBE", IMAP_ST_AUTHED, imap_cmd_subscribe, false},
    {"LIST", IMAP_ST_AUTHED, imap_cmd_list, false},
    {"LSUB", IMAP_ST_AUTHED, imap_cmd_list, true},
    {"NAMESPACE", IMAP_ST_AUTHED, imap_cmd_namespace, false},
    {"STATUS", IMAP_ST_AUTHED, imap_cmd_status, false},
    {"APPEND", IMAP_ST_AUTHED, imap_cmd_append, false},
    {"IDLE", IMAP_ST_AUTHED, cmd_idle, false},
    {"GETACL", IMAP_ST_AUTHED, imap_cmd_getacl, false},
    {"SETACL", IMAP_ST_AUTHED, imap_cmd_setacl, false},
    {"DELETEACL", IMAP_ST_AUTHED, imap_cmd_deleteacl, false},
    {"LISTRIGHTS", IMAP_ST_AUTHED, imap_cmd_listrights, false},
    {"MYRIGHTS", IMAP_ST_AUTHED, imap_cmd_myrights, false},
    {"GETQUOTA", IMAP_ST_AUTHED, imap_cmd_getquota, false},
    {"GETQUOTAROOT", IMAP_ST_AUTHED, imap_cmd_getquotaroot, false},
    {"SETQUOTA", IMAP_ST_AUTHED, imap_cmd_setquota, false},
    {"CHECK", IMAP_ST_SELECTED, cmd_noop, true},
    {"CLOSE", IMAP_ST_SELECTED, imap_cmd_close, false},
    {"UNSELECT", IMAP_ST_SELECTED, imap_cmd_close, true},
    {"EXPUNGE", IMAP_ST_SELECTED, imap_cmd_expunge, false},
    {"FETCH", IMAP_ST_SELECTED, imap_cmd_fetch, false},
    {"STORE", IMAP_ST_SELECTED, imap_cmd_store, false},
    {"COPY", IMAP_ST_SELECTED, imap_cmd_copy, false},
    {"MOVE", IMAP_ST_SELECTED, imap_cmd_move, false},
    /* ---- SEARCH, SORT, THREAD: the search engine plugs in here (search.c). Until it does
     * these answer "BAD Command not supported" and ESEARCH, SEARCHRES, SORT and THREAD=* are
     * not advertised (imap_search_capabilities). ---- */
    {"SEARCH", IMAP_ST_SELECTED, imap_cmd_search, false},
    {"SORT", IMAP_ST_SELECTED, imap_cmd_sort, false},
    {"THREAD", IMAP_ST_SELECTED, imap_cmd_thread, false},
    {"UID", IMAP_ST_SELECTED, cmd_uid, false},
};

/* RFC 9051 §6.4.9: UID FETCH, STORE, COPY, MOVE, EXPUNGE, SEARCH (and SORT, THREAD). */
static const struct command_def uid_commands[] = {
    {"FETCH", IMAP_ST_SELECTED, imap_cmd_fetch, true},
    {"STORE", IMAP_ST_SELECTED, imap_cmd_store, true},
    {"COPY", IMAP_ST_SELECTED, imap_cmd_copy, true},
    {"MOVE", IMAP_ST_SELECTED, imap_cmd_move, true},
    {"EXPUNGE", IMAP_ST_SELECTED, imap_cmd_expunge, true},
    {"SEARCH", IMAP_ST_SELECTED, imap_cmd_search, true},
    {"SORT", IMAP_ST_SELECTED, imap_cmd_sort, true},
    {"THREAD", IMAP_ST_SELECTED, imap_cmd_thread, true},
};

static void cmd_uid(struct imap_session *s, const struct imap_arg *a, size_t n, bool f)
{
    const char *sub = n ? imap_arg_atom(&a[0]) : NULL;
    for (size_t i = 0; sub && i < sizeof(uid_commands) / sizeof(uid_commands[0]); i++)
        if (!strcasecmp(sub, uid_commands[i].name)) {
            conn_log(s->c, LOG_DEBUG, "command UID %s", uid_commands[i].name);
            uid_commands[i].fn(s, a + 1, n - 1, true);
            return;
        }
    imap_tagged(s, "BAD", "Unknown UID command");
}

static const char *state_hint(enum imap_state st)
{
    return st == IMAP_NOTAUTH ? "Log in first"
           : st == IMAP_AUTH  ? "No mailbox selected"
                              : "Not valid in this state";
}

static void dispatch(struct imap_session *s, const struct imap_command *cmd)
{
    if (strlen(cmd->tag) > IMAP_TAG_MAX) {
        s->tag[0] = '\0';
        untagged_bad(s, false, "Tag too long");
        return;
    }
    snprintf(s->tag, sizeof(s->tag), "%s", cmd->tag);
    s->cmd_started_ns = now_ns();
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(cmd->name, commands[i].name) != 0)
            continue;
        if (!(commands[i].states & (1u << s->state))) {
            imap_tagged(s, "BAD", "%s", state_hint(s->state));
            return;
        }
        conn_log(s->c, LOG_DEBUG, "command %s", commands[i].name);
        commands[i].fn(s, cmd->args, cmd->count, commands[i].flag);
        return;
    }
    imap_tagged(s, "BAD", "Unknown command");
}

/* ---- input ---- */

static void parse_error(struct imap_session *s)
{
    const char *msg;
    enum imap_parse_error e = imap_parser_error(s->parser, &msg);
    const char *tag = imap_parser_error_tag(s->parser);
    imap_append_free(&s->append);
    if (tag && strlen(tag) <= IMAP_TAG_MAX) {
        snprintf(s->tag, sizeof(s->tag), "%s", tag);
        if (e == IMAP_ERR_TOOBIG)
            imap_tagged(s, "NO", "[TOOBIG] %s", msg);
        else
            imap_tagged(s, "BAD", "%s", msg);
    } else {
        s->tag[0] = '\0';
        untagged_bad(s, e == IMAP_ERR_TOOBIG, msg);
    }
    if (imap_parser_error_fatal(s->parser) && s->state != IMAP_LOGOUT) {
        conn_log(s->c, LOG_SUMMARY, "input cannot be resynchronised (%s), closing", msg);
        imap_printf(s, "* BYE Protocol error\r\n");
        s->state = IMAP_LOGOUT;
        imap_flush(s);
        conn_close(s->c);
    }
}

static void on_literal(struct imap_session *s)
{
    struct imap_literal_info info;
    const char *name = imap_parser_command_name(s->parser);
    if (imap_parser_literal_info(s->parser, &info) == 0 && name && !strcmp(name, "APPEND") &&
        (s->state == IMAP_AUTH || s->state == IMAP_SELECTED) &&
        imap_append_literal_start(s, &info)) {
        imap_parser_literal_stream(s->parser);
        if (info.sync)
            imap_printf(s, "+ Ready for literal data\r\n");
        imap_flush(s);
        return;
    }
    imap_parser_literal_refuse(s->parser);
    /* the refusal is reported now, not when more input happens to come */
    size_t used = 0;
    if (imap_parser_feed(s->parser, "", 0, &used) == IMAP_PARSE_ERROR)
        parse_error(s);
}

static void on_line(struct imap_session *s)
{
    size_t len;
    const char *line = imap_parser_line(s->parser, &len);
    char *copy = line ? malloc(len + 1) : NULL;
    if (copy) {
        memcpy(copy, line, len);
        copy[len] = '\0';
    }
    imap_parser_next(s->parser);
    s->in_dispatch = true;
    s->want_line = false;
    if (!copy)
        conn_abort(s->c);
    else if (s->idling)
        idle_line(s, copy, len);
    else if (s->in_sasl)
        sasl_line(s, copy, len);
    s->in_dispatch = false;
    if (copy) {
        explicit_bzero(copy, len);
        free(copy);
    }
    if (s->want_line && !s->closed)
        imap_parser_read_line(s->parser);
    s->want_line = false;
}

static void on_command(struct imap_session *s)
{
    const struct imap_command *cmd = imap_parser_command(s->parser);
    s->in_dispatch = true;
    s->want_line = false;
    dispatch(s, cmd);
    s->in_dispatch = false;
    imap_append_free(&s->append); /* a command that did not take its spool files */
    if (s->closed)
        return;
    imap_parser_next(s->parser);
    if (s->want_line)
        imap_parser_read_line(s->parser);
    s->want_line = false;
}

/* Inflates the next piece of compressed input into the plaintext buffer. */
static bool inflate_more(struct imap_session *s)
{
    if (!s->z || s->zinlen == 0)
        return false;
    if (s->inoff == s->inlen)
        s->inoff = s->inlen = 0;
    if (s->inlen + INFLATE_PIECE > IMAP_INPUT_MAX)
        return false;
    char *t = realloc(s->in, s->inlen + INFLATE_PIECE);
    if (!t) {
        conn_abort(s->c);
        return false;
    }
    s->in = t;
    size_t used = 0, made = 0;
    if (imap_compress_inflate(s->z, s->zin, s->zinlen, &used, s->in + s->inlen, INFLATE_PIECE,
                              &made) < 0) {
        conn_log(s->c, LOG_SUMMARY, "corrupt COMPRESS stream, closing");
        conn_abort(s->c);
        return false;
    }
    memmove(s->zin, s->zin + used, s->zinlen - used);
    s->zinlen -= used;
    s->inlen += made;
    return made > 0 || used > 0;
}

static void process(struct imap_session *s)
{
    while (!s->busy && !s->closed && !conn_closing(s->c) && s->state != IMAP_LOGOUT) {
        if (s->inoff == s->inlen) {
            s->inoff = s->inlen = 0;
            if (!inflate_more(s))
                break;
            continue;
        }
        size_t used = 0;
        const char *data = s->in + s->inoff;
        enum imap_parse_event ev = imap_parser_feed(s->parser, data, s->inlen - s->inoff, &used);
        s->inoff += used;
        switch (ev) {
        case IMAP_PARSE_MORE:
            break;
        case IMAP_PARSE_CONTINUE:
            imap_printf(s, "+ Ready for literal data\r\n");
            imap_flush(s);
            break;
        case IMAP_PARSE_LITERAL:
            on_literal(s);
            break;
        case IMAP_PARSE_LITERAL_DATA:
            if (imap_append_literal_data(s, data, used) < 0) {
                conn_log(s->c, LOG_SUMMARY, "cannot spool APPEND data, closing");
                imap_printf(s, "* BYE Cannot store the message\r\n");
                imap_flush(s);
                conn_abort(s->c);
            }
            break;
        case IMAP_PARSE_COMMAND:
            on_command(s);
            break;
        case IMAP_PARSE_LINE:
            on_line(s);
            break;
        case IMAP_PARSE_ERROR:
            parse_error(s);
            break;
        }
    }
    if (!s->closed && s->inoff > 0 && s->inoff < s->inlen) {
        memmove(s->in, s->in + s->inoff, s->inlen - s->inoff);
        s->inlen -= s->inoff;
        s->inoff = 0;
    }
    imap_flush(s);
}

/* ---- connection callbacks ---- */

static int parse_size(const char *v, uint64_t *out)
{
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    if (end == v)
        return -1;
    unsigned long long mult = 1;
    if (*end == 'K' || *end == 'k')
        mult = 1ULL << 10, end++;
    else if (*end == 'M' || *end == 'm')
        mult = 1ULL << 20, end++;
    else if (*end == 'G' || *end == 'g')
        mult = 1ULL << 30, end++;
    if (*end || n > (1ULL << 40) / mult)
        return -1;
    *out = n * mult;
    return 0;
}

int imap_configure(struct service_config *sc, char *err, size_t errlen)
{
    bool b;
    unsigned u;
    const char *v;
    uint64_t size;
    if (config_service_get_bool(sc, "login_disabled_plain", true, &b, err, errlen) < 0 ||
        config_service_get_uint(sc, "idle_poll_interval", 2, 3600, &u, err, errlen) < 0 ||
        config_service_get_uint(sc, "max_errors", 20, 10000, &u, err, errlen) < 0 ||
        config_service_get_str(sc, "append_limit", NULL, &v, err, errlen) < 0)
        return -1;
    if (v && parse_size(v, &size) < 0) {
        snprintf(err, errlen, "[service %s] append_limit: expected a size such as 64M, got '%s'",
                 sc->name, v);
        return -1;
    }
    const char *shared = NULL, *pub = NULL;
    char why[128];
    if (config_service_get_str(sc, "shared_prefix", IMAP_SHARED_PREFIX, &shared, err, errlen) < 0 ||
        config_service_get_str(sc, "public_prefix", IMAP_PUBLIC_PREFIX, &pub, err, errlen) < 0)
        return -1;
    const char *bad = imap_prefix_check(shared, why, sizeof(why)) < 0 ? "shared_prefix"
                      : imap_prefix_check(pub, why, sizeof(why)) < 0  ? "public_prefix"
                                                                      : NULL;
    if (bad) {
        snprintf(err, errlen, "[service %s] %s: %s", sc->name, bad, why);
        return -1;
    }
    if (!strncmp(shared, pub, strlen(pub)) || !strncmp(pub, shared, strlen(shared))) {
        /* RFC 2342 §5: one namespace may not be inside another */
        snprintf(err, errlen, "[service %s] shared_prefix and public_prefix overlap", sc->name);
        return -1;
    }
    return 0;
}

void imap_init(void)
{
    imap_notify_init();
}

/* A namespace prefix; imap_configure() checked it when the configuration was loaded. */
static void read_prefix(const struct service_config *sc, const char *key, const char *def,
                        char out[IMAP_PREFIX_MAX + 1])
{
    const char *v = NULL;
    char err[128];
    if (config_service_get_str(sc, key, def, &v, err, sizeof(err)) == 0 && v &&
        imap_prefix_check(v, err, sizeof(err)) == 0)
        snprintf(out, IMAP_PREFIX_MAX + 1, "%s", v);
}

static void read_settings(struct imap_session *s)
{
    struct imap_settings *st = &s->cfg;
    const struct service_config *sc = config_service(s->rt->cfg, conn_service(s->c));
    char err[256];
    const char *v = NULL;
    st->login_disabled_plain = true;
    st->poll_interval = 2;
    st->max_errors = 20;
    st->idle_timeout = sc ? sc->idle_timeout : 1800;
    st->append_limit = s->rt->cfg->smtp.max_message_size;
    snprintf(st->shared_prefix, sizeof(st->shared_prefix), "%s", IMAP_SHARED_PREFIX);
    snprintf(st->public_prefix, sizeof(st->public_prefix), "%s", IMAP_PUBLIC_PREFIX);
    if (sc) {
        config_service_get_bool(sc, "login_disabled_plain", true, &st->login_disabled_plain, err,
                                sizeof(err));
        config_service_get_uint(sc, "idle_poll_interval", 2, 3600, &st->poll_interval, err,
                                sizeof(err));
        config_service_get_uint(sc, "max_errors", 20, 10000, &st->max_errors, err, sizeof(err));
        uint64_t size;
        if (config_service_get_str(sc, "append_limit", NULL, &v, err, sizeof(err)) == 0 && v &&
            parse_size(v, &size) == 0 && size > 0)
            st->append_limit = size;
        read_prefix(sc, "shared_prefix", IMAP_SHARED_PREFIX, st->shared_prefix);
        read_prefix(sc, "public_prefix", IMAP_PUBLIC_PREFIX, st->public_prefix);
    }
    if (st->poll_interval == 0)
        st->poll_interval = 1;
    if (st->max_errors == 0)
        st->max_errors = 1;
    if (st->idle_timeout < 60)
        st->idle_timeout = 60;
}

static void imap_open(struct conn *c)
{
    struct imap_session *s = conn_session(c);
    s->c = c;
    s->rt = runtime_get();
    s->state = IMAP_NOTAUTH;
    read_settings(s);
    s->parser = imap_parser_new(NULL);
    uv_timer_init(loop_uv(conn_loop(c)), &s->timer);
    s->timer.data = c;
    s->timer_ready = true;
    if (!s->parser) {
        conn_abort(c);
        return;
    }
    if (!server_blobs()) {
        /* RFC 9051 §7.1.5: BYE as the greeting refuses the connection */
        conn_printf(c, "* BYE Service not available\r\n");
        conn_close(c);
        return;
    }
    imap_session_enter(s);
    char caps[1024];
    capability_code(s, caps, sizeof(caps));
    imap_printf(s, "* OK %s Floe IMAP ready\r\n", caps);
    imap_flush(s);
    imap_session_leave(s);
}

static void imap_data(struct conn *c, const char *data, size_t len)
{
    struct imap_session *s = conn_session(c);
    if (s->closed || !s->parser || s->state == IMAP_LOGOUT)
        return;
    imap_session_enter(s);
    char **buf = s->z ? &s->zin : &s->in;
    size_t *buflen = s->z ? &s->zinlen : &s->inlen;
    if (*buflen + len > IMAP_INPUT_MAX) {
        /* reading pauses while busy and the reader takes everything otherwise: a client that
         * gets here is not waiting for our replies at all */
        conn_log(c, LOG_SUMMARY, "more than %d bytes of unprocessed input, closing",
                 IMAP_INPUT_MAX);
        conn_abort(c);
        goto out;
    }
    char *t = realloc(*buf, *buflen + len);
    if (!t) {
        conn_abort(c);
        goto out;
    }
    *buf = t;
    memcpy(*buf + *buflen, data, len);
    *buflen += len;
    if (!s->busy)
        process(s);
out:
    imap_session_leave(s);
}

static void imap_drained(struct conn *c)
{
    struct imap_session *s = conn_session(c);
    if (s->closed || !s->drain_job)
        return;
    imap_session_enter(s);
    s->progress++;
    imap_fetch_drained(s);
    imap_session_leave(s);
}

static void imap_timeout(struct conn *c)
{
    struct imap_session *s = conn_session(c);
    /* a job running, or a FETCH stream the client is still taking, is not idleness; a client
     * that stopped reading is */
    bool job = s->busy && !s->drain_job && s->timer_mode != TIMER_AUTH_DELAY;
    if (!s->closed && (job || (s->drain_job && s->progress != s->progress_seen))) {
        s->progress_seen = s->progress;
        conn_set_idle_timeout(c, s->idling ? s->cfg.idle_timeout * 2 : s->cfg.idle_timeout);
        return;
    }
    conn_log(c, LOG_SUMMARY, "idle for %u s, closing", s->cfg.idle_timeout);
    imap_session_enter(s);
    imap_printf(s, "* BYE Autologout; idle for too long\r\n");
    imap_flush(s);
    imap_session_leave(s);
    conn_close(c);
}

static void imap_shutdown(struct conn *c)
{
    struct imap_session *s = conn_session(c);
    imap_session_enter(s);
    /* RFC 9051 §7.1.5: BYE because the server is shutting down */
    imap_printf(s, "* BYE Server shutting down\r\n");
    s->state = IMAP_LOGOUT;
    imap_flush(s);
    imap_session_leave(s);
    conn_close(c);
}

static void imap_refuse(struct conn *c, const char *why)
{
    conn_printf(c, "* BYE Too many connections (%s)\r\n", why);
}

static void timer_closed(uv_handle_t *h)
{
    conn_release(h->data);
}

static void session_free(struct imap_session *s)
{
    s->freed = true;
    imap_notify_unwatch(s);
    imap_parser_free(&s->parser);
    sasl_server_free(&s->sasl);
    imap_append_free(&s->append);
    imap_compress_free(&s->z);
    imap_view_clear(&s->view);
    imap_seqset_free(&s->searchres);
    free(s->in);
    free(s->zin);
    s->in = s->zin = NULL;
    imap_envelope_out_free(&s->out);
    if (s->drain_job) {
        struct imap_job *j = s->drain_job;
        s->drain_job = NULL;
        imap_job_destroy(j);
    }
    explicit_bzero(&s->account, sizeof(s->account));
    if (s->rt)
        runtime_put(&s->rt);
}

static void imap_close(struct conn *c)
{
    struct imap_session *s = conn_session(c);
    s->closed = true;
    if (s->timer_ready) {
        s->timer_ready = false;
        uv_timer_stop(&s->timer);
        conn_hold(c);
        uv_close((uv_handle_t *)&s->timer, timer_closed);
    }
    if (s->depth == 0 && !s->freed)
        session_free(s);
}

const struct service_ops imap_ops = {
    .session_size = sizeof(struct imap_session),
    .on_open = imap_open,
    .on_data = imap_data,
    .on_drained = imap_drained,
    .on_timeout = imap_timeout,
    .on_shutdown = imap_shutdown,
    .on_refuse = imap_refuse,
    .on_close = imap_close,
};
