/* floectl: the administrator's command line. It reads the node bootstrap file
 * for the database location and calls the same storage functions the node and
 * the admin API use (one implementation of each operation).
 *
 * Output is for people by default and JSON with --json. Exit status: 0 ok,
 * 1 the operation failed, 2 usage error. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "cluster/scheduler.h"
#include "node/http/discover_settings.h"
#include "proto/autodiscover/dnsrecords.h"
#include "cluster/watchdog.h"
#include "node/config.h"
#include "node/http/api_json.h"
#include "node/ips.h"
#include "storage/acl.h"
#include "storage/aliases.h"
#include "storage/autoreply.h"
#include "storage/db.h"
#include "storage/directory.h"
#include "storage/domainadmin.h"
#include "storage/folders.h"
#include "storage/groups.h"
#include "storage/ingest.h"
#include "storage/ips.h"
#include "storage/policy.h"
#include "storage/queue.h"
#include "storage/quota.h"
#include "storage/smartdiscover.h"

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
            "  account admin-of ADDRESS DOMAIN [--remove]   (domain administrator)\n"
            "  alias add ALIAS ACCOUNT | alias remove ALIAS | alias list ACCOUNT\n"
            "  domain alias add ALIAS DOMAIN | domain alias remove ALIAS\n"
            "  domain alias list [DOMAIN] | domain catchall DOMAIN [ACCOUNT | --none]\n"
            "  forward set ADDRESS [--keep-copy] TARGET... | forward show|clear ADDRESS\n"
            "  autoreply set ADDRESS (--body TEXT | --body-file FILE) [--subject S]\n"
            "                [--interval SECONDS] [--from YYYY-MM-DD] [--until YYYY-MM-DD]\n"
            "  autoreply show|clear ADDRESS\n"
            "  group add ADDRESS [--name N] [--deliver members|folder]\n"
            "  group set GROUP --deliver members|folder\n"
            "  group member add|remove GROUP MEMBER [--kind account|group|domain]\n"
            "  group members GROUP [--expand]\n"
            "  resource add ADDRESS --type room|equipment [--name N]\n"
            "               [--booking auto_accept|manager_approval]\n"
            "  resource set ADDRESS [--type T] [--booking B] | resource show ADDRESS\n"
            "  resource manager add|remove RESOURCE MANAGER\n"
            "  quota set server|domain D|account A [--bytes N[K|M|G|T]] [--messages N]\n"
            "            [--account-bytes N] [--account-messages N] [--force]\n"
            "      (domain: --bytes/--messages are totals, --account-* the default per\n"
            "       account; a limit may be 'unlimited' (0), or 'inherit' below server)\n"
            "  quota show account A|domain D|server\n"
            "  policy set domain D|account A SERVICE enabled|disabled|inherit\n"
            "  policy show domain D|account A\n"
            "      (services: imap pop3 smtp activesync dav syncml)\n"
            "  login-policy set full_address|local_part_when_unambiguous | login-policy show\n"
            "  cluster status | cluster master pin NODE | cluster master unpin\n"
            "  task add NAME --schedule CRON [--every-node] [--timeout S]\n"
            "           (command CMD | url URL | builtin tombstone_purge [DAYS]\n"
            "            | builtin blob_gc [HOURS])\n"
            "  task list | task runs NAME | task remove NAME\n"
            "  event add NAME server_started|server_stopped|settings_changed [--master-only]\n"
            "           (command CMD | url URL)\n"
            "  event list | event remove NAME\n"
            "  dns records DOMAIN [--host NAME] [--ttl SECONDS]\n"
            "  autodiscover show DOMAIN   (what Outlook, phones and Thunderbird receive)\n"
            "  autodiscover settings DOMAIN | autodiscover unset DOMAIN FIELD... | --all\n"
            "  autodiscover set DOMAIN FIELD VALUE [FIELD VALUE ...]\n"
            "      (SmartDiscover fields: public_hostname; smtp|pop3|imap|xmpp|sip _host, _tls\n"
            "       (tls|starttls|none), _port; mobilesync|syncml|webdav|webclient|webadmin|\n"
            "       freebusy|icalendar|caldav|carddav _url)\n"
            "  cluster master stepdown\n"
            "  ips list [--all] | ips unblock ADDRESS [--service S]\n"
            "  ips block ADDRESS [--minutes N] [--service S] [--reason TEXT]\n"
            "      (intrusion prevention; default length [ips] block, service: every one)\n"
            "  watchdog add NAME TARGET [--interval S] [--down-after M] [--send STR]\n"
            "               [--expect RE] [--alert ADDRESS] [--back-online]\n"
            "      (TARGET: tcp://HOST:PORT | http(s)://URL | dns://NAME:TYPE, TYPE one of\n"
            "       a aaaa mx txt ptr cname srv naptr; STR may hold \\r \\n \\xHH)\n"
            "  watchdog list | watchdog remove NAME | watchdog alerts [NAME]\n"
            "  queue list | queue show ID | queue retry ID|all | queue delete ID\n"
            "  mail deliver ADDRESS [--folder PATH] < MESSAGE   (stores it, prints the UID)\n"
            "  folder list ADDRESS | folder create ADDRESS PATH [--kind K]\n"
            "  folder acl ADDRESS PATH [GRANTEE RIGHTS|none] | folder inherit ADDRESS PATH\n"
            "      (GRANTEE: anyone, a domain, an account or group address; RIGHTS: letters of\n"
            "       lrswipkxtea, RFC 4314; a group's folders are the public folders)\n"
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

static int cmd_domain_alias(PGconn *c, int argc, char **argv);
static int cmd_domain_catchall(PGconn *c, int argc, char **argv);

static int cmd_domain(PGconn *c, int argc, char **argv)
{
    char err[1024], msg[512];
    if (argc >= 1 && !strcmp(argv[0], "alias"))
        return cmd_domain_alias(c, argc - 1, argv + 1);
    if (argc >= 1 && !strcmp(argv[0], "catchall"))
        return cmd_domain_catchall(c, argc - 1, argv + 1);
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
        if (dir_account_list(c, argc == 2 ? argv[1] : NULL, api_json_collect_account, a, err,
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
        json_t *admin_of = json_array();
        if (dir_domain_admin_list(c, addr, domain_collect, admin_of, err, sizeof(err)) < 0) {
            json_decref(admin_of);
            return fail(err);
        }
        if (json_out) {
            json_t *o = api_json_account(&a);
            json_object_set_new(o, "admin_of", admin_of);
            return print_json(o);
        }
        printf("address:   %s\nkind:      %s\nfull name: %s\ndisabled:  %s\nadmin:     %s\n",
               a.address, a.kind, a.full_name, a.disabled ? "yes" : "no",
               a.is_admin ? "yes" : "no");
        size_t i;
        json_t *v;
        printf("admin of: ");
        json_array_foreach(admin_of, i, v) printf("%s%s", i ? " " : "", json_string_value(v));
        printf("%s\n", json_array_size(admin_of) ? "" : "-");
        json_decref(admin_of);
        return EXIT_OK;
    }
    if (!strcmp(verb, "admin-of") && (oc == 1 || (oc == 2 && !strcmp(ov[1], "--remove")))) {
        bool remove = oc == 2;
        int rc = remove ? dir_domain_admin_remove(c, addr, ov[0], err, sizeof(err))
                        : dir_domain_admin_add(c, addr, ov[0], err, sizeof(err));
        if (rc < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "%s %s administrator of %s", addr,
                 remove ? "is no longer" : "is now", ov[0]);
        return ok_msg(msg);
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

/* ---- argument helpers for the directory commands ---- */

/* Splits argv into positional arguments and options. An option must be in
 * flags or in with_value (which takes the next argument). Returns the number
 * of positionals (stored in pos[], at most max), or -1 for an unknown
 * option, a missing value or too many positionals. */
static int split_args(int argc, char **argv, const char *const *flags,
                      const char *const *with_value, char **pos, int max)
{
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0) {
            if (n >= max)
                return -1;
            pos[n++] = argv[i];
            continue;
        }
        bool ok = false;
        for (const char *const *a = flags; a && *a && !ok; a++)
            ok = !strcmp(argv[i], *a);
        for (const char *const *a = with_value; a && *a && !ok; a++)
            if (!strcmp(argv[i], *a) && i + 1 < argc) {
                ok = true;
                i++;
            }
        if (!ok)
            return -1;
    }
    return n;
}

static void print_list(json_t *a)
{
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) printf("%s\n", json_string_value(v));
}

/* ---- domain alias / domain catchall ---- */

