/* The admin JSON API on the admin listener, /api/v1 (docs/API.md, described
 * for machines in docs/openapi.yaml). It calls the same storage functions
 * floectl calls, and presents objects through the same builders
 * (node/http/api_json.h): one implementation of each operation.
 *
 * Routing. One table (routes[] below) lists every method and path the API
 * answers; a path names its parameters as {address}, {name}, ... which match
 * one path segment each. A path that matches with another method is 405 with
 * Allow (RFC 9110 §15.5.6); anything else is 404. The table is also what the
 * OpenAPI test compares docs/openapi.yaml with, so keep one route per line.
 *
 * Authentication and scope. Every request carries Basic credentials (over TLS)
 * of a server administrator, who may do everything, or of a domain
 * administrator (storage/domainadmin.h), who may use the routes marked SCOPED,
 * and only on the accounts and domains it administers, never on a server
 * administrator's account: 403 otherwise, whether or not the thing exists, so
 * the answer reveals nothing about other domains. Routes marked SERVER are for
 * server administrators only (domains themselves, domain aliases, domain
 * administrators, server settings, the queue, cluster and service status).
 *
 * Concurrency. Objects carry an entity tag (RFC 9110 §8.8.3): an account or a
 * group its version (migration 0009), any other object a hash of its JSON form
 * without usage counters. A change sent with If-Match applies only while the
 * tag still matches, 412 otherwise (RFC 9110 §13.1.1), so two administrators
 * who start from the same version cannot silently overwrite each other. An
 * account's PATCH compares inside its one UPDATE statement; other objects are
 * read, compared and written under an administrator lock on the object
 * (storage/adminlock.h), which every API node takes for the same sequence.
 *
 * The operation runs on a worker; its status and JSON body go back to the
 * connection's thread (api_done). */
#include <jansson.h>
#include <stdatomic.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/cluster.h"
#include "node/http/api_internal.h"
#include "node/http/api_json.h"
#include "node/http/auth.h"
#include "node/http/http.h"
#include "node/metrics.h"
#include "node/server.h"
#include "node/services.h"
#include "node/workers.h"
#include "storage/adminlock.h"
#include "storage/aliases.h"
#include "storage/directory.h"
#include "storage/dirview.h"
#include "storage/domainadmin.h"
#include "storage/groups.h"
#include "storage/quota.h"

/* Who may use a route. */
enum api_access {
    SERVER, /* server administrators only */
    SCOPED, /* domain administrators too, within their domains */
};

/* What the first path parameter names: the scope a domain administrator needs
 * (SCOPED routes) and the object an If-Match is locked on. */
enum api_object {
    NONE,    /* the handler checks the scope itself (listings, new objects) */
    ACCOUNT, /* {address}: an account */
    DOMAIN,  /* {name}: a domain */
    GLOBAL,  /* a server-wide setting */
};

/* The query parameters a route takes (others are ignored). */
#define Q_DOMAIN 1u /* domain=NAME: only this domain */
#define Q_FORCE 2u  /* force=1: go ahead although refused otherwise */
#define Q_EXPAND 4u /* expand=1: every account a group reaches */
#define Q_KIND 8u   /* kind=K: a member's kind */

struct api_route {
    const char *method;
    const char *path; /* after /api/v1 */
    api_handler fn;   /* NULL: answered on the connection's thread (services) */
    enum api_access access;
    enum api_object obj;
    /* the GET of the same resource: gives the entity tag that If-Match is
     * compared with, and the answer of a successful PUT; NULL none */
    api_handler view;
    unsigned query; /* Q_* */
};

static int domains_list(struct api_job *a, PGconn *c, char *err, size_t errlen);
static int domain_add(struct api_job *a, PGconn *c, char *err, size_t errlen);
static int domain_get(struct api_job *a, PGconn *c, char *err, size_t errlen);
static int domain_delete(struct api_job *a, PGconn *c, char *err, size_t errlen);
static int accounts_list(struct api_job *a, PGconn *c, char *err, size_t errlen);
static int account_add(struct api_job *a, PGconn *c, char *err, size_t errlen);
static int account_get(struct api_job *a, PGconn *c, char *err, size_t errlen);
static int account_update(struct api_job *a, PGconn *c, char *err, size_t errlen);
static int account_delete(struct api_job *a, PGconn *c, char *err, size_t errlen);
static int cluster_get(struct api_job *a, PGconn *c, char *err, size_t errlen);

