/* Values of the vendor-compatible admin XML API (docs/VENDORAPI.md): name
 * masks, the plaintext inside an RSA login digest, parameter numbers, and the
 * mapping of Floe's account kinds onto the vendor's numeric account types.
 * Pure code, no I/O. */
#ifndef FLOE_PROTO_VENDORAPI_VALUES_H
#define FLOE_PROTO_VENDORAPI_VALUES_H

#include <stdbool.h>
#include <stddef.h>

/* The vendor's account types (U_Type / accounttype). Floe has users, groups
 * and resources; the other types (mailing list 1, executable 2, notification
 * 3, static route 4, catalog 5, list server 6) never occur. */
#define VAPI_TYPE_USER 0
#define VAPI_TYPE_GROUP 7
#define VAPI_TYPE_RESOURCE 8

/* Domain types (D_Type / domaintype): a domain, or another name of one. */
#define VAPI_DOMAIN_STANDARD 0
#define VAPI_DOMAIN_ALIAS 2

/* Administrator levels (A_AdminType / admintype). */
#define VAPI_ADMIN_NONE 0
#define VAPI_ADMIN_DOMAIN 1
#define VAPI_ADMIN_SERVER 2

/* The vendor type of a Floe account kind ("user", "group", "resource");
 * -1 for anything else. */
int vapi_account_type(const char *kind);

/* Matches text against a name mask: '*' any run of characters, '?' exactly
 * one character (a UTF-8 sequence counts as one), ASCII letters compared
 * without case. An empty mask matches everything, as "*" does. Runs in
 * O(len(mask) * len(text)) at worst. */
bool vapi_glob_match(const char *mask, const char *text);

/* Login type from <authtype>: 0 ("0", "plain", absent or empty) or 1 ("1",
 * "rsa"); -1 for anything else. */
int vapi_authtype_parse(const char *s);

/* Parses a decimal parameter (offset, count, typemask, ...) of 0..max,
 * surrounded by optional white space. Returns 0 with *v_r set, -1 when it is
 * not such a number. */
int vapi_number_parse(const char *s, long long max, long long *v_r);

/* Splits the plaintext of an RSA login digest, "p=<password>&t=<timestamp>",
 * at its last "&t=" (the password may contain "&t=" itself). The password
 * goes to pw[pwlen], the decimal timestamp to *t_r. Returns 0, or -1 when
 * plain[0..len) is not of that form, holds a NUL, or pw is too small. */
int vapi_digest_split(const char *plain, size_t len, char *pw, size_t pwlen, long long *t_r);

/* Decodes %XX escapes (and nothing else) of s into out[outlen]. Returns 1
 * when something was decoded, 0 when s has no escape (out is then a copy),
 * -1 for a malformed escape, a decoded NUL or a result that does not fit. */
int vapi_percent_decode(const char *s, char *out, size_t outlen);

/* Splits a full name into given name (up to the first space) and surname
 * (the rest, leading spaces dropped), each cut to fit its buffer on a UTF-8
 * character boundary. */
void vapi_name_split(const char *full, char *given, size_t givenlen, char *surname,
                     size_t surnamelen);

#endif
