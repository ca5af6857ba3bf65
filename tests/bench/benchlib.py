"""Shared pieces of the benchmarks in tests/bench/ (run by ops/bench): starting a Floe node
and a private Dovecot instance, small asyncio IMAP and SMTP clients, a generator of
realistic messages, percentiles and process memory.

How the pieces are used:
  - FloeNode writes a floed.conf with only the services asked for, on loopback ports, plus
    the admin service (its /readyz tells when the node is up) and turns every other known
    service off, so that no benchmark takes a default port (25, 143, 443, ...) of this
    machine; `floed --endpoints` is checked before the start to catch a service added to
    the registry since this file was written.
  - Dovecot runs Debian's dovecot as a private instance from a directory of its own (its own
    base_dir, state_dir and log); the caller gives the protocol-specific part of the
    configuration. Its master process must start as root.
  - Imap and Smtp are minimal protocol clients over asyncio streams, written for load:
    they keep every response but parse only what a benchmark needs (tags, literals,
    continuations, EXISTS).
  - make_message() builds deterministic mail from a seeded random generator: the same seed
    gives the same bytes, so two servers can be loaded with the same mailbox contents.
"""
import asyncio
import base64
import hashlib
import hmac
import itertools
import os
import random
import re
import signal
import socket
import subprocess
import time

DOMAIN = "bench.test"
PASSWORD = "bench-password-1"
# Every service some floed may know, so that each one not asked for can be turned off.
SERVICES = ("admin", "web", "smtp", "submission", "submissions", "pop3", "daytime", "imap",
            "imaps", "lmtp", "managesieve", "sieve", "ldap", "ldaps", "dav", "activesync")


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(port, timeout, what, alive=lambda: True):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not alive():
            break
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} is not listening on 127.0.0.1:{port}")


