/* layer: proto */
/* Unit tests for proto/proxy: every valid v1/v2 form, incremental feeding, trailing data, and
 * malformed input rejected as early as the bytes allow. Every call gets a heap copy of exactly
 * the bytes it may read, so an over-read shows up under ASan. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proxy/proxy.h"

static const unsigned char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* proxy_parse on an exact-size heap copy of buf[0..len). */
static int parse(const void *buf, size_t len, struct proxy_header *hdr)
{
    unsigned char *copy = malloc(len > 0 ? len : 1);
    assert_non_null(copy);
    if (len > 0)
        memcpy(copy, buf, len);
    int r = proxy_parse(len > 0 ? copy : NULL, len, hdr);
    free(copy);
    return r;
}

static int parse_str(const char *s, struct proxy_header *hdr)
{
    return parse(s, strlen(s), hdr);
}

/* Builds a v2 header: signature, ver/cmd, fam, big-endian length, then body. Returns its size. */
static size_t make_v2(unsigned char *out, size_t outlen, unsigned char ver_cmd, unsigned char fam,
                      const unsigned char *body, size_t bodylen)
{
    assert_true(16 + bodylen <= outlen);
    assert_true(bodylen <= 0xFFFF);
    memcpy(out, sig, 12);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (unsigned char)(bodylen >> 8);
    out[15] = (unsigned char)(bodylen & 0xFF);
    if (bodylen > 0)
        memcpy(out + 16, body, bodylen);
    return 16 + bodylen;
}

/* Every proper prefix of a valid header must ask for more; the whole must parse with the
 * expected length, and so must the whole followed by more bytes. */
static void assert_incremental(const unsigned char *buf, size_t total)
{
    struct proxy_header hdr;
    for (size_t k = 0; k < total; k++) {
        int r = parse(buf, k, &hdr);
        if (r != 0)
            fail_msg("prefix of %zu/%zu bytes returned %d", k, total, r);
    }
    assert_int_equal(parse(buf, total, &hdr), 1);
    assert_int_equal(hdr.length, total);
}

static void assert_in4(const struct sockaddr_storage *ss, const char *addr, unsigned port)
{
    char text[PROXY_ADDR_STRLEN];
    assert_int_equal(ss->ss_family, AF_INET);
    assert_string_equal(proxy_addr_str(ss, text, sizeof(text)), addr);
    assert_int_equal(ntohs(((const struct sockaddr_in *)ss)->sin_port), port);
}

static void assert_in6(const struct sockaddr_storage *ss, const char *addr, unsigned port)
{
    char text[PROXY_ADDR_STRLEN];
    assert_int_equal(ss->ss_family, AF_INET6);
    assert_string_equal(proxy_addr_str(ss, text, sizeof(text)), addr);
    assert_int_equal(ntohs(((const struct sockaddr_in6 *)ss)->sin6_port), port);
}

/* ---- v1 valid ---- */

static void test_v1_tcp4(void **state)
{
    struct proxy_header hdr;
    const char *line = "PROXY TCP4 192.0.2.1 198.51.100.7 56324 993\r\n";

    assert_int_equal(parse_str(line, &hdr), 1);
    assert_int_equal(hdr.version, 1);
    assert_false(hdr.local);
    assert_int_equal(hdr.length, strlen(line));
    assert_in4(&hdr.src, "192.0.2.1", 56324);
    assert_in4(&hdr.dst, "198.51.100.7", 993);
    assert_int_equal(hdr.tlv_offset, 0);
    assert_int_equal(hdr.tlv_length, 0);
    assert_incremental((const unsigned char *)line, strlen(line));
}

static void test_v1_tcp4_extremes(void **state)
{
    struct proxy_header hdr;
    /* spec §2.1: the longest TCP4 line, 56 bytes */
    const char *max = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
    assert_int_equal(strlen(max), 56);
    assert_int_equal(parse_str(max, &hdr), 1);
    assert_in4(&hdr.src, "255.255.255.255", 65535);
    assert_in4(&hdr.dst, "255.255.255.255", 65535);
    assert_incremental((const unsigned char *)max, strlen(max));

    const char *min = "PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n";
    assert_int_equal(parse_str(min, &hdr), 1);
    assert_in4(&hdr.src, "0.0.0.0", 0);
    assert_in4(&hdr.dst, "0.0.0.0", 0);
    assert_incremental((const unsigned char *)min, strlen(min));
}

static void test_v1_tcp6(void **state)
{
    struct proxy_header hdr;
    const char *line = "PROXY TCP6 2001:db8::1 2001:DB8:0:0:0:0:0:2 40000 143\r\n";

    assert_int_equal(parse_str(line, &hdr), 1);
    assert_int_equal(hdr.version, 1);
    assert_false(hdr.local);
    assert_int_equal(hdr.length, strlen(line));
    assert_in6(&hdr.src, "2001:db8::1", 40000);
    assert_in6(&hdr.dst, "2001:db8::2", 143);
    assert_incremental((const unsigned char *)line, strlen(line));
}

