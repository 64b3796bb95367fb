"""`QueryEncoder`: query-side model calls for a serving process, through an LRU of vectors and micro-batching."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from search.model.batching import MicroBatcher
from search.model.embedders import Embedder

# Cache keys of passage-side texts (highlight sentences) carry this marker; plain keys are queries. No text
# typed by a user starts with a NUL.
_PASSAGE = "\x00passage\x00"

# Called after each model call with (kind, texts, seconds): "query" or "passage".
EncodeHook = Callable[[str, int, float], None]


class QueryEncoder:
    """Vectors of queries (and of highlight sentences) for concurrent searches.

    Agents and UIs repeat queries, so vectors are kept in an LRU keyed by the exact text. Model calls are
    micro-batched on one worker (`batch_ms` > 0) or made one at a time under a lock: either way two calls never
    share the cores, which torch already uses in full for one call.
    """

    def __init__(
        self,
        embedder: Callable[[], Embedder],
        cache_size: int = 4096,
        batch_ms: float = 5.0,
        batch_max: int = 32,
        batch_wait_idle: bool = False,
    ) -> None:
        self._embedder = embedder
        self._cache_size = cache_size
        self._window = batch_ms / 1000
        self._batch_max = batch_max
        self._wait_idle = batch_wait_idle
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._batcher: MicroBatcher | None = None
        self.hook: EncodeHook | None = None

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._vectors(texts)

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._vectors([_PASSAGE + t for t in texts])

    def close(self) -> None:
        """Stop the micro-batching worker (queued encodes fail with ModelUnavailable); a later call starts anew."""
        with self._lock:
            batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.close()

    def _vectors(self, keys: Sequence[str]) -> np.ndarray:
        cache = self._cache
        with self._lock:
            missing = list(dict.fromkeys(t for t in keys if t not in cache))
        if missing:
            fresh = self._encode(missing)
            with self._lock:
                for t, v in zip(missing, fresh, strict=True):
                    cache[t] = v
                while len(cache) > self._cache_size:
                    cache.popitem(last=False)
        with self._lock:
            found = [cache.get(t) for t in keys]
            for t, vec in zip(keys, found, strict=True):
                if vec is not None:
                    cache.move_to_end(t)
        # Evicted by concurrent callers between the two steps: encoded again, outside the lock, so that other
        # searches' cache hits never wait for a model call.
        evicted = list(dict.fromkeys(t for t, vec in zip(keys, found, strict=True) if vec is None))
        again = dict(zip(evicted, self._encode(evicted), strict=True)) if evicted else {}
        return np.stack([vec if vec is not None else again[t] for t, vec in zip(keys, found, strict=True)])

    def _encode(self, keys: Sequence[str]) -> np.ndarray:
        """Encode cache keys, together with concurrent searches' keys when micro-batching is on."""
        batcher = self._batcher_or_none()
        if batcher is not None:
            return batcher.encode(keys)
        with self._model_lock:
            return self._encode_keys(keys)

    def _batcher_or_none(self) -> MicroBatcher | None:
        if self._window <= 0:
            return None
        with self._lock:
            if self._batcher is None:
                self._batcher = MicroBatcher(self._encode_keys, self._window, self._batch_max, self._wait_idle)
            return self._batcher

    def _encode_keys(self, keys: Sequence[str]) -> np.ndarray:
        embedder = self._embedder()
        out = np.zeros((len(keys), embedder.dimension), dtype=np.float32)
        for is_passage in (False, True):
            idx = [i for i, key in enumerate(keys) if key.startswith(_PASSAGE) == is_passage]
            if idx:
                texts = [keys[i][len(_PASSAGE) :] if is_passage else keys[i] for i in idx]
                start = time.perf_counter()
                out[idx] = embedder.encode(texts, query=not is_passage)
                if self.hook is not None:
                    self.hook("passage" if is_passage else "query", len(texts), time.perf_counter() - start)
        return out
