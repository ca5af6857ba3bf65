#!/usr/bin/env python3
"""IMAP benchmark, run by `ops/bench imap`: Floe's IMAP service beside Dovecot on this
machine, in the same run, under the same load, over the same mailbox contents.

What runs:
  - floed from the release build with IMAP and its MX on loopback ports (every other service
    off; benchlib.FloeNode), against the private PostgreSQL and Redis of ops/stack, in a fresh
    database; U accounts made with floectl.
  - Dovecot (Debian's dovecot-imapd) as a private instance from a temporary directory: only
    IMAP on a loopback port, maildir under that directory owned by the unprivileged user
    ops/stack runs PostgreSQL as, users from a passwd-file holding the same yescrypt hash
    Floe stores (so a LOGIN costs both servers one yescrypt verification), defaults
    otherwise (no full-text search plugin, mail_fsync = optimized).

The mailboxes: U users x M messages (default 50 x 200) made by benchlib.MessageMaker from a
fixed seed: 55 % plain text of 1-8 KB, 30 % text + HTML of 8-40 KB, 13 % with a 40-300 KB
attachment, 2 % with a 0.3-1.5 MB one (50 KB on average, median 7 KB). Floe gets them over
SMTP (its MX, 4 sessions), Dovecot as maildir files written into cur/ (the way a delivery
agent leaves them; LF line ends, S= and W= sizes in the name). Then the same IMAP pass on both:
CREATE Sent, 70 % of each INBOX marked \\Seen and 10 % \\Flagged, FETCH 1:* (FLAGS) (this
also has Dovecot build its indexes).

The load (the same for both servers, one after the other): C clients (default 50, client i
is user i mod U), closed loop with no think time, for W seconds of warm-up and D seconds
measured. Each client runs sessions: connect, LOGIN, SELECT INBOX, FETCH 1:* (FLAGS), then
10-40 commands drawn with these weights, then LOGOUT and a new session:
    FETCH n BODY[]          40   a random message, whole (sets \\Seen)
    STORE n +/-FLAGS        20   \\Flagged, \\Answered or \\Seen on a random message
    FETCH 1:* (FLAGS)       10   a client's resynchronisation
    IDLE                    10   IDLE, the continuation, DONE, the tagged OK
    SEARCH TEXT word         8   a word of middling frequency from the messages' vocabulary
    APPEND Sent              7   a new message of the same size mix (LITERAL+)
Printed per command type and server: commands/s, p50 and p99 latency (command sent to
tagged reply read), errors; then the ratios Floe / Dovecot. Also per server: the CPU it
used in the measured window (floed and every PostgreSQL process, shown apart; every
Dovecot process, those that exited included) in cores and in CPU seconds per 1 000
commands, which is less sensitive to other load on the machine than the rates; the
generator's own CPU and the machine's busy share (the generator shares the two cores with
the servers and PostgreSQL). --without TYPE leaves a command out of the mix (SEARCH TEXT
is a full scan on a Dovecot without a full-text plugin and dominates its CPU).

The generator is Python asyncio, one process: at the rates two cores allow it uses about
15 % of one core (printed with every run), so it is not what limits either server, and
Python keeps it short and readable; a C generator would be needed only for a machine where
the servers reach many thousands of commands per second.

Then the memory of idle sessions: K connections (default 5 000) to Floe, each logged in
(SCRAM-SHA-256: the server verifies without a yescrypt hash per session), INBOX selected
and in IDLE; floed's RSS growth / K. The same for Dovecot with its own count (default
1 000; one imap process per session, so the cost is the PSS of all its processes).

usage: imap_compare.py --bin BUILD_DIR --pg CONNINFO --redis URL --work DIR
                       [--clients C] [--users U] [--messages M] [--duration D] [--warmup W]
                       [--idle K] [--idle-dovecot K] [--without TYPE]...
"""
import argparse
import asyncio
import os
import pwd
import random
import resource
import shutil
import sys
import tempfile
import time