static void test_v1_tcp6_longest(void **state)
{
    struct proxy_header hdr;
    /* spec §2.1: the longest TCP6 line, 104 bytes */
    const char *line = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                       "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_int_equal(strlen(line), 104);
    assert_int_equal(parse_str(line, &hdr), 1);
    assert_in6(&hdr.src, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    assert_incremental((const unsigned char *)line, strlen(line));
}

/* Every prefix of lines carrying each of these IPv6 spellings must wait for more input: the
 * partial-address checker must never reject what inet_pton would accept. */
static void test_v1_tcp6_forms(void **state)
{
    static const char *const addrs[] = {
        "::",
        "::1",
        "1::",
        "1:2::",
        "1::8",
        "::ffff:192.0.2.1",
        "::192.0.2.1",
        "1:2:3:4:5:6:192.0.2.1",
        "1::6:192.0.2.1",
        "1:2:3:4:5::192.0.2.1",
        "1:2:3:4:5:6:7::",
        "::2:3:4:5:6:7:8",
        "1:2:3::5:6:7:8",
        "0000:0000:0000:0000:0000:0000:0000:0001",
        "fe80::AbCd:0:1",
    };
    char line[160];
    struct proxy_header hdr;

    for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
        int n = snprintf(line, sizeof(line), "PROXY TCP6 %s %s 1 2\r\n", addrs[i], addrs[i]);
        assert_true(n > 0 && (size_t)n < sizeof(line));
        struct in6_addr want;
        assert_int_equal(inet_pton(AF_INET6, addrs[i], &want), 1);
        assert_int_equal(parse_str(line, &hdr), 1);
        assert_memory_equal(&((struct sockaddr_in6 *)&hdr.src)->sin6_addr, &want, sizeof(want));
        assert_incremental((const unsigned char *)line, (size_t)n);
    }
}

static void test_v1_unknown(void **state)
{
    struct proxy_header hdr;

    /* spec §2.1: short form */
    const char *shortf = "PROXY UNKNOWN\r\n";
    assert_int_equal(parse_str(shortf, &hdr), 1);
    assert_int_equal(hdr.version, 1);
    assert_true(hdr.local);
    assert_int_equal(hdr.length, 15);
    assert_int_equal(hdr.src.ss_family, AF_UNSPEC);
    assert_int_equal(hdr.dst.ss_family, AF_UNSPEC);
    assert_incremental((const unsigned char *)shortf, strlen(shortf));

    /* the worst case, 107 bytes: anything after UNKNOWN is ignored */
    const char *worst = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_int_equal(strlen(worst), 107);
    assert_int_equal(parse_str(worst, &hdr), 1);
    assert_true(hdr.local);
    assert_int_equal(hdr.length, 107);
    assert_incremental((const unsigned char *)worst, strlen(worst));

    assert_int_equal(parse_str("PROXY UNKNOWN not even addresses\r\n", &hdr), 1);
    assert_true(hdr.local);
}

static void test_v1_trailing_data(void **state)
{
    struct proxy_header hdr;
    const char *line = "PROXY TCP4 192.0.2.1 192.0.2.2 1000 143\r\n";
    char buf[128];

    int n = snprintf(buf, sizeof(buf), "%sa1 LOGIN x y\r\n", line);
    assert_true(n > 0);
    assert_int_equal(parse(buf, (size_t)n, &hdr), 1);
    assert_int_equal(hdr.length, strlen(line));

    /* a second PROXY line after the first is application data, not part of the header */
    n = snprintf(buf, sizeof(buf), "PROXY UNKNOWN\r\nPROXY UNKNOWN\r\n");
    assert_int_equal(parse(buf, (size_t)n, &hdr), 1);
    assert_int_equal(hdr.length, 15);

    /* binary data right after the line */
    memcpy(buf, line, strlen(line));
    memset(buf + strlen(line), 0xFF, 10);
    assert_int_equal(parse(buf, strlen(line) + 10, &hdr), 1);
    assert_int_equal(hdr.length, strlen(line));
}

/* ---- v1 malformed ---- */

