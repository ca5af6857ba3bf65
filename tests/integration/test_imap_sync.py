"""Synchronising clients against the IMAP service: offlineimap (offlineimap3) and mbsync (isync)
doing real two-way syncs with changes on both sides and changes made meanwhile by another
client, and a raw-socket CONDSTORE/QRESYNC client (RFC 7162) that reconnects after another
client flagged, expunged and appended, and checks that VANISHED (EARLIER) and the FETCH FLAGS
MODSEQ responses are exactly those changes, in one of its own folders and in a folder another
user shares with it (whose modseqs are the owner's).

The node is the ASan build when FLOE_BUILD points at one; stopping it fails the test on any
sanitizer report."""
import imaplib
import itertools
import os
import re
import shutil
import socket
import subprocess

import pytest

from floe_harness import FLOECTL, SANITIZER_MARKERS, fresh_database, pg_url

PW = "sync secret pw"
DOMAIN = "example.test"
_n = itertools.count(1)


def ctl(node, *args, input=None):
    r = subprocess.run([FLOECTL, "--config", str(node.config)] + list(args), capture_output=True,
                       input=input, timeout=60)
    err = r.stderr.decode(errors="replace")
    for marker in SANITIZER_MARKERS:
        assert marker not in err, f"sanitizer report from floectl {args}:\n{err}"
    assert r.returncode == 0, f"floectl {args}: {r.returncode}\n{err}"
    return r.stdout.decode()


def message(subject):
    n = next(_n)
    return (f"From: Bob <bob@{DOMAIN}>\r\nTo: someone@{DOMAIN}\r\nSubject: {subject}\r\n"
            f"Date: Sat, 21 Nov 2026 10:00:00 +0000\r\nMessage-ID: <sync{n}@{DOMAIN}>\r\n\r\n"
            f"body of {subject}\r\n").encode()


def deliver(node, user, subject, folder):
    return int(ctl(node, "mail", "deliver", f"{user}@{DOMAIN}", "--folder", folder,
                   input=message(subject)))


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    from conftest import Node
    name = f"floe_it_imapsync_{os.getpid()}"
    n = Node(tmp_path_factory.mktemp("imapsync"), {}, database=fresh_database(name))
    n.start()
    ctl(n, "domain", "add", DOMAIN)
    for u in ("otto", "mona", "quin", "rhea", "sam"):
        ctl(n, "account", "add", f"{u}@{DOMAIN}", "--password", PW)
    yield n
    n.stop()
    subprocess.run(["psql", pg_url(), "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
                   capture_output=True)


def login(node, user):
    m = imaplib.IMAP4("127.0.0.1", node.imap_port, timeout=15)
    m.login(f"{user}@{DOMAIN}", PW)
    return m


def server_state(m, folder):
    """{subject: set of flags} of a folder, read with imaplib."""
    typ, _ = m.select(folder)
    assert typ == "OK"
    typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    out = {}
    for item in data:
        if isinstance(item, tuple):
            subject = re.search(rb"Subject: ([^\r\n]*)", item[1]).group(1).decode()
            flags = re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).decode().split()
            out[subject] = set(flags)
    return out


def maildir_state(path):
    """{subject: maildir flag letters} of a maildir folder."""
    out = {}
    for sub in ("cur", "new"):
        d = path / sub
        if not d.exists():
            continue
        for f in d.iterdir():
            subject = re.search(rb"Subject: ([^\r\n]*)", f.read_bytes()).group(1).decode()
            info = f.name.split(":2,")[1] if ":2," in f.name else ""
            out[subject] = info
    return out


def find(path, subject):
    for sub in ("cur", "new"):
        for f in (path / sub).iterdir():
            if f"Subject: {subject}\r\n".encode() in f.read_bytes() or \
               f"Subject: {subject}\n".encode() in f.read_bytes():
                return f
    raise AssertionError(f"{subject} not in {path}")


def set_maildir_flags(f, letters):
    base = f.name.split(":2,")[0]
    f.rename(f.parent.parent / "cur" / f"{base}:2,{letters}")


# ---- offlineimap ----

