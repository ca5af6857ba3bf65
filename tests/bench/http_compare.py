#!/usr/bin/env python3
"""HTTP benchmark, run by `ops/bench http`: Floe's web service beside nginx on
this machine, in the same run, measured with wrk.

What runs:
  - floed from the release build: the web service on a free loopback port
    (plain HTTP/1.1), admin on loopback for /healthz, every other service off;
    io_threads = the number of CPUs; [service web] root = a directory holding
    hello.txt, diagnostics = yes (for /_floe/hello); a domain with SmartDiscover
    settings in the private PostgreSQL of ops/stack.
  - nginx (Debian's nginx-light) as a private instance from a temporary prefix:
    worker_processes = the number of CPUs, serving the same directory on another
    loopback port, keep-alive on, its access log on (Floe logs every request too).

What is measured (each for D seconds with T wrk threads and C connections,
keep-alive, after a short warm-up):
  1. Floe  GET /hello.txt                      a static file from the document root
  2. Floe  GET /_floe/hello                    a route answering from memory, same bytes
  3. Floe  GET /autodiscover/autodiscover.json Autodiscover v2 for a domain with
                                               per-domain settings (cached rows)
  4. nginx GET /hello.txt                      the same file
Each line gives requests/s and wrk's 99th percentile latency; then the ratios of
Floe to nginx. Every answer is checked once with curl before it is measured.

usage: http_compare.py --bin BUILD_DIR --pg CONNINFO --redis URL --work DIR
                       [--duration D] [--threads T] [--connections C]
"""
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

