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
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.bench_durable import measure
from benchmarks.eval_translation_null import build_pairs, centered, reports_pairs, unit
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


def test_translation_null_counts_the_pairs_within_groups() -> None:
    # 30 "paragraphs" in three "languages" (the same vector plus noise): a group of three versions holds three pairs
    rng = np.random.default_rng(0)
    base = rng.normal(size=(30, 64))
    langs = np.repeat(np.array(["en", "zh", "ru"]), 30)
    x = centered(unit(np.vstack([base + 0.4 * rng.normal(size=base.shape) for _ in range(3)])), langs)
    paragraph = np.tile(np.arange(30), 3)
    for how in (build_pairs, reports_pairs):
        a, b = how(x, langs, np.full(len(x), 100))
        assert len(a) >= 80 and (paragraph[a] == paragraph[b]).all() and (langs[a] != langs[b]).all()


@pytest.mark.model
def test_bench_segments_quick_runs(tmp_path: Path) -> None:
    stdout = run_module("benchmarks.bench_segments", "--quick", "--out", str(tmp_path))

    result = json.loads((tmp_path / "segments.json").read_text(encoding="utf-8"))
    assert "### Writes on a 2,000-passage index" in stdout
    scale, compaction = result["scale"], result["compaction"]
    assert scale["base"]["passages"] == 2_000
    for u in scale["upserts"]:
        assert u["embedded"] == 10 and u["total_s"] >= u["without_embed_s"] > 0
        assert all(rank is not None for rank in u["found_rank"].values()), "the next search finds the new article"
    assert scale["http_put"]["embedded"] == 10 and scale["http_put"]["found_rank_hybrid"] is not None
    assert all(d["gone"] and d["total_s"] > 0 for d in scale["deletes"])
    assert scale["segments"] == 3
    for index in ("segments", "one"):
        for mode in ("dense", "hybrid"):
            timed = scale["search"][index][mode]
            assert timed["queries"] == 4 and timed["with_encode_p50_ms"] > 0 and timed["retrieval_p50_ms"] > 0
    assert compaction["articles"] == 12 and compaction["writes"] == 5
    assert all(in_unit_interval(share) for share in compaction["identical_top10"].values())
    assert result["summary"]["delete_s"] > 0


def test_bench_durable_measures_the_syncs_of_a_tiny_build() -> None:
    r = measure(30, 1, np.random.default_rng(0))
    assert r["passages"] == 30 and r["build_mb"] >= 0
    assert 0 < r["fsync_s"] <= r["write_publish_s"] and 0 < r["fsync_share"] <= 1
    assert r["snapshot_s"] > 0 and r["snapshot_linked"] > 0


@pytest.mark.model
def test_nncf_calibration_rows_are_prompted_unpadded_and_unmeasured(settings) -> None:  # type: ignore[no-untyped-def]
    # benchmarks.precision_runtimes' openvino-nncf-int8 rows calibrate on these: one row per text as the embedder
    # would tokenize it (prompt, special tokens, within the window), in languages no benchmark times or evaluates.
    from benchmarks.precision_runtimes import CALIBRATION_LANGS, calibration_feeds
    from benchmarks.xquad import EVAL_LANGS
    from search.model.embedders import make_embedder

    e: Any = make_embedder(settings.model, settings.cache_dir, "onnx")
    feeds = calibration_feeds(e, per_lang=2)
    assert CALIBRATION_LANGS and not set(CALIBRATION_LANGS) & {*EVAL_LANGS, "en", "zh", "ru"}
    assert len(feeds) >= 2 * len(CALIBRATION_LANGS) + len(CALIBRATION_LANGS)
    tok = e._tokenizer
    prompts = [e.passage_prompt.strip(), e.query_prompt.strip()]
    assert all(prompts)
    starts: Counter[int] = Counter()
    for f in feeds:
        ids, mask = f["input_ids"], f["attention_mask"]
        assert ids.shape == mask.shape and ids.shape[0] == 1 and 2 < ids.shape[1] <= e.max_tokens
        assert mask.all() and ids[0, 0] == tok.cls_token_id and ids[0, -1] == tok.sep_token_id
        text = tok.decode(ids[0, 1:-1].tolist())
        starts[next(i for i, p in enumerate(prompts) if text.startswith(p))] += 1
    assert starts[0] == 2 * len(CALIBRATION_LANGS) and starts[1] >= len(CALIBRATION_LANGS)
