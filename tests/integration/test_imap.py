"""The IMAP service with real clients: Python's imaplib for the commands and extensions
Floe advertises (IMAP4rev1/rev2 commands, STARTTLS and implicit TLS, SASL PLAIN, LOGIN and
SCRAM-SHA-256 with SASL-IR, LITERAL+, ENABLE, ID, NAMESPACE, UNSELECT, UIDPLUS, MOVE,
CHILDREN, SPECIAL-USE, CREATE-SPECIAL-USE, LIST-EXTENDED, LIST-STATUS, STATUS=SIZE,
CONDSTORE, QRESYNC, ACL, QUOTA, MULTIAPPEND, APPENDLIMIT, UTF8=ACCEPT, IDLE), COMPRESS=DEFLATE
on a raw socket with zlib, input the server must survive, curl imap:// for FETCH and LIST,
and mbsync (isync) syncing a maildir both ways.

Messages are put in with `floectl mail deliver` (and SMTP where the test is about the bus).
The node is the ASan build when FLOE_BUILD points at one; stopping it fails the test on any
sanitizer report."""
import base64
import email
import email.policy
import hashlib
import hmac
import imaplib
import itertools
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import time
import zlib

import pytest

from floe_harness import FLOECTL, SANITIZER_MARKERS, free_port, fresh_database, pg_url, sql_scalar

_counter = itertools.count()
PW = "imap secret pw"
# commands imaplib does not know by name
for _name in ("ID", "ENABLE", "UNSELECT", "MOVE", "LISTRIGHTS"):
    imaplib.Commands[_name] = ("NONAUTH", "AUTH", "SELECTED")
DOMAIN = "example.test"


# ---- fixtures and helpers ----

def ctl(node, *args, input=None):
    r = subprocess.run([FLOECTL, "--config", str(node.config)] + list(args), capture_output=True,
                       input=input, timeout=60)
    err = r.stderr.decode(errors="replace")
    for marker in SANITIZER_MARKERS:
        assert marker not in err, f"sanitizer report from floectl {args}:\n{err}"
    assert r.returncode == 0, f"floectl {args}: {r.returncode}\n{err}"
    return r.stdout.decode()


def deliver(node, address, message, folder=None):
    args = ["mail", "deliver", address] + (["--folder", folder] if folder else [])
    return int(ctl(node, *args, input=message))


def simple(n, subject=None, body=None):
    subject = subject or f"message {n}"
    body = body or f"line one of {n}\r\nline two of {n}\r\n"
    return (f"From: Bob <bob@{DOMAIN}>\r\nTo: alice@{DOMAIN}\r\nSubject: {subject}\r\n"
            f"Date: Sat, 21 Nov 2026 10:00:0{n % 10} +0000\r\n"
            f"Message-ID: <m{n}@{DOMAIN}>\r\n\r\n{body}").encode()


ATTACHMENT = bytes(range(256)) * 40  # binary, with NUL bytes


def multipart():
    inner = (b"From: Carol <carol@example.org>\r\nSubject: inner\r\n"
             b"Content-Type: text/plain\r\n\r\ninner body\r\n")
    b64 = base64.encodebytes(ATTACHMENT).replace(b"\n", b"\r\n")
    return (b"From: Bob <bob@example.test>\r\nTo: alice@example.test\r\nSubject: parts\r\n"
            b"X-Extra: one\r\nMessage-ID: <parts@example.test>\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"BOUND\"\r\n\r\n"
            b"preamble\r\n--BOUND\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\nH=C3=A9llo w=\r\norld\r\n"
            b"--BOUND\r\nContent-Type: application/octet-stream; name=\"a.bin\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + b64 +
            b"--BOUND\r\nContent-Type: message/rfc822\r\n\r\n" + inner +
            b"--BOUND--\r\n")


