"""Compare finished ``vul2safe eval`` runs: one row per run, rendered as Markdown, JSON or HTML.

The seams: :mod:`.runs` reads ``results.json`` files, :mod:`.table` builds the one table every
renderer draws from, :mod:`.text` renders Markdown and JSON, :mod:`.html` the self-contained
page. Each renderer imports the table, never the other way round, so a new column (or a new
renderer) is added without an import cycle.
"""

from __future__ import annotations

from vul2safe.leaderboard.html import to_html
from vul2safe.leaderboard.runs import (
    RESULTS_FILE,
    SUPPORTED_FORMATS,
    Interval,
    Run,
    Scores,
    load_runs,
)
from vul2safe.leaderboard.table import (
    DASH,
    METRICS,
    Cell,
    Column,
    Leaderboard,
    Row,
    build_table,
    pct,
)
from vul2safe.leaderboard.text import LEADERBOARD_FORMAT, to_json, to_markdown

__all__ = [
    "DASH",
    "LEADERBOARD_FORMAT",
    "METRICS",
    "RESULTS_FILE",
    "SUPPORTED_FORMATS",
    "Cell",
    "Column",
    "Interval",
    "Leaderboard",
    "Row",
    "Run",
    "Scores",
    "build_table",
    "load_runs",
    "pct",
    "to_html",
    "to_json",
    "to_markdown",
]
