/* Client auto-configuration documents: the Autodiscover POX request parser and the builders for
 * the POX, Autodiscover v2 JSON and Thunderbird autoconfig responses.
 *
 * The request parser trusts nothing. Before libxml2 sees a byte the body is checked for size, for
 * NUL bytes and for starting with markup, which rules out every encoding but UTF-8 (the encoding
 * declaration is ignored, so a document cannot talk libxml2 into a converter). libxml2 then runs
 * as a push parser with our own SAX handler: the default tree-building callbacks, wrapped so that
 * a DOCTYPE (internal or external subset, entity declaration) stops the parser on the spot and
 * element depth and count are bounded while parsing, not after. No entity is ever declared, so
 * nothing can be expanded; network access is off as well. The small tree left is then checked
 * against the request schema by hand.
 *
 * The builders append to a bounded string buffer. Every caller-supplied string goes through an
 * escaper that also validates it (UTF-8, and for XML only characters XML 1.0 can carry), so a
 * hostile address can neither break out of an element nor produce a document a client rejects:
 * a string that cannot be represented makes the builder return NULL instead. */
#include "proto/autodiscover/autodiscover.h"
#include "proto/text/utf8.h"

#include <libxml/SAX2.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* [MS-OXDSCLI] and [MS-ASCMD] §6.3/§6.4 namespaces. The old Exchange 2007 documentation spells
 * the request examples with "https://"; clients send "http://", and both are accepted. */
#define NS_PREFIX "http://schemas.microsoft.com/exchange/autodiscover/"
#define NS_PREFIX_S "https://schemas.microsoft.com/exchange/autodiscover/"
#define NS_REQ_OUTLOOK "outlook/requestschema/2006"
#define NS_REQ_MOBILESYNC "mobilesync/requestschema/2006"
#define NS_RESP_OUTLOOK "outlook/responseschema/2006a"
#define NS_RESP_MOBILESYNC "mobilesync/responseschema/2006"
#define NS_RESPONSE NS_PREFIX "responseschema/2006"

#define SCHEMA_TEXT_MAX 256 /* longest AcceptableResponseSchema value looked at */

/* ---- bounded string buffer ----------------------------------------------------------------- */

struct sbuf {
    char *p;
    size_t len, cap;
    bool bad; /* sticky: out of memory, over AUTODISCOVER_MAX_OUTPUT or unrepresentable input */
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
    if (b->bad)
        return;
    if (n > AUTODISCOVER_MAX_OUTPUT - b->len) {
        b->bad = true;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->bad = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_int(struct sbuf *b, int v)
{
    char tmp[16];
    size_t n = 0;
    unsigned u = v < 0 ? 0u - (unsigned)v : (unsigned)v;

    do {
        tmp[sizeof tmp - 1 - n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0 && n < sizeof tmp - 1);
    if (v < 0)
        tmp[sizeof tmp - 1 - n++] = '-';
    sb_put(b, tmp + sizeof tmp - n, n);
}

/* Returns the document, or NULL (freeing the buffer) when anything went wrong. */
static char *sb_finish(struct sbuf *b)
{
    if (b->bad || b->p == NULL) {
        free(b->p);
        b->p = NULL;
        return NULL;
    }
    return b->p;
}

/* Decodes one UTF-8 sequence at s[0..n): returns its length and the code point in *cp, or 0
 * for an invalid sequence (overlong, surrogate, above U+10FFFF, truncated). */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    uint32_t c = s[0];
    size_t len;
    uint32_t min;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, min = 0x80, c &= 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, min = 0x800, c &= 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, min = 0x10000, c &= 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return len;
}

/* XML 1.0 §2.2 Char, narrowed: no C0 controls at all (not even TAB/LF/CR, which no address,
 * host or URL contains and which attribute normalisation would mangle) and no DEL. */
static bool xml_char_ok(uint32_t cp)
{
    return cp >= 0x20 && cp != 0x7F && cp != 0xFFFE && cp != 0xFFFF;
}

/* Appends s as XML character data / attribute value (both quotes escaped, so it is safe in
 * either). Marks the buffer bad when s cannot be represented. */
static void sb_xml(struct sbuf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    size_t run = 0; /* bytes of p[0..) not yet copied */

    while (run < n && !b->bad) {
        uint32_t cp;
        size_t k = utf8_next(p + run, n - run, &cp);
        const char *rep = NULL;

        if (k == 0 || !xml_char_ok(cp)) {
            b->bad = true;
            return;
        }
        switch (cp) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break; /* "]]>" must not appear in text */
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&apos;";
            break;
        default:
            break;
        }
        if (rep == NULL) {
            run += k;
            continue;
        }
        sb_put(b, (const char *)p, run);
        sb_str(b, rep);
        p += run + 1;
        n -= run + 1;
        run = 0;
    }
    sb_put(b, (const char *)p, run);
}

/* Appends s as the inside of a JSON string (RFC 8259 §7). Invalid UTF-8 marks the buffer bad. */
static void sb_json(struct sbuf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);

