"""What a research assistant uses, through HTTP on a real server: modes, context, highlights, grouping, paging,
more-like-this, batches, and filters on a small news corpus with dates and sources."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import serving

pytestmark = pytest.mark.model

PUTIN_EN = "Putin views the relationship between Russia and the United States"
PUTIN_ZH = "普京把俄美关系视为"


def search(url: str, **params: object) -> dict:  # type: ignore[type-arg]
    r = httpx.get(f"{url}/search", params=params, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("name", "phrase"), [("Koltunov", "Koltunov"), ("Ushakov", "Ushakov"), ("Zoellick", "Zoellick")]
)
def test_entity_queries_find_their_paragraphs_in_hybrid_mode(server_url: str, name: str, phrase: str) -> None:
    body = search(server_url, q=name, k=3, mode="hybrid")
    assert body["mode"] == "hybrid"
    assert any(phrase in h["text"] for h in body["hits"]), [h["text"][:60] for h in body["hits"]]


def test_modes_rank_differently_and_report_their_lists(server_url: str) -> None:
    lexical = search(server_url, q="Koltunov Russian International Affairs Council", k=5, mode="lexical")
    assert lexical["mode"] == "lexical" and lexical["hits"]
    assert all(h["lang"] == "en" and set(h["ranks"]) == {"lexical"} for h in lexical["hits"])
    hybrid = search(server_url, q="Koltunov Russian International Affairs Council", k=5, mode="hybrid")
    assert any(set(h["ranks"]) == {"dense", "lexical"} for h in hybrid["hits"])
    scores = [h["score"] for h in hybrid["hits"]]
    assert scores == sorted(scores, reverse=True)


def test_hybrid_never_pushes_cross_language_hits_out(server_url: str) -> None:
    q = "Why did the US Department of Defense suspend aid to Ukraine?"
    dense = search(server_url, q=q, k=10, mode="dense")["hits"]
    hybrid = search(server_url, q=q, k=10, mode="hybrid")["hits"]
    dense_zh = [(h["rank"], h["passage_id"]) for h in dense if h["lang"] != "en"]
    hybrid_zh = [(h["rank"], h["passage_id"]) for h in hybrid if h["lang"] != "en"]
    assert dense_zh and dense_zh == hybrid_zh


def test_context_paragraphs_come_in_order_around_the_hit(server_url: str) -> None:
    hit = search(server_url, q="普京如何看待俄美关系?", k=1, context=1)["hits"][0]
    ctx = hit["context"]
    assert [c["position"] for c in ctx] == ["before", "after"]
    assert [c["paragraph"] for c in ctx] == [hit["paragraph"] - 1, hit["paragraph"] + 1]
    assert all(c["article_id"] == hit["article_id"] for c in ctx)


def test_highlights_point_at_the_answering_sentence_across_languages(server_url: str) -> None:
    hits = search(server_url, q="普京如何看待俄美关系?", k=5, highlight=True)["hits"]
    en = next(h for h in hits if PUTIN_EN in h["text"])
    assert en["highlights"], en
    for hl in en["highlights"]:
        assert en["text"][hl["start"] : hl["end"]] == hl["text"]
    assert PUTIN_EN in en["highlights"][0]["text"]


def test_group_by_article_and_paging(server_url: str) -> None:
    grouped = search(server_url, q="NATO", k=5, group_by="article")["hits"]
    assert len(grouped) == 1 and grouped[0]["article_matches"] > 5
    full = search(server_url, q="NATO expansion", k=10)["hits"]
    page2 = search(server_url, q="NATO expansion", k=5, offset=5)["hits"]
    assert [h["passage_id"] for h in page2] == [h["passage_id"] for h in full[5:10]]
    assert [h["rank"] for h in page2] == [6, 7, 8, 9, 10]
    floor = full[3]["score"]
    assert all(h["score"] >= floor for h in search(server_url, q="NATO expansion", k=10, min_score=floor)["hits"])


def test_more_like_this_finds_the_translation(server_url: str) -> None:
    zh = next(h for h in search(server_url, q="普京如何看待俄美关系?", k=5)["hits"] if PUTIN_ZH in h["text"])
    r = httpx.get(f"{server_url}/passages/{zh['passage_id']}/similar", params={"k": 3, "exclude_same_article": False})
    hits = r.json()["hits"]
    assert PUTIN_EN in hits[0]["text"] and zh["passage_id"] not in {h["passage_id"] for h in hits}
    # the seed is one article: excluding it leaves nothing, and unknown ids are 404
    assert httpx.get(f"{server_url}/passages/{zh['passage_id']}/similar").json()["hits"] == []
    assert httpx.get(f"{server_url}/passages/nope/similar").status_code == 404
    r = httpx.get(f"{server_url}/articles/000_9f71073b3b5a7269.txt/similar")
    assert r.status_code == 200 and r.json()["articles"] == []
    assert httpx.get(f"{server_url}/articles/nope/similar").status_code == 404


def test_batch_answers_each_query_with_its_own_parameters(server_url: str) -> None:
    queries = [
        {"query": "Кто такой Ушаков?", "k": 2},
        {"query": "NATO summit", "k": 3, "mode": "lexical"},
        {"query": "NATO", "k": 4, "lang": ["zh"]},
    ]
    r = httpx.post(f"{server_url}/search/batch", json={"queries": queries}, timeout=60)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [len(x["hits"]) for x in results] == [2, 3, 4]
    assert results[0]["query_lang"] == "ru" and results[1]["mode"] == "lexical"
    assert all(h["lang"] == "zh" for h in results[2]["hits"])
    single = search(server_url, q="Кто такой Ушаков?", k=2)
    assert [h["passage_id"] for h in results[0]["hits"]] == [h["passage_id"] for h in single["hits"]]
    too_many = httpx.post(f"{server_url}/search/batch", json={"queries": [{"query": "x"}] * 257}, timeout=60)
    assert too_many.status_code == 422 and "queries" in too_many.json()["error"]["message"]


def test_bad_assistant_parameters_are_422(server_url: str) -> None:
    for params in ({"q": "x", "mode": "magic"}, {"q": "x", "context": 11}, {"q": "x", "meta": "nocolon"}):
        r = httpx.get(f"{server_url}/search", params=params, timeout=30)
        assert r.status_code == 422 and r.json()["error"]["code"] == "bad_input", params


# A small news corpus with `published` dates and `source`s; `lang` is the language each text is written in (kept
# out of the JSONL, where it would become metadata). Article "f" has no date: date filters must leave it out.
NEWS: list[dict[str, str]] = [
    {"id": "a", "lang": "en", "published": "2024-01-05", "source": "Reuters",
     "text": "The central bank raised interest rates to slow inflation.\n\n"
             "Economists had expected the increase after months of rising prices."},
    {"id": "b", "lang": "en", "published": "2025-03-01", "source": "AP",
     "text": "The central bank kept interest rates unchanged in March.\n\n"
             "Officials said that inflation was now close to the target."},
    {"id": "c", "lang": "en", "published": "2025-07-09", "source": "Reuters",
     "text": "Inflation fell after the central bank's decision on interest rates.\n\n"
             "Markets welcomed lower prices for fuel and food."},
    {"id": "d", "lang": "zh", "published": "2025-05-20", "source": "Xinhua",
     "text": "中央银行上调利率以抑制通货膨胀。\n\n经济学家预计物价将在明年逐步回落。"},
    {"id": "e", "lang": "ru", "published": "2025-02-10", "source": "TASS",
     "text": "Центральный банк повысил процентную ставку, чтобы сдержать инфляцию.\n\n"
             "Экономисты ожидают постепенного снижения цен в следующем году."},
    {"id": "f", "lang": "en", "source": "Reuters",
     "text": "A museum about the history of money and banking opened in London.\n\n"
             "Visitors can see coins and banknotes from three centuries."},
]  # fmt: skip
QUESTION = "Why did the central bank change interest rates?"

# Each case is a POST /search filter body; GET gets the same filters as query parameters.
FILTERS: list[dict[str, Any]] = [
    {"published_after": "2025-01-01"},
    {"published_before": "2025-03-01"},
    {"published_after": "2025-02-01", "published_before": "2025-06-30"},
    {"metadata": {"source": "Reuters"}},
    {"metadata": {"source": "Reuters"}, "published_after": "2025-01-01"},
    {"metadata": {"source": "nobody"}},
    {"lang": ["zh"]},
    {"lang": ["en"], "metadata": {"source": "AP"}},
    {"article": ["a", "d"]},
    {"article": ["a", "d"], "lang": ["en", "ru"]},
]


def expected(f: dict[str, Any]) -> set[str]:
    """The articles of NEWS that pass the filters `f`, worked out from the rows themselves."""
    out = set()
    for row in NEWS:
        date = row.get("published")
        if "published_after" in f and (date is None or date < f["published_after"]):
            continue
        if "published_before" in f and (date is None or date > f["published_before"]):
            continue
        if any(row.get(key) != value for key, value in f.get("metadata", {}).items()):
            continue
        if "lang" in f and row["lang"] not in f["lang"]:
            continue
        if "article" in f and row["id"] not in f["article"]:
            continue
        out.add(row["id"])
    return out


def get_params(f: dict[str, Any]) -> dict[str, Any]:
    params = {key: value for key, value in f.items() if key != "metadata"}
    if "metadata" in f:
        params["meta"] = [f"{key}:{value}" for key, value in f["metadata"].items()]
    return params


@pytest.fixture(scope="module")
def news_url(service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A real server on an index built from NEWS (JSONL with `published` and `source`), with the session's model."""
    from search.config import Settings
    from search.service import SearchService

    folder = tmp_path_factory.mktemp("news")
    corpus = folder / "news.jsonl"
    lines = [json.dumps({k: v for k, v in row.items() if k != "lang"}, ensure_ascii=False) for row in NEWS]
    corpus.write_text("\n".join(lines), encoding="utf-8")
    settings = Settings(index_dir=folder / "index", cache_dir=service.settings.cache_dir)
    SearchService(settings, embedder=service.embedder, detector=service.detector).build([corpus])
    with serving(settings.index_dir, settings.cache_dir, folder) as url:
        yield url


