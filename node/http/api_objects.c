/* The admin API's handlers for the objects around accounts and domains:
 * aliases, domain aliases and catch-all, forwarding, auto-responders, groups
 * and their members, quotas, service and login policies, the outbound queue,
 * and domain administrators (docs/API.md). The route table, authentication,
 * scope and If-Match handling are in node/http/api.c (api_internal.h).
 *
 * Each handler reads what it needs from the request, asks a domain
 * administrator's scope where the object it names is not the route's own
 * (an alias's domain, a catch-all's account, a new member's domain), and makes
 * the same storage call floectl makes; reads go through node/http/api_json.h,
 * floectl's --json forms. Storage validates every value; the handlers check
 * only the JSON types. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/http/api_internal.h"
#include "node/http/api_json.h"
#include "storage/aliases.h"
#include "storage/autoreply.h"
#include "storage/dirview.h"
#include "storage/domainadmin.h"
#include "storage/groups.h"
#include "storage/policy.h"
#include "storage/queue.h"
#include "storage/quota.h"

/* The domain part of an address, or the name itself when it has no '@'. */
static const char *domain_of(const char *name)
{
    const char *at = strrchr(name, '@');
    return at ? at + 1 : name;
}

/* The account's address as stored (canonical case and domain), so that every
 * spelling of it gives the same representation and entity tag. */
static int canonical_account(PGconn *c, const char *address, char out[DIR_ADDRESS_SIZE], char *err,
                             size_t errlen)
{
    struct dir_account acc;
    int rc = dir_account_find(c, address, &acc, err, errlen);
    if (rc == 0)
        snprintf(out, DIR_ADDRESS_SIZE, "%s", acc.address);
    return rc;
}

static int created(struct api_job *a, json_t *o)
{
    a->status = 201;
    a->out = o;
    return 0;
}

static int deleted(struct api_job *a, int rc)
{
    if (rc == 0)
        a->status = 204;
    return rc;
}

/* ---- account aliases ---- */

int api_aliases_list(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    a->out = json_array();
    return dir_alias_list(c, a->p1, api_json_collect_name, a->out, err, errlen);
}

int api_alias_add(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    static const char *const fields[] = {"alias", NULL};
    const char *alias;
    char account[DIR_ADDRESS_SIZE];
    int rc = api_body_only(a, fields, err, errlen);
    if (rc == 0)
        rc = api_body_str(a, "alias", true, &alias, err, errlen);
    /* the alias takes an address of its domain: that domain must be the
     * administrator's too, not only the account's */
    if (rc == 0 && strchr(alias, '@'))
        rc = api_check_domain(a, c, domain_of(alias), err, errlen);
    if (rc == 0)
        rc = dir_alias_add(c, alias, a->p1, err, errlen);
    if (rc == 0)
        rc = canonical_account(c, a->p1, account, err, errlen);
    if (rc != 0)
        return rc;
    /* as stored: lower case, under the domain's own name */
    struct dir_address ad;
    char own[DIR_DOMAIN_MAX + 1], stored[DIR_ADDRESS_SIZE];
    if (dir_address_parse(alias, &ad, NULL, 0) == 0 &&
        dir_domain_lookup(c, ad.domain, NULL, own, NULL, 0) == 0)
        snprintf(stored, sizeof stored, "%s@%s", ad.lower, own);
    else
        snprintf(stored, sizeof stored, "%s", alias);
    return created(a, json_pack("{s:s,s:s}", "alias", stored, "account", account));
}

int api_alias_delete(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    if (!a->who.is_admin) {
        /* a domain administrator removes aliases of its domains that lead to
         * accounts it manages */
        int rc = api_check_domain(a, c, domain_of(a->p1), err, errlen);
        struct dir_target t;
        if (rc == 0 && dir_resolve(c, a->p1, &t, NULL, 0) == 0 && t.via == DIR_VIA_ALIAS)
            rc = api_check_account(a, c, t.account.address, err, errlen);
        if (rc != 0)
            return rc;
    }
    return deleted(a, dir_alias_remove(c, a->p1, err, errlen));
}

/* ---- domain aliases and catch-all ---- */

int api_domain_aliases_list(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    a->out = json_array();
    return dir_domain_alias_list(c, a->p1, api_json_collect_domain_alias, a->out, err, errlen);
}