    for (size_t i = 0; i < n && !b->bad;) {
        uint32_t cp;
        size_t k = utf8_next(p + i, n - i, &cp);

        if (k == 0) {
            b->bad = true;
            return;
        }
        if (cp == '"' || cp == '\\') {
            char esc[2] = {'\\', (char)cp};
            sb_put(b, esc, 2);
        } else if (cp < 0x20 || cp == 0x7F) {
            char esc[6] = {'\\', 'u', '0', '0', hex[cp >> 4], hex[cp & 0xF]};
            sb_put(b, esc, 6);
        } else {
            sb_put(b, (const char *)p + i, k);
        }
        i += k;
    }
}

/* Appends <indent><name>escaped text</name>\n. */
static void sb_elem(struct sbuf *b, const char *indent, const char *name, const char *text)
{
    sb_str(b, indent);
    sb_str(b, "<");
    sb_str(b, name);
    sb_str(b, ">");
    sb_xml(b, text);
    sb_str(b, "</");
    sb_str(b, name);
    sb_str(b, ">\n");
}

static void sb_elem_int(struct sbuf *b, const char *indent, const char *name, int v)
{
    sb_str(b, indent);
    sb_str(b, "<");
    sb_str(b, name);
    sb_str(b, ">");
    sb_int(b, v);
    sb_str(b, "</");
    sb_str(b, name);
    sb_str(b, ">\n");
}

/* ---- settings ------------------------------------------------------------------------------ */

enum tls_mode { TLS_IMPLICIT, TLS_STARTTLS, TLS_NONE, TLS_INVALID };

static enum tls_mode tls_mode(const char *s)
{
    if (s == NULL)
        return TLS_INVALID;
    if (strcmp(s, "tls") == 0)
        return TLS_IMPLICIT;
    if (strcmp(s, "starttls") == 0)
        return TLS_STARTTLS;
    if (strcmp(s, "none") == 0)
        return TLS_NONE;
    return TLS_INVALID;
}

/* One mail service taken from the settings. */
struct service {
    const char *host;
    int port;
    enum tls_mode tls;
};

/* 1 when the service is configured, 0 when it is left out (no host), -1 when it is invalid. */
static int service_get(const char *host, int port, const char *tls, struct service *out)
{
    if (host == NULL)
        return 0;
    if (host[0] == '\0' || port < 1 || port > 65535)
        return -1;
    out->host = host;
    out->port = port;
    out->tls = tls_mode(tls);
    return out->tls == TLS_INVALID ? -1 : 1;
}

/* ---- POX request parser -------------------------------------------------------------------- */

struct parse_state {
    int depth;
    int elements;
    bool refused; /* a limit was hit or a DTD was seen */
};

static void parse_refuse(void *ctx)
{
    xmlParserCtxtPtr ctxt = ctx;
    struct parse_state *st = ctxt->_private;

    st->refused = true;
    xmlStopParser(ctxt);
}

static void on_internal_subset(void *ctx, const xmlChar *name, const xmlChar *external_id,
                               const xmlChar *system_id)
{
    parse_refuse(ctx);
}

static void on_entity_decl(void *ctx, const xmlChar *name, int type, const xmlChar *public_id,
                           const xmlChar *system_id, xmlChar *content)
{
    parse_refuse(ctx);
}

