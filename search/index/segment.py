"""One immutable segment of an index: a FAISS vector index, the model's raw vectors, a BM25 index per language and a
SQLite table of its passages and articles, all addressed by the segment's own row numbers (0..n-1).

A full build is one segment (its files at the root of the build folder, as every build before segments had); each
write adds a small segment in a `seg-<id>/` subfolder, and merges join segments into a new one
(`search/index/segments.py`). A segment never changes once written: deletions are recorded beside it, in the build's
manifest (`search/index/store.py` applies them), so a build can share a segment's files with the build before it
through hard links.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from search.config import ZhTokenizer
from search.errors import BadInput, NotFound
from search.index import vectors as vi
from search.index import writers
from search.index.centering import Centering
from search.index.lexical import LexicalIndex
from search.index.translations import TranslationGroups
from search.records import Article, ArticleInfo, Filters, Passage, PassageKey

VECTORS = "vectors.faiss"
RAW = "raw.f16.npy"
RAW_F32 = "raw.npy"  # written by builds before the float16 file; still read
DB = "passages.sqlite"
LEXICAL = "lexical"
# What a segment is made of, relative to its folder (the root segment's folder also holds the build's own files).
FILES = (VECTORS, RAW, RAW_F32, DB)

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
# A segment of up to this many rows keeps its passages' ids and languages in memory (`Segment._small_keys`).
_SMALL = 4096
PASSAGE_COLS = "passage_id, article_id, title, paragraph, part, start, end, lang, text, section, page"


def row_in(n: int) -> str:
    """`row IN (?, ...)` for n parameters (SQLite takes up to 32,766: far more than a page of candidates)."""
    return f"row IN ({','.join('?' * n)})"


def is_segment_file(relative: Path) -> bool:
    """Whether a file of the root segment's folder belongs to the segment (not to the build around it)."""
    return relative.parts[0] == LEXICAL or (len(relative.parts) == 1 and relative.name in FILES)


@dataclass(frozen=True)
class WrittenSegment:
    """What writing a segment produced, for the manifest."""

    vector_index: dict[str, Any]
    lexical: dict[str, Any]
    passages: int
    articles: int


def write_segment(
    folder: Path,
    articles: Sequence[Article],
    passages: Sequence[Passage],
    raw: np.ndarray,
    centering: Centering,
    plan: vi.IndexPlan,
    *,
    target_recall: float = 0.95,
    zh_tokenizer: ZhTokenizer = "jieba",
    probes: Callable[[], vi.TuningQueries] | None = None,
    translations: TranslationGroups | None = None,
    add: vi.Adder | None = None,
) -> WrittenSegment:
    """Write the files of a segment into `folder` (which exists): the vectors centered by `centering`, an
    approximate index tuned on `probes()` (query-like vectors, only computed then) when given, else on passages
    held out; `translations` is each passage's translation group (None: none)."""
    vectors = np.ascontiguousarray(centering.passages(raw, [p.lang for p in passages]), dtype=np.float32)
    tuning = probes() if probes is not None and plan.kind != "flat" else None
    built = vi.build_vector_index(
        vectors, np.arange(len(passages), dtype=np.int64), plan, target_recall=target_recall,
        xq_tune=None if tuning is None else tuning.vectors, tuned_on=None if tuning is None else tuning.source,
        add=add,
    )  # fmt: skip
    del vectors
    faiss.write_index(built.index, str(folder / VECTORS))
    vi.save_raw_f16(folder / RAW, raw)
    writers.reached("write")  # half of the files are written
    lexical = LexicalIndex.build([p.text for p in passages], [p.lang for p in passages], zh_tokenizer)
    lexical.save(folder / LEXICAL)

    group = None if translations is None else translations.group
    db = sqlite3.connect(folder / DB)
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
            f"INSERT INTO passages (row, {PASSAGE_COLS}, translation_group) "
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
    return WrittenSegment(built.describe(), lexical.describe(), len(passages), len(articles))


