/* A fresh, migrated PostgreSQL database for a unit test program.
 *
 * FLOE_TEST_PG holds a libpq connection string for a server where the user may
 * create databases; without it testdb_create() fails the test (a database test
 * that cannot reach its database is a failure, not a skip). */
#ifndef FLOE_TESTS_TESTDB_H
#define FLOE_TESTS_TESTDB_H

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

#endif
