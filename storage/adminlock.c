/* Administrator locks (adminlock.h): session-level advisory locks, polled with
 * pg_try_advisory_lock() so that a worker never waits without bound. */
#include "storage/adminlock.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "storage/directory.h"

static int name_check(const char *name, char *err, size_t errlen)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > ADMINLOCK_NAME_MAX) {
        dir_set_err(err, errlen, "invalid lock name");
        return -1;
    }
    return 0;
}

/* Runs one boolean lock function; 1 true, 0 false, -1 error. */
static int lock_call(PGconn *c, const char *sql, const char *name, char *err, size_t errlen)
{
    char cls[16];
    snprintf(cls, sizeof cls, "%d", ADMINLOCK_CLASS);
    const char *p[] = {cls, name};
    PGresult *r = dir_sql(c, sql, 2, p, "administrator lock", NULL, err, errlen);
    if (r == NULL)
        return -1;
    int yes = PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return yes;
}

int adminlock_take(PGconn *c, const char *name, char *err, size_t errlen)
{
    if (name_check(name, err, errlen) != 0)
        return -1;
    /* Waits grow from 2 ms to 100 ms: a holder keeps the lock for one request,
     * usually a few milliseconds. */
    long waited_ms = 0, step_ms = 2;
    for (;;) {
        int rc = lock_call(c, "SELECT pg_try_advisory_lock($1::integer, hashtext($2))", name, err,
                           errlen);
        if (rc != 0)
            return rc == 1 ? 0 : -1;
        if (waited_ms >= ADMINLOCK_WAIT_MS) {
            dir_set_err(err, errlen, "another administrator is changing %.64s; try again", name);
            return -1;
        }
        struct timespec ts = {0, step_ms * 1000000L};
        nanosleep(&ts, NULL);
        waited_ms += step_ms;
        step_ms = step_ms * 2 > 100 ? 100 : step_ms * 2;
    }
}

int adminlock_release(PGconn *c, const char *name, char *err, size_t errlen)
{
    if (name_check(name, err, errlen) != 0)
        return -1;
    int rc =
        lock_call(c, "SELECT pg_advisory_unlock($1::integer, hashtext($2))", name, err, errlen);
    if (rc == 0)
        dir_set_err(err, errlen, "the administrator lock on %.64s was not held", name);
    return rc == 1 ? 0 : -1;
}
