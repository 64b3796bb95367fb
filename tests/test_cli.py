"""The command line as a user runs it: one line per error, documented exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.config import Settings, load_settings
from search.index.store import read_manifest
from search.ingest.language import LanguageDetector
from search.service import SearchService
from tests.fakes import FakeEmbedder
from tests.helpers import ROOT, main_in_process, make_service, write


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "search", *args], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env
    )


def test_help_lists_commands() -> None:
    out = run("--help").stdout
    for command in ("index", "query", "serve", "model"):
        assert command in out
    assert "--json" in run("index", "--help").stdout


def test_query_without_an_index_is_one_clear_line(tmp_path: Path) -> None:
    r = run("query", "NATO", "--index", str(tmp_path / "none"))
    assert r.returncode == 3
    assert r.stderr.strip().startswith("error: no index in") and "search index" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_blank_query_and_missing_input_are_bad_input(tmp_path: Path) -> None:
    r = run("query", "   ", "--index", str(tmp_path))
    assert r.returncode == 2 and "query: must not be blank" in r.stderr and "Traceback" not in r.stderr
    r = run("query", "NATO", "--diversity", "2", "--index", str(tmp_path))
    assert r.returncode == 2 and "diversity: 2.0 is outside 0..1" in r.stderr and "Traceback" not in r.stderr
    r = run("index", str(tmp_path / "missing"), "--index", str(tmp_path / "idx"))
    assert r.returncode == 2 and "no such file or folder" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "idx" / "current").exists()


@pytest.mark.model
def test_index_json_summary_and_query_json(tmp_path: Path) -> None:
    index = tmp_path / "idx"
    r = run("index", str(ROOT / "seeds"), "--index", str(index), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["articles"] == 1 and summary["passages"] > 20
    assert summary["embedded"] + summary["reused"] == summary["passages"]
    assert {"removed", "seconds", "stages"} <= set(summary)
    again = json.loads(run("index", str(ROOT / "seeds"), "--index", str(index), "--json").stdout.splitlines()[-1])
    assert again["embedded"] == 0 and again["reused"] == summary["passages"] and again["removed"] == 0

    r = run("query", "Кто такой Ушаков?", "--index", str(index), "--json", "-k", "3")
    body = json.loads(r.stdout)
    assert body["query_lang"] == "ru" and len(body["hits"]) == 3
    assert any("Ushakov" in h["text"] for h in body["hits"])
    readable = run("query", "Кто такой Ушаков?", "--index", str(index), "-k", "2").stdout
    assert "query language: ru" in readable and "1. [" in readable


def test_a_bad_setting_stops_serve_at_start_naming_the_variable_and_the_allowed_values(tmp_path: Path) -> None:
    env = {**os.environ, "SEARCH_DEFAULT_MODE": "bogus", "SEARCH_INDEX_DIR": str(tmp_path)}
    r = run("serve", env=env)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert lines[0].startswith("error: SEARCH_DEFAULT_MODE='bogus'")
    assert all(mode in lines[0] for mode in ("'dense'", "'lexical'", "'hybrid'"))


# --- every exit code, each from a situation that produces it ------------------------------------------------------
# In-process runs go through `main()` (argument parsing, the service, the error-to-exit-code mapping) with the fake
# embedder behind `--model fake-model`; runs that never need a model are real subprocesses.


def fake_service(settings: Settings) -> SearchService:
    assert settings.model == "fake-model", "in-process runs use --model fake-model"
    return SearchService(settings, embedder=FakeEmbedder(), detector=LanguageDetector(["en", "ru"], preload=False))


def one_error_line(err: str, starts: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {starts}") and "Traceback" not in err, err


ARTICLES = {
    "cats.txt": "Cats sleep in the sun.\n\nA cat grooms its fur.\n",
    "dogs.txt": "Dogs bark at the postman.\n\nA retriever fetches sticks.\n",
    "ru.txt": "Кошки спят на солнце.\n\nСобаки лают.\n",
}


@pytest.fixture
def fake_index(tmp_path: Path) -> Path:
    """Three articles (en, en, ru) built with the fake embedder: the manifest names model `fake-model`."""
    for name, text in ARTICLES.items():
        write(tmp_path / "corpus" / name, text)
    make_service(tmp_path, LanguageDetector(["en", "ru"], preload=False)).build([tmp_path / "corpus"])
    return tmp_path / "index"


def build_id(index: Path) -> str:
    return str(read_manifest(index)[1]["build_id"])


def test_remove_deletes_the_article_and_the_index_answers_without_it(
    fake_index: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = build_id(fake_index)
    code, out, err = main_in_process(monkeypatch, capsys, "remove", "dogs.txt", "--index", str(fake_index),
                                     "--model", "fake-model", "--json", service=fake_service)  # fmt: skip
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["articles"] == 2 and summary["embedded"] == 0 and summary["removed"] == 2
    assert build_id(fake_index) != before and "indexed 2 articles" in err
    code, out, err = main_in_process(monkeypatch, capsys, "query", "dogs bark at the postman", "-k", "10",
                                     "--index", str(fake_index), "--model", "fake-model", "--json",
                                     service=fake_service)  # fmt: skip
    assert code == 0, err
    hits = json.loads(out)["hits"]
    assert hits and {h["article_id"] for h in hits} == {"cats.txt", "ru.txt"}
    assert {a.article_id for a in fake_service(load_settings(index_dir=fake_index, model="fake-model")).articles()} == {
        "cats.txt",
        "ru.txt",
    }


def test_exit_1_an_os_error_such_as_an_index_folder_under_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = write(tmp_path / "corpus" / "cats.txt", ARTICLES["cats.txt"]).parent
    blocker = write(tmp_path / "a-file", "not a folder")
    code, _, err = main_in_process(monkeypatch, capsys, "index", str(corpus), "--index", str(blocker / "index"),
                                   "--model", "fake-model", "--json", service=fake_service)  # fmt: skip
    assert code == 1
    one_error_line(err, "")
    assert str(blocker) in err


def test_exit_2_removing_every_article(
    fake_index: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = build_id(fake_index)
    code, _, err = main_in_process(monkeypatch, capsys, "remove", *ARTICLES, "--index", str(fake_index),
                                   "--model", "fake-model", service=fake_service)  # fmt: skip
    assert code == 2
    one_error_line(err, "removing every article would leave an empty index")
    assert build_id(fake_index) == before


def test_exit_3_remove_where_there_is_no_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = main_in_process(monkeypatch, capsys, "remove", "cats.txt", "--index", str(tmp_path / "none"),
                                   "--model", "fake-model", service=fake_service)  # fmt: skip
    assert code == 3
    one_error_line(err, "no index in")


def test_exit_4_an_index_built_with_another_model(fake_index: Path) -> None:
    r = run("query", "cats", "--index", str(fake_index))  # the default model, against an index of `fake-model`
    assert r.returncode == 4, r.stderr
    one_error_line(r.stderr, f"the index in {fake_index}/ was built with model 'fake-model'")
    assert "SEARCH_MODEL=fake-model" in r.stderr


def test_exit_5_an_index_file_that_fails_its_checksum(
    fake_index: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, manifest = read_manifest(fake_index)
    assert "vectors.faiss" in manifest["files"]
    vectors = folder / "vectors.faiss"
    data = bytearray(vectors.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit pattern in the last byte, as a bad disk or a partial copy would leave
    vectors.write_bytes(bytes(data))
    code, _, err = main_in_process(monkeypatch, capsys, "query", "cats", "--index", str(fake_index),
                                   "--model", "fake-model", service=fake_service)  # fmt: skip
    assert code == 5
    one_error_line(err, f"{vectors} does not match its checksum")


def test_exit_6_a_model_that_is_not_there(tmp_path: Path) -> None:
    r = run("model", "--model", str(tmp_path / "no-model"))
    assert r.returncode == 6, r.stderr
    one_error_line(r.stderr, f"no model folder at {tmp_path / 'no-model'}")


def test_exit_7_removing_an_unknown_article_changes_nothing(
    fake_index: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = build_id(fake_index)
    code, _, err = main_in_process(monkeypatch, capsys, "remove", "cats.txt", "nope.txt", "--index", str(fake_index),
                                   "--model", "fake-model", service=fake_service)  # fmt: skip
    assert code == 7
    one_error_line(err, "no article with id 'nope.txt'")
    assert build_id(fake_index) == before


@pytest.mark.model
def test_exit_130_an_interrupted_build_publishes_nothing(tmp_path: Path) -> None:
    index = tmp_path / "index"
    stderr = tmp_path / "stderr"
    with stderr.open("w") as err:
        # A fresh index folder has an empty embedding cache, so the seed is really embedded while its bar runs.
        proc = subprocess.Popen([sys.executable, "-m", "search", "index", str(ROOT / "seeds"), "--index", str(index)],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, text=True)  # fmt: skip
        try:
            deadline = time.monotonic() + 300
            while "Encoding" not in stderr.read_text(encoding="utf-8") and proc.poll() is None:
                assert time.monotonic() < deadline, "no progress bar within 300 s"
                time.sleep(0.1)
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = stderr.read_text(encoding="utf-8")
    assert code == 130, text
    assert "Traceback" not in text  # typer turns the KeyboardInterrupt into exit 130 without a word
    assert not (index / "current").exists()
