"""The HTTP API's request models (`search/serve/schemas.py`) under arbitrary JSON."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from search.config import Settings
from search.errors import BadInput
from search.query.validation import validate
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
}
SHAPED = st.fixed_dictionaries(
    {"query": PLAUSIBLE["query"]},
    optional={name: PLAUSIBLE.get(name, JSON) for name in SearchRequest.model_fields if name != "query"},
)
BODIES = SHAPED | st.dictionaries(FIELDS, JSON, max_size=6) | JSON


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


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=BODIES)
def test_request_models_accept_or_reject_anything_cleanly(body: object) -> None:
    """Any JSON either fails validation (422) or becomes a query the service accepts or refuses with BadInput."""
    for model in (SearchRequest, BatchRequest):
        payload = {"queries": [body]} if model is BatchRequest else body
        try:
            request = model.model_validate(payload)
        except ValidationError:
            continue
        for r in request.queries if isinstance(request, BatchRequest) else [request]:
            try:
                validate(r.to_query(), SETTINGS)
            except BadInput:
                pass


def test_the_fuzzed_bodies_reach_every_outcome() -> None:
    """The fuzz above proves something only if its bodies get past the model to the service's checks."""
    quick = settings(max_examples=2000, database=None, suppress_health_check=list(HealthCheck))
    for wanted in ("rejected", "bad_input", "accepted"):
        find(BODIES, lambda body, wanted=wanted: outcome(body) == wanted, settings=quick)  # type: ignore[misc]
