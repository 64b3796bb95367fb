"""Retrieval quality with the real model on a fixed XQuAD subset: what centering buys in a mixed-language index,
Chinese questions over English paragraphs, and what collapsing translations gives a caller's 10 hits, each against
the figure measured and recorded in docs/quality.md.

The subset is the first 60 paragraphs of XQuAD in en, zh and ru and every question asked about them (318-319 per
language), through the product's own path (as `benchmarks/eval.py`): JSONL articles, `SearchService.build`,
`SearchService.search_many`. The centered side of every comparison is the service as a user gets it, `Settings()`
with its defaults (centering, query means and ranking mode not named), so turning centering off by default fails
here; the raw side is the same settings with `centering=False`. The centering figures score every translation as a
hit of its own, so they are asked with `translations="off"` (as `make eval`'s main tables); the collapse test asks
with the default and with `off`. Run `pytest -s tests/test_quality.py` to see the figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.eval import QueryMemo, ask
from benchmarks.eval_translations import slot_ranking
from benchmarks.ir_metrics import distinct, score
from benchmarks.xquad import Question, XQuAD, load, write_corpus
from search.config import Settings
from search.records import Translations
from search.service import SearchService

pytestmark = pytest.mark.model

PARAGRAPHS = 60
LANGS = ("en", "zh", "ru")

# nDCG@10 in percent of the default over the raw service, in the en+zh+ru pool of the subset, per query language;
# measured on 2026-11-29 (2 shared cores) with query means (the default): zh 89.6 vs 48.7 (+40.9), en 95.1 vs 76.2
# (+18.9), ru 92.7 vs 76.5 (+16.2); with passage means 89.7, 94.9 and 92.5. Asserted well below that and far above
# noise: one query of ~320 moving one rank moves nDCG@10 by at most 0.1, and a re-run gives the same figures.
MIXED_POOL_LIFT = {"zh": 30.0, "en": 10.0, "ru": 10.0}

# The 10 hits of a question in the en+zh+ru pool of the subset, default (translations collapsed) against
# translations=off, measured on 2026-11-29: the paragraphs they show, on average, zh 9.98 vs 5.42, en 9.96 vs 5.18,
# ru 9.96 vs 5.35; nDCG@10 per slot (benchmarks.eval_translations.slot_ranking) zh 96.05 vs 95.93, en 98.45 vs
# 98.25, ru 97.96 vs 97.96. Asserted: the default ranks no lower, and shows at least 3 more paragraphs (0 with off as
# the default).
COLLAPSE_MORE_PARAGRAPHS = 3.0

# zh questions over the en paragraphs of the subset, default service, nDCG@10 in percent: 90.89, measured on
# 2026-11-29 with `pytest -s tests/test_quality.py` after query means became the default (90.14 with passage means;
# the raw service gives 87.8; the shipped bank's query means never saw these questions). It must stay within
# ZH_EN_TOLERANCE either way: a drop is a regression; a rise is welcome, but re-measure and record it here and in
# docs/quality.md.
ZH_EN = 90.89
ZH_EN_TOLERANCE = 1.0


def subset(n: int = PARAGRAPHS) -> XQuAD:
    """The first `n` paragraphs per language and every question about them; a question also about a later paragraph
    keeps only its relevant paragraphs among the first `n`."""
    xq = load(LANGS)
    kept = set(range(n))
    questions = {
        lang: [Question(q.qid, q.lang, q.text, q.paragraphs & kept) for q in qs if q.paragraphs & kept]
        for lang, qs in xq.questions.items()
    }
    return XQuAD({lang: ps[:n] for lang, ps in xq.paragraphs.items()}, questions)


class Runs:
    """Indexes of the subset, built from one embedding cache (each paragraph is embedded once) and asked through
    one query memo (each question is encoded once), each service still on its own search path."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.xq = subset()
        self.files = write_corpus(self.xq, folder / "corpus")
        self.memo = QueryMemo(SearchService(Settings(index_dir=folder / "unused")).embedder)
        self.services: dict[str, SearchService] = {}

    def service(self, langs: tuple[str, ...], raw: bool = False) -> SearchService:
        """An index of the `langs` paragraphs with the default settings, or those with centering off (`raw`)."""
        name = "+".join(langs) + ("-raw" if raw else "-default")
        if name not in self.services:
            settings = Settings(index_dir=self.folder / name, embedding_cache=self.folder / "embeddings.sqlite")
            if raw:
                settings = settings.model_copy(update={"centering": False})
            svc = SearchService(settings, self.memo)
            svc.build([self.files[lang] for lang in langs])
            svc.load()
            self.services[name] = svc
        return self.services[name]

    def ndcg(self, langs: tuple[str, ...], query_lang: str, raw: bool = False) -> float:
        """nDCG@10 in percent of `query_lang`'s questions over an index of `langs`, in the service's default mode,
        each passage a hit (translations off, as `make eval`'s main tables: every translation is relevant)."""
        questions = self.xq.questions[query_lang]
        results = ask(self.service(langs, raw), questions, 64, None)
        rankings = [distinct((h.passage.article_id for h in r.hits), 10) for r in results]
        return 100 * score(rankings, [q.relevant(langs) for q in questions]).ndcg_at_10

    def per_slot(self, query_lang: str, translations: Translations | None) -> tuple[float, float]:
        """nDCG@10 in percent of `query_lang`'s questions over the en+zh+ru index with the default settings, over
        the 10 hits a caller gets, each showing its paragraphs once (benchmarks.eval_translations.slot_ranking),
        and the paragraphs those 10 hits show on average; `translations` None is the service's default."""
        questions = self.xq.questions[query_lang]
        results = ask(self.service(LANGS), questions, 64, None, translations)
        slots = [slot_ranking(r.hits) for r in results]
        shown = sum(sum(not p.startswith("-") for p in s) for s in slots) / len(slots)
        return 100 * score(slots, [{f"{i:03d}" for i in q.paragraphs} for q in questions]).ndcg_at_10, shown

    def close(self) -> None:
        for svc in self.services.values():
            svc.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    out = Runs(tmp_path_factory.mktemp("quality"))
    yield out
    out.close()


