"""PDF articles: the text of each page in reading order, without running headers, footers and page numbers.

pdfminer.six rather than pypdf: pypdf returns a page's text in content-stream order, which for two-column
layouts and for what browsers print interleaves the columns; pdfminer's layout analysis groups characters into
lines and text boxes by position and orders the boxes column by column, and it decodes CJK fonts (CMaps) itself.

A text box is a paragraph: its lines are de-hyphenated and joined by the chunker's rules (`normalize_whitespace`:
no space between CJK characters). A paragraph cut by a column or page break (it does not end a sentence and the
next box goes on in lower case or CJK) is joined back. Boxes in the top or bottom band of a page that repeat on
other pages (digits aside) or that are only a page number are running headers and footers, and are dropped. The
article's `pages` are the text offsets where each page's text begins, so every passage knows its page.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from search.errors import BadInput
from search.ingest.chunking import normalize_whitespace

# The share of the page height, at the top and at the bottom, where running headers and footers sit.
_BAND = 0.12
# Boxes whose left edges are this close (a share of the page width) are aligned: the same column.
_ALIGNED = 0.02
# Characters of the same line further apart than this many character widths are different boxes (columns):
# pdfminer's default of 2 splits the wide gaps of justified lines into boxes of their own.
_CHAR_MARGIN = 4.0
_PAGE_NUMBER = re.compile(
    r"^[\s\-–—·|]*(?:(?:page|p\.|seite|страница|стр\.)\s*)?\d{1,4}(?:\s*(?:/|of|из|von)\s*\d{1,4})?[\s\-–—·|]*$"
    r"|^第\s*\d{1,4}\s*页(?:\s*/?\s*共\s*\d{1,4}\s*页)?$",
    re.IGNORECASE,
)
# A line ending in a hyphen after a lower-case letter, continued in lower case: a word broken by typesetting.
_HYPHEN_END = re.compile(r"(?<=[^\W\d_])[-\u2010\u00ad]$")
_SENTENCE_END = re.compile(r"[.!?。！？…:：;；][\"'”’»）)」』]*$")
# Presentation forms PDFs carry for ligatures (ﬁ) and Kangxi radicals (⽅ for 方): NFKC folds them. Fonts that
# draw a character and a CJK radical with one glyph make the PDF's text map name the radical (⺠ for 民, ⻥ for 鱼):
# those radicals that are whole characters (Unicode's EquivalentUnifiedIdeograph.txt) are mapped back.
_COMPATIBILITY = re.compile("[\ufb00-\ufb06\u2f00-\u2fdf]")
_RADICALS = str.maketrans(
    "⺟⺠⻄⻅⻆⻉⻋⻓⻔⻘⻙⻚⻛⻜⻝⻢⻣⻤⻥⻦⻧⻨⻩⻬⻮⻰⻳", "母民西见角贝车长门青韦页风飞食马骨鬼鱼鸟卤麦黄齐齿龙龟"
)


@dataclass
class PdfText:
    """An article read from a PDF: its text, the offsets where each page begins, and the document's metadata."""

    text: str
    pages: list[int] = field(default_factory=list)
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Box:
    page: int
    top: float  # from the top of the page, as a share of its height
    bottom: float
    text: str  # one paragraph, lines joined
    left: float = 0.0  # as a share of the page width
    right: float = 1.0


def read_pdf(data: bytes) -> PdfText:
    """The article text of a PDF; an encrypted, damaged or text-less PDF raises BadInput saying why (the
    caller names the file)."""
    import io

    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LAParams, LTTextBox, LTTextLine
    from pdfminer.pdfdocument import PDFDocument, PDFEncryptionError, PDFPasswordIncorrect
    from pdfminer.pdfparser import PDFParser, PDFSyntaxError
    from pdfminer.psexceptions import PSException

    # pdfminer warns about every font it cannot measure (Chromium's embedded fonts among them): not our problem.
    logging.getLogger("pdfminer").setLevel(logging.ERROR)
    boxes: list[_Box] = []
    try:
        document = PDFDocument(PDFParser(io.BytesIO(data)))
        info = document.info[0] if document.info else {}
        for number, page in enumerate(extract_pages(io.BytesIO(data), laparams=LAParams(char_margin=_CHAR_MARGIN))):
            height, width = page.height or 1.0, page.width or 1.0
            found = [
                _Box(number + 1, (height - item.y1) / height, (height - item.y0) / height, text, item.x0 / width,
                     item.x1 / width)
                for item in page
                if isinstance(item, LTTextBox) and (text := _paragraph(_box_lines(item, LTTextLine)))
            ]  # fmt: skip
            boxes.extend(_reading_order(found))
    except (PDFEncryptionError, PDFPasswordIncorrect):
        raise BadInput("encrypted PDF; save an unprotected copy (print to PDF) to index it") from None
    except (PDFSyntaxError, PSException, ValueError, KeyError, TypeError) as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise BadInput(f"unreadable PDF ({reason}); check that it opens in a PDF viewer") from None
    boxes = _without_running_lines(boxes)
    if not boxes:
        raise BadInput("no text in the PDF (a scan?); run OCR on it first to index it")
    text, pages = _join(boxes)
    metadata = _metadata(info)
    return PdfText(text, pages, metadata.pop("title", None), metadata)