static void on_start_element(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                             const xmlChar *uri, int nb_namespaces, const xmlChar **namespaces,
                             int nb_attributes, int nb_defaulted, const xmlChar **attributes)
{
    xmlParserCtxtPtr ctxt = ctx;
    struct parse_state *st = ctxt->_private;

    if (++st->depth > AUTODISCOVER_MAX_DEPTH || ++st->elements > AUTODISCOVER_MAX_ELEMENTS) {
        parse_refuse(ctx);
        return;
    }
    xmlSAX2StartElementNs(ctx, localname, prefix, uri, nb_namespaces, namespaces, nb_attributes,
                          nb_defaulted, attributes);
}

static void on_end_element(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                           const xmlChar *uri)
{
    xmlParserCtxtPtr ctxt = ctx;
    struct parse_state *st = ctxt->_private;

    st->depth--;
    xmlSAX2EndElementNs(ctx, localname, prefix, uri);
}

static void on_error(void *ctx, xmlErrorPtr err)
{
    /* errors are reported through the return value; nothing is printed */
}

void autodiscover_init(void)
{
    xmlInitParser();
}

static bool is_xml_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Matches a namespace or schema URI against NS_PREFIX|NS_PREFIX_S followed by tail. */
static bool ns_is(const char *uri, const char *tail)
{
    size_t pl;

    if (uri == NULL)
        return false;
    if (strncmp(uri, NS_PREFIX, strlen(NS_PREFIX)) == 0)
        pl = strlen(NS_PREFIX);
    else if (strncmp(uri, NS_PREFIX_S, strlen(NS_PREFIX_S)) == 0)
        pl = strlen(NS_PREFIX_S);
    else
        return false;
    return strcmp(uri + pl, tail) == 0;
}

static bool elem_is(const xmlNode *n, const char *name, const xmlChar *ns)
{
    return n->type == XML_ELEMENT_NODE && n->ns != NULL && xmlStrEqual(n->ns->href, ns) &&
           xmlStrEqual(n->name, (const xmlChar *)name);
}

/* Checks that the non-element children of a container are only white space and comments. */
static bool container_ok(const xmlNode *parent)
{
    for (const xmlNode *c = parent->children; c != NULL; c = c->next) {
        if (c->type == XML_ELEMENT_NODE || c->type == XML_COMMENT_NODE || c->type == XML_PI_NODE)
            continue;
        if (c->type != XML_TEXT_NODE)
            return false;
        for (const xmlChar *t = c->content; t != NULL && *t != '\0'; t++)
            if (!is_xml_space(*t))
                return false;
    }
    return true;
}

/* Copies the text of a leaf element, trimmed of XML white space, into out[0..outlen).
 * Returns the length, or -1 when the element has element children or the text does not fit. */
static long leaf_text(const xmlNode *n, char *out, size_t outlen)
{
    size_t len = 0;

    for (const xmlNode *c = n->children; c != NULL; c = c->next) {
        if (c->type == XML_COMMENT_NODE || c->type == XML_PI_NODE)
            continue;
        if (c->type != XML_TEXT_NODE && c->type != XML_CDATA_SECTION_NODE)
            return -1;
        size_t k = c->content != NULL ? strlen((const char *)c->content) : 0;
        if (k >= outlen - len)
            return -1;
        memcpy(out + len, c->content, k);
        len += k;
    }
    out[len] = '\0';
    size_t start = 0;
    while (start < len && is_xml_space((unsigned char)out[start]))
        start++;
    while (len > start && is_xml_space((unsigned char)out[len - 1]))
        len--;
    memmove(out, out + start, len - start);
    out[len - start] = '\0';
    return (long)(len - start);
}

/* An address we can look up: 1..AUTODISCOVER_EMAIL_MAX bytes of valid UTF-8 (the responses
 * are UTF-8 documents), no controls, and text on both sides of its last '@' (RFC 5321 §4.1.2
 * allows '@' inside a quoted local part). */
static bool email_ok(const char *e, size_t len)
{
    const char *at = NULL;

    if (len == 0 || len > AUTODISCOVER_EMAIL_MAX || !utf8_check(e, len, UTF8_NO_C0 | UTF8_NO_C1))
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)e[i];
        if (c < 0x20 || c == 0x7F)
            return false;
        if (c == '@')
            at = e + i;
    }
    return at != NULL && at != e && at != e + len - 1;
}

