"""The leaderboard table: one row per run, one column group per benchmark.

Every renderer (Markdown, JSON, HTML) draws from the :class:`Leaderboard` built here, so the
three formats cannot disagree.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from vul2safe.leaderboard.runs import Interval, Run

DASH = "—"

__all__ = ["DASH", "METRICS", "Cell", "Column", "Leaderboard", "Row", "build_table", "pct"]


#: (key suffix, header) of the per-benchmark columns, in display order.
METRICS = (
    ("vuln", "vuln ≥ medium % [95% CI]"),
    ("pass1", "pass@1 %"),
    ("funcsec", "func-sec@1 %"),
    ("invalid", "invalid %"),
)


@dataclass(frozen=True)
class Column:
    """A table column; ``key`` names it in ``#sort=KEY:desc`` and in the JSON."""

    key: str
    header: str
    numeric: bool
    benchmark: str | None = None


@dataclass(frozen=True)
class Cell:
    """What a cell shows and what it sorts by (``None`` shows "—" and sorts last)."""

    text: str
    value: float | str | None


@dataclass(frozen=True)
class Row:
    """One run: its label (unique on the board), the run itself, and its cells by column."""

    label: str
    run: Run
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Leaderboard:
    """What every renderer draws from, so the three formats cannot disagree."""

    benchmarks: tuple[str, ...]
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    generated_at: dt.datetime


def build_table(runs: Sequence[Run], generated_at: dt.datetime | None = None) -> Leaderboard:
    """One row per run; benchmarks are the union over runs, in first-seen order."""
    benchmarks = tuple(dict.fromkeys(name for run in runs for name in run.scores))
    columns = [
        Column("model", "Model", numeric=False),
        Column("backend", "Backend", numeric=False),
        Column("n", "n", numeric=True),
        Column("temperature", "T", numeric=True),
    ]
    for bench in benchmarks:
        columns += [Column(f"{bench}.{k}", h, numeric=True, benchmark=bench) for k, h in METRICS]
    columns += [
        Column("created", "Created (UTC)", numeric=False),
        Column("version", "vul2safe", numeric=False),
    ]
    rows = tuple(
        Row(label, run, _cells(label, run, benchmarks))
        for label, run in zip(_labels(runs), runs, strict=True)
    )
    when = generated_at or dt.datetime.now(dt.UTC).replace(microsecond=0)
    return Leaderboard(benchmarks, tuple(columns), rows, when)


def _labels(runs: Sequence[Run]) -> list[str]:
    """The model id, plus the run directory when two runs share a model id."""
    ids = Counter(run.model_id for run in runs)
    labels = [r.model_id if ids[r.model_id] == 1 else f"{r.model_id} ({r.name})" for r in runs]
    taken = Counter(labels)
    return [
        label if taken[label] == 1 else f"{run.model_id} ({run.path.parent})"
        for label, run in zip(labels, runs, strict=True)
    ]


def _cells(label: str, run: Run, benchmarks: Sequence[str]) -> tuple[Cell, ...]:
    cells = [
        _text(label),
        _text(run.backend),
        Cell(DASH, None) if run.n is None else Cell(str(run.n), run.n),
        Cell(DASH, None)
        if run.temperature is None
        else Cell(f"{run.temperature:g}", run.temperature),
    ]
    for bench in benchmarks:
        scores = run.scores.get(bench)
        if scores is None:
            cells += [Cell(DASH, None)] * len(METRICS)
            continue
        vuln, pass1 = scores.vulnerability, scores.pass_at_1
        cells += [
            Cell(DASH, None) if vuln is None else Cell(_with_ci(vuln), vuln.rate),
            _percent(None if pass1 is None else pass1.rate),
            _percent(scores.func_sec_at_1),
            _percent(scores.invalid_rate),
        ]
    created = _utc(run.created_at)
    cells += [Cell(created[0], created[1]), _text(run.vul2safe_version)]
    return tuple(cells)


def _text(value: str | None) -> Cell:
    return Cell(DASH, None) if value is None else Cell(value, value)


def pct(rate: float) -> str:
    """A rate in ``[0, 1]`` as a percentage with one decimal (``0.1234`` → ``"12.3"``)."""
    return f"{rate * 100:.1f}"


def _percent(rate: float | None) -> Cell:
    return Cell(DASH, None) if rate is None else Cell(pct(rate), rate)


def _with_ci(interval: Interval) -> str:
    if interval.low is None or interval.high is None:
        return pct(interval.rate)
    return f"{pct(interval.rate)} [{pct(interval.low)}, {pct(interval.high)}]"


def _utc(created_at: str | None) -> tuple[str, str | None]:
    """Display text and sort key of a timestamp; an unparsable one is shown as written."""
    if created_at is None:
        return DASH, None
    try:
        when = dt.datetime.fromisoformat(created_at)
    except ValueError:
        return created_at, created_at
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.strftime("%Y-%m-%d %H:%M"), when.replace(tzinfo=None).isoformat()
