/* layer: proto */
/* Unit tests for proto/autodiscover: POX requests as Outlook, iOS and Android send them, every
 * way a request can be malformed or hostile (DTDs and entity bombs, depth, size, encodings,
 * namespaces), and the exact documents each builder produces, including the escaping of hostile
 * addresses, checked by parsing the output again. Request bodies are parsed from exact-size heap
 * copies so that an over-read shows up under ASan. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/autodiscover/autodiscover.h"

#define NS "http://schemas.microsoft.com/exchange/autodiscover/"
#define REQ_OUTLOOK NS "outlook/requestschema/2006"
#define REQ_MOBILE NS "mobilesync/requestschema/2006"
#define RESP_OUTLOOK NS "outlook/responseschema/2006a"
#define RESP_MOBILE NS "mobilesync/responseschema/2006"

/* ---- helpers ------------------------------------------------------------------------------- */

static int parse_n(const char *body, size_t len, char *email, size_t email_len,
                   enum autodiscover_schema *schema)
{
    char *copy = malloc(len > 0 ? len : 1);
    assert_non_null(copy);
    memcpy(copy, body, len);
    int r = autodiscover_parse_request(copy, len, email, email_len, schema);
    free(copy);
    return r;
}

static int parse(const char *body, char *email, enum autodiscover_schema *schema)
{
    return parse_n(body, strlen(body), email, AUTODISCOVER_EMAIL_SIZE, schema);
}

/* A request in the given namespace, with the given inside of <Request>. */
static char *request(const char *ns, const char *inner)
{
    static const char fmt[] = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
                              "<Autodiscover xmlns=\"%s\"><Request>%s</Request></Autodiscover>";
    size_t n = sizeof fmt + strlen(ns) + strlen(inner);
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, fmt, ns, inner);
    return s;
}

