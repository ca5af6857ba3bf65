/* The outbound mail queue (see queue.h and migration 0010): enqueueing,
 * claiming batches under a lease, recording delivery outcomes, and the
 * administrator's list/show/retry/delete. Notifications are in
 * queue_notice.c.
 *
 * Claiming. The claim picks the oldest due recipient with FOR UPDATE SKIP
 * LOCKED, then takes the other due recipients of the same message and domain
 * the same way, so two nodes claiming at once never lock the same row: at
 * worst one destination's recipients are split over two batches. The claimed
 * rows get a new lease token from a sequence, the node's name, and a
 * next_attempt_at at the end of the lease: if the node dies the rows become
 * due again by the same index the claim reads (queue_recipients_due).
 *
 * Reporting. The report locks the message row first, which serialises the
 * reports of one message (two domains delivered by two nodes), so the last
 * one sees every other recipient's final state and deletes the finished
 * message. It then accepts the outcomes only when every recipient still
 * carries the batch's lease token: a node whose lease was taken over is
 * fenced out and writes nothing.
 *
 * Times come from the database (now()), the clock all nodes share.
 */
#include "storage/queue.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/db.h"
#include "storage/directory.h"

/* Longest remote reply or host name kept. */
#define TEXT_MAX 1000
/* Longest lifetime or lease accepted, in seconds. */
#define LIFETIME_MAX (366LL * 86400)
#define LEASE_MAX 86400

struct queue_policy queue_policy_default(void)
{
    return (struct queue_policy){.lifetime = QUEUE_DEFAULT_LIFETIME,
                                 .min_backoff = QUEUE_DEFAULT_MIN_BACKOFF,
                                 .max_backoff = QUEUE_DEFAULT_MAX_BACKOFF,
                                 .delay_warning = QUEUE_DEFAULT_DELAY_WARNING};
}

/* ---- small helpers ---- */

