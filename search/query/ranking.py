"""Turning candidate lists into a ranking: reciprocal rank fusion, translation groups, grouping by article,
diversity, paging."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from search.records import PassageKey, Translations

Ranked = list[tuple[int, float]]  # (row, score), best first


@dataclass(frozen=True)
class Candidate:
    row: int
    score: float
    ranks: dict[str, int]
    translations: tuple[int, ...] = ()  # rows of the other members of its translation group, when they are used


def fuse(lists: Mapping[str, Ranked], weights: Mapping[str, float], k: int = 60) -> list[Candidate]:
    """Reciprocal rank fusion (Cormack et al., 2009): score = sum of weight / (k + rank) over the lists.

    RRF needs no score calibration between BM25 and cosine, which live on unrelated scales.
    """
    scores: dict[int, float] = {}
    ranks: dict[int, dict[str, int]] = {}
    for name, ranked in lists.items():
        w = weights.get(name, 1.0)
        for rank, (row, _) in enumerate(ranked, start=1):
            scores[row] = scores.get(row, 0.0) + w / (k + rank)
            ranks.setdefault(row, {})[name] = rank
    return [Candidate(row, scores[row], ranks[row]) for row in scores]


def fuse_in_language(
    dense: Ranked, lexical: Ranked, same_language: set[int], weights: Mapping[str, float], k: int = 60
) -> list[Candidate]:
    """Hybrid ranking in which the lexical list can never push a cross-language hit out.

    The dense ranking fixes which positions hold passages in the query's language and which hold passages in
    other languages. The query-language positions are refilled, in order, by the reciprocal rank fusion of the
    dense and lexical lists over query-language passages; the other positions keep their dense passages. So a
    word match reorders (or brings in) passages of the query's language only. The score of a hit is its final
    rank expressed as a fusion score, (dense weight + lexical weight) / (k + rank): monotone in the rank and on
    the same scale as RRF; each list's own rank is kept in `ranks`.
    """
    fused = fuse({"dense": [d for d in dense if d[0] in same_language], "lexical": lexical}, weights, k)
    fused.sort(key=lambda c: (-c.score, c.row))
    queue = iter(fused)
    dense_rank = {row: rank for rank, (row, _) in enumerate(dense, start=1)}
    lexical_rank = {row: rank for rank, (row, _) in enumerate(lexical, start=1)}
    placed: set[int] = set()
    rows: list[int] = []
    for row, _ in dense:
        if row not in same_language:
            rows.append(row)
            continue
        for c in queue:
            if c.row not in placed:
                placed.add(c.row)
                rows.append(c.row)
                break
    rows.extend(c.row for c in queue if c.row not in placed)
    total = sum(weights.get(name, 1.0) for name in ("dense", "lexical"))
    out = []
    for rank, row in enumerate(rows, start=1):
        ranks = {}
        if (d := dense_rank.get(row)) is not None:
            ranks["dense"] = d
        if (w := lexical_rank.get(row)) is not None:
            ranks["lexical"] = w
        out.append(Candidate(row, total / (k + rank), ranks))
    return out


def single(name: str, ranked: Ranked) -> list[Candidate]:
    return [Candidate(row, score, {name: rank}) for rank, (row, score) in enumerate(ranked, start=1)]


def tie_key(score: float) -> float:
    """Sort key of a score, best first, that treats scores equal to 1e-6 as tied (float noise across builds)."""
    return -round(score, 6)


def _tie_key(c: Candidate) -> float:
    return tie_key(c.score)


def order(candidates: Sequence[Candidate], keys: Mapping[int, PassageKey]) -> list[Candidate]:
    """Best first; equal scores (to 1e-6) by passage id, so the order never depends on FAISS internals."""
    return sorted(candidates, key=lambda c: (_tie_key(c), keys[c.row].passage_id))


def head(candidates: Sequence[Candidate], n: int) -> list[Candidate]:
    """The candidates that can make the first `n` once `order` breaks ties: the best `n` by score and every
    candidate tied (to 1e-6) with the n-th. Only these need their passage ids read."""
    by_score = sorted(candidates, key=_tie_key)
    if len(by_score) <= n:
        return by_score
    boundary = _tie_key(by_score[n - 1])
    return [c for c in by_score if _tie_key(c) <= boundary]


def group_by_article(
    ranked: Sequence[Candidate], keys: Mapping[int, PassageKey]
) -> tuple[list[Candidate], Counter[str]]:
    """The best candidate of each article, in rank order, and how many candidates each article had."""
    counts: Counter[str] = Counter(keys[c.row].article_id for c in ranked)
    seen: set[str] = set()
    best = []
    for c in ranked:
        article = keys[c.row].article_id
        if article not in seen:
            seen.add(article)
            best.append(c)
    return best, counts


def with_translations(
    ranked: Sequence[Candidate],
    how: Translations,
    group: Mapping[int, int],
    members: Mapping[int, Sequence[int]],
    lang: Mapping[int, str],
    query_lang: str,
) -> list[Candidate]:
    """Apply translation groups to a ranking (best first; `group[row]` is -1 for a passage without translations,
    `members[g]` the rows of group g that the filters let through, in row order, `lang[row]` their languages).

    collapse: one candidate per group, where its best member ranked, at the best member's score; it is the member in
    the query's language if the group has one (the best-ranked such, else the first by row), else the best member,
    and carries the other members as its translations. together: every member, the group's candidates in their
    rank order and then the members that were not candidates (by row), all at the best member's score, next to each
    other where the best member ranked. off, or a passage in no group: unchanged.
    """
    if how == "off":
        return list(ranked)
    position = {c.row: c for c in ranked}
    rank_of = {c.row: i for i, c in enumerate(ranked)}
    out: list[Candidate] = []
    seen: set[int] = set()
    for c in ranked:
        g = group.get(c.row, -1)
        if g < 0:
            out.append(c)
            continue
        if g in seen:
            continue
        seen.add(g)
        rows = [r for r in members.get(g, ()) if r != c.row]
        in_rank = sorted((r for r in rows if r in rank_of), key=rank_of.__getitem__)
        ordered = [c.row, *in_rank, *(r for r in rows if r not in rank_of)]
        if how == "collapse":
            own = [r for r in ordered if lang.get(r) == query_lang]
            shown = own[0] if own else c.row
            found = position.get(shown)
            others = tuple(r for r in ordered if r != shown)
            out.append(Candidate(shown, c.score, dict(found.ranks) if found else {}, others))
        else:
            for r in ordered:
                found = position.get(r)
                base = found if found is not None else Candidate(r, c.score, {})
                out.append(replace(base, score=c.score, translations=tuple(x for x in ordered if x != r)))
    return out


def mmr_pool(n: int) -> int:
    """How many of the best candidates maximal marginal relevance chooses `n` hits from: a few times the page, so
    diversity reorders the relevant head of the ranking and never reaches down to unrelated passages."""
    return max(4 * n, 40)


def diversify(
    ranked: Sequence[Candidate], vectors: np.ndarray, diversity: float, n: int, groups: np.ndarray | None = None
) -> list[Candidate]:
    """The first `n` of `ranked` (best first) re-chosen by maximal marginal relevance (Carbonell and Goldstein,
    1998): each next hit maximizes (1 - diversity) * relevance - diversity * (its highest cosine with a hit already
    chosen). Relevance is the candidate's score scaled to 0..1 over `ranked` (so BM25 and fusion scores work as
    cosine does); `vectors` are the candidates' normalized vectors, row for row. Ties go to the better-ranked
    candidate, so diversity 0 keeps `ranked`'s order. `groups` (the candidates' translation groups, -1 for none)
    makes two members of one group as redundant as identical texts (similarity 1): a translation's cosine to its
    original can sit below that of two paragraphs on one topic, so at diversity 1 a second member of a chosen group
    comes only when nothing else is left."""
    if diversity <= 0 or len(ranked) <= 1:
        return list(ranked[:n])
    scores = np.array([c.score for c in ranked], dtype=np.float64)
    span = scores.max() - scores.min()
    relevance = (scores - scores.min()) / span if span > 0 else np.ones_like(scores)
    sims = np.asarray(vectors, dtype=np.float64) @ np.asarray(vectors, dtype=np.float64).T
    if groups is not None:
        g = np.asarray(groups)
        sims = np.where((g[:, None] == g[None, :]) & (g[:, None] >= 0), np.maximum(sims, 1.0), sims)
    nearest = np.full(len(ranked), -np.inf)  # highest similarity to a chosen hit; none chosen yet
    free = np.ones(len(ranked), dtype=bool)
    chosen: list[int] = []
    for _ in range(min(n, len(ranked))):
        redundancy = np.where(np.isfinite(nearest), nearest, 0.0)
        value = np.where(free, (1 - diversity) * relevance - diversity * redundancy, -np.inf)
        best = int(np.argmax(value))  # argmax takes the first of equals: the better-ranked candidate
        chosen.append(best)
        free[best] = False
        nearest = np.maximum(nearest, sims[best])
    return [ranked[i] for i in chosen]
