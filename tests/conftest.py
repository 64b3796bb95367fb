"""Shared fixtures: the real model (session-wide), a seed index, and a real uvicorn server on it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "seeds"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from search.config import Settings

    # The model cache is shared with `make model` (the default ~/.cache/search) so the suite does not restore
    # the model again; the index is the test's own.
    return Settings(index_dir=tmp_path_factory.mktemp("seed-index"))


@pytest.fixture(scope="session")
def service(settings):  # type: ignore[no-untyped-def]
    from search.service import SearchService

    svc = SearchService(settings)
    svc.build([SEEDS])
    svc.load()
    return svc


@contextmanager
def serving(index_dir: Path, cache_dir: Path, log_dir: Path) -> Iterator[str]:
    """A real `search serve` process (uvicorn) on `index_dir`, on a free loopback port; stopped on exit."""
    port = free_port()
    # A file, not a pipe: nobody reads the server's output while tests run, and a full pipe would block it.
    log_path = log_dir / "server.log"
    log = log_path.open("w")
    env = {**os.environ, "SEARCH_INDEX_DIR": str(index_dir), "SEARCH_CACHE_DIR": str(cache_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "search", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.close()
            raise RuntimeError(f"server exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        proc.kill()
        log.close()
        raise RuntimeError(f"server did not become healthy within 180 s:\n{log_path.read_text()}")
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def server_url(service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A real `search serve` process (uvicorn) on the seed index, on a free loopback port."""
    s = service.settings
    with serving(s.index_dir, s.cache_dir, tmp_path_factory.mktemp("server")) as url:
        yield url
