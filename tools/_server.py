"""A `search serve` process on a free loopback port, for the load and fuzz tools' --serve option."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(index: Path, extra_env: dict[str, str] | None = None, wait: float = 300) -> Iterator[str]:
    """Serve `index` on 127.0.0.1 until the block ends; yields the base URL. Its output goes to a temp file."""
    port = free_port()
    env = {**os.environ, "SEARCH_INDEX_DIR": str(index), **(extra_env or {})}
    with tempfile.NamedTemporaryFile("w+", prefix="search-serve-", suffix=".log", delete=False) as log:
        command = [sys.executable, "-m", "search", "serve", "--port", str(port)]
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + wait
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the server exited early; see {log.name}")
                try:
                    if httpx.get(f"{url}/health", timeout=2, trust_env=False).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server was not healthy within {wait:g} s; see {log.name}")
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
