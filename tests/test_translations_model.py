"""Translation groups with the real model: found on an XQuAD subset and on the seed, and what search does with them
(collapse, together, a corpus without translations, `GET /passages/{id}`). Each index is built once per module."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import combinations
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from benchmarks.eval import QueryMemo
from benchmarks.xquad import XQuAD, load, write_corpus
from search.config import Settings
from search.records import SearchQuery, SearchResult
from search.serve.app import create_app
from search.service import SearchService

pytestmark = pytest.mark.model

N = 40
LANGS = ("en", "zh", "ru")


class Built:
    """Indexes of the first N XQuAD paragraphs in en, zh and ru (translations of each other), and of N English
    paragraphs with N other paragraphs in Chinese (no translations), from one embedding cache."""

    def __init__(self, folder: Path) -> None:
        xq = load(LANGS)
        self.questions = xq.questions
        cache = folder / "embeddings.sqlite"
        memo = QueryMemo(SearchService(Settings(index_dir=folder / "unused")).embedder)
        pooled = write_corpus(XQuAD({lang: xq.paragraphs[lang][:N] for lang in LANGS}, {}), folder / "pooled")
        unrelated = XQuAD({"en": xq.paragraphs["en"][:N], "zh": xq.paragraphs["zh"][N : 2 * N]}, {})
        self.pooled = self._service(folder / "pooled-index", cache, memo, list(pooled.values()))
        files = list(write_corpus(unrelated, folder / "unrelated").values())
        self.unrelated = self._service(folder / "unrelated-index", cache, memo, files)

    @staticmethod
    def _service(index: Path, cache: Path, memo: QueryMemo, files: list[Path]) -> SearchService:
        svc = SearchService(Settings(index_dir=index, embedding_cache=cache), memo)
        svc.build(files)
        svc.load()
        return svc

    def close(self) -> None:
        self.pooled.close()
        self.unrelated.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    out = Built(tmp_path_factory.mktemp("translations"))
    yield out
    out.close()


@pytest.fixture(scope="module")
def group_of(built: Built) -> dict[str, int]:
    """The pooled index's translation group of each passage id; -1 where a passage has none."""
    groups = built.pooled.store.translation_groups()
    return {p.passage_id: int(groups[r]) for r, p in enumerate(built.pooled.store.all_passages())}


def questions(built: Built, lang: str, n: int = 20) -> list[str]:
    return [q.text for q in built.questions[lang] if max(q.paragraphs) < N][:n]


def test_the_build_groups_each_paragraph_with_its_translations(built: Built) -> None:
    store = built.pooled.store
    groups, passages = store.translation_groups(), store.all_passages()
    grouped = [r for r in range(len(passages)) if groups[r] >= 0]
    pairs = {frozenset((passages[a].article_id, passages[b].article_id))
             for a, b in combinations(grouped, 2) if groups[a] == groups[b]}  # fmt: skip
    truth = {frozenset((f"{a}/{i:03d}", f"{b}/{i:03d}")) for i in range(N) for a, b in combinations(LANGS, 2)}
    found = pairs & truth
    print(f"XQuAD {N} paragraphs en+zh+ru: {len(found)} of {len(truth)} pairs, {len(pairs - truth)} wrong")
    assert pairs <= truth and len(found) >= 0.9 * len(truth)


def test_collapse_returns_each_group_once_in_the_query_language_with_its_translations(
    built: Built, group_of: dict[str, int]
) -> None:
    results = built.pooled.search_many([SearchQuery(t, k=10, translations="collapse") for t in questions(built, "zh")])
    listed = 0
    for r in results:
        seen = [group_of[h.passage.passage_id] for h in r.hits]
        assert len([g for g in seen if g >= 0]) == len({g for g in seen if g >= 0})  # each group once
        for h in r.hits:
            members = [h.passage, *h.translations]
            assert len({p.passage_id for p in members}) == len(members)
            if "zh" in {p.lang for p in members}:
                assert h.passage.lang == "zh"
            listed += len(h.translations)
            assert all("text" in t for t in h.as_dict()["translations"])
    assert listed > 0


def test_together_ranks_the_members_of_a_group_next_to_each_other(built: Built, group_of: dict[str, int]) -> None:
    results = built.pooled.search_many([SearchQuery(t, k=12, translations="together") for t in questions(built, "ru")])
    adjacent = 0
    for r in results:
        seen = [group_of[h.passage.passage_id] for h in r.hits]
        runs = [g for i, g in enumerate(seen) if g >= 0 and (i == 0 or seen[i - 1] != g)]
        complete = runs[:-1]  # the last group may run past k
        assert len(complete) == len(set(complete)), seen
        adjacent += sum(1 for i in range(1, len(seen)) if seen[i] >= 0 and seen[i] == seen[i - 1])
    assert adjacent > 0


def test_full_diversity_never_returns_two_members_of_one_group(built: Built, group_of: dict[str, int]) -> None:
    texts = [t for lang in LANGS for t in questions(built, lang, 7)]
    results = built.pooled.search_many([SearchQuery(t, k=10, translations="together", diversity=1.0) for t in texts])
    grouped = 0
    for r in results:
        seen = [group_of[h.passage.passage_id] for h in r.hits]
        members = [g for g in seen if g >= 0]
        assert len(r.hits) == 10 and len(members) == len(set(members)), seen
        grouped += len(members)
    assert grouped > 0


def plain(results: list[SearchResult]) -> list[list[dict[str, object]]]:
    return [[h.as_dict() for h in r.hits] for r in results]


def test_a_corpus_without_translations_searches_as_off(built: Built) -> None:
    store = built.unrelated.store
    groups = store.translation_groups()
    false_groups = len(set(groups.tolist()) - {-1})
    print(f"unrelated en 0-{N - 1} + zh {N}-{2 * N - 1}: {false_groups} false groups")
    assert store.has_translations and false_groups == 0
    texts = questions(built, "en", 10) + questions(built, "zh", 10)
    off = plain(built.unrelated.search_many([SearchQuery(t, translations="off") for t in texts]))
    for how in ("collapse", "together"):
        assert plain(built.unrelated.search_many([SearchQuery(t, translations=how) for t in texts])) == off  # type: ignore[arg-type]


def test_get_passage_lists_its_translations(built: Built) -> None:
    svc = built.pooled
    passage = next(p for p in svc.store.all_passages() if p.lang == "en" and svc.translations(p.passage_id))
    with TestClient(create_app(svc)) as client:
        body = client.get(f"/passages/{passage.passage_id}").json()
    expected = {(p.passage_id, p.lang) for p in svc.translations(passage.passage_id)}
    assert {(t["passage_id"], t["lang"]) for t in body["translations"]} == expected
    assert {lang for _, lang in expected} <= {"zh", "ru"} and all(t["text"] for t in body["translations"])


def test_the_seed_has_no_translation_groups(service) -> None:  # type: ignore[no-untyped-def]
    # The seed's Chinese paragraphs are other parts of the interview, not versions of its English ones: the closest
    # pairs (the Putin paragraph and its one shared sentence, cosine 0.23; two paragraphs that both report six calls
    # since January, 0.21) are mutual best matches that do not stand out from the passages' other matches.
    store = service.store
    groups, passages = store.translation_groups(), store.all_passages()
    assert store.has_translations and {p.lang for p in passages} == {"en", "zh"}
    assert (groups == -1).all()
