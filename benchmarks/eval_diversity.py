"""`python -m benchmarks.eval_diversity`: what `diversity` does to a top 10 in a pool of translations.

XQuAD's first N paragraphs in en, zh and ar indexed together (every paragraph three times, once per language),
asked the en and zh questions about them (dense ranking, k=10) at several diversities: how many distinct paragraphs
the top 10 holds, and how often the right paragraph (in any language) is among them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.xquad import load, write_corpus
from search.config import Settings
from search.records import SearchQuery
from search.service import SearchService

LANGS = ("en", "zh", "ar")
DIVERSITIES = (0.0, 0.3, 0.5, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=120, help="paragraphs (and questions) per language [%(default)s]")
    parser.add_argument("--out", type=Path, default=Path("eval-results/diversity"), help="[%(default)s]")
    args = parser.parse_args()
    xq = load(LANGS, args.limit)
    files = write_corpus(xq, args.out / "corpus")
    settings = Settings(index_dir=args.out / "index", embedding_cache=args.out / "embeddings.sqlite")
    svc = SearchService(settings)
    svc.build(list(files.values()))
    svc.load()
    print("| query lang | diversity | distinct paragraphs in the top 10 | right paragraph in the top 10 |")
    print("|---|---|---|---|")
    for lang in ("en", "zh"):
        questions = xq.questions[lang]
        for diversity in DIVERSITIES:
            distinct = found = 0
            for q in questions:
                hits = svc.search(SearchQuery(q.text, k=10, mode="dense", diversity=diversity)).hits
                paragraphs = {int(h.passage.article_id.split("/")[1]) for h in hits}
                distinct += len(paragraphs)
                found += bool(paragraphs & q.paragraphs)
            n = len(questions)
            print(f"| {lang} | {diversity} | {distinct / n:.2f} | {100 * found / n:.1f}% |")


if __name__ == "__main__":
    main()
