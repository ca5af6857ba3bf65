/* layer: proto */
/* Tests for proto/vendorapi: the request parser (envelope, attributes, names
 * without case or namespace, nested parameters, and every refusal: malformed
 * XML, DOCTYPE and entities, depth, element count, text size, wrong root or
 * namespace, missing command), the response writer (layout for regex-based
 * clients, escaping, invalid UTF-8, the size bound), the values (name masks,
 * authtype, numbers, digest plaintext, percent decoding, name splitting,
 * account types) and RSA (modulus, PEM round trip, encrypt/decrypt, wrong key
 * and malformed ciphertext). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/vendorapi/request.h"
#include "proto/vendorapi/response.h"
#include "proto/vendorapi/rsa.h"
#include "proto/vendorapi/values.h"

static int parse(const char *body, struct vapi_request **req)
{
    return vapi_request_parse(body, strlen(body), req);
}

/* ---- request ---- */

static void test_parse_full_request(void **state)
{
    const char *body = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
                       "<iq type=\"set\" format=\"text/xml\" id=\"7\" uid=\"1\" sid=\"abc123\">\n"
                       "  <query xmlns=\"admin:iq:rpc\">\n"
                       "    <commandname> GetAccountsInfoList </commandname>\n"
                       "    <commandparams>\n"
                       "      <domainstr>example.com</domainstr>\n"
                       "      <Filter><NameMask>j*</NameMask><typemask>0</typemask></Filter>\n"
                       "      <offset>0</offset><count>250</count>\n"
                       "      <password>  a &amp; b &lt;c&gt; </password>\n"
                       "      <cdata><![CDATA[<raw>&]]></cdata>\n"
                       "    </commandparams>\n"
                       "  </query>\n"
                       "</iq>\n";
    struct vapi_request *r = NULL;
    assert_int_equal(parse(body, &r), VAPI_PARSE_OK);
    assert_non_null(r);
    assert_true(r->has_sid);
    assert_string_equal(r->sid, "abc123");
    assert_string_equal(r->id, "7");
    assert_string_equal(r->uid, "1");
    assert_string_equal(r->command, "getaccountsinfolist");
    char buf[64];
    assert_true(vapi_request_text(r, "domainstr", buf, sizeof buf));
    assert_string_equal(buf, "example.com");
    /* names match without case, and paths go down */
    assert_true(vapi_request_text(r, "FILTER/namemask", buf, sizeof buf));
    assert_string_equal(buf, "j*");
    assert_true(vapi_request_text(r, "filter/typemask", buf, sizeof buf));
    assert_string_equal(buf, "0");
    assert_false(vapi_request_text(r, "namemask", buf, sizeof buf)); /* not flat */
    assert_string_equal(buf, "");
    assert_false(vapi_request_text(r, "filter/nothing", buf, sizeof buf));
    /* raw text keeps its spaces; predefined entities are decoded */
    const struct vapi_node *pw = vapi_request_node(r, "password");
    assert_non_null(pw);
    assert_string_equal(pw->text, "  a & b <c> ");
    assert_int_equal(pw->text_len, 12);
    assert_true(vapi_node_text(pw, buf, sizeof buf));
    assert_string_equal(buf, "a & b <c>");
    assert_true(vapi_request_text(r, "cdata", buf, sizeof buf));
    assert_string_equal(buf, "<raw>&");
    /* a value that does not fit the caller's buffer is refused, not cut */
    char tiny[4];
    assert_false(vapi_request_text(r, "domainstr", tiny, sizeof tiny));
    vapi_request_free(&r);
    assert_null(r);
}

