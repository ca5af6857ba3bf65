/* Scheduled tasks and events (see scheduler.h).
 *
 * One scheduler thread per node, with its own PostgreSQL connection, ticks
 * every second: it reads the enabled tasks, works out each one's latest due
 * slot, claims it, runs it to the end (a run blocks the thread; tasks are
 * maintenance, and their timeout bounds them) and records the outcome. */
#include "cluster/scheduler.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "cluster/cron.h"
#include "cluster/watchdog.h"
#include "storage/blobgc.h"
#include "storage/changes.h"
#include "storage/db.h"

extern char **environ;

#define OUTPUT_MAX 4096

static struct {
    char *node_id, *db_url, *mail_hostname;
    void (*log)(bool, const char *, void *);
    void *log_arg;
    struct blob_store *blobs;
    pthread_t thread;
    pthread_t events[16]; /* event runs in flight, joined at stop */
    size_t nevents;
    bool running, stop;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    PGconn *db;
} sch = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

__attribute__((format(printf, 2, 3))) static void say(bool warning, const char *fmt, ...)
{
    if (!sch.log)
        return;
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sch.log(warning, msg, sch.log_arg);
}

static PGresult *q(PGconn *c, const char *sql, int n, const char *const *p)
{
    return PQexecParams(c, sql, n, NULL, p, NULL, NULL, 0);
}

/* ---- actions ---- */

struct run_info {
    const char *task, *slot;
    long long epoch;
    int timeout_s;
};

/* /bin/sh -c target; output (bounded) into out. 0 when it exits 0. */
static int run_command(const char *target, const struct run_info *ri, char *out, size_t outlen)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        snprintf(out, outlen, "pipe: %s", strerror(errno));
        return -1;
    }
    char e_task[128], e_node[128], e_epoch[48], e_slot[64];
    snprintf(e_task, sizeof(e_task), "FLOE_TASK=%s", ri->task);
    snprintf(e_node, sizeof(e_node), "FLOE_NODE=%s", sch.node_id);
    snprintf(e_epoch, sizeof(e_epoch), "FLOE_EPOCH=%lld", ri->epoch);
    snprintf(e_slot, sizeof(e_slot), "FLOE_SLOT=%s", ri->slot);
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 5, sizeof(*env));
    if (!env) {
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "FLOE_", 5))
            env[k++] = environ[i];
    env[k++] = e_task;
    env[k++] = e_node;
    env[k++] = e_epoch;
    env[k++] = e_slot;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    char *argv[] = {"/bin/sh", "-c", (char *)(uintptr_t)target, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    free(env);
    close(pipefd[1]);
    if (rc != 0) {
        close(pipefd[0]);
        snprintf(out, outlen, "cannot start /bin/sh: %s", strerror(rc));
        return -1;
    }
    size_t used = 0;
    time_t deadline = time(NULL) + ri->timeout_s;
    bool timed_out = false;
    for (;;) {
        int left = (int)(deadline - time(NULL));
        if (left <= 0) {
            timed_out = true;
            kill(-pid, SIGKILL);
            break;
        }
        struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
        int pr = poll(&pfd, 1, left * 1000);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        char buf[1024];
        ssize_t r = read(pipefd[0], buf, sizeof(buf));
        if (r <= 0)
            break;
        size_t take = (size_t)r;
        if (used + take > outlen - 1)
            take = outlen - 1 - used;
        memcpy(out + used, buf, take);
        used += take;
    }
    out[used] = '\0';
    close(pipefd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (timed_out) {
        snprintf(out + used, outlen - used, "%stimed out after %d s", used ? "\n" : "",
                 ri->timeout_s);
        return -1;
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static size_t discard(char *p, size_t size, size_t n, void *ctx)
{
    return size * n;
}

static int run_url(const char *target, const struct run_info *ri, char *out, size_t outlen)
{
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(out, outlen, "cannot start an HTTP client");
        return -1;
    }
    curl_easy_setopt(h, CURLOPT_URL, target);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)ri->timeout_s);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    CURLcode rc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
    if (rc != CURLE_OK) {
        snprintf(out, outlen, "%s", curl_easy_strerror(rc));
        return -1;
    }
    snprintf(out, outlen, "HTTP %ld", code);
    return code >= 200 && code < 300 ? 0 : -1;
}

