"""Client auto-configuration on the web service, as Outlook, iOS/Android,
Thunderbird and SmartDiscover clients fetch it, with curl and Python's requests,
and the per-domain SmartDiscover settings set with floectl."""
import time
import subprocess

import pytest
import requests
import urllib3

from floe_harness import floectl

urllib3.disable_warnings()

OUTLOOK = """<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>{email}</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>"""

MOBILE = """<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/mobilesync/requestschema/2006">
  <Request>
    <EMailAddress>{email}</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006</AcceptableResponseSchema>
  </Request>
</Autodiscover>"""


@pytest.fixture(scope="module")
def web(tmp_path_factory, request):
    from conftest import Node
    n = Node(tmp_path_factory.mktemp("web"), {"service web": {"public_hostname": "mail.disco.test"}})
    n.start()
    floectl(n.config, "domain", "add", "disco.test")
    floectl(n.config, "domain", "add", "smart.test")
    r = floectl(n.config, "account", "add", "bob@smart.test", "--name", "Bob <&> Smart",
                env={"FLOE_PASSWORD": "bobs-secret"})
    assert r.returncode == 0 or "exists" in r.stderr, r.stderr
    # per-domain settings before any client asks (answers are cached for a few seconds)
    r = floectl(n.config, "autodiscover", "set", "smart.test", "public_hostname", "mx.smart.test",
                "imap_tls", "starttls", "smtp_host", "out.smart.test", "smtp_tls", "ssl",
                "xmpp_host", "chat.smart.test", "webclient_url", "https://mx.smart.test/webmail/",
                "caldav_url", "https://mx.smart.test/dav/cal/")
    assert r.returncode == 0, r.stderr
    r = floectl(n.config, "account", "add", "ann@disco.test", "--name", "Ann Example",
                env={"FLOE_PASSWORD": "correct-horse"})
    assert r.returncode == 0 or "exists" in r.stderr, r.stderr
    yield n
    n.stop()


def url(n, path, tls=True):
    return f"https://127.0.0.1:{n.web_tls_port}{path}" if tls else f"http://127.0.0.1:{n.web_port}{path}"


def test_outlook_pox_needs_credentials(web):
    body = OUTLOOK.format(email="ann@disco.test")
    r = requests.post(url(web, "/autodiscover/autodiscover.xml"), data=body, verify=False)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    wrong = requests.post(url(web, "/autodiscover/autodiscover.xml"), data=body, verify=False,
                          auth=("ann@disco.test", "wrong"))
    unknown = requests.post(url(web, "/autodiscover/autodiscover.xml"), data=body, verify=False,
                            auth=("nobody@disco.test", "wrong"))
    # no account enumeration: the same answer either way
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.text == unknown.text
    # Basic credentials in clear text are refused outright
    plain = requests.post(url(web, "/autodiscover/autodiscover.xml", tls=False), data=body,
                          auth=("ann@disco.test", "correct-horse"))
    assert plain.status_code == 401


def test_outlook_pox_settings(web):
    r = subprocess.run(["curl", "-sk", "-u", "ann@disco.test:correct-horse", "-H",
                        "Content-Type: text/xml", "--data-binary",
                        OUTLOOK.format(email="ann@disco.test"),
                        url(web, "/Autodiscover/Autodiscover.xml")], capture_output=True, text=True)
    xml = r.stdout
    assert "<Type>IMAP</Type>" in xml and "<Server>mail.disco.test</Server>" in xml, xml
    assert "<Port>993</Port>" in xml and "<Port>587</Port>" in xml
    assert "<LoginName>ann@disco.test</LoginName>" in xml


def test_mobilesync_pox(web):
    r = requests.post(url(web, "/autodiscover/autodiscover.xml"),
                      data=MOBILE.format(email="ann@disco.test"), verify=False,
                      auth=("ann@disco.test", "correct-horse"))
    assert r.status_code == 200
    assert "<Url>https://mail.disco.test/Microsoft-Server-ActiveSync</Url>" in r.text
    assert "<Type>MobileSync</Type>" in r.text


def test_bad_requests(web):
    r = requests.post(url(web, "/autodiscover/autodiscover.xml"), data="<not xml", verify=False)
    assert r.status_code == 200 and "<ErrorCode>600</ErrorCode>" in r.text
    laughs = ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
              '<Autodiscover><Request><EMailAddress>&b;</EMailAddress></Request></Autodiscover>')
    r = requests.post(url(web, "/autodiscover/autodiscover.xml"), data=laughs, verify=False)
    assert "<ErrorCode>600</ErrorCode>" in r.text
    r = requests.put(url(web, "/autodiscover/autodiscover.xml"), verify=False)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, POST"