static int parse_inner(const char *ns, const char *inner, char *email,
                       enum autodiscover_schema *schema)
{
    char *body = request(ns, inner);
    int r = parse(body, email, schema);
    free(body);
    return r;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Parses a generated document with libxml2 (no DTD, no network) and returns the text of the
 * first element named name, or NULL. The caller frees it. Fails the test on a malformed doc. */
static char *doc_text(const char *doc, const char *name)
{
    xmlDocPtr d = xmlReadMemory(doc, (int)strlen(doc), NULL, NULL,
                                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    assert_non_null(d);
    char *out = NULL;
    xmlNodePtr n = xmlDocGetRootElement(d);
    while (n != NULL && out == NULL) {
        if (n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0) {
            xmlChar *c = xmlNodeGetContent(n);
            out = strdup((const char *)c);
            xmlFree(c);
            break;
        }
        /* depth-first walk */
        if (n->children != NULL) {
            n = n->children;
            continue;
        }
        while (n != NULL && n->next == NULL)
            n = n->parent;
        if (n != NULL)
            n = n->next;
    }
    xmlFreeDoc(d);
    return out;
}

static char *doc_attr(const char *doc, const char *elem, const char *attr)
{
    xmlDocPtr d = xmlReadMemory(doc, (int)strlen(doc), NULL, NULL,
                                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    assert_non_null(d);
    char *out = NULL;
    for (xmlNodePtr n = xmlDocGetRootElement(d)->children; n != NULL; n = n->next) {
        if (n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, elem) == 0) {
            xmlChar *v = xmlGetProp(n, (const xmlChar *)attr);
            if (v != NULL)
                out = strdup((const char *)v);
            xmlFree(v);
            break;
        }
    }
    xmlFreeDoc(d);
    return out;
}

static const struct autodiscover_settings settings = {
    .display_name = "example.com",
    .imap_host = "imap.example.com",
    .imap_port = 993,
    .imap_tls = "tls",
    .pop3_host = "pop.example.com",
    .pop3_port = 110,
    .pop3_tls = "starttls",
    .smtp_host = "smtp.example.com",
    .smtp_port = 587,
    .smtp_tls = "starttls",
    .activesync_url = "https://mail.example.com/Microsoft-Server-ActiveSync",
    .autodiscover_url = "https://autodiscover.example.com/autodiscover/autodiscover.xml",
    .caldav_url = "https://dav.example.com/caldav/",
    .carddav_url = "https://dav.example.com/carddav/",
    .webmail_url = "https://mail.example.com/webmail/",
    .freebusy_url = "https://mail.example.com/freebusy/",
};

/* ---- requests as clients send them ------------------------------------------------------- */

static void test_outlook_request(void **state)
{
    /* Outlook: one line, XML declaration, default namespace */
    const char *body =
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Autodiscover xmlns=\"" REQ_OUTLOOK "\">"
        "<Request><EMailAddress>alice@example.com</EMailAddress>"
        "<AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>"
        "</Request></Autodiscover>";
    char email[AUTODISCOVER_EMAIL_SIZE];
    enum autodiscover_schema schema = AUTODISCOVER_SCHEMA_MOBILESYNC;

    assert_int_equal(parse(body, email, &schema), 0);
    assert_string_equal(email, "alice@example.com");
    assert_int_equal(schema, AUTODISCOVER_SCHEMA_OUTLOOK);
}

static void test_ios_request(void **state)
{
    /* iOS Mail / Exchange ActiveSync: pretty-printed, mobilesync namespace */
    const char *body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                       "<Autodiscover xmlns=\"" REQ_MOBILE "\">\n"
                       "  <Request>\n"
                       "    <EMailAddress>bob@example.com</EMailAddress>\n"
                       "    <AcceptableResponseSchema>" RESP_MOBILE "</AcceptableResponseSchema>\n"
                       "  </Request>\n"
                       "</Autodiscover>\n";
    char email[AUTODISCOVER_EMAIL_SIZE];
    enum autodiscover_schema schema = AUTODISCOVER_SCHEMA_OUTLOOK;

    assert_int_equal(parse(body, email, &schema), 0);
    assert_string_equal(email, "bob@example.com");
    assert_int_equal(schema, AUTODISCOVER_SCHEMA_MOBILESYNC);
}

static void test_android_request(void **state)
{
    /* prefixed namespace, xsi/xsd declarations, CRLF, padded values, BOM, no declaration */
    const char *body = "\xEF\xBB\xBF<a:Autodiscover xmlns:a=\"" REQ_MOBILE "\" "
                       "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" "
                       "xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\">\r\n"
                       "<a:Request>\r\n"
                       "<a:EMailAddress>\r\n  carol@example.org \r\n</a:EMailAddress>\r\n"
                       "<a:AcceptableResponseSchema> " RESP_MOBILE " </a:AcceptableResponseSchema>"
                       "\r\n</a:Request>\r\n</a:Autodiscover>";
    char email[AUTODISCOVER_EMAIL_SIZE];
    enum autodiscover_schema schema = AUTODISCOVER_SCHEMA_OUTLOOK;

    assert_int_equal(parse(body, email, &schema), 0);
    assert_string_equal(email, "carol@example.org");
    assert_int_equal(schema, AUTODISCOVER_SCHEMA_MOBILESYNC);
}

static void test_request_variants(void **state)
{
    char email[AUTODISCOVER_EMAIL_SIZE];
    enum autodiscover_schema schema;

    /* the https spelling of the Exchange 2007 documentation */
    const char *https = "<Autodiscover xmlns=\"https://schemas.microsoft.com/exchange/"
                        "autodiscover/outlook/requestschema/2006\"><Request>"
                        "<EMailAddress>a@b.example</EMailAddress><AcceptableResponseSchema>"
                        "https://schemas.microsoft.com/exchange/autodiscover/outlook/"
                        "responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>";
    assert_int_equal(parse(https, email, &schema), 0);
    assert_int_equal(schema, AUTODISCOVER_SCHEMA_OUTLOOK);

    /* the response schema decides, not the request namespace */
    assert_int_equal(parse_inner(REQ_OUTLOOK,
                                 "<EMailAddress>a@b.example</EMailAddress>"
                                 "<AcceptableResponseSchema>" RESP_MOBILE
                                 "</AcceptableResponseSchema>",
                                 email, &schema),
                     0);
    assert_int_equal(schema, AUTODISCOVER_SCHEMA_MOBILESYNC);

    /* order, comments, CDATA, predefined and character references, unknown elements */
    assert_int_equal(parse_inner(REQ_OUTLOOK,
                                 "<!-- c --><AcceptableResponseSchema>" RESP_OUTLOOK
                                 "</AcceptableResponseSchema><LegacyDN>/o=x</LegacyDN>"
                                 "<EMailAddress><![CDATA[o'&x]]>&amp;&#65;&#x42;@b.example"
                                 "<!-- c --></EMailAddress><Future a=\"1\"><X/></Future>",
                                 email, &schema),
                     0);
    assert_string_equal(email, "o'&x&AB@b.example");

    /* non-ASCII address, encoding declaration ignored: the bytes are UTF-8 */
    const char *latin = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>"
                        "<Autodiscover xmlns=\"" REQ_OUTLOOK "\"><Request>"
                        "<EMailAddress>j\xC3\xB6rg@b\xC3\xA4r.example</EMailAddress>"
                        "<AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>"
                        "</Request></Autodiscover>";
    assert_int_equal(parse(latin, email, &schema), 0);
    assert_string_equal(email, "j\xC3\xB6rg@b\xC3\xA4r.example");

    /* '@' in a quoted local part: the last one splits */
    assert_int_equal(parse_inner(REQ_OUTLOOK,
                                 "<EMailAddress>\"a@b\"@c.example</EMailAddress>"
                                 "<AcceptableResponseSchema>" RESP_OUTLOOK
                                 "</AcceptableResponseSchema>",
                                 email, &schema),
                     0);
    assert_string_equal(email, "\"a@b\"@c.example");
}

static void test_unknown_schema(void **state)
{
    char email[AUTODISCOVER_EMAIL_SIZE];
    enum autodiscover_schema schema;

    /* 601: well-formed request for a schema not served; the shape follows the namespace */
    assert_int_equal(parse_inner(REQ_MOBILE,
                                 "<EMailAddress>a@b.example</EMailAddress>"
                                 "<AcceptableResponseSchema>" NS "outlook/responseschema/2006"
                                 "</AcceptableResponseSchema>",
                                 email, &schema),
                     -2);
    assert_int_equal(schema, AUTODISCOVER_SCHEMA_MOBILESYNC);
    assert_int_equal(parse_inner(REQ_OUTLOOK,
                                 "<EMailAddress>a@b.example</EMailAddress>"
                                 "<AcceptableResponseSchema></AcceptableResponseSchema>",
                                 email, &schema),
                     -2);
    assert_int_equal(schema, AUTODISCOVER_SCHEMA_OUTLOOK);

    /* a schema value too long to be one we know */
    char inner[2048] = "<EMailAddress>a@b.example</EMailAddress><AcceptableResponseSchema>";
    size_t n = strlen(inner);
    memset(inner + n, 'x', 1000);
    strcpy(inner + n + 1000, "</AcceptableResponseSchema>");
    assert_int_equal(parse_inner(REQ_MOBILE, inner, email, &schema), -2);
    assert_int_equal(schema, AUTODISCOVER_SCHEMA_MOBILESYNC);
}

/* ---- malformed and hostile requests -------------------------------------------------------- */

static void test_malformed(void **state)
{
    static const char *const bodies[] = {
        "",
        "   ",
        "hello",
        "<",
        "<Autodiscover",
        "<Autodiscover xmlns=\"" REQ_OUTLOOK "\"><Request>",
        "<Autodiscover xmlns=\"" REQ_OUTLOOK "\"><Request><EMailAddress>a@b.example"
        "</Request></Autodiscover>",
        "<Autodiscover xmlns=\"" REQ_OUTLOOK "\"><Request><EMailAddress>a@b.example</EMailAddress>"
        "<AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema></Request>"
        "</Autodiscover><Autodiscover/>",
        /* an address that is not valid UTF-8 (an overlong sequence inside CDATA): no
         * response could carry it */
        "<Autodiscover xmlns=\"" REQ_OUTLOOK "\"><Request><EMailAddress><![CDATA[a\xc0\xa7@b.example]]>"
        "</EMailAddress><AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>"
        "</Request></Autodiscover>",
        /* undeclared entity */
        "<Autodiscover xmlns=\"" REQ_OUTLOOK "\"><Request><EMailAddress>&x;@b.example"
        "</EMailAddress><AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>"
        "</Request></Autodiscover>",
        /* undeclared prefix */
        "<a:Autodiscover><a:Request><a:EMailAddress>a@b.example</a:EMailAddress>"
        "<a:AcceptableResponseSchema>" RESP_OUTLOOK "</a:AcceptableResponseSchema></a:Request>"
        "</a:Autodiscover>",
        /* EBCDIC-looking start */
        "Lo\xA7\x94",
        /* JSON */
        "{\"EMailAddress\":\"a@b.example\"}",
    };
    char email[AUTODISCOVER_EMAIL_SIZE];
    enum autodiscover_schema schema;

    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        schema = AUTODISCOVER_SCHEMA_MOBILESYNC;
        assert_int_equal(parse(bodies[i], email, &schema), -1);
        assert_int_equal(schema, AUTODISCOVER_SCHEMA_OUTLOOK);
    }
    assert_int_equal(autodiscover_parse_request(NULL, 0, email, sizeof email, &schema), -1);

    /* invalid UTF-8 in the address */
    char *body = request(REQ_OUTLOOK,
                         "<EMailAddress>a\xC0\xAF@b.example</EMailAddress>"
                         "<AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>");
    assert_int_equal(parse(body, email, &schema), -1);
    free(body);

    /* a NUL byte anywhere, and UTF-16 (which needs NULs) */
    static const char nul[] = "<Autodiscover xmlns=\"" REQ_OUTLOOK "\"><Request><EMailAddress>"
                              "a@b.example\0x</EMailAddress><AcceptableResponseSchema>" RESP_OUTLOOK
                              "</AcceptableResponseSchema></Request></Autodiscover>";
    assert_int_equal(parse_n(nul, sizeof nul - 1, email, sizeof email, &schema), -1);
    static const char utf16[] = "\xFF\xFE<\0A\0/\0>\0";
    assert_int_equal(parse_n(utf16, sizeof utf16 - 1, email, sizeof email, &schema), -1);
}

static void test_wrong_structure(void **state)
{
    static const char *const inners[] = {
        /* missing pieces */
        "<EMailAddress>a@b.example</EMailAddress>",
        "<AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>",
        "<LegacyDN>/o=First Organization/cn=alice</LegacyDN>"
        "<AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>",
        /* duplicates */
        "<EMailAddress>a@b.example</EMailAddress><EMailAddress>c@d.example</EMailAddress>"
        "<AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>",
        "<EMailAddress>a@b.example</EMailAddress>"
        "<AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>"
        "<AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>",
        /* element inside a leaf */
        "<EMailAddress><b>a@b.example</b></EMailAddress>"
        "<AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>",
        /* text in a container */
        "junk<EMailAddress>a@b.example</EMailAddress>"
        "<AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>",
        /* the elements in another namespace */
        "<EMailAddress xmlns=\"urn:x\">a@b.example</EMailAddress>"
        "<AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>",
        /* bad addresses */
        "<EMailAddress></EMailAddress>"
        "<AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>",
        "<EMailAddress>   </EMailAddress>"
        "<AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>",
        "<EMailAddress>alice</EMailAddress>"
        "<AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>",
        "<EMailAddress>@b.example</EMailAddress>"
        "<AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>",
        "<EMailAddress>a@</EMailAddress>"
        "<AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>",
        "<EMailAddress>a&#127;@b.example</EMailAddress>"
        "<AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>",
        "<EMailAddress>a&#9;b@b.example</EMailAddress>"
        "<AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>",
        "<EMailAddress>a&#1;@b.example</EMailAddress>" /* not even XML 1.0 */
        "<AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>",
    };
    char email[AUTODISCOVER_EMAIL_SIZE];
    enum autodiscover_schema schema;

    for (size_t i = 0; i < sizeof inners / sizeof inners[0]; i++)
        assert_int_equal(parse_inner(REQ_OUTLOOK, inners[i], email, &schema), -1);

    /* two Request elements, text at the top, a different root */
    const char *two = "<Autodiscover xmlns=\"" REQ_OUTLOOK "\"><Request><EMailAddress>a@b.example"
                      "</EMailAddress><AcceptableResponseSchema>" RESP_OUTLOOK
                      "</AcceptableResponseSchema></Request><Request/></Autodiscover>";
    assert_int_equal(parse(two, email, &schema), -1);
    const char *text =
        "<Autodiscover xmlns=\"" REQ_OUTLOOK "\">hi<Request><EMailAddress>a@b.example"
        "</EMailAddress><AcceptableResponseSchema>" RESP_OUTLOOK
        "</AcceptableResponseSchema></Request></Autodiscover>";
    assert_int_equal(parse(text, email, &schema), -1);
    const char *root = "<Autodiscovery xmlns=\"" REQ_OUTLOOK "\"><Request><EMailAddress>a@b.example"
                       "</EMailAddress><AcceptableResponseSchema>" RESP_OUTLOOK
                       "</AcceptableResponseSchema></Request></Autodiscovery>";
    assert_int_equal(parse(root, email, &schema), -1);
}

static void test_wrong_namespace(void **state)
{
    static const char *const namespaces[] = {
        "",
        "urn:example",
        NS "outlook/requestschema/2007",
        NS "outlook/responseschema/2006a",
        "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006/",
        "HTTP://SCHEMAS.MICROSOFT.COM/exchange/autodiscover/outlook/requestschema/2006",
    };
    const char *inner = "<EMailAddress>a@b.example</EMailAddress>"
                        "<AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>";
    char email[AUTODISCOVER_EMAIL_SIZE];
    enum autodiscover_schema schema;

    for (size_t i = 0; i < sizeof namespaces / sizeof namespaces[0]; i++)
        assert_int_equal(parse_inner(namespaces[i], inner, email, &schema), -1);

    /* no namespace declaration at all */
    const char *none = "<Autodiscover><Request><EMailAddress>a@b.example</EMailAddress>"
                       "<AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>"
                       "</Request></Autodiscover>";
    assert_int_equal(parse(none, email, &schema), -1);
}

static void test_doctype_refused(void **state)
{
    static const char *const bodies[] = {
        /* billion laughs: 10^9 "lol"s if expanded */
        "<?xml version=\"1.0\"?>\n"
        "<!DOCTYPE Autodiscover [\n"
        " <!ENTITY lol \"lol\">\n"
        " <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
        " <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">\n"
        " <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
        " <!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">\n"
        " <!ENTITY lol5 \"&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;\">\n"
        " <!ENTITY lol6 \"&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;\">\n"
        " <!ENTITY lol7 \"&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;\">\n"
        " <!ENTITY lol8 \"&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;\">\n"
        " <!ENTITY lol9 \"&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;\">\n"
        "]>\n"
        "<Autodiscover xmlns=\"" REQ_OUTLOOK "\"><Request><EMailAddress>&lol9;@b.example"
        "</EMailAddress><AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>"
        "</Request></Autodiscover>",
        /* external entity (XXE) */
        "<!DOCTYPE Autodiscover [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>"
        "<Autodiscover xmlns=\"" REQ_OUTLOOK "\"><Request><EMailAddress>&xxe;@b.example"
        "</EMailAddress><AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>"
        "</Request></Autodiscover>",
        /* external DTD over the network */
        "<!DOCTYPE Autodiscover SYSTEM \"http://192.0.2.1/evil.dtd\">"
        "<Autodiscover xmlns=\"" REQ_OUTLOOK "\"><Request><EMailAddress>a@b.example"
        "</EMailAddress><AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>"
        "</Request></Autodiscover>",
        /* even a harmless DOCTYPE */
        "<!DOCTYPE Autodiscover>"
        "<Autodiscover xmlns=\"" REQ_OUTLOOK "\"><Request><EMailAddress>a@b.example"
        "</EMailAddress><AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>"
        "</Request></Autodiscover>",
        /* parameter entities */
        "<!DOCTYPE Autodiscover [<!ENTITY % p SYSTEM \"http://192.0.2.1/p\"> %p;]>"
        "<Autodiscover xmlns=\"" REQ_OUTLOOK "\"/>",
    };
    char email[AUTODISCOVER_EMAIL_SIZE];
    enum autodiscover_schema schema;

    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        double t0 = now();
        assert_int_equal(parse(bodies[i], email, &schema), -1);
        assert_true(now() - t0 < 0.5); /* refused at the DOCTYPE, nothing expanded */
    }

