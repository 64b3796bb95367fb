"""One writer per index folder: an inter-process lock, hidden folders named after the process that owns them, and
the clean-up of what a dead writer left behind.

Every writer (`search index`, `search remove`, a server's PUT/DELETE) holds `<index>/.writer.lock` from the moment
it reads what it will change until its build is published; readers (searches, `search serve` loading or reloading
a build) never take it. While it holds the lock, a writer's pid, host and task are in `<index>/.writer.json`, so a
second writer can say whom it is waiting for.

What a writer creates before publishing is hidden and owned: `.tmp-<build_id>-<host>-<pid>` (a build being
written), `.current-<build_id>-<host>-<pid>` (the symlink about to replace `current`), `.trash-<build_id>-<host>-<pid>`
(an old build being deleted). A later writer removes such a folder only when its owner is gone: same host, and no
process with that pid. A folder from another host is left alone (its owner cannot be probed from here).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from filelock import FileLock, Timeout

from search.errors import IndexBusy

log = logging.getLogger(__name__)

LOCK = ".writer.lock"
OWNER = ".writer.json"

# The steps of publishing a build, in order (store.write_build and store.publish): writing the files into the
# hidden staging folder, renaming it to its final name, swapping `current`, deleting builds older than the kept ones,
# and done: published and synced to disk, so the writer may answer (the write is acknowledged after this point).
Step = Literal["write", "rename", "swap", "prune", "done"]
STEPS: tuple[Step, ...] = ("write", "rename", "swap", "prune", "done")

Kind = Literal["tmp", "current", "trash"]
_OWNED = re.compile(r"^\.(?P<kind>tmp|current|trash)-(?P<id>.+)-(?P<host>[A-Za-z0-9._]+)-(?P<pid>\d+)$")
# Staging folders of builds made before folders carried their owner; no writer of this version makes them.
_UNOWNED = re.compile(r"^\.tmp-\d{8}T\d{6}Z-[0-9a-f]{6}$")


def reached(step: Step) -> None:
    """Called by a writer inside each publishing step (before its atomic rename, for the steps that are one);
    tests replace it to stop, and kill, a build there."""
    log.debug("publishing: %s", step)


def this_host() -> str:
    """The host name as it appears in owned names: `-` and anything unusual become `_`, so names split cleanly."""
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "localhost"


def owned_name(kind: Kind, build_id: str) -> str:
    return f".{kind}-{build_id}-{this_host()}-{os.getpid()}"


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def is_stale(name: str) -> bool:
    """Whether a hidden entry of the index folder was left by a writer that is gone."""
    m = _OWNED.match(name)
    if m is None:
        return _UNOWNED.match(name) is not None
    return m["host"] == this_host() and not pid_alive(int(m["pid"]))


def clean_stale(folder: Path) -> list[Path]:
    """Remove what dead writers left in `folder` (staging folders, half-swapped links, half-deleted builds)."""
    removed = []
    for entry in sorted(folder.glob(".*")) if folder.is_dir() else []:
        if not is_stale(entry.name):
            continue
        if entry.is_symlink() or entry.is_file():
            entry.unlink(missing_ok=True)
        else:
            shutil.rmtree(entry, ignore_errors=True)
        log.info("removed %s, left by a writer that is gone", entry)
        removed.append(entry)
    return removed


def holder(index_dir: Path) -> str:
    """Who holds the writer lock, as far as `.writer.json` says."""
    try:
        owner = json.loads((index_dir / OWNER).read_text(encoding="utf-8"))
        pid, host = int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
    if host == this_host() and not pid_alive(pid):  # its record, but not its lock: a newer writer is starting
        return "another process"
    return f"pid {pid} on {host} ({owner.get('doing', 'a write')}, since {owner.get('since', '?')})"


@contextmanager
def writer_lock(index_dir: Path, timeout: float, doing: str) -> Iterator[None]:
    """Hold the index folder's writer lock; wait up to `timeout` seconds for another writer (saying whom), then
    raise IndexBusy. The kernel drops the lock when its process dies, even by kill -9."""
    index_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(index_dir / LOCK, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        who = holder(index_dir)
        if timeout <= 0:
            raise IndexBusy(
                f"{index_dir}/ is being written by {who}; try again when it has finished "
                "(or set SEARCH_WRITE_LOCK_TIMEOUT to wait for it)"
            ) from None
        log.warning("%s/ is being written by %s; waiting up to %g s for it to finish", index_dir, who, timeout)
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise IndexBusy(
                f"{index_dir}/ is still being written by {holder(index_dir)} after {timeout:g} s; try again when "
                "it has finished (or raise SEARCH_WRITE_LOCK_TIMEOUT)"
            ) from None
    try:
        record = {
            "pid": os.getpid(),
            "host": this_host(),
            "doing": doing,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (index_dir / OWNER).write_text(json.dumps(record), encoding="utf-8")
        yield
    finally:
        (index_dir / OWNER).unlink(missing_ok=True)
        lock.release()
