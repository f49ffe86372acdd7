"""Shared fixtures: every test runs offline with its own state directory."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"
FIXTURES = SHARED / "fixtures"


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Point every cache at a per-test directory and forbid Hub downloads."""
    home = tmp_path_factory.mktemp("vul2safe-home")
    monkeypatch.setenv("VUL2SAFE_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.delenv("VUL2SAFE_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("VUL2SAFE_LOAD_PLUGINS", raising=False)
    yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not DATA.is_dir():
        pytest.fail(f"shared data not found at {DATA}; tests need ../shared/data beside the repo")
    return DATA


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    return FIXTURES
