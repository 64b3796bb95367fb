"""The HTTP API's request models (`search/serve/schemas.py`) under arbitrary JSON."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from search.config import Settings
from search.errors import BadInput
from search.query.validation import MAX_CONTEXT, MAX_OFFSET, validate
from search.records import MODES
from search.serve.schemas import BatchRequest, SearchRequest

SETTINGS = Settings(model="fake-model")

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(list(SearchRequest.model_fields) + ["extra"])
# Values of the right type, in and out of the service's bounds, so that most shaped bodies pass the model and reach
# `validate` (arbitrary JSON alone almost never makes a valid request); wrong types and unknown fields come from the
# other two kinds of body. A field without an entry here gets arbitrary JSON.
DATES = st.dates().map(str) | st.text(max_size=12)
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "query": st.text(max_size=40) | st.just("x" * (SETTINGS.max_query_chars + 1)),
    "k": st.integers(-5, SETTINGS.max_k + 50),
    "lang": st.lists(st.sampled_from(["en", "ru", "zh", "xx", ""]), max_size=3),
    "article": st.lists(st.text(max_size=10), max_size=3),
    "mode": st.sampled_from([*MODES, "fuzzy"]) | st.none(),
    "offset": st.integers(-5, 20_000),
    "min_score": st.floats(allow_nan=True) | st.none(),
    "published_after": DATES | st.none(),
    "published_before": DATES | st.none(),
    "metadata": st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2),
    "context": st.integers(-2, 15),
    "highlight": st.booleans(),
    "group_by": st.sampled_from(["article", "passage"]) | st.none(),
    "diversity": st.floats(-0.5, 1.5) | st.just(float("nan")),
}
SHAPED = st.fixed_dictionaries(
    {"query": PLAUSIBLE["query"]},
    optional={name: PLAUSIBLE.get(name, JSON) for name in SearchRequest.model_fields if name != "query"},
)
# One field at a time beside a good query, so that each bound is met on its own (with all fields drawn at once, a
# body is almost always refused for some other field first).
ONE_FIELD = st.sampled_from([n for n in PLAUSIBLE if n != "query"]).flatmap(
    lambda name: st.fixed_dictionaries({"query": st.just("cats"), name: PLAUSIBLE[name]})
)
BODIES = SHAPED | ONE_FIELD | st.dictionaries(FIELDS, JSON, max_size=6) | JSON


def outcome(body: object) -> str:
    """What becomes of a body: "rejected" (422, by the model), "bad_input" (the service's bounds) or "accepted"."""
    try:
        request = SearchRequest.model_validate(body)
    except ValidationError:
        return "rejected"
    try:
        validate(request.to_query(), SETTINGS)
    except BadInput:
        return "bad_input"
    return "accepted"


def check_rejection(exc: ValidationError, body: object, prefix: tuple[object, ...] = ()) -> None:
    """A 422 names where the body is wrong: a field it sent (or the missing query), or the body as a whole."""
    errors = exc.errors()
    assert errors, body
    for e in errors:
        loc = tuple(e["loc"])
        assert loc[: len(prefix)] == prefix, (loc, body)
        where = loc[len(prefix) :]
        if isinstance(body, dict):
            assert where and (where[0] in body or where[0] == "query"), (e, body)
        else:
            assert e["type"] == "model_type" and not where, (e, body)


def check_accepted(request: SearchRequest) -> None:
    """What `validate` lets through is within every bound the service relies on."""
    q = request.to_query()
    assert q.query.strip() and len(q.query) <= SETTINGS.max_query_chars
    assert 1 <= q.k <= SETTINGS.max_k and 0 <= q.offset <= MAX_OFFSET and 0 <= q.context <= MAX_CONTEXT
    assert q.mode is None or q.mode in MODES
    assert q.group_by in (None, "article")
    assert 0 <= q.diversity <= 1
    for day in (q.published_after, q.published_before):
        assert not day or (len(day) == 10 and date.fromisoformat(day).isoformat() == day)


def check_bad_input(exc: BadInput, request: SearchRequest, body: dict[str, Any]) -> None:
    """A refusal by the service names one field the body sent (or its query) and says what is allowed."""
    field, sep, problem = str(exc).partition(": ")
    assert sep and problem and field in SearchRequest.model_fields, str(exc)
    assert field in body or field == "query", (str(exc), body)
    assert "Traceback" not in problem and "\n" not in problem


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=BODIES)
def test_any_json_is_rejected_naming_a_field_or_accepted_within_bounds(body: object) -> None:
    """Any JSON either fails the model (a 422 naming the field), or is refused by the service's bounds with a
    BadInput naming the field, or becomes a query within every bound; a batch of it agrees with the single body."""
    try:
        request = SearchRequest.model_validate(body)
    except ValidationError as exc:
        check_rejection(exc, body)
        with pytest.raises(ValidationError) as batch:
            BatchRequest.model_validate({"queries": [body]})
        check_rejection(batch.value, body, ("queries", 0))
        return
    assert BatchRequest.model_validate({"queries": [body]}).queries == [request]
    assert isinstance(body, dict)
    try:
        validate(request.to_query(), SETTINGS)
    except BadInput as exc:
        check_bad_input(exc, request, body)
    else:
        check_accepted(request)


def test_the_fuzzed_bodies_reach_every_outcome() -> None:
    """The fuzz above proves something only if its bodies get past the model to the service's checks."""
    quick = settings(max_examples=2000, database=None, suppress_health_check=list(HealthCheck))
    for wanted in ("rejected", "bad_input", "accepted"):
        find(BODIES, lambda body, wanted=wanted: outcome(body) == wanted, settings=quick)  # type: ignore[misc]
