"""Intrusion prevention across the cluster: failed SMTP AUTH attempts against one
node block the client address on every node (through the bus within 2 s), a
successful login resets the count, blocks expire, `floectl ips block/unblock`
act on every node, failed HTTP Basic logins count too, and with Redis down the
failures are counted in PostgreSQL and the other nodes learn the block from the
database."""
import base64
import http.client
import json
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from floe_harness import floectl

DOMAIN = "ips.test"
PW = "ips-secret-1"
ATTACKER = "127.0.0.50"   # not in [limits] trusted (127.0.0.1, ::1)
OTHER = "127.0.0.51"


class Redis:
    """A private redis-server on a unix socket, so a test may stop it."""

    def __init__(self, d):
        self.dir = d
        self.sock = d / "redis.sock"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", str(self.sock),
                                      "--dir", str(self.dir), "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if self.sock.exists():
                return
            time.sleep(0.05)
        raise AssertionError("redis did not start")

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait()
            self.proc = None

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-s", str(self.sock)] + list(args), capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()


@pytest.fixture
def redis(tmp_path_factory):
    r = Redis(tmp_path_factory.mktemp("redis"))
    r.start()
    yield r
    r.stop()


def greets(node, src):
    """True when the node's SMTP listener greets a client from src; False when it
    closes the connection at once (refused)."""
    try:
        with socket.create_connection((node.host, node.smtp_port), timeout=5,
                                      source_address=(src, 0)) as s:
            data = s.recv(512)
    except (ConnectionResetError, BrokenPipeError):
        return False
    return data.startswith(b"220")


