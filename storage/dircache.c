/* The directory cache: address -> resolution, bounded, with a time to live,
 * shared by all threads of the process (see storage/dircache.h for the
 * contract and the invalidation rules).
 *
 * Layout. A chained hash table (FNV-1a over the lower-cased address) whose
 * entries are also on a doubly linked list in recency order: a hit moves the
 * entry to the front, a store into a full cache evicts from the back. The
 * bucket array is sized once at twice the bound, rounded up to a power of
 * two, so chains stay short without rehashing. One mutex guards everything;
 * every operation under it is O(1) apart from dropping the whole cache.
 *
 * Generations. A counter bumped by every invalidation. A caller reads it
 * before querying the database and passes it to dircache_store(), which
 * drops the answer if an invalidation happened in between: that answer may
 * predate the write that caused it.
 *
 * Time. CLOCK_MONOTONIC, so a change of the wall clock neither expires nor
 * prolongs entries.
 */
#include "storage/dircache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct entry {
    struct entry *hnext;       /* hash chain */
    struct entry *prev, *next; /* recency list, most recent first */
    uint64_t hash;
    int64_t expires_ms;
    int rc; /* 0 or DIR_ENOTFOUND */
    struct dir_target target;
    char key[DIR_ADDRESS_SIZE];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry **buckets; /* allocated on first store */
static size_t nbuckets;
static struct entry *head, *tail;
static size_t count;
static size_t max_entries = DIRCACHE_MAX_ENTRIES;
static unsigned ttl_ms = DIRCACHE_TTL_MS;
static uint64_t generation = 1;
static struct dircache_stats stats;
static void (*hook)(void);

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Lower-cases address into key; false when it does not fit (no valid
 * address is that long). */
