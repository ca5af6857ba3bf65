/* The vendor admin XML API request parser (see request.h).
 *
 * libxml2 runs as a push parser with a SAX handler of our own that builds
 * nothing but the small tree the commands read: the <iq> attributes, the
 * command name and the elements below <commandparams>. Everything else is
 * dropped as it streams past. Before libxml2 sees a byte the body is checked
 * for size, NUL bytes (so no UTF-16/32) and for starting with markup, which
 * rules out every encoding but UTF-8 and ASCII-compatible ones; the encoding
 * declaration is ignored (XML_PARSE_IGNORE_ENC), so a document cannot talk
 * libxml2 into a converter.
 *
 * A DOCTYPE stops the parse at once (internalSubset / externalSubset /
 * entityDecl), so no entity can be declared, let alone expanded: "billion
 * laughs" and external entities never get started. Only the five predefined
 * entities and character references are decoded. Depth, element count and
 * text per element are counted as the parse runs and stop it when exceeded. */
#include "proto/vendorapi/request.h"

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Depth of the elements we care about: <iq> is 1, <query> 2, <commandname>
 * and <commandparams> 3, parameters 4 and below. */
enum { DEPTH_IQ = 1, DEPTH_QUERY = 2, DEPTH_CMD = 3, DEPTH_PARAM = 4 };

struct parse_state {
    xmlParserCtxtPtr ctxt;
    struct vapi_request *req;
    int depth;
    int elements;
    bool refused;  /* a limit was hit, a DTD was seen, memory ran out, or the root is not <iq> */
    bool query_ok; /* the first <query> was in admin:iq:rpc */
    bool seen_query, seen_cmdname, seen_params;
    bool in_query, in_cmdname, in_params; /* inside the first of each */
    size_t cmd_len;
    bool cmd_too_long;
    char cmd[VAPI_COMMAND_MAX + 1];
    /* open parameter elements: stack[i] is the node at depth DEPTH_PARAM + i */
    struct vapi_node *stack[VAPI_MAX_DEPTH];
    struct vapi_node **tail[VAPI_MAX_DEPTH + 1]; /* where the next child at each level goes */
};

static void refuse(struct parse_state *st)
{
    st->refused = true;
    xmlStopParser(st->ctxt);
}

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static char *lower_dup(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d == NULL)
        return NULL;
    for (size_t i = 0; i <= n; i++)
        d[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
    return d;
}

/* Copies an attribute value [v, end) into out when it fits, else leaves "". */
static void attr_copy(char *out, size_t outlen, const xmlChar *v, const xmlChar *end)
{
    size_t n = (size_t)(end - v);
    out[0] = '\0';
    if (n < outlen && memchr(v, '\0', n) == NULL) {
        memcpy(out, v, n);
        out[n] = '\0';
    }
}

static void on_start(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri,
                     int nb_namespaces, const xmlChar **namespaces, int nb_attributes,
                     int nb_defaulted, const xmlChar **attributes)
{
    struct parse_state *st = ctx;
    const char *name = (const char *)localname;

    if (st->refused)
        return;
    if (++st->depth > VAPI_MAX_DEPTH || ++st->elements > VAPI_MAX_ELEMENTS) {
        refuse(st);
        return;
    }
    if (st->depth == DEPTH_IQ) {
        if (strcasecmp(name, "iq") != 0) {
            refuse(st);
            return;
        }
        /* libxml2 passes attributes as (localname, prefix, URI, value, end) */
        for (int i = 0; i < nb_attributes; i++) {
            const xmlChar **a = attributes + 5 * i;
            const char *an = (const char *)a[0];
            if (a[1] != NULL)
                continue; /* a prefixed attribute is not ours */
            if (strcasecmp(an, "sid") == 0) {
                st->req->has_sid = true;
                attr_copy(st->req->sid, sizeof st->req->sid, a[3], a[4]);
            } else if (strcasecmp(an, "id") == 0) {
                attr_copy(st->req->id, sizeof st->req->id, a[3], a[4]);
            } else if (strcasecmp(an, "uid") == 0) {
                attr_copy(st->req->uid, sizeof st->req->uid, a[3], a[4]);
            }
        }
        return;
    }
    if (st->depth == DEPTH_QUERY) {
        if (strcasecmp(name, "query") == 0 && !st->seen_query) {
            st->seen_query = true;
            st->in_query = true;
            st->query_ok = uri != NULL && strcmp((const char *)uri, VAPI_NAMESPACE) == 0;
        }
        return;
    }
    if (st->depth == DEPTH_CMD) {
        if (!st->in_query)
            return;
        if (strcasecmp(name, "commandname") == 0 && !st->seen_cmdname) {
            st->seen_cmdname = st->in_cmdname = true;
        } else if (strcasecmp(name, "commandparams") == 0 && !st->seen_params) {
            st->seen_params = st->in_params = true;
            st->tail[0] = &st->req->params;
        }
        return;
    }
    if (st->in_cmdname) {
        /* markup inside the command name makes it unusable */
        st->cmd_too_long = true;
        return;
    }
    if (!st->in_params)
        return;
    int level = st->depth - DEPTH_PARAM;
    struct vapi_node *n = calloc(1, sizeof *n);
    if (n == NULL || (n->name = lower_dup(name)) == NULL || (n->text = calloc(1, 1)) == NULL) {
        if (n != NULL) {
            free(n->name);
            free(n);
        }
        refuse(st);
        return;
    }
    *st->tail[level] = n;
    st->tail[level] = &n->next;
    st->stack[level] = n;
    st->tail[level + 1] = &n->children;
}

