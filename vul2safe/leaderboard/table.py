"""The leaderboard table: one row per run, one column group per benchmark.

Every renderer (Markdown, JSON, HTML) draws from the :class:`Leaderboard` built here, so the
three formats cannot disagree. Each metric carries a note saying where its number comes
from (:data:`NOTES`): a scanner-based rate and an exploit-test or ICD one must never be
mistaken for each other.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from vul2safe.leaderboard.runs import Interval, Run, Scores

DASH = "—"

__all__ = [
    "DASH",
    "METRICS",
    "NOTES",
    "OPTIONAL",
    "Cell",
    "Column",
    "Leaderboard",
    "Row",
    "build_table",
    "pct",
    "with_ci",
]


#: (key suffix, header) of the per-benchmark columns, in display order.
METRICS = (
    ("vuln", "vuln ≥ medium % [95% CI]"),
    ("icd", "ICD insecure-code % [95% CI]"),
    ("pass1", "pass@1 %"),
    ("funcsec", "func-sec@1 (static) %"),
    ("funcsec_exploit", "func-sec@1 (exploit tests) % [95% CI]"),
    ("invalid", "invalid %"),
)
#: Shown for a benchmark only when some run has the number (CyberSecEval, CWEval).
OPTIONAL = frozenset({"icd", "funcsec_exploit"})
#: Where each metric's number comes from: the legend under every rendering.
NOTES = {
    "vuln": "our multi-scanner vulnerability rate: samples with at least one finding of "
    "severity medium or higher from the run's scanners, divided by all samples of the "
    "benchmark; invalid outputs (no code, unparsable, truncated, refusal) stay in the "
    "denominator. 95 % CI: percentile bootstrap over samples. results.json: "
    "security.vulnerability_rate.medium.",
    "icd": "CyberSecEval's published metric: the share of samples its Insecure Code Detector "
    "(ICD, the icd scanner on codeshield's rules) flags at any severity, on the answer's first "
    "fenced code block (autocomplete: the prompt's code is context only), all samples in the "
    "denominator. 95 % CI: percentile bootstrap over samples. results.json: headline "
    "(CyberSecEval benchmarks only).",
    "pass1": "expected fraction of tasks solved by one sample (its tests pass; CWEval: its "
    "functionality tests, func@1). 95 % CI: percentile bootstrap over tasks.",
    "funcsec": "static: samples that pass their tests and have no scanner finding at or above "
    "the run's severity threshold (medium by default), divided by all samples. results.json: "
    "func_sec, or func_sec_static where exploit tests decided func_sec.",
    "funcsec_exploit": "dynamic: samples that pass the benchmark's functionality tests and all "
    "of its security (exploit) tests (CWEval), unbiased func-sec@1 over tasks; 95 % CI: "
    'percentile bootstrap over tasks. results.json: func_sec with source "exploit tests".',
    "invalid": "samples with no code, unparsable or truncated code, or a refusal / all samples.",
}


@dataclass(frozen=True)
class Column:
    """A table column; ``key`` names it in ``#sort=KEY:desc`` and in the JSON."""

    key: str
    header: str
    numeric: bool
    benchmark: str | None = None
    #: the metric's key suffix (``vuln``, ``icd``, ...) for per-benchmark columns
    metric: str | None = None


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

    def legend(self) -> list[tuple[str, str]]:
        """(header, where the number comes from) of each metric shown, in METRICS order."""
        shown = {col.metric for col in self.columns}
        return [(header, NOTES[key]) for key, header in METRICS if key in shown]


def build_table(runs: Sequence[Run], generated_at: dt.datetime | None = None) -> Leaderboard:
    """One row per run; benchmarks are the union over runs, in first-seen order."""
    benchmarks = tuple(dict.fromkeys(name for run in runs for name in run.scores))
    shown = {bench: _metrics_shown(runs, bench) for bench in benchmarks}
    columns = [
        Column("model", "Model", numeric=False),
        Column("backend", "Backend", numeric=False),
        Column("n", "n", numeric=True),
        Column("temperature", "T", numeric=True),
    ]
    for bench in benchmarks:
        columns += [
            Column(f"{bench}.{k}", h, numeric=True, benchmark=bench, metric=k)
            for k, h in METRICS
            if k in shown[bench]
        ]
    columns += [
        Column("created", "Created (UTC)", numeric=False),
        Column("version", "vul2safe", numeric=False),
    ]
    rows = tuple(
        Row(label, run, _cells(label, run, shown))
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


def _metrics_shown(runs: Sequence[Run], bench: str) -> tuple[str, ...]:
    """Every metric, except an optional one no run of this benchmark has."""
    scores = [run.scores[bench] for run in runs if bench in run.scores]
    return tuple(
        key
        for key, _ in METRICS
        if key not in OPTIONAL or any(_metric_cell(key, s).value is not None for s in scores)
    )


def _metric_cell(key: str, scores: Scores) -> Cell:
    if key == "vuln":
        return _interval(scores.vulnerability)
    if key == "icd":
        return _interval(scores.icd_insecure)
    if key == "pass1":
        return _percent(None if scores.pass_at_1 is None else scores.pass_at_1.rate)
    if key == "funcsec":
        return _percent(scores.func_sec_at_1)
    if key == "funcsec_exploit":
        return _interval(scores.func_sec_exploit)
    if key == "invalid":
        return _percent(scores.invalid_rate)
    raise KeyError(key)


def _cells(label: str, run: Run, shown: dict[str, tuple[str, ...]]) -> tuple[Cell, ...]:
    cells = [
        _text(label),
        _text(run.backend),
        Cell(DASH, None) if run.n is None else Cell(str(run.n), run.n),
        Cell(DASH, None)
        if run.temperature is None
        else Cell(f"{run.temperature:g}", run.temperature),
    ]
    for bench, keys in shown.items():
        scores = run.scores.get(bench)
        if scores is None:
            cells += [Cell(DASH, None)] * len(keys)
            continue
        cells += [_metric_cell(key, scores) for key in keys]
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


def _interval(interval: Interval | None) -> Cell:
    return Cell(with_ci(interval), None if interval is None else interval.rate)


def with_ci(interval: Interval | None) -> str:
    """``12.5 [3.1, 25.0]`` (the rate alone when no CI was recorded), or "—"."""
    if interval is None:
        return DASH
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
