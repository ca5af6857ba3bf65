/* The outbound mail queue (migration 0010): messages waiting for delivery to
 * other hosts, shared by every node of the cluster.
 *
 * A message's bytes are a blob (storage/blob.h) stored before the message is
 * queued. The queue keeps the envelope (sender, DSN parameters, recipients)
 * and each recipient's delivery state. Delivery nodes claim batches — one
 * message and its due recipients of one domain, i.e. one SMTP transaction —
 * under a lease, deliver them, and report the outcome; a node that dies
 * loses its leases after lease_seconds and another node takes the batch.
 * Reports that come from a node whose lease was taken over are refused, so a
 * node that was frozen and wakes up cannot overwrite the newer attempt.
 *
 * Times are the database's clock (now()), the one clock every node shares.
 *
 * Conventions of storage/directory.h: blocking calls on a caller-owned
 * connection, 0 on success, -1 with the reason in err (err may be NULL), and
 * the named codes below where a description says so.
 */
#ifndef FLOE_STORAGE_QUEUE_H
#define FLOE_STORAGE_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <libpq-fe.h>

#include "proto/smtp/smtp.h"
#include "storage/blob.h"

/* No such queued message. */
#define QUEUE_ENOTFOUND (-2)
/* queue_report(): the batch's lease is no longer ours (it ran out and another
 * claim took the recipients, or the message was deleted). Nothing written. */
#define QUEUE_ELEASE (-3)

/* Default lifetime of a queued message: 5 days (RFC 5321 §4.5.4.1 suggests
 * giving up after 4-5 days). */
#define QUEUE_DEFAULT_LIFETIME 432000
#define QUEUE_DEFAULT_MIN_BACKOFF 300
#define QUEUE_DEFAULT_MAX_BACKOFF 14400
#define QUEUE_DEFAULT_DELAY_WARNING 14400

/* Most recipients one queue_enqueue() takes. */
#define QUEUE_RCPTS_MAX 1000
/* Most recipients in one claimed batch: RFC 5321 §4.5.3.1.8 requires servers
 * to take at least 100 recipients per transaction. */
#define QUEUE_BATCH_MAX 100
/* Longest node name kept in a lease. */
#define QUEUE_NODE_MAX 63
/* Most bytes of the original message a notification returns; a larger
 * message is returned as its headers only (cut at this size as well). */
#define QUEUE_NOTICE_ORIGINAL_MAX (1024 * 1024)
/* Most messages one queue_notices_run() handles. */
#define QUEUE_NOTICES_PER_RUN 100

/* Retry and notification policy ([smtp] queue_lifetime, retry_min,
 * retry_max, delay_warning in the node configuration). Seconds. */
struct queue_policy {
    long long lifetime;      /* queue_enqueue() when the message gives none */
    long long min_backoff;   /* wait after the first temporary failure */
    long long max_backoff;   /* the wait doubles per failure up to this */
    long long delay_warning; /* a delay notice after trying this long */
};

/* The defaults above. */
struct queue_policy queue_policy_default(void);

/* ---- enqueueing ---- */

struct queue_message_new {
    const char *blob_id;     /* the stored message */
    unsigned long long size; /* its size in bytes */
    const char *sender;      /* reverse-path local@domain; "" (or NULL) for <> */
    const char *envid;       /* ENVID, NULL or "" none */
    enum smtp_ret ret;
    enum smtp_body body; /* SMTP_BODY_NONE is stored as 7bit */
    bool smtputf8;
    bool is_notice;          /* a notification we made: never gets one itself */
    long long lifetime;      /* seconds until it expires; 0 = QUEUE_DEFAULT_LIFETIME */
    const char *origin_node; /* the node that accepted it (NULL: "") */
    long long auth_account;  /* the authenticated submitter's account id, 0 none */
};

struct queue_rcpt_new {
    const char *address; /* local@domain */
    const char *orcpt;   /* ORCPT as given ("rfc822;x@y"), NULL or "" none */
    unsigned notify;     /* SMTP_NOTIFY_* bits, 0 = not given */
};

