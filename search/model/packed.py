"""`PackedBert`: a BERT encoder's forward pass over packed token sequences, for mean-pooled sentence vectors.

sentence-transformers pads every batch to its longest text and runs the Hugging Face module tree, whose Python
overhead (mask building, module calls, output objects) is a third of the time of a short query on two cores. Here
the texts of a call are concatenated into one row of tokens: the dense layers (nearly all the arithmetic) run once
over the real tokens only, attention runs per text, and no padding token is ever computed. The weights are the
model's own tensors, not copies, and the result equals sentence-transformers' to float rounding (cosine >= 0.9999
is checked on probe texts when the embedder loads; any other architecture, or a mismatch, keeps the
sentence-transformers path).

Supported: `BertModel` with absolute position embeddings, GELU, post-layer-norm; mean pooling over every token
(prompt and special tokens included, as sentence-transformers does with `include_prompt=True`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import torch


# Attention over several texts runs either once with a block-diagonal mask (work grows with tokens^2, most of it
# wasted outside the blocks) or once per text (a fixed cost per call). The mask wins while tokens^2 stays under this
# many times the number of texts: fitted on this machine's 2 cores with the fused 4-D kernel, where it picked the
# faster way in each of seven shapes tried (4-16 texts of 12-30 tokens): 16 x 12 tokens masked, 8 x 20 per text.
BLOCK_MASK_WORK = 2800


def uses_block_mask(lengths: Sequence[int]) -> bool:
    """Whether texts of these token lengths are attended in one masked call rather than one call each."""
    total = sum(lengths)
    return len(lengths) > 1 and total * total <= BLOCK_MASK_WORK * len(lengths)


# How the dense layers compute: fp32 (the model's own tensors), bf16 (weights cast to bfloat16, activations cast
# around each product; layer norms, attention and pooling stay fp32), int8 (dynamic quantization: int8 weights per
# output channel, activations quantized per call), or int8-bf16 (int8 where int8 is safe, bf16 on the kept layers).
LinearPrecision = Literal["fp32", "bf16", "int8", "int8-bf16"]
# The dense layers of encoder layer i, as `keep` names them: f"{i}.{name}".
LINEAR_NAMES = ("qkv", "out", "up", "down")

Linear = Callable[["torch.Tensor"], "torch.Tensor"]


@dataclass(frozen=True)
class _Layer:
    qkv: Linear  # query, key and value stacked: one matrix product instead of three
    out: Linear
    norm1_weight: torch.Tensor
    norm1_bias: torch.Tensor
    up: Linear
    down: Linear
    norm2_weight: torch.Tensor
    norm2_bias: torch.Tensor


def _linear(weight: torch.Tensor, bias: torch.Tensor, precision: str) -> Linear:
    """`x -> x @ weight.T + bias` in `precision` ("fp32", "bf16" or "int8"), fp32 in and out."""
    import torch
    import torch.nn.functional as F

    if precision == "fp32":
        return lambda x: F.linear(x, weight, bias)
    if precision == "bf16":
        w16, b16 = weight.to(torch.bfloat16), bias.to(torch.bfloat16)
        return lambda x: F.linear(x.to(torch.bfloat16), w16, b16).float()
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import per_channel_dynamic_qconfig

    dense = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        dense.weight.copy_(weight)
        dense.bias.copy_(bias)
    dense.qconfig = per_channel_dynamic_qconfig  # type: ignore[assignment]
    # torch 2.13 marks its quantized tensor types deprecated (in favour of the torchao package) but they work and
    # are what its fbgemm/onednn int8 kernels take; tests/test_precision.py checks the vectors they give.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.quantize_per_tensor, torch.quantize_per_channel", UserWarning)
        quantized: Linear = DynamicLinear.from_float(dense)
    return quantized


class PackedBert:
    """Mean-pooled last hidden states of a `BertModel`, computed over packed token sequences."""

    def __init__(self, bert: Any, precision: LinearPrecision = "fp32", keep: Collection[str] = ()) -> None:
        """`precision` for the dense layers, except those named in `keep` ("3.down": layer 3's output dense),
        which stay fp32 (or become bf16 under "int8-bf16")."""
        import torch

        cfg = bert.config
        self.heads = int(cfg.num_attention_heads)
        self.hidden = int(cfg.hidden_size)
        self.eps = float(cfg.layer_norm_eps)
        self.max_positions = int(cfg.max_position_embeddings)
        emb = bert.embeddings
        self._word = emb.word_embeddings.weight
        self._position = emb.position_embeddings.weight
        self._token_type = emb.token_type_embeddings.weight[0]  # single-segment input: type 0 everywhere
        self._norm = (emb.LayerNorm.weight, emb.LayerNorm.bias)
        self.precision = precision
        base = "int8" if precision.startswith("int8") else precision
        kept = "bf16" if precision == "int8-bf16" else "fp32"

        def dense(i: int, name: str, weight: torch.Tensor, bias: torch.Tensor) -> Linear:
            return _linear(weight, bias, kept if f"{i}.{name}" in keep else base)

        self._layers = []
        with torch.no_grad():
            for i, layer in enumerate(bert.encoder.layer):
                att = layer.attention
                qkv_weight = torch.cat([att.self.query.weight, att.self.key.weight, att.self.value.weight])
                qkv_bias = torch.cat([att.self.query.bias, att.self.key.bias, att.self.value.bias])
                self._layers.append(
                    _Layer(
                        dense(i, "qkv", qkv_weight.contiguous(), qkv_bias.contiguous()),
                        dense(i, "out", att.output.dense.weight, att.output.dense.bias),
                        att.output.LayerNorm.weight,
                        att.output.LayerNorm.bias,
                        dense(i, "up", layer.intermediate.dense.weight, layer.intermediate.dense.bias),
                        dense(i, "down", layer.output.dense.weight, layer.output.dense.bias),
                        layer.output.LayerNorm.weight,
                        layer.output.LayerNorm.bias,
                    )
                )

    @staticmethod
    def supports(st_model: Any) -> bool:
        """Whether a SentenceTransformer is a plain BERT with mean pooling, the one shape this class computes."""
        modules = list(st_model)
        if len(modules) < 2 or len(modules) > 3:
            return False
        transformer, pooling = modules[0], modules[1]
        bert = getattr(transformer, "auto_model", None)
        cfg = getattr(bert, "config", None)
        if cfg is None or type(bert).__name__ != "BertModel":
            return False
        if getattr(cfg, "position_embedding_type", "absolute") not in (None, "absolute"):
            return False
        if getattr(cfg, "hidden_act", None) != "gelu" or getattr(cfg, "is_decoder", False):
            return False
        pooling_cfg = pooling.get_config_dict() if hasattr(pooling, "get_config_dict") else {}
        mode = pooling_cfg.get("pooling_mode") or ("mean" if pooling_cfg.get("pooling_mode_mean_tokens") else None)
        if mode != "mean" or pooling_cfg.get("include_prompt", True) is not True:
            return False
        return len(modules) == 2 or type(modules[2]).__name__ == "Normalize"

    def mean_pooled(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """One unnormalized mean of the last hidden states per token sequence (special tokens included)."""
        import torch
        import torch.nn.functional as F

        lengths = [len(s) for s in sequences]
        if not lengths:
            return np.zeros((0, self.hidden), dtype=np.float32)
        if min(lengths) < 1 or max(lengths) > self.max_positions:
            raise ValueError(
                f"token sequences must hold 1..{self.max_positions} tokens, got {min(lengths)}..{max(lengths)}"
            )
        total, width = sum(lengths), self.hidden // self.heads
        ids = torch.tensor([t for s in sequences for t in s], dtype=torch.long)
        positions = torch.cat([torch.arange(n) for n in lengths]) if len(lengths) > 1 else torch.arange(total)
        block = None
        if uses_block_mask(lengths):
            # Short texts (a micro-batch of queries): one attention call over all tokens, each text seeing only
            # its own (a block-diagonal mask), costs less than a call per text and layer.
            text = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
            block = text[:, None] == text[None, :]
        with torch.inference_mode():
            h = F.layer_norm(
                self._word[ids] + self._position[positions] + self._token_type, (self.hidden,), *self._norm, self.eps
            )
            for layer in self._layers:
                # (tokens, 3 * hidden) -> (3, 1, heads, tokens, width). The batch axis of 1 matters: torch runs
                # its fused (flash) CPU kernel only on 4-D inputs; 3-D ones take the unfused path, 2-5x slower.
                qkv = layer.qkv(h).view(total, 3, self.heads, width).permute(1, 2, 0, 3).unsqueeze(1)
                if block is not None or len(lengths) == 1:
                    ctx = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=block)
                    ctx = ctx[0].transpose(0, 1).reshape(total, -1)
                else:
                    parts = zip(*(t.split(lengths, dim=2) for t in qkv), strict=True)
                    ctx = torch.cat(
                        [
                            F.scaled_dot_product_attention(q, k, v)[0].transpose(0, 1).reshape(-1, self.hidden)
                            for q, k, v in parts
                        ]
                    )
                h = F.layer_norm(
                    layer.out(ctx) + h,
                    (self.hidden,), layer.norm1_weight, layer.norm1_bias, self.eps,
                )  # fmt: skip
                up = F.gelu(layer.up(h))
                h = F.layer_norm(
                    layer.down(up) + h,
                    (self.hidden,), layer.norm2_weight, layer.norm2_bias, self.eps,
                )  # fmt: skip
            pooled = torch.stack([part.mean(dim=0) for part in h.split(lengths)])
        return np.asarray(pooled.numpy(), dtype=np.float32)
