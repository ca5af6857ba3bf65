/* Remote watchdog (see watchdog.h).
 *
 * The scheduler thread calls watchdog_run_due() every tick. When this node is
 * master it selects the enabled watchdogs whose next_check has passed (index
 * watchdogs_due), probes each one in turn (blocking, bounded by a timeout of
 * min(interval, WATCHDOG_TIMEOUT_MAX) seconds) and then, in one transaction:
 * checks the epoch fence, re-reads the row's state FOR UPDATE, applies the pure
 * state machine watchdog_step(), writes the new state and inserts the alerts.
 * Times come from the database's clock, so nodes with skewed clocks agree on
 * how long an outage has lasted.
 *
 * Probes:
 *   tcp  — getaddrinfo, then a non-blocking connect to each address until one
 *          succeeds; the send string is written, and with an expect regex the
 *          answer is read (at most WATCHDOG_ANSWER_MAX bytes) until it matches,
 *          the peer closes or the time is up. Name resolution itself is not
 *          bounded by the timeout (getaddrinfo has none).
 *   http — libcurl GET; the body streams through SHA-256 and is not stored.
 *   dns  — a and aaaa through getaddrinfo (so /etc/hosts counts, as for any
 *          other program on the host); the other types with res_nquery and a
 *          parser of the answer section (RFC 1035 §4.1.1-§4.1.3; MX §3.3.9,
 *          TXT §3.3.14, PTR §3.3.12, CNAME §3.3.1, SRV RFC 2782, NAPTR
 *          RFC 3403 §4.1). ns_initparse and friends live in libresolv, which
 *          Floe does not link; res_nquery and dn_expand are in libc. */
#include "cluster/watchdog.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <regex.h>
#include <resolv.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "storage/blob.h"
#include "storage/db.h"
#include "storage/queue.h"

/* ---- targets ---- */

static const struct {
    const char *name;
    int type;
} dns_types[] = {
    {"a", ns_t_a},     {"aaaa", ns_t_aaaa},   {"mx", ns_t_mx},   {"txt", ns_t_txt},
    {"ptr", ns_t_ptr}, {"cname", ns_t_cname}, {"srv", ns_t_srv}, {"naptr", ns_t_naptr},
};

static bool host_char(char ch)
{
    return isalnum((unsigned char)ch) || ch == '.' || ch == '-' || ch == '_';
}

static int parse_port(const char *s, int *port_r)
{
    long v = 0;
    if (!*s || strlen(s) > 5)
        return -1;
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return -1;
        v = v * 10 + (*p - '0');
    }
    if (v < 1 || v > 65535)
        return -1;
    *port_r = (int)v;
    return 0;
}

static int parse_tcp(const char *rest, struct watchdog_target *t, char *err, size_t errlen)
{
    const char *host = rest, *colon;
    size_t hlen;
    bool v6 = false;
    if (*rest == '[') {
        const char *close = strchr(rest, ']');
        if (!close || close[1] != ':') {
            snprintf(err, errlen, "tcp target must be tcp://HOST:PORT or tcp://[IPV6]:PORT");
            return -1;
        }
        host = rest + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
        v6 = true;
    } else {
        colon = strrchr(rest, ':');
        if (!colon) {
            snprintf(err, errlen, "tcp target must be tcp://HOST:PORT");
            return -1;
        }
        hlen = (size_t)(colon - rest);
    }
    if (hlen == 0 || hlen > WATCHDOG_HOST_MAX) {
        snprintf(err, errlen, "tcp target: the host must be 1-%d bytes", WATCHDOG_HOST_MAX);
        return -1;
    }
    for (size_t i = 0; i < hlen; i++)
        if (!(v6 ? isxdigit((unsigned char)host[i]) || host[i] == ':' || host[i] == '.'
                 : host_char(host[i]))) {
            snprintf(err, errlen, "tcp target: invalid character in the host");
            return -1;
        }
    if (parse_port(colon + 1, &t->port) < 0) {
        snprintf(err, errlen, "tcp target: the port must be 1-65535");
        return -1;
    }
    memcpy(t->host, host, hlen);
    t->host[hlen] = '\0';
    t->kind = WATCHDOG_TCP;
    return 0;
}

static int parse_http(const char *text, size_t scheme_len, struct watchdog_target *t, char *err,
                      size_t errlen)
{
    for (const char *p = text; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            snprintf(err, errlen, "URL must not contain spaces or control characters");
            return -1;
        }
    const char *host = text + scheme_len;
    if (!*host || *host == '/' || *host == '?' || *host == '#' || *host == ':') {
        snprintf(err, errlen, "URL has no host");
        return -1;
    }
    snprintf(t->url, sizeof(t->url), "%s", text);
    t->kind = WATCHDOG_HTTP;
    return 0;
}

