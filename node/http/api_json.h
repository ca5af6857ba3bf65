/* The JSON forms of directory, quota, policy and queue objects, shared by the
 * admin API (node/http/api.c) and `floectl --json`, so that both present every
 * object the same way and read it through the same storage calls: one
 * implementation of each read operation.
 *
 * The *_read() functions make the storage call and build the object; they
 * return what the storage call returned (0, -1 or its DIR_* / QUEUE_* code)
 * with the reason in err, and on 0 the new object in *o_r (the caller owns
 * it). The other functions build an object from a storage structure; they
 * return NULL only when out of memory. The collect callbacks append to the
 * json_t array given as ctx. */
#ifndef FLOE_NODE_HTTP_API_JSON_H
#define FLOE_NODE_HTTP_API_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "storage/directory.h"
#include "storage/policy.h"
#include "storage/queue.h"
#include "storage/quota.h"

/* {"id", "address", "kind", "full_name", "disabled", "admin"} */
json_t *api_json_account(const struct dir_account *a);

/* Collect callbacks: an account (api_json_account), a domain name, an
 * account alias, a domain alias (its name), an account's address only, a
 * group member ({"kind", "name"}), a queued message (api_json_queue_message). */
int api_json_collect_account(const struct dir_account *a, void *ctx);
int api_json_collect_name(const char *name, void *ctx);
int api_json_collect_domain_alias(const char *alias, const char *domain, void *ctx);
int api_json_collect_address(const struct dir_account *a, void *ctx);
int api_json_collect_member(const char *kind, const char *name, void *ctx);

/* "YYYY-MM-DDTHH:MM:SSZ" (UTC), or "-" for 0 (not set). */
const char *api_json_time(long long unix_s, char buf[32]);

/* {"domain", "catchall": address or null}, domain as given. */
int api_json_catchall_read(PGconn *c, const char *domain, json_t **o_r, char *err, size_t errlen);

/* {"address", "keep_copy", "targets": [...]} (targets empty: not forwarded). */
int api_json_forward_read(PGconn *c, const char *address, json_t **o_r, char *err, size_t errlen);

/* {"address", "enabled"} and, when enabled, "subject", "body", "interval"
 * (seconds), "from" and "until" (Unix times or null). */
int api_json_autoreply_read(PGconn *c, const char *address, json_t **o_r, char *err, size_t errlen);

/* Direct members [{"kind", "name"}], or with expand every account the group
 * reaches [api_json_account]. */
int api_json_members_read(PGconn *c, const char *group, bool expand, json_t **o_r, char *err,
                          size_t errlen);

/* Quotas; limits are bytes or messages, 0 = unlimited.
 * account: {"address", "bytes": {"limit", "from", "used"}, "messages": {...},
 *           "domain": {"bytes_limit", "messages_limit", "bytes_used", "messages_used"}}
 *          ("from": "account", "domain" or "server": where the limit comes from);
 * domain:  {"domain", "bytes_limit", "messages_limit", "account_bytes",
 *           "account_messages", "bytes_used", "messages_used"} (account_*: the
 *           default per account, null = the server's);
 * server:  {"account_bytes", "account_messages"}. */
int api_json_quota_account_read(PGconn *c, const char *address, json_t **o_r, char *err,
                                size_t errlen);
int api_json_quota_domain_read(PGconn *c, const char *domain, json_t **o_r, char *err,
                               size_t errlen);
int api_json_quota_server_read(PGconn *c, json_t **o_r, char *err, size_t errlen);

/* Service policies, one entry per service in policy_services order:
 * [{"service", "domain", "account" (accounts only), "allowed"}], states
 * "inherit", "enabled" or "disabled". */
int api_json_policies_domain_read(PGconn *c, const char *domain, json_t **o_r, char *err,
                                  size_t errlen);
int api_json_policies_account_read(PGconn *c, const char *address, json_t **o_r, char *err,
                                   size_t errlen);
/* {"login_policy": "full_address" | "local_part_when_unambiguous"} */
int api_json_login_policy_read(PGconn *c, json_t **o_r, char *err, size_t errlen);

/* A queued message: {"id", "age", "size", "sender", "envid", "ret", "body",
 * "smtputf8", "is_notice", "received", "expires", "origin_node",
 * "auth_account", "queued", "delivered", "failed", "blob"}. */
json_t *api_json_queue_message(const struct queue_info *m);
/* Every queued message, oldest first. */
int api_json_queue_list_read(PGconn *c, json_t **o_r, char *err, size_t errlen);
/* One message with "recipients": [{"id", "address", "domain", "orcpt", "notify",
 * "state", "attempts", "next_attempt", "last_attempt", "last_status",
 * "last_reply", "remote_host", "lease_node", "lease_until", "notice",
 * "delay_notified"}]. QUEUE_ENOTFOUND for an unknown id. */
int api_json_queue_show_read(PGconn *c, long long id, json_t **o_r, char *err, size_t errlen);

#endif
