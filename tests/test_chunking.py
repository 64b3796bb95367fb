from __future__ import annotations

import re
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search.errors import BadInput
from search.ingest.chunking import (
    ChunkerSettings,
    TokenCounter,
    chunk_article,
    normalize_whitespace,
    split_article,
    split_sentences,
)
from search.records import Chunk

SEED = Path(__file__).parents[1] / "seeds" / "000_9f71073b3b5a7269.txt"
HEADING_ZH = "“特朗普不是一个很有耐心的人”"
HEADING_EN = "NATO’s Decline is a Long-Term Trend"
# The paragraph rules alone: these tests use paragraphs of a word or two, which the debris rule would join.
NO_DEBRIS = ChunkerSettings(min_words=0)


def by_chars(text: str) -> int:
    return len(text) // 4 + 4


def by_words(text: str) -> int:
    """Roughly a subword tokenizer: one token per Latin word or CJK character, plus two specials."""
    return len(re.findall(r"[A-Za-z0-9]+|\S", text)) + 2


def visible(text: str) -> Counter[str]:
    return Counter(c for c in text if not c.isspace())


def check_chunks(text: str, chunks: list[Chunk], count: TokenCounter, max_tokens: int) -> list[str]:
    """Assert the invariants every chunking must hold; return the headings found between chunks."""
    headings: list[str] = []
    previous_end = 0
    for k, chunk in enumerate(chunks):
        assert normalize_whitespace(text[chunk.start : chunk.end]) == chunk.text
        assert chunk.text and not text[chunk.start].isspace() and not text[chunk.end - 1].isspace()
        assert count(chunk.text) <= max_tokens
        assert chunk.start >= previous_end
        if k == 0:
            assert (chunk.paragraph, chunk.part) == (0, 0)
        else:
            before = chunks[k - 1]
            same = chunk.paragraph == before.paragraph
            assert (chunk.paragraph, chunk.part) == (
                (before.paragraph, before.part + 1) if same else (before.paragraph + 1, 0)
            )
        gap = normalize_whitespace(text[previous_end : chunk.start])
        if gap:
            assert chunk.part == 0 and gap == chunk.section
            headings.append(gap)
        previous_end = chunk.end
    assert not text[previous_end:].strip()
    return headings


@pytest.fixture(scope="module")
def seed() -> str:
    return SEED.read_text(encoding="utf-8")


def test_seed_joins_lines_broken_mid_sentence(seed: str) -> None:
    chunks = chunk_article(seed, by_chars)
    texts = [c.text for c in chunks]
    for joined in (
        "including issues. We also talked",
        "美俄对“特普会”的期待",
        "包括“爱国者”防空导弹",
        "昭告天下的“胜利”。他对于",
    ):
        assert sum(joined in t for t in texts) == 1, joined
    assert any("美俄高层接触,美俄之间的二轨接触" in t for t in texts)  # a line that starts with a comma


def test_seed_headings_become_sections(seed: str) -> None:
    chunks = chunk_article(seed, by_chars)
    headings = check_chunks(seed, chunks, by_chars, 512)
    assert headings == [HEADING_ZH, HEADING_EN]
    texts = [c.text for c in chunks]
    assert HEADING_ZH not in texts and HEADING_EN not in texts
    # The photo caption is debris: it joins the paragraph before it rather than standing alone.
    caption = next(i for i, t in enumerate(texts) if t.endswith("隔着防弹玻璃发表讲话。图/视觉中国"))
    assert texts[caption].startswith("此前一天,美国国防部暂停了")
    assert all(c.section is None for c in chunks[: caption + 1])
    after_zh = chunks[caption + 1]
    assert after_zh.section == HEADING_ZH and after_zh.text.startswith("《中国新闻周刊》:今年1月以来")
    english = next(c for c in chunks if c.text.startswith("“China News Weekly”: In the recent call"))
    assert english.section == HEADING_EN
    assert chunks[-1].section == HEADING_EN and chunks[-1].text.endswith("a long-term trend.")
    assert [c.paragraph for c in chunks] == list(range(len(chunks)))
    assert visible(seed) == visible("".join(texts) + HEADING_ZH + HEADING_EN)


