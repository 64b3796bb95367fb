"""The API under abuse: limits, API keys, request ids, access logs, metrics, the bind rule, fuzzing and load."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

import search.serve.guards
from search.config import Settings
from search.errors import BadInput
from search.ingest.language import LanguageDetector
from search.serve.app import create_app
from search.serve.guards import ADMIN, READ, ApiKeys, GuardConfig, check_bind, install_guards, required_scope
from search.serve.schemas import BatchRequest, SearchRequest
from search.service import SearchService
from tests.fakes import FakeEmbedder
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
READ_KEY = "read-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
KEYS = f"{READ_KEY},{ADMIN_KEY}:admin"


def small_app(**config: Any) -> FastAPI:
    """A few routes shaped like ours, some slow, behind the guards."""
    app = FastAPI()

    @app.get("/search")
    def search_get(q: str = "") -> dict[str, str]:
        return {"q": q}

    @app.post("/search")
    async def search_post(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @app.get("/passages/{passage_id}")
    def passage(passage_id: str) -> dict[str, str]:
        return {"passage_id": passage_id}

    @app.put("/articles/{article_id:path}")
    def put_article(article_id: str, seconds: float = 0.0) -> dict[str, str]:
        time.sleep(seconds)
        return {"article_id": article_id}

    @app.post("/admin/reload")
    def reload() -> dict[str, bool]:
        return {"reloaded": True}

    @app.get("/slow")
    async def slow(seconds: float = 1.0) -> dict[str, str]:
        await asyncio.sleep(seconds)
        return {"slept": "async"}

    @app.get("/slow-sync")
    def slow_sync(seconds: float = 1.0) -> dict[str, str]:
        time.sleep(seconds)
        return {"slept": "thread"}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    install_guards(app, GuardConfig(**config))
    return app


def error_of(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return str(body["error"]["code"])


def test_a_body_over_the_limit_is_refused_with_413_in_the_error_shape() -> None:
    with TestClient(small_app(max_body_bytes=100)) as client:
        assert client.post("/search", content=b"x" * 100).json() == {"bytes": 100}
        r = client.post("/search", content=b"x" * 101)
        assert r.status_code == 413 and error_of(r) == "too_large" and "100 bytes" in r.json()["error"]["message"]


def test_a_chunked_body_is_measured_as_it_comes_and_replayed_when_small() -> None:
    def chunks(n: int) -> Iterator[bytes]:
        for _ in range(n):
            yield b"0123456789"

    with TestClient(small_app(max_body_bytes=100)) as client:
        assert client.post("/search", content=chunks(10)).json() == {"bytes": 100}
        r = client.post("/search", content=chunks(11))
        assert r.status_code == 413 and error_of(r) == "too_large"


def test_when_every_slot_is_taken_the_next_request_gets_503_with_retry_after() -> None:
    app = small_app(max_concurrency=1)
    with TestClient(app) as client:
        slow = threading.Thread(target=client.get, args=("/slow",), kwargs={"params": {"seconds": 1.5}})
        slow.start()
        deadline = time.monotonic() + 5
        while app.state.guard.in_flight < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        r = client.get("/search", params={"q": "x"})
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and error_of(r) == "busy"
        assert client.get("/health").status_code == 200  # monitoring still answers
        slow.join()
        assert client.get("/search").status_code == 200 and app.state.guard.in_flight == 0


@pytest.fixture
def live_server() -> Iterator[tuple[str, FastAPI]]:
    """The small app on a real uvicorn, in a thread: only a real server shows when the client gets its bytes."""
    app = small_app(request_timeout=0.5, max_concurrency=4)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{server.config.port}", app
    server.should_exit = True
    thread.join(timeout=10)


def test_timeout_answers_504_on_time_and_the_thread_finishes_in_the_background(live_server) -> None:  # type: ignore[no-untyped-def]
    url, app = live_server
    # The work takes 8 s against a 0.5 s timeout: the 504 comes while it still runs, however loaded the machine.
    r = httpx.get(f"{url}/slow-sync", params={"seconds": 8}, timeout=30)
    assert r.status_code == 504 and error_of(r) == "timeout"
    assert app.state.guard.in_flight == 1  # the work still runs and still holds its slot
    deadline = time.monotonic() + 30
    while app.state.guard.in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app.state.guard.in_flight == 0
    r = httpx.get(f"{url}/slow", params={"seconds": 5}, timeout=10)  # async work is cancelled outright
    assert r.status_code == 504 and app.state.guard.in_flight == 0
    assert httpx.get(f"{url}/slow-sync", params={"seconds": 0.1}, timeout=10).json() == {"slept": "thread"}
    assert httpx.put(f"{url}/articles/a", params={"seconds": 1.0}, timeout=10).status_code == 200  # writes finish


def test_without_keys_everything_is_open() -> None:
    with TestClient(small_app()) as client:
        assert client.get("/search").status_code == 200
        assert client.put("/articles/a").status_code == 200
        assert client.post("/admin/reload").status_code == 200
        assert client.get("/metrics").status_code == 200


def test_keys_missing_wrong_read_and_admin() -> None:
    with TestClient(small_app(api_keys=SecretStr(KEYS))) as client:
        r = client.get("/search")
        assert r.status_code == 401 and error_of(r) == "unauthorized" and r.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in r.json()["error"]["message"]
        for bad in (f"Bearer {READ_KEY}x", f"Basic {READ_KEY}", READ_KEY, "Bearer "):
            assert client.get("/search", headers={"Authorization": bad}).status_code == 401, bad
        read, admin = {"Authorization": f"Bearer {READ_KEY}"}, {"Authorization": f"bearer {ADMIN_KEY}"}
        assert client.get("/search", headers=read).status_code == 200
        assert client.post("/search", headers=read, content=b"{}").status_code == 200
        for method, path in (("PUT", "/articles/a"), ("POST", "/admin/reload")):
            r = client.request(method, path, headers=read)
            assert r.status_code == 403 and error_of(r) == "forbidden", (method, path)
            assert client.request(method, path, headers=admin).status_code == 200
        assert client.get("/search", headers=admin).status_code == 200
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


def test_request_id_is_echoed_when_sane_and_generated_otherwise() -> None:
    with TestClient(small_app()) as client:
        assert client.get("/search", headers={"X-Request-ID": "abc-123.4"}).headers["x-request-id"] == "abc-123.4"
        for given in ("", "x" * 129, "has space", "ünï".encode()):
            rid = client.get("/search", headers={"X-Request-ID": given}).headers["x-request-id"]
            assert rid != given and len(rid) == 32 and int(rid, 16) >= 0, given


def test_one_json_access_line_per_request_and_never_a_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="search.access")
    with TestClient(small_app(api_keys=SecretStr(KEYS))) as client:
        client.get("/passages/p1?secret_query=1", headers={"Authorization": f"Bearer {READ_KEY}", "X-Request-ID": "r1"})
        client.get("/search", headers={"Authorization": f"Bearer {ADMIN_KEY}x"})
    lines = [r.getMessage() for r in caplog.records if r.name == "search.access"]
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert (
        first["request_id"] == "r1" and first["route"] == "/passages/{passage_id}" and first["path"] == "/passages/p1"
    )
    assert (first["method"], first["status"], first["key_scope"]) == ("GET", 200, "read") and first["latency_ms"] >= 0
    assert (second["status"], second["key_scope"]) == (401, "-")
    for text in lines + [r.getMessage() for r in caplog.records]:
        assert READ_KEY not in text and ADMIN_KEY not in text and "Bearer" not in text and "secret_query" not in text


def test_metrics_count_requests_per_route_template_and_status() -> None:
    with TestClient(small_app()) as client:
        for pid in ("a", "b", "c"):
            client.get(f"/passages/{pid}")
        client.get("/nowhere/at/all")
        client.request("BREW", "/search")
        text = client.get("/metrics").text
    assert 'search_http_requests_total{method="GET",route="/passages/{passage_id}",status="200"} 3.0' in text
    assert 'search_http_requests_total{method="GET",route="<unmatched>",status="404"} 1.0' in text
    assert 'search_http_requests_total{method="OTHER",route="/search",status="405"} 1.0' in text
    assert 'search_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/passages/{passage_id}"}' in text
    assert "search_http_requests_in_flight" in text


def test_paths_with_dot_dot_or_nul_are_refused() -> None:
    with TestClient(small_app()) as client:
        for path in ("/passages/..%2F..%2Fetc%2Fpasswd", "/articles/a/%2E%2E/%2e%2e/x", "/passages/a%00b"):
            r = client.put(path) if path.startswith("/articles") else client.get(path)
            assert r.status_code == 400 and error_of(r) == "bad_path", path


def test_cors_is_off_unless_origins_are_configured() -> None:
    preflight = {"Origin": "http://app.example", "Access-Control-Request-Method": "POST"}
    with TestClient(small_app()) as client:
        assert "access-control-allow-origin" not in client.options("/search", headers=preflight).headers
    with TestClient(small_app(cors_origins=["http://app.example"], api_keys=SecretStr(KEYS))) as client:
        r = client.options("/search", headers={**preflight, "Access-Control-Request-Headers": "authorization"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://app.example"
        r = client.get("/search", headers={"Origin": "http://app.example"})
        assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "http://app.example"
        r = client.get("/search", headers={"Origin": "http://evil.example", "Authorization": f"Bearer {READ_KEY}"})
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

    if "--allow-public" not in serve("--help").stdout:
        pytest.skip("cli.py does not have the --allow-public wiring yet")
    r = serve("--host", "0.0.0.0", "--index", str(tmp_path / "none"))
    assert r.returncode == 2 and "--allow-public" in r.stderr and "Traceback" not in r.stderr
    assert (
        r.stderr.strip().startswith("error: refusing to serve on 0.0.0.0") and len(r.stderr.strip().splitlines()) == 1
    )


@pytest.fixture(scope="module")
def fake_service(tmp_path_factory: pytest.TempPathFactory) -> SearchService:
    tmp = tmp_path_factory.mktemp("guarded")
    corpus = tmp / "corpus"
    corpus.mkdir()
    (corpus / "en.txt").write_text("Cats sleep in the sun.\n\nDogs bark at strangers.\n", encoding="utf-8")
    (corpus / "ru.txt").write_text("Кошки спят на солнце.\n\nСобаки лают.\n", encoding="utf-8")
    settings = Settings(model="fake-model", index_dir=tmp / "index", cache_dir=tmp / "cache", watch_seconds=0)
    svc = SearchService(settings, embedder=FakeEmbedder(), detector=LanguageDetector(["en", "ru"], preload=False))
    svc.build([corpus])
    svc.load()
    return svc


def guarded(svc: SearchService) -> FastAPI:
    """`create_app` with its guards: its own once api.py installs them, else installed here."""
    app = create_app(service=svc)
    if not hasattr(app.state, "guard"):
        install_guards(app, GuardConfig())
    return app


def test_the_real_app_exposes_index_gauges_and_request_counts(fake_service: SearchService) -> None:
    with TestClient(guarded(fake_service)) as client:
        assert client.get("/search", params={"q": "cats", "k": 2}).status_code == 200
        assert client.post("/search", json={"query": "собаки", "k": 1}).status_code == 200
        assert client.get("/search", params={"q": "cats", "k": 1000}).status_code == 422
        text = client.get("/metrics").text
    assert 'search_http_requests_total{method="GET",route="/search",status="200"} 1.0' in text
    assert 'search_http_requests_total{method="GET",route="/search",status="422"} 1.0' in text
    assert f"search_index_passages {float(fake_service.store.size)}" in text
    assert f'build_id="{fake_service.store.build_id}"' in text


def test_no_path_traversal_through_the_real_routes(fake_service: SearchService) -> None:
    probes = ["/passages/..%2F..%2F..%2Fetc%2Fpasswd", "/articles/..%2F..%2Fetc%2Fpasswd/similar",
              "/reports/..%2F..%2Fetc/files/passwd", "/reports/x/files/..%2F..%2Fmanifest.json",
              "/passages/%2Fetc%2Fpasswd", "/reports/x/files/%2Fetc%2Fpasswd"]  # fmt: skip
    with TestClient(guarded(fake_service)) as client:
        for path in probes:
            r = client.get(path)
            assert r.status_code in (400, 404, 405), (path, r.status_code)
            assert "root:" not in r.text and error_of(r)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(list(SearchRequest.model_fields) + ["extra"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.dictionaries(FIELDS, JSON, max_size=6) | JSON)
def test_request_models_accept_or_reject_anything_cleanly(body: object) -> None:
    """Any JSON either fails validation (422) or becomes a query the service accepts or refuses with BadInput."""
    service = SearchService(Settings(model="fake-model"))
    for model in (SearchRequest, BatchRequest):
        payload = {"queries": [body]} if model is BatchRequest else body
        try:
            request = model.model_validate(payload)
        except ValidationError:
            continue
        for r in request.queries if isinstance(request, BatchRequest) else [request]:
            try:
                service.validate(r.to_query())
            except BadInput:
                pass


def run_tool(*args: str, timeout: float) -> tuple[int, dict[str, Any], str]:
    """Run a tool; its JSON results are all of stdout (load.py) or its last line (fuzz.py, after schemathesis')."""
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    out = r.stdout.strip()
    with contextlib.suppress(ValueError):
        return r.returncode, json.loads(out if out.startswith("{") else out.rsplit("\n", 1)[-1]), r.stderr
    return r.returncode, {}, r.stdout + r.stderr


@pytest.mark.model
def test_load_16_clients_for_10_seconds_without_an_error(server_url: str) -> None:
    code, out, err = run_tool("tools/load.py", "--url", server_url, "--clients", "16", "--seconds", "10", timeout=300)
    print(json.dumps(out))
    assert code == 0 and out["errors"] == 0, (out, err)
    assert out["requests"] > 16 and set(out["by_route"]) == {"GET /search", "POST /search", "POST /search/batch"}
    assert 0 < out["latency_ms"]["p50"] <= out["latency_ms"]["p99"] <= out["latency_ms"]["max"]


@pytest.mark.model
def test_fuzzing_finds_no_server_error_and_no_schema_mismatch(server_url: str) -> None:
    code, out, err = run_tool("tools/fuzz.py", "--url", server_url, "--max-examples", "5", "--seed", "1", timeout=900)
    print(json.dumps(out))
    assert code == 0 and out["cases_with_failures"] == 0 and out["errors"] == 0, (out, err[-3000:])
    assert out["cases_run"] > 100
