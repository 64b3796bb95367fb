"""kill -9 inside each publishing step of the writes that segments brought: a new segment (`search index` of a
changed corpus), tombstones (`search remove`) and a merge (what `search index` runs after its write when a tier is
full; here on an unchanged corpus, so the merge is all it does).

After each kill the published index is the previous state or the new one, whole (articles, search results and
segments equal one of the two, computed apart on a copy of the index), every file matches its checksum, and the
next write succeeds and leaves nothing behind. The fake embedder, in real processes (`tests.helpers.Cli`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from search.config import Settings
from search.index.store import Store, current_build, read_manifest
from search.index.writers import OWNER
from search.ingest.language import LanguageDetector
from search.records import SearchQuery
from search.service import SearchService
from tests.fakes import FakeEmbedder
from tests.helpers import Cli, file_hashes, leftovers, write

QUERIES = ["cats sleep in the sun", "dogs bark at strangers", "кошки спят на солнце", "rivers 10", "version 1"]
TOPICS = ["cats", "dogs", "owls", "bees", "frogs", "goats", "ducks", "crows", "mice", "fish", "birds", "bats"]
# Where the kill lands in each step: what is hidden in the index folder then (a step's own atomic rename not done).
IN_STEP = {"write": ".tmp-", "rename": ".tmp-", "swap": ".current-", "prune": ".trash-"}
# Killed in these steps, the new state is published already (`current` was swapped before the kill).
PUBLISHED = ("prune", "done")


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector(["en", "ru"], preload=False)


def corpus(folder: Path, versions: dict[int, int]) -> Path:
    """`folder` holding articles `a<i>.txt` in the given versions (i -> version), and no others: English and
    Russian paragraphs. One folder changed in place, as a user's would (an article's source is its path)."""
    for old in folder.glob("*.txt"):
        old.unlink()
    for i, version in versions.items():
        topic = TOPICS[i % len(TOPICS)]
        write(
            folder / f"a{i:02d}.txt",
            f"{topic.title()} of article {i} sleep in the sun (version {version}).\n\n"
            f"Dogs bark at strangers {i} times near the {topic}.\n\nКошки спят на солнце {i}.\n\n"
            f"Rivers {i} flow to the sea past the {topic}.\n",
        )
    return folder


def settings(index: Path, **overrides: object) -> Settings:
    """What the command line of a test runs with (`Cli`: SEARCH_MODEL=fake-model, its cache folder)."""
    return Settings(model="fake-model", index_dir=index, cache_dir=index.parent / "cache", **overrides)  # type: ignore[arg-type]


def service(index: Path, detector: LanguageDetector, **overrides: object) -> SearchService:
    return SearchService(settings(index, **overrides), embedder=FakeEmbedder(), detector=detector)


@dataclass(frozen=True)
class State:
    """What a published index holds and answers: compared whole, so a mix of two states shows."""

    articles: list[tuple[str, str]]  # id, text
    answers: list[list[tuple[str, float]]]  # per query and mode: passage ids and scores
    segments: list[tuple[int, int]]  # rows and deleted rows of each segment


def published(index: Path, detector: LanguageDetector) -> State:
    """The published state of `index`, loaded afresh with every file checked against its checksum."""
    store = Store(*read_manifest(index), verify=True)
    svc = service(index, detector)
    try:
        answers = []
        for q in QUERIES:
            for mode in ("dense", "lexical", "hybrid"):
                hits = svc.search(SearchQuery(q, k=8, mode=mode)).hits  # type: ignore[arg-type]
                answers.append([(h.passage.passage_id, round(h.score, 6)) for h in hits])
        return State(
            sorted((a.id, a.text) for a in store.all_articles()),
            answers,
            [(seg.size, dead) for seg, dead in zip(store.segments, store.dead_counts, strict=True)],
        )
    finally:
        svc.close()
        store.close()


def reference(
    index: Path, detector: LanguageDetector, change: Callable[[SearchService], object], **overrides: object
) -> State:
    """The new state, made apart: `change` run in this process (with settings `overrides`) on a copy of `index`."""
    copy = index.parent / "reference"
    shutil.copytree(index, copy, symlinks=True)  # `current` is a relative link: it points into the copy
    svc = service(copy, detector, **overrides)
    try:
        change(svc)
    finally:
        svc.close()
    return published(copy, detector)


def kill_in_step(
    step: str,
    index: Path,
    detector: LanguageDetector,
    clis: Callable[..., Cli],
    args: Sequence[str],
    new: State,
    once: bool = False,
    unlocked: Sequence[str] = (),
    **env: str,
) -> None:
    """Run `search ARGS`, kill it inside `step`, and check what is published then and after the next writes: the
    same command again, then another write. With `once`, the command cannot be repeated once it has published (a
    removal: the articles are gone then). In the steps `unlocked` the writer holds no lock (a merge writing its
    segment: writes go on meanwhile)."""
    previous_build = current_build(index)
    assert previous_build is not None
    before = file_hashes(previous_build)
    previous = published(index, detector)
    assert previous != new  # the two states can be told apart

    killed = clis("killed", *args, pause=step, **env)
    killed.wait_paused()
    in_step = leftovers(index)
    if step == "done":  # published and synced, not yet answered: nothing hidden but the lock holder's record
        assert in_step == [OWNER] and current_build(index) != previous_build
    else:
        assert [n for n in in_step if n.startswith(IN_STEP[step])], in_step  # the kill lands inside the step
        assert (OWNER in in_step) == (step not in unlocked), in_step
    killed.kill()

    assert file_hashes(previous_build) == before  # byte for byte: the new build links its files, never writes them
    assert published(index, detector) == (new if step in PUBLISHED else previous)
    assert leftovers(index) == in_step  # until the next writer: their owner is gone

    # The same command again: it finishes the work (or finds it done), clearing what the killed one left.
    again = clis("again", *args, **env)
    rc, _ = again.finish()
    if once and step in PUBLISHED:
        assert rc == 7 and again.stderr.startswith("error: no article with id"), again.stderr
    else:
        assert rc == 0 and leftovers(index) == [], again.stderr
    assert published(index, detector) == new

    # And a write that publishes, on top of what the kill left.
    svc = service(index, detector, merges="off")
    try:
        published_id = current_build(index)
        svc.remove_articles(["a01.txt"])
        assert current_build(index) != published_id and leftovers(index) == []  # the killed writer's are cleared
        assert "a01.txt" not in {a for a, _ in published(index, detector).articles}
        # the build it published and the one before it: a build the killed writer renamed into place but never
        # published is pruned too
        assert len(list((index / "builds").iterdir())) == 2
    finally:
        svc.close()


BASE = dict.fromkeys(range(8), 0)


def base_index(tmp_path: Path, detector: LanguageDetector) -> Path:
    """8 articles built at once, twice (two builds: the next publication deletes the older, the prune step)."""
    index = tmp_path / "index"
    svc = service(index, detector)
    source = corpus(tmp_path / "corpus", BASE)
    svc.build([source])
    svc.build([source], full=True)
    svc.close()
    return index


@pytest.mark.parametrize("step", ["write", "rename", "swap", "prune", "done"])
def test_kill_9_inside_a_segment_write(
    step: str, tmp_path: Path, detector: LanguageDetector, clis: Callable[..., Cli]
) -> None:
    index = base_index(tmp_path, detector)
    # a02 changed, a09 new, a05 gone: 3 of 8 articles, so `search index` writes a segment and tombstones
    changed = corpus(tmp_path / "corpus", {**{i: 0 for i in BASE if i != 5}, 2: 1, 9: 0})
    new = reference(index, detector, lambda svc: svc.build([changed]), merges="off")
    assert new.segments == [(32, 8), (8, 0)]  # a segment was written: the upsert path, not a full build
    args = ["index", str(changed), "--index", str(index), "--json"]
    kill_in_step(step, index, detector, clis, args, new, SEARCH_MERGES="off")


@pytest.mark.parametrize("step", ["rename", "swap", "prune", "done"])  # tombstones only: no segment is written
def test_kill_9_inside_a_removal(
    step: str, tmp_path: Path, detector: LanguageDetector, clis: Callable[..., Cli]
) -> None:
    index = base_index(tmp_path, detector)
    new = reference(index, detector, lambda svc: svc.remove_articles(["a03.txt", "a06.txt"]))
    assert new.segments == [(32, 8)]
    args = ["remove", "a03.txt", "a06.txt", "--index", str(index), "--json"]
    kill_in_step(step, index, detector, clis, args, new, once=True)


MERGE_ENV = {"SEARCH_MERGE_FACTOR": "2", "SEARCH_REFRESH_SHARE": "100"}  # merged when two segments share a tier


def segmented_index(tmp_path: Path, detector: LanguageDetector) -> tuple[Path, Path]:
    """An index whose two small segments are due for a merge at SEARCH_MERGE_FACTOR=2, and its corpus folder,
    unchanged since it was indexed: `search index` of it has nothing to write, and runs the merge."""
    index = tmp_path / "index"
    svc = service(index, detector, merges="off")
    svc.build([corpus(tmp_path / "corpus", BASE)])
    # two segments of one tier: a10 and a11 (and a05 gone), then a10 again, changed
    svc.build([corpus(tmp_path / "corpus", {**{i: 0 for i in BASE if i != 5}, 10: 0, 11: 0})])
    latest = corpus(tmp_path / "corpus", {**{i: 0 for i in BASE if i != 5}, 10: 1, 11: 0})
    svc.build([latest])
    svc.close()
    assert published(index, detector).segments == [(32, 4), (8, 4), (4, 0)]
    return index, latest


@pytest.mark.parametrize("step", ["write", "rename", "swap", "prune", "done"])
def test_kill_9_inside_a_merge(step: str, tmp_path: Path, detector: LanguageDetector, clis: Callable[..., Cli]) -> None:
    index, latest = segmented_index(tmp_path, detector)
    new = reference(index, detector, lambda svc: svc.merge(), merge_factor=2, refresh_share=100.0)
    assert new.segments == [(32, 4), (8, 0)]  # the two small ones merged, a10's old version purged
    args = ["index", str(latest), "--index", str(index), "--json"]
    kill_in_step(step, index, detector, clis, args, new, unlocked=["write"], **MERGE_ENV)


@pytest.mark.parametrize("end", ["resumed", "killed"])
def test_a_removal_while_a_merge_writes_its_segment(
    end: str, tmp_path: Path, detector: LanguageDetector, clis: Callable[..., Cli]
) -> None:
    """A merge writes its segment without the writer lock: another process removes an article meanwhile, without
    waiting; the merge then publishes with that deletion carried over into its segment, or, killed, leaves the
    removal published and the next merge purges it."""
    index, latest = segmented_index(tmp_path, detector)
    purged = reference(
        index, detector, lambda svc: (svc.remove_articles(["a11.txt"]), svc.merge()), merges="off", merge_factor=2,
        refresh_share=100.0,
    )  # fmt: skip
    assert purged.segments == [(32, 4), (4, 0)]  # a11's segment, all deleted now, dropped
    merging = clis("merge", "index", str(latest), "--index", str(index), "--json", pause="write", **MERGE_ENV)
    merging.wait_paused()
    removal = clis(
        "remove", "remove", "a11.txt", "--index", str(index), "--json", SEARCH_WRITE_LOCK_TIMEOUT="0",
        SEARCH_MERGES="off",
    )  # fmt: skip
    assert removal.finish()[0] == 0, removal.stderr  # no wait: the merge holds no lock
    removed = published(index, detector)
    assert "a11.txt" not in {a for a, _ in removed.articles}
    if end == "resumed":
        merging.resume()
        assert merging.finish()[0] == 0, merging.stderr
        merged = published(index, detector)
        assert merged.segments == [(32, 4), (8, 4)]  # merged, with a11 deleted in the new segment
        assert merged.articles == removed.articles
        # dense: the same vectors (to float16 precision: a merge re-indexes the stored raw vectors), the same ranks
        assert [[pid for pid, _ in a] for a in merged.answers[0::3]] == [
            [pid for pid, _ in a] for a in removed.answers[0::3]
        ]
    else:
        merging.kill()
        assert published(index, detector) == removed
        assert [n for n in leftovers(index) if n.startswith(".tmp-seg-")], leftovers(index)
        corpus(latest, {**{i: 0 for i in BASE if i != 5}, 10: 1})  # the corpus without a11 too: nothing to write
        rc, _ = clis("again", "index", str(latest), "--index", str(index), "--json", **MERGE_ENV).finish()
        assert rc == 0 and published(index, detector) == purged
    assert leftovers(index) == []
