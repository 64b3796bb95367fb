"""Snapshots (`search snapshot`, POST /admin/snapshot): a consistent, self-contained copy of the published build,
hard-linked or copied, verified, loadable as an index folder, taken while writes go on (the fake embedder)."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import search.cli
import search.index.snapshot
from search.config import Settings
from search.errors import BadInput, IndexCorrupt, IndexNotFound
from search.index.store import current_build
from search.ingest.language import LanguageDetector
from search.records import SearchQuery
from search.serve.app import create_app
from search.service import SearchService
from tests.fakes import FakeEmbedder
from tests.helpers import error_of, make_service, small_service, write


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector(["en", "ru"], preload=False)


def corpus(folder: Path, tag: str, n: int = 4) -> Path:
    for i in range(n):
        write(folder / f"{tag}-{i}.txt", f"{tag} article {i}. Cats sleep in the sun {i}.\n\nКошки спят на солнце.\n")
    return folder


def open_index(index: Path, detector: LanguageDetector) -> SearchService:
    """A service on `index` as `search serve --index` / `search query --index` would open it."""
    settings = Settings(model="fake-model", index_dir=index, cache_dir=index.parent / "cache-of-reader")
    return SearchService(settings, embedder=FakeEmbedder(), detector=detector)


def test_a_snapshot_is_the_published_build_hard_linked_and_serves_as_is(
    tmp_path: Path, detector: LanguageDetector
) -> None:
    svc = make_service(tmp_path, detector)
    built = svc.build([corpus(tmp_path / "a", "alpha")])
    summary = svc.snapshot(tmp_path / "snap")

    source = current_build(svc.settings.index_dir)
    assert source is not None and summary.build_id == built.build_id == source.name
    copy = tmp_path / "snap" / "builds" / built.build_id
    assert current_build(tmp_path / "snap") == copy.resolve()
    files = sorted(p.relative_to(source) for p in source.rglob("*") if p.is_file())
    assert sorted(p.relative_to(copy) for p in copy.rglob("*") if p.is_file()) == files
    assert summary.files == len(files) == summary.linked and summary.copied == 0
    assert all(os.path.samefile(source / f, copy / f) for f in files)  # hard links: no bytes copied
    assert not (tmp_path / "snap" / "embeddings.sqlite").exists()  # the cache is not part of the state

    reader = open_index(tmp_path / "snap", detector)
    assert reader.load().build_id == built.build_id  # checksums verified on load
    for mode in ("dense", "lexical"):
        q = SearchQuery("cats sleep", k=3, mode=mode)  # type: ignore[arg-type]
        assert [h.passage.passage_id for h in reader.search(q).hits] == [
            h.passage.passage_id for h in svc.search(q).hits
        ]


def test_where_links_fail_the_files_are_copied(
    tmp_path: Path, detector: LanguageDetector, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = make_service(tmp_path, detector)
    svc.build([corpus(tmp_path / "a", "alpha")])

    def cross_device(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(search.index.snapshot.os, "link", cross_device)
    summary = svc.snapshot(tmp_path / "snap")
    assert summary.copied == summary.files > 0 and summary.linked == 0
    build = tmp_path / "snap" / "builds" / summary.build_id
    assert not os.path.samefile(build / "vectors.faiss", current_build(svc.settings.index_dir) / "vectors.faiss")  # type: ignore[operator]
    assert {a.article_id for a in open_index(tmp_path / "snap", detector).articles()} == {
        f"alpha-{i}.txt" for i in range(4)
    }


def test_out_must_be_new_or_empty_and_a_failed_snapshot_leaves_it_so(
    tmp_path: Path, detector: LanguageDetector
) -> None:
    svc = make_service(tmp_path, detector)
    with pytest.raises(IndexNotFound, match=r"no index in .*index/ to snapshot: build one with `search index"):
        svc.snapshot(tmp_path / "snap")
    assert not (tmp_path / "snap").exists()
    svc.build([corpus(tmp_path / "a", "alpha")])
    write(tmp_path / "full" / "notes.txt", "mine")
    with pytest.raises(BadInput, match=r"full/ is not empty; give a new path \(or an empty folder\)"):
        svc.snapshot(tmp_path / "full")
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["notes.txt"]
    with pytest.raises(BadInput, match="notes.txt: exists and is not a folder"):
        svc.snapshot(tmp_path / "full" / "notes.txt")
    (tmp_path / "empty").mkdir()
    assert svc.snapshot(tmp_path / "empty").files > 0


def test_a_damaged_build_is_not_snapshotted(tmp_path: Path, detector: LanguageDetector) -> None:
    svc = make_service(tmp_path, detector)
    svc.build([corpus(tmp_path / "a", "alpha")])
    vectors = current_build(svc.settings.index_dir) / "vectors.faiss"  # type: ignore[operator]
    data = bytearray(vectors.read_bytes())
    data[len(data) // 2] ^= 0xFF
    vectors.write_bytes(bytes(data))
    with pytest.raises(IndexCorrupt, match=r"vectors.faiss does not match its checksum .* nothing was snapshotted"):
        svc.snapshot(tmp_path / "snap")
    assert not (tmp_path / "snap").exists()


def test_snapshots_taken_while_writes_go_on_are_each_one_whole_published_build(
    tmp_path: Path, detector: LanguageDetector
) -> None:
    """A writer publishes build after build (each prunes all but the last two) while snapshots are taken; each
    snapshot loads, answers, and holds exactly the corpus of one published build."""
    writer = make_service(tmp_path, detector)
    corpora = {tag: corpus(tmp_path / tag, tag, 3 + i) for i, tag in enumerate(("red", "green", "blue"))}
    published = {writer.build([corpora["red"]]).build_id: "red"}
    stop, failures = threading.Event(), []

    def write_on() -> None:
        try:
            n = 0
            while not stop.is_set():
                tag = ("green", "blue", "red")[n % 3]
                published[writer.build([corpora[tag]]).build_id] = tag
                n += 1
        except BaseException as exc:  # reported by the test, not lost in the thread
            failures.append(exc)

    thread = threading.Thread(target=write_on)
    thread.start()
    snaps = []
    try:
        # until at least four builds were published while snapshots were being taken
        while (len(snaps) < 6 or len(published) < 5) and not failures and len(snaps) < 500:
            snaps.append(writer.snapshot(tmp_path / "snaps" / f"s{len(snaps)}"))
    finally:
        stop.set()
        thread.join(timeout=300)
    assert not failures and not thread.is_alive() and len(published) >= 5
    assert len({s.build_id for s in snaps}) >= 2  # the snapshots saw the writes go on
    for s in snaps:
        tag = published[s.build_id]  # one of the published builds
        reader = open_index(Path(s.path), detector)
        assert reader.load().build_id == s.build_id
        want = {f"{tag}-{i}.txt" for i in range(3 + ("red", "green", "blue").index(tag))}
        assert {a.article_id for a in reader.articles()} == want
        assert reader.search(SearchQuery("cats sleep in the sun", k=2)).hits


def test_a_build_pruned_while_it_is_being_linked_makes_the_snapshot_start_over_from_the_new_current(
    tmp_path: Path, detector: LanguageDetector, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = make_service(tmp_path, detector)
    first = svc.build([corpus(tmp_path / "a", "alpha")]).build_id
    real_link, newest = os.link, []

    def link_after_two_writes(src: Path, dst: Path) -> None:
        if not newest:  # two more publishes: the build being copied is pruned (only the last two are kept)
            svc.build([corpus(tmp_path / "b", "beta")])
            newest.append(svc.build([corpus(tmp_path / "c", "gamma", 2)]).build_id)
            assert not (tmp_path / "index" / "builds" / first).exists()
        real_link(src, dst)

    monkeypatch.setattr(search.index.snapshot.os, "link", link_after_two_writes)
    summary = svc.snapshot(tmp_path / "snap")
    assert summary.build_id == newest[0] != first
    assert sorted(p.name for p in (tmp_path / "snap" / "builds").iterdir()) == [newest[0]]  # nothing of the first
    assert {a.article_id for a in open_index(tmp_path / "snap", detector).articles()} == {"gamma-0.txt", "gamma-1.txt"}


def test_search_snapshot_command(tmp_path: Path, detector: LanguageDetector, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = make_service(tmp_path, detector)
    built = svc.build([corpus(tmp_path / "a", "alpha")])
    monkeypatch.setattr(search.cli, "_service", lambda settings: SearchService(settings, FakeEmbedder(), detector))
    monkeypatch.setenv("SEARCH_MODEL", "fake-model")
    runner = CliRunner()
    index, out = str(svc.settings.index_dir), str(tmp_path / "snap")
    r = runner.invoke(search.cli.app, ["snapshot", "--index", index, out, "--json"])
    assert r.exit_code == 0, r.output
    assert f"snapshot of build {built.build_id} from {index}/ -> {out}/" in r.output and "verified" in r.output
    r = runner.invoke(search.cli.app, ["snapshot", "--index", index, out])
    assert isinstance(r.exception, BadInput) and "is not empty" in str(r.exception)


def test_post_admin_snapshot_writes_only_inside_the_snapshot_dir(tmp_path: Path) -> None:
    snaps = tmp_path / "snapshots"
    snaps.mkdir()
    svc = small_service(
        tmp_path, writes=True, snapshot_dir=snaps, api_keys="reader-key-0123456789,admin-key-0123456789:admin"
    )
    admin = {"Authorization": "Bearer admin-key-0123456789"}
    with TestClient(create_app(service=svc)) as client:
        r = client.post("/admin/snapshot", json={"name": "nightly"}, headers=admin)
        assert r.status_code == 200, r.text
        assert r.json()["path"] == str(snaps / "nightly") and r.json()["build_id"] == svc.store.build_id
        assert open_index(snaps / "nightly", LanguageDetector(["en", "ru"], preload=False)).articles()
        again = client.post("/admin/snapshot", json={"name": "nightly"}, headers=admin)
        assert again.status_code == 422 and "nightly/ is not empty" in again.json()["error"]["message"]
        for bad in ("../out", "/tmp/out", ".hidden", "a/b", ""):
            r = client.post("/admin/snapshot", json={"name": bad}, headers=admin)
            assert r.status_code == 422 and error_of(r) == "bad_input", (bad, r.text)
        assert sorted(p.name for p in snaps.iterdir()) == ["nightly"] and not (tmp_path / "out").exists()
        reader = {"Authorization": "Bearer reader-key-0123456789"}
        assert client.post("/admin/snapshot", json={"name": "x"}, headers=reader).status_code == 403


def test_post_admin_snapshot_is_off_without_a_snapshot_dir_or_writes(tmp_path: Path) -> None:
    svc = small_service(tmp_path, writes=True)
    with TestClient(create_app(service=svc)) as client:
        r = client.post("/admin/snapshot", json={"name": "nightly"})
        assert r.status_code == 403 and "SEARCH_SNAPSHOT_DIR" in r.json()["error"]["message"]
    svc.settings.writes = False
    with TestClient(create_app(service=svc)) as client:
        r = client.post("/admin/snapshot", json={"name": "nightly"})
        assert r.status_code == 403 and "writes are off" in r.json()["error"]["message"]
