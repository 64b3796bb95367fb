"""Query-like probes (`search/index/probes.py`): which text of a passage is asked, and how it is encoded."""

from __future__ import annotations

import numpy as np

from search.index.centering import Centering
from search.index.probes import MAX_CHARS, opening, query_probes
from search.records import Passage
from tests.fakes import FakeEmbedder


def test_the_opening_is_the_first_sentence() -> None:
    assert opening("The river floods in spring. Farmers wait for it.") == "The river floods in spring."
    first = "北京是中华人民共和国的首都，也是全国的政治和文化中心。"
    assert opening(first + "它有三千多年的历史。") == first


def test_a_short_first_sentence_takes_the_next_one_with_it() -> None:
    assert opening("Rivers. They flood in spring. Farmers wait.") == "Rivers. They flood in spring."


def test_a_long_opening_is_cut_at_a_space() -> None:
    text = " ".join(["word"] * 100) + "."
    cut = opening(text)
    assert len(cut) <= MAX_CHARS and cut.endswith("word") and text.startswith(cut)
    assert opening("字" * 500) == "字" * MAX_CHARS


def passage(i: int, lang: str, text: str) -> Passage:
    return Passage(f"p{i}", f"a{i}", "t", 0, 0, 0, len(text), lang, text, None)


def test_probes_are_openings_encoded_as_queries_and_centered_by_their_language() -> None:
    texts = [f"Passage number {i} opens here. Then it goes on." for i in range(6)]
    passages = [passage(i, "en" if i % 2 else "de", t) for i, t in enumerate(texts)]
    embedder = FakeEmbedder()
    raw = embedder.encode(texts, query=False)
    centering = Centering.fit(raw, [p.lang for p in passages], min_passages=1)
    embedder.encoded.clear()

    probes = query_probes(passages, embedder, centering, n=4, seed=0)

    assert len(embedder.encoded) == 4 and all(t.endswith("opens here.") for t in embedder.encoded)
    picked = [int(t.split()[2]) for t in embedder.encoded]
    expected = np.stack(
        [centering.query(embedder.encode([opening(texts[i])], query=True)[0], {passages[i].lang: 1.0}) for i in picked]
    )
    np.testing.assert_allclose(probes.vectors, expected, atol=1e-6)
    assert probes.source.startswith("opening sentences of 4 sampled passages")
