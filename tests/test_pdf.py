"""PDF articles: Chromium prints HTML articles the tests write (two columns, Chinese, a running header and page
numbers on several pages), and the reader gives back the story paragraphs in order, with the page of each."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from search.errors import BadInput
from search.index.build import make_passages
from search.ingest.corpus import read_corpus, read_file
from search.ingest.language import LanguageDetector
from search.service import SearchService
from tests.fakes import FakeEmbedder
from tests.helpers import PAGE, STORY, make_service, write

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

HEADER = "The Northern Review · Spring issue"
TWO_COLUMN = [
    "The first paragraph talks about glaciers feeding the rivers of the north in spring, when meltwater swells "
    "every stream and the valleys fill with the sound of running water over stones.",
    "The second paragraph describes salmon swimming upstream against the current, leaping over waterfalls and "
    "resting in deep pools before the spawning grounds high in the hills.",
    "The third paragraph explains how fishermen in the villages mend their nets through the long winter, telling "
    "stories of the great floods that their grandparents remember from the old days.",
    "The fourth paragraph is about the ferries that cross the wide estuary twice a day, carrying cars, bicycles "
    "and schoolchildren between the two old harbour towns.",
    "北方的河流在春天因冰川融水而上涨,山谷里到处都是流水的声音,渔民们开始修补他们的渔网,准备迎接新的捕鱼季节。",
    "老人们说,很久以前这里的河水更宽更深,每年秋天都有成群的大鱼游回上游,整个村子都会出来看热闹。",
]
# Typeset with a word broken at the end of a line: "counter-" / "revolutionary" becomes one word again.
BROKEN = "The fifth paragraph mentions a counter-<br>revolutionary pamphlet found in the harbour master's attic."
BROKEN_JOINED = "The fifth paragraph mentions a counterrevolutionary pamphlet found in the harbour master's attic."
LONG_STORY = [
    f"Paragraph {n} of the long article tells how the bridge builders of the mountain villages added a span in "
    f"year {1900 + n}, with ropes twisted from hemp grown on the terraces below and planks cut from larch, and how "
    "the whole village walked across it on the first morning to bless it before the goats were allowed on."
    for n in range(1, 15)
]


def _style(columns: int) -> str:
    # Page numbers in the page margin; the running header as a fixed element, repeated on every printed page, on
    # the two-column article (beside its columns' text) and in the top margin of the long one (a fixed element
    # there would be printed over the text of the following pages).
    header = f'@top-center {{ content: "{HEADER}"; font-size: 8pt; }}' if columns == 1 else ""
    return f"""<style>
