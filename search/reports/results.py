"""What a report computed (`ReportData`, in selection order) and what it found (`ReportSummary`, summary.json)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from search.records import Passage
from search.reports import compute as rp


@dataclass
class ReportData:
    """Everything a report computed, in selection order (rows index `passages`)."""

    passages: Sequence[Passage]
    article_names: list[str]
    lang: np.ndarray
    lang_names: list[str]
    neighbours: rp.Neighbours
    pairs: rp.Pairs
    groups: list[np.ndarray]
    matrix: rp.ArticleMatrix
    alignment: list[tuple[list[int], list[int], float | None, str]] | None


@dataclass
class ReportSummary:
    """What a report found and how long each stage took; `summary.json` holds it."""

    out_dir: str
    passages: int
    articles: int
    languages: dict[str, int]
    within_article: bool
    k: int
    search: str
    recall: float | None
    pairs: dict[str, int]
    pairs_by_languages: dict[str, dict[str, int]]
    groups: int
    article_pairs: int
    aligned: int | None
    calibration: list[dict[str, Any]]
    stages: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["stages"] = {k: round(v, 3) for k, v in self.stages.items()}
        out["seconds"] = round(self.seconds, 3)
        return out
