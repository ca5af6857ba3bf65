"""SMTP end to end with real clients (Python smtplib, swaks) against a real floed:
the MX, submission and implicit-TLS submission listeners, every advertised extension,
routing (accounts, aliases, catch-all, groups, forwarders), local delivery checked in
the store, limits and error paths."""
import base64
import hashlib
import hmac
import os
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from floe_harness import blob, floectl, fresh_database, sql_scalar

DOMAIN = "smtp.test"
PW = "smtp-secret-1"


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    from conftest import Node
    n = Node(tmp_path_factory.mktemp("smtp"), {
        "smtp": {"hostname": "mx.smtp.test", "max_message_size": "64K", "max_recipients": "5",
                 "max_errors": "6", "max_received": "10", "relay_from": "10.255.255.1"},
    }, database=fresh_database("floe_it_smtp"))
    n.start()

    def ctl(*a, **kw):
        r = floectl(n.config, *a, **kw)
        assert r.returncode == 0, r.stderr
        return r.stdout

    ctl("domain", "add", DOMAIN)
    ctl("domain", "add", "other.test")
    ctl("domain", "alias", "add", "alias-domain.test", DOMAIN)
    for u in ("alice", "bob", "carol", "dave", "full", "off"):
        ctl("account", "add", f"{u}@{DOMAIN}", env={"FLOE_PASSWORD": PW})
    ctl("account", "add", f"catch@other.test", env={"FLOE_PASSWORD": PW})
    ctl("domain", "catchall", "other.test", "catch@other.test")
    ctl("alias", "add", f"info@{DOMAIN}", f"alice@{DOMAIN}")
    ctl("group", "add", f"team@{DOMAIN}")
    ctl("group", "member", "add", f"team@{DOMAIN}", f"bob@{DOMAIN}")
    ctl("group", "member", "add", f"team@{DOMAIN}", f"carol@{DOMAIN}")
    ctl("group", "add", f"shared@{DOMAIN}", "--deliver", "folder")
    ctl("forward", "set", f"dave@{DOMAIN}", "--keep-copy", f"carol@{DOMAIN}", "ext@remote.test")
    ctl("quota", "set", "account", f"full@{DOMAIN}", "--bytes", "1K")
    ctl("account", "disable", f"off@{DOMAIN}")
    ctl("account", "add", f"nosmtp@{DOMAIN}", env={"FLOE_PASSWORD": PW})
    ctl("policy", "set", "account", f"nosmtp@{DOMAIN}", "smtp", "disabled")
    n.ctl = ctl
    yield n
    n.stop()


def count(n, address, folder="INBOX"):
    """Messages in a mailbox, read from PostgreSQL."""
    return int(sql_scalar(n, """
        SELECT count(*) FROM messages m JOIN folders f ON f.id = m.folder_id
        JOIN accounts a ON a.id = f.account_id JOIN domains d ON d.id = a.domain_id
        WHERE a.local_part || '@' || d.name = :'p1' AND f.path = :'p2'""", address, folder))


def queued(n, address):
    return int(sql_scalar(n, "SELECT count(*) FROM queue_recipients WHERE address = :'p1'", address))


def client(n, port=None):
    s = smtplib.SMTP("127.0.0.1", port or n.smtp_port, timeout=10)
    return s


def msg(subject="hello", body="Hi there.\r\n", extra=""):
    return (f"From: sender@example.org\r\nTo: someone\r\nSubject: {subject}\r\n{extra}\r\n{body}").encode()


def test_greeting_and_ehlo(node):
    s = client(node)
    code, text = s.ehlo("client.example.org")
    assert code == 250
    ext = text.decode()
    for e in ("SIZE 65536", "PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
              "CHUNKING", "DSN", "STARTTLS"):
        assert e in ext, e
    assert "AUTH" not in ext   # AUTH only under TLS by default
    assert s.noop()[0] == 250
    assert s.docmd("VRFY", "alice")[0] == 252
    assert s.docmd("EXPN", "team")[0] == 502
    s.quit()


