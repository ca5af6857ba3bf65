/* IMAP THREAD algorithms (see thread.h).
 *
 * Both algorithms work on "containers": one per message, plus the dummies REFERENCES makes for
 * message IDs that are referenced but not among the messages (or that must hold two threads
 * with one subject). Containers live in fixed blocks so pointers to them stay valid; children
 * are doubly linked lists so splicing and removing are O(1). Every walk over the tree is a loop
 * over parent/child/next pointers or over an array of the nodes in pre-order; nothing recurses,
 * so a malicious reply chain as long as the mailbox costs time, never stack.
 *
 * Strings (normalised message IDs, base subjects) go into an arena freed with the result. */
#include "proto/imap/thread.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BLOCK_CONTAINERS 1024
#define ARENA_BLOCK (64 * 1024)
#define MSGID_MAX 998 /* RFC 5322 §2.1.1 line length: longer IDs are not IDs */

struct cont {
    struct imap_thread_node node; /* the public view, filled at the end */
    long msg;                     /* index into the messages; -1 for a dummy */
    struct cont *parent, *first, *last, *prev, *next;
};

struct block {
    struct block *next;
    size_t used;
    struct cont c[BLOCK_CONTAINERS];
};

struct chunk {
    struct chunk *next;
    size_t used, size;
    char data[];
};

struct msginfo {
    int64_t date;
    char *base; /* base subject (arena) */
    bool reply;
};

struct imap_thread {
    struct block *blocks;
    struct chunk *chunks;
    struct cont *root; /* a dummy whose children are the threads */
    struct msginfo *info;
    size_t ninfo;
    bool oom;
};

/* ---- memory ---- */

static struct cont *cont_new(struct imap_thread *t, long msg)
{
    if (!t->blocks || t->blocks->used == BLOCK_CONTAINERS) {
        struct block *b = malloc(sizeof(*b));
        if (!b) {
            t->oom = true;
            return NULL;
        }
        b->next = t->blocks;
        b->used = 0;
        t->blocks = b;
    }
    struct cont *c = &t->blocks->c[t->blocks->used++];
    memset(c, 0, sizeof(*c));
    c->msg = msg;
    return c;
}

static char *arena_alloc(struct imap_thread *t, size_t n)
{
    if (!t->chunks || t->chunks->size - t->chunks->used < n) {
        size_t size = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        struct chunk *c = malloc(sizeof(*c) + size);
        if (!c) {
            t->oom = true;
            return NULL;
        }
        c->next = t->chunks;
        c->used = 0;
        c->size = size;
        t->chunks = c;
    }
    char *p = t->chunks->data + t->chunks->used;
    t->chunks->used += n;
    return p;
}

void imap_thread_free(struct imap_thread **tp)
{
    struct imap_thread *t = tp ? *tp : NULL;
    if (!t)
        return;
    while (t->blocks) {
        struct block *b = t->blocks->next;
        free(t->blocks);
        t->blocks = b;
    }
    while (t->chunks) {
        struct chunk *c = t->chunks->next;
        free(t->chunks);
        t->chunks = c;
    }
    free(t->info);
    free(t);
    *tp = NULL;
}

/* ---- tree operations ---- */

static void unlink_cont(struct cont *c)
{
    struct cont *p = c->parent;
    if (!p)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        p->first = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        p->last = c->prev;
    c->parent = c->prev = c->next = NULL;
}

static void append_child(struct cont *p, struct cont *c)
{
    c->parent = p;
    c->next = NULL;
    c->prev = p->last;
    if (p->last)
        p->last->next = c;
    else
        p->first = c;
    p->last = c;
}

/* Puts c where old is in old's parent's list; old is left unlinked. */
static void replace_cont(struct cont *old, struct cont *c)
{
    struct cont *p = old->parent;
    c->parent = p;
    c->prev = old->prev;
    c->next = old->next;
    if (c->prev)
        c->prev->next = c;
    else
        p->first = c;
    if (c->next)
        c->next->prev = c;
    else
        p->last = c;
    old->parent = old->prev = old->next = NULL;
}

