"""The one progress display of the CLI: named rich bars on stderr, only on a terminal.

Every long command (scan, eval, build) shows the same kind of bars, so they are built once
here. Off a terminal (CI logs, pipes) :func:`progress_bars` yields ``None``, and callers pass
that on as "no progress callback": nothing is drawn and nothing is computed for it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["Bars", "progress_bars"]


class Bars:
    """Bars on one live display: by name (:meth:`advance`, :meth:`update`: created on first
    use) or as counters (:meth:`counter`: one new bar per call)."""

    def __init__(self, progress: Any) -> None:
        self._progress = progress
        self._tasks: dict[str, Any] = {}

    def _task(self, name: str, total: int) -> Any:
        if name not in self._tasks:
            self._tasks[name] = self._progress.add_task(name, total=max(total, 1))
        return self._tasks[name]

    def counter(self, name: str, total: int) -> Callable[[int], None]:
        """A new bar (even when one of that name exists: phases repeat per benchmark); the
        returned function advances it by ``count``."""
        task = self._progress.add_task(name, total=max(total, 1))
        return lambda count: self._progress.advance(task, count)

    def advance(self, name: str, count: int, total: int) -> None:
        """Advance bar ``name`` (out of ``total``) by ``count``."""
        self._progress.advance(self._task(name, total), count)

    def update(self, name: str, done: int, total: int) -> None:
        """Set bar ``name`` to ``done`` of ``total``."""
        self._progress.update(self._task(name, total), completed=done, total=max(total, 1))


@contextmanager
def progress_bars(*, transient: bool = True) -> Iterator[Bars | None]:
    """Bars on stderr while the block runs (``transient``: erased at the end); ``None``
    when stderr is not a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=transient,
    )
    with progress:
        yield Bars(progress)