static void on_end(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri)
{
    struct parse_state *st = ctx;

    if (st->refused)
        return;
    if (st->depth == DEPTH_QUERY)
        st->in_query = false;
    else if (st->depth == DEPTH_CMD) {
        st->in_cmdname = false;
        st->in_params = false;
    }
    st->depth--;
}

static void on_text(void *ctx, const xmlChar *ch, int len)
{
    struct parse_state *st = ctx;

    if (st->refused || len <= 0)
        return;
    if (st->in_cmdname && st->depth == DEPTH_CMD) {
        if (st->cmd_len + (size_t)len > VAPI_COMMAND_MAX + 64) {
            st->cmd_too_long = true; /* keep counting no further */
            return;
        }
        for (int i = 0; i < len; i++) {
            if (st->cmd_len < VAPI_COMMAND_MAX)
                st->cmd[st->cmd_len] = (char)ch[i];
            st->cmd_len++;
        }
        return;
    }
    if (!st->in_params || st->depth < DEPTH_PARAM)
        return;
    struct vapi_node *n = st->stack[st->depth - DEPTH_PARAM];
    if (n->text_len + (size_t)len > VAPI_MAX_TEXT) {
        refuse(st);
        return;
    }
    char *t = realloc(n->text, n->text_len + (size_t)len + 1);
    if (t == NULL) {
        refuse(st);
        return;
    }
    memcpy(t + n->text_len, ch, (size_t)len);
    n->text_len += (size_t)len;
    t[n->text_len] = '\0';
    n->text = t;
}

static void on_dtd(void *ctx, const xmlChar *name, const xmlChar *external_id,
                   const xmlChar *system_id)
{
    refuse(ctx);
}

static void on_entity_decl(void *ctx, const xmlChar *name, int type, const xmlChar *public_id,
                           const xmlChar *system_id, xmlChar *content)
{
    refuse(ctx);
}

/* No entity is ever defined: the predefined five are decoded by libxml2 before
 * it asks, every other reference is an error. */
static xmlEntityPtr on_get_entity(void *ctx, const xmlChar *name)
{
    return NULL;
}

static void on_error(void *ctx, xmlErrorPtr err)
{
    /* reported through the result; nothing is printed */
}

static void free_nodes(struct vapi_node *n)
{
    while (n != NULL) {
        struct vapi_node *next = n->next;
        free_nodes(n->children); /* recursion bounded by VAPI_MAX_DEPTH */
        free(n->name);
        /* parameters carry passwords: leave no copy in freed memory */
        explicit_bzero(n->text, n->text_len);
        free(n->text);
        free(n);
        n = next;
    }
}

void vapi_request_free(struct vapi_request **req)
{
    if (req == NULL || *req == NULL)
        return;
    free_nodes((*req)->params);
    free(*req);
    *req = NULL;
}

/* Cheap checks before libxml2 runs: bounded, no NUL, markup first (after an
 * optional UTF-8 byte order mark and white space). */
