"""Query-like probes for tuning an approximate index: the opening sentence of sampled passages, encoded as queries.

Recall tuned on passages is not recall for users: a query carries the model's query prompt and is shorter than the
passage it looks for, so it sits elsewhere in the space: a 100k hnsw_sq8 tuned to 0.970 on held-out passages
found 0.881 of real XQuAD questions' exact top 10 (`python -m benchmarks.bench_scale --sizes 100000`). A passage's
opening sentence, encoded with the query prompt and centered as a query of the passage's language, is a
question-sized text near its answer that every corpus has, so a build tunes its index on those. They are the harder
test: tuned to 0.962 on probes, the same index found 0.983 for the real questions (ivf_pq_sq8: 0.962 and 0.985).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from search.index.centering import Centering
from search.index.vectors import TUNE_QUERIES, TuningQueries
from search.ingest.chunking import split_sentences
from search.model.embedders import Embedder
from search.records import Passage

# XQuAD questions are 60 characters long on average (en) and never over 250: an opening sentence is cut to about
# that, at a space where it can be, so a probe is question-sized.
MIN_CHARS = 20
MAX_CHARS = 200


def opening(text: str, min_chars: int = MIN_CHARS, max_chars: int = MAX_CHARS) -> str:
    """The passage's first sentence (with the next ones while it is shorter than `min_chars`), cut to
    `max_chars` at the last space before it where there is one."""
    spans = split_sentences(text)
    end = 0
    for _, stop in spans:
        end = stop
        if stop >= min_chars:
            break
    head = text[: end or len(text)].strip()
    if len(head) <= max_chars:
        return head
    cut = head.rfind(" ", 0, max_chars + 1)
    return head[: cut if cut > max_chars // 2 else max_chars].strip()


def query_probes(
    passages: Sequence[Passage], embedder: Embedder, centering: Centering, n: int = TUNE_QUERIES, seed: int = 0
) -> TuningQueries:
    """The openings of up to `n` seeded passages, encoded as queries and centered by their passage's language."""
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(passages), size=min(n, len(passages)), replace=False))
    texts = [opening(passages[i].text) for i in picked]
    langs = np.array([passages[i].lang for i in picked])
    xq = np.asarray(embedder.encode(texts, query=True), dtype=np.float32)
    for lang in set(langs.tolist()):
        rows = langs == lang
        xq[rows] = centering.query(xq[rows], {lang: 1.0})
    source = f"opening sentences of {len(picked)} sampled passages, encoded as queries and centered as queries"
    return TuningQueries(xq, source)
