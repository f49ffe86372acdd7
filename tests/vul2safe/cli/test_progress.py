"""The CLI's one progress helper: nothing off a terminal, named bars and counters on one."""

from __future__ import annotations

import io

import pytest

from vul2safe.cli.progress import progress_bars


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_there_is_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr", io.StringIO())
    with progress_bars() as bars:
        assert bars is None


def test_bars_by_name_and_counters(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    with progress_bars(transient=False) as bars:
        assert bars is not None
        bars.update("reflect", 3, 10)  # build: absolute position per stage
        bars.update("reflect", 7, 10)
        bars.advance("bandit", 2, 5)  # scan: one bar per scanner, advanced
        bars.advance("bandit", 1, 5)
        first = bars.counter("generating", 4)  # eval: a new bar per phase, same name or not
        second = bars.counter("generating", 0)
        first(3)
        second(1)
        tasks = {(t.description, t.id): t for t in bars._progress.tasks}
    assert [(d, t.completed, t.total) for (d, _), t in tasks.items()] == [
        ("reflect", 7, 10),
        ("bandit", 3, 5),
        ("generating", 3, 4),
        ("generating", 1, 1),  # an empty phase still gets a bar that can finish
    ]
    assert "reflect" in terminal.getvalue() and "7/10" in terminal.getvalue()