/* Is a the same as b or below it? Walks up from a; a b without children has nothing below. */
static bool within(const struct cont *a, const struct cont *b)
{
    if (a == b)
        return true;
    if (!b->first)
        return false;
    for (const struct cont *p = a->parent; p; p = p->parent)
        if (p == b)
            return true;
    return false;
}

/* Every container under t->root (root first) in pre-order, in a new array. */
static struct cont **preorder(struct imap_thread *t, size_t *n_r)
{
    size_t cap = 64, n = 0;
    struct cont **v = malloc(cap * sizeof(*v));
    if (!v) {
        t->oom = true;
        return NULL;
    }
    struct cont *c = t->root;
    while (c) {
        if (n == cap) {
            struct cont **nv = realloc(v, cap * 2 * sizeof(*v));
            if (!nv) {
                free(v);
                t->oom = true;
                return NULL;
            }
            v = nv;
            cap *= 2;
        }
        v[n++] = c;
        if (c->first) {
            c = c->first;
            continue;
        }
        while (c && c != t->root && !c->next)
            c = c->parent;
        c = c && c != t->root ? c->next : NULL;
    }
    *n_r = n;
    return v;
}

/* ---- sorting siblings by sent date (RFC 5256 §2.2; ties: mailbox order) ---- */

/* The message that stands for c in date order: c itself, or a dummy's first child (RFC 5256
 * REFERENCES steps 4 and 6). */
static const struct cont *date_rep(const struct cont *c)
{
    while (c->msg < 0 && c->first)
        c = c->first;
    return c;
}

static _Thread_local const struct msginfo *sort_info;

static int cmp_date(const void *a, const void *b)
{
    const struct cont *x = date_rep(*(struct cont *const *)a);
    const struct cont *y = date_rep(*(struct cont *const *)b);
    if (x->msg < 0 || y->msg < 0) /* a childless dummy: none are left when sorting */
        return (x->msg >= 0) - (y->msg >= 0);
    int64_t dx = sort_info[x->msg].date, dy = sort_info[y->msg].date;
    if (dx != dy)
        return dx < dy ? -1 : 1;
    return x->msg < y->msg ? -1 : x->msg > y->msg;
}

/* Sorts p's children by date; tmp holds at least their number of pointers. */
static void sort_children(struct imap_thread *t, struct cont *p, struct cont **tmp)
{
    size_t n = 0;
    for (struct cont *c = p->first; c; c = c->next)
        tmp[n++] = c;
    if (n < 2)
        return;
    sort_info = t->info;
    qsort(tmp, n, sizeof(*tmp), cmp_date);
    p->first = p->last = NULL;
    for (size_t i = 0; i < n; i++)
        append_child(p, tmp[i]);
}

/* ---- base subject (RFC 5256 §2.1) ---- */

static bool wsp(char c)
{
    return c == ' ' || c == '\t';
}

