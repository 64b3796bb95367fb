"""Writes that cost the change, not the index: a new build is the previous build's segments (hard links, nothing
rewritten) plus a small new segment and/or deletions; merges join segments in the background.

- `add_articles` (an upsert, or `search index` of changed files): the articles are chunked, identified and embedded
  (through the embedding cache), centered with the build's frozen means, and written as one new segment; the
  versions they replace are marked deleted (tombstones: article ids per segment, in the manifest).
- `delete_articles`: tombstones only.
- `prepare_merge` + `commit_merge`: the live passages of some segments, with their stored raw vectors (nothing is
  embedded again), become one new segment with its own BM25 statistics, translation groups and, past
  `SEARCH_FLAT_MAX` passages, an approximate index trained and tuned then; the deleted passages are gone from it.
  The merged segment is written without the writer lock (searches and writes go on), and published under it, with
  the deletions that arrived meanwhile carried over.

Every change publishes a whole new build folder (`store.publish`): the same staging, fsync and atomic rename as a
full build, so a crash leaves the previous state or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search.config import FLAT_MAX, ZhTokenizer
from search.errors import BadInput, NotFound
from search.index import vectors as vi
from search.index import writers
from search.index.build import BuildSummary, embed_with_cache, precision_of, split_articles
from search.index.embedcache import EmbeddingCache
from search.index.segment import write_segment
from search.index.store import (
    MANIFEST,
    Store,
    VectorIndexOptions,
    discard,
    file_sha256,
    files_of,
    finish_staging,
    new_build_id,
    publish,
)
from search.index.translations import translation_groups
from search.ingest.language import LanguageDetector
from search.model.embedders import Embedder
from search.records import Article, Passage
from search.timing import stage

# Tiered merging (Lucene's idea, simplified): segments are grouped by the power of MERGE_FACTOR their live size falls
# in; a tier holding MERGE_FACTOR segments is merged into one segment of the next tier, so a search meets at most
# about MERGE_FACTOR segments per tier and every passage is merged about log(n) times.
MERGE_FACTOR = 10
# A language's mean fit on at least this many passages is left alone until a due merge (`_outgrown`).
SETTLED = 100
# A segment with more than this share of its rows deleted is merged (alone if need be) to purge them.
PURGE_SHARE = 0.5


@dataclass(frozen=True)
class Prepared:
    """A segment written into a hidden folder of `builds/`, not part of any build yet."""

    folder: Path
    entry: dict[str, Any]  # the manifest's entry: id, path, passages, articles, vector_index, lexical
    files: dict[str, str]  # checksums, by path relative to the segment folder
    langs: dict[str, int]  # its passages by language


def prepare_segment(
    index_dir: Path,
    articles: Sequence[Article],
    passages: Sequence[Passage],
    raw: np.ndarray,
    store: Store,
    options: VectorIndexOptions,
    zh_tokenizer: ZhTokenizer,
    probes: Callable[[], vi.TuningQueries] | None = None,
    groups: bool = False,
) -> Prepared:
    """Write `passages` (of `articles`, with their raw vectors) as a segment centered like `store`; with `groups`,
    its translation groups are found among its own passages."""
    budget = None if options.memory_budget_mb is None else int(options.memory_budget_mb * 2**20)
    flat_max = FLAT_MAX if options.flat_max is None else options.flat_max
    plan = vi.plan_index(len(passages), raw.shape[1], budget, flat_max)
    langs = [p.lang for p in passages]
    found = None
    if groups and passages:
        found = translation_groups(store.centering.passages(raw, langs), langs, [len(p.text) for p in passages])
    segment_id = new_build_id()
    builds = index_dir / "builds"
    folder = builds / writers.owned_name("tmp", f"seg-{segment_id}")
    folder.mkdir(parents=True)
    try:
        written = write_segment(
            folder, articles, passages, raw, store.centering, plan, target_recall=options.target_recall,
            zh_tokenizer=zh_tokenizer, probes=probes, translations=found,
        )  # fmt: skip
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    entry = {
        "id": segment_id,
        "path": f"seg-{segment_id}",
        "passages": written.passages,
        "articles": written.articles,
        "vector_index": written.vector_index,
        "lexical": written.lexical,
        "translations": None if found is None else found.describe(),
        "written_at": _now(),
    }
    files = {str(f.relative_to(folder)): file_sha256(f) for f in sorted(folder.rglob("*")) if f.is_file()}
    return Prepared(folder, entry, files, dict(Counter(langs)))


def commit(
    index_dir: Path,
    base: Store,
    add: Sequence[Prepared] = (),
    drop: set[str] | frozenset[str] = frozenset(),
    deleted: dict[str, set[str]] | None = None,
    carried: dict[str, set[str]] | None = None,
) -> Path:
    """Publish a new build: `base`'s segments but those in `drop` (hard links: nothing is rewritten), the prepared
    segments `add` (moved in), and `deleted` (article ids by segment id) added to the tombstones. `carried` names,
    by dropped segment, the articles a merged segment still holds that are deleted now (so they are not counted).
    The caller holds the writer lock and `base` is the published build."""
    deleted = deleted or {}
    build_id = new_build_id()
    builds = index_dir / "builds"
    writers.clean_stale(builds)
    staging = builds / writers.owned_name("tmp", build_id)
    staging.mkdir()
    try:
        gone = {name for e in base.entries if e["id"] in drop for name in files_of(base.files, e["path"])}
        files: dict[str, str] = {}
        for name, checksum in base.files.items():
            if name not in gone:
                _link(base.folder / name, staging / name)
                files[name] = checksum
        for p in add:
            os.replace(p.folder, staging / p.entry["path"])
            files.update({f"{p.entry['path']}/{rel}": c for rel, c in p.files.items()})
        entries = [e for e in base.entries if e["id"] not in drop] + [p.entry for p in add]
        kept = {e["id"] for e in entries}
        old: dict[str, list[str]] = base.manifest.get("tombstones") or {}
        tombstones = {
            sid: sorted(set(old.get(sid, ())) | deleted.get(sid, set()))
            for sid in kept
            if old.get(sid) or deleted.get(sid)
        }
        written = sum(int(p.entry["passages"]) for p in add if p.entry.get("written"))
        manifest = {
            **base.manifest,
            "build_id": build_id,
            "built_at": _now(),
            # passages added by writes since the centering means were fit (a full build): what refresh_due weighs
            "written_since_fit": int(base.manifest.get("written_since_fit", 0)) + written,
            "counts": _counts(base, add, drop, deleted, carried or {}),
            "segments": entries,
            "tombstones": tombstones,
            "files": dict(sorted(files.items())),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
        # The linked files' data was synced with the build that wrote them: only the new files are synced, and
        # every folder (the links are new names in them). Syncing each link too cost one journal commit per file.
        linked = set(files) - {f"{p.entry['path']}/{rel}" for p in add for rel in p.files}
        final = finish_staging(staging, builds / build_id, skip=linked)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for p in add:
            shutil.rmtree(p.folder, ignore_errors=True)
        raise
    try:
        publish(index_dir, final)
    except BaseException:
        discard(final)
        raise
    return final


def add_articles(
    index_dir: Path,
    store: Store,
    articles: Sequence[Article],
    embedder: Embedder,
    detector: LanguageDetector,
    *,
    options: VectorIndexOptions,
    embedding_cache: Path | None = None,
    zh_tokenizer: ZhTokenizer = "jieba",
    progress: bool = False,
    remove: Sequence[str] = (),
    summary: BuildSummary | None = None,
) -> BuildSummary:
    """Add or replace `articles` (ids unique) as one new segment on top of `store` (the published build), and delete
    the articles `remove`, in one published build; the earlier versions are marked deleted. Only passages the
    embedding cache lacks are embedded."""
    summary = summary or BuildSummary(index_dir=str(index_dir))
    start = time.perf_counter()
    summary.precision, summary.precision_note = precision_of(embedder)
    passages, _ = split_articles(articles, embedder, detector, summary)
    cache = EmbeddingCache(embedding_cache or index_dir / "embeddings.sqlite", embedder.fingerprint, embedder.dimension)
    try:
        with stage(summary.stages, "embed"):
            raw, summary.embedded, summary.reused = embed_with_cache(
                [p.text for p in passages], embedder, cache, progress
            )
    finally:
        cache.close()
    deleted = _holders(store, [*(a.id for a in articles), *remove])
    with stage(summary.stages, "write"):
        add = [prepare_segment(index_dir, articles, passages, raw, store, options, zh_tokenizer)] if passages else []
        for p in add:
            p.entry["written"] = True  # new passages, not a merge of old ones
        summary.removed = len(_passage_ids(store, deleted) - {p.passage_id for p in passages})
        folder = commit(index_dir, store, add, deleted=deleted)
    return _summarized(summary, folder, start)


@dataclass(frozen=True)
class Changes:
    """How a corpus differs from an index: articles new or changed, and ids the corpus no longer has."""

    changed: list[Article]
    gone: list[str]
    unchanged_passages: int
    held: int  # articles in the index

    @property
    def share(self) -> float:
        """The share of the index's articles that change (new ones count too)."""
        return (len(self.changed) + len(self.gone)) / max(self.held, 1)