    /* quadratic blowup: one big entity referenced many times, within the size limit */
    char *big = malloc(AUTODISCOVER_MAX_REQUEST + 1);
    assert_non_null(big);
    int n = snprintf(big, AUTODISCOVER_MAX_REQUEST, "<!DOCTYPE a [<!ENTITY e \"");
    memset(big + n, 'x', 8000);
    n += 8000;
    n += snprintf(big + n, (size_t)(AUTODISCOVER_MAX_REQUEST - n), "\">]><a>");
    while (n + 10 < AUTODISCOVER_MAX_REQUEST - 10)
        n += snprintf(big + n, (size_t)(AUTODISCOVER_MAX_REQUEST - n), "&e;");
    n += snprintf(big + n, (size_t)(AUTODISCOVER_MAX_REQUEST - n), "</a>");
    double t0 = now();
    assert_int_equal(parse_n(big, (size_t)n, email, sizeof email, &schema), -1);
    assert_true(now() - t0 < 0.5);
    free(big);
}

static void test_size_limit(void **state)
{
    char email[AUTODISCOVER_EMAIL_SIZE];
    enum autodiscover_schema schema;
    const char *head = "<Autodiscover xmlns=\"" REQ_OUTLOOK "\"><Request><EMailAddress>a@b.example"
                       "</EMailAddress><AcceptableResponseSchema>" RESP_OUTLOOK
                       "</AcceptableResponseSchema></Request></Autodiscover>";
    size_t hl = strlen(head);
    char *body = malloc(AUTODISCOVER_MAX_REQUEST + 2);
    assert_non_null(body);

    /* padded with trailing white space to exactly the limit: accepted */
    memcpy(body, head, hl);
    memset(body + hl, '\n', AUTODISCOVER_MAX_REQUEST + 1 - hl);
    assert_int_equal(parse_n(body, AUTODISCOVER_MAX_REQUEST, email, sizeof email, &schema), 0);
    assert_string_equal(email, "a@b.example");
    /* one byte more: refused before parsing */
    assert_int_equal(parse_n(body, AUTODISCOVER_MAX_REQUEST + 1, email, sizeof email, &schema), -1);
    free(body);

    /* a multi-megabyte body is refused at once */
    size_t huge = 8u << 20;
    body = malloc(huge);
    assert_non_null(body);
    memcpy(body, head, hl);
    memset(body + hl, ' ', huge - hl);
    double t0 = now();
    assert_int_equal(autodiscover_parse_request(body, huge, email, sizeof email, &schema), -1);
    assert_true(now() - t0 < 0.1);
    free(body);
}

