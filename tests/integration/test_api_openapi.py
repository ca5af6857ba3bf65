"""docs/openapi.yaml against the admin API it describes.

- The description is well formed: OpenAPI 3.0, every $ref resolves, every path parameter is
  declared, operation ids are unique, every operation documents 401/403/503 and a success,
  conditional ones 412.
- Routes: the paths and methods of the description are exactly those of node/http/api.c's
  route table, and a live node agrees: on every described path it answers the described
  methods (never its "no such resource" 404 or 405) and 405 with the same Allow list for
  the others; one segment more or less is 404.
- Answers: a scenario calls every operation successfully; each answer's status is
  documented, its body matches the documented schema (no undocumented members), documented
  ETag headers are there, and error bodies are {"error": ...}.
"""
import os
import re

import pytest
import requests
import urllib3
import yaml

from floe_harness import Node, floectl, fresh_database, sql, sql_scalar

urllib3.disable_warnings()

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ADMIN = ("root@spec.test", "root-secret-1")
SAMPLES = {"name": "spec.test", "address": "nobody@spec.test", "alias": "alias.spec.test",
           "member": "nobody@spec.test", "id": "999999"}


@pytest.fixture(scope="module")
def spec():
    with open(os.path.join(ROOT, "docs", "openapi.yaml")) as f:
        return yaml.safe_load(f)


def resolve(spec, node):
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        node = spec
        for part in ref[2:].split("/"):
            assert part in node, f"unresolved $ref {ref}"
            node = node[part]
    return node


def operations(spec):
    for path, item in spec["paths"].items():
        for method in METHODS:
            op = item.get(method.lower())
            if op is not None:
                yield path, method, item, op


def server_routes():
    """(method, path) of every entry of the route table in node/http/api.c."""
    with open(os.path.join(ROOT, "node", "http", "api.c")) as f:
        text = f.read()
    table = text[text.index("static const struct api_route routes[]"):]
    table = table[:table.index("};")]
    found = re.findall(r'\{\s*"([A-Z]+)",\s*"(/[^"]*)"', table)
    assert len(found) > 40
    return set(found)


# ---- the description itself ----

def test_description_is_well_formed(spec):
    assert str(spec["openapi"]).startswith("3.0.")
    assert spec["components"]["securitySchemes"]["basic"]["scheme"] == "basic"
    refs = []

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(spec)
    for ref in refs:
        resolve(spec, {"$ref": ref})
    ids = set()
    for path, method, item, op in operations(spec):
        where = f"{method} {path}"
        assert op.get("operationId") and op["operationId"] not in ids, where
        ids.add(op["operationId"])
        assert op.get("summary"), where
        params = [resolve(spec, p) for p in item.get("parameters", []) + op.get("parameters", [])]
        declared = {p["name"] for p in params if p["in"] == "path"}
        assert declared == set(re.findall(r"\{(\w+)\}", path)), where
        assert all(p.get("required") for p in params if p["in"] == "path"), where
        codes = set(op["responses"])
        assert {"400", "401", "403", "503"} <= codes, where
        assert any(c.startswith("2") for c in codes), where
        if any(p["name"] == "If-Match" for p in params):
            assert "412" in codes, where
        if "requestBody" in op:
            assert method in ("POST", "PUT", "PATCH"), where
            schema = resolve(spec, op["requestBody"]["content"]["application/json"]["schema"])
            assert schema.get("type") == "object", where
        for code, resp in op["responses"].items():
            resp = resolve(spec, resp)
            assert resp.get("description"), (where, code)
            if code.startswith("4") or code.startswith("5"):
                assert resolve(spec, resp["content"]["application/json"]["schema"]) == \
                    spec["components"]["schemas"]["Error"], (where, code)


def test_description_and_route_table_agree(spec):
    described = {(m, p) for p, m, _, _ in operations(spec)}
    routes = server_routes()
    assert described - routes == set(), "described but not routed"
    assert routes - described == set(), "routed but not described"


# ---- a live node ----

@pytest.fixture(scope="module")
def live(tmp_path_factory):
    n = Node(tmp_path_factory.mktemp("apispec"), {"smtp": {"retry_min": "3600",
                                                           "dns_servers": "127.0.0.1:9"}},
             database=fresh_database("floe_api_spec"))
    n.start()
    for args, pw in ((("domain", "add", "spec.test"), None),
                     (("account", "add", ADMIN[0], "--admin"), ADMIN[1]),
                     (("account", "add", "a@spec.test"), "a-secret-123"),
                     (("account", "add", "b@spec.test"), "b-secret-123")):
        r = floectl(n.config, *args, env={"FLOE_PASSWORD": pw} if pw else None)
        assert r.returncode == 0, r.stderr
    yield n, f"https://127.0.0.1:{n.admin_tls_port}/api/v1"
    n.stop()


def call(base, method, path, **kw):
    return requests.request(method, base + path, auth=ADMIN, verify=False, timeout=15, **kw)