/* clang-format off */
static const struct api_route routes[] = {
    {"GET",    "/domains",                          domains_list,             SCOPED, NONE,    NULL, 0},
    {"POST",   "/domains",                          domain_add,               SERVER, NONE,    NULL, 0},
    {"GET",    "/domains/{name}",                   domain_get,               SCOPED, DOMAIN,  NULL, 0},
    {"DELETE", "/domains/{name}",                   domain_delete,            SERVER, DOMAIN,  NULL, Q_FORCE},
    {"GET",    "/domains/{name}/aliases",           api_domain_aliases_list,  SCOPED, DOMAIN,  NULL, 0},
    {"POST",   "/domains/{name}/aliases",           api_domain_alias_add,     SERVER, DOMAIN,  NULL, 0},
    {"DELETE", "/domains/{name}/aliases/{alias}",   api_domain_alias_delete,  SERVER, DOMAIN,  NULL, 0},
    {"GET",    "/domains/{name}/catchall",          api_catchall_get,         SCOPED, DOMAIN,  api_catchall_get, 0},
    {"PUT",    "/domains/{name}/catchall",          api_catchall_put,         SCOPED, DOMAIN,  api_catchall_get, 0},
    {"DELETE", "/domains/{name}/catchall",          api_catchall_delete,      SCOPED, DOMAIN,  api_catchall_get, 0},
    {"GET",    "/domains/{name}/quota",             api_quota_domain_get,     SCOPED, DOMAIN,  api_quota_domain_get, 0},
    {"PUT",    "/domains/{name}/quota",             api_quota_domain_put,     SERVER, DOMAIN,  api_quota_domain_get, Q_FORCE},
    {"GET",    "/domains/{name}/policies",          api_policies_domain_get,  SCOPED, DOMAIN,  api_policies_domain_get, 0},
    {"PUT",    "/domains/{name}/policies",          api_policies_domain_put,  SCOPED, DOMAIN,  api_policies_domain_get, 0},
    {"GET",    "/domains/{name}/admins",            api_domain_admins_list,   SERVER, DOMAIN,  NULL, 0},
    {"POST",   "/domains/{name}/admins",            api_domain_admin_add,     SERVER, DOMAIN,  NULL, 0},
    {"DELETE", "/domains/{name}/admins/{address}",  api_domain_admin_delete,  SERVER, DOMAIN,  NULL, 0},
    {"GET",    "/accounts",                         accounts_list,            SCOPED, NONE,    NULL, Q_DOMAIN},
    {"POST",   "/accounts",                         account_add,              SCOPED, NONE,    NULL, 0},
    {"GET",    "/accounts/{address}",               account_get,              SCOPED, ACCOUNT, account_get, 0},
    {"PATCH",  "/accounts/{address}",               account_update,           SCOPED, ACCOUNT, NULL, 0},
    {"DELETE", "/accounts/{address}",               account_delete,           SCOPED, ACCOUNT, account_get, 0},
    {"GET",    "/accounts/{address}/aliases",       api_aliases_list,         SCOPED, ACCOUNT, NULL, 0},
    {"POST",   "/accounts/{address}/aliases",       api_alias_add,            SCOPED, ACCOUNT, NULL, 0},
    {"DELETE", "/aliases/{alias}",                  api_alias_delete,         SCOPED, NONE,    NULL, 0},
    {"GET",    "/accounts/{address}/forward",       api_forward_get,          SCOPED, ACCOUNT, api_forward_get, 0},
    {"PUT",    "/accounts/{address}/forward",       api_forward_put,          SCOPED, ACCOUNT, api_forward_get, 0},
    {"DELETE", "/accounts/{address}/forward",       api_forward_delete,       SCOPED, ACCOUNT, api_forward_get, 0},
    {"GET",    "/accounts/{address}/autoreply",     api_autoreply_get,        SCOPED, ACCOUNT, api_autoreply_get, 0},
    {"PUT",    "/accounts/{address}/autoreply",     api_autoreply_put,        SCOPED, ACCOUNT, api_autoreply_get, 0},
    {"DELETE", "/accounts/{address}/autoreply",     api_autoreply_delete,     SCOPED, ACCOUNT, api_autoreply_get, 0},
    {"GET",    "/accounts/{address}/quota",         api_quota_account_get,    SCOPED, ACCOUNT, api_quota_account_get, 0},
    {"PUT",    "/accounts/{address}/quota",         api_quota_account_put,    SCOPED, ACCOUNT, api_quota_account_get, Q_FORCE},
    {"GET",    "/accounts/{address}/policies",      api_policies_account_get, SCOPED, ACCOUNT, api_policies_account_get, 0},
    {"PUT",    "/accounts/{address}/policies",      api_policies_account_put, SCOPED, ACCOUNT, api_policies_account_get, 0},
    {"GET",    "/groups",                           api_groups_list,          SCOPED, NONE,    NULL, Q_DOMAIN},
    {"POST",   "/groups",                           api_group_add,            SCOPED, NONE,    NULL, 0},
    {"GET",    "/groups/{address}",                 api_group_get,            SCOPED, ACCOUNT, api_group_get, 0},
    {"PUT",    "/groups/{address}",                 api_group_put,            SCOPED, ACCOUNT, api_group_get, 0},
    {"DELETE", "/groups/{address}",                 api_group_delete,         SCOPED, ACCOUNT, api_group_get, 0},
    {"GET",    "/groups/{address}/members",         api_members_list,         SCOPED, ACCOUNT, NULL, Q_EXPAND},
    {"POST",   "/groups/{address}/members",         api_member_add,           SCOPED, ACCOUNT, NULL, 0},
    {"DELETE", "/groups/{address}/members/{member}", api_member_delete,       SCOPED, ACCOUNT, NULL, Q_KIND},
    {"GET",    "/server/quota",                     api_quota_server_get,     SERVER, GLOBAL,  api_quota_server_get, 0},
    {"PUT",    "/server/quota",                     api_quota_server_put,     SERVER, GLOBAL,  api_quota_server_get, Q_FORCE},
    {"GET",    "/server/login-policy",              api_login_policy_get,     SERVER, GLOBAL,  api_login_policy_get, 0},
    {"PUT",    "/server/login-policy",              api_login_policy_put,     SERVER, GLOBAL,  api_login_policy_get, 0},
    {"GET",    "/queue",                            api_queue_list,           SERVER, NONE,    NULL, 0},
    {"POST",   "/queue/retry",                      api_queue_retry_all,      SERVER, NONE,    NULL, 0},
    {"GET",    "/queue/{id}",                       api_queue_get,            SERVER, NONE,    NULL, 0},
    {"DELETE", "/queue/{id}",                       api_queue_delete,         SERVER, NONE,    NULL, 0},
    {"POST",   "/queue/{id}/retry",                 api_queue_retry,          SERVER, NONE,    NULL, 0},
    {"GET",    "/cluster",                          cluster_get,              SERVER, NONE,    NULL, 0},
    {"GET",    "/services",                         NULL,                     SERVER, NONE,    NULL, 0},
};
/* clang-format on */
#define NROUTES (sizeof routes / sizeof routes[0])

