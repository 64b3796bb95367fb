"""Paging reads ids only for the page and its ties, and still orders ties by passage id."""

from __future__ import annotations

from search.query.ranking import Candidate, head, order
from search.records import PassageKey


def _cands(scores: list[float]) -> list[Candidate]:
    return [Candidate(row, s, {"dense": row + 1}) for row, s in enumerate(scores)]


def test_head_takes_the_page_and_every_tie_at_its_boundary() -> None:
    cands = _cands([0.5, 0.9, 0.7, 0.7, 0.7, 0.1])
    top = head(cands, 2)
    assert top[0].row == 1
    assert sorted(c.row for c in top) == [1, 2, 3, 4]  # 0.9 and the three 0.7s: any of those could be second
    assert sorted(c.row for c in head(cands, 10)) == list(range(6))


def test_ties_at_the_page_boundary_go_to_the_smallest_passage_id() -> None:
    cands = _cands([0.9, 0.7, 0.7, 0.7 + 1e-9, 0.1])
    keys = {0: PassageKey("p-a", "a"), 1: PassageKey("p-d", "a"), 2: PassageKey("p-b", "b"), 3: PassageKey("p-c", "c")}
    top = head(cands, 2)
    page = order(top, {c.row: keys[c.row] for c in top})[:2]
    assert [c.row for c in page] == [0, 2]  # p-b wins the tie with p-c (within 1e-6) and p-d
    full = order(cands, keys | {4: PassageKey("p-e", "e")})
    assert [c.row for c in full[:2]] == [c.row for c in page]