int api_domain_alias_add(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    static const char *const fields[] = {"alias", NULL};
    const char *alias;
    char own[DIR_DOMAIN_MAX + 1], name[DIR_DOMAIN_MAX + 1];
    int rc = api_body_only(a, fields, err, errlen);
    if (rc == 0)
        rc = api_body_str(a, "alias", true, &alias, err, errlen);
    if (rc == 0)
        rc = dir_domain_alias_add(c, alias, a->p1, err, errlen);
    if (rc == 0)
        rc = dir_domain_lookup(c, a->p1, NULL, own, err, errlen);
    if (rc != 0)
        return rc;
    if (dir_domain_name_check(alias, name, sizeof name, NULL, 0) != 0)
        snprintf(name, sizeof name, "%s", alias);
    return created(a, json_pack("{s:s,s:s}", "alias", name, "domain", own));
}

int api_domain_alias_delete(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    char own[DIR_DOMAIN_MAX + 1];
    struct dir_domain_info d;
    int rc = dir_domain_lookup(c, a->p1, NULL, own, err, errlen);
    if (rc == 0)
        rc = dir_view_domain(c, a->p2, &d, err, errlen);
    /* only an alias of this domain: not the domain itself, not another's */
    if (rc == 0 && strcmp(d.alias_of, own) != 0) {
        dir_set_err(err, errlen, "%s is not an alias of %s", a->p2, own);
        rc = DIR_ENOTFOUND;
    }
    return deleted(a, rc ? rc : dir_domain_alias_remove(c, a->p2, err, errlen));
}

int api_catchall_get(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    char own[DIR_DOMAIN_MAX + 1];
    int rc = dir_domain_lookup(c, a->p1, NULL, own, err, errlen);
    return rc ? rc : api_json_catchall_read(c, own, &a->out, err, errlen);
}

int api_catchall_put(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    static const char *const fields[] = {"catchall", "domain", NULL};
    const char *account;
    int rc = api_body_only(a, fields, err, errlen);
    if (rc == 0)
        rc = api_body_str(a, "catchall", true, &account, err, errlen);
    /* the mail of the domain's unknown names goes to that account: it must be
     * one the administrator manages */
    if (rc == 0)
        rc = api_check_account(a, c, account, err, errlen);
    return rc ? rc : dir_domain_set_catchall(c, a->p1, account, err, errlen);
}

int api_catchall_delete(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    return deleted(a, dir_domain_set_catchall(c, a->p1, NULL, err, errlen));
}

/* ---- forwarding ---- */

int api_forward_get(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    char address[DIR_ADDRESS_SIZE];
    int rc = canonical_account(c, a->p1, address, err, errlen);
    return rc ? rc : api_json_forward_read(c, address, &a->out, err, errlen);
}

int api_forward_put(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    static const char *const fields[] = {"targets", "keep_copy", "address", NULL};
    int keep;
    int rc = api_body_only(a, fields, err, errlen);
    if (rc == 0)
        rc = api_body_bool(a, "keep_copy", &keep, err, errlen);
    if (rc != 0)
        return rc;
    json_t *t = json_object_get(a->body, "targets");
    size_t n = json_array_size(t);
    if (!json_is_array(t) || n == 0 || n > DIR_FORWARD_MAX) {
        dir_set_err(err, errlen,
                    "\"targets\" must be a list of 1 to %d addresses (DELETE "
                    "ends forwarding)",
                    DIR_FORWARD_MAX);
        return API_EBADREQ;
    }
    const char *targets[DIR_FORWARD_MAX];
    for (size_t i = 0; i < n; i++) {
        targets[i] = json_string_value(json_array_get(t, i));
        if (targets[i] == NULL) {
            dir_set_err(err, errlen, "\"targets\" must hold addresses as strings");
            return API_EBADREQ;
        }
    }
    return dir_forward_set(c, a->p1, targets, n, keep == 1, err, errlen);
}

int api_forward_delete(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    return deleted(a, dir_forward_clear(c, a->p1, err, errlen));
}

/* ---- auto-responder ---- */

int api_autoreply_get(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    char address[DIR_ADDRESS_SIZE];
    int rc = canonical_account(c, a->p1, address, err, errlen);
    return rc ? rc : api_json_autoreply_read(c, address, &a->out, err, errlen);
}

