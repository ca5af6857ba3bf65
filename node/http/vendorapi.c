/* The vendor-compatible admin XML API (see vendorapi.h, docs/VENDORAPI.md):
 * transport, sessions, logins and the command table. The directory commands
 * are in vendorapi_dir.c.
 *
 * Every answer is HTTP 200 with an XML document, errors included (clients
 * treat any other status as a transport failure and retry), except 503 when
 * the database or the worker pool is unavailable, which is one.
 *
 * Sessions live in PostgreSQL (storage/apisession.h), so any node behind a
 * load balancer accepts a session another node opened, and a restart loses
 * none. The challenge login's RSA key pair is made by each node at start and
 * renewed daily; before a node hands out a challenge it publishes the private
 * key in PostgreSQL, so a digest made with it can be decrypted by whichever
 * node the client's next request reaches. docs/VENDORAPI.md explains why.
 *
 * Failed logins answer auth_login_invalid whatever the cause (unknown
 * account, wrong password, disabled account, stale challenge, clear-text
 * password over an unencrypted connection) and are reported to intrusion
 * prevention (node/ips.h). */
#include "node/http/vendorapi.h"

#include <libxml/parser.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "node/http/http.h"
#include "node/ips.h"
#include "node/log.h"
#include "node/server.h"
#include "node/workers.h"
#include "proto/vendorapi/rsa.h"
#include "proto/vendorapi/values.h"
#include "storage/domainadmin.h"

/* Session lifetimes: <persistentlogin>0 is a one-day session, 1 a 24-day one,
 * counted from the last use; either ends at the latest after the absolute
 * maximum, however busy. */
#define SESSION_IDLE (86400)
#define SESSION_IDLE_PERSISTENT (24 * 86400)
#define SESSION_MAX (7 * 86400)
#define SESSION_MAX_PERSISTENT (90 * 86400)
/* Expired sessions are deleted at most this often per node, after a login. */
#define SESSION_PURGE_SECONDS 3600

/* A node's key is renewed after a day; published keys are kept two days, so a
 * challenge handed out just before a renewal still decrypts. */
#define KEY_RENEW_SECONDS 86400
#define KEY_KEEP_SECONDS (2 * 86400)
/* Most keys tried for one digest (a couple per live node). */
#define KEY_TRY_MAX 32
/* A challenge timestamp is good this long, and may run ahead of this node's
 * clock by a little (another node of the cluster made it). */
#define CHALLENGE_MAX_AGE 300
#define CHALLENGE_MAX_AHEAD 60

/* The longest answer; clients page large directories (250 or 100 items). */
#define ANSWER_MAX (128u * 1024 * 1024)
/* Longest password taken from a request, as auth.c's Basic credentials. */
#define PASSWORD_MAX 1024

/* ---- the node's RSA key ---- */

static pthread_mutex_t key_mu = PTHREAD_MUTEX_INITIALIZER;
static struct vapi_rsa *node_key; /* guarded by key_mu */
static time_t node_key_made;
static bool node_key_published;
static char node_key_hex[VAPI_RSA_HEX_SIZE];

static atomic_llong last_purge;

/* Makes a new key (key_mu held). 0 ok, -1 failed. */
static int key_renew(time_t now)
{
    struct vapi_rsa *k = vapi_rsa_generate(VAPI_RSA_BITS);
    if (k == NULL || vapi_rsa_modulus_hex(k, node_key_hex, sizeof node_key_hex) < 0) {
        vapi_rsa_free(&k);
        return -1;
    }
    vapi_rsa_free(&node_key);
    node_key = k;
    node_key_made = now;
    node_key_published = false;
    return 0;
}

/* The modulus of this node's current key, published in PostgreSQL first. 0 ok,
 * -1 database error, -2 no key could be made. */
