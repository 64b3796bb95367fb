"""Retrieval quality with the real model on a fixed XQuAD subset: what centering buys in a mixed-language index, and
Chinese questions over English paragraphs, each against the figure measured and recorded in docs/quality.md.

The subset is the first 60 paragraphs of XQuAD in en, zh and ru and every question asked about them (318-319 per
language), through the product's own path (as `benchmarks/eval.py`): JSONL articles, `SearchService.build`,
`SearchService.search_many`. The centered side of every comparison is the service as a user gets it, `Settings()`
with its defaults (centering and ranking mode not named), so turning centering off by default fails here; the raw
side is the same settings with `centering=False`. Run `pytest -s tests/test_quality.py` to see the figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.eval import QueryMemo, ask
from benchmarks.ir_metrics import distinct, score
from benchmarks.xquad import Question, XQuAD, load, write_corpus
from search.config import Settings
from search.service import SearchService

pytestmark = pytest.mark.model

PARAGRAPHS = 60
LANGS = ("en", "zh", "ru")

# nDCG@10 in percent of the default over the raw service, in the en+zh+ru pool of the subset, per query language;
# measured on 2026-11-29 (2 shared cores): zh 89.7 vs 48.7 (+41.0), en 94.9 vs 76.2 (+18.7), ru 92.5 vs 76.5
# (+16.0). Asserted well below that and far above noise: one query of ~320 moving one rank moves nDCG@10 by at
# most 0.1, and a re-run gives the same figures.
MIXED_POOL_LIFT = {"zh": 30.0, "en": 10.0, "ru": 10.0}

# zh questions over the en paragraphs of the subset, default service, nDCG@10 in percent: 90.14, measured on
# 2026-11-29 with `pytest -s tests/test_quality.py` (the raw service gives 87.8). It must stay within ZH_EN_TOLERANCE
# either way: a drop is a regression; a rise is welcome, but re-measure and record it here and in docs/quality.md.
ZH_EN = 90.14
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
        """nDCG@10 in percent of `query_lang`'s questions over an index of `langs`, in the service's default mode."""
        questions = self.xq.questions[query_lang]
        results = ask(self.service(langs, raw), questions, 64, None)
        rankings = [distinct((h.passage.article_id for h in r.hits), 10) for r in results]
        return 100 * score(rankings, [q.relevant(langs) for q in questions]).ndcg_at_10

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
