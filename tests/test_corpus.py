"""Tests for reading articles from txt, md, html and jsonl files and folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.errors import BadInput
from search.ingest.corpus import (
    SUPPORTED_SUFFIXES,
    CorpusReport,
    Skipped,
    read_corpus,
    read_file,
)
from tests.helpers import jsonl, write

SEEDS = Path(__file__).parents[1] / "seeds"


def test_txt_file_named_directly_gets_its_file_name_as_id_and_stem_as_title(tmp_path: Path) -> None:
    path = write(tmp_path / "notes" / "river.txt", "The river rose.\r\nThen it fell.\rThe end.\n")

    report = read_corpus([path])

    assert report.skipped == []
    [article] = report.articles
    assert article.id == "river.txt"
    assert article.title == "river"
    assert article.text == "The river rose.\nThen it fell.\nThe end.\n"
    assert article.source == str(path)
    assert article.metadata == {}


def test_folder_ids_are_posix_paths_relative_to_the_folder(tmp_path: Path) -> None:
    write(tmp_path / "corpus" / "a" / "b" / "deep.txt", "deep")
    write(tmp_path / "corpus" / "top.txt", "top")

    report = read_corpus([str(tmp_path / "corpus")])

    assert [a.id for a in report.articles] == ["a/b/deep.txt", "top.txt"]
    assert report.articles[0].source == str(tmp_path / "corpus" / "a" / "b" / "deep.txt")


def test_leading_bom_is_stripped_and_nothing_else_is_changed(tmp_path: Path) -> None:
    path = write(tmp_path / "bom.txt", b"\xef\xbb\xbf  indented\n\n\ttabbed  \n")

    [article] = read_corpus([path]).articles

    assert article.text == "  indented\n\n\ttabbed  \n"


def test_markdown_title_is_the_first_heading_and_the_source_is_kept(tmp_path: Path) -> None:
    source = "Intro line.\n\n```sh\n# not a title, a shell comment\n```\n\n## The *Real* Title ##\n\nBody.\n"
    write(tmp_path / "doc.md", source)
    write(tmp_path / "plain.markdown", "No heading here.\n")
    write(tmp_path / "sharp.md", "# C#\n")

    articles = {a.id: a for a in read_corpus([tmp_path]).articles}

    assert articles["doc.md"].title == "The *Real* Title"
    assert articles["doc.md"].text == source
    assert articles["plain.markdown"].title == "plain"
    assert articles["sharp.md"].title == "C#"


def test_html_drops_scripts_and_styles_and_separates_paragraphs(tmp_path: Path) -> None:
    html = """<!DOCTYPE html>
    <html><head><title>  Flood   Report </title><style>p { color: red }</style>
    <script>var secret = 1;</script></head>
    <body>
      <script>alert("hidden")</script><noscript>enable js</noscript>
      <h1>Heading</h1>
      <p>First   paragraph
         continues <b>bold</b> here.</p>
      <!-- a comment -->
      <div>Second<br>line two</div>
      <ul><li>one</li><li>two</li></ul>
      <table><tr><td>a</td><td>b</td></tr></table>
      <pre>
  code  kept
    as is</pre>
      <template><p>never shown</p></template>
    </body></html>"""
    path = write(tmp_path / "page.html", html)

    report = read_corpus([path], html_reader="visible")  # the layout of all visible text; main text: test_webpages

    assert report.skipped == []
    [article] = report.articles
    assert article.id == "page.html"
    assert article.title == "Flood Report"
    assert article.text == (
        "Heading\n\nFirst paragraph continues bold here.\n\nSecond\nline two\n\none\ntwo\n\na b\n\n"
        "  code  kept\n    as is"
    )


def test_html_title_falls_back_to_h1_then_stem(tmp_path: Path) -> None:
    write(tmp_path / "a.htm", "<html><body><h1>Only <i>H1</i></h1><p>text</p></body></html>")
    write(tmp_path / "b.html", "<p>just a paragraph</p>")

    articles = {a.id: a for a in read_corpus([tmp_path]).articles}

    assert articles["a.htm"].title == "Only H1"
    assert articles["b.html"].title == "b"
    assert articles["b.html"].text == "just a paragraph"


def test_html_is_decoded_with_its_declared_charset(tmp_path: Path) -> None:
    html = '<html><head><meta charset="windows-1251"><title>Привет</title></head><body><p>мир</p></body></html>'
    path = write(tmp_path / "ru.html", html.encode("windows-1251"))

    report = read_corpus([path])

    assert report.skipped == []
    assert report.articles[0].title == "Привет"
    assert report.articles[0].text == "мир"


def test_html_without_visible_text_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "blank.html", "<html><body><script>x()</script></body></html>")

    report = read_corpus([path])

    assert report.articles == []
    assert report.skipped == [Skipped(str(path), None, "no visible text in the HTML body")]


def test_short_html_without_tags_is_read_as_text(tmp_path: Path) -> None:
    # bs4 warns that such input "looks like a filename"; pytest turns warnings into errors here.
    path = write(tmp_path / "tiny.html", "index.html")

    assert read_corpus([path]).articles[0].text == "index.html"


def test_jsonl_fields_metadata_and_generated_ids(tmp_path: Path) -> None:
    path = write(
        tmp_path / "data" / "news.jsonl",
        jsonl(
            {"id": "n1", "title": "One", "text": "first\r\ntext", "url": "https://x", "lang": "en"},
            {"id": 7, "text": "numeric id", "published": "2024-01-02", "tags": ["a", "b"]},
            "",
            {"text": "no id", "title": None},
        ),
    )

    report = read_corpus([tmp_path / "data"])

    assert report.skipped == []
    first, second, third = report.articles
    assert (first.id, first.title, first.text) == ("n1", "One", "first\ntext")
    assert first.metadata == {"url": "https://x", "lang": "en"}
    assert first.source == str(path)
    assert (second.id, second.title) == ("7", "")
    assert second.metadata == {"published": "2024-01-02", "tags": ["a", "b"]}
    assert third.id == "news.jsonl#4"


def test_malformed_jsonl_lines_are_reported_with_line_numbers_and_good_lines_kept(tmp_path: Path) -> None:
    path = write(
        tmp_path / "mixed.jsonl",
        jsonl(
            {"text": "good one"},
            "{not json",
            {"title": "no text"},
            ["an", "array"],
            {"text": ""},
            {"text": 42},
            {"text": "bad id", "id": [1]},
            {"text": "bool id", "id": True},
            {"text": "good two", "id": "g2"},
        ),
    )

    report = read_corpus([path])

    assert [a.id for a in report.articles] == ["mixed.jsonl#1", "g2"]
    assert [s.line for s in report.skipped] == [2, 3, 4, 5, 6, 7, 8]
    assert all(s.path == str(path) for s in report.skipped)
    reasons = [s.reason for s in report.skipped]
    assert reasons[0].startswith("line 2: not valid JSON")
    assert reasons[1] == 'line 3: missing "text" field; each line needs {"text": "..."}'
    assert reasons[2] == 'line 4: expected a JSON object, got an array; each line needs {"text": "..."}'
    assert reasons[3].startswith('line 5: "text" is empty')
    assert reasons[4] == 'line 6: "text" must be a string, got a number'
    assert reasons[5] == 'line 7: "id" must be a string or an integer, got an array'
    assert reasons[6] == 'line 8: "id" must be a string or an integer, got a boolean'


def test_duplicate_ids_keep_the_first_and_report_the_later(tmp_path: Path) -> None:
    write(tmp_path / "a.jsonl", jsonl({"id": "x", "text": "first"}))
    later = write(tmp_path / "b.jsonl", jsonl({"text": "other"}, {"id": "x", "text": "second"}))

    report = read_corpus([tmp_path])

    assert [(a.id, a.text) for a in report.articles] == [("x", "first"), ("b.jsonl#1", "other")]
    assert report.skipped == [
        Skipped(str(later), 2, f'duplicate article id "x" (first seen in {tmp_path / "a.jsonl"})')
    ]


def test_unsupported_and_hidden_files_in_a_folder(tmp_path: Path) -> None:
    write(tmp_path / "keep.txt", "kept")
    docx = write(tmp_path / "paper.docx", b"PK\x03\x04")
    write(tmp_path / ".hidden.txt", "ignored")
    write(tmp_path / ".git" / "notes.txt", "ignored")

    report = read_corpus([tmp_path])

    assert [a.id for a in report.articles] == ["keep.txt"]
    assert report.skipped == [
        Skipped(str(docx), None, f"unsupported file type .docx; supported: {', '.join(SUPPORTED_SUFFIXES)}")
    ]


def test_explicitly_named_unsupported_file_raises(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", "a,b\n")

    with pytest.raises(BadInput, match=r"data\.csv: unsupported file type \.csv; supported: \.txt, \.md"):
        read_corpus([path])


def test_missing_path_raises_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"

    with pytest.raises(BadInput) as info:
        read_corpus([missing])

    assert str(info.value) == f"{missing}: no such file or folder"


def test_invalid_utf8_is_replaced_and_reported(tmp_path: Path) -> None:
    txt = write(tmp_path / "latin.txt", b"caf\xe9 au lait")
    lines = write(tmp_path / "rows.jsonl", b'{"text": "na\xefve"}\n')

    report = read_corpus([tmp_path])

    assert [a.text for a in report.articles] == ["caf\ufffd au lait", "na\ufffdve"]
    reason = "not valid UTF-8; undecodable bytes replaced with U+FFFD"
    assert report.skipped == [Skipped(str(txt), None, reason), Skipped(str(lines), None, reason)]


def test_undeclared_non_utf8_html_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "old.html", b"<p>caf\xe9</p>")

    report = read_corpus([path])

    assert report.articles[0].text == "caf\ufffd"
    assert [s.reason for s in report.skipped] == ["not valid UTF-8; undecodable bytes replaced with U+FFFD"]


def test_empty_and_binary_files_are_reported(tmp_path: Path) -> None:
    empty = write(tmp_path / "a_empty.txt", "")
    blank = write(tmp_path / "b_blank.md", " \n\t\r\n")
    binary = write(tmp_path / "c_image.txt", b"GIF89a\x00\x01\x02")
    bom_only = write(tmp_path / "d_bom.jsonl", b"\xef\xbb\xbf\n")

    report = read_corpus([tmp_path])

    assert report.articles == []
    assert report.skipped == [
        Skipped(str(empty), None, "empty file"),
        Skipped(str(blank), None, "empty file"),
        Skipped(str(binary), None, "binary file"),
        Skipped(str(bom_only), None, "empty file"),
    ]


def test_folder_order_is_sorted_and_repeatable(tmp_path: Path) -> None:
    for name in ["zeta.txt", "b/inner.txt", "alpha.md", "a.txt", "c.txt"]:
        write(tmp_path / name, name)

    first = read_corpus([tmp_path])
    second = read_corpus([tmp_path])

    assert [a.id for a in first.articles] == ["a.txt", "alpha.md", "b/inner.txt", "c.txt", "zeta.txt"]
    assert first == second


def test_paths_are_read_in_the_order_given(tmp_path: Path) -> None:
    later = write(tmp_path / "z" / "one.txt", "z")
    earlier = write(tmp_path / "a" / "two.txt", "a")

    report = read_corpus([later, earlier])

    assert [a.source for a in report.articles] == [str(later), str(earlier)]


def test_read_file_is_strict_and_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "rows.jsonl", jsonl({"text": "ok"}, {"text": "ok"}, {"txt": "typo"}))

    with pytest.raises(BadInput) as info:
        read_file(path, tmp_path)

    assert str(info.value) == f'{path}: line 3: missing "text" field; each line needs {{"text": "..."}}'


def test_read_file_collects_problems_when_given_a_list(tmp_path: Path) -> None:
    path = write(tmp_path / "sub" / "rows.jsonl", jsonl({"text": "ok"}, "[]"))
    skipped: list[Skipped] = []

    articles = read_file(path, tmp_path, skipped)

    assert [a.id for a in articles] == ["sub/rows.jsonl#1"]
    assert [(s.line, s.reason.split(";")[0]) for s in skipped] == [(2, "line 2: expected a JSON object, got an array")]


def test_read_file_raises_on_empty_and_binary_files(tmp_path: Path) -> None:
    empty = write(tmp_path / "e.txt", "")
    binary = write(tmp_path / "b.md", b"\x00\x00")

    with pytest.raises(BadInput, match="e.txt: empty file"):
        read_file(empty, tmp_path)
    with pytest.raises(BadInput, match="b.md: binary file"):
        read_file(binary, tmp_path)


def test_the_seed_folder_holds_one_article() -> None:
    report = read_corpus([SEEDS])

    assert isinstance(report, CorpusReport)
    assert report.skipped == []
    [article] = report.articles
    assert article.id == "000_9f71073b3b5a7269.txt"
    assert article.title == "000_9f71073b3b5a7269"
    assert "Putin" in article.text


def test_read_file_raises_on_invalid_utf8_saying_what_to_do(tmp_path: Path) -> None:
    path = write(tmp_path / "latin.md", b"# Caf\xe9\n")

    with pytest.raises(BadInput) as info:
        read_file(path, tmp_path)

    assert str(info.value) == f"{path}: not valid UTF-8; re-save it as UTF-8"