/* ---- helpers for the handlers ---- */

static json_t *error_json(const char *msg)
{
    return json_pack("{s:s}", "error", msg);
}

static int may_to_rc(int may, char *err, size_t errlen)
{
    if (may == 1)
        return 0;
    if (may == 0) {
        dir_set_err(err, errlen, "not an administrator of this domain");
        return API_EFORBIDDEN;
    }
    return -1;
}

int api_check_domain(struct api_job *a, PGconn *c, const char *domain, char *err, size_t errlen)
{
    return may_to_rc(dir_admin_may_domain(c, &a->who, domain, err, errlen), err, errlen);
}

int api_check_account(struct api_job *a, PGconn *c, const char *address, char *err, size_t errlen)
{
    return may_to_rc(dir_admin_may_account(c, &a->who, address, err, errlen), err, errlen);
}

int api_body_str(struct api_job *a, const char *key, bool required, const char **v_r, char *err,
                 size_t errlen)
{
    json_t *v = a->body ? json_object_get(a->body, key) : NULL;
    *v_r = NULL;
    if (v == NULL && !required)
        return 0;
    if (!json_is_string(v)) {
        dir_set_err(err, errlen, "\"%s\" must be a string%s", key, v ? "" : " and is required");
        return API_EBADREQ;
    }
    *v_r = json_string_value(v);
    return 0;
}

int api_body_bool(struct api_job *a, const char *key, int *v_r, char *err, size_t errlen)
{
    json_t *v = a->body ? json_object_get(a->body, key) : NULL;
    *v_r = -1;
    if (v == NULL)
        return 0;
    if (!json_is_boolean(v)) {
        dir_set_err(err, errlen, "\"%s\" must be true or false", key);
        return API_EBADREQ;
    }
    *v_r = json_is_true(v);
    return 0;
}

int api_body_only(struct api_job *a, const char *const *allowed, char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    json_object_foreach(a->body, key, v)
    {
        size_t i = 0;
        while (allowed[i] && strcmp(allowed[i], key) != 0)
            i++;
        if (!allowed[i]) {
            dir_set_err(err, errlen, "unknown field \"%.64s\"", key);
            return API_EBADREQ;
        }
    }
    return 0;
}

/* ---- domains ---- */

