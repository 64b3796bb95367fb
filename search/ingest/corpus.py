"""Reading articles from files and folders (txt, md, html, pdf, jsonl); problems name the file and line."""

from __future__ import annotations

import codecs
import errno
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import charset_normalizer
from bs4 import BeautifulSoup, Tag
from bs4.dammit import EncodingDetector

from search.errors import BadInput
from search.ingest.html import HtmlReader, main_text, visible_text
from search.ingest.pdf import read_pdf
from search.ingest.unicode import check_text, printable
from search.records import Article

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".jsonl", ".pdf")
DEFAULT_MAX_FILE_BYTES = 50_000_000
# A line (a paragraph without a break) longer than this is kept, split into passages like any other, and
# reported: it is more often an embedded blob, minified data or a lost line-ending convention than prose.
MAX_LINE_CHARS = 1_000_000

_BINARY_SNIFF_BYTES = 8192
_DETECT_BYTES = 1 << 20
# Below this many non-ASCII bytes an encoding guess without a recognised language is a coin toss.
_DETECT_MIN_BYTES = 32
# UTF-16 is full of NUL bytes, but with a byte order mark it is text. UTF-32 first: its LE mark starts with UTF-16's.
_WIDE = dict.fromkeys((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE), "utf-32") | dict.fromkeys(
    (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE), "utf-16"
)
_NOT_UTF8 = "not valid UTF-8; undecodable bytes replaced with U+FFFD"
_MD_FENCE = re.compile(r"^ {0,3}(```|~~~)")
# ATX heading; a closing run of #'s only counts after a space, so "# C#" keeps its '#'.
_MD_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_Found = list[tuple[int | None, Article]]  # articles of one file, with their line numbers (JSONL only)


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


def read_corpus(
    paths: Sequence[Path | str], max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, *, html_reader: HtmlReader = "main"
) -> CorpusReport:
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
        elif path.is_symlink():
            raise BadInput(f"{path}: {_bad_link(path)}")
        elif path.exists():
            raise BadInput(f"{path}: not a regular file or folder; name a file or a folder of files")
        else:
            raise BadInput(f"{path}: no such file or folder")
        for file in files:
            try:
                found = _read(file, root, report.skipped, max_file_bytes, html_reader)
            except Exception as exc:  # one unreadable file must not end a build of thousands
                log.debug("reading %s failed", file, exc_info=True)
                reason = f"could not be read ({type(exc).__name__}: {exc}); please report this file"
                report.skipped.append(Skipped(str(file), None, reason))
                continue
            report.articles.extend(_drop_duplicates(found, file, seen, report.skipped))
    return report


def read_file(
    path: Path,
    root: Path,
    skipped: list[Skipped] | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    html_reader: HtmlReader = "main",
) -> list[Article]:
    """Read the articles in one file; ids are relative to `root` (the file's name if it is not under it).

    Without `skipped`, any problem raises BadInput naming the file (and line); with it, problems are
    appended there and the readable articles are still returned.
    """
    _check_suffix(path)
    return _drop_duplicates(_read(path, root, skipped, max_file_bytes, html_reader), path, {}, skipped)


def describe_problems(skipped: Sequence[Skipped], limit: int = 5) -> str:
    """The first `limit` problems on one line, e.g. for a build that `--strict` refuses."""
    shown = "; ".join(f"{s.path}{f':{s.line}' if s.line else ''}: {s.reason}" for s in skipped[:limit])
    more = f"; and {len(skipped) - limit} more" if len(skipped) > limit else ""
    return f"{len(skipped)} problem{'s' if len(skipped) != 1 else ''} in the input: {shown}{more}"