/* Checks the parsed tree. 0 ok, -1 malformed, -2 unknown response schema. */
static int check_request(xmlDocPtr doc, char *email_r, size_t email_len,
                         enum autodiscover_schema *schema_r)
{
    char email[AUTODISCOVER_EMAIL_SIZE];
    char schema[SCHEMA_TEXT_MAX];
    const xmlNode *root = xmlDocGetRootElement(doc);
    const xmlNode *request = NULL, *email_node = NULL, *schema_node = NULL;
    const xmlChar *ns;

    if (root == NULL || root->ns == NULL || !xmlStrEqual(root->name, BAD_CAST "Autodiscover"))
        return -1;
    ns = root->ns->href;
    if (ns_is((const char *)ns, NS_REQ_MOBILESYNC))
        *schema_r = AUTODISCOVER_SCHEMA_MOBILESYNC;
    else if (!ns_is((const char *)ns, NS_REQ_OUTLOOK))
        return -1;
    if (!container_ok(root))
        return -1;
    for (const xmlNode *c = root->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (request != NULL || !elem_is(c, "Request", ns))
            return -1;
        request = c;
    }
    if (request == NULL || !container_ok(request))
        return -1;
    for (const xmlNode *c = request->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (elem_is(c, "EMailAddress", ns)) {
            if (email_node != NULL)
                return -1;
            email_node = c;
        } else if (elem_is(c, "AcceptableResponseSchema", ns)) {
            if (schema_node != NULL)
                return -1;
            schema_node = c;
        }
        /* LegacyDN and anything newer: ignored; without EMailAddress the request fails */
    }
    if (email_node == NULL || schema_node == NULL)
        return -1;
    long elen = leaf_text(email_node, email, sizeof email);
    if (elen < 0 || !email_ok(email, (size_t)elen) || (size_t)elen >= email_len)
        return -1;
    if (leaf_text(schema_node, schema, sizeof schema) < 0)
        return -2; /* far too long to be one we know */
    if (ns_is(schema, NS_RESP_OUTLOOK))
        *schema_r = AUTODISCOVER_SCHEMA_OUTLOOK;
    else if (ns_is(schema, NS_RESP_MOBILESYNC))
        *schema_r = AUTODISCOVER_SCHEMA_MOBILESYNC;
    else
        return -2;
    memcpy(email_r, email, (size_t)elen + 1);
    return 0;
}

/* Cheap checks before libxml2 runs: UTF-8 only, so no NUL (UTF-16/32) and markup first (EBCDIC
 * and other ASCII-incompatible encodings start otherwise). */