static int domain_alias_collect(const char *alias, const char *domain, void *ctx)
{
    json_array_append_new(ctx, json_pack("{s:s,s:s}", "alias", alias, "domain", domain));
    return 0;
}

static int cmd_domain_alias(PGconn *c, int argc, char **argv)
{
    char err[1024], msg[700];
    if (argc == 3 && !strcmp(argv[0], "add")) {
        if (dir_domain_alias_add(c, argv[1], argv[2], err, sizeof(err)) < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "domain alias %s added for %s", argv[1], argv[2]);
        return ok_msg(msg);
    }
    if (argc == 2 && !strcmp(argv[0], "remove")) {
        if (dir_domain_alias_remove(c, argv[1], err, sizeof(err)) < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "domain alias %s removed", argv[1]);
        return ok_msg(msg);
    }
    if ((argc == 1 || argc == 2) && !strcmp(argv[0], "list")) {
        json_t *a = json_array();
        if (dir_domain_alias_list(c, argc == 2 ? argv[1] : NULL, domain_alias_collect, a, err,
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
            printf("%-40s -> %s\n", json_string_value(json_object_get(v, "alias")),
                   json_string_value(json_object_get(v, "domain")));
        }
        json_decref(a);
        return EXIT_OK;
    }
    return usage(stderr), EXIT_USAGE;
}

static int cmd_domain_catchall(PGconn *c, int argc, char **argv)
{
    char err[1024], msg[700];
    if (argc == 1) {
        json_t *o;
        if (api_json_catchall_read(c, argv[0], &o, err, sizeof(err)) < 0)
            return fail(err);
        if (json_out)
            return print_json(o);
        const char *who = json_string_value(json_object_get(o, "catchall"));
        printf("catch-all of %s: %s\n", argv[0], who ? who : "none");
        json_decref(o);
        return EXIT_OK;
    }
    if (argc != 2)
        return usage(stderr), EXIT_USAGE;
    bool none = !strcmp(argv[1], "--none");
    if (!none && !strncmp(argv[1], "--", 2))
        return usage(stderr), EXIT_USAGE;
    if (dir_domain_set_catchall(c, argv[0], none ? NULL : argv[1], err, sizeof(err)) < 0)
        return fail(err);
    if (none)
        snprintf(msg, sizeof(msg), "catch-all of %s removed", argv[0]);
    else
        snprintf(msg, sizeof(msg), "catch-all of %s set to %s", argv[0], argv[1]);
    return ok_msg(msg);
}

/* ---- alias ---- */

static int alias_collect(const char *alias, void *ctx)
{
    json_array_append_new(ctx, json_string(alias));
    return 0;
}

static int cmd_alias(PGconn *c, int argc, char **argv)
{
    char err[1024], msg[700];
    if (argc == 3 && !strcmp(argv[0], "add")) {
        if (dir_alias_add(c, argv[1], argv[2], err, sizeof(err)) < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "alias %s added for %s", argv[1], argv[2]);
        return ok_msg(msg);
    }
    if (argc == 2 && !strcmp(argv[0], "remove")) {
        if (dir_alias_remove(c, argv[1], err, sizeof(err)) < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "alias %s removed", argv[1]);
        return ok_msg(msg);
    }
    if (argc == 2 && !strcmp(argv[0], "list")) {
        json_t *a = json_array();
        if (dir_alias_list(c, argv[1], alias_collect, a, err, sizeof(err)) < 0) {
            json_decref(a);
            return fail(err);
        }
        if (json_out)
            return print_json(a);
        print_list(a);
        json_decref(a);
        return EXIT_OK;
    }
    return usage(stderr), EXIT_USAGE;
}

/* ---- forward ---- */

/* ---- autoreply ---- */

/* "YYYY-MM-DD" (midnight UTC) to a time; -1 when malformed. */
static time_t parse_day(const char *s)
{
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%d", &tm);
    if (!end || *end)
        return -1;
    return timegm(&tm);
}

static char *read_file_all(const char *path, size_t max)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    fclose(f);
    if (!buf || n > max) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static int cmd_autoreply(PGconn *c, int argc, char **argv)
{
    char err[1024], msg[700];
    if (argc < 2)
        return usage(stderr), EXIT_USAGE;
    const char *verb = argv[0];
    if (!strcmp(verb, "set")) {
        static const char *const vals[] = {"--body", "--body-file", "--subject", "--interval",
                                           "--from", "--until", NULL};
        char *pos[2];
        int n = split_args(argc - 1, argv + 1, NULL, vals, pos, 2);
        const char *body = opt_value(argc - 1, argv + 1, "--body");
        const char *file = opt_value(argc - 1, argv + 1, "--body-file");
        if (n != 1 || (!body == !file))
            return usage(stderr), EXIT_USAGE;
        struct autoreply a = {.interval_s = AUTOREPLY_DEFAULT_INTERVAL};
        const char *subject = opt_value(argc - 1, argv + 1, "--subject");
        snprintf(a.subject, sizeof(a.subject), "%s", subject ? subject : "");
        const char *iv = opt_value(argc - 1, argv + 1, "--interval");
        if (iv)
            a.interval_s = atoi(iv);
        const char *from = opt_value(argc - 1, argv + 1, "--from");
        const char *until = opt_value(argc - 1, argv + 1, "--until");
        if ((from && (a.starts = parse_day(from)) < 0) || (until && (a.ends = parse_day(until)) < 0))
            return fail("dates are YYYY-MM-DD");
        a.body = file ? read_file_all(file, AUTOREPLY_BODY_MAX) : strdup(body);
        if (!a.body)
            return fail(file ? "cannot read the body file (at most 64 KiB)" : "out of memory");
        int rc = autoreply_set(c, pos[0], &a, err, sizeof(err));
        autoreply_free(&a);
        if (rc < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "auto-responder of %s set", pos[0]);
        return ok_msg(msg);
    }
    if (argc != 2)
        return usage(stderr), EXIT_USAGE;
    if (!strcmp(verb, "clear")) {
        if (autoreply_clear(c, argv[1], err, sizeof(err)) < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "auto-responder of %s removed", argv[1]);
        return ok_msg(msg);
    }
    if (!strcmp(verb, "show")) {
        json_t *o;
        if (api_json_autoreply_read(c, argv[1], &o, err, sizeof(err)) < 0)
            return fail(err);
        if (json_out)
            return print_json(o);
        if (!json_is_true(json_object_get(o, "enabled"))) {
            printf("%s has no auto-responder\n", argv[1]);
        } else {
            const char *subject = json_string_value(json_object_get(o, "subject"));
            json_t *from = json_object_get(o, "from"), *until = json_object_get(o, "until");
            printf("subject: %s\ninterval: %lld s\n", *subject ? subject : "(Auto: original)",
                   (long long)json_integer_value(json_object_get(o, "interval")));
            if (json_is_integer(from))
                printf("from: %lld\n", (long long)json_integer_value(from));
            if (json_is_integer(until))
                printf("until: %lld\n", (long long)json_integer_value(until));
            printf("\n%s\n", json_string_value(json_object_get(o, "body")));
        }
        json_decref(o);
        return EXIT_OK;
    }
    return usage(stderr), EXIT_USAGE;
}

static int cmd_forward(PGconn *c, int argc, char **argv)
{
    char err[1024], msg[700];
    if (argc < 2)
        return usage(stderr), EXIT_USAGE;
    const char *verb = argv[0];
    if (!strcmp(verb, "set")) {
        static const char *const flags[] = {"--keep-copy", NULL};
        /* One more slot than allowed, so that too many targets reach the
         * storage check and its message. */
        char *pos[DIR_FORWARD_MAX + 2];
        int n = split_args(argc - 1, argv + 1, flags, NULL, pos, DIR_FORWARD_MAX + 2);
        if (n < 0 && argc - 1 > DIR_FORWARD_MAX + 2)
            return fail("too many forward targets (at most 32)");
        if (n < 2)
            return usage(stderr), EXIT_USAGE;
        bool keep = opt_flag(argc - 1, argv + 1, "--keep-copy");
        if (dir_forward_set(c, pos[0], (const char *const *)(pos + 1), (size_t)(n - 1), keep, err,
                            sizeof(err)) < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "%s forwarded to %d address%s%s", pos[0], n - 1,
                 n - 1 == 1 ? "" : "es", keep ? ", keeping a copy" : "");
        return ok_msg(msg);
    }
    if (argc != 2)
        return usage(stderr), EXIT_USAGE;
    if (!strcmp(verb, "clear")) {
        if (dir_forward_clear(c, argv[1], err, sizeof(err)) < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "forwarding of %s cleared", argv[1]);
        return ok_msg(msg);
    }
    if (!strcmp(verb, "show")) {
        json_t *o;
        if (api_json_forward_read(c, argv[1], &o, err, sizeof(err)) < 0)
            return fail(err);
        if (json_out)
            return print_json(o);
        json_t *t = json_object_get(o, "targets");
        if (json_array_size(t) == 0) {
            printf("%s is not forwarded\n", argv[1]);
        } else {
            printf("%s is forwarded%s to:\n", argv[1],
                   json_is_true(json_object_get(o, "keep_copy")) ? " (keeping a copy)" : "");
            print_list(t);
        }
        json_decref(o);
        return EXIT_OK;
    }
    return usage(stderr), EXIT_USAGE;
}

/* ---- folder: an account's folders and their rights (storage/folders.h, storage/acl.h) ---- */

static int folder_print(const struct folder *f, void *ctx)
{
    json_t *arr = ctx;
    if (json_out) {
        json_array_append_new(arr, json_pack("{s:I,s:s,s:s,s:s?,s:b}", "id", (json_int_t)f->id,
                                             "path", f->path, "kind", folders_kind_str(f->kind),
                                             "role", folders_role_str(f->role), "inherit",
                                             f->acl_inherit));
        return 0;
    }
    const char *role = folders_role_str(f->role);
    printf("%-40s %-9s %-8s %s\n", f->path, folders_kind_str(f->kind), role ? role : "-",
           f->acl_inherit ? "inherits rights" : "own rights");
    return 0;
}

static int acl_print(const struct acl_entry *e, void *ctx)
{
    json_t *arr = ctx;
    char letters[12];
    acl_mask_format(e->rights, letters);
    if (json_out)
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:b}", "kind",
                                             acl_grantee_kind_str(e->kind), "grantee", e->grantee,
                                             "rights", letters, "inherited", e->inherited));
    else
        printf("%-8s %-40s %-11s%s\n", acl_grantee_kind_str(e->kind), e->grantee, letters,
               e->inherited ? " (inherited)" : "");
    return 0;
}