@pytest.fixture(scope="module")
def node(tmp_path_factory, request):
    """A floed with IMAP (plain and TLS) on free ports, alice and bob with passwords."""
    from conftest import Node
    certs = request.getfixturevalue("certs")
    name = f"floe_it_imap_{os.getpid()}"
    n = Node(tmp_path_factory.mktemp("imap"), {
        "certificate exact": {"file": certs / "exact.all.pem"},
        "tls": {"default": "exact"},
        "service imap": {"append_limit": "20M", "idle_poll_interval": "1"},
    }, database=fresh_database(name))
    n.start()
    ctl(n, "domain", "add", DOMAIN)
    for u in ("alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank", "ivy", "jack",
              "kate", "leo", "mia", "ned", "olga", "pam", "quinn", "rose"):
        ctl(n, "account", "add", f"{u}@{DOMAIN}", "--password", PW)
    yield n
    n.stop()
    subprocess.run(["psql", pg_url(), "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
                   capture_output=True)


def connect(node, user=None):
    m = imaplib.IMAP4("127.0.0.1", node.imap_port, timeout=15)
    if user:
        m.login(f"{user}@{DOMAIN}", PW)
    return m


class Raw:
    """A line-oriented IMAP conversation on a socket, optionally deflated (COMPRESS)."""

    def __init__(self, port, timeout=15, sock=None):
        self.s = sock or socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.settimeout(timeout)
        self.buf = b""
        self.zin = self.zout = None
        self.tags = itertools.count(1)

    def compress(self):
        self.zin = zlib.decompressobj(-15)
        self.zout = zlib.compressobj(6, zlib.DEFLATED, -15)

    def send(self, data):
        if self.zout:
            data = self.zout.compress(data) + self.zout.flush(zlib.Z_SYNC_FLUSH)
        self.s.sendall(data)

    def _more(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise EOFError(f"connection closed; pending {self.buf[:300]!r}")
        if self.zin:
            chunk = self.zin.decompress(chunk)
        self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self._more()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read(self, n):
        while len(self.buf) < n:
            self._more()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def response(self):
        """One response line with its literals inlined."""
        line = self.line()
        while True:
            m = re.search(rb"~?\{(\d+)\+?\}$", line)
            if not m:
                return line
            line += b"\r\n" + self.read(int(m.group(1))) + self.line()

    def cmd(self, text, tag=None):
        """Sends a command; returns (untagged responses, tagged line)."""
        tag = tag or f"t{next(self.tags)}"
        self.send(f"{tag} {text}\r\n".encode() if isinstance(text, str) else
                  tag.encode() + b" " + text + b"\r\n")
        return self.until(tag)

    def until(self, tag):
        out = []
        while True:
            r = self.response()
            if r.startswith(tag.encode() + b" "):
                return out, r
            out.append(r)

    def closed(self, timeout=5):
        self.s.settimeout(timeout)
        try:
            while True:
                chunk = self.s.recv(65536)
                if not chunk:
                    return True
        except (ConnectionResetError, OSError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.s.close()


def raw_login(node, user):
    r = Raw(node.imap_port)
    assert r.line().startswith(b"* OK [CAPABILITY ")
    _, tagged = r.cmd(f'LOGIN {user}@{DOMAIN} "{PW}"')
    assert b"OK" in tagged, tagged
    return r


def expect_bad(fn):
    """imaplib raises on a BAD reply; returns its text."""
    with pytest.raises(imaplib.IMAP4.error) as e:
        fn()
    assert "BAD" in str(e.value), str(e.value)
    return str(e.value)


def caps_of(line):
    return set(re.search(rb"CAPABILITY ([^\]]*)", line).group(1).decode().split())


# ---- greeting, capabilities, authentication ----

def test_greeting_and_capabilities(node):
    r = Raw(node.imap_port)
    greeting = r.line()
    caps = caps_of(greeting)
    assert greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 ")
    for c in ("STARTTLS", "AUTH=PLAIN", "AUTH=LOGIN", "AUTH=SCRAM-SHA-256", "SASL-IR", "LITERAL+",
              "ID", "ENABLE", "IDLE", "NAMESPACE", "UNSELECT", "UIDPLUS", "MOVE", "CHILDREN",
              "SPECIAL-USE", "CREATE-SPECIAL-USE", "LIST-EXTENDED", "LIST-STATUS", "STATUS=SIZE",
              "CONDSTORE", "QRESYNC", "QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE", "ACL",
              "RIGHTS=kxte", "MULTIAPPEND", "APPENDLIMIT=20971520", "UTF8=ACCEPT"):
        assert c in caps, c
    for c in ("ESEARCH", "SEARCHRES", "SORT", "THREAD=REFERENCES", "THREAD=ORDEREDSUBJECT"):
        assert c in caps, c
    assert "COMPRESS=DEFLATE" not in caps  # only after authentication
    untagged, tagged = r.cmd("CAPABILITY")
    assert untagged[0].startswith(b"* CAPABILITY IMAP4rev1") and tagged == b"t1 OK CAPABILITY completed"
    _, tagged = r.cmd(f'LOGIN alice@{DOMAIN} "{PW}"')
    after = caps_of(tagged)
    assert "COMPRESS=DEFLATE" in after and "STARTTLS" not in after and "AUTH=PLAIN" not in after
    r.cmd("LOGOUT")
    assert r.closed()


def test_login_failures_are_delayed_and_limited(node):
    r = Raw(node.imap_port)
    r.line()
    for i in range(3):
        t0 = time.time()
        untagged, tagged = r.cmd(f'LOGIN alice@{DOMAIN} "wrong {i}"')
        assert time.time() - t0 >= 0.9
        assert tagged.endswith(b"NO [AUTHENTICATIONFAILED] Authentication failed"), tagged
    assert r.line() == b"* BYE Too many failed authentications"
    assert r.closed()
    # unknown user: the same answer
    m = imaplib.IMAP4("127.0.0.1", node.imap_port, timeout=15)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        m.login(f"nobody@{DOMAIN}", PW)
    m.logout()


def test_service_policy_refuses_login(node):
    ctl(node, "policy", "set", "account", f"olga@{DOMAIN}", "imap", "disabled")
    m = imaplib.IMAP4("127.0.0.1", node.imap_port, timeout=15)
    with pytest.raises(imaplib.IMAP4.error):
        m.login(f"olga@{DOMAIN}", PW)
    m.logout()
    ctl(node, "policy", "set", "account", f"olga@{DOMAIN}", "imap", "inherit")
    connect(node, "olga").logout()


def b64(b):
    return base64.b64encode(b).decode()


def test_authenticate_plain_login_and_sasl_ir(node):
    # imaplib: AUTHENTICATE PLAIN with a continuation
    m = imaplib.IMAP4("127.0.0.1", node.imap_port, timeout=15)
    typ, _ = m.authenticate("PLAIN", lambda _: f"\0alice@{DOMAIN}\0{PW}".encode())
    assert typ == "OK" and m.state == "AUTH"
    m.logout()
    r = Raw(node.imap_port)
    r.line()
    # SASL-IR (RFC 4959): the initial response on the command line
    _, tagged = r.cmd("AUTHENTICATE PLAIN " + b64(f"\0alice@{DOMAIN}\0{PW}".encode()))
    assert tagged.startswith(b"t1 OK [CAPABILITY "), tagged
    r.close()
    # LOGIN: two challenges
    r = Raw(node.imap_port)
    r.line()
    r.send(b"a AUTHENTICATE LOGIN\r\n")
    assert r.line() == b"+ " + b64(b"Username:").encode()
    r.send(b64(f"alice@{DOMAIN}".encode()).encode() + b"\r\n")
    assert r.line() == b"+ " + b64(b"Password:").encode()
    r.send(b64(PW.encode()).encode() + b"\r\n")
    assert r.line().startswith(b"a OK [CAPABILITY ")
    r.close()
    # cancelled with "*"
    r = Raw(node.imap_port)
    r.line()
    r.send(b"b AUTHENTICATE PLAIN\r\n")
    assert r.line() == b"+ "
    r.send(b"*\r\n")
    assert r.line() == b"b BAD Authentication cancelled"
    _, tagged = r.cmd("NOOP")
    assert tagged == b"t1 OK NOOP completed"
    _, tagged = r.cmd("AUTHENTICATE CRAM-MD5")
    assert b"NO [CANNOT]" in tagged
    r.close()


def scram(r, user, password):
    nonce = b64(os.urandom(18))
    first_bare = f"n={user},r={nonce}"
    r.send(("s AUTHENTICATE SCRAM-SHA-256 " + b64(("n,," + first_bare).encode()) + "\r\n").encode())
    line = r.line()
    assert line.startswith(b"+ ")
    server_first = base64.b64decode(line[2:]).decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    assert attrs["r"].startswith(nonce)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]),
                                 int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored = hashlib.sha256(client_key).digest()
    final_bare = f"c=biws,r={attrs['r']}"
    auth_msg = f"{first_bare},{server_first},{final_bare}".encode()
    sig = hmac.new(stored, auth_msg, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig))
    r.send((b64(f"{final_bare},p={b64(proof)}".encode()) + "\r\n").encode())
    line = r.line()
    if not line.startswith(b"+ "):
        return line
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    expect = b64(hmac.new(server_key, auth_msg, hashlib.sha256).digest())
    assert base64.b64decode(line[2:]).decode() == f"v={expect}"
    r.send(b"\r\n")
    return r.line()


def test_authenticate_scram_sha_256(node):
    r = Raw(node.imap_port)
    r.line()
    assert scram(r, f"alice@{DOMAIN}", PW).startswith(b"s OK [CAPABILITY ")
    _, tagged = r.cmd("SELECT INBOX")
    assert b"OK [READ-WRITE]" in tagged
    r.close()
    r = Raw(node.imap_port)
    r.line()
    assert scram(r, f"alice@{DOMAIN}", "wrong") == b"s NO [AUTHENTICATIONFAILED] Authentication failed"
    r.close()


@pytest.fixture
def proxied(node_factory, certs):
    """A node whose IMAP clients come through a PROXY header (as from a remote address)."""
    return node_factory({
        "certificate exact": {"file": certs / "exact.all.pem"},
        "tls": {"default": "exact"},
        "service imap": {"proxy_protocol": True, "proxy_from": "127.0.0.1"},
    }, database=fresh_database(f"floe_it_imap_proxy_{os.getpid()}"))


def test_logindisabled_before_starttls(proxied, certs):
    ctl(proxied, "domain", "add", DOMAIN)
    ctl(proxied, "account", "add", f"alice@{DOMAIN}", "--password", PW)
    r = Raw(proxied.imap_port)
    r.send(b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 143\r\n")
    caps = caps_of(r.line())
    assert "LOGINDISABLED" in caps and "STARTTLS" in caps and "AUTH=SCRAM-SHA-256" in caps
    assert "AUTH=PLAIN" not in caps
    _, tagged = r.cmd(f'LOGIN alice@{DOMAIN} "{PW}"')
    assert tagged == b"t1 NO [PRIVACYREQUIRED] LOGIN is disabled without TLS"
    _, tagged = r.cmd("AUTHENTICATE PLAIN")
    assert b"NO [PRIVACYREQUIRED]" in tagged
    # STARTTLS, with a command pipelined after it in clear: dropped (RFC 9051 §6.2.1)
    r.send(b"s STARTTLS\r\nx LOGIN injected command\r\n")
    assert r.line() == b"s OK Begin TLS negotiation now"
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    tls = ctx.wrap_socket(r.s, server_hostname="mail.example.test")
    r2 = Raw(None, sock=tls)
    untagged, tagged = r2.cmd("CAPABILITY")
    caps = set(untagged[0].decode().split()[2:])
    assert "AUTH=PLAIN" in caps and "LOGINDISABLED" not in caps and "STARTTLS" not in caps
    _, tagged = r2.cmd(f'LOGIN alice@{DOMAIN} "{PW}"')
    assert b"OK" in tagged
    r2.cmd("LOGOUT")
    r2.close()
    # SCRAM never sends the password: allowed in clear
    r = Raw(proxied.imap_port)
    r.send(b"PROXY TCP4 203.0.113.9 127.0.0.1 40001 143\r\n")
    r.line()
    assert scram(r, f"alice@{DOMAIN}", PW).startswith(b"s OK")
    r.close()


def test_implicit_tls(node, certs):
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    loose = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    loose.check_hostname = False  # imaplib names the server by its address
    m = imaplib.IMAP4_SSL("127.0.0.1", node.imaps_port, ssl_context=loose, timeout=15)
    assert m.login(f"bob@{DOMAIN}", PW)[0] == "OK" and m.select("INBOX")[0] == "OK"
    m.logout()
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", node.imaps_port), timeout=15),
                           server_hostname="mail.example.test")
    r = Raw(None, sock=sock)
    caps = caps_of(r.line())
    assert "STARTTLS" not in caps and "AUTH=PLAIN" in caps
    _, tagged = r.cmd(f'LOGIN bob@{DOMAIN} "{PW}"')
    assert b"OK" in tagged
    _, tagged = r.cmd("STARTTLS")
    assert tagged.startswith(b"t2 BAD")
    r.cmd("LOGOUT")
    r.close()