static void test_v1_malformed(void **state)
{
    static const char *const bad[] = {
        "proxy TCP4 192.0.2.1 192.0.2.2 1 2\r\n",      /* lowercase */
        "PROXY tcp4 192.0.2.1 192.0.2.2 1 2\r\n",      /* lowercase family */
        "PROXY  TCP4 192.0.2.1 192.0.2.2 1 2\r\n",     /* double space */
        "PROXY TCP4  192.0.2.1 192.0.2.2 1 2\r\n",     /* double space */
        "PROXY TCP4 192.0.2.1  192.0.2.2 1 2\r\n",     /* double space */
        "PROXY TCP4 192.0.2.1 192.0.2.2  1 2\r\n",     /* double space */
        "PROXY TCP4 192.0.2.1 192.0.2.2 1  2\r\n",     /* double space */
        "PROXY TCP4 192.0.2.1 192.0.2.2 1 2 \r\n",     /* trailing space */
        "PROXY\tTCP4 192.0.2.1 192.0.2.2 1 2\r\n",     /* tab */
        "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n",        /* LF only */
        "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\rX",       /* CR only */
        "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n\r\n",    /* LF CRLF */
        "PROXY TCP4 192.0.2.1 192.0.2.2 1 65536\r\n",  /* port out of range */
        "PROXY TCP4 192.0.2.1 192.0.2.2 99999 2\r\n",  /* port out of range */
        "PROXY TCP4 192.0.2.1 192.0.2.2 123456 2\r\n", /* port too long */
        "PROXY TCP4 192.0.2.1 192.0.2.2 +1 2\r\n",     /* sign */
        "PROXY TCP4 192.0.2.1 192.0.2.2 -1 2\r\n",     /* sign */
        "PROXY TCP4 192.0.2.1 192.0.2.2 01 2\r\n",     /* leading zero (spec §2.1) */
        "PROXY TCP4 192.0.2.1 192.0.2.2 1 0x10\r\n",   /* not decimal */
        "PROXY TCP4 192.0.2.1 192.0.2.2 1 a\r\n",      /* not numeric */
        "PROXY TCP4 192.0.2.1 192.0.2.2 1\r\n",        /* missing port */
        "PROXY TCP4 192.0.2.1 192.0.2.2\r\n",          /* missing ports */
        "PROXY TCP4 192.0.2.1\r\n",                    /* missing fields */
        "PROXY TCP4\r\n",                              /* missing fields */
        "PROXY TCP4 \r\n",                             /* missing fields */
        "PROXY\r\n",                                   /* no family */
        "PROXY \r\n",                                  /* no family */
        "PROXY TCP4 192.0.2.1 192.0.2.2 1 2 3\r\n",    /* extra field */
        "PROXY TCP4 2001:db8::1 2001:db8::2 1 2\r\n",  /* IPv6 in TCP4 */
        "PROXY TCP6 192.0.2.1 192.0.2.2 1 2\r\n",      /* IPv4 in TCP6 */
        "PROXY TCP4 192.0.2.256 192.0.2.2 1 2\r\n",    /* octet out of range */
        "PROXY TCP4 192.0.2.01 192.0.2.2 1 2\r\n",     /* leading zero (octal) */
        "PROXY TCP4 192.0.2 192.0.2.2 1 2\r\n",        /* three octets */
        "PROXY TCP4 192.0.2.1.1 192.0.2.2 1 2\r\n",    /* five octets */
        "PROXY TCP4 192.0..2 192.0.2.2 1 2\r\n",       /* empty octet */
        "PROXY TCP4 host.example 192.0.2.2 1 2\r\n",   /* name */
        "PROXY TCP6 2001:db8:::1 ::1 1 2\r\n",         /* ":::" */
        "PROXY TCP6 1::2::3 ::1 1 2\r\n",              /* two "::" */
        "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n",    /* nine groups */
        "PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n",        /* seven groups, no "::" */
        "PROXY TCP6 1:2:3:4:5:6:7:8:: ::1 1 2\r\n",    /* "::" standing for nothing */
        "PROXY TCP6 12345::1 ::1 1 2\r\n",             /* five hex digits */
        "PROXY TCP6 ::1: ::1 1 2\r\n",                 /* trailing ':' */
        "PROXY TCP6 :1 ::1 1 2\r\n",                   /* single leading ':' */
        "PROXY TCP6 ::1%eth0 ::1 1 2\r\n",             /* zone id */
        "PROXY TCP6 [::1] ::1 1 2\r\n",                /* brackets */
        "PROXY TCP5 192.0.2.1 192.0.2.2 1 2\r\n",      /* unknown family */
        "PROXY UDP4 192.0.2.1 192.0.2.2 1 2\r\n",      /* unknown family */
        "PROXY UNKNOW\r\n",                            /* truncated keyword */
        "PROXY UNKNOWN\n",                             /* LF only */
        "PROXY UNKNOWN a\nb\r\n",                      /* lone LF inside */
        "PROXY UNKNOWN a\rb\r\n",                      /* lone CR inside */
        "PROXY UNKNOWN\r\r\n",                         /* CR CR LF */
        "PROXYTCP4 192.0.2.1 192.0.2.2 1 2\r\n",       /* no space */
        "GET / HTTP/1.1\r\n",                          /* not PROXY at all */
        "PUT / HTTP/1.1\r\n",                          /* starts like it */
        "* OK IMAP4rev1\r\n",
    };
    struct proxy_header hdr;

    /* a NUL inside an address must not cut it short for inet_pton */
    static const char nul4[] = "PROXY TCP4 192.0.2.1\0x 192.0.2.2 1 2\r\n";
    assert_int_equal(parse(nul4, sizeof(nul4) - 1, &hdr), -1);
    static const char nul6[] = "PROXY TCP6 ::1 ::2\0:zz 1 2\r\n";
    assert_int_equal(parse(nul6, sizeof(nul6) - 1, &hdr), -1);
    static const char nulport[] = "PROXY TCP4 192.0.2.1 192.0.2.2 1\0 2\r\n";
    assert_int_equal(parse(nulport, sizeof(nulport) - 1, &hdr), -1);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&hdr, 0xA5, sizeof(hdr));
        int r = parse_str(bad[i], &hdr);
        if (r != -1)
            fail_msg("\"%s\" returned %d", bad[i], r);
        /* the output is left alone on failure */
        unsigned char canary[sizeof(hdr)];
        memset(canary, 0xA5, sizeof(canary));
        assert_memory_equal(&hdr, canary, sizeof(hdr));
    }
}

