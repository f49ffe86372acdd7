"""The registry: defaults load, duplicates fail, unknown names explain, env controls work."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pluggy
import pytest

from vul2safe import hookimpl, plugins
from vul2safe.errors import DuplicatePluginError, UnknownPluginError
from vul2safe.scanning import Availability, BatchResult, Scanner

IN_TREE_SCANNERS = {"bandit", "semgrep", "icd", "flawfinder", "cppcheck", "codeql", "sarif"}


class _Dummy(Scanner):
    languages = frozenset({"python"})

    def __init__(self, name: str) -> None:
        self.name = name  # type: ignore[misc]

    def version(self) -> str:
        return "0"

    def available(self) -> Availability:
        return Availability(True)

    def scan_batch(self, targets, options, timeout_s):  # type: ignore[no-untyped-def]
        return BatchResult()


@pytest.fixture
def throwaway_plugin():
    """Register a plugin for one test and unregister it after (llm's conftest does this)."""
    registered: list[object] = []

    def add(plugin: object, name: str) -> None:
        plugins.load_plugins()
        plugins.pm.register(plugin, name)
        registered.append(plugin)
        plugins.reset_registries()

    yield add
    for plugin in registered:
        plugins.pm.unregister(plugin)
    plugins.reset_registries()


def test_in_tree_scanners_are_registered_through_hooks() -> None:
    assert set(plugins.scanners.names()) >= IN_TREE_SCANNERS
    assert plugins.scanners.owner("bandit") == "vul2safe.plugins.scanner.bandit"


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(UnknownPluginError) as info:
        plugins.scanners.get("semgrap")
    message = str(info.value)
    assert "Unknown scanner 'semgrap'. Did you mean: semgrep?" in message
    assert "Available:" in message and "bandit" in message


def test_duplicate_names_are_an_error(throwaway_plugin) -> None:  # type: ignore[no-untyped-def]
    class Duplicate:
        @hookimpl
        def register_scanners(self, register):  # type: ignore[no-untyped-def]
            register(_Dummy("bandit"))

    throwaway_plugin(Duplicate(), "duplicate-bandit")
    with pytest.raises(DuplicatePluginError, match="two plugins register a scanner named 'bandit'"):
        plugins.scanners.names()


def test_third_party_plugin_adds_a_scanner(throwaway_plugin) -> None:  # type: ignore[no-untyped-def]
    class Extra:
        @hookimpl
        def register_scanners(self, register):  # type: ignore[no-untyped-def]
            register(_Dummy("extra-scanner"))

    throwaway_plugin(Extra(), "extra")
    assert plugins.scanners.get("extra-scanner").name == "extra-scanner"
    assert plugins.scanners.owner("extra-scanner") == "extra"


def test_misspelt_hook_fails_loudly() -> None:
    class Misspelt:
        @hookimpl
        def register_scanner(self, register):  # type: ignore[no-untyped-def]
            pass

    plugins.load_plugins()
    plugins.pm.register(Misspelt(), "misspelt")
    try:
        with pytest.raises(pluggy.PluginValidationError, match="register_scanner"):
            plugins.pm.check_pending()
    finally:
        plugins.pm.unregister(name="misspelt")


def _plugins_json(env: dict[str, str]) -> list[dict[str, object]]:
    proc = subprocess.run(
        [sys.executable, "-m", "vul2safe", "plugins", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=True,
    )
    return json.loads(proc.stdout)


def test_disable_plugins_env_blocks_a_plugin() -> None:
    rows = _plugins_json({"VUL2SAFE_DISABLE_PLUGINS": "bandit"})
    by_name = {row["name"]: row for row in rows}
    assert by_name["vul2safe.plugins.scanner.bandit"]["blocked"] is True
    provided = {n for row in rows for n in row["provides"].get("scanner", [])}  # type: ignore[union-attr]
    assert "bandit" not in provided and "semgrep" in provided


def test_plugins_json_lists_hooks_and_availability() -> None:
    rows = _plugins_json({})
    semgrep = next(row for row in rows if row["name"] == "vul2safe.plugins.scanner.semgrep")
    assert semgrep["hooks"] == ["register_scanners"]
    assert semgrep["scanners"]["semgrep"]["available"] is True  # type: ignore[index]
    codeql = next(row for row in rows if row["name"] == "vul2safe.plugins.scanner.codeql")
    status = codeql["scanners"]["codeql"]  # type: ignore[index]
    from vul2safe.plugins.scanner.codeql import INSTALL_HINT, find_codeql

    # availability is what the environment says, and the reason is the install hint exactly
    # when it is missing (this machine has no CodeQL; a CI with CodeQL checks the other side)
    assert status["available"] is (find_codeql() is not None)
    assert status["reason"] == ("" if status["available"] else INSTALL_HINT)
    icd = next(row for row in rows if row["name"] == "vul2safe.plugins.scanner.icd")
    assert icd["scanners"]["icd"] == {"available": True, "reason": ""}  # type: ignore[index]
