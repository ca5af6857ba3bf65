"""Shared and public folders over IMAP (seed 000 "Sharing Concepts", "Public Folders"), with
Python's imaplib and raw sockets: other users' folders under "~user@domain/" once subscribed
(CREATE "~user@domain" subscribes), public folders (a group's folders) under "Public Folders/"
without subscribing, NAMESPACE, and every command governed by the folder's rights (RFC 4314
letters, set with SETACL by the owner or `floectl folder acl`): LIST, SELECT/EXAMINE, FETCH
and \\Seen, STORE per flag, EXPUNGE, APPEND, COPY, MOVE, CREATE/DELETE/RENAME below a shared
folder, MYRIGHTS/GETACL, the owner's quota; changes by one user seen by the other (IDLE).

The node is the ASan build when FLOE_BUILD points at one; stopping it fails the test on any
sanitizer report."""
import imaplib
import itertools
import os
import re
import socket
import subprocess

import pytest

from floe_harness import FLOECTL, SANITIZER_MARKERS, fresh_database, pg_url

PW = "shared secret pw"
DOMAIN = "example.test"
JOHN = f"john@{DOMAIN}"
SHARED = f"~john@{DOMAIN}"
for _name in ("UNSELECT", "MOVE", "ENABLE"):
    imaplib.Commands[_name] = ("AUTH", "SELECTED")


def ctl(node, *args, input=None):
    r = subprocess.run([FLOECTL, "--config", str(node.config)] + list(args), capture_output=True,
                       input=input, timeout=60)
    err = r.stderr.decode(errors="replace")
    for marker in SANITIZER_MARKERS:
        assert marker not in err, f"sanitizer report from floectl {args}:\n{err}"
    assert r.returncode == 0, f"floectl {args}: {r.returncode}\n{err}"
    return r.stdout.decode()


_n = itertools.count(1)


def message(subject):
    n = next(_n)
    return (f"From: Bob <bob@{DOMAIN}>\r\nTo: john@{DOMAIN}\r\nSubject: {subject}\r\n"
            f"Message-ID: <shared{n}@{DOMAIN}>\r\n\r\nbody of {subject}\r\n").encode()


