"""Segments (`search/index/segments.py`, `search/index/store.py`): writes add a small segment or tombstones and link
the rest, searches see every segment as one index, merges purge deletions and keep results, and a corpus written
article by article equals, after `search compact`, the same corpus built at once.

The fake embedder stands in for the model: plumbing, not ranking quality.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from search.errors import BadInput, NotFound
from search.index.segments import commit_merge, prepare_merge
from search.index.store import Store, current_build, read_manifest
from search.ingest.language import LanguageDetector
from search.records import Article, SearchQuery
from search.service import SearchService
from tests.helpers import jsonl, make_service, write

TOPICS = ["cats", "dogs", "birds", "fish", "horses", "mice", "owls", "frogs", "bees", "goats", "ducks", "crows"]


def article(i: int, version: int = 0) -> Article:
    topic = TOPICS[i % len(TOPICS)]
    paragraphs = [
        f"{topic.title()} number {i} live near the river and eat seeds in spring (version {version}).",
        f"The {topic} of story {i} travel far in winter, and people watch them from the hills.",
        f"Scientists counted {i * 7} {topic} last year in the northern valley.",
    ]
    return Article(f"a{i:02d}.txt", f"About {topic} {i}", "\n\n".join(paragraphs), "api", {"n": i})


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector(["en", "ru"], preload=False)


def service(tmp: Path, detector: LanguageDetector, first: int = 4, **overrides: object) -> SearchService:
    """An index of articles 0..first-1 built at once."""
    corpus = tmp / "corpus"
    corpus.mkdir(parents=True)
    for i in range(first):
        a = article(i)
        (corpus / a.id).write_text(a.text, encoding="utf-8")
    overrides = {"refresh_share": 100.0, **overrides}  # merges keep the means (a test of the refresh sets it)
    svc = make_service(tmp, detector, watch_seconds=0, **overrides)
    svc.build([corpus])
    svc.load()
    return svc


def ranked(svc: SearchService, query: str, mode: str = "dense", k: int = 10) -> list[str]:
    return [h.passage.passage_id for h in svc.search(SearchQuery(query, k=k, mode=mode)).hits]  # type: ignore[arg-type]


def test_an_upsert_adds_one_segment_and_links_the_rest(tmp_path: Path, detector: LanguageDetector) -> None:
    svc = service(tmp_path, detector, merges="off")
    before = svc.store
    base_files = {name: (before.folder / name).stat().st_ino for name in before.files}
    summary = svc.upsert_article(article(10))
    store = svc.store
    assert [s["passages"] for s in svc.health()["segments"]] == [before.size, 3]
    assert summary.articles == 5 and summary.passages == before.size + 3 and summary.embedded == 3
    # The base segment's files are the same inodes: nothing was rewritten.
    same = [(store.folder / name).stat().st_ino == ino for name, ino in base_files.items() if name != "manifest.json"]
    assert all(same)
    # the segment already loaded is taken over, not read again
    assert store.segments[0].index is before.segments[0].index
    hits = svc.search(SearchQuery("ducks number 10 live near the river", k=3, mode="hybrid")).hits
    assert hits[0].passage.article_id == "a10.txt"
    assert {a.article_id for a in svc.articles()} == {"a00.txt", "a01.txt", "a02.txt", "a03.txt", "a10.txt"}


def test_a_replaced_article_leaves_only_its_new_version(tmp_path: Path, detector: LanguageDetector) -> None:
    svc = service(tmp_path, detector, merges="off")
    old = {p.passage_id: p for p in svc.store.all_passages() if p.article_id == "a01.txt"}
    svc.upsert_article(article(1, version=1))
    store = svc.store
    now = [p for p in store.all_passages() if p.article_id == "a01.txt"]
    assert len(now) == 3 and store.size == 12 and len(store.all_passages()) == 12
    kept = set(old) & {p.passage_id for p in now}  # the two unchanged paragraphs keep their ids
    assert len(kept) == 2
    changed = next(pid for pid in old if pid not in kept)
    with pytest.raises(NotFound):
        svc.passage(changed)
    for pid in kept:  # found in the new segment, once
        assert store.row_of(pid) >= store.offsets[1]
    found = ranked(svc, "Dogs number 1 live near the river and eat seeds in spring", k=12)
    assert changed not in found and len(found) == len(set(found)) == 12
    ids = [h.passage.article_id for h in svc.search(SearchQuery("dogs", k=12, mode="lexical")).hits]
    assert ids.count("a01.txt") <= 3
    assert svc.store.article_rows("a01.txt").tolist() == [store.offsets[1] + r for r in range(3)]


def test_a_delete_is_a_tombstone_and_every_read_skips_it(tmp_path: Path, detector: LanguageDetector) -> None:
    svc = service(tmp_path, detector, merges="off")
    gone = [p.passage_id for p in svc.store.all_passages() if p.article_id == "a02.txt"]
    summary = svc.remove_articles(["a02.txt"])
    store = svc.store
    assert summary.removed == 3 and summary.articles == 3 and store.size == 9
    assert read_manifest(svc.settings.index_dir)[1]["tombstones"] == {store.entries[0]["id"]: ["a02.txt"]}
    assert "a02.txt" not in {a.article_id for a in svc.articles()} and "a02.txt" not in {
        a.id for a in store.all_articles()
    }
    for mode in ("dense", "lexical", "hybrid"):
        hits = svc.search(SearchQuery("birds number 2 live near the river", k=20, mode=mode)).hits  # type: ignore[arg-type]
        assert not {h.passage.passage_id for h in hits} & set(gone)
    filtered = svc.search(SearchQuery("birds", k=20, mode="dense", articles=["a02.txt", "a03.txt"])).hits
    assert {h.passage.article_id for h in filtered} == {"a03.txt"}
    with pytest.raises(NotFound):
        svc.passage(gone[0])
    with pytest.raises(NotFound):
        store.article_rows("a02.txt")
    with pytest.raises(NotFound):
        svc.remove_articles(["a02.txt"])


def test_merges_purge_deletions_and_keep_dense_results(tmp_path: Path, detector: LanguageDetector) -> None:
    svc = service(tmp_path, detector, merges="off", merge_factor=3)
    for i in (10, 11):
        svc.upsert_article(article(i))
    svc.upsert_article(article(11, version=2))  # replaces a11: its first segment is mostly deleted
    svc.remove_articles(["a00.txt"])
    assert len(svc.store.segments) == 4
    queries = ["fish in the northern valley", "people watch them from the hills", "seeds in spring"]
    before = {q: ranked(svc, q) for q in queries}
    assert svc.merge() >= 1
    store = svc.store
    # one segment per tier at most, and every deleted row gone but those of segments left alone
    assert len(store.segments) < 4 and store.size == 5 * 3
    assert sum(store.dead_counts) == 0 or all(n < 3 for n in store.dead_counts[1:])
    assert {q: ranked(svc, q) for q in queries} == before
    assert sorted(a.article_id for a in svc.articles()) == ["a01.txt", "a02.txt", "a03.txt", "a10.txt", "a11.txt"]


def test_deletions_during_a_merge_are_carried_over(tmp_path: Path, detector: LanguageDetector) -> None:
    svc = service(tmp_path, detector, merges="off")
    for i in (10, 11, 12):
        svc.upsert_article(article(i))
    store = svc.store
    ids = [e["id"] for e in store.entries[1:]]
    s = svc.settings
    prepared, start = prepare_merge(
        s.index_dir, store, ids, options=svc._vector_index_options(), zh_tokenizer=s.zh_tokenizer
    )
    svc.remove_articles(["a11.txt"])  # while the merged segment is written
    svc.upsert_article(article(13))
    assert commit_merge(s.index_dir, svc.store, prepared, start) is not None
    svc.reload()
    store = svc.store
    assert len(store.segments) == 3  # the base, a13's, and the merged one
    assert sorted(a.article_id for a in svc.articles()) == [
        "a00.txt",
        "a01.txt",
        "a02.txt",
        "a03.txt",
        "a10.txt",
        "a12.txt",
        "a13.txt",
    ]
    assert store.size == 7 * 3 and read_manifest(s.index_dir)[1]["counts"]["passages"] == 21
    assert "a11.txt" not in {h.passage.article_id for h in svc.search(SearchQuery("mice number 11", k=30)).hits}


def test_a_merge_whose_segments_were_compacted_away_is_dropped(tmp_path: Path, detector: LanguageDetector) -> None:
    svc = service(tmp_path, detector, merges="off")
    svc.upsert_article(article(10))
    store = svc.store
    s = svc.settings
    prepared, start = prepare_merge(s.index_dir, store, [store.entries[1]["id"]], options=svc._vector_index_options(),
                                    zh_tokenizer=s.zh_tokenizer)  # fmt: skip
    svc.compact()
    published = current_build(s.index_dir)
    assert commit_merge(s.index_dir, svc.store, prepared, start) is None
    assert current_build(s.index_dir) == published and prepared is not None and not prepared.folder.exists()


def test_written_one_by_one_then_compacted_equals_built_at_once(tmp_path: Path, detector: LanguageDetector) -> None:
    one = service(tmp_path / "one", detector, first=1, merge_factor=3)
    for i in range(1, 9):
        one.upsert_article(article(i))
    one.upsert_article(article(3, version=0))  # unchanged text: the same passages again
    one.remove_articles(["a05.txt"])
    one.upsert_article(article(5))
    one.compact()
    assert len(one.store.segments) == 1
    # The same corpus in one file, articles in the order the index holds them (ties between equal BM25 scores
    # follow that order, in any build)
    corpus = write(
        tmp_path / "all" / "corpus.jsonl", jsonl(*({"id": a.id, "text": a.text} for a in one.store.all_articles()))
    )
    at_once = make_service(tmp_path / "all", detector, watch_seconds=0)
    at_once.build([corpus])
    assert sorted(a.text for a in at_once.store.all_articles()) == sorted(article(i).text for i in range(9))
    a, b = one.store, at_once.store
    assert sorted(p.passage_id for p in a.all_passages()) == sorted(p.passage_id for p in b.all_passages())
    for q in ["fish in the northern valley", "people watch them from the hills", "seeds in spring", "owls 6"]:
        for mode in ("dense", "hybrid"):
            assert ranked(one, q, mode) == ranked(at_once, q, mode), (q, mode)


def test_the_background_merge_leaves_searches_and_writes_working(tmp_path: Path, detector: LanguageDetector) -> None:
    svc = service(tmp_path, detector, merge_factor=2)
    svc.background_merges = True
    for i in range(10, 16):
        svc.upsert_article(article(i))
        assert svc.search(SearchQuery(f"number {i}", k=3, mode="lexical")).hits
    svc.wait_for_merges(60)
    svc.reload()
    store = svc.store
    assert sorted(a.article_id for a in svc.articles()) == [f"a{i:02d}.txt" for i in (0, 1, 2, 3, *range(10, 16))]
    assert store.size == 30 and len(store.segments) <= 4


def test_a_segmented_build_is_served_from_its_snapshot_and_reported(tmp_path: Path, detector: LanguageDetector) -> None:
    svc = service(tmp_path, detector, merges="off")
    svc.upsert_article(article(10))
    svc.remove_articles(["a01.txt"])
    summary = svc.snapshot(tmp_path / "snap")
    assert summary.linked == summary.files
    copy = Store(*read_manifest(tmp_path / "snap"))
    assert copy.size == svc.store.size == 12 and len(copy.segments) == 2
    assert [p.passage_id for p in copy.all_passages()] == [p.passage_id for p in svc.store.all_passages()]
    rows = copy.live_rows()
    np.testing.assert_allclose(copy.vectors_at(rows), svc.store.vectors_at(rows), atol=1e-6)


def test_a_failed_write_publishes_nothing_and_leaves_no_segment(
    tmp_path: Path, detector: LanguageDetector, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = service(tmp_path, detector, merges="off")
    published = current_build(svc.settings.index_dir)

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("search.index.segments.publish", fail)
    with pytest.raises(OSError):
        svc.upsert_article(article(10))
    assert current_build(svc.settings.index_dir) == published
    builds = svc.settings.index_dir / "builds"
    assert [p.name for p in builds.iterdir() if p.name.startswith(".")] == []
    assert os.path.isdir(builds / published.name)


def test_a_merge_becomes_a_compaction_when_writes_outgrow_the_means(tmp_path: Path, detector: LanguageDetector) -> None:
    svc = service(tmp_path, detector, merges="off", merge_factor=2, refresh_share=0.3)
    svc.upsert_article(article(10))  # 3 of 15 passages written since the means were fit: 20%
    assert read_manifest(svc.settings.index_dir)[1]["written_since_fit"] == 3
    svc.upsert_article(article(11))  # 6 of 18: a merge is due, and it refits
    assert svc.merge() == 1
    store = svc.store
    assert len(store.segments) == 1 and store.size == 18 and "written_since_fit" not in store.manifest
    # the means are now those of every passage
    raw = np.asarray(store.raw_vectors(), dtype=np.float32)
    np.testing.assert_allclose(store.centering.global_mean, raw.mean(axis=0), atol=1e-3)


def test_search_index_of_a_changed_corpus_writes_only_the_change(tmp_path: Path, detector: LanguageDetector) -> None:
    svc = service(tmp_path, detector, first=8, merges="off")
    corpus = tmp_path / "corpus"
    first = svc.store.build_id
    unchanged = svc.build([corpus])  # nothing changed: nothing published
    assert unchanged.build_id == first and unchanged.embedded == 0 and unchanged.reused == 24
    (corpus / "a01.txt").write_text(article(1, version=3).text, encoding="utf-8")
    (corpus / "a02.txt").unlink()
    (corpus / "a10.txt").write_text(article(10).text, encoding="utf-8")
    summary = svc.build([corpus])
    svc.reload()
    store = svc.store
    assert len(store.segments) == 2 and store.segments[1].size == 6  # a01's new version and a10
    assert summary.embedded == 4 and summary.reused == 2 + 6 * 3 and summary.removed == 1 + 3
    assert summary.articles == 8 and summary.passages == store.size == 24
    assert sorted(a.article_id for a in svc.articles()) == [f"a{i:02d}.txt" for i in (0, 1, 3, 4, 5, 6, 7, 10)]
    assert svc.build([corpus], full=True).build_id != store.build_id
    svc.reload()
    assert len(svc.store.segments) == 1 and svc.store.size == 24


def test_search_index_with_other_settings_is_a_full_build(tmp_path: Path, detector: LanguageDetector) -> None:
    svc = service(tmp_path, detector, merges="off")
    (tmp_path / "corpus" / "a10.txt").write_text(article(10).text, encoding="utf-8")
    other = make_service(tmp_path, detector, watch_seconds=0, zh_tokenizer="bigram")
    other.build([tmp_path / "corpus"])
    other.load()
    assert len(other.store.segments) == 1 and other.store.manifest["lexical"]["zh_tokenizer"] == "bigram"
    assert svc.settings.zh_tokenizer == "jieba"


def test_a_store_outlives_its_pruned_build_folder(tmp_path: Path, detector: LanguageDetector) -> None:
    import threading

    svc = service(tmp_path, detector, merges="off")
    held = svc.store
    svc.upsert_article(article(10))
    svc.upsert_article(article(11))  # publishing prunes every build but the current one and the one it replaced
    assert not held.folder.exists()
    found: list[object] = []
    reader = threading.Thread(target=lambda: found.append(held.passages_at([0, 5])))  # a thread with no connection
    reader.start()
    reader.join()
    assert sorted(found[0]) == [0, 5]  # type: ignore[call-overload]
    assert held.search(held.vectors_at([3])[0], 1)[0][0] == 3 and len(held.all_passages()) == 12


def test_removing_every_live_article_across_segments_is_refused(tmp_path: Path, detector: LanguageDetector) -> None:
    svc = service(tmp_path, detector, first=3, merges="off")
    svc.upsert_article(article(1, version=1))  # a01 now lives in the new segment, its old version is a tombstone
    svc.upsert_article(article(5))
    svc.remove_articles(["a00.txt"])
    before = svc.store.build_id
    with pytest.raises(BadInput, match="empty index"):
        svc.remove_articles(["a01.txt", "a02.txt", "a05.txt"])
    assert svc.store.build_id == before
    svc.remove_articles(["a01.txt", "a02.txt"])
    assert [a.article_id for a in svc.articles()] == ["a05.txt"]


def test_a_language_on_the_global_mean_is_refit_at_its_first_write(tmp_path: Path, detector: LanguageDetector) -> None:
    # The fake model has no mean bank: a new language has neither a mean of its own nor a borrowed one.
    svc = service(tmp_path, detector, merges="inline", centering_min_passages=2)
    ru = Article("ru.txt", "Реки", "Реки текут на север.\n\nЛюди смотрят на реки с холмов.\n\nРыбы живут в реках.")
    svc.upsert_article(ru)  # no merge is due (two segments), yet the means are refit at once
    store = svc.store
    assert len(store.segments) == 1 and "ru" in store.centering.means
    assert "written_since_fit" not in store.manifest


def test_an_english_write_waits_for_a_due_merge(tmp_path: Path, detector: LanguageDetector) -> None:
    svc = service(tmp_path, detector, merges="inline", centering_min_passages=2)
    svc.upsert_article(article(10))
    assert len(svc.store.segments) == 2 and svc.store.manifest["written_since_fit"] == 3


def test_a_young_language_mean_is_refit_each_time_the_language_doubles(
    tmp_path: Path, detector: LanguageDetector
) -> None:
    svc = service(tmp_path, detector, merges="inline", centering_min_passages=2)
    topics = ["Реки", "Горы", "Леса", "Поля", "Озёра", "Моря", "Степи"]

    def ru(i: int) -> Article:
        t = topics[i]
        return Article(f"ru{i}.txt", t, f"{t} видны с холмов.\n\nЛюди смотрят на {t.lower()} утром.\n\n{t} есть везде.")

    def fitted() -> int:
        return int(svc.store.manifest["centering_fit"]["languages"].get("ru", 0))

    def live() -> int:
        return int(svc.store.manifest["counts"]["languages"].get("ru", 0))

    svc.upsert_article(ru(0))  # on the global mean: refit at once
    assert fitted() == live() > 0 and len(svc.store.segments) == 1
    refits = 0
    for i in range(1, 7):
        before = fitted()
        svc.upsert_article(ru(i))
        if live() >= 2 * before:  # doubled: refit on all of them
            assert fitted() == live() and len(svc.store.segments) == 1
            refits += 1
        else:  # waits (for doubling, or a due merge)
            assert fitted() == before and len(svc.store.segments) > 1
    assert refits >= 2