static int key_current(PGconn *c, const char *node, char hex_r[VAPI_RSA_HEX_SIZE], char *err,
                       size_t errlen)
{
    int rc = 0;
    time_t now = time(NULL);
    pthread_mutex_lock(&key_mu);
    if ((node_key == NULL || now - node_key_made >= KEY_RENEW_SECONDS) && key_renew(now) != 0)
        rc = -2;
    if (rc == 0 && !node_key_published) {
        char *pem = vapi_rsa_private_pem(node_key);
        if (pem == NULL)
            rc = -2;
        else if (apisession_key_add(c, node, pem, KEY_KEEP_SECONDS, err, errlen) != 0)
            rc = -1;
        else
            node_key_published = true;
        if (pem != NULL) {
            explicit_bzero(pem, strlen(pem));
            free(pem);
        }
    }
    if (rc == 0)
        memcpy(hex_r, node_key_hex, VAPI_RSA_HEX_SIZE);
    pthread_mutex_unlock(&key_mu);
    return rc;
}

/* Decrypts digest with k and checks the plaintext: "p=..&t=.." with a fresh
 * timestamp. true with the password in pw. */
static bool digest_open(const struct vapi_rsa *k, const char *digest, char *pw, size_t pwlen)
{
    char plain[PASSWORD_MAX + 64];
    size_t len = 0;
    long long t = 0;
    bool ok = false;
    if (vapi_rsa_decrypt_hex(k, digest, plain, sizeof plain, &len) == 0 &&
        vapi_digest_split(plain, len, pw, pwlen, &t) == 0) {
        long long now = (long long)time(NULL);
        ok = t >= now - CHALLENGE_MAX_AGE && t <= now + CHALLENGE_MAX_AHEAD;
    }
    explicit_bzero(plain, sizeof plain);
    if (!ok)
        explicit_bzero(pw, pwlen);
    return ok;
}

struct key_try {
    const char *digest;
    char *pw;
    size_t pwlen;
    bool found;
};

static int key_try_one(const char *pem, void *ctx)
{
    struct key_try *kt = ctx;
    struct vapi_rsa *k = vapi_rsa_from_pem(pem);
    if (k != NULL) {
        kt->found = digest_open(k, kt->digest, kt->pw, kt->pwlen);
        vapi_rsa_free(&k);
    }
    return kt->found;
}

/* The password inside an RSA digest: this node's key first, then the keys
 * the other nodes published. 1 found, 0 not, -1 database error. */
static int digest_password(PGconn *c, const char *digest, char *pw, size_t pwlen, char *err,
                           size_t errlen)
{
    bool found = false;
    pthread_mutex_lock(&key_mu);
    if (node_key != NULL)
        found = digest_open(node_key, digest, pw, pwlen);
    pthread_mutex_unlock(&key_mu);
    if (found)
        return 1;
    struct key_try kt = {digest, pw, pwlen, false};
    if (apisession_key_list(c, KEY_KEEP_SECONDS, KEY_TRY_MAX, key_try_one, &kt, err, errlen) != 0)
        return -1;
    return kt.found ? 1 : 0;
}

/* ---- requests ---- */

struct vapi_job;

struct command {
    const char *name;
    bool session; /* needs a valid sid */
    int (*run)(struct vapi_call *call, struct vapi_job *j);
};

struct vapi_job {
    struct job job;
    struct http_exchange *x;
    struct vapi_request *req;
    const struct command *cmd;
    bool tls;
    char node[APISESSION_NODE_MAX + 1];
    /* results */
    int status; /* 200, or 503 */
    char *doc;
    size_t len;
    int login; /* 0 no login in this request, 1 succeeded, -1 failed */
    char login_name[DIR_ADDRESS_SIZE];
    char log[256];
};

void vapi_call_begin(struct vapi_call *call)
{
    vapi_out_begin(call->out, "result", call->req->id, call->req->uid, call->sid);
}

static void scalar_result(struct vapi_call *call, const char *v)
{
    vapi_call_begin(call);
    vapi_out_text(call->out, "result", v);
}

static void random_hex(char *out, size_t bytes, bool upper)
{
    unsigned char rnd[32];
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    if (bytes > sizeof rnd || RAND_bytes(rnd, (int)bytes) != 1) {
        out[0] = '\0';
        return;
    }
    for (size_t i = 0; i < bytes; i++) {
        out[2 * i] = digits[rnd[i] >> 4];
        out[2 * i + 1] = digits[rnd[i] & 15];
    }
    out[2 * bytes] = '\0';
}

