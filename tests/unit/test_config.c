/* layer: node */
/* Unit tests for the INI reader and the typed node configuration. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node/config.h"
#include "node/ini.h"

static char path[] = "/tmp/floe-test-config-XXXXXX";

static struct config *load_text(const char *text, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return config_load(path, -1, err, errlen);
}

static void expect_error(const char *text, const char *needle)
{
    char err[1024] = "";
    struct config *cfg = load_text(text, err, sizeof(err));
    if (cfg)
        fail_msg("accepted: %s", text);
    if (!strstr(err, needle))
        fail_msg("error '%s' lacks '%s'", err, needle);
    assert_non_null(strstr(err, path));
}

static void test_ini_syntax(void **state)
{
    char err[256];
    struct ini *ini =
        ini_parse("x.conf",
                  "# comment\n; another\n\n[Node]\n  Key = value with  spaces  \n"
                  "[service imap]\nq = \"  quoted \"\n[certificate \"main cert\"]\nfile=/a\n",
                  err, sizeof(err));
    assert_non_null(ini);
    assert_int_equal(ini->count, 3);
    assert_string_equal(ini->entries[0].section, "node");
    assert_string_equal(ini->entries[0].name, "");
    assert_string_equal(ini->entries[0].key, "key");
    assert_string_equal(ini->entries[0].value, "value with  spaces");
    assert_int_equal(ini->entries[0].line, 5);
    assert_string_equal(ini->entries[1].name, "imap");
    assert_string_equal(ini->entries[1].value, "  quoted ");
    assert_string_equal(ini->entries[2].name, "main cert");
    ini_free(&ini);
    assert_null(ini);

    static const struct {
        const char *text, *needle;
    } bad[] = {
        {"[node\nx=1\n", "x.conf:1: malformed section header"},
        {"[node] trailing\n", "x.conf:1: malformed section header"},
        {"[]\n", "x.conf:1: malformed section header"},
        {"[node]\nnovalue\n", "x.conf:2: expected 'key = value'"},
        {"[node]\n = 3\n", "x.conf:2: malformed key"},
        {"k = v\n", "x.conf:1: key 'k' outside any [section]"},
        {"[node]\nk = \"open\n", "x.conf:2: key 'k': unterminated quote"},
        {"[a \"b]\n", "unterminated quote"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        ini = ini_parse("x.conf", bad[i].text, err, sizeof(err));
        assert_null(ini);
        if (!strstr(err, bad[i].needle))
            fail_msg("case %zu: '%s' lacks '%s'", i, err, bad[i].needle);
    }
}

static void test_ini_limits(void **state)
{
    char err[256];
    size_t n = INI_MAX_LINE + 10;
    char *text = malloc(n + 16);
    assert_non_null(text);
    memcpy(text, "[node]\nk=", 9);
    memset(text + 9, 'a', n);
    text[9 + n] = '\0';
    assert_null(ini_parse("x.conf", text, err, sizeof(err)));
    assert_non_null(strstr(err, "x.conf:2: line longer than"));
    free(text);

    /* more entries than INI_MAX_ENTRIES */
    size_t cap = 16 + (INI_MAX_ENTRIES + 1) * 8;
    text = malloc(cap);
    assert_non_null(text);
    size_t o = (size_t)sprintf(text, "[node]\n");
    for (int i = 0; i <= INI_MAX_ENTRIES; i++)
        o += (size_t)sprintf(text + o, "k=%d\n", i % 10);
    assert_null(ini_parse("x.conf", text, err, sizeof(err)));
    assert_non_null(strstr(err, "too many entries"));
    free(text);
}

static void test_defaults(void **state)
{
    char err[1024];
    struct config *cfg = load_text("[node]\nid = n1\n", err, sizeof(err));
    assert_non_null(cfg);
    assert_string_equal(cfg->node_id, "n1");
    assert_int_equal(cfg->workers, 8);
    assert_int_equal(cfg->port_offset, 0);
    assert_int_equal(cfg->log_level, LOG_SUMMARY);
    assert_int_equal(cfg->log_rotate_bytes, 64u << 20);
    const struct service_config *d = config_service(cfg, "daytime");
    assert_non_null(d);
    assert_false(d->enabled);
    assert_int_equal(d->nlisten, 2); /* *:13 -> 0.0.0.0 and [::] */
    assert_string_equal(d->listen[0].text, "0.0.0.0:13");
    assert_string_equal(d->listen[1].text, "[::]:13");
    assert_true(d->listen[1].wildcard6);
    const struct service_config *a = config_service(cfg, "admin");
    assert_true(a->enabled);
    assert_int_equal(a->idle_timeout, 120);
    assert_null(config_service(cfg, "nosuch"));
    config_free(&cfg);
    assert_null(cfg);
}

