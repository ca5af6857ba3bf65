/* PROXY protocol (HAProxy "proxy-protocol.txt", versions 1 and 2): a pure parser for the header a
 * load balancer puts in front of a relayed connection to tell the server who the real client is.
 * No I/O: the listener feeds the bytes read so far and acts on the verdict. Listeners accept the
 * header only from configured load-balancer addresses (spec §2: the receiver must never guess
 * whether a header is present). */
#ifndef FLOE_PROTO_PROXY_PROXY_H
#define FLOE_PROTO_PROXY_PROXY_H

#include <stddef.h>
#include <stdbool.h>
#include <sys/socket.h>

#define PROXY_MAX_HEADER 4096 /* larger v2 headers are rejected */
#define PROXY_V1_MAX_LINE 107 /* spec §2.1: longest v1 line, CRLF included */
#define PROXY_V2_MIN_HEADER 16 /* spec §2.2: signature, ver/cmd, fam, 2-byte length */
#define PROXY_ADDR_STRLEN 46  /* enough for proxy_addr_str() of any address (INET6_ADDRSTRLEN) */

struct proxy_header {
    int version;                  /* 1 or 2 */
    bool local;                   /* v2 LOCAL command, or v1 "UNKNOWN"/v2 AF_UNSPEC family:
                                     keep the connection's own addresses */
    struct sockaddr_storage src;  /* valid when !local: client address (AF_INET or AF_INET6, port set) */
    struct sockaddr_storage dst;  /* valid when !local: address the client connected to */
    size_t length;                /* bytes the header occupies at the start of the stream */
    size_t tlv_offset;            /* v2: the TLV vectors after the address block, unparsed, are
                                     buf[tlv_offset .. tlv_offset + tlv_length); tlv_length is 0
                                     when there are none. Both are 0 for v1, and for a LOCAL header
                                     whose family byte is unknown or whose block is shorter than
                                     that family's addresses */
    size_t tlv_length;
};

/* Parses a PROXY header at the start of buf[0..len).
 * Returns 1 and fills *hdr_r when a complete valid header is present (hdr_r->length bytes consumed);
 * 0 when the bytes so far are a valid prefix of a header and more input is needed;
 * -1 when the input is not a valid PROXY header (caller closes the connection).
 * Never reads beyond len. A v1 line longer than 107 bytes, a v2 header longer than PROXY_MAX_HEADER,
 * a bad signature, unknown version/command, a length too short for the address family, non-numeric
 * or out-of-range ports/addresses: -1.
 * *hdr_r is written only when 1 is returned. When src/dst are unused (local), they are zeroed
 * (ss_family AF_UNSPEC). v2 AF_UNIX addresses are reported as local: a socket path says nothing
 * useful about a client. The v2 LOCAL command ignores the family byte (spec §2.2). TLVs are not
 * interpreted; their whole extent is part of hdr_r->length. */
int proxy_parse(const unsigned char *buf, size_t len, struct proxy_header *hdr_r);

/* Formats hdr's source address as text ("192.0.2.1" or "2001:db8::1") into out; returns out.
 * Works for any AF_INET/AF_INET6 sockaddr_storage (src or dst). The result is always
 * NUL-terminated when outlen > 0; it is "" when the family is not AF_INET/AF_INET6 or outlen is too
 * small (PROXY_ADDR_STRLEN is always enough). */
const char *proxy_addr_str(const struct sockaddr_storage *ss, char *out, size_t outlen);

#endif
