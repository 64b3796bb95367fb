"""`search serve --replicas 2` on a real two-node Ray cluster on this machine: both replicas answer, alike, with
the API keys, /health, /metrics and the web page as on uvicorn, and a newly published build reaches both."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from search.config import Settings
from search.serve.replicas import replica_settings
from search.service import SearchService
from tests.helpers import SEEDS, write
from tools._server import running_server

READ_KEY = "read-key-for-replicas-0001"
ADMIN_KEY = "admin-key-for-replicas-001"
READ = {"Authorization": f"Bearer {READ_KEY}"}
NEW_ARTICLE = "Replicas reload: the lighthouse keeper of Vardø counted eleven ships passing in the polar night.\n"


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A head and a second node of one CPU each: one replica lands on each node. Shut down, processes and all."""
    pytest.importorskip("ray.serve", reason="needs the cluster extra: pip install 'search[cluster]'")
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        nodes.add_node(num_cpus=1)
        nodes.wait_for_nodes()
        yield nodes.address
    finally:
        nodes.shutdown()


@pytest.fixture(scope="module")
def index_dir(service: SearchService, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the seed index (this module publishes a new build into it; the session's index stays as it is)."""
    folder = tmp_path_factory.mktemp("replicas") / "index"
    shutil.copytree(service.settings.index_dir, folder, symlinks=True)
    return folder


@pytest.fixture(scope="module")
def url(
    cluster: str, index_dir: Path, service: SearchService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    env = {
        "SEARCH_CACHE_DIR": str(service.settings.cache_dir),
        "SEARCH_API_KEYS": f"{READ_KEY},{ADMIN_KEY}:admin",
        "SEARCH_WATCH_SECONDS": "1",
    }
    log = tmp_path_factory.mktemp("replicas-log") / "server.log"
    with running_server(index_dir, env, wait=300, log_path=log, args=["--replicas", "2", "--ray", cluster]) as served:
        yield served.url


def per_replica(call: Callable[[], httpx.Response], until: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Call until `until(answers)` holds, where answers maps each replica seen (X-Search-Replica) to its last
    JSON answer; Serve routes each request to either replica, so a few calls reach both."""
    answers: dict[str, Any] = {}
    deadline = time.monotonic() + 90
    while not until(answers):
        assert time.monotonic() < deadline, f"gave up waiting, replicas answered: {answers}"
        r = call()
        assert r.status_code == 200, r.text
        answers[r.headers["x-search-replica"]] = r.json()
    return answers


@pytest.mark.model
def test_both_replicas_answer_the_same_search_alike(url: str) -> None:
    def search() -> httpx.Response:
        return httpx.get(f"{url}/search", params={"q": "普京如何看待俄美关系?", "k": 5}, headers=READ, timeout=60)

    answers = per_replica(search, lambda a: len(a) >= 2)
    assert len(answers) == 2
    ranked = [[(h["passage_id"], round(h["score"], 5)) for h in a["hits"]] for a in answers.values()]
    assert ranked[0] and ranked[0] == ranked[1]


@pytest.mark.model
def test_keys_guard_every_replica(url: str) -> None:
    r = httpx.get(f"{url}/search", params={"q": "NATO"}, timeout=30)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert r.headers["x-search-replica"]
    r = httpx.post(f"{url}/admin/reload", headers=READ, timeout=30)
    assert r.status_code == 403
    assert httpx.get(f"{url}/health", timeout=30).status_code == 200  # open, as on uvicorn


@pytest.mark.model
def test_health_metrics_and_web_page(url: str) -> None:
    health = httpx.get(f"{url}/health", timeout=30).json()
    assert health["status"] == "ok" and health["index_size"] > 0
    r = httpx.get(f"{url}/metrics", headers=READ, timeout=30)
    assert r.status_code == 200
    assert f'search_replica_info{{replica="{r.headers["x-search-replica"]}"}} 1.0' in r.text
    assert "search_http_requests_total" in r.text
    page = httpx.get(f"{url}/", headers=READ, timeout=30)
    assert page.status_code == 200 and "<html" in page.text.lower()


@pytest.mark.model
def test_a_new_build_reaches_both_replicas(url: str, index_dir: Path, service: SearchService, tmp_path: Path) -> None:
    before = httpx.get(f"{url}/health", timeout=30).json()["build_id"]
    extra = write(tmp_path / "extra" / "lighthouse.txt", NEW_ARTICLE)
    writer = SearchService(Settings(index_dir=index_dir, cache_dir=service.settings.cache_dir))
    after = writer.build([SEEDS, extra.parent]).build_id
    assert after != before

    def health() -> httpx.Response:
        return httpx.get(f"{url}/health", timeout=30)

    per_replica(health, lambda a: len(a) >= 2 and all(h["build_id"] == after for h in a.values()))

    def search() -> httpx.Response:
        return httpx.get(f"{url}/search", params={"q": "lighthouse keeper Vardø", "k": 1}, headers=READ, timeout=60)

    found = per_replica(search, lambda a: len(a) >= 2)
    assert all("lighthouse" in a["hits"][0]["text"] for a in found.values())


def test_replicas_get_absolute_paths_and_threads_for_their_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(index_dir=Path("idx"), cache_dir=Path("cache"), replica_cpus=2)
    got = replica_settings(settings)
    assert got.index_dir == Path("idx").resolve() and got.cache_dir.is_absolute() and got.threads == 2
    monkeypatch.setenv("SEARCH_THREADS", "3")
    assert replica_settings(Settings(replica_cpus=2)).threads == 3  # SEARCH_THREADS wins


@pytest.mark.model
def test_plain_serve_never_imports_ray(index_dir: Path) -> None:
    """`search serve` without --replicas, up to the moment uvicorn would start: Ray is not in sys.modules, even with
    SEARCH_RAY_ADDRESS set (for builds and reports)."""
    script = (
        "import sys, uvicorn\n"
        "uvicorn.run = lambda app, **kw: print('ray' in sys.modules, 'fastapi' in sys.modules)\n"
        "from search.cli import app\n"
        f"app(['serve', '--index', {str(index_dir)!r}], standalone_mode=False)\n"
    )
    env = {**os.environ, "SEARCH_RAY_ADDRESS": "auto"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.stdout.split() == ["False", "True"], done.stderr