# ---- mailboxes ----

def listing(m, *args):
    typ, data = m.list(*args) if args else m.list()
    assert typ == "OK", data
    out = {}
    for d in data:
        if d is None:
            continue
        mt = re.match(rb'\(([^)]*)\) "/" (.*)$', d)
        name = mt.group(2).decode()
        out[name.strip('"')] = set(mt.group(1).decode().split())
    return out


def test_list_special_use_children(node):
    m = connect(node, "carol")
    boxes = listing(m)
    assert boxes["INBOX"] == {"\\HasNoChildren"}
    assert boxes["Sent"] == {"\\HasNoChildren", "\\Sent"}
    assert boxes["Drafts"] == {"\\HasNoChildren", "\\Drafts"}
    assert boxes["Trash"] == {"\\HasNoChildren", "\\Trash"}
    assert boxes["Junk"] == {"\\HasNoChildren", "\\Junk"}
    assert boxes["Archive"] == {"\\HasNoChildren", "\\Archive"}
    assert "Calendar" not in boxes and "Contacts" not in boxes  # mail folders only
    assert m.create("Projects/2026/Q1")[0] == "OK"
    boxes = listing(m)
    assert boxes["Projects"] == {"\\HasChildren"} and boxes["Projects/2026/Q1"] == {"\\HasNoChildren"}
    assert set(listing(m, '""', "Projects/%")) == {"Projects/2026"}
    assert set(listing(m, "Projects/", "*")) == {"Projects/2026", "Projects/2026/Q1"}
    assert set(listing(m, '""', "inbox")) == {"INBOX"}
    typ, data = m.list('""', '""')
    assert data == [b'(\\Noselect) "/" ""']
    # LIST-EXTENDED: selection and return options
    typ, data = m._simple_command("LIST", "(SPECIAL-USE)", '""', "*")
    names = {d.split(b" ")[-1] for d in m.untagged_responses.pop("LIST", [])}
    assert names == {b"Archive", b"Drafts", b"Junk", b"Sent", b"Trash"}
    assert m.subscribe("Projects/2026/Q1")[0] == "OK"
    m._simple_command("LIST", "(SUBSCRIBED RECURSIVEMATCH)", '""', "%")
    resp = m.untagged_responses.pop("LIST", [])
    assert resp == [b'() "/" Projects ("CHILDINFO" ("SUBSCRIBED"))'], resp
    m._simple_command("LIST", '""', "(INBOX Projects/2026/Q1)", "RETURN", "(SUBSCRIBED CHILDREN)")
    resp = sorted(m.untagged_responses.pop("LIST", []))
    assert resp == [b'(\\HasNoChildren \\Subscribed) "/" Projects/2026/Q1',
                    b'(\\HasNoChildren) "/" INBOX'], resp
    # LIST-STATUS
    deliver(node, f"carol@{DOMAIN}", simple(1))
    typ, data = m._simple_command("LIST", '""', "INBOX", "RETURN", "(STATUS (MESSAGES UNSEEN SIZE))")
    assert typ == "OK"
    status = m.untagged_responses.pop("STATUS")
    assert status == [b"INBOX (MESSAGES 1 UNSEEN 1 SIZE %d)" % len(simple(1))], status
    # LSUB
    typ, data = m.lsub()
    assert data == [b'() "/" Projects/2026/Q1']
    assert m.unsubscribe("Projects/2026/Q1")[0] == "OK"
    assert m.lsub()[1] == [None]
    with pytest.raises(imaplib.IMAP4.error, match="Invalid LIST options"):
        m._simple_command("LIST", "(BOGUS)", '""', "*")  # unknown selection option
    m.logout()


def test_create_rename_delete(node):
    m = connect(node, "dave")
    assert m.create("A/B")[0] == "OK"
    typ, data = m.create("A/B")
    assert typ == "NO" and b"[ALREADYEXISTS]" in data[0]
    typ, data = m.create("INBOX")
    assert typ == "NO"
    # RFC 9051 §6.3.4: a mailbox with children is not deleted
    typ, data = m.delete("A")
    assert typ == "NO" and b"[HASCHILDREN]" in data[0]
    assert m.rename("A", "C")[0] == "OK"
    assert {"C", "C/B"} <= set(listing(m))
    typ, data = m.rename("Nope", "Other")
    assert typ == "NO" and b"[NONEXISTENT]" in data[0]
    assert m.delete("C/B")[0] == "OK" and m.delete("C")[0] == "OK"
    assert "C" not in listing(m)
    typ, data = m.delete("INBOX")
    assert typ == "NO"
    # CREATE-SPECIAL-USE: a role that is taken, then a free one
    typ, data = m._simple_command("CREATE", "Sent2", "(USE (\\Sent))")
    assert typ == "NO" and b"[USEATTR]" in data[0]
    typ, data = m._simple_command("CREATE", "Odd", "(USE (\\Flagged))")
    assert typ == "NO" and b"[USEATTR]" in data[0]
    assert m.delete("Archive")[0] == "OK"
    assert m._simple_command("CREATE", '"Old mail"', "(USE (\\Archive))")[0] == "OK"
    assert listing(m)["Old mail"] == {"\\HasNoChildren", "\\Archive"}
    # RENAME INBOX moves its messages (RFC 3501 §6.3.5)
    deliver(node, f"dave@{DOMAIN}", simple(1))
    deliver(node, f"dave@{DOMAIN}", simple(2))
    assert m.rename("INBOX", "Saved")[0] == "OK"
    assert m.status("INBOX", "(MESSAGES)")[1] == [b"INBOX (MESSAGES 0)"]
    assert m.status("Saved", "(MESSAGES)")[1] == [b"Saved (MESSAGES 2)"]
    # deleting the selected mailbox closes it; another session that has it selected is told BYE
    other = connect(node, "dave")
    other.select("Saved")
    m.select("Saved")
    typ, data = m.delete("Saved")
    assert typ == "OK" and m.untagged_responses.pop("CLOSED", None) == [b""]
    typ, data = m.noop()
    assert typ == "OK"
    expect_bad(lambda: m.fetch("1", "FLAGS"))  # no mailbox selected any more
    with pytest.raises(imaplib.IMAP4.abort):
        other.noop()
    m.logout()


def test_modified_utf7_and_utf8_names(node):
    m = connect(node, "erin")
    assert m.create("Entw&APw-rfe")[0] == "OK"  # "Entwürfe" in modified UTF-7
    assert "Entw&APw-rfe" in listing(m)
    assert sql_scalar(node, "SELECT path FROM folders WHERE path LIKE 'Entw%'") == "Entwürfe"
    expect_bad(lambda: m.create("Bad&Jjo"))  # unterminated modified base64
    expect_bad(lambda: m.create("Bad&AGE-"))  # "a" encoded: not the canonical form
    typ, data = m._simple_command("ENABLE", "UTF8=ACCEPT")
    assert m.untagged_responses.pop("ENABLED") == [b"UTF8=ACCEPT"]
    m._simple_command("LIST", '""', "Entw*")
    assert m.untagged_responses.pop("LIST") == ['(\\HasNoChildren) "/" "Entwürfe"'.encode()]
    m.logout()


