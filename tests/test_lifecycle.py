"""Index lifecycle: upserts and deletes, strict builds, a crash before publishing, and reloads under traffic (kill -9
in each publishing step and concurrent writers: test_writers.py)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from search.config import Settings
from search.errors import BadInput, NotFound
from search.index.store import current_build
from search.ingest.language import LanguageDetector
from search.records import Article, SearchQuery
from search.serve.app import create_app
from search.service import SearchService
from tests.fakes import FakeEmbedder
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector(["en", "zh", "ru", "de"], preload=False)


@pytest.fixture
def svc(tmp_path: Path, detector: LanguageDetector) -> SearchService:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "cats.txt").write_text("Cats sleep in the sun.\n\nCats chase mice at night.\n", encoding="utf-8")
    (corpus / "dogs.txt").write_text("Dogs bark at strangers.\n\nDogs fetch sticks in the park.\n", encoding="utf-8")
    settings = Settings(model="fake-model", index_dir=tmp_path / "index", writes=True, watch_seconds=0.2)
    service = SearchService(settings, embedder=FakeEmbedder(), detector=detector)
    service.build([corpus])
    service.load()
    return service


def found(svc: SearchService, text: str) -> set[str]:
    return {h.passage.article_id for h in svc.search(SearchQuery(text, k=10, mode="lexical")).hits}


def test_upsert_and_delete_change_what_is_found_and_embed_only_new_passages(svc: SearchService) -> None:
    fake = svc.embedder
    assert isinstance(fake, FakeEmbedder)
    before = len(fake.encoded)
    summary = svc.upsert_article(Article("birds", "Birds", "Birds sing at dawn.\n\nCats chase mice at night."))
    assert fake.encoded[before:] == ["Birds sing at dawn."]  # the shared sentence came from the cache
    assert (summary.embedded, summary.removed, summary.articles) == (1, 0, 3)
    assert "birds" in found(svc, "birds sing dawn")

    svc.upsert_article(Article("birds", "Birds", "Parrots talk."))
    assert found(svc, "birds sing dawn") == set() and "birds" in found(svc, "parrots talk")

    removed = svc.remove_articles(["dogs.txt"])
    assert removed.removed == 2 and found(svc, "dogs bark strangers") == set()
    with pytest.raises(NotFound, match="nope"):
        svc.remove_articles(["nope"])


def test_strict_build_fails_before_publishing_and_leaves_the_index_byte_for_byte(svc: SearchService, tmp_path) -> None:
    index = svc.settings.index_dir
    snapshot = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(index.rglob("*")) if p.is_file()}
    target = os.readlink(index / "current")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ok.txt").write_text("A good article.\n", encoding="utf-8")
    (bad / "rows.jsonl").write_text('{"text": "fine"}\nnot json\n', encoding="utf-8")
    with pytest.raises(BadInput, match="--strict.*rows.jsonl:2"):
        svc.build([bad], strict=True)
    assert os.readlink(index / "current") == target
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(index.rglob("*")) if p.is_file()}
    assert after == snapshot


def test_a_crash_between_write_and_publish_leaves_the_previous_build(svc: SearchService, monkeypatch) -> None:
    import search.index.build
    import search.index.segments

    served = svc.store.build_id

    def crash(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(search.index.build, "publish", crash)  # a full build's
    monkeypatch.setattr(search.index.segments, "publish", crash)  # a write's new segment
    with pytest.raises(KeyboardInterrupt):
        svc.upsert_article(Article("x", "x", "Something new."))
    assert current_build(svc.settings.index_dir).name == served  # type: ignore[union-attr]
    assert not [p for p in (svc.settings.index_dir / "builds").iterdir() if p.name.startswith(".tmp")]
    assert SearchService(svc.settings, embedder=FakeEmbedder()).load().build_id == served


def test_api_writes_reload_and_health_show_the_build(svc: SearchService) -> None:
    with TestClient(create_app(service=svc)) as client:
        first = client.get("/health").json()["build_id"]
        r = client.put("/articles/news/1", json={"text": "Owls hunt at night.", "metadata": {"source": "AP"}})
        assert r.status_code == 200 and r.json()["embedded"] == 1
        assert client.get("/health").json()["build_id"] == r.json()["build_id"] != first
        hits = client.get("/search", params={"q": "owls hunt", "mode": "lexical"}).json()["hits"]
        assert hits[0]["article_id"] == "news/1"
        assert client.delete("/articles/news/1").status_code == 200
        assert client.get("/search", params={"q": "owls hunt", "mode": "lexical"}).json()["hits"] == []
        assert client.delete("/articles/news/1").status_code == 404
        # a build published by another process is picked up by the watch, without a restart
        other = SearchService(svc.settings, embedder=FakeEmbedder(), detector=svc.detector)
        published = other.upsert_article(Article("late", "late", "Late news arrives.")).build_id
        deadline = time.monotonic() + 10
        while client.get("/health").json()["build_id"] != published and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get("/health").json()["build_id"] == published
        assert client.post("/admin/reload").json() == {"reloaded": False, "build_id": published}


def test_writes_are_off_unless_enabled(svc: SearchService) -> None:
    off = SearchService(svc.settings.model_copy(update={"writes": False}), embedder=FakeEmbedder())
    with TestClient(create_app(service=off)) as client:
        r = client.put("/articles/a", json={"text": "x"})
        assert r.status_code == 403 and "--writes" in r.json()["error"]["message"]


@pytest.fixture
def own_seed(service, tmp_path: Path) -> SearchService:  # type: ignore[no-untyped-def]
    """A seed index of this test's own (these tests replace builds), sharing the session's loaded model."""
    settings = service.settings.model_copy(update={"index_dir": tmp_path / "own-index"})
    svc = SearchService(settings, embedder=service.embedder, detector=service.detector)
    svc.build([ROOT / "seeds"])
    svc.load()
    return svc


@pytest.mark.model
def test_searches_during_reloads_see_no_errors(own_seed: SearchService, tmp_path: Path) -> None:
    service = own_seed
    port = free_port()
    env = {**os.environ, "SEARCH_INDEX_DIR": str(service.settings.index_dir), "SEARCH_WATCH_SECONDS": "0.5"}
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "search", "serve", "--port", str(port), "--writes"], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(360):
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        statuses: list[int] = []
        stop = threading.Event()

        def client() -> None:
            with httpx.Client(timeout=60) as c:
                while not stop.is_set():
                    statuses.append(c.get(f"{url}/search", params={"q": "NATO", "k": 3}).status_code)

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        builds = set()
        for i in range(3):
            r = httpx.put(f"{url}/articles/extra-{i}", json={"text": f"Extra article number {i}."}, timeout=300)
            assert r.status_code == 200, r.text
            builds.add(r.json()["build_id"])
        subprocess.run(  # a build from outside, picked up by the watch
            [sys.executable, "-m", "search", "index", str(ROOT / "seeds"), "--index", str(service.settings.index_dir)],
            check=True,
            capture_output=True,
            env=env,
        )
        time.sleep(2)
        stop.set()
        for t in threads:
            t.join()
        assert len(builds) == 3 and statuses and set(statuses) == {200}, set(statuses)
        assert httpx.get(f"{url}/health").json()["build_id"] == current_build(service.settings.index_dir).name  # type: ignore[union-attr]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
