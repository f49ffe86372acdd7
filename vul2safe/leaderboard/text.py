"""The leaderboard as a GitHub Markdown table and as machine-readable JSON.

Both carry where each number comes from (:data:`~vul2safe.leaderboard.table.NOTES`): the
Markdown a legend under the table when it shows a number that is not a scanner's (ICD's
insecure-code rate, func-sec@1 from exploit tests), the JSON a ``note`` on every metric column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vul2safe import __version__
from vul2safe.leaderboard.runs import Scores
from vul2safe.leaderboard.table import NOTES, OPTIONAL, Column, Leaderboard, Row

LEADERBOARD_FORMAT = "vul2safe-leaderboard/1"

__all__ = ["LEADERBOARD_FORMAT", "to_json", "to_markdown"]


def to_markdown(lb: Leaderboard) -> str:
    """A GitHub table; strings from results files are escaped so they stay literal text."""
    headers = [_md(f"{c.benchmark} {c.header}" if c.benchmark else c.header) for c in lb.columns]
    align = ["---:" if c.numeric else "---" for c in lb.columns]
    lines = [_md_row(headers), _md_row(align)]
    lines += [_md_row([_md(cell.text) for cell in row.cells]) for row in lb.rows]
    if any(col.metric in OPTIONAL for col in lb.columns):
        lines += ["", "Where the numbers come from:", ""]
        lines += [f"- **{_md(header)}**: {_md(note)}" for header, note in lb.legend()]
    return "\n".join(lines) + "\n"


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _md(text: str) -> str:
    text = " ".join(text.split())
    for char in "\\`*&<>|":
        text = text.replace(char, "\\" + char)
    return text


def to_json(lb: Leaderboard) -> dict[str, Any]:
    """Machine-readable: rates are fractions in ``[0, 1]``; ``null`` = does not apply."""
    return {
        "format": LEADERBOARD_FORMAT,
        "generated_at": lb.generated_at.isoformat(),
        "vul2safe_version": __version__,
        "benchmarks": list(lb.benchmarks),
        "columns": [_column_json(c) for c in lb.columns],
        "runs": [_run_json(row, lb.benchmarks) for row in lb.rows],
    }


def _column_json(col: Column) -> dict[str, Any]:
    data: dict[str, Any] = {"key": col.key, "header": col.header, "benchmark": col.benchmark}
    if col.metric is not None:
        data["note"] = NOTES[col.metric]
    return data


def _run_json(row: Row, benchmarks: Sequence[str]) -> dict[str, Any]:
    run = row.run
    return {
        "label": row.label,
        "model_id": run.model_id,
        "backend": run.backend,
        "sampling": {"n": run.n, "temperature": run.temperature},
        "created_at": run.created_at,
        "vul2safe_version": run.vul2safe_version,
        "source": str(run.path),
        "benchmarks": {b: _scores_json(run.scores.get(b)) for b in benchmarks},
    }


def _scores_json(scores: Scores | None) -> dict[str, Any] | None:
    if scores is None:
        return None
    vuln, pass1, icd, exploit = (
        scores.vulnerability,
        scores.pass_at_1,
        scores.icd_insecure,
        scores.func_sec_exploit,
    )
    return {
        "vulnerability_rate_medium": None
        if vuln is None
        else {"rate": vuln.rate, "low": vuln.low, "high": vuln.high, "n": vuln.n},
        "pass@1": None if pass1 is None else pass1.rate,
        "pass@1_ci": None
        if pass1 is None or pass1.low is None
        else {"low": pass1.low, "high": pass1.high},
        "func-sec@1": scores.func_sec_at_1,  # static: tests pass, no scanner finding
        "invalid_rate": scores.invalid_rate,
        "icd_insecure_code_rate": None
        if icd is None
        else {
            "rate": icd.rate,
            "low": icd.low,
            "high": icd.high,
            "n": icd.n,
            "detector": scores.icd_detector,
        },
        "func-sec@1_exploit_tests": None
        if exploit is None
        else {"rate": exploit.rate, "low": exploit.low, "high": exploit.high},
    }
