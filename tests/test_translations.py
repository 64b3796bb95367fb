"""Translation groups without the model: the detector on synthetic vectors, the ranking under collapse, together and
off, the build's stored groups and a build made before them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from search.errors import BadInput
from search.index.store import Store, current_build
from search.index.translations import knockoff_threshold, translation_groups
from search.ingest.language import LanguageDetector
from search.query.ranking import Candidate, with_translations
from search.records import SearchQuery
from tests.helpers import make_service


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def parallel(n: int, noise: float, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """n "English" vectors and their "Chinese" versions (the same vector plus noise), centered as a build centers."""
    rng = np.random.default_rng(seed)
    en = rng.normal(size=(n, 64))
    zh = en + noise * rng.normal(size=(n, 64))
    return unit(np.vstack([en, zh])), ["en"] * n + ["zh"] * n


def test_parallel_passages_are_grouped_in_pairs() -> None:
    x, langs = parallel(200, 0.5)
    found = translation_groups(x, langs, [100] * len(langs))
    en, zh = found.group[:200], found.group[200:]
    assert found.count >= 190 and (en >= 0).sum() >= 190
    assert np.array_equal(en[en >= 0], zh[en >= 0])  # each group is paragraph i in both languages
    assert found.describe()["groups"] == found.count


def test_one_language_has_no_groups() -> None:
    x = unit(np.random.default_rng(1).normal(size=(400, 64)))
    assert (translation_groups(x, ["en"] * 400, [100] * 400).group == -1).all()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("n", "langs"), [(200, ("en", "zh")), (150, ("en", "zh", "ru"))])
def test_random_vectors_have_no_groups(seed: int, n: int, langs: tuple[str, ...]) -> None:
    # The best match of each of N random vectors, when mutual, is the best of N picked as a target is: only decoys
    # picked the same way (mutual best matches within one language) keep them out.
    x = unit(np.random.default_rng(seed).normal(size=(n * len(langs), 384)))
    found = translation_groups(x, [lang for lang in langs for _ in range(n)], [100] * len(x))
    assert found.pairs == 0 and (found.group == -1).all()


def siblings(topics: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Unrelated passages that share topics across languages, as XQuAD paragraphs of one article do: four
    paragraphs a topic, two in "English" and the other two in "Chinese" (no translations), centered per language."""
    rng = np.random.default_rng(seed)
    paragraphs = rng.normal(size=(topics, 1, 64)) + 0.8 * rng.normal(size=(topics, 4, 64))
    en = paragraphs[:, :2].reshape(-1, 64)
    zh = paragraphs[:, 2:].reshape(-1, 64) + 0.3 * rng.normal(size=(2 * topics, 64))  # the language's own noise
    return unit(np.vstack([en - en.mean(axis=0), zh - zh.mean(axis=0)])), ["en"] * len(en) + ["zh"] * len(zh)


@pytest.mark.parametrize("seed", range(5))
def test_paragraphs_on_shared_topics_are_not_translations(seed: int) -> None:
    # Without the decoys from within each language, 10 to 25 of these pairs passed (one topic's paragraphs in two
    # languages are each other's mutual best matches, standing above the decoys built from cross-language matches).
    x, langs = siblings(60, seed)
    assert translation_groups(x, langs, [100] * len(langs)).pairs == 0


def test_five_parallel_passages_are_enough() -> None:
    # knockoff+ at 0.1: 10 targets above every decoy, and each mutual pair is a target from both of its sides
    x, langs = parallel(5, 0.5)
    found = translation_groups(x, langs, [100] * len(langs))
    assert found.pairs == 5 and np.array_equal(found.group[:5], found.group[5:])
    x, langs = parallel(4, 0.5)
    assert translation_groups(x, langs, [100] * len(langs)).pairs == 0


def test_knockoff_threshold_needs_one_over_fdr_targets_above_each_decoy() -> None:
    # 19 targets far above every decoy cannot bound a rate of 5% (1 + 0 decoys over 19 targets is 5.3%); 20 can.
    decoys = np.linspace(0.0, 0.1, 50)
    assert knockoff_threshold(np.full(19, 0.5), decoys, 0.05) == float("inf")
    assert knockoff_threshold(np.r_[np.full(20, 0.5), 0.05], decoys, 0.05) == 0.5
    assert knockoff_threshold(np.linspace(0.2, 0.6, 100), decoys, 0.05) == 0.2


