/* layer: node */
/* Unit tests for node/smtp/dns against a real DNS server: a dnsmasq the test starts on a
 * free port on 127.0.0.1 (authoritative for .test, no upstream, no /etc/hosts) with MX
 * records of several preferences, equal preferences, a null MX, an MX naming the root
 * with a non-zero preference, more MX records than are kept (the answer only fits over
 * TCP), a domain with only addresses (implicit MX), a name with neither, and NXDOMAIN for
 * everything else under .test. SERVFAIL and timeouts come from a fake UDP server thread
 * (dnsmasq cannot be made to answer SERVFAIL for a local name). Address literals need no
 * server. dnsmasq must be installed (dnsmasq-base): without it the tests fail. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "node/smtp/dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pid_t dnsmasq_pid = -1;
static char servers[64]; /* "127.0.0.1:PORT" of the dnsmasq */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A port free for UDP and TCP on 127.0.0.1 at the time of the call. */
static int free_port(void)
{
    for (int attempt = 0; attempt < 20; attempt++) {
        int u = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof sin;
        if (u < 0 || bind(u, (struct sockaddr *)&sin, sizeof sin) < 0 ||
            getsockname(u, (struct sockaddr *)&sin, &sl) < 0) {
            close(u);
            continue;
        }
        int t = socket(AF_INET, SOCK_STREAM, 0);
        int ok = t >= 0 && bind(t, (struct sockaddr *)&sin, sizeof sin) == 0;
        close(t);
        close(u);
        if (ok)
            return ntohs(sin.sin_port);
    }
    return -1;
}

static const char *dnsmasq_path(void)
{
    static const char *const paths[] = {"/usr/sbin/dnsmasq", "/usr/bin/dnsmasq",
                                        "/usr/local/sbin/dnsmasq"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (access(paths[i], X_OK) == 0)
            return paths[i];
    return NULL;
}

static pid_t start_dnsmasq(const char *path, int port)
{
    char portarg[32];
    snprintf(portarg, sizeof portarg, "--port=%d", port);
    char *argv[80];
    int n = 0;
    argv[n++] = (char *)"dnsmasq";
    argv[n++] = (char *)"--keep-in-foreground";
    argv[n++] = (char *)"--conf-file=/dev/null";
    argv[n++] = (char *)"--no-resolv";
    argv[n++] = (char *)"--no-hosts";
    argv[n++] = (char *)"--no-poll";
    argv[n++] = (char *)"--bind-interfaces";
    argv[n++] = (char *)"--listen-address=127.0.0.1";
    argv[n++] = (char *)"--pid-file=";
    argv[n++] = (char *)"--log-facility=-";
    argv[n++] = portarg;
    /* everything else under .test is NXDOMAIN */
    argv[n++] = (char *)"--local=/test/";
    argv[n++] = (char *)"--mx-host=mx.test,mx2.mx.test,20";
    argv[n++] = (char *)"--mx-host=mx.test,mx1.mx.test,10";
    argv[n++] = (char *)"--mx-host=mx.test,mx0a.mx.test,5";
    argv[n++] = (char *)"--mx-host=mx.test,mx0b.mx.test,5";
    argv[n++] = (char *)"--host-record=mx1.mx.test,127.0.0.10";
    argv[n++] = (char *)"--host-record=a.test,127.0.0.20,::20";
    argv[n++] = (char *)"--host-record=v6.test,2001:db8::1";
    argv[n++] = (char *)"--mx-host=nullmx.test,.,0";
    argv[n++] = (char *)"--mx-host=rootmx.test,.,10";
    argv[n++] = (char *)"--txt-record=empty.test,\"nothing else\"";
    static char big[40][64];
    for (int i = 0; i < 40; i++) {
        /* preferences 40..1 in reverse so the kept ones are not simply the first */
        snprintf(big[i], sizeof big[i], "--mx-host=big.test,mx%02d.big.test,%d", i, 40 - i);
        argv[n++] = big[i];
    }
    argv[n] = NULL;

    pid_t pid = fork();
    if (pid == 0) {
        /* dies with the test, even when the test crashes before its teardown */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execv(path, argv);
        _exit(127);
    }
    return pid;
}

static int group_setup(void **state)
{
    const char *path = dnsmasq_path();
    if (path == NULL) {
        fprintf(stderr, "dnsmasq not found: apt-get install dnsmasq-base\n");
        return -1;
    }
    for (int attempt = 0; attempt < 5; attempt++) {
        int port = free_port();
        if (port < 0)
            return -1;
        dnsmasq_pid = start_dnsmasq(path, port);
        if (dnsmasq_pid < 0)
            return -1;
        snprintf(servers, sizeof servers, "127.0.0.1:%d", port);
        /* ready when it answers; gone when the port was taken after all */
        struct dns_resolver *r = dns_resolver_new(servers, 300, NULL, 0);
        if (r == NULL)
            return -1;
        long long until = now_ms() + 5000;
        bool ready = false;
        while (!ready && now_ms() < until) {
            int status;
            if (waitpid(dnsmasq_pid, &status, WNOHANG) == dnsmasq_pid) {
                dnsmasq_pid = -1;
                break;
            }
            struct dns_mx_result res;
            ready = dns_mx(r, "mx.test", &res, NULL, 0) == DNS_OK;
        }
        dns_resolver_free(&r);
        if (ready)
            return 0;
        if (dnsmasq_pid > 0) {
            kill(dnsmasq_pid, SIGTERM);
            waitpid(dnsmasq_pid, NULL, 0);
            dnsmasq_pid = -1;
        }
    }
    fprintf(stderr, "dnsmasq did not start\n");
    return -1;
}

static int group_teardown(void **state)
{
    if (dnsmasq_pid > 0) {
        kill(dnsmasq_pid, SIGTERM);
        waitpid(dnsmasq_pid, NULL, 0);
        dnsmasq_pid = -1;
    }
    return 0;
}

static struct dns_resolver *resolver(unsigned timeout_ms)
{
    char err[256] = "";
    struct dns_resolver *r = dns_resolver_new(servers, timeout_ms, err, sizeof err);
    if (r == NULL)
        fail_msg("dns_resolver_new: %s", err);
    return r;
}

static const char *addr_str(const struct sockaddr_storage *ss, char *buf, size_t len)
{
    if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, buf, (socklen_t)len);
    else if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, buf, (socklen_t)len);
    else
        snprintf(buf, len, "family %d", ss->ss_family);
    return buf;
}

