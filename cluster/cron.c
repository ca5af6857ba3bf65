/* Cron schedule parsing and next-run computation (see cron.h). Fields become
 * bit sets; the next run is found by walking forward a day at a time (skipping
 * non-matching months and days) and then minute by minute within the day, so
 * the search is bounded by 5 years of days plus 1440 minutes. */
#include "cluster/cron.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_num(const char **p, unsigned *v)
{
    if (!isdigit((unsigned char)**p))
        return -1;
    unsigned n = 0;
    int digits = 0;
    while (isdigit((unsigned char)**p)) {
        if (++digits > 4)
            return -1;
        n = n * 10 + (unsigned)(**p - '0');
        (*p)++;
    }
    *v = n;
    return 0;
}

/* One field into bits [lo, hi]; *any_r when it is a bare '*'. */
static int parse_field(const char *f, unsigned lo, unsigned hi, uint64_t *bits_r, bool *any_r)
{
    uint64_t bits = 0;
    *any_r = !strcmp(f, "*");
    const char *p = f;
    for (;;) {
        unsigned a, b, step = 1;
        if (*p == '*') {
            a = lo;
            b = hi;
            p++;
        } else {
            if (parse_num(&p, &a) < 0)
                return -1;
            b = a;
            if (*p == '-') {
                p++;
                if (parse_num(&p, &b) < 0)
                    return -1;
            }
        }
        if (*p == '/') {
            p++;
            if (parse_num(&p, &step) < 0 || step == 0)
                return -1;
            if (a == b && f[0] != '*') /* "5/15" means 5-hi/15, as in common crons */
                b = hi;
        }
        if (a < lo || b > hi || a > b)
            return -1;
        for (unsigned v = a; v <= b; v += step)
            bits |= 1ULL << v;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p != '\0')
            return -1;
        break;
    }
    *bits_r = bits;
    return 0;
}

int cron_parse(const char *text, struct cron *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    if (!text || strlen(text) >= CRON_MAX_TEXT) {
        snprintf(err, errlen, "schedule missing or too long");
        return -1;
    }
    static const struct {
        const char *name, *expansion;
    } shorthands[] = {{"@hourly", "0 * * * *"},
                      {"@daily", "0 0 * * *"},
                      {"@midnight", "0 0 * * *"},
                      {"@weekly", "0 0 * * 0"},
                      {"@monthly", "0 0 1 * *"},
                      {"@yearly", "0 0 1 1 *"},
                      {"@annually", "0 0 1 1 *"}};
    for (size_t i = 0; i < sizeof(shorthands) / sizeof(shorthands[0]); i++)
        if (!strcmp(text, shorthands[i].name))
            return cron_parse(shorthands[i].expansion, c, err, errlen);
    if (!strncmp(text, "@every ", 7)) {
        const char *p = text + 7;
        unsigned n, mult = 60;
        if (parse_num(&p, &n) == 0) {
            if (*p == 's')
                mult = 1, p++;
            else if (*p == 'm')
                mult = 60, p++;
            else if (*p == 'h')
                mult = 3600, p++;
        } else {
            n = 0;
        }
        if (*p || n == 0 || (unsigned long long)n * mult > 366ULL * 86400) {
            snprintf(err, errlen, "'@every N': N seconds (Ns), minutes (N or Nm) or hours (Nh), "
                                  "at most a year");
            return -1;
        }
        c->every = n * mult;
        return 0;
    }
    char buf[CRON_MAX_TEXT];
    snprintf(buf, sizeof(buf), "%s", text);
    char *fields[6];
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        if (n == 5) {
            snprintf(err, errlen, "a schedule has 5 fields: minute hour day month weekday");
            return -1;
        }
        fields[n++] = t;
    }
    if (n != 5) {
        snprintf(err, errlen, "a schedule has 5 fields: minute hour day month weekday");
        return -1;
    }
    static const char *const names[] = {"minute", "hour", "day of month", "month", "weekday"};
    static const unsigned lo[] = {0, 0, 1, 1, 0}, hi[] = {59, 23, 31, 12, 7};
    uint64_t bits[5];
    bool any[5];
    for (int i = 0; i < 5; i++)
        if (parse_field(fields[i], lo[i], hi[i], &bits[i], &any[i]) < 0) {
            snprintf(err, errlen, "bad %s field '%s' (%u-%u, *, a-b, lists, /step)", names[i],
                     fields[i], lo[i], hi[i]);
            return -1;
        }
    c->minutes = bits[0];
    c->hours = (uint32_t)bits[1];
    c->mdays = (uint32_t)bits[2];
    c->months = (uint16_t)bits[3];
    uint64_t w = bits[4];
    if (w & (1ULL << 7))
        w = (w | 1) & 0x7f;
    c->wdays = (uint8_t)w;
    c->mday_any = any[2];
    c->wday_any = any[4];
    return 0;
}

static bool day_matches(const struct cron *c, const struct tm *tm)
{
    if (!(c->months & (1u << (tm->tm_mon + 1))))
        return false;
    bool md = (c->mdays >> tm->tm_mday) & 1, wd = (c->wdays >> tm->tm_wday) & 1;
    if (c->mday_any && c->wday_any)
        return true;
    if (c->mday_any)
        return wd;
    if (c->wday_any)
        return md;
    return md || wd; /* both restricted: either (classic cron) */
}

time_t cron_next(const struct cron *c, time_t after)
{
    if (c->every) {
        time_t period = (time_t)c->every;
        return after - (after % period) + period;
    }
    time_t t = after - (after % 60) + 60; /* the next whole minute */
    for (int days = 0; days < 366 * 5 + 2; days++) {
        struct tm tm;
        gmtime_r(&t, &tm);
        if (day_matches(c, &tm)) {
            for (int h = tm.tm_hour; h < 24; h++) {
                if (!((c->hours >> h) & 1))
                    continue;
                int m0 = h == tm.tm_hour ? tm.tm_min : 0;
                for (int m = m0; m < 60; m++)
                    if ((c->minutes >> m) & 1)
                        return t - (time_t)(tm.tm_hour * 3600 + tm.tm_min * 60) +
                               (time_t)(h * 3600 + m * 60);
            }
        }
        /* the start of the next day */
        t = t - (time_t)(tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec) + 86400;
    }
    return -1;
}