/* An integer field into *v_r (unchanged when absent or null, the "not set"
 * of a time). 0 or API_EBADREQ. */
static int int_field(struct api_job *a, const char *key, long long min, long long max,
                     long long *v_r, char *err, size_t errlen)
{
    json_t *v = json_object_get(a->body, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        dir_set_err(err, errlen, "\"%s\" must be a whole number from %lld to %lld", key, min, max);
        return API_EBADREQ;
    }
    *v_r = json_integer_value(v);
    return 0;
}

int api_autoreply_put(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    static const char *const fields[] = {"body",  "subject", "interval", "from",
                                         "until", "address", "enabled",  NULL};
    const char *body, *subject;
    int enabled;
    long long interval = AUTOREPLY_DEFAULT_INTERVAL, from = 0, until = 0;
    /* times up to the year 9999 */
    int rc = api_body_only(a, fields, err, errlen);
    if (rc == 0)
        rc = api_body_str(a, "body", true, &body, err, errlen);
    if (rc == 0)
        rc = api_body_str(a, "subject", false, &subject, err, errlen);
    if (rc == 0)
        rc = api_body_bool(a, "enabled", &enabled, err, errlen);
    if (rc == 0)
        rc = int_field(a, "interval", 0, 1LL << 31, &interval, err, errlen);
    if (rc == 0)
        rc = int_field(a, "from", 0, 253402300799LL, &from, err, errlen);
    if (rc == 0)
        rc = int_field(a, "until", 0, 253402300799LL, &until, err, errlen);
    if (rc == 0 && enabled == 0) {
        dir_set_err(err, errlen, "DELETE turns the auto-responder off");
        rc = API_EBADREQ;
    }
    if (rc == 0 && subject && strlen(subject) > AUTOREPLY_SUBJECT_MAX) {
        dir_set_err(err, errlen, "the subject is longer than %d bytes", AUTOREPLY_SUBJECT_MAX);
        rc = API_EBADREQ;
    }
    if (rc != 0)
        return rc;
    /* ~1 KiB of subject: off the worker's stack */
    struct autoreply *ar = calloc(1, sizeof *ar);
    if (ar == NULL || (ar->body = strdup(body)) == NULL) {
        free(ar);
        dir_set_err(err, errlen, "out of memory");
        return -1;
    }
    snprintf(ar->subject, sizeof ar->subject, "%s", subject ? subject : "");
    ar->interval_s = (int)(interval > 1LL << 30 ? 1LL << 30 : interval);
    ar->starts = (time_t)from;
    ar->ends = (time_t)until;
    rc = autoreply_set(c, a->p1, ar, err, errlen);
    autoreply_free(ar);
    free(ar);
    return rc;
}

int api_autoreply_delete(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    return deleted(a, autoreply_clear(c, a->p1, err, errlen));
}

/* ---- groups and members ---- */

/* Looks the group up; DIR_ENOTFOUND also for an account of another kind. */
static int group_find(PGconn *c, const char *address, struct dir_account *g_r, char *err,
                      size_t errlen)
{
    int rc = dir_account_find(c, address, g_r, err, errlen);
    if (rc == 0 && strcmp(g_r->kind, "group") != 0) {
        dir_set_err(err, errlen, "%s is not a group", g_r->address);
        rc = DIR_ENOTFOUND;
    }
    return rc;
}

/* The group as JSON (the account and its delivery) with its version as the
 * entity tag, in a->out. */
static int group_answer(struct api_job *a, PGconn *c, const char *address, char *err, size_t errlen)
{
    struct dir_account g;
    char deliver[16];
    long long version;
    int rc = group_find(c, address, &g, err, errlen);
    if (rc == 0)
        rc = dir_group_get_deliver(c, g.address, deliver, err, errlen);
    if (rc == 0)
        rc = dir_account_version(c, g.address, &version, err, errlen);
    if (rc != 0)
        return rc;
    json_decref(a->out);
    a->out = api_json_account(&g);
    json_object_set_new(a->out, "deliver_to", json_string(deliver));
    snprintf(a->etag, sizeof a->etag, "%lld", version);
    return 0;
}

int api_group_get(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    return group_answer(a, c, a->p1, err, errlen);
}