static char lc(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* subj-blob = "[" *BLOBCHAR "]" *WSP at s[i]: its length, or 0. */
static size_t blob_len(const char *s, size_t i, size_t end)
{
    if (i >= end || s[i] != '[')
        return 0;
    size_t j = i + 1;
    while (j < end && s[j] != '[' && s[j] != ']')
        j++;
    if (j >= end || s[j] != ']')
        return 0;
    j++;
    while (j < end && wsp(s[j]))
        j++;
    return j - i;
}

/* subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":" at s[i]: its length, or 0. */
static size_t refwd_len(const char *s, size_t i, size_t end)
{
    size_t j = i;
    if (end - j >= 2 && lc(s[j]) == 'r' && lc(s[j + 1]) == 'e') {
        j += 2;
    } else if (end - j >= 2 && lc(s[j]) == 'f' && lc(s[j + 1]) == 'w') {
        j += 2;
        if (j < end && lc(s[j]) == 'd')
            j++;
    } else {
        return 0;
    }
    while (j < end && wsp(s[j]))
        j++;
    j += blob_len(s, j, end);
    if (j >= end || s[j] != ':')
        return 0;
    return j + 1 - i;
}

char *imap_thread_base_subject(const char *subject, bool *is_reply_r)
{
    if (!subject)
        subject = "";
    size_t len = strlen(subject);
    char *s = malloc(len + 1);
    if (!s)
        return NULL;
    /* (1) tabs and line breaks to spaces, runs of spaces to one (decoding is the caller's) */
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = subject[i];
        if (c == '\t' || c == '\r' || c == '\n')
            c = ' ';
        if (c == ' ' && n > 0 && s[n - 1] == ' ')
            continue;
        s[n++] = c;
    }
    bool reply = false;
    size_t start = 0, end = n;
    for (;;) {
        /* (2) subj-trailer = "(fwd)" / WSP, repeatedly */
        for (;;) {
            if (end > start && wsp(s[end - 1])) {
                end--;
            } else if (end - start >= 5 && strncasecmp(s + end - 5, "(fwd)", 5) == 0) {
                end -= 5;
                reply = true;
            } else {
                break;
            }
        }
        /* (3)-(5): subj-leader = (*subj-blob subj-refwd) / WSP; then one subj-blob when a
         * non-empty subj-base remains; until neither applies */
        for (;;) {
            bool changed = false;
            for (;;) {
                if (start < end && wsp(s[start])) {
                    start++;
                    changed = true;
                    continue;
                }
                size_t j = start, b;
                while ((b = blob_len(s, j, end)) > 0)
                    j += b;
                size_t r = refwd_len(s, j, end);
                if (r == 0)
                    break;
                start = j + r;
                reply = true;
                changed = true;
            }
            size_t b = blob_len(s, start, end);
            if (b > 0 && start + b < end) {
                start += b;
                changed = true;
            }
            if (!changed)
                break;
        }
        /* (6) subj-fwd-hdr "[fwd:" ... subj-fwd-trl "]": unwrap and start again at (2) */
        if (end - start >= 6 && strncasecmp(s + start, "[fwd:", 5) == 0 && s[end - 1] == ']') {
            start += 5;
            end -= 1;
            reply = true;
            continue;
        }
        break;
    }
    memmove(s, s + start, end - start);
    s[end - start] = '\0';
    if (is_reply_r)
        *is_reply_r = reply;
    return s;
}

int imap_thread_subject_cmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        unsigned char x = (unsigned char)lc(*a), y = (unsigned char)lc(*b);
        if (x != y || !x)
            return x < y ? -1 : x > y;
    }
}

/* ---- a hash table of strings (message IDs, folded subjects) ---- */

struct entry {
    const char *key;
    uint64_t hash;
    struct cont *c;
};

struct table {
    struct entry *e;
    size_t cap, used;
};

static uint64_t hash_str(const char *s, bool fold)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)(fold ? lc(*s) : *s);
        h *= 1099511628211ULL;
    }
    return h;
}

static struct entry *table_find(struct table *tb, const char *key, bool fold, uint64_t *hash_r)
{
    uint64_t h = hash_str(key, fold);
    *hash_r = h;
    if (!tb->cap)
        return NULL;
    for (size_t i = h & (tb->cap - 1);; i = (i + 1) & (tb->cap - 1)) {
        struct entry *e = &tb->e[i];
        if (!e->key)
            return e;
        if (e->hash == h &&
            (fold ? imap_thread_subject_cmp(e->key, key) : strcmp(e->key, key)) == 0)
            return e;
    }
}

