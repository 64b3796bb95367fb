"""The product's vector index above the flat crossover (lowered here): kind, tuning, filters, raw vectors, old builds.

A few hundred generated passages with the fake embedder: plumbing, not ranking quality. Every approximate result
is compared with an exact (flat) build of the same corpus.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from search.config import Settings
from search.errors import BadInput
from search.index import vectors as vi
from search.index.store import MANIFEST, RAW, current_build, file_sha256
from search.ingest.language import LanguageDetector
from search.records import Hit, SearchQuery
from search.reports.run import centered_vectors
from search.serve.app import create_app
from search.service import SearchService
from tests.fakes import FakeEmbedder

WORDS = {
    "en": "river mountain city garden winter summer library market station bridge forest music history science "
    "painting harbour village castle island desert ocean railway festival museum theatre kitchen".split(),
    "de": "Fluss Berg Stadt Garten Winter Sommer Bibliothek Markt Bahnhof Brücke Wald Musik Geschichte Wissenschaft "
    "Gemälde Hafen Dorf Schloss Insel Wüste Ozean Eisenbahn Fest Museum Theater Küche".split(),
    "ru": "река гора город сад зима лето библиотека рынок вокзал мост лес музыка история наука картина гавань "
    "деревня замок остров пустыня океан железная праздник музей театр кухня".split(),
}
GLUE = {"en": "the old and new", "de": "der alte und neue", "ru": "старый и новый"}
ARTICLES, PARAGRAPHS = 30, 10
FLAT_MAX = 50


def write_corpus(root: Path) -> Path:
    """ARTICLES articles of PARAGRAPHS short paragraphs each (one passage per paragraph), a third per language."""
    rng = np.random.default_rng(7)
    root.mkdir()
    for a in range(ARTICLES):
        lang = list(WORDS)[a % 3]
        paragraphs = [
            f"{GLUE[lang]} " + " ".join(rng.choice(WORDS[lang], size=int(rng.integers(6, 10)))) + f" {a} {p}."
            for p in range(PARAGRAPHS)
        ]
        (root / f"{lang}-{a:02d}.txt").write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("scale") / "corpus")


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector(["en", "de", "ru"], preload=False)


def built(root: Path, corpus: Path, detector: LanguageDetector, **settings: object) -> SearchService:
    svc = SearchService(
        Settings(model="fake-model", index_dir=root / "index", cache_dir=root / "cache", **settings),
        embedder=FakeEmbedder(),
        detector=detector,
    )
    svc.build([corpus])
    svc.load()
    return svc


@pytest.fixture(scope="module")
def flat(tmp_path_factory: pytest.TempPathFactory, corpus: Path, detector: LanguageDetector) -> SearchService:
    return built(tmp_path_factory.mktemp("flat"), corpus, detector)


# hnsw_sq8 is the plan just above flat_max; a memory budget too small for it (~324 B/vector) gives ivf_pq_sq8.
KINDS = {"hnsw_sq8": {}, "ivf_pq_sq8": {"memory_budget_mb": 0.06}}


@pytest.fixture(scope="module", params=list(KINDS))
def approx(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, corpus: Path, detector: LanguageDetector
) -> SearchService:
    kind = request.param
    svc = built(tmp_path_factory.mktemp(kind), corpus, detector, flat_max=FLAT_MAX, **KINDS[kind])
    assert svc.store.vector_index["kind"] == kind
    return svc


def ids(hits: list[Hit]) -> list[str]:
    return [h.passage.passage_id for h in hits]


def test_the_default_crossover_is_the_measured_one() -> None:
    assert Settings().flat_max == vi.FLAT_MAX and Settings().target_recall == 0.95


def test_a_small_index_stays_exact(flat: SearchService) -> None:
    entry = flat.health()["vector_index"]
    assert flat.store.size == ARTICLES * PARAGRAPHS < vi.FLAT_MAX
    assert entry["kind"] == "flat" and entry["exact"] is True and entry["recall_at_10"] == 1.0
    assert flat.store.manifest["index"]["type"] == "IndexIDMap2(IndexFlatIP)"


def test_too_few_passages_to_tune_on_stay_exact_whatever_flat_max(tmp_path: Path, detector: LanguageDetector) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Cats sleep in the sun.\n\nDogs bark at strangers.\n", encoding="utf-8")
    svc = built(tmp_path, corpus, detector, flat_max=0)
    assert svc.store.size == 2 < vi.APPROX_MIN and svc.health()["vector_index"]["kind"] == "flat"
    assert svc.search(SearchQuery("Dogs bark at strangers.", k=1, mode="dense")).hits[0].passage.text.startswith("Dogs")


def test_above_flat_max_the_approximate_index_is_tuned_and_recorded(approx: SearchService) -> None:
    store = approx.store
    entry = store.manifest["vector_index"]
    kind = entry["kind"]
    assert kind in KINDS and vi.kind_of(store.segments[0].index) == kind and entry["exact"] is False
    tuned = {"efSearch", "M"} if kind == "hnsw_sq8" else {"nprobe", "k_factor", "nlist", "pq_m"}
    assert tuned <= entry["params"].keys()
    assert entry["target_recall"] == 0.95 and entry["recall_at_10"] >= 0.95
    # Tuned on query-prompted probes (the opening of every passage here: fewer than 1000), not held-out passages.
    assert entry["tune_queries"] == store.size and entry["tuned_on"].startswith("opening sentences of 300 sampled")
    assert entry["bytes_per_vector"] > 0
    assert approx.health()["vector_index"] == entry
    with TestClient(create_app(service=approx)) as client:
        shown = client.get("/health").json()["vector_index"]
    assert shown["kind"] == kind and shown["params"] == entry["params"] and shown["recall_at_10"] >= 0.95
    assert shown["bytes_per_vector"] == entry["bytes_per_vector"]


def test_raw_vectors_are_float16_on_disk_and_memory_mapped(approx: SearchService, flat: SearchService) -> None:
    folder = approx.store.folder
    assert (folder / RAW).is_file() and not (folder / "raw.npy").exists()
    on_disk = np.load(folder / RAW)
    assert on_disk.dtype == np.float16 and on_disk.shape == (approx.store.size, FakeEmbedder.dimension)
    raw = approx.store.raw_vectors()
    assert isinstance(raw, np.memmap) and raw.dtype == np.float16
    # The same texts through the same embedder: float16 keeps them to ~1e-3, enough to rebuild the index.
    np.testing.assert_allclose(raw.astype(np.float32), flat.store.raw_vectors().astype(np.float32), atol=2e-3)
    # vectors_at re-centers them (the approximate index holds only codes): close to the exact index's vectors.
    rows = np.arange(0, approx.store.size, 37)
    np.testing.assert_allclose(approx.store.vectors_at(rows), flat.store.vectors_at(rows), atol=5e-3)
    # and so does the report, which reads every vector
    np.testing.assert_allclose(centered_vectors(approx.store, rows), centered_vectors(flat.store, rows), atol=5e-3)


def test_searches_find_what_exact_search_finds(approx: SearchService, flat: SearchService) -> None:
    passages = flat.store.all_passages()[::13]
    overlap = []
    for p in passages:
        q = SearchQuery(p.text, k=10, mode="dense")
        got, want = ids(approx.search(q).hits), ids(flat.search(q).hits)
        assert got[0] == want[0] == p.passage_id  # a passage's own text finds it first
        overlap.append(len(set(got) & set(want)) / len(want))
    assert np.mean(overlap) >= 0.9


@pytest.mark.parametrize("path", ["exact subset", "filtered search"])
def test_filters_give_the_right_passages(
    path: str, approx: SearchService, flat: SearchService, monkeypatch: pytest.MonkeyPatch
) -> None:
    if path == "filtered search":  # every filter of this small index is below exact_subset_max: force the other path
        monkeypatch.setattr(vi, "exact_subset_max", lambda n: 0)
    passages = flat.store.all_passages()
    article = passages[123].article_id
    for p in passages[5::41]:
        for filters in ({"langs": ["ru"]}, {"langs": ["en", "de"]}, {"articles": [article, p.article_id]}):
            q = SearchQuery(p.text, k=5, mode="dense", **filters)  # type: ignore[arg-type]
            got, want = approx.search(q).hits, flat.search(q).hits
            assert len(got) == len(want) == 5
            if "langs" in filters:
                assert {h.passage.lang for h in got} <= set(filters["langs"])
            else:
                assert {h.passage.article_id for h in got} <= set(filters["articles"])
            assert got[0].passage.passage_id == want[0].passage.passage_id
            assert len(set(ids(got)) & set(ids(want))) >= 4


def test_more_like_this_uses_the_re_centered_raw_vectors(approx: SearchService, flat: SearchService) -> None:
    p = flat.store.all_passages()[42]
    got, want = approx.similar_passages(p.passage_id, k=5), flat.similar_passages(p.passage_id, k=5)
    assert got[0].passage.passage_id == want[0].passage.passage_id
    assert all(h.passage.article_id != p.article_id for h in got)


def test_a_memory_budget_too_small_fails_before_anything_is_published(
    tmp_path: Path, corpus: Path, detector: LanguageDetector, flat: SearchService
) -> None:
    index = tmp_path / "index"
    shutil.copytree(flat.settings.index_dir, index, symlinks=True)
    served = current_build(index)
    svc = SearchService(
        flat.settings.model_copy(update={"index_dir": index, "flat_max": FLAT_MAX, "memory_budget_mb": 0.001}),
        embedder=FakeEmbedder(),
        detector=detector,
    )
    with pytest.raises(BadInput, match="raise the memory budget"):
        svc.build([corpus])
    assert current_build(index) == served
    assert not [p for p in (index / "builds").iterdir() if p.name.startswith(".tmp")]


def test_a_build_from_before_the_vector_index_entry_still_loads_and_searches(
    tmp_path: Path, flat: SearchService, detector: LanguageDetector
) -> None:
    """Made as the previous version wrote it: float32 raw.npy, no `vector_index` or `raw_vectors` in the manifest."""
    index = tmp_path / "index"
    shutil.copytree(flat.settings.index_dir, index, symlinks=True)
    folder = current_build(index)
    assert folder is not None
    np.save(folder / "raw.npy", np.load(folder / RAW).astype(np.float32))
    (folder / RAW).unlink()
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    for key in ("vector_index", "raw_vectors"):
        del manifest[key]
    manifest["files"] = {
        str(f.relative_to(folder)): file_sha256(f)
        for f in sorted(folder.rglob("*"))
        if f.is_file() and f.name != MANIFEST
    }
    (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")

    old = SearchService(flat.settings.model_copy(update={"index_dir": index}), FakeEmbedder(), detector)
    store = old.load()
    entry = old.health()["vector_index"]
    assert entry["kind"] == "flat" and entry["exact"] is True and entry["params"] == {}
    assert entry["recall_at_10"] == 1.0 and entry["bytes_per_vector"] > 4 * FakeEmbedder.dimension
    assert store.raw_vectors().dtype == np.float32
    p = store.all_passages()[17]
    q = SearchQuery(p.text, k=5, mode="dense", langs=[p.lang])
    assert ids(old.search(q).hits) == ids(flat.search(q).hits)
    assert ids(old.similar_passages(p.passage_id, k=5)) == ids(flat.similar_passages(p.passage_id, k=5))


@pytest.mark.model
def test_the_server_reports_its_vector_index(server_url: str) -> None:
    entry = httpx.get(f"{server_url}/health", timeout=10).json()["vector_index"]
    assert entry["kind"] == "flat" and entry["exact"] is True and entry["recall_at_10"] == 1.0
    assert entry["type"] == "IndexIDMap2(IndexFlatIP)" and entry["bytes_per_vector"] > 4 * 384