def _walk(folder: Path, skipped: list[Skipped]) -> Iterator[Path]:
    """Supported files under `folder`, depth first in name order; hidden names are ignored.

    Symlinked folders are not followed and a folder reached twice (a mount loop) is read once, so the walk
    ends; an explicit stack keeps deep nesting off the call stack.
    """
    visited: set[tuple[int, int]] = set()
    stack = [iter([folder])]
    while stack:
        entry = next(stack[-1], None)
        reason = None
        if entry is None:
            stack.pop()
        elif entry.name.startswith(".") and entry is not folder:
            continue
        elif entry.is_symlink() and not entry.exists():
            reason = _bad_link(entry)
        elif entry.is_symlink() and entry.is_dir() and entry is not folder:  # a link up the tree: endless walk
            reason = "symlinked folder not followed; name it to include it"
        elif entry.is_dir():
            try:
                st = entry.stat()
                if (st.st_dev, st.st_ino) in visited:
                    reason = "folder already read (a mount or link loop); not read again"
                else:
                    visited.add((st.st_dev, st.st_ino))
                    stack.append(iter(sorted(entry.iterdir(), key=lambda p: p.name)))
            except OSError as exc:
                reason = f"cannot list: {exc.strerror}; check its permissions"
        elif not entry.is_file():
            reason = "not a regular file"
        elif entry.suffix.lower() not in SUPPORTED_SUFFIXES:
            reason = _unsupported(entry)
        else:
            yield entry
        if reason:
            skipped.append(Skipped(str(entry), None, reason))


def _bad_link(path: Path) -> str:
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (it leads back to itself); fix or remove the link"
    return f"broken symbolic link to {os.readlink(path)} (no such file); fix or remove the link"


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


def _drop_duplicates(found: _Found, path: Path, seen: dict[str, str], notes: list[Skipped] | None) -> list[Article]:
    kept = []
    for line, article in found:
        if article.id in seen:
            _note(notes, path, line, f'duplicate article id "{article.id}" (first seen in {seen[article.id]})')
        else:
            seen[article.id] = article.source
            kept.append(article)
    return kept


