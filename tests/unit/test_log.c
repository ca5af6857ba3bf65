/* layer: node */
/* Tests for node/log: line format, levels, escaping, truncation, file rotation by size and
 * day, retention, concurrent writers, reconfiguration, stderr output and file errors.
 * Each test works in its own temporary directory: <root>/logs for log files and
 * <root>/stderr.txt, onto which fd 2 is redirected while the test runs. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "node/log.h"

#define PREFIX_RE "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "

struct fixture {
    char root[256];
    char dir[300];
    char err_path[300];
    int saved_stderr;
};

/* ---- helpers ---- */

static struct timespec test_now;

static void test_clock(struct timespec *ts_r)
{
    *ts_r = test_now;
}

/* Sets the test clock to a UTC date and time. */
static void set_time(int y, int mo, int d, int h, int mi, int s, long ms)
{
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = s};
    test_now.tv_sec = timegm(&tm);
    test_now.tv_nsec = ms * 1000000L;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static char *read_file(const char *path, size_t *len_r)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            cap *= 2;
            char *bigger = realloc(buf, cap + 1);
            assert_non_null(bigger);
            buf = bigger;
        }
    }
    fclose(f);
    buf[len] = '\0';
    if (len_r != NULL)
        *len_r = len;
    return buf;
}

static char *read_log(const struct fixture *fx, const char *name, size_t *len_r)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", fx->dir, name);
    return read_file(path, len_r);
}

static bool log_exists(const struct fixture *fx, const char *name)
{
    char path[600];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", fx->dir, name);
    return lstat(path, &st) == 0;
}

