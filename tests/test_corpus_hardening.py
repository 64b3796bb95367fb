"""Hardening of the reader: every kind of bad input is reported (or repaired and reported) and the read goes on."""

from __future__ import annotations

import codecs
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search.errors import BadInput
from search.ingest.corpus import (
    DEFAULT_MAX_FILE_BYTES,
    MAX_LINE_CHARS,
    SUPPORTED_SUFFIXES,
    Skipped,
    describe_problems,
    read_corpus,
    read_file,
)
from tests.helpers import jsonl, write


def test_a_file_over_the_size_cap_is_skipped_and_the_rest_read(tmp_path: Path) -> None:
    big = write(tmp_path / "big.txt", "x" * 2001)
    write(tmp_path / "small.txt", "fits")

    report = read_corpus([tmp_path], max_file_bytes=2000)

    assert [a.id for a in report.articles] == ["small.txt"]
    assert report.skipped == [Skipped(str(big), None, "2,001 bytes, over the 2,000 bytes size cap; split it")]
    with pytest.raises(BadInput, match="big.txt: 2,001 bytes, over the 2,000 bytes size cap"):
        read_file(big, tmp_path, max_file_bytes=2000)


def test_the_default_cap_is_50_mb(tmp_path: Path) -> None:
    huge = tmp_path / "huge.txt"
    with huge.open("wb") as f:  # sparse: 60 MB on paper, nothing on disk, and never read
        f.truncate(60_000_000)

    assert DEFAULT_MAX_FILE_BYTES == 50_000_000
    assert read_corpus([huge]).skipped == [Skipped(str(huge), None, "60 MB, over the 50 MB size cap; split it")]


def test_a_line_over_a_million_characters_is_kept_and_reported(tmp_path: Path) -> None:
    line = "word " * 240_000
    path = write(tmp_path / "blob.md", f"# Title\n\n{line}\n")
    rows = write(tmp_path / "rows.jsonl", jsonl({"text": "short"}, {"text": line}))

    report = read_corpus([tmp_path])

    assert [a.text.count("word") for a in report.articles] == [240_000, 0, 240_000]
    reason = f"a line of {len(line):,} characters (over {MAX_LINE_CHARS:,}); kept, but check it is not a blob"
    assert report.skipped == [Skipped(str(path), None, reason), Skipped(str(rows), 2, f"line 2: {reason}")]


@pytest.mark.parametrize(
    ("name", "text", "codec", "detected"),
    [
        ("zh.txt", "普京如何看待俄美关系？他说两国关系正处于低谷，但仍有改善的空间。\n北约是冷战的产物。\n", "gbk",
         ("gb18030", "gbk", "gb2312")),
        ("ru.md", "# Кто такой Ушаков?\n\nЧто Путин думает об отношениях России и США?\n", "windows-1251", ("cp1251",)),
        ("ja.txt", "日本語のテキストです。東京は日本の首都です。\n", "shift_jis", ("cp932", "shift_jis")),
        ("fr.txt", "Le café est très bon à Paris, et les crêpes sont délicieuses. Où est la gare?\n", "latin-1",
         ("cp1252", "latin_1", "iso8859_15")),
    ],
)  # fmt: skip
def test_legacy_encodings_are_detected_and_reported(
    tmp_path: Path, name: str, text: str, codec: str, detected: tuple[str, ...]
) -> None:
    path = write(tmp_path / name, text.encode(codec))

    report = read_corpus([path])

    assert report.articles[0].text == text
    [skipped] = report.skipped
    encoding = skipped.reason.removeprefix("not valid UTF-8; decoded as ").split(" ")[0]
    assert encoding in detected and skipped.reason.endswith("(detected); re-save it as UTF-8 to be sure")
    with pytest.raises(BadInput, match=f"not valid UTF-8 \\(it looks like {encoding}\\); re-save it as UTF-8"):
        read_file(path, tmp_path)