/* --- MX --- */

static void test_mx_ordered(void **state)
{
    struct dns_resolver *r = resolver(3000);
    struct dns_mx_result res;
    char err[256] = "";
    assert_int_equal(dns_mx(r, "mx.test", &res, err, sizeof err), DNS_OK);
    assert_int_equal(res.n, 4);
    assert_false(res.null_mx);
    assert_false(res.implicit);
    assert_int_equal(res.mx[0].pref, 5);
    assert_int_equal(res.mx[1].pref, 5);
    assert_true((strcmp(res.mx[0].host, "mx0a.mx.test") == 0 &&
                 strcmp(res.mx[1].host, "mx0b.mx.test") == 0) ||
                (strcmp(res.mx[0].host, "mx0b.mx.test") == 0 &&
                 strcmp(res.mx[1].host, "mx0a.mx.test") == 0));
    assert_string_equal(res.mx[2].host, "mx1.mx.test");
    assert_int_equal(res.mx[2].pref, 10);
    assert_string_equal(res.mx[3].host, "mx2.mx.test");
    assert_int_equal(res.mx[3].pref, 20);

    /* a trailing dot names the same domain */
    assert_int_equal(dns_mx(r, "mx.test.", &res, err, sizeof err), DNS_OK);
    assert_int_equal(res.n, 4);
    dns_resolver_free(&r);
    assert_null(r);
}

static void test_mx_equal_preferences_shuffled(void **state)
{
    struct dns_resolver *r = resolver(3000);
    int a_first = 0, b_first = 0;
    for (int i = 0; i < 64; i++) {
        struct dns_mx_result res;
        assert_int_equal(dns_mx(r, "mx.test", &res, NULL, 0), DNS_OK);
        assert_int_equal(res.n, 4);
        if (strcmp(res.mx[0].host, "mx0a.mx.test") == 0)
            a_first++;
        else if (strcmp(res.mx[0].host, "mx0b.mx.test") == 0)
            b_first++;
        /* the shuffle never crosses preferences */
        assert_string_equal(res.mx[3].host, "mx2.mx.test");
    }
    assert_int_equal(a_first + b_first, 64);
    assert_true(a_first > 0);
    assert_true(b_first > 0);
    dns_resolver_free(&r);
}

static void test_mx_null(void **state)
{
    struct dns_resolver *r = resolver(3000);
    struct dns_mx_result res;
    char err[256] = "";
    assert_int_equal(dns_mx(r, "nullmx.test", &res, err, sizeof err), DNS_OK);
    assert_true(res.null_mx);
    assert_false(res.implicit);
    assert_int_equal(res.n, 0);

    /* the root with another preference is no null MX, and names no host either */
    assert_int_equal(dns_mx(r, "rootmx.test", &res, err, sizeof err), DNS_PERM);
    assert_false(res.null_mx);
    assert_int_equal(res.n, 0);
    assert_non_null(strstr(err, "root"));
    dns_resolver_free(&r);
}

