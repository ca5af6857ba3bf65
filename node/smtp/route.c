/* Recipient routing and message storage for the SMTP services (route.h).
 *
 * Routing order for an address in one of our domains (RFC 5321 §3.6 leaves
 * the mapping to the server): dir_resolve() finds the account (own address,
 * alias, catch-all); a group fans out to its members or keeps the mail in its
 * own folder; an account with a forwarder sends copies to the forward targets
 * (local ones are delivered directly, one hop only, so forwarders cannot
 * loop) and keeps a copy when asked. Anything else is relayed, when the
 * client may relay. */
#include "node/smtp/route.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cluster/bus.h"
#include "storage/aliases.h"
#include "storage/autoreply.h"
#include "storage/blob.h"
#include "storage/db.h"
#include "storage/directory.h"
#include "storage/folders.h"
#include "storage/groups.h"
#include "storage/ingest.h"
#include "storage/mailstore.h"
#include "storage/policy.h"
#include "storage/queue.h"
#include "storage/quota.h"
#include "node/log.h"

/* Most local targets one recipient may fan out to (a group of a whole domain). */
#define ROUTE_TARGETS_MAX 100000

void smtp_route_free(struct smtp_route *r)
{
    free(r->local);
    free(r->remote);
    r->local = NULL;
    r->remote = NULL;
    r->nlocal = r->nremote = 0;
}

static int add_local(struct smtp_route *r, long long account_id, long long folder_id,
                     const char *address)
{
    for (size_t i = 0; i < r->nlocal; i++)
        if (r->local[i].account_id == account_id)
            return 0;
    if (r->nlocal >= ROUTE_TARGETS_MAX)
        return -1;
    struct smtp_local_target *n = realloc(r->local, (r->nlocal + 1) * sizeof(*n));
    if (!n)
        return -1;
    r->local = n;
    n[r->nlocal].account_id = account_id;
    n[r->nlocal].folder_id = folder_id;
    snprintf(n[r->nlocal].address, sizeof(n[r->nlocal].address), "%s", address);
    r->nlocal++;
    return 0;
}

static int add_remote(struct smtp_route *r, const char *address)
{
    for (size_t i = 0; i < r->nremote; i++)
        if (!strcasecmp(r->remote[i], address))
            return 0;
    char(*n)[SMTP_ADDRESS_MAX + 1] = realloc(r->remote, (r->nremote + 1) * sizeof(*n));
    if (!n)
        return -1;
    r->remote = n;
    snprintf(n[r->nremote], sizeof(n[r->nremote]), "%s", address);
    r->nremote++;
    return 0;
}

/* The INBOX of an account as a local target. -1 on a database error or when
 * the account has no INBOX (not a mail account). */
static int add_inbox(PGconn *c, struct smtp_route *r, const struct dir_account *a)
{
    struct folder f;
    if (folders_find_role(c, a->id, FOLDER_ROLE_INBOX, &f) != 0)
        return -1;
    return add_local(r, a->id, f.id, a->address);
}

struct expand_ctx {
    PGconn *c; /* not used by the callback: rows are collected first */
    struct dir_account *accounts;
    size_t n;
    bool overflow;
};

static int collect_member(const struct dir_account *a, void *ctx)
{
    struct expand_ctx *x = ctx;
    if (a->disabled)
        return 0;
    if (x->n >= ROUTE_TARGETS_MAX) {
        x->overflow = true;
        return 1;
    }
    struct dir_account *n = realloc(x->accounts, (x->n + 1) * sizeof(*n));
    if (!n) {
        x->overflow = true;
        return 1;
    }
    x->accounts = n;
    n[x->n++] = *a;
    return 0;
}

static bool domain_is_local(PGconn *c, const char *domain, int *dberr)
{
    char err[128];
    int rc = dir_domain_lookup(c, domain, NULL, NULL, err, sizeof(err));
    if (rc == -1)
        *dberr = 1;
    return rc == 0;
}