int api_group_add(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    static const char *const fields[] = {"address", "full_name", "deliver_to", NULL};
    const char *address, *full_name, *deliver_to;
    int rc = api_body_only(a, fields, err, errlen);
    if (rc == 0)
        rc = api_body_str(a, "address", true, &address, err, errlen);
    if (rc == 0)
        rc = api_body_str(a, "full_name", false, &full_name, err, errlen);
    if (rc == 0)
        rc = api_body_str(a, "deliver_to", false, &deliver_to, err, errlen);
    if (rc == 0)
        rc = api_check_account(a, c, address, err, errlen);
    if (rc == 0)
        rc = dir_group_add(c, address, full_name, deliver_to, err, errlen);
    if (rc == 0)
        rc = group_answer(a, c, address, err, errlen);
    if (rc == 0)
        a->status = 201;
    return rc;
}

int api_group_put(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    /* the fields of the GET, so a changed GET answer can be sent back; the
     * read-only ones are ignored */
    static const char *const fields[] = {"full_name", "deliver_to", "disabled", "address",
                                         "id",        "kind",       "admin",    NULL};
    const char *full_name, *deliver_to;
    int disabled;
    struct dir_account g;
    long long version;
    int rc = api_body_only(a, fields, err, errlen);
    if (rc == 0)
        rc = api_body_str(a, "full_name", false, &full_name, err, errlen);
    if (rc == 0)
        rc = api_body_str(a, "deliver_to", false, &deliver_to, err, errlen);
    if (rc == 0)
        rc = api_body_bool(a, "disabled", &disabled, err, errlen);
    if (rc == 0)
        rc = group_find(c, a->p1, &g, err, errlen);
    if (rc != 0)
        return rc;
    /* one statement: the name, the delivery and the flag change together or not at all */
    struct dir_account_change ch = {
        .full_name = full_name, .disabled = disabled, .deliver_to = deliver_to};
    return dir_account_update(c, g.address, 0, &ch, &version, err, errlen);
}

int api_group_delete(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    struct dir_account g;
    int rc = group_find(c, a->p1, &g, err, errlen);
    return deleted(a, rc ? rc : dir_account_delete(c, g.address, err, errlen));
}

int api_members_list(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    struct dir_account g;
    int rc = group_find(c, a->p1, &g, err, errlen);
    return rc ? rc : api_json_members_read(c, g.address, a->expand, &a->out, err, errlen);
}

int api_member_add(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    static const char *const fields[] = {"member", "kind", "name", NULL};
    const char *member, *kind, *name;
    struct dir_account g;
    int rc = api_body_only(a, fields, err, errlen);
    if (rc == 0)
        rc = api_body_str(a, "member", false, &member, err, errlen);
    /* "name" as in the listing ({"kind", "name"}) */
    if (rc == 0)
        rc = api_body_str(a, "name", member == NULL, &name, err, errlen);
    if (rc == 0)
        rc = api_body_str(a, "kind", false, &kind, err, errlen);
    if (rc != 0)
        return rc;
    if (member == NULL)
        member = name;
    rc = group_find(c, a->p1, &g, err, errlen);
    /* a member from a domain the administrator does not manage would reveal
     * which addresses exist there */
    if (rc == 0)
        rc = api_check_domain(a, c, domain_of(member), err, errlen);
    if (rc == 0)
        rc = dir_group_member_add(c, g.address, member, kind, err, errlen);
    if (rc != 0)
        return rc;
    return created(a, json_pack("{s:s,s:s}", "group", g.address, "member", member));
}

int api_member_delete(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    struct dir_account g;
    int rc = group_find(c, a->p1, &g, err, errlen);
    if (rc == 0)
        rc = dir_group_member_remove(c, g.address, a->p2, *a->q_kind ? a->q_kind : NULL, err,
                                     errlen);
    return deleted(a, rc);
}

/* ---- quotas ---- */

/* A limit field: absent QUOTA_KEEP; null QUOTA_INHERIT (where allowed); a
 * whole number 0..QUOTA_VALUE_MAX (0 unlimited); or a string as floectl takes
 * it ("10M", "unlimited", "inherit": quota_parse()). 0 or API_EBADREQ. */
