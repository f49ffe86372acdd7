"""A pytest plugin copied into each CWEval work dir and loaded with ``-p``; runs in the sandbox.

It does what upstream's ``cweval/run_tests.py`` collector does: every test marked
``functionality`` or ``security`` gets a per-test timeout (``V2S_TEST_TIMEOUT`` seconds,
signal method), and its ``call`` outcome is recorded. It also neutralises ``os._exit`` during
the session, as upstream does, so an answer calling it cannot end the run early. The record is
written to ``V2S_RESULTS`` (JSON) when the session ends. Standard library only: it is imported
by pytest inside the sandbox.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

_tests: dict[str, dict[str, Any]] = {}
_errors: list[str] = []
_real_exit = os._exit


def pytest_configure(config: pytest.Config) -> None:
    os._exit = lambda *args: None  # type: ignore[assignment]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """After ``-k`` deselection (trylast): only the tests that will run are recorded."""
    seconds = float(os.environ.get("V2S_TEST_TIMEOUT", "3"))
    for item in items:
        if item.get_closest_marker("functionality"):
            kind = "functionality"
        elif item.get_closest_marker("security"):
            kind = "security"
        else:
            continue
        item.add_marker(pytest.mark.timeout(seconds, method="signal"))
        _tests[item.nodeid] = {"id": item.nodeid, "kind": kind, "run": False, "passed": False}


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _errors.append(str(report.longrepr)[-2000:])


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    record = _tests.get(report.nodeid)
    if record is None:
        return
    if report.when == "call":
        record["run"] = True
        record["passed"] = report.outcome == "passed"
        if report.failed:
            record["error"] = str(report.longrepr)[-400:]
    elif report.failed:  # setup or teardown failed: the test did not pass
        record["passed"] = False
        record.setdefault("error", str(report.longrepr)[-400:])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    os._exit = _real_exit
    path = os.environ.get("V2S_RESULTS", "v2s_results.json")
    data = {
        "tests": list(_tests.values()),
        "collection_errors": _errors,
        "exitstatus": int(exitstatus),
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)