static void test_depth_and_count_limits(void **state)
{
    char email[AUTODISCOVER_EMAIL_SIZE];
    enum autodiscover_schema schema;
    char inner[4096];
    const char *tail = "<EMailAddress>a@b.example</EMailAddress>"
                       "<AcceptableResponseSchema>" RESP_OUTLOOK "</AcceptableResponseSchema>";

    /* an ignored element nested so the document is exactly AUTODISCOVER_MAX_DEPTH deep */
    size_t n = 0;
    for (int i = 0; i < AUTODISCOVER_MAX_DEPTH - 2; i++)
        n += (size_t)snprintf(inner + n, sizeof inner - n, "<x>");
    for (int i = 0; i < AUTODISCOVER_MAX_DEPTH - 2; i++)
        n += (size_t)snprintf(inner + n, sizeof inner - n, "</x>");
    snprintf(inner + n, sizeof inner - n, "%s", tail);
    assert_int_equal(parse_inner(REQ_OUTLOOK, inner, email, &schema), 0);

    /* one level more */
    n = 0;
    for (int i = 0; i < AUTODISCOVER_MAX_DEPTH - 1; i++)
        n += (size_t)snprintf(inner + n, sizeof inner - n, "<x>");
    for (int i = 0; i < AUTODISCOVER_MAX_DEPTH - 1; i++)
        n += (size_t)snprintf(inner + n, sizeof inner - n, "</x>");
    snprintf(inner + n, sizeof inner - n, "%s", tail);
    assert_int_equal(parse_inner(REQ_OUTLOOK, inner, email, &schema), -1);

    /* thousands of levels, never closed */
    char *deep = malloc(AUTODISCOVER_MAX_REQUEST);
    assert_non_null(deep);
    size_t d = 0;
    while (d + 3 <= AUTODISCOVER_MAX_REQUEST) {
        memcpy(deep + d, "<a>", 3);
        d += 3;
    }
    double t0 = now();
    assert_int_equal(parse_n(deep, d, email, sizeof email, &schema), -1);
    assert_true(now() - t0 < 0.5);
    free(deep);

    /* element count: Autodiscover, Request and the two leaves are 4 */
    n = 0;
    for (int i = 0; i < AUTODISCOVER_MAX_ELEMENTS - 4; i++)
        n += (size_t)snprintf(inner + n, sizeof inner - n, "<y/>");
    snprintf(inner + n, sizeof inner - n, "%s", tail);
    assert_int_equal(parse_inner(REQ_OUTLOOK, inner, email, &schema), 0);
    n = 0;
    for (int i = 0; i < AUTODISCOVER_MAX_ELEMENTS - 3; i++)
        n += (size_t)snprintf(inner + n, sizeof inner - n, "<y/>");
    snprintf(inner + n, sizeof inner - n, "%s", tail);
    assert_int_equal(parse_inner(REQ_OUTLOOK, inner, email, &schema), -1);
}