static int parse_dns(const char *rest, struct watchdog_target *t, char *err, size_t errlen)
{
    const char *colon = strrchr(rest, ':');
    if (!colon) {
        snprintf(err, errlen, "dns target must be dns://NAME:TYPE");
        return -1;
    }
    int type = -1;
    for (size_t i = 0; i < sizeof(dns_types) / sizeof(dns_types[0]); i++)
        if (!strcasecmp(colon + 1, dns_types[i].name))
            type = dns_types[i].type;
    if (type < 0) {
        snprintf(err, errlen, "dns query type must be a, aaaa, mx, txt, ptr, cname, srv or naptr");
        return -1;
    }
    size_t nlen = (size_t)(colon - rest);
    if (nlen == 0 || nlen > 253) {
        snprintf(err, errlen, "dns target: the name must be 1-253 bytes");
        return -1;
    }
    for (size_t i = 0; i < nlen; i++)
        /* a PTR query may name an IPv6 address, which has colons */
        if (!host_char(rest[i]) && !(type == ns_t_ptr && rest[i] == ':')) {
            snprintf(err, errlen, "dns target: invalid character in the name");
            return -1;
        }
    memcpy(t->host, rest, nlen);
    t->host[nlen] = '\0';
    t->dns_type = type;
    t->kind = WATCHDOG_DNS;
    return 0;
}