static void test_parse_minimal_and_lists(void **state)
{
    struct vapi_request *r = NULL;
    assert_int_equal(parse("<iq><query xmlns=\"admin:iq:rpc\"><commandname>logout</commandname>"
                           "<commandparams/></query></iq>",
                           &r),
                     VAPI_PARSE_OK);
    assert_false(r->has_sid);
    assert_string_equal(r->sid, "");
    assert_null(r->params);
    vapi_request_free(&r);

    /* repeated items keep their order; children in the namespace match by local name */
    assert_int_equal(
        parse("<iq sid=\"\"><q:query xmlns:q=\"admin:iq:rpc\" xmlns=\"admin:iq:rpc\">"
              "<commandname>getaccountproperties</commandname><commandparams>"
              "<accountpropertylist><item><propname>u_name</propname></item>"
              "<item><propname>U_AliasList</propname></item><item/></accountpropertylist>"
              "</commandparams></q:query></iq>",
              &r),
        VAPI_PARSE_OK);
    assert_true(r->has_sid);
    const struct vapi_node *list = vapi_request_node(r, "accountpropertylist");
    assert_non_null(list);
    const char *want[] = {"u_name", "U_AliasList", ""};
    size_t i = 0;
    for (const struct vapi_node *it = list->children; it; it = it->next, i++) {
        assert_string_equal(it->name, "item");
        char name[32];
        vapi_node_text(vapi_node_find(it->children, "propname"), name, sizeof name);
        assert_string_equal(name, want[i]);
    }
    assert_int_equal(i, 3);
    vapi_request_free(&r);
}

static void test_parse_envelope_errors(void **state)
{
    struct vapi_request *r = (struct vapi_request *)1;
    /* not XML, not well-formed, empty, wrong root */
    assert_int_equal(parse("hello", &r), VAPI_PARSE_MALFORMED);
    assert_null(r);
    assert_int_equal(parse("<iq><query xmlns=\"admin:iq:rpc\">", &r), VAPI_PARSE_MALFORMED);
    assert_int_equal(vapi_request_parse("", 0, &r), VAPI_PARSE_MALFORMED);
    assert_int_equal(vapi_request_parse(NULL, 0, &r), VAPI_PARSE_MALFORMED);
    assert_int_equal(parse("<notiq><query xmlns=\"admin:iq:rpc\"><commandname>x</commandname>"
                           "</query></notiq>",
                           &r),
                     VAPI_PARSE_MALFORMED);
    assert_null(r);
    /* a NUL byte anywhere */
    assert_int_equal(vapi_request_parse("<iq>\0</iq>", 10, &r), VAPI_PARSE_MALFORMED);
    /* wrong or missing namespace, or no query at all: the sid is still there to echo */
    assert_int_equal(parse("<iq sid=\"s1\"><query xmlns=\"admin:iq:other\"><commandname>logout"
                           "</commandname></query></iq>",
                           &r),
                     VAPI_PARSE_XMLNS);
    assert_non_null(r);
    assert_string_equal(r->sid, "s1");
    vapi_request_free(&r);
    assert_int_equal(parse("<iq><query><commandname>logout</commandname></query></iq>", &r),
                     VAPI_PARSE_XMLNS);
    vapi_request_free(&r);
    assert_int_equal(parse("<iq/>", &r), VAPI_PARSE_XMLNS);
    vapi_request_free(&r);
    /* no command, an empty one, markup inside it, odd characters, too long */
    const char *bad[] = {
        "<iq><query xmlns=\"admin:iq:rpc\"><commandparams/></query></iq>",
        "<iq><query xmlns=\"admin:iq:rpc\"><commandname>  </commandname></query></iq>",
        "<iq><query xmlns=\"admin:iq:rpc\"><commandname>log<b/>out</commandname></query></iq>",
        "<iq><query xmlns=\"admin:iq:rpc\"><commandname>log out</commandname></query></iq>",
        "<iq><query xmlns=\"admin:iq:rpc\"><commandname>"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "</commandname></query></iq>",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse(bad[i], &r), VAPI_PARSE_NO_COMMAND);
        assert_non_null(r);
        vapi_request_free(&r);
    }
    /* an over-long sid is present but empty (it can never match a session) */
    char body[512];
    char longsid[VAPI_SID_MAX + 10];
    memset(longsid, 'a', sizeof longsid - 1);
    longsid[sizeof longsid - 1] = '\0';
    snprintf(body, sizeof body,
             "<iq sid=\"%s\"><query xmlns=\"admin:iq:rpc\"><commandname>logout</commandname>"
             "</query></iq>",
             longsid);
    assert_int_equal(parse(body, &r), VAPI_PARSE_OK);
    assert_true(r->has_sid);
    assert_string_equal(r->sid, "");
    vapi_request_free(&r);
}