def deliver(node, address, subject, folder=None):
    args = ["mail", "deliver", address] + (["--folder", folder] if folder else [])
    return int(ctl(node, *args, input=message(subject)))


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    from conftest import Node
    name = f"floe_it_imapshared_{os.getpid()}"
    n = Node(tmp_path_factory.mktemp("imapshared"), {
        "service imap": {"idle_poll_interval": "1"},
    }, database=fresh_database(name))
    n.start()
    ctl(n, "domain", "add", DOMAIN)
    ctl(n, "domain", "add", "other.test")
    for u in ("john", "alice", "bob", "carol", "dave", "erin", "fred"):
        ctl(n, "account", "add", f"{u}@{DOMAIN}", "--password", PW)
    ctl(n, "account", "add", "olaf@other.test", "--password", PW)
    yield n
    n.stop()
    subprocess.run(["psql", pg_url(), "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
                   capture_output=True)


def login(node, user):
    m = imaplib.IMAP4("127.0.0.1", node.imap_port, timeout=15)
    m.login(user if "@" in user else f"{user}@{DOMAIN}", PW)
    return m


def ok(result):
    typ, data = result
    assert typ == "OK", data
    return data


def no(result, code):
    typ, data = result
    assert typ == "NO" and code.encode() in data[0], data
    return data


def names(m, pattern="*", lsub=False, ref='""'):
    typ, data = (m.lsub if lsub else m.list)(ref, pattern)
    assert typ == "OK", data
    out = {}
    for d in data:
        if d is None:
            continue
        mm = re.match(rb'\(([^)]*)\) "/" (.*)$', d)
        out[mm.group(2).strip(b'"').decode()] = mm.group(1).decode()
    return out


def q(name):
    return '"' + name + '"'


class Raw:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.buf = b""
        self.tags = itertools.count(1)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def cmd(self, text):
        tag = f"r{next(self.tags)}"
        self.s.sendall(f"{tag} {text}\r\n".encode())
        out = []
        while True:
            line = self.line()
            if line.startswith(tag.encode() + b" "):
                return out, line
            out.append(line)

    def wait_for(self, pattern, timeout=10):
        import time
        deadline = time.time() + timeout
        seen = []
        self.s.settimeout(1)
        while time.time() < deadline:
            try:
                line = self.line()
            except socket.timeout:
                continue
            seen.append(line)
            if re.search(pattern, line):
                self.s.settimeout(15)
                return line
        raise AssertionError(f"no {pattern!r} in {seen}")


# ---- namespaces and visibility ----

def test_namespace(node):
    m = login(node, "bob")
    assert ok(m.namespace()) == [b'(("" "/")) (("~" "/")) (("Public Folders/" "/"))']
    m.logout()


def test_shared_folders_appear_after_subscribing(node):
    j = login(node, "john")
    ok(j.create("Events"))
    ok(j.create("Private"))
    deliver(node, JOHN, "event one", folder="Events")
    ok(j.setacl("Events", f"alice@{DOMAIN}", "lr"))

    a = login(node, "alice")
    assert not [n for n in names(a) if n.startswith("~")]  # not subscribed yet
    # seed 000: CREATE "~user@domain" subscribes instead of creating a folder
    data = ok(a.create(SHARED))
    assert b"subscribed" in data[0]
    listed = names(a)
    assert listed[SHARED] == "\\Noselect \\HasChildren"
    assert listed[f"{SHARED}/Events"] == "\\HasNoChildren"
    assert f"{SHARED}/Private" not in listed and f"{SHARED}/INBOX" not in listed
    assert f"{SHARED}/Events" in names(a, lsub=True)
    # level by level, as clients walk a hierarchy
    assert SHARED in names(a, "%")
    assert list(names(a, f"{SHARED}/%")) == [f"{SHARED}/Events"]
    # the folder can be selected; the others do not exist for alice
    ok(a.select(q(f"{SHARED}/Events"), readonly=True))
    typ, data = a.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"event one" in data[0][1]
    no(a.select(q(f"{SHARED}/Private")), "[NONEXISTENT]")
    no(a.status(q(f"{SHARED}/INBOX"), "(MESSAGES)"), "[NONEXISTENT]")
    # DELETE "~user@domain" unsubscribes again
    ok(a.delete(SHARED))
    assert not [n for n in names(a) if n.startswith("~")]

    # nobody else sees anything of john's, and a name gives nothing away
    b = login(node, "bob")
    no(b.create(SHARED), "[NONEXISTENT]")
    no(b.create(f"~nobody@{DOMAIN}"), "[NONEXISTENT]")
    no(b.select(q(f"{SHARED}/Events")), "[NONEXISTENT]")
    no(b._simple_command("MYRIGHTS", q(f"{SHARED}/Events")), "[NONEXISTENT]")
    # SUBSCRIBE of one folder works as well, and one's own account is no "shared" account
    ok(a.subscribe(q(f"{SHARED}/Events")))
    assert f"{SHARED}/Events" in names(a)
    ok(a.unsubscribe(q(f"{SHARED}/Events")))
    assert f"{SHARED}/Events" not in names(a)
    no(j.select(q(f"{SHARED}/Events")), "[NONEXISTENT]")
    for m in (a, b, j):
        m.logout()


def test_rights_govern_every_command(node):
    j = login(node, "john")
    ok(j.create("Team"))
    for i in range(3):
        deliver(node, JOHN, f"team {i}", folder="Team")
    ok(j.setacl("Team", f"carol@{DOMAIN}", "l"))
    c = login(node, "carol")
    ok(c.create(SHARED))
    team = q(f"{SHARED}/Team")
    assert f"{SHARED}/Team" in names(c)
    # "l" only: listed, not readable
    no(c.select(team), "[NOPERM]")
    no(c.status(team, "(MESSAGES)"), "[NOPERM]")
    assert ok(c.myrights(team)) == [f"{SHARED}/Team l".encode()]
    no(c.getacl(team), "[NOPERM]")

    # "lrs": read, and keep \Seen; nothing else
    ok(j.setacl("Team", f"carol@{DOMAIN}", "lrs"))
    typ, data = c.select(team)
    assert typ == "OK"
    assert c.untagged_responses["PERMANENTFLAGS"] == [b"(\\Seen)"]
    assert ok(c.status(team, "(MESSAGES)")) == [f"{SHARED}/Team (MESSAGES 3)".encode()]
    typ, data = c.fetch("1", "(BODY[])")  # sets \Seen: "s"
    assert b"team 0" in data[0][1]
    ok(c.store("2", "+FLAGS", "(\\Flagged \\Deleted \\Seen $Work)"))  # only \Seen is kept
    flags = c.fetch("1:3", "(FLAGS)")[1]
    assert flags == [b"1 (FLAGS (\\Seen))", b"2 (FLAGS (\\Seen))", b"3 (FLAGS ())"], flags
    ok(c.store("1", "FLAGS", "(\\Answered)"))  # replace: only \Seen can go
    assert c.fetch("1", "(FLAGS)")[1] == [b"1 (FLAGS ())"]
    no(c.expunge(), "[NOPERM]")
    no(c.append(team, None, None, message("from carol")), "[NOPERM]")
    no(c._simple_command("MOVE", "1", "INBOX"), "[NOPERM]")
    ok(c.copy("3", "INBOX"))  # out of the shared folder into her own: "r" is enough
    no(c.create(f"{SHARED}/Team/Sub"), "[NOPERM]")
    no(c.create(f"{SHARED}/Mine"), "[NOPERM]")  # top level: the owner's alone
    no(c.delete(team), "[NOPERM]")
    no(c.rename(team, f"{SHARED}/Renamed"), "[NOPERM]")
    ok(c.select("INBOX"))
    no(c.copy("1", team), "[NOPERM]")  # no "i"
    # john sees what carol did (\Seen), nothing more
    ok(j.select("Team"))
    assert j.fetch("1:3", "(FLAGS)")[1] == [b"1 (FLAGS ())", b"2 (FLAGS (\\Seen))",
                                             b"3 (FLAGS ())"]

    # "lr" only: read-only (RFC 4314 §5.2), and reading sets no \Seen
    ok(j.setacl("Team", f"carol@{DOMAIN}", "lr"))
    typ, data = c._simple_command("SELECT", team)
    assert typ == "OK" and "READ-ONLY" in c.untagged_responses, data
    c.state, c.is_readonly = "SELECTED", True
    c.fetch("3", "(BODY[])")
    assert c.fetch("3", "(FLAGS)")[1] == [b"3 (FLAGS ())"]
    no(c.store("3", "+FLAGS", "(\\Seen)"), "[READ-ONLY]")

    # everything but "a"
    ok(j.setacl("Team", f"carol@{DOMAIN}", "lrswipkxte"))
    ok(c.select(team))
    assert c.untagged_responses["PERMANENTFLAGS"] == [
        b"(\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)"]
    ok(c.store("3", "+FLAGS", "(\\Flagged $Work)"))
    assert c.fetch("3", "(FLAGS)")[1] == [b"3 (FLAGS (\\Flagged $Work))"]
    data = ok(c.append(team, "(\\Seen)", None, message("from carol")))
    assert b"APPENDUID" in data[0]
    ok(c.store("1", "+FLAGS", "(\\Deleted)"))
    ok(c.expunge())
    ok(c.create(f"{SHARED}/Team/Sub"))  # "k" on the parent
    assert f"{SHARED}/Team/Sub" in names(c)  # inherits the parent's rights
    ok(c.rename(f"{SHARED}/Team/Sub", f"{SHARED}/Team/Sub2"))
    no(c.rename(f"{SHARED}/Team/Sub2", "Mine"), "[CANNOT]")  # not across accounts
    ok(c.delete(f"{SHARED}/Team/Sub2"))
    ok(c.select("INBOX"))
    data = ok(c.copy("1", team))
    assert b"COPYUID" in data[0]
    no(c.getacl(team), "[NOPERM]")
    # john's view of it
    ok(j.select("Team"))
    typ, data = j.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subjects = sorted(re.search(rb"Subject: ([^\r]*)", d[1]).group(1) for d in data
                      if isinstance(d, tuple))
    assert subjects == [b"from carol", b"team 1", b"team 2", b"team 2"], subjects

    # "a": carol administers the folder's rights, and sees john as its owner
    ok(j.setacl("Team", f"carol@{DOMAIN}", "lrswipkxtea"))
    acl = ok(c.getacl(team))[0]
    assert acl.startswith(f"{SHARED}/Team john@{DOMAIN} lrswipkxtea".encode()), acl
    ok(c.setacl(team, f"dave@{DOMAIN}", "lr"))
    d = login(node, "dave")
    ok(d.create(SHARED))
    ok(d.select(team, readonly=True))
    for m in (c, d, j):
        m.logout()


def test_groups_domains_and_anyone(node):
    j = login(node, "john")
    ok(j.create("Board"))
    deliver(node, JOHN, "board minutes", folder="Board")
    ctl(node, "group", "add", f"staff@{DOMAIN}")
    ctl(node, "group", "member", "add", f"staff@{DOMAIN}", f"erin@{DOMAIN}")
    ok(j.setacl("Board", f"staff@{DOMAIN}", "lr"))
    e = login(node, "erin")
    ok(e.create(SHARED))
    ok(e.select(q(f"{SHARED}/Board"), readonly=True))
    assert ok(e.myrights(q(f"{SHARED}/Board"))) == [f"{SHARED}/Board lr".encode()]
    # anyone: every account, other domains too; a closer entry wins even with fewer rights
    ok(j.setacl("Board", "anyone", "lrs"))
    o = login(node, "olaf@other.test")
    ok(o.create(SHARED))
    assert ok(o.myrights(q(f"{SHARED}/Board"))) == [f"{SHARED}/Board lrs".encode()]
    assert ok(e.myrights(q(f"{SHARED}/Board"))) == [f"{SHARED}/Board lr".encode()]
    ctl(node, "folder", "acl", JOHN, "Board", DOMAIN, "l")  # the domain entry, by floectl
    f = login(node, "fred")
    ok(f.create(SHARED))
    assert ok(f.myrights(q(f"{SHARED}/Board"))) == [f"{SHARED}/Board l".encode()]
    out = ctl(node, "folder", "acl", JOHN, "Board")
    assert re.search(r"domain\s+example.test\s+l\b", out) and re.search(r"anyone\s+anyone\s+lrs", out)
    for m in (e, f, j, o):
        m.logout()


def test_quota_of_the_owner(node):
    j = login(node, "john")
    ok(j.create("Drop"))
    ok(j.setacl("Drop", f"bob@{DOMAIN}", "lri"))
    ctl(node, "quota", "set", "account", JOHN, "--bytes", "10M", "--messages", "100")
    b = login(node, "bob")
    ok(b.create(SHARED))
    drop = q(f"{SHARED}/Drop")
    typ, data = b.getquotaroot(drop)
    assert typ == "OK"
    assert data[0] == [f'{SHARED}/Drop "john@{DOMAIN}"'.encode()], data
    used = int(re.search(rb"MESSAGE (\d+) 100", data[1][0]).group(1))
    ok(b.append(drop, None, None, message("dropped")))
    typ, data = b.getquota(q(JOHN))
    assert typ == "OK" and f"MESSAGE {used + 1} 100".encode() in data[0], data
    no(b.getquota(q(f"carol@{DOMAIN}")), "[NONEXISTENT]")  # shares nothing with bob
    ctl(node, "quota", "set", "account", JOHN, "--messages", str(used + 1))
    no(b.append(drop, None, None, message("too many")), "[OVERQUOTA]")
    ctl(node, "quota", "set", "account", JOHN, "--bytes", "unlimited", "--messages", "unlimited")
    for m in (b, j):
        m.logout()


def test_changes_seen_by_the_other_user(node):
    j = login(node, "john")
    ok(j.create("Live"))
    deliver(node, JOHN, "live 1", folder="Live")
    ok(j.setacl("Live", f"dave@{DOMAIN}", "lrsw"))
    d = Raw(node.imap_port)
    d.line()
    assert d.cmd(f'LOGIN dave@{DOMAIN} "{PW}"')[1].startswith(b"r1 OK")
    d.cmd(f'CREATE "{SHARED}"')
    untagged, tagged = d.cmd(f'SELECT "{SHARED}/Live"')
    assert b"OK" in tagged and b"* 1 EXISTS" in untagged
    d.s.sendall(b"i IDLE\r\n")
    assert d.line() == b"+ idling"
    # john's changes reach dave's IDLE (the notification names john's account)
    ok(j.select("Live"))
    ok(j.store("1", "+FLAGS", "(\\Flagged)"))
    d.wait_for(rb"^\* 1 FETCH \(UID 1 FLAGS \(\\Flagged\)\)$")
    ok(j.append("Live", None, None, message("live 2")))
    d.wait_for(rb"^\* 2 EXISTS$")
    d.s.sendall(b"DONE\r\n")
    while not (line := d.line()).startswith(b"i "):
        pass
    assert line == b"i OK IDLE terminated"
    # dave's change reaches john
    untagged, tagged = d.cmd("STORE 2 +FLAGS ($Dave)")
    assert b"OK" in tagged, tagged
    ok(j.noop())
    assert any(b"$Dave" in f for f in j.untagged_responses.pop("FETCH", [])), "no FETCH"
    d.cmd("LOGOUT")
    j.logout()


# ---- public folders ----

def test_public_folders(node):
    group = f"support@{DOMAIN}"
    ctl(node, "group", "add", group, "--deliver", "folder")
    ctl(node, "folder", "create", group, "Tickets")
    ctl(node, "folder", "create", group, "Internal")
    # the domain reads and files tickets; nobody sees Internal
    ctl(node, "folder", "acl", group, "INBOX", DOMAIN, "lrsi")
    ctl(node, "folder", "acl", group, "Tickets", DOMAIN, "lrswite")
    pub = f"Public Folders/{group}"
    # mail to the group lands in its INBOX (deliver = folder), SMTP and floectl alike
    deliver(node, group, "help me")
    a = login(node, "alice")
    listed = names(a)
    # shown without subscribing, and as subscribed (LSUB) for clients that list only those
    assert listed["Public Folders"] == "\\Noselect \\HasChildren"
    assert listed[pub] == "\\Noselect \\HasChildren"
    assert f"{pub}/INBOX" in listed and f"{pub}/Tickets" in listed
    assert f"{pub}/Internal" not in listed
    assert {f"{pub}/INBOX", f"{pub}/Tickets"} <= set(names(a, lsub=True))
    typ, data = a._simple_command("LIST", "(SUBSCRIBED)", '""', q("Public Folders/*"))
    assert typ == "OK"
    subscribed = a.untagged_responses.pop("LIST")
    assert any(f"{pub}/INBOX".encode() in s and b"\\Subscribed" in s for s in subscribed)
    ok(a.subscribe(q(f"{pub}/INBOX")))  # nothing to do either way
    ok(a.unsubscribe(q(f"{pub}/INBOX")))
    assert f"{pub}/INBOX" in names(a, lsub=True)
    no(a.create(q(pub)), "[ALREADYEXISTS]")
    no(a.select(q(f"{pub}/Internal")), "[NONEXISTENT]")
    ok(a.select(q(f"{pub}/INBOX")))
    typ, data = a.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"help me" in data[0][1]
    ok(a.store("1", "+FLAGS", "(\\Flagged)"))  # no "w": silently left alone
    assert a.fetch("1", "(FLAGS)")[1] == [b"1 (FLAGS ())"]
    no(a._simple_command("MOVE", "1", q(f"{pub}/Tickets")), "[NOPERM]")  # no "te" on INBOX
    data = ok(a.copy("1", q(f"{pub}/Tickets")))
    assert b"COPYUID" in data[0]
    ok(a.select(q(f"{pub}/Tickets")))
    ok(a.store("1", "+FLAGS", "(\\Flagged)"))
    assert a.fetch("1", "(FLAGS)")[1] == [b"1 (FLAGS (\\Flagged))"]
    # another user of the domain sees the flag: one folder, one state
    b = login(node, "bob")
    ok(b.select(q(f"{pub}/Tickets"), readonly=True))
    assert b.fetch("1", "(FLAGS)")[1] == [b"1 (FLAGS (\\Flagged))"]
    # outside the domain: no public folders at all
    o = login(node, "olaf@other.test")
    assert not [n for n in names(o) if n.startswith("Public Folders")]
    no(o.select(q(f"{pub}/INBOX")), "[NONEXISTENT]")
    # floectl: the group's folders, and taking the rights back
    out = ctl(node, "folder", "list", group)
    assert re.search(r"^Tickets\s+mail\s", out, re.M) and re.search(r"^INBOX\s+mail\s+inbox", out, re.M)
    ctl(node, "folder", "inherit", group, "Tickets")  # a top-level folder: nobody's then
    assert f"{pub}/Tickets" not in names(b)
    no(b.status(q(f"{pub}/Tickets"), "(MESSAGES)"), "[NONEXISTENT]")
    for m in (a, b, o):
        m.logout()


# ---- other prefixes ----

def test_configured_prefixes(node_factory, tmp_path):
    from floe_harness import render_config, run_floed
    # prefixes are checked when the configuration is loaded
    for bad in ({"shared_prefix": "/x"}, {"public_prefix": "a%"},
                {"shared_prefix": "Pub/", "public_prefix": "Pub/lic/"}):
        cfg = tmp_path / "bad.conf"
        cfg.write_text(render_config({"node": {"id": "x", "state_dir": str(tmp_path / "s")},
                                      "service imap": bad}))
        r = run_floed(["--check-config", "--config", str(cfg)])
        assert r.returncode != 0 and "prefix" in (r.stdout + r.stderr), (bad, r.stdout, r.stderr)
    name = f"floe_it_imapshared2_{os.getpid()}"
    n = node_factory({"service imap": {"shared_prefix": "Shared/", "public_prefix": "Public/"}},
                     database=fresh_database(name))
    ctl(n, "domain", "add", DOMAIN)
    for u in ("john", "alice"):
        ctl(n, "account", "add", f"{u}@{DOMAIN}", "--password", PW)
    j = login(n, "john")
    ok(j.create("Events"))
    ok(j.setacl("Events", f"alice@{DOMAIN}", "lr"))
    a = login(n, "alice")
    assert ok(a.namespace()) == [b'(("" "/")) (("Shared/" "/")) (("Public/" "/"))']
    ok(a.create(f"Shared/john@{DOMAIN}"))
    listed = names(a)
    assert listed["Shared"] == "\\Noselect \\HasChildren"
    assert listed[f"Shared/john@{DOMAIN}"] == "\\Noselect \\HasChildren"
    assert f"Shared/john@{DOMAIN}/Events" in listed
    ok(a.select(f"Shared/john@{DOMAIN}/Events", readonly=True))
    # "~" is an ordinary personal name now
    ok(a.create("~mine"))
    assert "~mine" in names(a)
    for m in (a, j):
        m.logout()
    n.stop()
    subprocess.run(["psql", pg_url(), "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
                   capture_output=True)
