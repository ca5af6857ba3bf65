"""The admin JSON API's objects around accounts and domains, end to end with Python
requests: aliases, domain aliases and catch-all, forwarding, auto-responders, groups and
members, quotas, policies, the login policy, the outbound queue and domain administrators.

Every endpoint is exercised as a server administrator (happy path, validation errors, 404),
as the domain administrator of the domain, as the domain administrator of another domain and
as an ordinary user (authorisation), and where an object is replaced with If-Match (412 when
another administrator changed it first). Reads are compared with `floectl --json`, which
shares their implementation."""
import json

import pytest
import requests
import urllib3

from floe_harness import Node, floectl, fresh_database, sql, sql_scalar

urllib3.disable_warnings()

ADMIN = ("root@obj.test", "root-secret-1")        # server administrator
BOSS = ("boss@obj.test", "boss-secret-1")         # domain administrator of obj.test
FARBOSS = ("farboss@far.test", "far-secret-12")  # domain administrator of far.test
USER = ("user@obj.test", "user-secret-1")         # no administrator at all
CHIEF = ("chief@obj.test", "chief-secret-1")      # a server administrator inside obj.test
NOT_BOSSES = (FARBOSS, USER)


class World:
    def __init__(self, node, base):
        self.n, self.base = node, base

    def call(self, method, path, auth=ADMIN, **kw):
        return requests.request(method, self.base + path, auth=auth, verify=False, timeout=15,
                                **kw)

    def ok(self, method, path, status=200, auth=ADMIN, **kw):
        r = self.call(method, path, auth=auth, **kw)
        assert r.status_code == status, (method, path, r.status_code, r.text)
        return r

    def status(self, method, path, auth=ADMIN, **kw):
        return self.call(method, path, auth=auth, **kw).status_code

    def denied(self, method, path, *who, **kw):
        """403 for each of who, with the same error whether or not the object exists."""
        for auth in who:
            r = self.call(method, path, auth=auth, **kw)
            assert r.status_code == 403, (auth[0], method, path, r.status_code, r.text)
            assert "error" in r.json()

    def ctl_json(self, *args):
        r = floectl(self.n.config, "--json", *args)
        assert r.returncode == 0, r.stderr + r.stdout
        return json.loads(r.stdout)


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    # enough workers for concurrent requests to really run at the same time
    n = Node(tmp_path_factory.mktemp("apiobj"), {"node": {"workers": 8},
                                                 "smtp": {"retry_min": "3600",
                                                          "dns_servers": "127.0.0.1:9"}},
             database=fresh_database("floe_api_objects"))
    n.start()

    def ctl(*args, pw=None):
        r = floectl(n.config, *args, env={"FLOE_PASSWORD": pw} if pw else None)
        assert r.returncode == 0, r.stderr
    ctl("domain", "add", "obj.test")
    ctl("domain", "add", "far.test")
    ctl("account", "add", ADMIN[0], "--admin", pw=ADMIN[1])
    ctl("account", "add", CHIEF[0], "--admin", pw=CHIEF[1])
    ctl("account", "add", BOSS[0], pw=BOSS[1])
    ctl("account", "add", FARBOSS[0], pw=FARBOSS[1])
    ctl("account", "add", USER[0], pw=USER[1])
    for a in ("alice@obj.test", "bob@obj.test", "carol@far.test"):
        ctl("account", "add", a, pw="some-secret-12")
    ctl("account", "admin-of", BOSS[0], "obj.test")
    ctl("account", "admin-of", FARBOSS[0], "far.test")
    yield World(n, f"https://127.0.0.1:{n.admin_tls_port}/api/v1")
    n.stop()


def etag(r):
    tag = r.headers.get("ETag")
    assert tag and tag.startswith('"') and tag.endswith('"'), r.headers
    return tag


# ---- aliases ----

