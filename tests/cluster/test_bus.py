"""The Redis bus between nodes: every node receives what is published, nodes
keep serving while Redis is down, and reconnect and resubscribe when it returns."""
import re
import subprocess
import time
import urllib.request

import pytest


def metric(node, name):
    with urllib.request.urlopen(f"http://{node.host}:{node.admin_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(rf"^{name} (\d+)$", text, re.M)
    assert m, f"{name} missing"
    return int(m.group(1))


def wait_metric(node, name, pred, timeout=15):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = metric(node, name)
        if pred(v):
            return v
        time.sleep(0.1)
    raise AssertionError(f"{name} on {node.host} stayed at {metric(node, name)}")


class Redis:
    """A private redis-server on a unix socket, so a test may stop and restart it."""

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

    def publish(self, channel, payload):
        r = subprocess.run(["redis-cli", "-s", str(self.sock), "-x", "PUBLISH", channel],
                           input=payload, capture_output=True)
        assert r.returncode == 0, r.stderr
        return int(r.stdout.strip())


def envelope_invalidate(origin, key):
    """Envelope{origin_node, invalidate{scope=DIRECTORY, key}} in protobuf wire format."""
    inner = b"\x12" + bytes([len(key)]) + key.encode()
    return b"\x0a" + bytes([len(origin)]) + origin.encode() + b"\x1a" + bytes([len(inner)]) + inner


@pytest.fixture
def redis(tmp_path_factory):
    r = Redis(tmp_path_factory.mktemp("redis"))
    r.start()
    yield r
    r.stop()


def test_bus_delivery_outage_and_reconnect(cluster, redis):
    url = f"unix://{redis.sock}"
    nodes = [cluster.add_node(i, {"redis": {"url": url}}) for i in (1, 2)]
    for n in nodes:
        wait_metric(n, "floe_bus_connected", lambda v: v == 1)
    # both nodes subscribed: Redis counts two receivers
    assert redis.publish("floe:invalidate", envelope_invalidate("test", "a@example.test")) == 2
    for n in nodes:
        wait_metric(n, "floe_bus_received_total", lambda v: v >= 1)

    redis.stop()
    for n in nodes:
        wait_metric(n, "floe_bus_connected", lambda v: v == 0)
        n.wait_log("lost Redis")
        with urllib.request.urlopen(f"http://{n.host}:{n.admin_port}/readyz", timeout=5) as r:
            assert r.status == 200   # serving goes on without the bus

    redis.start()
    for n in nodes:
        wait_metric(n, "floe_bus_connected", lambda v: v == 1)
        assert metric(n, "floe_bus_reconnects_total") >= 1
    before = [metric(n, "floe_bus_received_total") for n in nodes]
    assert redis.publish("floe:invalidate", envelope_invalidate("test", "b@example.test")) == 2
    for n, b in zip(nodes, before):
        wait_metric(n, "floe_bus_received_total", lambda v, b=b: v > b)
