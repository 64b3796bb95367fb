"""One writer per index folder: concurrent `search index` runs, kill -9 inside each publishing step, server writes
that start from the published build, and owned staging folders (the fake embedder, in real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from search.config import Settings
from search.index.store import current_build
from search.index.writers import OWNER, STEPS, owned_name, this_host, writer_lock
from search.ingest.language import LanguageDetector
from search.records import Article, SearchQuery
from search.serve.app import create_app
from search.service import SearchService
from tests.fakes import FakeEmbedder
from tests.helpers import Cli, error_of, file_hashes, leftovers, make_service, write

QUERIES = ["cats sleep in the sun", "dogs bark", "кошки спят", "rivers flow to the sea", "article 3 of the corpus"]


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector(["en", "ru", "zh"], preload=False)


def corpus(folder: Path, tag: str, n: int = 12) -> Path:
    """`n` small articles whose ids and texts carry `tag`, so a build shows which corpus it holds."""
    for i in range(n):
        write(
            folder / f"{tag}-{i:02d}.txt",
            f"Article {i} of the {tag} corpus. Cats sleep in the sun number {i}.\n\n"
            f"Dogs bark at strangers {i} times.\n\nКошки спят на солнце {i}.\n\nRivers flow to the sea {i % 3}.\n",
        )
    return folder


def served_hits(client: TestClient) -> list[Any]:
    """The served index's hits for every query of QUERIES, as the API returns them."""
    return [client.get("/search", params={"q": q, "k": 5}).json()["hits"] for q in QUERIES]


def answers(svc: SearchService) -> list[list[tuple[str, float]]]:
    """What a freshly loaded service on the published index answers, dense and lexical."""
    fresh = SearchService(svc.settings, embedder=FakeEmbedder(), detector=svc.detector)
    out = []
    try:
        for q in QUERIES:
            for mode in ("dense", "lexical"):
                hits = fresh.search(SearchQuery(q, k=5, mode=mode)).hits  # type: ignore[arg-type]
                out.append([(h.passage.passage_id, round(h.score, 6)) for h in hits])
    finally:
        fresh.close()
    return out


def published_articles(index: Path) -> set[str]:
    settings = Settings(model="fake-model", index_dir=index, cache_dir=index.parent / "cache")
    return {a.article_id for a in SearchService(settings, embedder=FakeEmbedder()).articles()}


# --- concurrent writers ---------------------------------------------------------------------------------------------


def test_a_second_search_index_waits_for_the_first_and_publishes_one_complete_build(
    tmp_path: Path, clis: Callable[..., Cli]
) -> None:
    index = tmp_path / "index"
    first = clis("first", "index", str(corpus(tmp_path / "a", "alpha")), "--index", str(index), "--json", pause="write")
    first.wait_paused()  # inside its write step, holding the lock, its staging folder half written
    second = clis("second", "index", str(corpus(tmp_path / "b", "beta")), "--index", str(index), "--json")
    second.wait_for("the waiting message", lambda: "is being written by" in second.stderr)
    assert f"pid {first.proc.pid} on {this_host()} (search index, since " in second.stderr
    assert second.proc.poll() is None  # waiting, not failed
    first.resume()
    (rc1, one), (rc2, two) = first.finish(), second.finish()
    assert (rc1, rc2) == (0, 0), (first.stderr, second.stderr)
    assert current_build(index).name == two["build_id"] != one["build_id"]  # type: ignore[union-attr]
    # the published index is the second corpus, whole: no article of the first, every one of its own
    assert published_articles(index) == {f"beta-{i:02d}.txt" for i in range(12)}
    assert leftovers(index) == []  # no staging folder, link or lock record of either
    # the first build is complete too (kept as the previous build, checksums verified when loaded)
    assert sorted(p.name for p in (index / "builds").iterdir()) == sorted([one["build_id"], two["build_id"]])


def test_with_no_wait_a_second_search_index_fails_at_once_with_exit_code_9(
    tmp_path: Path, clis: Callable[..., Cli]
) -> None:
    index = tmp_path / "index"
    first = clis("first", "index", str(corpus(tmp_path / "a", "alpha")), "--index", str(index), "--json", pause="write")
    first.wait_paused()
    second = clis(
        "second", "index", str(corpus(tmp_path / "b", "beta")), "--index", str(index), SEARCH_WRITE_LOCK_TIMEOUT="0"
    )
    assert second.proc.wait(timeout=120) == 9, second.stderr
    line = second.stderr.strip()
    assert line.startswith(f"error: {index}/ is being written by pid {first.proc.pid} on {this_host()}")
    assert "SEARCH_WRITE_LOCK_TIMEOUT" in line and "Traceback" not in line and len(line.splitlines()) == 1
    first.resume()
    rc, one = first.finish()
    assert rc == 0 and current_build(index).name == one["build_id"]  # type: ignore[union-attr]
    assert published_articles(index) == {f"alpha-{i:02d}.txt" for i in range(12)} and leftovers(index) == []


