"""``vul2safe leaderboard``: compare finished runs as a Markdown, JSON or HTML leaderboard."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from vul2safe.errors import UsageError
from vul2safe.fileio import write_text_atomic


class LeaderboardFormat(str, Enum):
    md = "md"
    html = "html"
    json = "json"


def leaderboard_command(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Run directories written by `vul2safe eval` (or their results.json), "
            "one row each, in this order.",
            metavar="RUN_DIR",
            show_default=False,
        ),
    ],
    output_format: Annotated[
        LeaderboardFormat, typer.Option("--format", "-f", help="md, html (one page) or json.")
    ] = LeaderboardFormat.md,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write to this file (atomically) instead of stdout."),
    ] = None,
) -> None:
    """Tabulate vulnerability rate, ICD rate, pass@1, func-sec@1 (static and exploit tests)
    and invalid % per run and benchmark."""
    from vul2safe import leaderboard

    table = leaderboard.build_table(leaderboard.load_runs(runs))
    if output_format is LeaderboardFormat.json:
        text = json.dumps(leaderboard.to_json(table), indent=2, ensure_ascii=False) + "\n"
    elif output_format is LeaderboardFormat.html:
        text = leaderboard.to_html(table)
    else:
        text = leaderboard.to_markdown(table)
    if output is None:
        typer.echo(text, nl=False)
        return
    _write_atomic(output, text)
    typer.echo(f"wrote {output} ({len(table.rows)} runs)", err=True)


def _write_atomic(path: Path, text: str) -> None:
    """Temp file in the same folder + ``os.replace``: a reader never sees half a page."""
    if path.is_dir():
        raise UsageError(f"--output {path} is a directory; give a file name such as {path}/lb.html")
    write_text_atomic(path, text)