@pytest.mark.skipif(not shutil.which("offlineimap"), reason="offlineimap (offlineimap3) missing")
def test_offlineimap_two_way(node, tmp_path):
    user = "otto"
    m = login(node, user)
    assert m.create("Sync")[0] == "OK"
    for i in range(4):
        deliver(node, user, f"message {i}", "Sync")
    local = tmp_path / "mail"
    rc = tmp_path / "offlineimaprc"
    rc.write_text(f"""[general]
accounts = floe
metadata = {tmp_path}/meta
ui = quiet

[Account floe]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {local}

[Repository remote]
type = IMAP
remotehost = 127.0.0.1
remoteport = {node.imap_port}
remoteuser = {user}@{DOMAIN}
remotepass = {PW}
ssl = no
starttls = no
folderfilter = lambda name: name == 'Sync'
""")

    def run():
        p = subprocess.run(["offlineimap", "-c", str(rc), "-o", "-u", "quiet"],
                           capture_output=True, timeout=120)
        out = p.stdout.decode() + p.stderr.decode()
        assert p.returncode == 0 and "ERROR" not in out, out

    run()
    d = local / "Sync"
    assert set(maildir_state(d)) == {f"message {i}" for i in range(4)}
    # changes on both sides: read, flagged and deleted locally, a new local message ...
    set_maildir_flags(find(d, "message 0"), "S")
    set_maildir_flags(find(d, "message 1"), "F")
    find(d, "message 2").unlink()
    (d / "new" / "1700000000.local.host").write_bytes(message("written locally"))
    # ... and on the server by another client: flagged, answered, expunged, appended
    assert m.select("Sync")[0] == "OK"
    m.store("4", "+FLAGS", "(\\Flagged)")  # message 3
    m.store("2", "+FLAGS", "(\\Answered)")  # message 1 (also flagged locally)
    deliver(node, user, "arrived on the server", "Sync")
    run()
    server = server_state(m, "Sync")
    assert server == {
        "message 0": {"\\Seen"},
        "message 1": {"\\Answered", "\\Flagged"},
        "message 3": {"\\Flagged"},
        "written locally": set(),
        "arrived on the server": set(),
    }, server
    local_state = maildir_state(d)
    assert local_state == {"message 0": "S", "message 1": "FR", "message 3": "F",
                           "written locally": "", "arrived on the server": ""}, local_state
    # another client again: expunges one, un-flags one; then a sync that only pulls
    m.store("1", "+FLAGS", "(\\Deleted)")  # message 0
    m.expunge()
    m.store("2", "-FLAGS", "(\\Flagged)")  # message 1 (now number 1 after the expunge: 1 is msg 1)
    run()
    server = server_state(m, "Sync")
    assert maildir_state(d) == {s: "".join(sorted({"\\Seen": "S", "\\Flagged": "F",
                                                    "\\Answered": "R"}[f] for f in fl))
                                for s, fl in server.items()}, (maildir_state(d), server)
    assert "message 0" not in server
    run()  # a further run changes nothing
    assert server_state(m, "Sync") == server
    m.logout()


# ---- mbsync ----

@pytest.mark.skipif(not shutil.which("mbsync"), reason="mbsync (isync) missing")
def test_mbsync_resync_after_another_client(node, tmp_path):
    user = "mona"
    m = login(node, user)
    assert m.create("Box")[0] == "OK"
    for i in range(4):
        deliver(node, user, f"box {i}", "Box")
    local = tmp_path / "mail"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(f"""IMAPAccount floe
Host 127.0.0.1
Port {node.imap_port}
User {user}@{DOMAIN}
Pass "{PW}"
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account floe

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns Box
Create Both
Expunge Both
SyncState *
""")

    def run():
        p = subprocess.run(["mbsync", "-c", str(rc), "-a"], capture_output=True, timeout=60)
        assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()

    run()
    d = local / "Box"
    assert set(maildir_state(d)) == {f"box {i}" for i in range(4)}
    # another client: flags, expunges, appends
    assert m.select("Box")[0] == "OK"
    m.store("1", "+FLAGS", "(\\Seen \\Flagged)")
    m.store("3", "+FLAGS", "(\\Deleted)")
    m.expunge()
    assert m.append("Box", "(\\Answered)", None, message("appended elsewhere"))[0] == "OK"
    # and a local change at the same time
    set_maildir_flags(find(d, "box 1"), "S")
    run()
    assert maildir_state(d) == {"box 0": "FS", "box 1": "S", "box 3": "",
                                "appended elsewhere": "R"}, maildir_state(d)
    assert server_state(m, "Box") == {"box 0": {"\\Seen", "\\Flagged"}, "box 1": {"\\Seen"},
                                      "box 3": set(), "appended elsewhere": {"\\Answered"}}
    run()
    assert len(maildir_state(d)) == 4
    m.logout()


# ---- a raw CONDSTORE/QRESYNC client ----

class Raw:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.buf = b""
        self.tags = itertools.count(1)
        assert self.line().startswith(b"* OK")

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def cmd(self, text):
        tag = f"q{next(self.tags)}"
        self.s.sendall(f"{tag} {text}\r\n".encode())
        out = []
        while True:
            line = self.line()
            if line.startswith(tag.encode() + b" "):
                assert line.startswith(tag.encode() + b" OK"), (text, line, out)
                return out
            out.append(line)


def fetch_changes(lines):
    """{uid: (flags, modseq)} of the FETCH responses; each must carry UID, FLAGS and MODSEQ."""
    out = {}
    for line in lines:
        mm = re.match(rb"\* \d+ FETCH \((.*)\)$", line)
        if not mm:
            continue
        items = mm.group(1)
        uid = re.search(rb"(?:^| )UID (\d+)", items)
        flags = re.search(rb"FLAGS \(([^)]*)\)", items)
        modseq = re.search(rb"MODSEQ \((\d+)\)", items)
        assert uid and flags and modseq, line
        out[int(uid.group(1))] = (set(flags.group(1).decode().split()), int(modseq.group(1)))
    return out


