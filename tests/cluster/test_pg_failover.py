"""PostgreSQL failover under running nodes: a synchronous streaming replica is
promoted after the primary dies; nodes find the new primary through their
multi-host connection string and go on, and nothing acknowledged is lost."""
import glob
import os
import pathlib
import shutil
import smtplib
import subprocess
import tempfile
import time
import urllib.request

import pytest

from floe_harness import FLOECTL

PGBIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]


def as_owner(*cmd):
    if os.geteuid() == 0:
        cmd = ("runuser", "-u", "floe", "--") + cmd
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{cmd}: {r.stdout}{r.stderr}"
    return r.stdout


class Server:
    def __init__(self, d):
        self.dir = d
        self.data = d / "data"
        self.run = d / "run"

    def start(self):
        as_owner(f"{PGBIN}/pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w",
                 "-t", "60", "start")


@pytest.fixture
def pg_pair():
    # outside pytest's private temporary directory: the servers run as user floe
    base = pathlib.Path(tempfile.mkdtemp(prefix="floe-pgpair."))
    os.chmod(base, 0o755)
    if os.geteuid() == 0:
        subprocess.run(["chown", "floe:", str(base)], check=True)
    primary, standby = Server(base / "primary"), Server(base / "standby")
    for s in (primary, standby):
        as_owner("mkdir", "-p", str(s.run), str(s.dir))
    as_owner(f"{PGBIN}/initdb", "-D", str(primary.data), "-A", "trust", "-U", "floe", "-E", "UTF8",
             "--locale=C.UTF-8")
    with open(primary.data / "postgresql.conf", "a") as f:
        f.write(f"listen_addresses = ''\nunix_socket_directories = '{primary.run}'\n"
                "wal_level = replica\nmax_wal_senders = 4\nsynchronous_commit = on\n")
    primary.start()
    as_owner(f"{PGBIN}/createdb", "-h", str(primary.run), "-U", "floe", "floe")
    as_owner(f"{PGBIN}/pg_basebackup", "-h", str(primary.run), "-U", "floe", "-D",
             str(standby.data), "-R", "-X", "stream")
    with open(standby.data / "postgresql.conf", "a") as f:
        f.write(f"unix_socket_directories = '{standby.run}'\n"
                "synchronous_standby_names = ''\n")
    standby.start()
    # synchronous from now on: a commit is acknowledged once the standby has it
    as_owner(f"{PGBIN}/psql", "-h", str(primary.run), "-U", "floe", "-d", "floe", "-qc",
             "ALTER SYSTEM SET synchronous_standby_names = '*'")
    as_owner(f"{PGBIN}/pg_ctl", "-D", str(primary.data), "reload")
    yield primary, standby
    for s in (primary, standby):
        subprocess.run(["runuser", "-u", "floe", "--", f"{PGBIN}/pg_ctl", "-D", str(s.data), "-m",
                        "immediate", "stop"] if os.geteuid() == 0 else
                       [f"{PGBIN}/pg_ctl", "-D", str(s.data), "-m", "immediate", "stop"],
                       capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


def ready(node):
    try:
        with urllib.request.urlopen(f"http://{node.host}:{node.admin_port}/readyz", timeout=3) as r:
            return r.status == 200
    except Exception:
        return False


def test_promoted_replica_takes_over(cluster, pg_pair, tmp_path):
    primary, standby = pg_pair
    url = (f"host={primary.run},{standby.run} dbname=floe user=floe "
           "target_session_attrs=read-write connect_timeout=2")
    cluster.db = url
    cluster.ctl_config.write_text(f"[database]\nurl = {url}\n")
    assert cluster.ctl("db", "migrate").returncode == 0
    nodes = [cluster.add_node(i) for i in (1, 2)]
    st, _ = cluster.wait_master()
    epoch = st["epoch"]
    # acknowledged before the failover: with synchronous replication the standby has it
    assert cluster.ctl("domain", "add", "before.test").returncode == 0
    assert cluster.ctl("account", "add", "sink@before.test").returncode == 0
    s = smtplib.SMTP(nodes[0].host, nodes[0].smtp_port, timeout=10)
    for i in range(20):
        s.sendmail("load@example.org", ["sink@before.test"], f"Subject: acked-{i}\r\n\r\nx\r\n")
    s.quit()

    as_owner(f"{PGBIN}/pg_ctl", "-D", str(primary.data), "-m", "immediate", "stop")
    time.sleep(1)
    as_owner(f"{PGBIN}/pg_ctl", "-D", str(standby.data), "-w", "promote")

    deadline = time.time() + 30
    while not all(ready(n) for n in nodes) and time.time() < deadline:
        time.sleep(0.3)
    assert all(ready(n) for n in nodes), [n.output()[-2000:] for n in nodes]
    st, _ = cluster.wait_master(lambda s: s["master"] is not None and s["epoch"] > epoch,
                                timeout=30)
    r = cluster.ctl("domain", "list")
    assert r.returncode == 0 and "before.test" in r.stdout.split()
    assert cluster.ctl("domain", "add", "after.test").returncode == 0
    # every message that got 250 before the failover is on the promoted server, and mail
    # flows again through the other node
    s = smtplib.SMTP(nodes[1].host, nodes[1].smtp_port, timeout=10)
    s.sendmail("load@example.org", ["sink@before.test"], "Subject: acked-after\r\n\r\nx\r\n")
    s.quit()
    r = subprocess.run(["psql", url, "-XAtqc",
                        "SELECT count(*) FROM messages WHERE subject LIKE 'acked-%'"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "21", r.stdout + r.stderr
