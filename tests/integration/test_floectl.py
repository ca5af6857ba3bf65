"""floectl's directory commands against a real PostgreSQL: aliases, domain aliases,
catch-alls, forwarders, groups, resources, quotas, service and login policies.

Each test gets its own freshly migrated database (floe_ctl_<pid>_<n>), dropped at the
end, and a configuration file naming it. Every run of the binary is checked for
sanitizer reports; failures must exit 1 with a message (and {"ok": false} under
--json), malformed command lines exit 2.
"""
import itertools
import json
import os
import subprocess

import pytest

from floe_harness import SANITIZER_MARKERS, floectl, fresh_database, pg_url, render_config

_counter = itertools.count()


class Ctl:
    def __init__(self, config, conninfo):
        self.config = config
        self.conninfo = conninfo

    def run(self, *args, input=None):
        r = floectl(self.config, *args, input=input)
        for marker in SANITIZER_MARKERS:
            assert marker not in r.stderr, f"sanitizer report from floectl {args}:\n{r.stderr}"
        return r

    def ok(self, *args):
        r = self.run(*args)
        assert r.returncode == 0, f"floectl {' '.join(args)}: {r.returncode}\n{r.stderr}"
        return r.stdout

    def json(self, *args):
        return json.loads(self.ok("--json", *args))

    def fails(self, *args, match):
        """Exit 1 with match in the message, in text and in JSON mode; nothing else printed."""
        r = self.run(*args)
        assert r.returncode == 1, f"floectl {' '.join(args)}: {r.returncode}\n{r.stdout}{r.stderr}"
        assert match in r.stderr, r.stderr
        assert r.stdout == ""
        r = self.run("--json", *args)
        assert r.returncode == 1
        out = json.loads(r.stdout)
        assert out["ok"] is False and match in out["error"], out

    def usage(self, *args):
        r = self.run(*args)
        assert r.returncode == 2, f"floectl {' '.join(args)}: {r.returncode}\n{r.stderr}"
        assert "usage:" in r.stderr

    def sql(self, query):
        r = subprocess.run(["psql", self.conninfo, "-qtAc", query], capture_output=True,
                           text=True, check=True)
        return r.stdout.strip()