def test_imap4rev2_select(node):
    deliver(node, f"pam@{DOMAIN}", simple(77))
    r = raw_login(node, "pam")
    untagged, _ = r.cmd("ENABLE IMAP4rev2")
    assert untagged == [b"* ENABLED IMAP4rev2"]
    untagged, tagged = r.cmd("SELECT INBOX")
    assert b"* LIST () \"/\" INBOX" in untagged and not any(b"RECENT" in u for u in untagged)
    assert not any(b"[UNSEEN" in u for u in untagged) and b"OK [READ-WRITE]" in tagged
    untagged, _ = r.cmd('CREATE "Entwürfe"'.encode())  # UTF-8 names after IMAP4rev2
    untagged, tagged = r.cmd('LIST "" "Entw*"'.encode())
    assert untagged == ['* LIST (\\HasNoChildren) "/" "Entwürfe"'.encode()], untagged
    r.close()


def test_status_items(node):
    m = connect(node, "frank")
    for i in range(3):
        deliver(node, f"frank@{DOMAIN}", simple(i))
    m.select("INBOX")
    m.store("1", "+FLAGS", "(\\Deleted \\Seen)")
    typ, data = m.status("INBOX", "(MESSAGES UNSEEN DELETED SIZE UIDNEXT UIDVALIDITY RECENT "
                                  "HIGHESTMODSEQ APPENDLIMIT DELETED-STORAGE)")
    assert typ == "OK", data
    st = data[0].decode()
    total = sum(len(simple(i)) for i in range(3))
    assert f"MESSAGES 3 " in st and "UNSEEN 2" in st and "DELETED 1" in st
    assert f"SIZE {total}" in st and "UIDNEXT 4" in st and "RECENT 0" in st
    assert "APPENDLIMIT 20971520" in st and "DELETED-STORAGE 1)" in st
    assert re.search(r"HIGHESTMODSEQ \d+", st)
    typ, data = m.status("Nope", "(MESSAGES)")
    assert typ == "NO" and b"[NONEXISTENT]" in data[0]
    expect_bad(lambda: m.status("INBOX", "(BOGUS)"))
    m.logout()


def test_namespace_id_enable(node):
    m = connect(node, "gina")
    typ, data = m.namespace()
    # personal, other users (test_imap_shared.py) and public namespaces
    assert data == [b'(("" "/")) (("~" "/")) (("Public Folders/" "/"))']
    typ, data = m._simple_command("ID", '("name" "pytest" "version" "1")')
    assert typ == "OK"
    assert m.untagged_responses.pop("ID")[0].startswith(b'("name" "Floe" "version" ')
    typ, _ = m._simple_command("ID", "NIL")
    assert typ == "OK"
    typ, _ = m._simple_command("ENABLE", "CONDSTORE", "X-UNKNOWN")
    assert m.untagged_responses.pop("ENABLED") == [b"CONDSTORE"]
    m.select("INBOX")
    expect_bad(lambda: m._simple_command("ENABLE", "QRESYNC"))  # authenticated state only
    m.logout()


# ---- messages ----

def fetch1(m, items, uid=False, num="1"):
    typ, data = (m.uid("FETCH", num, items) if uid else m.fetch(num, items))
    assert typ == "OK", data
    return data


def test_fetch_every_item(node):
    raw = multipart()
    deliver(node, f"hank@{DOMAIN}", raw)
    deliver(node, f"hank@{DOMAIN}", simple(7))
    m = connect(node, "hank")
    typ, data = m.select("INBOX")
    assert data == [b"2"]
    data = fetch1(m, "(UID FLAGS RFC822.SIZE INTERNALDATE)")
    assert re.match(rb'1 \(UID 1 FLAGS \(\) RFC822.SIZE %d INTERNALDATE "\d\d-\w{3}-\d{4} '
                    rb'\d\d:\d\d:\d\d \+0000"\)' % len(raw), data[0]), data
    data = fetch1(m, "ENVELOPE")
    assert data[0] == (b'1 (ENVELOPE (NIL "parts" (("Bob" NIL "bob" "example.test")) '
                       b'(("Bob" NIL "bob" "example.test")) (("Bob" NIL "bob" "example.test")) '
                       b'((NIL NIL "alice" "example.test")) NIL NIL NIL "<parts@example.test>"))')
    data = fetch1(m, "BODYSTRUCTURE")
    assert data[0].startswith(b'1 (BODYSTRUCTURE (("text" "plain" ("charset" "utf-8") NIL NIL '
                              b'"quoted-printable"'), data
    assert b'"message" "rfc822"' in data[0] and b'"mixed" ("boundary" "BOUND")' in data[0]
    data = fetch1(m, "BODY")
    assert data[0].startswith(b"1 (BODY ((") and b"boundary" not in data[0]
    # whole message, header, text, with PEEK: \Seen untouched
    data = fetch1(m, "(BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT])")
    hdr_end = raw.index(b"\r\n\r\n") + 4
    assert data[0][1] == raw and data[1][1] == raw[:hdr_end] and data[2][1] == raw[hdr_end:]
    assert fetch1(m, "FLAGS")[0] == b"1 (FLAGS ())"
    # sections by part, MIME headers, partials
    data = fetch1(m, "(BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2]<0.20> BODY.PEEK[3] "
                     "BODY.PEEK[3.HEADER] BODY.PEEK[3.TEXT] BODY.PEEK[3.1] BODY.PEEK[9])")
    assert data[0][1] == b"H=C3=A9llo w=\r\norld"
    assert data[1][1] == (b"Content-Type: text/plain; charset=utf-8\r\n"
                          b"Content-Transfer-Encoding: quoted-printable\r\n\r\n")
    assert data[2][0].endswith(b"BODY[2]<0> {20}") and len(data[2][1]) == 20
    assert data[3][1].startswith(b"From: Carol") and data[3][1].endswith(b"inner body")
    assert data[4][1] == b"From: Carol <carol@example.org>\r\nSubject: inner\r\nContent-Type: text/plain\r\n\r\n"
    assert data[5][1] == b"inner body"
    assert data[6][1] == b"inner body"
    assert data[7].endswith(b"BODY[9] NIL)")
    # header fields, chosen and left out
    data = fetch1(m, "(BODY.PEEK[HEADER.FIELDS (Subject X-EXTRA)] BODY.PEEK[HEADER.FIELDS.NOT "
                     "(From To Subject X-Extra Message-ID MIME-Version)])")
    assert data[0][1] == b"Subject: parts\r\nX-Extra: one\r\n\r\n"
    assert data[1][1] == b'Content-Type: multipart/mixed; boundary="BOUND"\r\n\r\n'
    # BINARY: decoded content (RFC 3516)
    data = fetch1(m, "(BINARY.PEEK[2] BINARY.SIZE[2] BINARY.PEEK[1] BINARY.PEEK[2]<100.50>)")
    assert data[0][0].endswith(b"BINARY[2] ~{%d}" % len(ATTACHMENT))
    assert data[0][1] == ATTACHMENT
    assert b"BINARY.SIZE[2] %d" % len(ATTACHMENT) in data[1][0]
    assert data[1][1] == "Héllo world".encode()
    assert data[2][1] == ATTACHMENT[100:150]
    # RFC822 items; RFC822 and BODY[] set \Seen, reported with FLAGS
    data = fetch1(m, "(RFC822.HEADER)")
    assert data[0][1] == raw[:hdr_end]
    data = fetch1(m, "RFC822.TEXT")
    assert data[0][1] == raw[hdr_end:] and b"FLAGS (\\Seen)" in data[1]
    data = fetch1(m, "BODY[]", num="2")
    assert data[0][1] == simple(7) and b"FLAGS (\\Seen)" in data[1]
    data = fetch1(m, "(UID)", uid=True, num="1:*")
    assert data == [b"1 (UID 1)", b"2 (UID 2)"]
    data = fetch1(m, "FAST", num="2")
    assert data[0].startswith(b"2 (FLAGS (\\Seen) INTERNALDATE")
    data = fetch1(m, "FULL", num="2")
    assert b"ENVELOPE" in data[0] and b"BODY (" in data[0]
    for bad in ("(BODY[HEADER.FIELDS])", "(NOPE)", "(BODY[1.X])", "(BINARY[HEADER])",
                "(BODY[]<5>)"):
        expect_bad(lambda: m.fetch("1", bad))
    expect_bad(lambda: m.fetch("3", "FLAGS"))  # beyond the mailbox
    m.logout()


