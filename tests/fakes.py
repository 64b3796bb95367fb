"""A tiny deterministic embedder for fast tests of plumbing (never for claims about ranking quality)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence

import numpy as np


class FakeEmbedder:
    """Bag of hashed character trigrams; counts calls so tests can see what reached the "model"."""

    name = "fake-model"
    fingerprint = "fake-1"
    dimension = 32
    max_tokens = 64

    def __init__(self) -> None:
        self.encoded: list[str] = []

    def count_tokens(self, text: str, *, query: bool = False) -> int:
        return len(text) // 4 + 4

    def encode(self, texts: Sequence[str], *, query: bool, progress: bool = False) -> np.ndarray:
        self.encoded.extend(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            t = f"  {text.lower()}  "
            for j in range(len(t) - 2):
                h = int.from_bytes(hashlib.blake2b(t[j : j + 3].encode(), digest_size=4).digest(), "little")
                out[i, h % self.dimension] += 1.0 if h & 1 else -1.0
            out[i] /= max(np.linalg.norm(out[i]), 1e-9)
        return out


class GatedEmbedder(FakeEmbedder):
    """The fake embedder behind a gate: while `gate` is clear every encode waits for it, so a test can hold a real
    route mid-request (a slow model call) and release it when it has checked what it wanted, without sleeping.
    An encode held longer than `hold` seconds fails, so a test whose gate is never opened fails instead of hanging."""

    def __init__(self, hold: float = 30.0) -> None:
        super().__init__()
        self.hold = hold
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()  # set once an encode waits at the closed gate

    def encode(self, texts: Sequence[str], *, query: bool, progress: bool = False) -> np.ndarray:
        if not self.gate.is_set():
            self.waiting.set()
            if not self.gate.wait(self.hold):
                raise TimeoutError(f"held at the gate for {self.hold} s: the test never opened it")
        return super().encode(texts, query=query, progress=progress)
