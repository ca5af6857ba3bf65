/* PROXY protocol header parser, versions 1 (text) and 2 (binary), after HAProxy's
 * "proxy-protocol.txt" (the "spec" in the comments below).
 *
 * proxy_parse() is called with everything read so far on a fresh connection and answers at once:
 * a complete header (1), a valid prefix that needs more bytes (0), or garbage (-1). The answer
 * depends only on the bytes, so the listener may call it again after every read. The first byte
 * picks the version: 'P' starts a v1 line, '\r' the v2 signature; anything else is rejected, so a
 * client speaking IMAP or HTTP straight at a PROXY listener is turned away on its first byte.
 *
 * v1 is parsed as a line of at most 107 bytes. Until the CRLF arrives the partial line is checked
 * field by field with prefix-aware checkers (a partial IPv6 address is accepted only while some
 * completion of it could still pass inet_pton), so 0 is returned only while the bytes could still
 * become a valid header. Complete address fields are decided by inet_pton itself.
 *
 * v2 is a fixed 16-byte header followed by a length-counted block: the addresses for the family,
 * then TLV vectors, which are not interpreted here but are located for callers that want them.
 * The length is known after 16 bytes, so oversized or too-short headers are rejected before their
 * body arrives. */
#include "proto/proxy/proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

/* spec §2.2: the v2 signature; contains a NUL, so never handled as a C string */
static const unsigned char v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

enum {
    V2_CMD_LOCAL = 0x0,
    V2_CMD_PROXY = 0x1,
    V2_FAM_UNSPEC = 0x0,
    V2_FAM_INET = 0x1,
    V2_FAM_INET6 = 0x2,
    V2_FAM_UNIX = 0x3,
    V2_ADDR_LEN_INET = 12,  /* 2 * 4 + 2 * 2 */
    V2_ADDR_LEN_INET6 = 36, /* 2 * 16 + 2 * 2 */
    V2_ADDR_LEN_UNIX = 216, /* 2 * 108 */
};

/* Longest v1 address field handed to inet_pton: an IPv6 address with an IPv4 tail. */
#define V1_ADDR_MAX 45

/* ---- helpers ------------------------------------------------------------------------------- */

/* 1 when p[0..n) starts with lit, 0 when p[0..n) is a proper prefix of lit, -1 otherwise. */
static int lit_prefix(const unsigned char *p, size_t n, const char *lit)
{
    size_t litlen = strlen(lit);
    size_t m = n < litlen ? n : litlen;

    if (memcmp(p, lit, m) != 0)
        return -1;
    return n >= litlen ? 1 : 0;
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_xdigit(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Could s[0..n) still grow into a dotted quad inet_pton(AF_INET) accepts? Exactly four decimal
 * parts of 0..255, no empty part, no leading zero (spec §2.1 forbids them; glibc agrees). */
static bool ipv4_prefix_ok(const unsigned char *s, size_t n)
{
    unsigned parts = 1, val = 0, digits = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (is_digit(c)) {
            if (digits == 1 && val == 0)
                return false;
            val = val * 10 + (unsigned)(c - '0');
            if (val > 255)
                return false;
            digits++;
        } else if (c == '.') {
            if (digits == 0 || parts == 4)
                return false;
            parts++;
            val = 0;
            digits = 0;
        } else {
            return false;
        }
    }
    return true;
}

/* Could s[0..n) still grow into an address inet_pton(AF_INET6) accepts (RFC 4291 §2.2)? Tracks
 * what inet_pton tracks: 16-bit groups completed, hex digits in the current group, whether "::"
 * was seen and whether a single ':' still waits for its group. "::" must stand for at least one
 * zero group, so with it at most 7 groups may be written; without it exactly 8. A dotted IPv4
 * tail counts as two groups and ends the address. */
static bool ipv6_prefix_ok(const unsigned char *s, size_t n)
{
    size_t i = 0, groups = 0, xdigits = 0, tok = 0;
    bool dcolon = false, colon_pending = false;

    if (n == 0)
        return true;
    if (s[0] == ':') {
        /* a leading ':' is only valid as the start of "::" */
        if (n == 1)
            return true;
        if (s[1] != ':')
            return false;
        dcolon = true;
        i = 2;
        tok = 2;
    }
    for (; i < n; i++) {
        unsigned char c = s[i];
        if (is_xdigit(c)) {
            if (xdigits == 4)
                return false;
            xdigits++;
            colon_pending = false;
        } else if (c == ':') {
            tok = i + 1;
            if (xdigits == 0) {
                /* second ':' of a "::" (a third one, or a second "::", is invalid) */
                if (dcolon)
                    return false;
                dcolon = true;
                colon_pending = false;
                continue;
            }
            if (groups == 8)
                return false;
            groups++;
            xdigits = 0;
            colon_pending = true;
        } else if (c == '.') {
            /* the current token becomes an IPv4 tail: two groups, and nothing may follow, so
             * the group count must already be final */
            if (dcolon ? groups > 5 : groups != 6)
                return false;
            return ipv4_prefix_ok(s + tok, n - tok);
        } else {
            return false;
        }
    }
    if (dcolon)
        return groups + (xdigits > 0 || colon_pending ? 1 : 0) <= 7;
    return groups < 8;
}

/* A decimal port, 0..65535, no sign, no leading zero (spec §2.1). partial: f[0..n) may be cut
 * short, so an empty field or a valid beginning passes. */
static bool port_ok(const unsigned char *f, size_t n, bool partial, unsigned *port_r)
{
    unsigned val = 0;

    if (n == 0)
        return partial;
    if (n > 5 || (n > 1 && f[0] == '0'))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(f[i]))
            return false;
        val = val * 10 + (unsigned)(f[i] - '0');
    }
    if (val > 65535)
        return false;
    *port_r = val;
    return true;
}

