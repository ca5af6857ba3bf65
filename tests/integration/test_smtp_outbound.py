"""Outbound delivery for real: a floed relaying through its PostgreSQL queue to a
private Postfix on loopback, found through MX records served by a dnsmasq the test
starts. Covers delivery, permanent and temporary failures, retries until expiry,
delivery status notifications back to the sender, null MX and unknown domains,
opportunistic STARTTLS, Secure Destinations (fingerprint pin right and wrong), and
floectl queue."""
import re
import smtplib
import ssl
import subprocess
import time

import pytest

from floe_harness import blob, floectl, fresh_database, sql, sql_scalar
from peers import Dnsmasq, Postfix

DOMAIN = "local.test"
PW = "outbound-secret-1"


@pytest.fixture(scope="module")
def world(tmp_path_factory, certs):
    root = tmp_path_factory.mktemp("outbound")
    pf = Postfix(root / "postfix", domains=["remote.test", "secure.test", "pinned.test"],
                 cert=certs / "exact.pem", key=certs / "exact.key").start()
    dns = Dnsmasq(root, mx=[("remote.test", "mx.remote.test", 10),
                            ("secure.test", "mx.remote.test", 10),
                            ("pinned.test", "mx.remote.test", 10),
                            ("nullmx.test", ".", 0)],
                  hosts=[("mx.remote.test", "127.0.0.1")]).start()
    fp = subprocess.run(["openssl", "x509", "-in", str(certs / "exact.pem"), "-noout",
                         "-fingerprint", "-sha256"], capture_output=True, text=True,
                        check=True).stdout.strip().split("=", 1)[1]
    from conftest import Node
    (root / "node").mkdir()
    n = Node(root / "node", {
        "smtp": {"hostname": "mx.local.test", "dns_servers": dns.servers,
                 "remote_port": str(pf.port), "retry_min": "1", "retry_max": "2",
                 "queue_lifetime": "8", "delay_warning": "3600", "delivery_threads": "2"},
        "secure_destination strict": {"host": "secure.test", "fingerprint": "00" * 32},
        "secure_destination pinned": {"host": "pinned.test", "fingerprint": fp},
    }, database=fresh_database("floe_it_outbound"))
    n.start()
    for args in (("domain", "add", DOMAIN), ("account", "add", f"alice@{DOMAIN}")):
        r = floectl(n.config, *args, env={"FLOE_PASSWORD": PW})
        assert r.returncode == 0, r.stderr
    yield n, pf
    n.stop()
    pf.stop()
    dns.stop()


def send(n, to, subject, sender=f"alice@{DOMAIN}"):
    s = smtplib.SMTP("127.0.0.1", n.submission_port, timeout=10)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s.starttls(context=ctx)
    s.login(f"alice@{DOMAIN}", PW)
    s.sendmail(sender, to, f"From: {sender}\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n")
    s.quit()


