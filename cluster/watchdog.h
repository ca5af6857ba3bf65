/* Remote watchdog: the cluster master probes remote services and raises an
 * alert when one goes down, comes back, or its content changes.
 *
 * A watchdog (table watchdogs) names a target:
 *   tcp://HOST:PORT   — up when a TCP connection opens; with a send string the
 *                       string is written first (C escapes \r \n \t \\ \xHH),
 *                       with an expect regex (POSIX extended) the first
 *                       WATCHDOG_ANSWER_MAX bytes answered within the timeout
 *                       must match;
 *   http(s)://URL     — up on a 2xx answer; the body's SHA-256, size and the
 *                       time it was first seen are kept, and a different body
 *                       raises "changed"; an expect regex applies to the
 *                       first WATCHDOG_ANSWER_MAX bytes of the body;
 *   dns://NAME:TYPE   — TYPE one of a, aaaa, mx, txt, ptr, cname, srv, naptr;
 *                       up when the query has at least one answer; the sorted
 *                       answers are kept and a different set raises "changed".
 * State (unknown / up / down, since when, whether the "down" alert of the
 * current outage went out) lives in the row, so after a failover the next
 * master goes on from it and does not repeat an alert.
 *
 * Probes run on the scheduler thread of the master only; each check's state
 * change and its alerts commit in one transaction under the epoch fence
 * (cluster_epoch_is_current). Alerts are rows in watchdog_alerts with
 * delivered = false: mailing them is the SMTP queue's job, which does not
 * exist yet. */
#ifndef FLOE_CLUSTER_WATCHDOG_H
#define FLOE_CLUSTER_WATCHDOG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define WATCHDOG_HOST_MAX 255          /* bytes of a host or DNS name */
#define WATCHDOG_URL_MAX 2048          /* bytes of a target */
#define WATCHDOG_SEND_MAX 1024         /* bytes of a decoded send string */
#define WATCHDOG_EXPECT_MAX 512        /* bytes of an expect regex */
#define WATCHDOG_ANSWER_MAX 4096       /* bytes of an answer the expect regex sees */
#define WATCHDOG_ANSWERS_MAX 64        /* DNS answers kept per check */
#define WATCHDOG_BODY_MAX (64LL << 20) /* an HTTP body longer than this is "down" */
#define WATCHDOG_INTERVAL_MAX 86400
#define WATCHDOG_DOWN_AFTER_MAX 10080 /* minutes: one week */
#define WATCHDOG_TIMEOUT_MAX 10       /* seconds a probe may take at most */
#define WATCHDOG_BATCH_MAX 16         /* checks per scheduler tick */

enum watchdog_kind { WATCHDOG_TCP, WATCHDOG_HTTP, WATCHDOG_DNS };

struct watchdog_target {
    enum watchdog_kind kind;
    char host[WATCHDOG_HOST_MAX + 1]; /* tcp: host (IPv6 without brackets); dns: name */
    int port;                         /* tcp */
    int dns_type;                     /* dns: ns_t_a, ns_t_mx, ... (<arpa/nameser.h>) */
    char url[WATCHDOG_URL_MAX + 1];   /* http(s): the whole URL */
};

/* Parses a target text (see the top of this file) into *t_r.
 * 0 ok; -1 with the reason in err. */
int watchdog_target_parse(const char *text, struct watchdog_target *t_r, char *err, size_t errlen);

/* Decodes the C escapes \r \n \t \0 \\ \' \" and \xHH of in into out (at most
 * outlen bytes, not NUL-terminated: the result may hold NUL bytes) and stores
 * its length in *len_r. 0 ok; -1 on an unknown or truncated escape or when the
 * result does not fit, with the reason in err. */
int watchdog_unescape(const char *in, char *out, size_t outlen, size_t *len_r, char *err,
                      size_t errlen);

/* Checks that re compiles as a POSIX extended regex of at most
 * WATCHDOG_EXPECT_MAX bytes. 0 ok; -1 with the reason in err. */
int watchdog_regex_check(const char *re, char *err, size_t errlen);

/* SHA-256 of len bytes at data as 64 lowercase hex digits and a NUL. */
void watchdog_sha256_hex(const void *data, size_t len, char hex_r[65]);

/* Sorts answers in place (so their order in a DNS reply does not count as a
 * change), then writes their hash (SHA-256 of the answers joined by '\n') to
 * hex_r. n may be 0. */
void watchdog_answers_hash(char **answers, size_t n, char hex_r[65]);