static int limit_field(struct api_job *a, const char *key, bool sizes, bool inherit, long long *v_r,
                       int *given, char *err, size_t errlen)
{
    json_t *v = json_object_get(a->body, key);
    char why[256];
    *v_r = QUOTA_KEEP;
    if (v == NULL)
        return 0;
    ++*given;
    if (json_is_null(v) && inherit) {
        *v_r = QUOTA_INHERIT;
        return 0;
    }
    if (json_is_integer(v) && json_integer_value(v) >= 0 &&
        json_integer_value(v) <= QUOTA_VALUE_MAX) {
        *v_r = json_integer_value(v);
        return 0;
    }
    if (json_is_string(v) &&
        quota_parse(json_string_value(v), sizes, inherit, v_r, why, sizeof why) == 0)
        return 0;
    dir_set_err(err, errlen, "\"%s\": %s", key,
                json_is_string(v) ? why : "a whole number, a string such as \"10M\", or null");
    return API_EBADREQ;
}

int api_quota_account_get(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    return api_json_quota_account_read(c, a->p1, &a->out, err, errlen);
}

int api_quota_account_put(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    static const char *const fields[] = {"bytes", "messages", NULL};
    long long b, m;
    int given = 0;
    int rc = api_body_only(a, fields, err, errlen);
    if (rc == 0)
        rc = limit_field(a, "bytes", true, true, &b, &given, err, errlen);
    if (rc == 0)
        rc = limit_field(a, "messages", false, true, &m, &given, err, errlen);
    if (rc == 0 && given == 0) {
        dir_set_err(err, errlen, "give \"bytes\" and/or \"messages\"");
        rc = API_EBADREQ;
    }
    return rc ? rc : quota_set_account(c, a->p1, b, m, a->force, err, errlen);
}

int api_quota_domain_get(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    return api_json_quota_domain_read(c, a->p1, &a->out, err, errlen);
}

int api_quota_domain_put(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    static const char *const fields[] = {"bytes_limit",      "messages_limit", "account_bytes",
                                         "account_messages", "domain",         NULL};
    long long b, m, ab, am;
    int given = 0;
    int rc = api_body_only(a, fields, err, errlen);
    if (rc == 0)
        rc = limit_field(a, "bytes_limit", true, false, &b, &given, err, errlen);
    if (rc == 0)
        rc = limit_field(a, "messages_limit", false, false, &m, &given, err, errlen);
    if (rc == 0)
        rc = limit_field(a, "account_bytes", true, true, &ab, &given, err, errlen);
    if (rc == 0)
        rc = limit_field(a, "account_messages", false, true, &am, &given, err, errlen);
    if (rc == 0 && given == 0) {
        dir_set_err(err, errlen, "give at least one limit");
        rc = API_EBADREQ;
    }
    return rc ? rc : quota_set_domain(c, a->p1, b, m, ab, am, a->force, err, errlen);
}

int api_quota_server_get(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    return api_json_quota_server_read(c, &a->out, err, errlen);
}

int api_quota_server_put(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    static const char *const fields[] = {"account_bytes", "account_messages", NULL};
    long long b, m;
    int given = 0;
    int rc = api_body_only(a, fields, err, errlen);
    if (rc == 0)
        rc = limit_field(a, "account_bytes", true, false, &b, &given, err, errlen);
    if (rc == 0)
        rc = limit_field(a, "account_messages", false, false, &m, &given, err, errlen);
    if (rc == 0 && given == 0) {
        dir_set_err(err, errlen, "give \"account_bytes\" and/or \"account_messages\"");
        rc = API_EBADREQ;
    }
    return rc ? rc : quota_set_server(c, b, m, a->force, err, errlen);
}

/* ---- policies ---- */

/* The body {"service": "enabled" | "disabled" | "inherit", ...} as changes. */
static int policy_changes(struct api_job *a, struct policy_change ch[POLICY_SERVICE_COUNT],
                          size_t *n_r, char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    size_t n = 0;
    json_object_foreach(a->body, key, v)
    {
        if (policy_service_check(key, err, errlen) != 0)
            return API_EBADREQ;
        if (!json_is_string(v) ||
            policy_state_parse(json_string_value(v), &ch[n].state, err, errlen) != 0) {
            dir_set_err(err, errlen, "\"%s\" must be \"enabled\", \"disabled\" or \"inherit\"",
                        key);
            return API_EBADREQ;
        }
        ch[n++].service = key; /* a known service: at most POLICY_SERVICE_COUNT keys */
    }
    if (n == 0) {
        dir_set_err(err, errlen, "give at least one service, e.g. {\"pop3\": \"disabled\"}");
        return API_EBADREQ;
    }
    *n_r = n;
    return 0;
}

