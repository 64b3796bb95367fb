"""Building an index: read → chunk → language ID → embed (through the cache) → center → write → publish."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from search import __version__
from search.config import ZhTokenizer
from search.errors import BadInput
from search.index.centering import Centering
from search.index.embedcache import EmbeddingCache, text_key
from search.index.meanbank import MeanBank
from search.index.probes import query_probes
from search.index.store import VectorIndexOptions, current_build, discard, new_build_id, publish, write_build
from search.index.translations import translation_groups
from search.ingest.chunking import ChunkerSettings, split_article
from search.ingest.corpus import DEFAULT_MAX_FILE_BYTES, Skipped, describe_problems, read_corpus
from search.ingest.html import HtmlReader
from search.ingest.language import UNDETERMINED, LanguageDetector
from search.model.embedders import Embedder, describe_model
from search.records import Article, Passage
from search.timing import stage

log = logging.getLogger(__name__)


@dataclass
class BuildSummary:
    """What a build did; `search index --json` prints it."""

    articles: int = 0
    passages: int = 0
    embedded: int = 0
    reused: int = 0
    removed: int = 0
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    languages: dict[str, int] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    build_id: str = ""
    index_dir: str = ""
    precision: str = "fp32"  # the encoder's precision profile as run (search/model/precision.py)
    precision_note: str = ""  # why it is not the one asked for (a CPU without it), or empty
    translation_groups: int = 0  # groups of passages that translate each other (search.index.translations)

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["skipped"] = [s.__dict__ for s in self.skipped]
        out["stages"] = {k: round(v, 3) for k, v in self.stages.items()}
        out["seconds"] = round(self.seconds, 3)
        return out


def precision_of(embedder: Embedder) -> tuple[str, str]:
    """The precision an embedder runs in and why it is not the requested one; fp32 for embedders without
    profiles (ONNX, test fakes)."""
    choice = getattr(embedder, "precision_choice", None)
    if choice is None:
        return "fp32", ""
    note = f"{choice.requested} requested, fp32 used: {choice.reason}" if choice.fell_back else ""
    return str(choice.effective), note


def passage_id(article_id: str, text: str, occurrence: int) -> str:
    """Stable across rebuilds: the same text in the same article keeps its id, wherever it moves."""
    raw = f"{article_id}\x1f{text}\x1f{occurrence}".encode()
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class Debris:
    """A debris paragraph the chunker joined into a passage: only a sample of its language's centering mean."""

    text: str
    lang: str


def make_passages(
    articles: Sequence[Article], embedder: Embedder, detector: LanguageDetector, summary: BuildSummary | None = None
) -> list[Passage]:
    """Chunk the articles and identify each passage's language (timed as the `chunk` and `language` stages)."""
    return split_articles(articles, embedder, detector, summary)[0]


def split_articles(
    articles: Sequence[Article], embedder: Embedder, detector: LanguageDetector, summary: BuildSummary | None = None
) -> tuple[list[Passage], list[Debris]]:
    """`make_passages`, plus the debris paragraphs joined into the passages, each with its language detected like
    a passage's."""
    summary = summary or BuildSummary()
    settings = ChunkerSettings(max_tokens=embedder.max_tokens)
    with stage(summary.stages, "chunk"):
        chunked = [(a, split_article(a.text, embedder.count_tokens, settings)) for a in articles]
    with stage(summary.stages, "language"):
        texts = [t for _, c in chunked for t in [*(chunk.text for chunk in c.chunks), *c.debris]]
        langs = iter(detector.detect_many(texts))
    passages = []
    debris: list[Debris] = []
    for article, split in chunked:
        seen: Counter[str] = Counter()
        for c in split.chunks:
            lang = _lang(next(langs), article)
            pid = passage_id(article.id, c.text, seen[c.text])
            seen[c.text] += 1
            passages.append(
                Passage(
                    pid,
                    article.id,
                    article.title,
                    c.paragraph,
                    c.part,
                    c.start,
                    c.end,
                    lang,
                    c.text,
                    c.section,
                    article.page_at(c.start),
                )  # fmt: skip
            )
        debris.extend(Debris(text, _lang(next(langs), article)) for text in split.debris)
    return passages, debris