/* The domain record: name, description, aliases, account count, administrators. */
static int domain_get(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    struct dir_domain_info d;
    int rc = dir_view_domain(c, a->p1, &d, err, errlen);
    if (rc != 0)
        return rc;
    const char *own = d.alias_of[0] ? d.alias_of : d.name;
    json_t *aliases = json_array(), *admins = json_array();
    rc = dir_domain_alias_list(c, own, api_json_collect_domain_alias, aliases, err, errlen);
    if (rc == 0)
        rc = dir_domain_admins(c, own, api_json_collect_address, admins, err, errlen);
    if (rc != 0) {
        json_decref(aliases);
        json_decref(admins);
        return rc;
    }
    a->out = json_pack("{s:s,s:s,s:o,s:I,s:o}", "name", own, "description", d.description,
                       "aliases", aliases, "accounts", (json_int_t)d.accounts, "admins", admins);
    return 0;
}

static int domains_list(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    a->out = json_array();
    return a->who.is_admin ? dir_domain_list(c, api_json_collect_name, a->out, err, errlen)
                           : dir_domain_admin_list(c, a->who.address, api_json_collect_name, a->out,
                                                   err, errlen);
}

static int domain_add(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    static const char *const fields[] = {"name", NULL};
    const char *name;
    int rc = api_body_only(a, fields, err, errlen);
    if (rc == 0)
        rc = api_body_str(a, "name", true, &name, err, errlen);
    if (rc == 0)
        rc = dir_domain_add(c, name, err, errlen);
    if (rc == 0) {
        a->status = 201;
        a->out = json_pack("{s:s}", "name", name);
    }
    return rc;
}

static int domain_delete(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    int rc = dir_domain_delete(c, a->p1, a->force, err, errlen);
    if (rc == 0)
        a->status = 204;
    return rc;
}

/* ---- accounts ---- */

struct collect_kind {
    json_t *out;
    const char *kind; /* NULL: every kind */
};

static int collect_of_kind(const struct dir_account *acc, void *ctx)
{
    struct collect_kind *k = ctx;
    if (k->kind == NULL || strcmp(acc->kind, k->kind) == 0)
        json_array_append_new(k->out, api_json_account(acc));
    return 0;
}

/* The accounts (of kind, NULL any) of ?domain=, else of every domain the
 * administrator may see: all for a server administrator, else its domains. */
static int list_accounts(struct api_job *a, PGconn *c, const char *kind, char *err, size_t errlen)
{
    struct collect_kind k = {json_array(), kind};
    a->out = k.out;
    if (*a->q_domain) {
        int rc = api_check_domain(a, c, a->q_domain, err, errlen);
        return rc ? rc : dir_account_list(c, a->q_domain, collect_of_kind, &k, err, errlen);
    }
    if (a->who.is_admin)
        return dir_account_list(c, NULL, collect_of_kind, &k, err, errlen);
    json_t *domains = json_array();
    int rc = dir_domain_admin_list(c, a->who.address, api_json_collect_name, domains, err, errlen);
    size_t i;
    json_t *d;
    json_array_foreach(domains, i, d)
    {
        if (rc != 0)
            break;
        rc = dir_account_list(c, json_string_value(d), collect_of_kind, &k, err, errlen);
    }
    json_decref(domains);
    return rc;
}

static int accounts_list(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    return list_accounts(a, c, NULL, err, errlen);
}

int api_groups_list(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    return list_accounts(a, c, "group", err, errlen);
}

/* The account at address as JSON with its version as the entity tag. */
static int account_answer(struct api_job *a, PGconn *c, const char *address, char *err,
                          size_t errlen)
{
    struct dir_account acc;
    long long version;
    int rc = dir_account_find(c, address, &acc, err, errlen);
    if (rc == 0)
        rc = dir_account_version(c, acc.address, &version, err, errlen);
    if (rc == 0) {
        json_decref(a->out);
        a->out = api_json_account(&acc);
        snprintf(a->etag, sizeof a->etag, "%lld", version);
    }
    return rc;
}

static int account_get(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    return account_answer(a, c, a->p1, err, errlen);
}

