"""Language identification of passages and queries (lingua), with confidences for uncertain queries."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from search.errors import BadInput

log = logging.getLogger(__name__)

UNDETERMINED = "und"


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

    def detect_many(self, texts: Sequence[str]) -> list[str]:
        found = self._detector.detect_languages_in_parallel_of(list(texts))
        return [UNDETERMINED if f is None else f.iso_code_639_1.name.lower() for f in found]