def test_local_delivery_and_routing(node):
    before = {a: count(node, a) for a in ("alice@smtp.test", "bob@smtp.test", "carol@smtp.test",
                                          "dave@smtp.test", "catch@other.test")}
    s = client(node)
    s.ehlo("client.example.org")
    refused = s.sendmail("sender@example.org",
                         ["alice@smtp.test", "INFO@alias-domain.test", "team@smtp.test",
                          "anything@other.test", "dave@smtp.test"],
                         msg("routing"))
    assert refused == {}
    s.quit()
    # alice once although reached twice (own address and alias through a domain alias)
    assert count(node, "alice@smtp.test") == before["alice@smtp.test"] + 1
    assert count(node, "bob@smtp.test") == before["bob@smtp.test"] + 1
    # carol: group member and dave's forward target, one copy
    assert count(node, "carol@smtp.test") == before["carol@smtp.test"] + 1
    assert count(node, "dave@smtp.test") == before["dave@smtp.test"] + 1   # keep-copy
    assert count(node, "catch@other.test") == before["catch@other.test"] + 1
    assert queued(node, "ext@remote.test") >= 1   # the remote forward target is queued
    raw = sql_scalar(node, """SELECT m.blob_id FROM messages m JOIN accounts a ON a.id = m.account_id
                              WHERE a.local_part = 'bob' ORDER BY m.id DESC LIMIT 1""")
    assert raw


def test_group_folder_delivery(node):
    before = count(node, "shared@smtp.test")
    s = client(node)
    s.sendmail("sender@example.org", ["shared@smtp.test"], msg("to the group folder"))
    s.quit()
    assert count(node, "shared@smtp.test") == before + 1


def test_stored_message_has_trace_fields(node):
    s = client(node)
    s.ehlo("trace.example.org")
    s.sendmail("tracer@example.org", ["bob@smtp.test"], msg("trace me"))
    s.quit()
    bid = sql_scalar(node, """SELECT m.blob_id FROM messages m JOIN accounts a ON a.id = m.account_id
                              WHERE a.local_part = 'bob' AND m.subject = 'trace me'""")
    data = blob(node, bid).decode()
    assert data.startswith("Return-Path: <tracer@example.org>\r\nReceived: from trace.example.org ([127.0.0.1])")
    assert "by mx.smtp.test (Floe) with ESMTP id " in data
    assert "for <bob@smtp.test>" in data
    assert data.endswith("Hi there.\r\n")


def test_unknown_disabled_relay_and_quota(node):
    s = client(node)
    s.ehlo("client.example.org")
    assert s.mail("sender@example.org")[0] == 250
    code, text = s.rcpt("nobody@smtp.test")
    assert code == 550 and text.startswith(b"5.1.1")
    code, text = s.rcpt("off@smtp.test")
    assert code == 550 and text.startswith(b"5.2.1")
    code, text = s.rcpt("nosmtp@smtp.test")
    assert code == 550 and text.startswith(b"5.2.1")
    code, text = s.rcpt("someone@elsewhere.example")
    assert code == 554 and text.startswith(b"5.7.1")
    s.rset()
    # the 1K quota is exceeded by a declared 4K message: permanent
    s.mail("sender@example.org", ["SIZE=4096"])
    code, text = s.rcpt("full@smtp.test")
    assert code == 552 and text.startswith(b"5.2.2")
    s.quit()


def test_dot_stuffing_and_smuggling(node):
    body = ("line one\r\n.starts with a dot\r\n..two dots\r\n"
            "fake end \n.\r\nMAIL FROM:<evil@example.org>\r\n")
    s = client(node)
    s.ehlo("client.example.org")
    s.sendmail("sender@example.org", ["bob@smtp.test"], msg("dots", body))
    s.quit()
    bid = sql_scalar(node, """SELECT m.blob_id FROM messages m JOIN accounts a ON a.id = m.account_id
                              WHERE a.local_part = 'bob' AND m.subject = 'dots'""")
    data = blob(node, bid)
    assert b"\r\n.starts with a dot\r\n..two dots\r\n" in data
    # the bare LF became CRLF and the line "." stayed inside the message
    assert b"fake end \r\n.\r\nMAIL FROM:<evil@example.org>\r\n" in data


def test_size_limits(node):
    s = client(node)
    s.ehlo("client.example.org")
    code, text = s.mail("sender@example.org", ["SIZE=1000000"])
    assert code == 552 and text.startswith(b"5.3.4")
    s.mail("sender@example.org")
    s.rcpt("bob@smtp.test")
    code, text = s.data(msg("big", "x" * 70 + "\r\n") * 1000)
    assert code == 552
    # the session goes on
    assert s.noop()[0] == 250
    s.quit()


def test_recipient_limit(node):
    s = client(node)
    s.ehlo("client.example.org")
    s.mail("sender@example.org")
    for i in range(5):
        assert s.rcpt("bob@smtp.test")[0] == 250
    code, text = s.rcpt("bob@smtp.test")
    assert code == 452 and text.startswith(b"4.5.3")
    s.quit()


