"""The same sentence-transformers weights run by ONNX Runtime: exported once (fp32, or int8 weights) into the cache.

Only the transformer runs in ONNX, with the mean pooling folded into the graph (its output is the masked mean of
the last hidden state, unnormalized, as the windowed path needs it); tokens come from the model's own tokenizer
and vectors are L2-normalized here, so a text gets the same tokens, windows and prompt as with the torch backend.
Torch and sentence-transformers are needed only for the one-time export.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from search.errors import ModelUnavailable
from search.model.loading import no_progress_bars
from search.model.windows import windowed_mean

log = logging.getLogger(__name__)

# Part of every ONNX fingerprint and file name: bump it when the export or the quantization changes the vectors,
# so embedding caches and indexes made with the old files are never mixed with the new ones.
EXPORT_VERSION = "1"
OPSET = 17
_POOLING = "sentence_transformers.sentence_transformer.modules.pooling.Pooling"


def onnx_dir(folder: Path, fingerprint: str, cache_dir: Path) -> Path:
    """Where a model folder's ONNX files live: beside the restored model in the cache, keyed by its fingerprint."""
    name = folder.name if folder.name.endswith(fingerprint) else f"{folder.name}-{fingerprint}"
    return cache_dir / "models" / f"{name}-onnx"


def onnx_fingerprint(fingerprint: str, quantized: bool) -> str:
    return f"{fingerprint}+onnx{'-int8' if quantized else ''}-v{EXPORT_VERSION}"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"cannot read {path}: {exc}") from exc
    return data if isinstance(data, dict) else {"modules": data}


def check_supported(folder: Path) -> None:
    """The ONNX backends rebuild only transformer → mean pooling → normalize; refuse anything else up front."""
    modules = _read_json(folder / "modules.json")["modules"]
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    pooling = [m for m in modules if str(m.get("type", "")).rsplit(".", 1)[-1] == "Pooling"]
    mean = bool(pooling) and _read_json(folder / pooling[0]["path"] / "config.json").get("pooling_mode") == "mean"
    if kinds != ["Transformer", "Pooling", "Normalize"] or not mean:
        raise ModelUnavailable(
            f"SEARCH_BACKEND=onnx supports sentence-transformers folders made of Transformer, mean Pooling and "
            f"Normalize; {folder} has {kinds}: use SEARCH_BACKEND=torch for this model"
        )


def _atomic_target(target: Path) -> Path:
    """A temporary file beside `target`, so a crash never leaves a half-written model under the final name."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    return Path(tmp)


def export_fp32(folder: Path, target: Path) -> None:
    """Trace the transformer plus mean pooling into `target` (dynamic batch and sequence axes)."""
    import torch
    from sentence_transformers import SentenceTransformer

    class MeanPooled(torch.nn.Module):
        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            # The same masked mean as sentence-transformers' Pooling(mean).
            return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)

    log.info("exporting %s to ONNX in %s (once)", folder, target)
    with no_progress_bars():
        model: Any = SentenceTransformer(str(folder), device="cpu")
    wrapper = MeanPooled(model[0].auto_model).eval()
    # Two rows of different lengths, so the traced graph sees padding; the axes stay dynamic.
    ids = torch.tensor([[0, 100, 200, 300, 2], [0, 100, 200, 2, 1]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    tmp = _atomic_target(target)
    try:
        # The tracer warns about Python conditions on shapes (sdpa's mask padding) that hold for every input the
        # embedder gives (mask as long as the ids), and torch notes that this exporter is the legacy one; the
        # exported vectors are checked against torch's by tests/test_onnx.py.
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (ids, mask),
                str(tmp),
                input_names=["input_ids", "attention_mask"],
                output_names=["pooled"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "sequence"},
                    "attention_mask": {0: "batch", 1: "sequence"},
                    "pooled": {0: "batch"},
                },
                opset_version=OPSET,
                # The TorchScript exporter: the dynamo one needs onnxscript, and this graph has no control flow.
                dynamo=False,
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def quantize_int8(source: Path, target: Path, *, keep: Sequence[str] = ()) -> None:
    """Dynamic quantization: int8 weights per output channel, activations quantized at run time.

    Per channel because per tensor loses more (on XQuAD paragraphs cosine to fp32 ~0.983-0.990 per tensor,
    ~0.995-0.997 per channel) for the same size and speed. Activations get one scale per tensor at run time,
    padding included, so an int8 vector depends slightly on the texts batched with it (cosine > 0.99 to itself
    encoded alone); fp32 vectors do not. Only products with a weight are quantized (ONNX Runtime's dynamic default,
    MatMulConstBOnly), not attention's. `keep` names weight products left in fp32: the shipped onnx-int8 backend
    keeps none; benchmarks.precision_runtimes measures keeping search/model/precision.py's INT8_KEEP.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    log.info("quantizing %s to int8 in %s (once)", source, target)
    tmp = _atomic_target(target)
    try:
        quantize_dynamic(
            str(source),
            str(tmp),
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=list(keep),
        )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_onnx_model(folder: Path, fingerprint: str, cache_dir: Path, quantized: bool) -> Path:
    """The ONNX file for `folder`, exported (and quantized) on first use; later calls only find it."""
    where = onnx_dir(folder, fingerprint, cache_dir)
    where.mkdir(parents=True, exist_ok=True)
    fp32 = where / f"model-fp32-v{EXPORT_VERSION}.onnx"
    if not fp32.is_file():
        export_fp32(folder, fp32)
    if not quantized:
        return fp32
    int8 = where / f"model-int8-v{EXPORT_VERSION}.onnx"
    if not int8.is_file():
        quantize_int8(fp32, int8)
    return int8