static void test_v1_too_long(void **state)
{
    struct proxy_header hdr;
    char buf[300];

    /* 107 bytes without CRLF: cannot be a header any more */
    memset(buf, 0, sizeof(buf));
    memcpy(buf, "PROXY UNKNOWN ", 14);
    memset(buf + 14, 'x', sizeof(buf) - 14);
    assert_int_equal(parse(buf, 106, &hdr), 0);
    assert_int_equal(parse(buf, 107, &hdr), -1);
    assert_int_equal(parse(buf, sizeof(buf), &hdr), -1);

    /* a 108-byte UNKNOWN line: the CRLF comes one byte too late */
    memcpy(buf + 106, "\r\n", 2);
    assert_int_equal(parse(buf, 106, &hdr), 0);
    assert_int_equal(parse(buf, 107, &hdr), -1);
    assert_int_equal(parse(buf, 108, &hdr), -1);

    /* the same line one byte shorter is the 107-byte maximum */
    memcpy(buf + 105, "\r\n", 2);
    assert_int_equal(parse(buf, 106, &hdr), 0);
    assert_int_equal(parse(buf, 107, &hdr), 1);
    assert_int_equal(hdr.length, 107);
}

/* Partial input that can no longer become a header is rejected without waiting for the CRLF. */
static void test_v1_early_reject(void **state)
{
    static const char *const bad[] = {
        "G",
        "GET /",
        "PROXX",
        "proxy",
        "PROXY X",
        "PROXY TCP7",
        "PROXY TCP4  ",
        "PROXY TCP4 1.2.3.4.",
        "PROXY TCP4 256",
        "PROXY TCP4 01",
        "PROXY TCP4 1..",
        "PROXY TCP4 .",
        "PROXY TCP4 1:",
        "PROXY TCP4 1.2.3 ",
        "PROXY TCP6 :1",
        "PROXY TCP6 :::",
        "PROXY TCP6 1::2::",
        "PROXY TCP6 12345",
        "PROXY TCP6 1:2:3:4:5:6:7:8:",
        "PROXY TCP6 1:2:3:4:5:6:7:8::",
        "PROXY TCP6 1:2:3:4:5:6:7::8",
        "PROXY TCP6 1:2:3:4:5:1.",
        "PROXY TCP6 1::2:3:4:5:6:7.",
        "PROXY TCP6 1::2:3:4:5:6:7:",
        "PROXY TCP6 ::1.2.3.4:",
        "PROXY TCP6 ::a.",
        "PROXY TCP6 ::1.2.3.4.",
        "PROXY TCP6 ::g",
        "PROXY TCP4 1.2.3.4 5.6.7.8 65536",
        "PROXY TCP4 1.2.3.4 5.6.7.8 00",
        "PROXY TCP4 1.2.3.4 5.6.7.8 +",
        "PROXY TCP4 1.2.3.4 5.6.7.8 80 443 ",
        "PROXY TCP4 1.2.3.4 5.6.7.8 80 443x",
        "PROXY UNKNOWN\n",
        "PROXY TCP4 1.2.3.4\r ",
    };
    static const char *const good[] = {
        "P",
        "PRO",
        "PROXY",
        "PROXY ",
        "PROXY T",
        "PROXY TCP",
        "PROXY TCP4",
        "PROXY U",
        "PROXY UNKNOWN",
        "PROXY UNKNOWN\r",
        "PROXY UNKNOWNxyz",
        "PROXY TCP4 ",
        "PROXY TCP4 1",
        "PROXY TCP4 1.2.3.4",
        "PROXY TCP4 255.255.255.25",
        "PROXY TCP4 0",
        "PROXY TCP4 1.2.3.4 ",
        "PROXY TCP6 :",
        "PROXY TCP6 ::",
        "PROXY TCP6 1:2:3:4:5:6:7:",
        "PROXY TCP6 1:2:3:4:5:6:1.2",
        "PROXY TCP6 1::2:3:4:5:6",
        "PROXY TCP6 1::2:3:4:5:6.7",
        "PROXY TCP6 1::2:3:4:5:6:",
        "PROXY TCP4 1.2.3.4 5.6.7.8 6553",
        "PROXY TCP4 1.2.3.4 5.6.7.8 0",
        "PROXY TCP4 1.2.3.4 5.6.7.8 0 65535",
        "PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r",
    };
    struct proxy_header hdr;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = parse_str(bad[i], &hdr);
        if (r != -1)
            fail_msg("\"%s\" returned %d, want -1", bad[i], r);
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int r = parse_str(good[i], &hdr);
        if (r != 0)
            fail_msg("\"%s\" returned %d, want 0", good[i], r);
    }
}

