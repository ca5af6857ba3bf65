/* Delivery status notifications of the outbound queue (queue.h,
 * queue_notices_run): turns the notices queue_report() recorded as owed into
 * RFC 3464 messages to the original sender, queued like any other mail.
 *
 * Per message: read the owed recipients and the original (no locks held),
 * build the notification with smtp_dsn_build() and store it as a blob — the
 * pg blob store commits its own transactions, so this cannot happen inside
 * ours — then, in one transaction under the message's row lock, clear exactly
 * the notices the notification reports (compare-and-set on each recipient's
 * notice), queue the notification and delete the message if nothing is left
 * to do. When a notice changed in between (a delayed recipient failed or got
 * through, or another node sent it first) the transaction is rolled back and
 * the next run builds a fresh notification; the stored blob is left to the
 * blob collector. So no notice is ever sent twice or lost.
 */
#include "storage/queue.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/db.h"
#include "storage/directory.h"

/* Bytes read from the blob store per call. */
#define READ_PIECE (64 * 1024)

static long long cell_ll(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* An owed notice, as read before building. */
struct owed {
    long long id;
    const char *notice; /* points into the result */
};

/* Reads the original message: at most max bytes from the start; when
 * headers_only, only up to (and not including) the empty line that ends the
 * header, or the last complete line within max. Returns 0 with a malloc'd
 * buffer (NULL when the blob is gone: the notification then carries no
 * original), or -1. */
static int read_original(struct blob_store *bs, PGconn *c, const char *blob_id, bool headers_only,
                         size_t max, char **buf_r, size_t *len_r, char *err, size_t errlen)
{
    *buf_r = NULL;
    *len_r = 0;
    struct blob_reader *rd = NULL;
    int rc = blob_reader_open(bs, c, blob_id, 0, max, &rd, err, errlen);
    if (rc == BLOB_ENOTFOUND)
        return 0;
    if (rc != 0)
        return -1;
    unsigned long long total = blob_reader_length(rd);
    size_t cap = total < max ? (size_t)total : max;
    char *buf = malloc(cap + 1);
    if (buf == NULL) {
        blob_reader_close(&rd);
        dir_set_err(err, errlen, "out of memory");
        return -1;
    }
    size_t len = 0, end = SIZE_MAX;
    while (len < cap && end == SIZE_MAX) {
        size_t want = cap - len < READ_PIECE ? cap - len : READ_PIECE;
        ssize_t got = blob_reader_read(rd, buf + len, want);
        if (got < 0) {
            dir_set_err(err, errlen, "cannot read the original message: %s", blob_reader_error(rd));
            blob_reader_close(&rd);
            free(buf);
            return -1;
        }
        if (got == 0)
            break;
        /* Look for the empty line from a little before the new piece, so a
         * CRLF CRLF split across two pieces is found. */
        size_t from = len >= 3 ? len - 3 : 0;
        len += (size_t)got;
        if (!headers_only)
            continue;
        if (from == 0 && (buf[0] == '\n' || (len >= 2 && buf[0] == '\r' && buf[1] == '\n'))) {
            end = 0; /* no header at all */
            break;
        }
        for (size_t i = from; i + 1 < len && end == SIZE_MAX; i++) {
            if (buf[i] != '\n')
                continue;
            if (buf[i + 1] == '\n')
                end = i + 1;
            else if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
                end = i + 1;
        }
    }
    blob_reader_close(&rd);
    if (headers_only) {
        if (end == SIZE_MAX) {
            /* No empty line within the limit: keep whole lines only. */
            end = len;
            while (end > 0 && buf[end - 1] != '\n')
                end--;
        }
        len = end;
    }
    buf[len] = '\0';
    *buf_r = buf;
    *len_r = len;
    return 0;
}

/* One message's notification. Returns 1 queued, 0 nothing to do now (the
 * message went away or its notices changed meanwhile), -1 error. */
static int notify_message(PGconn *c, struct blob_store *bs, const char *reporting_mta, time_t now,
                          const struct queue_policy *pol, const char *msg, char *err, size_t errlen)
{
    const char *mp[] = {msg};
    PGresult *m = NULL, *r = NULL;
    struct smtp_dsn_rcpt *dr = NULL;
    struct owed *ow = NULL;
    char *original = NULL, *dsn = NULL, *ids = NULL, *kinds = NULL;
    int rc = -1;

    m = dir_sql(c,
                "SELECT blob_id, size, sender, envid, ret, body, smtputf8, is_notice,"
                " floor(extract(epoch FROM received_at))::bigint,"
                " floor(extract(epoch FROM expires_at))::bigint"
                " FROM queue_messages WHERE id = $1::bigint",
                1, mp, "cannot read the queued message", NULL, err, errlen);
    if (m == NULL)
        goto done;
    if (PQntuples(m) == 0) {
        rc = 0;
        goto done;
    }
    r = dir_sql(c,
                "SELECT id, address, orcpt, notice, last_status, last_reply, remote_host,"
                " floor(extract(epoch FROM last_attempt_at))::bigint"
                " FROM queue_recipients WHERE message_id = $1::bigint AND notice <> 'none'"
                " ORDER BY id",
                1, mp, "cannot read the owed notices", NULL, err, errlen);
    if (r == NULL)
        goto done;
    size_t n = (size_t)PQntuples(r);
    if (n == 0) {
        rc = 0;
        goto done;
    }
    const char *sender = PQgetvalue(m, 0, 2);
    bool silent = sender[0] == '\0' || PQgetvalue(m, 0, 7)[0] == 't';
    long long expires = cell_ll(m, 0, 9);

    dr = calloc(n, sizeof *dr);
    ow = calloc(n, sizeof *ow);
    ids = malloc(3 + n * 21);
    kinds = malloc(3 + n * 9);
    if (dr == NULL || ow == NULL || ids == NULL || kinds == NULL) {
        dir_set_err(err, errlen, "out of memory");
        goto done;
    }
    bool any_failure = false;
    size_t il = 0, kl = 0;
    ids[il++] = '{';
    kinds[kl++] = '{';
    for (size_t i = 0; i < n; i++) {
        int row = (int)i;
        ow[i].id = cell_ll(r, row, 0);
        ow[i].notice = PQgetvalue(r, row, 3);
        il += (size_t)snprintf(ids + il, 22, "%s%lld", i ? "," : "", ow[i].id);
        kl += (size_t)snprintf(kinds + kl, 10, "%s%s", i ? "," : "", ow[i].notice);

        struct smtp_dsn_rcpt *d = &dr[i];
        const char *status = PQgetvalue(r, row, 4);
        d->final_recipient = PQgetvalue(r, row, 1);
        d->original_recipient = PQgetvalue(r, row, 2)[0] ? PQgetvalue(r, row, 2) : NULL;
        d->remote_mta = PQgetvalue(r, row, 6)[0] ? PQgetvalue(r, row, 6) : NULL;
        d->diagnostic = PQgetvalue(r, row, 5)[0] ? PQgetvalue(r, row, 5) : NULL;
        d->last_attempt = (time_t)cell_ll(r, row, 7);
        /* RFC 3464 §2.3.3 Action, §2.3.4 Status. */
        if (!strcmp(ow[i].notice, "failure")) {
            d->action = SMTP_DSN_FAILED;
            d->status = status[0] == '5' ? status : "5.0.0";
            any_failure = true;
        } else if (!strcmp(ow[i].notice, "delay")) {
            d->action = SMTP_DSN_DELAYED;
            d->status = status[0] == '4' ? status : "4.0.0";
            d->will_retry_until = (time_t)expires;
        } else {
            d->action = SMTP_DSN_DELIVERED;
            d->status = status[0] == '2' ? status : "2.0.0";
        }
    }
    ids[il++] = '}';
    ids[il] = '\0';
    kinds[kl++] = '}';
    kinds[kl] = '\0';

    char blob[BLOB_ID_LEN + 1] = "";
    size_t dsnlen = 0;
    if (!silent) {
        /* RFC 3461 §4.3: RET=FULL returns the message, RET=HDRS its header;
         * without RET we return it with failures. A notification reporting
         * no failure returns the header only. The message goes back whole
         * only when it fits the limit and is not binary (message/rfc822
         * cannot carry BINARYMIME content, RFC 3030 §3). */
        const char *ret = PQgetvalue(m, 0, 4);
        bool full = any_failure && (!strcmp(ret, "full") || ret[0] == '\0') &&
                    strcmp(PQgetvalue(m, 0, 5), "binarymime") != 0 &&
                    cell_ll(m, 0, 1) <= QUEUE_NOTICE_ORIGINAL_MAX;
        size_t olen = 0;
        if (read_original(bs, c, PQgetvalue(m, 0, 0), !full, QUEUE_NOTICE_ORIGINAL_MAX, &original,
                          &olen, err, errlen) != 0)
            goto done;
        char from[SMTP_ADDRESS_MAX + 1];
        snprintf(from, sizeof from, "MAILER-DAEMON@%s", reporting_mta);
        struct smtp_dsn d = {
            .reporting_mta = reporting_mta,
            .from = from,
            .to = sender,
            .envid = PQgetvalue(m, 0, 3)[0] ? PQgetvalue(m, 0, 3) : NULL,
            .arrival = (time_t)cell_ll(m, 0, 8),
            .now = now,
            .rcpts = dr,
            .nrcpts = n,
            .original = original,
            .original_len = olen,
            .ret_full = full,
        };
        if (smtp_dsn_build(&d, &dsn, &dsnlen) != 0) {
            dir_set_err(err, errlen, "cannot build the notification for message %s", msg);
            goto done;
        }
        if (blob_put(bs, c, dsn, dsnlen, blob, err, errlen) != 0)
            goto done;
    }

    if (dir_tx_begin(c, err, errlen) != 0)
        goto done;
    int txrc = -1;
    PGresult *t = dir_sql(c, "SELECT 1 FROM queue_messages WHERE id = $1::bigint FOR UPDATE", 1, mp,
                          "cannot lock the queued message", NULL, err, errlen);
    if (t == NULL)
        goto tx_end;
    bool there = PQntuples(t) == 1;
    PQclear(t);
    if (!there) {
        txrc = 1; /* deleted meanwhile: nothing to send */
        goto tx_end;
    }
    const char *cp[] = {msg, ids, kinds};
    t = dir_sql(c,
                "UPDATE queue_recipients q SET notice = 'none'"
                " FROM unnest($2::bigint[], $3::text[]) AS x(id, notice)"
                " WHERE q.message_id = $1::bigint AND q.id = x.id AND q.notice = x.notice",
                3, cp, "cannot clear the notices", NULL, err, errlen);
    if (t == NULL)
        goto tx_end;
    bool same = strtoll(PQcmdTuples(t), NULL, 10) == (long long)n;
    PQclear(t);
    if (!same) {
        txrc = 1; /* changed meanwhile: the next run builds a fresh one */
        goto tx_end;
    }
    if (!silent) {
        struct queue_message_new qm = {
            .blob_id = blob,
            .size = dsnlen,
            .sender = "",
            .ret = SMTP_RET_NONE,
            /* The returned original may be 8-bit (never binary, see above). */
            .body = !strcmp(PQgetvalue(m, 0, 5), "7bit") ? SMTP_BODY_7BIT : SMTP_BODY_8BITMIME,
            .smtputf8 = PQgetvalue(m, 0, 6)[0] == 't',
            .is_notice = true,
            .lifetime = pol->lifetime,
            .origin_node = "",
        };
        struct queue_rcpt_new qr = {.address = sender};
        if (queue_enqueue(c, &qm, &qr, 1, NULL, err, errlen) != 0)
            goto tx_end;
    }
    t = dir_sql(c,
                "DELETE FROM queue_messages WHERE id = $1::bigint AND NOT EXISTS"
                " (SELECT 1 FROM queue_recipients WHERE message_id = $1::bigint"
                "  AND (state = 'queued' OR notice <> 'none'))",
                1, mp, "cannot remove the finished message", NULL, err, errlen);
    if (t == NULL)
        goto tx_end;
    PQclear(t);
    txrc = 0;
tx_end:
    if (txrc == 1) {
        db_rollback(c);
        rc = 0;
    } else if (dir_tx_end(c, txrc, false, err, errlen) == 0) {
        rc = silent ? 0 : 1;
    }

done:
    PQclear(m);
    PQclear(r);
    free(dr);
    free(ow);
    free(ids);
    free(kinds);
    free(original);
    free(dsn);
    return rc;
}

struct id_list {
    char ids[QUEUE_NOTICES_PER_RUN][24];
    size_t n;
};

static int collect_id(const PGresult *r, int row, void *arg)
{
    struct id_list *l = arg;
    if (l->n < QUEUE_NOTICES_PER_RUN)
        snprintf(l->ids[l->n++], sizeof l->ids[0], "%s", PQgetvalue(r, row, 0));
    return 0;
}

int queue_notices_run(PGconn *c, struct blob_store *bs, const char *reporting_mta, time_t now,
                      const struct queue_policy *policy, int *made_r, char *err, size_t errlen)
{
    if (made_r != NULL)
        *made_r = 0;
    if (bs == NULL || reporting_mta == NULL || reporting_mta[0] == '\0' ||
        strlen(reporting_mta) > DIR_DOMAIN_MAX) {
        dir_set_err(err, errlen, "queue_notices_run: no blob store or reporting MTA name");
        return -1;
    }
    if (PQtransactionStatus(c) != PQTRANS_IDLE) {
        dir_set_err(err, errlen, "queue_notices_run: the connection is inside a transaction");
        return -1;
    }
    struct queue_policy def = queue_policy_default();
    const struct queue_policy *pol = policy != NULL ? policy : &def;

    struct id_list l = {.n = 0};
    char lim[16];
    snprintf(lim, sizeof lim, "%d", QUEUE_NOTICES_PER_RUN);
    const char *p[] = {lim};
    if (dir_sql_each(c,
                     "SELECT DISTINCT message_id FROM queue_recipients WHERE notice <> 'none'"
                     " ORDER BY message_id LIMIT $1::integer",
                     1, p, collect_id, &l, "cannot look for owed notices", err, errlen) != 0)
        return -1;
    int made = 0;
    for (size_t i = 0; i < l.n; i++) {
        int rc = notify_message(c, bs, reporting_mta, now, pol, l.ids[i], err, errlen);
        if (rc < 0) {
            if (made_r != NULL)
                *made_r = made;
            return -1;
        }
        made += rc;
    }
    if (made_r != NULL)
        *made_r = made;
    return 0;
}