def test_two_passages_a_language_cannot_support_a_translation() -> None:
    # the best of 2 random pairs wins by chance one time in three: no rate can be bounded
    x, langs = parallel(2, 0.1)
    assert (translation_groups(x, langs, [100] * 4).group == -1).all()


# rows 0 (en) 1 (zh) 2 (ru) are one group; row 3 (en) and 4 (zh) stand alone; row 5 (ru) is in group 0 too but
# was not a candidate.
GROUP = {0: 0, 1: 0, 2: 0, 3: -1, 4: -1, 5: 0}
MEMBERS = {0: [0, 1, 2, 5]}
LANG = {0: "en", 1: "zh", 2: "ru", 3: "en", 4: "zh", 5: "ru"}
RANKED = [Candidate(1, 0.9, {"dense": 1}), Candidate(3, 0.8, {"dense": 2}), Candidate(0, 0.7, {"dense": 3}),
          Candidate(4, 0.6, {"dense": 4}), Candidate(2, 0.5, {"dense": 5})]  # fmt: skip


def test_collapse_gives_one_hit_per_group_in_the_query_language() -> None:
    out = with_translations(RANKED, "collapse", GROUP, MEMBERS, LANG, "en")
    assert [c.row for c in out] == [0, 3, 4]
    assert out[0].score == 0.9 and out[0].ranks == {"dense": 3}  # where its best member ranked, its own ranks
    assert out[0].translations == (1, 2, 5)
    # no member in the query's language: the best member stands for the group
    assert [c.row for c in with_translations(RANKED, "collapse", GROUP, MEMBERS, LANG, "de")] == [1, 3, 4]


def test_together_ranks_every_member_next_to_each_other_at_the_best_score() -> None:
    out = with_translations(RANKED, "together", GROUP, MEMBERS, LANG, "en")
    assert [c.row for c in out] == [1, 0, 2, 5, 3, 4]
    assert [c.score for c in out[:4]] == [0.9] * 4 and out[3].ranks == {}
    assert out[1].translations == (1, 2, 5)


def test_off_and_passages_without_groups_are_unchanged() -> None:
    assert with_translations(RANKED, "off", GROUP, MEMBERS, LANG, "en") == RANKED
    alone = dict.fromkeys(GROUP, -1)
    for how in ("collapse", "together"):
        assert with_translations(RANKED, how, alone, {}, LANG, "en") == RANKED  # type: ignore[arg-type]


ARTICLES = {
    "en.txt": "Cats are small domestic animals.\n\nThey like to sleep in the sun for most of the day.\n",
    "ru.txt": "Кошки — маленькие домашние животные.\n\nБольшую часть дня они любят спать на солнце.\n",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("groups")
    (tmp / "corpus").mkdir()
    for name, text in ARTICLES.items():
        (tmp / "corpus" / name).write_text(text, encoding="utf-8")
    svc = make_service(tmp, LanguageDetector(["en", "ru"], preload=False))
    svc.build([tmp / "corpus"])
    svc.load()
    return svc


def test_a_build_records_its_groups_and_health_says_so(built) -> None:  # type: ignore[no-untyped-def]
    manifest = json.loads((current_build(built.settings.index_dir) / "manifest.json").read_text())  # type: ignore[operator]
    assert manifest["translations"]["groups"] == 0 and manifest["translations"]["knn"] == "exact"
    assert built.health()["translations"] == manifest["translations"]
    assert built.store.has_translations


def test_a_build_made_before_groups_searches_as_off(built) -> None:  # type: ignore[no-untyped-def]
    folder: Path = built.store.folder
    old = {k: v for k, v in built.store.manifest.items() if k != "translations"}
    store = Store(folder, old)
    assert not store.has_translations and (store.translation_groups() == -1).all()
    assert store.translations_of(store.all_passages()[0].passage_id) == []


def test_every_setting_is_accepted_and_a_wrong_one_is_named(built) -> None:  # type: ignore[no-untyped-def]
    pages = [built.search(SearchQuery("cats", k=4, translations=how)).hits for how in ("off", "together", "collapse")]
    assert pages[0] and all([h.as_dict() for h in p] == [h.as_dict() for h in pages[0]] for p in pages)
    assert all(h.as_dict()["translations"] == [] for h in pages[0])
    with pytest.raises(BadInput, match="translations: 'both' is not one of collapse, together, off"):
        built.search(SearchQuery("cats", translations="both"))  # type: ignore[arg-type]