def test_account_aliases(w):
    r = w.ok("POST", "/accounts/alice@obj.test/aliases", 201, json={"alias": "Al@OBJ.test"})
    assert r.json() == {"alias": "al@obj.test", "account": "alice@obj.test"}
    assert w.ok("GET", "/accounts/alice@obj.test/aliases").json() == ["al@obj.test"]
    assert w.ctl_json("alias", "list", "alice@obj.test") == ["al@obj.test"]
    # taken by an alias or an account, malformed, unknown, wrong body
    assert w.status("POST", "/accounts/bob@obj.test/aliases", json={"alias": "al@obj.test"}) == 409
    assert w.status("POST", "/accounts/bob@obj.test/aliases", json={"alias": "alice@obj.test"}) == 409
    assert w.status("POST", "/accounts/bob@obj.test/aliases", json={"alias": "no-at"}) == 400
    assert w.status("POST", "/accounts/bob@obj.test/aliases", json={"alias": "x@none.test"}) == 404
    assert w.status("POST", "/accounts/nobody@obj.test/aliases", json={"alias": "y@obj.test"}) == 404
    assert w.status("POST", "/accounts/bob@obj.test/aliases", json={}) == 400
    assert w.status("POST", "/accounts/bob@obj.test/aliases", json={"alias": 5}) == 400
    assert w.status("POST", "/accounts/bob@obj.test/aliases",
                    json={"alias": "z@obj.test", "extra": 1}) == 400
    assert w.status("GET", "/accounts/nobody@obj.test/aliases") == 404

    # the domain administrator: its domain's accounts and addresses only
    w.ok("POST", "/accounts/bob@obj.test/aliases", 201, auth=BOSS, json={"alias": "b@obj.test"})
    assert w.ok("GET", "/accounts/bob@obj.test/aliases", auth=BOSS).json() == ["b@obj.test"]
    w.denied("POST", "/accounts/bob@obj.test/aliases", BOSS, json={"alias": "b@far.test"})
    w.denied("POST", "/accounts/carol@far.test/aliases", BOSS, json={"alias": "c@far.test"})
    w.denied("POST", "/accounts/chief@obj.test/aliases", BOSS, json={"alias": "ch@obj.test"})
    w.denied("GET", "/accounts/carol@far.test/aliases", BOSS)
    w.denied("GET", "/accounts/nobody@far.test/aliases", BOSS)
    w.denied("GET", "/accounts/bob@obj.test/aliases", *NOT_BOSSES)
    w.denied("POST", "/accounts/bob@obj.test/aliases", *NOT_BOSSES, json={"alias": "q@obj.test"})

    # removing: an alias of obj.test that leads to carol in far.test is not the boss's
    w.ok("POST", "/accounts/carol@far.test/aliases", 201, json={"alias": "carol@obj.test"})
    w.denied("DELETE", "/aliases/carol@obj.test", BOSS)
    w.denied("DELETE", "/aliases/b@obj.test", *NOT_BOSSES)
    w.ok("DELETE", "/aliases/b@obj.test", 204, auth=BOSS)
    w.ok("DELETE", "/aliases/carol@obj.test", 204)
    w.ok("DELETE", "/aliases/al@obj.test", 204)
    assert w.status("DELETE", "/aliases/al@obj.test") == 404
    assert w.status("DELETE", "/aliases/gone@obj.test", auth=BOSS) == 404
    assert w.ok("GET", "/accounts/alice@obj.test/aliases").json() == []


def test_domain_aliases(w):
    r = w.ok("POST", "/domains/obj.test/aliases", 201, json={"alias": "OBJ-alias.test"})
    assert r.json() == {"alias": "obj-alias.test", "domain": "obj.test"}
    assert w.ok("GET", "/domains/obj.test/aliases").json() == ["obj-alias.test"]
    assert w.ok("GET", "/domains/obj-alias.test/aliases").json() == ["obj-alias.test"]
    assert "obj-alias.test" in w.ok("GET", "/domains/obj.test").json()["aliases"]
    assert w.status("POST", "/domains/far.test/aliases", json={"alias": "obj-alias.test"}) == 409
    assert w.status("POST", "/domains/far.test/aliases", json={"alias": "obj.test"}) == 409
    assert w.status("POST", "/domains/far.test/aliases", json={"alias": "bad name"}) == 400
    assert w.status("POST", "/domains/none.test/aliases", json={"alias": "n2.test"}) == 404
    assert w.status("GET", "/domains/none.test/aliases") == 404
    # the domain administrator reads its domain's aliases; adding one claims a domain name
    assert w.ok("GET", "/domains/obj.test/aliases", auth=BOSS).json() == ["obj-alias.test"]
    w.denied("GET", "/domains/far.test/aliases", BOSS)
    w.denied("GET", "/domains/obj.test/aliases", *NOT_BOSSES)
    w.denied("POST", "/domains/obj.test/aliases", BOSS, *NOT_BOSSES, json={"alias": "b2.test"})
    w.denied("DELETE", "/domains/obj.test/aliases/obj-alias.test", BOSS, *NOT_BOSSES)
    # only an alias of the domain named in the path
    assert w.status("DELETE", "/domains/far.test/aliases/obj-alias.test") == 404
    assert w.status("DELETE", "/domains/obj.test/aliases/far.test") == 404
    w.ok("DELETE", "/domains/obj.test/aliases/obj-alias.test", 204)
    assert w.status("DELETE", "/domains/obj.test/aliases/obj-alias.test") == 404
    assert w.ok("GET", "/domains/obj.test/aliases").json() == []


