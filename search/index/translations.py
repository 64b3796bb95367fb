"""Translation and near-duplicate detection between passages: kNN per language, calibrated labels, groups.

The one implementation both the build (translation groups stored with every index, `search.index.build`) and the
similarity reports (`search.reports.compute`) use.

Everything here works on arrays (centered, normalized vectors and integer codes for languages and articles) and
never holds an n x n matrix: each query batch is scored against one language's vectors in blocks and reduced to
its k best with FAISS's heaps, so memory is bounded by `batch x block` scores plus the (n, languages, k) result.

Labels, per unordered language pair (A, B):

- near-duplicate: same language and cosine >= `dup_threshold` (fixed: near-identical texts score close to 1);
- translation: different languages, a mutual best match by margin (bitext mining, Artetxe & Schwenk 2019: the
  cosine minus the mean cosine of both passages' 4 nearest neighbours in the other's language; the difference form,
  as centered cosines can be near 0), character lengths within `length_ratio` of the languages' median ratio
  (Gale & Church), and a margin above the pair's threshold. The threshold comes from target-decoy competition:
  targets are mutual best matches, decoys are the second-best matches of mutual queries and the best matches of
  the others (a passage has at most one translation per language); it is the lowest margin at which decoys above
  it are at most `fdr` times the targets above it. With fewer than 1/`fdr` targets (a few dozen passages) that
  estimate cannot resolve the rate asked for, so a translation must then also be related (below): a mutual best
  match whose cosine is within what random pairs of the two languages reach is no evidence of a translation.
  The build's groups (`translation_groups`, option `mutual_decoys`) are stricter, as a false group hides a hit:
  the decoys also hold the mutual best matches left once every target pair is taken out (`mutual_decoys`) and the
  mutual best matches within each of the two languages (`own_language_decoys`), the threshold is knockoff+
  (`knockoff_threshold`: no group where fewer than 1/`fdr` targets stand above every decoy) and a translation must
  also be related. The decoys within one language are the ones picked as the targets are, the best of N made
  mutual: without them a corpus with no translations (random vectors, or paragraphs of one topic spread over
  languages) got false groups, as the best of N outranks any decoy built from what is left (docs/quality.md);
- related: cosine >= the pair's threshold: the `related_quantile` quantile of the cosines of random passage pairs of
  that language pair (each passage's best match left out), or a fixed `--threshold`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import faiss
import numpy as np

from search.index.vectors import exact_knn
from search.timing import Progress, no_progress

LABELS = ("near-duplicate", "translation", "related")
NEAR_DUPLICATE, TRANSLATION, RELATED = 0, 1, 2
_MAX_SLACK = 256
_BACKGROUND_SAMPLES = 20_000
_RECALL_SAMPLES = 256
MARGIN_K = 4  # neighbours in the margin's denominator, as in Artetxe & Schwenk (2019)


@dataclass
class Neighbours:
    """Each passage's k nearest passages in each language, itself and excluded ones (same article) left out."""

    ids: np.ndarray  # (n, L, k) int64 rows; -1 where fewer than k candidates
    scores: np.ndarray  # (n, L, k) float32 cosine, best first; -inf where ids is -1
    recall: float | None = None  # recall@k of the approximate search against exact search, None when exact


@dataclass(frozen=True)
class PairCalibration:
    """How the thresholds of one language pair were set, and what the pair's scores look like."""

    lang_a: str
    lang_b: str
    related: float
    related_how: str
    translation: float | None = None
    translation_how: str = ""
    near_duplicate: float | None = None
    background: dict[str, float] = field(default_factory=dict)
    targets: int = 0


@dataclass
class Pairs:
    """Labelled passage pairs (rows a < b into the selection), and the calibration that labelled them."""

    a: np.ndarray
    b: np.ndarray
    score: np.ndarray
    margin: np.ndarray
    label: np.ndarray  # int8 index into LABELS
    calibration: list[PairCalibration]
    margins: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # targets, decoys