def code(lines, name):
    for line in lines:
        mm = re.match(rb"\* OK \[" + name.encode() + rb" (\d+)\]", line)
        if mm:
            return int(mm.group(1))
    raise AssertionError(f"no {name} in {lines}")


@pytest.mark.parametrize("shared", [False, True], ids=["own", "shared"])
def test_qresync_resync_after_another_client(node, shared):
    owner, reader = ("quin", "quin") if not shared else ("rhea", "sam")
    folder = "Resync"
    o = login(node, owner)
    assert o.create(folder)[0] == "OK"
    uids = [deliver(node, owner, f"resync {i}", folder) for i in range(6)]
    assert uids == [1, 2, 3, 4, 5, 6]
    name = folder
    if shared:
        assert o.setacl(folder, f"{reader}@{DOMAIN}", "lrswite")[0] == "OK"
        name = f"~{owner}@{DOMAIN}/{folder}"
    # the syncing client: state as of now, then it goes away
    r = Raw(node.imap_port)
    r.cmd(f'LOGIN {reader}@{DOMAIN} "{PW}"')
    if shared:
        r.cmd(f'CREATE "~{owner}@{DOMAIN}"')
    r.cmd("ENABLE QRESYNC")
    lines = r.cmd(f'SELECT "{name}" (CONDSTORE)')
    uidvalidity, h0 = code(lines, "UIDVALIDITY"), code(lines, "HIGHESTMODSEQ")
    assert b"* 6 EXISTS" in lines
    r.s.close()
    # another client (the owner): flags, keyword, expunges, append
    assert o.select(folder)[0] == "OK"
    o.store("2", "+FLAGS", "(\\Flagged)")
    o.store("4", "+FLAGS", "($Label)")
    o.store("3,5", "+FLAGS", "(\\Deleted)")
    o.expunge()
    assert o.append(folder, "(\\Seen)", None, message("resync new"))[0] == "OK"
    # reconnect with what it knew
    r = Raw(node.imap_port)
    r.cmd(f'LOGIN {reader}@{DOMAIN} "{PW}"')
    r.cmd("ENABLE QRESYNC")
    lines = r.cmd(f'SELECT "{name}" (QRESYNC ({uidvalidity} {h0} 1:6))')
    h1 = code(lines, "HIGHESTMODSEQ")
    assert b"* 5 EXISTS" in lines, lines
    vanished = [ln for ln in lines if ln.startswith(b"* VANISHED")]
    assert vanished == [b"* VANISHED (EARLIER) 3,5"], lines
    changes = fetch_changes(lines)
    assert {u: f for u, (f, _) in changes.items()} == {
        2: {"\\Flagged"}, 4: {"$Label"}, 7: {"\\Seen"}}, lines
    assert all(h0 < ms <= h1 for _, ms in changes.values()), (h0, h1, changes)
    # the same question asked again of the selected mailbox: the same answer
    lines = r.cmd(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {h0} VANISHED)")
    assert [ln for ln in lines if ln.startswith(b"* VANISHED")] == [b"* VANISHED (EARLIER) 3,5"]
    assert {u: f for u, (f, _) in fetch_changes(lines).items()} == {
        2: {"\\Flagged"}, 4: {"$Label"}, 7: {"\\Seen"}}
    # nothing changed since h1: nothing reported
    lines = r.cmd(f'SELECT "{name}" (QRESYNC ({uidvalidity} {h1}))')
    assert not [ln for ln in lines if b"VANISHED" in ln or b"FETCH" in ln], lines
    # CONDSTORE alone (no QRESYNC): FETCH CHANGEDSINCE gives the changed messages
    r2 = Raw(node.imap_port)
    r2.cmd(f'LOGIN {reader}@{DOMAIN} "{PW}"')
    r2.cmd(f'SELECT "{name}" (CONDSTORE)')
    lines = r2.cmd(f"FETCH 1:* (UID FLAGS) (CHANGEDSINCE {h0})")
    got = {}
    for ln in lines:
        mm = re.match(rb"\* \d+ FETCH \((.*)\)$", ln)
        uid = int(re.search(rb"UID (\d+)", mm.group(1)).group(1))
        got[uid] = set(re.search(rb"FLAGS \(([^)]*)\)", mm.group(1)).group(1).decode().split())
        assert int(re.search(rb"MODSEQ \((\d+)\)", mm.group(1)).group(1)) > h0
    assert got == {2: {"\\Flagged"}, 4: {"$Label"}, 7: {"\\Seen"}}, lines
    # a change while selected: the flag change arrives with its MODSEQ at the next NOOP
    o.store("1", "+FLAGS", "(\\Answered)")
    lines = r.cmd("NOOP")
    assert [ln for ln in lines if b"FETCH" in ln] and \
        re.match(rb"\* 1 FETCH \(UID 1 FLAGS \(\\Answered\) MODSEQ \((\d+)\)\)$",
                 [ln for ln in lines if b"FETCH" in ln][0]), lines
    r.s.close()
    r2.s.close()
    o.logout()
