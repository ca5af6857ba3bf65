"""Test harness shared by tests/integration and tests/cluster: real floed processes against the PostgreSQL and Redis
that ops/test started (FLOE_TEST_PG, FLOE_TEST_REDIS), driven by real clients.

A `Node` writes a configuration into a temporary directory, starts floed, waits
until its admin listener answers, and on stop checks that the process exited
cleanly and that no sanitizer reported anything.
"""
import os
import re
import signal
import socket
import subprocess
import time

import pytest

BUILD = os.environ.get("FLOE_BUILD", os.path.join(os.path.dirname(__file__), "../build/release"))
FLOED = os.path.join(BUILD, "floed")
FLOECTL = os.path.join(BUILD, "floectl")

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "ThreadSanitizer", "UndefinedBehaviorSanitizer")


def free_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def pg_url():
    url = os.environ.get("FLOE_TEST_PG")
    if not url:
        pytest.fail("FLOE_TEST_PG is not set: run the suite through ops/test")
    return url


def render_config(sections):
    """sections: {"node": {...}, "service admin": {...}} -> INI text."""
    out = []
    for name, keys in sections.items():
        out.append(f"[{name}]")
        for k, v in keys.items():
            if isinstance(v, bool):
                v = "yes" if v else "no"
            out.append(f"{k} = {v}")
        out.append("")
    return "\n".join(out)


def fresh_database(name):
    """Creates (or recreates) database `name` on the test PostgreSQL; returns its conninfo."""
    base = pg_url()
    subprocess.run(["psql", base, "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
                   check=True, capture_output=True)
    subprocess.run(["psql", base, "-qc", f'CREATE DATABASE "{name}"'], check=True, capture_output=True)
    return re.sub(r"dbname=\S+", f"dbname={name}", base)


class Node:
    def __init__(self, tmp_path, sections=None, node_id="it1", database=True, host="127.0.0.1"):
        self.dir = tmp_path
        self.host = host
        self.admin_port = free_port(host)
        self.admin_tls_port = free_port(host)
        self.web_port = free_port(host)
        self.web_tls_port = free_port(host)
        self.smtp_port = free_port(host)
        self.submission_port = free_port(host)
        self.submissions_port = free_port(host)
        self.pop3_port = free_port(host)
        self.pop3s_port = free_port(host)
        self.imap_port = free_port(host)
        self.imaps_port = free_port(host)
        base = {
            "node": {"id": node_id, "state_dir": str(tmp_path / "state"), "io_threads": 2,
                     "workers": 2, "shutdown_timeout": 5},
            "log": {"level": "debug", "dir": str(tmp_path / "log")},
            "service admin": {"listen": f"{host}:{self.admin_port}",
                              "listen_tls": f"{host}:{self.admin_tls_port}"},
            "service web": {"listen": f"{host}:{self.web_port}",
                            "listen_tls": f"{host}:{self.web_tls_port}"},
            "service smtp": {"listen": f"{host}:{self.smtp_port}"},
            "service submission": {"listen": f"{host}:{self.submission_port}"},
            "service submissions": {"listen_tls": f"{host}:{self.submissions_port}"},
            "service pop3": {"listen": f"{host}:{self.pop3_port}",
                             "listen_tls": f"{host}:{self.pop3s_port}"},
            "service imap": {"listen": f"{host}:{self.imap_port}",
                             "listen_tls": f"{host}:{self.imaps_port}"},
        }
        if database:
            base["database"] = {"url": database if isinstance(database, str) else pg_url()}
        for sec, keys in (sections or {}).items():
            base.setdefault(sec, {}).update(keys)
        self.sections = base
        self.config = tmp_path / "floed.conf"
        self.write_config()
        self.proc = None
        self.stderr_path = tmp_path / "floed.stderr"

    def write_config(self, sections=None):
        if sections is not None:
            self.sections = sections
        self.config.write_text(render_config(self.sections))

    def start(self, wait=True):
        self.stderr_file = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen([FLOED, "--config", str(self.config)],
                                     stdout=self.stderr_file, stderr=self.stderr_file)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"floed exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with socket.create_connection((self.host, self.admin_port), timeout=0.5) as s:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    reply = b""
                    while True:
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        reply += chunk
                    if reply.startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"floed did not become healthy:\n{self.output()}")

    def output(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, timeout=10):
        """Waits until a line of floed's output matches pattern (regex); returns the match."""
        rx = re.compile(pattern)
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = rx.search(self.output())
            if m:
                return m
            time.sleep(0.05)
        raise AssertionError(f"no log line matching {pattern!r}:\n{self.output()[-4000:]}")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def kill(self):
        """kill -9: the node gets no chance to clean up."""
        self.proc.kill()
        self.proc.wait()
        self.stderr_file.close()
        self.proc = None

    def stop(self, expect_status=0, timeout=20):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"floed did not stop within {timeout}s:\n{self.output()[-4000:]}")
        self.stderr_file.close()
        out = self.output()
        for marker in SANITIZER_MARKERS:
            assert marker not in out, f"sanitizer report:\n{out[-6000:]}"
        assert self.proc.returncode == expect_status, \
            f"floed exited with {self.proc.returncode}, expected {expect_status}:\n{out[-4000:]}"
        self.proc = None


def run_floed(args, timeout=30):
    """Runs floed to completion (for --check-config and failing starts)."""
    return subprocess.run([FLOED] + args, capture_output=True, text=True, timeout=timeout)


def floectl(config, *args, input=None, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([FLOECTL, "--config", str(config)] + list(args), capture_output=True,
                          text=True, input=input, env=e, timeout=60)




def sql(node, query, *params):
    """Runs one query against the node's database with psql; params are bound
    as psql variables :'p1', :'p2', ... Returns the rows as lists of strings."""
    url = node.sections["database"]["url"]
    args = ["psql", url, "-XAtq", "-F", "\x1f", "-v", "ON_ERROR_STOP=1"]
    for i, p in enumerate(params, 1):
        args += ["-v", f"p{i}={p}"]
    r = subprocess.run(args, input=query, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return [line.split("\x1f") for line in r.stdout.splitlines()]


def sql_scalar(node, query, *params):
    rows = sql(node, query, *params)
    return rows[0][0] if rows else None


def blob(node, blob_id):
    """The bytes of a blob of the pg backend."""
    hexdata = sql_scalar(node, "SELECT encode(coalesce(string_agg(c.data, ''::bytea ORDER BY c.seq),"
                               " ''::bytea), 'hex') FROM blobs b LEFT JOIN blob_chunks c"
                               " ON c.content = b.content WHERE b.id = :'p1'", blob_id)
    return bytes.fromhex(hexdata or "")