class Segment:
    """A loaded segment, read-only; rows are its own (0..size-1). Loading reads the vector and lexical indexes into
    memory and maps the raw vectors; passages are read from SQLite when asked for."""

    def __init__(self, folder: Path, vector_index: dict[str, Any] | None, translations: bool) -> None:
        self.folder = folder
        self.index = faiss.read_index(str(folder / VECTORS))
        self.vector_index = _vector_index_entry(vector_index, self.index, folder)
        # Tuned efSearch / nprobe live in the manifest; faiss does not store them with the index.
        vi.set_search_params(self.index, self.vector_index["params"])
        self.lexical = LexicalIndex.load(folder / LEXICAL)
        self.size = int(self.index.ntotal)
        self._local = threading.local()
        self._groups: np.ndarray | None = None
        self._keys: list[tuple[str, str, str]] | None = None
        # Opened now, while the folder exists: a store that outlives its build folder (pruned two publications
        # later, while a long search or report still holds the store) keeps reading through this connection and
        # this map, which hold the files open; threads that find the folder gone share the connection (SQLite is
        # compiled serialized, so one connection may serve several threads).
        self._anchor = self._connect()
        self._local.db = self._anchor
        self._raw: np.ndarray = self._load_raw()
        # Builds made before PDFs were read have no page columns: their passages have no page.
        columns = {r[1] for r in self._db().execute("PRAGMA table_info(passages)")}
        self._cols = PASSAGE_COLS if "page" in columns else PASSAGE_COLS.replace(", page", ", NULL")
        self._has_pages = "pages" in {r[1] for r in self._db().execute("PRAGMA table_info(articles)")}
        # Builds made before translation groups have no column: no groups.
        self.has_translations = translations and "translation_group" in columns

    def moved_to(self, folder: Path) -> Segment:
        """This segment, loaded already, read from `folder` from now on: a newer build's hard links to the same
        files, so a write does not load (or checksum) again the segments it did not change."""
        other = object.__new__(Segment)
        other.__dict__.update(self.__dict__)
        other.folder = folder
        other._local = threading.local()  # connections open the new path
        return other

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(f"file:{self.folder / DB}?mode=ro", uri=True, check_same_thread=False)
        db.execute("SELECT 1 FROM passages LIMIT 1").fetchall()  # opens the file now, not at the first query
        return db

    def _db(self) -> sqlite3.Connection:
        # One connection per thread (FastAPI runs sync routes in a pool), so reads of different threads do not queue.
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                db = self._connect()
            except sqlite3.OperationalError:  # the build folder was pruned: the files live on in the anchor
                db = self._anchor
            self._local.db = db
        return db

    def search(self, xq: np.ndarray, k: int, rows: np.ndarray | None = None) -> list[tuple[int, float]]:
        """(row, score) pairs, best first, for one query vector; `rows` restricts the search to those rows (every
        index kind: a few rows are scored exactly, many by a search widened by the share of rows left out)."""
        if self.size == 0 or (rows is not None and len(rows) == 0) or k <= 0:
            return []
        k = min(k, self.size if rows is None else len(rows))
        scores, ids = vi.search(self.index, xq.reshape(1, -1), k, self.vector_index["params"], selector_ids=rows)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def rows_matching(self, filters: Filters) -> np.ndarray:
        """Rows that pass the (non-empty) filters."""
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

    def _small_keys(self) -> list[tuple[str, str, str]] | None:
        """(passage id, article id, language) of every row, read once, for a small segment (a write's or a young
        merge's): a search touches each segment, and its lookups then cost no SQLite query."""
        if self.size > _SMALL:
            return None
        if self._keys is None:
            cur = self._db().execute("SELECT passage_id, article_id, lang FROM passages ORDER BY row")
            self._keys = [(pid, aid, lang) for pid, aid, lang in cur]
        return self._keys

    def rows_in_languages(self, rows: Sequence[int], langs: Sequence[str]) -> set[int]:
        if not rows or not langs:
            return set()
        keys = self._small_keys()
        if keys is not None:
            wanted = set(langs)
            return {r for r in rows if keys[r][2] in wanted}
        cur = self._db().execute(
            f"SELECT row FROM passages WHERE {row_in(len(rows))} AND lang IN ({','.join('?' * len(langs))})",
            [*rows, *langs],
        )
        return {r[0] for r in cur}

    def rows_of_passage(self, passage_id: str) -> int | None:
        r = self._db().execute("SELECT row FROM passages WHERE passage_id = ?", (passage_id,)).fetchone()
        return None if r is None else int(r[0])

    def has_article(self, article_id: str) -> bool:
        return self._db().execute("SELECT 1 FROM articles WHERE article_id = ?", (article_id,)).fetchone() is not None

    def article_count(self) -> int:
        return int(self._db().execute("SELECT count(*) FROM articles").fetchone()[0])

    def article_ids(self) -> list[str]:
        return [r[0] for r in self._db().execute("SELECT article_id FROM articles ORDER BY rowid")]

    def article_rows(self, article_id: str) -> np.ndarray:
        found = (
            self._db()
            .execute("SELECT row FROM passages WHERE article_id = ? ORDER BY paragraph, part", (article_id,))
            .fetchall()
        )
        return np.array([r[0] for r in found], dtype=np.int64)

    def rows_of_articles(self, article_ids: Iterable[str]) -> np.ndarray:
        """The rows of these articles, sorted."""
        ids = list(article_ids)
        if not ids:
            return np.zeros(0, dtype=np.int64)
        found = self._db().execute(
            f"SELECT row FROM passages WHERE article_id IN ({','.join('?' * len(ids))}) ORDER BY row", ids
        )
        return np.array([r[0] for r in found], dtype=np.int64)

    def vectors_at(self, rows: np.ndarray, centering: Centering) -> np.ndarray:
        """The indexed (centered, normalized) vectors of these rows: an approximate index holds only quantized
        codes, so its vectors are re-centered from the raw ones."""
        if len(rows) == 0:
            return np.zeros((0, self.index.d), dtype=np.float32)
        if self.vector_index["exact"]:
            return np.stack([self.index.reconstruct(int(r)) for r in rows]).astype(np.float32)
        rows = np.asarray(rows, dtype=np.int64)
        found = self.langs_at([int(r) for r in rows])
        langs = [found[int(r)] for r in rows]
        return centering.passages(np.asarray(self.raw_vectors()[rows], dtype=np.float32), langs)

    def langs_at(self, rows: Sequence[int]) -> dict[int, str]:
        if not rows:
            return {}
        keys = self._small_keys()
        if keys is not None:
            return {r: keys[r][2] for r in rows}
        return dict(self._db().execute(f"SELECT row, lang FROM passages WHERE {row_in(len(rows))}", list(rows)))

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
        """The translation group of every row (-1: none), read once; all -1 without groups."""
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
        if not wanted or not self.has_translations:
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

    def keys_at(self, rows: Sequence[int]) -> dict[int, PassageKey]:
        """Ids of the passages at `rows`: all that ranking needs, without reading their text."""
        if not rows:
            return {}
        keys = self._small_keys()
        if keys is not None:
            return {r: PassageKey(keys[r][0], keys[r][1]) for r in rows}
        cur = self._db().execute(f"SELECT row, passage_id, article_id FROM passages WHERE {row_in(len(rows))}", rows)
        return {row: PassageKey(pid, aid) for row, pid, aid in cur}

    def passages_at(self, rows: Iterable[int]) -> dict[int, Passage]:
        rows = list(rows)
        if not rows:
            return {}
        cur = self._db().execute(f"SELECT row, {self._cols} FROM passages WHERE {row_in(len(rows))}", rows)
        return {r[0]: Passage(*r[1:]) for r in cur}

    def articles(self, dead: set[str]) -> list[ArticleInfo]:
        cur = self._db().execute(
            "SELECT a.article_id, a.title, a.metadata, group_concat(DISTINCT p.lang), count(p.row) "
            "FROM articles a LEFT JOIN passages p ON p.article_id = a.article_id "
            "GROUP BY a.article_id ORDER BY a.article_id"
        )
        return [
            ArticleInfo(aid, title, sorted((langs or "").split(",")) if langs else [], n, json.loads(meta))
            for aid, title, meta, langs, n in cur
            if aid not in dead
        ]

    def all_articles(self, dead: set[str]) -> list[Article]:
        pages = "pages" if self._has_pages else "NULL"
        cur = self._db().execute(
            f"SELECT article_id, title, text, source, metadata, {pages} FROM articles ORDER BY rowid"
        )
        return [
            Article(aid, title, text, source, json.loads(meta), tuple(json.loads(pg)) if pg else ())
            for aid, title, text, source, meta, pg in cur
            if aid not in dead
        ]

    def all_passages(self) -> list[Passage]:
        cur = self._db().execute(f"SELECT {self._cols} FROM passages ORDER BY row")
        return [Passage(*r) for r in cur]

    def raw_vectors(self) -> np.ndarray:
        """The model's vectors before centering, one row per passage, memory-mapped (float16; float32 in builds
        made before `raw.f16.npy`)."""
        return self._raw

    def _load_raw(self) -> np.ndarray:
        path = self.folder / RAW
        if path.is_file():
            return vi.load_raw_f16(path)
        return np.load(self.folder / RAW_F32, mmap_mode="r")

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None and db is not self._anchor:
            db.close()


def _vector_index_entry(entry: dict[str, Any] | None, index: Any, folder: Path) -> dict[str, Any]:
    """The manifest's description of a segment's vector index; builds made before it had one were all exact."""
    if isinstance(entry, dict) and isinstance(entry.get("params"), dict):
        return entry
    size = (folder / VECTORS).stat().st_size
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


def not_found(passage_id: str) -> NotFound:
    return NotFound(f"no passage with id {passage_id!r}")
