"""The REST contract (DESIGN §4b): routes, auth and ACL, error bodies, limits, pagination, time travel."""

from __future__ import annotations

import logging

import pytest

from tests.server.harness import live_server


def _err(resp, status: int, type_: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and {"type", "message"} <= set(body["error"]), body
    if type_ is not None:
        assert body["error"]["type"] == type_, body
    return body["error"]


@pytest.fixture
def alice(keys):
    return keys("alice")


@pytest.fixture
def notes(client, alice):
    """A cube ``notes`` owned by alice."""
    assert client.post("/v1/cubes", json={"name": "notes"}, headers=alice).status_code == 201
    return "/v1/cubes/notes"


def _head(client, cube: str, headers) -> int:
    return client.get(cube, headers=headers).json()["head"]


# ------------------------------------------------------------------------------------------- auth
def test_missing_or_bad_key_is_401(client, alice, notes, mos):
    from memos.server.auth import create_key, revoke_key

    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"},
                    {"Authorization": "Bearer mk_0123456789abcdef_" + "A" * 43}):
        for method, path in (("GET", "/v1/cubes"), ("GET", "/v1/status"), ("GET", f"{notes}/memories"),
                             ("POST", "/v1/generate")):
            resp = client.request(method, path, headers=headers, json={})
            _err(resp, 401, "Unauthenticated")
            assert resp.headers["www-authenticate"] == "Bearer"
    key = create_key(mos, "alice")
    assert client.get("/v1/cubes", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert revoke_key(mos, key) is True
    _err(client.get("/v1/cubes", headers={"Authorization": f"Bearer {key}"}), 401, "Unauthenticated")


def test_keys_store_only_a_hash(mos):
    from memos.server.auth import NAMESPACE, create_key, key_id

    key = create_key(mos, "alice")
    record = mos._kernel.backend.get_record(NAMESPACE, key_id(key))
    assert record["principal"] == "alice" and key not in str(record) and key.split("_")[2] not in str(record)


def test_acl_on_every_route(client, keys, alice, notes):
    bob = keys("bob")
    m = client.post(f"{notes}/memories", json={"text": "the vault code is 4711"}, headers=alice).json()
    mem = f"{notes}/memories/{m['id']}"
    reads = [("GET", notes, None), ("GET", f"{notes}/memories", None), ("GET", mem, None),
             ("GET", f"{mem}/history", None), ("GET", f"{notes}/log", None),
             ("GET", f"{notes}/stats", None), ("POST", f"{notes}/search", {"query": "vault code"}),
             ("POST", "/v1/generate", {"cube": "notes", "prompt": "code?"})]
    writes = [("POST", f"{notes}/memories", {"text": "bob was here"}),
              ("POST", f"{notes}/memories/batch", {"items": ["x"]}),
              ("PATCH", mem, {"text": "changed"}), ("POST", f"{mem}/rollback", {"version": 1}),
              ("DELETE", mem, None), ("POST", f"{notes}/archive", {"ids": [m["id"]]}),
              ("POST", f"{notes}/activations", {"text": "doc"}),
              ("POST", f"{notes}/migrate", {"memory_id": m["id"], "to": "activation"})]
    admin = [("POST", f"{notes}/grants", {"principal": "bob", "access": "write"}), ("DELETE", notes, None)]
    for method, path, body in reads + writes + admin:
        _err(client.request(method, path, json=body, headers=bob), 403, "AccessDenied")
    assert client.get("/v1/cubes", headers=bob).json() == {"cubes": []}

    grant = client.post(f"{notes}/grants", json={"principal": "bob", "access": "read"}, headers=alice)
    assert grant.status_code == 200 and grant.json()["cube"]["acl"]["readers"] == ["bob"]
    assert client.get(mem, headers=bob).json()["text"] == "the vault code is 4711"
    hits = client.post(f"{notes}/search", json={"query": "vault code"}, headers=bob).json()["hits"]
    assert [h["id"] for h in hits] == [m["id"]]
    assert [c["name"] for c in client.get("/v1/cubes", headers=bob).json()["cubes"]] == ["notes"]
    for method, path, body in writes[:3] + admin:  # read access is not write access
        _err(client.request(method, path, json=body, headers=bob), 403, "AccessDenied")
    _err(client.post("/v1/cubes", json={"name": "bobs", "owner": "alice"}, headers=bob), 422, "InvalidInput")


def test_insecure_local_acts_as_admin_on_loopback_only(mos, keys):
    from fastapi.testclient import TestClient

    from memos.server import create_app

    mos.create_cube("private", owner="alice")
    with TestClient(create_app(mos, insecure_local=True), base_url="http://127.0.0.1:8765") as c:
        assert c.get("/v1/cubes/private").json()["owner"] == "alice"  # no key: the local administrator
        _err(c.get("/v1/cubes/private", headers=keys("bob")), 403, "AccessDenied")  # a key still counts
        _err(c.get("/v1/cubes", headers={"Host": "evil.example:8765"}), 400, "InvalidInput")  # DNS rebinding
        assert c.get("/v1/cubes", headers={"Host": "[::1]:8765"}).status_code == 200
        assert c.get("/v1/cubes", headers={"Host": "localhost"}).status_code == 200


def test_serve_refuses_insecure_non_loopback_host():
    from memos.errors import InvalidInput
    from memos.server.cli import check_bind

    for host in ("127.0.0.1", "::1", "[::1]", "localhost"):
        check_bind(host, insecure_local=True)
    check_bind("0.0.0.0", insecure_local=False)
    for host in ("0.0.0.0", "::", "192.168.1.4", "example.org"):
        with pytest.raises(InvalidInput):
            check_bind(host, insecure_local=True)


# --------------------------------------------------------------------------------- bad requests
def test_malformed_bodies_are_422_and_write_nothing(client, alice, notes):
    head = _head(client, notes, alice)
    json_headers = {**alice, "Content-Type": "application/json"}
    bad = [(f"{notes}/memories", b'{"text": "unterminated'), (f"{notes}/memories", b"[1, 2]"),
           (f"{notes}/memories", b'{"text": 5}'), (f"{notes}/memories", b'{"txt": "typo"}'),
           (f"{notes}/memories", b'{"text": "ok", "metadata": [1]}'), (f"{notes}/memories", b'{"text": ""}'),
           (f"{notes}/memories", b'{"text": "ok", "event_time": "not a time"}'),
           (f"{notes}/memories/batch", b'{"items": "one string"}'),
           (f"{notes}/memories/batch", b'{"items": [5]}'), (f"{notes}/search", b'{"query": "q", "top_k": 0}'),
           (f"{notes}/search", b'{"query": "q", "top_k": "3x"}'),
           (f"{notes}/search", b'{"query": "q", "filters": {"k": {"nested": 1}}}'),
           (f"{notes}/search", b'{"query": "q", "time_range": ["2023"]}'),
           (f"{notes}/grants", b'{"principal": "bob", "access": "own"}'),
           ("/v1/cubes", b'{"name": "Bad Name"}'), (f"{notes}/memories", b""),
           (f"{notes}/memories", b'{"text": "lone \\ud800 surrogate"}'),
           (f"{notes}/memories", b'{"text": "ok", "tags": ["\\udfff"]}'),
           (f"{notes}/memories", b'{"text": "ok", "metadata": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}"),
           (f"{notes}/memories", b'{"text": "ok", "metadata": {"a": ' + b"9" * 5000 + b"}}"),
           (f"{notes}/memories", b'{"text": "ok", "event_time": 1e300}'),
           (f"{notes}/memories/x/rollback", b'{"version": 99999999999999999999999}')]
    for path, raw in bad:
        err = _err(client.post(path, content=raw, headers=json_headers), 422)
        assert err["type"] in {"InvalidInput", "InvalidCubeName"} and err["message"], (path, raw)
    assert _head(client, notes, alice) == head
    assert client.get(f"{notes}/memories", headers=alice).json()["memories"] == []
    err = _err(client.post(f"{notes}/memories", content=b'{"text": 5}', headers=json_headers), 422)
    assert "text" in err["message"] and err["context"]["field"] == "text"
    _err(client.get(f"{notes}/memories?limit=0", headers=alice), 422, "InvalidInput")
    _err(client.get(f"{notes}/memories/x?version=zero", headers=alice), 422, "InvalidInput")
    _err(client.get(f"{notes}/log?after=99999999999999999999999", headers=alice), 422, "InvalidInput")


def test_oversize_body_is_413_before_anything_runs(mos, keys):
    import httpx
    from fastapi.testclient import TestClient

    from memos.server import create_app

    alice = keys("alice")
    app = create_app(mos, max_body_bytes=10_000)
    mos.create_cube("notes", owner="alice")
    big = {"text": "x" * 20_000}
    with TestClient(app) as c:
        _err(c.post("/v1/cubes/notes/memories", json=big, headers=alice), 413, "PayloadTooLarge")
        small = c.post("/v1/cubes/notes/memories", json={"text": "x" * 9_000}, headers=alice)
        assert small.status_code == 201
    with live_server(app) as url:  # a chunked body has no Content-Length: counted as it streams in

        def chunks():
            yield b'{"text": "'
            for _ in range(30):
                yield b"y" * 1000
            yield b'"}'

        resp = httpx.post(f"{url}/v1/cubes/notes/memories", content=chunks(),
                          headers={**alice, "Content-Type": "application/json"})
        _err(resp, 413, "PayloadTooLarge")
        resp = httpx.post(f"{url}/v1/cubes/notes/memories", json={"text": "after"}, headers=alice)
        assert resp.status_code == 201
    assert mos.cube("notes").head == 2


def test_unknown_routes_and_methods_have_error_bodies(client, alice, notes):
    _err(client.get("/v1/nope", headers=alice), 404, "NotFound")
    _err(client.put(f"{notes}/memories", headers=alice), 405, "MethodNotAllowed")
    _err(client.get("/v1/cubes/ghost", headers=alice), 404, "CubeNotFound")
    err = _err(client.get(f"{notes}/memories/ghost", headers=alice), 404, "MemoryNotFound")
    assert err["context"] == {"cube": "notes", "memory_id": "ghost"}


def test_unexpected_exception_is_a_logged_generic_500(client, alice, notes, monkeypatch, caplog):
    from memos.sdk import Cube

    def boom(self):
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(Cube, "stats", boom)
    with caplog.at_level(logging.ERROR, logger="memos.server"):
        err = _err(client.get(f"{notes}/stats", headers=alice), 500, "InternalError")
    assert "secret" not in err["message"] and err["ref"] in err["message"]
    assert any(err["ref"] in r.getMessage() and r.exc_info for r in caplog.records)


def test_unknown_engine_is_422_without_loading_a_model(client, alice, notes):
    _err(client.post("/v1/generate", json={"cube": "notes", "prompt": "hi", "engine": "nope"}, headers=alice),
         422, "InvalidInput")
    ghost = client.post("/v1/generate", json={"cube": "ghost", "prompt": "hi"}, headers=alice)
    _err(ghost, 404, "CubeNotFound")


# ----------------------------------------------------------------------------------- the routes
def test_every_route(client, alice, notes):
    def call(method, path, body=None):
        return client.request(method, path, json=body, headers=alice)

    cubes = call("GET", "/v1/cubes").json()["cubes"]
    assert [c["name"] for c in cubes] == ["notes"] and cubes[0]["owner"] == "alice"
    m = call("POST", f"{notes}/memories", {
        "text": "Alice moved to Lisbon in 2023", "metadata": {"session": 3}, "tags": ["move"],
        "event_time": "2023-05-01"})
    assert m.status_code == 201
    m = m.json()
    assert (m["version"], m["commit"], m["metadata"], m["state"]) == (1, 1, {"session": 3}, "activated")
    mem = f"{notes}/memories/{m['id']}"
    batch = call("POST", f"{notes}/memories/batch", {
        "items": ["Bob plays the trumpet", {"text": "Alice adopted a collie", "metadata": {"session": 4}}]})
    assert batch.status_code == 201 and {x["commit"] for x in batch.json()["memories"]} == {2}

    found = call("POST", f"{notes}/search", {"query": "where does alice live", "top_k": 1}).json()
    assert set(found) == {"hits", "took_ms"} and found["hits"][0]["id"] == m["id"]
    assert set(found["hits"][0]) == {"id", "score", "text", "metadata", "version", "kind", "event_time"}
    filtered = call("POST", f"{notes}/search",
                    {"query": "alice", "filters": {"session": [4]}, "include_memory": True}).json()["hits"]
    assert [h["text"] for h in filtered] == ["Alice adopted a collie"]
    assert filtered[0]["memory"]["commit"] == 2
    ranged = call("POST", f"{notes}/search", {"query": "alice", "time_range": ["2023-01-01", None]})
    assert [h["id"] for h in ranged.json()["hits"]] == [m["id"]]

    assert call("GET", mem).json()["text"] == m["text"]
    v2 = call("PATCH", mem, {"text": "Alice moved to Porto in 2025"})
    assert v2.json()["version"] == 2 and v2.json()["metadata"] == {"session": 3}  # untouched fields kept
    v3 = call("PATCH", mem, {"metadata": {"session": 5}}).json()
    assert (v3["version"], v3["text"], v3["metadata"]) == (3, "Alice moved to Porto in 2025", {"session": 5})
    assert call("GET", f"{mem}?version=1").json()["text"] == m["text"]
    r = call("POST", f"{mem}/rollback", {"version": 1}).json()
    assert (r["version"], r["text"]) == (4, m["text"])
    _err(call("POST", f"{mem}/rollback", {"version": 9}), 404, "VersionNotFound")
    hist = call("GET", f"{mem}/history").json()
    assert [v["version"] for v in hist["versions"]] == [1, 2, 3, 4] and hist["total"] == 4

    deleted = call("DELETE", mem).json()
    assert deleted["state"] == "archived" and deleted["purged"] is False
    live = call("POST", f"{notes}/search", {"query": "Lisbon"}).json()["hits"]
    assert all(h["id"] != m["id"] for h in live)
    archived = call("POST", f"{notes}/search", {"query": "Lisbon", "include_archived": True})
    assert m["id"] in [h["id"] for h in archived.json()["hits"]]
    bob_id = batch.json()["memories"][0]["id"]
    assert call("POST", f"{notes}/archive", {"ids": [bob_id]}).json()["memories"][0]["state"] == "archived"
    purged = call("DELETE", f"{notes}/memories/{bob_id}?purge=true").json()
    assert purged["purged"] is True
    _err(call("GET", f"{notes}/memories/{bob_id}"), 404, "MemoryNotFound")
    assert call("POST", f"{notes}/sweep-expired").json() == {"memories": []}

    log = call("GET", f"{notes}/log").json()["entries"]
    assert [e["commit"] for e in log] == list(range(1, _head(client, notes, alice) + 1))
    page = call("GET", f"{notes}/log?after=2&limit=2").json()["entries"]
    assert [e["commit"] for e in page] == [3, 4]
    assert call("GET", f"{notes}/stats").status_code == 200
    status = call("GET", "/v1/status").json()
    assert status["principal"] == "alice" and status["cubes"] == 1
    assert call("DELETE", notes).json() == {"deleted": True, "cube": "notes"}
    _err(call("GET", notes), 404, "CubeNotFound")


def test_create_cube_conflict_and_policy(client, alice):
    body = {"name": "tasks", "description": "todo", "policy": {"capacity": 10}}
    made = client.post("/v1/cubes", json=body, headers=alice).json()
    assert (made["owner"], made["description"], made["policy"]["capacity"]) == ("alice", "todo", 10)
    _err(client.post("/v1/cubes", json=body, headers=alice), 409, "CubeExists")
    bad_policy = client.post("/v1/cubes", json={"name": "x", "policy": {"nope": 1}}, headers=alice)
    _err(bad_policy, 422, "InvalidInput")


def test_pagination(client, alice, notes):
    batch = {"items": [f"fact number {i}" for i in range(25)]}
    made = client.post(f"{notes}/memories/batch", headers=alice, json=batch).json()["memories"]
    ids = [m["id"] for m in made]
    seen, offset = [], 0
    while offset is not None:
        page = client.get(f"{notes}/memories?offset={offset}&limit=10", headers=alice).json()
        assert len(page["memories"]) <= 10 and page["offset"] == offset
        seen += [m["id"] for m in page["memories"]]
        offset = page["next_offset"]
    assert sorted(seen) == sorted(ids) and len(seen) == 25
    for i in range(6):
        client.patch(f"{notes}/memories/{ids[0]}", headers=alice, json={"text": f"fact number 0, take {i}"})
    pages = [client.get(f"{notes}/memories/{ids[0]}/history?offset={o}&limit=3", headers=alice).json()
             for o in (0, 3, 6)]
    assert [[v["version"] for v in p["versions"]] for p in pages] == [[1, 2, 3], [4, 5, 6], [7]]
    assert [p["next_offset"] for p in pages] == [3, 6, None] and {p["total"] for p in pages} == {7}


def test_time_travel(client, alice, notes):
    m = client.post(f"{notes}/memories", headers=alice, json={"text": "The meeting is on Monday"}).json()
    client.patch(f"{notes}/memories/{m['id']}", headers=alice, json={"text": "The meeting moved to Friday"})
    client.post(f"{notes}/memories", headers=alice, json={"text": "Lunch is at noon"})
    mem = f"{notes}/memories/{m['id']}"
    assert client.get(f"{mem}?at=1", headers=alice).json()["text"] == "The meeting is on Monday"
    assert client.get(mem, headers=alice).json()["text"] == "The meeting moved to Friday"
    assert [v["version"] for v in client.get(f"{mem}/history?at=1", headers=alice).json()["versions"]] == [1]
    assert len(client.get(f"{notes}/memories?at=2", headers=alice).json()["memories"]) == 1
    assert len(client.get(f"{notes}/memories", headers=alice).json()["memories"]) == 2
    old = client.post(f"{notes}/search?at=1", headers=alice, json={"query": "when is the meeting"})
    old = old.json()["hits"]
    assert [h["text"] for h in old] == ["The meeting is on Monday"]
    assert [e["commit"] for e in client.get(f"{notes}/log?at=2", headers=alice).json()["entries"]] == [1, 2]
    _err(client.get(f"{mem}?at=99", headers=alice), 422, "InvalidInput")
    _err(client.get(f"{mem}?at=-1", headers=alice), 422, "InvalidInput")


def test_idempotency_key_applies_a_retried_write_once(client, alice, notes):
    headers = {**alice, "Idempotency-Key": "retry-1"}
    first = client.post(f"{notes}/memories", headers=headers, json={"text": "written once"}).json()
    again = client.post(f"{notes}/memories", headers=headers, json={"text": "written once"}).json()
    assert again["id"] == first["id"] and _head(client, notes, alice) == 1
    too_long = {**alice, "Idempotency-Key": "k" * 200}
    _err(client.post(f"{notes}/memories", headers=too_long, json={"text": "x"}), 422, "InvalidInput")


def test_openapi_lists_every_route(client):
    spec = client.get("/openapi.json").json()
    routes = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    assert {("POST", "/v1/cubes"), ("GET", "/v1/cubes"), ("POST", "/v1/cubes/{cube}/memories"),
            ("POST", "/v1/cubes/{cube}/search"), ("GET", "/v1/cubes/{cube}/memories/{memory_id}"),
            ("PATCH", "/v1/cubes/{cube}/memories/{memory_id}"),
            ("DELETE", "/v1/cubes/{cube}/memories/{memory_id}"),
            ("GET", "/v1/cubes/{cube}/memories/{memory_id}/history"), ("POST", "/v1/cubes/{cube}/grants"),
            ("POST", "/v1/generate"), ("POST", "/v1/cubes/{cube}/memories/{memory_id}/rollback"),
            ("GET", "/v1/status"), ("GET", "/v1/cubes/{cube}/log")} <= routes
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_telemetry_span_and_metrics(mos, keys):
    from fastapi.testclient import TestClient
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from memos.server import create_app

    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    app = create_app(mos, mcp=False, tracer_provider=tracer_provider,
                     meter_provider=MeterProvider(metric_readers=[reader]))
    alice = keys("alice")
    with TestClient(app) as c:
        c.post("/v1/cubes", json={"name": "notes"}, headers=alice)
        c.get("/v1/cubes/notes/memories/abc", headers=alice)
        c.get("/v1/cubes/notes/memories/def", headers=alice)
    by_name = {s.name: s for s in spans.get_finished_spans()}
    span = by_name["GET /v1/cubes/{cube}/memories/{memory_id}"]
    assert span.kind == SpanKind.SERVER and span.attributes["http.response.status_code"] == 404
    assert by_name["POST /v1/cubes"].attributes["http.response.status_code"] == 201
    points = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    labels = p.attributes
                    points[(metric.name, labels["http.route"], labels["http.response.status_code"])] = p
    route = "/v1/cubes/{cube}/memories/{memory_id}"
    assert points[("memos.http.server.requests", route, 404)].value == 2  # one series for both ids
    assert points[("http.server.request.duration", route, 404)].count == 2


@pytest.mark.slow
def test_model_routes_with_the_local_engine(mos_llm):
    """generate, activations and migrate through REST, on the real local model (SmolLM2)."""
    from fastapi.testclient import TestClient

    from memos.server import create_app
    from memos.server.auth import create_key

    alice = {"Authorization": f"Bearer {create_key(mos_llm, 'alice')}"}
    with TestClient(create_app(mos_llm, mcp=False)) as c:
        c.post("/v1/cubes", json={"name": "zorb"}, headers=alice)
        fact = c.post("/v1/cubes/zorb/memories", headers=alice,
                      json={"text": "Zorblax has a pet axolotl named Pim."}).json()
        kv = c.post("/v1/cubes/zorb/activations", headers=alice,
                    json={"text": "Zorblax is a purple alien who lives on a moon of Neptune."})
        assert kv.status_code == 201 and kv.json()["kind"] == "activation"
        body = {"cube": "zorb", "prompt": "What pet does Zorblax have?", "kv": [kv.json()["id"]],
                "max_tokens": 12}
        gen = c.post("/v1/generate", headers=alice, json=body)
        assert gen.status_code == 200, gen.text
        out = gen.json()
        assert out["text"] and out["ttft_ms"] > 0 and out["used"]["kv"][0]["id"] == kv.json()["id"]
        assert fact["id"] in [r["id"] for r in out["used"]["retrieved"]]
        moved = c.post("/v1/cubes/zorb/migrate", headers=alice,
                       json={"memory_id": fact["id"], "to": "activation"})
        assert moved.status_code == 200 and moved.json()["kind"] == "activation"
