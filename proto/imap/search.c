/* IMAP SEARCH / SORT / THREAD programs (see search.h).
 *
 * The parser is recursive descent over the argument tree the command reader built: one
 * function reads one search key at args[*i] and advances *i; a parenthesised list is a LIST
 * argument whose children are read the same way. The depth of that recursion is bounded by
 * IMAP_SEARCH_MAX_DEPTH (NOT and OR each add a level, so "NOT NOT NOT ..." cannot run deep
 * either) and the number of keys by IMAP_SEARCH_MAX_KEYS, whatever the client sends. */
#include "proto/imap/search.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/text/utf8.h"

struct pstate {
    const struct imap_search_context *ctx;
    struct imap_search_program *prog;
    char *err;
    size_t errlen;
    int rc; /* the first error's code */
};

__attribute__((format(printf, 3, 4))) static int perr(struct pstate *ps, int rc, const char *fmt,
                                                      ...)
{
    if (ps->rc == 0) {
        ps->rc = rc;
        if (ps->err && ps->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(ps->err, ps->errlen, fmt, ap);
            va_end(ap);
        }
    }
    return -1;
}

static void key_clear(struct imap_search_key *k)
{
    free(k->str);
    free(k->field);
    imap_seqset_free(&k->set);
    for (size_t i = 0; i < k->nchildren; i++)
        key_clear(&k->children[i]);
    free(k->children);
    memset(k, 0, sizeof(*k));
}

void imap_search_program_free(struct imap_search_program **prog)
{
    if (!prog || !*prog)
        return;
    key_clear(&(*prog)->root);
    free(*prog);
    *prog = NULL;
}

/* ---- dates ---- */

static bool leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian calendar, y >= 1): 365 a year plus one
 * for each leap year in between, then the days of the year. */
static int32_t days_from_civil(int y, int m, int d)
{
    static const int before[] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
    /* leap years in [1, y) and in [1, 1970) */
    int64_t ly = (y - 1) / 4 - (y - 1) / 100 + (y - 1) / 400;
    int64_t l1970 = 1969 / 4 - 1969 / 100 + 1969 / 400;
    int64_t days = (int64_t)(y - 1970) * 365 + (ly - l1970);
    days += before[m - 1] + (m > 2 && leap(y) ? 1 : 0) + (d - 1);
    return (int32_t)days;
}

int imap_search_parse_date(const char *s, int32_t *day_r)
{
    static const char *const months[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                         "jul", "aug", "sep", "oct", "nov", "dec"};
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    /* RFC 9051 §9: date-text = date-day "-" date-month "-" date-year; date-day = 1*2DIGIT;
     * date-year = 4DIGIT. */
    size_t i = 0;
    int day = 0;
    while (i < 2 && s[i] >= '0' && s[i] <= '9')
        day = day * 10 + (s[i++] - '0');
    if (i == 0 || s[i] != '-')
        return -1;
    i++;
    int mon = -1;
    for (int m = 0; m < 12; m++)
        if (strncasecmp(s + i, months[m], 3) == 0)
            mon = m;
    if (mon < 0 || s[i + 3] != '-')
        return -1;
    i += 4;
    int year = 0;
    for (int k = 0; k < 4; k++, i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        year = year * 10 + (s[i] - '0');
    }
    if (s[i] != '\0')
        return -1;
    int max = mdays[mon] + (mon == 1 && leap(year) ? 1 : 0);
    if (day < 1 || day > max || year < 1)
        return -1;
    *day_r = days_from_civil(year, mon + 1, day);
    return 0;
}

/* ---- key parsing ---- */

struct keyword_def {
    const char *name;
    enum {
        K_PLAIN,
        K_FLAG,
        K_NOTFLAG,
        K_STRING,
        K_DATE,
        K_NUMBER,
        K_NZNUMBER,
        K_KEYWORD,
        K_NOTKEYWORD,
        K_OTHER
    } kind;
    enum imap_search_op op;
    unsigned flag;
};