/* A grantee as IMAP names it: "anyone", a domain name, or an account's or group's address. */
static int folder_grantee(PGconn *c, const char *name, enum acl_grantee_kind *kind_r,
                          long long *id_r, char *err, size_t errlen)
{
    if (!strcmp(name, "anyone")) {
        *kind_r = ACL_GRANTEE_ANYONE;
        *id_r = 0;
        return 0;
    }
    if (!strchr(name, '@')) {
        *kind_r = ACL_GRANTEE_DOMAIN;
        return dir_domain_lookup(c, name, id_r, NULL, err, errlen) == 0 ? 0 : -1;
    }
    struct dir_account a;
    if (dir_account_find(c, name, &a, err, errlen) != 0)
        return -1;
    *kind_r = !strcmp(a.kind, "group") ? ACL_GRANTEE_GROUP : ACL_GRANTEE_ACCOUNT;
    *id_r = a.id;
    return 0;
}

static int cmd_folder(PGconn *c, int argc, char **argv)
{
    char err[1024], msg[2200];
    char *pos[5];
    if (argc < 2)
        return usage(stderr), EXIT_USAGE;
    const char *verb = argv[0];
    static const char *const vals[] = {"--kind", NULL};
    int n = split_args(argc - 1, argv + 1, NULL, vals, pos, 4);
    if (n < 1)
        return usage(stderr), EXIT_USAGE;
    struct dir_account a;
    if (dir_account_find(c, pos[0], &a, err, sizeof(err)) != 0)
        return fail(err);
    if (!strcmp(verb, "list") && n == 1) {
        json_t *arr = json_array();
        int rc = folders_list(c, a.id, folder_print, arr, err, sizeof(err));
        if (rc < 0) {
            json_decref(arr);
            return fail(err);
        }
        if (json_out)
            return print_json(arr);
        json_decref(arr);
        return EXIT_OK;
    }
    if (n < 2)
        return usage(stderr), EXIT_USAGE;
    if (!strcmp(verb, "create") && n == 2) {
        const char *k = opt_value(argc - 1, argv + 1, "--kind");
        enum folder_kind kind = FOLDER_KIND_MAIL;
        if (k && folders_kind_parse(k, &kind) != 0)
            return fail("--kind: mail, events, contacts, tasks, notes, journal or files");
        /* a group's first folders: the defaults give it its INBOX, where its mail goes */
        if (folders_find_role(c, a.id, FOLDER_ROLE_INBOX, NULL) == FOLDERS_ENOTFOUND &&
            folders_create_defaults(c, a.id, NULL) < 0)
            return fail("cannot create the account's default folders");
        struct folder f;
        if (folders_find_path(c, a.id, pos[1], &f) == 0)
            snprintf(msg, sizeof(msg), "%s of %s exists", f.path, a.address);
        else if (folders_create(c, a.id, pos[1], kind, FOLDER_ROLE_NONE, &f, err, sizeof(err)) < 0)
            return fail(err);
        else
            snprintf(msg, sizeof(msg), "%s of %s created", f.path, a.address);
        return ok_msg(msg);
    }
    struct folder f;
    if (folders_find_path(c, a.id, pos[1], &f) != 0) {
        snprintf(msg, sizeof(msg), "%s has no folder %s", a.address, pos[1]);
        return fail(msg);
    }
    if (!strcmp(verb, "acl") && n == 2) {
        json_t *arr = json_array();
        if (!json_out)
            printf("%-8s %-40s %s\n", "owner", a.address, ACL_RIGHTS);
        if (acl_list(c, f.id, acl_print, arr) != 0) {
            json_decref(arr);
            return fail("cannot read the folder's rights");
        }
        if (json_out)
            return print_json(arr);
        json_decref(arr);
        return EXIT_OK;
    }
    if (!strcmp(verb, "acl") && n == 4) {
        enum acl_grantee_kind kind;
        long long gid;
        if (folder_grantee(c, pos[2], &kind, &gid, err, sizeof(err)) != 0)
            return fail(err);
        const char *rights = !strcmp(pos[3], "none") ? "" : pos[3];
        if (acl_set(c, f.id, kind, gid, rights, err, sizeof(err)) != 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "%s on %s of %s: %s", pos[2], f.path, a.address,
                 *rights ? rights : "no rights");
        return ok_msg(msg);
    }
    if (!strcmp(verb, "inherit") && n == 2) {
        if (acl_reset_inherit(c, f.id, err, sizeof(err)) != 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "%s of %s now has its parent's rights", f.path, a.address);
        return ok_msg(msg);
    }
    return usage(stderr), EXIT_USAGE;
}

/* ---- group ---- */

static int cmd_group(PGconn *c, int argc, char **argv)
{
    char err[1024], msg[700];
    if (argc < 2)
        return usage(stderr), EXIT_USAGE;
    const char *verb = argv[0];
    char *pos[4];
    if (!strcmp(verb, "add") || !strcmp(verb, "set")) {
        static const char *const add_vals[] = {"--name", "--deliver", NULL};
        static const char *const set_vals[] = {"--deliver", NULL};
        bool add = !strcmp(verb, "add");
        int n = split_args(argc - 1, argv + 1, NULL, add ? add_vals : set_vals, pos, 1);
        const char *deliver = opt_value(argc - 1, argv + 1, "--deliver");
        if (n != 1 || (!add && deliver == NULL))
            return usage(stderr), EXIT_USAGE;
        int rc = add ? dir_group_add(c, pos[0], opt_value(argc - 1, argv + 1, "--name"), deliver,
                                     err, sizeof(err))
                     : dir_group_set_deliver(c, pos[0], deliver, err, sizeof(err));
        if (rc < 0)
            return fail(err);
        if (add)
            snprintf(msg, sizeof(msg), "group %s added", pos[0]);
        else
            snprintf(msg, sizeof(msg), "mail to group %s now goes to its %s", pos[0],
                     !strcmp(deliver, "folder") ? "shared folder" : "members");
        return ok_msg(msg);
    }
    if (!strcmp(verb, "member")) {
        static const char *const vals[] = {"--kind", NULL};
        int n = split_args(argc - 1, argv + 1, NULL, vals, pos, 3);
        if (n != 3 || (strcmp(pos[0], "add") && strcmp(pos[0], "remove")))
            return usage(stderr), EXIT_USAGE;
        const char *kind = opt_value(argc - 1, argv + 1, "--kind");
        bool add = !strcmp(pos[0], "add");
        int rc = add ? dir_group_member_add(c, pos[1], pos[2], kind, err, sizeof(err))
                     : dir_group_member_remove(c, pos[1], pos[2], kind, err, sizeof(err));
        if (rc < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "%s %s %s", pos[2], add ? "added to" : "removed from", pos[1]);
        return ok_msg(msg);
    }
    if (!strcmp(verb, "members")) {
        static const char *const flags[] = {"--expand", NULL};
        int n = split_args(argc - 1, argv + 1, flags, NULL, pos, 1);
        if (n != 1)
            return usage(stderr), EXIT_USAGE;
        bool expand = opt_flag(argc - 1, argv + 1, "--expand");
        json_t *a;
        if (api_json_members_read(c, pos[0], expand, &a, err, sizeof(err)) < 0)
            return fail(err);
        if (json_out)
            return print_json(a);
        size_t i;
        json_t *v;
        json_array_foreach(a, i, v)
        {
            if (expand)
                printf("%s%s\n", json_string_value(json_object_get(v, "address")),
                       json_is_true(json_object_get(v, "disabled")) ? " (disabled)" : "");
            else
                printf("%-8s %s\n", json_string_value(json_object_get(v, "kind")),
                       json_string_value(json_object_get(v, "name")));
        }
        json_decref(a);
        return EXIT_OK;
    }
    return usage(stderr), EXIT_USAGE;
}