def test_server_answers_exactly_the_described_methods(spec, live):
    _, base = live
    for path, item in spec["paths"].items():
        concrete = re.sub(r"\{(\w+)\}", lambda m: SAMPLES[m.group(1)], path)
        described = [m for m in METHODS if m.lower() in item]
        for method in METHODS:
            r = call(base, method, concrete)
            body = r.json() if r.content else {}
            error = body.get("error") if r.status_code >= 400 else None
            assert r.status_code < 400 or set(body) == {"error"}, (method, path, r.text)
            if method in described:
                assert r.status_code != 405, (method, path)
                assert error != "no such resource", (method, path)
            else:
                assert r.status_code == 405, (method, path, r.status_code)
                allowed = [m.strip() for m in r.headers["Allow"].split(",")]
                assert sorted(allowed) == sorted(described), (path, allowed)
        # a segment more (unless that is described too) or an empty one: no such path
        for extra in (concrete + "/x", concrete + "/", concrete[:concrete.rindex("/")] + "//"):
            if any(re.match("^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(t)) + "$", extra)
                   for t in spec["paths"]):
                continue
            for method in METHODS:
                r = call(base, method, extra)
                assert r.status_code == 404, (method, extra, r.status_code)
                assert r.json() == {"error": "no such resource"}, extra


# ---- answers against the schemas ----

def check(spec, schema, value, where):
    """Validates value against schema (the subset of OpenAPI 3.0 schemas the description
    uses); an object may only have the members its schema names, when it names any."""
    schema = resolve(spec, schema)
    if value is None:
        assert schema.get("nullable") or schema == {}, f"{where}: null"
        return
    if "allOf" in schema:
        for s in schema["allOf"]:
            check_loose(spec, s, value, where)
        names = set()
        for s in schema["allOf"]:
            names |= set(resolve(spec, s).get("properties", {}))
        if isinstance(value, dict) and names:
            assert set(value) <= names, f"{where}: undocumented {set(value) - names}"
        return
    for key in ("oneOf", "anyOf"):
        if key in schema:
            ok = 0
            for s in schema[key]:
                try:
                    check(spec, s, value, where)
                    ok += 1
                except AssertionError:
                    pass
            assert ok == 1 if key == "oneOf" else ok >= 1, f"{where}: {key} matched {ok}"
            return
    t = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool}
    if t == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: {value!r}"
        assert value >= schema.get("minimum", value) and value <= schema.get("maximum", value)
    elif t:
        assert isinstance(value, types[t]), f"{where}: {value!r} is not {t}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if t == "object":
        props = schema.get("properties", {})
        for r in schema.get("required", []):
            assert r in value, f"{where}: missing {r}"
        if props:
            assert set(value) <= set(props), f"{where}: undocumented {set(value) - set(props)}"
        for k, v in value.items():
            if k in props:
                check(spec, props[k], v, f"{where}.{k}")
    if t == "array":
        assert len(value) <= schema.get("maxItems", len(value)), where
        for i, v in enumerate(value):
            check(spec, schema["items"], v, f"{where}[{i}]")


def check_loose(spec, schema, value, where):
    """As check(), but members named by other allOf branches are allowed."""
    schema = resolve(spec, schema)
    props = schema.get("properties", {})
    if isinstance(value, dict):
        for r in schema.get("required", []):
            assert r in value, f"{where}: missing {r}"
        for k, v in value.items():
            if k in props:
                check(spec, props[k], v, f"{where}.{k}")
    else:
        check(spec, schema, value, where)


def operation_of(spec, method, path):
    """The described operation a concrete path belongs to."""
    for template, item in spec["paths"].items():
        rx = "^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(rx, path.split("?")[0]) and method.lower() in item:
            return template, item[method.lower()]
    raise AssertionError(f"{method} {path} is not described")


def queued_message(n):
    qid = sql_scalar(n, "INSERT INTO queue_messages (blob_id, size, sender, expires_at)"
                        " VALUES (repeat('cd', 32), 10, 'a@spec.test', now() + interval '1 day')"
                        " RETURNING id")
    sql(n, "INSERT INTO queue_recipients (message_id, address, domain, next_attempt_at)"
           " VALUES (:'p1', 'r@remote.test', 'remote.test', now() + interval '1 day')", qid)
    return qid


