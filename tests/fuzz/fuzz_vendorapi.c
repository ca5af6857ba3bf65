/* libFuzzer harness for proto/vendorapi. The input is a request body. Besides
 * looking for memory errors and hangs it checks what node/http/vendorapi.c
 * relies on:
 *   - the verdict is one of enum vapi_parse_result, and a request comes back
 *     exactly when the verdict says so;
 *   - the sid, id, uid and command fit their bounds, the command is lower-case
 *     [a-z0-9_] and not empty when the verdict is OK;
 *   - the parameter tree keeps the depth and element limits, every name is
 *     lower-case and every text NUL-terminated at text_len;
 *   - a response echoing every name and text (and the sid) through the writer
 *     is well-formed XML that libxml2 parses back (no DTD, no network), and an
 *     error document always builds;
 *   - the value helpers (name masks, digest plaintext, percent decoding,
 *     numbers, name splitting) run on arbitrary text without going astray.
 * The body is parsed from an exact-size heap copy so that ASan sees any
 * over-read. */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/vendorapi/request.h"
#include "proto/vendorapi/response.h"
#include "proto/vendorapi/values.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_tree(const struct vapi_node *n, int depth, size_t *count, struct vapi_out *o,
                       const char *mask)
{
    for (; n != NULL; n = n->next) {
        if (depth > VAPI_MAX_DEPTH || ++*count > VAPI_MAX_ELEMENTS)
            abort();
        if (n->name == NULL || n->text == NULL || strlen(n->text) != n->text_len ||
            n->text_len > VAPI_MAX_TEXT)
            abort();
        for (const char *p = n->name; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                abort();
        vapi_out_textn(o, "val", n->text, n->text_len);
        vapi_out_prop_begin(o, n->name, "TPropertyString");
        vapi_out_prop_end(o, 2);
        (void)vapi_glob_match(mask, n->text);
        (void)vapi_glob_match(n->text, n->name);
        char pw[256];
        long long t;
        (void)vapi_digest_split(n->text, n->text_len, pw, sizeof pw, &t);
        char dec[256];
        (void)vapi_percent_decode(n->text, dec, sizeof dec);
        long long v;
        (void)vapi_number_parse(n->text, 1000000, &v);
        (void)vapi_authtype_parse(n->text);
        char given[64], surname[64];
        vapi_name_split(n->text, given, sizeof given, surname, sizeof surname);
        if (strlen(given) >= sizeof given || strlen(surname) >= sizeof surname)
            abort();
        check_tree(n->children, depth + 1, count, o, mask);
    }
}

static void check_wellformed(const char *doc, size_t len)
{
    xmlDocPtr d =
        xmlReadMemory(doc, (int)len, NULL, "UTF-8",
                      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_HUGE);
    if (d == NULL)
        abort();
    xmlNodePtr root = xmlDocGetRootElement(d);
    if (root == NULL || strcmp((const char *)root->name, "iq") != 0)
        abort();
    xmlFreeDoc(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool init;
    if (!init) {
        xmlInitParser();
        init = true;
    }
    char *body = malloc(size ? size : 1);
    if (body == NULL)
        return 0;
    memcpy(body, data, size);

    struct vapi_request *req = NULL;
    int rc = vapi_request_parse(body, size, &req);
    if (rc != VAPI_PARSE_OK && rc != VAPI_PARSE_MALFORMED && rc != VAPI_PARSE_XMLNS &&
        rc != VAPI_PARSE_NO_COMMAND)
        abort();
    if ((rc == VAPI_PARSE_MALFORMED) != (req == NULL))
        abort();
    if (req != NULL) {
        if (strlen(req->sid) > VAPI_SID_MAX || strlen(req->id) > VAPI_ID_MAX ||
            strlen(req->uid) > VAPI_ID_MAX || strlen(req->command) > VAPI_COMMAND_MAX)
            abort();
        if (rc == VAPI_PARSE_OK) {
            if (req->command[0] == '\0')
                abort();
            for (const char *p = req->command; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
                    abort();
        }
        struct vapi_out *o = vapi_out_new(8u * 1024 * 1024);
        if (o != NULL) {
            vapi_out_begin(o, "result", req->id, req->uid, req->sid);
            vapi_out_open(o, "result");
            size_t count = 0;
            char mask[64];
            if (!vapi_request_text(req, "filter/namemask", mask, sizeof mask))
                strcpy(mask, "*a?b*");
            check_tree(req->params, 1, &count, o, mask);
            vapi_out_close(o, "result");
            vapi_out_end(o);
            size_t len = 0;
            const char *doc = vapi_out_data(o, &len);
            if (doc != NULL)
                check_wellformed(doc, len);
            vapi_out_free(&o);
        }
        char *err = vapi_error_document("session_invalid", req->id, req->uid, req->sid);
        if (err == NULL)
            abort();
        check_wellformed(err, strlen(err));
        free(err);
    }
    vapi_request_free(&req);
    free(body);
    return 0;
}