static void test_parse_refuses_dtd_and_entities(void **state)
{
    struct vapi_request *r = NULL;
    const char *laughs =
        "<?xml version=\"1.0\"?>\n"
        "<!DOCTYPE iq [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">"
        "<!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]>\n"
        "<iq><query xmlns=\"admin:iq:rpc\"><commandname>logout</commandname>"
        "<commandparams><x>&c;</x></commandparams></query></iq>";
    assert_int_equal(parse(laughs, &r), VAPI_PARSE_MALFORMED);
    assert_null(r);
    const char *external =
        "<!DOCTYPE iq SYSTEM \"file:///etc/passwd\"><iq><query xmlns=\"admin:iq:rpc\">"
        "<commandname>logout</commandname></query></iq>";
    assert_int_equal(parse(external, &r), VAPI_PARSE_MALFORMED);
    /* an entity that was never declared */
    assert_int_equal(parse("<iq><query xmlns=\"admin:iq:rpc\"><commandname>logout</commandname>"
                           "<commandparams><x>&xxe;</x></commandparams></query></iq>",
                           &r),
                     VAPI_PARSE_MALFORMED);
    /* character references are fine */
    assert_int_equal(parse("<iq><query xmlns=\"admin:iq:rpc\"><commandname>logout</commandname>"
                           "<commandparams><x>&#65;&#x42;</x></commandparams></query></iq>",
                           &r),
                     VAPI_PARSE_OK);
    assert_string_equal(vapi_request_node(r, "x")->text, "AB");
    vapi_request_free(&r);
}

static char *repeat_doc(const char *head, const char *unit, size_t n, const char *mid,
                        const char *close, const char *tail)
{
    size_t len = strlen(head) + n * (strlen(unit) + strlen(close)) + strlen(mid) + strlen(tail) + 1;
    char *d = malloc(len);
    assert_non_null(d);
    strcpy(d, head);
    for (size_t i = 0; i < n; i++)
        strcat(d, unit);
    strcat(d, mid);
    for (size_t i = 0; i < n; i++)
        strcat(d, close);
    strcat(d, tail);
    return d;
}

static void test_parse_limits(void **state)
{
    struct vapi_request *r = NULL;
    const char *head = "<iq><query xmlns=\"admin:iq:rpc\"><commandname>logout</commandname>"
                       "<commandparams>";
    const char *tail = "</commandparams></query></iq>";
    /* nesting just within the limit is fine, one more is refused */
    size_t ok_depth = VAPI_MAX_DEPTH - 3;
    char *d = repeat_doc(head, "<a>", ok_depth, "x", "</a>", tail);
    assert_int_equal(parse(d, &r), VAPI_PARSE_OK);
    vapi_request_free(&r);
    free(d);
    d = repeat_doc(head, "<a>", ok_depth + 1, "x", "</a>", tail);
    assert_int_equal(parse(d, &r), VAPI_PARSE_MALFORMED);
    free(d);
    /* deep nesting far beyond: stopped at once */
    d = repeat_doc(head, "<a>", 20000, "", "</a>", tail);
    assert_int_equal(parse(d, &r), VAPI_PARSE_MALFORMED);
    free(d);
    /* too many elements */
    d = repeat_doc(head, "<b/>", VAPI_MAX_ELEMENTS, "", "", tail);
    assert_int_equal(parse(d, &r), VAPI_PARSE_MALFORMED);
    free(d);
    /* text over the limit of one element */
    d = repeat_doc("<iq><query xmlns=\"admin:iq:rpc\"><commandname>logout</commandname>"
                   "<commandparams><x>",
                   "0123456789abcdef", VAPI_MAX_TEXT / 16 + 1, "", "",
                   "</x></commandparams></query></iq>");
    assert_int_equal(parse(d, &r), VAPI_PARSE_MALFORMED);
    free(d);
    /* a body over VAPI_REQUEST_MAX is refused unparsed */
    d = malloc(VAPI_REQUEST_MAX + 1);
    memset(d, ' ', VAPI_REQUEST_MAX);
    memcpy(d, "<iq/>", 5);
    assert_int_equal(vapi_request_parse(d, VAPI_REQUEST_MAX + 1, &r), VAPI_PARSE_MALFORMED);
    assert_int_equal(vapi_request_parse(d, VAPI_REQUEST_MAX, &r), VAPI_PARSE_XMLNS);
    vapi_request_free(&r);
    free(d);
}

