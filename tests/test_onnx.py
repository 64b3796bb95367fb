"""The ONNX backends against the torch model: same tokens, same vectors up to rounding (fp32) or quantization (int8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

# No skip when onnxruntime is missing: `make install` installs the [onnx] extra, so a missing package is a broken
# environment, and these tests fail (ModelUnavailable naming the extra) instead of passing silently.
pytestmark = pytest.mark.model

SEED = (Path(__file__).parents[1] / "seeds" / "000_9f71073b3b5a7269.txt").read_text(encoding="utf-8")

TEXTS = [
    "how much protein should a female eat",
    "In 1990, the unification of Germany changed Europe.",
    "普京如何看待俄美关系?",
    "科尔图诺夫对《中国新闻周刊》表示，美俄对“特普会”的期待依然很高。",
    "Что Путин думает об отношениях России и США?",
    "НАТО называли «мёртвым мозгом» до эскалации конфликта в 2022 году.",
    "a",
    SEED[:3000],  # over 512 tokens: the window path
]

# Cosine to torch, per backend: fp32 differs only by float rounding; int8 weights cost a little more.
FLOOR = {"onnx": 0.9999, "onnx-int8": 0.99}


@pytest.fixture(scope="module")
def torch_embedder(settings):  # type: ignore[no-untyped-def]
    from search.model.embedders import make_embedder

    return make_embedder(settings.model, settings.cache_dir, "torch", threads=2)


@pytest.fixture(scope="module", params=["onnx", "onnx-int8"])
def onnx_embedder(request, settings):  # type: ignore[no-untyped-def]
    from search.model.embedders import make_embedder

    return make_embedder(settings.model, settings.cache_dir, request.param, threads=2, batch_size=4)


def test_same_tokens_and_shape(torch_embedder, onnx_embedder) -> None:  # type: ignore[no-untyped-def]
    assert onnx_embedder.dimension == torch_embedder.dimension == 384
    assert onnx_embedder.max_tokens == torch_embedder.max_tokens == 512
    for text in TEXTS:
        for query in (False, True):
            assert onnx_embedder.count_tokens(text, query=query) == torch_embedder.count_tokens(text, query=query)
    assert onnx_embedder.count_tokens(TEXTS[-1]) > onnx_embedder.max_tokens


@pytest.mark.parametrize("query", [False, True])
def test_vectors_match_torch(torch_embedder, onnx_embedder, query: bool) -> None:  # type: ignore[no-untyped-def]
    ours = onnx_embedder.encode(TEXTS, query=query)
    theirs = torch_embedder.encode(TEXTS, query=query)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosines = (ours * theirs).sum(axis=1)
    assert cosines.min() >= FLOOR[onnx_embedder.backend], dict(zip([t[:30] for t in TEXTS], cosines, strict=True))


def test_batching_barely_changes_vectors(onnx_embedder) -> None:  # type: ignore[no-untyped-def]
    # batch_size=4 pads the short texts together; one at a time there is no padding at all. In fp32 the mask makes
    # that exact; int8 quantizes activations with one scale per batch tensor (padding included), so a text's vector
    # depends a little on its batch companions.
    together = onnx_embedder.encode(TEXTS, query=False)
    alone = np.stack([onnx_embedder.encode([t], query=False)[0] for t in TEXTS])
    if onnx_embedder.backend == "onnx":
        np.testing.assert_allclose(together, alone, atol=1e-4)
    cosines = (together * alone).sum(axis=1)
    assert cosines.min() >= FLOOR[onnx_embedder.backend], cosines


def test_fingerprints_differ_by_backend(torch_embedder, onnx_embedder, settings) -> None:  # type: ignore[no-untyped-def]
    from search.model.embedders import make_embedder

    other = "onnx" if onnx_embedder.backend == "onnx-int8" else "onnx-int8"
    fingerprints = {
        torch_embedder.fingerprint,
        onnx_embedder.fingerprint,
        make_embedder(settings.model, settings.cache_dir, other).fingerprint,  # type: ignore[arg-type]
    }
    assert len(fingerprints) == 3
    # Still tied to the weights: the torch fingerprint is part of each ONNX one.
    assert onnx_embedder.fingerprint.startswith(torch_embedder.fingerprint)
    assert onnx_embedder.model_path.is_file()
    assert onnx_embedder.model_path.parent.parent == settings.cache_dir / "models"


def test_an_index_built_with_one_backend_is_refused_by_another(  # type: ignore[no-untyped-def]
    tmp_path, torch_embedder, onnx_embedder, settings
) -> None:
    from search.config import Settings
    from search.errors import IndexMismatch
    from search.service import SearchService

    articles = tmp_path / "a.jsonl"
    articles.write_text('{"id": "a1", "text": "Moscow is the capital of Russia."}\n', encoding="utf-8")
    index_settings = Settings(index_dir=tmp_path / "index", cache_dir=settings.cache_dir)
    SearchService(index_settings, embedder=onnx_embedder).build([articles])
    torch_svc = SearchService(index_settings, embedder=torch_embedder)
    with pytest.raises(IndexMismatch, match="rebuild it"):
        torch_svc.load()


def test_int8_keep_leaves_the_sensitive_layers_fp32(tmp_path, settings) -> None:  # type: ignore[no-untyped-def]
    # benchmarks.precision_runtimes' onnx-int8-keep row: INT8_KEEP's layers, named as the exported graph names them,
    # stay fp32 MatMul nodes while every other dense product becomes an int8 MatMulInteger.
    import onnx

    from benchmarks.precision_runtimes import keep_nodes
    from search.model.embedders import make_embedder
    from search.model.onnx import quantize_int8
    from search.model.precision import INT8_KEEP

    fp32 = make_embedder(settings.model, settings.cache_dir, "onnx").model_path  # type: ignore[attr-defined]
    keep = keep_nodes(INT8_KEEP)
    assert len(keep) == len(INT8_KEEP)
    quantize_int8(fp32, tmp_path / "keep.onnx", keep=keep)
    nodes = onnx.load(str(tmp_path / "keep.onnx"), load_external_data=False).graph.node
    kinds = {n.name: n.op_type for n in nodes}
    assert all(kinds.get(name) == "MatMul" for name in keep), {name: kinds.get(name) for name in keep}
    # 12 layers of 6 dense products (query, key, value, attention output, up, down), less the kept ones.
    assert sum(n.op_type == "MatMulInteger" for n in nodes) == 12 * 6 - len(keep)
