"""The shared vocabulary: articles as read, chunks as split, passages as indexed, hits as found."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple


@dataclass(frozen=True)
class Article:
    """One article as read from the corpus; `text` is the article text that offsets point into."""

    id: str
    title: str
    text: str
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    """A passage-sized piece of one article, before language ID and embedding.

    `text` is `article.text[start:end]` after whitespace normalisation (see `chunking.normalize_whitespace`).
    `section` is the heading line that precedes the paragraph, if any.
    """

    paragraph: int
    part: int
    start: int
    end: int
    text: str
    section: str | None = None


@dataclass(frozen=True)
class Passage:
    """An indexed passage: a chunk with its article, language and stable id."""

    passage_id: str
    article_id: str
    title: str
    paragraph: int
    part: int
    start: int
    end: int
    lang: str
    text: str
    section: str | None = None


class PassageKey(NamedTuple):
    """What ranking needs of a candidate passage without its text: its stable id (ties) and article (grouping)."""

    passage_id: str
    article_id: str


@dataclass(frozen=True)
class Highlight:
    """A sentence of a hit that answers the query best; offsets are into the passage text."""

    start: int
    end: int
    text: str
    score: float


@dataclass(frozen=True)
class Hit:
    """A passage found by a search, with its rank and score (higher is better).

    `ranks` says where the passage stood in each list that was fused ("dense", "lexical"); `context` holds the
    neighbouring passages of the same article when asked for; `article_matches` counts the article's passages
    among the candidates when hits are grouped by article.
    """

    rank: int
    score: float
    passage: Passage
    ranks: dict[str, int] = field(default_factory=dict)
    context: list[tuple[str, Passage]] = field(default_factory=list)
    highlights: list[Highlight] = field(default_factory=list)
    article_matches: int | None = None