/* ---- resource ---- */

static int manager_collect(const struct dir_account *a, void *ctx)
{
    json_array_append_new(ctx, json_string(a->address));
    return 0;
}

static int cmd_resource(PGconn *c, int argc, char **argv)
{
    char err[1024], msg[700];
    if (argc < 2)
        return usage(stderr), EXIT_USAGE;
    const char *verb = argv[0];
    char *pos[4];
    if (!strcmp(verb, "add") || !strcmp(verb, "set")) {
        static const char *const add_vals[] = {"--type", "--name", "--booking", NULL};
        static const char *const set_vals[] = {"--type", "--booking", NULL};
        bool add = !strcmp(verb, "add");
        int n = split_args(argc - 1, argv + 1, NULL, add ? add_vals : set_vals, pos, 1);
        const char *type = opt_value(argc - 1, argv + 1, "--type");
        const char *booking = opt_value(argc - 1, argv + 1, "--booking");
        if (n != 1 || (!add && type == NULL && booking == NULL))
            return usage(stderr), EXIT_USAGE;
        int rc = add ? dir_resource_add(c, pos[0], type, booking,
                                        opt_value(argc - 1, argv + 1, "--name"), err, sizeof(err))
                     : dir_resource_set(c, pos[0], type, booking, err, sizeof(err));
        if (rc < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "resource %s %s", pos[0], add ? "added" : "changed");
        return ok_msg(msg);
    }
    if (argc == 2 && !strcmp(verb, "show")) {
        struct dir_resource r;
        if (dir_resource_get(c, argv[1], &r, err, sizeof(err)) < 0)
            return fail(err);
        json_t *m = json_array();
        if (dir_resource_manager_list(c, argv[1], manager_collect, m, err, sizeof(err)) < 0) {
            json_decref(m);
            return fail(err);
        }
        if (json_out)
            return print_json(json_pack("{s:s,s:s,s:s,s:o}", "address", argv[1], "type", r.type,
                                        "booking", r.booking, "managers", m));
        printf("resource: %s\ntype:     %s\nbooking:  %s\nmanagers:", argv[1], r.type, r.booking);
        size_t i;
        json_t *v;
        json_array_foreach(m, i, v) printf(" %s", json_string_value(v));
        printf("%s\n", json_array_size(m) == 0 ? " none" : "");
        json_decref(m);
        return EXIT_OK;
    }
    if (argc == 4 && !strcmp(verb, "manager") &&
        (!strcmp(argv[1], "add") || !strcmp(argv[1], "remove"))) {
        bool add = !strcmp(argv[1], "add");
        int rc = add ? dir_resource_manager_add(c, argv[2], argv[3], err, sizeof(err))
                     : dir_resource_manager_remove(c, argv[2], argv[3], err, sizeof(err));
        if (rc < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "%s %s manager of %s", argv[3],
                 add ? "is now a" : "is no longer a", argv[2]);
        return ok_msg(msg);
    }
    return usage(stderr), EXIT_USAGE;
}

/* ---- quota ---- */

/* Reads option name as a limit into *v_r (QUOTA_KEEP when absent). Returns
 * 0, or -1 with the reason in err. */
static int limit_opt(int argc, char **argv, const char *name, bool sizes, bool inherit,
                     long long *v_r, char *err, size_t errlen)
{
    const char *s = opt_value(argc, argv, name);
    *v_r = QUOTA_KEEP;
    if (s == NULL)
        return 0;
    char why[256];
    if (quota_parse(s, sizes, inherit, v_r, why, sizeof why) < 0) {
        snprintf(err, errlen, "%s: %s", name, why);
        return -1;
    }
    return 0;
}

/* A limit of a JSON form (api_json.h) for people: null is "inherit", 0 "unlimited". */
static const char *limit_text(json_t *v, char buf[32])
{
    if (json_is_null(v))
        return "inherit";
    if (json_integer_value(v) == 0)
        return "unlimited";
    snprintf(buf, 32, "%lld", (long long)json_integer_value(v));
    return buf;
}

