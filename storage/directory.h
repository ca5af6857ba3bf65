/* The directory: mail domains, their aliases, and accounts with passwords.
 *
 * Every function is a blocking call on a caller-owned connection (see
 * storage/db.h) and runs as one transaction: on any error nothing is written.
 * Functions that change or read the directory return 0 on success, -1 on a
 * database or validation error with the reason in err, and the named codes
 * below where the description says so. err may be NULL.
 *
 * Addresses are local@domain. Domains are compared and stored lower-case;
 * local parts keep their case but are compared case-insensitively. Lookups
 * by address also accept a domain alias in place of the domain.
 */
#ifndef FLOE_STORAGE_DIRECTORY_H
#define FLOE_STORAGE_DIRECTORY_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "storage/password.h"

/* The named thing (domain, account) does not exist. */
#define DIR_ENOTFOUND (-2)
/* The name is taken (by a domain, a domain alias or an account). */
#define DIR_EEXIST (-3)
/* The domain still has accounts and deletion was not forced. */
#define DIR_ENOTEMPTY (-4)
/* Further codes of the directory's other modules, listed here so that no two
 * collide: QUOTA_EXCEEDED (-5) and QUOTA_EBELOWUSAGE (-6) in storage/quota.h,
 * DIR_ECYCLE (-7) in storage/groups.h. */

/* RFC 5321 §4.5.3.1.1: local part at most 64 octets. */
#define DIR_LOCAL_PART_MAX 64
/* RFC 1035 §2.3.4: a name of at most 253 characters in text form (255 octets
 * on the wire), labels of at most 63. */
#define DIR_DOMAIN_MAX 253
#define DIR_LABEL_MAX 63
/* Buffer that holds any valid address local@domain, NUL included. */
#define DIR_ADDRESS_SIZE 320
/* Longest full name, in bytes. */
#define DIR_FULL_NAME_MAX 255

struct dir_account {
    long long id;
    char address[DIR_ADDRESS_SIZE]; /* local part as stored @ the domain's own name */
    char kind[16];                  /* "user", "group" or "resource" */
    char full_name[DIR_FULL_NAME_MAX + 1];
    bool disabled;
    bool is_admin; /* server administrator */
};

/* Validates a domain name: lower-case after folding ASCII letters, LDH labels
 * (letters, digits, inner hyphens) of 1..63 characters, at least two labels,
 * at most 253 characters, no trailing dot, and a last label that is not all
 * digits (RFC 3696 §2; keeps IPv4 literals out). When out is not NULL the
 * lower-cased name is written there (outlen >= DIR_DOMAIN_MAX + 1).
 * Returns 0 valid, -1 with the reason in err. */
int dir_domain_name_check(const char *name, char *out, size_t outlen, char *err, size_t errlen);

/* Validates a local part: RFC 5321 §4.1.2 Dot-string (atext characters of
 * RFC 5322 §3.2.3 separated by single dots, no leading or trailing dot;
 * quoted strings are not accepted), 1..64 characters.
 * Returns 0 valid, -1 with the reason in err. */
int dir_local_part_check(const char *local, char *err, size_t errlen);

/* Adds a domain; name is folded to lower case and validated as by
 * dir_domain_name_check(). Returns 0, -1, or DIR_EEXIST when the name is
 * already a domain or a domain alias. */
int dir_domain_add(PGconn *c, const char *name, char *err, size_t errlen);

/* Deletes a domain (by its own name, not an alias) with its aliases. When it
 * still has accounts it is refused with DIR_ENOTEMPTY unless force is true;
 * then the accounts are deleted with it. Returns 0, -1, DIR_ENOTFOUND or
 * DIR_ENOTEMPTY. */
int dir_domain_delete(PGconn *c, const char *name, bool force, char *err, size_t errlen);

/* Looks a domain up by its own name or one of its aliases (folded to lower
 * case). Returns 0 with its id in *id_r and its own name in name_r (either
 * may be NULL), -1 on a database error, or DIR_ENOTFOUND for an unknown or
 * malformed name ("unknown domain x"). */
int dir_domain_lookup(PGconn *c, const char *name, long long *id_r, char name_r[DIR_DOMAIN_MAX + 1],
                      char *err, size_t errlen);

/* Called once per domain, in name order. Return 0 to continue, non-zero to
 * stop early. The callback must not use the connection. */
typedef int (*dir_domain_cb)(const char *name, void *ctx);

/* Calls cb for every domain in name order. Returns 0 (also when cb stopped
 * early) or -1; on -1 cb may already have been called for some domains. */
int dir_domain_list(PGconn *c, dir_domain_cb cb, void *ctx, char *err, size_t errlen);