static int run_builtin(PGconn *c, const char *target, char *out, size_t outlen)
{
    int days = 30;
    if (!strncmp(target, "tombstone_purge", 15) &&
        (target[15] == '\0' || sscanf(target + 15, " %d", &days) == 1) && days > 0) {
        long long purged = 0;
        if (changes_purge_tombstones(c, (long long)days * 86400, CHANGES_PURGE_BATCH_MAX,
                                     &purged) < 0) {
            snprintf(out, outlen, "purge failed: %s", PQerrorMessage(c));
            return -1;
        }
        snprintf(out, outlen, "purged %lld tombstone(s) older than %d days", purged, days);
        return 0;
    }
    int hours = 24;
    if (!strncmp(target, "blob_gc", 7) &&
        (target[7] == '\0' || sscanf(target + 7, " %d", &hours) == 1) && hours > 0) {
        if (!sch.blobs) {
            snprintf(out, outlen, "no blob store on this node");
            return -1;
        }
        struct blobgc_result res;
        char err[256];
        if (blobgc_run(c, sch.blobs, (long long)hours * 3600, &res, err, sizeof(err)) < 0) {
            snprintf(out, outlen, "blob collection failed: %s", err);
            return -1;
        }
        snprintf(out, outlen, "examined %lld blob(s), deleted %lld, purged %lld upload(s)",
                 res.examined, res.deleted, res.uploads_purged);
        return 0;
    }
    snprintf(out, outlen, "unknown built-in task '%s'", target);
    return -1;
}

static bool builtin_known(const char *target)
{
    int n;
    return !strcmp(target, "tombstone_purge") || !strcmp(target, "blob_gc") ||
           (!strncmp(target, "tombstone_purge ", 16) && sscanf(target + 16, "%d", &n) == 1 &&
            n > 0) ||
           (!strncmp(target, "blob_gc ", 8) && sscanf(target + 8, "%d", &n) == 1 && n > 0);
}

/* ---- the scheduler loop ---- */

static bool claim(PGconn *c, const char *task_id, bool master_only, const char *slot,
                  long long epoch)
{
    char ep[24];
    snprintf(ep, sizeof(ep), "%lld", epoch);
    if (!master_only) {
        const char *p[] = {task_id, sch.node_id, slot};
        PGresult *r = q(c,
                        "INSERT INTO task_runs (task_id, node_id, slot, ran_on)"
                        " VALUES ($1, $2, to_timestamp($3), $2) ON CONFLICT DO NOTHING RETURNING 1",
                        3, p);
        bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
        PQclear(r);
        return ok;
    }
    if (db_begin(c) < 0)
        return false;
    /* Fencing: the claim commits only while our epoch is the cluster's. */
    if (cluster_epoch_is_current(c, epoch) != 1) {
        db_rollback(c);
        return false;
    }
    const char *p[] = {task_id, slot, sch.node_id, ep};
    PGresult *r = q(c,
                    "INSERT INTO task_runs (task_id, node_id, slot, ran_on, epoch)"
                    " VALUES ($1, '', to_timestamp($2), $3, $4)"
                    " ON CONFLICT (task_id, node_id, slot) DO UPDATE SET ran_on = EXCLUDED.ran_on,"
                    " epoch = EXCLUDED.epoch, started_at = now()"
                    " WHERE task_runs.status = 'running' AND task_runs.epoch < EXCLUDED.epoch"
                    " RETURNING 1",
                    4, p);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    PQclear(r);
    if (!ok || db_commit(c) < 0) {
        db_rollback(c);
        return false;
    }
    return true;
}

