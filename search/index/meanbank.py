"""A model's per-language mean vectors from a multilingual reference corpus, for languages an index lacks.

Centering subtracts each language's mean. An index knows the means of its own languages only, so a Chinese
query against an English-only index used to be centered with the English mean: the language identity of the
query stayed in its vector (XQuAD zh->en 82.7 against 85.3 with the zh mean; en->zh 80.9 against 88.1). The bank
holds one mean per language measured on parallel text (the same paragraphs in every language), and centering
takes a missing language's mean from it as an offset: `index mean + (bank[lang] - bank mean of the index's
languages)`, so the topic of the index stays and only the language moves.

Banks are keyed by the model fingerprint (vectors of another model or backend would not match). The default
model's bank ships in the package (`search/index/data/meanbanks/`), computed by `search bank` from the XQuAD paragraphs
in `data/xquad/` (CC BY-SA 4.0). `search bank FILES --model M` computes one for any model from a JSONL of
`{"lang": ..., "text": ...}` lines, stored in the cache folder, which is looked up first.

A bank may also hold per-language means of *query* vectors (questions encoded with the query prompt): e5's
queries and passages of one language do not sit around the same point, so a query centered with the passage mean
keeps part of its language identity. Their offset from the passage mean of the same language (`query_offsets`)
moves an index's passage mean to where that language's queries sit (docs/quality.md#query-side-means). A bank
without them (an older file, or `search bank` given passages only) still works: queries use the passage means.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from search.errors import BadInput
from search.model.embedders import Embedder

# A mean of fewer texts is too noisy to stand in for a language.
MIN_TEXTS = 50


@dataclass(frozen=True)
class MeanBank:
    """Raw (uncentered) mean passage vectors per language, with the text counts and where they came from; and,
    optionally, raw mean query vectors per language with their counts and source."""

    means: Mapping[str, np.ndarray] = field(default_factory=dict)
    counts: Mapping[str, int] = field(default_factory=dict)
    source: str = ""
    query_means: Mapping[str, np.ndarray] = field(default_factory=dict)
    query_counts: Mapping[str, int] = field(default_factory=dict)
    query_source: str = ""

    def __bool__(self) -> bool:
        return bool(self.means)

    def query_offsets(self) -> dict[str, np.ndarray]:
        """Per language with both means: where its queries sit relative to its passages."""
        means = self.means
        return {lang: (q - means[lang]).astype(np.float32) for lang, q in self.query_means.items() if lang in means}

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {"source": self.source, "languages": sorted(self.means)}
        if self.query_means:
            out |= {"query_source": self.query_source, "query_languages": sorted(self.query_means)}
        return out

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        arrays = {f"lang_{k}": v.astype(np.float32) for k, v in self.means.items()}
        arrays |= {f"query_{k}": v.astype(np.float32) for k, v in self.query_means.items()}
        meta = {"source": self.source, "counts": dict(self.counts)}
        if self.query_means:
            meta |= {"query_source": self.query_source, "query_counts": dict(self.query_counts)}
        np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)  # type: ignore[arg-type]
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> MeanBank:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            means = {k[5:]: data[k].astype(np.float32) for k in data.files if k.startswith("lang_")}
            queries = {k[6:]: data[k].astype(np.float32) for k in data.files if k.startswith("query_")}
        return cls(
            means,
            meta.get("counts", {}),
            meta.get("source", str(path)),
            queries,
            meta.get("query_counts", {}),
            meta.get("query_source", ""),
        )


def shipped_path(fingerprint: str) -> Path:
    return Path(str(resources.files("search.index") / "data" / "meanbanks" / f"{fingerprint}.npz"))


def cache_path(cache_dir: Path, fingerprint: str) -> Path:
    return cache_dir / "meanbanks" / f"{fingerprint}.npz"


def find_bank(setting: str, fingerprint: str, cache_dir: Path) -> MeanBank:
    """The bank that `setting` names: "auto" (the cache's, else the shipped one, else none), "off", or a path."""
    if setting == "off":
        return MeanBank()
    if setting != "auto":
        path = Path(setting).expanduser()
        if not path.is_file():
            raise BadInput(f"mean_bank: {setting!r} is not a file; give a .npz from `search bank`, 'auto' or 'off'")
        return MeanBank.load(path)
    # "<fp>+onnx-v1": the same weights run by another backend; their vectors agree to a cosine of 0.99+, which is
    # far closer than a language mean needs.
    base = fingerprint.split("+", 1)[0]
    for fp in dict.fromkeys((fingerprint, base)):
        for path in (cache_path(cache_dir, fp), shipped_path(fp)):
            if path.is_file():
                return MeanBank.load(path)
    return MeanBank()


KINDS = ("passage", "query")


def read_texts(path: Path, kind: str = "passage") -> dict[str, list[str]]:
    """Texts per language from a JSONL file of {"lang": ..., "text": ...} lines: those of `kind`, given by an
    optional "kind" field ("passage", the default, or "query": questions for the bank's query means)."""
    by_lang: dict[str, list[str]] = defaultdict(list)
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                lang, text = row["lang"], row["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise BadInput(f'{path}:{n}: expected a JSON object with "lang" and "text" ({exc})') from exc
            if not isinstance(lang, str) or not isinstance(text, str) or not text.strip():
                raise BadInput(f'{path}:{n}: "lang" and "text" must be non-empty strings')
            if row.get("kind", "passage") not in KINDS:
                raise BadInput(f'{path}:{n}: "kind" is {row.get("kind")!r}; give "passage" (the default) or "query"')
            if row.get("kind", "passage") == kind:
                by_lang[lang].append(text)
    return dict(by_lang)


def _check_sizes(texts: Mapping[str, Sequence[str]], what: str) -> None:
    small = sorted(lang for lang, ts in texts.items() if len(ts) < MIN_TEXTS)
    if small:
        raise BadInput(
            f"languages {', '.join(small)} have fewer than {MIN_TEXTS} {what}; a mean of so few is noise: "
            "add texts or leave those languages out"
        )


def compute_bank(
    embedder: Embedder,
    texts: Mapping[str, Sequence[str]],
    source: str,
    queries: Mapping[str, Sequence[str]] | None = None,
    query_source: str = "",
) -> MeanBank:
    """Mean passage vector per language of `texts`, and mean query vector per language of `queries` (encoded
    with the query prompt) when given; every language needs at least MIN_TEXTS of each."""
    _check_sizes(texts, "texts")
    _check_sizes(queries or {}, "queries")
    means = {lang: embedder.encode(list(ts), query=False).mean(axis=0) for lang, ts in texts.items()}
    query_means = {lang: embedder.encode(list(ts), query=True).mean(axis=0) for lang, ts in (queries or {}).items()}
    return MeanBank(
        means,
        {lang: len(ts) for lang, ts in texts.items()},
        source,
        query_means,
        {lang: len(ts) for lang, ts in (queries or {}).items()},
        query_source,
    )
