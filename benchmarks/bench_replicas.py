"""Serving throughput: queries per second of plain `search serve` (uvicorn) and of `search serve --replicas N` (Ray
Serve) on the same index, the same questions and the same cores.

Every configuration gets the machine's CPUs: uvicorn's one process runs torch on all of them; one replica reserves
all of them (SEARCH_REPLICA_CPUS, which also sets its torch threads); N replicas share them, one each when N equals
the CPU count. Ray runs locally, started by the command, as a user's first try would. The questions are distinct
XQuAD questions (no query-vector cache hits), sent by concurrent clients over keep-alive connections.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bench_query import cpu_seconds, distinct_questions, drive
from benchmarks.machine import load_average, machine_info, machine_markdown
from search.config import Settings
from search.service import SearchService
from tools._server import running_server

SEEDS = Path(__file__).resolve().parents[1] / "seeds"


def seed_index(folder: Path) -> Path:
    """The seed corpus indexed into `folder` (once: a folder that already holds a build is used as it is)."""
    if not (folder / "current").exists():
        SearchService(Settings(index_dir=folder)).build([SEEDS])
    return folder


def configurations(replicas: Sequence[int]) -> list[tuple[str, list[str], dict[str, str]]]:
    """(name, `search serve` arguments, environment) of each server measured; uvicorn first."""
    cpus = os.cpu_count() or 1
    out: list[tuple[str, list[str], dict[str, str]]] = [("uvicorn", [], {})]
    for n in replicas:
        out.append((f"ray serve, {n} replica{'s' * (n > 1)}", ["--replicas", str(n)], {
            "SEARCH_REPLICA_CPUS": str(max(1, cpus // n)),
        }))  # fmt: skip
    return out


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of `root` and every process below it, from /proc (Linux): with Ray, the command's local cluster
    (GCS, raylet, Serve's controller and proxy, the replicas) hangs below the `search serve` process, so this is
    the engine's whole cost; contention changes it far less than wall time."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # a process that ended meanwhile
    tree, grew = {root}, True
    while grew:
        below = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= below
        grew = bool(below)
    total = 0.0
    for pid in tree:
        try:
            total += cpu_seconds(pid)
        except (OSError, ValueError, IndexError):
            continue
    return total


def measure(index: Path, args: list[str], env: dict[str, str], queries: Sequence[str], clients: int, log: Path) -> Any:
    with running_server(index, env, wait=600, log_path=log, args=args) as served:
        seen: set[str] = set()
        for q in queries[: clients * 4]:  # warm-up, untimed: every replica's first calls, and which replicas answer
            r = httpx.get(f"{served.url}/search", params={"q": q, "k": 10}, timeout=120, trust_env=False)
            seen.add(r.headers.get("x-search-replica", "?"))
        load_before = load_average()
        timed = queries[clients * 4 :]
        cpu = tree_cpu_seconds(served.pid)
        level = drive(served.url, timed, clients)
        cpu_ms = (tree_cpu_seconds(served.pid) - cpu) * 1000 / len(timed)
        return level | {
            "server_cpu_ms_per_query": round(cpu_ms, 2),
            "replicas_seen_in_warm_up": len(seen),
            "load_average_before": load_before,
        }


def markdown(results: list[dict[str, Any]]) -> str:
    base = results[0]["queries_per_s"]
    lines = [
        "| server | clients | queries | queries/s | vs uvicorn | p50 ms | p95 ms | server CPU ms/query |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['server']} | {r['clients']} | {r['n']} | {r['queries_per_s']:.1f} | "
            f"{r['queries_per_s'] / base:.2f}x | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | "
            f"{r['server_cpu_ms_per_query']} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_replicas", description=__doc__.split("\n")[0])
    parser.add_argument("--index", type=Path, default=None, help="an index to serve [default: seeds/, built in --out]")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2], help="replica counts [default: 1 2]")
    parser.add_argument("--queries", type=int, default=300, help="timed questions per server [default: %(default)s]")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients [default: %(default)s]")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder [default: %(default)s]")
    a = parser.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    index = a.index or seed_index(a.out / "replicas-index")
    questions = distinct_questions()[: a.queries + a.clients * 4]
    info = machine_info()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as logs:
        for name, args, env in configurations(a.replicas):
            start = time.perf_counter()
            level = measure(index, args, env, questions, a.clients, Path(logs) / f"{len(results)}.log")
            results.append({"server": name, "args": args, "env": env, **level})
            print(f"{name}: {level['queries_per_s']:.1f} queries/s ({time.perf_counter() - start:.0f} s)", flush=True)
    info["load_average_at_end"] = load_average()
    (a.out / "replicas.json").write_text(json.dumps({"machine": info, "results": results}, indent=2))
    print(machine_markdown(info))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