static void test_mx_implicit(void **state)
{
    struct dns_resolver *r = resolver(3000);
    struct dns_mx_result res;
    char err[256] = "";
    assert_int_equal(dns_mx(r, "a.test", &res, err, sizeof err), DNS_OK);
    assert_true(res.implicit);
    assert_false(res.null_mx);
    assert_int_equal(res.n, 1);
    assert_string_equal(res.mx[0].host, "a.test");
    assert_int_equal(res.mx[0].pref, 0);

    /* only an AAAA record is enough */
    assert_int_equal(dns_mx(r, "v6.test.", &res, err, sizeof err), DNS_OK);
    assert_true(res.implicit);
    assert_string_equal(res.mx[0].host, "v6.test");
    dns_resolver_free(&r);
}

static void test_mx_nxdomain_and_nodata(void **state)
{
    struct dns_resolver *r = resolver(3000);
    struct dns_mx_result res;
    char err[256] = "";
    assert_int_equal(dns_mx(r, "nope.test", &res, err, sizeof err), DNS_PERM);
    assert_int_equal(res.n, 0);
    assert_non_null(strstr(err, "does not exist"));

    /* exists (a TXT record) but has no MX and no address */
    err[0] = '\0';
    assert_int_equal(dns_mx(r, "empty.test", &res, err, sizeof err), DNS_PERM);
    assert_int_equal(res.n, 0);
    assert_false(res.implicit);
    assert_non_null(strstr(err, "no MX and no address"));

    /* names that are not names */
    assert_int_equal(dns_mx(r, "", &res, err, sizeof err), DNS_PERM);
    assert_int_equal(dns_mx(r, ".", &res, err, sizeof err), DNS_PERM);
    assert_int_equal(dns_mx(r, "a b.test", &res, err, sizeof err), DNS_PERM);
    assert_int_equal(dns_mx(r, NULL, &res, err, sizeof err), DNS_PERM);
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(dns_mx(r, longname, &res, err, sizeof err), DNS_PERM);
    dns_resolver_free(&r);
}

static void test_mx_many_records_kept_lowest(void **state)
{
    /* 40 records do not fit a 512-byte UDP answer: c-ares retries over TCP */
    struct dns_resolver *r = resolver(3000);
    struct dns_mx_result res;
    char err[256] = "";
    assert_int_equal(dns_mx(r, "big.test", &res, err, sizeof err), DNS_OK);
    assert_int_equal(res.n, DNS_MAX_MX);
    for (size_t i = 0; i < res.n; i++) {
        assert_int_equal(res.mx[i].pref, i + 1);
        char want[64];
        snprintf(want, sizeof want, "mx%02zu.big.test", 40 - (i + 1));
        assert_string_equal(res.mx[i].host, want);
    }
    dns_resolver_free(&r);
}

/* --- addresses --- */

