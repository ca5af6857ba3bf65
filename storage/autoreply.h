/* The auto-responder ("vacation") of an account: its text, active period and
 * the interval per sender, and the decision whether a delivered message gets
 * a reply (RFC 3834 rules on which messages may be answered, RFC 5230 §4.1
 * "at most one reply per sender per interval"). The SMTP delivery path asks
 * autoreply_decide() after a message was stored and queues the reply.
 *
 * Conventions of storage/directory.h: caller-owned connection, 0 / -1 with
 * the reason in err, DIR_ENOTFOUND for an unknown account. */
#ifndef FLOE_STORAGE_AUTOREPLY_H
#define FLOE_STORAGE_AUTOREPLY_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define AUTOREPLY_SUBJECT_MAX 998
#define AUTOREPLY_BODY_MAX 65536
#define AUTOREPLY_DEFAULT_INTERVAL 604800 /* a week, as RFC 5230 §4.1 suggests */

struct autoreply {
    char subject[AUTOREPLY_SUBJECT_MAX + 1]; /* "" = "Auto: " + the original subject */
    char *body;                              /* malloc'd; autoreply_clear_struct() frees */
    int interval_s;                          /* 60 .. one year */
    time_t starts, ends;                     /* 0 = not set */
};

void autoreply_free(struct autoreply *a);

/* Sets (replaces) the auto-responder of the account at address. Returns 0,
 * -1 (bad values) or DIR_ENOTFOUND. */
int autoreply_set(PGconn *c, const char *address, const struct autoreply *a, char *err,
                  size_t errlen);
/* Removes it (harmless when there is none). 0, -1 or DIR_ENOTFOUND. */
int autoreply_clear(PGconn *c, const char *address, char *err, size_t errlen);
/* Reads it: 1 with *a_r filled, 0 when the account has none, -1, DIR_ENOTFOUND. */
int autoreply_get(PGconn *c, const char *address, struct autoreply *a_r, char *err,
                  size_t errlen);

/* The header facts of a delivered message that decide whether it may be
 * answered at all (RFC 3834 §2, §3.1.x). */
struct autoreply_msg {
    const char *sender;          /* envelope sender; "" = null */
    bool auto_submitted;         /* Auto-Submitted: other than "no" */
    bool list_or_bulk;           /* List-Id / List-Unsubscribe / Precedence: bulk|list|junk */
    bool addressed;              /* one of the recipient's addresses is in To/Cc */
};

/* True when msg must never get an automatic reply, whoever receives it:
 * null sender, automatic or list mail, senders like MAILER-DAEMON@,
 * owner-*, *-request@ and noreply addresses. */
bool autoreply_forbidden(const struct autoreply_msg *msg);

/* For a message just delivered to account_id: 1 with *a_r (the reply to send)
 * when the account has an active auto-responder, the message may be answered
 * and the sender has not had a reply within the interval (the send is recorded
 * now, atomically, so two nodes delivering at once reply once); 0 otherwise;
 * -1 on a database error. */
int autoreply_decide(PGconn *c, long long account_id, const struct autoreply_msg *msg,
                     struct autoreply *a_r, char *err, size_t errlen);

#endif
