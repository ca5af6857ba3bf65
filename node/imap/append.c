/* APPEND (RFC 9051 §6.3.12) with MULTIAPPEND (RFC 3502), UIDPLUS APPENDUID (RFC 4315 §3),
 * APPENDLIMIT (RFC 7889), literal8 / UTF8 (RFC 3516, RFC 6855 §4).
 *
 * A message small enough for the command reader's buffer (64 KiB) arrives inside the command.
 * A larger one is streamed: when the reader meets its literal it asks (session.c on_literal),
 * and the bytes go to an anonymous spool file as they arrive, so memory stays bounded whatever
 * the size. Once the whole command is read, one job ingests every message (blob store and MIME
 * metadata, storage/ingest.h), then appends them all in one transaction (mailstore_append runs
 * as a unit of work inside it): a MULTIAPPEND stores all of its messages or none (RFC 3502 §2).
 * Blobs written for a failed command are left to the blob collector. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "node/imap/imap.h"
#include "node/imap/syntax.h"
#include "node/server.h"
#include "proto/bus/bus.pb-c.h"
#include "storage/db.h"
#include "storage/folders.h"
#include "storage/ingest.h"
#include "storage/mailstore.h"

/* Messages in one MULTIAPPEND. */
#define APPEND_MAX 1000

struct imap_append {
    FILE *files[APPEND_MAX];
    uint64_t sizes[APPEND_MAX];
    size_t n, taken;
    FILE *cur;
};

void imap_append_free(struct imap_append **ap)
{
    struct imap_append *a = *ap;
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        if (a->files[i])
            fclose(a->files[i]);
    free(a);
    *ap = NULL;
}

bool imap_append_literal_start(struct imap_session *s, const struct imap_literal_info *info)
{
    /* RFC 7889: over APPENDLIMIT is refused before the data is sent ([TOOBIG]); a message is
     * a top-level literal, or inside UTF8 ( ) */
    if (info->size > s->cfg.append_limit || info->depth > 1)
        return false;
    if (!s->append && !(s->append = calloc(1, sizeof(*s->append))))
        return false;
    struct imap_append *a = s->append;
    if (a->n >= APPEND_MAX)
        return false;
    FILE *f = tmpfile();
    if (!f) {
        conn_log(s->c, LOG_SUMMARY, "cannot create a spool file for APPEND");
        return false;
    }
    a->files[a->n] = f;
    a->sizes[a->n] = info->size;
    a->n++;
    a->cur = f;
    return true;
}

int imap_append_literal_data(struct imap_session *s, const char *data, size_t len)
{
    struct imap_append *a = s->append;
    if (!a || !a->cur)
        return -1;
    return fwrite(data, 1, len, a->cur) == len ? 0 : -1;
}

/* ---- the command ---- */

struct new_msg {
    char *data; /* a message that came inside the command */
    FILE *file; /* or one that was spooled */
    uint64_t size;
    unsigned flags;
    char **kw;
    size_t nkw;
    time_t date;
    struct mail_ingested ing;
    bool ingested;
};

struct append_job {
    struct imap_job base;
    char path[IMAP_NAME_MAX + 1];
    struct new_msg *m;
    size_t n;
    bool trycreate, notmail, noperm, notfound;
    unsigned rights;
    uint32_t uidvalidity;
    uint32_t *uids;
    long long folder;
};

static void append_destroy(struct imap_job *j)
{
    struct append_job *aj = (struct append_job *)j;
    for (size_t i = 0; i < aj->n; i++) {
        struct new_msg *m = &aj->m[i];
        free(m->data);
        if (m->file)
            fclose(m->file);
        for (size_t k = 0; k < m->nkw; k++)
            free(m->kw[k]);
        free(m->kw);
        if (m->ingested)
            mail_ingested_free(&m->ing);
    }
    free(aj->m);
    free(aj->uids);
    free(aj);
}

static int ingest(PGconn *db, struct new_msg *m, char *err, size_t errlen)
{
    struct mail_ingest *in = mail_ingest_new(server_blobs(), db, err, errlen);
    if (!in)
        return -1;
    if (m->data) {
        if (mail_ingest_write(in, m->data, m->size) < 0) {
            mail_ingest_abort(&in);
            snprintf(err, errlen, "cannot store the message");
            return -1;
        }
    } else {
        rewind(m->file);
        char buf[64 * 1024];
        size_t got;
        uint64_t total = 0;
        while ((got = fread(buf, 1, sizeof(buf), m->file)) > 0) {
            if (mail_ingest_write(in, buf, got) < 0) {
                mail_ingest_abort(&in);
                snprintf(err, errlen, "cannot store the message");
                return -1;
            }
            total += got;
        }
        if (ferror(m->file) || total != m->size) {
            mail_ingest_abort(&in);
            snprintf(err, errlen, "cannot read the spooled message");
            return -1;
        }
    }
    if (mail_ingest_finish(&in, &m->ing, err, errlen) < 0)
        return -1;
    m->ingested = true;
    return 0;
}

