"""`vul2safe tools`: the isolated Semgrep/codeshield environment, found or clearly missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vul2safe import tools


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vul2safe", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_status_of_the_installed_environment() -> None:
    proc = run_cli("tools", "status")
    assert proc.returncode == 0, proc.stderr  # `vul2safe tools install` ran in setup
    info = json.loads(proc.stdout)
    assert info["ok"] is True
    assert info["installed"] == {
        "semgrep": tools.SEMGREP_VERSION,
        "codeshield": tools.CODESHIELD_VERSION,
    }
    assert Path(info["semgrep_core"]).is_file()


def test_location_does_not_follow_vul2safe_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """VUL2SAFE_HOME is a cache (a fresh one per test); the tools are an installation."""
    monkeypatch.delenv("VUL2SAFE_TOOLS_DIR", raising=False)
    monkeypatch.setenv("VUL2SAFE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert tools.tools_dir() == tmp_path / "data" / "vul2safe" / "tools"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert tools.tools_dir() == Path.home() / ".local" / "share" / "vul2safe" / "tools"
    monkeypatch.setenv("VUL2SAFE_TOOLS_DIR", str(tmp_path / "elsewhere"))
    assert tools.venv_dir() == tmp_path / "elsewhere" / "venv"


def test_missing_environment_one_line_and_plugins_say_how_to_install(tmp_path: Path) -> None:
    env = {"VUL2SAFE_TOOLS_DIR": str(tmp_path / "none")}
    proc = run_cli("tools", "status", env=env)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "vul2safe tools install" in proc.stderr
    rows = json.loads(run_cli("plugins", "--json", env=env).stdout)
    scanners = {k: v for row in rows for k, v in row.get("scanners", {}).items()}
    for name in ("semgrep", "icd"):
        assert scanners[name]["available"] is False
        assert "vul2safe tools install" in scanners[name]["reason"]
    assert scanners["bandit"]["available"] is True  # the rest still work
