"""The API's guards (`search/serve/guards.py`): body limit, concurrency, timeout, API keys and scopes, request ids,
the access log, CORS, path checks and the bind rule.

Every request goes to the real app, `create_app`, which installs the guards itself, over a small index on the fake
embedder; a slow model call is a `GatedEmbedder` held at its gate, so no test waits on a clock to be slow enough."""

from __future__ import annotations

import hmac
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

import search.serve.guards
from search.errors import BadInput
from search.records import SearchQuery
from search.serve.app import create_app
from search.serve.guards import ADMIN, READ, ApiKeys, check_bind, required_scope
from search.service import SearchService
from tests.fakes import FakeEmbedder, GatedEmbedder
from tests.helpers import ROOT, error_of, free_port, small_service

READ_KEY = "read-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
KEYS = f"{READ_KEY},{ADMIN_KEY}:admin"


def app_with(tmp_path: Path, embedder: FakeEmbedder | None = None, **settings: object) -> FastAPI:
    """The real app (`create_app`, which installs the guards itself) over a small fake-embedded index, with these
    settings: the guards read their limits, keys and origins from the service's settings."""
    return create_app(service=small_service(tmp_path, embedder, **settings))


def body_of(size: int) -> bytes:
    """A valid search request of exactly `size` bytes (JSON padded with spaces)."""
    body = json.dumps({"query": "cats", "k": 1}).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


def test_a_body_over_the_limit_is_refused_with_413_in_the_error_shape(tmp_path: Path) -> None:
    with TestClient(app_with(tmp_path, max_body_bytes=100)) as client:
        r = client.post("/search", content=body_of(100), headers={"content-type": "application/json"})
        assert r.status_code == 200 and r.json()["hits"]
        r = client.post("/search", content=body_of(101), headers={"content-type": "application/json"})
        assert r.status_code == 413 and error_of(r) == "too_large" and "100 bytes" in r.json()["error"]["message"]


def test_a_chunked_body_is_measured_as_it_comes_and_replayed_when_small(tmp_path: Path) -> None:
    def chunks(body: bytes) -> Iterator[bytes]:
        for i in range(0, len(body), 10):
            yield body[i : i + 10]

    with TestClient(app_with(tmp_path, max_body_bytes=100)) as client:
        r = client.post("/search", content=chunks(body_of(100)), headers={"content-type": "application/json"})
        assert r.status_code == 200 and r.json()["hits"]
        r = client.post("/search", content=chunks(body_of(101)), headers={"content-type": "application/json"})
        assert r.status_code == 413 and error_of(r) == "too_large"


def test_when_every_slot_is_taken_the_next_request_gets_503_with_retry_after(tmp_path: Path) -> None:
    embedder = GatedEmbedder()
    app = app_with(tmp_path, embedder, max_concurrency=1)
    with TestClient(app) as client, ThreadPoolExecutor(1) as pool:
        embedder.gate.clear()
        try:
            held = pool.submit(client.get, "/search", params={"q": "a search held in the model call"})
            assert embedder.waiting.wait(30), "the held search never reached the model"
            assert app.state.guard.in_flight == 1
            r = client.get("/search", params={"q": "cats"})
            assert r.status_code == 503 and r.headers["retry-after"] == "1" and error_of(r) == "busy"
            assert client.get("/health").status_code == 200  # monitoring still answers
            assert client.get("/metrics").status_code == 200
        finally:
            embedder.gate.set()
        assert held.result(timeout=30).status_code == 200
        assert client.get("/search", params={"q": "cats"}).status_code == 200 and app.state.guard.in_flight == 0


