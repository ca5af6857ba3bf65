/* layer: cluster */
/* Tests for the pure parts of cluster/watchdog: target parsing, send-string
 * escapes, regex validation, content hashing, the state machine under a fake
 * clock, and the TCP and DNS probes against this host (a listening socket on
 * 127.0.0.1, and localhost from /etc/hosts). The master's loop and the
 * administration functions are exercised by tests/cluster/test_watchdog.py. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cluster/watchdog.h"

/* ---- targets ---- */

static void test_target_tcp(void **state)
{
    struct watchdog_target t;
    char err[256];
    assert_int_equal(watchdog_target_parse("tcp://mail.example.com:25", &t, err, sizeof(err)), 0);
    assert_int_equal(t.kind, WATCHDOG_TCP);
    assert_string_equal(t.host, "mail.example.com");
    assert_int_equal(t.port, 25);
    assert_int_equal(watchdog_target_parse("TCP://[::1]:993", &t, err, sizeof(err)), 0);
    assert_string_equal(t.host, "::1");
    assert_int_equal(t.port, 993);
    assert_int_equal(watchdog_target_parse("tcp://127.0.0.1:65535", &t, err, sizeof(err)), 0);

    static const char *const bad[] = {
        "tcp://host",        "tcp://host:",
        "tcp://:25",         "tcp://host:0",
        "tcp://host:65536",  "tcp://host:25x",
        "tcp://ho st:25",    "tcp://host:25/path",
        "tcp://[::1]25",     "tcp://[zz::1]:25",
        "tcp://h/x:25",      "tcp://host:-1",
        "tcp://host:123456", "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (watchdog_target_parse(bad[i], &t, err, sizeof(err)) != -1)
            fail_msg("accepted bad target '%s'", bad[i]);
        assert_true(err[0] != '\0');
    }
    char longhost[300];
    memset(longhost, 'a', sizeof(longhost));
    memcpy(longhost, "tcp://", 6);
    snprintf(longhost + 262, sizeof(longhost) - 262, ":25");
    assert_int_equal(watchdog_target_parse(longhost, &t, err, sizeof(err)), -1);
}

static void test_target_http_dns(void **state)
{
    struct watchdog_target t;
    char err[256];
    assert_int_equal(watchdog_target_parse("https://example.com/a?b=c", &t, err, sizeof(err)), 0);
    assert_int_equal(t.kind, WATCHDOG_HTTP);
    assert_string_equal(t.url, "https://example.com/a?b=c");
    assert_int_equal(watchdog_target_parse("http://127.0.0.1:8080/", &t, err, sizeof(err)), 0);
    assert_int_equal(watchdog_target_parse("http://", &t, err, sizeof(err)), -1);
    assert_int_equal(watchdog_target_parse("http:///path", &t, err, sizeof(err)), -1);
    assert_int_equal(watchdog_target_parse("http://a b/", &t, err, sizeof(err)), -1);
    assert_int_equal(watchdog_target_parse("ftp://example.com/", &t, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "target must be"));
    assert_int_equal(watchdog_target_parse("example.com", &t, err, sizeof(err)), -1);

    static const struct {
        const char *text;
        int type;
    } good[] = {
        {"dns://yahoo.com:a", ns_t_a},         {"dns://yahoo.com:AAAA", ns_t_aaaa},
        {"dns://yahoo:mx", ns_t_mx},           {"dns://example.org:txt", ns_t_txt},
        {"dns://1.2.3.4:ptr", ns_t_ptr},       {"dns://2001:db8::1:ptr", ns_t_ptr},
        {"dns://www.x.org:cname", ns_t_cname}, {"dns://_sip._tcp.x.org:srv", ns_t_srv},
        {"dns://x.org:naptr", ns_t_naptr},     {"dns://localhost:a", ns_t_a},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (watchdog_target_parse(good[i].text, &t, err, sizeof(err)) != 0)
            fail_msg("refused '%s': %s", good[i].text, err);
        assert_int_equal(t.kind, WATCHDOG_DNS);
        assert_int_equal(t.dns_type, good[i].type);
    }
    assert_int_equal(watchdog_target_parse("dns://localhost:a", &t, err, sizeof(err)), 0);
    assert_string_equal(t.host, "localhost");
    assert_int_equal(watchdog_target_parse("dns://x.org:soa", &t, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "naptr"));
    assert_int_equal(watchdog_target_parse("dns://x.org", &t, err, sizeof(err)), -1);
    assert_int_equal(watchdog_target_parse("dns://:a", &t, err, sizeof(err)), -1);
    assert_int_equal(watchdog_target_parse("dns://a:b:mx", &t, err, sizeof(err)), -1);
    assert_int_equal(watchdog_target_parse("dns://a b:mx", &t, err, sizeof(err)), -1);
}