def _read(path: Path, root: Path, notes: list[Skipped] | None, cap: int, html_reader: HtmlReader = "main") -> _Found:
    """The articles in one file, each with its line number (JSONL only); file-level problems go to `notes`."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:  # at most cap + 1 bytes, whatever stat said: files grow, /proc lies
            data = f.read(cap + 1) if size <= cap else b""
    except OSError as exc:
        _note(notes, path, None, f"cannot read: {exc.strerror}; check that it exists and is readable")
        return []
    if max(size, len(data)) > cap:
        _note(notes, path, None, f"{_size(max(size, len(data)))}, over the {_size(cap)} size cap; split it")
        return []
    if not data.strip():
        _note(notes, path, None, "empty file")
        return []
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        rel = path.name
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return _repaired(_read_pdf(data, rel, path, notes), path, notes)
    if b"\0" in data[:_BINARY_SNIFF_BYTES] and not data.startswith(tuple(_WIDE)):
        _note(notes, path, None, "binary file")
        return []
    html = suffix in (".html", ".htm")
    metadata: dict[str, Any] = {}
    if html:
        title, text, encoding, metadata = _parse_html(data, html_reader)
    else:
        title, (text, encoding) = None, _decode(data)
        text = _normalise(text)
    if encoding == "replaced":
        _note(notes, path, None, _NOT_UTF8, "not valid UTF-8; re-save it as UTF-8")
    elif encoding:
        reason = f"not valid UTF-8; decoded as {encoding} (detected); re-save it as UTF-8 to be sure"
        _note(notes, path, None, reason, f"not valid UTF-8 (it looks like {encoding}); re-save it as UTF-8")
    if not text.strip():
        _note(notes, path, None, "no visible text in the HTML body" if html else "empty file")
        return []
    if suffix == ".jsonl":
        return _repaired(_parse_jsonl(text, rel, path, notes), path, notes)
    if suffix in (".md", ".markdown"):
        title = _markdown_title(text)
    return _repaired([(None, Article(rel, title or path.stem, text, str(path), metadata))], path, notes)


def _read_pdf(data: bytes, rel: str, path: Path, notes: list[Skipped] | None) -> _Found:
    try:
        pdf = read_pdf(data)
    except BadInput as exc:
        _note(notes, path, None, str(exc))
        return []
    return [(None, Article(rel, pdf.title or path.stem, pdf.text, str(path), pdf.metadata, tuple(pdf.pages)))]


def _size(n: int) -> str:
    return f"{n / 1e6:.3g} MB" if n >= 1e6 else f"{n:,} bytes"


def _decode(data: bytes) -> tuple[str, str | None]:
    """(text, how it was decoded if not plainly: a detected encoding, or "replaced" for U+FFFD repairs)."""
    try:
        return data.decode(next((c for bom, c in _WIDE.items() if data.startswith(bom)), "utf-8")), None
    except UnicodeDecodeError:
        replaced = data.decode("utf-8", errors="replace")
    bad = replaced.count("\ufffd")
    # Valid multibyte UTF-8 outnumbering the damage means UTF-8 with a few bad bytes, not a legacy encoding.
    if len(replaced) - len(replaced.encode("ascii", "ignore")) - bad < bad and (guess := _detect(data)):
        try:
            return data.decode(guess), guess
        except (UnicodeDecodeError, LookupError):
            pass
    return replaced, "replaced"


def _detect(data: bytes) -> str | None:
    """A legacy encoding (gb18030, cp1251, shift_jis ...) that charset-normalizer is confident of, or None."""
    sample = data[:_DETECT_BYTES]
    if len(data) > _DETECT_BYTES and b"\n" in sample:
        sample = sample[: sample.rindex(b"\n")]  # do not cut a multibyte character in two
    best = charset_normalizer.from_bytes(sample).best()
    if best is None or best.encoding in ("utf_8", "ascii"):
        return None
    non_ascii = len(sample) - len(sample.decode("ascii", "ignore"))
    return best.encoding if best.coherence > 0 or non_ascii >= _DETECT_MIN_BYTES else None


def _repaired(found: _Found, path: Path, notes: list[Skipped] | None) -> _Found:
    """Remove NUL characters (reported); report, but keep, lines over MAX_LINE_CHARS."""
    out = []
    for line, article in found:
        at = f"line {line}: " if line else ""
        if nuls := article.text.count("\0"):
            article = replace(article, text=article.text.replace("\0", ""), title=article.title.replace("\0", ""))
            if not article.text.strip():
                _note(notes, path, line, f"{at}nothing but NUL characters; left out")
                continue
            _note(notes, path, line, f"{at}{nuls} NUL character{'s' if nuls > 1 else ''} removed")
        if (longest := max(map(len, article.text.split("\n")))) > MAX_LINE_CHARS:
            reason = f"a line of {longest:,} characters (over {MAX_LINE_CHARS:,}); kept, but check it is not a blob"
            _note(notes, path, line, at + reason)
        out.append((line, article))
    return out


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


def _parse_jsonl(text: str, rel: str, path: Path, notes: list[Skipped] | None) -> _Found:
    found: _Found = []
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
    try:
        for key, value in obj.items():
            check_text("a field name", key)
            check_text(f'"{key}"', value)
    except BadInput as exc:
        raise _BadLine(printable(str(exc))) from None
    return Article(article_id, title or "", _normalise(text), str(path), metadata)


class _BadLine(Exception):
    """A JSONL line that cannot become an article; the message is the reason, without the line number."""


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _parse_html(data: bytes, reader: HtmlReader = "main") -> tuple[str | None, str, str | None, dict[str, Any]]:
    """(title, text, how it was decoded, as `_decode` says, metadata) of an HTML document.

    The text is the page's main content (`html.main_text`) with its title, author, date, URL and site name,
    or, with reader "visible" or when extraction finds nothing, all visible body text.

    As in browsers, a declared charset wins; undeclared, it is UTF-8 or else the detected encoding.
    """
    if len(data) <= 256 and b"<" not in data:
        # bs4 warns that such short markup "looks like a filename"; a trailing newline is insignificant in
        # HTML and avoids the spurious warning without touching the process-wide warning filters.
        data += b"\n"
    if EncodingDetector.find_declared_encoding(data, is_html=True):
        soup = BeautifulSoup(data, "lxml")
        how = "replaced" if soup.contains_replacement_characters else None
    else:
        text, how = _decode(data)
        soup = BeautifulSoup(text.removeprefix("\ufeff"), "lxml")
    title = None
    for tag_name in ("title", "h1"):
        tag = soup.find(tag_name)
        if isinstance(tag, Tag) and (words := tag.get_text().split()):
            title = " ".join(words)
            break
    if reader == "main" and (page := main_text(str(soup))) is not None:
        return page.title or title, page.text, how, page.metadata
    root = soup.body if soup.body is not None else soup
    return title, _normalise(visible_text(root)), how, {}
