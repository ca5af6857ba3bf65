/* The admin JSON API on the admin listener, /api/v1 (docs/API.md). It calls the
 * same storage functions floectl calls: one implementation of each operation.
 *
 * Every request authenticates with Basic credentials (over TLS) of a server
 * administrator, who may do everything, or of a domain administrator
 * (storage/domainadmin.h), who may list, see and change only the accounts and
 * the domain record of the domains it administers, never a server
 * administrator's account, and nothing cluster-wide: 403 otherwise, whether
 * or not the thing exists. The operation runs on a worker; its result comes back as a status
 * and a JSON body. Accounts carry an ETag (their version, migration 0009); a
 * change with If-Match applies only if nobody changed the account meanwhile (412
 * otherwise), so two administrators cannot silently overwrite each other. */
#include <jansson.h>
#include <stdatomic.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "node/http/auth.h"
#include "node/metrics.h"
#include "node/http/http.h"
#include "node/server.h"
#include "node/services.h"
#include "node/workers.h"
#include "storage/aliases.h"
#include "storage/directory.h"
#include "storage/dirview.h"
#include "storage/domainadmin.h"

enum api_op {
    OP_DOMAINS_LIST,
    OP_DOMAIN_ADD,
    OP_DOMAIN_DELETE,
    OP_DOMAIN_GET,
    OP_ACCOUNTS_LIST,
    OP_ACCOUNT_GET,
    OP_ACCOUNT_ADD,
    OP_ACCOUNT_UPDATE,
    OP_ACCOUNT_DELETE,
    OP_CLUSTER_STATUS,
    OP_SERVICES,
};

struct api_job {
    struct job job;
    struct http_exchange *x;
    enum api_op op;
    char name[DIR_ADDRESS_SIZE]; /* domain or address from the path */
    char domain_filter[DIR_DOMAIN_MAX + 1];
    json_t *body;               /* parsed request body, or NULL */
    struct dir_account who;     /* the authenticated administrator */
    long long if_match;         /* 0: none */
    bool force;
    /* result */
    int status;
    json_t *out;
    long long etag; /* 0: none */
};

static json_t *error_json(const char *msg)
{
    return json_pack("{s:s}", "error", msg);
}

static json_t *account_json(const struct dir_account *a)
{
    return json_pack("{s:s,s:s,s:s,s:b,s:b}", "address", a->address, "kind", a->kind,
                     "full_name", a->full_name, "disabled", a->disabled, "admin", a->is_admin);
}

static int collect_domain(const char *name, void *ctx)
{
    json_array_append_new(ctx, json_string(name));
    return 0;
}

static int collect_account(const struct dir_account *a, void *ctx)
{
    json_array_append_new(ctx, account_json(a));
    return 0;
}

/* Maps a storage result to an HTTP status. */
static int status_of(int rc)
{
    switch (rc) {
    case 0: return 200;
    case DIR_ENOTFOUND: return 404;
    case DIR_EEXIST: return 409;
    case DIR_ENOTEMPTY: return 409;
    case DIR_ECONFLICT: return 412;
    default: return 400;
    }
}