static const struct keyword_def keys[] = {
    {"ALL", K_PLAIN, IMAP_SEARCH_ALL, 0},
    {"ANSWERED", K_FLAG, IMAP_SEARCH_FLAG, IMAP_SEARCH_ANSWERED},
    {"BCC", K_STRING, IMAP_SEARCH_BCC, 0},
    {"BEFORE", K_DATE, IMAP_SEARCH_BEFORE, 0},
    {"BODY", K_STRING, IMAP_SEARCH_BODY, 0},
    {"CC", K_STRING, IMAP_SEARCH_CC, 0},
    {"DELETED", K_FLAG, IMAP_SEARCH_FLAG, IMAP_SEARCH_DELETED},
    {"DRAFT", K_FLAG, IMAP_SEARCH_FLAG, IMAP_SEARCH_DRAFT},
    {"FLAGGED", K_FLAG, IMAP_SEARCH_FLAG, IMAP_SEARCH_FLAGGED},
    {"FROM", K_STRING, IMAP_SEARCH_FROM, 0},
    {"HEADER", K_OTHER, IMAP_SEARCH_HEADER, 0},
    {"KEYWORD", K_KEYWORD, IMAP_SEARCH_KEYWORD, 0},
    {"LARGER", K_NUMBER, IMAP_SEARCH_LARGER, 0},
    {"MODSEQ", K_OTHER, IMAP_SEARCH_MODSEQ, 0},
    {"NEW", K_OTHER, IMAP_SEARCH_RECENT, 0},
    {"NOT", K_OTHER, IMAP_SEARCH_NOT, 0},
    {"OLD", K_OTHER, IMAP_SEARCH_RECENT, 0},
    {"OLDER", K_NZNUMBER, IMAP_SEARCH_OLDER, 0},
    {"ON", K_DATE, IMAP_SEARCH_ON, 0},
    {"OR", K_OTHER, IMAP_SEARCH_OR, 0},
    {"RECENT", K_PLAIN, IMAP_SEARCH_RECENT, 0},
    {"SAVEDATESUPPORTED", K_PLAIN, IMAP_SEARCH_ALL, 0}, /* RFC 8514 §4.3: every message has one */
    {"SAVEDBEFORE", K_DATE, IMAP_SEARCH_SAVEDBEFORE, 0},
    {"SAVEDON", K_DATE, IMAP_SEARCH_SAVEDON, 0},
    {"SAVEDSINCE", K_DATE, IMAP_SEARCH_SAVEDSINCE, 0},
    {"SEEN", K_FLAG, IMAP_SEARCH_FLAG, IMAP_SEARCH_SEEN},
    {"SENTBEFORE", K_DATE, IMAP_SEARCH_SENTBEFORE, 0},
    {"SENTON", K_DATE, IMAP_SEARCH_SENTON, 0},
    {"SENTSINCE", K_DATE, IMAP_SEARCH_SENTSINCE, 0},
    {"SINCE", K_DATE, IMAP_SEARCH_SINCE, 0},
    {"SMALLER", K_NUMBER, IMAP_SEARCH_SMALLER, 0},
    {"SUBJECT", K_STRING, IMAP_SEARCH_SUBJECT, 0},
    {"TEXT", K_STRING, IMAP_SEARCH_TEXT, 0},
    {"TO", K_STRING, IMAP_SEARCH_TO, 0},
    {"UID", K_OTHER, IMAP_SEARCH_UIDSET, 0},
    {"UNANSWERED", K_NOTFLAG, IMAP_SEARCH_FLAG, IMAP_SEARCH_ANSWERED},
    {"UNDELETED", K_NOTFLAG, IMAP_SEARCH_FLAG, IMAP_SEARCH_DELETED},
    {"UNDRAFT", K_NOTFLAG, IMAP_SEARCH_FLAG, IMAP_SEARCH_DRAFT},
    {"UNFLAGGED", K_NOTFLAG, IMAP_SEARCH_FLAG, IMAP_SEARCH_FLAGGED},
    {"UNKEYWORD", K_NOTKEYWORD, IMAP_SEARCH_KEYWORD, 0},
    {"UNSEEN", K_NOTFLAG, IMAP_SEARCH_FLAG, IMAP_SEARCH_SEEN},
    {"YOUNGER", K_NZNUMBER, IMAP_SEARCH_YOUNGER, 0},
};

static const struct keyword_def *find_key(const char *name)
{
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcasecmp(name, keys[i].name) == 0)
            return &keys[i];
    return NULL;
}

