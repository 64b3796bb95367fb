"""Durable writes: every file and folder of a build is synced before it is renamed into place, and the folders that
hold each rename after it, before the write returns. (kill -9 at each step is tests/test_writers.py; a power cut,
which is what the syncs are for, cannot be made here: see docs/operations.md#durability.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import search.index.durable
import search.index.writers
from search.index.durable import sync_tree
from search.index.store import current_build
from search.ingest.language import LanguageDetector
from search.records import Article
from tests.helpers import make_service, write


class Synced:
    """Records what os.fsync was called on (by the path of the descriptor), and which publishing steps came when."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def fsync(self, fd: int) -> None:
        self.events.append(("sync", os.readlink(f"/proc/self/fd/{fd}")))

    def reached(self, step: str) -> None:
        self.events.append(("step", step))

    def synced_before(self, step: str) -> set[str]:
        at = self.events.index(("step", step))
        return {path for kind, path in self.events[:at] if kind == "sync"}

    def synced_between(self, first: str, last: str) -> set[str]:
        a, b = self.events.index(("step", first)), self.events.index(("step", last))
        return {path for kind, path in self.events[a:b] if kind == "sync"}


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> Synced:
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name a file descriptor's path")
    recorder = Synced()
    monkeypatch.setattr(search.index.durable.os, "fsync", recorder.fsync)
    monkeypatch.setattr(search.index.writers, "reached", recorder.reached)
    return recorder


def test_a_build_is_synced_file_by_file_before_its_rename_and_the_renames_before_the_write_returns(
    tmp_path: Path, synced: Synced
) -> None:
    svc = make_service(tmp_path, LanguageDetector(["en", "ru"], preload=False))
    write(tmp_path / "corpus" / "a.txt", "Cats sleep in the sun.\n\nDogs bark at strangers.\n")
    write(tmp_path / "corpus" / "b.txt", "Кошки спят на солнце.\n")
    summary = svc.build([tmp_path / "corpus"])

    index = svc.settings.index_dir.resolve()
    build = current_build(index)
    assert build is not None and build.name == summary.build_id
    files = {p for p in build.rglob("*") if p.is_file()}
    folders = {p for p in build.rglob("*") if p.is_dir()}
    assert len(files) >= 6 and folders  # manifest, vectors, raw, centering, passages, the lexical folder's files
    # before the rename the build still has its hidden staging name: the same files under it, and its folders
    staging = {Path(p) for p in synced.synced_before("rename") if ".tmp-" in p}
    staging_root = next(p for p in staging if p.name.startswith(".tmp-") and p.parent == index / "builds")
    as_staged = {staging_root / p.relative_to(build) for p in files | folders}
    assert as_staged <= staging and staging_root in staging
    # the rename of the build into builds/, then the swap of `current` in the index folder (and, for a first
    # build, the index folder in its parent), synced before the publishing is done
    after = synced.synced_between("rename", "done")
    assert {str(index / "builds"), str(index), str(index.parent)} <= after


def test_sync_tree_counts_every_file_and_skips_symlinks(tmp_path: Path, synced: Synced) -> None:
    write(tmp_path / "tree" / "a.bin", b"a")
    write(tmp_path / "tree" / "sub" / "b.bin", b"b")
    (tmp_path / "tree" / "link").symlink_to("a.bin")
    assert sync_tree(tmp_path / "tree") == 2
    paths = [p for kind, p in synced.events if kind == "sync"]
    # a folder after what is in it: sub/b.bin, then sub, …, then the tree itself last
    assert paths.index(str(tmp_path / "tree" / "sub" / "b.bin")) < paths.index(str(tmp_path / "tree" / "sub"))
    assert paths[-1] == str(tmp_path / "tree")


def test_a_segment_write_syncs_its_new_files_and_every_folder_but_not_the_linked_files(
    tmp_path: Path, synced: Synced
) -> None:
    svc = make_service(tmp_path, LanguageDetector(["en", "ru"], preload=False), merges="off")
    write(tmp_path / "corpus" / "a.txt", "Cats sleep in the sun.\n\nDogs bark at strangers.\n")
    svc.build([tmp_path / "corpus"])
    svc.load()
    synced.events.clear()
    svc.upsert_article(Article("b.txt", "b", "Birds sing at dawn.\n\nOwls hunt at night.", "api"))

    build = current_build(svc.settings.index_dir.resolve())
    assert build is not None
    staging = {Path(p) for p in synced.synced_before("rename") if ".tmp-" in p}
    staging_root = next(p for p in staging if p.name.startswith(".tmp-") and p.parent == build.parent)
    new_segment = next(p for p in build.iterdir() if p.is_dir() and p.name.startswith("seg-"))
    new = {p for p in new_segment.rglob("*") if p.is_file()} | {build / "manifest.json"}
    linked = {p for p in build.rglob("*") if p.is_file()} - new
    folders = {p for p in build.rglob("*") if p.is_dir()} | {build}
    assert linked and len(new) >= 5

    def as_staged(paths: set[Path]) -> set[Path]:
        return {staging_root / p.relative_to(build) for p in paths}

    assert as_staged(new | folders) <= staging
    assert not as_staged(linked) & staging  # the base build's files were synced when it was written
