"""`python -m benchmarks.eval_translation_null`: false translation pairs where a corpus holds none, and true pairs kept.

The build's detector (`search.index.translations.translation_groups`) and the reports' rule (`label_pairs` with
its default options) on XQuAD paragraph pools, each language centered with its own mean in the pool as a build
centers it: pools of translations (paragraph i in en, zh and ru) and pools without any (each language a different
range of paragraphs; neighbouring ranges share a Wikipedia article, so some cross-language paragraphs are on one
topic), and random 384-d vectors in two or three "languages". A pair is true when both passages are versions of one
paragraph. docs/quality.md has the figures. `--cache` keeps the 720 paragraph vectors for a rerun.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.xquad import load
from search.config import Settings
from search.index.build import embed_with_cache
from search.index.embedcache import EmbeddingCache
from search.index.translations import TRANSLATION, LabelOptions, knn_by_lang, label_pairs, translation_groups
from search.model.embedders import SentenceTransformerEmbedder

LANGS = ("en", "zh", "ru")
Pool = list[tuple[str, int, int]]  # (language, first paragraph, past the last)
POOLS: dict[str, Pool] = {
    "en+zh+ru 0-119, translations": [("en", 0, 120), ("zh", 0, 120), ("ru", 0, 120)],
    "en+zh+ru 0-239, translations": [("en", 0, 240), ("zh", 0, 240), ("ru", 0, 240)],
    "en 0-39 + zh 40-79, none": [("en", 0, 40), ("zh", 40, 80)],
    "en 0-119 + zh 120-239, none": [("en", 0, 120), ("zh", 120, 240)],
    "ru 0-119 + en 120-239, none": [("ru", 0, 120), ("en", 120, 240)],
    "en 0-79 + zh 80-159 + ru 160-239, none": [("en", 0, 80), ("zh", 80, 160), ("ru", 160, 240)],
    "zh 0-79 + ru 80-159 + en 160-239, none": [("zh", 0, 80), ("ru", 80, 160), ("en", 160, 240)],
}
RANDOM = [(200, 2), (150, 3), (1000, 2)]  # (vectors a language, languages)
SEEDS = 5
SMALL = [(10, 2), (20, 2), (50, 2), (30, 3), (100, 2)]  # small random corpora, SMALL_SEEDS of each
SMALL_SEEDS = 40


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def centered(x: np.ndarray, langs: np.ndarray) -> np.ndarray:
    out = x.copy()
    for lang in np.unique(langs):
        out[langs == lang] -= x[langs == lang].mean(axis=0)
    return unit(out)


def reports_pairs(x: np.ndarray, langs: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    names, lang = np.unique(langs, return_inverse=True)
    own = np.arange(len(x))
    nb = knn_by_lang(x, lang, len(names), own, 10, exclude_group=False)
    pairs = label_pairs(x, nb, lang, [str(s) for s in names], own, lengths, LabelOptions(exclude_group=False))
    t = pairs.label == TRANSLATION
    return pairs.a[t], pairs.b[t]


def build_pairs(x: np.ndarray, langs: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs within the build's groups (a group of three versions holds three pairs)."""
    group = translation_groups(x, list(langs), list(lengths)).group
    a, b = np.triu_indices(len(x), 1)
    same = (group[a] >= 0) & (group[a] == group[b])
    return a[same], b[same]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/search-null/embeddings.sqlite"))
    args = parser.parse_args()
    settings = Settings()
    embedder = SentenceTransformerEmbedder(settings.model, settings.cache_dir, settings.threads, settings.batch_size)
    cache = EmbeddingCache(args.cache, embedder.fingerprint, embedder.dimension)
    xq = load(LANGS)
    vectors, lengths = {}, {}
    for lang in LANGS:
        texts = [p.text for p in xq.paragraphs[lang]]
        vectors[lang] = unit(embed_with_cache(texts, embedder, cache, False)[0])
        lengths[lang] = np.array([len(t) for t in texts])
    print("pool (XQuAD paragraphs): true / false pairs, reports' rule | build's groups")
    for name, pool in POOLS.items():
        langs = np.array([lang for lang, first, stop in pool for _ in range(first, stop)])
        paragraph = np.concatenate([np.arange(first, stop) for _, first, stop in pool])
        x = centered(np.vstack([vectors[lang][first:stop] for lang, first, stop in pool]), langs)
        length = np.concatenate([lengths[lang][first:stop] for lang, first, stop in pool])
        cells = []
        for how in (reports_pairs, build_pairs):
            a, b = how(x, langs, length)
            true = int((paragraph[a] == paragraph[b]).sum())
            cells.append(f"{true} / {len(a) - true}")
        print(f"  {name}: {' | '.join(cells)}")
    print(f"random 384-d vectors: false pairs in the build's groups, seeds 0-{SEEDS - 1}")
    for n, n_langs in RANDOM:
        found = []
        for seed in range(SEEDS):
            x = unit(np.random.default_rng(seed).normal(size=(n * n_langs, 384)))
            langs = np.repeat(np.array(LANGS[:n_langs]), n)
            found.append(len(build_pairs(x, langs, np.full(len(x), 100))[0]))
        print(f"  {n_langs} x {n}: {found}")
    # Knockoff+ bounds the rate of false pairs among those found; where every pair is false, that is how often a
    # corpus gets one at all.
    print(f"small random corpora: how many of {SMALL_SEEDS} get any pair (seeds 1000-{999 + SMALL_SEEDS})")
    for n, n_langs in SMALL:
        hit = 0
        for seed in range(1000, 1000 + SMALL_SEEDS):
            x = unit(np.random.default_rng(seed).normal(size=(n * n_langs, 384)))
            langs = np.repeat(np.array(LANGS[:n_langs]), n)
            hit += len(build_pairs(x, langs, np.full(len(x), 100))[0]) > 0
        print(f"  {n_langs} x {n}: {hit}")


if __name__ == "__main__":
    main()