def wait_greets(node, src, want, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if greets(node, src) == want:
            return time.time() - t0
        time.sleep(0.05)
    raise AssertionError(f"{node.host}: greets {src} stayed {not want} for {timeout}s:\n"
                         f"{node.output()[-3000:]}")


def tls():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def session(node, src):
    s = smtplib.SMTP(node.host, node.submission_port, timeout=10, source_address=(src, 0))
    s.starttls(context=tls())
    s.ehlo("client.example.org")
    return s


def auth_plain(s, password):
    """One AUTH PLAIN attempt (smtplib's login() would try further mechanisms)."""
    s.user, s.password = f"alice@{DOMAIN}", password
    return s.auth("PLAIN", s.auth_plain)


def fail_logins(node, src, n):
    """n failed AUTH PLAIN attempts; the node closes a session after 3 of them."""
    done = 0
    while done < n:
        s = session(node, src)
        for _ in range(min(3, n - done)):
            with pytest.raises(smtplib.SMTPAuthenticationError):
                auth_plain(s, "wrong-password")
            done += 1
        s.close()


def good_login(node, src):
    s = session(node, src)
    assert auth_plain(s, PW)[0] == 235
    s.quit()


def http_basic(node, src, password):
    """One admin API request with Basic credentials; returns the status."""
    c = http.client.HTTPSConnection(node.host, node.admin_tls_port, timeout=10,
                                    source_address=(src, 0), context=tls())
    tok = base64.b64encode(f"alice@{DOMAIN}:{password}".encode()).decode()
    c.request("GET", "/api/v1/domains", headers={"Authorization": "Basic " + tok})
    status = c.getresponse().status
    c.close()
    return status


def setup_accounts(cluster):
    r = floectl(cluster.ctl_config, "domain", "add", DOMAIN)
    assert r.returncode == 0, r.stderr
    r = floectl(cluster.ctl_config, "account", "add", f"alice@{DOMAIN}", env={"FLOE_PASSWORD": PW})
    assert r.returncode == 0, r.stderr


def ips_list(config):
    r = floectl(config, "--json", "ips", "list")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def psql(cluster, query):
    r = subprocess.run(["psql", cluster.db, "-XAtqc", query], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def ctl_with(cluster, tmp_path, sections):
    """A floectl configuration with [database] and the given extra sections."""
    text = f"[database]\nurl = {cluster.db}\n"
    for name, keys in sections.items():
        text += f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
    p = tmp_path / "ctl.conf"
    p.write_text(text)
    return p


def test_block_shared_reset_expiry_and_floectl(cluster, redis, tmp_path):
    url = f"unix://{redis.sock}"
    ips = {"failures": 4, "window": 600, "block": 6, "refresh": 30}
    a = cluster.add_node(1, {"redis": {"url": url}, "ips": ips})
    b = cluster.add_node(2, {"redis": {"url": url}, "ips": ips})
    for n in (a, b):
        n.wait_log("connected to Redis")
    setup_accounts(cluster)
    assert greets(a, ATTACKER) and greets(b, ATTACKER)

    # three failures, counted in Redis (not in PostgreSQL), then a good login resets
    fail_logins(a, ATTACKER, 3)
    for _ in range(40):
        if redis.cli("GET", f"floe:ips:fail:{ATTACKER}") == "3":
            break
        time.sleep(0.05)
    assert redis.cli("GET", f"floe:ips:fail:{ATTACKER}") == "3"
    ttl = int(redis.cli("TTL", f"floe:ips:fail:{ATTACKER}"))
    assert 590 <= ttl <= 600
    assert ips_list(cluster.ctl_config) == []
    good_login(a, ATTACKER)
    for _ in range(40):
        if redis.cli("EXISTS", f"floe:ips:fail:{ATTACKER}") == "0":
            break
        time.sleep(0.05)
    assert redis.cli("EXISTS", f"floe:ips:fail:{ATTACKER}") == "0"
    fail_logins(a, ATTACKER, 3)
    time.sleep(0.3)
    assert greets(a, ATTACKER) and greets(b, ATTACKER)   # 3 < 4 since the reset

    # the fourth failure blocks: node A at once, node B through the bus within 2 s
    fail_logins(a, ATTACKER, 1)
    wait_greets(a, ATTACKER, False, 2)
    waited = wait_greets(b, ATTACKER, False, 2)
    assert waited < 2
    assert greets(a, OTHER) and greets(b, OTHER)          # only that address
    a.wait_log(rf"\[c={ATTACKER}\] blocked for 6 s: 4 failed logins within 600 s "
               r"\(last on submission\)")
    b.wait_log(rf"\[c={ATTACKER}\] access denied: address blocked")
    blocks = ips_list(cluster.ctl_config)
    assert [(x["address"], x["service"], x["node"]) for x in blocks] == [(ATTACKER, "*", "node1")]
    assert 6 <= blocks[0]["until"] - blocks[0]["blocked"] <= 7
    assert redis.cli("EXISTS", f"floe:ips:fail:{ATTACKER}") == "0"   # reset once blocked
    r = floectl(cluster.ctl_config, "ips", "list")
    assert r.returncode == 0 and ATTACKER in r.stdout and "node1" in r.stdout

    # the block expires by itself on both nodes
    for n in (a, b):
        wait_greets(n, ATTACKER, True, 10)
    assert ips_list(cluster.ctl_config) == []

    # floectl block and unblock reach running nodes at once through Redis
    ctl = ctl_with(cluster, tmp_path, {"redis": {"url": url}})
    r = floectl(ctl, "ips", "block", OTHER, "--minutes", "30", "--reason", "manual test")
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr
    for n in (a, b):
        wait_greets(n, OTHER, False, 2)
    blocks = ips_list(ctl)
    assert blocks[0]["address"] == OTHER and blocks[0]["reason"] == "manual test"
    assert 1795 <= blocks[0]["until"] - blocks[0]["blocked"] <= 1805
    r = floectl(ctl, "ips", "unblock", OTHER)
    assert r.returncode == 0 and "unblocked" in r.stdout, r.stderr
    for n in (a, b):
        wait_greets(n, OTHER, True, 2)
    r = floectl(ctl, "ips", "unblock", OTHER)
    assert r.returncode == 0 and "was not blocked" in r.stdout
    r = floectl(ctl, "ips", "block", "10.0.0.0/8")
    assert r.returncode == 1 and "host address" in r.stderr
    r = floectl(ctl, "ips", "frobnicate")
    assert r.returncode == 2

    # failed HTTP Basic logins (admin API on node B) count as well
    web = "127.0.0.52"
    assert http_basic(b, web, PW) == 403       # good password, not an administrator: no failure
    for _ in range(4):
        assert http_basic(b, web, "wrong") == 401
    wait_greets(a, web, False, 2)
    b.wait_log(r"blocked for 6 s: 4 failed logins within 600 s \(last on admin\)")


def test_redis_down_counts_in_postgresql(cluster, redis, tmp_path):
    url = f"unix://{redis.sock}"
    ips = {"failures": 3, "window": 600, "block": 3600, "refresh": 2}
    a = cluster.add_node(1, {"redis": {"url": url}, "ips": ips})
    b = cluster.add_node(2, {"redis": {"url": url}, "ips": ips})
    for n in (a, b):
        n.wait_log("connected to Redis")
    setup_accounts(cluster)
    redis.stop()
    for n in (a, b):
        n.wait_log("lost Redis")

    fail_logins(a, ATTACKER, 2)
    a.wait_log("counting failed logins in PostgreSQL")
    # the count is taken asynchronously, on the node's ips thread
    for _ in range(40):
        if psql(cluster, f"SELECT failures FROM ips_failures WHERE address = '{ATTACKER}'") == "2":
            break
        time.sleep(0.05)
    assert psql(cluster, f"SELECT failures FROM ips_failures WHERE address = '{ATTACKER}'") == "2"
    fail_logins(a, ATTACKER, 1)
    # node A blocked it itself; node B reads the block list within its refresh
    wait_greets(a, ATTACKER, False, 2)
    wait_greets(b, ATTACKER, False, 2 + 3)
    blocks = ips_list(cluster.ctl_config)
    assert [(x["address"], x["node"]) for x in blocks] == [(ATTACKER, "node1")]
    assert psql(cluster, "SELECT count(*) FROM ips_failures") == "0"   # reset with the block

    # floectl without Redis: the nodes see the unblock at their next refresh
    r = floectl(cluster.ctl_config, "ips", "unblock", ATTACKER)
    assert r.returncode == 0, r.stderr
    for n in (a, b):
        wait_greets(n, ATTACKER, True, 2 + 3)
