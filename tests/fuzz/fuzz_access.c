/* Fuzzes access_list_parse and access_list_match.
 *
 * Input: NUL-separated segments. The first is the list spec; each later one is a
 * pattern definition "name=spec". The list is matched against a fixed set of
 * addresses plus one IPv4 and one IPv6 address taken from the input's last bytes.
 *
 * Besides the sanitizers, it checks properties that must hold for any input:
 *   - an error leaves a non-empty one-line message, a success leaves none;
 *   - an IPv4 address and its v4-mapped IPv6 form always get the same answer;
 *   - access_allows agrees with access_list_match in every mode;
 *   - a spec that is a plain address parses to one entry matching that address;
 *   - the spec wrapped in a pattern ("[wrap]") parses to the same list, unless the
 *     extra level hits the nesting or expansion bound. */
#include "node/access.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define WRAP_NAME "fuzz wrap"

static const char *const fixed_addrs[] = {
    "0.0.0.0",
    "255.255.255.255",
    "10.1.2.3",
    "192.168.1.1",
    "127.0.0.1",
    "::",
    "::1",
    "2001:db8::1",
    "fe80::1",
    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "64:ff9b::a01:203",
};
#define NFIXED (sizeof(fixed_addrs) / sizeof(fixed_addrs[0]))
#define NADDRS (NFIXED + 2)

static struct sockaddr_storage make_addr(int family, const uint8_t *bytes)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, bytes, 4);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, bytes, 16);
    }
    return ss;
}

static void build_addrs(const uint8_t *data, size_t size, struct sockaddr_storage *out)
{
    for (size_t i = 0; i < NFIXED; i++) {
        uint8_t b[16];
        int family = strchr(fixed_addrs[i], ':') ? AF_INET6 : AF_INET;
        if (inet_pton(family, fixed_addrs[i], b) != 1)
            abort();
        out[i] = make_addr(family, b);
    }
    uint8_t tail[20] = {0};
    size_t n = size < sizeof(tail) ? size : sizeof(tail);
    memcpy(tail, data + size - n, n);
    out[NFIXED] = make_addr(AF_INET, tail);
    out[NFIXED + 1] = make_addr(AF_INET6, tail + 4);
}

static const struct sockaddr *sa(const struct sockaddr_storage *ss)
{
    return (const struct sockaddr *)ss;
}

static void check_result(const struct access_list *l, const char *err, size_t errlen)
{
    size_t n = strnlen(err, errlen);
    if (n >= errlen || strchr(err, '\n') || strchr(err, '\r'))
        abort();
    if (l ? n != 0 : n == 0)
        abort();
    if (l && access_list_count(l) > ACCESS_MAX_ENTRIES)
        abort();
}

static void check_matches(const struct access_list *l, const struct sockaddr_storage *addrs,
                          bool *results)
{
    for (size_t i = 0; i < NADDRS; i++) {
        const struct sockaddr *a = sa(&addrs[i]);
        bool m = access_list_match(l, a);
        results[i] = m;
        if (access_allows(ACCESS_GRANT, l, a) != m || access_allows(ACCESS_DENY, l, a) == m ||
            !access_allows(ACCESS_OFF, l, a))
            abort();
        if (addrs[i].ss_family == AF_INET) {
            uint8_t mapped[16] = {0};
            mapped[10] = mapped[11] = 0xff;
            memcpy(mapped + 12, &((const struct sockaddr_in *)a)->sin_addr, 4);
            struct sockaddr_storage m6 = make_addr(AF_INET6, mapped);
            if (access_list_match(l, sa(&m6)) != m)
                abort();
        }
    }
}

/* A spec that is exactly one address literal must give one entry matching it. */
static void check_literal(const char *spec, const struct access_list *l)
{
    uint8_t b[16];
    int family = strchr(spec, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(family, spec, b) != 1)
        return;
    if (!l || access_list_count(l) != 1)
        abort();
    struct sockaddr_storage ss = make_addr(family, b);
    if (!access_list_match(l, sa(&ss)))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 2 * ACCESS_MAX_SPEC)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    struct access_patterns *pats = access_patterns_new();
    if (!pats) {
        free(text);
        return 0;
    }
    const char *spec = text;
    for (size_t i = strlen(text); i < size;) {
        char *def = text + i + 1; /* the segment after the NUL at i */
        size_t len = strlen(def);
        char *eq = strchr(def, '=');
        if (eq) {
            *eq = '\0';
            if (strcasecmp(def, WRAP_NAME) != 0)
                (void)access_patterns_set(pats, def, eq + 1); /* bad names are refused */
            *eq = '=';
        }
        i += 1 + len;
    }

    struct sockaddr_storage addrs[NADDRS];
    build_addrs(data, size, addrs);

    char err[128];
    struct access_list *l = access_list_parse(spec, pats, err, sizeof(err));
    check_result(l, err, sizeof(err));
    check_literal(spec, l);
    bool direct[NADDRS] = {false};
    if (l)
        check_matches(l, addrs, direct);

    if (access_patterns_set(pats, WRAP_NAME, spec) == 0) {
        char werr[128];
        struct access_list *w = access_list_parse("[" WRAP_NAME "]", pats, werr, sizeof(werr));
        check_result(w, werr, sizeof(werr));
        if (!l && w)
            abort();
        if (l && !w && !strstr(werr, "nested deeper") && !strstr(werr, "expansion exceeds"))
            abort();
        if (l && w) {
            bool wrapped[NADDRS] = {false};
            check_matches(w, addrs, wrapped);
            if (access_list_count(w) != access_list_count(l) ||
                memcmp(direct, wrapped, sizeof(direct)) != 0)
                abort();
        }
        access_list_free(&w);
    }

    access_list_free(&l);
    access_patterns_free(&pats);
    free(text);
    return 0;
}