def _ivf(xb: np.ndarray) -> Any:
    nlist = max(1, min(int(4 * np.sqrt(len(xb))), len(xb) // 39))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(xb.shape[1]), xb.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(xb)
    index.add(xb)
    index.nprobe = max(8, nlist // 16)
    return index


@dataclass
class LangTable:
    """One language's side of the kNN: its rows in the selection, its searchable vectors, and how many neighbours to
    ask for (k plus the slack that excluded ones may take)."""

    li: int
    rows: np.ndarray
    kk: int
    xb: np.ndarray | None  # the language's vectors, searched exactly; None when `index` is given
    index: Any = None  # an IVF index of them (approximate), or None


def lang_tables(
    x: np.ndarray, lang: np.ndarray, n_langs: int, group: np.ndarray, k: int, exclude_group: bool, approximate: bool
) -> tuple[list[LangTable], float | None]:
    """The per-language tables the query blocks are searched against, and (approximate) their measured recall@k
    against exact search on a seeded sample of queries."""
    n = len(x)
    tables = []
    found = hit = 0
    for li in range(n_langs):
        rows = np.flatnonzero(lang == li)
        if len(rows) == 0:
            continue
        contiguous = rows[-1] - rows[0] + 1 == len(rows)
        xb = x[rows[0] : rows[-1] + 1] if contiguous else x[rows]
        slack = 1 + (min(int(np.bincount(group[rows]).max()), _MAX_SLACK) if exclude_group else 0)
        index: Any = _ivf(xb) if approximate and len(rows) > 1000 else None
        if index is not None:  # recall@k of this language's index on a random sample of queries
            sample = x[np.random.default_rng(li).choice(n, min(n, _RECALL_SAMPLES), replace=False)]
            approx, exact = index.search(sample, k)[1], exact_knn(sample, xb, k)[1]
            hit += sum(len(np.intersect1d(a[a >= 0], e)) for a, e in zip(approx, exact, strict=True))
            found += int((exact >= 0).sum())
        tables.append(LangTable(li, rows, min(k + slack, len(rows)), None if index is not None else xb, index))
    return tables, (hit / found if found else None)


def knn_block(
    x: np.ndarray,
    group: np.ndarray,
    tables: Sequence[LangTable],
    n_langs: int,
    k: int,
    start: int,
    stop: int,
    exclude_group: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The (ids, scores) rows of `Neighbours` for the query rows start..stop: the unit of work that a report splits,
    locally or over Ray workers (search/reports/distributed.py)."""
    xq = x[start:stop]
    ids = np.full((len(xq), n_langs, k), -1, dtype=np.int64)
    scores = np.full((len(xq), n_langs, k), -np.inf, dtype=np.float32)
    me = np.arange(start, stop)[:, None]
    for t in tables:
        if t.index is not None:
            d, i = t.index.search(xq, t.kk)
        else:
            assert t.xb is not None
            d, i = exact_knn(xq, t.xb, t.kk)
        glob = np.where(i >= 0, t.rows[np.maximum(i, 0)], -1)
        bad = (glob < 0) | (glob == me)
        if exclude_group:
            bad |= group[np.maximum(glob, 0)] == group[me]
        order = np.argsort(bad, axis=1, kind="stable")[:, :k]
        keep = ~np.take_along_axis(bad, order, 1)
        width = order.shape[1]
        ids[:, t.li, :width] = np.where(keep, np.take_along_axis(glob, order, 1), -1)
        scores[:, t.li, :width] = np.where(keep, np.take_along_axis(d, order, 1), -np.inf)
    return ids, scores


def knn_by_lang(
    x: np.ndarray,
    lang: np.ndarray,
    n_langs: int,
    group: np.ndarray,
    k: int,
    batch: int = 2048,
    exclude_group: bool = True,
    approximate: bool = False,
    progress: Progress = no_progress,
) -> Neighbours:
    """k nearest neighbours of every row among each language's rows, never itself nor (if asked) its own group."""
    n = len(x)
    tables, recall = lang_tables(x, lang, n_langs, group, k, exclude_group, approximate)
    ids = np.full((n, n_langs, k), -1, dtype=np.int64)
    scores = np.full((n, n_langs, k), -np.inf, dtype=np.float32)
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        ids[start:stop], scores[start:stop] = knn_block(x, group, tables, n_langs, k, start, stop, exclude_group)
        progress("knn", stop, n)
    return Neighbours(ids, scores, recall)


def margins(nb: Neighbours, lang: np.ndarray, margin_k: int = MARGIN_K) -> tuple[np.ndarray, np.ndarray]:
    """Margin of every neighbour (cosine minus the mean cosine of both sides' `margin_k` nearest neighbours in the
    other's language), and each passage's best match per language by margin (-1 if none)."""
    valid = nb.ids[:, :, :margin_k] >= 0
    avg = np.where(valid, nb.scores[:, :, :margin_k], 0).sum(axis=2) / np.maximum(valid.sum(axis=2), 1)  # (n, L)
    back = avg[np.maximum(nb.ids, 0), lang[:, None, None]]  # each neighbour's mean score in my language
    margin = np.where(nb.ids >= 0, nb.scores - (avg[:, :, None] + back) / 2, -np.inf).astype(np.float32)
    best = np.take_along_axis(nb.ids, margin.argmax(axis=2)[:, :, None], 2)[:, :, 0]
    return margin, np.where(valid.any(axis=2), best, -1)


def mutual_decoys(
    margin: np.ndarray, nb: Neighbours, best: np.ndarray, rows_a: np.ndarray, ia: int, ib: int
) -> np.ndarray:
    """Decoys for the mutual best matches between languages `ia` and `ib` (rows `rows_a` of `ia` against theirs):
    the margins of the mutual best matches once those pairs are taken out (a passage of a mutual pair then matches
    its second best, any other its best), picked for being mutual as the targets are, each pair once. Where a
    corpus holds translations they are the next paragraphs on the same topic.
    """
    order = np.argsort(-margin[:, [ia, ib]], axis=2, kind="stable")
    ids = np.take_along_axis(nb.ids[:, [ia, ib]], order, 2)
    mar = np.take_along_axis(margin[:, [ia, ib]], order, 2)
    first = ids[:, :, 0]
    second = np.where(mar[:, :, 1] > -np.inf, ids[:, :, 1], -1) if ids.shape[2] > 1 else np.full(first.shape, -1)
    rows = np.arange(len(ids))
    other = np.where(np.isin(rows, rows_a), 1, 0)  # column of the other language: ib for rows of ia, else ia
    own = 1 - other
    partner = first[rows, other]
    mutual = (partner >= 0) & (first[np.maximum(partner, 0), own] == rows)
    # the target edges taken out: a passage in a mutual pair now matches its second best, any other its best
    after = np.where(mutual, second[rows, other], partner)
    after_m = np.where(mutual, mar[rows, other, 1], mar[rows, other, 0])
    alt = after[rows_a]
    decoy = (alt >= 0) & (after[np.maximum(alt, 0)] == rows_a)
    return after_m[rows_a[decoy]]


def own_language_decoys(margin: np.ndarray, best: np.ndarray, lang: np.ndarray, li: int) -> np.ndarray:
    """Decoys from one language alone: the margins of the mutual best matches between passages of language `li`,
    each pair once. Once centered, a passage's closest passage in its own language is what its closest passage in
    another language would be if the corpus held no translation of it (the next paragraph on the same topic, or in
    random vectors any other vector), and it is picked as the targets are, a mutual best match among N. A same-
    language pair scores higher than the same pair across languages would, so these decoys are conservative.
    """
    rows = np.flatnonzero(lang == li)
    partner = best[rows, li]
    mutual = (partner > rows) & (best[np.maximum(partner, 0), li] == rows)
    return margin[rows[mutual], li].max(axis=1)


def knockoff_threshold(targets: np.ndarray, decoys: np.ndarray, fdr: float) -> float:
    """Lowest score t with (1 + decoys >= t) / (targets >= t) <= fdr (knockoff+, Barber & Candes 2015: the +1
    bounds the rate even where few pairs are found, so fewer than 1/fdr targets give none); inf when none qualifies."""
    t_sorted = np.sort(targets)[::-1]
    d_sorted = np.sort(decoys)
    n_dec = len(d_sorted) - np.searchsorted(d_sorted, t_sorted, side="left")
    ok = 1 + n_dec <= fdr * np.arange(1, len(t_sorted) + 1)
    return float(t_sorted[np.flatnonzero(ok)[-1]]) if ok.any() else float("inf")


def fdr_threshold(targets: np.ndarray, decoys: np.ndarray, fdr: float) -> float:
    """Lowest score t with (decoys >= t) / (targets >= t) <= fdr; inf when none qualifies."""
    t_sorted = np.sort(targets)[::-1]
    d_sorted = np.sort(decoys)
    n_dec = len(d_sorted) - np.searchsorted(d_sorted, t_sorted, side="left")
    ok = n_dec <= fdr * np.arange(1, len(t_sorted) + 1)
    return float(t_sorted[np.flatnonzero(ok)[-1]]) if ok.any() else float("inf")


@dataclass(frozen=True)
class LabelOptions:
    """How pairs are labelled; see the module docstring."""

    thresholds: Mapping[str, float] = field(default_factory=dict)
    related_quantile: float = 0.999
    dup_threshold: float = 0.9
    fdr: float = 0.05
    length_ratio: float = 2.0
    exclude_group: bool = True
    seed: int = 0
    mutual_decoys: bool = False  # decoys picked as targets are, with knockoff+ (the build's groups; see below)


def _edges(nb: Neighbours, margin: np.ndarray) -> tuple[np.ndarray, ...]:
    """The kNN edges as unordered pairs a < b, each once, with cosine and margin (both symmetric)."""
    n, n_langs, k = nb.ids.shape
    src = np.repeat(np.arange(n), n_langs * k)
    dst, cos, mar = nb.ids.ravel(), nb.scores.ravel(), margin.ravel()
    fwd, rev = dst > src, (dst >= 0) & (dst < src)
    a, b = np.r_[src[fwd], dst[rev]], np.r_[dst[fwd], src[rev]]
    _, first = np.unique(a * n + b, return_index=True)
    return a[first], b[first], np.r_[cos[fwd], cos[rev]][first], np.r_[mar[fwd], mar[rev]][first]


def label_pairs(
    x: np.ndarray,
    nb: Neighbours,
    lang: np.ndarray,
    lang_names: Sequence[str],
    group: np.ndarray,
    length: np.ndarray,
    options: LabelOptions | None = None,
) -> Pairs:
    """Calibrate thresholds per language pair and label the kNN edges that pass them."""
    o = options or LabelOptions()
    margin, best = margins(nb, lang)
    a, b, cos, mar = _edges(nb, margin)
    la, lb = lang[a], lang[b]
    mutual = (best[a, lb] == b) & (best[b, la] == a)
    log_len = np.log(np.maximum(length, 1))
    label = np.full(len(a), -1, dtype=np.int8)
    rng = np.random.default_rng(o.seed)
    calibration, curves = [], {}
    for ia, ib in ((i, j) for i in range(len(lang_names)) for j in range(i, len(lang_names))):
        name_a, name_b = lang_names[ia], lang_names[ib]
        rows_a, rows_b = np.flatnonzero(lang == ia), np.flatnonzero(lang == ib)
        if len(rows_a) == 0 or len(rows_b) == 0:
            continue
        sel = (np.minimum(la, lb) == ia) & (np.maximum(la, lb) == ib)
        i = rows_a[rng.integers(0, len(rows_a), _BACKGROUND_SAMPLES)]
        j = rows_b[rng.integers(0, len(rows_b), _BACKGROUND_SAMPLES)]
        ok = (i != j) & ~(o.exclude_group & (group[i] == group[j])) & (best[i, ib] != j) & (best[j, ia] != i)
        bg = np.einsum("ij,ij->i", x[i[ok]], x[j[ok]]) if ok.any() else np.zeros(1, dtype=np.float32)
        quantiles = (0.5, 0.9, 0.99, o.related_quantile)
        background = {f"q{q:g}": round(float(np.quantile(bg, q)), 4) for q in quantiles}
        pair_key = f"{name_a}-{name_b}"
        if pair_key in o.thresholds or "*" in o.thresholds:
            t_rel, how = o.thresholds.get(pair_key, o.thresholds.get("*", 0.0)), "fixed by --threshold"
        else:
            t_rel = float(np.quantile(bg, o.related_quantile))
            how = (
                f"quantile {o.related_quantile:g} of the cosines of {int(ok.sum())} random {pair_key} pairs "
                "(each passage's best match left out, so that translations do not raise it)"
            )
        cal = PairCalibration(name_a, name_b, round(t_rel, 4), how, background=background)
        label[sel & (cos >= t_rel)] = RELATED
        if ia == ib:
            label[sel & (cos >= o.dup_threshold)] = NEAR_DUPLICATE
            calibration.append(replace(cal, near_duplicate=o.dup_threshold))
            continue
        expected = np.median(log_len[rows_a]) - np.median(log_len[rows_b])
        fits = np.abs(log_len[a] - log_len[b] - np.where(la == ia, expected, -expected)) <= np.log(o.length_ratio)
        queries = np.r_[rows_a, rows_b]
        other = np.where(lang[queries] == ia, ib, ia)
        ranked = np.sort(margin[queries, other], axis=1)
        partner = best[queries, other]
        q_mutual = (partner >= 0) & (best[np.maximum(partner, 0), lang[queries]] == queries)
        q_diff = np.where(lang[queries] == ia, 1, -1) * (log_len[queries] - log_len[np.maximum(partner, 0)])
        q_fits = np.abs(q_diff - expected) <= np.log(o.length_ratio)
        targets = ranked[q_mutual & q_fits, -1]
        decoys = np.r_[ranked[q_mutual, -2], ranked[~q_mutual & q_fits, -1]]
        targets, decoys = targets[np.isfinite(targets)], decoys[np.isfinite(decoys)]
        t_tr = fdr_threshold(targets, decoys, o.fdr)
        tr_how = (
            f"mutual best match by margin ({MARGIN_K} neighbours), length ratio within {o.length_ratio:g}x of the "
            f"languages' median ({np.exp(expected):.2f}), and margin >= the lowest value where decoys above it are at "
            f"most {o.fdr:g} x targets above it (targets: {len(targets)} mutual best matches; decoys: {len(decoys)} "
            "second-best and non-mutual best matches)"
        )
        # Too few targets for the decoys to bound the rate asked for: the cosine must stand out from random pairs too,
        # and there must be enough distinct random pairs for that to mean anything: a pair tops m random ones by
        # chance 1 in m + 1, so fewer than 1/fdr of them (two passages a language) can bound no rate at all.
        underpowered = len(targets) * o.fdr < 1
        if underpowered:
            tr_how += f"; fewer than {1 / o.fdr:g} targets, so also related (cosine >= {t_rel:.4f})"
            distinct = len(np.unique(i[ok] * len(x) + j[ok]))
            if distinct * o.fdr < 1:
                t_tr = float("inf")
                tr_how += f", of which {distinct} distinct random pairs cannot tell: none labelled"
        candidate = sel & mutual & fits & (mar >= t_tr) & ((cos >= t_rel) | (not underpowered))
        if o.mutual_decoys:
            own = np.r_[own_language_decoys(margin, best, lang, ia), own_language_decoys(margin, best, lang, ib)]
            decoys = np.r_[decoys, mutual_decoys(margin, nb, best, rows_a, ia, ib), own]
            t_tr = knockoff_threshold(targets, decoys, o.fdr)
            tr_how = (
                f"mutual best match by margin ({MARGIN_K} neighbours), length ratio within {o.length_ratio:g}x of "
                f"the languages' median ({np.exp(expected):.2f}), and margin >= the lowest value where 1 + the "
                f"decoys above it are at most {o.fdr:g} x the targets above it (knockoff+; targets: "
                f"{len(targets)} mutual best matches; decoys: {len(decoys)} second-best, non-mutual best, "
                f"mutual best matches once the targets are taken out, and {len(own)} mutual best matches within "
                f"{name_a} and within {name_b})"
            )
            candidate = sel & mutual & fits & (mar >= t_tr) & (cos >= t_rel)
        label[candidate] = TRANSLATION
        calibration.append(replace(cal, translation=round(t_tr, 4), translation_how=tr_how, targets=len(targets)))
        curves[(name_a, name_b)] = (targets, decoys)
    found = label >= 0
    return Pairs(a[found], b[found], cos[found], mar[found], label[found], calibration, curves)


def groups(pairs: Pairs, n: int, labels: Sequence[int] = (NEAR_DUPLICATE, TRANSLATION)) -> list[np.ndarray]:
    """Connected components of the edges labelled `labels` (near-duplicates and translations), largest first (rows,
    sorted)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    strong = np.isin(pairs.label, labels)
    graph = coo_matrix((np.ones(int(strong.sum())), (pairs.a[strong], pairs.b[strong])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    sizes = np.bincount(comp)
    order = np.argsort(comp, kind="stable")
    cuts = np.split(order, np.cumsum(sizes)[:-1])
    return sorted((c for c in cuts if len(c) > 1), key=lambda c: (-len(c), c[0]))


@dataclass(frozen=True)
class TranslationGroups:
    """The translation group of every passage of a build: `group[row]` is -1 for a passage without translations."""

    group: np.ndarray  # (n,) int64
    pairs: int  # translation pairs found
    approximate: bool  # kNN by IVF per language (large builds) rather than exact

    @property
    def count(self) -> int:
        return int(self.group.max()) + 1 if len(self.group) else 0

    def describe(self) -> dict[str, Any]:
        return {
            "groups": self.count,
            "passages_in_groups": int((self.group >= 0).sum()),
            "pairs": self.pairs,
            "knn": "approximate (IVF per language)" if self.approximate else "exact",
        }


# Above this many passages the build's kNN runs on IVF per language (as `search report --approximate`): exact kNN
# costs n^2 inner products.
EXACT_MAX = 50_000


def translation_groups(
    x: np.ndarray, langs: Sequence[str], lengths: Sequence[int], k: int = 10, fdr: float = 0.1
) -> TranslationGroups:
    """Groups of passages that translate each other, from centered, normalized vectors (rows of one build).

    The calibrated `translation` label of the reports, with nothing excluded as "same article": an article may hold
    its own translations (the seed interleaves English paragraphs with their Chinese versions). Near-duplicates are
    not joined: they are one language, and the groups are about a passage's other languages.
    """
    n = len(x)
    group = np.full(n, -1, dtype=np.int64)
    names, lang = np.unique(np.asarray(langs, dtype=str), return_inverse=True) if n else (np.array([]), np.zeros(0))
    approximate = n > EXACT_MAX
    if len(names) < 2:
        return TranslationGroups(group, 0, approximate)
    x = np.ascontiguousarray(x, dtype=np.float32)
    lang = lang.astype(np.int64)
    own = np.arange(n)  # each passage its own "group": only itself is left out of its neighbours
    nb = knn_by_lang(x, lang, len(names), own, k, exclude_group=False, approximate=approximate)
    # Decoys picked as the targets are: the reports' decoys (second-best and non-mutual best matches) let a few
    # mutual best matches of unrelated passages through, and a false group hides hits from a search where a report
    # only lists one pair too many. The decoys from within each language are conservative (a same-language pair
    # scores above the same pair across languages), so the build's `fdr` is 0.1: 10 targets, 5 pairs counted from
    # both sides, above every decoy before any is grouped (docs/quality.md: no false pair on random vectors or
    # XQuAD pools without translations, 704 of XQuAD's 720 true pairs in groups).
    options = LabelOptions(fdr=fdr, exclude_group=False, mutual_decoys=True)
    pairs = label_pairs(x, nb, lang, [str(s) for s in names], own, np.asarray(lengths), options)
    for i, rows in enumerate(groups(pairs, n, labels=(TRANSLATION,))):
        group[rows] = i
    return TranslationGroups(group, int((pairs.label == TRANSLATION).sum()), approximate)
