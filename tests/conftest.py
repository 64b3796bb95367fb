"""Shared fixtures: the real model (session-wide), a seed index, and a real uvicorn server on it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tools._server import free_port, running_server

__all__ = ["free_port", "serving"]

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "seeds"


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
    with running_server(
        index_dir, {"SEARCH_CACHE_DIR": str(cache_dir)}, wait=180, log_path=log_dir / "server.log"
    ) as served:
        yield served.url


@pytest.fixture(scope="session")
def server_url(service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A real `search serve` process (uvicorn) on the seed index, on a free loopback port."""
    s = service.settings
    with serving(s.index_dir, s.cache_dir, tmp_path_factory.mktemp("server")) as url:
        yield url