static long long int_of(json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

static const char *str_of(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

static int quota_show(PGconn *c, const char *level, const char *name)
{
    char err[1024], b1[32], b2[32];
    json_t *o;
    bool account = !strcmp(level, "account"), domain = !strcmp(level, "domain");
    int rc = account  ? api_json_quota_account_read(c, name, &o, err, sizeof(err))
             : domain ? api_json_quota_domain_read(c, name, &o, err, sizeof(err))
                      : api_json_quota_server_read(c, &o, err, sizeof(err));
    if (rc < 0)
        return fail(err);
    if (json_out)
        return print_json(o);
    if (account) {
        json_t *b = json_object_get(o, "bytes"), *m = json_object_get(o, "messages");
        json_t *d = json_object_get(o, "domain");
        printf("account:  %s\nbytes:    %lld used, limit %s (%s)\nmessages: %lld used, limit %s "
               "(%s)\n",
               str_of(o, "address"), int_of(b, "used"),
               limit_text(json_object_get(b, "limit"), b1), str_of(b, "from"), int_of(m, "used"),
               limit_text(json_object_get(m, "limit"), b2), str_of(m, "from"));
        printf("domain:   %lld bytes of %s, ", int_of(d, "bytes_used"),
               limit_text(json_object_get(d, "bytes_limit"), b1));
        printf("%lld messages of %s\n", int_of(d, "messages_used"),
               limit_text(json_object_get(d, "messages_limit"), b2));
    } else {
        if (domain) {
            printf("domain:   %s\ntotal:    %lld bytes used of %s, ", str_of(o, "domain"),
                   int_of(o, "bytes_used"), limit_text(json_object_get(o, "bytes_limit"), b1));
            printf("%lld messages used of %s\n", int_of(o, "messages_used"),
                   limit_text(json_object_get(o, "messages_limit"), b2));
        }
        printf("default per account: %s bytes, ",
               limit_text(json_object_get(o, "account_bytes"), b1));
        printf("%s messages\n", limit_text(json_object_get(o, "account_messages"), b2));
    }
    json_decref(o);
    return EXIT_OK;
}

static int cmd_quota(PGconn *c, int argc, char **argv)
{
    char err[1024], msg[700];
    if (argc < 2)
        return usage(stderr), EXIT_USAGE;
    const char *verb = argv[0], *level = argv[1];
    bool server = !strcmp(level, "server");
    if (!server && strcmp(level, "domain") && strcmp(level, "account"))
        return usage(stderr), EXIT_USAGE;
    int first = server ? 2 : 3; /* where the options start */
    if (argc < first)
        return usage(stderr), EXIT_USAGE;
    const char *name = server ? NULL : argv[2];
    if (!strcmp(verb, "show")) {
        if (argc != first)
            return usage(stderr), EXIT_USAGE;
        return quota_show(c, level, name);
    }
    if (strcmp(verb, "set"))
        return usage(stderr), EXIT_USAGE;
    int oc = argc - first;
    char **ov = argv + first;
    static const char *const flags[] = {"--force", NULL};
    static const char *const vals[] = {"--bytes", "--messages", NULL};
    static const char *const domain_vals[] = {"--bytes", "--messages", "--account-bytes",
                                              "--account-messages", NULL};
    bool domain = !strcmp(level, "domain");
    if (check_options(oc, ov, flags, domain ? domain_vals : vals) < 0)
        return usage(stderr), EXIT_USAGE;
    bool inherit = !strcmp(level, "account");
    long long b, m, ab = QUOTA_KEEP, am = QUOTA_KEEP;
    if (limit_opt(oc, ov, "--bytes", true, inherit, &b, err, sizeof(err)) < 0 ||
        limit_opt(oc, ov, "--messages", false, inherit, &m, err, sizeof(err)) < 0 ||
        limit_opt(oc, ov, "--account-bytes", true, true, &ab, err, sizeof(err)) < 0 ||
        limit_opt(oc, ov, "--account-messages", false, true, &am, err, sizeof(err)) < 0)
        return fail(err);
    if (b == QUOTA_KEEP && m == QUOTA_KEEP && ab == QUOTA_KEEP && am == QUOTA_KEEP)
        return usage(stderr), EXIT_USAGE;
    bool force = opt_flag(oc, ov, "--force");
    int rc = server   ? quota_set_server(c, b, m, force, err, sizeof(err))
             : domain ? quota_set_domain(c, name, b, m, ab, am, force, err, sizeof(err))
                      : quota_set_account(c, name, b, m, force, err, sizeof(err));
    if (rc < 0)
        return fail(err);
    snprintf(msg, sizeof(msg), "quota of %s%s%s changed", level, name ? " " : "", name ? name : "");
    return ok_msg(msg);
}

/* ---- policy ---- */

static int cmd_policy(PGconn *c, int argc, char **argv)
{
    char err[1024], msg[700];
    if (argc < 3 || (strcmp(argv[1], "domain") && strcmp(argv[1], "account")))
        return usage(stderr), EXIT_USAGE;
    bool domain = !strcmp(argv[1], "domain");
    const char *name = argv[2];
    if (argc == 5 && !strcmp(argv[0], "set")) {
        enum policy_state st;
        if (policy_service_check(argv[3], err, sizeof(err)) < 0 ||
            policy_state_parse(argv[4], &st, err, sizeof(err)) < 0)
            return fail(err);
        int rc = domain ? policy_set_domain(c, name, argv[3], st, err, sizeof(err))
                        : policy_set_account(c, name, argv[3], st, err, sizeof(err));
        if (rc < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "%s for %s %s: %s", argv[3], argv[1], name, argv[4]);
        return ok_msg(msg);
    }
    if (argc == 3 && !strcmp(argv[0], "show")) {
        json_t *a;
        int rc = domain ? api_json_policies_domain_read(c, name, &a, err, sizeof(err))
                        : api_json_policies_account_read(c, name, &a, err, sizeof(err));
        if (rc < 0)
            return fail(err);
        if (json_out)
            return print_json(a);
        if (domain)
            printf("%-11s %-9s %s\n", "SERVICE", "DOMAIN", "ALLOWED");
        else
            printf("%-11s %-9s %-9s %s\n", "SERVICE", "DOMAIN", "ACCOUNT", "ALLOWED");
        size_t i;
        json_t *v;
        json_array_foreach(a, i, v)
        {
            const char *yes = json_is_true(json_object_get(v, "allowed")) ? "yes" : "no";
            if (domain)
                printf("%-11s %-9s %s\n", str_of(v, "service"), str_of(v, "domain"), yes);
            else
                printf("%-11s %-9s %-9s %s\n", str_of(v, "service"), str_of(v, "domain"),
                       str_of(v, "account"), yes);
        }
        json_decref(a);
        return EXIT_OK;
    }
    return usage(stderr), EXIT_USAGE;
}

static int cmd_login_policy(PGconn *c, int argc, char **argv)
{
    char err[1024], msg[256];
    enum policy_login p;
    if (argc == 2 && !strcmp(argv[0], "set")) {
        if (policy_login_parse(argv[1], &p, err, sizeof(err)) < 0 ||
            policy_login_set(c, p, err, sizeof(err)) < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "login policy set to %s", policy_login_name(p));
        return ok_msg(msg);
    }
    if (argc == 1 && !strcmp(argv[0], "show")) {
        json_t *o;
        if (api_json_login_policy_read(c, &o, err, sizeof(err)) < 0)
            return fail(err);
        if (json_out)
            return print_json(o);
        printf("%s\n", str_of(o, "login_policy"));
        json_decref(o);
        return EXIT_OK;
    }
    return usage(stderr), EXIT_USAGE;
}

/* ---- cluster ---- */

/* ---- dns ---- */

static void dns_line(const char *text, void *arg)
{
    if (json_out)
        json_array_append_new(arg, json_string(text));
    else
        printf("%s\n", text);
}

/* The settings in effect for DOMAIN (its name or an alias): the stored SmartDiscover
 * fields over the configuration, as the web service merges them. EXIT_OK, or the
 * failure already reported. */
static int discover_load(PGconn *c, const struct config *cfg, const char *name,
                         char domain[DIR_DOMAIN_MAX + 1], struct smartdiscover *sd,
                         struct discover_settings *d)
{
    char err[512];
    long long id;
    if (dir_domain_lookup(c, name, &id, domain, err, sizeof(err)) < 0 ||
        smartdiscover_get(c, domain, sd, err, sizeof(err)) < 0)
        return fail(err);
    discover_settings_domain(cfg, domain, sd, d);
    return EXIT_OK;
}

/* The records the domain needs, naming its public host name (or --host). */
static int cmd_dns(PGconn *c, const struct config *cfg, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[0], "records"))
        return usage(stderr), EXIT_USAGE;
    unsigned ttl = 3600;
    const char *host = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--host") && i + 1 < argc)
            host = argv[++i];
        else if (!strcmp(argv[i], "--ttl") && i + 1 < argc)
            ttl = (unsigned)strtoul(argv[++i], NULL, 10);
        else
            return usage(stderr), EXIT_USAGE;
    }
    char name[DIR_DOMAIN_MAX + 1];
    static struct smartdiscover sd;
    static struct discover_settings d;
    if (discover_load(c, cfg, argv[1], name, &sd, &d) != EXIT_OK)
        return EXIT_FAIL;
    json_t *a = json_out ? json_array() : NULL;
    if (dns_records(name, host ? host : d.host, ttl ? ttl : 3600, dns_line, a) < 0) {
        json_decref(a);
        return fail("invalid host name (use --host with the public DNS name)");
    }
    return json_out ? print_json(a) : EXIT_OK;
}

/* ---- autodiscover ---- */

/* The value of field f in effect ("" when the field offers nothing). */
static const char *discover_effective(const struct discover_settings *d,
                                      enum smartdiscover_field f, char buf[16])
{
    if (f == SD_PUBLIC_HOSTNAME)
        return d->host;
    if (f >= SD_MOBILESYNC_URL) {
        const char *u = discover_url(d, f);
        return u ? u : "";
    }
    int svc = (f - SD_SMTP_HOST) / 3, which = (f - SD_SMTP_HOST) % 3;
    if (!d->svc[svc].on)
        return "";
    if (which == 0)
        return d->svc[svc].host;
    if (which == 1)
        return d->svc[svc].tls;
    snprintf(buf, 16, "%d", d->svc[svc].port);
    return buf;
}

/* The documents a client of DOMAIN receives, built by the same code the web service
 * runs; the SmartDiscover settings (stored and in effect); changing them. */