int watchdog_target_parse(const char *text, struct watchdog_target *t_r, char *err, size_t errlen)
{
    memset(t_r, 0, sizeof(*t_r));
    size_t len = strlen(text);
    if (len == 0 || len > WATCHDOG_URL_MAX) {
        snprintf(err, errlen, "target must be 1-%d bytes", WATCHDOG_URL_MAX);
        return -1;
    }
    if (!strncasecmp(text, "tcp://", 6))
        return parse_tcp(text + 6, t_r, err, errlen);
    if (!strncasecmp(text, "http://", 7))
        return parse_http(text, 7, t_r, err, errlen);
    if (!strncasecmp(text, "https://", 8))
        return parse_http(text, 8, t_r, err, errlen);
    if (!strncasecmp(text, "dns://", 6))
        return parse_dns(text + 6, t_r, err, errlen);
    snprintf(err, errlen, "target must be tcp://HOST:PORT, http(s)://URL or dns://NAME:TYPE");
    return -1;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = (char)tolower((unsigned char)ch);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

int watchdog_unescape(const char *in, char *out, size_t outlen, size_t *len_r, char *err,
                      size_t errlen)
{
    size_t n = 0;
    for (const char *p = in; *p; p++) {
        char ch = *p;
        if (ch == '\\') {
            p++;
            switch (*p) {
            case 'r':
                ch = '\r';
                break;
            case 'n':
                ch = '\n';
                break;
            case 't':
                ch = '\t';
                break;
            case '0':
                ch = '\0';
                break;
            case '\\':
            case '\'':
            case '"':
                ch = *p;
                break;
            case 'x': {
                int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
                if (hi < 0 || lo < 0) {
                    snprintf(err, errlen, "\\x needs two hex digits");
                    return -1;
                }
                ch = (char)(hi * 16 + lo);
                p += 2;
                break;
            }
            case '\0':
                snprintf(err, errlen, "the string ends with a lone backslash");
                return -1;
            default:
                snprintf(err, errlen, "unknown escape \\%c (use \\r \\n \\t \\0 \\\\ \\xHH)", *p);
                return -1;
            }
        }
        if (n >= outlen) {
            snprintf(err, errlen, "the string is longer than %zu bytes", outlen);
            return -1;
        }
        out[n++] = ch;
    }
    *len_r = n;
    return 0;
}

int watchdog_regex_check(const char *re, char *err, size_t errlen)
{
    if (strlen(re) > WATCHDOG_EXPECT_MAX) {
        snprintf(err, errlen, "the regex is longer than %d bytes", WATCHDOG_EXPECT_MAX);
        return -1;
    }
    regex_t rx;
    int rc = regcomp(&rx, re, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char msg[128];
        regerror(rc, &rx, msg, sizeof(msg));
        snprintf(err, errlen, "invalid regex: %s", msg);
        return -1;
    }
    regfree(&rx);
    return 0;
}

/* ---- hashing ---- */

static void hex_of(const unsigned char *md, unsigned n, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < n; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[2 * n] = '\0';
}

void watchdog_sha256_hex(const void *data, size_t len, char hex_r[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    if (!EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) || n != 32) {
        hex_r[0] = '\0';
        return;
    }
    hex_of(md, n, hex_r);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void watchdog_answers_hash(char **answers, size_t n, char hex_r[65])
{
    if (n > 1)
        qsort(answers, n, sizeof(*answers), cmp_str);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (size_t i = 0; ok && i < n; i++)
        ok = (i == 0 || EVP_DigestUpdate(ctx, "\n", 1)) &&
             EVP_DigestUpdate(ctx, answers[i], strlen(answers[i]));
    ok = ok && EVP_DigestFinal_ex(ctx, md, &len) && len == 32;
    EVP_MD_CTX_free(ctx);
    if (ok)
        hex_of(md, len, hex_r);
    else
        hex_r[0] = '\0';
}

/* ---- the state machine ---- */

int watchdog_step(struct watchdog_state *st, bool up, const char *hash, time_t now,
                  long long down_after_s, bool notify_back)
{
    int alerts = 0;
    if (up) {
        if (st->status == WATCHDOG_DOWN && st->down_alerted && notify_back)
            alerts |= WATCHDOG_ALERT_BACK_ONLINE;
        if (st->status != WATCHDOG_UP) {
            st->status = WATCHDOG_UP;
            st->since = now;
        }
        st->down_alerted = false;
        if (hash && *hash) {
            if (st->hash[0] && strcmp(st->hash, hash))
                alerts |= WATCHDOG_ALERT_CHANGED;
            snprintf(st->hash, sizeof(st->hash), "%s", hash);
        }
        return alerts;
    }
    if (st->status != WATCHDOG_DOWN) {
        st->status = WATCHDOG_DOWN;
        st->since = now;
        st->down_alerted = false;
    }
    if (!st->down_alerted && (long long)(now - st->since) >= down_after_s) {
        st->down_alerted = true;
        alerts |= WATCHDOG_ALERT_DOWN;
    }
    return alerts;
}

const char *watchdog_status_name(enum watchdog_status s)
{
    return s == WATCHDOG_UP ? "up" : s == WATCHDOG_DOWN ? "down" : "unknown";
}

int watchdog_status_parse(const char *name)
{
    if (!strcmp(name, "up"))
        return WATCHDOG_UP;
    if (!strcmp(name, "down"))
        return WATCHDOG_DOWN;
    if (!strcmp(name, "unknown"))
        return WATCHDOG_UNKNOWN;
    return -1;
}

/* ---- probes ---- */

__attribute__((format(printf, 2, 3))) static void down(struct watchdog_probe *res, const char *fmt,
                                                       ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->error, sizeof(res->error), fmt, ap);
    va_end(ap);
    res->up = false;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events on fd until deadline (monotonic ms). 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd pfd = {.fd = fd, .events = events};
        int r = poll(&pfd, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        return r < 0 ? -1 : r > 0;
    }
}

static int tcp_connect(const struct watchdog_target *t, long long deadline,
                       struct watchdog_probe *res)
{
    char port[8];
    snprintf(port, sizeof(port), "%d", t->port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(t->host, port, &hints, &ai);
    if (rc != 0) {
        down(res, "cannot resolve %s: %s", t->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1, last = 0;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            last = errno;
            continue;
        }
        int err = 0;
        if (connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
            err = errno;
            if (err == EINPROGRESS) {
                int w = wait_fd(fd, POLLOUT, deadline);
                socklen_t len = sizeof(err);
                if (w <= 0)
                    err = w == 0 ? ETIMEDOUT : errno;
                else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                    err = errno;
            }
        }
        if (err) {
            last = err;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0)
        down(res, "cannot connect to %s port %d: %s", t->host, t->port, strerror(last));
    return fd;
}

static void probe_tcp(const struct watchdog_target *t, const char *payload, size_t send_len,
                      const regex_t *rx, int timeout_s, struct watchdog_probe *res)
{
    long long deadline = now_ms() + (long long)timeout_s * 1000;
    int fd = tcp_connect(t, deadline, res);
    if (fd < 0)
        return;
    for (size_t sent = 0; sent < send_len;) {
        ssize_t w = send(fd, payload + sent, send_len - sent, MSG_NOSIGNAL);
        if (w > 0) {
            sent += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
            wait_fd(fd, POLLOUT, deadline) > 0)
            continue;
        down(res, "cannot send to %s port %d: %s", t->host, t->port,
             w < 0 ? strerror(errno) : "timed out");
        close(fd);
        return;
    }
    if (!rx) {
        close(fd);
        res->up = true;
        return;
    }
    /* The first WATCHDOG_ANSWER_MAX bytes of the answer, NUL bytes shown as
     * spaces so that the regex sees all of it. */
    char buf[WATCHDOG_ANSWER_MAX + 1];
    size_t used = 0;
    bool matched = false, closed = false;
    while (!matched && used < WATCHDOG_ANSWER_MAX) {
        ssize_t r = recv(fd, buf + used, WATCHDOG_ANSWER_MAX - used, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(fd, POLLIN, deadline) > 0)
                continue;
            break;
        }
        if (r <= 0) {
            closed = true;
            break;
        }
        for (size_t i = used; i < used + (size_t)r; i++)
            if (buf[i] == '\0')
                buf[i] = ' ';
        used += (size_t)r;
        buf[used] = '\0';
        matched = regexec(rx, buf, 0, NULL, 0) == 0;
    }
    close(fd);
    if (matched) {
        res->up = true;
        return;
    }
    if (used == 0)
        down(res, "no answer from %s port %d%s", t->host, t->port,
             closed ? " (connection closed)" : " within the timeout");
    else
        down(res, "the answer does not match the expected pattern: %.80s", buf);
}

struct http_body {
    EVP_MD_CTX *sha;
    long long size;
    char head[WATCHDOG_ANSWER_MAX + 1];
    size_t head_len;
    bool failed;
};

static size_t http_write(char *p, size_t size, size_t n, void *arg)
{
    struct http_body *b = arg;
    size_t len = size * n;
    if (b->size + (long long)len > WATCHDOG_BODY_MAX || !EVP_DigestUpdate(b->sha, p, len)) {
        b->failed = true;
        return 0; /* aborts the transfer */
    }
    b->size += (long long)len;
    size_t take = len < WATCHDOG_ANSWER_MAX - b->head_len ? len : WATCHDOG_ANSWER_MAX - b->head_len;
    for (size_t i = 0; i < take; i++)
        b->head[b->head_len++] = p[i] ? p[i] : ' ';
    return len;
}

static void probe_http(const struct watchdog_target *t, const regex_t *rx, int timeout_s,
                       struct watchdog_probe *res)
{
    struct http_body b = {.sha = EVP_MD_CTX_new()};
    CURL *h = curl_easy_init();
    if (!h || !b.sha || !EVP_DigestInit_ex(b.sha, EVP_sha256(), NULL)) {
        down(res, "cannot start an HTTP client");
        curl_easy_cleanup(h);
        EVP_MD_CTX_free(b.sha);
        return;
    }
    curl_easy_setopt(h, CURLOPT_URL, t->url);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)timeout_s);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_USERAGENT, "floe-watchdog/" FLOE_VERSION);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, http_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    CURLcode rc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    bool hashed = EVP_DigestFinal_ex(b.sha, md, &mdlen) && mdlen == 32;
    EVP_MD_CTX_free(b.sha);
    b.head[b.head_len] = '\0';
    if (b.failed)
        down(res, "the body is longer than %lld bytes", (long long)WATCHDOG_BODY_MAX);
    else if (rc != CURLE_OK)
        down(res, "%s", curl_easy_strerror(rc));
    else if (code < 200 || code > 299)
        down(res, "HTTP %ld", code);
    else if (rx && regexec(rx, b.head, 0, NULL, 0) != 0)
        down(res, "the body does not match the expected pattern");
    else if (!hashed)
        down(res, "cannot hash the body");
    else {
        res->up = true;
        res->has_content = true;
        res->size = b.size;
        hex_of(md, mdlen, res->hash);
    }
}

