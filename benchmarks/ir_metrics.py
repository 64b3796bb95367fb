"""Ranking metrics with binary relevance over a ranked list of distinct documents (articles).

With R relevant documents for a query (R = 1 in the monolingual and cross-lingual tasks, R = the number of pool
languages in a mixed pool, where every translation is relevant):

- nDCG@k: DCG of the top k over the ideal DCG of min(R, k) relevant documents at the top.
- Recall@k: relevant documents in the top k over min(R, k) (capped recall). For R = 1 it is hit@k; in a mixed
  pool Recall@1 is "the first hit is a right paragraph, in any language" and Recall@10 the share of the
  translations found in the top 10.
- MRR@k: 1 / rank of the first relevant document in the top k, else 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass


def distinct(ids: Iterable[str], k: int) -> list[str]:
    """The first `k` distinct ids in order: passages of one article count once, at their best rank."""
    out: list[str] = []
    seen: set[str] = set()
    for i in ids:
        if i not in seen:
            seen.add(i)
            out.append(i)
            if len(out) == k:
                break
    return out


def ndcg(ranking: Sequence[str], relevant: set[str], k: int = 10) -> float:
    dcg = sum(1 / math.log2(r + 2) for r, doc in enumerate(ranking[:k]) if doc in relevant)
    ideal = sum(1 / math.log2(r + 2) for r in range(min(len(relevant), k)))
    return dcg / ideal if ideal else 0.0


def recall(ranking: Sequence[str], relevant: set[str], k: int) -> float:
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranking[:k])) / min(len(relevant), k)


def mrr(ranking: Sequence[str], relevant: set[str], k: int = 10) -> float:
    for r, doc in enumerate(ranking[:k], start=1):
        if doc in relevant:
            return 1 / r
    return 0.0


@dataclass(frozen=True)
class Scores:
    """Means over the queries of a task, in [0, 1]."""

    ndcg_at_10: float
    recall_at_1: float
    recall_at_10: float
    mrr_at_10: float
    queries: int

    def as_dict(self) -> dict[str, float | int]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def score(rankings: Sequence[Sequence[str]], qrels: Sequence[set[str]]) -> Scores:
    n = len(rankings)
    if n != len(qrels):
        raise ValueError(f"{n} rankings but {len(qrels)} sets of relevant documents")
    if n == 0:
        return Scores(0.0, 0.0, 0.0, 0.0, 0)

    def mean(values: Iterable[float]) -> float:
        return sum(values) / n

    pairs = list(zip(rankings, qrels, strict=True))
    return Scores(
        ndcg_at_10=mean(ndcg(r, q, 10) for r, q in pairs),
        recall_at_1=mean(recall(r, q, 1) for r, q in pairs),
        recall_at_10=mean(recall(r, q, 10) for r, q in pairs),
        mrr_at_10=mean(mrr(r, q, 10) for r, q in pairs),
        queries=n,
    )
