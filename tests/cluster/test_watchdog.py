"""Remote watchdogs on a cluster: the master probes a TCP service, an HTTP URL
and a DNS name served or resolved on this host, raises down / back_online /
changed alerts under its epoch, and after a kill -9 of the master during an
outage the new master goes on without a second "down" alert."""
import http.server
import json
import socket
import socketserver
import threading
import subprocess
import time


class TcpService:
    """A tiny SMTP-like greeter on 127.0.0.1 that can be stopped and restarted
    on the same port."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.settimeout(2)
            try:
                self.request.sendall(b"220 watchdog-test ESMTP\r\n")
                self.request.recv(256)
            except OSError:
                pass

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = None

    def start(self):
        self.server = self.Server(("127.0.0.1", self.port), self.Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class WebService:
    def __init__(self, root):
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(root), **kw)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def watchdogs(cluster):
    r = cluster.ctl("--json", "watchdog", "list")
    assert r.returncode == 0, r.stderr
    return {w["name"]: w for w in json.loads(r.stdout)}


def alerts(cluster, name=None):
    r = cluster.ctl("--json", "watchdog", "alerts", *([name] if name else []))
    assert r.returncode == 0, r.stderr
    return list(reversed(json.loads(r.stdout)))  # oldest first


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached in {timeout}s; last: {last}")


def add_tcp(cluster, name, port):
    r = cluster.ctl("watchdog", "add", name, f"tcp://127.0.0.1:{port}", "--interval", "1",
                    "--down-after", "0", "--send", "EHLO floe\\r\\n", "--expect", "^220 .*ESMTP",
                    "--alert", "ops@alerts.test", "--back-online")
    assert r.returncode == 0, r.stderr


def test_tcp_down_and_back_online(cluster):
    svc = TcpService()
    svc.start()
    for args in (("domain", "add", "alerts.test"), ("account", "add", "ops@alerts.test")):
        r = cluster.ctl(*args)
        assert r.returncode == 0, r.stderr
    try:
        add_tcp(cluster, "smtp", svc.port)
        for i in (1, 2):
            cluster.add_node(i)
        st, _ = cluster.wait_master()
        wait_for(lambda: watchdogs(cluster)["smtp"]["state"] == "up", 15, "smtp up")
        assert alerts(cluster, "smtp") == []

        svc.stop()
        down = wait_for(lambda: [a for a in alerts(cluster, "smtp") if a["kind"] == "down"], 10,
                        "down alert")
        w = watchdogs(cluster)["smtp"]
        assert w["state"] == "down" and "cannot connect" in w["last_error"], w
        assert down[0]["node_id"] == st["master"] and int(down[0]["epoch"]) == st["epoch"]
        cluster.node(st["master"]).wait_log(r"watchdog smtp: tcp://127\.0\.0\.1:\d+ is down")
        time.sleep(2.5)  # further failed checks of the same outage
        assert len([a for a in alerts(cluster, "smtp") if a["kind"] == "down"]) == 1

        svc.start()
        wait_for(lambda: [a for a in alerts(cluster, "smtp") if a["kind"] == "back_online"], 10,
                 "back_online alert")
        kinds = [a["kind"] for a in alerts(cluster, "smtp")]
        assert kinds == ["down", "back_online"], kinds
        # only the master probes and records
        st = cluster.status()
        assert {(a["node_id"], int(a["epoch"])) for a in alerts(cluster)} == \
            {(st["master"], st["epoch"])}
        assert watchdogs(cluster)["smtp"]["checked_by"] == st["master"]
        # both alerts are mailed: queued, then delivered into the alert address's INBOX
        wait_for(lambda: all(a["delivered"] == "t" for a in alerts(cluster, "smtp")), 15,
                 "alerts mailed")
        subjects = wait_for(lambda: mailed_subjects(cluster), 20, "alert mail in the INBOX")
        assert any("[watchdog smtp] smtp is down" in s for s in subjects), subjects
        wait_for(lambda: any("is back online" in s for s in mailed_subjects(cluster)), 20,
                 "back-online mail")
    finally:
        svc.stop()


def mailed_subjects(cluster):
    r = subprocess.run(["psql", cluster.db, "-XAtqc",
                        "SELECT subject FROM messages m JOIN accounts a ON a.id = m.account_id"
                        " WHERE a.local_part = 'ops' ORDER BY m.id"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_http_content_change(cluster, tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    page = root / "index.html"
    page.write_text("version one\n")
    web = WebService(root)
    try:
        url = f"http://127.0.0.1:{web.port}/index.html"
        assert cluster.ctl("watchdog", "add", "web", url, "--interval", "1").returncode == 0
        assert cluster.ctl("watchdog", "add", "missing", f"http://127.0.0.1:{web.port}/nope",
                           "--interval", "1").returncode == 0
        cluster.add_node(1)
        first = wait_for(lambda: (w := watchdogs(cluster)["web"])["last_hash"] and w, 15,
                         "first content")
        assert first["state"] == "up" and first["content_size"] == str(len("version one\n"))
        page.write_text("version two, longer\n")
        changed = wait_for(lambda: [a for a in alerts(cluster, "web") if a["kind"] == "changed"],
                           10, "changed alert")
        assert len(changed) == 1 and "sha256" in changed[0]["message"]
        w = watchdogs(cluster)["web"]
        assert w["content_size"] == str(len("version two, longer\n"))
        assert w["last_hash"] != first["last_hash"]
        # a 404 is down (down_after defaults to 0: alerted at once)
        m = wait_for(lambda: (w := watchdogs(cluster)["missing"])["state"] == "down" and w, 10,
                     "404 down")
        assert "HTTP 404" in m["last_error"]
        assert [a["kind"] for a in alerts(cluster, "missing")] == ["down"]
    finally:
        web.stop()


def test_dns_and_invalid_input(cluster):
    assert cluster.ctl("watchdog", "add", "lo", "dns://localhost:a", "--interval", "1").returncode == 0
    for bad in (["x1", "tcp://host"], ["x2", "ftp://example.com/"], ["x3", "dns://example.com:soa"],
                ["x4", "tcp://127.0.0.1:25", "--expect", "(unclosed"],
                ["x5", "tcp://127.0.0.1:25", "--send", "bad\\q"],
                ["x6", "tcp://127.0.0.1:25", "--interval", "0"],
                ["x7", "dns://localhost:a", "--send", "x"],
                ["bad name", "tcp://127.0.0.1:25"], ["lo", "dns://localhost:aaaa"]):
        r = cluster.ctl("watchdog", "add", *bad)
        assert r.returncode == 1, (bad, r.stdout, r.stderr)
    r = cluster.ctl("--json", "watchdog", "add", "x8", "gopher://x")
    assert r.returncode == 1 and json.loads(r.stdout)["ok"] is False
    assert cluster.ctl("watchdog", "remove", "nosuch").returncode == 1
    assert set(watchdogs(cluster)) == {"lo"}
    cluster.add_node(1)
    w = wait_for(lambda: (w := watchdogs(cluster)["lo"])["state"] == "up" and w, 15, "dns up")
    assert "127.0.0.1" in w["last_answers"].split("\n"), w
    assert alerts(cluster, "lo") == []
    assert cluster.ctl("watchdog", "remove", "lo").returncode == 0
    assert watchdogs(cluster) == {}


def test_failover_during_outage_no_second_down(cluster):
    svc = TcpService()
    svc.start()
    try:
        add_tcp(cluster, "smtp", svc.port)
        for i in (1, 2, 3):
            cluster.add_node(i)
        st, _ = cluster.wait_master()
        first, first_epoch = st["master"], st["epoch"]
        wait_for(lambda: watchdogs(cluster)["smtp"]["state"] == "up", 15, "smtp up")
        svc.stop()
        wait_for(lambda: [a for a in alerts(cluster, "smtp") if a["kind"] == "down"], 10,
                 "down alert")

        cluster.node(first).kill()
        cluster.nodes.remove(cluster.node(first))
        st, _ = cluster.wait_master(lambda s: s["master"] not in (None, first))
        # the new master keeps checking the same outage
        wait_for(lambda: int(watchdogs(cluster)["smtp"]["epoch"]) == st["epoch"], 15,
                 "checks under the new epoch")
        time.sleep(2.5)
        w = watchdogs(cluster)["smtp"]
        assert w["state"] == "down" and w["checked_by"] == st["master"], w
        downs = [a for a in alerts(cluster, "smtp") if a["kind"] == "down"]
        assert len(downs) == 1, downs
        assert downs[0]["node_id"] == first and int(downs[0]["epoch"]) == first_epoch

        svc.start()
        back = wait_for(lambda: [a for a in alerts(cluster, "smtp") if a["kind"] == "back_online"],
                        10, "back_online alert")
        assert back[0]["node_id"] == st["master"] and int(back[0]["epoch"]) == st["epoch"]
        assert [a["kind"] for a in alerts(cluster, "smtp")] == ["down", "back_online"]
    finally:
        svc.stop()
