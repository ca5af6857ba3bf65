/* A small INI reader for the node bootstrap file (docs/CONFIG.md).
 *
 * Syntax: `[section]` or `[section name]` headers, `key = value` lines, `#` or `;`
 * starting a comment line, blank lines ignored. Values are trimmed; a value may be
 * wrapped in double quotes to keep surrounding blanks. Every entry remembers its
 * line so errors can name file, line and key. */
#ifndef FLOE_NODE_INI_H
#define FLOE_NODE_INI_H

#include <stdbool.h>
#include <stddef.h>

#define INI_MAX_LINE 8192
#define INI_MAX_ENTRIES 4096

struct ini_entry {
    char *section; /* "service" for [service imap] */
    char *name;    /* "imap" for [service imap]; "" for [node] */
    char *key;
    char *value;
    int line;
    bool used; /* set by the typed reader; unused keys are errors */
};

struct ini {
    char *path;
    struct ini_entry *entries;
    size_t count;
};

/* Parses text (NUL-terminated) read from path (used in messages only).
 * Returns NULL and writes "path:line: reason" into err on a syntax error. */
struct ini *ini_parse(const char *path, const char *text, char *err, size_t errlen);
/* Reads and parses a file. NULL + "path: reason" in err when unreadable. */
struct ini *ini_load(const char *path, char *err, size_t errlen);
void ini_free(struct ini **ini);

#endif