/* ---- the state machine (pure: the caller supplies the clock) ---- */

enum watchdog_status { WATCHDOG_UNKNOWN, WATCHDOG_UP, WATCHDOG_DOWN };

/* Alert bits watchdog_step() returns. */
enum {
    WATCHDOG_ALERT_DOWN = 1,        /* down continuously for down_after */
    WATCHDOG_ALERT_BACK_ONLINE = 2, /* up again after an alerted outage */
    WATCHDOG_ALERT_CHANGED = 4,     /* content or DNS answers differ from the last ones */
};

struct watchdog_state {
    enum watchdog_status status;
    time_t since;      /* when status last changed; 0 for unknown */
    bool down_alerted; /* the "down" alert of the current outage went out */
    char hash[65];     /* content hash of the last successful check; "" none */
};

/* Applies one check's outcome (up, and for content checks the content's hash,
 * else NULL) at time now to *st, given down_after_s seconds of continuous
 * failure before "down" is raised (0: at the first failure) and whether the
 * return is reported. Returns the alert bits to raise. A down alert is raised
 * once per outage; back online only follows an outage whose down alert went
 * out; "changed" needs a previous hash to compare with. */
int watchdog_step(struct watchdog_state *st, bool up, const char *hash, time_t now,
                  long long down_after_s, bool notify_back);

/* Text of a status: "unknown", "up", "down"; and back (-1 unknown text). */
const char *watchdog_status_name(enum watchdog_status s);
int watchdog_status_parse(const char *name);

/* ---- probes ---- */

struct watchdog_probe {
    bool up;
    char error[256];  /* why it is down; "" when up */
    bool has_content; /* http / dns: hash, size and answers are set */
    char hash[65];
    long long size;                    /* http: body bytes; dns: answers */
    char answers[WATCHDOG_ANSWER_MAX]; /* dns: sorted answers, one a line */
};

/* Probes t once within timeout_s seconds. send (len bytes; may be NULL) and
 * expect (a regex, may be NULL or "") as described at the top of this file.
 * Fills *res_r; returns 0 when the probe ran (up or down), -1 when it could
 * not (the expect regex does not compile, out of memory), with the reason
 * in res_r->error. */
int watchdog_probe(const struct watchdog_target *t, const char *send, size_t send_len,
                   const char *expect, int timeout_s, struct watchdog_probe *res_r);

/* ---- the master's loop ---- */

struct blob_store;

/* Mails the alerts not mailed yet of watchdogs that have an alert address
 * (at most WATCHDOG_BATCH_MAX per call): each becomes a short message from
 * the null sender, "watchdog@hostname" in From:, queued for delivery through
 * the outbound queue (storage/queue.h), and is marked delivered in the same
 * transaction. c must not be inside a transaction. Returns the number queued,
 * or -1 with a message. */
int watchdog_mail_alerts(PGconn *c, struct blob_store *bs, const char *hostname,
                         const char *node_id, char *err, size_t errlen);

/* Runs the checks that are due (at most WATCHDOG_BATCH_MAX), when epoch > 0
 * (this node is master under epoch); does nothing otherwise. Each check's
 * outcome commits under the epoch fence: a node that lost the mastership
 * meanwhile records nothing. Transitions are also reported through log
 * (warning = true for alerts), which may be NULL. Returns the number of checks
 * recorded, or -1 on a database error. */
int watchdog_run_due(PGconn *c, const char *node_id, long long epoch,
                     void (*log)(bool warning, const char *msg, void *arg), void *log_arg);

/* ---- administration (floectl) ---- */

struct watchdog_spec {
    const char *name; /* 1-64 of [A-Za-z0-9._-] */
    const char *target;
    int interval_s;            /* 0: the default, 60 */
    int down_after_min;        /* 0: at the first failure */
    const char *send;          /* tcp only; NULL or "" none */
    const char *expect;        /* NULL or "" none */
    const char *alert_address; /* NULL or "" none */
    bool notify_back;
};

/* Adds a watchdog after validating it. 0 ok; -3 the name exists; -1 invalid
 * (bad target, escape, regex, interval) or a database error; message in err. */
int watchdog_add(PGconn *c, const struct watchdog_spec *spec, char *err, size_t errlen);

/* Removes a watchdog and its alerts. 0 ok; -2 no such watchdog; -1 error. */
int watchdog_remove(PGconn *c, const char *name, char *err, size_t errlen);

#endif
