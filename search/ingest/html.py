"""The visible text of parsed HTML, laid out as a browser would: blocks as lines and paragraphs."""

from __future__ import annotations

import re

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
