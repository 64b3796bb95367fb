"""Batch similarity reports, computation only: the article matrix and alignment, on top of the labels and groups of
`search.index.translations` (kNN per language, calibrated translation and near-duplicate labels), re-exported here.

Everything here works on arrays (centered, normalized vectors and integer codes for languages and articles).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from search.index.translations import (
    LABELS,
    MARGIN_K,
    NEAR_DUPLICATE,
    RELATED,
    TRANSLATION,
    LabelOptions,
    LangTable,
    Neighbours,
    PairCalibration,
    Pairs,
    fdr_threshold,
    groups,
    knn_block,
    knn_by_lang,
    label_pairs,
    lang_tables,
    margins,
)
from search.timing import Progress, no_progress

__all__ = [
    "LABELS",
    "MARGIN_K",
    "NEAR_DUPLICATE",
    "RELATED",
    "TRANSLATION",
    "ArticleMatrix",
    "LabelOptions",
    "LangTable",
    "Neighbours",
    "PairCalibration",
    "Pairs",
    "Progress",
    "align",
    "article_matrix",
    "fdr_threshold",
    "groups",
    "knn_block",
    "knn_by_lang",
    "knn_pairs",
    "label_pairs",
    "lang_tables",
    "margins",
    "no_progress",
]


@dataclass
class ArticleMatrix:
    """Long format: for article a and article b, a's paragraphs, those with a labelled pair in b, best scores."""

    a: np.ndarray
    b: np.ndarray
    paragraphs: np.ndarray
    matched: np.ndarray
    share: np.ndarray
    mean_best: np.ndarray
    pairs: np.ndarray
    rank: np.ndarray  # 1 = b is a's most related article


def article_matrix(
    nb: Neighbours, pairs: Pairs, article: np.ndarray, unit: np.ndarray, within: bool = False
) -> ArticleMatrix:
    """Per article pair, from kNN edges and labelled pairs; pairs of articles that share no edge are left out."""
    n, n_langs, k = nb.ids.shape
    n_art = int(article.max()) + 1 if n else 0
    src = np.concatenate([np.repeat(np.arange(n), n_langs * k), pairs.a, pairs.b])
    dst = np.concatenate([nb.ids.ravel(), pairs.b, pairs.a])
    score = np.concatenate([nb.scores.ravel(), pairs.score, pairs.score])
    labelled = np.concatenate([np.zeros(n * n_langs * k, dtype=bool), np.ones(2 * len(pairs.a), dtype=bool)])
    ok = (dst >= 0) & (within | (article[src] != article[np.maximum(dst, 0)]))
    src, dst, score, labelled = src[ok], dst[ok], score[ok], labelled[ok]
    unit_article = np.zeros(int(unit.max()) + 1 if n else 0, dtype=np.int64)
    unit_article[unit] = article
    keys, inv = np.unique(unit[src].astype(np.int64) * n_art + article[dst], return_inverse=True)
    best = np.full(len(keys), -np.inf)
    np.maximum.at(best, inv, score)
    matched = np.zeros(len(keys), dtype=np.int64)
    np.maximum.at(matched, inv, labelled.astype(np.int64))
    art_a = unit_article[keys // max(n_art, 1)]
    pair_keys, inv2 = np.unique(art_a * n_art + keys % max(n_art, 1), return_inverse=True)
    counted = np.bincount(inv2)
    a, b = pair_keys // max(n_art, 1), pair_keys % max(n_art, 1)
    paragraphs = np.bincount(unit_article, minlength=n_art)[a]
    n_matched = np.bincount(inv2, weights=matched).astype(np.int64)
    mean_best = np.bincount(inv2, weights=best) / np.maximum(counted, 1)
    pa, pb = article[pairs.a], article[pairs.b]
    pk = np.concatenate([pa * n_art + pb, pb * n_art + pa])
    pk = np.concatenate([pk[: len(pa)], pk[len(pa) :][pa != pb]])
    n_pairs = np.zeros(len(pair_keys), dtype=np.int64)
    pos = np.searchsorted(pair_keys, pk)
    inside = pos < len(pair_keys)
    inside[inside] &= pair_keys[pos[inside]] == pk[inside]
    np.add.at(n_pairs, pos[inside], 1)
    share = n_matched / np.maximum(paragraphs, 1)
    order = np.lexsort((-mean_best, -share, a))
    rank = np.empty(len(a), dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(a[order])) + 1]
    rank[order] = np.arange(len(a)) - np.repeat(starts, np.diff(np.r_[starts, len(a)])) + 1
    return ArticleMatrix(a, b, paragraphs, n_matched, share, mean_best, n_pairs, rank)


def align(scores: np.ndarray, threshold: float) -> list[tuple[list[int], list[int], float]]:
    """Monotone alignment of two passage sequences (Needleman-Wunsch with free gaps and 2:1 / 1:2 merges).

    A match gains score - threshold, so only pairs above the threshold are worth aligning. Returns aligned groups
    (rows of A, rows of B, mean score) in order; unaligned rows are left out.
    """
    na, nb = scores.shape
    gain = scores - threshold
    f = np.zeros((na + 1, nb + 1))
    # the move into each cell: 0 skip B, 1 skip A, 2 one to one, 3 two of A to one of B, 4 one of A to two of B
    move = np.zeros((na + 1, nb + 1), dtype=np.int8)
    neg = np.full(nb, -np.inf)
    for i in range(1, na + 1):
        g = gain[i - 1]
        cands = [f[i - 1, 1:], f[i - 1, :-1] + g]
        if i >= 2:
            cands.append(np.where((g > 0) & (gain[i - 2] > 0), f[i - 2, :-1] + gain[i - 2] + g, -np.inf))
        else:
            cands.append(neg)
        pair_b = np.r_[-np.inf, g[:-1] + g[1:]]
        ok_b = np.r_[False, (g[:-1] > 0) & (g[1:] > 0)]
        cands.append(np.where(ok_b, np.r_[-np.inf, f[i - 1, :-2]] + pair_b, -np.inf) if nb >= 2 else neg)
        stack = np.vstack(cands)
        choice = stack.argmax(axis=0)
        best = stack[choice, np.arange(nb)]
        f[i, 1:] = np.maximum.accumulate(np.r_[0.0, best])[1:]
        move[i, 1:] = np.where(best >= f[i, :-1], choice + 1, 0)
    out: list[tuple[list[int], list[int], float]] = []
    i, j = na, nb
    while i > 0 and j > 0:
        m = int(move[i, j])
        if m == 0:
            j -= 1
        elif m == 1:
            i -= 1
        else:
            rows_a = [i - 2, i - 1] if m == 3 else [i - 1]
            rows_b = [j - 2, j - 1] if m == 4 else [j - 1]
            out.append((rows_a, rows_b, float(np.mean(scores[np.ix_(rows_a, rows_b)]))))
            i, j = i - len(rows_a), j - len(rows_b)
    return out[::-1]


def knn_pairs(
    vectors: np.ndarray,
    langs: Sequence[str],
    article_ids: Sequence[str],
    k: int = 10,
    batch: int = 2048,
    progress: Progress = no_progress,
) -> Pairs:
    """kNN and labelled pairs straight from vectors (the benchmark's entry; rows grouped by language avoid a copy)."""
    lang_names, lang = np.unique(np.asarray(langs), return_inverse=True)
    group = np.unique(np.asarray(article_ids), return_inverse=True)[1]
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    nb = knn_by_lang(x, lang, len(lang_names), group, k, batch, progress=progress)
    return label_pairs(x, nb, lang, [str(n) for n in lang_names], group, np.full(len(x), 100))
