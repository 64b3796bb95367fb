"""The import layers of the package (docs/layout.md) are checked by import-linter: the real tree passes, and a tree
with one climbing import fails."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    # cwd first on the path, so grimp reads this tree's `search` and not the installed one.
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(ROOT / "pyproject.toml")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": str(Path(sys.executable).parent)},
    )


def copy_package(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "search", tmp_path / "search", ignore=shutil.ignore_patterns("__pycache__", "web", "data"))
    return tmp_path


def test_the_package_keeps_its_layers() -> None:
    r = lint_imports(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


def test_an_import_that_climbs_a_layer_fails(tmp_path: Path) -> None:
    tree = copy_package(tmp_path)
    store = tree / "search" / "index" / "store.py"
    store.write_text(store.read_text(encoding="utf-8") + "\nfrom search.serve import schemas  # noqa\n", "utf-8")
    r = lint_imports(tree)
    assert r.returncode != 0
    assert "search.index.store -> search.serve.schemas" in r.stdout


def test_an_edge_that_builds_its_own_store_fails(tmp_path: Path) -> None:
    tree = copy_package(tmp_path)
    cli = tree / "search" / "cli.py"
    cli.write_text(cli.read_text(encoding="utf-8") + "\nfrom search.index.store import Store  # noqa\n", "utf-8")
    r = lint_imports(tree)
    assert r.returncode != 0 and "The edges go through the service" in r.stdout
    assert "search.cli -> search.index.store" in r.stdout


def test_a_module_outside_every_layer_fails(tmp_path: Path) -> None:
    tree = copy_package(tmp_path)
    (tree / "search" / "utils.py").write_text('"""A dumping ground."""\n', "utf-8")
    r = lint_imports(tree)
    assert r.returncode != 0 and "search.utils" in r.stdout