/* Adds key (which must not be there) -> c. -1 out of memory. */
static int table_add(struct table *tb, const char *key, uint64_t hash, struct cont *c)
{
    if ((tb->used + 1) * 2 > tb->cap) {
        size_t cap = tb->cap ? tb->cap * 2 : 64;
        struct entry *e = calloc(cap, sizeof(*e));
        if (!e)
            return -1;
        for (size_t i = 0; i < tb->cap; i++) {
            if (!tb->e[i].key)
                continue;
            size_t k = tb->e[i].hash & (cap - 1);
            while (e[k].key)
                k = (k + 1) & (cap - 1);
            e[k] = tb->e[i];
        }
        free(tb->e);
        tb->e = e;
        tb->cap = cap;
    }
    size_t k = hash & (tb->cap - 1);
    while (tb->e[k].key)
        k = (k + 1) & (tb->cap - 1);
    tb->e[k] = (struct entry){key, hash, c};
    tb->used++;
    return 0;
}

/* ---- message IDs ---- */

/* The next "<...>" in s from *pos, normalised into out (at least MSGID_MAX + 1 bytes): quotes
 * and backslash escapes removed, white space dropped (RFC 5256 §3 REFERENCES: IDs compare
 * equal whatever their quoting). Returns 1 for a valid ID ("left@right"), 0 for an invalid one
 * (skipped), -1 when there are no more. */
static int next_msgid(const char *s, size_t *pos, char *out)
{
    const char *p = strchr(s + *pos, '<');
    if (!p) {
        *pos += strlen(s + *pos);
        return -1;
    }
    p++;
    size_t n = 0;
    bool ok = true, quoted = false;
    for (; *p && (quoted || *p != '>'); p++) {
        char c = *p;
        if (c == '"') {
            quoted = !quoted;
            continue;
        }
        if (c == '\\' && p[1]) {
            c = *++p;
        } else if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            continue;
        } else if (c == '<' && !quoted) {
            break; /* a stray '<': this one ends here, invalid */
        }
        if (n < MSGID_MAX)
            out[n++] = c;
        else
            ok = false;
    }
    if (*p != '>')
        ok = false;
    *pos = (size_t)(p - s) + (*p == '>' ? 1 : 0);
    out[n] = '\0';
    const char *at = strchr(out, '@');
    if (!ok || !at || at == out || !at[1])
        return 0;
    return 1;
}

/* The container of id, made as a dummy when new. NULL out of memory. */
static struct cont *id_cont(struct imap_thread *t, struct table *ids, const char *id)
{
    uint64_t h;
    struct entry *e = table_find(ids, id, false, &h);
    if (e && e->key)
        return e->c;
    struct cont *c = cont_new(t, -1);
    size_t l = strlen(id);
    char *key = arena_alloc(t, l + 1);
    if (!c || !key)
        return NULL;
    memcpy(key, id, l + 1);
    if (table_add(ids, key, h, c) < 0) {
        t->oom = true;
        return NULL;
    }
    return c;
}

/* ---- REFERENCES (RFC 5256 §3) ---- */

