/* Auto-responder settings and the reply decision (autoreply.h). */
#include "storage/autoreply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "storage/db.h"
#include "storage/directory.h"

void autoreply_free(struct autoreply *a)
{
    free(a->body);
    a->body = NULL;
}

static int account_id(PGconn *c, const char *address, char id_r[24], char *err, size_t errlen)
{
    struct dir_account a;
    int rc = dir_account_find(c, address, &a, err, errlen);
    if (rc != 0)
        return rc;
    snprintf(id_r, 24, "%lld", a.id);
    return 0;
}

int autoreply_set(PGconn *c, const char *address, const struct autoreply *a, char *err,
                  size_t errlen)
{
    if (!a->body || strlen(a->body) > AUTOREPLY_BODY_MAX ||
        strlen(a->subject) > AUTOREPLY_SUBJECT_MAX || strpbrk(a->subject, "\r\n") ||
        a->interval_s < 60 || a->interval_s > 31536000 ||
        (a->starts && a->ends && a->ends <= a->starts)) {
        dir_set_err(err, errlen, "invalid auto-responder: body of at most %d bytes, one-line "
                    "subject, interval 60 s to a year, end after start", AUTOREPLY_BODY_MAX);
        return -1;
    }
    char id[24], iv[16], st[24], en[24];
    int rc = account_id(c, address, id, err, errlen);
    if (rc != 0)
        return rc;
    snprintf(iv, sizeof(iv), "%d", a->interval_s);
    snprintf(st, sizeof(st), "%lld", (long long)a->starts);
    snprintf(en, sizeof(en), "%lld", (long long)a->ends);
    const char *p[] = {id, a->subject, a->body, iv, a->starts ? st : NULL, a->ends ? en : NULL};
    PGresult *r = dir_sql(c,
                          "INSERT INTO autoreplies (account_id, subject, body, interval_s,"
                          " starts_at, ends_at) VALUES ($1, $2, $3, $4, to_timestamp($5),"
                          " to_timestamp($6)) ON CONFLICT (account_id) DO UPDATE SET"
                          " subject = $2, body = $3, interval_s = $4, starts_at = to_timestamp($5),"
                          " ends_at = to_timestamp($6)",
                          6, p, "cannot store the auto-responder", NULL, err, errlen);
    if (!r)
        return -1;
    PQclear(r);
    /* a new text starts a new round of replies */
    const char *p2[] = {id};
    r = dir_sql(c, "DELETE FROM autoreply_sent WHERE account_id = $1", 1, p2,
                "cannot reset the auto-responder", NULL, err, errlen);
    if (!r)
        return -1;
    PQclear(r);
    return 0;
}

int autoreply_clear(PGconn *c, const char *address, char *err, size_t errlen)
{
    char id[24];
    int rc = account_id(c, address, id, err, errlen);
    if (rc != 0)
        return rc;
    const char *p[] = {id};
    PGresult *r = dir_sql(c,
                          "WITH a AS (DELETE FROM autoreplies WHERE account_id = $1)"
                          " DELETE FROM autoreply_sent WHERE account_id = $1",
                          1, p, "cannot remove the auto-responder", NULL, err, errlen);
    if (!r)
        return -1;
    PQclear(r);
    return 0;
}

static void fill(struct autoreply *a, const PGresult *r)
{
    memset(a, 0, sizeof(*a));
    snprintf(a->subject, sizeof(a->subject), "%s", PQgetvalue(r, 0, 0));
    a->body = strdup(PQgetvalue(r, 0, 1));
    a->interval_s = atoi(PQgetvalue(r, 0, 2));
    a->starts = PQgetisnull(r, 0, 3) ? 0 : (time_t)atoll(PQgetvalue(r, 0, 3));
    a->ends = PQgetisnull(r, 0, 4) ? 0 : (time_t)atoll(PQgetvalue(r, 0, 4));
}

#define AUTOREPLY_COLS                                                                             \
    "subject, body, interval_s, extract(epoch FROM starts_at)::bigint,"                            \
    " extract(epoch FROM ends_at)::bigint"

int autoreply_get(PGconn *c, const char *address, struct autoreply *a_r, char *err,
                  size_t errlen)
{
    char id[24];
    int rc = account_id(c, address, id, err, errlen);
    if (rc != 0)
        return rc;
    const char *p[] = {id};
    PGresult *r = dir_sql(c, "SELECT " AUTOREPLY_COLS " FROM autoreplies WHERE account_id = $1",
                          1, p, "cannot read the auto-responder", NULL, err, errlen);
    if (!r)
        return -1;
    int found = PQntuples(r) == 1;
    if (found)
        fill(a_r, r);
    PQclear(r);
    if (found && !a_r->body) {
        dir_set_err(err, errlen, "out of memory");
        return -1;
    }
    return found;
}

static bool has_prefix(const char *s, const char *p)
{
    return strncasecmp(s, p, strlen(p)) == 0;
}

bool autoreply_forbidden(const struct autoreply_msg *msg)
{
    /* RFC 3834 §2: never to automatic or list mail, never to the null sender */
    if (!msg->sender || !*msg->sender || msg->auto_submitted || msg->list_or_bulk)
        return true;
    const char *at = strrchr(msg->sender, '@');
    size_t local = at ? (size_t)(at - msg->sender) : strlen(msg->sender);
    static const char *const robots[] = {"mailer-daemon", "postmaster", "listserv",
                                         "majordomo", "noreply", "no-reply", "do-not-reply"};
    for (size_t i = 0; i < sizeof(robots) / sizeof(robots[0]); i++)
        if (local == strlen(robots[i]) && has_prefix(msg->sender, robots[i]))
            return true;
    if (has_prefix(msg->sender, "owner-"))
        return true;
    /* RFC 5230 §4.6 names *-request as a list address */
    if (local > 8 && !strncasecmp(msg->sender + local - 8, "-request", 8))
        return true;
    return false;
}

int autoreply_decide(PGconn *c, long long account_id_, const struct autoreply_msg *msg,
                     struct autoreply *a_r, char *err, size_t errlen)
{
    /* RFC 5230 §4.5: only mail addressed to the user directly */
    if (autoreply_forbidden(msg) || !msg->addressed)
        return 0;
    char id[24], sender[400];
    snprintf(id, sizeof(id), "%lld", account_id_);
    snprintf(sender, sizeof(sender), "%s", msg->sender);
    for (char *p = sender; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    const char *p[] = {id, sender};
    /* Records the reply only when the interval has passed (or there was none
     * yet): the row lock makes concurrent deliveries answer once. */
    PGresult *r = dir_sql(
        c,
        "WITH ar AS (SELECT " AUTOREPLY_COLS " FROM autoreplies WHERE account_id = $1"
        "   AND (starts_at IS NULL OR starts_at <= now()) AND (ends_at IS NULL OR ends_at > now())),"
        " ins AS (INSERT INTO autoreply_sent (account_id, sender)"
        "   SELECT $1, $2 FROM ar"
        "   ON CONFLICT (account_id, sender) DO UPDATE SET sent_at = now()"
        "   WHERE autoreply_sent.sent_at <= now() - make_interval(secs => (SELECT interval_s FROM ar))"
        "   RETURNING 1)"
        " SELECT ar.* FROM ar WHERE EXISTS (SELECT 1 FROM ins)",
        2, p, "cannot decide on an automatic reply", NULL, err, errlen);
    if (!r)
        return -1;
    int yes = PQntuples(r) == 1;
    if (yes)
        fill(a_r, r);
    PQclear(r);
    if (yes && !a_r->body) {
        dir_set_err(err, errlen, "out of memory");
        return -1;
    }
    return yes;
}
