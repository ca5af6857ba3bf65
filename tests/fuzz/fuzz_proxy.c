/* libFuzzer harness for proto/proxy. Besides looking for memory errors it checks the properties a
 * listener relies on when it calls proxy_parse() after every read:
 *   - the verdict on a prefix is consistent with the verdict on the whole input: once a prefix is
 *     rejected every longer input is rejected, a complete header is reported with the same length
 *     whatever follows it, and every proper prefix of a complete header asks for more (0);
 *   - a reported header lies within the input and within PROXY_MAX_HEADER (v2) or 107 bytes (v1);
 *   - a non-local header carries AF_INET or AF_INET6 addresses that format as text.
 * Short prefixes are parsed from exact-size heap copies so that ASan sees any over-read. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proxy/proxy.h"

/* Prefixes up to this size get their own heap copy; longer ones reuse the input (only v2 headers
 * get that long, and their parser reads at most the header it was told about). */
#define COPY_LIMIT 512

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int parse_prefix(const uint8_t *data, size_t k, struct proxy_header *hdr)
{
    if (k > COPY_LIMIT || k == 0)
        return proxy_parse(data, k, hdr);
    unsigned char *copy = malloc(k);
    if (copy == NULL)
        abort();
    memcpy(copy, data, k);
    int r = proxy_parse(copy, k, hdr);
    free(copy);
    return r;
}

static void check_header(const struct proxy_header *hdr, size_t size)
{
    char text[PROXY_ADDR_STRLEN];

    if (hdr->length == 0 || hdr->length > size)
        abort();
    if (hdr->version == 1) {
        if (hdr->length > PROXY_V1_MAX_LINE || hdr->tlv_offset != 0 || hdr->tlv_length != 0)
            abort();
    } else if (hdr->version == 2) {
        if (hdr->length < PROXY_V2_MIN_HEADER || hdr->length > PROXY_MAX_HEADER)
            abort();
        if (hdr->tlv_offset + hdr->tlv_length > hdr->length)
            abort();
    } else {
        abort();
    }
    if (hdr->local)
        return;
    const struct sockaddr_storage *ends[2] = {&hdr->src, &hdr->dst};
    for (int i = 0; i < 2; i++) {
        if (ends[i]->ss_family != AF_INET && ends[i]->ss_family != AF_INET6)
            abort();
        if (proxy_addr_str(ends[i], text, sizeof(text))[0] == '\0')
            abort();
    }
    if (hdr->src.ss_family != hdr->dst.ss_family)
        abort();
}

static bool same_header(const struct proxy_header *a, const struct proxy_header *b)
{
    return a->version == b->version && a->local == b->local && a->length == b->length &&
           a->tlv_offset == b->tlv_offset && a->tlv_length == b->tlv_length &&
           memcmp(&a->src, &b->src, sizeof(a->src)) == 0 &&
           memcmp(&a->dst, &b->dst, sizeof(a->dst)) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxy_header full, part;

    int r = proxy_parse(data, size, &full);
    if (r < -1 || r > 1)
        abort();
    if (r == 1)
        check_header(&full, size);

    bool rejected = false;
    for (size_t k = 0; k < size; k++) {
        int rk = parse_prefix(data, k, &part);
        if (rk == 1) {
            /* a complete header is complete whatever follows it */
            if (r != 1 || !same_header(&part, &full) || part.length > k)
                abort();
        } else if (rk == 0) {
            if (rejected)
                abort(); /* rejected input became acceptable again */
            if (r == 1 && k >= full.length)
                abort();
        } else if (rk == -1) {
            rejected = true;
            if (r != -1)
                abort();
        } else {
            abort();
        }
    }
    return 0;
}
