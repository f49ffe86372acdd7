"""Fail a full test run when a test file on disk was not collected.

pytest silently skips whole folders (its default ``norecursedirs`` once hid the 191 tests in
``tests/vul2safe/build/``), and a file whose name or folder it ignores never shows up as a
failure. When pytest runs its configured ``testpaths`` (no explicit paths on the command
line, as CI does), every ``test_*.py`` under them must have been collected as a module, even if
its tests are then deselected by ``-m``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_collected: set[Path] = set()


def pytest_collectreport(report: pytest.CollectReport) -> None:
    path = getattr(report, "fspath", None) or report.nodeid.split("::", 1)[0]
    if str(path).endswith(".py"):
        _collected.add(Path(str(path)).resolve())


def uncollected(config: pytest.Config) -> list[str]:
    """Test files under ``testpaths`` that were never collected (relative to the rootdir)."""
    root = Path(config.rootpath)
    on_disk = {
        path.resolve()
        for base in config.getini("testpaths")
        for path in (root / base).rglob("test_*.py")
        if "__pycache__" not in path.parts
    }
    return sorted(str(p.relative_to(root)) for p in on_disk - _collected)


def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if config.args_source is not pytest.Config.ArgsSource.TESTPATHS:
        return  # the user picked paths or files: only a full run must cover everything
    missing = uncollected(config)
    if missing:
        raise pytest.UsageError(
            "test files on disk that pytest did not collect (check norecursedirs, "
            f"python_files, or an __init__.py clash): {', '.join(missing)}"
        )