def test_undeclared_legacy_html_and_jsonl_are_detected_too(tmp_path: Path) -> None:
    sentence = "Что Путин думает об отношениях России и США? Кто такой Ушаков?"
    write(tmp_path / "ru.html", f"<html><body><p>{sentence}</p></body></html>".encode("cp1251"))
    write(tmp_path / "ru.jsonl", (json.dumps({"text": sentence}, ensure_ascii=False) + "\n").encode("cp1251"))

    report = read_corpus([tmp_path])

    assert [a.text for a in report.articles] == [sentence, sentence]
    assert [s.reason.split(" (")[0] for s in report.skipped] == ["not valid UTF-8; decoded as cp1251"] * 2


def test_utf8_with_a_few_damaged_bytes_is_repaired_not_misdetected(tmp_path: Path) -> None:
    path = write(tmp_path / "damaged.txt", "Привет, мир! Кошки спят.".encode() + b"\xff\xfe" + "Собаки лают.".encode())

    report = read_corpus([path])

    assert report.articles[0].text == "Привет, мир! Кошки спят.\ufffd\ufffdСобаки лают."
    assert report.skipped == [Skipped(str(path), None, "not valid UTF-8; undecodable bytes replaced with U+FFFD")]


def test_utf16_with_a_byte_order_mark_is_text_not_binary(tmp_path: Path) -> None:
    write(tmp_path / "le.txt", "Hello, мир\n".encode("utf-16"))
    write(tmp_path / "be.md", codecs.BOM_UTF16_BE + "# Заголовок\n\nтекст\n".encode("utf-16-be"))

    report = read_corpus([tmp_path])

    assert report.skipped == []
    assert [(a.title, a.text) for a in report.articles] == [
        ("Заголовок", "# Заголовок\n\nтекст\n"),
        ("le", "Hello, мир\n"),
    ]


def test_nul_bytes_past_the_binary_sniff_are_removed_and_reported(tmp_path: Path) -> None:
    txt = write(tmp_path / "a.txt", b"a" * 9000 + b"\0tail\0")
    rows = write(tmp_path / "b.jsonl", jsonl({"text": "nul \u0000 inside", "title": "t\u0000"}, {"text": "\u0000"}))

    report = read_corpus([tmp_path])

    assert [(a.title, a.text[-6:]) for a in report.articles] == [("a", "aatail"), ("t", "inside")]
    assert "\0" not in report.articles[1].text
    assert report.skipped == [
        Skipped(str(txt), None, "2 NUL characters removed"),
        Skipped(str(rows), 1, "line 1: 1 NUL character removed"),
        Skipped(str(rows), 2, "line 2: nothing but NUL characters; left out"),
    ]


def test_a_truncated_jsonl_file_keeps_its_good_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "cut.jsonl", jsonl({"text": "one"}, {"text": "two"}) + '{"text": "thr')

    report = read_corpus([path])

    assert [a.text for a in report.articles] == ["one", "two"]
    assert [(s.line, s.reason.split(" (")[0]) for s in report.skipped] == [(3, "line 3: not valid JSON")]


def test_an_unreadable_file_is_skipped_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # chmod 000 does not stop root (CI runs as root), so the refusal is simulated where the file is opened.
    locked = write(tmp_path / "locked.txt", "secret")
    write(tmp_path / "open.txt", "public")
    real_open = Path.open

    def refuse(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self.name == "locked.txt":
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    report = read_corpus([tmp_path])

    assert [a.id for a in report.articles] == ["open.txt"]
    assert report.skipped == [
        Skipped(str(locked), None, "cannot read: Permission denied; check that it exists and is readable")
    ]


def test_an_unlistable_folder_is_skipped_and_the_walk_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "a" / "hidden.txt", "in a locked folder")
    write(tmp_path / "b.txt", "outside")
    real_iterdir = Path.iterdir

    def refuse(self: Path) -> Any:
        if self.name == "a":
            raise PermissionError(13, "Permission denied")
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", refuse)
    report = read_corpus([tmp_path])

    assert [a.id for a in report.articles] == ["b.txt"]
    assert report.skipped == [
        Skipped(str(tmp_path / "a"), None, "cannot list: Permission denied; check its permissions")
    ]