static int account_add(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    static const char *const fields[] = {"address", "password", "full_name", "kind", "admin", NULL};
    const char *address, *password, *full_name, *kind;
    int admin;
    int rc = api_body_only(a, fields, err, errlen);
    if (rc == 0)
        rc = api_body_str(a, "address", true, &address, err, errlen);
    if (rc == 0)
        rc = api_body_str(a, "password", false, &password, err, errlen);
    if (rc == 0)
        rc = api_body_str(a, "full_name", false, &full_name, err, errlen);
    if (rc == 0)
        rc = api_body_str(a, "kind", false, &kind, err, errlen);
    if (rc == 0)
        rc = api_body_bool(a, "admin", &admin, err, errlen);
    if (rc != 0)
        return rc;
    /* making a server administrator is for server administrators */
    if (admin == 1 && !a->who.is_admin) {
        dir_set_err(err, errlen, "only server administrators make server administrators");
        return API_EFORBIDDEN;
    }
    rc = api_check_account(a, c, address, err, errlen);
    if (rc == 0)
        rc = dir_account_add(c, address, kind, password, full_name, admin == 1, err, errlen);
    if (rc == 0)
        rc = account_answer(a, c, address, err, errlen);
    if (rc == 0)
        a->status = 201;
    return rc;
}

static int account_update(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    static const char *const fields[] = {"password", "full_name", "disabled", NULL};
    const char *password, *full_name;
    int disabled;
    int rc = api_body_only(a, fields, err, errlen);
    if (rc == 0)
        rc = api_body_str(a, "password", false, &password, err, errlen);
    if (rc == 0)
        rc = api_body_str(a, "full_name", false, &full_name, err, errlen);
    if (rc == 0)
        rc = api_body_bool(a, "disabled", &disabled, err, errlen);
    if (rc != 0)
        return rc;
    /* the version check happens inside the UPDATE (dir_account_update) */
    long long expected = 0, version;
    if (a->if_match && !a->im.any) {
        char *end = NULL;
        expected = a->im.n == 1 ? strtoll(a->im.tags[0], &end, 10) : 0;
        if (expected <= 0 || *end) {
            dir_set_err(err, errlen, "the account was changed meanwhile");
            return DIR_ECONFLICT;
        }
    }
    struct dir_account_change ch = {
        .password = password, .full_name = full_name, .disabled = disabled};
    rc = dir_account_update(c, a->p1, expected, &ch, &version, err, errlen);
    if (rc == 0)
        rc = account_answer(a, c, a->p1, err, errlen);
    return rc;
}

static int account_delete(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    int rc = dir_account_delete(c, a->p1, err, errlen);
    if (rc == 0)
        a->status = 204;
    return rc;
}

/* ---- cluster and services ---- */

static int cluster_get(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    struct cluster_status st;
    int rc = cluster_status_read(c, &st, err, errlen);
    if (rc != 0)
        return rc;
    json_t *nodes = json_array();
    for (size_t i = 0; i < st.nnodes; i++) {
        const struct cluster_node_status *ns = &st.nodes[i];
        json_t *conns = json_loads(ns->connections, 0, NULL);
        json_array_append_new(nodes,
                              json_pack("{s:s,s:s,s:b,s:s,s:I,s:o}", "node", ns->node_id, "state",
                                        ns->state, "master", ns->master, "version", ns->version,
                                        "heartbeat_age", (json_int_t)ns->heartbeat_age_s,
                                        "connections", conns ? conns : json_object()));
    }
    a->out = json_pack("{s:I,s:s?,s:s?,s:o}", "epoch", (json_int_t)st.epoch, "master",
                       *st.master ? st.master : NULL, "pinned", *st.pinned ? st.pinned : NULL,
                       "nodes", nodes);
    cluster_status_free(&st);
    return 0;
}

/* This node's services: what runs, connections, uptime (seed 003's services list). */
static json_t *services_status(void)
{
    json_t *list = json_array();
    struct runtime *rt = runtime_get();
    for (size_t i = 0; i < rt->cfg->nservices; i++) {
        const struct service_config *sc = &rt->cfg->services[i];
        /* services that run registered their counters at start (a service enabled by a
         * reload runs only after a restart) */
        struct metrics_service *m = sc->enabled ? metrics_find(sc->name) : NULL;
        json_t *o = json_pack("{s:s,s:b}", "service", sc->name, "running", m != NULL);
        if (m) {
            json_object_set_new(o, "connections",
                                json_integer((json_int_t)atomic_load(&m->connections_active)));
            json_object_set_new(o, "connections_total",
                                json_integer((json_int_t)atomic_load(&m->connections_total)));
            json_object_set_new(o, "uptime",
                                json_integer((json_int_t)(time(NULL) - m->started_unix)));
        }
        json_array_append_new(list, o);
    }
    json_t *o = json_pack("{s:s,s:o}", "node", rt->cfg->node_id, "services", list);
    runtime_put(&rt);
    return o;
}

/* ---- entity tags ---- */

/* A copy of o without usage counters (keys ending in "used"), which change with
 * mail traffic, not with what an administrator set. */