/* RFC 5321 §4.5.3.1.10 / RFC 3463: full mailboxes are temporary unless the
 * message could never fit. */
static int quota_reply(PGconn *c, const struct dir_account *a, long long size,
                       struct smtp_reply *reply_r)
{
    struct quota_info q;
    char err[128];
    if (quota_get(c, a->address, &q, err, sizeof(err)) != 0)
        return 0; /* the append accounts again; do not refuse on a read failure */
    if (q.bytes_limit > 0 && size > q.bytes_limit) {
        *reply_r = (struct smtp_reply){552, "5.2.2 Mailbox full: message larger than the quota"};
        return -1;
    }
    bool full = (q.bytes_limit > 0 && q.bytes_used + (size > 0 ? size : 0) > q.bytes_limit) ||
                (q.messages_limit > 0 && q.messages_used >= q.messages_limit);
    if (full) {
        *reply_r = (struct smtp_reply){452, "4.2.2 Mailbox full"};
        return -1;
    }
    return 0;
}

static int dberror(struct smtp_reply *reply_r)
{
    *reply_r = (struct smtp_reply){451, "4.3.0 Temporary lookup failure"};
    return -2;
}

/* The local targets of a group: its members, or its own folder. */
static int route_group(PGconn *c, const struct dir_account *g, struct smtp_route *r,
                       struct smtp_reply *reply_r)
{
    char deliver[16], err[128];
    if (dir_group_get_deliver(c, g->address, deliver, err, sizeof(err)) != 0)
        return dberror(reply_r);
    if (!strcmp(deliver, "folder"))
        return add_inbox(c, r, g) == 0 ? 0 : dberror(reply_r);
    struct expand_ctx x = {.c = c};
    if (dir_group_expand(c, g->address, collect_member, &x, err, sizeof(err)) != 0) {
        free(x.accounts);
        return dberror(reply_r);
    }
    int rc = 0;
    for (size_t i = 0; i < x.n && rc == 0; i++)
        if (!strcmp(x.accounts[i].kind, "user") || !strcmp(x.accounts[i].kind, "resource"))
            rc = add_inbox(c, r, &x.accounts[i]);
    free(x.accounts);
    if (rc != 0 || x.overflow)
        return dberror(reply_r);
    if (r->nlocal == 0) {
        *reply_r = (struct smtp_reply){550, "5.1.1 Group has no members"};
        return -1;
    }
    return 0;
}

