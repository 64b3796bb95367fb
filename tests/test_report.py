"""Batch similarity reports: kNN, calibration, labels, groups, article matrix, alignment, files, CLI and API."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from search.errors import BadInput
from search.index import vectors as vi
from search.index.centering import Centering, normalize_rows
from search.index.store import Store, publish, read_manifest, write_build
from search.records import Article, Passage
from search.reports import compute as rp
from search.reports.run import PAIR_COLUMNS, ReportOptions, parse_thresholds, run_report

LANGS = ("en", "ru", "zh")
# Characters per passage differ by language, as real text does (Chinese needs about a third of English's).
CHARS = {"en": 300, "ru": 330, "zh": 100}


def synthetic(
    n_articles: int = 6, paragraphs: int = 5, dim: int = 32, seed: int = 0
) -> tuple[list[Passage], np.ndarray]:
    """Articles `<lang>/a<i>` whose paragraph j translates paragraph j of the same article in every language,
    plus one near-duplicate of en/a0 ¶0 in an article of its own."""
    rng = np.random.default_rng(seed)
    topics = normalize_rows(rng.standard_normal((n_articles, dim)))
    concepts = normalize_rows(np.repeat(topics, paragraphs, axis=0) + 0.9 * normalize_rows(
        rng.standard_normal((n_articles * paragraphs, dim))))  # fmt: skip
    passages, vectors = [], []
    for lang in LANGS:
        shift = 0.7 * normalize_rows(rng.standard_normal((1, dim)))
        for c, concept in enumerate(concepts):
            a, j = divmod(c, paragraphs)
            text = f"{lang} article {a} paragraph {j} <b>&amp;</b> ".ljust(CHARS[lang] + rng.integers(-20, 20), "x")
            passages.append(Passage(f"{lang}-{a}-{j}", f"{lang}/a{a}", f"a{a}", j, 0, 0, len(text), lang, text))
            vectors.append(concept + 0.35 * normalize_rows(rng.standard_normal((1, dim)))[0] + shift[0])
    dup = passages[0]
    passages.append(Passage("dup", "en/copy", "copy", 0, 0, 0, len(dup.text), "en", dup.text + " (copy)"))
    vectors.append(vectors[0] + 0.01 * rng.standard_normal(dim))
    return passages, np.asarray(vectors, dtype=np.float32)


def make_store(folder: Path, passages: list[Passage], raw: np.ndarray, model: dict[str, str] | None = None) -> Store:
    langs = [p.lang for p in passages]
    articles = [Article(a, a, a) for a in dict.fromkeys(p.article_id for p in passages)]
    manifest = {"model": model or {}}
    build = write_build(folder, "b1", articles, passages, raw, Centering.fit(raw, langs, 5), manifest)
    publish(folder, build)
    return Store(*read_manifest(folder))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return make_store(tmp_path_factory.mktemp("synthetic-index"), *synthetic())


def is_translation(a: Passage, b: Passage) -> bool:
    return a.lang != b.lang and a.passage_id[3:] == b.passage_id[3:]


# --- kNN ----------------------------------------------------------------------------------------------------------


def test_knn_matches_brute_force_in_small_batches_and_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    x = normalize_rows(rng.standard_normal((300, 16)))
    lang = np.repeat([0, 1, 2], 100)
    group = np.arange(300) // 4
    monkeypatch.setattr(vi, "_BLOCK", 7)
    nb = rp.knn_by_lang(x, lang, 3, group, k=5, batch=13)
    full = x @ x.T
    for i in (0, 57, 150, 299):
        for li in range(3):
            allowed = np.flatnonzero((lang == li) & (group != group[i]))
            expected = allowed[np.argsort(-full[i, allowed])[:5]]
            assert list(nb.ids[i, li]) == list(expected)
            assert np.allclose(nb.scores[i, li], full[i, expected], atol=1e-5)
    assert nb.recall is None


def test_knn_keeps_own_group_when_asked_but_never_itself() -> None:
    x = normalize_rows(np.random.default_rng(2).standard_normal((20, 8)))
    nb = rp.knn_by_lang(x, np.zeros(20, dtype=int), 1, np.zeros(20, dtype=int), k=3, exclude_group=False)
    assert (nb.ids[:, 0, :] != np.arange(20)[:, None]).all() and (nb.ids >= 0).all()
    excluded = rp.knn_by_lang(x, np.zeros(20, dtype=int), 1, np.zeros(20, dtype=int), k=3)
    assert (excluded.ids == -1).all() and np.isneginf(excluded.scores).all()


def test_approximate_search_measures_its_recall() -> None:
    rng = np.random.default_rng(3)
    centers = normalize_rows(rng.standard_normal((40, 16)))
    x = normalize_rows(centers[rng.integers(0, 40, 3000)] + 0.2 * rng.standard_normal((3000, 16)))
    nb = rp.knn_by_lang(x, np.zeros(3000, dtype=int), 1, np.arange(3000), k=5, approximate=True)
    assert nb.recall is not None and 0.5 < nb.recall <= 1.0


# --- labels and calibration ---------------------------------------------------------------------------------------


def test_fdr_threshold_is_the_lowest_score_with_few_decoys_above() -> None:
    targets = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.2])
    assert rp.fdr_threshold(targets, np.array([0.55, 0.1]), fdr=0.2) == 0.2  # 1 decoy / 6 targets above 0.2
    assert rp.fdr_threshold(targets, np.array([0.55, 0.1]), fdr=0.15) == 0.6  # 1/5 above 0.5 is too many
    assert rp.fdr_threshold(targets, np.array([0.95]), fdr=0.2) == 0.2
    assert rp.fdr_threshold(targets, np.array([0.95, 0.9, 0.85]), fdr=0.01) == float("inf")


def test_parse_thresholds() -> None:
    assert parse_thresholds(["0.5", "zh-en=0.4"]) == {"*": 0.5, "en-zh": 0.4}
    for bad in ("high", "en=0.3", "en-zh-ru=0.2"):
        with pytest.raises(BadInput, match="threshold"):
            parse_thresholds([bad])


def label(passages: list[Passage], raw: np.ndarray, **options: object) -> tuple[rp.Pairs, list[Passage]]:
    order = sorted(range(len(passages)), key=lambda i: (passages[i].lang, i))
    ps = [passages[i] for i in order]
    langs = [p.lang for p in ps]
    x = Centering.fit(raw[order], langs, 5).passages(raw[order], langs)
    names, lang = np.unique(langs, return_inverse=True)
    group = np.unique([p.article_id for p in ps], return_inverse=True)[1]
    nb = rp.knn_by_lang(x, lang, len(names), group, k=5)
    lengths = np.array([len(p.text) for p in ps])
    return rp.label_pairs(x, nb, lang, list(names), group, lengths, rp.LabelOptions(**options)), ps  # type: ignore[arg-type]


def test_labels_find_translations_and_near_duplicates() -> None:
    passages, raw = synthetic(n_articles=10)
    pairs, ps = label(passages, raw)
    triples = zip(pairs.a, pairs.b, pairs.label, strict=True)
    labelled = {(ps[a].passage_id, ps[b].passage_id): rp.LABELS[lab] for a, b, lab in triples}
    found = [k for k, v in labelled.items() if v == "translation"]
    truth = {(p.passage_id, q.passage_id) for p in ps for q in ps if p.lang < q.lang and is_translation(p, q)}
    correct = [k for k in found if tuple(sorted(k, key=lambda pid: pid[:2])) in truth]
    assert len(correct) >= 0.95 * len(truth) and len(correct) >= 0.95 * len(found)
    assert labelled.get(("en-0-0", "dup")) == "near-duplicate"
    assert "related" in labelled.values()
    cal = {(c.lang_a, c.lang_b): c for c in pairs.calibration}
    assert set(cal) == {(a, b) for a in LANGS for b in LANGS if a <= b}
    assert cal["en", "zh"].translation is not None and "decoys" in cal["en", "zh"].translation_how
    assert cal["en", "en"].near_duplicate == 0.9 and "random" in cal["en", "en"].related_how


def test_a_fixed_threshold_replaces_the_calibrated_one() -> None:
    passages, raw = synthetic()
    pairs, _ = label(passages, raw, thresholds={"*": 0.99})
    assert all(c.related == 0.99 and c.related_how == "fixed by --threshold" for c in pairs.calibration)
    assert not (pairs.label == rp.RELATED).any()


def test_translations_need_compatible_lengths() -> None:
    passages, raw = synthetic()
    passages = [p if p.passage_id != "zh-1-2" else Passage(**{**p.__dict__, "text": "短"}) for p in passages]
    pairs, ps = label(passages, raw)
    tr = pairs.label == rp.TRANSLATION
    assert not any(
        "zh-1-2" in (ps[a].passage_id, ps[b].passage_id) for a, b in zip(pairs.a[tr], pairs.b[tr], strict=True)
    )


def test_groups_are_connected_components_of_strong_pairs() -> None:
    pairs = rp.Pairs(np.array([0, 1, 3, 5]), np.array([1, 2, 4, 6]), np.ones(4), np.ones(4), np.array([1, 0, 1, 2]), [])
    assert [list(g) for g in rp.groups(pairs, 7)] == [[0, 1, 2], [3, 4]]


def test_article_matrix_shares_scores_and_ranks() -> None:
    # articles: 0 = rows 0,1 (two paragraphs), 1 = row 2, 2 = row 3; one language
    ids = np.array([[[2, 3]], [[3, 2]], [[0, 1]], [[1, 0]]])
    scores = np.array([[[0.8, 0.1]], [[0.5, 0.2]], [[0.8, 0.2]], [[0.5, 0.1]]], dtype=np.float32)
    nb = rp.Neighbours(ids, scores)
    pairs = rp.Pairs(np.array([0, 1]), np.array([2, 3]), np.array([0.8, 0.5]), np.zeros(2), np.array([1, 2]), [])
    m = rp.article_matrix(nb, pairs, article=np.array([0, 0, 1, 2]), unit=np.array([0, 1, 2, 3]))
    rows = {(a, b): (p, mt, s, mb, n, r) for a, b, p, mt, s, mb, n, r in
            zip(m.a, m.b, m.paragraphs, m.matched, m.share, m.mean_best, m.pairs, m.rank, strict=True)}  # fmt: skip
    # equal shares: the higher mean best-match score ranks first
    assert rows[0, 1][:3] == (2, 1, 0.5) and rows[0, 1][3] == pytest.approx(0.5, abs=1e-6) and rows[0, 1][5] == 1
    assert rows[0, 2][:3] == (2, 1, 0.5) and rows[0, 2][3] == pytest.approx(0.3, abs=1e-6) and rows[0, 2][5] == 2
    assert rows[1, 0][:3] == (1, 1, 1.0) and rows[1, 0][3] == pytest.approx(0.8, abs=1e-6) and rows[1, 0][4] == 1


def test_align_is_monotone_skips_unmatched_and_merges_split_paragraphs() -> None:
    s = np.full((5, 4), 0.1)
    s[0, 0] = s[1, 1] = s[2, 1] = s[4, 3] = 0.8  # A1 and A2 are one paragraph of B (B1), A3 and B2 match nothing
    s[4, 0] = 0.85  # a crossing match that a monotone alignment must leave out
    groups = rp.align(s, threshold=0.4)
    assert [(a, b) for a, b, _ in groups] == [([0], [0]), ([1, 2], [1]), ([4], [3])]
    assert groups[1][2] == pytest.approx(0.8)
    assert rp.align(np.full((3, 3), 0.1), threshold=0.4) == []


# --- run_report, files, CLI, API ---------------------------------------------------------------------------------


def test_run_report_writes_every_file(store: Store, tmp_path: Path) -> None:
    stages: set[str] = set()
    summary = run_report(
        store, ReportOptions(k=5, align=("en/a1", "zh/a1")), tmp_path, progress=lambda s, d, t: stages.add(s)
    )
    assert set(summary.files) == {"pairs.csv", "groups.json", "articles.csv", "alignment.csv", "report.html",
                                  "summary.json"}  # fmt: skip
    assert {"vectors", "knn", "label", "groups", "articles", "align", "write", "render"} <= set(summary.stages)
    assert "knn" in stages and summary.recall is None and summary.search.startswith("exact")
    with (tmp_path / "pairs.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == (*PAIR_COLUMNS, "score", "label")
    assert all(r["a_article_id"] != r["b_article_id"] for r in rows)
    tr = [r for r in rows if r["label"] == "translation"]
    assert len(tr) >= 0.95 * 3 * 30 and all(r["a_passage_id"][3:] == r["b_passage_id"][3:] for r in tr)
    groups = json.loads((tmp_path / "groups.json").read_text(encoding="utf-8"))
    assert groups["count"] == len(groups["groups"]) and groups["groups"][0]["size"] >= 3
    assert {"passage_id", "article_id", "lang", "paragraph", "text"} == set(groups["groups"][0]["members"][0])
    with (tmp_path / "articles.csv").open(encoding="utf-8") as fh:
        matrix = list(csv.DictReader(fh))
    best = {r["a_article_id"]: r["b_article_id"] for r in matrix if r["rank"] == "1"}
    assert best["en/a3"] in ("ru/a3", "zh/a3") and float(next(r["share"] for r in matrix if r["rank"] == "1")) == 1.0
    with (tmp_path / "alignment.csv").open(encoding="utf-8") as fh:
        aligned = [r for r in csv.DictReader(fh) if r["kind"] == "1-1"]
    assert [(r["a_paragraphs"], r["b_paragraphs"]) for r in aligned] == [(str(j), str(j)) for j in range(5)]
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == 4
    assert "<b>&amp;amp;</b>" not in page and "&lt;b&gt;&amp;amp;&lt;/b&gt;" in page
    assert "http://" not in page and "https://" not in page
    assert json.loads((tmp_path / "summary.json").read_text())["pairs"]["translation"] == len(tr)


def test_one_selected_article_compares_within_it(store: Store, tmp_path: Path) -> None:
    summary = run_report(store, ReportOptions(k=3, articles=("en/a0",)), tmp_path)
    assert summary.within_article and summary.articles == 1 and summary.passages == 5
    off = run_report(store, ReportOptions(k=3, articles=("en/a0", "zh/a0"), within_article=False), tmp_path)
    assert off.pairs["translation"] == 5 and not off.within_article


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ReportOptions(articles=("nope",)), "articles not in the index: nope"),
        (ReportOptions(langs=("fr",)), "no passages in language fr; the index has en"),
        (ReportOptions(align=("en/a0", "xx")), "align: 'xx'"),
        (ReportOptions(k=1), "k: 1 is outside"),
        (ReportOptions(fdr=2), "fdr"),
    ],
)
def test_bad_options_say_what_to_do(store: Store, tmp_path: Path, options: ReportOptions, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        run_report(store, options, tmp_path)


def test_cli_report(store: Store, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from search.cli import app

    out = tmp_path / "out"
    args = ["report", "--index", str(store.folder.parent.parent), "--out", str(out), "--k", "4", "--json"]
    result = CliRunner().invoke(app, [*args, "--align", "en/a2", "ru/a2", "--threshold", "en-ru=0.5"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["k"] == 4 and "alignment.csv" in summary["files"] and (out / "report.html").is_file()
    assert next(c for c in summary["calibration"] if c["lang_b"] == "ru" and c["lang_a"] == "en")["related"] == 0.5
    assert "knn" in summary["stages"]


def test_api_runs_a_report_job_and_serves_its_files(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from search.config import Settings
    from search.serve.app import create_app
    from search.serve.reports import router
    from search.service import SearchService

    passages, raw = synthetic()
    # The report reads only the index; a stand-in model that is never called stands for the real one.
    embedder = SimpleNamespace(name="stub", fingerprint="stub-1", dimension=raw.shape[1], max_tokens=512)
    make_store(tmp_path / "index", passages, raw, {"name": "stub", "fingerprint": "stub-1"})
    settings = Settings(index_dir=tmp_path / "index", model="stub", watch_seconds=0)
    app = create_app(service=SearchService(settings, embedder=embedder, detector=SimpleNamespace()))  # type: ignore[arg-type]
    app.include_router(router)
    with TestClient(app) as client:
        started = client.post("/reports", json={"k": 4, "langs": ["en", "zh"]})
        assert started.status_code == 202 and started.json()["status"] in ("queued", "running", "done")
        job_id = started.json()["job_id"]
        done = client.post("/reports?wait=true", json={"k": 4, "align": ["en/a1", "zh/a1"]})
        assert done.status_code == 200 and done.json()["status"] == "done", done.json()
        status = client.get(f"/reports/{job_id}").json()
        while status["status"] != "done":
            status = client.get(f"/reports/{job_id}").json()
        assert status["summary"]["languages"] == {"en": 31, "zh": 30}
        files = {f["name"]: f["url"] for f in status["files"]}
        assert set(files) >= {"pairs.csv", "groups.json", "articles.csv", "report.html", "summary.json"}
        page = client.get(files["report.html"])
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert client.get(files["pairs.csv"]).text.startswith(",".join(PAIR_COLUMNS))
        assert (tmp_path / "index" / "reports" / job_id / "pairs.csv").is_file()
        assert len(client.get("/reports").json()) == 2
        missing = client.get(f"/reports/{job_id}/files/../../etc/passwd")
        assert missing.status_code == 404
        for url in (f"/reports/{job_id}/files/secret.txt", "/reports/nope"):
            r = client.get(url)
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.json()
        bad = client.post("/reports", json={"k": 0})
        assert bad.status_code == 422 and set(bad.json()) == {"error"} and bad.json()["error"]["code"] == "bad_input"
        assert set(bad.json()["error"]) == {"code", "message"} and "k: 0" in bad.json()["error"]["message"]
        failed = client.post("/reports?wait=true", json={"articles": ["nope"]}).json()
        assert failed["status"] == "failed" and failed["error"]["code"] == "bad_input"


# --- the real model: XQuAD en+zh+ru and the seed ------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
XQUAD = ROOT / "data" / "xquad"


def xquad_articles(langs: tuple[str, ...] = ("en", "zh", "ru")) -> list[dict[str, str]]:
    """One article per paragraph, id `<lang>/<title>/<i>`: paragraph i of a title translates paragraph i elsewhere."""
    rows = []
    for lang in langs:
        path = XQUAD / f"xquad.{lang}.json"
        assert path.is_file(), f"{path} is missing: copy it from the XQuAD release (deepmind/xquad) into data/xquad/"
        for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
            for i, paragraph in enumerate(article["paragraphs"]):
                rows.append({"id": f"{lang}/{article['title']}/{i}", "title": article["title"],
                             "text": paragraph["context"], "lang": lang})  # fmt: skip
    return rows


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def xquad_service(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """720 XQuAD paragraphs (240 each in en, zh, ru) indexed together through the product's own build."""
    from search.config import Settings
    from search.service import SearchService

    folder = tmp_path_factory.mktemp("xquad")
    service = SearchService(Settings(index_dir=folder / "index"))
    service.build([write_jsonl(folder / "xquad.jsonl", xquad_articles())])
    return service


