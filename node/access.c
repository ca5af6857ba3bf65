/* IP access lists (grant/deny by client address) and the named-pattern table they
 * can reference.
 *
 * Parsing turns a spec into three kinds of entries, expanding [Pattern] references
 * in place as it goes:
 *   - IPv4 entries, each four inclusive octet ranges. Single addresses, '*' octets,
 *     lo-hi octets and IPv4 CIDR blocks all fit this shape exactly (a prefix fixes
 *     the leading octets, leaves a power-of-two range in one octet and '*' after it);
 *   - IPv6 entries, a masked address and a prefix length;
 *   - "any" entries ('*' alone).
 * Matching is a linear scan; lists are small (bounded by ACCESS_MAX_ENTRIES) and the
 * check runs once per accepted connection.
 *
 * Pattern expansion is recursive. A stack of the patterns being expanded detects
 * cycles and bounds nesting; a byte budget (ACCESS_MAX_EXPANSION) bounds the total
 * pattern text read, so a pattern referenced many times through a diamond of other
 * patterns cannot turn one parse into unbounded work even when it adds no entries. */
#include "node/access.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATTERN_BUCKETS 256
#define TOKEN_MAX 63 /* longest valid entry is an IPv6 address with a prefix (~50) */
#define QUOTE_MAX 48 /* bytes of a bad entry repeated in an error message */

struct v4_range {
    uint8_t lo[4];
    uint8_t hi[4];
};

struct v6_net {
    uint8_t addr[16]; /* bits after prefix are zero */
    unsigned prefix;
};

struct access_list {
    struct v4_range *v4;
    size_t n4, cap4;
    struct v6_net *v6;
    size_t n6, cap6;
    size_t nany;
};

struct pattern {
    struct pattern *next;
    char *name;
    char *spec;
    size_t spec_len;
};

struct access_patterns {
    struct pattern *buckets[PATTERN_BUCKETS];
    size_t count;
};

/* ---- small helpers ---------------------------------------------------------- */

/* ASCII only: names and keywords must not change meaning with the locale. */
static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static bool name_eq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (lower((unsigned char)*a) != lower((unsigned char)*b))
            return false;
    return *a == *b;
}

static unsigned name_hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) {
        h ^= (uint32_t)lower((unsigned char)*s);
        h *= 16777619u;
    }
    return h % PATTERN_BUCKETS;
}

static bool is_sep(char c)
{
    return c == ';' || c == ',' || c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' ||
           c == '\f';
}

/* Characters allowed inside a pattern name: printable ASCII minus the list syntax. */
static bool is_name_char(char c)
{
    return c >= 0x20 && c < 0x7f && c != '[' && c != ']' && c != ';' && c != ',';
}

