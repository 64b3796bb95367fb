"""`MicroBatcher`: texts from concurrent callers encoded together, in one model call on one worker thread.

A model call on the CPU costs nearly as much for one short query as for a dozen (the fixed cost is the forward
pass itself, and two cores cannot run two of them faster than one after another), so concurrent searches that each
encode alone queue behind each other and oversubscribe the cores. Here every caller hands its texts to one worker
and waits for its own rows back:

- "batch while busy" (the default): a caller arriving when the worker is idle starts a model call at once, alone;
  callers arriving while a call runs queue up and go together in the next one. A lone query pays ~no latency.
- `wait_idle=True`: the first text of a batch also waits up to `window` seconds for company, even when idle.

Either way no text waits longer than `window` for others to join once the worker is free, and a batch holds at
most `max_batch` texts (a caller's texts are never split). A failed model call fails exactly the callers in that
batch; `close()` fails whoever is still waiting, so nobody hangs.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from search.errors import ModelUnavailable

log = logging.getLogger(__name__)

Encode = Callable[[Sequence[str]], np.ndarray]
# How often a waiting caller checks that the worker is still alive (it always is, short of an interpreter bug).
_LIVENESS_SECONDS = 1.0


@dataclass
class _Request:
    texts: Sequence[str]
    arrived: float
    future: Future[np.ndarray] = field(default_factory=Future)


class MicroBatcher:
    """Encodes callers' texts through `encode` (texts -> one row each), batching callers that arrive together."""

    def __init__(
        self,
        encode: Encode,
        window: float,
        max_batch: int = 32,
        wait_idle: bool = False,
        name: str = "search-batcher",
    ) -> None:
        if window <= 0:
            raise ValueError("window must be positive; without a window, call the encoder directly")
        self._encode = encode
        self.window = window
        self.max_batch = max(1, max_batch)
        self.wait_idle = wait_idle
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        # Model calls made and texts encoded: what the tests (and curious operators) can read.
        self.calls = 0
        self.texts = 0
        self._last_end = 0.0  # when the last model call ended: a text that arrived before it waited for a busy model
        # A daemon, so that a process whose main thread ends without close() still exits; close() stops it cleanly.
        self._worker = threading.Thread(target=self._run, name=name, daemon=True)
        self._worker.start()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Rows for `texts`, in order; raises what the model call raised, or ModelUnavailable after close()."""
        if not texts:
            raise ValueError("nothing to encode")
        request = _Request(list(texts), time.monotonic())
        with self._close_lock:
            if self._closed:
                raise ModelUnavailable("the service is shutting down; retry against a running server")
            self._queue.put(request)
        while True:
            try:
                return request.future.result(timeout=_LIVENESS_SECONDS)
            except TimeoutError:
                if not self._worker.is_alive() and not request.future.done():
                    raise ModelUnavailable("the encoding worker has stopped; restart the server") from None

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking texts, let the running model call finish, fail whatever is still queued (at once)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._worker.join(timeout)

    def _run(self) -> None:
        pending: _Request | None = None
        while True:
            first = pending or self._queue.get()
            pending = None
            if first is None:
                break
            batch, size = [first], len(first.texts)
            arrived_idle = first.arrived >= self._last_end
            # Collect company until `window` after the first text arrived; a text that found the model idle starts
            # at once unless wait_idle (one that arrived during the last call has usually waited long enough).
            deadline = first.arrived + self.window if self.wait_idle or not arrived_idle else 0.0
            stop = False
            while size < self.max_batch:
                try:
                    wait = deadline - time.monotonic()
                    nxt = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if size + len(nxt.texts) > self.max_batch:
                    pending = nxt  # the next batch starts with it
                    break
                batch.append(nxt)
                size += len(nxt.texts)
            if self._closed:  # taken after close(): fail now rather than hold shutdown for a model call
                self._fail(batch)
            else:
                self._call(batch)
            if stop:
                break
        self._fail([pending] if pending is not None else [])
        self._fail_queued()

    def _call(self, batch: list[_Request]) -> None:
        texts = [t for r in batch for t in r.texts]
        unique = list(dict.fromkeys(texts))  # the same query from several callers is encoded once
        try:
            encoded = self._encode(unique)
            if len(encoded) != len(unique):
                raise RuntimeError(f"the encoder returned {len(encoded)} rows for {len(unique)} texts")
            at = {t: i for i, t in enumerate(unique)}
            vectors = encoded if len(unique) == len(texts) else encoded[[at[t] for t in texts]]
        except BaseException as exc:  # noqa: BLE001 - every caller must hear of it, whatever it is
            for r in batch:
                r.future.set_exception(exc)
        else:
            start = 0
            for r in batch:
                r.future.set_result(vectors[start : start + len(r.texts)])
                start += len(r.texts)
        finally:
            self.calls += 1
            self.texts += len(unique)
            self._last_end = time.monotonic()

    def _fail(self, batch: list[_Request]) -> None:
        for r in batch:
            r.future.set_exception(ModelUnavailable("the service is shutting down; retry against a running server"))

    def _fail_queued(self) -> None:
        while True:
            try:
                r = self._queue.get_nowait()
            except queue.Empty:
                return
            if r is not None:
                self._fail([r])
