"""Text of HTML: the main content of a page (trafilatura), or all visible text laid out as a browser would."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from bs4 import CData, NavigableString, PageElement, Tag

# HTML collapses these, but not U+00A0 (&nbsp;), which `\s` would also match.
_HTML_SPACE = re.compile(r"[ \t\n\r\f]+")
_HTML_HIDDEN = frozenset({"script", "style", "noscript", "template", "head"})
_HTML_CELLS = frozenset({"td", "th"})
# Value = newlines that separate the element from its neighbours: 2 = own paragraph, 1 = own line.
_HTML_BLOCKS = {
    **dict.fromkeys(("li", "tr", "dt", "dd", "option", "caption"), 1),
    **dict.fromkeys(
        ("p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "blockquote", "pre",
         "table", "ul", "ol", "dl", "header", "footer", "nav", "aside", "main", "figure", "figcaption",
         "form", "fieldset", "address", "hr", "details", "summary"),
        2,
    ),
}  # fmt: skip
_PRE_END = -1
# "main": the page's story through trafilatura; "visible": every visible text, as a browser lays it out.
HtmlReader = Literal["main", "visible"]


def visible_text(root: Tag) -> str:
    """Text as a browser would lay it out: whitespace collapsed, blocks on their own lines or paragraphs.

    Iterative rather than recursive, so deeply nested markup cannot exhaust the call stack.
    """
    parts: list[str] = []
    pending = 0  # newlines owed before the next text: the widest block boundary crossed since the last text
    trailing_space = False
    in_pre = 0
    stack: list[PageElement | int] = list(reversed(root.contents))
    while stack:
        item = stack.pop()
        if isinstance(item, int):
            if item == _PRE_END:
                in_pre -= 1
            else:
                pending = max(pending, item)
            continue
        if isinstance(item, Tag):
            name = item.name
            if name in _HTML_HIDDEN or item.has_attr("hidden"):
                continue
            if name == "br":
                pending = max(pending, 1)
                continue
            if level := _HTML_BLOCKS.get(name, 0):
                pending = max(pending, level)
                stack.append(level)
            if name in _HTML_CELLS:
                stack.append(NavigableString(" "))
            if name == "pre":
                in_pre += 1
                stack.append(_PRE_END)
            stack.extend(reversed(item.contents))
            continue
        # Comments, doctypes and processing instructions are NavigableString subclasses, never shown.
        if type(item) not in (NavigableString, CData):
            continue
        text = str(item)
        if in_pre:
            if pending or not parts:
                text = text.lstrip("\n")  # as browsers drop the newline right after <pre>
        else:
            text = _HTML_SPACE.sub(" ", text)
            if pending or not parts or trailing_space:
                text = text.lstrip(" ")
        if not text:
            continue
        if parts and pending:
            parts[-1] = parts[-1].rstrip(" \t\n")
            parts.append("\n" * pending)
        pending = 0
        parts.append(text)
        trailing_space = not in_pre and text.endswith(" ")
    return "".join(parts).rstrip()


@dataclass(frozen=True)
class Page:
    """A web page's story as trafilatura finds it: paragraphs (blank-line separated), and what it says about itself."""

    text: str
    title: str | None
    metadata: dict[str, str]


def main_text(html: str) -> Page | None:
    """The main content of a news or blog page (trafilatura), or None when extraction finds no text.

    Navigation, cookie banners, share buttons, related-article lists, comments and footers are dropped; each
    block of the story (paragraph, heading, list item) becomes one paragraph; the title line is left out (it is
    the article's title). trafilatura drops figure captions; each is put back at the end of the story paragraph
    before its figure (else the one after it), so it stays searchable without standing alone. The byline's
    author, the date (YYYY-MM-DD, into `published`), the canonical URL and the site name go to `metadata`.
    """
    import trafilatura

    doc = trafilatura.bare_extraction(
        html, include_comments=False, include_tables=True, include_images=False, with_metadata=True
    )
    if not isinstance(doc, trafilatura.settings.Document):  # None when nothing is found; a dict only if asked
        return None
    lines = [" ".join(line.split()) for line in (doc.text or "").split("\n")]
    lines = [line for line in lines if line]
    if not lines:
        return None
    title = " ".join(doc.title.split()) if doc.title else None
    if title and lines[0] == title:
        lines = lines[1:]
    _restore_captions(html, lines)
    fields = {"author": doc.author, "published": doc.date, "url": doc.url, "site": doc.sitename}
    metadata = {key: " ".join(str(value).split()) for key, value in fields.items() if value}
    return Page("\n\n".join(lines), title, metadata) if lines else None


def _restore_captions(html: str, lines: list[str]) -> None:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "lxml")
    where = {line: k for k, line in enumerate(lines)}
    for caption in soup.find_all("figcaption"):
        text = " ".join(caption.get_text(" ").split())
        if not text or any(text in line for line in lines):
            continue
        near = [*caption.find_all_previous("p", limit=20), *caption.find_all_next("p", limit=20)]
        k = next((where[t] for p in near if (t := " ".join(p.get_text(" ").split())) in where), None)
        if k is not None:
            lines[k] = f"{lines[k]} {text}"
            where = {line: j for j, line in enumerate(lines)}
