"""Searches while writes and merges are under way: a real uvicorn server (in this process, on the fake embedder),
16 reader threads searching (dense, lexical and hybrid, filters, context) and reading passages by id, while a writer
adds, replaces and deletes articles over HTTP and merges run in the server's background thread.

Zero errors, and every answer consistent with the writes: a hit's article and text are one the index held, and
once a write has returned, no search sent after it finds what it replaced or deleted.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

import search.service
from search.index.store import Store, current_build
from search.ingest.language import LanguageDetector
from search.records import Article
from search.serve.app import create_app
from search.service import SearchService
from tests.helpers import free_port, jsonl, make_service, write

READERS = 16
TOPICS = ["cats", "dogs", "owls", "bees", "frogs", "goats", "ducks", "crows", "mice", "fish", "bats", "moles"]
QUERIES = ["cats sleep in the sun", "dogs bark at strangers", "кошки спят на солнце", "rivers flow", "version 1"]


def text(i: int, version: int) -> str:
    topic = TOPICS[i % len(TOPICS)]
    return (
        f"{topic.title()} of article {i} sleep in the sun (version {version}).\n\n"
        f"Dogs bark at strangers {i} times near the {topic}.\n\nКошки спят на солнце {i}, версия {version}.\n\n"
        f"Rivers {i} flow to the sea past the {topic}."
    )


def published(i: int) -> str:
    return f"2025-0{1 + i % 9}-15"


@contextmanager
def server(svc: SearchService) -> Iterator[str]:
    """The app on uvicorn, in a thread of this process, on a free loopback port."""
    port = free_port()
    config = uvicorn.Config(create_app(service=svc), host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(60)


@dataclass
class Writes:
    """What the writer did, and when (time.monotonic()): a reader judges each answer by what had returned before
    it sent its request, and what had started before the answer came back."""

    texts: dict[str, set[str]] = field(default_factory=dict)  # every text each article id ever had
    current: dict[str, tuple[float, str]] = field(default_factory=dict)  # id -> (write returned, text since)
    deleted: dict[str, float] = field(default_factory=dict)  # id -> when its DELETE returned
    started: dict[str, float] = field(default_factory=dict)  # id -> when its first write was sent


def check_hit(hit: dict[str, Any], sent: float, writes: Writes) -> list[str]:
    """What is wrong with one hit of a search sent at `sent` (nothing, if it is consistent)."""
    aid, passage = hit["article_id"], hit["text"]
    problems = []
    if not any(passage in t for t in writes.texts.get(aid, ())):
        problems.append(f"{aid}: a passage the index never held: {passage!r}")
    if aid in writes.deleted and writes.deleted[aid] < sent:
        problems.append(f"{aid}: found after its DELETE returned")
    if aid in writes.current and writes.current[aid][0] < sent and passage not in writes.current[aid][1]:
        problems.append(f"{aid}: the replaced version found after its PUT returned: {passage!r}")
    for c in hit["context"]:
        if c["article_id"] != aid:
            problems.append(f"{aid}: context from another article, {c['article_id']}")
    return problems


def test_16_readers_during_writes_and_merges_see_no_error_and_consistent_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="search.service")
    detector = LanguageDetector(["en", "ru"], preload=False)
    base = {f"a{i:02d}": text(i, 0) for i in range(12)}
    corpus = write(
        tmp_path / "corpus" / "base.jsonl",
        jsonl(*({"id": aid, "text": t, "published": published(i)} for i, (aid, t) in enumerate(base.items()))),
    )
    # merges as soon as two segments share a tier; a merge that is due refits the means once writes passed a
    # third of the passages (a compaction under load too)
    svc = make_service(tmp_path, detector, writes=True, watch_seconds=0, merge_factor=2, refresh_share=0.34)
    svc.build([corpus])
    svc.load()
    writes = Writes(texts={aid: {t} for aid, t in base.items()})

    # The writer's plan: new articles, replaced ones and deletions (some of articles it added), each id at most
    # once per kind, so that what a reader may find follows from the times alone.
    rng = random.Random(19)
    plan: list[tuple[str, str, str]] = []  # (method, id, text)
    for n in range(12):
        plan.append(("PUT", f"n{n:02d}", text(100 + n, 0)))
    for i in (1, 4, 7, 10):
        plan.append(("PUT", f"a{i:02d}", text(i, 1)))
    rng.shuffle(plan)
    deletions = [("DELETE", aid, "") for aid in ("a02", "a05", "a09", "n03", "n07")]
    for d in deletions:  # after the article's own PUT, if it has one
        after = max((k for k, p in enumerate(plan) if p[1] == d[1]), default=rng.randrange(len(plan)))
        plan.insert(after + 1 + rng.randrange(2), d)
    for _, aid, t in plan:
        if t:
            writes.texts.setdefault(aid, set()).add(t)

    errors: list[str] = []
    answered = [0] * READERS
    stop = threading.Event()

    with server(svc) as url:

        def reader(me: int) -> None:
            pick = random.Random(me)
            with httpx.Client(base_url=url, timeout=60, trust_env=False) as client:
                while not stop.is_set():
                    params: dict[str, Any] = {
                        "q": pick.choice(QUERIES),
                        "k": pick.choice([5, 10, 30]),
                        "mode": pick.choice(["dense", "hybrid", "lexical"]),
                        "context": pick.choice([0, 1]),
                    }
                    kind = pick.randrange(4)
                    if kind == 1:
                        params["lang"] = "ru"
                    elif kind == 2:
                        params["article"] = pick.sample(sorted(writes.texts), 3)
                    elif kind == 3:
                        params["published_after"] = "2025-04-01"
                    sent = time.monotonic()
                    r = client.get("/search", params=params)
                    if r.status_code != 200:
                        errors.append(f"GET /search {params}: {r.status_code} {r.text[:300]}")
                        continue
                    hits = r.json()["hits"]
                    for hit in hits:
                        errors.extend(check_hit(hit, sent, writes))
                        if kind == 1 and hit["lang"] != "ru":
                            errors.append(f"lang=ru filter: a {hit['lang']} hit")
                    if hits:
                        hit = pick.choice(hits)
                        asked = time.monotonic()
                        r = client.get(f"/passages/{hit['passage_id']}")
                        # gone only if a write that touched its article was sent before the answer came back
                        touched = writes.started.get(hit["article_id"], float("inf")) < time.monotonic()
                        if r.status_code == 200:
                            errors.extend(check_hit({**r.json(), "context": []}, asked, writes))
                        elif not (r.status_code == 404 and touched):
                            errors.append(f"GET /passages/{hit['passage_id']}: {r.status_code} {r.text[:300]}")
                    answered[me] += 1
                    stop.wait(0.02)  # 16 readers in the server's own process: the writer needs a turn too

        threads = [threading.Thread(target=reader, args=(n,), name=f"reader-{n}") for n in range(READERS)]
        for t in threads:
            t.start()
        try:
            with httpx.Client(base_url=url, timeout=120, trust_env=False) as client:
                for method, aid, body in plan:
                    writes.started.setdefault(aid, time.monotonic())
                    if method == "PUT":
                        r = client.put(f"/articles/{aid}", json={"text": body, "metadata": {"published": "2025-06-01"}})
                    else:
                        r = client.delete(f"/articles/{aid}")
                    assert r.status_code == 200, f"{method} {aid}: {r.status_code} {r.text}"
                    done = time.monotonic()
                    if method == "PUT":
                        writes.current[aid] = (done, body)
                    else:
                        writes.deleted[aid] = done
                    time.sleep(0.05)  # readers get a turn between writes
                svc.wait_for_merges(60)
                time.sleep(0.5)  # searches on the final build too
        finally:
            stop.set()
            for t in threads:
                t.join(120)
        health = httpx.get(f"{url}/health", trust_env=False).json()

    assert errors == [], f"{len(errors)} errors, the first: {errors[:5]}"
    assert min(answered) > 0, answered
    # merges ran in the background: 16 upserts each added a segment (17 without merges), and a few are left
    final = current_build(svc.settings.index_dir)
    assert final is not None and health["build_id"] == final.name
    assert len(health["segments"]) <= 5, health["segments"]
    assert "compacting" in caplog.text  # and a due merge refit the means
    live = {aid for aid in writes.texts if aid not in writes.deleted}
    assert {a.article_id for a in svc.articles()} == live


def test_a_reload_slower_than_a_write_does_not_serve_the_build_the_write_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A background merge (or the watch) reloads without the writer lock: if it loaded a build that a write replaced
    while it was loading, serving it would undo that write for every search after the write's answer."""
    detector = LanguageDetector(["en", "ru"], preload=False)
    corpus = write(tmp_path / "corpus" / "base.jsonl", jsonl(*({"id": f"a{i}", "text": text(i, 0)} for i in range(4))))
    svc = make_service(tmp_path, detector, writes=True, watch_seconds=0, merges="off")
    svc.build([corpus])
    svc.load()
    other = make_service(tmp_path, detector, merges="off")  # another process publishes a build
    other.upsert_article(Article("b1", "b1", text(20, 0)))

    loaded, release = threading.Event(), threading.Event()

    def slow_store(*args: Any, **kwargs: Any) -> Store:
        store = Store(*args, **kwargs)
        if threading.current_thread().name == "slow-reload":
            loaded.set()
            assert release.wait(60)
        return store

    monkeypatch.setattr(search.service, "Store", slow_store)
    slow = threading.Thread(target=svc.reload, name="slow-reload")
    slow.start()
    assert loaded.wait(60)  # it has loaded other's build and is about to serve it
    svc.remove_articles(["a1"])  # this write publishes a newer build and serves it
    newest = current_build(svc.settings.index_dir)
    assert newest is not None and svc.store.folder == newest
    release.set()
    slow.join(60)
    assert svc.store.folder == newest
    assert "a1" not in {a.article_id for a in svc.articles()}
