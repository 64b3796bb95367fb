"""Smoke tests: the eval and bench scripts run end to end on tiny inputs and write sane figures.

They check that the scripts work, not how fast or how good the product is: benchmarks print figures. The metric
and data tests need no model.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.bench_durable import measure
from benchmarks.ir_metrics import distinct, mrr, ndcg, recall, score
from benchmarks.xquad import article_id, load

ROOT = Path(__file__).resolve().parents[1]


def test_metrics_with_one_relevant_document() -> None:
    ranking = ["a", "b", "c"]
    assert ndcg(ranking, {"a"}) == 1.0
    assert math.isclose(ndcg(ranking, {"b"}), 1 / math.log2(3))
    assert recall(ranking, {"b"}, 1) == 0.0 and recall(ranking, {"b"}, 10) == 1.0
    assert mrr(ranking, {"c"}) == 1 / 3 and mrr(ranking, {"z"}) == 0.0


def test_metrics_with_every_translation_relevant() -> None:
    relevant = {"en/001", "zh/001", "ru/001"}
    assert ndcg(["zh/001", "ru/001", "en/001", "en/002"], relevant) == 1.0
    assert math.isclose(recall(["zh/001", "en/009", "en/001"], relevant, 10), 2 / 3)
    assert recall(["zh/001"], relevant, 1) == 1.0
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert math.isclose(ndcg(["en/009", "zh/001"], relevant), (1 / math.log2(3)) / ideal)
    s = score([["en/001"], ["en/002"]], [{"en/001"}, {"en/001"}])
    assert (s.ndcg_at_10, s.recall_at_1, s.mrr_at_10, s.queries) == (0.5, 0.5, 0.5, 2)


def test_distinct_keeps_the_best_rank_of_each_article() -> None:
    assert distinct(["a", "a", "b", "a", "c", "d"], 3) == ["a", "b", "c"]


def test_xquad_questions_are_stripped_and_deduplicated() -> None:
    xq = load(["en", "zh"])
    assert [len(xq.paragraphs[lang]) for lang in ("en", "zh")] == [240, 240]
    en = xq.questions["en"]
    assert len(en) == len({q.text for q in en}) < 1190
    assert all(q.text == q.text.strip() for q in en)
    first = en[0]
    assert first.relevant(["en", "zh"]) == {article_id(lang, i) for lang in ("en", "zh") for i in first.paragraphs}


def test_xquad_limit_keeps_the_relevance_consistent() -> None:
    xq = load(["en", "ru"], limit=5)
    for lang in ("en", "ru"):
        assert [p.index for p in xq.paragraphs[lang]] == [0, 1, 2, 3, 4]
        assert 0 < len(xq.questions[lang]) <= 5
        assert all(q.paragraphs and max(q.paragraphs) < 5 for q in xq.questions[lang])


def run_module(module: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{module} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return proc.stdout


def in_unit_interval(value: Any) -> bool:
    return isinstance(value, int | float) and 0.0 <= value <= 1.0


@pytest.mark.model
def test_eval_runs_on_a_tiny_slice(tmp_path: Path) -> None:
    stdout = run_module("benchmarks.eval", "--langs", "en,zh", "--limit", "8", "--out", str(tmp_path))

    result = json.loads((tmp_path / "eval.json").read_text(encoding="utf-8"))
    assert (tmp_path / "eval.md").read_text(encoding="utf-8") in stdout + "\n"
    tasks = {(t["pool"], t["query_lang"], t["centering"]) for t in result["tasks"]}
    expected = {(p, q, c) for p in ("en", "zh", "mixed") for q in ("en", "zh") for c in (False, True)}
    assert tasks == expected
    for t in result["tasks"]:
        assert t["queries"] == 8
        for key in ("ndcg_at_10", "recall_at_1", "recall_at_10", "mrr_at_10"):
            assert in_unit_interval(t[key]), (t, key)
        if t["pool"] == "mixed":
            assert in_unit_interval(t["own_lang_share_at_10"]) and t["language_blind_share"] == 0.5
    assert result["config"]["paragraphs_per_lang"] == {"en": 8, "zh": 8}
    builds = {(b["pool"], b["centering"]): b for b in result["builds"]}
    assert builds["en", False]["embedded"] == builds["en", False]["passages"] > 0
    reused = [b for key, b in builds.items() if key[0] == "mixed" or key[1]]
    assert all(b["embedded"] == 0 for b in reused), "the shared embedding cache embeds each passage once"


@pytest.mark.model
def test_eval_segments_writes_a_new_language_and_compares_with_a_rebuild(tmp_path: Path) -> None:
    args = ["--base-paragraphs", "6", "--new-paragraphs", "12", "--per-write", "3", "--shares", "0.2,0.5"]
    args += ["--questions", "5", "--modes", "dense", "--variants", "frozen,merged", "--out", str(tmp_path)]
    stdout = run_module("benchmarks.eval_segments", *args)

    result = json.loads((tmp_path / "eval-segments.json").read_text(encoding="utf-8"))
    assert (tmp_path / "eval-segments.md").read_text(encoding="utf-8") in stdout + "\n"
    points = result["points"]
    assert [p["target_share"] for p in points] == [0.2, 0.5]
    assert 0 < points[0]["new_paragraphs"] < points[1]["new_paragraphs"] <= 12
    for point in points:
        kinds = {(r["variant"], r["bank"]) for r in point["results"]}
        assert kinds == {(v, b) for v in ("rebuild", "frozen", "merged") for b in ("known", "unknown")}
        for r in point["results"]:
            writes = -(-point["new_paragraphs"] // 3)  # one segment per write of 3 articles, none merged yet
            assert r["segments"] == (1 if r["variant"] == "rebuild" else 1 + writes), r
            assert (r["written_since_fit"] > 0) == (r["variant"] != "rebuild"), "a full build refits the means"
            for task in result["tasks"]:
                assert in_unit_interval(r["scores"]["dense"][task]["ndcg_at_10"]), (r["variant"], task)
        frozen = next(r for r in point["results"] if r["variant"] == "frozen")
        reached = frozen["written_since_fit"] / frozen["live_passages"]
        assert reached >= point["target_share"] or point["new_paragraphs"] == 12


@pytest.mark.model
def test_bench_quick_runs(tmp_path: Path) -> None:
    stdout = run_module("benchmarks.bench", "--quick", "--out", str(tmp_path))

    result = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))
    assert "# Speed, load and memory" in stdout
    ix, q = result["indexing"], result["queries"]
    assert ix["paragraphs"] == 12 and ix["languages"] == 12
    assert ix["pipeline_passages_per_s"] > 0
    alt = ix["alternating"]
    assert alt["paragraphs"] == 12 and alt["rounds"] == 3 and alt["passages"] >= 12
    for method in ("product", "raw", "packed"):
        assert len(alt["wall_seconds"][method]) == 3 and alt["passages_per_s"][method] > 0
    assert alt["ratio_product_to_raw"] > 0 and alt["ratio_packed_to_raw"] > 0 and alt["ratio_product_to_packed"] > 0
    assert "product / raw" in stdout
    assert set(ix["stages"]) >= {"read", "embed", "write"}
    assert q["in_process"]["one_by_one"]["p50_ms"] > 0 and q["raw_encode_one_query"]["p50_ms"] > 0
    assert [level["clients"] for level in q["http"]["levels"]] == [1, 4, 16]
    assert q["http"]["first_search_ms"] > 0 and q["targets"]["first_search_over_http_p50"] > 0
    for level in q["http"]["levels"]:
        assert level["queries_per_s"] > 0 and level["p99_ms"] >= level["p50_ms"] > 0
        assert level["server_rss_mb"]["VmRSS"] > 0
    assert {v["vectors"] for v in result["vectors"]} == {1_000, 5_000}
    kinds = {v["index"] for v in result["vectors"]}
    assert "flat" in kinds
    for v in result["vectors"]:
        assert 0.5 < v["recall_at_10"] <= 1.0 and v["bytes_per_vector"] > 0 and v["batched"]["queries_per_s"] > 0
        if v["index"] == "flat":
            assert v["recall_at_10"] == 1.0 and v["bytes_per_vector"] >= 384 * 4


@pytest.mark.model
def test_bench_precision_quick_runs(tmp_path: Path) -> None:
    stdout = run_module("benchmarks.bench_precision", "--quick", "--out", str(tmp_path))

    result = json.loads((tmp_path / "precision.json").read_text(encoding="utf-8"))
    assert "## Precision profiles" in stdout
    rows = {r["profile"]: r for r in result["speed"]["profiles"]}
    assert set(rows) == {"fp32", "bf16", "int8", "int8-bf16"}
    for r in rows.values():
        assert r["passages_per_second"] > 0 and r["query_ms"]["p50_ms"] > 0 and r["query_batch_ms"]["p50_ms"] > 0
        assert set(r["cosine_to_fp32"]) == {"short", "long", "mixed", "over_window"}
    assert all(c["min"] > 0.999 for c in rows["fp32"]["cosine_to_fp32"].values())
    assert f"| fp32 (fp32) | {rows['fp32']['passages_per_second']} | 1.00x" in stdout


def test_bench_durable_measures_the_syncs_of_a_tiny_build() -> None:
    r = measure(30, 1, np.random.default_rng(0))
    assert r["passages"] == 30 and r["build_mb"] >= 0
    assert 0 < r["fsync_s"] <= r["write_publish_s"] and 0 < r["fsync_share"] <= 1
    assert r["snapshot_s"] > 0 and r["snapshot_linked"] > 0