def test_search_remove_takes_the_lock_too(tmp_path: Path, detector: LanguageDetector, clis: Callable[..., Cli]) -> None:
    svc = make_service(tmp_path, detector)
    svc.build([corpus(tmp_path / "a", "alpha", 3)])
    with writer_lock(svc.settings.index_dir, 0, "a test"):
        index = str(svc.settings.index_dir)
        held = clis("rm", "remove", "alpha-00.txt", "--index", index, SEARCH_WRITE_LOCK_TIMEOUT="0")
        assert held.proc.wait(timeout=120) == 9 and "(a test, since" in held.stderr
    free = clis("rm2", "remove", "alpha-00.txt", "--index", str(svc.settings.index_dir), "--json")
    rc, summary = free.finish()
    assert rc == 0 and (summary["articles"], summary["removed"]) == (2, 4), free.stderr
    assert published_articles(svc.settings.index_dir) == {"alpha-01.txt", "alpha-02.txt"}


def test_a_server_write_while_another_writer_holds_the_lock_answers_409(
    tmp_path: Path, detector: LanguageDetector
) -> None:
    svc = make_service(tmp_path, detector, writes=True, watch_seconds=0, write_lock_timeout=0)
    svc.build([corpus(tmp_path / "a", "alpha", 3)])
    served = svc.load().build_id
    with TestClient(create_app(service=svc)) as client:
        with writer_lock(svc.settings.index_dir, 0, "search index"):
            r = client.put("/articles/new", json={"text": "Owls hunt at night."})
            assert r.status_code == 409 and error_of(r) == "index_busy"
            assert f"pid {os.getpid()}" in r.json()["error"]["message"]
            assert client.delete("/articles/alpha-00.txt").status_code == 409
        assert client.get("/health").json()["build_id"] == served
        assert client.put("/articles/new", json={"text": "Owls hunt at night."}).status_code == 200
    assert not (svc.settings.index_dir / OWNER).exists()


def test_a_server_write_starts_from_the_published_build_not_the_served_one(
    tmp_path: Path, detector: LanguageDetector
) -> None:
    server = make_service(tmp_path, detector, writes=True, watch_seconds=0)
    server.build([corpus(tmp_path / "a", "alpha", 3)])
    server.load()
    # another process publishes a newer build; this server has not picked it up (no watch)
    other = make_service(tmp_path, detector)
    other.build([corpus(tmp_path / "a", "alpha", 3), corpus(tmp_path / "late", "late", 1)])
    assert server.store.build_id != current_build(server.settings.index_dir).name  # type: ignore[union-attr]
    server.upsert_article(Article("owls", "Owls", "Owls hunt at night."))
    ids = {a.article_id for a in server.articles()}
    assert {"late-00.txt", "owls", "alpha-00.txt"} <= ids  # the newer build's article survived the write
    server.remove_articles(["alpha-00.txt"])
    assert published_articles(server.settings.index_dir) == {"alpha-01.txt", "alpha-02.txt", "late-00.txt", "owls"}


# --- staging folders are owned ------------------------------------------------------------------------------------


def test_a_build_clears_dead_writers_staging_and_never_a_live_one(tmp_path: Path, detector: LanguageDetector) -> None:
    svc = make_service(tmp_path, detector)
    source = corpus(tmp_path / "a", "alpha", 3)
    svc.build([source])
    builds = svc.settings.index_dir / "builds"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        names = {
            "dead": f".tmp-20250101T000000Z-aaaaaa-{this_host()}-{dead_pid}",
            "live": f".tmp-20250101T000000Z-bbbbbb-{this_host()}-{live.pid}",
            "elsewhere": f".tmp-20250101T000000Z-cccccc-another_host-{dead_pid}",
            "old_trash": f".trash-20240101T000000Z-dddddd-{this_host()}-{dead_pid}",
            "unowned": ".tmp-20240101T000000Z-eeeeee",
        }
        for name in names.values():
            write(builds / name / "vectors.faiss", b"half")
        svc.build([source])
        assert sorted(p.name for p in builds.glob(".*")) == sorted([names["live"], names["elsewhere"]])
    finally:
        live.kill()
        live.wait()
    assert owned_name("tmp", "x").endswith(f"-{this_host()}-{os.getpid()}")


# --- kill -9 inside each publishing step --------------------------------------------------------------------------


