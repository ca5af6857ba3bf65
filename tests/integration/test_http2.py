"""HTTP/2 (RFC 9113) on the web service with real clients: curl --http2 and
h2load (nghttp2's clients), nghttp for the SETTINGS, and Python's h2 library
where the test must steer frames itself (flow control, resets, the stream limit,
GOAWAY at shutdown). The handlers are the same ones HTTP/1.1 serves."""
import hashlib
import os
import signal
import socket
import ssl
import subprocess
import time

import pytest

h2 = pytest.importorskip("h2.connection")  # python3-h2 (ops/install-deps)
import h2.config  # noqa: E402
import h2.events  # noqa: E402
import h2.errors  # noqa: E402
import h2.settings  # noqa: E402


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    d = tmp_path_factory.mktemp("www2")
    (d / "big.bin").write_bytes(os.urandom(5 * 1024 * 1024 + 1))
    (d / "small.txt").write_text("small over h2\n")
    return d


@pytest.fixture(scope="module")
def web(tmp_path_factory, root):
    from conftest import Node
    n = Node(tmp_path_factory.mktemp("h2"), {"service web": {"diagnostics": True,
                                                             "root": str(root)}})
    n.start()
    yield n
    n.stop()


def url(n, path, tls=True):
    return (f"https://127.0.0.1:{n.web_tls_port}{path}" if tls
            else f"http://127.0.0.1:{n.web_port}{path}")


def curl(*args, timeout=60):
    return subprocess.run(["curl", "-sk"] + list(args), capture_output=True, timeout=timeout)


class Client:
    """An HTTP/2 client on Python's h2 over TLS with ALPN "h2"."""

    def __init__(self, n, auto_ack=True, initial_window=65535, conn_window=0):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", n.web_tls_port), timeout=10)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        assert self.sock.selected_alpn_protocol() == "h2"
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: initial_window})
        if conn_window:  # more room on the connection than on each stream
            self.conn.increment_flow_control_window(conn_window)
        self.auto_ack = auto_ack
        self.flush()
        self.bodies, self.headers, self.ended, self.resets = {}, {}, set(), {}
        self.terminated = None
        self.unacked = {}

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, method, path, body=None, end=True, extra=()):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":path", path), (":scheme", "https"),
                (":authority", "localhost")] + list(extra)
        self.conn.send_headers(sid, hdrs, end_stream=end and body is None)
        if body is not None:
            self.send_body(sid, body, end)
        self.flush()
        return sid

    def send_body(self, sid, body, end=True):
        self.conn.send_data(sid, body, end_stream=end)
        self.flush()

    def ack(self, sid=None):
        for s, n in list(self.unacked.items()):
            if sid is None or s == sid:
                self.conn.acknowledge_received_data(n, s)
                del self.unacked[s]
        self.flush()

    def pump(self, timeout=5.0, until=None):
        """Reads and handles events until until() is true or nothing comes for timeout."""
        self.sock.settimeout(timeout)
        while not (until and until()):
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return
            if not data:
                return
            for ev in self.conn.receive_data(data):
                self.handle(ev)
            self.flush()

    def handle(self, ev):
        if isinstance(ev, h2.events.ResponseReceived):
            self.headers[ev.stream_id] = dict((k.decode(), v.decode()) for k, v in ev.headers)
        elif isinstance(ev, h2.events.DataReceived):
            self.bodies[ev.stream_id] = self.bodies.get(ev.stream_id, b"") + ev.data
            if self.auto_ack:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            else:
                self.unacked[ev.stream_id] = self.unacked.get(ev.stream_id, 0) + ev.flow_controlled_length
        elif isinstance(ev, h2.events.StreamEnded):
            self.ended.add(ev.stream_id)
        elif isinstance(ev, h2.events.StreamReset):
            self.resets[ev.stream_id] = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.terminated = ev

    def status(self, sid):
        return int(self.headers[sid][":status"])

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---- curl, h2load, nghttp ----

def test_alpn_selects_h2_and_http11_stays(web):
    r = curl("--http2", "-w", "%{http_version}", url(web, "/_floe/hello"))
    assert r.stdout == b"hello from floe\n2"
    r = curl("--http1.1", "-w", "%{http_version}", url(web, "/_floe/hello"))
    assert r.stdout == b"hello from floe\n1.1"
    # prior knowledge on the plain listener (RFC 9113 §3.3)
    r = curl("--http2-prior-knowledge", "-w", "%{http_version}", url(web, "/_floe/hello", False))
    assert r.stdout == b"hello from floe\n2"
    web.wait_log(r"GET /_floe/hello 200 16 h2 host=127.0.0.1")


