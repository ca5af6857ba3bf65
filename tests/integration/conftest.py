"""Fixtures of the integration tests; the harness itself is tests/floe_harness.py."""
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from floe_harness import *  # noqa: E402,F401,F403
from floe_harness import Node  # noqa: E402


@pytest.fixture
def node_factory(tmp_path_factory):
    nodes = []

    def make(sections=None, start=True, **kw):
        n = Node(tmp_path_factory.mktemp("node"), sections, **kw)
        nodes.append(n)
        if start:
            n.start()
        return n

    yield make
    errors = []
    for n in nodes:
        try:
            n.stop()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n".join(errors))


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """Test certificates made with the openssl command: a private CA, leaf certificates
    for exact, wildcard and default names, and a key that matches none of them."""
    d = tmp_path_factory.mktemp("certs")

    def sh(*cmd):
        subprocess.run(cmd, check=True, capture_output=True, cwd=d)

    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", "/CN=Floe Test CA")

    def leaf(name, cn, sans):
        sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        (d / f"{name}.ext").write_text("subjectAltName=" + ",".join(f"DNS:{s}" for s in sans) + "\n")
        sh("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
           "-CAcreateserial", "-out", f"{name}.pem", "-days", "30", "-extfile", f"{name}.ext")
        # combined file: key + certificate + chain, as administrators often deploy
        (d / f"{name}.all.pem").write_text((d / f"{name}.key").read_text() +
                                           (d / f"{name}.pem").read_text() +
                                           (d / "ca.pem").read_text())

    leaf("default", "default.test", ["default.test"])
    leaf("exact", "mail.example.test", ["mail.example.test"])
    leaf("wild", "*.example.test", ["*.example.test"])
    leaf("deep", "*.deep.example.test", ["*.deep.example.test"])
    sh("openssl", "genpkey", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
       "-out", "other.key")
    return d