def test_catchall(w):
    r = w.ok("GET", "/domains/obj.test/catchall")
    assert r.json() == {"domain": "obj.test", "catchall": None}
    assert r.json() == w.ctl_json("domain", "catchall", "obj.test")
    first = etag(r)
    r = w.ok("PUT", "/domains/obj.test/catchall", json={"catchall": "alice@obj.test"},
             headers={"If-Match": first})
    assert r.json() == {"domain": "obj.test", "catchall": "alice@obj.test"}
    assert etag(r) != first and etag(r) == etag(w.ok("GET", "/domains/obj.test/catchall"))
    # a second administrator who read the first version is refused, nothing changes
    assert w.status("PUT", "/domains/obj.test/catchall", json={"catchall": "bob@obj.test"},
                    headers={"If-Match": first}) == 412
    assert w.status("DELETE", "/domains/obj.test/catchall", headers={"If-Match": first}) == 412
    assert w.ok("GET", "/domains/obj.test/catchall").json()["catchall"] == "alice@obj.test"
    assert w.status("PUT", "/domains/obj.test/catchall", json={"catchall": "nobody@obj.test"}) == 404
    assert w.status("PUT", "/domains/none.test/catchall", json={"catchall": "alice@obj.test"}) == 404
    assert w.status("PUT", "/domains/obj.test/catchall", json={}) == 400
    assert w.status("PUT", "/domains/obj.test/catchall", json={"catchall": None}) == 400
    assert w.status("GET", "/domains/none.test/catchall") == 404
    # the domain administrator: its domain, to an account it manages
    w.ok("PUT", "/domains/obj.test/catchall", auth=BOSS, json={"catchall": "bob@obj.test"})
    w.denied("PUT", "/domains/obj.test/catchall", BOSS, json={"catchall": "carol@far.test"})
    w.denied("PUT", "/domains/obj.test/catchall", BOSS, json={"catchall": "chief@obj.test"})
    w.denied("PUT", "/domains/far.test/catchall", BOSS, json={"catchall": "bob@obj.test"})
    w.denied("GET", "/domains/far.test/catchall", BOSS)
    w.denied("GET", "/domains/obj.test/catchall", *NOT_BOSSES)
    w.denied("DELETE", "/domains/obj.test/catchall", *NOT_BOSSES)
    w.ok("DELETE", "/domains/obj.test/catchall", 204, auth=BOSS)
    assert w.ok("GET", "/domains/obj.test/catchall").json()["catchall"] is None


def test_forward(w):
    path = "/accounts/alice@obj.test/forward"
    r = w.ok("GET", path)
    assert r.json() == {"address": "alice@obj.test", "keep_copy": False, "targets": []}
    r = w.ok("PUT", path, json={"targets": ["Ext@Else.TEST", "bob@obj.test"], "keep_copy": True},
             headers={"If-Match": etag(r)})
    assert r.json() == {"address": "alice@obj.test", "keep_copy": True,
                        "targets": ["Ext@else.test", "bob@obj.test"]}
    assert r.json() == w.ctl_json("forward", "show", "alice@obj.test")
    # the address through another spelling is the same object with the same tag
    assert etag(w.ok("GET", "/accounts/ALICE@obj.test/forward")) == etag(r)
    stale = etag(r)
    w.ok("PUT", path, json={"targets": ["x@else.test"]}, headers={"If-Match": stale})
    assert w.status("PUT", path, json={"targets": ["y@else.test"]},
                    headers={"If-Match": stale}) == 412
    assert w.ok("GET", path).json()["targets"] == ["x@else.test"]
    for bad in ({"targets": []}, {"targets": "x@else.test"}, {"targets": [1]},
                {"targets": ["alice@obj.test"]},                 # a loop
                {"targets": ["not-an-address"]}, {"targets": ["a@b.test", "A@b.test"]},
                {"targets": [f"t{i}@else.test" for i in range(33)]},
                {"targets": ["x@else.test"], "keep_copy": "yes"}, {}):
        assert w.status("PUT", path, json=bad) == 400, bad
    assert w.status("PUT", "/accounts/nobody@obj.test/forward", json={"targets": ["x@else.test"]}) == 404
    assert w.status("GET", "/accounts/nobody@obj.test/forward") == 404
    # scope
    w.ok("PUT", "/accounts/bob@obj.test/forward", auth=BOSS, json={"targets": ["b@else.test"]})
    assert w.ok("GET", "/accounts/bob@obj.test/forward", auth=BOSS).json()["targets"] == ["b@else.test"]
    w.ok("DELETE", "/accounts/bob@obj.test/forward", 204, auth=BOSS)
    for p in ("/accounts/carol@far.test/forward", "/accounts/chief@obj.test/forward"):
        w.denied("GET", p, BOSS)
        w.denied("PUT", p, BOSS, json={"targets": ["x@else.test"]})
    w.denied("GET", path, *NOT_BOSSES)
    w.denied("DELETE", path, *NOT_BOSSES)
    w.ok("DELETE", path, 204)
    assert w.ok("GET", path).json()["targets"] == []
    assert w.status("DELETE", "/accounts/nobody@obj.test/forward") == 404


def test_autoreply(w):
    path = "/accounts/alice@obj.test/autoreply"
    r = w.ok("GET", path)
    assert r.json() == {"address": "alice@obj.test", "enabled": False}
    body = {"subject": "Away", "body": "Back on Monday.", "interval": 3600, "from": 1893456000,
            "until": 1894000000}
    r = w.ok("PUT", path, json=body, headers={"If-Match": etag(r)})
    assert r.json() == dict(body, address="alice@obj.test", enabled=True)
    assert r.json() == w.ctl_json("autoreply", "show", "alice@obj.test")
    # the defaults: the original subject, a week
    r2 = w.ok("PUT", path, json={"body": "Gone."}, headers={"If-Match": etag(r)})
    assert r2.json()["interval"] == 604800 and r2.json()["subject"] == ""
    assert r2.json()["from"] is None and r2.json()["until"] is None
    assert w.status("PUT", path, json=body, headers={"If-Match": etag(r)}) == 412
    assert w.ok("GET", path).json()["body"] == "Gone."
    for bad in ({"subject": "x"}, {"body": 5}, {"body": "x", "interval": 5},
                {"body": "x", "interval": "week"}, {"body": "x", "from": 2000, "until": 1000},
                {"body": "x", "subject": "two\r\nlines"}, {"body": "x", "enabled": False},
                {"body": "x" * 70000}, {"body": "x", "color": "red"}):
        assert w.status("PUT", path, json=bad) == 400, bad
    assert w.status("PUT", "/accounts/nobody@obj.test/autoreply", json={"body": "x"}) == 404
    w.ok("PUT", "/accounts/bob@obj.test/autoreply", auth=BOSS, json={"body": "Bob is away."})
    w.ok("DELETE", "/accounts/bob@obj.test/autoreply", 204, auth=BOSS)
    w.denied("PUT", "/accounts/carol@far.test/autoreply", BOSS, json={"body": "x"})
    w.denied("GET", "/accounts/chief@obj.test/autoreply", BOSS)
    w.denied("GET", path, *NOT_BOSSES)
    w.denied("PUT", path, *NOT_BOSSES, json={"body": "x"})
    w.ok("DELETE", path, 204)
    assert w.ok("GET", path).json()["enabled"] is False