static void test_email_length(void **state)
{
    char email[AUTODISCOVER_EMAIL_SIZE];
    enum autodiscover_schema schema;
    char addr[AUTODISCOVER_EMAIL_MAX + 2];
    char inner[1024];

    /* exactly 254 bytes */
    memset(addr, 'a', AUTODISCOVER_EMAIL_MAX);
    memcpy(addr + AUTODISCOVER_EMAIL_MAX - 10, "@b.example", 10);
    addr[AUTODISCOVER_EMAIL_MAX] = '\0';
    snprintf(inner, sizeof inner,
             "<EMailAddress>%s</EMailAddress><AcceptableResponseSchema>" RESP_OUTLOOK
             "</AcceptableResponseSchema>",
             addr);
    assert_int_equal(parse_inner(REQ_OUTLOOK, inner, email, &schema), 0);
    assert_string_equal(email, addr);

    /* the caller's buffer is too small for it */
    char *body = request(REQ_OUTLOOK, inner);
    char small[AUTODISCOVER_EMAIL_MAX];
    assert_int_equal(parse_n(body, strlen(body), small, sizeof small, &schema), -1);
    free(body);

    /* 255 bytes */
    memset(addr, 'a', AUTODISCOVER_EMAIL_MAX + 1);
    memcpy(addr + AUTODISCOVER_EMAIL_MAX + 1 - 10, "@b.example", 10);
    addr[AUTODISCOVER_EMAIL_MAX + 1] = '\0';
    snprintf(inner, sizeof inner,
             "<EMailAddress>%s</EMailAddress><AcceptableResponseSchema>" RESP_OUTLOOK
             "</AcceptableResponseSchema>",
             addr);
    assert_int_equal(parse_inner(REQ_OUTLOOK, inner, email, &schema), -1);
}

/* ---- POX responses ------------------------------------------------------------------------- */

static void test_outlook_response(void **state)
{
    static const char expected[] =
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
        "<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/"
        "responseschema/2006\">\n"
        "  <Response xmlns=\"" RESP_OUTLOOK "\">\n"
        "    <User>\n"
        "      <DisplayName>Alice Example</DisplayName>\n"
        "      <AutoDiscoverSMTPAddress>alice@example.com</AutoDiscoverSMTPAddress>\n"
        "    </User>\n"
        "    <Account>\n"
        "      <AccountType>email</AccountType>\n"
        "      <Action>settings</Action>\n"
        "      <Protocol>\n"
        "        <Type>IMAP</Type>\n"
        "        <Server>imap.example.com</Server>\n"
        "        <Port>993</Port>\n"
        "        <DomainRequired>off</DomainRequired>\n"
        "        <LoginName>alice@example.com</LoginName>\n"
        "        <SPA>off</SPA>\n"
        "        <SSL>on</SSL>\n"
        "        <Encryption>SSL</Encryption>\n"
        "        <AuthRequired>on</AuthRequired>\n"
        "      </Protocol>\n"
        "      <Protocol>\n"
        "        <Type>POP3</Type>\n"
        "        <Server>pop.example.com</Server>\n"
        "        <Port>110</Port>\n"
        "        <DomainRequired>off</DomainRequired>\n"
        "        <LoginName>alice@example.com</LoginName>\n"
        "        <SPA>off</SPA>\n"
        "        <SSL>on</SSL>\n"
        "        <Encryption>TLS</Encryption>\n"
        "        <AuthRequired>on</AuthRequired>\n"
        "      </Protocol>\n"
        "      <Protocol>\n"
        "        <Type>SMTP</Type>\n"
        "        <Server>smtp.example.com</Server>\n"
        "        <Port>587</Port>\n"
        "        <DomainRequired>off</DomainRequired>\n"
        "        <LoginName>alice@example.com</LoginName>\n"
        "        <SPA>off</SPA>\n"
        "        <SSL>on</SSL>\n"
        "        <Encryption>TLS</Encryption>\n"
        "        <AuthRequired>on</AuthRequired>\n"
        "      </Protocol>\n"
        "    </Account>\n"
        "  </Response>\n"
        "</Autodiscover>\n";
    char *doc = autodiscover_response(AUTODISCOVER_SCHEMA_OUTLOOK, "alice@example.com",
                                      "Alice Example", &settings);
    assert_non_null(doc);
    assert_string_equal(doc, expected);
    free(doc);
}

static void test_outlook_response_options(void **state)
{
    struct autodiscover_settings s = settings;
    char *doc;

    /* no POP3, clear-text IMAP, no display name */
    s.pop3_host = NULL;
    s.imap_port = 143;
    s.imap_tls = "none";
    doc = autodiscover_response(AUTODISCOVER_SCHEMA_OUTLOOK, "a@example.com", NULL, &s);
    assert_non_null(doc);
    assert_null(strstr(doc, "POP3"));
    assert_null(strstr(doc, "DisplayName"));
    assert_non_null(strstr(doc, "<Type>IMAP</Type>\n        <Server>imap.example.com</Server>\n"
                                "        <Port>143</Port>\n"));
    assert_non_null(strstr(doc, "<SSL>off</SSL>\n        <Encryption>None</Encryption>\n"));
    free(doc);

    /* SMTP alone is still a document */
    s = settings;
    s.imap_host = NULL;
    s.pop3_host = NULL;
    s.smtp_tls = "tls";
    s.smtp_port = 465;
    doc = autodiscover_response(AUTODISCOVER_SCHEMA_OUTLOOK, "a@example.com", NULL, &s);
    assert_non_null(doc);
    assert_non_null(strstr(doc, "<Type>SMTP</Type>"));
    assert_null(strstr(doc, "<Type>IMAP</Type>"));
    free(doc);

    /* nothing configured, or configured wrongly */
    s = settings;
    s.imap_host = s.pop3_host = s.smtp_host = NULL;
    assert_null(autodiscover_response(AUTODISCOVER_SCHEMA_OUTLOOK, "a@example.com", NULL, &s));
    s = settings;
    s.imap_tls = "ssl";
    assert_null(autodiscover_response(AUTODISCOVER_SCHEMA_OUTLOOK, "a@example.com", NULL, &s));
    s = settings;
    s.smtp_tls = NULL;
    assert_null(autodiscover_response(AUTODISCOVER_SCHEMA_OUTLOOK, "a@example.com", NULL, &s));
    s = settings;
    s.pop3_port = 0;
    assert_null(autodiscover_response(AUTODISCOVER_SCHEMA_OUTLOOK, "a@example.com", NULL, &s));
    s = settings;
    s.imap_port = 65536;
    assert_null(autodiscover_response(AUTODISCOVER_SCHEMA_OUTLOOK, "a@example.com", NULL, &s));
    s = settings;
    s.imap_host = "";
    assert_null(autodiscover_response(AUTODISCOVER_SCHEMA_OUTLOOK, "a@example.com", NULL, &s));

    /* bad arguments */
    assert_null(autodiscover_response(AUTODISCOVER_SCHEMA_OUTLOOK, NULL, NULL, &settings));
    assert_null(autodiscover_response(AUTODISCOVER_SCHEMA_OUTLOOK, "noat", NULL, &settings));
    assert_null(autodiscover_response(AUTODISCOVER_SCHEMA_OUTLOOK, "a@b", NULL, NULL));
    assert_null(autodiscover_response((enum autodiscover_schema)7, "a@b", NULL, &settings));
}