static void record(PGconn *c, const char *task_id, bool master_only, const char *slot, bool ok,
                   const char *output)
{
    const char *p[] = {task_id, master_only ? "" : sch.node_id, slot, ok ? "ok" : "failed",
                       output, sch.node_id};
    PGresult *r = q(c,
                    "UPDATE task_runs SET finished_at = now(), status = $4, output = $5"
                    " WHERE task_id = $1 AND node_id = $2 AND slot = to_timestamp($3)"
                    " AND ran_on = $6",
                    6, p);
    PQclear(r);
}

static int run_action(PGconn *c, const char *action, const char *target,
                      const struct run_info *ri, char *out, size_t outlen)
{
    if (!strcmp(action, "command"))
        return run_command(target, ri, out, outlen);
    if (!strcmp(action, "url"))
        return run_url(target, ri, out, outlen);
    return run_builtin(c, target, out, outlen);
}

static void run_due(PGconn *c)
{
    long long epoch = cluster_master_epoch();
    char epoch_s[24];
    snprintf(epoch_s, sizeof(epoch_s), "%lld", epoch);
    PGresult *r = q(c,
                    "SELECT t.id, t.name, t.schedule, t.master_only, t.action, t.target,"
                    " t.timeout_s, extract(epoch FROM coalesce((SELECT max(slot) FROM task_runs"
                    " WHERE task_id = t.id AND node_id = CASE WHEN t.master_only THEN ''"
                    " ELSE $1 END), t.created_at))::bigint,"
                    /* a master-only slot left running under an older epoch: its master died */
                    " (SELECT extract(epoch FROM slot)::bigint FROM task_runs WHERE task_id = t.id"
                    "  AND node_id = '' AND status = 'running' AND epoch < $2"
                    "  ORDER BY slot DESC LIMIT 1)"
                    " FROM tasks t WHERE t.enabled ORDER BY t.id",
                    2, (const char *const[]){sch.node_id, epoch_s});
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        return;
    }
    time_t now = time(NULL);
    for (int i = 0; i < PQntuples(r) && !sch.stop; i++) {
        const char *id = PQgetvalue(r, i, 0), *name = PQgetvalue(r, i, 1);
        bool master_only = PQgetvalue(r, i, 3)[0] == 't';
        if (master_only && epoch <= 0)
            continue;
        struct cron cr;
        char err[160];
        if (cron_parse(PQgetvalue(r, i, 2), &cr, err, sizeof(err)) < 0)
            continue;
        time_t last = (time_t)atoll(PQgetvalue(r, i, 7));
        time_t slot = cron_next(&cr, last);
        if (master_only && !PQgetisnull(r, i, 8)) {
            slot = (time_t)atoll(PQgetvalue(r, i, 8)); /* resume the dead master's run */
            say(false, "task %s: taking over the run a previous master left unfinished", name);
        } else {
            if (slot < 0 || slot > now)
                continue;
            /* Several slots missed (node down): run once, for the latest. */
            for (int guard = 0; guard < 100000; guard++) {
                time_t n = cron_next(&cr, slot);
                if (n < 0 || n > now)
                    break;
                slot = n;
            }
        }
        char slots[24];
        snprintf(slots, sizeof(slots), "%lld", (long long)slot);
        if (!claim(c, id, master_only, slots, epoch))
            continue;
        struct run_info ri = {name, slots, epoch, atoi(PQgetvalue(r, i, 6))};
        char out[OUTPUT_MAX];
        int rc = run_action(c, PQgetvalue(r, i, 4), PQgetvalue(r, i, 5), &ri, out, sizeof(out));
        /* a master that lost its epoch meanwhile still records what it did */
        record(c, id, master_only, slots, rc == 0, out);
        if (rc != 0)
            say(true, "task %s failed: %.200s", name, out);
    }
    PQclear(r);
}

