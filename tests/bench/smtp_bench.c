/* SMTP load generator for ops/bench smtp (floe-bench-smtp). Postfix's
 * smtp-source measures only the total time of a run; this client also times
 * every transaction, so the benchmark can report per-message latency for any
 * SMTP server, Floe or another, with the same client.
 *
 * How it works: S threads each hold one SMTP session (one blocking TCP
 * connection, a new one every K messages) and take message numbers from a
 * shared counter until M messages have been sent. Each transaction is sent in
 * lock-step without PIPELINING, as smtp-source does: MAIL, RCPT, DATA, the
 * content, and the final dot. Its latency is the time from writing MAIL FROM to
 * reading the reply to the final dot (RFC 5321 §4.1.1.4: that reply is the
 * server taking responsibility for the message). Connecting, EHLO and QUIT are
 * outside the measured time.
 *
 * Message i goes to LOCAL<i mod N>@DOMAIN with -n N (spreading the load over N
 * mailboxes), otherwise to the -t address itself. It carries an
 * "X-Bench-Seq: i" header so that a benchmark can find it again where it was
 * delivered, and -o FILE writes one line per message: "i start_us latency_us"
 * (start as Unix time in microseconds, for comparing with delivery times that
 * other software records in wall-clock time; latency -1 for a failure).
 *
 * usage: floe-bench-smtp [-s sessions] [-m messages] [-l bytes] [-f from]
 *                        [-t to] [-n mailboxes] [-k per-connection] [-o file]
 *                        host:port
 * Exit status 0 when every message got a 2xx reply, 1 otherwise. */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Longest reply line we keep (RFC 5321 §4.5.3.1.5 allows 512 with CRLF). */
#define BENCH_LINE_MAX 1024
/* Most of each option, so that sizes below cannot overflow. */
#define BENCH_SESSIONS_MAX 1000
#define BENCH_MESSAGES_MAX 10000000L
#define BENCH_LENGTH_MAX (64L * 1024 * 1024)
#define BENCH_ADDRESS_MAX 256
/* Seconds a server may take for one reply before the session is given up. */
#define BENCH_REPLY_TIMEOUT_S 120
/* Failures printed in full; the rest are only counted. */
#define BENCH_REPORTED_MAX 10

struct bench {
    const char *host, *port;
    long messages, length, per_conn;
    int sessions;
    unsigned mailboxes;
    char from[BENCH_ADDRESS_MAX];
    char to_local[BENCH_ADDRESS_MAX], to_domain[BENCH_ADDRESS_MAX];
    atomic_long next;    /* the next message number to send */
    atomic_int reported; /* failures printed so far */
    double *latency;     /* per message, seconds; -1 = failed or not sent */
    long long *start_us; /* per message, Unix time of MAIL FROM */
};

