/* floectl: the administrator's command line. It reads the node bootstrap file
 * for the database location and calls the same storage functions the node and
 * the admin API use (one implementation of each operation).
 *
 * Output is for people by default and JSON with --json. Exit status: 0 ok,
 * 1 the operation failed, 2 usage error. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "node/config.h"
#include "storage/db.h"
#include "storage/directory.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

static bool json_out;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: floectl [--config FILE] [--json] COMMAND ...\n"
            "  db status | db migrate\n"
            "  domain add NAME | domain list | domain delete NAME [--force]\n"
            "  account add ADDRESS [--password-stdin | --password PW] [--name FULLNAME]\n"
            "                      [--kind user|group|resource] [--admin]\n"
            "  account list [DOMAIN] | account show ADDRESS | account delete ADDRESS\n"
            "  account passwd ADDRESS [--password-stdin | --password PW]\n"
            "  account disable ADDRESS | account enable ADDRESS\n"
            "  cluster status | cluster master pin NODE | cluster master unpin\n"
            "  cluster master stepdown\n"
            "The password may also come from the environment variable FLOE_PASSWORD.\n");
}

static int fail(const char *msg)
{
    if (json_out) {
        json_t *o = json_pack("{s:b,s:s}", "ok", 0, "error", msg);
        json_dumpf(o, stdout, JSON_COMPACT);
        putchar('\n');
        json_decref(o);
    } else {
        fprintf(stderr, "floectl: %s\n", msg);
    }
    return EXIT_FAIL;
}

static int ok_msg(const char *msg)
{
    if (json_out) {
        json_t *o = json_pack("{s:b,s:s}", "ok", 1, "message", msg);
        json_dumpf(o, stdout, JSON_COMPACT);
        putchar('\n');
        json_decref(o);
    } else {
        printf("%s\n", msg);
    }
    return EXIT_OK;
}

static int print_json(json_t *o)
{
    json_dumpf(o, stdout, JSON_INDENT(2));
    putchar('\n');
    json_decref(o);
    return EXIT_OK;
}

/* ---- db ---- */

static int cmd_db(PGconn *c, int argc, char **argv)
{
    char err[1024];
    if (argc != 1)
        return usage(stderr), EXIT_USAGE;
    if (!strcmp(argv[0], "migrate")) {
        int n = db_migrate(c, err, sizeof(err));
        if (n < 0)
            return fail(err);
        char msg[128];
        snprintf(msg, sizeof(msg), "applied %d migration(s); schema version %d", n,
                 db_schema_latest());
        return ok_msg(msg);
    }
    if (!strcmp(argv[0], "status")) {
        int v;
        if (db_schema_version(c, &v, err, sizeof(err)) < 0)
            return fail(err);
        int latest = db_schema_latest();
        if (json_out)
            return print_json(json_pack("{s:i,s:i,s:b}", "version", v, "latest", latest,
                                        "current", v == latest));
        printf("schema version %d, this binary knows %d: %s\n", v, latest,
               v == latest  ? "up to date"
               : v < latest ? "migrations pending (floectl db migrate)"
                            : "database is newer than this binary");
        return EXIT_OK;
    }
    return usage(stderr), EXIT_USAGE;
}

/* ---- domain ---- */

static int domain_collect(const char *name, void *ctx)
{
    json_array_append_new(ctx, json_string(name));
    return 0;
}

static int cmd_domain(PGconn *c, int argc, char **argv)
{
    char err[1024], msg[512];
    if (argc >= 1 && !strcmp(argv[0], "list") && argc == 1) {
        json_t *a = json_array();
        if (dir_domain_list(c, domain_collect, a, err, sizeof(err)) < 0) {
            json_decref(a);
            return fail(err);
        }
        if (json_out)
            return print_json(a);
        size_t i;
        json_t *v;
        json_array_foreach(a, i, v) printf("%s\n", json_string_value(v));
        json_decref(a);
        return EXIT_OK;
    }
    if (argc == 2 && !strcmp(argv[0], "add")) {
        if (dir_domain_add(c, argv[1], err, sizeof(err)) < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "domain %s added", argv[1]);
        return ok_msg(msg);
    }
    if ((argc == 2 || argc == 3) && !strcmp(argv[0], "delete")) {
        bool force = argc == 3 && !strcmp(argv[2], "--force");
        if (argc == 3 && !force)
            return usage(stderr), EXIT_USAGE;
        if (dir_domain_delete(c, argv[1], force, err, sizeof(err)) < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "domain %s deleted", argv[1]);
        return ok_msg(msg);
    }
    return usage(stderr), EXIT_USAGE;
}

/* ---- account ---- */

static json_t *account_json(const struct dir_account *a)
{
    return json_pack("{s:I,s:s,s:s,s:s,s:b,s:b}", "id", (json_int_t)a->id, "address", a->address,
                     "kind", a->kind, "full_name", a->full_name, "disabled", a->disabled,
                     "admin", a->is_admin);
}