def _box_lines(box: Any, line_type: type) -> list[str]:
    """The lines of a text box, top to bottom. pdfminer cuts a justified line at its widest gaps into pieces
    that it may list out of order ("salmon" before "describes"): pieces on the same baseline are one line, left
    to right."""
    pieces: list[Any] = sorted((p for p in box if isinstance(p, line_type)), key=lambda p: -(p.y0 + p.y1))
    rows: list[list[Any]] = []
    for piece in pieces:
        row = rows[-1] if rows else None
        if row and abs((row[0].y0 + row[0].y1) - (piece.y0 + piece.y1)) < min(row[0].height, piece.height):
            row.append(piece)
        else:
            rows.append([piece])
    return [" ".join(p.get_text().strip() for p in sorted(row, key=lambda p: p.x0)) for row in rows]


def _reading_order(boxes: list[_Box]) -> list[_Box]:
    """A page's boxes in reading order: column by column, left to right, each top to bottom.

    Columns are left edges shared by two or more boxes. A box that reaches into the next column (a title or
    a running header across the columns) ends the columns above it and starts a new band.
    """
    edges = Counter(round(b.left / _ALIGNED) for b in boxes)
    starts = sorted(k * _ALIGNED for k, n in edges.items() if n >= 2) or [0.0]

    def column(b: _Box) -> int:
        return max((k for k, start in enumerate(starts) if b.left >= start - _ALIGNED), default=0)

    def spans(b: _Box) -> bool:
        k = column(b)
        return k + 1 < len(starts) and b.right > starts[k + 1]

    ordered: list[_Box] = []
    band: list[_Box] = []
    for box in sorted(boxes, key=lambda b: b.top):
        if spans(box):
            ordered.extend(sorted(band, key=lambda b: (column(b), b.top)))
            ordered.append(box)
            band = []
        else:
            band.append(box)
    return ordered + sorted(band, key=lambda b: (column(b), b.top))


def _paragraph(raw_lines: list[str]) -> str:
    """One text box as one line: compatibility forms folded, broken words rejoined, lines joined."""
    raw = "\n".join(raw_lines).replace("\0", "")
    raw = _COMPATIBILITY.sub(lambda m: unicodedata.normalize("NFKC", m.group()), raw).translate(_RADICALS)
    lines = [line.strip() for line in raw.split("\n") if line.strip()]
    out: list[str] = []
    for line in lines:
        if out and _HYPHEN_END.search(out[-1]) and line[0].islower():
            out[-1] = out[-1][:-1] + line
        else:
            out.append(line)
    return normalize_whitespace("\n".join(out))


def _shape(text: str) -> str:
    return re.sub(r"\d+", "#", " ".join(text.lower().split()))


def _without_running_lines(boxes: list[_Box]) -> list[_Box]:
    """Drop page numbers and the lines repeated in the top or bottom band of several pages."""
    in_band = [b for b in boxes if b.top <= _BAND or b.bottom >= 1 - _BAND]
    pages = len({b.page for b in boxes})
    seen = Counter(_shape(b.text) for b in {(b.page, _shape(b.text)): b for b in in_band}.values())
    repeated = {shape for shape, n in seen.items() if n >= 2 and n * 2 >= pages}

    def running(b: _Box) -> bool:
        return (b.top <= _BAND or b.bottom >= 1 - _BAND) and (
            _shape(b.text) in repeated or bool(_PAGE_NUMBER.match(b.text))
        )

    return [b for b in boxes if not running(b)]


def _continues(before: str, after: str) -> bool:
    """Whether `after` goes on with the paragraph `before` (cut by a column or page break)."""
    if _SENTENCE_END.search(before):
        return False
    first = after[0]
    return first.islower() or (normalize_whitespace(f"{before[-1]}\n{first}") == before[-1] + first)


def _join(boxes: list[_Box]) -> tuple[str, list[int]]:
    """The article text (paragraphs separated by blank lines) and the offset where each page begins."""
    paragraphs: list[str] = []
    done = 0  # length of the text before the last paragraph
    pages: list[int] = []
    for box in boxes:
        if paragraphs and _continues(paragraphs[-1], box.text):
            paragraphs[-1] = normalize_whitespace(f"{paragraphs[-1]}\n{box.text}")
        else:
            if paragraphs:
                done += len(paragraphs[-1]) + 2
            paragraphs.append(box.text)
        while len(pages) < box.page:  # a page without text starts where the next text does
            pages.append(done + len(paragraphs[-1]) - len(box.text))
    return "\n\n".join(paragraphs), pages


def _metadata(info: dict[str, Any]) -> dict[str, Any]:
    """Title, author and creation date (as `published`, YYYY-MM-DD) from the document information."""
    out: dict[str, Any] = {}
    for key, name in (("Title", "title"), ("Author", "author"), ("Subject", "description")):
        if value := _string(info.get(key)):
            out[name] = value
    created = _string(info.get("CreationDate")) or ""
    if match := re.match(r"(?:D:)?(\d{4})(\d{2})(\d{2})", created):
        out["published"] = "-".join(match.groups())
    return out


def _string(value: Any) -> str | None:
    """A PDF string (bytes in PDFDocEncoding or UTF-16 with a BOM, or a resolved object) as text, or None."""
    from pdfminer.pdftypes import resolve1
    from pdfminer.utils import decode_text

    value = resolve1(value)
    if isinstance(value, bytes):
        value = decode_text(value)
    if not isinstance(value, str):
        return None
    return " ".join(value.replace("\0", "").split()) or None