/* Adds an account at address local@domain; the domain must exist by its own
 * name. kind is "user", "group" or "resource" (NULL = "user"). password NULL
 * makes an account that cannot log in; otherwise it must pass
 * password_check() and is stored as yescrypt hash and SCRAM-SHA-256 verifier.
 * full_name may be NULL (empty); at most DIR_FULL_NAME_MAX bytes of UTF-8
 * without control characters. Returns 0, -1 (invalid input or database
 * error), DIR_ENOTFOUND ("unknown domain x") or DIR_EEXIST (the local part,
 * ignoring case, is taken in that domain). */
int dir_account_add(PGconn *c, const char *address, const char *kind, const char *password,
                    const char *full_name, bool is_admin, char *err, size_t errlen);

/* Deletes an account. Returns 0, -1 or DIR_ENOTFOUND. */
int dir_account_delete(PGconn *c, const char *address, char *err, size_t errlen);

/* Sets a new password (checked by password_check()), or removes login when
 * password is NULL. Returns 0, -1 or DIR_ENOTFOUND. */
int dir_account_passwd(PGconn *c, const char *address, const char *password, char *err,
                       size_t errlen);

/* Disables or re-enables an account; a disabled account cannot log in.
 * Returns 0, -1 or DIR_ENOTFOUND. */
int dir_account_set_disabled(PGconn *c, const char *address, bool disabled, char *err,
                             size_t errlen);

/* Looks an account up by address, ignoring case, through a domain alias too.
 * Returns 0 with *a_r filled, -1, or DIR_ENOTFOUND (also for a malformed
 * address; *a_r is untouched unless 0 is returned). */
int dir_account_find(PGconn *c, const char *address, struct dir_account *a_r, char *err,
                     size_t errlen);

/* Called once per account, ordered by domain then local part. Return 0 to
 * continue, non-zero to stop early. The callback must not use the connection. */
typedef int (*dir_account_cb)(const struct dir_account *a, void *ctx);

/* Calls cb for every account of domain (its own name or an alias), or of all
 * domains when domain is NULL. Rows are streamed, so memory stays small for
 * large directories. Returns 0 (also when cb stopped early), -1, or
 * DIR_ENOTFOUND for an unknown domain; on -1 cb may already have been called
 * for some accounts. */
int dir_account_list(PGconn *c, const char *domain, dir_account_cb cb, void *ctx, char *err,
                     size_t errlen);

/* Checks a login and password. The login is
 *   - an account's address, as dir_account_find() takes it (a domain alias
 *     works in place of the domain);
 *   - an alias of an account (storage/aliases.h), which logs in to that
 *     account. A catch-all never does: it would make every unknown name in
 *     the domain a login for the catch-all account;
 *   - a bare local part, only under the login policy
 *     local_part_when_unambiguous (storage/policy.h) and only when exactly
 *     one account in all domains has that local part, ignoring case.
 * Returns 0 with *a_r filled (a_r may be NULL); -1 when the account is
 * unknown, ambiguous, has no password, is disabled or the password is wrong:
 * the same answer for all, and an unknown account still costs one yescrypt
 * verification so the time taken does not reveal whether it exists; -2 on a
 * database error (PQerrorMessage(c) says why). */
/* The account's version: it changes with every change of an administrator-visible
 * field (migration 0009); the admin API's ETag. 0, DIR_ENOTFOUND or -1. */
int dir_account_version(PGconn *c, const char *address, long long *version_r, char *err,
                        size_t errlen);

/* Changes of dir_account_update; NULL / negative members are left as they are. */
struct dir_account_change {
    const char *password;   /* new password; "" is refused */
    const char *full_name;  /* new full name */
    int disabled;           /* 0 or 1; -1 keep */
    const char *deliver_to; /* a group's delivery (storage/groups.h): "members" or
                             * "folder"; -1 with err for an account of another kind */
};

/* Applies ch to address in one transaction, only if the account's version is still
 * expected_version (0: any). Returns 0 with the new version, DIR_ENOTFOUND,
 * DIR_ECONFLICT when the version moved on, or -1 (invalid value, message in err). */
#define DIR_ECONFLICT (-8)
int dir_account_update(PGconn *c, const char *address, long long expected_version,
                       const struct dir_account_change *ch, long long *version_r, char *err,
                       size_t errlen);

/* Verifies a login (an address, an alias, or a bare local part when the login
 * policy allows it) and its password. 0 with *a_r (may be NULL); -1 for a wrong
 * login or password or a disabled account (the same work is done either way);
 * -2 when the database failed. */
int dir_authenticate(PGconn *c, const char *login, const char *password, struct dir_account *a_r);

/* The SCRAM-SHA-256 verifier (storage/password.h) of the account a login
 * names, for SASL SCRAM. 0 with *a_r and verifier_r; -1 when there is no such
 * enabled account with a verifier; -2 when the database failed. */
