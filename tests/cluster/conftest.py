"""Cluster test harness: one PostgreSQL and Redis (from ops/test) and several
floed nodes on their own loopback addresses (127.0.0.2, .3, ...), sharing a fresh
database per test."""
import json
import os
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from floe_harness import FLOECTL, Node, fresh_database  # noqa: E402


class Cluster:
    def __init__(self, tmp_path_factory, name):
        self.tmp = tmp_path_factory
        self.db = fresh_database(name)
        self.nodes = []
        self.ctl_config = tmp_path_factory.mktemp("ctl") / "floed.conf"
        self.ctl_config.write_text(f"[database]\nurl = {self.db}\n")
        r = self.ctl("db", "migrate")
        assert r.returncode == 0, r.stderr

    def add_node(self, index, sections=None, start=True):
        n = Node(self.tmp.mktemp(f"node{index}"), sections, node_id=f"node{index}",
                 database=self.db, host=f"127.0.0.{index + 1}")
        self.nodes.append(n)
        if start:
            n.start()
        return n

    def node(self, node_id):
        return next(n for n in self.nodes if n.sections["node"]["id"] == node_id)

    def ctl(self, *args):
        r = subprocess.run([FLOECTL, "--config", str(self.ctl_config)] + list(args),
                           capture_output=True, text=True, timeout=30)
        return r

    def status(self):
        r = self.ctl("--json", "cluster", "status")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def wait_master(self, pred=lambda st: st["master"] is not None, timeout=20):
        """Polls `floectl cluster status` until pred holds; returns (status, seconds waited)."""
        t0 = time.time()
        last = None
        while time.time() - t0 < timeout:
            last = self.status()
            if pred(last):
                return last, time.time() - t0
            time.sleep(0.1)
        raise AssertionError(f"condition not reached in {timeout}s; last status: {last}")


@pytest.fixture
def cluster(tmp_path_factory, request):
    c = Cluster(tmp_path_factory, "floe_cluster_" + request.node.name.lower()[:40])
    yield c
    errors = []
    for n in c.nodes:
        try:
            n.stop()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n".join(errors))
