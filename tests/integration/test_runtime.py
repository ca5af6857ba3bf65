"""The node runtime with real clients: configuration errors, the daytime service,
TLS with SNI, access lists, PROXY protocol, limits, reload and graceful stop."""
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest

from floe_harness import free_port, pg_url, run_floed, render_config


def http_get(sock, path="/healthz"):
    """Sends one keep-alive request on an open socket and reads the whole response."""
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    while len(body) < length:
        chunk = sock.recv(4096)
        assert chunk
        body += chunk
    return head, body


def openssl_connect(port, servername=None, extra=()):
    """Connects with `openssl s_client`, returns (returncode, output)."""
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-brief"]
    if servername:
        cmd += ["-servername", servername]
    cmd += list(extra)
    p = subprocess.run(cmd, input=b"", capture_output=True, timeout=20)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


def peer_cn(port, servername=None):
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-showcerts"] +
                       (["-servername", servername] if servername else []),
                       input=b"", capture_output=True, timeout=20)
    m = re.search(r"subject=.*?CN\s*=\s*([^\n,/]+)", p.stdout.decode(errors="replace"))
    return m.group(1).strip() if m else None


def test_check_config_valid(tmp_path):
    cfg = tmp_path / "f.conf"
    cfg.write_text("[node]\nid = n1\n[service daytime]\nenabled = yes\nlisten = 127.0.0.1:1313\n")
    r = run_floed(["--check-config", "--config", str(cfg)])
    assert r.returncode == 0, r.stderr
    assert "valid" in r.stdout


@pytest.mark.parametrize("text,line,needle", [
    ("[node]\nid = n1\ntreads = 3\n", 3, "unknown key 'treads'"),
    ("[node]\nio_threads = many\n", 2, "key 'io_threads'"),
    ("[node]\nid = n1\nthis line has no equals\n", 3, "expected 'key = value'"),
    ("[service daytime]\nlisten = 127.0.0.1:99999\n", 2, "key 'listen'"),
    ("[service nosuch]\nenabled = yes\n", 2, "unknown service [service nosuch]"),
    ("[access]\nmode = grant\nlist = 10.0.0.0/33\n", 3, "key 'list'"),
    ("[log]\nlevel = loud\n", 2, "key 'level'"),
    ("id = outside\n", 1, "outside any [section]"),
])
def test_bad_config_names_file_line_key(tmp_path, text, line, needle):
    cfg = tmp_path / "bad.conf"
    cfg.write_text(text)
    for args in (["--check-config", "--config", str(cfg)], ["--config", str(cfg)]):
        r = run_floed(args)
        assert r.returncode == 2
        assert f"{cfg}:{line}:" in r.stderr, r.stderr
        assert needle in r.stderr, r.stderr


def test_missing_config_file(tmp_path):
    r = run_floed(["--config", str(tmp_path / "nope.conf")])
    assert r.returncode == 2
    assert "nope.conf" in r.stderr and "No such file" in r.stderr


def test_port_in_use_is_a_clear_error(tmp_path):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    cfg = tmp_path / "f.conf"
    cfg.write_text(render_config({
        "node": {"state_dir": tmp_path / "st"},
        "service admin": {"listen": f"127.0.0.1:{port}", "listen_tls": ""},
    }))
    r = run_floed(["--config", str(cfg)])
    blocker.close()
    assert r.returncode == 2
    assert f"127.0.0.1:{port}" in r.stderr and "in use" in r.stderr, r.stderr


def test_unreadable_certificate_and_mismatched_key(tmp_path, certs):
    for cert, key, needle in ((tmp_path / "missing.pem", None, "missing.pem"),
                              (certs / "exact.pem", certs / "other.key", "does not match")):
        cfg = tmp_path / "f.conf"
        sec = {"file": cert}
        if key:
            sec["key"] = key
        cfg.write_text(render_config({
            "node": {"state_dir": tmp_path / "st"},
            "certificate main": sec,
            "service admin": {"listen": f"127.0.0.1:{free_port()}", "listen_tls": ""},
        }))
        r = run_floed(["--config", str(cfg)])
        assert r.returncode == 2, r.stderr
        assert needle in r.stderr, r.stderr