int dir_scram_lookup(PGconn *c, const char *login, struct dir_account *a_r,
                     char verifier_r[PASSWORD_SCRAM_MAX]);

/* ---- Shared by the directory's storage modules ----
 *
 * storage/aliases.c, groups.c, quota.c and policy.c use these so that every
 * module parses addresses, runs statements and ends transactions the same
 * way. Other code may use dir_address_parse(); the rest is plumbing. */

/* An address split into its parts. */
struct dir_address {
    char local[DIR_LOCAL_PART_MAX + 1]; /* as given */
    char lower[DIR_LOCAL_PART_MAX + 1]; /* folded to lower case: the lookup key */
    char domain[DIR_DOMAIN_MAX + 1];    /* folded to lower case */
};

/* Splits and validates local@domain (dir_local_part_check() and
 * dir_domain_name_check()). Returns 0 with *a_r filled, -1 with the reason in
 * err. */
int dir_address_parse(const char *address, struct dir_address *a_r, char *err, size_t errlen);

/* Adds an account without a password inside a transaction the caller
 * opened with dir_tx_begin() (for kinds that carry further rows, such as
 * groups and resources, written in the same transaction). kind must be
 * given; otherwise as dir_account_add(). Stores the new id in *id_r (may be
 * NULL). Returns 0, -1, DIR_ENOTFOUND or DIR_EEXIST; on any error the
 * transaction is to be rolled back. */
int dir_account_create(PGconn *c, const char *address, const char *kind, const char *full_name,
                       long long *id_r, char *err, size_t errlen);

/* Formats into err like snprintf(); err may be NULL. */
__attribute__((format(printf, 3, 4))) void dir_set_err(char *err, size_t errlen, const char *fmt,
                                                       ...);

/* Runs one parameterised statement. Returns the result when it succeeded,
 * else NULL with "<what>: <reason>" in err; when failed_r is not NULL the
 * failed result is stored there for SQLSTATE inspection (the caller clears
 * it), otherwise it is cleared here. */
PGresult *dir_sql(PGconn *c, const char *sql, int nparams, const char *const *params,
                  const char *what, PGresult **failed_r, char *err, size_t errlen);

/* Runs a query in single-row mode and calls fn for each row until fn returns
 * non-zero. The result is always drained, so the connection stays usable.
 * Returns 0 (also when fn stopped early), or -1 with err on a database
 * error. */
int dir_sql_each(PGconn *c, const char *sql, int nparams, const char *const *params,
                 int (*fn)(const PGresult *r, int row, void *arg), void *arg, const char *what,
                 char *err, size_t errlen);

/* BEGIN for one directory operation. Returns 0, or -1 with err (also when a
 * transaction is already open on c). */
int dir_tx_begin(PGconn *c, char *err, size_t errlen);

/* Ends the transaction dir_tx_begin() opened: COMMIT when rc is 0, else
 * ROLLBACK. When wrote is true and the commit succeeded it calls
 * dircache_directory_changed() (storage/dircache.h), so cached resolutions
 * are dropped here and, through the hook, on other nodes. Returns rc, or -1
 * with err when the commit failed. */
int dir_tx_end(PGconn *c, int rc, bool wrote, char *err, size_t errlen);

/* Takes the transaction-level advisory lock that serialises changes to one
 * name: a lower-cased address or a domain name. Adding an account, an alias,
 * a domain or a domain alias takes the lock of the name it claims before
 * checking the other tables, since no constraint spans them. The lock key is
 * (DIR_NAME_LOCK_CLASS, hashtext(name)) in PostgreSQL's two-key advisory lock
 * space, which never meets the one-key space of DB_MIGRATE_LOCK_KEY; a hash
 * collision only serialises two unrelated changes. Returns 0 or -1 with err. */
#define DIR_NAME_LOCK_CLASS 0x466C6F65 /* "Floe" */
int dir_lock_name(PGconn *c, const char *name, char *err, size_t errlen);

/* Columns that dir_fill_account() reads, in this order, for a query that
 * names the account "a" and its domain "d". */
#define DIR_ACCOUNT_COLS "a.id, a.local_part, d.name, a.kind, a.full_name, a.disabled, a.is_admin"
#define DIR_ACCOUNT_NCOLS 7

/* Fills *a from row `row` of r, whose columns first..first+6 are
 * DIR_ACCOUNT_COLS. */
void dir_fill_account(struct dir_account *a, const PGresult *r, int row, int first);

/* SQL expression for the id of the domain named by parameter p: its own name
 * or one of its aliases (names and aliases never overlap), NULL when
 * neither. */
#define DIR_DOMAIN_ID_OF(p)                                                                        \
    "(SELECT id FROM domains WHERE name = " p " UNION ALL "                                        \
    "SELECT domain_id FROM domain_aliases WHERE name = " p " LIMIT 1)"

#endif
