/* Vendor XML API sessions and RSA keys in PostgreSQL (see apisession.h).
 *
 * A session row is found by the SHA-256 of its id (the primary key). Using a
 * session is one statement: a CTE selects the live session with its account,
 * and a data-modifying CTE beside it moves last_used_at forward only when
 * the last recorded use is more than a minute old. */
#include "storage/apisession.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A recorded use is refreshed when older than this. */
#define TOUCH_SECONDS "60"

static const char hexdig[] = "0123456789abcdef";

static bool sid_ok(const char *sid)
{
    if (sid == NULL || strlen(sid) != APISESSION_ID_LEN)
        return false;
    for (const char *p = sid; *p; p++)
        if (strchr(hexdig, *p) == NULL)
            return false;
    return true;
}

/* hex_r gets the SHA-256 of sid in lower-case hex. 0 ok, -1 OpenSSL failed. */
static int sid_hash(const char *sid, char hex_r[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(sid, strlen(sid), md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        return -1;
    for (unsigned int i = 0; i < mdlen; i++) {
        hex_r[2 * i] = hexdig[md[i] >> 4];
        hex_r[2 * i + 1] = hexdig[md[i] & 15];
    }
    hex_r[64] = '\0';
    return 0;
}

int apisession_create(PGconn *c, long long account_id, int idle_seconds, int max_seconds,
                      char sid_r[APISESSION_ID_SIZE], char *err, size_t errlen)
{
    if (idle_seconds < 1 || idle_seconds > APISESSION_SECONDS_MAX || max_seconds < 1 ||
        max_seconds > APISESSION_SECONDS_MAX) {
        dir_set_err(err, errlen, "session lifetime out of range");
        return -1;
    }
    unsigned char rnd[APISESSION_ID_LEN / 2];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        dir_set_err(err, errlen, "no random bytes for a session id");
        return -1;
    }
    char sid[APISESSION_ID_SIZE], hash[65];
    for (size_t i = 0; i < sizeof rnd; i++) {
        sid[2 * i] = hexdig[rnd[i] >> 4];
        sid[2 * i + 1] = hexdig[rnd[i] & 15];
    }
    sid[APISESSION_ID_LEN] = '\0';
    if (sid_hash(sid, hash) != 0) {
        dir_set_err(err, errlen, "cannot hash the session id");
        return -1;
    }
    char aid[24], idle[16], max[16];
    snprintf(aid, sizeof aid, "%lld", account_id);
    snprintf(idle, sizeof idle, "%d", idle_seconds);
    snprintf(max, sizeof max, "%d", max_seconds);
    const char *p[] = {hash, aid, idle, max};
    PGresult *r = dir_sql(c,
                          "INSERT INTO vendorapi_sessions"
                          " (id_hash, account_id, created_at, last_used_at, idle_seconds,"
                          "  expires_at)"
                          " SELECT $1, id, clock_timestamp(), clock_timestamp(), $3::int,"
                          "  clock_timestamp() + make_interval(secs => $4::int)"
                          " FROM accounts WHERE id = $2::bigint",
                          4, p, "cannot create session", NULL, err, errlen);
    if (r == NULL)
        return -1;
    bool made = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    if (!made) {
        dir_set_err(err, errlen, "unknown account");
        return DIR_ENOTFOUND;
    }
    memcpy(sid_r, sid, APISESSION_ID_SIZE);
    return 0;
}

int apisession_use(PGconn *c, const char *sid, struct dir_account *a_r, char *err, size_t errlen)
{
    char hash[65];
    if (!sid_ok(sid)) {
        dir_set_err(err, errlen, "no such session");
        return DIR_ENOTFOUND;
    }
    if (sid_hash(sid, hash) != 0) {
        dir_set_err(err, errlen, "cannot hash the session id");
        return -1;
    }
    const char *p[] = {hash};
    PGresult *r = dir_sql(
        c,
        "WITH s AS ("
        "  SELECT s.id_hash, s.last_used_at, " DIR_ACCOUNT_COLS " FROM vendorapi_sessions s"
        "  JOIN accounts a ON a.id = s.account_id JOIN domains d ON d.id = a.domain_id"
        "  WHERE s.id_hash = $1 AND NOT a.disabled AND s.expires_at > clock_timestamp()"
        "    AND s.last_used_at + make_interval(secs => s.idle_seconds) > clock_timestamp()),"
        " touch AS ("
        "  UPDATE vendorapi_sessions v SET last_used_at = clock_timestamp() FROM s"
        "  WHERE v.id_hash = s.id_hash"
        "    AND s.last_used_at < clock_timestamp() - interval '" TOUCH_SECONDS " seconds')"
        " SELECT id, local_part, name, kind, full_name, disabled, is_admin FROM s",
        1, p, "cannot look up session", NULL, err, errlen);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        dir_set_err(err, errlen, "no such session");
        return DIR_ENOTFOUND;
    }
    if (a_r != NULL)
        dir_fill_account(a_r, r, 0, 0);
    PQclear(r);
    return 0;
}