def test_same_handlers_over_h2(web, root, tmp_path):
    big = (root / "big.bin").read_bytes()
    r = curl("--http2", url(web, "/big.bin"))
    assert r.stdout == big
    up = tmp_path / "up.bin"
    up.write_bytes(big)
    r = curl("--http2", "--data-binary", f"@{up}", url(web, "/_floe/sha256"))
    assert hashlib.sha256(big).hexdigest().encode() in r.stdout
    r = curl("--http2", "--data-binary", f"@{up}", url(web, "/_floe/echo"))
    assert r.stdout == big
    r = curl("--http2", "-I", url(web, "/small.txt"))
    assert b"content-length: 14" in r.stdout
    r = curl("--http2", "-o", "/dev/null", "-w", "%{http_code}", url(web, "/missing"))
    assert r.stdout == b"404"
    r = curl("--http2", "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", "@/dev/null",
             url(web, "/autodiscover/autodiscover.xml"))
    assert r.stdout == b"200"  # the POX error document, as over HTTP/1.1


def test_h2load(web, root):
    r = subprocess.run(["h2load", "-n", "4000", "-c", "4", "-m", "32", url(web, "/_floe/hello")],
                       capture_output=True, text=True, timeout=120)
    assert "4000 succeeded, 0 failed, 0 errored" in r.stdout, r.stdout
    assert "4000 2xx" in r.stdout
    body = root / "small.txt"
    r = subprocess.run(["h2load", "-n", "1000", "-c", "2", "-m", "16", "-d", str(body),
                        url(web, "/_floe/echo")], capture_output=True, text=True, timeout=120)
    assert "1000 succeeded, 0 failed, 0 errored" in r.stdout, r.stdout
    # streams above the concurrency limit wait their turn on the client
    r = subprocess.run(["h2load", "-n", "400", "-c", "1", "-m", "200", url(web, "/small.txt")],
                       capture_output=True, text=True, timeout=120)
    assert "400 succeeded, 0 failed, 0 errored" in r.stdout, r.stdout


def test_settings_advertised(web):
    r = subprocess.run(["nghttp", "-nv", url(web, "/_floe/hello")], capture_output=True, text=True,
                       timeout=30)
    recv = r.stdout.split("recv SETTINGS frame", 1)[1].split("send SETTINGS frame", 1)[0]
    assert "SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100" in recv
    assert "SETTINGS_MAX_HEADER_LIST_SIZE(0x06):16384" in recv
    assert "SETTINGS_ENABLE_PUSH(0x02):0" in recv


def test_header_limits(web, tmp_path):
    r = curl("--http2", "-o", "/dev/null", "-w", "%{http_code}", "-H", "X-Big: " + "a" * 20000,
             url(web, "/_floe/hello"))
    assert r.stdout == b"431"
    many = []
    for i in range(70):
        many += ["-H", f"X-H{i}: v"]
    r = curl("--http2", "-o", "/dev/null", "-w", "%{http_code}", *many, url(web, "/_floe/hello"))
    assert r.stdout == b"431"
    # the body limit of a buffered route, announced and not. The answer comes before
    # the body is all sent, then RST_STREAM NO_ERROR (RFC 9113 §8.1): nghttp reads
    # it as the RFC says (curl 7.88 reports the reset instead of the answer).
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (1024 * 1024 + 1))
    r = subprocess.run(["nghttp", "-v", "-d", str(big), url(web, "/autodiscover/autodiscover.xml")],
                       capture_output=True, text=True, timeout=60)
    assert ":status: 413" in r.stdout, r.stdout[-2000:]
    assert "recv RST_STREAM" in r.stdout and "error_code=NO_ERROR" in r.stdout
    c = Client(web)
    sid = c.request("POST", "/autodiscover/autodiscover.xml", end=False)
    sent = 0
    while sid not in c.ended and sid not in c.resets and sent < 2 * 1024 * 1024:
        room = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size)
        if room:
            c.send_body(sid, b"y" * room, end=False)
            sent += room
        c.pump(0.05, until=lambda: sid in c.ended)
    c.pump(5, until=lambda: sid in c.ended)
    assert c.status(sid) == 413
    assert 1024 * 1024 < sent < 2 * 1024 * 1024  # answered once over the limit
    c.close()


# ---- Python h2: frames under the test's control ----