def test_seed_split_small_keeps_every_character(seed: str) -> None:
    chunks = chunk_article(seed, by_words, ChunkerSettings(max_tokens=30))
    headings = check_chunks(seed, chunks, by_words, 30)
    assert visible(seed) == visible("".join(c.text for c in chunks) + "".join(headings))
    assert max(c.part for c in chunks) > 0
    assert chunks == chunk_article(seed, by_words, ChunkerSettings(max_tokens=30))


def test_long_paragraph_splits_at_sentences_in_order() -> None:
    sentences = [f"Sentence number {n} talks about the weather in town." for n in range(40)]
    text = "Intro line.\n\n" + " ".join(sentences).replace(" talks ", " talks\n")
    chunks = chunk_article(text, by_chars, ChunkerSettings(max_tokens=40, min_words=0))
    check_chunks(text, chunks, by_chars, 40)
    parts = [c for c in chunks if c.paragraph == 1]
    assert [c.part for c in parts] == list(range(len(parts))) and len(parts) > 5
    assert all(c.text.endswith("town.") for c in parts)
    paragraph = text[parts[0].start : parts[-1].end]
    assert visible("".join(c.text for c in parts)) == visible(paragraph)


def test_cjk_paragraph_splits_at_full_stops() -> None:
    text = "今天天气很好。我们去公园散步吧!“你来吗?”他问道。好的……我马上就来。" * 3
    chunks = chunk_article(text, by_words, ChunkerSettings(max_tokens=16))
    check_chunks(text, chunks, by_words, 16)
    assert len(chunks) > 3
    assert all(re.search(r"[。!?”…]$", c.text) for c in chunks)


def test_giant_sentence_without_punctuation_is_split_not_truncated() -> None:
    text = " ".join(f"word{n}" for n in range(500))
    chunks = chunk_article(text, by_chars, ChunkerSettings(max_tokens=20))
    check_chunks(text, chunks, by_chars, 20)
    assert " ".join(c.text for c in chunks) == text


def test_cjk_run_without_spaces_is_split_between_characters() -> None:
    text = "中文字符没有空格" * 100
    chunks = chunk_article(text, by_chars, ChunkerSettings(max_tokens=10))
    check_chunks(text, chunks, by_chars, 10)
    assert len(chunks) > 10 and "".join(c.text for c in chunks) == text


def test_overlong_sentence_prefers_clause_breaks() -> None:
    clause = "the leaders talked for a long time about many things"
    text = ", ".join([clause] * 6) + "."
    chunks = chunk_article(text, by_chars, ChunkerSettings(max_tokens=25))
    check_chunks(text, chunks, by_chars, 25)
    assert all(c.text.endswith((",", ".")) for c in chunks)


def test_token_counter_is_called_about_once_per_sentence() -> None:
    calls: list[str] = []

    def counting(text: str) -> int:
        calls.append(text)
        return by_chars(text)

    text = " ".join(f"This is sentence {n} of a very long paragraph." for n in range(300))
    chunks = chunk_article(text, counting, ChunkerSettings(max_tokens=60))
    check_chunks(text, chunks, by_chars, 60)
    assert len(calls) <= 300 + 3 * len(chunks)


def test_max_tokens_below_one_character_is_bad_input() -> None:
    with pytest.raises(BadInput, match="max_tokens"):
        chunk_article("abc def", by_chars, ChunkerSettings(max_tokens=3))
    with pytest.raises(BadInput, match="max_tokens"):
        ChunkerSettings(max_tokens=0)


def test_empty_text_has_no_chunks() -> None:
    assert chunk_article("", by_chars) == []
    assert chunk_article(" \n\t\n\u3000 ", by_chars) == []


def test_blank_lines_and_sentence_ends_separate_paragraphs() -> None:
    text = "First line runs\non here.\nSecond paragraph\n  \nthird one"
    assert [c.text for c in chunk_article(text, by_chars, NO_DEBRIS)] == [
        "First line runs on here.",
        "Second paragraph",
        "third one",
    ]