/* A reply's answers of the queried type as text, into answers[] (strdup'd).
 * Returns their number, or -1 when the reply is malformed. */
static int dns_parse(const unsigned char *msg, int len, int type, char **answers, size_t max)
{
    const unsigned char *end = msg + len, *p = msg + NS_HFIXEDSZ;
    if (len < NS_HFIXEDSZ)
        return -1;
    unsigned qd = ((unsigned)msg[4] << 8) | msg[5], an = ((unsigned)msg[6] << 8) | msg[7];
    for (unsigned i = 0; i < qd; i++) { /* RFC 1035 §4.1.2: QNAME QTYPE QCLASS */
        int n = dn_skipname(p, end);
        if (n < 0 || end - p < n + 4)
            return -1;
        p += n + 4;
    }
    int count = 0;
    for (unsigned i = 0; i < an && (size_t)count < max; i++) {
        /* RFC 1035 §4.1.3: NAME TYPE CLASS TTL RDLENGTH RDATA */
        int n = dn_skipname(p, end);
        if (n < 0 || end - p < n + 10)
            return -1;
        p += n;
        int rtype = (p[0] << 8) | p[1];
        int rdlen = (p[8] << 8) | p[9];
        p += 10;
        if (end - p < rdlen)
            return -1;
        const unsigned char *rd = p, *rend = p + rdlen;
        p = rend;
        if (rtype != type)
            continue;                                    /* e.g. the CNAME records of a chain */
        char text[NS_MAXDNAME + 800], name[NS_MAXDNAME]; /* fits the longest NAPTR */
        text[0] = '\0';
        switch (type) {
        case ns_t_ptr:
        case ns_t_cname:
            if (dn_expand(msg, end, rd, name, sizeof(name)) < 0)
                return -1;
            snprintf(text, sizeof(text), "%s", name);
            break;
        case ns_t_mx:
            if (rdlen < 3 || dn_expand(msg, end, rd + 2, name, sizeof(name)) < 0)
                return -1;
            snprintf(text, sizeof(text), "%u %s", (rd[0] << 8) | rd[1], name);
            break;
        case ns_t_srv:
            if (rdlen < 7 || dn_expand(msg, end, rd + 6, name, sizeof(name)) < 0)
                return -1;
            snprintf(text, sizeof(text), "%u %u %u %s", (rd[0] << 8) | rd[1], (rd[2] << 8) | rd[3],
                     (rd[4] << 8) | rd[5], name);
            break;
        case ns_t_txt: {
            /* one or more <character-string>s, shown joined, non-printables as '?' */
            size_t used = 0;
            for (const unsigned char *s = rd; s < rend;) {
                size_t sl = *s++;
                if ((size_t)(rend - s) < sl)
                    return -1;
                for (size_t k = 0; k < sl && used + 1 < sizeof(text); k++)
                    text[used++] = isprint(s[k]) ? (char)s[k] : '?';
                s += sl;
            }
            text[used] = '\0';
            break;
        }
        case ns_t_naptr: {
            /* ORDER PREFERENCE FLAGS SERVICES REGEXP REPLACEMENT */
            if (rdlen < 4)
                return -1;
            const unsigned char *s = rd + 4;
            char strs[3][256];
            for (int k = 0; k < 3; k++) {
                if (s >= rend || (size_t)(rend - s - 1) < *s)
                    return -1;
                size_t sl = *s++;
                for (size_t m = 0; m < sl; m++)
                    strs[k][m] = isprint(s[m]) ? (char)s[m] : '?';
                strs[k][sl] = '\0';
                s += sl;
            }
            if (dn_expand(msg, end, s, name, sizeof(name)) < 0)
                return -1;
            snprintf(text, sizeof(text), "%u %u \"%s\" \"%s\" \"%s\" %s", (rd[0] << 8) | rd[1],
                     (rd[2] << 8) | rd[3], strs[0], strs[1], strs[2], *name ? name : ".");
            break;
        }
        default:
            continue;
        }
        if (!(answers[count] = strdup(text)))
            return -1;
        count++;
    }
    return count;
}

