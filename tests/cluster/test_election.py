"""Master election across three nodes: one master at start, takeover after a
crash, removal of a frozen master, and the operator controls."""
import signal
import time


def masters(status):
    return [n["node"] for n in status["nodes"] if n["master"]]


def test_one_master_and_membership(cluster):
    for i in (1, 2, 3):
        cluster.add_node(i)
    st, _ = cluster.wait_master(lambda s: s["master"] and
                                len([n for n in s["nodes"] if n["state"] == "up"]) == 3)
    assert len(masters(st)) == 1 and st["epoch"] >= 1
    node = cluster.node(st["master"])
    node.wait_log(rf"this node is master \(epoch {st['epoch']}\)")
    for n in st["nodes"]:
        assert "admin" in n["connections"] and n["version"]
    r = cluster.ctl("cluster", "status")
    assert r.returncode == 0 and f"master: {st['master']} (epoch {st['epoch']})" in r.stdout


def test_master_killed_new_master_quickly(cluster):
    for i in (1, 2, 3):
        cluster.add_node(i)
    st, _ = cluster.wait_master()
    old, epoch = st["master"], st["epoch"]
    cluster.node(old).kill()
    t0 = time.time()
    st, _ = cluster.wait_master(lambda s: s["master"] not in (None, old), timeout=10)
    took = time.time() - t0
    # the requirement: a new master within 5 s of a crash
    assert took < 5, f"takeover took {took:.1f}s"
    assert st["epoch"] == epoch + 1
    assert len(masters(st)) == 1
    cluster.nodes.remove(cluster.node(old))


def test_frozen_master_is_removed_and_knows_it(cluster):
    for i in (1, 2, 3):
        cluster.add_node(i)
    st, _ = cluster.wait_master()
    old, epoch = st["master"], st["epoch"]
    frozen = cluster.node(old)
    frozen.signal(signal.SIGSTOP)
    try:
        st, waited = cluster.wait_master(lambda s: s["master"] not in (None, old), timeout=20)
        assert waited < 15, f"frozen master removed after {waited:.1f}s"
        assert st["epoch"] > epoch
    finally:
        frozen.signal(signal.SIGCONT)
    frozen.wait_log(rf"no longer master \(epoch {epoch}\)", timeout=10)
    time.sleep(2)
    st = cluster.status()
    assert len(masters(st)) == 1 and masters(st)[0] != old
    assert {n["node"]: n["state"] for n in st["nodes"]}[old] == "up"   # back as a member


def test_pin_unpin_and_stepdown(cluster):
    for i in (1, 2, 3):
        cluster.add_node(i)
    st, _ = cluster.wait_master()
    target = next(n["node"] for n in st["nodes"] if n["node"] != st["master"])
    r = cluster.ctl("cluster", "master", "pin", target)
    assert r.returncode == 0, r.stderr
    st, _ = cluster.wait_master(lambda s: s["master"] == target and s["pinned"] == target)
    assert cluster.ctl("cluster", "master", "pin", "nosuch").returncode == 1
    # a pinned master asked to step down is the only candidate: it comes back
    assert cluster.ctl("cluster", "master", "unpin").returncode == 0
    epoch = st["epoch"]
    assert cluster.ctl("cluster", "master", "stepdown").returncode == 0
    st, _ = cluster.wait_master(lambda s: s["master"] is not None and s["epoch"] > epoch)
    assert st["master"] != target and st["pinned"] is None
    cluster.node(target).wait_log("asked to step down")


def test_clean_stop_hands_over(cluster):
    for i in (1, 2):
        cluster.add_node(i)
    st, _ = cluster.wait_master()
    old = st["master"]
    node = cluster.node(old)
    node.stop()
    cluster.nodes.remove(node)
    st, _ = cluster.wait_master(lambda s: s["master"] not in (None, old))
    assert {n["node"]: n["state"] for n in st["nodes"]}[old] == "stopped"
