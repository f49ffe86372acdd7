"""The guard that fails a full run when pytest skipped a test file on disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _project(tmp_path: Path, norecursedirs: str | None) -> Path:
    ini = "[pytest]\ntestpaths = tests\n" + (
        f"norecursedirs = {norecursedirs}\n" if norecursedirs is not None else ""
    )
    (tmp_path / "pytest.ini").write_text(ini)
    (tmp_path / "tests" / "build").mkdir(parents=True)
    (tmp_path / "tests" / "conftest.py").write_text('pytest_plugins = ["collection_guard"]\n')
    (tmp_path / "tests" / "test_top.py").write_text("def test_top():\n    pass\n")
    (tmp_path / "tests" / "build" / "test_hidden.py").write_text("def test_hidden():\n    pass\n")
    return tmp_path


def _pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_full_run_fails_when_a_test_file_is_not_collected(tmp_path: Path) -> None:
    proc = _pytest(_project(tmp_path, norecursedirs=None))  # pytest's default skips build/
    assert proc.returncode != 0
    assert "did not collect" in proc.stderr + proc.stdout
    assert "tests/build/test_hidden.py" in proc.stderr + proc.stdout


def test_full_run_passes_when_every_file_is_collected(tmp_path: Path) -> None:
    proc = _pytest(_project(tmp_path, norecursedirs=".*"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout


def test_explicit_paths_are_not_checked(tmp_path: Path) -> None:
    project = _project(tmp_path, norecursedirs=None)
    proc = _pytest(project, "tests/test_top.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
