/* Daytime (RFC 867): on connect, send the current date and time as one line of
 * text and close. Any input is ignored. Off by default ([service daytime]). */
#include <stdio.h>
#include <time.h>

#include "node/conn.h"
#include "node/metrics.h"
#include "node/services.h"

static void daytime_open(struct conn *c)
{
    /* RFC 867 leaves the format open; this is the common "weekday, month day, year
     * time-zone" form, in UTC so every node of a cluster says the same. */
    char line[96];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(line, sizeof(line), "%A, %B %d, %Y %H:%M:%S-UTC\r\n", &tm);
    conn_write(c, line, n);
    metrics_command(conn_metrics(c), 0, false);
    conn_close(c);
}

static void daytime_data(struct conn *c, const char *data, size_t len)
{
}

const struct service_ops daytime_ops = {
    .session_size = 0,
    .on_open = daytime_open,
    .on_data = daytime_data,
};