def pct(sorted_values, q):
    """The q-quantile of sorted values (the value at index n*q, as floe-bench-smtp does)."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def fresh_database(pg, name):
    """A new, empty database beside the one in `pg` (every run starts alike); its conninfo."""
    for q in (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'):
        r = subprocess.run(["psql", pg, "-Xqc", q], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("psql: " + r.stderr)
    return re.sub(r"dbname=\S+", f"dbname={name}", pg)


def psql_scalar(pg, query):
    r = subprocess.run(["psql", pg, "-XAtq", "-c", query], capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        raise RuntimeError("psql: " + r.stderr)
    return r.stdout.strip()


def rss_kib(pid):
    """Resident set size of a process in KiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pss_kib(pid):
    """Proportional set size in KiB: shared pages divided among the processes sharing them,
    so the sum over a group of processes is what the group costs."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def descendants(pid):
    """Every process below pid (children, grandchildren, ...)."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def tree_cpu_seconds(pid):
    """CPU seconds used so far by pid and every process below it, including children that
    exited and were reaped (their time is in the parent's cutime and cstime)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in [pid] + descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                v = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in v[11:15])  # utime stime cutime cstime
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return total / tick


def postmaster_pid(pg):
    """The PostgreSQL server of an ops/stack conninfo (host=DIR/pg/run ...)."""
    m = re.search(r"host=(\S+)", pg)
    with open(os.path.join(os.path.dirname(m.group(1)), "data", "postmaster.pid")) as f:
        return int(f.readline())


def write_ini(path, sections):
    with open(path, "w") as f:
        for name, keys in sections.items():
            f.write(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) + "\n")


def raise_fd_limit(want):
    """Raises this process's open-file limit (children inherit it) towards `want`; never
    lowers it. Returns the limit in force."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    for new_hard in (max(hard, want), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, new_hard), new_hard))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class FloeNode:
    """One floed from the build directory `bindir` with the given services, all on
    loopback. services: {"smtp": {"listen": "127.0.0.1:PORT"}, ...}; extra: more config
    sections ({"smtp": {"hostname": ...}}). The node's files live in `dir`."""

    def __init__(self, bindir, pg, redis, dir, node_id, services, extra=None):
        self.bindir = bindir
        self.pg = pg
        self.dir = dir
        os.makedirs(os.path.join(dir, "state"), exist_ok=True)
        self.admin, admin_tls = free_port(), free_port()
        sections = {
            "node": {"id": node_id, "state_dir": os.path.join(dir, "state")},
            "database": {"url": pg},
        }
        if redis:
            sections["redis"] = {"url": redis}
        for name, keys in (extra or {}).items():
            sections.setdefault(name, {}).update(keys)
        sections["service admin"] = {"listen": f"127.0.0.1:{self.admin}",
                                     "listen_tls": f"127.0.0.1:{admin_tls}"}
        self.ports = {self.admin, admin_tls}
        for name, keys in services.items():
            sections[f"service {name}"] = dict(keys)
            for v in keys.values():
                self.ports.update(int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", str(v)))
        self.config = os.path.join(dir, "floed.conf")
        for name in SERVICES:
            if name != "admin" and name not in services and self.known_service(name):
                sections[f"service {name}"] = {"enabled": "no"}
        write_ini(self.config, sections)
        self.proc = None
        self.log = None

    def known_service(self, name):
        """Whether this floed has a service `name` (it rejects unknown ones)."""
        write_ini(self.config, {"node": {"id": "probe"}, f"service {name}": {"enabled": "no"}})
        r = subprocess.run([os.path.join(self.bindir, "floed"), "--check-config", "--config",
                            self.config], capture_output=True, text=True, timeout=30)
        return r.returncode == 0

    def check_endpoints(self):
        """Refuses to start when a service we did not configure would listen somewhere."""
        r = subprocess.run([os.path.join(self.bindir, "floed"), "--endpoints", "--config",
                            self.config], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError("floed --endpoints: " + r.stderr)
        for line in r.stdout.splitlines():
            m = re.search(r"//127\.0\.0\.1:(\d+)$", line)
            if m and int(m.group(1)) in self.ports:
                continue
            raise RuntimeError(f"floed would also listen at '{line}': add that service to "
                               "SERVICES in tests/bench/benchlib.py")

    def http_get(self, path):
        with socket.create_connection(("127.0.0.1", self.admin), timeout=2) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return out
                out += chunk

    def start(self):
        self.check_endpoints()
        self.log = open(os.path.join(self.dir, "floed.log"), "ab")
        self.proc = subprocess.Popen([os.path.join(self.bindir, "floed"), "--config", self.config],
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("floed exited: " + self.output()[-3000:])
            try:
                if self.http_get("/readyz").startswith(b"HTTP/1.1 200"):
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("floed did not become ready: " + self.output()[-3000:])
        for p in self.ports:
            wait_port(p, 10, "floed", self.alive)

    def metric(self, name):
        """A value from /metrics (the first sample of that name), or None."""
        m = re.search(rb"^" + re.escape(name.encode()) + rb"(?:\{[^}]*\})? (\S+)$",
                      self.http_get("/metrics"), re.M)
        return float(m.group(1)) if m else None

    def output(self):
        try:
            with open(os.path.join(self.dir, "floed.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def problems(self):
        """Error and warning lines floed logged."""
        return [l for l in self.output().splitlines() if "] error: " in l or "] warning: " in l]

    def ctl(self, *args, input=None):
        r = subprocess.run([os.path.join(self.bindir, "floectl"), "--config", self.config] +
                           list(args), capture_output=True, input=input, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"floectl {' '.join(args)}: {r.stderr.decode(errors='replace')}")
        return r.stdout.decode(errors="replace")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if not self.proc:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.proc = None


class Dovecot:
    """A private Dovecot instance in directory `dir` (which its unprivileged processes
    must be able to reach); `body` is the configuration after the common part."""

    def __init__(self, dir, body):
        self.dir = dir
        os.makedirs(os.path.join(dir, "run"), exist_ok=True)
        os.chmod(dir, 0o755)
        self.config = os.path.join(dir, "dovecot.conf")
        with open(self.config, "w") as f:
            f.write(f"""instance_name = floe-bench-{os.getpid()}-{os.path.basename(dir)}
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/log
ssl = no
listen = 127.0.0.1
""" + body)
        self.started = False

    def start(self):
        # Dovecot's daemons inherit its output: a file, not a pipe we would wait on forever.
        with open(os.path.join(self.dir, "start.log"), "w+") as out:
            r = subprocess.run(["dovecot", "-c", self.config], stdin=subprocess.DEVNULL,
                               stdout=out, stderr=out, timeout=60)
            out.seek(0)
            if r.returncode != 0:
                raise RuntimeError("dovecot: " + out.read())
        self.started = True

    def master_pid(self):
        with open(os.path.join(self.dir, "run", "master.pid")) as f:
            return int(f.read().split()[0])

    def log(self):
        try:
            with open(os.path.join(self.dir, "log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.started:
            subprocess.run(["dovecot", "-c", self.config, "stop"], capture_output=True, timeout=60)
            self.started = False


# ---- asyncio protocol clients ----

class ProtocolError(Exception):
    pass


class Imap:
    """An IMAP client connection for load: commands are sent with numbered tags; command()
    returns (untagged responses, tagged line), literals inlined."""

    LITERAL = re.compile(rb"\{(\d+)\+?\}$")

    def __init__(self, reader, writer):
        self.r, self.w = reader, writer
        self.n = 0

    @classmethod
    async def connect(cls, port, host="127.0.0.1", local=None):
        reader, writer = await asyncio.open_connection(
            host, port, limit=1 << 20, local_addr=(local, 0) if local else None)
        c = cls(reader, writer)
        greeting = await c.line()
        if not greeting.startswith(b"* OK"):
            raise ProtocolError(f"greeting {greeting[:200]!r}")
        return c

    async def line(self):
        line = await self.r.readuntil(b"\r\n")
        return line[:-2]

    async def response(self):
        """One response with its literals inlined (the literal bytes kept as they are)."""
        line = await self.line()
        parts = [line]
        m = self.LITERAL.search(line)
        while m:
            parts.append(await self.r.readexactly(int(m.group(1))))
            line = await self.line()
            parts.append(line)
            m = self.LITERAL.search(line)
        return b"".join(parts) if len(parts) > 1 else line

    def tag(self):
        self.n += 1
        return b"t%d" % self.n

    async def command(self, text, literal=None):
        """Sends `text` (bytes), with `literal` as a non-synchronising literal (LITERAL+)
        after it when given; returns (untagged, tagged line)."""
        tag = self.tag()
        if literal is None:
            self.w.write(tag + b" " + text + b"\r\n")
        else:
            self.w.write(tag + b" " + text + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        return await self.until(tag)

    async def until(self, tag):
        out = []
        prefix = tag + b" "
        while True:
            r = await self.response()
            if r.startswith(prefix):
                return out, r
            out.append(r)

    async def ok(self, text, literal=None):
        untagged, tagged = await self.command(text, literal)
        if tagged.split(b" ", 2)[1:2] != [b"OK"]:
            raise ProtocolError(f"{text[:60]!r}: {tagged[:300]!r}")
        return untagged

    async def login(self, user, password):
        await self.ok(b'LOGIN "%s" "%s"' % (user.encode(), password.encode()))

    async def scram_login(self, user, password, cache):
        """AUTHENTICATE SCRAM-SHA-256 (RFC 5802, RFC 7677) with an initial response; the
        salted password is kept in `cache` per (password, salt, iterations), so a client
        opening many sessions pays PBKDF2 once, as a real client caching it would."""
        nonce = base64.b64encode(os.urandom(18)).decode()
        bare = f"n={user},r={nonce}"
        tag = self.tag()
        self.w.write(tag + b" AUTHENTICATE SCRAM-SHA-256 " +
                     base64.b64encode(("n,," + bare).encode()) + b"\r\n")
        line = await self.line()
        if not line.startswith(b"+ "):
            raise ProtocolError(f"SCRAM: {line[:200]!r}")
        first = base64.b64decode(line[2:]).decode()
        f = dict(kv.split("=", 1) for kv in first.split(","))
        if not f["r"].startswith(nonce):
            raise ProtocolError("SCRAM: server nonce does not extend ours")
        key = (password, f["s"], int(f["i"]))
        if key not in cache:
            salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(f["s"]),
                                         int(f["i"]))
            ck = hmac.new(salted, b"Client Key", "sha256").digest()
            sk = hmac.new(salted, b"Server Key", "sha256").digest()
            cache[key] = (ck, hashlib.sha256(ck).digest(), sk)
        ck, stored, sk = cache[key]
        final_bare = f"c=biws,r={f['r']}"
        auth = f"{bare},{first},{final_bare}".encode()
        sig = hmac.new(stored, auth, "sha256").digest()
        proof = base64.b64encode(bytes(a ^ b for a, b in zip(ck, sig))).decode()
        self.w.write(base64.b64encode(f"{final_bare},p={proof}".encode()) + b"\r\n")
        while True:
            r = await self.line()
            if r.startswith(b"+ "):  # the server-final message as a challenge
                self.w.write(b"\r\n")
                continue
            if r.startswith(tag + b" "):
                if not r.startswith(tag + b" OK"):
                    raise ProtocolError(f"SCRAM: {r[:200]!r}")
                return

    async def idle_start(self):
        """Sends IDLE and waits for the continuation; returns the tag."""
        tag = self.tag()
        self.w.write(tag + b" IDLE\r\n")
        while True:
            r = await self.response()
            if r.startswith(b"+"):
                return tag
            if r.startswith(tag + b" "):
                raise ProtocolError(f"IDLE: {r[:200]!r}")

    async def idle_done(self, tag):
        self.w.write(b"DONE\r\n")
        return await self.until(tag)

    async def close(self):
        try:
            self.w.close()
            await self.w.wait_closed()
        except (OSError, ConnectionError):
            pass


class Smtp:
    """An SMTP client connection (RFC 5321) for loading mailboxes and timing deliveries."""

    def __init__(self, reader, writer):
        self.r, self.w = reader, writer

    @classmethod
    async def connect(cls, port, host="127.0.0.1"):
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 16)
        c = cls(reader, writer)
        await c.reply(220)
        c.w.write(b"EHLO client.test\r\n")
        await c.reply(250)
        return c

    async def reply(self, want):
        while True:
            line = await self.r.readuntil(b"\r\n")
            if line[3:4] != b"-":
                break
        if int(line[:3]) != want:
            raise ProtocolError(f"SMTP: wanted {want}, got {line[:200]!r}")
        return line

    async def send(self, sender, rcpt, message, on_data_end=None):
        """One transaction; returns the time (perf_counter) the final 250 was read.
        on_data_end() is called just before the end-of-data line is written."""
        self.w.write(b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\n" % (sender.encode(), rcpt.encode()))
        await self.reply(250)
        await self.reply(250)
        self.w.write(b"DATA\r\n")
        await self.reply(354)
        body = message if message.endswith(b"\r\n") else message + b"\r\n"
        body = re.sub(rb"(?m)^\.", b"..", body)  # RFC 5321 §4.5.2 dot-stuffing
        self.w.write(body)
        if on_data_end:
            on_data_end()
        self.w.write(b".\r\n")
        await self.reply(250)
        return time.perf_counter()

    async def quit(self):
        try:
            self.w.write(b"QUIT\r\n")
            await self.reply(221)
        except (ProtocolError, OSError, asyncio.IncompleteReadError):
            pass
        self.w.close()


# ---- realistic messages ----

def _vocabulary(rng, n=3000):
    """Made-up words with an English-like length distribution; drawn with a Zipf-like
    weight so that text repeats words as real text does (full-text indexes care)."""
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    lw = [12, 9, 8, 7.5, 7, 6.7, 6.3, 6, 6, 4.3, 4, 2.8, 2.7, 2.4, 2.2, 2, 2, 1.9, 1.5, 1,
          0.8, 0.2, 0.15, 0.15, 0.1, 0.07]
    words = set()
    while len(words) < n:
        words.add("".join(rng.choices(letters, lw, k=rng.choice((2, 3, 3, 4, 4, 5, 5, 6, 7, 8,
                                                                   9, 10)))))
    words = sorted(words)
    rng.shuffle(words)
    return words, [1.0 / (i + 1) for i in range(n)]


class MessageMaker:
    """Deterministic messages of realistic sizes and shapes. Sizes (body bytes):
    55 % plain text of 1-8 KB, 30 % multipart/alternative text + HTML of 8-40 KB, 13 % with a
    base64 attachment of 40-300 KB, 2 % with an attachment of 300 KB-1.5 MB."""

    def __init__(self, seed=1):
        self.words, weights = _vocabulary(random.Random(seed))
        self.cum = list(itertools.accumulate(weights))

    def text(self, rng, size):
        out, n = [], 0
        while n < size:
            line = " ".join(rng.choices(self.words, cum_weights=self.cum, k=rng.randint(6, 14)))
            out.append(line)
            n += len(line) + 2
        return "\r\n".join(out) + "\r\n"

    def word(self, rng):
        # words of middling rank: found in some messages, not in all
        return self.words[rng.randint(20, 400)]

    def message(self, rng, to, n, size=None):
        kind = rng.random() if size is None else 0.0
        frm = f"{rng.choice(self.words)}.{rng.choice(self.words)}@example.org"
        subject = " ".join(rng.choices(self.words, cum_weights=self.cum, k=rng.randint(2, 7)))
        day = 1 + n % 28
        head = (f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\n"
                f"Date: {day:02d} Nov 2026 {n % 24:02d}:{n % 60:02d}:{n * 7 % 60:02d} +0000\r\n"
                f"Message-ID: <bench.{n}.{rng.getrandbits(32):08x}@example.org>\r\n"
                "MIME-Version: 1.0\r\n")
        if kind < 0.55:
            body = self.text(rng, size or rng.randint(1000, 8000))
            return (head + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body).encode()
        b = f"=_bench_{rng.getrandbits(48):012x}"
        text = self.text(rng, rng.randint(3000, 15000))
        if kind < 0.85:
            html = "<html><body>\r\n" + "".join(
                f"<p>{p}</p>\r\n" for p in self.text(rng, rng.randint(5000, 25000)).split("\r\n")
                if p) + "</body></html>\r\n"
            return (head + f'Content-Type: multipart/alternative; boundary="{b}"\r\n\r\n'
                    f"--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}"
                    f"--{b}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}"
                    f"--{b}--\r\n").encode()
        size = rng.randint(40_000, 300_000) if kind < 0.98 else rng.randint(300_000, 1_500_000)
        att = base64.encodebytes(rng.randbytes(size * 3 // 4)).replace(b"\n", b"\r\n").decode()
        return (head + f'Content-Type: multipart/mixed; boundary="{b}"\r\n\r\n'
                f"--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}"
                f"--{b}\r\nContent-Type: application/pdf; name=\"report-{n}.pdf\"\r\n"
                f"Content-Disposition: attachment; filename=\"report-{n}.pdf\"\r\n"
                f"Content-Transfer-Encoding: base64\r\n\r\n{att}--{b}--\r\n").encode()