/* ---- response ---- */

static void test_response_layout(void **state)
{
    struct vapi_out *o = vapi_out_new(4096);
    vapi_out_begin(o, "result", "7", NULL, "s-1");
    vapi_out_text(o, "result", "1");
    vapi_out_end(o);
    size_t len = 0;
    const char *doc = vapi_out_data(o, &len);
    assert_string_equal(doc, "<iq type=\"result\" id=\"7\" sid=\"s-1\">\n"
                             "<query xmlns=\"admin:iq:rpc\">\n"
                             "<result>1</result>\n"
                             "</query>\n"
                             "</iq>\n");
    assert_int_equal(len, strlen(doc));

    /* begin again: a fresh document; property items */
    vapi_out_begin(o, "result", NULL, "", NULL);
    vapi_out_open(o, "result");
    vapi_out_prop_begin(o, "U_Name", "TPropertyString");
    vapi_out_text(o, "val", "J<o>\"e\" & 'co'\r\n\tx");
    vapi_out_prop_end(o, 2);
    vapi_out_int(o, "overallcount", -5);
    vapi_out_text(o, "empty", "");
    vapi_out_close(o, "result");
    vapi_out_end(o);
    assert_string_equal(vapi_out_data(o, NULL),
                        "<iq type=\"result\">\n<query xmlns=\"admin:iq:rpc\">\n<result>\n<item>\n"
                        "<apiproperty>\n<propname>U_Name</propname>\n</apiproperty>\n"
                        "<propertyval>\n<classname>TPropertyString</classname>\n"
                        "<val>J&lt;o&gt;&quot;e&quot; &amp; &apos;co&apos;&#13;&#10;\tx</val>\n"
                        "</propertyval>\n<propertyright>2</propertyright>\n</item>\n"
                        "<overallcount>-5</overallcount>\n<empty/>\n</result>\n</query>\n</iq>\n");
    vapi_out_free(&o);
    assert_null(o);
}

static void test_response_escapes_bad_bytes(void **state)
{
    struct vapi_out *o = vapi_out_new(4096);
    vapi_out_begin(o, "result", NULL, NULL, "a\"b<");
    /* invalid UTF-8, an overlong form, a surrogate, a C0 control, U+FFFE; valid é and 😀 */
    const char bad[] = "x\xff"
                       "y\xc0\xaf"
                       "z\xed\xa0\x80"
                       "\x01"
                       "\xef\xbf\xbe"
                       "\xc3\xa9"
                       "\xf0\x9f\x98\x80";
    vapi_out_textn(o, "val", bad, sizeof bad - 1);
    vapi_out_end(o);
    const char *doc = vapi_out_data(o, NULL);
    assert_non_null(strstr(doc, "sid=\"a&quot;b&lt;\">"));
    assert_non_null(strstr(doc, "<val>x\xef\xbf\xbdy\xef\xbf\xbd\xef\xbf\xbdz"));
    assert_non_null(strstr(doc, "\xc3\xa9\xf0\x9f\x98\x80</val>"));
    assert_null(strstr(doc, "\xff"));
    assert_null(strchr(doc, '\x01'));
    vapi_out_free(&o);
}

