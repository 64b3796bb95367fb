"""Ray as an optional engine, on a real two-node cluster on this machine: a build with --ray equals the local build
(also when a worker is killed mid-build), a report with --ray equals the local report, parallel IVF adds equal a
single process's, and without --ray Ray is never imported."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest
import ray  # the cluster extra (make install installs it): missing, this file fails rather than skips

from benchmarks.xquad import load, write_jsonl
from search.config import Settings
from search.index.build import build_index
from search.index.distributed import embed_on_ray, parallel_adder
from search.index.vectors import build_vector_index, default_plan, recall_at_k
from search.ingest.language import LanguageDetector
from search.records import SearchQuery
from search.reports.run import ReportOptions
from search.service import SearchService
from tests.fakes import FakeEmbedder, KilledOnce
from tests.helpers import SEEDS, main_in_process, write

# Ray's node start-up leaves a socket of its free-port probe unclosed; Python reports it when the socket is collected,
# in whichever test runs then. Not ours to close.
# Ray Data's DataContext warns at its creation about its own deprecated defaults.
pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*"),
]

LANGS = ("en", "zh")
PARAGRAPHS = 20  # per language: 40 articles
QUESTIONS = 40
TIE = 1e-4


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A head and a second node, one CPU each, joined by this process (so the code's `connect` finds it joined)."""
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    ray.init(address=c.address, include_dashboard=False, log_to_driver=False)
    gc.collect()  # the unclosed probe socket is reported now, under this module's filter, not at the session's end
    try:
        yield c.address
    finally:
        ray.shutdown()
        c.shutdown()
        gc.collect()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """XQuAD paragraphs in en and zh as articles, and questions about them."""
    xq = load(LANGS, limit=PARAGRAPHS)
    path = write_jsonl([p for lang in LANGS for p in xq.paragraphs[lang]], tmp_path_factory.mktemp("xq") / "xq.jsonl")
    questions = [q.text for lang in LANGS for q in xq.questions[lang]][:: max(1, 2 * PARAGRAPHS // QUESTIONS)]
    return path, questions[:QUESTIONS]


@pytest.fixture(scope="module")
def local(corpus: tuple[Path, list[str]], tmp_path_factory: pytest.TempPathFactory) -> SearchService:
    svc = SearchService(Settings(index_dir=tmp_path_factory.mktemp("local")))
    svc.build([corpus[0]])
    svc.load()
    return svc


def _same_build(a: SearchService, b: SearchService, questions: list[str]) -> None:
    """Same passages (ids, text, order), vectors within cosine 0.9999, the same dense top 10 for every question."""
    sa, sb = a.load(), b.load()
    pa, pb = sa.all_passages(), sb.all_passages()
    assert [(p.passage_id, p.text) for p in pa] == [(p.passage_id, p.text) for p in pb]
    ra, rb = np.asarray(sa.raw_vectors(), dtype=np.float32), np.asarray(sb.raw_vectors(), dtype=np.float32)
    cosine = np.sum(ra * rb, axis=1) / (np.linalg.norm(ra, axis=1) * np.linalg.norm(rb, axis=1))
    assert cosine.min() >= 0.9999
    queries = [SearchQuery(q, k=10, mode="dense") for q in questions]
    for ra_, rb_ in zip(a.search_many(queries), b.search_many(queries), strict=True):
        assert len(ra_.hits) == len(rb_.hits) == 10
        for ha, hb in zip(ra_.hits, rb_.hits, strict=True):
            # The same passage at every rank, but for near ties: vectors computed in batches of another make-up
            # (Ray's batches, one thread per actor) differ in the 7th digit, which may swap two passages that
            # score the same to 1e-4.
            assert ha.passage.passage_id == hb.passage.passage_id or abs(ha.score - hb.score) < TIE, (ha, hb)
    same = sum(
        [h.passage.passage_id for h in x.hits] == [h.passage.passage_id for h in y.hits]
        for x, y in zip(a.search_many(queries), b.search_many(queries), strict=True)
    )
    assert same >= len(queries) - 2  # ties are rare: at most a couple of questions


@pytest.mark.model
def test_a_build_on_ray_equals_the_local_build(
    cluster: str, corpus: tuple[Path, list[str]], local: SearchService, tmp_path: Path
) -> None:
    settings = Settings(index_dir=tmp_path / "index", ray_address=cluster, ray_concurrency=2, ray_batch_size=8)
    on_ray = SearchService(settings, embedder=local.embedder, detector=local.detector)
    summary = on_ray.build([corpus[0]])
    # Nothing came from a cache: every passage went through the actors.
    assert summary.embedded == summary.passages == local.load().size and summary.reused == 0
    _same_build(local, on_ray, corpus[1])


@pytest.mark.model
def test_a_worker_killed_mid_build_is_retried_and_the_build_still_equals_the_local_one(
    cluster: str, corpus: tuple[Path, list[str]], local: SearchService, tmp_path: Path
) -> None:
    marker = tmp_path / "killed.pid"
    settings = Settings(index_dir=tmp_path / "index", ray_address=cluster, ray_concurrency=2, ray_batch_size=8)
    dim = local.embedder.dimension

    def encode(texts: Any) -> np.ndarray:
        return embed_on_ray(texts, settings, dim, factory=KilledOnce(marker))

    build_index([corpus[0]], settings.index_dir, local.embedder, local.detector, bank=local.mean_bank, encode=encode)
    assert marker.read_text().strip().isdigit()  # an actor did die (by SIGKILL, in its first batch)
    _same_build(local, SearchService(settings, embedder=local.embedder, detector=local.detector), corpus[1])


@pytest.mark.model
def test_a_report_on_ray_equals_the_local_report(cluster: str, local: SearchService, tmp_path: Path) -> None:
    options = ReportOptions(batch_size=16)  # several query blocks, so several tasks on both nodes
    local.report(options, tmp_path / "local")
    summary = local.report(options, tmp_path / "ray", ray=cluster)
    assert summary.passages == local.load().size
    for name in ("pairs.csv", "groups.json", "articles.csv"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    assert sum(1 for _ in (tmp_path / "local" / "pairs.csv").open()) > 1  # the report found pairs to compare


def test_parallel_ivf_adds_equal_a_single_process_add(cluster: str) -> None:
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((4000, 32)).astype(np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    xq = xb[rng.choice(4000, 100, replace=False)] + 0.05 * rng.standard_normal((100, 32)).astype(np.float32)
    ids = np.arange(4000, dtype=np.int64) * 3  # ids that are not positions
    plan = default_plan("ivf_pq_sq8", 4000, 32)
    single = build_vector_index(xb, ids, plan, xq_tune=xq)
    sharded = build_vector_index(xb, ids, plan, xq_tune=xq, add=parallel_adder(cluster, 3))
    assert sharded.index.ntotal == single.index.ntotal == 4000
    assert sharded.recall_at_10 == single.recall_at_10 and sharded.params == single.params
    truth = (xq @ xb.T).argsort(axis=1)[:, ::-1][:, :10] * 3
    found = [b.index.search(xq, 10)[1] for b in (single, sharded)]
    assert recall_at_k(found[0], truth) == recall_at_k(found[1], truth) > 0.5
    assert np.array_equal(found[0], found[1])
    assert faiss.serialize_index(single.index).size == faiss.serialize_index(sharded.index).size


@pytest.mark.model
def test_the_command_line_indexes_and_reports_on_ray(
    cluster: str,
    local: SearchService,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`search index seeds/ --ray ADDRESS` and `search report --ray ADDRESS` (the model already loaded here)."""
    index = str(tmp_path / "index")

    def loaded(settings: Settings) -> SearchService:
        return SearchService(settings, local.embedder, local.detector)

    code, out, err = main_in_process(
        monkeypatch, capsys, "index", str(SEEDS), "--index", index, "--ray", cluster, "--json", service=loaded
    )
    assert code == 0, err
    built = json.loads(out.splitlines()[-1])
    assert built["embedded"] == built["passages"] > 0
    code, out, err = main_in_process(
        monkeypatch, capsys, "report", "--index", index, "--out", str(tmp_path / "r"), "--ray", cluster, "--json",
        service=loaded,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["passages"] == built["passages"]
    assert (tmp_path / "r" / "pairs.csv").is_file()


def test_ray_not_installed_is_one_line_and_exit_10_and_publishes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "corpus" / "a.txt", "Cats sleep in the sun.\n\nDogs bark at strangers.\n")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as when the extra is not installed
    detector = LanguageDetector(["en", "ru"], preload=False)
    index = tmp_path / "index"
    code, _, err = main_in_process(
        monkeypatch, capsys, "index", str(tmp_path / "corpus"), "--index", str(index), "--model", "fake-model",
        "--ray", "auto", service=lambda s: SearchService(s, FakeEmbedder(), detector),
    )  # fmt: skip
    lines = err.strip().splitlines()
    assert code == 10 and len(lines) == 1 and "pip install 'search[cluster]'" in lines[0], err
    assert not (index / "current").exists()


def test_without_ray_nothing_imports_it(tmp_path: Path) -> None:
    """The command line and a local build (fake embedder) never import ray, nor Ray Data's pyarrow."""
    script = f"""
import sys
import search.cli
from tests.helpers import small_service
small_service(__import__("pathlib").Path({str(tmp_path)!r}))
bad = sorted(m for m in ("ray", "pyarrow") if m in sys.modules)
assert not bad, bad
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