static unsigned system_flag(const char *name)
{
    static const struct {
        const char *name;
        unsigned bit;
    } map[] = {{"\\Seen", IMAP_SEARCH_SEEN},
               {"\\Answered", IMAP_SEARCH_ANSWERED},
               {"\\Flagged", IMAP_SEARCH_FLAGGED},
               {"\\Deleted", IMAP_SEARCH_DELETED},
               {"\\Draft", IMAP_SEARCH_DRAFT}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcasecmp(name, map[i].name) == 0)
            return map[i].bit;
    return 0;
}

/* Next argument, or an error naming what was expected. */
static const struct imap_arg *next_arg(struct pstate *ps, const struct imap_arg *args, size_t count,
                                       size_t *i, const char *what)
{
    if (*i >= count) {
        perr(ps, IMAP_SEARCH_EBAD, "missing %s", what);
        return NULL;
    }
    return &args[(*i)++];
}

/* An astring argument (RFC 9051 §9) holding valid UTF-8, copied. */
static char *string_arg(struct pstate *ps, const struct imap_arg *a, const char *what)
{
    const char *s = imap_arg_astring(a);
    if (!s) {
        perr(ps, IMAP_SEARCH_EBAD, "%s: string expected", what);
        return NULL;
    }
    if (a->len > IMAP_SEARCH_MAX_STRING) {
        perr(ps, IMAP_SEARCH_EBAD, "%s: string too long", what);
        return NULL;
    }
    if (memchr(s, '\0', a->len) || !utf8_check(s, a->len, 0)) {
        perr(ps, IMAP_SEARCH_EBAD, "%s: the string is not valid UTF-8", what);
        return NULL;
    }
    char *copy = strndup(s, a->len);
    if (!copy)
        perr(ps, IMAP_SEARCH_ENOMEM, "out of memory");
    return copy;
}

/* number / number64 (RFC 9051 §9: LARGER and SMALLER take number64, up to 2^63-1); nz: no 0. */
static int number_arg(struct pstate *ps, const struct imap_arg *a, bool nz, uint64_t *n_r,
                      const char *what)
{
    const char *s = imap_arg_atom(a);
    if (!s || !*s) {
        return perr(ps, IMAP_SEARCH_EBAD, "%s: number expected", what);
    }
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return perr(ps, IMAP_SEARCH_EBAD, "%s: number expected", what);
        if (v > (UINT64_C(9223372036854775807) - (uint64_t)(*p - '0')) / 10)
            return perr(ps, IMAP_SEARCH_EBAD, "%s: number too large", what);
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (nz && v == 0)
        return perr(ps, IMAP_SEARCH_EBAD, "%s: must not be 0", what);
    *n_r = v;
    return 0;
}

/* date = date-text / DQUOTE date-text DQUOTE */
static int date_arg(struct pstate *ps, const struct imap_arg *a, int32_t *day_r, const char *what)
{
    const char *s = a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_QUOTED ? a->str : NULL;
    if (!s || imap_search_parse_date(s, day_r) < 0)
        return perr(ps, IMAP_SEARCH_EBAD, "%s: date expected (d-Mon-yyyy)", what);
    return 0;
}

static int alloc_children(struct pstate *ps, struct imap_search_key *k, size_t n)
{
    k->children = calloc(n, sizeof(*k->children));
    if (!k->children)
        return perr(ps, IMAP_SEARCH_ENOMEM, "out of memory");
    k->nchildren = n;
    return 0;
}

/* k becomes NOT(k). */
static int negate(struct pstate *ps, struct imap_search_key *k)
{
    struct imap_search_key inner = *k;
    memset(k, 0, sizeof(*k));
    k->op = IMAP_SEARCH_NOT;
    if (alloc_children(ps, k, 1) < 0) {
        key_clear(&inner);
        return -1;
    }
    k->children[0] = inner;
    return 0;
}

static int seqset_arg(struct pstate *ps, const char *s, size_t len, bool uid,
                      struct imap_search_key *k)
{
    char e[128] = "";
    struct imap_seqset *set = NULL;
    if (imap_seqset_parse(s, len, uid ? ps->ctx->max_uid : ps->ctx->messages, 0, &set, e,
                          sizeof(e)) < 0) {
        if (strstr(e, "out of memory"))
            return perr(ps, IMAP_SEARCH_ENOMEM, "out of memory");
        return perr(ps, IMAP_SEARCH_EBAD, "invalid %s set: %s", uid ? "UID" : "sequence", e);
    }
    if (imap_seqset_is_saved(set)) {
        imap_seqset_free(&set);
        k->op = IMAP_SEARCH_SAVED;
        ps->prog->uses_saved = true;
        return 0;
    }
    k->op = uid ? IMAP_SEARCH_UIDSET : IMAP_SEARCH_SEQSET;
    k->set = set;
    if (!uid)
        ps->prog->uses_seq = true;
    return 0;
}

