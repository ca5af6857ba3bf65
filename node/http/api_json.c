/* JSON forms of administrative objects (api_json.h), shared by the admin API
 * and floectl --json. Each *_read() is the storage call plus the shaping of its
 * result, so the two front ends cannot drift apart. */
#include "node/http/api_json.h"

#include <stdlib.h>
#include <time.h>

#include "storage/aliases.h"
#include "storage/autoreply.h"
#include "storage/groups.h"

json_t *api_json_account(const struct dir_account *a)
{
    return json_pack("{s:I,s:s,s:s,s:s,s:b,s:b}", "id", (json_int_t)a->id, "address", a->address,
                     "kind", a->kind, "full_name", a->full_name, "disabled", a->disabled, "admin",
                     a->is_admin);
}

int api_json_collect_account(const struct dir_account *a, void *ctx)
{
    return json_array_append_new(ctx, api_json_account(a));
}

int api_json_collect_name(const char *name, void *ctx)
{
    return json_array_append_new(ctx, json_string(name));
}

int api_json_collect_domain_alias(const char *alias, const char *domain, void *ctx)
{
    return json_array_append_new(ctx, json_string(alias));
}

int api_json_collect_address(const struct dir_account *a, void *ctx)
{
    return json_array_append_new(ctx, json_string(a->address));
}

int api_json_collect_member(const char *kind, const char *name, void *ctx)
{
    return json_array_append_new(ctx, json_pack("{s:s,s:s}", "kind", kind, "name", name));
}

const char *api_json_time(long long unix_s, char buf[32])
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    if (unix_s <= 0 || gmtime_r(&t, &tm) == NULL)
        return "-";
    strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

/* Stores o in *o_r when the read succeeded, else drops it; returns rc. */
static int give(int rc, json_t *o, json_t **o_r, char *err, size_t errlen)
{
    if (rc == 0 && o == NULL) {
        dir_set_err(err, errlen, "out of memory");
        rc = -1;
    }
    if (rc != 0) {
        json_decref(o);
        return rc;
    }
    *o_r = o;
    return 0;
}

int api_json_catchall_read(PGconn *c, const char *domain, json_t **o_r, char *err, size_t errlen)
{
    char who[DIR_ADDRESS_SIZE];
    int rc = dir_domain_get_catchall(c, domain, who, err, errlen);
    json_t *o = NULL;
    if (rc == 0)
        o = json_pack("{s:s,s:s?}", "domain", domain, "catchall", *who ? who : NULL);
    return give(rc, o, o_r, err, errlen);
}

int api_json_forward_read(PGconn *c, const char *address, json_t **o_r, char *err, size_t errlen)
{
    /* about 10 KiB: kept off the (worker thread's) stack */
    struct dir_forward *f = malloc(sizeof *f);
    if (f == NULL) {
        dir_set_err(err, errlen, "out of memory");
        return -1;
    }
    int rc = dir_forward_get(c, address, f, err, errlen);
    json_t *o = NULL;
    if (rc == 0) {
        json_t *t = json_array();
        for (size_t i = 0; i < f->n; i++)
            json_array_append_new(t, json_string(f->targets[i]));
        o = json_pack("{s:s,s:b,s:o}", "address", address, "keep_copy", f->keep_copy, "targets", t);
    }
    free(f);
    return give(rc, o, o_r, err, errlen);
}

int api_json_autoreply_read(PGconn *c, const char *address, json_t **o_r, char *err, size_t errlen)
{
    struct autoreply a;
    int rc = autoreply_get(c, address, &a, err, errlen);
    if (rc < 0)
        return rc;
    json_t *o = json_pack("{s:s,s:b}", "address", address, "enabled", rc == 1);
    if (rc == 1) {
        json_object_set_new(o, "subject", json_string(a.subject));
        json_object_set_new(o, "body", json_string(a.body));
        json_object_set_new(o, "interval", json_integer(a.interval_s));
        json_object_set_new(o, "from", a.starts ? json_integer(a.starts) : json_null());
        json_object_set_new(o, "until", a.ends ? json_integer(a.ends) : json_null());
        autoreply_free(&a);
    }
    return give(0, o, o_r, err, errlen);
}

int api_json_members_read(PGconn *c, const char *group, bool expand, json_t **o_r, char *err,
                          size_t errlen)
{
    json_t *a = json_array();
    int rc = expand ? dir_group_expand(c, group, api_json_collect_account, a, err, errlen)
                    : dir_group_member_list(c, group, api_json_collect_member, a, err, errlen);
    return give(rc, a, o_r, err, errlen);
}

/* A limit that may be "not set here" (QUOTA_INHERIT): null. */
static json_t *limit_json(long long v)
{
    return v == QUOTA_INHERIT ? json_null() : json_integer((json_int_t)v);
}

int api_json_quota_account_read(PGconn *c, const char *address, json_t **o_r, char *err,
                                size_t errlen)
{
    struct quota_info q;
    int rc = quota_get(c, address, &q, err, errlen);
    json_t *o = NULL;
    if (rc == 0)
        o = json_pack(
            "{s:s,s:{s:I,s:s,s:I},s:{s:I,s:s,s:I},s:{s:I,s:I,s:I,s:I}}", "address", q.address,
            "bytes", "limit", (json_int_t)q.bytes_limit, "from", quota_source_name(q.bytes_from),
            "used", (json_int_t)q.bytes_used, "messages", "limit", (json_int_t)q.messages_limit,
            "from", quota_source_name(q.messages_from), "used", (json_int_t)q.messages_used,
            "domain", "bytes_limit", (json_int_t)q.domain_bytes_limit, "messages_limit",
            (json_int_t)q.domain_messages_limit, "bytes_used", (json_int_t)q.domain_bytes_used,
            "messages_used", (json_int_t)q.domain_messages_used);
    return give(rc, o, o_r, err, errlen);
}

