"""Language identification of passages and queries (lingua), with confidences for uncertain queries."""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from search.errors import BadInput

log = logging.getLogger(__name__)

UNDETERMINED = "und"
# Languages by the script they are written in; a query is only ever detected as a language of its script.
SCRIPTS = {
    "Latin": "en de es fr it pt tr vi ro pl nl sv id".split(),
    "Cyrillic": ["ru", "uk"],
    "CJK": ["zh", "ja"],
    "Hangul": ["ko"],
    "Arabic": ["ar", "fa"],
    "Hebrew": ["he"],
    "Greek": ["el"],
    "Devanagari": ["hi"],
    "Thai": ["th"],
}
_SCRIPT_OF_LANG = {lang: script for script, langs in SCRIPTS.items() for lang in langs}
# Short queries (names, acronyms, one or two words): lingua's confidences spread over look-alike languages
# ("Putin" Romanian, "Koltunov" Turkish). The index's own languages are this many times likelier a priori than
# languages only the mean bank knows, and below this posterior the query's language is unknown. Both measured on
# the 68 short en/zh/ru queries of tests/test_query_language.py: no wrong guess, 12 unknown (all Latin script).
_INDEX_PRIOR = 4.0
_KNOWN = 0.7


@dataclass(frozen=True)
class LanguageGuess:
    """The most likely language (ISO 639-1) and the detector's confidence for each candidate."""

    lang: str
    confidences: dict[str, float]


class LanguageDetector:
    """Detects the language of a text among a configured set of languages."""

    def __init__(self, languages: Sequence[str], preload: bool = True) -> None:
        from lingua import IsoCode639_1, LanguageDetectorBuilder

        codes = []
        for code in languages:
            iso = getattr(IsoCode639_1, code.upper(), None)
            if iso is None:
                raise BadInput(f"SEARCH_LANGUAGES: unknown language code {code!r}; use ISO 639-1 codes like en, zh")
            codes.append(iso)
        if len(codes) < 2:
            raise BadInput("SEARCH_LANGUAGES: name at least two languages")
        builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
        if preload:
            builder = builder.with_preloaded_language_models()
        self._detector: Any = builder.build()
        self.languages = [c.lower() for c in languages]

    def detect(self, text: str) -> LanguageGuess:
        values = self._detector.compute_language_confidence_values(text)
        confidences = {v.language.iso_code_639_1.name.lower(): float(v.value) for v in values if v.value > 0}
        if not confidences:
            return LanguageGuess(UNDETERMINED, {})
        return LanguageGuess(max(confidences, key=lambda k: confidences[k]), confidences)

    def detect_query(self, text: str, indexed: Collection[str], others: Collection[str] = ()) -> LanguageGuess:
        """The language of a query among the languages that matter: those of the index (`indexed`) and those
        centering has a mean for (`others`, the mean bank's), written in the query's script.

        The index's languages are a priori likelier; when no language is likely enough, the guess is
        UNDETERMINED with no confidences, which centers the query by the index's own language mix.
        """
        scripts = scripts_in(text)
        if not scripts:
            return LanguageGuess(UNDETERMINED, {})
        candidates = {
            lang
            for lang in {*indexed, *others}
            if lang in self.languages and _SCRIPT_OF_LANG.get(lang, next(iter(scripts))) in scripts
        }
        if len(candidates) == 1:
            return LanguageGuess(next(iter(candidates)), dict.fromkeys(candidates, 1.0))
        confidences = self.detect(text).confidences if candidates else {}
        weighted = {
            lang: confidences.get(lang, 0.0) * (_INDEX_PRIOR if lang in indexed else 1.0) for lang in candidates
        }
        total = sum(weighted.values())
        posterior = {lang: w / total for lang, w in weighted.items() if w > 0} if total > 0 else {}
        best = max(posterior, key=lambda k: posterior[k], default=None)
        if best is None or posterior[best] < _KNOWN:
            return LanguageGuess(UNDETERMINED, {})
        return LanguageGuess(best, posterior)

    def detect_many(self, texts: Sequence[str]) -> list[str]:
        found = self._detector.detect_languages_in_parallel_of(list(texts))
        return [UNDETERMINED if f is None else f.iso_code_639_1.name.lower() for f in found]


def script_of(text: str) -> str | None:
    """The script of the first letter of `text`, by its Unicode name ("LATIN SMALL LETTER A" -> "Latin")."""
    for ch in text:
        if ch.isalpha():
            return _script_of_letter(ch)
    return None


def scripts_in(text: str) -> set[str]:
    """Every known script of the letters of `text` ("Putin 普京" -> {"Latin", "CJK"})."""
    return {script for ch in set(text) if ch.isalpha() and (script := _script_of_letter(ch))}


def _script_of_letter(ch: str) -> str | None:
    name = unicodedata.name(ch, "")
    for script in SCRIPTS:
        if name.upper().startswith(script.upper()):
            return script
    return "CJK" if "CJK" in name or "HIRAGANA" in name or "KATAKANA" in name else None
