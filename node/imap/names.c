/* The IMAP namespaces (RFC 2342): which folder a mailbox name means, and what the session may
 * do with it (RFC 4314).
 *
 * - Personal: the account's own tree, names as stored ("INBOX", "Lists/floe").
 * - Other users: shared_prefix (default "~") + the owner's address + "/" + the path in the
 *   owner's tree, e.g. "~john@example.test/Events" (seed 000 "Sharing Concepts": "folders of a
 *   shared account begin with this string"; a prefix ending in "/", such as "Shared/", puts the
 *   accounts one level down). Owners are users and resources.
 * - Public: public_prefix (default "Public Folders/") + a group's address + "/" + the path in
 *   the group's tree: the folders of group accounts are the public folders (storage/sharing.h).
 *
 * A name that starts with a prefix belongs to that namespace whatever the personal tree holds,
 * so the personal folders cannot use those names (CREATE refuses them). Splitting and joining
 * are pure and unit-tested (tests/unit/test_imap_names.c); resolving runs on a worker: the
 * owner by address (storage/directory.h), the folder by path (storage/folders.h), the rights
 * by storage/acl.h's acl_rights(), the one answer to "may P do X on F". A folder the account
 * has no right at all on is reported as not existing, so names do not reveal other accounts'
 * trees. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "node/imap/imap.h"
#include "proto/text/utf8.h"

int imap_prefix_check(const char *prefix, char *err, size_t errlen)
{
    size_t len = prefix ? strlen(prefix) : 0;
    const char *why = NULL;
    if (len == 0 || len > IMAP_PREFIX_MAX)
        why = "must be 1 to 64 bytes";
    else if (!utf8_check(prefix, len, UTF8_NO_C0 | UTF8_NO_C1))
        why = "must be UTF-8 without control characters";
    else if (strpbrk(prefix, "%*\"\\"))
        why = "must not contain % * \" or \\";
    else if (prefix[0] == '/' || strstr(prefix, "//"))
        why = "must not start with / or contain //";
    else if (!strncasecmp(prefix, "INBOX", 5))
        why = "must not start with INBOX";
    if (why) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    return 0;
}

/* name starts with the prefix, or equals the prefix without its trailing '/' (the namespace's
 * own node). Returns the rest (after the prefix; "" for the node), or NULL. */
static const char *after_prefix(const char *prefix, const char *name)
{
    size_t pl = strlen(prefix);
    if (pl == 0)
        return NULL;
    if (!strncmp(name, prefix, pl))
        return name + pl;
    if (prefix[pl - 1] == '/' && strlen(name) == pl - 1 && !strncmp(name, prefix, pl - 1))
        return name + pl - 1;
    return NULL;
}

int imap_name_split(const struct imap_settings *cfg, const char *name, struct imap_name *n_r,
                    char *err, size_t errlen)
{
    memset(n_r, 0, sizeof(*n_r));
    const char *prefixes[2] = {cfg->shared_prefix, cfg->public_prefix};
    enum imap_ns kinds[2] = {IMAP_NS_SHARED, IMAP_NS_PUBLIC};
    if (strlen(prefixes[1]) > strlen(prefixes[0])) {
        /* the longer prefix first: "Public/" must win over "P" */
        prefixes[0] = cfg->public_prefix, prefixes[1] = cfg->shared_prefix;
        kinds[0] = IMAP_NS_PUBLIC, kinds[1] = IMAP_NS_SHARED;
    }
    for (int i = 0; i < 2; i++) {
        const char *rest = after_prefix(prefixes[i], name);
        if (!rest)
            continue;
        n_r->ns = kinds[i];
        const char *slash = strchr(rest, '/');
        size_t alen = slash ? (size_t)(slash - rest) : strlen(rest);
        if (alen >= sizeof(n_r->owner)) {
            snprintf(err, errlen, "account name too long");
            return -1;
        }
        if (alen == 0 && slash) {
            snprintf(err, errlen, "account name expected after the prefix");
            return -1;
        }
        memcpy(n_r->owner, rest, alen);
        n_r->owner[alen] = '\0';
        if (slash && slash[1]) {
            if (folders_path_check(slash + 1, n_r->path, sizeof(n_r->path), err, errlen) < 0)
                return -1;
        }
        return 0;
    }
    n_r->ns = IMAP_NS_PERSONAL;
    return folders_path_check(name, n_r->path, sizeof(n_r->path), err, errlen) < 0 ? -1 : 0;
}