static long log_size(const struct fixture *fx, const char *name)
{
    char path[600];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", fx->dir, name);
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void touch(const struct fixture *fx, const char *name)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", fx->dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "old\n", 4), 4);
    close(fd);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

static size_t count_files(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

static bool matches(const char *re, const char *s)
{
    regex_t rx;
    assert_int_equal(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB | REG_NEWLINE), 0);
    bool ok = regexec(&rx, s, 0, NULL, 0) == 0;
    regfree(&rx);
    return ok;
}

/* Everything written to stderr since the test started. */
static char *read_stderr(const struct fixture *fx)
{
    char *s = read_file(fx->err_path, NULL);
    assert_non_null(s);
    return s;
}

static void configure(const struct fixture *fx, const char *node, bool to_stderr, size_t rotate,
                      int retention, enum log_level def)
{
    struct log_config cfg = {.node_id = node,
                             .to_stderr = to_stderr,
                             .dir = fx->dir,
                             .rotate_bytes = rotate,
                             .retention_days = retention,
                             .default_level = def};
    assert_int_equal(log_configure(&cfg), 0);
}

/* Length of the prefix of a line of imap/node1 with session "s1" and no client. */
static size_t prefix_len(void)
{
    return strlen("2026-11-21T05:34:43.123Z node1 imap [s=s1] [c=-] ");
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    snprintf(fx->root, sizeof(fx->root), "/tmp/floe-test-log-XXXXXX");
    assert_non_null(mkdtemp(fx->root));
    snprintf(fx->dir, sizeof(fx->dir), "%s/logs", fx->root);
    snprintf(fx->err_path, sizeof(fx->err_path), "%s/stderr.txt", fx->root);
    assert_int_equal(mkdir(fx->dir, 0755), 0);

    fflush(stderr);
    fx->saved_stderr = dup(STDERR_FILENO);
    assert_true(fx->saved_stderr >= 0);
    int fd = open(fx->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    close(fd);

    set_time(2026, 11, 21, 5, 34, 43, 123);
    log_set_clock(test_clock);
    *state = fx;
    return 0;
}

/* Passes on what was written to the captured stderr other than log lines and the module's
 * own "log: " reports: the test framework's failure messages. */
static void forward_stderr(const struct fixture *fx)
{
    FILE *f = fopen(fx->err_path, "r");
    if (f == NULL)
        return;
    char line[512];
    bool head = true;
    while (fgets(line, sizeof(line), f) != NULL) {
        bool ours = line[0] >= '0' && line[0] <= '9';
        ours = ours || strncmp(line, "log: ", 5) == 0;
        if (head && !ours)
            fputs(line, stderr);
        head = strchr(line, '\n') != NULL;
    }
    fclose(f);
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    log_shutdown();
    log_set_clock(NULL);
    fflush(stderr);
    dup2(fx->saved_stderr, STDERR_FILENO);
    close(fx->saved_stderr);
    forward_stderr(fx);
    nftw(fx->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

/* ---- tests ---- */

static void test_level_parse(void **state)
{
    static const struct {
        const char *s;
        int level;
    } cases[] = {
        {"none", LOG_NONE},
        {"summary", LOG_SUMMARY},
        {"debug", LOG_DEBUG},
        {"extended", LOG_EXTENDED},
        {"NONE", LOG_NONE},
        {"Summary", LOG_SUMMARY},
        {"DeBuG", LOG_DEBUG},
        {"EXTENDED", LOG_EXTENDED},
        {"0", LOG_NONE},
        {"1", LOG_SUMMARY},
        {"2", LOG_DEBUG},
        {"3", LOG_EXTENDED},
        {"", -1},
        {"4", -1},
        {"-1", -1},
        {"00", -1},
        {"1 ", -1},
        {" debug", -1},
        {"debugx", -1},
        {"debu", -1},
        {"info", -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum log_level level = (enum log_level)99;
        int r = log_level_parse(cases[i].s, &level);
        if (cases[i].level < 0) {
            assert_int_equal(r, -1);
            assert_int_equal(level, 99); /* untouched */
        } else {
            assert_int_equal(r, 0);
            assert_int_equal(level, cases[i].level);
        }
    }
    enum log_level level = LOG_DEBUG;
    assert_int_equal(log_level_parse(NULL, &level), -1);
    assert_int_equal(level, LOG_DEBUG);

    assert_string_equal(log_level_name(LOG_NONE), "none");
    assert_string_equal(log_level_name(LOG_EXTENDED), "extended");
    assert_string_equal(log_level_name((enum log_level)4), "?");
}

static void test_line_format_exact(void **state)
{
    struct fixture *fx = *state;
    configure(fx, "node1", false, 0, 0, LOG_SUMMARY);
    log_write("imap", LOG_SUMMARY, "1a2b", "192.0.2.1", "message");
    log_write("imap", LOG_SUMMARY, NULL, NULL, "n=%d s=%s", 42, "x");
    log_write("imap", LOG_SUMMARY, "", "", "empty fields");

    char *s = read_log(fx, "imap-node1-20261121-00.log", NULL);
    assert_non_null(s);
    assert_string_equal(s, "2026-11-21T05:34:43.123Z node1 imap [s=1a2b] [c=192.0.2.1] message\n"
                           "2026-11-21T05:34:43.123Z node1 imap [s=-] [c=-] n=42 s=x\n"
                           "2026-11-21T05:34:43.123Z node1 imap [s=-] [c=-] empty fields\n");
    free(s);
    assert_int_equal(count_files(fx->dir), 1);
}

static void test_line_format_real_clock(void **state)
{
    struct fixture *fx = *state;
    log_set_clock(NULL);
    configure(fx, "mx1.example.com", false, 0, 0, LOG_SUMMARY);
    time_t before = time(NULL);
    log_write("smtp", LOG_SUMMARY, "9f", "2001:db8::1", "hello %s %u", "world", 7u);
    time_t after = time(NULL);

    /* the file is named after today's UTC date */
    struct tm tm;
    gmtime_r(&before, &tm);
    char name[128];
    snprintf(name, sizeof(name), "smtp-mx1.example.com-%04d%02d%02d-00.log", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday);
    char *s = read_log(fx, name, NULL);
    if (s == NULL) { /* written just after midnight */
        gmtime_r(&after, &tm);
        snprintf(name, sizeof(name), "smtp-mx1.example.com-%04d%02d%02d-00.log", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday);
        s = read_log(fx, name, NULL);
    }
    assert_non_null(s);
    assert_true(matches(PREFIX_RE "mx1\\.example\\.com smtp \\[s=9f\\] \\[c=2001:db8::1\\] "
                                  "hello world 7\n$",
                        s));
    /* and the timestamp is now */
    struct tm lt = {0};
    int ms;
    assert_int_equal(sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &lt.tm_year, &lt.tm_mon, &lt.tm_mday,
                            &lt.tm_hour, &lt.tm_min, &lt.tm_sec, &ms),
                     7);
    lt.tm_year -= 1900;
    lt.tm_mon -= 1;
    time_t t = timegm(&lt);
    assert_true(t >= before && t <= after);
    free(s);
}

static void vwrite_helper(const char *service, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void vwrite_helper(const char *service, enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(service, level, "v", NULL, fmt, ap);
    va_end(ap);
}

static void test_levels(void **state)
{
    struct fixture *fx = *state;
    configure(fx, "node1", false, 0, 0, LOG_SUMMARY);
    log_set_level("imap", LOG_DEBUG);
    log_set_level("smtp", LOG_NONE);
    log_set_level("pop3", LOG_EXTENDED);

    assert_int_equal(log_get_level("imap"), LOG_DEBUG);
    assert_int_equal(log_get_level("smtp"), LOG_NONE);
    assert_int_equal(log_get_level("pop3"), LOG_EXTENDED);
    assert_int_equal(log_get_level("daytime"), LOG_SUMMARY); /* default */
    assert_int_equal(log_get_level(NULL), LOG_SUMMARY);
    assert_true(log_enabled("imap", LOG_DEBUG));
    assert_false(log_enabled("imap", LOG_EXTENDED));
    assert_false(log_enabled("imap", LOG_NONE));
    assert_false(log_enabled("imap", (enum log_level)4));
    assert_false(log_enabled("smtp", LOG_SUMMARY));
    assert_true(log_enabled("daytime", LOG_SUMMARY));
    assert_false(log_enabled("daytime", LOG_DEBUG));

    /* an invalid level or service name changes nothing */
    log_set_level("imap", (enum log_level)7);
    assert_int_equal(log_get_level("imap"), LOG_DEBUG);
    log_set_level("bad name", LOG_EXTENDED);
    assert_int_equal(log_get_level("bad name"), LOG_SUMMARY);
    char *err = read_stderr(fx);
    assert_non_null(strstr(err, "invalid level 7 for imap"));
    assert_non_null(strstr(err, "invalid service name"));
    free(err);

    const char *services[] = {"imap", "smtp", "pop3", "daytime"};
    for (size_t i = 0; i < 4; i++) {
        log_write(services[i], LOG_NONE, NULL, NULL, "%s none", services[i]);
        log_write(services[i], LOG_SUMMARY, NULL, NULL, "%s summary", services[i]);
        vwrite_helper(services[i], LOG_DEBUG, "%s debug", services[i]);
        log_write(services[i], LOG_EXTENDED, NULL, NULL, "%s extended", services[i]);
    }
    /* errors and warnings whatever the level, NONE included */
    log_error("smtp", "e1", "198.51.100.7", "relay denied for %s", "x@example.com");
    log_warn("smtp", NULL, NULL, "slow peer");

    char *s = read_log(fx, "imap-node1-20261121-00.log", NULL);
    assert_non_null(s);
    assert_int_equal(count_lines(s), 2);
    assert_true(matches(PREFIX_RE "node1 imap \\[s=-\\] \\[c=-\\] imap summary\n" PREFIX_RE
                                  "node1 imap \\[s=v\\] \\[c=-\\] imap debug\n$",
                        s));
    free(s);

    s = read_log(fx, "pop3-node1-20261121-00.log", NULL);
    assert_non_null(s);
    assert_int_equal(count_lines(s), 3);
    assert_non_null(strstr(s, "pop3 extended\n"));
    assert_null(strstr(s, "pop3 none"));
    free(s);

    s = read_log(fx, "daytime-node1-20261121-00.log", NULL);
    assert_non_null(s);
    assert_int_equal(count_lines(s), 1);
    assert_non_null(strstr(s, "daytime summary\n"));
    free(s);

    s = read_log(fx, "smtp-node1-20261121-00.log", NULL);
    assert_non_null(s);
    assert_string_equal(s, "2026-11-21T05:34:43.123Z node1 smtp [s=e1] [c=198.51.100.7] "
                           "error: relay denied for x@example.com\n"
                           "2026-11-21T05:34:43.123Z node1 smtp [s=-] [c=-] warning: slow peer\n");
    free(s);
}

static void test_escaping(void **state)
{
    struct fixture *fx = *state;
    configure(fx, "node1", false, 0, 0, LOG_SUMMARY);
    /* CR, LF, TAB, NUL (through %c), other controls, DEL, UTF-8 and a backslash */
    log_write("imap", LOG_SUMMARY, NULL, NULL, "a\r\nb\tc%cd\x01\x1b[31m\x1f\x7f e\xc3\xa9 \\x", 0);
    log_write("imap", LOG_SUMMARY, NULL, NULL, "%s", "\n");
    log_write("imap", LOG_SUMMARY, NULL, NULL, "%s",
              "FAKE\n2026-11-21T05:34:43.123Z node1 imap [s=-] [c=-] forged");
    /* fields: space, brackets, controls and bytes >= 0x80 escaped */
    log_write("imap", LOG_SUMMARY, "a b]", "x\ny[\xff", "fields");

    size_t len;
    char *s = read_log(fx, "imap-node1-20261121-00.log", &len);
    assert_non_null(s);
    assert_int_equal(count_lines(s), 4);
    assert_int_equal(strlen(s), len); /* no NUL byte made it through */
    const char *p = "2026-11-21T05:34:43.123Z node1 imap [s=-] [c=-] ";
    char expect[1024];
    snprintf(expect, sizeof(expect),
             "%sa\\r\\nb\\x09c\\x00d\\x01\\x1b[31m\\x1f\\x7f e\xc3\xa9 \\x\n"
             "%s\\n\n"
             "%sFAKE\\n2026-11-21T05:34:43.123Z node1 imap [s=-] [c=-] forged\n"
             "2026-11-21T05:34:43.123Z node1 imap [s=a\\x20b\\x5d] [c=x\\x0ay\\x5b\\xff] fields\n",
             p, p, p);
    assert_string_equal(s, expect);
    free(s);
}

static void test_field_cut(void **state)
{
    struct fixture *fx = *state;
    configure(fx, "node1", false, 0, 0, LOG_SUMMARY);
    char exact[LOG_FIELD_MAX + 1], longer[200], esc[40];
    memset(exact, 'a', LOG_FIELD_MAX);
    exact[LOG_FIELD_MAX] = '\0';
    memset(longer, 'b', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    memset(esc, ' ', sizeof(esc) - 1); /* each space is 4 bytes escaped */
    esc[sizeof(esc) - 1] = '\0';
    log_write("imap", LOG_SUMMARY, exact, longer, "x");
    log_write("imap", LOG_SUMMARY, esc, NULL, "y");

    char *s = read_log(fx, "imap-node1-20261121-00.log", NULL);
    assert_non_null(s);
    char expect[1024];
    /* 64 bytes fit as they are; 199 are cut to 61 + "..."; 15 escapes (60 bytes) + "..." */
    snprintf(expect, sizeof(expect),
             "2026-11-21T05:34:43.123Z node1 imap [s=%s] [c=%.61s...] x\n"
             "2026-11-21T05:34:43.123Z node1 imap [s=%s...] [c=-] y\n",
             exact, longer,
             "\\x20\\x20\\x20\\x20\\x20\\x20\\x20\\x20\\x20\\x20\\x20\\x20\\x20\\x20\\x20");
    assert_string_equal(s, expect);
    free(s);
}

/* Writes one message built from a pattern repeated to len bytes; returns the line read back
 * (the only line of a fresh file). */
static char *write_and_read(struct fixture *fx, const char *unit, size_t len)
{
    char *msg = malloc(len + 1);
    assert_non_null(msg);
    size_t ulen = strlen(unit);
    for (size_t i = 0; i < len; i++)
        msg[i] = unit[i % ulen];
    msg[len] = '\0';
    const char *name = "imap-node1-20261121-00.log";
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", fx->dir, name);
    unlink(path);
    configure(fx, "node1", false, 0, 0, LOG_SUMMARY);
    log_write("imap", LOG_SUMMARY, "s1", NULL, "%s", msg);
    free(msg);
    size_t flen;
    char *s = read_log(fx, name, &flen);
    assert_non_null(s);
    assert_int_equal(count_lines(s), 1);
    assert_int_equal(s[flen - 1], '\n');
    assert_true(flen <= LOG_LINE_MAX);
    return s;
}

static void test_truncation(void **state)
{
    struct fixture *fx = *state;
    size_t p = prefix_len();
    const char *prefix = "2026-11-21T05:34:43.123Z node1 imap [s=s1] [c=-] ";

    /* far too long: exactly LOG_LINE_MAX, ending in "...\n" */
    char *s = write_and_read(fx, "x", 20000);
    assert_int_equal(strlen(s), LOG_LINE_MAX);
    assert_memory_equal(s, prefix, p);
    assert_string_equal(s + LOG_LINE_MAX - 5, "x...\n");
    free(s);

    /* exactly fits: not cut */
    s = write_and_read(fx, "y", LOG_LINE_MAX - 1 - p);
    assert_int_equal(strlen(s), LOG_LINE_MAX);
    assert_string_equal(s + LOG_LINE_MAX - 2, "y\n");
    free(s);

    /* one byte more: cut */
    s = write_and_read(fx, "y", LOG_LINE_MAX - p);
    assert_int_equal(strlen(s), LOG_LINE_MAX);
    assert_string_equal(s + LOG_LINE_MAX - 5, "y...\n");
    free(s);

    /* longer than the format buffer itself, with a short prefix still cut the same way */
    s = write_and_read(fx, "z", LOG_LINE_MAX + 1);
    assert_int_equal(strlen(s), LOG_LINE_MAX);
    assert_string_equal(s + LOG_LINE_MAX - 5, "z...\n");
    free(s);

    /* an escape is never split: "\n" text does not fit whole before "..." */
    s = write_and_read(fx, "\n", 5000);
    size_t len = strlen(s);
    assert_true(len >= LOG_LINE_MAX - 1 && len <= LOG_LINE_MAX);
    assert_string_equal(s + len - 6, "\\n...\n");
    assert_int_equal((len - 4 - p) % 2, 0);
    free(s);

    s = write_and_read(fx, "\x01", 5000);
    len = strlen(s);
    assert_true(len >= LOG_LINE_MAX - 3 && len <= LOG_LINE_MAX);
    assert_string_equal(s + len - 8, "\\x01...\n");
    assert_int_equal((len - 4 - p) % 4, 0);
    free(s);

    /* a UTF-8 sequence is never split, whatever its length and alignment */
    const char *units[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "a\xe2\x82\xac",
                           "ab\xf0\x9f\x98\x80"};
    for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
        size_t ulen = strlen(units[u]);
        s = write_and_read(fx, units[u], 3 * LOG_LINE_MAX);
        len = strlen(s);
        assert_true(len <= LOG_LINE_MAX && len > LOG_LINE_MAX - 4 - 4);
        assert_string_equal(s + len - 4, "...\n");
        size_t body = len - 4 - p;
        /* the message part is a whole number of units, or ends after a whole character */
        for (size_t i = 0; i < body; i++)
            assert_int_equal((unsigned char)s[p + i], (unsigned char)units[u][i % ulen]);
        unsigned char next = (unsigned char)units[u][body % ulen];
        assert_true((next & 0xc0) != 0x80);
        free(s);
    }
}

/* Writes a line of exactly len bytes (len > prefix) to imap with session "s1". */
static void write_line_of(size_t len, int seq)
{
    size_t p = prefix_len();
    char msg[4096];
    assert_true(len > p + 8 && len - p - 1 < sizeof(msg));
    size_t mlen = len - p - 1;
    snprintf(msg, sizeof(msg), "%06d ", seq);
    memset(msg + 7, '.', mlen - 7);
    msg[mlen] = '\0';
    log_write("imap", LOG_SUMMARY, "s1", NULL, "%s", msg);
}

static void test_size_rotation(void **state)
{
    struct fixture *fx = *state;
    configure(fx, "node1", false, 1000, 0, LOG_SUMMARY);
    for (int i = 0; i < 35; i++)
        write_line_of(100, i);

    assert_int_equal(log_size(fx, "imap-node1-20261121-00.log"), 1000);
    assert_int_equal(log_size(fx, "imap-node1-20261121-01.log"), 1000);
    assert_int_equal(log_size(fx, "imap-node1-20261121-02.log"), 1000);
    assert_int_equal(log_size(fx, "imap-node1-20261121-03.log"), 500);
    assert_false(log_exists(fx, "imap-node1-20261121-04.log"));

    /* lines are in order across files */
    int seq = 0;
    for (int f = 0; f < 4; f++) {
        char name[64];
        snprintf(name, sizeof(name), "imap-node1-20261121-%02d.log", f);
        char *s = read_log(fx, name, NULL);
        assert_non_null(s);
        for (char *line = s; *line != '\0'; line = strchr(line, '\n') + 1) {
            char want[32];
            snprintf(want, sizeof(want), "[c=-] %06d ", seq++);
            assert_non_null(strstr(line, want));
            assert_true(strstr(line, want) < strchr(line, '\n'));
        }
        free(s);
    }
    assert_int_equal(seq, 35);

    /* a line longer than rotate_bytes goes alone into a fresh file */
    write_line_of(2000, 35);
    assert_int_equal(log_size(fx, "imap-node1-20261121-03.log"), 500);
    assert_int_equal(log_size(fx, "imap-node1-20261121-04.log"), 2000);
    write_line_of(100, 36);
    assert_int_equal(log_size(fx, "imap-node1-20261121-05.log"), 100);

    /* a restart continues the day's last file while it has room */
    configure(fx, "node1", false, 1000, 0, LOG_SUMMARY);
    write_line_of(100, 37);
    assert_int_equal(log_size(fx, "imap-node1-20261121-05.log"), 200);
    assert_false(log_exists(fx, "imap-node1-20261121-06.log"));
    /* and starts the next one when it has not */
    configure(fx, "node1", false, 250, 0, LOG_SUMMARY);
    write_line_of(100, 38);
    assert_int_equal(log_size(fx, "imap-node1-20261121-05.log"), 200);
    assert_int_equal(log_size(fx, "imap-node1-20261121-06.log"), 100);
    assert_int_equal(count_files(fx->dir), 7);
}

static void test_index_beyond_99(void **state)
{
    struct fixture *fx = *state;
    /* the day's highest index is found by number, not by name order */
    touch(fx, "imap-node1-20261121-99.log");
    touch(fx, "imap-node1-20261121-100.log");
    touch(fx, "imap-node1-20261121-998.log");
    configure(fx, "node1", false, 150, 0, LOG_SUMMARY);
    write_line_of(100, 0); /* 4 + 100 bytes fit into -998 */
    assert_int_equal(log_size(fx, "imap-node1-20261121-998.log"), 104);
    write_line_of(100, 1);
    assert_int_equal(log_size(fx, "imap-node1-20261121-999.log"), 100);
    write_line_of(100, 2);
    assert_int_equal(log_size(fx, "imap-node1-20261121-1000.log"), 100);

    /* the last index takes everything */
    touch(fx, "imap-node1-20261121-9999.log");
    configure(fx, "node1", false, 150, 0, LOG_SUMMARY);
    write_line_of(100, 3);
    write_line_of(100, 4);
    assert_int_equal(log_size(fx, "imap-node1-20261121-9999.log"), 204);
    assert_false(log_exists(fx, "imap-node1-20261121-10000.log"));
}

static void test_daily_rotation(void **state)
{
    struct fixture *fx = *state;
    configure(fx, "node1", false, 150, 0, LOG_SUMMARY);
    set_time(2026, 11, 21, 23, 59, 59, 998);
    write_line_of(100, 0);
    write_line_of(100, 1); /* size rotation to -01 */
    set_time(2026, 11, 21, 23, 59, 59, 999);
    log_write("smtp", LOG_SUMMARY, NULL, NULL, "before midnight");
    set_time(2026, 11, 22, 0, 0, 0, 0);
    write_line_of(100, 2); /* new day: index starts again at 00 */
    log_write("smtp", LOG_SUMMARY, NULL, NULL, "after midnight");

    assert_int_equal(log_size(fx, "imap-node1-20261121-00.log"), 100);
    assert_int_equal(log_size(fx, "imap-node1-20261121-01.log"), 100);
    assert_int_equal(log_size(fx, "imap-node1-20261122-00.log"), 100);
    char *s = read_log(fx, "smtp-node1-20261121-00.log", NULL);
    assert_string_equal(s, "2026-11-21T23:59:59.999Z node1 smtp [s=-] [c=-] before midnight\n");
    free(s);
    s = read_log(fx, "smtp-node1-20261122-00.log", NULL);
    assert_string_equal(s, "2026-11-22T00:00:00.000Z node1 smtp [s=-] [c=-] after midnight\n");
    free(s);

    /* a line is filed under its own date even when the clock steps back */
    set_time(2026, 11, 21, 23, 59, 59, 0);
    log_write("smtp", LOG_SUMMARY, NULL, NULL, "late");
    s = read_log(fx, "smtp-node1-20261121-00.log", NULL);
    assert_int_equal(count_lines(s), 2);
    free(s);
    /* and across a year boundary */
    set_time(2026, 12, 31, 23, 0, 0, 0);
    log_write("smtp", LOG_SUMMARY, NULL, NULL, "y1");
    set_time(2027, 1, 1, 1, 0, 0, 0);
    log_write("smtp", LOG_SUMMARY, NULL, NULL, "y2");
    assert_true(log_exists(fx, "smtp-node1-20261231-00.log"));
    assert_true(log_exists(fx, "smtp-node1-20270101-00.log"));
}

static void test_retention(void **state)
{
    struct fixture *fx = *state;
    char path[600];
    /* today is 2026-11-21; retention 7 keeps 2026-11-14 and later */
    const char *doomed[] = {
        "imap-node1-20200101-00.log",  "_other-node1-20200101-00.log",
        "smtp-node1-20261113-00.log",  "smtp-node1-20261113-01.log",
        "smtp-node1-20261113-123.log", "my-svc_2-node1-20250228-00.log",
    };
    const char *kept[] = {
        "smtp-node1-20261114-00.log",    /* exactly 7 days old */
        "smtp-node1-20261121-00.log",    /* today */
        "imap-node2-20200101-00.log",    /* another node's */
        "imap-xnode1-20200101-00.log",   /* another node's, ends like ours */
        "imap-node1-20200101-00.log.gz", /* not ours */
        "imap-node1-20200101-0.log",     /* one-digit index */
        "imap-node1-20200101-00000.log", /* five-digit index */
        "imap-node1-20200101-001.log",   /* not a written index */
        "imap-node1-20200231-00.log",    /* no such date */
        "imap-node1-2020011-00.log",     /* short date */
        "bad name-node1-20200101-00.log",
        "-node1-20200101-00.log",
        "node1-20200101-00.log",
        "_x-node1-20200101-00.log",
        "notes.txt",
        "IMAP-node1-20200101-00.LOG",
    };
    for (size_t i = 0; i < sizeof(doomed) / sizeof(doomed[0]); i++)
        touch(fx, doomed[i]);
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
        touch(fx, kept[i]);
    /* a directory and a symlink named like old log files are left alone */
    snprintf(path, sizeof(path), "%s/pop3-node1-20200101-00.log", fx->dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/daytime-node1-20200101-00.log", fx->dir);
    assert_int_equal(symlink("notes.txt", path), 0);

    configure(fx, "node1", false, 0, 7, LOG_SUMMARY);

    for (size_t i = 0; i < sizeof(doomed) / sizeof(doomed[0]); i++)
        assert_false(log_exists(fx, doomed[i]));
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
        assert_true(log_exists(fx, kept[i]));
    assert_true(log_exists(fx, "pop3-node1-20200101-00.log"));
    assert_true(log_exists(fx, "daytime-node1-20200101-00.log"));

    /* when a new file is opened on a later day, files that aged out since are deleted */
    touch(fx, "imap-node1-20261115-00.log");
    set_time(2026, 11, 22, 0, 0, 1, 0);
    log_write("imap", LOG_SUMMARY, NULL, NULL, "next day");
    assert_true(log_exists(fx, "imap-node1-20261122-00.log"));
    assert_false(log_exists(fx, "smtp-node1-20261114-00.log"));
    assert_true(log_exists(fx, "imap-node1-20261115-00.log"));
    assert_true(log_exists(fx, "smtp-node1-20261121-00.log"));
    assert_true(log_exists(fx, "notes.txt"));

    /* retention 0 keeps everything */
    touch(fx, "imap-node1-19990101-00.log");
    configure(fx, "node1", false, 0, 0, LOG_SUMMARY);
    set_time(2026, 11, 23, 0, 0, 1, 0);
    log_write("imap", LOG_SUMMARY, NULL, NULL, "day after");
    assert_true(log_exists(fx, "imap-node1-19990101-00.log"));
    assert_true(log_exists(fx, "imap-node1-20261123-00.log"));
}

#define THREADS 4
#define LINES_PER_THREAD 3000

static void *writer(void *arg)
{
    int t = (int)(intptr_t)arg;
    char payload[4000];
    for (int n = 0; n < LINES_PER_THREAD; n++) {
        size_t len = (size_t)(n * 37 + t * 101) % 3500;
        memset(payload, 'a' + t, len);
        payload[len] = '\0';
        log_write("imap", LOG_SUMMARY, "sess", "203.0.113.9", "t%d n%05d %s|", t, n, payload);
    }
    return NULL;
}

/* Checks that text is made of whole lines from the writers, each thread's in order. */
static void check_whole_lines(const char *text, int next[THREADS])
{
    const char *line = text;
    while (*line != '\0') {
        const char *nl = strchr(line, '\n');
        assert_non_null(nl);
        char head[96];
        size_t hl = (size_t)(nl - line) < sizeof(head) - 1 ? (size_t)(nl - line) : sizeof(head) - 1;
        memcpy(head, line, hl);
        head[hl] = '\0';
        assert_true(matches(PREFIX_RE "node1 imap \\[s=sess\\] \\[c=203\\.0\\.113\\.9\\] "
                                      "t[0-3] n[0-9]{5} ",
                            head));
        const char *m = strstr(head, "] t") + 2;
        int t, n;
        assert_int_equal(sscanf(m, "t%d n%d", &t, &n), 2);
        assert_true(t >= 0 && t < THREADS);
        assert_int_equal(n, next[t]);
        next[t]++;
        const char *payload = line + (m - head) + strlen("t0 n00000 ");
        size_t want = (size_t)(n * 37 + t * 101) % 3500;
        for (size_t i = 0; i < want; i++)
            assert_int_equal(payload[i], 'a' + t);
        assert_int_equal(payload[want], '|');
        assert_ptr_equal(payload + want + 1, nl);
        line = nl + 1;
    }
}

static void test_concurrent(void **state)
{
    struct fixture *fx = *state;
    log_set_clock(NULL); /* real time, so a day change during the run is handled too */
    configure(fx, "node1", true, 512 * 1024, 0, LOG_SUMMARY);
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, writer, (void *)(intptr_t)t), 0);
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_join(th[t], NULL), 0);

    /* files in day and index order */
    struct dirent **names;
    int nn = scandir(fx->dir, &names, NULL, alphasort);
    assert_true(nn > 2);
    int next[THREADS] = {0};
    size_t files = 0;
    for (int i = 0; i < nn; i++) {
        if (names[i]->d_name[0] != '.') {
            assert_true(matches("^imap-node1-[0-9]{8}-[0-9]{2}\\.log$", names[i]->d_name));
            char *s = read_log(fx, names[i]->d_name, NULL);
            assert_non_null(s);
            assert_true(strlen(s) <= 512 * 1024);
            check_whole_lines(s, next);
            free(s);
            files++;
        }
        free(names[i]);
    }
    free(names);
    assert_true(files > 1); /* rotation happened while the threads raced */
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(next[t], LINES_PER_THREAD);

    /* the same lines, whole, on stderr */
    int snext[THREADS] = {0};
    char *err = read_stderr(fx);
    check_whole_lines(err, snext);
    free(err);
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(snext[t], LINES_PER_THREAD);
}

static void test_reconfigure(void **state)
{
    struct fixture *fx = *state;
    char dir_b[400], blocker[400];
    snprintf(dir_b, sizeof(dir_b), "%s/b/sub/logs", fx->root);

    configure(fx, "node1", false, 0, 0, LOG_SUMMARY);
    log_set_level("imap", LOG_DEBUG);
    log_write("imap", LOG_DEBUG, NULL, NULL, "first");

    struct log_config cfg = {
        .node_id = "node2", .to_stderr = false, .dir = dir_b, .default_level = LOG_NONE};
    assert_int_equal(log_configure(&cfg), 0);          /* creates b/sub/logs */
    assert_int_equal(log_get_level("imap"), LOG_NONE); /* explicit levels cleared */
    log_write("imap", LOG_SUMMARY, NULL, NULL, "dropped");
    log_set_level("imap", LOG_SUMMARY);
    log_write("imap", LOG_SUMMARY, NULL, NULL, "second");

    char *s = read_log(fx, "imap-node1-20261121-00.log", NULL);
    assert_non_null(s);
    assert_string_equal(s, "2026-11-21T05:34:43.123Z node1 imap [s=-] [c=-] first\n");
    free(s);
    char path[600];
    snprintf(path, sizeof(path), "%s/imap-node2-20261121-00.log", dir_b);
    s = read_file(path, NULL);
    assert_non_null(s);
    assert_string_equal(s, "2026-11-21T05:34:43.123Z node2 imap [s=-] [c=-] second\n");
    free(s);

    /* invalid configurations fail and leave the current one in force */
    snprintf(blocker, sizeof(blocker), "%s/file", fx->root);
    int fd = open(blocker, O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    close(fd);
    strcat(blocker, "/sub");
    struct log_config bad = cfg;
    bad.dir = blocker;
    assert_int_equal(log_configure(&bad), -1);
    bad.dir = fx->root;
    bad.node_id = "a/b";
    assert_int_equal(log_configure(&bad), -1);
    bad.node_id = "";
    assert_int_equal(log_configure(&bad), -1);
    bad.node_id = NULL;
    assert_int_equal(log_configure(&bad), -1);
    bad.node_id = "n";
    bad.default_level = (enum log_level)4;
    assert_int_equal(log_configure(&bad), -1);
    bad.default_level = LOG_SUMMARY;
    bad.retention_days = -1;
    assert_int_equal(log_configure(&bad), -1);
    assert_int_equal(log_configure(NULL), -1);
    char *err = read_stderr(fx);
    assert_non_null(strstr(err, "cannot create log directory"));
    assert_non_null(strstr(err, "invalid node id"));
    free(err);

    assert_int_equal(log_get_level("imap"), LOG_SUMMARY);
    log_write("imap", LOG_SUMMARY, NULL, NULL, "third");
    s = read_file(path, NULL);
    assert_int_equal(count_lines(s), 2);
    assert_non_null(strstr(s, "node2 imap [s=-] [c=-] third\n"));
    free(s);

    /* no directory: stderr only, no new files anywhere */
    size_t before = count_files(dir_b);
    struct log_config plain = {
        .node_id = "node3", .to_stderr = true, .dir = "", .default_level = LOG_SUMMARY};
    assert_int_equal(log_configure(&plain), 0);
    log_write("imap", LOG_SUMMARY, "s", "c", "fourth");
    assert_int_equal(count_files(dir_b), before);
    err = read_stderr(fx);
    assert_non_null(strstr(err, "2026-11-21T05:34:43.123Z node3 imap [s=s] [c=c] fourth\n"));
    free(err);
}

static void test_stderr_and_shutdown(void **state)
{
    struct fixture *fx = *state;
    configure(fx, "node1", true, 0, 0, LOG_SUMMARY);
    log_write("imap", LOG_SUMMARY, NULL, "192.0.2.1", "both");
    log_shutdown();
    log_write("imap", LOG_SUMMARY, NULL, NULL, "after shutdown");

    char *s = read_log(fx, "imap-node1-20261121-00.log", NULL);
    assert_string_equal(s, "2026-11-21T05:34:43.123Z node1 imap [s=-] [c=192.0.2.1] both\n");
    free(s);
    char *err = read_stderr(fx);
    assert_string_equal(err, "2026-11-21T05:34:43.123Z node1 imap [s=-] [c=192.0.2.1] both\n"
                             "2026-11-21T05:34:43.123Z node1 imap [s=-] [c=-] after shutdown\n");
    free(err);
    assert_int_equal(count_files(fx->dir), 1);
}

static void test_open_failure(void **state)
{
    struct fixture *fx = *state;
    char path[600];
    snprintf(path, sizeof(path), "%s/imap-node1-20261121-00.log", fx->dir);
    assert_int_equal(mkdir(path, 0755), 0);

    configure(fx, "node1", false, 0, 0, LOG_SUMMARY);
    log_write("imap", LOG_SUMMARY, NULL, NULL, "lost 1");
    log_write("imap", LOG_SUMMARY, NULL, NULL, "lost 2");
    char *err = read_stderr(fx);
    const char *hit = strstr(err, "log: cannot open");
    assert_non_null(hit);
    assert_null(strstr(hit + 1, "log: cannot open")); /* reported once, not per line */
    free(err);

    /* retried a minute later */
    assert_int_equal(rmdir(path), 0);
    test_now.tv_sec += 30;
    log_write("imap", LOG_SUMMARY, NULL, NULL, "lost 3");
    assert_false(log_exists(fx, "imap-node1-20261121-00.log"));
    test_now.tv_sec += 31;
    log_write("imap", LOG_SUMMARY, NULL, NULL, "kept");
    char *s = read_log(fx, "imap-node1-20261121-00.log", NULL);
    assert_non_null(s);
    assert_string_equal(s, "2026-11-21T05:35:44.123Z node1 imap [s=-] [c=-] kept\n");
    free(s);
}

static void test_service_table_bound(void **state)
{
    struct fixture *fx = *state;
    configure(fx, "node1", false, 0, 0, LOG_NONE);
    /* the table is process-wide and earlier tests used a few names: count what fits */
    int accepted = 0;
    bool full = false;
    for (int i = 0; i < LOG_SERVICES_MAX + 10; i++) {
        char name[16];
        snprintf(name, sizeof(name), "svc%02d", i);
        log_set_level(name, LOG_DEBUG);
        if (log_get_level(name) == LOG_DEBUG) {
            assert_false(full); /* nothing fits once the table is full */
            accepted++;
        } else {
            full = true;
            assert_int_equal(log_get_level(name), LOG_NONE);
        }
    }
    assert_true(full);
    assert_true(accepted >= LOG_SERVICES_MAX - 8 && accepted < LOG_SERVICES_MAX);
    char *err = read_stderr(fx);
    assert_non_null(strstr(err, "more than 64 services"));
    free(err);

    /* a service that has a slot still has its file */
    log_write("svc00", LOG_DEBUG, NULL, NULL, "own file");
    assert_true(log_exists(fx, "svc00-node1-20261121-00.log"));

    /* services without a slot, and invalid names, share "_other" at the default level */
    char last[16], name33[40], path_name[32];
    snprintf(last, sizeof(last), "svc%02d", LOG_SERVICES_MAX + 9);
    memset(name33, 'n', 33);
    name33[33] = '\0';
    snprintf(path_name, sizeof(path_name), "../../etc/x");
    log_write(last, LOG_SUMMARY, NULL, NULL, "dropped at none");
    log_error(last, NULL, NULL, "overflow");
    log_error(NULL, NULL, NULL, "null name");
    log_error("", NULL, NULL, "empty name");
    log_error(path_name, NULL, NULL, "path name");
    log_error(name33, NULL, NULL, "long name");
    log_error("-x", NULL, NULL, "dash first");
    assert_false(log_exists(fx, "-x-node1-20261121-00.log"));
    char *s = read_log(fx, "_other-node1-20261121-00.log", NULL);
    assert_non_null(s);
    char expect[1024];
    snprintf(expect, sizeof(expect),
             "2026-11-21T05:34:43.123Z node1 %s [s=-] [c=-] error: overflow\n"
             "2026-11-21T05:34:43.123Z node1 - [s=-] [c=-] error: null name\n"
             "2026-11-21T05:34:43.123Z node1 - [s=-] [c=-] error: empty name\n"
             "2026-11-21T05:34:43.123Z node1 - [s=-] [c=-] error: path name\n"
             "2026-11-21T05:34:43.123Z node1 - [s=-] [c=-] error: long name\n"
             "2026-11-21T05:34:43.123Z node1 - [s=-] [c=-] error: dash first\n",
             last);
    assert_string_equal(s, expect);
    free(s);
    /* 32 characters is still a valid name, but there is no slot left for it */
    name33[32] = '\0';
    log_error(name33, NULL, NULL, "32");
    s = read_log(fx, "_other-node1-20261121-00.log", NULL);
    assert_non_null(strstr(s, name33));
    free(s);
    assert_int_equal(count_files(fx->dir), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test_setup_teardown(test_line_format_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_format_real_clock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_field_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_beyond_99, setup, teardown),
        cmocka_unit_test_setup_teardown(test_daily_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconfigure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stderr_and_shutdown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_failure, setup, teardown),
        /* last: fills the process-wide service table */
        cmocka_unit_test_setup_teardown(test_service_table_bound, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