# What docs/reports.md states for the `translation` label on these 720 paragraphs (precision 1.0000, recall 0.9958:
# 717 of the 720 true pairs, none wrong; measured on 2026-11-29 with `pytest -s tests/test_report.py -k xquad_tr`),
# and how far below it a run may land before it counts as a regression (one point: 7 more misses or wrong pairs).
TRANSLATION_PRECISION, TRANSLATION_RECALL, TRANSLATION_TOLERANCE = 1.000, 0.996, 0.01


@pytest.mark.model
def test_xquad_translations_are_recovered_with_high_precision(xquad_service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    summary = xquad_service.report(ReportOptions(), tmp_path)
    assert summary.articles == 720 and not summary.within_article
    with (tmp_path / "pairs.csv").open(encoding="utf-8") as fh:
        found = [r for r in csv.DictReader(fh) if r["label"] == "translation"]
    truth = {frozenset({f"{a}/{t}", f"{b}/{t}"}) for a, b in (("en", "zh"), ("en", "ru"), ("zh", "ru"))
             for t in {r["id"].split("/", 1)[1] for r in xquad_articles(("en",))}}  # fmt: skip
    assert len(truth) == 720
    predicted = [frozenset({r["a_article_id"], r["b_article_id"]}) for r in found]
    correct = [p for p in predicted if p in truth]
    precision, recall = len(correct) / len(predicted), len(set(correct)) / len(truth)
    print(f"XQuAD en+zh+ru translation pairs: precision {precision:.4f}, recall {recall:.4f}")
    assert precision >= TRANSLATION_PRECISION - TRANSLATION_TOLERANCE, f"precision {precision:.4f}, docs: 1.000"
    assert recall >= TRANSLATION_RECALL - TRANSLATION_TOLERANCE, f"recall {recall:.4f}, docs: 0.996"


@pytest.mark.model
def test_xquad_story_aligns_paragraph_by_paragraph(xquad_service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from search.config import Settings
    from search.service import SearchService

    rows = [r for r in xquad_articles(("en", "zh")) if r["title"] in ("Normans", "Amazon_rainforest")]
    stories: dict[str, list[str]] = {}
    for r in rows:
        stories.setdefault(r["id"].rsplit("/", 1)[0], []).append(r["text"])
    jsonl = write_jsonl(tmp_path / "stories.jsonl", [{"id": k, "text": "\n\n".join(v)} for k, v in stories.items()])
    cache = xquad_service.settings.index_dir / "embeddings.sqlite"
    service = SearchService(Settings(index_dir=tmp_path / "index", embedding_cache=cache))
    service.build([jsonl])
    service.report(ReportOptions(align=("en/Normans", "zh/Normans")), tmp_path / "out")
    with (tmp_path / "out" / "alignment.csv").open(encoding="utf-8") as fh:
        aligned = [(r["a_paragraphs"], r["b_paragraphs"]) for r in csv.DictReader(fh) if r["kind"] == "1-1"]
    assert aligned == [(str(i), str(i)) for i in range(len(stories["en/Normans"]))]


@pytest.mark.model
def test_seed_pairs_chinese_paragraphs_with_the_english_they_translate(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (article,) = [a.article_id for a in service.articles()]
    summary = service.report(ReportOptions(align=(f"{article}@en", f"{article}@zh")), tmp_path)
    assert summary.within_article  # the seed is one article mixing English and Chinese
    with (tmp_path / "pairs.csv").open(encoding="utf-8") as fh:
        translations = [(r["a_text"], r["b_text"]) for r in csv.DictReader(fh) if r["label"] == "translation"]
    putin = [(a, b) for a, b in translations if "Putin views the relationship between Russia and the United" in a + b]
    assert len(putin) == 1 and "普京把俄美关系视为" in "".join(putin[0])
    assert len(translations) <= 3
    with (tmp_path / "alignment.csv").open(encoding="utf-8") as fh:
        aligned = [r for r in csv.DictReader(fh) if r["kind"] != "only A" and r["kind"] != "only B"]
    assert any("Putin views" in r["a_text"] and "普京把俄美关系视为" in r["b_text"] for r in aligned)


def test_the_api_and_the_command_line_take_their_report_defaults_from_report_options() -> None:
    from typer.testing import CliRunner

    from search.cli import app
    from search.serve.reports import ReportRequest

    assert ReportRequest().options() == ReportOptions()
    assert ReportRequest.model_fields["fdr"].description == ReportOptions.help("fdr")
    shown = CliRunner().invoke(app, ["report", "--help"], env={"COLUMNS": "400"}).stdout
    assert ReportOptions.help("related_quantile") in shown and "[default: 0.999]" in shown