def changes(store: Store, articles: Sequence[Article]) -> Changes:
    """Compare a corpus with an index article by article (title, text, source, metadata, pages)."""
    held = {a.id: a for a in store.all_articles()}
    changed = [a for a in articles if held.get(a.id) != a]
    ids = {a.id for a in articles}
    gone = [aid for aid in held if aid not in ids]
    same = {a.id for a in articles if held.get(a.id) == a}
    # one pass over the live passages, not a query per article (an unchanged corpus of 10,000 articles)
    unchanged = sum(1 for p in store.all_passages() if p.article_id in same)
    return Changes(changed, gone, unchanged, len(held))


def updatable(manifest: dict[str, Any], expected: dict[str, Any]) -> str:
    """Why a published build cannot take segments built with the settings `expected` (the manifest entries a full
    build would write: model fingerprint, chunker, centering, mean bank, Chinese tokenizer, vector index options), or
    "" if it can."""
    found = {
        "fingerprint": (manifest.get("model") or {}).get("fingerprint"),
        "chunker": manifest.get("chunker"),
        "centering_min_passages": manifest.get("centering_min_passages"),
        "centering": (manifest.get("centering") or {}).get("enabled"),
        "mean_bank": manifest.get("mean_bank"),
        "zh_tokenizer": (manifest.get("lexical") or {}).get("zh_tokenizer"),
        "vector_index_options": manifest.get("vector_index_options"),
    }
    differ = [k for k, v in expected.items() if found.get(k) != v]
    return f"settings changed since the last full build ({', '.join(differ)})" if differ else ""


