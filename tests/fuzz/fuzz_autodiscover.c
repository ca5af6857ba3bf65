/* libFuzzer harness for proto/autodiscover. The input is a POX request body. Besides looking for
 * memory errors and hangs it checks what the HTTP route relies on:
 *   - the verdict is 0, -1 or -2, and the schema written is one of the two;
 *   - on 0 the address is NUL-terminated, within AUTODISCOVER_EMAIL_MAX and the buffer, and
 *     passes the builders' own checks: answering it in either schema never fails, and the answer
 *     parses again (libxml2, no DTD, no network) to a document carrying the same address;
 *   - the error response for the verdict can always be built.
 * The body is parsed from an exact-size heap copy so that ASan sees any over-read. */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/autodiscover/autodiscover.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
};

/* The text of the first element called name, searched depth-first; NULL when absent. */
static xmlChar *find_text(xmlNodePtr n, const char *name)
{
    for (; n != NULL; n = n->next) {
        if (n->type != XML_ELEMENT_NODE)
            continue;
        if (strcmp((const char *)n->name, name) == 0)
            return xmlNodeGetContent(n);
        xmlChar *t = find_text(n->children, name);
        if (t != NULL)
            return t;
    }
    return NULL;
}

/* The generated document must parse and carry email in the element called name. */
static void check_document(const char *doc, const char *name, const char *email)
{
    xmlDocPtr d = xmlReadMemory(doc, (int)strlen(doc), NULL, NULL,
                                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (d == NULL)
        abort();
    xmlChar *t = find_text(xmlDocGetRootElement(d), name);
    if (t == NULL || strcmp((const char *)t, email) != 0)
        abort();
    xmlFree(t);
    xmlFreeDoc(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char email[AUTODISCOVER_EMAIL_SIZE + 1];
    enum autodiscover_schema schema;
    char *copy = malloc(size > 0 ? size : 1);

    if (copy == NULL)
        abort();
    if (size > 0)
        memcpy(copy, data, size);
    memset(&schema, 0x5A, sizeof schema); /* must be overwritten with a valid value */
    email[AUTODISCOVER_EMAIL_SIZE] = 'X'; /* must stay untouched */
    int r = autodiscover_parse_request(copy, size, email, AUTODISCOVER_EMAIL_SIZE, &schema);
    free(copy);

    if (schema != AUTODISCOVER_SCHEMA_OUTLOOK && schema != AUTODISCOVER_SCHEMA_MOBILESYNC)
        abort();
    if (email[AUTODISCOVER_EMAIL_SIZE] != 'X')
        abort();
    if (r != 0 && r != -1 && r != -2)
        abort();
    if (r == 0) {
        size_t len = strnlen(email, AUTODISCOVER_EMAIL_SIZE);
        if (len == 0 || len > AUTODISCOVER_EMAIL_MAX || strchr(email, '@') == NULL)
            abort();
        char *doc = autodiscover_response(AUTODISCOVER_SCHEMA_OUTLOOK, email, email, &settings);
        if (doc == NULL)
            abort();
        check_document(doc, "LoginName", email);
        check_document(doc, "DisplayName", email);
        free(doc);
        doc = autodiscover_response(AUTODISCOVER_SCHEMA_MOBILESYNC, email, NULL, &settings);
        if (doc == NULL)
            abort();
        check_document(doc, "EMailAddress", email);
        free(doc);
    }
    char *err = autodiscover_error(
        schema, r == -2 ? AUTODISCOVER_ERR_NO_SCHEMA : AUTODISCOVER_ERR_INVALID_REQUEST, NULL);
    if (err == NULL)
        abort();
    free(err);
    return 0;
}
