"""``vul2safe eval --samples FILE --benchmark cweval``: score a samples file, write, print.

Kept beside the plugin (the CLI only dispatches here) because CWEval's result differs from
the other functional benchmarks': two verdicts per sample, and the scanner agreement table.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vul2safe.benchmark import Benchmark, dataset_hash, jsonl_rows
from vul2safe.errors import InputError

__all__ = ["agreement_markdown", "evaluate_samples_file", "print_summary", "read_jsonl"]

FORMAT = "vul2safe-cweval/1"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """JSONL records, each with its line number under ``line``; errors name the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read samples file {path}: {exc}") from None
    rows = [{**row, "line": number} for number, row in jsonl_rows(path, text)]
    if not rows:
        raise InputError(f"{path}: no samples (expected JSONL lines of {{task_id, solution}})")
    return rows


def evaluate_samples_file(
    bench: Benchmark,
    samples: Path,
    *,
    data_dir: Path | None = None,
    jobs: int = 2,
    timeout_s: float | None = None,
    allow_unsafe: bool = False,
    scanners: Sequence[str] | None = None,
    output: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, Any], Path]:
    """Score ``samples`` with the benchmark's own tests; write and return the result."""
    from vul2safe import __version__
    from vul2safe.fileio import write_json_atomic

    rows = read_jsonl(samples)  # before loading data: a bad file fails fast
    source = bench.source(data_dir)
    tasks = bench.load(data_dir)
    block = bench.score_dynamic(  # type: ignore[attr-defined]
        tasks,
        rows,
        jobs=jobs,
        timeout_s=timeout_s,
        allow_unsafe=allow_unsafe,
        scanners=scanners,
        progress=progress,
    )
    result = {
        "format": FORMAT,
        "vul2safe_version": __version__,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "benchmark": {
            **bench.describe(),
            "dataset_hash": dataset_hash(tasks),
            "dataset_tasks": len(tasks),
            "dataset_source": source,
            "samples_file": str(samples.resolve()),
        },
        **block,
    }
    target = output or samples.with_name(f"{samples.stem}.{bench.name}.result.json")
    write_json_atomic(target, result)
    return result, target


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def print_summary(result: dict[str, Any]) -> None:
    """func@k / func-sec@k with CIs per language, then each scanner's precision and recall."""
    from rich.console import Console
    from rich.table import Table

    dynamic = result["dynamic"]
    table = Table(title=f"cweval — {len(result['samples'])} samples (exploit tests)")
    for column in ("scope", "tasks", "func@1", "func-sec@1"):
        table.add_column(column, justify="left" if column == "scope" else "right")

    def row(name: str, block: dict[str, Any]) -> None:
        cells = [
            f"{_pct(block[m])} [{_pct(block[m + '_ci']['low'])}, {_pct(block[m + '_ci']['high'])}]"
            for m in ("func@1", "func-sec@1")
        ]
        table.add_row(name, str(block["n_tasks"]), *cells)

    if "func@1" in dynamic:
        row("all", dynamic)
        for language, block in dynamic["per_language"].items():
            row(f"  {language}", block)
    console = Console()
    console.print(table)
    agreement = result.get("scanner_agreement")
    if agreement and agreement["scanners"]:
        console.print(agreement_markdown(agreement), markup=False)
    for note in dynamic.get("notes", []):
        console.print(f"note: {note}", markup=False)


def agreement_markdown(block: dict[str, Any], per_cwe: bool = False) -> str:
    """A Markdown table: each scanner's precision and recall against the exploit tests."""
    lines = [
        f"Static finding >= {block['threshold']} vs CWEval security tests "
        f"({block['n_samples']} judged samples, {block['n_vulnerable']} vulnerable)",
        "",
        "| scanner | scope | n | TP | FP | FN | TN | precision | recall |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, cell in block["scanners"].items():
        scopes = [("all", cell)]
        if per_cwe:
            scopes += list(cell["per_cwe"].items())
        for scope, c in scopes:
            lines.append(
                f"| {name} | {scope} | {c['n']} | {c['tp']} | {c['fp']} | {c['fn']} | "
                f"{c['tn']} | {_pct(c['precision'])} | {_pct(c['recall'])} |"
            )
    for name, reason in block.get("skipped_scanners", {}).items():
        lines.append(f"| {name} | not available: {reason} | | | | | | | |")
    return "\n".join(lines) + "\n"