static int references(struct imap_thread *t, const struct imap_thread_msg *msgs, size_t n)
{
    struct table ids = {0};
    char(*refs)[MSGID_MAX + 1] = malloc(IMAP_THREAD_MAX_REFS * sizeof(*refs));
    char *id = malloc(MSGID_MAX + 1);
    struct cont **tmp = NULL, **order = NULL, **snap = NULL;
    struct table subjects = {0};
    int rc = -1;
    if (!refs || !id)
        goto out;

    /* (1) link messages by their references */
    for (size_t i = 0; i < n; i++) {
        const struct imap_thread_msg *m = &msgs[i];
        struct cont *c = NULL;
        size_t pos = 0;
        int v = -1;
        while (m->message_id && (v = next_msgid(m->message_id, &pos, id)) >= 0 && v == 0)
            ;
        if (m->message_id && v == 1) {
            c = id_cont(t, &ids, id);
            if (!c)
                goto out;
            if (c->msg >= 0) /* a duplicate ID: the first message keeps it */
                c = NULL;
            else
                c->msg = (long)i;
        }
        if (!c && !(c = cont_new(t, (long)i)))
            goto out;
        /* References, else the first valid In-Reply-To ID; the last IMAP_THREAD_MAX_REFS */
        size_t nref = 0, total = 0;
        pos = 0;
        while (m->references && (v = next_msgid(m->references, &pos, id)) >= 0)
            if (v == 1) {
                memcpy(refs[total % IMAP_THREAD_MAX_REFS], id, strlen(id) + 1);
                total++;
            }
        if (total == 0) {
            pos = 0;
            while (m->in_reply_to && (v = next_msgid(m->in_reply_to, &pos, id)) >= 0)
                if (v == 1) {
                    memcpy(refs[0], id, strlen(id) + 1);
                    total = 1;
                    break;
                }
        }
        nref = total < IMAP_THREAD_MAX_REFS ? total : IMAP_THREAD_MAX_REFS;
        size_t first = total - nref;
        struct cont *prev = NULL;
        for (size_t k = 0; k < nref; k++) {
            struct cont *r = id_cont(t, &ids, refs[(first + k) % IMAP_THREAD_MAX_REFS]);
            if (!r)
                goto out;
            /* (1A) keep existing links; never make a loop */
            if (prev && !r->parent && !within(prev, r))
                append_child(prev, r);
            prev = r;
        }
        /* (1B) the last reference is the parent, replacing any earlier guess */
        unlink_cont(c);
        if (prev && !within(prev, c))
            append_child(prev, c);
    }

    /* (2) the parentless containers under one root */
    t->root = cont_new(t, -1);
    if (!t->root)
        goto out;
    for (struct block *b = t->blocks; b; b = b->next)
        for (size_t k = 0; k < b->used; k++) {
            struct cont *c = &b->c[k];
            if (c != t->root && !c->parent)
                append_child(t->root, c);
        }

    /* (3) prune dummies, children before parents */
    size_t total;
    if (!(order = preorder(t, &total)))
        goto out;
    for (size_t k = total; k-- > 1;) {
        struct cont *c = order[k];
        if (c->msg >= 0)
            continue;
        struct cont *p = c->parent;
        if (!c->first) {
            unlink_cont(c);
        } else if (p != t->root || c->first == c->last) {
            /* promote the children to c's level (to the root only when there is one) */
            while (c->first) {
                struct cont *ch = c->first;
                unlink_cont(ch);
                ch->parent = p;
                ch->prev = c->prev;
                ch->next = c;
                if (c->prev)
                    c->prev->next = ch;
                else
                    p->first = ch;
                c->prev = ch;
            }
            unlink_cont(c);
        }
    }
    free(order);
    order = NULL;

    /* (4) sort the threads by date (a dummy's children first, then by its first child) */
    size_t count = 0;
    for (struct block *b = t->blocks; b; b = b->next)
        count += b->used;
    if (!(tmp = malloc(count * sizeof(*tmp))))
        goto out;
    for (struct cont *c = t->root->first; c; c = c->next)
        if (c->msg < 0)
            sort_children(t, c, tmp);
    sort_children(t, t->root, tmp);

    /* (5) gather threads with one base subject */
    size_t nroots = 0;
    for (struct cont *c = t->root->first; c; c = c->next)
        nroots++;
    if (!(snap = malloc((nroots ? nroots : 1) * sizeof(*snap))))
        goto out;
    nroots = 0;
    for (struct cont *c = t->root->first; c; c = c->next)
        snap[nroots++] = c;
    /* (5B) one message per subject: prefer a dummy, then a message that is no reply */
    for (size_t k = 0; k < nroots; k++) {
        struct cont *c = snap[k];
        const struct cont *s = c->msg >= 0 ? c : c->first;
        const char *subj = t->info[s->msg].base;
        if (!subj[0])
            continue;
        uint64_t h;
        struct entry *e = table_find(&subjects, subj, true, &h);
        if (!e || !e->key) {
            if (table_add(&subjects, subj, h, c) < 0)
                goto out;
        } else if (e->c->msg >= 0 &&
                   (c->msg < 0 || (t->info[e->c->msg].reply && !t->info[c->msg].reply))) {
            e->c = c;
        }
    }
    /* (5C) merge each thread into the one in the table */
    for (size_t k = 0; k < nroots; k++) {
        struct cont *c = snap[k];
        if (c->parent != t->root)
            continue; /* already merged into another thread */
        const struct cont *s = c->msg >= 0 ? c : c->first;
        const char *subj = t->info[s->msg].base;
        if (!subj[0])
            continue;
        uint64_t h;
        struct entry *e = table_find(&subjects, subj, true, &h);
        if (!e || !e->key || e->c == c)
            continue;
        struct cont *o = e->c;
        if (o->msg < 0 && c->msg < 0) {
            while (c->first) {
                struct cont *ch = c->first;
                unlink_cont(ch);
                append_child(o, ch);
            }
            unlink_cont(c);
        } else if (o->msg < 0 || (c->msg >= 0 && t->info[c->msg].reply && !t->info[o->msg].reply)) {
            unlink_cont(c);
            append_child(o, c);
        } else {
            struct cont *d = cont_new(t, -1);
            if (!d)
                goto out;
            replace_cont(o, d);
            unlink_cont(c);
            append_child(d, o);
            append_child(d, c);
            e->c = d;
        }
    }

    /* (6) sort every set of siblings by date, the deepest first */
    if (!(order = preorder(t, &total)))
        goto out;
    for (size_t k = total; k-- > 0;)
        if (order[k]->first && order[k]->first != order[k]->last) {
            size_t need = 0;
            for (struct cont *c = order[k]->first; c; c = c->next)
                need++;
            if (need > count) { /* new dummies may have grown the tree */
                struct cont **nt = realloc(tmp, need * sizeof(*nt));
                if (!nt)
                    goto out;
                tmp = nt;
                count = need;
            }
            sort_children(t, order[k], tmp);
        }
    rc = 0;
out:
    if (rc < 0)
        t->oom = true;
    free(ids.e);
    free(subjects.e);
    free(refs);
    free(id);
    free(tmp);
    free(order);
    free(snap);
    return rc;
}

