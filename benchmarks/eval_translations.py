"""The translations table of `make eval`: the XQuAD en+zh+ru pool searched with translations=off, together and
collapse, the build's translation detector against the truth, and the groups it finds on the seed.

nDCG@10 as in the other tables (`benchmarks.ir_metrics`), over the distinct paragraphs a ranking shows:

- off and together: a hit is an article (an XQuAD paragraph in one language); every translation of the question's
  paragraph is relevant (R = 3), the ideal is 3 relevant hits at the top.
- collapse: a hit is a translation group, and it shows every paragraph its members (the hit and its translations)
  are versions of; it is relevant when its group holds the question's paragraph. Each paragraph counts once, at the
  first hit that shows it (as a paragraph's second passage counts once in the other tables), so a hit showing only
  paragraphs already shown takes no rank; the ideal is one relevant hit per relevant paragraph (R = 1 for almost
  every question), what perfect groups would give. A detector that misses a translation pair lets the paragraph's
  versions come back as two hits, of which only the first counts: the missed pair costs a rank.
- per slot (off and collapse): what a caller asking for k = 10 hits gets. The first 10 hits, each a slot; a slot
  shows the paragraphs of its hit (and translations) not shown before, relevant when one of them is the question's;
  a slot that shows nothing new (another version of a paragraph already shown) stays, as a miss; R = 1 as for
  collapse. Skipping repeats instead (as collapse above does) ranks the distinct paragraphs of `off` exactly as
  collapse ranks its groups, so only the slots tell the two apart. `distinct_at_10` is the paragraphs the 10 slots
  show, on average.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.ir_metrics import distinct, score
from benchmarks.xquad import XQuAD, lang_of
from search.config import Settings
from search.ingest.language import LanguageDetector
from search.records import Hit, Mode, SearchQuery, SearchResult, Translations
from search.service import SearchService

if TYPE_CHECKING:
    from benchmarks.eval import QueryMemo

POOL = ("en", "zh", "ru")
SETTINGS: tuple[Translations, ...] = ("off", "together", "collapse")
K_FETCH = 30
# The table's rows: (translations, how a row is scored) -> its name; "" is the setting's own scoring.
ROW_NAMES = {
    ("off", ""): "off",
    ("together", ""): "together",
    ("collapse", ""): "collapse",
    ("off", "slot"): "off, per slot (k = 10)",
    ("collapse", "slot"): "collapse, per slot (k = 10)",
}
SEEDS = Path(__file__).resolve().parents[1] / "seeds"


def paragraph_of(article_id: str) -> str:
    """The XQuAD paragraph an article is a version of: `zh/012` -> `012`."""
    return article_id.split("/", 1)[1]


def collapse_ranking(hits: Sequence[Hit], k: int = 10) -> list[str]:
    """The paragraphs a collapsed ranking shows, each once, at the first hit that shows it (see the module doc)."""
    out: list[str] = []
    seen: set[str] = set()
    for h in hits:
        shown = {paragraph_of(p.article_id) for p in (h.passage, *h.translations)}
        new = sorted(shown - seen)
        if not new:
            continue
        seen |= shown
        out.append(new[0])
        if len(out) == k:
            break
    return out


def slot_ranking(hits: Sequence[Hit], k: int = 10) -> list[str]:
    """The first `k` hits as slots (see the module doc): a slot is the first paragraph its hit shows that no slot
    before showed, or `-i` (no paragraph, never relevant) when it shows none."""
    out: list[str] = []
    seen: set[str] = set()
    for i, h in enumerate(hits[:k]):
        shown = {paragraph_of(p.article_id) for p in (h.passage, *h.translations)}
        new = sorted(shown - seen)
        seen |= shown
        out.append(new[0] if new else f"-{i}")
    return out


def ask_with(
    svc: SearchService, texts: Sequence[str], how: Translations, mode: Mode | None, batch: int
) -> list[SearchResult]:
    results: list[SearchResult] = []
    for start in range(0, len(texts), batch):
        chunk = texts[start : start + batch]
        results.extend(svc.search_many([SearchQuery(t, k=K_FETCH, mode=mode, translations=how) for t in chunk]))
    return results


def detector_figures(svc: SearchService) -> dict[str, Any]:
    """The build's translation pairs (within groups) against XQuAD's truth: paragraph i in two languages."""
    store = svc.store
    groups = store.translation_groups()
    passages = store.all_passages()
    members: dict[int, list[str]] = {}
    for row, g in enumerate(groups.tolist()):
        if g >= 0:
            members.setdefault(g, []).append(passages[row].article_id)
    predicted = {frozenset(pair) for m in members.values() for pair in combinations(sorted(set(m)), 2)}
    predicted = {p for p in predicted if len({lang_of(a) for a in p}) == 2}
    paragraphs = {paragraph_of(p.article_id) for p in passages}
    truth = {frozenset((f"{a}/{i}", f"{b}/{i}")) for i in paragraphs for a, b in combinations(POOL, 2)}
    correct = predicted & truth
    return {
        "pairs_true": len(truth),
        "pairs_in_groups": len(predicted),
        "precision": round(len(correct) / len(predicted), 4) if predicted else None,
        "recall": round(len(correct) / len(truth), 4) if truth else None,
        "group_sizes": dict(sorted(Counter(len(m) for m in members.values()).items())),
        "build": svc.store.manifest.get("translations"),
    }


def seed_groups(cache: Path, out: Path, memo: QueryMemo, detector: LanguageDetector) -> dict[str, Any]:
    """The groups the build finds on the seed (one article, English paragraphs interleaved with Chinese ones)."""
    svc = SearchService(Settings(index_dir=out / "indexes" / "seed", embedding_cache=cache), memo, detector)
    summary = svc.build([SEEDS])
    store = svc.load()
    groups = store.translation_groups()
    passages = store.all_passages()
    found: dict[int, list[str]] = {}
    for row, g in enumerate(groups.tolist()):
        if g >= 0:
            p = passages[row]
            found.setdefault(g, []).append(f"[{p.lang} ¶{p.paragraph}] {p.text[:70]}")
    svc.close()
    return {"passages": summary.passages, "languages": summary.languages, "groups": list(found.values())}


def run_translations(
    xq: XQuAD, files: dict[str, Path], cache: Path, out: Path, memo: QueryMemo, detector: LanguageDetector,
    mode: Mode | None, batch: int = 64,
) -> dict[str, Any]:  # fmt: skip
    """Every figure of the translations table: nDCG@10 per setting and query language, the detector, the seed."""
    svc = SearchService(
        Settings(index_dir=out / "indexes" / f"translations-{'+'.join(POOL)}", embedding_cache=cache), memo, detector
    )
    summary = svc.build([files[lang] for lang in POOL])
    svc.load()
    rows = []
    for qlang in POOL:
        questions = xq.questions[qlang]
        by_paragraph = [{f"{i:03d}" for i in q.paragraphs} for q in questions]
        for how in SETTINGS:
            start = time.perf_counter()
            results = ask_with(svc, [q.text for q in questions], how, mode, batch)
            seconds = round(time.perf_counter() - start, 2)
            if how == "collapse":
                rankings = [collapse_ranking(r.hits) for r in results]
                relevant = by_paragraph
            else:
                rankings = [distinct((h.passage.article_id for h in r.hits), 10) for r in results]
                relevant = [q.relevant(POOL) for q in questions]
            rows.append(
                {"query_lang": qlang, "translations": how, **score(rankings, relevant).as_dict(), "seconds": seconds}
            )
            if how != "together":
                slots = [slot_ranking(r.hits) for r in results]
                shown = [len({p for p in s if not p.startswith("-")}) for s in slots]
                rows.append(
                    {
                        "query_lang": qlang,
                        "translations": how,
                        "scoring": "slot",
                        **score(slots, by_paragraph).as_dict(),
                        "distinct_at_10": round(sum(shown) / max(1, len(shown)), 2),
                        "seconds": seconds,
                    }
                )
    detector_out = detector_figures(svc)
    svc.close()
    return {
        "pool": list(POOL),
        "mode": mode or svc.settings.default_mode,
        "tasks": rows,
        "detector": detector_out,
        "build_stages": summary.stages,
        "seed": seed_groups(cache, out, memo, detector),
    }


def render_translations(result: dict[str, Any]) -> str:
    """The markdown of the translations table."""
    pool = "+".join(result["pool"])
    by = {(t["query_lang"], ROW_NAMES[t["translations"], t.get("scoring", "")]): t for t in result["tasks"]}
    langs = list(dict.fromkeys(t["query_lang"] for t in result["tasks"]))
    lines = [
        f"## Translation groups, XQuAD {pool} pool ({result['mode']}), nDCG@10",
        "",
        "| translations | " + " | ".join(f"{lang} questions" for lang in langs) + " |",
        "|---|" + "---:|" * len(langs),
    ]
    for name in ROW_NAMES.values():
        cells = [f"{100 * by[(lang, name)]['ndcg_at_10']:.1f}" if (lang, name) in by else "" for lang in langs]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    distinct_at_10 = [
        f"{how} " + " / ".join(f"{by[(lang, name)].get('distinct_at_10', 0):.1f}" for lang in langs)
        for (how, scoring), name in ROW_NAMES.items()
        if scoring == "slot" and all((lang, name) in by for lang in langs)
    ]
    if distinct_at_10:
        lines += ["", "Paragraphs shown by the 10 slots, per query language: " + "; ".join(distinct_at_10) + "."]
    d = result["detector"]
    stage = result["build_stages"].get("translations")
    lines += [
        "",
        f"Detector (build): {d['pairs_in_groups']} translation pairs in groups of {d['pairs_true']} true, precision "
        f"{d['precision']}, recall {d['recall']}; group sizes {d['group_sizes']}; "
        f"the build's `translations` stage took {stage:.2f} s."
        if stage is not None
        else "",
        "",
        f"Seed ({result['seed']['passages']} passages, {result['seed']['languages']}): "
        f"{len(result['seed']['groups'])} translation groups" + (":" if result["seed"]["groups"] else "."),
        "",
        *(f"- {' / '.join(g)}" for g in result["seed"]["groups"]),
    ]
    return "\n".join(lines)
