"""The command line as a user runs it: one line per error, documented exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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
