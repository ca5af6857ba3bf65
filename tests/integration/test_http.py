"""The HTTP/1.1 core with real clients (curl, Python's requests, raw sockets where
the wire matters): keep-alive and pipelining, chunked request bodies, Expect:
100-continue, streaming request and response bodies with backpressure both ways,
limits, static files from a document root, virtual hosts, and the
/.well-known/caldav and /.well-known/carddav redirects."""
import hashlib
import os
import re
import socket
import subprocess
import threading
import time

import pytest
import requests
import urllib3

urllib3.disable_warnings()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A document root with a small file, a large one, a directory with an index,
    a hidden file and a symbolic link; a second root for a virtual host."""
    d = tmp_path_factory.mktemp("www")
    (d / "small.txt").write_text("small file\n")
    (d / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (d / "docs").mkdir()
    (d / "docs" / "index.html").write_text("<h1>docs</h1>\n")
    (d / ".secret").write_text("hidden\n")
    (d / "link.txt").symlink_to(d / "small.txt")
    other = tmp_path_factory.mktemp("www-other")
    (other / "small.txt").write_text("the other site\n")
    return d, other


@pytest.fixture(scope="module")
def web(tmp_path_factory, site):
    from conftest import Node
    root, other = site
    n = Node(tmp_path_factory.mktemp("http"), {"service web": {
        "diagnostics": True,
        "root": str(root),
        "vhosts": "mail, other",
        "vhost.mail.hosts": "mail.example.test, *.mail.example.test",
        "vhost.mail.routes": "/autodiscover, /_floe",
        "vhost.other.hosts": "www.other.test",
        "vhost.other.root": str(other),
        "well_known_carddav": "https://dav.example.test/card/",
    }})
    n.start()
    yield n
    n.stop()


def base(n, tls=False):
    return f"https://127.0.0.1:{n.web_tls_port}" if tls else f"http://127.0.0.1:{n.web_port}"


def connect(n):
    return socket.create_connection(("127.0.0.1", n.web_port), timeout=10)


def read_response(f):
    """Reads one response from a file object: (status, headers dict, body bytes)."""
    status_line = f.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    status = int(status_line.split()[1])
    headers = {}
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        k, v = line.decode().split(":", 1)
        headers[k.strip().lower()] = v.strip()
    body = b""
    if headers.get("transfer-encoding") == "chunked":
        while True:
            size = int(f.readline().strip(), 16)
            if size == 0:
                f.readline()
                break
            body += f.read(size)
            f.readline()
    elif "content-length" in headers:
        body = f.read(int(headers["content-length"]))
    return status, headers, body


def rss_kb(n):
    with open(f"/proc/{n.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# ---- keep-alive, pipelining, chunked, 100-continue ----

def test_pipelined_requests_answered_in_order(web):
    body = b"pipelined body"
    req = (b"GET /_floe/hello HTTP/1.1\r\nHost: x\r\n\r\n"
           b"POST /_floe/sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
           b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /_floe/hello HTTP/1.0\r\n\r\n") % (len(body), body)
    with connect(web) as s:
        s.sendall(req)
        f = s.makefile("rb")
        st, h, b = read_response(f)
        assert (st, b) == (200, b"hello from floe\n")
        assert "connection" not in h  # 1.1 keeps the connection by default
        st, h, b = read_response(f)
        assert st == 200 and hashlib.sha256(body).hexdigest().encode() in b
        st, h, b = read_response(f)
        assert (st, b) == (200, b"small file\n")
        st, h, b = read_response(f)
        assert st == 200 and h["connection"] == "close"  # 1.0 without keep-alive
        assert f.read() == b""  # and then the server closes


def test_chunked_request_body_buffered_route(web):
    """A chunked body reaches a buffered handler whole: the POX parser reads a
    complete request and answers 601 for a schema it does not serve."""
    xml = (b'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/'
           b'exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>a@b.test'
           b'</EMailAddress><AcceptableResponseSchema>urn:other</AcceptableResponseSchema>'
           b'</Request></Autodiscover>')
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(xml[i:i + 7]), xml[i:i + 7]) for i in range(0, len(xml), 7))
    with connect(web) as s:
        s.sendall(b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
        st, h, b = read_response(s.makefile("rb"))
    assert st == 200 and b"<ErrorCode>601</ErrorCode>" in b, b


def test_chunked_upload_with_curl(web, tmp_path):
    data = os.urandom(2 * 1024 * 1024 + 3)
    p = tmp_path / "up.bin"
    p.write_bytes(data)
    for extra in (["-H", "Transfer-Encoding: chunked"], ["-T", str(p)]):
        args = ["curl", "-s", "--data-binary", f"@{p}"] if extra[0] == "-H" else ["curl", "-s"]
        r = subprocess.run(args + extra + [base(web) + "/_floe/sha256"], capture_output=True,
                           text=True, timeout=60)
        assert hashlib.sha256(data).hexdigest() in r.stdout, r.stdout


def test_expect_100_continue(web):
    with connect(web) as s:
        f = s.makefile("rb")
        s.sendall(b"PUT /_floe/sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert f.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert f.readline() == b"\r\n"
        s.sendall(b"hello")
        st, h, b = read_response(f)
        assert st == 200 and hashlib.sha256(b"hello").hexdigest().encode() in b
        # a buffered route, body over its limit: 413 at once, no 100, and the
        # connection closes (the body was never read)
        s.sendall(b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 5000000\r\nExpect: 100-continue\r\n\r\n")
        st, h, b = read_response(f)
        assert st == 413
        assert f.read() == b""
    # an expectation we do not know
    with connect(web) as s:
        s.sendall(b"POST /_floe/sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                  b"Expect: teapot\r\n\r\nx")
        st, h, b = read_response(s.makefile("rb"))
        assert st == 417


# ---- streaming and backpressure ----

def test_streamed_response_with_curl(web):
    r = subprocess.run(["curl", "-s", base(web) + "/_floe/bytes?n=50000000"], capture_output=True,
                       timeout=60)
    assert len(r.stdout) == 50000000
    assert r.stdout[:26] == b"abcdefghijklmnopqrstuvwxyz"


def test_streamed_response_waits_for_a_slow_reader(web):
    """256 MB answered to a client that reads nothing for a while: the server holds
    a bounded amount, not the answer."""
    before = rss_kb(web)
    with connect(web) as s:
        s.sendall(b"GET /_floe/bytes?n=268435456 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(2)
        grown = rss_kb(web) - before
        assert grown < 64 * 1024, f"server grew by {grown} kB for a reader that does not read"
        got = 0
        s.settimeout(30)
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
            if got >= 268435456:
                break
    assert got >= 268435456


def test_echo_backpressure_both_ways(web):
    """The echo handler writes each piece of the request body into the answer and
    pauses the body while the answer is not taken: a client that sends without
    reading is stopped by TCP long before it has sent 64 MB."""
    total = 64 * 1024 * 1024
    data = os.urandom(1024 * 1024)
    s = connect(web)
    s.sendall(b"POST /_floe/echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % total)
    s.setblocking(False)
    sent = 0
    deadline = time.time() + 3
    while time.time() < deadline and sent < total:
        try:
            n = s.send(data[sent % len(data):])
            sent += n
        except BlockingIOError:
            time.sleep(0.05)
    assert sent < total * 3 // 4, f"the server took {sent} bytes without being read"
    # now read the answer while the rest goes out
    s.setblocking(True)
    s.settimeout(30)
    err = []

    def send_rest():
        try:
            off = sent
            while off < total:
                n = s.send(data[off % len(data):][:total - off])
                off += n
        except OSError as e:
            err.append(e)

    t = threading.Thread(target=send_rest)
    t.start()
    f = s.makefile("rb")
    st, h, b = read_response(f)
    t.join()
    s.close()
    assert not err
    assert st == 200 and len(b) == total
    expected = (data * (total // len(data)))
    assert hashlib.sha256(b).digest() == hashlib.sha256(expected).digest()


# ---- limits and bad input ----

def test_limits_and_bad_requests(web):
    def raw(req):
        with connect(web) as s:
            s.sendall(req)
            return read_response(s.makefile("rb"))[0]
    assert raw(b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n") == 404
    assert raw(b"GET /a/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n") == 400
    assert raw(b"GET / HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n") == 431
    assert raw(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n") == 414
    assert raw(b"POST /_floe/sha256 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n") == 400
    assert raw(b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n") == 413
    assert raw(b"GET / HTTP/3.0\r\n\r\n") == 505
    # a buffered route's limit also holds for a chunked body with no length given
    with connect(web) as s:
        s.sendall(b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(20):
                s.sendall(b"10000\r\n" + b"x" * 0x10000 + b"\r\n")
        except OSError:
            pass
        assert read_response(s.makefile("rb"))[0] == 413


def test_slow_request_times_out(tmp_path_factory):
    from conftest import Node
    n = Node(tmp_path_factory.mktemp("slow"), {"service web": {"request_timeout": 1}})
    n.start()
    try:
        with socket.create_connection(("127.0.0.1", n.web_port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\n")
            time.sleep(1.5)
            s.sendall(b"Host: x\r\n")
            st, h, b = read_response(s.makefile("rb"))
            assert st == 408
    finally:
        n.stop()


# ---- static files ----

def test_static_files(web, site):
    root, _ = site
    r = requests.get(base(web) + "/small.txt")
    assert r.status_code == 200 and r.text == "small file\n"
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    etag, lm = r.headers["ETag"], r.headers["Last-Modified"]
    assert requests.get(base(web) + "/small.txt", headers={"If-None-Match": etag}).status_code == 304
    assert requests.get(base(web) + "/small.txt", headers={"If-Modified-Since": lm}).status_code == 304
    assert requests.get(base(web) + "/small.txt",
                        headers={"If-None-Match": '"other"', "If-Modified-Since": lm}).status_code == 200
    h = requests.head(base(web) + "/big.bin")
    assert h.status_code == 200 and int(h.headers["Content-Length"]) == 3 * 1024 * 1024 + 17
    assert h.content == b""
    # larger than one piece: streamed as the client takes it, over TLS as well
    for tls in (False, True):
        r = requests.get(base(web, tls) + "/big.bin", verify=False)
        assert r.content == (root / "big.bin").read_bytes()
    r = requests.get(base(web) + "/docs", allow_redirects=False)
    assert r.status_code == 301 and r.headers["Location"] == "/docs/"
    assert requests.get(base(web) + "/docs/").text == "<h1>docs</h1>\n"
    assert requests.get(base(web) + "/.secret").status_code == 404
    assert requests.get(base(web) + "/link.txt").status_code == 404  # no symbolic links
    assert requests.get(base(web) + "/missing.txt").status_code == 404
    r = requests.post(base(web) + "/small.txt", data="x")
    assert r.status_code == 405 and "GET" in r.headers["Allow"]


# ---- virtual hosts ----

def test_virtual_hosts(web):
    def get(path, host):
        return requests.get(base(web) + path, headers={"Host": host}, allow_redirects=False)
    # the default site: routes and files
    assert get("/_floe/hello", "plain.test").status_code == 200
    assert get("/small.txt", "plain.test").text == "small file\n"
    # vhost "mail": only its route prefixes, no files
    assert get("/_floe/hello", "mail.example.test").status_code == 200
    assert get("/_floe/hello", "x.mail.example.test:80").status_code == 200
    assert get("/small.txt", "mail.example.test").status_code == 404
    assert get("/.well-known/caldav", "MAIL.example.test").status_code == 404
    # vhost "other": its own root, and every route
    assert get("/small.txt", "www.other.test").text == "the other site\n"
    assert get("/_floe/hello", "www.other.test").status_code == 200


def test_well_known_redirects(web):
    r = requests.get(base(web) + "/.well-known/caldav", allow_redirects=False)
    assert r.status_code == 301 and r.headers["Location"] == "/dav/"
    r = requests.request("PROPFIND", base(web, True) + "/.well-known/carddav", verify=False,
                         allow_redirects=False)
    assert r.status_code == 301 and r.headers["Location"] == "https://dav.example.test/card/"


def test_diagnostics_are_off_by_default(node_factory):
    n = node_factory()
    r = requests.get(f"http://127.0.0.1:{n.web_port}/_floe/hello")
    assert r.status_code == 404


def test_access_log_lines(web):
    requests.get(base(web) + "/small.txt", headers={"Host": "www.other.test"})
    web.wait_log(r"GET /small.txt 200 15 host=www.other.test")


def test_stalled_body_hits_the_idle_timeout(tmp_path_factory):
    """A client that starts a streamed body and then sends nothing is waited for no
    longer than the idle timeout (the handler waiting on it does not keep it open)."""
    from conftest import Node
    n = Node(tmp_path_factory.mktemp("idle"), {"service web": {"idle_timeout": 1,
                                                               "diagnostics": True}})
    n.start()
    try:
        with socket.create_connection(("127.0.0.1", n.web_port), timeout=10) as s:
            s.sendall(b"POST /_floe/sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
            t0 = time.time()
            assert s.recv(100) == b""  # closed by the server
            assert time.time() - t0 < 5
    finally:
        n.stop()


def test_wrk_load(web):
    """A short load test with wrk: many keep-alive connections at once, every request
    answered, and the node still healthy afterwards."""
    r = subprocess.run(["wrk", "-t", "2", "-c", "50", "-d", "3s", "--latency",
                        base(web) + "/_floe/hello"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    m = re.search(r"(\d+) requests in", r.stdout)
    assert m and int(m.group(1)) > 1000, r.stdout
    assert "Socket errors" not in r.stdout and "Non-2xx" not in r.stdout, r.stdout
    assert requests.get(f"http://127.0.0.1:{web.admin_port}/healthz", timeout=5).status_code == 200
