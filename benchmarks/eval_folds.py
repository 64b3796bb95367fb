"""Query-side means measured without leakage: a k-fold cross-fit of the mean bank's query means over XQuAD.

XQuAD's questions are both the eval's queries and the data the shipped bank's query means come from, so on the full
set a query-means figure would partly measure questions centered with a mean they helped to make. With
`--query-means-folds K` the paragraphs are split into K contiguous folds (2 on the full set: 0-119 and 120-239); a
question belongs to the fold of its first paragraph, and is asked of an index built with a bank whose query means
come only from questions that touch none of that fold's paragraphs (in every language of the bank: XQuAD questions
are translations of each other). The passage means are the configured bank's, as shipped. Every fold's index is a
normal build through `SearchService.build` with `mean_bank` pointing at its bank, so queries take the product's
path; the folds' rankings are scored together, as one task.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.xquad import Question
from search.index.meanbank import MeanBank, compute_bank
from search.model.embedders import Embedder
from search.records import SearchResult
from search.service import SearchService


@dataclass(frozen=True)
class Folds:
    """`k` contiguous folds of paragraphs 0..`paragraphs`-1."""

    k: int
    paragraphs: int

    def __post_init__(self) -> None:
        if not 2 <= self.k <= self.paragraphs:
            raise ValueError(f"query-means folds: {self.k} folds of {self.paragraphs} paragraphs; give 2 or more")

    def of_paragraph(self, index: int) -> int:
        return index * self.k // self.paragraphs

    def of_question(self, question: Question) -> int:
        """The fold a question is asked in: its first paragraph's."""
        return self.of_paragraph(min(question.paragraphs))

    def trains(self, question: Question, fold: int) -> bool:
        """Whether `question` may go into the query means of `fold`'s bank: it touches none of its paragraphs."""
        return all(self.of_paragraph(i) != fold for i in question.paragraphs)

    def spans(self, fold: int) -> str:
        start = next(i for i in range(self.paragraphs) if self.of_paragraph(i) == fold)
        stop = max(i for i in range(self.paragraphs) if self.of_paragraph(i) == fold)
        return f"{start}-{stop}"


def fold_banks(
    bank: MeanBank, folds: Folds, questions: Mapping[str, Sequence[Question]], embedder: Embedder, folder: Path
) -> list[Path]:
    """One bank file per fold: `bank`'s passage means, with query means from the questions (per language) that
    the fold's own questions are held out from."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for fold in range(folds.k):
        texts = {
            lang: [q.text for q in qs if folds.trains(q, fold)] for lang, qs in questions.items() if lang in bank.means
        }
        others = ", ".join(folds.spans(f) for f in range(folds.k) if f != fold)
        source = f"XQuAD questions about none of paragraphs {folds.spans(fold)} (so about {others})"
        queries = compute_bank(embedder, {}, "", texts, source)
        path = folder / f"fold{fold}.npz"
        MeanBank(bank.means, bank.counts, bank.source, queries.query_means, queries.query_counts, source).save(path)
        paths.append(path)
    return paths


def ask_folds(
    services: Sequence[SearchService],
    folds: Folds,
    questions: Sequence[Question],
    ask: Callable[[SearchService, Sequence[Question]], list[SearchResult]],
) -> list[SearchResult]:
    """Each question asked of its fold's service (through `ask`); the results in the questions' order."""
    found: dict[int, SearchResult] = {}
    for fold, svc in enumerate(services):
        chosen = [i for i, q in enumerate(questions) if folds.of_question(q) == fold]
        found.update(zip(chosen, ask(svc, [questions[i] for i in chosen]), strict=True))
    return [found[i] for i in range(len(questions))]