static int cmd_autodiscover(PGconn *c, const struct config *cfg, int argc, char **argv)
{
    char err[512];
    if (argc < 2)
        return usage(stderr), EXIT_USAGE;
    char domain[DIR_DOMAIN_MAX + 1];
    static struct smartdiscover sd;
    static struct discover_settings d;
    if (!strcmp(argv[0], "set") || !strcmp(argv[0], "unset")) {
        bool set = !strcmp(argv[0], "set");
        enum smartdiscover_field fields[2 * SD_NFIELDS];
        const char *values[2 * SD_NFIELDS];
        size_t n = 0;
        bool all = !set && argc == 3 && !strcmp(argv[2], "--all");
        if (argc < 3 || (set && (argc - 2) % 2) || (size_t)(argc - 2) > 2 * SD_NFIELDS)
            return usage(stderr), EXIT_USAGE;
        for (int i = 2; i < argc && !all; i += set ? 2 : 1) {
            int f = smartdiscover_field_of(argv[i]);
            if (f < 0) {
                snprintf(err, sizeof(err), "unknown field '%s' (see floectl autodiscover "
                         "settings DOMAIN)", argv[i]);
                return fail(err);
            }
            fields[n] = (enum smartdiscover_field)f;
            values[n++] = set ? argv[i + 1] : NULL;
        }
        int rc = all ? smartdiscover_clear(c, argv[1], err, sizeof(err))
                     : smartdiscover_set(c, argv[1], fields, values, n, err, sizeof(err));
        if (rc < 0)
            return fail(err);
        return ok_msg(set ? "SmartDiscover settings stored" : "SmartDiscover settings removed");
    }
    if (argc != 2)
        return usage(stderr), EXIT_USAGE;
    if (!strcmp(argv[0], "settings")) {
        if (discover_load(c, cfg, argv[1], domain, &sd, &d) != EXIT_OK)
            return EXIT_FAIL;
        json_t *o = json_object();
        if (!json_out)
            printf("%-16s %-40s %s\n", "FIELD", "STORED", "IN EFFECT");
        for (int f = 0; f < SD_NFIELDS; f++) {
            char buf[16];
            const char *eff = discover_effective(&d, (enum smartdiscover_field)f, buf);
            if (json_out)
                json_object_set_new(o, smartdiscover_fields[f],
                                    json_pack("{s:s,s:s}", "stored", sd.v[f], "effective", eff));
            else
                printf("%-16s %-40s %s\n", smartdiscover_fields[f], sd.v[f][0] ? sd.v[f] : "-",
                       eff[0] ? eff : "-");
        }
        if (json_out)
            return print_json(o);
        json_decref(o);
        return EXIT_OK;
    }
    if (strcmp(argv[0], "show"))
        return usage(stderr), EXIT_USAGE;
    if (discover_load(c, cfg, argv[1], domain, &sd, &d) != EXIT_OK)
        return EXIT_FAIL;
    char email[DIR_ADDRESS_SIZE];
    snprintf(email, sizeof(email), "user@%s", domain);
    int status;
    enum { NDOCS = 5 };
    char *docs[NDOCS] = {autodiscover_response(AUTODISCOVER_SCHEMA_OUTLOOK, email, NULL, &d.s),
                         autodiscover_response(AUTODISCOVER_SCHEMA_MOBILESYNC, email, NULL, &d.s),
                         autodiscover_v2_json("ActiveSync", &d.s, &status),
                         autodiscover_thunderbird(email, &d.s),
                         discover_smartdiscover_xml(&d, email, NULL)};
    static const char *const names[NDOCS] = {"outlook", "mobilesync", "v2", "thunderbird",
                                             "smartdiscover"};
    int rc = EXIT_OK;
    json_t *o = json_object();
    for (int i = 0; i < NDOCS; i++) {
        if (!docs[i]) {
            rc = fail("cannot build the documents (check [service web] public_hostname)");
            break;
        }
        if (json_out)
            json_object_set_new(o, names[i], json_string(docs[i]));
        else
            printf("== %s (for %s)\n%s\n", names[i], email, docs[i]);
    }
    for (int i = 0; i < NDOCS; i++)
        free(docs[i]);
    if (rc == EXIT_OK && json_out)
        return print_json(o);
    json_decref(o);
    return rc;
}

/* ---- tasks and events ---- */

/* Prints a query's rows: JSON objects named by the columns, or tab-separated. */
static int print_rows(PGconn *c, const char *sql, int n, const char *const *p)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char err[512];
        db_set_error(err, sizeof(err), c, r, "query failed");
        PQclear(r);
        return fail(err);
    }
    json_t *a = json_array();
    for (int i = 0; i < PQntuples(r); i++) {
        json_t *o = json_object();
        for (int f = 0; f < PQnfields(r); f++) {
            if (json_out)
                json_object_set_new(o, PQfname(r, f),
                                    PQgetisnull(r, i, f) ? json_null()
                                                         : json_string(PQgetvalue(r, i, f)));
            else
                printf("%s%s", f ? "\t" : "", PQgetvalue(r, i, f));
        }
        if (!json_out)
            putchar('\n');
        json_array_append_new(a, o);
    }
    PQclear(r);
    if (json_out)
        return print_json(a);
    json_decref(a);
    return EXIT_OK;
}

static int cmd_task(PGconn *c, bool event, int argc, char **argv)
{
    char err[1024], msg[256];
    const char *what = event ? "event" : "task";
    if (argc == 1 && !strcmp(argv[0], "list"))
        return print_rows(c,
                          event ? "SELECT name, event, master_only, action, target, enabled"
                                  " FROM events ORDER BY name"
                                : "SELECT name, schedule, master_only, action, target, enabled"
                                  " FROM tasks ORDER BY name",
                          0, NULL);
    if (!event && argc == 2 && !strcmp(argv[0], "runs")) {
        const char *p[] = {argv[1]};
        return print_rows(c,
                          "SELECT to_char(r.slot AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                          " AS slot, r.ran_on, r.epoch, r.status, r.output FROM task_runs r"
                          " JOIN tasks t ON t.id = r.task_id WHERE t.name = $1"
                          " ORDER BY r.slot DESC, r.ran_on LIMIT 50",
                          1, p);
    }
    if (argc == 2 && !strcmp(argv[0], "remove")) {
        int rc = event ? scheduler_event_remove(c, argv[1], err, sizeof(err))
                       : scheduler_task_remove(c, argv[1], err, sizeof(err));
        if (rc < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "%s %s removed", what, argv[1]);
        return ok_msg(msg);
    }
    if (argc >= 2 && !strcmp(argv[0], "add")) {
        const char *name = argv[1], *schedule = NULL, *ev = NULL, *action = NULL;
        bool every_node = false, master_only = false;
        int timeout = 0;
        char target[4096] = "";
        int i = 2;
        if (event && i < argc)
            ev = argv[i++];
        for (; i < argc && !action; i++) {
            if (!event && !strcmp(argv[i], "--schedule") && i + 1 < argc)
                schedule = argv[++i];
            else if (!event && !strcmp(argv[i], "--every-node"))
                every_node = true;
            else if (event && !strcmp(argv[i], "--master-only"))
                master_only = true;
            else if (!event && !strcmp(argv[i], "--timeout") && i + 1 < argc)
                timeout = atoi(argv[++i]);
            else if (!strcmp(argv[i], "command") || !strcmp(argv[i], "url") ||
                     (!event && !strcmp(argv[i], "builtin")))
                action = argv[i];
            else
                return usage(stderr), EXIT_USAGE;
        }
        /* the rest of the line is the target (a command may have spaces) */
        for (size_t used = 0; i < argc; i++) {
            int n = snprintf(target + used, sizeof(target) - used, "%s%s", used ? " " : "",
                             argv[i]);
            if (n < 0 || (size_t)n >= sizeof(target) - used)
                return fail("target too long");
            used += (size_t)n;
        }
        if (!action || !*target || (!event && !schedule) || (event && !ev))
            return usage(stderr), EXIT_USAGE;
        int rc = event ? scheduler_event_add(c, name, ev, master_only, action, target, err,
                                             sizeof(err))
                       : scheduler_task_add(c, name, schedule, !every_node, action, target,
                                            timeout, err, sizeof(err));
        if (rc < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "%s %s added", what, name);
        return ok_msg(msg);
    }
    return usage(stderr), EXIT_USAGE;
}

/* ---- watchdogs ---- */

/* Parses a whole decimal number in [min, max] into *v_r: 0 ok, -1 otherwise. */
static int int_arg(const char *s, long min, long max, int *v_r)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *v_r = (int)v;
    return 0;
}

