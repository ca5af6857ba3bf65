/* Message ingest (see ingest.h): one pass feeding the blob writer and the MIME
 * parser, then the metadata strings. Section offsets are kept as JSON,
 * [{"s":"1.2","h":[offset,size],"b":[offset,size],"l":lines}, ...], in the
 * IMAP section numbering (RFC 3501 §6.4.5): the parts of a multipart are 1..n;
 * a message that is not multipart has one part, 1, its body; a message/rfc822
 * part also carries its encapsulated message's header and text ("mh", "mb",
 * for N.HEADER and N.TEXT), and that message's parts continue under its number. */
#include "storage/ingest.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/imap/bodystructure.h"
#include "proto/imap/envelope.h"
#include "proto/mime/header.h"
#include "proto/mime/mime.h"

struct mail_ingest {
    struct blob_writer *w;
    struct mime_parser *p;
    uint64_t size;
    bool failed;
};

struct mail_ingest *mail_ingest_new(struct blob_store *bs, PGconn *c, char *err, size_t errlen)
{
    struct mail_ingest *in = calloc(1, sizeof(*in));
    if (!in) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    in->w = blob_writer_new(bs, c, err, errlen);
    in->p = mime_parser_new(NULL);
    if (!in->w || !in->p) {
        if (in->p == NULL)
            snprintf(err, errlen, "out of memory");
        mail_ingest_abort(&in);
        return NULL;
    }
    return in;
}

int mail_ingest_write(struct mail_ingest *in, const void *data, size_t len)
{
    if (in->failed)
        return -1;
    if (blob_writer_write(in->w, data, len) < 0 || mime_parser_feed(in->p, data, len) < 0) {
        in->failed = true;
        return -1;
    }
    in->size += len;
    return 0;
}

void mail_ingest_abort(struct mail_ingest **inp)
{
    struct mail_ingest *in = *inp;
    if (!in)
        return;
    if (in->w)
        blob_writer_abort(&in->w);
    if (in->p)
        mime_parser_free(&in->p);
    free(in);
    *inp = NULL;
}

void mail_ingested_free(struct mail_ingested *m)
{
    for (size_t i = 0; i < sizeof(m->owned) / sizeof(m->owned[0]); i++)
        free(m->owned[i]);
    memset(m, 0, sizeof(*m));
}

/* ---- dates ---- */

time_t mail_parse_date(const char *s)
{
    if (!s)
        return 0;
    static const char *const months[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                         "jul", "aug", "sep", "oct", "nov", "dec"};
    const char *p = s;
    while (*p && !isdigit((unsigned char)*p)) /* optional "Sat, " */
        p++;
    int day, year, h, m, sec = 0;
    char mon[4] = "", zone[8] = "";
    int n = 0;
    if (sscanf(p, "%d %3s %d %d:%d%n", &day, mon, &year, &h, &m, &n) != 5)
        return 0;
    p += n;
    if (*p == ':') {
        int k = 0;
        if (sscanf(p, ":%d%n", &sec, &k) != 1)
            return 0;
        p += k;
    }
    sscanf(p, " %7s", zone);
    int mi = -1;
    for (int i = 0; i < 12; i++)
        if (!strncasecmp(mon, months[i], 3))
            mi = i;
    if (mi < 0 || day < 1 || day > 31 || h > 23 || m > 59 || sec > 60)
        return 0;
    if (year < 50)
        year += 2000; /* RFC 5322 §4.3 obsolete two-digit years */
    else if (year < 1000)
        year += 1900;
    long off = 0;
    if ((zone[0] == '+' || zone[0] == '-') && isdigit((unsigned char)zone[1])) {
        long z = strtol(zone + 1, NULL, 10);
        off = (z / 100) * 3600 + (z % 100) * 60;
        if (zone[0] == '-')
            off = -off;
    } else {
        /* RFC 5322 §4.3 obsolete zones */
        static const struct {
            const char *name;
            int hours;
        } zones[] = {{"EDT", -4}, {"EST", -5}, {"CDT", -5}, {"CST", -6},
                     {"MDT", -6}, {"MST", -7}, {"PDT", -7}, {"PST", -8}};
        for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++)
            if (!strcasecmp(zone, zones[i].name))
                off = zones[i].hours * 3600L;
    }
    struct tm tm = {.tm_year = year - 1900, .tm_mon = mi, .tm_mday = day,
                    .tm_hour = h, .tm_min = m, .tm_sec = sec};
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? 0 : t - off;
}

/* ---- section offsets ---- */

struct json_buf {
    char *s;
    size_t len, cap;
    bool failed;
};

__attribute__((format(printf, 2, 3))) static void jb_add(struct json_buf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n + 64;
        char *t = realloc(b->s, cap);
        if (!t) {
            b->failed = true;
            return;
        }
        b->s = t;
        b->cap = cap;
    }
}

static void emit(struct json_buf *b, const struct mime_part *p, const char *sec,
                 const struct mime_part *msg, bool *first)
{
    jb_add(b, "%s{\"s\":\"%s\",\"h\":[%llu,%llu],\"b\":[%llu,%llu],\"l\":%llu", *first ? "" : ",",
           sec, (unsigned long long)p->header_offset, (unsigned long long)p->header_size,
           (unsigned long long)p->body_offset, (unsigned long long)p->body_size,
           (unsigned long long)p->body_lines);
    if (msg) /* message/rfc822: the encapsulated message's own header and text */
        jb_add(b, ",\"mh\":[%llu,%llu],\"mb\":[%llu,%llu]",
               (unsigned long long)msg->header_offset, (unsigned long long)msg->header_size,
               (unsigned long long)msg->body_offset, (unsigned long long)msg->body_size);
    jb_add(b, "}");
    *first = false;
}