def test_symlink_loops_and_broken_links_are_reported_and_the_walk_ends(tmp_path: Path) -> None:
    write(tmp_path / "real.txt", "real")
    (tmp_path / "loop1.txt").symlink_to("loop2.txt")
    (tmp_path / "loop2.txt").symlink_to("loop1.txt")
    (tmp_path / "dangling.md").symlink_to("gone.md")
    (tmp_path / "up").symlink_to(".")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "back").symlink_to("..")
    (tmp_path / "alias.txt").symlink_to("real.txt")

    report = read_corpus([tmp_path])

    assert [a.id for a in report.articles] == ["alias.txt", "real.txt"]
    loop = "symbolic link loop (it leads back to itself); fix or remove the link"
    not_followed = "symlinked folder not followed; name it to include it"
    assert report.skipped == [
        Skipped(
            str(tmp_path / "dangling.md"),
            None,
            "broken symbolic link to gone.md (no such file); fix or remove the link",
        ),
        Skipped(str(tmp_path / "loop1.txt"), None, loop),
        Skipped(str(tmp_path / "loop2.txt"), None, loop),
        Skipped(str(tmp_path / "sub" / "back"), None, not_followed),
        Skipped(str(tmp_path / "up"), None, not_followed),
    ]
    with pytest.raises(BadInput, match="loop1.txt: symbolic link loop"):
        read_corpus([tmp_path / "loop1.txt"])
    assert [a.id for a in read_corpus([tmp_path / "up"]).articles] == ["alias.txt", "real.txt"]  # named: followed


def test_a_fifo_is_reported_not_read_and_never_blocks(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)

    assert read_corpus([tmp_path]).skipped == [Skipped(str(fifo), None, "not a regular file")]
    with pytest.raises(BadInput, match="not a regular file or folder"):
        read_corpus([fifo])


def test_folders_nested_deeper_than_the_recursion_limit_are_walked(tmp_path: Path) -> None:
    deep = tmp_path
    for _ in range(300):
        deep = deep / "d"
        deep.mkdir()
    write(deep / "bottom.txt", "found")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 150)  # a recursive walk would need 300 frames more
    try:
        [article] = read_corpus([tmp_path]).articles
    finally:
        sys.setrecursionlimit(limit)

    assert article.id == "d/" * 300 + "bottom.txt" and article.text == "found"


def test_a_parser_crash_on_one_file_skips_that_file_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import search.ingest.corpus

    bad = write(tmp_path / "a.jsonl", jsonl({"text": "boom"}))
    write(tmp_path / "b.txt", "fine")

    def crash(*args: object) -> None:
        raise RuntimeError("parser bug")

    monkeypatch.setattr(search.ingest.corpus, "_parse_jsonl", crash)
    report = read_corpus([tmp_path])

    assert [a.id for a in report.articles] == ["b.txt"]
    reason = "could not be read (RuntimeError: parser bug); please report this file"
    assert report.skipped == [Skipped(str(bad), None, reason)]


def test_describe_problems_is_one_bounded_line() -> None:
    problems = [Skipped(f"f{i}.txt", i or None, "binary file") for i in range(7)]

    text = describe_problems(problems, limit=2)

    assert text == "7 problems in the input: f0.txt: binary file; f1.txt:1: binary file; and 5 more"
    assert "\n" not in text and describe_problems(problems[:1]) == "1 problem in the input: f0.txt: binary file"


SUFFIX = st.sampled_from(SUPPORTED_SUFFIXES)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=600) | st.text(max_size=300).map(str.encode), suffix=SUFFIX)
def test_any_bytes_in_any_supported_file_are_read_or_reported_never_raised(
    tmp_path: Path, data: bytes, suffix: str
) -> None:
    path = write(tmp_path / f"fuzz{suffix}", data)

    report = read_corpus([path])

    for article in report.articles:
        assert article.text.strip() and "\0" not in article.text
    assert all(s.path == str(path) and s.reason for s in report.skipped)
