/* Client auto-configuration documents: Microsoft Autodiscover POX (Outlook and Exchange ActiveSync
 * clients, [MS-OXDSCLI] and [MS-ASCMD] §2.2.1.1), Autodiscover v2 JSON and the Thunderbird
 * autoconfig "config-v1.1.xml" file. Pure code: request bodies in, response documents out, no I/O.
 * The HTTP routes (/autodiscover/autodiscover.xml, /autodiscover/autodiscover.json,
 * /mail/config-v1.1.xml, /.well-known/autoconfig/mail/config-v1.1.xml) call these.
 * docs/AUTODISCOVER.md describes what each client sends and receives. */
#ifndef FLOE_PROTO_AUTODISCOVER_AUTODISCOVER_H
#define FLOE_PROTO_AUTODISCOVER_AUTODISCOVER_H

#include <stddef.h>

#define AUTODISCOVER_MAX_REQUEST 16384 /* larger POX request bodies are rejected unparsed */
#define AUTODISCOVER_MAX_DEPTH 8       /* element nesting; a real request is 3 deep */
#define AUTODISCOVER_MAX_ELEMENTS 64   /* elements in one request; a real one has 4 */
#define AUTODISCOVER_EMAIL_MAX 254     /* RFC 5321 §4.5.3.1.3: a path holds at most 254 octets */
#define AUTODISCOVER_EMAIL_SIZE (AUTODISCOVER_EMAIL_MAX + 1) /* buffer for a parsed address */
#define AUTODISCOVER_MAX_OUTPUT 65536 /* a response that would be longer is refused (NULL) */

/* [MS-OXDSCLI] ErrorCode values the POX service answers with ([MS-ASCMD] §2.2.3.64) */
#define AUTODISCOVER_ERR_INVALID_REQUEST 600 /* the request body is not a valid request */
#define AUTODISCOVER_ERR_NO_SCHEMA 601       /* AcceptableResponseSchema is not served here */
#define AUTODISCOVER_ERR_INTERNAL 603        /* the server could not build an answer */

/* Per-domain settings, from the directory / configuration. Every string may be NULL: a NULL host
 * or URL leaves that service out of every document. Ports are 1..65535 when their host is set.
 * *_tls is "tls" (implicit TLS, e.g. 993/995/465), "starttls" (plain port upgraded with STARTTLS,
 * e.g. 143/110/587) or "none"; anything else makes the builders fail. */
struct autodiscover_settings {
    const char *display_name; /* the domain, e.g. "example.com" */
    const char *imap_host;
    int imap_port;
    const char *imap_tls;
    const char *pop3_host;
    int pop3_port;
    const char *pop3_tls;
    const char *smtp_host;
    int smtp_port;
    const char *smtp_tls;
    const char *activesync_url;   /* https://host/Microsoft-Server-ActiveSync */
    const char *autodiscover_url; /* https://host/autodiscover/autodiscover.xml, for v2 */
    const char *caldav_url, *carddav_url, *webmail_url;
    const char *freebusy_url; /* no document here carries it yet; see docs/AUTODISCOVER.md */
};

/* Which POX response a client asked for (AcceptableResponseSchema). */
enum autodiscover_schema {
    AUTODISCOVER_SCHEMA_OUTLOOK,    /* .../outlook/responseschema/2006a: IMAP, POP3, SMTP */
    AUTODISCOVER_SCHEMA_MOBILESYNC, /* .../mobilesync/responseschema/2006: the EAS URL */
};

/* Initialises libxml2. Call once at startup, before any thread may parse a request (libxml2's
 * own initialisation is not thread-safe). autodiscover_parse_request() calls it as well, which
 * is enough for single-threaded programs. */
void autodiscover_init(void);