static void *thread_main(void *arg)
{
    pthread_mutex_lock(&sch.lock);
    while (!sch.stop) {
        pthread_mutex_unlock(&sch.lock);
        if (!sch.db || PQstatus(sch.db) != CONNECTION_OK) {
            if (sch.db)
                PQfinish(sch.db);
            char err[256];
            sch.db = db_connect(sch.db_url, 0, err, sizeof(err));
        }
        if (sch.db)
            run_due(sch.db);
        if (sch.db) /* does nothing unless this node is master */
            watchdog_run_due(sch.db, sch.node_id, cluster_master_epoch(), sch.log, sch.log_arg);
        char merr[256];
        if (sch.db && sch.blobs && cluster_master_epoch() > 0 &&
            watchdog_mail_alerts(sch.db, sch.blobs, sch.mail_hostname, sch.node_id, merr,
                                 sizeof(merr)) < 0 &&
            sch.log)
            sch.log(true, merr, sch.log_arg);
        pthread_mutex_lock(&sch.lock);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        while (!sch.stop && pthread_cond_timedwait(&sch.cond, &sch.lock, &ts) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&sch.lock);
    if (sch.db)
        PQfinish(sch.db);
    sch.db = NULL;
    return NULL;
}

int scheduler_start(const struct scheduler_config *cfg, char *err, size_t errlen)
{
    sch.node_id = strdup(cfg->node_id);
    sch.db_url = strdup(cfg->db_url);
    sch.log = cfg->log;
    sch.log_arg = cfg->log_arg;
    sch.blobs = cfg->blobs;
    sch.mail_hostname = strdup(cfg->mail_hostname ? cfg->mail_hostname : "localhost");
    sch.stop = false;
    if (!sch.node_id || !sch.db_url || pthread_create(&sch.thread, NULL, thread_main, NULL)) {
        snprintf(err, errlen, "cannot start the scheduler");
        return -1;
    }
    sch.running = true;
    return 0;
}

static void run_event(const char *event);

void scheduler_stop(void)
{
    if (!sch.running)
        return;
    pthread_mutex_lock(&sch.lock);
    sch.stop = true;
    pthread_cond_signal(&sch.cond);
    pthread_mutex_unlock(&sch.lock);
    pthread_join(sch.thread, NULL);
    for (size_t i = 0; i < sch.nevents; i++)
        pthread_join(sch.events[i], NULL);
    sch.nevents = 0;
    run_event("server_stopped"); /* while this node may still be master */
    sch.running = false;
    free(sch.node_id);
    free(sch.db_url);
    free(sch.mail_hostname);
    sch.node_id = sch.db_url = sch.mail_hostname = NULL;
}

/* ---- events ---- */

static void run_event(const char *event)
{
    char err[256];
    PGconn *c = db_connect(sch.db_url, 0, err, sizeof(err));
    if (!c)
        return;
    const char *p[] = {event};
    PGresult *r = q(c,
                    "SELECT name, master_only, action, target, timeout_s FROM events"
                    " WHERE event = $1 AND enabled ORDER BY id",
                    1, p);
    for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); i++) {
        bool master_only = PQgetvalue(r, i, 1)[0] == 't';
        long long epoch = cluster_master_epoch();
        if (master_only && epoch <= 0)
            continue;
        char slot[24];
        snprintf(slot, sizeof(slot), "%lld", (long long)time(NULL));
        struct run_info ri = {PQgetvalue(r, i, 0), slot, epoch, atoi(PQgetvalue(r, i, 4))};
        char out[OUTPUT_MAX];
        if (run_action(c, PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), &ri, out, sizeof(out)) != 0)
            say(true, "event %s (%s) failed: %.200s", PQgetvalue(r, i, 0), event, out);
        else
            say(false, "event %s (%s) ran", PQgetvalue(r, i, 0), event);
    }
    PQclear(r);
    PQfinish(c);
}

static void *event_thread(void *arg)
{
    run_event(arg);
    free(arg);
    return NULL;
}

