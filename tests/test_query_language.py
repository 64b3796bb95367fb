"""Short queries (names, acronyms, one or two words) get the right language or "unknown", never a look-alike one."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.config import Settings
from search.index.meanbank import MeanBank
from search.ingest.language import UNDETERMINED, LanguageDetector

# The seed index's languages, and the shipped mean bank's (those centering has a mean for besides the index's own).
INDEXED = ["en", "zh"]
BANK = Path(__file__).parents[1] / "search" / "index" / "data" / "meanbanks"

QUERIES = {
    "en": ["NATO", "Putin", "Zoellick", "Koltunov", "Ushakov", "Trump", "Medvedev", "Gorbachev", "Zelensky",
           "ceasefire", "sanctions", "defense spending", "Cold War", "peace talks", "summit", "Helsinki",
           "brain dead", "arms control", "nuclear weapons", "foreign policy", "the war", "Ukraine", "Europe",
           "GDP", "US-Soviet talks", "military aid", "Patriot missiles", "Beijing forum", "who is Koltunov",
           "Russia", "strategic stability", "East Germany"],
    "zh": ["北约", "普京", "特朗普", "科尔图诺夫", "乌克兰", "停火", "制裁", "国防开支", "冷战", "峰会", "赫尔辛基",
           "泽连斯基", "二轨接触", "俄美关系", "爱国者导弹", "欧洲", "戈尔巴乔夫", "中国新闻周刊", "和平", "军援"],
    "ru": ["НАТО", "Путин", "Трамп", "Украина", "санкции", "перемирие", "Зеленский", "Горбачёв", "холодная война",
           "саммит", "оборонные расходы", "Кольтунов", "Ушаков", "Европа", "мирные переговоры", "МИД России"],
}  # fmt: skip


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector(Settings(model="fake-model").languages, preload=False)


@pytest.fixture(scope="module")
def bank_languages() -> list[str]:
    banks = sorted(BANK.glob("*.npz"))
    assert banks, "the shipped mean bank is missing"
    return sorted(MeanBank.load(banks[0]).means)


def test_short_queries_are_right_or_unknown(detector: LanguageDetector, bank_languages: list[str]) -> None:
    outcomes = {"right": 0, "unknown": 0, "wrong": 0}
    wrong = []
    for lang, queries in QUERIES.items():
        for q in queries:
            guess = detector.detect_query(q, INDEXED, bank_languages).lang
            kind = "right" if guess == lang else "unknown" if guess == UNDETERMINED else "wrong"
            outcomes[kind] += 1
            if kind == "wrong":
                wrong.append((q, guess))
    total = sum(outcomes.values())
    assert total >= 60
    assert outcomes["wrong"] <= 0.05 * total, wrong
    # "unknown" is a fallback, not the answer to everything: most short queries still get their language.
    assert outcomes["right"] >= 0.75 * total, outcomes


def test_script_decides_when_one_language_of_it_matters(detector: LanguageDetector) -> None:
    """A Han query on an index of English and Chinese is Chinese, however short; a Cyrillic one Russian."""
    assert detector.detect_query("北", ["en", "zh"]).lang == "zh"
    assert detector.detect_query("Ушаков", ["en", "zh"], ["ru"]).confidences == {"ru": 1.0}


def test_weak_evidence_is_unknown_with_no_confidences(detector: LanguageDetector) -> None:
    """Unknown queries are centered by the index's own language mix (the global mean: no confidences)."""
    for text in ("12345", "！？。", "Koltunov"):
        guess = detector.detect_query(text, ["en", "zh"], ["de", "es", "ro", "tr", "vi"])
        assert guess == guess.__class__(UNDETERMINED, {}), text


def test_a_clear_language_outside_the_index_is_still_found(detector: LanguageDetector) -> None:
    """The index prior weighs, it does not override: a plain German sentence on an English index is German."""
    text = "Die Verteidigungsausgaben der europäischen Länder steigen weiter."
    assert detector.detect_query(text, ["en"], ["de", "es"]).lang == "de"


def test_languages_outside_the_configured_set_are_never_guessed(detector: LanguageDetector) -> None:
    guess = detector.detect_query("sanctions", ["en", "xx"])
    assert set(guess.confidences) <= {"en"}