def test_heading_rules() -> None:
    text = "A Short Summary of Events\nIt began in May.\n“胜利”\n在乌克兰。\nAnother Look at Europe\nthat was all."
    chunks = chunk_article(text, by_chars, NO_DEBRIS)
    assert [(c.section, c.text) for c in chunks] == [
        ("A Short Summary of Events", "It began in May."),
        ("A Short Summary of Events", "“胜利”在乌克兰。"),
        ("A Short Summary of Events", "Another Look at Europe that was all."),
    ]


def test_trailing_and_stacked_headings_stay_as_text() -> None:
    text = "Body text here.\n\nFirst Heading Alone\n\nSecond Heading Here\nMore body.\n\nClosing Heading Words"
    chunks = chunk_article(text, by_chars, NO_DEBRIS)
    assert [(c.paragraph, c.text, c.section) for c in chunks] == [
        (0, "Body text here.", None),
        (1, "First Heading Alone", None),
        (2, "More body.", "Second Heading Here"),
        (3, "Closing Heading Words", "Second Heading Here"),
    ]


def test_long_lines_and_clause_punctuation_are_not_headings() -> None:
    long_title = "Very " * 20 + "Long Title"
    text = f"{long_title}\nNext line.\n\nTrump, Putin And Others\nNext line."
    assert all(c.section is None for c in chunk_article(text, by_chars))
    wide = ChunkerSettings(heading_max_chars=200)
    assert chunk_article(f"{long_title}\nNext line.", by_chars, wide)[0].section == long_title


def test_normalize_whitespace() -> None:
    assert normalize_whitespace("  a \t b\n\n c  ") == "a b c"
    assert normalize_whitespace("美俄对\n“特普会”") == "美俄对“特普会”"
    assert normalize_whitespace("“no”\nthey said") == "“no” they said"
    assert normalize_whitespace("今年\n1月") == "今年1月"
    assert normalize_whitespace("in 2022\n年") == "in 2022年"
    assert normalize_whitespace("中文  中文") == "中文 中文"
    assert normalize_whitespace("Trump\r\n特朗普") == "Trump特朗普"


def test_split_sentences() -> None:
    text = "The U.S. team won. Did they? Yes!  “Really.” he said. 他问:“为什么?”我说。好的"
    spans = split_sentences(text)
    assert [text[a:b] for a, b in spans] == [
        "The U.S. team won.",
        "Did they?",
        "Yes!",
        "“Really.” he said.",
        "他问:“为什么?”",
        "我说。",
        "好的",
    ]
    assert split_sentences(" \n ") == []


def test_describe_records_the_settings() -> None:
    described = ChunkerSettings(max_tokens=256).describe()
    assert described["max_tokens"] == 256 and described["heading_max_chars"] == 80
    assert described["chunker"].startswith("paragraphs-v")


LATIN = st.sampled_from(
    ["the", "Trump", "Putin", "NATO’s", "Decline", "is", "a", "Long-Term", "Trend", "war", "U.S.", "1990"]
)
CJK = st.text(alphabet="特朗普会胜利美俄对期待中国新闻周刊2018", min_size=1, max_size=12)
PUNCT = st.sampled_from(list(".!?。！？…,，;；:：、“”‘’\"'()（）《》「」—") + ["...", "?”", "。”"])
SPACE = st.sampled_from([" ", "  ", "\t", "\n", "\n\n", " \n ", "\r\n", "\u3000"])
HEADING = st.sampled_from([f"\n{HEADING_EN}\n", f"\n{HEADING_ZH}\n", "\n\nThe Long Road\n", "\n《中国新闻周刊》\n"])
TEXT = st.lists(st.one_of(LATIN, CJK, PUNCT, SPACE, HEADING), max_size=120).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=TEXT, max_tokens=st.integers(min_value=5, max_value=40), heading_max_chars=st.integers(0, 80))
def test_chunking_properties(text: str, max_tokens: int, heading_max_chars: int) -> None:
    chosen = ChunkerSettings(max_tokens=max_tokens, heading_max_chars=heading_max_chars)
    for count in (by_chars, by_words):
        chunks = chunk_article(text, count, chosen)
        headings = check_chunks(text, chunks, count, max_tokens)
        assert visible(text) == visible("".join(c.text for c in chunks) + "".join(headings))
        assert bool(chunks) == bool(text.strip())
        assert chunks == chunk_article(text, count, chosen)