int imap_name_join(const struct imap_settings *cfg, enum imap_ns ns, const char *owner,
                   const char *path, char *out, size_t outlen)
{
    int n;
    if (ns == IMAP_NS_PERSONAL) {
        n = snprintf(out, outlen, "%s", path);
    } else {
        const char *prefix = ns == IMAP_NS_SHARED ? cfg->shared_prefix : cfg->public_prefix;
        size_t pl = strlen(prefix);
        if (!*owner) /* the namespace's own node: the prefix without its trailing '/' */
            n = snprintf(out, outlen, "%.*s", (int)(pl && prefix[pl - 1] == '/' ? pl - 1 : pl),
                         prefix);
        else
            n = snprintf(out, outlen, "%s%s%s%s", prefix, owner, *path ? "/" : "", path);
    }
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int imap_mailbox_resolve(PGconn *db, long long account_id, const struct imap_settings *cfg,
                         const char *name, struct imap_mailbox *mb, char *err, size_t errlen)
{
    memset(mb, 0, sizeof(*mb));
    if (imap_name_split(cfg, name, &mb->name, err, errlen) < 0)
        return IMAP_MB_ENOTFOUND;
    if (mb->name.ns == IMAP_NS_PERSONAL) {
        mb->owner_id = account_id;
        int rc = folders_find_path(db, account_id, mb->name.path, &mb->f);
        if (rc == FOLDERS_ENOTFOUND)
            return IMAP_MB_ENOTFOUND;
        if (rc < 0) {
            snprintf(err, errlen, "%s", PQerrorMessage(db));
            return -1;
        }
        mb->found = true;
        mb->rights = ACL_ALL;
        return 0;
    }
    if (!*mb->name.owner) {
        mb->container = true;
        return 0;
    }
    struct dir_account a;
    int rc = dir_account_find(db, mb->name.owner, &a, err, errlen);
    if (rc == DIR_ENOTFOUND)
        return IMAP_MB_ENOTFOUND;
    if (rc < 0)
        return -1;
    bool group = !strcmp(a.kind, "group");
    /* one name per folder: one's own folders are personal, groups are public */
    if (a.id == account_id || group != (mb->name.ns == IMAP_NS_PUBLIC))
        return IMAP_MB_ENOTFOUND;
    mb->owner_id = a.id;
    snprintf(mb->owner_addr, sizeof(mb->owner_addr), "%s", a.address);
    if (!*mb->name.path) {
        mb->container = true;
        return 0;
    }
    rc = folders_find_path(db, a.id, mb->name.path, &mb->f);
    if (rc == FOLDERS_ENOTFOUND)
        return IMAP_MB_ENOTFOUND;
    if (rc < 0) {
        snprintf(err, errlen, "%s", PQerrorMessage(db));
        return -1;
    }
    rc = acl_rights(db, mb->f.id, account_id, &mb->rights);
    if (rc == ACL_ENOTFOUND)
        return IMAP_MB_ENOTFOUND;
    if (rc < 0) {
        snprintf(err, errlen, "cannot read rights: %s", PQerrorMessage(db));
        return -1;
    }
    if (mb->rights == 0)
        return IMAP_MB_ENOTFOUND; /* RFC 4314 §4: as if it did not exist */
    mb->found = true;
    return 0;
}

unsigned imap_rights_now(PGconn *db, long long account_id, long long folder_id, long long owner_id)
{
    if (owner_id == account_id)
        return ACL_ALL;
    unsigned mask = 0;
    return acl_rights(db, folder_id, account_id, &mask) == 0 ? mask : 0;
}

const char *imap_noperm_text(unsigned rights)
{
    return rights & ACL_L ? "[NOPERM] Permission denied" : "[NONEXISTENT] No such mailbox";
}