static bool make_key(const char *address, char key[DIR_ADDRESS_SIZE])
{
    if (address == NULL)
        return false;
    size_t i = 0;
    for (; address[i] != '\0'; i++) {
        if (i + 1 >= DIR_ADDRESS_SIZE)
            return false;
        char ch = address[i];
        key[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
    }
    key[i] = '\0';
    return true;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 14695981039346656037ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

/* ---- under the lock ---- */

static void list_unlink(struct entry *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        tail = e->prev;
    e->prev = e->next = NULL;
}

static void list_push_front(struct entry *e)
{
    e->prev = NULL;
    e->next = head;
    if (head != NULL)
        head->prev = e;
    head = e;
    if (tail == NULL)
        tail = e;
}

static struct entry **find_slot(const char *key, uint64_t hash)
{
    struct entry **pp = &buckets[hash & (nbuckets - 1)];
    while (*pp != NULL && ((*pp)->hash != hash || strcmp((*pp)->key, key) != 0))
        pp = &(*pp)->hnext;
    return pp;
}

/* Removes the entry at *slot from both structures and frees it. */
static void remove_at(struct entry **slot)
{
    struct entry *e = *slot;
    *slot = e->hnext;
    list_unlink(e);
    free(e);
    count--;
}

static void remove_entry(struct entry *e)
{
    remove_at(find_slot(e->key, e->hash));
}

static void drop_all(void)
{
    struct entry *e = head;
    while (e != NULL) {
        struct entry *next = e->next;
        free(e);
        e = next;
    }
    head = tail = NULL;
    count = 0;
    if (buckets != NULL)
        memset(buckets, 0, nbuckets * sizeof *buckets);
}

static bool ensure_table(void)
{
    if (buckets != NULL)
        return true;
    size_t want = 16;
    while (want < 2 * max_entries)
        want *= 2;
    buckets = calloc(want, sizeof *buckets);
    if (buckets == NULL)
        return false;
    nbuckets = want;
    return true;
}

/* ---- interface ---- */

void dircache_configure(size_t max, unsigned ttl)
{
    pthread_mutex_lock(&lock);
    drop_all();
    free(buckets);
    buckets = NULL;
    nbuckets = 0;
    max_entries = max > 0 ? max : DIRCACHE_MAX_ENTRIES;
    ttl_ms = ttl > 0 ? ttl : DIRCACHE_TTL_MS;
    generation++;
    memset(&stats, 0, sizeof stats);
    pthread_mutex_unlock(&lock);
}

uint64_t dircache_generation(void)
{
    pthread_mutex_lock(&lock);
    uint64_t g = generation;
    pthread_mutex_unlock(&lock);
    return g;
}

bool dircache_lookup(const char *address, int *rc_r, struct dir_target *t_r)
{
    char key[DIR_ADDRESS_SIZE];
    if (!make_key(address, key))
        return false;
    uint64_t h = fnv1a(key);
    bool hit = false;
    pthread_mutex_lock(&lock);
    if (buckets != NULL) {
        struct entry **slot = find_slot(key, h);
        struct entry *e = *slot;
        if (e != NULL && e->expires_ms <= now_ms()) {
            remove_at(slot);
            e = NULL;
        }
        if (e != NULL) {
            hit = true;
            list_unlink(e);
            list_push_front(e);
            if (rc_r != NULL)
                *rc_r = e->rc;
            if (t_r != NULL && e->rc == 0)
                *t_r = e->target;
        }
    }
    if (hit)
        stats.hits++;
    else
        stats.misses++;
    pthread_mutex_unlock(&lock);
    return hit;
}

void dircache_store(const char *address, uint64_t gen, int rc, const struct dir_target *t)
{
    if (rc != 0 && rc != DIR_ENOTFOUND)
        return;
    if (rc == 0 && t == NULL)
        return;
    char key[DIR_ADDRESS_SIZE];
    if (!make_key(address, key))
        return;
    uint64_t h = fnv1a(key);
    /* Allocated outside the lock; freed again if it turns out unneeded. */
    struct entry *n = calloc(1, sizeof *n);
    if (n == NULL)
        return;
    memcpy(n->key, key, sizeof key);
    n->hash = h;
    n->rc = rc;
    if (rc == 0)
        n->target = *t;

    pthread_mutex_lock(&lock);
    if (gen != generation || !ensure_table()) {
        pthread_mutex_unlock(&lock);
        free(n);
        return;
    }
    n->expires_ms = now_ms() + ttl_ms;
    struct entry **slot = find_slot(key, h);
    if (*slot != NULL)
        remove_at(slot);
    while (count >= max_entries && tail != NULL) {
        remove_entry(tail);
        stats.evictions++;
    }
    slot = find_slot(key, h);
    n->hnext = NULL;
    *slot = n;
    list_push_front(n);
    count++;
    pthread_mutex_unlock(&lock);
}

int dircache_resolve(PGconn *c, const char *address, struct dir_target *t_r, char *err,
                     size_t errlen)
{
    int rc;
    struct dir_target t;
    if (dircache_lookup(address, &rc, &t)) {
        if (rc == 0 && t_r != NULL)
            *t_r = t;
        if (rc != 0)
            dir_set_err(err, errlen, "unknown address %.*s", DIR_ADDRESS_SIZE, address);
        return rc;
    }
    uint64_t gen = dircache_generation();
    rc = dir_resolve(c, address, &t, err, errlen);
    dircache_store(address, gen, rc, &t);
    if (rc == 0 && t_r != NULL)
        *t_r = t;
    return rc;
}

void dircache_invalidate(const char *address)
{
    char key[DIR_ADDRESS_SIZE];
    bool ok = make_key(address, key);
    uint64_t h = ok ? fnv1a(key) : 0;
    pthread_mutex_lock(&lock);
    generation++;
    if (ok && buckets != NULL) {
        struct entry **slot = find_slot(key, h);
        if (*slot != NULL)
            remove_at(slot);
    }
    pthread_mutex_unlock(&lock);
}

void dircache_invalidate_all(void)
{
    pthread_mutex_lock(&lock);
    generation++;
    drop_all();
    pthread_mutex_unlock(&lock);
}

void dircache_set_invalidation_hook(void (*fn)(void))
{
    pthread_mutex_lock(&lock);
    hook = fn;
    pthread_mutex_unlock(&lock);
}

void dircache_directory_changed(void)
{
    pthread_mutex_lock(&lock);
    generation++;
    drop_all();
    void (*fn)(void) = hook;
    pthread_mutex_unlock(&lock);
    if (fn != NULL)
        fn();
}

void dircache_get_stats(struct dircache_stats *s_r)
{
    pthread_mutex_lock(&lock);
    *s_r = stats;
    s_r->entries = count;
    pthread_mutex_unlock(&lock);
}