static json_t *without_usage(json_t *o)
{
    if (json_is_array(o)) {
        json_t *c = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(o, i, v) json_array_append_new(c, without_usage(v));
        return c;
    }
    if (!json_is_object(o))
        return json_incref(o);
    json_t *c = json_object();
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        size_t n = strlen(key);
        if (n < 4 || strcmp(key + n - 4, "used") != 0)
            json_object_set_new(c, key, without_usage(v));
    }
    return c;
}

/* The entity tag of a representation: FNV-1a (64 bits) of its canonical JSON
 * (sorted keys), "h" and 16 hex digits. Strong enough to tell versions of one
 * object apart; it is not a security measure. */
static void etag_of(json_t *o, char out[API_ETAG_MAX])
{
    json_t *v = without_usage(o);
    char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    json_decref(v);
    unsigned long long h = 14695981039346656037ULL;
    for (const char *p = text ? text : ""; *p; p++) {
        h ^= (unsigned char)*p;
        h *= 1099511628211ULL;
    }
    free(text);
    snprintf(out, API_ETAG_MAX, "h%016llx", h);
}

/* The name the administrator lock of the route's object is taken on: the
 * object's canonical name, so that every spelling (a domain alias, another
 * case) locks the same. 0 with name_r ("" when the object does not exist:
 * the handler then answers 404), or -1. */
static int lock_name(struct api_job *a, PGconn *c, char name_r[ADMINLOCK_NAME_MAX + 1], char *err,
                     size_t errlen)
{
    name_r[0] = '\0';
    int rc = 0;
    if (a->route->obj == ACCOUNT) {
        struct dir_account acc;
        rc = dir_account_find(c, a->p1, &acc, err, errlen);
        size_t i = 0;
        for (; rc == 0 && acc.address[i] && i < ADMINLOCK_NAME_MAX; i++)
            name_r[i] = (char)tolower((unsigned char)acc.address[i]);
        name_r[i] = '\0';
    } else if (a->route->obj == DOMAIN) {
        char own[DIR_DOMAIN_MAX + 1];
        rc = dir_domain_lookup(c, a->p1, NULL, own, err, errlen);
        if (rc == 0)
            snprintf(name_r, ADMINLOCK_NAME_MAX + 1, "%s", own);
    } else {
        snprintf(name_r, ADMINLOCK_NAME_MAX + 1, "#server");
    }
    return rc == DIR_ENOTFOUND ? 0 : rc;
}

/* Runs the route's handler with If-Match honoured: under the object's lock the
 * current representation (the route's view) must still carry one of the tags.
 * Afterwards a PUT answers with the new representation. */
static int run_route(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    const struct api_route *r = a->route;
    bool compare = a->if_match && r->view != NULL && r->view != r->fn;
    char lock[ADMINLOCK_NAME_MAX + 1] = "";
    int rc = 0;
    if (compare) {
        rc = lock_name(a, c, lock, err, errlen);
        if (rc == 0 && *lock && adminlock_take(c, lock, err, errlen) != 0) {
            *lock = '\0';
            rc = PQstatus(c) == CONNECTION_OK ? API_EBUSY : -1;
        }
        if (rc == 0)
            rc = r->view(a, c, err, errlen);
        if (rc == 0) {
            if (!*a->etag)
                etag_of(a->out, a->etag);
            if (!api_if_match_ok(&a->im, a->etag)) {
                dir_set_err(err, errlen, "changed meanwhile: the current ETag is \"%s\"", a->etag);
                rc = DIR_ECONFLICT;
            }
        }
        json_decref(a->out);
        a->out = NULL;
        a->etag[0] = '\0';
    }
    if (rc == 0)
        rc = r->fn(a, c, err, errlen);
    if (rc == 0 && r->view && r->view != r->fn && !strcmp(r->method, "PUT")) {
        json_decref(a->out);
        a->out = NULL;
        rc = r->view(a, c, err, errlen);
    }
    if (rc == 0 && r->view && a->status != 204 && !*a->etag && a->out)
        etag_of(a->out, a->etag);
    if (*lock)
        adminlock_release(c, lock, NULL, 0);
    return rc;
}

/* ---- the worker job ---- */

/* Maps a handler's result to an HTTP status. */
static int status_of(int rc, PGconn *c)
{
    switch (rc) {
    case 0:
        return 200;
    case DIR_ENOTFOUND:
        return 404;
    case DIR_EEXIST:
        return 409;
    case DIR_ENOTEMPTY:
        return 409;
    case QUOTA_EBELOWUSAGE:
        return 409;
    case DIR_ECYCLE:
        return 409;
    case DIR_ECONFLICT:
        return 412;
    case API_EFORBIDDEN:
        return 403;
    case API_EBUSY:
        return 503;
    default:
        /* -1 is invalid input, or a database that went away */
        return PQstatus(c) == CONNECTION_OK ? 400 : 503;
    }
}