def test_fetch_large_message_streams(node):
    """A 12 MB message goes out in bounded pieces while the client reads slowly."""
    big = b"From: a@b\r\nSubject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 12000
    m = connect(node, "ivy")
    assert m.append("INBOX", None, None, big)[0] == "OK"
    m.select("INBOX")
    r = raw_login(node, "ivy")
    r.cmd("SELECT INBOX")
    r.send(b"f1 FETCH 1 (BODY.PEEK[])\r\n")
    time.sleep(1)  # let the server fill its queue and wait for us
    head = r.line()
    assert head == b"* 1 FETCH (BODY[] {%d}" % len(big)
    got = r.read(len(big))
    assert got == big
    assert r.line() == b")"
    assert r.line() == b"f1 OK FETCH completed"
    node.wait_log(r"FETCH waits for the client to read")  # the server held back, not buffered
    # a client that goes away in the middle of the stream
    r.send(b"f2 FETCH 1 (BODY.PEEK[])\r\n")
    r.read(100000)
    r.close()
    m.noop()
    m.logout()


def test_store_flags_and_keywords(node):
    for i in range(4):
        deliver(node, f"jack@{DOMAIN}", simple(i))
    m = connect(node, "jack")
    m.select("INBOX")
    typ, data = m.store("1:2", "+FLAGS", "(\\Flagged $Label1)")
    assert data == [b"1 (FLAGS (\\Flagged $Label1))", b"2 (FLAGS (\\Flagged $Label1))"]
    typ, data = m.store("2", "-FLAGS", "($Label1)")
    assert data == [b"2 (FLAGS (\\Flagged))"]
    typ, data = m.store("3", "FLAGS", "(\\Answered \\Draft)")
    assert data == [b"3 (FLAGS (\\Answered \\Draft))"]
    typ, data = m.store("4", "+FLAGS.SILENT", "(\\Seen)")
    assert typ == "OK" and data == [None]
    typ, data = m.uid("STORE", "4", "-FLAGS", "(\\Seen)")
    assert data == [b"4 (UID 4 FLAGS ())"]
    expect_bad(lambda: m.store("1", "+FLAGS", "(\\Bogus)"))
    expect_bad(lambda: m.store("1", "+FLAGS", "(bad\"keyword)"))
    assert fetch1(m, "FLAGS", num="1:*") == [b"1 (FLAGS (\\Flagged $Label1))", b"2 (FLAGS (\\Flagged))",
                                             b"3 (FLAGS (\\Answered \\Draft))", b"4 (FLAGS ())"]
    # the new keyword shows in FLAGS at the next SELECT
    m.select("INBOX")
    assert m.untagged_responses["FLAGS"][-1] == b"(\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1)"
    # EXAMINE: read-only
    m.select("INBOX", readonly=True)
    typ, data = m.store("1", "+FLAGS", "(\\Seen)")
    assert typ == "NO" and b"READ-ONLY" in data[0]
    fetch1(m, "BODY[]")  # no \Seen in a read-only mailbox
    assert fetch1(m, "FLAGS")[0] == b"1 (FLAGS (\\Flagged $Label1))"
    m.logout()


def test_copy_move_expunge_uidplus(node):
    for i in range(5):
        deliver(node, f"kate@{DOMAIN}", simple(i))
    m = connect(node, "kate")
    m.create("Dest")
    typ, data = m.select("INBOX")
    uidvalidity = int(m.untagged_responses["UIDVALIDITY"][0])
    typ, data = m.copy("1:2", "Dest")
    dest_v = m.status("Dest", "(UIDVALIDITY)")[1][0].split()[-1].rstrip(b")")
    assert data == [b"[COPYUID %s 1:2 1:2] COPY completed" % dest_v]
    m.untagged_responses.pop("COPYUID")  # imaplib keeps the tagged reply's code there too
    typ, data = m.copy("1", "Nope")
    assert typ == "NO" and b"[TRYCREATE]" in data[0]
    # MOVE: COPYUID first, then the expunges
    typ, data = m._simple_command("UID", "MOVE", "3", "Dest")
    assert typ == "OK"
    assert m.untagged_responses.pop("COPYUID") == [b"%s 3 3" % dest_v]
    assert m.untagged_responses.pop("EXPUNGE") == [b"3"]
    # UID EXPUNGE expunges only the named \Deleted messages
    m.store("1:3", "+FLAGS", "(\\Deleted)")  # UIDs 1, 2, 4
    typ, data = m.uid("EXPUNGE", "1")
    assert m.untagged_responses.pop("EXPUNGE") == [b"1"]
    assert m.fetch("1:*", "UID")[1] == [b"1 (UID 2)", b"2 (UID 4)", b"3 (UID 5)"]
    typ, data = m.expunge()
    assert data == [b"1", b"1"], data  # UID 2 (then message 1), UID 4 (then message 1)
    assert m.fetch("1:*", "UID")[1] == [b"1 (UID 5)"]
    # APPENDUID
    typ, data = m.append("Dest", "(\\Seen $X)", '"21-Nov-2026 12:00:00 +0100"', simple(9))
    assert data[0] == b"[APPENDUID %s 4] APPEND completed" % dest_v
    m.select("Dest")
    data = fetch1(m, "(FLAGS INTERNALDATE)", num="4")
    assert data == [b'4 (FLAGS (\\Seen $X) INTERNALDATE "21-Nov-2026 11:00:00 +0000")']
    # CLOSE expunges silently; UNSELECT does not
    m.store("1", "+FLAGS", "(\\Deleted)")
    typ, data = m.unselect()
    assert typ == "OK" and m.state == "AUTH"
    m.select("Dest")
    assert m.untagged_responses["EXISTS"][-1] == b"4"
    typ, data = m.close()
    assert typ == "OK" and "EXPUNGE" not in m.untagged_responses
    typ, data = m.select("Dest")
    assert data == [b"3"]
    typ, data = m.fetch("1", "FLAGS")
    assert typ == "OK"
    assert uidvalidity
    m.logout()


def test_multiappend_literal_plus_and_limits(node):
    r = raw_login(node, "leo")
    msg1, msg2 = simple(1), simple(2, body="second\r\n")
    # LITERAL+ (RFC 7888) and MULTIAPPEND (RFC 3502) in one command, no continuation
    r.send(b"a1 APPEND INBOX (\\Flagged) {%d+}\r\n%s (\\Seen) {%d+}\r\n%s\r\n"
           % (len(msg1), msg1, len(msg2), msg2))
    untagged, tagged = r.until("a1")
    assert re.match(rb"a1 OK \[APPENDUID \d+ 1:2\] APPEND completed", tagged), tagged
    # a synchronizing literal gets a continuation
    r.send(b"a2 APPEND INBOX {%d}\r\n" % len(msg1))
    assert r.line().startswith(b"+ ")
    r.send(msg1 + b"\r\n")
    _, tagged = r.until("a2")
    assert b"[APPENDUID" in tagged and b" 3]" in tagged
    # all or nothing: the second message has a bad date, nothing is stored
    r.send(b'a3 APPEND INBOX {%d+}\r\n%s "99-Foo-2026 00:00:00 +0000" {%d+}\r\n%s\r\n'
           % (len(msg1), msg1, len(msg2), msg2))
    _, tagged = r.until("a3")
    assert tagged.startswith(b"a3 BAD")
    r.send(b'a4 APPEND Nope {%d+}\r\n%s\r\n' % (len(msg1), msg1))
    _, tagged = r.until("a4")
    assert b"[TRYCREATE]" in tagged
    untagged, _ = r.cmd("STATUS INBOX (MESSAGES)")
    assert untagged == [b"* STATUS INBOX (MESSAGES 3)"]
    # over APPENDLIMIT: refused before the data, no continuation request
    r.send(b"a5 APPEND INBOX {30000000}\r\n")
    assert r.line() == b"a5 NO [TOOBIG] literal too big"
    # a streamed literal (larger than the reader's buffer) that arrives in pieces
    big = b"Subject: big\r\n\r\n" + b"0123456789abcde\r\n" * 100000
    r.send(b"a6 APPEND INBOX {%d+}\r\n" % len(big))
    for i in range(0, len(big), 100000):
        r.send(big[i:i + 100000])
    r.send(b"\r\n")
    _, tagged = r.until("a6")
    assert b"[APPENDUID" in tagged and b" 4]" in tagged, tagged
    r.cmd("SELECT INBOX")
    r.send(b"f FETCH 4 BODY.PEEK[]\r\n")
    assert r.response() == b"* 4 FETCH (BODY[] {%d}\r\n" % len(big) + big + b")"
    r.close()