static int parse_key(struct pstate *ps, const struct imap_arg *args, size_t count, size_t *i,
                     unsigned depth, struct imap_search_key *k);

/* Keys args[0..count) into an AND node k. */
static int parse_list(struct pstate *ps, const struct imap_arg *args, size_t count, unsigned depth,
                      struct imap_search_key *k)
{
    k->op = IMAP_SEARCH_AND;
    if (count == 0)
        return perr(ps, IMAP_SEARCH_EBAD, "empty list of search keys");
    size_t cap = 0, i = 0;
    while (i < count) {
        if (k->nchildren == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            struct imap_search_key *c = realloc(k->children, ncap * sizeof(*c));
            if (!c)
                return perr(ps, IMAP_SEARCH_ENOMEM, "out of memory");
            k->children = c;
            cap = ncap;
        }
        struct imap_search_key *child = &k->children[k->nchildren];
        memset(child, 0, sizeof(*child));
        k->nchildren++; /* counted before parsing so a failure frees what was built */
        if (parse_key(ps, args, count, &i, depth, child) < 0)
            return -1;
    }
    return 0;
}

static int parse_key(struct pstate *ps, const struct imap_arg *args, size_t count, size_t *i,
                     unsigned depth, struct imap_search_key *k)
{
    if (depth >= IMAP_SEARCH_MAX_DEPTH)
        return perr(ps, IMAP_SEARCH_EBAD, "search keys nested too deeply");
    if (++ps->prog->nkeys > IMAP_SEARCH_MAX_KEYS)
        return perr(ps, IMAP_SEARCH_EBAD, "too many search keys");
    const struct imap_arg *a = next_arg(ps, args, count, i, "search key");
    if (!a)
        return -1;
    if (a->type == IMAP_ARG_LIST)
        return parse_list(ps, a->list, a->count, depth + 1, k);
    const char *name = imap_arg_atom(a);
    if (!name || a->type == IMAP_ARG_NIL)
        return perr(ps, IMAP_SEARCH_EBAD, "search key expected");
    /* sequence-set / "$" (RFC 9051 §6.4.4, RFC 5182 §2.1) */
    if ((name[0] >= '0' && name[0] <= '9') || name[0] == '*' || name[0] == '$')
        return seqset_arg(ps, name, a->len, false, k);
    const struct keyword_def *d = find_key(name);
    if (!d)
        return perr(ps, IMAP_SEARCH_EBAD, "unknown search key %.40s", name);
    k->op = d->op;
    const struct imap_arg *v;
    switch (d->kind) {
    case K_PLAIN:
        return 0;
    case K_FLAG:
    case K_NOTFLAG:
        k->flag = d->flag;
        return d->kind == K_NOTFLAG ? negate(ps, k) : 0;
    case K_STRING:
        if (!(v = next_arg(ps, args, count, i, d->name)) || !(k->str = string_arg(ps, v, d->name)))
            return -1;
        return 0;
    case K_DATE:
        if (!(v = next_arg(ps, args, count, i, d->name)))
            return -1;
        return date_arg(ps, v, &k->day, d->name);
    case K_NUMBER:
    case K_NZNUMBER:
        if (!(v = next_arg(ps, args, count, i, d->name)))
            return -1;
        return number_arg(ps, v, d->kind == K_NZNUMBER, &k->number, d->name);
    case K_KEYWORD:
    case K_NOTKEYWORD: {
        /* flag-keyword = atom (RFC 9051 §9); a system flag name is taken for that flag */
        if (!(v = next_arg(ps, args, count, i, d->name)))
            return -1;
        const char *kw = imap_arg_atom(v);
        if (!kw)
            return perr(ps, IMAP_SEARCH_EBAD, "%s: flag keyword expected", d->name);
        unsigned bit = kw[0] == '\\' ? system_flag(kw) : 0;
        if (kw[0] == '\\' && !bit)
            return perr(ps, IMAP_SEARCH_EBAD, "%s: not a keyword: %.40s", d->name, kw);
        if (strpbrk(kw, "()[]{%*\"") || v->len > IMAP_SEARCH_MAX_STRING)
            return perr(ps, IMAP_SEARCH_EBAD, "%s: not a keyword", d->name);
        if (bit) {
            k->op = IMAP_SEARCH_FLAG;
            k->flag = bit;
        } else if (!(k->str = strdup(kw))) {
            return perr(ps, IMAP_SEARCH_ENOMEM, "out of memory");
        }
        return d->kind == K_NOTKEYWORD ? negate(ps, k) : 0;
    }
    case K_OTHER:
        break;
    }
    if (strcasecmp(d->name, "NOT") == 0) {
        if (alloc_children(ps, k, 1) < 0)
            return -1;
        return parse_key(ps, args, count, i, depth + 1, &k->children[0]);
    }
    if (strcasecmp(d->name, "OR") == 0) {
        if (alloc_children(ps, k, 2) < 0 ||
            parse_key(ps, args, count, i, depth + 1, &k->children[0]) < 0)
            return -1;
        return parse_key(ps, args, count, i, depth + 1, &k->children[1]);
    }
    if (strcasecmp(d->name, "UID") == 0) {
        if (!(v = next_arg(ps, args, count, i, "UID set")))
            return -1;
        const char *s = imap_arg_atom(v);
        if (!s || v->type == IMAP_ARG_NIL)
            return perr(ps, IMAP_SEARCH_EBAD, "UID set expected");
        return seqset_arg(ps, s, v->len, true, k);
    }
    if (strcasecmp(d->name, "HEADER") == 0) {
        /* header-fld-name = astring; RFC 5322 §3.6.8: printable ASCII but ':' */
        if (!(v = next_arg(ps, args, count, i, "header name")) ||
            !(k->field = string_arg(ps, v, "HEADER")))
            return -1;
        if (!k->field[0])
            return perr(ps, IMAP_SEARCH_EBAD, "HEADER: empty field name");
        for (const char *p = k->field; *p; p++)
            if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == ':')
                return perr(ps, IMAP_SEARCH_EBAD, "HEADER: invalid field name");
        if (!(v = next_arg(ps, args, count, i, "HEADER value")) ||
            !(k->str = string_arg(ps, v, "HEADER")))
            return -1;
        return 0;
    }
    if (strcasecmp(d->name, "MODSEQ") == 0) {
        /* RFC 7162 §3.1.5: "MODSEQ" [SP entry-name SP entry-type-req] SP mod-sequence-valzer;
         * entry-name is a quoted "/flags/<flag>", entry-type-req "priv" / "shared" / "all". */
        if (!(v = next_arg(ps, args, count, i, "MODSEQ value")))
            return -1;
        if (v->type == IMAP_ARG_QUOTED || v->type == IMAP_ARG_LITERAL) {
            if (strncasecmp(v->str, "/flags/", 7) != 0 || v->len == 7)
                return perr(ps, IMAP_SEARCH_EBAD, "MODSEQ: invalid entry name");
            const struct imap_arg *t = next_arg(ps, args, count, i, "MODSEQ entry type");
            const char *ts = t ? imap_arg_atom(t) : NULL;
            if (!ts ||
                (strcasecmp(ts, "priv") && strcasecmp(ts, "shared") && strcasecmp(ts, "all")))
                return perr(ps, IMAP_SEARCH_EBAD, "MODSEQ: entry type expected");
            if (!(v = next_arg(ps, args, count, i, "MODSEQ value")))
                return -1;
        }
        ps->prog->modseq = true;
        return number_arg(ps, v, false, &k->number, "MODSEQ");
    }
    if (strcasecmp(d->name, "NEW") == 0) {
        /* RFC 3501 §6.4.4: NEW = RECENT UNSEEN */
        k->op = IMAP_SEARCH_AND;
        if (alloc_children(ps, k, 2) < 0)
            return -1;
        k->children[0].op = IMAP_SEARCH_RECENT;
        k->children[1].op = IMAP_SEARCH_FLAG;
        k->children[1].flag = IMAP_SEARCH_SEEN;
        return negate(ps, &k->children[1]);
    }
    /* OLD = NOT RECENT */
    return negate(ps, k);
}

