/* Test database lifecycle shared by the unit tests that need PostgreSQL. */
#include "testdb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "storage/db.h"

static char dbname[96];
static char conninfo[4096];

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "testdb: %s: %s\n", what, detail ? detail : "");
    exit(1);
}

/* FLOE_TEST_PG with dbname replaced. */
static void conninfo_for(const char *db, char *out, size_t outlen)
{
    const char *base = getenv("FLOE_TEST_PG");
    if (!base || !*base)
        die("FLOE_TEST_PG is not set", "run through ops/test, or export a conninfo");
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(base, &perr);
    if (!opts)
        die("FLOE_TEST_PG does not parse", perr);
    size_t n = 0;
    out[0] = '\0';
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val || !strcmp(o->keyword, "dbname"))
            continue;
        n += (size_t)snprintf(out + n, outlen - n, "%s='", o->keyword);
        for (const char *v = o->val; *v && n + 3 < outlen; v++) {
            if (*v == '\'' || *v == '\\')
                out[n++] = '\\';
            out[n++] = *v;
        }
        n += (size_t)snprintf(out + n, outlen - n, "' ");
    }
    snprintf(out + n, outlen - n, "dbname='%s'", db);
    PQconninfoFree(opts);
}

static void admin_exec(const char *verb)
{
    char ci[4096];
    conninfo_for("postgres", ci, sizeof(ci));
    PGconn *a = PQconnectdb(ci);
    if (PQstatus(a) != CONNECTION_OK)
        die("cannot connect", PQerrorMessage(a));
    PQclear(PQexec(a, "SET client_min_messages = warning"));
    char sql[256];
    snprintf(sql, sizeof(sql), "%s \"%s\"%s", verb, dbname,
             !strcmp(verb, "DROP DATABASE IF EXISTS") ? " WITH (FORCE)" : "");
    PGresult *r = PQexec(a, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        die(sql, PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(a);
}

PGconn *testdb_connect(void)
{
    char err[512];
    PGconn *c = db_connect(conninfo, 0, err, sizeof(err));
    if (!c)
        die("cannot connect to the test database", err);
    PQclear(testdb_exec(c, "SET client_min_messages = warning"));
    return c;
}

PGconn *testdb_create(const char *name)
{
    snprintf(dbname, sizeof(dbname), "floe_test_%s_%d", name, (int)getpid());
    admin_exec("DROP DATABASE IF EXISTS");
    admin_exec("CREATE DATABASE");
    conninfo_for(dbname, conninfo, sizeof(conninfo));
    PGconn *c = testdb_connect();
    char err[512];
    if (db_migrate(c, err, sizeof(err)) < 0)
        die("migration failed", err);
    return c;
}

PGresult *testdb_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        die(sql, PQresultErrorMessage(r));
    return r;
}

void testdb_drop(PGconn **c)
{
    if (*c)
        PQfinish(*c);
    *c = NULL;
    admin_exec("DROP DATABASE IF EXISTS");
}