def test_condstore_and_qresync(node):
    for i in range(4):
        deliver(node, f"mia@{DOMAIN}", simple(i))
    m = connect(node, "mia")
    typ, data = m._simple_command("ENABLE", "QRESYNC")
    assert m.untagged_responses.pop("ENABLED") == [b"QRESYNC"]
    typ, data = m.select("INBOX")
    highest = int(m.untagged_responses["HIGHESTMODSEQ"][0])
    uidvalidity = int(m.untagged_responses["UIDVALIDITY"][0])
    data = fetch1(m, "(MODSEQ)", num="1:*")
    modseqs = [int(re.search(rb"MODSEQ \((\d+)\)", d).group(1)) for d in data]
    assert max(modseqs) <= highest
    # conditional STORE: fails for a message changed since
    typ, data = m._simple_command("STORE", "1", "(UNCHANGEDSINCE %d)" % modseqs[0], "+FLAGS",
                                  "(\\Flagged)")
    assert typ == "OK"
    assert re.match(rb"1 \(UID 1 FLAGS \(\\Flagged\) MODSEQ \((\d+)\)\)", m.untagged_responses.pop("FETCH")[0])
    typ, data = m._simple_command("STORE", "1:2", "(UNCHANGEDSINCE %d)" % modseqs[1], "+FLAGS",
                                  "(\\Seen)")
    assert typ == "OK" and b"[MODIFIED 1]" in data[0], data
    assert m.untagged_responses.pop("FETCH") == [b"2 (UID 2 FLAGS (\\Seen) MODSEQ (%d))"
                                                  % (modseqs[-1] + 2)]
    # CHANGEDSINCE: only what changed
    typ, data = m._simple_command("FETCH", "1:*", "(FLAGS)", "(CHANGEDSINCE %d)" % highest)
    changed = m.untagged_responses.pop("FETCH")
    assert len(changed) == 2 and all(b"MODSEQ" in c for c in changed), changed
    # another session expunges; QRESYNC reselect reports VANISHED (EARLIER) and the changes
    m2 = connect(node, "mia")
    m2.select("INBOX")
    m2.store("3", "+FLAGS", "(\\Deleted)")
    m2.expunge()
    m2.uid("STORE", "4", "+FLAGS", "($Changed)")
    m2.logout()
    m._simple_command("UNSELECT")
    typ, data = m._simple_command("SELECT", "INBOX", "(QRESYNC (%d %d 1:4))" % (uidvalidity, highest))
    assert typ == "OK", data
    assert m.untagged_responses.pop("VANISHED") == [b"(EARLIER) 3"]
    fetches = m.untagged_responses.pop("FETCH")
    assert any(b"UID 4 FLAGS ($Changed)" in f for f in fetches), fetches
    assert any(b"UID 1 FLAGS (\\Flagged \\Seen)" in f or b"UID 1 FLAGS (\\Flagged)" in f for f in fetches)
    # UID FETCH ... (CHANGEDSINCE n VANISHED)
    typ, data = m._simple_command("UID", "FETCH", "1:*", "(FLAGS)", "(CHANGEDSINCE %d VANISHED)" % highest)
    assert m.untagged_responses.pop("VANISHED") == [b"(EARLIER) 3"]
    # under QRESYNC, expunges are VANISHED
    m.store("1", "+FLAGS", "(\\Deleted)")
    typ, data = m.expunge()
    assert m.untagged_responses.pop("VANISHED") == [b"1"]
    typ, data = m._simple_command("SELECT", "INBOX", "(QRESYNC (%d %d))" % (uidvalidity + 1, highest))
    assert typ == "OK" and "VANISHED" not in m.untagged_responses  # UIDVALIDITY changed: full sync
    expect_bad(lambda: m._simple_command("FETCH", "1", "(FLAGS)", "(CHANGEDSINCE 1 VANISHED)"))
    m.logout()


def wait_for(m_raw, pattern, timeout=10):
    """Reads untagged lines until one matches pattern (IDLE)."""
    deadline = time.time() + timeout
    seen = []
    m_raw.s.settimeout(1)
    while time.time() < deadline:
        try:
            line = m_raw.response()
        except socket.timeout:
            continue
        seen.append(line)
        if re.search(pattern, line):
            m_raw.s.settimeout(15)
            return line
    raise AssertionError(f"no {pattern!r} in {seen}")


def test_idle_reports_changes(node):
    deliver(node, f"ned@{DOMAIN}", simple(1))
    r = raw_login(node, "ned")
    r.cmd("SELECT INBOX")
    r.send(b"i IDLE\r\n")
    assert r.line() == b"+ idling"
    # a delivery meanwhile (floectl: no bus message; the poll finds it)
    deliver(node, f"ned@{DOMAIN}", simple(2))
    wait_for(r, rb"^\* 2 EXISTS$")
    # flags changed and a message expunged by another session
    m = connect(node, "ned")
    m.select("INBOX")
    m.store("1", "+FLAGS", "(\\Flagged)")
    wait_for(r, rb"^\* 1 FETCH \(UID 1 FLAGS \(\\Flagged\)\)$")
    m.store("1", "+FLAGS", "(\\Deleted)")
    m.expunge()
    wait_for(r, rb"^\* 1 EXPUNGE$")
    m.logout()
    r.send(b"DONE\r\n")
    assert r.until("i")[1] == b"i OK IDLE terminated"
    # anything but DONE ends IDLE with BAD
    r.send(b"j IDLE\r\n")
    assert r.line() == b"+ idling"
    r.send(b"NOPE\r\n")
    assert r.until("j")[1] == b"j BAD Expected DONE"
    r.close()


def test_compress_deflate(node):
    deliver(node, f"gina@{DOMAIN}", simple(5))
    r = raw_login(node, "gina")
    _, tagged = r.cmd("COMPRESS DEFLATE")
    assert tagged == b"t2 OK DEFLATE active"
    r.compress()
    untagged, tagged = r.cmd("CAPABILITY")
    assert b"COMPRESS=DEFLATE" not in untagged[0] and tagged == b"t3 OK CAPABILITY completed"
    untagged, tagged = r.cmd("SELECT INBOX")
    assert b"OK [READ-WRITE]" in tagged
    untagged, tagged = r.cmd("FETCH 1 BODY.PEEK[]")
    assert untagged[0].endswith(simple(5) + b")")
    _, tagged = r.cmd("COMPRESS DEFLATE")
    assert b"NO [COMPRESSIONACTIVE]" in tagged
    untagged, tagged = r.cmd("LOGOUT")
    assert untagged == [b"* BYE Logging out"] and tagged == b"t7 OK LOGOUT completed"
    r.close()