int smtp_route_resolve(PGconn *c, const struct smtp_rcpt *rcpt, long long size, bool may_relay,
                       struct smtp_route *r_r, struct smtp_reply *reply_r)
{
    memset(r_r, 0, sizeof(*r_r));
    r_r->rcpt = *rcpt;
    const char *at = strrchr(rcpt->address, '@');
    if (!at) {
        *reply_r = (struct smtp_reply){550, "5.1.1 User unknown"};
        return -1;
    }
    int dberr = 0;
    bool local = domain_is_local(c, at + 1, &dberr);
    if (dberr)
        return dberror(reply_r);
    if (!local) {
        if (!may_relay) {
            *reply_r = (struct smtp_reply){554, "5.7.1 Relay access denied"};
            return -1;
        }
        return add_remote(r_r, rcpt->address) == 0 ? 0 : dberror(reply_r);
    }
    struct dir_target t;
    char err[256];
    int rc = dir_resolve(c, rcpt->address, &t, err, sizeof(err));
    if (rc == DIR_ENOTFOUND) {
        /* RFC 5321 §3.4: refusing at RCPT keeps us from sending backscatter later. */
        *reply_r = (struct smtp_reply){550, "5.1.1 User unknown"};
        return -1;
    }
    if (rc != 0)
        return dberror(reply_r);
    if (t.account.disabled) {
        *reply_r = (struct smtp_reply){550, "5.2.1 Mailbox disabled"};
        return -1;
    }
    /* an account barred from SMTP by its service policy neither sends nor
     * receives through it (the policy is checked at AUTH too) */
    bool allowed = true;
    if (policy_service_allowed(c, t.account.id, "smtp", &allowed, err, sizeof(err)) != 0)
        return dberror(reply_r);
    if (!allowed) {
        *reply_r = (struct smtp_reply){550, "5.2.1 Mailbox unavailable"};
        return -1;
    }
    if (!strcmp(t.account.kind, "group")) {
        rc = route_group(c, &t.account, r_r, reply_r);
        if (rc != 0)
            smtp_route_free(r_r);
        return rc;
    }
    struct dir_forward fw;
    if (dir_forward_get(c, t.account.address, &fw, err, sizeof(err)) != 0)
        return dberror(reply_r);
    bool keep = fw.n == 0 || fw.keep_copy;
    if (keep && quota_reply(c, &t.account, size, reply_r) != 0)
        return -1;
    if (keep && add_inbox(c, r_r, &t.account) != 0) {
        smtp_route_free(r_r);
        return dberror(reply_r);
    }
    for (size_t i = 0; i < fw.n; i++) {
        const char *dat = strrchr(fw.targets[i], '@');
        bool tlocal = dat && domain_is_local(c, dat + 1, &dberr);
        if (dberr) {
            smtp_route_free(r_r);
            return dberror(reply_r);
        }
        struct dir_target ft;
        if (tlocal && dir_resolve(c, fw.targets[i], &ft, err, sizeof(err)) == 0) {
            /* one hop: the target's own forwarder is not applied */
            if (!ft.account.disabled && strcmp(ft.account.kind, "group") &&
                add_inbox(c, r_r, &ft.account) != 0) {
                smtp_route_free(r_r);
                return dberror(reply_r);
            }
        } else if (!tlocal && add_remote(r_r, fw.targets[i]) != 0) {
            smtp_route_free(r_r);
            return dberror(reply_r);
        }
    }
    if (r_r->nlocal == 0 && r_r->nremote == 0) {
        *reply_r = (struct smtp_reply){550, "5.1.1 User unknown"};
        return -1;
    }
    return 0;
}

/* ---- storing ---- */

static int cmp_target(const void *a, const void *b)
{
    long long x = ((const struct smtp_local_target *)a)->account_id;
    long long y = ((const struct smtp_local_target *)b)->account_id;
    return x < y ? -1 : x > y;
}

/* Ingests prefix + the spool into a blob. */
static int ingest(PGconn *c, struct blob_store *bs, FILE *spool, const char *prefix1,
                  const char *prefix2, struct mail_ingested *m_r, char *err, size_t errlen)
{
    struct mail_ingest *in = mail_ingest_new(bs, c, err, errlen);
    if (!in)
        return -1;
    if ((prefix1 && mail_ingest_write(in, prefix1, strlen(prefix1)) < 0) ||
        (prefix2 && mail_ingest_write(in, prefix2, strlen(prefix2)) < 0)) {
        mail_ingest_abort(&in);
        snprintf(err, errlen, "cannot write the message");
        return -1;
    }
    rewind(spool);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), spool)) > 0)
        if (mail_ingest_write(in, buf, n) < 0) {
            mail_ingest_abort(&in);
            snprintf(err, errlen, "cannot write the message");
            return -1;
        }
    if (ferror(spool)) {
        mail_ingest_abort(&in);
        snprintf(err, errlen, "cannot read the spooled message");
        return -1;
    }
    return mail_ingest_finish(&in, m_r, err, errlen);
}

struct published {
    long long account_id, folder_id, modseq;
};

/* ---- auto-replies ---- */

/* What the header section says about answering the message (RFC 3834). */
struct header_facts {
    bool auto_submitted, list_or_bulk;
    char *to_cc;      /* To and Cc field bodies, lower-cased */
    char subject[512];
    char message_id[512];
};

static void field_value(const char *line, size_t namelen, char *out, size_t outlen)
{
    const char *v = line + namelen;
    while (*v == ' ' || *v == '\t')
        v++;
    snprintf(out, outlen, "%s", v);
}

