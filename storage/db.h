/* PostgreSQL access: connecting, schema migrations, transactions.
 *
 * All storage functions are plain blocking calls on a PGconn the caller owns;
 * the node runs them on worker threads that each hold one connection. A
 * PGconn must not be used by two threads at once.
 */
#ifndef FLOE_STORAGE_DB_H
#define FLOE_STORAGE_DB_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

/* Key of the advisory lock db_migrate() holds while it looks at or changes
 * the schema ("Floe" in the high 32 bits). Other code must not use it. */
#define DB_MIGRATE_LOCK_KEY 0x466C6F6500000001LL

/* Opens a connection. conninfo is a libpq key=value string or URI; multi-host
 * lists with target_session_attrs=read-write work as libpq documents, so a
 * promoted replica is found after failover. Sets application_name=floe,
 * client_encoding=UTF8 and statement_timeout=statement_timeout_ms (0 = none;
 * negative is an error). Returns the connection, or NULL with the reason in
 * err. Close it with PQfinish(). */
PGconn *db_connect(const char *conninfo, int statement_timeout_ms, char *err, size_t errlen);

/* Applies every embedded migration (storage/migrations.h) the database has not
 * recorded yet, in version order, each in its own transaction
 * together with its row in schema_migrations (version, name, applied_at).
 * Each transaction first takes the transaction-level advisory lock
 * DB_MIGRATE_LOCK_KEY, so several nodes starting together apply every
 * migration exactly once; statement_timeout is lifted inside those
 * transactions, since a migration or the wait for another node's may be long.
 * A migration either applies completely or not at all. Migration files must
 * not contain BEGIN/COMMIT.
 * Returns the number of migrations applied (>= 0), or -1 with the reason in
 * err: a database error, a failed migration (named in err), or a database
 * whose highest version is newer than this binary knows (an old binary must
 * not run against a newer schema). The connection must not be inside a transaction. */
int db_migrate(PGconn *c, char *err, size_t errlen);

/* Stores the database's schema version in *version_r: the highest version in
 * schema_migrations, 0 when the table does not exist or is empty.
 * Returns 0 ok, -1 with the reason in err. */
int db_schema_version(PGconn *c, int *version_r, char *err, size_t errlen);

/* The newest schema version this binary knows (0 when it embeds none). */
int db_schema_latest(void);

/* BEGIN. Returns 0 ok, -1 when the command fails or a transaction is
 * already open on c (nesting would silently merge two units of work). */
int db_begin(PGconn *c);

/* COMMIT. Returns 0 when the transaction committed, -1 otherwise, including
 * when it had failed earlier and PostgreSQL rolled it back instead. */
int db_commit(PGconn *c);

/* ROLLBACK, when a transaction is open; harmless otherwise. Errors are
 * ignored: a broken connection has no transaction left to roll back. */
void db_rollback(PGconn *c);

/* True when res is a successful result (PGRES_COMMAND_OK, PGRES_TUPLES_OK or
 * PGRES_SINGLE_TUPLE); false for NULL and every error status. */
bool db_ok(const PGresult *res);

/* True when res failed with the given five-character SQLSTATE
 * (e.g. "23505", unique_violation). */
bool db_sqlstate_is(const PGresult *res, const char *sqlstate);

/* Writes "<what>: <message>" to err, the message being the primary error of
 * res, or of the connection when res is NULL or carries none, on one line
 * (libpq's trailing newline dropped, inner line breaks made spaces). err may
 * be NULL. */
void db_set_error(char *err, size_t errlen, const PGconn *c, const PGresult *res, const char *what);

/* A unit of work that runs inside the caller's transaction when one is open (under
 * a savepoint, so a failure undoes only this unit and leaves the caller's
 * transaction usable) or in a transaction of its own otherwise. */
struct db_op {
    bool own;
};
/* 0 ok; -1 with message (also when the caller's transaction has already failed). */
int db_op_begin(PGconn *c, struct db_op *op, char *err, size_t errlen);
int db_op_commit(PGconn *c, struct db_op *op, char *err, size_t errlen);
void db_op_abort(PGconn *c, struct db_op *op);

#endif