/* The in-addr.arpa / ip6.arpa name of an address literal (RFC 1035 §3.5,
 * RFC 3596 §2.5); 0 when name is one, -1 when it is not an address. */
static int reverse_name(const char *name, char *out, size_t outlen)
{
    unsigned char a[16];
    if (inet_pton(AF_INET, name, a) == 1) {
        snprintf(out, outlen, "%u.%u.%u.%u.in-addr.arpa", a[3], a[2], a[1], a[0]);
        return 0;
    }
    if (inet_pton(AF_INET6, name, a) != 1)
        return -1;
    size_t n = 0;
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0 && n + 4 < outlen; i--) {
        out[n++] = digits[a[i] & 15];
        out[n++] = '.';
        out[n++] = digits[a[i] >> 4];
        out[n++] = '.';
    }
    snprintf(out + n, outlen - n, "ip6.arpa");
    return 0;
}

static int dns_addresses(const struct watchdog_target *t, char **answers, size_t max,
                         struct watchdog_probe *res)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_family = t->dns_type == ns_t_a ? AF_INET : AF_INET6};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(t->host, NULL, &hints, &ai);
    if (rc != 0) {
        down(res, "%s: %s", t->host, gai_strerror(rc));
        return -1;
    }
    int count = 0;
    for (struct addrinfo *a = ai; a && (size_t)count < max; a = a->ai_next) {
        char text[INET6_ADDRSTRLEN];
        const void *addr =
            a->ai_family == AF_INET
                ? (const void *)&((struct sockaddr_in *)(void *)a->ai_addr)->sin_addr
                : (const void *)&((struct sockaddr_in6 *)(void *)a->ai_addr)->sin6_addr;
        if (a->ai_family != hints.ai_family || !inet_ntop(a->ai_family, addr, text, sizeof(text)))
            continue;
        bool seen = false;
        for (int k = 0; k < count && !seen; k++)
            seen = !strcmp(answers[k], text);
        if (!seen && (answers[count] = strdup(text)))
            count++;
    }
    freeaddrinfo(ai);
    return count;
}

static int dns_query(const struct watchdog_target *t, int timeout_s, char **answers, size_t max,
                     struct watchdog_probe *res)
{
    char qname[NS_MAXDNAME];
    if (t->dns_type != ns_t_ptr || reverse_name(t->host, qname, sizeof(qname)) < 0)
        snprintf(qname, sizeof(qname), "%s", t->host);
    struct __res_state st;
    memset(&st, 0, sizeof(st));
    if (res_ninit(&st) < 0) {
        down(res, "cannot initialise the resolver");
        return -1;
    }
    st.retrans = timeout_s > 1 ? timeout_s / 2 : 1;
    st.retry = 1;
    unsigned char *msg = malloc(NS_MAXMSG);
    if (!msg) {
        res_nclose(&st);
        down(res, "out of memory");
        return -1;
    }
    int len = res_nquery(&st, qname, ns_c_in, t->dns_type, msg, NS_MAXMSG);
    int herr = st.res_h_errno;
    res_nclose(&st);
    int count;
    if (len < 0) {
        down(res, "%s: %s", qname,
             herr == HOST_NOT_FOUND ? "no such name"
             : herr == NO_DATA      ? "no record of that type"
             : herr == TRY_AGAIN    ? "no answer from the name server"
                                    : "the query failed");
        count = -1;
    } else {
        count = dns_parse(msg, len > NS_MAXMSG ? NS_MAXMSG : len, t->dns_type, answers, max);
        if (count < 0)
            down(res, "%s: malformed reply", qname);
    }
    free(msg);
    return count;
}

static void probe_dns(const struct watchdog_target *t, int timeout_s, struct watchdog_probe *res)
{
    char *answers[WATCHDOG_ANSWERS_MAX] = {0};
    int n = t->dns_type == ns_t_a || t->dns_type == ns_t_aaaa
                ? dns_addresses(t, answers, WATCHDOG_ANSWERS_MAX, res)
                : dns_query(t, timeout_s, answers, WATCHDOG_ANSWERS_MAX, res);
    if (n == 0)
        down(res, "%s: no answer", t->host);
    if (n > 0) {
        watchdog_answers_hash(answers, (size_t)n, res->hash);
        size_t used = 0;
        for (int i = 0; i < n; i++) {
            int w = snprintf(res->answers + used, sizeof(res->answers) - used, "%s%s",
                             i ? "\n" : "", answers[i]);
            if (w < 0 || (size_t)w >= sizeof(res->answers) - used)
                break; /* shown truncated; the hash covers all of them */
            used += (size_t)w;
        }
        res->up = true;
        res->has_content = true;
        res->size = n;
    }
    for (int i = 0; i < n; i++)
        free(answers[i]);
}

