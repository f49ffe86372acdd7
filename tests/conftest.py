"""Shared fixtures: every test runs offline with its own state directory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# huggingface_hub / datasets read these once, at import: set them before any test module
# imports them, so nothing in a test session can reach the Hub.
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_name] = "1"
# Merged Semgrep rule packs are content-addressed: share them across the session's homes
# (each build runs one Semgrep validation pass, ~5 s) instead of rebuilding per test.
os.environ.setdefault("VUL2SAFE_RULES_DIR", tempfile.mkdtemp(prefix="vul2safe-rules-"))

#: session fixtures for generation: tiny_model_dir, openai_server (tests/ is on sys.path)
pytest_plugins = ["fixtures_generation", "collection_guard"]

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


@pytest.fixture
def require_bwrap() -> None:
    """Sandbox tests fail (not skip) without bubblewrap: a skip would hide a broken sandbox."""
    from vul2safe.sandbox import sandbox_available

    ok, reason = sandbox_available()
    if not ok:
        pytest.fail(f"no working bubblewrap: {reason}; apt-get install bubblewrap")