@contextmanager
def live(app: FastAPI) -> Iterator[str]:
    """The app on a real uvicorn, in a thread: only a real server shows when the client gets its bytes (a test
    client hands over the response when the whole app call has returned)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_a_read_with_no_answer_in_time_gets_504_while_a_write_runs_to_its_end(tmp_path: Path) -> None:
    embedder = GatedEmbedder()
    app = app_with(tmp_path, embedder, request_timeout=0.5, max_concurrency=4, writes=True)
    with live(app) as url, ThreadPoolExecutor(1) as pool:
        embedder.gate.clear()  # every model call now waits, as a slow model would
        try:
            write = pool.submit(httpx.put, f"{url}/articles/birds", json={"text": "Birds sing at dawn."}, timeout=60)
            assert embedder.waiting.wait(30), "the write never reached the model"
            # The search started after the write and times out while both wait: the write runs past the timeout.
            r = httpx.get(f"{url}/search", params={"q": "cats"}, timeout=20)
            assert r.status_code == 504 and error_of(r) == "timeout" and "0.5 s" in r.json()["error"]["message"]
            assert app.state.guard.in_flight == 2  # the abandoned search's thread still holds its slot, as the write
            assert not write.done()
        finally:
            embedder.gate.set()
        w = write.result(timeout=60)
        assert w.status_code == 200 and w.json()["articles"] == 3  # no 504 for a write, however long it takes
        deadline = time.monotonic() + 30
        while app.state.guard.in_flight and time.monotonic() < deadline:
            time.sleep(0.02)
        assert app.state.guard.in_flight == 0  # the search's thread finished in the background; its answer dropped
        hits = httpx.get(f"{url}/search", params={"q": "birds sing", "k": 1}, timeout=30).json()["hits"]
        assert hits[0]["article_id"] == "birds"


def test_without_keys_everything_is_open(tmp_path: Path) -> None:
    with TestClient(app_with(tmp_path, writes=True)) as client:
        assert client.get("/search", params={"q": "cats"}).status_code == 200
        assert client.put("/articles/a", json={"text": "Birds sing at dawn."}).status_code == 200
        assert client.post("/admin/reload").status_code == 200
        assert client.get("/metrics").status_code == 200


def test_keys_missing_wrong_read_and_admin(tmp_path: Path) -> None:
    with TestClient(app_with(tmp_path, api_keys=KEYS, writes=True)) as client:
        r = client.get("/search", params={"q": "cats"})
        assert r.status_code == 401 and error_of(r) == "unauthorized" and r.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in r.json()["error"]["message"]
        for bad in (f"Bearer {READ_KEY}x", f"Basic {READ_KEY}", READ_KEY, "Bearer "):
            assert client.get("/search", params={"q": "cats"}, headers={"Authorization": bad}).status_code == 401, bad
        read, admin = {"Authorization": f"Bearer {READ_KEY}"}, {"Authorization": f"bearer {ADMIN_KEY}"}
        assert client.get("/search", params={"q": "cats"}, headers=read).status_code == 200
        assert client.post("/search", headers=read, json={"query": "cats"}).status_code == 200
        article = {"text": "Birds sing at dawn."}
        for method, path in (("PUT", "/articles/a"), ("DELETE", "/articles/a"), ("POST", "/admin/reload")):
            body = article if method == "PUT" else None
            r = client.request(method, path, headers=read, json=body)
            assert r.status_code == 403 and error_of(r) == "forbidden", (method, path)
            assert "needs an admin key" in r.json()["error"]["message"]
            assert client.request(method, path, headers=admin, json=body).status_code == 200, (method, path)
        assert client.get("/search", params={"q": "cats"}, headers=admin).status_code == 200
        assert client.get("/health").status_code == 200
        assert client.get("/metrics").status_code == 401 and client.get("/metrics", headers=read).status_code == 200


def test_every_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(search.serve.guards.hmac, "compare_digest", spy)
    keys = ApiKeys.load(f"{READ_KEY},{ADMIN_KEY}:admin,third-key-0123456789abcdef")
    assert keys.scope_of(READ_KEY) == READ
    assert len(calls) == 3  # no early exit on the first match
    assert {len(a) for a, _ in calls} == {len(b) for _, b in calls} == {32}  # digests: the key's length is hidden
    assert keys.scope_of(ADMIN_KEY) == ADMIN and keys.scope_of("nope") is None and len(calls) == 9


def test_keys_from_a_file_with_comments_and_bad_keys_rejected(tmp_path: Path) -> None:
    file = tmp_path / "keys"
    file.write_text(f"# operators\n{ADMIN_KEY}:admin\n\n{READ_KEY}:read\n", encoding="utf-8")
    file.chmod(0o600)
    keys = ApiKeys.load("", file)
    assert keys.scope_of(ADMIN_KEY) == ADMIN and keys.scope_of(READ_KEY) == READ
    with pytest.raises(BadInput, match="API key #1: 5 characters; use at least 16"):
        ApiKeys.load("short")
    with pytest.raises(BadInput, match="unknown scope 'owner'"):
        ApiKeys.load(f"{READ_KEY}:owner")
    with pytest.raises(BadInput, match="cannot read the API key file"):
        ApiKeys.load("", tmp_path / "missing")
    with pytest.raises(BadInput) as info:
        ApiKeys.load("a-secret12")
    assert "a-secret12" not in str(info.value)  # errors never echo a key


def test_scopes_of_routes() -> None:
    assert required_scope("GET", "/health") is None and required_scope("OPTIONS", "/search") is None
    for method, path in [("GET", "/search"), ("POST", "/search"), ("POST", "/search/batch"), ("POST", "/mcp/"),
                         ("GET", "/reports/x"), ("GET", "/metrics"), ("GET", "/openapi.json")]:  # fmt: skip
        assert required_scope(method, path) == READ, (method, path)
    for method, path in [("PUT", "/articles/a"), ("DELETE", "/articles/a"), ("POST", "/admin/reload"),
                         ("GET", "/admin"), ("POST", "/reports"), ("PATCH", "/x"), ("POST", "/searches")]:  # fmt: skip
        assert required_scope(method, path) == ADMIN, (method, path)


def test_request_id_is_echoed_when_sane_and_generated_otherwise(fake_service: SearchService) -> None:
    with TestClient(create_app(service=fake_service)) as client:
        r = client.get("/search", params={"q": "cats"}, headers={"X-Request-ID": "abc-123.4"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "abc-123.4"
        assert client.get("/passages/nope", headers={"X-Request-ID": "e-1"}).headers["x-request-id"] == "e-1"
        for given in ("", "x" * 129, "has space", "ünï".encode()):
            rid = client.get("/search", params={"q": "cats"}, headers={"X-Request-ID": given}).headers["x-request-id"]
            assert rid != given and len(rid) == 32 and int(rid, 16) >= 0, given


def test_every_answer_names_the_replica_local_on_uvicorn(fake_service: SearchService) -> None:
    with TestClient(create_app(service=fake_service)) as client:
        assert client.get("/search", params={"q": "cats"}).headers["x-search-replica"] == "local"
        assert client.get("/passages/nope").headers["x-search-replica"] == "local"  # errors too
        assert 'search_replica_info{replica="local"} 1.0' in client.get("/metrics").text
    with TestClient(create_app(service=fake_service, replica="r-7")) as client:
        assert client.get("/health").headers["x-search-replica"] == "r-7"


def test_one_json_access_line_per_request_and_never_a_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="search.access")
    app = app_with(tmp_path, api_keys=KEYS)
    with TestClient(app) as client:
        pid = app.state.service.search(SearchQuery("cats", k=1)).hits[0].passage.passage_id
        read = {"Authorization": f"Bearer {READ_KEY}", "X-Request-ID": "r1"}
        assert client.get(f"/passages/{pid}?secret_query=1", headers=read).status_code == 200
        client.get("/search", params={"q": "cats"}, headers={"Authorization": f"Bearer {ADMIN_KEY}x"})
    lines = [r.getMessage() for r in caplog.records if r.name == "search.access"]
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["request_id"] == "r1" and first["route"] == "/passages/{passage_id}"
    assert first["path"] == f"/passages/{pid}"
    assert (first["method"], first["status"], first["key_scope"]) == ("GET", 200, "read") and first["latency_ms"] >= 0
    assert (second["status"], second["key_scope"]) == (401, "-")
    for text in lines + [r.getMessage() for r in caplog.records]:
        assert READ_KEY not in text and ADMIN_KEY not in text and "Bearer" not in text and "secret_query" not in text


def test_paths_with_dot_dot_or_nul_are_refused(fake_service: SearchService) -> None:
    with TestClient(create_app(service=fake_service)) as client:
        for path in ("/passages/..%2F..%2Fetc%2Fpasswd", "/articles/a/%2E%2E/%2e%2e/x", "/passages/a%00b"):
            r = client.put(path) if path.startswith("/articles") else client.get(path)
            assert r.status_code == 400 and error_of(r) == "bad_path", path


def test_cors_is_off_unless_origins_are_configured(tmp_path: Path, fake_service: SearchService) -> None:
    preflight = {"Origin": "http://app.example", "Access-Control-Request-Method": "POST"}
    with TestClient(create_app(service=fake_service)) as client:
        assert "access-control-allow-origin" not in client.options("/search", headers=preflight).headers
        r = client.get("/search", params={"q": "cats"}, headers={"Origin": "http://app.example"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    app = app_with(tmp_path, cors_origins=["http://app.example"], api_keys=KEYS)
    with TestClient(app) as client:
        r = client.options("/search", headers={**preflight, "Access-Control-Request-Headers": "authorization"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://app.example"
        r = client.get("/search", params={"q": "cats"}, headers={"Origin": "http://app.example"})
        assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "http://app.example"
        read = {"Origin": "http://app.example", "Authorization": f"Bearer {READ_KEY}", "X-Request-ID": "c1"}
        r = client.get("/search", params={"q": "cats"}, headers=read)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://app.example"
        assert {"x-request-id", "retry-after"} <= set(r.headers["access-control-expose-headers"].split(", "))
        read["Origin"] = "http://evil.example"
        r = client.get("/search", params={"q": "cats"}, headers=read)
        assert "access-control-allow-origin" not in r.headers


def test_check_bind() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]", "::ffff:127.0.0.1"):
        assert check_bind(host, allow_public=False, has_keys=False) == [], host
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.com"):
        with pytest.raises(BadInput, match="--allow-public"):
            check_bind(host, allow_public=False, has_keys=True)
        assert check_bind(host, allow_public=True, has_keys=True) == []
        [warning] = check_bind(host, allow_public=True, has_keys=False)
        assert "without API keys" in warning and "SEARCH_API_KEYS" in warning


def test_serve_refuses_a_public_address_in_one_line_before_loading_anything(tmp_path: Path) -> None:
    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "search", "serve", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)

    assert "--allow-public" in serve("--help").stdout
    r = serve("--host", "0.0.0.0", "--index", str(tmp_path / "none"))
    assert r.returncode == 2 and "--allow-public" in r.stderr and "Traceback" not in r.stderr
    assert (
        r.stderr.strip().startswith("error: refusing to serve on 0.0.0.0") and len(r.stderr.strip().splitlines()) == 1
    )


def test_no_path_traversal_through_the_real_routes(fake_service: SearchService) -> None:
    probes = ["/passages/..%2F..%2F..%2Fetc%2Fpasswd", "/articles/..%2F..%2Fetc%2Fpasswd/similar",
              "/reports/..%2F..%2Fetc/files/passwd", "/reports/x/files/..%2F..%2Fmanifest.json",
              "/passages/%2Fetc%2Fpasswd", "/reports/x/files/%2Fetc%2Fpasswd"]  # fmt: skip
    with TestClient(create_app(service=fake_service)) as client:
        for path in probes:
            r = client.get(path)
            assert r.status_code in (400, 404, 405), (path, r.status_code)
            assert "root:" not in r.text and error_of(r)