def test_loop_detection(node):
    hops = "".join(f"Received: from hop{i} by hop{i + 1}; Sat, 21 Nov 2026 10:00:00 +0000\r\n"
                   for i in range(11))
    s = client(node)
    s.ehlo("client.example.org")
    with pytest.raises(smtplib.SMTPDataError) as e:
        s.sendmail("sender@example.org", ["bob@smtp.test"], (hops + "Subject: loop\r\n\r\nx\r\n").encode())
    assert e.value.smtp_code == 554
    s.quit()


def test_sequence_errors_and_too_many_errors(node):
    s = client(node)
    assert s.docmd("MAIL", "FROM:<a@b.example>")[0] == 503   # before HELO
    s.ehlo("client.example.org")
    assert s.docmd("RCPT", "TO:<bob@smtp.test>")[0] == 503
    assert s.docmd("DATA")[0] == 503
    assert s.docmd("MAIL", "FROM:<bad address>")[0] == 501
    assert s.docmd("MAIL", "FROM:<a@b.example> FOO=BAR")[0] == 555
    code, _ = s.docmd("XYZZY")
    assert code == 500
    # the sixth error ends the session with 421
    with pytest.raises(smtplib.SMTPServerDisconnected):
        for _ in range(3):
            s.docmd("XYZZY")
        s.noop()


def test_long_line(node):
    with socket.create_connection(("127.0.0.1", node.smtp_port), timeout=10) as sk:
        f = sk.makefile("rb")
        f.readline()
        sk.sendall(b"EHLO " + b"a" * 20000 + b"\r\nNOOP\r\n")
        assert f.readline().startswith(b"500 5.5.2")
        assert f.readline().startswith(b"250 2.0.0")


