"""Loading and saving Hugging Face models quietly: without transformers' per-file progress bars."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_progress_bars() -> Iterator[None]:
    """transformers' "Loading weights" and "Writing model shards" bars off for the duration, then as they were.

    They draw on every start for a model that loads in a fraction of a second, and say nothing a user can act
    on; transformers' warnings (a load report of missing weights, say) still reach the log.
    """
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