static void append_work(struct imap_job *j, PGconn *db)
{
    struct append_job *aj = (struct append_job *)j;
    struct imap_mailbox mb;
    int rc = imap_mailbox_resolve(db, j->account_id, j->cfg, aj->path, &mb, j->err, sizeof(j->err));
    if (rc == IMAP_MB_ENOTFOUND) {
        /* RFC 9051 §6.3.12: TRYCREATE when creating it could help: not in another account */
        aj->trycreate = mb.name.ns == IMAP_NS_PERSONAL;
        aj->notfound = !aj->trycreate;
        j->rc = -1;
        return;
    }
    if (rc < 0 || !mb.found || mb.f.kind != FOLDER_KIND_MAIL) {
        aj->notmail = rc == 0;
        if (rc == 0)
            snprintf(j->err, sizeof(j->err), "not mail");
        j->rc = -1;
        return;
    }
    const struct folder f = mb.f;
    if (!(mb.rights & ACL_I)) { /* RFC 4314 §4: APPEND needs "i" */
        aj->noperm = true;
        aj->rights = mb.rights;
        j->rc = -1;
        return;
    }
    /* RFC 4314 §4: flags the account may not set are dropped, as STORE does */
    unsigned keep = MAIL_FLAGS_ALL;
    if (!(mb.rights & ACL_S))
        keep &= ~MAIL_SEEN;
    if (!(mb.rights & ACL_T))
        keep &= ~MAIL_DELETED;
    if (!(mb.rights & ACL_W))
        keep &= MAIL_SEEN | MAIL_DELETED;
    for (size_t i = 0; i < aj->n; i++) {
        aj->m[i].flags &= keep;
        if (!(mb.rights & ACL_W)) {
            for (size_t k = 0; k < aj->m[i].nkw; k++)
                free(aj->m[i].kw[k]);
            aj->m[i].nkw = 0;
        }
    }
    aj->folder = f.id;
    aj->uidvalidity = f.uidvalidity;
    /* the blobs first: the pg blob backend commits on its own, outside our transaction */
    for (size_t i = 0; i < aj->n; i++)
        if (ingest(db, &aj->m[i], j->err, sizeof(j->err)) < 0) {
            j->rc = -2;
            return;
        }
    if (!(aj->uids = calloc(aj->n, sizeof(*aj->uids)))) {
        j->rc = -1;
        return;
    }
    if (db_begin(db) < 0) {
        snprintf(j->err, sizeof(j->err), "cannot begin: %s", PQerrorMessage(db));
        j->rc = -2;
        return;
    }
    long long modseq = 0;
    for (size_t i = 0; i < aj->n; i++) {
        struct new_msg *m = &aj->m[i];
        struct mail_new nm = {.blob_id = m->ing.blob_id,
                              .size = m->ing.size,
                              .internal_date = m->date,
                              .flags = m->flags,
                              .keywords = (const char *const *)m->kw,
                              .nkeywords = m->nkw,
                              .meta = &m->ing.meta};
        rc = mailstore_append(db, f.account_id, f.id, &nm, true, &aj->uids[i], &modseq, j->err,
                              sizeof(j->err));
        if (rc < 0) {
            db_rollback(db);
            j->rc = rc;
            return;
        }
    }
    if (db_commit(db) < 0) {
        snprintf(j->err, sizeof(j->err), "cannot commit: %s", PQerrorMessage(db));
        j->rc = -2;
        return;
    }
    j->rc = 0;
    imap_notify_publish(f.account_id, f.id, modseq, FLOE__BUS__MAILBOX_CHANGE__KIND__APPEND);
}

static void append_done(struct imap_session *s, struct imap_job *j)
{
    struct append_job *aj = (struct append_job *)j;
    if (imap_view_apply(s, j->changes, true) < 0)
        return;
    if (j->rc != 0) {
        if (aj->trycreate)
            imap_tagged(s, "NO", "[TRYCREATE] No such mailbox");
        else if (aj->noperm)
            imap_tagged(s, "NO", "%s", imap_noperm_text(aj->rights));
        else if (aj->notfound)
            imap_tagged(s, "NO", "[NONEXISTENT] No such mailbox");
        else if (aj->notmail)
            imap_tagged(s, "NO", "[CANNOT] Not a mail folder");
        else if (j->rc == MAIL_EQUOTA)
            imap_tagged(s, "NO", "[OVERQUOTA] Quota exceeded");
        else {
            conn_log(s->c, LOG_SUMMARY, "APPEND failed: %s", j->err);
            imap_tagged(s, "NO", "[UNAVAILABLE] APPEND failed");
        }
        return;
    }
    struct imap_seqset *set = imap_seqset_new(aj->n + 1);
    char *txt = NULL;
    for (size_t i = 0; set && i < aj->n; i++)
        imap_seqset_add(set, aj->uids[i]);
    if (set && imap_seqset_format(set, &txt, NULL) < 0)
        txt = NULL;
    imap_seqset_free(&set);
    conn_log(s->c, LOG_DEBUG, "appended %zu message(s) to %s", aj->n, aj->path);
    if (txt)
        imap_tagged(s, "OK", "[APPENDUID %u %s] APPEND completed", aj->uidvalidity, txt);
    else
        imap_tagged(s, "OK", "APPEND completed");
    free(txt);
}