from benchlib import (DOMAIN, PASSWORD, Dovecot, FloeNode, Imap, MessageMaker, ProtocolError,
                      Smtp, descendants, free_port, fresh_database, pct, postmaster_pid,
                      pss_kib, psql_scalar, raise_fd_limit, rss_kib, tree_cpu_seconds,
                      wait_port)

SEED = 20261121
MIX = (("FETCH BODY[]", 40), ("STORE", 20), ("FETCH FLAGS 1:*", 10), ("IDLE", 10),
       ("SEARCH TEXT", 8), ("APPEND", 7))
TYPES = ("LOGIN", "SELECT") + tuple(t for t, _ in MIX)
SOURCES = 8  # client source addresses 127.0.0.1 .. 127.0.0.8


def user(i):
    return f"user{i}@{DOMAIN}"


def cpu_times():
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


# ---- the servers ----

class Floe(FloeNode):
    def __init__(self, bindir, pg, redis, work):
        self.imap, self.smtp = free_port(), free_port()
        super().__init__(bindir, fresh_database(pg, "floe_bench_imap"), redis,
                         os.path.join(work, "floe-imap"), "benchimap",
                         {"imap": {"listen": f"127.0.0.1:{self.imap}",
                                   "listen_tls": f"127.0.0.1:{free_port()}"},
                          "smtp": {"listen": f"127.0.0.1:{self.smtp}"}},
                         extra={"smtp": {"hostname": "mx." + DOMAIN}})


