"""The eval's cross-fit of query means: folds of paragraphs, banks that never saw a fold's questions, answers in
order."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from benchmarks.eval_folds import Folds, ask_folds, fold_banks
from benchmarks.xquad import Question
from search.index.meanbank import MeanBank
from tests.fakes import FakeEmbedder


def question(n: int, *paragraphs: int, lang: str = "en") -> Question:
    return Question(f"q{n}", lang, f"question {n} about {paragraphs} in {lang}", frozenset(paragraphs))


def test_two_folds_of_240_paragraphs_are_the_halves() -> None:
    folds = Folds(2, 240)
    assert [folds.of_paragraph(i) for i in (0, 119, 120, 239)] == [0, 0, 1, 1]
    assert (folds.spans(0), folds.spans(1)) == ("0-119", "120-239")


def test_a_question_is_asked_in_its_first_paragraphs_fold_and_trains_neither_fold_it_touches() -> None:
    folds = Folds(2, 240)
    across = question(1, 5, 200)
    assert folds.of_question(across) == 0
    assert not folds.trains(across, 0) and not folds.trains(across, 1)
    inside = question(2, 130)
    assert folds.of_question(inside) == 1
    assert folds.trains(inside, 0) and not folds.trains(inside, 1)


def test_one_fold_is_no_cross_fit() -> None:
    with pytest.raises(ValueError, match="2 or more"):
        Folds(1, 240)


def test_each_fold_bank_keeps_the_passage_means_and_takes_query_means_from_the_other_folds(tmp_path: Path) -> None:
    embedder = FakeEmbedder()
    # 60 questions per language on each half: enough for a mean (MIN_TEXTS), and a language the bank lacks.
    questions = {lang: [question(n, n % 240, lang=lang) for n in range(0, 240, 2)] for lang in ("en", "zh", "xx")}
    rng = np.random.default_rng(0)
    bank = MeanBank(
        {lang: rng.normal(size=embedder.dimension).astype(np.float32) for lang in ("en", "zh")},
        {"en": 240, "zh": 240},
        "shipped",
    )
    folds = Folds(2, 240)

    paths = fold_banks(bank, folds, questions, embedder, tmp_path)

    for fold, path in enumerate(paths):
        got = MeanBank.load(path)
        assert got.source == "shipped" and set(got.means) == {"en", "zh"}
        np.testing.assert_array_equal(got.means["en"], bank.means["en"])
        assert set(got.query_means) == {"en", "zh"}
        trained = [q.text for q in questions["zh"] if folds.trains(q, fold)]
        assert len(trained) == got.query_counts["zh"] == 60
        assert all(folds.of_question(q) != fold for q in questions["zh"] if q.text in trained)
        np.testing.assert_allclose(
            got.query_means["zh"], embedder.encode(trained, query=True).mean(axis=0), rtol=1e-5, atol=1e-6
        )
    assert not np.allclose(MeanBank.load(paths[0]).query_means["en"], MeanBank.load(paths[1]).query_means["en"])


def test_every_question_is_answered_by_its_folds_service_in_the_questions_order() -> None:
    folds = Folds(2, 10)
    questions = [question(n, p) for n, p in enumerate((7, 1, 9, 0, 5, 4))]
    asked: dict[str, list[str]] = {}

    def ask(svc: str, qs: Sequence[Question]) -> list[str]:
        asked[svc] = [q.text for q in qs]
        return [f"{svc}:{q.qid}" for q in qs]

    got = ask_folds(["first", "second"], folds, questions, ask)  # type: ignore[arg-type]

    assert got == ["second:q0", "first:q1", "second:q2", "first:q3", "second:q4", "first:q5"]
    assert len(asked["first"]) == len(asked["second"]) == 3
