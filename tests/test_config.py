"""Settings (`search/config.py`): read from SEARCH_* variables, overridden by options, refused in one line when bad."""

from __future__ import annotations

import pytest

from search.config import FLAT_MAX, Settings, load_settings
from search.errors import BadInput, BadSettings
from search.records import MODES


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: a SEARCH_* variable of the shell running the suite must not leak in."""
    for name in ("SEARCH_DEFAULT_MODE", "SEARCH_FLAT_MAX", "SEARCH_MAX_K"):
        monkeypatch.delenv(name, raising=False)


def test_a_bad_mode_in_the_environment_names_the_variable_the_value_and_the_choices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEARCH_DEFAULT_MODE", "bogus")

    with pytest.raises(BadSettings) as info:
        load_settings()

    message = str(info.value)
    assert message.startswith("SEARCH_DEFAULT_MODE='bogus'") and "\n" not in message
    assert all(f"'{mode}'" in message for mode in MODES), message
    assert isinstance(info.value, BadInput)  # the edges report it like any bad input (CLI exit code 2)


def test_a_bad_override_is_named_like_the_variable() -> None:
    with pytest.raises(BadSettings, match="^SEARCH_DEFAULT_MODE='fuzzy'"):
        load_settings(default_mode="fuzzy")


def test_a_bad_number_is_named_and_every_problem_is_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEARCH_FLAT_MAX", "-1")
    monkeypatch.setenv("SEARCH_DEFAULT_MODE", "bogus")

    with pytest.raises(BadSettings) as info:
        load_settings()

    problems = str(info.value).split("; ")
    assert sorted(p.split("=")[0] for p in problems) == ["SEARCH_DEFAULT_MODE", "SEARCH_FLAT_MAX"], problems


def test_the_environment_is_read_and_an_override_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEARCH_DEFAULT_MODE", "lexical")
    monkeypatch.setenv("SEARCH_MAX_K", "7")

    assert load_settings().default_mode == "lexical" and load_settings().max_k == 7
    overridden = load_settings(default_mode="dense", max_k=9)
    assert (overridden.default_mode, overridden.max_k) == ("dense", 9)


def test_an_override_fixes_a_bad_environment_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEARCH_DEFAULT_MODE", "bogus")

    assert load_settings(default_mode="dense").default_mode == "dense"


def test_flat_max_defaults_to_the_measured_crossover() -> None:
    assert Settings().flat_max == FLAT_MAX
    assert load_settings().flat_max == FLAT_MAX