static int account_collect(const struct dir_account *a, void *ctx)
{
    json_array_append_new(ctx, account_json(a));
    return 0;
}

/* Reads a password from --password, --password-stdin or FLOE_PASSWORD. */
static int get_password(int argc, char **argv, char *out, size_t outlen, bool *given_r)
{
    *given_r = false;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--password") && i + 1 < argc) {
            snprintf(out, outlen, "%s", argv[i + 1]);
            *given_r = true;
        } else if (!strcmp(argv[i], "--password-stdin")) {
            if (!fgets(out, (int)outlen, stdin))
                return -1;
            out[strcspn(out, "\r\n")] = '\0';
            *given_r = true;
        }
    }
    const char *env = getenv("FLOE_PASSWORD");
    if (!*given_r && env) {
        snprintf(out, outlen, "%s", env);
        *given_r = true;
    }
    return 0;
}

static const char *opt_value(int argc, char **argv, const char *name)
{
    for (int i = 0; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return argv[i + 1];
    return NULL;
}

static bool opt_flag(int argc, char **argv, const char *name)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], name))
            return true;
    return false;
}

static int check_options(int argc, char **argv, const char *const *allowed, const char *const *with_value)
{
    for (int i = 0; i < argc; i++) {
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = !strcmp(argv[i], *a);
        for (const char *const *a = with_value; *a && !ok; a++)
            if (!strcmp(argv[i], *a) && i + 1 < argc) {
                ok = true;
                i++;
            }
        if (!ok)
            return -1;
    }
    return 0;
}

static int cmd_account(PGconn *c, int argc, char **argv)
{
    char err[1024], msg[512], pw[1100];
    bool given;
    if (argc < 1)
        return usage(stderr), EXIT_USAGE;
    const char *verb = argv[0];
    if (!strcmp(verb, "list") && argc <= 2) {
        json_t *a = json_array();
        if (dir_account_list(c, argc == 2 ? argv[1] : NULL, account_collect, a, err,
                             sizeof(err)) < 0) {
            json_decref(a);
            return fail(err);
        }
        if (json_out)
            return print_json(a);
        size_t i;
        json_t *v;
        json_array_foreach(a, i, v)
        {
            printf("%-40s %-8s%s%s\n", json_string_value(json_object_get(v, "address")),
                   json_string_value(json_object_get(v, "kind")),
                   json_is_true(json_object_get(v, "disabled")) ? " disabled" : "",
                   json_is_true(json_object_get(v, "admin")) ? " admin" : "");
        }
        json_decref(a);
        return EXIT_OK;
    }
    if (argc < 2)
        return usage(stderr), EXIT_USAGE;
    const char *addr = argv[1];
    int oc = argc - 2;
    char **ov = argv + 2;
    if (!strcmp(verb, "add")) {
        static const char *const flags[] = {"--password-stdin", "--admin", NULL};
        static const char *const vals[] = {"--password", "--name", "--kind", NULL};
        if (check_options(oc, ov, flags, vals) < 0)
            return usage(stderr), EXIT_USAGE;
        if (get_password(oc, ov, pw, sizeof(pw), &given) < 0)
            return fail("cannot read the password from standard input");
        const char *kind = opt_value(oc, ov, "--kind");
        const char *name = opt_value(oc, ov, "--name");
        if (dir_account_add(c, addr, kind ? kind : "user", given ? pw : NULL, name ? name : "",
                            opt_flag(oc, ov, "--admin"), err, sizeof(err)) < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "account %s added", addr);
        return ok_msg(msg);
    }
    if (oc == 0 && !strcmp(verb, "show")) {
        struct dir_account a;
        if (dir_account_find(c, addr, &a, err, sizeof(err)) < 0)
            return fail(err);
        if (json_out)
            return print_json(account_json(&a));
        printf("address:   %s\nkind:      %s\nfull name: %s\ndisabled:  %s\nadmin:     %s\n",
               a.address, a.kind, a.full_name, a.disabled ? "yes" : "no",
               a.is_admin ? "yes" : "no");
        return EXIT_OK;
    }
    if (oc == 0 && !strcmp(verb, "delete")) {
        if (dir_account_delete(c, addr, err, sizeof(err)) < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "account %s deleted", addr);
        return ok_msg(msg);
    }
    if (!strcmp(verb, "passwd")) {
        static const char *const flags[] = {"--password-stdin", NULL};
        static const char *const vals[] = {"--password", NULL};
        if (check_options(oc, ov, flags, vals) < 0)
            return usage(stderr), EXIT_USAGE;
        if (get_password(oc, ov, pw, sizeof(pw), &given) < 0 || !given)
            return fail("no password given (--password, --password-stdin or FLOE_PASSWORD)");
        if (dir_account_passwd(c, addr, pw, err, sizeof(err)) < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "password of %s changed", addr);
        return ok_msg(msg);
    }
    if (oc == 0 && (!strcmp(verb, "disable") || !strcmp(verb, "enable"))) {
        bool dis = !strcmp(verb, "disable");
        if (dir_account_set_disabled(c, addr, dis, err, sizeof(err)) < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "account %s %s", addr, dis ? "disabled" : "enabled");
        return ok_msg(msg);
    }
    return usage(stderr), EXIT_USAGE;
}