@pytest.mark.parametrize("step", STEPS)
def test_kill_9_inside_a_publishing_step_leaves_the_previous_index_or_the_whole_new_one(
    step: str, tmp_path: Path, detector: LanguageDetector, clis: Callable[..., Cli]
) -> None:
    svc = make_service(tmp_path, detector)
    index = svc.settings.index_dir
    old = corpus(tmp_path / "old", "old", 8)
    svc.build([old])
    previous = svc.build([old], full=True).build_id  # two builds: publishing a third deletes the first (the prune step)
    before = file_hashes(index / "builds" / previous)
    answered = answers(svc)

    new = corpus(tmp_path / "new", "new", 8)
    killed = clis("killed", "index", str(new), "--index", str(index), "--json", pause=step)
    killed.wait_paused()
    in_step = leftovers(index)
    if step == "done":  # published and synced, not yet answered: nothing hidden but the lock holder's record
        assert in_step == [OWNER] and current_build(index).name != previous  # type: ignore[union-attr]
    else:
        expected = {"write": ".tmp-", "rename": ".tmp-", "swap": ".current-", "prune": ".trash-"}[step]
        assert [n for n in in_step if n.startswith(expected)], in_step  # the kill lands inside the step
    killed.kill()

    assert file_hashes(index / "builds" / previous) == before  # byte for byte
    if step in ("prune", "done"):  # `current` was swapped before the kill: the new build is published, whole
        assert published_articles(index) == {f"new-{i:02d}.txt" for i in range(8)}
    else:
        assert current_build(index).name == previous  # type: ignore[union-attr]
        assert answers(svc) == answered
    assert leftovers(index) == in_step  # until the next writer: its owner is gone

    rc, summary = clis("next", "index", str(new), "--index", str(index), "--json").finish()
    assert rc == 0
    assert current_build(index).name == summary["build_id"] and leftovers(index) == []  # type: ignore[union-attr]
    assert published_articles(index) == {f"new-{i:02d}.txt" for i in range(8)}


# --- a broken new build while serving ---------------------------------------------------------------------------


def test_a_corrupt_new_build_is_logged_and_the_old_one_keeps_serving(
    tmp_path: Path, detector: LanguageDetector, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    svc = make_service(tmp_path, detector, writes=True, watch_seconds=0.1)
    svc.build([corpus(tmp_path / "a", "alpha", 6)])
    index = svc.settings.index_dir
    served = svc.load().build_id
    with TestClient(create_app(service=svc)) as client:
        before = served_hits(client)
        # a build that looks published but whose vectors are damaged: copy the served one, corrupt it, swap it in
        broken = index / "builds" / "29990101T000000Z-bad000"
        shutil.copytree(index / "builds" / served, broken)
        data = bytearray((broken / "vectors.faiss").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (broken / "vectors.faiss").write_bytes(bytes(data))
        (index / "tmp-link").symlink_to(broken.relative_to(index))
        os.replace(index / "tmp-link", index / "current")

        deadline = time.monotonic() + 30
        while "new index not loaded" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"still serving build {served}" in caplog.text and "checksum" in caplog.text
        assert client.get("/health").json()["build_id"] == served
        assert served_hits(client) == before
        r = client.post("/admin/reload")
        assert r.status_code == 503 and error_of(r) == "index_corrupt"
        # a write starts from the published build: it refuses to build on a corrupt one (nor on the older one)
        r = client.put("/articles/new", json={"text": "Owls hunt at night."})
        assert r.status_code == 503 and error_of(r) == "index_corrupt"
        assert current_build(index) == broken and client.get("/health").json()["build_id"] == served
        assert served_hits(client) == before


def test_a_write_that_fails_mid_build_leaves_the_served_index_and_no_staging(
    tmp_path: Path, detector: LanguageDetector, monkeypatch: pytest.MonkeyPatch
) -> None:
    import search.index.writers

    svc = make_service(tmp_path, detector, writes=True, watch_seconds=0)
    svc.build([corpus(tmp_path / "a", "alpha", 6)])
    index = svc.settings.index_dir
    served = svc.load().build_id
    before = file_hashes(index / "builds" / served)

    def disk_full(step: str) -> None:
        if step == "write":
            raise OSError(28, "No space left on device")

    with TestClient(create_app(service=svc), raise_server_exceptions=False) as client:
        answered = served_hits(client)
        monkeypatch.setattr(search.index.writers, "reached", disk_full)
        assert client.put("/articles/new", json={"text": "Owls hunt at night."}).status_code == 500
        assert client.get("/health").json()["build_id"] == served == current_build(index).name  # type: ignore[union-attr]
        assert served_hits(client) == answered
        assert leftovers(index) == [] and file_hashes(index / "builds" / served) == before
        monkeypatch.undo()
        assert client.put("/articles/new", json={"text": "Owls hunt at night."}).status_code == 200