/* ---- ORDEREDSUBJECT (RFC 5256 §3) ---- */

static _Thread_local const struct msginfo *os_info;

static int cmp_subject_date(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    int c = imap_thread_subject_cmp(os_info[x].base, os_info[y].base);
    if (c)
        return c;
    if (os_info[x].date != os_info[y].date)
        return os_info[x].date < os_info[y].date ? -1 : 1;
    return x < y ? -1 : x > y;
}

static int ordered_subject(struct imap_thread *t, size_t n)
{
    size_t *idx = malloc((n ? n : 1) * sizeof(*idx));
    struct cont **tmp = malloc((n ? n : 1) * sizeof(*tmp));
    int rc = -1;
    if (!idx || !tmp)
        goto out;
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    /* sorted by base subject, then sent date: each run of one subject is a thread */
    os_info = t->info;
    qsort(idx, n, sizeof(*idx), cmp_subject_date);
    if (!(t->root = cont_new(t, -1)))
        goto out;
    struct cont *head = NULL;
    for (size_t k = 0; k < n; k++) {
        struct cont *c = cont_new(t, (long)idx[k]);
        if (!c)
            goto out;
        if (head && imap_thread_subject_cmp(t->info[head->msg].base, t->info[idx[k]].base) == 0) {
            append_child(head, c); /* the second and later messages: children of the first */
        } else {
            append_child(t->root, c);
            head = c;
        }
    }
    /* the threads by the sent date of their first message */
    sort_children(t, t->root, tmp);
    rc = 0;
out:
    free(idx);
    free(tmp);
    return rc;
}

/* ---- building ---- */