def test_v2_json_and_thunderbird(web):
    r = requests.get(url(web, "/autodiscover/autodiscover.json?Email=ann%40disco.test&Protocol=ActiveSync"),
                     verify=False)
    assert r.status_code == 200
    assert r.json() == {"Protocol": "ActiveSync", "Url": "https://mail.disco.test/Microsoft-Server-ActiveSync"}
    r = requests.get(url(web, "/Autodiscover/Autodiscover.json/v1.0/x@smart.test?Protocol=ActiveSync"),
                     verify=False)
    assert r.json()["Url"] == "https://mx.smart.test/Microsoft-Server-ActiveSync"
    r = requests.get(url(web, "/autodiscover/autodiscover.json?Email=ann%40disco.test&Protocol=Gopher"),
                     verify=False)
    assert r.status_code in (400, 404)
    r = subprocess.run(["curl", "-sf", url(web, "/.well-known/autoconfig/mail/config-v1.1.xml"
                                                "?emailaddress=ann%40disco.test", tls=False)],
                       capture_output=True, text=True)
    assert r.returncode == 0
    assert '<incomingServer type="imap">' in r.stdout and "<hostname>mail.disco.test</hostname>" in r.stdout
    # /mail/config-v1.1.xml is served on autoconfig.<domain>, where the host names
    # the domain when the client sends no address
    r = requests.get(url(web, "/mail/config-v1.1.xml", tls=False),
                     headers={"Host": "autoconfig.disco.test"})
    assert r.status_code == 200 and "<domain>disco.test</domain>" in r.text
    r = requests.get(url(web, "/mail/config-v1.1.xml", tls=False))
    assert r.status_code == 404
    r = requests.get(url(web, "/.well-known/autoconfig/mail/config-v1.1.xml", tls=False))
    assert r.status_code == 400


def test_floectl_dns_records(web):
    r = floectl(web.config, "dns", "records", "disco.test")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "disco.test. 3600 IN MX 10 mail.disco.test." in lines
    assert "_imaps._tcp.disco.test. 3600 IN SRV 0 1 993 mail.disco.test." in lines
    assert "autodiscover.disco.test. 3600 IN CNAME mail.disco.test." in lines
    r = floectl(web.config, "--json", "dns", "records", "disco.test", "--host", "mx.example.net",
                "--ttl", "300")
    assert r.returncode == 0 and "disco.test. 300 IN MX 10 mx.example.net." in r.stdout
    assert floectl(web.config, "dns", "records", "unknown.test").returncode == 1
    assert floectl(web.config, "dns", "records", "disco.test", "--host", "bad_host").returncode == 1


def test_floectl_autodiscover_show(web):
    r = floectl(web.config, "autodiscover", "show", "disco.test")
    assert r.returncode == 0, r.stderr
    assert "== outlook (for user@disco.test)" in r.stdout
    assert "<Server>mail.disco.test</Server>" in r.stdout
    assert "https://mail.disco.test/Microsoft-Server-ActiveSync" in r.stdout
    assert '<incomingServer type="imap">' in r.stdout
    r = floectl(web.config, "--json", "autodiscover", "show", "disco.test")
    assert r.returncode == 0 and '"thunderbird"' in r.stdout
    assert floectl(web.config, "autodiscover", "show", "nowhere.test").returncode == 1


def test_smartdiscover_get(web):
    """Seed 002 "SmartDiscover": a plain GET with HTTP authentication answers every
    protocol and URL of the user's domain."""
    r = requests.get(url(web, "/autodiscover/autodiscover.xml"), verify=False)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    r = requests.get(url(web, "/autodiscover/autodiscover.xml", tls=False),
                     auth=("bob@smart.test", "bobs-secret"))
    assert r.status_code == 401  # never in clear text
    r = requests.get(url(web, "/Autodiscover/Autodiscover.xml"), verify=False,
                     auth=("bob@smart.test", "bobs-secret"))
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/xml")
    doc = r.text
    assert "<Culture>en:en</Culture>" in doc
    assert "<DisplayName>Bob &lt;&amp;&gt; Smart</DisplayName>" in doc
    assert "<EMailAddress>bob@smart.test</EMailAddress>" in doc
    assert ("<Type>IMAP</Type>\n        <Server>mx.smart.test</Server>\n        <Port>143</Port>"
            in doc), doc
    assert ("<Type>SMTP</Type>\n        <Server>out.smart.test</Server>\n        <Port>465</Port>"
            in doc)
    assert "<Type>XMPP</Type>\n        <Server>chat.smart.test</Server>" in doc
    assert "<Type>SIP</Type>" not in doc
    assert "<Server>https://mx.smart.test/Microsoft-Server-ActiveSync</Server>" in doc
    assert "<Name>https://mx.smart.test/webmail/</Name>" in doc
    assert doc.count("<LoginName>bob@smart.test</LoginName>") == 7
    r = requests.get(url(web, "/autodiscover/autodiscover.xml"), verify=False,
                     auth=("bob@smart.test", "wrong"))
    assert r.status_code == 401


