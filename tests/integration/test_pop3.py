"""The POP3 service with real clients: Python's poplib for every command (STLS,
implicit TLS, TOP, UIDL, DELE+QUIT, DELE+drop, RSET), SASL PLAIN, LOGIN and
SCRAM-SHA-256 spoken on a raw socket, the cluster-wide [IN-USE] maildrop lock,
failed-login delays, plaintext refusal for remote clients without TLS, input
the server must survive, and fetchmail and getmail retrieving into an mbox and
a maildir.

Each test gets its own database (floe_pop3_<pid>_<n>) and floed; messages are
put into mailboxes with `floectl mail deliver`, the administrator's import
command.
"""
import base64
import hashlib
import hmac
import itertools
import json
import mailbox
import os
import pathlib
import poplib
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

import pytest

from floe_harness import FLOECTL, SANITIZER_MARKERS, free_port, fresh_database, pg_url

_counter = itertools.count()
PASSWORD = "alice secret pw"
ALICE = "alice@example.test"


def psql(node, query):
    r = subprocess.run(["psql", node.sections["database"]["url"], "-XqtAc", query],
                       capture_output=True, text=True, check=True)
    return r.stdout.strip()


def ctl(node, *args, input=None):
    r = subprocess.run([FLOECTL, "--config", str(node.config)] + list(args), capture_output=True,
                       input=input, timeout=60)
    err = r.stderr.decode(errors="replace")
    for marker in SANITIZER_MARKERS:
        assert marker not in err, f"sanitizer report from floectl {args}:\n{err}"
    return r


def ctl_ok(node, *args, input=None):
    r = ctl(node, *args, input=input)
    assert r.returncode == 0, f"floectl {args}: {r.returncode}\n{r.stderr.decode()}"
    return r.stdout.decode()


def deliver(node, address, message, folder=None):
    """Stores message (bytes) with floectl mail deliver; returns the new UID."""
    args = ["mail", "deliver", address] + (["--folder", folder] if folder else [])
    return int(ctl_ok(node, *args, input=message))


def message(n, body_lines=3, extra=b""):
    body = b"".join(b"line %d of message %d\r\n" % (i, n) for i in range(body_lines))
    return (b"From: Bob <bob@example.test>\r\nTo: alice@example.test\r\n"
            b"Subject: message %d\r\nMessage-ID: <m%d@example.test>\r\n\r\n" % (n, n)) + body + extra