int api_json_quota_domain_read(PGconn *c, const char *domain, json_t **o_r, char *err,
                               size_t errlen)
{
    struct quota_domain_info q;
    int rc = quota_get_domain(c, domain, &q, err, errlen);
    json_t *o = NULL;
    if (rc == 0)
        o = json_pack("{s:s,s:I,s:I,s:o,s:o,s:I,s:I}", "domain", q.domain, "bytes_limit",
                      (json_int_t)q.bytes_limit, "messages_limit", (json_int_t)q.messages_limit,
                      "account_bytes", limit_json(q.account_bytes), "account_messages",
                      limit_json(q.account_messages), "bytes_used", (json_int_t)q.bytes_used,
                      "messages_used", (json_int_t)q.messages_used);
    return give(rc, o, o_r, err, errlen);
}

int api_json_quota_server_read(PGconn *c, json_t **o_r, char *err, size_t errlen)
{
    struct quota_server_info q;
    int rc = quota_get_server(c, &q, err, errlen);
    json_t *o = NULL;
    if (rc == 0)
        o = json_pack("{s:I,s:I}", "account_bytes", (json_int_t)q.account_bytes, "account_messages",
                      (json_int_t)q.account_messages);
    return give(rc, o, o_r, err, errlen);
}

static json_t *policies_json(const struct policy_service ps[POLICY_SERVICE_COUNT], bool account)
{
    json_t *a = json_array();
    for (int i = 0; i < POLICY_SERVICE_COUNT; i++) {
        json_t *o = json_pack("{s:s,s:s,s:b}", "service", ps[i].service, "domain",
                              policy_state_name(ps[i].domain), "allowed", ps[i].allowed);
        if (account)
            json_object_set_new(o, "account", json_string(policy_state_name(ps[i].account)));
        json_array_append_new(a, o);
    }
    return a;
}

int api_json_policies_domain_read(PGconn *c, const char *domain, json_t **o_r, char *err,
                                  size_t errlen)
{
    struct policy_service ps[POLICY_SERVICE_COUNT];
    int rc = policy_get_domain(c, domain, ps, err, errlen);
    return give(rc, rc == 0 ? policies_json(ps, false) : NULL, o_r, err, errlen);
}

int api_json_policies_account_read(PGconn *c, const char *address, json_t **o_r, char *err,
                                   size_t errlen)
{
    struct policy_service ps[POLICY_SERVICE_COUNT];
    int rc = policy_get_account(c, address, ps, err, errlen);
    return give(rc, rc == 0 ? policies_json(ps, true) : NULL, o_r, err, errlen);
}

int api_json_login_policy_read(PGconn *c, json_t **o_r, char *err, size_t errlen)
{
    enum policy_login p;
    int rc = policy_login_get(c, &p, err, errlen);
    return give(rc, rc == 0 ? json_pack("{s:s}", "login_policy", policy_login_name(p)) : NULL, o_r,
                err, errlen);
}

json_t *api_json_queue_message(const struct queue_info *m)
{
    char rt[32], et[32];
    return json_pack("{s:I,s:I,s:I,s:s,s:s,s:s,s:s,s:b,s:b,s:s,s:s,s:s,s:I,s:i,s:i,s:i,s:s}", "id",
                     (json_int_t)m->id, "age", (json_int_t)m->age, "size", (json_int_t)m->size,
                     "sender", m->sender, "envid", m->envid, "ret", m->ret, "body", m->body,
                     "smtputf8", m->smtputf8, "is_notice", m->is_notice, "received",
                     api_json_time(m->received_unix, rt), "expires",
                     api_json_time(m->expires_unix, et), "origin_node", m->origin_node,
                     "auth_account", (json_int_t)m->auth_account, "queued", m->nqueued, "delivered",
                     m->ndelivered, "failed", m->nfailed, "blob", m->blob_id);
}

static int queue_message_collect(const struct queue_info *m, void *ctx)
{
    return json_array_append_new(ctx, api_json_queue_message(m));
}

int api_json_queue_list_read(PGconn *c, json_t **o_r, char *err, size_t errlen)
{
    json_t *a = json_array();
    int rc = queue_list(c, queue_message_collect, a, err, errlen);
    return give(rc, a, o_r, err, errlen);
}

static int queue_rcpt_collect(const struct queue_rcpt_info *r, void *ctx)
{
    char nt[32], lt[32], ut[32];
    json_t *o =
        json_pack("{s:I,s:s,s:s,s:s,s:i,s:s,s:i,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:b}", "id",
                  (json_int_t)r->id, "address", r->address, "domain", r->domain, "orcpt", r->orcpt,
                  "notify", (int)r->notify, "state", r->state, "attempts", r->attempts,
                  "next_attempt", api_json_time(r->next_attempt_unix, nt), "last_attempt",
                  api_json_time(r->last_attempt_unix, lt), "last_status", r->last_status,
                  "last_reply", r->last_reply, "remote_host", r->remote_host, "lease_node",
                  r->lease_node, "lease_until", api_json_time(r->lease_until_unix, ut), "notice",
                  r->notice, "delay_notified", r->delay_notified);
    return json_array_append_new(json_object_get(ctx, "recipients"), o);
}

static int queue_show_collect(const struct queue_info *m, void *ctx)
{
    return json_object_update_new(ctx, api_json_queue_message(m));
}

int api_json_queue_show_read(PGconn *c, long long id, json_t **o_r, char *err, size_t errlen)
{
    json_t *o = json_pack("{s:[]}", "recipients");
    int rc = queue_show(c, id, queue_show_collect, queue_rcpt_collect, o, err, errlen);
    return give(rc, o, o_r, err, errlen);
}
