"""A `search serve` process on a free loopback port, until a block ends: the one launcher of the tests (real
uvicorn fixtures), the benchmarks (`benchmarks.bench_query`) and the load and fuzz tools (`--serve`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Served:
    url: str
    pid: int
    log: Path


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM if its parent dies without cleaning up (SIGKILL), so none is orphaned."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


@contextmanager
def running_server(
    index: Path,
    extra_env: dict[str, str] | None = None,
    wait: float = 300,
    log_path: Path | None = None,
    port: int | None = None,
    args: Sequence[str] = (),
) -> Iterator[Served]:
    """Serve `index` on 127.0.0.1 until the block ends; yields once /health answers. The output goes to a file
    (`log_path`, else a temp file), not a pipe: nobody reads it while the block runs, and a full pipe would block
    the server. `args` go to `search serve` (e.g. `--replicas 2`)."""
    port = port or free_port()
    env = {**os.environ, "SEARCH_INDEX_DIR": str(index), **(extra_env or {})}
    if log_path is None:
        with tempfile.NamedTemporaryFile(prefix="search-serve-", suffix=".log", delete=False) as tmp:
            log_path = Path(tmp.name)
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        command = [sys.executable, "-m", "search", "serve", "--port", str(port), *args]
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        try:
            deadline = time.monotonic() + wait
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the server exited with {proc.returncode}:\n{_tail(log_path)}")
                try:
                    if httpx.get(f"{url}/health", timeout=2, trust_env=False).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server was not healthy within {wait:g} s:\n{_tail(log_path)}")
                time.sleep(0.5)
            yield Served(url, proc.pid, log_path)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _tail(path: Path, lines: int = 40) -> str:
    return f"(last lines of {path})\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
