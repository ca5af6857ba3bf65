/* libFuzzer harness for the input checks in storage/: password rules, SCRAM
 * verifier parsing, domain names and local parts. The first byte picks the
 * target, the rest is the input string. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include "storage/password.h"
#include "storage/directory.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    char *s = malloc(size);
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    char err[256];
    switch (data[0] % 4) {
    case 0:
        if (password_check(s, err, sizeof err) == 0) {
            size_t n = strlen(s);
            if (n == 0 || n > PASSWORD_MAX_LEN || strchr(s, '\r') || strchr(s, '\n'))
                abort();
        }
        break;
    case 1: {
        int iter;
        unsigned char salt[PASSWORD_SCRAM_SALT_MAX], st[32], sv[32];
        size_t sl;
        if (password_scram_parse(s, &iter, salt, &sl, st, sv) == 0) {
            /* canonical: re-encoding gives back the same string */
            char a[100], b[50], c[50], out[400];
            if (sl < 1 || sl > PASSWORD_SCRAM_SALT_MAX || iter < 1 ||
                iter > PASSWORD_SCRAM_MAX_ITERATIONS)
                abort();
            EVP_EncodeBlock((unsigned char *)a, salt, (int)sl);
            EVP_EncodeBlock((unsigned char *)b, st, 32);
            EVP_EncodeBlock((unsigned char *)c, sv, 32);
            snprintf(out, sizeof out, "SCRAM-SHA-256$%d:%s$%s:%s", iter, a, b, c);
            if (strcmp(out, s) != 0)
                abort();
        }
        break;
    }
    case 2: {
        char out[DIR_DOMAIN_MAX + 1];
        if (dir_domain_name_check(s, out, sizeof out, err, sizeof err) == 0) {
            size_t n = strlen(out);
            if (n > DIR_DOMAIN_MAX || n != strlen(s) || !strchr(out, '.') ||
                strspn(out, "abcdefghijklmnopqrstuvwxyz0123456789.-") != n)
                abort();
        }
        break;
    }
    case 3:
        if (dir_local_part_check(s, err, sizeof err) == 0) {
            size_t n = strlen(s);
            if (n == 0 || n > DIR_LOCAL_PART_MAX || s[0] == '.' || s[n - 1] == '.' ||
                strstr(s, "..") || strchr(s, '@') || strchr(s, ' '))
                abort();
        }
        break;
    }
    free(s);
    return 0;
}