/* ---- cluster ---- */

static int cmd_cluster(PGconn *c, int argc, char **argv)
{
    char err[1024], msg[256];
    if (argc == 1 && !strcmp(argv[0], "status")) {
        struct cluster_status st;
        if (cluster_status_read(c, &st, err, sizeof(err)) < 0)
            return fail(err);
        if (json_out) {
            json_t *nodes = json_array();
            for (size_t i = 0; i < st.nnodes; i++) {
                const struct cluster_node_status *n = &st.nodes[i];
                json_t *conns = json_loads(n->connections, 0, NULL);
                json_array_append_new(
                    nodes, json_pack("{s:s,s:s,s:b,s:s,s:s,s:I,s:I,s:o}", "node", n->node_id,
                                     "state", n->state, "master", n->master, "addresses",
                                     n->addresses, "version", n->version, "heartbeat_age",
                                     (json_int_t)n->heartbeat_age_s, "started",
                                     (json_int_t)n->started_unix, "connections",
                                     conns ? conns : json_object()));
            }
            json_t *o = json_pack("{s:I,s:s?,s:s?,s:o}", "epoch", (json_int_t)st.epoch, "master",
                                  *st.master ? st.master : NULL, "pinned",
                                  *st.pinned ? st.pinned : NULL, "nodes", nodes);
            cluster_status_free(&st);
            return print_json(o);
        }
        printf("master: %s (epoch %lld)%s%s\n", *st.master ? st.master : "none", st.epoch,
               *st.pinned ? ", pinned to " : "", st.pinned);
        printf("%-20s %-8s %-6s %-10s %s\n", "NODE", "STATE", "MASTER", "HEARTBEAT", "CONNECTIONS");
        for (size_t i = 0; i < st.nnodes; i++) {
            const struct cluster_node_status *n = &st.nodes[i];
            printf("%-20s %-8s %-6s %-10lld %s\n", n->node_id, n->state, n->master ? "yes" : "",
                   n->heartbeat_age_s, n->connections);
        }
        cluster_status_free(&st);
        return EXIT_OK;
    }
    if (argc >= 2 && !strcmp(argv[0], "master")) {
        if (argc == 3 && !strcmp(argv[1], "pin")) {
            if (cluster_pin(c, argv[2], err, sizeof(err)) < 0)
                return fail(err);
            snprintf(msg, sizeof(msg), "master pinned to %s", argv[2]);
            return ok_msg(msg);
        }
        if (argc == 2 && !strcmp(argv[1], "unpin")) {
            if (cluster_pin(c, NULL, err, sizeof(err)) < 0)
                return fail(err);
            return ok_msg("master unpinned");
        }
        if (argc == 2 && !strcmp(argv[1], "stepdown")) {
            if (cluster_stepdown(c, err, sizeof(err)) < 0)
                return fail(err);
            return ok_msg("the master was asked to step down");
        }
    }
    return usage(stderr), EXIT_USAGE;
}

int main(int argc, char **argv)
{
    const char *path = getenv("FLOE_CONFIG") ? getenv("FLOE_CONFIG") : "/etc/floe/floed.conf";
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int ch;
    /* '+': stop at the first command word so its own options reach it. */
    while ((ch = getopt_long(argc, argv, "+c:jh", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            path = optarg;
            break;
        case 'j':
            json_out = true;
            break;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[optind];
    if (strcmp(cmd, "db") && strcmp(cmd, "domain") && strcmp(cmd, "account") &&
        strcmp(cmd, "cluster")) {
        usage(stderr);
        return EXIT_USAGE;
    }
    char err[1024];
    struct config *cfg = config_load(path, -1, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "floectl: %s\n", err);
        return EXIT_USAGE;
    }
    if (!*cfg->db_url) {
        config_free(&cfg);
        return fail("no [database] url in the configuration");
    }
    PGconn *c = db_connect(cfg->db_url, (int)cfg->db_statement_timeout_ms, err, sizeof(err));
    config_free(&cfg);
    if (!c)
        return fail(err);
    int rc;
    int sub_argc = argc - optind - 1;
    char **sub_argv = argv + optind + 1;
    if (!strcmp(cmd, "db"))
        rc = cmd_db(c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "domain"))
        rc = cmd_domain(c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "cluster"))
        rc = cmd_cluster(c, sub_argc, sub_argv);
    else
        rc = cmd_account(c, sub_argc, sub_argv);
    PQfinish(c);
    return rc;
}