@given(text=TEXT)
def test_sentences_cover_every_visible_character(text: str) -> None:
    spans = split_sentences(text)
    assert all(a < b and not text[a].isspace() and not text[b - 1].isspace() for a, b in spans)
    assert all(b <= c for (_, b), (c, _) in pairwise(spans))
    assert visible("".join(text[a:b] for a, b in spans)) == visible(text)


STORY = "The talks in Helsinki lasted about an hour and ended without a joint statement."
NEXT = "Both sides said they would meet again before the autumn, officials in Moscow confirmed."


@pytest.mark.parametrize(
    ("debris", "kind"),
    [
        ("科尔图诺夫。", "attribution (a name alone)"),
        ("Koltunov.", "attribution"),
        ("Read more", "link text"),
        ("By Jane Doe", "byline"),
        ("记者 王晓", "byline"),
        ("Photo: Jane Doe/AP", "caption credit"),
        ("Leaders meet in Helsinki on Monday. Jane Doe/Reuters", "caption with credit"),
        ("当地时间7月3日,美国得梅因,特朗普在庆典上发表讲话。图/视觉中国", "caption with credit"),
        ("Source: Ministry of Defence", "attribution line"),
    ],
)
def test_debris_joins_the_paragraph_before_it(debris: str, kind: str) -> None:
    text = f"{STORY}\n\n{debris}\n\n{NEXT}"
    texts = [c.text for c in chunk_article(text, by_chars)]
    joined = STORY + ("" if debris[0] > "\u2e80" else " ") + debris
    assert texts == [joined, NEXT], kind


def test_debris_at_the_start_of_a_section_joins_the_paragraph_after_it() -> None:
    text = f"By Jane Doe\n\n{STORY}\n\nA Look at What Comes Next\n\nPhoto: AP\n\n{NEXT}"
    chunks = chunk_article(text, by_chars)
    assert [(c.text, c.section) for c in chunks] == [
        (f"By Jane Doe {STORY}", None),
        (f"Photo: AP {NEXT}", "A Look at What Comes Next"),
    ]


def test_short_story_sentences_of_four_words_or_more_stand_alone() -> None:
    text = f"{STORY}\n\nDogs bark at strangers.\n\n这是一个很好的问题。\n\nPrices rose, according to Reuters."
    assert len(chunk_article(text, by_chars)) == 4


def test_an_article_of_nothing_but_debris_is_one_passage() -> None:
    assert [c.text for c in chunk_article("Koltunov.\n\nRead more", by_chars)] == ["Koltunov. Read more"]


def test_split_article_reports_each_debris_paragraph_it_joined_as_written() -> None:
    text = f"By Jane\nDoe\n\n{STORY}\n\n科尔图诺夫。\n\n{NEXT}\n\nA Look Ahead\n\nKoltunov.\n\nRead more"
    split = split_article(text, by_chars)
    assert split.chunks == chunk_article(text, by_chars)
    # Normalised like a passage's text; the section of debris alone is one passage made of two joined pieces.
    assert split.debris == ["By Jane Doe", "科尔图诺夫。", "Koltunov.", "Read more"]


def test_debris_left_alone_and_articles_without_debris_report_none() -> None:
    assert split_article("Koltunov.", by_chars).debris == []
    assert split_article(f"{STORY}\n\n{NEXT}", by_chars).debris == []
    assert split_article(f"{STORY}\n\nKoltunov.", by_chars, NO_DEBRIS).debris == []
