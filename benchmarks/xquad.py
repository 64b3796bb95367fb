"""XQuAD as retrieval data: paragraphs as articles (JSONL for `search index`), questions and their relevant paragraphs.

Paragraph i is the same paragraph in every language file and a question id is the same in every language, so a
question in language Q is answered by paragraph i in any language P. An article is one paragraph, with id
`{lang}/{i:03d}`, the paragraph text only (the XQuAD article title is kept as the article title, which is never
embedded). As in MTEB `XQuADRetrieval`, questions are stripped and a question text asked twice in one language is
one query whose relevant paragraphs are all those it was asked about.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "xquad"
ALL_LANGS = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
EVAL_LANGS = ("en", "zh", "ru", "de", "es", "ar")


@dataclass(frozen=True)
class Paragraph:
    lang: str
    index: int
    title: str
    text: str

    @property
    def article_id(self) -> str:
        return article_id(self.lang, self.index)


@dataclass(frozen=True)
class Question:
    qid: str
    lang: str
    text: str
    paragraphs: frozenset[int]

    def relevant(self, langs: Iterable[str]) -> set[str]:
        """The article ids that answer this question in a pool of `langs`: every translation of its paragraphs."""
        return {article_id(lang, i) for lang in langs for i in self.paragraphs}


@dataclass
class XQuAD:
    paragraphs: dict[str, list[Paragraph]]
    questions: dict[str, list[Question]]


def article_id(lang: str, index: int) -> str:
    return f"{lang}/{index:03d}"


def lang_of(article: str) -> str:
    return article.split("/", 1)[0]


def _read(lang: str, data_dir: Path) -> tuple[list[Paragraph], list[Question]]:
    path = data_dir / f"xquad.{lang}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; the XQuAD files belong in {DATA_DIR} (see its README.md)")
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    paragraphs: list[Paragraph] = []
    by_text: dict[str, tuple[str, set[int]]] = {}
    for article in data:
        for p in article["paragraphs"]:
            i = len(paragraphs)
            paragraphs.append(Paragraph(lang, i, article["title"], p["context"].strip()))
            for qa in p["qas"]:
                text = qa["question"].strip()
                if text:
                    by_text.setdefault(text, (qa["id"], set()))[1].add(i)
    questions = [Question(qid, lang, text, frozenset(ps)) for text, (qid, ps) in by_text.items()]
    return paragraphs, questions


def _limit(
    paragraphs: list[Paragraph], questions: list[Question], n: int, every_question: bool = False
) -> tuple[list[Paragraph], list[Question]]:
    """The first `n` paragraphs and at most `n` questions about them, spread over those paragraphs (or every
    question about them)."""
    kept = paragraphs[:n]
    ids = {p.index for p in kept}
    about = [Question(q.qid, q.lang, q.text, frozenset(q.paragraphs & ids)) for q in questions if q.paragraphs & ids]
    if every_question:
        return kept, about
    step = max(1, len(about) // n)
    return kept, about[::step][:n]


def load(
    langs: Sequence[str], limit: int | None = None, data_dir: Path = DATA_DIR, every_question: bool = False
) -> XQuAD:
    """Paragraphs and deduplicated questions per language; `limit` keeps the first paragraphs and a few questions
    (or, `every_question`, all the questions about them)."""
    unknown = sorted(set(langs) - set(ALL_LANGS))
    if unknown:
        raise ValueError(f"unknown XQuAD language(s) {unknown}; choose from {', '.join(ALL_LANGS)}")
    paragraphs: dict[str, list[Paragraph]] = {}
    questions: dict[str, list[Question]] = {}
    for lang in langs:
        ps, qs = _read(lang, data_dir)
        if limit is not None:
            ps, qs = _limit(ps, qs, limit, every_question)
        paragraphs[lang], questions[lang] = ps, qs
    return XQuAD(paragraphs, questions)


def write_jsonl(paragraphs: Sequence[Paragraph], path: Path) -> Path:
    """One article per paragraph, in the JSONL shape `search index` reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for p in paragraphs:
            row = {"id": p.article_id, "title": p.title, "text": p.text, "lang": p.lang, "paragraph": p.index}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def write_corpus(xq: XQuAD, folder: Path) -> dict[str, Path]:
    """One JSONL file per language under `folder`."""
    return {lang: write_jsonl(ps, folder / f"{lang}.jsonl") for lang, ps in xq.paragraphs.items()}
