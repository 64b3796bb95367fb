"""The bounds of a search (`search/query/validation.py`): each field out of bounds is a `BadInput` that names it."""

from __future__ import annotations

from typing import Any

import pytest

from search.config import Settings
from search.errors import BadInput
from search.query.validation import MAX_CONTEXT, MAX_OFFSET, check_k, validate
from search.records import MODES, SearchQuery

SETTINGS = Settings(model="fake-model")


def query(**fields: Any) -> SearchQuery:
    return SearchQuery(fields.pop("query", "cats"), **fields)


@pytest.mark.parametrize(
    ("field", "fields"),
    [
        ("query", {"query": ""}),
        ("query", {"query": " \t\n"}),
        ("query", {"query": "x" * (SETTINGS.max_query_chars + 1)}),
        ("k", {"k": 0}),
        ("k", {"k": -1}),
        ("k", {"k": SETTINGS.max_k + 1}),
        ("mode", {"mode": "fuzzy"}),
        ("offset", {"offset": -1}),
        ("offset", {"offset": MAX_OFFSET + 1}),
        ("context", {"context": -1}),
        ("context", {"context": MAX_CONTEXT + 1}),
        ("group_by", {"group_by": "passage"}),
        ("published_after", {"published_after": "May 2025"}),
        ("published_after", {"published_after": "2025-13-01"}),
        ("published_before", {"published_before": "yesterday"}),
        ("published_before", {"published_before": "2025-02-30"}),
        # ISO forms that are no day as YYYY-MM-DD: compared as text with `published`, they would match nothing
        ("published_after", {"published_after": "20250301"}),
        ("published_after", {"published_after": "2025-W10"}),
        ("published_before", {"published_before": "2025-03-01T10:00"}),
    ],
)
def test_a_field_out_of_bounds_is_bad_input_naming_it(field: str, fields: dict[str, Any]) -> None:
    with pytest.raises(BadInput) as info:
        validate(query(**fields), SETTINGS)
    assert str(info.value).startswith(f"{field}:"), str(info.value)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"query": "x" * SETTINGS.max_query_chars},
        {"k": 1},
        {"k": SETTINGS.max_k},
        *({"mode": mode} for mode in MODES),
        {"mode": None},
        {"offset": MAX_OFFSET},
        {"context": MAX_CONTEXT},
        {"group_by": "article"},
        {"published_after": "2025-03-01", "published_before": "2025-03-01"},
    ],
)
def test_values_at_the_bounds_pass(fields: dict[str, Any]) -> None:
    validate(query(**fields), SETTINGS)


def test_the_limits_come_from_the_settings() -> None:
    tight = Settings(model="fake-model", max_k=5, max_query_chars=10)
    validate(query(k=5, query="x" * 10), tight)
    with pytest.raises(BadInput, match=r"^k: 6 is outside 1\.\.5"):
        validate(query(k=6), tight)
    with pytest.raises(BadInput, match=r"^query: 11 characters; at most 10"):
        validate(query(query="x" * 11), tight)


def test_the_first_field_out_of_bounds_is_the_one_named() -> None:
    with pytest.raises(BadInput, match="^k:"):
        validate(query(k=0, offset=-1, context=-1), SETTINGS)


def test_check_k_names_k_and_its_bounds() -> None:
    check_k(10, 10)
    with pytest.raises(BadInput, match=r"^k: 11 is outside 1\.\.10"):
        check_k(11, 10)
    with pytest.raises(BadInput, match=r"^k: 0 is outside 1\.\.10"):
        check_k(0, 10)
