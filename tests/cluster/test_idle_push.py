"""Cross-node push: an IMAP IDLE session on node A hears "* n EXISTS" for a message
delivered by SMTP on node B within a second (over the Redis bus), still hears it when
Redis is down (the bounded polling fallback), and gets the fast path back once Redis
returns."""
import smtplib
import socket
import time

from test_bus import Redis, wait_metric

PW = "idle-secret-1"


class Idler:
    """A raw IMAP connection in IDLE (Python's imaplib has no IDLE)."""

    def __init__(self, node, user):
        self.sock = socket.create_connection((node.host, node.imap_port), timeout=20)
        self.f = self.sock.makefile("rb")
        assert self.f.readline().startswith(b"* OK")
        self.cmd(b"a LOGIN " + user.encode() + b" " + PW.encode())
        self.cmd(b"b SELECT INBOX")
        self.sock.sendall(b"c IDLE\r\n")
        line = self.f.readline()
        assert line.startswith(b"+"), line

    def cmd(self, line):
        tag = line.split(b" ", 1)[0]
        self.sock.sendall(line + b"\r\n")
        while True:
            r = self.f.readline()
            assert r, "connection closed"
            if r.startswith(tag + b" "):
                assert r.startswith(tag + b" OK"), r
                return

    def wait_exists(self, timeout):
        """Seconds until the next "* n EXISTS" line."""
        t0 = time.time()
        self.sock.settimeout(timeout)
        while True:
            r = self.f.readline()
            assert r, "connection closed"
            if r.endswith(b" EXISTS\r\n"):
                return time.time() - t0

    def close(self):
        try:
            self.sock.sendall(b"DONE\r\nz LOGOUT\r\n")
        finally:
            self.sock.close()


def deliver(node, subject):
    s = smtplib.SMTP(node.host, node.smtp_port, timeout=10)
    s.sendmail("pusher@example.org", ["idler@idle.test"], f"Subject: {subject}\r\n\r\nx\r\n")
    s.quit()


def test_idle_sees_delivery_on_other_node(cluster, tmp_path):
    redis = Redis(tmp_path)
    redis.start()
    try:
        url = f"unix://{redis.sock}"
        a = cluster.add_node(1, {"redis": {"url": url}})
        b = cluster.add_node(2, {"redis": {"url": url}})
        for args in (("domain", "add", "idle.test"), ("account", "add", "idler@idle.test",
                                                      "--password", PW)):
            r = cluster.ctl(*args)
            assert r.returncode == 0, r.stderr
        for n in (a, b):
            wait_metric(n, "floe_bus_connected", lambda v: v == 1)

        idler = Idler(a, "idler@idle.test")
        try:
            deliver(b, "over the bus")
            assert idler.wait_exists(5) < 1.0

            # Redis down: the nodes keep working and IDLE falls back to polling
            redis.stop()
            for n in (a, b):
                wait_metric(n, "floe_bus_connected", lambda v: v == 0)
            deliver(b, "while redis is down")
            assert idler.wait_exists(10) < 5.0

            # Redis back: resubscribed, the fast path again
            redis.start()
            for n in (a, b):
                wait_metric(n, "floe_bus_connected", lambda v: v == 1, timeout=20)
            deliver(b, "after redis returned")
            assert idler.wait_exists(5) < 1.0
        finally:
            idler.close()
    finally:
        redis.stop()
