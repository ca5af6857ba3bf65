/* layer: node */
/* Unit tests for the auto-configuration settings (node/http/discover_settings.c):
 * configuration defaults, a domain's SmartDiscover fields over them, and the
 * SmartDiscover document — its shape (parsed back with libxml2), escaping, and
 * refusal of text XML cannot carry. */
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
#include <unistd.h>

#include "node/config.h"
#include "node/http/discover_settings.h"

static char path[] = "/tmp/floe-test-http-discover-XXXXXX";
static struct config *cfg;

static int setup(void **state)
{
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "[node]\nid = t\nhostname = node7.internal.test\n"
                       "[service web]\npublic_hostname = mail.example.test\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    char err[512];
    cfg = config_load(path, -1, err, sizeof(err));
    if (!cfg)
        fail_msg("%s", err);
    return 0;
}

static int teardown(void **state)
{
    config_free(&cfg);
    unlink(path);
    return 0;
}

static void test_defaults(void **state)
{
    static struct discover_settings d;
    discover_settings(cfg, "example.test", &d);
    /* the public name, never the node's own */
    assert_string_equal(d.host, "mail.example.test");
    assert_string_equal(d.s.imap_host, "mail.example.test");
    assert_int_equal(d.s.imap_port, 993);
    assert_string_equal(d.s.imap_tls, "tls");
    assert_int_equal(d.s.pop3_port, 995);
    assert_int_equal(d.s.smtp_port, 587);
    assert_string_equal(d.s.smtp_tls, "starttls");
    assert_string_equal(d.s.activesync_url,
                        "https://mail.example.test/Microsoft-Server-ActiveSync");
    assert_string_equal(d.s.autodiscover_url,
                        "https://mail.example.test/autodiscover/autodiscover.xml");
    assert_string_equal(d.s.display_name, "example.test");
    assert_null(d.s.caldav_url);
    assert_null(d.s.webmail_url);
    assert_false(d.svc[SD_SVC_XMPP].on);
    assert_false(d.svc[SD_SVC_SIP].on);
    discover_settings(cfg, NULL, &d);
    assert_null(d.s.display_name);
}

static void test_domain_fields_win(void **state)
{
    static struct smartdiscover sd;
    static struct discover_settings d;
    memset(&sd, 0, sizeof(sd));
    strcpy(sd.v[SD_PUBLIC_HOSTNAME], "mx.example.test");
    strcpy(sd.v[SD_IMAP_TLS], "starttls");
    strcpy(sd.v[SD_SMTP_TLS], "tls");
    strcpy(sd.v[SD_SMTP_PORT], "2465");
    strcpy(sd.v[SD_POP3_HOST], "pop.example.test");
    strcpy(sd.v[SD_SIP_HOST], "sip.example.test");
    strcpy(sd.v[SD_WEBCLIENT_URL], "https://web.example.test/mail/");
    strcpy(sd.v[SD_CALDAV_URL], "https://dav.example.test/cal/");
    discover_settings_domain(cfg, "example.test", &sd, &d);
    assert_string_equal(d.host, "mx.example.test");
    assert_string_equal(d.s.imap_host, "mx.example.test");
    assert_int_equal(d.s.imap_port, 143); /* the standard port of the mode */
    assert_string_equal(d.s.smtp_tls, "tls");
    assert_int_equal(d.s.smtp_port, 2465); /* an explicit port wins */
    assert_string_equal(d.s.pop3_host, "pop.example.test");
    assert_true(d.svc[SD_SVC_SIP].on);
    assert_int_equal(d.svc[SD_SVC_SIP].port, 5061);
    assert_false(d.svc[SD_SVC_XMPP].on);
    assert_string_equal(d.s.activesync_url, "https://mx.example.test/Microsoft-Server-ActiveSync");
    assert_string_equal(d.s.webmail_url, "https://web.example.test/mail/");
    assert_string_equal(d.s.caldav_url, "https://dav.example.test/cal/");
    assert_null(discover_url(&d, SD_SYNCML_URL));
    assert_null(discover_url(&d, SD_IMAP_HOST)); /* not a URL field */
}

