/* The directory commands of the vendor-compatible admin XML API (see
 * vendorapi.h; the mapping of Floe's directory onto the vendor's types,
 * states and properties is in docs/VENDORAPI.md).
 *
 * They run on a worker inside vapi_work() and read the directory through
 * storage/ only. Scope: a server administrator sees everything; a domain
 * administrator the domains it administers (storage/domainadmin.h); any
 * other account only itself (getmyproperties). Anything out of scope is
 * answered as if it did not exist (domain_invalid, account_invalid), so the
 * answers reveal nothing about other domains.
 *
 * Listings stream their rows from storage/dirview.h and write the page asked
 * for (offset, count) straight into the answer while counting every match for
 * <overallcount>, so memory stays bounded by the page, not the directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "node/http/vendorapi.h"
#include "proto/vendorapi/values.h"
#include "storage/aliases.h"
#include "storage/dirview.h"
#include "storage/domainadmin.h"
#include "storage/groups.h"
#include "storage/policy.h"
#include "storage/quota.h"

/* Property rights (propertyright): 0 none, 1 read, 2 read and write. The
 * vendor's admin console shows 2 for administrators; computed properties are
 * read-only everywhere. */
#define RIGHT_READ 1
#define RIGHT_WRITE 2

/* Largest offset/count taken from a request. */
#define PAGE_MAX 100000000LL
/* The longest joined string property (aliases, groups, members). */
#define JOINED_MAX (8u * 1024 * 1024)

/* ---- a small growable string ---- */

struct strbuf {
    char *p;
    size_t len, cap;
    bool failed;
};