/* A complete v1 address field in family af, into *ss (port set later). */
static bool v1_addr_parse(const unsigned char *f, size_t n, int af, struct sockaddr_storage *ss)
{
    char text[V1_ADDR_MAX + 1];

    if (n == 0 || n > V1_ADDR_MAX)
        return false;
    /* inet_pton reads a C string: an embedded NUL would hide whatever follows it. The prefix
     * checkers admit only address characters, so run them first. */
    if (!(af == AF_INET ? ipv4_prefix_ok(f, n) : ipv6_prefix_ok(f, n)))
        return false;
    memcpy(text, f, n);
    text[n] = '\0';
    memset(ss, 0, sizeof(*ss));
    if (af == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        return inet_pton(AF_INET, text, &sin->sin_addr) == 1;
    }
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    sin6->sin6_family = AF_INET6;
    return inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1;
}

static void ss_set_port(struct sockaddr_storage *ss, unsigned port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

/* ---- version 1 ----------------------------------------------------------------------------- */

/* Checks line[0..n), a v1 line without its CRLF; complete says whether the CRLF followed it.
 * spec §2.1: "PROXY" SP ("TCP4" | "TCP6") SP src SP dst SP sport SP dport, or "PROXY" SP
 * "UNKNOWN" followed by anything. Returns 1 (hdr filled), 0 (valid so far, !complete) or -1. */
static int v1_parse_line(const unsigned char *line, size_t n, bool complete,
                         struct proxy_header *hdr)
{
    int r = lit_prefix(line, n, "PROXY ");
    if (r <= 0)
        return r == 0 && !complete ? 0 : -1;
    const unsigned char *p = line + 6;
    size_t m = n - 6;

    /* spec §2.1: after "UNKNOWN" the receiver ignores anything up to the CRLF */
    r = lit_prefix(p, m, "UNKNOWN");
    if (r == 1) {
        if (!complete)
            return 0;
        hdr->local = true;
        return 1;
    }
    if (r == 0)
        return complete ? -1 : 0;

    int af;
    int r4 = lit_prefix(p, m, "TCP4 ");
    int r6 = lit_prefix(p, m, "TCP6 ");
    if (r4 == 1)
        af = AF_INET;
    else if (r6 == 1)
        af = AF_INET6;
    else if (r4 == 0 || r6 == 0)
        return complete ? -1 : 0;
    else
        return -1;
    p += 5;
    m -= 5;

    /* four fields separated by single spaces: src, dst, sport, dport */
    struct sockaddr_storage src = {0}, dst = {0};
    unsigned sport = 0, dport = 0;
    size_t start = 0;
    int field = 0;
    for (;;) {
        size_t end = start;
        while (end < m && p[end] != ' ')
            end++;
        const unsigned char *f = p + start;
        size_t flen = end - start;
        bool last = end == m;
        bool partial = last && !complete;

        if (field > 3)
            return -1;
        if (flen == 0 && !partial)
            return -1; /* double space, trailing space or missing field */
        bool ok;
        switch (field) {
        case 0:
        case 1: {
            struct sockaddr_storage *ss = field == 0 ? &src : &dst;
            if (partial)
                ok = af == AF_INET ? ipv4_prefix_ok(f, flen) : ipv6_prefix_ok(f, flen);
            else
                ok = v1_addr_parse(f, flen, af, ss);
            break;
        }
        case 2:
            ok = port_ok(f, flen, partial, &sport);
            break;
        default:
            ok = port_ok(f, flen, partial, &dport);
            break;
        }
        if (!ok)
            return -1;
        if (last)
            break;
        start = end + 1;
        field++;
    }
    if (!complete)
        return 0;
    if (field != 3)
        return -1;
    ss_set_port(&src, sport);
    ss_set_port(&dst, dport);
    hdr->local = false;
    hdr->src = src;
    hdr->dst = dst;
    return 1;
}

static int v1_parse(const unsigned char *buf, size_t len, struct proxy_header *hdr)
{
    size_t eol = 0;
    bool complete = false;

    /* spec §2.1: the CRLF must come within 107 bytes, and a lone CR or LF never ends the line */
    for (size_t i = 0; i < len; i++) {
        if (i >= PROXY_V1_MAX_LINE - 1)
            return -1;
        if (buf[i] == '\n')
            return -1;
        if (buf[i] == '\r') {
            if (i + 1 == len)
                break; /* the LF may still come */
            if (buf[i + 1] != '\n')
                return -1;
            eol = i;
            complete = true;
            break;
        }
    }
    if (!complete) {
        /* judge what came so far, minus a trailing CR */
        size_t n = len > 0 && buf[len - 1] == '\r' ? len - 1 : len;
        return v1_parse_line(buf, n, false, hdr);
    }
    int r = v1_parse_line(buf, eol, true, hdr);
    if (r != 1)
        return r;
    hdr->version = 1;
    hdr->length = eol + 2;
    return 1;
}

/* ---- version 2 ----------------------------------------------------------------------------- */

/* Size of the address block for a v2 family nibble; -1 when the family is not one spec §2.2
 * defines. */
static int v2_addr_len(unsigned fam)
{
    switch (fam) {
    case V2_FAM_UNSPEC:
        return 0;
    case V2_FAM_INET:
        return V2_ADDR_LEN_INET;
    case V2_FAM_INET6:
        return V2_ADDR_LEN_INET6;
    case V2_FAM_UNIX:
        return V2_ADDR_LEN_UNIX;
    default:
        return -1;
    }
}

/* spec §2.2 "in practice, the following protocol bytes are expected": the only family/transport
 * combinations a PROXY command may carry. */
static bool v2_fam_valid(unsigned char fam)
{
    switch (fam) {
    case 0x00: /* UNSPEC */
    case 0x11: /* TCP over IPv4 */
    case 0x12: /* UDP over IPv4 */
    case 0x21: /* TCP over IPv6 */
    case 0x22: /* UDP over IPv6 */
    case 0x31: /* UNIX stream */
    case 0x32: /* UNIX datagram */
        return true;
    default:
        return false;
    }
}

static uint16_t be16(const unsigned char *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static int v2_parse(const unsigned char *buf, size_t len, struct proxy_header *hdr)
{
    size_t m = len < sizeof(v2_sig) ? len : sizeof(v2_sig);

    if (memcmp(buf, v2_sig, m) != 0)
        return -1;
    if (len <= sizeof(v2_sig))
        return 0;

    /* 13th byte: version 2 is the only one; commands LOCAL and PROXY only */
    unsigned ver = buf[12] >> 4, cmd = buf[12] & 0x0F;
    if (ver != 2 || (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY))
        return -1;
    if (len < 14)
        return 0;

    /* 14th byte: family and transport. LOCAL ignores them (spec §2.2: "discard the protocol
     * block including the family which is ignored"). */
    unsigned char fam = buf[13];
    if (cmd == V2_CMD_PROXY && !v2_fam_valid(fam))
        return -1;
    if (len < PROXY_V2_MIN_HEADER)
        return 0;

    size_t addr_len = be16(buf + 14);
    size_t total = PROXY_V2_MIN_HEADER + addr_len;
    if (total > PROXY_MAX_HEADER)
        return -1;
    int need = v2_addr_len(fam >> 4);
    if (cmd == V2_CMD_PROXY && addr_len < (size_t)need)
        return -1; /* too short for the family's addresses */
    if (len < total)
        return 0;

    memset(hdr, 0, sizeof(*hdr));
    hdr->version = 2;
    hdr->length = total;
    if (need >= 0 && addr_len >= (size_t)need) {
        hdr->tlv_offset = PROXY_V2_MIN_HEADER + (size_t)need;
        hdr->tlv_length = addr_len - (size_t)need;
    }

    const unsigned char *a = buf + PROXY_V2_MIN_HEADER;
    if (cmd == V2_CMD_LOCAL || (fam >> 4) == V2_FAM_UNSPEC || (fam >> 4) == V2_FAM_UNIX) {
        hdr->local = true;
        return 1;
    }
    if ((fam >> 4) == V2_FAM_INET) {
        struct sockaddr_in *s = (struct sockaddr_in *)&hdr->src;
        struct sockaddr_in *d = (struct sockaddr_in *)&hdr->dst;
        s->sin_family = AF_INET;
        d->sin_family = AF_INET;
        memcpy(&s->sin_addr, a, 4);
        memcpy(&d->sin_addr, a + 4, 4);
        memcpy(&s->sin_port, a + 8, 2); /* both in network order already */
        memcpy(&d->sin_port, a + 10, 2);
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&hdr->src;
        struct sockaddr_in6 *d = (struct sockaddr_in6 *)&hdr->dst;
        s->sin6_family = AF_INET6;
        d->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, a, 16);
        memcpy(&d->sin6_addr, a + 16, 16);
        memcpy(&s->sin6_port, a + 32, 2);
        memcpy(&d->sin6_port, a + 34, 2);
    }
    hdr->local = false;
    return 1;
}

/* ---- public -------------------------------------------------------------------------------- */

int proxy_parse(const unsigned char *buf, size_t len, struct proxy_header *hdr_r)
{
    struct proxy_header hdr;
    int r;

    if (hdr_r == NULL || (buf == NULL && len > 0))
        return -1;
    if (len == 0)
        return 0;
    memset(&hdr, 0, sizeof(hdr));
    if (buf[0] == 'P')
        r = v1_parse(buf, len, &hdr);
    else if (buf[0] == v2_sig[0])
        r = v2_parse(buf, len, &hdr);
    else
        r = -1;
    if (r == 1)
        *hdr_r = hdr;
    return r;
}

const char *proxy_addr_str(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
    const void *addr;

    if (out == NULL || outlen == 0)
        return out;
    out[0] = '\0';
    if (ss == NULL)
        return out;
    if (ss->ss_family == AF_INET)
        addr = &((const struct sockaddr_in *)ss)->sin_addr;
    else if (ss->ss_family == AF_INET6)
        addr = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    else
        return out;
    /* socklen_t is narrower than size_t; no address text needs more than PROXY_ADDR_STRLEN */
    socklen_t n = outlen > PROXY_ADDR_STRLEN ? PROXY_ADDR_STRLEN : (socklen_t)outlen;
    if (inet_ntop(ss->ss_family, addr, out, n) == NULL)
        out[0] = '\0';
    return out;
}
