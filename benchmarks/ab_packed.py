"""`python -m benchmarks.ab_packed --old FILE`: this checkout's packed forward pass against another version of
`search/model/packed.py`, taking turns in one process on the same XQuAD paragraphs and questions, so load from other
work on a shared machine falls on both alike. Prints passages/s per round, single-query p50, the ratios and the
lowest cosine between the two versions' vectors. How the fused-attention change was measured:

    git show c6e3e35~1:search/model/packed.py > /tmp/packed_old.py
    python -m benchmarks.ab_packed --old /tmp/packed_old.py
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_precision import LANGS, texts
from benchmarks.machine import load_average
from search.config import Settings
from search.model.embedders import SentenceTransformerEmbedder, embedder_for


def load_module(path: Path) -> Any:
    """`path` imported as a module of its own (registered, so its dataclasses resolve their annotations)."""
    spec = importlib.util.spec_from_file_location("packed_other", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules["packed_other"] = module
    spec.loader.exec_module(module)
    return module


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", type=Path, required=True, help="another version of search/model/packed.py")
    parser.add_argument("--passages", type=int, default=96, help="XQuAD paragraphs (en, zh, ru in turn)")
    parser.add_argument("--queries", type=int, default=48, help="questions, one per call")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    embedder = embedder_for(Settings())
    if not isinstance(embedder, SentenceTransformerEmbedder) or embedder._packed is None:
        raise SystemExit("the default model does not run packed here: nothing to compare")
    versions = {"new": embedder._packed, "old": load_module(args.old).PackedBert(embedder._model[0].auto_model)}
    data = texts(LANGS, args.queries, args.passages)
    rates: dict[str, list[float]] = {name: [] for name in versions}
    queries: dict[str, list[float]] = {name: [] for name in versions}
    vectors: dict[str, np.ndarray] = {}
    loads = [load_average()[0]]
    for r in range(args.rounds):
        for name in list(versions)[:: 1 if r % 2 == 0 else -1]:  # alternate which goes first
            embedder._packed = versions[name]
            start = time.perf_counter()
            vectors[name] = embedder.encode(data["paragraphs"], query=False)
            rates[name].append(len(data["paragraphs"]) / (time.perf_counter() - start))
            for q in data["questions"]:
                start = time.perf_counter()
                embedder.encode([q], query=True)
                queries[name].append((time.perf_counter() - start) * 1e3)
        loads.append(load_average()[0])
    for name in versions:
        p50 = float(np.median(queries[name]))
        print(f"{name}: passages/s {[round(x, 2) for x in rates[name]]}, one query p50 {p50:.1f} ms")
    rate = float(np.mean(rates["new"]) / np.mean(rates["old"]))
    query = float(np.median(queries["new"]) / np.median(queries["old"]))
    cosine = float((vectors["new"] * vectors["old"]).sum(axis=1).min())
    print(f"new/old: passages/s {rate:.2f}x, one query p50 {query:.2f}x; lowest cosine {cosine:.7f}")
    print(f"load average over the run: {min(loads):.1f}-{max(loads):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
