"""The admin JSON API end to end with Python requests: authentication and roles,
domains and accounts, ETag/If-Match, and bad input."""
import subprocess

import pytest
import requests
import urllib3

from floe_harness import floectl

urllib3.disable_warnings()
ADMIN = ("root@api.test", "admin-secret-1")


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from conftest import Node
    n = Node(tmp_path_factory.mktemp("api"))
    n.start()
    floectl(n.config, "domain", "add", "api.test")
    floectl(n.config, "account", "add", ADMIN[0], "--admin", env={"FLOE_PASSWORD": ADMIN[1]})
    floectl(n.config, "account", "add", "user@api.test", env={"FLOE_PASSWORD": "user-secret-1"})
    base = f"https://127.0.0.1:{n.admin_tls_port}/api/v1"
    yield n, base
    n.stop()


def call(method, url, auth=ADMIN, **kw):
    return requests.request(method, url, auth=auth, verify=False, timeout=10, **kw)


def test_authentication_and_roles(api):
    n, base = api
    assert call("GET", f"{base}/domains", auth=None).status_code == 401
    assert call("GET", f"{base}/domains", auth=(ADMIN[0], "wrong")).status_code == 401
    assert call("GET", f"{base}/domains", auth=("user@api.test", "user-secret-1")).status_code == 403
    plain = requests.get(f"http://127.0.0.1:{n.admin_port}/api/v1/domains", auth=ADMIN)
    assert plain.status_code == 401   # credentials only over TLS


def test_domains(api):
    _, base = api
    r = call("POST", f"{base}/domains", json={"name": "new.api.test"})
    assert r.status_code == 201 and r.json() == {"name": "new.api.test"}
    assert call("POST", f"{base}/domains", json={"name": "new.api.test"}).status_code == 409
    assert call("POST", f"{base}/domains", json={"name": "bad domain"}).status_code == 400
    assert "new.api.test" in call("GET", f"{base}/domains").json()
    assert call("DELETE", f"{base}/domains/new.api.test").status_code == 204
    assert call("DELETE", f"{base}/domains/new.api.test").status_code == 404
    assert call("DELETE", f"{base}/domains/api.test").status_code == 409   # has accounts


def test_accounts_and_optimistic_concurrency(api):
    _, base = api
    r = call("POST", f"{base}/accounts", json={"address": "bob@api.test", "password": "bob-pass-12",
                                               "full_name": "Bob"})
    assert r.status_code == 201 and r.json()["address"] == "bob@api.test"
    etag = r.headers["ETag"]
    r = call("GET", f"{base}/accounts/bob@api.test")
    assert r.status_code == 200 and r.headers["ETag"] == etag and r.json()["full_name"] == "Bob"
    # two administrators start from the same version; the second one is refused
    r1 = call("PATCH", f"{base}/accounts/bob@api.test", json={"full_name": "Robert"},
              headers={"If-Match": etag})
    assert r1.status_code == 200 and r1.headers["ETag"] != etag
    r2 = call("PATCH", f"{base}/accounts/bob@api.test", json={"disabled": True},
              headers={"If-Match": etag})
    assert r2.status_code == 412
    r3 = call("PATCH", f"{base}/accounts/bob@api.test", json={"disabled": True},
              headers={"If-Match": r1.headers["ETag"]})
    assert r3.status_code == 200 and r3.json()["disabled"] is True
    # a password change is a change too
    r4 = call("PATCH", f"{base}/accounts/bob@api.test", json={"password": "new-pass-123"})
    assert r4.status_code == 200 and r4.headers["ETag"] != r3.headers["ETag"]
    listed = call("GET", f"{base}/accounts?domain=api.test").json()
    assert {"bob@api.test", "user@api.test"} <= {a["address"] for a in listed}
    assert call("POST", f"{base}/accounts", json={"address": "bob@api.test"}).status_code == 409
    assert call("POST", f"{base}/accounts", json={"address": "x@nowhere.test"}).status_code == 404
    assert call("DELETE", f"{base}/accounts/bob@api.test").status_code == 204
    assert call("GET", f"{base}/accounts/bob@api.test").status_code == 404


def test_bad_requests(api):
    _, base = api
    assert call("POST", f"{base}/domains", data="{not json").status_code == 400
    assert call("POST", f"{base}/domains", data="[1,2]").status_code == 400
    assert call("PUT", f"{base}/domains").status_code == 405
    assert call("GET", f"{base}/nothing").status_code == 404
    assert call("PATCH", f"{base}/accounts/user@api.test", json={},
                headers={"If-Match": "garbage"}).status_code == 412
    # a literal ".." in the path (curl sends it as is; requests would normalise it)
    r = subprocess.run(["curl", "-sk", "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}",
                        "-u", ":".join(ADMIN), f"{base}/accounts/../domains"],
                       capture_output=True, text=True)
    assert r.stdout == "400"


