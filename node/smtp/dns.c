/* Outbound DNS (MX and address lookups) on c-ares, blocking with a deadline.
 *
 * Each call starts its queries on the resolver's channel and then drives c-ares
 * itself: poll() on the sockets c-ares asks for (ares_getsock), sleeping no longer
 * than c-ares's next retransmission (ares_timeout) or the call's deadline, and
 * ares_process_fd() on what became ready. When the deadline passes the queries are
 * cancelled (their callbacks run with ARES_ECANCELLED) and the call fails as
 * temporary. Callbacks copy what they need out of the answer (it lives only during
 * the callback) into a per-query struct on the caller's stack.
 *
 * Queries go out with ares_query (never ares_search): a mail domain is fully
 * qualified, and search domains would turn "example" into "example.corp.local".
 *
 * c-ares status to our status: ARES_ENOTFOUND (NXDOMAIN) and ARES_EBADNAME are
 * permanent; ARES_ENODATA (the name exists without records of the type) is
 * "no data", which MX lookups turn into the implicit MX; everything else
 * (SERVFAIL, REFUSED, timeouts, connection errors) is temporary. */
#include "node/smtp/dns.h"

#include <arpa/inet.h>
#include <ares.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define HALF_ADDRS (DNS_MAX_ADDRS / 2)

struct dns_resolver {
    ares_channel channel;
    unsigned timeout_ms;
};

/* Outcome of one query, as filled by its callback. */
enum q_outcome { Q_PENDING = 0, Q_OK, Q_NODATA, Q_NXDOMAIN, Q_BADNAME, Q_TEMP };

struct mx_query {
    enum q_outcome outcome;
    int ares_status;
    struct dns_mx mx[DNS_MAX_MX];
    size_t n;           /* records kept (the lowest preferences) */
    size_t n_root;      /* of them, naming the root */
    unsigned root_pref; /* preference of the last root record */
    size_t total;       /* records in the answer */
};

struct addr_query {
    enum q_outcome outcome;
    int ares_status;
    int family;
    struct sockaddr_storage addrs[HALF_ADDRS];
    size_t n;
};

static pthread_once_t library_once = PTHREAD_ONCE_INIT;
static int library_status = ARES_SUCCESS;

