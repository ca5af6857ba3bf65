/* INI reader for the node bootstrap file. It only splits text into entries with
 * their line numbers; node/config.c gives them meaning. Lines are bounded
 * (INI_MAX_LINE) and so is the number of entries. */
#include "node/ini.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

static bool valid_word(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.' && *s != '*' &&
            *s != '@')
            return false;
    return true;
}

void ini_free(struct ini **inip)
{
    struct ini *ini = *inip;
    if (!ini)
        return;
    for (size_t i = 0; i < ini->count; i++) {
        free(ini->entries[i].section);
        free(ini->entries[i].name);
        free(ini->entries[i].key);
        free(ini->entries[i].value);
    }
    free(ini->entries);
    free(ini->path);
    free(ini);
    *inip = NULL;
}

static int add_entry(struct ini *ini, const char *section, const char *name, const char *key,
                     const char *value, int line)
{
    if (ini->count >= INI_MAX_ENTRIES)
        return -1;
    struct ini_entry *e = realloc(ini->entries, (ini->count + 1) * sizeof(*e));
    if (!e)
        return -1;
    ini->entries = e;
    e = &ini->entries[ini->count];
    *e = (struct ini_entry){.line = line};
    e->section = strdup(section);
    e->name = strdup(name);
    e->key = strdup(key);
    e->value = strdup(value);
    ini->count++;
    if (!e->section || !e->name || !e->key || !e->value)
        return -1;
    return 0;
}

struct ini *ini_parse(const char *path, const char *text, char *err, size_t errlen)
{
    struct ini *ini = calloc(1, sizeof(*ini));
    if (!ini || !(ini->path = strdup(path))) {
        free(ini);
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    char section[128] = "", name[256] = "";
    bool in_section = false;
    char buf[INI_MAX_LINE + 1];
    const char *p = text;
    for (int lineno = 1; *p; lineno++) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        if (n > INI_MAX_LINE) {
            snprintf(err, errlen, "%s:%d: line longer than %d bytes", path, lineno, INI_MAX_LINE);
            goto fail;
        }
        memcpy(buf, p, n);
        buf[n] = '\0';
        p = eol ? eol + 1 : p + n;
        if (memchr(buf, '\0', n)) {
            snprintf(err, errlen, "%s:%d: NUL byte in line", path, lineno);
            goto fail;
        }
        char *s = trim(buf);
        if (*s == '\0' || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            char *close = strchr(s, ']');
            if (!close || *trim(close + 1) != '\0') {
                snprintf(err, errlen, "%s:%d: malformed section header", path, lineno);
                goto fail;
            }
            *close = '\0';
            char *inner = trim(s + 1);
            char *sp = strpbrk(inner, " \t");
            char empty[1] = "";
            char *nm = empty;
            if (sp) {
                *sp = '\0';
                nm = trim(sp + 1);
                if (*nm == '"') {
                    size_t l = strlen(nm);
                    if (l < 2 || nm[l - 1] != '"') {
                        snprintf(err, errlen, "%s:%d: unterminated quote in section name", path,
                                 lineno);
                        goto fail;
                    }
                    nm[l - 1] = '\0';
                    nm++;
                }
            }
            if (!valid_word(inner) || strlen(inner) >= sizeof(section) ||
                strlen(nm) >= sizeof(name) || (sp && !*nm)) {
                snprintf(err, errlen, "%s:%d: malformed section header", path, lineno);
                goto fail;
            }
            for (char *c = inner; *c; c++)
                *c = (char)tolower((unsigned char)*c);
            strcpy(section, inner);
            strcpy(name, nm);
            in_section = true;
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "%s:%d: expected 'key = value'", path, lineno);
            goto fail;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        if (!valid_word(key)) {
            snprintf(err, errlen, "%s:%d: malformed key '%s'", path, lineno, key);
            goto fail;
        }
        if (!in_section) {
            snprintf(err, errlen, "%s:%d: key '%s' outside any [section]", path, lineno, key);
            goto fail;
        }
        size_t vl = strlen(val);
        if (vl > 0 && val[0] == '"') {
            if (vl < 2 || val[vl - 1] != '"') {
                snprintf(err, errlen, "%s:%d: key '%s': unterminated quote", path, lineno, key);
                goto fail;
            }
            val[vl - 1] = '\0';
            val++;
        }
        for (char *c = key; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        if (add_entry(ini, section, name, key, val, lineno) < 0) {
            snprintf(err, errlen, "%s:%d: too many entries or out of memory", path, lineno);
            goto fail;
        }
    }
    return ini;
fail:
    ini_free(&ini);
    return NULL;
}

struct ini *ini_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    /* A bootstrap file is small; 4 MiB is far past any real one. */
    enum { MAX = 4 << 20 };
    char *text = malloc(MAX + 1);
    size_t n = text ? fread(text, 1, MAX + 1, f) : 0;
    int rerr = ferror(f);
    fclose(f);
    if (!text || rerr || n > MAX) {
        snprintf(err, errlen, "%s: %s", path, !text ? "out of memory" : rerr ? "read error" : "file too large");
        free(text);
        return NULL;
    }
    text[n] = '\0';
    struct ini *ini = ini_parse(path, text, err, errlen);
    free(text);
    return ini;
}