def test_pipelining(node):
    before = count(node, "carol@smtp.test")
    with socket.create_connection(("127.0.0.1", node.smtp_port), timeout=10) as sk:
        f = sk.makefile("rb")
        f.readline()
        sk.sendall(b"EHLO p.example\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        sk.sendall(b"MAIL FROM:<p@example.org>\r\nRCPT TO:<carol@smtp.test>\r\n"
                   b"RCPT TO:<nobody@smtp.test>\r\nDATA\r\n")
        replies = [f.readline() for _ in range(4)]
        assert [r[:3] for r in replies] == [b"250", b"250", b"550", b"354"]
        sk.sendall(b"Subject: pipelined\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        assert f.readline().startswith(b"250 2.0.0")
        assert f.readline().startswith(b"221")
    assert count(node, "carol@smtp.test") == before + 1


def test_bdat(node):
    before = count(node, "bob@smtp.test")
    with socket.create_connection(("127.0.0.1", node.smtp_port), timeout=10) as sk:
        f = sk.makefile("rb")
        f.readline()
        sk.sendall(b"EHLO b.example\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        part1 = b"Subject: chunked\r\n\r\n"
        part2 = b".not stuffed\r\nend\r\n"
        sk.sendall(b"MAIL FROM:<c@example.org> BODY=8BITMIME\r\nRCPT TO:<bob@smtp.test>\r\n")
        assert f.readline()[:3] == b"250" and f.readline()[:3] == b"250"
        sk.sendall(b"BDAT %d\r\n" % len(part1) + part1)
        assert f.readline().startswith(b"250 2.0.0 %d octets" % len(part1))
        sk.sendall(b"BDAT %d LAST\r\n" % len(part2) + part2)
        assert f.readline().startswith(b"250 2.0.0 Ok")
        # BDAT without a transaction: refused, its bytes skipped, session goes on
        sk.sendall(b"BDAT 5 LAST\r\nxxxxxNOOP\r\n")
        assert f.readline().startswith(b"503")
        assert f.readline().startswith(b"250")
    assert count(node, "bob@smtp.test") == before + 1
    bid = sql_scalar(node, """SELECT m.blob_id FROM messages m JOIN accounts a ON a.id = m.account_id
                              WHERE a.local_part = 'bob' AND m.subject = 'chunked'""")
    assert blob(node, bid).endswith(b"\r\n\r\n.not stuffed\r\nend\r\n")


def tls_client(node, port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_starttls_and_auth_plain_login(node):
    s = client(node, node.submission_port)
    s.ehlo("client.example.org")
    assert s.docmd("MAIL", "FROM:<alice@smtp.test>")[0] == 530   # submission needs AUTH
    code, _ = s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice@smtp.test\0" + PW.encode()).decode())
    assert code == 538   # not before TLS
    s.starttls(context=tls_client(node, None))
    code, text = s.ehlo("client.example.org")
    assert b"AUTH PLAIN LOGIN SCRAM-SHA-256" in text and b"STARTTLS" not in text
    with pytest.raises(smtplib.SMTPAuthenticationError):
        s.login("alice@smtp.test", "wrong-password")
    s.login("alice@smtp.test", PW)
    # only her own addresses as the sender: her address or an alias, not bob's
    code, text = s.mail("bob@smtp.test")
    assert code == 553 and text.startswith(b"5.7.1")
    assert s.mail("INFO@smtp.test")[0] == 250
    s.rset()
    # authenticated: may relay to any domain (queued)
    s.sendmail("alice@smtp.test", ["friend@remote.test"], msg("relayed"))
    s.quit()
    assert queued(node, "friend@remote.test") == 1
    s = client(node, node.submission_port)
    s.starttls(context=tls_client(node, None))
    s.ehlo("client.example.org")
    s.user, s.password = "bob@smtp.test", PW
    assert s.auth("LOGIN", s.auth_login, initial_response_ok=False)[0] == 235
    s.quit()


def scram_exchange(sock_file, sock, user, password):
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = f"n={user},r={nonce}"
    sock.sendall(b"AUTH SCRAM-SHA-256 " + base64.b64encode(("n,," + first_bare).encode()) + b"\r\n")
    line = sock_file.readline()
    assert line.startswith(b"334 "), line
    server_first = base64.b64decode(line[4:].strip()).decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    assert attrs["r"].startswith(nonce)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored = hashlib.sha256(client_key).digest()
    final_wo = f"c=biws,r={attrs['r']}"
    auth_msg = f"{first_bare},{server_first},{final_wo}".encode()
    sig = hmac.new(stored, auth_msg, "sha256").digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig))
    sock.sendall(base64.b64encode(f"{final_wo},p={base64.b64encode(proof).decode()}".encode()) + b"\r\n")
    line = sock_file.readline()
    if not line.startswith(b"334 "):
        return line
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    expect = base64.b64encode(hmac.new(server_key, auth_msg, "sha256").digest()).decode()
    assert base64.b64decode(line[4:].strip()).decode() == f"v={expect}"
    sock.sendall(b"\r\n")
    return sock_file.readline()


def test_implicit_tls_and_scram(node):
    ctx = tls_client(node, None)
    raw = socket.create_connection(("127.0.0.1", node.submissions_port), timeout=10)
    sk = ctx.wrap_socket(raw)
    f = sk.makefile("rb")
    assert f.readline().startswith(b"220 mx.smtp.test")
    sk.sendall(b"EHLO s.example\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    assert scram_exchange(f, sk, "carol@smtp.test", "wrong").startswith(b"535 5.7.8")
    assert scram_exchange(f, sk, "carol@smtp.test", PW).startswith(b"235 2.7.0")
    sk.sendall(b"QUIT\r\n")
    assert f.readline().startswith(b"221")
    sk.close()


def test_starttls_discards_pipelined_plaintext(node):
    with socket.create_connection(("127.0.0.1", node.smtp_port), timeout=10) as raw:
        f = raw.makefile("rb")
        f.readline()
        raw.sendall(b"EHLO x.example\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        # an attacker-injected command right behind STARTTLS
        raw.sendall(b"STARTTLS\r\nRSET\r\n")
        assert f.readline().startswith(b"220 2.0.0")
        sk = tls_client(node, None).wrap_socket(raw)
        sk.sendall(b"NOOP\r\n")
        g = sk.makefile("rb")
        # the first reply under TLS answers NOOP, not the injected RSET
        assert g.readline() == b"250 2.0.0 Ok\r\n"
        sk.sendall(b"MAIL FROM:<a@b.example>\r\n")
        assert g.readline().startswith(b"503")   # EHLO must be sent again after TLS
        sk.close()


def test_auth_failures_close(node):
    s = client(node, node.submission_port)
    s.starttls(context=tls_client(node, None))
    s.ehlo("client.example.org")
    for _ in range(2):
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login("alice@smtp.test", "nope-nope")
    with pytest.raises((smtplib.SMTPAuthenticationError, smtplib.SMTPServerDisconnected)):
        s.login("alice@smtp.test", "nope-nope")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.noop()


def test_dsn_and_smtputf8_parameters(node):
    s = client(node)
    s.ehlo("client.example.org")
    assert s.mail("sender@example.org", ["RET=HDRS", "ENVID=abc+2Bdef", "SMTPUTF8"])[0] == 250
    assert s.rcpt("bob@smtp.test", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;bob@smtp.test"])[0] == 250
    assert s.data(msg("dsn params"))[0] == 250
    assert s.mail("sender@example.org", ["RET=BOGUS"])[0] == 501
    s.rset()
    assert s.mail("sender@example.org")[0] == 250
    assert s.rcpt("bob@smtp.test", ["NOTIFY=NEVER,SUCCESS"])[0] == 501
    s.rset()
    # a UTF-8 address without SMTPUTF8 is refused, with it accepted
    s.command_encoding = "utf-8"
    assert s.mail("jörg@example.org")[0] == 553
    assert s.mail("jörg@example.org", ["SMTPUTF8"])[0] == 250
    s.quit()


def test_swaks(node):
    r = subprocess.run(["swaks", "--server", f"127.0.0.1:{node.submission_port}", "--tls",
                        "--auth", "PLAIN", "--auth-user", "alice@smtp.test", "--auth-password", PW,
                        "--from", "alice@smtp.test", "--to", "bob@smtp.test",
                        "--header", "Subject: via swaks", "--pipeline"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "250 2.0.0 Ok" in r.stdout
    assert int(sql_scalar(node, "SELECT count(*) FROM messages WHERE subject = 'via swaks'")) == 1


def test_autoreply(node):
    node.ctl("autoreply", "set", "carol@smtp.test", "--body", "I am away until Monday.",
             "--subject", "Away", "--interval", "3600")
    shown = node.ctl("autoreply", "show", "carol@smtp.test")
    assert "Away" in shown and "I am away until Monday." in shown

    def away_in(address):
        return int(sql_scalar(node, """SELECT count(*) FROM messages m JOIN accounts a
            ON a.id = m.account_id JOIN domains d ON d.id = a.domain_id
            WHERE a.local_part || '@' || d.name = :'p1' AND m.subject = 'Away'""", address))

    def answered(sender):
        return int(sql_scalar(node, "SELECT count(*) FROM autoreply_sent WHERE sender = lower(:'p1')",
                              sender))

    def send(sender, extra="", to="carol@smtp.test"):
        s = client(node)
        s.sendmail(sender, ["carol@smtp.test"],
                   f"From: {sender or 'x@y.example'}\r\nTo: {to}\r\nSubject: hi\r\n"
                   f"Message-ID: <m1@example.org>\r\n{extra}\r\nhello\r\n".encode())
        s.quit()

    # a local sender gets the reply in its INBOX (queued, then delivered locally)
    send("alice@smtp.test")
    deadline = time.time() + 20
    while away_in("alice@smtp.test") == 0 and time.time() < deadline:
        time.sleep(0.2)
    assert away_in("alice@smtp.test") == 1
    send("alice@smtp.test")   # once per interval
    send("friend@example.org")
    assert answered("friend@example.org") == 1
    send("list@example.org", "List-Id: <team.example.org>\r\n")
    send("bulk@example.org", "Precedence: bulk\r\n")
    send("robot@example.org", "Auto-Submitted: auto-generated\r\n")
    send("MAILER-DAEMON@example.org")
    send("owner-team@example.org")
    send("cc@example.org", to="someone-else@example.org")   # not addressed to carol
    send("")                                                # null sender
    for s in ("list@example.org", "bulk@example.org", "robot@example.org",
              "MAILER-DAEMON@example.org", "owner-team@example.org", "cc@example.org"):
        assert answered(s) == 0, s
    time.sleep(1)
    assert away_in("alice@smtp.test") == 1
    bid = sql_scalar(node, """SELECT m.blob_id FROM messages m JOIN accounts a ON a.id = m.account_id
                              WHERE a.local_part = 'alice' AND m.subject = 'Away'""")
    text = blob(node, bid).decode()
    assert "Auto-Submitted: auto-replied\r\n" in text and "Return-Path: <>\r\n" in text
    assert "From: <carol@smtp.test>" in text and "I am away until Monday." in text
    assert "In-Reply-To: <m1@example.org>" in text
    node.ctl("autoreply", "clear", "carol@smtp.test")
    assert "has no auto-responder" in node.ctl("autoreply", "show", "carol@smtp.test")
