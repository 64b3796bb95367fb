"""`SearchService`: the one object that the API, the CLI and reports call."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from search.config import Settings
from search.errors import BadInput, IndexMismatch, NotFound
from search.index.build import BuildSummary, build_from_articles, build_index
from search.index.meanbank import MeanBank, find_bank
from search.index.store import ArticleInfo, Filters, Store, VectorIndexOptions, current_build, read_manifest
from search.ingest.language import LanguageDetector
from search.model.batching import MicroBatcher
from search.model.embedders import Embedder, embedder_for
from search.query.retrieval import Retriever
from search.records import Article, Hit, Passage

log = logging.getLogger(__name__)

MODES = ("dense", "lexical", "hybrid")
# Candidates fetched beyond k for more-like-this, so that dropping the source article's own passages leaves k.
_SAME_ARTICLE_SLACK = 50


@dataclass(frozen=True)
class ArticleMatch:
    article_id: str
    title: str
    score: float
    matched_passages: int


@dataclass(frozen=True)
class SearchQuery:
    """One search: the text, how many hits, how to rank, what to filter, and what to attach to each hit."""

    query: str
    k: int = 10
    langs: Sequence[str] = ()
    articles: Sequence[str] = ()
    mode: str | None = None
    offset: int = 0
    min_score: float | None = None
    published_after: str | None = None
    published_before: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    context: int = 0
    highlight: bool = False
    group_by: str | None = None

    def filters(self) -> Filters:
        return Filters(
            tuple(self.langs), tuple(self.articles), self.published_after, self.published_before, dict(self.metadata)
        )


@dataclass
class SearchResult:
    query: str
    query_lang: str
    took_ms: float
    mode: str = "dense"
    hits: list[Hit] = field(default_factory=list)


class SearchService:
    """Owns the model, the language detector and the loaded index; every edge goes through it."""

    def __init__(
        self,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
        detector: LanguageDetector | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._embedder = embedder
        self._detector = detector
        self._store: Store | None = None
        self._lock = threading.RLock()
        # Called after each model call with (kind, texts, seconds); the API points it at its metrics.
        self.encode_hook: Callable[[str, int, float], None] | None = None
        # One writer at a time; readers never wait for it: a write publishes a new build and swaps the store.
        self._write_lock = threading.Lock()
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        # Query-side model calls: micro-batched on one worker, or (query_batch_ms=0) one at a time under a lock.
        # Either way two calls never share the cores: torch already uses them all for one call.
        self._batcher: MicroBatcher | None = None
        self._model_lock = threading.Lock()

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                self._embedder = embedder_for(self.settings)
            return self._embedder

    @property
    def detector(self) -> LanguageDetector:
        with self._lock:
            if self._detector is None:
                self._detector = LanguageDetector(self.settings.languages)
            return self._detector

    @property
    def mean_bank(self) -> MeanBank:
        """The model's per-language means for languages an index lacks (empty when there is none or it is off)."""
        s = self.settings
        return find_bank(s.mean_bank, self.embedder.fingerprint, s.cache_dir)

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = self.load()
        return self._store

    def load(self, index_dir: Path | None = None) -> Store:
        """Load the published index, checking that it was built with the configured model."""
        index_dir = index_dir or self.settings.index_dir
        folder, manifest = read_manifest(index_dir)
        built = manifest.get("model", {})
        if built.get("name") != self.settings.model:
            raise IndexMismatch(
                f"the index in {index_dir}/ was built with model {built.get('name')!r} but the configured model "
                f"is {self.settings.model!r}: rebuild with `search index PATH --index {index_dir} --model "
                f"{self.settings.model}` or set SEARCH_MODEL={built.get('name')}"
            )
        embedder = self.embedder
        if built.get("fingerprint") != embedder.fingerprint or manifest.get("dimension") != embedder.dimension:
            raise IndexMismatch(
                f"the index in {index_dir}/ was built with another version of {embedder.name!r} (fingerprint "
                f"{built.get('fingerprint')}, now {embedder.fingerprint}): rebuild it with `search index`"
            )
        store = Store(folder, manifest)
        self._store = store
        return store

    def reload(self) -> bool:
        """Serve the build that `current` points at now, if it is not the one being served.

        Searches already running keep the store they started with; new ones get the new store. Nothing is
        dropped or failed, and a broken new build leaves the old one serving (the error is raised).
        """
        folder = current_build(self.settings.index_dir)
        if self._store is not None and folder is not None and folder == self._store.folder:
            return False
        self.load()
        return True

    def _rebuild(self, change: Callable[[list[Article]], list[Article]]) -> BuildSummary:
        s = self.settings
        with self._write_lock:
            articles = change(self.store.all_articles())
            summary = build_from_articles(
                articles, s.index_dir, self.embedder, self.detector,
                centering=s.centering, centering_min_passages=s.centering_min_passages, bank=self.mean_bank,
                embedding_cache=s.embedding_cache, zh_tokenizer=s.zh_tokenizer,
                vector_index=self._vector_index_options(),
            )  # fmt: skip
            self.reload()
            return summary

    def upsert_article(self, article: Article) -> BuildSummary:
        """Add or replace one article; only its new or changed passages are embedded."""
        if not article.text.strip():
            raise BadInput(f"article {article.id!r}: text must not be blank")

        def change(articles: list[Article]) -> list[Article]:
            others = [a for a in articles if a.id != article.id]
            return [*others, article]

        return self._rebuild(change)

    def remove_articles(self, article_ids: Sequence[str]) -> BuildSummary:
        """Delete articles; raises NotFound for ids the index does not hold, and changes nothing then."""
        known = {a.article_id for a in self.store.articles()}
        unknown = [a for a in article_ids if a not in known]
        if unknown:
            raise NotFound(f"no article with id {', '.join(map(repr, unknown))}; see GET /articles")
        if len(set(article_ids)) == len(known):
            raise BadInput("removing every article would leave an empty index; build a new one instead")
        drop = set(article_ids)
        return self._rebuild(lambda articles: [a for a in articles if a.id not in drop])

    def build(
        self,
        paths: Sequence[Path | str],
        index_dir: Path | None = None,
        progress: bool = False,
        strict: bool = False,
    ) -> BuildSummary:
        s = self.settings
        return build_index(
            paths,
            index_dir or s.index_dir,
            self.embedder,
            self.detector,
            centering=s.centering,
            centering_min_passages=s.centering_min_passages,
            bank=self.mean_bank,
            progress=progress,
            embedding_cache=s.embedding_cache,
            strict=strict,
            max_file_bytes=s.max_file_bytes,
            zh_tokenizer=s.zh_tokenizer,
            vector_index=self._vector_index_options(),
        )

    def _vector_index_options(self) -> VectorIndexOptions:
        s = self.settings
        return VectorIndexOptions(s.flat_max, s.memory_budget_mb, s.target_recall)

    def validate(self, q: SearchQuery) -> None:
        if not q.query.strip():
            raise BadInput("query: must not be blank")
        if len(q.query) > self.settings.max_query_chars:
            raise BadInput(f"query: {len(q.query)} characters; at most {self.settings.max_query_chars} are allowed")
        if not 1 <= q.k <= self.settings.max_k:
            raise BadInput(f"k: {q.k} is outside 1..{self.settings.max_k}")
        if q.mode is not None and q.mode not in MODES:
            raise BadInput(f"mode: {q.mode!r} is not one of {', '.join(MODES)}")
        if not 0 <= q.offset <= 10_000:
            raise BadInput(f"offset: {q.offset} is outside 0..10000")
        if not 0 <= q.context <= 10:
            raise BadInput(f"context: {q.context} is outside 0..10")
        if q.group_by not in (None, "article"):
            raise BadInput(f"group_by: {q.group_by!r}; the only grouping is 'article'")
        # Date bounds are compared as text with `published`, so "May 2025" would filter silently wrong.
        for name, value in (("published_after", q.published_after), ("published_before", q.published_before)):
            if value:
                try:
                    datetime.fromisoformat(value)
                except ValueError:
                    raise BadInput(f"{name}: {value!r} is not an ISO date; give YYYY-MM-DD, e.g. 2025-03-01") from None

    def search(self, q: SearchQuery) -> SearchResult:
        return self.search_many([q])[0]

    def search_many(self, queries: Sequence[SearchQuery]) -> list[SearchResult]:
        """Answer several queries with one model call: encoding dominates the cost of a search."""
        for q in queries:
            self.validate(q)
        store, detector = self.store, self.detector
        start = time.perf_counter()
        guesses = [detector.detect(q.query) for q in queries]
        needs_vectors = list(dict.fromkeys(q.query for q in queries if self._mode(q) != "lexical" or q.highlight))
        vectors = dict(zip(needs_vectors, self._query_vectors(needs_vectors), strict=True)) if needs_vectors else {}
        retriever = Retriever(store, self.settings, self._passage_vectors)
        results = []
        for q, guess in zip(queries, guesses, strict=True):
            mode = self._mode(q)
            hits = retriever.run(q, mode, guess, vectors.get(q.query))
            results.append(SearchResult(q.query, guess.lang, 0.0, mode, hits))
        took = (time.perf_counter() - start) * 1000 / max(1, len(queries))
        for r in results:
            r.took_ms = took
        return results

    def _mode(self, q: SearchQuery) -> str:
        return q.mode or self.settings.default_mode

    def _passage_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of passage-side texts (highlight sentences), through the same LRU as queries."""
        prompt_key = "\x00passage\x00"
        return self._query_vectors([prompt_key + t for t in texts])

    def _query_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Query vectors through an LRU cache keyed by the exact text: agents and UIs repeat queries."""
        cache, size = self._query_cache, self.settings.query_cache_size
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in cache))
        if missing:
            fresh = self._encode(missing)
            with self._lock:
                for t, v in zip(missing, fresh, strict=True):
                    cache[t] = v
                while len(cache) > size:
                    cache.popitem(last=False)
        with self._lock:
            found = [cache.get(t) for t in texts]
            for t, vec in zip(texts, found, strict=True):
                if vec is not None:
                    cache.move_to_end(t)
        # Evicted by concurrent callers between the two steps: encoded again, outside the lock (the batching
        # worker takes it to reach the embedder).
        evicted = list(dict.fromkeys(t for t, vec in zip(texts, found, strict=True) if vec is None))
        again = dict(zip(evicted, self._encode(evicted), strict=True)) if evicted else {}
        return np.stack([vec if vec is not None else again[t] for t, vec in zip(texts, found, strict=True)])

    def _encode(self, keys: Sequence[str]) -> np.ndarray:
        """Encode cache keys, together with concurrent searches' keys when micro-batching is on."""
        batcher = self._query_batcher()
        if batcher is not None:
            return batcher.encode(keys)
        with self._model_lock:
            return self._encode_keys(keys)

    def _query_batcher(self) -> MicroBatcher | None:
        s = self.settings
        if s.query_batch_ms <= 0:
            return None
        with self._lock:
            if self._batcher is None:
                self._batcher = MicroBatcher(
                    self._encode_keys, s.query_batch_ms / 1000, s.query_batch_max, s.query_batch_wait_idle
                )
            return self._batcher

    def close(self) -> None:
        """Stop the micro-batching worker (queued encodes fail with ModelUnavailable); a later search starts anew."""
        with self._lock:
            batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.close()

    def _encode_keys(self, keys: Sequence[str]) -> np.ndarray:
        """Encode cache keys: plain texts are queries; keys with the passage marker are passage-side texts."""
        marker = "\x00passage\x00"
        out = np.zeros((len(keys), self.embedder.dimension), dtype=np.float32)
        for is_passage in (False, True):
            idx = [i for i, key in enumerate(keys) if key.startswith(marker) == is_passage]
            if idx:
                texts = [keys[i][len(marker) :] if is_passage else keys[i] for i in idx]
                start = time.perf_counter()
                out[idx] = self.embedder.encode(texts, query=not is_passage)
                if self.encode_hook is not None:
                    self.encode_hook("passage" if is_passage else "query", len(texts), time.perf_counter() - start)
        return out

    def passage(self, passage_id: str) -> Passage:
        return self.store.passage(passage_id)

    def similar_passages(self, passage_id: str, k: int = 10, exclude_same_article: bool = True) -> list[Hit]:
        """More like this: the passages nearest to a passage, in any language."""
        if not 1 <= k <= self.settings.max_k:
            raise BadInput(f"k: {k} is outside 1..{self.settings.max_k}")
        store = self.store
        row = store.row_of(passage_id)
        source = store.passage(passage_id)
        found = store.search(store.vectors_at([row])[0], k + 1 + (_SAME_ARTICLE_SLACK if exclude_same_article else 0))
        passages = store.passages_at(r for r, _ in found)
        keep = [
            (r, s)
            for r, s in found
            if r != row and not (exclude_same_article and passages[r].article_id == source.article_id)
        ]
        keep.sort(key=lambda rs: (-round(rs[1], 6), passages[rs[0]].passage_id))
        return [Hit(i, s, passages[r]) for i, (r, s) in enumerate(keep[:k], start=1)]

    def similar_articles(self, article_id: str, k: int = 10, neighbours: int = 10) -> list[ArticleMatch]:
        """Articles that share the most content with this one, rolled up from its passages' nearest neighbours.

        For each passage of the article its `neighbours` nearest passages in other articles are found; an
        article B scores the mean, over this article's passages, of the best match in B (0 where none of B is
        among the neighbours), and `matched_passages` counts this article's passages that found B at all.
        """
        if not 1 <= k <= self.settings.max_k:
            raise BadInput(f"k: {k} is outside 1..{self.settings.max_k}")
        store = self.store
        rows = store.article_rows(article_id)
        best: dict[str, dict[int, float]] = {}
        for row, xq in zip(rows, store.vectors_at(rows), strict=True):
            found = store.search(xq, neighbours + len(rows))
            passages = store.passages_at(r for r, _ in found)
            for r, score in found:
                other = passages[r].article_id
                if other != article_id:
                    per_row = best.setdefault(other, {})
                    per_row[int(row)] = max(per_row.get(int(row), -1.0), score)
        titles = {a.article_id: a.title for a in store.articles()}
        matches = [
            ArticleMatch(other, titles.get(other, other), sum(scores.values()) / max(1, len(rows)), len(scores))
            for other, scores in best.items()
        ]
        matches.sort(key=lambda m: (-round(m.score, 6), m.article_id))
        return matches[:k]

    def articles(self) -> list[ArticleInfo]:
        return self.store.articles()

    def health(self) -> dict[str, Any]:
        store = self.store
        m = store.manifest
        return {
            "status": "ok",
            "model": m.get("model", {}).get("name"),
            "index_size": store.size,
            "build_id": store.build_id,
            "built_at": m.get("built_at"),
            "centering": m.get("centering"),
            # kind, build and tuned search parameters, measured recall@10 and size: what a search costs and misses
            "vector_index": store.vector_index,
        }
