"""Diversity (`diversity` 0..1): maximal marginal relevance over the candidates' vectors, so near-duplicates,
restatements and translations of one passage do not fill the k slots (search/query/ranking.py `diversify`)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from benchmarks.xquad import load, write_corpus
from search.config import Settings
from search.errors import BadInput
from search.query.ranking import Candidate, diversify
from search.records import SearchQuery
from search.service import SearchService
from tests.fakes import FakeEmbedder
from tests.helpers import small_service


def candidates(scores: list[float]) -> list[Candidate]:
    return [Candidate(row, s, {"dense": row + 1}) for row, s in enumerate(scores)]


def unit(*rows: list[float]) -> np.ndarray:
    x = np.array(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# Rows 0 and 1 are the same text; 2 is a restatement of it; 3 and 4 say other things.
VECTORS = unit([1, 0, 0], [1, 0, 0], [0.98, 0.2, 0], [0, 1, 0], [0, 0, 1])
RANKED = candidates([0.9, 0.9, 0.85, 0.6, 0.5])


def test_diversity_zero_keeps_the_ranking() -> None:
    assert diversify(RANKED, VECTORS, 0.0, 5) == RANKED


def test_full_diversity_never_takes_a_second_copy_while_something_else_is_left() -> None:
    chosen = [c.row for c in diversify(RANKED, VECTORS, 1.0, 3)]
    assert chosen[0] == 0  # the best hit always comes first
    assert set(chosen) == {0, 3, 4}


def test_some_diversity_moves_a_restatement_below_a_different_relevant_hit() -> None:
    # relevance scaled to 0..1 over the pool: 1, 1, 0.875, 0.25, 0; at 0.5 the copy's redundancy (1.0) outweighs it
    assert [c.row for c in diversify(RANKED, VECTORS, 0.5, 2)] == [0, 3]
    assert [c.row for c in diversify(RANKED, VECTORS, 0.1, 3)] == [0, 1, 2]  # relevance still rules at 0.1


def test_full_diversity_takes_no_second_member_of_a_translation_group_while_something_else_is_left() -> None:
    # rows 0 and 1 translate each other yet sit further apart (cosine 0.6) than 0 and its restatement 2 (0.98)
    vectors = unit([1, 0, 0], [0.6, 0.8, 0], [0.98, 0.2, 0], [0, 0, 1])
    ranked = candidates([0.9, 0.88, 0.85, 0.5])
    groups = np.array([7, 7, -1, -1])
    assert 1 in [c.row for c in diversify(ranked, vectors, 1.0, 3)]  # without the groups, the translation is taken
    assert [c.row for c in diversify(ranked, vectors, 1.0, 3, groups)] == [0, 3, 2]
    assert [c.row for c in diversify(ranked, vectors, 1.0, 4, groups)][-1] == 1  # only when nothing else is left


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_diversity_outside_zero_to_one_is_refused_with_its_name(tmp_path: Path, value: float) -> None:
    svc = small_service(tmp_path, FakeEmbedder())
    with pytest.raises(BadInput, match="diversity"):
        svc.search(SearchQuery("cats", diversity=value))


def test_diversity_pages_continue_each_other_and_group_by_article_applies_first(tmp_path: Path) -> None:
    svc = small_service(tmp_path, FakeEmbedder())
    whole = svc.search(SearchQuery("cats", k=4, mode="dense", diversity=0.7)).hits
    first = svc.search(SearchQuery("cats", k=2, mode="dense", diversity=0.7)).hits
    second = svc.search(SearchQuery("cats", k=2, offset=2, mode="dense", diversity=0.7)).hits
    ids = [h.passage.passage_id for h in whole]
    assert [h.passage.passage_id for h in first + second] == ids
    assert [h.rank for h in first + second] == [1, 2, 3, 4]
    grouped = svc.search(SearchQuery("cats", k=4, group_by="article", diversity=1.0)).hits
    articles = [h.passage.article_id for h in grouped]
    assert len(articles) == len(set(articles)) and all(h.article_matches for h in grouped)


# --- with the real model ---------------------------------------------------------------------------------------------

PARAGRAPHS = 20


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> SearchService:
    """XQuAD's first 20 paragraphs in en, zh and ru, and every English paragraph a second time (a copy in another
    article): each paragraph has four members, two of them identical."""
    tmp = tmp_path_factory.mktemp("diversity")
    xq = load(("en", "zh", "ru"), PARAGRAPHS)
    files = write_corpus(xq, tmp / "corpus")
    copies = tmp / "corpus" / "copies.jsonl"
    with copies.open("w", encoding="utf-8") as fh:
        for p in xq.paragraphs["en"]:
            row = {"id": f"copy/{p.index:03d}", "title": p.title, "text": p.text, "lang": "en"}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    svc = SearchService(Settings(index_dir=tmp / "index", query_batch_ms=0))
    svc.build([*files.values(), copies])
    svc.load()
    return svc


def group_of(article_id: str) -> str:
    return article_id.split("/", 1)[1]


@pytest.mark.model
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_full_diversity_returns_one_member_of_each_paragraph(pool: SearchService, lang: str) -> None:
    questions = load((lang,), PARAGRAPHS).questions[lang][:8]
    crowded = 0
    for q in questions:
        plain = pool.search(SearchQuery(q.text, k=8, mode="dense")).hits
        same = pool.search(SearchQuery(q.text, k=8, mode="dense", diversity=0.0)).hits
        assert [(h.passage.passage_id, h.score) for h in same] == [(h.passage.passage_id, h.score) for h in plain]
        crowded += max(Counter(group_of(h.passage.article_id) for h in plain).values()) > 1
        diverse = pool.search(SearchQuery(q.text, k=8, mode="dense", diversity=1.0)).hits
        groups = [group_of(h.passage.article_id) for h in diverse]
        assert len(groups) == len(set(groups)), (q.text, groups)
        assert diverse[0].passage.passage_id == plain[0].passage.passage_id
    assert crowded == len(questions)  # without diversity the versions of one paragraph do fill the slots