def test_acl_commands(node):
    m = connect(node, "olga")
    typ, data = m.myrights("INBOX")
    assert data == [b"INBOX lrswipkxtea"]
    typ, data = m.getacl("INBOX")
    assert data == [b"INBOX olga@example.test lrswipkxtea"]
    assert m.setacl("INBOX", f"bob@{DOMAIN}", "lr")[0] == "OK"
    assert m.setacl("INBOX", f"bob@{DOMAIN}", "+wc")[0] == "OK"  # c: the old create right, k
    assert m.setacl("INBOX", "anyone", "l")[0] == "OK"
    typ, data = m.getacl("INBOX")
    assert data == [b"INBOX olga@example.test lrswipkxtea bob@example.test lrwk anyone l"], data
    assert m.setacl("INBOX", f"bob@{DOMAIN}", "-r")[0] == "OK"
    assert m.getacl("INBOX")[1] == [b"INBOX olga@example.test lrswipkxtea bob@example.test lwk anyone l"]
    assert m.deleteacl("INBOX", f"bob@{DOMAIN}")[0] == "OK"
    assert m.getacl("INBOX")[1] == [b"INBOX olga@example.test lrswipkxtea anyone l"]
    typ, data = m._simple_command("LISTRIGHTS", "INBOX", f"bob@{DOMAIN}")
    assert m.untagged_responses.pop("LISTRIGHTS") == [b'INBOX bob@example.test "" l r s w i p k x t e a']
    typ, data = m._simple_command("LISTRIGHTS", "INBOX", f"olga@{DOMAIN}")
    assert m.untagged_responses.pop("LISTRIGHTS") == [b"INBOX olga@example.test lrswipkxtea"]
    typ, data = m.setacl("INBOX", f"olga@{DOMAIN}", "l")
    assert typ == "NO"
    typ, data = m.setacl("INBOX", f"nobody@{DOMAIN}", "l")
    assert typ == "NO"
    expect_bad(lambda: m.setacl("INBOX", f"bob@{DOMAIN}", "lz"))
    typ, data = m.setacl("INBOX", f"-bob@{DOMAIN}", "l")
    assert typ == "NO"
    m.logout()


def test_quota(node):
    m = connect(node, "bob")
    typ, data = m.getquotaroot("INBOX")
    assert typ == "OK" and m.untagged_responses.get("QUOTA") is None  # unlimited
    ctl(node, "quota", "set", "account", f"bob@{DOMAIN}", "--bytes", "10M", "--messages", "100")
    deliver(node, f"bob@{DOMAIN}", simple(1))
    typ, data = m.getquotaroot("INBOX")
    assert data == [[b'INBOX ""'], [b'"" (STORAGE 1 10240 MESSAGE 1 100)']], data
    typ, data = m.getquota('""')
    assert data == [b'"" (STORAGE 1 10240 MESSAGE 1 100)']
    typ, data = m.getquota("other")
    assert typ == "NO"
    typ, data = m.setquota('""', "(STORAGE 1)")
    assert typ == "NO"
    # over quota: APPEND and COPY say OVERQUOTA
    ctl(node, "quota", "set", "account", f"bob@{DOMAIN}", "--messages", "1")
    typ, data = m.append("INBOX", None, None, simple(2))
    assert typ == "NO" and b"[OVERQUOTA]" in data[0]
    m.logout()


# ---- bad input ----

def test_bad_input_and_wrong_states(node):
    r = Raw(node.imap_port)
    r.line()
    for cmd, expect in ((b"SELECT INBOX", b"BAD Log in first"),
                        (b"FETCH 1 FLAGS", b"BAD Log in first"),
                        (b"FROB", b"BAD Unknown command"),
                        (b"LOGIN", b"BAD Syntax: LOGIN user password")):
        _, tagged = r.cmd(cmd)
        assert tagged.endswith(expect), (cmd, tagged)
    r.send(b"\r\n")  # an empty line
    assert r.line().startswith(b"* BAD")
    _, tagged = r.cmd(f'LOGIN alice@{DOMAIN} "{PW}"')
    _, tagged = r.cmd("FETCH 1 FLAGS")
    assert tagged.endswith(b"BAD No mailbox selected")
    _, tagged = r.cmd("SELECT INBOX")
    # deep parentheses
    _, tagged = r.cmd(b"FETCH 1 " + b"(" * 200 + b"FLAGS" + b")" * 200)
    assert b" BAD " in tagged
    # a sequence set with too many ranges
    _, tagged = r.cmd(",".join(str(i) for i in range(1, 40000, 2)).join(["FETCH ", " FLAGS"]))
    assert b" BAD " in tagged
    _, tagged = r.cmd("FETCH 0 FLAGS")
    assert b" BAD " in tagged
    # an oversize literal on a command that does not stream: refused, no continuation
    r.send(b"big LOGIN {10000000}\r\n")
    assert r.line() == b"big NO [TOOBIG] literal too big"
    # NUL in a literal
    r.send(b"nul CREATE {3+}\r\na\0b\r\n")
    assert r.line().startswith(b"nul BAD")
    # a line longer than the reader takes
    r.send(b"long NOOP " + b"x" * 70000 + b"\r\n")
    assert b"BAD" in r.line()
    # SEARCH, SORT, THREAD with broken criteria
    for cmd in ("SEARCH FROBNICATE", "UID SEARCH (ALL", "SORT DATE UTF-8 ALL",
                "THREAD WHATEVER UTF-8 ALL", "SEARCH " + "NOT " * 200 + "ALL"):
        _, tagged = r.cmd(cmd)
        assert b" BAD " in tagged, tagged
    _, tagged = r.cmd("SEARCH CHARSET KOI8-R ALL")
    assert b"NO [BADCHARSET" in tagged
    _, tagged = r.cmd("NOOP")
    assert tagged.endswith(b"OK NOOP completed")
    r.close()
    # a non-synchronizing literal too big to skip: the session ends
    r = raw_login(node, "alice")
    r.send(b"x CREATE {99999999+}\r\n" + b"y" * 1000)
    lines = []
    try:
        while True:
            lines.append(r.line())
    except (EOFError, OSError):
        pass
    assert any(b"BYE" in ln for ln in lines), lines
    # many errors end the session
    r = raw_login(node, "alice")
    r.send(b"".join(b"e%d FROB\r\n" % i for i in range(25)))
    lines = []
    try:
        while True:
            lines.append(r.line())
    except (EOFError, OSError):
        pass
    assert len(lines) == 21 and lines[-1] == b"* BYE Too many invalid commands", lines
    # garbage
    r = Raw(node.imap_port)
    r.line()
    r.send(bytes(range(256)) * 10 + b"\r\n")
    r.send(b"z NOOP\r\n")
    assert r.until("z")[1] == b"z OK NOOP completed"
    r.close()
    # an unterminated literal, then the client goes away
    r = raw_login(node, "alice")
    r.send(b"u APPEND INBOX {100+}\r\nonly part")
    r.close()


# ---- across nodes, and the bus ----

def test_changes_through_another_node(node, node_factory):
    """Two nodes on one database: what one does the other's sessions see."""
    other = node_factory(database=node.sections["database"]["url"], node_id="it2")
    deliver(node, f"carol@{DOMAIN}", simple(3), folder=None)
    a = connect(node, "carol")
    b = imaplib.IMAP4("127.0.0.1", other.imap_port, timeout=15)
    b.login(f"carol@{DOMAIN}", PW)
    a.select("INBOX")
    b.select("INBOX")
    n = int(a.untagged_responses["EXISTS"][-1])
    a.store(str(n), "+FLAGS", "(\\Answered)")
    typ, _ = b.noop()
    assert b.untagged_responses.pop("FETCH") == [b"%d (UID %d FLAGS (\\Answered))" % (n, n)]
    b.append("INBOX", None, None, simple(4))
    a.noop()
    assert a.untagged_responses.pop("EXISTS")[-1] == b"%d" % (n + 1)
    a.logout()
    b.logout()