static bool valid_name(const char *s, size_t n)
{
    if (n == 0 || n > ACCESS_MAX_NAME || s[0] == ' ' || s[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_name_char(s[i]))
            return false;
    return true;
}

/* ---- pattern table ---------------------------------------------------------- */

struct access_patterns *access_patterns_new(void)
{
    return calloc(1, sizeof(struct access_patterns));
}

static const struct pattern *pattern_find(const struct access_patterns *p, const char *name)
{
    if (!p)
        return NULL;
    for (const struct pattern *e = p->buckets[name_hash(name)]; e; e = e->next)
        if (name_eq(e->name, name))
            return e;
    return NULL;
}

int access_patterns_set(struct access_patterns *p, const char *name, const char *spec)
{
    if (!p || !name || !spec)
        return -1;
    size_t name_len = strnlen(name, ACCESS_MAX_NAME + 1);
    size_t spec_len = strnlen(spec, ACCESS_MAX_SPEC + 1);
    if (!valid_name(name, name_len) || spec_len > ACCESS_MAX_SPEC)
        return -1;

    char *copy = malloc(spec_len + 1);
    if (!copy)
        return -1;
    memcpy(copy, spec, spec_len + 1);

    unsigned b = name_hash(name);
    for (struct pattern *e = p->buckets[b]; e; e = e->next) {
        if (name_eq(e->name, name)) {
            free(e->spec);
            e->spec = copy;
            e->spec_len = spec_len;
            return 0;
        }
    }
    if (p->count >= ACCESS_MAX_PATTERNS) {
        free(copy);
        return -1;
    }
    struct pattern *e = calloc(1, sizeof(*e));
    char *name_copy = strdup(name);
    if (!e || !name_copy) {
        free(e);
        free(name_copy);
        free(copy);
        return -1;
    }
    e->name = name_copy;
    e->spec = copy;
    e->spec_len = spec_len;
    e->next = p->buckets[b];
    p->buckets[b] = e;
    p->count++;
    return 0;
}

void access_patterns_free(struct access_patterns **pp)
{
    if (!pp || !*pp)
        return;
    struct access_patterns *p = *pp;
    for (size_t b = 0; b < PATTERN_BUCKETS; b++) {
        struct pattern *e = p->buckets[b];
        while (e) {
            struct pattern *next = e->next;
            free(e->name);
            free(e->spec);
            free(e);
            e = next;
        }
    }
    free(p);
    *pp = NULL;
}

/* ---- entry parsing ---------------------------------------------------------- */

/* Reads a decimal number of at most `max` from *sp, advancing it past the digits.
 * 0 ok, -1 no digit, -2 leading zero, -3 above max. */
static int parse_num(const char **sp, unsigned max, unsigned *v_r)
{
    const char *s = *sp;
    if (*s < '0' || *s > '9')
        return -1;
    if (s[0] == '0' && s[1] >= '0' && s[1] <= '9')
        return -2;
    unsigned v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        v = v * 10 + (unsigned)(*s - '0');
        if (v > max)
            return -3;
    }
    *sp = s;
    *v_r = v;
    return 0;
}

static const char *octet_reason(int rc)
{
    return rc == -2 ? "leading zero" : rc == -3 ? "octet out of range" : "octet expected";
}

/* The text after '/': a prefix length of at most max, and nothing else. */
static const char *parse_prefix(const char *s, unsigned max, unsigned *prefix_r)
{
    if (!*s)
        return "missing prefix length";
    int rc = parse_num(&s, max, prefix_r);
    if (rc == -2)
        return "leading zero";
    if (rc == -3)
        return "prefix length out of range";
    if (rc < 0 || *s)
        return "bad prefix length";
    return NULL;
}

/* Fills r from an IPv4 network address and prefix (0..32). */
static void v4_from_prefix(const uint8_t a[4], unsigned prefix, struct v4_range *r)
{
    for (unsigned i = 0; i < 4; i++) {
        unsigned bits = prefix > 8 * i ? prefix - 8 * i : 0;
        if (bits > 8)
            bits = 8;
        uint8_t mask = (uint8_t)(bits ? 0xffu << (8 - bits) : 0);
        r->lo[i] = a[i] & mask;
        r->hi[i] = (uint8_t)(r->lo[i] | (uint8_t)~mask);
    }
}

/* "a.b.c.d" where each octet is N, lo-hi or '*'. */
static const char *parse_v4_octets(const char *s, struct v4_range *r)
{
    for (int i = 0; i < 4; i++) {
        if (i > 0 && *s++ != '.')
            return "expected four octets";
        if (*s == '*') {
            r->lo[i] = 0;
            r->hi[i] = 255;
            s++;
            continue;
        }
        unsigned lo, hi;
        int rc = parse_num(&s, 255, &lo);
        if (rc < 0)
            return octet_reason(rc);
        hi = lo;
        if (*s == '-') {
            s++;
            if ((rc = parse_num(&s, 255, &hi)) < 0)
                return octet_reason(rc);
            if (lo > hi)
                return "range start above end";
        }
        r->lo[i] = (uint8_t)lo;
        r->hi[i] = (uint8_t)hi;
    }
    return *s ? "expected four octets" : NULL;
}