static void test_response_bound_and_errors(void **state)
{
    struct vapi_out *o = vapi_out_new(100);
    vapi_out_begin(o, "result", NULL, NULL, NULL);
    for (int i = 0; i < 10; i++)
        vapi_out_text(o, "item", "0123456789");
    assert_true(vapi_out_failed(o));
    assert_null(vapi_out_data(o, NULL));
    /* begin clears the failure */
    vapi_out_begin(o, "result", NULL, NULL, NULL);
    vapi_out_end(o);
    assert_non_null(vapi_out_data(o, NULL));
    vapi_out_free(&o);
    vapi_out_free(&o); /* harmless twice */

    char *e = vapi_error_document("session_invalid", NULL, "1", "abc");
    assert_string_equal(e, "<iq type=\"error\" uid=\"1\" sid=\"abc\">\n"
                           "<query xmlns=\"admin:iq:rpc\">\n"
                           "<error uid=\"session_invalid\"/>\n"
                           "</query>\n</iq>\n");
    free(e);
    /* every error document parses back as an envelope (a response is no request, but
     * it is well-formed and in the namespace) */
    e = vapi_error_document("iq_root_tag_invalid", NULL, NULL, NULL);
    struct vapi_request *r = NULL;
    assert_int_equal(vapi_request_parse(e, strlen(e), &r), VAPI_PARSE_NO_COMMAND);
    vapi_request_free(&r);
    free(e);
}

/* ---- values ---- */

static void test_glob(void **state)
{
    assert_true(vapi_glob_match("*", "anything"));
    assert_true(vapi_glob_match("", "anything"));
    assert_true(vapi_glob_match(NULL, "x"));
    assert_true(vapi_glob_match("*", ""));
    assert_true(vapi_glob_match("J*", "john"));
    assert_true(vapi_glob_match("*OHN", "john"));
    assert_true(vapi_glob_match("j?hn", "JOHN"));
    assert_true(vapi_glob_match("*o*n*", "john"));
    assert_true(vapi_glob_match("a*b*c", "aXbYbZc"));
    assert_true(vapi_glob_match("**a**", "bab"));
    assert_false(vapi_glob_match("j?hn", "jhn"));
    assert_false(vapi_glob_match("john", "johnny"));
    assert_false(vapi_glob_match("*x", "john"));
    assert_false(vapi_glob_match("a*b*c", "aXbYbZ"));
    /* '?' takes one character, also a multi-byte one */
    assert_true(vapi_glob_match("J?rg", "J\xc3\xb6rg"));
    assert_false(vapi_glob_match("J??rg", "J\xc3\xb6rg"));
    assert_true(vapi_glob_match("*\xc3\xb6*", "J\xc3\xb6rg"));
    /* a pathological mask ends quickly */
    char text[4001], mask[200];
    memset(text, 'a', 4000);
    text[4000] = '\0';
    for (int i = 0; i < 198; i += 2) {
        mask[i] = '*';
        mask[i + 1] = 'a';
    }
    mask[198] = 'b';
    mask[199] = '\0';
    assert_false(vapi_glob_match(mask, text));
}

