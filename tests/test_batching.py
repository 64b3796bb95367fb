"""Micro-batching of query encodes (`search/model/batching.py`) and its use under `SearchService`.

Concurrency is made deterministic with gates (an encoder that blocks until the test lets it go, and waiting for
the batcher's queue to fill), never with sleeps or timing assertions. The HTTP test drives a real uvicorn server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from search.config import Settings
from search.errors import ModelUnavailable
from search.ingest.language import LanguageDetector
from search.model.batching import MicroBatcher
from search.records import SearchQuery
from search.service import SearchService
from tests.fakes import FakeEmbedder

WAIT = 30.0  # seconds a gate waits before the test fails instead of hanging


def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


class GatedEncoder:
    """Encodes like FakeEmbedder, records each call's texts, and holds its first call until `release()`."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.fake = FakeEmbedder()
        self.batches: list[list[str]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.fail_on = fail_on

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(list(texts))
        self.entered.set()
        assert self.gate.wait(WAIT), "the test never released the encoder"
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError(f"model failed on {self.fail_on!r}")
        return self.fake.encode(texts, query=True)

    def release(self) -> None:
        self.gate.set()


def expected(text: str) -> np.ndarray:
    return FakeEmbedder().encode([text], query=True)[0]


def busy_then_burst(
    batcher: MicroBatcher, enc: GatedEncoder, texts: list[list[str]]
) -> list[np.ndarray | BaseException]:
    """One caller occupies the model; the others queue behind it; then the model is let go. Returns each outcome."""
    results: list[np.ndarray | BaseException] = [RuntimeError("no answer")] * len(texts)

    def call(i: int) -> None:
        try:
            results[i] = batcher.encode(texts[i])
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(texts))]
    threads[0].start()
    assert enc.entered.wait(WAIT)
    for t in threads[1:]:
        t.start()
    until(lambda: batcher._queue.qsize() == len(texts) - 1, "the other callers to queue")
    enc.release()
    for t in threads:
        t.join(WAIT)
        assert not t.is_alive(), "a caller hung"
    return results


def test_concurrent_callers_share_model_calls_and_each_gets_its_own_rows() -> None:
    enc = GatedEncoder()
    batcher = MicroBatcher(enc, window=0.005, max_batch=64)
    texts = [[f"query number {i}"] for i in range(12)] + [["two texts a", "two texts b"]]
    try:
        results = busy_then_burst(batcher, enc, texts)
    finally:
        batcher.close()

    assert len(enc.batches) == 2 < len(texts)  # the first alone, every other caller in the second call
    assert enc.batches[0] == texts[0]
    assert sorted(enc.batches[1]) == sorted(t for group in texts[1:] for t in group)
    for group, got in zip(texts, results, strict=True):
        assert isinstance(got, np.ndarray) and got.shape == (len(group), FakeEmbedder.dimension)
        for text, row in zip(group, got, strict=True):
            np.testing.assert_array_equal(row, expected(text))
    assert (batcher.calls, batcher.texts) == (2, 14)


def test_a_batch_never_exceeds_max_batch_nor_splits_a_caller() -> None:
    enc = GatedEncoder()
    batcher = MicroBatcher(enc, window=0.005, max_batch=3)
    texts = [["first"], ["a1", "a2"], ["b1"], ["c1", "c2"], ["d1"], ["e1", "e2", "e3"]]
    try:
        results = busy_then_burst(batcher, enc, texts)
    finally:
        batcher.close()

    assert all(len(b) <= 3 for b in enc.batches)
    assert sorted(t for b in enc.batches for t in b) == sorted(t for g in texts for t in g)
    for batch in enc.batches:
        callers = [g for g in texts if set(g) & set(batch)]
        assert all(set(g) <= set(batch) for g in callers), f"a caller was split: {batch}"
    for group, got in zip(texts, results, strict=True):
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, FakeEmbedder().encode(group, query=True))


def test_the_same_text_from_several_callers_is_encoded_once_and_reaches_each() -> None:
    enc = GatedEncoder()
    batcher = MicroBatcher(enc, window=0.005, max_batch=64)
    texts = [["first"], ["same"], ["other", "same"], ["same"]]
    try:
        results = busy_then_burst(batcher, enc, texts)
    finally:
        batcher.close()
    assert sorted(enc.batches[1]) == ["other", "same"]
    for group, got in zip(texts, results, strict=True):
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, FakeEmbedder().encode(group, query=True))


def test_a_failed_model_call_reaches_exactly_its_callers_and_the_worker_goes_on() -> None:
    enc = GatedEncoder(fail_on="poison")
    batcher = MicroBatcher(enc, window=0.005, max_batch=64)
    texts = [["healthy first"], ["x"], ["poison"], ["y"]]
    try:
        results = busy_then_burst(batcher, enc, texts)
        assert isinstance(results[0], np.ndarray)  # the first call ran alone and succeeded
        for got in results[1:]:  # the second call held "poison": all three of its callers hear of it
            assert isinstance(got, RuntimeError) and "poison" in str(got)
        np.testing.assert_array_equal(batcher.encode(["after"])[0], expected("after"))
    finally:
        batcher.close()


def test_wait_idle_holds_a_lone_text_for_company() -> None:
    calls: list[list[str]] = []

    def encode(texts: Sequence[str]) -> np.ndarray:
        calls.append(list(texts))
        return FakeEmbedder().encode(texts, query=True)

    # A window far longer than the test: the first text waits for the second, and the full batch goes at once.
    batcher = MicroBatcher(encode, window=60.0, max_batch=2, wait_idle=True)
    try:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(batcher.encode, ["alone"])
            until(lambda: batcher._queue.qsize() == 0, "the worker to take the first text")
            second = pool.submit(batcher.encode, ["company"])
            rows = first.result(WAIT), second.result(WAIT)
    finally:
        batcher.close()
    assert calls == [["alone", "company"]]
    np.testing.assert_array_equal(rows[1][0], expected("company"))