@pytest.fixture
def pop(node_factory, certs, request):
    """A floed with POP3 on free ports, a fresh database, alice with a password."""
    name = f"floe_pop3_{os.getpid()}_{next(_counter)}"
    db = fresh_database(name)
    port, tls_port = free_port(), free_port()
    extra = getattr(request, "param", {}) or {}
    sections = {
        "service pop3": {"listen": f"127.0.0.1:{port}", "listen_tls": f"127.0.0.1:{tls_port}"},
        "certificate exact": {"file": certs / "exact.all.pem"},
        "tls": {"default": "exact"},
    }
    for k, v in extra.items():
        sections.setdefault(k, {}).update(v)
    n = node_factory(sections, database=db)
    n.pop3_port, n.pop3s_port = port, tls_port
    ctl_ok(n, "domain", "add", "example.test")
    ctl_ok(n, "account", "add", ALICE, "--password", PASSWORD)
    yield n
    subprocess.run(["psql", pg_url(), "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
                   capture_output=True)


def client(node):
    return poplib.POP3("127.0.0.1", node.pop3_port, timeout=10)


def login(node):
    p = client(node)
    p.user(ALICE)
    p.pass_(PASSWORD)
    return p


class Raw:
    """A line-oriented POP3 conversation on a plain socket."""

    def __init__(self, port, timeout=10, sock=None):
        self.s = sock or socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.settimeout(timeout)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed; pending {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def cmd(self, text):
        self.send(text.encode() + b"\r\n")
        return self.line()

    def multiline(self):
        lines = []
        while True:
            ln = self.line()
            if ln == b".":
                return lines
            lines.append(ln[1:] if ln.startswith(b".") else ln)

    def closed(self, timeout=5):
        """True when the server closes the connection (after any pending bytes)."""
        self.s.settimeout(timeout)
        try:
            while True:
                chunk = self.s.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.s.close()


def greet(port):
    r = Raw(port)
    assert r.line().startswith(b"+OK")
    return r


# ---- the basic commands ----

def test_capa_stat_list_retr_top_uidl_noop(pop):
    msgs = [message(1), message(2, body_lines=10), message(3, extra=b".dot line\r\n..two\r\n")]
    uids = [deliver(pop, ALICE, m) for m in msgs]
    assert uids == sorted(uids) and len(set(uids)) == 3
    p = client(pop)
    assert p.getwelcome().startswith(b"+OK")
    caps = p.capa()
    for cap in ("TOP", "UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "STLS"):
        assert cap in caps, caps
    assert caps["SASL"] == ["SCRAM-SHA-256", "PLAIN", "LOGIN"]
    assert caps["IMPLEMENTATION"] == ["Floe"]
    assert p.user(ALICE).startswith(b"+OK")
    assert p.pass_(PASSWORD).startswith(b"+OK")
    # after login: no USER/SASL/STLS any more
    caps = p.capa()
    assert "USER" not in caps and "SASL" not in caps and "STLS" not in caps and "TOP" in caps
    total = sum(len(m) for m in msgs)
    assert p.stat() == (3, total)
    resp, listing, _ = p.list()
    assert resp.startswith(b"+OK 3 messages")
    assert listing == [b"%d %d" % (i + 1, len(m)) for i, m in enumerate(msgs)]
    assert p.list(2) == b"+OK 2 %d" % len(msgs[1])
    # RETR: exactly the stored bytes, lines unstuffed by poplib
    for i, m in enumerate(msgs):
        resp, lines, octets = p.retr(i + 1)
        assert resp == b"+OK %d octets" % len(m)
        assert b"\r\n".join(lines) + b"\r\n" == m
    # TOP: the header, the blank line and n body lines
    resp, lines, _ = p.top(2, 2)
    head = msgs[1].split(b"\r\n\r\n")[0].split(b"\r\n")
    assert lines == head + [b"", b"line 0 of message 2", b"line 1 of message 2"]
    resp, lines, _ = p.top(2, 0)
    assert lines == head + [b""]
    # UIDL: UIDVALIDITY.UID, stable and unique
    validity = psql(pop, "SELECT f.uidvalidity FROM folders f JOIN accounts a ON a.id = f.account_id"
                         " WHERE a.local_part = 'alice' AND f.role = 'inbox'")
    resp, ids, _ = p.uidl()
    assert ids == [b"%d %s.%d" % (i + 1, validity.encode(), u) for i, u in enumerate(uids)]
    assert p.uidl(3) == b"+OK 3 %s.%d" % (validity.encode(), uids[2])
    assert p.noop().startswith(b"+OK")
    assert p.quit().startswith(b"+OK")
    # the ids are the same in the next session
    p = login(pop)
    assert p.uidl()[1] == ids
    p.quit()
    pop.wait_log(r"pop3 \[s=\w+\] \[c=127\.0\.0\.1\] login alice@example\.test: 3 messages")


def test_retr_large_message_streams_exactly(pop):
    # 5 MB: many read chunks and several rounds of output backpressure; lines
    # that start with dots, and LF-only input that floectl stores as CRLF.
    line = b"." + b"x" * 70 + b"\n"
    body = line * (5 * 1024 * 1024 // len(line))
    raw = b"From: a@example.test\nSubject: big\n\n" + body
    deliver(pop, ALICE, raw)
    stored = raw.replace(b"\n", b"\r\n")
    p = login(pop)
    assert p.stat() == (1, len(stored))
    # nothing is read for a second: the server fills the socket buffers and
    # its output queue and has to wait for the client (backpressure)
    p._putcmd("RETR 1")
    first = p._getline()[0]
    assert first == b"+OK %d octets" % len(stored)
    time.sleep(1)
    got = []
    while True:
        ln = p._getline()[0]
        if ln == b".":
            break
        got.append(ln[1:] if ln.startswith(b".") else ln)
    assert b"\r\n".join(got) + b"\r\n" == stored
    pop.wait_log(r"message uid 1: waiting for the client to read")
    assert p.noop().startswith(b"+OK")
    p.quit()


def test_dele_applies_only_at_quit(pop):
    for i in range(4):
        deliver(pop, ALICE, message(i))
    p = login(pop)
    assert p.dele(2).startswith(b"+OK")
    assert p.dele(4).startswith(b"+OK")
    # a deleted message may not be referred to, and is not counted
    for call in (lambda: p.retr(2), lambda: p.dele(2), lambda: p.list(4), lambda: p.top(2, 1)):
        with pytest.raises(poplib.error_proto, match="already deleted"):
            call()
    assert p.stat()[0] == 2
    assert [ln.split()[0] for ln in p.list()[1]] == [b"1", b"3"]
    assert [ln.split()[0] for ln in p.uidl()[1]] == [b"1", b"3"]
    # still there for anyone looking at the store
    assert psql(pop, "SELECT count(*) FROM messages") == "4"
    p.retr(1)
    resp = p.quit()
    assert resp == b"+OK Floe POP3 server signing off (2 messages deleted)"
    assert psql(pop, "SELECT count(*) FROM messages") == "2"
    # RETR marked the retrieved message \Seen at QUIT, the other one stays unseen
    seen = psql(pop, "SELECT string_agg(((flags & 1) = 1)::text, ',' ORDER BY uid) FROM messages")
    assert seen == "true,false"
    p = login(pop)
    assert p.stat()[0] == 2
    assert p.retr(2)[1][2] == b"Subject: message 2"
    p.quit()


def test_dele_then_drop_deletes_nothing(pop):
    for i in range(3):
        deliver(pop, ALICE, message(i))
    p = login(pop)
    p.dele(1)
    p.dele(2)
    p.retr(3)
    p.sock.close()  # the connection ends without QUIT
    p = None
    # the lock goes with the connection: a new session gets in at once
    for _ in range(50):
        q = login_or_in_use(pop)
        if q:
            break
        time.sleep(0.1)
    assert q, "the maildrop lock was not released when the connection dropped"
    assert q.stat()[0] == 3
    q.quit()
    assert psql(pop, "SELECT count(*), sum(flags) FROM messages") == "3|0"


def login_or_in_use(node):
    p = client(node)
    p.user(ALICE)
    try:
        p.pass_(PASSWORD)
        return p
    except poplib.error_proto as e:
        assert b"[IN-USE]" in e.args[0], e
        p.close()
        return None


def test_rset_unmarks(pop):
    for i in range(2):
        deliver(pop, ALICE, message(i))
    p = login(pop)
    p.dele(1)
    p.dele(2)
    assert p.stat() == (0, 0)
    assert p.rset().startswith(b"+OK Maildrop has 2 messages")
    assert p.stat()[0] == 2
    assert p.quit().endswith(b"(0 messages deleted)")
    assert psql(pop, "SELECT count(*) FROM messages") == "2"


def test_snapshot_at_login(pop):
    deliver(pop, ALICE, message(1))
    p = login(pop)
    deliver(pop, ALICE, message(2))  # arrives during the session
    assert p.stat()[0] == 1
    p.dele(1)
    p.quit()
    p = login(pop)
    assert p.stat()[0] == 1
    assert p.retr(1)[1][2] == b"Subject: message 2"
    p.quit()


def test_empty_maildrop_and_other_folders(pop):
    deliver(pop, ALICE, message(9), folder="Archive")
    p = login(pop)
    assert p.stat() == (0, 0)
    assert p.list()[1] == []
    with pytest.raises(poplib.error_proto, match="No such message"):
        p.retr(1)
    p.quit()


# ---- TLS ----

def test_stls_and_implicit_tls(pop, certs):
    deliver(pop, ALICE, message(1))
    p = client(pop)
    p.stls(_ctx_for(certs))
    assert "STLS" not in p.capa()
    p.user(ALICE)
    p.pass_(PASSWORD)
    assert p.stat()[0] == 1
    p.quit()
    s = poplib.POP3_SSL("127.0.0.1", pop.pop3s_port, context=_ctx_for(certs), timeout=10)
    assert "STLS" not in s.capa()
    s.user(ALICE)
    s.pass_(PASSWORD)
    assert s.retr(1)[1][2] == b"Subject: message 1"
    s.quit()


def _ctx_for(certs):
    """Verifies the server against the test CA; the name is the certificate's."""
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    ctx.check_hostname = False  # we connect to 127.0.0.1; the chain is still verified
    return ctx


def test_stls_discards_pipelined_plaintext(pop, certs):
    # RFC 2595 §4 / RFC 3207 §4.2: a command injected behind STLS in the same
    # packet must not run inside the TLS session.
    r = greet(pop.pop3_port)
    r.send(b"STLS\r\nUSER " + ALICE.encode() + b"\r\n")
    assert r.line() == b"+OK Begin TLS negotiation"
    assert r.buf == b""
    tls = _ctx_for(certs).wrap_socket(r.s)
    t = Raw(None, sock=tls)
    assert t.cmd("PASS " + PASSWORD) == b"-ERR USER first"
    assert t.cmd("STLS").startswith(b"-ERR")
    t.cmd("QUIT")
    t.close()


# ---- SASL ----

def b64(data):
    return base64.b64encode(data).decode()


def test_auth_plain_login_cancel(pop):
    deliver(pop, ALICE, message(1))
    # PLAIN with an initial response
    r = greet(pop.pop3_port)
    assert r.cmd("AUTH PLAIN " + b64(b"\0" + ALICE.encode() + b"\0" + PASSWORD.encode())) \
        .startswith(b"+OK Logged in, 1 messages")
    assert r.cmd("STAT").startswith(b"+OK 1 ")
    assert r.cmd("QUIT").startswith(b"+OK")
    r.close()
    # PLAIN without: an empty challenge first
    r = greet(pop.pop3_port)
    assert r.cmd("AUTH PLAIN") == b"+ "
    assert r.cmd(b64(ALICE.encode() + b"\0" + ALICE.encode() + b"\0" + PASSWORD.encode())) \
        .startswith(b"+OK")
    r.cmd("QUIT")
    r.close()
    # LOGIN
    r = greet(pop.pop3_port)
    assert r.cmd("auth login") == b"+ " + b64(b"Username:").encode()
    assert r.cmd(b64(ALICE.encode())) == b"+ " + b64(b"Password:").encode()
    assert r.cmd(b64(PASSWORD.encode())).startswith(b"+OK")
    r.cmd("QUIT")
    r.close()
    # "*" cancels; bad base64 is an error; the session goes on
    r = greet(pop.pop3_port)
    assert r.cmd("AUTH LOGIN") .startswith(b"+ ")
    assert r.cmd("*") == b"-ERR Authentication cancelled"
    assert r.cmd("AUTH PLAIN") == b"+ "
    assert r.cmd("%%%").startswith(b"-ERR Invalid base64")
    assert r.cmd("AUTH CRAM-MD5").startswith(b"-ERR Unsupported")
    assert r.cmd("AUTH") == b"+OK Mechanisms follow"
    assert r.multiline() == [b"SCRAM-SHA-256", b"PLAIN", b"LOGIN"]
    assert r.cmd("NOOP").startswith(b"-ERR")  # not logged in
    r.cmd("QUIT")
    r.close()


def scram_login(r, user, password, expect_ok=True):
    cnonce = b64(os.urandom(18))
    first_bare = f"n={user},r={cnonce}"
    reply = r.cmd("AUTH SCRAM-SHA-256 " + b64(("n,," + first_bare).encode()))
    assert reply.startswith(b"+ "), reply
    server_first = base64.b64decode(reply[2:]).decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    assert attrs["r"].startswith(cnonce)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]),
                                 int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored = hashlib.sha256(client_key).digest()
    final_wo_proof = f"c=biws,r={attrs['r']}"
    auth_msg = f"{first_bare},{server_first},{final_wo_proof}".encode()
    sig = hmac.new(stored, auth_msg, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig))
    reply = r.cmd(b64((final_wo_proof + ",p=" + b64(proof)).encode()))
    if not expect_ok:
        return reply
    assert reply.startswith(b"+ "), reply
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    expect = "v=" + b64(hmac.new(server_key, auth_msg, hashlib.sha256).digest())
    assert base64.b64decode(reply[2:]).decode() == expect
    return r.cmd("")


def test_auth_scram_sha_256(pop):
    deliver(pop, ALICE, message(1))
    r = greet(pop.pop3_port)
    assert scram_login(r, ALICE, PASSWORD).startswith(b"+OK Logged in, 1 messages")
    assert r.cmd("STAT").startswith(b"+OK 1 ")
    r.cmd("QUIT")
    r.close()
    # a wrong password fails at the proof, an unknown user the same way
    for user, pw in ((ALICE, "wrong"), ("nobody@example.test", PASSWORD)):
        r = greet(pop.pop3_port)
        assert scram_login(r, user, pw, expect_ok=False) == b"-ERR [AUTH] Authentication failed"
        r.close()


# ---- failures, policy, locks ----

def test_failed_logins_are_delayed_then_closed(pop):
    r = greet(pop.pop3_port)
    for i in range(3):
        assert r.cmd("USER " + ALICE) == b"+OK Send your password"
        t0 = time.time()
        reply = r.cmd("PASS wrong password")
        assert time.time() - t0 >= 0.9
        assert reply.startswith(b"-ERR [AUTH] Authentication failed")
    assert b"closing" in reply
    assert r.closed()
    pop.wait_log(r"authentication failed for 'alice@example\.test'")
    # unknown users look the same
    r = greet(pop.pop3_port)
    r.cmd("USER nobody@example.test")
    assert r.cmd("PASS x") == b"-ERR [AUTH] Authentication failed"
    r.close()


def test_disabled_account_and_policy(pop):
    ctl_ok(pop, "policy", "set", "account", ALICE, "pop3", "disabled")
    r = greet(pop.pop3_port)
    r.cmd("USER " + ALICE)
    assert r.cmd("PASS " + PASSWORD) == b"-ERR [AUTH] POP3 access is not allowed for this account"
    r.close()
    ctl_ok(pop, "policy", "set", "account", ALICE, "pop3", "inherit")
    ctl_ok(pop, "policy", "set", "domain", "example.test", "pop3", "disabled")
    r = greet(pop.pop3_port)
    assert r.cmd("AUTH PLAIN " + b64(b"\0" + ALICE.encode() + b"\0" + PASSWORD.encode())) \
        .startswith(b"-ERR [AUTH]")
    r.close()
    ctl_ok(pop, "policy", "set", "domain", "example.test", "pop3", "inherit")
    login(pop).quit()
    ctl_ok(pop, "account", "disable", ALICE)
    r = greet(pop.pop3_port)
    r.cmd("USER " + ALICE)
    assert r.cmd("PASS " + PASSWORD) == b"-ERR [AUTH] Authentication failed"
    r.close()


def test_in_use_lock(pop):
    deliver(pop, ALICE, message(1))
    first = login(pop)
    second = client(pop)
    second.user(ALICE)
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        second.pass_(PASSWORD)
    # the lock names this node and session in the database, with a live lease
    row = psql(pop, "SELECT node, expires_at > now() + interval '60 seconds' FROM session_locks")
    assert row == "it1|t"
    # SASL logins are refused the same way
    r = greet(pop.pop3_port)
    assert r.cmd("AUTH PLAIN " + b64(b"\0" + ALICE.encode() + b"\0" + PASSWORD.encode())) \
        .startswith(b"-ERR [IN-USE]")
    r.close()
    first.quit()
    assert psql(pop, "SELECT count(*) FROM session_locks") == "0"
    second = login(pop)
    assert second.stat()[0] == 1
    second.quit()


def test_in_use_across_nodes(pop, node_factory):
    """A second node on the same database sees the first node's lock."""
    port = free_port()
    other = node_factory({"service pop3": {"listen": f"127.0.0.1:{port}", "listen_tls": ""}},
                         database=pop.sections["database"]["url"], node_id="it2")
    deliver(pop, ALICE, message(1))
    first = login(pop)
    p = poplib.POP3("127.0.0.1", port, timeout=10)
    p.user(ALICE)
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        p.pass_(PASSWORD)
    p.close()
    # a node that died holds the lock only until its lease runs out
    psql(pop, "UPDATE session_locks SET expires_at = now() - interval '1 second'")
    p = poplib.POP3("127.0.0.1", port, timeout=10)
    p.user(ALICE)
    assert p.pass_(PASSWORD).startswith(b"+OK")
    assert psql(pop, "SELECT node FROM session_locks") == "it2"
    # the first session lost the maildrop: its QUIT deletes nothing
    assert first.dele(1).startswith(b"+OK")
    with pytest.raises(poplib.error_proto, match=r"lock was lost"):
        first.quit()
    assert psql(pop, "SELECT count(*) FROM messages") == "1"
    # a node that stops gives its sessions' maildrops back
    other.stop()
    assert psql(pop, "SELECT count(*) FROM session_locks") == "0"
    p.close()


@pytest.mark.parametrize("pop", [{"service pop3": {"proxy_protocol": True,
                                                   "proxy_from": "127.0.0.1"}}], indirect=True)
def test_plaintext_refused_for_remote_clients_without_tls(pop, certs):
    r = Raw(pop.pop3_port)
    r.send(b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 110\r\n")
    assert r.line().startswith(b"+OK")
    assert r.cmd("CAPA").startswith(b"+OK")
    caps = r.multiline()
    assert b"USER" not in caps and b"SASL SCRAM-SHA-256" in caps and b"STLS" in caps
    assert r.cmd("USER " + ALICE).startswith(b"-ERR [AUTH] Plaintext authentication requires TLS")
    assert r.cmd("AUTH PLAIN").startswith(b"-ERR [AUTH] Plaintext")
    # SCRAM never sends the password: it works in clear
    assert scram_login(r, ALICE, PASSWORD).startswith(b"+OK")
    r.cmd("QUIT")
    r.close()
    # after STLS the plaintext mechanisms are offered
    r = Raw(pop.pop3_port)
    r.send(b"PROXY TCP4 203.0.113.9 127.0.0.1 40001 110\r\n")
    r.line()
    assert r.cmd("STLS").startswith(b"+OK")
    t = Raw(None, sock=_ctx_for(certs).wrap_socket(r.s))
    t.cmd("CAPA")
    caps = t.multiline()
    assert b"USER" in caps and b"SASL SCRAM-SHA-256 PLAIN LOGIN" in caps
    assert t.cmd("USER " + ALICE).startswith(b"+OK")
    assert t.cmd("PASS " + PASSWORD).startswith(b"+OK")
    t.cmd("QUIT")
    t.close()


# ---- bad input ----

def test_bad_input_is_answered_and_survived(pop):
    deliver(pop, ALICE, message(1))
    r = greet(pop.pop3_port)
    assert r.cmd("HELO there") == b"-ERR Unknown command"
    assert r.cmd("STAT") == b"-ERR Log in first"
    assert r.cmd("PASS nouser") == b"-ERR USER first"
    assert r.cmd("APOP alice 0123456789abcdef") == b"-ERR APOP is not supported"
    r.send(b"X" * 300 + b"\r\n")
    assert r.line() == b"-ERR Line too long"
    r.send(b"USER a\x00b\r\n")
    assert r.line() == b"-ERR Invalid command line"
    assert r.cmd("QUIT").startswith(b"+OK")
    assert r.closed()
    # nine more in the TRANSACTION state, then the session still works
    r = greet(pop.pop3_port)
    r.cmd("USER " + ALICE)
    assert r.cmd("PASS " + PASSWORD).startswith(b"+OK")
    for bad, answer in (("RETR", b"-ERR Syntax: RETR msg"), ("RETR 0", b"-ERR Invalid message number"),
                        ("RETR -1", b"-ERR Invalid message number"),
                        ("RETR 99999999999", b"-ERR Invalid message number"),
                        ("RETR 2", b"-ERR No such message, only 1 messages in maildrop"),
                        ("TOP 1", b"-ERR Syntax: TOP msg n"), ("TOP 1 x", b"-ERR Invalid number of lines"),
                        ("LIST 1 2", b"-ERR Too many arguments"), ("USER x", b"-ERR Not allowed after login"),
                        ("STAT 1", b"-ERR STAT takes no argument")):
        assert r.cmd(bad) == answer, bad
    # the session still works
    assert r.cmd("STAT").startswith(b"+OK 1 ")
    # "no such message" is an answer, not a protocol error
    assert r.cmd("DELE 5").startswith(b"-ERR No such message")
    # the tenth protocol error ends the session
    assert r.cmd("BOGU") == b"-ERR Unknown command (too many errors, closing)"
    assert r.closed()
    # nothing was deleted by any of it, and the lock is gone
    assert psql(pop, "SELECT count(*) FROM messages") == "1"
    for _ in range(50):
        if psql(pop, "SELECT count(*) FROM session_locks") == "0":
            break
        time.sleep(0.1)
    assert psql(pop, "SELECT count(*) FROM session_locks") == "0"


def test_pipelining_answers_in_order(pop):
    msgs = [message(i) for i in range(3)]
    for m in msgs:
        deliver(pop, ALICE, m)
    r = greet(pop.pop3_port)
    r.send(("USER %s\r\nPASS %s\r\nSTAT\r\nRETR 1\r\nLIST\r\nTOP 3 0\r\nDELE 2\r\nUIDL 2\r\n"
            "NOOP\r\nQUIT\r\n" % (ALICE, PASSWORD)).encode())
    assert r.line() == b"+OK Send your password"
    assert r.line().startswith(b"+OK Logged in")
    assert r.line() == b"+OK 3 %d" % sum(map(len, msgs))
    assert r.line() == b"+OK %d octets" % len(msgs[0])
    assert b"\r\n".join(r.multiline()) + b"\r\n" == msgs[0]
    assert r.line().startswith(b"+OK 3 messages")
    assert len(r.multiline()) == 3
    assert r.line() == b"+OK Top of message follows"
    assert r.multiline()[-1] == b""
    assert r.line() == b"+OK Message 2 deleted"
    assert r.line() == b"-ERR Message 2 already deleted"
    assert r.line() == b"+OK"
    assert r.line() == b"+OK Floe POP3 server signing off (1 messages deleted)"
    assert r.closed()


def test_floectl_mail_deliver(pop):
    assert deliver(pop, ALICE, b"Subject: a\n\nbody\n") == 1
    assert deliver(pop, "ALICE@Example.Test", b"Subject: b\r\n\r\nbody\r\n") == 2
    r = ctl(pop, "--json", "mail", "deliver", ALICE, "--folder", "Archive", input=b"Subject: c\n\nx\n")
    assert r.returncode == 0
    out = json.loads(r.stdout)
    assert out == {"ok": True, "account": ALICE, "folder": "Archive", "uid": 1,
                   "size": len(b"Subject: c\r\n\r\nx\r\n")}
    # stored with CRLF line ends
    size = psql(pop, "SELECT size FROM messages ORDER BY id LIMIT 1")
    assert size == str(len(b"Subject: a\r\n\r\nbody\r\n"))
    r = ctl(pop, "mail", "deliver", "nobody@example.test", input=b"x\n")
    assert r.returncode == 1 and b"unknown address" in r.stderr
    r = ctl(pop, "mail", "deliver", ALICE, "--folder", "No/Such", input=b"x\n")
    assert r.returncode == 1 and b"no folder No/Such" in r.stderr
    r = ctl(pop, "mail", "deliver", ALICE, "--folder", "Calendar", input=b"x\n")
    assert r.returncode == 1 and b"not a mail folder" in r.stderr
    for args in (("mail",), ("mail", "deliver"), ("mail", "deliver", ALICE, "--bogus"),
                 ("mail", "send", ALICE)):
        r = ctl(pop, *args, input=b"")
        assert r.returncode == 2 and b"usage:" in r.stderr
    assert b"mail deliver ADDRESS" in ctl(pop, "--help").stdout


# ---- real mail clients ----

def test_fetchmail_retrieves_into_mbox_and_deletes(pop, certs, tmp_path):
    msgs = [message(1), message(2, extra=b".leading dot\r\n"), message(3, body_lines=2000)]
    for m in msgs:
        deliver(pop, ALICE, m)
    out = tmp_path / "fetched"
    out.mkdir()
    rc = tmp_path / "fetchmailrc"
    # fetchmail does STLS (offered in CAPA) and verifies the chain and name
    # against the test CA; the MDA gets each message on its standard input.
    rc.write_text(
        f"set no syslog\n"
        f"poll mail.example.test via 127.0.0.1 service {pop.pop3_port} proto pop3\n"
        f"  user '{ALICE}' there with password '{PASSWORD}' is 'root' here\n"
        f"  sslcertck sslcertfile '{certs / 'ca.pem'}' sslcommonname 'mail.example.test'\n"
        f"  mda 'cat > {out}/msg.$$'\n")
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    r = subprocess.run(["fetchmail", "-f", str(rc), "--invisible", "--nodetach", "--nosyslog", "-v"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "STLS" in r.stdout + r.stderr
    fetched = sorted((p.read_bytes() for p in out.iterdir()),
                     key=lambda b: re.search(rb"Subject: message (\d+)", b).group(1))
    assert len(fetched) == 3
    for got, m in zip(fetched, msgs):
        assert got == m.replace(b"\r\n", b"\n")  # fetchmail hands LF lines to the MDA
    # without --keep fetchmail deleted what it took
    assert psql(pop, "SELECT count(*) FROM messages") == "0"


@pytest.fixture
def user_dir():
    """A directory an unprivileged user owns (getmail refuses to deliver as
    root), and the command prefix that runs as that user."""
    d = tempfile.mkdtemp(prefix="floe-getmail-")
    prefix = []
    if os.geteuid() == 0:
        os.chmod(d, 0o755)
        shutil.chown(d, "nobody", "nogroup")
        prefix = ["runuser", "-u", "nobody", "--"]
    yield pathlib.Path(d), prefix
    shutil.rmtree(d, ignore_errors=True)


def test_getmail_retrieves_into_maildir(pop, user_dir):
    tmp_path, prefix = user_dir
    msgs = [message(1), message(2, extra=b"..double dot\r\n.\r\n")]
    for m in msgs:
        deliver(pop, ALICE, m)
    maildir = tmp_path / "Maildir"
    rc = tmp_path / "getmailrc"
    rc.write_text(
        "[retriever]\ntype = SimplePOP3Retriever\nserver = 127.0.0.1\n"
        f"port = {pop.pop3_port}\nusername = {ALICE}\npassword = {PASSWORD}\n"
        f"[destination]\ntype = Maildir\npath = {maildir}/\n"
        "[options]\ndelete = true\nread_all = true\nreceived = false\ndelivered_to = false\n"
        "message_log_syslog = false\n")
    getmail = prefix + ["sh", "-c", f"mkdir -p {maildir}/cur {maildir}/new {maildir}/tmp &&"
                        f" getmail --getmaildir {tmp_path} --rcfile {rc}"]
    r = subprocess.run(getmail, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    got = sorted(mailbox.Maildir(str(maildir), factory=None, create=False),
                 key=lambda m: m["Subject"])
    assert len(got) == 2
    for g, m in zip(got, msgs):
        # getmail puts a Return-Path line (from the absent envelope) on top
        head, rest = g.as_bytes().replace(b"\r\n", b"\n").split(b"\n", 1)
        assert head.startswith(b"Return-Path:"), head
        assert rest == m.replace(b"\r\n", b"\n")
    assert psql(pop, "SELECT count(*) FROM messages") == "0"
    # a second run finds nothing and keeps working
    r = subprocess.run(getmail, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
