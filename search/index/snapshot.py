"""Snapshots: a consistent, self-contained copy of an index folder's published build, loadable as an index folder.

A published build is never changed (a write publishes a new one), so a snapshot hard-links its files where the
file system allows (instant, no extra space) and copies them where it does not (another file system). It takes no
writer lock: it reads `current` once and copies that build, so it never waits for a write nor makes one wait. The
one race is a writer pruning that build while it is being linked (two more publishes in the meantime): a file
gone missing makes the snapshot start over from the new `current`. Every file is then checked against the
checksum in the build's manifest, so a snapshot is that build, whole, or an error.

    OUT/
      current -> builds/<build_id>
      builds/<build_id>/...             the build's files, linked or copied

The embedding cache is not part of it (a cache: a later build into OUT fills its own).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from search.errors import BadInput, IndexCorrupt, IndexNotFound
from search.index import durable
from search.index.store import MANIFEST, current_build, file_sha256

log = logging.getLogger(__name__)

_ATTEMPTS = 5
# errors of os.link that mean "this file system, or this pair of folders, cannot hard-link": copy instead
_NO_LINKS = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}


@dataclass
class SnapshotSummary:
    """What a snapshot holds and how it was made."""

    path: str
    build_id: str
    files: int
    bytes: int
    linked: int
    copied: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _BuildGone(Exception):
    """The build being copied was pruned by a writer meanwhile."""


def check_target(out: Path) -> None:
    """OUT must not exist, or be an empty folder: a snapshot never mixes with or overwrites other files."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise BadInput(f"{out}: exists and is not a folder; give a new path (or an empty folder) for the snapshot")
    if out.is_dir() and any(out.iterdir()):
        raise BadInput(f"{out}/ is not empty; give a new path (or an empty folder) for the snapshot")


def take_snapshot(index_dir: Path, out: Path) -> SnapshotSummary:
    """Copy the build that `current` points to into `out` (see the module's docstring) and return what it holds."""
    check_target(out)
    created = not out.exists()
    start = time.perf_counter()
    for _ in range(_ATTEMPTS):
        build = _current(index_dir)
        try:
            summary = _copy_build(build, out)
        except _BuildGone:
            log.info("build %s was pruned while being copied; starting over from the new current", build.name)
            _clear(out)
            continue
        except BaseException:
            _clear(out)  # no half snapshot: OUT is as it was (absent, or empty)
            if created:
                out.rmdir()
            raise
        summary.seconds = time.perf_counter() - start
        return summary
    raise BadInput(
        f"{index_dir}/: the published build changed {_ATTEMPTS} times while it was being copied to {out}; "
        "try again when writes are fewer"
    )


def _current(index_dir: Path) -> Path:
    # read once: a write swapping `current` later does not change the build being copied
    build = current_build(index_dir)
    if build is None:
        raise IndexNotFound(
            f"no index in {index_dir}/ to snapshot: build one with `search index PATH --index {index_dir}`"
        )
    return build


def _copy_build(build: Path, out: Path) -> SnapshotSummary:
    try:
        manifest = json.loads((build / MANIFEST).read_bytes())
        # the manifest first: a build is published only once it is complete, so its manifest lists every file
        files: dict[str, str] = manifest["files"]
    except FileNotFoundError:
        raise _BuildGone from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexCorrupt(f"{build / MANIFEST}: unreadable ({exc}); rebuild the index with `search index`") from exc
    target = out / "builds" / build.name
    target.mkdir(parents=True, exist_ok=True)
    linked = copied = size = 0
    for name in [*files, MANIFEST]:
        src, dst = build / name, target / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            if _link_or_copy(src, dst):
                linked += 1
            else:
                copied += 1
        except FileNotFoundError:
            raise _BuildGone from None
        size += dst.stat().st_size
    for name, checksum in files.items():
        if file_sha256(target / name) != checksum:
            raise IndexCorrupt(
                f"{build / name} does not match its checksum in the manifest; nothing was snapshotted: rebuild the "
                "index with `search index`, then snapshot again"
            )
    durable.sync_tree(out / "builds")
    link = out / "current"
    link.symlink_to(Path("builds") / build.name)
    durable.sync_dir(out)
    return SnapshotSummary(str(out), build.name, len(files) + 1, size, linked, copied, 0.0)


def _link_or_copy(src: Path, dst: Path) -> bool:
    """Hard-link `src` at `dst` (True), or copy it where the file system cannot (False)."""
    try:
        os.link(src, dst)
        return True
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
    shutil.copy2(src, dst)
    return False


def _clear(out: Path) -> None:
    """Empty `out` again (it was empty, or absent, when the snapshot began)."""
    for entry in out.iterdir() if out.is_dir() else []:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
