"""`python -m benchmarks.eval_translation_floor`: would a model-specific cosine floor keep false translation groups out?

The cosine of true translation pairs (paragraph i in two XQuAD languages) on held-out paragraphs 120-239, raw and
centered (each language's mean of those paragraphs taken out, as a mean bank would), against the best mutual
matches of unrelated pools (paragraph ranges that share no paragraph, in every language pair). A floor separates them
when the true pairs' 0.5% quantile stands above every unrelated mutual best match; docs/quality.md has the answer
(it does not). `--cache` keeps the 2,880 paragraph vectors (about 8 minutes on 2 cores) for a rerun.
"""

from __future__ import annotations

import argparse
from itertools import combinations
from pathlib import Path

import numpy as np

from benchmarks.xquad import ALL_LANGS, load
from search.config import Settings
from search.index.build import embed_with_cache
from search.index.embedcache import EmbeddingCache
from search.model.embedders import SentenceTransformerEmbedder

HELD_OUT = slice(120, 240)
# en 0-39 + zh 40-79, en 0-119 + zh 120-239, en 0-79 + ru 160-239, zh 80-159 + ru 160-239 (docs/quality.md's pools)
UNRELATED = [(slice(0, 40), slice(40, 80)), (slice(0, 120), slice(120, 240)), (slice(0, 80), slice(160, 240))]
UNRELATED += [(slice(80, 160), slice(160, 240)), (slice(120, 240), slice(0, 120))]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def mutual_best(xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """The cosines of the mutual best matches between two sets of vectors."""
    s = xa @ xb.T
    best_a, best_b = s.argmax(axis=1), s.argmax(axis=0)
    mutual = np.flatnonzero(best_b[best_a] == np.arange(len(xa)))
    return s[mutual, best_a[mutual]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/search-floor/embeddings.sqlite"))
    args = parser.parse_args()
    settings = Settings()
    embedder = SentenceTransformerEmbedder(settings.model, settings.cache_dir, settings.threads, settings.batch_size)
    cache = EmbeddingCache(args.cache, embedder.fingerprint, embedder.dimension)
    xq = load(ALL_LANGS)
    x = {
        lang: unit(embed_with_cache([p.text for p in xq.paragraphs[lang]], embedder, cache, False)[0])
        for lang in ALL_LANGS
    }
    for how in ("raw", "centered"):

        def prep(v: np.ndarray) -> np.ndarray:
            return unit(v - v.mean(axis=0)) if how == "centered" else v  # noqa: B023

        print(f"\n{how} cosine: language pair, true pairs' 0.5% quantile (held-out), unrelated mutual best max")
        worst = []
        for a, b in combinations(ALL_LANGS, 2):
            true = np.einsum("ij,ij->i", prep(x[a][HELD_OUT]), prep(x[b][HELD_OUT]))
            false = max(float(mutual_best(prep(x[a][ra]), prep(x[b][rb])).max()) for ra, rb in UNRELATED)
            worst.append((false - float(np.quantile(true, 0.005)), a, b, float(np.quantile(true, 0.005)), false))
        for gap, a, b, floor, false in sorted(worst)[-5:] + [w for w in worst if {w[1], w[2]} <= {"en", "zh", "ru"}]:
            print(f"  {a}-{b}: floor {floor:.4f}, unrelated {false:.4f} ({'overlap' if gap >= 0 else 'separated'})")
        print(f"  language pairs where the floor separates: {sum(w[0] < 0 for w in worst)} of {len(worst)}")


if __name__ == "__main__":
    main()
