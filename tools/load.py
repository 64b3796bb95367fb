"""Load test: N concurrent clients search a running server for T seconds; JSON results; exit 1 on any error.

    python tools/load.py --url http://127.0.0.1:8000 --clients 16 --seconds 60
    python tools/load.py --url ... --during "search index seeds/ --index index" --reload --key ADMIN_KEY
    python tools/load.py --serve index --seconds 60       # start a server on that index, load it, stop it

The mix: GET /search, POST /search (dense, lexical, hybrid) and POST /search/batch, with English, Chinese and
Russian queries, half of them new each time (a nonce defeats the query cache, so the model really encodes).
An error is any response other than 200, or a request that fails or takes longer than --timeout. With
--during, a command (e.g. a reindex of the served index) runs once, --during-at seconds in, while the load
goes on, and the load lasts until the command has finished and --settle seconds more; --reload asks the
server to serve the new build (POST /admin/reload: needs writes on and, with keys, an admin key), else the
server's own watcher picks it up. "builds" lists each build id served and when. Loopback URLs only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shlex
import sys
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from _server import running_server

QUERIES = [
    "普京如何看待俄美关系?",
    "北约是冷战的产物吗?",
    "美国暂停了哪些对乌克兰的军援?",
    "Что Путин думает об отношениях России и США?",
    "Кто такой Ушаков?",
    "Почему НАТО называют «мёртвым мозгом»?",
    "Who is Ushakov?",
    "Why did the US Department of Defense suspend aid to Ukraine?",
    "Did Russia fulfill the Treaty on Conventional Armed Forces in Europe?",
]
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    routes: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)


def pick_request(rng: random.Random) -> tuple[str, str, dict[str, Any]]:
    """(route name, method, httpx request arguments) of one request of the mix."""
    query = rng.choice(QUERIES)
    if rng.random() < 0.5:
        query = f"{query} {rng.randrange(10**6)}"
    roll = rng.random()
    if roll < 0.4:
        return "GET /search", "GET", {"url": "/search", "params": {"q": query, "k": rng.choice((3, 5, 10))}}
    if roll < 0.85:
        body = {"query": query, "k": 10, "mode": rng.choice(("dense", "lexical", "hybrid"))}
        return "POST /search", "POST", {"url": "/search", "json": body}
    queries = [{"query": q, "k": 5} for q in rng.sample(QUERIES, 4)]
    return "POST /search/batch", "POST", {"url": "/search/batch", "json": {"queries": queries}}


async def client(http: httpx.AsyncClient, stop: asyncio.Event, results: Results, seed: int, t0: float) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        route, method, kwargs = pick_request(rng)
        start = time.perf_counter()
        try:
            r = await http.request(method, **kwargs)
            problem = None if r.status_code == 200 else f"{route} -> {r.status_code}: {r.text[:200]}"
            kind = str(r.status_code)
        except httpx.HTTPError as exc:
            problem, kind = f"{route} -> {type(exc).__name__}: {exc}", type(exc).__name__
        results.latencies.append(time.perf_counter() - start)
        results.routes[route] += 1
        if problem:
            results.errors[kind] += 1
            if len(results.examples) < 5:
                results.examples.append(f"at {time.monotonic() - t0:.1f} s: {problem}")


async def during(command: str, at: float, reload: bool, http: httpx.AsyncClient) -> dict[str, Any]:
    """Run `command` once, `at` seconds in; then optionally ask the server to reload."""
    await asyncio.sleep(at)
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *shlex.split(command), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await proc.communicate()
    out: dict[str, Any] = {"command": command, "started_at_s": at, "exit_code": proc.returncode}
    out["seconds"] = round(time.perf_counter() - start, 2)
    if proc.returncode != 0:
        out["output_tail"] = output.decode(errors="replace")[-1000:]
    if reload and proc.returncode == 0:
        r = await http.post("/admin/reload")
        out["reload"] = {"status": r.status_code, "body": r.json() if r.status_code == 200 else r.text[:300]}
    return out


async def watch_builds(http: httpx.AsyncClient, start: float, stop: asyncio.Event, seen: list[dict[str, Any]]) -> None:
    """Poll /health once a second; record each build id served, and when it was first seen."""
    while not stop.is_set():
        try:
            current = str((await http.get("/health")).json().get("build_id"))
        except (httpx.HTTPError, ValueError):
            current = "unreachable"
        if not seen or seen[-1]["build_id"] != current:
            seen.append({"build_id": current, "seen_at_s": round(time.monotonic() - start, 1)})
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile, in milliseconds."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return round(sorted_values[rank] * 1000, 1)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
    # Idle connections are dropped well before uvicorn's 5 s keep-alive timeout: reusing one just as the server
    # closes it fails the request, an error of the client's pool rather than of the server.
    pool = args.clients + 2
    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool, keepalive_expiry=1.0)
    async with httpx.AsyncClient(
        base_url=args.url, headers=headers, timeout=args.timeout, limits=limits, trust_env=False
    ) as http:
        results, stop = Results(), asyncio.Event()
        builds: list[dict[str, Any]] = []
        start = time.monotonic()
        side = asyncio.create_task(during(args.during, args.during_at, args.reload, http)) if args.during else None
        watcher = asyncio.create_task(watch_builds(http, start, stop, builds))

        async def stop_when_done() -> None:
            await asyncio.sleep(args.seconds)
            if side is not None:  # keep the load on until the command is done and its build is served
                await side
                await asyncio.sleep(args.settle)
            stop.set()

        clients = (client(http, stop, results, seed, start) for seed in range(args.clients))
        await asyncio.gather(stop_when_done(), *clients)
        elapsed = time.monotonic() - start
        side_result = side.result() if side else None
        await watcher
    lat = sorted(results.latencies)
    out: dict[str, Any] = {
        "url": args.url,
        "clients": args.clients,
        "seconds": round(elapsed, 2),
        "requests": len(lat),
        "errors": sum(results.errors.values()),
        "error_kinds": dict(results.errors),
        "error_examples": results.examples,
        "requests_per_second": round(len(lat) / elapsed, 2) if elapsed else 0.0,
        "latency_ms": {
            "p50": percentile(lat, 50), "p95": percentile(lat, 95), "p99": percentile(lat, 99),
            "max": round(lat[-1] * 1000, 1) if lat else 0.0,
        },
        "by_route": dict(results.routes),
        "builds": builds,  # each build id served, and when it was first seen
    }  # fmt: skip
    if side_result is not None:
        out["during"] = side_result
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", default="http://127.0.0.1:8000", help="a running server, on a loopback address")
    where.add_argument("--serve", type=Path, default=None, help="start `search serve` on this index for the run")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients [16]")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to keep sending [60]")
    parser.add_argument("--timeout", type=float, default=60.0, help="a request slower than this is an error [60]")
    parser.add_argument("--key", default=None, help="API key to send as a bearer token")
    parser.add_argument("--during", default=None, help="a command to run once during the load, e.g. a reindex")
    parser.add_argument("--during-at", type=float, default=5.0, help="seconds into the run to start it [5]")
    parser.add_argument("--reload", action="store_true", help="POST /admin/reload once the command succeeds")
    parser.add_argument("--settle", type=float, default=5.0, help="with --during, seconds of load after the command "
                        "ends, for the server to reload [5]")  # fmt: skip
    parser.add_argument("--out", default=None, help="also write the JSON results to this file")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0:
        print("error: --clients must be at least 1 and --seconds above 0", file=sys.stderr)
        return 2
    with ExitStack() as stack:
        if args.serve:
            args.url = stack.enter_context(running_server(args.serve)).url
        host = urlsplit(args.url).hostname or ""
        if host not in LOOPBACK and not host.startswith("127."):
            print(f"error: {args.url} is not a loopback address; this tool only loads local servers", file=sys.stderr)
            return 2
        out = asyncio.run(run(args))
    text = json.dumps(out, ensure_ascii=False, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    failed_side = out.get("during", {}).get("exit_code", 0) != 0
    return 1 if out["errors"] or failed_side or not out["requests"] else 0


if __name__ == "__main__":
    sys.exit(main())