/* ---- command arguments ---- */

static bool charset_ok(const char *cs)
{
    return strcasecmp(cs, "UTF-8") == 0 || strcasecmp(cs, "US-ASCII") == 0;
}

static int charset_arg(struct pstate *ps, const struct imap_arg *a)
{
    /* charset = atom / quoted (RFC 9051 §9) */
    const char *cs = a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_QUOTED ? a->str : NULL;
    if (!cs)
        return perr(ps, IMAP_SEARCH_EBAD, "charset expected");
    if (!charset_ok(cs))
        return perr(ps, IMAP_SEARCH_EBADCHARSET, "charset not supported");
    return 0;
}

/* RFC 4731 §3.1 / RFC 4466 §2.6: "RETURN" SP "(" [search-return-opt *(SP search-return-opt)] ")" */
static int return_arg(struct pstate *ps, const struct imap_arg *a)
{
    size_t n;
    const struct imap_arg *l = imap_arg_list(a, &n);
    if (!l && !(a && a->type == IMAP_ARG_LIST))
        return perr(ps, IMAP_SEARCH_EBAD, "RETURN: list of options expected");
    static const struct {
        const char *name;
        unsigned bit;
    } opts[] = {{"MIN", IMAP_SEARCH_RET_MIN},
                {"MAX", IMAP_SEARCH_RET_MAX},
                {"ALL", IMAP_SEARCH_RET_ALL},
                {"COUNT", IMAP_SEARCH_RET_COUNT},
                {"SAVE", IMAP_SEARCH_RET_SAVE}};
    ps->prog->esearch = true;
    for (size_t k = 0; k < n; k++) {
        const char *o = imap_arg_atom(&l[k]);
        unsigned bit = 0;
        for (size_t j = 0; o && j < sizeof(opts) / sizeof(opts[0]); j++)
            if (strcasecmp(o, opts[j].name) == 0)
                bit = opts[j].bit;
        if (!bit)
            return perr(ps, IMAP_SEARCH_EBAD, "RETURN: unknown option");
        ps->prog->ret |= bit;
    }
    if (ps->prog->ret == 0) /* RFC 4731 §3.1: RETURN () means ALL */
        ps->prog->ret = IMAP_SEARCH_RET_ALL;
    return 0;
}