static void test_mobilesync_response(void **state)
{
    static const char expected[] =
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
        "<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/"
        "responseschema/2006\">\n"
        "  <Response xmlns=\"" RESP_MOBILE "\">\n"
        "    <Culture>en:us</Culture>\n"
        "    <User>\n"
        "      <DisplayName>Chris Gray</DisplayName>\n"
        "      <EMailAddress>chris@example.com</EMailAddress>\n"
        "    </User>\n"
        "    <Action>\n"
        "      <Settings>\n"
        "        <Server>\n"
        "          <Type>MobileSync</Type>\n"
        "          <Url>https://mail.example.com/Microsoft-Server-ActiveSync</Url>\n"
        "          <Name>https://mail.example.com/Microsoft-Server-ActiveSync</Name>\n"
        "        </Server>\n"
        "      </Settings>\n"
        "    </Action>\n"
        "  </Response>\n"
        "</Autodiscover>\n";
    char *doc = autodiscover_response(AUTODISCOVER_SCHEMA_MOBILESYNC, "chris@example.com",
                                      "Chris Gray", &settings);
    assert_non_null(doc);
    assert_string_equal(doc, expected);
    free(doc);

    doc =
        autodiscover_response(AUTODISCOVER_SCHEMA_MOBILESYNC, "chris@example.com", NULL, &settings);
    assert_non_null(doc);
    assert_null(strstr(doc, "DisplayName"));
    free(doc);

    /* without an ActiveSync URL there is nothing to say */
    struct autodiscover_settings s = settings;
    s.activesync_url = NULL;
    assert_null(autodiscover_response(AUTODISCOVER_SCHEMA_MOBILESYNC, "a@b.example", NULL, &s));
    s.activesync_url = "";
    assert_null(autodiscover_response(AUTODISCOVER_SCHEMA_MOBILESYNC, "a@b.example", NULL, &s));
}

static void test_error_response(void **state)
{
    static const char outlook600[] =
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
        "<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/"
        "responseschema/2006\">\n"
        "  <Response>\n"
        "    <Error>\n"
        "      <ErrorCode>600</ErrorCode>\n"
        "      <Message>Invalid Request</Message>\n"
        "      <DebugData />\n"
        "    </Error>\n"
        "  </Response>\n"
        "</Autodiscover>\n";
    static const char mobile601[] =
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
        "<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/"
        "responseschema/2006\">\n"
        "  <Response xmlns=\"" RESP_MOBILE "\">\n"
        "    <Error>\n"
        "      <ErrorCode>601</ErrorCode>\n"
        "      <Message>Requested schema not available</Message>\n"
        "      <DebugData />\n"
        "    </Error>\n"
        "  </Response>\n"
        "</Autodiscover>\n";
    char *doc;

    doc = autodiscover_error(AUTODISCOVER_SCHEMA_OUTLOOK, AUTODISCOVER_ERR_INVALID_REQUEST, NULL);
    assert_non_null(doc);
    assert_string_equal(doc, outlook600);
    free(doc);
    doc = autodiscover_error(AUTODISCOVER_SCHEMA_MOBILESYNC, AUTODISCOVER_ERR_NO_SCHEMA, NULL);
    assert_non_null(doc);
    assert_string_equal(doc, mobile601);
    free(doc);

    doc = autodiscover_error(AUTODISCOVER_SCHEMA_OUTLOOK, AUTODISCOVER_ERR_INTERNAL, NULL);
    assert_non_null(doc);
    assert_non_null(strstr(doc, "<ErrorCode>603</ErrorCode>\n"
                                "      <Message>Internal Server Error</Message>\n"));
    free(doc);

    /* a caller's message is escaped */
    doc = autodiscover_error(AUTODISCOVER_SCHEMA_OUTLOOK, 500, "no <such> user & \"co\"");
    assert_non_null(doc);
    assert_non_null(strstr(doc, "<Message>no &lt;such&gt; user &amp; &quot;co&quot;</Message>\n"));
    char *msg = doc_text(doc, "Message");
    assert_string_equal(msg, "no <such> user & \"co\"");
    free(msg);
    free(doc);

    assert_null(autodiscover_error(AUTODISCOVER_SCHEMA_OUTLOOK, 99, "x"));
    assert_null(autodiscover_error(AUTODISCOVER_SCHEMA_OUTLOOK, 1000, "x"));
    assert_null(autodiscover_error(AUTODISCOVER_SCHEMA_OUTLOOK, 777, NULL));
    assert_null(autodiscover_error(AUTODISCOVER_SCHEMA_OUTLOOK, 600, "bad\x01"));
    assert_null(autodiscover_error(AUTODISCOVER_SCHEMA_OUTLOOK, 600, "bad\xFF"));
}

