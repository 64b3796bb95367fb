"""The query vocabulary (`search/records.py`): how a search is asked, and the one serialized shape of its answer,
which the HTTP API's response models (`search/serve/schemas.py`) must accept field for field."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from search.records import Filters, Highlight, Hit, Passage, SearchQuery, SearchResult
from search.serve.schemas import ContextOut, HitOut, PassageOut, SearchResponse


def passage(paragraph: int, article: str = "a.txt", section: str | None = None) -> Passage:
    text = f"Paragraph {paragraph} of {article}."
    return Passage(f"{article}#{paragraph}", article, "A", paragraph, 0, 100 * paragraph, 100 * paragraph + len(text),
                   "en", text, section)  # fmt: skip


def full_hit() -> Hit:
    """A hit with every optional part filled in: ranks, context on both sides, highlights, article matches."""
    return Hit(
        rank=3,
        score=0.123456789,
        passage=passage(1, section="Intro"),
        ranks={"dense": 2, "lexical": 5},
        context=[("before", passage(0)), ("after", passage(2))],
        highlights=[Highlight(0, 9, "Paragraph", 0.5)],
        article_matches=4,
    )


def test_a_query_takes_only_its_text_by_position() -> None:
    assert SearchQuery("x", k=5).k == 5
    with pytest.raises(TypeError):
        SearchQuery("x", 5)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        SearchQuery("x", 5, ["en"])  # type: ignore[call-arg]


def test_a_hit_serializes_to_exactly_the_fields_of_the_api_model() -> None:
    out = full_hit().as_dict()

    assert set(out) == set(HitOut.model_fields)
    validated = HitOut.model_validate(out)
    assert validated.model_dump() == out  # nothing dropped, renamed or coerced on the way
    assert json.loads(json.dumps(out)) == out  # plain JSON, as MCP and `search query --json` print it


def test_context_entries_carry_their_position_and_every_passage_field() -> None:
    out = full_hit().as_dict()

    assert [(c["position"], c["paragraph"]) for c in out["context"]] == [("before", 0), ("after", 2)]
    for entry in out["context"]:
        assert set(entry) == set(ContextOut.model_fields)
        ContextOut.model_validate(entry)


def test_a_bare_hit_validates_too() -> None:
    out = Hit(1, 0.5, passage(0)).as_dict()

    assert set(out) == set(HitOut.model_fields)
    assert (out["ranks"], out["context"], out["highlights"], out["article_matches"]) == ({}, [], [], None)
    HitOut.model_validate(out)


def test_a_passage_serializes_to_exactly_the_fields_of_the_api_model() -> None:
    out = passage(2, section="Body").as_dict()

    assert set(out) == set(PassageOut.model_fields)
    assert PassageOut.model_validate(out).model_dump() == out


def test_a_result_serializes_to_exactly_the_fields_of_the_api_response() -> None:
    result = SearchResult(query="cats", query_lang="en", took_ms=1.23456, mode="hybrid", hits=[full_hit()])
    out = result.as_dict()

    assert set(out) == set(SearchResponse.model_fields)
    response = SearchResponse.model_validate(out)
    assert response.mode == "hybrid" and response.hits[0].passage_id == "a.txt#1"
    assert response.model_dump() == out
    assert SearchResponse.of(result) == response


# A value for each restriction; the field list is checked against the dataclass so a new filter cannot be missed.
RESTRICTIONS: dict[str, Any] = {
    "langs": ("en",),
    "articles": ("a.txt",),
    "published_after": "2025-01-01",
    "published_before": "2025-12-31",
    "metadata": {"source": "AP"},
}


def test_no_filter_is_falsy() -> None:
    assert not Filters()
    assert not SearchQuery("x").filters()
    assert set(RESTRICTIONS) == {f.name for f in dataclasses.fields(Filters)}


@pytest.mark.parametrize("name", sorted(RESTRICTIONS))
def test_any_restriction_makes_filters_truthy(name: str) -> None:
    assert Filters(**{name: RESTRICTIONS[name]})


def test_a_query_carries_its_restrictions_into_its_filters() -> None:
    q = SearchQuery("x", langs=["en", "ru"], articles=["a"], published_after="2025-01-01", metadata={"source": "AP"})

    f = q.filters()

    assert f and f.langs == ("en", "ru") and f.articles == ("a",)
    assert (f.published_after, f.published_before, dict(f.metadata)) == ("2025-01-01", None, {"source": "AP"})