# ---- groups ----

def test_groups_and_members(w):
    r = w.ok("POST", "/groups", 201, json={"address": "team@obj.test", "full_name": "Team"})
    assert r.json()["kind"] == "group" and r.json()["deliver_to"] == "members"
    tag = etag(r)
    assert w.status("POST", "/groups", json={"address": "team@obj.test"}) == 409
    assert w.status("POST", "/groups", json={"address": "x@none.test"}) == 404
    assert w.status("POST", "/groups", json={"address": "x@obj.test", "deliver_to": "void"}) == 400
    assert w.status("POST", "/groups", json={"full_name": "no address"}) == 400
    assert "team@obj.test" in {g["address"] for g in w.ok("GET", "/groups").json()}
    assert all(g["kind"] == "group" for g in w.ok("GET", "/groups?domain=obj.test").json())
    assert w.status("GET", "/groups?domain=none.test") == 404
    g = w.ok("GET", "/groups/team@obj.test")
    assert etag(g) == tag and g.json()["full_name"] == "Team"
    assert w.status("GET", "/groups/alice@obj.test") == 404    # an account, not a group
    assert w.status("GET", "/groups/nobody@obj.test") == 404

    # replacing with If-Match; the loser of a race gets 412 and changes nothing
    r = w.ok("PUT", "/groups/team@obj.test", json={"full_name": "Team A", "deliver_to": "folder"},
             headers={"If-Match": tag})
    assert r.json()["full_name"] == "Team A" and r.json()["deliver_to"] == "folder"
    assert etag(r) != tag
    assert w.status("PUT", "/groups/team@obj.test", json={"full_name": "Team B"},
                    headers={"If-Match": tag}) == 412
    # one statement: an invalid delivery leaves the name alone too
    assert w.status("PUT", "/groups/team@obj.test",
                    json={"full_name": "Team C", "deliver_to": "void"}) == 400
    assert w.ok("GET", "/groups/team@obj.test").json()["full_name"] == "Team A"
    # a changed GET answer can be sent back as it is
    back = w.ok("GET", "/groups/team@obj.test")
    w.ok("PUT", "/groups/team@obj.test", json=dict(back.json(), deliver_to="members"),
         headers={"If-Match": etag(back)})
    assert w.status("PUT", "/groups/alice@obj.test", json={"full_name": "x"}) == 404

    # members: accounts, a whole domain, nested groups (no cycles)
    w.ok("POST", "/groups", 201, json={"address": "sub@obj.test"})
    w.ok("POST", "/groups/sub@obj.test/members", 201, json={"member": "bob@obj.test"})
    r = w.ok("POST", "/groups/team@obj.test/members", 201, json={"member": "alice@obj.test"})
    assert r.json() == {"group": "team@obj.test", "member": "alice@obj.test"}
    w.ok("POST", "/groups/team@obj.test/members", 201, json={"member": "sub@obj.test"})
    w.ok("POST", "/groups/team@obj.test/members", 201, json={"name": "far.test", "kind": "domain"})
    assert w.status("POST", "/groups/sub@obj.test/members", json={"member": "team@obj.test"}) == 409
    assert w.status("POST", "/groups/team@obj.test/members", json={"member": "team@obj.test"}) == 409
    assert w.status("POST", "/groups/team@obj.test/members", json={"member": "alice@obj.test"}) == 409
    assert w.status("POST", "/groups/team@obj.test/members", json={"member": "nobody@obj.test"}) == 404
    assert w.status("POST", "/groups/team@obj.test/members",
                    json={"member": "alice@obj.test", "kind": "weird"}) == 400
    assert w.status("POST", "/groups/alice@obj.test/members", json={"member": "bob@obj.test"}) == 404
    members = w.ok("GET", "/groups/team@obj.test/members").json()
    assert {(m["kind"], m["name"]) for m in members} == {
        ("account", "alice@obj.test"), ("group", "sub@obj.test"), ("domain", "far.test")}
    assert members == w.ctl_json("group", "members", "team@obj.test")
    expanded = w.ok("GET", "/groups/team@obj.test/members?expand=1").json()
    assert {"alice@obj.test", "bob@obj.test", "carol@far.test"} <= {a["address"] for a in expanded}
    assert expanded == w.ctl_json("group", "members", "team@obj.test", "--expand")
    w.ok("DELETE", "/groups/team@obj.test/members/alice@obj.test", 204)
    assert w.status("DELETE", "/groups/team@obj.test/members/alice@obj.test") == 404
    w.ok("DELETE", "/groups/team@obj.test/members/far.test?kind=domain", 204)

    # the domain administrator: groups of its domain, members from its domain
    w.ok("POST", "/groups", 201, auth=BOSS, json={"address": "crew@obj.test"})
    w.ok("POST", "/groups/crew@obj.test/members", 201, auth=BOSS, json={"member": "bob@obj.test"})
    w.denied("POST", "/groups/crew@obj.test/members", BOSS, json={"member": "carol@far.test"})
    w.denied("POST", "/groups/crew@obj.test/members", BOSS, json={"member": "far.test"})
    w.denied("POST", "/groups", BOSS, json={"address": "crew@far.test"})
    w.denied("GET", "/groups?domain=far.test", BOSS)
    assert all(g["address"].endswith("@obj.test") for g in w.ok("GET", "/groups", auth=BOSS).json())
    w.ok("POST", "/groups", 201, json={"address": "farteam@far.test"})
    for method, path in (("GET", "/groups/farteam@far.test"),
                         ("GET", "/groups/farteam@far.test/members"),
                         ("DELETE", "/groups/farteam@far.test")):
        w.denied(method, path, BOSS)
    assert w.ok("GET", "/groups", auth=FARBOSS).json()[0]["address"] == "farteam@far.test"
    for method, path in (("GET", "/groups/team@obj.test"), ("GET", "/groups/team@obj.test/members"),
                         ("DELETE", "/groups/team@obj.test/members/sub@obj.test"),
                         ("PUT", "/groups/team@obj.test")):
        w.denied(method, path, *NOT_BOSSES, json={"full_name": "x"})
    w.denied("POST", "/groups/team@obj.test/members", *NOT_BOSSES, json={"member": "bob@obj.test"})
    w.denied("GET", "/groups/team@obj.test/members?expand=1", *NOT_BOSSES)
    w.denied("GET", "/groups", USER)
    w.denied("POST", "/groups", *NOT_BOSSES, json={"address": "x@obj.test"})

    # deleting: groups only, with If-Match
    assert w.status("DELETE", "/groups/alice@obj.test") == 404
    assert w.ok("GET", "/accounts/alice@obj.test").status_code == 200
    assert w.status("DELETE", "/groups/team@obj.test", headers={"If-Match": tag}) == 412
    w.ok("DELETE", "/groups/team@obj.test", 204,
         headers={"If-Match": etag(w.ok("GET", "/groups/team@obj.test"))})
    w.ok("DELETE", "/groups/crew@obj.test", 204, auth=BOSS)
    for g in ("sub@obj.test", "farteam@far.test"):
        w.ok("DELETE", f"/groups/{g}", 204)
    assert w.status("GET", "/groups/team@obj.test") == 404


