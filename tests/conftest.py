"""Shared fixtures: the real model (session-wide), a seed index, a real uvicorn server on it, a small
fake-embedded service (per module), and command line processes to pause and kill."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import SEEDS, Cli, serving, small_service


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


@pytest.fixture(scope="session")
def server_url(service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A real `search serve` process (uvicorn) on the seed index, on a free loopback port."""
    s = service.settings
    with serving(s.index_dir, s.cache_dir, tmp_path_factory.mktemp("server")) as url:
        yield url


@pytest.fixture(scope="module")
def fake_service(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Two short articles (en, ru) indexed with the fake embedder: the real app's plumbing, without the model."""
    return small_service(tmp_path_factory.mktemp("guarded"))


@pytest.fixture
def clis(tmp_path: Path) -> Iterator[Callable[..., Cli]]:
    """Start `search` processes on the fake embedder (`Cli`); any still running at the end is killed."""
    started: list[Cli] = []

    def start(name: str, *args: str, pause: str | None = None, **env: str) -> Cli:
        started.append(Cli(tmp_path, name, *args, pause=pause, **env))
        return started[-1]

    yield start
    for cli in started:
        cli.kill()
