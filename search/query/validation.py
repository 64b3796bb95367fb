"""Checking a search's fields against the configured limits, once, before any model call."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date

from search.config import Settings
from search.errors import BadInput
from search.ingest.unicode import check_text
from search.records import MODES, TRANSLATIONS, SearchQuery

MAX_OFFSET = 10_000
MAX_CONTEXT = 10
# Texts per embeddings request: the batch route's cap on searches (search.serve.schemas.BatchRequest).
MAX_EMBED_INPUTS = 256
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def check_k(k: int, max_k: int) -> None:
    if not 1 <= k <= max_k:
        raise BadInput(f"k: {k} is outside 1..{max_k}")


def validate(q: SearchQuery, settings: Settings) -> None:
    """Raise `BadInput` naming the first field out of bounds; the edges pass fields through unchecked."""
    texts: dict[str, object] = {"query": q.query, "lang": q.langs, "article": q.articles, "metadata": q.metadata}
    texts |= {"published_after": q.published_after, "published_before": q.published_before}
    for field, text in texts.items():
        check_text(field, text)
    if not q.query.strip():
        raise BadInput("query: must not be blank")
    if len(q.query) > settings.max_query_chars:
        raise BadInput(f"query: {len(q.query)} characters; at most {settings.max_query_chars} are allowed")
    check_k(q.k, settings.max_k)
    if q.mode is not None and q.mode not in MODES:
        raise BadInput(f"mode: {q.mode!r} is not one of {', '.join(MODES)}")
    if not 0 <= q.offset <= MAX_OFFSET:
        raise BadInput(f"offset: {q.offset} is outside 0..{MAX_OFFSET}")
    if not 0 <= q.context <= MAX_CONTEXT:
        raise BadInput(f"context: {q.context} is outside 0..{MAX_CONTEXT}")
    if q.translations is not None and q.translations not in TRANSLATIONS:
        raise BadInput(f"translations: {q.translations!r} is not one of {', '.join(TRANSLATIONS)}")
    if not 0 <= q.diversity <= 1:  # also refuses NaN
        raise BadInput(f"diversity: {q.diversity} is outside 0..1")
    if q.group_by not in (None, "article"):
        raise BadInput(f"group_by: {q.group_by!r}; the only grouping is 'article'")
    # Date bounds are days, compared as text with the day part of `published` (search/index/store.py), so any
    # other form ("May 2025", or ISO's own 20250301 and 2025-W10) would filter silently wrong.
    for name, value in (("published_after", q.published_after), ("published_before", q.published_before)):
        if value:
            try:
                if not _DAY.fullmatch(value):
                    raise ValueError(value)
                date.fromisoformat(value)
            except ValueError:
                raise BadInput(f"{name}: {value!r} is not a date; give YYYY-MM-DD, e.g. 2025-03-01") from None


def validate_texts(texts: Sequence[str], settings: Settings) -> None:
    """The inputs of an embeddings request: 1..MAX_EMBED_INPUTS texts, none blank or over the query length."""
    if not 1 <= len(texts) <= MAX_EMBED_INPUTS:
        raise BadInput(f"input: {len(texts)} texts; give 1..{MAX_EMBED_INPUTS} per request")
    for i, text in enumerate(texts):
        check_text(f"input[{i}]", text)
        if not text.strip():
            raise BadInput(f"input[{i}]: must not be blank")
        if len(text) > settings.max_query_chars:
            raise BadInput(
                f"input[{i}]: {len(text)} characters; at most {settings.max_query_chars} are allowed "
                "(SEARCH_MAX_QUERY_CHARS)"
            )