/* Whether a domain administrator (a->who, not a server administrator) may use
 * the route on its object: 0 yes, API_EFORBIDDEN, or -1. */
static int scope_check(struct api_job *a, PGconn *c, char *err, size_t errlen)
{
    long long n = 0;
    if (dir_domain_admin_count(c, a->who.id, &n, err, errlen) != 0)
        return -1;
    if (n == 0 || a->route->access != SCOPED) {
        dir_set_err(err, errlen, "not an administrator of this domain");
        return API_EFORBIDDEN;
    }
    switch (a->route->obj) {
    case ACCOUNT:
        return api_check_account(a, c, a->p1, err, errlen);
    case DOMAIN:
        return api_check_domain(a, c, a->p1, err, errlen);
    case NONE:
        return 0; /* the handler looks at what it is given */
    case GLOBAL:
        break;
    }
    dir_set_err(err, errlen, "server administrators only");
    return API_EFORBIDDEN;
}

static void api_work(struct job *j, struct worker *w)
{
    struct api_job *a = (struct api_job *)j;
    char err[512] = "";
    PGconn *c = worker_db(w, err, sizeof(err));
    if (!c) {
        a->status = 503;
        a->out = error_json("database unavailable");
        return;
    }
    int rc = a->who.is_admin ? 0 : scope_check(a, c, err, sizeof(err));
    if (rc == 0)
        rc = run_route(a, c, err, sizeof(err));
    if (rc != 0) {
        a->status = status_of(rc, c);
        if (a->status == 503 && rc != API_EBUSY) {
            worker_db_check(w);
            snprintf(err, sizeof(err), "database unavailable");
        }
        json_decref(a->out);
        a->out = error_json(*err ? err : "failed");
        a->etag[0] = '\0';
    } else if (!a->status) {
        a->status = 200;
    }
}

static void respond(struct http_exchange *x, int status, json_t *o, const char *etag,
                    const char *extra)
{
    char hdr[256] = "";
    int n = 0;
    if (etag && *etag)
        n = snprintf(hdr, sizeof(hdr), "ETag: \"%s\"\r\n", etag);
    if (extra && n >= 0 && (size_t)n < sizeof(hdr))
        snprintf(hdr + n, sizeof(hdr) - (size_t)n, "%s", extra);
    if (status == 204) {
        http_respond(x, 204, NULL, NULL, 0, *hdr ? hdr : NULL);
        return;
    }
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if (!text && status < 300) {
        status = 503; /* out of memory building the answer */
        *hdr = '\0';
    }
    http_respond(x, status, "application/json", text ? text : "{}", text ? strlen(text) : 2,
                 *hdr ? hdr : NULL);
    free(text);
}

static void respond_error(struct http_exchange *x, int status, const char *msg, const char *extra)
{
    json_t *o = error_json(msg);
    respond(x, status, o, NULL, extra);
    json_decref(o);
}

static void api_job_free(struct api_job *a)
{
    json_decref(a->out);
    json_decref(a->body);
    free(a);
}

static void api_done(struct job *j)
{
    struct api_job *a = (struct api_job *)j;
    respond(a->x, a->status, a->out, a->etag, NULL);
    api_job_free(a);
}

/* ---- the request ---- */

static int params_of(const char *pattern)
{
    int n = 0;
    for (; *pattern; pattern++)
        n += *pattern == '{';
    return n;
}

/* Finds the route of method and path (after /api/v1): 0 with a->route and the
 * parameters, 405 with the path's methods in allow, or 404. Where patterns
 * with fewer parameters match, they win: /queue/retry is that path, not the
 * message with the id "retry". */
static int route(const char *method, const char *path, struct api_job *a, char *allow,
                 size_t allowlen)
{
    char p[API_PARAMS_MAX][API_PARAM_SIZE];
    size_t used = 0;
    int fewest = API_PARAMS_MAX + 1;
    for (size_t i = 0; i < NROUTES; i++)
        if (params_of(routes[i].path) < fewest && api_path_match(routes[i].path, path, p))
            fewest = params_of(routes[i].path);
    allow[0] = '\0';
    for (size_t i = 0; i < NROUTES; i++) {
        if (params_of(routes[i].path) != fewest || !api_path_match(routes[i].path, path, p))
            continue;
        if (!strcmp(routes[i].method, method)) {
            a->route = &routes[i];
            memcpy(a->p1, p[0], sizeof a->p1);
            memcpy(a->p2, p[1], sizeof a->p2);
            return 0;
        }
        int n = snprintf(allow + used, allowlen - used, "%s%s", used ? ", " : "", routes[i].method);
        if (n > 0 && (size_t)n < allowlen - used)
            used += (size_t)n;
    }
    return used ? 405 : 404;
}

