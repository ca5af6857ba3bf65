/* Intrusion prevention in PostgreSQL (see ips.h): the blocks table and the
 * fallback failure counters of migration 0013.
 *
 * Each operation is one statement. Adding a block is an upsert that keeps the
 * later end, so two nodes blocking the same address at once, or an operator's
 * long block meeting an automatic short one, never shorten a block. Counting a
 * failure is an upsert too: the row's window either still runs (count + 1) or
 * has passed (a new window at 1), decided inside the statement so concurrent
 * failures from several nodes are serialised by the row lock and none is lost.
 *
 * Ends are given in whole seconds rounded up, so that a node comparing them
 * with its own clock never lifts a block before the database would.
 *
 * statement_timestamp() rather than now(): inside a caller's transaction now()
 * is the transaction's start; and rather than clock_timestamp(), so that every
 * expression of one statement sees the same instant. */
#include "storage/ips.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/db.h"
#include "storage/directory.h"

int ips_address_normalize(const char *in, char *out, size_t outlen)
{
    if (!in || !out || outlen < IPS_ADDRESS_MAX || strlen(in) >= IPS_ADDRESS_MAX)
        return -1;
    unsigned char a[16];
    if (inet_pton(AF_INET, in, a) == 1)
        return inet_ntop(AF_INET, a, out, (socklen_t)outlen) ? 0 : -1;
    if (inet_pton(AF_INET6, in, a) != 1)
        return -1;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (!memcmp(a, mapped, sizeof(mapped)))
        return inet_ntop(AF_INET, a + 12, out, (socklen_t)outlen) ? 0 : -1;
    return inet_ntop(AF_INET6, a, out, (socklen_t)outlen) ? 0 : -1;
}