int watchdog_probe(const struct watchdog_target *t, const char *send, size_t send_len,
                   const char *expect, int timeout_s, struct watchdog_probe *res_r)
{
    memset(res_r, 0, sizeof(*res_r));
    if (timeout_s < 1)
        timeout_s = 1;
    regex_t rx;
    bool have_rx = expect && *expect;
    if (have_rx && regcomp(&rx, expect, REG_EXTENDED | REG_NOSUB) != 0) {
        down(res_r, "the expect regex does not compile");
        return -1;
    }
    switch (t->kind) {
    case WATCHDOG_TCP:
        probe_tcp(t, send, send ? send_len : 0, have_rx ? &rx : NULL, timeout_s, res_r);
        break;
    case WATCHDOG_HTTP:
        probe_http(t, have_rx ? &rx : NULL, timeout_s, res_r);
        break;
    case WATCHDOG_DNS:
        probe_dns(t, timeout_s, res_r);
        break;
    }
    if (have_rx)
        regfree(&rx);
    return 0;
}

/* ---- the master's loop ---- */

static PGresult *q(PGconn *c, const char *sql, int n, const char *const *p)
{
    return PQexecParams(c, sql, n, NULL, p, NULL, NULL, 0);
}

static bool exec_ok(PGconn *c, const char *sql, int n, const char *const *p)
{
    PGresult *r = q(c, sql, n, p);
    bool ok = db_ok(r);
    PQclear(r);
    return ok;
}

struct due {
    const char *id, *name, *target;
    long long down_after_s;
    bool notify_back;
};

typedef void (*watchdog_log_fn)(bool, const char *, void *);

/* Commits one check's outcome under the epoch fence. 1 recorded, 0 not (no
 * longer master, watchdog removed), -1 database error. */
static int record(PGconn *c, const struct due *d, const struct watchdog_probe *pr,
                  const char *node_id, long long epoch, watchdog_log_fn log, void *log_arg)
{
    if (db_begin(c) < 0)
        return -1;
    int cur = cluster_epoch_is_current(c, epoch);
    if (cur != 1) {
        db_rollback(c);
        return cur < 0 ? -1 : 0;
    }
    const char *p1[] = {d->id};
    PGresult *r = q(c,
                    "SELECT state, coalesce(extract(epoch FROM since)::bigint, 0), down_alerted,"
                    " last_hash, extract(epoch FROM now())::bigint FROM watchdogs"
                    " WHERE id = $1 FOR UPDATE",
                    1, p1);
    if (!db_ok(r) || PQntuples(r) != 1) {
        int rc = db_ok(r) ? 0 : -1;
        PQclear(r);
        db_rollback(c);
        return rc;
    }
    struct watchdog_state st = {0};
    int s = watchdog_status_parse(PQgetvalue(r, 0, 0));
    st.status = s < 0 ? WATCHDOG_UNKNOWN : (enum watchdog_status)s;
    st.since = (time_t)atoll(PQgetvalue(r, 0, 1));
    st.down_alerted = PQgetvalue(r, 0, 2)[0] == 't';
    snprintf(st.hash, sizeof(st.hash), "%s", PQgetvalue(r, 0, 3));
    time_t now = (time_t)atoll(PQgetvalue(r, 0, 4));
    PQclear(r);
    struct watchdog_state prev = st;
    int alerts = watchdog_step(&st, pr->up, pr->has_content ? pr->hash : NULL, now, d->down_after_s,
                               d->notify_back);
    bool content_new = pr->has_content && strcmp(prev.hash, pr->hash) != 0;

    char since[24], epoch_s[24], size[24];
    snprintf(since, sizeof(since), "%lld", (long long)st.since);
    snprintf(epoch_s, sizeof(epoch_s), "%lld", epoch);
    snprintf(size, sizeof(size), "%lld", pr->size);
    const char *p2[] = {d->id,
                        watchdog_status_name(st.status),
                        st.since ? since : NULL,
                        st.down_alerted ? "t" : "f",
                        pr->error,
                        st.hash,
                        pr->has_content ? size : NULL,
                        content_new ? "t" : "f",
                        pr->has_content ? pr->answers : NULL,
                        node_id,
                        epoch_s};
    if (!exec_ok(c,
                 "UPDATE watchdogs SET state = $2, since = to_timestamp($3::bigint),"
                 " down_alerted = $4, last_check = now(),"
                 " next_check = now() + interval_s * interval '1 second', last_error = $5,"
                 " last_hash = $6, content_size = coalesce($7::bigint, content_size),"
                 " content_at = CASE WHEN $8::boolean THEN now() ELSE content_at END,"
                 " last_answers = coalesce($9, last_answers), checked_by = $10, epoch = $11"
                 " WHERE id = $1",
                 11, p2)) {
        db_rollback(c);
        return -1;
    }
    char msgs[3][600];
    const char *kinds[3];
    int nmsg = 0;
    if (alerts & WATCHDOG_ALERT_DOWN) {
        kinds[nmsg] = "down";
        snprintf(msgs[nmsg++], sizeof(msgs[0]), "watchdog %s: %s is down (%lld s): %s", d->name,
                 d->target, (long long)(now - st.since), pr->error);
    }
    if (alerts & WATCHDOG_ALERT_BACK_ONLINE) {
        kinds[nmsg] = "back_online";
        snprintf(msgs[nmsg++], sizeof(msgs[0]), "watchdog %s: %s is back online after %lld s down",
                 d->name, d->target, (long long)(now - prev.since));
    }
    if (alerts & WATCHDOG_ALERT_CHANGED) {
        kinds[nmsg] = "changed";
        if (pr->answers[0])
            snprintf(msgs[nmsg++], sizeof(msgs[0]), "watchdog %s: %s changed; answers now: %.300s",
                     d->name, d->target, pr->answers);
        else
            snprintf(msgs[nmsg++], sizeof(msgs[0]),
                     "watchdog %s: %s changed; now %lld bytes, sha256 %s", d->name, d->target,
                     pr->size, pr->hash);
    }
    for (int i = 0; i < nmsg; i++) {
        const char *p3[] = {d->id, kinds[i], msgs[i], node_id, epoch_s};
        if (!exec_ok(c,
                     "INSERT INTO watchdog_alerts (watchdog_id, kind, message, node_id, epoch)"
                     " VALUES ($1, $2, $3, $4, $5)",
                     5, p3)) {
            db_rollback(c);
            return -1;
        }
    }
    if (db_commit(c) < 0)
        return -1;
    for (int i = 0; log && i < nmsg; i++)
        log(true, msgs[i], log_arg);
    return 1;
}

