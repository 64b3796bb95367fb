"""Issue 17's candidates outside torch, as extra rows of `bench_precision --runtimes`: ONNX Runtime and OpenVINO.

Each is an OnnxEmbedder (the same tokens, prompts, windows and length-sorted padded batches as SEARCH_BACKEND=onnx)
whose session runs another graph or another runtime. Graphs made here go into the benchmark's output folder, never
into the model cache. OpenVINO is not a dependency of the project: `pip install openvino` to run its rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from search.config import Settings
from search.model.embedders import embedder_for
from search.model.onnx import OnnxEmbedder, cpu_session, quantize_int8
from search.model.precision import INT8_KEEP

# onnx-int8: the shipped backend (every dense layer int8, per channel). onnx-int8-keep: the same with INT8_KEEP's
# layers left fp32, as the torch int8 profile keeps them. openvino-*: the exported fp32 graph (or the -keep int8
# graph) compiled by OpenVINO at an inference precision.
RUNTIMES = ("onnx-int8", "onnx-int8-keep", "openvino-fp32", "openvino-bf16", "openvino-int8-keep")

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
    if name.startswith("openvino"):
        precision = "bf16" if name == "openvino-bf16" else "f32"
        e._session = OpenVinoSession(graph, settings.threads, precision)
    else:
        import onnxruntime as ort

        e._session = cpu_session(ort, graph, settings.threads)
    e.backend = name
    # Not the fp32 graph's fingerprint: these vectors differ from it, and must never share its cache entries.
    e.fingerprint = f"{e.fingerprint}+bench-{name}"
    return e