def post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(f"{url}{path}", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_news_index_holds_the_corpus_in_its_languages(news_url: str) -> None:
    articles = {a["article_id"]: a for a in httpx.get(f"{news_url}/articles", timeout=30).json()}
    assert set(articles) == {row["id"] for row in NEWS}
    for row in NEWS:
        assert articles[row["id"]]["languages"] == [row["lang"]]
        assert articles[row["id"]]["metadata"] == {k: v for k, v in row.items() if k not in ("id", "text", "lang")}


@pytest.mark.parametrize("f", FILTERS, ids=lambda f: json.dumps(f, ensure_ascii=False))
def test_filters_over_get_and_post(news_url: str, f: dict[str, Any]) -> None:
    # k is above the corpus's passage count, so the hits are exactly the passages that pass the filters
    via_get = search(news_url, q=QUESTION, k=50, **get_params(f))["hits"]
    via_post = post(news_url, "/search", {"query": QUESTION, "k": 50, **f})["hits"]
    assert {h["article_id"] for h in via_get} == expected(f)
    assert [(h["passage_id"], h["rank"]) for h in via_post] == [(h["passage_id"], h["rank"]) for h in via_get]
    if "lang" in f:
        assert {h["lang"] for h in via_get} <= set(f["lang"])


def test_filters_in_a_batch_apply_to_their_own_query(news_url: str) -> None:
    queries = [{"query": QUESTION, "k": 50, **f} for f in FILTERS] + [{"query": QUESTION, "k": 50}]
    results = post(news_url, "/search/batch", {"queries": queries})["results"]
    assert [{h["article_id"] for h in r["hits"]} for r in results] == [expected(f) for f in FILTERS] + [
        {row["id"] for row in NEWS}
    ]


def test_offset_and_min_score_page_a_filtered_ranking(news_url: str) -> None:
    f = {"metadata": {"source": "Reuters"}}
    full = post(news_url, "/search", {"query": QUESTION, "k": 50, **f})["hits"]
    assert len(full) >= 5 and [h["rank"] for h in full] == list(range(1, len(full) + 1))
    page = post(news_url, "/search", {"query": QUESTION, "k": 2, "offset": 2, **f})["hits"]
    assert [h["passage_id"] for h in page] == [h["passage_id"] for h in full[2:4]]
    assert [h["rank"] for h in page] == [3, 4]
    get_page = search(news_url, q=QUESTION, k=2, offset=2, **get_params(f))["hits"]
    assert [h["passage_id"] for h in get_page] == [h["passage_id"] for h in page]
    past_the_end = post(news_url, "/search", {"query": QUESTION, "k": 5, "offset": len(full), **f})["hits"]
    assert past_the_end == []
    floor = full[2]["score"]
    above = [h["passage_id"] for h in full if h["score"] >= floor]
    kept = post(news_url, "/search", {"query": QUESTION, "k": 50, "min_score": floor, **f})["hits"]
    assert [h["passage_id"] for h in kept] == above and 3 <= len(above) < len(full)
    batch = post(
        news_url,
        "/search/batch",
        {"queries": [{"query": QUESTION, "k": 2, "offset": 2, **f}, {"query": QUESTION, "min_score": floor, **f}]},
    )["results"]
    assert [h["passage_id"] for h in batch[0]["hits"]] == [h["passage_id"] for h in page]
    assert [h["passage_id"] for h in batch[1]["hits"]] == above


@pytest.mark.parametrize(
    ("field", "value"),
    [("published_after", "yesterday"), ("published_before", "2025-13-01"), ("published_after", "1 May 2025")],
)
def test_malformed_dates_are_422_naming_the_field(news_url: str, field: str, value: str) -> None:
    answers = [
        httpx.get(f"{news_url}/search", params={"q": QUESTION, field: value}, timeout=30),
        httpx.post(f"{news_url}/search", json={"query": QUESTION, field: value}, timeout=30),
        httpx.post(
            f"{news_url}/search/batch", json={"queries": [{"query": QUESTION}, {"query": QUESTION, field: value}]}
        ),
    ]
    for r in answers:
        assert r.status_code == 422, (r.request.url, r.text)
        error = r.json()["error"]
        assert error["code"] == "bad_input" and field in error["message"] and value in error["message"]


def test_bad_metadata_filters_are_422_naming_the_field(news_url: str) -> None:
    bad_key = httpx.post(f"{news_url}/search", json={"query": QUESTION, "metadata": {"source') OR 1=1 --": "x"}})
    assert bad_key.status_code == 422 and "metadata filter" in bad_key.json()["error"]["message"]
    not_a_string = httpx.post(f"{news_url}/search", json={"query": QUESTION, "metadata": {"source": ["AP"]}})
    assert not_a_string.status_code == 422 and "metadata.source" in not_a_string.json()["error"]["message"]
    no_colon = httpx.get(f"{news_url}/search", params={"q": QUESTION, "meta": "source"})
    assert no_colon.status_code == 422 and "meta" in no_colon.json()["error"]["message"]
    unknown = httpx.post(f"{news_url}/search", json={"query": QUESTION, "published": "2025-01-01"})
    assert unknown.status_code == 422 and "published" in unknown.json()["error"]["message"]


def _refs(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        if "$ref" in schema:
            yield schema["$ref"].rsplit("/", 1)[-1]
        for value in schema.values():
            yield from _refs(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _refs(value)


def test_search_requests_and_responses_are_pydantic_models_in_openapi(news_url: str) -> None:
    spec = httpx.get(f"{news_url}/openapi.json", timeout=30).json()
    schemas, paths = spec["components"]["schemas"], spec["paths"]

    def body_model(op: dict[str, Any]) -> str:
        return op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]

    def answer_model(op: dict[str, Any], status: str = "200") -> str:
        return op["responses"][status]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]

    assert body_model(paths["/search"]["post"]) == "SearchRequest"
    assert body_model(paths["/search/batch"]["post"]) == "BatchRequest"
    for path, method, model in [("/search", "get", "SearchResponse"), ("/search", "post", "SearchResponse"),
                                ("/search/batch", "post", "BatchResponse")]:  # fmt: skip
        op = paths[path][method]
        assert answer_model(op) == model and answer_model(op, "422") == "ErrorOut", (path, method)
    filters = {"lang", "article", "offset", "min_score", "published_after", "published_before", "metadata"}
    assert filters <= set(schemas["SearchRequest"]["properties"])
    query_params = {p["name"] for p in paths["/search"]["get"]["parameters"]}
    assert (filters - {"metadata"}) | {"meta"} <= query_params
    # Every model reachable from the search routes is a named schema, and every field of it is typed and described
    # or typed by a named model: no free-form objects in the contract.
    seen: set[str] = set()
    todo = ["SearchRequest", "BatchRequest", "SearchResponse", "BatchResponse", "ErrorOut"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        schema = schemas[name]
        assert schema["type"] == "object" and schema["properties"], name
        for field, prop in schema["properties"].items():
            assert "type" in prop or "$ref" in prop or "anyOf" in prop or "allOf" in prop, (name, field, prop)
        todo.extend(_refs(schema))
    assert {"HitOut", "ContextOut", "HighlightOut", "ErrorBody"} <= seen