/* Checks the credentials of authenticate and getauthtoken. 0 with *a_r, 1
 * invalid (whatever the reason), -1 database error. */
static int check_login(struct vapi_call *call, struct vapi_job *j, struct dir_account *a_r)
{
    const struct vapi_request *req = call->req;
    char authtype[16], email[DIR_ADDRESS_SIZE], pw[PASSWORD_MAX + 1];
    int type = vapi_authtype_parse(
        vapi_request_text(req, "authtype", authtype, sizeof authtype) ? authtype : NULL);
    if (!vapi_request_text(req, "email", email, sizeof email) || email[0] == '\0' || type < 0)
        return 1;
    snprintf(j->login_name, sizeof j->login_name, "%s", email);
    if (type == 0) {
        /* a password in clear text only over TLS, as HTTP Basic (auth.c): on a plain
         * connection the client has the RSA challenge for that */
        const struct vapi_node *p = vapi_request_node(req, "password");
        if (!j->tls || p == NULL || p->text_len > PASSWORD_MAX ||
            memchr(p->text, '\0', p->text_len) != NULL)
            return 1;
        memcpy(pw, p->text, p->text_len + 1);
    } else {
        char digest[2 * 1024 + 1];
        if (!vapi_request_text(req, "digest", digest, sizeof digest))
            return 1;
        int found = digest_password(call->db, digest, pw, sizeof pw, call->log, sizeof call->log);
        if (found <= 0)
            return found < 0 ? -1 : 1;
    }
    int rc = dir_authenticate(call->db, email, pw, a_r);
    if (rc == -1 && type == 1 && strchr(pw, '%') != NULL) {
        /* whether the vendor's clients percent-encode the password inside the digest is
         * not known (docs/VENDORAPI.md): a failed raw form gets a second try decoded */
        char dec[PASSWORD_MAX + 1];
        if (vapi_percent_decode(pw, dec, sizeof dec) == 1)
            rc = dir_authenticate(call->db, email, dec, a_r);
        explicit_bzero(dec, sizeof dec);
    }
    explicit_bzero(pw, sizeof pw);
    if (rc == -2) {
        snprintf(call->log, sizeof call->log, "%s", PQerrorMessage(call->db));
        return -1;
    }
    return rc == 0 ? 0 : 1;
}

static int cmd_getauthchallenge(struct vapi_call *call, struct vapi_job *j)
{
    char hex[VAPI_RSA_HEX_SIZE];
    int rc = key_current(call->db, j->node, hex, call->log, sizeof call->log);
    if (rc == -1)
        return -1;
    if (rc != 0) {
        snprintf(call->log, sizeof call->log, "no RSA key");
        return -1;
    }
    vapi_call_begin(call);
    vapi_out_open(call->out, "result");
    vapi_out_text(call->out, "classname", "tauthchallenge");
    vapi_out_text(call->out, "hashid", hex);
    vapi_out_int(call->out, "timestamp", (long long)time(NULL));
    vapi_out_close(call->out, "result");
    return 0;
}

static void maybe_purge(PGconn *c)
{
    long long now = (long long)time(NULL), last = atomic_load(&last_purge);
    if (now - last < SESSION_PURGE_SECONDS ||
        !atomic_compare_exchange_strong(&last_purge, &last, now))
        return;
    /* best effort: a failure only leaves dead rows for the next purge */
    (void)apisession_purge(c, NULL, NULL, 0);
}

static int cmd_authenticate(struct vapi_call *call, struct vapi_job *j)
{
    struct dir_account a;
    int rc = check_login(call, j, &a);
    if (rc < 0)
        return -1;
    j->login = rc == 0 ? 1 : -1;
    if (rc != 0) {
        call->error = "auth_login_invalid";
        return 0;
    }
    char v[8];
    bool persistent =
        vapi_request_text(call->req, "persistentlogin", v, sizeof v) && strcmp(v, "1") == 0;
    char sid[APISESSION_ID_SIZE];
    rc = apisession_create(call->db, a.id, persistent ? SESSION_IDLE_PERSISTENT : SESSION_IDLE,
                           persistent ? SESSION_MAX_PERSISTENT : SESSION_MAX, sid, call->log,
                           sizeof call->log);
    if (rc != 0)
        return -1;
    snprintf(call->sid, sizeof call->sid, "%s", sid);
    snprintf(j->login_name, sizeof j->login_name, "%s", a.address);
    maybe_purge(call->db);
    scalar_result(call, "1");
    return 0;
}