/* ---- v2 valid ---- */

static const unsigned char body4[] = {192,  0,    2,   1, /* src 192.0.2.1 */
                                      198,  51,   100, 7, /* dst 198.51.100.7 */
                                      0xDB, 0x84,         /* sport 56196 */
                                      0x03, 0xE1};        /* dport 993 */

static void test_v2_tcp4(void **state)
{
    unsigned char buf[64];
    struct proxy_header hdr;
    size_t n = make_v2(buf, sizeof(buf), 0x21, 0x11, body4, sizeof(body4));

    assert_int_equal(n, 28);
    assert_int_equal(parse(buf, n, &hdr), 1);
    assert_int_equal(hdr.version, 2);
    assert_false(hdr.local);
    assert_int_equal(hdr.length, 28);
    assert_in4(&hdr.src, "192.0.2.1", 56196);
    assert_in4(&hdr.dst, "198.51.100.7", 993);
    assert_int_equal(hdr.tlv_offset, 28);
    assert_int_equal(hdr.tlv_length, 0);
    assert_incremental(buf, n);

    /* UDP over IPv4 carries addresses the same way */
    n = make_v2(buf, sizeof(buf), 0x21, 0x12, body4, sizeof(body4));
    assert_int_equal(parse(buf, n, &hdr), 1);
    assert_false(hdr.local);
    assert_in4(&hdr.src, "192.0.2.1", 56196);
}

static void test_v2_tcp4_tlv(void **state)
{
    unsigned char body[64], buf[128];
    struct proxy_header hdr;

    memcpy(body, body4, sizeof(body4));
    /* PP2_TYPE_AUTHORITY "mail.example", then a PP2_TYPE_NOOP of 3 bytes */
    static const unsigned char tlv[] = {0x02, 0x00, 0x0C, 'm', 'a',  'i',  'l',  '.', 'e', 'x', 'a',
                                        'm',  'p',  'l',  'e', 0x04, 0x00, 0x03, 0,   0,   0};
    memcpy(body + sizeof(body4), tlv, sizeof(tlv));
    size_t n = make_v2(buf, sizeof(buf), 0x21, 0x11, body, sizeof(body4) + sizeof(tlv));

    assert_int_equal(parse(buf, n, &hdr), 1);
    assert_int_equal(hdr.length, n);
    assert_false(hdr.local);
    assert_in4(&hdr.src, "192.0.2.1", 56196);
    assert_int_equal(hdr.tlv_offset, 28);
    assert_int_equal(hdr.tlv_length, sizeof(tlv));
    assert_memory_equal(buf + hdr.tlv_offset, tlv, sizeof(tlv));
    assert_incremental(buf, n);
}

