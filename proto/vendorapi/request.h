/* The request envelope of the vendor-compatible admin XML API (docs/VENDORAPI.md):
 *
 *   <iq sid="..."><query xmlns="admin:iq:rpc">
 *     <commandname>getaccountsinfolist</commandname>
 *     <commandparams> ... named parameters, nested ... </commandparams>
 *   </query></iq>
 *
 * Pure code: a request body in, a small tree out, no I/O. The XML is untrusted:
 * the body is bounded, libxml2 runs with network access and entity expansion
 * off, any DOCTYPE stops the parse, and depth, element count and text size are
 * bounded while parsing, not after.
 *
 * Names are matched by local name, ignoring case and namespaces, except that
 * <query> must be in the namespace admin:iq:rpc (clients send their elements
 * in that default namespace, or in none). */
#ifndef FLOE_PROTO_VENDORAPI_REQUEST_H
#define FLOE_PROTO_VENDORAPI_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

/* Larger bodies are refused unparsed. A real request is well under 4 KiB; a
 * long property list stays far below this. */
#define VAPI_REQUEST_MAX (256 * 1024)
/* Element nesting; the deepest real request (properties with typed values)
 * is about 7. */
#define VAPI_MAX_DEPTH 24
/* Elements in one request. */
#define VAPI_MAX_ELEMENTS 4096
/* Text of one element. */
#define VAPI_MAX_TEXT 65536
/* Attribute values kept from <iq>: longer ones are dropped. */
#define VAPI_SID_MAX 128
#define VAPI_ID_MAX 64
/* Command names; no real one is longer than 40 characters. */
#define VAPI_COMMAND_MAX 64

/* The namespace <query> must carry. */
#define VAPI_NAMESPACE "admin:iq:rpc"

enum vapi_parse_result {
    VAPI_PARSE_OK = 0,
    /* not well-formed, a DOCTYPE, over a limit, or a root other than <iq>:
     * the API's iq_root_tag_invalid */
    VAPI_PARSE_MALFORMED = -1,
    /* no <query> in admin:iq:rpc: iq_query_xmlns_invalid */
    VAPI_PARSE_XMLNS = -2,
    /* no usable <commandname>: invoker_commandname_invalid */
    VAPI_PARSE_NO_COMMAND = -3,
};

/* One element below <commandparams>. */
struct vapi_node {
    char *name; /* local name, lower-cased */
    char *text; /* its character data as sent (never NULL) */
    size_t text_len;
    struct vapi_node *children; /* first child element, NULL for a leaf */
    struct vapi_node *next;     /* next sibling */
};

struct vapi_request {
    bool has_sid;                       /* the sid attribute was present (even empty or too long) */
    char sid[VAPI_SID_MAX + 1];         /* "" when absent or longer than VAPI_SID_MAX */
    char id[VAPI_ID_MAX + 1];           /* the id attribute, "" when absent or too long */
    char uid[VAPI_ID_MAX + 1];          /* the uid attribute, likewise */
    char command[VAPI_COMMAND_MAX + 1]; /* trimmed, lower-cased; "" when missing */
    struct vapi_node *params;           /* first element inside <commandparams>, or NULL */
};

/* Parses body[0..len). Returns one of enum vapi_parse_result. *req_r is set
 * (to be freed with vapi_request_free) for VAPI_PARSE_OK, VAPI_PARSE_XMLNS and
 * VAPI_PARSE_NO_COMMAND, so that an error answer can echo the sid; it is NULL
 * for VAPI_PARSE_MALFORMED. */
int vapi_request_parse(const char *body, size_t len, struct vapi_request **req_r);

/* Frees a request and NULLs the pointer; NULL is fine. */
void vapi_request_free(struct vapi_request **req);

/* The first element called name (ASCII case-insensitive) among first and its
 * siblings, or NULL. */
const struct vapi_node *vapi_node_find(const struct vapi_node *first, const char *name);

/* The node at path below <commandparams>: names separated by '/', e.g.
 * "filter/namemask". NULL when any step is missing. */
const struct vapi_node *vapi_request_node(const struct vapi_request *req, const char *path);

/* The text at path, trimmed of XML white space, into out[outlen]. Returns
 * true when the element exists and its trimmed text fits; false otherwise
 * (out is then ""). */
bool vapi_request_text(const struct vapi_request *req, const char *path, char *out, size_t outlen);

/* The trimmed text of node n into out[outlen]; true when it fits. */
bool vapi_node_text(const struct vapi_node *n, char *out, size_t outlen);

#endif
