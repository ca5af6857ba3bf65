"""ops/run as a newcomer uses it: one command to a working stack, then --stop."""
import os
import re
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))


def test_ops_run_detach_and_stop(tmp_path):
    env = dict(os.environ, FLOE_VAR=str(tmp_path / "var"), FLOE_DEMO_PASSWORD="demo-secret-1",
               FLOE_ADMIN_PASSWORD="admin-secret-1")
    r = subprocess.run([f"{ROOT}/ops/run", "--detach", "--port-offset", "20000"], env=env,
                       capture_output=True, text=True, timeout=600)
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        out = r.stdout
        cfg = re.search(r"^config (\S+)$", out, re.M).group(1)
        admin_http = re.search(r"^admin-http (http://\S+)$", out, re.M).group(1)
        admin = re.search(r"^admin (https://\S+)$", out, re.M).group(1)
        assert admin_http.endswith(":29180") and admin.endswith(":29443"), out
        assert "account demo@example.test password demo-secret-1" in out
        assert "admin@example.test password admin-secret-1" in out
        assert subprocess.run(["curl", "-sf", f"{admin_http}/readyz"], capture_output=True,
                              text=True).stdout == "ready\n"
        # TLS with the generated self-signed certificate
        assert subprocess.run(["curl", "-sfk", f"{admin}/healthz"], capture_output=True,
                              text=True).stdout == "ok\n"
        floectl = re.search(r"^floectl (.+)$", out, re.M).group(1).split()
        show = subprocess.run(floectl + ["--json", "account", "show", "demo@example.test"],
                              capture_output=True, text=True)
        assert show.returncode == 0 and '"address": "demo@example.test"' in show.stdout
        # a second start while it runs is refused, not a second node on the same ports
        r2 = subprocess.run([f"{ROOT}/ops/run", "--detach", "--port-offset", "20000"], env=env,
                            capture_output=True, text=True, timeout=600)
        assert r2.returncode == 1 and "already running" in r2.stderr, r2.stdout + r2.stderr
    finally:
        stop = subprocess.run([f"{ROOT}/ops/run", "--stop"], env=env, capture_output=True,
                              text=True, timeout=120)
    assert stop.returncode == 0, stop.stderr
    assert subprocess.run(["curl", "-sf", f"{admin_http}/healthz"], capture_output=True).returncode != 0