def test_daytime_plain_and_tls(node_factory):
    plain, tls = free_port(), free_port()
    n = node_factory({"service daytime": {"enabled": True, "listen": f"127.0.0.1:{plain}",
                                          "listen_tls": f"127.0.0.1:{tls}"}}, database=False)
    with socket.create_connection(("127.0.0.1", plain), timeout=5) as s:
        data = b""
        while True:
            chunk = s.recv(200)
            if not chunk:
                break
            data += chunk
    assert re.fullmatch(rb"[A-Z][a-z]+day, [A-Z][a-z]+ \d\d, \d{4} \d\d:\d\d:\d\d-UTC\r\n", data), data
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", tls), timeout=5) as raw:
        with ctx.wrap_socket(raw) as s:
            assert s.version() in ("TLSv1.2", "TLSv1.3")
            assert s.recv(200).endswith(b"-UTC\r\n")
    n.wait_log(r"daytime \[s=\w+\] \[c=127\.0\.0\.1\] connection from 127\.0\.0\.1")


def test_tls_versions_and_selfsigned(node_factory):
    n = node_factory(database=False)
    rc, out = openssl_connect(n.admin_tls_port, extra=["-tls1_1"])
    assert rc != 0, out
    rc, out = openssl_connect(n.admin_tls_port, extra=["-tls1_2"])
    assert rc == 0 and "TLSv1.2" in out, out
    rc, out = openssl_connect(n.admin_tls_port, extra=["-tls1_3"])
    assert rc == 0 and "TLSv1.3" in out, out
    assert (n.dir / "state" / "selfsigned.pem").exists()


