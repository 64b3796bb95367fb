"""A tiny deterministic embedder for fast tests of plumbing (never for claims about ranking quality), and the
command line running on it, for tests that need a real process to kill.

    SEARCH_MODEL=fake-model python -m tests.fakes index CORPUS --index INDEX

With PAUSE_AT=<step>:<marker> (a step of `search.index.writers.STEPS`) the process writes the marker file when its
build reaches that publishing step and waits there until the marker is deleted, or it is killed.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path

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


class KilledOnce:
    """A Ray embedding actor's embedder factory (search/index/distributed.py) whose actor process kills itself
    (SIGKILL, as the OOM killer or a lost node would) at its first encode, once per `marker` file: the test of a
    worker lost mid-build. The marker holds the killed pid."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __call__(self, settings: object, device: str) -> object:
        from search.model.embedders import embedder_for

        return _KillsItselfOnce(embedder_for(settings, device), self.marker)  # type: ignore[arg-type]


class _KillsItselfOnce:
    def __init__(self, embedder: object, marker: Path) -> None:
        self.embedder, self.marker = embedder, marker

    def encode(self, texts: Sequence[str], *, query: bool, progress: bool = False) -> np.ndarray:
        if not self.marker.exists():
            self.marker.write_text(str(os.getpid()), encoding="utf-8")
            os.kill(os.getpid(), signal.SIGKILL)
        return self.embedder.encode(texts, query=query, progress=progress)  # type: ignore[attr-defined,no-any-return]


def run_cli() -> None:
    """`search`'s command line with the fake embedder (and, with PAUSE_AT, a pause inside a publishing step)."""
    import search.cli
    import search.index.writers
    from search.config import Settings
    from search.ingest.language import LanguageDetector
    from search.service import SearchService

    def service(settings: Settings) -> SearchService:
        detector = LanguageDetector(["en", "ru", "zh"], preload=False)
        return SearchService(settings, embedder=FakeEmbedder(), detector=detector)

    search.cli._service = service
    if pause := os.environ.get("PAUSE_AT"):
        step, marker = pause.split(":", 1)

        def reached(at: str) -> None:
            if at == step:
                Path(marker).write_text(str(os.getpid()), encoding="utf-8")
                deadline = time.monotonic() + 300  # a test that died without releasing or killing us
                while Path(marker).exists() and time.monotonic() < deadline:
                    time.sleep(0.02)

        search.index.writers.reached = reached  # type: ignore[assignment]
    search.cli.main()


if __name__ == "__main__":
    run_cli()