def test_every_operation_answers_as_described(spec, live):
    n, base = live
    qid = queued_message(n)
    steps = [
        ("POST", "/domains", {"name": "spec2.test"}, 201),
        ("GET", "/domains", None, 200),
        ("GET", "/domains/spec.test", None, 200),
        ("POST", "/domains/spec.test/aliases", {"alias": "alias.spec.test"}, 201),
        ("GET", "/domains/spec.test/aliases", None, 200),
        ("DELETE", "/domains/spec.test/aliases/alias.spec.test", None, 204),
        ("GET", "/domains/spec.test/catchall", None, 200),
        ("PUT", "/domains/spec.test/catchall", {"catchall": "a@spec.test"}, 200),
        ("DELETE", "/domains/spec.test/catchall", None, 204),
        ("GET", "/domains/spec.test/quota", None, 200),
        ("PUT", "/domains/spec.test/quota", {"bytes_limit": "1G", "account_bytes": None}, 200),
        ("GET", "/domains/spec.test/policies", None, 200),
        ("PUT", "/domains/spec.test/policies", {"pop3": "disabled"}, 200),
        ("POST", "/domains/spec.test/admins", {"address": "a@spec.test"}, 201),
        ("GET", "/domains/spec.test/admins", None, 200),
        ("DELETE", "/domains/spec.test/admins/a@spec.test", None, 204),
        ("POST", "/accounts", {"address": "c@spec.test", "full_name": "C"}, 201),
        ("GET", "/accounts", None, 200),
        ("GET", "/accounts?domain=spec.test", None, 200),
        ("GET", "/accounts/c@spec.test", None, 200),
        ("PATCH", "/accounts/c@spec.test", {"disabled": True}, 200),
        ("POST", "/accounts/c@spec.test/aliases", {"alias": "cc@spec.test"}, 201),
        ("GET", "/accounts/c@spec.test/aliases", None, 200),
        ("DELETE", "/aliases/cc@spec.test", None, 204),
        ("GET", "/accounts/c@spec.test/forward", None, 200),
        ("PUT", "/accounts/c@spec.test/forward", {"targets": ["x@else.test"]}, 200),
        ("DELETE", "/accounts/c@spec.test/forward", None, 204),
        ("GET", "/accounts/c@spec.test/autoreply", None, 200),
        ("PUT", "/accounts/c@spec.test/autoreply", {"body": "away", "from": 1893456000}, 200),
        ("GET", "/accounts/c@spec.test/autoreply", None, 200),
        ("DELETE", "/accounts/c@spec.test/autoreply", None, 204),
        ("GET", "/accounts/c@spec.test/quota", None, 200),
        ("PUT", "/accounts/c@spec.test/quota", {"bytes": "5M", "messages": None}, 200),
        ("GET", "/accounts/c@spec.test/policies", None, 200),
        ("PUT", "/accounts/c@spec.test/policies", {"imap": "enabled"}, 200),
        ("POST", "/groups", {"address": "g@spec.test"}, 201),
        ("GET", "/groups", None, 200),
        ("GET", "/groups/g@spec.test", None, 200),
        ("PUT", "/groups/g@spec.test", {"deliver_to": "folder"}, 200),
        ("POST", "/groups/g@spec.test/members", {"member": "a@spec.test"}, 201),
        ("POST", "/groups/g@spec.test/members", {"member": "spec2.test"}, 201),
        ("GET", "/groups/g@spec.test/members", None, 200),
        ("GET", "/groups/g@spec.test/members?expand=1", None, 200),
        ("DELETE", "/groups/g@spec.test/members/a@spec.test", None, 204),
        ("DELETE", "/groups/g@spec.test", None, 204),
        ("GET", "/server/quota", None, 200),
        ("PUT", "/server/quota", {"account_messages": 0}, 200),
        ("GET", "/server/login-policy", None, 200),
        ("PUT", "/server/login-policy", {"login_policy": "full_address"}, 200),
        ("GET", "/queue", None, 200),
        ("GET", f"/queue/{qid}", None, 200),
        ("POST", f"/queue/{qid}/retry", None, 200),
        ("POST", "/queue/retry", None, 200),
        ("DELETE", f"/queue/{qid}", None, 204),
        ("GET", "/cluster", None, 200),
        ("GET", "/services", None, 200),
        ("DELETE", "/accounts/c@spec.test", None, 204),
        ("DELETE", "/domains/spec2.test", None, 204),
        # errors are described as well
        ("GET", "/accounts/nobody@spec.test", None, 404),
        ("POST", "/domains", {"name": "spec.test"}, 409),
        ("POST", "/domains", {"name": 7}, 400),
        ("PUT", "/accounts/a@spec.test/forward", {"targets": ["y@else.test"]}, 412),
    ]
    covered = set()
    for method, path, body, status in steps:
        headers = {"If-Match": '"h0000000000000000"'} if status == 412 else {}
        r = call(base, method, path, json=body, headers=headers)
        assert r.status_code == status, (method, path, r.status_code, r.text)
        template, op = operation_of(spec, method, path)
        where = f"{method} {path}"
        assert str(status) in op["responses"], f"{where}: {status} is not described"
        resp = resolve(spec, op["responses"][str(status)])
        if status == 204:
            assert r.content == b"", where
        else:
            assert r.headers["Content-Type"].startswith("application/json"), where
            check(spec, resp["content"]["application/json"]["schema"], r.json(), where)
        for h in resp.get("headers", {}):
            assert h in r.headers, f"{where}: no {h} header"
        if status < 300:
            covered.add((method, template))
    missing = {(m, p) for p, m, _, _ in operations(spec)} - covered
    assert missing == set(), f"operations never called: {sorted(missing)}"