def test_sni_selection(node_factory, certs):
    n = node_factory({
        "certificate default": {"file": certs / "default.all.pem"},
        "certificate exact": {"file": certs / "exact.pem", "key": certs / "exact.key",
                              "chain": certs / "ca.pem"},
        "certificate wild": {"file": certs / "wild.all.pem"},
        "certificate deep": {"file": certs / "deep.all.pem"},
        "tls": {"default": "default"},
    }, database=False)
    port = n.admin_tls_port
    assert peer_cn(port, "mail.example.test") == "mail.example.test"       # exact beats wildcard
    assert peer_cn(port, "MAIL.Example.TEST") == "mail.example.test"       # case-insensitive
    assert peer_cn(port, "other.example.test") == "*.example.test"         # wildcard
    assert peer_cn(port, "a.deep.example.test") == "*.deep.example.test"   # most specific wildcard
    assert peer_cn(port, "x.y.example.test") == "default.test"             # wildcard is one label
    assert peer_cn(port, "unknown.test") == "default.test"
    assert peer_cn(port, None) == "default.test"
    # curl verifies the chain and the name against the test CA
    r = subprocess.run(["curl", "-sS", "--cacert", str(certs / "ca.pem"), "--resolve",
                        f"mail.example.test:{port}:127.0.0.1",
                        f"https://mail.example.test:{port}/healthz"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr


def connect_gets_banner(port, source="127.0.0.1"):
    """True when daytime answers; False when the server closes without a word."""
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    try:
        return bool(s.recv(100))
    except ConnectionResetError:
        return False
    finally:
        s.close()


def test_access_lists(node_factory):
    port = free_port()
    n = node_factory({
        "pattern Office": {"list": "127.0.0.2; 127.0.0-5.9"},
        "pattern All": {"list": "[Office], 127.0.1.*"},
        "access": {"mode": "grant", "list": "[All];127.0.0.1"},
        "service daytime": {"enabled": True, "listen": f"127.0.0.1:{port}",
                            "access": "deny", "access_list": "127.0.0.3"},
    }, database=False)
    assert connect_gets_banner(port, "127.0.0.1")
    assert connect_gets_banner(port, "127.0.0.2")        # pattern
    assert connect_gets_banner(port, "127.0.1.77")       # nested pattern, wildcard
    assert connect_gets_banner(port, "127.0.0.9")        # octet range
    assert not connect_gets_banner(port, "127.0.0.4")    # not granted globally
    assert not connect_gets_banner(port, "127.0.0.3")    # granted globally, denied by the service
    n.wait_log(r"\[c=127\.0\.0\.4\] access denied")
    n.wait_log(r"\[c=127\.0\.0\.3\] access denied")


def proxy_v2(src, sport, dst, dport):
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
    return sig + b"\x21\x11" + len(addrs).to_bytes(2, "big") + addrs


def test_proxy_protocol(node_factory):
    port = free_port()
    n = node_factory({
        "service daytime": {"enabled": True, "listen": f"127.0.0.1:{port}",
                            "proxy_protocol": True, "proxy_from": "127.0.0.1",
                            "access": "deny", "access_list": "198.51.100.0/24"},
        # the admin listener trusts a balancer at 127.0.0.2 (the harness checks health from .1)
        "service admin": {"proxy_protocol": True, "proxy_from": "127.0.0.2"},
    }, database=False)

    def talk(header, source="127.0.0.1"):
        s = socket.socket()
        s.bind((source, 0))
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
        if header:
            s.sendall(header)
        try:
            return s.recv(100)
        except ConnectionResetError:
            return b""
        finally:
            s.close()

    assert talk(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 13\r\n").endswith(b"UTC\r\n")
    n.wait_log(r"daytime \[s=\w+\] \[c=203\.0\.113\.7\] connection from 203\.0\.113\.7")
    assert talk(proxy_v2("203.0.113.9", 40001, "127.0.0.1", 13)).endswith(b"UTC\r\n")
    n.wait_log(r"\[c=203\.0\.113\.9\] connection from")
    # the real client address is what the access list sees
    assert talk(b"PROXY TCP4 198.51.100.5 127.0.0.1 40000 13\r\n") == b""
    n.wait_log(r"\[c=198\.51\.100\.5\] access denied")
    assert talk(b"GET / HTTP/1.0\r\n\r\n") == b""                # no header from the balancer
    n.wait_log(r"invalid PROXY protocol header")
    # a peer that is not a configured balancer connects directly, header or not
    assert talk(None, source="127.0.0.2").endswith(b"UTC\r\n")
    # curl's own PROXY v1 support against the HTTP admin listener
    r = subprocess.run(["curl", "-sS", "--interface", "127.0.0.2", "--haproxy-protocol",
                        f"http://127.0.0.1:{n.admin_port}/healthz"], capture_output=True, text=True)
    assert r.stdout == "ok\n", r.stderr
    # curl sends its own source address (127.0.0.2) in the header
    n.wait_log(r"admin \[s=\w+\] \[c=127\.0\.0\.2\] GET /healthz 200")
    r = subprocess.run(["curl", "-sS", "--interface", "127.0.0.2", f"http://127.0.0.1:{n.admin_port}/healthz"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and r.stdout == ""   # the balancer must send the header


def test_connection_limits(node_factory):
    n = node_factory({"service admin": {"max_connections_per_ip": 2}}, database=False)
    socks = [socket.create_connection(("127.0.0.1", n.admin_port)) for _ in range(2)]
    time.sleep(0.2)
    third = socket.create_connection(("127.0.0.1", n.admin_port), timeout=5)
    assert third.recv(100) == b""
    n.wait_log(r"too many connections from this address")
    for s in socks:
        assert http_get(s)[0].startswith(b"HTTP/1.1 200")
        s.close()
    third.close()


def test_idle_and_handshake_timeouts(node_factory):
    n = node_factory({"service admin": {"idle_timeout": 1, "handshake_timeout": 1}}, database=False)
    s = socket.create_connection(("127.0.0.1", n.admin_port), timeout=10)
    t0 = time.time()
    assert s.recv(10) == b""   # closed by the node, not by our timeout
    assert time.time() - t0 < 8
    s.close()
    s = socket.create_connection(("127.0.0.1", n.admin_tls_port), timeout=10)
    s.sendall(b"\x16\x03\x01")  # the start of a ClientHello, never finished
    assert s.recv(10) == b""
    s.close()
    n.wait_log(r"TLS handshake timed out")
    n.wait_log(r"idle timeout")


def test_garbage_gets_an_error_and_the_node_keeps_serving(node_factory):
    n = node_factory(database=False)
    for junk in (b"\x00\xff\x13garbage\r\n\r\n", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
                 b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n"):
        s = socket.create_connection(("127.0.0.1", n.admin_port), timeout=5)
        s.sendall(junk)
        reply = s.recv(100)
        assert re.match(rb"HTTP/1.1 4\d\d ", reply), reply
        s.close()
    with socket.create_connection(("127.0.0.1", n.admin_port), timeout=5) as s:
        assert http_get(s)[0].startswith(b"HTTP/1.1 200")


def test_bandwidth_cap_and_trusted_exemption(node_factory):
    body = b"x" * (48 * 1024)
    req = (b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)) + body

    def upload_seconds(n):
        with socket.create_connection(("127.0.0.1", n.admin_port), timeout=30) as s:
            t0 = time.time()
            s.sendall(req)
            assert s.recv(100).startswith(b"HTTP/1.1 200")
            return time.time() - t0

    capped = node_factory({"service admin": {"bandwidth": 16}, "limits": {"trusted": "10.9.9.9"}},
                          database=False)
    # 48 KiB at 16 KiB/s with a one-second burst cannot take less than two seconds
    assert upload_seconds(capped) >= 1.9
    trusted = node_factory({"service admin": {"bandwidth": 16}}, database=False)  # loopback trusted
    assert upload_seconds(trusted) < 1.9


def test_metrics_and_readiness(node_factory):
    n = node_factory()
    r = subprocess.run(["curl", "-sS", "-i", f"http://127.0.0.1:{n.admin_port}/readyz"],
                       capture_output=True, text=True)
    assert r.stdout.startswith("HTTP/1.1 200") and r.stdout.endswith("ready\n"), r.stdout
    r = subprocess.run(["curl", "-sS", f"http://127.0.0.1:{n.admin_port}/metrics"],
                       capture_output=True, text=True)
    assert '# TYPE floe_connections_total counter' in r.stdout
    m = re.search(r'floe_commands_total\{service="admin"\} (\d+)', r.stdout)
    assert m and int(m.group(1)) >= 1
    assert re.search(r'floe_command_duration_seconds_bucket\{service="admin",le="\+Inf"\} \d+', r.stdout)
    assert 'floe_node_info{node="it1"' in r.stdout
    no_db = node_factory(database=False)
    r = subprocess.run(["curl", "-sS", "-i", f"http://127.0.0.1:{no_db.admin_port}/readyz"],
                       capture_output=True, text=True)
    assert r.stdout.startswith("HTTP/1.1 503"), r.stdout


def test_reload_certificates_without_dropping_connections(node_factory, certs, tmp_path):
    live = tmp_path / "live.pem"
    live.write_bytes((certs / "exact.all.pem").read_bytes())
    n = node_factory({"certificate main": {"file": live}}, database=False)
    assert peer_cn(n.admin_tls_port) == "mail.example.test"
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    held = ctx.wrap_socket(socket.create_connection(("127.0.0.1", n.admin_tls_port), timeout=5))
    assert http_get(held)[0].startswith(b"HTTP/1.1 200")
    live.write_bytes((certs / "wild.all.pem").read_bytes())
    n.signal(signal.SIGHUP)
    n.wait_log("configuration and certificates reloaded")
    assert peer_cn(n.admin_tls_port) == "*.example.test"
    assert http_get(held)[0].startswith(b"HTTP/1.1 200")   # the old connection still works
    # a broken file on reload: reported, and the running certificates stay
    live.write_text("not a certificate\n")
    n.signal(signal.SIGHUP)
    n.wait_log("reload failed, keeping the running configuration")
    assert peer_cn(n.admin_tls_port) == "*.example.test"
    held.close()


def test_reload_applies_access_lists(node_factory):
    port = free_port()
    n = node_factory({"service daytime": {"enabled": True, "listen": f"127.0.0.1:{port}"}},
                     database=False)
    assert connect_gets_banner(port)
    n.sections["service daytime"].update({"access": "deny", "access_list": "127.0.0.1"})
    n.write_config()
    n.signal(signal.SIGHUP)
    n.wait_log("configuration and certificates reloaded")
    assert not connect_gets_banner(port)


def test_graceful_stop_closes_idle_sessions(node_factory):
    n = node_factory(database=False)
    s = socket.create_connection(("127.0.0.1", n.admin_port), timeout=10)
    assert http_get(s)[0].startswith(b"HTTP/1.1 200")
    t0 = time.time()
    n.stop()           # SIGTERM; asserts exit status 0 and no sanitizer report
    assert time.time() - t0 < 5
    assert s.recv(10) == b""
    s.close()
    assert "received SIGTERM, stopping" in n.output() and "node stopped" in n.output()


def test_log_files_carry_every_field(node_factory):
    n = node_factory(database=False)
    subprocess.run(["curl", "-sS", f"http://127.0.0.1:{n.admin_port}/healthz"], capture_output=True)
    n.wait_log(r"GET /healthz 200")
    files = list((n.dir / "log").glob("admin-it1-*-00.log"))
    assert files, list((n.dir / "log").iterdir())
    text = files[0].read_text()
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z it1 admin \[s=\w+\] \[c=127\.0\.0\.1\] GET /healthz 200",
                     text, re.M), text


def test_ipv6_and_wildcard_listeners(node_factory):
    v6, wild = free_port("::1"), free_port()
    n = node_factory({"service daytime": {"enabled": True, "listen": f"[::1]:{v6} *:{wild}"}},
                     database=False)
    for host, port in (("::1", v6), ("127.0.0.1", wild), ("::1", wild)):
        with socket.create_connection((host, port), timeout=5) as s:
            assert s.recv(100).endswith(b"-UTC\r\n")
    n.wait_log(r"\[c=::1\] connection from ::1")
    r = subprocess.run(["curl", "-sS", "-g", f"http://[::1]:{wild}/"], capture_output=True)
    assert r.returncode != 0   # daytime is not HTTP: the point is only that [::] accepted


def test_service_connection_limit(node_factory):
    n = node_factory({"service admin": {"max_connections": 2}}, database=False)
    held = [socket.create_connection(("127.0.0.1", n.admin_port)) for _ in range(2)]
    time.sleep(0.2)
    extra = socket.create_connection(("127.0.0.1", n.admin_port), timeout=5)
    assert extra.recv(100) == b""
    n.wait_log(r"connection refused: too many connections$|connection refused: too many connections\n")
    for s in held:
        s.close()
    extra.close()
    time.sleep(0.3)
    with socket.create_connection(("127.0.0.1", n.admin_port), timeout=5) as s:
        assert http_get(s)[0].startswith(b"HTTP/1.1 200")


def test_multi_host_database_url(node_factory, tmp_path):
    """libpq tries the hosts in turn and keeps the one that accepts writes, so a
    promoted replica is found without changing the configuration."""
    m = re.search(r"host=(\S+)", pg_url())
    url = re.sub(r"host=\S+", f"host={tmp_path}/no-such-server,{m.group(1)}", pg_url())
    url += " target_session_attrs=read-write"
    n = node_factory({"database": {"url": url}})
    r = subprocess.run(["curl", "-sS", f"http://127.0.0.1:{n.admin_port}/readyz"],
                       capture_output=True, text=True)
    assert r.stdout == "ready\n", r.stdout + r.stderr


def test_unusable_log_dir_stops_the_start(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cfg = tmp_path / "f.conf"
    cfg.write_text(render_config({
        "node": {"state_dir": tmp_path / "st"},
        "log": {"dir": blocker / "logs"},
        "service admin": {"listen": f"127.0.0.1:{free_port()}", "listen_tls": ""},
        "service web": {"listen": "", "listen_tls": ""},
    }))
    r = run_floed(["--config", str(cfg)])
    assert r.returncode == 2
    assert "[log] dir" in r.stderr and "cannot be used" in r.stderr, r.stderr


def test_slow_client_gets_408(node_factory):
    """A request trickled a byte at a time never trips the idle timeout; the
    request timeout bounds the whole request."""
    n = node_factory({"service admin": {"request_timeout": 2, "idle_timeout": 60}}, database=False)
    s = socket.create_connection(("127.0.0.1", n.admin_port), timeout=10)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    reply = b""
    t0 = time.time()
    try:
        for ch in b"X-Slow: " + b"a" * 40:
            s.sendall(bytes([ch]))
            time.sleep(0.25)
            if time.time() - t0 > 8:
                break
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        reply = s.recv(200)
    except ConnectionResetError:
        pass
    s.close()
    assert reply.startswith(b"HTTP/1.1 408"), reply
    n.wait_log(r"request not complete after 2 s: answering 408")
    with socket.create_connection(("127.0.0.1", n.admin_port), timeout=5) as s2:
        assert http_get(s2)[0].startswith(b"HTTP/1.1 200")   # ordinary clients unaffected