static int cmd_watchdog(PGconn *c, int argc, char **argv)
{
    char err[1024], msg[256];
    if (argc == 1 && !strcmp(argv[0], "list"))
        return print_rows(c,
                          "SELECT name, target, interval_s, down_after_min, alert_address,"
                          " notify_back, enabled, state,"
                          " to_char(since AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                          " AS since,"
                          " to_char(last_check AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                          " AS last_check, last_error, last_hash, content_size, last_answers,"
                          " checked_by, epoch FROM watchdogs ORDER BY name",
                          0, NULL);
    if ((argc == 1 || argc == 2) && !strcmp(argv[0], "alerts")) {
        const char *p[] = {argc == 2 ? argv[1] : NULL};
        return print_rows(c,
                          "SELECT w.name, a.kind,"
                          " to_char(a.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS at,"
                          " a.message, a.node_id, a.epoch, a.delivered FROM watchdog_alerts a"
                          " JOIN watchdogs w ON w.id = a.watchdog_id"
                          " WHERE $1::text IS NULL OR w.name = $1 ORDER BY a.id DESC LIMIT 200",
                          1, p);
    }
    if (argc == 2 && !strcmp(argv[0], "remove")) {
        if (watchdog_remove(c, argv[1], err, sizeof(err)) < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "watchdog %s removed", argv[1]);
        return ok_msg(msg);
    }
    if (argc >= 3 && !strcmp(argv[0], "add")) {
        struct watchdog_spec ws = {.name = argv[1], .target = argv[2]};
        for (int i = 3; i < argc; i++) {
            bool more = i + 1 < argc;
            if (!strcmp(argv[i], "--interval") && more) {
                if (int_arg(argv[++i], 1, WATCHDOG_INTERVAL_MAX, &ws.interval_s) < 0)
                    return fail("--interval takes 1-86400 seconds");
            } else if (!strcmp(argv[i], "--down-after") && more) {
                if (int_arg(argv[++i], 0, WATCHDOG_DOWN_AFTER_MAX, &ws.down_after_min) < 0)
                    return fail("--down-after takes 0-10080 minutes");
            } else if (!strcmp(argv[i], "--send") && more) {
                ws.send = argv[++i];
            } else if (!strcmp(argv[i], "--expect") && more) {
                ws.expect = argv[++i];
            } else if (!strcmp(argv[i], "--alert") && more) {
                ws.alert_address = argv[++i];
            } else if (!strcmp(argv[i], "--back-online")) {
                ws.notify_back = true;
            } else {
                return usage(stderr), EXIT_USAGE;
            }
        }
        if (watchdog_add(c, &ws, err, sizeof(err)) < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "watchdog %s added", ws.name);
        return ok_msg(msg);
    }
    return usage(stderr), EXIT_USAGE;
}

/* ---- outbound queue ---- */

/* A queue id: a whole number > 0. */
static int queue_id_arg(const char *s, long long *id_r)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v <= 0)
        return -1;
    *id_r = v;
    return 0;
}

static int cmd_queue(PGconn *c, int argc, char **argv)
{
    char err[1024], msg[256];
    long long id = 0;
    if (argc == 1 && !strcmp(argv[0], "list")) {
        json_t *a;
        if (api_json_queue_list_read(c, &a, err, sizeof(err)) < 0)
            return fail(err);
        if (json_out)
            return print_json(a);
        /* One stable line per message: id, age in seconds, size, <sender>,
         * recipient counts by state. */
        size_t i;
        json_t *v;
        json_array_foreach(a, i, v)
        {
            printf("%lld %llds %lld <%s> queued=%d delivered=%d failed=%d%s\n",
                   (long long)json_integer_value(json_object_get(v, "id")),
                   (long long)json_integer_value(json_object_get(v, "age")),
                   (long long)json_integer_value(json_object_get(v, "size")),
                   json_string_value(json_object_get(v, "sender")),
                   (int)json_integer_value(json_object_get(v, "queued")),
                   (int)json_integer_value(json_object_get(v, "delivered")),
                   (int)json_integer_value(json_object_get(v, "failed")),
                   json_is_true(json_object_get(v, "is_notice")) ? " notice" : "");
        }
        json_decref(a);
        return EXIT_OK;
    }
    if (argc != 2)
        return usage(stderr), EXIT_USAGE;
    bool all = !strcmp(argv[0], "retry") && !strcmp(argv[1], "all");
    if (!all && queue_id_arg(argv[1], &id) < 0)
        return usage(stderr), EXIT_USAGE;
    if (!strcmp(argv[0], "show")) {
        json_t *o;
        if (api_json_queue_show_read(c, id, &o, err, sizeof(err)) < 0)
            return fail(err);
        if (json_out)
            return print_json(o);
        printf("id:        %lld\nsender:    <%s>\nsize:      %lld\nreceived:  %s\n"
               "expires:   %s\nenvid:     %s\nret:       %s\nbody:      %s\norigin:    %s\n",
               id, json_string_value(json_object_get(o, "sender")),
               (long long)json_integer_value(json_object_get(o, "size")),
               json_string_value(json_object_get(o, "received")),
               json_string_value(json_object_get(o, "expires")),
               json_string_value(json_object_get(o, "envid")),
               json_string_value(json_object_get(o, "ret")),
               json_string_value(json_object_get(o, "body")),
               json_string_value(json_object_get(o, "origin_node")));
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(o, "recipients"), i, v)
        {
            const char *reply = json_string_value(json_object_get(v, "last_reply"));
            printf("  %s %s attempts=%d next=%s status=%s notice=%s%s%s\n",
                   json_string_value(json_object_get(v, "address")),
                   json_string_value(json_object_get(v, "state")),
                   (int)json_integer_value(json_object_get(v, "attempts")),
                   strcmp(json_string_value(json_object_get(v, "state")), "queued")
                       ? "-"
                       : json_string_value(json_object_get(v, "next_attempt")),
                   *json_string_value(json_object_get(v, "last_status"))
                       ? json_string_value(json_object_get(v, "last_status"))
                       : "-",
                   json_string_value(json_object_get(v, "notice")), *reply ? " reply=" : "", reply);
        }
        json_decref(o);
        return EXIT_OK;
    }
    if (!strcmp(argv[0], "retry")) {
        long long n = 0;
        if (queue_retry(c, id, &n, err, sizeof(err)) < 0)
            return fail(err);
        if (all)
            snprintf(msg, sizeof(msg), "%lld recipient(s) due now", n);
        else
            snprintf(msg, sizeof(msg), "%lld recipient(s) of message %lld due now", n, id);
        return ok_msg(msg);
    }
    if (!strcmp(argv[0], "delete")) {
        if (queue_delete(c, id, err, sizeof(err)) < 0)
            return fail(err);
        snprintf(msg, sizeof(msg), "message %lld deleted from the queue", id);
        return ok_msg(msg);
    }
    return usage(stderr), EXIT_USAGE;
}

/* ---- mail ---- */

/* Largest message `mail deliver` takes from standard input. */
#define MAIL_DELIVER_MAX (64u * 1024 * 1024)

/* Reads standard input whole, at most MAIL_DELIVER_MAX bytes, with bare LF
 * line ends made CRLF (RFC 5322 §2.3: a message's lines end in CRLF; files
 * and pipes on Unix usually hold LF). NULL with the reason in err. */
static char *read_message(size_t *len_r, char *err, size_t errlen)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    char in[65536];
    bool prev_cr = false;
    size_t n;
    while (buf && (n = fread(in, 1, sizeof(in), stdin)) > 0) {
        for (size_t i = 0; i < n; i++) {
            if (len + 2 > MAIL_DELIVER_MAX) {
                snprintf(err, errlen, "the message is larger than %u MiB",
                         MAIL_DELIVER_MAX / (1024 * 1024));
                free(buf);
                return NULL;
            }
            if (len + 2 > cap) {
                char *t = realloc(buf, cap * 2);
                if (!t) {
                    free(buf);
                    buf = NULL;
                    break;
                }
                buf = t;
                cap *= 2;
            }
            if (in[i] == '\n' && !prev_cr)
                buf[len++] = '\r';
            buf[len++] = in[i];
            prev_cr = in[i] == '\r';
        }
    }
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (ferror(stdin)) {
        snprintf(err, errlen, "cannot read standard input: %s", strerror(errno));
        free(buf);
        return NULL;
    }
    *len_r = len;
    return buf;
}

/* mail deliver: an import into one mailbox, through the same ingest path as
 * SMTP delivery (blob, metadata, quota). The address is resolved as SMTP
 * would (aliases, catch-all) but neither group expansion nor forwarding
 * applies: the message goes to the one account the address names. */