# ---- quotas ----

def test_account_quota(w):
    path = "/accounts/alice@obj.test/quota"
    r = w.ok("GET", path)
    assert r.json() == w.ctl_json("quota", "show", "account", "alice@obj.test")
    assert set(r.json()) == {"address", "bytes", "messages", "domain"}
    r = w.ok("PUT", path, json={"bytes": "10M", "messages": 1000}, headers={"If-Match": etag(r)})
    assert r.json()["bytes"]["limit"] == 10 << 20 and r.json()["bytes"]["from"] == "account"
    assert r.json()["messages"]["limit"] == 1000
    stale = etag(r)
    r = w.ok("PUT", path, json={"messages": None}, headers={"If-Match": stale})
    assert r.json()["messages"]["from"] != "account"
    assert w.status("PUT", path, json={"bytes": 1}, headers={"If-Match": stale}) == 412
    for bad in ({}, {"bytes": -1}, {"bytes": "lots"}, {"bytes": True}, {"gigabytes": 1},
                {"bytes": 1 << 61}):
        assert w.status("PUT", path, json=bad) == 400, bad
    assert w.status("GET", "/accounts/nobody@obj.test/quota") == 404
    assert w.status("PUT", "/accounts/nobody@obj.test/quota", json={"bytes": 1}) == 404
    # below what is stored: refused unless forced
    msg = b"From: x@else.test\r\nSubject: q\r\n\r\n" + b"x" * 2000 + b"\r\n"
    r = floectl(w.n.config, "mail", "deliver", "alice@obj.test", input=msg.decode())
    assert r.returncode == 0, r.stderr
    assert w.ok("GET", path).json()["bytes"]["used"] > 1000
    assert w.status("PUT", path, json={"bytes": 1000}) == 409
    assert w.ok("PUT", path + "?force=1", json={"bytes": 1000}).json()["bytes"]["limit"] == 1000
    # usage is not part of the tag: mail arriving does not make an administrator's copy stale
    before = etag(w.ok("GET", path))
    floectl(w.n.config, "mail", "deliver", "alice@obj.test", input=msg.decode())
    assert etag(w.ok("GET", path)) == before
    w.ok("PUT", path, json={"bytes": None})
    # scope
    w.ok("PUT", "/accounts/bob@obj.test/quota", auth=BOSS, json={"bytes": "1G"})
    assert w.ok("GET", "/accounts/bob@obj.test/quota", auth=BOSS).json()["bytes"]["limit"] == 1 << 30
    w.denied("GET", "/accounts/carol@far.test/quota", BOSS)
    w.denied("PUT", "/accounts/chief@obj.test/quota", BOSS, json={"bytes": 1})
    w.denied("GET", path, *NOT_BOSSES)
    w.denied("PUT", path, *NOT_BOSSES, json={"bytes": 1})