/* Queues a message for n (1..QUEUE_RCPTS_MAX) recipients, all due at once.
 * Runs as a unit of work (db_op_begin(), storage/db.h): inside the caller's
 * open transaction when there is one, so an SMTP session can queue in the
 * same transaction as its local deliveries. Returns 0 with the message id in
 * *id_r (may be NULL), or -1 (invalid input or a database error; nothing
 * written). */
int queue_enqueue(PGconn *c, const struct queue_message_new *m, const struct queue_rcpt_new *r,
                  size_t n, long long *id_r, char *err, size_t errlen);

/* ---- delivering ---- */

struct queue_rcpt {
    long long id;
    char address[SMTP_ADDRESS_MAX + 1];
    char orcpt[SMTP_ORCPT_MAX + 1]; /* "" none */
    unsigned notify;
    int attempts; /* attempts before this one */
};

/* One claimed batch: one message and its due recipients of one domain. */
struct queue_batch {
    long long message_id;
    char blob_id[BLOB_ID_LEN + 1];
    unsigned long long size;
    char sender[SMTP_ADDRESS_MAX + 1]; /* "" = <> */
    char envid[SMTP_ENVID_MAX + 1];
    enum smtp_ret ret;
    enum smtp_body body;
    bool smtputf8;
    bool is_notice;
    long long received_unix, expires_unix;
    char domain[SMTP_ADDRESS_MAX + 1]; /* the recipients' domain, lower case */
    char node[QUEUE_NODE_MAX + 1];     /* the lease holder */
    long long lease_token;
    long long lease_until_unix;
    struct queue_rcpt *rcpts; /* n entries, ordered by id */
    size_t n;
};

/* Claims the oldest due batch for node_name (1..QUEUE_NODE_MAX characters)
 * for lease_seconds (1..86400), in a transaction of its own (c must not be
 * inside one). Rows other claimers hold locked are skipped (FOR UPDATE SKIP
 * LOCKED), so concurrent claimers never get the same recipient; recipients
 * whose lease ran out are due again. Returns 1 with *b_r filled (free it
 * with queue_batch_free()), 0 when nothing is due (*b_r zeroed), -1. */
int queue_claim(PGconn *c, const char *node_name, int lease_seconds, struct queue_batch *b_r,
                char *err, size_t errlen);

/* Frees what queue_claim() allocated in *b and zeroes it (NULL accepted). */
void queue_batch_free(struct queue_batch *b);

enum queue_result { QUEUE_DELIVERED, QUEUE_TEMPFAIL, QUEUE_PERMFAIL };

/* The outcome for one recipient of a batch. */
struct queue_outcome {
    enum queue_result result;
    const char *status;      /* RFC 3463 "x.y.z"; NULL: 2.0.0, 4.0.0 or 5.0.0 by result */
    const char *reply;       /* the remote reply ("550 5.1.1 no such user"), NULL none */
    const char *remote_host; /* the host that answered, NULL none */
};

/* Records the outcomes o[0..b->n-1] (in the order of b->rcpts) in one
 * transaction, only when every recipient of the batch is still under the
 * lease b carries (QUEUE_ELEASE otherwise; nothing written). A lease that ran
 * out but was not taken over is still honoured: the attempt happened.
 *   DELIVERED: final; a success notice when NOTIFY has SUCCESS.
 *   PERMFAIL: final; a failure notice unless NOTIFY was given without
 *     FAILURE.
 *   TEMPFAIL: retried after min_backoff, doubling per attempt up to
 *     max_backoff (never past the expiry); once the message has expired it
 *     fails instead, with status 5.4.7 (RFC 3463 "delivery time expired").
 *     A delay notice, once, when the first attempt is older than
 *     delay_warning and NOTIFY allows DELAY (it does when not given).
 * Messages from the null sender and notifications never get a notice
 * (RFC 3461 §6.2, RFC 5321 §4.5.5). A message whose recipients are all
 * final and owe no notice is deleted. policy NULL: the defaults.
 * Returns 0, QUEUE_ELEASE or -1. */
