/* Policies: which services an account may use, and how logins are matched.
 *
 * Service policies. Each service (POLICY_SERVICES) is enabled, disabled or
 * inherited, per domain and per account. An account's own setting wins; if
 * it inherits, its domain's setting applies; if that inherits too, the
 * service is enabled. Services are named by their protocol family:
 *   imap, pop3, smtp (submission and authenticated relay), activesync,
 *   dav (WebDAV, CalDAV, CardDAV), syncml.
 *
 * Login policy (server-wide): "full_address" (a login is an address or an
 * alias) or "local_part_when_unambiguous" (also a bare local part, when
 * exactly one account in all domains has it). dir_authenticate() applies it.
 *
 * Conventions as in storage/directory.h: 0 on success, -1 on invalid input
 * or a database error with the reason in err, DIR_ENOTFOUND for unknown
 * names. err may be NULL. Every write drops the directory cache
 * (storage/dircache.h) once committed.
 */
#ifndef FLOE_STORAGE_POLICY_H
#define FLOE_STORAGE_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "storage/directory.h"

#define POLICY_SERVICE_COUNT 6
/* The service names, in a fixed order (the order of policy_get_*()). */
extern const char *const policy_services[POLICY_SERVICE_COUNT];

enum policy_state {
    POLICY_INHERIT,
    POLICY_ENABLED,
    POLICY_DISABLED,
};

enum policy_login {
    POLICY_LOGIN_FULL_ADDRESS,
    POLICY_LOGIN_LOCAL_PART_WHEN_UNAMBIGUOUS,
};

/* Returns 0 when service is one of policy_services, else -1 with the list
 * of known services in err. */
int policy_service_check(const char *service, char *err, size_t errlen);

/* "inherit", "enabled", "disabled" and back. policy_state_parse() returns 0
 * or -1 with err. */
const char *policy_state_name(enum policy_state st);
int policy_state_parse(const char *s, enum policy_state *st_r, char *err, size_t errlen);

/* "full_address", "local_part_when_unambiguous" and back. */
const char *policy_login_name(enum policy_login p);
int policy_login_parse(const char *s, enum policy_login *p_r, char *err, size_t errlen);

/* Sets a service's state for a domain (own name or alias). POLICY_INHERIT
 * removes the domain's setting. Returns 0, -1 (unknown service) or
 * DIR_ENOTFOUND. */
int policy_set_domain(PGconn *c, const char *domain, const char *service, enum policy_state st,
                      char *err, size_t errlen);

/* Sets a service's state for an account. POLICY_INHERIT removes the
 * account's setting. Returns 0, -1 (unknown service) or DIR_ENOTFOUND. */
int policy_set_account(PGconn *c, const char *address, const char *service, enum policy_state st,
                       char *err, size_t errlen);

/* One service's new state, for the policy_set_*_many() functions. */
struct policy_change {
    const char *service;
    enum policy_state state;
};

/* Apply n changes (1..POLICY_SERVICE_COUNT, each service at most once) to a
 * domain or an account in one transaction: all of them or, on any error,
 * none. The single-service setters above are these with n = 1. Returns 0,
 * -1 (unknown or repeated service, bad n) or DIR_ENOTFOUND. */
int policy_set_domain_many(PGconn *c, const char *domain, const struct policy_change *ch, size_t n,
                           char *err, size_t errlen);
int policy_set_account_many(PGconn *c, const char *address, const struct policy_change *ch,
                            size_t n, char *err, size_t errlen);

/* One service's settings and the resulting answer. */
struct policy_service {
    const char *service; /* from policy_services */
    enum policy_state domain;
    enum policy_state account; /* POLICY_INHERIT in policy_get_domain() */
    bool allowed;              /* the effective answer */
};

/* Fills out[] (in policy_services order) for a domain; allowed is what an
 * account of the domain that inherits gets. Returns 0, -1 or
 * DIR_ENOTFOUND. */
int policy_get_domain(PGconn *c, const char *domain,
                      struct policy_service out[POLICY_SERVICE_COUNT], char *err, size_t errlen);

/* Fills out[] (in policy_services order) for an account. Returns 0, -1 or
 * DIR_ENOTFOUND. */
int policy_get_account(PGconn *c, const char *address,
                       struct policy_service out[POLICY_SERVICE_COUNT], char *err, size_t errlen);

/* Whether the account may use service: *allowed_r = account setting, else
 * domain setting, else true. One query on primary keys; run at every login
 * and session start. Does not look at the account's disabled flag. Returns
 * 0, -1 (unknown service or database error) or DIR_ENOTFOUND (unknown
 * account). */
int policy_service_allowed(PGconn *c, long long account_id, const char *service, bool *allowed_r,
                           char *err, size_t errlen);

/* Sets / reads the login policy. Return 0 or -1. */
int policy_login_set(PGconn *c, enum policy_login p, char *err, size_t errlen);
int policy_login_get(PGconn *c, enum policy_login *p_r, char *err, size_t errlen);

#endif
