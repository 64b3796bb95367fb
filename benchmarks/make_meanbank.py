"""`python -m benchmarks.make_meanbank`: the default model's mean bank from the XQuAD paragraphs (all 12 languages).

It writes `search/index/data/meanbanks/<fingerprint>.npz`, which ships in the package. `--paragraphs 120:240` takes a
slice of the paragraphs only, for a held-out check: a bank from paragraphs 120-239 evaluated on paragraphs 0-119
(`SEARCH_MEAN_BANK=that.npz python -m benchmarks.eval --limit 120`) shows what the bank gives on unseen text.

The bank's query means come from the XQuAD questions about the paragraphs of `--questions` (default 120:240, every
one of a question's paragraphs in the slice). XQuAD's questions are the eval's queries, so the default keeps the
first 120 paragraphs' questions out of the bank: `python -m benchmarks.eval --limit 120` (`make eval-quick`)
measures query-side centering on questions whose language means never saw them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchmarks.xquad import ALL_LANGS, load
from search.config import Settings
from search.index.meanbank import MeanBank, compute_bank, read_texts, shipped_path
from search.model.embedders import SentenceTransformerEmbedder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paragraphs", default=":", help="a slice of paragraph indexes, e.g. 120:240 [default: all]")
    parser.add_argument(
        "--questions", default="120:240", help="query means from the questions about these paragraphs [%(default)s]"
    )
    parser.add_argument("--langs", default=",".join(ALL_LANGS), help="XQuAD languages [default: all 12]")
    parser.add_argument("--out", type=Path, default=None, help="[default: the shipped bank of the default model]")
    parser.add_argument(
        "--queries-only",
        action="store_true",
        help="keep the passage means of the bank at --out (or the shipped one) and (re)compute its query means only",
    )
    args = parser.parse_args()
    chosen = _slice(args.paragraphs)
    asked = set(range(240)[_slice(args.questions)])
    settings = Settings()
    embedder = SentenceTransformerEmbedder(settings.model, settings.cache_dir, settings.threads, settings.batch_size)
    target = args.out or shipped_path(embedder.fingerprint)
    langs = [lang.strip() for lang in args.langs.split(",") if lang.strip()]
    xq = load(langs)
    with tempfile.TemporaryDirectory() as tmp:
        # Through the same JSONL reader that `search bank` uses.
        jsonl = Path(tmp) / "xquad.jsonl"
        with jsonl.open("w", encoding="utf-8") as f:
            for lang in langs:
                rows = (
                    [] if args.queries_only else [{"lang": lang, "text": p.text} for p in xq.paragraphs[lang][chosen]]
                )
                rows += [
                    {"lang": lang, "text": q.text, "kind": "query"} for q in xq.questions[lang] if q.paragraphs <= asked
                ]
                f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        source = f"XQuAD paragraphs [{args.paragraphs}] (CC BY-SA 4.0), data/xquad/"
        query_source = f"XQuAD questions about paragraphs [{args.questions}] (CC BY-SA 4.0), data/xquad/"
        bank = compute_bank(embedder, read_texts(jsonl), source, read_texts(jsonl, kind="query"), query_source)
    if args.queries_only:
        old = MeanBank.load(target)
        bank = MeanBank(old.means, old.counts, old.source, bank.query_means, bank.query_counts, query_source)
    bank.save(target)
    print(
        f"{target}: {len(bank.means)} languages, {sum(bank.counts.values())} paragraphs, "
        f"{sum(bank.query_counts.values())} questions"
    )


def _slice(text: str) -> slice:
    start, _, stop = text.partition(":")
    return slice(int(start) if start else None, int(stop) if stop else None)


if __name__ == "__main__":
    main()