# Passage vectors for texts, computed elsewhere than the driver's embedder (on Ray: search/index/distributed.py).
PassageEncoder = Callable[[Sequence[str]], np.ndarray]


def embed_with_cache(
    texts: Sequence[str],
    embedder: Embedder,
    cache: EmbeddingCache,
    progress: bool,
    encode: PassageEncoder | None = None,
    counted: int | None = None,
) -> tuple[np.ndarray, int, int]:
    """Vectors for `texts`, embedding (by `embedder`, or `encode` when given) only those the cache lacks; returns
    (vectors, embedded, reused), counting the first `counted` texts (all by default)."""
    cached = cache.get_many(texts)
    missing = list(dict.fromkeys(t for t in texts if text_key(t) not in cached))
    if missing:
        fresh = encode(missing) if encode is not None else embedder.encode(missing, query=False, progress=progress)
        cache.put_many(missing, fresh)
        cached.update({text_key(t): v for t, v in zip(missing, fresh, strict=True)})
    vectors = np.stack([cached[text_key(t)] for t in texts]) if texts else np.zeros((0, embedder.dimension))
    counted = len(texts) if counted is None else counted
    fresh_texts = set(missing)
    embedded = len({t for t in texts[:counted] if t in fresh_texts})
    return vectors.astype(np.float32), embedded, counted - embedded


def build_index(
    paths: Sequence[Path | str],
    index_dir: Path,
    embedder: Embedder,
    detector: LanguageDetector,
    *,
    centering: bool = True,
    centering_min_passages: int = 5,
    bank: MeanBank | None = None,
    progress: bool = False,
    embedding_cache: Path | None = None,
    strict: bool = False,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    html_reader: HtmlReader = "main",
    zh_tokenizer: ZhTokenizer = "jieba",
    vector_index: VectorIndexOptions | None = None,
    encode: PassageEncoder | None = None,
) -> BuildSummary:
    """Index the articles under `paths` into a new build and publish it; the old one stays until then."""
    summary = BuildSummary(index_dir=str(index_dir))
    start = time.perf_counter()
    articles = read_articles(paths, summary, strict=strict, max_file_bytes=max_file_bytes, html_reader=html_reader)
    return build_from_articles(
        articles, index_dir, embedder, detector, summary, start,
        centering=centering, centering_min_passages=centering_min_passages, bank=bank, progress=progress,
        embedding_cache=embedding_cache, zh_tokenizer=zh_tokenizer, vector_index=vector_index, encode=encode,
    )  # fmt: skip


def read_articles(
    paths: Sequence[Path | str],
    summary: BuildSummary,
    *,
    strict: bool = False,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    html_reader: HtmlReader = "main",
) -> list[Article]:
    """The articles under `paths` (timed as the `read` stage; files skipped go into `summary`); BadInput when
    there are none, or with `strict` when a file or line could not be read as is."""
    with stage(summary.stages, "read"):
        report = read_corpus(paths, max_file_bytes, html_reader=html_reader)
    summary.skipped = report.skipped
    if strict and report.skipped:
        raise BadInput(f"--strict: nothing published; {describe_problems(report.skipped)}; fix them or drop --strict")
    if not report.articles:
        names = ", ".join(str(p) for p in paths)
        raise BadInput(f"no articles found in {names}; give .txt, .md, .html or .jsonl files or folders")
    return list(report.articles)