def test_domain_settings_reach_every_document(web):
    r = requests.post(url(web, "/autodiscover/autodiscover.xml"),
                      data=OUTLOOK.format(email="bob@smart.test"), verify=False,
                      auth=("bob@smart.test", "bobs-secret"))
    assert "<Server>mx.smart.test</Server>" in r.text and "<Server>out.smart.test</Server>" in r.text
    assert "<Encryption>TLS</Encryption>" in r.text  # IMAP with STARTTLS
    r = requests.get(url(web, "/autodiscover/autodiscover.json?Email=bob%40smart.test&Protocol=AutodiscoverV1"),
                     verify=False)
    assert r.json() == {"Protocol": "AutodiscoverV1",
                        "Url": "https://mx.smart.test/autodiscover/autodiscover.xml"}
    r = requests.get(url(web, "/mail/config-v1.1.xml", tls=False),
                     headers={"Host": "autoconfig.smart.test"})
    assert "<hostname>mx.smart.test</hostname>" in r.text and "<socketType>STARTTLS</socketType>" in r.text
    assert "https://mx.smart.test/dav/cal/" in r.text
    # another domain keeps the configuration's names
    r = requests.get(url(web, "/autodiscover/autodiscover.json?Email=x%40disco.test&Protocol=ActiveSync"),
                     verify=False)
    assert r.json()["Url"] == "https://mail.disco.test/Microsoft-Server-ActiveSync"


def test_floectl_smartdiscover_settings(web):
    r = floectl(web.config, "autodiscover", "settings", "smart.test")
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines()[1:]}
    assert rows["imap_tls"] == ["starttls", "starttls"]
    assert rows["imap_port"] == ["-", "143"]
    assert rows["smtp_tls"] == ["tls", "tls"]  # "ssl" stored as tls
    assert rows["sip_host"] == ["-", "-"]
    r = floectl(web.config, "--json", "autodiscover", "settings", "smart.test")
    import json
    j = json.loads(r.stdout)
    assert j["public_hostname"] == {"stored": "mx.smart.test", "effective": "mx.smart.test"}
    assert j["mobilesync_url"]["effective"] == "https://mx.smart.test/Microsoft-Server-ActiveSync"
    r = floectl(web.config, "autodiscover", "show", "smart.test")
    assert r.returncode == 0 and "== smartdiscover (for user@smart.test)" in r.stdout
    assert "<Server>chat.smart.test</Server>" in r.stdout
    # bad values are refused and change nothing
    for args in (("imap_port", "70000"), ("imap_tls", "sometimes"), ("webdav_url", "ftp://x/"),
                 ("smtp_host", "bad host"), ("nosuchfield", "x")):
        r = floectl(web.config, "autodiscover", "set", "smart.test", *args)
        assert r.returncode == 1 and args[0] in r.stderr, r.stderr
    assert floectl(web.config, "autodiscover", "set", "nowhere.test", "imap_port", "1").returncode == 1
    assert floectl(web.config, "autodiscover", "set", "smart.test", "imap_port").returncode == 2
    # unset one field, then all of them (a separate domain: answers are cached briefly)
    floectl(web.config, "domain", "add", "unset.test")
    assert floectl(web.config, "autodiscover", "set", "unset.test", "imap_host", "i.unset.test",
                   "pop3_host", "p.unset.test").returncode == 0
    assert floectl(web.config, "autodiscover", "unset", "unset.test", "imap_host").returncode == 0
    r = floectl(web.config, "--json", "autodiscover", "settings", "unset.test")
    j = json.loads(r.stdout)
    assert j["imap_host"]["stored"] == "" and j["imap_host"]["effective"] == "mail.disco.test"
    assert j["pop3_host"]["stored"] == "p.unset.test"
    assert floectl(web.config, "autodiscover", "unset", "unset.test", "--all").returncode == 0
    r = floectl(web.config, "--json", "autodiscover", "settings", "unset.test")
    assert json.loads(r.stdout)["pop3_host"]["stored"] == ""
    # the web service sees a change within its cache time
    deadline = time.time() + 15
    while time.time() < deadline:
        r = requests.get(url(web, "/mail/config-v1.1.xml?emailaddress=a%40unset.test", tls=False),
                         headers={"Host": "autoconfig.unset.test"})
        if "<hostname>mail.disco.test</hostname>" in r.text and "p.unset.test" not in r.text:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(r.text)
    # the DNS records name the domain's public host name
    r = floectl(web.config, "dns", "records", "smart.test")
    assert "smart.test. 3600 IN MX 10 mx.smart.test." in r.stdout.splitlines()


def test_well_known_dav_redirects(web):
    r = requests.get(url(web, "/.well-known/caldav", tls=False), allow_redirects=False)
    assert r.status_code == 301 and r.headers["Location"] == "/dav/"
    r = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                        url(web, "/.well-known/carddav")], capture_output=True, text=True)
    assert r.stdout.startswith("301 ") and r.stdout.endswith("/dav/")