def test_flow_control_pauses_the_echo(web):
    """The client does not give back receive window: the echo's answer stalls, so the
    handler pauses the body, so the server stops giving back the stream's send window."""
    c = Client(web, auto_ack=False, initial_window=65535)
    sid = c.request("POST", "/_floe/echo", end=False)
    piece = os.urandom(16384)
    sent = 0
    deadline = time.time() + 5
    while time.time() < deadline:
        room = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size)
        if room == 0:
            c.pump(0.3)
            if c.conn.local_flow_control_window(sid) == 0:
                break
            continue
        c.send_body(sid, piece[:room], end=False)
        sent += room
        c.pump(0.01)
    # the send window stays shut: everything the server takes in is held in our
    # unacknowledged window plus the server's bounded buffers
    assert c.conn.local_flow_control_window(sid) == 0
    assert sent < 1024 * 1024, sent
    c.pump(0.5)
    assert c.conn.local_flow_control_window(sid) == 0
    # give the window back: the rest flows and the echo is complete
    c.auto_ack = True
    c.ack()
    total = sent + 200000
    extra = os.urandom(200000)
    off = 0
    while off < len(extra):
        c.pump(0.05)
        room = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size,
                   len(extra) - off)
        if room:
            c.send_body(sid, extra[off:off + room], end=False)
            off += room
    c.send_body(sid, b"", end=True)
    c.pump(10, until=lambda: sid in c.ended)
    assert c.status(sid) == 200
    assert len(c.bodies[sid]) == total
    assert c.bodies[sid].endswith(extra)
    c.close()


def test_streams_are_independent_and_resettable(web):
    c = Client(web, auto_ack=False, conn_window=16 * 1024 * 1024)
    big = c.request("GET", "/_floe/bytes?n=100000000")
    c.pump(1.0)
    # the stalled download does not hold up another stream
    small = c.request("GET", "/_floe/hello")
    c.ack(small)
    c.pump(5, until=lambda: small in c.ended)
    c.ack(small)
    assert c.bodies[small] == b"hello from floe\n"
    assert big not in c.ended
    assert len(c.bodies[big]) == 65535  # one stream window, and not a byte more
    # cancel it: the server drops it, the connection goes on
    c.conn.reset_stream(big, h2.errors.ErrorCodes.CANCEL)
    c.flush()
    again = c.request("GET", "/small.txt")
    c.auto_ack = True
    c.ack()
    c.pump(5, until=lambda: again in c.ended)
    assert c.bodies[again] == b"small over h2\n"
    c.close()


def test_concurrent_stream_limit(web):
    """Streams sent before the server's SETTINGS arrive: those over the limit of 100
    are refused (RST_STREAM REFUSED_STREAM, RFC 9113 §5.1.2), the rest served."""
    c = Client(web)
    sids = [c.request("POST", "/_floe/sha256", end=False) for _ in range(120)]
    c.pump(1.0)
    refused = [s for s in sids if c.resets.get(s) == h2.errors.ErrorCodes.REFUSED_STREAM]
    served = [s for s in sids if s not in c.resets]
    assert refused and len(served) <= 100
    for s in served:
        c.send_body(s, b"abc", end=True)
    c.pump(10, until=lambda: all(s in c.ended for s in served))
    for s in served:
        assert c.status(s) == 200 and hashlib.sha256(b"abc").hexdigest().encode() in c.bodies[s]
    c.close()


def test_goaway_on_shutdown(tmp_path_factory):
    from conftest import Node
    n = Node(tmp_path_factory.mktemp("h2stop"), {"service web": {"diagnostics": True}})
    n.start()
    # a download under way over curl, slowed to take about three seconds ...
    slow = subprocess.Popen(["curl", "-sk", "--http2", "--limit-rate", "1M", "-o", "-",
                             url(n, "/_floe/bytes?n=3000000")], stdout=subprocess.PIPE)
    # ... and a connection of our own that sees the GOAWAY frame
    c = Client(n, auto_ack=False)
    sid = c.request("GET", "/_floe/hello")
    c.pump(0.5)
    time.sleep(0.5)
    n.signal(signal.SIGTERM)
    c.pump(3, until=lambda: c.terminated is not None)
    assert c.terminated is not None, "no GOAWAY"
    assert c.terminated.error_code == h2.errors.ErrorCodes.NO_ERROR
    assert c.terminated.last_stream_id >= sid
    c.close()
    # RFC 9113 §6.8: streams the server has started are finished
    out, _ = slow.communicate(timeout=30)
    assert slow.returncode == 0 and len(out) == 3000000
    n.stop()
