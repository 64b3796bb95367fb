"""A build's work on Ray: passages embedded by a pool of model actors (Ray Data), and the adds of a large ivf_pq_sq8
index run in shards on workers and merged.

Only what the embedding cache lacks is sent; reading, chunking, language ID, centering, the rest of the vector index,
SQLite and the atomic publish stay on the driver, unchanged. Ray Data restarts an actor that dies and retries its
batches on it (the actor pool's defaults: max_restarts and max_task_retries -1), so a lost worker costs time, not the
build; a failure past that is a ClusterUnavailable raised before anything is written, so the previous build keeps
serving.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import faiss
import numpy as np
from pydantic import SecretStr

from search.config import Settings
from search.errors import ClusterUnavailable
from search.index.cluster import connect
from search.index.vectors import Adder, merge_ivf_shards
from search.model.embedders import Embedder, embedder_for

log = logging.getLogger(__name__)

# How an actor makes its embedder from the driver's settings and a device; a test passes one that kills its own
# process once, to check the retry.
EmbedderFactory = Callable[[Settings, str], Embedder]
# Rows per Ray Data block handed out to the actors: a few batches, so the pool stays busy and a lost block is small.
_BLOCK_BATCHES = 4


class PassageEmbedder:
    """A Ray Data actor: loads the model once, then turns batches of {"row", "text"} into {"row", "vector"}."""

    def __init__(self, settings: Settings, device: str, factory: EmbedderFactory, node_cache: bool) -> None:
        if node_cache:  # the node's own SEARCH_CACHE_DIR or default: a home folder differs between machines
            settings = settings.model_copy(update={"cache_dir": Settings().cache_dir})
        self.embedder = factory(settings, device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.embedder.encode([str(t) for t in batch["text"]], query=False)
        return {"row": batch["row"], "vector": np.asarray(vectors, dtype=np.float32)}


def worker_settings(settings: Settings) -> Settings:
    """The settings an actor builds its embedder from: the driver's model, backend and precision, with the actor's
    threads, and no secrets."""
    secrets = {"api_keys": SecretStr(""), "api_key_file": None}
    return settings.model_copy(update={"threads": settings.ray_threads, **secrets})


def _default_factory(settings: Settings, device: str) -> Embedder:
    return embedder_for(settings, device)


def embed_on_ray(
    texts: Sequence[str],
    settings: Settings,
    dimension: int,
    *,
    progress: bool = False,
    factory: EmbedderFactory = _default_factory,
) -> np.ndarray:
    """Passage vectors of `texts`, in their order, computed by `settings.ray_concurrency` actors on the cluster at
    `settings.ray_address`."""
    out = np.zeros((len(texts), dimension), dtype=np.float32)
    if not texts:
        return out
    assert settings.ray_address is not None
    ray = connect(settings.ray_address)
    import pyarrow as pa

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress
    # At least _BLOCK_BATCHES batches per actor, so a small build still reaches every actor: Ray Data gives an actor
    # whole blocks, and fills a batch from several blocks before it calls the actor.
    per_actor = math.ceil(len(texts) / (settings.ray_concurrency * _BLOCK_BATCHES))
    batch = max(1, min(settings.ray_batch_size, per_actor))
    block = max(batch, min(batch * _BLOCK_BATCHES, per_actor))
    tables = [
        pa.table({"row": np.arange(s, min(s + block, len(texts)), dtype=np.int64), "text": list(texts[s : s + block])})
        for s in range(0, len(texts), block)
    ]
    device = "cuda" if settings.ray_num_gpus > 0 else "cpu"
    ds = ray.data.from_arrow(tables).map_batches(
        PassageEmbedder,
        fn_constructor_args=(worker_settings(settings), device, factory, "cache_dir" not in settings.model_fields_set),
        batch_size=batch,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=settings.ray_concurrency),
        num_cpus=settings.ray_threads,
        num_gpus=settings.ray_num_gpus or None,
    )
    seen = np.zeros(len(texts), dtype=bool)
    try:
        # Blocks come back in whatever order the actors finish; each carries its rows, which put it in place.
        for part in ds.iter_batches(batch_size=None, batch_format="numpy"):
            out[part["row"]] = part["vector"]
            seen[part["row"]] = True
    except ray.exceptions.RayError as exc:
        raise ClusterUnavailable(
            f"embedding on Ray failed: {str(exc).strip().splitlines()[0]}; nothing was published (see the Ray "
            "logs, or build without --ray)"
        ) from None
    if not seen.all():
        raise ClusterUnavailable(f"Ray returned {int(seen.sum())} of {len(texts)} vectors; nothing was published")
    return out


def _add_shard(template: bytes, xb: np.ndarray, ids: np.ndarray) -> bytes:
    """On a worker: the trained, empty index with this shard's vectors added, serialized."""
    index = faiss.deserialize_index(np.frombuffer(template, dtype=np.uint8))
    index.add_with_ids(np.ascontiguousarray(xb, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64))
    return bytes(faiss.serialize_index(index))


def parallel_adder(address: str, shards: int) -> Adder:
    """An `Adder` that splits the rows into `shards` contiguous parts, adds each on a Ray worker (one CPU each) and
    merges them in order, so the index equals one filled in a single process."""

    def add(index: faiss.Index, xb: np.ndarray, ids: np.ndarray, rows: np.ndarray) -> faiss.Index:
        ray = connect(address)
        template = ray.put(bytes(faiss.serialize_index(index)))
        remote = ray.remote(num_cpus=1, max_retries=3)(_add_shard)
        parts = [p for p in np.array_split(rows, max(1, shards)) if len(p)]
        refs = [remote.remote(template, np.asarray(xb[p], dtype=np.float32), ids[p]) for p in parts]
        try:
            blobs = ray.get(refs)
        except ray.exceptions.RayError as exc:
            raise ClusterUnavailable(
                f"adding vectors on Ray failed: {str(exc).strip().splitlines()[0]}; nothing was published"
            ) from None
        log.info("added %d vectors in %d shards on Ray", len(rows), len(parts))
        return merge_ivf_shards([faiss.deserialize_index(np.frombuffer(b, dtype=np.uint8)) for b in blobs])

    return add