int watchdog_mail_alerts(PGconn *c, struct blob_store *bs, const char *hostname,
                         const char *node_id, char *err, size_t errlen)
{
    char limit[16];
    snprintf(limit, sizeof(limit), "%d", WATCHDOG_BATCH_MAX);
    const char *p[] = {limit};
    PGresult *r = PQexecParams(c,
                               "SELECT a.id, w.alert_address, w.name, a.kind, a.message,"
                               " to_char(a.at AT TIME ZONE 'UTC', 'Dy, DD Mon YYYY HH24:MI:SS +0000')"
                               " FROM watchdog_alerts a JOIN watchdogs w ON w.id = a.watchdog_id"
                               " WHERE NOT a.delivered AND w.alert_address <> ''"
                               " ORDER BY a.id LIMIT $1",
                               1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        db_set_error(err, errlen, c, r, "cannot read the alerts");
        PQclear(r);
        return -1;
    }
    int sent = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *id = PQgetvalue(r, i, 0), *to = PQgetvalue(r, i, 1);
        const char *kind = PQgetvalue(r, i, 3), *text = PQgetvalue(r, i, 4);
        char *msg = NULL;
        int len = asprintf(&msg,
                           "From: Floe watchdog <watchdog@%s>\r\nTo: <%s>\r\n"
                           "Subject: [watchdog %s] %s %s\r\nDate: %s\r\n"
                           "Message-ID: <watchdog-alert.%s@%s>\r\nAuto-Submitted: auto-generated\r\n"
                           "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                           "Content-Transfer-Encoding: 8bit\r\n\r\n%s\r\n",
                           hostname, to, PQgetvalue(r, i, 2), PQgetvalue(r, i, 2),
                           !strcmp(kind, "down")          ? "is down"
                           : !strcmp(kind, "back_online") ? "is back online"
                                                          : "changed",
                           PQgetvalue(r, i, 5), id, hostname, text);
        if (len < 0)
            break;
        char blob_id[BLOB_ID_LEN + 1];
        /* the pg blob store commits on c: the blob first, then the queue row */
        int rc = blob_put(bs, c, msg, (size_t)len, blob_id, err, errlen);
        free(msg);
        if (rc != 0)
            break;
        if (db_begin(c) < 0) {
            db_set_error(err, errlen, c, NULL, "cannot begin");
            break;
        }
        const char *p1[] = {id};
        PGresult *u = PQexecParams(c,
                                   "UPDATE watchdog_alerts SET delivered = true"
                                   " WHERE id = $1 AND NOT delivered RETURNING id",
                                   1, NULL, p1, NULL, NULL, 0);
        bool claim = PQresultStatus(u) == PGRES_TUPLES_OK && PQntuples(u) == 1;
        PQclear(u);
        struct queue_message_new qm = {.blob_id = blob_id,
                                       .size = (unsigned long long)len,
                                       .sender = "",
                                       .body = SMTP_BODY_8BITMIME,
                                       .origin_node = node_id};
        struct queue_rcpt_new qr = {.address = to};
        if (!claim || queue_enqueue(c, &qm, &qr, 1, NULL, err, errlen) != 0 || db_commit(c) != 0) {
            db_rollback(c);
            continue; /* another run took it, or a bad address: tried again next time */
        }
        sent++;
    }
    PQclear(r);
    return sent;
}

