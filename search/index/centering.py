"""Per-language mean centering, which makes rankings language-neutral.

e5 prefers the query's own language: in a pool of en+zh+ru paragraphs a Chinese query ranks unrelated Chinese
paragraphs above the right English one. Subtracting each language's mean vector (Libovický et al., "On the
Language Neutrality of Pre-trained Multilingual Representations", 2020) removes most of that language identity
from the vectors: passages are centered by their own language's mean, queries by the mean of the query's
language (weighted by the detector's confidences when it is unsure), and both are re-normalized.

A language with too few passages in the index (or none: the query's language may be absent) takes its mean from
the model's mean bank (`search.index.meanbank`) as an offset from the index's own mean, or else the global mean.

Means are estimated over the corpus's text as written, while the passages are what retrieval ranks: a debris
paragraph the chunker joined into a passage (a byline, a caption) is still a sample of its language's mean, so
joining debris changes rankings only through the passages, not through where a language's text is thought to sit.

Query-side means (opt-in per search service, `query_means`): e5 encodes queries with their own prompt, and a
language's queries sit apart from its passages. When the mean bank holds query means, the build stores each
language's query offset (bank query mean minus bank passage mean), and a query is then centered with its
language's passage mean moved by that offset: the index's topic stays, the query's "query-ness" in its language
goes. An index built without them centers queries with passage means, as before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def normalize_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


@dataclass
class Centering:
    """Mean vectors per language (only for languages with enough samples) and over all samples, plus estimated
    means (`borrowed`) for the other languages of the mean bank. `extra_samples` counts, per language, the samples
    that were not passages (joined debris)."""

    global_mean: np.ndarray
    means: dict[str, np.ndarray] = field(default_factory=dict)
    enabled: bool = True
    borrowed: dict[str, np.ndarray] = field(default_factory=dict)
    extra_samples: dict[str, int] = field(default_factory=dict)
    query_offsets: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        vectors: np.ndarray,
        langs: Sequence[str],
        min_passages: int,
        enabled: bool = True,
        bank: Mapping[str, np.ndarray] | None = None,
        extra: tuple[np.ndarray, Sequence[str]] | None = None,
        query_offsets: Mapping[str, np.ndarray] | None = None,
    ) -> Centering:
        """Means of `vectors` (the passages) by `langs`; `extra` vectors and their languages (paragraphs as written
        that are not passages of their own) count as samples of the means too, and toward `min_passages`;
        `query_offsets` (from the mean bank) are kept for query-side centering."""
        offsets = {k: np.asarray(v, dtype=np.float32) for k, v in (query_offsets or {}).items()}
        extra_samples = dict(Counter(extra[1])) if extra is not None else {}
        if extra is not None and len(extra[0]):
            vectors = np.concatenate([vectors, np.asarray(extra[0], dtype=vectors.dtype)])
            langs = [*langs, *extra[1]]
        dim = vectors.shape[1] if vectors.ndim == 2 else 0
        if len(vectors) == 0:
            return cls(np.zeros(dim, dtype=np.float32), {}, enabled, query_offsets=offsets)
        lang_arr = np.asarray(langs)
        counts = Counter(langs)
        means = {
            lang: vectors[lang_arr == lang].mean(axis=0).astype(np.float32)
            for lang, n in counts.items()
            if n >= min_passages
        }
        global_mean = vectors.mean(axis=0).astype(np.float32)
        borrowed = _borrow(global_mean, counts, means, bank or {})
        return cls(global_mean, means, enabled, borrowed, extra_samples, offsets)

    def mean_for(self, lang: str) -> np.ndarray:
        mean = self.means.get(lang)
        if mean is None:
            mean = self.borrowed.get(lang, self.global_mean)
        return mean

    def passages(self, vectors: np.ndarray, langs: Sequence[str]) -> np.ndarray:
        if not self.enabled or len(vectors) == 0:
            return vectors
        shift = np.stack([self.mean_for(lang) for lang in langs])
        return normalize_rows(vectors - shift)

    def query_mean_for(self, lang: str) -> np.ndarray:
        """Where `lang`'s queries sit: its passage mean moved by the bank's query offset, if there is one."""
        offset = self.query_offsets.get(lang)
        mean = self.mean_for(lang)
        return mean if offset is None else mean + offset

    def query(self, vector: np.ndarray, confidences: Mapping[str, float], query_means: bool = False) -> np.ndarray:
        """The query centered with its language's passage mean, or with its query mean when `query_means`."""
        if not self.enabled:
            return vector
        total = sum(confidences.values())
        mean_of = self.query_mean_for if query_means else self.mean_for
        if total <= 0:
            mean = self.global_mean
        else:
            mean = np.sum([(w / total) * mean_of(lang) for lang, w in confidences.items()], axis=0)
        return normalize_rows(vector - mean)

    def save(self, path: Path) -> None:
        arrays = {f"lang_{k}": v for k, v in self.means.items()}
        arrays |= {f"bank_{k}": v for k, v in self.borrowed.items()}
        arrays |= {f"extra_{k}": np.array(n) for k, n in self.extra_samples.items()}
        arrays |= {f"qoff_{k}": v for k, v in self.query_offsets.items()}
        np.savez(path, global_mean=self.global_mean, enabled=np.array(self.enabled), **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: Path) -> Centering:
        with np.load(path) as data:
            means = {k[5:]: data[k] for k in data.files if k.startswith("lang_")}
            borrowed = {k[5:]: data[k] for k in data.files if k.startswith("bank_")}
            extra = {k[6:]: int(data[k]) for k in data.files if k.startswith("extra_")}
            offsets = {k[5:]: data[k] for k in data.files if k.startswith("qoff_")}
            return cls(data["global_mean"], means, bool(data["enabled"]), borrowed, extra, offsets)

    def describe(self) -> dict[str, object]:
        return {
            "enabled": self.enabled,
            "languages": sorted(self.means),
            "bank_languages": sorted(self.borrowed),
            "extra_samples": dict(sorted(self.extra_samples.items())),
            "query_mean_languages": sorted(self.query_offsets),
        }


def _borrow(
    global_mean: np.ndarray, counts: Counter[str], own: Mapping[str, np.ndarray], bank: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Means for the bank's languages the index has no mean of: the index's mean moved by the bank's offset
    between that language and the index's language mix (weighted by passage counts)."""
    covered = {lang: n for lang, n in counts.items() if lang in bank}
    missing = [lang for lang in bank if lang not in own]
    if not covered or not missing:
        # Without a language in common the bank's offsets have no anchor in this index.
        return {}
    total = sum(covered.values())
    anchor = np.sum([(n / total) * bank[lang] for lang, n in covered.items()], axis=0)
    return {lang: (global_mean + bank[lang] - anchor).astype(np.float32) for lang in missing}
