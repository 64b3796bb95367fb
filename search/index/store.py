"""The index on disk: FAISS vectors, a SQLite passage table and a manifest, published atomically.

Layout of an index folder:

    index/
      current -> builds/<build_id>      symlink, swapped atomically when a build completes
      builds/<build_id>/
        manifest.json                   how it was built, counts, file checksums
        vectors.faiss                   centered, normalized vectors under an id map (id = passage row): exact
                                        (flat) up to a size, else approximate (`search/index/vectors.py`)
        raw.f16.npy                     the model's vectors before centering, float16 (to re-center or rebuild
                                        the index without re-embedding; builds before it wrote float32 raw.npy)
        centering.npz                   per-language and global mean vectors
        passages.sqlite                 passages (with their translation group) and articles
      embeddings.sqlite                 embedding cache shared by all builds

A build is written into its own hidden folder and only then becomes `current`, so a failed or killed build leaves
the previous index untouched and loadable; its files are synced to disk before each rename, and each rename after
it (`search/index/durable.py`), so a write that has returned survives a crash. Writers hold the folder's lock and
name what they have not published yet after themselves (`search/index/writers.py`); the next writer clears what a
dead one left.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from search.config import FLAT_MAX, ZhTokenizer
from search.errors import IndexCorrupt, IndexNotFound, NotFound
from search.index import durable, writers
from search.index import vectors as vi
from search.index.centering import Centering
from search.index.segment import RAW, Segment, is_segment_file, not_found, write_segment
from search.index.translations import TranslationGroups
from search.records import Article, ArticleInfo, Filters, Passage, PassageKey

MANIFEST = "manifest.json"
CENTERING = "centering.npz"
# A segment with up to this many deleted rows is searched for k + that many and the deleted dropped; one with more
# is searched among its live rows only (a selector, slower per query than a few extra candidates).
_OVERFETCH_MAX = 256
_T = TypeVar("_T")

__all__ = ["MANIFEST", "RAW", "Store", "current_build", "file_sha256", "publish", "read_manifest", "write_build"]


@dataclass(frozen=True)
class VectorIndexOptions:
    """How a build chooses and tunes its vector index (`Settings.flat_max`, `memory_budget_mb`, `target_recall`)."""

    flat_max: int | None = None  # None: config.FLAT_MAX
    memory_budget_mb: float | None = None
    target_recall: float = 0.95
    # With Ray: how an ivf_pq_sq8 index of at least `parallel_add_min` vectors is filled (search/index/distributed.py)
    parallel_add: vi.Adder | None = None
    parallel_add_min: int = 0

    def describe(self) -> dict[str, Any]:
        """What the manifest records: a build with other options is rebuilt, not updated (`search index`)."""
        flat_max = FLAT_MAX if self.flat_max is None else self.flat_max
        return {"flat_max": flat_max, "memory_budget_mb": self.memory_budget_mb, "target_recall": self.target_recall}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def new_build_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def current_build(index_dir: Path) -> Path | None:
    link = index_dir / "current"
    if not link.exists():
        return None
    return link.resolve()


def write_build(
    index_dir: Path,
    build_id: str,
    articles: Sequence[Article],
    passages: Sequence[Passage],
    raw: np.ndarray,
    centering: Centering,
    manifest: dict[str, Any],
    options: VectorIndexOptions | None = None,
    *,
    zh_tokenizer: ZhTokenizer = "jieba",
    probes: Callable[[], vi.TuningQueries] | None = None,
    translations: TranslationGroups | None = None,
) -> Path:
    """Write a complete build folder (not yet published) and return it; an approximate vector index is tuned on
    `probes()` (query-like vectors, only computed then) when given, else on passages held out; `translations` is
    each passage's translation group (None: not computed, the build then has none)."""
    options = options or VectorIndexOptions()
    budget = None if options.memory_budget_mb is None else int(options.memory_budget_mb * 2**20)
    flat_max = FLAT_MAX if options.flat_max is None else options.flat_max
    # before any file: a budget too small fails here
    plan = vi.plan_index(len(passages), raw.shape[1], budget, flat_max)
    builds = index_dir / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    writers.clean_stale(builds)  # only what dead writers left: a live writer's staging folder is never touched
    # Written under a hidden name that says whose it is, and renamed when complete, so no reader ever sees a
    # half-written build and no other writer mistakes it for a dead one's.
    staging = builds / writers.owned_name("tmp", build_id)
    staging.mkdir()
    try:
        _write_files(
            staging, build_id, articles, passages, raw, centering, manifest, plan, options, zh_tokenizer, probes,
            translations,
        )  # fmt: skip
        final = finish_staging(staging, builds / build_id)
    except BaseException:
        # A live process's staging folder is not cleared by the next writer, so a failed write (say, in a server
        # that keeps running) clears its own.
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def _write_files(
    folder: Path,
    build_id: str,
    articles: Sequence[Article],
    passages: Sequence[Passage],
    raw: np.ndarray,
    centering: Centering,
    manifest: dict[str, Any],
    plan: vi.IndexPlan,
    options: VectorIndexOptions,
    zh_tokenizer: ZhTokenizer,
    probes: Callable[[], vi.TuningQueries] | None,
    translations: TranslationGroups | None,
) -> None:
    """The files of a build of one segment (at the folder's root), its manifest (with their checksums) last."""
    written = write_segment(
        folder, articles, passages, raw, centering, plan, target_recall=options.target_recall,
        zh_tokenizer=zh_tokenizer, probes=probes, translations=translations,
        add=options.parallel_add if len(passages) >= options.parallel_add_min else None,
    )  # fmt: skip
    centering.save(folder / CENTERING)
    built = written.vector_index
    manifest = {
        **manifest,
        "build_id": build_id,
        "index": {k: v for k, v in built.items() if k in ("type", "metric", "exact")},
        "vector_index": built,
        "raw_vectors": {"file": RAW, "dtype": "float16"},
        "normalized": True,
        "centering": centering.describe(),
        "dimension": int(raw.shape[1]),
        "lexical": written.lexical,
        # Builds without this entry have no groups: every search runs as translations=off.
        "translations": None if translations is None else translations.describe(),
        "segments": [{"id": build_id, "path": ".", "passages": len(passages), "articles": len(articles)}],
        "tombstones": {},
        "files": {str(f.relative_to(folder)): file_sha256(f) for f in sorted(folder.rglob("*")) if f.is_file()},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")


def finish_staging(staging: Path, final: Path, skip: set[str] | frozenset[str] = frozenset()) -> Path:
    """Give a complete staging folder its build's name, on disk first: a rename the disk keeps must not name files
    it lost. `skip` names files (relative) already on disk, such as hard links to an earlier build's; every folder is
    synced all the same (a link is a new name in it)."""
    durable.sync_tree(staging, skip=skip)
    writers.reached("rename")
    os.replace(staging, final)
    durable.sync_dir(final.parent)
    return final


def publish(index_dir: Path, folder: Path) -> None:
    """Point `current` at a finished build with one atomic rename, synced to disk (when this returns the write may
    be acknowledged: a crash, even a power cut, leaves it published), then delete every build but it and the one it
    replaces (which a server may still serve until its next reload)."""
    link = index_dir / "current"
    replaced = current_build(index_dir)
    writers.clean_stale(index_dir)  # a link a dead writer made but never swapped in
    tmp = index_dir / writers.owned_name("current", folder.name)
    tmp.symlink_to(folder.relative_to(index_dir))
    writers.reached("swap")
    os.replace(tmp, link)
    durable.sync_dir(index_dir)
    if replaced is None:  # the first build: the index folder itself may be new in its parent
        durable.sync_dir(index_dir.resolve().parent)
    keep = {folder.resolve(), replaced}
    builds = index_dir / "builds"
    # Each old build is first renamed out of sight (one atomic step), so a writer killed while deleting leaves a
    # hidden folder that the next writer clears, never a half-deleted build under a build's name. Builds that a
    # killed writer renamed into place but never published go the same way.
    trash = []
    for old in sorted(builds.iterdir()):
        if not old.name.startswith(".") and old.resolve() not in keep:
            trash.append(builds / writers.owned_name("trash", old.name))
            os.replace(old, trash[-1])
    writers.reached("prune")
    for gone in trash:
        shutil.rmtree(gone, ignore_errors=True)
    # Deletions are not synced: an old build a crash brings back is pruned by the next write, a trash folder is
    # cleared as a dead writer's.
    writers.reached("done")


def discard(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def read_manifest(index_dir: Path) -> tuple[Path, dict[str, Any]]:
    folder = current_build(index_dir)
    if folder is None or not (folder / MANIFEST).is_file():
        raise IndexNotFound(f"no index in {index_dir}/: build one with `search index seeds/ --index {index_dir}`")
    try:
        return folder, json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexCorrupt(f"{folder / MANIFEST}: unreadable ({exc}); rebuild with `search index`") from exc


class Store:
    """A loaded, read-only build: its segments searched as one index, without the articles deleted since each
    segment was written.

    Rows are the build's own: segment i's rows follow segment i-1's, so a row names one passage for as long as
    this store is loaded (passage ids are the names that last). Every method returns live rows only, so ranking,
    filters, paging, fusion, context and translations work on a store of many segments as on one.
    """

    def __init__(self, folder: Path, manifest: dict[str, Any], verify: bool = True, reuse: Store | None = None) -> None:
        self.folder = folder
        self.manifest = manifest
        self.build_id = str(manifest.get("build_id", folder.name))
        self.entries = segment_entries(manifest, self.build_id)
        self.segments: list[Segment] = []
        self.files: dict[str, str] = {}
        files: dict[str, str] = manifest.get("files", {})
        # Segments the store being replaced has loaded already, with the same files: a write links them into its
        # new build unchanged, so they are neither read nor checksummed again.
        # Taken over only when each file is the very one loaded (same inode: a hard link), not an equal copy that
        # may have been damaged since.
        self.identities = [_identity(folder, files, e["path"]) for e in self.entries]
        adopted: dict[str, Segment] = {}
        if reuse is not None:
            for entry, seg, known in zip(reuse.entries, reuse.segments, reuse.identities, strict=True):
                mine = next((i for i, e in enumerate(self.entries) if e["id"] == entry["id"]), None)
                if mine is not None and known and self.identities[mine] == known:
                    adopted[entry["id"]] = seg
        trusted = {name for e in self.entries if e["id"] in adopted for name in files_of(files, e["path"])}
        for name, checksum in files.items():
            path = folder / name
            if not path.is_file():
                raise IndexCorrupt(f"{path} is missing; rebuild the index with `search index`")
            if verify and name not in trusted and file_sha256(path) != checksum:
                raise IndexCorrupt(f"{path} does not match its checksum in the manifest; rebuild the index")
        self.files = files
        translations = manifest.get("translations") is not None
        try:
            self.centering = Centering.load(folder / CENTERING)
            self.segments = [
                adopted[e["id"]].moved_to(folder / e["path"])
                if e["id"] in adopted
                else Segment(folder / e["path"], e.get("vector_index") or manifest.get("vector_index"), translations)
                for e in self.entries
            ]
        except (RuntimeError, OSError, ValueError, KeyError, sqlite3.Error) as exc:
            raise IndexCorrupt(f"{folder}: cannot read the index ({exc}); rebuild it") from exc
        self.offsets = np.cumsum([0, *(s.size for s in self.segments)]).astype(np.int64)
        tombstones: dict[str, list[str]] = manifest.get("tombstones") or {}
        self.dead_articles = [set(tombstones.get(e["id"], ())) for e in self.entries]
        starts = self.offsets[:-1]
        dead = [s.rows_of_articles(d) + o for s, d, o in zip(self.segments, self.dead_articles, starts, strict=True)]
        self._dead = np.concatenate(dead) if dead else np.zeros(0, dtype=np.int64)
        # a byte per row: whether a search's hit is live is a lookup, not a search of the deleted rows
        self._is_dead = np.zeros(int(self.offsets[-1]), dtype=bool)
        self._is_dead[self._dead] = True
        self.dead_counts = [len(d) for d in dead]
        self.size = int(self.offsets[-1]) - len(self._dead)
        self.dimension = int(self.segments[0].index.d)
        # What /health shows: the largest segment's index (a build made in one go has only that one).
        self.vector_index = max(self.segments, key=lambda s: s.size).vector_index
        self.has_translations = translations and any(s.has_translations for s in self.segments)
        self.lexical = SegmentedLexical(self)
        self._groups: np.ndarray | None = None

    # Rows: which segment, which of its rows, and whether they are deleted

    def _split(self, rows: Sequence[int] | np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(segment, positions in `rows`, local rows) for each segment that `rows` touch."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        which = np.searchsorted(self.offsets, rows, side="right") - 1
        out = []
        for i in np.unique(which):
            at = np.flatnonzero(which == i)
            out.append((int(i), at, rows[at] - self.offsets[i]))
        return out

    def _live(self, rows: np.ndarray) -> np.ndarray:
        """`rows` without the deleted ones, in their order."""
        rows = np.asarray(rows, dtype=np.int64)
        return rows if len(self._dead) == 0 else rows[~self._is_dead[rows]]

    def is_live(self, row: int) -> bool:
        return not self._is_dead[row]

    def live_rows(self) -> np.ndarray:
        """Every live row, in order (the rows of `all_passages()`)."""
        return self._live(np.arange(int(self.offsets[-1]), dtype=np.int64))

    def holder(self, article_id: str) -> int | None:
        """The segment that holds the live version of an article (at most one does), newest first."""
        for i in reversed(range(len(self.segments))):
            if article_id not in self.dead_articles[i] and self.segments[i].has_article(article_id):
                return i
        return None

    # Searching

    def search(self, xq: np.ndarray, k: int, rows: np.ndarray | None = None) -> list[tuple[int, float]]:
        """(row, score) pairs, best first, for one query vector, over every segment; `rows` restricts the search
        to those rows (every index kind: a few rows are scored exactly, many by a search widened by the share of
        rows left out)."""
        if self.size == 0 or (rows is not None and len(rows) == 0):
            return []
        k = min(k, self.size if rows is None else len(rows))
        found: list[tuple[int, float]] = []
        for i, seg in enumerate(self.segments):
            off = int(self.offsets[i])
            if rows is not None:
                inside = rows[(rows >= off) & (rows < off + seg.size)]
                local: np.ndarray | None = self._live(inside) - off
                extra = 0
            elif self.dead_counts[i] > _OVERFETCH_MAX:  # many deleted: search only the live rows
                local, extra = self._live(np.arange(off, off + seg.size)) - off, 0
            else:  # a few deleted: ask for as many more and drop them
                local, extra = None, self.dead_counts[i]
            hits = [(r + off, s) for r, s in seg.search(xq, k + extra, local)]
            found.extend(hits if not extra else [(r, s) for r, s in hits if self.is_live(r)])
        if len(self.segments) == 1:
            return found[:k]
        return sorted(found, key=lambda rs: -rs[1])[:k]

    def rows_matching(self, filters: Filters) -> np.ndarray | None:
        """Rows that pass the filters, or None when nothing is filtered."""
        if not filters:
            return None
        parts = [s.rows_matching(filters) + o for s, o in zip(self.segments, self.offsets[:-1], strict=True)]
        return self._live(np.concatenate(parts))

    def rows_in_languages(self, rows: Sequence[int], langs: Sequence[str]) -> set[int]:
        if not rows or not langs:
            return set()
        out: set[int] = set()
        for i, _, local in self._split(rows):
            off = int(self.offsets[i])
            out |= {r + off for r in self.segments[i].rows_in_languages([int(r) for r in local], langs)}
        return out

    # Lookups by id

    def row_of(self, passage_id: str) -> int:
        for i in reversed(range(len(self.segments))):  # a replaced article's unchanged passages keep their ids
            local = self.segments[i].rows_of_passage(passage_id)
            if local is not None and self.is_live(local + int(self.offsets[i])):
                return local + int(self.offsets[i])
        raise not_found(passage_id)

    def article_rows(self, article_id: str) -> np.ndarray:
        i = self.holder(article_id)
        if i is None:
            raise NotFound(f"no article with id {article_id!r}")
        return self.segments[i].article_rows(article_id) + self.offsets[i]

    def passage(self, passage_id: str) -> Passage:
        row = self.row_of(passage_id)
        return self.passages_at([row])[row]

    # Reading rows

    def vectors_at(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """The indexed (centered, normalized) vectors of these rows."""
        out = np.zeros((len(rows), self.dimension), dtype=np.float32)
        for i, at, local in self._split(rows):
            out[at] = self.segments[i].vectors_at(local, self.centering)
        return out

    def _merged(self, rows: Iterable[int], read: Callable[[Segment, list[int]], dict[int, _T]]) -> dict[int, _T]:
        out: dict[int, _T] = {}
        for i, _, local in self._split(list(rows)):
            off = int(self.offsets[i])
            out.update({r + off: v for r, v in read(self.segments[i], [int(r) for r in local]).items()})
        return out

    def langs_at(self, rows: Sequence[int]) -> dict[int, str]:
        return self._merged(rows, Segment.langs_at)

    def keys_at(self, rows: Sequence[int]) -> dict[int, PassageKey]:
        """Ids of the passages at `rows`: all that ranking needs, without reading their text."""
        return self._merged(rows, Segment.keys_at)

    def passages_at(self, rows: Iterable[int]) -> dict[int, Passage]:
        return self._merged(rows, Segment.passages_at)

    def context(self, p: Passage, n: int) -> list[tuple[str, Passage]]:
        """The passages of the `n` paragraphs before and after `p` in its article, in order."""
        i = self.holder(p.article_id)
        return [] if i is None else self.segments[i].context(p, n)

    # Translation groups: each segment numbers its own, so the store shifts them apart

    def _group_offsets(self) -> np.ndarray:
        tops = [int(s.translation_groups().max(initial=-1)) + 1 for s in self.segments]
        return np.cumsum([0, *tops]).astype(np.int64)

    def translation_groups(self) -> np.ndarray:
        """The translation group of every row (-1: none, and for deleted rows), read once."""
        if self._groups is None:
            shifts = self._group_offsets()
            parts = [np.where(s.translation_groups() >= 0, s.translation_groups() + g, -1) for s, g in
                     zip(self.segments, shifts[:-1], strict=True)]  # fmt: skip
            groups = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
            groups[self._dead] = -1
            self._groups = groups
        return self._groups

    def group_members(self, groups: Iterable[int]) -> dict[int, list[int]]:
        """The live rows of each of these translation groups, in row order."""
        wanted = sorted({int(g) for g in groups if g >= 0})
        if not wanted:
            return {}
        shifts = self._group_offsets()
        members: dict[int, list[int]] = {g: [] for g in wanted}
        for i, seg in enumerate(self.segments):
            lo, hi = int(shifts[i]), int(shifts[i + 1])
            mine = [g - lo for g in wanted if lo <= g < hi]
            for g, rows in seg.group_members(mine).items():
                members[g + lo] = [int(r) for r in self._live(np.asarray(rows, dtype=np.int64) + self.offsets[i])]
        return members

    def group_rows(self, group: int) -> list[int]:
        """The rows of one translation group, in row order."""
        return self.group_members([group]).get(group, [])

    def translations_of(self, passage_id: str) -> list[Passage]:
        """The other members of a passage's translation group, in row order; none in a build without groups."""
        row = self.row_of(passage_id)
        group = int(self.translation_groups()[row])
        if group < 0:
            return []
        others = [r for r in self.group_rows(group) if r != row]
        found = self.passages_at(others)
        return [found[r] for r in others]

    # Whole tables

    def articles(self) -> list[ArticleInfo]:
        found = [a for s, d in zip(self.segments, self.dead_articles, strict=True) for a in s.articles(d)]
        return sorted(found, key=lambda a: a.article_id)

    def all_articles(self) -> list[Article]:
        return [a for s, d in zip(self.segments, self.dead_articles, strict=True) for a in s.all_articles(d)]

    def all_passages(self) -> list[Passage]:
        """Every live passage, in row order."""
        everything = [p for s in self.segments for p in s.all_passages()]
        if len(self._dead) == 0:
            return everything
        return [everything[int(r)] for r in self.live_rows()]

    def raw_vectors(self) -> np.ndarray:
        """The model's vectors before centering, one row per passage (deleted ones too), memory-mapped when the
        build is one segment (float16; float32 in builds made before `raw.f16.npy`)."""
        if len(self.segments) == 1:
            return self.segments[0].raw_vectors()
        return np.concatenate([s.raw_vectors() for s in self.segments])

    def close(self) -> None:
        for s in self.segments:
            s.close()


class SegmentedLexical:
    """The BM25 indexes of a store's segments, searched as one (each segment scores with its own statistics,
    refreshed when segments merge: docs/operations.md#segments)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.zh_tokenizer = store.segments[0].lexical.zh_tokenizer

    @property
    def languages(self) -> list[str]:
        return sorted({lang for s in self._store.segments for lang in s.lexical.languages})

    def first_rows(self) -> dict[str, int]:
        """One passage row per language: what a warm-up searches for, so each language's tokenizer loads."""
        out: dict[str, int] = {}
        for seg, off in zip(self._store.segments, self._store.offsets[:-1], strict=True):
            for lang, row in seg.lexical.first_rows().items():
                out.setdefault(lang, row + int(off))
        return out

    def search(self, query: str, lang: str, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """(row, BM25 score) pairs, best first, among live passages in `lang` (and in `allowed` rows if given)."""
        store = self._store
        found: list[tuple[int, float]] = []
        for i, seg in enumerate(store.segments):
            off, dead = int(store.offsets[i]), store.dead_counts[i]
            local = None
            if allowed is not None:
                local = allowed[(allowed >= off) & (allowed < off + seg.size)] - off
                if len(local) == 0:
                    continue
            hits = seg.lexical.search(query, lang, k + dead, local)
            found.extend((r + off, s) for r, s in hits if not dead or store.is_live(r + off))
        if len(store.segments) == 1:
            return found[:k]
        return sorted(found, key=lambda rs: -rs[1])[:k]


def _identity(folder: Path, files: dict[str, str], path: str) -> dict[str, tuple[int, int, str]]:
    """Each file of a segment: its device and inode, and its checksum in the manifest; {} if one is missing."""
    out = {}
    for name, checksum in files_of(files, path).items():
        try:
            st = (folder / name).stat()
        except OSError:
            return {}
        out[str(Path(name).relative_to(path))] = (st.st_dev, st.st_ino, checksum)
    return out


def segment_entries(manifest: dict[str, Any], build_id: str) -> list[dict[str, Any]]:
    """The manifest's segments, oldest first; a build made before segments is one, at its root."""
    entries = manifest.get("segments")
    if isinstance(entries, list) and entries:
        return entries
    return [{"id": build_id, "path": "."}]


def files_of(files: dict[str, str], path: str) -> dict[str, str]:
    """The checksummed files of the segment at `path` (relative to the build folder)."""
    if path == ".":
        return {name: c for name, c in files.items() if is_segment_file(Path(name))}
    prefix = path.rstrip("/") + "/"
    return {name: c for name, c in files.items() if name.startswith(prefix)}
