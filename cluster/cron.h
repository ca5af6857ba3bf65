/* Cron-like schedules for scheduled tasks ("Tasks & Events"): the five classic
 * fields, minute hour day-of-month month day-of-week, each a '*', a number, a
 * range a-b, a list a,b,c, or a step (a star or a range followed by a slash and
 * n: every n-th value); plus the shorthands
 * @hourly, @daily, @weekly, @monthly, @yearly and "@every N" with N in
 * seconds, minutes or hours ("@every 30s", "@every 5m", "@every 2h"; a bare
 * number is minutes).
 * Times are UTC. Day-of-month and day-of-week follow cron: when both are
 * restricted, a day matching either is a match. */
#ifndef FLOE_CLUSTER_CRON_H
#define FLOE_CLUSTER_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define CRON_MAX_TEXT 256

struct cron {
    uint64_t minutes;  /* bit m: minute m (0-59) */
    uint32_t hours;    /* bit h (0-23) */
    uint32_t mdays;    /* bit d (1-31) */
    uint16_t months;   /* bit m (1-12) */
    uint8_t wdays;     /* bit w (0-6, 0 = Sunday; 7 is accepted as Sunday) */
    bool mday_any, wday_any;
    unsigned every;    /* "@every N": seconds; 0 otherwise */
};

/* Parses text. 0 ok; -1 with a one-line reason naming the bad field in err. */
int cron_parse(const char *text, struct cron *c_r, char *err, size_t errlen);

/* The first whole minute strictly after `after` at which c fires (UTC), or -1
 * when none exists within the next 5 years (e.g. "0 0 31 2 *"). For "@every N",
 * the first multiple of N seconds since the epoch strictly after `after`. */
time_t cron_next(const struct cron *c, time_t after);

#endif