def test_cluster_and_service_status(api):
    n, base = api
    r = call("GET", f"{base}/services")
    assert r.status_code == 200
    status = {s["service"]: s for s in r.json()["services"]}
    assert status["admin"]["running"] is True and status["admin"]["connections"] >= 1
    assert status["admin"]["uptime"] >= 0
    assert status["daytime"]["running"] is False and "connections" not in status["daytime"]
    assert r.json()["node"] == "it1"
    r = call("GET", f"{base}/cluster")
    assert r.status_code == 200
    c = r.json()
    assert any(node["node"] == "it1" and node["state"] == "up" for node in c["nodes"])
    assert call("POST", f"{base}/cluster").status_code == 405
    assert call("GET", f"{base}/services", auth=("user@api.test", "user-secret-1")).status_code == 403


def test_domain_administrators(api):
    """A domain administrator lists, sees and changes the accounts and the record of its
    own domains only; never a server administrator's account, nothing cluster-wide."""
    n, base = api
    boss = ("boss@api.test", "boss-secret-1")
    floectl(n.config, "domain", "delete", "other.api.test", "--force")
    for args, pw in ((("domain", "add", "other.api.test"), None),
                     (("account", "add", boss[0]), boss[1]),
                     (("account", "add", "eve@other.api.test"), "eve-secret-12"),
                     (("account", "add", "chief@api.test", "--admin"), "chief-secret-1")):
        r = floectl(n.config, *args, env={"FLOE_PASSWORD": pw} if pw else None)
        assert r.returncode == 0 or "exists" in r.stderr or "taken" in r.stderr, r.stderr
    # not yet an administrator of anything: like any user
    assert call("GET", f"{base}/domains", auth=boss).status_code == 403
    assert floectl(n.config, "account", "admin-of", boss[0], "api.test").returncode == 0
    try:
        assert call("GET", f"{base}/domains", auth=boss).json() == ["api.test"]
        r = call("GET", f"{base}/domains/api.test", auth=boss)
        assert r.status_code == 200 and boss[0] in r.json()["admins"]
        assert r.json()["name"] == "api.test" and r.json()["accounts"] >= 3
        for d in ("other.api.test", "none.api.test"):   # another's, or none at all: the same
            assert call("GET", f"{base}/domains/{d}", auth=boss).status_code == 403
            assert call("GET", f"{base}/accounts?domain={d}", auth=boss).status_code == 403
        listed = {a["address"] for a in call("GET", f"{base}/accounts", auth=boss).json()}
        assert "user@api.test" in listed and "eve@other.api.test" not in listed
        assert all(a.endswith("@api.test") for a in listed)
        assert call("GET", f"{base}/accounts/user@api.test", auth=boss).status_code == 200
        assert call("GET", f"{base}/accounts/nobody@api.test", auth=boss).status_code == 404
        for who in ("eve@other.api.test", "nobody@other.api.test"):
            assert call("GET", f"{base}/accounts/{who}", auth=boss).status_code == 403
            assert call("PATCH", f"{base}/accounts/{who}", auth=boss,
                        json={"full_name": "x"}).status_code == 403
        r = call("POST", f"{base}/accounts", auth=boss,
                 json={"address": "new@api.test", "password": "new-secret-12"})
        assert r.status_code == 201
        assert call("POST", f"{base}/accounts", auth=boss,
                    json={"address": "x@other.api.test"}).status_code == 403
        assert call("POST", f"{base}/accounts", auth=boss,
                    json={"address": "y@api.test", "admin": True}).status_code == 403
        assert call("PATCH", f"{base}/accounts/user@api.test", auth=boss,
                    json={"full_name": "Changed by boss"}).status_code == 200
        # a server administrator's account is out of reach, even in its own domain
        assert call("PATCH", f"{base}/accounts/chief@api.test", auth=boss,
                    json={"password": "taken-over-1"}).status_code == 403
        assert call("DELETE", f"{base}/accounts/chief@api.test", auth=boss).status_code == 403
        assert call("DELETE", f"{base}/accounts/new@api.test", auth=boss).status_code == 204
        for method, path in (("POST", "/domains"), ("DELETE", "/domains/api.test"),
                             ("GET", "/cluster"), ("GET", "/services")):
            assert call(method, f"{base}{path}", auth=boss, json={"name": "z.api.test"}) \
                .status_code == 403, path
        # the server administrator sees every domain record
        r = call("GET", f"{base}/domains/other.api.test")
        assert r.status_code == 200 and r.json()["admins"] == []
        assert call("GET", f"{base}/domains/none.api.test").status_code == 404
    finally:
        floectl(n.config, "account", "admin-of", boss[0], "api.test", "--remove")
    # the right ends at once
    assert call("GET", f"{base}/accounts/user@api.test", auth=boss).status_code == 403