int apisession_delete(PGconn *c, const char *sid, char *err, size_t errlen)
{
    char hash[65];
    if (!sid_ok(sid)) {
        dir_set_err(err, errlen, "no such session");
        return DIR_ENOTFOUND;
    }
    if (sid_hash(sid, hash) != 0) {
        dir_set_err(err, errlen, "cannot hash the session id");
        return -1;
    }
    const char *p[] = {hash};
    PGresult *r = dir_sql(c,
                          "DELETE FROM vendorapi_sessions WHERE id_hash = $1"
                          " AND expires_at > clock_timestamp()"
                          " AND last_used_at + make_interval(secs => idle_seconds)"
                          "     > clock_timestamp()",
                          1, p, "cannot end session", NULL, err, errlen);
    if (r == NULL)
        return -1;
    bool gone = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    if (!gone) {
        dir_set_err(err, errlen, "no such session");
        return DIR_ENOTFOUND;
    }
    return 0;
}

int apisession_purge(PGconn *c, long long *n_r, char *err, size_t errlen)
{
    /* The absolute end is found on vendorapi_sessions_expires_at; idle sessions are
     * caught by the same scan only once past it, or by the second condition in a
     * sequential pass, which this rare maintenance statement can afford. */
    PGresult *r = dir_sql(c,
                          "DELETE FROM vendorapi_sessions WHERE expires_at <= clock_timestamp()"
                          " OR last_used_at + make_interval(secs => idle_seconds)"
                          "    <= clock_timestamp()",
                          0, NULL, "cannot purge sessions", NULL, err, errlen);
    if (r == NULL)
        return -1;
    if (n_r != NULL)
        *n_r = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return 0;
}

int apisession_key_add(PGconn *c, const char *node, const char *pem, int keep_seconds, char *err,
                       size_t errlen)
{
    if (node == NULL || *node == '\0' || strlen(node) > APISESSION_NODE_MAX || pem == NULL ||
        *pem == '\0' || strlen(pem) > APISESSION_KEY_PEM_MAX || keep_seconds < 1) {
        dir_set_err(err, errlen, "apisession_key_add: invalid argument");
        return -1;
    }
    char keep[16];
    snprintf(keep, sizeof keep, "%d", keep_seconds);
    const char *p[] = {node, pem, keep};
    /* one statement: the old keys go in the same snapshot as the new one arrives */
    PGresult *r = dir_sql(c,
                          "WITH old AS (DELETE FROM vendorapi_keys WHERE created_at <"
                          "  clock_timestamp() - make_interval(secs => $3::int))"
                          " INSERT INTO vendorapi_keys (node, private_pem, created_at)"
                          " VALUES ($1, $2, clock_timestamp())",
                          3, p, "cannot store key", NULL, err, errlen);
    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

struct key_each {
    apisession_key_cb cb;
    void *ctx;
};

static int key_row(const PGresult *r, int row, void *arg)
{
    const struct key_each *e = arg;
    return e->cb(PQgetvalue(r, row, 0), e->ctx);
}

int apisession_key_list(PGconn *c, int max_age_seconds, int limit, apisession_key_cb cb, void *ctx,
                        char *err, size_t errlen)
{
    if (cb == NULL || max_age_seconds < 1 || limit < 1) {
        dir_set_err(err, errlen, "apisession_key_list: invalid argument");
        return -1;
    }
    char age[16], lim[16];
    snprintf(age, sizeof age, "%d", max_age_seconds);
    snprintf(lim, sizeof lim, "%d", limit);
    const char *p[] = {age, lim};
    struct key_each e = {cb, ctx};
    return dir_sql_each(c,
                        "SELECT private_pem FROM vendorapi_keys"
                        " WHERE created_at >= clock_timestamp() - make_interval(secs => $1::int)"
                        " ORDER BY created_at DESC, id DESC LIMIT $2::int",
                        2, p, key_row, &e, "cannot list keys", err, errlen);
}