static long long cell_ll(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static bool cell_bool(const PGresult *r, int row, int col)
{
    return !PQgetisnull(r, row, col) && PQgetvalue(r, row, col)[0] == 't';
}

static void copy_cell(char *dst, size_t dstlen, const PGresult *r, int row, int col)
{
    snprintf(dst, dstlen, "%s", PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

/* No C0 control characters or DEL: these strings end up in SMTP commands
 * and message headers. */
static bool no_controls(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

/* Checks an address local@domain (the last '@' separates them: a quoted
 * local part may hold one) and writes its domain, lower-cased, to domain_r.
 * Non-ASCII is allowed (SMTPUTF8, RFC 6531); controls are not. */
static int address_domain(const char *address, char domain_r[SMTP_ADDRESS_MAX + 1], char *err,
                          size_t errlen)
{
    size_t n = address != NULL ? strnlen(address, SMTP_ADDRESS_MAX + 1) : 0;
    if (n == 0 || n > SMTP_ADDRESS_MAX || !no_controls(address)) {
        dir_set_err(err, errlen, "invalid address");
        return -1;
    }
    const char *at = strrchr(address, '@');
    if (at == NULL || at == address || at[1] == '\0') {
        dir_set_err(err, errlen, "address %s is not local@domain", address);
        return -1;
    }
    size_t i = 0;
    for (const char *p = at + 1; *p != '\0'; p++)
        domain_r[i++] = (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a') : *p;
    domain_r[i] = '\0';
    return 0;
}

static const char *ret_name(enum smtp_ret r)
{
    return r == SMTP_RET_FULL ? "full" : r == SMTP_RET_HDRS ? "hdrs" : "";
}

static enum smtp_ret ret_parse(const char *s)
{
    return !strcmp(s, "full") ? SMTP_RET_FULL : !strcmp(s, "hdrs") ? SMTP_RET_HDRS : SMTP_RET_NONE;
}

static const char *body_name(enum smtp_body b)
{
    return b == SMTP_BODY_8BITMIME ? "8bitmime" : b == SMTP_BODY_BINARYMIME ? "binarymime" : "7bit";
}

static enum smtp_body body_parse(const char *s)
{
    return !strcmp(s, "8bitmime")     ? SMTP_BODY_8BITMIME
           : !strcmp(s, "binarymime") ? SMTP_BODY_BINARYMIME
                                      : SMTP_BODY_7BIT;
}

/* Writes "{a,b,c}" for ids[0..n-1] into a malloc'd string. */
static char *id_array(const long long *ids, size_t n)
{
    size_t cap = 3 + n * 21;
    char *s = malloc(cap);
    if (s == NULL)
        return NULL;
    size_t used = 0;
    s[used++] = '{';
    for (size_t i = 0; i < n; i++)
        used += (size_t)snprintf(s + used, cap - used, "%s%lld", i ? "," : "", ids[i]);
    snprintf(s + used, cap - used, "}");
    return s;
}

/* ---- enqueue ---- */

int queue_enqueue(PGconn *c, const struct queue_message_new *m, const struct queue_rcpt_new *r,
                  size_t n, long long *id_r, char *err, size_t errlen)
{
    char dom[SMTP_ADDRESS_MAX + 1];
    if (m == NULL || (n > 0 && r == NULL) || n == 0 || n > QUEUE_RCPTS_MAX) {
        dir_set_err(err, errlen, "a queued message needs 1 to %d recipients", QUEUE_RCPTS_MAX);
        return -1;
    }
    if (m->blob_id == NULL || !blob_id_valid(m->blob_id)) {
        dir_set_err(err, errlen, "invalid blob id");
        return -1;
    }
    const char *sender = m->sender != NULL ? m->sender : "";
    if (sender[0] != '\0' && address_domain(sender, dom, err, errlen) != 0)
        return -1;
    const char *envid = m->envid != NULL ? m->envid : "";
    if (strnlen(envid, SMTP_ENVID_MAX + 1) > SMTP_ENVID_MAX || !no_controls(envid)) {
        dir_set_err(err, errlen, "invalid ENVID");
        return -1;
    }
    const char *origin = m->origin_node != NULL ? m->origin_node : "";
    if (strnlen(origin, QUEUE_NODE_MAX + 1) > QUEUE_NODE_MAX || !no_controls(origin)) {
        dir_set_err(err, errlen, "invalid origin node name");
        return -1;
    }
    long long lifetime = m->lifetime > 0 ? m->lifetime : QUEUE_DEFAULT_LIFETIME;
    if (lifetime > LIFETIME_MAX || m->size > INT64_MAX || m->auth_account < 0) {
        dir_set_err(err, errlen, "invalid lifetime, size or account");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (address_domain(r[i].address, dom, err, errlen) != 0)
            return -1;
        const char *orcpt = r[i].orcpt != NULL ? r[i].orcpt : "";
        if (strnlen(orcpt, SMTP_ORCPT_MAX + 1) > SMTP_ORCPT_MAX || !no_controls(orcpt) ||
            r[i].notify > 15) {
            dir_set_err(err, errlen, "invalid ORCPT or NOTIFY for %s", r[i].address);
            return -1;
        }
    }

    char size[24], life[24], acct[24];
    snprintf(size, sizeof size, "%llu", m->size);
    snprintf(life, sizeof life, "%lld", lifetime);
    snprintf(acct, sizeof acct, "%lld", m->auth_account);
    const char *mp[] = {m->blob_id,
                        size,
                        sender,
                        envid,
                        ret_name(m->ret),
                        body_name(m->body),
                        m->smtputf8 ? "t" : "f",
                        m->is_notice ? "t" : "f",
                        life,
                        origin,
                        acct};

    struct db_op op;
    if (db_op_begin(c, &op, err, errlen) != 0)
        return -1;
    PGresult *res = dir_sql(c,
                            "INSERT INTO queue_messages (blob_id, size, sender, envid, ret, body,"
                            " smtputf8, is_notice, expires_at, origin_node, auth_account)"
                            " VALUES ($1, $2::bigint, $3, $4, $5, $6, $7::boolean, $8::boolean,"
                            " now() + $9::bigint * interval '1 second', $10,"
                            " nullif($11::bigint, 0)) RETURNING id",
                            11, mp, "cannot queue the message", NULL, err, errlen);
    if (res == NULL)
        goto fail;
    char id[24];
    copy_cell(id, sizeof id, res, 0, 0);
    PQclear(res);
    for (size_t i = 0; i < n; i++) {
        char notify[8];
        address_domain(r[i].address, dom, NULL, 0);
        snprintf(notify, sizeof notify, "%u", r[i].notify);
        const char *rp[] = {id, r[i].address, dom, r[i].orcpt != NULL ? r[i].orcpt : "", notify};
        res = dir_sql(c,
                      "INSERT INTO queue_recipients (message_id, address, domain, orcpt, notify)"
                      " VALUES ($1::bigint, $2, $3, $4, $5::integer)",
                      5, rp, "cannot queue a recipient", NULL, err, errlen);
        if (res == NULL)
            goto fail;
        PQclear(res);
    }
    if (db_op_commit(c, &op, err, errlen) != 0)
        goto fail;
    if (id_r != NULL)
        *id_r = strtoll(id, NULL, 10);
    return 0;

fail:
    db_op_abort(c, &op);
    return -1;
}

/* ---- claim ---- */

void queue_batch_free(struct queue_batch *b)
{
    if (b == NULL)
        return;
    free(b->rcpts);
    memset(b, 0, sizeof *b);
}

static int rcpt_by_id(const void *a, const void *b)
{
    long long x = ((const struct queue_rcpt *)a)->id, y = ((const struct queue_rcpt *)b)->id;
    return (x > y) - (x < y);
}

int queue_claim(PGconn *c, const char *node_name, int lease_seconds, struct queue_batch *b_r,
                char *err, size_t errlen)
{
    memset(b_r, 0, sizeof *b_r);
    if (node_name == NULL || node_name[0] == '\0' ||
        strnlen(node_name, QUEUE_NODE_MAX + 1) > QUEUE_NODE_MAX || !no_controls(node_name)) {
        dir_set_err(err, errlen, "invalid node name");
        return -1;
    }
    if (lease_seconds < 1 || lease_seconds > LEASE_MAX) {
        dir_set_err(err, errlen, "lease must be 1 to %d seconds", LEASE_MAX);
        return -1;
    }
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;

    /* The oldest due recipient nobody else is claiming right now. */
    PGresult *r = dir_sql(c,
                          "SELECT id, message_id, domain FROM queue_recipients"
                          " WHERE state = 'queued' AND next_attempt_at <= now()"
                          " ORDER BY next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
                          0, NULL, "cannot look for due recipients", NULL, err, errlen);
    if (r == NULL)
        goto fail;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return dir_tx_end(c, 0, false, err, errlen);
    }
    char first[24], msg[24];
    copy_cell(first, sizeof first, r, 0, 0);
    copy_cell(msg, sizeof msg, r, 0, 1);
    copy_cell(b_r->domain, sizeof b_r->domain, r, 0, 2);
    PQclear(r);

    /* The rest of that destination's due recipients (the first one is ours
     * already: SKIP LOCKED does not skip our own locks), under a new token. */
    char lease[16], max[16];
    snprintf(lease, sizeof lease, "%d", lease_seconds);
    snprintf(max, sizeof max, "%d", QUEUE_BATCH_MAX);
    const char *p[] = {msg, b_r->domain, first, node_name, lease, max};
    r = dir_sql(c,
                "WITH tok AS (SELECT nextval('queue_lease_tokens') AS t),"
                " pick AS (SELECT id FROM queue_recipients"
                "  WHERE message_id = $1::bigint AND domain = $2 AND state = 'queued'"
                "  AND next_attempt_at <= now() ORDER BY id <> $3::bigint, id LIMIT $6::integer"
                "  FOR UPDATE SKIP LOCKED)"
                " UPDATE queue_recipients q SET lease_node = $4, lease_token = tok.t,"
                "  lease_until = now() + $5::integer * interval '1 second',"
                "  next_attempt_at = now() + $5::integer * interval '1 second'"
                " FROM tok, pick WHERE q.id = pick.id"
                " RETURNING q.id, q.address, q.orcpt, q.notify, q.attempts, tok.t,"
                "  floor(extract(epoch FROM q.lease_until))::bigint",
                6, p, "cannot claim recipients", NULL, err, errlen);
    if (r == NULL)
        goto fail;
    int nt = PQntuples(r);
    b_r->rcpts = calloc(nt > 0 ? (size_t)nt : 1, sizeof *b_r->rcpts);
    if (b_r->rcpts == NULL) {
        PQclear(r);
        dir_set_err(err, errlen, "out of memory");
        goto fail;
    }
    for (int i = 0; i < nt; i++) {
        struct queue_rcpt *q = &b_r->rcpts[i];
        q->id = cell_ll(r, i, 0);
        copy_cell(q->address, sizeof q->address, r, i, 1);
        copy_cell(q->orcpt, sizeof q->orcpt, r, i, 2);
        q->notify = (unsigned)cell_ll(r, i, 3);
        q->attempts = (int)cell_ll(r, i, 4);
        b_r->lease_token = cell_ll(r, i, 5);
        b_r->lease_until_unix = cell_ll(r, i, 6);
    }
    b_r->n = (size_t)nt;
    PQclear(r);
    qsort(b_r->rcpts, b_r->n, sizeof *b_r->rcpts, rcpt_by_id);

    const char *mp[] = {msg};
    r = dir_sql(c,
                "SELECT id, blob_id, size, sender, envid, ret, body, smtputf8, is_notice,"
                " floor(extract(epoch FROM received_at))::bigint,"
                " floor(extract(epoch FROM expires_at))::bigint"
                " FROM queue_messages WHERE id = $1::bigint",
                1, mp, "cannot read the queued message", NULL, err, errlen);
    if (r == NULL)
        goto fail;
    if (PQntuples(r) != 1 || b_r->n == 0) {
        /* Cannot happen while we hold the first recipient's lock (deleting
         * the message would have to take it); refuse rather than guess. */
        PQclear(r);
        dir_set_err(err, errlen, "queued message %s vanished during the claim", msg);
        goto fail;
    }
    b_r->message_id = cell_ll(r, 0, 0);
    copy_cell(b_r->blob_id, sizeof b_r->blob_id, r, 0, 1);
    b_r->size = (unsigned long long)cell_ll(r, 0, 2);
    copy_cell(b_r->sender, sizeof b_r->sender, r, 0, 3);
    copy_cell(b_r->envid, sizeof b_r->envid, r, 0, 4);
    b_r->ret = ret_parse(PQgetvalue(r, 0, 5));
    b_r->body = body_parse(PQgetvalue(r, 0, 6));
    b_r->smtputf8 = cell_bool(r, 0, 7);
    b_r->is_notice = cell_bool(r, 0, 8);
    b_r->received_unix = cell_ll(r, 0, 9);
    b_r->expires_unix = cell_ll(r, 0, 10);
    PQclear(r);
    snprintf(b_r->node, sizeof b_r->node, "%s", node_name);

    if (dir_tx_end(c, 0, false, err, errlen) != 0) {
        queue_batch_free(b_r);
        return -1;
    }
    return 1;

fail:
    db_rollback(c);
    queue_batch_free(b_r);
    return -1;
}

/* ---- report ---- */

/* Is s an RFC 3463 status code "class.subject.detail" of the given class? */
static bool status_ok(const char *s, char cls)
{
    if (s == NULL || s[0] != cls || s[1] != '.')
        return false;
    const char *p = s + 2;
    for (int part = 0; part < 2; part++) {
        int digits = 0;
        while (*p >= '0' && *p <= '9' && digits < 4) {
            p++;
            digits++;
        }
        if (digits < 1 || digits > 3)
            return false;
        if (part == 0 && *p++ != '.')
            return false;
    }
    return *p == '\0';
}

/* Copies remote text for storage: printable ASCII only (a reply with broken
 * bytes must not make the row unstorable), line breaks of multi-line replies
 * as spaces, at most TEXT_MAX bytes. */
static void clean_text(char *dst, size_t dstlen, const char *src)
{
    size_t n = 0;
    for (; src != NULL && *src != '\0' && n + 1 < dstlen; src++) {
        unsigned char ch = (unsigned char)*src;
        if (ch == '\r')
            continue;
        dst[n++] = ch == '\n' ? ' ' : (ch < 0x20 || ch >= 0x7f) ? '?' : (char)ch;
    }
    while (n > 0 && dst[n - 1] == ' ')
        n--;
    dst[n] = '\0';
}

/* RFC 3461 §4.1: NOTIFY=NEVER asks for no notification; otherwise only the
 * conditions listed, and without NOTIFY we send failure and delay notices
 * (the choice §4.1 leaves to the MTA). */
static bool notify_wants(unsigned notify, unsigned bit)
{
    if (notify & SMTP_NOTIFY_NEVER)
        return false;
    if (notify == 0)
        return bit == SMTP_NOTIFY_FAILURE || bit == SMTP_NOTIFY_DELAY;
    return (notify & bit) != 0;
}

/* The wait after the attempts-th attempt failed temporarily. */
static long long backoff(const struct queue_policy *p, int attempts)
{
    long long wait = p->min_backoff > 0 ? p->min_backoff : 1;
    for (int i = 1; i < attempts && wait < p->max_backoff; i++)
        wait *= 2;
    return wait < p->max_backoff ? wait : (p->max_backoff > 0 ? p->max_backoff : wait);
}

int queue_report(PGconn *c, const struct queue_batch *b, const struct queue_outcome *o,
                 const struct queue_policy *policy, char *err, size_t errlen)
{
    if (b == NULL || o == NULL || b->n == 0 || b->n > QUEUE_BATCH_MAX || b->rcpts == NULL) {
        dir_set_err(err, errlen, "queue_report: no batch");
        return -1;
    }
    struct queue_policy def = queue_policy_default();
    const struct queue_policy *pol = policy != NULL ? policy : &def;
    long long *ids = malloc(b->n * sizeof *ids);
    if (ids == NULL) {
        dir_set_err(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < b->n; i++)
        ids[i] = b->rcpts[i].id;
    char *idarr = id_array(ids, b->n);
    free(ids);
    if (idarr == NULL) {
        dir_set_err(err, errlen, "out of memory");
        return -1;
    }
    int rc = -1;
    PGresult *r = NULL;
    char msg[24], tok[24], warn[24];
    snprintf(msg, sizeof msg, "%lld", b->message_id);
    snprintf(tok, sizeof tok, "%lld", b->lease_token);
    snprintf(warn, sizeof warn, "%lld", pol->delay_warning > 0 ? pol->delay_warning : 0);
    if (dir_tx_begin(c, err, errlen) != 0) {
        free(idarr);
        return -1;
    }

    /* The message row lock orders this report against the other reports of
     * the same message and against the notification runner. */
    const char *mp[] = {msg};
    r = dir_sql(c,
                "SELECT sender = '' OR is_notice, expires_at <= now() FROM queue_messages"
                " WHERE id = $1::bigint FOR UPDATE",
                1, mp, "cannot lock the queued message", NULL, err, errlen);
    if (r == NULL)
        goto done;
    if (PQntuples(r) == 0) {
        dir_set_err(err, errlen, "queued message %s is gone (deleted)", msg);
        rc = QUEUE_ELEASE;
        goto done;
    }
    bool silent = cell_bool(r, 0, 0), expired = cell_bool(r, 0, 1);
    PQclear(r);

    /* Our rows, still under our lease. */
    const char *lp[] = {msg, idarr, tok, b->node, warn};
    r = dir_sql(c,
                "SELECT id, notify, attempts, delay_notified, notice,"
                " coalesce(first_attempt_at, now()) <= now() - $5::bigint * interval '1 second'"
                " FROM queue_recipients WHERE message_id = $1::bigint AND id = ANY($2::bigint[])"
                " AND state = 'queued' AND lease_token = $3::bigint AND lease_node = $4"
                " ORDER BY id FOR UPDATE",
                5, lp, "cannot lock the batch", NULL, err, errlen);
    if (r == NULL)
        goto done;
    if ((size_t)PQntuples(r) != b->n) {
        dir_set_err(err, errlen,
                    "the lease on message %s is no longer ours: %d of %zu recipients held", msg,
                    PQntuples(r), b->n);
        rc = QUEUE_ELEASE;
        goto done;
    }

    for (size_t i = 0; i < b->n; i++) {
        /* Rows come in id order, as b->rcpts (queue_claim sorts them). */
        long long id = cell_ll(r, (int)i, 0);
        if (id != b->rcpts[i].id) {
            dir_set_err(err, errlen, "queue_report: batch out of order");
            goto done;
        }
        unsigned notify = (unsigned)cell_ll(r, (int)i, 1);
        int attempts = (int)cell_ll(r, (int)i, 2) + 1;
        bool delay_notified = cell_bool(r, (int)i, 3);
        const char *notice = PQgetvalue(r, (int)i, 4);
        bool warn_due = cell_bool(r, (int)i, 5);

        const char *state = "queued", *status;
        long long wait = -1; /* seconds to the next attempt; -1 final */
        switch (o[i].result) {
        case QUEUE_DELIVERED:
            state = "delivered";
            status = status_ok(o[i].status, '2') ? o[i].status : "2.0.0";
            notice = notify_wants(notify, SMTP_NOTIFY_SUCCESS) ? "success" : "none";
            break;
        case QUEUE_PERMFAIL:
            state = "failed";
            status = status_ok(o[i].status, '5') ? o[i].status : "5.0.0";
            notice = notify_wants(notify, SMTP_NOTIFY_FAILURE) ? "failure" : "none";
            break;
        case QUEUE_TEMPFAIL:
            if (expired) {
                /* RFC 3463 X.4.7: delivery time expired; permanent now. */
                state = "failed";
                status = "5.4.7";
                notice = notify_wants(notify, SMTP_NOTIFY_FAILURE) ? "failure" : "none";
                break;
            }
            status = status_ok(o[i].status, '4') ? o[i].status : "4.0.0";
            wait = backoff(pol, attempts);
            if (!delay_notified && warn_due && notify_wants(notify, SMTP_NOTIFY_DELAY)) {
                notice = "delay"; /* RFC 3464 §2.3.3 Action: delayed */
                delay_notified = true;
            }
            break;
        default:
            dir_set_err(err, errlen, "queue_report: invalid result");
            goto done;
        }
        /* RFC 3461 §6.2 and RFC 5321 §4.5.5: nothing goes back to the null
         * sender, and a notification never causes another. */
        if (silent)
            notice = "none";

        char reply[TEXT_MAX + 1], host[256], idb[24], waitb[24];
        clean_text(reply, sizeof reply, o[i].reply);
        clean_text(host, sizeof host, o[i].remote_host);
        snprintf(idb, sizeof idb, "%lld", id);
        snprintf(waitb, sizeof waitb, "%lld", wait);
        const char *up[] = {idb,  state, status, reply,
                            host, waitb, notice, delay_notified ? "t" : "f"};
        PGresult *u = dir_sql(
            c,
            "UPDATE queue_recipients SET state = $2, attempts = attempts + 1,"
            " first_attempt_at = coalesce(first_attempt_at, now()), last_attempt_at = now(),"
            " last_status = $3, last_reply = $4, remote_host = $5,"
            " lease_node = NULL, lease_until = NULL, lease_token = NULL,"
            " next_attempt_at = CASE WHEN $6::bigint < 0 THEN now() ELSE"
            "  least(now() + $6::bigint * interval '1 second',"
            "        (SELECT expires_at FROM queue_messages WHERE id = message_id)) END,"
            " notice = $7, delay_notified = $8::boolean WHERE id = $1::bigint",
            8, up, "cannot record the outcome", NULL, err, errlen);
        if (u == NULL)
            goto done;
        PQclear(u);
    }
    PQclear(r);
    r = NULL;

    /* Finished: every recipient final, no notice owed. */
    r = dir_sql(c,
                "DELETE FROM queue_messages WHERE id = $1::bigint AND NOT EXISTS"
                " (SELECT 1 FROM queue_recipients WHERE message_id = $1::bigint"
                "  AND (state = 'queued' OR notice <> 'none'))",
                1, mp, "cannot remove the finished message", NULL, err, errlen);
    if (r == NULL)
        goto done;
    rc = 0;

done:
    PQclear(r);
    free(idarr);
    return dir_tx_end(c, rc, false, err, errlen);
}

/* ---- administration ---- */

#define INFO_COLS                                                                                  \
    "m.id, m.blob_id, m.size, m.sender, m.envid, m.ret, m.body, m.smtputf8, m.is_notice,"          \
    " floor(extract(epoch FROM m.received_at))::bigint,"                                           \
    " floor(extract(epoch FROM m.expires_at))::bigint,"                                            \
    " greatest(0, floor(extract(epoch FROM now() - m.received_at)))::bigint,"                      \
    " m.origin_node, coalesce(m.auth_account, 0),"                                                 \
    " (SELECT count(*) FILTER (WHERE state = 'queued') FROM queue_recipients"                      \
    "   WHERE message_id = m.id),"                                                                 \
    " (SELECT count(*) FILTER (WHERE state = 'delivered') FROM queue_recipients"                   \
    "   WHERE message_id = m.id),"                                                                 \
    " (SELECT count(*) FILTER (WHERE state = 'failed') FROM queue_recipients"                      \
    "   WHERE message_id = m.id)"

static void fill_info(struct queue_info *q, const PGresult *r, int row)
{
    q->id = cell_ll(r, row, 0);
    q->blob_id = PQgetvalue(r, row, 1);
    q->size = (unsigned long long)cell_ll(r, row, 2);
    q->sender = PQgetvalue(r, row, 3);
    q->envid = PQgetvalue(r, row, 4);
    q->ret = PQgetvalue(r, row, 5);
    q->body = PQgetvalue(r, row, 6);
    q->smtputf8 = cell_bool(r, row, 7);
    q->is_notice = cell_bool(r, row, 8);
    q->received_unix = cell_ll(r, row, 9);
    q->expires_unix = cell_ll(r, row, 10);
    q->age = cell_ll(r, row, 11);
    q->origin_node = PQgetvalue(r, row, 12);
    q->auth_account = cell_ll(r, row, 13);
    q->nqueued = (int)cell_ll(r, row, 14);
    q->ndelivered = (int)cell_ll(r, row, 15);
    q->nfailed = (int)cell_ll(r, row, 16);
}

struct list_ctx {
    queue_info_cb cb;
    void *ctx;
};

static int list_row(const PGresult *r, int row, void *arg)
{
    struct list_ctx *l = arg;
    struct queue_info q;
    fill_info(&q, r, row);
    return l->cb(&q, l->ctx);
}

int queue_list(PGconn *c, queue_info_cb cb, void *ctx, char *err, size_t errlen)
{
    if (cb == NULL) {
        dir_set_err(err, errlen, "queue_list: no callback");
        return -1;
    }
    struct list_ctx l = {cb, ctx};
    return dir_sql_each(c,
                        "SELECT " INFO_COLS " FROM queue_messages m ORDER BY m.received_at, m.id",
                        0, NULL, list_row, &l, "cannot list the queue", err, errlen);
}

int queue_show(PGconn *c, long long id, queue_info_cb mcb, queue_rcpt_info_cb rcb, void *ctx,
               char *err, size_t errlen)
{
    char idb[24];
    snprintf(idb, sizeof idb, "%lld", id);
    const char *p[] = {idb};
    /* One snapshot for the message and its recipients. */
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    int rc = -1;
    PGresult *r = dir_sql(c, "SELECT " INFO_COLS " FROM queue_messages m WHERE m.id = $1::bigint",
                          1, p, "cannot read the queued message", NULL, err, errlen);
    if (r == NULL)
        goto done;
    if (PQntuples(r) == 0) {
        dir_set_err(err, errlen, "no queued message %lld", id);
        rc = QUEUE_ENOTFOUND;
        goto done;
    }
    if (mcb != NULL) {
        struct queue_info q;
        fill_info(&q, r, 0);
        if (mcb(&q, ctx) != 0) {
            rc = 0;
            goto done;
        }
    }
    PQclear(r);
    r = dir_sql(c,
                "SELECT id, address, domain, orcpt, notify, state, attempts,"
                " floor(extract(epoch FROM next_attempt_at))::bigint,"
                " floor(extract(epoch FROM first_attempt_at))::bigint,"
                " floor(extract(epoch FROM last_attempt_at))::bigint,"
                " last_status, last_reply, remote_host, coalesce(lease_node, ''),"
                " floor(extract(epoch FROM lease_until))::bigint, notice, delay_notified"
                " FROM queue_recipients WHERE message_id = $1::bigint ORDER BY id",
                1, p, "cannot read the recipients", NULL, err, errlen);
    if (r == NULL)
        goto done;
    for (int i = 0; rcb != NULL && i < PQntuples(r); i++) {
        struct queue_rcpt_info q = {
            .id = cell_ll(r, i, 0),
            .address = PQgetvalue(r, i, 1),
            .domain = PQgetvalue(r, i, 2),
            .orcpt = PQgetvalue(r, i, 3),
            .notify = (unsigned)cell_ll(r, i, 4),
            .state = PQgetvalue(r, i, 5),
            .attempts = (int)cell_ll(r, i, 6),
            .next_attempt_unix = cell_ll(r, i, 7),
            .first_attempt_unix = cell_ll(r, i, 8),
            .last_attempt_unix = cell_ll(r, i, 9),
            .last_status = PQgetvalue(r, i, 10),
            .last_reply = PQgetvalue(r, i, 11),
            .remote_host = PQgetvalue(r, i, 12),
            .lease_node = PQgetvalue(r, i, 13),
            .lease_until_unix = cell_ll(r, i, 14),
            .notice = PQgetvalue(r, i, 15),
            .delay_notified = cell_bool(r, i, 16),
        };
        if (rcb(&q, ctx) != 0)
            break;
    }
    rc = 0;

done:
    PQclear(r);
    return dir_tx_end(c, rc, false, err, errlen);
}

int queue_retry(PGconn *c, long long id, long long *count_r, char *err, size_t errlen)
{
    if (id < 0) {
        dir_set_err(err, errlen, "invalid queue id");
        return -1;
    }
    char idb[24];
    snprintf(idb, sizeof idb, "%lld", id);
    const char *p[] = {idb};
    if (dir_tx_begin(c, err, errlen) != 0)
        return -1;
    int rc = -1;
    PGresult *r = NULL;
    if (id > 0) {
        r = dir_sql(c, "SELECT 1 FROM queue_messages WHERE id = $1::bigint", 1, p,
                    "cannot look the message up", NULL, err, errlen);
        if (r == NULL)
            goto done;
        if (PQntuples(r) == 0) {
            dir_set_err(err, errlen, "no queued message %lld", id);
            rc = QUEUE_ENOTFOUND;
            goto done;
        }
        PQclear(r);
    }
    /* A live lease means a node is delivering right now: making those rows
     * due would hand them to a second node. Rows another transaction holds
     * (a report being recorded) are skipped rather than waited for, so this
     * never deadlocks against reports locking their batches. */
    r = dir_sql(c,
                id > 0 ? "UPDATE queue_recipients SET next_attempt_at = now() WHERE id IN"
                         " (SELECT id FROM queue_recipients WHERE message_id = $1::bigint"
                         "  AND state = 'queued' AND (lease_until IS NULL OR lease_until <= now())"
                         "  FOR UPDATE SKIP LOCKED)"
                       : "UPDATE queue_recipients SET next_attempt_at = now() WHERE id IN"
                         " (SELECT id FROM queue_recipients WHERE state = 'queued'"
                         "  AND (lease_until IS NULL OR lease_until <= now())"
                         "  FOR UPDATE SKIP LOCKED)",
                id > 0 ? 1 : 0, id > 0 ? p : NULL, "cannot reschedule", NULL, err, errlen);
    if (r == NULL)
        goto done;
    if (count_r != NULL)
        *count_r = strtoll(PQcmdTuples(r), NULL, 10);
    rc = 0;

done:
    PQclear(r);
    return dir_tx_end(c, rc, false, err, errlen);
}

int queue_delete(PGconn *c, long long id, char *err, size_t errlen)
{
    char idb[24];
    snprintf(idb, sizeof idb, "%lld", id);
    const char *p[] = {idb};
    PGresult *r = dir_sql(c, "DELETE FROM queue_messages WHERE id = $1::bigint", 1, p,
                          "cannot delete the queued message", NULL, err, errlen);
    if (r == NULL)
        return -1;
    bool gone = strtoll(PQcmdTuples(r), NULL, 10) == 0;
    PQclear(r);
    if (gone) {
        dir_set_err(err, errlen, "no queued message %lld", id);
        return QUEUE_ENOTFOUND;
    }
    return 0;
}