@pytest.fixture
def ctl(tmp_path):
    name = f"floe_ctl_{os.getpid()}_{next(_counter)}"
    conninfo = fresh_database(name)
    config = tmp_path / "floed.conf"
    config.write_text(render_config({"database": {"url": conninfo}}))
    c = Ctl(config, conninfo)
    c.ok("db", "migrate")
    c.ok("domain", "add", "example.com")
    c.ok("domain", "add", "other.org")
    c.ok("account", "add", "alice@example.com", "--password", "alice secret")
    c.ok("account", "add", "bob@example.com")
    c.ok("account", "add", "bob@other.org")
    yield c
    subprocess.run(["psql", pg_url(), "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
                   capture_output=True)


def test_unknown_commands_are_usage_errors(ctl):
    ctl.usage("frobnicate")
    ctl.usage("alias")
    ctl.usage("alias", "add", "x@example.com")
    ctl.usage("alias", "list")
    ctl.usage("domain", "alias", "add", "example.net")
    ctl.usage("forward", "set", "alice@example.com")
    ctl.usage("forward", "show")
    ctl.usage("group", "member", "add", "g@example.com")
    ctl.usage("group", "members", "g@example.com", "--bogus")
    ctl.usage("resource", "set", "r@example.com")
    ctl.usage("quota", "set", "account", "alice@example.com")
    ctl.usage("quota", "set", "planet", "--bytes", "1")
    ctl.usage("quota", "show", "account")
    ctl.usage("policy", "set", "domain", "example.com", "imap")
    ctl.usage("policy", "show", "everyone", "x")
    ctl.usage("login-policy", "set")


def test_alias(ctl):
    assert "added" in ctl.ok("alias", "add", "Info@Example.com", "alice@example.com")
    ctl.ok("alias", "add", "sales@example.com", "ALICE@example.com")
    ctl.ok("alias", "add", "bobby@example.com", "bob@other.org")
    assert ctl.json("alias", "list", "alice@example.com") == ["info@example.com",
                                                              "sales@example.com"]
    assert ctl.ok("alias", "list", "bob@other.org") == "bobby@example.com\n"

    ctl.fails("alias", "add", "INFO@example.com", "bob@example.com", match="already an alias")
    ctl.fails("alias", "add", "bob@example.com", "alice@example.com", match="already an account")
    ctl.fails("alias", "add", "x@nowhere.org", "alice@example.com", match="unknown domain")
    ctl.fails("alias", "add", "x@example.com", "nobody@example.com", match="unknown account")
    ctl.fails("alias", "add", "not-an-address", "alice@example.com", match="local@domain")
    ctl.fails("alias", "add", "a..b@example.com", "alice@example.com", match="dot")
    ctl.fails("alias", "list", "nobody@example.com", match="unknown account")
    # an account cannot take an alias's address either
    ctl.fails("account", "add", "info@example.com", match="already an alias")
    assert ctl.sql("SELECT count(*) FROM account_aliases") == "3"

    assert "removed" in ctl.ok("alias", "remove", "sales@example.com")
    ctl.fails("alias", "remove", "sales@example.com", match="unknown alias")
    assert ctl.json("alias", "list", "alice@example.com") == ["info@example.com"]
    out = ctl.json("alias", "remove", "info@example.com")
    assert out["ok"] is True and "removed" in out["message"]


def test_domain_alias_and_catchall(ctl):
    ctl.ok("domain", "alias", "add", "example.net", "example.com")
    ctl.ok("domain", "alias", "add", "other.net", "other.org")
    assert ctl.json("domain", "alias", "list") == [
        {"alias": "example.net", "domain": "example.com"},
        {"alias": "other.net", "domain": "other.org"}]
    assert ctl.json("domain", "alias", "list", "other.org") == [
        {"alias": "other.net", "domain": "other.org"}]
    assert "example.net" in ctl.ok("domain", "alias", "list", "example.com")
    ctl.fails("domain", "alias", "add", "other.org", "example.com", match="is a domain")
    ctl.fails("domain", "alias", "add", "example.net", "other.org", match="already an alias")
    ctl.fails("domain", "alias", "add", "new.org", "nowhere.org", match="unknown domain")
    ctl.fails("domain", "alias", "add", "bad..name", "example.com", match="empty label")
    ctl.fails("domain", "add", "example.net", match="already exists as an alias")
    ctl.fails("domain", "alias", "list", "nowhere.org", match="unknown domain")
    # an alias through a domain alias is stored under the real domain
    ctl.ok("alias", "add", "info@example.net", "alice@example.com")
    assert ctl.json("alias", "list", "alice@example.com") == ["info@example.com"]

    assert ctl.json("domain", "catchall", "example.com") == {"domain": "example.com",
                                                             "catchall": None}
    ctl.ok("domain", "catchall", "example.net", "bob@other.org")
    assert ctl.json("domain", "catchall", "example.com")["catchall"] == "bob@other.org"
    assert "bob@other.org" in ctl.ok("domain", "catchall", "example.com")
    ctl.fails("domain", "catchall", "example.com", "nobody@example.com", match="unknown account")
    ctl.fails("domain", "catchall", "nowhere.org", "bob@other.org", match="unknown domain")
    ctl.fails("domain", "catchall", "nowhere.org", match="unknown domain")
    assert ctl.json("domain", "catchall", "example.com")["catchall"] == "bob@other.org"
    ctl.ok("domain", "catchall", "example.com", "--none")
    assert ctl.json("domain", "catchall", "example.com")["catchall"] is None
    ctl.usage("domain", "catchall", "example.com", "--all")

    ctl.ok("domain", "alias", "remove", "other.net")
    ctl.fails("domain", "alias", "remove", "other.net", match="unknown domain alias")
    assert len(ctl.json("domain", "alias", "list")) == 1


def test_forward(ctl):
    assert ctl.json("forward", "show", "alice@example.com") == {
        "address": "alice@example.com", "keep_copy": False, "targets": []}
    ctl.ok("forward", "set", "alice@example.com", "--keep-copy", "Ext@Elsewhere.ORG",
           "bob@example.com")
    assert ctl.json("forward", "show", "alice@example.com") == {
        "address": "alice@example.com", "keep_copy": True,
        "targets": ["Ext@elsewhere.org", "bob@example.com"]}
    assert "keeping a copy" in ctl.ok("forward", "show", "alice@example.com")

    ctl.fails("forward", "set", "alice@example.com", "not-an-address", match="not-an-address")
    ctl.fails("forward", "set", "alice@example.com", "x@localhost", match="dot")
    ctl.fails("forward", "set", "alice@example.com", "x@y.org", "X@Y.org", match="twice")
    ctl.fails("forward", "set", "alice@example.com", "ALICE@example.com", match="loop")
    ctl.fails("forward", "set", "nobody@example.com", "x@y.org", match="unknown account")
    many = [f"t{i}@y.org" for i in range(33)]
    ctl.fails("forward", "set", "alice@example.com", *many, match="at most 32")
    ctl.ok("forward", "set", "alice@example.com", *many[:32])
    assert len(ctl.json("forward", "show", "alice@example.com")["targets"]) == 32

    ctl.ok("forward", "clear", "alice@example.com")
    assert ctl.json("forward", "show", "alice@example.com")["targets"] == []
    assert "not forwarded" in ctl.ok("forward", "show", "alice@example.com")
    ctl.fails("forward", "clear", "nobody@example.com", match="unknown account")
    ctl.fails("forward", "show", "nobody@example.com", match="unknown account")


def test_groups(ctl):
    ctl.ok("group", "add", "sales@example.com", "--name", "Sales", "--deliver", "folder")
    ctl.ok("group", "add", "dev@example.com")
    ctl.ok("group", "add", "all@other.org")
    ctl.fails("group", "add", "x@example.com", "--deliver", "everyone", match="members or folder")
    ctl.fails("group", "add", "sales@example.com", match="already exists")
    assert ctl.json("account", "show", "sales@example.com")["kind"] == "group"
    assert ctl.sql("SELECT deliver_to FROM accounts WHERE local_part = 'sales'") == "folder"
    ctl.ok("group", "set", "sales@example.com", "--deliver", "members")
    assert ctl.sql("SELECT deliver_to FROM accounts WHERE local_part = 'sales'") == "members"
    ctl.fails("group", "set", "alice@example.com", "--deliver", "folder", match="not a group")

    ctl.ok("group", "member", "add", "sales@example.com", "alice@example.com")
    ctl.ok("group", "member", "add", "sales@example.com", "dev@example.com", "--kind", "group")
    ctl.ok("group", "member", "add", "dev@example.com", "all@other.org")
    ctl.ok("group", "member", "add", "all@other.org", "other.org", "--kind", "domain")
    assert ctl.json("group", "members", "sales@example.com") == [
        {"kind": "account", "name": "alice@example.com"},
        {"kind": "group", "name": "dev@example.com"}]
    assert "group    dev@example.com" in ctl.ok("group", "members", "sales@example.com")

    ctl.fails("group", "member", "add", "sales@example.com", "alice@example.com",
              match="already a member")
    ctl.fails("group", "member", "add", "sales@example.com", "dev@example.com", "--kind",
              "account", match="is a group")
    ctl.fails("group", "member", "add", "sales@example.com", "bob@example.com", "--kind", "group",
              match="not a group")
    ctl.fails("group", "member", "add", "sales@example.com", "bob@example.com", "--kind", "team",
              match="account, group or domain")
    ctl.fails("group", "member", "add", "sales@example.com", "nobody@example.com",
              match="unknown account")
    ctl.fails("group", "member", "add", "sales@example.com", "nowhere.org", match="unknown domain")
    ctl.fails("group", "member", "add", "alice@example.com", "bob@example.com", match="not a group")
    # cycles: sales > dev > all; all may not contain sales, nor sales itself
    ctl.fails("group", "member", "add", "all@other.org", "sales@example.com", match="cycle")
    ctl.fails("group", "member", "add", "sales@example.com", "sales@example.com", match="itself")
    assert ctl.sql("SELECT count(*) FROM group_members") == "4"

    expanded = ctl.json("group", "members", "sales@example.com", "--expand")
    assert [a["address"] for a in expanded] == ["alice@example.com", "bob@other.org"]
    assert "bob@other.org" in ctl.ok("group", "members", "sales@example.com", "--expand")
    ctl.fails("group", "members", "nobody@example.com", match="unknown account")

    ctl.ok("group", "member", "remove", "dev@example.com", "all@other.org")
    ctl.fails("group", "member", "remove", "dev@example.com", "all@other.org", match="not a member")
    assert [a["address"] for a in ctl.json("group", "members", "sales@example.com",
                                            "--expand")] == ["alice@example.com"]


def test_resources(ctl):
    ctl.ok("resource", "add", "room1@example.com", "--type", "room", "--name", "Room One")
    ctl.ok("resource", "add", "beamer@example.com", "--type", "equipment", "--booking",
           "manager_approval")
    ctl.fails("resource", "add", "car@example.com", "--type", "car", match="room or equipment")
    ctl.fails("resource", "add", "car@example.com", match="room or equipment")
    ctl.fails("resource", "add", "car@example.com", "--type", "room", "--booking", "maybe",
              match="auto_accept or manager_approval")
    ctl.fails("resource", "add", "room1@example.com", "--type", "room", match="already exists")
    assert ctl.sql("SELECT count(*) FROM accounts WHERE kind = 'resource'") == "2"

    assert ctl.json("resource", "show", "room1@example.com") == {
        "address": "room1@example.com", "type": "room", "booking": "auto_accept", "managers": []}
    assert ctl.json("resource", "show", "beamer@example.com")["booking"] == "manager_approval"
    ctl.ok("resource", "set", "room1@example.com", "--booking", "manager_approval")
    ctl.ok("resource", "set", "room1@example.com", "--type", "equipment")
    shown = ctl.json("resource", "show", "room1@example.com")
    assert (shown["type"], shown["booking"]) == ("equipment", "manager_approval")
    ctl.fails("resource", "set", "alice@example.com", "--type", "room", match="not a resource")
    ctl.fails("resource", "show", "nobody@example.com", match="unknown account")

    ctl.ok("resource", "manager", "add", "room1@example.com", "alice@example.com")
    ctl.ok("resource", "manager", "add", "room1@example.com", "bob@other.org")
    ctl.fails("resource", "manager", "add", "room1@example.com", "alice@example.com",
              match="already a manager")
    ctl.ok("group", "add", "team@example.com")
    ctl.fails("resource", "manager", "add", "room1@example.com", "team@example.com",
              match="not a user")
    ctl.fails("resource", "manager", "add", "alice@example.com", "bob@example.com",
              match="not a resource")
    assert ctl.json("resource", "show", "room1@example.com")["managers"] == [
        "alice@example.com", "bob@other.org"]
    ctl.ok("resource", "manager", "remove", "room1@example.com", "bob@other.org")
    ctl.fails("resource", "manager", "remove", "room1@example.com", "bob@other.org",
              match="not a manager")
    assert "managers: alice@example.com" in ctl.ok("resource", "show", "room1@example.com")


def test_quota(ctl):
    ctl.ok("quota", "set", "server", "--bytes", "1G", "--messages", "100000")
    assert ctl.json("quota", "show", "server") == {"account_bytes": 1 << 30,
                                                   "account_messages": 100000}
    q = ctl.json("quota", "show", "account", "alice@example.com")
    assert q["bytes"] == {"limit": 1 << 30, "from": "server", "used": 0}

    ctl.ok("quota", "set", "domain", "example.com", "--bytes", "10G", "--account-bytes", "500M")
    d = ctl.json("quota", "show", "domain", "example.com")
    assert d["bytes_limit"] == 10 << 30 and d["account_bytes"] == 500 << 20
    assert d["messages_limit"] == 0 and d["account_messages"] is None
    q = ctl.json("quota", "show", "account", "alice@example.com")
    assert q["bytes"]["limit"] == 500 << 20 and q["bytes"]["from"] == "domain"
    assert q["messages"] == {"limit": 100000, "from": "server", "used": 0}
    assert q["domain"]["bytes_limit"] == 10 << 30

    ctl.ok("quota", "set", "account", "alice@example.com", "--bytes", "2048K", "--messages", "50")
    q = ctl.json("quota", "show", "account", "alice@example.com")
    assert q["bytes"]["limit"] == 2 << 20 and q["bytes"]["from"] == "account"
    assert q["messages"]["limit"] == 50
    assert "limit 2097152 (account)" in ctl.ok("quota", "show", "account", "alice@example.com")
    ctl.ok("quota", "set", "account", "alice@example.com", "--bytes", "inherit")
    assert ctl.json("quota", "show", "account", "alice@example.com")["bytes"]["from"] == "domain"
    ctl.ok("quota", "set", "account", "alice@example.com", "--bytes", "unlimited")
    assert ctl.json("quota", "show", "account", "alice@example.com")["bytes"]["limit"] == 0

    ctl.fails("quota", "set", "account", "alice@example.com", "--bytes", "12X",
              match="not a number")
    ctl.fails("quota", "set", "account", "alice@example.com", "--messages", "5K",
              match="not a number")
    ctl.fails("quota", "set", "account", "alice@example.com", "--bytes", "-5",
              match="not a number")
    ctl.fails("quota", "set", "server", "--bytes", "inherit", match="no level above")
    ctl.fails("quota", "set", "domain", "example.com", "--bytes", "inherit",
              match="no level above")
    ctl.fails("quota", "set", "account", "nobody@example.com", "--bytes", "1",
              match="unknown account")
    ctl.fails("quota", "set", "domain", "nowhere.org", "--bytes", "1", match="unknown domain")
    ctl.fails("quota", "show", "domain", "nowhere.org", match="unknown domain")

    # Usage as the mail store leaves it; limits below it need --force.
    ctl.sql("INSERT INTO quota_usage (account_id, bytes, messages)"
            " SELECT id, 5000, 40 FROM accounts WHERE local_part = 'alice'")
    ctl.fails("quota", "set", "account", "alice@example.com", "--bytes", "4000",
              match="quota below usage")
    ctl.fails("quota", "set", "account", "alice@example.com", "--messages", "39",
              match="quota below usage")
    ctl.fails("quota", "set", "domain", "example.com", "--bytes", "4K", match="quota below usage")
    ctl.ok("quota", "set", "account", "alice@example.com", "--bytes", "5000", "--messages", "40")
    assert ctl.json("quota", "show", "account", "alice@example.com")["bytes"]["limit"] == 5000
    ctl.ok("quota", "set", "account", "alice@example.com", "--bytes", "4000", "--force")
    q = ctl.json("quota", "show", "account", "alice@example.com")
    assert q["bytes"] == {"limit": 4000, "from": "account", "used": 5000}
    assert q["domain"]["bytes_used"] == 5000
    ctl.ok("quota", "set", "domain", "example.com", "--bytes", "4K", "--force")
    assert ctl.json("quota", "show", "domain", "example.com")["bytes_limit"] == 4096


def test_policy(ctl):
    shown = ctl.json("policy", "show", "account", "alice@example.com")
    assert [p["service"] for p in shown] == ["imap", "pop3", "smtp", "activesync", "dav",
                                             "syncml"]
    assert all(p["allowed"] and p["domain"] == "inherit" and p["account"] == "inherit"
               for p in shown)

    ctl.ok("policy", "set", "domain", "example.com", "imap", "disabled")
    ctl.ok("policy", "set", "domain", "example.com", "activesync", "disabled")
    ctl.ok("policy", "set", "account", "alice@example.com", "imap", "enabled")
    alice = {p["service"]: p for p in ctl.json("policy", "show", "account", "alice@example.com")}
    assert alice["imap"] == {"service": "imap", "domain": "disabled", "account": "enabled",
                             "allowed": True}
    assert alice["activesync"]["allowed"] is False
    bob = {p["service"]: p for p in ctl.json("policy", "show", "account", "bob@example.com")}
    assert bob["imap"]["allowed"] is False
    other = {p["service"]: p for p in ctl.json("policy", "show", "account", "bob@other.org")}
    assert other["imap"]["allowed"] is True
    dom = {p["service"]: p for p in ctl.json("policy", "show", "domain", "example.com")}
    assert dom["imap"] == {"service": "imap", "domain": "disabled", "allowed": False}
    assert "imap        disabled  enabled   yes" in ctl.ok("policy", "show", "account",
                                                          "alice@example.com")

    ctl.ok("policy", "set", "account", "alice@example.com", "imap", "inherit")
    ctl.ok("policy", "set", "domain", "example.com", "activesync", "inherit")
    alice = {p["service"]: p for p in ctl.json("policy", "show", "account", "alice@example.com")}
    assert alice["imap"]["allowed"] is False and alice["activesync"]["allowed"] is True

    ctl.fails("policy", "set", "domain", "example.com", "ftp", "disabled", match="unknown service")
    ctl.fails("policy", "set", "account", "alice@example.com", "IMAP", "disabled",
              match="unknown service")
    ctl.fails("policy", "set", "domain", "example.com", "imap", "off",
              match="enabled, disabled or inherit")
    ctl.fails("policy", "set", "domain", "nowhere.org", "imap", "disabled", match="unknown domain")
    ctl.fails("policy", "set", "account", "nobody@example.com", "imap", "disabled",
              match="unknown account")
    ctl.fails("policy", "show", "domain", "nowhere.org", match="unknown domain")


def test_login_policy(ctl):
    assert ctl.json("login-policy", "show") == {"login_policy": "full_address"}
    ctl.ok("login-policy", "set", "local_part_when_unambiguous")
    assert ctl.ok("login-policy", "show") == "local_part_when_unambiguous\n"
    ctl.fails("login-policy", "set", "local_part", match="full_address or")
    assert ctl.json("login-policy", "show") == {"login_policy": "local_part_when_unambiguous"}
    ctl.ok("login-policy", "set", "full_address")
    assert ctl.sql("SELECT login_policy FROM server_settings") == "full_address"