int watchdog_run_due(PGconn *c, const char *node_id, long long epoch, watchdog_log_fn log,
                     void *log_arg)
{
    if (epoch <= 0)
        return 0;
    char limit[16];
    snprintf(limit, sizeof(limit), "%d", WATCHDOG_BATCH_MAX);
    const char *p[] = {limit};
    PGresult *r = q(c,
                    "SELECT id, name, target, send, expect, interval_s, down_after_min,"
                    " notify_back FROM watchdogs WHERE enabled AND next_check <= now()"
                    " ORDER BY next_check LIMIT $1",
                    1, p);
    if (!db_ok(r)) {
        PQclear(r);
        return -1;
    }
    int done = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        struct due d = {PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
                        atoll(PQgetvalue(r, i, 6)) * 60, PQgetvalue(r, i, 7)[0] == 't'};
        int interval = atoi(PQgetvalue(r, i, 5));
        int timeout = interval < WATCHDOG_TIMEOUT_MAX ? interval : WATCHDOG_TIMEOUT_MAX;
        struct watchdog_target t;
        struct watchdog_probe pr;
        char send[WATCHDOG_SEND_MAX], err[256];
        size_t send_len = 0;
        /* Rows were validated when added; one that no longer parses is down. */
        if (watchdog_target_parse(d.target, &t, err, sizeof(err)) < 0 ||
            watchdog_unescape(PQgetvalue(r, i, 3), send, sizeof(send), &send_len, err,
                              sizeof(err)) < 0) {
            memset(&pr, 0, sizeof(pr));
            snprintf(pr.error, sizeof(pr.error), "invalid definition: %.200s", err);
        } else {
            watchdog_probe(&t, send, send_len, PQgetvalue(r, i, 4), timeout, &pr);
        }
        /* the master may have changed while the probe ran: record() checks */
        if (cluster_master_epoch() != epoch)
            break;
        int rc = record(c, &d, &pr, node_id, epoch, log, log_arg);
        if (rc < 0) {
            PQclear(r);
            return -1;
        }
        done += rc;
    }
    PQclear(r);
    return done;
}

/* ---- administration ---- */

int watchdog_add(PGconn *c, const struct watchdog_spec *spec, char *err, size_t errlen)
{
    struct watchdog_target t;
    const char *send = spec->send ? spec->send : "", *expect = spec->expect ? spec->expect : "";
    const char *alert = spec->alert_address ? spec->alert_address : "";
    if (watchdog_target_parse(spec->target, &t, err, errlen) < 0)
        return -1;
    if (*send) {
        char buf[WATCHDOG_SEND_MAX];
        size_t n;
        if (t.kind != WATCHDOG_TCP) {
            snprintf(err, errlen, "a send string applies to tcp:// targets only");
            return -1;
        }
        if (watchdog_unescape(send, buf, sizeof(buf), &n, err, errlen) < 0)
            return -1;
    }
    if (*expect) {
        if (t.kind == WATCHDOG_DNS) {
            snprintf(err, errlen, "an expect regex applies to tcp:// and http(s):// targets");
            return -1;
        }
        if (watchdog_regex_check(expect, err, errlen) < 0)
            return -1;
    }
    int interval = spec->interval_s ? spec->interval_s : 60;
    if (interval < 1 || interval > WATCHDOG_INTERVAL_MAX) {
        snprintf(err, errlen, "the interval must be 1-%d seconds", WATCHDOG_INTERVAL_MAX);
        return -1;
    }
    if (spec->down_after_min < 0 || spec->down_after_min > WATCHDOG_DOWN_AFTER_MAX) {
        snprintf(err, errlen, "down-after must be 0-%d minutes", WATCHDOG_DOWN_AFTER_MAX);
        return -1;
    }
    if (strlen(alert) > 320 || strpbrk(alert, "\r\n")) {
        snprintf(err, errlen, "the alert address must be one line of at most 320 bytes");
        return -1;
    }
    char iv[16], da[16];
    snprintf(iv, sizeof(iv), "%d", interval);
    snprintf(da, sizeof(da), "%d", spec->down_after_min);
    const char *p[] = {spec->name, spec->target, send,  expect,
                       iv,         da,           alert, spec->notify_back ? "t" : "f"};
    PGresult *r = q(c,
                    "INSERT INTO watchdogs (name, target, send, expect, interval_s,"
                    " down_after_min, alert_address, notify_back)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    8, p);
    if (db_ok(r)) {
        PQclear(r);
        return 0;
    }
    int rc = db_sqlstate_is(r, "23505") ? -3 : -1;
    if (rc == -3)
        snprintf(err, errlen, "a watchdog named '%s' exists already", spec->name);
    else if (db_sqlstate_is(r, "23514"))
        snprintf(err, errlen, "invalid watchdog: the name is 1-64 of [A-Za-z0-9._-]");
    else
        db_set_error(err, errlen, c, r, "watchdog");
    PQclear(r);
    return rc;
}

int watchdog_remove(PGconn *c, const char *name, char *err, size_t errlen)
{
    const char *p[] = {name};
    PGresult *r = q(c, "DELETE FROM watchdogs WHERE name = $1", 1, p);
    if (!db_ok(r)) {
        db_set_error(err, errlen, c, r, "watchdog");
        PQclear(r);
        return -1;
    }
    bool none = !strcmp(PQcmdTuples(r), "0");
    PQclear(r);
    if (none) {
        snprintf(err, errlen, "no watchdog named '%s'", name);
        return -2;
    }
    return 0;
}
