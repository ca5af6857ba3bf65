/* Internals of the admin JSON API shared by its files: node/http/api.c (routing,
 * authentication, scope, If-Match, the worker job; domains, accounts, status)
 * and node/http/api_objects.c (aliases, forwarding, auto-responder, groups,
 * quotas, policies, queue, domain administrators). Not for other modules. */
#ifndef FLOE_NODE_HTTP_API_INTERNAL_H
#define FLOE_NODE_HTTP_API_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "node/http/api_request.h"
#include "node/http/http.h"
#include "node/workers.h"
#include "storage/directory.h"

/* Handler results besides 0 and the storage codes (DIR_*, QUOTA_*, QUEUE_*). */
#define API_EFORBIDDEN (-100) /* out of a domain administrator's scope: 403 */
#define API_EBADREQ (-101)    /* malformed request body or parameter: 400 */
#define API_EBUSY (-102)      /* the administrator lock stayed taken: 503 */

_Static_assert(API_PARAM_SIZE >= DIR_ADDRESS_SIZE, "a path parameter holds any address");

struct api_route;

struct api_job {
    struct job job;
    struct http_exchange *x;
    const struct api_route *route;
    char p1[API_PARAM_SIZE]; /* the path's first parameter, "" none */
    char p2[API_PARAM_SIZE]; /* the second one */
    /* query parameters */
    char q_domain[DIR_DOMAIN_MAX + 1];
    char q_kind[16];
    bool force, expand;
    json_t *body;           /* the request's JSON object, or NULL */
    struct dir_account who; /* the authenticated administrator */
    bool if_match;          /* the request has If-Match, as parsed into im */
    struct api_if_match im;
    /* result */
    int status;              /* 0: 200 on success */
    json_t *out;             /* the answer's body */
    char etag[API_ETAG_MAX]; /* "" none; without quotes */
};

/* A handler runs on a worker with the database connection. It returns 0 with
 * a->out (and a->status when not 200, a->etag when it sets one) or a storage
 * code / API_E* with the reason in err. */
typedef int (*api_handler)(struct api_job *a, PGconn *c, char *err, size_t errlen);

/* Whether the administrator may manage domain / the account at address
 * (storage/domainadmin.h; always for server administrators), as a handler
 * result: 0 yes, API_EFORBIDDEN with the reason in err, or -1. */
int api_check_domain(struct api_job *a, PGconn *c, const char *domain, char *err, size_t errlen);
int api_check_account(struct api_job *a, PGconn *c, const char *address, char *err, size_t errlen);

/* Body fields. api_body_str(): 0 with *v_r (NULL when absent and not
 * required), API_EBADREQ with the reason when of the wrong type or required
 * and absent. api_body_bool(): 0 with *v_r = -1 absent, 0 or 1. */
int api_body_str(struct api_job *a, const char *key, bool required, const char **v_r, char *err,
                 size_t errlen);
int api_body_bool(struct api_job *a, const char *key, int *v_r, char *err, size_t errlen);
/* Refuses a body with members other than the allowed ones (NULL-terminated),
 * so a misspelt field is an error, not silently ignored. */
int api_body_only(struct api_job *a, const char *const *allowed, char *err, size_t errlen);

/* The handlers of api_objects.c (each named after its route). */
int api_aliases_list(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_alias_add(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_alias_delete(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_domain_aliases_list(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_domain_alias_add(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_domain_alias_delete(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_catchall_get(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_catchall_put(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_catchall_delete(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_forward_get(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_forward_put(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_forward_delete(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_autoreply_get(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_autoreply_put(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_autoreply_delete(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_groups_list(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_group_add(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_group_get(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_group_put(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_group_delete(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_members_list(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_member_add(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_member_delete(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_quota_account_get(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_quota_account_put(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_quota_domain_get(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_quota_domain_put(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_quota_server_get(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_quota_server_put(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_policies_account_get(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_policies_account_put(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_policies_domain_get(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_policies_domain_put(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_login_policy_get(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_login_policy_put(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_queue_list(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_queue_get(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_queue_retry(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_queue_retry_all(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_queue_delete(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_domain_admins_list(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_domain_admin_add(struct api_job *a, PGconn *c, char *err, size_t errlen);
int api_domain_admin_delete(struct api_job *a, PGconn *c, char *err, size_t errlen);

#endif