static void test_small_values(void **state)
{
    assert_int_equal(vapi_authtype_parse(NULL), 0);
    assert_int_equal(vapi_authtype_parse(""), 0);
    assert_int_equal(vapi_authtype_parse(" 0 "), 0);
    assert_int_equal(vapi_authtype_parse("PLAIN"), 0);
    assert_int_equal(vapi_authtype_parse("1"), 1);
    assert_int_equal(vapi_authtype_parse("rsa"), 1);
    assert_int_equal(vapi_authtype_parse("2"), -1);
    assert_int_equal(vapi_authtype_parse("10"), -1);

    long long v = -1;
    assert_int_equal(vapi_number_parse(" 250\n", 1000, &v), 0);
    assert_int_equal(v, 250);
    assert_int_equal(vapi_number_parse("0", 0, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(vapi_number_parse("1001", 1000, &v), -1);
    assert_int_equal(vapi_number_parse("-1", 1000, &v), -1);
    assert_int_equal(vapi_number_parse("", 1000, &v), -1);
    assert_int_equal(vapi_number_parse("12a", 1000, &v), -1);
    assert_int_equal(vapi_number_parse("9999999999999999999999", 1000, &v), -1);

    assert_int_equal(vapi_account_type("user"), VAPI_TYPE_USER);
    assert_int_equal(vapi_account_type("group"), 7);
    assert_int_equal(vapi_account_type("resource"), 8);
    assert_int_equal(vapi_account_type("list"), -1);
    assert_int_equal(vapi_account_type(NULL), -1);

    char g[16], s[16];
    vapi_name_split("  John  van Doe ", g, sizeof g, s, sizeof s);
    assert_string_equal(g, "John");
    assert_string_equal(s, "van Doe");
    vapi_name_split("Cher", g, sizeof g, s, sizeof s);
    assert_string_equal(g, "Cher");
    assert_string_equal(s, "");
    vapi_name_split(NULL, g, sizeof g, s, sizeof s);
    assert_string_equal(g, "");
    /* cut on a character boundary: 7 x "é" does not fit 8 bytes */
    char small[8];
    vapi_name_split("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9 x", small, sizeof small, s, sizeof s);
    assert_string_equal(small, "\xc3\xa9\xc3\xa9\xc3\xa9");
}

static void test_digest_split(void **state)
{
    char pw[32];
    long long t = 0;
    const char *p1 = "p=secret&t=1460459327";
    assert_int_equal(vapi_digest_split(p1, strlen(p1), pw, sizeof pw, &t), 0);
    assert_string_equal(pw, "secret");
    assert_int_equal(t, 1460459327);
    /* the last "&t=" counts: the password may hold one */
    const char *p2 = "p=a&t=b&t=42";
    assert_int_equal(vapi_digest_split(p2, strlen(p2), pw, sizeof pw, &t), 0);
    assert_string_equal(pw, "a&t=b");
    assert_int_equal(t, 42);
    const char *p3 = "p=&t=1";
    assert_int_equal(vapi_digest_split(p3, strlen(p3), pw, sizeof pw, &t), 0);
    assert_string_equal(pw, "");
    const char *bad[] = {
        "secret&t=1", "p=secret", "p=x&t=", "p=x&t=12a", "q=x&t=1", "p=x&t=1234567890123456789"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(vapi_digest_split(bad[i], strlen(bad[i]), pw, sizeof pw, &t), -1);
    assert_int_equal(vapi_digest_split("p=x\0y&t=1", 9, pw, sizeof pw, &t), -1);
    char tiny[3];
    assert_int_equal(vapi_digest_split(p1, strlen(p1), tiny, sizeof tiny, &t), -1);

    char out[16];
    assert_int_equal(vapi_percent_decode("a%26b%3d", out, sizeof out), 1);
    assert_string_equal(out, "a&b=");
    assert_int_equal(vapi_percent_decode("plain", out, sizeof out), 0);
    assert_string_equal(out, "plain");
    assert_int_equal(vapi_percent_decode("bad%2", out, sizeof out), -1);
    assert_int_equal(vapi_percent_decode("bad%zz", out, sizeof out), -1);
    assert_int_equal(vapi_percent_decode("nul%00", out, sizeof out), -1);
    assert_int_equal(vapi_percent_decode("0123456789abcdefgh", out, sizeof out), -1);
}

/* ---- RSA ---- */

static void test_rsa(void **state)
{
    struct vapi_rsa *k = vapi_rsa_generate(VAPI_RSA_BITS);
    assert_non_null(k);
    char hex[VAPI_RSA_HEX_SIZE];
    assert_int_equal(vapi_rsa_modulus_hex(k, hex, sizeof hex), VAPI_RSA_HEX_LEN);
    assert_int_equal(strspn(hex, "0123456789abcdef"), VAPI_RSA_HEX_LEN);
    char tiny[16];
    assert_int_equal(vapi_rsa_modulus_hex(k, tiny, sizeof tiny), -1);

    /* PEM round trip gives the same key */
    char *pem = vapi_rsa_private_pem(k);
    assert_non_null(pem);
    assert_non_null(strstr(pem, "BEGIN PRIVATE KEY"));
    struct vapi_rsa *k2 = vapi_rsa_from_pem(pem);
    assert_non_null(k2);
    char hex2[VAPI_RSA_HEX_SIZE];
    vapi_rsa_modulus_hex(k2, hex2, sizeof hex2);
    assert_string_equal(hex, hex2);

    /* what a client does, and back */
    const char *plain = "p=s3cret&t=1700000000";
    char ct[1100];
    assert_int_equal(vapi_rsa_encrypt_hex(k, plain, strlen(plain), ct, sizeof ct), 0);
    assert_int_equal(strlen(ct), VAPI_RSA_HEX_LEN);
    char out[256];
    size_t len = 0;
    assert_int_equal(vapi_rsa_decrypt_hex(k2, ct, out, sizeof out, &len), 0);
    assert_string_equal(out, plain);
    assert_int_equal(len, strlen(plain));
    /* upper-case hex is fine */
    for (char *p = ct; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    assert_int_equal(vapi_rsa_decrypt_hex(k, ct, out, sizeof out, &len), 0);

    /* another key cannot decrypt it (or, with implicit rejection, gives other bytes) */
    struct vapi_rsa *other = vapi_rsa_generate(1024);
    assert_non_null(other);
    int rc = vapi_rsa_decrypt_hex(other, ct, out, sizeof out, &len);
    assert_true(rc == -1 || strcmp(out, plain) != 0);
    /* malformed ciphertexts */
    assert_int_equal(vapi_rsa_decrypt_hex(k, "abc", out, sizeof out, &len), -1);
    assert_int_equal(vapi_rsa_decrypt_hex(k, "zz", out, sizeof out, &len), -1);
    assert_int_equal(vapi_rsa_decrypt_hex(k, "", out, sizeof out, &len), -1);
    assert_int_equal(vapi_rsa_decrypt_hex(k, NULL, out, sizeof out, &len), -1);
    char toolong[VAPI_RSA_HEX_LEN + 3];
    memset(toolong, 'a', sizeof toolong - 1);
    toolong[sizeof toolong - 1] = '\0';
    assert_int_equal(vapi_rsa_decrypt_hex(k, toolong, out, sizeof out, &len), -1);
    /* an output buffer too small */
    assert_int_equal(vapi_rsa_decrypt_hex(k, ct, out, 5, &len), -1);
    /* not a key */
    assert_null(
        vapi_rsa_from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"));
    assert_null(vapi_rsa_from_pem(NULL));
    assert_null(vapi_rsa_generate(512));

    free(pem);
    vapi_rsa_free(&k);
    vapi_rsa_free(&k2);
    vapi_rsa_free(&other);
    assert_null(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_full_request),
        cmocka_unit_test(test_parse_minimal_and_lists),
        cmocka_unit_test(test_parse_envelope_errors),
        cmocka_unit_test(test_parse_refuses_dtd_and_entities),
        cmocka_unit_test(test_parse_limits),
        cmocka_unit_test(test_response_layout),
        cmocka_unit_test(test_response_escapes_bad_bytes),
        cmocka_unit_test(test_response_bound_and_errors),
        cmocka_unit_test(test_glob),
        cmocka_unit_test(test_small_values),
        cmocka_unit_test(test_digest_split),
        cmocka_unit_test(test_rsa),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