static const char *str_field(json_t *o, const char *key)
{
    json_t *v = o ? json_object_get(o, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int collect_alias(const char *alias, const char *domain, void *ctx)
{
    json_array_append_new(ctx, json_string(alias));
    return 0;
}

static int collect_address(const struct dir_account *acc, void *ctx)
{
    json_array_append_new(ctx, json_string(acc->address));
    return 0;
}

/* The domain record: name, description, aliases, account count, administrators. */
static int domain_record(PGconn *c, const char *name, json_t **out_r, char *err, size_t errlen)
{
    struct dir_domain_info d;
    int rc = dir_view_domain(c, name, &d, err, errlen);
    if (rc != 0)
        return rc;
    const char *own = d.alias_of[0] ? d.alias_of : d.name;
    json_t *aliases = json_array(), *admins = json_array();
    rc = dir_domain_alias_list(c, own, collect_alias, aliases, err, errlen);
    if (rc == 0)
        rc = dir_domain_admins(c, own, collect_address, admins, err, errlen);
    if (rc != 0) {
        json_decref(aliases);
        json_decref(admins);
        return rc;
    }
    *out_r = json_pack("{s:s,s:s,s:o,s:I,s:o}", "name", own, "description", d.description,
                       "aliases", aliases, "accounts", (json_int_t)d.accounts, "admins", admins);
    return 0;
}

/* Whether a domain administrator (a->who, not a server administrator) may run
 * a's operation: 1 yes, 0 no (403), -1 database error. */
static int domain_admin_scope(PGconn *c, struct api_job *a, char *err, size_t errlen)
{
    long long n = 0;
    if (dir_domain_admin_count(c, a->who.id, &n, err, errlen) != 0)
        return -1;
    if (n == 0)
        return 0;
    switch (a->op) {
    case OP_DOMAINS_LIST:
        return 1; /* its own domains only, below */
    case OP_DOMAIN_GET:
        return dir_admin_may_domain(c, &a->who, a->name, err, errlen);
    case OP_ACCOUNTS_LIST:
        return *a->domain_filter ? dir_admin_may_domain(c, &a->who, a->domain_filter, err, errlen)
                                 : 1;
    case OP_ACCOUNT_GET:
    case OP_ACCOUNT_UPDATE:
    case OP_ACCOUNT_DELETE:
        return dir_admin_may_account(c, &a->who, a->name, err, errlen);
    case OP_ACCOUNT_ADD: {
        const char *address = str_field(a->body, "address");
        json_t *admin = a->body ? json_object_get(a->body, "admin") : NULL;
        if (json_is_true(admin))
            return 0; /* making a server administrator is for server administrators */
        return address ? dir_admin_may_account(c, &a->who, address, err, errlen) : 1;
    }
    default:
        return 0;
    }
}

/* The accounts of every domain the administrator administers. */
static int own_accounts(PGconn *c, const struct dir_account *who, json_t *out, char *err,
                        size_t errlen)
{
    json_t *domains = json_array();
    int rc = dir_domain_admin_list(c, who->address, collect_domain, domains, err, errlen);
    size_t i;
    json_t *d;
    json_array_foreach(domains, i, d)
    {
        if (rc != 0)
            break;
        rc = dir_account_list(c, json_string_value(d), collect_account, out, err, errlen);
    }
    json_decref(domains);
    return rc;
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
    bool server_admin = a->who.is_admin;
    if (!server_admin) {
        int scope = domain_admin_scope(c, a, err, sizeof(err));
        if (scope <= 0) {
            if (scope < 0)
                worker_db_check(w);
            a->status = scope < 0 ? 503 : 403;
            a->out = error_json(scope < 0 ? "database unavailable"
                                          : "not an administrator of this domain");
            return;
        }
    }
    int rc = 0;
    switch (a->op) {
    case OP_DOMAINS_LIST:
        a->out = json_array();
        rc = server_admin ? dir_domain_list(c, collect_domain, a->out, err, sizeof(err))
                          : dir_domain_admin_list(c, a->who.address, collect_domain, a->out, err,
                                                  sizeof(err));
        break;
    case OP_DOMAIN_GET:
        rc = domain_record(c, a->name, &a->out, err, sizeof(err));
        break;
    case OP_DOMAIN_ADD: {
        const char *name = str_field(a->body, "name");
        rc = name ? dir_domain_add(c, name, err, sizeof(err)) : -1;
        if (!name)
            snprintf(err, sizeof(err), "body must be {\"name\": \"domain\"}");
        if (rc == 0) {
            a->status = 201;
            a->out = json_pack("{s:s}", "name", name);
        }
        break;
    }
    case OP_DOMAIN_DELETE:
        rc = dir_domain_delete(c, a->name, a->force, err, sizeof(err));
        if (rc == 0)
            a->status = 204;
        break;
    case OP_ACCOUNTS_LIST:
        a->out = json_array();
        if (!server_admin && !*a->domain_filter)
            rc = own_accounts(c, &a->who, a->out, err, sizeof(err));
        else
            rc = dir_account_list(c, *a->domain_filter ? a->domain_filter : NULL,
                                  collect_account, a->out, err, sizeof(err));
        break;
    case OP_ACCOUNT_GET: {
        struct dir_account acc;
        rc = dir_account_find(c, a->name, &acc, err, sizeof(err));
        if (rc == 0)
            rc = dir_account_version(c, a->name, &a->etag, err, sizeof(err));
        if (rc == 0)
            a->out = account_json(&acc);
        break;
    }
    case OP_ACCOUNT_ADD: {
        const char *address = str_field(a->body, "address");
        json_t *admin = a->body ? json_object_get(a->body, "admin") : NULL;
        if (!address) {
            snprintf(err, sizeof(err), "body needs \"address\"");
            rc = -1;
            break;
        }
        rc = dir_account_add(c, address, str_field(a->body, "kind"),
                             str_field(a->body, "password"), str_field(a->body, "full_name"),
                             json_is_true(admin), err, sizeof(err));
        struct dir_account acc;
        if (rc == 0 && dir_account_find(c, address, &acc, err, sizeof(err)) == 0 &&
            dir_account_version(c, address, &a->etag, err, sizeof(err)) == 0) {
            a->status = 201;
            a->out = account_json(&acc);
        }
        break;
    }
    case OP_ACCOUNT_UPDATE: {
        json_t *dis = a->body ? json_object_get(a->body, "disabled") : NULL;
        struct dir_account_change ch = {
            .password = str_field(a->body, "password"),
            .full_name = str_field(a->body, "full_name"),
            .disabled = json_is_boolean(dis) ? json_is_true(dis) : -1,
        };
        rc = dir_account_update(c, a->name, a->if_match, &ch, &a->etag, err, sizeof(err));
        struct dir_account acc;
        if (rc == 0 && dir_account_find(c, a->name, &acc, err, sizeof(err)) == 0)
            a->out = account_json(&acc);
        break;
    }
    case OP_ACCOUNT_DELETE:
        rc = dir_account_delete(c, a->name, err, sizeof(err));
        if (rc == 0)
            a->status = 204;
        break;
    case OP_CLUSTER_STATUS: {
        struct cluster_status st;
        rc = cluster_status_read(c, &st, err, sizeof(err));
        if (rc == 0) {
            json_t *nodes = json_array();
            for (size_t i = 0; i < st.nnodes; i++) {
                const struct cluster_node_status *ns = &st.nodes[i];
                json_t *conns = json_loads(ns->connections, 0, NULL);
                json_array_append_new(
                    nodes, json_pack("{s:s,s:s,s:b,s:s,s:I,s:o}", "node", ns->node_id, "state",
                                     ns->state, "master", ns->master, "version", ns->version,
                                     "heartbeat_age", (json_int_t)ns->heartbeat_age_s,
                                     "connections", conns ? conns : json_object()));
            }
            a->out = json_pack("{s:I,s:s?,s:s?,s:o}", "epoch", (json_int_t)st.epoch, "master",
                               *st.master ? st.master : NULL, "pinned",
                               *st.pinned ? st.pinned : NULL, "nodes", nodes);
            cluster_status_free(&st);
        }
        break;
    }
    case OP_SERVICES:
        break; /* answered without a worker */
    }
    if (rc != 0) {
        json_decref(a->out);
        a->out = error_json(*err ? err : "failed");
        a->status = status_of(rc);
        a->etag = 0;
    } else if (!a->status) {
        a->status = 200;
    }
}

static void api_done(struct job *j)
{
    struct api_job *a = (struct api_job *)j;
    char *text = a->out && a->status != 204 ? json_dumps(a->out, JSON_COMPACT) : NULL;
    char hdr[64] = "";
    if (a->etag)
        snprintf(hdr, sizeof(hdr), "ETag: \"%lld\"\r\n", a->etag);
    if (a->status == 204)
        http_respond(a->x, 204, NULL, NULL, 0, NULL);
    else
        http_respond(a->x, a->status, "application/json", text ? text : "{}",
                     text ? strlen(text) : 2, *hdr ? hdr : NULL);
    free(text);
    json_decref(a->out);
    json_decref(a->body);
    free(a);
}

static void respond_json(struct http_exchange *x, int status, const char *msg)
{
    json_t *o = error_json(msg);
    char *text = json_dumps(o, JSON_COMPACT);
    http_respond(x, status, "application/json", text, strlen(text), NULL);
    free(text);
    json_decref(o);
}

/* Works out the operation from method and path (after /api/v1). */
static int route(const char *method, const char *rest, struct api_job *a)
{
    bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST"),
         del = !strcmp(method, "DELETE"), patch = !strcmp(method, "PATCH");
    if (!strcmp(rest, "/domains"))
        return get ? (a->op = OP_DOMAINS_LIST, 0) : post ? (a->op = OP_DOMAIN_ADD, 0) : 405;
    if (!strcmp(rest, "/accounts"))
        return get ? (a->op = OP_ACCOUNTS_LIST, 0) : post ? (a->op = OP_ACCOUNT_ADD, 0) : 405;
    if (!strcmp(rest, "/cluster"))
        return get ? (a->op = OP_CLUSTER_STATUS, 0) : 405;
    if (!strcmp(rest, "/services"))
        return get ? (a->op = OP_SERVICES, 0) : 405;
    const char *name = NULL;
    if (!strncmp(rest, "/domains/", 9)) {
        name = rest + 9;
        if (get)
            a->op = OP_DOMAIN_GET;
        else if (del)
            a->op = OP_DOMAIN_DELETE;
        else
            return 405;
    } else if (!strncmp(rest, "/accounts/", 10)) {
        name = rest + 10;
        if (get)
            a->op = OP_ACCOUNT_GET;
        else if (patch)
            a->op = OP_ACCOUNT_UPDATE;
        else if (del)
            a->op = OP_ACCOUNT_DELETE;
        else
            return 405;
    } else {
        return 404;
    }
    if (!*name || strchr(name, '/') || strlen(name) >= sizeof(a->name))
        return 404;
    snprintf(a->name, sizeof(a->name), "%s", name);
    return 0;
}

/* Reads the body, If-Match and query of the request into a. 0 ok, else an HTTP status. */
static int read_request(struct http_exchange *x, struct api_job *a, const char **why)
{
    const struct http_request *req = http_request(x);
    if (req->body_len > 0) {
        json_error_t jerr;
        a->body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(a->body)) {
            *why = "the body must be a JSON object";
            return 400;
        }
    }
    const char *im = http_header(x, "If-Match");
    if (im) {
        char *end;
        long long v = strtoll(im + (*im == '"'), &end, 10);
        if (v <= 0 || (*end != '"' && *end != '\0')) {
            *why = "If-Match must be an ETag this API gave";
            return 412;
        }
        a->if_match = v;
    }
    const char *q = req->query;
    a->force = q && strstr(q, "force=1");
    if (q && !strncmp(q, "domain=", 7))
        snprintf(a->domain_filter, sizeof(a->domain_filter), "%.*s", (int)strcspn(q + 7, "&"),
                 q + 7);
    return 0;
}

/* This node's services: what runs, connections, uptime (seed 003's services list). */
static void services_status(struct http_exchange *x)
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
    char *text = json_dumps(o, JSON_COMPACT);
    http_respond(x, 200, "application/json", text, strlen(text), NULL);
    free(text);
    json_decref(o);
}

