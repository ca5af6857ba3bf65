/* Parsing of the client-supplied parts of admin API requests (api_request.h).
 * Everything here works on bounded buffers and never allocates. */
#include "node/http/api_request.h"

#include <ctype.h>
#include <string.h>

bool api_path_match(const char *pattern, const char *path, char p[API_PARAMS_MAX][API_PARAM_SIZE])
{
    int np = 0;
    while (*pattern && *path) {
        if (*pattern != '/' || *path != '/')
            return false;
        pattern++, path++;
        size_t pl = strcspn(pattern, "/"), sl = strcspn(path, "/");
        if (pattern[0] == '{') {
            if (sl == 0 || sl >= API_PARAM_SIZE || np == API_PARAMS_MAX)
                return false;
            memcpy(p[np], path, sl);
            p[np++][sl] = '\0';
        } else if (pl != sl || memcmp(pattern, path, sl) != 0) {
            return false;
        }
        pattern += pl, path += sl;
    }
    return !*pattern && !*path;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = (char)tolower((unsigned char)ch);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

int api_query_value(const char *s, size_t len, char *out, size_t outlen)
{
    size_t o = 0;
    if (outlen == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int ch = (unsigned char)s[i];
        if (ch == '%') {
            if (len - i < 3)
                return -1;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            ch = hi * 16 + lo;
            i += 2;
        } else if (ch == '+') {
            ch = ' ';
        }
        if (ch == 0 || o + 1 >= outlen)
            return -1;
        out[o++] = (char)ch;
    }
    out[o] = '\0';
    return 0;
}

static const char *skip_ows(const char *h)
{
    return h + strspn(h, " \t");
}

int api_if_match_parse(const char *h, struct api_if_match *m)
{
    memset(m, 0, sizeof *m);
    h = skip_ows(h);
    if (h[0] == '*' && *skip_ows(h + 1) == '\0') {
        m->any = true;
        return 0;
    }
    while (*h) {
        bool weak = strncmp(h, "W/", 2) == 0;
        if (weak)
            h += 2;
        const char *start, *end;
        if (*h == '"') {
            start = ++h;
            end = strchr(h, '"');
            if (end == NULL)
                return -1;
            h = end + 1;
        } else {
            start = h;
            end = h + strspn(h, "0123456789");
            if (end == h || weak)
                return -1;
            h = end;
        }
        size_t n = (size_t)(end - start);
        /* etagc = %x21 / %x23-7E / obs-text (the quote cannot occur here) */
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)start[i] < 0x21 || start[i] == 0x7f)
                return -1;
        if (!weak && n < API_ETAG_MAX && m->n < API_IF_MATCH_TAGS) {
            memcpy(m->tags[m->n], start, n);
            m->tags[m->n++][n] = '\0';
        }
        h = skip_ows(h);
        if (*h == ',')
            h = skip_ows(h + 1);
        else if (*h)
            return -1;
    }
    return m->n > 0 ? 0 : -1;
}

bool api_if_match_ok(const struct api_if_match *m, const char *etag)
{
    if (m->any)
        return true;
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->tags[i], etag) == 0)
            return true;
    return false;
}