HELLO = b"hello from floe\n"  # what /_floe/hello answers: the file holds the same bytes
DOMAIN = "bench.test"
OTHER_SERVICES = ("smtp", "submission", "submissions", "pop3", "daytime", "imap", "imaps", "lmtp",
                  "managesieve", "sieve", "ldap", "ldaps", "dav", "activesync")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def fresh_database(pg, name):
    for q in (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'):
        r = subprocess.run(["psql", pg, "-Xqc", q], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("psql: " + r.stderr)
    return re.sub(r"dbname=\S+", f"dbname={name}", pg)


def write_ini(path, sections):
    with open(path, "w") as f:
        for name, keys in sections.items():
            f.write(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) + "\n")


class Floe:
    def __init__(self, bindir, pg, redis, work, www):
        self.bindir = bindir
        self.dir = os.path.join(work, "floe")
        os.makedirs(os.path.join(self.dir, "state"), exist_ok=True)
        self.config = os.path.join(self.dir, "floed.conf")
        self.port, admin, admin_tls, web_tls = free_port(), free_port(), free_port(), free_port()
        self.admin = admin
        sections = {
            "node": {"id": "benchhttp", "state_dir": os.path.join(self.dir, "state"),
                     "io_threads": os.cpu_count()},
            "log": {"dir": os.path.join(self.dir, "log")},
            "database": {"url": fresh_database(pg, "floe_bench_http")},
            "redis": {"url": redis},
            "service admin": {"listen": f"127.0.0.1:{admin}", "listen_tls": f"127.0.0.1:{admin_tls}"},
            "service web": {"listen": f"127.0.0.1:{self.port}", "listen_tls": f"127.0.0.1:{web_tls}",
                            "root": www, "diagnostics": "yes", "public_hostname": "mail." + DOMAIN},
        }
        for name in OTHER_SERVICES:
            if self.known_service(name):
                sections[f"service {name}"] = {"enabled": "no"}
        write_ini(self.config, sections)
        self.proc = None

    def known_service(self, name):
        """Whether this floed has a service `name` (it rejects unknown ones)."""
        write_ini(self.config, {"node": {"id": "probe"}, f"service {name}": {"enabled": "no"}})
        r = subprocess.run([os.path.join(self.bindir, "floed"), "--check-config", "--config",
                            self.config], capture_output=True, text=True, timeout=30)
        return r.returncode == 0

    def floectl(self, *args):
        r = subprocess.run([os.path.join(self.bindir, "floectl"), "--config", self.config] +
                           list(args), capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("floectl " + " ".join(args) + ": " + r.stderr)

    def start(self):
        self.out = open(os.path.join(self.dir, "floed.out"), "wb")
        self.proc = subprocess.Popen([os.path.join(self.bindir, "floed"), "--config", self.config],
                                     stdout=self.out, stderr=self.out)
        wait_port(self.admin, self.proc)
        wait_port(self.port, self.proc)
        self.floectl("domain", "add", DOMAIN)
        self.floectl("autodiscover", "set", DOMAIN, "imap_tls", "starttls",
                     "webclient_url", f"https://mail.{DOMAIN}/webmail/")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


class Nginx:
    def __init__(self, work, www):
        self.dir = os.path.join(work, "nginx")
        for d in ("logs", "tmp"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        self.port = free_port()
        user = "user root root;\n" if os.geteuid() == 0 else ""
        conf = f"""{user}worker_processes {os.cpu_count()};
pid {self.dir}/nginx.pid;
error_log {self.dir}/logs/error.log;
events {{ worker_connections 4096; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {self.dir}/logs/access.log;
    client_body_temp_path {self.dir}/tmp/body;
    proxy_temp_path {self.dir}/tmp/proxy;
    fastcgi_temp_path {self.dir}/tmp/fastcgi;
    uwsgi_temp_path {self.dir}/tmp/uwsgi;
    scgi_temp_path {self.dir}/tmp/scgi;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{self.port};
        root {www};
    }}
}}
"""
        self.config = os.path.join(self.dir, "nginx.conf")
        with open(self.config, "w") as f:
            f.write(conf)
        self.proc = None

    def start(self):
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = subprocess.Popen([nginx, "-p", self.dir, "-c", self.config, "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, then exit
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


def check(url, want_status=200, contains=None):
    r = subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", url], capture_output=True,
                       timeout=30)
    body, _, status = r.stdout.rpartition(b"\n")
    if int(status or 0) != want_status or (contains and contains not in body):
        raise RuntimeError(f"{url}: status {status!r}, body {body[:200]!r}")


def wrk(url, duration, threads, connections):
    """requests/s and p99 in ms from wrk --latency."""
    subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", "2s", url],
                   capture_output=True, timeout=60)  # warm-up
    r = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s",
                        "--latency", url], capture_output=True, text=True, timeout=duration + 60)
    out = r.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    if bad:
        raise RuntimeError(f"{url}: {bad.group(1)} answers were not 2xx")
    return rps, p99, errors.group(0) if errors else ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--pg", required=True)
    ap.add_argument("--redis", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=50)
    a = ap.parse_args()

    www = os.path.join(a.work, "www")
    os.makedirs(www, exist_ok=True)
    with open(os.path.join(www, "hello.txt"), "wb") as f:
        f.write(HELLO)
    for p in (a.work, www):  # nginx's workers and floed may run as other users
        os.chmod(p, 0o755)
    os.chmod(os.path.join(www, "hello.txt"), 0o644)

    floe, nginx = Floe(a.bin, a.pg, a.redis, a.work, www), Nginx(a.work, www)
    try:
        floe.start()
        nginx.start()
        fb, nb = f"http://127.0.0.1:{floe.port}", f"http://127.0.0.1:{nginx.port}"
        v2 = f"/autodiscover/autodiscover.json?Email=user%40{DOMAIN}&Protocol=ActiveSync"
        targets = [
            ("floe  GET /hello.txt (static file)", fb + "/hello.txt", HELLO),
            ("floe  GET /_floe/hello (route)", fb + "/_floe/hello", HELLO),
            ("floe  GET autodiscover.json (v2)", fb + v2, b"Microsoft-Server-ActiveSync"),
            ("nginx GET /hello.txt (static file)", nb + "/hello.txt", HELLO),
        ]
        for _, url, want in targets:
            check(url, contains=want)
        print(f"== http: wrk, {a.threads} threads, {a.connections} connections, {a.duration} s "
              f"each, keep-alive ({os.cpu_count()} cores; floed io_threads and nginx "
              f"worker_processes = {os.cpu_count()})")
        print(f"{'target':<40} {'requests/s':>12} {'p99':>10}")
        results = {}
        for name, url, _ in targets:
            rps, p99, errs = wrk(url, a.duration, a.threads, a.connections)
            results[name] = (rps, p99)
            print(f"{name:<40} {rps:>12.0f} {p99:>8.2f} ms {errs}")
        n_rps, n_p99 = results[targets[3][0]]
        print("ratios, Floe / nginx (requests/s; p99):")
        for name, _, _ in targets[:3]:
            rps, p99 = results[name]
            print(f"  {name[6:]:<34} {rps / n_rps:>6.2f}   {p99 / n_p99:>6.2f}")
    finally:
        nginx.stop()
        floe.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