static void authorised(struct http_exchange *x, const struct dir_account *who, void *arg)
{
    struct api_job *a = arg;
    const char *why = "";
    /* a domain administrator's scope is checked on the worker (it needs the database);
     * what is never in its scope is refused here */
    bool server_only = a->op == OP_DOMAIN_ADD || a->op == OP_DOMAIN_DELETE ||
                       a->op == OP_CLUSTER_STATUS || a->op == OP_SERVICES;
    int st = who->is_admin || !server_only ? read_request(x, a, &why) : 403;
    if (st) {
        json_decref(a->body);
        free(a);
        respond_json(x, st, st == 403 ? "server administrators only" : why);
        return;
    }
    if (a->op == OP_SERVICES) {
        json_decref(a->body);
        free(a);
        services_status(x);
        return;
    }
    a->who = *who;
    a->x = x;
    a->job.work = api_work;
    a->job.done = api_done;
    if (workers_submit(server_workers(), &a->job) < 0) {
        json_decref(a->body);
        free(a);
        respond_json(x, 503, "busy");
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
    int st = route(req->method, req->path + strlen("/api/v1"), a);
    if (st) {
        free(a);
        respond_json(x, st, st == 405 ? "method not allowed" : "no such resource");
        return;
    }
    http_auth_basic(x, "Floe administration", authorised, a);
}

void api_http_init(void)
{
    http_route("admin", "/api/v1", api);
}
