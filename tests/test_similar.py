"""More like this over HTTP (`GET /articles/{id}/similar`, `search/query/similar.py`) on corpora where the answer is
known: near-duplicates with the fake embedder, and translations with the real model."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from search.config import Settings
from search.ingest.language import LanguageDetector
from search.serve.app import create_app
from search.service import SearchService
from tests.helpers import ROOT, make_service, write

CATS = [
    "Cats sleep for most of the day in a warm spot by the window.",
    "A cat grooms its fur with a rough tongue covered in tiny hooks.",
    "Kittens learn to hunt by playing with their brothers and sisters.",
]
# The same article lightly edited (a word changed in each paragraph): its near-duplicate.
CATS_EDITED = [
    "Cats sleep for most of the day in a sunny spot by the window.",
    "A cat grooms its coat with a rough tongue covered in tiny hooks.",
    "Kittens learn to hunt by playing with their brothers and sisters!",
]
DOGS = [
    "Dogs bark at the postman and chase bicycles down the street.",
    "A retriever will fetch a stick from the lake again and again.",
]
BIRDS = ["Swallows fly south in autumn and come back to the same nest in spring."]


def test_a_near_duplicate_article_ranks_first_with_every_paragraph_matched(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    for name, paragraphs in (("cats", CATS), ("cats-edited", CATS_EDITED), ("dogs", DOGS), ("birds", BIRDS)):
        write(corpus / f"{name}.txt", "\n\n".join(paragraphs) + "\n")
    svc = make_service(tmp_path, LanguageDetector(["en", "ru"], preload=False), watch_seconds=0)
    svc.build([corpus])
    with TestClient(create_app(service=svc)) as client:
        r = client.get("/articles/cats.txt/similar", params={"k": 10})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["article_id"] == "cats.txt"
        articles = body["articles"]
        assert [a["article_id"] for a in articles][0] == "cats-edited.txt"
        assert {a["article_id"] for a in articles} == {"cats-edited.txt", "dogs.txt", "birds.txt"}
        first, *rest = articles
        assert first["matched_passages"] == len(CATS) and first["title"] == "cats-edited"
        assert all(first["score"] > a["score"] for a in rest)
        assert [a["score"] for a in articles] == sorted((a["score"] for a in articles), reverse=True)
        # The relation is symmetric for a near-duplicate, and k cuts the list.
        back = client.get("/articles/cats-edited.txt/similar", params={"k": 1}).json()["articles"]
        assert [a["article_id"] for a in back] == ["cats.txt"]


XQUAD = ROOT / "data" / "xquad"
LANGS = ("en", "zh", "ru")
TOPICS = 4  # the first paragraphs of the first XQuAD titles, which are about different things
PARAGRAPHS = 2


def xquad_rows() -> list[dict[str, str]]:
    """Article `<lang>-<t>`: the first paragraphs of title t in that language, so en-t, zh-t and ru-t translate
    each other and share nothing with other titles."""
    rows = []
    for lang in LANGS:
        data = json.loads((XQUAD / f"xquad.{lang}.json").read_text(encoding="utf-8"))["data"]
        for t, article in enumerate(data[:TOPICS]):
            text = "\n\n".join(p["context"].strip() for p in article["paragraphs"][:PARAGRAPHS])
            rows.append({"id": f"{lang}-{t}", "title": article["title"], "text": text, "lang": lang})
    return rows


@pytest.mark.model
def test_an_articles_translations_rank_first(tmp_path: Path, service: SearchService) -> None:
    path = tmp_path / "xquad.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in xquad_rows()), encoding="utf-8")
    settings = Settings(index_dir=tmp_path / "index", cache_dir=service.settings.cache_dir, watch_seconds=0)
    svc = SearchService(settings, embedder=service.embedder, detector=service.detector)  # the loaded model
    svc.build([path])
    with TestClient(create_app(service=svc)) as client:
        for lang in LANGS:
            for t in range(TOPICS):
                r = client.get(f"/articles/{quote(f'{lang}-{t}')}/similar", params={"k": 3})
                assert r.status_code == 200, r.text
                found = [a["article_id"] for a in r.json()["articles"]]
                translations = {f"{other}-{t}" for other in LANGS if other != lang}
                assert set(found[:2]) == translations, (f"{lang}-{t}", r.json()["articles"])
                assert all(a["matched_passages"] == PARAGRAPHS for a in r.json()["articles"][:2])