def wait_for(fn, timeout=30, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def inbox_subjects(n, address=f"alice@{DOMAIN}"):
    rows = sql(n, """SELECT m.subject FROM messages m JOIN accounts a ON a.id = m.account_id
                     WHERE a.local_part || '@' || (SELECT name FROM domains WHERE id = a.domain_id)
                     = :'p1' ORDER BY m.id""", address)
    return [r[0] for r in rows]


def test_delivered_over_tls(world):
    n, pf = world
    before = len(pf.messages())
    send(n, ["someone@remote.test"], "outbound one")
    msgs = pf.wait_messages(before + 1)
    m = msgs[-1].decode()
    assert "Subject: outbound one" in m
    assert "body of outbound one" in m
    # opportunistic STARTTLS was used: Postfix's trace field says ESMTPS
    assert re.search(r"by mx\.remote\.test \(Postfix\) with ESMTPS", m), m[:800]
    assert "by mx.local.test (Floe) with ESMTPSA" in m
    wait_for(lambda: sql_scalar(n, "SELECT count(*) FROM queue_messages") == "0",
             what="the queue to empty")


def test_rejected_recipient_bounces_to_sender(world):
    n, pf = world
    send(n, ["reject@remote.test"], "will bounce")
    subjects = wait_for(lambda: [s for s in inbox_subjects(n) if "Undelivered" in s],
                        what="a bounce in the sender's INBOX")
    assert subjects
    row = sql(n, """SELECT m.blob_id FROM messages m WHERE m.subject LIKE 'Undelivered%'
                    ORDER BY m.id DESC LIMIT 1""")
    text = blob(n, row[0][0]).decode()
    assert "Final-Recipient: rfc822; reject@remote.test" in text
    assert "Status: 5.1.1" in text
    assert "Action: failed" in text
    assert "no such user here" in text
    assert "Subject: will bounce" in text   # the original (or its headers) comes back


def test_null_mx_and_unknown_domain_bounce(world):
    n, pf = world
    send(n, ["x@nullmx.test"], "to null mx")
    send(n, ["x@nowhere.test"], "to nowhere")
    wait_for(lambda: len([s for s in inbox_subjects(n) if "Undelivered" in s]) >= 3,
             what="two more bounces")
    texts = [r[0] for r in sql(n, """SELECT m.blob_id FROM messages m
                                     WHERE m.subject LIKE 'Undelivered%' ORDER BY m.id""")]
    bodies = [blob(n, b).decode() for b in texts]
    assert any("Final-Recipient: rfc822; x@nullmx.test" in b and "Status: 5.1.10" in b for b in bodies)
    assert any("Final-Recipient: rfc822; x@nowhere.test" in b and "Status: 5.1.2" in b for b in bodies)


def test_deferred_then_expired(world):
    n, pf = world
    send(n, ["defer@remote.test"], "deferred")
    rows = wait_for(lambda: sql(n, """SELECT attempts, state, last_status FROM queue_recipients
                                      WHERE address = 'defer@remote.test' AND attempts >= 2"""),
                    what="two delivery attempts")
    assert rows[0][1] == "queued" and rows[0][2] == "4.2.0"
    qid = sql_scalar(n, "SELECT message_id FROM queue_recipients WHERE address = 'defer@remote.test'")
    out = floectl(n.config, "queue", "list")
    assert out.returncode == 0
    assert re.search(rf"^{qid} \d+s \d+ <alice@local.test> queued=1", out.stdout, re.M), out.stdout
    # the 8 s lifetime runs out: returned with 4.4.7 / 5.4.7
    wait_for(lambda: sql_scalar(n, "SELECT count(*) FROM queue_recipients"
                                   " WHERE address = 'defer@remote.test'") == "0",
             timeout=40, what="the deferred message to expire")
    b = wait_for(lambda: sql(n, """SELECT m.blob_id FROM messages m WHERE m.subject LIKE 'Undelivered%'
                                   AND m.blob_id IN (SELECT blob_id FROM messages) ORDER BY m.id"""),
                 what="bounces")
    assert any("defer@remote.test" in blob(n, r[0]).decode() and
               "Status: 5.4.7" in blob(n, r[0]).decode() for r in b)


def test_null_sender_never_bounced(world):
    n, pf = world
    before = len(inbox_subjects(n))
    s = smtplib.SMTP("127.0.0.1", n.smtp_port, timeout=10)   # 127.0.0.1 may relay
    s.sendmail("", ["reject@remote.test"], "Subject: from the null sender\r\n\r\nx\r\n")
    s.quit()
    wait_for(lambda: "reject@remote.test" in pf.log() and
             sql_scalar(n, "SELECT count(*) FROM queue_messages WHERE sender = ''"
                           " AND NOT is_notice") == "0", what="the attempt")
    time.sleep(2)
    assert len(inbox_subjects(n)) == before


def test_secure_destinations(world):
    n, pf = world
    before = len(pf.messages())
    send(n, ["x@pinned.test"], "pinned ok")
    pf.wait_messages(before + 1)
    send(n, ["x@secure.test"], "pin mismatch")
    wait_for(lambda: any("Undelivered" in s for s in inbox_subjects(n)[-3:]) and
             sql_scalar(n, "SELECT count(*) FROM queue_recipients WHERE address = 'x@secure.test'") == "0",
             what="the pin mismatch to bounce")
    assert not any(b"pin mismatch" in m for m in pf.messages())


def test_floectl_queue_retry_and_delete(world):
    n, pf = world
    send(n, ["defer@remote.test"], "to delete")
    qid = wait_for(lambda: sql_scalar(n, """SELECT message_id FROM queue_recipients
                                           WHERE address = 'defer@remote.test' AND attempts >= 1"""),
                   what="a queued message")
    show = floectl(n.config, "queue", "show", qid)
    assert show.returncode == 0 and "defer@remote.test" in show.stdout
    assert floectl(n.config, "queue", "retry", qid).returncode == 0
    assert floectl(n.config, "queue", "delete", qid).returncode == 0
    assert sql_scalar(n, "SELECT count(*) FROM queue_messages WHERE id = :'p1'", qid) == "0"
    assert floectl(n.config, "queue", "show", qid).returncode != 0