/* One message of the command: [flags] [date-time] message, from args[*i]. 0, or -1 after
 * answering. */
static int parse_message(struct imap_session *s, const struct imap_arg *a, size_t n, size_t *i,
                         struct new_msg *m)
{
    if (*i < n && a[*i].type == IMAP_ARG_LIST) {
        const char *kw[MAIL_KEYWORDS_MAX];
        size_t nkw;
        if (imap_arg_flags(s, &a[*i], &m->flags, kw, MAIL_KEYWORDS_MAX, &nkw) < 0)
            return -1;
        if (nkw && !(m->kw = calloc(nkw, sizeof(char *))))
            goto oom;
        for (size_t k = 0; k < nkw; k++) {
            if (!(m->kw[k] = strdup(kw[k])))
                goto oom;
            m->nkw++;
        }
        (*i)++;
    }
    if (*i < n && a[*i].type == IMAP_ARG_QUOTED) {
        if (imap_datetime_parse(a[*i].str, &m->date) < 0) {
            imap_tagged(s, "BAD", "Invalid date-time");
            return -1;
        }
        (*i)++;
    }
    const struct imap_arg *lit = *i < n ? &a[*i] : NULL;
    if (lit && lit->type == IMAP_ARG_ATOM && !strcasecmp(lit->str, "UTF8") && *i + 1 < n) {
        /* RFC 6855 §4: UTF8 (literal8) */
        size_t k;
        const struct imap_arg *l = imap_arg_list(&a[*i + 1], &k);
        if (!s->utf8 || !l || k != 1 || l[0].type != IMAP_ARG_LITERAL8) {
            imap_tagged(s, "BAD", "Invalid UTF8 APPEND data");
            return -1;
        }
        (*i)++;
        lit = &l[0];
    }
    if (!lit || (lit->type != IMAP_ARG_LITERAL && lit->type != IMAP_ARG_LITERAL8)) {
        imap_tagged(s, "BAD", "Message literal expected");
        return -1;
    }
    (*i)++;
    m->size = lit->len;
    if (lit->len == 0) {
        imap_tagged(s, "NO", "Cannot store an empty message");
        return -1;
    }
    if (lit->len > s->cfg.append_limit) {
        imap_tagged(s, "NO", "[TOOBIG] Message exceeds APPENDLIMIT");
        return -1;
    }
    if (lit->streamed) {
        struct imap_append *ap = s->append;
        if (!ap || ap->taken >= ap->n || ap->sizes[ap->taken] != lit->len) {
            imap_tagged(s, "NO", "[SERVERBUG] Lost the message data");
            return -1;
        }
        m->file = ap->files[ap->taken];
        ap->files[ap->taken++] = NULL;
        if (fflush(m->file) != 0) {
            imap_tagged(s, "NO", "[UNAVAILABLE] Cannot spool the message");
            return -1;
        }
        return 0;
    }
    if (!(m->data = malloc(lit->len)))
        goto oom;
    memcpy(m->data, lit->str, lit->len);
    return 0;
oom:
    imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
    return -1;
}

void imap_cmd_append(struct imap_session *s, const struct imap_arg *a, size_t n, bool uid)
{
    if (n < 2) {
        imap_tagged(s, "BAD", "Syntax: APPEND mailbox [(flags)] [date-time] message");
        return;
    }
    struct append_job *aj = calloc(1, sizeof(*aj));
    if (!aj) {
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    aj->base.destroy = append_destroy;
    if (imap_arg_mailbox(s, &a[0], aj->path, sizeof(aj->path)) < 0) {
        append_destroy(&aj->base);
        return;
    }
    /* at most one message per remaining argument */
    aj->m = calloc(n - 1, sizeof(*aj->m));
    if (!aj->m) {
        append_destroy(&aj->base);
        imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
        return;
    }
    size_t i = 1;
    while (i < n) {
        if (aj->n >= APPEND_MAX) {
            append_destroy(&aj->base);
            imap_tagged(s, "NO", "[LIMIT] Too many messages in one APPEND");
            return;
        }
        if (parse_message(s, a, n, &i, &aj->m[aj->n]) < 0) {
            aj->n++; /* what the failed one holds is freed with the rest */
            append_destroy(&aj->base);
            return;
        }
        aj->n++;
    }
    aj->base.work = append_work;
    aj->base.done = append_done;
    imap_job_submit(s, &aj->base, true);
}
