"""Scheduled tasks and events across three nodes: master-only tasks run once per
slot on the master and go on after a failover; every-node tasks run everywhere;
events run at start, reload and stop."""
import json
import signal
import time


def runs(cluster, task):
    r = cluster.ctl("--json", "task", "runs", task)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def lines(path):
    return path.read_text().splitlines() if path.exists() else []


def test_master_only_task_once_per_slot_across_failover(cluster, tmp_path):
    out = tmp_path / "ran.txt"
    r = cluster.ctl("task", "add", "stamp", "--schedule", "@every 2s", "command",
                    f'echo "$FLOE_SLOT $FLOE_NODE $FLOE_EPOCH" >> {out}')
    assert r.returncode == 0, r.stderr
    for i in (1, 2, 3):
        cluster.add_node(i)
    st, _ = cluster.wait_master()
    first_master = st["master"]
    deadline = time.time() + 20
    while len(lines(out)) < 3 and time.time() < deadline:
        time.sleep(0.2)
    assert len(lines(out)) >= 3, lines(out)
    assert {l.split()[1] for l in lines(out)} == {first_master}

    cluster.node(first_master).kill()
    cluster.nodes.remove(cluster.node(first_master))
    st, _ = cluster.wait_master(lambda s: s["master"] not in (None, first_master))
    seen = len(lines(out))
    deadline = time.time() + 20
    while len(lines(out)) < seen + 3 and time.time() < deadline:
        time.sleep(0.2)
    entries = [l.split() for l in lines(out)]
    slots = [e[0] for e in entries]
    assert len(slots) == len(set(slots)), f"a slot ran twice: {entries}"
    assert entries[-1][1] == st["master"] and int(entries[-1][2]) == st["epoch"]
    recorded = runs(cluster, "stamp")
    assert all(r["status"] in ("ok", "running") for r in recorded)
    assert any(r["ran_on"] == st["master"] and r["status"] == "ok" for r in recorded)


def test_every_node_task_and_failures(cluster, tmp_path):
    out = tmp_path / "each.txt"
    assert cluster.ctl("task", "add", "each", "--schedule", "@every 2s", "--every-node",
                       "command", f'echo "$FLOE_NODE" >> {out}').returncode == 0
    assert cluster.ctl("task", "add", "broken", "--schedule", "@every 2s", "command",
                       "echo failing; exit 3").returncode == 0
    for i in (1, 2):
        cluster.add_node(i)
    deadline = time.time() + 20
    while len(set(lines(out))) < 2 and time.time() < deadline:
        time.sleep(0.2)
    assert set(lines(out)) == {"node1", "node2"}
    deadline = time.time() + 10
    while not any(r["status"] == "failed" for r in runs(cluster, "broken")) and time.time() < deadline:
        time.sleep(0.2)
    failed = [r for r in runs(cluster, "broken") if r["status"] == "failed"]
    assert failed and "failing" in failed[0]["output"]
    # bad definitions are refused
    assert cluster.ctl("task", "add", "x", "--schedule", "61 * * * *", "command", "true").returncode == 1
    assert cluster.ctl("task", "add", "y", "--schedule", "@daily", "url", "ftp://x").returncode == 1
    assert cluster.ctl("task", "add", "each", "--schedule", "@daily", "command", "true").returncode == 1
    assert cluster.ctl("task", "remove", "nosuch").returncode == 1
    assert cluster.ctl("task", "remove", "broken").returncode == 0


def test_builtin_tombstone_purge_and_events(cluster, tmp_path):
    log = tmp_path / "events.txt"
    for ev in ("server_started", "settings_changed", "server_stopped"):
        r = cluster.ctl("event", "add", f"on-{ev}", ev, "command", f'echo "{ev} $FLOE_NODE" >> {log}')
        assert r.returncode == 0, r.stderr
    assert cluster.ctl("event", "add", "bad", "server_exploded", "command", "true").returncode == 1
    assert cluster.ctl("task", "add", "purge", "--schedule", "@every 2s", "builtin",
                       "tombstone_purge 30").returncode == 0
    assert cluster.ctl("task", "add", "gc", "--schedule", "@every 2s", "builtin",
                       "blob_gc 24").returncode == 0
    assert cluster.ctl("task", "add", "bad", "--schedule", "@daily", "builtin",
                       "defragment").returncode == 1
    n = cluster.add_node(1)
    deadline = time.time() + 10
    while "server_started node1" not in lines(log) and time.time() < deadline:
        time.sleep(0.2)
    assert "server_started node1" in lines(log)
    n.signal(signal.SIGHUP)
    deadline = time.time() + 10
    while "settings_changed node1" not in lines(log) and time.time() < deadline:
        time.sleep(0.2)
    assert "settings_changed node1" in lines(log)
    deadline = time.time() + 15
    while not runs(cluster, "purge") and time.time() < deadline:
        time.sleep(0.3)
    done = [r for r in runs(cluster, "purge") if r["status"] == "ok"]
    deadline = time.time() + 10
    while not done and time.time() < deadline:
        time.sleep(0.3)
        done = [r for r in runs(cluster, "purge") if r["status"] == "ok"]
    assert done and "purged 0 tombstone(s) older than 30 days" in done[0]["output"]
    deadline = time.time() + 10
    gc = []
    while not gc and time.time() < deadline:
        time.sleep(0.3)
        gc = [r for r in runs(cluster, "gc") if r["status"] == "ok"]
    assert gc and gc[0]["output"].startswith("examined "), runs(cluster, "gc")
    n.stop()
    cluster.nodes.remove(n)
    assert "server_stopped node1" in lines(log)
