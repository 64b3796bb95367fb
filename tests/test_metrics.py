"""Prometheus metrics at /metrics (`search/serve/metrics.py`): requests per route template and status, latency,
in-flight requests, and the served index's gauges."""

from __future__ import annotations

from fastapi.testclient import TestClient

from search.records import SearchQuery
from search.serve.app import create_app
from search.service import SearchService


def test_metrics_count_requests_per_route_template_and_status(fake_service: SearchService) -> None:
    with TestClient(create_app(service=fake_service)) as client:
        for hit in fake_service.search(SearchQuery("cats", k=3)).hits:
            assert client.get(f"/passages/{hit.passage.passage_id}").status_code == 200
        assert client.get("/passages/no-such-passage").status_code == 404
        client.get("/nowhere/at/all")
        client.request("BREW", "/search")
        text = client.get("/metrics").text
    assert 'search_http_requests_total{method="GET",route="/passages/{passage_id}",status="200"} 3.0' in text
    assert 'search_http_requests_total{method="GET",route="/passages/{passage_id}",status="404"} 1.0' in text
    assert 'search_http_requests_total{method="GET",route="<unmatched>",status="404"} 1.0' in text
    assert 'search_http_requests_total{method="OTHER",route="/search",status="405"} 1.0' in text
    assert 'search_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/passages/{passage_id}"}' in text
    assert "search_http_requests_in_flight" in text


def test_the_real_app_exposes_index_gauges_and_request_counts(fake_service: SearchService) -> None:
    with TestClient(create_app(service=fake_service)) as client:
        assert client.get("/search", params={"q": "cats", "k": 2}).status_code == 200
        assert client.post("/search", json={"query": "собаки", "k": 1}).status_code == 200
        assert client.get("/search", params={"q": "cats", "k": 1000}).status_code == 422
        text = client.get("/metrics").text
    assert 'search_http_requests_total{method="GET",route="/search",status="200"} 1.0' in text
    assert 'search_http_requests_total{method="GET",route="/search",status="422"} 1.0' in text
    assert f"search_index_passages {float(fake_service.store.size)}" in text
    assert f'build_id="{fake_service.store.build_id}"' in text