/* "a.b.c.d/n" */
static const char *parse_v4_cidr(const char *s, const char *slash, struct v4_range *r)
{
    uint8_t a[4];
    for (int i = 0; i < 4; i++) {
        if (i > 0 && *s++ != '.')
            return "expected four octets";
        unsigned v;
        int rc = parse_num(&s, 255, &v);
        if (rc < 0)
            return octet_reason(rc);
        a[i] = (uint8_t)v;
    }
    if (s != slash)
        return "expected four octets";
    unsigned prefix;
    const char *why = parse_prefix(slash + 1, 32, &prefix);
    if (why)
        return why;
    v4_from_prefix(a, prefix, r);
    return NULL;
}

/* An IPv6 address with an optional "/n". A v4-mapped network (prefix >= 96) comes
 * back as an IPv4 range and *is_v4_r set. */
static const char *parse_v6(const char *s, struct v6_net *n, struct v4_range *r, bool *is_v4_r)
{
    char buf[INET6_ADDRSTRLEN];
    const char *slash = strchr(s, '/');
    size_t len = slash ? (size_t)(slash - s) : strlen(s);
    if (len >= sizeof(buf))
        return "not an address";
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET6, buf, n->addr) != 1)
        return "not an address";

    unsigned prefix = 128;
    if (slash) {
        const char *why = parse_prefix(slash + 1, 128, &prefix);
        if (why)
            return why;
    }
    for (unsigned i = 0; i < 16; i++) {
        unsigned bits = prefix > 8 * i ? prefix - 8 * i : 0;
        if (bits > 8)
            bits = 8;
        n->addr[i] &= (uint8_t)(bits ? 0xffu << (8 - bits) : 0);
    }
    n->prefix = prefix;

    struct in6_addr a;
    memcpy(&a, n->addr, sizeof(a));
    if (prefix >= 96 && IN6_IS_ADDR_V4MAPPED(&a)) {
        v4_from_prefix(n->addr + 12, prefix - 96, r);
        *is_v4_r = true;
    } else {
        *is_v4_r = false;
    }
    return NULL;
}

/* ---- list building ---------------------------------------------------------- */

struct parse_ctx {
    const struct access_patterns *pats;
    struct access_list *list;
    const struct pattern *stack[ACCESS_MAX_DEPTH]; /* patterns being expanded */
    size_t depth;
    size_t expanded; /* bytes of pattern text read so far */
    char *err;
    size_t errlen;
};

