#!/usr/bin/env python3
"""Cluster benchmark, run by `ops/bench cluster`: how long a message delivered on one node
takes to reach an IMAP IDLE session on another, over the cluster bus, beside what Redis
itself takes for the same hop.

What runs:
  - two floeds from the release build sharing the private PostgreSQL (a fresh database) and
    Redis of ops/stack, as a cluster does: node A with only IMAP on a loopback port, node B
    with only its MX (benchlib.FloeNode turns every other service off). Both must report
    floe_bus_connected = 1 before anything is measured.
  - K accounts (default 200) with an IMAP session each on node A: logged in
    (SCRAM-SHA-256), INBOX selected, in IDLE.

What is measured: M messages (default 10 000) of 5 KB, sent one after the other over one SMTP
session to node B, message i to account i mod K. For each: the time from reading the 250
after the data (the message is committed: Floe answers 250 after the commit) to reading
"* n EXISTS" on that account's IDLE session on node A, and the time from writing the
end-of-data line to the same EXISTS. The next message is sent once the EXISTS has arrived
(or after 5 s, counted as missing), so every sample is one message crossing an idle
cluster. The path: B commits, publishes MailboxChange on Redis; A's bus thread receives it,
hands it to the sessions of that account (node/imap/notify.c); the session in IDLE reads
the folder's changes on a worker (one PostgreSQL query) and writes EXISTS.

Reference, on the same Redis socket: redis-benchmark's PING and PUBLISH round trips (one
client), and the publish-to-subscriber time of Redis pub/sub measured the same way as the
bus (this script: one connection PUBLISHes, another SUBSCRIBEd one receives; N samples,
one at a time). The ratio of Floe's p50 to the pub/sub p50 is what the bus, the session
and the database read add to Redis itself.

usage: cluster_idle.py --bin BUILD_DIR --pg CONNINFO --redis URL --work DIR
                       [--sessions K] [--messages M] [--size BYTES]
"""
import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from benchlib import (DOMAIN, PASSWORD, FloeNode, Imap, MessageMaker, ProtocolError, Smtp,
                      free_port, fresh_database, pct, raise_fd_limit)

WAIT = 5.0  # seconds a message may take to show up before it counts as missing


def user(i):
    return f"idle{i}@{DOMAIN}"


