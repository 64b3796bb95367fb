"""The shared vocabulary: articles as read, chunks as split, passages as indexed, hits as found."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, asdict, dataclass, field
from typing import Any, Literal, NamedTuple, get_args

# How a search ranks: the model's vectors, BM25 in the query's language, or both fused (see `search.query`).
Mode = Literal["dense", "lexical", "hybrid"]
MODES: tuple[Mode, ...] = get_args(Mode)
GroupBy = Literal["article"]
# What a search does with a build's translation groups (passages that translate each other, found at build time):
# one hit per group, every member next to the others, or nothing (see `search.query.ranking.translations`).
Translations = Literal["collapse", "together", "off"]
TRANSLATIONS: tuple[Translations, ...] = get_args(Translations)


@dataclass(frozen=True)
class Article:
    """One article as read from the corpus; `text` is the article text that offsets point into.

    `pages` holds, for an article read from a PDF, the offset in `text` where each page begins (page 1 first).
    """

    id: str
    title: str
    text: str
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    pages: tuple[int, ...] = ()

    def page_at(self, offset: int) -> int | None:
        """The 1-based page the text at `offset` is on, or None for an article without pages."""
        return bisect_right(self.pages, offset) if self.pages else None


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
    """An indexed passage: a chunk with its article, language and stable id; `page` (PDFs only) is the page
    where the passage begins."""

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
    page: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    among the candidates when hits are grouped by article; `translations` holds the other members of the hit's
    translation group (with translations=collapse or together; their text only with collapse, as together returns
    them as hits of their own).
    """

    rank: int
    score: float
    passage: Passage
    ranks: dict[str, int] = field(default_factory=dict)
    context: list[tuple[str, Passage]] = field(default_factory=list)
    highlights: list[Highlight] = field(default_factory=list)
    article_matches: int | None = None
    translations: list[Passage] = field(default_factory=list)
    translation_text: bool = True

    def as_dict(self) -> dict[str, Any]:
        """The one serialized shape of a hit, shared by the HTTP API, MCP and `search query --json`."""
        return {
            "rank": self.rank,
            "score": round(self.score, 6),
            **self.passage.as_dict(),
            "ranks": dict(self.ranks),
            "context": [{"position": position, **p.as_dict()} for position, p in self.context],
            "highlights": [asdict(h) for h in self.highlights],
            "article_matches": self.article_matches,
            "translations": [
                {"passage_id": p.passage_id, "lang": p.lang, **({"text": p.text} if self.translation_text else {})}
                for p in self.translations
            ],
        }


@dataclass(frozen=True, kw_only=True)
class Filters:
    """Restrictions on which passages a search may return; empty means no restriction."""

    langs: tuple[str, ...] = ()
    articles: tuple[str, ...] = ()
    published_after: str | None = None
    published_before: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.langs or self.articles or self.published_after or self.published_before or self.metadata)


@dataclass(frozen=True)
class SearchQuery:
    """One search: the text, how many hits, how to rank, what to filter, and what to attach to each hit.

    Every field but the text is keyword-only: fourteen fields are too many to pass by position. `mode=None`
    means the configured default; bounds (k, offset, context, lengths, dates) are checked once, by
    `search.query.validation`.
    """

    query: str
    _: KW_ONLY
    k: int = 10
    langs: Sequence[str] = ()
    articles: Sequence[str] = ()
    mode: Mode | None = None
    offset: int = 0
    min_score: float | None = None
    published_after: str | None = None
    published_before: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    context: int = 0
    highlight: bool = False
    group_by: GroupBy | None = None
    translations: Translations | None = None  # None: the configured default
    # 0..1: 0 ranks by relevance alone; above it, maximal marginal relevance trades relevance for hits unlike
    # those already chosen (search.query.ranking.diversify).
    diversity: float = 0.0

    def filters(self) -> Filters:
        return Filters(
            langs=tuple(self.langs),
            articles=tuple(self.articles),
            published_after=self.published_after,
            published_before=self.published_before,
            metadata=dict(self.metadata),
        )


@dataclass(frozen=True, kw_only=True)
class SearchResult:
    """The hits of one search, with the query's detected language and the mode that ranked them."""

    query: str
    query_lang: str
    took_ms: float
    mode: Mode
    hits: list[Hit] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "query_lang": self.query_lang,
            "mode": self.mode,
            "took_ms": round(self.took_ms, 2),
            "hits": [h.as_dict() for h in self.hits],
        }


@dataclass(frozen=True)
class ArticleMatch:
    """An article that shares content with another, rolled up from passage neighbours (more like this)."""

    article_id: str
    title: str
    score: float
    matched_passages: int


@dataclass(frozen=True)
class ArticleInfo:
    """An indexed article as listed: its languages and passage count."""

    article_id: str
    title: str
    languages: list[str]
    passages: int
    metadata: dict[str, Any]
