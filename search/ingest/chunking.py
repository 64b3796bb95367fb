"""Pure, deterministic splitting of article text into paragraphs and token-bounded passages."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from search.errors import BadInput
from search.records import Chunk

TokenCounter = Callable[[str], int]
"""Number of model tokens of a passage text, prompt and special tokens included."""

Span = tuple[int, int]

# Bump when the same text and settings would split differently, so stale indexes are rebuilt.
CHUNKER_VERSION = 2

_CJK = re.compile(
    "[\u1100-\u11ff\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3130-\u31ff\u3200-\u33ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003134f]"
)
# Curly quotes and digits serve both scripts, so a line break next to them takes its cue from the
# nearest character beyond them: `对\n“特普会”` joins tight, `“no”\nthey` keeps its space.
_NEUTRAL = frozenset("“”‘’\"'0123456789")
_CLOSERS = "”’\"')）」』》】"
_C = re.escape(_CLOSERS)
_LINE_BREAK = re.compile("\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
_WHITESPACE = re.compile(r"\s+")
_NON_SPACE = re.compile(r"\S+")
_LINE_ENDS_SENTENCE = re.compile(f"[.!?。！？…][{_C}]*$")
_TERMINATOR = re.compile(f"(?:[.!?]+|[。！？]+|…+)[{_C}]*")
_NEXT_VISIBLE = re.compile(r"\s*(\S)")
# "U.S." or "J. Smith": a lone letter before the full stop is an initial, not a sentence end.
_INITIAL = re.compile(r"(?:^|[\s.])[A-Za-z]$")
_CLAUSE_MARK = re.compile("[,，;；:：、]")
# A mark followed by a digit separates numbers ("1,000", "12:30") rather than clauses.
_CLAUSE_CUT = re.compile(f"[,，;；:：、](?!\\d)[{_C}]*")
_RUN_ON_STARTS = frozenset(",，;；:：、.!?。！？…”’）)」』》】")
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_WRAPPERS = dict(zip("“‘\"'「『《【(（[", "”’\"'」』》】)）]", strict=True))
_SENTENCES, _CLAUSES, _WORDS, _CHARS = range(4)
# Words for the debris rule: runs of letters or digits outside CJK; a CJK character counts half a word.
_NON_CJK_WORD = re.compile(r"[^\W_]+")
# Lines that are about an article rather than of it, whatever their length: photo credits ("图/视觉中国",
# "Photo: AP", "(Reuters/Jane Doe)", "Getty Images"), bylines ("By Jane Doe", "记者 王晓", "文/王晓") and source
# or attribution lines ("Credit: ...", "来源：...", "Источник: ...").
_DEBRIS = re.compile(
    r"(?:^|[\s。.,，])(?:图|圖|摄|攝)\s*[/／|｜]\s*\S{1,20}$"
    r"|^\(?(?:photo|picture|image|credit|source|photograph)s?\s*(?:by|:)"
    r"|(?:^|[/(（|｜])\s*(?:getty images|afp|reuters|associated press|ap photo|shutterstock)[)）]?\.?$"
    r"|^(?:by|от|автор:?)\s+\w[\w.'’-]*(?:\s+\w[\w.'’-]*){0,3}$"
    r"|^(?:记者|文\s*[/／]|作者[:：]|来源[:：]|編輯|编辑[:：]|责任编辑|источник:|фото:)",
    re.IGNORECASE,
)
_DEBRIS_MAX_CHARS = 120


@dataclass(frozen=True)
class ChunkerSettings:
    """How articles are cut into passages; recorded in the index manifest."""

    max_tokens: int = 512
    heading_max_chars: int = 80
    # Measured on the seed (docs/ingestion.md#debris): passages under 4 words rank in the top 3 of unrelated short
    # queries after centering; from 4 words on, none did.
    min_words: float = 4

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise BadInput(f"chunker max_tokens is {self.max_tokens}; it must be at least 1.")
        if self.heading_max_chars < 0:
            raise BadInput(f"chunker heading_max_chars is {self.heading_max_chars}; use 0 or more.")
        if self.min_words < 0:
            raise BadInput(f"chunker min_words is {self.min_words}; use 0 (keep every paragraph) or more.")

    def describe(self) -> dict[str, Any]:
        return {"chunker": f"paragraphs-v{CHUNKER_VERSION}", **asdict(self)}


def normalize_whitespace(raw: str) -> str:
    """The passage text of `raw`: one line, single spaces, no space at either end.

    A whitespace run that holds a line break becomes nothing when the character on either side is CJK
    (Han, kana, hangul, CJK and fullwidth punctuation such as 《 》 「 」), else one space. Curly quotes and
    ASCII digits are looked through: `美俄对\\n“特普会”` gives `美俄对“特普会”`, `including\\nissues` gives
    `including issues`. Any other whitespace run (spaces, tabs, U+3000) becomes one space.
    """

    def join(match: re.Match[str]) -> str:
        if not _LINE_BREAK.search(match.group()):
            return " "
        cjk = _side_is_cjk(raw, match.start() - 1, -1) or _side_is_cjk(raw, match.end(), 1)
        return "" if cjk else " "

    return _WHITESPACE.sub(join, raw).strip()


def split_sentences(text: str) -> list[Span]:
    """Sentence spans `(start, end)` in `text`, stripped of whitespace and never empty.

    Latin sentences end at `. ! ?` followed by whitespace (not after an initial such as "U.S.", nor
    before a lower-case word); CJK ones at `。！？` and, in CJK context, at `! ? …`. Closing quotes and
    brackets stay with the sentence they close. Together the spans hold every non-space character.
    """
    cuts = [m.end() for m in _TERMINATOR.finditer(text) if _ends_sentence(text, m)]
    return _segments(text, 0, len(text), cuts)


@dataclass(frozen=True)
class ChunkedArticle:
    """An article's passages, and the text of each debris paragraph that was joined into one of them.

    The debris texts are the article's paragraphs as written that no longer stand alone: the index embeds them
    only as samples of their language's centering mean (docs/quality.md#how-centering-works), never as passages.
    """

    chunks: list[Chunk]
    debris: list[str]


def chunk_article(text: str, count_tokens: TokenCounter, settings: ChunkerSettings = ChunkerSettings()) -> list[Chunk]:
    """The passages of one article, in order, each within `settings.max_tokens` by `count_tokens`.

    Offsets point into `text`; `Chunk.text == normalize_whitespace(text[start:end])`. Paragraphs that do
    not fit are cut at sentences, then clauses, then spaces, then between characters; nothing is dropped.
    """
    return split_article(text, count_tokens, settings).chunks


def split_article(
    text: str, count_tokens: TokenCounter, settings: ChunkerSettings = ChunkerSettings()
) -> ChunkedArticle:
    """`chunk_article`'s passages, plus the normalised text of each debris paragraph joined into one of them
    (in article order; a section of a single debris paragraph keeps it as its own passage, so it is not listed)."""
    packer = _Packer(text, count_tokens, settings.max_tokens)
    chunks: list[Chunk] = []
    section: str | None = None
    paragraph = 0
    units, joined = _join_debris(text, _paragraphs(text, settings), settings)
    for start, end, heading in units:
        if heading:
            section = normalize_whitespace(text[start:end])
            continue
        for part, (a, b) in enumerate(packer.parts((start, end))):
            chunks.append(Chunk(paragraph, part, a, b, normalize_whitespace(text[a:b]), section))
        paragraph += 1
    return ChunkedArticle(chunks, [normalize_whitespace(text[a:b]) for a, b in joined])


def word_count(text: str) -> float:
    """Words of `text` for the debris rule: letter/digit runs outside CJK, plus half a word per CJK character."""
    cjk = len(_CJK.findall(text))
    return len(_NON_CJK_WORD.findall(_CJK.sub(" ", text))) + cjk / 2


def is_debris(paragraph: str, settings: ChunkerSettings = ChunkerSettings()) -> bool:
    """Whether a paragraph is too small or too much about the article to stand as a passage of its own.

    Captions with a photo credit, bylines and attribution lines (any length up to a short paragraph), and any
    paragraph under `settings.min_words`: alone, such a passage sits near the centre of its language after
    centering and ranks high for almost any short query.
    """
    text = normalize_whitespace(paragraph)
    return word_count(text) < settings.min_words or (len(text) <= _DEBRIS_MAX_CHARS and bool(_DEBRIS.search(text)))


def _join_debris(
    text: str, units: list[tuple[int, int, bool]], settings: ChunkerSettings
) -> tuple[list[tuple[int, int, bool]], list[Span]]:
    """Debris paragraphs (see `is_debris`) joined to the paragraph before them in the same section, else to the
    one after; a section of nothing but debris is one paragraph. Joined spans keep the text between them, so
    offsets still point into the article. Also returns the spans of the debris paragraphs that were joined to
    another one (a debris paragraph left alone is a unit as it stands)."""
    out: list[tuple[int, int, bool]] = []
    debris: list[Span] = []
    pending: tuple[int, int] | None = None  # debris at the start of a section, waiting for its paragraph
    for start, end, heading in units:
        if heading:
            if pending:
                out.append((*pending, False))
                pending = None
            out.append((start, end, True))
        elif not is_debris(text[start:end], settings):
            out.append(((pending or (start, end))[0], end, False))
            pending = None
        else:
            debris.append((start, end))
            if out and not out[-1][2]:
                out[-1] = (out[-1][0], end, False)
            else:
                pending = ((pending or (start, end))[0], end)
    if pending:
        out.append((*pending, False))
    alone = {(start, end) for start, end, heading in out if not heading}
    return out, [span for span in debris if span not in alone]


def _side_is_cjk(text: str, i: int, step: int) -> bool:
    while 0 <= i < len(text) and text[i] in _NEUTRAL:
        i += step
    return 0 <= i < len(text) and _CJK.match(text[i]) is not None


def _ends_sentence(text: str, match: re.Match[str]) -> bool:
    mark, end = match.group()[0], match.end()
    if mark in "。！？":
        return True
    after = _NEXT_VISIBLE.match(text, end)
    if after is None or after.start(1) > end:
        if mark != ".":
            return True
        before = text[max(0, match.start() - 2) : match.start()]
        return not (after and after.group(1).islower()) and not _INITIAL.search(before)
    cjk_before = match.start() > 0 and _CJK.match(text[match.start() - 1]) is not None
    return mark != "." and (cjk_before or _CJK.match(text[end]) is not None)


def _strip(text: str, start: int, end: int) -> Span | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def _segments(text: str, start: int, end: int, cuts: list[int]) -> list[Span]:
    spans = []
    for cut in [*cuts, end]:
        if span := _strip(text, start, cut):
            spans.append(span)
        start = cut
    return spans


def _is_heading(line: str, following: str | None, settings: ChunkerSettings) -> bool:
    """Whether a (stripped) line is a section heading rather than text.

    A heading is short (at most `heading_max_chars`), does not end a sentence, holds no clause
    punctuation (`, ， ; ； : ： 、`), and is either wrapped whole in one pair of quotes or brackets with at
    least four characters inside (“特朗普不是一个很有耐心的人”; a shorter “胜利” is more often a line
    broken mid-sentence), or Latin-script Title Case: no CJK, and more than half of its words of four or
    more letters capitalised ("NATO’s Decline is a Long-Term Trend"). A line whose next line starts in
    lower case or with punctuation that continues a sentence is mid-sentence, not a heading.
    """
    if len(line) > settings.heading_max_chars or _LINE_ENDS_SENTENCE.search(line) or _CLAUSE_MARK.search(line):
        return False
    if _DEBRIS.search(line):  # "By Jane Doe" is Title Case, but a byline
        return False
    if following and (following[0].islower() or following[0] in _RUN_ON_STARTS):
        return False
    closer = _WRAPPERS.get(line[0])
    if closer is not None and len(line) >= 6 and line.endswith(closer) and closer not in line[1:-1]:
        return True
    if _CJK.search(line):
        return False
    words = [w for w in _WORD.findall(line) if sum(c.isalpha() for c in w) >= 4]
    return 2 * sum(w[0].isupper() for w in words) > len(words) > 0


def _paragraphs(text: str, settings: ChunkerSettings) -> list[tuple[int, int, bool]]:
    """`(start, end, is_heading)` of each paragraph and heading, in order, stripped of whitespace.

    Blank lines end paragraphs; so does a line that ends a sentence. Other line breaks join lines into
    one paragraph. A heading stands alone; one with no paragraph after it (at the end, or followed by
    another heading) is kept as an ordinary paragraph so its text is not lost.
    """
    lines: list[Span | None] = []
    pos = 0
    for brk in _LINE_BREAK.finditer(text):
        lines.append(_strip(text, pos, brk.start()))
        pos = brk.end()
    lines.append(_strip(text, pos, len(text)))

    units: list[tuple[int, int, bool]] = []
    current: Span | None = None
    for k, span in enumerate(lines):
        line = text[span[0] : span[1]] if span else ""
        following = lines[k + 1] if k + 1 < len(lines) else None
        heading = span is not None and _is_heading(
            line, text[following[0] : following[1]] if following else None, settings
        )
        if current and (span is None or heading):
            units.append((*current, False))
            current = None
        if span is None:
            continue
        if heading:
            units.append((*span, True))
        else:
            current = (current[0] if current else span[0], span[1])
            if _LINE_ENDS_SENTENCE.search(line):
                units.append((*current, False))
                current = None
    if current:
        units.append((*current, False))
    return [
        (start, end, heading and k + 1 < len(units) and not units[k + 1][2])
        for k, (start, end, heading) in enumerate(units)
    ]


class _Packer:
    """Cuts paragraphs into the fewest greedy parts that fit, with few calls to the token counter."""

    def __init__(self, text: str, count_tokens: TokenCounter, max_tokens: int) -> None:
        self._text = text
        self._count_tokens = count_tokens
        self._max = max_tokens
        self._base: int | None = None

    def parts(self, span: Span, level: int = _SENTENCES) -> list[Span]:
        if level == _SENTENCES and self._count(span) <= self._max:
            return [span]
        units = self._split(span, level)
        while len(units) == 1 and level < _CHARS:
            level += 1
            units = self._split(span, level)
        return self._pack(units, level)

    def _count(self, span: Span) -> int:
        return self._count_tokens(normalize_whitespace(self._text[span[0] : span[1]]))

    def _split(self, span: Span, level: int) -> list[Span]:
        start, end = span
        if level == _SENTENCES:
            return [(start + a, start + b) for a, b in split_sentences(self._text[start:end])]
        if level == _CLAUSES:
            cuts = [m.end() for m in _CLAUSE_CUT.finditer(self._text, start, end)]
            return _segments(self._text, start, end, cuts)
        if level == _WORDS:
            return [m.span() for m in _NON_SPACE.finditer(self._text, start, end)]
        return [(k, k + 1) for k in range(start, end) if not self._text[k].isspace()]

    def _pack(self, units: list[Span], level: int) -> list[Span]:
        # Each unit is counted once; a run's count is estimated as the prompt overhead (the count of "")
        # plus each unit's own tokens, and only the packed run is counted again to confirm it. Characters
        # are not counted one by one: a token rarely covers less than one character, so each counts as 1.
        if self._base is None:
            self._base = self._count_tokens("")
        base = self._base
        tokens = [self._count(u) for u in units] if level < _CHARS else [base + 1] * len(units)
        parts: list[Span] = []
        i = 0
        while i < len(units):
            if tokens[i] > self._max and level < _CHARS:
                parts.extend(self.parts(units[i], level + 1))
                i += 1
                continue
            estimate, j = tokens[i], i + 1
            while j < len(units) and tokens[j] <= self._max:
                estimate += max(1, tokens[j] - base)
                if estimate > self._max:
                    break
                j += 1
            j = self._confirm(units, i, j, known_fit=level < _CHARS)
            parts.append((units[i][0], units[j - 1][1]))
            i = j
        return parts

    def _confirm(self, units: list[Span], i: int, j: int, known_fit: bool) -> int:
        """The largest `k <= j` such that units `i..k-1` fit, by binary search if the estimate was off."""
        if (known_fit and j == i + 1) or self._count((units[i][0], units[j - 1][1])) <= self._max:
            return j
        lo, hi = (i + 1 if known_fit else i), j
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._count((units[i][0], units[mid - 1][1])) <= self._max:
                lo = mid
            else:
                hi = mid
        if lo == i:
            char = self._text[units[i][0] : units[i][1]]
            raise BadInput(
                f"chunker max_tokens={self._max} is too small: the character {char!r} at offset "
                f"{units[i][0]} alone takes {self._count(units[i])} tokens; raise max_tokens."
            )
        return lo