static int sort_arg(struct pstate *ps, const struct imap_arg *a)
{
    size_t n;
    const struct imap_arg *l = imap_arg_list(a, &n);
    if (!l || n == 0)
        return perr(ps, IMAP_SEARCH_EBAD, "sort criteria expected");
    static const struct {
        const char *name;
        enum imap_sort_key key;
    } names[] = {{"ARRIVAL", IMAP_SORT_ARRIVAL},
                 {"CC", IMAP_SORT_CC},
                 {"DATE", IMAP_SORT_DATE},
                 {"FROM", IMAP_SORT_FROM},
                 {"SIZE", IMAP_SORT_SIZE},
                 {"SUBJECT", IMAP_SORT_SUBJECT},
                 {"TO", IMAP_SORT_TO},
                 {"DISPLAYFROM", IMAP_SORT_DISPLAYFROM},
                 {"DISPLAYTO", IMAP_SORT_DISPLAYTO}};
    bool reverse = false;
    for (size_t k = 0; k < n; k++) {
        const char *s = imap_arg_atom(&l[k]);
        if (!s)
            return perr(ps, IMAP_SEARCH_EBAD, "sort criterion expected");
        if (strcasecmp(s, "REVERSE") == 0) {
            if (reverse)
                return perr(ps, IMAP_SEARCH_EBAD, "REVERSE REVERSE");
            reverse = true;
            continue;
        }
        size_t j = 0;
        while (j < sizeof(names) / sizeof(names[0]) && strcasecmp(s, names[j].name) != 0)
            j++;
        if (j == sizeof(names) / sizeof(names[0]))
            return perr(ps, IMAP_SEARCH_EBAD, "unknown sort criterion %.40s", s);
        if (ps->prog->nsort == IMAP_SEARCH_MAX_SORT)
            return perr(ps, IMAP_SEARCH_EBAD, "too many sort criteria");
        ps->prog->sort[ps->prog->nsort].key = names[j].key;
        ps->prog->sort[ps->prog->nsort].reverse = reverse;
        ps->prog->nsort++;
        reverse = false;
    }
    if (reverse) /* RFC 5256 §5: sort-criterion = ["REVERSE" SP] sort-key */
        return perr(ps, IMAP_SEARCH_EBAD, "REVERSE without a sort key");
    return 0;
}