static void library_init(void)
{
    library_status = ares_library_init(ARES_LIB_INIT_ALL);
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

const char *dns_status_str(int status)
{
    switch (status) {
    case DNS_OK:
        return "ok";
    case DNS_TEMP:
        return "temporary failure";
    case DNS_PERM:
        return "permanent failure";
    default:
        return "unknown status";
    }
}

struct dns_resolver *dns_resolver_new(const char *servers, unsigned timeout_ms, char *err,
                                      size_t errlen)
{
    pthread_once(&library_once, library_init);
    if (library_status != ARES_SUCCESS) {
        set_err(err, errlen, "c-ares: %s", ares_strerror(library_status));
        return NULL;
    }
    if (servers != NULL && strlen(servers) > DNS_MAX_SERVERS) {
        set_err(err, errlen, "DNS server list longer than %d bytes", DNS_MAX_SERVERS);
        return NULL;
    }
    struct dns_resolver *r = calloc(1, sizeof *r);
    if (r == NULL) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    r->timeout_ms = timeout_ms != 0 ? timeout_ms : DNS_DEFAULT_TIMEOUT_MS;

    /* Two tries per server; c-ares doubles the per-try timeout on each round, so a
     * third of the budget for the first try keeps both inside the deadline. The
     * deadline in wait_queries() is what actually bounds a call. */
    struct ares_options opts;
    memset(&opts, 0, sizeof opts);
    opts.timeout = (int)(r->timeout_ms / 3 > 100 ? r->timeout_ms / 3 : 100);
    opts.tries = 2;
    opts.flags = ARES_FLAG_NOSEARCH;
    int rc =
        ares_init_options(&r->channel, &opts, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS);
    if (rc != ARES_SUCCESS) {
        set_err(err, errlen, "c-ares: %s", ares_strerror(rc));
        free(r);
        return NULL;
    }
    if (servers != NULL && servers[0] != '\0') {
        rc = ares_set_servers_ports_csv(r->channel, servers);
        if (rc != ARES_SUCCESS) {
            set_err(err, errlen, "bad DNS server list '%.64s': %s", servers, ares_strerror(rc));
            ares_destroy(r->channel);
            free(r);
            return NULL;
        }
    }
    return r;
}

void dns_resolver_free(struct dns_resolver **r)
{
    if (r == NULL || *r == NULL)
        return;
    ares_destroy((*r)->channel);
    free(*r);
    *r = NULL;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static enum q_outcome outcome_of(int ares_status)
{
    switch (ares_status) {
    case ARES_SUCCESS:
        return Q_OK;
    case ARES_ENODATA:
        return Q_NODATA;
    case ARES_ENOTFOUND:
        return Q_NXDOMAIN;
    case ARES_EBADNAME:
        return Q_BADNAME;
    default:
        return Q_TEMP;
    }
}

/* Drives the channel until *pending reaches 0 or the deadline passes; then cancels
 * what is left (each callback decrements *pending). */
static void wait_queries(struct dns_resolver *r, const int *pending)
{
    long long deadline = now_ms() + r->timeout_ms;
    while (*pending > 0) {
        long long left = deadline - now_ms();
        if (left <= 0) {
            ares_cancel(r->channel);
            return;
        }
        ares_socket_t socks[ARES_GETSOCK_MAXNUM];
        /* The bits tested by hand: ARES_GETSOCK_WRITABLE shifts a signed 1 into the
         * sign bit for the last socket, which is undefined behaviour. */
        unsigned bits = (unsigned)ares_getsock(r->channel, socks, ARES_GETSOCK_MAXNUM);
        struct pollfd pfd[ARES_GETSOCK_MAXNUM];
        nfds_t n = 0;
        for (int i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
            short ev = 0;
            if (bits & (1u << i))
                ev |= POLLIN;
            if (bits & (1u << (i + ARES_GETSOCK_MAXNUM)))
                ev |= POLLOUT;
            if (ev == 0)
                continue;
            pfd[n].fd = socks[i];
            pfd[n].events = ev;
            pfd[n].revents = 0;
            n++;
        }
        struct timeval maxtv = {.tv_sec = (time_t)(left / 1000),
                                .tv_usec = (suseconds_t)(left % 1000) * 1000};
        struct timeval tvbuf;
        struct timeval *tv = ares_timeout(r->channel, &maxtv, &tvbuf);
        long long wait = (long long)tv->tv_sec * 1000 + tv->tv_usec / 1000;
        if (wait <= 0 && (tv->tv_sec > 0 || tv->tv_usec > 0))
            wait = 1; /* a sub-millisecond wait must not become a busy loop */
        int rc = poll(pfd, n, (int)(wait > left ? left : wait));
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            ares_cancel(r->channel);
            return;
        }
        if (rc == 0) {
            ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* timeouts */
            continue;
        }
        for (nfds_t i = 0; i < n; i++) {
            if (pfd[i].revents == 0)
                continue;
            ares_socket_t rfd =
                (pfd[i].revents & (POLLIN | POLLERR | POLLHUP)) ? pfd[i].fd : ARES_SOCKET_BAD;
            ares_socket_t wfd = (pfd[i].revents & POLLOUT) ? pfd[i].fd : ARES_SOCKET_BAD;
            ares_process_fd(r->channel, rfd, wfd);
        }
    }
}

struct cb_ctx {
    int *pending;
    void *query;
};

static int mx_cmp(const void *a, const void *b)
{
    const struct dns_mx *x = a, *y = b;
    return x->pref < y->pref ? -1 : x->pref > y->pref;
}

static void mx_callback(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct cb_ctx *c = arg;
    struct mx_query *q = c->query;
    (*c->pending)--;
    q->ares_status = status;
    q->outcome = outcome_of(status);
    if (q->outcome != Q_OK)
        return;
    struct ares_mx_reply *head = NULL;
    int rc = ares_parse_mx_reply(abuf, alen, &head);
    if (rc != ARES_SUCCESS) {
        q->ares_status = rc;
        /* An answer without MX records (only a CNAME chain, say) is no data. */
        q->outcome = rc == ARES_ENODATA ? Q_NODATA : Q_TEMP;
        return;
    }
    /* Keep the DNS_MAX_MX lowest preferences: replace the worst kept record when a
     * better one comes after the array is full. */
    for (struct ares_mx_reply *m = head; m != NULL; m = m->next) {
        q->total++;
        const char *h = m->host != NULL ? m->host : "";
        size_t hl = strlen(h);
        if (hl > 0 && h[hl - 1] == '.')
            hl--;
        if (hl == 0) {
            q->n_root++;
            q->root_pref = m->priority;
            continue;
        }
        if (hl > DNS_MAX_NAME)
            continue;
        size_t slot = q->n;
        if (q->n == DNS_MAX_MX) {
            slot = 0;
            for (size_t i = 1; i < q->n; i++)
                if (q->mx[i].pref > q->mx[slot].pref)
                    slot = i;
            if (q->mx[slot].pref <= m->priority)
                continue;
        } else {
            q->n++;
        }
        memcpy(q->mx[slot].host, h, hl);
        q->mx[slot].host[hl] = '\0';
        q->mx[slot].pref = m->priority;
    }
    ares_free_data(head);
    if (q->total == 0)
        q->outcome = Q_NODATA;
}

static void addr_callback(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct cb_ctx *c = arg;
    struct addr_query *q = c->query;
    (*c->pending)--;
    q->ares_status = status;
    q->outcome = outcome_of(status);
    if (q->outcome != Q_OK)
        return;
    int rc, count = HALF_ADDRS;
    if (q->family == AF_INET) {
        struct ares_addrttl a[HALF_ADDRS];
        rc = ares_parse_a_reply(abuf, alen, NULL, a, &count);
        for (int i = 0; rc == ARES_SUCCESS && i < count && q->n < HALF_ADDRS; i++) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&q->addrs[q->n++];
            memset(sin, 0, sizeof *sin);
            sin->sin_family = AF_INET;
            sin->sin_addr = a[i].ipaddr;
        }
    } else {
        struct ares_addr6ttl a[HALF_ADDRS];
        rc = ares_parse_aaaa_reply(abuf, alen, NULL, a, &count);
        for (int i = 0; rc == ARES_SUCCESS && i < count && q->n < HALF_ADDRS; i++) {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&q->addrs[q->n++];
            memset(sin6, 0, sizeof *sin6);
            sin6->sin6_family = AF_INET6;
            memcpy(&sin6->sin6_addr, &a[i].ip6addr, sizeof sin6->sin6_addr);
        }
    }
    if (rc != ARES_SUCCESS) {
        q->ares_status = rc;
        q->outcome = rc == ARES_ENODATA ? Q_NODATA : Q_TEMP;
    } else if (q->n == 0) {
        q->outcome = Q_NODATA;
    }
}