class Node(FloeNode):
    def __init__(self, bindir, pg, redis, work, name, service):
        self.port = free_port()
        keys = {"listen": f"127.0.0.1:{self.port}"}
        if service == "imap":
            keys["listen_tls"] = f"127.0.0.1:{free_port()}"
        super().__init__(bindir, pg, redis, os.path.join(work, f"floe-{name}"), f"bench{name}",
                         {service: keys}, extra={"smtp": {"hostname": f"{name}.mx.{DOMAIN}"}})

    def wait_bus(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.metric("floe_bus_connected") == 1:
                return
            time.sleep(0.2)
        raise RuntimeError(f"node {self.dir}: floe_bus_connected is not 1 after {timeout} s")


async def measure(a, b, k, m, size):
    """Returns (latencies from 250, latencies from end of data, missing count)."""
    cache, sessions = {}, []
    for start in range(0, k, 50):
        async def one(i):
            c = await Imap.connect(a.port)
            await c.scram_login(user(i), PASSWORD, cache)
            await c.ok(b"SELECT INBOX")
            await c.idle_start()
            return c
        sessions += await asyncio.gather(*(one(i) for i in range(start, min(k, start + 50))))

    arrived = [asyncio.Queue() for _ in range(k)]

    async def reader(i, c):
        while True:
            try:
                line = await c.line()
            except (asyncio.IncompleteReadError, OSError):
                return
            if line.startswith(b"* ") and line.endswith(b" EXISTS"):
                arrived[i].put_nowait(time.perf_counter())

    readers = [asyncio.create_task(reader(i, c)) for i, c in enumerate(sessions)]
    maker = MessageMaker(7)
    smtp = await Smtp.connect(b.port)
    from_250, from_dot, missing = [], [], 0
    for n in range(m):
        i = n % k
        if n and n % 500 == 0:  # floed caps the messages of one SMTP session
            await smtp.quit()
            smtp = await Smtp.connect(b.port)
        msg = maker.message(random.Random(n), user(i), n, size=size)
        t_dot = []
        t_250 = await smtp.send("pusher@example.org", user(i), msg,
                                on_data_end=lambda: t_dot.append(time.perf_counter()))
        try:
            t = await asyncio.wait_for(arrived[i].get(), WAIT)
        except asyncio.TimeoutError:
            missing += 1
            continue
        from_250.append(t - t_250)
        from_dot.append(t - t_dot[0])
    await smtp.quit()
    # each session must have seen exactly its messages: nothing late or doubled
    extra = sum(q.qsize() for q in arrived)
    for c in sessions:
        c.w.write(b"DONE\r\n")
    await asyncio.sleep(0.5)
    for r in readers:
        r.cancel()
    for c in sessions:
        await c.close()
    return sorted(from_250), sorted(from_dot), missing, extra


async def pubsub(sock, n):
    """Redis pub/sub publish-to-subscriber times (seconds), one message at a time."""
    sr, sw = await asyncio.open_unix_connection(sock)
    pr, pw = await asyncio.open_unix_connection(sock)
    sw.write(b"*2\r\n$9\r\nSUBSCRIBE\r\n$14\r\nfloe-bench-ref\r\n")
    for _ in range(6):  # *3 $9 subscribe $14 floe-bench-ref :1
        await sr.readline()
    out = []
    for i in range(n):
        payload = b"%08d" % i
        t0 = time.perf_counter()
        pw.write(b"*3\r\n$7\r\nPUBLISH\r\n$14\r\nfloe-bench-ref\r\n$8\r\n" + payload + b"\r\n")
        # *3 $7 message $14 floe-bench-ref $8 payload
        for _ in range(7):
            line = await sr.readline()
        t1 = time.perf_counter()
        if line.rstrip() != payload:
            raise RuntimeError(f"redis pub/sub: got {line!r}")
        await pr.readline()  # :1 subscriber
        out.append(t1 - t0)
    for w in (sw, pw):
        w.close()
    return sorted(out)


def redis_benchmark(sock, *args):
    """(p50, p99, max) in ms from redis-benchmark --csv, one client."""
    r = subprocess.run(["redis-benchmark", "-s", sock, "-c", "1", "-n", "20000", "--csv"] +
                       list(args), capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError("redis-benchmark: " + r.stderr)
    row = [v.strip('"') for v in r.stdout.strip().splitlines()[-1].split(",")]
    return float(row[4]), float(row[6]), float(row[7])


def line(label, v, unit=1e3):
    print(f"  {label:<44} {pct(v, .5) * unit:9.3f} {pct(v, .99) * unit:9.3f} "
          f"{v[-1] * unit:9.3f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--pg", required=True)
    ap.add_argument("--redis", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--size", type=int, default=5000)
    a = ap.parse_args()
    if not a.redis.startswith("unix://"):
        sys.exit("cluster_idle.py: --redis must be a unix:// URL (as ops/stack gives)")
    sock = a.redis[len("unix://"):]
    raise_fd_limit(a.sessions * 2 + 1000)

    pg = fresh_database(a.pg, "floe_bench_cluster")
    na = Node(a.bin, pg, a.redis, a.work, "a", "imap")
    nb = Node(a.bin, pg, a.redis, a.work, "b", "smtp")
    try:
        na.start()  # applies the migrations; B then finds the schema current
        nb.start()
        na.ctl("domain", "add", DOMAIN)
        with ThreadPoolExecutor(4) as ex:
            list(ex.map(lambda i: na.ctl("account", "add", user(i), "--password", PASSWORD),
                        range(a.sessions)))
        na.wait_bus()
        nb.wait_bus()
        print(f"== cluster: IDLE push across nodes, {a.sessions} IDLE sessions on node A, "
              f"{a.messages} messages of {a.size} bytes by SMTP to node B, one at a time "
              f"({os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}, load average "
              f"{os.getloadavg()[0]:.1f})")
        from_250, from_dot, missing, extra = asyncio.run(
            measure(na, nb, a.sessions, a.messages, a.size))
        ps = asyncio.run(pubsub(sock, 5000))
        ping = redis_benchmark(sock, "-t", "ping_mbulk")
        publish = redis_benchmark(sock, "PUBLISH", "floe-bench-ref", "hello")

        print(f"  {'':<44} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}")
        line("floe: SMTP 250 on B -> * n EXISTS on A", from_250)
        line("floe: end of DATA on B -> * n EXISTS on A", from_dot)
        line("redis pub/sub: PUBLISH -> subscriber (5000)", ps)
        for label, (p50, p99, mx) in (("redis-benchmark PING, 1 client", ping),
                                      ("redis-benchmark PUBLISH, 1 client", publish)):
            print(f"  {label:<44} {p50:9.3f} {p99:9.3f} {mx:9.3f}")
        print(f"  ratio floe (from 250) / redis pub/sub: p50 {pct(from_250, .5) / pct(ps, .5):.0f}"
              f", p99 {pct(from_250, .99) / pct(ps, .99):.0f}")
        print(f"  {len(from_250)} of {a.messages} messages seen in IDLE within {WAIT:.0f} s, "
              f"{missing} missing, {extra} unexpected EXISTS")
        for n in (na, nb):
            if not n.alive():
                raise RuntimeError("a floed exited during the run: " + n.output()[-3000:])
            bad = n.problems()
            if bad:
                print(f"  note: {n.dir} logged {len(bad)} errors or warnings, the first: {bad[0]}")
    finally:
        nb.stop()
        na.stop()


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, ProtocolError) as e:
        sys.exit(f"cluster_idle.py: {e}")