static bool body_precheck(const char *body, size_t len)
{
    size_t i = 0;

    if (len == 0 || len > AUTODISCOVER_MAX_REQUEST || memchr(body, '\0', len) != NULL)
        return false;
    if (len >= 3 && memcmp(body, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    while (i < len && is_xml_space((unsigned char)body[i]))
        i++;
    return i < len && body[i] == '<';
}

int autodiscover_parse_request(const char *body, size_t len, char *email_r, size_t email_len,
                               enum autodiscover_schema *schema_r)
{
    struct parse_state st = {0};
    xmlSAXHandler sax;
    xmlParserCtxtPtr ctxt;
    int ret = -1;

    *schema_r = AUTODISCOVER_SCHEMA_OUTLOOK;
    if (body == NULL || email_r == NULL || email_len == 0 || !body_precheck(body, len))
        return -1;
    autodiscover_init();

    memset(&sax, 0, sizeof sax);
    if (xmlSAXVersion(&sax, 2) != 0)
        return -1;
    sax.internalSubset = on_internal_subset;
    sax.externalSubset = on_internal_subset;
    sax.entityDecl = on_entity_decl;
    sax.startElementNs = on_start_element;
    sax.endElementNs = on_end_element;
    sax.serror = on_error;
    sax.warning = NULL;
    sax.error = NULL;
    sax.fatalError = NULL;

    ctxt = xmlCreatePushParserCtxt(&sax, NULL, NULL, 0, NULL);
    if (ctxt == NULL)
        return -1;
    ctxt->_private = &st;
    /* no XML_PARSE_NOENT (no substitution), DTDLOAD, DTDATTR or HUGE: libxml2's own limits stay */
    if (xmlCtxtUseOptions(ctxt, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                                    XML_PARSE_NOCDATA | XML_PARSE_IGNORE_ENC) != 0) {
        xmlFreeParserCtxt(ctxt);
        return -1;
    }
    /* len <= AUTODISCOVER_MAX_REQUEST, so it fits an int */
    int perr = xmlParseChunk(ctxt, body, (int)len, 1);
    xmlDocPtr doc = ctxt->myDoc;
    ctxt->myDoc = NULL;
    if (perr == 0 && !st.refused && ctxt->wellFormed && ctxt->nsWellFormed && doc != NULL &&
        doc->intSubset == NULL && doc->extSubset == NULL)
        ret = check_request(doc, email_r, email_len, schema_r);
    xmlFreeDoc(doc);
    xmlFreeParserCtxt(ctxt);
    return ret;
}

/* ---- POX responses ------------------------------------------------------------------------- */

static void pox_head(struct sbuf *b, const char *response_ns)
{
    sb_str(b, "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
              "<Autodiscover xmlns=\"" NS_RESPONSE "\">\n");
    if (response_ns != NULL) {
        sb_str(b, "  <Response xmlns=\"");
        sb_str(b, response_ns);
        sb_str(b, "\">\n");
    } else {
        sb_str(b, "  <Response>\n");
    }
}

static void pox_tail(struct sbuf *b)
{
    sb_str(b, "  </Response>\n"
              "</Autodiscover>\n");
}

/* One Outlook <Protocol> for IMAP, POP3 or SMTP. SSL says whether the connection is protected;
 * Encryption, when present, says how and takes precedence: "SSL" is TLS from the first byte,
 * "TLS" is STARTTLS on the plain port, "None" is clear text. */
static void outlook_protocol(struct sbuf *b, const char *type, const struct service *sv,
                             const char *email)
{
    static const char *const in = "        ";
    static const char *const encryption[] = {"SSL", "TLS", "None"};

    sb_str(b, "      <Protocol>\n");
    sb_elem(b, in, "Type", type);
    sb_elem(b, in, "Server", sv->host);
    sb_elem_int(b, in, "Port", sv->port);
    sb_elem(b, in, "DomainRequired", "off");
    sb_elem(b, in, "LoginName", email);
    sb_elem(b, in, "SPA", "off");
    sb_elem(b, in, "SSL", sv->tls == TLS_NONE ? "off" : "on");
    sb_elem(b, in, "Encryption", encryption[sv->tls]);
    sb_elem(b, in, "AuthRequired", "on");
    sb_str(b, "      </Protocol>\n");
}

static char *outlook_response(const char *email, const char *display_name,
                              const struct autodiscover_settings *s)
{
    struct sbuf b = {0};
    struct service imap, pop3, smtp;
    int has_imap = service_get(s->imap_host, s->imap_port, s->imap_tls, &imap);
    int has_pop3 = service_get(s->pop3_host, s->pop3_port, s->pop3_tls, &pop3);
    int has_smtp = service_get(s->smtp_host, s->smtp_port, s->smtp_tls, &smtp);

    if (has_imap < 0 || has_pop3 < 0 || has_smtp < 0 || has_imap + has_pop3 + has_smtp == 0)
        return NULL;
    pox_head(&b, NS_PREFIX NS_RESP_OUTLOOK);
    sb_str(&b, "    <User>\n");
    if (display_name != NULL)
        sb_elem(&b, "      ", "DisplayName", display_name);
    sb_elem(&b, "      ", "AutoDiscoverSMTPAddress", email);
    sb_str(&b, "    </User>\n"
               "    <Account>\n"
               "      <AccountType>email</AccountType>\n"
               "      <Action>settings</Action>\n");
    if (has_imap)
        outlook_protocol(&b, "IMAP", &imap, email);
    if (has_pop3)
        outlook_protocol(&b, "POP3", &pop3, email);
    if (has_smtp)
        outlook_protocol(&b, "SMTP", &smtp, email);
    sb_str(&b, "    </Account>\n");
    pox_tail(&b);
    return sb_finish(&b);
}

/* [MS-ASCMD] §4.2.4: the EAS URL goes in both Url and Name. */
static char *mobilesync_response(const char *email, const char *display_name,
                                 const struct autodiscover_settings *s)
{
    struct sbuf b = {0};

    if (s->activesync_url == NULL || s->activesync_url[0] == '\0')
        return NULL;
    pox_head(&b, NS_PREFIX NS_RESP_MOBILESYNC);
    sb_str(&b, "    <Culture>en:us</Culture>\n"
               "    <User>\n");
    if (display_name != NULL)
        sb_elem(&b, "      ", "DisplayName", display_name);
    sb_elem(&b, "      ", "EMailAddress", email);
    sb_str(&b, "    </User>\n"
               "    <Action>\n"
               "      <Settings>\n"
               "        <Server>\n"
               "          <Type>MobileSync</Type>\n");
    sb_elem(&b, "          ", "Url", s->activesync_url);
    sb_elem(&b, "          ", "Name", s->activesync_url);
    sb_str(&b, "        </Server>\n"
               "      </Settings>\n"
               "    </Action>\n");
    pox_tail(&b);
    return sb_finish(&b);
}

char *autodiscover_response(enum autodiscover_schema schema, const char *email,
                            const char *display_name, const struct autodiscover_settings *s)
{
    if (email == NULL || s == NULL || !email_ok(email, strlen(email)))
        return NULL;
    switch (schema) {
    case AUTODISCOVER_SCHEMA_OUTLOOK:
        return outlook_response(email, display_name, s);
    case AUTODISCOVER_SCHEMA_MOBILESYNC:
        return mobilesync_response(email, display_name, s);
    }
    return NULL;
}

/* [MS-OXDSCLI] ErrorCode table; 601's text is ours (Exchange says "Provider is not available"). */
static const char *error_text(int code)
{
    switch (code) {
    case 500:
        return "The email address can't be found";
    case 501:
        return "Bad Address";
    case 600:
        return "Invalid Request";
    case 601:
        return "Requested schema not available";
    case 602:
        return "Bad Address";
    case 603:
        return "Internal Server Error";
    default:
        return NULL;
    }
}

char *autodiscover_error(enum autodiscover_schema schema, int code, const char *message)
{
    struct sbuf b = {0};

    if (code < 100 || code > 999)
        return NULL;
    if (message == NULL && (message = error_text(code)) == NULL)
        return NULL;
    pox_head(&b, schema == AUTODISCOVER_SCHEMA_MOBILESYNC ? NS_PREFIX NS_RESP_MOBILESYNC : NULL);
    sb_str(&b, "    <Error>\n");
    sb_elem_int(&b, "      ", "ErrorCode", code);
    sb_elem(&b, "      ", "Message", message);
    sb_str(&b, "      <DebugData />\n"
               "    </Error>\n");
    pox_tail(&b);
    return sb_finish(&b);
}

/* ---- Autodiscover v2 ----------------------------------------------------------------------- */

static char *v2_error(const char *code, const char *message, int status, int *status_r)
{
    struct sbuf b = {0};
    char *out;

    sb_str(&b, "{\"ErrorCode\":\"");
    sb_json(&b, code);
    sb_str(&b, "\",\"ErrorMessage\":\"");
    sb_json(&b, message);
    sb_str(&b, "\"}");
    out = sb_finish(&b);
    *status_r = out != NULL ? status : 500;
    return out;
}

char *autodiscover_v2_json(const char *protocol, const struct autodiscover_settings *s,
                           int *status_r)
{
    static const struct {
        const char *name;
        size_t offset;
    } protocols[] = {
        {"ActiveSync", offsetof(struct autodiscover_settings, activesync_url)},
        {"AutodiscoverV1", offsetof(struct autodiscover_settings, autodiscover_url)},
    };
    struct sbuf b = {0};
    char *out;

    *status_r = 500;
    if (s == NULL)
        return NULL;
    for (size_t i = 0; protocol != NULL && i < sizeof protocols / sizeof protocols[0]; i++) {
        if (strcasecmp(protocol, protocols[i].name) != 0)
            continue;
        const char *url = *(const char *const *)((const char *)s + protocols[i].offset);
        if (url == NULL || url[0] == '\0')
            return v2_error("NotFound", "No endpoint is configured for this protocol", 404,
                            status_r);
        sb_str(&b, "{\"Protocol\":\"");
        sb_str(&b, protocols[i].name);
        sb_str(&b, "\",\"Url\":\"");
        sb_json(&b, url);
        sb_str(&b, "\"}");
        out = sb_finish(&b);
        *status_r = out != NULL ? 200 : 500;
        return out;
    }
    return v2_error("InvalidProtocol",
                    "The given protocol value is invalid. Supported values are "
                    "'ActiveSync,AutodiscoverV1'",
                    400, status_r);
}

/* ---- Thunderbird autoconfig ---------------------------------------------------------------- */

static void tb_server(struct sbuf *b, const char *tag, const char *type, const struct service *sv)
{
    static const char *const in = "      ";
    static const char *const socket_type[] = {"SSL", "STARTTLS", "plain"};

    sb_str(b, "    <");
    sb_str(b, tag);
    sb_str(b, " type=\"");
    sb_str(b, type);
    sb_str(b, "\">\n");
    sb_elem(b, in, "hostname", sv->host);
    sb_elem_int(b, in, "port", sv->port);
    sb_elem(b, in, "socketType", socket_type[sv->tls]);
    sb_elem(b, in, "username", "%EMAILADDRESS%");
    sb_elem(b, in, "authentication", "password-cleartext");
    sb_str(b, "    </");
    sb_str(b, tag);
    sb_str(b, ">\n");
}

static void tb_dav(struct sbuf *b, const char *tag, const char *type, const char *url)
{
    static const char *const in = "    ";

    sb_str(b, "  <");
    sb_str(b, tag);
    sb_str(b, " type=\"");
    sb_str(b, type);
    sb_str(b, "\">\n");
    sb_elem(b, in, "username", "%EMAILADDRESS%");
    sb_elem(b, in, "authentication", "http-basic");
    sb_elem(b, in, "serverURL", url);
    sb_str(b, "  </");
    sb_str(b, tag);
    sb_str(b, ">\n");
}

char *autodiscover_thunderbird(const char *email, const struct autodiscover_settings *s)
{
    struct sbuf b = {0};
    struct service imap, pop3, smtp;
    const char *domain;

    if (s == NULL)
        return NULL;
    int has_imap = service_get(s->imap_host, s->imap_port, s->imap_tls, &imap);
    int has_pop3 = service_get(s->pop3_host, s->pop3_port, s->pop3_tls, &pop3);
    int has_smtp = service_get(s->smtp_host, s->smtp_port, s->smtp_tls, &smtp);
    if (has_imap < 0 || has_pop3 < 0 || has_smtp <= 0 || has_imap + has_pop3 == 0)
        return NULL;
    domain = s->display_name;
    if (domain == NULL && email != NULL) {
        if (!email_ok(email, strlen(email)))
            return NULL;
        domain = strrchr(email, '@') + 1;
    }
    if (domain == NULL || domain[0] == '\0')
        return NULL;

    sb_str(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<clientConfig version=\"1.1\">\n"
               "  <emailProvider id=\"");
    sb_xml(&b, domain);
    sb_str(&b, "\">\n");
    sb_elem(&b, "    ", "domain", domain);
    sb_elem(&b, "    ", "displayName", domain);
    sb_elem(&b, "    ", "displayShortName", domain);
    if (has_imap)
        tb_server(&b, "incomingServer", "imap", &imap);
    if (has_pop3)
        tb_server(&b, "incomingServer", "pop3", &pop3);
    tb_server(&b, "outgoingServer", "smtp", &smtp);
    sb_str(&b, "  </emailProvider>\n");
    if (s->carddav_url != NULL)
        tb_dav(&b, "addressBook", "carddav", s->carddav_url);
    if (s->caldav_url != NULL)
        tb_dav(&b, "calendar", "caldav", s->caldav_url);
    if (s->webmail_url != NULL) {
        sb_str(&b, "  <webMail>\n"
                   "    <loginPage url=\"");
        sb_xml(&b, s->webmail_url);
        sb_str(&b, "\" />\n"
                   "  </webMail>\n");
    }
    sb_str(&b, "</clientConfig>\n");
    return sb_finish(&b);
}
