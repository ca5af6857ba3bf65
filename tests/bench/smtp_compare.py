#!/usr/bin/env python3
"""SMTP delivery benchmark, run by `ops/bench smtp`: Floe's MX beside Postfix
delivering into Dovecot over LMTP, on this machine, in the same run.

What runs:
  - floed from the release build, its MX on a free loopback port, every other
    service off (or, for admin, on free loopback ports), against the private
    PostgreSQL and Redis of ops/stack; accounts made with floectl.
  - Postfix (private instance from a temporary directory, as root; its daemons
    run as user postfix) on another loopback port, with the bench domain as a
    virtual mailbox domain whose mail goes over LMTP (unix socket) to
  - Dovecot (private instance: own base_dir, static userdb, maildir under the
    temporary directory, only the LMTP service).
All three keep their defaults for concurrency, fsync and logging unless
written below.

What is measured, the same for both servers:
  1. Postfix's smtp-source: S sessions, M messages of L bytes, one recipient
     mailbox, a new connection per message; the run is timed (messages/s).
  2. floe-bench-smtp (tests/bench/smtp_bench.c): S sessions, M messages of L
     bytes spread over N mailboxes; per-message latency from MAIL FROM to the
     reply after the data.
  For both: "CPU ms", the CPU time (user + system) per message of the server
  side: floed with its PostgreSQL and Redis, or the Postfix and Dovecot
  process trees until the last message is in its maildir. On a shared
  machine it varies less than the rates do.
"Delivered" differs between the two designs: Floe answers 250 after the
message is committed into the mailbox; Postfix answers 250 once its queue file
is on disk and hands the message to Dovecot afterwards. So for Postfix+Dovecot
both numbers are reported: "accepted" (the 250) and "in maildir" (the time
until the last message file was written into the Dovecot maildirs; per
message, the file's modification time minus the time its MAIL FROM was sent).
Every message is checked to have arrived: counted in PostgreSQL for Floe and
in the maildirs for Dovecot.

usage: smtp_compare.py --bin BUILD_DIR --pg CONNINFO --redis URL --work DIR
                       [--messages M] [--sessions S] [--length L] [--mailboxes N]
"""
import argparse
import grp
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time

from benchlib import (DOMAIN, Dovecot, FloeNode, free_port, fresh_database, pct, psql_scalar,
                      wait_port)

SENDER = "sender@client.test"
SINGLE = "single"    # smtp-source's one mailbox
SPREAD = "user"      # floe-bench-smtp's mailboxes: user0 .. userN-1
WARMUP = 200         # messages sent to each server before measuring
DELIVERY_TIMEOUT = 900


class Floe(FloeNode):
    """floed with only its MX on a loopback port (benchlib.FloeNode turns the rest off)."""

    def __init__(self, bindir, pg, redis, work):
        self.port = free_port()
        super().__init__(bindir, fresh_database(pg, "floe_bench_smtp"), redis,
                         os.path.join(work, "floe-smtp"), "bench1",
                         {"smtp": {"listen": f"127.0.0.1:{self.port}"}},
                         extra={"smtp": {"hostname": "mx." + DOMAIN}})

    def count(self):
        """Messages stored in the bench domain's mailboxes."""
        return int(psql_scalar(self.pg, "SELECT count(*) FROM messages m JOIN accounts a ON "
                               "a.id = m.account_id JOIN domains d ON d.id = a.domain_id "
                               f"WHERE d.name = '{DOMAIN}'"))