static void name_value(struct vapi_call *call, const char *elem, const char *full)
{
    char given[DIR_FULL_NAME_MAX + 1], surname[DIR_FULL_NAME_MAX + 1];
    vapi_name_split(full, given, sizeof given, surname, sizeof surname);
    vapi_out_open(call->out, elem);
    vapi_out_text(call->out, "classname", "TAccountName");
    vapi_out_text(call->out, "name", given);
    vapi_out_text(call->out, "surname", surname);
    vapi_out_close(call->out, elem);
}

/* A password check that opens no session (the archive's user logins). */
static int cmd_getauthtoken(struct vapi_call *call, struct vapi_job *j)
{
    struct dir_account a;
    int rc = check_login(call, j, &a);
    if (rc < 0)
        return -1;
    j->login = rc == 0 ? 1 : -1;
    if (rc != 0) {
        call->error = "auth_login_invalid";
        return 0;
    }
    snprintf(j->login_name, sizeof j->login_name, "%s", a.address);
    /* the token would log in to the vendor's web client, which Floe does not have: it is
     * random and stored nowhere (docs/VENDORAPI.md) */
    char token[65];
    random_hex(token, 16, true);
    vapi_call_begin(call);
    vapi_out_open(call->out, "result");
    vapi_out_text(call->out, "email", a.address);
    name_value(call, "name", a.full_name);
    vapi_out_text(call->out, "avatartoken", NULL);
    vapi_out_text(call->out, "authtoken", token);
    vapi_out_text(call->out, "avatarurl", NULL);
    vapi_out_close(call->out, "result");
    return 0;
}

static int cmd_logout(struct vapi_call *call, struct vapi_job *j)
{
    int rc = apisession_delete(call->db, call->req->sid, call->log, sizeof call->log);
    if (rc == DIR_ENOTFOUND) {
        call->error = "session_invalid";
        return 0;
    }
    if (rc != 0)
        return -1;
    scalar_result(call, "1");
    return 0;
}

static int cmd_getsessioninfo(struct vapi_call *call, struct vapi_job *j)
{
    const struct dir_account *a = call->who;
    const char *at = strrchr(a->address, '@');
    vapi_call_begin(call);
    vapi_out_open(call->out, "result");
    vapi_out_text(call->out, "email", a->address);
    vapi_out_text(call->out, "domain", at ? at + 1 : "");
    vapi_out_int(call->out, "admintype", call->level);
    name_value(call, "name", a->full_name);
    vapi_out_close(call->out, "result");
    return 0;
}

/* Commands of the vendor's API that change the directory: this API is read
 * only (Floe's directory is managed with floectl and /api/v1), so they answer
 * "not applied", <result>0</result>, as the vendor's server does for a write
 * it refuses. */
static int cmd_not_applied(struct vapi_call *call, struct vapi_job *j)
{
    scalar_result(call, "0");
    return 0;
}

#define DIR_CMD(fn)                                                                                \
    static int run_##fn(struct vapi_call *call, struct vapi_job *j)                                \
    {                                                                                              \
        return vapi_cmd_##fn(call);                                                                \
    }
DIR_CMD(getdomainsinfolist)
DIR_CMD(getaccountsinfolist)
DIR_CMD(getaccountproperties)
DIR_CMD(getmyproperties)
DIR_CMD(getaccountmemberinfolist)
DIR_CMD(getdomainproperties)
DIR_CMD(getserverproperties)

