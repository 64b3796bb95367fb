"""`POST /v1/embeddings`: OpenAI's embeddings route over the service's model, checked with the official `openai`
client against a real uvicorn server, and its limits, keys and errors on the fake-embedded app."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import numpy as np
import openai
import pytest
from fastapi.testclient import TestClient

from search.query.validation import MAX_EMBED_INPUTS
from search.serve.app import create_app
from search.serve.guards import READ, required_scope
from search.service import SearchService
from tests.helpers import error_of, small_service

KEY = "reader-key-0123456789"


def message_of(r: object) -> str:
    error_of(r)  # type: ignore[arg-type]  # the API's one error shape
    return str(r.json()["error"]["message"])  # type: ignore[attr-defined]


QUESTIONS = ["普京如何看待俄美关系?", "What did Putin say about relations with the United States?"]


@pytest.fixture(scope="module")
def client(server_url: str) -> openai.OpenAI:
    # No key is configured on the test server; the client insists on one and the server ignores it.
    return openai.OpenAI(base_url=f"{server_url}/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.mark.model
def test_query_vectors_are_the_ones_search_starts_from(client: openai.OpenAI, service: SearchService) -> None:
    r = client.embeddings.create(input=QUESTIONS, model="anything", encoding_format="float")
    got = np.array([d.embedding for d in r.data], dtype=np.float32)
    assert [d.index for d in r.data] == [0, 1] and r.model == service.settings.model
    # what SearchService.search_many encodes a query with, before centering
    np.testing.assert_allclose(got, service.encoder.queries(QUESTIONS), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    expected_tokens = sum(service.embedder.count_tokens(q, query=True) for q in QUESTIONS)
    assert r.usage.prompt_tokens == r.usage.total_tokens == expected_tokens


@pytest.mark.model
def test_passage_vectors_are_the_ones_the_build_stored(client: openai.OpenAI, service: SearchService) -> None:
    store = service.store
    passages = store.all_passages()[:3]
    r = client.embeddings.create(
        input=[p.text for p in passages], model="m", encoding_format="float", extra_body={"input_type": "passage"}
    )
    got = np.array([d.embedding for d in r.data], dtype=np.float32)
    built = np.asarray(store.raw_vectors()[[store.row_of(p.passage_id) for p in passages]], dtype=np.float32)
    np.testing.assert_allclose(got, built, atol=2e-3)  # the build keeps its raw vectors as float16
    query_side = client.embeddings.create(input=[passages[0].text], model="m", encoding_format="float")
    assert not np.allclose(query_side.data[0].embedding, got[0], atol=1e-3)  # the prompts differ


@pytest.mark.model
def test_base64_decodes_to_the_same_floats(client: openai.OpenAI, server_url: str) -> None:
    floats = client.embeddings.create(input=QUESTIONS[0], model="m", encoding_format="float").data[0].embedding
    # The client asks for base64 itself when no format is given, and decodes it.
    default = client.embeddings.create(input=QUESTIONS[0], model="m").data[0].embedding
    np.testing.assert_array_equal(np.array(default, dtype=np.float32), np.array(floats, dtype=np.float32))
    raw = openai.OpenAI(base_url=f"{server_url}/v1", api_key="x").embeddings.with_raw_response.create(
        input=QUESTIONS[0], model="m", encoding_format="base64"
    )
    text = raw.http_response.json()["data"][0]["embedding"]
    decoded = np.frombuffer(base64.b64decode(text), dtype="<f4")
    np.testing.assert_array_equal(decoded, np.array(floats, dtype=np.float32))


@pytest.mark.model
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"input": []}, "input"),
        ({"input": ["fine", "  "]}, "input[1]"),
        ({"input": [[101, 102]]}, "input"),
        ({"input": "x", "dimensions": 3}, "dimensions"),
        ({"input": "x", "input_type": "document"}, "input_type"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ],
)
def test_bad_input_is_a_clear_422_through_the_client(client: openai.OpenAI, body: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.post("/embeddings", body={"model": "m", **body}, cast_to=dict)
    assert field in caught.value.response.json()["error"]["message"]


# --- the app's plumbing on the fake embedder ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    svc = small_service(tmp_path_factory.mktemp("embeddings"), api_keys=f"{KEY}:read", max_body_bytes=4000)
    with TestClient(create_app(service=svc)) as c:
        yield c


def test_the_route_needs_a_read_key_like_search(keyed: TestClient) -> None:
    assert required_scope("POST", "/v1/embeddings") == READ == required_scope("POST", "/search")
    assert keyed.post("/v1/embeddings", json={"input": "cats"}).status_code == 401
    ok = keyed.post("/v1/embeddings", json={"input": "cats"}, headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200 and len(ok.json()["data"][0]["embedding"]) > 0


@pytest.mark.parametrize(
    ("texts", "status", "words"),
    [
        (["cat"] * (MAX_EMBED_INPUTS + 1), 422, f"1..{MAX_EMBED_INPUTS}"),
        (["x" * 2001], 422, "SEARCH_MAX_QUERY_CHARS"),
        (["cat " * 1200], 413, ""),
    ],
)
def test_limits_are_the_searches(keyed: TestClient, texts: list[str], status: int, words: str) -> None:
    r = keyed.post("/v1/embeddings", json={"input": texts}, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == status
    assert words in message_of(r)


def test_unknown_fields_are_refused(keyed: TestClient) -> None:
    r = keyed.post(
        "/v1/embeddings", json={"input": "cats", "colour": "red"}, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert r.status_code == 422 and "colour" in message_of(r)
