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
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from search.config import FLAT_MAX, ZhTokenizer
from search.errors import BadInput, IndexCorrupt, IndexNotFound, NotFound
from search.index import durable, writers
from search.index import vectors as vi
from search.index.centering import Centering
from search.index.lexical import LexicalIndex
from search.index.translations import TranslationGroups
from search.records import Article, ArticleInfo, Filters, Passage, PassageKey

MANIFEST = "manifest.json"
RAW = "raw.f16.npy"
_RAW_F32 = "raw.npy"  # written by builds before the float16 file; still read

_SCHEMA = """
CREATE TABLE articles (
    article_id TEXT PRIMARY KEY, title TEXT NOT NULL, source TEXT NOT NULL,
    metadata TEXT NOT NULL, text TEXT NOT NULL, pages TEXT
);
CREATE TABLE passages (
    row INTEGER PRIMARY KEY, passage_id TEXT NOT NULL UNIQUE, article_id TEXT NOT NULL,
    title TEXT NOT NULL, paragraph INTEGER NOT NULL, part INTEGER NOT NULL,
    start INTEGER NOT NULL, end INTEGER NOT NULL, lang TEXT NOT NULL, text TEXT NOT NULL, section TEXT,
    page INTEGER, translation_group INTEGER
);
CREATE INDEX passages_article ON passages(article_id, paragraph, part);
CREATE INDEX passages_lang ON passages(lang);
CREATE INDEX passages_translation_group ON passages(translation_group);
"""
_PASSAGE_COLS = "passage_id, article_id, title, paragraph, part, start, end, lang, text, section, page"


@dataclass(frozen=True)
class VectorIndexOptions:
    """How a build chooses and tunes its vector index (`Settings.flat_max`, `memory_budget_mb`, `target_recall`)."""

    flat_max: int | None = None  # None: config.FLAT_MAX
    memory_budget_mb: float | None = None
    target_recall: float = 0.95
    # With Ray: how an ivf_pq_sq8 index of at least `parallel_add_min` vectors is filled (search/index/distributed.py)
    parallel_add: vi.Adder | None = None
    parallel_add_min: int = 0