def test_domain_and_server_quota(w):
    path = "/domains/obj.test/quota"
    r = w.ok("GET", path)
    assert r.json() == w.ctl_json("quota", "show", "domain", "obj.test")
    r = w.ok("PUT", path, json={"bytes_limit": "1G", "account_bytes": "100M"},
             headers={"If-Match": etag(r)})
    assert r.json()["bytes_limit"] == 1 << 30 and r.json()["account_bytes"] == 100 << 20
    stale = etag(r)
    r = w.ok("PUT", path, json={"account_bytes": None, "bytes_limit": 0}, headers={"If-Match": stale})
    assert r.json()["account_bytes"] is None and r.json()["bytes_limit"] == 0
    assert w.status("PUT", path, json={"bytes_limit": 5}, headers={"If-Match": stale}) == 412
    for bad in ({}, {"bytes_limit": None}, {"account_messages": "10M"}, {"bytes": 1}):
        assert w.status("PUT", path, json=bad) == 400, bad
    assert w.status("GET", "/domains/none.test/quota") == 404
    assert w.status("PUT", "/domains/none.test/quota", json={"bytes_limit": 1}) == 404
    # domain administrators read their domain's quota; setting it is the server's
    assert w.ok("GET", path, auth=BOSS).json()["domain"] == "obj.test"
    w.denied("PUT", path, BOSS, *NOT_BOSSES, json={"bytes_limit": 0})
    w.denied("GET", "/domains/far.test/quota", BOSS)
    w.denied("GET", path, *NOT_BOSSES)

    r = w.ok("GET", "/server/quota")
    assert r.json() == w.ctl_json("quota", "show", "server")
    old = r.json()
    r = w.ok("PUT", "/server/quota", json={"account_bytes": "2G"}, headers={"If-Match": etag(r)})
    assert r.json()["account_bytes"] == 2 << 30
    assert w.status("PUT", "/server/quota", json={"account_messages": 5},
                    headers={"If-Match": '"h0000000000000000"'}) == 412
    for bad in ({}, {"account_bytes": None}, {"account_bytes": "x"}):
        assert w.status("PUT", "/server/quota", json=bad) == 400, bad
    w.denied("GET", "/server/quota", BOSS, *NOT_BOSSES)
    w.denied("PUT", "/server/quota", BOSS, *NOT_BOSSES, json={"account_bytes": 1})
    w.ok("PUT", "/server/quota", json=old)


# ---- policies ----

def test_policies(w):
    path = "/accounts/alice@obj.test/policies"
    r = w.ok("GET", path)
    assert r.json() == w.ctl_json("policy", "show", "account", "alice@obj.test")
    assert [p["service"] for p in r.json()] == ["imap", "pop3", "smtp", "activesync", "dav",
                                                 "syncml"]
    r = w.ok("PUT", path, json={"pop3": "disabled", "imap": "enabled"}, headers={"If-Match": etag(r)})
    states = {p["service"]: p for p in r.json()}
    assert states["pop3"]["account"] == "disabled" and states["pop3"]["allowed"] is False
    assert states["imap"]["account"] == "enabled"
    stale = etag(r)
    w.ok("PUT", path, json={"imap": "inherit"}, headers={"If-Match": stale})
    assert w.status("PUT", path, json={"dav": "disabled"}, headers={"If-Match": stale}) == 412
    # all or nothing: one bad entry changes none
    for bad in ({"pop3": "enabled", "ftp": "enabled"}, {"pop3": "enabled", "smtp": "maybe"},
                {"pop3": True}, {}):
        assert w.status("PUT", path, json=bad) == 400, bad
    assert {p["service"]: p for p in w.ok("GET", path).json()}["pop3"]["account"] == "disabled"
    assert w.status("GET", "/accounts/nobody@obj.test/policies") == 404

    dpath = "/domains/obj.test/policies"
    r = w.ok("GET", dpath)
    assert r.json() == w.ctl_json("policy", "show", "domain", "obj.test")
    r = w.ok("PUT", dpath, auth=BOSS, json={"activesync": "disabled"})
    assert {p["service"]: p for p in r.json()}["activesync"]["domain"] == "disabled"
    assert {p["service"]: p for p in w.ok("GET", "/accounts/bob@obj.test/policies").json()}[
        "activesync"]["allowed"] is False
    assert w.status("PUT", dpath, json={"activesync": "inherit"}, headers={"If-Match": etag(r)}) == 200
    assert w.status("PUT", dpath, json={"dav": "disabled"}, headers={"If-Match": etag(r)}) == 412
    assert w.status("PUT", "/domains/none.test/policies", json={"dav": "disabled"}) == 404
    w.ok("PUT", "/accounts/bob@obj.test/policies", auth=BOSS, json={"syncml": "disabled"})
    w.denied("PUT", "/accounts/carol@far.test/policies", BOSS, json={"dav": "disabled"})
    w.denied("GET", "/accounts/chief@obj.test/policies", BOSS)
    w.denied("PUT", "/domains/far.test/policies", BOSS, json={"dav": "disabled"})
    w.denied("GET", dpath, *NOT_BOSSES)
    w.denied("PUT", path, *NOT_BOSSES, json={"dav": "disabled"})
    w.ok("PUT", path, json={"pop3": "inherit"})