static void walk_message(struct json_buf *b, const struct mime_part *m, const char *prefix,
                         bool *first);

static void walk_part(struct json_buf *b, const struct mime_part *p, const char *sec, bool *first)
{
    const struct mime_part *msg =
        mime_part_is_message(p) && p->nchildren == 1 ? &p->children[0] : NULL;
    emit(b, p, sec, msg, first);
    if (mime_part_is_multipart(p)) {
        for (size_t i = 0; i < p->nchildren; i++) {
            char child[256];
            snprintf(child, sizeof(child), "%s.%zu", sec, i + 1);
            walk_part(b, &p->children[i], child, first);
        }
    } else if (msg) {
        walk_message(b, msg, sec, first);
    }
}

/* RFC 3501 §6.4.5: a message's parts are numbered 1..n (under prefix); a message
 * that is not multipart has one part, 1: its body. */
static void walk_message(struct json_buf *b, const struct mime_part *m, const char *prefix,
                         bool *first)
{
    char sec[256];
    if (!mime_part_is_multipart(m)) {
        snprintf(sec, sizeof(sec), "%s%s1", prefix, *prefix ? "." : "");
        emit(b, m, sec, NULL, first);
        return;
    }
    for (size_t i = 0; i < m->nchildren; i++) {
        snprintf(sec, sizeof(sec), "%s%s%zu", prefix, *prefix ? "." : "", i + 1);
        walk_part(b, &m->children[i], sec, first);
    }
}

/* ---- finish ---- */

static char *own(struct mail_ingested *m, char *s)
{
    for (size_t i = 0; i < sizeof(m->owned) / sizeof(m->owned[0]); i++)
        if (!m->owned[i]) {
            m->owned[i] = s;
            return s;
        }
    free(s);
    return NULL;
}

static char *decoded(const char *raw)
{
    return raw ? mime_header_decode(raw, strlen(raw)) : strdup("");
}

int mail_ingest_finish(struct mail_ingest **inp, struct mail_ingested *out, char *err,
                       size_t errlen)
{
    struct mail_ingest *in = *inp;
    memset(out, 0, sizeof(*out));
    if (in->failed) {
        snprintf(err, errlen, "cannot store the message");
        mail_ingest_abort(inp);
        return -1;
    }
    unsigned long long size = 0;
    int rc = blob_writer_finish(&in->w, out->blob_id, &size, err, errlen);
    struct mime_message *mm = mime_parser_finish(&in->p);
    free(in);
    *inp = NULL;
    if (rc < 0 || !mm) {
        if (!mm)
            snprintf(err, errlen, "out of memory");
        mime_message_free(&mm);
        return -1;
    }
    out->size = size;
    const struct mime_envelope *env = mm->root.envelope;
    char *envelope = NULL, *body = NULL, *bs = NULL;
    size_t l;
    struct json_buf jb = {0};
    jb_add(&jb, "[");
    bool first = true;
    walk_message(&jb, &mm->root, "", &first);
    jb_add(&jb, "]");
    if (imap_envelope_format(env, &envelope, &l) < 0 ||
        imap_bodystructure_format(&mm->root, false, &body, &l) < 0 ||
        imap_bodystructure_format(&mm->root, true, &bs, &l) < 0 || jb.failed) {
        free(envelope);
        free(body);
        free(bs);
        free(jb.s);
        mime_message_free(&mm);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    struct mail_meta *mt = &out->meta;
    mt->envelope = own(out, envelope);
    mt->body = own(out, body);
    mt->bodystructure = own(out, bs);
    mt->parts_json = own(out, jb.s);
    mt->sent_date = env ? mail_parse_date(env->date) : 0;
    mt->subject = own(out, decoded(env ? env->subject : NULL));
    mt->from = own(out, decoded(env ? env->from : NULL));
    mt->to = own(out, decoded(env ? env->to : NULL));
    mt->cc = own(out, decoded(env ? env->cc : NULL));
    mt->message_id = own(out, strdup(env && env->message_id ? env->message_id : ""));
    mt->in_reply_to = own(out, strdup(env && env->in_reply_to ? env->in_reply_to : ""));
    mt->references = own(out, strdup(env && env->references ? env->references : ""));
    mt->search_text = own(out, strdup(mm->search_text ? mm->search_text : ""));
    mime_message_free(&mm);
    if (!mt->envelope || !mt->body || !mt->bodystructure || !mt->parts_json || !mt->subject ||
        !mt->from || !mt->to || !mt->cc || !mt->message_id || !mt->in_reply_to ||
        !mt->references || !mt->search_text) {
        mail_ingested_free(out);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int mail_deliver(PGconn *c, struct blob_store *bs, long long account_id, long long folder_id,
                 const char *data, size_t len, unsigned flags, time_t internal_date,
                 bool enforce_quota, uint32_t *uid_r, long long *modseq_r, char *err,
                 size_t errlen)
{
    struct mail_ingest *in = mail_ingest_new(bs, c, err, errlen);
    if (!in)
        return -1;
    /* in pieces, as a network source would give it */
    for (size_t off = 0; off < len; off += 65536) {
        size_t n = len - off < 65536 ? len - off : 65536;
        if (mail_ingest_write(in, data + off, n) < 0)
            break;
    }
    struct mail_ingested m;
    if (mail_ingest_finish(&in, &m, err, errlen) < 0)
        return -1;
    struct mail_new nm = {.blob_id = m.blob_id,
                          .size = m.size,
                          .internal_date = internal_date,
                          .flags = flags,
                          .meta = &m.meta};
    int rc = mailstore_append(c, account_id, folder_id, &nm, enforce_quota, uid_r, modseq_r, err,
                              errlen);
    mail_ingested_free(&m);
    return rc;
}