class Reference:
    """Postfix (MX) -> LMTP -> Dovecot (maildir), both private instances."""

    def __init__(self, users):
        # Postfix's and Dovecot's unprivileged processes must reach these
        # directories, so they live in a world-readable temporary directory
        # of their own (ops/bench's work directory is private).
        self.root = tempfile.mkdtemp(prefix="floe-bench-ref-")
        os.chmod(self.root, 0o755)
        self.port = free_port()
        self.pf = os.path.join(self.root, "postfix")
        self.dv = os.path.join(self.root, "dovecot")
        self.mail = os.path.join(self.root, "mail")
        etc, queue, data = (os.path.join(self.pf, d) for d in ("etc", "queue", "data"))
        for d in (etc, queue, data, os.path.join(self.dv, "run"), self.mail):
            os.makedirs(d)
        os.chmod(self.pf, 0o755)
        os.chmod(self.dv, 0o755)
        pfuid, pfgid = pwd.getpwnam("postfix").pw_uid, grp.getgrnam("postfix").gr_gid
        os.chown(data, pfuid, pfgid)
        # Mail is stored as the unprivileged user ops/stack runs PostgreSQL as.
        mu = pwd.getpwnam("floe")
        os.chown(self.mail, mu.pw_uid, mu.pw_gid)
        self.lmtp = os.path.join(self.dv, "run", "lmtp")

        out = []
        with open("/usr/share/postfix/master.cf.dist") as f:
            for line in f.read().splitlines():
                w = line.split()
                if len(w) >= 8 and not line.startswith("#") and w[1] in (
                        "inet", "unix", "unix-dgram", "fifo", "pass"):
                    if w[0] == "smtp" and w[1] == "inet":
                        w[0] = f"127.0.0.1:{self.port}"
                    w[4] = "n"   # no chroot: the paths above are outside any jail
                    line = " ".join(w)
                out.append(line)
        with open(os.path.join(etc, "master.cf"), "w") as f:
            f.write("\n".join(out) + "\n")
        mailboxes = ", ".join(f"{u}@{DOMAIN}=ok" for u in users)
        with open(os.path.join(etc, "main.cf"), "w") as f:
            f.write(f"""compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = mx.{DOMAIN}
mydestination =
mynetworks = 127.0.0.0/8
maillog_file_prefixes = /tmp, {self.root}
maillog_file = {self.pf}/maillog
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_maps = inline:{{ {mailboxes} }}
virtual_transport = lmtp:unix:{self.lmtp}
alias_maps =
alias_database =
biff = no
""")
        self.etc = etc
        # Only LMTP, no network listeners; mail as user floe in maildirs.
        self.dovecot = Dovecot(self.dv, f"""protocols = lmtp
mail_location = maildir:~
first_valid_uid = {mu.pw_uid}
last_valid_uid = {mu.pw_uid}
passdb {{
  driver = static
  args = nopassword=y
}}
userdb {{
  driver = static
  args = uid={mu.pw_uid} gid={mu.pw_gid} home={self.mail}/%d/%n allow_all_users=yes
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0666
  }}
}}
""")
        self.started = []

    def start(self):
        self.started.append("dovecot")
        self.dovecot.start()
        deadline = time.time() + 20
        while not os.path.exists(self.lmtp):
            if time.time() > deadline:
                raise RuntimeError("dovecot has no LMTP socket")
            time.sleep(0.1)
        # Postfix reports start-up errors only to syslog or a terminal.
        self.started.append("postfix")
        r = subprocess.run(["script", "-qec", f"postfix -c {self.etc} start", "/dev/null"],
                           capture_output=True, text=True, timeout=60)
        if "fatal" in r.stdout:
            raise RuntimeError("postfix: " + r.stdout)
        wait_port(self.port, 30, "postfix")

    def maildirs(self, users):
        return [os.path.join(self.mail, DOMAIN, u, "new") for u in users]

    @staticmethod
    def files(dirs):
        out = set()
        for d in dirs:
            try:
                out.update(os.path.join(d, n) for n in os.listdir(d))
            except FileNotFoundError:
                pass
        return out

    @staticmethod
    def count(dirs):
        n = 0
        for d in dirs:
            try:
                n += len(os.listdir(d))
            except FileNotFoundError:
                pass
        return n

    def wait_delivered(self, dirs, target, what):
        deadline = time.time() + DELIVERY_TIMEOUT
        while self.count(dirs) < target:
            if time.time() > deadline:
                raise RuntimeError(f"{what}: {self.count(dirs)} of {target} messages in the "
                                   f"maildirs after {DELIVERY_TIMEOUT} s\n" + self.log()[-3000:])
            time.sleep(0.05)

    def log(self):
        try:
            with open(os.path.join(self.pf, "maillog"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def problems(self):
        """Deliveries Postfix did not finish at the first attempt."""
        return len(re.findall(r"status=(deferred|bounced)", self.log()))

    def stop(self):
        if "postfix" in self.started:
            subprocess.run(["script", "-qec", f"postfix -c {self.etc} stop", "/dev/null"],
                           capture_output=True, timeout=60)
        if "dovecot" in self.started:
            self.dovecot.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def tree_cpu(roots):
    """CPU seconds (user + system) used so far by the processes `roots` and all
    their descendants, live or exited: an exited process's time is added to its
    parent's cutime/cstime when reaped, and every daemon here reaps its own."""
    stats = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    w = f.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            # after the command: state ppid ...; utime stime cutime cstime are
            # fields 14-17 of proc(5), here 11-14
            stats[int(d)] = (int(w[1]), sum(int(x) for x in w[11:15]))
    children = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [r for r in roots if r in stats]
    while todo:
        pid = todo.pop()
        total += stats[pid][1]
        todo += children.get(pid, [])
    return total / os.sysconf("SC_CLK_TCK")


def pidfile(path):
    with open(path) as f:
        return int(f.readline().split()[0])


def smtp_source(args, port):
    """One smtp-source run; returns its wall time in seconds."""
    cmd = ["smtp-source", "-s", str(args.sessions), "-m", str(args.messages), "-l",
           str(args.length), "-f", SENDER, "-t", f"{SINGLE}@{DOMAIN}", "-M", "client.test",
           f"127.0.0.1:{port}"]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    t = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(f"smtp-source exited with {r.returncode}: {r.stderr[-2000:]}")
    return t


def load(args, bindir, port, messages, outfile):
    """One floe-bench-smtp run; returns (seconds, {seq: (start_us, latency_us)})."""
    cmd = [os.path.join(bindir, "floe-bench-smtp"), "-s", str(args.sessions), "-m",
           str(messages), "-l", str(args.length), "-f", SENDER, "-t", f"{SPREAD}@{DOMAIN}",
           "-n", str(args.mailboxes), "-o", outfile, f"127.0.0.1:{port}"]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    t = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(f"floe-bench-smtp: {r.stdout}{r.stderr[-2000:]}")
    per = {}
    with open(outfile) as f:
        for line in f:
            seq, start, lat = (int(x) for x in line.split())
            per[seq] = (start, lat)
    return t, per


def maildir_latencies(files, per):
    """Per message: file modification time minus the start of its transaction."""
    out = []
    rx = re.compile(rb"^X-Bench-Seq: (\d+)\r?$", re.M)
    for p in files:
        with open(p, "rb") as f:
            m = rx.search(f.read(8192))
        if not m:
            raise RuntimeError(f"{p}: no X-Bench-Seq header")
        start_us = per[int(m.group(1))][0]
        out.append((os.stat(p).st_mtime_ns // 1000 - start_us) / 1e6)
    return sorted(out)


def row(label, rate, lat=None, cpu=None):
    p = f"{lat[0] * 1e3:9.2f} {lat[1] * 1e3:9.2f}" if lat else f"{'-':>9} {'-':>9}"
    c = f"{cpu * 1e3:9.2f}" if cpu is not None else f"{'-':>9}"
    print(f"  {label:<34} {rate:9.1f} {p} {c}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--pg", required=True)
    ap.add_argument("--redis", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--length", type=int, default=5120)
    ap.add_argument("--mailboxes", type=int, default=100)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("smtp_compare.py: run as root (private Postfix and Dovecot instances)")

    users = [SINGLE] + [f"{SPREAD}{i}" for i in range(args.mailboxes)]
    floe = Floe(args.bin, args.pg, args.redis, args.work)
    ref = Reference(users)
    n = args.messages
    try:
        floe.start()
        floe.ctl("domain", "add", DOMAIN)
        for u in users:
            floe.ctl("account", "add", f"{u}@{DOMAIN}", "--password", "bench-password-1")
        ref.start()
        # The processes doing the work: floed, PostgreSQL and Redis (ops/stack's,
        # found from the socket directory in the conninfo) for Floe; both master
        # processes and their children for the reference.
        stack = os.path.dirname(os.path.dirname(re.search(r"host=(\S+)", args.pg).group(1)))
        floe_pids = [floe.proc.pid, pidfile(os.path.join(stack, "pg", "data", "postmaster.pid"))]
        if os.path.exists(os.path.join(stack, "redis", "redis.pid")):
            floe_pids.append(pidfile(os.path.join(stack, "redis", "redis.pid")))
        ref_pids = [pidfile(os.path.join(ref.pf, "queue", "pid", "master.pid")),
                    ref.dovecot.master_pid()]
        spread_dirs = ref.maildirs(users[1:])
        single_dirs = ref.maildirs([SINGLE])

        # Warm-up, the same for both: processes spawned, caches filled.
        out = os.path.join(ref.root, "latencies")
        load(args, args.bin, floe.port, WARMUP, out)
        load(args, args.bin, ref.port, WARMUP, out)
        ref.wait_delivered(spread_dirs, WARMUP, "warm-up")

        def settle():
            subprocess.run(["sync"])
            time.sleep(2)

        print(f"== smtp: {n} messages of {args.length} bytes, {args.sessions} sessions, "
              f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")

        # 1. smtp-source, one mailbox, a connection per message.
        settle()
        before = floe.count()
        c0 = tree_cpu(floe_pids)
        t_floe = smtp_source(args, floe.port)
        c_floe = (tree_cpu(floe_pids) - c0) / n
        if floe.count() != before + n:
            raise RuntimeError(f"Floe answered 250 to {n} messages but stored "
                               f"{floe.count() - before}")
        settle()
        before = ref.count(single_dirs)
        c0 = tree_cpu(ref_pids)
        w0 = time.time()
        t_acc = smtp_source(args, ref.port)
        ref.wait_delivered(single_dirs, before + n, "smtp-source")
        c_ref = (tree_cpu(ref_pids) - c0) / n
        new = ref.files(single_dirs)
        t_e2e = max(os.stat(p).st_mtime_ns for p in new) / 1e9 - w0
        print(f"smtp-source -s {args.sessions} -m {n} -l {args.length}: one mailbox, a new "
              "connection per message")
        print(f"  {'':<34} {'msg/s':>9} {'':>9} {'':>9} {'CPU ms':>9}")
        row("floe (250 = in the mailbox)", n / t_floe, cpu=c_floe)
        row("postfix (250 = queued)", n / t_acc)
        row("postfix+dovecot (in the maildir)", n / t_e2e, cpu=c_ref)
        print(f"  ratio floe/postfix+dovecot {t_e2e / t_floe:.2f}, "
              f"floe/postfix queued {t_acc / t_floe:.2f}")

        # 2. floe-bench-smtp, N mailboxes, per-message latency.
        settle()
        before = floe.count()
        c0 = tree_cpu(floe_pids)
        t_floe, per = load(args, args.bin, floe.port, n, out)
        c_floe = (tree_cpu(floe_pids) - c0) / n
        if floe.count() != before + n:
            raise RuntimeError(f"Floe answered 250 to {n} messages but stored "
                               f"{floe.count() - before}")
        lf = sorted(v[1] / 1e6 for v in per.values())
        settle()
        old = ref.files(spread_dirs)
        c0 = tree_cpu(ref_pids)
        w0 = time.time()
        t_acc, per = load(args, args.bin, ref.port, n, out)
        ref.wait_delivered(spread_dirs, len(old) + n, "floe-bench-smtp")
        c_ref = (tree_cpu(ref_pids) - c0) / n
        new = ref.files(spread_dirs) - old
        la = sorted(v[1] / 1e6 for v in per.values())
        le = maildir_latencies(new, per)
        t_e2e = max(os.stat(p).st_mtime_ns for p in new) / 1e9 - w0
        print(f"floe-bench-smtp -s {args.sessions} -m {n} -l {args.length} -n {args.mailboxes}: "
              "MAIL FROM to the reply after the data")
        print(f"  {'':<34} {'msg/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'CPU ms':>9}")
        row("floe (250 = in the mailbox)", n / t_floe, (pct(lf, .5), pct(lf, .99)), c_floe)
        row("postfix (250 = queued)", n / t_acc, (pct(la, .5), pct(la, .99)))
        row("postfix+dovecot (in the maildir)", n / t_e2e, (pct(le, .5), pct(le, .99)), c_ref)
        print(f"  ratio floe/postfix+dovecot: msg/s {t_e2e / t_floe:.2f}, "
              f"p99 {pct(lf, .99) / pct(le, .99):.2f}; floe/postfix queued: msg/s "
              f"{t_acc / t_floe:.2f}, p99 {pct(lf, .99) / pct(la, .99):.2f}")
        if ref.problems():
            print(f"  note: Postfix logged {ref.problems()} deferred or bounced deliveries")
        if not floe.alive():
            raise RuntimeError("floed exited during the run: " + floe.output()[-3000:])
        bad = floe.problems()
        if bad:
            print(f"  note: floed logged {len(bad)} errors or warnings, the first: {bad[0]}")
    finally:
        floe.stop()
        ref.stop()


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as e:
        sys.exit(f"smtp_compare.py: {e}")