static bool precheck(const char *body, size_t len)
{
    size_t i = 0;

    if (body == NULL || len == 0 || len > VAPI_REQUEST_MAX || memchr(body, '\0', len) != NULL)
        return false;
    if (len >= 3 && memcmp(body, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    while (i < len && is_space((unsigned char)body[i]))
        i++;
    return i < len && body[i] == '<';
}

/* Trims cmd in place and lower-cases it; false when empty or unusable. */
static bool finish_command(struct parse_state *st)
{
    if (st->cmd_too_long || st->cmd_len > VAPI_COMMAND_MAX)
        return false;
    size_t a = 0, b = st->cmd_len;
    while (a < b && is_space((unsigned char)st->cmd[a]))
        a++;
    while (b > a && is_space((unsigned char)st->cmd[b - 1]))
        b--;
    if (a == b)
        return false;
    char *out = st->req->command;
    for (size_t i = a; i < b; i++) {
        unsigned char c = (unsigned char)st->cmd[i];
        /* command names are ASCII letters and digits */
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
        *out++ = (char)((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
    }
    *out = '\0';
    return true;
}

int vapi_request_parse(const char *body, size_t len, struct vapi_request **req_r)
{
    struct parse_state st;
    xmlSAXHandler sax;

    *req_r = NULL;
    if (!precheck(body, len))
        return VAPI_PARSE_MALFORMED;
    xmlInitParser();
    memset(&st, 0, sizeof st);
    st.req = calloc(1, sizeof *st.req);
    if (st.req == NULL)
        return VAPI_PARSE_MALFORMED;

    memset(&sax, 0, sizeof sax);
    sax.initialized = XML_SAX2_MAGIC; /* use startElementNs / endElementNs */
    sax.startElementNs = on_start;
    sax.endElementNs = on_end;
    sax.characters = on_text;
    sax.cdataBlock = on_text;
    sax.internalSubset = on_dtd;
    sax.externalSubset = on_dtd;
    sax.entityDecl = on_entity_decl;
    sax.getEntity = on_get_entity;
    sax.getParameterEntity = on_get_entity;
    sax.serror = on_error;

    xmlParserCtxtPtr ctxt = xmlCreatePushParserCtxt(&sax, &st, NULL, 0, NULL);
    if (ctxt == NULL) {
        vapi_request_free(&st.req);
        return VAPI_PARSE_MALFORMED;
    }
    st.ctxt = ctxt;
    /* no XML_PARSE_NOENT (no substitution), DTDLOAD, DTDATTR or HUGE: libxml2's own
     * limits stay on as a second line */
    if (xmlCtxtUseOptions(ctxt, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                                    XML_PARSE_IGNORE_ENC) != 0) {
        xmlFreeParserCtxt(ctxt);
        vapi_request_free(&st.req);
        return VAPI_PARSE_MALFORMED;
    }
    /* len <= VAPI_REQUEST_MAX, so it fits an int */
    int perr = xmlParseChunk(ctxt, body, (int)len, 1);
    bool well = perr == 0 && !st.refused && ctxt->wellFormed && ctxt->nsWellFormed;
    xmlFreeParserCtxt(ctxt);

    if (!well) {
        vapi_request_free(&st.req);
        return VAPI_PARSE_MALFORMED;
    }
    *req_r = st.req;
    if (!st.seen_query || !st.query_ok)
        return VAPI_PARSE_XMLNS;
    if (!st.seen_cmdname || !finish_command(&st))
        return VAPI_PARSE_NO_COMMAND;
    return VAPI_PARSE_OK;
}

const struct vapi_node *vapi_node_find(const struct vapi_node *first, const char *name)
{
    for (const struct vapi_node *n = first; n != NULL; n = n->next)
        if (strcasecmp(n->name, name) == 0)
            return n;
    return NULL;
}

const struct vapi_node *vapi_request_node(const struct vapi_request *req, const char *path)
{
    if (req == NULL || path == NULL)
        return NULL;
    const struct vapi_node *level = req->params, *found = NULL;
    const char *p = path;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        char step[64];
        if (n == 0 || n >= sizeof step)
            return NULL;
        memcpy(step, p, n);
        step[n] = '\0';
        found = vapi_node_find(level, step);
        if (found == NULL)
            return NULL;
        level = found->children;
        p += n;
        if (*p == '/')
            p++;
    }
    return found;
}

bool vapi_node_text(const struct vapi_node *n, char *out, size_t outlen)
{
    if (outlen == 0)
        return false;
    out[0] = '\0';
    if (n == NULL)
        return false;
    size_t a = 0, b = n->text_len;
    while (a < b && is_space((unsigned char)n->text[a]))
        a++;
    while (b > a && is_space((unsigned char)n->text[b - 1]))
        b--;
    if (b - a >= outlen)
        return false;
    memcpy(out, n->text + a, b - a);
    out[b - a] = '\0';
    return true;
}

bool vapi_request_text(const struct vapi_request *req, const char *path, char *out, size_t outlen)
{
    return vapi_node_text(vapi_request_node(req, path), out, outlen);
}
