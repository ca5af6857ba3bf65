"""The vendor-compatible admin XML API (/icewarpapi, docs/VENDORAPI.md) end to end
against real floed nodes: the archiving product's likely sequence with Python
requests and with curl (regex-based, as the vendor's shell scripts read answers),
domain administrators' scope, the RSA challenge login (also across two nodes
sharing one database), session expiry, and bad input (malformed XML, wrong
namespace, missing and expired sids, huge and deeply nested documents, billion
laughs): the right error uid, HTTP 200, and no sanitizer report."""
import re
import socket
import ssl
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest
import requests
import urllib3
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from floe_harness import floectl, sql

urllib3.disable_warnings()

DOM, ALIAS, OTHER = "vapi-sync.test", "vapi-alias.test", "vapi-other.test"
ADMIN = (f"root@{DOM}", "root-secret-1")
DADMIN = (f"dadmin@{DOM}", "dadmin-secret-1")
ALICE = (f"alice@{DOM}", "alice-secret-1")
BOB = (f"bob@{DOM}", "bob-secret-1")
ZED = (f"zed@{OTHER}", "zed-secret-1")


def ctl(n, *args, password=None):
    r = floectl(n.config, *args, env={"FLOE_PASSWORD": password} if password else None)
    assert r.returncode == 0, (args, r.stderr)
    return r


def populate(n):
    for d in (DOM, OTHER):
        floectl(n.config, "domain", "delete", d, "--force")   # left over from an earlier run
    ctl(n, "domain", "add", DOM)
    ctl(n, "domain", "add", OTHER)
    ctl(n, "domain", "alias", "add", ALIAS, DOM)
    ctl(n, "account", "add", ADMIN[0], "--admin", "--name", "Root Admin", password=ADMIN[1])
    ctl(n, "account", "add", DADMIN[0], "--name", "Dom Admin", password=DADMIN[1])
    ctl(n, "account", "admin-of", DADMIN[0], DOM)
    ctl(n, "account", "add", ALICE[0], "--name", "Alice Archer", password=ALICE[1])
    ctl(n, "account", "add", BOB[0], "--name", "Bob", password=BOB[1])
    ctl(n, "account", "add", f"carol@{DOM}", "--name", "Carol Cole", password="carol-secret-1")
    ctl(n, "account", "disable", f"carol@{DOM}")
    ctl(n, "account", "add", ZED[0], "--name", "Zed Other", password=ZED[1])
    ctl(n, "alias", "add", f"ali@{DOM}", ALICE[0])
    ctl(n, "group", "add", f"staff@{DOM}", "--name", "Staff")
    ctl(n, "group", "member", "add", f"staff@{DOM}", ALICE[0])
    ctl(n, "group", "member", "add", f"staff@{DOM}", BOB[0])
    ctl(n, "group", "member", "add", f"staff@{DOM}", OTHER)
    ctl(n, "group", "add", f"all@{DOM}", "--name", "Everyone")
    ctl(n, "group", "member", "add", f"all@{DOM}", f"staff@{DOM}")
    ctl(n, "resource", "add", f"room@{DOM}", "--type", "room", "--name", "Big Room")


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    from conftest import Node
    n = Node(tmp_path_factory.mktemp("vapi"))
    n.start()
    populate(n)
    yield n
    n.stop()


def url(n, path="/icewarpapi/", tls=True):
    return (f"https://127.0.0.1:{n.web_tls_port}{path}" if tls
            else f"http://127.0.0.1:{n.web_port}{path}")


def iq(command, params="", sid=None, attrs=""):
    s = f' sid="{sid}"' if sid is not None else ""
    return (f'<iq{attrs}{s}><query xmlns="admin:iq:rpc"><commandname>{command}</commandname>'
            f"<commandparams>{params}</commandparams></query></iq>")