static void set_err(struct parse_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_err(struct parse_ctx *c, const char *fmt, ...)
{
    if (!c->err || c->errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < c->errlen && c->depth > 0)
        snprintf(c->err + n, c->errlen - (size_t)n, " in [%s]", c->stack[c->depth - 1]->name);
}

/* Copies up to QUOTE_MAX bytes of s[0..n) into out (QUOTE_MAX + 4 bytes) for an
 * error message, with anything unprintable shown as '?' so the message stays one
 * line of text. */
static void quote(const char *s, size_t n, char *out)
{
    size_t k = n < QUOTE_MAX ? n : QUOTE_MAX;
    for (size_t i = 0; i < k; i++)
        out[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    if (k < n)
        memcpy(out + k, "...", 4);
    else
        out[k] = '\0';
}

static int bad_entry(struct parse_ctx *c, const char *tok, size_t n, const char *why)
{
    char q[QUOTE_MAX + 4];
    quote(tok, n, q);
    set_err(c, "bad entry '%s' (%s)", q, why);
    return -1;
}

static int room_for_one(struct parse_ctx *c)
{
    if (access_list_count(c->list) >= ACCESS_MAX_ENTRIES) {
        set_err(c, "more than %d entries", ACCESS_MAX_ENTRIES);
        return -1;
    }
    return 0;
}

/* Grows an entry array by doubling; the entry bound keeps sizes far from overflow. */
static int grow(void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 8;
    void *p = realloc(*arr, ncap * size);
    if (!p)
        return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

static int add_v4(struct parse_ctx *c, const struct v4_range *r)
{
    struct access_list *l = c->list;
    if (room_for_one(c) < 0)
        return -1;
    if (grow((void **)&l->v4, &l->cap4, l->n4, sizeof(*l->v4)) < 0) {
        set_err(c, "out of memory");
        return -1;
    }
    l->v4[l->n4++] = *r;
    return 0;
}

static int add_v6(struct parse_ctx *c, const struct v6_net *n)
{
    struct access_list *l = c->list;
    if (room_for_one(c) < 0)
        return -1;
    if (grow((void **)&l->v6, &l->cap6, l->n6, sizeof(*l->v6)) < 0) {
        set_err(c, "out of memory");
        return -1;
    }
    l->v6[l->n6++] = *n;
    return 0;
}

/* One address entry (not a pattern reference), tok[0..n) with no separators. */
static int parse_entry(struct parse_ctx *c, const char *tok, size_t n)
{
    if (n > TOKEN_MAX)
        return bad_entry(c, tok, n, "too long");
    char buf[TOKEN_MAX + 1];
    memcpy(buf, tok, n);
    buf[n] = '\0';

    if (strcmp(buf, "*") == 0) {
        if (room_for_one(c) < 0)
            return -1;
        c->list->nany++;
        return 0;
    }

    struct v4_range r;
    const char *why;
    if (strchr(buf, ':')) {
        struct v6_net net;
        bool is_v4 = false;
        if ((why = parse_v6(buf, &net, &r, &is_v4)) != NULL)
            return bad_entry(c, tok, n, why);
        return is_v4 ? add_v4(c, &r) : add_v6(c, &net);
    }
    if (strspn(buf, "0123456789.*-/") != n)
        return bad_entry(c, tok, n, "not an address");
    const char *slash = strchr(buf, '/');
    why = slash ? parse_v4_cidr(buf, slash, &r) : parse_v4_octets(buf, &r);
    if (why)
        return bad_entry(c, tok, n, why);
    return add_v4(c, &r);
}

static int parse_text(struct parse_ctx *c, const char *s, size_t len);

/* Expands [name]. */
static int expand(struct parse_ctx *c, const char *name, size_t n)
{
    char q[QUOTE_MAX + 4];
    quote(name, n, q);
    if (!valid_name(name, n)) {
        set_err(c, "bad pattern name [%s]", q);
        return -1;
    }
    char key[ACCESS_MAX_NAME + 1];
    memcpy(key, name, n);
    key[n] = '\0';

    const struct pattern *p = pattern_find(c->pats, key);
    if (!p) {
        set_err(c, "unknown pattern [%s]", q);
        return -1;
    }
    for (size_t i = 0; i < c->depth; i++) {
        if (c->stack[i] == p) {
            set_err(c, "pattern cycle at [%s]", p->name);
            return -1;
        }
    }
    if (c->depth == ACCESS_MAX_DEPTH) {
        set_err(c, "patterns nested deeper than %d at [%s]", ACCESS_MAX_DEPTH, p->name);
        return -1;
    }
    if (p->spec_len > ACCESS_MAX_EXPANSION - c->expanded) {
        set_err(c, "pattern expansion exceeds %u bytes at [%s]", ACCESS_MAX_EXPANSION, p->name);
        return -1;
    }
    c->expanded += p->spec_len;
    c->stack[c->depth++] = p;
    int rc = parse_text(c, p->spec, p->spec_len);
    if (rc == 0)
        c->depth--;
    return rc;
}

/* Splits s[0..len) into entries and adds each to the list. On error the depth is
 * left where the error happened, so messages can name the pattern. */
static int parse_text(struct parse_ctx *c, const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (is_sep(s[i])) {
            i++;
            continue;
        }
        size_t start = i;
        if (s[i] == '[') {
            size_t j = i + 1;
            while (j < len && is_name_char(s[j]))
                j++;
            if (j >= len || s[j] != ']') {
                char q[QUOTE_MAX + 4];
                quote(s + start, j - start, q);
                set_err(c, "unterminated pattern reference '%s'", q);
                return -1;
            }
            if (j + 1 < len && !is_sep(s[j + 1])) {
                size_t e = j + 1;
                while (e < len && !is_sep(s[e]))
                    e++;
                return bad_entry(c, s + start, e - start, "text after ']'");
            }
            if (expand(c, s + i + 1, j - i - 1) < 0)
                return -1;
            i = j + 1;
            continue;
        }
        while (i < len && !is_sep(s[i]))
            i++;
        if (parse_entry(c, s + start, i - start) < 0)
            return -1;
    }
    return 0;
}

struct access_list *access_list_parse(const char *spec, const struct access_patterns *pats,
                                      char *err, size_t errlen)
{
    struct parse_ctx c = {.pats = pats, .err = err, .errlen = errlen};
    if (err && errlen)
        err[0] = '\0';
    if (!spec) {
        set_err(&c, "no access list given");
        return NULL;
    }
    size_t len = strnlen(spec, ACCESS_MAX_SPEC + 1);
    if (len > ACCESS_MAX_SPEC) {
        set_err(&c, "access list longer than %d bytes", ACCESS_MAX_SPEC);
        return NULL;
    }
    c.list = calloc(1, sizeof(*c.list));
    if (!c.list) {
        set_err(&c, "out of memory");
        return NULL;
    }
    if (parse_text(&c, spec, len) < 0) {
        access_list_free(&c.list);
        return NULL;
    }
    return c.list;
}

/* ---- matching --------------------------------------------------------------- */

static bool match_v4(const struct access_list *l, const uint8_t a[4])
{
    for (size_t i = 0; i < l->n4; i++) {
        const struct v4_range *r = &l->v4[i];
        if (a[0] >= r->lo[0] && a[0] <= r->hi[0] && a[1] >= r->lo[1] && a[1] <= r->hi[1] &&
            a[2] >= r->lo[2] && a[2] <= r->hi[2] && a[3] >= r->lo[3] && a[3] <= r->hi[3])
            return true;
    }
    return false;
}

static bool match_v6(const struct access_list *l, const uint8_t a[16])
{
    for (size_t i = 0; i < l->n6; i++) {
        const struct v6_net *n = &l->v6[i];
        unsigned whole = n->prefix / 8, bits = n->prefix % 8;
        if (memcmp(a, n->addr, whole) != 0)
            continue;
        if (bits && (a[whole] & (uint8_t)(0xffu << (8 - bits))) != n->addr[whole])
            continue;
        return true;
    }
    return false;
}

bool access_list_match(const struct access_list *l, const struct sockaddr *addr)
{
    if (!l || !addr)
        return false;
    /* Copy out of the caller's sockaddr instead of casting: it may be any of the
     * sockaddr types, with the alignment of the smallest. */
    if (addr->sa_family == AF_INET) {
        struct sockaddr_in sin;
        memcpy(&sin, addr, sizeof(sin));
        uint8_t a[4];
        memcpy(a, &sin.sin_addr, 4);
        return l->nany > 0 || match_v4(l, a);
    }
    if (addr->sa_family == AF_INET6) {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, addr, sizeof(sin6));
        if (l->nany > 0)
            return true;
        if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr))
            return match_v4(l, sin6.sin6_addr.s6_addr + 12);
        return match_v6(l, sin6.sin6_addr.s6_addr);
    }
    return false;
}

size_t access_list_count(const struct access_list *l)
{
    return l ? l->n4 + l->n6 + l->nany : 0;
}

void access_list_free(struct access_list **lp)
{
    if (!lp || !*lp)
        return;
    free((*lp)->v4);
    free((*lp)->v6);
    free(*lp);
    *lp = NULL;
}

/* ---- modes ------------------------------------------------------------------ */

bool access_allows(enum access_mode mode, const struct access_list *l, const struct sockaddr *addr)
{
    switch (mode) {
    case ACCESS_OFF:
        return true;
    case ACCESS_GRANT:
        return access_list_match(l, addr);
    case ACCESS_DENY:
        return !access_list_match(l, addr);
    }
    return false;
}

int access_mode_parse(const char *s, enum access_mode *mode_r)
{
    if (!s || !mode_r)
        return -1;
    if (name_eq(s, "off"))
        *mode_r = ACCESS_OFF;
    else if (name_eq(s, "grant"))
        *mode_r = ACCESS_GRANT;
    else if (name_eq(s, "deny"))
        *mode_r = ACCESS_DENY;
    else
        return -1;
    return 0;
}