void scheduler_event(const char *event)
{
    if (!sch.running)
        return;
    char *copy = strdup(event);
    if (copy && sch.nevents < sizeof(sch.events) / sizeof(sch.events[0]) &&
        pthread_create(&sch.events[sch.nevents], NULL, event_thread, copy) == 0) {
        sch.nevents++;
        return;
    }
    free(copy);
    run_event(event); /* too many in flight: run it here */
}

/* ---- administration ---- */

static int admin_exec(PGconn *c, const char *sql, int n, const char *const *p, char *err,
                      size_t errlen, const char *what)
{
    PGresult *r = q(c, sql, n, p);
    if (db_ok(r)) {
        bool none = !strcmp(PQcmdTuples(r), "0");
        PQclear(r);
        if (none) {
            snprintf(err, errlen, "no %s named '%s'", what, p[0]);
            return -2;
        }
        return 0;
    }
    int rc = db_sqlstate_is(r, "23505") ? -3 : -1;
    if (rc == -3)
        snprintf(err, errlen, "a %s named '%s' exists already", what, p[0]);
    else if (db_sqlstate_is(r, "23514"))
        snprintf(err, errlen, "invalid %s: name is 1-64 of [A-Za-z0-9._-]", what);
    else
        db_set_error(err, errlen, c, r, what);
    PQclear(r);
    return rc;
}

static int check_action(const char *action, const char *target, bool builtin_ok, char *err,
                        size_t errlen)
{
    if (!strcmp(action, "command") && *target)
        return 0;
    if (!strcmp(action, "url") && (!strncmp(target, "http://", 7) || !strncmp(target, "https://", 8)))
        return 0;
    if (builtin_ok && !strcmp(action, "builtin") && builtin_known(target))
        return 0;
    snprintf(err, errlen, "action must be command CMD, url http(s)://...%s",
             builtin_ok ? ", builtin tombstone_purge [DAYS] or builtin blob_gc [HOURS]" : "");
    return -1;
}

int scheduler_task_add(PGconn *c, const char *name, const char *schedule, bool master_only,
                       const char *action, const char *target, int timeout_s, char *err,
                       size_t errlen)
{
    struct cron cr;
    if (cron_parse(schedule, &cr, err, errlen) < 0 ||
        check_action(action, target, true, err, errlen) < 0)
        return -1;
    char to[16];
    snprintf(to, sizeof(to), "%d", timeout_s > 0 ? timeout_s : 300);
    const char *p[] = {name, schedule, master_only ? "t" : "f", action, target, to};
    return admin_exec(c,
                      "INSERT INTO tasks (name, schedule, master_only, action, target, timeout_s)"
                      " VALUES ($1, $2, $3, $4, $5, $6)",
                      6, p, err, errlen, "task");
}

int scheduler_task_remove(PGconn *c, const char *name, char *err, size_t errlen)
{
    const char *p[] = {name};
    return admin_exec(c, "DELETE FROM tasks WHERE name = $1", 1, p, err, errlen, "task");
}

int scheduler_event_add(PGconn *c, const char *name, const char *event, bool master_only,
                        const char *action, const char *target, char *err, size_t errlen)
{
    if (strcmp(event, "server_started") && strcmp(event, "server_stopped") &&
        strcmp(event, "settings_changed")) {
        snprintf(err, errlen, "event must be server_started, server_stopped or settings_changed");
        return -1;
    }
    if (check_action(action, target, false, err, errlen) < 0)
        return -1;
    const char *p[] = {name, event, master_only ? "t" : "f", action, target};
    return admin_exec(c,
                      "INSERT INTO events (name, event, master_only, action, target)"
                      " VALUES ($1, $2, $3, $4, $5)",
                      5, p, err, errlen, "event");
}

int scheduler_event_remove(PGconn *c, const char *name, char *err, size_t errlen)
{
    const char *p[] = {name};
    return admin_exec(c, "DELETE FROM events WHERE name = $1", 1, p, err, errlen, "event");
}
