"""Making what a writer wrote survive a crash: fsync of files, of folders, and of the folder after a rename.

A rename is atomic for readers at once, but durable only once the folder holding the new name is synced: until
then a power loss may bring back the old name, or a new name pointing at files whose data never reached the disk.
So a build's files and folders are synced before the rename that publishes them, and the parent folder after it.
kill -9 alone never needs this (the kernel's page cache outlives the process); a power cut or a kernel crash does.
"""

from __future__ import annotations

import os
from pathlib import Path


def sync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_dir(path: Path) -> None:
    """Sync a folder's entries (names created, renamed or removed in it); Linux and macOS allow fsync on a
    folder opened read-only."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_tree(folder: Path, skip: set[str] | frozenset[str] = frozenset()) -> int:
    """Sync every file under `folder` but those named in `skip` (paths relative to it: hard links to files synced
    before), then every folder bottom-up (a folder after the entries in it), and return how many files were synced."""
    files = 0
    for root, _dirs, names in os.walk(folder, topdown=False):
        for name in names:
            path = Path(root) / name
            if not path.is_symlink() and path.relative_to(folder).as_posix() not in skip:
                sync_file(path)
                files += 1
        sync_dir(Path(root))
    return files