struct session {
    struct bench *b;
    int fd;
    char in[BENCH_LINE_MAX * 4];
    size_t inlen;
    char *msg; /* the content of the current message, ending in CRLF.CRLF */
    size_t msglen, msgcap;
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long long real_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(struct session *s, long i, const char *what, const char *detail)
{
    if (atomic_fetch_add(&s->b->reported, 1) >= BENCH_REPORTED_MAX)
        return;
    int wl = (int)strcspn(what, "\r\n"); /* commands are reported without their CRLF */
    if (i < 0)
        fprintf(stderr, "floe-bench-smtp: session: %.*s: %s\n", wl, what, detail);
    else
        fprintf(stderr, "floe-bench-smtp: message %ld: %.*s: %s\n", i, wl, what, detail);
}

static int send_all(struct session *s, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(s->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one reply (all its lines, RFC 5321 §4.2.1: "250-" continues, "250 "
 * ends). Returns the code (100-599) or -1 on a closed connection, timeout or
 * garbage; the last line goes to line_r for messages. */
static int read_reply(struct session *s, char *line_r, size_t linelen)
{
    line_r[0] = '\0';
    for (;;) {
        char *eol = memchr(s->in, '\n', s->inlen);
        if (!eol) {
            if (s->inlen == sizeof(s->in))
                return -1; /* a line longer than any reply may be */
            ssize_t r = recv(s->fd, s->in + s->inlen, sizeof(s->in) - s->inlen, 0);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                return -1;
            s->inlen += (size_t)r;
            continue;
        }
        size_t n = (size_t)(eol - s->in) + 1;
        size_t keep = n < linelen ? n : linelen - 1;
        memcpy(line_r, s->in, keep);
        line_r[keep] = '\0';
        line_r[strcspn(line_r, "\r\n")] = '\0';
        memmove(s->in, s->in + n, s->inlen - n);
        s->inlen -= n;
        if (n < 4 || line_r[0] < '1' || line_r[0] > '5' || line_r[1] < '0' || line_r[1] > '9' ||
            line_r[2] < '0' || line_r[2] > '9')
            return -1;
        if (line_r[3] == '-')
            continue;
        return (line_r[0] - '0') * 100 + (line_r[1] - '0') * 10 + (line_r[2] - '0');
    }
}

/* Sends a command line and reads its reply; 0 when the reply class is the
 * expected one (2 or 3), -1 otherwise (reported). */
static int command(struct session *s, long i, const char *cmd, int want_class)
{
    char line[BENCH_LINE_MAX];
    if (send_all(s, cmd, strlen(cmd)) < 0) {
        report(s, i, cmd, "send failed");
        return -1;
    }
    int code = read_reply(s, line, sizeof(line));
    if (code / 100 != want_class) {
        report(s, i, cmd, code < 0 ? "no reply" : line);
        return -1;
    }
    return 0;
}

static void disconnect(struct session *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    s->inlen = 0;
}

static int connect_session(struct session *s)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
    char line[BENCH_LINE_MAX];
    int rc = getaddrinfo(s->b->host, s->b->port, &hints, &res);
    if (rc != 0) {
        report(s, -1, s->b->host, gai_strerror(rc));
        return -1;
    }
    s->fd = -1;
    for (ai = res; ai && s->fd < 0; ai = ai->ai_next) {
        s->fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (s->fd >= 0 && connect(s->fd, ai->ai_addr, ai->ai_addrlen) < 0)
            disconnect(s);
    }
    freeaddrinfo(res);
    if (s->fd < 0) {
        report(s, -1, "connect", strerror(errno));
        return -1;
    }
    struct timeval tv = {.tv_sec = BENCH_REPLY_TIMEOUT_S};
    setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    s->inlen = 0;
    if (read_reply(s, line, sizeof(line)) != 220) {
        report(s, -1, "greeting", line);
        disconnect(s);
        return -1;
    }
    if (command(s, -1, "EHLO bench.floe.test\r\n", 2) < 0) {
        disconnect(s);
        return -1;
    }
    return 0;
}

/* The content of message i: a few header fields and `length` bytes of body in
 * lines of 76 characters, none starting with a dot (so nothing to stuff,
 * RFC 5321 §4.5.2), and the end-of-data line. */
static int build_message(struct session *s, long i, const char *to)
{
    size_t need = (size_t)s->b->length + 2048;
    if (need > s->msgcap) {
        char *p = realloc(s->msg, need);
        if (!p)
            return -1;
        s->msg = p;
        s->msgcap = need;
    }
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    int n = snprintf(s->msg, s->msgcap,
                     "From: <%s>\r\nTo: <%s>\r\nDate: %s\r\nSubject: bench message %ld\r\n"
                     "Message-ID: <%ld.%lld@bench.floe.test>\r\nX-Bench-Seq: %ld\r\n\r\n",
                     s->b->from, to, date, i, i, real_us(), i);
    if (n < 0 || (size_t)n >= s->msgcap)
        return -1;
    size_t o = (size_t)n, left = (size_t)s->b->length, k = (size_t)i;
    static const char text[] = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    while (left > 0) { /* lines of 76 characters and CRLF; the last one shorter */
        size_t len = left > 78 ? 76 : (left > 2 ? left - 2 : 0);
        for (size_t j = 0; j < len; j++)
            s->msg[o++] = text[k++ % (sizeof(text) - 1)];
        s->msg[o++] = '\r';
        s->msg[o++] = '\n';
        left -= len + 2 < left ? len + 2 : left;
    }
    memcpy(s->msg + o, ".\r\n", 3);
    s->msglen = o + 3;
    return 0;
}

static bool send_message(struct session *s, long i)
{
    struct bench *b = s->b;
    char to[BENCH_ADDRESS_MAX * 2 + 16], cmd[BENCH_ADDRESS_MAX * 2 + 32], line[BENCH_LINE_MAX];
    if (b->mailboxes)
        snprintf(to, sizeof(to), "%s%lu@%s", b->to_local, (unsigned long)i % b->mailboxes,
                 b->to_domain);
    else
        snprintf(to, sizeof(to), "%s@%s", b->to_local, b->to_domain);
    if (build_message(s, i, to) < 0) {
        report(s, i, "build", "out of memory");
        return false;
    }
    b->start_us[i] = real_us();
    double t0 = mono_s();
    snprintf(cmd, sizeof(cmd), "MAIL FROM:<%s>\r\n", b->from);
    if (command(s, i, cmd, 2) < 0)
        return false;
    snprintf(cmd, sizeof(cmd), "RCPT TO:<%s>\r\n", to);
    if (command(s, i, cmd, 2) < 0)
        return false;
    if (command(s, i, "DATA\r\n", 3) < 0)
        return false;
    if (send_all(s, s->msg, s->msglen) < 0) {
        report(s, i, "content", "send failed");
        return false;
    }
    int code = read_reply(s, line, sizeof(line));
    if (code / 100 != 2) {
        report(s, i, "end of data", code < 0 ? "no reply" : line);
        return false;
    }
    b->latency[i] = mono_s() - t0;
    return true;
}

static void *session_main(void *arg)
{
    struct session *s = arg;
    struct bench *b = s->b;
    long on_conn = 0;
    for (;;) {
        long i = atomic_fetch_add(&b->next, 1);
        if (i >= b->messages)
            break;
        /* A server that cannot be reached ends this session; the others
         * go on, and messages nobody sent count as failed. */
        if (s->fd < 0 && connect_session(s) < 0)
            break;
        if (!send_message(s, i)) {
            disconnect(s); /* a session in an unknown state is not reused */
            on_conn = 0;
            continue;
        }
        if (b->per_conn > 0 && ++on_conn >= b->per_conn) {
            command(s, i, "QUIT\r\n", 2);
            disconnect(s);
            on_conn = 0;
        }
    }
    if (s->fd >= 0) {
        command(s, -1, "QUIT\r\n", 2);
        disconnect(s);
    }
    return NULL;
}

static int split_address(const char *addr, char *local, char *domain)
{
    const char *at = strrchr(addr, '@');
    if (!at || at == addr || !at[1] || (size_t)(at - addr) >= BENCH_ADDRESS_MAX ||
        strlen(at + 1) >= BENCH_ADDRESS_MAX)
        return -1;
    memcpy(local, addr, (size_t)(at - addr));
    local[at - addr] = '\0';
    strcpy(domain, at + 1);
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: floe-bench-smtp [-s sessions] [-m messages] [-l bytes] [-f from] "
                    "[-t to] [-n mailboxes] [-k per-connection] [-o file] host:port\n");
    return 2;
}

static long number(const char *s, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    return v;
}

int main(int argc, char **argv)
{
    static struct bench b = {.messages = 5000, .length = 5120, .per_conn = 100, .sessions = 20};
    const char *to = "user@bench.test", *from = "sender@client.test", *out = NULL;
    long v;
    int opt;
    while ((opt = getopt(argc, argv, "s:m:l:f:t:n:k:o:")) != -1) {
        switch (opt) {
        case 's':
            if ((v = number(optarg, 1, BENCH_SESSIONS_MAX)) < 0)
                return usage();
            b.sessions = (int)v;
            break;
        case 'm':
            if ((b.messages = number(optarg, 1, BENCH_MESSAGES_MAX)) < 0)
                return usage();
            break;
        case 'l':
            if ((b.length = number(optarg, 0, BENCH_LENGTH_MAX)) < 0)
                return usage();
            break;
        case 'n':
            if ((v = number(optarg, 0, 1000000)) < 0)
                return usage();
            b.mailboxes = (unsigned)v;
            break;
        case 'k':
            if ((b.per_conn = number(optarg, 0, BENCH_MESSAGES_MAX)) < 0)
                return usage();
            break;
        case 'f':
            from = optarg;
            break;
        case 't':
            to = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        default:
            return usage();
        }
    }
    if (optind != argc - 1 || strlen(from) >= sizeof(b.from))
        return usage();
    if (split_address(to, b.to_local, b.to_domain) < 0) {
        fprintf(stderr, "floe-bench-smtp: -t needs local@domain\n");
        return 2;
    }
    strcpy(b.from, from);
    /* split a copy: argv stays as given (ps shows it) */
    static char hostport[BENCH_ADDRESS_MAX];
    if (strlen(argv[optind]) >= sizeof(hostport))
        return usage();
    strcpy(hostport, argv[optind]);
    char *colon = strrchr(hostport, ':');
    if (!colon || colon == hostport || !colon[1])
        return usage();
    *colon = '\0';
    b.host = hostport;
    b.port = colon + 1;
    if (b.host[0] == '[' && colon[-1] == ']') { /* [::1]:25 */
        colon[-1] = '\0';
        b.host++;
    }

    b.latency = malloc((size_t)b.messages * sizeof(double));
    b.start_us = calloc((size_t)b.messages, sizeof(long long));
    struct session *ss = calloc((size_t)b.sessions, sizeof(*ss));
    pthread_t *th = calloc((size_t)b.sessions, sizeof(*th));
    if (!b.latency || !b.start_us || !ss || !th) {
        fprintf(stderr, "floe-bench-smtp: out of memory\n");
        return 1;
    }
    for (long i = 0; i < b.messages; i++)
        b.latency[i] = -1;

    double t0 = mono_s();
    int started = 0;
    for (int k = 0; k < b.sessions; k++) {
        ss[k].b = &b;
        ss[k].fd = -1;
        if (pthread_create(&th[k], NULL, session_main, &ss[k]) != 0) {
            fprintf(stderr, "floe-bench-smtp: cannot start thread %d\n", k);
            break;
        }
        started++;
    }
    for (int k = 0; k < started; k++)
        pthread_join(th[k], NULL);
    double total = mono_s() - t0;

    double *ok = malloc((size_t)b.messages * sizeof(double));
    size_t n = 0;
    if (!ok)
        return 1;
    for (long i = 0; i < b.messages; i++)
        if (b.latency[i] >= 0)
            ok[n++] = b.latency[i];
    if (out) {
        FILE *f = fopen(out, "w");
        if (!f) {
            fprintf(stderr, "floe-bench-smtp: %s: %s\n", out, strerror(errno));
            return 1;
        }
        for (long i = 0; i < b.messages; i++)
            fprintf(f, "%ld %lld %lld\n", i, b.start_us[i],
                    b.latency[i] < 0 ? -1LL : (long long)(b.latency[i] * 1e6));
        if (fclose(f) != 0) {
            fprintf(stderr, "floe-bench-smtp: %s: %s\n", out, strerror(errno));
            return 1;
        }
    }
    qsort(ok, n, sizeof(double), cmp_double);
    long failed = b.messages - (long)n; /* refused, or never sent */
    if (n > 0) {
        size_t p99 = (size_t)((double)n * 0.99);
        printf("%ld messages, %d sessions, %.2f s: %.1f msg/s  p50 %.2f ms  p99 %.2f ms  "
               "max %.2f ms  failed %ld\n",
               (long)n, b.sessions, total, (double)n / total, ok[n / 2] * 1e3,
               ok[p99 < n ? p99 : n - 1] * 1e3, ok[n - 1] * 1e3, failed);
    } else {
        printf("0 messages delivered, failed %ld\n", failed);
    }
    for (int k = 0; k < b.sessions; k++)
        free(ss[k].msg);
    free(ss);
    free(th);
    free(ok);
    free(b.latency);
    free(b.start_us);
    return failed ? 1 : 0;
}