def delete_articles(index_dir: Path, store: Store, article_ids: Sequence[str]) -> BuildSummary:
    """Mark articles deleted in `store` (the published build) and publish that; NotFound for ids it does not
    hold, BadInput when nothing would be left (changing nothing then)."""
    summary = BuildSummary(index_dir=str(index_dir))
    start = time.perf_counter()
    deleted = _holders(store, article_ids)
    unknown = [a for a in article_ids if not any(a in ids for ids in deleted.values())]
    if unknown:
        raise NotFound(f"no article with id {', '.join(map(repr, unknown))}; see GET /articles")
    # Counted in SQLite: listing the articles (titles, metadata, languages) cost a delete 0.4 s at 10,000 articles.
    live = sum(seg.article_count() - len(dead) for seg, dead in zip(store.segments, store.dead_articles, strict=True))
    if len(set(article_ids)) >= live:
        raise BadInput("removing every article would leave an empty index; build a new one instead")
    with stage(summary.stages, "write"):
        summary.removed = len(_passage_ids(store, deleted))
        folder = commit(index_dir, store, deleted=deleted)
    return _summarized(summary, folder, start)


def plan_merge(store: Store, factor: int = MERGE_FACTOR) -> list[str]:
    """The segments to merge next (ids, oldest first), or none: the smallest tier holding `factor` segments, else
    a segment that is mostly deleted rows."""
    live = [(e["id"], s.size - n) for e, s, n in zip(store.entries, store.segments, store.dead_counts, strict=True)]
    tiers: dict[int, list[str]] = {}
    for sid, n in live:
        tiers.setdefault(_tier(n, factor), []).append(sid)
    for tier in sorted(tiers):
        if len(tiers[tier]) >= factor:
            return tiers[tier][:factor]
    for (sid, n), seg in zip(live, store.segments, strict=True):
        if seg.size and (seg.size - n) / seg.size > PURGE_SHARE and len(store.segments) > 1:
            return [sid]
    return []