/* Reads the query parameters the route takes (route->query); others are
 * ignored. 0, or 400. */
static int read_query(const char *q, struct api_job *a, const char **why)
{
    while (q && *q) {
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        size_t klen = eq ? (size_t)(eq - q) : len;
        const char *v = eq ? eq + 1 : q + len;
        size_t vlen = eq ? len - klen - 1 : 0;
        char flag[8];
        int rc = 0;
        unsigned takes = a->route->query;
        if ((takes & Q_DOMAIN) && klen == 6 && !memcmp(q, "domain", 6))
            rc = api_query_value(v, vlen, a->q_domain, sizeof a->q_domain);
        else if ((takes & Q_KIND) && klen == 4 && !memcmp(q, "kind", 4))
            rc = api_query_value(v, vlen, a->q_kind, sizeof a->q_kind);
        else if (((takes & Q_FORCE) && klen == 5 && !memcmp(q, "force", 5)) ||
                 ((takes & Q_EXPAND) && klen == 6 && !memcmp(q, "expand", 6))) {
            rc = api_query_value(v, vlen, flag, sizeof flag);
            bool on = rc == 0 && (!strcmp(flag, "1") || !strcmp(flag, "true"));
            if (klen == 5)
                a->force = on;
            else
                a->expand = on;
        }
        if (rc != 0) {
            *why = "malformed or oversized query parameter";
            return 400;
        }
        q += len + (q[len] == '&');
    }
    return 0;
}

/* Reads the body, If-Match and query of the request into a. 0 ok, else an HTTP status. */
static int read_request(struct http_exchange *x, struct api_job *a, const char **why)
{
    const struct http_request *req = http_request(x);
    const struct api_route *r = a->route;
    /* only changes take a body, and only changes of objects with an entity
     * tag are conditional: elsewhere both are ignored */
    bool change = strcmp(r->method, "GET") != 0 && strcmp(r->method, "DELETE") != 0;
    bool conditional = (r->view && r->view != r->fn) || r->fn == account_update;
    if (change && req->body_len > 0) {
        json_error_t jerr;
        a->body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(a->body)) {
            *why = "the body must be a JSON object";
            return 400;
        }
    }
    const char *im = conditional ? http_header(x, "If-Match") : NULL;
    if (im) {
        a->if_match = true;
        if (api_if_match_parse(im, &a->im) != 0) {
            /* a condition we cannot evaluate is not met (RFC 9110 §13.1.1) */
            *why = "If-Match must be \"*\" or ETags this API gave";
            return 412;
        }
    }
    return read_query(req->query, a, why);
}

static void authorised(struct http_exchange *x, const struct dir_account *who, void *arg)
{
    struct api_job *a = arg;
    const char *why = "";
    /* a domain administrator's scope is checked on the worker (it needs the database);
     * what is never in its scope is refused here */
    int st = who->is_admin || a->route->access == SCOPED ? read_request(x, a, &why) : 403;
    if (st) {
        respond_error(x, st, st == 403 ? "server administrators only" : why, NULL);
        api_job_free(a);
        return;
    }
    if (a->route->fn == NULL) {
        json_t *o = services_status();
        respond(x, o ? 200 : 503, o, NULL, NULL);
        json_decref(o);
        api_job_free(a);
        return;
    }
    a->who = *who;
    a->x = x;
    a->job.work = api_work;
    a->job.done = api_done;
    if (workers_submit(server_workers(), &a->job) < 0) {
        respond_error(x, 503, "busy", NULL);
        api_job_free(a);
        return;
    }
    http_defer(x);
}

static void api(struct http_exchange *x)
{
    const struct http_request *req = http_request(x);
    struct api_job *a = calloc(1, sizeof(*a));
    if (!a) {
        http_respond_status(x, 503);
        return;
    }
    char allow[128], hdr[160];
    int st = route(req->method, req->path + strlen("/api/v1"), a, allow, sizeof allow);
    if (st) {
        free(a);
        snprintf(hdr, sizeof hdr, "Allow: %s\r\n", allow);
        respond_error(x, st, st == 405 ? "method not allowed" : "no such resource",
                      st == 405 ? hdr : NULL);
        return;
    }
    http_auth_basic(x, "Floe administration", authorised, a);
}

void api_http_init(void)
{
    http_route("admin", "/api/v1", api);
}