static const struct command commands[] = {
    {"getauthchallenge", false, cmd_getauthchallenge},
    {"authenticate", false, cmd_authenticate},
    {"getauthtoken", false, cmd_getauthtoken},
    {"logout", true, cmd_logout},
    {"getsessioninfo", true, cmd_getsessioninfo},
    {"getdomainsinfolist", true, run_getdomainsinfolist},
    {"getaccountsinfolist", true, run_getaccountsinfolist},
    {"getaccountproperties", true, run_getaccountproperties},
    {"getmyproperties", true, run_getmyproperties},
    {"getaccountmemberinfolist", true, run_getaccountmemberinfolist},
    {"getdomainproperties", true, run_getdomainproperties},
    {"getserverproperties", true, run_getserverproperties},
    /* writes: known, not applied */
    {"createaccount", true, cmd_not_applied},
    {"deleteaccount", true, cmd_not_applied},
    {"deleteaccounts", true, cmd_not_applied},
    {"setaccountproperties", true, cmd_not_applied},
    {"setaccountpassword", true, cmd_not_applied},
    {"setmyproperties", true, cmd_not_applied},
    {"createdomain", true, cmd_not_applied},
    {"deletedomain", true, cmd_not_applied},
    {"deletedomains", true, cmd_not_applied},
    {"setdomainproperties", true, cmd_not_applied},
    {"setserverproperties", true, cmd_not_applied},
    {"addaccountmembers", true, cmd_not_applied},
    {"deleteaccountmembers", true, cmd_not_applied},
    {"deleteallaccountmembers", true, cmd_not_applied},
    {"editaccountmembers", true, cmd_not_applied},
    {"editallaccountmembersrights", true, cmd_not_applied},
    {"addallaccountmembers", true, cmd_not_applied},
};

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

/* The administrator level of the session's account. 0 ok, -1 database error. */
static int session_level(struct vapi_call *call)
{
    if (call->who->is_admin) {
        call->level = VAPI_ADMIN_SERVER;
        return 0;
    }
    long long n = 0;
    if (dir_domain_admin_count(call->db, call->who->id, &n, call->log, sizeof call->log) != 0)
        return -1;
    call->level = n > 0 ? VAPI_ADMIN_DOMAIN : VAPI_ADMIN_NONE;
    return 0;
}

static void vapi_work(struct job *jb, struct worker *w)
{
    struct vapi_job *j = (struct vapi_job *)jb;
    j->status = 503;
    PGconn *c = worker_db(w, j->log, sizeof j->log);
    if (c == NULL)
        return;
    struct vapi_out *out = vapi_out_new(ANSWER_MAX);
    if (out == NULL) {
        snprintf(j->log, sizeof j->log, "out of memory");
        return;
    }
    struct dir_account who;
    struct vapi_call call = {.db = c, .req = j->req, .out = out};
    if (j->req->has_sid)
        snprintf(call.sid, sizeof call.sid, "%s", j->req->sid);
    int rc = 0;
    if (j->cmd->session) {
        rc = apisession_use(c, j->req->sid, &who, call.log, sizeof call.log);
        if (rc == DIR_ENOTFOUND) {
            call.error = "session_invalid";
            rc = 0;
        } else if (rc == 0) {
            call.who = &who;
            rc = session_level(&call);
        }
    }
    if (rc == 0 && call.error == NULL)
        rc = j->cmd->run(&call, j);
    if (rc != 0) {
        worker_db_check(w);
        snprintf(j->log, sizeof j->log, "%s", call.log);
    } else if (call.error != NULL) {
        j->doc = vapi_error_document(call.error, j->req->id, j->req->uid, call.sid);
        j->len = j->doc ? strlen(j->doc) : 0;
        j->status = j->doc ? 200 : 503;
        snprintf(j->log, sizeof j->log, "%s", call.error);
    } else {
        vapi_out_end(out);
        j->doc = vapi_out_take(out, &j->len);
        j->status = j->doc ? 200 : 503;
        if (j->doc == NULL)
            snprintf(j->log, sizeof j->log, "answer too large");
    }
    vapi_out_free(&out);
}

static void respond_doc(struct http_exchange *x, int status, char *doc, size_t len)
{
    if (status != 200 || doc == NULL)
        http_respond_status(x, 503);
    else
        http_respond(x, 200, "application/xml; charset=utf-8", doc, len, NULL);
}