def _tier(n: int, factor: int) -> int:
    """The power of `factor` that `n` live rows reach: 0 below `factor`, 1 below its square, ..."""
    tier = 0
    while n >= factor:
        n //= factor
        tier += 1
    return tier


def refresh_due(store: Store, share: float, min_passages: int) -> str:
    """Why the build's centering means (frozen since its last full build) should be refit by a compaction, or "":
    writes added more than `share` of its passages since, or a language now has `min_passages` passages but no
    mean of its own (it is centered with a borrowed or the global mean)."""
    live = max(store.size, 1)
    written = int(store.manifest.get("written_since_fit", 0))
    if written / live > share:
        return f"{written} of {store.size} passages written since the means were fit (more than {share:.0%})"
    new = _meanless(store, min_passages)
    if new:
        return f"language(s) {', '.join(new)} without a mean of their own"
    young = _outgrown(store)
    if young:
        return f"language(s) {', '.join(young)} at least doubled since their mean was fit on few passages"
    return ""


def refit_now(store: Store, min_passages: int) -> list[str]:
    """Languages whose means cannot wait for the next due merge: those with `min_passages` passages centered with
    the global mean (no mean of their own, none borrowed from the mean bank: their passages and queries keep their
    language identity, which cost about 20 points of nDCG@10 on XQuAD, docs/quality.md#quality-under-writes), and
    those that outgrew a mean fit on few passages."""
    global_mean = [lang for lang in _meanless(store, min_passages) if lang not in store.centering.borrowed]
    return global_mean + _outgrown(store)


def _outgrown(store: Store) -> list[str]:
    """Languages whose own mean was fit on fewer than SETTLED passages and that have at least doubled since: a mean
    of a few passages is mostly their topics (a new language's first writes), so it is refit as the language grows,
    about log2(SETTLED / min passages) times."""
    if not store.centering.enabled:
        return []
    fitted = (store.manifest.get("centering_fit") or {}).get("languages") or {}
    now = (store.manifest.get("counts") or {}).get("languages") or {}
    return sorted(
        lang
        for lang, n in fitted.items()
        if lang in store.centering.means and n < SETTLED and now.get(lang, 0) >= 2 * n
    )


def _meanless(store: Store, min_passages: int) -> list[str]:
    if not store.centering.enabled:
        return []
    langs = (store.manifest.get("counts") or {}).get("languages") or {}
    return sorted(lang for lang, n in langs.items() if n >= min_passages and lang not in store.centering.means)


@dataclass(frozen=True)
class MergeStart:
    """What a merge read: which segments, and the deletions they had then (later ones are carried over)."""

    ids: list[str]
    tombstones: dict[str, set[str]]


def prepare_merge(
    index_dir: Path,
    store: Store,
    ids: Sequence[str],
    *,
    options: VectorIndexOptions,
    zh_tokenizer: ZhTokenizer,
    probes: Callable[[Sequence[Passage], Store], vi.TuningQueries] | None = None,
) -> tuple[Prepared | None, MergeStart]:
    """Write the live passages of segments `ids` of `store` as one new segment (no writer lock needed: nothing
    published changes); None when they have none (the merge then drops them)."""
    chosen = [i for i, e in enumerate(store.entries) if e["id"] in set(ids)]
    articles: list[Article] = []
    passages: list[Passage] = []
    raws: list[np.ndarray] = []
    for i in chosen:
        seg, dead = store.segments[i], store.dead_articles[i]
        articles.extend(seg.all_articles(dead))
        everything = seg.all_passages()  # read once: a merged segment may hold 100,000s of passages
        rows = [r for r, p in enumerate(everything) if p.article_id not in dead]
        passages.extend(everything[r] for r in rows)
        raws.append(np.asarray(seg.raw_vectors()[rows], dtype=np.float32))
    raw = np.concatenate(raws) if raws else np.zeros((0, store.dimension), dtype=np.float32)
    started = {store.entries[i]["id"]: set(store.dead_articles[i]) for i in chosen}
    if not passages:  # every row deleted: the merge only drops the segments
        return None, MergeStart([store.entries[i]["id"] for i in chosen], started)
    tune = None if probes is None else (lambda: probes(passages, store))
    prepared = prepare_segment(index_dir, articles, passages, raw, store, options, zh_tokenizer, tune, groups=True)
    return prepared, MergeStart([store.entries[i]["id"] for i in chosen], started)


