/* IMAP ENVELOPE formatting and IMAP string output (see envelope.h).
 *
 * The envelope is built from the raw (unfolded) header values the MIME parser kept: strings go
 * out as they are (IMAP clients decode RFC 2047 themselves), address fields are parsed here
 * with proto/mime/header.c's RFC 5322 parser. Choosing between a quoted string and a literal
 * is a scan of the bytes; literals carry anything a quoted string could not without escapes. */
#include "proto/imap/envelope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void imap_envelope_out_add(struct imap_envelope_out *out, const char *s, size_t n)
{
    if (out->failed)
        return;
    if (out->len + n + 1 > out->cap) {
        size_t cap = out->cap ? out->cap : 256;
        while (cap < out->len + n + 1)
            cap *= 2;
        char *d = realloc(out->data, cap);
        if (!d) {
            out->failed = true;
            return;
        }
        out->data = d;
        out->cap = cap;
    }
    if (n)
        memcpy(out->data + out->len, s, n);
    out->len += n;
    out->data[out->len] = '\0';
}

static void add_str(struct imap_envelope_out *out, const char *s)
{
    imap_envelope_out_add(out, s, strlen(s));
}

/* RFC 3501 §9: QUOTED-CHAR without the escapes is any 7-bit CHAR but CR, LF, '"' and '\'. */
static bool quotable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == 0 || c >= 0x80 || c == '\r' || c == '\n' || c == '"' || c == '\\')
            return false;
    }
    return true;
}

void imap_envelope_out_string(struct imap_envelope_out *out, const char *s, size_t n)
{
    if (quotable(s, n)) {
        imap_envelope_out_add(out, "\"", 1);
        imap_envelope_out_add(out, s, n);
        imap_envelope_out_add(out, "\"", 1);
        return;
    }
    char prefix[32];
    int pn = snprintf(prefix, sizeof(prefix), "{%zu}\r\n", n);
    imap_envelope_out_add(out, prefix, (size_t)pn);
    size_t start = out->len;
    imap_envelope_out_add(out, s, n);
    if (out->failed)
        return;
    for (size_t i = start; i < out->len; i++)
        if (out->data[i] == '\0')
            out->data[i] = ' '; /* RFC 3501 §4.3: no NUL in a literal */
}

void imap_envelope_out_nstring(struct imap_envelope_out *out, const char *s)
{
    if (!s)
        add_str(out, "NIL");
    else
        imap_envelope_out_string(out, s, strlen(s));
}

void imap_envelope_out_free(struct imap_envelope_out *out)
{
    free(out->data);
    memset(out, 0, sizeof(*out));
}

/* Appends an address list field: "((...)(...))", or NIL when absent or without addresses.
 * Returns whether a list was written (for the Sender/Reply-To default). */
static bool append_addresses(struct imap_envelope_out *out, const char *value, bool nil_if_empty)
{
    struct mime_address *list = NULL;
    size_t n = 0;
    if (value && mime_header_addresses_parse(value, strlen(value), &list, &n) < 0) {
        out->failed = true;
        return true;
    }
    if (n == 0) {
        if (nil_if_empty)
            add_str(out, "NIL");
        return false;
    }
    add_str(out, "(");
    for (size_t i = 0; i < n; i++) {
        const struct mime_address *a = &list[i];
        add_str(out, "(");
        imap_envelope_out_nstring(out, a->name);
        add_str(out, " ");
        imap_envelope_out_nstring(out, a->route);
        add_str(out, " ");
        imap_envelope_out_nstring(out, a->mailbox);
        add_str(out, " ");
        imap_envelope_out_nstring(out, a->domain);
        add_str(out, ")");
    }
    add_str(out, ")");
    mime_header_addresses_free(&list, n);
    return true;
}

void imap_envelope_append(struct imap_envelope_out *out, const struct mime_envelope *env)
{
    if (!env) {
        add_str(out, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
        return;
    }
    add_str(out, "(");
    imap_envelope_out_nstring(out, env->date);
    add_str(out, " ");
    imap_envelope_out_nstring(out, env->subject);
    add_str(out, " ");
    append_addresses(out, env->from, true);
    /* RFC 3501 §7.4.2: Sender and Reply-To absent or empty are set to From */
    add_str(out, " ");
    if (!append_addresses(out, env->sender, false))
        append_addresses(out, env->from, true);
    add_str(out, " ");
    if (!append_addresses(out, env->reply_to, false))
        append_addresses(out, env->from, true);
    add_str(out, " ");
    append_addresses(out, env->to, true);
    add_str(out, " ");
    append_addresses(out, env->cc, true);
    add_str(out, " ");
    append_addresses(out, env->bcc, true);
    add_str(out, " ");
    imap_envelope_out_nstring(out, env->in_reply_to);
    add_str(out, " ");
    imap_envelope_out_nstring(out, env->message_id);
    add_str(out, ")");
}

int imap_envelope_format(const struct mime_envelope *env, char **out_r, size_t *len_r)
{
    struct imap_envelope_out out = {0};
    imap_envelope_append(&out, env);
    if (out.failed) {
        imap_envelope_out_free(&out);
        return -1;
    }
    *out_r = out.data;
    if (len_r)
        *len_r = out.len;
    return 0;
}