int api_policies_account_get(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    return api_json_policies_account_read(c, a->p1, &a->out, err, errlen);
}

int api_policies_account_put(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    struct policy_change ch[POLICY_SERVICE_COUNT];
    size_t n;
    int rc = policy_changes(a, ch, &n, err, errlen);
    return rc ? rc : policy_set_account_many(c, a->p1, ch, n, err, errlen);
}

int api_policies_domain_get(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    return api_json_policies_domain_read(c, a->p1, &a->out, err, errlen);
}

int api_policies_domain_put(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    struct policy_change ch[POLICY_SERVICE_COUNT];
    size_t n;
    int rc = policy_changes(a, ch, &n, err, errlen);
    return rc ? rc : policy_set_domain_many(c, a->p1, ch, n, err, errlen);
}

int api_login_policy_get(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    return api_json_login_policy_read(c, &a->out, err, errlen);
}

int api_login_policy_put(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    static const char *const fields[] = {"login_policy", NULL};
    const char *name;
    enum policy_login p;
    int rc = api_body_only(a, fields, err, errlen);
    if (rc == 0)
        rc = api_body_str(a, "login_policy", true, &name, err, errlen);
    if (rc == 0 && policy_login_parse(name, &p, err, errlen) != 0)
        rc = API_EBADREQ;
    return rc ? rc : policy_login_set(c, p, err, errlen);
}

/* ---- the outbound queue ---- */

/* The {id} of the path: a whole number > 0, else no such message. */
static int queue_id(struct api_job *a, long long *id_r, char *err, size_t errlen)
{
    char *end;
    long long v = isdigit((unsigned char)a->p1[0]) ? strtoll(a->p1, &end, 10) : 0;
    if (v <= 0 || *end || strlen(a->p1) > 18) {
        dir_set_err(err, errlen, "no queued message %.32s", a->p1);
        return QUEUE_ENOTFOUND;
    }
    *id_r = v;
    return 0;
}

int api_queue_list(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    return api_json_queue_list_read(c, &a->out, err, errlen);
}

int api_queue_get(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    long long id;
    int rc = queue_id(a, &id, err, errlen);
    return rc ? rc : api_json_queue_show_read(c, id, &a->out, err, errlen);
}

int api_queue_retry(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    long long id, n = 0;
    int rc = queue_id(a, &id, err, errlen);
    if (rc == 0)
        rc = queue_retry(c, id, &n, err, errlen);
    if (rc == 0)
        a->out = json_pack("{s:I,s:I}", "id", (json_int_t)id, "due", (json_int_t)n);
    return rc;
}

int api_queue_retry_all(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    long long n = 0;
    int rc = queue_retry(c, 0, &n, err, errlen);
    if (rc == 0)
        a->out = json_pack("{s:I}", "due", (json_int_t)n);
    return rc;
}

int api_queue_delete(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    long long id;
    int rc = queue_id(a, &id, err, errlen);
    return deleted(a, rc ? rc : queue_delete(c, id, err, errlen));
}

/* ---- domain administrators ---- */

int api_domain_admins_list(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    a->out = json_array();
    return dir_domain_admins(c, a->p1, api_json_collect_address, a->out, err, errlen);
}

int api_domain_admin_add(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    static const char *const fields[] = {"address", NULL};
    const char *address;
    char own[DIR_DOMAIN_MAX + 1], account[DIR_ADDRESS_SIZE];
    int rc = api_body_only(a, fields, err, errlen);
    if (rc == 0)
        rc = api_body_str(a, "address", true, &address, err, errlen);
    if (rc == 0)
        rc = dir_domain_admin_add(c, address, a->p1, err, errlen);
    if (rc == 0)
        rc = dir_domain_lookup(c, a->p1, NULL, own, err, errlen);
    if (rc == 0)
        rc = canonical_account(c, address, account, err, errlen);
    if (rc != 0)
        return rc;
    return created(a, json_pack("{s:s,s:s}", "address", account, "domain", own));
}

int api_domain_admin_delete(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    return deleted(a, dir_domain_admin_remove(c, a->p2, a->p1, err, errlen));
}