static void test_values(void **state)
{
    char err[1024];
    struct config *cfg = load_text("[node]\nid = n-1.a_b\nport_offset = 10000\nworkers = 3\n"
                                   "[log]\nrotate_size = 2K\nlevel = Extended\nstderr = off\n"
                                   "[pattern Office]\nlist = 10.1.*.*\n"
                                   "[access]\nmode = grant\nlist = [Office]; 127.0.0.1\n"
                                   "[service daytime]\nenabled = yes\n"
                                   "listen = 127.0.0.1:13, [::1]:13\nlisten_tls = 127.0.0.2:14\n"
                                   "max_connections_per_ip = 5\nlog = none\nbandwidth = 64\n",
                                   err, sizeof(err));
    if (!cfg)
        fail_msg("%s", err);
    assert_int_equal(cfg->port_offset, 10000);
    assert_int_equal(cfg->workers, 3);
    assert_int_equal(cfg->log_rotate_bytes, 2048);
    assert_int_equal(cfg->log_level, LOG_EXTENDED);
    assert_false(cfg->log_stderr);
    assert_int_equal(cfg->access_mode, ACCESS_GRANT);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    inet_pton(AF_INET, "10.1.2.3", &sin.sin_addr);
    assert_true(access_list_match(cfg->access, (struct sockaddr *)&sin));
    inet_pton(AF_INET, "10.2.2.3", &sin.sin_addr);
    assert_false(access_list_match(cfg->access, (struct sockaddr *)&sin));
    const struct service_config *d = config_service(cfg, "daytime");
    assert_true(d->enabled);
    assert_int_equal(d->nlisten, 3);
    assert_string_equal(d->listen[0].text, "127.0.0.1:10013");
    assert_string_equal(d->listen[1].text, "[::1]:10013");
    assert_string_equal(d->listen[2].text, "127.0.0.2:10014");
    assert_true(d->listen[2].tls);
    assert_false(d->listen[0].tls);
    assert_int_equal(d->max_connections_per_ip, 5);
    assert_int_equal(d->bandwidth_kbps, 64);
    assert_int_equal(d->log_level, LOG_NONE);
    config_free(&cfg);

    /* the command line's offset wins over the file's */
    FILE *f = fopen(path, "w");
    fputs("[node]\nport_offset = 5\n[service daytime]\nlisten = 127.0.0.1:13\n", f);
    fclose(f);
    cfg = config_load(path, 100, err, sizeof(err));
    assert_non_null(cfg);
    assert_string_equal(config_service(cfg, "daytime")->listen[0].text, "127.0.0.1:113");
    config_free(&cfg);
}

static void test_errors_name_line_and_key(void **state)
{
    expect_error("[node]\nid = a\nthreads = 2\n", ":3: unknown key 'threads' in [node]");
    expect_error("[nodes]\nid = a\n", ":2: unknown key 'id' in [nodes]");
    expect_error("[service imapx]\nenabled = yes\n", ":2: unknown service [service imapx]");
    expect_error("[node]\nworkers = -1\n", ":2: key 'workers': expected a whole number");
    expect_error("[node]\nworkers = 99999\n", ":2: key 'workers'");
    expect_error("[node]\nworkers = 0\n", "workers must be at least 1");
    expect_error("[node]\nport_offset = 70000\n", ":2: key 'port_offset'");
    expect_error("[node]\nid = bad id!\n", "[node] id 'bad id!'");
    expect_error("[log]\nrotate_size = 12Q\n", ":2: key 'rotate_size'");
    expect_error("[log]\nstderr = maybe\n", ":2: key 'stderr': expected yes or no, got 'maybe'");
    expect_error("[tls]\nmin_version = 1.1\n", ":2: key 'min_version'");
    expect_error("[tls]\ndefault = nosuch\n", ":2: key 'default': no [certificate nosuch]");
    expect_error("[blob]\nbackend = tape\n", ":2: key 'backend'");
    expect_error("[blob]\nbackend = fs\n", "backend fs needs an absolute path");
    expect_error("[blob]\nbackend = s3\ns3_endpoint = http://x\n", "backend s3 needs");
    expect_error("[blob]\ns3_timeout = soon\n", ":2: key 's3_timeout'");
    expect_error("[access]\nmode = allow\n", ":2: key 'mode': expected off, grant or deny");
    expect_error("[access]\nlist = 1.2.3\n", ":2: key 'list'");
    expect_error("[access]\nlist = [Nope]\n", "unknown pattern [Nope]");
    expect_error("[pattern A]\nlist = [A]\n[access]\nlist = [A]\n", ":4: key 'list'");
    expect_error("[pattern A]\nfile = x\n", ":2: key 'file'");
    expect_error("[certificate c]\nkey = /k\n", ":2: key 'key'");
    expect_error("[service daytime]\nlisten = 127.0.0.1\n", "expected address:port");
    expect_error("[service daytime]\nlisten = 127.0.0.1:0\n", "port must be 1 to 65535");
    expect_error("[service daytime]\nlisten = [::1:13\n", "expected [IPv6]:port");
    expect_error("[service daytime]\nlisten = example.com:13\n", "is not an IP address");
    expect_error("[node]\nport_offset = 65530\n[service daytime]\nlisten = 127.0.0.1:13\n",
                 "out of range");
    expect_error("[service daytime]\nidle_timeout = 0\n", "timeouts must be at least 1 second");
    expect_error("[service admin]\nlog = chatty\n", ":2: key 'log'");
    expect_error("[service admin]\naccess = grant\naccess_list = 10.0.0.0/33\n",
                 ":3: key 'access_list'");
}

static void test_missing_file(void **state)
{
    char err[512];
    assert_null(config_load("/nonexistent/floed.conf", -1, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/floed.conf: No such file"));
}

static void test_parse_listen(void **state)
{
    struct listen_addr out[4];
    size_t n;
    char err[256];
    assert_int_equal(config_parse_listen("*:1 127.0.0.1:2", false, 0, out, 4, &n, err, sizeof(err)),
                     0);
    assert_int_equal(n, 3);
    assert_int_equal(config_parse_listen("*:1 *:2 *:3", false, 0, out, 4, &n, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "too many listen addresses"));
    assert_int_equal(config_parse_listen("", false, 0, out, 4, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    assert_int_equal(config_parse_listen("127.0.0.1:65535", true, 1, out, 4, &n, err, sizeof(err)),
                     -1);
}

int main(void)
{
    int fd = mkstemp(path);
    if (fd < 0)
        return 1;
    close(fd);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ini_syntax),
        cmocka_unit_test(test_ini_limits),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_errors_name_line_and_key),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_parse_listen),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(path);
    return r;
}
