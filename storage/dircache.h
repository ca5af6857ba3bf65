/* The directory cache: an in-process cache of address resolutions
 * (dir_resolve(), storage/aliases.h), so SMTP RCPT and other lookups that
 * repeat the same addresses do not each cost a query.
 *
 * Bounded (DIRCACHE_MAX_ENTRIES, least recently used evicted first), with a
 * time to live (DIRCACHE_TTL_MS) after which an entry is read again, and safe
 * to use from any number of threads. "Not found" answers are cached too; a
 * database error never is.
 *
 * Invalidation. Every directory write (storage/directory.c, aliases.c,
 * groups.c, quota.c limits, policy.c), once committed, calls
 * dircache_directory_changed(): it drops every entry of this process and then
 * calls the invalidation hook, through which the cluster bus tells the other
 * nodes, whose bus handler calls dircache_invalidate_all() (never
 * dircache_directory_changed(), which would echo the news back). Writes drop
 * everything rather than single addresses because one change (a domain
 * alias, a catch-all, a deleted domain) can change the answer for addresses
 * nobody can list. The TTL bounds how long a node that missed a message
 * serves an old answer.
 *
 * A lookup that raced with a write cannot put its stale answer back after
 * the invalidation: each invalidation starts a new generation, and
 * dircache_store() drops answers read under an older one.
 */
#ifndef FLOE_STORAGE_DIRCACHE_H
#define FLOE_STORAGE_DIRCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "storage/aliases.h"

#define DIRCACHE_MAX_ENTRIES 10000
#define DIRCACHE_TTL_MS 60000

/* Changes the bound and the time to live (0 = the defaults above) and drops
 * every entry. For tests and configuration at start. */
void dircache_configure(size_t max_entries, unsigned ttl_ms);

/* The current generation: read it before querying the database and give it
 * to dircache_store() with the answer. */
uint64_t dircache_generation(void);

/* Looks address up (compared ignoring case). On a hit returns true with the
 * cached result code in *rc_r (0 or DIR_ENOTFOUND) and, for 0, the target in
 * *t_r; an expired entry is removed and counts as a miss. Returns false on a
 * miss or for an address longer than any valid one. */
bool dircache_lookup(const char *address, int *rc_r, struct dir_target *t_r);

/* Stores the answer to address: rc 0 with *t, or DIR_ENOTFOUND (t may be
 * NULL). Ignored when gen is older than the current generation (the
 * directory changed while the answer was read), for any other rc, and for an
 * address longer than any valid one. Evicts the least recently used entry
 * when full. */
void dircache_store(const char *address, uint64_t gen, int rc, const struct dir_target *t);

/* dir_resolve() through the cache: the same answers and codes. */
int dircache_resolve(PGconn *c, const char *address, struct dir_target *t_r, char *err,
                     size_t errlen);

/* Drops the entry for address, if any, and starts a new generation. */
void dircache_invalidate(const char *address);

/* Drops every entry and starts a new generation. Does not call the hook. */
void dircache_invalidate_all(void);

/* Sets the function dircache_directory_changed() calls after dropping the
 * local entries (NULL = none). The function runs on the writing thread,
 * outside the cache's lock; it must be quick and must not block on the
 * database. */
void dircache_set_invalidation_hook(void (*fn)(void));

/* Called by every directory write after its commit: dircache_invalidate_all()
 * and then the hook. */
void dircache_directory_changed(void);

struct dircache_stats {
    uint64_t hits;
    uint64_t misses;    /* including expired entries */
    uint64_t evictions; /* entries dropped to make room */
    size_t entries;
};

/* Copies the counters (since the start or the last dircache_configure()). */
void dircache_get_stats(struct dircache_stats *s_r);

#endif
