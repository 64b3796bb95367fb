"""Reading articles from files and folders (txt, md, html, jsonl); problems name the file and line."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bs4 import BeautifulSoup, CData, NavigableString, PageElement, Tag

from search.errors import BadInput
from search.records import Article

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".jsonl")

_BINARY_SNIFF_BYTES = 8192
_NOT_UTF8 = "not valid UTF-8; undecodable bytes replaced with U+FFFD"
_MD_FENCE = re.compile(r"^ {0,3}(```|~~~)")
# ATX heading; a closing run of #'s only counts after a space, so "# C#" keeps its '#'.
_MD_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
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


@dataclass(frozen=True)
class Skipped:
    """A file or line that was not read (or read with a loss), and why; the build summary lists these."""

    path: str
    line: int | None
    reason: str


@dataclass
class CorpusReport:
    """What `read_corpus` found: the articles in input order, and everything it had to leave out."""

    articles: list[Article] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def read_corpus(paths: Sequence[Path | str]) -> CorpusReport:
    """Read every supported file under `paths`; bad files and lines are reported, not fatal.

    Raises BadInput only for a path that cannot be used at all: missing, or a named file of a type not read.
    """
    report = CorpusReport()
    seen: dict[str, str] = {}
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files: Iterator[Path] = _walk(path, report.skipped)
            root = path
        elif path.is_file():
            _check_suffix(path)
            files, root = iter([path]), path.parent
        elif path.exists():
            raise BadInput(f"{path}: not a regular file or folder; name a file or a folder of files")
        else:
            raise BadInput(f"{path}: no such file or folder")
        for file in files:
            found = _read(file, root, report.skipped)
            report.articles.extend(_drop_duplicates(found, file, seen, report.skipped))
    return report


def read_file(path: Path, root: Path, skipped: list[Skipped] | None = None) -> list[Article]:
    """Read the articles in one file; ids are relative to `root` (the file's name if it is not under it).

    Without `skipped`, any problem raises BadInput naming the file (and line); with it, problems are
    appended there and the readable articles are still returned.
    """
    _check_suffix(path)
    return _drop_duplicates(_read(path, root, skipped), path, {}, skipped)


def _walk(folder: Path, skipped: list[Skipped]) -> Iterator[Path]:
    """Supported files under `folder`, depth first in name order; hidden names are ignored."""
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        skipped.append(Skipped(str(folder), None, f"cannot list: {exc.strerror}; check its permissions"))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_symlink() and entry.is_dir():
            # Not followed: a link back up the tree would walk forever.
            skipped.append(Skipped(str(entry), None, "symlinked folder not followed; name it to include it"))
        elif entry.is_dir():
            yield from _walk(entry, skipped)
        elif not entry.is_file():
            skipped.append(Skipped(str(entry), None, "not a regular file"))
        elif entry.suffix.lower() not in SUPPORTED_SUFFIXES:
            skipped.append(Skipped(str(entry), None, _unsupported(entry)))
        else:
            yield entry


def _check_suffix(path: Path) -> None:
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise BadInput(f"{path}: {_unsupported(path)}")


def _unsupported(path: Path) -> str:
    return f"unsupported file type {path.suffix or '(no suffix)'}; supported: {', '.join(SUPPORTED_SUFFIXES)}"


def _note(notes: list[Skipped] | None, path: Path, line: int | None, reason: str, strict_reason: str = "") -> None:
    """Record a problem, or raise it when the caller asked for strict reading (no list to record into)."""
    if notes is None:
        raise BadInput(f"{path}: {strict_reason or reason}")
    notes.append(Skipped(str(path), line, reason))


def _drop_duplicates(
    found: list[tuple[int | None, Article]], path: Path, seen: dict[str, str], notes: list[Skipped] | None
) -> list[Article]:
    kept = []
    for line, article in found:
        if article.id in seen:
            _note(notes, path, line, f'duplicate article id "{article.id}" (first seen in {seen[article.id]})')
        else:
            seen[article.id] = article.source
            kept.append(article)
    return kept


def _read(path: Path, root: Path, notes: list[Skipped] | None) -> list[tuple[int | None, Article]]:
    """The articles in one file, each with its line number (JSONL only); file-level problems go to `notes`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        _note(notes, path, None, f"cannot read: {exc.strerror}; check that it exists and is readable")
        return []
    if not data.strip():
        _note(notes, path, None, "empty file")
        return []
    if b"\0" in data[:_BINARY_SNIFF_BYTES]:
        _note(notes, path, None, "binary file")
        return []
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        rel = path.name
    try:
        text, utf8 = data.decode("utf-8"), True
    except UnicodeDecodeError:
        text, utf8 = data.decode("utf-8", errors="replace"), False
    suffix = path.suffix.lower()
    html = suffix in (".html", ".htm")
    if html:
        title, text, replaced = _parse_html(data, utf8)
    else:
        title, text, replaced = None, _normalise(text), not utf8
    if replaced:
        _note(notes, path, None, _NOT_UTF8, "not valid UTF-8; re-save it as UTF-8")
    if not text.strip():
        _note(notes, path, None, "no visible text in the HTML body" if html else "empty file")
        return []
    if suffix == ".jsonl":
        return _parse_jsonl(text, rel, path, notes)
    if suffix in (".md", ".markdown"):
        title = _markdown_title(text)
    return [(None, Article(rel, title or path.stem, text, str(path)))]


def _normalise(text: str) -> str:
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def _markdown_title(text: str) -> str | None:
    """The first ATX heading outside fenced code (where '# ...' is usually a shell comment)."""
    in_fence = False
    for line in text.split("\n"):
        if _MD_FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (match := _MD_HEADING.match(line)) and match.group(1).strip():
            return match.group(1).strip()
    return None


def _parse_jsonl(text: str, rel: str, path: Path, notes: list[Skipped] | None) -> list[tuple[int | None, Article]]:
    found: list[tuple[int | None, Article]] = []
    # Split on "\n" only: str.splitlines would also break at U+2028 etc., which JSON strings may hold raw.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            found.append((number, _jsonl_article(line, number, rel, path)))
        except _BadLine as exc:
            _note(notes, path, number, f"line {number}: {exc}")
    return found


def _jsonl_article(line: str, number: int, rel: str, path: Path) -> Article:
    """One JSONL line as an article; _BadLine says what is wrong with the line and how to fix it."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _BadLine(f"not valid JSON ({exc.msg} at column {exc.colno}); each line must be one JSON object") from None
    except (ValueError, RecursionError) as exc:  # e.g. a 5,000-digit number, or arrays nested 10,000 deep
        raise _BadLine(f"JSON too large to read ({exc}); each line must be one JSON object") from None
    if not isinstance(obj, dict):
        raise _BadLine(f'expected a JSON object, got {_json_type(obj)}; each line needs {{"text": "..."}}')
    text = obj.get("text")
    if text is None:
        raise _BadLine('missing "text" field; each line needs {"text": "..."}')
    if not isinstance(text, str):
        raise _BadLine(f'"text" must be a string, got {_json_type(text)}')
    if not text.strip():
        raise _BadLine('"text" is empty; give each line some text or remove the line')
    # null is treated as absent: exporters such as pandas write null for missing values.
    raw_id = obj.get("id")
    if raw_id is None:
        article_id = f"{rel}#{number}"
    elif isinstance(raw_id, str | int) and not isinstance(raw_id, bool):
        article_id = str(raw_id)
        if not article_id.strip():
            raise _BadLine('"id" is empty; give a non-empty id or leave the field out')
    else:
        raise _BadLine(f'"id" must be a string or an integer, got {_json_type(raw_id)}')
    title = obj.get("title")
    if title is not None and not isinstance(title, str):
        raise _BadLine(f'"title" must be a string, got {_json_type(title)}')
    metadata = {key: value for key, value in obj.items() if key not in ("text", "id", "title")}
    return Article(article_id, title or "", _normalise(text), str(path), metadata)


class _BadLine(Exception):
    """A JSONL line that cannot become an article; the message is the reason, without the line number."""


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _parse_html(data: bytes, utf8: bool) -> tuple[str | None, str, bool]:
    """(title, visible body text, whether bytes were replaced) of an HTML document, in its declared charset.

    `utf8` says whether `data` is valid UTF-8: lxml decodes undeclared non-UTF-8 bytes as UTF-8 with U+FFFD
    without bs4 noticing, so `contains_replacement_characters` alone would miss them.
    """
    if len(data) <= 256 and b"<" not in data:
        # bs4 warns that such short markup "looks like a filename"; a trailing newline is insignificant in
        # HTML and avoids the spurious warning without touching the process-wide warning filters.
        data += b"\n"
    soup = BeautifulSoup(data, "lxml")
    encoding = (soup.original_encoding or "utf-8").lower().replace("_", "-")
    replaced = soup.contains_replacement_characters or (encoding in ("utf-8", "utf8") and not utf8)
    title = None
    for tag_name in ("title", "h1"):
        tag = soup.find(tag_name)
        if isinstance(tag, Tag) and (words := tag.get_text().split()):
            title = " ".join(words)
            break
    root = soup.body if soup.body is not None else soup
    return title, _normalise(_visible_text(root)), replaced


def _visible_text(root: Tag) -> str:
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