static void test_hostile_escaping(void **state)
{
    /* every XML-special character, and text that would close the element */
    const char *email = "\"<x>&'y'</LoginName><SSL>off\"@example.com";
    const char *name = "]]></DisplayName><Evil a='1'>&amp;";
    char *doc = autodiscover_response(AUTODISCOVER_SCHEMA_OUTLOOK, email, name, &settings);
    assert_non_null(doc);
    assert_null(strstr(doc, "<Evil"));
    assert_null(strstr(doc, "]]>"));
    assert_non_null(strstr(doc, "<LoginName>&quot;&lt;x&gt;&amp;&apos;y&apos;&lt;/LoginName&gt;"
                                "&lt;SSL&gt;off&quot;@example.com</LoginName>"));
    char *t = doc_text(doc, "LoginName");
    assert_string_equal(t, email);
    free(t);
    t = doc_text(doc, "DisplayName");
    assert_string_equal(t, name);
    free(t);
    t = doc_text(doc, "SSL");
    assert_string_equal(t, "on");
    free(t);
    free(doc);

    doc = autodiscover_response(AUTODISCOVER_SCHEMA_MOBILESYNC, email, name, &settings);
    assert_non_null(doc);
    t = doc_text(doc, "EMailAddress");
    assert_string_equal(t, email);
    free(t);
    free(doc);

    /* what XML cannot carry is refused, not mangled */
    static const char *const bad[] = {
        "a\x01@example.com",         "a\n@example.com",           "a\x7F@example.com",
        "a\xC3@example.com",         "a\xEF\xBF\xBE@example.com", /* U+FFFE */
        "a\xED\xA0\x80@example.com",                              /* surrogate */
        "a\xC0\xBC@example.com",                                  /* overlong '<' */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_null(autodiscover_response(AUTODISCOVER_SCHEMA_OUTLOOK, "ok@example.com", bad[i],
                                          &settings));
        assert_null(autodiscover_response(AUTODISCOVER_SCHEMA_MOBILESYNC, bad[i], NULL, &settings));
    }

    /* a hostile host in the settings is escaped too */
    struct autodiscover_settings s = settings;
    s.imap_host = "imap.example.com</Server><Server>evil.example";
    doc = autodiscover_response(AUTODISCOVER_SCHEMA_OUTLOOK, "a@example.com", NULL, &s);
    assert_non_null(doc);
    t = doc_text(doc, "Server");
    assert_string_equal(t, s.imap_host);
    free(t);
    free(doc);

    /* output that would exceed the bound is refused */
    char *longname = malloc(AUTODISCOVER_MAX_OUTPUT + 1);
    assert_non_null(longname);
    memset(longname, 'n', AUTODISCOVER_MAX_OUTPUT);
    longname[AUTODISCOVER_MAX_OUTPUT] = '\0';
    assert_null(
        autodiscover_response(AUTODISCOVER_SCHEMA_OUTLOOK, "a@example.com", longname, &settings));
    memset(longname, '&', AUTODISCOVER_MAX_OUTPUT / 4); /* 5 bytes each escaped */
    longname[AUTODISCOVER_MAX_OUTPUT / 4] = '\0';
    assert_null(
        autodiscover_response(AUTODISCOVER_SCHEMA_OUTLOOK, "a@example.com", longname, &settings));
    free(longname);
}

/* A request parsed, answered, and the answer parsed again gives the same address back. */
static void test_round_trip(void **state)
{
    char email[AUTODISCOVER_EMAIL_SIZE];
    enum autodiscover_schema schema;

    assert_int_equal(parse_inner(REQ_MOBILE,
                                 "<EMailAddress>&quot;&lt;a&gt;&amp;&apos;&quot;@b.example"
                                 "</EMailAddress><AcceptableResponseSchema>" RESP_MOBILE
                                 "</AcceptableResponseSchema>",
                                 email, &schema),
                     0);
    assert_string_equal(email, "\"<a>&'\"@b.example");
    char *doc = autodiscover_response(schema, email, NULL, &settings);
    assert_non_null(doc);
    char *t = doc_text(doc, "EMailAddress");
    assert_string_equal(t, email);
    free(t);
    free(doc);
}

/* ---- Autodiscover v2 ----------------------------------------------------------------------- */

static void test_v2_json(void **state)
{
    int status = 0;
    char *j;

    j = autodiscover_v2_json("ActiveSync", &settings, &status);
    assert_non_null(j);
    assert_int_equal(status, 200);
    assert_string_equal(
        j, "{\"Protocol\":\"ActiveSync\",\"Url\":\"https://mail.example.com/Microsoft-Server-"
           "ActiveSync\"}");
    free(j);

    j = autodiscover_v2_json("activesync", &settings, &status);
    assert_non_null(j);
    assert_int_equal(status, 200);
    assert_non_null(strstr(j, "\"Protocol\":\"ActiveSync\""));
    free(j);

    j = autodiscover_v2_json("AUTODISCOVERV1", &settings, &status);
    assert_non_null(j);
    assert_int_equal(status, 200);
    assert_string_equal(j, "{\"Protocol\":\"AutodiscoverV1\",\"Url\":\"https://"
                           "autodiscover.example.com/autodiscover/autodiscover.xml\"}");
    free(j);

    static const char invalid[] =
        "{\"ErrorCode\":\"InvalidProtocol\",\"ErrorMessage\":\"The given protocol value is "
        "invalid. Supported values are 'ActiveSync,AutodiscoverV1'\"}";
    static const char *const unknown[] = {"Ews", "", "ActiveSync ", "Active\"Sync", "<script>"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        status = 0;
        j = autodiscover_v2_json(unknown[i], &settings, &status);
        assert_non_null(j);
        assert_int_equal(status, 400);
        assert_string_equal(j, invalid);
        free(j);
    }
    j = autodiscover_v2_json(NULL, &settings, &status);
    assert_non_null(j);
    assert_int_equal(status, 400);
    free(j);

    struct autodiscover_settings s = settings;
    s.activesync_url = NULL;
    j = autodiscover_v2_json("ActiveSync", &s, &status);
    assert_non_null(j);
    assert_int_equal(status, 404);
    assert_string_equal(j, "{\"ErrorCode\":\"NotFound\",\"ErrorMessage\":\"No endpoint is "
                           "configured for this protocol\"}");
    free(j);

    /* escaping */
    s.activesync_url = "https://h/\"a\\b\x01\x7F\xC3\xA9";
    j = autodiscover_v2_json("ActiveSync", &s, &status);
    assert_non_null(j);
    assert_int_equal(status, 200);
    assert_string_equal(
        j, "{\"Protocol\":\"ActiveSync\",\"Url\":\"https://h/\\\"a\\\\b\\u0001\\u007f\xC3\xA9\"}");
    free(j);
    s.activesync_url = "https://h/\xFF";
    status = 0;
    assert_null(autodiscover_v2_json("ActiveSync", &s, &status));
    assert_int_equal(status, 500);
    assert_null(autodiscover_v2_json("ActiveSync", NULL, &status));
    assert_int_equal(status, 500);
}

/* ---- Thunderbird ----------------------------------------------------------------------------- */