@pytest.mark.skipif(not os.environ.get("FLOE_TEST_REDIS"), reason="needs ops/test's Redis")
def test_idle_woken_by_the_bus(node_factory):
    """With Redis, a delivery over SMTP wakes IDLE at once, though polling is rare."""
    n = node_factory({"redis": {"url": os.environ["FLOE_TEST_REDIS"]},
                      "service imap": {"idle_poll_interval": "3600"}},
                     database=fresh_database(f"floe_it_imap_bus_{os.getpid()}"))
    ctl(n, "domain", "add", DOMAIN)
    ctl(n, "account", "add", f"alice@{DOMAIN}", "--password", PW)
    time.sleep(1.5)  # the bus connects
    r = raw_login(n, "alice")
    r.cmd("SELECT INBOX")
    r.send(b"i IDLE\r\n")
    assert r.line() == b"+ idling"
    time.sleep(0.5)
    with smtplib.SMTP("127.0.0.1", n.smtp_port, timeout=10) as s:
        s.sendmail("x@example.org", [f"alice@{DOMAIN}"], simple(1))
    t0 = time.time()
    wait_for(r, rb"^\* 1 EXISTS$", timeout=5)
    assert time.time() - t0 < 5
    r.send(b"DONE\r\n")
    r.until("i")
    r.close()


# ---- other clients ----

def mail(subject, sender, date, body="x", extra=""):
    return (f"From: {sender}\r\nTo: rose@{DOMAIN}\r\nSubject: {subject}\r\nDate: {date}\r\n"
            f"{extra}\r\n{body}\r\n").encode()


def test_search_sort_thread(node):
    u = f"rose@{DOMAIN}"
    deliver(node, u, mail("Lunch plans", "Zed <zed@example.org>", "Mon, 02 Nov 2026 10:00:00 +0000",
                          "pizza or pasta", "Message-ID: <a@x>\r\n"))
    deliver(node, u, mail("Re: Lunch plans", "Amy <amy@example.org>", "Tue, 03 Nov 2026 10:00:00 +0000",
                          "pasta please", "Message-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\nReferences: <a@x>\r\n"))
    deliver(node, u, mail("Quarterly report", "Bob <bob@example.org>", "Sun, 01 Nov 2026 10:00:00 +0000",
                          "numbers " * 500, "X-Priority: 1\r\nMessage-ID: <c@x>\r\n"))
    m = connect(node, "rose")
    m.select("INBOX")
    assert m.search(None, "ALL") == ("OK", [b"1 2 3"])
    assert m.search(None, "SUBJECT", "lunch") == ("OK", [b"1 2"])
    assert m.search(None, "BODY", "pasta") == ("OK", [b"1 2"])
    assert m.search(None, "FROM", "amy") == ("OK", [b"2"])
    assert m.search(None, "LARGER", "2000") == ("OK", [b"3"])
    assert m.search(None, "HEADER", "X-Priority", "1") == ("OK", [b"3"])
    assert m.search(None, "OR", "FROM", "zed", "FROM", "bob") == ("OK", [b"1 3"])
    assert m.search(None, "NOT", "SUBJECT", "lunch") == ("OK", [b"3"])
    assert m.search(None, "SENTBEFORE", "02-Nov-2026") == ("OK", [b"3"])
    m.store("2", "+FLAGS", "\\Seen")
    assert m.search(None, "UNSEEN") == ("OK", [b"1 3"])
    assert m.uid("SEARCH", "SEEN") == ("OK", [b"2"])
    assert m.search("UTF-8", "SUBJECT", "report") == ("OK", [b"3"])
    # SORT (RFC 5256), by sent date, reversed, and by the sender's mailbox
    typ, data = m.sort("(DATE)", "UTF-8", "ALL")
    assert data == [b"3 1 2"]
    typ, data = m.sort("(REVERSE DATE)", "UTF-8", "ALL")
    assert data == [b"2 1 3"]
    typ, data = m.sort("(FROM)", "UTF-8", "ALL")
    assert data == [b"2 3 1"]
    typ, data = m.sort("(SUBJECT)", "UTF-8", "ALL")   # base subjects: "lunch plans" x2, report
    assert data == [b"1 2 3"]
    # THREAD
    typ, data = m.thread("REFERENCES", "UTF-8", "ALL")
    assert data == [b"(3)(1 2)"]
    typ, data = m.thread("ORDEREDSUBJECT", "UTF-8", "ALL")
    assert data == [b"(3)(1 2)"]
    m.logout()
    # ESEARCH and SEARCHRES on a raw connection
    r = raw_login(node, "rose")
    r.cmd("SELECT INBOX")
    untagged, tagged = r.cmd("SEARCH RETURN (MIN MAX COUNT) SUBJECT lunch", tag="es")
    assert untagged == [b'* ESEARCH (TAG "es") MIN 1 MAX 2 COUNT 2'], untagged
    untagged, tagged = r.cmd("UID SEARCH RETURN (SAVE) FROM bob")
    assert untagged == [] and tagged.endswith(b"OK SEARCH completed")
    untagged, _ = r.cmd("FETCH $ (UID)")
    assert untagged == [b"* 3 FETCH (UID 3)"], untagged
    untagged, _ = r.cmd("SEARCH $")
    assert untagged == [b"* SEARCH 3"]
    # CONDSTORE: MODSEQ search reports the highest modseq
    untagged, _ = r.cmd("SEARCH MODSEQ 1")
    assert re.match(rb"\* SEARCH 1 2 3 \(MODSEQ \d+\)", untagged[0]), untagged
    r.cmd("LOGOUT")


def test_curl_fetch_and_list(node):
    deliver(node, f"erin@{DOMAIN}", simple(42))
    base = f"imap://127.0.0.1:{node.imap_port}"
    user = ["--user", f"erin@{DOMAIN}:{PW}"]
    r = subprocess.run(["curl", "-sS", "--max-time", "20"] + user + [f"{base}/"],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert b'* LIST (\\HasNoChildren) "/" INBOX' in r.stdout
    r = subprocess.run(["curl", "-sS", "--max-time", "20"] + user + [f"{base}/INBOX;UID=1"],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == simple(42)


def maildir_messages(path):
    out = {}
    for sub in ("cur", "new"):
        d = path / sub
        if d.exists():
            for f in d.iterdir():
                out[f.name] = f.read_bytes()
    return out


@pytest.mark.skipif(not shutil.which("mbsync"), reason="mbsync (isync) not installed")
def test_mbsync_two_way(node, tmp_path):
    user = f"dave@{DOMAIN}"
    m = connect(node, "dave")
    m.create("Sync")
    for i in range(3):
        deliver(node, user, simple(100 + i), folder="Sync")
    local = tmp_path / "mail"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(f"""IMAPAccount floe
Host 127.0.0.1
Port {node.imap_port}
User {user}
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
Patterns Sync
Create Both
Expunge Both
SyncState *
""")

    def run():
        p = subprocess.run(["mbsync", "-c", str(rc), "-a"], capture_output=True, timeout=60)
        assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()

    run()
    msgs = maildir_messages(local / "Sync")
    assert len(msgs) == 3
    # changes on both sides
    names = sorted(msgs)
    d = local / "Sync"
    first = next(d.glob(f"*/{names[0]}"))
    first.rename(first.parent.parent / "cur" / (first.name.split(":")[0] + ":2,S"))  # read locally
    next(d.glob(f"*/{names[1]}")).unlink()  # deleted locally
    (d / "new" / "local.1:2,").write_bytes(simple(200))  # written locally
    m.select("Sync")
    m.store("3", "+FLAGS", "(\\Flagged)")  # flagged on the server
    deliver(node, user, simple(300), folder="Sync")  # arrived on the server
    run()
    m.select("Sync")
    typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    server = {}
    for item in data:
        if isinstance(item, tuple):
            subj = item[1].decode().strip()
            server[subj] = item[0]
    assert set(server) == {"Subject: message 100", "Subject: message 102",
                           "Subject: message 200", "Subject: message 300"}, server
    assert b"\\Seen" in server["Subject: message 100"]
    local_msgs = maildir_messages(local / "Sync")
    subjects = {re.search(rb"Subject: ([^\r\n]*)", v).group(1): k for k, v in local_msgs.items()}
    assert set(subjects) == {b"message 100", b"message 102", b"message 200", b"message 300"}
    assert "F" in subjects[b"message 102"].split(",")[-1]
    run()  # a third run changes nothing
    assert len(maildir_messages(local / "Sync")) == 4
    m.logout()