static void test_v2_tcp6(void **state)
{
    unsigned char body[64], buf[128];
    struct proxy_header hdr;

    assert_int_equal(inet_pton(AF_INET6, "2001:db8::1", body), 1);
    assert_int_equal(inet_pton(AF_INET6, "2001:db8:ffff::2", body + 16), 1);
    body[32] = 0xFF; /* sport 65535 */
    body[33] = 0xFF;
    body[34] = 0x00; /* dport 143 */
    body[35] = 0x8F;
    size_t n = make_v2(buf, sizeof(buf), 0x21, 0x21, body, 36);

    assert_int_equal(parse(buf, n, &hdr), 1);
    assert_int_equal(hdr.version, 2);
    assert_false(hdr.local);
    assert_int_equal(hdr.length, 52);
    assert_in6(&hdr.src, "2001:db8::1", 65535);
    assert_in6(&hdr.dst, "2001:db8:ffff::2", 143);
    assert_int_equal(hdr.tlv_offset, 52);
    assert_int_equal(hdr.tlv_length, 0);
    assert_incremental(buf, n);

    /* with a TLV (PP2_TYPE_UNIQUE_ID of 4 bytes) */
    static const unsigned char tlv[] = {0x05, 0x00, 0x04, 1, 2, 3, 4};
    memcpy(body + 36, tlv, sizeof(tlv));
    n = make_v2(buf, sizeof(buf), 0x21, 0x21, body, 36 + sizeof(tlv));
    assert_int_equal(parse(buf, n, &hdr), 1);
    assert_int_equal(hdr.length, 52 + sizeof(tlv));
    assert_in6(&hdr.dst, "2001:db8:ffff::2", 143);
    assert_int_equal(hdr.tlv_offset, 52);
    assert_int_equal(hdr.tlv_length, sizeof(tlv));
    assert_incremental(buf, n);

    /* UDP over IPv6 */
    n = make_v2(buf, sizeof(buf), 0x21, 0x22, body, 36);
    assert_int_equal(parse(buf, n, &hdr), 1);
    assert_false(hdr.local);
    assert_in6(&hdr.src, "2001:db8::1", 65535);
}

static void test_v2_local(void **state)
{
    unsigned char buf[64];
    struct proxy_header hdr;

    /* LOCAL with no address block: a health check */
    size_t n = make_v2(buf, sizeof(buf), 0x20, 0x00, NULL, 0);
    assert_int_equal(n, 16);
    assert_int_equal(parse(buf, n, &hdr), 1);
    assert_int_equal(hdr.version, 2);
    assert_true(hdr.local);
    assert_int_equal(hdr.length, 16);
    assert_int_equal(hdr.src.ss_family, AF_UNSPEC);
    assert_int_equal(hdr.tlv_offset, 16);
    assert_int_equal(hdr.tlv_length, 0);
    assert_incremental(buf, n);

    /* LOCAL still skips whatever address block it carries (spec §2.2) */
    n = make_v2(buf, sizeof(buf), 0x20, 0x11, body4, sizeof(body4));
    assert_int_equal(parse(buf, n, &hdr), 1);
    assert_true(hdr.local);
    assert_int_equal(hdr.length, 28);
    assert_int_equal(hdr.src.ss_family, AF_UNSPEC);
    assert_incremental(buf, n);

    /* ... and ignores the family byte entirely, even one too short for its addresses */
    n = make_v2(buf, sizeof(buf), 0x20, 0xFF, body4, 3);
    assert_int_equal(parse(buf, n, &hdr), 1);
    assert_true(hdr.local);
    assert_int_equal(hdr.length, 19);
    assert_int_equal(hdr.tlv_offset, 0);
    assert_int_equal(hdr.tlv_length, 0);
    n = make_v2(buf, sizeof(buf), 0x20, 0x21, body4, 12);
    assert_int_equal(parse(buf, n, &hdr), 1);
    assert_true(hdr.local);
    assert_int_equal(hdr.tlv_length, 0);
}

static void test_v2_unspec_and_unix(void **state)
{
    unsigned char body[256], buf[300];
    struct proxy_header hdr;

    /* PROXY with AF_UNSPEC: keep the connection's addresses; the block is TLVs */
    static const unsigned char tlv[] = {0x04, 0x00, 0x01, 0};
    size_t n = make_v2(buf, sizeof(buf), 0x21, 0x00, tlv, sizeof(tlv));
    assert_int_equal(parse(buf, n, &hdr), 1);
    assert_true(hdr.local);
    assert_int_equal(hdr.length, 20);
    assert_int_equal(hdr.tlv_offset, 16);
    assert_int_equal(hdr.tlv_length, 4);

    /* AF_UNIX stream and datagram: reported as local */
    memset(body, 0, sizeof(body));
    memcpy(body, "/run/lb.sock", 12);
    for (unsigned char fam = 0x31; fam <= 0x32; fam++) {
        n = make_v2(buf, sizeof(buf), 0x21, fam, body, 216);
        assert_int_equal(parse(buf, n, &hdr), 1);
        assert_true(hdr.local);
        assert_int_equal(hdr.length, 232);
        assert_int_equal(hdr.tlv_offset, 232);
        assert_int_equal(hdr.tlv_length, 0);
        assert_incremental(buf, n);
    }
    /* AF_UNIX too short for its two 108-byte paths */
    n = make_v2(buf, sizeof(buf), 0x21, 0x31, body, 215);
    assert_int_equal(parse(buf, 16, &hdr), -1);
    assert_int_equal(parse(buf, n, &hdr), -1);
}