static void vapi_done(struct job *jb)
{
    struct vapi_job *j = (struct vapi_job *)jb;
    struct conn *c = http_conn(j->x);
    if (j->login != 0) {
        /* node/ips.h: every checked login once, with the real client address */
        if (j->login > 0)
            ips_login_ok(conn_service(c), conn_peer_addr(c));
        else
            ips_login_failed(conn_service(c), conn_peer_addr(c));
        conn_log(c, j->login > 0 ? LOG_DEBUG : LOG_SUMMARY, "vendorapi %s %s for '%s'",
                 j->cmd->name, j->login > 0 ? "ok" : "failed", j->login_name);
    }
    if (j->status != 200)
        conn_log(c, LOG_SUMMARY, "vendorapi %s: unavailable: %s", j->cmd->name, j->log);
    else if (j->login == 0)
        conn_log(c, LOG_DEBUG, "vendorapi %s%s%s", j->cmd->name, *j->log ? ": " : "", j->log);
    respond_doc(j->x, j->status, j->doc, j->len);
    free(j->doc);
    vapi_request_free(&j->req);
    free(j);
}

static void respond_error(struct http_exchange *x, const char *uid, const struct vapi_request *req)
{
    char *doc = vapi_error_document(uid, req ? req->id : NULL, req ? req->uid : NULL,
                                    req && req->has_sid ? req->sid : NULL);
    respond_doc(x, 200, doc, doc ? strlen(doc) : 0);
    free(doc);
}

static void vendorapi(struct http_exchange *x)
{
    const struct http_request *hr = http_request(x);
    if (strcmp(hr->method, "POST") != 0 && strcmp(hr->method, "PUT") != 0) {
        http_respond(x, 405, "text/plain; charset=utf-8", "405 Method Not Allowed\n", 23,
                     "Allow: POST, PUT\r\n");
        return;
    }
    /* the Content-Type varies by client (text/xml, application/xml, curl's form type)
     * and is not looked at */
    struct vapi_request *req = NULL;
    int rc = vapi_request_parse(hr->body, hr->body_len, &req);
    if (rc != VAPI_PARSE_OK) {
        conn_log(http_conn(x), LOG_DEBUG, "vendorapi: unusable request (%d)", rc);
        respond_error(x,
                      rc == VAPI_PARSE_XMLNS        ? "iq_query_xmlns_invalid"
                      : rc == VAPI_PARSE_NO_COMMAND ? "invoker_commandname_invalid"
                                                    : "iq_root_tag_invalid",
                      req);
        vapi_request_free(&req);
        return;
    }
    const struct command *cmd = find_command(req->command);
    if (cmd == NULL) {
        conn_log(http_conn(x), LOG_DEBUG, "vendorapi: unknown command %s", req->command);
        respond_error(x, "invoker_commandname_invalid", req);
        vapi_request_free(&req);
        return;
    }
    struct vapi_job *j = calloc(1, sizeof *j);
    if (j == NULL) {
        vapi_request_free(&req);
        http_respond_status(x, 503);
        return;
    }
    j->x = x;
    j->req = req;
    j->cmd = cmd;
    j->tls = conn_is_tls(http_conn(x));
    struct runtime *rt = runtime_get();
    snprintf(j->node, sizeof j->node, "%s", rt->cfg->node_id);
    runtime_put(&rt);
    j->job.work = vapi_work;
    j->job.done = vapi_done;
    if (workers_submit(server_workers(), &j->job) < 0) {
        vapi_request_free(&j->req);
        free(j);
        http_respond_status(x, 503);
        return;
    }
    http_defer(x);
}

void vendorapi_http_init(void)
{
    /* libxml2's own initialisation is not thread-safe: do it before any I/O thread
     * parses a request */
    xmlInitParser();
    /* the key pair is made at start (it takes a moment); it is published in
     * PostgreSQL with the first challenge, when a worker has a connection */
    pthread_mutex_lock(&key_mu);
    if (key_renew(time(NULL)) != 0)
        log_warn("web", NULL, NULL, "vendorapi: cannot make an RSA key; retried at first use");
    pthread_mutex_unlock(&key_mu);
    /* "/icewarpapi" matches /icewarpapi, /icewarpapi/ and every path below */
    http_route("web", "/icewarpapi", vendorapi);
}