/* Copies NAME without a trailing dot into out (DNS_MAX_NAME + 1 bytes); -1 when it is
 * empty, too long or holds bytes no DNS name should (controls, blanks). */
static int clean_name(const char *name, char *out)
{
    if (name == NULL)
        return -1;
    size_t len = strlen(name);
    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0 || len > DNS_MAX_NAME)
        return -1;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] <= ' ' || name[i] == 0x7f)
            return -1;
    memcpy(out, name, len);
    out[len] = '\0';
    return 0;
}

/* Looks up A and AAAA of NAME at once into q4 and q6. */
static void lookup_addrs(struct dns_resolver *r, const char *name, struct addr_query *q4,
                         struct addr_query *q6)
{
    int pending = 2;
    memset(q4, 0, sizeof *q4);
    memset(q6, 0, sizeof *q6);
    q4->family = AF_INET;
    q6->family = AF_INET6;
    struct cb_ctx c4 = {&pending, q4}, c6 = {&pending, q6};
    ares_query(r->channel, name, 1 /* C_IN */, 28 /* T_AAAA */, addr_callback, &c6);
    ares_query(r->channel, name, 1 /* C_IN */, 1 /* T_A */, addr_callback, &c4);
    wait_queries(r, &pending);
}

static const char *reason(int ares_status)
{
    if (ares_status == ARES_ECANCELLED || ares_status == ARES_ETIMEOUT)
        return "timed out";
    return ares_strerror(ares_status);
}

/* Shuffles each run of equal preferences in the sorted list (RFC 5321 §5.1: "the
 * sender-SMTP MUST randomize them to spread the load"). */
static void shuffle_equal(struct dns_mx *mx, size_t n)
{
    size_t start = 0;
    while (start < n) {
        size_t end = start + 1;
        while (end < n && mx[end].pref == mx[start].pref)
            end++;
        for (size_t i = end - 1; i > start; i--) {
            size_t j = start + arc4random_uniform((uint32_t)(i - start + 1));
            struct dns_mx t = mx[i];
            mx[i] = mx[j];
            mx[j] = t;
        }
        start = end;
    }
}