def build_from_articles(
    articles: Sequence[Article],
    index_dir: Path,
    embedder: Embedder,
    detector: LanguageDetector,
    summary: BuildSummary | None = None,
    start: float | None = None,
    *,
    centering: bool = True,
    centering_min_passages: int = 5,
    bank: MeanBank | None = None,
    progress: bool = False,
    embedding_cache: Path | None = None,
    zh_tokenizer: ZhTokenizer = "jieba",
    vector_index: VectorIndexOptions | None = None,
    encode: PassageEncoder | None = None,
) -> BuildSummary:
    """Chunk, identify, embed (through the cache; by `encode` when given), center, write and publish `articles` as
    a new build."""
    summary = summary or BuildSummary(index_dir=str(index_dir))
    start = time.perf_counter() if start is None else start
    summary.precision, summary.precision_note = precision_of(embedder)
    passages, debris = split_articles(articles, embedder, detector, summary)

    index_dir.mkdir(parents=True, exist_ok=True)
    cache_path = embedding_cache or index_dir / "embeddings.sqlite"
    cache = EmbeddingCache(cache_path, embedder.fingerprint, embedder.dimension)
    try:
        with stage(summary.stages, "embed"):
            # One call for passages and debris (each call on Ray starts its actors and loads the model anew); the
            # debris is not counted as embedded or reused: those count passages.
            vectors, summary.embedded, summary.reused = embed_with_cache(
                [p.text for p in passages] + [d.text for d in debris], embedder, cache, progress, encode, len(passages)
            )
            raw, debris_raw = vectors[: len(passages)], vectors[len(passages) :]
    finally:
        cache.close()

    with stage(summary.stages, "center"):
        langs = [p.lang for p in passages]
        bank = bank or MeanBank()
        extra = (debris_raw, [d.lang for d in debris]) if debris else None
        means = Centering.fit(
            raw,
            langs,
            centering_min_passages,
            enabled=centering,
            bank=bank.means,
            extra=extra,
            query_offsets=bank.query_offsets(),
        )
    # Over the whole build: a full build (and a compaction) finds every group again; a write's small segment has none
    # until it is merged (search/index/segments.py).
    with stage(summary.stages, "translations"):
        groups = translation_groups(means.passages(raw, langs), langs, [len(p.text) for p in passages])
    summary.build_id = new_build_id()
    manifest = build_manifest(
        embedder,
        summary.precision,
        articles,
        passages,
        centering_min_passages,
        bank,
        vector_index or VectorIndexOptions(),
    )
    previous = current_build(index_dir)
    with stage(summary.stages, "write"):
        folder = write_build(
            index_dir, summary.build_id, articles, passages, raw, means, manifest, vector_index,
            zh_tokenizer=zh_tokenizer, probes=lambda: query_probes(passages, embedder, means), translations=groups,
        )  # fmt: skip
    try:
        summary.removed = _count_removed(previous, {p.passage_id for p in passages})
        publish(index_dir, folder)
    except BaseException:
        discard(folder)
        raise
    summary.articles = len(articles)
    summary.passages = len(passages)
    summary.languages = dict(Counter(langs))
    summary.translation_groups = groups.count
    summary.seconds = time.perf_counter() - start
    return summary


def build_manifest(
    embedder: Embedder,
    precision: str,
    articles: Sequence[Article],
    passages: Sequence[Passage],
    centering_min_passages: int,
    bank: MeanBank | None,
    vector_index: VectorIndexOptions,
) -> dict[str, Any]:
    """What a full build records of how it was made (store.write_build adds what it wrote); `search index` updates
    a build in place only when these settings are the same (search/index/segments.py `updatable`)."""
    langs = dict(Counter(p.lang for p in passages))
    return {
        "package_version": __version__,
        "model": {
            "name": embedder.name,
            "about": describe_model(embedder.name),
            "fingerprint": embedder.fingerprint,
            "max_tokens": embedder.max_tokens,
            "precision": precision,
        },
        "chunker": ChunkerSettings(max_tokens=embedder.max_tokens).describe(),
        "centering_min_passages": centering_min_passages,
        "vector_index_options": vector_index.describe(),
        "mean_bank": bank.describe() if bank else None,
        "counts": {"articles": len(articles), "passages": len(passages), "languages": langs},
        # what the centering means were fit on: writes refit a language's mean as it outgrows a small fit
        "centering_fit": {"languages": dict(langs)},
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _lang(detected: str, article: Article) -> str:
    """The detected language, or the article's own `lang` metadata when the detector could not tell."""
    given = article.metadata.get("lang")
    return given if detected == UNDETERMINED and isinstance(given, str) else detected


def _count_removed(previous: Path | None, kept: set[str]) -> int:
    import sqlite3

    if previous is None or not (previous / "passages.sqlite").is_file():
        return 0
    db = sqlite3.connect(f"file:{previous / 'passages.sqlite'}?mode=ro", uri=True)
    try:
        old = {r[0] for r in db.execute("SELECT passage_id FROM passages")}
    finally:
        db.close()
    return len(old - kept)