bool ips_service_valid(const char *service)
{
    if (!service)
        return false;
    if (!strcmp(service, "*"))
        return true;
    size_t n = strlen(service);
    if (n < 1 || n > IPS_SERVICE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = service[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static int check_address(const char *address, char out[IPS_ADDRESS_MAX], char *err, size_t errlen)
{
    if (ips_address_normalize(address, out, IPS_ADDRESS_MAX) < 0) {
        dir_set_err(err, errlen, "'%.64s' is not an IPv4 or IPv6 host address", address ? address : "");
        return -1;
    }
    return 0;
}

int ips_block_add(PGconn *c, const char *address, const char *service, const char *reason,
                  const char *node, unsigned seconds, long long *until_r, char *err, size_t errlen)
{
    char addr[IPS_ADDRESS_MAX];
    if (check_address(address, addr, err, errlen) < 0)
        return -1;
    if (!ips_service_valid(service)) {
        dir_set_err(err, errlen, "invalid service name '%.40s'", service ? service : "");
        return -1;
    }
    if (!reason)
        reason = "";
    if (!node)
        node = "";
    if (strlen(reason) > IPS_REASON_MAX || strlen(node) > IPS_NODE_MAX) {
        dir_set_err(err, errlen, "block reason or node name too long");
        return -1;
    }
    if (seconds < 1 || seconds > IPS_BLOCK_SECONDS_MAX) {
        dir_set_err(err, errlen, "block of %u s outside 1..%u", seconds, IPS_BLOCK_SECONDS_MAX);
        return -1;
    }
    char secs[16];
    snprintf(secs, sizeof(secs), "%u", seconds);
    const char *p[] = {addr, service, reason, node, secs};
    PGresult *r = PQexecParams(
        c,
        "INSERT INTO ips_blocks AS b (address, service, reason, node, blocked_at, until)"
        " VALUES ($1::inet, $2, $3, $4, statement_timestamp(),"
        "         statement_timestamp() + make_interval(secs => $5::int))"
        " ON CONFLICT (address, service) DO UPDATE SET reason = EXCLUDED.reason,"
        "  node = EXCLUDED.node, blocked_at = EXCLUDED.blocked_at,"
        "  until = GREATEST(b.until, EXCLUDED.until)"
        " RETURNING ceil(extract(epoch FROM until))::bigint",
        5, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        db_set_error(err, errlen, c, r, "cannot block the address");
        PQclear(r);
        return -1;
    }
    if (until_r)
        *until_r = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return 0;
}

int ips_block_remove(PGconn *c, const char *address, const char *service, char *err, size_t errlen)
{
    char addr[IPS_ADDRESS_MAX];
    if (check_address(address, addr, err, errlen) < 0)
        return -1;
    if (service && !ips_service_valid(service)) {
        dir_set_err(err, errlen, "invalid service name '%.40s'", service);
        return -1;
    }
    const char *p[] = {addr, service};
    PGresult *r = PQexecParams(c,
                               service ? "DELETE FROM ips_blocks WHERE address = $1::inet"
                                         " AND service = $2"
                                       : "DELETE FROM ips_blocks WHERE address = $1::inet",
                               service ? 2 : 1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        db_set_error(err, errlen, c, r, "cannot unblock the address");
        PQclear(r);
        return -1;
    }
    int n = atoi(PQcmdTuples(r));
    PQclear(r);
    return n;
}

int ips_block_list(PGconn *c, bool include_expired, size_t max, ips_block_fn fn, void *arg,
                   char *err, size_t errlen)
{
    if (max > 10000000)
        max = 10000000;
    char lim[24];
    snprintf(lim, sizeof(lim), "%zu", max);
    const char *p[] = {lim, include_expired ? "t" : "f"};
    PGresult *r = PQexecParams(c,
                               "SELECT host(address), service, reason, node,"
                               " floor(extract(epoch FROM blocked_at))::bigint,"
                               " ceil(extract(epoch FROM until))::bigint,"
                               " until <= statement_timestamp()"
                               " FROM ips_blocks"
                               " WHERE $2::boolean OR until > statement_timestamp()"
                               " ORDER BY address, service LIMIT $1::bigint",
                               2, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        db_set_error(err, errlen, c, r, "cannot list the blocked addresses");
        PQclear(r);
        return -1;
    }
    int n = PQntuples(r), rc = 0, listed = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        struct ips_block b;
        memset(&b, 0, sizeof(b));
        if (ips_address_normalize(PQgetvalue(r, i, 0), b.address, sizeof(b.address)) < 0)
            continue; /* the CHECK constraint makes this impossible; skip rather than trust */
        snprintf(b.service, sizeof(b.service), "%s", PQgetvalue(r, i, 1));
        snprintf(b.reason, sizeof(b.reason), "%s", PQgetvalue(r, i, 2));
        snprintf(b.node, sizeof(b.node), "%s", PQgetvalue(r, i, 3));
        b.blocked_unix = strtoll(PQgetvalue(r, i, 4), NULL, 10);
        b.until_unix = strtoll(PQgetvalue(r, i, 5), NULL, 10);
        b.expired = PQgetvalue(r, i, 6)[0] == 't';
        rc = fn(&b, arg);
        listed++;
    }
    PQclear(r);
    return rc ? rc : listed;
}

int ips_purge(PGconn *c, unsigned window_s, char *err, size_t errlen)
{
    if (window_s < 1 || window_s > IPS_WINDOW_SECONDS_MAX) {
        dir_set_err(err, errlen, "window of %u s outside 1..%u", window_s, IPS_WINDOW_SECONDS_MAX);
        return -1;
    }
    char win[16];
    snprintf(win, sizeof(win), "%u", window_s);
    const char *p[] = {win};
    /* A data-modifying WITH runs exactly once whether or not the main query
     * reads it: one round trip for both tables. */
    PGresult *r = PQexecParams(c,
                               "WITH f AS (DELETE FROM ips_failures WHERE window_start <="
                               "  statement_timestamp() - make_interval(secs => $1::int))"
                               " DELETE FROM ips_blocks WHERE until <= statement_timestamp()",
                               1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        db_set_error(err, errlen, c, r, "cannot purge expired blocks");
        PQclear(r);
        return -1;
    }
    int n = atoi(PQcmdTuples(r));
    PQclear(r);
    return n;
}

int ips_failure_add(PGconn *c, const char *address, unsigned window_s, unsigned *count_r, char *err,
                    size_t errlen)
{
    char addr[IPS_ADDRESS_MAX];
    if (check_address(address, addr, err, errlen) < 0)
        return -1;
    if (window_s < 1 || window_s > IPS_WINDOW_SECONDS_MAX) {
        dir_set_err(err, errlen, "window of %u s outside 1..%u", window_s, IPS_WINDOW_SECONDS_MAX);
        return -1;
    }
    char win[16];
    snprintf(win, sizeof(win), "%u", window_s);
    const char *p[] = {addr, win};
    /* Both SET expressions read the row as it was before the update. */
    PGresult *r = PQexecParams(
        c,
        "INSERT INTO ips_failures AS f (address, window_start, failures)"
        " VALUES ($1::inet, statement_timestamp(), 1)"
        " ON CONFLICT (address) DO UPDATE SET"
        "  failures = CASE WHEN f.window_start >"
        "                       statement_timestamp() - make_interval(secs => $2::int)"
        "             THEN LEAST(f.failures, 2147483646) + 1 ELSE 1 END,"
        "  window_start = CASE WHEN f.window_start >"
        "                           statement_timestamp() - make_interval(secs => $2::int)"
        "                 THEN f.window_start ELSE statement_timestamp() END"
        " RETURNING failures",
        2, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        db_set_error(err, errlen, c, r, "cannot count the failed login");
        PQclear(r);
        return -1;
    }
    if (count_r)
        *count_r = (unsigned)strtoul(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return 0;
}

int ips_failure_reset(PGconn *c, const char *address, char *err, size_t errlen)
{
    char addr[IPS_ADDRESS_MAX];
    if (check_address(address, addr, err, errlen) < 0)
        return -1;
    const char *p[] = {addr};
    PGresult *r = PQexecParams(c, "DELETE FROM ips_failures WHERE address = $1::inet", 1, NULL, p,
                               NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        db_set_error(err, errlen, c, r, "cannot reset the failure counter");
        PQclear(r);
        return -1;
    }
    int n = atoi(PQcmdTuples(r)) > 0;
    PQclear(r);
    return n;
}
