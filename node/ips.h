/* Intrusion prevention for the whole cluster (seed 003 "Login policy",
 * "Intrusion prevention"): failed logins are counted per client address; an
 * address with [ips] failures of them within [ips] window seconds is blocked
 * for [ips] block seconds, and every node refuses the addresses blocked by any
 * node ("server A had 50, server B 40 other records: it shows 90 on both").
 *
 * Where things live:
 *   - the counter: Redis (INCR + EXPIRE on floe:ips:fail:<address>) when
 *     [redis] url is set and Redis answers, PostgreSQL (ips_failures) when
 *     not (storage/ips.h);
 *   - the blocks: PostgreSQL (ips_blocks), the durable cluster-wide list;
 *   - the answer to "is this address blocked?": an in-memory table on every
 *     node, filled from PostgreSQL at start and every [ips] refresh seconds,
 *     and changed at once by IpsEvent messages on the cluster bus (channel
 *     floe:ips) that the blocking node (or floectl) publishes.
 *
 * Threads. The counting and blocking run on one thread of this module with
 * its own PostgreSQL connection and its own blocking Redis connection: the
 * report functions only check the configuration and put the report in a
 * bounded queue (a mutex held for a copy), so they are cheap and never block
 * on the network, and may be called from an I/O thread (SMTP reports from
 * the session's done() callback) as well as from a worker. A full queue
 * drops the report (counted) rather than wait. ips_blocked() reads the
 * in-memory table under a read lock: safe and cheap on an I/O thread.
 *
 * Exempt: addresses in [ips] exempt or [limits] trusted are never counted
 * and never refused. [ips] enabled = no turns off both counting and refusal
 * (the table is still kept up to date, so turning it back on by a reload
 * works at once).
 *
 * ---- How a service reports logins (POP3, IMAP, and any later one) ----
 *
 * Report every completed authentication attempt once, with the connection's
 * real client address (conn_peer_addr(c): after the PROXY header, so the
 * load balancer is never blocked) and the service name (conn_service(c)):
 *
 *   credentials checked and wrong (unknown user, wrong password, failed SCRAM
 *   proof, disabled account, service not allowed by policy):
 *       ips_login_failed(conn_service(c), conn_peer_addr(c));
 *   credentials good, session authenticated:
 *       ips_login_ok(conn_service(c), conn_peer_addr(c));
 *
 * Call it where the outcome is known: on the I/O thread in the job's done()
 * (preferred, as SMTP does in auth_finish()) or in the worker's work(); both
 * are fine. Do not report a temporary failure (database down, "try again
 * later", maildrop in use) or an exchange cancelled before any credentials
 * were checked: those are not guesses at a password (counting a malformed
 * SASL exchange as a failure is harmless).
 *   POP3 (node/pop3/pop3.c): ips_login_failed() in auth_failed(), which every
 *   "[AUTH]" failure passes through (L_FAIL, L_DENIED, SASL_FAIL,
 *   SASL_MALFORMED); ips_login_ok() in login_done() under case L_OK.
 *   Nothing for L_TEMP, L_IN_USE, L_PERM.
 *   IMAP: ips_login_failed() wherever LOGIN or AUTHENTICATE is answered
 *   "NO [AUTHENTICATIONFAILED]" (RFC 5530; also a policy refusal of a good
 *   password), ips_login_ok() where it is answered OK; nothing for
 *   "NO [UNAVAILABLE]", "BAD" syntax errors or a client's "*" cancel.
 *
 * The service does NOT need to check ips_blocked(): node/conn.c refuses a
 * blocked address before the service sees the connection. Sessions opened
 * before the block are not cut; failures they report while the block lasts
 * are not counted again. */
#ifndef FLOE_NODE_IPS_H
#define FLOE_NODE_IPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct config;

/* Blocks held in memory per node; beyond this, further blocks are not held
 * (and logged): the table cannot be grown without bound by a flood. */
#define IPS_TABLE_MAX 200000
/* Reports waiting for the ips thread; more are dropped. */
#define IPS_QUEUE_MAX 4096

/* Starts the module for cfg (its [database] url, [redis] url, [node] id and
 * [ips] refresh; the other [ips] keys are read at each report, so a reload
 * changes them): reads the blocks in force (a database that cannot be
 * reached is logged and retried, not an error), subscribes to the bus channel
 * floe:ips (call before bus_start()) and starts the ips thread. Without a
 * database the module stays off: nothing is counted or refused.
 * 0 ok, -1 with a message (the thread cannot start). */
int ips_start(const struct config *cfg, char *err, size_t errlen);
/* Stops the thread (reports still queued are dropped) and frees the table.
 * Call after bus_stop() and after the I/O threads have ended. */
void ips_stop(void);

/* A failed / successful login of addr (AF_INET or AF_INET6 sockaddr, the
 * real client address) on service ("smtp", "submission", "pop3", "imap",
 * "web", ...), under the configuration of the running node (runtime_get()).
 * Any thread; never blocks on I/O. A success resets the address's counter. */
void ips_login_failed(const char *service, const struct sockaddr *addr);
void ips_login_ok(const char *service, const struct sockaddr *addr);
/* The same with an explicit configuration (for code that holds its
 * snapshot, and for tests). ok: the login succeeded. */
void ips_login_report(const struct config *cfg, const char *service, const struct sockaddr *addr,
                      bool ok);

/* True when addr is blocked for service (a block for "*" or for service)
 * and not exempt under cfg, and [ips] is enabled. Any thread; cheap (a read
 * lock and a hash look-up). false before ips_start() and after ips_stop(). */
bool ips_blocked(const struct config *cfg, const char *service, const struct sockaddr *addr);

/* Tells every running node at once that address is blocked for service until
 * until_unix (seconds since the epoch), or released (until_unix 0; service
 * NULL or "" then releases every block of the address): one PUBLISH on the
 * bus channel floe:ips over a short-lived Redis connection, as origin. For
 * floectl, after it has changed ips_blocks; nodes that miss it read the table
 * at their next refresh. 0 published, -1 with a message (no Redis, bad URL). */
int ips_announce(const char *redis_url, const char *origin, const char *address,
                 const char *service, long long until_unix, const char *reason, char *err,
                 size_t errlen);

struct ips_stats {
    uint64_t reported;  /* failed logins counted */
    uint64_t blocked;   /* blocks made by this node */
    uint64_t dropped;   /* reports dropped: queue full, or not counted (store down) */
    uint64_t events;    /* block/release messages applied from the bus */
    uint64_t refreshes; /* complete reads of the block list */
    size_t table;       /* blocks in the in-memory table (expired ones included) */
    bool redis;         /* the counter is in Redis right now */
};
void ips_get_stats(struct ips_stats *st_r);

#endif
