/* layer: cluster */
/* Cron schedules: parsing, rejections, and next-run times across minute, hour,
 * day, month and year boundaries (UTC). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cluster/cron.h"

/* "YYYY-MM-DD HH:MM" (UTC) to time_t and back */
static time_t at(const char *s)
{
    struct tm tm = {0};
    if (sscanf(s, "%d-%d-%d %d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min) != 5)
        fail_msg("bad time %s", s);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return timegm(&tm);
}

static void expect_next(const char *sched, const char *after, const char *want)
{
    struct cron c;
    char err[128];
    if (cron_parse(sched, &c, err, sizeof(err)) < 0)
        fail_msg("%s: %s", sched, err);
    time_t t = cron_next(&c, at(after));
    char got[32] = "none";
    if (t >= 0) {
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(got, sizeof(got), "%Y-%m-%d %H:%M", &tm);
    }
    if (strcmp(got, want))
        fail_msg("'%s' after %s: got %s, want %s", sched, after, got, want);
}

static void test_next(void **state)
{
    expect_next("* * * * *", "2026-11-21 06:40", "2026-11-21 06:41");
    expect_next("*/15 * * * *", "2026-11-21 06:40", "2026-11-21 06:45");
    expect_next("0 * * * *", "2026-11-21 23:59", "2026-11-22 00:00");
    expect_next("30 2 * * *", "2026-11-21 02:30", "2026-11-22 02:30");
    expect_next("0 0 1 * *", "2026-12-15 10:00", "2027-01-01 00:00");
    expect_next("0 0 29 2 *", "2026-03-01 00:00", "2028-02-29 00:00"); /* leap day */
    expect_next("0 12 * * 1-5", "2026-11-21 13:00", "2026-11-23 12:00"); /* Sat -> Mon */
    expect_next("0 12 * * 7", "2026-11-21 13:00", "2026-11-22 12:00");   /* 7 = Sunday */
    expect_next("0 0 13 * 5", "2026-11-21 00:00", "2026-11-27 00:00");   /* day OR weekday */
    expect_next("5-10/5 8,20 * 1,6 *", "2026-11-21 00:00", "2027-01-01 08:05");
    expect_next("@daily", "2026-11-21 06:40", "2026-11-22 00:00");
    expect_next("@hourly", "2026-11-21 06:40", "2026-11-21 07:00");
    expect_next("@weekly", "2026-11-21 06:40", "2026-11-22 00:00");
    expect_next("@every 10", "2026-11-21 06:40", "2026-11-21 06:50");
    expect_next("@every 2h", "2026-11-21 06:40", "2026-11-21 08:00");
    struct cron c;
    char err[128];
    assert_int_equal(cron_parse("@every 15s", &c, err, sizeof(err)), 0);
    assert_int_equal(cron_next(&c, at("2026-11-21 06:40") + 1), at("2026-11-21 06:40") + 15);
    assert_int_equal(cron_next(&c, at("2026-11-21 06:40") + 15), at("2026-11-21 06:40") + 30);
    expect_next("0 0 31 2 *", "2026-11-21 06:40", "none"); /* never */
}

static void test_rejections(void **state)
{
    static const char *bad[] = {"", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *",
                                "* * 0 * *", "* * 32 * *", "* * * 13 *", "* * * * 8",
                                "5-1 * * * *", "*/0 * * * *", "a * * * *", "1,,2 * * * *",
                                "@every 0", "@every x", "@every 5d", "@every 9999h", "@sometimes", "99999 * * * *"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cron c;
        char err[128] = "";
        if (cron_parse(bad[i], &c, err, sizeof(err)) == 0)
            fail_msg("accepted '%s'", bad[i]);
        assert_true(err[0] != '\0');
    }
    struct cron c;
    char err[128];
    assert_int_equal(cron_parse("61 * * * *", &c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "minute"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_next),
                                       cmocka_unit_test(test_rejections)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
