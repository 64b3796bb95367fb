"""`SearchService`: the one object that the API, the CLI and reports call."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from search.config import Settings
from search.embedding import Embedder, SentenceTransformerEmbedder
from search.errors import BadInput, IndexMismatch
from search.indexer import BuildSummary, build_index
from search.language import LanguageDetector
from search.records import Hit, Passage
from search.store import ArticleInfo, Store, read_manifest

log = logging.getLogger(__name__)

# Extra candidates fetched beyond k so that ties at the cut are broken by passage id, not by FAISS order.
_TIE_SLACK = 8


@dataclass(frozen=True)
class SearchQuery:
    query: str
    k: int = 10
    langs: Sequence[str] = ()
    articles: Sequence[str] = ()


@dataclass
class SearchResult:
    query: str
    query_lang: str
    took_ms: float
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
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                s = self.settings
                self._embedder = SentenceTransformerEmbedder(s.model, s.cache_dir, s.threads, s.batch_size)
            return self._embedder

    @property
    def detector(self) -> LanguageDetector:
        with self._lock:
            if self._detector is None:
                self._detector = LanguageDetector(self.settings.languages)
            return self._detector

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

    def build(self, paths: Sequence[Path | str], index_dir: Path | None = None, progress: bool = False) -> BuildSummary:
        s = self.settings
        return build_index(
            paths,
            index_dir or s.index_dir,
            self.embedder,
            self.detector,
            centering=s.centering,
            centering_min_passages=s.centering_min_passages,
            progress=progress,
            embedding_cache=s.embedding_cache,
        )

    def validate(self, q: SearchQuery) -> None:
        if not q.query.strip():
            raise BadInput("query: must not be blank")
        if len(q.query) > self.settings.max_query_chars:
            raise BadInput(f"query: {len(q.query)} characters; at most {self.settings.max_query_chars} are allowed")
        if not 1 <= q.k <= self.settings.max_k:
            raise BadInput(f"k: {q.k} is outside 1..{self.settings.max_k}")

    def search(self, q: SearchQuery) -> SearchResult:
        return self.search_many([q])[0]

    def search_many(self, queries: Sequence[SearchQuery]) -> list[SearchResult]:
        """Answer several queries with one model call: encoding dominates the cost of a search."""
        for q in queries:
            self.validate(q)
        store, detector = self.store, self.detector
        start = time.perf_counter()
        guesses = [detector.detect(q.query) for q in queries]
        vectors = self._query_vectors([q.query for q in queries])
        results = []
        for q, guess, vector in zip(queries, guesses, vectors, strict=True):
            xq = store.centering.query(vector, guess.confidences)
            found = store.search(xq, q.k + _TIE_SLACK, store.rows_where(q.langs, q.articles))
            passages = store.passages_at(r for r, _ in found)
            ranked = sorted(((s, passages[r]) for r, s in found), key=lambda sp: (-round(sp[0], 6), sp[1].passage_id))
            hits = [Hit(rank, score, p) for rank, (score, p) in enumerate(ranked[: q.k], start=1)]
            results.append(SearchResult(q.query, guess.lang, 0.0, hits))
        took = (time.perf_counter() - start) * 1000 / max(1, len(queries))
        for r in results:
            r.took_ms = took
        return results

    def _query_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Query vectors through an LRU cache keyed by the exact text: agents and UIs repeat queries."""
        cache, size = self._query_cache, self.settings.query_cache_size
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in cache))
        if missing:
            fresh = self.embedder.encode(missing, query=True)
            with self._lock:
                for t, v in zip(missing, fresh, strict=True):
                    cache[t] = v
                while len(cache) > size:
                    cache.popitem(last=False)
        with self._lock:
            out = []
            for t in texts:
                vec = cache.get(t)
                if vec is None:  # evicted by a concurrent caller between the two steps
                    vec = self.embedder.encode([t], query=True)[0]
                else:
                    cache.move_to_end(t)
                out.append(vec)
        return np.stack(out)

    def passage(self, passage_id: str) -> Passage:
        return self.store.passage(passage_id)

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
        }