static void sb_add(struct strbuf *b, const char *s)
{
    size_t n = strlen(s);
    if (b->failed || n > JOINED_MAX - b->len) {
        b->failed = true;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (q == NULL) {
            b->failed = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

static const char *sb_str(const struct strbuf *b)
{
    return b->p && !b->failed ? b->p : "";
}

/* A list built as ";a;b": its text without the first ';' ("" when it failed). */
static const char *sb_list(const struct strbuf *b)
{
    const char *s = sb_str(b);
    return *s == ';' ? s + 1 : s;
}

static void sb_free(struct strbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- helpers ---- */

static const char *domain_of(const char *address)
{
    const char *at = strrchr(address, '@');
    return at ? at + 1 : "";
}

/* Copies the local part of address into out. */
static void local_of(const char *address, char out[DIR_LOCAL_PART_MAX + 1])
{
    const char *at = strrchr(address, '@');
    size_t n = at ? (size_t)(at - address) : strlen(address);
    if (n > DIR_LOCAL_PART_MAX)
        n = DIR_LOCAL_PART_MAX;
    memcpy(out, address, n);
    out[n] = '\0';
}

/* The paging parameters: offset (default 0) and count (0 or missing: all). */
static void paging(const struct vapi_request *req, long long *offset_r, long long *count_r)
{
    char v[32];
    *offset_r = 0;
    *count_r = 0;
    if (vapi_request_text(req, "offset", v, sizeof v))
        (void)vapi_number_parse(v, PAGE_MAX, offset_r);
    if (vapi_request_text(req, "count", v, sizeof v))
        (void)vapi_number_parse(v, PAGE_MAX, count_r);
}

/* The name mask (filter/namemask, default "*") and type mask (filter/typemask,
 * -1 when absent or not a number). */
static void filter(const struct vapi_request *req, char *mask, size_t masklen, long long *type_r)
{
    char v[32];
    if (!vapi_request_text(req, "filter/namemask", mask, masklen) || mask[0] == '\0')
        snprintf(mask, masklen, "*");
    *type_r = -1;
    if (vapi_request_text(req, "filter/typemask", v, sizeof v) && v[0] != '\0' &&
        vapi_number_parse(v, 1000, type_r) != 0)
        *type_r = -1;
}

/* Reads <domainstr> into domain. true when it is there and not empty; else
 * sets the error: domain_parameter_empty, or domain_invalid for a name too
 * long to be any domain. */
static bool domain_param(struct vapi_call *call, char domain[DIR_DOMAIN_MAX + 2])
{
    if (vapi_request_text(call->req, "domainstr", domain, DIR_DOMAIN_MAX + 2) && domain[0] != '\0')
        return true;
    const struct vapi_node *n = vapi_request_node(call->req, "domainstr");
    call->error =
        n != NULL && n->text_len > DIR_DOMAIN_MAX ? "domain_invalid" : "domain_parameter_empty";
    return false;
}

/* Whether the session may see domain: 1 yes, 0 no, -1 database error. */
static int may_domain(struct vapi_call *call, const char *domain)
{
    if (call->level == VAPI_ADMIN_NONE)
        return 0;
    return dir_admin_may_domain(call->db, call->who, domain, call->log, sizeof call->log);
}

/* Finds the account an address names (its own address, through a domain alias
 * too, or an alias of it; never the catch-all) within the session's scope.
 * 0 with *a_r, 1 no such account in scope, -1 database error. */
static int find_account(struct vapi_call *call, const char *address, struct dir_account *a_r)
{
    int rc = dir_account_find(call->db, address, a_r, call->log, sizeof call->log);
    if (rc == DIR_ENOTFOUND) {
        struct dir_target t;
        rc = dir_resolve(call->db, address, &t, call->log, sizeof call->log);
        if (rc == 0 && t.via == DIR_VIA_CATCHALL)
            rc = DIR_ENOTFOUND;
        if (rc == 0)
            *a_r = t.account;
    }
    if (rc == DIR_ENOTFOUND)
        return 1;
    if (rc != 0)
        return -1;
    if (a_r->id == call->who->id)
        return 0;
    int may = may_domain(call, domain_of(a_r->address));
    return may < 0 ? -1 : may ? 0 : 1;
}

/* ---- getdomainsinfolist ---- */

struct domain_page {
    struct vapi_call *call;
    char mask[256];
    long long type, offset, count, matched, written;
};

static int domain_item(const struct dir_domain_info *d, void *ctx)
{
    struct domain_page *pg = ctx;
    int type = d->alias_of[0] ? VAPI_DOMAIN_ALIAS : VAPI_DOMAIN_STANDARD;
    if (pg->type >= 0 && type != pg->type)
        return 0;
    if (!vapi_glob_match(pg->mask, d->name) && !vapi_glob_match(pg->mask, d->description))
        return 0;
    if (pg->matched++ < pg->offset || (pg->count > 0 && pg->written >= pg->count))
        return 0;
    struct vapi_out *o = pg->call->out;
    vapi_out_open(o, "item");
    vapi_out_text(o, "name", d->name);
    vapi_out_text(o, "desc", d->description);
    vapi_out_int(o, "domaintype", type);
    vapi_out_int(o, "accountcount", d->accounts);
    vapi_out_close(o, "item");
    pg->written++;
    return vapi_out_failed(o);
}

int vapi_cmd_getdomainsinfolist(struct vapi_call *call)
{
    struct domain_page pg = {.call = call};
    filter(call->req, pg.mask, sizeof pg.mask, &pg.type);
    paging(call->req, &pg.offset, &pg.count);
    vapi_call_begin(call);
    vapi_out_open(call->out, "result");
    /* "the domains available in the session": all for a server administrator, its own
     * for a domain administrator, none for anybody else */
    if (call->level != VAPI_ADMIN_NONE &&
        dir_view_domains(call->db, call->level == VAPI_ADMIN_SERVER ? 0 : call->who->id,
                         domain_item, &pg, call->log, sizeof call->log) != 0)
        return -1;
    vapi_out_int(call->out, "offset", pg.offset);
    vapi_out_int(call->out, "overallcount", pg.matched);
    vapi_out_close(call->out, "result");
    return 0;
}

/* ---- getaccountsinfolist ---- */

struct account_page {
    struct vapi_call *call;
    char mask[256];
    long long type, offset, count, matched, written;
};

static int admin_level(const struct dir_view_account *v)
{
    return v->a.is_admin     ? VAPI_ADMIN_SERVER
           : v->domain_admin ? VAPI_ADMIN_DOMAIN
                             : VAPI_ADMIN_NONE;
}

static int account_item(const struct dir_view_account *v, void *ctx)
{
    struct account_page *pg = ctx;
    int type = vapi_account_type(v->a.kind);
    if (pg->type >= 0 && type != pg->type)
        return 0;
    char local[DIR_LOCAL_PART_MAX + 1];
    local_of(v->a.address, local);
    /* the mask applies to the login (local part), the address and the display name */
    if (!vapi_glob_match(pg->mask, local) && !vapi_glob_match(pg->mask, v->a.address) &&
        !vapi_glob_match(pg->mask, v->a.full_name))
        return 0;
    if (pg->matched++ < pg->offset || (pg->count > 0 && pg->written >= pg->count))
        return 0;
    struct vapi_out *o = pg->call->out;
    vapi_out_open(o, "item");
    /* an account without a full name shows its local part, as a display name must not
     * be empty in the clients' user lists */
    vapi_out_text(o, "name", v->a.full_name[0] ? v->a.full_name : local);
    vapi_out_text(o, "email", v->a.address);
    vapi_out_text(o, "displayemail", v->a.address);
    vapi_out_int(o, "accounttype", type);
    vapi_out_open(o, "accountstate");
    vapi_out_text(o, "classname", "TAccountState");
    vapi_out_int(o, "state", v->a.disabled ? 1 : 0);
    vapi_out_close(o, "accountstate");
    vapi_out_int(o, "admintype", admin_level(v));
    vapi_out_open(o, "quota");
    vapi_out_text(o, "classname", "TAccountQuota");
    /* kilobytes, as the vendor reports them */
    vapi_out_int(o, "mailboxsize", v->bytes_used / 1024);
    vapi_out_int(o, "mailboxquota", v->bytes_limit / 1024);
    vapi_out_close(o, "quota");
    vapi_out_open(o, "image");
    vapi_out_text(o, "classname", "TAccountImage");
    vapi_out_text(o, "base64data", NULL);
    vapi_out_text(o, "contenttype", NULL);
    vapi_out_close(o, "image");
    vapi_out_text(o, "planid", NULL);
    vapi_out_close(o, "item");
    pg->written++;
    return vapi_out_failed(o);
}

int vapi_cmd_getaccountsinfolist(struct vapi_call *call)
{
    char domain[DIR_DOMAIN_MAX + 2];
    if (!domain_param(call, domain))
        return 0;
    int may = may_domain(call, domain);
    if (may < 0)
        return -1;
    struct dir_domain_info info;
    int rc =
        may ? dir_view_domain(call->db, domain, &info, call->log, sizeof call->log) : DIR_ENOTFOUND;
    if (rc == DIR_ENOTFOUND) {
        call->error = "domain_invalid";
        return 0;
    }
    if (rc != 0)
        return -1;
    struct account_page pg = {.call = call};
    filter(call->req, pg.mask, sizeof pg.mask, &pg.type);
    paging(call->req, &pg.offset, &pg.count);
    vapi_call_begin(call);
    vapi_out_open(call->out, "result");
    /* a domain alias holds no accounts of its own: its users are listed under their
     * domain, so a sync of both does not see everyone twice */
    if (info.alias_of[0] == '\0' &&
        dir_view_accounts(call->db, info.name, account_item, &pg, call->log, sizeof call->log) != 0)
        return -1;
    vapi_out_int(call->out, "offset", pg.offset);
    vapi_out_int(call->out, "overallcount", pg.matched);
    vapi_out_close(call->out, "result");
    return 0;
}

/* ---- account properties ---- */

/* What the properties of one account are made of, read on first need. */
struct acct {
    struct vapi_call *call;
    struct dir_account a;
    char local[DIR_LOCAL_PART_MAX + 1];
    int right;
    bool have_aliases, have_dom_aliases, have_groups, have_members, have_quota, have_level;
    struct strbuf aliases;     /* "addr;addr;" of the account's aliases */
    struct strbuf dom_aliases; /* "name;name;" of its domain's aliases */
    struct strbuf groups;      /* "addr;addr;" of its groups */
    struct strbuf members;     /* group member file: "entry\r\n" per member */
    struct quota_info quota;
    int level;
};

static int collect_alias(const char *alias, void *ctx)
{
    struct strbuf *b = ctx;
    sb_add(b, alias);
    sb_add(b, ";");
    return b->failed;
}

static int collect_dom_alias(const char *alias, const char *domain, void *ctx)
{
    return collect_alias(alias, ctx);
}

static int collect_group(const struct dir_account *g, void *ctx)
{
    return collect_alias(g->address, ctx);
}

static int collect_member(const char *kind, const char *name, void *ctx)
{
    struct strbuf *b = ctx;
    /* the vendor's member file: one entry per line, a whole domain as "[domain]" */
    if (strcmp(kind, "domain") == 0) {
        sb_add(b, "[");
        sb_add(b, name);
        sb_add(b, "]");
    } else {
        sb_add(b, name);
    }
    sb_add(b, "\r\n");
    return b->failed;
}

static int need_aliases(struct acct *ac)
{
    if (ac->have_aliases)
        return 0;
    ac->have_aliases = true;
    return dir_alias_list(ac->call->db, ac->a.address, collect_alias, &ac->aliases, ac->call->log,
                          sizeof ac->call->log) == 0
               ? 0
               : -1;
}

static int need_dom_aliases(struct acct *ac)
{
    if (ac->have_dom_aliases)
        return 0;
    ac->have_dom_aliases = true;
    return dir_domain_alias_list(ac->call->db, domain_of(ac->a.address), collect_dom_alias,
                                 &ac->dom_aliases, ac->call->log, sizeof ac->call->log) == 0
               ? 0
               : -1;
}

static int need_groups(struct acct *ac)
{
    if (ac->have_groups)
        return 0;
    ac->have_groups = true;
    return dir_view_account_groups(ac->call->db, ac->a.id, collect_group, &ac->groups,
                                   ac->call->log, sizeof ac->call->log) == 0
               ? 0
               : -1;
}

static int need_members(struct acct *ac)
{
    if (ac->have_members)
        return 0;
    ac->have_members = true;
    return dir_group_member_list(ac->call->db, ac->a.address, collect_member, &ac->members,
                                 ac->call->log, sizeof ac->call->log) == 0
               ? 0
               : -1;
}

static int need_quota(struct acct *ac)
{
    if (ac->have_quota)
        return 0;
    ac->have_quota = true;
    return quota_get(ac->call->db, ac->a.address, &ac->quota, ac->call->log,
                     sizeof ac->call->log) == 0
               ? 0
               : -1;
}

static int need_level(struct acct *ac)
{
    if (ac->have_level)
        return 0;
    ac->have_level = true;
    if (ac->a.is_admin) {
        ac->level = VAPI_ADMIN_SERVER;
        return 0;
    }
    long long n = 0;
    if (dir_domain_admin_count(ac->call->db, ac->a.id, &n, ac->call->log, sizeof ac->call->log))
        return -1;
    ac->level = n > 0 ? VAPI_ADMIN_DOMAIN : VAPI_ADMIN_NONE;
    return 0;
}

static void prop_string(struct acct *ac, const char *name, const char *val, int right)
{
    vapi_out_prop_begin(ac->call->out, name, "TPropertyString");
    vapi_out_text(ac->call->out, "val", val);
    vapi_out_prop_end(ac->call->out, right);
}

static void prop_none(struct vapi_out *o, const char *name, int right)
{
    vapi_out_prop_begin(o, name, "TPropertyNoValue");
    vapi_out_prop_end(o, right);
}

/* Calls fn for each ';'-separated entry of list. */
static void each_entry(const char *list, void (*fn)(const char *entry, void *ctx), void *ctx)
{
    char entry[DIR_ADDRESS_SIZE];
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ";");
        if (n > 0 && n < sizeof entry) {
            memcpy(entry, p, n);
            entry[n] = '\0';
            fn(entry, ctx);
        }
        p += n + (p[n] == ';');
    }
}

struct alias_walk {
    struct acct *ac;
    struct strbuf *out;
    bool local_parts; /* only local parts of the account's own domain */
    bool list_items;  /* write <item>s instead of joining */
};

static void alias_entry(const char *addr, void *ctx)
{
    struct alias_walk *w = ctx;
    const char *own = domain_of(w->ac->a.address);
    if (w->local_parts) {
        if (strcmp(domain_of(addr), own) != 0)
            return;
        char local[DIR_LOCAL_PART_MAX + 1];
        local_of(addr, local);
        if (w->list_items) {
            vapi_out_text(w->ac->call->out, "item", local);
        } else {
            sb_add(w->out, ";");
            sb_add(w->out, local);
        }
        return;
    }
    sb_add(w->out, ";");
    sb_add(w->out, addr);
}

struct variant_walk {
    struct strbuf *out;
    const char *local;
};

static void variant_entry(const char *dom_alias, void *ctx)
{
    struct variant_walk *v = ctx;
    sb_add(v->out, ";");
    sb_add(v->out, v->local);
    sb_add(v->out, "@");
    sb_add(v->out, dom_alias);
}

/* The address and its variants through the domain aliases, when it is in the
 * account's domain: "a@d;a@alias1;..." appended to out. */
static void with_variants(struct acct *ac, const char *addr, struct strbuf *out)
{
    sb_add(out, ";");
    sb_add(out, addr);
    if (strcmp(domain_of(addr), domain_of(ac->a.address)) != 0)
        return;
    char local[DIR_LOCAL_PART_MAX + 1];
    local_of(addr, local);
    struct variant_walk v = {out, local};
    each_entry(sb_str(&ac->dom_aliases), variant_entry, &v);
}

static void variant_addr(const char *addr, void *ctx)
{
    struct alias_walk *w = ctx;
    with_variants(w->ac, addr, w->out);
}

/* Writes one property. 0 ok, -1 database error. */
static int account_prop(struct acct *ac, const char *name)
{
    struct vapi_out *o = ac->call->out;
    const bool group = strcmp(ac->a.kind, "group") == 0;
    char num[24];
    struct strbuf b = {0};
    int rc = 0;

    if (!strcasecmp(name, "u_name")) {
        prop_string(ac, name, ac->a.full_name, ac->right);
    } else if (!strcasecmp(name, "a_name")) {
        char given[DIR_FULL_NAME_MAX + 1], surname[DIR_FULL_NAME_MAX + 1];
        vapi_name_split(ac->a.full_name, given, sizeof given, surname, sizeof surname);
        vapi_out_prop_begin(o, name, "TAccountName");
        vapi_out_text(o, "name", given);
        vapi_out_text(o, "surname", surname);
        vapi_out_prop_end(o, ac->right);
    } else if (!strcasecmp(name, "u_mailbox") || !strcasecmp(name, "u_emailalias")) {
        prop_string(ac, name, ac->local, ac->right);
    } else if (!strcasecmp(name, "u_login")) {
        /* the full address always logs in, whatever the login policy */
        prop_string(ac, name, ac->a.address, RIGHT_READ);
    } else if (!strcasecmp(name, "u_alias") || !strcasecmp(name, "a_aliaslist")) {
        /* local parts, the primary first: the account's own and its aliases in its domain */
        if ((rc = need_aliases(ac)) != 0)
            return rc;
        bool list = !strcasecmp(name, "a_aliaslist");
        struct alias_walk w = {ac, &b, true, list};
        if (list) {
            vapi_out_prop_begin(o, name, "TPropertyStringList");
            vapi_out_open(o, "val");
            vapi_out_text(o, "item", ac->local);
            each_entry(sb_str(&ac->aliases), alias_entry, &w);
            vapi_out_close(o, "val");
            vapi_out_prop_end(o, ac->right);
        } else {
            sb_add(&b, ac->local);
            each_entry(sb_str(&ac->aliases), alias_entry, &w);
            prop_string(ac, name, sb_str(&b), ac->right);
        }
    } else if (!strcasecmp(name, "u_aliaslist")) {
        /* every full address that reaches the account, domain aliases included */
        if ((rc = need_aliases(ac)) != 0 || (rc = need_dom_aliases(ac)) != 0)
            return rc;
        with_variants(ac, ac->a.address, &b);
        struct alias_walk w = {ac, &b, false, false};
        each_entry(sb_str(&ac->aliases), variant_addr, &w);
        prop_string(ac, name, sb_list(&b), RIGHT_READ);
    } else if (!strcasecmp(name, "u_type")) {
        snprintf(num, sizeof num, "%d", vapi_account_type(ac->a.kind));
        prop_string(ac, name, num, ac->right);
    } else if (!strcasecmp(name, "u_accountdisabled")) {
        prop_string(ac, name, ac->a.disabled ? "1" : "0", ac->right);
    } else if (!strcasecmp(name, "a_state")) {
        vapi_out_prop_begin(o, name, "TAccountState");
        vapi_out_int(o, "state", ac->a.disabled ? 1 : 0);
        vapi_out_prop_end(o, ac->right);
    } else if (!strcasecmp(name, "u_groups") || !strcasecmp(name, "a_grouplist")) {
        /* "g1@d;g2@d;" with the trailing ';' the vendor writes */
        if ((rc = need_groups(ac)) != 0)
            return rc;
        prop_string(ac, name, sb_str(&ac->groups), RIGHT_READ);
    } else if (!strcasecmp(name, "u_groupslist")) {
        if ((rc = need_groups(ac)) != 0 || (rc = need_dom_aliases(ac)) != 0)
            return rc;
        struct alias_walk w = {ac, &b, false, false};
        each_entry(sb_str(&ac->groups), variant_addr, &w);
        if (b.len > 0)
            sb_add(&b, ";");
        prop_string(ac, name, sb_list(&b), RIGHT_READ);
    } else if (!strcasecmp(name, "g_name") && group) {
        prop_string(ac, name, ac->a.full_name[0] ? ac->a.full_name : ac->local, ac->right);
    } else if (!strcasecmp(name, "g_description") && group) {
        prop_string(ac, name, "", ac->right);
    } else if (!strcasecmp(name, "g_listfile_contents") && group) {
        if ((rc = need_members(ac)) != 0)
            return rc;
        prop_string(ac, name, sb_str(&ac->members), ac->right);
    } else if (!strcasecmp(name, "a_quota")) {
        if ((rc = need_quota(ac)) != 0)
            return rc;
        vapi_out_prop_begin(o, name, "TAccountQuota");
        vapi_out_int(o, "mailboxsize", ac->quota.bytes_used / 1024);
        vapi_out_int(o, "mailboxquota", ac->quota.bytes_limit / 1024);
        vapi_out_prop_end(o, ac->right);
    } else if (!strcasecmp(name, "a_admintype")) {
        if ((rc = need_level(ac)) != 0)
            return rc;
        snprintf(num, sizeof num, "%d", ac->level);
        prop_string(ac, name, num, ac->right);
    } else {
        /* unknown names, write-only ones, mailing-list properties (Floe has no lists),
         * group properties of a non-group, A_Image: no value */
        prop_none(o, name, ac->right);
    }
    sb_free(&b);
    return 0;
}

/* The properties of a (in scope) asked for by accountpropertylist, or the
 * "info" set of accountpropertyset 1 when there is no list. */
static int account_properties(struct vapi_call *call, const struct dir_account *a, int right)
{
    struct acct ac = {.call = call, .a = *a, .right = right};
    local_of(a->address, ac.local);
    vapi_call_begin(call);
    vapi_out_open(call->out, "result");
    const struct vapi_node *list = vapi_request_node(call->req, "accountpropertylist");
    int rc = 0;
    if (list != NULL) {
        for (const struct vapi_node *it = list->children; it != NULL && rc == 0; it = it->next) {
            char name[128];
            if (!vapi_node_text(vapi_node_find(it->children, "propname"), name, sizeof name) ||
                name[0] == '\0')
                continue;
            rc = account_prop(&ac, name);
        }
    } else {
        char set[16];
        long long s = 0;
        if (vapi_request_text(call->req, "accountpropertyset", set, sizeof set) &&
            vapi_number_parse(set, 3, &s) == 0 && s == 1) {
            static const char *const info[] = {"A_Name", "A_Quota", "A_Image", "A_AliasList",
                                               "A_State"};
            for (size_t i = 0; i < sizeof info / sizeof info[0] && rc == 0; i++)
                rc = account_prop(&ac, info[i]);
        }
    }
    vapi_out_close(call->out, "result");
    sb_free(&ac.aliases);
    sb_free(&ac.dom_aliases);
    sb_free(&ac.groups);
    sb_free(&ac.members);
    return rc;
}

int vapi_cmd_getaccountproperties(struct vapi_call *call)
{
    char email[DIR_ADDRESS_SIZE];
    const struct vapi_node *n = vapi_request_node(call->req, "accountemail");
    if (n == NULL) {
        call->error = "account_email_parameter_missing";
        return 0;
    }
    struct dir_account a;
    int rc = vapi_node_text(n, email, sizeof email) && email[0] ? find_account(call, email, &a) : 1;
    if (rc < 0)
        return -1;
    if (rc > 0 || (call->level == VAPI_ADMIN_NONE && a.id != call->who->id)) {
        call->error = "account_invalid";
        return 0;
    }
    return account_properties(call, &a, call->level != VAPI_ADMIN_NONE ? RIGHT_WRITE : RIGHT_READ);
}

int vapi_cmd_getmyproperties(struct vapi_call *call)
{
    return account_properties(call, call->who,
                              call->level != VAPI_ADMIN_NONE ? RIGHT_WRITE : RIGHT_READ);
}

/* ---- getaccountmemberinfolist ---- */

struct member_page {
    struct vapi_call *call;
    char mask[256];
    long long offset, count, matched, written;
};

static int member_item(const char *kind, const char *name, void *ctx)
{
    struct member_page *pg = ctx;
    char val[DIR_ADDRESS_SIZE + 2];
    snprintf(val, sizeof val, strcmp(kind, "domain") == 0 ? "[%s]" : "%s", name);
    if (!vapi_glob_match(pg->mask, val))
        return 0;
    if (pg->matched++ < pg->offset || (pg->count > 0 && pg->written >= pg->count))
        return 0;
    struct vapi_out *o = pg->call->out;
    vapi_out_open(o, "item");
    vapi_out_text(o, "val", val);
    /* per-member rights mean something for mailing lists only; for groups the vendor
     * reads them back as 0 (and spells "recieve" so) */
    vapi_out_int(o, "default", 0);
    vapi_out_int(o, "recieve", 0);
    vapi_out_int(o, "post", 0);
    vapi_out_int(o, "digest", 0);
    vapi_out_text(o, "params", NULL);
    vapi_out_close(o, "item");
    pg->written++;
    return vapi_out_failed(o);
}

int vapi_cmd_getaccountmemberinfolist(struct vapi_call *call)
{
    char who[DIR_ADDRESS_SIZE];
    struct dir_account g;
    int rc = vapi_request_text(call->req, "who", who, sizeof who) && who[0]
                 ? find_account(call, who, &g)
                 : 1;
    if (rc < 0)
        return -1;
    if (rc > 0 || call->level == VAPI_ADMIN_NONE) {
        call->error = "account_invalid";
        return 0;
    }
    struct member_page pg = {.call = call};
    long long unused;
    filter(call->req, pg.mask, sizeof pg.mask, &unused);
    paging(call->req, &pg.offset, &pg.count);
    vapi_call_begin(call);
    vapi_out_open(call->out, "result");
    /* users and resources have no members: an empty list */
    if (strcmp(g.kind, "group") == 0 && dir_group_member_list(call->db, g.address, member_item, &pg,
                                                              call->log, sizeof call->log) != 0)
        return -1;
    vapi_out_int(call->out, "offset", pg.offset);
    vapi_out_int(call->out, "overallcount", pg.matched);
    vapi_out_close(call->out, "result");
    return 0;
}

/* ---- getdomainproperties ---- */

static int first_admin(const struct dir_account *a, void *ctx)
{
    snprintf(ctx, DIR_ADDRESS_SIZE, "%s", a->address);
    return 1;
}

int vapi_cmd_getdomainproperties(struct vapi_call *call)
{
    char domain[DIR_DOMAIN_MAX + 2];
    if (!domain_param(call, domain))
        return 0;
    int may = may_domain(call, domain);
    if (may < 0)
        return -1;
    struct dir_domain_info info;
    int rc =
        may ? dir_view_domain(call->db, domain, &info, call->log, sizeof call->log) : DIR_ENOTFOUND;
    if (rc == DIR_ENOTFOUND) {
        call->error = "domain_invalid";
        return 0;
    }
    if (rc != 0)
        return -1;
    const char *own = info.alias_of[0] ? info.alias_of : info.name;
    struct strbuf aliases = {0};
    if (dir_domain_alias_list(call->db, own, collect_dom_alias, &aliases, call->log,
                              sizeof call->log) != 0) {
        sb_free(&aliases);
        return -1;
    }
    char admin[DIR_ADDRESS_SIZE] = "";
    if (dir_domain_admins(call->db, own, first_admin, admin, call->log, sizeof call->log) != 0) {
        sb_free(&aliases);
        return -1;
    }
    struct vapi_out *o = call->out;
    vapi_call_begin(call);
    vapi_out_open(o, "result");
    const struct vapi_node *list = vapi_request_node(call->req, "domainpropertylist");
    for (const struct vapi_node *it = list ? list->children : NULL; it; it = it->next) {
        char name[128];
        if (!vapi_node_text(vapi_node_find(it->children, "propname"), name, sizeof name) ||
            name[0] == '\0')
            continue;
        char num[24];
        const char *val = NULL;
        /* an alias reports its domain's aliases and description */
        if (!strcasecmp(name, "d_description"))
            val = info.description;
        else if (!strcasecmp(name, "d_type"))
            val = (snprintf(num, sizeof num, "%d",
                            info.alias_of[0] ? VAPI_DOMAIN_ALIAS : VAPI_DOMAIN_STANDARD),
                   num);
        else if (!strcasecmp(name, "d_aliases"))
            val = sb_str(&aliases);
        else if (!strcasecmp(name, "d_adminemail"))
            val = admin;
        else if (!strcasecmp(name, "d_accountcount"))
            val = (snprintf(num, sizeof num, "%lld", info.accounts), num);
        if (!strcasecmp(name, "d_aliaslist")) {
            vapi_out_prop_begin(o, name, "TPropertyStringList");
            vapi_out_open(o, "val");
            char entry[DIR_DOMAIN_MAX + 1];
            for (const char *p = sb_str(&aliases); *p;) {
                size_t n = strcspn(p, ";");
                if (n > 0 && n < sizeof entry) {
                    memcpy(entry, p, n);
                    entry[n] = '\0';
                    vapi_out_text(o, "item", entry);
                }
                p += n + (p[n] == ';');
            }
            vapi_out_close(o, "val");
            vapi_out_prop_end(o, RIGHT_READ);
        } else if (val != NULL) {
            vapi_out_prop_begin(o, name, "TPropertyString");
            /* d_aliases: "a;b" without the separator after the last */
            size_t len = strlen(val);
            if (!strcasecmp(name, "d_aliases") && len > 0)
                len--;
            vapi_out_textn(o, "val", val, len);
            vapi_out_prop_end(o, RIGHT_WRITE);
        } else {
            prop_none(o, name, RIGHT_WRITE);
        }
    }
    vapi_out_close(o, "result");
    sb_free(&aliases);
    return 0;
}

/* ---- getserverproperties ---- */

int vapi_cmd_getserverproperties(struct vapi_call *call)
{
    enum policy_login login = POLICY_LOGIN_FULL_ADDRESS;
    if (policy_login_get(call->db, &login, call->log, sizeof call->log) != 0)
        return -1;
    int right = call->level == VAPI_ADMIN_SERVER ? RIGHT_WRITE : RIGHT_READ;
    struct vapi_out *o = call->out;
    vapi_call_begin(call);
    vapi_out_open(o, "result");
    const struct vapi_node *list = vapi_request_node(call->req, "serverpropertylist");
    for (const struct vapi_node *it = list ? list->children : NULL; it; it = it->next) {
        char name[128];
        if (!vapi_node_text(vapi_node_find(it->children, "propname"), name, sizeof name) ||
            name[0] == '\0')
            continue;
        const char *val = NULL;
        if (!strcasecmp(name, "c_version"))
            val = VAPI_COMPAT_VERSION;
        else if (!strcasecmp(name, "c_accounts_policies_login_loginsettings"))
            /* 1: users log in with their e-mail address; 0: a bare user name works too
             * (docs/VENDORAPI.md: the vendor's numbering is inferred) */
            val = login == POLICY_LOGIN_FULL_ADDRESS ? "1" : "0";
        if (val != NULL) {
            vapi_out_prop_begin(o, name, "TPropertyString");
            vapi_out_text(o, "val", val);
            vapi_out_prop_end(o, !strcasecmp(name, "c_version") ? RIGHT_READ : right);
        } else {
            prop_none(o, name, right);
        }
    }
    vapi_out_close(o, "result");
    return 0;
}
