"""Issue 17's candidates outside torch, as extra rows of `bench_precision --runtimes`: ONNX Runtime and OpenVINO.

Each is an OnnxEmbedder (the same tokens, prompts, windows and length-sorted padded batches as SEARCH_BACKEND=onnx)
whose session runs another graph or another runtime. Graphs made here go into the benchmark's output folder, never
into the model cache. OpenVINO and NNCF are not dependencies of the project: `pip install openvino nncf` to run
their rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.xquad import ALL_LANGS, EVAL_LANGS, load
from search.config import Settings
from search.model.embedders import embedder_for
from search.model.onnx import OnnxEmbedder, cpu_session, quantize_int8
from search.model.precision import INT8_KEEP

# onnx-int8: the shipped backend (every dense layer int8, per channel). onnx-int8-keep: the same with INT8_KEEP's
# layers left fp32, as the torch int8 profile keeps them. openvino-*: the exported fp32 graph (or the -keep int8
# graph) compiled by OpenVINO at an inference precision. openvino-nncf-*: OpenVINO's own int8, made by NNCF from
# the exported fp32 graph: -int8 static post-training quantization (int8 weights and activations, INT8_KEEP's
# layers left out of it), -int8-all the same with every layer quantized, -w8-bf16 int8 weights only (the
# products run in bf16).
RUNTIMES = (
    "onnx-int8",
    "onnx-int8-keep",
    "openvino-fp32",
    "openvino-bf16",
    "openvino-int8-keep",
    "openvino-nncf-int8",
    "openvino-nncf-int8-all",
    "openvino-nncf-w8-bf16",
)
# NNCF calibrates on XQuAD languages that no benchmark measures, so its activation ranges never saw a timed or
# evaluated text; paragraphs and questions of each, with their prompts.
CALIBRATION_LANGS = tuple(lang for lang in ALL_LANGS if lang not in EVAL_LANGS)
CALIBRATION_PER_LANG = 24

# The packed pass's names for a layer's dense products (search/model/packed.py LINEAR_NAMES), as the exported
# graph names their MatMul nodes under /bert/encoder/layer.<i>/.
ONNX_LINEAR: Mapping[str, tuple[str, ...]] = {
    "qkv": ("attention/self/query", "attention/self/key", "attention/self/value"),
    "out": ("attention/output/dense",),
    "up": ("intermediate/dense",),
    "down": ("output/dense",),
}


def keep_nodes(keep: Iterable[str]) -> list[str]:
    """The exported graph's MatMul nodes for packed-pass layer names such as "4.down"."""
    nodes = []
    for name in sorted(keep):
        layer, linear = name.split(".")
        nodes += [f"/bert/encoder/layer.{layer}/{part}/MatMul" for part in ONNX_LINEAR[linear]]
    return nodes


class OpenVinoSession:
    """OnnxEmbedder's one use of an ONNX Runtime session (`run`), answered by an OpenVINO compiled model."""

    def __init__(self, path: Path, threads: int, precision: str) -> None:
        import openvino as ov

        config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": precision}
        self._compiled: Any = ov.Core().compile_model(str(path), "CPU", config)

    def run(self, _outputs: Any, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(self._compiled(dict(feeds))[0])]


def calibration_feeds(e: OnnxEmbedder, per_lang: int = CALIBRATION_PER_LANG) -> list[dict[str, np.ndarray]]:
    """One unpadded row per text (the graph's two inputs): paragraphs and questions of CALIBRATION_LANGS."""
    xq = load(CALIBRATION_LANGS, per_lang)
    texts = [e.passage_prompt + p.text for ps in xq.paragraphs.values() for p in ps]
    texts += [e.query_prompt + q.text for qs in xq.questions.values() for q in qs]
    feeds = []
    for text in texts:
        ids = e._tokenizer(text, truncation=True, max_length=e.max_tokens)["input_ids"]
        feeds.append({"input_ids": np.array([ids], dtype=np.int64), "attention_mask": np.ones((1, len(ids)), np.int64)})
    return feeds


def nncf_model(name: str, source: Path, target: Path, feeds: list[dict[str, np.ndarray]]) -> None:
    """NNCF's int8 of the exported fp32 graph `source`, saved as OpenVINO IR `target` (.xml, beside it .bin)."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(source))
    if name == "openvino-nncf-w8-bf16":
        # Weights only, per output channel; no calibration: activations stay in floating point.
        model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_SYM)
    else:
        keep = keep_nodes(INT8_KEEP) if name == "openvino-nncf-int8" else []
        model = nncf.quantize(
            model,
            nncf.Dataset(feeds),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(feeds),
            ignored_scope=nncf.IgnoredScope(names=keep),
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(target))


def candidate(name: str, settings: Settings, out: Path) -> OnnxEmbedder:
    """The embedder of runtime row `name` (one of RUNTIMES); `out` holds the graphs it makes."""
    if name not in RUNTIMES:
        raise ValueError(f"unknown runtime {name!r}: choose from {', '.join(RUNTIMES)}")
    backend = "onnx-int8" if name == "onnx-int8" else "onnx"
    e = embedder_for(settings.model_copy(update={"backend": backend, "precision": "fp32"}))
    assert isinstance(e, OnnxEmbedder)
    if name == "onnx-int8":
        return e
    graph = e.model_path
    if name.endswith("-keep"):
        graph = out / "model-int8-keep.onnx"
        if not graph.is_file():
            out.mkdir(parents=True, exist_ok=True)
            quantize_int8(e.model_path, graph, keep=keep_nodes(INT8_KEEP))
    if name.startswith("openvino-nncf"):
        graph = out / f"{name}.xml"
        if not graph.is_file():
            nncf_model(name, e.model_path, graph, calibration_feeds(e))
    if name.startswith("openvino"):
        precision = "bf16" if name.endswith("bf16") else "f32"
        e._session = OpenVinoSession(graph, settings.threads, precision)
    else:
        import onnxruntime as ort

        e._session = cpu_session(ort, graph, settings.threads)
    e.backend = name
    # Not the fp32 graph's fingerprint: these vectors differ from it, and must never share its cache entries.
    e.fingerprint = f"{e.fingerprint}+bench-{name}"
    return e