def _max_tokens(folder: Path, tokenizer: Any) -> int:
    """What sentence-transformers takes as max_seq_length: its own setting, else the tokenizer's, within the model's."""
    st = _read_json(folder / "sentence_bert_config.json") if (folder / "sentence_bert_config.json").is_file() else {}
    positions = int(_read_json(folder / "config.json").get("max_position_embeddings", 512))
    limit = st.get("max_seq_length") or getattr(tokenizer, "model_max_length", positions) or positions
    return int(min(int(limit), positions))


def cpu_session(ort: Any, path: Path, threads: int) -> Any:
    """An ONNX Runtime session on the CPU for `path` (`ort` is the onnxruntime module, imported by the caller)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # No busy-waiting between runs: on a shared machine a spinning pool takes the cores from everything else
    # (torch, faiss, other processes) for nothing.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxEmbedder:
    """A local sentence-transformers folder run by ONNX Runtime on the CPU, fp32 or with int8 weights."""

    def __init__(
        self,
        folder: Path,
        fingerprint: str,
        cache_dir: Path,
        *,
        quantized: bool,
        name: str,
        threads: int = 2,
        batch_size: int = 32,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelUnavailable(
                "SEARCH_BACKEND=onnx and onnx-int8 need ONNX Runtime: pip install -e '.[onnx]' (or `make install`)"
                ", or set SEARCH_BACKEND=torch"
            ) from exc
        from transformers import AutoTokenizer

        check_supported(folder)
        path = ensure_onnx_model(folder, fingerprint, cache_dir, quantized)
        self._session: Any = cpu_session(ort, path, threads)
        self._tokenizer: Any = AutoTokenizer.from_pretrained(str(folder))
        prompts = _read_json(folder / "config_sentence_transformers.json").get("prompts") or {}
        self.query_prompt = str(prompts.get("query") or "")
        self.passage_prompt = str(prompts.get("passage") or prompts.get("document") or "")
        self.name = name
        self.backend = "onnx-int8" if quantized else "onnx"
        self.fingerprint = onnx_fingerprint(fingerprint, quantized)
        self.dimension = int(self._session.get_outputs()[0].shape[-1])
        self.max_tokens = _max_tokens(folder, self._tokenizer)
        self.batch_size = batch_size
        self.model_path = path

    def _prompt(self, query: bool) -> str:
        return self.query_prompt if query else self.passage_prompt

    def count_tokens(self, text: str, *, query: bool = False) -> int:
        return len(self._tokenizer(self._prompt(query) + text, add_special_tokens=True)["input_ids"])

    def _pooled(self, rows: Sequence[Sequence[int]]) -> np.ndarray:
        """Mean-pooled (unnormalized) vectors of token rows that already hold their special tokens."""
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self._tokenizer.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        out = self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return np.asarray(out, dtype=np.float32)

    def _wrap(self, content: Sequence[int]) -> list[int]:
        return [self._tokenizer.cls_token_id, *content, self._tokenizer.sep_token_id]

    def encode(self, texts: Sequence[str], *, query: bool, progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        prompt = self._prompt(query)
        ids = self._tokenizer([prompt + t for t in texts], add_special_tokens=False)["input_ids"]
        # Shortest first, so each batch pads to little more than its own texts (what sentence-transformers does).
        fits = sorted((i for i, toks in enumerate(ids) if len(toks) + 2 <= self.max_tokens), key=lambda i: len(ids[i]))
        for start in range(0, len(fits), self.batch_size):
            batch = fits[start : start + self.batch_size]
            vectors = self._pooled([self._wrap(ids[i]) for i in batch])
            out[batch] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
            if progress:
                log.info("encoded %d/%d texts", start + len(batch), len(fits))
        for i, toks in enumerate(ids):
            if len(toks) + 2 > self.max_tokens:
                out[i] = windowed_mean(toks, self.max_tokens - 2, lambda ws: self._pooled([self._wrap(w) for w in ws]))
        return out