int imap_thread_build(enum imap_thread_alg alg, const struct imap_thread_msg *msgs, size_t n,
                      struct imap_thread **thread_r)
{
    *thread_r = NULL;
    if (n > IMAP_THREAD_MAX_MESSAGES)
        return -1;
    struct imap_thread *t = calloc(1, sizeof(*t));
    if (!t)
        return -1;
    t->info = calloc(n ? n : 1, sizeof(*t->info));
    if (!t->info)
        goto fail;
    t->ninfo = n;
    for (size_t i = 0; i < n; i++) {
        char *b = imap_thread_base_subject(msgs[i].subject, &t->info[i].reply);
        if (!b)
            goto fail;
        size_t l = strlen(b);
        t->info[i].base = arena_alloc(t, l + 1);
        if (t->info[i].base)
            memcpy(t->info[i].base, b, l + 1);
        free(b);
        if (!t->info[i].base)
            goto fail;
        t->info[i].date = msgs[i].date;
    }
    int rc = alg == IMAP_THREAD_REFERENCES ? references(t, msgs, n) : ordered_subject(t, n);
    if (rc < 0 || t->oom)
        goto fail;
    /* the public view */
    for (struct block *b = t->blocks; b; b = b->next)
        for (size_t k = 0; k < b->used; k++) {
            struct cont *c = &b->c[k];
            c->node.uid = c->msg >= 0 ? msgs[c->msg].uid : 0;
            c->node.child = c->first ? &c->first->node : NULL;
            c->node.next = c->next ? &c->next->node : NULL;
        }
    *thread_r = t;
    return 0;
fail:
    imap_thread_free(&t);
    return -1;
}

const struct imap_thread_node *imap_thread_roots(const struct imap_thread *t)
{
    return t && t->root ? t->root->node.child : NULL;
}

/* ---- the response ---- */

static void out_uid(struct imap_envelope_out *out, uint32_t uid,
                    uint32_t (*map)(uint32_t uid, void *ctx), void *ctx)
{
    char b[16];
    int n = snprintf(b, sizeof(b), "%u", (unsigned)(map ? map(uid, ctx) : uid));
    imap_envelope_out_add(out, b, (size_t)n);
}

/* RFC 5256 §5: thread-list = "(" (thread-members / thread-nested) ")"; thread-members =
 * nz-number *(SP nz-number) [SP thread-nested]; thread-nested = 2*thread-list. A node with one
 * child continues the members; with more, each child opens a nested thread-list. The stack
 * holds, for each open nested level, the next sibling still to write there. */
void imap_thread_format(const struct imap_thread *t, uint32_t (*map)(uint32_t uid, void *ctx),
                        void *ctx, struct imap_envelope_out *out)
{
    size_t cap = 64, depth = 0;
    const struct imap_thread_node **stack = malloc(cap * sizeof(*stack));
    if (!stack) {
        out->failed = true;
        return;
    }
    for (const struct imap_thread_node *th = imap_thread_roots(t); th; th = th->next) {
        imap_envelope_out_add(out, "(", 1);
        stack[depth++] = NULL; /* the thread itself: no siblings to follow */
        const struct imap_thread_node *c = th;
        while (depth > 0) {
            /* the members starting at c */
            for (;;) {
                bool dummy = c->uid == 0;
                if (!dummy)
                    out_uid(out, c->uid, map, ctx);
                if (!c->child)
                    break;
                if (!c->child->next) {
                    if (!dummy)
                        imap_envelope_out_add(out, " ", 1);
                    c = c->child;
                    continue;
                }
                if (depth == cap) {
                    const struct imap_thread_node **ns = realloc(stack, cap * 2 * sizeof(*ns));
                    if (!ns) {
                        free(stack);
                        out->failed = true;
                        return;
                    }
                    stack = ns;
                    cap *= 2;
                }
                imap_envelope_out_add(out, dummy ? "(" : " (", dummy ? 1 : 2);
                stack[depth++] = c->child->next;
                c = c->child;
            }
            /* close the item just written; go on with its next sibling, or close the level */
            for (;;) {
                imap_envelope_out_add(out, ")", 1);
                const struct imap_thread_node *sib = stack[depth - 1];
                if (sib) {
                    stack[depth - 1] = sib->next;
                    imap_envelope_out_add(out, "(", 1);
                    c = sib;
                    break;
                }
                if (--depth == 0)
                    break;
            }
        }
    }
    free(stack);
}