def test_the_subset_is_fixed(runs: Runs) -> None:
    assert {lang: len(ps) for lang, ps in runs.xq.paragraphs.items()} == dict.fromkeys(LANGS, PARAGRAPHS)
    assert {lang: len(qs) for lang, qs in runs.xq.questions.items()} == {"en": 319, "zh": 318, "ru": 319}
    assert all(max(q.paragraphs) < PARAGRAPHS for qs in runs.xq.questions.values() for q in qs)


@pytest.mark.parametrize("query_lang", ["zh", "en", "ru"])
def test_centering_by_default_lifts_a_mixed_language_pool(runs: Runs, query_lang: str) -> None:
    default = runs.ndcg(LANGS, query_lang)
    raw = runs.ndcg(LANGS, query_lang, raw=True)
    print(f"mixed en+zh+ru pool, {query_lang} questions, nDCG@10: default {default:.2f}, raw {raw:.2f}")
    assert default - raw >= MIXED_POOL_LIFT[query_lang], (
        f"the default service beats centering off by {default - raw:.1f} points ({default:.1f} vs {raw:.1f}), "
        f"under {MIXED_POOL_LIFT[query_lang]}: is centering still on by default (Settings.centering, SEARCH_CENTERING)?"
    )


def test_chinese_questions_over_english_paragraphs_hold_their_figure(runs: Runs) -> None:
    got = runs.ndcg(("en",), "zh")
    print(f"zh -> en, nDCG@10: default {got:.2f} (recorded {ZH_EN})")
    assert abs(got - ZH_EN) <= ZH_EN_TOLERANCE, (
        f"zh -> en nDCG@10 is {got:.2f}, recorded {ZH_EN} ± {ZH_EN_TOLERANCE}: a drop is a regression; "
        "a rise is re-measured and recorded in ZH_EN and docs/quality.md"
    )


@pytest.mark.parametrize("query_lang", ["zh", "en", "ru"])
def test_the_default_collapses_translations_in_a_mixed_pool(runs: Runs, query_lang: str) -> None:
    default, default_shown = runs.per_slot(query_lang, None)
    off, off_shown = runs.per_slot(query_lang, "off")
    print(
        f"mixed en+zh+ru pool, {query_lang} questions, 10 hits: nDCG@10 per slot default {default:.2f}, off "
        f"{off:.2f}; paragraphs shown default {default_shown:.2f}, off {off_shown:.2f}"
    )
    assert default >= off, f"collapsed, the answer ranks lower than with translations off ({default:.2f} < {off:.2f})"
    assert default_shown - off_shown >= COLLAPSE_MORE_PARAGRAPHS, (
        f"the default's 10 hits show {default_shown:.2f} paragraphs, translations=off's {off_shown:.2f}: is collapse "
        "still the default (SEARCH_DEFAULT_TRANSLATIONS), and are the subset's translations still grouped?"
    )
