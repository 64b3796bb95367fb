"""The load and fuzz tools (`tools/load.py`, `tools/fuzz.py`) against a real server with the real model."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from typing import Any

import pytest

from tests.helpers import ROOT


def run_tool(*args: str, timeout: float) -> tuple[int, dict[str, Any], str]:
    """Run a tool; its JSON results are all of stdout (load.py) or its last line (fuzz.py, after schemathesis')."""
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    out = r.stdout.strip()
    with contextlib.suppress(ValueError):
        return r.returncode, json.loads(out if out.startswith("{") else out.rsplit("\n", 1)[-1]), r.stderr
    return r.returncode, {}, r.stdout + r.stderr


@pytest.mark.model
def test_load_16_clients_for_10_seconds_without_an_error(server_url: str) -> None:
    code, out, err = run_tool("tools/load.py", "--url", server_url, "--clients", "16", "--seconds", "10", timeout=300)
    print(json.dumps(out))
    assert code == 0 and out["errors"] == 0, (out, err)
    assert out["requests"] > 16 and set(out["by_route"]) == {"GET /search", "POST /search", "POST /search/batch"}
    assert 0 < out["latency_ms"]["p50"] <= out["latency_ms"]["p99"] <= out["latency_ms"]["max"]


@pytest.mark.model
def test_fuzzing_finds_no_server_error_and_no_schema_mismatch(server_url: str) -> None:
    code, out, err = run_tool("tools/fuzz.py", "--url", server_url, "--max-examples", "5", "--seed", "1", timeout=900)
    print(json.dumps(out))
    assert code == 0 and out["cases_with_failures"] == 0 and out["errors"] == 0, (out, err[-3000:])
    assert out["cases_run"] > 100
