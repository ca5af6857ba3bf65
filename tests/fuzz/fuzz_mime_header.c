/* libFuzzer harness for the header field parsers (proto/mime/header.c).
 *
 * Every input goes through all of them: field splitting (fields lie within the input, names
 * are printable), unfolding (no CR/LF/NUL left), RFC 2047 decoding (valid UTF-8 without
 * control characters but TAB), parameter parsing with RFC 2231 (every parameter has a name,
 * value and decoded value, decoded is valid UTF-8), address lists (mailboxes
 * always have a mailbox and a domain, group markers pair up) and charset conversion with the
 * first line of the input as the charset name (valid UTF-8 out). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/mime/header.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

static void valid_utf8(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        int l = mime_header_utf8_len((const unsigned char *)s + i, n - i);
        check(l > 0);
        i += (size_t)l;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;

    size_t pos = 0, fields = 0;
    struct mime_header_field f;
    while (mime_header_next_field(in, size, &pos, &f) == 1) {
        check(f.name >= in && f.name + f.name_len <= in + size && f.name_len > 0);
        check(f.value >= in && f.value + f.value_len <= in + size);
        for (size_t i = 0; i < f.name_len; i++)
            check(f.name[i] >= 33 && f.name[i] <= 126 && f.name[i] != ':');
        check(++fields <= size);
        check(pos <= size);
    }

    char *u = mime_header_unfold(in, size);
    check(u != NULL);
    check(strchr(u, '\n') == NULL && strlen(u) <= size);
    free(u);

    char *d = mime_header_decode(in, size);
    check(d != NULL);
    size_t dl = strlen(d);
    valid_utf8(d, dl);
    for (size_t i = 0; i < dl; i++)
        check((unsigned char)d[i] >= 32 || d[i] == '\t');
    free(d);

    char *token;
    struct mime_param *params;
    size_t n;
    check(mime_header_params_parse(in, size, &token, &params, &n) == 0);
    check(token != NULL && n <= MIME_HEADER_MAX_PARAMS);
    for (size_t i = 0; i < n; i++) {
        check(params[i].name && params[i].value && params[i].decoded);
        check(params[i].name[0] != '\0');
        valid_utf8(params[i].decoded, strlen(params[i].decoded));
        check(mime_header_param_find(params, n, params[i].name) != NULL);
    }
    free(token);
    mime_header_params_free(&params, n);
    check(params == NULL);

    struct mime_address *list;
    check(mime_header_addresses_parse(in, size, &list, &n) == 0);
    check(n <= MIME_HEADER_MAX_ADDRESSES);
    int open = 0;
    for (size_t i = 0; i < n; i++) {
        switch (list[i].kind) {
        case MIME_ADDRESS_MAILBOX:
            check(list[i].mailbox && list[i].mailbox[0] && list[i].domain && list[i].domain[0]);
            break;
        case MIME_ADDRESS_GROUP_START:
            check(open == 0 && list[i].mailbox && !list[i].domain);
            open = 1;
            break;
        case MIME_ADDRESS_GROUP_END:
            check(open == 1 && !list[i].mailbox && !list[i].domain);
            open = 0;
            break;
        }
    }
    check(open == 0 || n == MIME_HEADER_MAX_ADDRESSES);
    mime_header_addresses_free(&list, n);

    const char *nl = memchr(in, '\n', size);
    if (nl) {
        char cs[80];
        size_t cl = (size_t)(nl - in) < sizeof(cs) - 1 ? (size_t)(nl - in) : sizeof(cs) - 1;
        memcpy(cs, in, cl);
        cs[cl] = '\0';
        char *out;
        size_t ol;
        check(mime_header_charset_to_utf8(cs, nl + 1, size - (size_t)(nl + 1 - in), &out, &ol) ==
              0);
        valid_utf8(out, ol);
        free(out);
    }
    return 0;
}
