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

/* The named thing (domain, account) does not exist. */
#define DIR_ENOTFOUND (-2)
/* The name is taken (by a domain, a domain alias or an account). */
#define DIR_EEXIST (-3)
/* The domain still has accounts and deletion was not forced. */
#define DIR_ENOTEMPTY (-4)

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

/* Checks a login (an address, as dir_account_find() takes) and password.
 * Returns 0 with *a_r filled (a_r may be NULL); -1 when the account is
 * unknown, has no password, is disabled or the password is wrong: the same
 * answer for all, and an unknown account still costs one yescrypt
 * verification so the time taken does not reveal whether it exists; -2 on a
 * database error (PQerrorMessage(c) says why). */
int dir_authenticate(PGconn *c, const char *login, const char *password, struct dir_account *a_r);

#endif