@page {{ size: A5; margin: 22mm 15mm; @bottom-center {{ content: "– " counter(page) " –"; font-size: 8pt; }} {header} }}
body {{ font-family: serif; font-size: 11pt; }}
.running {{ position: fixed; top: 0; left: 0; right: 0; font-size: 8pt; text-align: center; }}
.story {{ column-count: {columns}; column-gap: 12mm; padding-top: 8mm; }}
p {{ margin: 0 0 8pt 0; text-align: justify; }}
</style>"""


def _html(title: str, paragraphs: list[str], columns: int) -> str:
    body = "\n".join(f"<p>{p}</p>" for p in paragraphs)
    running = f'<div class="running">{HEADER}</div>' if columns > 1 else ""
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>{_style(columns)}</head><body>'
        f"{running}<div class='story'><h1>{title}</h1>\n{body}</div></body></html>"
    )


def _print(html: str, out: Path) -> Path:
    """`out`, printed by headless Chromium from `html` (written next to it)."""
    source = out.with_suffix(".source.html")
    source.write_text(html, encoding="utf-8")
    profile = out.parent / f".chromium-{out.stem}"
    subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--no-pdf-header-footer", f"--print-to-pdf={out}", source.as_uri(),
        ],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    source.unlink()
    shutil.rmtree(profile, ignore_errors=True)
    assert out.read_bytes().startswith(b"%PDF")
    return out


@pytest.fixture(scope="module")
def pdfs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not Path(CHROMIUM).exists():
        pytest.skip("the PDFs are printed by Chromium, which is not installed")
    folder = tmp_path_factory.mktemp("pdfs")
    paragraphs = [*TWO_COLUMN[:4], BROKEN, *TWO_COLUMN[4:]] * 2
    return {
        "columns": _print(_html("Rivers of the North", paragraphs, 2), folder / "columns.pdf"),
        "long": _print(_html("The Bridge Builders", LONG_STORY, 1), folder / "long.pdf"),
    }


def _paragraphs(path: Path) -> list[str]:
    (article,) = read_file(path, path.parent)
    return article.text.split("\n\n")


def test_two_columns_and_chinese_come_back_in_reading_order(pdfs: dict[str, Path]) -> None:
    expected = [*TWO_COLUMN[:4], BROKEN_JOINED, *TWO_COLUMN[4:]] * 2
    # A paragraph cut by the column or page break is whole again; ligatures (ﬁ) and CJK radicals (⺠) folded.
    assert _paragraphs(pdfs["columns"]) == ["Rivers of the North", *expected]


def test_running_header_and_page_numbers_are_dropped(pdfs: dict[str, Path]) -> None:
    for path in pdfs.values():
        text = read_file(path, path.parent)[0].text
        assert HEADER not in text
        assert not re.search(r"^– \d+ –$", text, re.MULTILINE), text


def test_every_passage_knows_its_page(pdfs: dict[str, Path]) -> None:
    (article,) = read_file(pdfs["long"], pdfs["long"].parent)
    assert _paragraphs(pdfs["long"]) == ["The Bridge Builders", *LONG_STORY]
    assert len(article.pages) >= 3 and article.title == "The Bridge Builders"
    passages = make_passages([article], FakeEmbedder(), LanguageDetector(["en", "zh"], preload=False))
    pages = [p.page for p in passages]
    assert pages[0] == 1 and pages == sorted(pages) and pages[-1] == len(article.pages)
    for p in passages:  # the page is where the passage begins: its first words are on that page
        assert article.pages[p.page - 1] <= p.start  # type: ignore[operator]


def test_an_encrypted_pdf_is_skipped_with_its_name_and_refused_in_strict_mode(
    pdfs: dict[str, Path], tmp_path: Path
) -> None:
    path = write(tmp_path / "locked.pdf", _encrypted(pdfs["columns"].read_bytes()))
    report = read_corpus([tmp_path])
    assert report.articles == []
    (skipped,) = report.skipped
    assert skipped.path == str(path) and skipped.reason.startswith("encrypted PDF")
    with pytest.raises(BadInput, match=r"locked\.pdf: encrypted PDF"):
        read_file(path, tmp_path)


def test_a_damaged_pdf_is_skipped_with_a_reason(tmp_path: Path) -> None:
    write(tmp_path / "broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage\n")
    write(tmp_path / "empty-ish.pdf", b"%PDF-1.4\n%%EOF\n")
    report = read_corpus([tmp_path])
    assert report.articles == []
    assert [s.path.rsplit("/", 1)[1] for s in report.skipped] == ["broken.pdf", "empty-ish.pdf"]
    assert all("PDF" in s.reason and "viewer" in s.reason for s in report.skipped), report.skipped


def test_index_a_folder_of_a_news_page_and_a_pdf(pdfs: dict[str, Path], tmp_path: Path) -> None:
    """`search index` of a folder with a news page and a PDF: only story paragraphs, with title, author, date
    and (for the PDF) page."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write(corpus / "news.html", PAGE)
    shutil.copy(pdfs["long"], corpus / "bridges.pdf")
    svc: SearchService = make_service(tmp_path, LanguageDetector(["en", "zh"], preload=False), watch_seconds=0)
    svc.build([corpus])
    svc.load()
    by_article: dict[str, list[tuple[str, int | None]]] = {}
    for p in svc.store.all_passages():
        by_article.setdefault(p.article_id, []).append((p.text, p.page))
    news = [t for t, _ in by_article["news.html"]]
    assert len(news) == len(STORY) and all(t.startswith(s) for t, s in zip(news, STORY, strict=True)), news
    assert {page for _, page in by_article["news.html"]} == {None}
    # the story in parts that fit the fake model; the title is the passages' section, not a passage
    assert " ".join(t for t, _ in by_article["bridges.pdf"]) == " ".join(LONG_STORY)
    assert all(page is not None and page >= 1 for _, page in by_article["bridges.pdf"])
    info = {a.article_id: a for a in svc.articles()}
    assert info["news.html"].metadata["author"] == "Jane Doe" and info["news.html"].metadata["published"]
    assert info["bridges.pdf"].title == "The Bridge Builders" and info["bridges.pdf"].metadata["published"]
    # and the page comes back with a hit
    hit = svc.similar_passages(svc.store.all_passages()[-1].passage_id, k=50)
    assert any(h.as_dict()["page"] for h in hit)


def _encrypted(data: bytes) -> bytes:
    """`data` with an incremental update that encrypts it (standard handler) under a user password we do not know."""
    prev = int(re.findall(rb"startxref\s+(\d+)", data)[-1])
    size = int(re.findall(rb"/Size (\d+)", data)[-1])
    root = re.findall(rb"/Root (\d+ \d+ R)", data)[-1]
    obj = b"%d 0 obj\n<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P -4 >>\nendobj\n" % (
        size,
        b"11" * 32,
        b"22" * 32,
    )
    xref = (
        b"xref\n%d 1\n%010d 00000 n \ntrailer\n<< /Size %d /Root %s /Prev %d /Encrypt %d 0 R /ID [<%s> <%s>] >>\n"
        b"startxref\n%d\n%%%%EOF\n"
        % (size, len(data), size + 1, root, prev, size, b"ab" * 16, b"ab" * 16, len(data) + len(obj))
    )
    return data + obj + xref