def test_login_policy(w):
    r = w.ok("GET", "/server/login-policy")
    assert r.json() == {"login_policy": "full_address"} == w.ctl_json("login-policy", "show")
    r2 = w.ok("PUT", "/server/login-policy", json={"login_policy": "local_part_when_unambiguous"},
              headers={"If-Match": etag(r)})
    assert r2.json() == w.ctl_json("login-policy", "show")
    # a bare local part logs in now (the API's own Basic authentication goes through it)
    assert w.status("GET", "/domains", auth=("root", ADMIN[1])) == 200
    assert w.status("PUT", "/server/login-policy", json={"login_policy": "full_address"},
                    headers={"If-Match": etag(r)}) == 412
    for bad in ({}, {"login_policy": "anything"}, {"login_policy": 1}):
        assert w.status("PUT", "/server/login-policy", json=bad) == 400, bad
    w.denied("GET", "/server/login-policy", BOSS, *NOT_BOSSES)
    w.denied("PUT", "/server/login-policy", BOSS, *NOT_BOSSES, json={"login_policy": "full_address"})
    w.ok("PUT", "/server/login-policy", json={"login_policy": "full_address"})
    assert w.status("GET", "/domains", auth=("root", ADMIN[1])) == 401


# ---- queue ----

def queue_message(w, rcpts):
    """Queues a message (rows as storage/queue.c writes them) that is not due for a day."""
    qid = sql_scalar(w.n, "INSERT INTO queue_messages (blob_id, size, sender, expires_at)"
                          " VALUES (repeat('ab', 32), 123, 'alice@obj.test', now() + interval '2 days')"
                          " RETURNING id")
    for r in rcpts:
        sql(w.n, "INSERT INTO queue_recipients (message_id, address, domain, next_attempt_at)"
                 " VALUES (:'p1', :'p2', split_part(:'p2', '@', 2), now() + interval '1 day')",
            qid, r)
    return int(qid)


def test_queue(w):
    qid = queue_message(w, ["x@remote.test", "y@remote.test"])
    listed = w.ok("GET", "/queue").json()
    assert listed == w.ctl_json("queue", "list") or [m["id"] for m in listed] == \
        [m["id"] for m in w.ctl_json("queue", "list")]      # "age" may tick between the two
    m = next(m for m in listed if m["id"] == qid)
    assert m["sender"] == "alice@obj.test" and m["queued"] == 2 and m["size"] == 123
    shown = w.ok("GET", f"/queue/{qid}").json()
    assert [r["address"] for r in shown["recipients"]] == ["x@remote.test", "y@remote.test"]
    assert all(r["state"] == "queued" for r in shown["recipients"])
    assert w.ok("POST", f"/queue/{qid}/retry").json() == {"id": qid, "due": 2}
    assert w.ok("POST", "/queue/retry").json()["due"] >= 0
    w.ok("DELETE", f"/queue/{qid}", 204)
    for method, path in (("GET", f"/queue/{qid}"), ("DELETE", f"/queue/{qid}"),
                         ("POST", f"/queue/{qid}/retry"), ("GET", "/queue/0"),
                         ("GET", "/queue/abc"), ("GET", "/queue/99999999999999999999"),
                         ("GET", "/queue/-1")):
        assert w.status(method, path) == 404, path
    other = queue_message(w, ["z@remote.test"])
    for method, path in (("GET", "/queue"), ("GET", f"/queue/{other}"),
                         ("POST", f"/queue/{other}/retry"), ("POST", "/queue/retry"),
                         ("DELETE", f"/queue/{other}")):
        w.denied(method, path, BOSS, *NOT_BOSSES)
    w.ok("DELETE", f"/queue/{other}", 204)


# ---- domain administrators ----