int queue_report(PGconn *c, const struct queue_batch *b, const struct queue_outcome *o,
                 const struct queue_policy *policy, char *err, size_t errlen);

/* ---- notifications ---- */

/* Sends the owed delivery status notifications (RFC 3464) of up to
 * QUEUE_NOTICES_PER_RUN messages: for each message, one notification for
 * all its recipients that owe one, from MAILER-DAEMON@reporting_mta, with
 * the original message (RET=FULL, or RET not given and a failure; at most
 * QUEUE_NOTICE_ORIGINAL_MAX bytes) or its headers, stored as a blob in bs and
 * queued to the original sender from the null sender as a notification
 * (lifetime from policy). now is the notification's Date.
 *
 * The pg blob store commits its own transactions, so the notification is
 * built and stored first (c must not be inside a transaction); then one
 * transaction locks the message, checks that the recipients still owe what
 * the notification says (else it is dropped and rebuilt by the next run:
 * its blob is left to the collector), queues it, clears those notices and
 * deletes the message if it is finished. Two nodes running this at once
 * therefore never queue the same notice twice.
 * Returns 0 with the number of notifications queued in *made_r (may be NULL),
 * or -1 (notifications queued before the error stay queued). */
int queue_notices_run(PGconn *c, struct blob_store *bs, const char *reporting_mta, time_t now,
                      const struct queue_policy *policy, int *made_r, char *err, size_t errlen);

/* ---- administration (floectl queue) ---- */

/* A queued message as queue_list() and queue_show() present it. Strings
 * point into the query result: valid during the callback only. */
struct queue_info {
    long long id;
    const char *blob_id;
    unsigned long long size;
    const char *sender; /* "" = <> */
    const char *envid;
    const char *ret;  /* "", "full", "hdrs" */
    const char *body; /* "7bit", "8bitmime", "binarymime" */
    bool smtputf8, is_notice;
    long long received_unix, expires_unix;
    long long age; /* seconds since received */
    const char *origin_node;
    long long auth_account; /* 0 none */
    int nqueued, ndelivered, nfailed;
};

/* A recipient as queue_show() presents it (strings valid during the callback
 * only; times 0 when not set). */
struct queue_rcpt_info {
    long long id;
    const char *address, *domain, *orcpt;
    unsigned notify;
    const char *state; /* "queued", "delivered", "failed" */
    int attempts;
    long long next_attempt_unix, first_attempt_unix, last_attempt_unix;
    const char *last_status, *last_reply, *remote_host;
    const char *lease_node; /* "" none */
    long long lease_until_unix;
    const char *notice; /* "none", "failure", "delay", "success" */
    bool delay_notified;
};

/* Return 0 to go on, non-zero to stop. Must not use the connection. */
typedef int (*queue_info_cb)(const struct queue_info *m, void *ctx);
typedef int (*queue_rcpt_info_cb)(const struct queue_rcpt_info *r, void *ctx);

/* Calls cb for every queued message, oldest first (rows streamed).
 * Returns 0 (also when cb stopped early) or -1. */
int queue_list(PGconn *c, queue_info_cb cb, void *ctx, char *err, size_t errlen);

/* Calls mcb once for message id, then rcb for each of its recipients in id
 * order (either may be NULL). Returns 0, QUEUE_ENOTFOUND or -1. */
int queue_show(PGconn *c, long long id, queue_info_cb mcb, queue_rcpt_info_cb rcb, void *ctx,
               char *err, size_t errlen);

/* Makes the queued recipients of message id (0: of every message) due now,
 * except those under a live lease (being delivered right now) and those
 * whose outcome is being recorded at this moment. Stores the
 * number of recipients made due in *count_r (may be NULL). Returns 0,
 * QUEUE_ENOTFOUND (id > 0 and no such message) or -1. */
int queue_retry(PGconn *c, long long id, long long *count_r, char *err, size_t errlen);

/* Removes message id and its recipients without any notification. A node
 * delivering it right now has its report refused. Returns 0,
 * QUEUE_ENOTFOUND or -1. */
int queue_delete(PGconn *c, long long id, char *err, size_t errlen);

#endif
