/* Sessions and RSA keys of the vendor-compatible admin XML API
 * (node/http/vendorapi.c, docs/VENDORAPI.md), kept in PostgreSQL (migration
 * 0014) so that every node of a cluster accepts every session.
 *
 * A session id is 32 lower-case hex digits (128 random bits from OpenSSL's
 * RAND_bytes). Only its SHA-256 is stored, so a copy of the table opens no
 * session. A session ends idle_seconds after its last use, at its absolute
 * end, with apisession_delete() (logout), or when its account is deleted or
 * disabled. Times come from the database's clock only, so nodes with skewed
 * clocks agree.
 *
 * The keys are PEM-encoded RSA private keys, one or two per node (each node
 * makes its own at start and once a day): a node that receives a digest made
 * with another node's key can decrypt it with that key from here.
 *
 * Blocking calls on a caller-owned connection, one statement each. 0 on
 * success, -1 on a database error or invalid argument with the reason in err
 * (err may be NULL), DIR_ENOTFOUND where described.
 */
#ifndef FLOE_STORAGE_APISESSION_H
#define FLOE_STORAGE_APISESSION_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "storage/directory.h"

/* 32 hex digits and the NUL. */
#define APISESSION_ID_LEN 32
#define APISESSION_ID_SIZE (APISESSION_ID_LEN + 1)
/* Longest lifetimes accepted: 100 days. */
#define APISESSION_SECONDS_MAX (100 * 86400)
/* Largest PEM key stored. */
#define APISESSION_KEY_PEM_MAX 8192
/* Node names as in cluster_nodes. */
#define APISESSION_NODE_MAX 64

/* Opens a session for account_id that ends idle_seconds after its last use
 * and at the latest max_seconds after now (both 1..APISESSION_SECONDS_MAX).
 * Writes its id into sid_r. Returns 0, -1, or DIR_ENOTFOUND when the account
 * does not exist. */
int apisession_create(PGconn *c, long long account_id, int idle_seconds, int max_seconds,
                      char sid_r[APISESSION_ID_SIZE], char *err, size_t errlen);

/* Looks up a live session and fills *a_r with its account as it is now (so
 * a changed administrator flag counts at once). Records the use, at most
 * once a minute so that a long run of commands does not write a row each.
 * Returns 0; DIR_ENOTFOUND for a malformed, unknown, ended or idle-expired
 * id or a disabled account; -1 on a database error. */
int apisession_use(PGconn *c, const char *sid, struct dir_account *a_r, char *err, size_t errlen);

/* Ends a session. Returns 0, DIR_ENOTFOUND (malformed, unknown or already
 * ended) or -1. */
int apisession_delete(PGconn *c, const char *sid, char *err, size_t errlen);

/* Deletes the sessions past their absolute end or their idle end; the
 * number deleted goes to *n_r (may be NULL). Returns 0 or -1. */
int apisession_purge(PGconn *c, long long *n_r, char *err, size_t errlen);

/* Publishes a private key made by node (1..APISESSION_NODE_MAX bytes) and
 * deletes every key, of any node, older than keep_seconds (> 0). Returns 0
 * or -1. */
int apisession_key_add(PGconn *c, const char *node, const char *pem, int keep_seconds, char *err,
                       size_t errlen);

/* Called with each key's PEM text, newest first. Return 0 to continue,
 * non-zero to stop. */
typedef int (*apisession_key_cb)(const char *pem, void *ctx);

/* Calls cb for the keys made in the last max_age_seconds, newest first, at
 * most limit of them. Returns 0 (also when cb stopped early) or -1. */
int apisession_key_list(PGconn *c, int max_age_seconds, int limit, apisession_key_cb cb, void *ctx,
                        char *err, size_t errlen);

#endif