/* Parses a POX request body[0..len) ([MS-OXDSCLI] Request, [MS-ASCMD] §6.3):
 *   <Autodiscover xmlns=".../{outlook|mobilesync}/requestschema/2006"><Request>
 *   <EMailAddress>..</EMailAddress><AcceptableResponseSchema>..</AcceptableResponseSchema>
 *   </Request></Autodiscover>
 * The XML is parsed with libxml2 with network access and entity expansion off; any DOCTYPE is
 * refused as soon as it is seen, so entity bombs and external entities never get parsed. The body
 * must be UTF-8 (an encoding declaration is ignored), at most AUTODISCOVER_MAX_REQUEST bytes,
 * at most AUTODISCOVER_MAX_DEPTH deep and AUTODISCOVER_MAX_ELEMENTS elements. Element text is
 * trimmed of surrounding white space; unknown elements inside <Request> are ignored.
 * On 0 the address is in email_r (NUL-terminated): 1..AUTODISCOVER_EMAIL_MAX bytes with an '@'
 * that has text on both sides and no control characters.
 * Returns 0 ok; -1 malformed request (the caller answers AUTODISCOVER_ERR_INVALID_REQUEST);
 * -2 well-formed but asking for a response schema not served here (AUTODISCOVER_ERR_NO_SCHEMA).
 * *schema_r is always written: the schema asked for on 0, otherwise the best guess from the
 * request namespace (OUTLOOK when unknown), to pick the shape of the error response.
 * email_r is written only on 0; email_len is its size (AUTODISCOVER_EMAIL_SIZE is enough). */
int autodiscover_parse_request(const char *body, size_t len, char *email_r, size_t email_len,
                               enum autodiscover_schema *schema_r);

/* Builds the POX settings response for schema, for the user email (display_name may be NULL).
 * OUTLOOK ([MS-OXDSCLI] Response): <User> then <Account> with AccountType "email", Action
 * "settings" and one <Protocol> each for IMAP, POP3, SMTP (those with a host): Server, Port,
 * DomainRequired off, LoginName = email, SPA off, SSL on|off, Encryption SSL|TLS|None,
 * AuthRequired on. At least one of them must be configured.
 * MOBILESYNC ([MS-ASCMD] §2.2.3.164): Culture, User (DisplayName, EMailAddress), Action/Settings/
 * Server with Type MobileSync and Url = Name = activesync_url, which must be set.
 * All text is XML-escaped. Returns a NUL-terminated document the caller frees, or NULL when a
 * required setting is missing or invalid, a string is not UTF-8 or holds characters XML 1.0
 * cannot carry (C0 controls, DEL, U+FFFE, U+FFFF), or memory runs out. */
char *autodiscover_response(enum autodiscover_schema schema, const char *email,
                            const char *display_name, const struct autodiscover_settings *s);

/* Builds the POX error response: <Response><Error><ErrorCode>code</ErrorCode><Message>message
 * </Message><DebugData /></Error></Response> ([MS-OXDSCLI] Error; for MOBILESYNC the Response
 * is in the mobilesync namespace as in the [MS-ASCMD] §4.2 error example). code is 100..999;
 * message NULL picks the standard text for 500, 501, 600, 601, 602 and 603. Returns a document
 * the caller frees, or NULL for a bad code, an unknown code without message, a message that is
 * not valid XML text, or out of memory. */
char *autodiscover_error(enum autodiscover_schema schema, int code, const char *message);

/* Autodiscover v2: the answer to GET /autodiscover/autodiscover.json?Email=..&Protocol=protocol.
 * protocol is compared case-insensitively: "ActiveSync" answers activesync_url, "AutodiscoverV1"
 * answers autodiscover_url, as {"Protocol":"ActiveSync","Url":"..."} with *status_r 200.
 * An unknown or NULL protocol answers {"ErrorCode":"InvalidProtocol",...} with 400; a known
 * protocol whose URL is not configured {"ErrorCode":"NotFound",...} with 404. The protocol
 * string is never echoed. Returns the JSON body the caller frees, or NULL (with *status_r 500)
 * when the URL is not valid UTF-8 or memory runs out. */
char *autodiscover_v2_json(const char *protocol, const struct autodiscover_settings *s,
                           int *status_r);

/* Thunderbird autoconfig config-v1.1.xml: one emailProvider (id and <domain> =
 * s->display_name, or when that is NULL the domain of email) with incomingServer imap / pop3
 * and outgoingServer smtp (socketType SSL | STARTTLS | plain, username "%EMAILADDRESS%",
 * authentication password-cleartext), then addressBook carddav, calendar caldav and webMail
 * loginPage for the URLs that are set. email may be NULL (the client need not send it).
 * Needs an incoming server (IMAP or POP3) and SMTP. Returns a document the caller frees, or NULL
 * for a missing or invalid setting, no domain, text XML cannot carry, or out of memory. */
char *autodiscover_thunderbird(const char *email, const struct autodiscover_settings *s);

#endif