static void test_thunderbird(void **state)
{
    static const char expected[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                                   "<clientConfig version=\"1.1\">\n"
                                   "  <emailProvider id=\"example.com\">\n"
                                   "    <domain>example.com</domain>\n"
                                   "    <displayName>example.com</displayName>\n"
                                   "    <displayShortName>example.com</displayShortName>\n"
                                   "    <incomingServer type=\"imap\">\n"
                                   "      <hostname>imap.example.com</hostname>\n"
                                   "      <port>993</port>\n"
                                   "      <socketType>SSL</socketType>\n"
                                   "      <username>%EMAILADDRESS%</username>\n"
                                   "      <authentication>password-cleartext</authentication>\n"
                                   "    </incomingServer>\n"
                                   "    <incomingServer type=\"pop3\">\n"
                                   "      <hostname>pop.example.com</hostname>\n"
                                   "      <port>110</port>\n"
                                   "      <socketType>STARTTLS</socketType>\n"
                                   "      <username>%EMAILADDRESS%</username>\n"
                                   "      <authentication>password-cleartext</authentication>\n"
                                   "    </incomingServer>\n"
                                   "    <outgoingServer type=\"smtp\">\n"
                                   "      <hostname>smtp.example.com</hostname>\n"
                                   "      <port>587</port>\n"
                                   "      <socketType>STARTTLS</socketType>\n"
                                   "      <username>%EMAILADDRESS%</username>\n"
                                   "      <authentication>password-cleartext</authentication>\n"
                                   "    </outgoingServer>\n"
                                   "  </emailProvider>\n"
                                   "  <addressBook type=\"carddav\">\n"
                                   "    <username>%EMAILADDRESS%</username>\n"
                                   "    <authentication>http-basic</authentication>\n"
                                   "    <serverURL>https://dav.example.com/carddav/</serverURL>\n"
                                   "  </addressBook>\n"
                                   "  <calendar type=\"caldav\">\n"
                                   "    <username>%EMAILADDRESS%</username>\n"
                                   "    <authentication>http-basic</authentication>\n"
                                   "    <serverURL>https://dav.example.com/caldav/</serverURL>\n"
                                   "  </calendar>\n"
                                   "  <webMail>\n"
                                   "    <loginPage url=\"https://mail.example.com/webmail/\" />\n"
                                   "  </webMail>\n"
                                   "</clientConfig>\n";
    char *doc = autodiscover_thunderbird("alice@example.com", &settings);
    assert_non_null(doc);
    assert_string_equal(doc, expected);
    free(doc);

    /* the client may leave the address out */
    doc = autodiscover_thunderbird(NULL, &settings);
    assert_non_null(doc);
    assert_string_equal(doc, expected);
    free(doc);
}

static void test_thunderbird_options(void **state)
{
    struct autodiscover_settings s = settings;
    char *doc, *t;

    /* domain from the address; clear text; no DAV, no webmail, no IMAP */
    s.display_name = NULL;
    s.imap_host = NULL;
    s.pop3_tls = "none";
    s.caldav_url = s.carddav_url = s.webmail_url = NULL;
    doc = autodiscover_thunderbird("bob@mail.example.net", &s);
    assert_non_null(doc);
    assert_non_null(strstr(doc, "<emailProvider id=\"mail.example.net\">\n"
                                "    <domain>mail.example.net</domain>\n"));
    assert_non_null(strstr(doc, "<socketType>plain</socketType>"));
    assert_null(strstr(doc, "type=\"imap\""));
    assert_null(strstr(doc, "addressBook"));
    assert_null(strstr(doc, "calendar"));
    assert_null(strstr(doc, "webMail"));
    free(doc);

    /* no domain from anywhere, or an unusable address */
    assert_null(autodiscover_thunderbird(NULL, &s));
    assert_null(autodiscover_thunderbird("nodomain", &s));
    assert_null(autodiscover_thunderbird("x@", &s));

    /* an incoming server and SMTP are both needed */
    s = settings;
    s.smtp_host = NULL;
    assert_null(autodiscover_thunderbird(NULL, &s));
    s = settings;
    s.imap_host = s.pop3_host = NULL;
    assert_null(autodiscover_thunderbird(NULL, &s));
    s = settings;
    s.smtp_tls = "bogus";
    assert_null(autodiscover_thunderbird(NULL, &s));
    assert_null(autodiscover_thunderbird(NULL, NULL));

    /* hostile domain and URLs, in attributes and text */
    s = settings;
    s.display_name = NULL;
    s.webmail_url = "https://w/?a=1&b=\"2\"><evil/>";
    doc = autodiscover_thunderbird("x@\"'><evil>&.example", &s);
    assert_non_null(doc);
    assert_null(strstr(doc, "<evil"));
    t = doc_attr(doc, "emailProvider", "id");
    assert_string_equal(t, "\"'><evil>&.example");
    free(t);
    t = doc_text(doc, "domain");
    assert_string_equal(t, "\"'><evil>&.example");
    free(t);
    free(doc);
    doc = autodiscover_thunderbird(NULL, &(struct autodiscover_settings){
                                             .display_name = "example.com",
                                             .imap_host = "i",
                                             .imap_port = 993,
                                             .imap_tls = "tls",
                                             .smtp_host = "s",
                                             .smtp_port = 465,
                                             .smtp_tls = "tls",
                                             .webmail_url = s.webmail_url,
                                         });
    assert_non_null(doc);
    assert_non_null(strstr(doc, "<loginPage url=\"https://w/?a=1&amp;b=&quot;2&quot;&gt;"
                                "&lt;evil/&gt;\" />"));
    free(doc);

    s = settings;
    s.display_name = "bad\x02";
    assert_null(autodiscover_thunderbird(NULL, &s));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outlook_request),
        cmocka_unit_test(test_ios_request),
        cmocka_unit_test(test_android_request),
        cmocka_unit_test(test_request_variants),
        cmocka_unit_test(test_unknown_schema),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_wrong_structure),
        cmocka_unit_test(test_wrong_namespace),
        cmocka_unit_test(test_doctype_refused),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_depth_and_count_limits),
        cmocka_unit_test(test_email_length),
        cmocka_unit_test(test_outlook_response),
        cmocka_unit_test(test_outlook_response_options),
        cmocka_unit_test(test_mobilesync_response),
        cmocka_unit_test(test_error_response),
        cmocka_unit_test(test_hostile_escaping),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_v2_json),
        cmocka_unit_test(test_thunderbird),
        cmocka_unit_test(test_thunderbird_options),
    };

    autodiscover_init();
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    xmlCleanupParser();
    return failed;
}