def _row_in(n: int) -> str:
    """`row IN (?, ...)` for n parameters (SQLite takes up to 32,766: far more than a page of candidates)."""
    return f"row IN ({','.join('?' * n)})"


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
        # On disk before it gets its final name: a rename the disk keeps must not name files it lost.
        durable.sync_tree(staging)
        final = builds / build_id
        writers.reached("rename")
        os.replace(staging, final)
        durable.sync_dir(builds)
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
    """The files of a build, its manifest (with their checksums) last."""
    vectors = np.ascontiguousarray(centering.passages(raw, [p.lang for p in passages]), dtype=np.float32)
    tuning = probes() if probes is not None and plan.kind != "flat" else None
    built = vi.build_vector_index(
        vectors, np.arange(len(passages), dtype=np.int64), plan, target_recall=options.target_recall,
        xq_tune=None if tuning is None else tuning.vectors, tuned_on=None if tuning is None else tuning.source,
        add=options.parallel_add if len(passages) >= options.parallel_add_min else None,
    )  # fmt: skip
    del vectors
    faiss.write_index(built.index, str(folder / "vectors.faiss"))
    vi.save_raw_f16(folder / RAW, raw)
    writers.reached("write")  # half of the files are written
    centering.save(folder / "centering.npz")
    lexical = LexicalIndex.build([p.text for p in passages], [p.lang for p in passages], zh_tokenizer)
    lexical.save(folder / "lexical")

    group = None if translations is None else translations.group
    db = sqlite3.connect(folder / "passages.sqlite")
    with db:
        db.executescript(_SCHEMA)
        db.executemany(
            "INSERT INTO articles VALUES (?, ?, ?, ?, ?, ?)",
            (
                (
                    a.id,
                    a.title,
                    a.source,
                    json.dumps(a.metadata, ensure_ascii=False, default=str),
                    a.text,
                    json.dumps(list(a.pages)) if a.pages else None,
                )  # fmt: skip
                for a in articles
            ),
        )
        db.executemany(
            f"INSERT INTO passages (row, {_PASSAGE_COLS}, translation_group) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    i,
                    p.passage_id,
                    p.article_id,
                    p.title,
                    p.paragraph,
                    p.part,
                    p.start,
                    p.end,
                    p.lang,
                    p.text,
                    p.section,
                    p.page,
                    None if group is None or group[i] < 0 else int(group[i]),
                )
                for i, p in enumerate(passages)
            ),
        )
    db.close()
    manifest = {
        **manifest,
        "build_id": build_id,
        "index": {k: v for k, v in built.describe().items() if k in ("type", "metric", "exact")},
        "vector_index": built.describe(),
        "raw_vectors": {"file": RAW, "dtype": "float16"},
        "normalized": True,
        "centering": centering.describe(),
        "dimension": int(raw.shape[1]),
        "lexical": lexical.describe(),
        # Builds without this entry have no groups: every search runs as translations=off.
        "translations": None if translations is None else translations.describe(),
        "files": {str(f.relative_to(folder)): file_sha256(f) for f in sorted(folder.rglob("*")) if f.is_file()},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")


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
    """A loaded, read-only index: vector search plus passage and article lookups."""

    def __init__(self, folder: Path, manifest: dict[str, Any], verify: bool = True) -> None:
        self.folder = folder
        self.manifest = manifest
        for name, checksum in manifest.get("files", {}).items():
            path = folder / name
            if not path.is_file():
                raise IndexCorrupt(f"{path} is missing; rebuild the index with `search index`")
            if verify and file_sha256(path) != checksum:
                raise IndexCorrupt(f"{path} does not match its checksum in the manifest; rebuild the index")
        try:
            self.index = faiss.read_index(str(folder / "vectors.faiss"))
            self.vector_index = _vector_index_entry(manifest, self.index, folder)
            # Tuned efSearch / nprobe live in the manifest; faiss does not store them with the index.
            vi.set_search_params(self.index, self.vector_index["params"])
            self.centering = Centering.load(folder / "centering.npz")
            self.lexical = LexicalIndex.load(folder / "lexical")
        except (RuntimeError, OSError, ValueError, KeyError) as exc:
            raise IndexCorrupt(f"{folder}: cannot read the vector index ({exc}); rebuild it") from exc
        self._db_path = folder / "passages.sqlite"
        self._local = threading.local()
        self.size = int(self.index.ntotal)
        self._raw: np.ndarray | None = None
        self.build_id = str(manifest.get("build_id", folder.name))
        # Builds made before PDFs were read have no page columns: their passages have no page.
        columns = {r[1] for r in self._db().execute("PRAGMA table_info(passages)")}
        self._cols = _PASSAGE_COLS if "page" in columns else _PASSAGE_COLS.replace(", page", ", NULL")
        self._has_pages = "pages" in {r[1] for r in self._db().execute("PRAGMA table_info(articles)")}
        # Builds made before translation groups have no column: no groups, so every search runs as `off`.
        self.has_translations = "translation_group" in columns and manifest.get("translations") is not None
        self._groups: np.ndarray | None = None

    def _db(self) -> sqlite3.Connection:
        # SQLite connections must not cross threads; FastAPI runs sync routes in a pool, so one per thread.
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(f"file:{self._db_path}?mode=ro", uri=True, check_same_thread=False)
            self._local.db = db
        return db

    def search(self, xq: np.ndarray, k: int, rows: np.ndarray | None = None) -> list[tuple[int, float]]:
        """(row, score) pairs, best first, for one query vector; `rows` restricts the search to those rows (every
        index kind: a few rows are scored exactly, many by a search widened by the share of rows left out)."""
        if self.size == 0 or (rows is not None and len(rows) == 0):
            return []
        k = min(k, self.size if rows is None else len(rows))
        scores, ids = vi.search(self.index, xq.reshape(1, -1), k, self.vector_index["params"], selector_ids=rows)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def rows_matching(self, filters: Filters) -> np.ndarray | None:
        """Rows that pass the filters, or None when nothing is filtered."""
        if not filters:
            return None
        clauses: list[str] = []
        args: list[str] = []
        for col, values in (("p.lang", filters.langs), ("p.article_id", filters.articles)):
            if values:
                clauses.append(f"{col} IN ({','.join('?' * len(values))})")
                args.extend(values)
        # Bounds are days (YYYY-MM-DD, checked by search.query.validation), inclusive: an article published at
        # 2025-03-01T10:00 is on or before 2025-03-01, so only the day part of `published` is compared.
        if filters.published_after:
            clauses.append("substr(json_extract(a.metadata, '$.published'), 1, 10) >= ?")
            args.append(filters.published_after)
        if filters.published_before:
            clauses.append("substr(json_extract(a.metadata, '$.published'), 1, 10) <= ?")
            args.append(filters.published_before)
        for key, value in filters.metadata.items():
            if not key.replace("_", "").isalnum():
                raise BadInput(f"metadata filter {key!r}: field names are letters, digits and underscores")
            clauses.append(f"CAST(json_extract(a.metadata, '$.{key}') AS TEXT) = ?")
            args.append(value)
        found = self._db().execute(
            "SELECT p.row FROM passages p JOIN articles a ON a.article_id = p.article_id WHERE "
            + " AND ".join(clauses),
            args,
        )
        return np.array([r[0] for r in found], dtype=np.int64)

    def rows_in_languages(self, rows: Sequence[int], langs: Sequence[str]) -> set[int]:
        if not rows or not langs:
            return set()
        cur = self._db().execute(
            f"SELECT row FROM passages WHERE {_row_in(len(rows))} AND lang IN ({','.join('?' * len(langs))})",
            [*rows, *langs],
        )
        return {r[0] for r in cur}

    def row_of(self, passage_id: str) -> int:
        r = self._db().execute("SELECT row FROM passages WHERE passage_id = ?", (passage_id,)).fetchone()
        if r is None:
            raise NotFound(f"no passage with id {passage_id!r}")
        return int(r[0])

    def article_rows(self, article_id: str) -> np.ndarray:
        found = (
            self._db()
            .execute("SELECT row FROM passages WHERE article_id = ? ORDER BY paragraph, part", (article_id,))
            .fetchall()
        )
        if not found:
            exists = self._db().execute("SELECT 1 FROM articles WHERE article_id = ?", (article_id,)).fetchone()
            if exists is None:
                raise NotFound(f"no article with id {article_id!r}")
        return np.array([r[0] for r in found], dtype=np.int64)

    def vectors_at(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """The indexed (centered, normalized) vectors of these rows: an approximate index holds only quantized
        codes, so its vectors are re-centered from the raw ones."""
        if len(rows) == 0:
            return np.zeros((0, self.index.d), dtype=np.float32)
        if self.vector_index["exact"]:
            return np.stack([self.index.reconstruct(int(r)) for r in rows]).astype(np.float32)
        rows = np.asarray(rows, dtype=np.int64)
        langs = self._langs_at(rows)
        return self.centering.passages(np.asarray(self.raw_vectors()[rows], dtype=np.float32), langs)

    def langs_at(self, rows: Sequence[int]) -> dict[int, str]:
        if not rows:
            return {}
        return dict(self._db().execute(f"SELECT row, lang FROM passages WHERE {_row_in(len(rows))}", list(rows)))

    def _langs_at(self, rows: np.ndarray) -> list[str]:
        found = dict(
            self._db().execute(f"SELECT row, lang FROM passages WHERE {_row_in(len(rows))}", [int(r) for r in rows])
        )
        return [found[int(r)] for r in rows]

    def context(self, p: Passage, n: int) -> list[tuple[str, Passage]]:
        """The passages of the `n` paragraphs before and after `p` in its article, in order."""
        cur = self._db().execute(
            f"SELECT {self._cols} FROM passages WHERE article_id = ? AND paragraph BETWEEN ? AND ? "
            "ORDER BY paragraph, part",
            (p.article_id, p.paragraph - n, p.paragraph + n),
        )
        out = []
        for r in cur:
            other = Passage(*r)
            if other.passage_id != p.passage_id:
                before = (other.paragraph, other.part) < (p.paragraph, p.part)
                out.append(("before" if before else "after", other))
        return out

    def translation_groups(self) -> np.ndarray:
        """The translation group of every row (-1: none), read once; all -1 for a build without groups."""
        if self._groups is None:
            groups = np.full(self.size, -1, dtype=np.int64)
            if self.has_translations:
                cur = self._db().execute(
                    "SELECT row, translation_group FROM passages WHERE translation_group IS NOT NULL"
                )
                found = np.array(cur.fetchall(), dtype=np.int64).reshape(-1, 2)
                groups[found[:, 0]] = found[:, 1]
            self._groups = groups
        return self._groups

    def group_members(self, groups: Iterable[int]) -> dict[int, list[int]]:
        """The rows of each of these translation groups, in row order."""
        wanted = sorted({int(g) for g in groups if g >= 0})
        if not wanted:
            return {}
        members: dict[int, list[int]] = {g: [] for g in wanted}
        cur = self._db().execute(
            f"SELECT row, translation_group FROM passages WHERE translation_group IN ({','.join('?' * len(wanted))}) "
            "ORDER BY row",
            wanted,
        )
        for row, g in cur:
            members[g].append(row)
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

    def keys_at(self, rows: Sequence[int]) -> dict[int, PassageKey]:
        """Ids of the passages at `rows`: all that ranking needs, without reading their text."""
        if not rows:
            return {}
        cur = self._db().execute(f"SELECT row, passage_id, article_id FROM passages WHERE {_row_in(len(rows))}", rows)
        return {row: PassageKey(pid, aid) for row, pid, aid in cur}

    def passages_at(self, rows: Iterable[int]) -> dict[int, Passage]:
        rows = list(rows)
        if not rows:
            return {}
        cur = self._db().execute(f"SELECT row, {self._cols} FROM passages WHERE {_row_in(len(rows))}", rows)
        return {r[0]: Passage(*r[1:]) for r in cur}

    def passage(self, passage_id: str) -> Passage:
        r = self._db().execute(f"SELECT {self._cols} FROM passages WHERE passage_id = ?", (passage_id,)).fetchone()
        if r is None:
            raise NotFound(f"no passage with id {passage_id!r}")
        return Passage(*r)

    def articles(self) -> list[ArticleInfo]:
        cur = self._db().execute(
            "SELECT a.article_id, a.title, a.metadata, group_concat(DISTINCT p.lang), count(p.row) "
            "FROM articles a LEFT JOIN passages p ON p.article_id = a.article_id "
            "GROUP BY a.article_id ORDER BY a.article_id"
        )
        return [
            ArticleInfo(aid, title, sorted((langs or "").split(",")) if langs else [], n, json.loads(meta))
            for aid, title, meta, langs, n in cur
        ]

    def all_articles(self) -> list[Article]:
        pages = "pages" if self._has_pages else "NULL"
        cur = self._db().execute(
            f"SELECT article_id, title, text, source, metadata, {pages} FROM articles ORDER BY rowid"
        )
        return [
            Article(aid, title, text, source, json.loads(meta), tuple(json.loads(pg)) if pg else ())
            for aid, title, text, source, meta, pg in cur
        ]

    def all_passages(self) -> list[Passage]:
        cur = self._db().execute(f"SELECT {self._cols} FROM passages ORDER BY row")
        return [Passage(*r) for r in cur]

    def raw_vectors(self) -> np.ndarray:
        """The model's vectors before centering, one row per passage, memory-mapped (float16; float32 in builds
        made before `raw.f16.npy`)."""
        if self._raw is None:
            path = self.folder / RAW
            if path.is_file():
                self._raw = vi.load_raw_f16(path)
            else:
                self._raw = np.load(self.folder / _RAW_F32, mmap_mode="r")
        return self._raw

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()


def _vector_index_entry(manifest: dict[str, Any], index: Any, folder: Path) -> dict[str, Any]:
    """The manifest's description of the vector index; builds made before it had one were all exact (flat)."""
    entry = manifest.get("vector_index")
    if isinstance(entry, dict) and isinstance(entry.get("params"), dict):
        return entry
    size = (folder / "vectors.faiss").stat().st_size
    return {
        "type": "IndexIDMap2(IndexFlatIP)",
        "kind": "flat",
        "metric": "inner_product",
        "exact": True,
        "params": {},
        "recall_at_10": 1.0,
        "target_recall": None,
        "tune_queries": 0,
        "build_seconds": None,
        "bytes_per_vector": round(size / max(int(index.ntotal), 1), 1),
    }
