/* Test database lifecycle shared by the unit tests that need PostgreSQL. */
#include "testdb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "storage/db.h"

/* CREATE DATABASE options when the caller names none. */
#define DEFAULT_CREATE_OPTIONS "TEMPLATE template0 ENCODING 'UTF8'"

static char dbname[96];
static char conninfo[4096];

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "testdb: %s: %s\n", what, detail ? detail : "");
    exit(1);
}

const char *testdb_name(void)
{
    return dbname;
}

/* FLOE_TEST_PG with dbname replaced. */
void testdb_conninfo(const char *db, char *out, size_t outlen)
{
    if (db == NULL) {
        if (!dbname[0])
            die("no test database", "testdb_create() has not run");
        db = dbname;
    }
    const char *base = getenv("FLOE_TEST_PG");
    if (!base || !*base)
        die("FLOE_TEST_PG is not set",
            "these tests need a PostgreSQL server; run through ops/test, or export a "
            "libpq connection string for a user who may create databases, e.g. "
            "FLOE_TEST_PG='host=/tmp/pg port=55432 user=floe dbname=postgres'");
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(base, &perr);
    if (!opts)
        die("FLOE_TEST_PG does not parse", perr ? perr : "out of memory");
    size_t n = 0;
    int w;
    out[0] = '\0';
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val || !strcmp(o->keyword, "dbname"))
            continue;
        w = snprintf(out + n, outlen - n, "%s='", o->keyword);
        if (w < 0 || (size_t)w >= outlen - n)
            die("connection string too long", base);
        n += (size_t)w;
        for (const char *v = o->val; *v; v++) {
            if (n + 3 >= outlen)
                die("connection string too long", base);
            if (*v == '\'' || *v == '\\')
                out[n++] = '\\';
            out[n++] = *v;
        }
        w = snprintf(out + n, outlen - n, "' ");
        if (w < 0 || (size_t)w >= outlen - n)
            die("connection string too long", base);
        n += (size_t)w;
    }
    w = snprintf(out + n, outlen - n, "dbname='%s'", db);
    if (w < 0 || (size_t)w >= outlen - n)
        die("connection string too long", base);
    PQconninfoFree(opts);
}

/* Runs "<verb> "db"<tail>" on the server's postgres database. */
static void admin_exec(const char *verb, const char *db, const char *tail)
{
    char ci[4096];
    testdb_conninfo("postgres", ci, sizeof(ci));
    PGconn *a = PQconnectdb(ci);
    if (PQstatus(a) != CONNECTION_OK)
        die("cannot connect", PQerrorMessage(a));
    PQclear(PQexec(a, "SET client_min_messages = warning"));
    char *id = PQescapeIdentifier(a, db, strlen(db));
    if (!id)
        die("cannot quote a database name", PQerrorMessage(a));
    char sql[512];
    int w = snprintf(sql, sizeof(sql), "%s %s %s", verb, id, tail);
    PQfreemem(id);
    if (w < 0 || (size_t)w >= sizeof(sql))
        die("statement too long", verb);
    PGresult *r = PQexec(a, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        die(sql, PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(a);
}

void testdb_drop_named(const char *db)
{
    admin_exec("DROP DATABASE IF EXISTS", db, "WITH (FORCE)");
}

void testdb_create_named(const char *db, const char *options)
{
    testdb_drop_named(db);
    admin_exec("CREATE DATABASE", db, options ? options : DEFAULT_CREATE_OPTIONS);
}

PGconn *testdb_connect_to(const char *db, int statement_timeout_ms)
{
    char ci[4096], err[512] = "";
    testdb_conninfo(db, ci, sizeof(ci));
    PGconn *c = db_connect(ci, statement_timeout_ms, err, sizeof(err));
    if (!c)
        die(db ? db : dbname, err);
    return c;
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
    testdb_create_named(dbname, NULL);
    testdb_conninfo(dbname, conninfo, sizeof(conninfo));
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
    if (dbname[0])
        testdb_drop_named(dbname);
}
