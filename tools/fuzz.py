"""Fuzz the API with schemathesis against its own OpenAPI schema: zero 5xx, and responses that match the schema.

    python tools/fuzz.py --url http://127.0.0.1:8000 --max-examples 50
    python tools/fuzz.py --serve index --max-examples 20      # start a server on that index, fuzz, stop it

Checks: not_a_server_error and response_schema_conformance. Prints a JSON summary (cases run, failures) as the
last line and exits with schemathesis's code (0: no issue found). Loopback URLs only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _server import running_server

CHECKS = "not_a_server_error,response_schema_conformance"


def fuzz(url: str, max_examples: int, seed: int | None, key: str | None, workers: int, exclude: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        report = Path(tmp) / "report.json"
        command = [
            sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json", "--checks", CHECKS,
            "--max-examples", str(max_examples), "--workers", str(workers), "--phases", "examples,coverage,fuzzing",
            "--request-timeout", "120", "--generation-database", "none", "--no-color",
            "--report", "json", "--report-json-path", str(report),
        ]  # fmt: skip
        if seed is not None:
            command += ["--seed", str(seed)]
        if key:
            command += ["--header", f"Authorization: Bearer {key}"]
        for pattern in exclude:
            command += ["--exclude-path-regex", pattern]
        code = subprocess.run(command, check=False).returncode
        summary: dict[str, Any] = {"url": url, "exit_code": code}
        if report.is_file():
            data = json.loads(report.read_text())
            summary |= {
                "operations_tested": data["operations"]["tested"],
                "cases_run": data["test_cases"]["generated"],
                "cases_with_failures": data["test_cases"]["with_failures"],
                "unique_failures": data["test_cases"]["unique_failures"],
                "errors": data["test_cases"]["errored"],
                "seed": data["seed"],
                "seconds": round(data["running_time"], 1),
            }
        print(json.dumps(summary))
        return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", default="http://127.0.0.1:8000", help="a running server, on a loopback address")
    where.add_argument("--serve", type=Path, default=None, help="start `search serve` on this index for the run")
    parser.add_argument("--max-examples", type=int, default=50, help="cases per operation and phase [50]")
    parser.add_argument("--seed", type=int, default=None, help="for a reproducible run")
    parser.add_argument("--key", default=None, help="API key to send as a bearer token")
    parser.add_argument("--workers", type=int, default=1, help="concurrent schemathesis workers [1]")
    parser.add_argument("--exclude-path-regex", action="append", default=[], help="operations to leave out")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        url = stack.enter_context(running_server(args.serve)).url if args.serve else args.url.rstrip("/")
        host = urlsplit(url).hostname or ""
        if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127."):
            print(f"error: {url} is not a loopback address; fuzz only local servers", file=sys.stderr)
            return 2
        return fuzz(url, args.max_examples, args.seed, args.key, args.workers, args.exclude_path_regex)


if __name__ == "__main__":
    sys.exit(main())