static void test_addrs(void **state)
{
    struct dns_resolver *r = resolver(3000);
    struct sockaddr_storage addrs[DNS_MAX_ADDRS];
    size_t n = 99;
    char err[256] = "", buf[INET6_ADDRSTRLEN];
    assert_int_equal(dns_addrs(r, "a.test", addrs, &n, err, sizeof err), DNS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(addrs[0].ss_family, AF_INET6);
    assert_string_equal(addr_str(&addrs[0], buf, sizeof buf), "::20");
    assert_int_equal(((struct sockaddr_in6 *)&addrs[0])->sin6_port, 0);
    assert_int_equal(addrs[1].ss_family, AF_INET);
    assert_string_equal(addr_str(&addrs[1], buf, sizeof buf), "127.0.0.20");
    assert_int_equal(((struct sockaddr_in *)&addrs[1])->sin_port, 0);

    assert_int_equal(dns_addrs(r, "mx1.mx.test.", addrs, &n, err, sizeof err), DNS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(addr_str(&addrs[0], buf, sizeof buf), "127.0.0.10");

    assert_int_equal(dns_addrs(r, "v6.test", addrs, &n, err, sizeof err), DNS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(addr_str(&addrs[0], buf, sizeof buf), "2001:db8::1");
    dns_resolver_free(&r);
}

static void test_addrs_failures(void **state)
{
    struct dns_resolver *r = resolver(3000);
    struct sockaddr_storage addrs[DNS_MAX_ADDRS];
    size_t n = 99;
    char err[256] = "";
    assert_int_equal(dns_addrs(r, "nope.test", addrs, &n, err, sizeof err), DNS_PERM);
    assert_int_equal(n, 0);
    assert_non_null(strstr(err, "does not exist"));

    n = 99;
    assert_int_equal(dns_addrs(r, "empty.test", addrs, &n, err, sizeof err), DNS_PERM);
    assert_int_equal(n, 0);
    assert_non_null(strstr(err, "no address"));

    /* an MX-only name has no address of its own */
    assert_int_equal(dns_addrs(r, "mx.test", addrs, &n, err, sizeof err), DNS_PERM);
    assert_int_equal(dns_addrs(r, "", addrs, &n, err, sizeof err), DNS_PERM);
    assert_int_equal(dns_addrs(r, "bad\nname", addrs, &n, err, sizeof err), DNS_PERM);
    dns_resolver_free(&r);
}

/* --- failures from a fake server: SERVFAIL, silence --- */

struct fake_dns {
    int fd;
    int port;
    bool servfail; /* false: never answer */
    atomic_bool stop;
    atomic_int queries;
    pthread_t thread;
};

static void *fake_dns_main(void *arg)
{
    struct fake_dns *f = arg;
    while (!f->stop) {
        struct pollfd p = {.fd = f->fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        unsigned char buf[512];
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(f->fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        if (n < 12)
            continue;
        f->queries++;
        if (!f->servfail)
            continue;
        /* the query back as a response: QR, RD kept, RA, RCODE 2 (SERVFAIL), and no
         * records beyond the question */
        buf[2] = (unsigned char)(0x80 | (buf[2] & 0x01));
        buf[3] = 0x80 | 2;
        memset(buf + 6, 0, 6);
        sendto(f->fd, buf, (size_t)n, 0, (struct sockaddr *)&from, fl);
    }
    return NULL;
}

static void fake_dns_start(struct fake_dns *f, bool servfail)
{
    memset(f, 0, sizeof *f);
    f->servfail = servfail;
    f->fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(f->fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sin;
    assert_int_equal(bind(f->fd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(getsockname(f->fd, (struct sockaddr *)&sin, &sl), 0);
    f->port = ntohs(sin.sin_port);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_dns_main, f), 0);
}

static void fake_dns_stop(struct fake_dns *f)
{
    f->stop = true;
    pthread_join(f->thread, NULL);
    close(f->fd);
}

static void test_servfail_is_temporary(void **state)
{
    struct fake_dns f;
    fake_dns_start(&f, true);
    char srv[64], err[256] = "";
    snprintf(srv, sizeof srv, "127.0.0.1:%d", f.port);
    struct dns_resolver *r = dns_resolver_new(srv, 5000, err, sizeof err);
    assert_non_null(r);
    struct dns_mx_result res;
    long long t0 = now_ms();
    assert_int_equal(dns_mx(r, "example.com", &res, err, sizeof err), DNS_TEMP);
    /* an answer, not a timeout: well before the 5 s deadline */
    assert_true(now_ms() - t0 < 2500);
    assert_int_equal(res.n, 0);
    assert_non_null(strstr(err, "MX lookup"));
    assert_null(strstr(err, "timed out"));

    struct sockaddr_storage addrs[DNS_MAX_ADDRS];
    size_t n = 5;
    assert_int_equal(dns_addrs(r, "host.example.com", addrs, &n, err, sizeof err), DNS_TEMP);
    assert_int_equal(n, 0);
    dns_resolver_free(&r);
    fake_dns_stop(&f);
    assert_true(f.queries >= 3);
}

static void test_timeout_is_temporary(void **state)
{
    struct fake_dns f;
    fake_dns_start(&f, false);
    char srv[64], err[256] = "";
    snprintf(srv, sizeof srv, "127.0.0.1:%d", f.port);
    struct dns_resolver *r = dns_resolver_new(srv, 400, err, sizeof err);
    assert_non_null(r);
    struct dns_mx_result res;
    long long t0 = now_ms();
    assert_int_equal(dns_mx(r, "example.com", &res, err, sizeof err), DNS_TEMP);
    long long took = now_ms() - t0;
    assert_true(took >= 300);
    assert_true(took < 1500);
    assert_non_null(strstr(err, "timed out"));

    /* the resolver is usable after a cancelled lookup */
    struct sockaddr_storage addrs[DNS_MAX_ADDRS];
    size_t n = 5;
    t0 = now_ms();
    assert_int_equal(dns_addrs(r, "example.com", addrs, &n, err, sizeof err), DNS_TEMP);
    assert_true(now_ms() - t0 < 1500);
    assert_int_equal(n, 0);
    dns_resolver_free(&r);
    fake_dns_stop(&f);
    assert_true(f.queries >= 3);
}

static void test_second_server_answers(void **state)
{
    /* the first server never answers: after its try the next one in the list does */
    struct fake_dns f;
    fake_dns_start(&f, false);
    char srv[128], err[256] = "";
    snprintf(srv, sizeof srv, "127.0.0.1:%d,%s", f.port, servers);
    struct dns_resolver *r = dns_resolver_new(srv, 3000, err, sizeof err);
    assert_non_null(r);
    struct dns_mx_result res;
    long long t0 = now_ms();
    if (dns_mx(r, "mx.test", &res, err, sizeof err) != DNS_OK)
        fail_msg("dns_mx: %s", err);
    assert_true(now_ms() - t0 < 2500);
    assert_int_equal(res.n, 4);
    dns_resolver_free(&r);
    fake_dns_stop(&f);
    assert_true(f.queries >= 1);
}

/* --- resolver construction --- */

static void test_resolver_new(void **state)
{
    char err[256] = "";
    struct dns_resolver *r = dns_resolver_new("", 0, err, sizeof err);
    assert_non_null(r); /* the system's resolvers */
    dns_resolver_free(&r);
    assert_null(r);
    dns_resolver_free(&r); /* NULL is fine */
    dns_resolver_free(NULL);

    r = dns_resolver_new("127.0.0.1:53,[::1]:5353", 1000, err, sizeof err);
    assert_non_null(r);
    dns_resolver_free(&r);

    err[0] = '\0';
    r = dns_resolver_new("not an address", 1000, err, sizeof err);
    assert_null(r);
    assert_non_null(strstr(err, "bad DNS server list"));

    char huge[DNS_MAX_SERVERS + 10];
    memset(huge, '1', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    assert_null(dns_resolver_new(huge, 1000, err, sizeof err));
    assert_null(dns_resolver_new("nonsense", 1000, NULL, 0));
    assert_string_equal(dns_status_str(DNS_PERM), "permanent failure");
    assert_string_equal(dns_status_str(DNS_TEMP), "temporary failure");
}

/* --- literals --- */

static void test_literal(void **state)
{
    struct sockaddr_storage ss;
    char buf[INET6_ADDRSTRLEN];
    assert_int_equal(dns_literal("[192.0.2.1]", &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_string_equal(addr_str(&ss, buf, sizeof buf), "192.0.2.1");
    assert_int_equal(((struct sockaddr_in *)&ss)->sin_port, 0);

    assert_int_equal(dns_literal("[IPv6:2001:db8::1]", &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_string_equal(addr_str(&ss, buf, sizeof buf), "2001:db8::1");
    assert_int_equal(dns_literal("[ipv6:::1]", &ss), 0);
    assert_string_equal(addr_str(&ss, buf, sizeof buf), "::1");
    assert_int_equal(dns_literal("[IPv6:::ffff:192.0.2.1]", &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET6);

    const char *bad[] = {"192.0.2.1",
                         "[192.0.2.1",
                         "192.0.2.1]",
                         "[]",
                         "[IPv6:]",
                         "[2001:db8::1]",
                         "[IPv6:192.0.2.1]",
                         "[300.1.1.1]",
                         "[1.2.3]",
                         "[01.2.3.4]",
                         "[x-tag:whatever]",
                         "[ 1.2.3.4]",
                         "[IPv6:1::2::3]",
                         "",
                         "[IPv6:1:2:3:4:5:6:7:8:9]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (dns_literal(bad[i], &ss) != -1)
            fail_msg("accepted '%s'", bad[i]);
    assert_int_equal(dns_literal(NULL, &ss), -1);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mx_ordered),
        cmocka_unit_test(test_mx_equal_preferences_shuffled),
        cmocka_unit_test(test_mx_null),
        cmocka_unit_test(test_mx_implicit),
        cmocka_unit_test(test_mx_nxdomain_and_nodata),
        cmocka_unit_test(test_mx_many_records_kept_lowest),
        cmocka_unit_test(test_addrs),
        cmocka_unit_test(test_addrs_failures),
        cmocka_unit_test(test_servfail_is_temporary),
        cmocka_unit_test(test_timeout_is_temporary),
        cmocka_unit_test(test_second_server_answers),
        cmocka_unit_test(test_resolver_new),
        cmocka_unit_test(test_literal),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
