"""Client auto-configuration on the web service, as Outlook, iOS/Android and
Thunderbird fetch it, with curl and Python's requests."""
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
    r = requests.get(url(web, "/autodiscover/autodiscover.xml"), verify=False)
    assert r.status_code == 405


def test_v2_json_and_thunderbird(web):
    r = requests.get(url(web, "/autodiscover/autodiscover.json?Email=ann%40disco.test&Protocol=ActiveSync"),
                     verify=False)
    assert r.status_code == 200
    assert r.json() == {"Protocol": "ActiveSync", "Url": "https://mail.disco.test/Microsoft-Server-ActiveSync"}
    r = requests.get(url(web, "/autodiscover/autodiscover.json?Email=ann%40disco.test&Protocol=Gopher"),
                     verify=False)
    assert r.status_code in (400, 404)
    r = subprocess.run(["curl", "-sf", url(web, "/.well-known/autoconfig/mail/config-v1.1.xml"
                                                "?emailaddress=ann%40disco.test", tls=False)],
                       capture_output=True, text=True)
    assert r.returncode == 0
    assert '<incomingServer type="imap">' in r.stdout and "<hostname>mail.disco.test</hostname>" in r.stdout
    r = requests.get(url(web, "/mail/config-v1.1.xml"), verify=False)
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