/* ---- escapes and regexes ---- */

static void test_unescape(void **state)
{
    char out[64], err[128];
    size_t n = 0;
    assert_int_equal(watchdog_unescape("GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n", out, sizeof(out),
                                       &n, err, sizeof(err)),
                     0);
    assert_int_equal(n, strlen("GET / HTTP/1.0\r\nHost: x\r\n\r\n"));
    assert_memory_equal(out, "GET / HTTP/1.0\r\nHost: x\r\n\r\n", n);
    assert_int_equal(
        watchdog_unescape("a\\tb\\\\c\\x41\\x7a\\0d\\\"", out, sizeof(out), &n, err, sizeof(err)),
        0);
    assert_int_equal(n, 10);
    assert_memory_equal(out, "a\tb\\cAz\0d\"", 10);
    assert_int_equal(watchdog_unescape("", out, sizeof(out), &n, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    assert_int_equal(watchdog_unescape("abc\\", out, sizeof(out), &n, err, sizeof(err)), -1);
    assert_int_equal(watchdog_unescape("\\q", out, sizeof(out), &n, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "\\q"));
    assert_int_equal(watchdog_unescape("\\x4", out, sizeof(out), &n, err, sizeof(err)), -1);
    assert_int_equal(watchdog_unescape("\\xg0", out, sizeof(out), &n, err, sizeof(err)), -1);
    /* bounded: exactly fits, one more does not */
    assert_int_equal(watchdog_unescape("abcd", out, 4, &n, err, sizeof(err)), 0);
    assert_int_equal(watchdog_unescape("abcde", out, 4, &n, err, sizeof(err)), -1);
}

static void test_regex_check(void **state)
{
    char err[256];
    assert_int_equal(watchdog_regex_check("^220 .*ESMTP", err, sizeof(err)), 0);
    assert_int_equal(watchdog_regex_check("(a|b)+c{2,3}", err, sizeof(err)), 0);
    assert_int_equal(watchdog_regex_check("(unclosed", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "invalid regex"));
    assert_int_equal(watchdog_regex_check("a{2,1}", err, sizeof(err)), -1);
    char big[WATCHDOG_EXPECT_MAX + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(watchdog_regex_check(big, err, sizeof(err)), -1);
}

/* ---- hashing ---- */

static void test_hashing(void **state)
{
    char hex[65];
    watchdog_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    watchdog_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    /* answers: order does not matter, content does; the hash is that of the
     * sorted answers joined by newlines */
    char a1[] = "10 mx2.example.com", a2[] = "5 mx1.example.com";
    char *x[] = {a1, a2}, *y[] = {a2, a1};
    char hx[65], hy[65], hj[65];
    watchdog_answers_hash(x, 2, hx);
    watchdog_answers_hash(y, 2, hy);
    assert_string_equal(hx, hy);
    assert_string_equal(x[0], "10 mx2.example.com"); /* sorted in place */
    const char joined[] = "10 mx2.example.com\n5 mx1.example.com";
    watchdog_sha256_hex(joined, strlen(joined), hj);
    assert_string_equal(hx, hj);
    char a3[] = "5 mx3.example.com";
    char *z[] = {a1, a3};
    char hz[65];
    watchdog_answers_hash(z, 2, hz);
    assert_string_not_equal(hx, hz);
    watchdog_answers_hash(NULL, 0, hz);
    assert_string_equal(hz, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

/* ---- the state machine ---- */

static void test_state_down_after(void **state)
{
    struct watchdog_state st = {0};
    time_t t0 = 1700000000;
    const long long after = 5 * 60; /* 5 minutes */
    assert_int_equal(watchdog_step(&st, true, NULL, t0, after, true), 0);
    assert_int_equal(st.status, WATCHDOG_UP);
    assert_int_equal(st.since, t0);
    /* failing, but not long enough */
    assert_int_equal(watchdog_step(&st, false, NULL, t0 + 60, after, true), 0);
    assert_int_equal(st.status, WATCHDOG_DOWN);
    assert_int_equal(st.since, t0 + 60);
    assert_int_equal(watchdog_step(&st, false, NULL, t0 + 60 + 299, after, true), 0);
    assert_false(st.down_alerted);
    /* five minutes of continuous failure: one alert */
    assert_int_equal(watchdog_step(&st, false, NULL, t0 + 60 + 300, after, true),
                     WATCHDOG_ALERT_DOWN);
    assert_true(st.down_alerted);
    /* still down: no repeat */
    for (int i = 1; i <= 10; i++)
        assert_int_equal(watchdog_step(&st, false, NULL, t0 + 360 + i * 60, after, true), 0);
    assert_int_equal(st.since, t0 + 60);
    /* back */
    assert_int_equal(watchdog_step(&st, true, NULL, t0 + 2000, after, true),
                     WATCHDOG_ALERT_BACK_ONLINE);
    assert_int_equal(st.status, WATCHDOG_UP);
    assert_int_equal(st.since, t0 + 2000);
    assert_false(st.down_alerted);
    assert_int_equal(watchdog_step(&st, true, NULL, t0 + 2060, after, true), 0);
}

static void test_state_blip_and_flags(void **state)
{
    struct watchdog_state st = {0};
    time_t t0 = 1700000000;
    /* a failure shorter than down_after, then up: neither alert */
    assert_int_equal(watchdog_step(&st, false, NULL, t0, 600, true), 0);
    assert_int_equal(watchdog_step(&st, false, NULL, t0 + 599, 600, true), 0);
    assert_int_equal(watchdog_step(&st, true, NULL, t0 + 610, 600, true), 0);
    /* the next outage counts from its own start */
    assert_int_equal(watchdog_step(&st, false, NULL, t0 + 700, 600, true), 0);
    assert_int_equal(watchdog_step(&st, false, NULL, t0 + 1299, 600, true), 0);
    assert_int_equal(watchdog_step(&st, false, NULL, t0 + 1300, 600, true), WATCHDOG_ALERT_DOWN);

    /* down_after 0: the first failure alerts, from unknown too */
    struct watchdog_state s2 = {0};
    assert_int_equal(watchdog_step(&s2, false, NULL, t0, 0, false), WATCHDOG_ALERT_DOWN);
    assert_int_equal(watchdog_step(&s2, false, NULL, t0 + 1, 0, false), 0);
    /* notify_back off: coming back is silent */
    assert_int_equal(watchdog_step(&s2, true, NULL, t0 + 2, 0, false), 0);
    assert_int_equal(s2.status, WATCHDOG_UP);
    assert_false(s2.down_alerted);

    /* a stored, alerted outage (as a new master reads it after a failover)
     * does not alert again */
    struct watchdog_state s3 = {.status = WATCHDOG_DOWN, .since = t0, .down_alerted = true};
    assert_int_equal(watchdog_step(&s3, false, NULL, t0 + 5000, 0, true), 0);
    assert_int_equal(watchdog_step(&s3, true, NULL, t0 + 5001, 0, true),
                     WATCHDOG_ALERT_BACK_ONLINE);

    assert_string_equal(watchdog_status_name(WATCHDOG_UNKNOWN), "unknown");
    assert_int_equal(watchdog_status_parse("down"), WATCHDOG_DOWN);
    assert_int_equal(watchdog_status_parse("up"), WATCHDOG_UP);
    assert_int_equal(watchdog_status_parse("sideways"), -1);
}

static void test_state_content(void **state)
{
    struct watchdog_state st = {0};
    time_t t0 = 1700000000;
    char h1[65], h2[65];
    watchdog_sha256_hex("one", 3, h1);
    watchdog_sha256_hex("two", 3, h2);
    /* first content: recorded, not a change */
    assert_int_equal(watchdog_step(&st, true, h1, t0, 0, true), 0);
    assert_string_equal(st.hash, h1);
    assert_int_equal(watchdog_step(&st, true, h1, t0 + 1, 0, true), 0);
    assert_int_equal(watchdog_step(&st, true, h2, t0 + 2, 0, true), WATCHDOG_ALERT_CHANGED);
    assert_string_equal(st.hash, h2);
    assert_int_equal(watchdog_step(&st, true, h2, t0 + 3, 0, true), 0);
    /* a failed check keeps the last content; coming back with a new one
     * reports both */
    assert_int_equal(watchdog_step(&st, false, NULL, t0 + 4, 0, true), WATCHDOG_ALERT_DOWN);
    assert_string_equal(st.hash, h2);
    assert_int_equal(watchdog_step(&st, true, h1, t0 + 5, 0, true),
                     WATCHDOG_ALERT_BACK_ONLINE | WATCHDOG_ALERT_CHANGED);
}

/* ---- probes against this host ---- */

struct server {
    int fd;
    const char *greeting;
};

static void *serve_one(void *arg)
{
    struct server *s = arg;
    int c = accept(s->fd, NULL, NULL);
    if (c >= 0) {
        char buf[256];
        if (s->greeting)
            (void)!write(c, s->greeting, strlen(s->greeting));
        else
            (void)!read(c, buf, sizeof(buf)); /* wait for the probe's send string */
        close(c);
    }
    return NULL;
}

static int listen_local(int *port_r)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port_r = ntohs(a.sin_port);
    return fd;
}

static void probe_with(const char *greeting, const char *expect, bool want_up)
{
    int port;
    struct server s = {.fd = listen_local(&port), .greeting = greeting};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, serve_one, &s), 0);
    char text[64], err[128];
    snprintf(text, sizeof(text), "tcp://127.0.0.1:%d", port);
    struct watchdog_target t;
    assert_int_equal(watchdog_target_parse(text, &t, err, sizeof(err)), 0);
    struct watchdog_probe pr;
    assert_int_equal(watchdog_probe(&t, "HELO\r\n", 6, expect, 2, &pr), 0);
    pthread_join(th, NULL);
    close(s.fd);
    if (pr.up != want_up)
        fail_msg("greeting '%s' expect '%s': up=%d (%s)", greeting ? greeting : "", expect, pr.up,
                 pr.error);
    /* now nobody listens on that port */
    assert_int_equal(watchdog_probe(&t, NULL, 0, NULL, 1, &pr), 0);
    assert_false(pr.up);
    assert_non_null(strstr(pr.error, "cannot connect"));
}

static void test_probe_tcp(void **state)
{
    probe_with("220 mx.example.com ESMTP ready\r\n", "^220 .*ESMTP", true);
    probe_with("554 go away\r\n", "^220 ", false);
    probe_with(NULL, "", true);      /* no expect: connecting is enough */
    probe_with(NULL, "^220", false); /* closes without an answer */
    struct watchdog_target t;
    char err[128];
    struct watchdog_probe pr;
    assert_int_equal(watchdog_target_parse("tcp://127.0.0.1:9", &t, err, sizeof(err)), 0);
    assert_int_equal(watchdog_probe(&t, NULL, 0, "(bad", 1, &pr), -1);
}

static void test_probe_dns_localhost(void **state)
{
    struct watchdog_target t;
    char err[128];
    struct watchdog_probe pr;
    assert_int_equal(watchdog_target_parse("dns://localhost:a", &t, err, sizeof(err)), 0);
    assert_int_equal(watchdog_probe(&t, NULL, 0, NULL, 2, &pr), 0);
    if (!pr.up)
        fail_msg("localhost:a is down: %s", pr.error);
    assert_true(pr.has_content);
    assert_non_null(strstr(pr.answers, "127.0.0.1"));
    assert_true(pr.size >= 1);
    assert_int_equal(strlen(pr.hash), 64);
    assert_int_equal(watchdog_target_parse("dns://no-such-host.invalid:a", &t, err, sizeof(err)),
                     0);
    assert_int_equal(watchdog_probe(&t, NULL, 0, NULL, 2, &pr), 0);
    assert_false(pr.up);
    assert_true(pr.error[0] != '\0');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_target_tcp),
        cmocka_unit_test(test_target_http_dns),
        cmocka_unit_test(test_unescape),
        cmocka_unit_test(test_regex_check),
        cmocka_unit_test(test_hashing),
        cmocka_unit_test(test_state_down_after),
        cmocka_unit_test(test_state_blip_and_flags),
        cmocka_unit_test(test_state_content),
        cmocka_unit_test(test_probe_tcp),
        cmocka_unit_test(test_probe_dns_localhost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
