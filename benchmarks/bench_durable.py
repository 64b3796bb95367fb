"""What durable writes cost: the time a build's write and publish spend in fsync, at a seed size and a larger one.

Each size is written and published the way every write is (`store.write_build`, `store.publish`), with synthetic
passages and seeded random vectors (no model: the embedding is not what is measured) and an exact (flat) vector
index (an approximate one adds training time, not bytes to sync). The time inside `search.index.durable` (every
fsync of files and folders) is summed apart from the rest of the write. Then `search snapshot` of that index (hard
links) is timed too.

    python -m benchmarks.bench_durable [--sizes 200,50000] [--repeat 3]

What it measures is the sync of freshly written, still dirty pages on this machine's disk; a page cache that
is flushed by the kernel meanwhile makes the figure smaller, a slow disk larger. It cannot show that the data
survives a power cut (see docs/operations.md#durability).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from search.index import durable
from search.index.centering import Centering
from search.index.snapshot import take_snapshot
from search.index.store import VectorIndexOptions, new_build_id, publish, write_build
from search.records import Article, Passage

DIM = 384
WORDS = "river city market paper night garden music winter station letter bridge school".split()


def article_of(aid: str, texts: list[str]) -> tuple[Article, list[Passage]]:
    """An English article of these paragraphs and its passages, one per paragraph, as a build would cut them."""
    passages, start = [], 0
    for i, text in enumerate(texts):
        passages.append(Passage(f"{aid}-{i}", aid, aid, i, 0, start, start + len(text), "en", text))
        start += len(text) + 2
    return Article(aid, aid, "\n\n".join(texts), "bench"), passages


def synthetic(n: int, rng: np.random.Generator) -> tuple[list[Article], list[Passage], np.ndarray]:
    """`n` passages of about 60 words in 10-passage articles, with normalized random vectors."""
    passages, articles = [], []
    for a in range(0, n, 10):
        article, found = article_of(f"a{a:07d}", [" ".join(rng.choice(WORDS, 60)) for _ in range(min(10, n - a))])
        articles.append(article)
        passages.extend(found)
    raw = rng.standard_normal((n, DIM), dtype=np.float32)
    return articles, passages, raw / np.linalg.norm(raw, axis=1, keepdims=True)


class SyncClock:
    """Sums the time spent in `search.index.durable`'s syncs, by wrapping them for the run."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.saved: dict[str, Callable[..., Any]] = {}

    def __enter__(self) -> SyncClock:
        for name in ("sync_file", "sync_dir"):
            real = getattr(durable, name)
            self.saved[name] = real
            setattr(durable, name, self._timed(real))
        return self

    def __exit__(self, *_: object) -> None:
        for name, real in self.saved.items():
            setattr(durable, name, real)

    def _timed(self, real: Callable[[Path], None]) -> Callable[[Path], None]:
        def timed(path: Path) -> None:
            start = time.perf_counter()
            real(path)
            self.seconds += time.perf_counter() - start

        return timed


def measure(n: int, repeat: int, rng: np.random.Generator) -> dict[str, Any]:
    articles, passages, raw = synthetic(n, rng)
    centering = Centering.fit(raw, [p.lang for p in passages], 5)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index"
        for _ in range(repeat):
            with SyncClock() as clock:
                start = time.perf_counter()
                folder = write_build(
                    index, new_build_id(), articles, passages, raw, centering, {}, VectorIndexOptions(flat_max=10**9)
                )
                publish(index, folder)
                total = time.perf_counter() - start
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            rows.append((total, clock.seconds, size))
        snap = take_snapshot(index, Path(tmp) / "snap")
    seconds, synced, nbytes = (float(np.median([r[i] for r in rows])) for i in range(3))
    return {
        "passages": n,
        "build_mb": round(nbytes / 1e6, 1),
        "write_publish_s": round(seconds, 3),
        "fsync_s": round(synced, 3),
        "fsync_share": round(synced / seconds, 3),
        "snapshot_s": round(snap.seconds, 3),
        "snapshot_linked": snap.linked,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200,50000", help="passages per build, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="builds per size (the median is reported)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| passages | build MB | write + publish s | of which fsync s | fsync share | snapshot s (linked files) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in (int(s) for s in args.sizes.split(",")):
        r = measure(n, args.repeat, rng)
        print(
            f"| {r['passages']:,} | {r['build_mb']} | {r['write_publish_s']} | {r['fsync_s']} | "
            f"{r['fsync_share']:.1%} | {r['snapshot_s']} ({r['snapshot_linked']}) |"
        )


if __name__ == "__main__":
    main()