static void test_v2_trailing_data(void **state)
{
    unsigned char buf[128];
    struct proxy_header hdr;
    size_t n = make_v2(buf, sizeof(buf), 0x21, 0x11, body4, sizeof(body4));

    memcpy(buf + n, "GET / HTTP/1.1\r\n", 16);
    assert_int_equal(parse(buf, n + 16, &hdr), 1);
    assert_int_equal(hdr.length, n);
    assert_in4(&hdr.src, "192.0.2.1", 56196);

    /* trailing bytes that look like another header are still not consumed */
    size_t m = make_v2(buf + n, sizeof(buf) - n, 0x20, 0x00, NULL, 0);
    assert_int_equal(parse(buf, n + m, &hdr), 1);
    assert_int_equal(hdr.length, n);
}

static void test_v2_max_header(void **state)
{
    static unsigned char body[PROXY_MAX_HEADER], buf[PROXY_MAX_HEADER + 64];
    struct proxy_header hdr;

    memcpy(body, body4, sizeof(body4));
    /* exactly PROXY_MAX_HEADER bytes: accepted */
    size_t n = make_v2(buf, sizeof(buf), 0x21, 0x11, body, PROXY_MAX_HEADER - 16);
    assert_int_equal(n, PROXY_MAX_HEADER);
    assert_int_equal(parse(buf, n - 1, &hdr), 0);
    assert_int_equal(parse(buf, n, &hdr), 1);
    assert_int_equal(hdr.length, PROXY_MAX_HEADER);
    assert_int_equal(hdr.tlv_length, PROXY_MAX_HEADER - 28);

    /* one byte more: rejected as soon as the length field is seen */
    n = make_v2(buf, sizeof(buf), 0x21, 0x11, body, PROXY_MAX_HEADER - 15);
    assert_int_equal(parse(buf, 15, &hdr), 0);
    assert_int_equal(parse(buf, 16, &hdr), -1);
    assert_int_equal(parse(buf, n, &hdr), -1);

    /* the largest length the field can hold */
    buf[14] = 0xFF;
    buf[15] = 0xFF;
    assert_int_equal(parse(buf, 16, &hdr), -1);
}

/* ---- v2 malformed ---- */

static void test_v2_bad_signature(void **state)
{
    unsigned char buf[64];
    struct proxy_header hdr;
    size_t n = make_v2(buf, sizeof(buf), 0x21, 0x11, body4, sizeof(body4));

    for (size_t i = 0; i < 12; i++) {
        unsigned char save = buf[i];
        buf[i] ^= 0x20;
        /* rejected as soon as the wrong byte is there, and with the whole header */
        assert_int_equal(parse(buf, i + 1, &hdr), -1);
        assert_int_equal(parse(buf, n, &hdr), -1);
        buf[i] = save;
    }
    /* a v2 signature cut short by a NUL-terminated-string reader */
    assert_int_equal(parse("\r\n\r\n", 4, &hdr), 0);
    assert_int_equal(parse("\r\n\r\n\r", 5, &hdr), -1);
    assert_int_equal(parse("\r\n", 2, &hdr), 0);
    assert_int_equal(parse("\n", 1, &hdr), -1);
}

static void test_v2_bad_version_command(void **state)
{
    unsigned char buf[64];
    struct proxy_header hdr;

    for (unsigned v = 0; v < 16; v++) {
        for (unsigned c = 0; c < 16; c++) {
            size_t n =
                make_v2(buf, sizeof(buf), (unsigned char)(v << 4 | c), 0x11, body4, sizeof(body4));
            int want = v == 2 && c <= 1 ? 1 : -1;
            assert_int_equal(parse(buf, n, &hdr), want);
            /* decided from the 13th byte on */
            assert_int_equal(parse(buf, 13, &hdr), want == 1 ? 0 : -1);
        }
    }
}

static void test_v2_bad_family(void **state)
{
    unsigned char body[64], buf[128];
    struct proxy_header hdr;

    memset(body, 0, sizeof(body));
    for (unsigned f = 0; f < 256; f++) {
        bool valid = f == 0x00 || f == 0x11 || f == 0x12 || f == 0x21 || f == 0x22;
        size_t n = make_v2(buf, sizeof(buf), 0x21, (unsigned char)f, body, 36);
        int r = parse(buf, n, &hdr);
        if (f == 0x31 || f == 0x32) {
            assert_int_equal(r, -1); /* 36 bytes are too short for AF_UNIX */
            continue;
        }
        if (r != (valid ? 1 : -1))
            fail_msg("family 0x%02x returned %d", f, r);
        /* decided from the 14th byte on */
        assert_int_equal(parse(buf, 14, &hdr), valid ? 0 : -1);
    }
}