def commit_merge(index_dir: Path, store: Store, prepared: Prepared | None, start: MergeStart) -> Path | None:
    """Publish a prepared merge on top of `store` (the published build, read under the writer lock): its segments
    replace the merged ones, and articles deleted from those since the merge started are deleted from it. None
    (and the merge dropped) when a merged segment is gone meanwhile (a compaction replaced it)."""
    now = {e["id"]: set(d) for e, d in zip(store.entries, store.dead_articles, strict=True)}
    if any(sid not in now for sid in start.ids):
        if prepared is not None:
            discard_prepared(prepared)
        return None
    if prepared is None:
        return commit(index_dir, store, drop=set(start.ids))
    carried = {sid: now[sid] - start.tombstones[sid] for sid in start.ids}
    since = set().union(*carried.values())
    deleted = {prepared.entry["id"]: since} if since else {}
    return commit(index_dir, store, [prepared], drop=set(start.ids), deleted=deleted, carried=carried)


def discard_prepared(prepared: Prepared) -> None:
    shutil.rmtree(prepared.folder, ignore_errors=True)


def _holders(store: Store, article_ids: Sequence[str]) -> dict[str, set[str]]:
    """The live versions of these articles, as article ids by the id of the segment holding each."""
    out: dict[str, set[str]] = {}
    for aid in dict.fromkeys(article_ids):
        i = store.holder(aid)
        if i is not None:
            out.setdefault(store.entries[i]["id"], set()).add(aid)
    return out


def _passage_ids(store: Store, deleted: dict[str, set[str]]) -> set[str]:
    ids: set[str] = set()
    for e, seg in zip(store.entries, store.segments, strict=True):
        if deleted.get(e["id"]):
            rows = [int(r) for r in seg.rows_of_articles(deleted[e["id"]])]
            ids |= {k.passage_id for k in seg.keys_at(rows).values()}
    return ids


def _counts(
    base: Store,
    add: Sequence[Prepared],
    drop: set[str] | frozenset[str],
    deleted: dict[str, set[str]],
    carried: dict[str, set[str]],
) -> dict[str, Any]:
    """The new build's live articles, passages and languages, from `base`'s and the change."""
    langs: Counter[str] = Counter((base.manifest.get("counts") or {}).get("languages") or {})
    articles = int((base.manifest.get("counts") or {}).get("articles", 0))
    passages = base.size
    for e, seg, dead in zip(base.entries, base.segments, base.dead_articles, strict=True):
        new_dead = deleted.get(e["id"], set()) - dead
        gone_articles = (set(seg.article_ids()) - dead) if e["id"] in drop else new_dead
        rows = seg.rows_of_articles(gone_articles)
        langs.subtract(Counter(seg.langs_at([int(r) for r in rows]).values()))
        passages -= len(rows)
        articles -= len(gone_articles)
    for p in add:
        langs.update(p.langs)
        passages += int(p.entry["passages"])
        articles += int(p.entry["articles"])
    # A merged segment holds the articles deleted from its sources since the merge started, deleted again in it.
    for e, seg in zip(base.entries, base.segments, strict=True):
        if carried.get(e["id"]):
            rows = seg.rows_of_articles(carried[e["id"]])
            langs.subtract(Counter(seg.langs_at([int(r) for r in rows]).values()))
            passages -= len(rows)
            articles -= len(carried[e["id"]])
    return {"articles": articles, "passages": passages, "languages": {k: v for k, v in sorted(langs.items()) if v}}


def _summarized(summary: BuildSummary, folder: Path, start: float) -> BuildSummary:
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    counts = manifest["counts"]
    summary.build_id = manifest["build_id"]
    summary.articles, summary.passages = counts["articles"], counts["passages"]
    summary.languages = dict(counts["languages"])
    summary.seconds = time.perf_counter() - start
    return summary


def _link(src: Path, dst: Path) -> None:
    """Hard-link a file of an immutable segment into a new build (a copy where the file system has no links)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


__all__ = [
    "MergeStart",
    "Prepared",
    "Changes",
    "add_articles",
    "changes",
    "commit",
    "commit_merge",
    "delete_articles",
    "discard_prepared",
    "plan_merge",
    "prepare_merge",
    "refit_now",
    "refresh_due",
    "updatable",
]