def test_domain_admins(w):
    assert w.ok("GET", "/domains/obj.test/admins").json() == ["boss@obj.test"]
    r = w.ok("POST", "/domains/obj.test/admins", 201, json={"address": "Alice@obj.test"})
    assert r.json() == {"address": "alice@obj.test", "domain": "obj.test"}
    assert w.ok("GET", "/domains/obj.test/admins").json() == ["alice@obj.test", "boss@obj.test"]
    assert w.ctl_json("account", "show", "alice@obj.test")["admin_of"] == ["obj.test"]
    # alice can now administer obj.test through the API
    alice = ("alice@obj.test", "some-secret-12")
    assert w.ok("GET", "/domains", auth=alice).json() == ["obj.test"]
    assert w.status("POST", "/domains/obj.test/admins", json={"address": "alice@obj.test"}) == 409
    assert w.status("POST", "/domains/obj.test/admins", json={"address": "nobody@obj.test"}) == 404
    assert w.status("POST", "/domains/none.test/admins", json={"address": "bob@obj.test"}) == 404
    assert w.status("POST", "/domains/obj.test/admins", json={"user": "bob@obj.test"}) == 400
    w.ok("POST", "/groups", 201, json={"address": "admins-group@obj.test"})
    assert w.status("POST", "/domains/obj.test/admins", json={"address": "admins-group@obj.test"}) == 400
    w.ok("DELETE", "/groups/admins-group@obj.test", 204)
    assert w.status("GET", "/domains/none.test/admins") == 404
    # domain administrators do not appoint domain administrators
    w.denied("GET", "/domains/obj.test/admins", BOSS, *NOT_BOSSES)
    w.denied("POST", "/domains/obj.test/admins", BOSS, *NOT_BOSSES, json={"address": "bob@obj.test"})
    w.denied("DELETE", "/domains/obj.test/admins/alice@obj.test", BOSS, *NOT_BOSSES)
    w.ok("DELETE", "/domains/obj.test/admins/alice@obj.test", 204)
    assert w.status("DELETE", "/domains/obj.test/admins/alice@obj.test") == 404
    assert w.status("GET", "/domains", auth=alice) == 403


# ---- conditional requests and methods ----

def test_if_match_forms_and_methods(w):
    path = "/accounts/bob@obj.test/forward"
    tag = etag(w.ok("GET", path))
    # "*" matches any current representation; a list matches when one tag does
    w.ok("PUT", path, json={"targets": ["one@else.test"]}, headers={"If-Match": "*"})
    tag = etag(w.ok("GET", path))
    w.ok("PUT", path, json={"targets": ["two@else.test"]}, headers={"If-Match": f'"x", {tag}'})
    tag = etag(w.ok("GET", path))
    # weak tags never match (RFC 9110 §13.1.1 uses the strong comparison); garbage is 412
    for h in (f"W/{tag}", "garbage", '"unterminated', ""):
        assert w.status("PUT", path, json={"targets": ["three@else.test"]},
                        headers={"If-Match": h}) == 412, h
    assert w.ok("GET", path).json()["targets"] == ["two@else.test"]
    w.ok("DELETE", path, 204, headers={"If-Match": tag})
    # accounts: the version; DELETE with a stale one is refused
    acc = w.ok("POST", "/accounts", 201, json={"address": "temp@obj.test"})
    w.ok("PATCH", "/accounts/temp@obj.test", json={"full_name": "T"}, headers={"If-Match": etag(acc)})
    assert w.status("DELETE", "/accounts/temp@obj.test", headers={"If-Match": etag(acc)}) == 412
    w.ok("DELETE", "/accounts/temp@obj.test", 204,
         headers={"If-Match": etag(w.ok("GET", "/accounts/temp@obj.test"))})
    # methods a path does not have: 405 with Allow, before authentication
    r = requests.put(w.base + "/groups", verify=False, timeout=10)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, POST"
    r = w.call("POST", "/accounts/bob@obj.test/forward")
    assert r.status_code == 405 and r.headers["Allow"] == "GET, PUT, DELETE"
    assert w.status("GET", "/accounts/bob@obj.test/forward/extra") == 404
    assert w.status("GET", "/accounts/bob@obj.test/") == 404
    # query parameters are decoded; a malformed one is 400
    assert w.status("GET", "/groups?domain=obj%2Etest") == 200
    assert w.status("GET", "/groups?domain=a%00b") == 400
    assert w.status("GET", "/groups?domain=" + "a" * 300) == 400


def test_concurrent_writers_one_wins(w):
    """Two administrators send their change at the same moment with the same If-Match:
    exactly one is applied, the other gets 412 (the administrator lock makes read, compare
    and write one step; an account's PATCH compares inside its UPDATE)."""
    from concurrent.futures import ThreadPoolExecutor

    def race(method, path, bodies, tag):
        with ThreadPoolExecutor(len(bodies)) as pool:
            futures = [pool.submit(w.call, method, path, json=b, headers={"If-Match": tag})
                       for b in bodies]
            return sorted(f.result().status_code for f in futures)

    # every body changes the object, whichever is applied first
    services = ("imap", "pop3", "smtp", "activesync", "dav", "syncml")
    cases = (("PUT", "/accounts/bob@obj.test/forward",
              lambda r, k: {"targets": [f"r{r}-{k}@else.test"]}),
             ("PUT", "/domains/obj.test/policies", lambda r, k: {services[k]: "disabled"}),
             ("PATCH", "/accounts/bob@obj.test", lambda r, k: {"full_name": f"Bob {r}-{k}"}))
    for method, path, body in cases:
        for round_ in range(5):
            w.ok("PUT", "/domains/obj.test/policies", json={s: "inherit" for s in services})
            tag = etag(w.ok("GET", path))
            bodies = [body(round_, k) for k in range(6)]
            assert race(method, path, bodies, tag) == [200] + [412] * 5, (path, round_)
    w.ok("DELETE", "/accounts/bob@obj.test/forward", 204)