int imap_search_parse(enum imap_search_command command, const struct imap_arg *args, size_t count,
                      const struct imap_search_context *ctx, struct imap_search_program **prog_r,
                      char *err, size_t errlen)
{
    *prog_r = NULL;
    if (err && errlen)
        err[0] = '\0';
    struct pstate ps = {.ctx = ctx, .err = err, .errlen = errlen};
    ps.prog = calloc(1, sizeof(*ps.prog));
    if (!ps.prog) {
        perr(&ps, IMAP_SEARCH_ENOMEM, "out of memory");
        return ps.rc;
    }
    ps.prog->command = command;
    ps.prog->root.op = IMAP_SEARCH_AND;
    size_t i = 0;
    const char *s;
    if (command == IMAP_SEARCH_CMD_SEARCH) {
        /* RFC 4466 §2.6: search = "SEARCH" [search-return-opts] SP search-program;
         * search-program = ["CHARSET" SP charset SP] search-key *(SP search-key) */
        if (i < count && (s = imap_arg_atom(&args[i])) && strcasecmp(s, "RETURN") == 0 &&
            args[i].type == IMAP_ARG_ATOM) {
            i++;
            if (return_arg(&ps, i < count ? &args[i] : NULL) < 0)
                goto fail;
            i++;
        }
        if (i < count && (s = imap_arg_atom(&args[i])) && strcasecmp(s, "CHARSET") == 0 &&
            args[i].type == IMAP_ARG_ATOM) {
            i++;
            if (i >= count) {
                perr(&ps, IMAP_SEARCH_EBAD, "charset expected");
                goto fail;
            }
            if (charset_arg(&ps, &args[i++]) < 0)
                goto fail;
        }
    } else {
        /* RFC 5256 §5: sort = "SORT" SP sort-criteria SP search-criteria;
         * thread = "THREAD" SP thread-alg SP search-criteria; search-criteria = charset
         * 1*(SP search-key) */
        if (i >= count) {
            perr(&ps, IMAP_SEARCH_EBAD,
                 command == IMAP_SEARCH_CMD_SORT ? "sort criteria expected" : "algorithm expected");
            goto fail;
        }
        if (command == IMAP_SEARCH_CMD_SORT) {
            if (sort_arg(&ps, &args[i++]) < 0)
                goto fail;
        } else {
            s = imap_arg_atom(&args[i++]);
            if (s && strcasecmp(s, "ORDEREDSUBJECT") == 0) {
                ps.prog->thread = IMAP_THREAD_ORDEREDSUBJECT;
            } else if (s && strcasecmp(s, "REFERENCES") == 0) {
                ps.prog->thread = IMAP_THREAD_REFERENCES;
            } else {
                perr(&ps, IMAP_SEARCH_EBAD, "unknown threading algorithm");
                goto fail;
            }
        }
        if (i >= count) {
            perr(&ps, IMAP_SEARCH_EBAD, "charset expected");
            goto fail;
        }
        if (charset_arg(&ps, &args[i++]) < 0)
            goto fail;
    }
    if (i >= count) {
        perr(&ps, IMAP_SEARCH_EBAD, "search key expected");
        goto fail;
    }
    if (parse_list(&ps, args + i, count - i, 0, &ps.prog->root) < 0)
        goto fail;
    *prog_r = ps.prog;
    return 0;
fail:
    imap_search_program_free(&ps.prog);
    return ps.rc ? ps.rc : IMAP_SEARCH_EBAD;
}

/* ---- results ---- */

uint32_t imap_search_uid_to_seq(const uint32_t *uids, size_t n, uint32_t uid)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (uids[mid] < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && uids[lo] == uid && lo < UINT32_MAX ? (uint32_t)(lo + 1) : 0;
}

/* RFC 5182 §2.4: SAVE with MIN and/or MAX only keeps those. */
static bool save_minmax_only(const struct imap_search_program *prog)
{
    unsigned r = prog->ret;
    return (r & (IMAP_SEARCH_RET_MIN | IMAP_SEARCH_RET_MAX)) &&
           !(r & (IMAP_SEARCH_RET_ALL | IMAP_SEARCH_RET_COUNT));
}

