"""The HTTP API's request models (`search/serve/schemas.py`) under arbitrary JSON."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from search.config import Settings
from search.errors import BadInput
from search.serve.schemas import BatchRequest, SearchRequest
from search.service import SearchService

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(list(SearchRequest.model_fields) + ["extra"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.dictionaries(FIELDS, JSON, max_size=6) | JSON)
def test_request_models_accept_or_reject_anything_cleanly(body: object) -> None:
    """Any JSON either fails validation (422) or becomes a query the service accepts or refuses with BadInput."""
    service = SearchService(Settings(model="fake-model"))
    for model in (SearchRequest, BatchRequest):
        payload = {"queries": [body]} if model is BatchRequest else body
        try:
            request = model.model_validate(payload)
        except ValidationError:
            continue
        for r in request.queries if isinstance(request, BatchRequest) else [request]:
            try:
                service.validate(r.to_query())
            except BadInput:
                pass