int dns_mx(struct dns_resolver *r, const char *domain, struct dns_mx_result *res_r, char *err,
           size_t errlen)
{
    memset(res_r, 0, sizeof *res_r);
    char name[DNS_MAX_NAME + 1];
    if (r == NULL || clean_name(domain, name) < 0) {
        set_err(err, errlen, "invalid domain name");
        return DNS_PERM;
    }

    struct mx_query q;
    memset(&q, 0, sizeof q);
    int pending = 1;
    struct cb_ctx c = {&pending, &q};
    ares_query(r->channel, name, 1 /* C_IN */, 15 /* T_MX */, mx_callback, &c);
    wait_queries(r, &pending);

    switch (q.outcome) {
    case Q_OK:
        break;
    case Q_NODATA:
        goto implicit;
    case Q_NXDOMAIN:
        set_err(err, errlen, "%s: domain does not exist", name);
        return DNS_PERM;
    case Q_BADNAME:
        set_err(err, errlen, "%s: invalid domain name", name);
        return DNS_PERM;
    case Q_PENDING:
    case Q_TEMP:
        set_err(err, errlen, "%s: MX lookup: %s", name, reason(q.ares_status));
        return DNS_TEMP;
    }

    /* RFC 7505 §3: a null MX is a single record, preference 0, naming the root. */
    if (q.total == 1 && q.n_root == 1 && q.root_pref == 0) {
        res_r->null_mx = true;
        return DNS_OK;
    }
    if (q.n == 0) {
        set_err(err, errlen, "%s: MX records name only the root", name);
        return DNS_PERM;
    }
    qsort(q.mx, q.n, sizeof q.mx[0], mx_cmp);
    shuffle_equal(q.mx, q.n);
    memcpy(res_r->mx, q.mx, q.n * sizeof q.mx[0]);
    res_r->n = q.n;
    return DNS_OK;

implicit:;
    /* RFC 5321 §5.1: no MX records -> the domain itself as an implicit MX of
     * preference 0, but only when it has an address. */
    struct addr_query q4, q6;
    lookup_addrs(r, name, &q4, &q6);
    if (q4.outcome == Q_OK || q6.outcome == Q_OK) {
        memcpy(res_r->mx[0].host, name, strlen(name) + 1);
        res_r->mx[0].pref = 0;
        res_r->n = 1;
        res_r->implicit = true;
        return DNS_OK;
    }
    if (q4.outcome == Q_TEMP || q4.outcome == Q_PENDING) {
        set_err(err, errlen, "%s: no MX, A lookup: %s", name, reason(q4.ares_status));
        return DNS_TEMP;
    }
    if (q6.outcome == Q_TEMP || q6.outcome == Q_PENDING) {
        set_err(err, errlen, "%s: no MX, AAAA lookup: %s", name, reason(q6.ares_status));
        return DNS_TEMP;
    }
    set_err(err, errlen, "%s: no MX and no address records", name);
    return DNS_PERM;
}

int dns_addrs(struct dns_resolver *r, const char *host, struct sockaddr_storage *addrs_r,
              size_t *n_r, char *err, size_t errlen)
{
    *n_r = 0;
    char name[DNS_MAX_NAME + 1];
    if (r == NULL || clean_name(host, name) < 0) {
        set_err(err, errlen, "invalid host name");
        return DNS_PERM;
    }
    struct addr_query q4, q6;
    lookup_addrs(r, name, &q4, &q6);
    size_t n = 0;
    for (size_t i = 0; i < q6.n; i++)
        addrs_r[n++] = q6.addrs[i];
    for (size_t i = 0; i < q4.n; i++)
        addrs_r[n++] = q4.addrs[i];
    *n_r = n;
    if (n > 0)
        return DNS_OK;
    if (q4.outcome == Q_TEMP || q4.outcome == Q_PENDING) {
        set_err(err, errlen, "%s: A lookup: %s", name, reason(q4.ares_status));
        return DNS_TEMP;
    }
    if (q6.outcome == Q_TEMP || q6.outcome == Q_PENDING) {
        set_err(err, errlen, "%s: AAAA lookup: %s", name, reason(q6.ares_status));
        return DNS_TEMP;
    }
    if (q4.outcome == Q_NXDOMAIN || q6.outcome == Q_NXDOMAIN)
        set_err(err, errlen, "%s: host does not exist", name);
    else if (q4.outcome == Q_BADNAME || q6.outcome == Q_BADNAME)
        set_err(err, errlen, "%s: invalid host name", name);
    else
        set_err(err, errlen, "%s: no address records", name);
    return DNS_PERM;
}

int dns_literal(const char *literal, struct sockaddr_storage *addr_r)
{
    if (literal == NULL || literal[0] != '[')
        return -1;
    size_t len = strlen(literal);
    if (len < 3 || literal[len - 1] != ']')
        return -1;
    const char *in = literal + 1;
    size_t inlen = len - 2;
    bool v6 = inlen > 5 && strncasecmp(in, "IPv6:", 5) == 0;
    if (v6) {
        in += 5;
        inlen -= 5;
    }
    char buf[INET6_ADDRSTRLEN + 1];
    if (inlen == 0 || inlen >= sizeof buf)
        return -1;
    memcpy(buf, in, inlen);
    buf[inlen] = '\0';
    memset(addr_r, 0, sizeof *addr_r);
    if (v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)addr_r;
        if (inet_pton(AF_INET6, buf, &sin6->sin6_addr) != 1)
            return -1;
        sin6->sin6_family = AF_INET6;
        return 0;
    }
    /* inet_pton takes only dotted quads of decimal octets, which is the RFC 5321
     * IPv4-address-literal (Snum "." Snum "." Snum "." Snum). */
    struct sockaddr_in *sin = (struct sockaddr_in *)addr_r;
    if (inet_pton(AF_INET, buf, &sin->sin_addr) != 1)
        return -1;
    sin->sin_family = AF_INET;
    return 0;
}
