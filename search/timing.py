"""Timed stages: the seconds each named stage of a build or a report took, with an optional progress callback."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

# (stage, done, total): the CLI draws a bar per stage with it, the report API keeps the job's progress.
Progress = Callable[[str, int, int], None]


def no_progress(stage: str, done: int, total: int) -> None:
    """A `Progress` that shows nothing."""


@contextmanager
def stage(stages: dict[str, float], name: str, progress: Progress = no_progress) -> Iterator[None]:
    """Add the seconds the block takes to `stages[name]` (a stage may run in several pieces)."""
    progress(name, 0, 1)
    start = time.perf_counter()
    yield
    stages[name] = stages.get(name, 0.0) + time.perf_counter() - start
    progress(name, 1, 1)
    log.info("stage %s: %.2fs", name, stages[name])
