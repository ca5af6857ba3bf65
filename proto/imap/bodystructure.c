/* IMAP BODY / BODYSTRUCTURE writer (see bodystructure.h).
 *
 * A recursive walk over the parsed tree (its depth is bounded by the parser's depth limit),
 * writing the RFC 3501 §9 productions body-type-mpart, body-type-text, body-type-msg and
 * body-type-basic with their extension data. Everything comes from fields the MIME parser
 * already decoded; nothing here can fail except memory. */
#include "proto/imap/bodystructure.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define EMPTY_BODY "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0"

static void add(struct imap_envelope_out *out, const char *s)
{
    imap_envelope_out_add(out, s, strlen(s));
}

static void add_u64(struct imap_envelope_out *out, uint64_t v)
{
    char b[24];
    int n = snprintf(b, sizeof(b), " %" PRIu64, v);
    imap_envelope_out_add(out, b, (size_t)n);
}

/* body-fld-param: ("name" "value" ...) or NIL; extended RFC 2231 values as "name*". */
static void add_params(struct imap_envelope_out *out, const struct mime_param *v, size_t n,
                       bool default_charset)
{
    bool charset = false;
    if (n == 0 && !default_charset) {
        add(out, "NIL");
        return;
    }
    add(out, "(");
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            add(out, " ");
        if (v[i].extended) { /* RFC 2231 §4: the extended value goes with "name*" */
            struct imap_envelope_out tmp = {0};
            imap_envelope_out_add(&tmp, v[i].name, strlen(v[i].name));
            imap_envelope_out_add(&tmp, "*", 1);
            if (tmp.failed)
                out->failed = true;
            else
                imap_envelope_out_string(out, tmp.data, tmp.len);
            imap_envelope_out_free(&tmp);
        } else
            imap_envelope_out_nstring(out, v[i].name);
        add(out, " ");
        imap_envelope_out_nstring(out, v[i].value);
        charset = charset || (!v[i].extended && strcmp(v[i].name, "charset") == 0);
    }
    if (default_charset && !charset) /* RFC 2045 §5.2 */
        add(out, n > 0 ? " \"charset\" \"us-ascii\"" : "\"charset\" \"us-ascii\"");
    add(out, ")");
}

/* body-fld-dsp: ("type" params) or NIL */
static void add_disposition(struct imap_envelope_out *out, const struct mime_part *part)
{
    if (!part->disposition) {
        add(out, " NIL");
        return;
    }
    add(out, " (");
    imap_envelope_out_nstring(out, part->disposition);
    add(out, " ");
    add_params(out, part->disposition_params, part->ndisposition_params, false);
    add(out, ")");
}

/* body-fld-lang: the Content-Language tags as a list (RFC 3282 §2: a comma-separated list),
 * or NIL when there are none. */
static void add_language(struct imap_envelope_out *out, const char *lang)
{
    size_t count = 0;
    const char *s = lang;
    while (s && *s) {
        while (*s == ' ' || *s == '\t' || *s == ',')
            s++;
        if (*s == '(') { /* a comment */
            int depth = 0;
            for (; *s; s++) {
                if (*s == '\\' && s[1])
                    s++;
                else if (*s == '(')
                    depth++;
                else if (*s == ')' && --depth == 0) {
                    s++;
                    break;
                }
            }
            continue;
        }
        const char *start = s;
        while (*s && *s != ',' && *s != ' ' && *s != '\t' && *s != '(')
            s++;
        if (s == start)
            continue;
        add(out, count == 0 ? " (" : " ");
        imap_envelope_out_string(out, start, (size_t)(s - start));
        count++;
    }
    add(out, count ? ")" : " NIL");
}

static void add_ext_tail(struct imap_envelope_out *out, const struct mime_part *part)
{
    add_disposition(out, part);
    add_language(out, part->language);
    add(out, " ");
    imap_envelope_out_nstring(out, part->location);
}

void imap_bodystructure_append(struct imap_envelope_out *out, const struct mime_part *part,
                               bool extended)
{
    add(out, "(");
    if (mime_part_is_multipart(part)) { /* body-type-mpart */
        for (size_t i = 0; i < part->nchildren; i++)
            imap_bodystructure_append(out, &part->children[i], extended);
        if (part->nchildren == 0)
            add(out, extended ? EMPTY_BODY " NIL NIL NIL NIL)" : EMPTY_BODY ")");
        add(out, " ");
        imap_envelope_out_nstring(out, part->subtype);
        if (extended) { /* body-ext-mpart */
            add(out, " ");
            add_params(out, part->params, part->nparams, false);
            add_ext_tail(out, part);
        }
        add(out, ")");
        return;
    }
    const char *type = part->type ? part->type : "text";
    const char *subtype = part->subtype ? part->subtype : "plain";
    bool text = strcmp(type, "text") == 0;
    imap_envelope_out_nstring(out, type);
    add(out, " ");
    imap_envelope_out_nstring(out, subtype);
    add(out, " "); /* body-fields */
    add_params(out, part->params, part->nparams, text);
    add(out, " ");
    imap_envelope_out_nstring(out, part->id);
    add(out, " ");
    imap_envelope_out_nstring(out, part->description);
    add(out, " ");
    imap_envelope_out_nstring(out, part->encoding ? part->encoding : "7bit");
    add_u64(out, part->body_size);
    if (text) { /* body-type-text */
        add_u64(out, part->body_lines);
    } else if (mime_part_is_message(part)) { /* body-type-msg */
        add(out, " ");
        if (part->nchildren == 1) {
            imap_envelope_append(out, part->children[0].envelope);
            add(out, " ");
            imap_bodystructure_append(out, &part->children[0], extended);
        } else {
            imap_envelope_append(out, NULL);
            add(out, extended ? " " EMPTY_BODY " NIL NIL NIL NIL)" : " " EMPTY_BODY ")");
        }
        add_u64(out, part->body_lines);
    }
    if (extended) { /* body-ext-1part */
        add(out, " ");
        imap_envelope_out_nstring(out, part->md5);
        add_ext_tail(out, part);
    }
    add(out, ")");
}

int imap_bodystructure_format(const struct mime_part *root, bool extended, char **out_r,
                              size_t *len_r)
{
    struct imap_envelope_out out = {0};
    imap_bodystructure_append(&out, root, extended);
    if (out.failed) {
        imap_envelope_out_free(&out);
        return -1;
    }
    *out_r = out.data;
    if (len_r)
        *len_r = out.len;
    return 0;
}
