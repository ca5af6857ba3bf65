/* libFuzzer harness for the IMAP namespaces (node/imap/names.c): a client's mailbox name (UTF-8,
 * as imap_arg_mailbox hands it on) split by namespace under the default prefixes and under
 * prefixes with a slash, and joined back. Checks: what splits has a path that storage/folders.h
 * accepts (or is empty) and an owner without '/'; joining gives a name that splits to the same
 * namespace, owner and path (the canonical form is a fixed point). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/imap/imap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const struct imap_settings *cfg, const char *name)
{
    struct imap_name n, again;
    char err[256];
    if (imap_name_split(cfg, name, &n, err, sizeof(err)) != 0)
        return;
    if (strchr(n.owner, '/'))
        abort();
    char canon[FOLDERS_PATH_MAX + 1];
    if (*n.path && (folders_path_check(n.path, canon, sizeof(canon), err, sizeof(err)) != 0 ||
                    strcmp(canon, n.path) != 0))
        abort();
    char out[IMAP_NAME_MAX + 1];
    if (imap_name_join(cfg, n.ns, n.owner, n.path, out, sizeof(out)) != 0)
        return; /* too long to join: the caller answers NO */
    if (imap_name_split(cfg, out, &again, err, sizeof(err)) != 0 || again.ns != n.ns ||
        strcmp(again.owner, n.owner) != 0 || strcmp(again.path, n.path) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > IMAP_NAME_MAX + 16)
        return 0;
    char *name = malloc(size + 1);
    if (!name)
        return 0;
    memcpy(name, data, size);
    name[size] = '\0';
    static struct imap_settings a, b;
    snprintf(a.shared_prefix, sizeof(a.shared_prefix), "%s", IMAP_SHARED_PREFIX);
    snprintf(a.public_prefix, sizeof(a.public_prefix), "%s", IMAP_PUBLIC_PREFIX);
    snprintf(b.shared_prefix, sizeof(b.shared_prefix), "Shared/Users/");
    snprintf(b.public_prefix, sizeof(b.public_prefix), "S");
    check(&a, name);
    check(&b, name);
    free(name);
    return 0;
}