static void test_v2_short_for_family(void **state)
{
    unsigned char body[64], buf[128];
    struct proxy_header hdr;

    memset(body, 0, sizeof(body));
    /* too short for the address family: rejected once the length is known */
    size_t n = make_v2(buf, sizeof(buf), 0x21, 0x11, body, 11);
    assert_int_equal(parse(buf, 16, &hdr), -1);
    assert_int_equal(parse(buf, n, &hdr), -1);
    n = make_v2(buf, sizeof(buf), 0x21, 0x12, body, 0);
    assert_int_equal(parse(buf, n, &hdr), -1);
    n = make_v2(buf, sizeof(buf), 0x21, 0x21, body, 35);
    assert_int_equal(parse(buf, 16, &hdr), -1);
    assert_int_equal(parse(buf, n, &hdr), -1);
    n = make_v2(buf, sizeof(buf), 0x21, 0x22, body, 12);
    assert_int_equal(parse(buf, n, &hdr), -1);
}

static void test_v2_truncated(void **state)
{
    unsigned char body[64], buf[128];
    struct proxy_header hdr;

    memset(body, 0, sizeof(body));
    size_t n = make_v2(buf, sizeof(buf), 0x21, 0x21, body, 36);
    /* a truncated header is not an error yet: the rest may follow */
    for (size_t k = 0; k < n; k++)
        assert_int_equal(parse(buf, k, &hdr), 0);
    assert_int_equal(parse(buf, n, &hdr), 1);
}

/* ---- misc ---- */

static void test_args(void **state)
{
    struct proxy_header hdr;
    assert_int_equal(proxy_parse(NULL, 0, &hdr), 0);
    assert_int_equal(proxy_parse(NULL, 5, &hdr), -1);
    assert_int_equal(proxy_parse((const unsigned char *)"PROXY UNKNOWN\r\n", 15, NULL), -1);
}

static void test_addr_str(void **state)
{
    struct sockaddr_storage ss;
    char out[PROXY_ADDR_STRLEN + 8];

    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, "192.0.2.1", &((struct sockaddr_in *)&ss)->sin_addr), 1);
    assert_ptr_equal(proxy_addr_str(&ss, out, sizeof(out)), out);
    assert_string_equal(out, "192.0.2.1");

    /* too small: empty, and nothing written past outlen */
    memset(out, 'Z', sizeof(out));
    assert_string_equal(proxy_addr_str(&ss, out, 9), "");
    for (size_t i = 9; i < sizeof(out); i++)
        assert_int_equal(out[i], 'Z');
    assert_string_equal(proxy_addr_str(&ss, out, 10), "192.0.2.1");
    out[0] = 'Z';
    assert_ptr_equal(proxy_addr_str(&ss, out, 0), out);
    assert_int_equal(out[0], 'Z');

    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::1", &((struct sockaddr_in6 *)&ss)->sin6_addr),
                     1);
    assert_string_equal(proxy_addr_str(&ss, out, sizeof(out)), "2001:db8::1");

    char big[PROXY_ADDR_STRLEN];
    assert_int_equal(inet_pton(AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
                               &((struct sockaddr_in6 *)&ss)->sin6_addr),
                     1);
    assert_string_equal(proxy_addr_str(&ss, big, sizeof(big)),
                        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");

    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    out[0] = 'Z';
    assert_string_equal(proxy_addr_str(&ss, out, sizeof(out)), "");
    ss.ss_family = AF_UNSPEC;
    assert_string_equal(proxy_addr_str(&ss, out, sizeof(out)), "");
    out[0] = 'Z';
    assert_string_equal(proxy_addr_str(NULL, out, sizeof(out)), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),
        cmocka_unit_test(test_v1_tcp4_extremes),
        cmocka_unit_test(test_v1_tcp6),
        cmocka_unit_test(test_v1_tcp6_longest),
        cmocka_unit_test(test_v1_tcp6_forms),
        cmocka_unit_test(test_v1_unknown),
        cmocka_unit_test(test_v1_trailing_data),
        cmocka_unit_test(test_v1_malformed),
        cmocka_unit_test(test_v1_too_long),
        cmocka_unit_test(test_v1_early_reject),
        cmocka_unit_test(test_v2_tcp4),
        cmocka_unit_test(test_v2_tcp4_tlv),
        cmocka_unit_test(test_v2_tcp6),
        cmocka_unit_test(test_v2_local),
        cmocka_unit_test(test_v2_unspec_and_unix),
        cmocka_unit_test(test_v2_trailing_data),
        cmocka_unit_test(test_v2_max_header),
        cmocka_unit_test(test_v2_bad_signature),
        cmocka_unit_test(test_v2_bad_version_command),
        cmocka_unit_test(test_v2_bad_family),
        cmocka_unit_test(test_v2_short_for_family),
        cmocka_unit_test(test_v2_truncated),
        cmocka_unit_test(test_args),
        cmocka_unit_test(test_addr_str),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