/* The text of the Protocol element whose Type is type, child name; NULL when absent. */
static char *protocol_field(xmlDoc *doc, const char *type, const char *name)
{
    xmlNode *root = xmlDocGetRootElement(doc);
    for (xmlNode *resp = root->children; resp; resp = resp->next)
        for (xmlNode *acc = resp->children; acc; acc = acc->next) {
            if (acc->type != XML_ELEMENT_NODE || strcmp((const char *)acc->name, "Account"))
                continue;
            for (xmlNode *p = acc->children; p; p = p->next) {
                if (p->type != XML_ELEMENT_NODE)
                    continue;
                char *t = NULL, *v = NULL;
                for (xmlNode *f = p->children; f; f = f->next) {
                    if (f->type != XML_ELEMENT_NODE)
                        continue;
                    if (!strcmp((const char *)f->name, "Type"))
                        t = (char *)xmlNodeGetContent(f);
                    else if (!strcmp((const char *)f->name, name) && !v)
                        v = (char *)xmlNodeGetContent(f);
                }
                bool match = t && !strcmp(t, type);
                xmlFree(t);
                if (match)
                    return v;
                xmlFree(v);
            }
        }
    return NULL;
}

static void expect_field(xmlDoc *doc, const char *type, const char *name, const char *want)
{
    char *v = protocol_field(doc, type, name);
    if (!want) {
        if (v)
            fail_msg("%s/%s: '%s', want none", type, name, v);
        return;
    }
    if (!v || strcmp(v, want))
        fail_msg("%s/%s: '%s', want '%s'", type, name, v ? v : "(none)", want);
    xmlFree(v);
}

static void test_smartdiscover_document(void **state)
{
    static struct smartdiscover sd;
    static struct discover_settings d;
    memset(&sd, 0, sizeof(sd));
    strcpy(sd.v[SD_XMPP_HOST], "chat.example.test");
    strcpy(sd.v[SD_XMPP_TLS], "none");
    strcpy(sd.v[SD_SYNCML_URL], "https://mail.example.test/syncml/?a=1&b=2");
    discover_settings_domain(cfg, "example.test", &sd, &d);
    char *xml = discover_smartdiscover_xml(&d, "ann@example.test", "Ann <&> \"O'Brien\"");
    assert_non_null(xml);
    xmlDoc *doc = xmlReadMemory(xml, (int)strlen(xml), NULL, NULL, XML_PARSE_NONET);
    assert_non_null(doc);
    xmlNode *root = xmlDocGetRootElement(doc);
    assert_string_equal((const char *)root->name, "Autodiscover");
    assert_non_null(strstr(xml, "<Culture>en:en</Culture>"));
    assert_non_null(strstr(xml, "<DisplayName>Ann &lt;&amp;&gt; &quot;O&apos;Brien&quot;"
                                "</DisplayName>"));
    assert_non_null(strstr(xml, "<EMailAddress>ann@example.test</EMailAddress>"));
    expect_field(doc, "IMAP", "Server", "mail.example.test");
    expect_field(doc, "IMAP", "Port", "993");
    expect_field(doc, "IMAP", "SSL", "on");
    expect_field(doc, "IMAP", "Encryption", "SSL");
    expect_field(doc, "SMTP", "Encryption", "TLS");
    expect_field(doc, "POP3", "LoginName", "ann@example.test");
    expect_field(doc, "XMPP", "Server", "chat.example.test");
    expect_field(doc, "XMPP", "Port", "5222");
    expect_field(doc, "XMPP", "SSL", "off");
    expect_field(doc, "SIP", "Server", NULL);
    expect_field(doc, "MobileSync", "Server",
                 "https://mail.example.test/Microsoft-Server-ActiveSync");
    expect_field(doc, "MobileSync", "Name",
                 "https://mail.example.test/Microsoft-Server-ActiveSync");
    expect_field(doc, "SyncML", "Server", "https://mail.example.test/syncml/?a=1&b=2");
    expect_field(doc, "WebDAV", "Server", NULL);
    xmlFreeDoc(doc);
    free(xml);

    /* no display name: the address stands in */
    xml = discover_smartdiscover_xml(&d, "ann@example.test", NULL);
    assert_non_null(strstr(xml, "<DisplayName>ann@example.test</DisplayName>"));
    free(xml);
    /* text XML cannot carry is refused, not mangled */
    assert_null(discover_smartdiscover_xml(&d, "ann@example.test", "bad\x01name"));
    assert_null(discover_smartdiscover_xml(&d, "ann@example.test", "bad \xff utf-8"));
    assert_null(discover_smartdiscover_xml(&d, NULL, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_domain_fields_win),
        cmocka_unit_test(test_smartdiscover_document),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