/* Reads the header section of the spooled message (at most 64 KiB), unfolded. */
static void read_header_facts(FILE *spool, struct header_facts *f)
{
    memset(f, 0, sizeof(*f));
    rewind(spool);
    char *hdr = malloc(65536 + 1);
    if (!hdr)
        return;
    size_t n = fread(hdr, 1, 65536, spool);
    hdr[n] = '\0';
    size_t tocap = 4096, tolen = 0;
    f->to_cc = calloc(1, tocap);
    char *line = hdr;
    while (line && *line && *line != '\r' && *line != '\n') {
        /* one field: up to a line end not followed by white space */
        char *end = line;
        while (*end) {
            if (*end == '\n' && end[1] != ' ' && end[1] != '\t')
                break;
            end++;
        }
        char *next = *end ? end + 1 : NULL;
        *end = '\0';
        for (char *p = line; *p; p++)
            if (*p == '\r' || *p == '\n' || *p == '\t')
                *p = ' ';
        if (!strncasecmp(line, "Auto-Submitted:", 15)) {
            char v[64];
            field_value(line, 15, v, sizeof(v));
            if (strncasecmp(v, "no", 2) != 0)
                f->auto_submitted = true;
        } else if (!strncasecmp(line, "Precedence:", 11)) {
            char v[64];
            field_value(line, 11, v, sizeof(v));
            if (!strncasecmp(v, "bulk", 4) || !strncasecmp(v, "list", 4) ||
                !strncasecmp(v, "junk", 4))
                f->list_or_bulk = true;
        } else if (!strncasecmp(line, "List-Id:", 8) || !strncasecmp(line, "List-Unsubscribe:", 17)) {
            f->list_or_bulk = true;
        } else if (!strncasecmp(line, "Subject:", 8)) {
            field_value(line, 8, f->subject, sizeof(f->subject));
        } else if (!strncasecmp(line, "Message-ID:", 11)) {
            field_value(line, 11, f->message_id, sizeof(f->message_id));
        } else if ((!strncasecmp(line, "To:", 3) || !strncasecmp(line, "Cc:", 3)) && f->to_cc) {
            size_t l = strlen(line);
            if (tolen + l + 2 <= 65536) {
                if (tolen + l + 2 > tocap) {
                    char *g = realloc(f->to_cc, tolen + l + 2);
                    if (!g)
                        break;
                    f->to_cc = g;
                    tocap = tolen + l + 2;
                }
                for (size_t i = 0; i < l; i++)
                    f->to_cc[tolen++] = (line[i] >= 'A' && line[i] <= 'Z') ? (char)(line[i] + 32) : line[i];
                f->to_cc[tolen++] = ' ';
                f->to_cc[tolen] = '\0';
            }
        }
        line = next;
    }
    free(hdr);
}

static bool mentions(const char *to_cc, const char *address)
{
    if (!to_cc || !*address)
        return false;
    char low[SMTP_ADDRESS_MAX + 1];
    size_t i = 0;
    for (; address[i] && i < SMTP_ADDRESS_MAX; i++)
        low[i] = (address[i] >= 'A' && address[i] <= 'Z') ? (char)(address[i] + 32) : address[i];
    low[i] = '\0';
    return strstr(to_cc, low) != NULL;
}