class DovecotImap(Dovecot):
    """Dovecot with IMAP only, maildirs in `root`/mail, owned by the user floe."""

    def __init__(self, root, users, pwhash, max_sessions):
        self.port = free_port()
        self.mail = os.path.join(root, "mail")
        mu = pwd.getpwnam("floe")
        self.uid, self.gid = mu.pw_uid, mu.pw_gid
        os.makedirs(self.mail)
        os.chown(self.mail, self.uid, self.gid)
        dv = os.path.join(root, "dovecot")
        os.makedirs(dv)
        with open(os.path.join(dv, "passwd"), "w") as f:
            for u in users:
                f.write(f"{u}:{pwhash}::::::\n")
        os.chmod(os.path.join(dv, "passwd"), 0o644)
        # Limits raised only as far as the idle-session measurement needs: one imap process
        # per session, each connected to the log and anvil services; up to max_sessions
        # sessions of one user from one address.
        super().__init__(dv, f"""protocols = imap
mail_location = maildir:~
first_valid_uid = {self.uid}
last_valid_uid = {self.uid}
disable_plaintext_auth = no
default_process_limit = {max_sessions + 100}
default_client_limit = {2 * max_sessions + 1000}
passdb {{
  driver = passwd-file
  args = scheme=CRYPT {dv}/passwd
}}
userdb {{
  driver = static
  args = uid={self.uid} gid={self.gid} home={self.mail}/%d/%n allow_all_users=yes
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service imap {{
  process_limit = {max_sessions + 100}
}}
protocol imap {{
  mail_max_userip_connections = {max_sessions}
}}
""")

    def start(self):
        super().start()
        wait_port(self.port, 30, "dovecot imap")

    def maildir(self, u):
        local, domain = u.split("@")
        return os.path.join(self.mail, domain, local)

    def write(self, u, k, msg):
        """Puts one message into u's INBOX as a maildir file in cur/."""
        d = self.maildir(u)
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        lf = msg.replace(b"\r\n", b"\n")
        name = f"{1795000000 + k}.M{k}P{os.getpid()}.bench,S={len(lf)},W={len(msg)}:2,"
        tmp = os.path.join(d, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(lf)
        os.rename(tmp, os.path.join(d, "cur", name))

    def own(self):
        for dirpath, dirnames, filenames in os.walk(self.mail):
            for n in dirnames + filenames:
                os.chown(os.path.join(dirpath, n), self.uid, self.gid)

    def memory_kib(self):
        """PSS of the master and every process below it."""
        master = self.master_pid()
        return sum(pss_kib(p) for p in [master] + descendants(master))


# ---- loading the mailboxes ----

def messages(maker, users, m):
    """(user, k, bytes) for every message, the same on every call."""
    for i, u in enumerate(users):
        for k in range(m):
            rng = random.Random(SEED * 1_000_003 + i * 10_007 + k)
            yield u, k, maker.message(rng, u, i * m + k)


async def load_floe(floe, maker, users, m, sessions=4):
    queue = asyncio.Queue(maxsize=64)

    async def producer():
        t0 = time.monotonic()
        for n, (u, _, msg) in enumerate(messages(maker, users, m)):
            if n and n % 2000 == 0:
                print(f"  ... {n} messages into Floe, {time.monotonic() - t0:.0f} s",
                      file=sys.stderr, flush=True)
            await queue.put((u, msg))
        for _ in range(sessions):
            await queue.put(None)

    async def sender():
        # a new session every 50 messages: floed caps the messages of one SMTP session
        s, sent = await Smtp.connect(floe.smtp), 0
        while (item := await queue.get()) is not None:
            if sent == 50:
                await s.quit()
                s, sent = await Smtp.connect(floe.smtp), 0
            await s.send("loader@example.org", item[0], item[1])
            sent += 1
        await s.quit()

    await asyncio.gather(producer(), *(sender() for _ in range(sessions)))


async def prepare(port, users, m, concurrency=5):
    """The same IMAP pass on both servers: Sent exists, flags set, indexes built."""
    sem = asyncio.Semaphore(concurrency)

    async def one(u):
        async with sem:
            c = await Imap.connect(port)
            await c.login(u, PASSWORD)
            _, tagged = await c.command(b"CREATE Sent")  # NO when it exists already
            untagged = await c.ok(b"SELECT INBOX")
            exists = [int(r.split()[1]) for r in untagged if r.endswith(b" EXISTS")]
            if exists != [m]:
                raise RuntimeError(f"{u}: INBOX has {exists} messages, not {m}")
            await c.ok(b"STORE 1:%d +FLAGS.SILENT (\\Seen)" % (m * 7 // 10))
            await c.ok(b"STORE %d:%d +FLAGS.SILENT (\\Flagged)" % (m // 2, m // 2 + m // 10))
            await c.ok(b"FETCH 1:* (FLAGS)")
            await c.ok(b"LOGOUT")
            await c.close()

    await asyncio.gather(*(one(u) for u in users))


# ---- the load ----

class Stats:
    def __init__(self):
        self.lat = {t: [] for t in TYPES}
        self.errors = {t: 0 for t in TYPES}
        self.first_error = {}
        self.broken = 0

    def add(self, t, seconds, ok, detail=b""):
        self.lat[t].append(seconds)
        if not ok:
            self.errors[t] += 1
            self.first_error.setdefault(t, detail[:200])


async def client(i, port, users, maker, mix, stats, t_start, t_end, loop_rng):
    u = users[i % len(users)]
    rng = random.Random(SEED + i)
    kinds, weights = zip(*mix)
    local = f"127.0.0.{1 + i % SOURCES}"
    now = time.perf_counter

    async def timed(t, coro):
        t0 = now()
        untagged, tagged = await coro
        t1 = now()
        if t_start <= t0 < t_end:
            stats.add(t, t1 - t0, tagged.split(b" ", 2)[1:2] == [b"OK"], tagged)
        return untagged

    while now() < t_end:
        c = None
        try:
            c = await Imap.connect(port, local=local)
            await timed("LOGIN", c.command(b'LOGIN "%s" "%s"' % (u.encode(), PASSWORD.encode())))
            untagged = await timed("SELECT", c.command(b"SELECT INBOX"))
            exists = max([int(r.split()[1]) for r in untagged if r.endswith(b" EXISTS")] or [0])
            await timed("FETCH FLAGS 1:*", c.command(b"FETCH 1:* (FLAGS)"))
            for _ in range(rng.randint(10, 40)):
                if now() >= t_end:
                    break
                kind = rng.choices(kinds, weights)[0]
                n = rng.randint(1, max(exists, 1))
                if kind == "FETCH BODY[]":
                    await timed(kind, c.command(b"FETCH %d BODY[]" % n))
                elif kind == "STORE":
                    flag = rng.choice((b"\\Flagged", b"\\Answered", b"\\Seen"))
                    op = rng.choice((b"+", b"-"))
                    await timed(kind, c.command(b"STORE %d %sFLAGS (%s)" % (n, op, flag)))
                elif kind == "FETCH FLAGS 1:*":
                    await timed(kind, c.command(b"FETCH 1:* (FLAGS)"))
                elif kind == "IDLE":
                    t0 = now()
                    tag = await c.idle_start()
                    untagged, tagged = await c.idle_done(tag)
                    if t_start <= t0 < t_end:
                        stats.add(kind, now() - t0, tagged.split(b" ", 2)[1:2] == [b"OK"], tagged)
                elif kind == "SEARCH TEXT":
                    await timed(kind, c.command(b"SEARCH TEXT %s" % maker.word(rng).encode()))
                else:
                    msg = maker.message(random.Random(loop_rng.getrandbits(64)), u, 0)
                    await timed(kind, c.command(b"APPEND Sent (\\Seen)", msg))
            await c.command(b"LOGOUT")
        except (ProtocolError, OSError, asyncio.IncompleteReadError, ValueError) as e:
            stats.broken += 1
            stats.first_error.setdefault("connection", repr(e)[:200].encode())
            await asyncio.sleep(0.1)
        finally:
            if c:
                await c.close()


async def run_load(port, users, maker, mix, clients, warmup, duration, server_cpu):
    """Returns (stats, generator CPU share of one core, machine busy share, server CPU
    seconds by part) over the measured window; server_cpu() reads the server's CPU seconds
    as {part: seconds}."""
    stats = Stats()
    t0 = time.perf_counter()
    t_start, t_end = t0 + warmup, t0 + warmup + duration
    loop_rng = random.Random(SEED)
    tasks = [asyncio.create_task(client(i, port, users, maker, mix, stats, t_start, t_end,
                                        loop_rng)) for i in range(clients)]
    await asyncio.sleep(max(0.0, t_start - time.perf_counter()))
    ru0, cpu0, srv0 = resource.getrusage(resource.RUSAGE_SELF), cpu_times(), server_cpu()
    await asyncio.sleep(max(0.0, t_end - time.perf_counter()))
    ru1, cpu1, srv1 = resource.getrusage(resource.RUSAGE_SELF), cpu_times(), server_cpu()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    gen = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / duration
    busy = (cpu1[0] - cpu0[0]) / max(1, cpu1[1] - cpu0[1])
    return stats, gen, busy, {k: srv1[k] - srv0[k] for k in srv0}


# ---- idle sessions ----

async def idle_sessions(port, users, count, scram, batch=100):
    """Opens `count` sessions in IDLE; returns them (and the time it took)."""
    cache = {}
    conns = []

    async def one(i):
        u = users[i % len(users)]
        c = await Imap.connect(port, local=f"127.0.0.{1 + i % SOURCES}")
        if scram:
            await c.scram_login(u, PASSWORD, cache)
        else:
            await c.login(u, PASSWORD)
        await c.ok(b"SELECT INBOX")
        await c.idle_start()
        conns.append(c)

    t0 = time.monotonic()
    for b in range(0, count, batch):
        await asyncio.gather(*(one(i) for i in range(b, min(count, b + batch))))
    return conns, time.monotonic() - t0


async def close_all(conns):
    for c in conns:
        c.w.close()
    await asyncio.sleep(0.5)


async def idle_memory(measure, port, users, count, scram, alive):
    await asyncio.sleep(2)
    before = measure()
    conns, took = await idle_sessions(port, users, count, scram)
    await asyncio.sleep(5)
    if not alive():
        raise RuntimeError("the server exited while holding idle sessions")
    after = measure()
    # every session must still be there: a NOOP would leave IDLE, so look for closed ones
    closed = sum(1 for c in conns if c.r.at_eof())
    await close_all(conns)
    return before, after, took, closed


# ---- report ----

def report(res, clients, duration):
    names = ("floe", "dovecot")
    print(f"  {'command':<17}" + "".join(f" {n + ' /s':>11} {'p50 ms':>8} {'p99 ms':>8} "
                                          f"{'err':>4}" for n in names) +
          f" {'ratio /s':>9} {'p50':>6} {'p99':>6}")
    totals = {n: 0 for n in names}
    for t in TYPES:
        if not any(res[n][0].lat[t] for n in names):
            continue  # left out of the mix
        cols, vals = "", {}
        for n in names:
            lat = sorted(res[n][0].lat[t])
            rate = len(lat) / duration
            totals[n] += len(lat)
            vals[n] = (rate, pct(lat, .5) * 1e3, pct(lat, .99) * 1e3)
            cols += f" {rate:11.1f} {vals[n][1]:8.2f} {vals[n][2]:8.2f} {res[n][0].errors[t]:4d}"
        f, d = vals["floe"], vals["dovecot"]
        ratio = (f"{f[0] / d[0]:9.2f} {f[1] / d[1]:6.2f} {f[2] / d[2]:6.2f}" if d[0] and f[0]
                 else "")
        print(f"  {t:<17}{cols} {ratio}")
    f, d = totals["floe"] / duration, totals["dovecot"] / duration
    print(f"  {'all commands':<17} {f:11.1f} {'':8} {'':8} {'':4} {d:11.1f} {'':8} {'':8} {'':4}"
          f" {f / d if d else float('nan'):9.2f}")
    for n in names:
        stats, gen, busy, parts = res[n]
        done = sum(len(v) for v in stats.lat.values())
        srv = sum(parts.values())
        split = " + ".join(f"{k} {v * 1000 / max(done, 1):.2f}" for k, v in parts.items())
        print(f"  {n}: server CPU {srv / duration:.2f} cores, "
              f"{srv * 1000 / max(done, 1):.2f} s per 1000 commands"
              + (f" ({split})" if len(parts) > 1 else "") + "; generator "
              f"{gen * 100:.0f} % of one core; machine busy {busy * 100:.0f} %; broken sessions "
              f"{stats.broken}" + (f", first errors {stats.first_error}" if stats.first_error
                                   else ""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--pg", required=True)
    ap.add_argument("--redis", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--duration", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--idle", type=int, default=5000)
    ap.add_argument("--idle-dovecot", type=int, default=1000)
    ap.add_argument("--without", action="append", default=[], choices=[t for t, _ in MIX],
                    help="leave this command out of the mix (repeatable)")
    a = ap.parse_args()
    mix = [(t, w) for t, w in MIX if t not in a.without]
    if os.geteuid() != 0:
        sys.exit("imap_compare.py: run as root (a private Dovecot instance)")
    limit = raise_fd_limit(2 * max(a.idle, a.idle_dovecot) + 1000)
    if limit < max(a.idle, a.idle_dovecot) + 200:
        sys.exit(f"imap_compare.py: the open-file limit is {limit}, too low for {a.idle} sessions")

    users = [user(i) for i in range(a.users)]
    maker = MessageMaker(SEED)
    root = tempfile.mkdtemp(prefix="floe-bench-imap-")
    os.chmod(root, 0o755)
    floe = Floe(a.bin, a.pg, a.redis, a.work)
    dovecot = None
    try:
        floe.start()
        floe.ctl("domain", "add", DOMAIN)
        for u in users:
            floe.ctl("account", "add", u, "--password", PASSWORD)
        # Dovecot checks the very hash Floe stores (yescrypt, libcrypt's default cost) with
        # libcrypt, as Floe does
        pwhash = psql_scalar(floe.pg, "SELECT password_hash FROM accounts LIMIT 1")
        dovecot = DovecotImap(root, users, "{CRYPT}" + pwhash,
                              max(a.idle_dovecot, a.clients) + 10)
        dovecot.start()

        print(f"== imap: {a.users} users x {a.messages} messages, {a.clients} clients, "
              f"{a.warmup} s warm-up + {a.duration} s each, {os.cpu_count()} cores, "
              f"{time.strftime('%Y-%m-%d')}, load average {os.getloadavg()[0]:.1f}" +
              (f", without {', '.join(a.without)}" if a.without else ""))
        t0 = time.monotonic()
        for u, k, msg in messages(maker, users, a.messages):
            dovecot.write(u, k, msg)
        dovecot.own()
        t_dv = time.monotonic() - t0
        t0 = time.monotonic()
        asyncio.run(load_floe(floe, maker, users, a.messages))
        t_fl = time.monotonic() - t0
        stored = int(psql_scalar(floe.pg, "SELECT count(*) FROM messages"))
        if stored != a.users * a.messages:
            raise RuntimeError(f"Floe stored {stored} of {a.users * a.messages} messages")
        mb = int(psql_scalar(floe.pg, "SELECT sum(size) FROM messages")) / 1e6
        print(f"  loaded {stored} messages, {mb:.0f} MB: Floe by SMTP in {t_fl:.0f} s, "
              f"Dovecot maildir files in {t_dv:.0f} s")
        for port in (floe.imap, dovecot.port):
            asyncio.run(prepare(port, users, a.messages))

        res = {}
        pm = postmaster_pid(floe.pg)
        for name, port, cpu in (
                ("floe", floe.imap, lambda: {"floed": tree_cpu_seconds(floe.proc.pid),
                                             "PostgreSQL": tree_cpu_seconds(pm)}),
                ("dovecot", dovecot.port,
                 lambda: {"dovecot": tree_cpu_seconds(dovecot.master_pid())})):
            res[name] = asyncio.run(run_load(port, users, maker, mix, a.clients, a.warmup,
                                             a.duration, cpu))
            if not floe.alive():
                raise RuntimeError("floed exited during the load: " + floe.output()[-3000:])
        report(res, a.clients, a.duration)

        if a.idle or a.idle_dovecot:
            print("idle sessions (logged in, INBOX selected, in IDLE):")
        if a.idle:
            before, after, took, closed = asyncio.run(idle_memory(
                lambda: rss_kib(floe.proc.pid), floe.imap, users, a.idle, True, floe.alive))
            print(f"  floe: {a.idle} sessions (SCRAM-SHA-256) opened in {took:.1f} s; floed "
                  f"RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB: "
                  f"{(after - before) / a.idle:.1f} KiB per session"
                  + (f"; {closed} closed by the server" if closed else ""))
        if a.idle_dovecot:
            before, after, took, closed = asyncio.run(idle_memory(
                dovecot.memory_kib, dovecot.port, users, a.idle_dovecot, False, lambda: True))
            print(f"  dovecot: {a.idle_dovecot} sessions (LOGIN) opened in {took:.1f} s; PSS of "
                  f"all its processes {before / 1024:.1f} -> {after / 1024:.1f} MiB: "
                  f"{(after - before) / a.idle_dovecot:.0f} KiB per session"
                  + (f"; {closed} closed by the server" if closed else ""))
        if not floe.alive():
            raise RuntimeError("floed exited: " + floe.output()[-3000:])
        bad = floe.problems()
        if bad:
            print(f"  note: floed logged {len(bad)} errors or warnings, the first: {bad[0]}")
        errs = [l for l in dovecot.log().splitlines()
                if "Error:" in l or "Fatal:" in l or "Warning:" in l]
        if errs:
            print(f"  note: dovecot logged {len(errs)} errors or warnings, the first: {errs[0]}")
    finally:
        floe.stop()
        if dovecot:
            dovecot.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, ProtocolError) as e:
        sys.exit(f"imap_compare.py: {e}")