int imap_search_save_result(const struct imap_search_program *prog, const uint32_t *nums, size_t n,
                            struct imap_seqset **saved_r)
{
    *saved_r = imap_seqset_new(SIZE_MAX);
    if (!*saved_r)
        return -1;
    if (n == 0)
        return 0;
    if (prog->esearch && save_minmax_only(prog)) {
        if (((prog->ret & IMAP_SEARCH_RET_MIN) && imap_seqset_add(*saved_r, nums[0]) < 0) ||
            ((prog->ret & IMAP_SEARCH_RET_MAX) && imap_seqset_add(*saved_r, nums[n - 1]) < 0))
            goto fail;
        return 0;
    }
    /* consecutive runs as ranges: ascending input makes every add an append */
    size_t start = 0;
    for (size_t k = 1; k <= n; k++) {
        if (k < n && nums[k] == nums[k - 1] + 1)
            continue;
        if (imap_seqset_add_range(*saved_r, nums[start], nums[k - 1]) < 0)
            goto fail;
        start = k;
    }
    return 0;
fail:
    imap_seqset_free(saved_r);
    return -1;
}

static void out_num(struct imap_envelope_out *out, const char *prefix, uint64_t v)
{
    char b[32];
    int len = snprintf(b, sizeof(b), "%s%" PRIu64, prefix, v);
    imap_envelope_out_add(out, b, (size_t)len);
}

void imap_search_format(const struct imap_search_program *prog, const char *tag, bool uid,
                        bool force_esearch, const uint32_t *nums, size_t n, uint64_t count,
                        long long highest_modseq, struct imap_envelope_out *out)
{
    bool modseq = prog->modseq && n > 0 && highest_modseq > 0;
    if (!prog->esearch && !force_esearch) {
        imap_envelope_out_add(out, "* SEARCH", 8);
        for (size_t k = 0; k < n; k++)
            out_num(out, " ", nums[k]);
        if (modseq) { /* RFC 7162 §3.1.5 */
            out_num(out, " (MODSEQ ", (uint64_t)highest_modseq);
            imap_envelope_out_add(out, ")", 1);
        }
        imap_envelope_out_add(out, "\r\n", 2);
        return;
    }
    unsigned ret = prog->esearch ? prog->ret : IMAP_SEARCH_RET_ALL;
    if (ret == IMAP_SEARCH_RET_SAVE) /* RFC 5182 §2.4: no ESEARCH for SAVE alone */
        return;
    imap_envelope_out_add(out, "* ESEARCH (TAG ", 15);
    imap_envelope_out_string(out, tag, strlen(tag));
    imap_envelope_out_add(out, ")", 1);
    if (uid)
        imap_envelope_out_add(out, " UID", 4);
    /* RFC 4731 §3.1: MIN, MAX and ALL are left out when nothing matched, COUNT never */
    if ((ret & IMAP_SEARCH_RET_MIN) && n > 0)
        out_num(out, " MIN ", nums[0]);
    if ((ret & IMAP_SEARCH_RET_MAX) && n > 0)
        out_num(out, " MAX ", nums[n - 1]);
    if ((ret & IMAP_SEARCH_RET_ALL) && n > 0) {
        imap_envelope_out_add(out, " ALL ", 5);
        size_t start = 0;
        for (size_t k = 1; k <= n; k++) {
            if (k < n && nums[k] == nums[k - 1] + 1)
                continue;
            out_num(out, start ? "," : "", nums[start]);
            if (k - 1 > start)
                out_num(out, ":", nums[k - 1]);
            start = k;
        }
    }
    if (ret & IMAP_SEARCH_RET_COUNT)
        out_num(out, " COUNT ", count);
    if (modseq) /* RFC 4731 §3.2 */
        out_num(out, " MODSEQ ", (uint64_t)highest_modseq);
    imap_envelope_out_add(out, "\r\n", 2);
}

void imap_search_format_sort(const struct imap_search_program *prog, const uint32_t *nums, size_t n,
                             long long highest_modseq, struct imap_envelope_out *out)
{
    imap_envelope_out_add(out, "* SORT", 6);
    for (size_t k = 0; k < n; k++)
        out_num(out, " ", nums[k]);
    if (prog->modseq && n > 0 && highest_modseq > 0) {
        out_num(out, " (MODSEQ ", (uint64_t)highest_modseq);
        imap_envelope_out_add(out, ")", 1);
    }
    imap_envelope_out_add(out, "\r\n", 2);
}
