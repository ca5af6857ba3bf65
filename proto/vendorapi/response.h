/* Response documents of the vendor-compatible admin XML API
 * (docs/VENDORAPI.md), laid out the way the vendor's server answers, so that
 * clients that pull values out with regular expressions work too:
 *
 *   <iq type="result" sid="...">          type first, sid last, the start tag
 *   <query xmlns="admin:iq:rpc">           alone on its line
 *   <result>1</result>                    a scalar result on one line
 *   </query>
 *   </iq>
 *
 * and one element per line below <result>. Pure code: no I/O.
 *
 * The writer appends to a bounded buffer. Every text and attribute value is
 * escaped; bytes that are not UTF-8, or characters XML 1.0 cannot carry, are
 * replaced by U+FFFD, so the document is always well-formed whatever the data.
 * Going past the bound, or running out of memory, marks the writer failed:
 * vapi_out_data() then returns NULL. */
#ifndef FLOE_PROTO_VENDORAPI_RESPONSE_H
#define FLOE_PROTO_VENDORAPI_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>

struct vapi_out;

/* A writer whose document may grow to max_len bytes. NULL when out of memory. */
struct vapi_out *vapi_out_new(size_t max_len);
void vapi_out_free(struct vapi_out **o);

/* Starts the document: <iq type="TYPE" [id=".."] [uid=".."] [sid=".."]> and
 * <query xmlns="admin:iq:rpc">. type is "result" or "error"; id, uid and sid
 * are left out when NULL or "". Discards anything written before, and clears
 * a failure. */
void vapi_out_begin(struct vapi_out *o, const char *type, const char *id, const char *uid,
                    const char *sid);
/* Ends the document (</query></iq>). */
void vapi_out_end(struct vapi_out *o);

/* <name> on a line of its own, and </name>. name is ours: not escaped. */
void vapi_out_open(struct vapi_out *o, const char *name);
void vapi_out_close(struct vapi_out *o, const char *name);
/* <name>text</name> on one line; <name/> when text is NULL or "". */
void vapi_out_text(struct vapi_out *o, const char *name, const char *text);
/* The same with text[0..len), which may hold any bytes. */
void vapi_out_textn(struct vapi_out *o, const char *name, const char *text, size_t len);
void vapi_out_int(struct vapi_out *o, const char *name, long long v);

/* One property item of getaccountproperties and its relatives:
 *   <item><apiproperty><propname>NAME</propname></apiproperty>
 *   <propertyval><classname>CLASS</classname>
 * then the caller writes the value's elements, then vapi_out_prop_end()
 * closes it with </propertyval><propertyright>RIGHT</propertyright></item>. */
void vapi_out_prop_begin(struct vapi_out *o, const char *propname, const char *classname);
void vapi_out_prop_end(struct vapi_out *o, int right);

/* The document so far and its length; NULL when the writer failed. */
const char *vapi_out_data(const struct vapi_out *o, size_t *len_r);
bool vapi_out_failed(const struct vapi_out *o);
/* Hands the document over (malloc'd, NUL-terminated, its length in *len_r)
 * and leaves the writer empty; NULL when the writer failed or is empty. */
char *vapi_out_take(struct vapi_out *o, size_t *len_r);

/* A whole error document <iq type="error" ..><query ..><error uid="UID"/>..
 * (malloc'd, NUL-terminated), id/uid/sid as for vapi_out_begin(). NULL when
 * out of memory. */
char *vapi_error_document(const char *error_uid, const char *id, const char *uid, const char *sid);

#endif
