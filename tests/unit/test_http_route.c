/* layer: node */
/* Unit tests for HTTP routing: host patterns, the route table (longest prefix,
 * host-specific routes, case-insensitive prefixes) and virtual hosts read from
 * [service web] (routes they serve, document roots), and the checks of those keys. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node/config.h"
#include "node/http/http_internal.h"

static char path[] = "/tmp/floe-test-http-route-XXXXXX";

static struct config *load_text(const char *text, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return config_load(path, -1, err, errlen);
}

static void test_host_patterns(void **state)
{
    assert_true(http_host_match("mail.example.com", "MAIL.example.com"));
    assert_true(http_host_match("mail.example.com", "mail.example.com:8443"));
    assert_true(http_host_match("mail.example.com", "mail.example.com."));
    assert_false(http_host_match("mail.example.com", "mail.example.org"));
    assert_true(http_host_match("*.example.com", "a.example.com"));
    assert_true(http_host_match("*.example.com", "a.b.example.com"));
    assert_false(http_host_match("*.example.com", "example.com"));
    assert_false(http_host_match("*.example.com", "badexample.com"));
    assert_true(http_host_match("autoconfig.*", "autoconfig.example.com"));
    assert_false(http_host_match("autoconfig.*", "autoconfig"));
    assert_false(http_host_match("autoconfig.*", "xautoconfig.example.com"));
    assert_true(http_host_match("*", ""));
    assert_true(http_host_match("*", "anything"));
    assert_false(http_host_match("a.test", ""));
    assert_false(http_host_match("a.test", NULL));

    char out[HTTP_HOST_MAX + 1];
    http_host_normalise("  Example.COM:80", out);
    assert_string_equal(out, "example.com");
    http_host_normalise("[::1]:443", out);
    assert_string_equal(out, "[::1]");
    http_host_normalise("[::1", out);
    assert_string_equal(out, "");
    http_host_normalise("bad/host", out);
    assert_string_equal(out, "");
    http_host_normalise("bad\rhost", out);
    assert_string_equal(out, "");
    char longname[400];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    http_host_normalise(longname, out);
    assert_string_equal(out, "");
    http_host_normalise(NULL, out);
    assert_string_equal(out, "");
}

static void h_a(struct http_exchange *x)
{
}
static void h_b(struct http_exchange *x)
{
}
static void h_c(struct http_exchange *x)
{
}
static void h_d(struct http_exchange *x)
{
}
static void h_e(struct http_exchange *x)
{
}
static void h_f(struct http_exchange *x)
{
}

struct probe {
    struct http_exchange x;
    struct http_request req;
};

static void route(const struct http_site *site, struct probe *p, const char *host,
                  const char *target)
{
    memset(p, 0, sizeof(*p));
    http_request_reset(&p->req);
    assert_int_equal(http_request_set_target(&p->req, target, strlen(target)), 0);
    p->x.req = &p->req;
    p->x.site = site;
    http_host_normalise(host, p->x.host);
    http_x_route(&p->x);
    http_request_reset(&p->req);
}

static void test_routes_and_vhosts(void **state)
{
    const struct http_route_opts special = {.host = "special.example.test"};
    const struct http_route_opts nocase = {.flags = HTTP_ROUTE_NOCASE};
    const struct http_route_opts autoconfig = {
        .host = "autoconfig.*", .flags = HTTP_ROUTE_STREAM_BODY, .max_body = 77};
    assert_int_equal(http_route("web", "/_t", h_a), 0);
    assert_int_equal(http_route("web", "/_t/deep", h_b), 0);
    assert_int_equal(http_route_ex("web", "/_t", h_c, &special), 0);
    assert_int_equal(http_route_ex("web", "/autodiscover/autodiscover.xml", h_d, &nocase), 0);
    assert_int_equal(http_route_ex("web", "/mail/config-v1.1.xml", h_e, &autoconfig), 0);
    assert_int_equal(http_route("other", "/_t", h_f), 0);
    assert_int_equal(http_route("web", "no-slash", h_f), -1);

    char err[512] = "";
    struct config *cfg = load_text("[node]\nid = t\n"
                                   "[service web]\nroot = /srv/default\n"
                                   "vhosts = mail, www, ac\n"
                                   "vhost.mail.hosts = mail.example.test, *.mail.example.test\n"
                                   "vhost.mail.routes = /autodiscover, /_t\n"
                                   "vhost.www.hosts = www.example.test\n"
                                   "vhost.www.root = /srv/www\n"
                                   "vhost.ac.hosts = autoconfig.*\n"
                                   "vhost.ac.routes = /mail\n",
                                   err, sizeof(err));
    if (!cfg)
        fail_msg("%s", err);
    struct http_site site;
    http_site_load(&site, cfg, "web");
    assert_int_equal(site.nvhosts, 3);
    assert_string_equal(site.root, "/srv/default");
    assert_false(site.diagnostics);

    struct probe p;
    route(&site, &p, "plain.test", "/_t/x");
    assert_ptr_equal(p.x.handler, h_a);
    assert_string_equal(p.x.root, "/srv/default");
    assert_int_equal(p.x.max_body, HTTP_MAX_BODY_DEFAULT);
    route(&site, &p, "plain.test", "/_t/deep/y"); /* the longest prefix */
    assert_ptr_equal(p.x.handler, h_b);
    route(&site, &p, "plain.test", "/_tx"); /* not below /_t */
    assert_null(p.x.handler);
    route(&site, &p, "Special.Example.Test:443", "/_t"); /* a host route beats any-host */
    assert_ptr_equal(p.x.handler, h_c);
    route(&site, &p, "special.example.test", "/_t/deep"); /* ... but not a longer prefix */
    assert_ptr_equal(p.x.handler, h_b);
    route(&site, &p, "plain.test", "/AutoDiscover/AutoDiscover.xml");
    assert_ptr_equal(p.x.handler, h_d);
    route(&site, &p, "plain.test", "/mail/config-v1.1.xml"); /* only on autoconfig.* */
    assert_null(p.x.handler);

    /* vhost "ac": only /mail; no root of its own */
    route(&site, &p, "autoconfig.example.test", "/mail/config-v1.1.xml");
    assert_ptr_equal(p.x.handler, h_e);
    assert_true(p.x.route_flags & HTTP_ROUTE_STREAM_BODY);
    assert_int_equal(p.x.max_body, 77);
    route(&site, &p, "autoconfig.example.test", "/_t");
    assert_null(p.x.handler);
    assert_null(p.x.root);

    /* vhost "mail": its two prefixes, nothing else, no files */
    route(&site, &p, "mail.example.test", "/_t/q");
    assert_ptr_equal(p.x.handler, h_a);
    route(&site, &p, "a.b.mail.example.test", "/autodiscover/autodiscover.xml");
    assert_ptr_equal(p.x.handler, h_d);
    route(&site, &p, "mail.example.test", "/index.html");
    assert_null(p.x.handler);
    assert_null(p.x.root);

    /* vhost "www": every route, and its own root for the rest */
    route(&site, &p, "www.example.test", "/_t");
    assert_ptr_equal(p.x.handler, h_a);
    assert_string_equal(p.x.root, "/srv/www");
    route(&site, &p, "www.example.test", "/style.css");
    assert_null(p.x.handler);
    assert_string_equal(p.x.root, "/srv/www");

    /* no Host at all: the default site */
    route(&site, &p, NULL, "/_t");
    assert_ptr_equal(p.x.handler, h_a);
    assert_string_equal(p.x.root, "/srv/default");

    /* a service sees only its own routes */
    struct http_site other = site;
    other.service = "other";
    other.nvhosts = 0;
    route(&other, &p, "plain.test", "/_t");
    assert_ptr_equal(p.x.handler, h_f);
    config_free(&cfg);
}