class Answer:
    def __init__(self, r):
        assert r.status_code == 200, (r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("application/xml")
        self.text = r.text
        self.root = ET.fromstring(r.text)
        assert self.root.tag == "iq"

    @property
    def type(self):
        return self.root.get("type")

    @property
    def sid(self):
        return self.root.get("sid")

    @property
    def error(self):
        e = self.root.find("{admin:iq:rpc}query/{admin:iq:rpc}error")
        return e.get("uid") if e is not None else None

    @property
    def result(self):
        return self.root.find("{admin:iq:rpc}query/{admin:iq:rpc}result")

    def items(self):
        return self.result.findall("{admin:iq:rpc}item")


def q(elem, path):
    """Text of a child path, namespaces added."""
    p = "/".join("{admin:iq:rpc}" + s for s in path.split("/"))
    e = elem.find(p)
    return None if e is None else (e.text or "")


def post(n, body, tls=True, path="/icewarpapi/", **kw):
    return Answer(requests.post(url(n, path, tls), data=body, verify=False, timeout=30, **kw))


def login(n, who, persistent=0, tls=True):
    a = post(n, iq("authenticate", f"<authtype>0</authtype><email>{who[0]}</email>"
                   f"<password>{who[1]}</password><persistentlogin>{persistent}</persistentlogin>"),
             tls=tls)
    assert a.type == "result" and q(a.root, "query/result") == "1", a.text
    assert re.fullmatch(r"[0-9a-f]{32}", a.sid)
    return a.sid


def props(n, sid, who, names, command="getaccountproperties"):
    items = "".join(f"<item><propname>{p}</propname></item>" for p in names)
    email = f"<accountemail>{who}</accountemail>" if who else ""
    a = post(n, iq(command, f"{email}<accountpropertylist>{items}</accountpropertylist>", sid))
    assert a.type == "result", a.text
    out = {}
    for it in a.items():
        name = q(it, "apiproperty/propname")
        val = it.find("{admin:iq:rpc}propertyval")
        cls = q(val, "classname")
        if cls == "TPropertyString":
            out[name] = (cls, q(val, "val"))
        elif cls == "TPropertyStringList":
            out[name] = (cls, [i.text or "" for i in val.findall("{admin:iq:rpc}val/{admin:iq:rpc}item")])
        elif cls == "TAccountName":
            out[name] = (cls, (q(val, "name"), q(val, "surname")))
        elif cls == "TAccountState":
            out[name] = (cls, q(val, "state"))
        elif cls == "TAccountQuota":
            out[name] = (cls, (q(val, "mailboxsize"), q(val, "mailboxquota")))
        else:
            out[name] = (cls, None)
        out[name] += (q(it, "propertyright"),)
    return out


def list_pages(n, sid, command, params, page):
    """Pages through a list as a sync client does, until offset >= overallcount."""
    offset, items, total = 0, [], None
    while True:
        a = post(n, iq(command, f"{params}<offset>{offset}</offset><count>{page}</count>", sid))
        assert a.type == "result", a.text
        got = a.items()
        total = int(q(a.root, "query/result/overallcount"))
        assert q(a.root, "query/result/offset") == str(offset)
        assert len(got) <= page
        items += got
        offset += page
        if offset >= total or not got:
            break
    assert len(items) == total
    return items


# ---- the archiving product's sequence ----

def test_archiver_sequence_requests(node):
    n = node
    sid = login(n, ADMIN)
    info = post(n, iq("getsessioninfo", "", sid))
    assert q(info.root, "query/result/email") == ADMIN[0]
    assert q(info.root, "query/result/admintype") == "2"
    assert q(info.root, "query/result/name/name") == "Root"
    assert info.sid == sid

    server = post(n, iq("GetServerProperties", "<serverpropertylist><item><propname>C_Version"
                        "</propname></item><item><propname>c_accounts_policies_login_loginsettings"
                        "</propname></item><item><propname>c_nothing</propname></item>"
                        "</serverpropertylist>", sid))
    vals = {q(i, "apiproperty/propname"): (q(i, "propertyval/classname"), q(i, "propertyval/val"))
            for i in server.items()}
    major, minor = map(int, vals["C_Version"][1].split(".")[:2])
    assert (major, minor) >= (10, 4)
    assert vals["c_accounts_policies_login_loginsettings"][1] in ("0", "1")
    assert vals["c_nothing"][0] == "TPropertyNoValue"

    doms = post(n, iq("getdomainsinfolist", "<filter><namemask>vapi-*</namemask></filter>", sid))
    got = {q(i, "name"): (q(i, "domaintype"), q(i, "accountcount")) for i in doms.items()}
    # the domain with its 8 accounts (root, dadmin, alice, bob, carol, 2 groups, a resource);
    # its alias as type 2
    assert got == {DOM: ("0", "8"), ALIAS: ("2", "8"), OTHER: ("0", "1")}, got
    assert q(doms.root, "query/result/overallcount") == "3"

    # users, page by page (typemask 0), then groups (typemask 7)
    users = list_pages(n, sid, "getaccountsinfolist",
                       f"<domainstr>{DOM}</domainstr><filter><namemask>*</namemask>"
                       "<typemask>0</typemask></filter>", 2)
    emails = [q(u, "email") for u in users]
    assert emails == [ALICE[0], BOB[0], f"carol@{DOM}", DADMIN[0], ADMIN[0]]
    byemail = {q(u, "email"): u for u in users}
    assert q(byemail[ALICE[0]], "name") == "Alice Archer"
    assert q(byemail[ALICE[0]], "accounttype") == "0"
    assert q(byemail[f"carol@{DOM}"], "accountstate/state") == "1"
    assert q(byemail[ALICE[0]], "accountstate/state") == "0"
    assert q(byemail[ADMIN[0]], "admintype") == "2"
    assert q(byemail[DADMIN[0]], "admintype") == "1"
    assert q(byemail[ALICE[0]], "admintype") == "0"
    assert q(byemail[ALICE[0]], "quota/classname") == "TAccountQuota"
    groups = list_pages(n, sid, "getaccountsinfolist",
                        f"<domainstr>{DOM}</domainstr><filter><typemask>7</typemask></filter>", 1)
    assert [q(g, "email") for g in groups] == [f"all@{DOM}", f"staff@{DOM}"]
    res = post(n, iq("getaccountsinfolist", f"<domainstr>{DOM}</domainstr><filter><typemask>8"
                     "</typemask></filter>", sid))
    assert [q(r, "accounttype") for r in res.items()] == ["8"]
    # name masks: login and display name, any case
    masked = post(n, iq("getaccountsinfolist", f"<domainstr>{DOM}</domainstr><filter><namemask>"
                        "*ARCH*</namemask></filter>", sid))
    assert [q(i, "email") for i in masked.items()] == [ALICE[0]]
    # a domain alias holds no accounts of its own
    alias = post(n, iq("getaccountsinfolist", f"<domainstr>{ALIAS}</domainstr>", sid))
    assert alias.items() == [] and q(alias.root, "query/result/overallcount") == "0"

    # properties of each user: names, addresses, groups
    p = props(n, sid, ALICE[0], ["u_name", "A_Name", "u_mailbox", "u_alias", "u_aliaslist",
                                 "a_aliaslist", "u_login", "u_type", "u_accountdisabled",
                                 "a_state", "u_groups", "a_quota", "x_unknown"])
    assert p["u_name"][:2] == ("TPropertyString", "Alice Archer")
    assert p["A_Name"][:2] == ("TAccountName", ("Alice", "Archer"))   # echoed as sent
    assert p["u_mailbox"][1] == "alice"
    assert p["u_alias"][1] == "alice;ali"
    assert p["a_aliaslist"][:2] == ("TPropertyStringList", ["alice", "ali"])
    assert p["u_aliaslist"][1].split(";") == [ALICE[0], f"alice@{ALIAS}", f"ali@{DOM}",
                                              f"ali@{ALIAS}"]
    assert p["u_login"][1] == ALICE[0]
    assert p["u_type"][1] == "0" and p["u_accountdisabled"][1] == "0"
    assert p["a_state"][:2] == ("TAccountState", "0")
    # directly and through nesting, with the vendor's trailing ';'
    assert p["u_groups"][1] == f"all@{DOM};staff@{DOM};"
    assert p["a_quota"][0] == "TAccountQuota"
    assert p["x_unknown"][0] == "TPropertyNoValue"
    assert p["u_name"][2] == "2" and p["u_aliaslist"][2] == "1"
    carol = props(n, sid, f"carol@{DOM}", ["u_accountdisabled", "a_state"])
    assert carol["u_accountdisabled"][1] == "1" and carol["a_state"][1] == "1"
    # a whole domain's membership counts for its users, and nesting on top of it
    assert props(n, sid, ZED[0], ["u_groups"])["u_groups"][1] == f"all@{DOM};staff@{DOM};"
    # an alias address and a domain-alias address find the same account
    assert props(n, sid, f"ali@{ALIAS}", ["u_mailbox"])["u_mailbox"][1] == "alice"

    # group properties and members, page by page
    g = props(n, sid, f"staff@{DOM}", ["g_name", "g_listfile_contents", "u_type", "m_listfile_contents"])
    assert g["g_name"][1] == "Staff" and g["u_type"][1] == "7"
    assert g["g_listfile_contents"][1] == f"{ALICE[0]}\r\n{BOB[0]}\r\n[{OTHER}]\r\n"
    assert g["m_listfile_contents"][0] == "TPropertyNoValue"
    members = list_pages(n, sid, "getaccountmemberinfolist", f"<who>staff@{DOM}</who>", 2)
    assert [q(m, "val") for m in members] == [ALICE[0], BOB[0], f"[{OTHER}]"]
    assert q(members[0], "recieve") == "0"
    nested = post(n, iq("getaccountmemberinfolist", f"<who>all@{DOM}</who><filter><namemask>"
                        "staff*</namemask></filter>", sid))
    assert [q(m, "val") for m in nested.items()] == [f"staff@{DOM}"]
    # the "info" property set
    info_set = post(n, iq("getaccountproperties", f"<accountemail>{ALICE[0]}</accountemail>"
                          "<accountpropertyset>1</accountpropertyset>", sid))
    assert [q(i, "apiproperty/propname") for i in info_set.items()] == \
        ["A_Name", "A_Quota", "A_Image", "A_AliasList", "A_State"]

    d = post(n, iq("getdomainproperties", f"<domainstr>{DOM}</domainstr><domainpropertylist>"
                   "<item><propname>d_aliases</propname></item><item><propname>d_description"
                   "</propname></item><item><propname>d_type</propname></item><item><propname>"
                   "d_adminemail</propname></item><item><propname>d_aliaslist</propname></item>"
                   "</domainpropertylist>", sid))
    dv = {q(i, "apiproperty/propname"): q(i, "propertyval/val") for i in d.items()}
    assert dv["d_aliases"] == ALIAS and dv["d_type"] == "0" and dv["d_adminemail"] == DADMIN[0]
    assert [x.text for x in d.items()[4].findall("{admin:iq:rpc}propertyval/{admin:iq:rpc}val/"
                                                 "{admin:iq:rpc}item")] == [ALIAS]

    # a write: known, not applied
    w = post(n, iq("setaccountproperties", f"<accountemail>{ALICE[0]}</accountemail>", sid))
    assert q(w.root, "query/result") == "0"

    out = post(n, iq("logout", "", sid))
    assert q(out.root, "query/result") == "1" and out.sid == sid
    assert post(n, iq("getsessioninfo", "", sid)).error == "session_invalid"

    # the archive's user logins: the user's own password, right and wrong
    usid = login(n, ALICE)
    mine = props(n, usid, None, ["u_name", "u_aliaslist"], command="getmyproperties")
    assert mine["u_name"][1] == "Alice Archer" and mine["u_name"][2] == "1"
    assert q(post(n, iq("logout", "", usid)).root, "query/result") == "1"
    wrong = post(n, iq("authenticate", f"<authtype>0</authtype><email>{ALICE[0]}</email>"
                       "<password>nope</password>"))
    assert wrong.type == "error" and wrong.error == "auth_login_invalid" and wrong.sid is None
    token = post(n, iq("getauthtoken", f"<email>{ALICE[0]}</email><password>{ALICE[1]}</password>"
                       "<authtype>0</authtype>"))
    assert q(token.root, "query/result/email") == ALICE[0]
    assert re.fullmatch(r"[0-9A-F]{32}", q(token.root, "query/result/authtoken"))
    assert q(token.root, "query/result/name/surname") == "Archer"
    bad = post(n, iq("getauthtoken", f"<email>{ALICE[0]}</email><password>x</password>"))
    assert bad.error == "auth_login_invalid"
    # unknown user and disabled account: the same answer as a wrong password
    for who, pw in ((f"nobody@{DOM}", "x"), (f"carol@{DOM}", "carol-secret-1")):
        a = post(n, iq("authenticate", f"<email>{who}</email><password>{pw}</password>"))
        assert a.error == "auth_login_invalid"
        assert a.text == wrong.text


def curl(n, body, tls=True):
    r = subprocess.run(["curl", "-sik", "--data-binary", body, url(n, tls=tls)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_archiver_sequence_curl_regex(node):
    """As the vendor's operations scripts do: curl -i, then egrep -o 'sid="(.*)"' and
    '<result>(.*)</result>' on the raw answer."""
    n = node
    out = curl(n, iq("authenticate", f"<email>{ADMIN[0]}</email><password>{ADMIN[1]}</password>"
                     "<digest></digest><authtype>0</authtype><persistentlogin>0</persistentlogin>",
                     attrs=' uid="1" format="text/xml"'))
    assert re.match(r"HTTP/[0-9.]+ 200", out), out[:200]   # curl may speak HTTP/2 here
    sid = re.findall(r'sid="(.*)"', out)
    assert len(sid) == 1 and re.fullmatch(r"[0-9a-f]{32}", sid[0]), out
    sid = sid[0]
    assert re.findall(r"<result>(.*)</result>", out) == ["1"]
    out = curl(n, iq("getdomainsinfolist", "<filter><namemask>vapi-s*</namemask></filter>", sid,
                     attrs=' format="text/xml" type="set"'))
    assert re.findall(r"<name>(.*)</name>", out) == [DOM]
    assert re.findall(r'sid="(.*)"', out) == [sid]
    out = curl(n, iq("getaccountsinfolist", f"<domainstr>{DOM}</domainstr><filter><namemask>bo*"
                     "</namemask></filter><offset>0</offset><count>250</count>", sid))
    assert re.findall(r"<email>(.*)</email>", out) == [BOB[0]]
    out = curl(n, iq("getaccountproperties", f"<accountemail>{BOB[0]}</accountemail>"
                     "<accountpropertylist><item><propname>u_name</propname></item>"
                     "</accountpropertylist>", sid))
    assert re.findall(r"<val>(.*)</val>", out) == ["Bob"]
    out = curl(n, iq("logout", "", sid))
    assert re.findall(r"<result>(.*)</result>", out) == ["1"]
    out = curl(n, iq("authenticate", f"<email>{BOB[0]}</email><password>{BOB[1]}</password>"))
    assert re.findall(r"<result>(.*)</result>", out) == ["1"]
    out = curl(n, iq("authenticate", f"<email>{BOB[0]}</email><password>wrong</password>"))
    assert '<error uid="auth_login_invalid"/>' in out and "<result>" not in out


# ---- who sees what ----

def test_domain_admin_and_user_scope(node):
    n = node
    sid = login(n, DADMIN)
    assert q(post(n, iq("getsessioninfo", "", sid)).root, "query/result/admintype") == "1"
    doms = post(n, iq("getdomainsinfolist", "", sid))
    assert sorted(q(i, "name") for i in doms.items()) == sorted([DOM, ALIAS])
    assert len(post(n, iq("getaccountsinfolist", f"<domainstr>{DOM}</domainstr>", sid)).items()) == 8
    for d in (OTHER, "nowhere.test"):
        assert post(n, iq("getaccountsinfolist", f"<domainstr>{d}</domainstr>", sid)).error == \
            "domain_invalid"
        assert post(n, iq("getdomainproperties", f"<domainstr>{d}</domainstr>", sid)).error == \
            "domain_invalid"
    for who in (ZED[0], f"nobody@{OTHER}"):
        assert post(n, iq("getaccountproperties", f"<accountemail>{who}</accountemail>", sid)).error \
            == "account_invalid"
    assert props(n, sid, ALICE[0], ["u_name"])["u_name"][1] == "Alice Archer"

    usid = login(n, BOB)
    assert q(post(n, iq("getsessioninfo", "", usid)).root, "query/result/admintype") == "0"
    none = post(n, iq("getdomainsinfolist", "", usid))
    assert none.items() == [] and q(none.root, "query/result/overallcount") == "0"
    assert post(n, iq("getaccountsinfolist", f"<domainstr>{DOM}</domainstr>", usid)).error == \
        "domain_invalid"
    assert post(n, iq("getaccountproperties", f"<accountemail>{ALICE[0]}</accountemail>", usid)) \
        .error == "account_invalid"
    assert post(n, iq("getaccountmemberinfolist", f"<who>staff@{DOM}</who>", usid)).error == \
        "account_invalid"
    assert props(n, usid, BOB[0], ["u_name"])["u_name"][1] == "Bob"   # itself
    # a right taken away counts at once, in the same session
    ctl(n, "account", "admin-of", DADMIN[0], DOM, "--remove")
    try:
        assert post(n, iq("getaccountsinfolist", f"<domainstr>{DOM}</domainstr>", sid)).error == \
            "domain_invalid"
    finally:
        ctl(n, "account", "admin-of", DADMIN[0], DOM)


def test_floectl_admin_of(node):
    n = node
    r = ctl(n, "account", "show", DADMIN[0])
    assert f"admin of: {DOM}" in r.stdout
    r = ctl(n, "--json", "account", "show", DADMIN[0])
    assert f'"{DOM}"' in r.stdout and "admin_of" in r.stdout
    r = floectl(n.config, "account", "admin-of", DADMIN[0], DOM)
    assert r.returncode == 1 and "already administers" in r.stderr
    r = floectl(n.config, "account", "admin-of", DADMIN[0], "nowhere.test")
    assert r.returncode == 1 and "unknown domain" in r.stderr
    r = floectl(n.config, "account", "admin-of", f"staff@{DOM}", DOM)
    assert r.returncode == 1
    assert floectl(n.config, "account", "admin-of", DADMIN[0]).returncode == 2
    ctl(n, "account", "admin-of", DADMIN[0], OTHER)
    assert f"admin of: {OTHER} {DOM}" in ctl(n, "account", "show", DADMIN[0]).stdout
    ctl(n, "account", "admin-of", DADMIN[0], OTHER, "--remove")
    r = floectl(n.config, "account", "admin-of", DADMIN[0], OTHER, "--remove")
    assert r.returncode == 1 and "does not administer" in r.stderr
    assert "admin of: -" in ctl(n, "account", "show", ALICE[0]).stdout


# ---- the RSA challenge, and sessions across nodes ----

def digest_for(hashid, password, timestamp):
    key = rsa.RSAPublicNumbers(65537, int(hashid, 16)).public_key()
    return key.encrypt(f"p={password}&t={timestamp}".encode(), padding.PKCS1v15()).hex()


def challenge(n, tls=False):
    a = post(n, iq("getauthchallenge", "<authtype>1</authtype>"), tls=tls)
    assert q(a.root, "query/result/classname") == "tauthchallenge"
    hashid, ts = q(a.root, "query/result/hashid"), int(q(a.root, "query/result/timestamp"))
    assert re.fullmatch(r"[0-9a-f]{511,512}", hashid)
    assert abs(ts - time.time()) < 30
    return hashid, ts


def rsa_login(n, who, password, hashid, ts, tls=False):
    return post(n, iq("authenticate", f"<authtype>1</authtype><email>{who}</email>"
                      f"<digest>{digest_for(hashid, password, ts)}</digest>"), tls=tls)


def test_rsa_challenge_login(node):
    n = node
    hashid, ts = challenge(n)
    # over plain HTTP: the digest works, a clear-text password does not
    a = rsa_login(n, ALICE[0], ALICE[1], hashid, ts)
    assert q(a.root, "query/result") == "1" and re.fullmatch(r"[0-9a-f]{32}", a.sid)
    plain = post(n, iq("authenticate", f"<authtype>0</authtype><email>{ALICE[0]}</email>"
                       f"<password>{ALICE[1]}</password>"), tls=False)
    assert plain.error == "auth_login_invalid"
    # the same key for the next challenge on this node; "rsa" as authtype
    assert challenge(n)[0] == hashid
    a = post(n, iq("getauthtoken", f"<authtype>rsa</authtype><email>{ALICE[0]}</email>"
                   f"<digest>{digest_for(hashid, ALICE[1], ts)}</digest>"), tls=False)
    assert q(a.root, "query/result/email") == ALICE[0]
    # wrong password, stale timestamp, garbage digest, a password with '&t=' in it
    assert rsa_login(n, ALICE[0], "wrong", hashid, ts).error == "auth_login_invalid"
    assert rsa_login(n, ALICE[0], ALICE[1], hashid, ts - 3600).error == "auth_login_invalid"
    assert post(n, iq("authenticate", f"<authtype>1</authtype><email>{ALICE[0]}</email>"
                      "<digest>00ff</digest>")).error == "auth_login_invalid"
    assert post(n, iq("authenticate", f"<authtype>1</authtype><email>{ALICE[0]}</email>"
                      "<digest>not hex</digest>")).error == "auth_login_invalid"
    assert post(n, iq("authenticate", f"<authtype>7</authtype><email>{ALICE[0]}</email>"
                      f"<password>{ALICE[1]}</password>")).error == "auth_login_invalid"
    ctl(n, "account", "passwd", BOB[0], password="b&t=1&x%41")
    try:
        a = rsa_login(n, BOB[0], "b&t=1&x%41", hashid, ts)
        assert q(a.root, "query/result") == "1"
        # a client that percent-encodes the password inside the digest works too
        a = rsa_login(n, BOB[0], "b%26t%3D1%26x%2541", hashid, ts)
        assert q(a.root, "query/result") == "1"
    finally:
        ctl(n, "account", "passwd", BOB[0], password=BOB[1])


def test_two_nodes_share_sessions_and_keys(node, node_factory):
    """Behind a load balancer the challenge, the login and the next command may each
    reach another node."""
    a = node
    b = node_factory(node_id="it2")
    hashid, ts = challenge(a)
    hashid_b, _ = challenge(b)
    assert hashid_b != hashid   # each node has its own key
    # a digest made with node A's key, sent to node B
    r = rsa_login(b, ADMIN[0], ADMIN[1], hashid, ts)
    assert q(r.root, "query/result") == "1", r.text
    sid = r.sid
    # the session works on both nodes, and a logout on one ends it on the other
    assert q(post(a, iq("getsessioninfo", "", sid)).root, "query/result/email") == ADMIN[0]
    assert q(post(b, iq("getsessioninfo", "", sid)).root, "query/result/email") == ADMIN[0]
    assert q(post(a, iq("logout", "", sid)).root, "query/result") == "1"
    assert post(b, iq("getsessioninfo", "", sid)).error == "session_invalid"
    # the keys are in the database, the session ids are not
    nodes = {row[0] for row in sql(a, "SELECT node FROM vendorapi_keys")}
    assert {"it1", "it2"} <= nodes
    assert sql(a, "SELECT count(*) FROM vendorapi_sessions WHERE id_hash = :'p1'", sid) == [["0"]]


# ---- sessions and bad input ----

def test_sessions_expire(node):
    n = node
    sid = login(n, ADMIN)
    sid2 = login(n, ADMIN, persistent=1)
    rows = dict(sql(n, "SELECT idle_seconds, count(*) FROM vendorapi_sessions s JOIN accounts a"
                       " ON a.id = s.account_id WHERE a.local_part = 'root' GROUP BY 1"))
    assert {"86400", "2073600"} <= set(rows)
    # idle for more than a day
    sql(n, "UPDATE vendorapi_sessions SET last_used_at = now() - interval '25 hours'"
           " WHERE idle_seconds = 86400")
    assert post(n, iq("getsessioninfo", "", sid)).error == "session_invalid"
    assert q(post(n, iq("getsessioninfo", "", sid2)).root, "query/result/email") == ADMIN[0]
    # past its absolute end
    sql(n, "UPDATE vendorapi_sessions SET expires_at = now() - interval '1 second'")
    assert post(n, iq("getsessioninfo", "", sid2)).error == "session_invalid"
    # a disabled account's sessions end with it
    sid3 = login(n, BOB)
    ctl(n, "account", "disable", BOB[0])
    try:
        assert post(n, iq("getmyproperties", "", sid3)).error == "session_invalid"
    finally:
        ctl(n, "account", "enable", BOB[0])


def big_request_status(n, length):
    """Announces a body of length bytes and reads the answer to the headers alone."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", n.web_tls_port), timeout=10) as raw:
        with ctx.wrap_socket(raw) as s:
            s.sendall(f"POST /icewarpapi/ HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
                      "Content-Type: text/xml\r\n\r\n".encode())
            reply = s.recv(4096).decode(errors="replace")
    return int(reply.split()[1])


def test_bad_input(node):
    n = node
    sid = login(n, ADMIN)
    cases = [
        ("not xml at all", "iq_root_tag_invalid"),
        ("<iq><query xmlns='admin:iq:rpc'><commandname>logout", "iq_root_tag_invalid"),
        ("<request><query xmlns='admin:iq:rpc'><commandname>logout</commandname></query>"
         "</request>", "iq_root_tag_invalid"),
        ("<iq><query xmlns='admin:iq:other'><commandname>logout</commandname></query></iq>",
         "iq_query_xmlns_invalid"),
        ("<iq><query><commandname>logout</commandname></query></iq>", "iq_query_xmlns_invalid"),
        (iq("nosuchcommand"), "invoker_commandname_invalid"),
        ("<iq><query xmlns='admin:iq:rpc'><commandparams/></query></iq>",
         "invoker_commandname_invalid"),
        (iq("getdomainsinfolist"), "session_invalid"),                     # no sid
        (iq("getdomainsinfolist", sid=""), "session_invalid"),
        (iq("getdomainsinfolist", sid="0" * 32), "session_invalid"),
        (iq("getdomainsinfolist", sid='x" y'.replace('"', "&quot;")), "session_invalid"),
        (iq("getaccountsinfolist", "", sid), "domain_parameter_empty"),
        (iq("getaccountsinfolist", "<domainstr> </domainstr>", sid), "domain_parameter_empty"),
        (iq("getaccountsinfolist", f"<domainstr>{'a' * 300}.test</domainstr>", sid),
         "domain_invalid"),
        (iq("getaccountproperties", "", sid), "account_email_parameter_missing"),
        (iq("getaccountproperties", f"<accountemail>nobody@{DOM}</accountemail>", sid),
         "account_invalid"),
        (iq("getaccountmemberinfolist", "<who>nobody@nowhere.test</who>", sid), "account_invalid"),
        (iq("getdomainproperties", "<domainstr>nowhere.test</domainstr>", sid), "domain_invalid"),
    ]
    for body, uid in cases:
        a = post(n, body)
        assert a.type == "error" and a.error == uid, (body, a.text)
    # the sid of the request is echoed on errors
    a = post(n, iq("getaccountsinfolist", "", sid))
    assert a.sid == sid
    # billion laughs: the DOCTYPE stops the parse before any entity exists
    laughs = ('<?xml version="1.0"?><!DOCTYPE iq [<!ENTITY a "aaaaaaaaaa">'
              + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">'
                        for i in range(8))
              + f"]><iq sid=\"{sid}\"><query xmlns=\"admin:iq:rpc\"><commandname>getaccountsinfolist"
              "</commandname><commandparams><domainstr>&i;</domainstr></commandparams></query></iq>")
    assert post(n, laughs).error == "iq_root_tag_invalid"
    xxe = ('<?xml version="1.0"?><!DOCTYPE iq [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           + iq("getaccountsinfolist", "<domainstr>&x;</domainstr>", sid))
    a = post(n, xxe)
    assert a.error == "iq_root_tag_invalid" and "root:" not in a.text
    # deep nesting
    deep = iq("getaccountsinfolist", "<a>" * 5000 + "</a>" * 5000, sid)
    assert post(n, deep).error == "iq_root_tag_invalid"
    # a huge document under the HTTP limit: refused unparsed; over it: 413
    huge = iq("getaccountsinfolist", f"<domainstr>{DOM}</domainstr><pad>{'x' * 400000}</pad>", sid)
    assert post(n, huge).error == "iq_root_tag_invalid"
    assert big_request_status(n, 2 * 1024 * 1024) == 413
    # methods, paths and content types
    assert requests.get(url(n), verify=False, timeout=10).status_code == 405
    for path in ("/icewarpapi", "/icewarpapi/", "/icewarpapi/GetDomainsInfoList"):
        a = post(n, iq("getsessioninfo", "", sid), path=path,
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert q(a.root, "query/result/email") == ADMIN[0]
    a = Answer(requests.put(url(n), data=iq("getsessioninfo", "", sid), verify=False, timeout=10))
    assert q(a.root, "query/result/email") == ADMIN[0]
    # the node is still fine
    assert q(post(n, iq("logout", "", sid)).root, "query/result") == "1"
