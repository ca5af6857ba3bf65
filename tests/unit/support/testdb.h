/* A fresh, migrated PostgreSQL database for a unit test program.
 *
 * FLOE_TEST_PG holds a libpq connection string for a server where the user may
 * create databases; without it testdb_create() fails the test (a database test
 * that cannot reach its database is a failure, not a skip). Every function here
 * fails the test (prints the reason and exits 1) when it cannot do its job. */
#ifndef FLOE_TESTS_TESTDB_H
#define FLOE_TESTS_TESTDB_H

#include <stddef.h>

#include <libpq-fe.h>

/* Creates floe_test_<name>_<pid> (dropping a leftover of that name), applies every
 * migration and returns a connection to it. Fails the test on any error. */
PGconn *testdb_create(const char *name);
/* Another connection to the same database (for concurrency tests). */
PGconn *testdb_connect(void);
/* Runs one statement that must succeed; returns its result (caller clears). */
PGresult *testdb_exec(PGconn *c, const char *sql);
/* Closes c and drops the database. */
void testdb_drop(PGconn **c);

/* The name of the database testdb_create() made ("" before that), e.g. to
 * derive the names of extra databases from it. */
const char *testdb_name(void);
/* FLOE_TEST_PG with its dbname replaced by db (NULL: the database
 * testdb_create() made), as a key=value string in out[outlen]. Fails the test
 * when FLOE_TEST_PG is unset or does not parse, or when out is too small. Safe
 * to call from several threads. */
void testdb_conninfo(const char *db, char *out, size_t outlen);
/* A connection to database db (NULL: the one testdb_create() made), made by
 * db_connect() with the given statement_timeout (0: none) and nothing else set
 * (unlike testdb_connect(), notices are not silenced). */
PGconn *testdb_connect_to(const char *db, int statement_timeout_ms);
/* Creates an extra database named exactly db (dropping a leftover of that
 * name) with no migrations applied: CREATE DATABASE db <options>, where NULL
 * options mean "TEMPLATE template0 ENCODING 'UTF8'" as for testdb_create().
 * The caller drops it with testdb_drop_named(). */
void testdb_create_named(const char *db, const char *options);
/* Drops database db if it exists, even while sessions are still connected. */
void testdb_drop_named(const char *db);

#endif