static void expect_error(const char *section_text, const char *needle)
{
    static char text[10000];
    char err[1024] = "";
    snprintf(text, sizeof(text), "[node]\nid = t\n[service web]\n%s", section_text);
    struct config *cfg = load_text(text, err, sizeof(err));
    if (cfg) {
        config_free(&cfg);
        fail_msg("accepted: %s", section_text);
    }
    if (!strstr(err, needle))
        fail_msg("error '%s' lacks '%s'", err, needle);
}

static void test_vhost_config_errors(void **state)
{
    expect_error("root = relative/path\n", "absolute path");
    expect_error("vhosts = a\n", "needs vhost.a.hosts");
    expect_error("vhosts = a\nvhost.a.hosts = x.test\n", "needs routes or root");
    expect_error("vhosts = a\nvhost.a.hosts = x.test\nvhost.a.routes = nope\n", "must start");
    expect_error("vhosts = a\nvhost.a.hosts = x/y\nvhost.a.root = /r\n", "not a host name");
    expect_error("vhosts = a\nvhost.a.hosts = x.test\nvhost.a.root = r\n", "absolute path");
    expect_error("vhosts = a!b\n", "names are letters");
    expect_error("vhosts = a\nvhost.a.hosts = x.test\nvhost.a.root = /r\nvhost.b.root = /s\n",
                 "unknown key 'vhost.b.root'");
    expect_error("diagnostics = maybe\n", "diagnostics");
    expect_error("well_known_caldav = dav\n", "not a path");
    static char many[8192];
    strcpy(many, "vhosts = ");
    for (int i = 0; i <= HTTP_MAX_VHOSTS; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "v%d ", i);
    strcat(many, "\n");
    for (int i = 0; i <= HTTP_MAX_VHOSTS; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many),
                 "vhost.v%d.hosts = h%d.test\nvhost.v%d.root = /r\n", i, i, i);
    expect_error(many, "names are letters");

    char err[512];
    struct config *cfg = load_text("[node]\nid = t\n[service web]\ndiagnostics = yes\n"
                                   "well_known_caldav = https://dav.example.test/cal/\n",
                                   err, sizeof(err));
    if (!cfg)
        fail_msg("%s", err);
    struct http_site site;
    http_site_load(&site, cfg, "web");
    assert_true(site.diagnostics);
    assert_null(site.root);
    assert_int_equal(site.nvhosts, 0);
    config_free(&cfg);
}

static int setup(void **state)
{
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    return 0;
}

static int teardown(void **state)
{
    unlink(path);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_patterns),
        cmocka_unit_test(test_routes_and_vhosts),
        cmocka_unit_test(test_vhost_config_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