/* Queues the reply of one account's auto-responder. */
static int queue_autoreply(PGconn *c, struct blob_store *bs, const struct smtp_message *m,
                           const struct smtp_local_target *t, const struct header_facts *f,
                           const struct autoreply *a, char *err, size_t errlen)
{
    char date[64], id[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    snprintf(id, sizeof(id), "%lld.%lld", (long long)now, t->account_id);
    char subject[1100];
    if (a->subject[0])
        snprintf(subject, sizeof(subject), "%s", a->subject);
    else
        snprintf(subject, sizeof(subject), "Auto: %s", f->subject);
    char refs[1100] = "";
    if (f->message_id[0])
        snprintf(refs, sizeof(refs), "In-Reply-To: %s\r\nReferences: %s\r\n", f->message_id,
                 f->message_id);
    char *msg = NULL;
    int len = asprintf(&msg,
                       "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: %s\r\n"
                       "Message-ID: <autoreply.%s@%s>\r\n%sAuto-Submitted: auto-replied\r\n"
                       "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                       "Content-Transfer-Encoding: 8bit\r\n\r\n%s\r\n",
                       t->address, m->mail->address, subject, date, id,
                       m->hostname ? m->hostname : "localhost", refs, a->body);
    if (len < 0)
        return -1;
    char blob_id[BLOB_ID_LEN + 1];
    int rc = blob_put(bs, c, msg, (size_t)len, blob_id, err, errlen);
    free(msg);
    if (rc != 0)
        return -1;
    /* RFC 3834 §3.3: sent from the null sender, so it cannot bounce back */
    struct queue_message_new qm = {.blob_id = blob_id,
                                   .size = (unsigned long long)len,
                                   .sender = "",
                                   .body = SMTP_BODY_8BITMIME,
                                   .is_notice = true,
                                   .origin_node = m->node,
                                   .lifetime = m->queue_lifetime};
    struct queue_rcpt_new qr = {.address = m->mail->address};
    return queue_enqueue(c, &qm, &qr, 1, NULL, err, errlen);
}

/* After a delivery: the auto-replies owed by the accounts that got it.
 * Returns how many were queued. */
static int autoreplies(PGconn *c, struct blob_store *bs, const struct smtp_message *m,
                       const struct smtp_local_target *targets, size_t n)
{
    if (!m->mail->address[0] || n == 0)
        return 0; /* never to the null sender: no need to read anything */
    struct header_facts f;
    read_header_facts(m->spool, &f);
    int made = 0;
    for (size_t i = 0; i < n; i++) {
        bool addressed = mentions(f.to_cc, targets[i].address);
        for (size_t r = 0; r < m->nroutes && !addressed; r++)
            for (size_t j = 0; j < m->routes[r].nlocal && !addressed; j++)
                if (m->routes[r].local[j].account_id == targets[i].account_id)
                    addressed = mentions(f.to_cc, m->routes[r].rcpt.address);
        struct autoreply_msg am = {.sender = m->mail->address,
                                   .auto_submitted = f.auto_submitted,
                                   .list_or_bulk = f.list_or_bulk,
                                   .addressed = addressed};
        struct autoreply a;
        char err[256];
        int d = autoreply_decide(c, targets[i].account_id, &am, &a, err, sizeof(err));
        if (d < 0) {
            log_write("smtp", LOG_SUMMARY, NULL, NULL, "auto-reply of %s: %s", targets[i].address,
                      err);
            continue;
        }
        if (d == 0)
            continue;
        if (queue_autoreply(c, bs, m, &targets[i], &f, &a, err, sizeof(err)) == 0)
            made++;
        else
            log_write("smtp", LOG_SUMMARY, NULL, NULL, "auto-reply of %s not queued: %s",
                      targets[i].address, err);
        autoreply_free(&a);
    }
    free(f.to_cc);
    return made;
}

int smtp_message_store(PGconn *c, struct blob_store *bs, const struct smtp_message *m,
                       long long *queue_id_r, int *autoreplies_r, char *err, size_t errlen)
{
    *queue_id_r = 0;
    *autoreplies_r = 0;
    /* every local target once, in account order (the account row locks are
     * taken in that order, so two deliveries cannot deadlock) */
    size_t nlocal = 0, nremote = 0;
    for (size_t i = 0; i < m->nroutes; i++) {
        nlocal += m->routes[i].nlocal;
        nremote += m->routes[i].nremote;
    }
    struct smtp_local_target *targets = nlocal ? calloc(nlocal, sizeof(*targets)) : NULL;
    struct published *pub = nlocal ? calloc(nlocal, sizeof(*pub)) : NULL;
    struct queue_rcpt_new *qr = nremote ? calloc(nremote, sizeof(*qr)) : NULL;
    if ((nlocal && (!targets || !pub)) || (nremote && !qr)) {
        free(targets);
        free(pub);
        free(qr);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t k = 0, q = 0;
    for (size_t i = 0; i < m->nroutes; i++) {
        const struct smtp_route *r = &m->routes[i];
        for (size_t j = 0; j < r->nlocal; j++)
            targets[k++] = r->local[j];
        for (size_t j = 0; j < r->nremote; j++) {
            bool dup = false;
            for (size_t x = 0; x < q && !dup; x++)
                dup = !strcasecmp(qr[x].address, r->remote[j]);
            if (dup)
                continue;
            qr[q].address = r->remote[j];
            qr[q].orcpt = r->rcpt.orcpt[0] ? r->rcpt.orcpt : NULL;
            qr[q].notify = r->rcpt.notify;
            q++;
        }
    }
    if (nlocal > 1)
        qsort(targets, nlocal, sizeof(*targets), cmp_target);
    size_t unique = 0;
    for (size_t i = 0; i < nlocal; i++)
        if (unique == 0 || targets[unique - 1].account_id != targets[i].account_id)
            targets[unique++] = targets[i];

    int rc = -1;
    struct mail_ingested lm = {0}, rm = {0};
    bool have_l = false, have_r = false;
    if (unique) {
        char rp[SMTP_ADDRESS_MAX + 32];
        snprintf(rp, sizeof(rp), "Return-Path: <%s>\r\n", m->mail->address);
        if (ingest(c, bs, m->spool, rp, m->received, &lm, err, errlen) < 0)
            goto out;
        have_l = true;
    }
    if (q) {
        if (ingest(c, bs, m->spool, m->received, NULL, &rm, err, errlen) < 0)
            goto out;
        have_r = true;
    }
    if (db_begin(c) < 0) {
        db_set_error(err, errlen, c, NULL, "cannot begin");
        rc = -2;
        goto out;
    }
    for (size_t i = 0; i < unique; i++) {
        struct mail_new nm = {.blob_id = lm.blob_id, .size = lm.size, .meta = &lm.meta};
        uint32_t uid;
        long long modseq;
        /* Quota was checked at RCPT; a message accepted there is not lost to a
         * race with another delivery. */
        if (mailstore_append(c, targets[i].account_id, targets[i].folder_id, &nm, false, &uid,
                             &modseq, err, errlen) != 0) {
            db_rollback(c);
            goto out;
        }
        pub[i] = (struct published){targets[i].account_id, targets[i].folder_id, modseq};
    }
    if (q) {
        struct queue_message_new qm = {
            .blob_id = rm.blob_id,
            .size = rm.size,
            .sender = m->mail->address,
            .envid = m->mail->envid,
            .ret = m->mail->ret,
            .body = m->mail->body,
            .smtputf8 = m->mail->smtputf8,
            .origin_node = m->node,
            .lifetime = m->queue_lifetime,
            .auth_account = m->auth_account,
        };
        if (queue_enqueue(c, &qm, qr, q, queue_id_r, err, errlen) != 0) {
            db_rollback(c);
            goto out;
        }
    }
    if (db_commit(c) != 0) {
        db_set_error(err, errlen, c, NULL, "cannot commit");
        db_rollback(c);
        rc = -2;
        goto out;
    }
    rc = 0;
    for (size_t i = 0; i < unique; i++)
        bus_publish_mailbox(pub[i].account_id, pub[i].folder_id, pub[i].modseq, 1 /* APPEND */);
    *autoreplies_r = autoreplies(c, bs, m, targets, unique);
out:
    if (have_l)
        mail_ingested_free(&lm);
    if (have_r)
        mail_ingested_free(&rm);
    free(targets);
    free(pub);
    free(qr);
    return rc;
}