def test_close_fails_queued_callers_and_later_calls_instead_of_hanging() -> None:
    enc = GatedEncoder()
    batcher = MicroBatcher(enc, window=0.005, max_batch=1)
    with ThreadPoolExecutor(3) as pool:
        running = pool.submit(batcher.encode, ["running"])
        assert enc.entered.wait(WAIT)
        queued = pool.submit(batcher.encode, ["queued"])
        until(lambda: batcher._queue.qsize() == 1, "the second caller to queue")
        closing = pool.submit(batcher.close)
        until(lambda: batcher._closed, "close() to start")
        enc.release()
        closing.result(WAIT)
        np.testing.assert_array_equal(running.result(WAIT)[0], expected("running"))  # a running call finishes
        with pytest.raises(ModelUnavailable, match="shutting down"):
            queued.result(WAIT)
    with pytest.raises(ModelUnavailable, match="shutting down"):
        batcher.encode(["too late"])
    assert not batcher._worker.is_alive()


def test_a_window_of_zero_is_no_batcher() -> None:
    with pytest.raises(ValueError, match="window"):
        MicroBatcher(FakeEmbedder().encode, window=0)


CORPUS = {
    "en.txt": "Cats are small domestic animals.\n\nThey like to sleep in the sun for most of the day.\n",
    "ru.txt": "Кошки — маленькие домашние животные.\n\nБольшую часть дня они любят спать на солнце.\n",
    "de.txt": "Katzen sind kleine Haustiere.\n\nSie schlafen gern den größten Teil des Tages in der Sonne.\n",
}
QUERIES = [f"{w} {n}" for n in range(6) for w in ("sleeping cats", "кошки спят", "Katzen Sonne", "small animals")]


class CountingEmbedder(FakeEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def encode(self, texts: Sequence[str], *, query: bool, progress: bool = False) -> np.ndarray:
        self.calls += 1
        return super().encode(texts, query=query, progress=progress)


def fake_service(tmp_path: Path, batch_ms: float) -> tuple[SearchService, CountingEmbedder]:
    root = tmp_path / "corpus"
    root.mkdir(exist_ok=True)
    for name, text in CORPUS.items():
        (root / name).write_text(text, encoding="utf-8")
    settings = Settings(
        model="fake-model", index_dir=tmp_path / f"index-{batch_ms}", cache_dir=tmp_path / "cache",
        query_batch_ms=batch_ms,
    )  # fmt: skip
    embedder = CountingEmbedder()
    svc = SearchService(settings, embedder=embedder, detector=LanguageDetector(["en", "ru", "de"], preload=False))
    svc.build([root])
    svc.load()
    embedder.calls = 0
    return svc, embedder


def hits_of(svc: SearchService, query: str) -> list[tuple[str, float]]:
    return [(h.passage.passage_id, round(h.score, 5)) for h in svc.search(SearchQuery(query, k=5, highlight=True)).hits]


def test_service_concurrent_searches_match_sequential_ones_with_and_without_batching(tmp_path: Path) -> None:
    sequential_svc, _ = fake_service(tmp_path, 0)
    sequential = {q: hits_of(sequential_svc, q) for q in QUERIES}
    assert sequential_svc.encoder._batcher is None  # a window of 0 never starts a worker

    for batch_ms in (0, 5.0):
        svc, embedder = fake_service(tmp_path, batch_ms)
        with ThreadPoolExecutor(8) as pool:
            concurrent = dict(zip(QUERIES, pool.map(lambda q, s=svc: hits_of(s, q), QUERIES), strict=True))
        assert concurrent == sequential
        assert embedder.calls >= 1
        assert (svc.encoder._batcher is not None) == (batch_ms > 0)
        svc.close()
        assert svc.encoder._batcher is None
        assert hits_of(svc, QUERIES[0]) == sequential[QUERIES[0]]  # a search after close() starts a new worker
        svc.close()


@pytest.mark.model
def test_concurrent_http_searches_return_the_same_hits_as_sequential_ones(service, server_url: str) -> None:  # type: ignore[no-untyped-def]
    """Queries the server has not seen, sent at once (so their encodes share model calls), against the same
    queries searched one by one in this process on the same index. Batched encoding pads queries to a common
    length, so scores may differ in the last digits; the hits may not."""
    queries = [
        "Who wrote the report?", "Кто написал отчёт?", "谁写了这份报告?", "weather forecast tomorrow",
        "economic growth", "football match result", "Wer hat gewonnen?", "¿Quién ganó las elecciones?",
        "election results", "new phones", "climate change effects", "oil prices rise",
    ]  # fmt: skip
    sequential = {q: service.search(SearchQuery(q, k=5, mode="dense")).hits for q in queries}

    def over_http(q: str) -> list[dict[str, object]]:
        with httpx.Client(base_url=server_url, timeout=120) as http:
            r = http.get("/search", params={"q": q, "k": 5, "mode": "dense"})
        assert r.status_code == 200, r.text
        hits: list[dict[str, object]] = r.json()["hits"]
        return hits

    with ThreadPoolExecutor(len(queries)) as pool:
        concurrent = dict(zip(queries, pool.map(over_http, queries), strict=True))

    for q in queries:
        got = {str(h["passage_id"]): h["score"] for h in concurrent[q]}
        want = {h.passage.passage_id: pytest.approx(h.score, abs=1e-4) for h in sequential[q]}
        assert got == want, q