static int cmd_mail(PGconn *c, const struct config *cfg, int argc, char **argv)
{
    static const char *const with_value[] = {"--folder", NULL};
    static const char *const none[] = {NULL};
    if (argc < 2 || strcmp(argv[0], "deliver") || argv[1][0] == '-' ||
        check_options(argc - 2, argv + 2, none, with_value) < 0)
        return usage(stderr), EXIT_USAGE;
    const char *address = argv[1];
    const char *path = opt_value(argc - 2, argv + 2, "--folder");
    char err[1024], msg[FOLDERS_PATH_MAX + DIR_ADDRESS_SIZE + 64];
    struct dir_target t;
    int rc = dir_resolve(c, address, &t, err, sizeof(err));
    if (rc == DIR_ENOTFOUND) {
        snprintf(msg, sizeof(msg), "unknown address %s", address);
        return fail(msg);
    }
    if (rc < 0)
        return fail(err);
    struct folder f;
    rc = path ? folders_find_path(c, t.account.id, path, &f)
              : folders_find_role(c, t.account.id, FOLDER_ROLE_INBOX, &f);
    if (rc == FOLDERS_ENOTFOUND && !path && folders_create_defaults(c, t.account.id, NULL) >= 0)
        rc = folders_find_role(c, t.account.id, FOLDER_ROLE_INBOX, &f);
    if (rc == FOLDERS_ENOTFOUND) {
        snprintf(msg, sizeof(msg), "%s has no folder %s", t.account.address,
                 path ? path : "INBOX");
        return fail(msg);
    }
    if (rc < 0)
        return fail(PQerrorMessage(c));
    if (f.kind != FOLDER_KIND_MAIL) {
        snprintf(msg, sizeof(msg), "%s is not a mail folder", f.path);
        return fail(msg);
    }
    size_t len = 0;
    char *data = read_message(&len, err, sizeof(err));
    if (!data)
        return fail(err);
    struct blob_config bc;
    config_blob(cfg, &bc);
    struct blob_store *bs = blob_store_open(&bc, err, sizeof(err));
    if (!bs) {
        free(data);
        return fail(err);
    }
    uint32_t uid = 0;
    long long modseq = 0;
    rc = mail_deliver(c, bs, t.account.id, f.id, data, len, 0, 0, true, &uid, &modseq, err,
                      sizeof(err));
    free(data);
    blob_store_close(&bs);
    if (rc == MAIL_EQUOTA) {
        snprintf(msg, sizeof(msg), "%s is over its quota", t.account.address);
        return fail(msg);
    }
    if (rc < 0)
        return fail(err);
    if (json_out)
        return print_json(json_pack("{s:b,s:s,s:s,s:I,s:I}", "ok", 1, "account",
                                    t.account.address, "folder", f.path, "uid", (json_int_t)uid,
                                    "size", (json_int_t)len));
    printf("%u\n", uid);
    return EXIT_OK;
}

/* ---- intrusion prevention ---- */

static int ips_collect(const struct ips_block *b, void *ctx)
{
    json_array_append_new(ctx, json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:b}", "address", b->address,
                                         "service", b->service, "reason", b->reason, "node",
                                         b->node, "blocked", (json_int_t)b->blocked_unix, "until",
                                         (json_int_t)b->until_unix, "expired", b->expired));
    return 0;
}

/* Running nodes hear of the change at once through Redis when the file names
 * one; otherwise (or when Redis does not answer) at their next [ips] refresh. */
static void ips_tell_nodes(const struct config *cfg, const char *address, const char *service,
                           long long until, const char *reason)
{
    char err[512];
    if (*cfg->redis_url && ips_announce(cfg->redis_url, "floectl", address, service, until, reason,
                                        err, sizeof(err)) < 0)
        fprintf(stderr, "floectl: warning: %s: nodes see the change within [ips] refresh\n", err);
}

static int cmd_ips(PGconn *c, const struct config *cfg, int argc, char **argv)
{
    char err[1024], msg[512], when[32];
    static const char *const flags[] = {"--all", NULL};
    static const char *const values[] = {"--minutes", "--service", "--reason", NULL};
    char *pos[2];
    int n = argc >= 1 ? split_args(argc - 1, argv + 1, flags, values, pos, 2) : -1;
    if (n < 0)
        return usage(stderr), EXIT_USAGE;
    const char *service = opt_value(argc - 1, argv + 1, "--service");
    if (!strcmp(argv[0], "list") && n == 0 && !service) {
        json_t *a = json_array();
        if (ips_block_list(c, opt_flag(argc - 1, argv + 1, "--all"), IPS_TABLE_MAX, ips_collect, a,
                           err, sizeof(err)) < 0) {
            json_decref(a);
            return fail(err);
        }
        if (json_out)
            return print_json(a);
        printf("%-39s %-12s %-20s %-16s %s\n", "ADDRESS", "SERVICE", "UNTIL", "NODE", "REASON");
        size_t i;
        json_t *v;
        json_array_foreach(a, i, v)
        {
            printf("%-39s %-12s %-20s %-16s %s%s\n",
                   json_string_value(json_object_get(v, "address")),
                   json_string_value(json_object_get(v, "service")),
                   api_json_time(json_integer_value(json_object_get(v, "until")), when),
                   json_string_value(json_object_get(v, "node")),
                   json_string_value(json_object_get(v, "reason")),
                   json_is_true(json_object_get(v, "expired")) ? " (expired)" : "");
        }
        json_decref(a);
        return EXIT_OK;
    }
    if (!strcmp(argv[0], "block") && n == 1) {
        unsigned seconds = cfg->ips.block;
        const char *m = opt_value(argc - 1, argv + 1, "--minutes");
        int minutes;
        if (m) {
            if (int_arg(m, 1, IPS_BLOCK_SECONDS_MAX / 60, &minutes) < 0)
                return usage(stderr), EXIT_USAGE;
            seconds = (unsigned)minutes * 60;
        }
        const char *reason = opt_value(argc - 1, argv + 1, "--reason");
        if (!reason)
            reason = "blocked by an administrator";
        long long until;
        if (ips_block_add(c, pos[0], service ? service : "*", reason, "floectl", seconds, &until,
                          err, sizeof(err)) < 0)
            return fail(err);
        ips_tell_nodes(cfg, pos[0], service ? service : "*", until, reason);
        snprintf(msg, sizeof(msg), "%s blocked (%s) until %s", pos[0],
                 service ? service : "every service", api_json_time(until, when));
        return ok_msg(msg);
    }
    if (!strcmp(argv[0], "unblock") && n == 1 && !opt_flag(argc - 1, argv + 1, "--all")) {
        int removed = ips_block_remove(c, pos[0], service, err, sizeof(err));
        if (removed < 0)
            return fail(err);
        /* a clean slate: the PostgreSQL counter too (Redis's went with the block) */
        if (ips_failure_reset(c, pos[0], err, sizeof(err)) < 0)
            fprintf(stderr, "floectl: warning: %s\n", err);
        if (removed > 0)
            ips_tell_nodes(cfg, pos[0], service, 0, "");
        snprintf(msg, sizeof(msg), removed ? "%s unblocked" : "%s was not blocked", pos[0]);
        return ok_msg(msg);
    }
    return usage(stderr), EXIT_USAGE;
}

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
    static const char *const commands[] = {"db",    "domain",  "account",      "cluster",
                                           "alias", "forward", "group",        "resource",
                                           "quota", "policy",  "login-policy", "task",
                                           "event", "watchdog", "dns", "autodiscover", "queue", "mail", "autoreply", "ips", "folder", NULL};
    bool known = false;
    for (const char *const *k = commands; *k && !known; k++)
        known = !strcmp(cmd, *k);
    if (!known) {
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
    if (!c) {
        config_free(&cfg);
        return fail(err);
    }
    int rc;
    int sub_argc = argc - optind - 1;
    char **sub_argv = argv + optind + 1;
    if (!strcmp(cmd, "db"))
        rc = cmd_db(c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "domain"))
        rc = cmd_domain(c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "cluster"))
        rc = cmd_cluster(c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "ips"))
        rc = cmd_ips(c, cfg, sub_argc, sub_argv);
    else if (!strcmp(cmd, "dns"))
        rc = cmd_dns(c, cfg, sub_argc, sub_argv);
    else if (!strcmp(cmd, "autodiscover"))
        rc = cmd_autodiscover(c, cfg, sub_argc, sub_argv);
    else if (!strcmp(cmd, "task") || !strcmp(cmd, "event"))
        rc = cmd_task(c, !strcmp(cmd, "event"), sub_argc, sub_argv);
    else if (!strcmp(cmd, "watchdog"))
        rc = cmd_watchdog(c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "queue"))
        rc = cmd_queue(c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "alias"))
        rc = cmd_alias(c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "forward"))
        rc = cmd_forward(c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "autoreply"))
        rc = cmd_autoreply(c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "group"))
        rc = cmd_group(c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "resource"))
        rc = cmd_resource(c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "quota"))
        rc = cmd_quota(c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "policy"))
        rc = cmd_policy(c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "login-policy"))
        rc = cmd_login_policy(c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "mail"))
        rc = cmd_mail(c, cfg, sub_argc, sub_argv);
    else if (!strcmp(cmd, "folder"))
        rc = cmd_folder(c, sub_argc, sub_argv);
    else
        rc = cmd_account(c, sub_argc, sub_argv);
    PQfinish(c);
    config_free(&cfg);
    return rc;
}
