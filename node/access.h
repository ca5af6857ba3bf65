/* IP access lists: which client addresses may connect to a service.
 *
 * A list is written as entries separated by ';' (',' and blanks also separate):
 *
 *   *                      every address, IPv4 and IPv6
 *   127.0.0.1  ::1         one address
 *   10.0.0.0/8  2001:db8::/32
 *                          CIDR (host bits after the prefix are ignored)
 *   192.168.*.*            IPv4 with any octet '*'
 *   192-193.*.*.*  10.0-15.*.1-254
 *                          IPv4 with octet ranges lo-hi (inclusive), mixable with '*'
 *   [Firewall]             the entries of the named pattern (patterns may nest)
 *
 * Numbers are decimal without leading zeros ("010" is refused rather than guessed
 * to be octal or decimal). An IPv4 client seen on an IPv6 socket as ::ffff:a.b.c.d
 * is matched as the IPv4 address a.b.c.d, and an entry written in that mapped form
 * (prefix 96 or longer) is an IPv4 entry. Other IPv6 entries, ::/0 included, match
 * only IPv6 clients; use '*' for everything.
 *
 * A level (the global list, or one service's list) has a mode: OFF (no restriction),
 * GRANT (only listed addresses may connect) or DENY (listed addresses may not). */
#ifndef FLOE_NODE_ACCESS_H
#define FLOE_NODE_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define ACCESS_MAX_SPEC 65536           /* bytes in one list or pattern spec */
#define ACCESS_MAX_ENTRIES 10000        /* entries in one list after expansion */
#define ACCESS_MAX_DEPTH 16             /* patterns nested inside patterns */
#define ACCESS_MAX_EXPANSION (1u << 20) /* bytes of pattern text read for one list */
#define ACCESS_MAX_PATTERNS 4096        /* patterns in one table */
#define ACCESS_MAX_NAME 64              /* bytes in a pattern name */

struct access_patterns; /* named patterns: name -> spec string */
struct access_list;     /* parsed, immutable, safe to share between threads read-only */

/* Returns an empty pattern table, or NULL when out of memory. The table is not
 * locked: build it, then share it read-only with access_list_parse(). */
struct access_patterns *access_patterns_new(void);
/* Adds or replaces pattern NAME (case-insensitive) with SPEC (not parsed until used).
 * NAME is 1..ACCESS_MAX_NAME bytes of printable ASCII without '[', ']', ';', ','
 * and without leading or trailing blanks; SPEC is at most ACCESS_MAX_SPEC bytes.
 * 0 ok, -1 error (bad name, spec too long, table full, out of memory). */
int access_patterns_set(struct access_patterns *p, const char *name, const char *spec);
/* Frees the table and NULLs *p; *p may be NULL. */
void access_patterns_free(struct access_patterns **p);

/* Parses SPEC. Returns NULL and writes a one-line reason naming the bad entry into err
 * (e.g. "bad entry '300.1.*.*'" or "unknown pattern [Foo]" or "pattern cycle at [A]").
 * pats may be NULL. An empty spec gives an empty list (matches nothing).
 * A bad entry's message adds the reason ("bad entry '5-3.*.*.*' (range start above
 * end)"), and an error inside a pattern ends with " in [Name]". Unprintable bytes
 * are shown as '?' and long entries are shortened. err may be NULL when errlen is 0. */
struct access_list *access_list_parse(const char *spec, const struct access_patterns *pats,
                                      char *err, size_t errlen);
/* true when addr (AF_INET or AF_INET6 sockaddr) matches any entry. false for a NULL
 * list or address and for any other address family. */
bool access_list_match(const struct access_list *l, const struct sockaddr *addr);
/* Number of entries after expansion (for tests and logs); 0 for NULL. */
size_t access_list_count(const struct access_list *l);
/* Frees the list and NULLs *l; *l may be NULL. */
void access_list_free(struct access_list **l);

enum access_mode { ACCESS_OFF = 0, ACCESS_GRANT, ACCESS_DENY };
/* Decision for one level: OFF -> true; GRANT -> match; DENY -> !match.
 * A NULL list is an empty list; an unknown mode value gives false. */
bool access_allows(enum access_mode mode, const struct access_list *l, const struct sockaddr *addr);
/* Parses "off" / "grant" / "deny" (case-insensitive); -1 when invalid (then *mode_r
 * is left unchanged), 0 ok. */
int access_mode_parse(const char *s, enum access_mode *mode_r);

#endif
